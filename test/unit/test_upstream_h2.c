/*
 * test_upstream_h2.c -- the native HTTP/2 upstream back end (upstream/h2.c)
 * through the call primitive (upstream/call.h), against real servers on
 * 127.0.0.1: nghttpd (h2c prior knowledge and h2 over TLS with ALPN) and a
 * scripted python3-h2 backend (test/unit/upstream_h2_backend.py) for
 * trailers, streaming echo, REFUSED_STREAM / GOAWAY retries, resets,
 * Trailers-Only answers, timeouts, SETTINGS_MAX_CONCURRENT_STREAMS and flow
 * control under a paused consumer, and malformed responses written as raw
 * frames (test_malformed_responses).
 *
 * The client runs as a worker does: a zeroed pt_worker_t with its own
 * event_base, pt_upstream_worker_init(), the loop turning until on_done.
 * Tests whose server cannot be started (tool missing) are skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmpdir.h"
#include "portico/arena.h"
#include "portico/status.h"
#include "upstream/call.h"
#include "upstream/h2.h"
#include "net/worker.h"

#ifndef PT_H2_BACKEND
#define PT_H2_BACKEND "test/unit/upstream_h2_backend.py"
#endif

/* ---- servers ------------------------------------------------------------------ */

typedef struct server {
    pid_t pid;
    int port;
    char dir[64];
} server_t;

static server_t PY, PY2, NGX, NGX_TLS; /* python backend, python with max 2 streams, nghttpd x2 */
static pt_worker_t W;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static bool wait_port(int port)
{
    for (int i = 0; i < 150; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (up)
            return true;
        usleep(20000);
    }
    return false;
}

static bool spawn(server_t *s, char *const argv[])
{
    s->pid = fork();
    if (s->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        if (getenv("PT_H2_TEST_VERBOSE") == NULL)
            dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return s->pid > 0 && wait_port(s->port);
}

static bool start_python(server_t *s, int max_streams)
{
    if (access("/usr/bin/python3", X_OK) != 0 || access(PT_H2_BACKEND, R_OK) != 0)
        return false;
    s->port = free_port();
    char port[16], ms[16];
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(ms, sizeof(ms), "%d", max_streams);
    char *argv[] = {"/usr/bin/python3", PT_H2_BACKEND, port, ms, NULL};
    return spawn(s, argv);
}

static bool start_nghttpd(server_t *s, bool tls)
{
    const char *bin = access("/usr/bin/nghttpd", X_OK) == 0 ? "/usr/bin/nghttpd" : "/usr/sbin/nghttpd";
    if (access(bin, X_OK) != 0)
        return false;
    snprintf(s->dir, sizeof(s->dir), "/tmp/pt_uph2_XXXXXX");
    if (pt_test_mkdtemp(s->dir) == NULL)
        return false;
    char path[128], key[128], cert[128];
    snprintf(path, sizeof(path), "%s/data.txt", s->dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 100000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    snprintf(key, sizeof(key), "%s/key.pem", s->dir);
    snprintf(cert, sizeof(cert), "%s/cert.pem", s->dir);
    if (tls) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s -out %s -days 1 -subj /CN=127.0.0.1 "
                 "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
                 key, cert);
        if (system(cmd) != 0)
            return false;
    }
    s->port = free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    char *argv_tls[] = {(char *)bin, "-a", "127.0.0.1", "-d", s->dir, port, key, cert, NULL};
    char *argv_plain[] = {(char *)bin, "--no-tls", "-a", "127.0.0.1", "-d", s->dir, port, NULL};
    return spawn(s, tls ? argv_tls : argv_plain);
}

static void stop(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
        if (system(cmd) != 0)
            print_message("cleanup of %s failed\n", s->dir);
        s->dir[0] = '\0';
    }
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    W.base = event_base_new();
    if (W.base == NULL || pt_upstream_worker_init(&W) != 0)
        return -1;
    if (!start_python(&PY, 100))
        PY.pid = 0;
    if (!start_python(&PY2, 2))
        PY2.pid = 0;
    if (!start_nghttpd(&NGX, false))
        NGX.pid = 0;
    if (!start_nghttpd(&NGX_TLS, true))
        NGX_TLS.pid = 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pt_upstream_worker_dispose(&W);
    event_base_free(W.base);
    stop(&PY);
    stop(&PY2);
    stop(&NGX);
    stop(&NGX_TLS);
    return 0;
}

