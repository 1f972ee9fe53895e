/*
 * test_aggregate.c -- the aggregate handler's templates (agg_tmpl.c), result
 * shaping (agg_merge.c) and its plan as the config loader sees it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "handlers/agg_merge.h"
#include "handlers/agg_tmpl.h"

/* ---- templates ------------------------------------------------------------------ */

static void parse_ok(const char *s, pt_agg_tmpl_t *t)
{
    char err[128];
    size_t off = 99;
    int rc = pt_agg_tmpl_parse(s, strlen(s), t, err, sizeof(err), &off);
    if (rc != 0)
        fail_msg("'%s': %s at %zu", s, err, off);
}

static size_t parse_err(const char *s, const char *want)
{
    pt_agg_tmpl_t t;
    char err[128] = "";
    size_t off = 999;
    assert_int_equal(pt_agg_tmpl_parse(s, strlen(s), &t, err, sizeof(err), &off), -1);
    if (strstr(err, want) == NULL)
        fail_msg("'%s': got '%s', want '%s'", s, err, want);
    assert_null(t.segs);
    assert_null(t.refs);
    return off;
}

static void test_parse_references(void **state)
{
    (void)state;
    pt_agg_tmpl_t t;
    parse_ok("/users/{user}/x?h={header.X-Tenant}&b={ body.a.b }&c={orders.list[10].id}", &t);
    assert_int_equal(t.ref_cnt, 4);
    assert_false(t.whole_ref);
    assert_int_equal(t.refs[0].kind, PT_AGG_REF_NAME);
    assert_string_equal(t.refs[0].head, "user");
    assert_int_equal(t.refs[0].offset, 7);
    assert_int_equal(t.refs[1].kind, PT_AGG_REF_HEADER);
    assert_string_equal(t.refs[1].head, "x-tenant"); /* lowercased */
    assert_int_equal(t.refs[2].kind, PT_AGG_REF_BODY);
    assert_string_equal(t.refs[2].text, "body.a.b"); /* blanks trimmed */
    assert_int_equal(t.refs[2].step_cnt, 2);
    assert_string_equal(t.refs[2].steps[1].name, "b");
    pt_agg_ref_t *r = &t.refs[3];
    assert_int_equal(r->kind, PT_AGG_REF_PATH);
    assert_string_equal(r->head, "orders");
    assert_int_equal(r->step_cnt, 3);
    assert_string_equal(r->steps[0].name, "list");
    assert_null(r->steps[1].name);
    assert_int_equal(r->steps[1].index, 10);
    assert_string_equal(r->steps[2].name, "id");
    assert_int_equal(r->call, -1);
    /* literal, ref, literal, ref, literal, ref, literal, ref */
    assert_int_equal(t.seg_cnt, 8);
    assert_string_equal(t.segs[0].lit, "/users/");
    pt_agg_tmpl_dispose(&t);

    parse_ok("{profile}", &t);
    assert_true(t.whole_ref);
    pt_agg_tmpl_dispose(&t);

    parse_ok("a{{b}}c }}{{", &t);
    assert_int_equal(t.ref_cnt, 0);
    assert_int_equal(t.seg_cnt, 1);
    assert_string_equal(t.segs[0].lit, "a{b}c }{");
    pt_agg_tmpl_dispose(&t);

    parse_ok("", &t);
    assert_int_equal(t.seg_cnt, 0);
    pt_agg_tmpl_dispose(&t);
}

static void test_parse_errors(void **state)
{
    (void)state;
    assert_int_equal(parse_err("/x/{a", "unclosed"), 3);
    assert_int_equal(parse_err("/x/a}", "unmatched"), 4);
    parse_err("{}", "empty reference");
    parse_err("{.a}", "starts with a name");
    parse_err("{a..b}", "field name after");
    parse_err("{a[x]}", "[N]");
    parse_err("{a[1000001]}", "[N]");
    parse_err("{a[]}", "[N]");
    parse_err("{a b}", "unexpected character");
    parse_err("{a{b}", "`{` inside a reference");
}

static void test_header_bare_is_a_name(void **state)
{
    (void)state;
    pt_agg_tmpl_t t;
    /* `{header}` alone is a parameter called header; `{header.}` is an error */
    char err[128];
    size_t off;
    assert_int_equal(pt_agg_tmpl_parse("{header}", 8, &t, err, sizeof(err), &off), 0);
    assert_int_equal(t.refs[0].kind, PT_AGG_REF_NAME);
    pt_agg_tmpl_dispose(&t);
    parse_err("{header.}", "header name");
    parse_err("{header.a b}", "header name");
    parse_err("{header[0]}", "`.NAME` after `header`");
    char many[40 * 3 + 8] = "{a";
    for (int i = 0; i < 33; i++)
        strcat(many, ".b");
    strcat(many, "}");
    parse_err(many, "too many steps");
    char refs[70 * 4 + 1] = "";
    for (int i = 0; i < 65; i++)
        strcat(refs, "{a}");
    parse_err(refs, "too many references");
}

