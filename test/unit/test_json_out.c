/* test_json_out.c -- protobuf binary -> proto3 JSON, every mapping rule and error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pbwire.h"
#include "portico/transcoder/json.h"
#include "portico/transcoder/wkt.h"
#include "xfail_alloc.h"

static pt_descpool_t *pool;

static int setup(void **state)
{
    (void)state;
    FILE *f = fopen(PT_TEST_DESC, "rb");
    assert_non_null(f);
    static uint8_t set[1 << 20];
    size_t len = fread(set, 1, sizeof set, f);
    fclose(f);
    pt_xerr_t err;
    assert_int_equal(pt_descpool_new(NULL, &pool, &err), 0);
    assert_int_equal(pt_descpool_add_set(pool, set, len, "xtest.pb", &err), 0);
    assert_int_equal(pt_descpool_build(pool, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_descpool_unref(pool);
    return 0;
}

static const pt_msgdesc_t *msg(const char *name)
{
    const pt_msgdesc_t *m = pt_descpool_message(pool, name, strlen(name));
    assert_non_null(m);
    return m;
}

static pt_json_opts_t O; /* options for the next conversion; reset by each test */

/* Converts and checks the JSON text. */
#define CONV(type, w, want) conv_ok(type, (w)->b, (w)->n, want, __LINE__)
static void conv_ok(const char *type, const uint8_t *b, size_t n, const char *want, int line)
{
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    int rc = pt_pb_to_json(pool, msg(type), b, n, &O, &out, &err);
    if (rc != 0)
        fail_msg("line %d: rc %d: %s: %s", line, rc, err.path, err.msg);
    pt_xbuf_terminate(&out);
    if (strcmp((const char *)out.data, want) != 0)
        fail_msg("line %d:\n got  %s\n want %s", line, (const char *)out.data, want);
    pt_xbuf_dispose(&out);
}

/* Converts expecting an error; checks code, path and a message fragment. */
#define CONV_ERR(type, w, code, path, frag) conv_err(type, (w)->b, (w)->n, code, path, frag, __LINE__)
static void conv_err(const char *type, const uint8_t *b, size_t n, int code, const char *path,
                     const char *frag, int line)
{
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xbuf_append(&out, "keep", 4);
    pt_xerr_t err;
    int rc = pt_pb_to_json(pool, msg(type), b, n, &O, &out, &err);
    if (rc != code)
        fail_msg("line %d: rc %d, want %d (%s: %s)", line, rc, code, err.path, err.msg);
    assert_int_equal(err.code, code);
    assert_int_equal(out.len, 4); /* output restored */
    if (path != NULL && strcmp(err.path, path) != 0)
        fail_msg("line %d: path \"%s\", want \"%s\" (%s)", line, err.path, path, err.msg);
    if (strstr(err.msg, frag) == NULL)
        fail_msg("line %d: message \"%s\" lacks \"%s\"", line, err.msg, frag);
    pt_xbuf_dispose(&out);
}

static void reset_opts(void) { memset(&O, 0, sizeof O); }

/* ---- scalars -------------------------------------------------------------------- */

static void test_scalars(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    CONV("pt.test.Scalars", &w, "{}");
    pbw_double(&w, 1, 1.5);
    pbw_float(&w, 2, 0.1f);
    pbw_v(&w, 3, (uint64_t)-5);
    pbw_v(&w, 4, UINT64_MAX);
    pbw_v(&w, 5, (uint64_t)(int64_t)-2147483648LL);
    pbw_f64(&w, 6, 18446744073709551615ull);
    pbw_f32(&w, 7, 4294967295u);
    pbw_v(&w, 8, 1);
    pbw_str(&w, 9, "h\xc3\xa9\"\n");
    pbw_bytes(&w, 12, "\xfb\xff", 2);
    pbw_v(&w, 13, 4294967295u);
    pbw_v(&w, 14, 2);
    pbw_f32(&w, 15, (uint32_t)-7);
    pbw_f64(&w, 16, (uint64_t)INT64_MIN);
    pbw_v(&w, 17, pbw_zz(-3));
    pbw_v(&w, 18, pbw_zz(INT64_MIN));
    pbw_str(&w, 21, "c");
    CONV("pt.test.Scalars", &w,
         "{\"fDouble\":1.5,\"fFloat\":0.1,\"fInt64\":\"-5\",\"fUint64\":\"18446744073709551615\","
         "\"fInt32\":-2147483648,\"fFixed64\":\"18446744073709551615\",\"fFixed32\":4294967295,"
         "\"fBool\":true,\"fString\":\"h\xc3\xa9\\\"\\n\",\"fBytes\":\"+/8=\",\"fUint32\":4294967295,"
         "\"fEnum\":\"GREEN\",\"fSfixed32\":-7,\"fSfixed64\":\"-9223372036854775808\",\"fSint32\":-3,"
         "\"fSint64\":\"-9223372036854775808\",\"my_custom\":\"c\"}");
    O.proto_names = true;
    O.enums_as_ints = true;
    pbw_t e = {.n = 0};
    pbw_v(&e, 14, 2);
    pbw_str(&e, 21, "c");
    CONV("pt.test.Scalars", &e, "{\"f_enum\":2,\"custom\":\"c\"}");
}

