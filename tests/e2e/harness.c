/*
 * harness.c - processes, HTTP client, fake inspection, orproxy's outputs and raw sockets for the
 * end-to-end tests.
 *
 * Children are started with fork+exec and die with the test (PR_SET_PDEATHSIG), so a crashed
 * test leaves no daemon behind; each gets a scratch directory that h_proc_cleanup() removes.
 * The HTTP client is one blocking curl easy handle per request, recording when the headers and
 * every piece of the body arrived, so tests can assert that a stream was relayed incrementally.
 * Between fork and exec the child only calls async-signal-safe functions: everything it needs
 * (paths, argv, environment) is prepared before the fork, because tests may run requests on
 * other threads (h_request_async) at the same time.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int h_fake_port;

#define H_FAKE_START_MS 5000
#define H_ORP_START_MS 10000
#define H_RUN_MS 10000
#define H_DEFAULT_TIMEOUT_MS 15000

static void h_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void h_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("harness: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

__attribute__((returns_nonnull)) static void *h_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        h_warn("out of memory");
        abort();
    }
    return p;
}

static char *h_strdup(const char *s)
{
    return s ? strcpy(h_alloc(strlen(s) + 1), s) : NULL;
}

/* Appends n bytes to a NUL-terminated growing buffer. */
static void h_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b)
            abort();
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ---- files ------------------------------------------------------------------------------- */

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL, chunk[4096];
    size_t len = 0, cap = 0, n;
    h_append(&buf, &len, &cap, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        h_append(&buf, &len, &cap, chunk, n);
    fclose(f);
    return buf;
}

