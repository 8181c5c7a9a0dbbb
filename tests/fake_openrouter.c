/*
 * fake_openrouter.c - a scriptable stand-in for OpenRouter, for end-to-end tests.
 *
 * The fake plays the role of curl's test servers: it answers the OpenRouter endpoints a proxy uses
 * (see /work/shared/OPENROUTER.md) and lets each test steer the answer through an optional "fake"
 * object in the POST body, which a proxy forwards untouched (status codes, Retry-After, hangs,
 * dropped connections, paced or byte-by-byte SSE streams, mid-stream errors, usage numbers). Every
 * request is recorded (headers, exact body, whether the response completed or the client went
 * away) and the records are served as JSON on GET /_fake/requests, so a test asserts what reached
 * the upstream and how the proxy treated the connection. A POST to /hooks/... is recorded and
 * answered 200, so the fake also serves as the alerts' webhook receiver.
 *
 * MHD runs one thread per connection, so handlers and content readers may simply sleep; every
 * sleep is cut into 10 ms steps that watch a global stop flag and the peer socket, so SIGTERM and
 * clients that hang up are noticed promptly. The only shared state is the record table (g_db),
 * guarded by one mutex; a reset bumps an epoch so late updates from old connections are dropped.
 *
 * Usage: fake_openrouter [--port N] [--require-key KEY] [--tls-cert PEM --tls-key PEM]
 * (prints "PORT <n>" once listening). With --tls-cert and --tls-key it serves HTTPS only
 * (libmicrohttpd's GnuTLS), GET /_fake/requests included.
 * Paths match by suffix, so any base works. --require-key answers 401 to requests without
 * "Authorization: Bearer KEY", except GET /models, which is public upstream too.
 *
 * The "fake" object (every member optional):
 *   tag                 copied into the record
 *   status, retry_after answer this error status (+ Retry-After) in OpenRouter's error shape
 *   fail_times, fail_status (503), key   the first fail_times requests per key fail
 *   hang_ms             wait before anything is sent (ends early if the client hangs up)
 *   close_before_headers  read the request, close without a response
 *   notjson             200 application/json "this is not json"
 *   body_bytes          pad the JSON completion to about this size
 *   usage {..}          members replace/extend the default usage; null removes one
 *   generation_lag      /generation answers 404 this many times first
 *   served_model        the "model" the answer (and /generation) reports instead of the
 *                       request's; its bytes go out as received, invalid UTF-8 included
 *   streams ("stream":true): comments, events (3), interval_ms, error_after,
 *   error_code_string, drop_after, hang_after, no_done, crlf, byte_by_byte, event_bytes,
 *   stream_bytes (about this many bytes of content events, 64 KiB each unless event_bytes
 *   says otherwise; sets events), spaced (a blank after every ':' and ',' outside strings in
 *   each data event's JSON, as pretty-printing providers send it)
 *   non-stream answers, sent through a reader with the full Content-Length:
 *   cut_after_bytes     close the connection after this many body bytes
 *   hang_after_bytes    go silent after this many body bytes (0: headers, then silence)
 *   trickle_ms, trickle_bytes (16)   send the body in pieces, pausing before each one
 *   huge_bytes          a well-formed JSON completion of exactly this many bytes, generated
 *                       on the fly (padding) so a gigabyte costs no memory
 *   rst                 every cut (close_before_headers, drop_after, cut_after_bytes) is a
 *                       TCP reset (SO_LINGER 0) instead of an orderly close
 * Control: GET /_fake/requests (records as JSON), POST /_fake/reset. tests/e2e/test_fake.c shows
 * each behaviour. The file is long because it is the whole upstream in one source.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAKE_PROVIDER "FakeProvider"
#define FAKE_DEFAULT_MODEL "openai/gpt-4o-mini"
#define FAKE_DEFAULT_EMBED_MODEL "openai/text-embedding-3-small"
#define FAKE_BLOCK_SIZE 1024
#define FAKE_STEP_MS 10

enum fake_ep { EP_NONE, EP_CHAT, EP_COMPLETIONS, EP_EMBEDDINGS, EP_MODELS, EP_GENERATION, EP_KEY };

/* One recorded request. Owned by g_db; freed by db_reset() or at exit. */
struct fake_record {
    int seq;
    char *method, *path, *body, *tag;
    cJSON *headers;
    int status; /* HTTP status queued, 0 if none (closed) */
    bool completed, aborted;
    int events_sent;
    /* What /generation reports; has_gen is set once a generation was answered. */
    bool has_gen, streamed;
    char *model;
    cJSON *usage;
    int gen_lag, gen_misses;
    /* When the request was recorded and when its response ended (monotonic ms; 0: not yet),
     * so a test can count the requests in progress at the fake at once. */
    int64_t t_start_ms, t_end_ms;
};

struct fake_counter {
    char *key;
    int n;
};

static struct {
    pthread_mutex_t mu;
    struct fake_record **v;
    size_t n, cap;
    unsigned epoch;
    struct fake_counter *ctr;
    size_t nctr;
} g_db = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_int g_stop;
static const char *g_require_key;

/* Per-request state, MHD's con_cls: created by the URI logger, freed on completion. */
struct fake_conn {
    char *uri; /* raw request target, query string included */
    char *body;
    size_t len, cap;
    bool started;
    int seq; /* 0 = not recorded (control endpoint) */
    unsigned epoch;
};

/* A streaming answer in progress; owned by the MHD response, freed by its free callback. */
struct fake_stream {
    int seq, fd;
    unsigned epoch;
    bool legacy, no_done, crlf, byte_by_byte, error_code_string, spaced;
    char *model, *usage_json;
    long created;
    int comments, events, interval_ms, event_bytes;
    int error_after, drop_after, hang_after; /* -1 = off, else clamped to [0, events] */
    int phase, i;
    char *ev;
    size_t ev_len, ev_off;
    bool rst;
};