/* ---- clusters and calls ---------------------------------------------------------- */

typedef struct tcluster {
    pt_cluster_t cl;
    pt_endpoint_t ep[2];
    char url[2][64];
} tcluster_t;

static void cluster_init(tcluster_t *c, pt_proto_t proto, bool tls, const int *ports, size_t n)
{
    static unsigned next_index;
    memset(c, 0, sizeof(*c));
    c->cl.index = next_index++;
    c->cl.name = "h2test";
    c->cl.protocol = proto;
    c->cl.http2 = true;
    for (size_t i = 0; i < n; i++) {
        snprintf(c->url[i], sizeof(c->url[i]), "%s://127.0.0.1:%d", tls ? "https" : "http", ports[i]);
        c->ep[i].url = c->url[i];
        c->ep[i].host = "127.0.0.1";
        c->ep[i].port = (uint16_t)ports[i];
        c->ep[i].tls = tls;
    }
    c->cl.endpoints = c->ep;
    c->cl.endpoint_cnt = n;
    c->cl.connect_timeout_ms = 2000;
    c->cl.timeout_ms = 5000;
    c->cl.retries = 1;
    c->cl.tls_verify = false;
}

typedef struct tcall {
    pt_upcall_t *call;
    pt_upcall_req_t r;
    pt_headers_t hdrs;
    int status, heads, dones, st;
    const char *reason;
    char head[2048];
    size_t head_len;
    char trailers[1024];
    size_t tcnt;
    char *body;
    size_t body_len, body_cap;
    /* upload */
    const char *up;
    size_t up_len, up_off, up_avail; /* up_avail: bytes released so far (trickle) */
    bool up_trickle;
    /* download */
    bool pause;
    unsigned pauses;
    struct event *resume_ev;
} tcall_t;

static size_t cb_read(void *ud, char *buf, size_t max, bool *eof)
{
    tcall_t *t = ud;
    size_t lim = t->up_trickle ? t->up_avail : t->up_len;
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
        t->head_len += (size_t)snprintf(t->head + t->head_len, sizeof(t->head) - t->head_len,
                                        "%.*s: %.*s\n", (int)h[i].name.len, h[i].name.base,
                                        (int)h[i].value.len, h[i].value.base);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tcall_t *t = arg;
    if (t->call != NULL)
        pt_upcall_resume(t->call);
}

