/*
 * test_core.c -- status table, arena, slices and header lists.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "core/headers_priv.h"
#include "portico/arena.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "portico/str.h"

static void test_status_table(void **state)
{
    (void)state;
    assert_int_equal(pt_status_http(PT_ERR_TIMEOUT), 504);
    assert_int_equal(pt_status_grpc(PT_ERR_TIMEOUT), 4);
    assert_string_equal(pt_status_name(PT_ERR_TIMEOUT), "TIMEOUT");
    assert_string_equal(pt_status_name(PT_ERR_INVALID), "INVALID");
    assert_string_equal(pt_strerror(PT_ERR_UPSTREAM), "upstream failed");
    assert_int_equal(pt_status_http(PT_ERR_HEADERS_TOO_LARGE), 431);
    assert_int_equal(pt_status_http(PT_ERR_NOMEM), 500);
    assert_int_equal(pt_status_http(0), 200);
    assert_int_equal(pt_status_http(-1), 500);
    assert_string_equal(pt_strerror(12345), "unknown error");
    assert_string_equal(pt_status_name(PT__STATUS_FIRST), "UNKNOWN");
}

static void cleanup_count(void *data)
{
    int *order = data;
    order[0] = order[0] * 10 + order[1]++;
}

static void test_arena(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    /* alignment and growth */
    for (int i = 1; i < 2000; i++) {
        void *p = pt_arena_alloc(a, (size_t)i % 97 + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i % 97 + 1);
    }
    /* oversized allocation gets its own chunk and stays usable */
    char *big = pt_arena_alloc(a, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    char *z = pt_arena_zalloc(a, 64);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    pt_str_t s = pt_arena_strdup(a, PT_STR("hello"));
    assert_int_equal(s.len, 5);
    assert_string_equal(s.base, "hello");
    char *f = pt_arena_printf(a, "%s-%d", "x", 42);
    assert_string_equal(f, "x-42");
    /* cleanups run in LIFO order on reset */
    int order[2] = {0, 1};
    assert_int_equal(pt_arena_defer(a, cleanup_count, order), 0);
    assert_int_equal(pt_arena_defer(a, cleanup_count, order), 0);
    pt_arena_reset(a);
    assert_int_equal(order[0], 12);
    assert_int_equal(pt_arena_used(a), 0);
    assert_non_null(pt_arena_alloc(a, 10));
    pt_arena_destroy(a);
    pt_arena_destroy(NULL);
}

static void test_arena_limit(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(256, 1000);
    assert_non_null(pt_arena_alloc(a, 500));
    assert_null(pt_arena_alloc(a, 600));
    assert_null(pt_arena_alloc(a, SIZE_MAX));
    assert_non_null(pt_arena_alloc(a, 470)); /* 512 + 480 of 1000 used */
    assert_int_equal(pt_arena_defer(a, cleanup_count, NULL), PT_ERR_LIMIT);
    pt_arena_destroy(a);
}

static void test_str(void **state)
{
    (void)state;
    assert_true(pt_str_ieq(PT_STR("Content-Length"), PT_STR("content-length")));
    assert_false(pt_str_ieq(PT_STR("abc"), PT_STR("abd")));
    assert_true(pt_str_has_prefix(PT_STR("/api/x"), PT_STR("/api/")));
    assert_true(pt_str_has_isuffix(PT_STR("www.EXAMPLE.com"), PT_STR(".example.com")));
    pt_str_t t = pt_str_trim_ows(PT_STR(" \t v a \t"));
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.base, "v a", 3);
    unsigned long long v;
    assert_int_equal(pt_str_to_u64(PT_STR("18446744073709551615"), ~0ull, &v), 0);
    assert_true(v == ~0ull);
    assert_int_equal(pt_str_to_u64(PT_STR("18446744073709551616"), ~0ull, &v), -1);
    assert_int_equal(pt_str_to_u64(PT_STR("+5"), 100, &v), -1);
    assert_int_equal(pt_str_to_u64(PT_STR(""), 100, &v), -1);
    assert_int_equal(pt_str_to_u64(PT_STR("101"), 100, &v), -1);
    assert_int_equal(pt_str_to_u64(PT_STR("100"), 100, &v), 0);
}

