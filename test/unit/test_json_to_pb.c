/*
 * test_json_to_pb.c -- proto3 JSON -> protobuf binary (transcoder/json_to_pb.c).
 *
 * Exact wire bytes for every scalar, repeated, map, oneof and WKT shape (built
 * by hand with pbwire.h), every mapping error with its path, SECURITY-CASES
 * JP-1..JP-4, the HTTP binding API, round trips through pt_pb_to_json, and an
 * allocator that fails the Nth call (NOMEM, nothing leaked).
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

#include "pbwire.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/json.h"
#include "xfail_alloc.h"

static pt_descpool_t *pool;

static int setup(void **state)
{
    FILE *f = fopen(PT_TEST_DESC, "rb");
    if (f == NULL)
        return -1;
    static uint8_t set[1 << 20];
    size_t len = fread(set, 1, sizeof(set), f);
    fclose(f);
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &pool, &err) != 0)
        return -1;
    if (pt_descpool_add_set(pool, set, len, "xtest.pb", &err) != 0 ||
        pt_descpool_build(pool, &err) != 0) {
        fprintf(stderr, "pool: %s: %s\n", err.path, err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    pt_descpool_unref(pool);
    return 0;
}

static const pt_msgdesc_t *msg(const char *name)
{
    const pt_msgdesc_t *m = pt_descpool_message(pool, name, strlen(name));
    if (m == NULL)
        fail_msg("no message %s", name);
    return m;
}


static int conv(const char *type, const char *json, const pt_json_opts_t *o, pt_xbuf_t *out,
                pt_xerr_t *err)
{
    return pt_json_to_pb(pool, msg(type), json, strlen(json), o, out, err);
}

static void hexdump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 200; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "\n");
}

#define expect_pb(type, json, w) expect_pb_o(type, json, NULL, w)

static void expect_pb_o(const char *type, const char *json, const pt_json_opts_t *o,
                        const pbw_t *w)
{
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    int rc = conv(type, json, o, &out, &err);
    if (rc != 0)
        fail_msg("%s %s: rc %d: %s: %s", type, json, rc, err.path, err.msg);
    if (out.len != w->n || (w->n != 0 && memcmp(out.data, w->b, w->n) != 0)) {
        hexdump("got ", out.data, out.len);
        hexdump("want", w->b, w->n);
        fail_msg("%s %s: wrong bytes", type, json);
    }
    pt_xbuf_dispose(&out);
}

/* Expects an error with this code, exact path and a message containing `sub`. */
static void expect_err_o(const char *type, const char *json, const pt_json_opts_t *o, int code,
                         const char *path, const char *sub)
{
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xbuf_append(&out, "keep", 4);
    pt_xerr_t err;
    int rc = conv(type, json, o, &out, &err);
    if (rc != code)
        fail_msg("%s %s: rc %d (want %d): %s: %s", type, json, rc, code, err.path, err.msg);
    assert_int_equal(err.code, code);
    if (path != NULL && strcmp(err.path, path) != 0)
        fail_msg("%s %s: path \"%s\" (want \"%s\"), msg %s", type, json, err.path, path, err.msg);
    if (sub != NULL && strstr(err.msg, sub) == NULL)
        fail_msg("%s %s: msg \"%s\" lacks \"%s\"", type, json, err.msg, sub);
    assert_int_equal(out.len, 4); /* restored */
    pt_xbuf_dispose(&out);
}

#define expect_err(type, json, code, path, sub) expect_err_o(type, json, NULL, code, path, sub)
#define INV PT_XERR_INVALID

/* ================================================================ scalars */

static void test_scalars(void **state)
{
    pbw_t w = {0};
    pbw_double(&w, 1, 1.5);
    pbw_float(&w, 2, -2.5f);
    pbw_v(&w, 3, (uint64_t)INT64_MIN);
    pbw_v(&w, 4, UINT64_MAX);
    pbw_v(&w, 5, (uint64_t)(int64_t)-1);
    pbw_f64(&w, 6, 1);
    pbw_f32(&w, 7, 4294967295u);
    pbw_v(&w, 8, 1);
    pbw_str(&w, 9, "h\xc3\xa9\n\"/");
    pbw_bytes(&w, 12, "\x01\x02\x03", 3);
    pbw_v(&w, 13, 7);
    pbw_v(&w, 14, (uint64_t)(int64_t)-3);
    pbw_f32(&w, 15, (uint32_t)-2);
    pbw_f64(&w, 16, (uint64_t)-3);
    pbw_v(&w, 17, 1);
    pbw_v(&w, 18, 3);
    expect_pb("pt.test.Scalars",
              "{\"fDouble\":1.5,\"fFloat\":-2.5,\"fInt64\":\"-9223372036854775808\","
              "\"fUint64\":\"18446744073709551615\",\"fInt32\":-1,\"fFixed64\":\"1\","
              "\"fFixed32\":4294967295,\"fBool\":true,\"fString\":\"h\\u00e9\\n\\\"\\/\","
              "\"fBytes\":\"AQID\",\"fUint32\":7,\"fEnum\":\"BLUE\",\"fSfixed32\":-2,"
              "\"fSfixed64\":\"-3\",\"fSint32\":-1,\"fSint64\":\"-2\"}",
              &w);
    /* proto names, in any order, whitespace */
    w.n = 0;
    pbw_v(&w, 5, 5);
    pbw_v(&w, 17, pbw_zz(-64));
    expect_pb("pt.test.Scalars", " { \"f_int32\" : 5 ,\n \"f_sint32\":-64 } ", &w);
    /* json_name from the descriptor, and the proto name */
    w.n = 0;
    pbw_str(&w, 21, "x");
    expect_pb("pt.test.Scalars", "{\"my_custom\":\"x\"}", &w);
    expect_pb("pt.test.Scalars", "{\"custom\":\"x\"}", &w);
    expect_err("pt.test.Scalars", "{\"custom\":\"x\",\"my_custom\":\"y\"}", INV, "my_custom",
               "more than once");
    expect_err("pt.test.Scalars", "{\"fInt32\":1,\"f_int32\":2}", INV, "f_int32",
               "more than once");
    expect_err("pt.test.Scalars", "{\"fInt32\":1,\"fInt32\":2}", INV, "fInt32", "more than once");
}

static void test_defaults_and_presence(void **state)
{
    pbw_t w = {0};
    /* implicit presence: defaults are not written */
    expect_pb("pt.test.Scalars",
              "{\"fInt32\":0,\"fString\":\"\",\"fBool\":false,\"fEnum\":\"COLOR_UNSPECIFIED\","
              "\"fDouble\":0,\"fBytes\":\"\",\"fInt64\":\"0\",\"fFloat\":0.0,\"fSint64\":-0}",
              &w);
    /* -0.0 is not the default */
    pbw_double(&w, 1, -0.0);
    expect_pb("pt.test.Scalars", "{\"fDouble\":-0.0}", &w);
    /* proto3 optional: explicit presence, written even when default */
    w.n = 0;
    pbw_v(&w, 20, 0);
    pbw_str(&w, 22, "");
    expect_pb("pt.test.Scalars", "{\"optInt32\":0,\"optString\":\"\"}", &w);
    /* null means absent, for every kind of field */
    w.n = 0;
    expect_pb("pt.test.Scalars", "{\"fInt32\":null,\"fString\":null,\"optInt32\":null}", &w);
    expect_pb("pt.test.Repeated", "{\"rInt32\":null,\"rMsg\":null}", &w);
    expect_pb("pt.test.Maps", "{\"mStr\":null}", &w);
    expect_pb("pt.test.Nested", "{\"child\":null}", &w);
    expect_pb("pt.test.WKTs", "{\"ts\":null,\"i32v\":null,\"any\":null,\"st\":null}", &w);
    expect_pb("pt.test.Scalars", "{}", &w);
}

