/*
 * test_pathtmpl.c -- google.api.http path templates: parsing, precedence,
 * verbs, percent-decoding and path hygiene (SECURITY-CASES JP-5 / AU-12).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/transcoder/pathtmpl.h"

/* ---- helpers ------------------------------------------------------------ */

static pt_pathtmpl_t *parse_ok(const char *s)
{
    pt_pathtmpl_t *t = NULL;
    pt_xerr_t err;
    int rc = pt_pathtmpl_parse(NULL, s, strlen(s), &t, &err);
    if (rc != 0)
        fail_msg("parse(%s) failed: %s", s, err.msg);
    return t;
}

/* Expects a parse error whose message starts with "column <col>:" and contains `what`. */
static void parse_bad(const char *s, size_t col, const char *what)
{
    pt_pathtmpl_t *t = NULL;
    pt_xerr_t err;
    int rc = pt_pathtmpl_parse(NULL, s, strlen(s), &t, &err);
    if (rc == 0)
        fail_msg("parse(%s) unexpectedly succeeded", s);
    assert_int_equal(rc, PT_XERR_INVALID);
    assert_null(t);
    char want[32];
    snprintf(want, sizeof(want), "column %zu:", col);
    if (strncmp(err.msg, want, strlen(want)) != 0 || strstr(err.msg, what) == NULL)
        fail_msg("parse(%s): got '%s', want '%s ... %s'", s, err.msg, want, what);
}

typedef struct routes {
    pt_pathmatcher_t *m;
    pt_pathtmpl_t *t[64];
    size_t n;
} routes_t;

static void routes_add(routes_t *r, const char *method, const char *tmpl)
{
    r->t[r->n] = parse_ok(tmpl);
    pt_xerr_t err;
    int rc = pt_pathmatcher_add(r->m, method, r->t[r->n], (void *)tmpl, &err);
    if (rc != 0)
        fail_msg("add(%s %s): %s", method, tmpl, err.msg);
    r->n++;
}

static void routes_free(routes_t *r)
{
    pt_pathmatcher_free(r->m);
    for (size_t i = 0; i < r->n; i++)
        pt_pathtmpl_free(r->t[i]);
}

static char scratch[8192];

static pt_pathmatch_status_t do_match(routes_t *r, const char *method, const char *path,
                                      const pt_pathmatch_opts_t *o, pt_pathmatch_t *res)
{
    return pt_pathmatcher_match(r->m, method, strlen(method), path, strlen(path), o, scratch,
                                sizeof(scratch), res);
}

/* Expects `method path` to match the template text `tmpl`. */
static pt_pathmatch_t expect(routes_t *r, const char *method, const char *path, const char *tmpl)
{
    pt_pathmatch_t res;
    pt_pathmatch_status_t st = do_match(r, method, path, NULL, &res);
    if (st != PT_PATHMATCH_OK)
        fail_msg("%s %s: %s (%s), want %s", method, path, pt_pathmatch_status_name(st),
                 res.reason ? res.reason : "", tmpl);
    if (strcmp((const char *)res.route, tmpl) != 0)
        fail_msg("%s %s matched %s, want %s", method, path, (const char *)res.route, tmpl);
    return res;
}

static const char *var(const pt_pathmatch_t *res, const char *field)
{
    for (size_t i = 0; i < res->var_cnt; i++)
        if (strcmp(res->vars[i].field_path, field) == 0)
            return res->vars[i].value;
    fail_msg("no variable %s", field);
    return NULL;
}

static void setup_routes(routes_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(pt_pathmatcher_new(NULL, &r->m), 0);
}

/* ---- parsing ------------------------------------------------------------ */

