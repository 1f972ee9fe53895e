/*
 * test_upstream.c -- the upstream call primitive (upstream/call.h) against
 * real sockets: a small scripted HTTP/1.1 server on 127.0.0.1 (one thread per
 * connection) and, when installed, nghttpd for HTTP/2 prior knowledge.
 *
 * The client side runs the way a worker does: a zeroed pt_worker_t with its
 * own event_base, pt_upstream_worker_init(), and the loop turning until the
 * call's on_done.
 *
 * The scripted server is test/support/httpsrv.c.
 *
 * REST clusters have two back ends (call.c): the native HTTP/1.1 client
 * (upstream/h1.c) and libcurl (upstream/http.c). The shared cases run once
 * per back end: a worker set up with PORTICO_UPSTREAM_NATIVE=0 sends every
 * REST cluster through libcurl. What only the native client does is tested
 * in test_upstream_h1.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmpdir.h"
#include "portico/arena.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "httpsrv.h"
#include "upstream/call.h"
#include "upstream/call_internal.h"
#include "upstream/h2.h"
#include "upstream/policy.h"
#include "net/worker.h"

/* ---- the client side --------------------------------------------------------- */

typedef struct env {
    pt_worker_t w;
    bool curl;          /* this group runs every REST cluster through libcurl */
    tsrv_t a, b;
    pt_arena_t *arena;
} env_t;

static env_t *E;

typedef struct tcall {
    pt_upcall_t *call;
    int status;
    char hdrs[8192];
    size_t hdr_len;
    char *body;
    size_t body_len, body_cap;
    char trailers[1024];
    int heads, dones;
    int st;
    const char *reason;
    /* upload */
    const char *up;
    size_t up_len, up_off, up_avail; /* bytes released so far (hold mode) */
    bool up_hold;
    size_t up_step;
    bool up_timer_on;
    /* download */
    bool pause_each;
    bool stall;         /* pause at the first byte and stay paused until the test resumes */
    int resume_us;      /* pause_each: resume after this long (0: 200 us) */
    unsigned pauses;
    bool resume_scheduled;
    struct event *resume_ev;
    bool cancel_in_head;
    bool no_body_store;
} tcall_t;

static size_t cb_read(void *ud, char *buf, size_t max, bool *eof)
{
    tcall_t *t = ud;
    size_t lim = t->up_hold ? t->up_avail : t->up_len;
    size_t n = lim - t->up_off < max ? lim - t->up_off : max;
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
    for (size_t i = 0; i < cnt; i++)
        t->hdr_len += (size_t)snprintf(t->hdrs + t->hdr_len, sizeof(t->hdrs) - t->hdr_len,
                                       "%.*s: %.*s\n", (int)h[i].name.len, h[i].name.base,
                                       (int)h[i].value.len, h[i].value.base);
    if (t->cancel_in_head) {
        pt_upcall_cancel(t->call);
        t->call = NULL;
    }
}

static void on_resume_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tcall_t *t = arg;
    t->resume_scheduled = false;
    if (t->call != NULL)
        pt_upcall_resume(t->call);
}

static bool cb_data(void *ud, const char *data, size_t len)
{
    tcall_t *t = ud;
    if (!t->no_body_store) {
        if (t->body_len + len > t->body_cap) {
            t->body_cap = (t->body_len + len) * 2;
            t->body = realloc(t->body, t->body_cap);
        }
        memcpy(t->body + t->body_len, data, len);
    } else {
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)data[i] != (t->body_len + i) % 251)
                fail_msg("pattern mismatch at %zu", t->body_len + i);
    }
    t->body_len += len;
    if (t->stall) {
        t->pauses++;
        return false;
    }
    if (t->pause_each) {
        t->pauses++;
        if (!t->resume_scheduled) {
            t->resume_scheduled = true;
            struct timeval tv = {0, t->resume_us > 0 ? t->resume_us : 200};
            if (t->resume_ev == NULL)
                t->resume_ev = evtimer_new(E->w.base, on_resume_timer, t);
            evtimer_add(t->resume_ev, &tv);
        }
        return false;
    }
    return true;
}

static void cb_done(void *ud, int st, const char *reason, const pt_header_t *tr, size_t tcnt)
{
    tcall_t *t = ud;
    t->dones++;
    if (t->resume_ev != NULL) {
        event_free(t->resume_ev);
        t->resume_ev = NULL;
    }
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

/** Turns the loop until every call in `ts` is done (10 s guard). */
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

static void run(tcall_t *t)
{
    run_all(&t, 1);
}

/* Lets the loop turn for `ms` (to see that nothing more happens). */
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

typedef struct tcluster {
    pt_cluster_t cl;
    pt_endpoint_t ep[4];
    char urls[4][64];
} tcluster_t;

static void cluster_init(tcluster_t *c, const int *ports, size_t n)
{
    static unsigned next_index; /* a fresh round-robin cursor for every test cluster */
    memset(c, 0, sizeof(*c));
    c->cl.index = next_index++;
    for (size_t i = 0; i < n; i++) {
        snprintf(c->urls[i], sizeof(c->urls[i]), "http://127.0.0.1:%d", ports[i]);
        c->ep[i].url = c->urls[i];
        c->ep[i].host = "127.0.0.1";
        c->ep[i].port = (uint16_t)ports[i];
    }
    c->cl.name = "test";
    c->cl.protocol = PT_PROTO_HTTP;
    c->cl.endpoints = c->ep;
    c->cl.endpoint_cnt = n;
    c->cl.connect_timeout_ms = 2000;
    c->cl.timeout_ms = 5000;
    c->cl.retries = 1;
    c->cl.tls_verify = true;
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

static void start_ok(tcall_t *t, const pt_upcall_req_t *r)
{
    assert_int_equal(pt_upcall_start(&E->w, r, &CBS, t, &t->call), 0);
    assert_non_null(t->call);
}

static void tcall_free(tcall_t *t)
{
    free(t->body);
    t->body = NULL;
}

/* ---- fd exhaustion (issue 14 bug 2) ------------------------------------------------ */

typedef struct fdhog {
    struct rlimit old;
    int fds[4096];
    size_t cnt;
} fdhog_t;

/* Takes every free fd (the loop may have closed some, e.g. a pooled connection). */
static void fds_top_up(fdhog_t *h)
{
    int fd;
    while (h->cnt < sizeof(h->fds) / sizeof(h->fds[0]) && (fd = open("/dev/null", O_RDONLY)) >= 0)
        h->fds[h->cnt++] = fd;
}

/* Makes every further socket() of this process fail with EMFILE: a low soft
 * RLIMIT_NOFILE, then /dev/null opened until the table is full. */
static void fds_exhaust(fdhog_t *h)
{
    /* The scripted servers' connection threads of earlier tests close their sockets on
     * their own threads, a little after the client side went: a close after the table
     * was filled would give a call below a free fd (seen once in 120 runs under load). */
    for (int i = 0; i < 1000 && srv_live_conns() > 0; i++)
        usleep(5000);
    h->cnt = 0;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &h->old), 0);
    int top = open("/dev/null", O_RDONLY);
    assert_true(top >= 0);
    close(top);
    struct rlimit low = h->old;
    low.rlim_cur = (rlim_t)top + 64 < h->old.rlim_cur ? (rlim_t)top + 64 : h->old.rlim_cur;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    fds_top_up(h);
    assert_int_equal(errno, EMFILE);
    assert_true(socket(AF_INET, SOCK_STREAM, 0) < 0);
}

