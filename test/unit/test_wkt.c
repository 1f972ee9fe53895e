/* test_wkt.c -- base64, timestamps, durations, names, floats, JSON strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "portico/transcoder/wkt.h"
#include "portico/transcoder/xerr.h"
#include "xfail_alloc.h"

static pt_xbuf_t buf;

static int setup(void **state)
{
    (void)state;
    pt_xbuf_init(&buf, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pt_xbuf_dispose(&buf);
    return 0;
}

static const char *text(void)
{
    assert_int_equal(pt_xbuf_terminate(&buf), 0);
    return (const char *)buf.data;
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(pt_utf8_valid((const uint8_t *)"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_false(pt_utf8_valid((const uint8_t *)"\xc3", 1));            /* truncated */
    assert_false(pt_utf8_valid((const uint8_t *)"\xc0\xaf", 2));        /* overlong */
    assert_false(pt_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));    /* overlong */
    assert_false(pt_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));    /* surrogate U+D800 */
    assert_false(pt_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(pt_utf8_valid((const uint8_t *)"\xff", 1));
    assert_true(pt_utf8_valid((const uint8_t *)"", 0));
}

static void test_json_escape(void **state)
{
    (void)state;
    assert_int_equal(pt_json_escape(&buf, "a\"b\\c\n\t\x01/\xc3\xa9", 11), 0);
    assert_string_equal(text(), "\"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\"");
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_json_escape(&buf, "x", 1), 0);
    size_t len = buf.len;
    assert_int_equal(pt_json_escape(&buf, "bad\xff", 4), PT_XERR_INVALID);
    assert_int_equal(buf.len, len); /* unchanged on error */
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_json_escape(&buf, "nul\0x", 5), 0);
    assert_string_equal(text(), "\"nul\\u0000x\"");
}

/* The raw-buffer forms the gateway uses (gRPC -bin metadata, gRPC-Web text, HTTP2-Settings). */
static void test_base64_raw(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0x01, 0x02, 0xff, 0xfe};
    char enc[16];
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t el = pt_base64_encode_to(enc, in, n);
        assert_int_equal(el, PT_BASE64_ENCODED_LEN(n));
        uint8_t dec[PT_BASE64_DECODED_MAX(sizeof(enc))];
        assert_int_equal(pt_base64_decode_to(dec, enc, el), (long)n);
        assert_memory_equal(dec, in, n);
    }
    assert_int_equal(pt_base64_encode_to(enc, in, 4), 8);
    assert_memory_equal(enc, "AAEC/w==", 8);
    uint8_t d[8];
    assert_int_equal(pt_base64_decode_to(d, "AAEC_w", 6), 4); /* url-safe, unpadded */
    assert_int_equal(d[3], 0xff);
    assert_int_equal(pt_base64_decode_to(d, "ab==", 4), 1);   /* one padded quad (gRPC-Web text) */
    assert_int_equal(pt_base64_decode_to(d, "A", 1), -1);
    assert_int_equal(pt_base64_decode_to(d, "AA*A", 4), -1);
    assert_int_equal(pt_base64_decode_to(d, "ab=c", 4), -1);
    assert_int_equal(pt_base64_decode_to(d, "a===", 4), -1);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *plain, *enc;
    } v[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        pt_xbuf_reset(&buf);
        assert_int_equal(pt_base64_encode(&buf, (const uint8_t *)v[i].plain, strlen(v[i].plain)), 0);
        assert_string_equal(text(), v[i].enc);
        pt_xbuf_reset(&buf);
        assert_int_equal(pt_base64_decode(&buf, v[i].enc, strlen(v[i].enc)), 0);
        assert_int_equal(buf.len, strlen(v[i].plain));
        assert_memory_equal(buf.data, v[i].plain, buf.len);
    }
    /* URL-safe and unpadded forms */
    const uint8_t bin[] = {0xfb, 0xff, 0xbf};
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_base64_encode(&buf, bin, 3), 0);
    assert_string_equal(text(), "+/+/");
    const char *forms[] = {"+/+/", "-_-_", "Zm8", "Zg"};
    for (size_t i = 0; i < 4; i++) {
        pt_xbuf_reset(&buf);
        assert_int_equal(pt_base64_decode(&buf, forms[i], strlen(forms[i])), 0);
    }
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_base64_decode(&buf, "-_-_", 4), 0);
    assert_memory_equal(buf.data, bin, 3);
    /* invalid: characters, padding in the middle, too much padding, dangling char */
    const char *bad[] = {"Zm9v!", "Zg==Zg==", "Z===", "Zm9vY", "Zg=", "Z", "Zm 9v", "===="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pt_xbuf_reset(&buf);
        assert_int_equal(pt_base64_decode(&buf, bad[i], strlen(bad[i])), PT_XERR_INVALID);
    }
}