static void test_integers(void **state)
{
    pbw_t w = {0};
    pbw_v(&w, 5, 100);
    expect_pb("pt.test.Scalars", "{\"fInt32\":1e2}", &w);
    expect_pb("pt.test.Scalars", "{\"fInt32\":\"1e2\"}", &w);
    expect_pb("pt.test.Scalars", "{\"fInt32\":100.0}", &w);
    expect_pb("pt.test.Scalars", "{\"fInt32\":1000e-1}", &w);
    expect_pb("pt.test.Scalars", "{\"fInt32\":0.001e5}", &w);
    expect_pb("pt.test.Scalars", "{\"fInt32\":\"100\"}", &w);
    w.n = 0;
    pbw_v(&w, 5, (uint64_t)(int64_t)INT32_MIN);
    expect_pb("pt.test.Scalars", "{\"fInt32\":-2147483648}", &w);
    w.n = 0;
    pbw_v(&w, 3, 9007199254740993ull); /* not representable as a double: exact */
    expect_pb("pt.test.Scalars", "{\"fInt64\":9007199254740993}", &w);
    w.n = 0;
    pbw_v(&w, 3, (uint64_t)INT64_MAX);
    expect_pb("pt.test.Scalars", "{\"fInt64\":\"9223372036854775807\"}", &w);
    w.n = 0;
    pbw_v(&w, 4, 10000000000000000000ull);
    expect_pb("pt.test.Scalars", "{\"fUint64\":1e19}", &w);
    w.n = 0;
    expect_pb("pt.test.Scalars", "{\"fUint32\":-0}", &w); /* zero: default, omitted */

    expect_err("pt.test.Scalars", "{\"fInt32\":2147483648}", INV, "fInt32", "out of range");
    expect_err("pt.test.Scalars", "{\"fInt32\":-2147483649}", INV, "fInt32", "out of range");
    expect_err("pt.test.Scalars", "{\"fUint32\":-1}", INV, "fUint32", "out of range for uint32");
    expect_err("pt.test.Scalars", "{\"fUint32\":4294967296}", INV, "fUint32", "out of range");
    expect_err("pt.test.Scalars", "{\"fInt64\":9223372036854775808}", INV, "fInt64",
               "out of range for int64");
    expect_err("pt.test.Scalars", "{\"fInt64\":\"-9223372036854775809\"}", INV, "fInt64",
               "out of range");
    expect_err("pt.test.Scalars", "{\"fUint64\":\"18446744073709551616\"}", INV, "fUint64",
               "out of range");
    expect_err("pt.test.Scalars", "{\"fInt64\":1e400}", INV, "fInt64", "out of range");
    expect_err("pt.test.Scalars", "{\"fInt32\":1.5}", INV, "fInt32", "invalid int32 value: 1.5");
    expect_err("pt.test.Scalars", "{\"fInt32\":1e-1}", INV, "fInt32", "invalid");
    expect_err("pt.test.Scalars", "{\"fInt32\":\"12a\"}", INV, "fInt32", "invalid");
    expect_err("pt.test.Scalars", "{\"fInt32\":\" 12\"}", INV, "fInt32", "invalid");
    expect_err("pt.test.Scalars", "{\"fInt32\":\"\"}", INV, "fInt32", "invalid");
    expect_err("pt.test.Scalars", "{\"fInt32\":true}", INV, "fInt32", "expected int32, got bool");
    expect_err("pt.test.Scalars", "{\"fInt32\":[1]}", INV, "fInt32", "expected int32, got array");
    expect_err("pt.test.Scalars", "{\"fSint64\":{}}", INV, "fSint64", "got object");
}

static void test_floats(void **state)
{
    pbw_t w = {0};
    pbw_double(&w, 1, 1e308);
    pbw_float(&w, 2, 3.4028234e38f);
    expect_pb("pt.test.Scalars", "{\"fDouble\":1e308,\"fFloat\":3.4028234e38}", &w);
    w.n = 0;
    pbw_double(&w, 1, 0.1);
    pbw_float(&w, 2, 0.1f);
    expect_pb("pt.test.Scalars", "{\"fDouble\":\"0.1\",\"fFloat\":\"1e-1\"}", &w);
    w.n = 0;
    pbw_f64(&w, 1, 0x7ff8000000000000ull);
    pbw_float(&w, 2, -__builtin_inff());
    expect_pb("pt.test.Scalars", "{\"fDouble\":\"NaN\",\"fFloat\":\"-Infinity\"}", &w);
    w.n = 0;
    pbw_double(&w, 1, __builtin_inf());
    expect_pb("pt.test.Scalars", "{\"fDouble\":\"Infinity\"}", &w);
    /* a very long number text still parses */
    w.n = 0;
    pbw_double(&w, 1, 1.0);
    char big[400] = "{\"fDouble\":1.";
    size_t k = strlen(big);
    memset(big + k, '0', 300);
    strcpy(big + k + 300, "}");
    expect_pb("pt.test.Scalars", big, &w);

    expect_err("pt.test.Scalars", "{\"fDouble\":1e400}", INV, "fDouble", "out of range for double");
    expect_err("pt.test.Scalars", "{\"fDouble\":-1e400}", INV, "fDouble", "out of range");
    expect_err("pt.test.Scalars", "{\"fFloat\":3.5e38}", INV, "fFloat", "out of range for float");
    expect_err("pt.test.Scalars", "{\"fFloat\":\"-1e39\"}", INV, "fFloat", "out of range");
    expect_err("pt.test.Scalars", "{\"fDouble\":\"nan\"}", INV, "fDouble", "invalid double");
    expect_err("pt.test.Scalars", "{\"fDouble\":\"inf\"}", INV, "fDouble", "invalid double");
    expect_err("pt.test.Scalars", "{\"fDouble\":NaN}", INV, "", "invalid JSON");
    expect_err("pt.test.Scalars", "{\"fDouble\":Infinity}", INV, "", "invalid JSON");
    expect_err("pt.test.Scalars", "{\"fDouble\":true}", INV, "fDouble", "expected double");
}

static void test_strings_bytes_bool(void **state)
{
    pbw_t w = {0};
    pbw_bytes(&w, 12, "\xfb\xff", 2);
    expect_pb("pt.test.Scalars", "{\"fBytes\":\"+/8=\"}", &w);
    expect_pb("pt.test.Scalars", "{\"fBytes\":\"-_8=\"}", &w);
    expect_pb("pt.test.Scalars", "{\"fBytes\":\"-_8\"}", &w);
    expect_pb("pt.test.Scalars", "{\"fBytes\":\"+\\/8\"}", &w); /* escaped '/' */
    expect_err("pt.test.Scalars", "{\"fBytes\":\"a$b=\"}", INV, "fBytes", "base64");
    expect_err("pt.test.Scalars", "{\"fBytes\":\"A\"}", INV, "fBytes", "base64");
    expect_err("pt.test.Scalars", "{\"fBytes\":\"AA=A\"}", INV, "fBytes", "base64");
    expect_err("pt.test.Scalars", "{\"fBytes\":5}", INV, "fBytes", "expected base64 string");
    /* a long string with escapes: the length prefix shrinks correctly */
    w.n = 0;
    char json[700], want[300];
    size_t k = (size_t)sprintf(json, "{\"fString\":\"");
    for (int i = 0; i < 100; i++) {
        memcpy(json + k, "\\u0041", 6);
        k += 6;
        want[i] = 'A';
    }
    strcpy(json + k, "\"}");
    pbw_bytes(&w, 9, want, 100);
    expect_pb("pt.test.Scalars", json, &w); /* raw 600 bytes (2-byte varint) -> 100 (1 byte) */
    expect_err("pt.test.Scalars", "{\"fString\":12}", INV, "fString",
               "expected string, got number 12");
    expect_err("pt.test.Scalars", "{\"fString\":\"\\ud800\"}", INV, "", "lone high surrogate");
    expect_err("pt.test.Scalars", "{\"fString\":\"\xff\"}", INV, "", "invalid UTF-8");
    expect_err("pt.test.Scalars", "{\"fBool\":\"true\"}", INV, "fBool", "expected bool");
    expect_err("pt.test.Scalars", "{\"fBool\":1}", INV, "fBool", "expected bool");
}

static void test_enums(void **state)
{
    pbw_t w = {0};
    pbw_v(&w, 14, 2);
    expect_pb("pt.test.Scalars", "{\"fEnum\":\"GREEN\"}", &w);
    expect_pb("pt.test.Scalars", "{\"fEnum\":2}", &w);
    expect_pb("pt.test.Scalars", "{\"fEnum\":\"2\"}", &w);
    pt_json_opts_t ci = {.enum_case_insensitive = true};
    expect_pb_o("pt.test.Scalars", "{\"fEnum\":\"green\"}", &ci, &w);
    expect_err("pt.test.Scalars", "{\"fEnum\":\"green\"}", INV, "fEnum",
               "invalid value \"green\" for enum pt.test.Color");
    /* open enum: unknown numbers are kept */
    w.n = 0;
    pbw_v(&w, 14, 99);
    expect_pb("pt.test.Scalars", "{\"fEnum\":99}", &w);
    expect_err("pt.test.Scalars", "{\"fEnum\":\"PURPLE\"}", INV, "fEnum", "PURPLE");
    expect_err("pt.test.Scalars", "{\"fEnum\":2147483648}", INV, "fEnum", "out of range");
    expect_err("pt.test.Scalars", "{\"fEnum\":1.5}", INV, "fEnum", "invalid");
    expect_err("pt.test.Scalars", "{\"fEnum\":true}", INV, "fEnum", "expected enum");
    /* ignore_unknown: an unknown name drops the field / element / entry */
    pt_json_opts_t ign = {.ignore_unknown = true};
    w.n = 0;
    pbw_v(&w, 5, 1);
    expect_pb_o("pt.test.Scalars", "{\"fEnum\":\"PURPLE\",\"fInt32\":1}", &ign, &w);
    w.n = 0;
    uint8_t packed[] = {1, 2};
    pbw_bytes(&w, 3, packed, 2);
    expect_pb_o("pt.test.Repeated", "{\"rEnum\":[\"RED\",\"PURPLE\",\"GREEN\"]}", &ign, &w);
    w.n = 0;
    expect_pb_o("pt.test.Maps", "{\"mBool\":{\"true\":\"PURPLE\"}}", &ign, &w);
    /* proto2 closed enum: unknown numbers are errors */
    w.n = 0;
    pbw_str(&w, 2, "b");
    pbw_v(&w, 3, 5);
    expect_pb("pt.test2.P2", "{\"b\":\"b\",\"level\":5}", &w);
    expect_err("pt.test2.P2", "{\"b\":\"b\",\"level\":4}", INV, "level",
               "invalid value 4 for enum pt.test2.Level");
}

