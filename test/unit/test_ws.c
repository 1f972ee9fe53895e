/*
 * test_ws.c -- the WebSocket endpoint (http/ws.h) without sockets: a client-role
 * and a server-role endpoint joined by two byte buffers, and hand-made frames.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/ws.h"

/* ---- a peer: an endpoint with an input buffer and a record of its callbacks ---- */

typedef struct peer {
    pt_ws_t *ws;
    uint8_t in[1 << 16];
    size_t in_len, in_off;
    bool in_eof;
    struct peer *other;          /* where write() goes (NULL: into `raw`) */
    uint8_t raw[1 << 16];
    size_t raw_len;
    /* what happened */
    char msg[8192];
    size_t msg_len;
    int msg_op, msgs, frames, controls, last_control;
    uint8_t control[125];
    size_t control_len;
    int closes;
    uint16_t close_code;
    char reason[128];
    int ends;
    pt_ws_end_t why;
    bool pause_data;
    size_t read_cap; /* p_read returns at most this much (0: all there is) */
    struct peer *relay;          /* relay_cbs: the other leg every frame goes to */
    int raw_runs, raw_frames;
} peer_t;

static size_t p_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    peer_t *p = ud;
    size_t n = p->in_len - p->in_off;
    if (n > max)
        n = max;
    if (p->read_cap != 0 && n > p->read_cap)
        n = p->read_cap;
    memcpy(buf, p->in + p->in_off, n);
    p->in_off += n;
    *eof = n == 0 && p->in_eof;
    return n;
}

static void p_write(void *ud, const uint8_t *data, size_t len)
{
    peer_t *p = ud;
    if (p->other != NULL) {
        assert_true(p->other->in_len + len <= sizeof(p->other->in));
        memcpy(p->other->in + p->other->in_len, data, len);
        p->other->in_len += len;
    } else {
        assert_true(p->raw_len + len <= sizeof(p->raw));
        memcpy(p->raw + p->raw_len, data, len);
        p->raw_len += len;
    }
}

static int p_start(void *ud, pt_ws_opcode_t op)
{
    peer_t *p = ud;
    p->msg_op = (int)op;
    p->msg_len = 0;
    return PT_WS_GO;
}

static int p_frame(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    (void)op;
    (void)len;
    (void)fin;
    ((peer_t *)ud)->frames++;
    return PT_WS_GO;
}

static int p_data(void *ud, const uint8_t *d, size_t n)
{
    peer_t *p = ud;
    assert_true(p->msg_len + n <= sizeof(p->msg));
    memcpy(p->msg + p->msg_len, d, n);
    p->msg_len += n;
    return p->pause_data ? PT_WS_PAUSE : PT_WS_GO;
}

static int p_end_msg(void *ud)
{
    ((peer_t *)ud)->msgs++;
    return PT_WS_GO;
}

static int p_control(void *ud, pt_ws_opcode_t op, const uint8_t *d, size_t n)
{
    peer_t *p = ud;
    p->controls++;
    p->last_control = (int)op;
    memcpy(p->control, d, n);
    p->control_len = n;
    return PT_WS_GO;
}

static void p_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    peer_t *p = ud;
    p->closes++;
    p->close_code = code;
    memcpy(p->reason, reason, len);
    p->reason[len] = '\0';
}

static void p_end(void *ud, pt_ws_end_t why)
{
    peer_t *p = ud;
    p->ends++;
    p->why = why;
}

static const pt_ws_cbs_t cbs = {p_read, p_write, p_start, p_frame, p_data, p_end_msg,
                                p_control, p_close, p_end, NULL};

static peer_t *peer_new(pt_ws_role_t role, uint64_t max_message, bool answer)
{
    peer_t *p = calloc(1, sizeof(*p));
    pt_ws_opts_t o = {.role = role, .max_message = max_message, .answer_control = answer};
    p->ws = pt_ws_new(NULL, &o, &cbs, p);
    return p;
}

static void peer_free(peer_t *p)
{
    pt_ws_free(p->ws);
    free(p);
}

/* a client (masks) talking to a server (expects masks) */
static void pair(peer_t **c, peer_t **s, uint64_t max, bool answer)
{
    *c = peer_new(PT_WS_CLIENT, 0, true);
    *s = peer_new(PT_WS_SERVER, max, answer);
    (*c)->other = *s;
    (*s)->other = *c;
}