static void test_headers(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_headers_t h;
    pt_headers_init(&h, a);
    for (int i = 0; i < 40; i++)
        assert_int_equal(pt_headers_add(&h, PT_STR("X-Many"), PT_STR("v")), 0);
    assert_int_equal(pt_headers_count(&h, PT_STR("x-many")), 40);
    assert_int_equal(pt_headers_add(&h, PT_STR("Connection"), PT_STR("keep-alive, Close ")), 0);
    assert_true(pt_headers_has_token(&h, PT_STR("connection"), PT_STR("close")));
    assert_false(pt_headers_has_token(&h, PT_STR("connection"), PT_STR("upgrade")));
    assert_int_equal(pt_headers_remove(&h, PT_STR("X-MANY")), 40);
    assert_int_equal(h.cnt, 1);
    assert_int_equal(pt_headers_set(&h, PT_STR("X-Env"), PT_STR("a")), 0);
    assert_int_equal(pt_headers_set(&h, PT_STR("x-env"), PT_STR("b")), 0);
    assert_int_equal(pt_headers_count(&h, PT_STR("x-env")), 1);
    pt_str_t v = pt_headers_get(&h, PT_STR("X-Env"));
    assert_memory_equal(v.base, "b", 1);
    assert_int_equal(pt_headers_rename(&h, PT_STR("x-env"), PT_STR("X-Environment")), 1);
    assert_non_null(pt_headers_find(&h, PT_STR("x-environment")));
    assert_null(pt_headers_get(&h, PT_STR("x-env")).base);
    assert_true(pt_header_is_hop_by_hop(PT_STR("Transfer-Encoding")));
    assert_false(pt_header_is_hop_by_hop(PT_STR("content-length")));
    assert_true(pt_header_name_valid(PT_STR("x-ok"), false));
    assert_false(pt_header_name_valid(PT_STR("x_no"), false));
    assert_true(pt_header_name_valid(PT_STR("x_no"), true));
    assert_false(pt_header_name_valid(PT_STR("bad name"), true));
    assert_false(pt_header_name_valid(PT_STR(""), true));
    assert_true(pt_header_value_valid(PT_STR("a\tb")));
    assert_false(pt_header_value_valid(PT_STR("a\rb")));
    assert_false(pt_header_value_valid((pt_str_t){"a\0b", 3}));
    pt_arena_destroy(a);
}

/* The byte-by-byte definition pt_header_value_valid() must agree with. */
static bool value_valid_ref(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return false;
    return true;
}

/* Block-at-a-time validation: every byte value at every position of values of
 * 0..40 bytes (the 16-byte SSE2 loop and its overlapping last block, the word
 * loop, the overlapping last word, the short path), amid bytes that are fine,
 * HTAB and obs-text. */
static void test_header_value_valid_words(void **state)
{
    (void)state;
    static const unsigned char fillers[] = {'a', '\t', 0x80, 0xff, ' ', '~'};
    unsigned char buf[40];
    for (size_t len = 0; len <= sizeof(buf); len++) {
        for (size_t f = 0; f < sizeof(fillers); f++) {
            memset(buf, fillers[f], sizeof(buf));
            assert_true(pt_header_value_valid((pt_str_t){(const char *)buf, len}));
            for (size_t pos = 0; pos < len; pos++) {
                for (unsigned c = 0; c < 256; c++) {
                    buf[pos] = (unsigned char)c;
                    bool want = value_valid_ref(buf, len);
                    if (pt_header_value_valid((pt_str_t){(const char *)buf, len}) != want)
                        fail_msg("len %zu filler %#x byte %#x at %zu: want %d", len,
                                 fillers[f], c, pos, want);
                }
                buf[pos] = fillers[f];
            }
        }
    }
}