/* A non-stream answer sent by a reader (cuts, hangs, trickles, huge bodies); owned by the MHD
 * response, freed by its free callback. data holds the whole body, or only its head and tail
 * for huge_bytes, where the middle is padding made on the fly. */
struct fake_body {
    int fd;
    bool rst;
    char *data;
    size_t len;     /* bytes in data */
    uint64_t total; /* bytes in the body (Content-Length) */
    size_t tail;    /* huge_bytes: the last `tail` bytes of data end the body */
    int64_t cut_after, hang_after; /* -1 = off */
    int trickle_ms, trickle_bytes;
};

enum { PH_COMMENT, PH_ROLE, PH_CONTENT, PH_FINISH, PH_USAGE, PH_DONE, PH_END };

/* ---- small helpers ---------------------------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "fake_openrouter: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Waits up to ms for the peer to hang up; true if it did. fd < 0 just sleeps. */
static bool peer_closed(int fd, int ms)
{
    if (fd < 0) {
        nap_ms(ms);
        return false;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int r = poll(&p, 1, ms);
    if (r <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    char c;
    if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        return true;
    nap_ms(ms); /* pipelined bytes are waiting: not closed, but do not spin */
    return false;
}

/* Sleeps ms in short steps. Returns 0 when done, -1 if stopping or the peer hung up. */
static int fake_sleep(long ms, int fd)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        if (atomic_load(&g_stop))
            return -1;
        int64_t left = end - now_ms();
        if (left <= 0)
            return 0;
        if (peer_closed(fd, left < FAKE_STEP_MS ? (int)left : FAKE_STEP_MS))
            return -1;
    }
}

/* Makes the coming close of fd a TCP reset rather than an orderly FIN. */
static void reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static int json_int(const cJSON *o, const char *name, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valueint : def;
}

static bool json_bool(const cJSON *o, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double json_num(const cJSON *o, const char *name, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* ---- the record table ------------------------------------------------------------------- */

static void record_free(struct fake_record *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->path);
    free(r->body);
    free(r->tag);
    free(r->model);
    cJSON_Delete(r->headers);
    cJSON_Delete(r->usage);
    free(r);
}

/* Caller holds g_db.mu. Returns the live record for (seq, epoch) or NULL. */
static struct fake_record *db_find(int seq, unsigned epoch)
{
    if (epoch != g_db.epoch || seq < 1 || (size_t)seq > g_db.n)
        return NULL;
    return g_db.v[seq - 1];
}

static void db_reset(void)
{
    pthread_mutex_lock(&g_db.mu);
    for (size_t i = 0; i < g_db.n; i++)
        record_free(g_db.v[i]);
    free(g_db.v);
    for (size_t i = 0; i < g_db.nctr; i++)
        free(g_db.ctr[i].key);
    free(g_db.ctr);
    g_db.v = NULL;
    g_db.n = g_db.cap = 0;
    g_db.ctr = NULL;
    g_db.nctr = 0;
    g_db.epoch++;
    pthread_mutex_unlock(&g_db.mu);
}

static enum MHD_Result header_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    cJSON *h = cls;
    char *name = xstrdup(key);
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    cJSON *old = cJSON_GetObjectItemCaseSensitive(h, name);
    if (old) {
        char *joined = xprintf("%s, %s", old->valuestring, value ? value : "");
        cJSON_ReplaceItemInObjectCaseSensitive(h, name, cJSON_CreateString(joined));
        free(joined);
    } else {
        cJSON_AddStringToObject(h, name, value ? value : "");
    }
    free(name);
    return MHD_YES;
}

/* Records the request in cn; sets cn->seq and cn->epoch. */
static void db_add(struct fake_conn *cn, struct MHD_Connection *c, const char *method,
                   const char *url, const char *tag)
{
    struct fake_record *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->method = xstrdup(method);
    r->path = xstrdup(cn->uri ? cn->uri : url);
    r->body = xmalloc(cn->len + 1);
    memcpy(r->body, cn->body ? cn->body : "", cn->len);
    r->body[cn->len] = '\0';
    r->tag = tag ? xstrdup(tag) : NULL;
    r->t_start_ms = now_ms();
    r->headers = cJSON_CreateObject();
    MHD_get_connection_values(c, MHD_HEADER_KIND, header_cb, r->headers);

    pthread_mutex_lock(&g_db.mu);
    if (g_db.n == g_db.cap) {
        size_t cap = g_db.cap ? g_db.cap * 2 : 64;
        struct fake_record **v = realloc(g_db.v, cap * sizeof *v);
        if (!v)
            abort();
        g_db.v = v;
        g_db.cap = cap;
    }
    g_db.v[g_db.n++] = r;
    r->seq = (int)g_db.n;
    cn->seq = r->seq;
    cn->epoch = g_db.epoch;
    pthread_mutex_unlock(&g_db.mu);
}

static void db_set_status(const struct fake_conn *cn, int status)
{
    pthread_mutex_lock(&g_db.mu);
    struct fake_record *r = db_find(cn->seq, cn->epoch);
    if (r)
        r->status = status;
    pthread_mutex_unlock(&g_db.mu);
}

