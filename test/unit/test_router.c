/*
 * test_router.c -- route matching: every match kind, precedence, params.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/router.h"
#include "portico/status.h"

static const char routes_yaml[] =
    "listeners: [ { address: 127.0.0.1:8080 } ]\n"
    "routes:\n"
    "  - name: exact\n"
    "    match: { path: /health }\n"
    "    respond: {}\n"
    "  - name: book\n"
    "    match: { template: \"/users/{id}/books/{book}\", methods: [GET, HEAD] }\n"
    "    respond: {}\n"
    "  - name: user\n"
    "    match: { template: \"/users/{id=*}\" }\n"
    "    respond: {}\n"
    "  - name: files\n"
    "    match: { template: \"/files/{path=**}\" }\n"
    "    respond: {}\n"
    "  - name: root\n"
    "    match: { template: / }\n"
    "    respond: {}\n"
    "  - name: hosted\n"
    "    match: { prefix: /h/, host: [ \"*.example.com\", api.local, \"[::1]\" ] }\n"
    "    respond: {}\n"
    "  - name: posts\n"
    "    match: { prefix: /api/, methods: [post, PROPFIND] }\n"
    "    respond: {}\n"
    "  - name: canary\n"
    "    match: { prefix: /api/, headers: { x-canary: \"1\", x-user: true } }\n"
    "    respond: {}\n"
    "  - name: api\n"
    "    match: { prefix: /api/ }\n"
    "    respond: {}\n"
    "  - name: shadowed\n"
    "    match: { prefix: /api/v2/ }\n"
    "    respond: {}\n";

typedef struct fx {
    pt_config_t *c;
    pt_arena_t *arena;
    pt_headers_t headers;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    fx->c = pt_config_load_string("r.yaml", routes_yaml, strlen(routes_yaml), stderr);
    assert_non_null(fx->c);
    fx->arena = pt_arena_new(0, 0);
    pt_headers_init(&fx->headers, fx->arena);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    pt_arena_destroy(fx->arena);
    pt_config_unref(fx->c);
    free(fx);
    return 0;
}

/* The name of the matched route, or "-" for none. */
static const char *route_of(fx_t *fx, const char *method, const char *host, const char *path,
                            pt_route_result_t *res)
{
    pt_route_result_t tmp;
    if (res == NULL)
        res = &tmp;
    memset(res, 0, sizeof(*res));
    int rc = pt_router_match(fx->c->router, pt_str_c(method), pt_str_c(host), pt_str_c(path),
                             &fx->headers, fx->arena, res);
    if (rc == PT_ERR_NOT_FOUND)
        return "-";
    assert_int_equal(rc, 0);
    return res->route->name;
}

static void assert_param(const pt_route_result_t *r, const char *name, const char *value)
{
    for (size_t i = 0; i < r->param_cnt; i++)
        if (pt_str_eq(r->params[i].name, pt_str_c(name))) {
            if (!pt_str_eq(r->params[i].value, pt_str_c(value)))
                fail_msg("param %s = '%.*s', want '%s'", name, (int)r->params[i].value.len,
                         r->params[i].value.base, value);
            return;
        }
    fail_msg("param %s missing", name);
}

static void test_method_bits(void **state)
{
    (void)state;
    assert_int_equal(pt_method_bit(PT_STR("GET")), PT_METHOD_GET);
    assert_int_equal(pt_method_bit(PT_STR("HEAD")), PT_METHOD_HEAD);
    assert_int_equal(pt_method_bit(PT_STR("POST")), PT_METHOD_POST);
    assert_int_equal(pt_method_bit(PT_STR("PUT")), PT_METHOD_PUT);
    assert_int_equal(pt_method_bit(PT_STR("DELETE")), PT_METHOD_DELETE);
    assert_int_equal(pt_method_bit(PT_STR("PATCH")), PT_METHOD_PATCH);
    assert_int_equal(pt_method_bit(PT_STR("OPTIONS")), PT_METHOD_OPTIONS);
    assert_int_equal(pt_method_bit(PT_STR("TRACE")), PT_METHOD_TRACE);
    assert_int_equal(pt_method_bit(PT_STR("CONNECT")), PT_METHOD_CONNECT);
    assert_int_equal(pt_method_bit(PT_STR("get")),
                     PT_METHOD_OTHER); /* methods are case-sensitive */
    assert_int_equal(pt_method_bit(PT_STR("PROPFIND")), PT_METHOD_OTHER);
    assert_int_equal(pt_method_bit(PT_STR_NULL), PT_METHOD_OTHER);
}

static void test_exact(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(route_of(fx, "GET", "x", "/health", NULL), "exact");
    assert_string_equal(route_of(fx, "DELETE", "x", "/health", NULL), "exact");
    assert_string_equal(route_of(fx, "GET", "x", "/health/", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/healthz", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/HEALTH", NULL), "-");
}