/* ================================================================ repeated / maps */

static void test_repeated(void **state)
{
    pbw_t w = {0};
    uint8_t p1[] = {1, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    pbw_bytes(&w, 1, p1, sizeof p1);
    pbw_str(&w, 2, "a");
    pbw_str(&w, 2, "");
    pbw_v(&w, 6, 1);
    pbw_v(&w, 6, 2);
    uint8_t p8[] = {3, 4};
    pbw_bytes(&w, 8, p8, 2);
    expect_pb("pt.test.Repeated",
              "{\"rInt32\":[1,128,-1],\"rString\":[\"a\",\"\"],\"rInt64\":[1,\"2\"],"
              "\"rSint64\":[-2,2],\"rMsg\":[]}",
              &w);
    /* packed fixed/bool/float, repeated messages */
    w.n = 0;
    uint8_t p9[] = {1, 0, 0, 0, 2, 0, 0, 0};
    pbw_bytes(&w, 9, p9, 8);
    uint8_t p10[] = {1, 0};
    pbw_bytes(&w, 10, p10, 2);
    pbw_t m1 = {0}, m2 = {0};
    pbw_v(&m1, 5, 7);
    pbw_msg(&w, 5, &m1);
    pbw_msg(&w, 5, &m2);
    expect_pb("pt.test.Repeated",
              "{\"rFixed32\":[1,2],\"rBool\":[true,false],\"rMsg\":[{\"fInt32\":7},{}]}", &w);
    expect_err("pt.test.Repeated", "{\"rInt32\":[1,null]}", INV, "rInt32[1]", "null");
    expect_err("pt.test.Repeated", "{\"rInt32\":1}", INV, "rInt32", "expected array, got number");
    expect_err("pt.test.Repeated", "{\"rMsg\":[{},{\"fString\":1}]}", INV, "rMsg[1].fString",
               "expected string, got number 1");
    expect_err("pt.test.Repeated", "{\"rInt32\":[1,2,]}", INV, "", "trailing comma");
}

static void test_maps(void **state)
{
    pbw_t w = {0}, e = {0};
#define ENTRY(field, ...)                                                                        \
    do {                                                                                         \
        e.n = 0;                                                                                 \
        __VA_ARGS__;                                                                             \
        pbw_msg(&w, field, &e);                                                                  \
    } while (0)
    ENTRY(1, pbw_str(&e, 1, "a"); pbw_v(&e, 2, 1));
    ENTRY(1, pbw_str(&e, 1, ""); pbw_v(&e, 2, 0));
    expect_pb("pt.test.Maps", "{\"mStr\":{\"a\":1,\"\":0}}", &w);
    w.n = 0;
    ENTRY(2, pbw_v(&e, 1, (uint64_t)(int64_t)-5); pbw_str(&e, 2, "x"));
    ENTRY(4, pbw_v(&e, 1, 1); pbw_v(&e, 2, 1));
    ENTRY(4, pbw_v(&e, 1, 0); pbw_v(&e, 2, (uint64_t)(int64_t)-3));
    ENTRY(5, pbw_v(&e, 1, 4294967295u); pbw_bytes(&e, 2, "\x01", 1));
    ENTRY(6, pbw_v(&e, 1, pbw_zz(-9)); pbw_str(&e, 2, "s"));
    ENTRY(7, pbw_f64(&e, 1, 18446744073709551615ull); pbw_str(&e, 2, "f"));
    ENTRY(9, pbw_v(&e, 1, 1); pbw_double(&e, 2, 2.5));
    ENTRY(10, pbw_f32(&e, 1, (uint32_t)-1); pbw_str(&e, 2, ""));
    expect_pb("pt.test.Maps",
              "{\"mInt32\":{\"-5\":\"x\"},\"mBool\":{\"true\":\"RED\",\"false\":\"BLUE\"},"
              "\"mUint32\":{\"4294967295\":\"AQ==\"},\"mSint64\":{\"-9\":\"s\"},"
              "\"mFixed64\":{\"18446744073709551615\":\"f\"},\"mUint64\":{\"1\":2.5},"
              "\"m_sfixed32\":{\"-1\":\"\"}}",
              &w);
    /* message values, Value values (null allowed there) */
    w.n = 0;
    pbw_t sub = {0};
    pbw_str(&sub, 9, "v");
    ENTRY(3, pbw_v(&e, 1, 7); pbw_msg(&e, 2, &sub));
    pbw_t nv = {0};
    pbw_v(&nv, 1, 0);
    ENTRY(8, pbw_str(&e, 1, "n"); pbw_msg(&e, 2, &nv));
    expect_pb("pt.test.Maps", "{\"mInt64\":{\"7\":{\"fString\":\"v\"}},\"mValue\":{\"n\":null}}",
              &w);
    /* an escaped key */
    w.n = 0;
    ENTRY(1, pbw_str(&e, 1, "\xc3\xa9"); pbw_v(&e, 2, 1));
    expect_pb("pt.test.Maps", "{\"mStr\":{\"\\u00e9\":1}}", &w);
    w.n = 0;
    ENTRY(2, pbw_v(&e, 1, 12); pbw_str(&e, 2, ""));
    expect_pb("pt.test.Maps", "{\"mInt32\":{\"\\u0031\\u0032\":\"\"}}", &w);
#undef ENTRY
    expect_err("pt.test.Maps", "{\"mInt32\":{\"abc\":\"x\"}}", INV, "mInt32[\"abc\"]",
               "invalid int32");
    expect_err("pt.test.Maps", "{\"mInt32\":{\"2147483648\":\"x\"}}", INV, "mInt32[\"2147483648\"]",
               "out of range");
    expect_err("pt.test.Maps", "{\"mUint32\":{\"-1\":\"\"}}", INV, "mUint32[\"-1\"]",
               "out of range");
    expect_err("pt.test.Maps", "{\"mBool\":{\"True\":\"RED\"}}", INV, "mBool[\"True\"]",
               "expected bool");
    expect_err("pt.test.Maps", "{\"mBool\":{\"1\":\"RED\"}}", INV, "mBool[\"1\"]", "bool");
    expect_err("pt.test.Maps", "{\"mStr\":{\"a\":null}}", INV, "mStr[\"a\"]", "null");
    expect_err("pt.test.Maps", "{\"mStr\":{\"a\":\"x\"}}", INV, "mStr[\"a\"]", "invalid int32");
    expect_err("pt.test.Maps", "{\"mStr\":[]}", INV, "mStr", "expected object, got array");
    expect_err("pt.test.Maps", "{\"mInt64\":{\"1\":{\"bogus\":1}}}", INV, "mInt64[\"1\"].bogus",
               "unknown field");
    /* JP-4: duplicate map keys */
    expect_err("pt.test.Maps", "{\"mStr\":{\"a\":1,\"a\":2}}", INV, "", "duplicate key");
    expect_err("pt.test.Maps", "{\"mStr\":{\"a\":1,\"\\u0061\":2}}", INV, "", "duplicate key");
}

/* ================================================================ oneof, nesting */

static void test_oneofs(void **state)
{
    pbw_t w = {0};
    pbw_str(&w, 1, "");
    pbw_v(&w, 5, 3);
    expect_pb("pt.test.Oneofs", "{\"name\":\"\",\"other\":3}", &w); /* member: default written */
    w.n = 0;
    pbw_v(&w, 2, 4);
    expect_pb("pt.test.Oneofs", "{\"name\":null,\"id\":4}", &w);
    w.n = 0;
    pbw_v(&w, 4, 0);
    expect_pb("pt.test.Oneofs", "{\"nothing\":null}", &w); /* NullValue: null is a value */
    w.n = 0;
    pbw_t empty = {0};
    pbw_msg(&w, 3, &empty);
    expect_pb("pt.test.Oneofs", "{\"msg\":{}}", &w);
    expect_err("pt.test.Oneofs", "{\"name\":\"a\",\"id\":1}", INV, "id",
               "oneof kind: fields \"name\" and \"id\" are both set");
    expect_err("pt.test.Oneofs", "{\"msg\":{},\"nothing\":null}", INV, "nothing", "both set");
}

static void test_nested_and_depth(void **state)
{
    pbw_t w = {0}, c1 = {0}, c2 = {0};
    pbw_str(&c2, 1, "b");
    pbw_str(&c1, 1, "a");
    pbw_msg(&c1, 3, &c2);
    pbw_msg(&c1, 3, &c2);
    pbw_msg(&w, 2, &c1);
    pbw_str(&w, 1, "r");
    expect_pb("pt.test.Nested",
              "{\"child\":{\"name\":\"a\",\"children\":[{\"name\":\"b\"},{\"name\":\"b\"}]},"
              "\"name\":\"r\"}",
              &w);
    expect_err("pt.test.Nested",
               "{\"child\":{\"children\":[{},{},{\"name\":12}]}}", INV,
               "child.children[2].name", "expected string, got number 12");
    expect_err("pt.test.Nested", "{\"child\":{\"children\":[{},{\"scalars\":{\"bogus\":1}}]}}",
               INV, "child.children[1].scalars.bogus", "unknown field in pt.test.Scalars");

    /* message nesting limit (default 64) */
    char *s = malloc(20 * 200 + 10);
    assert_non_null(s);
    for (int depth = 60; depth <= 70; depth += 10) {
        size_t k = 0;
        for (int i = 0; i < depth - 1; i++)
            k += (size_t)sprintf(s + k, "{\"child\":");
        k += (size_t)sprintf(s + k, "{}");
        for (int i = 0; i < depth - 1; i++)
            s[k++] = '}';
        s[k] = '\0';
        pt_xbuf_t out;
        pt_xbuf_init(&out, NULL);
        pt_xerr_t err;
        int rc = conv("pt.test.Nested", s, NULL, &out, &err);
        assert_int_equal(rc, depth <= 64 ? 0 : PT_XERR_LIMIT);
        if (depth == 60)
            assert_int_equal(out.len, 2 * 59);
        pt_json_opts_t o = {.max_depth = 100};
        rc = conv("pt.test.Nested", s, &o, &out, &err);
        assert_int_equal(rc, 0);
        pt_xbuf_dispose(&out);
    }
    free(s);
}

/* JP-2: 100k levels: fast error, nothing grows. */
static void test_depth_bomb(void **state)
{
    enum { N = 100000 };
    static char s[N * 9 + 16];
    size_t k = 0;
    for (int i = 0; i < N; i++) {
        memcpy(s + k, "{\"child\":", 9);
        k += 9;
    }
    clock_t t0 = clock();
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.Nested"), s, k, NULL, &out, &err),
                     PT_XERR_LIMIT);
    memset(s, '[', N);
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.Nested"), s, N, NULL, &out, &err),
                     PT_XERR_INVALID); /* expected object, got array */
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.WKTs"), "{\"val\":", 7, NULL, &out, &err),
                     PT_XERR_INVALID);
    k = (size_t)sprintf(s, "{\"val\":");
    memset(s + k, '[', N);
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.WKTs"), s, k + N, NULL, &out, &err),
                     PT_XERR_LIMIT);
    k = (size_t)sprintf(s, "{\"st\":");
    for (int i = 0; i < N; i++) {
        memcpy(s + k, "{\"a\":", 5);
        k += 5;
    }
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.WKTs"), s, k, NULL, &out, &err),
                     PT_XERR_LIMIT);
    /* ignored unknown fields are skipped by the lexer, still depth-limited */
    pt_json_opts_t ign = {.ignore_unknown = true};
    k = (size_t)sprintf(s, "{\"zz\":");
    memset(s + k, '[', N);
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.Nested"), s, k + N, &ign, &out, &err),
                     PT_XERR_LIMIT);
    assert_int_equal(out.len, 0);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
    pt_xbuf_dispose(&out);
}