/* Makes the generation gen-<seq> known to /generation. usage is taken. */
static void db_set_generation(const struct fake_conn *cn, const char *model, cJSON *usage,
                              bool streamed, int lag)
{
    pthread_mutex_lock(&g_db.mu);
    struct fake_record *r = db_find(cn->seq, cn->epoch);
    if (r) {
        r->has_gen = true;
        r->streamed = streamed;
        r->gen_lag = lag;
        free(r->model);
        r->model = xstrdup(model);
        cJSON_Delete(r->usage);
        r->usage = usage;
        usage = NULL;
    }
    pthread_mutex_unlock(&g_db.mu);
    cJSON_Delete(usage);
}

static void db_event_sent(int seq, unsigned epoch)
{
    pthread_mutex_lock(&g_db.mu);
    struct fake_record *r = db_find(seq, epoch);
    if (r)
        r->events_sent++;
    pthread_mutex_unlock(&g_db.mu);
}

/* Counts one request for a fail_times key; returns how many came before it. */
static int db_bump_counter(const char *key)
{
    int before = 0;
    pthread_mutex_lock(&g_db.mu);
    size_t i;
    for (i = 0; i < g_db.nctr; i++)
        if (strcmp(g_db.ctr[i].key, key) == 0)
            break;
    if (i == g_db.nctr) {
        struct fake_counter *v = realloc(g_db.ctr, (g_db.nctr + 1) * sizeof *v);
        if (!v)
            abort();
        g_db.ctr = v;
        g_db.ctr[g_db.nctr++] = (struct fake_counter){xstrdup(key), 0};
    }
    before = g_db.ctr[i].n++;
    pthread_mutex_unlock(&g_db.mu);
    return before;
}

static char *db_dump(void)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&g_db.mu);
    for (size_t i = 0; i < g_db.n; i++) {
        const struct fake_record *r = g_db.v[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", r->seq);
        cJSON_AddStringToObject(o, "method", r->method);
        cJSON_AddStringToObject(o, "path", r->path);
        cJSON_AddItemToObject(o, "headers", cJSON_Duplicate(r->headers, 1));
        cJSON_AddStringToObject(o, "body", r->body);
        if (r->tag)
            cJSON_AddStringToObject(o, "tag", r->tag);
        else
            cJSON_AddNullToObject(o, "tag");
        cJSON_AddNumberToObject(o, "status", r->status);
        cJSON_AddBoolToObject(o, "completed", r->completed);
        cJSON_AddBoolToObject(o, "aborted", r->aborted);
        cJSON_AddNumberToObject(o, "events_sent", r->events_sent);
        cJSON_AddNumberToObject(o, "t_start_ms", (double)r->t_start_ms);
        cJSON_AddNumberToObject(o, "t_end_ms", (double)r->t_end_ms);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&g_db.mu);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

/* ---- response builders ------------------------------------------------------------------ */

/* Queues body (malloc'd, taken) with status; gen_seq > 0 adds X-Generation-Id. */
static enum MHD_Result reply(struct MHD_Connection *c, const struct fake_conn *cn, int status,
                             const char *ctype, char *body, int gen_seq, const char *retry_after)
{
    struct MHD_Response *rsp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!rsp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(rsp, "Content-Type", ctype);
    if (gen_seq > 0) {
        char id[32];
        snprintf(id, sizeof id, "gen-%d", gen_seq);
        MHD_add_response_header(rsp, "X-Generation-Id", id);
    }
    if (retry_after)
        MHD_add_response_header(rsp, "Retry-After", retry_after);
    if (cn)
        db_set_status(cn, status);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, rsp);
    MHD_destroy_response(rsp);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, const struct fake_conn *cn, int status,
                                  cJSON *doc, int gen_seq)
{
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return reply(c, cn, status, "application/json", s, gen_seq, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const struct fake_conn *cn, int status,
                                   const char *message, int gen_seq)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddNumberToObject(err, "code", status);
    cJSON_AddStringToObject(err, "message", message);
    return reply_json(c, cn, status, doc, gen_seq);
}

/* The scripted error: {"error":{code,message,metadata:{error_type:"fake"}}} (+ Retry-After). */
static enum MHD_Result reply_fake_error(struct MHD_Connection *c, const struct fake_conn *cn,
                                        int status, const cJSON *fake, int gen_seq)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddNumberToObject(err, "code", status);
    char msg[64];
    snprintf(msg, sizeof msg, "fake upstream error %d", status);
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(err, "metadata"), "error_type", "fake");

    char ra_buf[32];
    const char *ra = json_str(fake, "retry_after");
    const cJSON *ran = cJSON_GetObjectItemCaseSensitive(fake, "retry_after");
    if (!ra && cJSON_IsNumber(ran)) {
        snprintf(ra_buf, sizeof ra_buf, "%d", ran->valueint);
        ra = ra_buf;
    }
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return reply(c, cn, status, "application/json", s, gen_seq, ra);
}

/* Default usage with the members of `over` replacing or extending it; null removes a member. */
static cJSON *make_usage(int prompt, int completion, double cost, bool full, const cJSON *over)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    if (full)
        cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    cJSON_AddNumberToObject(u, "cost", cost);
    if (full) {
        cJSON_AddBoolToObject(u, "is_byok", false);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"),
                                "cached_tokens", 0);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "completion_tokens_details"),
                                "reasoning_tokens", 0);
    }
    if (!cJSON_IsObject(over))
        return u;
    const cJSON *m;
    cJSON_ArrayForEach(m, over)
    {
        if (cJSON_IsNull(m))
            cJSON_DeleteItemFromObjectCaseSensitive(u, m->string);
        else if (cJSON_GetObjectItemCaseSensitive(u, m->string))
            cJSON_ReplaceItemInObjectCaseSensitive(u, m->string, cJSON_Duplicate(m, 1));
        else
            cJSON_AddItemToObject(u, m->string, cJSON_Duplicate(m, 1));
    }
    /* Keep total consistent unless the test set it explicitly. */
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    if (!cJSON_HasObjectItem(over, "total_tokens") && cJSON_IsNumber(p) &&
        cJSON_GetObjectItemCaseSensitive(u, "total_tokens"))
        cJSON_ReplaceItemInObjectCaseSensitive(
            u, "total_tokens",
            cJSON_CreateNumber(p->valuedouble + (cJSON_IsNumber(k) ? k->valuedouble : 0)));
    return u;
}