static void test_template(void **state)
{
    fx_t *fx = *state;
    pt_route_result_t r;
    assert_string_equal(route_of(fx, "GET", "x", "/users/42/books/7", &r), "book");
    assert_int_equal(r.param_cnt, 2);
    assert_param(&r, "id", "42");
    assert_param(&r, "book", "7");
    /* methods restrict the first template; the next one does not match 4 segments */
    assert_string_equal(route_of(fx, "POST", "x", "/users/42/books/7", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users/42", &r), "user");
    assert_int_equal(r.param_cnt, 1);
    assert_param(&r, "id", "42");
    /* single-segment variables never take '/' nor match empty */
    assert_string_equal(route_of(fx, "GET", "x", "/users/", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users/42/books", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users/42/books/", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users/42/books/7/x", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/users//books/7", NULL), "-");
}

static void test_template_rest(void **state)
{
    fx_t *fx = *state;
    pt_route_result_t r;
    assert_string_equal(route_of(fx, "GET", "x", "/files/a/b/c.txt", &r), "files");
    assert_param(&r, "path", "a/b/c.txt");
    assert_string_equal(route_of(fx, "GET", "x", "/files/", &r), "files");
    assert_param(&r, "path", "");
    assert_string_equal(route_of(fx, "GET", "x", "/files", &r), "files");
    assert_param(&r, "path", "");
    assert_string_equal(route_of(fx, "GET", "x", "/filesystem", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "/", &r), "root");
    assert_int_equal(r.param_cnt, 0);
    assert_null(r.params);
}

static void test_hosts(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(route_of(fx, "GET", "a.example.com", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "A.b.EXAMPLE.com:8443", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "example.com", "/h/x", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "badexample.com", "/h/x", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "api.local", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "API.LOCAL:80", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "api.local.", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "api.localhost", "/h/x", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "[::1]:8080", "/h/x", NULL), "hosted");
    assert_string_equal(route_of(fx, "GET", "", "/h/x", NULL), "-");
}

static void test_methods_and_headers(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(route_of(fx, "POST", "x", "/api/a", NULL), "posts");
    assert_string_equal(route_of(fx, "PROPFIND", "x", "/api/a", NULL), "posts");
    /* another extension method does not match the PROPFIND route */
    assert_string_equal(route_of(fx, "MKCOL", "x", "/api/a", NULL), "api");
    assert_string_equal(route_of(fx, "GET", "x", "/api/a", NULL), "api");

    assert_int_equal(pt_headers_add(&fx->headers, PT_STR("x-canary"), PT_STR("1")), 0);
    assert_string_equal(route_of(fx, "GET", "x", "/api/a", NULL), "api"); /* x-user missing */
    assert_int_equal(pt_headers_add(&fx->headers, PT_STR("x-user"), PT_STR("anything")), 0);
    assert_string_equal(route_of(fx, "GET", "x", "/api/a", NULL), "canary");
    pt_headers_remove(&fx->headers, PT_STR("x-canary"));
    assert_int_equal(pt_headers_add(&fx->headers, PT_STR("x-canary"), PT_STR("10")), 0);
    assert_string_equal(route_of(fx, "GET", "x", "/api/a", NULL), "api"); /* exact value only */
    /* any entry of a repeated header may satisfy the match */
    assert_int_equal(pt_headers_add(&fx->headers, PT_STR("x-canary"), PT_STR("1")), 0);
    assert_string_equal(route_of(fx, "GET", "x", "/api/a", NULL), "canary");
}

static void test_precedence(void **state)
{
    fx_t *fx = *state;
    /* "api" comes first in the file, so the more specific "shadowed" never wins */
    assert_string_equal(route_of(fx, "GET", "x", "/api/v2/x", NULL), "api");
    assert_string_equal(route_of(fx, "GET", "x", "/nothing", NULL), "-");
    assert_string_equal(route_of(fx, "GET", "x", "", NULL), "-");
}

static void test_catch_all(void **state)
{
    (void)state;
    const char *y = "listeners: [ { address: 127.0.0.1:8080 } ]\n"
                    "routes:\n"
                    "  - respond: {}\n";
    pt_config_t *c = pt_config_load_string("r.yaml", y, strlen(y), stderr);
    assert_non_null(c);
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_route_result_t r;
    assert_int_equal(
        pt_router_match(c->router, PT_STR("BREW"), PT_STR_NULL, PT_STR("/any/thing"), NULL, a, &r),
        0);
    assert_ptr_equal(r.route, &c->routes[0]);
    pt_arena_destroy(a);
    pt_config_unref(c);
}

static void test_param_arena_limit(void **state)
{
    fx_t *fx = *state;
    pt_arena_t *tiny = pt_arena_new(64, 64);
    void *fill = pt_arena_alloc(tiny, 64);
    assert_non_null(fill);
    pt_route_result_t r;
    int rc = pt_router_match(fx->c->router, PT_STR("GET"), PT_STR("x"), PT_STR("/users/1/books/2"),
                             NULL, tiny, &r);
    assert_int_equal(rc, PT_ERR_LIMIT);
    pt_arena_destroy(tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bits),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_exact),
        T(test_template),
        T(test_template_rest),
        T(test_hosts),
        T(test_methods_and_headers),
        T(test_precedence),
        T(test_param_arena_limit),
#undef T
        cmocka_unit_test(test_catch_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