static void fds_release(fdhog_t *h)
{
    while (h->cnt > 0)
        close(h->fds[--h->cnt]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &h->old), 0);
}

/*
 * Running out of fds is Portico's own failure: every call gets
 * PT_ERR_OVERLOADED (503), and the healthy endpoint is never ejected, so the
 * first call after the shortage goes through (it used to be refused up front
 * for the 10 s of an ejection after 5 such failures).
 */
static void fd_exhaustion_round(tcluster_t *c, const char *path)
{
    static fdhog_t hog;
    enum { N = 10 }; /* twice the default outlier.consecutive_failures */
    int rcs[N], sts[N], heads[N];
    fds_exhaust(&hog);
    for (int i = 0; i < N; i++) {
        fds_top_up(&hog);
        pt_upcall_req_t r = mkreq(&c->cl, "GET", path);
        tcall_t t = {0};
        rcs[i] = pt_upcall_start(&E->w, &r, &CBS, &t, &t.call);
        if (rcs[i] == 0)
            run(&t);
        sts[i] = t.st;
        heads[i] = t.heads;
        tcall_free(&t);
    }
    fds_release(&hog); /* before any assertion: a failure must not starve the next tests */
    for (int i = 0; i < N; i++) {
        if (rcs[i] != 0 || sts[i] != PT_ERR_OVERLOADED)
            print_message("call %d: start %d, status %d\n", i, rcs[i], sts[i]);
        assert_int_equal(rcs[i], 0);
        assert_int_equal(sts[i], PT_ERR_OVERLOADED);
        assert_int_equal(heads[i], 0);
    }
    assert_int_equal(pt_status_http(PT_ERR_OVERLOADED), 503);
    pt_upcall_req_t r = mkreq(&c->cl, "GET", path);
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    tcall_free(&t);
}

static void test_fd_exhaustion_no_ejection(void **state)
{
    (void)state;
    /* a server no earlier test used: no pooled connection to reuse */
    static tsrv_t fresh;
    srv_start(&fresh, 'a');
    tcluster_t c;
    cluster_init(&c, &fresh.port, 1);
    fd_exhaustion_round(&c, "/hello");
    srv_stop(&fresh);
}

/* ---- tests ---------------------------------------------------------------------- */

/* The group really runs on the back end it claims. */
static void test_backend(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    assert_int_equal(pt__up_cluster(E->w.upstream_http, &c.cl)->backend,
                     E->curl ? PT__UP_CURL : PT__UP_H1);
}

static void test_get(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/hello");
    tcall_t t = {0};
    start_ok(&t, &r);
    assert_int_equal(t.heads, 0); /* never called back synchronously */
    run(&t);
    assert_int_equal(t.dones, 1);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.heads, 1);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, 5);
    assert_memory_equal(t.body, "hello", 5);
    assert_non_null(strstr(t.hdrs, "x-test: 1\n")); /* names lowercased */
    tcall_free(&t);
}

static void test_request_head(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    pt_headers_t h;
    pt_headers_init(&h, E->arena);
    pt_headers_add(&h, PT_STR("x-custom"), PT_STR("v1"));
    pt_headers_add(&h, PT_STR("x-empty"), PT_STR(""));
    pt_headers_add(&h, PT_STR("connection"), PT_STR("close"));       /* hop-by-hop: dropped */
    pt_headers_add(&h, PT_STR("content-length"), PT_STR("999"));     /* framing is ours */
    pt_headers_add(&h, PT_STR("x-evil"), PT_STR("a\r\nx-injected: 1")); /* never forwarded */
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/head?x=1&y=%2F..%2F");
    r.headers = &h;
    r.authority = PT_STR("api.example.com");
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, 0);
    t.body = realloc(t.body, t.body_len + 1);
    t.body[t.body_len] = '\0';
    assert_non_null(strstr(t.body, "GET /head?x=1&y=%2F..%2F HTTP/1.1\n"));
    assert_non_null(strstr(t.body, "Host: api.example.com\n"));
    assert_non_null(strstr(t.body, "x-custom: v1\n"));
    assert_non_null(strstr(t.body, "x-empty:"));
    assert_null(strstr(t.body, "x-injected"));
    assert_null(strstr(t.body, "999"));
    assert_null(strcasestr(t.body, "connection: close"));
    assert_null(strcasestr(t.body, "accept:"));  /* libcurl adds nothing of its own */
    assert_null(strcasestr(t.body, "expect:"));
    tcall_free(&t);
}

