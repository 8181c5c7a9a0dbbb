/*
 * soak.c - the load generator and ledger check behind `make soak` (tests/soak/run.sh).
 *
 *   soak run --port P --seconds S [--concurrency 32] [--max N] [--phase NAME] [--seed N] --ids FILE
 *   soak verify --db PATH --ids FILE [--ids FILE ...]
 *   soak freeport
 *
 * `run` keeps `concurrency` requests in flight against orproxy on 127.0.0.1:P with one libcurl
 * multi handle, until S seconds have passed or N requests were started, then lets the ones in
 * flight finish (each is bounded by its own timeout) and exits. Every request is one of the
 * kinds below, picked at random by weight, steered through the fake upstream's "fake" object, and
 * carries X-Request-Id soak-PHASE-SEQ. Whether it reached the daemon is decided from what the
 * client saw: a response status, or (for the kind that hangs up while upstream is still
 * thinking) a fully sent request; anything else is "uncertain" and reported. One line per request
 * goes to --ids: "ID KIND REACHED STATUS CURLCODE" with REACHED 1, 0 or ?. Responses that do not
 * match what the kind must produce (a 502 where 200 was due, a stream without [DONE]) are
 * counted as unexpected and fail the run.
 *
 * `verify` reads the ledger after orproxy exited and checks it against the --ids files: every
 * request that reached the daemon has exactly one row, no row belongs to a request not sent, no
 * request has two rows. It prints the counts and exits non-zero on any mismatch.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum kind {
    K_JSON,
    K_STREAM,
    K_SLOW_STREAM,
    K_ABORT_STREAM,
    K_ABORT_WAIT,
    K_RETRY_500,
    K_ERROR_500,
    K_ERROR_400,
    K_STREAM_ERROR,
    K_EMBEDDINGS,
    K_BAD_JSON,
    K_MODELS,
    K_COUNT
};

/* name, weight, expected status (0: the client hangs up before one arrives) */
static const struct {
    const char *name;
    int weight;
    long status;
} kinds[K_COUNT] = {
    [K_JSON] = {"json", 20, 200},
    [K_STREAM] = {"stream", 20, 200},
    [K_SLOW_STREAM] = {"slow_stream", 6, 200},
    [K_ABORT_STREAM] = {"abort_stream", 10, 200},
    [K_ABORT_WAIT] = {"abort_wait", 4, 0},
    [K_RETRY_500] = {"retry_500", 8, 200},
    [K_ERROR_500] = {"error_500", 5, 500},
    [K_ERROR_400] = {"error_400", 6, 400},
    [K_STREAM_ERROR] = {"stream_error", 6, 200},
    [K_EMBEDDINGS] = {"embeddings", 6, 200},
    [K_BAD_JSON] = {"bad_json", 4, 400},
    [K_MODELS] = {"models", 3, 200},
};

#define BODY_KEEP 65536

/* One transfer; owned by the run loop, freed when curl reports it done. */
struct xfer {
    enum kind kind;
    char id[64];
    char body[512];
    char *resp;
    size_t len;
    size_t abort_after;
    struct curl_slist *hdrs;
};

struct tally {
    long sent, reached, uncertain, unexpected;
    long by_class[6]; /* 0: no status, 1xx..5xx */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (x->len < BODY_KEEP) {
        size_t keep = len < BODY_KEEP - x->len ? len : BODY_KEEP - x->len;
        memcpy(x->resp + x->len, data, keep);
        x->len += keep;
        x->resp[x->len] = '\0';
    }
    if (x->abort_after > 0 && x->len >= x->abort_after)
        return 0; /* hang up mid-stream */
    return len;
}

static enum kind pick(unsigned *seed)
{
    int total = 0;
    for (int k = 0; k < K_COUNT; k++)
        total += kinds[k].weight;
    int r = rand_r(seed) % total;
    for (int k = 0; k < K_COUNT; k++) {
        if (r < kinds[k].weight)
            return (enum kind)k;
        r -= kinds[k].weight;
    }
    return K_JSON;
}