/* {"id","object","created","model","provider"} common to completions and chunks. */
static cJSON *make_head(int seq, const char *object, long created, const char *model)
{
    cJSON *o = cJSON_CreateObject();
    char id[32];
    snprintf(id, sizeof id, "gen-%d", seq);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "provider", FAKE_PROVIDER);
    return o;
}

/* ---- SSE streams ------------------------------------------------------------------------ */

/* text with a blank after every ':' and ',' outside JSON strings (malloc'd; frees text). */
static char *json_spaced(char *text)
{
    char *out = xmalloc(strlen(text) * 2 + 1);
    size_t o = 0;
    bool in_str = false;
    for (const char *p = text; *p; p++) {
        out[o++] = *p;
        if (in_str && *p == '\\' && p[1]) {
            out[o++] = *++p;
            continue;
        }
        if (*p == '"')
            in_str = !in_str;
        else if (!in_str && (*p == ':' || *p == ','))
            out[o++] = ' ';
    }
    out[o] = '\0';
    free(text);
    return out;
}

/* Takes the event text (LF line endings, without the blank line) and frames it. */
static void stream_set_event(struct fake_stream *st, char *text)
{
    if (st->spaced && strncmp(text, "data: {", 7) == 0) {
        char *json = json_spaced(xstrdup(text + 6));
        free(text);
        text = xprintf("data: %s", json);
        free(json);
    }
    const char *nl = st->crlf ? "\r\n" : "\n";
    size_t lines = 2;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    char *out = xmalloc(strlen(text) + lines * 2 + 1);
    size_t o = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            memcpy(out + o, nl, strlen(nl));
            o += strlen(nl);
        } else {
            out[o++] = *p;
        }
    }
    for (int i = 0; i < 2; i++) {
        memcpy(out + o, nl, strlen(nl));
        o += strlen(nl);
    }
    out[o] = '\0';
    free(text);
    free(st->ev);
    st->ev = out;
    st->ev_len = o;
    st->ev_off = 0;
}

static void stream_set_data(struct fake_stream *st, cJSON *doc)
{
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    char *text = xprintf("data: %s", json);
    free(json);
    stream_set_event(st, text);
}

static cJSON *stream_chunk_head(const struct fake_stream *st)
{
    return make_head(st->seq, st->legacy ? "text_completion" : "chat.completion.chunk", st->created,
                     st->model);
}

/* One choice: chat uses delta{role?,content?}, legacy uses text. finish may be NULL. */
static cJSON *stream_choice(const struct fake_stream *st, const char *role, const char *content,
                            const char *finish)
{
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (st->legacy) {
        cJSON_AddStringToObject(ch, "text", content ? content : "");
    } else {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role)
            cJSON_AddStringToObject(d, "role", role);
        if (content)
            cJSON_AddStringToObject(d, "content", content);
    }
    if (finish) {
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON_AddStringToObject(ch, "native_finish_reason", finish);
    } else {
        cJSON_AddNullToObject(ch, "finish_reason");
    }
    return ch;
}

static void stream_emit_choice(struct fake_stream *st, cJSON *choice)
{
    cJSON *doc = stream_chunk_head(st);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "choices"), choice);
    stream_set_data(st, doc);
}

static void stream_emit_content(struct fake_stream *st, int i)
{
    char base[32];
    snprintf(base, sizeof base, "tok%d ", i);
    stream_emit_choice(st, stream_choice(st, NULL, base, NULL));
    if (st->event_bytes <= 0 || (size_t)st->event_bytes <= st->ev_len)
        return;
    /* splice the padding into the framed event: no JSON printing of megabytes per event */
    size_t pad = (size_t)st->event_bytes - st->ev_len;
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":\"%s", st->legacy ? "text" : "content", base);
    const char *at = strstr(st->ev, needle);
    if (!at)
        abort();
    size_t head = (size_t)(at - st->ev) + strlen(needle);
    char *ev = xmalloc(st->ev_len + pad + 1);
    memcpy(ev, st->ev, head);
    memset(ev + head, 'x', pad);
    memcpy(ev + head + pad, st->ev + head, st->ev_len - head + 1);
    free(st->ev);
    st->ev = ev;
    st->ev_len += pad;
}

static void stream_emit_error(struct fake_stream *st)
{
    cJSON *doc = stream_chunk_head(st);
    cJSON *err = cJSON_AddObjectToObject(doc, "error");
    if (st->error_code_string)
        cJSON_AddStringToObject(err, "code", "server_error");
    else
        cJSON_AddNumberToObject(err, "code", 502);
    cJSON_AddStringToObject(err, "message", "fake mid-stream error");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(err, "metadata"), "error_type",
                            "provider_error");
    cJSON *ch = stream_choice(st, NULL, "", NULL);
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "finish_reason", cJSON_CreateString("error"));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "choices"), ch);
    stream_set_data(st, doc);
}

/*
 * Produces the next event into st->ev, sleeping first when it is not due yet.
 * Returns 1 with an event, 0 at a clean end, -1 to cut the connection.
 * Pacing: interval_ms between comments, between the last comment and the first data event,
 * and between content chunks; the rest follows at once.
 */
