/*
 * test_filters.c -- the built-in headers and rewrite filters, the filter
 * registry and the .so loader.
 *
 * Filter behaviour is tested through the loopback seam (loopback.h): a
 * request built from literals goes through the router, the filters under
 * test and then test_chain's `reflect` mode (test/support/plugin_chain.c),
 * which answers with the request as the filters left it:
 * "METHOD path?query authority\n" then one "name: value\n" line per header.
 * Response-side filters decorate the respond handler's answer. Config errors
 * and the registry are checked directly on the config loader.
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
#include "core/filter_registry.h"
#include "loopback.h"
#include "portico/status.h"

/* ---- running filters through the loopback seam ------------------------------------ */

/*
 * Runs one request through a route `match` whose filters are `filters_yaml`
 * followed by the reflecting test filter (or, with `handler` set, answered by
 * that handler instead). `globals` are global filters (may be NULL).
 */
static void run(const char *globals, const char *match, const char *filters_yaml,
                const char *handler, const char *method, const char *target,
                const char *const *headers, pt_lb_resp_t *out)
{
    size_t cap = 16384 + strlen(filters_yaml);
    char *text = malloc(cap);
    snprintf(text, cap,
             "listeners: [ { address: 127.0.0.1:8080 } ]\n"
             "plugins: [ { path: \"%s\" }, { path: \"%s\" } ]\n"
             "%s"
             "routes:\n"
             "  - match: %s\n"
             "    %s\n"
             "    filters:\n%s%s",
             PT_TEST_PLUGIN_CHAIN, PT_TEST_PLUGIN_TAG, globals != NULL ? globals : "", match,
             handler != NULL ? handler : "respond: { status: 500, body: \"not reflected\" }",
             filters_yaml, handler != NULL ? "" : "      - test_chain: { mode: reflect }\n");
    pt_lb_t lb;
    pt_lb_init(&lb, text);
    free(text);
    assert_int_equal(pt_lb_run(&lb, method, target, headers, NULL, 0, out), 0);
    pt_lb_dispose(&lb);
}

/* The reflected request line ("GET /p?q host"), in a static buffer. */
static const char *line_of(const pt_lb_resp_t *r)
{
    static char buf[512];
    assert_non_null(r->body);
    snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(r->body, "\n"), r->body);
    return buf;
}

/* The value of the `nth` reflected request header `name` (0 = first), or NULL. */
static const char *hdr_n(const pt_lb_resp_t *r, const char *name, int nth)
{
    static char buf[512];
    assert_non_null(r->body);
    const char *p = strchr(r->body, '\n');
    size_t nlen = strlen(name);
    while (p != NULL && p[1] != '\0') {
        p++;
        const char *e = strchr(p, '\n');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len > nlen + 1 && strncmp(p, name, nlen) == 0 && p[nlen] == ':' && nth-- == 0) {
            snprintf(buf, sizeof(buf), "%.*s", (int)(len - nlen - 2), p + nlen + 2);
            return buf;
        }
        p = e;
    }
    return NULL;
}

static const char *hdr(const pt_lb_resp_t *r, const char *name) { return hdr_n(r, name, 0); }

static int hdr_count(const pt_lb_resp_t *r, const char *name)
{
    int n = 0;
    while (hdr_n(r, name, n) != NULL)
        n++;
    return n;
}

#define USERS "{ template: \"/users/{id}/{rest=**}\" }"
#define ANY "{ prefix: / }"

/* ---- headers ------------------------------------------------------------------------ */

