/*
 * test_httprule.c -- google.api.http: HttpRule decoding from option bytes,
 * route table validation, matching (404/405), request binding of path
 * variables / query parameters / bodies (incl. HttpBody) with every problem
 * reported, and response_body / HttpBody responses.
 *
 * Schemas: test/proto/bookstore_http.proto (PT_HTTP_TEST_DESC) and
 * test/proto/bad_http.proto (PT_HTTP_BAD_DESC), compiled by protoc at build time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/transcoder/httprule.h"
#include "portico/transcoder/json.h"

/* ---- fixtures ----------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static pt_descpool_t *load_pool(const pt_allocator_t *a, const char *path)
{
    size_t len;
    uint8_t *data = read_file(path, &len);
    pt_descpool_t *p = NULL;
    pt_xerr_t err;
    assert_int_equal(pt_descpool_new(a, &p, &err), 0);
    if (pt_descpool_add_set(p, data, len, path, &err) != 0 || pt_descpool_build(p, &err) != 0)
        fail_msg("pool %s: %s", path, err.msg);
    free(data);
    return p;
}

typedef struct fx {
    pt_descpool_t *pool;
    pt_httprule_table_t *t;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    f->pool = load_pool(NULL, PT_HTTP_TEST_DESC);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    pt_httprule_opts_t o = {.add_default_bindings = true};
    int rc = pt_httprule_table_new(f->pool, &o, &f->t, &errs);
    if (rc != 0)
        fail_msg("table: %s: %s", errs.items[0].path, errs.items[0].msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    pt_httprule_table_free(f->t);
    pt_descpool_unref(f->pool);
    free(f);
    return 0;
}

static const pt_httpbinding_t *find_binding(const pt_httprule_table_t *t, const char *method,
                                            const char *path)
{
    for (size_t i = 0; i < pt_httprule_table_binding_cnt(t); i++) {
        const pt_httpbinding_t *b = pt_httprule_table_binding(t, i);
        if (strcmp(b->method->full_name, method) == 0 && strcmp(b->path, path) == 0)
            return b;
    }
    fail_msg("no binding %s %s", method, path);
    return NULL;
}

/* ---- decoding ----------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static size_t put_str(uint8_t *p, uint32_t num, const char *s)
{
    size_t n = put_varint(p, (uint64_t)num << 3 | 2);
    n += put_varint(p + n, strlen(s));
    memcpy(p + n, s, strlen(s));
    return n + strlen(s);
}

static size_t put_msg(uint8_t *p, uint32_t num, const uint8_t *m, size_t len)
{
    size_t n = put_varint(p, (uint64_t)num << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, m, len);
    return n + len;
}

static void test_decode(void **state)
{
    (void)state;
    uint8_t nested[64], custom[64], rule[256], opts[512];
    size_t nn = put_str(nested, 4, "/v1/alt"); /* post */
    nn += put_str(nested + nn, 7, "*");
    size_t cn = put_str(custom, 1, "PURGE");
    cn += put_str(custom + cn, 2, "/v1/c");
    uint8_t nested2[64];
    size_t n2 = put_msg(nested2, 8, custom, cn);        /* custom */
    size_t rn = put_str(rule, 1, "pkg.Svc.M");          /* selector: ignored */
    rn += put_str(rule + rn, 2, "/v1/{name=things/*}"); /* get */
    rn += put_str(rule + rn, 12, "result");
    rn += put_msg(rule + rn, 11, nested, nn);
    rn += put_msg(rule + rn, 11, nested2, n2);
    size_t on = 0;
    opts[on++] = 0x88; /* deprecated = true (field 33, varint) */
    opts[on++] = 0x02;
    opts[on++] = 0x01;
    on += put_msg(opts + on, PT_HTTPRULE_EXTENSION, rule, rn);
    opts[on++] = 0xf8; /* an unknown field 999 varint */
    opts[on++] = 0x3e;
    opts[on++] = 0x05;

    pt_httprule_pattern_t p[8];
    size_t cnt = 0;
    pt_xerr_t err;
    assert_int_equal(pt_httprule_decode(opts, on, p, 8, &cnt, &err), 0);
    assert_int_equal(cnt, 3);
    assert_int_equal(p[0].method.len, 3);
    assert_memory_equal(p[0].method.p, "GET", 3);
    assert_int_equal(p[0].path.len, strlen("/v1/{name=things/*}"));
    assert_int_equal(p[0].response_body.len, 6);
    assert_int_equal(p[0].body.len, 0);
    assert_int_equal(p[0].level, 0);
    assert_memory_equal(p[1].method.p, "POST", 4);
    assert_memory_equal(p[1].body.p, "*", 1);
    assert_int_equal(p[1].level, 1);
    assert_memory_equal(p[2].method.p, "PURGE", 5);
    assert_memory_equal(p[2].path.p, "/v1/c", 5);

    /* no extension, no options */
    assert_int_equal(pt_httprule_decode(opts, 3, p, 8, &cnt, &err), 0);
    assert_int_equal(cnt, 0);
    assert_int_equal(pt_httprule_decode(NULL, 0, p, 8, &cnt, &err), 0);
    assert_int_equal(cnt, 0);

    /* too many bindings for the caller's array */
    assert_int_equal(pt_httprule_decode(opts, on, p, 2, &cnt, &err), PT_XERR_LIMIT);

    /* corrupt: truncated everywhere */
    for (size_t cut = 4; cut < on - 3; cut++) {
        int rc = pt_httprule_decode(opts, cut, p, 8, &cnt, &err);
        assert_true(rc == PT_XERR_CORRUPT || rc == 0);
    }
    assert_int_equal(pt_httprule_decode(opts, on - 4, p, 8, &cnt, &err), PT_XERR_CORRUPT);
    /* wrong wire type for the extension */
    uint8_t bad[8];
    size_t bn = put_varint(bad, (uint64_t)PT_HTTPRULE_EXTENSION << 3 | 0);
    bad[bn++] = 1;
    assert_int_equal(pt_httprule_decode(bad, bn, p, 8, &cnt, &err), PT_XERR_CORRUPT);

    /* nesting deeper than PT_HTTPRULE_MAX_NESTING */
    uint8_t lv[PT_HTTPRULE_MAX_NESTING + 2][128];
    size_t ln = put_str(lv[0], 2, "/deep");
    for (int i = 1; i <= PT_HTTPRULE_MAX_NESTING + 1; i++) {
        size_t k = put_str(lv[i], 2, "/x");
        k += put_msg(lv[i] + k, 11, lv[i - 1], ln);
        ln = k;
    }
    uint8_t deep[256];
    size_t dn = put_msg(deep, PT_HTTPRULE_EXTENSION, lv[PT_HTTPRULE_MAX_NESTING + 1], ln);
    assert_int_equal(pt_httprule_decode(deep, dn, p, 8, &cnt, &err), PT_XERR_LIMIT);
    dn = put_msg(deep, PT_HTTPRULE_EXTENSION, lv[PT_HTTPRULE_MAX_NESTING], ln - 0);
}

