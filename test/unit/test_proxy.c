/*
 * test_proxy.c -- the `proxy` handler through the loopback seam (router,
 * filter chain, handler, a fake client codec) against the scripted upstream
 * of test/support/httpsrv.c: header forwarding rules (hop-by-hop, Connection
 * names, X-Forwarded-*, Via, X-Request-Id), rewrites, bodies, error mapping
 * to JSON answers, truncation as an abrupt end, loop detection, config checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "httpsrv.h"
#include "loopback.h"

static tsrv_t srv;
static pt_lb_t lb;
static char yaml[4096];

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    srv_start(&srv, 'a');
    int dead = dead_port();
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:1\n"
             "clusters:\n"
             "  - name: up\n"
             "    endpoints: [ \"127.0.0.1:%d\" ]\n"
             "  - name: dead\n"
             "    endpoints: [ \"127.0.0.1:%d\" ]\n"
             "routes:\n"
             "  - match: { prefix: /api/ }\n"
             "    proxy: { cluster: up }\n"
             "    filters:\n"
             "      - rewrite: { prefix: /api/, replace: / }\n"
             "  - match: { prefix: /keephost/ }\n"
             "    proxy: { cluster: up, preserve_host: true }\n"
             "    filters:\n"
             "      - rewrite: { prefix: /keephost/, replace: / }\n"
             "  - match: { prefix: /trusted/ }\n"
             "    proxy: { cluster: up, trust_forwarded: true }\n"
             "    filters:\n"
             "      - rewrite: { prefix: /trusted/, replace: / }\n"
             "  - match: { prefix: /dead }\n"
             "    proxy: dead\n"
             "  - match: { prefix: /slow }\n"
             "    proxy: { cluster: up, timeout: 300ms }\n"
             "  - match: { prefix: / }\n"
             "    proxy: up\n",
             srv.port, dead);
    pt_lb_init(&lb, yaml);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_lb_dispose(&lb);
    srv_stop(&srv);
    return 0;
}

static bool has_line(const char *body, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = body; (p = strstr(p, line)) != NULL; p++)
        if ((p == body || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static bool has_ci(const char *body, const char *needle)
{
    return strcasestr(body, needle) != NULL;
}

static void test_get(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    const char *h[] = {"host", "gw.example", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/hello", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.ended);
    assert_string_equal(r.body, "hello");
    assert_string_equal(pt_lb_header(&r, "x-test"), "1");
    assert_non_null(pt_lb_header(&r, "x-request-id"));
    assert_null(pt_lb_header(&r, "content-length")); /* framing is the codec's */
    pt_lb_resp_free(&r);
}

