/* test_regress.c -- regressions found by the lifecycle review: body-filter refusals are answered and stop the handler, codec rejects carry a request id, retired snapshots are released with several workers (run under ASan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdatomic.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <json-c/json.h>
#include "loopback.h"
#include "httpsrv.h"
#include "core/request.h"
#include "server.h"

/* The error code and request id of a JSON error body; fails the test if it is not one. */
static void error_of(const char *body, char *code, size_t code_len, char *id, size_t id_len)
{
    json_object *o = json_tokener_parse(body != NULL ? body : "");
    if (o == NULL)
        fail_msg("not a JSON body: %s", body != NULL ? body : "(none)");
    json_object *e, *v;
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "code", &v));
    snprintf(code, code_len, "%s", json_object_get_string(v));
    assert_true(json_object_object_get_ex(e, "request_id", &v));
    snprintf(id, id_len, "%s", json_object_get_string(v));
    json_object_put(o);
}

static void assert_invalid_400(int status, const char *body)
{
    char code[64], id[128];
    assert_int_equal(status, 400);
    error_of(body, code, sizeof(code), id, sizeof(id));
    assert_string_equal(code, "INVALID");
    assert_int_equal(strlen(id), 32);
}

/* ---- a fake codec like loopback.c, with control over body framing ---- */
typedef struct rs {
    pt_lb_resp_t *out;
    bool done;
} rs_t;
static void r_head(pt_req_t *req) { rs_t *s = req->stream; if (!s) return; s->out->status = req->resp_status; }
static void r_body(pt_req_t *req, const void *d, size_t n, bool end)
{
    rs_t *s = req->stream;
    if (!s) return;
    s->out->body = realloc(s->out->body, s->out->body_len + n + 1);
    if (n) memcpy(s->out->body + s->out->body_len, d, n);
    s->out->body_len += n;
    s->out->body[s->out->body_len] = 0;
    if (end) { s->out->ended = true; s->done = true; }
}
static size_t r_pending(pt_req_t *req) { (void)req; return 0; }
static void r_consumed(pt_req_t *req, size_t n) { (void)req; (void)n; }
static void r_reset(pt_req_t *req) { rs_t *s = req->stream; if (!s) return; s->out->reset = true; s->done = true; }
static const pt_stream_ops_t r_ops = {r_head, r_body, r_pending, r_consumed, NULL, r_reset, NULL, NULL};

static void spin(pt_worker_t *w, int ms, bool *until)
{
    uint64_t end = pt_now_ms() + (uint64_t)ms;
    struct event *t = event_new(w->base, -1, EV_PERSIST, (event_callback_fn)(void (*)(void))abort, NULL);
    (void)t;
    event_free(t);
    while (pt_now_ms() < end && (until == NULL || !*until)) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(w->base, &tv);
        event_base_dispatch(w->base);
    }
}

static pt_req_t *mkreq(pt_worker_t *w, rs_t *s, const char *method, const char *path, int64_t cl)
{
    pt_req_t *req = pt__req_new(w, &r_ops, s);
    req->method = pt_arena_strdup(req->arena, pt_str_c(method));
    req->target = req->path = pt_arena_strdup(req->arena, pt_str_c(path));
    req->query = PT_STR("");
    req->authority = PT_STR("example.test");
    req->version = 11;
    req->client_addr = PT_STR("127.0.0.1");
    req->content_length = cl;
    req->expect_body = cl != 0;
    req->body_done = cl == 0;
    return req;
}

/* 1. A request-body filter's ERROR is answered with its status (was: the respond handler said 200). */
static void test_body_filter_error_respond(void **state)
{
    (void)state;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "routes:\n"
             "  - match: { path: /bf }\n"
             "    respond: { status: 200, body: \"accepted\" }\n"
             "    filters: [ { regress_bodyfail: {} } ]\n", P_BODYFAIL);
    pt_lb_t lb;
    pt_lb_init(&lb, yaml);
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "POST", "/bf", NULL, "XXXX", 4, &r), 0);
    fprintf(stderr, "[regress] body filter ERROR -> status %d body %s fail_status %d\n", r.status,
            r.body, r.fail_status);
    assert_invalid_400(r.status, r.body);
    assert_true(r.ended);
    assert_null(strstr(r.body, "accepted"));
    pt_lb_resp_free(&r);
    pt_lb_dispose(&lb);
}