static void test_post_streaming(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    static char payload[300000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)('a' + i % 26);
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/echo");
    r.has_body = true;
    r.content_length = sizeof(payload);
    tcall_t t = {0};
    t.up = payload;
    t.up_len = sizeof(payload);
    t.up_hold = true; /* released 50 KB at a time from a timer */
    start_ok(&t, &r);
    while (t.dones == 0) {
        spin(5);
        if (t.up_avail < t.up_len) {
            t.up_avail = t.up_avail + 50000 > t.up_len ? t.up_len : t.up_avail + 50000;
            if (t.call != NULL)
                pt_upcall_body_ready(t.call);
        }
    }
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, sizeof(payload));
    assert_memory_equal(t.body, payload, sizeof(payload));
    assert_non_null(strstr(t.hdrs, "x-method: POST\n"));
    assert_null(strstr(t.hdrs, "x-chunked"));
    tcall_free(&t);
}

static void test_chunked_upload(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    const char *payload = "streamed body of unknown length";
    pt_upcall_req_t r = mkreq(&c.cl, "PUT", "/echo");
    r.has_body = true;
    r.content_length = -1;
    tcall_t t = {0};
    t.up = payload;
    t.up_len = strlen(payload);
    t.up_hold = true;
    start_ok(&t, &r);
    spin(20);
    assert_int_equal(t.dones, 0); /* waiting for body */
    t.up_avail = 10;
    pt_upcall_body_ready(t.call);
    spin(20);
    t.up_avail = t.up_len;
    pt_upcall_body_ready(t.call);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_non_null(strstr(t.hdrs, "x-chunked: 1\n"));
    assert_non_null(strstr(t.hdrs, "x-method: PUT\n"));
    assert_int_equal(t.body_len, strlen(payload));
    assert_memory_equal(t.body, payload, t.body_len);
    tcall_free(&t);
}

static void test_post_without_body(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/head");
    r.content_length = 0;
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, 0);
    t.body = realloc(t.body, t.body_len + 1);
    t.body[t.body_len] = '\0';
    assert_non_null(strstr(t.body, "POST /head HTTP/1.1\n"));
    assert_non_null(strcasestr(t.body, "content-length: 0\n"));
    tcall_free(&t);
}

static void test_large_response_pause(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/big?4000000");
    tcall_t t = {0};
    t.pause_each = true;
    t.no_body_store = true;
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.body_len, 4000000);
    assert_true(t.pauses > 10);
    tcall_free(&t);
}

static void test_refused_failover(void **state)
{
    (void)state;
    int ports[2] = {dead_port(), E->a.port};
    tcluster_t c;
    cluster_init(&c, ports, 2);
    /* Round robin starts at the dead one for the first call: it must fail over. */
    for (int i = 0; i < 4; i++) {
        pt_upcall_req_t r = mkreq(&c.cl, "GET", "/hello");
        tcall_t t = {0};
        start_ok(&t, &r);
        run(&t);
        assert_int_equal(t.st, 0);
        assert_int_equal(t.status, 200);
        tcall_free(&t);
    }
}

static void test_refused_all_503(void **state)
{
    (void)state;
    int ports[2] = {dead_port(), dead_port()};
    tcluster_t c;
    cluster_init(&c, ports, 2);
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/hello");
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, PT_ERR_UNAVAILABLE);
    assert_int_equal(t.heads, 0);
    assert_int_equal(pt_status_http(t.st), 503);
    tcall_free(&t);
}

static void test_ejection(void **state)
{
    (void)state;
    int port = dead_port();
    tcluster_t c;
    cluster_init(&c, &port, 1);
    c.cl.retries = 0;
    int fails = 0;
    for (int i = 0; i < 10; i++) {
        pt_upcall_req_t r = mkreq(&c.cl, "GET", "/hello");
        tcall_t t = {0};
        int rc = pt_upcall_start(&E->w, &r, &CBS, &t, &t.call);
        if (rc != 0) {
            /* ejected: refused up front, no callback ever */
            assert_int_equal(rc, PT_ERR_UNAVAILABLE);
            assert_true(i >= 5);
            spin(5);
            assert_int_equal(t.dones, 0);
            continue;
        }
        run(&t);
        assert_int_equal(t.st, PT_ERR_UNAVAILABLE);
        fails++;
    }
    assert_int_equal(fails, 5);
}

/* UP-2: a listener whose backlog is full never completes the handshake. */
static int hanging_port(int *fds, size_t *nfds)
{
    int port;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t l = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &l);
    port = ntohs(a.sin_port);
    fds[0] = lfd;
    *nfds = 1;
    /* Fill the accept queue (never accepted) until a connect no longer completes. */
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fd, (struct sockaddr *)&a, sizeof(a));
        struct pollfd p = {fd, POLLOUT, 0};
        fds[(*nfds)++] = fd;
        if (poll(&p, 1, 100) == 0)
            break; /* this one hangs: the queue is full */
    }
    return port;
}

static void test_connect_hang(void **state)
{
    (void)state;
    int fds[16];
    size_t nfds;
    int ports[2] = {hanging_port(fds, &nfds), E->a.port};
    tcluster_t c;
    cluster_init(&c, ports, 2);
    c.cl.connect_timeout_ms = 200;
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/hello");
    tcall_t t = {0};
    start_ok(&t, &r); /* the hanging endpoint first */
    run(&t);
    assert_int_equal(t.st, 0); /* retried elsewhere after the connect timeout */
    tcall_free(&t);

    tcluster_t only;
    cluster_init(&only, ports, 1);
    only.cl.connect_timeout_ms = 200;
    pt_upcall_req_t r2 = mkreq(&only.cl, "GET", "/hello");
    tcall_t t2 = {0};
    start_ok(&t2, &r2);
    run(&t2);
    assert_int_equal(t2.st, PT_ERR_UNAVAILABLE); /* 503: nothing could be reached */
    assert_string_equal(t2.reason, "upstream connect timeout");
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
}

