/*
 * test_h1parse.c -- the strict HTTP/1.1 request parser (gateway/http/h1parse.c).
 *
 * Every input is parsed three ways -- in one piece, one byte at a time, and
 * in 7-byte pieces -- and the three transcripts must be identical, so the
 * incremental paths are checked by every case. Case names follow
 * SECURITY-CASES.md §2.1 (H1-n).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/h1parse.h"

static pt_h1p_limits_t default_limits(void)
{
    return (pt_h1p_limits_t){
        .max_request_line = 8192,
        .max_header_bytes = 65536,
        .max_header_count = 100,
        .max_body = 1 << 20,
        .max_chunk_ext = 4096,
        .allow_underscores = false,
    };
}

/* A transcript of the events of one parse. */
typedef struct transcript {
    char *text;
    size_t len, cap;
    int heads, dones, error;
    const char *reason;
} transcript_t;

static void tx_add(transcript_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        while (t->len + n + 1 > t->cap)
            t->cap = t->cap ? t->cap * 2 : 4096;
        t->text = realloc(t->text, t->cap);
        assert_non_null(t->text);
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = 0;
}

static void tx_addf(transcript_t *t, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    tx_add(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void tx_head(transcript_t *t, const pt_h1p_head_t *h)
{
    tx_addf(t,
            "HEAD %.*s %.*s auth=%.*s scheme=%.*s v=%d cl=%lld ch=%d body=%d ka=%d exp=%d h2c=%d\n",
            (int)h->method.len, h->method.base, (int)h->path.len, h->path.base,
            (int)h->authority.len, h->authority.base ? h->authority.base : "", (int)h->scheme.len,
            h->scheme.base ? h->scheme.base : "", h->version, (long long)h->content_length,
            h->chunked, h->has_body, h->keep_alive, h->expect_continue, h->h2c_upgrade);
    for (size_t i = 0; i < h->header_cnt; i++) {
        tx_add(t, "  ", 2);
        tx_add(t, h->headers[i].name.base, h->headers[i].name.len);
        tx_add(t, "=[", 2);
        tx_add(t, h->headers[i].value.base, h->headers[i].value.len);
        tx_add(t, "]\n", 2);
    }
}

/* Parses `in` fed in pieces of `step` bytes (0: all at once). */
static void parse(transcript_t *t, const char *in, size_t len, size_t step,
                  const pt_h1p_limits_t *lim)
{
    memset(t, 0, sizeof(*t));
    tx_add(t, "", 0);
    char *buf = malloc(len + 1);
    memcpy(buf, in, len);
    pt_h1p_t *p = pt_h1p_new(lim);
    size_t off = 0;
    bool body_open = false;
    for (;;) {
        size_t end = step == 0 || off + step > len ? len : off + step;
        bool last = end == len;
        for (;;) {
            pt_h1p_event_t ev;
            size_t n = pt_h1p_feed(p, buf + off, end - off, &ev);
            assert_true(n <= end - off);
            off += n;
            if (ev.type != PT_H1P_BODY && ev.type != PT_H1P_NONE && body_open) {
                tx_add(t, "]\n", 2);
                body_open = false;
            }
            if (ev.type == PT_H1P_NONE) {
                assert_int_equal(off, end);
                break;
            }
            if (ev.type == PT_H1P_HEAD) {
                t->heads++;
                tx_head(t, pt_h1p_head(p));
            } else if (ev.type == PT_H1P_BODY) {
                assert_true(ev.len > 0);
                if (!body_open)
                    tx_add(t, "BODY[", 5);
                body_open = true;
                tx_add(t, ev.data, ev.len);
            } else if (ev.type == PT_H1P_DONE) {
                t->dones++;
                tx_add(t, "DONE\n", 5);
            } else {
                assert_int_equal(ev.type, PT_H1P_ERROR);
                t->error = ev.status;
                t->reason = ev.reason;
                tx_addf(t, "ERROR %d\n", ev.status);
                /* sticky */
                pt_h1p_event_t ev2;
                pt_h1p_feed(p, buf + off, end - off, &ev2);
                assert_int_equal(ev2.type, PT_H1P_ERROR);
                assert_int_equal(ev2.status, ev.status);
                goto out;
            }
        }
        if (last)
            break;
    }
out:
    pt_h1p_free(p);
    free(buf);
}

/* Parses three ways, checks the transcripts agree, returns the one-piece transcript. */
static transcript_t run_lim(const char *in, size_t len, const pt_h1p_limits_t *lim)
{
    transcript_t whole, bytes, sevens;
    parse(&whole, in, len, 0, lim);
    parse(&bytes, in, len, 1, lim);
    parse(&sevens, in, len, 7, lim);
    if (strcmp(whole.text, bytes.text) != 0 || strcmp(whole.text, sevens.text) != 0) {
        print_error("whole:\n%s\nbytes:\n%s\nsevens:\n%s\n", whole.text, bytes.text, sevens.text);
        fail();
    }
    free(bytes.text);
    free(sevens.text);
    return whole;
}

static transcript_t run(const char *in, size_t len)
{
    pt_h1p_limits_t lim = default_limits();
    return run_lim(in, len, &lim);
}

#define RUN(lit) run((lit), sizeof(lit) - 1)

static void expect_error_len(const char *in, size_t len, int status, int heads)
{
    transcript_t t = run(in, len);
    if (t.error != status || t.heads != heads) {
        print_error("input %.*s\nexpected error %d after %d heads, got:\n%s", (int)len, in, status,
                    heads, t.text);
        fail();
    }
    free(t.text);
}

/* Malformed heads: refused before any HEAD event. */
#define EXPECT_REJECT(lit, status) expect_error_len((lit), sizeof(lit) - 1, (status), 0)
/* Malformed bodies: refused after the HEAD. */
#define EXPECT_BODY_REJECT(lit, status) expect_error_len((lit), sizeof(lit) - 1, (status), 1)

static transcript_t expect_ok_len(const char *in, size_t len, int requests)
{
    transcript_t t = run(in, len);
    if (t.error != 0 || t.dones != requests || t.heads != requests) {
        print_error("input %.*s\nexpected %d clean requests, got:\n%s", (int)len, in, requests,
                    t.text);
        fail();
    }
    return t;
}

#define EXPECT_OK(lit) free(expect_ok_len((lit), sizeof(lit) - 1, 1).text)

static void expect_contains(const transcript_t *t, const char *needle)
{
    if (strstr(t->text, needle) == NULL) {
        print_error("expected \"%s\" in:\n%s", needle, t->text);
        fail();
    }
}

/* ---- basics ---------------------------------------------------------------- */

static void test_simple_get(void **state)
{
    transcript_t t = expect_ok_len(
        "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Foo:  bar baz \t\r\n"
        "ACCEPT:\t*/*\r\n\r\n",
        sizeof("GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Foo:  bar baz \t\r\n"
               "ACCEPT:\t*/*\r\n\r\n") -
            1,
        1);
    expect_contains(&t, "HEAD GET /a/b?x=1 auth=Example.com:8080 scheme= v=11 cl=-1 ch=0 body=0 "
                        "ka=1 exp=0 h2c=0\n");
    expect_contains(&t, "  host=[Example.com:8080]\n  x-foo=[bar baz]\n  accept=[*/*]\n");
    free(t.text);
}

static void test_post_content_length(void **state)
{
    static const char in[] = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    transcript_t t = expect_ok_len(in, sizeof(in) - 1, 1);
    expect_contains(&t, "cl=11 ch=0 body=1");
    expect_contains(&t, "BODY[hello world]\nDONE\n");
    free(t.text);
}

static void test_chunked_body(void **state)
{
    static const char in[] =
        "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;name=val;x=\"q\"\r\n world\r\nA\r\n0123456789\r\n0\r\n"
        "X-Trailer: t\r\n\r\n";
    transcript_t t = expect_ok_len(in, sizeof(in) - 1, 1);
    expect_contains(&t, "ch=1 body=1");
    expect_contains(&t, "BODY[hello world0123456789]\nDONE\n");
    free(t.text);
}

static void test_chunk_ext_bws(void **state)
{
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2 "
              ";a=b\r\nhi\r\n0\r\n\r\n");
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n");
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked \r\n\r\n0\r\n\r\n");
}

static void test_http10(void **state)
{
    transcript_t t = RUN("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "auth= scheme= v=10 cl=-1 ch=0 body=0 ka=0");
    free(t.text);
    t = RUN("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    expect_contains(&t, "v=10 cl=-1 ch=0 body=0 ka=1");
    free(t.text);
    t = RUN("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n");
    expect_contains(&t, "v=11 cl=-1 ch=0 body=0 ka=0");
    free(t.text);
}

static void test_leading_crlf_between_requests(void **state)
{
    static const char in[] =
        "\r\nGET /1 HTTP/1.1\r\nHost: h\r\n\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    free(expect_ok_len(in, sizeof(in) - 1, 2).text);
    EXPECT_REJECT("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
}

static void test_underscores(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 1\r\n\r\n", PT_ERR_INVALID);
    pt_h1p_limits_t lim = default_limits();
    lim.allow_underscores = true;
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nX_Y: 1\r\n\r\n";
    transcript_t t = run_lim(in, sizeof(in) - 1, &lim);
    assert_int_equal(t.error, 0);
    expect_contains(&t, "x_y=[1]");
    free(t.text);
}

static void test_methods_and_targets(void **state)
{
    EXPECT_OK("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_REJECT("GET * HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT("FOO / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET a HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    /* a TLS ClientHello on the cleartext port */
    EXPECT_REJECT("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", PT_ERR_INVALID);
}

/* ---- H1-1 CL + TE ---------------------------------------------------------- */

static void test_h1_1_cl_te(void **state)
{
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        PT_ERR_INVALID);
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        "0\r\n\r\n",
        PT_ERR_INVALID);
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        PT_ERR_INVALID);
}

/* ---- H1-2 Content-Length ----------------------------------------------------- */

static void test_h1_2_content_length(void **state)
{
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        PT_ERR_INVALID);
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  5x\r\n\r\nhello", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551621\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 00000000000000000005\r\n\r\nhello",
                  PT_ERR_INVALID);
    /* whitespace around the value is legal */
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\t5 \r\n\r\nhello");
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
}

/* ---- H1-3 TE obfuscation grid ------------------------------------------------- */

static void test_h1_3_te_obfuscation(void **state)
{
    static const unsigned char ctl[] = {0x01, 0x0b, 0x0c, 0x1f, 0x7f, 0xa0, 0xff, 0x00};
    static const char *const shapes[] = {
        "%cTransfer-Encoding: chunked", /* before the name */
        "Transfer-Encoding%c: chunked", /* after the name */
        "Transfer-Encoding: %cchunked", /* before the value */
        "Transfer-Encoding: chunked%c", /* after the value */
        "Transfer%c-Encoding: chunked", /* inside the name */
        "Transfer-Encoding: chun%cked", /* inside the value */
    };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (size_t c = 0; c < sizeof(ctl); c++) {
            char line[64], req[256];
            int n = snprintf(line, sizeof(line), shapes[s], 'Z');
            char *z = strchr(line, 'Z');
            *z = (char)ctl[c];
            int m = snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: h\r\n");
            memcpy(req + m, line, (size_t)n);
            m += n;
            m += snprintf(req + m, sizeof(req) - (size_t)m, "\r\n\r\n0\r\n\r\n");
            transcript_t t = run(req, (size_t)m);
            if (t.error != PT_ERR_INVALID || t.heads != 0) {
                print_error("shape %zu byte 0x%02x: expected 400 before the head, got\n%s", s,
                            ctl[c], t.text);
                fail();
            }
            free(t.text);
        }
    }
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nX: x\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n");
}

