/*
 * test_upstream_h1.c -- the native HTTP/1.1 upstream client (upstream/h1.c)
 * against a raw scripted server on 127.0.0.1 that answers each path with
 * exact bytes: response strictness (framing conflicts, bad chunking, obs-fold,
 * oversized heads, 101, bad status lines), bodies delimited every way,
 * connection reuse and its refusals, the keep-alive race retry, the pool cap,
 * cancel, the request bytes we write, and which back end call.c picks.
 *
 * (The behaviour both REST back ends share runs in test_upstream.c, once per
 * back end.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/arena.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "upstream/call.h"
#include "upstream/call_internal.h"
#include "net/worker.h"

/* ---- the raw scripted server ---------------------------------------------------- */

enum { F_CLOSE = 1, F_DROP = 2, F_ARM = 4, F_EARLY = 8 };

typedef struct script {
    const char *path;
    const char *resp;
    int flags;
} script_t;

static const script_t SCRIPT[] = {
    {"/ok", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Mixed-Case: v\r\n\r\nok", 0},
    {"/dupcl", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 0},
    {"/conflictcl", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0},
    {"/badcl", "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc", 0},
    {"/clte", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0},
    {"/chunkednotlast", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0},
    {"/badchunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 0},
    {"/chunknocrlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 0},
    {"/chunkhuge", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n", 0},
    {"/obsfold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/spacecolon", "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/ctlvalue", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/s101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 0},
    {"/badstatus", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/shortstatus", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/early1xx", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/headreq", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 0},
    {"/nocontent", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0},
    {"/notmodified", "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", 0},
    {"/closedelim", "HTTP/1.1 200 OK\r\n\r\nuntil the end", F_CLOSE},
    {"/connclose", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0},
    {"/http10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/junkafter", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", 0},
    {"/trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3;ext=\"v\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\nX-Other: z\r\n\r\n", 0},
    {"/barelf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 0},
    {"/arm", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", F_ARM},
    {"/drop", NULL, F_DROP},
    {"/truncated", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", F_CLOSE},
    {"/early", "HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\n\r\nbig!", F_EARLY},
};

typedef struct rsrv {
    int fd, port;
    atomic_int accepted;
    atomic_bool stop;
    pthread_t th;
    pthread_mutex_t mu;
    char last[8192];      /* the last request's bytes (head and body, raw) */
    size_t last_len;
} rsrv_t;

typedef struct rconn {
    rsrv_t *s;
    int fd;
    bool drop_next;
} rconn_t;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one request into buf (head; the body too unless `early`). Returns its length, 0 at EOF. */
static size_t read_request(int fd, char *buf, size_t cap, size_t *head_len)
{
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        if (len + 1 >= cap)
            return 0;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    *head_len = (size_t)(end + 4 - buf);
    return len;
}

static void drain_body(int fd, char *buf, size_t cap, size_t *len, size_t head_len)
{
    /* Content-Length, or chunked up to the last chunk. */
    const char *cl = strcasestr(buf, "\ncontent-length:");
    bool chunked = strcasestr(buf, "\ntransfer-encoding: chunked") != NULL;
    for (;;) {
        if (cl != NULL && *len - head_len >= (size_t)atol(cl + 16))
            return;
        if (chunked && *len >= 5 && memcmp(buf + *len - 5, "0\r\n\r\n", 5) == 0)
            return;
        if (cl == NULL && !chunked)
            return;
        if (*len + 1 >= cap) { /* keep only the tail for the end check */
            memmove(buf + head_len, buf + *len - 5, 5);
            *len = head_len + 5;
        }
        ssize_t n = recv(fd, buf + *len, cap - 1 - *len, 0);
        if (n <= 0)
            return;
        *len += (size_t)n;
        buf[*len] = '\0';
    }
}

static void *rconn_main(void *arg)
{
    rconn_t *c = arg;
    static __thread char buf[1 << 20];
    for (;;) {
        size_t head_len = 0;
        size_t len = read_request(c->fd, buf, sizeof(buf), &head_len);
        if (len == 0)
            break;
        char path[256] = "";
        sscanf(buf, "%*s %255s", path);
        char *q = strchr(path, '?');
        const char *arg_s = q != NULL ? q + 1 : "";
        if (q != NULL)
            *q = '\0';
        const script_t *sc = NULL;
        for (size_t i = 0; i < sizeof(SCRIPT) / sizeof(SCRIPT[0]); i++)
            if (strcmp(SCRIPT[i].path, path) == 0)
                sc = &SCRIPT[i];
        if (sc == NULL || !(sc->flags & F_EARLY))
            drain_body(c->fd, buf, sizeof(buf), &len, head_len);
        pthread_mutex_lock(&c->s->mu);
        size_t keep = len < sizeof(c->s->last) ? len : sizeof(c->s->last) - 1;
        memcpy(c->s->last, buf, keep);
        c->s->last[keep] = '\0';
        c->s->last_len = keep;
        pthread_mutex_unlock(&c->s->mu);
        if (c->drop_next || (sc != NULL && (sc->flags & F_DROP)))
            break; /* close without answering */
        if (strcmp(path, "/hugehead") == 0) {
            size_t n = strtoul(arg_s, NULL, 10);
            char *h = malloc(n + 128);
            size_t off = (size_t)snprintf(h, 128, "HTTP/1.1 200 OK\r\nX-Big: ");
            memset(h + off, 'a', n);
            off += n;
            off += (size_t)snprintf(h + off, 128, "\r\nContent-Length: 2\r\n\r\nok");
            write_all(c->fd, h, off);
            free(h);
            continue;
        }
        if (strcmp(path, "/big") == 0) {
            size_t n = strtoul(arg_s, NULL, 10);
            char h[128];
            int k = snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
            write_all(c->fd, h, (size_t)k);
            char *body = malloc(n);
            memset(body, 'b', n);
            write_all(c->fd, body, n);
            free(body);
            continue;
        }
        if (sc == NULL) {
            const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            write_all(c->fd, nf, strlen(nf));
            continue;
        }
        write_all(c->fd, sc->resp, strlen(sc->resp));
        if (sc->flags & F_EARLY) { /* answered before the body: read it now, stay open */
            drain_body(c->fd, buf, sizeof(buf), &len, head_len);
        }
        if (sc->flags & F_ARM)
            c->drop_next = true;
        if (sc->flags & F_CLOSE)
            break;
    }
    close(c->fd);
    free(c);
    return NULL;
}

static void *raccept_main(void *arg)
{
    rsrv_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->accepted, 1);
        rconn_t *c = calloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        pthread_t th;
        pthread_create(&th, NULL, rconn_main, c);
        pthread_detach(th);
    }
    return NULL;
}

static void rsrv_start(rsrv_t *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 64), 0);
    socklen_t l = sizeof(a);
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, raccept_main, s);
}

static void rsrv_stop(rsrv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->fd);
}

static void last_request(rsrv_t *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    snprintf(out, cap, "%s", s->last);
    pthread_mutex_unlock(&s->mu);
}

/* ---- the client side ---------------------------------------------------------------- */

typedef struct env {
    pt_worker_t w;
    rsrv_t s;
    rsrv_t s2;            /* a second server, for counting connections from an empty pool */
    pt_arena_t *arena;
} env_t;

static env_t *E;

typedef struct tcall {
    pt_upcall_t *call;
    int status;
    char hdrs[4096];
    size_t hdr_len;
    char body[65536];
    size_t body_len;
    char trailers[1024];
    int heads, dones, st;
    const char *reason;
    const char *up;
    size_t up_len, up_off;
    bool cancel_in_head;
    bool pause_once;
    bool paused;
} tcall_t;

static size_t cb_read(void *ud, char *buf, size_t max, bool *eof)
{
    tcall_t *t = ud;
    size_t n = t->up_len - t->up_off < max ? t->up_len - t->up_off : max;
    memcpy(buf, t->up + t->up_off, n);
    t->up_off += n;
    *eof = t->up_off == t->up_len;
    return n;
}

static void cb_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    tcall_t *t = ud;
    t->heads++;
    t->status = status;
    for (size_t i = 0; i < cnt && t->hdr_len < sizeof(t->hdrs) - 1; i++) {
        int n = snprintf(t->hdrs + t->hdr_len, sizeof(t->hdrs) - t->hdr_len, "%.*s: %.*s\n",
                         (int)h[i].name.len, h[i].name.base, (int)h[i].value.len, h[i].value.base);
        t->hdr_len += (size_t)n < sizeof(t->hdrs) - t->hdr_len ? (size_t)n
                                                                : sizeof(t->hdrs) - 1 - t->hdr_len;
    }
    if (t->cancel_in_head) {
        pt_upcall_cancel(t->call);
        t->call = NULL;
    }
}

static bool cb_data(void *ud, const char *data, size_t len)
{
    tcall_t *t = ud;
    size_t room = t->body_len < sizeof(t->body) ? sizeof(t->body) - t->body_len : 0;
    size_t n = len < room ? len : room; /* big bodies: counted, only the start kept */
    memcpy(t->body + t->body_len, data, n);
    t->body_len += len;
    if (t->pause_once && !t->paused) {
        t->paused = true;
        return false;
    }
    return true;
}

static void cb_done(void *ud, int st, const char *reason, const pt_header_t *tr, size_t tcnt)
{
    tcall_t *t = ud;
    t->dones++;
    t->st = st;
    t->reason = reason;
    size_t off = 0;
    for (size_t i = 0; i < tcnt; i++)
        off += (size_t)snprintf(t->trailers + off, sizeof(t->trailers) - off, "%.*s: %.*s\n",
                                (int)tr[i].name.len, tr[i].name.base, (int)tr[i].value.len,
                                tr[i].value.base);
    t->call = NULL;
}

static const pt_upcall_cbs_t CBS = {cb_read, cb_head, cb_data, cb_done};

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

static void spin(int ms)
{
    bool expired = false;
    struct event *guard = evtimer_new(E->w.base, on_guard, &expired);
    struct timeval tv = {0, ms * 1000};
    evtimer_add(guard, &tv);
    while (!expired)
        event_base_loop(E->w.base, EVLOOP_ONCE);
    event_free(guard);
}

static void run_all(tcall_t **ts, size_t n)
{
    bool expired = false;
    struct event *guard = evtimer_new(E->w.base, on_guard, &expired);
    struct timeval tv = {10, 0};
    evtimer_add(guard, &tv);
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            if (ts[i]->dones == 0 && ts[i]->call != NULL)
                all = false;
        if (all || expired)
            break;
        event_base_loop(E->w.base, EVLOOP_ONCE);
    }
    event_free(guard);
    assert_false(expired);
}

typedef struct tcluster {
    pt_cluster_t cl;
    pt_endpoint_t ep[2];
    char url[2][64];
} tcluster_t;

static void cluster_init(tcluster_t *c, int port)
{
    static unsigned next_index = 100;
    memset(c, 0, sizeof(*c));
    c->cl.index = next_index++;
    snprintf(c->url[0], sizeof(c->url[0]), "http://127.0.0.1:%d", port);
    c->ep[0].url = c->url[0];
    c->ep[0].host = "127.0.0.1";
    c->ep[0].port = (uint16_t)port;
    c->cl.name = "h1";
    c->cl.protocol = PT_PROTO_HTTP;
    c->cl.endpoints = c->ep;
    c->cl.endpoint_cnt = 1;
    c->cl.connect_timeout_ms = 2000;
    c->cl.timeout_ms = 5000;
    c->cl.retries = 1;
    c->cl.max_idle_per_endpoint = 8;
}

static pt_upcall_req_t mkreq(const pt_cluster_t *cl, const char *method, const char *path)
{
    pt_upcall_req_t r = {0};
    r.cluster = cl;
    r.method = pt_str_c(method);
    r.path = pt_str_c(path);
    r.content_length = -1;
    r.idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    return r;
}

/** One call to completion on a fresh cluster slot sharing the server's pool. */
static void do_call(tcluster_t *c, tcall_t *t, const char *method, const char *path)
{
    pt_upcall_req_t r = mkreq(&c->cl, method, path);
    memset(t, 0, sizeof(*t));
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, t, &t->call), 0);
    tcall_t *tp = t;
    run_all(&tp, 1);
    assert_int_equal(t->dones, 1);
}

