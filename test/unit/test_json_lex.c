/*
 * test_json_lex.c -- the strict JSON pull lexer (transcoder/json_lex.c).
 *
 * Accept/reject cases in the style of JSONTestSuite (y_* must pass, n_* must
 * fail; written here, not copied), the depth bomb of SECURITY-CASES JP-2,
 * duplicate keys (JP-4), string decoding and token details.
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

#include "json_lex.h"
#include "portico/transcoder/xerr.h"

/* Lexes a whole document; returns 0 or the error code. */
static int lex_all_n(const char *s, size_t n, bool dupcheck, unsigned depth, pt_jlex_t *out)
{
    static pt_jlex_t lx;
    pt_jkeyset_t ks;
    pt_jkeyset_init(&ks, NULL);
    pt_jlex_init(&lx, s, n, depth);
    if (dupcheck)
        pt_jlex_set_keyset(&lx, &ks);
    pt_jtok_t t;
    int rc = 0;
    for (;;) {
        int ty = pt_jlex_next(&lx, &t);
        if (ty == PT_JTOK_ERROR) {
            rc = lx.err_code;
            break;
        }
        if (ty == PT_JTOK_EOF)
            break;
    }
    pt_jkeyset_dispose(&ks);
    if (out != NULL)
        *out = lx;
    return rc;
}

static int lex_all(const char *s) { return lex_all_n(s, strlen(s), true, 0, NULL); }

static void test_accepts(void **state)
{
    static const char *const ok[] = {
        "{}", "[]", "0", "-0", "1", "-1", "123", "1.5", "-0.0e+0", "1E5", "1e-5", "1.25E+10",
        "\"\"", "\"abc\"", "true", "false", "null", " \t\r\n{ } \t\r\n", "[1,2,3]",
        "[[],[[]],{}]", "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0000\"", "\"\\u00e9\\u20AC\"",
        "\"\\ud83d\\ude00\"",                 /* surrogate pair */
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", /* UTF-8 2,3,4 bytes */
        "\"\xef\xbf\xbf\"",                       /* U+FFFF noncharacter is valid UTF-8 */
        "\"\xf4\x8f\xbf\xbf\"",                   /* U+10FFFF */
        "123456789012345678901234567890",         /* big numbers are text */
        "1e400", "[\"a very long plain string that crosses several eight-byte blocks\"]",
        "{\"a\":{\"a\":{\"a\":1}}}", "[{\"a\":1},{\"a\":1}]",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = lex_all(ok[i]);
        if (rc != 0)
            fail_msg("rejected valid JSON #%zu: %s", i, ok[i]);
    }
    /* A NUL escape and an embedded NUL in a number context. */
    assert_int_equal(lex_all_n("\"a\\u0000b\"", 10, true, 0, NULL), 0);
}

static void test_rejects(void **state)
{
    static const char *const bad[] = {
        "", " ", "[", "]", "{", "}", "[1,]", "[1,,2]", "[,1]", "{\"a\":1,}", "{,}", "{\"a\"}",
        "{\"a\" 1}", "{\"a\":}", "{1:1}", "{a:1}", "{'a':1}", "['a']", "[1 2]", "[1]]", "[1]x",
        "{}{}", "01", "-01", "00", "1.", ".1", "-", "+1", "1e", "1e+", "1.e5", "0x10", "1.5.5",
        "NaN", "-NaN", "Infinity", "-Infinity", "nan", "tru", "nul", "fals", "True", "NULL",
        "\"abc", "\"\\x41\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"\\a\"",
        "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"\\udc00\"", "\"\\ud800\\ud800\"", "\"\\ud800x\"",
        "\"\t\"", "\"\n\"", "\"\x01\"", "\"\x1f\"",
        "\"\x80\"", "\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf0\x80\x80\xaf\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
        "\"\xc3\"", "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\"\xe2\x28\xa1\"",
        "\xef\xbb\xbf{}", /* BOM */
        "//c\n1", "/*c*/1", "[\"a\"\"b\"]", "{\"a\":1 \"b\":2}", "[1:2]",
        "{\"a\":1}}", "[}", "{]", "\x0c[]", /* form feed is not JSON whitespace */
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = lex_all_n(bad[i], strlen(bad[i]), true, 0, NULL);
        if (rc == 0)
            fail_msg("accepted invalid JSON #%zu: %s", i, bad[i]);
    }
    /* An embedded NUL after a value. */
    assert_int_not_equal(lex_all_n("[1]\0", 4, true, 0, NULL), 0);
    /* A NUL byte inside a string is a control character. */
    assert_int_not_equal(lex_all_n("\"a\0b\"", 5, true, 0, NULL), 0);
}