/* a raw frame into p's input (mask: client-style) */
static void put_frame(peer_t *p, int b0, const void *payload, size_t len, bool mask)
{
    uint8_t *o = p->in + p->in_len;
    size_t k = 0;
    o[k++] = (uint8_t)b0;
    if (len < 126) {
        o[k++] = (uint8_t)((mask ? 0x80 : 0) | len);
    } else {
        o[k++] = (uint8_t)((mask ? 0x80 : 0) | 126);
        o[k++] = (uint8_t)(len >> 8);
        o[k++] = (uint8_t)len;
    }
    static const uint8_t key[4] = {1, 2, 3, 4};
    if (mask) {
        memcpy(o + k, key, 4);
        k += 4;
    }
    for (size_t i = 0; i < len; i++)
        o[k + i] = ((const uint8_t *)payload)[i] ^ (mask ? key[i % 4] : 0);
    p->in_len += k + len;
}

/* the close code in the first close frame a server-role peer wrote to `raw` */
static int raw_close_code(const peer_t *p)
{
    for (size_t i = 0; i + 1 < p->raw_len;) {
        int op = p->raw[i] & 0xf;
        size_t n = p->raw[i + 1] & 0x7f, h = 2;
        if (n == 126) {
            n = ((size_t)p->raw[i + 2] << 8) | p->raw[i + 3];
            h = 4;
        }
        if (op == 8)
            return n >= 2 ? (p->raw[i + h] << 8) | p->raw[i + h + 1] : 1005;
        i += h + n;
    }
    return -1;
}

/* ---- a relay leg (as handlers/ws_proxy.c): frames to `relay`, verbatim when whole ---- */

static int r_frame(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    peer_t *p = ud;
    p->frames++;
    pt_ws_send_frame_begin(p->relay->ws, op, len, fin);
    return PT_WS_GO;
}

static int r_data(void *ud, const uint8_t *d, size_t n)
{
    pt_ws_send_frame_data(((peer_t *)ud)->relay->ws, d, n);
    return PT_WS_GO;
}

static int r_control(void *ud, pt_ws_opcode_t op, const uint8_t *d, size_t n)
{
    pt_ws_send_control(((peer_t *)ud)->relay->ws, op, d, n);
    return PT_WS_GO;
}

static int r_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    peer_t *p = ud;
    p->raw_runs++;
    p->raw_frames += (int)info->frames;
    assert_int_equal(pt_ws_send_raw(p->relay->ws, frames, len, info), 0);
    return p->pause_data ? PT_WS_PAUSE : PT_WS_GO;
}

static const pt_ws_cbs_t relay_cbs = {p_read, p_write, NULL, r_frame, r_data, NULL,
                                      r_control, p_close, p_end, r_raw};

/* A (server role, facing a client, verbatim relay on) -> B (client role): B's output in B->raw. */
static void relay_pair(peer_t **a, peer_t **b, uint64_t max)
{
    *a = calloc(1, sizeof(**a));
    pt_ws_opts_t o = {.role = PT_WS_SERVER, .max_message = max};
    (*a)->ws = pt_ws_new(NULL, &o, &relay_cbs, *a);
    *b = peer_new(PT_WS_CLIENT, 0, false);
    (*a)->relay = *b;
}

/* What a client-role leg wrote: data frames decoded (unmasked) into `msg`, complete
 * messages counted, every frame's masking key checked against the test's key. */
typedef struct walked {
    int frames, fin_frames, closes;
    size_t len;
    uint8_t payload[8192];
    bool fresh_keys;          /* no frame kept put_frame's key {1,2,3,4} */
} walked_t;

static void walk(const uint8_t *b, size_t n, walked_t *w)
{
    memset(w, 0, sizeof(*w));
    w->fresh_keys = true;
    for (size_t i = 0; i + 2 <= n;) {
        int op = b[i] & 0xf;
        bool fin = (b[i] & 0x80) != 0, masked = (b[i + 1] & 0x80) != 0;
        size_t len = b[i + 1] & 0x7f, h = 2;
        if (len == 126) {
            len = ((size_t)b[i + 2] << 8) | b[i + 3];
            h = 4;
        }
        assert_true(masked);
        const uint8_t *key = b + i + h;
        if (key[0] == 1 && key[1] == 2 && key[2] == 3 && key[3] == 4)
            w->fresh_keys = false;
        h += 4;
        if (i + h + len > n)
            break; /* a frame cut short (the relay stopped in its middle) */
        w->frames++;
        if (op == 8)
            w->closes++;
        if (op < 8) {
            w->fin_frames += fin;
            for (size_t k = 0; k < len; k++)
                w->payload[w->len++] = b[i + h + k] ^ key[k % 4];
        }
        i += h + len;
    }
}