static int accepted(void)
{
    return atomic_load(&E->s.accepted);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_backend_choice(void **state)
{
    (void)state;
    pt__upworker_t *uw = E->w.upstream_http;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    assert_int_equal(pt__up_cluster(uw, &c.cl)->backend, PT__UP_H1);

    tcluster_t tls;
    cluster_init(&tls, E->s.port);
    tls.ep[0].tls = true;
    assert_int_equal(pt__up_cluster(uw, &tls.cl)->backend, PT__UP_CURL);

    tcluster_t name;
    cluster_init(&name, E->s.port);
    name.ep[0].host = "example.internal";
    assert_int_equal(pt__up_cluster(uw, &name.cl)->backend, PT__UP_CURL);

    tcluster_t local;
    cluster_init(&local, E->s.port);
    local.ep[0].host = "localhost";
    assert_int_equal(pt__up_cluster(uw, &local.cl)->backend, PT__UP_H1);

    tcluster_t h2;
    cluster_init(&h2, E->s.port);
    h2.cl.http2 = true;
    assert_int_equal(pt__up_cluster(uw, &h2.cl)->backend, PT__UP_CURL);

    /* The switch: every REST cluster through libcurl. */
    pt_worker_t w2;
    memset(&w2, 0, sizeof(w2));
    w2.base = E->w.base;
    setenv("PORTICO_UPSTREAM_NATIVE", "0", 1);
    assert_int_equal(pt_upstream_worker_init(&w2), 0);
    unsetenv("PORTICO_UPSTREAM_NATIVE");
    tcluster_t c2;
    cluster_init(&c2, E->s.port);
    assert_int_equal(pt__up_cluster(w2.upstream_http, &c2.cl)->backend, PT__UP_CURL);
    pt_upstream_worker_dispose(&w2);
}

static void test_reuse(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    int a0 = accepted();
    for (int i = 0; i < 10; i++) {
        tcall_t t;
        do_call(&c, &t, "GET", "/ok");
        assert_int_equal(t.st, 0);
        assert_int_equal(t.status, 200);
        assert_int_equal(t.body_len, 2);
        assert_non_null(strstr(t.hdrs, "x-mixed-case: v\n")); /* names lowercased */
    }
    assert_int_equal(accepted() - a0, 1);
}

static void test_request_bytes(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    char got[8192], want[256];
    tcall_t t;

    /* Host from the endpoint when the caller gives none. */
    do_call(&c, &t, "GET", "/ok?a=1");
    last_request(&E->s, got, sizeof(got));
    snprintf(want, sizeof(want), "GET /ok?a=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", E->s.port);
    assert_string_equal(got, want);

    /* The caller's headers, minus hop-by-hop and framing; the cluster's authority wins. */
    pt_headers_t h;
    pt_headers_init(&h, E->arena);
    pt_headers_add(&h, PT_STR("x-a"), PT_STR("1"));
    pt_headers_add(&h, PT_STR("te"), PT_STR("trailers"));
    pt_headers_add(&h, PT_STR("transfer-encoding"), PT_STR("chunked"));
    pt_headers_add(&h, PT_STR("x-bad"), PT_STR("a\nb"));
    /* Values are checked eight bytes at a time: bad bytes past the first word too. */
    pt_headers_add(&h, PT_STR("x-del"), PT_STR("0123456789\x7f" "123456"));
    pt_headers_add(&h, PT_STR("x-ctl"), PT_STR("0123456789ab\x01" "def"));
    pt_headers_add(&h, PT_STR("x-tab"), PT_STR("0123456789\tbcdef\xff"));
    pt_headers_add(&h, PT_STR("bad name"), PT_STR("1"));
    c.cl.authority = "api.test";
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/ok");
    r.headers = &h;
    r.authority = PT_STR("client.test");
    r.has_body = true;
    r.content_length = 5;
    memset(&t, 0, sizeof(t));
    t.up = "hello";
    t.up_len = 5;
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, &t, &t.call), 0);
    tcall_t *tp = &t;
    run_all(&tp, 1);
    assert_int_equal(t.st, 0);
    last_request(&E->s, got, sizeof(got));
    assert_string_equal(got, "POST /ok HTTP/1.1\r\nHost: api.test\r\nx-a: 1\r\n"
                             "x-tab: 0123456789\tbcdef\xff\r\n"
                             "Content-Length: 5\r\n\r\nhello");

    /* A streamed body goes chunked, with the last chunk. */
    c.cl.authority = NULL;
    pt_upcall_req_t r2 = mkreq(&c.cl, "PUT", "/ok");
    r2.authority = PT_STR("client.test");
    r2.has_body = true;
    memset(&t, 0, sizeof(t));
    t.up = "0123456789";
    t.up_len = 10;
    assert_int_equal(pt_upcall_start(&E->w, &r2, &CBS, &t, &t.call), 0);
    run_all(&tp, 1);
    assert_int_equal(t.st, 0);
    last_request(&E->s, got, sizeof(got));
    assert_string_equal(got, "PUT /ok HTTP/1.1\r\nHost: client.test\r\n"
                             "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n");

    /* A request line that would break framing is refused up front. */
    pt_upcall_req_t r3 = mkreq(&c.cl, "GET", "/a b");
    assert_int_equal(pt_upcall_start(&E->w, &r3, &CBS, &t, &t.call), PT_ERR_INVALID);
}