static void test_error_detail(void **state)
{
    pt_jlex_t lx;
    assert_int_equal(lex_all_n("[1,\n2,]", 7, true, 0, &lx), PT_XERR_INVALID);
    assert_int_equal(lx.err_pos, 6);
    assert_string_equal(lx.err_msg, "trailing comma in array");
    assert_int_equal(lex_all_n("{\"k\":\"\\ud800\"}", 14, true, 0, &lx), PT_XERR_INVALID);
    assert_int_equal(lx.err_pos, 6);
    assert_string_equal(lx.err_msg, "lone high surrogate in \\u escape");
    assert_int_equal(lex_all_n("{\"a\":1, \"a\":2}", 14, true, 0, &lx), PT_XERR_INVALID);
    assert_string_equal(lx.err_msg, "duplicate key in object");
    assert_int_equal(lx.err_pos, 8);
}

/* JP-2: 100k levels fail fast with a limit error; no recursion anywhere. */
static void test_depth_bomb(void **state)
{
    enum { n = 100000 };
    static char s[5 * n + 2];
    memset(s, '[', n);
    clock_t t0 = clock();
    pt_jlex_t lx;
    assert_int_equal(lex_all_n(s, n, true, 0, &lx), PT_XERR_LIMIT);
    assert_int_equal(lx.err_pos, 64);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + k, "{\"a\":", 5);
        k += 5;
    }
    assert_int_equal(lex_all_n(s, k, true, 0, &lx), PT_XERR_LIMIT);
    /* Depth limit honours the caller's setting and the hard cap. */
    memset(s, '[', 10);
    memset(s + 10, ']', 10);
    assert_int_equal(lex_all_n(s, 20, true, 10, NULL), 0);
    assert_int_equal(lex_all_n(s, 20, true, 9, NULL), PT_XERR_LIMIT);
    memset(s, '[', 3000);
    memset(s + 3000, ']', 3000);
    assert_int_equal(lex_all_n(s, 6000, true, 100000, &lx), PT_XERR_LIMIT);
    assert_int_equal(lx.err_pos, PT_JLEX_DEPTH_CAP);
    memset(s, '[', 1000);
    memset(s + 1000, ']', 1000);
    assert_int_equal(lex_all_n(s, 2000, true, 100000, &lx), 0);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 1.0);
}

static void test_tokens(void **state)
{
    const char *doc = "{\"k\\n\": [-1.5e3, \"v\", true, false, null, {}], \"n\": 7}";
    pt_jlex_t lx;
    pt_jlex_init(&lx, doc, strlen(doc), 0);
    pt_jtok_t t;
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_KEY);
    assert_int_equal(t.len, 3);
    assert_true(t.flags & PT_JTOK_F_ESC);
    char buf[8];
    assert_int_equal(pt_jstr_decode(t.s, t.len, buf), 2);
    assert_memory_equal(buf, "k\n", 2);
    assert_true(pt_jstr_eq(t.s, t.len, true, "k\n", 2));
    assert_false(pt_jstr_eq(t.s, t.len, true, "k", 1));
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_ARR_BEGIN);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_NUMBER);
    assert_int_equal(t.len, 6);
    assert_memory_equal(t.s, "-1.5e3", 6);
    assert_int_equal(t.flags, PT_JTOK_F_NEG | PT_JTOK_F_FRAC | PT_JTOK_F_EXP);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_STRING);
    assert_int_equal(t.flags, 0);
    assert_memory_equal(t.s, "v", 1);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_TRUE);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_FALSE);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_NULL);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_END);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_ARR_END);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_KEY);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_NUMBER);
    assert_int_equal(t.flags, 0);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_END);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_EOF);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_EOF);
}

static void test_decode(void **state)
{
    const char *raw = "a\\u00e9\\ud83d\\ude00\\/\\\"b\\u20ac";
    char out[64];
    size_t n = pt_jstr_decode(raw, strlen(raw), out);
    const char *want = "a\xc3\xa9\xf0\x9f\x98\x80/\"b\xe2\x82\xac";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_true(pt_jstr_eq(raw, strlen(raw), true, want, strlen(want)));
    assert_false(pt_jstr_eq(raw, strlen(raw), true, want, strlen(want) - 1));
    assert_true(pt_jstr_eq("abc", 3, false, "abc", 3));
    assert_false(pt_jstr_eq("abc", 3, false, "abd", 3));
}

static void test_skip(void **state)
{
    const char *doc = "{\"skip\":{\"x\":[1,{\"y\":[]}],\"z\":\"}\"},\"keep\":1}";
    pt_jlex_t lx;
    pt_jlex_init(&lx, doc, strlen(doc), 0);
    pt_jtok_t t;
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_KEY);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    assert_int_equal(pt_jlex_skip(&lx, &t), 0);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_KEY);
    assert_memory_equal(t.s, "keep", 4);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_NUMBER);
    assert_int_equal(pt_jlex_skip(&lx, &t), 0); /* scalar: nothing to skip */
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_END);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_EOF);
}