static void test_defaults_and_presence(void **state)
{
    (void)state;
    reset_opts();
    /* zero values on the wire of implicit-presence fields are not printed... */
    pbw_t w = {.n = 0};
    pbw_v(&w, 3, 0);
    pbw_str(&w, 9, "");
    pbw_double(&w, 1, 0.0);
    pbw_v(&w, 14, 0);
    CONV("pt.test.Scalars", &w, "{}");
    /* ...but -0.0 is not the default, and proto3 optional zero is present */
    pbw_t z = {.n = 0};
    pbw_double(&z, 1, -0.0);
    pbw_v(&z, 20, 0);
    pbw_str(&z, 22, "");
    CONV("pt.test.Scalars", &z, "{\"fDouble\":-0,\"optInt32\":0,\"optString\":\"\"}");
    /* emit_defaults prints every field without presence */
    O.emit_defaults = true;
    pbw_t none = {.n = 0};
    CONV("pt.test.Scalars", &none,
         "{\"fDouble\":0,\"fFloat\":0,\"fInt64\":\"0\",\"fUint64\":\"0\",\"fInt32\":0,\"fFixed64\":\"0\","
         "\"fFixed32\":0,\"fBool\":false,\"fString\":\"\",\"fBytes\":\"\",\"fUint32\":0,"
         "\"fEnum\":\"COLOR_UNSPECIFIED\",\"fSfixed32\":0,\"fSfixed64\":\"0\",\"fSint32\":0,"
         "\"fSint64\":\"0\",\"my_custom\":\"\"}");
    CONV("pt.test.Repeated", &none,
         "{\"rInt32\":[],\"rString\":[],\"rEnum\":[],\"rDouble\":[],\"rMsg\":[],\"rInt64\":[],"
         "\"rBytes\":[],\"rSint64\":[],\"rFixed32\":[],\"rBool\":[],\"rFloat\":[]}");
    CONV("pt.test.Oneofs", &none, "{\"other\":0}");
    /* message fields have presence: not printed when absent */
    CONV("pt.test.Nested", &none, "{\"name\":\"\",\"children\":[]}");
}

static void test_floats_special(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    pbw_double(&w, 1, NAN);
    pbw_float(&w, 2, -INFINITY);
    CONV("pt.test.Scalars", &w, "{\"fDouble\":\"NaN\",\"fFloat\":\"-Infinity\"}");
    pbw_t v = {.n = 0};
    pbw_double(&v, 1, 1e300);
    pbw_float(&v, 2, 3.4028235e38f);
    CONV("pt.test.Scalars", &v, "{\"fDouble\":1e+300,\"fFloat\":3.4028235e+38}");
}

static void test_enums(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    pbw_v(&w, 14, (uint64_t)(int64_t)-3);
    CONV("pt.test.Scalars", &w, "{\"fEnum\":\"BLUE\"}");
    pbw_t u = {.n = 0};
    pbw_v(&u, 14, 99); /* unknown numbers stay numbers */
    CONV("pt.test.Scalars", &u, "{\"fEnum\":99}");
}

/* ---- repeated, last-wins, merging ------------------------------------------------ */