static void expect_502(const char *path, int heads)
{
    tcluster_t c;
    cluster_init(&c, E->s.port);
    tcall_t t;
    do_call(&c, &t, "GET", path);
    if (t.st != PT_ERR_UPSTREAM || t.heads != heads)
        print_message("%s: st %d heads %d (%s)\n", path, t.st, t.heads, t.reason);
    assert_int_equal(t.st, PT_ERR_UPSTREAM);
    assert_int_equal(pt_status_http(t.st), 502);
    assert_int_equal(t.heads, heads);
}

static void test_strict_heads(void **state)
{
    (void)state;
    expect_502("/conflictcl", 0);
    expect_502("/badcl", 0);
    expect_502("/clte", 0);
    expect_502("/chunkednotlast", 0);
    expect_502("/obsfold", 0);
    expect_502("/spacecolon", 0);
    expect_502("/ctlvalue", 0);
    expect_502("/s101", 0);
    expect_502("/badstatus", 0);
    expect_502("/shortstatus", 0);
    expect_502("/hugehead?140000", 0); /* over 128 KiB */

    tcluster_t c;
    cluster_init(&c, E->s.port);
    tcall_t t;
    do_call(&c, &t, "GET", "/dupcl"); /* the same length twice is fine */
    assert_int_equal(t.st, 0);
    assert_int_equal(t.body_len, 3);
    do_call(&c, &t, "GET", "/hugehead?100000"); /* big, but under the limit */
    assert_int_equal(t.st, 0);
    assert_int_equal(t.body_len, 2);
    do_call(&c, &t, "GET", "/barelf");
    assert_int_equal(t.st, 0);
    assert_memory_equal(t.body, "ok", 2);
}