static int stream_next(struct fake_stream *st)
{
    switch (st->phase) {
    case PH_COMMENT:
        if (st->i < st->comments) {
            if (st->i > 0 && fake_sleep(st->interval_ms, st->fd) < 0)
                return -1;
            st->i++;
            stream_set_event(st, xstrdup(": OPENROUTER PROCESSING"));
            return 1;
        }
        st->phase = PH_ROLE;
        st->i = 0;
        if (st->comments > 0 && fake_sleep(st->interval_ms, st->fd) < 0)
            return -1;
        if (!st->legacy) { /* legacy streams have no role chunk */
            st->phase = PH_CONTENT;
            stream_emit_choice(st, stream_choice(st, "assistant", "", NULL));
            return 1;
        }
        /* fall through */
    case PH_ROLE:
        st->phase = PH_CONTENT;
        /* fall through */
    case PH_CONTENT:
        if (st->i == st->error_after) {
            st->phase = PH_END;
            stream_emit_error(st);
            return 1;
        }
        if (st->i == st->drop_after) {
            if (st->rst)
                reset_on_close(st->fd);
            return -1;
        }
        if (st->i == st->hang_after) {
            while (fake_sleep(1000, st->fd) == 0) {
            }
            return -1;
        }
        if (st->i < st->events) {
            if (st->i > 0 && fake_sleep(st->interval_ms, st->fd) < 0)
                return -1;
            stream_emit_content(st, st->i++);
            return 1;
        }
        st->phase = PH_FINISH;
        /* fall through */
    case PH_FINISH:
        st->phase = PH_USAGE;
        stream_emit_choice(st, stream_choice(st, NULL, NULL, "stop")); /* empty delta */
        return 1;
    case PH_USAGE: {
        st->phase = st->no_done ? PH_END : PH_DONE;
        cJSON *doc = stream_chunk_head(st);
        cJSON_AddArrayToObject(doc, "choices");
        char *json = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
        /* splice the usage in as raw text so it is byte-identical to what /generation knows */
        json[strlen(json) - 1] = '\0';
        char *text = xprintf("data: %s,\"usage\":%s}", json, st->usage_json);
        free(json);
        stream_set_event(st, text);
        return 1;
    }
    case PH_DONE:
        st->phase = PH_END;
        stream_set_event(st, xstrdup("data: [DONE]"));
        return 1;
    default:
        return 0;
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct fake_stream *st = cls;
    if (st->ev_off >= st->ev_len) {
        int r = stream_next(st);
        if (r == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (r < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->byte_by_byte ? 1 : st->ev_len - st->ev_off;
    if (n > max)
        n = max;
    memcpy(buf, st->ev + st->ev_off, n);
    st->ev_off += n;
    if (st->ev_off == st->ev_len)
        db_event_sent(st->seq, st->epoch);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct fake_stream *st = cls;
    free(st->ev);
    free(st->model);
    free(st->usage_json);
    free(st);
}

static int clamp_after(const cJSON *fake, const char *name, int events)
{
    int k = json_int(fake, name, -1);
    if (k < 0)
        return -1;
    return k > events ? events : k;
}

static enum MHD_Result answer_stream(struct MHD_Connection *c, const struct fake_conn *cn,
                                     bool legacy, const char *model, const cJSON *fake)
{
    struct fake_stream *st = calloc(1, sizeof *st);
    if (!st)
        abort();
    st->seq = cn->seq;
    st->epoch = cn->epoch;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->fd = ci ? ci->connect_fd : -1;
    st->legacy = legacy;
    st->model = xstrdup(model);
    st->created = (long)time(NULL);
    st->comments = json_int(fake, "comments", 0);
    st->events = json_int(fake, "events", 3);
    if (st->events < 0)
        st->events = 0;
    st->interval_ms = json_int(fake, "interval_ms", 0);
    st->event_bytes = json_int(fake, "event_bytes", 0);
    int stream_bytes = json_int(fake, "stream_bytes", 0);
    if (stream_bytes > 0) {
        if (st->event_bytes <= 0)
            st->event_bytes = 64 * 1024;
        st->events = stream_bytes / st->event_bytes + (stream_bytes % st->event_bytes != 0);
    }
    st->error_after = clamp_after(fake, "error_after", st->events);
    st->drop_after = clamp_after(fake, "drop_after", st->events);
    st->hang_after = clamp_after(fake, "hang_after", st->events);
    st->no_done = json_bool(fake, "no_done");
    st->crlf = json_bool(fake, "crlf");
    st->spaced = json_bool(fake, "spaced");
    st->byte_by_byte = json_bool(fake, "byte_by_byte");
    st->error_code_string = json_bool(fake, "error_code_string");
    st->rst = json_bool(fake, "rst");

    cJSON *usage =
        make_usage(11, st->events, 0.000123, true, cJSON_GetObjectItemCaseSensitive(fake, "usage"));
    st->usage_json = cJSON_PrintUnformatted(usage);
    db_set_generation(cn, model, usage, true, json_int(fake, "generation_lag", 0));

    /* big events go out in big blocks, so a gigabyte stream takes seconds, not minutes */
    size_t block = st->event_bytes > FAKE_BLOCK_SIZE ? 64 * 1024 : FAKE_BLOCK_SIZE;
    struct MHD_Response *rsp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, block, stream_reader, st, stream_free);
    if (!rsp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(rsp, "Content-Type", "text/event-stream");
    MHD_add_response_header(rsp, "Cache-Control", "no-cache");
    char id[32];
    snprintf(id, sizeof id, "gen-%d", cn->seq);
    MHD_add_response_header(rsp, "X-Generation-Id", id);
    db_set_status(cn, 200);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, rsp);
    MHD_destroy_response(rsp);
    return ret;
}

/* ---- non-stream answers ----------------------------------------------------------------- */

static ssize_t body_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct fake_body *b = cls;
    if (b->cut_after >= 0 && pos >= (uint64_t)b->cut_after) {
        if (b->rst)
            reset_on_close(b->fd);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (b->hang_after >= 0 && pos >= (uint64_t)b->hang_after) {
        while (fake_sleep(1000, b->fd) == 0) {
        }
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (b->trickle_ms > 0) {
        if (fake_sleep(b->trickle_ms, b->fd) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (max > (size_t)b->trickle_bytes)
            max = (size_t)b->trickle_bytes;
    }
    uint64_t left = b->total - pos;
    if (b->cut_after >= 0 && (uint64_t)b->cut_after - pos < left)
        left = (uint64_t)b->cut_after - pos;
    if (b->hang_after >= 0 && (uint64_t)b->hang_after - pos < left)
        left = (uint64_t)b->hang_after - pos;
    size_t n = left < max ? (size_t)left : max;
    if (b->tail == 0) { /* the whole body is in data */
        memcpy(buf, b->data + pos, n);
        return (ssize_t)n;
    }
    /* huge: head (data without its tail), padding, tail */
    size_t head = b->len - b->tail;
    uint64_t tail_at = b->total - b->tail;
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pos + i;
        buf[i] = p < head ? b->data[p] : p >= tail_at ? b->data[head + (p - tail_at)] : 'x';
    }
    return (ssize_t)n;
}

static void body_free(void *cls)
{
    struct fake_body *b = cls;
    free(b->data);
    free(b);
}

/* Sends text (malloc'd, taken) as a 200 JSON answer through body_reader when the fake object
 * asks for a cut, a hang, a trickle or a huge body; returns false (text untouched) otherwise. */
static bool reply_shaped(struct MHD_Connection *c, const struct fake_conn *cn, char *text,
                         const cJSON *fake, enum MHD_Result *ret)
{
    int cut = json_int(fake, "cut_after_bytes", -1), hang = json_int(fake, "hang_after_bytes", -1);
    int trickle = json_int(fake, "trickle_ms", 0), huge = json_int(fake, "huge_bytes", 0);
    if (cut < 0 && hang < 0 && trickle <= 0 && huge <= 0)
        return false;
    struct fake_body *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    b->fd = conn_fd(c);
    b->rst = json_bool(fake, "rst");
    b->cut_after = cut;
    b->hang_after = hang;
    b->trickle_ms = trickle;
    b->trickle_bytes = json_int(fake, "trickle_bytes", 16);
    if (b->trickle_bytes < 1)
        b->trickle_bytes = 1;
    b->data = text;
    b->len = strlen(text);
    b->total = b->len;
    if (huge > 0) { /* {"id":...,"padding":"xxx...xxx"} with the padding made by the reader */
        text[b->len - 1] = '\0';
        b->data = xprintf("%s,\"padding\":\"\"}", text);
        free(text);
        b->len = strlen(b->data);
        b->tail = 2; /* "} */
        b->total = (uint64_t)huge > b->len ? (uint64_t)huge : b->len;
    }
    size_t block = huge > 0 ? 64 * 1024 : FAKE_BLOCK_SIZE;
    struct MHD_Response *rsp =
        MHD_create_response_from_callback(b->total, block, body_reader, b, body_free);
    if (!rsp) {
        body_free(b);
        *ret = MHD_NO;
        return true;
    }
    MHD_add_response_header(rsp, "Content-Type", "application/json");
    char id[32];
    snprintf(id, sizeof id, "gen-%d", cn->seq);
    MHD_add_response_header(rsp, "X-Generation-Id", id);
    db_set_status(cn, 200);
    *ret = MHD_queue_response(c, MHD_HTTP_OK, rsp);
    MHD_destroy_response(rsp);
    return true;
}

static enum MHD_Result answer_completion(struct MHD_Connection *c, const struct fake_conn *cn,
                                         bool legacy, const char *model, const cJSON *fake)
{
    const char *text = "Hello from the fake upstream.";
    cJSON *doc =
        make_head(cn->seq, legacy ? "text_completion" : "chat.completion", (long)time(NULL), model);
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (legacy) {
        cJSON_AddStringToObject(ch, "text", text);
    } else {
        cJSON *m = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text);
    }
    cJSON_AddStringToObject(ch, "finish_reason", "stop");
    cJSON_AddStringToObject(ch, "native_finish_reason", "stop");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "choices"), ch);
    cJSON *usage =
        make_usage(11, 7, 0.000123, true, cJSON_GetObjectItemCaseSensitive(fake, "usage"));
    cJSON_AddItemToObject(doc, "usage", cJSON_Duplicate(usage, 1));
    db_set_generation(cn, model, usage, false, json_int(fake, "generation_lag", 0));

    int want = json_int(fake, "body_bytes", 0);
    if (want > 0) {
        char *s = cJSON_PrintUnformatted(doc);
        size_t have = strlen(s) + strlen(",\"padding\":\"\"");
        free(s);
        size_t pad = (size_t)want > have ? (size_t)want - have : 0;
        char *p = xmalloc(pad + 1);
        memset(p, 'x', pad);
        p[pad] = '\0';
        cJSON_AddStringToObject(doc, "padding", p);
        free(p);
    }
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    enum MHD_Result ret;
    if (reply_shaped(c, cn, json, fake, &ret))
        return ret;
    return reply(c, cn, 200, "application/json", json, cn->seq, NULL);
}

static enum MHD_Result answer_embeddings(struct MHD_Connection *c, const struct fake_conn *cn,
                                         const char *model, const cJSON *fake)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "object", "list");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "object", "embedding");
    const double vec[] = {0.1, 0.2, 0.3};
    cJSON_AddItemToObject(e, "embedding", cJSON_CreateDoubleArray(vec, 3));
    cJSON_AddNumberToObject(e, "index", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "data"), e);
    cJSON_AddStringToObject(doc, "model", model);
    cJSON *usage =
        make_usage(5, 0, 0.00001, false, cJSON_GetObjectItemCaseSensitive(fake, "usage"));
    cJSON_AddItemToObject(doc, "usage", cJSON_Duplicate(usage, 1));
    db_set_generation(cn, model, usage, false, json_int(fake, "generation_lag", 0));
    return reply_json(c, cn, 200, doc, cn->seq);
}

