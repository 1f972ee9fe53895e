/*
 * fuzz_h2rules_diff.c -- the HTTP/2 request messaging rules Portico enforces
 * itself (gateway/http/h2rules.c; h2.c runs its server sessions with
 * nghttp2's HTTP messaging off, issue 7) against nghttp2's own messaging on
 * the same request.
 *
 * The input is one request: a control byte, then fields as
 * [name length][name][value length][value]. The request is HPACK-encoded and
 * framed (HEADERS, optional DATA, optional trailer HEADERS; END_STREAM where
 * the control byte says) and fed to two nghttp2 server sessions:
 *  A. HTTP messaging on (the reference): malformed when nghttp2 resets the
 *     stream (its messaging errors; content-length against DATA resets
 *     without any callback) or reports an invalid field (h2.c used to reset
 *     on those);
 *  B. HTTP messaging off, the rules applied as h2.c applies them (each field,
 *     the head, DATA lengths, END_STREAM): malformed when a rule says so.
 * Both must agree. Framing-level errors are nghttp2's in both and not
 * compared.
 */
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2rules.h"

#define MAX_FIELDS 32
#define BLOCK_MAX 8192

typedef struct {
    bool malformed;  /* a messaging rule was broken */
    bool trailer;    /* B: the block being decoded is the trailers */
    pt_h2_rules_t r; /* B */
} side_t;

static int a_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
    (void)s;
    side_t *a = ud;
    if (f->hd.stream_id == 1 && (err == NGHTTP2_ERR_HTTP_HEADER || err == NGHTTP2_ERR_HTTP_MESSAGING))
        a->malformed = true;
    return 0;
}

static int a_invalid_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                            const uint8_t *v, size_t vl, uint8_t fl, void *ud)
{
    (void)s;
    (void)f;
    (void)n;
    (void)nl;
    (void)v;
    (void)vl;
    (void)fl;
    ((side_t *)ud)->malformed = true; /* h2.c reset the stream on these */
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int a_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id == 1)
        ((side_t *)ud)->malformed = true;
    return 0;
}

static int b_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    side_t *b = ud;
    if (f->hd.type == NGHTTP2_HEADERS)
        b->trailer = f->headers.cat != NGHTTP2_HCAT_REQUEST;
    return 0;
}

static int b_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                    const uint8_t *v, size_t vl, uint8_t fl, void *ud)
{
    (void)s;
    (void)fl;
    side_t *b = ud;
    if (f->hd.type == NGHTTP2_HEADERS && !b->malformed &&
        !pt_h2_rules_field(&b->r, n, nl, v, vl, b->trailer))
        b->malformed = true;
    return 0;
}

static int b_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    side_t *b = ud;
    if (f->hd.stream_id != 1 || b->malformed)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if ((!b->trailer ? !pt_h2_rules_head(&b->r) : !end) || (end && !pt_h2_rules_end(&b->r)))
            b->malformed = true;
    } else if (f->hd.type == NGHTTP2_DATA && end && !pt_h2_rules_end(&b->r)) {
        b->malformed = true;
    }
    return 0;
}

static int b_data(nghttp2_session *s, uint8_t fl, int32_t id, const uint8_t *d, size_t len, void *ud)
{
    (void)s;
    (void)fl;
    (void)d;
    side_t *b = ud;
    if (id == 1 && !b->malformed && !pt_h2_rules_data(&b->r, len))
        b->malformed = true;
    return 0;
}

static size_t frame(uint8_t *out, uint8_t type, uint8_t flags, const uint8_t *p, size_t n)
{
    out[0] = (uint8_t)(n >> 16);
    out[1] = (uint8_t)(n >> 8);
    out[2] = (uint8_t)n;
    out[3] = type;
    out[4] = flags;
    out[5] = out[6] = out[7] = 0;
    out[8] = 1; /* stream 1 */
    if (n != 0)
        memcpy(out + 9, p, n);
    return 9 + n;
}