int h_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        h_warn("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

static const char *h_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

char *h_temp_file(const char *text)
{
    size_t cap = strlen(h_tmpdir()) + 32;
    char *path = h_alloc(cap);
    snprintf(path, cap, "%s/orp-e2e-XXXXXX", h_tmpdir());
    int fd = mkstemp(path);
    if (fd < 0) {
        h_warn("mkstemp: %s", strerror(errno));
        free(path);
        return NULL;
    }
    close(fd);
    if (h_write_file(path, text) < 0) {
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

/* ---- capture ----------------------------------------------------------------------------- */

/* Capture state: the directory (once decided), the ports of the fakes this program started
 * (their answers are upstream's, not orproxy's, and echo the key on purpose), and a counter for
 * copied orproxy directories. h_cap_mu guards all of it: requests run on several threads. */
static pthread_mutex_t h_cap_mu = PTHREAD_MUTEX_INITIALIZER;
static int h_cap_state; /* 0 undecided, 1 capturing, -1 not */
static char h_cap_dir[512];
static int h_fake_ports[64];
static size_t h_nfake_ports;
static int h_cap_copies;

/* mkdir -p; 0 or -1. */
static int h_mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *q = tmp + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *q = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static const char *h_capture_dir_locked(void)
{
    if (h_cap_state == 0) {
        const char *root = getenv("ORP_CAPTURE_DIR");
        h_cap_state = -1;
        if (root && *root) {
            snprintf(h_cap_dir, sizeof h_cap_dir, "%s/%s-%d", root, program_invocation_short_name,
                     (int)getpid());
            if (h_mkdirs(h_cap_dir) == 0)
                h_cap_state = 1;
            else
                h_warn("cannot create the capture directory %s: %s", h_cap_dir, strerror(errno));
        }
    }
    return h_cap_state == 1 ? h_cap_dir : NULL;
}

const char *h_capture_dir(void)
{
    pthread_mutex_lock(&h_cap_mu);
    const char *d = h_capture_dir_locked();
    pthread_mutex_unlock(&h_cap_mu);
    return d;
}

static void h_capture_fake_port(int port)
{
    pthread_mutex_lock(&h_cap_mu);
    bool known = false;
    for (size_t i = 0; i < h_nfake_ports; i++)
        known |= h_fake_ports[i] == port;
    if (!known && h_nfake_ports < sizeof h_fake_ports / sizeof h_fake_ports[0])
        h_fake_ports[h_nfake_ports++] = port;
    pthread_mutex_unlock(&h_cap_mu);
}

/* Appends the pieces (NULL-terminated list of strings) to file name in the capture directory. */
static void h_capture_append(const char *name, ...)
{
    pthread_mutex_lock(&h_cap_mu);
    const char *dir = h_capture_dir_locked();
    if (dir) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "ab");
        if (f) {
            va_list ap;
            va_start(ap, name);
            for (const char *piece; (piece = va_arg(ap, const char *)) != NULL;)
                fputs(piece, f);
            va_end(ap);
            fclose(f);
        } else {
            h_warn("cannot append to %s: %s", path, strerror(errno));
        }
    }
    pthread_mutex_unlock(&h_cap_mu);
}

static void h_capture_response(int port, const char *method, const char *path,
                               const struct h_resp *r)
{
    pthread_mutex_lock(&h_cap_mu);
    bool fake = false;
    for (size_t i = 0; i < h_nfake_ports; i++)
        fake |= h_fake_ports[i] == port;
    pthread_mutex_unlock(&h_cap_mu);
    if (fake)
        return;
    char head[1200];
    snprintf(head, sizeof head, "=== %s %s (port %d, curl %d, %zu body bytes)\n", method, path, port,
             r->curl_code, r->len);
    h_capture_append("responses.txt", head, r->raw_headers ? r->raw_headers : "",
                     r->body ? r->body : "", "\n", (const char *)NULL);
}

/* nftw has no closure argument: the source and destination of the copy in progress (main
 * thread only, like every process function). */
static const char *h_copy_src;
static char h_copy_dst[1024];

static int h_copy_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    const char *base = path + ftw->base;
    if (flag != FTW_F || strcmp(base, "orproxy.conf") == 0 || strstr(base, "key"))
        return 0;
    char dst[2048];
    snprintf(dst, sizeof dst, "%s%s", h_copy_dst, path + strlen(h_copy_src));
    char parent[2048];
    snprintf(parent, sizeof parent, "%s", dst);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        h_mkdirs(parent);
    }
    FILE *in = fopen(path, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    if (in && out) {
        char chunk[8192];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
            fwrite(chunk, 1, n, out);
    } else {
        h_warn("capture: cannot copy %s to %s", path, dst);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    return 0;
}

/* Copies an orproxy scratch directory into the capture before it is removed. */
static void h_capture_proc_dir(const struct h_proc *p)
{
    pthread_mutex_lock(&h_cap_mu);
    const char *dir = h_capture_dir_locked();
    int n = ++h_cap_copies;
    pthread_mutex_unlock(&h_cap_mu);
    if (!dir)
        return;
    h_copy_src = p->dir;
    snprintf(h_copy_dst, sizeof h_copy_dst, "%s/orproxy-%d", dir, n);
    h_mkdirs(h_copy_dst);
    nftw(p->dir, h_copy_entry, 16, FTW_PHYS);
    h_copy_src = NULL;
}

/* ---- processes --------------------------------------------------------------------------- */

static int h_ensure_dir(struct h_proc *p)
{
    if (p->dir[0])
        return 0;
    snprintf(p->dir, sizeof p->dir, "%s/orp-e2e-XXXXXX", h_tmpdir());
    if (!mkdtemp(p->dir)) {
        h_warn("mkdtemp %s: %s", p->dir, strerror(errno));
        p->dir[0] = '\0';
        return -1;
    }
    return 0;
}

static void h_print_log(const struct h_proc *p)
{
    char *log = h_read_file(p->log);
    fprintf(stderr, "---- %s ----\n%s---- end of log ----\n", p->log, log ? log : "(no log)\n");
    free(log);
}

/*
 * Forks and execs argv[0] (a path; PATH-searched if use_path) with envp. The child's stdout goes
 * to out_fd (or the log), stderr to the log (or to err_fd when log is NULL).
 */
static pid_t h_spawn(char *const argv[], char *const envp[], bool use_path, const char *log,
                     int out_fd, int err_fd)
{
    int logfd = -1;
    if (log) {
        logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) {
            h_warn("open %s: %s", log, strerror(errno));
            return -1;
        }
    }
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (nullfd >= 0)
            dup2(nullfd, 0);
        int o = out_fd >= 0 ? out_fd : logfd, e = logfd >= 0 ? logfd : err_fd;
        if (o >= 0)
            dup2(o, 1);
        if (e >= 0)
            dup2(e, 2);
        if (use_path)
            execvpe(argv[0], argv, envp);
        else
            execve(argv[0], argv, envp);
        static const char msg[] = "harness: exec failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    if (pid < 0)
        h_warn("fork: %s", strerror(errno));
    if (logfd >= 0)
        close(logfd);
    if (nullfd >= 0)
        close(nullfd);
    return pid;
}

