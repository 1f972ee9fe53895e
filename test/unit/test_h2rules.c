/*
 * test_h2rules.c -- the HTTP/2 request messaging rules h2.c enforces with
 * nghttp2's HTTP messaging off (gateway/http/h2rules.c, issue 7):
 *  - the byte classes equal nghttp2's own public checks (name, RFC 9113
 *    value, path, authority, method) for every byte, alone and inside longer
 *    strings (the sixteen-bytes-a-round path of pt_header_value_valid());
 *  - random field values and paths get nghttp2's verdict;
 *  - the per-request state machine: pseudo-headers, CONNECT, content-length.
 * integration.h2_fields checks the same rules end to end on the real binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include "http/h2rules.h"

typedef struct {
    const char *n, *v;
} field_t;

/* A request of `n` fields; returns whether every field and the head pass. */
static bool request_ok(const field_t *f, size_t n)
{
    pt_h2_rules_t r;
    pt_h2_rules_init(&r);
    for (size_t i = 0; i < n; i++)
        if (!pt_h2_rules_field(&r, (const uint8_t *)f[i].n, strlen(f[i].n), (const uint8_t *)f[i].v,
                               strlen(f[i].v), false))
            return false;
    return pt_h2_rules_head(&r);
}

static bool regular_value_ok(const uint8_t *v, size_t n)
{
    pt_h2_rules_t r;
    pt_h2_rules_init(&r);
    return pt_h2_rules_field(&r, (const uint8_t *)"x-a", 3, v, n, false);
}

static bool path_ok(const uint8_t *v, size_t n)
{
    pt_h2_rules_t r;
    pt_h2_rules_init(&r);
    return pt_h2_rules_field(&r, (const uint8_t *)":path", 5, v, n, false);
}

static void test_classes_match_nghttp2(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        /* the byte in the middle of a short string, and at several offsets of
         * a 40-byte one (whole and overlapping sixteen-byte blocks) */
        uint8_t s3[3] = {'a', (uint8_t)c, 'a'};
        uint8_t cl = pt_h2_char_class((uint8_t)c);
        assert_int_equal((cl & PT_H2C_NAME) != 0, nghttp2_check_header_name(s3, 3) != 0);
        assert_int_equal((cl & PT_H2C_VALUE) != 0, nghttp2_check_header_value_rfc9113(s3, 3) != 0);
        assert_int_equal((cl & PT_H2C_PATH) != 0, nghttp2_check_path(s3, 3) != 0);
        assert_int_equal((cl & PT_H2C_AUTH) != 0, nghttp2_check_authority(s3, 3) != 0);
        assert_int_equal((cl & PT_H2C_TOKEN) != 0, nghttp2_check_method(s3, 3) != 0);
        assert_int_equal(regular_value_ok(s3, 3), nghttp2_check_header_value_rfc9113(s3, 3) != 0);
        uint8_t p3[3] = {'/', (uint8_t)c, 'a'};
        assert_int_equal(path_ok(p3, 3), nghttp2_check_path(p3, 3) != 0);
        for (size_t at = 1; at < 39; at += 3) {
            uint8_t s40[40];
            memset(s40, 'a', sizeof(s40));
            s40[0] = '/';
            s40[at] = (uint8_t)c;
            assert_int_equal(regular_value_ok(s40, 40), nghttp2_check_header_value_rfc9113(s40, 40) != 0);
            assert_int_equal(path_ok(s40, 40), nghttp2_check_path(s40, 40) != 0);
        }
    }
}

/* Random values over an alphabet rich in the bytes at the class borders. */
static void test_random_values_match_nghttp2(void **state)
{
    (void)state;
    static const uint8_t alpha[] = {0x00, 0x01, 0x08, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x21, 0x7e,
                                    0x7f, 0x80, 0xff, 'a', 'Z', '/', '%', ':', 0x3f, 0x40};
    srand(7);
    uint8_t buf[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = (size_t)(rand() % 40);
        int bad = rand() % 4; /* mostly clean strings, so the long fast path runs */
        for (size_t i = 0; i < n; i++)
            buf[i] = bad == 0 ? alpha[rand() % (int)sizeof(alpha)] : (uint8_t)('a' + rand() % 26);
        if (bad == 1 && n > 0)
            buf[rand() % (int)n] = alpha[rand() % (int)sizeof(alpha)];
        assert_int_equal(regular_value_ok(buf, n), nghttp2_check_header_value_rfc9113(buf, n) != 0);
        if (n > 0) {
            buf[0] = '/';
            assert_int_equal(path_ok(buf, n), nghttp2_check_path(buf, n) != 0);
        }
    }
}

