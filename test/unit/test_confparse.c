/*
 * test_confparse.c -- YAML to node tree, marks, getters, field tables, limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/confparse.h"
#include "portico/status.h"

typedef struct fixture {
    pt_conf_cx_t cx;
    char *buf;
    size_t len;
    FILE *errs;
} fixture_t;

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof(*fx));
    fx->errs = open_memstream(&fx->buf, &fx->len);
    pt__conf_cx_init(&fx->cx, "t.yaml", fx->errs);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    pt__conf_cx_dispose(&fx->cx);
    fclose(fx->errs);
    free(fx->buf);
    free(fx);
    return 0;
}

static const char *errors(fixture_t *fx)
{
    fflush(fx->errs);
    return fx->buf != NULL ? fx->buf : "";
}

static const pt_conf_node_t *parse(fixture_t *fx, const char *text)
{
    return pt__conf_parse(&fx->cx, text, strlen(text));
}

/* The first error line must be exactly `want`. */
static void assert_first_error(fixture_t *fx, const char *want)
{
    const char *e = errors(fx);
    size_t n = strcspn(e, "\n");
    if (strlen(want) != n || memcmp(e, want, n) != 0)
        fail_msg("first error:\n  got:  %.*s\n  want: %s", (int)n, e, want);
}

/* ---- tree and marks ------------------------------------------------------- */

static void test_tree_and_marks(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *root = parse(fx, "a: 1\n"
                                           "b:\n"
                                           "  - x\n"
                                           "  - 'y'\n"
                                           "c: { d: ~, e: \"\" }\n");
    assert_non_null(root);
    assert_int_equal(root->kind, PT_CONF_MAP);
    assert_int_equal(root->cnt, 3);
    assert_int_equal(root->line, 1);
    assert_int_equal(root->col, 1);
    const pt_conf_node_t *a = pt_conf_map_get(root, "a");
    assert_int_equal(a->kind, PT_CONF_SCALAR);
    assert_string_equal(a->str, "1");
    assert_false(a->quoted);
    assert_int_equal(a->line, 1);
    assert_int_equal(a->col, 4);
    const pt_conf_node_t *b = pt_conf_map_get(root, "b");
    assert_int_equal(b->kind, PT_CONF_SEQ);
    assert_int_equal(b->cnt, 2);
    assert_int_equal(b->items[1]->line, 4);
    assert_int_equal(b->items[1]->col, 5);
    assert_true(b->items[1]->quoted);
    const pt_conf_node_t *c = pt_conf_map_get(root, "c");
    assert_int_equal(pt_conf_map_get(c, "d")->kind, PT_CONF_NULL);
    const pt_conf_node_t *e = pt_conf_map_get(c, "e");
    assert_int_equal(e->kind, PT_CONF_SCALAR); /* a quoted empty string is a string */
    assert_int_equal(e->len, 0);
    assert_null(pt_conf_map_get(root, "zz"));
    assert_null(pt_conf_map_get(a, "x"));
    assert_int_equal(pt_conf_error_count(&fx->cx), 0);
}

static void test_json_input(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *root =
        parse(fx, "{\"listeners\": [{\"address\": \"127.0.0.1:8080\"}], \"workers\": 2}");
    assert_non_null(root);
    const pt_conf_node_t *w = pt_conf_map_get(root, "workers");
    long long v = 0;
    assert_int_equal(pt_conf_get_int(&fx->cx, w, 0, 10, &v), 0);
    assert_int_equal(v, 2);
    const pt_conf_node_t *l = pt_conf_map_get(root, "listeners");
    assert_int_equal(l->kind, PT_CONF_SEQ);
    assert_string_equal(pt_conf_map_get(l->items[0], "address")->str, "127.0.0.1:8080");
}

static void test_empty_document(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *root = parse(fx, "# nothing here\n");
    assert_non_null(root);
    assert_int_equal(root->kind, PT_CONF_NULL);
}

/* ---- hostile and invalid input ----------------------------------------------- */

static void test_syntax_error(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "a: 1\nb: [1, 2\nc: 3\n"));
    assert_int_equal(pt_conf_error_count(&fx->cx), 1);
    assert_first_error(fx, "t.yaml:3:2: YAML syntax error: did not find expected ',' or ']' "
                           "while parsing a flow sequence");
}

