/*
 * test_chain.c -- the filter chain's body and suspension features through the
 * loopback seam, with the test filter test/support/plugin_chain.c (a .so
 * built against the SDK headers only): response-body transforms that change
 * the length (announced, and not announced: cut off), bytes held until the
 * end, SUSPEND in the response-header and response-body phases (the body
 * filter is called again with the same input), a response-side RESPOND
 * replacing the handler's response, a request-body refusal in a
 * request_buffering route before the handler starts, and an abort while a
 * body filter is suspended.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include "loopback.h"
#include "httpsrv.h"
#include "core/request.h"
#include "portico/status.h"

static tsrv_t upstream;
static tsrv_t guarded; /* only the request_buffering route goes here: counts its connections */
static pt_lb_t lb;

static int setup(void **state)
{
    (void)state;
    srv_start(&upstream, 'a');
    srv_start(&guarded, 'b');
    static char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "clusters:\n"
             "  - { name: web, endpoints: [ \"127.0.0.1:%d\" ] }\n"
             "  - { name: guarded, endpoints: [ \"127.0.0.1:%d\" ] }\n"
             "routes:\n"
             "  - match: { path: /double }\n"
             "    respond: { status: 200, body: \"pong\" }\n"
             "    filters: [ { test_chain: { mode: double } } ]\n"
             "  - match: { path: /lie }\n"
             "    respond: { status: 200, body: \"pong\" }\n"
             "    filters: [ { test_chain: { mode: double, announce: false } } ]\n"
             "  - match: { path: /big }\n"
             "    proxy: { cluster: web, timeout: 5s }\n"
             "    filters: [ { test_chain: { mode: hold } } ]\n"
             "  - match: { path: /suspend_head }\n"
             "    respond: { status: 200, body: \"pong\" }\n"
             "    filters:\n"
             "      - headers: { response: { add: { x-outer: \"1\" } } }\n"
             "      - test_chain: { mode: suspend_head, delay_ms: 5 }\n"
             "  - match: { path: /suspend_body }\n"
             "    respond: { status: 200, body: \"pong\" }\n"
             "    filters: [ { test_chain: { mode: suspend_body, delay_ms: 5 } } ]\n"
             "  - match: { path: /replace }\n"
             "    respond: { status: 200, body: \"original\", content_type: application/x-orig }\n"
             "    filters:\n"
             "      - headers: { response: { add: { x-outer: \"1\" } } }\n"
             "      - test_chain: { mode: respond }\n"
             "  - match: { path: /buffered }\n"
             "    request_buffering: true\n"
             "    respond: { status: 200, body: \"handler ran\" }\n"
             "    filters: [ { test_chain: { mode: refuse } } ]\n"
             "  - match: { path: /echo }\n"
             "    request_buffering: true\n"
             "    proxy: { cluster: guarded, timeout: 5s }\n"
             "    filters: [ { test_chain: { mode: refuse } } ]\n",
             PT_TEST_PLUGIN_CHAIN, upstream.port, guarded.port);
    pt_lb_init(&lb, yaml);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_lb_dispose(&lb);
    srv_stop(&upstream);
    srv_stop(&guarded);
    return 0;
}

/* A body filter doubles every byte and announces it: no Content-Length, the new body. */
static void test_transform_changes_length(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/double", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, -1);
    assert_true(r.ended);
    assert_false(r.reset);
    assert_int_equal(r.body_len, 8);
    assert_string_equal(r.body, "ppoonngg");
    pt_lb_resp_free(&r);
}

/*
 * The same filter without pt_req_set_resp_body_length(-1): the head went out
 * with Content-Length 4, so the 8 bytes must not: the response is cut off.
 */
static void test_unannounced_length_change_is_cut_off(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/lie", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, 4);
    assert_true(r.reset);
    assert_false(r.ended);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(r.fail_status, PT_ERR_INTERNAL);
    pt_lb_resp_free(&r);
}

/*
 * A body filter holds a streamed 1 MB upstream body (many calls) and writes it
 * all at the end: the codec gets it in one piece, intact, without a length.
 */
static void test_hold_until_end(void **state)
{
    (void)state;
    enum { N = 1000000 };
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/big?1000000", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.content_length, -1);
    assert_true(r.ended);
    assert_int_equal(r.body_calls, 1);
    assert_true(r.body_len > N);
    for (size_t i = 0; i < N; i++)
        if ((unsigned char)r.body[i] != i % 251)
            fail_msg("byte %zu differs", i);
    unsigned calls = 0;
    assert_int_equal(sscanf(r.body + N, "|calls=%u", &calls), 1);
    assert_true(calls > 1); /* the filter really got the body in pieces */
    pt_lb_resp_free(&r);
}

/* SUSPEND in on_response_headers: the head waits, the resumed filter's header and the outer one are in it. */
static void test_suspend_response_headers(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/suspend_head", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "pong");
    assert_true(r.ended);
    assert_string_equal(pt_lb_header(&r, "x-resumed"), "head");
    assert_string_equal(pt_lb_header(&r, "x-outer"), "1"); /* the chain went on after the resume */
    pt_lb_resp_free(&r);
}

/* SUSPEND in on_response_body: after the resume the filter is called again with the same input. */
static void test_suspend_response_body(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/suspend_body", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.ended);
    assert_false(r.reset);
    /* the body, then the filter's log of its inputs: "pong" twice, nothing lost or doubled */
    assert_string_equal(r.body, "pong[pong][pong]");
    pt_lb_resp_free(&r);
}

