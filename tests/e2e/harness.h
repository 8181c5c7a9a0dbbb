/*
 * harness.h - the end-to-end test harness: processes, HTTP client, fake upstream inspection,
 * orproxy's keys, logs, ledger and metrics, raw sockets.
 *
 * End-to-end tests start the fake OpenRouter (tests/fake_openrouter.c) and orproxy as child
 * processes on loopback ports, talk to them over plain HTTP/1.1 with libcurl, and then ask the
 * fake what reached it, and orproxy's log, ledger and metrics what it recorded. Everything here
 * is blocking and bounded in time; nothing needs a fork-mode Check runner (use CK_NOFORK).
 * Functions return 0 on success and -1 on failure unless said otherwise; failures are explained
 * on stderr.
 *
 * Global state: h_fake_port (below), curl's global init (done once, lazily), nothing else.
 * Binaries: $FAKE_BIN (default build/fake_openrouter) and $ORP_BIN (default build/orproxy).
 * Start processes from the main thread: children get SIGKILL when the thread that forked them
 * ends (PR_SET_PDEATHSIG), which is what keeps a crashed test from leaving daemons behind.
 *
 * A test in outline:
 *     struct h_proc fake = {0}, orp = {0};
 *     ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
 *     const char *env[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};
 *     ck_assert_int_eq(h_orproxy_start(&orp, "listen = 127.0.0.1:@PORT@\n...@FAKE@...", env), 0);
 *     struct h_resp r;
 *     h_request(&r, orp.port, "POST", "/v1/chat/completions",
 *               "{\"stream\":true,\"fake\":{\"tag\":\"t1\",\"events\":5}}", NULL, NULL);
 *     cJSON *rec = h_fake_wait(fake.port, "t1", "completed", 2000);  ... assert, free ...
 *     h_proc_stop(&orp, SIGTERM, 5000); h_proc_cleanup(&orp); (same for fake)
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- secrets: canary keys and the capture ------------------------------------------------- */

/*
 * The upstream keys every end-to-end test gives orproxy. They are recognisable on purpose:
 * tests/secrets/check_secrets.sh reads these lines and greps everything a client, a log, the
 * ledger or a metrics scrape showed during the suite for each key and for every 12-character
 * piece of its secret part. H_CANARY_KEY is the shared account key; the others stand for a
 * client's own account (upstream_key_env) and pass-through keys. Never use another upstream key
 * in a test, or the check no longer covers it.
 */
#define H_CANARY_KEY "sk-or-v1-CANARY01d4b736b24fc1ea28bb7571c26568c86fb421a9228286a1513665228e"
#define H_CANARY_KEY_2 "sk-or-v1-CANARY02c0f8d05d1590cda025356b4c4699417df78d70e02ffe23a39293b526"
#define H_CANARY_KEY_3 "sk-or-v1-CANARY03d4915c95d1ba198a5470ff821dd3ff84696da0e97811b1e3b7a8dc2d"
#define H_CANARY_KEY_4 "sk-or-v1-CANARY041b7d9ed8313e8f6175476488e847ac27253aecdbb35c11348f05ef6d"

/*
 * The capture. When $ORP_CAPTURE_DIR is set (the Makefile sets it to $(BUILD)/capture), each
 * test program keeps, under $ORP_CAPTURE_DIR/<program>-<pid>/:
 *   responses.txt  every response h_request()/h_request_async() returned from anything but a fake
 *                  this program started: status line, headers and body, as received (metrics
 *                  scrapes included);
 *   run.txt        stdout and stderr of every h_run() (orproxy -t, orproxy usage, key new, ...);
 *   orproxy-N/     the scratch directory of each orproxy it started, copied by h_proc_cleanup()
 *                  before removal: orproxy.log (stderr, sanitizer reports included), state/
 *                  (usage.db, its WAL, prices.json), any JSONL ledger. orproxy.conf and files
 *                  whose name contains "key" are inputs, not outputs, and are not copied.
 * Without $ORP_CAPTURE_DIR nothing is kept.
 */

/* $ORP_CAPTURE_DIR/<program>-<pid> (created on first use), or NULL when not capturing. */
const char *h_capture_dir(void);