static void test_strict_chunks(void **state)
{
    (void)state;
    expect_502("/badchunk", 1);
    expect_502("/chunknocrlf", 1);
    expect_502("/chunkhuge", 1);
    expect_502("/truncated", 1);

    tcluster_t c;
    cluster_init(&c, E->s.port);
    tcall_t t;
    do_call(&c, &t, "GET", "/ok"); /* the pool has a connection to start from */
    int a0 = accepted();
    do_call(&c, &t, "GET", "/trailers");
    assert_int_equal(t.st, 0);
    assert_int_equal(t.body_len, 5);
    assert_memory_equal(t.body, "abcde", 5);
    assert_string_equal(t.trailers, "x-sum: 42\nx-other: z\n");
    do_call(&c, &t, "GET", "/ok"); /* the connection was kept */
    assert_int_equal(t.st, 0);
    assert_int_equal(accepted() - a0, 0);
}

static void test_bodyless(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    tcall_t t;
    do_call(&c, &t, "GET", "/ok"); /* the pool has a connection to start from */
    int a0 = accepted();
    do_call(&c, &t, "GET", "/early1xx");
    assert_int_equal(t.st, 0);
    assert_int_equal(t.heads, 1);
    assert_int_equal(t.status, 200);
    do_call(&c, &t, "HEAD", "/headreq"); /* Content-Length describes a GET: no body */
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, 0);
    do_call(&c, &t, "GET", "/nocontent");
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 204);
    do_call(&c, &t, "GET", "/notmodified");
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 304);
    do_call(&c, &t, "GET", "/ok");
    assert_int_equal(t.st, 0);
    assert_int_equal(accepted() - a0, 0); /* all on the same connection */
}

