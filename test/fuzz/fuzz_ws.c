/*
 * fuzz_ws.c -- the WebSocket endpoint (gateway/http/ws.c) as a relay, the way
 * handlers/ws_proxy.c joins two legs.
 *
 * Input: byte 0 picks the receiving role, the max_message limit and whether
 * control frames are answered; byte 1 the chunk size the input is read in
 * (short reads split headers and UTF-8 sequences anywhere); the rest is the
 * byte stream from the peer. Endpoint A parses it and relays every frame,
 * control frame and close to endpoint B (the other leg, the opposite role);
 * B's output is then parsed by C, a fresh endpoint of A's role facing B.
 *
 * Invariant: what A accepted and B wrote is valid WebSocket, so C never ends
 * with a protocol error or an oversize message (at most with EOF, when A
 * failed in the middle of a relayed frame). A crash, a leak or a broken
 * invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/ws.h"

typedef struct leg {
    pt_ws_t *ws;
    const uint8_t *in;
    size_t in_len, in_off, chunk;
    struct leg *to;               /* relay target (A -> B) */
    uint8_t *out;                 /* what this leg wrote */
    size_t out_len, out_cap;
    pt_ws_end_t why;
    int ends;
} leg_t;

static size_t l_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    leg_t *l = ud;
    size_t n = l->in_len - l->in_off;
    if (n > l->chunk)
        n = l->chunk;
    if (n > max)
        n = max;
    if (n != 0)
        memcpy(buf, l->in + l->in_off, n);
    l->in_off += n;
    *eof = n == 0;
    return n;
}

static void l_write(void *ud, const uint8_t *data, size_t len)
{
    leg_t *l = ud;
    if (len == 0)
        return;
    if (l->out_len + len > l->out_cap) {
        size_t cap = (l->out_len + len) * 2;
        uint8_t *o = realloc(l->out, cap);
        if (o == NULL)
            abort();
        l->out = o;
        l->out_cap = cap;
    }
    memcpy(l->out + l->out_len, data, len);
    l->out_len += len;
}

static int l_frame(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    leg_t *l = ud;
    if (l->to != NULL && pt_ws_send_frame_begin(l->to->ws, op, len, fin) != 0 &&
        !pt_ws_ended(l->to->ws))
        abort(); /* a frame A accepted must be sendable */
    return PT_WS_GO;
}

static int l_data(void *ud, const uint8_t *d, size_t n)
{
    leg_t *l = ud;
    if (l->to != NULL)
        pt_ws_send_frame_data(l->to->ws, d, n);
    return PT_WS_GO;
}

static int l_control(void *ud, pt_ws_opcode_t op, const uint8_t *d, size_t n)
{
    leg_t *l = ud;
    if (l->to != NULL)
        pt_ws_send_control(l->to->ws, op, d, n);
    return PT_WS_GO;
}

static void l_close(void *ud, uint16_t code, const char *reason, size_t n)
{
    leg_t *l = ud;
    if (l->to != NULL && pt_ws_close(l->to->ws, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason,
                                     n) != 0)
        abort(); /* a code A accepted must be sendable */
    /* the other side's answer, relayed back: A's handshake completes */
    if (l->to != NULL)
        pt_ws_close(l->ws, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, n);
}

static void l_end(void *ud, pt_ws_end_t why)
{
    leg_t *l = ud;
    l->ends++;
    l->why = why;
}

static const pt_ws_cbs_t cbs = {l_read, l_write, NULL, l_frame, l_data, NULL, l_control, l_close,
                                l_end};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    pt_ws_role_t role = (data[0] & 1) ? PT_WS_CLIENT : PT_WS_SERVER;
    pt_ws_opts_t oa = {.role = role,
                       .max_message = (data[0] & 2) ? 64 : 0,
                       .answer_control = (data[0] & 4) != 0};
    pt_ws_opts_t ob = {.role = role == PT_WS_SERVER ? PT_WS_CLIENT : PT_WS_SERVER};
    leg_t a = {.in = data + 2, .in_len = size - 2, .chunk = (size_t)data[1] % 17 + 1};
    leg_t b = {0};
    a.to = &b;
    a.ws = pt_ws_new(NULL, &oa, &cbs, &a);
    b.ws = pt_ws_new(NULL, &ob, &cbs, &b);
    for (int i = 0; i < 1000 && a.ends == 0; i++)
        pt_ws_on_readable(a.ws);
    if (a.ends != 1)
        abort(); /* the input ended: A must have ended (EOF at the latest) */

    /* C reads what B wrote, in one go */
    pt_ws_opts_t oc = {.role = role};
    leg_t c = {.in = b.out, .in_len = b.out_len, .chunk = 4096};
    c.ws = pt_ws_new(NULL, &oc, &cbs, &c);
    pt_ws_on_readable(c.ws);
    if (c.ends == 1 && (c.why == PT_WS_END_PROTOCOL || c.why == PT_WS_END_TOO_BIG))
        abort();
    pt_ws_free(a.ws);
    pt_ws_free(b.ws);
    pt_ws_free(c.ws);
    free(a.out);
    free(b.out);
    free(c.out);
    return 0;
}