static void test_repeated(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, pk = {.n = 0};
    /* r_int32: packed run, then an unpacked value, then another packed run */
    pbw_varint(&pk, 1);
    pbw_varint(&pk, (uint64_t)-1);
    pbw_bytes(&w, 1, pk.b, pk.n);
    pbw_v(&w, 1, 7);
    pbw_bytes(&w, 1, "\x08", 1);
    pbw_str(&w, 2, "a");
    pbw_str(&w, 2, "b");
    pbw_v(&w, 3, 1);
    pbw_v(&w, 3, 42);
    /* r_int64 is declared unpacked; packed input is accepted too */
    pbw_bytes(&w, 6, "\x01\x02", 2);
    pbw_v(&w, 6, 3);
    pbw_bytes(&w, 7, "\x00", 1);
    pbw_bytes(&w, 8, "\x03\x04", 2);
    pbw_bytes(&w, 9, "\x01\x00\x00\x00\xff\xff\xff\xff", 8);
    pbw_bytes(&w, 10, "\x01\x00", 2);
    pbw_t m1 = {.n = 0}, m2 = {.n = 0};
    pbw_str(&m1, 9, "x");
    pbw_msg(&w, 5, &m1);
    pbw_msg(&w, 5, &m2);
    CONV("pt.test.Repeated", &w,
         "{\"rInt32\":[1,-1,7,8],\"rString\":[\"a\",\"b\"],\"rEnum\":[\"RED\",42],"
         "\"rMsg\":[{\"fString\":\"x\"},{}],\"rInt64\":[\"1\",\"2\",\"3\"],\"rBytes\":[\"AA==\"],"
         "\"rSint64\":[\"-2\",\"2\"],\"rFixed32\":[1,4294967295],\"rBool\":[true,false]}");
}

static void test_last_wins_and_merge(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, s1 = {.n = 0}, s2 = {.n = 0};
    pbw_str(&w, 1, "first");
    pbw_str(&s1, 9, "a");
    pbw_v(&s1, 5, 1);
    pbw_msg(&w, 4, &s1);
    pbw_str(&w, 1, "second");
    pbw_v(&s2, 5, 2);
    pbw_v(&s2, 3, 9);
    pbw_msg(&w, 4, &s2); /* merged into the first occurrence */
    CONV("pt.test.Nested", &w, "{\"name\":\"second\",\"scalars\":{\"fInt64\":\"9\",\"fInt32\":2,\"fString\":\"a\"}}");
}

static void test_oneofs(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    pbw_str(&w, 1, "n");
    pbw_v(&w, 2, 0); /* the last member set wins, even with a zero value */
    CONV("pt.test.Oneofs", &w, "{\"id\":0}");
    pbw_t n = {.n = 0};
    pbw_v(&n, 2, 5);
    pbw_v(&n, 4, 0);
    CONV("pt.test.Oneofs", &n, "{\"nothing\":null}");
    pbw_t m = {.n = 0}, sub = {.n = 0};
    pbw_msg(&m, 3, &sub);
    pbw_v(&m, 5, 1);
    CONV("pt.test.Oneofs", &m, "{\"msg\":{},\"other\":1}");
}

/* ---- maps ------------------------------------------------------------------------ */

static void entry(pbw_t *w, uint32_t field, const pbw_t *key, const pbw_t *val)
{
    pbw_t e = {.n = 0};
    if (key)
        pbw_raw(&e, key->b, key->n);
    if (val)
        pbw_raw(&e, val->b, val->n);
    pbw_msg(w, field, &e);
}

static void test_maps(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, k = {.n = 0}, v = {.n = 0};
#define KV(field, kstmt, vstmt)  \
    do {                         \
        k.n = v.n = 0;           \
        kstmt;                   \
        vstmt;                   \
        entry(&w, field, &k, &v); \
    } while (0)
    KV(1, pbw_str(&k, 1, "a\"b"), pbw_v(&v, 2, 1));
    KV(1, pbw_str(&k, 1, "c"), pbw_v(&v, 2, 2));
    KV(1, pbw_str(&k, 1, "a\"b"), pbw_v(&v, 2, 3)); /* duplicate key: last wins */
    KV(2, pbw_v(&k, 1, (uint64_t)-4), pbw_str(&v, 2, "neg"));
    KV(3, pbw_v(&k, 1, (uint64_t)INT64_MIN), (void)0); /* value absent: default message */
    KV(4, pbw_v(&k, 1, 1), pbw_v(&v, 2, 1));
    KV(4, pbw_v(&k, 1, 0), pbw_v(&v, 2, 99));
    KV(5, pbw_v(&k, 1, 4294967295u), pbw_bytes(&v, 2, "\x01", 1));
    KV(6, pbw_v(&k, 1, pbw_zz(-9)), pbw_str(&v, 2, "z"));
    KV(7, pbw_f64(&k, 1, 18446744073709551615ull), pbw_str(&v, 2, "f"));
    KV(9, pbw_v(&k, 1, 3), pbw_double(&v, 2, 0.5));
    KV(10, pbw_f32(&k, 1, (uint32_t)-2), pbw_str(&v, 2, "s"));
    KV(2, pbw_v(&k, 1, 4294967292u), pbw_str(&v, 2, "neg again")); /* same int32 key, other encoding */
    entry(&w, 1, NULL, NULL); /* key and value absent: "" -> 0 */
    CONV("pt.test.Maps", &w,
         "{\"mStr\":{\"c\":2,\"a\\\"b\":3,\"\":0},\"mInt32\":{\"-4\":\"neg again\"},"
         "\"mInt64\":{\"-9223372036854775808\":{}},\"mBool\":{\"true\":\"RED\",\"false\":99},"
         "\"mUint32\":{\"4294967295\":\"AQ==\"},\"mSint64\":{\"-9\":\"z\"},"
         "\"mFixed64\":{\"18446744073709551615\":\"f\"},\"mUint64\":{\"3\":0.5},\"mSfixed32\":{\"-2\":\"s\"}}");
#undef KV
}