/* A lookup over a fixed JSON document `{"user": ..., "p": {...}}` and header x-v. */
static struct json_object *doc;

static pt_agg_val_t lookup(void *ud, const pt_agg_ref_t *r)
{
    (void)ud;
    pt_agg_val_t v = {0};
    if (r->kind == PT_AGG_REF_HEADER) {
        if (strcmp(r->head, "x-v") == 0) {
            v.found = true;
            v.str = PT_STR("a\r\nb");
        }
        return v;
    }
    struct json_object *root = NULL;
    if (!json_object_object_get_ex(doc, r->head, &root))
        return v;
    v.is_json = true;
    v.j = pt_agg_json_walk(root, r->steps, r->step_cnt, &v.found);
    return v;
}

static void test_render(void **state)
{
    (void)state;
    doc = json_tokener_parse("{\"user\":\"a/b?c%d e\",\"p\":{\"n\":42,\"f\":2.5,\"ok\":true,"
                             "\"list\":[{\"id\":\"x\"},{\"id\":7}],\"nul\":null,\"o\":{}}}");
    pt_agg_tmpl_t t;
    char buf[256];
    pt_agg_rerr_t e = {0};
    parse_ok("/u/{user}/{p.n}/{p.f}/{p.ok}/{p.list[1].id}?x={p.list[0].id}", &t);
    assert_int_equal(pt_agg_tmpl_render(&t, PT_AGG_ENC_URL, lookup, NULL, buf, sizeof(buf), &e),
                     strlen("/u/a%2Fb%3Fc%25d%20e/42/2.5/true/7?x=x"));
    assert_string_equal(buf, "/u/a%2Fb%3Fc%25d%20e/42/2.5/true/7?x=x");
    /* too small a buffer: an error without a reference */
    assert_int_equal(pt_agg_tmpl_render(&t, PT_AGG_ENC_URL, lookup, NULL, buf, 10, &e), -1);
    assert_null(e.ref);
    pt_agg_tmpl_dispose(&t);

    static const char *const bad[] = {"{p.nul}", "{p.o}",  "{p.list}",        "{p.list[2]}",
                                      "{p.n.x}", "{nope}", "{p.list[0].id.z}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse_ok(bad[i], &t);
        memset(&e, 0, sizeof(e));
        assert_int_equal(pt_agg_tmpl_render(&t, PT_AGG_ENC_URL, lookup, NULL, buf, sizeof(buf), &e),
                         -1);
        assert_ptr_equal(e.ref, &t.refs[0]);
        assert_non_null(e.why);
        pt_agg_tmpl_dispose(&t);
    }
    /* header values: raw, but never a CR/LF */
    parse_ok("v={user}", &t);
    assert_true(pt_agg_tmpl_render(&t, PT_AGG_ENC_HEADER, lookup, NULL, buf, sizeof(buf), &e) > 0);
    assert_string_equal(buf, "v=a/b?c%d e");
    pt_agg_tmpl_dispose(&t);
    parse_ok("{header.x-v}", &t);
    assert_int_equal(pt_agg_tmpl_render(&t, PT_AGG_ENC_HEADER, lookup, NULL, buf, sizeof(buf), &e),
                     -1);
    assert_string_equal(e.why, "value has a control character");
    pt_agg_tmpl_dispose(&t);
    json_object_put(doc);
}