static bool cb_data(void *ud, const char *data, size_t len)
{
    tcall_t *t = ud;
    if (t->body_len + len > t->body_cap) {
        t->body_cap = (t->body_len + len) * 2;
        t->body = realloc(t->body, t->body_cap);
    }
    memcpy(t->body + t->body_len, data, len);
    t->body_len += len;
    if (t->pause) {
        t->pauses++;
        if (t->resume_ev == NULL)
            t->resume_ev = evtimer_new(W.base, on_resume, t);
        struct timeval tv = {0, 2000};
        evtimer_add(t->resume_ev, &tv);
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
    t->call = NULL;
    t->tcnt = tcnt;
    size_t off = 0;
    for (size_t i = 0; i < tcnt; i++)
        off += (size_t)snprintf(t->trailers + off, sizeof(t->trailers) - off, "%.*s: %.*s\n",
                                (int)tr[i].name.len, tr[i].name.base, (int)tr[i].value.len,
                                tr[i].value.base);
}

static const pt_upcall_cbs_t CBS = {cb_read, cb_head, cb_data, cb_done};

static void tcall_init(tcall_t *t, const pt_cluster_t *cl, const char *method, const char *path)
{
    memset(t, 0, sizeof(*t));
    t->r.cluster = cl;
    t->r.method = pt_str_c(method);
    t->r.path = pt_str_c(path);
    t->r.authority = PT_STR("h2.test");
    t->r.content_length = -1;
    t->r.idempotent = strcmp(method, "GET") == 0;
}

static void tcall_free(tcall_t *t)
{
    free(t->body);
    if (t->resume_ev != NULL)
        event_free(t->resume_ev);
    t->body = NULL;
    t->resume_ev = NULL;
}

static void start(tcall_t *t)
{
    int rc = pt_upcall_start(&W, &t->r, &CBS, t, &t->call);
    assert_int_equal(rc, 0);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Turns the loop until every call is done (10 s at most). */
static void run_all(tcall_t **ts, size_t n)
{
    bool expired = false;
    struct event *guard = evtimer_new(W.base, on_guard, &expired);
    struct timeval tv = {10, 0};
    evtimer_add(guard, &tv);
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += ts[i]->dones > 0;
        if (done == n || expired)
            break;
        event_base_loop(W.base, EVLOOP_ONCE);
    }
    event_free(guard);
    assert_false(expired);
}

static void run(tcall_t *t)
{
    run_all(&t, 1);
}

static void spin(int ms)
{
    bool expired = false;
    struct event *guard = evtimer_new(W.base, on_guard, &expired);
    struct timeval tv = {0, ms * 1000};
    evtimer_add(guard, &tv);
    while (!expired)
        event_base_loop(W.base, EVLOOP_ONCE);
    event_free(guard);
}

#define NEED(s)                                                                                    \
    do {                                                                                           \
        if ((s).pid <= 0) {                                                                        \
            skip();                                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- tests ------------------------------------------------------------------------- */

static void test_dispatch(void **state)
{
    (void)state;
    tcluster_t c;
    int port = 1;
    cluster_init(&c, PT_PROTO_GRPC, false, &port, 1);
    assert_true(pt__uph2_serves(&c.cl));
    cluster_init(&c, PT_PROTO_HTTP, false, &port, 1);
    assert_true(pt__uph2_serves(&c.cl)); /* http2: true, http:// */
    c.cl.http2 = false;
    assert_false(pt__uph2_serves(&c.cl));
    cluster_init(&c, PT_PROTO_HTTP, true, &port, 1);
    assert_true(pt__uph2_serves(&c.cl)); /* https + http2: h2.c (ALPN h2, else HTTP/1.1) */
    c.cl.http2 = false;
    assert_false(pt__uph2_serves(&c.cl)); /* https, HTTP/1.1: libcurl */
}

/* Many concurrent GETs share one connection; later ones reuse it. */
static void test_nghttpd_shared_connection(void **state)
{
    (void)state;
    NEED(NGX);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_HTTP, false, &NGX.port, 1);
    pt_uph2_stats_t s0, s1;
    pt__uph2_stats(&W, &s0);
    enum { N = 20 };
    static tcall_t ts[N];
    tcall_t *tp[N];
    for (int i = 0; i < N; i++) {
        tcall_init(&ts[i], &c.cl, "GET", "/data.txt");
        ts[i].pause = i % 5 == 0; /* some consumers pause after every chunk */
        tp[i] = &ts[i];
        start(&ts[i]);
    }
    run_all(tp, N);
    for (int i = 0; i < N; i++) {
        if (ts[i].st != 0)
            print_message("stream %d: %s\n", i, ts[i].reason);
        assert_int_equal(ts[i].st, 0);
        assert_int_equal(ts[i].status, 200);
        assert_int_equal(ts[i].body_len, 100000);
        assert_int_equal(ts[i].body[25], 'z');
        assert_int_equal(ts[i].body[99999], 'a' + 99999 % 26);
        tcall_free(&ts[i]);
    }
    assert_true(ts[0].pauses > 1);
    for (int k = 0; k < 5; k++) {
        tcall_t t;
        tcall_init(&t, &c.cl, "GET", "/data.txt");
        start(&t);
        run(&t);
        assert_int_equal(t.st, 0);
        assert_int_equal(t.body_len, 100000);
        tcall_free(&t);
    }
    pt__uph2_stats(&W, &s1);
    assert_int_equal(s1.conns_opened - s0.conns_opened, 1);
    assert_int_equal(s1.streams - s0.streams, N + 5);
}

/* h2 over TLS, ALPN negotiated; a 404 is an answer, not a failure. */
static void test_nghttpd_tls(void **state)
{
    (void)state;
    NEED(NGX_TLS);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, true, &NGX_TLS.port, 1);
    tcall_t a, b;
    tcall_init(&a, &c.cl, "GET", "/data.txt");
    tcall_init(&b, &c.cl, "GET", "/missing");
    start(&a);
    start(&b);
    tcall_t *both[2] = {&a, &b};
    run_all(both, 2);
    if (a.st != 0)
        print_message("tls: %s\n", a.reason);
    assert_int_equal(a.st, 0);
    assert_int_equal(a.body_len, 100000);
    assert_int_equal(b.st, 0);
    assert_int_equal(b.status, 404);
    tcall_free(&a);
    tcall_free(&b);
    /* verification on: the self-signed certificate is refused, no fallback */
    c.cl.tls_verify = true;
    c.cl.index += 1000;
    tcall_t v;
    tcall_init(&v, &c.cl, "GET", "/data.txt");
    start(&v);
    run(&v);
    assert_int_equal(v.st, PT_ERR_UPSTREAM);
    assert_int_equal(v.heads, 0);
    tcall_free(&v);
}

/* A request body streamed in pieces is echoed as it arrives; trailers reach on_done. */
static void test_echo_streaming_and_trailers(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    static char up[300000];
    for (size_t i = 0; i < sizeof(up); i++)
        up[i] = (char)('A' + i % 23);
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/echo");
    pt_headers_t h = {0};
    pt_header_t hv[2] = {{PT_STR("content-type"), PT_STR("application/grpc")},
                         {PT_STR("te"), PT_STR("trailers")}};
    h.v = hv;
    h.cnt = h.cap = 2;
    t.r.headers = &h;
    t.r.has_body = true;
    t.up = up;
    t.up_len = sizeof(up);
    t.up_trickle = true;
    start(&t);
    /* release the body in 10 steps; the echo must come back before the end */
    for (int k = 1; k <= 10; k++) {
        t.up_avail = sizeof(up) * (size_t)k / 10;
        pt_upcall_body_ready(t.call);
        spin(20);
        if (k == 5)
            assert_true(t.body_len > 0); /* streamed, not buffered to the end */
    }
    run(&t);
    if (t.st != 0)
        print_message("echo: %s\n", t.reason);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, sizeof(up));
    assert_memory_equal(t.body, up, sizeof(up));
    assert_non_null(strstr(t.trailers, "grpc-status: 0\n"));
    assert_non_null(strstr(t.trailers, "x-trailer: yes\n"));
    assert_non_null(strstr(t.head, "content-type: application/grpc\n"));
    tcall_free(&t);
}