static void test_syntax_error_bad_indent(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "a:\n  b: 1\n c: 2\n"));
    assert_true(strncmp(errors(fx), "t.yaml:3:2: YAML syntax error: ", 31) == 0);
}

static void test_alias_refused(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "a: &x 1\nb: *x\n"));
    assert_first_error(fx, "t.yaml:1:4: YAML anchors (&x) are not supported");
}

static void test_billion_laughs(void **state)
{
    fixture_t *fx = *state;
    const char *bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                       "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    assert_null(parse(fx, bomb));
    assert_int_equal(pt_conf_error_count(&fx->cx), 1);
    assert_first_error(fx, "t.yaml:1:4: YAML anchors (&a) are not supported");
}

static void test_alias_without_anchor(void **state)
{
    fixture_t *fx = *state;
    /* libyaml itself accepts an alias to an unknown anchor at event level */
    const pt_conf_node_t *r = parse(fx, "a: *nope\n");
    assert_null(r);
    assert_true(pt_conf_error_count(&fx->cx) >= 1);
}

static void test_depth_cap(void **state)
{
    fixture_t *fx = *state;
    size_t n = 100000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    assert_null(parse(fx, deep));
    free(deep);
    assert_first_error(fx, "t.yaml:1:65: config nested too deeply (more than 64 levels)");
}

static void test_node_cap(void **state)
{
    fixture_t *fx = *state;
    size_t n = PT_CONF_MAX_NODES + 10;
    char *big = malloc(2 * n + 3);
    size_t o = 0;
    big[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        big[o++] = '1';
        big[o++] = ',';
    }
    big[o - 1] = ']';
    big[o] = '\0';
    assert_null(parse(fx, big));
    free(big);
    assert_non_null(strstr(errors(fx), "config too large: more than 200000 nodes"));
}

static void test_size_cap(void **state)
{
    fixture_t *fx = *state;
    size_t n = PT_CONF_MAX_FILE + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    assert_null(pt__conf_parse(&fx->cx, big, n));
    free(big);
    assert_first_error(fx, "t.yaml:1:1: config file too large (4194305 bytes, at most 4194304)");
}

static void test_two_documents(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "a: 1\n---\nb: 2\n"));
    assert_first_error(fx, "t.yaml:2:1: only one YAML document is allowed in a config file");
}

static void test_duplicate_key(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "a: 1\nb: 2\na: 3\n"));
    assert_int_equal(pt_conf_error_count(&fx->cx), 1);
    assert_first_error(fx, "t.yaml:3:1: duplicate key 'a' (first defined at line 1)");
}

static void test_duplicate_key_big_map(void **state)
{
    fixture_t *fx = *state;
    char text[4096];
    size_t o = 0;
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "k%d: %d\n", i, i);
    o += (size_t)snprintf(text + o, sizeof(text) - o, "k7: again\n");
    assert_null(parse(fx, text));
    assert_int_equal(pt_conf_error_count(&fx->cx), 1);
    assert_first_error(fx, "t.yaml:41:1: duplicate key 'k7' (first defined at line 8)");
}

static void test_complex_key(void **state)
{
    fixture_t *fx = *state;
    assert_null(parse(fx, "? [a, b]\n: 1\n"));
    assert_first_error(fx, "t.yaml:1:3: map keys must be plain strings");
}

static void test_missing_file(void **state)
{
    fixture_t *fx = *state;
    pt_conf_cx_t cx;
    pt__conf_cx_init(&cx, "/nonexistent/dir/portico.yaml", fx->errs);
    assert_null(pt__conf_parse_file(&cx));
    assert_int_equal(pt_conf_error_count(&cx), 1);
    pt__conf_cx_dispose(&cx);
    assert_first_error(fx, "/nonexistent/dir/portico.yaml:1:1: cannot open config file: "
                           "No such file or directory");
}

/* ---- getters ------------------------------------------------------------------- */