static enum MHD_Result answer_models(struct MHD_Connection *c, const struct fake_conn *cn)
{
    static const char body[] =
        "{\"data\":["
        "{\"id\":\"openai/gpt-4o-mini\",\"context_length\":128000,\"pricing\":{"
        "\"prompt\":\"0.00000015\",\"completion\":\"0.0000006\",\"request\":\"0\"}},"
        "{\"id\":\"test/awkward\",\"context_length\":4096,\"pricing\":{"
        "\"prompt\":\"0.0000003\",\"completion\":\"0.0000003\",\"request\":\"0.0001\"}}"
        "]}";
    return reply(c, cn, 200, "application/json", xstrdup(body), 0, NULL);
}

static enum MHD_Result answer_key(struct MHD_Connection *c, const struct fake_conn *cn)
{
    static const char body[] = "{\"data\":{\"label\":\"fake\",\"usage\":0,\"limit\":null,"
                               "\"limit_remaining\":null,\"is_free_tier\":false}}";
    return reply(c, cn, 200, "application/json", xstrdup(body), 0, NULL);
}

static enum MHD_Result answer_generation(struct MHD_Connection *c, const struct fake_conn *cn)
{
    const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id");
    int seq = 0;
    if (id && strncmp(id, "gen-", 4) == 0)
        seq = atoi(id + 4);