/* Lengths that need 1, 2 and 3 varint bytes, nested: compaction is exact. */
static void test_large_nested(void **state)
{
    size_t n1 = 200, n2 = 20000;
    char *json = malloc(n1 + n2 + 100);
    assert_non_null(json);
    size_t k = (size_t)sprintf(json, "{\"name\":\"");
    memset(json + k, 'x', n1);
    k += n1;
    k += (size_t)sprintf(json + k, "\",\"child\":{\"child\":{},\"name\":\"");
    memset(json + k, 'y', n2);
    k += n2;
    k += (size_t)sprintf(json + k, "\"},\"children\":[{}]}");
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    assert_int_equal(pt_json_to_pb(pool, msg("pt.test.Nested"), json, k, NULL, &out, &err), 0);
    /* hand-encoded expectation */
    size_t child_len = 2 + (1 + 3 + n2);
    uint8_t *want = malloc(n1 + n2 + 100);
    size_t w = 0;
    want[w++] = 0x0a;
    want[w++] = (uint8_t)(0x80 | (n1 & 0x7f));
    want[w++] = (uint8_t)(n1 >> 7);
    memset(want + w, 'x', n1);
    w += n1;
    want[w++] = 0x12;
    want[w++] = (uint8_t)(0x80 | (child_len & 0x7f));
    want[w++] = (uint8_t)(0x80 | ((child_len >> 7) & 0x7f));
    want[w++] = (uint8_t)(child_len >> 14);
    want[w++] = 0x12;
    want[w++] = 0x00;
    want[w++] = 0x0a;
    want[w++] = (uint8_t)(0x80 | (n2 & 0x7f));
    want[w++] = (uint8_t)(0x80 | ((n2 >> 7) & 0x7f));
    want[w++] = (uint8_t)(n2 >> 14);
    memset(want + w, 'y', n2);
    w += n2;
    want[w++] = 0x1a;
    want[w++] = 0x00;
    assert_int_equal(out.len, w);
    assert_memory_equal(out.data, want, w);
    free(want);
    free(json);
    pt_xbuf_dispose(&out);
}

/* ================================================================ proto2 */

static void test_proto2(void **state)
{
    pbw_t w = {0};
    pbw_str(&w, 2, "x");
    pbw_tag(&w, 5, 3);
    pbw_v(&w, 6, 9);
    pbw_tag(&w, 5, 4);
    uint8_t pk[] = {1, 2};
    pbw_bytes(&w, 7, pk, 2);
    pbw_v(&w, 4, 3);
    pbw_v(&w, 1, 0); /* proto2 optional: presence, written even when 0 */
    expect_pb("pt.test2.P2",
              "{\"b\":\"x\",\"grp\":{\"x\":9},\"packed\":[1,2],\"unpacked\":[3],\"a\":0}", &w);
    expect_err("pt.test2.P2", "{\"a\":1}", INV, "b", "missing required field");
    expect_err("pt.test2.P2", "{\"b\":null}", INV, "b", "missing required field");
    expect_err("pt.test2.P2", "{\"b\":\"x\",\"next\":{}}", INV, "next.b", "missing required");
    /* the list form names every missing field */
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    const char *j = "{\"next\":{\"next\":{\"b\":\"\"}}}";
    assert_int_equal(pt_json_to_pb_errs(pool, msg("pt.test2.P2"), j, strlen(j), NULL, &out, &errs),
                     INV);
    assert_int_equal(errs.cnt, 2);
    assert_string_equal(errs.items[0].path, "next.b");
    assert_string_equal(errs.items[1].path, "b");
    pt_xbuf_dispose(&out);
}

/* ================================================================ unknown, lists */

static void test_unknown_fields(void **state)
{
    expect_err("pt.test.Scalars", "{\"bogus\":1}", INV, "bogus", "unknown field in pt.test.Scalars");
    expect_err("pt.test.Scalars", "{\"FInt32\":1}", INV, "FInt32", "unknown field");
    pt_json_opts_t ign = {.ignore_unknown = true};
    pbw_t w = {0};
    pbw_v(&w, 5, 1);
    expect_pb_o("pt.test.Scalars",
                "{\"bogus\":{\"a\":[1,{\"b\":null}]},\"fInt32\":1,\"zz\":\"\\u00e9\"}", &ign, &w);
    /* unknown objects are still strictly lexed, duplicates included */
    expect_err_o("pt.test.Scalars", "{\"bogus\":{\"a\":1,\"a\":2}}", &ign, INV, "",
                 "duplicate key");
    expect_err_o("pt.test.Scalars", "{\"bogus\":[1,]}", &ign, INV, "", "trailing comma");
}