static void test_timeout_504(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/slow?1500");
    r.timeout_ms = 300;
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, PT_ERR_TIMEOUT);
    assert_int_equal(pt_status_http(t.st), 504);
    assert_int_equal(t.heads, 0);
    tcall_free(&t);
}

static void test_truncated(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    const char *paths[] = {"/truncate", "/truncchunk"};
    for (int i = 0; i < 2; i++) {
        pt_upcall_req_t r = mkreq(&c.cl, "GET", paths[i]);
        tcall_t t = {0};
        start_ok(&t, &r);
        run(&t);
        assert_int_equal(t.heads, 1);   /* the head went out ... */
        assert_int_equal(t.status, 200);
        assert_int_equal(t.st, PT_ERR_UPSTREAM); /* ... but the end is an error, never success */
        tcall_free(&t);
    }
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    tsrv_t s;
    srv_start(&s, 'k');
    tcluster_t c;
    cluster_init(&c, &s.port, 1);
    for (int i = 0; i < 6; i++) {
        pt_upcall_req_t r = mkreq(&c.cl, "GET", "/hello");
        tcall_t t = {0};
        start_ok(&t, &r);
        run(&t);
        assert_int_equal(t.st, 0);
        tcall_free(&t);
    }
    assert_int_equal(atomic_load(&s.accepted), 1);

    /* The upstream closes a pooled connection (its keep-alive timeout): the
     * idle socket turns readable while nobody uses it, then the next call
     * gets a fresh connection. A POST works too (nothing to replay). */
    const char *seq[] = {"/bye", "/hello", "/bye", "/echo"};
    for (int i = 0; i < 4; i++) {
        pt_upcall_req_t r = mkreq(&c.cl, i == 3 ? "POST" : "GET", seq[i]);
        tcall_t t = {0};
        if (i == 3) {
            r.has_body = true;
            r.content_length = 2;
            t.up = "hi";
            t.up_len = 2;
        }
        start_ok(&t, &r);
        run(&t);
        assert_int_equal(t.st, 0);
        spin(30);
        tcall_free(&t);
    }
    assert_int_equal(atomic_load(&s.accepted), 3);
    srv_stop(&s);
}

static void test_retry_idempotent(void **state)
{
    (void)state;
    /* Server 'a' drops /closeon?a without answering; 'b' answers. */
    int ports[2] = {E->a.port, E->b.port};
    tcluster_t c;
    cluster_init(&c, ports, 2);
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/closeon?a");
    tcall_t t = {0};
    start_ok(&t, &r); /* first endpoint of a fresh cluster cursor is 'a' */
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    tcall_free(&t);

    /* A POST is not retried once it may have reached the upstream. */
    tcluster_t c2;
    cluster_init(&c2, ports, 2);
    pt_upcall_req_t r2 = mkreq(&c2.cl, "POST", "/closeon?a");
    r2.has_body = true;
    r2.content_length = 3;
    tcall_t t2 = {0};
    t2.up = "abc";
    t2.up_len = 3;
    start_ok(&t2, &r2);
    run(&t2);
    assert_int_equal(t2.st, PT_ERR_UPSTREAM);
    tcall_free(&t2);
}

static void test_continue_trailers_framing(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);

    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/continue");
    tcall_t t = {0};
    start_ok(&t, &r);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.heads, 1); /* the 100 was not handed out */
    assert_int_equal(t.status, 200);
    assert_memory_equal(t.body, "after", 5);
    tcall_free(&t);

    pt_upcall_req_t r2 = mkreq(&c.cl, "GET", "/trailers");
    tcall_t t2 = {0};
    start_ok(&t2, &r2);
    run(&t2);
    assert_int_equal(t2.st, 0);
    assert_int_equal(t2.body_len, 3);
    assert_memory_equal(t2.body, "abc", 3); /* de-chunked */
    assert_non_null(strstr(t2.trailers, "x-sum: 42\n"));
    tcall_free(&t2);

    const char *bad[] = {"/clte", "/s101"};
    for (int i = 0; i < 2; i++) {
        pt_upcall_req_t r3 = mkreq(&c.cl, "GET", bad[i]);
        tcall_t t3 = {0};
        start_ok(&t3, &r3);
        run(&t3);
        assert_int_equal(t3.heads, 0);
        assert_int_equal(t3.st, PT_ERR_UPSTREAM);
        tcall_free(&t3);
    }
}

static void test_cancel(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    /* Cancel from inside on_head (libcurl is on the stack). */
    pt_upcall_req_t r = mkreq(&c.cl, "GET", "/big?2000000");
    tcall_t t = {0};
    t.cancel_in_head = true;
    t.no_body_store = true;
    start_ok(&t, &r);
    while (t.heads == 0)
        spin(5);
    spin(50);
    assert_int_equal(t.dones, 0);
    assert_int_equal(t.body_len, 0);

    /* Cancel right after start, and while waiting on a slow upstream. */
    pt_upcall_req_t r2 = mkreq(&c.cl, "GET", "/hello");
    tcall_t t2 = {0};
    start_ok(&t2, &r2);
    pt_upcall_cancel(t2.call);
    pt_upcall_req_t r3 = mkreq(&c.cl, "GET", "/slow?200");
    tcall_t t3 = {0};
    start_ok(&t3, &r3);
    spin(50);
    pt_upcall_cancel(t3.call);
    spin(300);
    assert_int_equal(t2.dones + t2.heads + t3.dones + t3.heads, 0);

    /* The worker still works. */
    pt_upcall_req_t r4 = mkreq(&c.cl, "GET", "/hello");
    tcall_t t4 = {0};
    start_ok(&t4, &r4);
    run(&t4);
    assert_int_equal(t4.st, 0);
    tcall_free(&t4);
}