/* ---- tests ---- */

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"plain ascii", true},          {"gr\xc3\xbc\xc3\x9f" "e", true},
        {"\xe2\x98\x83", true},         {"\xf0\x9d\x84\x9e", true},
        {"\xc0\x80", false},            {"\xc1\xbf", false},       /* overlong */
        {"\xe0\x80\x80", false},        {"\xe0\x9f\xbf", false},   /* overlong */
        {"\xed\xa0\x80", false},                                   /* surrogate */
        {"\xf4\x90\x80\x80", false},    {"\xf5\x80\x80\x80", false}, /* > U+10FFFF */
        {"\x80", false},                {"\xc3\x28", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t st = 0;
        bool ok = pt_ws_utf8_check(&st, (const uint8_t *)cases[i].s, strlen(cases[i].s)) && st == 0;
        assert_int_equal(ok, cases[i].ok);
    }
    /* split inside a sequence, byte by byte */
    const uint8_t snow[] = {0xf0, 0x9d, 0x84, 0x9e};
    uint32_t st = 0;
    for (size_t i = 0; i < 4; i++)
        assert_true(pt_ws_utf8_check(&st, snow + i, 1));
    assert_int_equal(st, 0);
    /* truncated: valid so far, not complete */
    st = 0;
    assert_true(pt_ws_utf8_check(&st, snow, 3));
    assert_int_not_equal(st, 0);
}

static void test_messages_and_fragments(void **state)
{
    (void)state;
    peer_t *c, *s;
    pair(&c, &s, 0, true);
    assert_int_equal(pt_ws_send_msg(c->ws, PT_WS_OP_TEXT, "hello", 5), 0);
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->msgs, 1);
    assert_int_equal(s->msg_op, PT_WS_OP_TEXT);
    assert_memory_equal(s->msg, "hello", 5);
    /* streamed: two frames, the first in two pieces, a ping held in between */
    assert_int_equal(pt_ws_send_frame_begin(c->ws, PT_WS_OP_BINARY, 6, false), 0);
    assert_int_equal(pt_ws_send_frame_data(c->ws, "abc", 3), 0);
    assert_true(pt_ws_sending_frame(c->ws));
    assert_int_equal(pt_ws_send_control(c->ws, PT_WS_OP_PING, "p", 1), 0);
    assert_int_equal(pt_ws_send_msg(c->ws, PT_WS_OP_TEXT, "x", 1), PT_ERR_INVALID);
    assert_int_equal(pt_ws_send_frame_data(c->ws, "def", 3), 0);
    assert_int_equal(pt_ws_send_frame_begin(c->ws, PT_WS_OP_TEXT, 1, true), PT_ERR_INVALID);
    assert_int_equal(pt_ws_send_frame_begin(c->ws, PT_WS_OP_CONT, 2, true), 0);
    assert_int_equal(pt_ws_send_frame_data(c->ws, "gh", 2), 0);
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->msgs, 2);
    assert_int_equal(s->msg_op, PT_WS_OP_BINARY);
    assert_int_equal(s->msg_len, 8);
    assert_memory_equal(s->msg, "abcdefgh", 8);
    assert_int_equal(s->controls, 1);
    assert_int_equal(s->last_control, PT_WS_OP_PING);
    /* the server answered the ping (answer_control) */
    pt_ws_on_readable(c->ws);
    assert_int_equal(c->last_control, PT_WS_OP_PONG);
    assert_int_equal(c->control_len, 1);
    const pt_ws_stats_t *st = pt_ws_stats(s->ws);
    assert_int_equal(st->msgs_in, 2);
    assert_int_equal(st->bytes_in, 13);
    assert_int_equal(st->pings_in, 1);
    peer_free(c);
    peer_free(s);
}

/* Masking (sender, client role) and unmasking (receiver, in place) of every payload
 * length up to 300, sent in pieces that start at every key offset and read in small
 * reads that split payloads at odd places: the bytes arrive unchanged. */
static void test_masking_every_length_and_split(void **state)
{
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(data); len++) {
        peer_t *c, *s;
        pair(&c, &s, 0, true);
        s->read_cap = 1 + len % 23;
        assert_int_equal(pt_ws_send_frame_begin(c->ws, PT_WS_OP_BINARY, len, true), 0);
        size_t off = 0, piece = 1;
        while (off < len) {
            size_t n = len - off < piece ? len - off : piece;
            assert_int_equal(pt_ws_send_frame_data(c->ws, data + off, n), 0);
            off += n;
            piece = piece * 3 + 2; /* 1, 5, 17, 53, ...: every offset mod 4 */
        }
        for (int i = 0; i < 1000 && s->msgs == 0; i++)
            pt_ws_on_readable(s->ws);
        assert_int_equal(s->msgs, 1);
        assert_int_equal(s->msg_len, len);
        if (len != 0)
            assert_memory_equal(s->msg, data, len);
        peer_free(c);
        peer_free(s);
    }
}

