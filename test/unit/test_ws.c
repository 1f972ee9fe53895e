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
                                p_control, p_close, p_end};

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