static void test_request_headers(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    const char *h[] = {"host", "gw.example",
                       "x-forwarded-for", "6.6.6.6",     /* clients cannot pre-seed */
                       "x-forwarded-host", "evil",
                       "x-forwarded-proto", "https",
                       "forwarded", "for=6.6.6.6",
                       "connection", "x-drop, authorization",
                       "x-drop", "1",
                       "authorization", "secret",       /* named in Connection: hop-by-hop */
                       "keep-alive", "timeout=1",
                       "te", "trailers",
                       "via", "1.0 edge",
                       "x-request-id", "client-id-1",
                       "x-other", "kept",
                       NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/api/head?q=1", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *b = r.body;
    assert_true(has_line(b, "GET /head?q=1 HTTP/1.1"));           /* rewritten path, query kept */
    assert_true(has_line(b, "x-forwarded-for: 127.0.0.1"));
    assert_true(has_line(b, "x-forwarded-host: gw.example"));
    assert_true(has_line(b, "x-forwarded-proto: http"));
    assert_true(has_line(b, "via: 1.0 edge, 1.1 portico"));
    assert_true(has_line(b, "x-request-id: client-id-1"));         /* a valid client id is kept */
    assert_true(has_line(b, "x-other: kept"));
    assert_false(has_ci(b, "6.6.6.6"));
    assert_false(has_ci(b, "evil"));
    assert_false(has_ci(b, "forwarded: for"));
    assert_false(has_ci(b, "x-drop"));
    assert_false(has_ci(b, "secret"));
    assert_false(has_ci(b, "keep-alive"));
    assert_false(has_ci(b, "\nte:"));
    assert_false(has_ci(b, "\nconnection:"));
    assert_false(has_line(b, "Host: gw.example")); /* preserve_host is off: the endpoint's */
    assert_string_equal(pt_lb_header(&r, "x-request-id"), "client-id-1");
    pt_lb_resp_free(&r);

    const char *h2[] = {"host", "gw.example", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/keephost/head", h2, NULL, 0, &r), 0);
    assert_true(has_line(r.body, "Host: gw.example"));
    pt_lb_resp_free(&r);

    /* Connection elements over two fields, past the eight split at once, in
     * any case and with OWS: every one named is dropped, the rest kept. */
    const char *h4[] = {"host", "gw.example",
                        "connection", "a, b,c , d, e, f",
                        "x-early", "1",
                        "connection", "g,h,\t X-Late \t, ,x-later",
                        "x-late", "1",
                        "x-later", "1",
                        "x-kept", "1",
                        NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/api/head", h4, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(has_ci(r.body, "x-late"));
    assert_false(has_ci(r.body, "x-later"));
    assert_true(has_line(r.body, "x-early: 1"));
    assert_true(has_line(r.body, "x-kept: 1"));
    pt_lb_resp_free(&r);
    const char *h5[] = {"host", "gw.example", "connection", "x-first", "x-first", "1",
                        "x-second", "1", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/api/head", h5, NULL, 0, &r), 0);
    assert_false(has_ci(r.body, "x-first"));
    assert_true(has_line(r.body, "x-second: 1"));
    pt_lb_resp_free(&r);

    const char *h3[] = {"host", "gw.example", "x-forwarded-for", "10.0.0.1",
                        "x-forwarded-proto", "https", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/trusted/head", h3, NULL, 0, &r), 0);
    assert_true(has_line(r.body, "x-forwarded-for: 10.0.0.1, 127.0.0.1"));
    assert_true(has_line(r.body, "x-forwarded-proto: https"));
    pt_lb_resp_free(&r);
}

static void test_response_headers(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/hop", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hop");
    assert_null(pt_lb_header(&r, "connection"));
    assert_null(pt_lb_header(&r, "keep-alive"));
    assert_null(pt_lb_header(&r, "x-secret")); /* named by the upstream's Connection */
    assert_string_equal(pt_lb_header(&r, "x-keep"), "yes");
    assert_string_not_equal(pt_lb_header(&r, "x-request-id"), "from-upstream");
    size_t cookies = 0;
    for (size_t i = 0; i < r.header_cnt; i++)
        if (strcmp(r.names[i], "set-cookie") == 0)
            cookies++;
    assert_int_equal(cookies, 2);
    pt_lb_resp_free(&r);
}

static void test_bodies(void **state)
{
    (void)state;
    size_t n = 200000;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "POST", "/echo", NULL, body, n, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.ended);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, body, n);
    assert_string_equal(pt_lb_header(&r, "x-method"), "POST");
    pt_lb_resp_free(&r);
    free(body);

    /* A large streamed download. */
    assert_int_equal(pt_lb_run(&lb, "GET", "/big?3000000", NULL, NULL, 0, &r), 0);
    assert_true(r.ended);
    assert_int_equal(r.body_len, 3000000);
    assert_int_equal((unsigned char)r.body[2999999], 2999999 % 251);
    pt_lb_resp_free(&r);

    /* POST without a body still tells the upstream its length. */
    assert_int_equal(pt_lb_run(&lb, "POST", "/head", NULL, NULL, 0, &r), 0);
    assert_true(has_ci(r.body, "content-length: 0\n"));
    pt_lb_resp_free(&r);
}

static void check_error(const pt_lb_resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    assert_true(r->ended);
    assert_string_equal(pt_lb_header(r, "content-type"), "application/json");
    char want[64];
    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    assert_non_null(strstr(r->body, want));
    assert_non_null(strstr(r->body, "\"request_id\":\""));
}

static void test_errors(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    assert_int_equal(pt_lb_run(&lb, "GET", "/dead", NULL, NULL, 0, &r), 0);
    check_error(&r, 503, "UNAVAILABLE");
    pt_lb_resp_free(&r);

    assert_int_equal(pt_lb_run(&lb, "GET", "/slow?1500", NULL, NULL, 0, &r), 0);
    check_error(&r, 504, "TIMEOUT");
    pt_lb_resp_free(&r);

    assert_int_equal(pt_lb_run(&lb, "GET", "/clte", NULL, NULL, 0, &r), 0);
    check_error(&r, 502, "UPSTREAM");
    assert_null(strstr(r.body, "transfer-encoding")); /* internal detail stays in the log */
    pt_lb_resp_free(&r);

    /* UP-4: the head went out, then the upstream died: abrupt end, never a clean one. */
    assert_int_equal(pt_lb_run(&lb, "GET", "/truncate", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.reset);
    assert_false(r.ended);
    pt_lb_resp_free(&r);
    assert_int_equal(pt_lb_run(&lb, "GET", "/truncchunk", NULL, NULL, 0, &r), 0);
    assert_true(r.reset);
    assert_false(r.ended);
    pt_lb_resp_free(&r);

    assert_int_equal(pt_lb_run(&lb, "CONNECT", "/x", NULL, NULL, 0, &r), 0);
    check_error(&r, 405, "METHOD");
    pt_lb_resp_free(&r);

    /* Still serving. */
    assert_int_equal(pt_lb_run(&lb, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    pt_lb_resp_free(&r);
}

static void test_loop_detection(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    const char *h[] = {"via", "1.1 portico, 1.1 portico, 2 portico (x), 1.1 portico",
                       "via", "1.1 portico, 1.1 portico, 1.1 portico, 1.1 portico", NULL};
    assert_int_equal(pt_lb_run(&lb, "GET", "/hello", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 508);
    assert_non_null(strstr(r.body, "LOOP_DETECTED"));
    assert_int_equal(atomic_load(&srv.accepted) > 0, 1);
    pt_lb_resp_free(&r);

    const char *ok[] = {"via", "1.1 portico, 1.1 other", NULL}; /* one earlier hop is fine */
    assert_int_equal(pt_lb_run(&lb, "GET", "/hello", ok, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    pt_lb_resp_free(&r);
}

static void expect_config_error(const char *text, const char *msg)
{
    char *out = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&out, &len);
    pt_config_t *c = pt_config_load_string("t.yaml", text, strlen(text), errs);
    fclose(errs);
    assert_null(c);
    if (strstr(out, msg) == NULL)
        fail_msg("expected '%s' in: %s", msg, out);
    free(out);
}

static void test_config(void **state)
{
    (void)state;
    const char *head = "listeners:\n  - address: 127.0.0.1:1\n"
                       "clusters:\n  - name: up\n    endpoints: [ \"127.0.0.1:9\" ]\n";
    char buf[1024];
    snprintf(buf, sizeof(buf), "%sroutes:\n  - proxy: { cluster: nope }\n", head);
    expect_config_error(buf, "unknown cluster 'nope'");
    snprintf(buf, sizeof(buf), "%sroutes:\n  - proxy: { cluster: up, timeuot: 1s }\n", head);
    expect_config_error(buf, "timeuot");
    snprintf(buf, sizeof(buf), "%sroutes:\n  - proxy: { timeout: 1s }\n", head);
    expect_config_error(buf, "cluster");
    snprintf(buf, sizeof(buf), "%sroutes:\n  - proxy: [ up ]\n", head);
    expect_config_error(buf, "proxy: expected");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_request_headers),
        cmocka_unit_test(test_response_headers),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_loop_detection),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests_name("proxy", tests, setup, teardown);
}