static void test_getters(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *r = parse(fx, "s: hello\nb1: true\nb2: off\nb3: \"true\"\n"
                                        "i: -42\nbig: 99999999999999999999\nm: {}\n");
    assert_non_null(r);
    const char *s;
    bool b;
    long long i;
    assert_int_equal(pt_conf_get_str(&fx->cx, pt_conf_map_get(r, "s"), &s), 0);
    assert_string_equal(s, "hello");
    assert_int_equal(pt_conf_get_bool(&fx->cx, pt_conf_map_get(r, "b1"), &b), 0);
    assert_true(b);
    assert_int_equal(pt_conf_get_bool(&fx->cx, pt_conf_map_get(r, "b2"), &b), 0);
    assert_false(b);
    assert_int_equal(pt_conf_get_int(&fx->cx, pt_conf_map_get(r, "i"), -100, 100, &i), 0);
    assert_int_equal(i, -42);
    assert_int_equal(pt_conf_error_count(&fx->cx), 0);

    assert_int_equal(pt_conf_get_bool(&fx->cx, pt_conf_map_get(r, "b3"), &b), PT_ERR_INVALID);
    assert_first_error(fx, "t.yaml:4:5: expected true or false, got 'true'");
    assert_int_equal(pt_conf_get_int(&fx->cx, pt_conf_map_get(r, "big"), 0, 10, &i),
                     PT_ERR_INVALID);
    assert_int_equal(pt_conf_get_int(&fx->cx, pt_conf_map_get(r, "i"), 0, 10, &i), PT_ERR_INVALID);
    assert_int_equal(pt_conf_get_str(&fx->cx, pt_conf_map_get(r, "m"), &s), PT_ERR_INVALID);
    assert_int_equal(pt_conf_error_count(&fx->cx), 4);
    const char *e = errors(fx);
    assert_non_null(strstr(e, "t.yaml:6:6: expected an integer, got '99999999999999999999'\n"));
    assert_non_null(strstr(e, "t.yaml:5:4: value -42 out of range [0, 10]\n"));
    assert_non_null(strstr(e, "t.yaml:7:4: expected a string, got a map\n"));
}

static void test_durations(void **state)
{
    fixture_t *fx = *state;
    static const struct {
        const char *text;
        uint64_t ms;
    } ok[] = {{"250ms", 250}, {"5s", 5000}, {"2m", 120000},   {"1h", 3600000}, {"7", 7000},
              {"1.5s", 1500}, {"0", 0},     {"1d", 86400000}, {"0.25", 250}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pt_conf_node_t n = {.kind = PT_CONF_SCALAR,
                            .file = "t.yaml",
                            .line = 1,
                            .col = 1,
                            .str = ok[i].text,
                            .len = strlen(ok[i].text)};
        uint64_t v = 1234567;
        assert_int_equal(pt_conf_get_duration_ms(&fx->cx, &n, &v), 0);
        assert_int_equal(v, ok[i].ms);
    }
    static const char *const bad[] = {
        "", "-1s", "5 s", "5sec", "1.s", ".5s", "s", "99999999999999999999999h", "1e3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_conf_node_t n = {.kind = PT_CONF_SCALAR,
                            .file = "t.yaml",
                            .line = 2,
                            .col = 3,
                            .str = bad[i],
                            .len = strlen(bad[i])};
        uint64_t v = 77;
        assert_int_equal(pt_conf_get_duration_ms(&fx->cx, &n, &v), PT_ERR_INVALID);
        assert_int_equal(v, 77); /* untouched on error */
    }
    assert_int_equal(pt_conf_error_count(&fx->cx), sizeof(bad) / sizeof(bad[0]));
    assert_first_error(fx, "t.yaml:2:3: expected a duration (e.g. 250ms, 5s, 2m, 1h), got ''");
}

static void test_sizes(void **state)
{
    fixture_t *fx = *state;
    static const struct {
        const char *text;
        uint64_t v;
    } ok[] = {{"512", 512},      {"64k", 65536},        {"64KiB", 65536}, {"1m", 1048576},
              {"1MiB", 1048576}, {"2g", 2147483648ull}, {"10b", 10},      {"3KB", 3072}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pt_conf_node_t n = {.kind = PT_CONF_SCALAR,
                            .file = "t.yaml",
                            .line = 1,
                            .col = 1,
                            .str = ok[i].text,
                            .len = strlen(ok[i].text)};
        uint64_t v = 0;
        assert_int_equal(pt_conf_get_size(&fx->cx, &n, &v), 0);
        assert_int_equal(v, ok[i].v);
    }
    static const char *const bad[] = {"1.5m", "-1", "1x", "k", "1 k", "99999999999999999g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_conf_node_t n = {.kind = PT_CONF_SCALAR,
                            .file = "t.yaml",
                            .line = 1,
                            .col = 1,
                            .str = bad[i],
                            .len = strlen(bad[i])};
        uint64_t v = 0;
        assert_int_equal(pt_conf_get_size(&fx->cx, &n, &v), PT_ERR_INVALID);
    }
}