/* ---- processes --------------------------------------------------------------------------- */

/*
 * A child process and its scratch directory. Zero-initialise before first use
 * (struct h_proc p = {0};). Owned by the caller; h_proc_cleanup() releases everything.
 * dir holds the process's files: orproxy.conf, orproxy.log or fake.log (stderr; orproxy's
 * stdout too; appended to across restarts). A stopped h_proc may be started again with the same
 * function: dir and port are kept, so a restarted fake or orproxy is found where it was.
 */
struct h_proc {
    pid_t pid;      /* 0 when not running */
    int port;       /* the port it listens on */
    char dir[256];  /* scratch directory, created on first start, removed by cleanup */
    char conf[300]; /* dir/orproxy.conf (orproxy only) */
    char log[300];  /* dir/orproxy.log or dir/fake.log */
};

/*
 * Port of the fake that @FAKE@ stands for in orproxy configs. h_fake_start() sets it to the
 * fake it started; a test may assign it directly.
 */
extern int h_fake_port;

/* A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close). -1 on error. */
int h_free_port(void);

/*
 * Starts $FAKE_BIN [extra_args...] (split on blanks; NULL for none), e.g. "--require-key k";
 * "--port p->port" is added when p->port is already set (a restart). Waits up to 5 s for its
 * "PORT n" line; sets p->port and h_fake_port.
 */
int h_fake_start(struct h_proc *p, const char *extra_args);

/*
 * Writes conf_text to p->conf with substitutions, then starts $ORP_BIN -c p->conf and waits up to
 * 10 s for GET /healthz to answer 200 (on failure the log is printed to stderr).
 *   @PORT@  p->port (a free port chosen here unless p->port is already set)
 *   @FAKE@  h_fake_port
 *   @DIR@   p->dir (for state files; survives a restart on the same h_proc)
 * env: NULL-terminated "NAME=value" entries added to the inherited environment ("NAME" alone
 * removes NAME); OPENROUTER_API_KEY is never inherited, only set if env names it. May be NULL.
 */
int h_orproxy_start(struct h_proc *p, const char *conf_text, const char *const *env);

/*
 * h_orproxy_start in two halves, for tests that start several at once: spawn writes the config
 * and starts the process without waiting; ready waits (up to 10 s) for GET /healthz to answer 200.
 */
int h_orproxy_spawn(struct h_proc *p, const char *conf_text, const char *const *env);
int h_orproxy_ready(struct h_proc *p);

/* conf_text with the substitutions above applied (malloc'd; caller frees). For reload tests. */
char *h_subst(const struct h_proc *p, const char *conf_text);

/*
 * Sends sig and waits up to timeout_ms for the exit. Returns the exit code, 128+N if signal N
 * killed it, or -1 if it had to be killed with SIGKILL (or was not running). Any status other
 * than 0 or 128+sig (a crash, a sanitizer report) also prints the process's log to stderr.
 */
int h_proc_stop(struct h_proc *p, int sig, int timeout_ms);

/*
 * The end of a test whose orproxy must have come through it unharmed: checks that it never wrote
 * secret (NULL: no check) to its log and, if it was started, that it is still running, then
 * stops it (SIGTERM, up to timeout_ms) and checks that it exited 0. Returns NULL when all of
 * that holds, else what did not (a static string: the first failure); p is stopped either way.
 */
const char *h_orproxy_finish(struct h_proc *p, const char *secret, int timeout_ms);

/* Kills (SIGKILL) a process still running, removes p->dir, zeroes *p. Safe to call twice. */
void h_proc_cleanup(struct h_proc *p);

/*
 * Runs argv (argv[0] is looked up in PATH if it has no '/'), inheriting the environment, with a
 * 10 s limit. *out and *err (either may be NULL) receive its stdout and stderr (malloc'd).
 * Returns the exit code, 128+N if killed by signal N, -1 on failure or timeout.
 */
int h_run(const char *const argv[], char **out, char **err);

/*
 * A "Vm...:" line of /proc/<pid>/status in KiB, field with its colon: "VmRSS:" (resident now)
 * or "VmHWM:" (the peak). -1 if the process or the line is not there.
 */