/* ---- table -------------------------------------------------------------- */

static void test_table(void **state)
{
    fx_t *f = *state;
    const pt_httprule_table_t *t = f->t;
    /* 15 annotated bindings + ListBooks' additional + 2 defaults (NoRule, Chat) + Admin.Reset */
    assert_int_equal(pt_httprule_table_binding_cnt(t), 17);
    const pt_httpbinding_t *b = find_binding(t, "pt.bookstore.Bookstore.ListBooks", "/v1/books");
    assert_int_equal(b->level, 1);
    assert_string_equal(b->http_method, "GET");
    assert_int_equal(b->body_kind, PT_HTTPBODY_NONE);
    b = find_binding(t, "pt.bookstore.Bookstore.CreateBook", "/v1/shelves/{shelf}/books");
    assert_int_equal(b->body_kind, PT_HTTPBODY_FIELD);
    assert_string_equal(b->body_field->name, "book");
    assert_false(b->request_is_httpbody);
    b = find_binding(t, "pt.bookstore.Bookstore.CreateShelf", "/v1/shelves");
    assert_int_equal(b->body_kind, PT_HTTPBODY_ALL);
    b = find_binding(t, "pt.bookstore.Bookstore.Upload", "/v1/files/{name=**}");
    assert_true(b->request_is_httpbody);
    b = find_binding(t, "pt.bookstore.Bookstore.Download", "/v1/files/{name=**}:download");
    assert_true(b->response_is_httpbody);
    b = find_binding(t, "pt.bookstore.Bookstore.ListTitles", "/v1/shelves/{shelf}/titles");
    assert_string_equal(b->response_field->name, "books");
    b = find_binding(t, "pt.bookstore.Bookstore.Purge", "/v1/{name=shelves/*}");
    assert_string_equal(b->http_method, "PURGE");
    b = find_binding(t, "pt.bookstore.Bookstore.NoRule", "/pt.bookstore.Bookstore/NoRule");
    assert_true(b->is_default);
    assert_int_equal(b->body_kind, PT_HTTPBODY_ALL);
    b = find_binding(t, "pt.bookstore.Bookstore.Chat", "/pt.bookstore.Bookstore/Chat");
    assert_true(b->method->client_streaming && b->method->server_streaming);
    assert_ptr_equal(pt_httprule_table_pool(t), f->pool);
    assert_null(pt_httprule_table_binding(t, 1000));
}