/* ---- field tables ----------------------------------------------------------------- */

typedef struct demo {
    const char *name;
    const char *file;
    bool flag;
    long long count;
    uint32_t port;
    uint64_t timeout_ms;
    uint64_t size;
    pt_conf_strlist_t list;
    pt_conf_strmap_t map;
    const pt_conf_node_t *raw;
    int custom;
} demo_t;

static int parse_custom(pt_conf_cx_t *cx, const pt_conf_node_t *n, void *dst)
{
    if (!pt__conf_is_plain(n, "magic"))
        return pt_conf_error(cx, n, "custom: expected magic");
    *(int *)dst = 42;
    return 0;
}

static const pt_conf_field_t demo_fields[] = {
    {"name", PT_CONF_T_STR, offsetof(demo_t, name), 0, 0, true, NULL},
    {"file", PT_CONF_T_PATH, offsetof(demo_t, file), 0, 0, false, NULL},
    {"flag", PT_CONF_T_BOOL, offsetof(demo_t, flag), 0, 0, false, NULL},
    {"count", PT_CONF_T_INT, offsetof(demo_t, count), 1, 10, false, NULL},
    {"port", PT_CONF_T_UINT32, offsetof(demo_t, port), 1, 65535, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(demo_t, timeout_ms), 10, 60000, false, NULL},
    {"size", PT_CONF_T_SIZE, offsetof(demo_t, size), 1, 1 << 20, false, NULL},
    {"list", PT_CONF_T_STRLIST, offsetof(demo_t, list), 0, 0, false, NULL},
    {"map", PT_CONF_T_STRMAP, offsetof(demo_t, map), 0, 0, false, NULL},
    {"raw", PT_CONF_T_NODE, offsetof(demo_t, raw), 0, 0, false, NULL},
    {"custom", PT_CONF_T_CUSTOM, offsetof(demo_t, custom), 0, 0, false, parse_custom},
    PT_CONF_FIELDS_END,
};

static void test_fields_ok(void **state)
{
    fixture_t *fx = *state;
    pt_conf_cx_t cx;
    pt__conf_cx_init(&cx, "/etc/portico/main.yaml", fx->errs);
    const char *text = "name: demo\nfile: certs/a.pem\nflag: yes\ncount: 3\nport: 8080\n"
                       "timeout: 250ms\nsize: 64k\nlist: [a, b]\nmap: {x: '1', y: two}\n"
                       "raw: [1, 2, 3]\ncustom: magic\n";
    const pt_conf_node_t *r = pt__conf_parse(&cx, text, strlen(text));
    assert_non_null(r);
    demo_t d = {0};
    assert_int_equal(pt_conf_parse_fields(&cx, r, demo_fields, &d), 0);
    assert_string_equal(d.name, "demo");
    assert_string_equal(d.file, "/etc/portico/certs/a.pem");
    assert_true(d.flag);
    assert_int_equal(d.count, 3);
    assert_int_equal(d.port, 8080);
    assert_int_equal(d.timeout_ms, 250);
    assert_int_equal(d.size, 65536);
    assert_int_equal(d.list.cnt, 2);
    assert_string_equal(d.list.v[1], "b");
    assert_int_equal(d.map.cnt, 2);
    assert_string_equal(d.map.v[0].key, "x");
    assert_string_equal(d.map.v[0].value, "1");
    assert_string_equal(d.map.v[1].value, "two");
    assert_int_equal(d.raw->kind, PT_CONF_SEQ);
    assert_int_equal(d.custom, 42);
    /* a single scalar is a list of one; absolute paths stay as they are */
    const char *t2 = "name: x\nlist: solo\nfile: /abs/f\n";
    r = pt__conf_parse(&cx, t2, strlen(t2));
    demo_t d2 = {0};
    assert_int_equal(pt_conf_parse_fields(&cx, r, demo_fields, &d2), 0);
    assert_int_equal(d2.list.cnt, 1);
    assert_string_equal(d2.list.v[0], "solo");
    assert_string_equal(d2.file, "/abs/f");
    assert_int_equal(pt_conf_error_count(&cx), 0);
    pt__conf_cx_dispose(&cx);
}