static void test_parse_valid(void **state)
{
    (void)state;
    pt_pathtmpl_t *t = parse_ok("/v1/shelves/{shelf}/books/{book.id}");
    assert_int_equal(pt_pathtmpl_seg_cnt(t), 5);
    assert_int_equal(pt_pathtmpl_var_cnt(t), 2);
    assert_string_equal(pt_pathtmpl_var(t, 0)->field_path, "shelf");
    assert_int_equal(pt_pathtmpl_var(t, 0)->first_seg, 2);
    assert_int_equal(pt_pathtmpl_var(t, 0)->end_seg, 3);
    assert_false(pt_pathtmpl_var(t, 0)->is_multi);
    assert_string_equal(pt_pathtmpl_var(t, 1)->field_path, "book.id");
    assert_int_equal(pt_pathtmpl_seg(t, 1)->kind, PT_PATHSEG_LITERAL);
    assert_string_equal(pt_pathtmpl_seg(t, 1)->lit, "shelves");
    assert_null(pt_pathtmpl_verb(t));
    assert_string_equal(pt_pathtmpl_text(t), "/v1/shelves/{shelf}/books/{book.id}");
    pt_pathtmpl_free(t);

    t = parse_ok("/v1/{name=shelves/*/books/*}:cancel");
    assert_int_equal(pt_pathtmpl_seg_cnt(t), 5);
    assert_true(pt_pathtmpl_var(t, 0)->is_multi);
    assert_int_equal(pt_pathtmpl_var(t, 0)->first_seg, 1);
    assert_int_equal(pt_pathtmpl_var(t, 0)->end_seg, 5);
    assert_string_equal(pt_pathtmpl_verb(t), "cancel");
    pt_pathtmpl_free(t);

    t = parse_ok("/v1/{name=**}");
    assert_int_equal(pt_pathtmpl_seg(t, 1)->kind, PT_PATHSEG_DSTAR);
    assert_true(pt_pathtmpl_var(t, 0)->is_multi);
    pt_pathtmpl_free(t);

    t = parse_ok("/a/*/**:v");
    assert_int_equal(pt_pathtmpl_seg(t, 1)->kind, PT_PATHSEG_STAR);
    assert_int_equal(pt_pathtmpl_seg(t, 2)->kind, PT_PATHSEG_DSTAR);
    assert_string_equal(pt_pathtmpl_verb(t), "v");
    pt_pathtmpl_free(t);

    t = parse_ok("/");
    assert_int_equal(pt_pathtmpl_seg_cnt(t), 0);
    pt_pathtmpl_free(t);

    /* literal normalization: %61 is 'a', other escapes upper-cased */
    t = parse_ok("/%61pi/x%2fy/pkg.Svc/Method");
    assert_string_equal(pt_pathtmpl_seg(t, 0)->lit, "api");
    assert_string_equal(pt_pathtmpl_seg(t, 1)->lit, "x%2Fy");
    assert_string_equal(pt_pathtmpl_seg(t, 2)->lit, "pkg.Svc");
    pt_pathtmpl_free(t);

    /* {x=lit} is single-segment */
    t = parse_ok("/v1/{x=abc}");
    assert_false(pt_pathtmpl_var(t, 0)->is_multi);
    pt_pathtmpl_free(t);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_bad("", 1, "must start with '/'");
    parse_bad("v1/x", 1, "must start with '/'");
    parse_bad("/v1//x", 5, "empty segment");
    parse_bad("/v1/", 5, "empty segment");
    parse_bad("/v1/{", 6, "expected a field name");
    parse_bad("/v1/{a", 7, "expected '=' or '}'");
    parse_bad("/v1/{a=b", 9, "unterminated variable");
    parse_bad("/v1/{a=b/{c}}", 10, "variables cannot be nested");
    parse_bad("/v1/**/x", 8, "'**' must be the last segment");
    parse_bad("/v1/{a=**}/x", 12, "'**' must be the last segment");
    parse_bad("/v1/{a}/{a}", 10, "field bound twice");
    parse_bad("/v1/a*b", 6, "invalid character");
    parse_bad("/v1/*b", 5, "must be whole segments");
    parse_bad("/v1/x:", 7, "empty verb");
    parse_bad("/v1/x:a/b", 8, "':' is only allowed before the final verb");
    parse_bad("/v1/{1a}", 6, "expected a field name");
    parse_bad("/v1/{a.}", 8, "expected a field name");
    parse_bad("/v1/..", 5, "'.' and '..' segments");
    parse_bad("/v1/%2e", 5, "'.' and '..' segments");
    parse_bad("/v1/%zz", 5, "malformed percent-escape");
    parse_bad("/v1/%4", 5, "malformed percent-escape");
    parse_bad("/v1/x}", 6, "unbalanced '}'");
    parse_bad("/v1/{a=}", 8, "empty segment");
    parse_bad("/v1/x y", 6, "invalid character");
    parse_bad("/v1/{a}}", 8, "unbalanced");

    /* limits */
    char big[PT_PATHTMPL_MAX_LEN + 2];
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    pt_pathtmpl_t *t = NULL;
    pt_xerr_t err;
    assert_int_equal(pt_pathtmpl_parse(NULL, big, sizeof(big), &t, &err), PT_XERR_LIMIT);
    char many[2 * (PT_PATHTMPL_MAX_SEGMENTS + 1) + 1];
    for (size_t i = 0; i < PT_PATHTMPL_MAX_SEGMENTS + 1; i++) {
        many[2 * i] = '/';
        many[2 * i + 1] = 'a';
    }
    assert_int_equal(pt_pathtmpl_parse(NULL, many, 2 * (PT_PATHTMPL_MAX_SEGMENTS + 1), &t, &err),
                     PT_XERR_LIMIT);
    assert_int_equal(pt_pathtmpl_parse(NULL, many, 2 * PT_PATHTMPL_MAX_SEGMENTS, &t, &err), 0);
    pt_pathtmpl_free(t);
}