/* Reaps pid if it exited; returns its h_proc_stop-style status or -2 if it still runs. */
static int h_reap(pid_t pid, int flags)
{
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, flags)) < 0 && errno == EINTR) {
    }
    if (r == 0)
        return -2;
    if (r < 0)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

int h_fake_start(struct h_proc *p, const char *extra_args)
{
    if (p->pid > 0) {
        h_warn("h_fake_start: pid %d is still running", (int)p->pid);
        return -1;
    }
    if (h_ensure_dir(p) < 0)
        return -1;
    snprintf(p->log, sizeof p->log, "%s/fake.log", p->dir);
    const char *bin = getenv("FAKE_BIN");
    if (!bin || !*bin)
        bin = "build/fake_openrouter";

    char *args = h_strdup(extra_args ? extra_args : "");
    char *argv[34] = {(char *)bin};
    int argc = 1;
    for (char *save = NULL, *t = strtok_r(args, " \t\n", &save); t && argc < 31;
         t = strtok_r(NULL, " \t\n", &save))
        argv[argc++] = t;
    char port_arg[16];
    if (p->port > 0 && !strstr(extra_args ? extra_args : "", "--port")) { /* a restart */
        snprintf(port_arg, sizeof port_arg, "%d", p->port);
        argv[argc++] = "--port";
        argv[argc++] = port_arg;
    }

    int rc = -1, pfd[2] = {-1, -1};
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        h_warn("pipe: %s", strerror(errno));
        goto done;
    }
    p->pid = h_spawn(argv, environ, false, p->log, pfd[1], -1);
    close(pfd[1]);
    if (p->pid <= 0) {
        p->pid = 0;
        goto done;
    }

    char line[64] = "";
    size_t n = 0;
    double deadline = h_now() + H_FAKE_START_MS / 1000.0;
    while (n < sizeof line - 1 && !memchr(line, '\n', n)) {
        int left = (int)((deadline - h_now()) * 1000);
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t k = read(pfd[0], line + n, sizeof line - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        line[n] = '\0';
    }
    int port = 0;
    if (sscanf(line, "PORT %d", &port) != 1 || port <= 0) {
        h_warn("%s did not report its port (got \"%s\")", bin, line);
        h_print_log(p);
        h_proc_stop(p, SIGKILL, 1000);
        goto done;
    }
    p->port = port;
    h_fake_port = port;
    h_capture_fake_port(port);
    rc = 0;
done:
    if (pfd[0] >= 0)
        close(pfd[0]);
    free(args);
    return rc;
}

/* Replaces every occurrence of key in *s with val (reallocating). */
static void h_replace_all(char **s, const char *key, const char *val)
{
    char *out = NULL;
    size_t len = 0, cap = 0, klen = strlen(key);
    const char *p = *s, *hit;
    h_append(&out, &len, &cap, "", 0);
    while ((hit = strstr(p, key))) {
        h_append(&out, &len, &cap, p, (size_t)(hit - p));
        h_append(&out, &len, &cap, val, strlen(val));
        p = hit + klen;
    }
    h_append(&out, &len, &cap, p, strlen(p));
    free(*s);
    *s = out;
}

char *h_subst(const struct h_proc *p, const char *conf_text)
{
    char port[16], fake[16];
    snprintf(port, sizeof port, "%d", p->port);
    snprintf(fake, sizeof fake, "%d", h_fake_port);
    char *s = h_strdup(conf_text);
    h_replace_all(&s, "@PORT@", port);
    h_replace_all(&s, "@FAKE@", fake);
    h_replace_all(&s, "@DIR@", p->dir);
    return s;
}