/* A paused consumer holds the stream, not the connection: a big body arrives whole. */
static void test_flow_control_pause(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    tcall_t slow, fast;
    tcall_init(&slow, &c.cl, "GET", "/big?2000000");
    tcall_init(&fast, &c.cl, "GET", "/big?500000");
    slow.pause = true;
    start(&slow);
    start(&fast);
    tcall_t *both[2] = {&slow, &fast};
    run_all(both, 2);
    assert_int_equal(slow.st, 0);
    assert_int_equal(fast.st, 0);
    assert_int_equal(slow.body_len, 2000000);
    assert_int_equal(fast.body_len, 500000);
    for (size_t i = 0; i < slow.body_len; i += 997)
        assert_int_equal((unsigned char)slow.body[i], i % 251);
    assert_true(slow.pauses > 10);
    assert_non_null(strstr(slow.trailers, "grpc-status: 0"));
    tcall_free(&slow);
    tcall_free(&fast);
}

/* REFUSED_STREAM and a GOAWAY below our stream: not processed, retried once (body replayed). */
static void test_refused_and_goaway_retry(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    pt_uph2_stats_t s0, s1;
    pt__uph2_stats(&W, &s0);
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/refuse-once");
    t.r.has_body = true;
    t.up = "hello";
    t.up_len = 5;
    start(&t);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, 2);
    tcall_free(&t);

    /* a first stream keeps the connection busy so the GOAWAY's last-stream-id is below ours */
    tcall_t hold, g;
    tcall_init(&hold, &c.cl, "GET", "/hold");
    tcall_init(&g, &c.cl, "POST", "/goaway-once");
    g.r.has_body = true;
    g.up = "x";
    g.up_len = 1;
    start(&hold);
    start(&g);
    tcall_t *both[2] = {&hold, &g};
    run_all(both, 2);
    if (g.st != 0)
        print_message("goaway: %s\n", g.reason);
    assert_int_equal(g.st, 0);
    assert_int_equal(g.status, 200);
    tcall_free(&hold);
    tcall_free(&g);
    pt__uph2_stats(&W, &s1);
    assert_true(s1.retries - s0.retries >= 2);
}