static void test_close_handshake(void **state)
{
    (void)state;
    peer_t *c, *s;
    pair(&c, &s, 0, true);
    assert_int_equal(pt_ws_close(c->ws, 4001, "bye", 3), 0);
    assert_int_equal(pt_ws_close(c->ws, 1000, NULL, 0), 0); /* idempotent */
    assert_int_equal(pt_ws_send_msg(c->ws, PT_WS_OP_TEXT, "late", 4), PT_ERR_INVALID);
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->closes, 1);
    assert_int_equal(s->close_code, 4001);
    assert_string_equal(s->reason, "bye");
    assert_int_equal(s->ends, 1);
    assert_int_equal(s->why, PT_WS_END_CLOSED);
    pt_ws_on_readable(c->ws);
    assert_int_equal(c->ends, 1);
    assert_int_equal(c->why, PT_WS_END_CLOSED);
    assert_int_equal(c->close_code, 4001); /* echoed */
    assert_int_equal(pt_ws_stats(s->ws)->close_in, 4001);
    assert_int_equal(pt_ws_stats(s->ws)->close_out, 4001);
    assert_int_equal(pt_ws_close(s->ws, 1005, NULL, 0), PT_ERR_INVALID);
    peer_free(c);
    peer_free(s);
}

/* one violation: the server-role peer must close with `code` and end with `why` */
static void violation(const uint8_t *frames, size_t len, uint64_t max, int code, pt_ws_end_t why)
{
    peer_t *s = peer_new(PT_WS_SERVER, max, false);
    memcpy(s->in, frames, len);
    s->in_len = len;
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->ends, 1);
    assert_int_equal(s->why, why);
    assert_int_equal(raw_close_code(s), code);
    assert_int_equal(pt_ws_stats(s->ws)->close_out, code);
    peer_free(s);
}

static void test_violations(void **state)
{
    (void)state;
    peer_t *b = peer_new(PT_WS_SERVER, 0, false); /* a scratch buffer for frames */
#define V(setup, max, code, why)                                                                  \
    do {                                                                                          \
        b->in_len = 0;                                                                            \
        setup;                                                                                    \
        violation(b->in, b->in_len, max, code, why);                                              \
    } while (0)
    V(put_frame(b, 0x81, "x", 1, false), 0, 1002, PT_WS_END_PROTOCOL);        /* unmasked */
    V(put_frame(b, 0xc1, "x", 1, true), 0, 1002, PT_WS_END_PROTOCOL);         /* RSV1 */
    V(put_frame(b, 0x83, "x", 1, true), 0, 1002, PT_WS_END_PROTOCOL);         /* opcode 3 */
    V(put_frame(b, 0x8b, "x", 1, true), 0, 1002, PT_WS_END_PROTOCOL);         /* opcode 0xb */
    V(put_frame(b, 0x09, "x", 1, true), 0, 1002, PT_WS_END_PROTOCOL);         /* fragmented ping */
    V(put_frame(b, 0x80, "x", 1, true), 0, 1002, PT_WS_END_PROTOCOL);         /* lone CONT */
    V((put_frame(b, 0x01, "a", 1, true), put_frame(b, 0x81, "b", 1, true)), 0, 1002,
      PT_WS_END_PROTOCOL);                                                     /* TEXT in TEXT */
    V(put_frame(b, 0x81, "\xc3\x28", 2, true), 0, 1007, PT_WS_END_PROTOCOL);  /* bad UTF-8 */
    V(put_frame(b, 0x81, "\xe2\x98", 2, true), 0, 1007, PT_WS_END_PROTOCOL);  /* cut UTF-8 */
    V(put_frame(b, 0x88, "\x03", 1, true), 0, 1002, PT_WS_END_PROTOCOL);      /* 1-byte close */
    V(put_frame(b, 0x88, "\x03\xed", 2, true), 0, 1002, PT_WS_END_PROTOCOL);  /* code 1005 */
    V(put_frame(b, 0x88, "\x03\xe8\xff", 3, true), 0, 1007, PT_WS_END_PROTOCOL); /* reason */
    V(put_frame(b, 0x82, "0123456789a", 11, true), 10, 1009, PT_WS_END_TOO_BIG);
    V((put_frame(b, 0x02, "012345", 6, true), put_frame(b, 0x80, "6789a", 5, true)), 10, 1009,
      PT_WS_END_TOO_BIG);
    {
        /* a ping of 126 bytes (the parser refuses the length) */
        uint8_t big[126];
        memset(big, 'p', sizeof(big));
        V(put_frame(b, 0x89, big, sizeof(big), true), 0, 1002, PT_WS_END_PROTOCOL);
    }
#undef V
    peer_free(b);
}