static void test_request_rules(void **state)
{
    (void)state;
    const field_t get[] = {{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example"},
                           {":path", "/x"}, {"accept", "*/*"}};
    assert_true(request_ok(get, 5));
    const field_t late[] = {{":method", "GET"}, {":scheme", "https"}, {"accept", "*/*"},
                            {":authority", "a"}, {":path", "/x"}};
    assert_false(request_ok(late, 5));
    const field_t dup[] = {{":method", "GET"}, {":method", "GET"}, {":scheme", "http"},
                           {":authority", "a"}, {":path", "/x"}};
    assert_false(request_ok(dup, 5));
    const field_t nohost[] = {{":method", "GET"}, {":scheme", "http"}, {":path", "/x"}};
    assert_false(request_ok(nohost, 3));
    const field_t host[] = {{":method", "GET"}, {":scheme", "http"}, {":path", "/x"}, {"host", "a"}};
    assert_true(request_ok(host, 4));
    const field_t star[] = {{":method", "OPTIONS"}, {":scheme", "http"}, {":path", "*"}, {"host", "a"}};
    assert_true(request_ok(star, 4));
    const field_t star_get[] = {{":method", "GET"}, {":scheme", "http"}, {":path", "*"}, {"host", "a"}};
    assert_false(request_ok(star_get, 4));
    const field_t relative_other[] = {{":method", "GET"}, {":scheme", "foo"}, {":path", "x"}, {"host", "a"}};
    assert_true(request_ok(relative_other, 4)); /* only http(s) paths must be origin-form */
    const field_t connect[] = {{":method", "CONNECT"}, {":authority", "a:443"}};
    assert_true(request_ok(connect, 2));
    const field_t connect_path[] = {{":method", "CONNECT"}, {":authority", "a:443"}, {":path", "/"}};
    assert_false(request_ok(connect_path, 3));
    const field_t ext[] = {{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
                           {":authority", "a"}, {":path", "/chat"}};
    assert_true(request_ok(ext, 5));
    const field_t ext_get[] = {{":method", "GET"}, {":protocol", "websocket"}, {":scheme", "https"},
                               {":authority", "a"}, {":path", "/chat"}};
    assert_false(request_ok(ext_get, 5));
    const field_t ext_host[] = {{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
                                {":path", "/chat"}, {"host", "a"}};
    assert_false(request_ok(ext_host, 5)); /* RFC 8441: :authority, not host */
    const field_t te[] = {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "a"},
                          {"te", "Trailers"}};
    assert_true(request_ok(te, 5));
    const field_t te_gzip[] = {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "a"},
                               {"te", "gzip"}};
    assert_false(request_ok(te_gzip, 5));
}

static void test_content_length(void **state)
{
    (void)state;
    pt_h2_rules_t r;
    pt_h2_rules_init(&r);
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14, (const uint8_t *)"5", 1, false));
    assert_false(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14, (const uint8_t *)"5", 1, false));
    pt_h2_rules_init(&r);
    assert_false(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14,
                                   (const uint8_t *)"9223372036854775808", 19, false));
    pt_h2_rules_init(&r);
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14,
                                  (const uint8_t *)"9223372036854775807", 19, false));
    pt_h2_rules_init(&r);
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14, (const uint8_t *)"5", 1, false));
    assert_false(pt_h2_rules_end(&r));
    assert_true(pt_h2_rules_data(&r, 2));
    assert_true(pt_h2_rules_data(&r, 3));
    assert_true(pt_h2_rules_end(&r));
    assert_false(pt_h2_rules_data(&r, 1));
    /* plain CONNECT ignores content-length */
    pt_h2_rules_init(&r);
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)":method", 7, (const uint8_t *)"CONNECT", 7, false));
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)":authority", 10, (const uint8_t *)"a:1", 3, false));
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)"content-length", 14, (const uint8_t *)"1", 1, false));
    assert_true(pt_h2_rules_head(&r));
    assert_true(pt_h2_rules_data(&r, 10));
    /* trailers: no pseudo-header */
    pt_h2_rules_init(&r);
    assert_false(pt_h2_rules_field(&r, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1, true));
    assert_true(pt_h2_rules_field(&r, (const uint8_t *)"x-t", 3, (const uint8_t *)"1", 1, true));
}

static bool prio(const char *v, uint8_t *u, bool *i)
{
    *u = 3;
    *i = false;
    return pt_h2_parse_priority((const uint8_t *)v, strlen(v), u, i);
}

static void test_priority_field(void **state)
{
    (void)state;
    uint8_t u;
    bool i;
    assert_true(prio("u=5", &u, &i));
    assert_int_equal(u, 5);
    assert_false(i);
    assert_true(prio("u=0, i", &u, &i));
    assert_int_equal(u, 0);
    assert_true(i);
    assert_true(prio("i=?0, u=7;x=1, foo=\"a,b\", bar=tok/x", &u, &i));
    assert_int_equal(u, 7);
    assert_false(i);
    assert_true(prio("u=9", &u, &i)); /* out of range: ignored */
    assert_int_equal(u, 3);
    assert_true(prio("", &u, &i));
    assert_false(prio("u=x", &u, &i)); /* u not an integer: the field is void */
    assert_int_equal(u, 3);
    assert_false(prio("i=1", &u, &i)); /* i not a boolean */
    assert_false(prio("u=1,", &u, &i));
    assert_false(prio("U=1", &u, &i));
    assert_false(prio("u=1.5", &u, &i));
    assert_false(prio("u=1 i", &u, &i));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes_match_nghttp2),
        cmocka_unit_test(test_random_values_match_nghttp2),
        cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_priority_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
