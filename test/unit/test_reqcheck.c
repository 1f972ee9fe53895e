/*
 * test_reqcheck.c -- the request-line rules (gateway/http/reqcheck.c) and, with the
 * same table, what each codec answers: the HTTP/1.1 parser (h1parse.c) and
 * the HTTP/2 codec (h2.c, raw frames over a socketpair, fake request layer
 * test/support/h2_fake.c). Issue 14: HTTP/1.1 answered 501 for `FOO` and
 * `get` while HTTP/2 forwarded them, and an HTTP/2 :authority with userinfo
 * was taken as is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/bufferevent.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http/h1parse.h"
#include "http/h2.h"
#include "h2_fake.h"
#include "http/reqcheck.h"

typedef struct rcase {
    const char *method, *authority;
    int rule;  /* pt_reqcheck_method, then pt_reqcheck_authority: 0 or PT_ERR_* */
    int codec; /* what both codecs answer: 0 (request goes on) or PT_ERR_* */
} rcase_t;

static const rcase_t CASES[] = {
    {"GET", "example.com", 0, 0},
    {"POST", "example.com:8080", 0, 0},
    {"PROPFIND", "[::1]:443", 0, 0},
    {"M-SEARCH", "a-b.example_c~d", 0, 0},
    {"PURGE", "127.0.0.1", 0, 0},
    {"FOO", "example.com", PT_ERR_NOT_IMPLEMENTED, PT_ERR_NOT_IMPLEMENTED},
    {"get", "example.com", PT_ERR_NOT_IMPLEMENTED, PT_ERR_NOT_IMPLEMENTED},
    {"Post", "example.com", PT_ERR_NOT_IMPLEMENTED, PT_ERR_NOT_IMPLEMENTED},
    {"GETS", "example.com", PT_ERR_NOT_IMPLEMENTED, PT_ERR_NOT_IMPLEMENTED},
    {"BREW", "example.com", PT_ERR_NOT_IMPLEMENTED, PT_ERR_NOT_IMPLEMENTED},
    {"GET", "user@example.com", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "user:pw@example.com:80", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "@example.com", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "example.com:80x", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "example.com:123456", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "exa%6dple.com", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "[::1", PT_ERR_INVALID, PT_ERR_INVALID},
    {"GET", "a,b.example", PT_ERR_INVALID, PT_ERR_INVALID},
    /* CONNECT is a known method; plain CONNECT is the codecs' 501 (extended
     * CONNECT, RFC 8441, stays possible for the codec to allow) */
    {"CONNECT", "example.com:443", 0, PT_ERR_NOT_IMPLEMENTED},
};
#define NCASES (sizeof(CASES) / sizeof(CASES[0]))

static void test_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const char *why = NULL;
        int st = pt_reqcheck_method(pt_str_c(CASES[i].method), &why);
        if (st == 0)
            st = pt_reqcheck_authority(pt_str_c(CASES[i].authority), &why);
        print_message("%s %s -> %d (%s)\n", CASES[i].method, CASES[i].authority, st,
                      st != 0 ? why : "ok");
        assert_int_equal(st, CASES[i].rule);
        if (st != 0)
            assert_non_null(why);
    }
    const char *why = NULL;
    assert_int_equal(pt_reqcheck_authority(pt_str_c("u@h"), &why), PT_ERR_INVALID);
    assert_string_equal(why, "userinfo in authority");
    assert_int_equal(pt_reqcheck_method(PT_STR(""), &why), PT_ERR_INVALID);
    assert_int_equal(pt_reqcheck_method(pt_str_c("G(T"), &why), PT_ERR_INVALID);
    assert_int_equal(pt_reqcheck_authority(PT_STR(""), &why), PT_ERR_INVALID);
}

/* HTTP/1.1: the request in origin form with Host, and (for non-CONNECT) in
 * absolute form, whose authority goes through the same rule. */