/* A response-side RESPOND replaces the handler's response; the outer filter still decorates it. */
static void test_response_side_respond_replaces(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/replace", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 418);
    assert_string_equal(r.body, "replaced");
    assert_int_equal(r.content_length, 8);
    assert_string_equal(pt_lb_header(&r, "content-type"), "text/plain");
    assert_string_equal(pt_lb_header(&r, "x-outer"), "1");
    assert_true(r.ended);
    pt_lb_resp_free(&r);
}

static void assert_invalid_400(const pt_lb_resp_t *r)
{
    assert_int_equal(r->status, 400);
    assert_true(r->ended);
    assert_false(r->reset);
    json_object *o = json_tokener_parse(r->body);
    assert_non_null(o);
    json_object *e, *code;
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "code", &code));
    assert_string_equal(json_object_get_string(code), "INVALID");
    json_object_put(o);
}

/*
 * request_buffering: the request-body filter refuses before the handler
 * starts. The refusal is answered (respond handler), and with the proxy the
 * upstream never sees a connection: one made for the refused request would
 * be accepted before the one the accepted body then makes.
 */
static void test_buffered_body_refused_before_handler(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "POST", "/buffered", NULL, "abcXdef", 7, &r), 0);
    assert_invalid_400(&r);
    assert_null(strstr(r.body, "handler ran"));
    pt_lb_resp_free(&r);
    assert_int_equal(pt_lb_run(&lb, "POST", "/buffered", NULL, "abcdef", 6, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "handler ran");
    pt_lb_resp_free(&r);

    assert_int_equal(atomic_load(&guarded.accepted), 0);
    assert_int_equal(pt_lb_run(&lb, "POST", "/echo", NULL, "abcXdef", 7, &r), 0);
    assert_invalid_400(&r);
    pt_lb_resp_free(&r);
    assert_int_equal(atomic_load(&guarded.accepted), 0); /* the handler never started */

    assert_int_equal(pt_lb_run(&lb, "POST", "/echo", NULL, "abcdef", 6, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abcdef");
    /* a connection made for the refused request would have been accepted first */
    assert_int_equal(atomic_load(&guarded.accepted), 1);
    pt_lb_resp_free(&r);
}

/* ---- abort while a body filter is suspended ------------------------------ */

typedef struct ab_stream {
    pt_lb_resp_t *out;
} ab_stream_t;

static void ab_head(pt_req_t *req) { ((ab_stream_t *)req->stream)->out->status = req->resp_status; }
static void ab_body(pt_req_t *req, const void *d, size_t n, bool end)
{
    (void)d;
    ab_stream_t *s = req->stream;
    s->out->body_len += n;
    s->out->ended = s->out->ended || end;
}
static size_t ab_pending(pt_req_t *req) { (void)req; return 0; }
static void ab_consumed(pt_req_t *req, size_t n) { (void)req; (void)n; }
static void ab_reset(pt_req_t *req) { ((ab_stream_t *)req->stream)->out->reset = true; }
static const pt_stream_ops_t ab_ops = {
    .send_head = ab_head,
    .send_body = ab_body,
    .out_pending = ab_pending,
    .body_consumed = ab_consumed,
    .reset = ab_reset,
};

/*
 * The client goes away while the body filter waits: its abort hook must
 * cancel the timer (no resume may follow: the request is freed). The
 * worker's pending events show the timer gone; the loop then runs for 40
 * times the filter's delay so a timer left behind would fire into the freed
 * request (ASan) -- and nothing more is sent. A worker of its own, so no
 * pooled upstream connection of the other tests changes the event count.
 */
static void test_abort_while_body_suspended(void **state)
{
    (void)state;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "routes:\n"
             "  - match: { path: /suspend_body }\n"
             "    respond: { status: 200, body: \"pong\" }\n"
             "    filters: [ { test_chain: { mode: suspend_body, delay_ms: 5 } } ]\n",
             PT_TEST_PLUGIN_CHAIN);
    pt_lb_t own;
    pt_lb_init(&own, yaml);
    struct event_base *base = own.worker->base;
    int idle = event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
    pt_lb_resp_t out;
    memset(&out, 0, sizeof(out));
    ab_stream_t s = {&out};
    pt_req_t *req = pt__req_new(own.worker, &ab_ops, &s);
    req->method = PT_STR("GET");
    req->path = PT_STR("/suspend_body");
    req->body_done = true;
    pt__req_headers_done(req);
    assert_int_equal(req->wait, PT_WAIT_RESP_BODY);
    assert_int_equal(out.status, 200);
    assert_int_equal(out.body_len, 0);
    pt_lb_abort_suspended(own.worker, req, idle, 200);
    assert_int_equal(out.body_len, 0);
    assert_false(out.ended);
    pt_lb_dispose(&own);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transform_changes_length),
        cmocka_unit_test(test_unannounced_length_change_is_cut_off),
        cmocka_unit_test(test_hold_until_end),
        cmocka_unit_test(test_suspend_response_headers),
        cmocka_unit_test(test_suspend_response_body),
        cmocka_unit_test(test_response_side_respond_replaces),
        cmocka_unit_test(test_buffered_body_refused_before_handler),
        cmocka_unit_test(test_abort_while_body_suspended),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