/* The hop-by-hop set, in any case, and near misses of the same lengths. */
static void test_hop_by_hop_set(void **state)
{
    (void)state;
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection",
                                      "proxy-authenticate", "proxy-authorization", "te",
                                      "trailer", "transfer-encoding", "upgrade", "http2-settings"};
    static const char *const not_hop[] = {"tx", "trailers", "upgrades", "connectiox", "keep-alivf",
                                          "http2-settingz", "proxy-connectioz", "content-length",
                                          "x-forwarded-for", "host", "", "proxy-authorizatioN2"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        char up[32];
        size_t n = strlen(hop[i]);
        for (size_t j = 0; j < n; j++)
            up[j] = (char)((hop[i][j] >= 'a' && hop[i][j] <= 'z') ? hop[i][j] - 32 : hop[i][j]);
        assert_true(pt_header_is_hop_by_hop((pt_str_t){hop[i], n}));
        assert_true(pt_header_is_hop_by_hop((pt_str_t){up, n}));
    }
    for (size_t i = 0; i < sizeof(not_hop) / sizeof(not_hop[0]); i++)
        assert_false(pt_header_is_hop_by_hop(pt_str_c(not_hop[i])));
}

/* pt_str_ieq compares eight bytes at a time: every length 0..40, a difference
 * (or a case change) at every position, against the byte-wise definition;
 * bytes >= 0x80 and the neighbours of 'A'..'Z' ('@', '[', '`', '{') never
 * fold. */
static bool ieq_ref(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return false;
    }
    return true;
}

static void test_str_ieq_words(void **state)
{
    (void)state;
    static const unsigned char probes[] = {'A', 'a', 'Z', 'z', '@', '`', '[', '{', 0xc1, 0xe1,
                                           0x80, 0xff, '0', 0x01, 0x7f, 0xda, 0xfa};
    char a[40], b[40];
    for (size_t n = 0; n <= sizeof(a); n++) {
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (char)('a' + i % 26);
        assert_true(pt_str_ieq((pt_str_t){a, n}, (pt_str_t){b, n}));
        for (size_t pos = 0; pos < n; pos++) {
            for (size_t p = 0; p < sizeof(probes); p++) {
                for (size_t q = 0; q < sizeof(probes); q++) {
                    a[pos] = (char)probes[p];
                    b[pos] = (char)probes[q];
                    assert_int_equal(pt_str_ieq((pt_str_t){a, n}, (pt_str_t){b, n}), ieq_ref(a, b, n));
                }
            }
            a[pos] = b[pos] = (char)('a' + pos % 26);
            b[pos] = (char)(b[pos] - 0x20); /* the same letter, upper case */
            assert_true(pt_str_ieq((pt_str_t){a, n}, (pt_str_t){b, n}));
            b[pos] = a[pos];
        }
        if (n > 0)
            assert_false(pt_str_ieq((pt_str_t){a, n}, (pt_str_t){b, n - 1}));
    }
    assert_true(pt_str_ieq(PT_STR("Proxy-Authorization"), PT_STR("proxy-authorization")));
    assert_false(pt_str_ieq(PT_STR("proxy-authorization"), PT_STR("proxy-authorizatioN ")));
}

/* pt__headers_own: entries that pointed into a buffer about to be reused
 * end up in one arena block, names lowercased, values as they were, each
 * NUL-terminated; entries before `from` are left alone. */