static void test_timestamp(void **state)
{
    (void)state;
    char out[PT_TIMESTAMP_BUF];
    assert_int_equal(pt_timestamp_format(0, 0, out), 20);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    pt_timestamp_format(63108020, 21000000, out);
    assert_string_equal(out, "1972-01-01T10:00:20.021Z");
    pt_timestamp_format(1, 1000, out);
    assert_string_equal(out, "1970-01-01T00:00:01.000001Z");
    pt_timestamp_format(-1, 999999999, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999999999Z");
    pt_timestamp_format(PT_TIMESTAMP_MIN_SECONDS, 0, out);
    assert_string_equal(out, "0001-01-01T00:00:00Z");
    pt_timestamp_format(PT_TIMESTAMP_MAX_SECONDS, 999999999, out);
    assert_string_equal(out, "9999-12-31T23:59:59.999999999Z");
    pt_timestamp_format(951782400, 0, out); /* leap day */
    assert_string_equal(out, "2000-02-29T00:00:00Z");
    assert_int_equal(pt_timestamp_format(PT_TIMESTAMP_MIN_SECONDS - 1, 0, out), PT_XERR_INVALID);
    assert_int_equal(pt_timestamp_format(PT_TIMESTAMP_MAX_SECONDS + 1, 0, out), PT_XERR_INVALID);
    assert_int_equal(pt_timestamp_format(0, -1, out), PT_XERR_INVALID);
    assert_int_equal(pt_timestamp_format(0, 1000000000, out), PT_XERR_INVALID);

    int64_t s;
    int32_t ns;
    assert_int_equal(pt_timestamp_parse("1972-01-01T10:00:20.021Z", 24, &s, &ns), 0);
    assert_int_equal(s, 63108020);
    assert_int_equal(ns, 21000000);
    assert_int_equal(pt_timestamp_parse("1972-01-01T10:00:20.021+01:30", 29, &s, &ns), 0);
    assert_int_equal(s, 63108020 - 5400);
    assert_int_equal(pt_timestamp_parse("2024-01-01t00:00:00.123456789z", 30, &s, &ns), 0);
    assert_int_equal(ns, 123456789);
    assert_int_equal(pt_timestamp_parse("0001-01-01T00:00:00Z", 20, &s, &ns), 0);
    assert_int_equal(s, PT_TIMESTAMP_MIN_SECONDS);
    /* round trip through parse for a spread of seconds */
    for (int64_t t = PT_TIMESTAMP_MIN_SECONDS; t < PT_TIMESTAMP_MAX_SECONDS; t += 86400LL * 997 + 3671) {
        int n = pt_timestamp_format(t, 0, out);
        assert_true(n > 0);
        assert_int_equal(pt_timestamp_parse(out, (size_t)n, &s, &ns), 0);
        assert_int_equal(s, t);
    }
    const char *bad[] = {"0000-12-31T23:59:59Z",         "10000-01-01T00:00:00Z",
                         "2024-02-30T00:00:00Z",         "2023-02-29T00:00:00Z",
                         "2024-01-01T24:00:00Z",         "2024-01-01T00:00:60Z",
                         "2024-01-01 00:00:00Z",         "2024-01-01T00:00:00",
                         "2024-01-01T00:00:00.Z",        "2024-01-01T00:00:00.1234567891Z",
                         "2024-01-01T00:00:00+0100",     "2024-01-01T00:00:00Zjunk",
                         "0001-01-01T00:00:00+00:01",    "9999-12-31T23:59:59-00:01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pt_timestamp_parse(bad[i], strlen(bad[i]), &s, &ns), PT_XERR_INVALID);
}

static void test_duration(void **state)
{
    (void)state;
    char out[PT_DURATION_BUF];
    pt_duration_format(1, 500000000, out);
    assert_string_equal(out, "1.500s");
    pt_duration_format(0, -1000, out);
    assert_string_equal(out, "-0.000001s");
    pt_duration_format(-3, 0, out);
    assert_string_equal(out, "-3s");
    pt_duration_format(PT_DURATION_MAX_SECONDS, 999999999, out);
    assert_string_equal(out, "315576000000.999999999s");
    assert_int_equal(pt_duration_format(PT_DURATION_MAX_SECONDS + 1, 0, out), PT_XERR_INVALID);
    assert_int_equal(pt_duration_format(1, -1, out), PT_XERR_INVALID);
    assert_int_equal(pt_duration_format(-1, 1, out), PT_XERR_INVALID);

    int64_t s;
    int32_t ns;
    assert_int_equal(pt_duration_parse("1.5s", 4, &s, &ns), 0);
    assert_int_equal(s, 1);
    assert_int_equal(ns, 500000000);
    assert_int_equal(pt_duration_parse("-0.000001s", 10, &s, &ns), 0);
    assert_int_equal(s, 0);
    assert_int_equal(ns, -1000);
    assert_int_equal(pt_duration_parse("315576000000s", 13, &s, &ns), 0);
    const char *bad[] = {"315576000001s", "1", "s", "1.s", ".5s", "1.5", "1.5ss", "--1s", "1.1234567890s",
                         "9999999999999s", "+1s", "1 s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pt_duration_parse(bad[i], strlen(bad[i]), &s, &ns), PT_XERR_INVALID);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(pt_fieldmask_path_to_json(&buf, "user.display_name", 17), 0);
    assert_string_equal(text(), "user.displayName");
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_fieldmask_path_to_json(&buf, "fooBar", 6), PT_XERR_INVALID);
    assert_int_equal(pt_fieldmask_path_to_json(&buf, "foo__bar", 8), PT_XERR_INVALID);
    assert_int_equal(pt_fieldmask_path_to_json(&buf, "foo_", 4), PT_XERR_INVALID);
    assert_int_equal(pt_fieldmask_path_to_json(&buf, "foo_1", 5), PT_XERR_INVALID);
    assert_int_equal(buf.len, 0);
    assert_int_equal(pt_fieldmask_path_from_json(&buf, "user.displayName", 16), 0);
    assert_string_equal(text(), "user.display_name");
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_fieldmask_path_from_json(&buf, "a_b", 3), PT_XERR_INVALID);
    assert_int_equal(pt_json_name_of(&buf, "foo_bar_baz", 11), 0);
    assert_string_equal(text(), "fooBarBaz");
    pt_xbuf_reset(&buf);
    assert_int_equal(pt_json_name_of(&buf, "_foo__bar1_2x", 13), 0);
    assert_string_equal(text(), "FooBar12x"); /* as protoc's ToJsonName */
}

static void test_floats(void **state)
{
    (void)state;
    char out[PT_FLOAT_BUF];
    static const struct {
        double v;
        const char *s;
    } d[] = {{0.1, "0.1"}, {1.0, "1"}, {-0.0, "-0"}, {1e21, "1e+21"}, {123456789012345680.0, "1.2345678901234568e+17"},
             {5e-324, "5e-324"}, {2.2250738585072009e-308, "2.225073858507201e-308"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
             {0.30000000000000004, "0.30000000000000004"}, {-5.0, "-5"}, {999999999999999.0, "999999999999999"},
             {1e15, "1e+15"}, {9007199254740993.0, "9007199254740992"}, {-1234.5, "-1234.5"},
             {0.0001, "0.0001"}, {0.00012345, "0.00012345"}, {-0.5, "-0.5"}, {19.99, "19.99"},
             {123456789.123, "123456789.123"}, {0.1 + 0.2, "0.30000000000000004"}, {1e-5, "1e-05"},
             {99999999999999.99, "99999999999999.98"}, {2.5e-4, "0.00025"}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        pt_double_format(d[i].v, out);
        assert_string_equal(out, d[i].s);
    }
    pt_double_format(NAN, out);
    assert_string_equal(out, "NaN");
    pt_double_format(-INFINITY, out);
    assert_string_equal(out, "-Infinity");
    pt_float_format(0.1f, out);
    assert_string_equal(out, "0.1");
    pt_float_format(3.4028235e38f, out);
    assert_string_equal(out, "3.4028235e+38");
    pt_float_format(1.17549435e-38f, out);
    assert_string_equal(out, "1.1754944e-38");
    pt_float_format(0.375f, out);
    assert_string_equal(out, "0.375");
    pt_float_format(-19.5f, out);
    assert_string_equal(out, "-19.5");
    pt_float_format(0.300048828125f, out);
    assert_string_equal(out, "0.30004883");
    pt_float_format(1.3f, out);
    assert_string_equal(out, "1.3");
    pt_float_format(999999.0f, out);
    assert_string_equal(out, "999999");
    pt_float_format(1e6f, out);
    assert_string_equal(out, "1e+06");
    pt_float_format(-0.0f, out);
    assert_string_equal(out, "-0");
    pt_float_format(16777216.0f, out);
    assert_string_equal(out, "16777216");
    pt_float_format(INFINITY, out);
    assert_string_equal(out, "Infinity");
}

static void test_xbuf_limit_and_nomem(void **state)
{
    (void)state;
    pt_xbuf_t b;
    pt_xbuf_init(&b, NULL);
    b.limit = 4;
    assert_int_equal(pt_xbuf_append(&b, "abcd", 4), 0);
    assert_int_equal(pt_xbuf_putc(&b, 'e'), PT_XERR_LIMIT);
    assert_int_equal(b.len, 4);
    assert_int_equal(pt_xbuf_terminate(&b), 0); /* the NUL is not content */
    pt_xbuf_dispose(&b);

    xfail_alloc_t fa;
    xfail_alloc_init(&fa, 0);
    pt_xbuf_init(&b, &fa.a);
    assert_int_equal(pt_base64_encode(&b, (const uint8_t *)"abc", 3), PT_XERR_NOMEM);
    assert_int_equal(b.len, 0);
    pt_xbuf_dispose(&b);
    assert_int_equal(fa.live, 0);
}

static void test_xerr_paths(void **state)
{
    (void)state;
    pt_xpath_t p;
    pt_xpath_init(&p);
    size_t m0 = pt_xpath_push_field(&p, "shelf", 5);
    pt_xpath_push_field(&p, "books", 5);
    size_t m2 = pt_xpath_push_index(&p, 2);
    pt_xpath_push_field(&p, "author", 6);
    assert_string_equal(p.buf, "shelf.books[2].author");
    pt_xpath_pop(&p, m2);
    pt_xpath_push_key(&p, "a\"b", 3);
    assert_string_equal(p.buf, "shelf.books[\"a\\\"b\"]");
    pt_xpath_pop(&p, m0);
    assert_string_equal(p.buf, "");
    for (int i = 0; i < 100; i++)
        pt_xpath_push_field(&p, "abcdefgh", 8);
    assert_true(p.truncated);
    assert_int_equal(strlen(p.buf), PT_XERR_PATH_MAX - 1);
    assert_string_equal(p.buf + PT_XERR_PATH_MAX - 4, "...");

    pt_xerr_t e;
    char out[600];
    pt_xerr_set(&e, PT_XERR_INVALID, "shelf.books[2].author", "expected string, got %d", 12);
    pt_xerr_format(&e, out, sizeof out);
    assert_string_equal(out, "shelf.books[2].author: expected string, got 12");
    assert_string_equal(pt_xerr_name(e.code), "INVALID");

    pt_xerrs_t l;
    pt_xerrs_clear(&l);
    for (int i = 0; i < PT_XERRS_MAX + 3; i++)
        pt_xerrs_add(&l, PT_XERR_INVALID, "f", "bad %d", i);
    assert_int_equal(l.cnt, PT_XERRS_MAX);
    assert_int_equal(l.dropped, 3);
    assert_string_equal(l.items[1].msg, "bad 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
        cmocka_unit_test(test_base64_raw),
        cmocka_unit_test_setup_teardown(test_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floats, setup, teardown),
        cmocka_unit_test(test_xbuf_limit_and_nomem),
        cmocka_unit_test(test_xerr_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