static bool h_env_named(const char *entry, const char *name, size_t nlen)
{
    return strncmp(entry, name, nlen) == 0 && entry[nlen] == '=';
}

/* environ minus OPENROUTER_API_KEY and every name env mentions, plus env's NAME=value entries.
 * The array is malloc'd; its strings are borrowed. */
static char **h_build_env(const char *const *env)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (env && env[m])
        m++;
    char **out = h_alloc((n + m + 1) * sizeof *out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = h_env_named(environ[i], "OPENROUTER_API_KEY", 18);
        for (size_t j = 0; j < m && !drop; j++) {
            const char *eq = strchr(env[j], '=');
            drop = h_env_named(environ[i], env[j], eq ? (size_t)(eq - env[j]) : strlen(env[j]));
        }
        if (!drop)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        if (strchr(env[j], '='))
            out[k++] = (char *)env[j];
    out[k] = NULL;
    return out;
}

int h_orproxy_start(struct h_proc *p, const char *conf_text, const char *const *env)
{
    if (h_orproxy_spawn(p, conf_text, env) < 0)
        return -1;
    return h_orproxy_ready(p);
}

int h_orproxy_spawn(struct h_proc *p, const char *conf_text, const char *const *env)
{
    if (p->pid > 0) {
        h_warn("h_orproxy_start: pid %d is still running", (int)p->pid);
        return -1;
    }
    if (h_ensure_dir(p) < 0)
        return -1;
    if (p->port <= 0 && (p->port = h_free_port()) <= 0)
        return -1;
    snprintf(p->conf, sizeof p->conf, "%s/orproxy.conf", p->dir);
    snprintf(p->log, sizeof p->log, "%s/orproxy.log", p->dir);
    const char *bin = getenv("ORP_BIN");
    if (!bin || !*bin)
        bin = "build/orproxy";

    char *conf = h_subst(p, conf_text);
    /* Every daemon keeps its state (ledger, price cache) in its own scratch
     * directory unless the test chose a place: never the host's default. */
    if (strstr(conf, "state_dir") == NULL) {
        size_t n = strlen(conf) + strlen(p->dir) + 32;
        char *more = h_alloc(n);
        snprintf(more, n, "%s\nstate_dir = \"%s/state\";\n", conf, p->dir);
        free(conf);
        conf = more;
    }
    int rc = h_write_file(p->conf, conf);
    free(conf);
    if (rc < 0)
        return -1;

    char **envp = h_build_env(env);
    char *argv[] = {(char *)bin, "-c", p->conf, NULL};
    p->pid = h_spawn(argv, envp, false, p->log, -1, -1);
    free(envp);
    if (p->pid <= 0) {
        p->pid = 0;
        return -1;
    }
    return 0;
}

int h_orproxy_ready(struct h_proc *p)
{
    const char *bin = getenv("ORP_BIN");
    if (!bin || !*bin)
        bin = "build/orproxy";
    double deadline = h_now() + H_ORP_START_MS / 1000.0;
    struct h_req_opts o = {.timeout_ms = 1000};
    while (h_now() < deadline) {
        int st = h_reap(p->pid, WNOHANG);
        if (st != -2) {
            h_warn("%s exited (status %d) before answering /healthz", bin, st);
            p->pid = 0;
            h_print_log(p);
            return -1;
        }
        struct h_resp r;
        h_request(&r, p->port, "GET", "/healthz", NULL, NULL, &o);
        long status = r.status;
        h_resp_free(&r);
        if (status == 200)
            return 0;
        h_sleep_ms(20);
    }
    h_warn("%s did not answer GET /healthz with 200 on port %d within %d ms", bin, p->port,
           H_ORP_START_MS);
    h_proc_stop(p, SIGKILL, 1000);
    h_print_log(p);
    return -1;
}

int h_proc_stop(struct h_proc *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    double deadline = h_now() + timeout_ms / 1000.0;
    int st;
    while ((st = h_reap(p->pid, WNOHANG)) == -2 && h_now() < deadline)
        h_sleep_ms(5);
    if (st == -2) {
        h_warn("pid %d ignored signal %d for %d ms; killing it", (int)p->pid, sig, timeout_ms);
        kill(p->pid, SIGKILL);
        h_reap(p->pid, 0);
        st = -1;
    }
    p->pid = 0;
    if (st != 0 && st != 128 + sig) { /* a crash or a sanitizer report: show why */
        h_warn("pid exited with status %d after signal %d", st, sig);
        h_print_log(p);
    }
    return st;
}