/* Runs one side; returns false when the session failed at the framing level. */
static bool run(bool messaging, const uint8_t *wire, size_t len, side_t *side)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        abort();
    if (messaging) {
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, a_invalid_frame);
        nghttp2_session_callbacks_set_on_invalid_header_callback(cb, a_invalid_header);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, a_frame_send);
    } else {
        nghttp2_option_set_no_http_messaging(opt, 1);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, b_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, b_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, b_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, b_data);
    }
    if (nghttp2_session_server_new2(&s, cb, side, opt) != 0)
        abort();
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}};
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1) != 0)
        abort();
    ssize_t rv = nghttp2_session_mem_recv(s, wire, len);
    bool ok = rv == (ssize_t)len;
    const uint8_t *out;
    while (ok && messaging && nghttp2_session_mem_send(s, &out) > 0)
        ; /* the resets it queued go out: a_frame_send sees them */
    nghttp2_session_del(s);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctrl = data[0];
    nghttp2_nv nv[MAX_FIELDS];
    size_t n = 0, at = 1;
    while (at < size && n < MAX_FIELDS) {
        size_t nl = data[at++] & 63u;
        if (at + nl > size)
            break;
        const uint8_t *name = data + at;
        at += nl;
        size_t vl = at < size ? data[at++] : 0;
        if (at + vl > size)
            vl = size - at;
        nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)(data + at), nl, vl, NGHTTP2_NV_FLAG_NONE};
        at += vl;
    }
    size_t ntrail = (ctrl >> 4) & 3u; /* the last fields go into a trailer block */
    if (ntrail > n)
        ntrail = n;
    size_t nhead = n - ntrail;
    bool head_end = ctrl & 1u, send_data = ctrl & 2u, data_end = ctrl & 4u, trail_end = ctrl & 8u;
    size_t data_len = (size_t)(ctrl >> 6) * 3u; /* 0, 3, 6, 9 bytes */

    static uint8_t wire[3 * (9 + BLOCK_MAX) + 64];
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t w = 0;
    memcpy(wire, preface, 24);
    w += 24;
    memcpy(wire + w, "\0\0\0\x04\0\0\0\0\0", 9); /* empty SETTINGS */
    w += 9;
    nghttp2_hd_deflater *d;
    if (nghttp2_hd_deflate_new(&d, 4096) != 0)
        abort();
    uint8_t block[BLOCK_MAX];
    ssize_t bl = nghttp2_hd_deflate_hd(d, block, sizeof(block), nv, nhead);
    if (bl < 0) {
        nghttp2_hd_deflate_del(d);
        return 0;
    }
    w += frame(wire + w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | (head_end ? NGHTTP2_FLAG_END_STREAM : 0),
               block, (size_t)bl);
    if (!head_end && send_data) {
        static const uint8_t body[9] = "012345678";
        w += frame(wire + w, NGHTTP2_DATA, data_end ? NGHTTP2_FLAG_END_STREAM : 0, body, data_len);
    }
    if (!head_end && !(send_data && data_end) && ntrail != 0) {
        bl = nghttp2_hd_deflate_hd(d, block, sizeof(block), nv + nhead, ntrail);
        if (bl < 0) {
            nghttp2_hd_deflate_del(d);
            return 0;
        }
        w += frame(wire + w, NGHTTP2_HEADERS,
                   NGHTTP2_FLAG_END_HEADERS | (trail_end ? NGHTTP2_FLAG_END_STREAM : 0), block, (size_t)bl);
    }
    nghttp2_hd_deflate_del(d);

    side_t a = {0}, b = {0};
    pt_h2_rules_init(&b.r);
    bool a_ok = run(true, wire, w, &a);
    bool b_ok = run(false, wire, w, &b);
    if (a_ok && b_ok && a.malformed != b.malformed) {
        fprintf(stderr, "h2rules disagree with nghttp2: nghttp2 %s, h2rules %s\n",
                a.malformed ? "malformed" : "fine", b.malformed ? "malformed" : "fine");
        abort();
    }
    return 0;
}
