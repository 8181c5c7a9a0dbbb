/*
 * streamload: the benchmark's stream client.  One thread, one epoll set,
 * one connection per stream.  It opens CONCURRENCY connections (at RAMP new
 * connections per second), sends each a streamed chat completion asking
 * the fake upstream for CHUNKS content chunks every INTERVAL ms, and decodes
 * the answer (chunked or not) down to SSE events.  Per stream it records
 * the time to the first content chunk (from the moment the request was
 * written), the gap between consecutive content chunks, and each chunk's
 * transit time (arrival minus the "bench_t" send stamp the fake puts in it;
 * both clocks are this machine's CLOCK_MONOTONIC).  A stream is complete
 * when all CHUNKS arrived and then [DONE]; anything else is counted as lost.
 * It prints one JSON object and exits, at the latest after TIMEOUT seconds.
 *
 * With -s CA.pem it speaks HTTPS (OpenSSL), verifying the server's
 * certificate for 127.0.0.1 with that CA: the direct path to a TLS upstream.
 * The time to the first chunk then starts after the handshake, once the
 * request is written, as it does over plain HTTP.
 *
 * usage: streamload -p PORT [-P PATH] [-c CONCURRENCY] [-n CHUNKS]
 *                   [-i INTERVAL_MS] [-r RAMP_PER_S] [-t TIMEOUT_S]
 *                   [-H "Name: value"]... [-s CA.pem]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HEAD, ST_BODY, ST_DONE };
enum { CH_SIZE, CH_DATA, CH_CRLF, CH_END };

typedef struct {
    int fd, state, status;
    SSL *ssl; /* NULL: plaintext */
    size_t wr_off;
    int64_t t_sent, t_last;
    char head[4096];
    size_t head_len;
    int chunked, ch_state;
    size_t ch_left;
    long content_left; /* -1: until close */
    char *ev;          /* SSE bytes not yet split into events */
    size_t ev_len, ev_cap;
    int chunks, done, failed;
} stream_t;

typedef struct {
    int32_t *v;
    size_t n, cap;
} series_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void series_add(series_t *s, int64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v)
            abort();
    }
    int64_t us = ns / 1000;
    s->v[s->n++] = us > INT32_MAX ? INT32_MAX : (int32_t)us;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void series_print(const char *name, series_t *s)
{
    qsort(s->v, s->n, sizeof(*s->v), cmp_i32);
    if (s->n == 0) {
        printf("\"%s\":null", name);
        return;
    }
    size_t i50 = (s->n * 50 + 99) / 100, i99 = (s->n * 99 + 99) / 100;
    printf("\"%s\":{\"n\":%zu,\"p50\":%d,\"p99\":%d,\"max\":%d}", name, s->n,
           s->v[i50 ? i50 - 1 : 0], s->v[i99 ? i99 - 1 : 0], s->v[s->n - 1]);
}

static series_t ttfc, gaps, transit;
static SSL_CTX *tls_ctx; /* NULL: plaintext */
static int io_want; /* after an EAGAIN from TLS: the events it waits for */

static ssize_t io_write(stream_t *s, const void *p, size_t n)
{
    if (!s->ssl)
        return write(s->fd, p, n);
    ERR_clear_error();
    int r = SSL_write(s->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        io_want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        errno = EAGAIN;
    } else {
        errno = EPROTO;
    }
    return -1;
}