/* A reset after the head: the caller sees a failure, never a clean end. */
static void test_reset_mid_stream(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/reset-mid");
    start(&t);
    run(&t);
    assert_int_equal(t.heads, 1);
    assert_int_equal(t.body_len, 1000);
    assert_int_equal(t.st, PT_ERR_UPSTREAM);
    tcall_free(&t);
}

static void test_trailers_only(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/trailers-only");
    start(&t);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.heads, 1);
    assert_non_null(strstr(t.head, "grpc-status: 5\n"));
    assert_int_equal(t.tcnt, 0);
    assert_int_equal(t.body_len, 0);
    tcall_free(&t);
}

/* The timeout ends the call (RST_STREAM upstream); the connection stays usable. */
static void test_timeout_and_cancel(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    tcall_t t;
    tcall_init(&t, &c.cl, "GET", "/slow");
    t.r.timeout_ms = 150;
    start(&t);
    run(&t);
    assert_int_equal(t.st, PT_ERR_TIMEOUT);
    tcall_free(&t);

    /* cancel: no callback afterwards */
    tcall_t x;
    tcall_init(&x, &c.cl, "GET", "/slow");
    start(&x);
    spin(30);
    pt_upcall_cancel(x.call);
    x.call = NULL;
    spin(50);
    assert_int_equal(x.dones, 0);

    tcall_t ok;
    tcall_init(&ok, &c.cl, "GET", "/count");
    start(&ok);
    run(&ok);
    assert_int_equal(ok.st, 0);
    assert_int_equal(ok.status, 200);
    tcall_free(&ok);
}

/* The server allows 2 streams per connection: 6 concurrent calls need 3 connections. */
static void test_max_concurrent_streams(void **state)
{
    (void)state;
    NEED(PY2);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY2.port, 1);
    /* first a call so that the server's SETTINGS are known */
    tcall_t w;
    tcall_init(&w, &c.cl, "GET", "/count");
    start(&w);
    run(&w);
    assert_int_equal(w.st, 0);
    tcall_free(&w);
    pt_uph2_stats_t s0, s1;
    pt__uph2_stats(&W, &s0);
    enum { N = 6 };
    tcall_t ts[N];
    tcall_t *tp[N];
    for (int i = 0; i < N; i++) {
        tcall_init(&ts[i], &c.cl, "GET", "/hold");
        tp[i] = &ts[i];
        start(&ts[i]);
    }
    run_all(tp, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ts[i].st, 0);
        assert_int_equal(ts[i].body_len, 4);
        tcall_free(&ts[i]);
    }
    pt__uph2_stats(&W, &s1);
    assert_int_equal(s1.conns_opened - s0.conns_opened, 2); /* + the one already open */
}

/*
 * max_connections_per_endpoint counts connections; streams beyond every
 * connection's SETTINGS_MAX_CONCURRENT_STREAMS wait in nghttp2, at most
 * max_pending_per_endpoint of them, then PT_ERR_OVERLOADED at once.
 */
