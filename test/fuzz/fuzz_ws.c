/*
 * fuzz_ws.c -- the WebSocket endpoint (gateway/http/ws.c) as a relay, the way
 * handlers/ws_proxy.c joins two legs.
 *
 * Input: byte 0 picks the receiving role, the max_message limit, whether
 * control frames are answered, whether the verbatim relay (on_raw +
 * pt_ws_send_raw, and pt_ws_feed in the client role) is on, and whole 4 KiB reads, and
 * whether A's whole frames go through pt_ws_relay first, as the pump of
 * ws_proxy.c does (its output appended to B's as the owner writes it); byte 1 the chunk size the
 * input is read in otherwise (short reads split headers and UTF-8 sequences
 * anywhere); the rest is the byte stream from the peer. Endpoint A parses it and relays every frame,
 * control frame and close to endpoint B (the other leg, the opposite role);
 * B's output is then parsed by C, a fresh endpoint of A's role facing B.
 *
 * Invariant: what A accepted and B wrote is valid WebSocket, so C never ends
 * with a protocol error or an oversize message (at most with EOF, when A
 * failed in the middle of a relayed frame). A crash, a leak or a broken
 * invariant aborts.
 *
 * Differential: the same input also goes through wslay's frame parser
 * (wslay_frame_recv, what ws.c was built on before its own codec) with the
 * same message rules on top (oracle() below). Both must reach the same
 * verdict -- the same close code or the same clean end -- after the same
 * number of complete messages, and when the input is accepted, deliver the
 * same payload bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "http/ws.h"

/* ---- the oracle: wslay's frame layer + RFC 6455 message rules ---------------- */

typedef struct verdict {
    uint16_t code;      /* close code we would send (1002, 1007, 1009); 0: none */
    bool closed;        /* a valid close frame was received */
    uint64_t msgs;      /* complete data messages */
    uint64_t frames;    /* frames whose header was seen */
    uint8_t *data;      /* payload bytes delivered, in order */
    size_t len, cap;
} verdict_t;

/* Appends to a growing byte array (what a leg wrote, what a parser delivered). */
static void grow_add(uint8_t **p, size_t *len, size_t *cap, const uint8_t *d, size_t n)
{
    if (n == 0)
        return;
    if (*len + n > *cap) {
        size_t c = (*len + n) * 2;
        uint8_t *o = realloc(*p, c);
        if (o == NULL)
            abort();
        *p = o;
        *cap = c;
    }
    memcpy(*p + *len, d, n);
    *len += n;
}

static void v_add(verdict_t *v, const uint8_t *d, size_t n)
{
    grow_add(&v->data, &v->len, &v->cap, d, n);
}

typedef struct src {
    const uint8_t *in;
    size_t len, off, chunk;
} src_t;

