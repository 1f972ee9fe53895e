/*
 * test_filters.c -- the built-in headers and rewrite filters, the filter
 * registry and the .so loader.
 *
 * Filters are configured through a real config load, then their callbacks
 * run against a minimal request built by hand (request.h exposes pt_req_t):
 * an arena, header lists and the fields the SDK accessors read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "config.h"
#include "filter_registry.h"
#include "request.h"
#include "portico/status.h"

/* ---- a minimal request ------------------------------------------------------------ */

typedef struct fake {
    pt_req_t req;
    pt_route_param_t params[2];
} fake_t;

static fake_t *fake_new(const char *method, const char *path, const char *host)
{
    fake_t *f = calloc(1, sizeof(*f));
    pt_req_t *r = &f->req;
    r->arena = pt_arena_new(0, 0);
    pt_headers_init(&r->headers, r->arena);
    pt_headers_init(&r->resp_headers, r->arena);
    pt_headers_init(&r->resp_trailers, r->arena);
    r->method = pt_str_c(method);
    r->path = pt_str_c(path);
    r->authority = pt_str_c(host);
    r->scheme = PT_STR("https");
    r->query = PT_STR("a=1");
    r->client_addr = PT_STR("192.0.2.7");
    r->request_id = PT_STR("req-123");
    r->version = 11;
    f->params[0] = (pt_route_param_t){PT_STR("id"), PT_STR("42")};
    r->route.params = f->params;
    r->route.param_cnt = 1;
    return f;
}

static void fake_free(fake_t *f)
{
    pt_arena_destroy(f->req.arena);
    free(f);
}

static const char *hdr(const pt_headers_t *h, const char *name)
{
    static char buf[256];
    pt_str_t v = pt_headers_get(h, pt_str_c(name));
    if (v.base == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%.*s", (int)v.len, v.base);
    return buf;
}

static const char *path_of(const pt_req_t *r)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "%.*s", (int)r->path.len, r->path.base);
    return buf;
}

/* Loads a config whose first route has the given filters; returns it (unref when done). */
static pt_config_t *load_filters(const char *filters_yaml)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "listeners: [ { address: 127.0.0.1:8080 } ]\n"
             "routes:\n"
             "  - match: { template: \"/users/{id}/{rest=**}\" }\n"
             "    respond: {}\n"
             "    filters:\n%s",
             filters_yaml);
    pt_config_t *c = pt_config_load_string("f.yaml", text, strlen(text), stderr);
    if (c == NULL)
        fail_msg("config did not load");
    return c;
}

static pt_fstatus_t run_request(const pt_filter_t *f, pt_req_t *r)
{
    return f->def->on_request_headers(f, r, NULL);
}

/* ---- headers ------------------------------------------------------------------------ */

static void test_headers_request(void **state)
{
    (void)state;
    pt_config_t *c = load_filters(
        "      - headers:\n"
        "          request:\n"
        "            remove: [ X-Internal ]\n"
        "            rename: { x-old: X-New }\n"
        "            set:\n"
        "              x-env: prod\n"
        "              x-client: \"${client_addr}\"\n"
        "              x-info: \"${method} ${scheme}://${host}${path}?${query} id=${request_id}\"\n"
        "              x-param: \"user-${param.id}-${param.missing}\"\n"
        "              x-copy: \"[${header.X-User}]\"\n"
        "              x-dollar: \"$$5 and $x\"\n"
        "            add: { x-multi: two }\n");
    fake_t *f = fake_new("GET", "/users/42/x", "api.example.com");
    pt_headers_t *h = &f->req.headers;
    pt_headers_add(h, PT_STR("x-internal"), PT_STR("secret"));
    pt_headers_add(h, PT_STR("x-internal"), PT_STR("secret2"));
    pt_headers_add(h, PT_STR("x-old"), PT_STR("v-old"));
    pt_headers_add(h, PT_STR("x-env"), PT_STR("dev"));
    pt_headers_add(h, PT_STR("x-multi"), PT_STR("one"));
    pt_headers_add(h, PT_STR("x-user"), PT_STR("alice"));

    const pt_route_t *rt = &c->routes[0];
    assert_int_equal(rt->chain_cnt, 1);
    assert_int_equal(run_request(rt->chain[0], &f->req), PT_FILTER_CONTINUE);

    assert_null(hdr(h, "x-internal"));
    assert_null(hdr(h, "x-old"));
    assert_string_equal(hdr(h, "x-new"), "v-old");
    assert_string_equal(hdr(h, "x-env"), "prod");
    assert_int_equal(pt_headers_count(h, PT_STR("x-env")), 1);
    assert_string_equal(hdr(h, "x-client"), "192.0.2.7");
    assert_string_equal(hdr(h, "x-info"), "GET https://api.example.com/users/42/x?a=1 id=req-123");
    assert_string_equal(hdr(h, "x-param"), "user-42-");
    assert_string_equal(hdr(h, "x-copy"), "[alice]");
    assert_string_equal(hdr(h, "x-dollar"), "$5 and $x");
    assert_int_equal(pt_headers_count(h, PT_STR("x-multi")), 2);
    /* the response side was not configured: untouched */
    assert_int_equal(f->req.resp_headers.cnt, 0);
    fake_free(f);
    pt_config_unref(c);
}