/* ---- matching ----------------------------------------------------------- */

static void test_precedence(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "GET", "/v1/{name=**}");
    routes_add(&r, "GET", "/v1/shelves/{id}");
    routes_add(&r, "GET", "/v1/shelves/default");
    routes_add(&r, "GET", "/v1/shelves/{shelf}/books/{book}");
    routes_add(&r, "POST", "/v1/shelves/special");
    routes_add(&r, "GET", "/v1/*/books");

    expect(&r, "GET", "/v1/shelves/default", "/v1/shelves/default");
    pt_pathmatch_t m = expect(&r, "GET", "/v1/shelves/42", "/v1/shelves/{id}");
    assert_string_equal(var(&m, "id"), "42");
    m = expect(&r, "GET", "/v1/shelves/7/books/9", "/v1/shelves/{shelf}/books/{book}");
    assert_string_equal(var(&m, "shelf"), "7");
    assert_string_equal(var(&m, "book"), "9");
    /* the literal edge "shelves" dead-ends, so `*` then `**` are tried */
    m = expect(&r, "GET", "/v1/a/b/c", "/v1/{name=**}");
    assert_string_equal(var(&m, "name"), "a/b/c");
    expect(&r, "GET", "/v1/x/books", "/v1/*/books");
    /* the literal matches only for POST: GET falls back to the `*` template */
    expect(&r, "GET", "/v1/shelves/special", "/v1/shelves/{id}");
    expect(&r, "POST", "/v1/shelves/special", "/v1/shelves/special");
    /* `**` matches zero segments */
    m = expect(&r, "GET", "/v1", "/v1/{name=**}");
    assert_string_equal(var(&m, "name"), "");
    routes_free(&r);
}

static void test_not_found_and_405(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "GET", "/v1/books/{id}");
    routes_add(&r, "DELETE", "/v1/books/{id}");
    routes_add(&r, "PATCH", "/v1/books/{book.id}:publish");

    pt_pathmatch_t res;
    assert_int_equal(do_match(&r, "GET", "/v2/books/1", NULL, &res), PT_PATHMATCH_NOT_FOUND);
    assert_int_equal(do_match(&r, "GET", "/v1/books", NULL, &res), PT_PATHMATCH_NOT_FOUND);
    assert_int_equal(do_match(&r, "GET", "/v1/books/1/x", NULL, &res), PT_PATHMATCH_NOT_FOUND);
    assert_int_equal(do_match(&r, "POST", "/v1/books/1", NULL, &res), PT_PATHMATCH_METHOD);
    assert_int_equal(res.allowed, PT_HTTP_M_GET | PT_HTTP_M_DELETE);
    assert_null(res.route);
    assert_int_equal(do_match(&r, "GET", "/v1/books/1:publish", NULL, &res), PT_PATHMATCH_OK);
    /* verb fallback: ':publish' does not match a GET, so "1:publish" is the id */
    assert_string_equal(var(&res, "id"), "1:publish");
    pt_pathmatch_t m = expect(&r, "PATCH", "/v1/books/12:publish", "/v1/books/{book.id}:publish");
    assert_string_equal(var(&m, "book.id"), "12");
    assert_int_equal(do_match(&r, "POST", "/v1/books/12:publish", NULL, &res), PT_PATHMATCH_METHOD);
    assert_true(res.allowed & PT_HTTP_M_PATCH);
    /* methods are case-sensitive */
    assert_int_equal(do_match(&r, "get", "/v1/books/1", NULL, &res), PT_PATHMATCH_METHOD);
    routes_free(&r);
}