long h_proc_kb(pid_t pid, const char *field);

/* ---- files ------------------------------------------------------------------------------- */

/* Whole file, NUL-terminated (malloc'd), or NULL. */
char *h_read_file(const char *path);

/* Creates or truncates path with text. */
int h_write_file(const char *path, const char *text);

/* Writes text to a new file under $TMPDIR (or /tmp); returns its path (malloc'd; caller unlinks
 * and frees), or NULL. */
char *h_temp_file(const char *text);

/* ---- HTTP client ------------------------------------------------------------------------- */

/* When a piece of the body arrived and how many body bytes had arrived by then. */
struct h_tick {
    double t;
    size_t bytes;
};

struct h_header {
    char *name, *value;
};

/*
 * One response. Filled by h_request(); owned by the caller; h_resp_free() releases it.
 * Times are h_now() seconds; t_headers is 0 if no header block was completed.
 */
struct h_resp {
    int curl_code;            /* CURLcode: 0 = transfer complete */
    long status;              /* HTTP status of the last response, 0 if none */
    char *raw_headers;        /* every header line received, as sent (NUL-terminated) */
    struct h_header *headers; /* the last response's headers, in order */
    size_t nheaders;
    char *body; /* NUL-terminated; len excludes the NUL */
    size_t len;
    double t_start, t_headers, t_end;
    struct h_tick *ticks; /* one per write callback */
    size_t nticks;
    char error[256]; /* curl's error text, "" if none */
};

struct h_req_opts {
    size_t abort_after_bytes; /* > 0: hang up once this many body bytes arrived */
    int timeout_ms;           /* whole transfer; 0 = 15000 */
    /* Called after each piece of body is appended; nonzero return hangs up. */
    int (*on_body)(struct h_resp *r, const char *data, size_t n, void *arg);
    void *arg;
};

/* Monotonic clock, seconds. */
double h_now(void);

/*
 * One HTTP/1.1 request to 127.0.0.1:port (no proxy, no Accept-Encoding, no Expect).
 * body NULL sends none; with a body and no Content-Type in headers, application/json is sent.
 * headers: NULL-terminated "Name: value" list, or NULL. opts may be NULL.
 * Fills *r (zeroed first) and returns r->curl_code.
 */
int h_request(struct h_resp *r, int port, const char *method, const char *path, const char *body,
              const char *const *headers, const struct h_req_opts *opts);

/* Value of the first header called name (any case) in the last response, or NULL. */
const char *h_header(const struct h_resp *r, const char *name);

void h_resp_free(struct h_resp *r);

/*
 * The same request on its own thread, for concurrency and signal-during-request tests. Arguments
 * are copied. h_async_wait() joins it, moves the response into *r, frees the handle and returns
 * r->curl_code. Every h_async must be waited for.
 */
struct h_async;
struct h_async *h_request_async(int port, const char *method, const char *path, const char *body,
                                const char *const *headers, const struct h_req_opts *opts);
int h_async_wait(struct h_async *a, struct h_resp *r);

/*
 * Splits an SSE body into events at blank lines (LF or CRLF). Each element is one event's text
 * without the blank line; *n receives the count. Free with h_strv_free(). Never NULL.
 */
char **h_sse_split(const char *body, size_t *n);
void h_strv_free(char **v, size_t n);

/* ---- fake upstream inspection ------------------------------------------------------------ */

/*
 * The fake's request records (GET /_fake/requests): a cJSON array the caller deletes, or NULL.
 * Record members: seq (1-based; gen-<seq> is its generation id), method, path (with query),
 * headers {lower-case name: value}, body (exact text), tag (fake.tag or null), status (HTTP status
 * sent, 0 if none), completed (response fully sent), aborted (connection ended any other way:
 * client hung up, or the fake cut it on purpose: drop_after, close_before_headers), events_sent
 * (SSE events, comments included, handed to the socket).
 */
cJSON *h_fake_requests(int fake_port);

/* Forgets all records and fail_times counters. */
void h_fake_reset(int fake_port);