static void test_no_reuse(void **state)
{
    (void)state;
    const char *paths[] = {"/closedelim", "/connclose", "/http10", "/junkafter"};
    for (size_t i = 0; i < 4; i++) {
        tcluster_t c;
        cluster_init(&c, E->s.port);
        tcall_t t;
        do_call(&c, &t, "GET", "/ok"); /* a pooled connection to start from */
        int a0 = accepted();
        do_call(&c, &t, "GET", paths[i]);
        assert_int_equal(t.st, 0);
        if (i == 0) {
            assert_int_equal(t.body_len, 13);
            assert_memory_equal(t.body, "until the end", 13);
        }
        do_call(&c, &t, "GET", "/ok");
        assert_int_equal(t.st, 0);
        if (accepted() - a0 != 1)
            print_message("%s: %d new connections\n", paths[i], accepted() - a0);
        assert_int_equal(accepted() - a0, 1); /* that connection was not reused */
    }
}

static void test_keepalive_race(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    c.cl.retries = 0; /* the race retry is not an endpoint retry */
    tcall_t t;

    /* /arm: the server drops the next request on that connection unanswered. */
    do_call(&c, &t, "GET", "/arm");
    int a0 = accepted();
    do_call(&c, &t, "GET", "/ok");
    assert_int_equal(t.st, 0); /* sent again on a fresh connection */
    assert_int_equal(accepted() - a0, 1);

    /* A POST without a body byte taken is safe to send again... */
    do_call(&c, &t, "GET", "/arm");
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/ok");
    r.content_length = 0;
    memset(&t, 0, sizeof(t));
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, &t, &t.call), 0);
    tcall_t *tp = &t;
    run_all(&tp, 1);
    assert_int_equal(t.st, 0);

    /* ... one whose body went out is not. */
    do_call(&c, &t, "GET", "/arm");
    pt_upcall_req_t r2 = mkreq(&c.cl, "POST", "/ok");
    r2.has_body = true;
    r2.content_length = 3;
    memset(&t, 0, sizeof(t));
    t.up = "abc";
    t.up_len = 3;
    assert_int_equal(pt_upcall_start(&E->w, &r2, &CBS, &t, &t.call), 0);
    run_all(&tp, 1);
    assert_int_equal(t.st, PT_ERR_UPSTREAM);
    assert_int_equal(t.heads, 0);

    /* A fresh connection dropped unanswered is not retried without `retries`. */
    do_call(&c, &t, "GET", "/drop");
    assert_int_equal(t.st, PT_ERR_UPSTREAM);
}