static void test_conn_cap_and_pending(void **state)
{
    (void)state;
    NEED(PY2);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY2.port, 1);
    /* another name for the server: a pool of its own, no connection yet */
    snprintf(c.url[0], sizeof(c.url[0]), "http://localhost:%d", PY2.port);
    c.ep[0].host = "localhost";
    c.cl.max_conns_per_endpoint = 1;
    c.cl.max_pending_per_endpoint = 2;
    pt_uph2_stats_t s0, s1;
    pt__uph2_stats(&W, &s0);
    tcall_t w; /* the server's SETTINGS (2 streams) become known */
    tcall_init(&w, &c.cl, "GET", "/count");
    start(&w);
    run(&w);
    assert_int_equal(w.st, 0);
    tcall_free(&w);
    enum { N = 6 };
    tcall_t ts[N];
    tcall_t *tp[N];
    for (int i = 0; i < N; i++) {
        tcall_init(&ts[i], &c.cl, "GET", "/hold");
        tp[i] = &ts[i];
        start(&ts[i]);
    }
    run_all(tp, N);
    int ok = 0, over = 0;
    for (int i = 0; i < N; i++) {
        if (ts[i].st == 0 && ts[i].body_len == 4)
            ok++;
        else if (ts[i].st == PT_ERR_OVERLOADED && ts[i].heads == 0)
            over++;
        tcall_free(&ts[i]);
    }
    assert_int_equal(ok, 4);   /* 2 streams + 2 waiting */
    assert_int_equal(over, 2); /* refused at once */
    pt__uph2_stats(&W, &s1);
    assert_int_equal(s1.conns_opened - s0.conns_opened, 1);
}

/* Nothing listens: UNAVAILABLE after trying both endpoints. */
static void test_connect_refused(void **state)
{
    (void)state;
    tcluster_t c;
    int ports[2] = {free_port(), free_port()};
    cluster_init(&c, PT_PROTO_GRPC, false, ports, 2);
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/x");
    start(&t);
    run(&t);
    assert_int_equal(t.st, PT_ERR_UNAVAILABLE);
    assert_int_equal(t.heads, 0);
    tcall_free(&t);
}

/* A name instead of an address is resolved without blocking. */
static void test_hostname(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    snprintf(c.url[0], sizeof(c.url[0]), "http://localhost:%d", PY.port);
    c.ep[0].host = "localhost";
    tcall_t t;
    tcall_init(&t, &c.cl, "GET", "/count");
    start(&t);
    run(&t);
    if (t.st != 0)
        print_message("localhost: %s\n", t.reason);
    assert_int_equal(t.st, 0);
    tcall_free(&t);
}

/* Request field names with capitals, short ones and ones of 8 bytes or more (has_upper reads
 * those eight at a time, the lowered copies share one buffer sized at the first): the call
 * goes through (nghttp2 lowercases what it sends; our copies feed the HPACK policy). */
static void test_request_names_lowercased(void **state)
{
    (void)state;
    NEED(PY);
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_headers_t h;
    pt_headers_init(&h, a);
    pt_headers_add_nocopy(&h, PT_STR("X-Up"), PT_STR("1"));
    pt_headers_add_nocopy(&h, PT_STR("x-lower-then-Upper"), PT_STR("2"));
    pt_headers_add_nocopy(&h, PT_STR("X-Mixed-Case-Name-Longer-Than-16"), PT_STR("3"));
    pt_headers_add_nocopy(&h, PT_STR("x-plain"), PT_STR("4"));
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/count");
    t.r.headers = &h;
    start(&t);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    tcall_free(&t);
    pt_arena_destroy(a);
}

/*
 * Responses that break HTTP/2's message rules (RFC 9113 8.1-8.3), written by
 * the backend as raw frames: each is refused the way nghttp2's HTTP checks
 * refused it (RST_STREAM, the call fails: before the head, or after it when
 * the fault comes later; an invalid name or value in any field is a fault).
 * The connection stays usable throughout.
 */