static void test_verbs_and_custom(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "POST", "/v1/{name=messages/*}:cancel");
    routes_add(&r, "POST", "/v1/things:batchGet");
    routes_add(&r, "GET", "/v1/things/{id}");
    routes_add(&r, "*", "/any/{x}");
    routes_add(&r, "GET", "/any/special");
    routes_add(&r, "HEAD", "/h");
    routes_add(&r, "GET", "/v1/{name=files/**}:download");

    pt_pathmatch_t m = expect(&r, "POST", "/v1/messages/m1:cancel", "/v1/{name=messages/*}:cancel");
    assert_string_equal(var(&m, "name"), "messages/m1");
    expect(&r, "POST", "/v1/things:batchGet", "/v1/things:batchGet");
    m = expect(&r, "GET", "/v1/things/a:b", "/v1/things/{id}");
    assert_string_equal(var(&m, "id"), "a:b");
    m = expect(&r, "PURGE", "/any/1", "/any/{x}");
    m = expect(&r, "GET", "/any/special", "/any/special");
    expect(&r, "POST", "/any/special", "/any/{x}");
    expect(&r, "HEAD", "/h", "/h");
    m = expect(&r, "GET", "/v1/files/a/b.txt:download", "/v1/{name=files/**}:download");
    assert_string_equal(var(&m, "name"), "files/a/b.txt");

    pt_pathmatch_t res;
    /* a verb-only last segment or an empty verb is not a verb */
    assert_int_equal(do_match(&r, "POST", "/v1/messages/m1:", NULL, &res), PT_PATHMATCH_NOT_FOUND);
    /* an encoded ':' is not a verb separator */
    m = expect(&r, "GET", "/v1/things/a%3Acancel", "/v1/things/{id}");
    assert_string_equal(var(&m, "id"), "a:cancel");
    routes_free(&r);
}

static void test_conflicts(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "GET", "/v1/{a}");
    routes_add(&r, "POST", "/v1/{a}");
    routes_add(&r, "GET", "/v1/{a}:x");
    pt_pathtmpl_t *t = parse_ok("/v1/{b}");
    pt_xerr_t err;
    assert_int_equal(pt_pathmatcher_add(r.m, "GET", t, "dup", &err), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "conflicts with GET /v1/{a}"));
    pt_pathtmpl_t *t2 = parse_ok("/v1/{c=**}");
    assert_int_equal(pt_pathmatcher_add(r.m, "GET", t2, "ok", &err), 0);
    assert_int_equal(pt_pathmatcher_route_cnt(r.m), 4);
    routes_free(&r);
    pt_pathtmpl_free(t);
    pt_pathtmpl_free(t2);
}

/* ---- decoding and path hygiene ----------------------------------------- */

static void test_decoding(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "GET", "/v1/users/{id}");
    routes_add(&r, "GET", "/v1/{name=objects/**}");
    routes_add(&r, "GET", "/admin/panel");

    pt_pathmatch_t m = expect(&r, "GET", "/v1/users/a%20b%C3%A9", "/v1/users/{id}");
    assert_string_equal(var(&m, "id"), "a b\xc3\xa9");
    m = expect(&r, "GET", "/v1/users/%2B%3f%40", "/v1/users/{id}");
    assert_string_equal(var(&m, "id"), "+?@");
    /* multi-segment: "%2F" stays encoded, everything else is decoded */
    m = expect(&r, "GET", "/v1/objects/a%2fb/c%20d", "/v1/{name=objects/**}");
    assert_string_equal(var(&m, "name"), "objects/a%2Fb/c d");
    /* unreserved escapes normalize for literal matching (AU-12 /%61dmin) */
    expect(&r, "GET", "/%61dmin/panel", "/admin/panel");
    /* NUL bytes survive with an explicit length */
    m = expect(&r, "GET", "/v1/users/a%00b", "/v1/users/{id}");
    assert_int_equal(m.vars[0].value_len, 3);
    assert_memory_equal(m.vars[0].value, "a\0b", 3);
    /* the query string and fragment are ignored */
    m = expect(&r, "GET", "/v1/users/7?x=/../..", "/v1/users/{id}");
    assert_string_equal(var(&m, "id"), "7");

    pt_pathmatch_t res;
    /* single-segment variables refuse an encoded '/' by default (JP-5) */
    assert_int_equal(do_match(&r, "GET", "/v1/users/a%2Fb", NULL, &res), PT_PATHMATCH_BAD_PATH);
    assert_non_null(strstr(res.reason, "%2F"));
    assert_int_equal(do_match(&r, "GET", "/v1/users/a%2fb", NULL, &res), PT_PATHMATCH_BAD_PATH);
    pt_pathmatch_opts_t o = {.allow_encoded_slash = true};
    assert_int_equal(do_match(&r, "GET", "/v1/users/a%2fb", &o, &res), PT_PATHMATCH_OK);
    assert_string_equal(res.vars[0].value, "a/b");
    /* a raw '/' is a separator: {id} cannot take "a/b" */
    assert_int_equal(do_match(&r, "GET", "/v1/users/a/b", NULL, &res), PT_PATHMATCH_NOT_FOUND);
    routes_free(&r);
}