/* ---- an upstream that only records what it receives ---- */
typedef struct rawup {
    int lfd, port;
    pthread_t th;
    char buf[16384];
    atomic_size_t len;   /* bytes of buf written (published after the bytes) */
    atomic_bool eof;     /* the proxy closed the connection */
} rawup_t;

static void *rawup_main(void *arg)
{
    rawup_t *u = arg;
    struct pollfd p = {u->lfd, POLLIN, 0};
    if (poll(&p, 1, 20000) != 1)
        return NULL;
    int fd = accept(u->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    for (;;) {
        struct pollfd q = {fd, POLLIN, 0};
        if (poll(&q, 1, 20000) != 1)
            break;
        size_t have = atomic_load(&u->len);
        ssize_t n = read(fd, u->buf + have, sizeof(u->buf) - 1 - have);
        if (n <= 0) {
            atomic_store(&u->eof, n == 0 || have == sizeof(u->buf) - 1);
            break;
        }
        atomic_store(&u->len, have + (size_t)n);
    }
    close(fd);
    return NULL;
}

static void rawup_start(rawup_t *u)
{
    memset(u, 0, sizeof(*u));
    u->lfd = listen_any(&u->port);
    assert_true(u->lfd >= 0);
    assert_int_equal(pthread_create(&u->th, NULL, rawup_main, u), 0);
}

static void rawup_stop(rawup_t *u)
{
    pthread_join(u->th, NULL);
    close(u->lfd);
    u->buf[atomic_load(&u->len)] = '\0';
}

/* Runs the worker's loop until the upstream has received `what` (or ended), at most 20 s. */
static bool rawup_wait(pt_worker_t *w, rawup_t *u, const char *what)
{
    uint64_t end = pt_now_ms() + 20000;
    while (pt_now_ms() < end) {
        size_t n = atomic_load(&u->len);
        if (what != NULL && memmem(u->buf, n, what, strlen(what)) != NULL)
            return true;
        if (atomic_load(&u->eof))
            return what == NULL;
        spin(w, 20, NULL);
    }
    return false;
}

/*
 * 2. and 3. The same refusal through the proxy, after the upstream got the head
 * and "hello " (streamed, no request_buffering): the client gets the filter's
 * 400 at once, and the upstream connection is closed without the body being
 * completed -- it must never take a cut body for a whole one (was: "hello "
 * went up as a complete chunked body and the upstream's 200 was passed on;
 * with Content-Length the exchange hung until the proxy's timeout).
 */
static void run_proxy_refusal(int64_t cl, rawup_t *up)
{
    rawup_start(up);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "clusters: [ { name: web, endpoints: [ \"127.0.0.1:%d\" ] } ]\n"
             "routes:\n"
             "  - match: { prefix: /echo }\n"
             "    proxy: { cluster: web, timeout: 30s }\n"
             "    filters: [ { regress_bodyfail: {} } ]\n", P_BODYFAIL, up->port);
    pt_lb_t lb;
    pt_lb_init(&lb, yaml);
    pt_lb_resp_t r;
    memset(&r, 0, sizeof(r));
    rs_t s = {&r, false};
    pt_req_t *req = mkreq(lb.worker, &s, "POST", "/echo", cl);
    pt__req_headers_done(req);
    pt__req_body(req, "hello ", 6, false);
    assert_true(rawup_wait(lb.worker, up, "hello "));
    pt__req_body(req, "XX evil", 7, true);
    spin(lb.worker, 10000, &s.done);
    fprintf(stderr, "[regress] proxy CL %lld + body filter ERROR -> status %d ended %d reset %d body '%s'\n",
            (long long)cl, r.status, r.ended, r.reset, r.body ? r.body : "");
    bool done = s.done;
    bool closed = rawup_wait(lb.worker, up, NULL); /* before dispose closes everything */
    pt__req_codec_done(req);
    spin(lb.worker, 50, NULL);
    pt_lb_dispose(&lb);
    rawup_stop(up);
    fprintf(stderr, "[regress] upstream got (closed %d):\n%s\n", closed, up->buf);
    assert_true(done);
    assert_false(r.reset);
    assert_true(r.ended);
    assert_invalid_400(r.status, r.body);
    assert_true(closed);
    assert_non_null(strstr(up->buf, "POST /echo HTTP/1.1\r\n"));
    assert_null(strstr(up->buf, "evil"));
    free(r.body);
}