/* ---- H1-4 TE lists ------------------------------------------------------------------- */

static void test_h1_4_te_lists(void **state)
{
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                  PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n"
                  "0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_NOT_IMPLEMENTED);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", PT_ERR_INVALID);
}

/* ---- H1-5 / H1-6 whitespace before colon, obs-fold --------------------------- */

static void test_h1_5_space_before_colon(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost : h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 2\r\n\r\nhi", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A\t: 1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nno-colon\r\n\r\n", PT_ERR_INVALID);
}

static void test_h1_6_obs_fold(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
                  PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\t2\r\n\r\n", PT_ERR_INVALID);
}

/* ---- H1-7 line endings and control bytes -------------------------------------- */

static void test_h1_7_line_endings(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\n\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\nHost: h\n\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    /* obs-text in values is legal */
    EXPECT_OK("GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n");
}

/* ---- H1-8 Host ------------------------------------------------------------------------- */

static void test_h1_8_host(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: \r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n", PT_ERR_INVALID);
    EXPECT_OK("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    EXPECT_OK("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");

    transcript_t t = RUN("GET http://Api.Example:81/x?y HTTP/1.1\r\nHost: api.example:81\r\n\r\n");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "HEAD GET /x?y auth=Api.Example:81 scheme=http v=11");
    free(t.text);
    t = RUN("GET https://a HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "HEAD GET / auth=a scheme=https");
    free(t.text);
}

/* ---- H1-9 versions ---------------------------------------------------------------------- */

static void test_h1_9_versions(void **state)
{
    EXPECT_REJECT("GET /\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET /\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.32\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/2.0\r\nHost: h\r\n\r\n", PT_ERR_VERSION);
    EXPECT_REJECT("GET / HTTP/0.9\r\nHost: h\r\n\r\n", PT_ERR_VERSION);
    EXPECT_REJECT("GET / HTTP/1.2\r\nHost: h\r\n\r\n", PT_ERR_VERSION);
    EXPECT_REJECT("GET / http/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PT_ERR_VERSION);
}

/* ---- H1-10 / H1-11 chunk framing ----------------------------------------------------- */

#define CHUNKED_HEAD "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

static void test_h1_10_chunk_sizes(void **state)
{
    EXPECT_BODY_REJECT(CHUNKED_HEAD "+5\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "_5\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0_2e\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "00000000000000005\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5 x\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "-5\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    /* 16 hex digits is still a size; a huge one hits the body limit */
    EXPECT_OK(CHUNKED_HEAD "0000000000000005\r\nhello\r\n0\r\n\r\n");
    EXPECT_BODY_REJECT(CHUNKED_HEAD "7FFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", PT_ERR_LIMIT);
}

static void test_h1_10_chunk_data_and_ext(void **state)
{
    /* no CRLF after the data */
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", PT_ERR_INVALID);
    /* CR / LF / NUL inside an extension */
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5;a\rb\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5;a\nb\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "5;a\0b\r\nhello\r\n0\r\n\r\n", PT_ERR_INVALID);
    /* one extension over 4 KiB */
    char big[8192];
    int n = snprintf(big, sizeof(big), CHUNKED_HEAD "5;");
    memset(big + n, 'a', 4200);
    n += 4200;
    n += snprintf(big + n, sizeof(big) - (size_t)n, "\r\nhello\r\n0\r\n\r\n");
    expect_error_len(big, (size_t)n, PT_ERR_INVALID, 1);
    /* many small extensions, over 4 KiB in total */
    char *many = malloc(65536);
    n = snprintf(many, 65536, CHUNKED_HEAD);
    for (int i = 0; i < 300; i++)
        n += snprintf(many + n, 65536 - (size_t)n, "1;ext=0123456789\r\nx\r\n");
    n += snprintf(many + n, 65536 - (size_t)n, "0\r\n\r\n");
    expect_error_len(many, (size_t)n, PT_ERR_INVALID, 1);
    free(many);
}

static void test_h1_10_trailers(void **state)
{
    EXPECT_OK(CHUNKED_HEAD "0\r\nX-Checksum: abc\r\nX-B:\r\n\r\n");
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nContent-Length: 5\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\ntransfer-encoding: chunked\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nHost: evil\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nX-A : 1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nX-A: 1\r\n 2\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nX-A: 1\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\nX-A: \x01\r\n\r\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\n\n", PT_ERR_INVALID);
    EXPECT_BODY_REJECT(CHUNKED_HEAD "0\r\n\r\r\n", PT_ERR_INVALID);
}

static void test_h1_11_garden(void **state)
{
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX\x80Y: 1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\n\xffX: 1\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET /a\nb HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\0\r\n\r\n", PT_ERR_INVALID);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nX: \r\r\n\r\n", PT_ERR_INVALID);
}

/* ---- H1-12 pipelining ---------------------------------------------------------------- */

static void test_h1_12_pipeline(void **state)
{
    size_t cap = 1000 * 80;
    char *in = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        if (i % 3 == 0)
            n += (size_t)snprintf(
                in + n, cap - n, "POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", i);
        else
            n += (size_t)snprintf(in + n, cap - n, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
    }
    transcript_t t = expect_ok_len(in, n, 1000);
    /* in order */
    const char *at = t.text;
    for (int i = 0; i < 1000; i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), " /%d auth=", i);
        const char *f = strstr(at, needle);
        assert_non_null(f);
        at = f;
    }
    free(t.text);
    free(in);
}