static void test_fields_errors(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *r = parse(fx, "nmae: demo\n"   /* unknown key, hint */
                                        "flag: maybe\n"  /* wrong type */
                                        "count: 11\n"    /* out of range */
                                        "port: 0\n"      /* out of range */
                                        "timeout: 1ms\n" /* duration out of range */
                                        "size: 2m\n"     /* size out of range */
                                        "list: {a: b}\n" /* wrong type */
                                        "map: [1]\n"     /* wrong type */
                                        "custom: nope\n" /* custom error */
                                        "bogus: 1\n");   /* unknown, no hint */
    assert_non_null(r);
    demo_t d = {0};
    assert_int_equal(pt_conf_parse_fields(&fx->cx, r, demo_fields, &d), PT_ERR_INVALID);
    const char *want = "t.yaml:1:1: unknown key 'nmae' (did you mean 'name'?)\n"
                       "t.yaml:2:7: expected true or false, got 'maybe'\n"
                       "t.yaml:3:8: value 11 out of range [1, 10]\n"
                       "t.yaml:4:7: value 0 out of range [1, 65535]\n"
                       "t.yaml:5:10: duration '1ms' out of range [10ms, 60s]\n"
                       "t.yaml:6:7: size '2m' out of range [1, 1048576] bytes\n"
                       "t.yaml:7:7: expected a list of strings, got a map\n"
                       "t.yaml:8:6: expected a map of strings, got a list\n"
                       "t.yaml:9:9: custom: expected magic\n"
                       "t.yaml:10:1: unknown key 'bogus'\n"
                       "t.yaml:1:1: missing required key 'name'\n";
    assert_string_equal(errors(fx), want);
    assert_int_equal(pt_conf_error_count(&fx->cx), 11);
}

static void test_fields_not_a_map(void **state)
{
    fixture_t *fx = *state;
    const pt_conf_node_t *r = parse(fx, "x: [1]\ny:\n");
    demo_t d = {0};
    assert_int_equal(pt_conf_parse_fields(&fx->cx, pt_conf_map_get(r, "x"), demo_fields, &d),
                     PT_ERR_INVALID);
    assert_first_error(fx, "t.yaml:1:4: expected a map, got a list");
    /* null counts as an empty map: only the required key is missing */
    assert_int_equal(pt_conf_parse_fields(&fx->cx, pt_conf_map_get(r, "y"), demo_fields, &d),
                     PT_ERR_INVALID);
    assert_non_null(strstr(errors(fx), "missing required key 'name'"));
}

static int released;
static void on_release(void *data)
{
    released += *(int *)data;
}

static void test_release_hooks(void **state)
{
    (void)state;
    pt_conf_cx_t cx;
    static int one = 1, ten = 10;
    released = 0;
    pt__conf_cx_init(&cx, "x.yaml", NULL);
    pt_conf_on_release(&cx, on_release, &one);
    pt_conf_on_release(&cx, on_release, &ten);
    assert_int_equal(pt_conf_error(&cx, NULL, "counted, not printed"), PT_ERR_INVALID);
    assert_int_equal(pt_conf_error_count(&cx), 1);
    pt__conf_cx_dispose(&cx);
    assert_int_equal(released, 11);
    /* taken arena: hooks run when the taker destroys it */
    pt__conf_cx_init(&cx, "x.yaml", NULL);
    pt_conf_on_release(&cx, on_release, &one);
    pt_arena_t *a = pt__conf_cx_take_arena(&cx);
    pt__conf_cx_dispose(&cx);
    assert_int_equal(released, 11);
    pt_arena_destroy(a);
    assert_int_equal(released, 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_tree_and_marks),
        T(test_json_input),
        T(test_empty_document),
        T(test_syntax_error),
        T(test_syntax_error_bad_indent),
        T(test_alias_refused),
        T(test_billion_laughs),
        T(test_alias_without_anchor),
        T(test_depth_cap),
        T(test_node_cap),
        T(test_size_cap),
        T(test_two_documents),
        T(test_duplicate_key),
        T(test_duplicate_key_big_map),
        T(test_complex_key),
        T(test_missing_file),
        T(test_getters),
        T(test_durations),
        T(test_sizes),
        T(test_fields_ok),
        T(test_fields_errors),
        T(test_fields_not_a_map),
        T(test_release_hooks),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