static void test_headers_own(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_headers_t h;
    pt_headers_init(&h, a);
    static const char first[] = "static";
    assert_int_equal(pt_headers_add_nocopy(&h, PT_STR("x-first"), PT_STR(first)), 0);
    char buf[] = "Content-Type: text/plain\r\nX-Empty:\r\nServer: nginx";
    assert_int_equal(pt_headers_add_nocopy(&h, (pt_str_t){buf, 12}, (pt_str_t){buf + 14, 10}), 0);
    assert_int_equal(pt_headers_add_nocopy(&h, (pt_str_t){buf + 26, 7}, (pt_str_t){buf + 34, 0}), 0);
    assert_int_equal(pt_headers_add_nocopy(&h, (pt_str_t){buf + 36, 6}, (pt_str_t){buf + 44, 5}), 0);
    size_t before = pt_arena_used(a);
    assert_int_equal(pt__headers_own(&h, 1), 0);
    assert_true(pt_arena_used(a) - before <= 12 + 10 + 7 + 0 + 6 + 5 + 6 + 15); /* one block */
    memset(buf, 'X', sizeof(buf) - 1);                                          /* the buffer is reused */
    assert_true(h.v[0].value.base == first); /* before `from`: untouched */
    assert_string_equal(h.v[1].name.base, "content-type");
    assert_string_equal(h.v[1].value.base, "text/plain");
    assert_int_equal(h.v[1].value.len, 10);
    assert_string_equal(h.v[2].name.base, "x-empty");
    assert_int_equal(h.v[2].value.len, 0);
    assert_string_equal(h.v[2].value.base, "");
    assert_string_equal(h.v[3].name.base, "server");
    assert_string_equal(h.v[3].value.base, "nginx");
    assert_true(pt_str_eq(pt_headers_get(&h, PT_STR("Server")), PT_STR("nginx")));
    assert_int_equal(pt__headers_own(&h, 4), 0); /* nothing to own */
    for (int b = 0; b < 256; b++) { /* every byte: only 'A'..'Z' change */
        char one = (char)b;
        size_t at = h.cnt;
        assert_int_equal(pt_headers_add_nocopy(&h, (pt_str_t){&one, 1}, PT_STR("v")), 0);
        assert_int_equal(pt__headers_own(&h, at), 0);
        unsigned char want = b >= 'A' && b <= 'Z' ? (unsigned char)(b + 32) : (unsigned char)b;
        assert_int_equal((unsigned char)h.v[at].name.base[0], want);
    }
    pt_arena_destroy(a);
    a = pt_arena_new(1024, 700); /* the entry array fits (512), its bytes do not: PT_ERR_LIMIT */
    pt_headers_init(&h, a);
    char big[400];
    memset(big, 'v', sizeof(big));
    assert_int_equal(pt_headers_add_nocopy(&h, PT_STR("x-big"), (pt_str_t){big, sizeof(big)}), 0);
    assert_int_equal(pt__headers_own(&h, 0), PT_ERR_LIMIT);
    assert_true(h.v[0].value.base == big);
    pt_arena_destroy(a);
}

/* pt_header_name_valid goes eight bytes at a time: every byte value at every
 * position of names of 1..20 bytes, with and without underscores allowed,
 * against the RFC 9110 token definition. */
static bool tchar_ref(unsigned char c, bool us)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    if (c == '_')
        return us;
    return c != 0 && strchr("!#$%&'*+-.^`|~", c) != NULL;
}

static void test_header_name_valid_words(void **state)
{
    (void)state;
    char n[20];
    for (size_t len = 1; len <= sizeof(n); len++) {
        for (size_t i = 0; i < len; i++)
            n[i] = "x-Forwarded-4For"[i % 16];
        assert_true(pt_header_name_valid((pt_str_t){n, len}, false));
        for (size_t pos = 0; pos < len; pos++) {
            char keep = n[pos];
            for (int c = 0; c < 256; c++) {
                n[pos] = (char)c;
                for (int us = 0; us < 2; us++)
                    assert_int_equal(pt_header_name_valid((pt_str_t){n, len}, us),
                                     tchar_ref((unsigned char)c, us));
            }
            n[pos] = keep;
        }
    }
    assert_false(pt_header_name_valid(PT_STR(""), true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_arena_limit),  cmocka_unit_test(test_str),
        cmocka_unit_test(test_headers),      cmocka_unit_test(test_header_value_valid_words),
        cmocka_unit_test(test_hop_by_hop_set),
        cmocka_unit_test(test_str_ieq_words), cmocka_unit_test(test_headers_own),
        cmocka_unit_test(test_header_name_valid_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