/* Entries not in the usual "key, value" shape take the general path. */
static void test_map_entry_shapes(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, e = {.n = 0};
    pbw_v(&e, 2, 5); /* value first */
    pbw_str(&e, 1, "v1");
    pbw_msg(&w, 1, &e);
    e.n = 0;
    pbw_str(&e, 1, "x"); /* key repeated inside the entry: the last one counts */
    pbw_str(&e, 1, "k2");
    pbw_v(&e, 2, 6);
    pbw_msg(&w, 1, &e);
    e.n = 0;
    pbw_str(&e, 1, "k3");
    pbw_v(&e, 9, 1); /* an unknown field inside the entry */
    pbw_v(&e, 2, 7);
    pbw_msg(&w, 1, &e);
    e.n = 0;
    pbw_v(&e, 2, 8); /* value only */
    pbw_msg(&w, 1, &e);
    CONV("pt.test.Maps", &w, "{\"mStr\":{\"v1\":5,\"k2\":6,\"k3\":7,\"\":8}}");
    /* a message value split in two occurrences is merged */
    pbw_t m = {.n = 0}, v1 = {.n = 0}, v2 = {.n = 0};
    e.n = 0;
    pbw_v(&e, 1, 1);
    pbw_str(&v1, 9, "a");
    pbw_msg(&e, 2, &v1);
    pbw_v(&v2, 5, 3);
    pbw_msg(&e, 2, &v2);
    pbw_msg(&m, 3, &e);
    CONV("pt.test.Maps", &m, "{\"mInt64\":{\"1\":{\"fInt32\":3,\"fString\":\"a\"}}}");
    /* malformed entries are errors with the map's path */
    pbw_t bad = {.n = 0};
    e.n = 0;
    pbw_raw(&e, "\x0a\x05" "ab", 4); /* key length past the entry */
    pbw_msg(&bad, 1, &e);
    CONV_ERR("pt.test.Maps", &bad, PT_XERR_CORRUPT, "mStr", "past the end");
    bad.n = 0;
    e.n = 0;
    pbw_v(&e, 1, 3); /* a string key sent as a varint */
    pbw_msg(&bad, 1, &e);
    CONV_ERR("pt.test.Maps", &bad, PT_XERR_CORRUPT, "mStr.key", "wrong wire type");
}

/* ---- well-known types ------------------------------------------------------------- */

static void test_wkt(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, s = {.n = 0};
    pbw_v(&s, 1, 1700000000);
    pbw_v(&s, 2, 5000000);
    pbw_msg(&w, 2, &s);
    s.n = 0;
    pbw_v(&s, 1, (uint64_t)-1);
    pbw_v(&s, 2, (uint64_t)(int64_t)-500000000);
    pbw_msg(&w, 3, &s);
    s.n = 0;
    pbw_str(&s, 1, "user.display_name");
    pbw_str(&s, 1, "id");
    pbw_msg(&w, 4, &s);
    s.n = 0;
    pbw_msg(&w, 8, &s); /* Empty */
    pbw_double(&s, 1, 2.5);
    pbw_msg(&w, 9, &s);
    s.n = 0;
    pbw_v(&s, 1, (uint64_t)-7);
    pbw_msg(&w, 11, &s);
    s.n = 0;
    pbw_msg(&w, 13, &s); /* Int32Value with no value: 0 */
    pbw_v(&s, 1, 1);
    pbw_msg(&w, 15, &s);
    s.n = 0;
    pbw_str(&s, 1, "str");
    pbw_msg(&w, 16, &s);
    s.n = 0;
    pbw_bytes(&s, 1, "hi", 2);
    pbw_msg(&w, 17, &s);
    pbw_v(&w, 18, 0);
    CONV("pt.test.WKTs", &w,
         "{\"ts\":\"2023-11-14T22:13:20.005Z\",\"dur\":\"-1.500s\",\"fm\":\"user.displayName,id\","
         "\"empty\":{},\"dv\":2.5,\"i64v\":\"-7\",\"i32v\":0,\"bv\":true,\"sv\":\"str\",\"bytv\":\"aGk=\"}");
    /* NullValue has implicit presence: printed (as null) only with emit_defaults */
    pbw_t nv = {.n = 0};
    pbw_v(&nv, 18, 0);
    CONV("pt.test.WKTs", &nv, "{}");
    O.emit_defaults = true;
    CONV("pt.test.Oneofs", &nv, "{\"other\":0}");
    pbw_t one = {.n = 0};
    pbw_v(&one, 4, 0);
    CONV("pt.test.Oneofs", &one, "{\"nothing\":null,\"other\":0}");
    O.emit_defaults = false;
}