static void test_too_big_delivers_nothing(void **state)
{
    (void)state;
    peer_t *s = peer_new(PT_WS_SERVER, 10, false);
    put_frame(s, 0x82, "0123456789abcdef", 16, true);
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->msg_len, 0);
    assert_int_equal(s->why, PT_WS_END_TOO_BIG);
    peer_free(s);
}

static void test_pause_and_resume(void **state)
{
    (void)state;
    peer_t *c, *s;
    pair(&c, &s, 0, false);
    s->pause_data = true;
    char big[6000];
    memset(big, 'z', sizeof(big));
    pt_ws_send_msg(c->ws, PT_WS_OP_BINARY, big, sizeof(big));
    pt_ws_send_msg(c->ws, PT_WS_OP_TEXT, "next", 4);
    pt_ws_on_readable(s->ws);
    assert_true(s->msg_len > 0 && s->msg_len < sizeof(big)); /* stopped after one chunk */
    assert_int_equal(s->msgs, 0);
    s->pause_data = false;
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->msgs, 2);
    assert_int_equal(s->msg_len, 4);
    peer_free(c);
    peer_free(s);
}

static void test_eof_without_close(void **state)
{
    (void)state;
    peer_t *s = peer_new(PT_WS_SERVER, 0, false);
    put_frame(s, 0x82, "abc", 3, true);
    s->in_len -= 1; /* half a frame, then the end */
    s->in_eof = true;
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->ends, 1);
    assert_int_equal(s->why, PT_WS_END_EOF);
    assert_int_equal(pt_ws_stats(s->ws)->close_out, 0);
    peer_free(s);
}

static void end_and_free(void *ud, pt_ws_end_t why)
{
    peer_t *p = ud;
    p->ends++;
    p->why = why;
    pt_ws_free(p->ws); /* deferred until pt_ws_on_readable returns */
    p->ws = NULL;
}

static void test_free_from_callback(void **state)
{
    (void)state;
    static pt_ws_cbs_t freeing;
    freeing = cbs;
    freeing.on_end = end_and_free;
    peer_t *p = calloc(1, sizeof(*p));
    pt_ws_opts_t o = {.role = PT_WS_SERVER};
    p->ws = pt_ws_new(NULL, &o, &freeing, p);
    put_frame(p, 0x81, "x", 1, false); /* unmasked: the endpoint fails and ends */
    put_frame(p, 0x81, "y", 1, true);
    pt_ws_t *ws = p->ws;
    pt_ws_on_readable(ws); /* ASan: nothing touched after the deferred free */
    assert_int_equal(p->ends, 1);
    assert_null(p->ws);
    assert_int_equal(raw_close_code(p), 1002);
    free(p);
}

/* Whole frames in one read go to the other leg verbatim, in one run, re-masked. */
static void test_raw_relay(void **state)
{
    (void)state;
    peer_t *a, *b;
    relay_pair(&a, &b, 0);
    put_frame(a, 0x82, "bin", 3, true);
    put_frame(a, 0x01, "gr\xc3", 3, true);          /* text, fragmented inside a sequence */
    put_frame(a, 0x80, "\xbc\xc3\x9f" "e", 4, true); /* ... completed here */
    uint8_t big[300];
    memset(big, 'q', sizeof(big));
    put_frame(a, 0x82, big, sizeof(big), true);
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->raw_runs, 1);
    assert_int_equal(a->raw_frames, 4);
    assert_int_equal(a->frames, 0); /* nothing went the streamed way */
    walked_t w;
    walk(b->raw, b->raw_len, &w);
    assert_int_equal(w.frames, 4);
    assert_int_equal(w.fin_frames, 3);
    assert_true(w.fresh_keys);
    assert_int_equal(w.len, 3 + 7 + sizeof(big));
    assert_memory_equal(w.payload, "bingr\xc3\xbc\xc3\x9f" "e", 10);
    const pt_ws_stats_t *sa = pt_ws_stats(a->ws), *sb = pt_ws_stats(b->ws);
    assert_int_equal(sa->msgs_in, 3);
    assert_int_equal(sa->frames_in, 4);
    assert_int_equal(sa->bytes_in, 310);
    assert_int_equal(sb->msgs_out, 3);
    assert_int_equal(sb->frames_out, 4);
    assert_int_equal(sb->bytes_out, 310);
    /* a ping between whole frames: the runs around it stay verbatim, the ping is relayed */
    b->raw_len = 0;
    put_frame(a, 0x81, "x", 1, true);
    put_frame(a, 0x89, "p", 1, true);
    put_frame(a, 0x81, "y", 1, true);
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->raw_runs, 3);
    walk(b->raw, b->raw_len, &w);
    assert_int_equal(w.frames, 3);
    assert_int_equal(w.fin_frames, 2);
    assert_int_equal(w.len, 2); /* data payloads; the ping's is not counted */
    assert_memory_equal(w.payload, "xy", 2);
    /* the relayed bytes are valid for a server: one reads them back */
    peer_t *s = peer_new(PT_WS_SERVER, 0, false);
    memcpy(s->in, b->raw, b->raw_len);
    s->in_len = b->raw_len;
    pt_ws_on_readable(s->ws);
    assert_int_equal(s->msgs, 2);
    assert_int_equal(s->controls, 1);
    assert_int_equal(s->ends, 0);
    peer_free(s);
    peer_free(a);
    peer_free(b);
}

