/*
 * fakeup: the benchmark's fake OpenRouter.  One thread, one epoll set,
 * HTTP/1.1 keep-alive, and nothing else: it must never be what limits a
 * measurement (the benchmark prints its direct figures to show that).
 *
 * POST .../chat/completions answers a fixed completion as JSON, or, when
 * the body has "stream":true, a paced SSE stream: a role chunk at once,
 * "bench_chunks" content chunks (default 64) every "bench_interval_ms"
 * (default 20), a usage chunk and [DONE], each event its own HTTP chunk.
 * Every content chunk carries "bench_t", its send time on CLOCK_MONOTONIC in
 * nanoseconds, so the load client can measure each chunk's transit time.
 * GET .../models answers a one-model price list (orproxy fetches it at
 * start).  Paced sends are driven by one binary min-heap of deadlines.
 *
 * With --tls CERT KEY it speaks HTTPS only (OpenSSL, non-blocking: the
 * handshake runs inside the first reads and writes; every SSE event is its
 * own TLS record, as a real upstream sends it).
 *
 * usage: fakeup PORT [--tls CERT.pem KEY.pem]
 *        (binds 127.0.0.1 only; prints "ready" when up)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

#define IN_MAX (1 << 20)

typedef struct conn {
    int fd;
    SSL *ssl;         /* NULL: plaintext */
    char *in;         /* request bytes not yet consumed */
    size_t in_len, in_cap;
    char *out;        /* response bytes the socket did not take yet */
    size_t out_len, out_off, out_cap;
    int want_out;     /* EPOLLOUT armed */
    /* a stream in progress */
    int streaming, sent, chunks, interval_ms;
    int64_t next_ns;  /* deadline of the next content chunk */
    int heap_at;      /* index in the heap, -1 when not queued */
    int closing;
} conn_t;

static int ep;
static SSL_CTX *tls_ctx; /* NULL: plaintext */
static conn_t **heap;
static int heap_len, heap_cap;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* write()/read() or their TLS equivalents: >0 bytes, 0 EOF (read), -1 with errno
 * (EAGAIN: try again when the socket is ready; TLS may want the other direction,
 * so the caller then waits for both). */
static ssize_t io_write(conn_t *c, const void *p, size_t n)
{
    if (!c->ssl)
        return write(c->fd, p, n);
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) ? EAGAIN : EPIPE;
    return -1;
}

static ssize_t io_read(conn_t *c, void *p, size_t n)
{
    if (!c->ssl)
        return read(c->fd, p, n);
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        return 0;
    errno = EPROTO;
    return -1;
}

static void heap_swap(int a, int b)
{
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_at = a;
    heap[b]->heap_at = b;
}

static void heap_up(int i)
{
    while (i > 0 && heap[(i - 1) / 2]->next_ns > heap[i]->next_ns) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_len && heap[l]->next_ns < heap[m]->next_ns)
            m = l;
        if (r < heap_len && heap[r]->next_ns < heap[m]->next_ns)
            m = r;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn_t *c)
{
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, sizeof(*heap) * (size_t)heap_cap);
        if (!heap)
            abort();
    }
    heap[heap_len] = c;
    c->heap_at = heap_len++;
    heap_up(c->heap_at);
}

static void heap_remove(conn_t *c)
{
    int i = c->heap_at;
    if (i < 0)
        return;
    heap_len--;
    if (i != heap_len) {
        heap[i] = heap[heap_len];
        heap[i]->heap_at = i;
        heap_down(i);
        heap_up(i);
    }
    c->heap_at = -1;
}

static void conn_close(conn_t *c)
{
    heap_remove(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl)
        SSL_free(c->ssl);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Queues bytes and writes what the socket takes; returns -1 if the peer is gone. */
static int conn_send(conn_t *c, const char *p, size_t n)
{
    if (c->out_len == c->out_off) {
        c->out_len = c->out_off = 0;
        while (n > 0) {
            ssize_t w = io_write(c, p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                return -1;
            }
            p += w;
            n -= (size_t)w;
        }
        if (n == 0)
            return 0;
    }
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out)
            abort();
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (!c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 1;
    }
    return 0;
}

static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = io_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->out_off += (size_t)w;
    }
    c->out_len = c->out_off = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    return 0;
}