static void test_bad_paths(void **state)
{
    (void)state;
    routes_t r;
    setup_routes(&r);
    routes_add(&r, "GET", "/v1/users/{id}");
    routes_add(&r, "GET", "/v1/{name=**}");
    static const char *bad[] = {
        "/v1/users/..",
        "/v1/users/.",
        "/v1/users/%2e%2E",
        "/v1/./users/1",
        "/public/..%2fadmin/x/..",
        "//v1/users/1",
        "/v1/users/",
        "/v1//users",
        "/v1/users/%",
        "/v1/users/%4",
        "/v1/users/%g0",
        "v1/users/1",
        "",
        "/v1/users/a\x01",
        "/v1/users/a\x7f",
        "/v1/%2E/x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_pathmatch_t res;
        pt_pathmatch_status_t st = do_match(&r, "GET", bad[i], NULL, &res);
        if (st != PT_PATHMATCH_BAD_PATH)
            fail_msg("path '%s': %s, want BAD_PATH", bad[i], pt_pathmatch_status_name(st));
        assert_non_null(res.reason);
        assert_null(res.route);
    }
    /* "..%2f" inside a multi-segment value is not a dot segment; it stays encoded */
    pt_pathmatch_t m = expect(&r, "GET", "/v1/..%2fadmin", "/v1/{name=**}");
    assert_string_equal(var(&m, "name"), "..%2Fadmin");

    /* too many segments */
    static char longp[2 * (PT_PATHMATCH_MAX_SEGMENTS + 1) + 1];
    for (size_t i = 0; i < PT_PATHMATCH_MAX_SEGMENTS + 1; i++) {
        longp[2 * i] = '/';
        longp[2 * i + 1] = 'x';
    }
    pt_pathmatch_t res;
    assert_int_equal(do_match(&r, "GET", longp, NULL, &res), PT_PATHMATCH_LIMIT);
    longp[2 * PT_PATHMATCH_MAX_SEGMENTS] = '\0';
    assert_int_equal(do_match(&r, "GET", longp, NULL, &res), PT_PATHMATCH_NOT_FOUND);
    memcpy(longp, "/v1", 3); /* "/v1/x/x/..." (255 segments after v1) */
    memmove(longp + 3, longp + 4, 2 * PT_PATHMATCH_MAX_SEGMENTS - 3);
    assert_int_equal(do_match(&r, "GET", longp, NULL, &res), PT_PATHMATCH_OK);
    assert_int_equal(res.vars[0].value_len, 2 * PT_PATHMATCH_MAX_SEGMENTS - 5);
    /* scratch too small */
    char tiny[4];
    assert_int_equal(
        pt_pathmatcher_match(r.m, "GET", 3, "/v1/users/1", 11, NULL, tiny, sizeof(tiny), &res),
        PT_PATHMATCH_LIMIT);
    routes_free(&r);
}