static void test_body_filter_error_proxy_chunked(void **state)
{
    (void)state;
    rawup_t *up = malloc(sizeof(*up));
    run_proxy_refusal(-1, up);
    assert_non_null(strcasestr(up->buf, "\r\ntransfer-encoding: chunked\r\n"));
    assert_non_null(strstr(up->buf, "\r\n\r\n6\r\nhello \r\n"));
    assert_null(strstr(up->buf, "\r\n0\r\n\r\n")); /* no last chunk */
    free(up);
}

static void test_body_filter_error_proxy_cl(void **state)
{
    (void)state;
    rawup_t *up = malloc(sizeof(*up));
    run_proxy_refusal(13, up);
    const char *body = strstr(up->buf, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "hello "); /* 6 of the 13 bytes, then the close */
    free(up);
}

/* 4. Filter state of a retired snapshot is disposed with >= 2 workers too (was: never). */
static atomic_int inits, disposes;
void regress_state_event(int init) { atomic_fetch_add(init ? &inits : &disposes, 1); }

static void run_reload(unsigned n, int *inits_out, int *disposes_out)
{
    char yaml[1024];
    int port = 0;
    int lfd = listen_any(&port);
    close(lfd);
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:%d\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "routes:\n"
             "  - match: { path: /x }\n"
             "    respond: { status: 200, body: \"ok\" }\n"
             "    filters: [ { regress_state: {} } ]\n", port, P_STATE);
    atomic_store(&inits, 0);
    atomic_store(&disposes, 0);
    pt_server_t srv;
    memset(&srv, 0, sizeof(srv));
    pt_config_t *c1 = pt_config_load_string("a.yaml", yaml, strlen(yaml), stderr);
    assert_non_null(c1);
    assert_int_equal(pt_server_start(&srv, c1, n), 0);
    pt_config_unref(c1);
    for (int i = 0; i < 3; i++) {
        pt_config_t *c2 = pt_config_load_string("b.yaml", yaml, strlen(yaml), stderr);
        assert_int_equal(pt_server_reload(&srv, c2), 0);
        pt_config_unref(c2);
        usleep(300000);
    }
    usleep(2500000); /* the GC runs every second */
    *inits_out = atomic_load(&inits);
    *disposes_out = atomic_load(&disposes);
    pt_server_drain_and_stop(&srv, 0);
    pt_server_free(&srv);
}

static void test_state_gc_two_workers(void **state)
{
    (void)state;
    int i1, d1, i2, d2;
    run_reload(1, &i1, &d1);
    fprintf(stderr, "[regress] 1 worker : worker_init %d, worker_dispose before stop %d\n", i1, d1);
    run_reload(2, &i2, &d2);
    fprintf(stderr, "[regress] 2 workers: worker_init %d, worker_dispose before stop %d\n", i2, d2);
    assert_int_equal(d1, 3);  /* 4 snapshots, 3 retired */
    assert_int_equal(d2, 6);  /* was 0: every retired snapshot stayed alive */
}

/* 5. Codec rejects (parse errors, timeouts) carry a generated request id (was: an empty one). */
static void test_reject_has_request_id(void **state)
{
    (void)state;
    pt_lb_t lb;
    pt_lb_init(&lb, "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                    "routes: [ { match: { path: /x }, respond: { status: 200 } } ]\n");
    pt_lb_resp_t r;
    memset(&r, 0, sizeof(r));
    rs_t s = {&r, false};
    pt_req_t *req = pt__req_new(lb.worker, &r_ops, &s);
    req->method = PT_STR("-");
    req->version = 11;
    req->body_done = true;
    pt__req_reject(req, PT_ERR_INVALID, "malformed request head"); /* as h1 reject_new / h2 dispatch */
    fprintf(stderr, "[regress] reject body: %s", r.body);
    pt__req_codec_done(req);
    assert_int_equal(r.status, 400);
    char code[64], id[128];
    error_of(r.body, code, sizeof(code), id, sizeof(id));
    assert_string_equal(code, "INVALID");
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    free(r.body);
    pt_lb_dispose(&lb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_filter_error_respond),
        cmocka_unit_test(test_body_filter_error_proxy_chunked),
        cmocka_unit_test(test_body_filter_error_proxy_cl),
        cmocka_unit_test(test_reject_has_request_id),
        cmocka_unit_test(test_state_gc_two_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