static int h_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

const char *h_orproxy_finish(struct h_proc *p, const char *secret, int timeout_ms)
{
    const char *why = NULL;
    if (secret != NULL && p->log[0] != '\0' && h_log_wait(p, secret, 0))
        why = "the secret is in its log";
    if (p->pid > 0) {
        if (kill(p->pid, 0) != 0)
            why = why ? why : "orproxy is gone";
        if (h_proc_stop(p, SIGTERM, timeout_ms) != 0)
            why = why ? why : "it did not exit 0 on SIGTERM";
    }
    return why;
}

void h_proc_cleanup(struct h_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        h_reap(p->pid, 0);
    }
    if (p->dir[0] && p->conf[0]) /* an orproxy: keep what it wrote */
        h_capture_proc_dir(p);
    if (p->dir[0])
        nftw(p->dir, h_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    memset(p, 0, sizeof *p);
}

int h_run(const char *const argv[], char **out, char **err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = -1;
    char *buf[2] = {NULL, NULL};
    size_t len[2] = {0, 0}, cap[2] = {0, 0};
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        h_warn("pipe: %s", strerror(errno));
        goto done;
    }
    pid_t pid = h_spawn((char *const *)argv, environ, true, NULL, po[1], pe[1]);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (pid <= 0)
        goto done;

    h_append(&buf[0], &len[0], &cap[0], "", 0);
    h_append(&buf[1], &len[1], &cap[1], "", 0);
    struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    double deadline = h_now() + H_RUN_MS / 1000.0;
    bool timed_out = false;
    while (pf[0].fd >= 0 || pf[1].fd >= 0) {
        int left = (int)((deadline - h_now()) * 1000);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (poll(pf, 2, left) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            char chunk[4096];
            ssize_t k = read(pf[i].fd, chunk, sizeof chunk);
            if (k > 0)
                h_append(&buf[i], &len[i], &cap[i], chunk, (size_t)k);
            else
                pf[i].fd = -1;
        }
    }
    if (timed_out) {
        h_warn("%s did not finish within %d ms; killed", argv[0], H_RUN_MS);
        kill(pid, SIGKILL);
        h_reap(pid, 0);
    } else {
        rc = h_reap(pid, 0);
    }
    {
        char head[1200] = "=== h_run";
        for (size_t i = 0; argv[i] && strlen(head) < 1000; i++) {
            strcat(head, " ");
            strncat(head, argv[i], 150);
        }
        strcat(head, "\n");
        h_capture_append("run.txt", head, "--- stdout\n", buf[0] ? buf[0] : "",
                         "\n--- stderr\n", buf[1] ? buf[1] : "", "\n", (const char *)NULL);
    }
    if (out) {
        *out = buf[0];
        buf[0] = NULL;
    }
    if (err) {
        *err = buf[1];
        buf[1] = NULL;
    }
done:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
        free(buf[i]);
    }
    return rc;
}

/* ---- HTTP client ------------------------------------------------------------------------- */

static pthread_once_t h_curl_once = PTHREAD_ONCE_INIT;

static void h_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Transfer state shared by the curl callbacks. */
struct h_xfer {
    struct h_resp *r;
    const struct h_req_opts *o;
    size_t cap, hcap, tcap;
};

static void h_free_headers(struct h_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
}

static size_t h_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct h_xfer *x = userp;
    struct h_resp *r = x->r;
    size_t n = size * nmemb, rawlen = r->raw_headers ? strlen(r->raw_headers) : 0;
    h_append(&r->raw_headers, &rawlen, &x->hcap, data, n);

    size_t end = n;
    while (end > 0 && (data[end - 1] == '\r' || data[end - 1] == '\n'))
        end--;
    if (end == 0) { /* the blank line closing a header block */
        r->t_headers = h_now();
        return n;
    }
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
        h_free_headers(r);
        const char *sp = memchr(data, ' ', end);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    const char *colon = memchr(data, ':', end);
    if (!colon)
        return n;
    const char *v = colon + 1;
    while (v < data + end && (*v == ' ' || *v == '\t'))
        v++;
    struct h_header *h = realloc(r->headers, (r->nheaders + 1) * sizeof *h);
    if (!h)
        abort();
    r->headers = h;
    h[r->nheaders].name = strndup(data, (size_t)(colon - data));
    h[r->nheaders].value = strndup(v, (size_t)(data + end - v));
    r->nheaders++;
    return n;
}