static void test_headers_request(void **state)
{
    (void)state;
    const char *h[] = {"host", "api.example.com", "x-request-id", "req-123",
                       "x-internal", "secret", "x-internal", "secret2", "x-old", "v-old",
                       "x-env", "dev", "x-multi", "one", "x-user", "alice", NULL};
    pt_lb_resp_t r;
    run(NULL, USERS,
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
        "            add: { x-multi: two }\n",
        NULL, "GET", "/users/42/x?a=1", h, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(line_of(&r), "GET /users/42/x?a=1 api.example.com");
    assert_null(hdr(&r, "x-internal"));
    assert_null(hdr(&r, "x-old"));
    assert_string_equal(hdr(&r, "x-new"), "v-old");
    assert_string_equal(hdr(&r, "x-env"), "prod");
    assert_int_equal(hdr_count(&r, "x-env"), 1);
    assert_string_equal(hdr(&r, "x-client"), "127.0.0.1");
    assert_string_equal(hdr(&r, "x-info"), "GET http://api.example.com/users/42/x?a=1 id=req-123");
    assert_string_equal(hdr(&r, "x-param"), "user-42-");
    assert_string_equal(hdr(&r, "x-copy"), "[alice]");
    assert_string_equal(hdr(&r, "x-dollar"), "$5 and $x");
    assert_int_equal(hdr_count(&r, "x-multi"), 2);
    assert_string_equal(hdr_n(&r, "x-multi", 1), "two");
    /* the response side was not configured: nothing of the request side leaks into it */
    assert_null(pt_lb_header(&r, "x-env"));
    assert_null(pt_lb_header(&r, "x-multi"));
    pt_lb_resp_free(&r);
}

static void test_headers_response(void **state)
{
    (void)state;
    const char *h[] = {"x-request-id", "req-123", NULL};
    pt_lb_resp_t r;
    run(NULL, USERS,
        "      - headers:\n"
        "          response:\n"
        "            add: { x-served-by: portico, x-id: \"${request_id}\" }\n"
        "            remove: [ server ]\n"
        "            rename: { x-powered-by: x-upstream-powered-by }\n",
        "respond: { status: 200, body: ok, headers: { server: nginx, x-powered-by: php } }",
        "GET", "/users/1/", h, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    assert_null(pt_lb_header(&r, "server"));
    assert_null(pt_lb_header(&r, "x-powered-by"));
    assert_string_equal(pt_lb_header(&r, "x-upstream-powered-by"), "php");
    assert_string_equal(pt_lb_header(&r, "x-served-by"), "portico");
    assert_string_equal(pt_lb_header(&r, "x-id"), "req-123");
    pt_lb_resp_free(&r);
}

static void test_headers_no_injection(void **state)
{
    (void)state;
    /* a value with CR/LF (the codecs refuse these; a variable must not smuggle them anyway) */
    const char *h[] = {"x-user", "a\r\nx-evil: 1", NULL};
    pt_lb_resp_t r;
    run(NULL, USERS,
        "      - headers:\n"
        "          request: { set: { x-copy: \"${header.x-user}\", x-ok: ok } }\n",
        NULL, "GET", "/users/1/a", h, &r);
    assert_int_equal(r.status, 200);
    assert_null(hdr(&r, "x-copy"));
    assert_string_equal(hdr(&r, "x-ok"), "ok");
    pt_lb_resp_free(&r);
}

static void test_headers_arena_limit(void **state)
{
    (void)state;
    /* five copies of a 4 MiB header exceed the request's 16 MiB memory: 413, not an OOM */
    size_t n = 4u << 20;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    const char *h[] = {"x-big", big, NULL};
    pt_lb_resp_t r;
    run(NULL, ANY,
        "      - headers:\n"
        "          request: { set: { x-a: \"${header.x-big}${header.x-big}${header.x-big}"
        "${header.x-big}${header.x-big}\" } }\n",
        NULL, "GET", "/", h, &r);
    free(big);
    assert_int_equal(r.status, 413);
    assert_int_equal(r.fail_status, PT_ERR_LIMIT);
    assert_null(strstr(r.body, "aaaa")); /* the reflecting filter never ran */
    pt_lb_resp_free(&r);
}

/* ---- rewrite ----------------------------------------------------------------------------- */

static void test_rewrite_prefix(void **state)
{
    (void)state;
    const char *three = "      - rewrite: { prefix: /users/, replace: /v2/people/ }\n"
                        "      - rewrite: { prefix: /v2 }\n"
                        "      - rewrite: { host: backend.internal }\n";
    const char *h[] = {"host", "public.example.com", NULL};
    pt_lb_resp_t r;
    run(NULL, ANY, three, NULL, "GET", "/users/42/books?a=1", h, &r);
    /* the path is rewritten twice, the host once, the query untouched */
    assert_string_equal(line_of(&r), "GET /people/42/books?a=1 backend.internal");
    pt_lb_resp_free(&r);

    /* not matching the prefix: unchanged */
    run(NULL, ANY, "      - rewrite: { prefix: /users/, replace: /v2/people/ }\n", NULL, "GET",
        "/other", h, &r);
    assert_string_equal(line_of(&r), "GET /other? public.example.com");
    pt_lb_resp_free(&r);
    /* stripping everything leaves "/" */
    run(NULL, ANY, "      - rewrite: { prefix: /v2 }\n", NULL, "GET", "/v2", h, &r);
    assert_string_equal(line_of(&r), "GET /? public.example.com");
    pt_lb_resp_free(&r);
}

static void test_rewrite_default_replace(void **state)
{
    (void)state;
    const char *h[] = {"host", "h", NULL};
    pt_lb_resp_t r;
    run(NULL, ANY, "      - rewrite: { prefix: /users/ }\n", NULL, "GET", "/users/42", h, &r);
    assert_string_equal(line_of(&r), "GET /42? h");
    pt_lb_resp_free(&r);
}

static void test_rewrite_regex(void **state)
{
    (void)state;
    const char *re = "      - rewrite: { regex: \"^/users/(\\\\d+)/(?<rest>.*)$\", "
                     "replace: \"/u/$1/${rest}/${1}$$\" }\n";
    const char *h[] = {"host", "h", NULL};
    pt_lb_resp_t r;
    run(NULL, ANY, re, NULL, "GET", "/users/42/books/7", h, &r);
    assert_string_equal(line_of(&r), "GET /u/42/books/7/42$? h");
    pt_lb_resp_free(&r);

    /* no match: unchanged */
    run(NULL, ANY, re, NULL, "GET", "/users/abc/books", h, &r);
    assert_string_equal(line_of(&r), "GET /users/abc/books? h");
    pt_lb_resp_free(&r);
    /* unanchored: only the matched part is replaced */
    run(NULL, ANY, "      - rewrite: { regex: \"/x/\", replace: /y/ }\n", NULL, "GET",
        "/a/x/b/x/c", h, &r);
    assert_string_equal(line_of(&r), "GET /a/y/b/x/c? h");
    pt_lb_resp_free(&r);
}

static void test_rewrite_regex_backtracking(void **state)
{
    (void)state;
    /*
     * A catastrophic pattern: the match limit stops it and the path stays as
     * it was. Without the limit this takes hours (2^40 steps); the ctest
     * TIMEOUT turns that into a failure, so no clock is read here.
     */
    char path[64];
    path[0] = '/';
    memset(path + 1, 'a', 40);
    path[41] = 'b';
    path[42] = '\0';
    const char *h[] = {"host", "h", NULL};
    pt_lb_resp_t r;
    run(NULL, ANY, "      - rewrite: { regex: \"^/(a+)+$\", replace: /bad }\n", NULL, "GET",
        path, h, &r);
    char want[128];
    snprintf(want, sizeof(want), "GET %s? h", path);
    assert_string_equal(line_of(&r), want);
    pt_lb_resp_free(&r);
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
    pt_config_unref(c);

    /* the global filters run before the route's (here the reflecting one) */
    pt_lb_resp_t r;
    run("filters:\n"
        "  - tag: { value: from-plugin }\n"
        "  - headers: { request: { set: { x-global: \"yes\" } } }\n",
        ANY, "", NULL, "GET", "/", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "x-tag"), "from-plugin");
    assert_string_equal(hdr(&r, "x-global"), "yes");
    pt_lb_resp_free(&r);

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