static void test_pool_cap(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    c.cl.max_idle_per_endpoint = 2;
    enum { N = 4 };
    for (int round = 0; round < 2; round++) {
        tcall_t ts[N];
        tcall_t *tp[N];
        pt_upcall_req_t rs[N];
        int a0 = accepted();
        for (int i = 0; i < N; i++) {
            memset(&ts[i], 0, sizeof(ts[i]));
            rs[i] = mkreq(&c.cl, "GET", "/big?100000");
            tp[i] = &ts[i];
            assert_int_equal(pt_upcall_start(&E->w, &rs[i], &CBS, &ts[i], &ts[i].call), 0);
        }
        run_all(tp, N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(ts[i].st, 0);
            assert_int_equal(ts[i].body_len, 100000);
        }
        /* First round: 4 new connections (2 kept). Second: 2 reused, 2 new. */
        assert_int_equal(accepted() - a0, round == 0 ? N : N - 2);
    }
}

static void test_cancel_and_pause(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s2.port); /* nobody else used this endpoint: at most one pooled connection */
    tcall_t t;
    do_call(&c, &t, "GET", "/ok");
    int a0 = atomic_load(&E->s2.accepted);

    /* Cancelled from on_head: nothing more, and the connection is not reused. */
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/big?1000000");
    memset(&t, 0, sizeof(t));
    t.cancel_in_head = true;
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, &t, &t.call), 0);
    while (t.heads == 0)
        spin(2);
    spin(30);
    assert_int_equal(t.dones, 0);
    assert_int_equal(t.body_len, 0);
    do_call(&c, &t, "GET", "/ok");
    assert_int_equal(t.st, 0);
    assert_int_equal(atomic_load(&E->s2.accepted) - a0, 1);

    /* Paused with bytes left in the read buffer: nothing arrives until resume. */
    pt_upcall_req_t r2 = mkreq(&c.cl, "GET", "/big?30000");
    memset(&t, 0, sizeof(t));
    t.pause_once = true;
    assert_int_equal(pt_upcall_start(&E->w, &r2, &CBS, &t, &t.call), 0);
    while (!t.paused)
        spin(2);
    size_t seen = t.body_len;
    spin(50);
    assert_int_equal(t.body_len, seen);
    assert_int_equal(t.dones, 0);
    pt_upcall_resume(t.call);
    tcall_t *tp = &t;
    run_all(&tp, 1);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.body_len, 30000);
}

