/* main.c - command line, start-up and signals.
 *
 * The main thread parses the command line and the config, raises the
 * open-file limit, binds one SO_REUSEPORT listening socket per worker (the
 * kernel spreads connections across them), starts the workers and then
 * only waits for signals: SIGTERM/SIGINT stop the workers gracefully.
 * Every other thread has these signals blocked, so none of them is ever
 * interrupted by one. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>

#include "access.h"
#include "admin.h"
#include "alerts.h"
#include "config.h"
#include "config_doc.h"
#include "housekeeping.h"
#include "keys.h"
#include "ledger.h"
#include "ledger_pg.h"
#include "report_pg.h"
#include "log.h"
#include "local.h"
#include "managed.h"
#include "metrics.h"
#include "pricing.h"
#include "report.h"
#include "util.h"
#include "version.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/orproxy/orproxy.conf"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: orproxy [-c FILE] [-t|--check-config] [--version] [-h|--help]\n"
            "       orproxy usage [-c FILE] [--since T] [--until T] [--by G] [--format F]\n"
            "       orproxy key new NAME\n"
            "\n"
            "  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t, --check-config   check the configuration and exit (0 ok, 2 errors)\n"
            "      --settings       print the table of every setting (Markdown) and exit\n"
            "      --settings-man   print orproxy.conf(5), every setting as a man page, and exit\n"
            "      --version        print the version and exit\n"
            "  -h, --help           this text\n");
}

static void usage_cmd_help(FILE *out)
{
    fprintf(out, "usage: orproxy usage [-c FILE] [--since 24h|7d|2026-11-01] [--until ...]\n"
                 "                     [--by key|model|day|user|instance|none]\n"
                 "                     [--format table|json|csv] [--local]\n"
                 "Totals of requests, tokens and cost from the usage ledger (default: the last\n"
                 "7 days, by model, as a table).  Works while the daemon runs.  With\n"
                 "ledger.backend = \"postgresql\" it reads the shared database (every instance;\n"
                 "--by instance); --local reads this instance's own SQLite ledger instead.\n");
}

/* `orproxy usage ...`: reads the ledger named by the config. */
static int usage_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},  {"by", required_argument, NULL, 'b'},
        {"format", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
        {"local", no_argument, NULL, 'l'},        {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONFIG, *since = "7d", *until = NULL;
    struct report_query q;
    enum report_format fmt = REPORT_TABLE;
    struct orp_config cfg;
    char err[1024];
    int64_t now;
    int c, rc, local = 0;

    memset(&q, 0, sizeof q);
    q.by = REPORT_BY_MODEL;
    now = util_wall_ms();
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 's':
            since = optarg;
            break;
        case 'u':
            until = optarg;
            break;
        case 'b':
            if (report_parse_by(optarg, &q.by) < 0) {
                fprintf(stderr,
                        "orproxy usage: --by must be key, model, day, user, instance or none\n");
                return 2;
            }
            break;
        case 'f':
            if (report_parse_format(optarg, &fmt) < 0) {
                fprintf(stderr, "orproxy usage: --format must be table, json or csv\n");
                return 2;
            }
            break;
        case 'l':
            local = 1;
            break;
        case 'h':
            usage_cmd_help(stdout);
            return 0;
        default:
            usage_cmd_help(stderr);
            return 2;
        }
    }
    if (report_parse_time(since, now, &q.since_ms) < 0 ||
        (until != NULL && report_parse_time(until, now, &q.until_ms) < 0)) {
        fprintf(stderr, "orproxy usage: bad time '%s': use 24h, 7d, 30m or 2026-11-01\n",
                until != NULL && report_parse_time(since, now, &q.since_ms) == 0 ? until : since);
        return 2;
    }
    if (config_load(path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (!local && strcmp(cfg.ledger_backend, "postgresql") == 0)
        rc = report_pg_write(cfg.ledger_postgresql_url, cfg.ledger_postgresql_password_file, &q,
                             fmt, stdout, err, sizeof err);
    else
        rc = report_write(cfg.ledger_path, &q, fmt, stdout, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "orproxy usage: %s\n", err);
    config_free(&cfg);
    return rc < 0 ? 1 : 0;
}

/* `orproxy key new NAME`: a fresh client key, shown once, and the config
 * stanza that stores only its SHA-256. */
static int key_cmd(int argc, char **argv)
{
    char key[64], hex[65];
    unsigned char h[32];
    const char *name;

    if (argc != 3 || strcmp(argv[1], "new") != 0) {
        fprintf(stderr, "usage: orproxy key new NAME\n");
        return 2;
    }
    name = argv[2];
    if (strlen(name) == 0 || strlen(name) > 63 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name)) {
        fprintf(stderr, "orproxy key: NAME must be 1-63 letters, digits, '.', '_' or '-'\n");
        return 2;
    }
    if (keys_generate(key, sizeof key) < 0) {
        fprintf(stderr, "orproxy key: no randomness available\n");
        return 1;
    }
    keys_sha256(key, strlen(key), h);
    keys_hex(h, 32, hex);
    printf("# Client key for %s (shown once; orproxy stores only its SHA-256):\n"
           "#   %s\n"
           "# Add this to the clients list (auth.mode = \"keys\"):\n"
           "  { name = \"%s\"; key_sha256 = \"%s\"; }\n",
           name, key, name, hex);
    explicit_bzero(key, sizeof key);
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise the open-file limit: %s", strerror(errno));
    }
}