/*
 * Polls (every 20 ms, up to timeout_ms) for the first record whose tag equals tag and whose
 * boolean member field is true (field NULL: any record with that tag). Returns a copy of that
 * record (caller deletes) or NULL.
 */
cJSON *h_fake_wait(int fake_port, const char *tag, const char *field, int timeout_ms);

/* Number of records with that tag (tag NULL: all records), -1 if the fake did not answer. */
int h_fake_count(int fake_port, const char *tag);

/* ---- orproxy's outputs: keys, logs, the ledger, metrics ---------------------------------- */

/*
 * Runs `$ORP_BIN key new name` (h_run) and keeps what it prints: the client's secret key into
 * key (keylen bytes with the NUL; a longer key is a failure, not cut) and its SHA-256, the
 * key_sha256 of a clients entry, into hash (64 hex digits and a NUL).
 */
int h_key_new(const char *name, char *key, size_t keylen, char hash[65]);

/*
 * Polls p->log (every 20 ms, up to timeout_ms; 0 looks once) for needle. Returns 1 when the log
 * contains it, 0 when it did not appear in time. Reports nothing: the caller asserts.
 */
int h_log_wait(const struct h_proc *p, const char *needle, int timeout_ms);

/*
 * The first column of the first row sql returns from the SQLite database db_path (orproxy's
 * ledger is <dir>/state/usage.db), as text (malloc'd; "NULL" for an SQL NULL). Polls every
 * 20 ms, up to timeout_ms (0 tries once), opening the database read-only on each try, so a
 * row the ledger writer has not flushed yet, a database not created yet and a moment's lock
 * are waited out. NULL when no row came in time.
 */
char *h_db_value(const char *db_path, const char *sql, int timeout_ms);

/*
 * GET /metrics from 127.0.0.1:port with headers (as h_request; NULL for none) and the value of
 * one series in it: series is the whole name with its labels as orproxy prints them
 * (e.g. orproxy_reconcile_total{result="answered"}), matched at the start of a line and
 * followed by a blank; the value is read as an integer. Returns the HTTP status (0 when no
 * response); *value is -1 when the series is absent or the status is not 200.
 */
long h_metric(int port, const char *const *headers, const char *series, long long *value);

/*
 * Polls GET /readyz on 127.0.0.1:port every 50 ms until it answers 200 (orproxy has its price
 * table: before that every model counts as unpriced), up to timeout_ms. 0, or -1 (reported).
 */
int h_wait_ready(int port, int timeout_ms);

/* ---- raw sockets ------------------------------------------------------------------------- */

/*
 * For the clients libcurl would not be: exact bytes out, the answer read as it comes.
 * h_raw_connect() returns a blocking TCP socket connected to 127.0.0.1:port (caller closes),
 * or -1. h_raw_send() sends all n bytes (no SIGPIPE), or fails.
 */
int h_raw_connect(int port);
int h_raw_send(int fd, const char *data, size_t n);

/*
 * Reads fd until the peer closes or timeout_ms pass; returns what came (malloc'd,
 * NUL-terminated, the first cap bytes kept, the rest read and dropped) and sets *closed to
 * whether the peer closed (or the read failed).
 */
char *h_raw_read(int fd, int timeout_ms, size_t cap, int *closed);

/*
 * Reads fd until a complete response header block ("\r\n\r\n"; a "100 Continue" block
 * counts), 8 KiB or timeout_ms; byte by byte, so never past the block. Returns what came
 * (malloc'd, NUL-terminated).
 */
char *h_raw_read_head(int fd, int timeout_ms);

/* The main() of an end-to-end test program: runs one suite without forking
 * (the harness kills its children if the test process dies) and exits
 * non-zero when any test failed. */
#define H_MAIN(suite_fn)                                  \
    int main(void)                                        \
    {                                                     \
        SRunner *sr = srunner_create(suite_fn());         \
        int failed;                                       \
        srunner_set_fork_status(sr, CK_NOFORK);           \
        srunner_run_all(sr, CK_NORMAL);                   \
        failed = srunner_ntests_failed(sr);               \
        srunner_free(sr);                                 \
        return failed == 0 ? 0 : 1;                       \
    }

#endif