static CURL *make_xfer(int port, const char *phase, long seq, unsigned *seed)
{
    struct xfer *x = calloc(1, sizeof *x);
    CURL *e = curl_easy_init();
    if (x == NULL || e == NULL || (x->resp = malloc(BODY_KEEP + 1)) == NULL) {
        fprintf(stderr, "soak: out of memory\n");
        exit(2);
    }
    x->kind = pick(seed);
    x->resp[0] = '\0';
    snprintf(x->id, sizeof x->id, "soak-%s-%06ld", phase, seq);
    const char *path = "/v1/chat/completions";
    long timeout_ms = 30000;
    const char *m = "\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    switch (x->kind) {
    case K_JSON:
        snprintf(x->body, sizeof x->body, "{%s,\"fake\":{\"tag\":\"json\"}}", m);
        break;
    case K_STREAM:
        snprintf(x->body, sizeof x->body, "{%s,\"stream\":true,\"fake\":{\"events\":%d}}", m,
                 4 + rand_r(seed) % 12);
        break;
    case K_SLOW_STREAM:
        snprintf(x->body, sizeof x->body,
                 "{%s,\"stream\":true,\"fake\":{\"events\":8,\"interval_ms\":150}}", m);
        break;
    case K_ABORT_STREAM:
        snprintf(x->body, sizeof x->body,
                 "{%s,\"stream\":true,\"fake\":{\"events\":40,\"interval_ms\":20}}", m);
        x->abort_after = 300 + (size_t)(rand_r(seed) % 1500);
        break;
    case K_ABORT_WAIT:
        snprintf(x->body, sizeof x->body, "{%s,\"fake\":{\"hang_ms\":1500}}", m);
        timeout_ms = 300;
        break;
    case K_RETRY_500:
        snprintf(x->body, sizeof x->body,
                 "{%s,\"fake\":{\"fail_times\":1,\"fail_status\":500,\"key\":\"%s\"}}", m, x->id);
        break;
    case K_ERROR_500:
        snprintf(x->body, sizeof x->body, "{%s,\"fake\":{\"status\":500}}", m);
        break;
    case K_ERROR_400:
        snprintf(x->body, sizeof x->body, "{%s,\"fake\":{\"status\":400}}", m);
        break;
    case K_STREAM_ERROR:
        snprintf(x->body, sizeof x->body, "{%s,\"stream\":true,\"fake\":{\"events\":6,\"%s\":3}}",
                 m, rand_r(seed) % 2 ? "error_after" : "drop_after");
        break;
    case K_EMBEDDINGS:
        path = "/v1/embeddings";
        snprintf(x->body, sizeof x->body,
                 "{\"model\":\"openai/text-embedding-3-small\",\"input\":\"soak\"}");
        break;
    case K_BAD_JSON:
        snprintf(x->body, sizeof x->body, "{\"model\": not json");
        break;
    case K_MODELS:
        path = "/v1/models";
        x->body[0] = '\0';
        break;
    case K_COUNT:
        break;
    }
    char url[128], rid[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(rid, sizeof rid, "X-Request-Id: %s", x->id);
    x->hdrs = curl_slist_append(x->hdrs, rid);
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    if (x->kind != K_MODELS) {
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    return e;
}

/* What the kind must have produced; NULL if it did. */
static const char *unexpected(const struct xfer *x, long status, CURLcode rc)
{
    if (x->kind == K_ABORT_WAIT)
        return status == 0 && rc == CURLE_OPERATION_TIMEDOUT ? NULL : "answered before the client hung up";
    if (status != kinds[x->kind].status)
        return "status";
    if (x->kind == K_ABORT_STREAM)
        return rc == CURLE_WRITE_ERROR ? NULL : "stream ended before the client hung up";
    if (rc != CURLE_OK)
        return "transfer failed";
    if ((x->kind == K_STREAM || x->kind == K_SLOW_STREAM) && strstr(x->resp, "data: [DONE]") == NULL)
        return "stream without [DONE]";
    if (x->kind == K_STREAM_ERROR &&
        (strstr(x->resp, "\"error\"") == NULL || strstr(x->resp, "data: [DONE]") != NULL))
        return "stream without its error event";
    return NULL;
}

static int cmd_run(int argc, char **argv)
{
    int port = 0, conc = 32;
    long max = 1000000;
    double seconds = 60;
    unsigned seed = 1;
    const char *phase = "run", *ids_path = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max"))
            max = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--phase"))
            phase = argv[i + 1];
        else if (!strcmp(argv[i], "--seed"))
            seed = (unsigned)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--ids"))
            ids_path = argv[i + 1];
    }
    if (port <= 0 || ids_path == NULL || conc <= 0 || seconds <= 0) {
        fprintf(stderr, "usage: soak run --port P --seconds S --ids FILE [...]\n");
        return 2;
    }
    FILE *ids = fopen(ids_path, "a");
    if (ids == NULL) {
        perror(ids_path);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    struct tally t[K_COUNT], all;
    memset(t, 0, sizeof t);
    memset(&all, 0, sizeof all);
    double start = now_s(), stop_at = start + seconds, hard_stop = stop_at + 60;
    long seq = 0;
    int running = 0, inflight = 0, shown = 0;

    for (;;) {
        double now = now_s();
        while (inflight < conc && now < stop_at && seq < max) {
            curl_multi_add_handle(multi, make_xfer(port, phase, ++seq, &seed));
            inflight++;
        }
        if (inflight == 0)
            break;
        if (now > hard_stop) {
            fprintf(stderr, "soak: %d requests still running 60 s after the end; giving up\n",
                    inflight);
            break;
        }
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode rc = msg->data.result;
            struct xfer *x;
            long status = 0;
            curl_off_t up = 0;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
            /* Reached the daemon: it answered, or the whole request was sent (the kind that
             * hangs up while upstream thinks; MHD reads a request within microseconds and the
             * client waits 300 ms). Anything else cannot be told from here. */
            char reached = status > 0 ? '1' : '?';
            if (status == 0 && x->kind == K_ABORT_WAIT && rc == CURLE_OPERATION_TIMEDOUT &&
                up == (curl_off_t)strlen(x->body))
                reached = '1';
            const char *why = unexpected(x, status, rc);
            struct tally *k = &t[x->kind];
            k->sent++;
            all.sent++;
            k->reached += reached == '1';
            all.reached += reached == '1';
            k->uncertain += reached == '?';
            all.uncertain += reached == '?';
            int cls = status >= 100 && status < 600 ? (int)(status / 100) : 0;
            k->by_class[cls]++;
            all.by_class[cls]++;
            if (why != NULL) {
                k->unexpected++;
                all.unexpected++;
                if (shown++ < 10)
                    fprintf(stderr, "soak: unexpected %s %s: %s (status %ld, curl %d: %s) %.200s\n",
                            kinds[x->kind].name, x->id, why, status, (int)rc,
                            curl_easy_strerror(rc), x->resp);
            }
            fprintf(ids, "%s %s %c %ld %d\n", x->id, kinds[x->kind].name, reached, status,
                    (int)rc);
            curl_multi_remove_handle(multi, e);
            curl_easy_cleanup(e);
            curl_slist_free_all(x->hdrs);
            free(x->resp);
            free(x);
            inflight--;
        }
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    double took = now_s() - start;
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    fclose(ids);

    printf("soak %s: %ld requests in %.1f s (%.0f/s), concurrency %d\n", phase, all.sent, took,
           all.sent / took, conc);
    printf("  %-13s %7s %7s %9s %10s %6s %6s %6s %6s\n", "kind", "sent", "reached", "uncertain",
           "unexpected", "none", "2xx", "4xx", "5xx");
    for (int k = 0; k < K_COUNT; k++)
        printf("  %-13s %7ld %7ld %9ld %10ld %6ld %6ld %6ld %6ld\n", kinds[k].name, t[k].sent,
               t[k].reached, t[k].uncertain, t[k].unexpected, t[k].by_class[0], t[k].by_class[2],
               t[k].by_class[4], t[k].by_class[5]);
    printf("  %-13s %7ld %7ld %9ld %10ld %6ld %6ld %6ld %6ld\n", "total", all.sent, all.reached,
           all.uncertain, all.unexpected, all.by_class[0], all.by_class[2], all.by_class[4],
           all.by_class[5]);
    return all.unexpected == 0 && all.sent > 0 && inflight == 0 ? 0 : 1;
}

/* ---- verify ------------------------------------------------------------------------------ */

struct sent {
    char id[64];
    char reached;
    int rows;
};

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct sent *)a)->id, ((const struct sent *)b)->id);
}