    cJSON *doc = NULL;
    pthread_mutex_lock(&g_db.mu);
    struct fake_record *r = seq > 0 && (size_t)seq <= g_db.n ? g_db.v[seq - 1] : NULL;
    if (r && r->has_gen) {
        if (r->gen_misses < r->gen_lag) {
            r->gen_misses++;
        } else {
            doc = cJSON_CreateObject();
            cJSON *d = cJSON_AddObjectToObject(doc, "data");
            cJSON_AddStringToObject(d, "id", id);
            cJSON_AddNumberToObject(d, "total_cost", json_num(r->usage, "cost", 0));
            double p = json_num(r->usage, "prompt_tokens", 0);
            double k = json_num(r->usage, "completion_tokens", 0);
            cJSON_AddNumberToObject(d, "tokens_prompt", p);
            cJSON_AddNumberToObject(d, "tokens_completion", k);
            cJSON_AddNumberToObject(d, "native_tokens_prompt", p);
            cJSON_AddNumberToObject(d, "native_tokens_completion", k);
            cJSON_AddBoolToObject(d, "cancelled", r->aborted);
            cJSON_AddBoolToObject(d, "streamed", r->streamed);
            cJSON_AddStringToObject(d, "model", r->model);
            cJSON_AddStringToObject(d, "provider_name", FAKE_PROVIDER);
        }
    }
    pthread_mutex_unlock(&g_db.mu);
    if (!doc)
        return reply_error(c, cn, 404, "Generation not found", 0);
    return reply_json(c, cn, 200, doc, 0);
}

/* ---- dispatch --------------------------------------------------------------------------- */

static enum fake_ep endpoint_of(const char *url, const char *method)
{
    bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
    if (post && ends_with(url, "/chat/completions"))
        return EP_CHAT;
    if (post && ends_with(url, "/completions"))
        return EP_COMPLETIONS;
    if (post && ends_with(url, "/embeddings"))
        return EP_EMBEDDINGS;
    if (get && ends_with(url, "/models"))
        return EP_MODELS;
    if (get && ends_with(url, "/generation"))
        return EP_GENERATION;
    if (get && ends_with(url, "/key"))
        return EP_KEY;
    return EP_NONE;
}

static bool authorised(struct MHD_Connection *c)
{
    if (!g_require_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h && strncasecmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, g_require_key) == 0;
}

static enum MHD_Result answer_post(struct MHD_Connection *c, const struct fake_conn *cn,
                                   enum fake_ep ep, const cJSON *root, const cJSON *fake)
{
    int gen = cn->seq;
    const cJSON *hang = cJSON_GetObjectItemCaseSensitive(fake, "hang_ms");
    if (cJSON_IsNumber(hang)) {
        /* watch the socket so a proxy that gives up is recorded as aborted at once */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (fake_sleep((long)hang->valuedouble, ci ? ci->connect_fd : -1) < 0)
            return MHD_NO;
    }
    if (json_bool(fake, "close_before_headers")) {
        if (json_bool(fake, "rst"))
            reset_on_close(conn_fd(c));
        return MHD_NO;
    }

    int status = json_int(fake, "status", 0);
    if (status > 0)
        return reply_fake_error(c, cn, status, fake, gen);
    int fail_times = json_int(fake, "fail_times", 0);
    if (fail_times > 0) {
        const char *key = json_str(fake, "key");
        if (db_bump_counter(key ? key : "") < fail_times)
            return reply_fake_error(c, cn, json_int(fake, "fail_status", 503), fake, gen);
    }
    if (json_bool(fake, "notjson"))
        return reply(c, cn, 200, "application/json", xstrdup("this is not json"), gen, NULL);