/* A masked text message whose second half, read later, breaks UTF-8: 1007, and the
 * upstream leg never receives it complete (neither by the verbatim nor the streamed way). */
static void test_raw_utf8_split_across_reads(void **state)
{
    (void)state;
    static const char *const bad[] = {"ok \xc3\x28 no", "ok \xe2\x98"};
    for (int fragmented = 0; fragmented < 2; fragmented++) {
        for (size_t k = 0; k < 2; k++) {
            peer_t *a, *b;
            relay_pair(&a, &b, 0);
            if (fragmented) {
                /* frame 1 whole in the first read (verbatim), frame 2 split */
                put_frame(a, 0x01, "hello ", 6, true);
                put_frame(a, 0x80, bad[k], strlen(bad[k]), true);
                a->read_cap = 6 + 6 + 6 + 4; /* the first frame, the second's header + 4 bytes */
            } else {
                put_frame(a, 0x81, bad[k], strlen(bad[k]), true);
                a->read_cap = 6 + 4;
            }
            for (int i = 0; i < 10 && a->ends == 0; i++)
                pt_ws_on_readable(a->ws);
            assert_int_equal(a->ends, 1);
            assert_int_equal(a->why, PT_WS_END_PROTOCOL);
            assert_int_equal(raw_close_code(a), 1007);
            walked_t w;
            walk(b->raw, b->raw_len, &w);
            assert_int_equal(w.fin_frames, 0);
            assert_int_equal(pt_ws_stats(b->ws)->msgs_out, 0);
            peer_free(a);
            peer_free(b);
        }
    }
    /* the same in one read: the verbatim path refuses the frame, the upstream gets nothing of it */
    for (size_t k = 0; k < 2; k++) {
        peer_t *a, *b;
        relay_pair(&a, &b, 0);
        put_frame(a, 0x01, "hello ", 6, true);
        put_frame(a, 0x80, bad[k], strlen(bad[k]), true);
        pt_ws_on_readable(a->ws);
        assert_int_equal(raw_close_code(a), 1007);
        walked_t w;
        walk(b->raw, b->raw_len, &w);
        assert_int_equal(w.fin_frames, 0);
        assert_int_equal(w.len, 6); /* the first frame only */
        peer_free(a);
        peer_free(b);
    }
}

/* Over max_message: 1009 before any byte of the offending frame is relayed. */
static void test_raw_too_big_relays_nothing(void **state)
{
    (void)state;
    peer_t *a, *b;
    relay_pair(&a, &b, 10);
    put_frame(a, 0x82, "0123456789abcdef", 16, true);
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->why, PT_WS_END_TOO_BIG);
    assert_int_equal(raw_close_code(a), 1009);
    assert_int_equal(b->raw_len, 0);
    peer_free(a);
    peer_free(b);
    /* counted across frames: the first (verbatim) fits, the second does not */
    relay_pair(&a, &b, 10);
    put_frame(a, 0x02, "012345", 6, true);
    put_frame(a, 0x80, "6789a", 5, true);
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->why, PT_WS_END_TOO_BIG);
    walked_t w;
    walk(b->raw, b->raw_len, &w);
    assert_int_equal(w.frames, 1);
    assert_int_equal(w.fin_frames, 0);
    assert_int_equal(w.len, 6);
    peer_free(a);
    peer_free(b);
}

/* The upstream leg (client role) takes whole frames in place (pt_ws_feed); the rest
 * goes through the window; anything a check refuses is left to the general path. */