static void test_error_list(void **state)
{
    const char *j = "{\"bogus\":1,\"fInt32\":\"x\",\"fString\":5,\"fEnum\":\"NOPE\","
                    "\"other\":{},\"fBool\":true,\"fUint32\":-1}";
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    int rc = pt_json_to_pb_errs(pool, msg("pt.test.Scalars"), j, strlen(j), NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(errs.cnt, 6);
    const char *paths[] = {"bogus", "fInt32", "fString", "fEnum", "other", "fUint32"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(errs.items[i].path, paths[i]);
    assert_int_equal(out.len, 0);
    /* nested and repeated problems too */
    pt_xerrs_clear(&errs);
    j = "{\"rMsg\":[{\"fInt32\":\"a\"},{\"nope\":[1,2]},{\"fEnum\":{}}],\"rInt32\":[1,\"b\",3]}";
    rc = pt_json_to_pb_errs(pool, msg("pt.test.Repeated"), j, strlen(j), NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(errs.cnt, 4);
    assert_string_equal(errs.items[0].path, "rMsg[0].fInt32");
    assert_string_equal(errs.items[1].path, "rMsg[1].nope");
    assert_string_equal(errs.items[2].path, "rMsg[2].fEnum");
    assert_string_equal(errs.items[3].path, "rInt32[1]");
    /* a syntax error stops at once */
    pt_xerrs_clear(&errs);
    j = "{\"bogus\":1,\"fInt32\":01}";
    rc = pt_json_to_pb_errs(pool, msg("pt.test.Scalars"), j, strlen(j), NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(errs.cnt, 2);
    assert_non_null(strstr(errs.items[1].msg, "leading zero"));
    /* the list is bounded */
    pt_xerrs_clear(&errs);
    char big[4000];
    size_t k = (size_t)sprintf(big, "{");
    for (int i = 0; i < 100; i++)
        k += (size_t)sprintf(big + k, "%s\"u%d\":1", i ? "," : "", i);
    strcpy(big + k, "}");
    rc = pt_json_to_pb_errs(pool, msg("pt.test.Scalars"), big, strlen(big), NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(errs.cnt, PT_XERRS_MAX);
    pt_xbuf_dispose(&out);
}

/* ================================================================ WKTs */

static void test_wkt_time(void **state)
{
    pbw_t w = {0}, t = {0};
    pbw_v(&t, 1, 1704067200);
    pbw_v(&t, 2, 500000000);
    pbw_msg(&w, 2, &t);
    expect_pb("pt.test.WKTs", "{\"ts\":\"2024-01-01T00:00:00.5Z\"}", &w);
    expect_pb("pt.test.WKTs", "{\"ts\":\"2024-01-01T01:00:00.500+01:00\"}", &w);
    w.n = 0;
    t.n = 0;
    pbw_v(&t, 1, (uint64_t)-62135596800LL);
    pbw_msg(&w, 2, &t);
    expect_pb("pt.test.WKTs", "{\"ts\":\"0001-01-01T00:00:00Z\"}", &w);
    w.n = 0;
    pbw_msg(&w, 2, &(pbw_t){0});
    expect_pb("pt.test.WKTs", "{\"ts\":\"1970-01-01T00:00:00Z\"}", &w);
    expect_err("pt.test.WKTs", "{\"ts\":\"10000-01-01T00:00:00Z\"}", INV, "ts", "Timestamp");
    expect_err("pt.test.WKTs", "{\"ts\":\"0000-12-31T23:59:59Z\"}", INV, "ts", "Timestamp");
    expect_err("pt.test.WKTs", "{\"ts\":\"2024-01-01\"}", INV, "ts", "Timestamp");
    expect_err("pt.test.WKTs", "{\"ts\":1704067200}", INV, "ts", "expected RFC 3339");
    w.n = 0;
    t.n = 0;
    pbw_v(&t, 1, 1);
    pbw_v(&t, 2, 500000000);
    pbw_msg(&w, 3, &t);
    expect_pb("pt.test.WKTs", "{\"dur\":\"1.5s\"}", &w);
    w.n = 0;
    t.n = 0;
    pbw_v(&t, 1, (uint64_t)-315576000000LL);
    pbw_msg(&w, 3, &t);
    expect_pb("pt.test.WKTs", "{\"dur\":\"-315576000000s\"}", &w);
    w.n = 0;
    t.n = 0;
    pbw_v(&t, 2, (uint64_t)(int64_t)-1000);
    pbw_msg(&w, 3, &t);
    expect_pb("pt.test.WKTs", "{\"dur\":\"-0.000001s\"}", &w);
    expect_err("pt.test.WKTs", "{\"dur\":\"315576000001s\"}", INV, "dur", "Duration");
    expect_err("pt.test.WKTs", "{\"dur\":\"1.5\"}", INV, "dur", "Duration");
    expect_err("pt.test.WKTs", "{\"dur\":1.5}", INV, "dur", "expected duration string");
    /* top-level WKT JSON forms */
    w.n = 0;
    pbw_v(&w, 1, 3);
    expect_pb("google.protobuf.Duration", "\"3s\"", &w);
}

static void test_wkt_fieldmask_wrappers(void **state)
{
    pbw_t w = {0}, t = {0};
    pbw_str(&t, 1, "user.display_name");
    pbw_str(&t, 1, "photo");
    pbw_msg(&w, 4, &t);
    expect_pb("pt.test.WKTs", "{\"fm\":\"user.displayName,photo\"}", &w);
    w.n = 0;
    pbw_msg(&w, 4, &(pbw_t){0});
    expect_pb("pt.test.WKTs", "{\"fm\":\"\"}", &w);
    expect_err("pt.test.WKTs", "{\"fm\":\"a,,b\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":\"a_b\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":\"a!b\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":\"a..b\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":\"a.1b\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":\"a.\"}", INV, "fm", "FieldMask");
    expect_err("pt.test.WKTs", "{\"fm\":[\"a\"]}", INV, "fm", "expected string");
    /* wrappers: the bare value; default written as an empty message */
    w.n = 0;
    t.n = 0;
    pbw_double(&t, 1, 1.5);
    pbw_msg(&w, 9, &t);
    t.n = 0;
    pbw_msg(&w, 13, &t);
    t.n = 0;
    pbw_v(&t, 1, 5);
    pbw_msg(&w, 11, &t);
    t.n = 0;
    pbw_v(&t, 1, 1);
    pbw_msg(&w, 15, &t);
    t.n = 0;
    pbw_str(&t, 1, "s");
    pbw_msg(&w, 16, &t);
    t.n = 0;
    pbw_bytes(&t, 1, "\x01", 1);
    pbw_msg(&w, 17, &t);
    t.n = 0;
    pbw_v(&t, 1, 4294967295u);
    pbw_msg(&w, 14, &t);
    t.n = 0;
    pbw_float(&t, 1, -1.0f);
    pbw_msg(&w, 10, &t);
    t.n = 0;
    pbw_v(&t, 1, UINT64_MAX);
    pbw_msg(&w, 12, &t);
    expect_pb("pt.test.WKTs",
              "{\"dv\":1.5,\"i32v\":0,\"i64v\":\"5\",\"bv\":true,\"sv\":\"s\",\"bytv\":\"AQ==\","
              "\"u32v\":4294967295,\"fv\":\"-1\",\"u64v\":\"18446744073709551615\"}",
              &w);
    expect_err("pt.test.WKTs", "{\"i32v\":{\"value\":1}}", INV, "i32v", "expected int32");
    expect_err("pt.test.WKTs", "{\"u32v\":-1}", INV, "u32v", "out of range");
    /* Empty */
    w.n = 0;
    pbw_msg(&w, 8, &(pbw_t){0});
    expect_pb("pt.test.WKTs", "{\"empty\":{}}", &w);
    expect_err("pt.test.WKTs", "{\"empty\":{\"a\":1}}", INV, "empty.a", "unknown field");
    /* a singular proto3 NullValue field: null is its (default) value, not written */
    w.n = 0;
    expect_pb("pt.test.WKTs", "{\"nv\":null}", &w);
    expect_pb("pt.test.WKTs", "{\"nv\":\"NULL_VALUE\"}", &(pbw_t){0});
}

static void test_wkt_struct_value(void **state)
{
    /* Value of each kind */
    pbw_t w = {0}, v = {0}, s = {0}, e = {0}, l = {0};
    pbw_v(&v, 1, 0);
    pbw_msg(&w, 6, &v);
    expect_pb("pt.test.WKTs", "{\"val\":null}", &w);
    w.n = 0;
    v.n = 0;
    pbw_double(&v, 2, 0);
    pbw_msg(&w, 6, &v);
    expect_pb("pt.test.WKTs", "{\"val\":0}", &w);
    w.n = 0;
    v.n = 0;
    pbw_str(&v, 3, "");
    pbw_msg(&w, 6, &v);
    expect_pb("pt.test.WKTs", "{\"val\":\"\"}", &w);
    w.n = 0;
    v.n = 0;
    pbw_v(&v, 4, 0);
    pbw_msg(&w, 6, &v);
    expect_pb("pt.test.WKTs", "{\"val\":false}", &w);
    /* {"a":[1,"x",{}],"b":null} as a Struct */
    w.n = 0;
    pbw_t item = {0}, lv = {0}, sv = {0};
    pbw_double(&item, 2, 1);
    pbw_msg(&lv, 1, &item);
    item.n = 0;
    pbw_str(&item, 3, "x");
    pbw_msg(&lv, 1, &item);
    item.n = 0;
    pbw_msg(&item, 5, &(pbw_t){0});
    pbw_msg(&lv, 1, &item);
    v.n = 0;
    pbw_msg(&v, 6, &lv);
    pbw_str(&e, 1, "a");
    pbw_msg(&e, 2, &v);
    pbw_msg(&s, 1, &e);
    e.n = 0;
    v.n = 0;
    pbw_v(&v, 1, 0);
    pbw_str(&e, 1, "b");
    pbw_msg(&e, 2, &v);
    pbw_msg(&s, 1, &e);
    pbw_msg(&w, 5, &s);
    expect_pb("pt.test.WKTs", "{\"st\":{\"a\":[1,\"x\",{}],\"b\":null}}", &w);
    /* the same Struct inside a Value */
    w.n = 0;
    pbw_msg(&sv, 5, &s);
    pbw_msg(&w, 6, &sv);
    expect_pb("pt.test.WKTs", "{\"val\":{\"a\":[1,\"x\",{}],\"b\":null}}", &w);
    /* ListValue */
    w.n = 0;
    pbw_msg(&w, 7, &lv);
    expect_pb("pt.test.WKTs", "{\"lv\":[1,\"x\",{}]}", &w);
    (void)l;
    expect_err("pt.test.WKTs", "{\"st\":[]}", INV, "st", "expected object");
    expect_err("pt.test.WKTs", "{\"lv\":{}}", INV, "lv", "expected array");
    expect_err("pt.test.WKTs", "{\"st\":{\"a\":1,\"a\":2}}", INV, "", "duplicate key");
    expect_err("pt.test.WKTs", "{\"val\":1e999}", INV, "val", "out of range");
    expect_err("pt.test.WKTs", "{\"st\":{\"k\":{\"z\":[1e999]}}}", INV, "st[\"k\"][\"z\"][0]",
               "out of range");
    /* a top-level Value and Struct */
    w.n = 0;
    pbw_v(&w, 1, 0);
    expect_pb("google.protobuf.Value", "null", &w);
    w.n = 0;
    pbw_v(&w, 4, 1);
    expect_pb("google.protobuf.Value", "true", &w);
}

static void test_wkt_any(void **state)
{
    /* regular message: @type first, or last */
    pbw_t w = {0}, a = {0}, inner = {0};
    pbw_v(&inner, 5, 7);
    pbw_str(&a, 1, "type.googleapis.com/pt.test.Scalars");
    pbw_msg(&a, 2, &inner);
    pbw_msg(&w, 1, &a);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"@type\":\"type.googleapis.com/pt.test.Scalars\",\"fInt32\":7}}", &w);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"fInt32\":7,\"@type\":\"type.googleapis.com/pt.test.Scalars\"}}", &w);
    /* WKT inside Any: the "value" form */
    w.n = 0;
    a.n = 0;
    inner.n = 0;
    pbw_v(&inner, 1, 1);
    pbw_str(&a, 1, "type.googleapis.com/google.protobuf.Duration");
    pbw_msg(&a, 2, &inner);
    pbw_msg(&w, 1, &a);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"@type\":\"type.googleapis.com/google.protobuf.Duration\","
              "\"value\":\"1s\"}}",
              &w);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"value\":\"1s\",\"@type\":\"type.googleapis.com/"
              "google.protobuf.Duration\"}}",
              &w);
    /* Empty in Any; empty Any */
    w.n = 0;
    a.n = 0;
    pbw_str(&a, 1, "type.googleapis.com/google.protobuf.Empty");
    pbw_msg(&w, 1, &a);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"@type\":\"type.googleapis.com/google.protobuf.Empty\",\"value\":{}}}",
              &w);
    expect_pb("pt.test.WKTs",
              "{\"any\":{\"@type\":\"type.googleapis.com/google.protobuf.Empty\"}}", &w);
    w.n = 0;
    pbw_msg(&w, 1, &(pbw_t){0});
    expect_pb("pt.test.WKTs", "{\"any\":{}}", &w);
    /* Any in Any, in a repeated field */
    w.n = 0;
    pbw_t outer = {0};
    a.n = 0;
    inner.n = 0;
    pbw_str(&inner, 1, "n");
    pbw_str(&a, 1, "x/pt.test.Nested");
    pbw_msg(&a, 2, &inner);
    pbw_str(&outer, 1, "type.googleapis.com/google.protobuf.Any");
    pbw_msg(&outer, 2, &a);
    pbw_msg(&w, 19, &outer);
    expect_pb("pt.test.WKTs",
              "{\"anys\":[{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":"
              "{\"name\":\"n\",\"@type\":\"x/pt.test.Nested\"}}]}",
              &w);
    expect_err("pt.test.WKTs", "{\"any\":{\"@type\":\"type.googleapis.com/no.Such\"}}",
               PT_XERR_NOT_FOUND, "any.@type", "unknown type");
    expect_err("pt.test.WKTs", "{\"any\":{\"fInt32\":1}}", INV, "any", "missing \"@type\"");
    expect_err("pt.test.WKTs", "{\"any\":{\"@type\":1}}", INV, "any.@type", "must be a string");
    expect_err("pt.test.WKTs",
               "{\"any\":{\"@type\":\"t/pt.test.Scalars\",\"@type\":\"t/pt.test.Scalars\"}}", INV,
               "any.@type", "more than once");
    expect_err("pt.test.WKTs", "{\"any\":{\"@type\":\"t/pt.test.Scalars\",\"bogus\":1}}", INV,
               "any.bogus", "unknown field in pt.test.Scalars");
    expect_err("pt.test.WKTs",
               "{\"any\":{\"@type\":\"t/google.protobuf.Duration\",\"value\":\"x\"}}", INV,
               "any.value", "Duration");
    expect_err("pt.test.WKTs",
               "{\"any\":{\"@type\":\"t/google.protobuf.Duration\",\"seconds\":1}}", INV,
               "any.seconds", "unknown field");
    expect_err("pt.test.WKTs", "{\"any\":{\"@type\":\"t/pt.test.Scalars\",\"fInt32\":[}}", INV,
               "", "invalid JSON");
}