static void test_struct_value(void **state)
{
    (void)state;
    reset_opts();
    /* Value kinds, inside a Struct and a ListValue */
    pbw_t st = {.n = 0}, k = {.n = 0}, v = {.n = 0}, lv = {.n = 0}, item = {.n = 0}, w = {.n = 0};
    k.n = 0; pbw_str(&k, 1, "n"); v.n = 0; pbw_double(&item, 2, 1.25); pbw_msg(&v, 2, &item);
    entry(&st, 1, &k, &v);
    k.n = 0; pbw_str(&k, 1, "s"); v.n = 0; item.n = 0; pbw_str(&item, 3, "x"); pbw_msg(&v, 2, &item);
    entry(&st, 1, &k, &v);
    k.n = 0; pbw_str(&k, 1, "b"); v.n = 0; item.n = 0; pbw_v(&item, 4, 0); pbw_msg(&v, 2, &item);
    entry(&st, 1, &k, &v);
    k.n = 0; pbw_str(&k, 1, "z"); v.n = 0; item.n = 0; pbw_v(&item, 1, 0); pbw_msg(&v, 2, &item);
    entry(&st, 1, &k, &v);
    /* list: [null, "y", {}] */
    item.n = 0; pbw_v(&item, 1, 0); pbw_msg(&lv, 1, &item);
    item.n = 0; pbw_str(&item, 3, "y"); pbw_msg(&lv, 1, &item);
    pbw_t empty_struct = {.n = 0};
    item.n = 0; pbw_msg(&item, 5, &empty_struct); pbw_msg(&lv, 1, &item);
    k.n = 0; pbw_str(&k, 1, "l"); v.n = 0; item.n = 0; pbw_msg(&item, 6, &lv); pbw_msg(&v, 2, &item);
    entry(&st, 1, &k, &v);
    pbw_msg(&w, 5, &st);
    item.n = 0;
    pbw_msg(&w, 6, &item); /* a Value with no kind: null */
    pbw_msg(&w, 7, &lv);
    CONV("pt.test.WKTs", &w,
         "{\"st\":{\"n\":1.25,\"s\":\"x\",\"b\":false,\"z\":null,\"l\":[null,\"y\",{}]},\"val\":null,"
         "\"lv\":[null,\"y\",{}]}");
    /* maps of Value */
    pbw_t m = {.n = 0};
    k.n = 0; pbw_str(&k, 1, "k"); v.n = 0; item.n = 0; pbw_v(&item, 4, 1); pbw_msg(&v, 2, &item);
    entry(&m, 8, &k, &v);
    CONV("pt.test.Maps", &m, "{\"mValue\":{\"k\":true}}");
    /* non-finite numbers have no Value form */
    pbw_t bad = {.n = 0};
    item.n = 0;
    pbw_double(&item, 2, INFINITY);
    pbw_msg(&bad, 6, &item);
    CONV_ERR("pt.test.WKTs", &bad, PT_XERR_INVALID, "val", "an infinity");
}