static void test_table_options(void **state)
{
    fx_t *f = *state;
    pt_httprule_table_t *t = NULL;
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    /* no default bindings */
    assert_int_equal(pt_httprule_table_new(f->pool, NULL, &t, &errs), 0);
    assert_int_equal(pt_httprule_table_binding_cnt(t), 15);
    pt_httprule_table_free(t);
    /* one service only */
    const char *svcs[] = {"pt.bookstore.Admin"};
    pt_httprule_opts_t o = {.services = svcs, .service_cnt = 1, .add_default_bindings = true};
    assert_int_equal(pt_httprule_table_new(f->pool, &o, &t, &errs), 0);
    assert_int_equal(pt_httprule_table_binding_cnt(t), 1);
    pt_httprule_table_free(t);
    /* unknown service */
    const char *nosvc[] = {"pt.bookstore.Nope"};
    o.services = nosvc;
    t = NULL;
    assert_int_equal(pt_httprule_table_new(f->pool, &o, &t, &errs), PT_XERR_NOT_FOUND);
    assert_null(t);
    assert_int_equal(errs.cnt, 1);
    assert_string_equal(errs.items[0].path, "pt.bookstore.Nope");
}

static void test_table_errors(void **state)
{
    (void)state;
    pt_descpool_t *pool = load_pool(NULL, PT_HTTP_BAD_DESC);
    pt_httprule_table_t *t = NULL;
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    assert_int_equal(pt_httprule_table_new(pool, NULL, &t, &errs), PT_XERR_INVALID);
    assert_null(t);
    static const struct {
        const char *path, *msg;
    } want[] = {
        {"pt.badhttp.Bad.BadTemplate",
         "GET /v1/{name=**}/x: column 15: '**' must be the last segment"},
        {"pt.badhttp.Bad.UnknownVar", "GET /v1/{nope}: path variable {nope}: unknown field"},
        {"pt.badhttp.Bad.RepeatedVar",
         "path variable {tags}: a path variable cannot bind a repeated field or map"},
        {"pt.badhttp.Bad.MessageVar",
         "path variable {inner}: a path variable cannot bind this message type"},
        {"pt.badhttp.Bad.UnknownBody",
         "POST /v1/ub: body field \"missing\" is not a field of pt.badhttp.Req"},
        {"pt.badhttp.Bad.UnknownResponseBody",
         "response_body \"missing\" is not a field of pt.badhttp.Req"},
    };
    size_t nw = sizeof(want) / sizeof(want[0]);
    assert_int_equal(errs.cnt, nw);
    for (size_t i = 0; i < nw; i++) {
        assert_string_equal(errs.items[i].path, want[i].path);
        if (strstr(errs.items[i].msg, want[i].msg) == NULL)
            fail_msg("error %zu: '%s' lacks '%s'", i, errs.items[i].msg, want[i].msg);
    }
    /* a routing conflict, found once every binding is valid on its own */
    const char *svcs[] = {"pt.badhttp.Clash"};
    pt_httprule_opts_t o = {.services = svcs, .service_cnt = 1};
    pt_xerrs_clear(&errs);
    assert_int_equal(pt_httprule_table_new(pool, &o, &t, &errs), PT_XERR_INVALID);
    assert_int_equal(errs.cnt, 1);
    assert_string_equal(errs.items[0].path, "pt.badhttp.Clash.Conflict2");
    assert_non_null(
        strstr(errs.items[0].msg, "GET /v1/c/{inner.x} conflicts with GET /v1/c/{name}"));
    pt_descpool_unref(pool);
}