static ssize_t io_read(stream_t *s, void *p, size_t n)
{
    if (!s->ssl)
        return read(s->fd, p, n);
    ERR_clear_error();
    int r = SSL_read(s->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        return 0;
    errno = EPROTO;
    return -1;
}
static char request[8192];
static size_t request_len;
static int want_chunks;

static void on_event(stream_t *s, const char *ev, size_t len, int64_t now)
{
    if (len >= 12 && memcmp(ev, "data: [DONE]", 12) == 0) {
        s->done = 1;
        return;
    }
    if (!memmem(ev, len, "\"content\":\"", 11))
        return;
    if (s->chunks == 0)
        series_add(&ttfc, now - s->t_sent);
    else
        series_add(&gaps, now - s->t_last);
    s->t_last = now;
    s->chunks++;
    const char *t = memmem(ev, len, "\"bench_t\":", 10);
    if (t)
        series_add(&transit, now - strtoll(t + 10, NULL, 10));
}

static void feed_sse(stream_t *s, const char *p, size_t n, int64_t now)
{
    if (s->ev_len + n > s->ev_cap) {
        s->ev_cap = (s->ev_len + n) * 2 + 1024;
        s->ev = realloc(s->ev, s->ev_cap);
        if (!s->ev)
            abort();
    }
    memcpy(s->ev + s->ev_len, p, n);
    s->ev_len += n;
    size_t off = 0;
    for (;;) {
        char *end = memmem(s->ev + off, s->ev_len - off, "\n\n", 2);
        if (!end)
            break;
        on_event(s, s->ev + off, (size_t)(end - (s->ev + off)), now);
        off = (size_t)(end - s->ev) + 2;
    }
    memmove(s->ev, s->ev + off, s->ev_len - off);
    s->ev_len -= off;
}

/* Decodes body bytes; returns 1 when the response is complete. */
static int feed_body(stream_t *s, const char *p, size_t n, int64_t now)
{
    if (!s->chunked) {
        if (s->content_left >= 0 && (long)n > s->content_left)
            n = (size_t)s->content_left;
        feed_sse(s, p, n, now);
        if (s->content_left >= 0) {
            s->content_left -= (long)n;
            return s->content_left == 0;
        }
        return 0;
    }
    while (n > 0) {
        switch (s->ch_state) {
        case CH_SIZE: {
            /* size lines are short; collect them in head[] */
            char c = *p++;
            n--;
            if (c != '\n') {
                if (s->head_len < sizeof(s->head) - 1)
                    s->head[s->head_len++] = c;
                break;
            }
            s->head[s->head_len] = 0;
            s->ch_left = strtoul(s->head, NULL, 16);
            s->head_len = 0;
            s->ch_state = s->ch_left ? CH_DATA : CH_END;
            if (s->ch_state == CH_END)
                return 1;
            break;
        }
        case CH_DATA: {
            size_t k = n < s->ch_left ? n : s->ch_left;
            feed_sse(s, p, k, now);
            p += k;
            n -= k;
            s->ch_left -= k;
            if (s->ch_left == 0) {
                s->ch_state = CH_CRLF;
                s->ch_left = 2;
            }
            break;
        }
        case CH_CRLF:
            p++;
            n--;
            if (--s->ch_left == 0)
                s->ch_state = CH_SIZE;
            break;
        default:
            return 1;
        }
    }
    return 0;
}

static void parse_head(stream_t *s)
{
    s->head[s->head_len] = 0;
    s->status = atoi(s->head + 9);
    s->content_left = -1;
    for (char *l = strchr(s->head, '\n'); l; l = strchr(l + 1, '\n')) {
        if (strncasecmp(l + 1, "transfer-encoding:", 18) == 0 && strstr(l, "chunked"))
            s->chunked = 1;
        if (strncasecmp(l + 1, "content-length:", 15) == 0)
            s->content_left = strtol(l + 16, NULL, 10);
    }
    s->head_len = 0;
    s->ch_state = CH_SIZE;
}

/* Reads what is there; returns 1 when the stream is finished (either way). */
static int stream_read(stream_t *s)
{
    char buf[65536];
    for (;;) {
        ssize_t r = io_read(s, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r <= 0)
            return 1;
        int64_t now = now_ns();
        size_t off = 0;
        if (s->state == ST_HEAD) {
            while (off < (size_t)r && s->state == ST_HEAD) {
                if (s->head_len >= sizeof(s->head) - 1)
                    return 1;
                s->head[s->head_len++] = buf[off++];
                if (s->head_len >= 4 && memcmp(s->head + s->head_len - 4, "\r\n\r\n", 4) == 0) {
                    parse_head(s);
                    s->state = ST_BODY;
                }
            }
        }
        if (s->state == ST_BODY && off < (size_t)r && feed_body(s, buf + off, (size_t)r - off, now))
            return 1;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: streamload -p PORT [-P PATH] [-c N] [-n CHUNKS] [-i MS] [-r PER_S] "
                    "[-t S] [-H 'Name: value']... [-s CA.pem]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0, conc = 100, interval = 20, ramp = 0, timeout_s = 60, opt;
    const char *path = "/api/v1/chat/completions";
    char headers[2048] = "";
    want_chunks = 64;
    const char *ca = NULL;
    while ((opt = getopt(argc, argv, "p:P:c:n:i:r:t:H:s:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': path = optarg; break;
        case 'c': conc = atoi(optarg); break;
        case 'n': want_chunks = atoi(optarg); break;
        case 'i': interval = atoi(optarg); break;
        case 'r': ramp = atoi(optarg); break;
        case 't': timeout_s = atoi(optarg); break;
        case 's': ca = optarg; break;
        case 'H':
            strncat(headers, optarg, sizeof(headers) - strlen(headers) - 3);
            strcat(headers, "\r\n");
            break;
        default: usage();
        }
    }
    if (port <= 0 || conc <= 0 || want_chunks <= 0)
        usage();
    if (ca) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx || SSL_CTX_load_verify_locations(tls_ctx, ca, NULL) != 1) {
            fprintf(stderr, "streamload: cannot load %s\n", ca);
            return 2;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char body[512];
    int blen = snprintf(body, sizeof(body),
                        "{\"model\":\"bench/model\",\"stream\":true,\"bench_chunks\":%d,"
                        "\"bench_interval_ms\":%d,\"messages\":[{\"role\":\"user\","
                        "\"content\":\"Count slowly.\"}]}",
                        want_chunks, interval);
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                   "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                                   "Authorization: Bearer sk-bench-client\r\n%s"
                                   "Content-Length: %d\r\n\r\n%s",
                                   path, port, headers, blen, body);

    stream_t *ss = calloc((size_t)conc, sizeof(*ss));
    int ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)timeout_s * 1000000000;
    int started = 0, finished = 0, connect_errors = 0;
    long long bad_status = 0;
    struct epoll_event evs[512];

    while (finished < conc && now_ns() < deadline) {
        int64_t now = now_ns();
        int due = ramp > 0 ? (int)((now - t0) / 1000000 * ramp / 1000) + 1 : conc;
        if (due > conc)
            due = conc;
        while (started < due) {
            stream_t *s = &ss[started++];
            s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            int one = 1;
            setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            if (s->fd < 0 ||
                (connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)) {
                connect_errors++;
                s->failed = 1;
                s->state = ST_DONE;
                if (s->fd >= 0)
                    close(s->fd);
                finished++;
                continue;
            }
            if (tls_ctx) {
                s->ssl = SSL_new(tls_ctx);
                if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1 ||
                    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), "127.0.0.1") != 1)
                    abort();
                SSL_set_connect_state(s->ssl);
            }
            s->state = ST_CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = s};
            epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
        }
        int n = epoll_wait(ep, evs, 512, started < conc ? 1 : 100);
        for (int i = 0; i < n; i++) {
            stream_t *s = evs[i].data.ptr;
            if (s->state == ST_DONE)
                continue;
            int fin = 0;
            if (s->state == ST_CONNECTING &&
                ((evs[i].events & EPOLLOUT) || (s->ssl && (evs[i].events & EPOLLIN)))) {
                /* Over TLS the first write runs the handshake: wait for what it wants
                 * (level-triggered EPOLLOUT alone would spin while the server answers). */
                io_want = 0;
                ssize_t w = io_write(s, request + s->wr_off, request_len - s->wr_off);
                if (w < 0 && errno != EAGAIN) {
                    fin = 1;
                    connect_errors++;
                } else if (w < 0 && io_want) {
                    struct epoll_event ev = {.events = (uint32_t)io_want, .data.ptr = s};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                } else if (w > 0) {
                    s->wr_off += (size_t)w;
                    if (s->wr_off == request_len) {
                        s->t_sent = now_ns();
                        s->state = ST_HEAD;
                        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
                        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                    }
                }
            } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                fin = stream_read(s);
            }
            if (fin) {
                if (s->status != 200)
                    bad_status++;
                s->state = ST_DONE;
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                if (s->ssl)
                    SSL_free(s->ssl);
                s->ssl = NULL;
                close(s->fd);
                finished++;
            }
        }
    }

    long long received = 0;
    int complete = 0;
    for (int i = 0; i < conc; i++) {
        received += ss[i].chunks;
        if (ss[i].done && ss[i].chunks == want_chunks && ss[i].status == 200)
            complete++;
        if (ss[i].ssl)
            SSL_free(ss[i].ssl);
        if (ss[i].state != ST_DONE && ss[i].fd > 0)
            close(ss[i].fd);
        free(ss[i].ev);
    }
    printf("{\"streams\":%d,\"started\":%d,\"complete\":%d,\"connect_errors\":%d,"
           "\"bad_status\":%lld,\"chunks_expected\":%lld,\"chunks_received\":%lld,"
           "\"interval_ms\":%d,\"wall_s\":%.3f,",
           conc, started, complete, connect_errors, bad_status, (long long)conc * want_chunks,
           received, interval, (double)(now_ns() - t0) / 1e9);
    series_print("ttfc_us", &ttfc);
    printf(",");
    series_print("gap_us", &gaps);
    printf(",");
    series_print("transit_us", &transit);
    printf("}\n");
    free(ss);
    return 0;
}