/* JP-4: duplicate keys per object, after unescaping; nocheck objects exempt. */
static void test_duplicates(void **state)
{
    assert_int_equal(lex_all("{\"a\":1,\"b\":{\"a\":2},\"c\":[{\"a\":1},{\"a\":1}]}"), 0);
    assert_int_equal(lex_all("{\"a\":1,\"b\":{\"a\":2,\"a\":3}}"), PT_XERR_INVALID);
    assert_int_equal(lex_all("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":1}"), PT_XERR_INVALID);
    assert_int_equal(lex_all("{\"ab\\u0063defghij\":1,\"abcdefghi\\u006a\":1}"), PT_XERR_INVALID);
    assert_int_equal(lex_all("{\"abcdefghij\":1,\"abcdefghik\":1}"), 0);
    /* Without a key set nothing is checked. */
    assert_int_equal(lex_all_n("{\"a\":1,\"a\":2}", 13, false, 0, NULL), 0);

    /* Many keys in one object: the set grows; a late duplicate is found. */
    size_t nkeys = 20000;
    char *s = malloc(nkeys * 16 + 64);
    assert_non_null(s);
    size_t k = 0;
    s[k++] = '{';
    for (size_t i = 0; i < nkeys; i++)
        k += (size_t)sprintf(s + k, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    s[k++] = '}';
    assert_int_equal(lex_all_n(s, k, true, 0, NULL), 0);
    k--;
    k += (size_t)sprintf(s + k, ",\"k12345\":0}");
    assert_int_equal(lex_all_n(s, k, true, 0, NULL), PT_XERR_INVALID);
    free(s);

    /* pt_jlex_nocheck exempts the innermost object only. */
    const char *doc = "{\"a\":1,\"a\":{\"b\":1,\"b\":2}}";
    pt_jkeyset_t ks;
    pt_jkeyset_init(&ks, NULL);
    pt_jlex_t lx;
    pt_jlex_init(&lx, doc, strlen(doc), 0);
    pt_jlex_set_keyset(&lx, &ks);
    pt_jtok_t t;
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    pt_jlex_nocheck(&lx);
    int ty;
    while ((ty = pt_jlex_next(&lx, &t)) != PT_JTOK_ERROR && ty != PT_JTOK_EOF)
        ;
    assert_int_equal(ty, PT_JTOK_ERROR);
    assert_string_equal(lx.err_msg, "duplicate key in object");
    assert_int_equal(lx.err_pos, 18);
    pt_jkeyset_dispose(&ks);
}

/* The key set reports allocation failure instead of crashing. */
static void *fail_alloc(void *ud, size_t n) { return NULL; }
static void *fail_realloc(void *ud, void *p, size_t n) { return NULL; }
static void fail_free(void *ud, void *p) {}

static void test_keyset_nomem(void **state)
{
    pt_allocator_t a = {fail_alloc, fail_realloc, fail_free, NULL};
    pt_jkeyset_t ks;
    pt_jkeyset_init(&ks, &a);
    pt_jlex_t lx;
    pt_jlex_init(&lx, "{\"a\":1}", 7, 0);
    pt_jlex_set_keyset(&lx, &ks);
    pt_jtok_t t;
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_ERROR);
    assert_int_equal(lx.err_code, PT_XERR_NOMEM);
    pt_jkeyset_dispose(&ks);
}

/* A lexer copy is an independent look-ahead cursor. */
static void test_lookahead_copy(void **state)
{
    const char *doc = "{\"x\":[1,2],\"@type\":\"t\"}";
    pt_jlex_t lx;
    pt_jlex_init(&lx, doc, strlen(doc), 0);
    pt_jtok_t t;
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_OBJ_BEGIN);
    pt_jlex_t ahead = lx;
    int found = 0;
    while (pt_jlex_next(&ahead, &t) == PT_JTOK_KEY) {
        if (pt_jstr_eq(t.s, t.len, false, "@type", 5))
            found = 1;
        pt_jlex_next(&ahead, &t);
        assert_int_equal(pt_jlex_skip(&ahead, &t), 0);
    }
    assert_true(found);
    assert_int_equal(pt_jlex_next(&lx, &t), PT_JTOK_KEY);
    assert_memory_equal(t.s, "x", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),      cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_error_detail), cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_tokens),       cmocka_unit_test(test_decode),
        cmocka_unit_test(test_skip),         cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_keyset_nomem), cmocka_unit_test(test_lookahead_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