/* ================================================================ JP-1 / JP-4 */

/* JSONTestSuite-style cases (our own): n_* rejected, y_* pass the JSON layer. */
static void test_json_suite(void **state)
{
    static const char *const n_cases[] = {
        "[1,]", "{\"a\":1,}", "[01]", "[-01]", "[1.]", "[.5]", "[1e]", "[+1]", "[0x1]", "[NaN]",
        "[Infinity]", "[-Infinity]", "['a']", "[\"\\x\"]", "[\"\\ud800\"]", "[\"\\udc00\"]",
        "[\"\\ud800\\u0020\"]", "[\"\t\"]", "[\"\x01\"]", "[\"\xc0\x80\"]", "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]", "[\"\xff\"]", "[\"\xe2\x82\"]", "[1 2]", "[1,,2]", "[,]",
        "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{a:1}", "{\"a\"}", "[", "{", "[[]", "[]]", "[]x",
        "[] []", "\xef\xbb\xbf[]", "[true false]", "[tru]", "[nul]", "[True]", "", " ",
        "{\"a\":1}/**/", "[1]//", "[\"a\"\x00]", "{\"a\":1,\"a\":1}", "[\"\\u00G0\"]",
        "[-]", "[1e+]", "[1.e1]", "[\"abc]", "\"\\", "[1,2",
    };
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    const pt_msgdesc_t *val = msg("google.protobuf.Value");
    for (size_t i = 0; i < sizeof(n_cases) / sizeof(n_cases[0]); i++) {
        int rc = pt_json_to_pb(pool, val, n_cases[i], strlen(n_cases[i]), NULL, &out, &err);
        if (rc != PT_XERR_INVALID)
            fail_msg("n case #%zu accepted: %s", i, n_cases[i]);
        assert_non_null(strstr(err.msg, "invalid JSON"));
    }
    /* one with an embedded NUL */
    assert_int_equal(pt_json_to_pb(pool, val, "[1]\0", 4, NULL, &out, &err), PT_XERR_INVALID);
    static const char *const y_cases[] = {
        "[]", "{}", "0", "-0", "[-0.0e-0]", "1E+2", "[1e-2]", "\"\"", "\"\\u0000\"",
        "[\"\\ud83d\\ude00\"]", "[\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"]", "[\"\xf0\x9f\x98\x80\"]",
        "{\"\":{\"\":[]}}", " [ 1 , { \"a\" : [ ] } ] ", "[null,true,false]", "123456789",
        "{\"a\":{\"a\":1},\"b\":{\"a\":1}}", "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof(y_cases) / sizeof(y_cases[0]); i++) {
        int rc = pt_json_to_pb(pool, val, y_cases[i], strlen(y_cases[i]), NULL, &out, &err);
        if (rc != 0)
            fail_msg("y case #%zu rejected: %s: %s", i, y_cases[i], err.msg);
    }
    /* y_ documents against a message type: the mapping may refuse, never the lexer */
    for (size_t i = 0; i < sizeof(y_cases) / sizeof(y_cases[0]); i++) {
        int rc = pt_json_to_pb(pool, msg("pt.test.Scalars"), y_cases[i], strlen(y_cases[i]), NULL,
                               &out, &err);
        if (rc != 0)
            assert_null(strstr(err.msg, "invalid JSON"));
    }
    pt_xbuf_dispose(&out);
}