static void test_h1_12_bad_mid_pipeline(void **state)
{
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                             "GET /2 HTTP/1.1\r\nHost : h\r\n\r\n"
                             "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    transcript_t t = RUN(in);
    assert_int_equal(t.heads, 1);
    assert_int_equal(t.dones, 1);
    assert_int_equal(t.error, PT_ERR_INVALID);
    assert_null(strstr(t.text, "/3"));
    free(t.text);
}

/* ---- H1-13 Expect ------------------------------------------------------------------------ */

static void test_h1_13_expect(void **state)
{
    EXPECT_REJECT(
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
        PT_ERR_LIMIT);
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhi",
                  PT_ERR_EXPECTATION);
    EXPECT_REJECT("GET / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", PT_ERR_EXPECTATION);
    transcript_t t =
        RUN("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "exp=1");
    free(t.text);
    t = RUN("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
    expect_contains(&t, "exp=0");
    free(t.text);
    /* HTTP/1.0 expectations are ignored */
    EXPECT_OK("POST / HTTP/1.0\r\nExpect: whatever\r\nContent-Length: 2\r\n\r\nhi");
}

/* ---- limits -------------------------------------------------------------------------------- */

static void test_limits_request_line(void **state)
{
    char *in = malloc(20000);
    int n = snprintf(in, 20000, "GET /");
    memset(in + n, 'a', 9000);
    n += 9000;
    /* incomplete line: refused before the line ends */
    expect_error_len(in, (size_t)n, PT_ERR_URI_TOO_LONG, 0);
    n += snprintf(in + n, 20000 - (size_t)n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_error_len(in, (size_t)n, PT_ERR_URI_TOO_LONG, 0);
    /* just under the limit */
    n = snprintf(in, 20000, "GET /");
    memset(in + n, 'a', 8192 - 14);
    n += 8192 - 14;
    n += snprintf(in + n, 20000 - (size_t)n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    free(expect_ok_len(in, (size_t)n, 1).text);
    free(in);
}

static void test_limits_headers(void **state)
{
    char *in = malloc(200000);
    int n = snprintf(in, 200000, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 99; i++)
        n += snprintf(in + n, 200000 - (size_t)n, "X-H%d: v\r\n", i);
    int keep = n;
    n += snprintf(in + n, 200000 - (size_t)n, "\r\n");
    free(expect_ok_len(in, (size_t)n, 1).text); /* 100 fields */
    n = keep;
    n += snprintf(in + n, 200000 - (size_t)n, "X-Last: v\r\n\r\n");
    expect_error_len(in, (size_t)n, PT_ERR_HEADERS_TOO_LARGE, 0); /* 101 */

    n = snprintf(in, 200000, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(in + n, 'v', 70000);
    n += 70000;
    n += snprintf(in + n, 200000 - (size_t)n, "\r\n\r\n");
    expect_error_len(in, (size_t)n, PT_ERR_HEADERS_TOO_LARGE, 0);

    /* 64 KiB counted as name + value + 32 per field */
    n = snprintf(in, 200000, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 41; i++) { /* 41 * (4 + 1600 + 32) > 65536 */
        n += snprintf(in + n, 200000 - (size_t)n, "X-%02d: ", i);
        memset(in + n, 'v', 1600);
        n += 1600;
        n += snprintf(in + n, 200000 - (size_t)n, "\r\n");
    }
    n += snprintf(in + n, 200000 - (size_t)n, "\r\n");
    expect_error_len(in, (size_t)n, PT_ERR_HEADERS_TOO_LARGE, 0);
    free(in);
}

static void test_limits_body(void **state)
{
    EXPECT_REJECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n", PT_ERR_LIMIT);
    pt_h1p_limits_t lim = default_limits();
    lim.max_body = 8;
    static const char ok[] = CHUNKED_HEAD "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
    transcript_t t = run_lim(ok, sizeof(ok) - 1, &lim);
    assert_int_equal(t.error, 0);
    free(t.text);
    static const char over[] = CHUNKED_HEAD "4\r\nabcd\r\n5\r\nefghi\r\n0\r\n\r\n";
    t = run_lim(over, sizeof(over) - 1, &lim);
    assert_int_equal(t.error, PT_ERR_LIMIT);
    assert_int_equal(t.heads, 1);
    free(t.text);
}

static void test_set_max_body(void **state)
{
    pt_h1p_limits_t lim = default_limits();
    pt_h1p_t *p = pt_h1p_new(&lim);
    pt_h1p_set_max_body(p, 4);
    char in[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    pt_h1p_event_t ev;
    pt_h1p_feed(p, in, sizeof(in) - 1, &ev);
    assert_int_equal(ev.type, PT_H1P_ERROR);
    assert_int_equal(ev.status, PT_ERR_LIMIT);
    assert_non_null(ev.reason);
    pt_h1p_free(p);
}

/* ---- upgrades -------------------------------------------------------------------------------- */

static void test_h2c_upgrade(void **state)
{
    transcript_t t =
        RUN("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "h2c=1");
    free(t.text);
    /* a body disables the upgrade (the request is served over HTTP/1.1) */
    t = RUN("POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\nhi");
    assert_int_equal(t.error, 0);
    expect_contains(&t, "h2c=0");
    free(t.text);
    /* no HTTP2-Settings token in Connection */
    t = RUN("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: "
            "AAMA\r\n\r\n");
    expect_contains(&t, "h2c=0");
    free(t.text);
}

static void test_other_upgrade_keeps_parsing(void **state)
{
    /* http-parser stops after an upgrade request; we keep reading HTTP/1.1 after it */
    static const char in[] =
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        "POST /u HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: foo\r\n"
        "Content-Length: 3\r\n\r\nabc"
        "GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
    transcript_t t = expect_ok_len(in, sizeof(in) - 1, 3);
    expect_contains(&t, "BODY[abc]\nDONE\nHEAD GET /after");
    free(t.text);
}

static void test_pieces_keep_slices(void **state)
{
    /* a head split across two feeds is collected; slices point into the parser's copy */
    pt_h1p_limits_t lim = default_limits();
    pt_h1p_t *p = pt_h1p_new(&lim);
    char a[] = "GET /split HTTP/1.1\r\nHo";
    char b[] = "st: h\r\nX-Y: Z\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    pt_h1p_event_t ev;
    assert_int_equal(pt_h1p_feed(p, a, strlen(a), &ev), strlen(a));
    assert_int_equal(ev.type, PT_H1P_NONE);
    assert_true(pt_h1p_in_head(p));
    memset(a, '#', strlen(a)); /* the caller may reuse its buffer */
    size_t n = pt_h1p_feed(p, b, strlen(b), &ev);
    assert_int_equal(ev.type, PT_H1P_HEAD);
    assert_int_equal(n, strlen("st: h\r\nX-Y: Z\r\n\r\n"));
    const pt_h1p_head_t *h = pt_h1p_head(p);
    assert_int_equal(h->path.len, 6);
    assert_memory_equal(h->path.base, "/split", 6);
    assert_int_equal(h->header_cnt, 2);
    assert_memory_equal(h->headers[1].name.base, "x-y", 3);
    assert_int_equal(h->head_bytes, strlen("GET /split HTTP/1.1\r\nHost: h\r\nX-Y: Z\r\n\r\n"));
    size_t m = pt_h1p_feed(p, b + n, 0, &ev);
    assert_int_equal(m, 0);
    assert_int_equal(ev.type, PT_H1P_DONE);
    assert_true(pt_h1p_idle(p));
    m = pt_h1p_feed(p, b + n, strlen(b) - n, &ev);
    assert_int_equal(ev.type, PT_H1P_HEAD);
    assert_int_equal(m, strlen(b) - n);
    pt_h1p_free(p);
}

/*
 * Each refusal of a malformed head, with its reason (the log text): the
 * line-at-a-time scanner must name the same fault whichever check of the
 * line meets it first, and the checks that go eight or sixteen bytes at a
 * time (request-target, field values) must find a bad byte at any offset of
 * a long run.
 */
static void test_head_refusal_reasons(void **state)
{
    (void)state;
#define C(lit, st, why) {(lit), sizeof(lit) - 1, (st), (why)}
    static const struct {
        const char *in;
        size_t len;
        int status;
        const char *reason;
    } cases[] = {
        C("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "bare LF before request line"),
        C("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "bare CR before request line"),
        C("GET / HTTP/1.1\nHost: h\r\n\r\n", PT_ERR_INVALID, "request line not terminated by CRLF"),
        C("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "malformed method"),
        C(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "malformed method"),
        C("GET\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "malformed method"),
        C("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "empty request target"),
        C("GET /\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "no HTTP version (HTTP/0.9 is not supported)"),
        C("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "invalid byte in request target"),
        C("GET /0123456789abcdef0123\x7f HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "invalid byte in request target"),
        C("GET /0123456789abcdef012\x80 HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "invalid byte in request target"),
        C("GET /0123456789abcdef0123456789\x01/ HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "invalid byte in request target"),
        C("GET / HTTP/2.0\r\nHost: h\r\n\r\n", PT_ERR_VERSION, "unsupported HTTP version"),
        C("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", PT_ERR_INVALID, "malformed HTTP version"),
        C("GET / http/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "malformed HTTP version"),
        C("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "fragment in request target"),
        C("GET * HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "asterisk-form target outside OPTIONS"),
        C("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "unsupported request-target form"),
        C("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "unsupported scheme in absolute-form target"),
        C("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "absolute-form target without path"),
        C("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", PT_ERR_NOT_IMPLEMENTED,
         "CONNECT is not supported"),
        C("GET / HTTP/1.1\r\nHost: h\n\r\n", PT_ERR_INVALID, "header line not terminated by CRLF"),
        C("GET / HTTP/1.1\r\nHost: h\r\n\n", PT_ERR_INVALID, "header line not terminated by CRLF"),
        C("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", PT_ERR_INVALID, "bare CR in header line"),
        C("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", PT_ERR_INVALID, "bare CR in header line"),
        C("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\rb\r\n\r\n", PT_ERR_INVALID,
         "bare CR in header line"),
        C("GET / HTTP/1.1\r\nHost: h\r\n x: y\r\n\r\n", PT_ERR_INVALID,
         "obs-fold or whitespace before field name"),
        C("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", PT_ERR_INVALID,
         "obs-fold or whitespace before field name"),
        C("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", PT_ERR_INVALID,
         "header line without colon"),
        C("GET / HTTP/1.1\r\nHost : h\r\n\r\n", PT_ERR_INVALID,
         "whitespace between field name and colon"),
        C("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", PT_ERR_INVALID,
         "whitespace between field name and colon"),
        C("GET / HTTP/1.1\r\n: h\r\n\r\n", PT_ERR_INVALID, "invalid byte in field name"),
        C("GET / HTTP/1.1\r\nX(y): h\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "invalid byte in field name"),
        C("GET / HTTP/1.1\r\nX\x80: h\r\nHost: h\r\n\r\n", PT_ERR_INVALID,
         "invalid byte in field name"),
        C("GET / HTTP/1.1\r\nX_Y: h\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "underscore in field name"),
        C("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n", PT_ERR_INVALID,
         "control byte in field value"),
        C("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdef0123456789abcdef01234\x7f"
         "56789\r\n\r\n",
         PT_ERR_INVALID, "control byte in field value"),
        C("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdef0123456789abcdef0123456\x00"
         "89\r\n\r\n",
         PT_ERR_INVALID, "control byte in field value"),
        C("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", PT_ERR_INVALID, "duplicate Host"),
        C("GET / HTTP/1.1\r\n\r\n", PT_ERR_INVALID, "missing Host"),
        C("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", PT_ERR_INVALID,
         "absolute-form authority differs from Host"),
        C("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
         PT_ERR_INVALID, "duplicate Content-Length"),
        C("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\nx", PT_ERR_INVALID,
         "invalid Content-Length"),
        C("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         PT_ERR_INVALID, "Transfer-Encoding repeated"),
        C("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         PT_ERR_INVALID, "both Content-Length and Transfer-Encoding"),
        C("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", PT_ERR_NOT_IMPLEMENTED,
         "unsupported transfer coding"),
        C("GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", PT_ERR_EXPECTATION,
         "unsupported expectation"),
        C("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n", PT_ERR_INVALID,
         "duplicate Upgrade"),
        C("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding-X: chunked\r\n\r\n", PT_ERR_INVALID,
          "field name extends Transfer-Encoding"),
        C("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encodinghttp://ed\r\n\r\n", PT_ERR_INVALID,
          "field name extends Transfer-Encoding"),
        C("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\t\r\n\r\nabc", PT_ERR_INVALID,
          "HTAB after a framing field value"),
        C("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \t \r\n\r\n", PT_ERR_INVALID,
          "HTAB after a framing field value"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        transcript_t t = run(cases[i].in, cases[i].len);
        if (t.error != cases[i].status || t.heads != 0 || t.reason == NULL ||
            strcmp(t.reason, cases[i].reason) != 0) {
            print_error("case %zu: %s\nexpected %d \"%s\", got %d \"%s\":\n%s", i, cases[i].in,
                        cases[i].status, cases[i].reason, t.error,
                        t.reason ? t.reason : "(none)", t.text);
            fail();
        }
        free(t.text);
    }
#undef C
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_chunk_ext_bws),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_leading_crlf_between_requests),
        cmocka_unit_test(test_underscores),
        cmocka_unit_test(test_methods_and_targets),
        cmocka_unit_test(test_h1_1_cl_te),
        cmocka_unit_test(test_h1_2_content_length),
        cmocka_unit_test(test_h1_3_te_obfuscation),
        cmocka_unit_test(test_h1_4_te_lists),
        cmocka_unit_test(test_h1_5_space_before_colon),
        cmocka_unit_test(test_h1_6_obs_fold),
        cmocka_unit_test(test_h1_7_line_endings),
        cmocka_unit_test(test_h1_8_host),
        cmocka_unit_test(test_h1_9_versions),
        cmocka_unit_test(test_h1_10_chunk_sizes),
        cmocka_unit_test(test_h1_10_chunk_data_and_ext),
        cmocka_unit_test(test_h1_10_trailers),
        cmocka_unit_test(test_h1_11_garden),
        cmocka_unit_test(test_h1_12_pipeline),
        cmocka_unit_test(test_h1_12_bad_mid_pipeline),
        cmocka_unit_test(test_h1_13_expect),
        cmocka_unit_test(test_limits_request_line),
        cmocka_unit_test(test_limits_headers),
        cmocka_unit_test(test_limits_body),
        cmocka_unit_test(test_set_max_body),
        cmocka_unit_test(test_h2c_upgrade),
        cmocka_unit_test(test_other_upgrade_keeps_parsing),
        cmocka_unit_test(test_pieces_keep_slices),
        cmocka_unit_test(test_head_refusal_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