static void test_render_json_typed(void **state)
{
    (void)state;
    doc = json_tokener_parse("{\"p\":{\"n\":42,\"o\":{\"k\":[1]},\"nul\":null}}");
    pt_agg_tmpl_t t;
    pt_agg_rerr_t e = {0};
    static const struct {
        const char *tmpl, *json;
    } cases[] = {
        {"{p.n}", "42"},         {"{p.o}", "{\"k\":[1]}"},         {"{p.nul}", "null"},
        {"n={p.n}", "\"n=42\""}, {"{header.x-v}", "\"a\\r\\nb\""}, /* in JSON a string may hold
                                                                      anything */
        {"plain", "\"plain\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].tmpl, &t);
        struct json_object *v = pt_agg_tmpl_json(&t, lookup, NULL, &e);
        if (strcmp(cases[i].tmpl, "{header.x-v}") == 0) {
            assert_non_null(v);
        } else {
            assert_true(v != NULL || strcmp(cases[i].json, "null") == 0);
            assert_string_equal(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
                                cases[i].json);
        }
        json_object_put(v);
        pt_agg_tmpl_dispose(&t);
    }
    /* the copy is deep: changing it leaves the result alone */
    parse_ok("{p.o}", &t);
    struct json_object *v = pt_agg_tmpl_json(&t, lookup, NULL, &e);
    json_object_object_del(v, "k");
    json_object_put(v);
    assert_string_equal(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN),
                        "{\"p\":{\"n\":42,\"o\":{\"k\":[1]},\"nul\":null}}");
    pt_agg_tmpl_dispose(&t);
    /* a missing value */
    parse_ok("{p.zz}", &t);
    memset(&e, 0, sizeof(e));
    assert_null(pt_agg_tmpl_json(&t, lookup, NULL, &e));
    assert_string_equal(e.why, "no such value");
    pt_agg_tmpl_dispose(&t);

    /* a JSON template tree: {"a": "{p.n}", "b": [1, "x{p.n}"]} */
    pt_agg_jtmpl_t *root = calloc(1, sizeof(*root));
    root->kind = PT_AGG_J_OBJECT;
    root->cnt = 2;
    root->keys = calloc(2, sizeof(char *));
    root->items = calloc(2, sizeof(pt_agg_jtmpl_t *));
    root->keys[0] = strdup("a");
    root->keys[1] = strdup("b");
    root->items[0] = calloc(1, sizeof(pt_agg_jtmpl_t));
    root->items[0]->kind = PT_AGG_J_TEMPLATE;
    parse_ok("{p.n}", &root->items[0]->tmpl);
    pt_agg_jtmpl_t *arr = root->items[1] = calloc(1, sizeof(pt_agg_jtmpl_t));
    arr->kind = PT_AGG_J_ARRAY;
    arr->cnt = 2;
    arr->items = calloc(2, sizeof(pt_agg_jtmpl_t *));
    arr->items[0] = calloc(1, sizeof(pt_agg_jtmpl_t));
    arr->items[0]->kind = PT_AGG_J_LITERAL;
    arr->items[0]->lit = json_object_new_int(1);
    arr->items[1] = calloc(1, sizeof(pt_agg_jtmpl_t));
    arr->items[1]->kind = PT_AGG_J_TEMPLATE;
    parse_ok("x{p.n}", &arr->items[1]->tmpl);
    memset(&e, 0, sizeof(e));
    v = pt_agg_jtmpl_render(root, lookup, NULL, &e);
    assert_string_equal(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
                        "{\"a\":42,\"b\":[1,\"x42\"]}");
    /* the literal comes out as a new object: the config's, which every worker
     * renders from, is never referenced (json-c's count is not atomic) */
    struct json_object *one = json_object_array_get_idx(json_object_object_get(v, "b"), 0);
    assert_ptr_not_equal(one, arr->items[0]->lit);
    json_object_put(v);
    pt_agg_jtmpl_t *alone = arr->items[0];
    v = pt_agg_jtmpl_render(alone, lookup, NULL, &e);
    assert_ptr_not_equal(v, alone->lit);
    assert_int_equal(json_object_get_int(v), 1);
    json_object_put(v);
    pt_agg_jtmpl_free(root);
    json_object_put(doc);
}

/* ---- shaping -------------------------------------------------------------------------- */

static pt_agg_fpath_t *paths(const char *const *v, size_t n)
{
    pt_agg_fpath_t *p = calloc(n + 1, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (pt_agg_fpath_parse(v[i], &p[i], &why) != 0)
            fail_msg("'%s': %s", v[i], why);
    }
    return p;
}

static char *shaped(pt_agg_shape_t *s, const char *json)
{
    struct json_object *in = json_tokener_parse(json);
    struct json_object *out = pt_agg_shape_apply(s, in);
    char *txt = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    json_object_put(in);
    return txt;
}

#define ORDERS                                                                                     \
    "{\"id\":1,\"name\":\"ann\",\"address\":{\"city\":\"Paris\",\"geo\":[1,2]},"                   \
    "\"orders\":[{\"id\":10,\"x\":1},{\"id\":11},{\"noid\":0}]}"