static ssize_t o_recv(uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    src_t *s = user;
    size_t n = s->len - s->off;
    if (n > s->chunk)
        n = s->chunk;
    if (n > len)
        n = len;
    if (n == 0)
        return WSLAY_ERR_WOULDBLOCK;
    memcpy(buf, s->in + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static ssize_t o_send(const uint8_t *d, size_t n, int flags, void *user)
{
    (void)d;
    (void)flags;
    (void)user;
    return (ssize_t)n;
}

static int o_genmask(uint8_t *buf, size_t n, void *user)
{
    (void)user;
    memset(buf, 0, n);
    return 0;
}

static void oracle(pt_ws_role_t role, uint64_t max_message, src_t *s, verdict_t *v)
{
    static const struct wslay_frame_callbacks cb = {o_send, o_recv, o_genmask};
    wslay_frame_context_ptr fr;
    if (wslay_frame_context_init(&fr, &cb, s) != 0)
        abort();
    bool in_frame = false, in_msg = false, fin = false;
    uint8_t op = 0, m_op = 0, ctrl[125];
    uint64_t f_len = 0, f_off = 0, m_len = 0;
    size_t ctrl_len = 0;
    uint32_t utf8 = 0;
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        ssize_t r = wslay_frame_recv(fr, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (s->off == s->len)
                break; /* the input is over: EOF */
            continue;  /* a short read: wslay wants to be called again */
        }
        if (r < 0) {
            v->code = PT_WS_CLOSE_PROTOCOL;
            break;
        }
        if (!in_frame) {
            v->frames++;
            if ((io.mask != 0) != (role == PT_WS_SERVER) || io.rsv != 0) {
                v->code = PT_WS_CLOSE_PROTOCOL;
                break;
            }
            op = io.opcode;
            fin = io.fin != 0;
            f_len = io.payload_length;
            f_off = 0;
            ctrl_len = 0;
            in_frame = true;
            if (op >= 8 ? (op != PT_WS_OP_CLOSE && op != PT_WS_OP_PING && op != PT_WS_OP_PONG)
                        : op == PT_WS_OP_CONT ? !in_msg
                        : (in_msg || (op != PT_WS_OP_TEXT && op != PT_WS_OP_BINARY))) {
                v->code = PT_WS_CLOSE_PROTOCOL;
                break;
            }
            if (op < 8) {
                if (op != PT_WS_OP_CONT) {
                    m_op = op;
                    m_len = 0;
                    utf8 = 0;
                }
                if (max_message != 0 && f_len > max_message - m_len) {
                    v->code = PT_WS_CLOSE_TOO_BIG;
                    break;
                }
                m_len += f_len;
                in_msg = !fin;
            }
        }
        f_off += io.data_length;
        if (op >= 8) {
            memcpy(ctrl + ctrl_len, io.data, io.data_length);
            ctrl_len += io.data_length;
        } else if (io.data_length != 0) {
            if (m_op == PT_WS_OP_TEXT && !pt_ws_utf8_check(&utf8, io.data, io.data_length)) {
                v->code = PT_WS_CLOSE_INVALID_DATA;
                break;
            }
            v_add(v, io.data, io.data_length);
        }
        if (f_off != f_len)
            continue;
        in_frame = false;
        if (op == PT_WS_OP_CLOSE) {
            uint32_t u = 0;
            if (ctrl_len == 1 ||
                (ctrl_len >= 2 && !pt_ws_close_code_valid((uint16_t)((ctrl[0] << 8) | ctrl[1]))))
                v->code = PT_WS_CLOSE_PROTOCOL;
            else if (ctrl_len >= 2 && (!pt_ws_utf8_check(&u, ctrl + 2, ctrl_len - 2) || u != 0))
                v->code = PT_WS_CLOSE_INVALID_DATA;
            else
                v->closed = true;
            break;
        }
        if (op < 8 && fin) {
            if (m_op == PT_WS_OP_TEXT && utf8 != 0) {
                v->code = PT_WS_CLOSE_INVALID_DATA;
                break;
            }
            v->msgs++;
        }
    }
    wslay_frame_context_free(fr);
}

/* Our endpoint alone over the same input, recording the same verdict. */
typedef struct mine {
    src_t s;
    verdict_t v;
} mine_t;

static size_t m_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    mine_t *m = ud;
    size_t n = m->s.len - m->s.off;
    if (n > m->s.chunk)
        n = m->s.chunk;
    if (n > max)
        n = max;
    memcpy(buf, m->s.in + m->s.off, n);
    m->s.off += n;
    *eof = n == 0;
    return n;
}

static void m_write(void *ud, const uint8_t *d, size_t n)
{
    (void)ud;
    (void)d;
    (void)n;
}

static int m_data(void *ud, const uint8_t *d, size_t n)
{
    v_add(&((mine_t *)ud)->v, d, n);
    return PT_WS_GO;
}

static int m_end(void *ud)
{
    ((mine_t *)ud)->v.msgs++;
    return PT_WS_GO;
}

static void m_close(void *ud, uint16_t code, const char *reason, size_t n)
{
    (void)code;
    (void)reason;
    (void)n;
    ((mine_t *)ud)->v.closed = true;
}

static void m_done(void *ud, pt_ws_end_t why)
{
    (void)ud;
    (void)why;
}

/* Verbatim runs: the frames are walked here (they passed every check) and
 * their payloads delivered as on_msg_data / on_msg_end would have. */
static int m_raw(void *ud, const uint8_t *f, size_t len, const pt_ws_raw_t *info)
{
    mine_t *m = ud;
    size_t i = 0;
    uint32_t frames = 0, msgs = 0;
    uint64_t bytes = 0;
    while (i < len) {
        if (len - i < 2)
            abort();
        bool fin = (f[i] & 0x80) != 0, masked = (f[i + 1] & 0x80) != 0;
        if (masked != info->masked || (f[i] & 0x70) != 0 || (f[i] & 0x08) != 0)
            abort(); /* only checked data frames, masked as announced */
        uint64_t n = f[i + 1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            n = ((uint64_t)f[i + 2] << 8) | f[i + 3];
            h = 4;
        } else if (n == 127) {
            n = 0;
            for (size_t k = 2; k < 10; k++)
                n = (n << 8) | f[i + k];
            h = 10;
        }
        const uint8_t *key = masked ? f + i + h : NULL;
        h += masked ? 4 : 0;
        if (h > len - i || n > len - i - h)
            abort(); /* a run holds whole frames */
        for (uint64_t k = 0; k < n; k++) {
            uint8_t c = (uint8_t)(f[i + h + k] ^ (key != NULL ? key[k % 4] : 0));
            v_add(&m->v, &c, 1);
        }
        frames++;
        bytes += n;
        if (fin) {
            msgs++;
            m->v.msgs++;
        }
        i += h + (size_t)n;
    }
    if (frames != info->frames || msgs != info->msgs || bytes != info->bytes)
        abort();
    return PT_WS_GO;
}

static const pt_ws_cbs_t m_cbs = {m_read, m_write, NULL, NULL, m_data, m_end, NULL, m_close,
                                  m_done, NULL};
static const pt_ws_cbs_t m_raw_cbs = {m_read, m_write, NULL, NULL, m_data, m_end, NULL, m_close,
                                      m_done, m_raw};