static int h1_status(const char *method, const char *authority, bool absolute)
{
    char req[512];
    if (absolute)
        snprintf(req, sizeof(req), "%s http://%s/x HTTP/1.1\r\nHost: %s\r\n\r\n", method, authority,
                 authority);
    else
        snprintf(req, sizeof(req), "%s /x HTTP/1.1\r\nHost: %s\r\n\r\n", method, authority);
    pt_h1p_limits_t lim = {.max_request_line = 8192, .max_header_bytes = 65536,
                           .max_header_count = 100, .max_body = 1 << 20, .max_chunk_ext = 4096};
    pt_h1p_t *p = pt_h1p_new(&lim);
    pt_h1p_event_t ev;
    pt_h1p_feed(p, req, strlen(req), &ev);
    int st = ev.type == PT_H1P_ERROR ? ev.status : 0;
    assert_true(ev.type == PT_H1P_ERROR || ev.type == PT_H1P_HEAD);
    pt_h1p_free(p);
    return st;
}

static void test_h1_codec(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const rcase_t *c = &CASES[i];
        assert_int_equal(h1_status(c->method, c->authority, false), c->codec);
        if (strcmp(c->method, "CONNECT") != 0)
            assert_int_equal(h1_status(c->method, c->authority, true), c->codec);
    }
}

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void frame(fake_conn_t *fc, uint8_t type, uint8_t flags, int32_t id, const void *payload,
                  size_t len)
{
    uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                     (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    bufferevent_write(fc->client, hd, 9);
    if (len != 0)
        bufferevent_write(fc->client, payload, len);
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

/* HTTP/2: one connection, one stream per case, first with :authority, then
 * with only a host field (RFC 9113 §8.3.1 allows either). */
static void test_h2_codec(void **state)
{
    (void)state;
    for (int use_host = 0; use_host < 2; use_host++) {
        fake_reset();
        fake.mode = FAKE_HOLD;
        fake_conn_t fc;
        fake_conn_init(&fc, NULL);
        nghttp2_hd_deflater *def;
        nghttp2_hd_deflate_new(&def, 4096);
        pt__h2_conn_start(fc.conn, NULL, 0);
        bufferevent_write(fc.client, PREFACE, sizeof(PREFACE) - 1);
        frame(&fc, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        frame(&fc, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
        for (size_t i = 0; i < NCASES; i++) {
            const rcase_t *c = &CASES[i];
            /* CONNECT carries no :scheme or :path (RFC 9113 §8.5); a host
             * field, being a regular field, comes after the pseudo-headers */
            bool connect = strcmp(c->method, "CONNECT") == 0;
            nghttp2_nv auth = use_host ? (nghttp2_nv)NV("host", c->authority)
                                       : (nghttp2_nv)NV(":authority", c->authority);
            nghttp2_nv nva[4] = {NV(":method", c->method), auth};
            if (!connect) {
                nva[1] = (nghttp2_nv)NV(":scheme", "http");
                nva[2] = (nghttp2_nv)NV(":path", "/x");
                nva[3] = auth;
            }
            if (connect && use_host)
                continue; /* and it needs :authority */
            size_t k = fake.rec_cnt;
            uint8_t block[512];
            ssize_t len = nghttp2_hd_deflate_hd(def, block, sizeof(block), nva, connect ? 2 : 4);
            assert_true(len > 0);
            frame(&fc, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
                  (int32_t)(1 + 2 * k), block, (size_t)len);
            fake_conn_run(&fc, 4);
            assert_int_equal(fake.rec_cnt, k + 1);
            fake_rec_t *r = &fake.recs[k];
            print_message("h2 %s %s: rejected %d\n", c->method, c->authority, r->rejected);
            assert_int_equal(r->rejected, c->codec);
            assert_int_equal(r->headers_done, c->codec == 0);
            if (r->req != NULL && c->codec == 0)
                fake_respond(r, 200, "", 0, true);
            fake_conn_run(&fc, 4);
        }
        assert_false(fc.closed);
        nghttp2_hd_deflate_del(def);
        fake_conn_dispose(&fc);
        fake_reset();
    }
}

/* Every byte inside a host name: only ALPHA DIGIT - . _ ~ pass (the reg-name
 * bitmap of reqcheck.c against a plain reference). */
static void test_authority_bytes(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char host[4] = {'a', (char)c, 'b', '\0'};
        bool reg = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '.' || c == '_' || c == '~';
        const char *why;
        int st = pt_reqcheck_authority((pt_str_t){host, 3}, &why);
        /* ':' starts an (empty) port: also refused, as is everything else */
        assert_int_equal(st == 0, reg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_authority_bytes),
        cmocka_unit_test(test_h1_codec),
        cmocka_unit_test(test_h2_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