static void test_shape(void **state)
{
    (void)state;
    static const char *const sel[] = {"name", "address.city", "orders[].id", "missing.x"};
    pt_agg_shape_t s = {0};
    s.select = paths(sel, 4);
    s.select_cnt = 4;
    char *out = shaped(&s, ORDERS);
    assert_string_equal(out,
                        "{\"name\":\"ann\",\"address\":{\"city\":\"Paris\"},\"orders\":[10,11]}");
    free(out);
    pt_agg_shape_dispose(&s);

    static const char *const om[] = {"address.geo", "orders[].x", "nope.nope", "id"};
    static const char *const rf[] = {"name"};
    memset(&s, 0, sizeof(s));
    s.omit = paths(om, 4);
    s.omit_cnt = 4;
    s.rename_from = paths(rf, 1);
    s.rename_to = calloc(2, sizeof(char *));
    s.rename_to[0] = strdup("fullName");
    s.rename_cnt = 1;
    assert_false(pt_agg_shape_empty(&s));
    out = shaped(&s, ORDERS);
    assert_string_equal(out,
                        "{\"address\":{\"city\":\"Paris\"},\"orders\":[{\"id\":10},{\"id\":11},"
                        "{\"noid\":0}],\"fullName\":\"ann\"}");
    free(out);
    pt_agg_shape_dispose(&s);

    /* a result that is an array itself */
    static const char *const top[] = {"[].id"};
    memset(&s, 0, sizeof(s));
    assert_true(pt_agg_shape_empty(&s));
    s.select = paths(top, 1);
    s.select_cnt = 1;
    out = shaped(&s, "[{\"id\":1},{\"id\":\"b\"},3]");
    assert_string_equal(out, "[1,\"b\"]");
    free(out);
    out = shaped(&s, "{\"id\":1}"); /* not an array: nothing selected */
    assert_string_equal(out, "{}");
    free(out);
    pt_agg_shape_dispose(&s);
}

static void test_fpath_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"", ".a", "a.", "a..b", "a[0]", "a[]b", "a b", "a[", "[x]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_agg_fpath_t p;
        const char *why = NULL;
        if (pt_agg_fpath_parse(bad[i], &p, &why) != -1)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(why);
    }
    pt_agg_fpath_t p;
    const char *why = NULL;
    assert_int_equal(pt_agg_fpath_parse("a[][].b", &p, &why), 0);
    assert_int_equal(p.cnt, 4);
    assert_null(p.steps[1]);
    assert_null(p.steps[2]);
    pt_agg_fpath_dispose(&p);
}

/* ---- the plan, through the config loader ---------------------------------------------- */

static char *load_errors(const char *yaml, bool *ok)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pt_config_t *c = pt_config_load_string("t.yaml", yaml, strlen(yaml), f);
    fclose(f);
    *ok = c != NULL;
    pt_config_unref(c);
    return buf;
}

#define HEAD                                                                                       \
    "listeners: [ { address: 127.0.0.1:1 } ]\n"                                                    \
    "clusters: [ { name: u, endpoints: [ \"127.0.0.1:2\" ] } ]\n"                                  \
    "routes:\n  - aggregate:\n      calls:\n"

static void test_plan(void **state)
{
    (void)state;
    bool ok;
    char *e = load_errors(HEAD "        - { name: a, http: { cluster: u, path: \"/{b.x}\" } }\n"
                               "        - { name: b, http: { cluster: u, path: \"/{a.x}\" } }\n",
                          &ok);
    assert_false(ok);
    assert_non_null(
        strstr(e, "t.yaml:6:11: aggregate: dependency cycle between calls: a -> b -> a"));
    free(e);
    e = load_errors(HEAD
                    "        - { name: a, http: { cluster: u, path: \"/{user}/{header.x}\" } }\n"
                    "        - { name: b, http: { cluster: u, path: \"/{a.x[0]}/{a}\" } }\n",
                    &ok);
    assert_true(ok);
    assert_string_equal(e, "");
    free(e);
    e = load_errors(HEAD "        - { name: a, http: { cluster: u, path: \"/{c.x}\" } }\n"
                         "        - { name: a, http: { cluster: u, path: \"/\" } }\n"
                         "        - { name: body, http: { cluster: u, path: \"/\" } }\n"
                         "        - { name: d, http: { cluster: nope, path: \"/\" } }\n"
                         "        - { name: f, http: { cluster: u, path: \"x\" } }\n"
                         "        - { name: g, http: { cluster: u, path: \"/\" }, grpc: {} }\n",
                    &ok);
    assert_false(ok);
    assert_non_null(strstr(e, "two calls named 'a'"));
    assert_non_null(strstr(e, "call name 'body'"));
    assert_non_null(strstr(e, "path must start with `/`"));
    assert_non_null(strstr(e, "needs exactly one of http, grpc, soap"));
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_references),      cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_header_bare_is_a_name), cmocka_unit_test(test_render),
        cmocka_unit_test(test_render_json_typed),     cmocka_unit_test(test_shape),
        cmocka_unit_test(test_fpath_errors),          cmocka_unit_test(test_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