static size_t h_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct h_xfer *x = userp;
    struct h_resp *r = x->r;
    size_t n = size * nmemb;
    h_append(&r->body, &r->len, &x->cap, data, n);
    if (r->nticks == x->tcap) {
        x->tcap = x->tcap ? x->tcap * 2 : 64;
        struct h_tick *t = realloc(r->ticks, x->tcap * sizeof *t);
        if (!t)
            abort();
        r->ticks = t;
    }
    r->ticks[r->nticks++] = (struct h_tick){h_now(), r->len};
    if (x->o && x->o->abort_after_bytes > 0 && r->len >= x->o->abort_after_bytes)
        return 0;
    if (x->o && x->o->on_body && x->o->on_body(r, data, n, x->o->arg))
        return 0;
    return n;
}

int h_request(struct h_resp *r, int port, const char *method, const char *path, const char *body,
              const char *const *headers, const struct h_req_opts *opts)
{
    memset(r, 0, sizeof *r);
    pthread_once(&h_curl_once, h_curl_init);
    struct h_xfer x = {.r = r, .o = opts};
    size_t zero = 0;
    h_append(&r->body, &r->len, &x.cap, "", 0);
    h_append(&r->raw_headers, &zero, &x.hcap, "", 0);

    CURL *c = curl_easy_init();
    if (!c) {
        r->curl_code = CURLE_FAILED_INIT;
        return r->curl_code;
    }
    char url[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    struct curl_slist *hl = NULL;
    bool has_ctype = false;
    for (size_t i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        has_ctype |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
    }
    if (body && !has_ctype)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");

    char errbuf[CURL_ERROR_SIZE] = "";
    int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : H_DEFAULT_TIMEOUT_MS;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (strcmp(method, "GET") == 0 && !body) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        }
    }

    r->t_start = h_now();
    r->curl_code = (int)curl_easy_perform(c);
    r->t_end = h_now();
    long status = 0;
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status)
        r->status = status;
    snprintf(r->error, sizeof r->error, "%s",
             errbuf[0] ? errbuf : (r->curl_code ? curl_easy_strerror(r->curl_code) : ""));
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    h_capture_response(port, method, path, r);
    return r->curl_code;
}

const char *h_header(const struct h_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

void h_resp_free(struct h_resp *r)
{
    h_free_headers(r);
    free(r->raw_headers);
    free(r->body);
    free(r->ticks);
    memset(r, 0, sizeof *r);
}

struct h_async {
    pthread_t thread;
    int port;
    char *method, *path, *body;
    char **headers;
    struct h_req_opts opts;
    bool has_opts;
    struct h_resp r;
};

static void *h_async_main(void *arg)
{
    struct h_async *a = arg;
    h_request(&a->r, a->port, a->method, a->path, a->body, (const char *const *)a->headers,
              a->has_opts ? &a->opts : NULL);
    return NULL;
}

struct h_async *h_request_async(int port, const char *method, const char *path, const char *body,
                                const char *const *headers, const struct h_req_opts *opts)
{
    pthread_once(&h_curl_once, h_curl_init);
    struct h_async *a = h_alloc(sizeof *a);
    a->port = port;
    a->method = h_strdup(method);
    a->path = h_strdup(path);
    a->body = h_strdup(body);
    size_t n = 0;
    while (headers && headers[n])
        n++;
    a->headers = h_alloc((n + 1) * sizeof *a->headers);
    for (size_t i = 0; i < n; i++)
        a->headers[i] = h_strdup(headers[i]);
    if (opts) {
        a->opts = *opts;
        a->has_opts = true;
    }
    if (pthread_create(&a->thread, NULL, h_async_main, a) != 0) {
        h_warn("pthread_create failed");
        abort();
    }
    return a;
}

int h_async_wait(struct h_async *a, struct h_resp *r)
{
    pthread_join(a->thread, NULL);
    *r = a->r;
    for (size_t i = 0; a->headers[i]; i++)
        free(a->headers[i]);
    free(a->headers);
    free(a->method);
    free(a->path);
    free(a->body);
    free(a);
    return r->curl_code;
}

/* Appends s to the string vector *v (count *n, capacity *cap). */
static void h_strv_push(char ***v, size_t *n, size_t *cap, char *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        char **nv = realloc(*v, *cap * sizeof *nv);
        if (!nv)
            abort();
        *v = nv;
    }
    (*v)[(*n)++] = s;
}