static void test_headers_response(void **state)
{
    (void)state;
    pt_config_t *c =
        load_filters("      - headers:\n"
                     "          response:\n"
                     "            add: { x-served-by: portico, x-id: \"${request_id}\" }\n"
                     "            remove: [ server ]\n"
                     "            rename: { x-powered-by: x-upstream-powered-by }\n");
    fake_t *f = fake_new("GET", "/users/1/", "h");
    pt_headers_t *rh = &f->req.resp_headers;
    pt_headers_add(rh, PT_STR("server"), PT_STR("nginx"));
    pt_headers_add(rh, PT_STR("x-powered-by"), PT_STR("php"));
    const pt_filter_t *flt = c->routes[0].chain[0];
    assert_non_null(flt->def->on_response_headers);
    assert_int_equal(run_request(flt, &f->req), PT_FILTER_CONTINUE); /* request side: no-op */
    assert_int_equal(f->req.headers.cnt, 0);
    assert_int_equal(flt->def->on_response_headers(flt, &f->req, NULL), PT_FILTER_CONTINUE);
    assert_null(hdr(rh, "server"));
    assert_string_equal(hdr(rh, "x-upstream-powered-by"), "php");
    assert_string_equal(hdr(rh, "x-served-by"), "portico");
    assert_string_equal(hdr(rh, "x-id"), "req-123");
    fake_free(f);
    pt_config_unref(c);
}

static void test_headers_no_injection(void **state)
{
    (void)state;
    pt_config_t *c =
        load_filters("      - headers:\n"
                     "          request: { set: { x-path: \"${path}\", x-ok: ok } }\n");
    /* a path with CR/LF (the codecs refuse these; a variable must not smuggle them anyway) */
    fake_t *f = fake_new("GET", "/users/1/a\r\nx-evil: 1", "h");
    assert_int_equal(run_request(c->routes[0].chain[0], &f->req), PT_FILTER_CONTINUE);
    assert_null(hdr(&f->req.headers, "x-path"));
    assert_string_equal(hdr(&f->req.headers, "x-ok"), "ok");
    fake_free(f);
    pt_config_unref(c);
}

static void test_headers_arena_limit(void **state)
{
    (void)state;
    pt_config_t *c =
        load_filters("      - headers:\n"
                     "          request: { set: { x-a: \"${path}${path}${path}\" } }\n");
    fake_t *f = fake_new("GET", "/users/1/", "h");
    pt_arena_destroy(f->req.arena);
    f->req.arena = pt_arena_new(256, 256);
    pt_headers_init(&f->req.headers, f->req.arena);
    char big[200];
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    f->req.path = (pt_str_t){big, sizeof(big)};
    void *fill = pt_arena_alloc(f->req.arena, 100);
    assert_non_null(fill);
    assert_int_equal(run_request(c->routes[0].chain[0], &f->req), PT_FILTER_ERROR);
    assert_int_equal(f->req.fail_status, PT_ERR_LIMIT);
    fake_free(f);
    pt_config_unref(c);
}

/* ---- rewrite ----------------------------------------------------------------------------- */