typedef struct bad_case {
    const char *path, *method;
    int st;             /* 0 or PT_ERR_UPSTREAM */
    int heads;          /* on_head calls */
    long body;          /* body bytes delivered, -1: not checked */
    const char *has;    /* in the head as delivered */
    const char *lacks;  /* not in it */
} bad_case_t;

static void test_malformed_responses(void **state)
{
    (void)state;
    NEED(PY);
    static const bad_case_t cases[] = {
        {"/bad-upper", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-dup-status", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-no-status", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-pseudo-after", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-unknown-pseudo", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-status-text", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-status-long", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-status-101", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-connection", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-te", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-clen-dup", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-clen-text", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-1xx-data", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-1xx-end", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-1xx-clen", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-clen-short", "POST", PT_ERR_UPSTREAM, 1, 5, NULL, NULL},
        {"/bad-clen-long", "POST", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/bad-trailer-pseudo", "POST", PT_ERR_UPSTREAM, 1, 2, NULL, NULL},
        {"/bad-trailer-noend", "POST", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/bad-204-body", "POST", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/bad-head-body", "HEAD", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/bad-name-space", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-name-brace", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-name-empty", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-ctl", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-lf", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-nul", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-lead", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-trail", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/bad-value-del", "POST", PT_ERR_UPSTREAM, 0, 0, NULL, NULL},
        {"/ok-values", "POST", 0, 1, 0, "x-ok: v\tw \x80\xff!~\nx-empty: \n", NULL},
        {"/bad-trailer-value", "POST", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/bad-trailer-upper", "POST", PT_ERR_UPSTREAM, 1, 0, NULL, NULL},
        {"/ok-204-clen0", "POST", 0, 1, 0, "x-ok: 1\n", "content-length"},
        {"/ok-1xx", "POST", 0, 1, 2, "content-length: 2\n", "x-info"},
        {"/ok-head-clen", "HEAD", 0, 1, 0, "content-length: 5\n", NULL},
    };
    tcluster_t c;
    cluster_init(&c, PT_PROTO_GRPC, false, &PY.port, 1);
    c.cl.retries = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bad_case_t *k = &cases[i];
        tcall_t t;
        tcall_init(&t, &c.cl, k->method, k->path);
        start(&t);
        run(&t);
        print_message("%s: st %d heads %d body %zu (%s)\n", k->path, t.st, t.heads, t.body_len,
                      t.reason != NULL ? t.reason : "-");
        assert_int_equal(t.st, k->st);
        assert_int_equal(t.heads, k->heads);
        if (k->body >= 0)
            assert_int_equal(t.body_len, (size_t)k->body);
        if (k->has != NULL)
            assert_non_null(strstr(t.head, k->has));
        if (k->lacks != NULL)
            assert_null(strstr(t.head, k->lacks));
        tcall_free(&t);
    }
    /* every case ran on the one connection, which still serves */
    tcall_t t;
    tcall_init(&t, &c.cl, "POST", "/count");
    start(&t);
    run(&t);
    assert_int_equal(t.st, 0);
    assert_int_equal(t.status, 200);
    char num[16] = "";
    memcpy(num, t.body, t.body_len < sizeof(num) - 1 ? t.body_len : sizeof(num) - 1);
    assert_true(atoi(num) > (int)(sizeof(cases) / sizeof(cases[0])));
    tcall_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_nghttpd_shared_connection),
        cmocka_unit_test(test_nghttpd_tls),
        cmocka_unit_test(test_echo_streaming_and_trailers),
        cmocka_unit_test(test_flow_control_pause),
        cmocka_unit_test(test_refused_and_goaway_retry),
        cmocka_unit_test(test_reset_mid_stream),
        cmocka_unit_test(test_trailers_only),
        cmocka_unit_test(test_timeout_and_cancel),
        cmocka_unit_test(test_max_concurrent_streams),
        cmocka_unit_test(test_conn_cap_and_pending),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_malformed_responses),
        cmocka_unit_test(test_request_names_lowercased),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
