/*
 * test_request.c -- the request lifecycle through the loopback seam: routing,
 * path normalisation, the filter chain (continue, suspend/resume, local
 * replies that still pass response filters, abort while suspended), body
 * limits and 100-continue, JSON error bodies.
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
#include "loopback.h"
#include <event2/buffer.h>
#include <event2/event.h>
#include "core/request.h"

static const char *config_text(void)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "routes:\n"
             "  - name: ping\n"
             "    match: { path: /ping }\n"
             "    respond: { status: 200, body: \"pong\", content_type: text/plain }\n"
             "    filters:\n"
             "      - headers: { response: { add: { x-served-by: portico } } }\n"
             "  - name: slow\n"
             "    match: { prefix: /slow }\n"
             "    respond: { status: 201, body: \"late\" }\n"
             "    filters:\n"
             "      - headers: { response: { add: { x-outer: \"1\" } } }\n"
             "      - test_suspend: { delay_ms: 20 }\n"
             "  - name: deny\n"
             "    match: { prefix: /deny }\n"
             "    respond: { status: 200, body: \"never\" }\n"
             "    filters:\n"
             "      - headers: { response: { add: { x-outer: \"1\" } } }\n"
             "      - test_suspend: { delay_ms: 5, deny: true }\n"
             "      - headers: { response: { add: { x-inner: \"1\" } } }\n"
             "  - name: small\n"
             "    match: { prefix: /small }\n"
             "    max_body: 10\n"
             "    respond: { status: 200, body: \"ok\" }\n",
             PT_TEST_PLUGIN);
    return buf;
}

static pt_lb_t lb;

static int setup(void **state)
{
    (void)state;
    pt_lb_init(&lb, config_text());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_lb_dispose(&lb);
    return 0;
}

static json_object *error_of(const pt_lb_resp_t *r)
{
    json_object *o = json_tokener_parse(r->body);
    assert_non_null(o);
    json_object *e;
    assert_true(json_object_object_get_ex(o, "error", &e));
    json_object_get(e);
    json_object_put(o);
    return e;
}

static const char *str_of(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static void test_respond_with_filters(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/ping", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "pong");
    assert_string_equal(pt_lb_header(&r, "x-served-by"), "portico");
    assert_string_equal(pt_lb_header(&r, "content-type"), "text/plain");
    assert_int_equal(strlen(pt_lb_header(&r, "x-request-id")), 32);
    pt_lb_resp_free(&r);
}

static void test_request_id_kept(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    const char *h[] = {"x-request-id", "abc.DEF-1", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/ping", h, NULL, 0, &r), 0);
    assert_string_equal(pt_lb_header(&r, "x-request-id"), "abc.DEF-1");
    pt_lb_resp_free(&r);
    const char *bad[] = {"x-request-id", "a b", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/ping", bad, NULL, 0, &r), 0);
    assert_string_not_equal(pt_lb_header(&r, "x-request-id"), "a b");
    pt_lb_resp_free(&r);
}

static void test_not_found_json(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(pt_lb_header(&r, "content-type"), "application/json");
    json_object *e = error_of(&r);
    assert_string_equal(str_of(e, "code"), "NOT_FOUND");
    assert_string_equal(str_of(e, "request_id"), pt_lb_header(&r, "x-request-id"));
    json_object_put(e);
    pt_lb_resp_free(&r);
}

static void test_path_normalised_before_routing(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/x/../p%69ng", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    pt_lb_resp_free(&r);
    assert_int_equal(pt_lb_run(&lb, "GET", "/ping%2f..", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    json_object *e = error_of(&r);
    assert_string_equal(str_of(e, "code"), "INVALID");
    assert_non_null(strstr(str_of(e, "detail"), "encoded"));
    json_object_put(e);
    pt_lb_resp_free(&r);
}

static void test_suspend_resume(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/slow", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "late");
    assert_string_equal(pt_lb_header(&r, "x-outer"), "1");
    pt_lb_resp_free(&r);
}

static void test_local_reply_passes_response_filters_that_ran(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/deny", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.body, "{\"denied\":true}");
    assert_string_equal(pt_lb_header(&r, "x-outer"), "1");   /* ran before the denier */
    assert_null(pt_lb_header(&r, "x-inner"));                 /* never reached */
    pt_lb_resp_free(&r);
}

static void test_abort_while_suspended(void **state)
{
    (void)state;
    /*
     * A request aborted during the suspension: test_suspend's abort hook must
     * cancel its 20 ms timer, since no resume may follow (the request is
     * freed). The worker's pending events show the timer gone at once; then
     * the loop runs for 10 times the delay, so a timer left behind would fire
     * into the freed request (ASan) and send through `never` (a NULL call).
     */
    static const pt_stream_ops_t never = {0}; /* nothing may be sent */
    struct event_base *base = lb.worker->base;
    int idle = event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
    pt_req_t *req = pt__req_new(lb.worker, &never, NULL);
    req->method = PT_STR("GET");
    req->path = PT_STR("/slow");
    req->body_done = true;
    pt__req_headers_done(req);
    assert_true(req->wait == PT_WAIT_REQ_HEADERS);
    pt_lb_abort_suspended(lb.worker, req, idle, 200);
}