static void test_any(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, any = {.n = 0}, inner = {.n = 0};
    pbw_str(&inner, 9, "in");
    pbw_v(&inner, 14, 1);
    pbw_str(&any, 1, "type.googleapis.com/pt.test.Scalars");
    pbw_msg(&any, 2, &inner);
    pbw_msg(&w, 1, &any);
    /* a WKT inside Any uses the "value" form */
    pbw_t ts = {.n = 0}, any2 = {.n = 0};
    pbw_v(&ts, 1, 0);
    pbw_str(&any2, 1, "type.googleapis.com/google.protobuf.Timestamp");
    pbw_msg(&any2, 2, &ts);
    pbw_msg(&w, 19, &any2);
    pbw_t empty = {.n = 0};
    pbw_msg(&w, 19, &empty);
    CONV("pt.test.WKTs", &w,
         "{\"any\":{\"@type\":\"type.googleapis.com/pt.test.Scalars\",\"fString\":\"in\",\"fEnum\":\"RED\"},"
         "\"anys\":[{\"@type\":\"type.googleapis.com/google.protobuf.Timestamp\","
         "\"value\":\"1970-01-01T00:00:00Z\"},{}]}");
    /* Any as the top-level type, nesting an Any */
    pbw_t outer = {.n = 0};
    pbw_str(&outer, 1, "x/google.protobuf.Any");
    pbw_msg(&outer, 2, &any);
    CONV("google.protobuf.Any", &outer,
         "{\"@type\":\"x/google.protobuf.Any\",\"value\":{\"@type\":\"type.googleapis.com/pt.test.Scalars\","
         "\"fString\":\"in\",\"fEnum\":\"RED\"}}");
    /* unknown type */
    pbw_t bad = {.n = 0}, ba = {.n = 0};
    pbw_str(&ba, 1, "type.googleapis.com/pt.test.Nope");
    pbw_msg(&bad, 19, &ba);
    CONV_ERR("pt.test.WKTs", &bad, PT_XERR_NOT_FOUND, "anys[0]", "pt.test.Nope");
    /* an error inside the Any's value carries the path through it */
    pbw_t bad2 = {.n = 0}, ba2 = {.n = 0}, bi = {.n = 0};
    pbw_str(&bi, 9, "\xff");
    pbw_str(&ba2, 1, "type.googleapis.com/pt.test.Scalars");
    pbw_msg(&ba2, 2, &bi);
    pbw_msg(&bad2, 1, &ba2);
    CONV_ERR("pt.test.WKTs", &bad2, PT_XERR_INVALID, "any.fString", "UTF-8");
}

static void test_wkt_errors(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, s = {.n = 0};
    pbw_v(&s, 1, (uint64_t)(PT_TIMESTAMP_MAX_SECONDS + 1));
    pbw_msg(&w, 20, &s);
    CONV_ERR("pt.test.WKTs", &w, PT_XERR_INVALID, "rTs[0]", "out of range");
    pbw_t d = {.n = 0};
    s.n = 0;
    pbw_v(&s, 1, 1);
    pbw_v(&s, 2, (uint64_t)(int64_t)-1);
    pbw_msg(&d, 3, &s);
    CONV_ERR("pt.test.WKTs", &d, PT_XERR_INVALID, "dur", "out of range");
    pbw_t f = {.n = 0};
    s.n = 0;
    pbw_str(&s, 1, "fooBar");
    pbw_msg(&f, 4, &s);
    CONV_ERR("pt.test.WKTs", &f, PT_XERR_INVALID, "fm", "FieldMask");
    /* top-level WKT */
    pbw_t t = {.n = 0};
    pbw_v(&t, 1, 86400);
    CONV("google.protobuf.Timestamp", &t, "\"1970-01-02T00:00:00Z\"");
    pbw_t u = {.n = 0};
    pbw_v(&u, 1, 5);
    CONV("google.protobuf.UInt64Value", &u, "\"5\"");
}

/* ---- nesting, proto2, unknown fields ---------------------------------------------- */

static void test_nesting_and_limits(void **state)
{
    (void)state;
    reset_opts();
    /* 100 levels of Nested.child */
    static pbw_t lv[2];
    pbw_t *cur = &lv[0], *nxt = &lv[1];
    cur->n = 0;
    pbw_str(cur, 1, "leaf");
    for (int i = 0; i < 99; i++) {
        nxt->n = 0;
        pbw_msg(nxt, 2, cur);
        pbw_t *t = cur;
        cur = nxt;
        nxt = t;
    }
    CONV_ERR("pt.test.Nested", cur, PT_XERR_LIMIT, NULL, "nested");
    O.max_depth = 100;
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    assert_int_equal(pt_pb_to_json(pool, msg("pt.test.Nested"), cur->b, cur->n, &O, &out, NULL), 0);
    pt_xbuf_dispose(&out);
    O.max_depth = 0;
    /* size limit on the output */
    pbw_t w = {.n = 0};
    pbw_str(&w, 1, "0123456789");
    O.max_size = 12;
    CONV_ERR("pt.test.Nested", &w, PT_XERR_LIMIT, "name", "limit");
    O.max_size = 2; /* and on the input */
    CONV_ERR("pt.test.Nested", &w, PT_XERR_LIMIT, "", "limit");
    O.max_size = 0;
}