char **h_sse_split(const char *body, size_t *n)
{
    char **v = NULL, *cur = NULL;
    size_t cnt = 0, cap = 0, clen = 0, ccap = 0;
    const char *p = body ? body : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t linelen = nl ? (size_t)(nl - p) : strlen(p);
        size_t textlen = linelen > 0 && p[linelen - 1] == '\r' ? linelen - 1 : linelen;
        bool blank = textlen == 0 && nl;
        if (!blank) {
            if (cur)
                h_append(&cur, &clen, &ccap, "\n", 1);
            h_append(&cur, &clen, &ccap, p, textlen);
        }
        if (blank && cur) {
            h_strv_push(&v, &cnt, &cap, cur);
            cur = NULL;
            clen = ccap = 0;
        }
        p = nl ? nl + 1 : p + linelen;
    }
    if (cur) /* a last event without its blank line (truncated stream) */
        h_strv_push(&v, &cnt, &cap, cur);
    if (!v)
        v = h_alloc(sizeof *v);
    *n = cnt;
    return v;
}

void h_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- fake upstream inspection ------------------------------------------------------------ */

cJSON *h_fake_requests(int fake_port)
{
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 5000};
    cJSON *doc = NULL;
    if (h_request(&r, fake_port, "GET", "/_fake/requests", NULL, NULL, &o) == 0 && r.status == 200)
        doc = cJSON_Parse(r.body);
    if (!cJSON_IsArray(doc)) {
        h_warn("GET /_fake/requests on port %d failed: %s", fake_port, r.error);
        cJSON_Delete(doc);
        doc = NULL;
    }
    h_resp_free(&r);
    return doc;
}

void h_fake_reset(int fake_port)
{
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 5000};
    if (h_request(&r, fake_port, "POST", "/_fake/reset", "", NULL, &o) != 0 || r.status != 200)
        h_warn("POST /_fake/reset on port %d failed: %s", fake_port, r.error);
    h_resp_free(&r);
}

static bool h_tag_is(const cJSON *rec, const char *tag)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "tag");
    return !tag || (cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0);
}

cJSON *h_fake_wait(int fake_port, const char *tag, const char *field, int timeout_ms)
{
    double deadline = h_now() + timeout_ms / 1000.0;
    for (;;) {
        cJSON *all = h_fake_requests(fake_port), *rec;
        cJSON_ArrayForEach(rec, all)
        {
            if (h_tag_is(rec, tag) &&
                (!field || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, field)))) {
                cJSON *copy = cJSON_Duplicate(rec, 1);
                cJSON_Delete(all);
                return copy;
            }
        }
        cJSON_Delete(all);
        if (h_now() >= deadline)
            return NULL;
        h_sleep_ms(20);
    }
}

int h_fake_count(int fake_port, const char *tag)
{
    cJSON *all = h_fake_requests(fake_port), *rec;
    if (!all)
        return -1;
    int n = 0;
    cJSON_ArrayForEach(rec, all) n += h_tag_is(rec, tag);
    cJSON_Delete(all);
    return n;
}

/* ---- orproxy's outputs: keys, logs, the ledger, metrics ---------------------------------- */