static void test_feed_in_place(void **state)
{
    (void)state;
    peer_t *a = calloc(1, sizeof(*a));
    pt_ws_opts_t o = {.role = PT_WS_CLIENT, .max_message = 100};
    a->ws = pt_ws_new(NULL, &o, &relay_cbs, a);
    peer_t *b = peer_new(PT_WS_SERVER, 0, false);
    a->relay = b;
    peer_t *src = peer_new(PT_WS_SERVER, 0, false); /* a scratch buffer for frames */
    put_frame(src, 0x01, "ab", 2, false);
    put_frame(src, 0x80, "cd", 2, false);
    size_t two = src->in_len;
    put_frame(src, 0x82, "0123456789", 10, false);
    /* whole frames taken, the third cut short: left to the caller */
    assert_int_equal(pt_ws_feed(a->ws, src->in, two + 5), two);
    assert_int_equal(a->raw_runs, 1);
    assert_int_equal(a->raw_frames, 2);
    assert_int_equal(b->raw_len, two); /* unmasked frames pass unchanged */
    assert_memory_equal(b->raw, src->in, two);
    memcpy(a->in, src->in + two, 5);
    a->in_len = 5;
    pt_ws_on_readable(a->ws); /* half a frame inside: the next feed must wait */
    assert_int_equal(pt_ws_feed(a->ws, src->in + two + 5, src->in_len - two - 5), 0);
    memcpy(a->in + a->in_len, src->in + two + 5, src->in_len - two - 5);
    a->in_len = src->in_len - two;
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->frames, 1); /* the split frame went the streamed way */
    assert_int_equal(pt_ws_stats(a->ws)->msgs_in, 2);
    assert_int_equal(pt_ws_stats(b->ws)->msgs_out, 2);
    /* refused by a check: nothing taken, the general path closes with the code */
    src->in_len = 0;
    put_frame(src, 0x81, "\xc3\x28", 2, false);
    assert_int_equal(pt_ws_feed(a->ws, src->in, src->in_len), 0);
    src->in_len = 0;
    put_frame(src, 0x82, "x", 1, true); /* masked from a server */
    assert_int_equal(pt_ws_feed(a->ws, src->in, src->in_len), 0);
    src->in_len = 0;
    uint8_t big[101] = {0};
    put_frame(src, 0x82, big, sizeof(big), false); /* over max_message */
    assert_int_equal(pt_ws_feed(a->ws, src->in, src->in_len), 0);
    memcpy(a->in + a->in_len, src->in, src->in_len);
    a->in_len += src->in_len;
    size_t before = b->raw_len;
    pt_ws_on_readable(a->ws);
    assert_int_equal(a->why, PT_WS_END_TOO_BIG);
    assert_int_equal(pt_ws_stats(a->ws)->close_out, 1009);
    assert_int_equal(b->raw_len, before);
    /* the server role never feeds in place (its frames are re-masked in the window) */
    peer_t *s2 = peer_new(PT_WS_SERVER, 0, false);
    assert_int_equal(pt_ws_feed(s2->ws, src->in, src->in_len), 0);
    peer_free(s2);
    peer_free(src);
    peer_free(a);
    peer_free(b);
}

/* pt_ws_relay (the pump's verbatim relay): whole checked frames taken in place,
 * re-masked with fresh keys in the server role, counted on both legs; nothing taken
 * while a leg's state needs the general path; refused frames left to it. */