    const char *model = json_str(root, "model");
    if (ep == EP_EMBEDDINGS)
        return answer_embeddings(c, cn, model ? model : FAKE_DEFAULT_EMBED_MODEL, fake);
    if (!model)
        model = FAKE_DEFAULT_MODEL;
    if (json_str(fake, "served_model"))
        model = json_str(fake, "served_model");
    if (json_bool(root, "stream"))
        return answer_stream(c, cn, ep == EP_COMPLETIONS, model, fake);
    return answer_completion(c, cn, ep == EP_COMPLETIONS, model, fake);
}

static enum MHD_Result handle(struct MHD_Connection *c, struct fake_conn *cn, const char *url,
                              const char *method)
{
    if (ends_with(url, "/_fake/requests") && strcmp(method, "GET") == 0)
        return reply(c, NULL, 200, "application/json", db_dump(), 0, NULL);
    if (ends_with(url, "/_fake/reset") && strcmp(method, "POST") == 0) {
        db_reset();
        return reply(c, NULL, 200, "application/json", xstrdup("{\"ok\":true}"), 0, NULL);
    }

    cJSON *root = NULL;
    if (cn->len > 0)
        root = cJSON_ParseWithLength(cn->body, cn->len);
    const cJSON *fake = cJSON_GetObjectItemCaseSensitive(root, "fake");
    if (!cJSON_IsObject(fake))
        fake = NULL;
    db_add(cn, c, method, url, json_str(fake, "tag"));

    /* a webhook receiver for the alerts' tests: recorded above, taken */
    if (strncmp(url, "/hooks/", 7) == 0 && strcmp(method, "POST") == 0) {
        cJSON_Delete(root);
        return reply(c, NULL, 200, "application/json", xstrdup("{\"ok\":true}"), 0, NULL);
    }
    enum fake_ep ep = endpoint_of(url, method);
    bool post = ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_EMBEDDINGS;
    enum MHD_Result ret;
    if (ep != EP_MODELS && !authorised(c)) /* /models is public upstream */
        ret = reply_error(c, cn, 401, "No auth credentials found", post ? cn->seq : 0);
    else if (post)
        ret = answer_post(c, cn, ep, root, fake);
    else if (ep == EP_MODELS)
        ret = answer_models(c, cn);
    else if (ep == EP_GENERATION)
        ret = answer_generation(c, cn);
    else if (ep == EP_KEY)
        ret = answer_key(c, cn);
    else
        ret = reply_error(c, cn, 404, "Not Found", 0);
    cJSON_Delete(root);
    return ret;
}

/* ---- MHD callbacks ---------------------------------------------------------------------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct fake_conn *cn = calloc(1, sizeof *cn);
    if (!cn)
        abort();
    cn->uri = xstrdup(uri);
    return cn;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct fake_conn *cn = *con_cls;
    if (!cn) {
        cn = on_uri(NULL, url, c);
        *con_cls = cn;
    }
    if (!cn->started) {
        cn->started = true;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (cn->len + *upload_size + 1 > cn->cap) {
            size_t cap = cn->cap ? cn->cap : 4096;
            while (cap < cn->len + *upload_size + 1)
                cap *= 2;
            char *b = realloc(cn->body, cap);
            if (!b)
                return MHD_NO;
            cn->body = b;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->len, upload, *upload_size);
        cn->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    return handle(c, cn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    struct fake_conn *cn = *con_cls;
    if (!cn)
        return;
    if (cn->seq > 0) {
        pthread_mutex_lock(&g_db.mu);
        struct fake_record *r = db_find(cn->seq, cn->epoch);
        if (r) {
            r->completed = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
            r->aborted = !r->completed;
            r->t_end_ms = now_ms();
        }
        pthread_mutex_unlock(&g_db.mu);
    }
    free(cn->uri);
    free(cn->body);
    free(cn);
    *con_cls = NULL;
}

/* A whole small file, NUL-terminated (malloc'd), or NULL. */
static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return NULL;
    do {
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap + 8192);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 8192;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *tls_cert = NULL, *tls_key = NULL;
    char *cert_pem = NULL, *key_pem = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "fake_openrouter: bad port '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--require-key") == 0 && i + 1 < argc) {
            g_require_key = argv[++i];
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls_cert = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls_key = argv[++i];
        } else {
            fprintf(stderr, "usage: fake_openrouter [--port N] [--require-key KEY] "
                            "[--tls-cert PEM --tls-key PEM]\n");
            return 2;
        }
    }
    if ((tls_cert == NULL) != (tls_key == NULL)) {
        fprintf(stderr, "fake_openrouter: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_cert != NULL &&
        ((cert_pem = read_whole(tls_cert)) == NULL || (key_pem = read_whole(tls_key)) == NULL)) {
        fprintf(stderr, "fake_openrouter: cannot read %s\n", cert_pem == NULL ? tls_cert : tls_key);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by MHD's threads; main sigwaits */

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d;
    if (cert_pem != NULL)
        d = MHD_start_daemon(flags | MHD_USE_TLS, (uint16_t)port, NULL, NULL, on_request, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                             MHD_OPTION_HTTPS_MEM_KEY, key_pem, MHD_OPTION_HTTPS_MEM_CERT,
                             cert_pem, MHD_OPTION_END);
    else
        d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fake_openrouter: cannot listen on 127.0.0.1:%ld\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("PORT %u\n", info ? (unsigned)info->port : (unsigned)port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    atomic_store(&g_stop, 1);
    MHD_stop_daemon(d);
    db_reset();
    free(cert_pem);
    free(key_pem);
    return 0;
}