/* Binds address:*port with SO_REUSEPORT; fills *port when it was 0. */
static int listen_on(const char *address, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)*port);
        sl = sizeof *sin;
    } else if (inet_pton(AF_INET6, address, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)*port);
        sl = sizeof *sin6;
    } else {
        log_error("listen.address '%s' is not an IP address", address);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
        log_error("cannot listen on %s:%d: %s", address, *port, strerror(errno));
        close(fd);
        return -1;
    }
    if (*port == 0) {
        sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

/* Whether the socket fd listens on a loopback address (127/8, ::1, or
 * ::ffff:127.x.y.z).  Asked of the socket itself, so it also holds for a
 * socket systemd passed, whatever listen.address says. */
static int socket_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return ss.ss_family == AF_UNIX;
}

/* SIGHUP: load the file again; if it is good, hand it to every worker
 * (new requests use it, in-flight ones finish with theirs) and to the
 * housekeeping thread.  A bad file changes nothing, and neither does one
 * whose rules fail against what will really run: the restart-only values
 * kept from the running config and the socket actually listening (a file
 * that moves listen.address to loopback and turns auth off must not turn
 * auth off on the old, public listener). */
/* managed.c's publisher: every worker and housekeeping get merged. */
static struct {
    struct worker *w;
    int n;
} published;

static void publish(struct orp_config *merged, void *arg)
{
    (void)arg;
    for (int i = 0; i < published.n; i++)
        worker_set_config(&published.w[i], config_hold(merged));
    housekeeping_set_config(merged);
    bshare_set_config(merged);
    alerts_set_config(merged);
}

static struct orp_config *reload(struct orp_config *cur, struct worker *workers)
{
    char err[1024];
    struct orp_config *next;
    const char *kept;

    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(util_mono_ns() / 1000));
    next = config_load_new(cur->source_path, err, sizeof err);
    if (next == NULL) {
        log_error("reload failed, keeping the running configuration: %s", err);
        metrics_reload(0);
        sd_notify(0, "READY=1\nSTATUS=reload failed; running configuration kept");
        return cur;
    }
    kept = config_keep_restart_only(next, cur);
    if (config_check_running(next, socket_is_loopback(workers[0].listen_fd), err, sizeof err) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        config_release(next);
        metrics_reload(0);
        sd_notify(0, "READY=1\nSTATUS=reload refused; running configuration kept");
        return cur;
    }
    if (kept[0] != '\0')
        log_warn("reload: %s changed; that needs a restart, the old value stays", kept);
    log_setup(next->log_level, next->log_format);
    next = managed_rebase(next); /* the managed clients joined; published to every worker */
    config_release(cur);
    metrics_reload(1);
    log_info("reloaded %s (upstream key %s)", next->source_path,
             next->upstream_key ? "configured" : "MISSING");
    sd_notify(0, "READY=1\nSTATUS=configuration reloaded");
    return next;
}

/* The listening socket(s): systemd's (socket activation), else one
 * SO_REUSEPORT socket per worker. */