static void test_rewrite_prefix(void **state)
{
    (void)state;
    pt_config_t *c = load_filters("      - rewrite: { prefix: /users/, replace: /v2/people/ }\n"
                                  "      - rewrite: { prefix: /v2 }\n"
                                  "      - rewrite: { host: backend.internal }\n");
    const pt_route_t *rt = &c->routes[0];
    fake_t *f = fake_new("GET", "/users/42/books", "public.example.com");
    for (size_t i = 0; i < rt->chain_cnt; i++)
        assert_int_equal(run_request(rt->chain[i], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/people/42/books");
    assert_true(pt_str_eq(f->req.authority, PT_STR("backend.internal")));
    assert_true(pt_str_eq(f->req.query, PT_STR("a=1"))); /* query untouched */
    fake_free(f);

    /* not matching the prefix: unchanged; stripping everything leaves "/" */
    f = fake_new("GET", "/other", "h");
    assert_int_equal(run_request(rt->chain[0], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/other");
    f->req.path = PT_STR("/v2");
    assert_int_equal(run_request(rt->chain[1], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/");
    fake_free(f);
    pt_config_unref(c);
}

static void test_rewrite_default_replace(void **state)
{
    (void)state;
    pt_config_t *c = load_filters("      - rewrite: { prefix: /users/ }\n");
    fake_t *f = fake_new("GET", "/users/42", "h");
    assert_int_equal(run_request(c->routes[0].chain[0], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/42");
    fake_free(f);
    pt_config_unref(c);
}

static void test_rewrite_regex(void **state)
{
    (void)state;
    pt_config_t *c = load_filters("      - rewrite: { regex: \"^/users/(\\\\d+)/(?<rest>.*)$\", "
                                  "replace: \"/u/$1/${rest}/${1}$$\" }\n"
                                  "      - rewrite: { regex: \"/x/\", replace: /y/ }\n");
    const pt_route_t *rt = &c->routes[0];
    fake_t *f = fake_new("GET", "/users/42/books/7", "h");
    assert_int_equal(run_request(rt->chain[0], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/u/42/books/7/42$");
    fake_free(f);

    /* no match: unchanged */
    f = fake_new("GET", "/users/abc/books", "h");
    assert_int_equal(run_request(rt->chain[0], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/users/abc/books");
    /* unanchored: only the matched part is replaced */
    f->req.path = PT_STR("/a/x/b/x/c");
    assert_int_equal(run_request(rt->chain[1], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(path_of(&f->req), "/a/y/b/x/c");
    fake_free(f);
    pt_config_unref(c);
}

static void test_rewrite_regex_backtracking(void **state)
{
    (void)state;
    /* catastrophic pattern: the match limit stops it and the path stays as it was */
    pt_config_t *c = load_filters("      - rewrite: { regex: \"^/(a+)+$\", replace: /bad }\n");
    char path[64];
    path[0] = '/';
    memset(path + 1, 'a', 40);
    path[41] = 'b';
    path[42] = '\0';
    fake_t *f = fake_new("GET", path, "h");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_request(c->routes[0].chain[0], &f->req), PT_FILTER_CONTINUE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(path_of(&f->req), path);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms < 1000.0);
    fake_free(f);
    pt_config_unref(c);
}

static void test_rewrite_conf_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"      - rewrite: {}\n", "rewrite: give prefix:, regex: and/or host:"},
        {"      - rewrite: { prefix: /a, regex: b, replace: c }\n",
         "rewrite: prefix and regex cannot be combined (use two rewrites)"},
        {"      - rewrite: { replace: /x }\n", "rewrite: replace needs prefix: or regex:"},
        {"      - rewrite: { regex: \"^/a\" }\n", "rewrite: regex needs replace:"},
        {"      - rewrite: { regex: \"^/(a)\", replace: \"${nope}\" }\n",
         "replace: the regex has no group named 'nope'"},
        {"      - rewrite: { regex: \"^/(a)\", replace: \"$\" }\n",
         "replace: '$' must be followed by a group number, {name} or '$'"},
        {"      - rewrite: { host: \"a/b\" }\n", "rewrite: bad host 'a/b'"},
        {"      - rewrite: { prefix: /a, nope: 1 }\n", "unknown key 'nope'"},
        {"      - rewrite: { prefix: /a, replace: \"/b?x=1\" }\n",
         "rewrite: replace may not contain '?', '#', spaces or control characters"},
        {"      - rewrite: { regex: \"^/(a)\", replace: \"/$1#frag\" }\n",
         "rewrite: replace may not contain '?'"},
        {"      - rewrite: { regex: \"^/(a)\", replace: \"/a b\" }\n",
         "rewrite: replace may not contain '?'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "listeners: [ { address: 127.0.0.1:8080 } ]\nroutes:\n  - respond: {}\n"
                 "    filters:\n%s",
                 bad[i].yaml);
        char *buf = NULL;
        size_t len = 0;
        FILE *errs = open_memstream(&buf, &len);
        pt_config_t *c = pt_config_load_string("f.yaml", text, strlen(text), errs);
        fclose(errs);
        if (c != NULL)
            fail_msg("accepted: %s", bad[i].yaml);
        if (strstr(buf, "f.yaml:5:") == NULL || strstr(buf, bad[i].want) == NULL)
            fail_msg("for %s\nwant: %s\ngot: %s", bad[i].yaml, bad[i].want, buf);
        free(buf);
    }
}

/* ---- registry and plugins ------------------------------------------------------------------ */

static void test_builtin_registry(void **state)
{
    (void)state;
    const pt_filter_def_t *h = pt_filter_builtin_find("headers", 7);
    assert_non_null(h);
    assert_string_equal(h->name, "headers");
    assert_null(pt_filter_def_check(h));
    const pt_filter_def_t *r = pt_filter_builtin_find("rewrite", 7);
    assert_non_null(r);
    assert_null(pt_filter_def_check(r));
    assert_null(pt_filter_builtin_find("head", 4));
    assert_null(pt_filter_builtin_find("nope", 4));
    for (size_t i = 0; pt_builtin_filters[i] != NULL; i++)
        assert_null(pt_filter_def_check(pt_builtin_filters[i]));
    pt_filter_def_t bad = *h;
    bad.abi = 1;
    assert_non_null(pt_filter_def_check(&bad));
    bad = *h;
    bad.name = "Bad Name";
    assert_non_null(pt_filter_def_check(&bad));
}

static pt_config_t *load_plugin_config(const char *so, const char *filter, FILE *errs)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listeners: [ { address: 127.0.0.1:8080 } ]\n"
             "plugins: [ { path: \"%s\" } ]\n"
             "filters:\n"
             "  - headers: { request: { set: { x-global: yes } } }\n"
             "  - %s\n"
             "routes:\n"
             "  - respond: {}\n",
             so, filter);
    return pt_config_load_string("p.yaml", text, strlen(text), errs);
}

static void test_plugin_loads(void **state)
{
    (void)state;
    pt_config_t *c = load_plugin_config(PT_TEST_PLUGIN_TAG, "tag: { value: from-plugin }", stderr);
    assert_non_null(c);
    /* priority: headers (100) runs before tag (5) in the global chain */
    assert_int_equal(c->global_filter_cnt, 2);
    assert_string_equal(c->global_filters[0]->def->name, "headers");
    const pt_filter_t *tag = c->global_filters[1];
    assert_string_equal(tag->def->name, "tag");
    assert_int_equal(tag->def->abi, PT_FILTER_ABI);
    fake_t *f = fake_new("GET", "/", "h");
    for (size_t i = 0; i < c->routes[0].chain_cnt; i++)
        assert_int_equal(run_request(c->routes[0].chain[i], &f->req), PT_FILTER_CONTINUE);
    assert_string_equal(hdr(&f->req.headers, "x-tag"), "from-plugin");
    assert_string_equal(hdr(&f->req.headers, "x-global"), "yes");
    fake_free(f);
    pt_config_unref(c);

    /* the plugin's own field table is enforced */
    char *buf = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&buf, &len);
    assert_null(load_plugin_config(PT_TEST_PLUGIN_TAG, "tag: { valeu: x }", errs));
    fclose(errs);
    assert_non_null(strstr(buf, "p.yaml:5:12: unknown key 'valeu' (did you mean 'value'?)\n"));
    assert_non_null(strstr(buf, "p.yaml:5:10: missing required key 'value'\n"));
    free(buf);
}

static void expect_plugin_error(const char *so, const char *want)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&buf, &len);
    pt_config_t *c = load_plugin_config(so, "headers: { request: { remove: [x] } }", errs);
    fclose(errs);
    if (c != NULL) {
        pt_config_unref(c);
        fail_msg("plugin %s loaded", so);
    }
    if (strstr(buf, want) == NULL)
        fail_msg("want %s\ngot %s", want, buf);
    free(buf);
}

static void test_plugin_errors(void **state)
{
    (void)state;
    char want[1024];
    snprintf(want, sizeof(want),
             "p.yaml:2:20: plugin %s: ABI version mismatch (rebuild the plugin against this "
             "Portico's SDK)\n",
             PT_TEST_PLUGIN_BAD_ABI);
    expect_plugin_error(PT_TEST_PLUGIN_BAD_ABI, want);
    snprintf(want, sizeof(want),
             "p.yaml:2:20: plugin %s does not export the symbol 'pt_filter_def'\n",
             PT_TEST_PLUGIN_NO_SYMBOL);
    expect_plugin_error(PT_TEST_PLUGIN_NO_SYMBOL, want);
    snprintf(want, sizeof(want),
             "p.yaml:2:20: plugin %s: a filter named 'headers' already exists\n",
             PT_TEST_PLUGIN_CLASH);
    expect_plugin_error(PT_TEST_PLUGIN_CLASH, want);
    expect_plugin_error("/nonexistent/plugin.so",
                        "p.yaml:2:20: cannot load plugin: /nonexistent/plugin.so: cannot open "
                        "shared object file: No such file or directory\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_request),
        cmocka_unit_test(test_headers_response),
        cmocka_unit_test(test_headers_no_injection),
        cmocka_unit_test(test_headers_arena_limit),
        cmocka_unit_test(test_rewrite_prefix),
        cmocka_unit_test(test_rewrite_default_replace),
        cmocka_unit_test(test_rewrite_regex),
        cmocka_unit_test(test_rewrite_regex_backtracking),
        cmocka_unit_test(test_rewrite_conf_errors),
        cmocka_unit_test(test_builtin_registry),
        cmocka_unit_test(test_plugin_loads),
        cmocka_unit_test(test_plugin_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