/* ---- matching ----------------------------------------------------------- */

static pt_pathmatch_status_t route(fx_t *f, const char *method, const char *target,
                                   pt_httprule_match_t *m, char *scratch, size_t cap)
{
    return pt_httprule_match(f->t, method, strlen(method), target, strlen(target), NULL, scratch,
                             cap, m);
}

static void test_match(void **state)
{
    fx_t *f = *state;
    char scratch[1024];
    pt_httprule_match_t m;
    assert_int_equal(route(f, "GET", "/v1/shelves/3/books/7", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "GetBook");
    assert_int_equal(m.path.var_cnt, 2);
    assert_int_equal(
        route(f, "GET", "/v1/shelves/3/books?page_size=2", &m, scratch, sizeof(scratch)),
        PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "ListBooks");
    assert_int_equal(route(f, "POST", "/v1/shelves/3/books", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "CreateBook");
    assert_int_equal(route(f, "PATCH", "/v1/shelves/3/books/7", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "UpdateBook");
    assert_string_equal(m.path.vars[0].value, "shelves/3/books/7");
    assert_int_equal(route(f, "DELETE", "/v1/shelves/3/books/7", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "DeleteBook");
    assert_int_equal(route(f, "PUT", "/v1/shelves/3/books/7", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_METHOD);
    assert_null(m.binding);
    assert_int_equal(m.path.allowed, PT_HTTP_M_GET | PT_HTTP_M_PATCH | PT_HTTP_M_DELETE);
    assert_int_equal(route(f, "GET", "/v2/nothing", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_NOT_FOUND);
    assert_int_equal(route(f, "GET", "/v1/files/a/b.txt:download", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "Download");
    assert_int_equal(route(f, "PURGE", "/v1/shelves/9", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_OK);
    assert_string_equal(m.binding->method->name, "Purge");
    assert_int_equal(
        route(f, "POST", "/pt.bookstore.Bookstore/NoRule", &m, scratch, sizeof(scratch)),
        PT_PATHMATCH_OK);
    assert_int_equal(route(f, "GET", "/v1/shelves/%2e%2e/books", &m, scratch, sizeof(scratch)),
                     PT_PATHMATCH_BAD_PATH);
}

/* ---- request binding ---------------------------------------------------- */

typedef struct req_result {
    int rc;
    pt_xerrs_t errs;
    char json[2048];
} req_result_t;

/* Routes, transcodes, and renders the request message back to JSON. */
static void transcode(fx_t *f, const char *method, const char *target, const char *body,
                      const char *ctype, req_result_t *r)
{
    char scratch[2048];
    pt_httprule_match_t m;
    pt_pathmatch_status_t st = route(f, method, target, &m, scratch, sizeof(scratch));
    if (st != PT_PATHMATCH_OK)
        fail_msg("%s %s: %s", method, target, pt_pathmatch_status_name(st));
    const char *q = strchr(target, '?');
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_clear(&r->errs);
    r->rc = pt_httprule_transcode_request(f->t, &m, (const uint8_t *)body, body ? strlen(body) : 0,
                                          ctype, q ? q + 1 : NULL, q ? strlen(q + 1) : 0, NULL,
                                          &out, &r->errs);
    r->json[0] = '\0';
    if (r->rc == 0) {
        pt_xbuf_t js;
        pt_xbuf_init(&js, NULL);
        pt_xerr_t err;
        if (pt_pb_to_json(f->pool, m.binding->method->input, out.data, out.len, NULL, &js, &err) !=
            0)
            fail_msg("pb_to_json: %s: %s", err.path, err.msg);
        snprintf(r->json, sizeof(r->json), "%.*s", (int)js.len, (const char *)js.data);
        pt_xbuf_dispose(&js);
    } else {
        assert_int_equal(out.len, 0);
    }
    pt_xbuf_dispose(&out);
}

static void expect_json(fx_t *f, const char *method, const char *target, const char *body,
                        const char *want)
{
    req_result_t r;
    transcode(f, method, target, body, NULL, &r);
    if (r.rc != 0)
        fail_msg("%s %s: rc %d, %zu errors, first %s: %s", method, target, r.rc, r.errs.cnt,
                 r.errs.items[0].path, r.errs.items[0].msg);
    if (strcmp(r.json, want) != 0)
        fail_msg("%s %s:\n got  %s\n want %s", method, target, r.json, want);
}

/* Has an error whose path is `path` and whose message contains `msg`. */
static bool has_err(const req_result_t *r, const char *path, const char *msg)
{
    for (size_t i = 0; i < r->errs.cnt; i++)
        if (strcmp(r->errs.items[i].path, path) == 0 && strstr(r->errs.items[i].msg, msg) != NULL)
            return true;
    return false;
}

static void dump_errs(const req_result_t *r)
{
    for (size_t i = 0; i < r->errs.cnt; i++)
        print_message("  [%zu] %s: %s\n", i, r->errs.items[i].path, r->errs.items[i].msg);
}

#define EXPECT_ERR(r, path, msg)                                                                   \
    do {                                                                                           \
        if (!has_err((r), (path), (msg))) {                                                        \
            dump_errs(r);                                                                          \
            fail_msg("missing error %s: %s", (path), (msg));                                       \
        }                                                                                          \
    } while (0)

static void test_bind_path_and_query(void **state)
{
    fx_t *f = *state;
    expect_json(f, "GET", "/v1/shelves/3/books/7", NULL, "{\"shelf\":\"3\",\"book\":\"7\"}");
    /* nested, repeated, map, WKT, oneof member, json names, form decoding */
    expect_json(
        f, "GET",
        "/v1/shelves/12/books?filter.genre=FICTION&tags=a&tags=b+c&labels[env]=prod"
        "&updatedAfter=2024-01-01T00:00:00Z&max_age=3.5s&pageSize=20&author_name=Ann%20Lee"
        "&filter.minPages=100&includeDrafts=true&by_num[7]=seven&readMask=title,updateTime"
        "&genres=SCIENCE&genres=1&score=NaN&blob=aGk%3D",
        NULL,
        "{\"shelf\":\"12\",\"pageSize\":20,\"filter\":{\"genre\":\"FICTION\",\"minPages\":100},"
        "\"tags\":[\"a\",\"b c\"],\"labels\":{\"env\":\"prod\"},"
        "\"updatedAfter\":\"2024-01-01T00:00:00Z\",\"maxAge\":\"3.500s\","
        "\"includeDrafts\":true,\"byNum\":{\"7\":\"seven\"},\"authorName\":\"Ann Lee\","
        "\"readMask\":\"title,updateTime\",\"blob\":\"aGk=\",\"score\":\"NaN\","
        "\"genres\":[\"SCIENCE\",\"FICTION\"]}");
    /* path variable in a nested field, body field merged with it */
    expect_json(
        f, "PATCH", "/v1/shelves/1/books/2?updateMask=title",
        "{\"title\":\"T\",\"name\":\"ignored\"}",
        "{\"book\":{\"name\":\"shelves/1/books/2\",\"title\":\"T\"},\"updateMask\":\"title\"}");
    /* body "*" */
    expect_json(f, "POST", "/v1/shelves", "{\"id\":\"5\",\"theme\":\"sea\"}",
                "{\"id\":\"5\",\"theme\":\"sea\"}");
    /* body "*" with an empty body: an empty message */
    expect_json(f, "POST", "/v1/shelves", "", "{}");
    /* body naming a repeated field */
    expect_json(f, "POST", "/v1/shelves/4:setTags", "[\"x\",\"y\"]",
                "{\"shelf\":\"4\",\"tags\":[\"x\",\"y\"]}");
    /* default binding */
    expect_json(f, "POST", "/pt.bookstore.Bookstore/NoRule", "{\"theme\":\"t\"}",
                "{\"theme\":\"t\"}");
    /* custom method and a multi-segment value */
    expect_json(f, "PURGE", "/v1/shelves/9", NULL, "{\"name\":\"shelves/9\"}");
    /* empty query parts and a key without '=' */
    expect_json(f, "GET", "/v1/books?&&pageToken&", NULL, "{}");
}

static void test_bind_errors_all_reported(void **state)
{
    fx_t *f = *state;
    req_result_t r;
    transcode(f, "GET",
              "/v1/shelves/x/books?pageSize=2147483648&filter.genre=PURPLE&nope=1"
              "&includeDrafts=maybe&pageToken=a&pageToken=b&filter=1&labels=x&shelf=3"
              "&tags[k]=v&bad%zz=1&updatedAfter=2024-13-01T00:00:00Z&author_name=a&author_id=2",
              NULL, NULL, &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    EXPECT_ERR(&r, "shelf", "");         /* "x" is not an int64 */
    EXPECT_ERR(&r, "pageSize", "");      /* out of int32 range */
    EXPECT_ERR(&r, "filter.genre", "");  /* bad enum name */
    EXPECT_ERR(&r, "nope", "");          /* unknown field */
    EXPECT_ERR(&r, "includeDrafts", ""); /* not a bool */
    EXPECT_ERR(&r, "pageToken", "");     /* singular field given twice */
    EXPECT_ERR(&r, "filter", "");        /* a message without a text form */
    EXPECT_ERR(&r, "labels", "needs a key");
    EXPECT_ERR(&r, "shelf", "already bound by the URL path");
    EXPECT_ERR(&r, "tags[k]", "not a map");
    EXPECT_ERR(&r, "bad%zz", "malformed percent-escape");
    EXPECT_ERR(&r, "updatedAfter", "");
    /* two members of one oneof */
    bool oneof = false;
    for (size_t i = 0; i < r.errs.cnt; i++)
        oneof = oneof || strstr(r.errs.items[i].path, "author") != NULL;
    if (!oneof)
        dump_errs(&r);
    assert_true(oneof);
    assert_true(r.errs.cnt >= 13);
}

static void test_bind_body_policy(void **state)
{
    fx_t *f = *state;
    req_result_t r;
    /* body "*": no query parameters */
    transcode(f, "POST", "/v1/shelves?theme=x", "{\"id\":\"1\"}", NULL, &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    EXPECT_ERR(&r, "theme", "body");
    /* a query parameter under the body field */
    transcode(f, "POST", "/v1/shelves/1/books?book.title=x&requestId=r1", "{\"title\":\"t\"}", NULL,
              &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    EXPECT_ERR(&r, "book.title", "carried by the request body");
    assert_int_equal(r.errs.cnt, 1);
    /* a field body is required */
    transcode(f, "POST", "/v1/shelves/1/books", "  ", NULL, &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    EXPECT_ERR(&r, "book", "request body required");
    /* errors inside the body carry the body field in their path, along with query errors */
    transcode(f, "POST", "/v1/shelves/1/books?requestId=1&zzz=2", "{\"pages\":\"many\"}", NULL, &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    EXPECT_ERR(&r, "book.pages", "");
    EXPECT_ERR(&r, "zzz", "");
    /* a body that smuggles a second top-level field is a syntax/mapping error, not an injection */
    transcode(f, "POST", "/v1/shelves/1/books", "{}, \"requestId\": \"x\"", NULL, &r);
    assert_int_not_equal(r.rc, 0);
    /* malformed JSON body */
    transcode(f, "POST", "/v1/shelves", "{\"id\":", NULL, &r);
    assert_int_equal(r.rc, PT_XERR_INVALID);
    assert_true(r.errs.cnt >= 1);
    /* ignore_unknown skips unknown query parameters */
    char scratch[256];
    pt_httprule_match_t m;
    assert_int_equal(route(f, "GET", "/v1/books", &m, scratch, sizeof(scratch)), PT_PATHMATCH_OK);
    pt_json_opts_t jo = {.ignore_unknown = true};
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    const char *q = "zzz=1&pageSize=3";
    assert_int_equal(
        pt_httprule_transcode_request(f->t, &m, NULL, 0, NULL, q, strlen(q), &jo, &out, &errs), 0);
    assert_int_equal(out.len, 2); /* field 2 = 3 */
    pt_xbuf_dispose(&out);
}

static void test_bind_httpbody(void **state)
{
    fx_t *f = *state;
    req_result_t r;
    transcode(f, "PUT", "/v1/files/docs/a.txt", "raw \x01 bytes{", "text/plain", &r);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.json, "{\"name\":\"docs/a.txt\",\"file\":{\"contentType\":\"text/plain\","
                                "\"data\":\"cmF3IAEgYnl0ZXN7\"}}");
    /* an empty HttpBody is fine */
    transcode(f, "PUT", "/v1/files/e", "", NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.json, "{\"name\":\"e\",\"file\":{}}");
}

/* ---- responses ---------------------------------------------------------- */

static void response(fx_t *f, const char *method, const char *path, const char *resp_json,
                     const char *want, const char *want_ct)
{
    char scratch[256];
    pt_httprule_match_t m;
    assert_int_equal(route(f, method, path, &m, scratch, sizeof(scratch)), PT_PATHMATCH_OK);
    const pt_msgdesc_t *out_t = m.binding->method->output;
    pt_xbuf_t pb, out;
    pt_xbuf_init(&pb, NULL);
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    if (pt_json_to_pb(f->pool, out_t, resp_json, strlen(resp_json), NULL, &pb, &err) != 0)
        fail_msg("json_to_pb: %s: %s", err.path, err.msg);
    pt_httprule_str_t ct;
    if (pt_httprule_transcode_response(f->t, m.binding, pb.data, pb.len, NULL, &out, &ct, &err) !=
        0)
        fail_msg("response: %s: %s", err.path, err.msg);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        fail_msg("%s %s:\n got  %.*s\n want %s", method, path, (int)out.len, out.data, want);
    assert_int_equal(ct.len, strlen(want_ct));
    assert_memory_equal(ct.p, want_ct, ct.len);
    /* malformed upstream bytes are an error, with out unchanged */
    uint8_t garbage[] = {0x0a, 0x7f, 0x01};
    size_t before = out.len;
    assert_int_not_equal(pt_httprule_transcode_response(f->t, m.binding, garbage, sizeof(garbage),
                                                        NULL, &out, &ct, &err),
                         0);
    assert_int_equal(out.len, before);
    pt_xbuf_dispose(&pb);
    pt_xbuf_dispose(&out);
}

static void test_responses(void **state)
{
    fx_t *f = *state;
    const char *lr = "{\"books\":[{\"title\":\"A\"},{\"title\":\"B\"}],\"nextPageToken\":\"n\","
                     "\"total\":2,\"topGenre\":\"SCIENCE\"}";
    response(f, "GET", "/v1/books", lr,
             "{\"books\":[{\"title\":\"A\"},{\"title\":\"B\"}],\"nextPageToken\":\"n\",\"total\":2,"
             "\"topGenre\":\"SCIENCE\"}",
             "application/json");
    response(f, "GET", "/v1/shelves/1/titles", lr, "[{\"title\":\"A\"},{\"title\":\"B\"}]",
             "application/json");
    response(f, "GET", "/v1/shelves/1:count", lr, "2", "application/json");
    response(f, "GET", "/v1/shelves/1:count", "{}", "0", "application/json");
    response(f, "GET", "/v1/shelves/1/titles", "{}", "[]", "application/json");
    response(f, "GET", "/v1/shelves/1:topGenre", "{}", "\"GENRE_UNSPECIFIED\"", "application/json");
    response(f, "GET", "/v1/files/x:download",
             "{\"contentType\":\"image/png\",\"data\":\"iVBORw==\"}", "\x89PNG", "image/png");
}

/* ---- error bodies ------------------------------------------------------ */

static void test_status_json(void **state)
{
    fx_t *f = *state;
    req_result_t r;
    transcode(f, "GET", "/v1/shelves/x/books?pageSize=big", NULL, NULL, &r);
    assert_int_equal(r.errs.cnt, 2);
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    assert_int_equal(pt_httprule_status_json(3, NULL, &r.errs, &out), 0);
    assert_int_equal(pt_xbuf_terminate(&out), 0);
    char want[4096];
    snprintf(
        want, sizeof(want),
        "{\"code\":3,\"message\":\"%s: %s (and 1 more problem)\",\"details\":[{\"@type\":"
        "\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":["
        "{\"field\":\"%s\",\"description\":\"%s\"},{\"field\":\"%s\",\"description\":\"%s\"}]}]}",
        r.errs.items[0].path, r.errs.items[0].msg, r.errs.items[0].path, r.errs.items[0].msg,
        r.errs.items[1].path, r.errs.items[1].msg);
    assert_string_equal((const char *)out.data, want);
    /* the body parses as a google.rpc.Status with the real schema */
    pt_descpool_t *sp = load_pool(NULL, PT_HTTP_STATUS_DESC);
    const pt_msgdesc_t *st = pt_descpool_message(sp, "google.rpc.Status", 17);
    assert_non_null(st);
    pt_xbuf_t pb;
    pt_xbuf_init(&pb, NULL);
    pt_xerr_t err;
    if (pt_json_to_pb(sp, st, (const char *)out.data, out.len, NULL, &pb, &err) != 0)
        fail_msg("status json: %s: %s", err.path, err.msg);
    pt_xbuf_dispose(&pb);
    /* control characters, quotes and invalid UTF-8 stay valid JSON */
    pt_xbuf_reset(&out);
    pt_xerrs_t e;
    pt_xerrs_clear(&e);
    pt_xerrs_add(&e, PT_XERR_INVALID, "a\"b", "bad \xff\x01 \xe2\x82\xac");
    assert_int_equal(pt_httprule_status_json(5, "not found", &e, &out), 0);
    assert_int_equal(pt_xbuf_terminate(&out), 0);
    assert_string_equal(
        (const char *)out.data,
        "{\"code\":5,\"message\":\"not found\",\"details\":[{\"@type\":"
        "\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":["
        "{\"field\":\"a\\\"b\",\"description\":\"bad \\ufffd\\u0001 \xe2\x82\xac\"}]}]}");
    pt_xbuf_reset(&out);
    assert_int_equal(pt_httprule_status_json(13, NULL, NULL, &out), 0);
    assert_int_equal(out.len, strlen("{\"code\":13,\"message\":\"invalid request\"}"));
    pt_xbuf_dispose(&out);
    pt_descpool_unref(sp);
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
    failalloc_t fa = {.countdown = -1};
    pt_allocator_t a = {fa_alloc, fa_realloc, fa_free, &fa};
    pt_descpool_t *pool = load_pool(&a, PT_HTTP_TEST_DESC);
    long base = fa.live;
    bool done = false;
    for (long at = 0; !done && at < 2000; at++) {
        fa.countdown = at;
        pt_httprule_table_t *t = NULL;
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        pt_httprule_opts_t o = {.add_default_bindings = true};
        int rc = pt_httprule_table_new(pool, &o, &t, &errs);
        if (rc == 0) {
            done = true;
            /* and the request path under failing allocations */
            for (long at2 = 0; at2 < 200; at2++) {
                char scratch[512];
                pt_httprule_match_t m;
                const char *target = "/v1/shelves/3/books?tags=a&labels[x]=y&filter.genre=FICTION";
                fa.countdown = -1;
                assert_int_equal(pt_httprule_match(t, "GET", 3, target, strlen(target), NULL,
                                                   scratch, sizeof(scratch), &m),
                                 PT_PATHMATCH_OK);
                pt_xbuf_t out;
                pt_xbuf_init(&out, &a);
                fa.countdown = at2;
                const char *q = strchr(target, '?') + 1;
                int r2 = pt_httprule_transcode_request(t, &m, NULL, 0, NULL, q, strlen(q), NULL,
                                                       &out, &errs);
                fa.countdown = -1;
                pt_xbuf_dispose(&out);
                if (r2 == 0)
                    break;
                assert_int_equal(r2, PT_XERR_NOMEM);
            }
            pt_httprule_table_free(t);
        } else {
            assert_int_equal(rc, PT_XERR_NOMEM);
            assert_null(t);
        }
        fa.countdown = -1;
        assert_int_equal(fa.live, base);
    }
    assert_true(done);
    pt_descpool_unref(pool);
    assert_int_equal(fa.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_nomem),
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_path_and_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors_all_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_body_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_httpbody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