int h_key_new(const char *name, char *key, size_t keylen, char hash[65])
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    const char *argv[] = {bin, "key", "new", name, NULL};
    char *out = NULL;
    const char *p, *h;
    size_t n;
    int rc = h_run(argv, &out, NULL);
    if (rc != 0) {
        h_warn("%s key new %s: exit %d", bin, name, rc);
        free(out);
        return -1;
    }
    p = strstr(out, "#   ");
    h = strstr(out, "key_sha256 = \"");
    n = p != NULL ? strcspn(p + 4, " \t\r\n") : 0;
    if (p == NULL || h == NULL || n == 0 || n >= keylen || strlen(h + 14) < 64) {
        h_warn("%s key new %s: no key (or one longer than %zu bytes) in: %s", bin, name, keylen - 1,
               out);
        free(out);
        return -1;
    }
    memcpy(key, p + 4, n);
    key[n] = '\0';
    memcpy(hash, h + 14, 64);
    hash[64] = '\0';
    free(out);
    return 0;
}

int h_log_wait(const struct h_proc *p, const char *needle, int timeout_ms)
{
    for (int waited = 0;; waited += 20) {
        char *log = h_read_file(p->log);
        int found = log != NULL && strstr(log, needle) != NULL;
        free(log);
        if (found)
            return 1;
        if (waited >= timeout_ms)
            return 0;
        h_sleep_ms(20);
    }
}

char *h_db_value(const char *db_path, const char *sql, int timeout_ms)
{
    for (int waited = 0;; waited += 20) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char *out = NULL;
        if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            out = h_strdup(t ? (const char *)t : "NULL");
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (out != NULL)
            return out;
        if (waited >= timeout_ms)
            return NULL;
        h_sleep_ms(20);
    }
}

int h_wait_ready(int port, int timeout_ms)
{
    double until = h_now() + timeout_ms / 1000.0;

    for (;;) {
        struct h_resp r;
        long st;
        h_request(&r, port, "GET", "/readyz", NULL, NULL, NULL);
        st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return 0;
        if (h_now() >= until) {
            fprintf(stderr, "harness: 127.0.0.1:%d never answered /readyz 200\n", port);
            return -1;
        }
        usleep(50000);
    }
}

long h_metric(int port, const char *const *headers, const char *series, long long *value)
{
    struct h_resp r;
    size_t n = strlen(series);
    long status;
    *value = -1;
    h_request(&r, port, "GET", "/metrics", NULL, headers, NULL);
    status = r.status;
    if (status == 200)
        for (const char *p = r.body; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (strncmp(p, series, n) == 0 && p[n] == ' ') {
                *value = strtoll(p + n + 1, NULL, 10);
                break;
            }
    h_resp_free(&r);
    return status;
}

long h_proc_kb(pid_t pid, const char *field)
{
    char path[64], *text, *at;
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    text = h_read_file(path);
    if (text != NULL && (at = strstr(text, field)) != NULL)
        kb = atol(at + strlen(field));
    free(text);
    return kb;
}

/* ---- raw sockets ------------------------------------------------------------------------- */

int h_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        h_warn("connect to 127.0.0.1:%d: %s", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int h_raw_send(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k <= 0) {
            h_warn("send: %s", k < 0 ? strerror(errno) : "nothing sent");
            return -1;
        }
        data += k;
        n -= (size_t)k;
    }
    return 0;
}

char *h_raw_read(int fd, int timeout_ms, size_t cap, int *closed)
{
    char *out = calloc(1, cap + 1);
    size_t len = 0;
    double deadline = h_now() + timeout_ms / 1000.0;
    *closed = 0;
    for (;;) {
        int left = (int)((deadline - h_now()) * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        char buf[65536];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) {
            *closed = 1;
            break;
        }
        size_t keep = len + (size_t)k > cap ? cap - len : (size_t)k;
        memcpy(out + len, buf, keep);
        len += keep;
    }
    return out;
}

char *h_raw_read_head(int fd, int timeout_ms)
{
    char *out = calloc(1, 8193);
    size_t len = 0;
    double deadline = h_now() + timeout_ms / 1000.0;
    while (len < 8192 && strstr(out, "\r\n\r\n") == NULL) {
        int left = (int)((deadline - h_now()) * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t k = recv(fd, out + len, 1, 0); /* byte by byte: never past the headers */
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    return out;
}