/* SECURITY-CASES JP-7: a depth bomb and a huge packed count stay bounded. */
static void test_bombs(void **state)
{
    (void)state;
    reset_opts();
    /* Nested.child 100000 levels deep, built from the inside out */
    size_t cap = 1 << 20, at = cap;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    for (int i = 0; i < 100000; i++) {
        size_t len = cap - at;
        uint8_t hdr[8];
        size_t h = 0;
        hdr[h++] = 0x12; /* field 2, length-delimited */
        do {
            uint8_t c = (uint8_t)(len & 0x7f);
            len >>= 7;
            hdr[h++] = (uint8_t)(c | (len ? 0x80 : 0));
        } while (len);
        at -= h;
        memcpy(b + at, hdr, h);
    }
    conv_err("pt.test.Nested", b + at, cap - at, PT_XERR_LIMIT, NULL, "nested", __LINE__);
    /* 200000 packed zeros: the output is capped by max_size, not by memory */
    size_t n = 200000;
    uint8_t *p = calloc(n + 8, 1);
    assert_non_null(p);
    p[0] = 0x0a; /* Repeated.r_int32, packed */
    p[1] = (uint8_t)(0x80 | (n & 0x7f));
    p[2] = (uint8_t)(0x80 | ((n >> 7) & 0x7f));
    p[3] = (uint8_t)(n >> 14);
    O.max_size = 1 << 16;
    conv_err("pt.test.Repeated", p, n + 4, PT_XERR_LIMIT, NULL, "limit", __LINE__);
    O.max_size = 0;
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    assert_int_equal(pt_pb_to_json(pool, msg("pt.test.Repeated"), p, n + 4, NULL, &out, NULL), 0);
    assert_int_equal(out.len, strlen("{\"rInt32\":[]}") + 2 * n - 1);
    pt_xbuf_dispose(&out);
    free(p);
    free(b);
}

static void test_proto2(void **state)
{
    (void)state;
    reset_opts();
    O.emit_defaults = true; /* fields with presence are still omitted when absent */
    pbw_t w = {.n = 0};
    pbw_str(&w, 2, "b");
    pbw_v(&w, 3, 3); /* closed enum, unknown number */
    pbw_tag(&w, 5, PT_WT_SGROUP);
    pbw_v(&w, 6, 9);
    pbw_tag(&w, 5, PT_WT_EGROUP);
    pbw_v(&w, 7, 1); /* packed field, unpacked on the wire */
    pbw_bytes(&w, 4, "\x02\x03", 2); /* unpacked field, packed on the wire */
    CONV("pt.test2.P2", &w,
         "{\"b\":\"b\",\"level\":3,\"unpacked\":[2,3],\"grp\":{\"x\":9},\"packed\":[1]}");
}

static void test_unknown_fields(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    pbw_v(&w, 1000, 5);
    pbw_f64(&w, 1001, 1);
    pbw_f32(&w, 1002, 1);
    pbw_str(&w, 1003, "zz");
    pbw_tag(&w, 1004, PT_WT_SGROUP); /* a group with a nested group inside */
    pbw_v(&w, 1, 1);
    pbw_tag(&w, 7, PT_WT_SGROUP);
    pbw_tag(&w, 7, PT_WT_EGROUP);
    pbw_tag(&w, 1004, PT_WT_EGROUP);
    pbw_str(&w, 1, "ok");
    CONV("pt.test.Nested", &w, "{\"name\":\"ok\"}");
}