static void differential(pt_ws_role_t role, uint64_t max_message, const uint8_t *in, size_t len,
                         size_t chunk, bool raw)
{
    verdict_t want = {0};
    src_t s = {in, len, 0, chunk};
    oracle(role, max_message, &s, &want);

    mine_t m = {.s = {in, len, 0, chunk}};
    pt_ws_opts_t o = {.role = role, .max_message = max_message};
    pt_ws_t *ws = pt_ws_new(NULL, &o, raw ? &m_raw_cbs : &m_cbs, &m);
    for (int i = 0; i < 1000 && !pt_ws_ended(ws) && !m.v.closed; i++) {
        if (raw && role == PT_WS_CLIENT) { /* whole frames in place first (pt_ws_feed) */
            size_t n = m.s.len - m.s.off < chunk ? m.s.len - m.s.off : chunk;
            m.s.off += pt_ws_feed(ws, m.s.in + m.s.off, n);
        }
        pt_ws_on_readable(ws);
    }
    const pt_ws_stats_t *st = pt_ws_stats(ws);
    uint16_t got = m.v.closed ? 0 : st->close_out;
    /* wslay reports a header only with payload bytes: when the input ends
     * before them, it sees EOF where we refuse the header already */
    if (want.code == 0 && !want.closed && (got == PT_WS_CLOSE_PROTOCOL || got == PT_WS_CLOSE_TOO_BIG) &&
        st->frames_in == want.frames + 1)
        want.code = got;
    if (got != want.code || m.v.closed != want.closed || m.v.msgs != want.msgs) {
        fprintf(stderr, "fuzz_ws: ours close %u closed %d msgs %llu; wslay's %u %d %llu\n", got,
                m.v.closed, (unsigned long long)m.v.msgs, want.code, want.closed,
                (unsigned long long)want.msgs);
        abort();
    }
    /* a failing chunk is refused whole, and the two parsers chunk differently */
    if (want.code == 0 && (m.v.len != want.len || (want.len != 0 &&
                                                   memcmp(m.v.data, want.data, want.len) != 0))) {
        fprintf(stderr, "fuzz_ws: ours delivered %zu bytes, wslay's %zu (or other bytes)\n",
                m.v.len, want.len);
        abort();
    }
    pt_ws_free(ws);
    free(want.data);
    free(m.v.data);
}

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
    grow_add(&l->out, &l->out_len, &l->out_cap, data, len);
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

static int l_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    leg_t *l = ud;
    if (l->to != NULL && pt_ws_send_raw(l->to->ws, frames, len, info) != 0 &&
        !pt_ws_ended(l->to->ws))
        abort(); /* frames A accepted must be sendable as they are */
    return PT_WS_GO;
}

static const pt_ws_cbs_t cbs = {l_read, l_write, NULL, l_frame, l_data, NULL, l_control, l_close,
                                l_end, NULL};
static const pt_ws_cbs_t raw_cbs = {l_read, l_write, NULL, l_frame, l_data, NULL, l_control,
                                    l_close, l_end, l_raw};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    pt_ws_role_t role = (data[0] & 1) ? PT_WS_CLIENT : PT_WS_SERVER;
    pt_ws_opts_t oa = {.role = role,
                       .max_message = (data[0] & 2) ? 64 : 0,
                       .answer_control = (data[0] & 4) != 0};
    pt_ws_opts_t ob = {.role = role == PT_WS_SERVER ? PT_WS_CLIENT : PT_WS_SERVER};
    bool raw = (data[0] & 8) != 0;
    size_t chunk = (data[0] & 16) ? 4096 : (size_t)data[1] % 17 + 1;
    differential(role, oa.max_message, data + 2, size - 2, chunk, raw);
    leg_t a = {.in = data + 2, .in_len = size - 2, .chunk = chunk};
    leg_t b = {0};
    a.to = &b;
    a.ws = pt_ws_new(NULL, &oa, raw ? &raw_cbs : &cbs, &a);
    b.ws = pt_ws_new(NULL, &ob, &cbs, &b);
    bool pump = raw && (data[0] & 32) != 0;
    for (int i = 0; i < 1000 && a.ends == 0; i++) {
        if (pump) { /* the pump: one read's whole frames straight to B's peer */
            uint8_t tmp[4096];
            size_t n = a.in_len - a.in_off < chunk ? a.in_len - a.in_off : chunk;
            memcpy(tmp, a.in + a.in_off, n);
            size_t k = pt_ws_relay(a.ws, b.ws, tmp, n);
            if (k > n)
                abort();
            grow_add(&b.out, &b.out_len, &b.out_cap, tmp, k);
            a.in_off += k;
        } else if (raw && role == PT_WS_CLIENT) {
            size_t n = a.in_len - a.in_off < chunk ? a.in_len - a.in_off : chunk;
            a.in_off += pt_ws_feed(a.ws, a.in + a.in_off, n);
        }
        pt_ws_on_readable(a.ws);
    }
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
