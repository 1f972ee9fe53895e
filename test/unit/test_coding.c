/*
 * test_coding.c -- http/coding.c: Accept-Encoding selection (q-values, `*`,
 * identity, server preference) and the streaming coders (round trips through
 * each codec with flushes, truncated and corrupt input, a limit enforced while
 * a bomb inflates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "portico/coding.h"
#include "portico/status.h"

#define ALL (PT_CODING_BIT(PT_CODING_GZIP) | PT_CODING_BIT(PT_CODING_BR) | PT_CODING_BIT(PT_CODING_ZSTD))

/* The block cache the streams use: NULL (plain malloc) or one per test (freed while streams live, too). */
static pt_zcache_t *CACHE;

static pt_coding_t pick(const char *ae)
{
    return pt_coding_pick(true, pt_str_c(ae), ALL);
}

static void test_pick_basic(void **state)
{
    (void)state;
    assert_int_equal(pt_coding_pick(false, PT_STR_NULL, ALL), PT_CODING_IDENTITY);
    assert_int_equal(pick(""), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip"), PT_CODING_GZIP);
    assert_int_equal(pick("x-gzip"), PT_CODING_GZIP);
    assert_int_equal(pick("GZIP"), PT_CODING_GZIP);
    assert_int_equal(pick("deflate"), PT_CODING_IDENTITY);
    assert_int_equal(pick("zstd"), PT_CODING_ZSTD);
    /* server preference among equals: br > zstd > gzip */
    assert_int_equal(pick("gzip, deflate, br, zstd"), PT_CODING_BR);
    assert_int_equal(pick("gzip, zstd"), PT_CODING_ZSTD);
    assert_int_equal(pick(" gzip ,  br "), PT_CODING_BR);
    /* only allowed codings */
    assert_int_equal(pt_coding_pick(true, PT_STR("br, gzip"), PT_CODING_BIT(PT_CODING_GZIP)),
                     PT_CODING_GZIP);
}

static void test_pick_qvalues(void **state)
{
    (void)state;
    assert_int_equal(pick("br;q=0.5, gzip;q=0.8"), PT_CODING_GZIP);
    assert_int_equal(pick("br;q=0.8, gzip;q=0.8"), PT_CODING_BR);
    assert_int_equal(pick("br;q=0, gzip"), PT_CODING_GZIP);
    assert_int_equal(pick("gzip;q=0"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip; Q=0.001"), PT_CODING_GZIP);
    assert_int_equal(pick("gzip;q=0.000"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip;q=1.000, br;q=0.999"), PT_CODING_GZIP);
    assert_int_equal(pick("gzip;level=3;q=0.2, zstd;q=0.1"), PT_CODING_GZIP);
    /* malformed q-values never make a coding acceptable */
    assert_int_equal(pick("gzip;q=1.5"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip;q=abc"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip;q=0.1234"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip;q=, br;q=0.1"), PT_CODING_BR);
    assert_int_equal(pick("gzip;q=-1"), PT_CODING_IDENTITY);
    /* the more favourable of a coding named twice */
    assert_int_equal(pick("gzip;q=0, gzip;q=0.5"), PT_CODING_GZIP);
}

static void test_pick_star_identity(void **state)
{
    (void)state;
    assert_int_equal(pick("*"), PT_CODING_BR);
    assert_int_equal(pick("*;q=0.5, br;q=0"), PT_CODING_ZSTD);
    assert_int_equal(pick("*;q=0"), PT_CODING_IDENTITY);
    assert_int_equal(pick("gzip, *;q=0"), PT_CODING_GZIP);
    assert_int_equal(pick("*;q=0.1, gzip;q=0.5"), PT_CODING_GZIP);
    assert_int_equal(pick("identity"), PT_CODING_IDENTITY);
    /* identity preferred by the client over the codings */
    assert_int_equal(pick("identity;q=1, gzip;q=0.5"), PT_CODING_IDENTITY);
    assert_int_equal(pick("identity;q=0.5, gzip"), PT_CODING_GZIP);
    assert_int_equal(pick("identity;q=0, gzip;q=0.1"), PT_CODING_GZIP);
    assert_int_equal(pick(",,, ;q=1, gzip"), PT_CODING_GZIP);
}

static bool refused(const char *ae)
{
    return pt_coding_identity_refused(true, pt_str_c(ae));
}

/* RFC 9110 12.5.3: identity;q=0, or *;q=0 without a more specific identity. */
static void test_identity_refused(void **state)
{
    (void)state;
    assert_false(pt_coding_identity_refused(false, PT_STR_NULL));
    assert_false(refused(""));
    assert_false(refused("gzip;q=0"));
    assert_false(refused("identity"));
    assert_false(refused("*;q=0, identity"));
    assert_false(refused("identity;q=0, identity;q=0.001")); /* the more favourable q */
    assert_false(refused("identity;q=0.5"));
    assert_true(refused("identity;q=0"));
    assert_true(refused("IDENTITY ; Q=0.000"));
    assert_true(refused("*;q=0"));
    assert_true(refused("gzip, *;q=0"));
    assert_true(refused("identity;q=0, gzip"));
    assert_true(refused("identity;q=zero")); /* an unreadable q never makes it acceptable */
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(pt_coding_from_name(PT_STR(" gzip ")), PT_CODING_GZIP);
    assert_int_equal(pt_coding_from_name(PT_STR("Br")), PT_CODING_BR);
    assert_int_equal(pt_coding_from_name(PT_STR("zstd")), PT_CODING_ZSTD);
    assert_int_equal(pt_coding_from_name(PT_STR("identity")), PT_CODING_IDENTITY);
    assert_int_equal(pt_coding_from_name(PT_STR("gzip, br")), -1);
    assert_int_equal(pt_coding_from_name(PT_STR("compress")), -1);
    assert_string_equal(pt_coding_name(PT_CODING_ZSTD), "zstd");
}

typedef struct sink {
    unsigned char *buf;
    size_t len, cap, limit;
    unsigned calls;
} sink_t;

static int sink_emit(void *ud, const void *data, size_t len)
{
    sink_t *s = ud;
    s->calls++;
    assert_true(len > 0 && len <= PT_CODING_CHUNK);
    if (s->limit != 0 && s->len + len > s->limit)
        return PT_ERR_LIMIT;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->buf = realloc(s->buf, s->cap);
        assert_non_null(s->buf);
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

static unsigned char *sample(size_t n)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (i % 7 == 0) ? (unsigned char)(x >> 24) : (unsigned char)"{\"name\":\"value\"},"[i % 17];
    }
    return p;
}

/* Encodes in pieces (flushing each when `sync`), checks every flush is decodable alone, decodes the whole. */
static void roundtrip(pt_coding_t c, int level, bool sync)
{
    size_t n = 300000;
    unsigned char *data = sample(n);
    pt_zstream_t *enc = pt_zstream_encoder(CACHE, c, level, sync ? -1 : (long long)n / 3);
    assert_non_null(enc);
    sink_t comp = {0};
    size_t step = 7001;
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        assert_int_equal(pt_zstream_feed(enc, data + off, k, sync ? PT_ZFLUSH_SYNC : PT_ZFLUSH_NONE,
                                         sink_emit, &comp), 0);
        if (sync && off == 0) {
            /* after a sync flush the first piece is decodable from what was written */
            pt_zstream_t *d = pt_zstream_decoder(CACHE, c);
            sink_t part = {0};
            assert_int_equal(pt_zstream_feed(d, comp.buf, comp.len, PT_ZFLUSH_NONE, sink_emit, &part), 0);
            assert_int_equal(part.len, k);
            assert_memory_equal(part.buf, data, k);
            pt_zstream_free(d);
            free(part.buf);
        }
    }
    assert_int_equal(pt_zstream_feed(enc, NULL, 0, PT_ZFLUSH_FINISH, sink_emit, &comp), 0);
    pt_zstream_free(enc);
    assert_true(comp.len < n / 2);

    pt_zstream_t *dec = pt_zstream_decoder(CACHE, c);
    sink_t out = {0};
    for (size_t off = 0; off < comp.len; off += 13) {
        size_t k = comp.len - off < 13 ? comp.len - off : 13;
        assert_int_equal(pt_zstream_feed(dec, comp.buf + off, k, PT_ZFLUSH_NONE, sink_emit, &out), 0);
    }
    assert_int_equal(pt_zstream_feed(dec, NULL, 0, PT_ZFLUSH_FINISH, sink_emit, &out), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.buf, data, n);
    pt_zstream_free(dec);

    /* truncated: refused at the end */
    dec = pt_zstream_decoder(CACHE, c);
    sink_t t = {0};
    int rc = pt_zstream_feed(dec, comp.buf, comp.len - 3, PT_ZFLUSH_FINISH, sink_emit, &t);
    assert_int_equal(rc, PT_ERR_INVALID);
    pt_zstream_free(dec);
    free(t.buf);

    /* a limit below the size: stopped while streaming, output never past it */
    dec = pt_zstream_decoder(CACHE, c);
    sink_t lim = {.limit = 50000};
    rc = pt_zstream_feed(dec, comp.buf, comp.len, PT_ZFLUSH_FINISH, sink_emit, &lim);
    assert_int_equal(rc, PT_ERR_LIMIT);
    assert_true(lim.len <= 50000);
    pt_zstream_free(dec);
    free(lim.buf);

    free(out.buf);
    free(comp.buf);
    free(data);
}

/* Each codec without a cache, then twice with one (the second run reuses its blocks). */
static void roundtrips(pt_coding_t c, int level, int level2)
{
    CACHE = NULL;
    roundtrip(c, level, false);
    CACHE = pt_zcache_new(8u << 20);
    assert_non_null(CACHE);
    roundtrip(c, level2, true);
    roundtrip(c, level, false);
    pt_zcache_free(CACHE);
    CACHE = NULL;
}

static void test_roundtrip_gzip(void **state)
{
    (void)state;
    roundtrips(PT_CODING_GZIP, 5, 1);
}

static void test_roundtrip_br(void **state)
{
    (void)state;
    roundtrips(PT_CODING_BR, 4, 11);
}

static void test_roundtrip_zstd(void **state)
{
    (void)state;
    roundtrips(PT_CODING_ZSTD, 3, 1);
}

static void test_cache_outlived_by_stream(void **state)
{
    (void)state;
    CACHE = pt_zcache_new(1u << 20); /* smaller than a br/zstd stream's blocks: some freed at once */
    pt_zstream_t *e[3];
    for (pt_coding_t c = PT_CODING_GZIP; c <= PT_CODING_ZSTD; c++)
        e[c - 1] = pt_zstream_encoder(CACHE, c, 5, -1);
    pt_zcache_free(CACHE); /* the cache goes with the last stream */
    CACHE = NULL;
    sink_t out = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pt_zstream_feed(e[i], "abcabcabc", 9, PT_ZFLUSH_FINISH, sink_emit, &out), 0);
        pt_zstream_free(e[i]);
    }
    free(out.buf);
}

static void test_bomb_stops_early(void **state)
{
    (void)state;
    /* 64 MiB of zeros gzip to ~64 KiB; the decoder must stop right at the limit */
    for (pt_coding_t c = PT_CODING_GZIP; c <= PT_CODING_ZSTD; c++) {
        pt_zstream_t *enc = pt_zstream_encoder(CACHE, c, 1, -1);
        sink_t comp = {0};
        unsigned char *zeros = calloc(1, 1 << 20);
        for (int i = 0; i < 64; i++)
            assert_int_equal(pt_zstream_feed(enc, zeros, 1 << 20, PT_ZFLUSH_NONE, sink_emit, &comp), 0);
        assert_int_equal(pt_zstream_feed(enc, NULL, 0, PT_ZFLUSH_FINISH, sink_emit, &comp), 0);
        pt_zstream_free(enc);
        free(zeros);
        pt_zstream_t *dec = pt_zstream_decoder(CACHE, c);
        sink_t out = {.limit = 1 << 20};
        assert_int_equal(pt_zstream_feed(dec, comp.buf, comp.len, PT_ZFLUSH_FINISH, sink_emit, &out),
                         PT_ERR_LIMIT);
        assert_true(out.len <= (1u << 20));
        /* after an error the stream refuses more input */
        assert_int_equal(pt_zstream_feed(dec, comp.buf, 1, PT_ZFLUSH_NONE, sink_emit, &out), PT_ERR_INVALID);
        pt_zstream_free(dec);
        free(out.buf);
        free(comp.buf);
    }
}

static void test_garbage(void **state)
{
    (void)state;
    static const char junk[] = "this is not compressed at all, not even a little bit";
    for (pt_coding_t c = PT_CODING_GZIP; c <= PT_CODING_ZSTD; c++) {
        pt_zstream_t *dec = pt_zstream_decoder(CACHE, c);
        sink_t out = {0};
        int rc = pt_zstream_feed(dec, junk, sizeof(junk) - 1, PT_ZFLUSH_NONE, sink_emit, &out);
        if (rc == 0)
            rc = pt_zstream_feed(dec, NULL, 0, PT_ZFLUSH_FINISH, sink_emit, &out);
        assert_int_equal(rc, PT_ERR_INVALID);
        pt_zstream_free(dec);
        free(out.buf);
        /* an empty body is a truncated stream */
        dec = pt_zstream_decoder(CACHE, c);
        assert_int_equal(pt_zstream_feed(dec, NULL, 0, PT_ZFLUSH_FINISH, sink_emit, &out), PT_ERR_INVALID);
        pt_zstream_free(dec);
    }
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    for (pt_coding_t c = PT_CODING_GZIP; c <= PT_CODING_ZSTD; c++) {
        pt_zstream_t *enc = pt_zstream_encoder(CACHE, c, 3, 5);
        sink_t comp = {0};
        assert_int_equal(pt_zstream_feed(enc, "hello", 5, PT_ZFLUSH_FINISH, sink_emit, &comp), 0);
        pt_zstream_free(enc);
        sink_emit(&comp, "XYZXYZXYZXYZXYZXYZ", 18);
        pt_zstream_t *dec = pt_zstream_decoder(CACHE, c);
        sink_t out = {0};
        int rc = pt_zstream_feed(dec, comp.buf, comp.len, PT_ZFLUSH_FINISH, sink_emit, &out);
        assert_int_equal(rc, PT_ERR_INVALID);
        pt_zstream_free(dec);
        free(out.buf);
        free(comp.buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_basic),        cmocka_unit_test(test_pick_qvalues),
        cmocka_unit_test(test_pick_star_identity), cmocka_unit_test(test_names),
        cmocka_unit_test(test_identity_refused),
        cmocka_unit_test(test_roundtrip_gzip),    cmocka_unit_test(test_roundtrip_br),
        cmocka_unit_test(test_roundtrip_zstd),    cmocka_unit_test(test_bomb_stops_early),
        cmocka_unit_test(test_garbage),           cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_cache_outlived_by_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