/* Sends one SSE event as one HTTP chunk. */
static int send_event(conn_t *c, const char *ev)
{
    char buf[1024];
    size_t n = strlen(ev);
    int h = snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n", n, ev);
    if (h < 0 || (size_t)h >= sizeof(buf))
        return -1;
    return conn_send(c, buf, (size_t)h);
}

static const char JSON_BODY[] =
    "{\"id\":\"gen-bench-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
    "\"model\":\"bench/model\",\"provider\":\"Bench\",\"choices\":[{\"index\":0,\"message\":"
    "{\"role\":\"assistant\",\"content\":\"Hello from the benchmark upstream.\"},"
    "\"finish_reason\":\"stop\",\"native_finish_reason\":\"stop\"}],\"usage\":{"
    "\"prompt_tokens\":12,\"completion_tokens\":8,\"total_tokens\":20,\"cost\":0.00002}}";

static const char MODELS_BODY[] =
    "{\"data\":[{\"id\":\"bench/model\",\"name\":\"Bench\",\"pricing\":{\"prompt\":\"0.000001\","
    "\"completion\":\"0.000002\",\"request\":\"0\"}}]}";

static int send_simple(conn_t *c, int status, const char *ctype, const char *body)
{
    char head[256];
    size_t n = strlen(body);
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", status,
                     status == 200 ? "OK" : "Not Found", ctype, n);
    if (conn_send(c, head, (size_t)h) < 0)
        return -1;
    return conn_send(c, body, n);
}

static int stream_tick(conn_t *c)
{
    char ev[512];
    if (c->sent < c->chunks) {
        snprintf(ev, sizeof(ev),
                 "data: {\"id\":\"gen-bench-1\",\"object\":\"chat.completion.chunk\","
                 "\"created\":1700000000,\"model\":\"bench/model\",\"bench_t\":%lld,"
                 "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"},"
                 "\"finish_reason\":null}]}\n\n",
                 (long long)now_ns(), c->sent);
        if (send_event(c, ev) < 0)
            return -1;
        c->sent++;
        c->next_ns += (int64_t)c->interval_ms * 1000000;
        heap_push(c);
        return 0;
    }
    snprintf(ev, sizeof(ev),
             "data: {\"id\":\"gen-bench-1\",\"object\":\"chat.completion.chunk\","
             "\"created\":1700000000,\"model\":\"bench/model\",\"choices\":[{\"index\":0,"
             "\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
             "\"completion_tokens\":%d,\"total_tokens\":%d,\"cost\":0.00002}}\n\n",
             c->chunks, c->chunks + 12);
    if (send_event(c, ev) < 0 || send_event(c, "data: [DONE]\n\n") < 0 ||
        conn_send(c, "0\r\n\r\n", 5) < 0)
        return -1;
    c->streaming = 0;
    return 0;
}

static int json_int(const char *body, size_t len, const char *key, int dflt)
{
    const char *p = memmem(body, len, key, strlen(key));
    if (!p)
        return dflt;
    p += strlen(key);
    while (p < body + len && (*p == ' ' || *p == ':'))
        p++;
    return p < body + len ? atoi(p) : dflt;
}