static int cmd_verify(int argc, char **argv)
{
    const char *db_path = NULL;
    struct sent *v = NULL;
    size_t n = 0, cap = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--db")) {
            db_path = argv[i + 1];
        } else if (!strcmp(argv[i], "--ids")) {
            FILE *f = fopen(argv[i + 1], "r");
            if (f == NULL) {
                perror(argv[i + 1]);
                return 2;
            }
            char line[256], id[64], kind[32], reached;
            while (fgets(line, sizeof line, f) != NULL) {
                if (sscanf(line, "%63s %31s %c", id, kind, &reached) != 3)
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 4096;
                    v = realloc(v, cap * sizeof *v);
                    if (v == NULL)
                        return 2;
                }
                snprintf(v[n].id, sizeof v[n].id, "%s", id);
                v[n].reached = reached;
                v[n].rows = 0;
                n++;
            }
            fclose(f);
        }
    }
    if (db_path == NULL) {
        fprintf(stderr, "usage: soak verify --db PATH --ids FILE [--ids FILE ...]\n");
        return 2;
    }
    if (n > 0)
        qsort(v, n, sizeof *v, by_id);

    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long rows = 0, unexpected_rows = 0, shown = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT request_id FROM requests", -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "soak: cannot read %s: %s\n", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        free(v);
        return 2;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        struct sent key;
        rows++;
        snprintf(key.id, sizeof key.id, "%s", id ? id : "");
        struct sent *hit = n ? bsearch(&key, v, n, sizeof *v, by_id) : NULL;
        if (hit != NULL) {
            hit->rows++;
        } else {
            unexpected_rows++;
            if (shown++ < 10)
                fprintf(stderr, "soak: ledger row for a request not sent: %s\n", key.id);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);

    long reached = 0, missing = 0, dup = 0, uncertain = 0, uncertain_rows = 0, not_reached_rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].rows > 1) {
            dup++;
            if (shown++ < 20)
                fprintf(stderr, "soak: %d ledger rows for %s\n", v[i].rows, v[i].id);
        }
        if (v[i].reached == '1') {
            reached++;
            if (v[i].rows == 0) {
                missing++;
                if (shown++ < 20)
                    fprintf(stderr, "soak: no ledger row for %s\n", v[i].id);
            }
        } else if (v[i].reached == '?') {
            uncertain++;
            uncertain_rows += v[i].rows > 0;
        } else {
            not_reached_rows += v[i].rows > 0;
        }
    }
    printf("ledger: %ld rows; %zu requests sent, %ld reached the daemon, %ld uncertain "
           "(%ld of them recorded); missing %ld, duplicated %ld, rows for requests not sent %ld\n",
           rows, n, reached, uncertain, uncertain_rows, missing, dup, unexpected_rows);
    int ok = n > 0 && missing == 0 && dup == 0 && unexpected_rows == 0 && not_reached_rows == 0 &&
             rows == reached + uncertain_rows;
    printf("ledger: rows %s requests that reached the daemon (%ld vs %ld)\n",
           ok ? "==" : "!=", rows, reached + uncertain_rows);
    free(v);
    return ok ? 0 : 1;
}

static int cmd_freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return 1;
    printf("%d\n", ntohs(sa.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return cmd_run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "verify"))
        return cmd_verify(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "freeport"))
        return cmd_freeport();
    fprintf(stderr, "usage: soak run|verify|freeport ... (see tests/soak/soak.c)\n");
    return 2;
}