static void test_concurrent(void **state)
{
    (void)state;
    int ports[2] = {E->a.port, E->b.port};
    tcluster_t c;
    cluster_init(&c, ports, 2);
    enum { N = 20 };
    tcall_t ts[N];
    tcall_t *tp[N];
    pt_upcall_req_t rs[N];
    memset(ts, 0, sizeof(ts));
    for (int i = 0; i < N; i++) {
        rs[i] = mkreq(&c.cl, "GET", i % 2 ? "/big?100000" : "/hello");
        tp[i] = &ts[i];
        start_ok(&ts[i], &rs[i]);
    }
    run_all(tp, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ts[i].st, 0);
        assert_int_equal(ts[i].body_len, i % 2 ? 100000u : 5u);
        tcall_free(&ts[i]);
    }
}

/* gRPC clusters go to the native HTTP/2 back end (upstream/h2.c, tested in
 * test_upstream_h2.c): a call starts; cancelled, it never calls back. */
static void test_grpc_native(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_init(&c, &E->a.port, 1);
    c.cl.protocol = PT_PROTO_GRPC;
    pt_upcall_req_t r = mkreq(&c.cl, "POST", "/x");
    tcall_t t = {0};
    assert_int_equal(pt_upcall_start(&E->w, &r, &CBS, &t, &t.call), 0);
    pt_upcall_cancel(t.call);
    spin(20);
    assert_int_equal(t.dones, 0);
}

/* ---- HTTP/2 against nghttpd -------------------------------------------------------- */

typedef struct h2srv {
    char dir[64];
    char file[128], big[128], key[128], cert[128];
    pid_t pid;
    int port;
} h2srv_t;

static bool have_tool(const char *path1, const char *path2)
{
    return access(path1, X_OK) == 0 || access(path2, X_OK) == 0;
}

enum { H2_BIG = 1 << 20 };

/* The running nghttpd, stopped by group_teardown if a failed assertion skipped h2srv_stop. */
static h2srv_t *h2_running;

#ifndef PT_TLS_H1_BACKEND
#define PT_TLS_H1_BACKEND "test/unit/upstream_tls_h1_backend.py"
#endif

/**
 * Starts nghttpd serving a 20000-byte data.txt and a 1 MiB big.txt; with `tls`, a fresh
 * self-signed cert for 127.0.0.1. With `h1_alpn` (and `tls`), an HTTPS server that speaks
 * only HTTP/1.1 instead (upstream_tls_h1_backend.py: ALPN "http/1.1" or "none").
 */
static void h2srv_stop(h2srv_t *h);