static void test_early_response(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, E->s.port);
    static char payload[600000];
    memset(payload, 'p', sizeof(payload));
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/early");
    r.has_body = true;
    r.content_length = sizeof(payload);
    tcall_t t;
    memset(&t, 0, sizeof(t));
    t.up = payload;
    t.up_len = sizeof(payload);
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, &t, &t.call), 0);
    tcall_t *tp = &t;
    run_all(&tp, 1);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 413);
    assert_memory_equal(t.body, "big!", 4);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    unsetenv("PORTICO_UPSTREAM_NATIVE");
    E = calloc(1, sizeof(*E));
    E->w.base = event_base_new();
    if (E->w.base == NULL || pt_upstream_worker_init(&E->w) != 0)
        return -1;
    rsrv_start(&E->s);
    rsrv_start(&E->s2);
    E->arena = pt_arena_new(0, 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pt_upstream_worker_dispose(&E->w);
    assert_null(E->w.upstream_http);
    event_base_free(E->w.base);
    rsrv_stop(&E->s);
    rsrv_stop(&E->s2);
    pt_arena_destroy(E->arena);
    free(E);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_choice),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_strict_heads),
        cmocka_unit_test(test_strict_chunks),
        cmocka_unit_test(test_bodyless),
        cmocka_unit_test(test_no_reuse),
        cmocka_unit_test(test_keepalive_race),
        cmocka_unit_test(test_pool_cap),
        cmocka_unit_test(test_cancel_and_pause),
        cmocka_unit_test(test_early_response),
    };
    return cmocka_run_group_tests_name("upstream_h1", tests, group_setup, group_teardown);
}