/* ================================================================ bindings */

static void test_bindings(void **state)
{
    const pt_msgdesc_t *m = msg("pt.test.WKTs");
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
#define B(p, v) {p, strlen(p), NULL, 0, v, strlen(v)}
    pt_json_binding_t b1[] = {
        B("ts", "2024-01-01T00:00:00Z"), B("dur", "1.5s"), B("fm", "a.bC,d"),
        B("i32v", "-4"), B("bv", "true"), B("val", "hello"), B("nv", "NULL_VALUE"),
    };
    int rc = pt_json_to_pb_bind(pool, m, NULL, NULL, 0, b1, 7, NULL, &out, &errs);
    if (rc != 0)
        fail_msg("%s: %s", errs.items[0].path, errs.items[0].msg);
    pbw_t w = {0}, t = {0};
    pbw_v(&t, 1, 1704067200);
    pbw_msg(&w, 2, &t);
    t.n = 0;
    pbw_v(&t, 1, 1);
    pbw_v(&t, 2, 500000000);
    pbw_msg(&w, 3, &t);
    t.n = 0;
    pbw_str(&t, 1, "a.b_c");
    pbw_str(&t, 1, "d");
    pbw_msg(&w, 4, &t);
    t.n = 0;
    pbw_v(&t, 1, (uint64_t)(int64_t)-4);
    pbw_msg(&w, 13, &t);
    t.n = 0;
    pbw_v(&t, 1, 1);
    pbw_msg(&w, 15, &t);
    t.n = 0;
    pbw_str(&t, 3, "hello");
    pbw_msg(&w, 6, &t);
    pbw_v(&w, 18, 0);
    assert_int_equal(out.len, w.n);
    assert_memory_equal(out.data, w.b, w.n);

    /* nested paths, json and proto names, enums, repeated, maps, body merge */
    pt_xbuf_reset(&out);
    m = msg("pt.test.Nested");
    pt_json_binding_t b2[] = {
        B("child.scalars.fEnum", "GREEN"), B("scalars.f_int64", "1e2"),
        B("child.name", "n"), B("scalars.fBool", "false"), B("name", "path-wins"),
    };
    const char *body = "{\"name\":\"body\",\"scalars\":{\"fString\":\"s\"}}";
    rc = pt_json_to_pb_bind(pool, m, NULL, body, strlen(body), b2, 5, NULL, &out, &errs);
    if (rc != 0)
        fail_msg("%s: %s", errs.items[0].path, errs.items[0].msg);
    w.n = 0;
    pbw_str(&w, 1, "body");
    t.n = 0;
    pbw_str(&t, 9, "s");
    pbw_msg(&w, 4, &t);
    pbw_t sc = {0}, ch = {0};
    pbw_v(&sc, 14, 2);
    pbw_msg(&ch, 4, &sc);
    pbw_msg(&w, 2, &ch);
    t.n = 0;
    pbw_v(&t, 3, 100);
    pbw_msg(&w, 4, &t);
    ch.n = 0;
    pbw_str(&ch, 1, "n");
    pbw_msg(&w, 2, &ch);
    t.n = 0;
    pbw_v(&t, 8, 0); /* forced: overrides a body value */
    pbw_msg(&w, 4, &t);
    pbw_str(&w, 1, "path-wins");
    if (out.len != w.n || memcmp(out.data, w.b, w.n) != 0) {
        hexdump("got ", out.data, out.len);
        hexdump("want", w.b, w.n);
        fail();
    }

    /* repeated and map fields; body to a field */
    pt_xbuf_reset(&out);
    m = msg("pt.test.Repeated");
    pt_json_binding_t b3[] = {B("rInt32", "1"), B("r_int32", "2"), B("rEnum", "BLUE"),
                              B("rString", "a b")};
    rc = pt_json_to_pb_bind(pool, m, NULL, NULL, 0, b3, 4, NULL, &out, &errs);
    assert_int_equal(rc, 0);
    w.n = 0;
    pbw_v(&w, 1, 1);
    pbw_v(&w, 1, 2);
    pbw_v(&w, 3, (uint64_t)(int64_t)-3);
    pbw_str(&w, 2, "a b");
    assert_int_equal(out.len, w.n);
    assert_memory_equal(out.data, w.b, w.n);

    pt_xbuf_reset(&out);
    m = msg("pt.test.Maps");
    pt_json_binding_t b4[] = {{"m_str", 5, "env", 3, "7", 1}, {"mBool", 5, "false", 5, "RED", 3}};
    rc = pt_json_to_pb_bind(pool, m, NULL, NULL, 0, b4, 2, NULL, &out, &errs);
    assert_int_equal(rc, 0);
    w.n = 0;
    pbw_t e = {0};
    pbw_str(&e, 1, "env");
    pbw_v(&e, 2, 7);
    pbw_msg(&w, 1, &e);
    e.n = 0;
    pbw_v(&e, 1, 0);
    pbw_v(&e, 2, 1);
    pbw_msg(&w, 4, &e);
    assert_int_equal(out.len, w.n);
    assert_memory_equal(out.data, w.b, w.n);

    /* body: "child" */
    pt_xbuf_reset(&out);
    m = msg("pt.test.Nested");
    const pt_fielddesc_t *child = pt_msgdesc_field_by_name(m, "child", 5);
    pt_json_binding_t b5[] = {B("name", "top")};
    body = "{\"name\":\"c\"}";
    rc = pt_json_to_pb_bind(pool, m, child, body, strlen(body), b5, 1, NULL, &out, &errs);
    assert_int_equal(rc, 0);
    w.n = 0;
    ch.n = 0;
    pbw_str(&ch, 1, "c");
    pbw_msg(&w, 2, &ch);
    pbw_str(&w, 1, "top");
    assert_int_equal(out.len, w.n);
    assert_memory_equal(out.data, w.b, w.n);
    /* body errors are prefixed with the body field */
    pt_xerrs_clear(&errs);
    body = "{\"name\":1}";
    rc = pt_json_to_pb_bind(pool, m, child, body, strlen(body), NULL, 0, NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_string_equal(errs.items[0].path, "child.name");

    /* every problem is reported, with the binding's path */
    pt_xerrs_clear(&errs);
    pt_xbuf_reset(&out);
    m = msg("pt.test.Nested");
    pt_json_binding_t bad[] = {
        B("scalars.fInt32", "2147483648"), B("scalars.fEnum", "PURPLE"), B("nope", "1"),
        B("children.name", "x"), B("scalars.fBool", "yes"), B("scalars", "x"),
        B("name", "a"), B("name", "b"), B("scalars.fString", "\xff"),
    };
    body = "{\"bogus\":1}";
    rc = pt_json_to_pb_bind(pool, m, NULL, body, strlen(body), bad, 9, NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(out.len, 0);
    const char *want[][2] = {
        {"nope", "unknown field"},
        {"children.name", "not a singular message"},
        {"scalars", "cannot be set from a text"},
        {"name", "more than once"},
        {"bogus", "unknown field"},
        {"scalars.fInt32", "out of range"},
        {"scalars.fEnum", "PURPLE"},
        {"scalars.fBool", "expected bool"},
        {"scalars.fString", "UTF-8"},
    };
    if (errs.cnt != 9) {
        for (size_t i = 0; i < errs.cnt; i++)
            fprintf(stderr, "%s: %s\n", errs.items[i].path, errs.items[i].msg);
        fail();
    }
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(errs.items[i].path, want[i][0]);
        if (strstr(errs.items[i].msg, want[i][1]) == NULL)
            fail_msg("%s: %s", errs.items[i].path, errs.items[i].msg);
    }
    /* map key errors */
    pt_xerrs_clear(&errs);
    m = msg("pt.test.Maps");
    pt_json_binding_t b6[] = {{"mInt32", 6, "x\"y", 3, "v", 1}, {"mStr", 4, NULL, 0, "1", 1},
                              {"mStr", 4, "k", 1, "z", 1}};
    rc = pt_json_to_pb_bind(pool, m, NULL, NULL, 0, b6, 3, NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_int_equal(errs.cnt, 3);
    assert_string_equal(errs.items[0].path, "mStr");
    assert_string_equal(errs.items[1].path, "mInt32[\"x\\\"y\"]");
    assert_string_equal(errs.items[2].path, "mStr[\"k\"]");
    /* proto2 required satisfied by a binding */
    pt_xerrs_clear(&errs);
    m = msg("pt.test2.P2");
    pt_json_binding_t b7[] = {B("b", "x"), B("next.b", "y")};
    body = "{\"next\":{}}";
    rc = pt_json_to_pb_bind(pool, m, NULL, body, strlen(body), b7, 2, NULL, &out, &errs);
    if (rc != 0)
        fail_msg("%s: %s", errs.items[0].path, errs.items[0].msg);
    rc = pt_json_to_pb_bind(pool, m, NULL, NULL, 0, NULL, 0, NULL, &out, &errs);
    assert_int_equal(rc, INV);
    assert_string_equal(errs.items[0].path, "b");
#undef B
    assert_int_equal(pt_json_field_bindable(pt_msgdesc_field_by_name(msg("pt.test.WKTs"), "ts", 2)), 1);
    assert_int_equal(pt_json_field_bindable(pt_msgdesc_field_by_name(msg("pt.test.WKTs"), "st", 2)), 0);
    assert_int_equal(pt_json_field_bindable(pt_msgdesc_field_by_name(msg("pt.test.Maps"), "mStr", 4)), 1);
    assert_int_equal(pt_json_field_bindable(pt_msgdesc_field_by_name(msg("pt.test.Maps"), "mInt64", 6)), 0);
    pt_xbuf_dispose(&out);
}

/* ================================================================ round trips */

static void roundtrip(const char *type, const char *json, const pt_json_opts_t *o)
{
    const pt_msgdesc_t *m = msg(type);
    pt_xbuf_t pb, js, pb2;
    pt_xbuf_init(&pb, NULL);
    pt_xbuf_init(&js, NULL);
    pt_xbuf_init(&pb2, NULL);
    pt_xerr_t err;
    int rc = pt_json_to_pb(pool, m, json, strlen(json), o, &pb, &err);
    if (rc != 0)
        fail_msg("json->pb %s: %s: %s", json, err.path, err.msg);
    rc = pt_pb_to_json(pool, m, pb.data, pb.len, o, &js, &err);
    if (rc != 0)
        fail_msg("pb->json %s: %s: %s", json, err.path, err.msg);
    if (js.len != strlen(json) || memcmp(js.data, json, js.len) != 0)
        fail_msg("round trip:\n in  %s\n out %.*s", json, (int)js.len, (const char *)js.data);
    rc = pt_json_to_pb(pool, m, (const char *)js.data, js.len, o, &pb2, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(pb.len, pb2.len);
    assert_memory_equal(pb.data, pb2.data, pb.len);
    pt_xbuf_dispose(&pb);
    pt_xbuf_dispose(&js);
    pt_xbuf_dispose(&pb2);
}

static void test_roundtrip(void **state)
{
    roundtrip("pt.test.Scalars",
              "{\"fDouble\":1.5,\"fFloat\":-2.5,\"fInt64\":\"-9223372036854775808\","
              "\"fUint64\":\"18446744073709551615\",\"fInt32\":-1,\"fFixed64\":\"1\","
              "\"fFixed32\":4294967295,\"fBool\":true,\"fString\":\"h\xc3\xa9\\n\","
              "\"fBytes\":\"AQID\",\"fUint32\":7,\"fEnum\":\"BLUE\",\"fSfixed32\":-2,"
              "\"fSfixed64\":\"-3\",\"fSint32\":-1,\"fSint64\":\"-2\",\"optInt32\":0,"
              "\"my_custom\":\"c\"}",
              NULL);
    roundtrip("pt.test.Repeated",
              "{\"rInt32\":[1,128,-1],\"rString\":[\"a\",\"\"],\"rEnum\":[\"RED\",99],"
              "\"rDouble\":[0.1,\"NaN\",\"-Infinity\"],\"rMsg\":[{\"fInt32\":7},{}],"
              "\"rInt64\":[\"1\",\"2\"],\"rBytes\":[\"\",\"/w==\"],\"rSint64\":[\"-2\"],"
              "\"rFixed32\":[1],\"rBool\":[true,false],\"rFloat\":[1.5]}",
              NULL);
    roundtrip("pt.test.Maps",
              "{\"mStr\":{\"a\":1},\"mInt32\":{\"-5\":\"x\"},\"mInt64\":{\"7\":{\"fString\":\"v\"}},"
              "\"mBool\":{\"true\":\"RED\"},\"mValue\":{\"n\":null,\"l\":[1,\"s\",{\"x\":true}]}}",
              NULL);
    roundtrip("pt.test.Oneofs", "{\"msg\":{\"fInt32\":1},\"other\":3}", NULL);
    roundtrip("pt.test.Nested",
              "{\"name\":\"r\",\"child\":{\"name\":\"a\",\"children\":[{\"name\":\"b\"},{}]}}",
              NULL);
    roundtrip("pt.test.WKTs",
              "{\"any\":{\"@type\":\"type.googleapis.com/pt.test.Scalars\",\"fInt32\":7},"
              "\"ts\":\"2024-01-01T00:00:00.500Z\",\"dur\":\"-1.000001s\",\"fm\":\"a.bC,d\","
              "\"st\":{\"k\":[1,null]},\"val\":\"s\",\"lv\":[{}],\"empty\":{},\"dv\":1.5,"
              "\"i64v\":\"-5\",\"bv\":false,"
              "\"anys\":[{\"@type\":\"type.googleapis.com/google.protobuf.Duration\","
              "\"value\":\"1s\"}],\"rTs\":[\"1970-01-01T00:00:00Z\"]}",
              NULL);
    roundtrip("pt.test2.P2", "{\"a\":0,\"b\":\"x\",\"grp\":{\"x\":1},\"packed\":[1,2]}", NULL);
    pt_json_opts_t po = {.proto_names = true};
    roundtrip("pt.test.Scalars", "{\"f_int32\":5,\"custom\":\"c\"}", &po);
}

/* ================================================================ OOM */

static void test_nomem(void **state)
{
    const char *json =
        "{\"any\":{\"fInt32\":7,\"@type\":\"type.googleapis.com/pt.test.Scalars\"},"
        "\"st\":{\"a\":[1,\"x\",{\"b\":null}],\"c\":{\"d\":\"\\u00e9\"}},\"fm\":\"a.bC\","
        "\"anys\":[{\"@type\":\"t/pt.test.Nested\",\"children\":[{\"name\":\"x\"},{}]}]}";
    const pt_msgdesc_t *m = msg("pt.test.WKTs");
    size_t ok_len = 0;
    long n;
    for (n = 0; n < 1000; n++) {
        xfail_alloc_t fa;
        xfail_alloc_init(&fa, n);
        pt_xbuf_t out;
        pt_xbuf_init(&out, &fa.a);
        pt_xerr_t err;
        int rc = pt_json_to_pb(pool, m, json, strlen(json), NULL, &out, &err);
        if (rc == 0)
            ok_len = out.len;
        pt_xbuf_dispose(&out);
        assert_int_equal(fa.live, 0);
        if (rc == 0)
            break;
        assert_int_equal(rc, PT_XERR_NOMEM);
    }
    assert_true(n > 2 && n < 1000);
    assert_true(ok_len > 0);
    /* the binding path too */
    pt_json_binding_t b[] = {{"name", 4, NULL, 0, "x", 1}, {"child.name", 10, NULL, 0, "y", 1}};
    for (n = 0; n < 1000; n++) {
        xfail_alloc_t fa;
        xfail_alloc_init(&fa, n);
        pt_xbuf_t out;
        pt_xbuf_init(&out, &fa.a);
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        int rc = pt_json_to_pb_bind(pool, msg("pt.test.Nested"), NULL, "{\"children\":[{}]}", 17,
                                    b, 2, NULL, &out, &errs);
        pt_xbuf_dispose(&out);
        assert_int_equal(fa.live, 0);
        if (rc == 0)
            break;
        assert_int_equal(rc, PT_XERR_NOMEM);
    }
    assert_true(n < 1000);
}

static void test_limits(void **state)
{
    pt_json_opts_t o = {.max_size = 12};
    expect_err_o("pt.test.Scalars", "{\"fInt32\":12345}", &o, PT_XERR_LIMIT, "", "limit");
    pbw_t w = {0};
    pbw_v(&w, 5, 1);
    expect_pb_o("pt.test.Scalars", "{\"fInt32\":1}", &o, &w);
    /* appends after existing content */
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xbuf_append(&out, "ab", 2);
    pt_xerr_t err;
    assert_int_equal(conv("pt.test.Nested", "{\"child\":{\"name\":\"x\"}}", NULL, &out, &err), 0);
    assert_int_equal(out.len, 2 + 5);
    assert_memory_equal(out.data, "ab\x12\x03\x0a\x01x", 7);
    pt_xbuf_dispose(&out);
    /* wrong top-level shapes */
    expect_err("pt.test.Scalars", "[]", INV, "", "expected object, got array");
    expect_err("pt.test.Scalars", "null", INV, "", "expected object, got null");
    expect_err("pt.test.Scalars", "{} x", INV, "", "invalid JSON");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_defaults_and_presence),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_strings_bytes_bool),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_repeated),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_oneofs),
        cmocka_unit_test(test_nested_and_depth),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_large_nested),
        cmocka_unit_test(test_proto2),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_error_list),
        cmocka_unit_test(test_wkt_time),
        cmocka_unit_test(test_wkt_fieldmask_wrappers),
        cmocka_unit_test(test_wkt_struct_value),
        cmocka_unit_test(test_wkt_any),
        cmocka_unit_test(test_json_suite),
        cmocka_unit_test(test_bindings),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_nomem),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