static void test_root_and_many(void **state)
{
    (void)state;
    pt_pathmatcher_t *m;
    assert_int_equal(pt_pathmatcher_new(NULL, &m), 0);
    enum { N = 500 };
    pt_pathtmpl_t *ts[N + 1];
    char names[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "/api/v%d/res%d/{id}/sub%d", i % 7, i, i % 3);
        ts[i] = parse_ok(names[i]);
        pt_xerr_t err;
        assert_int_equal(pt_pathmatcher_add(m, i % 2 ? "GET" : "POST", ts[i], names[i], &err), 0);
    }
    ts[N] = parse_ok("/");
    assert_int_equal(pt_pathmatcher_add(m, "GET", ts[N], "root", NULL), 0);
    for (int i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v%d/res%d/x%d/sub%d", i % 7, i, i, i % 3);
        pt_pathmatch_t res;
        assert_int_equal(pt_pathmatcher_match(m, i % 2 ? "GET" : "POST", i % 2 ? 3 : 4, path,
                                              strlen(path), NULL, scratch, sizeof(scratch), &res),
                         PT_PATHMATCH_OK);
        assert_ptr_equal(res.route, names[i]);
        char want[16];
        snprintf(want, sizeof(want), "x%d", i);
        assert_string_equal(res.vars[0].value, want);
    }
    pt_pathmatch_t res;
    assert_int_equal(
        pt_pathmatcher_match(m, "GET", 3, "/", 1, NULL, scratch, sizeof(scratch), &res),
        PT_PATHMATCH_OK);
    assert_string_equal((const char *)res.route, "root");
    pt_pathmatcher_free(m);
    for (int i = 0; i <= N; i++)
        pt_pathtmpl_free(ts[i]);
}

/* ---- allocation failures ------------------------------------------------ */

typedef struct failalloc {
    long countdown; /* fail when it reaches 0; negative = never */
    long live;
} failalloc_t;

static void *fa_alloc(void *ud, size_t n)
{
    failalloc_t *f = ud;
    if (f->countdown == 0)
        return NULL;
    if (f->countdown > 0)
        f->countdown--;
    void *p = malloc(n);
    if (p)
        f->live++;
    return p;
}

static void *fa_realloc(void *ud, void *p, size_t n)
{
    failalloc_t *f = ud;
    if (f->countdown == 0)
        return NULL;
    if (f->countdown > 0)
        f->countdown--;
    void *q = realloc(p, n);
    if (q && !p)
        f->live++;
    return q;
}

static void fa_free(void *ud, void *p)
{
    failalloc_t *f = ud;
    if (p)
        f->live--;
    free(p);
}

static void test_nomem(void **state)
{
    (void)state;
    static const char *tmpls[] = {"/v1/a/{x}",    "/v1/b/{x}", "/v1/c/{x}",
                                  "/v1/d/{y=**}", "/v1/e/f",   "/v1/*/g"};
    size_t nt = sizeof(tmpls) / sizeof(tmpls[0]);
    bool completed = false;
    for (long fail_at = 0; !completed && fail_at < 200; fail_at++) {
        failalloc_t f = {.countdown = fail_at, .live = 0};
        pt_allocator_t a = {fa_alloc, fa_realloc, fa_free, &f};
        pt_pathmatcher_t *m = NULL;
        pt_pathtmpl_t *ts[8] = {0};
        int rc = pt_pathmatcher_new(&a, &m);
        for (size_t i = 0; rc == 0 && i < nt; i++) {
            rc = pt_pathtmpl_parse(&a, tmpls[i], strlen(tmpls[i]), &ts[i], NULL);
            if (rc == 0)
                rc = pt_pathmatcher_add(m, "GET", ts[i], (void *)tmpls[i], NULL);
        }
        if (rc == 0) {
            completed = true;
            pt_pathmatch_t res;
            assert_int_equal(pt_pathmatcher_match(m, "GET", 3, "/v1/d/x/y", 9, NULL, scratch,
                                                  sizeof(scratch), &res),
                             PT_PATHMATCH_OK);
        } else {
            assert_int_equal(rc, PT_XERR_NOMEM);
            /* a matcher that failed an add still answers lookups */
            if (m != NULL) {
                pt_pathmatch_t res;
                (void)pt_pathmatcher_match(m, "GET", 3, "/v1/e/f", 7, NULL, scratch,
                                           sizeof(scratch), &res);
            }
        }
        pt_pathmatcher_free(m);
        for (size_t i = 0; i < nt; i++)
            pt_pathtmpl_free(ts[i]);
        assert_int_equal(f.live, 0);
    }
    assert_true(completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),      cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_precedence),       cmocka_unit_test(test_not_found_and_405),
        cmocka_unit_test(test_verbs_and_custom), cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_decoding),         cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_root_and_many),    cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