/* Handles complete requests in c->in; returns -1 to close. */
static int conn_serve(conn_t *c)
{
    while (!c->streaming) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end)
            return c->in_len >= IN_MAX ? -1 : 0;
        size_t hlen = (size_t)(end - c->in) + 4;
        size_t clen = 0;
        for (char *l = memchr(c->in, '\n', hlen); l && l < end; l = memchr(l + 1, '\n', hlen)) {
            if (strncasecmp(l + 1, "content-length:", 15) == 0)
                clen = strtoul(l + 16, NULL, 10);
            if (strncasecmp(l + 1, "transfer-encoding:", 18) == 0)
                return -1; /* chunked uploads are not part of the benchmark */
        }
        if (clen > IN_MAX)
            return -1;
        if (c->in_len < hlen + clen)
            return 0;
        const char *body = c->in + hlen;
        int rc;
        if (strncmp(c->in, "GET ", 4) == 0 && memmem(c->in, hlen, "/models", 7)) {
            rc = send_simple(c, 200, "application/json", MODELS_BODY);
        } else if (strncmp(c->in, "POST ", 5) == 0 &&
                   memmem(c->in, hlen, "/chat/completions", 17)) {
            if (memmem(body, clen, "\"stream\":true", 13) ||
                memmem(body, clen, "\"stream\": true", 14)) {
                c->chunks = json_int(body, clen, "\"bench_chunks\"", 64);
                c->interval_ms = json_int(body, clen, "\"bench_interval_ms\"", 20);
                c->sent = 0;
                c->streaming = 1;
                static const char head[] =
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
                rc = conn_send(c, head, sizeof(head) - 1);
                if (rc == 0)
                    rc = send_event(c, "data: {\"id\":\"gen-bench-1\",\"object\":"
                                       "\"chat.completion.chunk\",\"created\":1700000000,"
                                       "\"model\":\"bench/model\",\"choices\":[{\"index\":0,"
                                       "\"delta\":{\"role\":\"assistant\"},"
                                       "\"finish_reason\":null}]}\n\n");
                c->next_ns = now_ns() + (int64_t)c->interval_ms * 1000000;
                if (rc == 0)
                    heap_push(c);
            } else {
                rc = send_simple(c, 200, "application/json", JSON_BODY);
            }
        } else {
            rc = send_simple(c, 404, "application/json", "{\"error\":{\"code\":404,"
                                                         "\"message\":\"not found\"}}");
        }
        memmove(c->in, c->in + hlen + clen, c->in_len - hlen - clen);
        c->in_len -= hlen + clen;
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int conn_read(conn_t *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 8192;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in)
                abort();
        }
        ssize_t r = io_read(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN ? 0 : (errno == EINTR ? conn_read(c) : -1);
        c->in_len += (size_t)r;
        if (conn_serve(c) < 0)
            return -1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 && !(argc == 5 && strcmp(argv[2], "--tls") == 0)) {
        fprintf(stderr, "usage: fakeup PORT [--tls CERT.pem KEY.pem]\n");
        return 2;
    }
    if (argc == 5) {
        tls_ctx = SSL_CTX_new(TLS_server_method());
        if (!tls_ctx || SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(tls_ctx, argv[3]) != 1 ||
            SSL_CTX_use_PrivateKey_file(tls_ctx, argv[4], SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(tls_ctx) != 1) {
            fprintf(stderr, "fakeup: cannot load %s / %s\n", argv[3], argv[4]);
            ERR_print_errors_fp(stderr);
            return 1;
        }
        /* Partial writes and a moving buffer: conn_send retries from its queue. Idle
         * connections give their record buffers back (8000 slow streams). */
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                      SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_options(tls_ctx, SSL_OP_NO_RENEGOTIATION);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0) {
        perror("fakeup: bind");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("ready\n");
    fflush(stdout);

    struct epoll_event evs[256];
    for (;;) {
        int timeout = -1;
        if (heap_len > 0) {
            int64_t d = heap[0]->next_ns - now_ns();
            timeout = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
        }
        int n = epoll_wait(ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conn_t *nc = calloc(1, sizeof(*nc));
                    if (!nc)
                        abort();
                    nc->fd = fd;
                    nc->heap_at = -1;
                    if (tls_ctx) {
                        nc->ssl = SSL_new(tls_ctx);
                        if (!nc->ssl || SSL_set_fd(nc->ssl, fd) != 1)
                            abort();
                        SSL_set_accept_state(nc->ssl);
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                conn_close(c);
                continue;
            }
            /* TLS may want a read before a queued write can go on. */
            if (((evs[i].events & EPOLLOUT) || (c->ssl && c->out_off < c->out_len)) &&
                conn_flush(c) < 0) {
                conn_close(c);
                continue;
            }
            if ((evs[i].events & EPOLLIN) && conn_read(c) < 0)
                conn_close(c);
        }
        int64_t now = now_ns();
        while (heap_len > 0 && heap[0]->next_ns <= now) {
            conn_t *c = heap[0];
            heap_remove(c);
            if (stream_tick(c) < 0) {
                conn_close(c);
                continue;
            }
            if (!c->streaming && c->in_len > 0 && conn_serve(c) < 0)
                conn_close(c);
        }
    }
}