static void test_relay_in_place(void **state)
{
    (void)state;
    peer_t *a, *b;
    relay_pair(&a, &b, 100);                        /* a: server role (facing a client) */
    peer_t *src = peer_new(PT_WS_SERVER, 0, false); /* a scratch buffer for frames */
    put_frame(src, 0x01, "gr\xc3", 3, true);
    put_frame(src, 0x80, "\xbc" "e", 2, true);
    size_t two = src->in_len;
    put_frame(src, 0x82, "0123456789", 10, true);
    /* the first two whole, the third cut short: two taken */
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, two + 5), two);
    walked_t w;
    walk(src->in, two, &w);                         /* what the owner writes to b's peer */
    assert_int_equal(w.frames, 2);
    assert_true(w.fresh_keys);
    assert_memory_equal(w.payload, "gr\xc3\xbc" "e", 5);
    assert_int_equal(a->raw_runs, 0);               /* no callback */
    assert_int_equal(pt_ws_stats(a->ws)->msgs_in, 1);
    assert_int_equal(pt_ws_stats(a->ws)->frames_in, 2);
    assert_int_equal(pt_ws_stats(b->ws)->msgs_out, 1);
    assert_int_equal(pt_ws_stats(b->ws)->bytes_out, 5);
    assert_int_equal(b->raw_len, 0);                /* nothing through b's write */
    /* the rest through the window: half a frame inside, so nothing is taken meanwhile */
    memcpy(a->in, src->in + two, 5);
    a->in_len = 5;
    pt_ws_on_readable(a->ws);
    uint8_t copy[64];
    memcpy(copy, src->in + two + 5, src->in_len - two - 5);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, copy, src->in_len - two - 5), 0);
    memcpy(a->in + 5, src->in + two + 5, src->in_len - two - 5);
    a->in_len = src->in_len - two;
    pt_ws_on_readable(a->ws);
    assert_int_equal(pt_ws_stats(b->ws)->msgs_out, 2);
    /* refused by a check (bad UTF-8, unmasked from a client, over max_message): nothing taken */
    src->in_len = 0;
    put_frame(src, 0x81, "\xc3\x28", 2, true);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, src->in_len), 0);
    src->in_len = 0;
    put_frame(src, 0x82, "x", 1, false);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, src->in_len), 0);
    src->in_len = 0;
    uint8_t big[101] = {0};
    put_frame(src, 0x82, big, sizeof(big), true);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, src->in_len), 0);
    /* control frames are the general path's */
    src->in_len = 0;
    put_frame(src, 0x89, "p", 1, true);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, src->in_len), 0);
    /* the other leg sent its close: nothing more relayed to it */
    src->in_len = 0;
    put_frame(src, 0x82, "z", 1, true);
    assert_int_equal(pt_ws_close(b->ws, 1000, NULL, 0), 0);
    assert_int_equal(pt_ws_relay(a->ws, b->ws, src->in, src->in_len), 0);
    /* two legs of the same role never pair */
    peer_t *s2 = peer_new(PT_WS_SERVER, 0, false);
    assert_int_equal(pt_ws_relay(a->ws, s2->ws, src->in, src->in_len), 0);
    peer_free(s2);
    peer_free(src);
    peer_free(a);
    peer_free(b);
}

/* pt_ws_send_raw refuses what does not follow on the leg's state. */
static void test_send_raw_checks(void **state)
{
    (void)state;
    peer_t *c = peer_new(PT_WS_CLIENT, 0, false), *s = peer_new(PT_WS_SERVER, 0, false);
    static const uint8_t masked[] = {0x82, 0x81, 1, 2, 3, 4, 'x' ^ 1};
    static const uint8_t plain[] = {0x82, 0x01, 'x'};
    pt_ws_raw_t mi = {.frames = 1, .msgs = 1, .bytes = 1, .masked = true};
    pt_ws_raw_t pi = {.frames = 1, .msgs = 1, .bytes = 1, .masked = false};
    assert_int_equal(pt_ws_send_raw(c->ws, plain, sizeof(plain), &pi), PT_ERR_INVALID);
    assert_int_equal(pt_ws_send_raw(s->ws, masked, sizeof(masked), &mi), PT_ERR_INVALID);
    pt_ws_raw_t cont = pi;
    cont.starts_cont = true;
    assert_int_equal(pt_ws_send_raw(s->ws, plain, sizeof(plain), &cont), PT_ERR_INVALID);
    assert_int_equal(pt_ws_send_frame_begin(s->ws, PT_WS_OP_BINARY, 2, true), 0);
    assert_int_equal(pt_ws_send_raw(s->ws, plain, sizeof(plain), &pi), PT_ERR_INVALID); /* half sent */
    assert_int_equal(pt_ws_send_frame_data(s->ws, "ab", 2), 0);
    assert_int_equal(pt_ws_send_raw(s->ws, plain, sizeof(plain), &pi), 0);
    assert_int_equal(pt_ws_send_raw(c->ws, masked, sizeof(masked), &mi), 0);
    assert_int_equal(pt_ws_stats(s->ws)->msgs_out, 2);
    assert_int_equal(pt_ws_close(s->ws, 1000, NULL, 0), 0);
    assert_int_equal(pt_ws_send_raw(s->ws, plain, sizeof(plain), &pi), PT_ERR_INVALID);
    peer_free(c);
    peer_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_messages_and_fragments),
        cmocka_unit_test(test_masking_every_length_and_split),
        cmocka_unit_test(test_close_handshake),
        cmocka_unit_test(test_violations),
        cmocka_unit_test(test_too_big_delivers_nothing),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_eof_without_close),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_raw_relay),
        cmocka_unit_test(test_raw_utf8_split_across_reads),
        cmocka_unit_test(test_raw_too_big_relays_nothing),
        cmocka_unit_test(test_send_raw_checks),
        cmocka_unit_test(test_feed_in_place),
        cmocka_unit_test(test_relay_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