static void test_malformed(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0};
    pbw_raw(&w, "\x08\x80", 2); /* truncated varint */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "varint");
    w.n = 0;
    pbw_raw(&w, "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12); /* 11-byte varint */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "varint");
    w.n = 0;
    pbw_raw(&w, "\x4a\x05" "ab", 4); /* length past the end */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "past the end");
    w.n = 0;
    pbw_v(&w, 9, 1); /* a string sent as a varint */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "fString", "wrong wire type");
    w.n = 0;
    pbw_raw(&w, "\x00\x01", 2); /* field number 0 */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "field number");
    w.n = 0;
    pbw_raw(&w, "\x0e", 1); /* wire type 6 */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "wire type");
    w.n = 0;
    pbw_tag(&w, 1004, PT_WT_EGROUP); /* stray end-group */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "end-group");
    w.n = 0;
    pbw_tag(&w, 1004, PT_WT_SGROUP); /* unterminated group */
    pbw_v(&w, 1, 1);
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "group");
    w.n = 0;
    pbw_tag(&w, 1004, PT_WT_SGROUP); /* mismatched end-group */
    pbw_tag(&w, 1005, PT_WT_EGROUP);
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "mismatched");
    w.n = 0;
    pbw_bytes(&w, 1, "\x80", 1); /* truncated varint inside a packed run */
    CONV_ERR("pt.test.Repeated", &w, PT_XERR_CORRUPT, "rInt32[0]", "packed");
    w.n = 0;
    pbw_bytes(&w, 9, "\x01\x00\x00", 3); /* packed fixed32 with a partial value */
    CONV_ERR("pt.test.Repeated", &w, PT_XERR_CORRUPT, "rFixed32[0]", "packed");
    w.n = 0;
    pbw_f64(&w, 1, 0);
    pbw_raw(&w, "\x09\x00\x00", 3); /* truncated fixed64 */
    CONV_ERR("pt.test.Scalars", &w, PT_XERR_CORRUPT, "", "fixed64");
    /* invalid UTF-8, deep inside: the path names it */
    pbw_t s = {.n = 0}, c1 = {.n = 0}, c2 = {.n = 0}, top = {.n = 0};
    pbw_str(&s, 9, "\xed\xa0\x80");
    pbw_msg(&c2, 4, &s);
    pbw_msg(&top, 3, &c1);
    pbw_msg(&top, 3, &c2);
    CONV_ERR("pt.test.Nested", &top, PT_XERR_INVALID, "children[1].scalars.fString", "UTF-8");
    O.proto_names = true;
    CONV_ERR("pt.test.Nested", &top, PT_XERR_INVALID, "children[1].scalars.f_string", "UTF-8");
    O.proto_names = false;
    /* bad map key: path has the map field */
    pbw_t m = {.n = 0}, k = {.n = 0};
    pbw_str(&k, 1, "\xff");
    entry(&m, 1, &k, NULL);
    CONV_ERR("pt.test.Maps", &m, PT_XERR_INVALID, "mStr", "UTF-8");
    pbw_t m2 = {.n = 0}, v = {.n = 0};
    k.n = 0;
    pbw_str(&k, 1, "key");
    pbw_str(&v, 2, "\xc0");
    pbw_t e = {.n = 0};
    pbw_raw(&e, k.b, k.n);
    pbw_raw(&e, v.b, v.n);
    pbw_msg(&m2, 2, &e);
    k.n = 0;
    pbw_v(&k, 1, 7);
    e.n = 0;
    pbw_raw(&e, k.b, k.n);
    pbw_str(&e, 2, "\xc0");
    m2.n = 0;
    pbw_msg(&m2, 2, &e);
    CONV_ERR("pt.test.Maps", &m2, PT_XERR_INVALID, "mInt32[\"7\"]", "UTF-8");
}

static void test_nomem(void **state)
{
    (void)state;
    reset_opts();
    pbw_t w = {.n = 0}, s = {.n = 0}, k = {.n = 0}, v = {.n = 0};
    pbw_str(&w, 1, "name");
    for (int i = 0; i < 40; i++) {
        s.n = 0;
        pbw_str(&s, 9, "some text to grow the buffer");
        pbw_v(&s, 3, (uint64_t)i);
        k.n = 0;
        pbw_str(&k, 1, "child");
        pbw_msg(&k, 4, &s);
        pbw_msg(&w, 3, &k);
    }
    (void)k;
    (void)v;
    for (long n = 0;; n++) {
        xfail_alloc_t fa;
        xfail_alloc_init(&fa, n);
        pt_xbuf_t out;
        pt_xbuf_init(&out, &fa.a);
        pt_xerr_t err;
        int rc = pt_pb_to_json(pool, msg("pt.test.Nested"), w.b, w.n, NULL, &out, &err);
        pt_xbuf_dispose(&out);
        assert_int_equal(fa.live, 0);
        if (rc == 0)
            break;
        if (rc != PT_XERR_NOMEM)
            fail_msg("n=%ld rc=%d %s: %s", n, rc, err.path, err.msg);
        assert_int_equal(err.code, PT_XERR_NOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_defaults_and_presence),
        cmocka_unit_test(test_floats_special),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_repeated),
        cmocka_unit_test(test_last_wins_and_merge),
        cmocka_unit_test(test_oneofs),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_map_entry_shapes),
        cmocka_unit_test(test_wkt),
        cmocka_unit_test(test_struct_value),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_wkt_errors),
        cmocka_unit_test(test_nesting_and_limits),
        cmocka_unit_test(test_bombs),
        cmocka_unit_test(test_proto2),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