static int worker_socket(const struct orp_config *cfg, int activated, int *port)
{
    if (activated)
        return dup(SD_LISTEN_FDS_START);
    return listen_on(cfg->listen_address, port);
}

/* curl, the state directory, the ledger (budgets continue from what it
 * says was spent already) and the housekeeping thread.  0 or -1 (logged). */
static int open_state(struct orp_config *cfg)
{
    char err[1024];

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("curl_global_init failed");
        return -1;
    }
    if (mkdir(cfg->state_dir, 0750) < 0 && errno != EEXIST) {
        log_error("cannot create state_dir %s: %s", cfg->state_dir, strerror(errno));
        return -1;
    }
    if (ledger_open(cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    ledger_seed_spend(cfg->ledger_path, access_seed_spend);
    if (housekeeping_start(cfg) < 0) {
        log_error("cannot start the housekeeping thread");
        ledger_close();
        return -1;
    }
    if (alerts_start(cfg) < 0) {
        log_error("cannot start the alerts thread");
        housekeeping_stop();
        ledger_close();
        return -1;
    }
    if (bshare_start(cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        alerts_stop();
        housekeeping_stop();
        ledger_close();
        return -1;
    }
    return 0;
}

static void close_state(void)
{
    struct ledger_stats ls;
    struct ledgerpg_stats pg;

    alerts_stop();
    housekeeping_stop();
    bshare_stop(); /* records what is left to settle, returns the leases */
    ledger_close(); /* flushes every queued record */
    ledger_get_stats(&ls);
    log_info("ledger: %llu written, %llu dropped", (unsigned long long)ls.written,
             (unsigned long long)ls.dropped);
    ledgerpg_get_stats(&pg);
    if (pg.enabled)
        log_info("ledger: postgresql: %llu written, %llu spooled, %llu dropped; %llu bytes left "
                 "in the spool",
                 (unsigned long long)pg.written, (unsigned long long)pg.spooled,
                 (unsigned long long)pg.dropped, (unsigned long long)pg.spool_bytes);
    pricing_shutdown();
    curl_global_cleanup();
}

static void log_listening(const struct orp_config *cfg, int activated, int port, int nworkers)
{
    char upstream[512];

    config_url_for_log(cfg->upstream_base_url, upstream, sizeof upstream);
    if (activated == 1)
        log_info("orproxy %s listening on the socket systemd passed with %d workers; "
                 "upstream %s; upstream key %s; ledger %s",
                 ORP_VERSION, nworkers, upstream,
                 cfg->upstream_key ? "configured" : "MISSING", cfg->ledger_path);
    else
        log_info("orproxy %s listening on http://%s%s%s:%d with %d workers; upstream %s; "
                 "upstream key %s; ledger %s",
                 ORP_VERSION, strchr(cfg->listen_address, ':') ? "[" : "", cfg->listen_address,
                 strchr(cfg->listen_address, ':') ? "]" : "", port, nworkers,
                 upstream, cfg->upstream_key ? "configured" : "MISSING",
                 cfg->ledger_path);
}

/* Signals until one says stop; returns the config then running. */
static struct orp_config *serve(struct orp_config *cfg, const sigset_t *set, struct worker *workers)
{
    for (;;) {
        int sig = sigwaitinfo(set, NULL);
        if (sig == SIGHUP) {
            cfg = reload(cfg, workers);
            continue;
        }
        if (sig == SIGINT || sig == SIGTERM) {
            log_info("signal %d: stopping (in-flight requests get up to %d s)", sig,
                     cfg->shutdown_timeout_s);
            sd_notify(0, "STOPPING=1");
            return cfg;
        }
    }
}

/* Every worker gets its socket, loop, curl multi and HTTP front (not yet
 * its thread).  0, or 1 when one could not be set up. */
static int setup_workers(struct orp_config *cfg, struct worker *workers, int nworkers,
                         unsigned per_worker, int64_t watchdog_ms, int activated, int *port)
{
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        w->cfg = config_hold(cfg);
        w->all = workers;
        w->n_all = nworkers;
        w->max_connections = per_worker;
        w->watchdog_ms = watchdog_ms;
        atomic_init(&w->pending, NULL);
        atomic_init(&w->heartbeat_ms, util_mono_ms());
        w->loop.epfd = w->loop.wake_fd = -1;
        w->listen_fd = worker_socket(cfg, activated == 1, port);
        if (w->listen_fd < 0 || worker_init(w) < 0)
            return 1;
    }
    return 0;
}

static int run_daemon(struct orp_config *cfg)
{
    int nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    int port = cfg->listen_port, started = 0, rc = 0, activated;
    struct worker *workers;
    sigset_t set;
    uint64_t wd_usec = 0;
    unsigned per_worker;

    if (nworkers < 1)
        nworkers = 1;
    per_worker = (unsigned)cfg->limits_max_connections / (unsigned)nworkers;
    if (per_worker < 1)
        per_worker = 1;

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    activated = sd_listen_fds(1);
    if (activated > 1) {
        log_error("systemd passed %d sockets; orproxy takes exactly one", activated);
        return 1;
    }
    if (activated == 1) {
        int fl = fcntl(SD_LISTEN_FDS_START, F_GETFL);
        fcntl(SD_LISTEN_FDS_START, F_SETFL, fl | O_NONBLOCK);
        port = -1;
    }
    if (sd_watchdog_enabled(0, &wd_usec) <= 0)
        wd_usec = 0;

    if (open_state(cfg) < 0) {
        config_release(cfg); /* ours (see main) */
        return 1;
    }
    {
        char err[512];
        struct orp_config *merged = managed_start(cfg, err, sizeof err);
        if (merged == NULL) {
            log_error("%s", err);
            managed_stop();
            close_state();
            return 1;
        }
        cfg = merged; /* the file config is its base now */
        housekeeping_set_config(cfg);
        bshare_set_config(cfg);
        alerts_set_config(cfg); /* managed clients' budgets alert too */
    }
    workers = calloc((size_t)nworkers, sizeof *workers);
    if (workers == NULL)
        return 1;
    rc = setup_workers(cfg, workers, nworkers, per_worker, (int64_t)(wd_usec / 1000), activated, &port);
    if (rc == 0) {
        char err[512];
        if (config_check_running(cfg, socket_is_loopback(workers[0].listen_fd), err, sizeof err) < 0) {
            log_error("%s", err);
            rc = 1;
        }
    }
    if (rc == 0) {
        published.w = workers;
        published.n = nworkers;
        managed_set_publisher(publish, NULL);
        admin_set_workers(workers, nworkers);
        for (int i = 0; i < nworkers; i++) {
            if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
                log_error("cannot start worker %d", i);
                rc = 1;
                break;
            }
            started++;
        }
    }
    if (rc == 0) {
        log_listening(cfg, activated, port, nworkers);
        sd_notify(0, "READY=1\nSTATUS=serving");
        cfg = serve(cfg, &set, workers);
    }
    for (int i = 0; i < started; i++)
        worker_request_stop(&workers[i]);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    local_shutdown(); /* before the loops it answers to go away */
    managed_set_publisher(NULL, NULL);
    for (int i = 0; i < nworkers; i++)
        worker_destroy(&workers[i]);
    free(workers);
    close_state();
    managed_stop();
    config_release(cfg);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {"settings", no_argument, NULL, 'S'},     {"settings-man", no_argument, NULL, 'M'},
        {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONFIG;
    int check_only = 0, c;
    struct orp_config *cfg;
    char err[1024];

    if (argc > 1 && strcmp(argv[1], "usage") == 0)
        return usage_cmd(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "key") == 0)
        return key_cmd(argc - 1, argv + 1);

    while ((c = getopt_long(argc, argv, "c:th", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'V':
            printf("orproxy %s\n", ORP_VERSION);
            return 0;
        case 'S':
            config_doc_markdown(stdout);
            return 0;
        case 'M':
            config_doc_man(stdout);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "orproxy: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    cfg = config_load_new(path, err, sizeof err);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (check_only) {
        fprintf(stderr, "orproxy: configuration %s is ok%s\n", path,
                cfg->upstream_key ? "" : " (no upstream key found: API calls will answer 500)");
        config_release(cfg);
        return 0;
    }
    log_setup(cfg->log_level, cfg->log_format);
    return run_daemon(cfg); /* takes the reference */
}