static void test_body_limits(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "POST", "/small", NULL, "0123456789", 10, &r), 0);
    assert_int_equal(r.status, 200);
    pt_lb_resp_free(&r);
    assert_int_equal(pt_lb_run(&lb, "POST", "/small", NULL, "0123456789X", 11, &r), 0);
    assert_int_equal(r.status, 413);
    assert_false(r.sent_continue);
    json_object *e = error_of(&r);
    assert_string_equal(str_of(e, "code"), "LIMIT");
    json_object_put(e);
    pt_lb_resp_free(&r);
}

static pt_str_t claims(pt_req_t *req, void *data, pt_str_t rest)
{
    (void)req;
    return pt_str_eq(rest, PT_STR("sub")) ? pt_str_c(data) : PT_STR_NULL;
}

static void test_request_variables(void **state)
{
    (void)state;
    static const pt_stream_ops_t never = {0};
    pt_req_t *req = pt__req_new(lb.worker, &never, NULL);
    assert_null(pt_req_var(req, PT_STR("consumer")).base);
    assert_int_equal(pt_req_var_set(req, PT_STR("consumer"), PT_STR("alice")), 0);
    assert_true(pt_str_eq(pt_req_var(req, PT_STR("consumer")), PT_STR("alice")));
    assert_int_equal(pt_req_var_set(req, PT_STR("consumer"), PT_STR("bob")), 0); /* last set wins */
    assert_true(pt_str_eq(pt_req_var(req, PT_STR("consumer")), PT_STR("bob")));
    assert_null(pt_req_var(req, PT_STR("consume")).base);                       /* whole names only */
    assert_int_equal(pt_req_var_provider(req, PT_STR("jwt."), claims, "u-42"), 0);
    assert_true(pt_str_eq(pt_req_var(req, PT_STR("jwt.sub")), PT_STR("u-42")));
    assert_null(pt_req_var(req, PT_STR("jwt.aud")).base);                       /* provider says unset */
    assert_null(pt_req_var(req, PT_STR("jwt.")).base);                          /* the bare prefix is no name */
    assert_int_equal(pt_req_var_set(req, PT_STR("jwt.sub"), PT_STR("override")), 0);
    assert_true(pt_str_eq(pt_req_var(req, PT_STR("jwt.sub")), PT_STR("override"))); /* newer wins */
    assert_int_equal(pt_req_var_provider(req, PT_STR(""), claims, "x"), PT_ERR_INVALID);
    pt__req_abort(req);
}

/* A finished request's arena and body buffer serve the next request on the
 * worker (no malloc on the steady-state path): the same arena comes back,
 * reset (a fresh request struct, no headers, an empty body even when the
 * last one left body bytes unread), and the worker keeps at most 32. */
static void test_spare_arenas_reused(void **state)
{
    (void)state;
    static const pt_stream_ops_t never = {0};
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/ping", NULL, NULL, 0, &r), 0);
    pt_lb_resp_free(&r);
    unsigned spares = pt__req_spares_count(lb.worker);
    assert_true(spares >= 1);

    pt_req_t *req = pt__req_new(lb.worker, &never, NULL);
    assert_int_equal(pt__req_spares_count(lb.worker), spares - 1);
    pt_arena_t *arena = req->arena;
    struct evbuffer *body = req->body;
    req->method = PT_STR("POST");
    assert_int_equal(pt_headers_add(&req->headers, PT_STR("x-old"), PT_STR("1")), 0);
    assert_int_equal(evbuffer_add(req->body, "unread", 6), 0);
    pt__req_abort(req); /* finalised: its arena goes back */
    assert_int_equal(pt__req_spares_count(lb.worker), spares);

    req = pt__req_new(lb.worker, &never, NULL);
    assert_true(req->arena == arena);
    assert_true(req->body == body);
    assert_int_equal(evbuffer_get_length(req->body), 0);
    assert_int_equal(req->headers.cnt, 0);
    assert_null(req->method.base);
    assert_int_equal(req->content_length, -1);
    assert_true(req->holds == PT_REQ_HOLD_CODEC);
    pt__req_abort(req);

    /* many at once: all but 32 are freed when they end */
    pt_req_t *many[40];
    for (int i = 0; i < 40; i++)
        many[i] = pt__req_new(lb.worker, &never, NULL);
    assert_int_equal(pt__req_spares_count(lb.worker), 0);
    for (int i = 0; i < 40; i++)
        pt__req_abort(many[i]);
    assert_int_equal(pt__req_spares_count(lb.worker), 32);
}

/* The request id's hex digits, eight at a time, against printf's. */
static void test_hex64(void **state)
{
    (void)state;
    uint64_t v[] = {0, 1, 0x9, 0xa, 0xf, 0x10, 0xdeadbeefcafebabeull, ~0ull, 0x0123456789abcdefull,
                    0xfedcba9876543210ull, 0x8000000000000000ull, 0xa0a0a0a09f9f9f9full};
    char got[17], want[17];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) + 1000; i++) {
        uint64_t x = i < sizeof(v) / sizeof(v[0]) ? v[i] : pt__rand64();
        pt__hex64(got, x);
        got[16] = '\0';
        snprintf(want, sizeof(want), "%016llx", (unsigned long long)x);
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_respond_with_filters),
        cmocka_unit_test(test_request_id_kept),
        cmocka_unit_test(test_not_found_json),
        cmocka_unit_test(test_path_normalised_before_routing),
        cmocka_unit_test(test_suspend_resume),
        cmocka_unit_test(test_local_reply_passes_response_filters_that_ran),
        cmocka_unit_test(test_abort_while_suspended),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_request_variables),
        cmocka_unit_test(test_spare_arenas_reused),
        cmocka_unit_test(test_hex64),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