static bool h2srv_start_as(h2srv_t *h, bool tls, const char *h1_alpn)
{
    if (h2_running != NULL) /* a failed assertion skipped an earlier test's h2srv_stop */
        h2srv_stop(h2_running);
    memset(h, 0, sizeof(*h));
    h2_running = h;
    if ((h1_alpn == NULL && !have_tool("/usr/sbin/nghttpd", "/usr/bin/nghttpd")) ||
        (h1_alpn != NULL && (access("/usr/bin/python3", X_OK) != 0 ||
                             access(PT_TLS_H1_BACKEND, R_OK) != 0)) ||
        (tls && !have_tool("/usr/bin/openssl", "/bin/openssl")))
        return false;
    snprintf(h->dir, sizeof(h->dir), "/tmp/pt_up_h2_XXXXXX");
    if (pt_test_mkdtemp(h->dir) == NULL)
        return false;
    snprintf(h->file, sizeof(h->file), "%s/data.txt", h->dir);
    snprintf(h->key, sizeof(h->key), "%s/key.pem", h->dir);
    snprintf(h->cert, sizeof(h->cert), "%s/cert.pem", h->dir);
    FILE *f = fopen(h->file, "w");
    for (int i = 0; i < 20000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    snprintf(h->big, sizeof(h->big), "%s/big.txt", h->dir);
    f = fopen(h->big, "w");
    for (int i = 0; i < H2_BIG; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    if (tls) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s -out %s -days 1 -subj /CN=127.0.0.1 "
                 "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
                 h->key, h->cert);
        if (system(cmd) != 0)
            return false;
    }
    h->port = dead_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", h->port);
    h->pid = fork();
    if (h->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (h1_alpn != NULL)
            execl("/usr/bin/python3", "python3", PT_TLS_H1_BACKEND, portstr, h->cert, h->key,
                  h1_alpn, (char *)NULL);
        else if (tls)
            execlp("nghttpd", "nghttpd", "-a", "127.0.0.1", "-d", h->dir, portstr, h->key, h->cert,
                   (char *)NULL);
        else
            execlp("nghttpd", "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", h->dir, portstr,
                   (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (up)
            return true;
        usleep(20000);
    }
    return false;
}

/** h2srv_start_as(), or the test is skipped (the tool is missing). */
static void h2srv_start_or_skip(h2srv_t *h, bool tls, const char *h1_alpn)
{
    if (!h2srv_start_as(h, tls, h1_alpn)) {
        h2srv_stop(h);
        skip();
    }
}

static void h2srv_stop(h2srv_t *h)
{
    h2_running = NULL;
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
    }
    unlink(h->file);
    unlink(h->big);
    unlink(h->key);
    unlink(h->cert);
    rmdir(h->dir);
}

/** `c`: an `http2: true` cluster of one https:// endpoint, nghttpd `h`, trusting its certificate. */
static void tls_cluster_init(tcluster_t *c, const h2srv_t *h)
{
    cluster_init(c, &h->port, 1);
    snprintf(c->urls[0], sizeof(c->urls[0]), "https://127.0.0.1:%d", h->port);
    c->ep[0].tls = true;
    c->cl.http2 = true;
    c->cl.ca_file = h->cert;
}

/* Several streams at once (one of them paused over and over), then more
 * exchanges one after the other on what the pool kept. */
static void h2_round(tcluster_t *c)
{
    enum { N = 5 };
    tcall_t ts[N];
    tcall_t *tp[N];
    pt_upcall_req_t rs[N];
    memset(ts, 0, sizeof(ts));
    for (int i = 0; i < N; i++) {
        rs[i] = mkreq(&c->cl, "GET", "/data.txt");
        rs[i].authority = PT_STR("h2.test");
        tp[i] = &ts[i];
        ts[i].pause_each = i == 0;
        start_ok(&ts[i], &rs[i]);
    }
    run_all(tp, N);
    for (int i = 0; i < N; i++) {
        if (ts[i].st != 0)
            print_message("h2 stream %d: %s (%zu bytes)\n", i, ts[i].reason, ts[i].body_len);
        assert_int_equal(ts[i].st, 0);
        assert_int_equal(ts[i].status, 200);
        assert_int_equal(ts[i].body_len, 20000);
        assert_int_equal(ts[i].body[25], 'z');
        tcall_free(&ts[i]);
    }
    /* A call starting while another one is mid-stream on a live connection. */
    for (int k = 0; k < 3; k++) {
        pt_upcall_req_t ra = mkreq(&c->cl, "GET", "/data.txt"), rb = ra;
        tcall_t ta = {0}, tb = {0};
        ta.pause_each = true;
        start_ok(&ta, &ra);
        while (ta.heads == 0 && ta.dones == 0)
            spin(1);
        start_ok(&tb, &rb);
        tcall_t *both[2] = {&ta, &tb};
        run_all(both, 2);
        if (ta.st != 0 || tb.st != 0)
            print_message("h2 overlap %d: %s / %s\n", k, ta.reason, tb.reason);
        assert_int_equal(ta.st, 0);
        assert_int_equal(tb.st, 0);
        assert_int_equal(ta.body_len + tb.body_len, 40000);
        tcall_free(&ta);
        tcall_free(&tb);
    }
    for (int k = 0; k < 3; k++) {
        pt_upcall_req_t r = mkreq(&c->cl, "GET", "/data.txt");
        tcall_t t = {0};
        start_ok(&t, &r);
        run(&t);
        if (t.st != 0)
            print_message("h2 sequential %d: %s\n", k, t.reason);
        assert_int_equal(t.st, 0);
        assert_int_equal(t.body_len, 20000);
        tcall_free(&t);
    }
}

/*
 * Slow readers beside fast ones on one HTTP/2 connection. First a stream
 * that stays paused (its caller takes nothing) while three rounds of other
 * streams complete, each in full; then it resumes and completes too. Then
 * ROUNDS rounds of a reader that pauses at every chunk (resumed 200 us later)
 * beside 16 streams started with it: every one must complete. Through
 * libcurl 7.88 (the old back end of https:// HTTP/2 clusters) a stream's last
 * bytes could stay in libcurl's receive buffer, unread, until the call
 * timeout (about 1 round in 40 here; the cluster timeout is cut to 2 s so a
 * failing run stops soon).
 */
static void h2_slow_reader_round(tcluster_t *c)
{
    enum { N = 16, ROUNDS = 200 };
    c->cl.timeout_ms = 2000;
    pt_upcall_req_t ra = mkreq(&c->cl, "GET", "/big.txt");
    tcall_t a = {0};
    a.stall = true;
    start_ok(&a, &ra);
    for (int i = 0; i < 2000 && a.pauses == 0 && a.dones == 0; i++)
        spin(1);
    assert_int_equal(a.dones, 0);
    assert_true(a.pauses > 0);
    for (int round = 0; round < ROUNDS; round++) {
        bool stalled = round < 3; /* `a` is paused meanwhile */
        pt_upcall_req_t rslow = mkreq(&c->cl, "GET", "/data.txt");
        tcall_t slow = {0};
        slow.pause_each = true;
        if (!stalled)
            start_ok(&slow, &rslow);
        tcall_t ts[N];
        tcall_t *tp[N + 1];
        pt_upcall_req_t rs[N];
        memset(ts, 0, sizeof(ts));
        for (int i = 0; i < N; i++) {
            rs[i] = mkreq(&c->cl, "GET", stalled && i % 4 == 3 ? "/big.txt" : "/data.txt");
            tp[i] = &ts[i];
            start_ok(&ts[i], &rs[i]);
        }
        tp[N] = &slow;
        run_all(tp, stalled ? N : N + 1);
        for (int i = 0; i < N; i++) {
            if (ts[i].st != 0)
                print_message("round %d: stream %d beside a slow reader: %s (%zu bytes)\n", round,
                              i, ts[i].reason, ts[i].body_len);
            assert_int_equal(ts[i].st, 0);
            assert_int_equal(ts[i].status, 200);
            assert_int_equal(ts[i].body_len, stalled && i % 4 == 3 ? (size_t)H2_BIG : 20000u);
            tcall_free(&ts[i]);
        }
        if (!stalled) {
            assert_int_equal(slow.st, 0);
            assert_int_equal(slow.body_len, 20000);
            tcall_free(&slow);
        } else if (round == 2) {
            assert_int_equal(a.dones, 0); /* still paused, still waiting */
            a.stall = false;
            pt_upcall_resume(a.call);
            run(&a);
            assert_int_equal(a.st, 0);
            assert_int_equal(a.body_len, (size_t)H2_BIG);
            for (size_t i = 0; i < a.body_len; i += 4099)
                assert_int_equal(a.body[i], 'a' + (int)(i % 26));
            tcall_free(&a);
        }
    }
}

static void test_h2_prior_knowledge(void **state)
{
    (void)state;
    static h2srv_t h; /* static: group_teardown may still need it after a failed assertion */
    h2srv_start_or_skip(&h, false, NULL);
    tcluster_t c;
    cluster_init(&c, &h.port, 1);
    c.cl.http2 = true;
    h2_round(&c);
    h2_slow_reader_round(&c);
    h2srv_stop(&h);
}

/* The same for the HTTP/2 client (h2c). */
static void test_h2_fd_exhaustion_no_ejection(void **state)
{
    (void)state;
    static h2srv_t h; /* static: group_teardown may still need it after a failed assertion */
    h2srv_start_or_skip(&h, false, NULL);
    tcluster_t c;
    cluster_init(&c, &h.port, 1);
    c.cl.http2 = true;
    fd_exhaustion_round(&c, "/data.txt");
    h2srv_stop(&h);
}

static void test_h2_tls(void **state)
{
    (void)state;
    static h2srv_t h; /* static: group_teardown may still need it after a failed assertion */
    h2srv_start_or_skip(&h, true, NULL);
    tcluster_t c;
    tls_cluster_init(&c, &h);
    h2_round(&c);

    /* UP-9: an upstream certificate we cannot verify is a 502, never a fallback: over
     * HTTP/1.1 (libcurl: "upstream TLS failure") and HTTP/2 (h2.c) alike, for a certificate
     * the system store does not trust, for a trusted one that does not carry the name (its
     * SAN is IP:127.0.0.1, the name is localhost), and for a CA file that does not load. */
    static const char *const why[] = {"upstream TLS certificate verification failed",
                                      "upstream TLS certificate verification failed",
                                      "upstream TLS setup failed (ca_file?)"};
    for (int v = 0; v < 6; v++) {
        bool h2 = v & 1;
        int kind = v / 2;
        tcluster_t bad;
        cluster_init(&bad, &h.port, 1);
        snprintf(bad.urls[0], sizeof(bad.urls[0]), "https://%s:%d",
                 kind == 1 ? "localhost" : "127.0.0.1", h.port);
        bad.ep[0].host = kind == 1 ? "localhost" : "127.0.0.1";
        bad.ep[0].tls = true;
        bad.cl.http2 = h2;
        bad.cl.ca_file = kind == 0 ? NULL : kind == 1 ? h.cert : "/dev/null";
        pt_upcall_req_t r = mkreq(&bad.cl, "GET", "/data.txt");
        tcall_t t = {0};
        start_ok(&t, &r);
        run(&t);
        if (t.st != PT_ERR_UPSTREAM)
            print_message("h2 %d, case %d: %s\n", h2, kind, t.reason);
        assert_int_equal(t.st, PT_ERR_UPSTREAM);
        assert_int_equal(t.heads, 0);
        assert_string_equal(t.reason, h2 ? why[kind] : "upstream TLS failure");
    }
    /* a REST cluster's `authority` is the Host sent, not the name checked (as with libcurl) */
    tcluster_t au;
    tls_cluster_init(&au, &h);
    au.cl.authority = "api.example";
    pt_upcall_req_t r3 = mkreq(&au.cl, "GET", "/data.txt");
    tcall_t t3 = {0};
    start_ok(&t3, &r3);
    run(&t3);
    assert_int_equal(t3.st, 0);
    assert_int_equal(t3.body_len, 20000);
    tcall_free(&t3);
    h2srv_stop(&h);
}

/* The slow reader over TLS (h2 by ALPN): the bug of unit.upstream's old flake. */
static void test_h2_tls_slow_reader(void **state)
{
    (void)state;
    static h2srv_t h; /* static: group_teardown may still need it after a failed assertion */
    h2srv_start_or_skip(&h, true, NULL);
    tcluster_t c;
    tls_cluster_init(&c, &h);
    h2_slow_reader_round(&c);
    h2srv_stop(&h);
}

/*
 * ALPN fallback: an `http2: true` cluster whose https:// endpoint speaks only
 * HTTP/1.1 (ALPN "http/1.1", or no ALPN at all). The calls waiting on the
 * probing connection and every later call go on over HTTP/1.1 (http.c),
 * transparently; the endpoint is remembered, so later calls make no new
 * HTTP/2 connection. A gRPC cluster (HTTP/2 only) fails plainly instead.
 */
static void alpn_h1_round(const char *alpn)
{
    static h2srv_t h; /* static: group_teardown may still need it after a failed assertion */
    h2srv_start_or_skip(&h, true, alpn);
    tcluster_t c;
    tls_cluster_init(&c, &h);
    pt_uph2_stats_t s0, s1, s2;
    pt__uph2_stats(&E->w, &s0);

    /* several calls at once: all wait on the first connection's handshake */
    enum { N = 4 };
    tcall_t ts[N];
    tcall_t *tp[N];
    pt_upcall_req_t rs[N];
    memset(ts, 0, sizeof(ts));
    for (int i = 0; i < N; i++) {
        rs[i] = mkreq(&c.cl, "GET", "/data.txt");
        tp[i] = &ts[i];
        ts[i].pause_each = i == 0;
        start_ok(&ts[i], &rs[i]);
    }
    run_all(tp, N);
    for (int i = 0; i < N; i++) {
        if (ts[i].st != 0)
            print_message("alpn %s: call %d: %s\n", alpn, i, ts[i].reason);
        assert_int_equal(ts[i].st, 0);
        assert_int_equal(ts[i].status, 200);
        assert_int_equal(ts[i].body_len, 20000);
        assert_int_equal(ts[i].body[25], 'z');
        assert_non_null(strstr(ts[i].hdrs, "x-conn: "));
        tcall_free(&ts[i]);
    }
    pt__uph2_stats(&E->w, &s1);
    assert_int_equal(s1.conns_opened - s0.conns_opened, 1); /* one probe */
    assert_int_equal(s1.h1_calls - s0.h1_calls, N);

    /* a streamed upload, then calls one after the other: no new probe */
    static char up[50000];
    for (size_t i = 0; i < sizeof(up); i++)
        up[i] = (char)('0' + i % 10);
    pt_upcall_req_t rp = mkreq(&c.cl, "POST", "/echo");
    rp.has_body = true;
    rp.content_length = (int64_t)sizeof(up);
    tcall_t tpost = {0};
    tpost.up = up;
    tpost.up_len = sizeof(up);
    start_ok(&tpost, &rp);
    run(&tpost);
    assert_int_equal(tpost.st, 0);
    assert_int_equal(tpost.body_len, sizeof(up));
    assert_memory_equal(tpost.body, up, sizeof(up));
    tcall_free(&tpost);
    for (int k = 0; k < 3; k++) {
        pt_upcall_req_t r = mkreq(&c.cl, "GET", "/data.txt");
        tcall_t t = {0};
        start_ok(&t, &r);
        assert_string_equal(pt_upcall_endpoint(t.call), c.urls[0]);
        run(&t);
        assert_int_equal(t.st, 0);
        assert_int_equal(t.body_len, 20000);
        tcall_free(&t);
    }
    /* cancelled while over HTTP/1.1: no callback afterwards */
    pt_upcall_req_t rc = mkreq(&c.cl, "GET", "/data.txt");
    tcall_t tc = {0};
    start_ok(&tc, &rc);
    pt_upcall_cancel(tc.call);
    spin(50);
    assert_int_equal(tc.dones, 0);
    assert_int_equal(tc.heads, 0);
    pt__uph2_stats(&E->w, &s2);
    assert_int_equal(s2.conns_opened, s1.conns_opened); /* remembered: no re-probe */
    assert_int_equal(s2.h1_calls - s1.h1_calls, 5);

    /* HTTP/2 only (gRPC): a clear failure, no fallback */
    tcluster_t g;
    tls_cluster_init(&g, &h);
    g.cl.protocol = PT_PROTO_GRPC;
    pt_upcall_req_t rg = mkreq(&g.cl, "POST", "/pkg.Svc/Method");
    tcall_t tg = {0};
    start_ok(&tg, &rg);
    run(&tg);
    assert_int_equal(tg.st, PT_ERR_UPSTREAM);
    assert_string_equal(tg.reason, "upstream did not negotiate h2 (ALPN)");
    assert_int_equal(tg.heads, 0);
    h2srv_stop(&h);
}

static void test_h2_tls_alpn_http11(void **state)
{
    (void)state;
    alpn_h1_round("http/1.1");
}

static void test_h2_tls_no_alpn(void **state)
{
    (void)state;
    alpn_h1_round("none");
}

/* ---- setup ------------------------------------------------------------------------- */

static int group_setup_with(bool curl)
{
    signal(SIGPIPE, SIG_IGN);
    E = calloc(1, sizeof(*E));
    E->curl = curl;
    E->w.base = event_base_new();
    if (curl)
        setenv("PORTICO_UPSTREAM_NATIVE", "0", 1);
    else
        unsetenv("PORTICO_UPSTREAM_NATIVE");
    int rc = E->w.base != NULL ? pt_upstream_worker_init(&E->w) : -1;
    unsetenv("PORTICO_UPSTREAM_NATIVE");
    if (rc != 0)
        return -1;
    srv_start(&E->a, 'a');
    srv_start(&E->b, 'b');
    E->arena = pt_arena_new(0, 0);
    return 0;
}

static int group_setup_native(void **state)
{
    (void)state;
    return group_setup_with(false);
}

static int group_setup_curl(void **state)
{
    (void)state;
    return group_setup_with(true);
}

static int group_teardown(void **state)
{
    (void)state;
    if (h2_running != NULL)
        h2srv_stop(h2_running);
    pt_upstream_worker_dispose(&E->w);
    assert_null(E->w.upstream_http);
    event_base_free(E->w.base);
    srv_stop(&E->a);
    srv_stop(&E->b);
    pt_arena_destroy(E->arena);
    free(E);
    return 0;
}

int main(void)
{
    /* Both REST back ends. */
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_backend),
        /* early: libcurl has no cached connection whose close would free an fd */
        cmocka_unit_test(test_fd_exhaustion_no_ejection),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_post_streaming),
        cmocka_unit_test(test_chunked_upload),
        cmocka_unit_test(test_post_without_body),
        cmocka_unit_test(test_large_response_pause),
        cmocka_unit_test(test_refused_failover),
        cmocka_unit_test(test_refused_all_503),
        cmocka_unit_test(test_ejection),
        cmocka_unit_test(test_connect_hang),
        cmocka_unit_test(test_timeout_504),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_retry_idempotent),
        cmocka_unit_test(test_continue_trailers_framing),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_concurrent),
    };
    /* Not REST over HTTP/1.1: the back end does not depend on the switch. */
    const struct CMUnitTest other[] = {
        /* first: no HTTP/2 pool exists yet whose live connection a call could reuse */
        cmocka_unit_test(test_h2_fd_exhaustion_no_ejection),
        cmocka_unit_test(test_grpc_native),
        cmocka_unit_test(test_h2_prior_knowledge),
        cmocka_unit_test(test_h2_tls),
        cmocka_unit_test(test_h2_tls_slow_reader),
        cmocka_unit_test(test_h2_tls_alpn_http11),
        cmocka_unit_test(test_h2_tls_no_alpn),
    };
    int fails = cmocka_run_group_tests_name("upstream.native", shared, group_setup_native,
                                            group_teardown);
    fails += cmocka_run_group_tests_name("upstream.curl", shared, group_setup_curl, group_teardown);
    fails += cmocka_run_group_tests_name("upstream", other, group_setup_native, group_teardown);
    return fails;
}
