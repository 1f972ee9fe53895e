/*
 * ws.c -- the WebSocket endpoint of ws.h: RFC 6455 frames over a byte stream,
 * with the message rules, limits, control frames and timers.
 *
 * The frame codec is our own, built for a relay's per-message cost:
 *   receiving  one read fills a 4 KiB window; every frame in it is parsed in
 *              place (header fields read where they lie, the payload unmasked
 *              in place 8 bytes at a time and UTF-8-checked with an ASCII
 *              fast path), so a read carrying many small frames costs one
 *              callback and no copy beyond the read itself;
 *   sending    a frame's header is held until its first payload bytes and
 *              goes out with them in one write (masked by the client role in
 *              the same pass that copies the payload), control frames are one
 *              write each.
 * wslay's frame layer did this before (it copied input into its own window in
 * small reads, unmasked byte by byte and wrote header and payload
 * separately); test/fuzz/fuzz_ws.c still checks our verdicts against it.
 *
 * Timers cost nothing per frame: one event samples counters (like tunnel.c)
 * every quarter of the shortest period, and a session that sent its close
 * frame swaps it for a one-shot closing timeout.
 */
#include <event2/event.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chain.h"
#include "core/xalloc.h"
#include "http/ws.h"
#include "observe/observe.h"

#define DEFAULT_CLOSE_TIMEOUT_MS 5000u

/* Largest frame header: 2 bytes, a 64-bit length, a masking key. */
#define MAX_HEADER 14u

typedef struct ctrl_slot {
    bool has;
    uint8_t len;
    uint8_t data[PT_WS_MAX_CONTROL];
} ctrl_slot_t;

struct pt_ws {
    /*
     * What a relayed frame reads and writes (pt_ws_relay, raw_frames) comes
     * first, in the first three cache lines: a relay touches both endpoints
     * once per message, after the kernel's work in between has evicted them,
     * so every further line is a miss per message (bench/ws_callgrind.py
     * --cache-sim counts them).
     */
    pt_ws_opts_t o;              /* role and max_message at its front */
    const pt_ws_cbs_t *cbs;
    void *ud;
    size_t in_pos, in_end;       /* unparsed input: in[in_pos, in_end) */
    uint64_t m_len;              /* bytes of the open data message so far */
    uint64_t raw_in;             /* bytes read from the peer (timers: sampled as seen_in) */
    uint64_t data_io;            /* data payload bytes either way (sampled as seen_io) */
    uint32_t utf8;               /* UTF-8 decoder state across chunks of a text message */
    uint8_t m_op;                /* the open data message's opcode */
    bool in_frame;               /* between a frame's header and the end of its payload */
    bool in_msg;                 /* a data message is open (more frames follow) */
    bool out_frame;              /* a data frame is half sent */
    bool out_msg;                /* a fragmented message is open: the next frame is CONT */
    bool paused;
    bool close_sent, close_recv;
    bool ended;
    bool free_pending;
    pt_ws_stats_t st;            /* its message, byte and frame counts first */

    struct event *timer;

    /* receiving */
    bool in_eof;                 /* cbs->read reported the end of the stream */
    uint8_t f_op;
    bool f_fin;
    bool f_masked;
    uint8_t f_key[4];
    uint64_t f_len, f_off;
    uint8_t ctrl[PT_WS_MAX_CONTROL];
    size_t ctrl_len;
    bool drained;                /* a short read (short_read_drains): wait for the owner's call */

    /* sending */
    bool out_fin;
    uint64_t out_len, out_left;
    uint8_t out_key[4];          /* masking key of the frame being sent (client role) */
    uint8_t hdr[MAX_HEADER];     /* its header, held until its first payload bytes */
    uint8_t hdr_len;
    ctrl_slot_t slot_pong, slot_ping, slot_close;
    bool end_after_flush;        /* both closes done but ours is still in its slot */

    /* timers */
    uint64_t seen_in, seen_io;
    uint64_t last_in_ms, last_io_ms, last_ping_ms;
    uint8_t ka[8];               /* payload of our last keepalive ping */
    bool ka_out;                 /* ... not answered yet */
    bool closing_timer;          /* the timer is the closing timeout now */

    /* lifetime */
    unsigned busy;

    /* the input window: frames are parsed and unmasked in place */
    uint8_t in[PT_WS_CHUNK];
};

/* ---- small helpers ---------------------------------------------------------- */

static void enter(pt_ws_t *ws) { ws->busy++; }

static void really_free(pt_ws_t *ws)
{
    if (ws->timer != NULL)
        event_free(ws->timer);
    free(ws);
}

/* Ends a public entry point; returns true when `ws` is gone (touch nothing). */
static bool leave(pt_ws_t *ws)
{
    if (--ws->busy == 0 && ws->free_pending) {
        really_free(ws);
        return true;
    }
    return false;
}

bool pt_ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/*
 * UTF-8 check as a small state machine over bytes. The state packs how many
 * continuation bytes are still expected (bits 0-1) and the allowed range of
 * the next one (bits 8-15: low bound, 16-23: high bound) so that overlongs,
 * surrogates and code points past U+10FFFF are refused at the byte where
 * they become certain (RFC 3629 §4, the table of well-formed sequences).
 */
bool pt_ws_utf8_check(uint32_t *state, const uint8_t *p, size_t len)
{
    uint32_t s = *state;
    for (size_t i = 0; i < len; i++) {
        if (s == 0) {
            /* fast path: skip ASCII runs 8 bytes at a time */
            while (len - i >= 8) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if ((v & 0x8080808080808080ull) != 0)
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        uint8_t c = p[i];
        if (s == 0) {
            if (c < 0x80)
                continue;
            uint32_t need, lo = 0x80, hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf)
                need = 1;
            else if (c >= 0xe0 && c <= 0xef) {
                need = 2;
                if (c == 0xe0)
                    lo = 0xa0;
                else if (c == 0xed)
                    hi = 0x9f;
            } else if (c >= 0xf0 && c <= 0xf4) {
                need = 3;
                if (c == 0xf0)
                    lo = 0x90;
                else if (c == 0xf4)
                    hi = 0x8f;
            } else {
                *state = s;
                return false;
            }
            s = need | (lo << 8) | (hi << 16);
            continue;
        }
        uint32_t lo = (s >> 8) & 0xff, hi = (s >> 16) & 0xff;
        if (c < lo || c > hi) {
            *state = s;
            return false;
        }
        uint32_t need = (s & 3) - 1;
        s = need == 0 ? 0 : (need | (0x80u << 8) | (0xbfu << 16));
    }
    *state = s;
    return true;
}

const char *pt_ws_end_name(pt_ws_end_t why)
{
    switch (why) {
    case PT_WS_END_CLOSED: return "closed";
    case PT_WS_END_PROTOCOL: return "protocol_error";
    case PT_WS_END_TOO_BIG: return "message_too_big";
    case PT_WS_END_IDLE: return "idle_timeout";
    case PT_WS_END_TIMEOUT: return "close_timeout";
    case PT_WS_END_EOF: return "eof";
    }
    return "unknown";
}

/* ---- the frame codec ------------------------------------------------------------- */

/* dst = src XOR the masking key, starting `off` bytes into the frame's payload
 * (dst == src unmasks in place). 16 bytes per step with SSE2, else 8. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                      uint64_t off)
{
    /* the key three times over: the 8 bytes from `off` on are the key for 8 payload bytes */
    uint8_t k3[12];
    memcpy(k3, key, 4);
    memcpy(k3 + 4, key, 4);
    memcpy(k3 + 8, key, 4);
    const uint8_t *k = k3 + (off & 3);
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
#ifdef __SSE2__
    /* 16 bytes per XOR (the key's period divides 16) */
    const __m128i k128 = _mm_set1_epi64x((long long)k64);
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k128));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 16), _mm_xor_si128(b, k128));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 32), _mm_xor_si128(c, k128));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 48), _mm_xor_si128(d, k128));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k128));
    }
#endif
    for (; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, src + i, 32);
        v[0] ^= k64;
        v[1] ^= k64;
        v[2] ^= k64;
        v[3] ^= k64;
        memcpy(dst + i, v, 32);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

/* A parsed frame header. */
typedef struct frame_hdr {
    bool fin, masked;
    uint8_t rsv, op;
    uint8_t key[4];
    uint64_t len;
} frame_hdr_t;

/*
 * Parses the frame header at p[0, avail): returns its length, 0 when more
 * bytes are needed, -1 when it breaks RFC 6455 §5.2/§5.5 on its own: a
 * control frame that is fragmented or longer than 125 bytes, an extended
 * length that is not the shortest encoding or has the top bit set.
 * (Masking by role, reserved bits and opcodes are the caller's checks.)
 */
static int parse_header(const uint8_t *p, size_t avail, frame_hdr_t *h)
{
    if (avail < 2)
        return 0;
    h->fin = (p[0] & 0x80) != 0;
    h->rsv = (uint8_t)((p[0] >> 4) & 7);
    h->op = p[0] & 0x0f;
    h->masked = (p[1] & 0x80) != 0;
    uint64_t len = p[1] & 0x7f;
    if ((h->op & 0x8) != 0 && (!h->fin || len > PT_WS_MAX_CONTROL))
        return -1;
    size_t hl = 2;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
        if (len < 126)
            return -1;
        hl = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (size_t i = 2; i < 10; i++)
            len = (len << 8) | p[i];
        if (len < 65536 || (len >> 63) != 0)
            return -1;
        hl = 10;
    }
    if (h->masked) {
        if (avail < hl + 4)
            return 0;
        memcpy(h->key, p + hl, 4);
        hl += 4;
    }
    h->len = len;
    return (int)hl;
}

/* Writes a frame header for `len` payload bytes into h (MAX_HEADER bytes); returns its length. */
static size_t put_header(uint8_t *h, uint8_t op, bool fin, uint64_t len, const uint8_t *key)
{
    size_t n = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    uint8_t m = key != NULL ? 0x80 : 0;
    if (len < 126) {
        h[1] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[1] = m | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = m | 127;
        for (size_t i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (key != NULL) {
        memcpy(h + n, key, 4);
        n += 4;
    }
    return n;
}

static void out(pt_ws_t *ws, const uint8_t *data, size_t len)
{
    if (!ws->free_pending) /* freed from a callback: nothing reaches the owner any more */
        ws->cbs->write(ws->ud, data, len);
}

/*
 * Masking keys (client role, and the verbatim relay's re-masking) come from a
 * pool per thread refilled from the CSPRNG: RAND_bytes costs ~30 instructions
 * a byte on 1 KiB, ~3 on 16 KiB (callgrind), so one large refill per 4096
 * keys. Endpoints belong to one worker thread; keys are used once each.
 */
#define MASK_POOL 16384u
static _Thread_local uint8_t mask_pool[MASK_POOL];
static _Thread_local size_t mask_pos = MASK_POOL;

static void new_key(pt_ws_t *ws, uint8_t key[4])
{
    (void)ws;
    if (mask_pos + 4 > MASK_POOL) {
        if (RAND_bytes(mask_pool, sizeof(mask_pool)) != 1) {
            fputs("portico: no random bytes for a websocket masking key\n", stderr);
            abort();
        }
        mask_pos = 0;
    }
    memcpy(key, mask_pool + mask_pos, 4);
    mask_pos += 4;
}

/* ---- sending ------------------------------------------------------------------- */

/* A whole frame of at most PT_WS_MAX_CONTROL bytes (control frames) in one write. */
static void write_frame(pt_ws_t *ws, uint8_t op, const void *data, size_t len)
{
    uint8_t buf[MAX_HEADER + PT_WS_MAX_CONTROL];
    uint8_t key[4];
    bool client = ws->o.role == PT_WS_CLIENT;
    if (client)
        new_key(ws, key);
    size_t h = put_header(buf, op, true, len, client ? key : NULL);
    if (len != 0) {
        if (client)
            mask_copy(buf + h, data, len, key, 0);
        else
            memcpy(buf + h, data, len);
    }
    out(ws, buf, h + len);
    ws->st.frames_out++;
}

static void end_session(pt_ws_t *ws, pt_ws_end_t why);

/* Sends the held control frames (pong, ping, close in that order). */
static void flush_slots(pt_ws_t *ws)
{
    if (ws->slot_pong.has) {
        ws->slot_pong.has = false;
        write_frame(ws, PT_WS_OP_PONG, ws->slot_pong.data, ws->slot_pong.len);
    }
    if (ws->slot_ping.has) {
        ws->slot_ping.has = false;
        write_frame(ws, PT_WS_OP_PING, ws->slot_ping.data, ws->slot_ping.len);
    }
    if (ws->slot_close.has) {
        ws->slot_close.has = false;
        write_frame(ws, PT_WS_OP_CLOSE, ws->slot_close.data, ws->slot_close.len);
    }
    if (ws->end_after_flush) {
        ws->end_after_flush = false;
        end_session(ws, PT_WS_END_CLOSED);
    }
}

static void control_out(pt_ws_t *ws, uint8_t op, const void *data, size_t len)
{
    if (!ws->out_frame) {
        write_frame(ws, op, data, len);
        return;
    }
    ctrl_slot_t *s = op == PT_WS_OP_PONG ? &ws->slot_pong
                     : op == PT_WS_OP_PING ? &ws->slot_ping : &ws->slot_close;
    s->has = true;
    s->len = (uint8_t)len;
    if (len != 0)
        memcpy(s->data, data, len);
}

int pt_ws_send_frame_begin(pt_ws_t *ws, pt_ws_opcode_t op, uint64_t payload_len, bool fin)
{
    if (ws->ended || ws->close_sent || ws->out_frame)
        return PT_ERR_INVALID;
    if (ws->out_msg ? op != PT_WS_OP_CONT : (op != PT_WS_OP_TEXT && op != PT_WS_OP_BINARY))
        return PT_ERR_INVALID;
    enter(ws);
    ws->out_len = payload_len;
    ws->out_left = payload_len;
    ws->out_fin = fin;
    ws->out_msg = !fin;
    bool client = ws->o.role == PT_WS_CLIENT;
    if (client)
        new_key(ws, ws->out_key);
    ws->hdr_len = (uint8_t)put_header(ws->hdr, (uint8_t)op, fin, payload_len,
                                      client ? ws->out_key : NULL);
    ws->st.frames_out++;
    if (payload_len == 0) {
        out(ws, ws->hdr, ws->hdr_len);
        ws->hdr_len = 0;
        if (fin)
            ws->st.msgs_out++;
        flush_slots(ws);
    } else {
        ws->out_frame = true; /* the header goes out with the first payload bytes */
    }
    leave(ws);
    return 0;
}

int pt_ws_send_frame_data(pt_ws_t *ws, const void *data, size_t len)
{
    if (ws->ended || !ws->out_frame || len > ws->out_left)
        return PT_ERR_INVALID;
    if (len == 0)
        return 0;
    enter(ws);
    const uint8_t *src = data;
    size_t left = len;
    uint64_t off = ws->out_len - ws->out_left;
    if (ws->o.role == PT_WS_CLIENT || (ws->hdr_len != 0 && left <= 1024)) {
        /* masked (or small) payload: header and payload copied into one write */
        uint8_t buf[MAX_HEADER + PT_WS_CHUNK];
        while (left != 0) {
            size_t h = ws->hdr_len;
            if (h != 0)
                memcpy(buf, ws->hdr, h);
            ws->hdr_len = 0;
            size_t n = left < sizeof(buf) - h ? left : sizeof(buf) - h;
            if (ws->o.role == PT_WS_CLIENT)
                mask_copy(buf + h, src, n, ws->out_key, off);
            else
                memcpy(buf + h, src, n);
            out(ws, buf, h + n);
            src += n;
            left -= n;
            off += n;
        }
    } else {
        if (ws->hdr_len != 0)
            out(ws, ws->hdr, ws->hdr_len);
        ws->hdr_len = 0;
        out(ws, src, left);
    }
    ws->out_left -= len;
    ws->st.bytes_out += len;
    ws->data_io += len;
    if (ws->out_left == 0) {
        ws->out_frame = false;
        if (ws->out_fin)
            ws->st.msgs_out++;
        flush_slots(ws);
    }
    leave(ws);
    return 0;
}

int pt_ws_send_raw(pt_ws_t *ws, const void *frames, size_t len, const pt_ws_raw_t *info)
{
    if (ws->ended || ws->close_sent || ws->out_frame || info->frames == 0 ||
        info->masked != (ws->o.role == PT_WS_CLIENT) || info->starts_cont != ws->out_msg)
        return PT_ERR_INVALID;
    enter(ws);
    out(ws, frames, len);
    ws->out_msg = info->ends_open;
    ws->st.frames_out += info->frames;
    ws->st.msgs_out += info->msgs;
    ws->st.bytes_out += info->bytes;
    ws->data_io += info->bytes;
    leave(ws);
    return 0;
}

int pt_ws_send_msg(pt_ws_t *ws, pt_ws_opcode_t op, const void *data, size_t len)
{
    if (op != PT_WS_OP_TEXT && op != PT_WS_OP_BINARY)
        return PT_ERR_INVALID;
    /* One bracket for both steps: a write callback that frees the endpoint
     * (deferred) cannot take it away between them; the second step then
     * sees `ended` and does nothing. */
    enter(ws);
    int rc = pt_ws_send_frame_begin(ws, op, len, true);
    if (rc == 0 && len != 0)
        rc = pt_ws_send_frame_data(ws, data, len); // NOLINT(clang-analyzer-unix.Malloc): our bracket keeps busy > 0
    leave(ws); // NOLINT(clang-analyzer-unix.Malloc): our bracket keeps busy > 0 until here
    return rc;
}

int pt_ws_send_control(pt_ws_t *ws, pt_ws_opcode_t op, const void *data, size_t len)
{
    if (ws->ended || ws->close_sent || len > PT_WS_MAX_CONTROL ||
        (op != PT_WS_OP_PING && op != PT_WS_OP_PONG))
        return PT_ERR_INVALID;
    enter(ws);
    control_out(ws, (uint8_t)op, data, len);
    leave(ws);
    return 0;
}

static void arm(pt_ws_t *ws, uint64_t ms)
{
    if (ws->timer == NULL)
        return;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ws->timer, &tv);
}

int pt_ws_close(pt_ws_t *ws, uint16_t code, const char *reason, size_t reason_len)
{
    if (code != 0 && !pt_ws_close_code_valid(code))
        return PT_ERR_INVALID;
    if (ws->ended || ws->close_sent)
        return 0;
    enter(ws);
    uint8_t p[PT_WS_MAX_CONTROL];
    size_t n = 0;
    if (code != 0) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (reason_len > PT_WS_MAX_CONTROL - 2) {
            reason_len = PT_WS_MAX_CONTROL - 2;
            /* never cut a UTF-8 sequence in half: back up to its lead byte */
            while (reason_len > 0 && ((uint8_t)reason[reason_len] & 0xc0) == 0x80)
                reason_len--;
        }
        if (reason_len != 0)
            memcpy(p + 2, reason, reason_len);
        n += reason_len;
    }
    ws->close_sent = true;
    ws->st.close_out = code != 0 ? code : PT_WS_CLOSE_NO_STATUS;
    control_out(ws, PT_WS_OP_CLOSE, p, n);
    if (ws->close_recv) {
        if (ws->out_frame)
            ws->end_after_flush = true;
        else
            end_session(ws, PT_WS_END_CLOSED);
    } else if (ws->timer != NULL) {
        ws->closing_timer = true;
        evtimer_del(ws->timer);
        arm(ws, ws->o.close_timeout_ms ? ws->o.close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS);
    }
    leave(ws);
    return 0;
}

static void end_session(pt_ws_t *ws, pt_ws_end_t why)
{
    if (ws->ended)
        return;
    ws->ended = true;
    if (ws->timer != NULL)
        evtimer_del(ws->timer);
    ws->cbs->on_end(ws->ud, why);
}

/* _Fail the WebSocket Connection_ (RFC 6455 §7.1.7): our close, then the end. */
static void fail(pt_ws_t *ws, uint16_t code, pt_ws_end_t why)
{
    if (!ws->close_sent) {
        static const char *const reasons[] = {
            [PT_WS_END_PROTOCOL] = "protocol error",
            [PT_WS_END_TOO_BIG] = "message too big",
            [PT_WS_END_IDLE] = "idle timeout",
        };
        const char *r = why < sizeof(reasons) / sizeof(reasons[0]) && reasons[why] ? reasons[why] : "";
        ws->close_sent = true;
        ws->st.close_out = code;
        uint8_t p[2 + 16];
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        size_t rl = strlen(r);
        for (size_t i = 0; i < rl; i++) /* a length-delimited payload, no NUL */
            p[2 + i] = (uint8_t)r[i];
        if (!ws->out_frame) /* else the frame in flight cannot be finished: just end */
            write_frame(ws, PT_WS_OP_CLOSE, p, 2 + rl);
    }
    end_session(ws, why);
}

/* ---- receiving ------------------------------------------------------------------ */

static bool cb_ret(pt_ws_t *ws, int r)
{
    if (r == PT_WS_PAUSE)
        ws->paused = true;
    return !ws->ended;
}

/* Whether callbacks may still run (not ended, not freed from a callback). */
static bool live(const pt_ws_t *ws)
{
    return !ws->ended && !ws->free_pending;
}

/* A new frame's header: the checks that need only the header. */
static bool frame_start(pt_ws_t *ws, const frame_hdr_t *h)
{
    ws->st.frames_in++;
    bool want_mask = ws->o.role == PT_WS_SERVER;
    if (h->masked != want_mask || h->rsv != 0) {
        fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
        return false;
    }
    uint8_t op = h->op;
    ws->in_frame = true;
    ws->f_op = op;
    ws->f_fin = h->fin;
    ws->f_masked = h->masked;
    memcpy(ws->f_key, h->key, 4);
    ws->f_len = h->len;
    ws->f_off = 0;
    ws->ctrl_len = 0;
    if (op >= 0x8) {
        if (op != PT_WS_OP_CLOSE && op != PT_WS_OP_PING && op != PT_WS_OP_PONG) {
            fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
            return false;
        }
        return true; /* length and fin were checked by the parser */
    }
    if (op == PT_WS_OP_CONT ? !ws->in_msg
                            : (ws->in_msg || (op != PT_WS_OP_TEXT && op != PT_WS_OP_BINARY))) {
        fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
        return false;
    }
    if (ws->close_recv) {
        /* nothing may follow a close frame */
        fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
        return false;
    }
    bool first = op != PT_WS_OP_CONT;
    if (first) {
        ws->m_op = op;
        ws->m_len = 0;
        ws->utf8 = 0;
    }
    /* The limit is enforced on the announced length: nothing of a message
     * that cannot fit is delivered or buffered. */
    if (ws->o.max_message != 0 && ws->f_len > ws->o.max_message - ws->m_len) {
        fail(ws, PT_WS_CLOSE_TOO_BIG, PT_WS_END_TOO_BIG);
        return false;
    }
    ws->m_len += ws->f_len;
    ws->in_msg = !ws->f_fin;
    /* An empty last frame ending a text message inside a UTF-8 sequence:
     * refused before a relay passes on a frame that completes the message. */
    if (ws->f_fin && ws->f_len == 0 && ws->m_op == PT_WS_OP_TEXT && ws->utf8 != 0) {
        fail(ws, PT_WS_CLOSE_INVALID_DATA, PT_WS_END_PROTOCOL);
        return false;
    }
    if (first && live(ws) && ws->cbs->on_msg_start != NULL &&
        !cb_ret(ws, ws->cbs->on_msg_start(ws->ud, (pt_ws_opcode_t)op)))
        return false;
    if (live(ws) && ws->cbs->on_frame_start != NULL &&
        !cb_ret(ws, ws->cbs->on_frame_start(ws->ud, (pt_ws_opcode_t)op, ws->f_len, ws->f_fin)))
        return false;
    return true;
}

static void control_done(pt_ws_t *ws)
{
    const uint8_t *p = ws->ctrl;
    size_t n = ws->ctrl_len;
    switch (ws->f_op) {
    case PT_WS_OP_PING:
        ws->st.pings_in++;
        if (ws->o.answer_control && !ws->close_sent)
            control_out(ws, PT_WS_OP_PONG, p, n);
        if (live(ws) && ws->cbs->on_control != NULL)
            cb_ret(ws, ws->cbs->on_control(ws->ud, PT_WS_OP_PING, p, n));
        return;
    case PT_WS_OP_PONG:
        ws->st.pongs_in++;
        if (ws->ka_out && n == sizeof(ws->ka) && memcmp(p, ws->ka, n) == 0) {
            ws->ka_out = false; /* ours: consumed here */
            return;
        }
        if (live(ws) && ws->cbs->on_control != NULL)
            cb_ret(ws, ws->cbs->on_control(ws->ud, PT_WS_OP_PONG, p, n));
        return;
    default:
        break;
    }
    /* close */
    uint16_t code = PT_WS_CLOSE_NO_STATUS;
    if (n == 1) {
        fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
        return;
    }
    if (n >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        uint32_t u = 0;
        if (!pt_ws_close_code_valid(code)) {
            fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
            return;
        }
        if (!pt_ws_utf8_check(&u, p + 2, n - 2) || u != 0) {
            fail(ws, PT_WS_CLOSE_INVALID_DATA, PT_WS_END_PROTOCOL);
            return;
        }
    }
    ws->close_recv = true;
    ws->st.close_in = code;
    if (live(ws) && ws->cbs->on_close != NULL && !ws->o.answer_control)
        ws->cbs->on_close(ws->ud, code, (const char *)p + (n >= 2 ? 2 : 0), n >= 2 ? n - 2 : 0);
    if (ws->ended)
        return;
    if (ws->o.answer_control) {
        if (live(ws) && ws->cbs->on_close != NULL)
            ws->cbs->on_close(ws->ud, code, (const char *)p + (n >= 2 ? 2 : 0), n >= 2 ? n - 2 : 0);
        if (ws->ended)
            return;
        if (!ws->close_sent)
            pt_ws_close(ws, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    }
    if (ws->close_sent && !ws->ended) {
        if (ws->slot_close.has)
            ws->end_after_flush = true;
        else
            end_session(ws, PT_WS_END_CLOSED);
    }
}

/* Payload bytes of the current frame (already unmasked by the parser). */
static bool frame_data(pt_ws_t *ws, const uint8_t *d, size_t n)
{
    ws->f_off += n;
    if (ws->f_op >= 0x8) {
        memcpy(ws->ctrl + ws->ctrl_len, d, n); /* the parser capped the length at 125 */
        ws->ctrl_len += n;
        return true;
    }
    if (n == 0)
        return true;
    /* The message's last bytes must also end its last UTF-8 sequence: checked
     * before they are delivered, so a relay never completes an invalid text
     * message on the other side. */
    if (ws->m_op == PT_WS_OP_TEXT &&
        (!pt_ws_utf8_check(&ws->utf8, d, n) ||
         (ws->f_fin && ws->f_off == ws->f_len && ws->utf8 != 0))) {
        fail(ws, PT_WS_CLOSE_INVALID_DATA, PT_WS_END_PROTOCOL);
        return false;
    }
    ws->st.bytes_in += n;
    ws->data_io += n;
    if (live(ws) && ws->cbs->on_msg_data != NULL)
        return cb_ret(ws, ws->cbs->on_msg_data(ws->ud, d, n));
    return true;
}

static void frame_end(pt_ws_t *ws)
{
    ws->in_frame = false;
    if (ws->f_op >= 0x8) {
        control_done(ws);
        return;
    }
    if (!ws->f_fin)
        return;
    if (ws->m_op == PT_WS_OP_TEXT && ws->utf8 != 0) {
        fail(ws, PT_WS_CLOSE_INVALID_DATA, PT_WS_END_PROTOCOL);
        return;
    }
    ws->st.msgs_in++;
    if (live(ws) && ws->cbs->on_msg_end != NULL)
        cb_ret(ws, ws->cbs->on_msg_end(ws->ud));
}

/*
 * More input into the window (after what is unparsed, moved to the front when
 * the tail is short). Returns false when nothing came: no input yet, the end
 * of the stream (in_eof), paused, or freed from a callback.
 */
static bool fill(pt_ws_t *ws)
{
    if (ws->in_eof || ws->paused || ws->free_pending || ws->drained)
        return false;
    if (ws->in_pos == ws->in_end) {
        ws->in_pos = ws->in_end = 0;
    } else if (sizeof(ws->in) - ws->in_end < 2 * MAX_HEADER) {
        /* only a partial header can be left over: payload is consumed as it arrives */
        memmove(ws->in, ws->in + ws->in_pos, ws->in_end - ws->in_pos);
        ws->in_end -= ws->in_pos;
        ws->in_pos = 0;
    }
    bool eof = false;
    size_t want = sizeof(ws->in) - ws->in_end;
    size_t n = ws->cbs->read(ws->ud, ws->in + ws->in_end, want, &eof);
    if (eof && (n == 0 || ws->o.short_read_drains))
        ws->in_eof = true;
    else if (n < want && ws->o.short_read_drains)
        ws->drained = true;
    ws->raw_in += n;
    ws->in_end += n;
    return n != 0;
}

/* The window holds no complete header or no payload byte: read. Returns
 * false when the loop must stop (nothing came; at the end of the stream the
 * session ended with EOF). */
static bool more_input(pt_ws_t *ws)
{
    if (fill(ws))
        return true;
    if (ws->in_eof)
        end_session(ws, PT_WS_END_EOF);
    return false;
}

/*
 * Verbatim relay (cbs->on_raw): the complete data frames at the front of the
 * window that pass every check of frame_start/frame_data are handed over as
 * one run of the bytes they came in. The first frame that is incomplete, a
 * control frame, or refused by a check stops the run and is left untouched
 * for the general path, which checks it again and refuses it there with the
 * same code. Server role: each payload is re-masked in place with a fresh
 * key (RFC 6455 §5.3: a client's keys come from its own CSPRNG, never from
 * the peer), a text payload unmasked first for its UTF-8 check. Returns
 * false when the loop must stop (ended, paused).
 */
static size_t raw_frames(pt_ws_t *ws, uint8_t *buf, size_t len, pt_ws_raw_t *info)
{
    const bool server = ws->o.role == PT_WS_SERVER;
    size_t pos = 0;
    *info = (pt_ws_raw_t){.masked = server, .starts_cont = ws->in_msg};
    for (;;) {
        frame_hdr_t h;
        size_t avail = len - pos;
        int hl = avail < 2 ? 0 : parse_header(buf + pos, avail, &h);
        if (hl <= 0 || h.op >= 0x8 || h.len > avail - (size_t)hl || h.masked != server ||
            h.rsv != 0)
            break;
        bool cont = h.op == PT_WS_OP_CONT;
        if (cont ? !ws->in_msg : (ws->in_msg || (h.op != PT_WS_OP_TEXT && h.op != PT_WS_OP_BINARY)))
            break;
        uint64_t m_len = cont ? ws->m_len : 0;
        if (ws->o.max_message != 0 && h.len > ws->o.max_message - m_len)
            break;
        uint8_t m_op = cont ? ws->m_op : h.op;
        uint8_t *pl = buf + pos + (size_t)hl;
        size_t n = (size_t)h.len;
        if (m_op == PT_WS_OP_TEXT) {
            uint32_t u = cont ? ws->utf8 : 0;
            if (server)
                mask_copy(pl, pl, n, h.key, 0);
            if (!pt_ws_utf8_check(&u, pl, n) || (h.fin && u != 0)) {
                if (server)
                    mask_copy(pl, pl, n, h.key, 0); /* as it came: the general path refuses it */
                break;
            }
            ws->utf8 = u;
            if (server) {
                new_key(ws, pl - 4);
                mask_copy(pl, pl, n, pl - 4, 0);
            }
        } else if (server) {
            uint8_t k[4];
            new_key(ws, pl - 4);
            for (size_t i = 0; i < 4; i++)
                k[i] = (uint8_t)(h.key[i] ^ (pl - 4)[i]);
            mask_copy(pl, pl, n, k, 0); /* unmasked and re-masked in one pass */
        }
        ws->st.frames_in++;
        ws->m_op = m_op;
        ws->m_len = m_len + n;
        ws->in_msg = !h.fin;
        if (h.fin) {
            ws->st.msgs_in++;
            info->msgs++;
        }
        ws->st.bytes_in += n;
        ws->data_io += n;
        info->frames++;
        info->bytes += n;
        pos += (size_t)hl + n;
    }
    info->ends_open = ws->in_msg;
    return pos;
}

/* The run at the front of the window. Returns false when the loop must stop
 * (ended, paused). */
static bool raw_run(pt_ws_t *ws)
{
    pt_ws_raw_t info;
    uint8_t *start = ws->in + ws->in_pos;
    size_t n = raw_frames(ws, start, ws->in_end - ws->in_pos, &info);
    if (n == 0)
        return true;
    ws->in_pos += n;
    if (live(ws))
        cb_ret(ws, ws->cbs->on_raw(ws->ud, start, n, &info));
    return !ws->ended && !ws->paused;
}

size_t pt_ws_relay(pt_ws_t *ws, pt_ws_t *to, uint8_t *buf, size_t len)
{
    /* `ws` holds nothing (no partial frame or header, not paused or
     * closing), and `to` can take a verbatim run (pt_ws_send_raw's terms) */
    if (ws->cbs->on_raw == NULL || ws->ended || ws->paused || ws->close_recv || ws->in_frame ||
        ws->in_pos != ws->in_end || to->ended || to->close_sent || to->out_frame ||
        to->o.role == ws->o.role || ws->in_msg != to->out_msg)
        return 0;
    pt_ws_raw_t info;
    size_t n = raw_frames(ws, buf, len, &info);
    if (n == 0)
        return 0;
    ws->raw_in += n;
    to->out_msg = info.ends_open;
    to->st.frames_out += info.frames;
    to->st.msgs_out += info.msgs;
    to->st.bytes_out += info.bytes;
    to->data_io += info.bytes;
    return n;
}

size_t pt_ws_feed(pt_ws_t *ws, const uint8_t *data, size_t len)
{
    if (ws->o.role != PT_WS_CLIENT || ws->cbs->on_raw == NULL || ws->ended || ws->paused ||
        ws->close_recv || ws->in_frame || ws->in_pos != ws->in_end)
        return 0;
    enter(ws);
    pt_ws_raw_t info;
    /* client role: raw_frames only reads (nothing to re-mask) */
    size_t n = raw_frames(ws, (uint8_t *)(uintptr_t)data, len, &info);
    ws->raw_in += n;
    if (n != 0 && live(ws))
        cb_ret(ws, ws->cbs->on_raw(ws->ud, data, n, &info));
    leave(ws);
    return n;
}

void pt_ws_on_readable(pt_ws_t *ws)
{
    if (ws->ended)
        return;
    enter(ws);
    ws->paused = false;
    ws->drained = false;
    while (!ws->ended && !ws->paused && !ws->close_recv) {
        size_t avail = ws->in_end - ws->in_pos;
        if (!ws->in_frame) {
            if (ws->cbs->on_raw != NULL && avail >= 2) {
                if (!raw_run(ws))
                    break;
                avail = ws->in_end - ws->in_pos;
            }
            if (avail == 0) {
                if (!more_input(ws))
                    break;
                continue;
            }
            frame_hdr_t h = {0};
            int hl = parse_header(ws->in + ws->in_pos, avail, &h);
            if (hl < 0) { /* bad lengths, long or fragmented control frames */
                fail(ws, PT_WS_CLOSE_PROTOCOL, PT_WS_END_PROTOCOL);
                break;
            }
            if (hl == 0) {
                if (!more_input(ws))
                    break;
                continue;
            }
            ws->in_pos += (size_t)hl;
            avail -= (size_t)hl;
            if (!frame_start(ws, &h))
                break;
        }
        uint64_t left = ws->f_len - ws->f_off;
        if (left != 0) {
            if (avail == 0) {
                if (!more_input(ws))
                    break;
                continue;
            }
            size_t n = left < avail ? (size_t)left : avail;
            uint8_t *d = ws->in + ws->in_pos;
            if (ws->f_masked)
                mask_copy(d, d, n, ws->f_key, ws->f_off);
            ws->in_pos += n;
            if (!frame_data(ws, d, n))
                break;
        }
        if (ws->f_off == ws->f_len)
            frame_end(ws);
    }
    if (ws->close_recv && !ws->ended && ws->in_eof && !ws->close_sent)
        end_session(ws, PT_WS_END_EOF);
    leave(ws);
}

/* ---- timers ------------------------------------------------------------------------ */

static uint64_t sample_period(const pt_ws_t *ws)
{
    uint64_t p = 0;
    if (ws->o.ping_interval_ms != 0)
        p = ws->o.ping_interval_ms;
    if (ws->o.idle_ms != 0 && (p == 0 || ws->o.idle_ms < p))
        p = ws->o.idle_ms;
    p /= 4;
    return p < 10 ? 10 : p;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_ws_t *ws = arg;
    if (ws->ended)
        return;
    enter(ws);
    uint64_t now = pt_now_ms();
    if (ws->closing_timer) {
        end_session(ws, PT_WS_END_TIMEOUT);
        leave(ws);
        return;
    }
    if (ws->raw_in != ws->seen_in) {
        ws->seen_in = ws->raw_in;
        ws->last_in_ms = now;
    }
    if (ws->data_io != ws->seen_io) {
        ws->seen_io = ws->data_io;
        ws->last_io_ms = now;
    }
    if (ws->o.idle_ms != 0 && now - ws->last_io_ms >= ws->o.idle_ms) {
        fail(ws, PT_WS_CLOSE_GOING_AWAY, PT_WS_END_IDLE);
        leave(ws);
        return;
    }
    if (ws->o.ping_interval_ms != 0 && now - ws->last_in_ms >= ws->o.ping_interval_ms &&
        now - ws->last_ping_ms >= ws->o.ping_interval_ms && !ws->close_sent) {
        if (RAND_bytes(ws->ka, sizeof(ws->ka)) != 1)
            memcpy(ws->ka, &now, sizeof(ws->ka));
        ws->ka_out = true;
        ws->last_ping_ms = now;
        control_out(ws, PT_WS_OP_PING, ws->ka, sizeof(ws->ka));
    }
    if (!ws->ended)
        arm(ws, sample_period(ws));
    leave(ws);
}

/* ---- life ------------------------------------------------------------------------------- */

pt_ws_t *pt_ws_new(struct event_base *base, const pt_ws_opts_t *opts, const pt_ws_cbs_t *cbs,
                   void *ud)
{
    pt_ws_t *ws = pt_xcalloc(1, sizeof(*ws));
    ws->o = *opts;
    ws->cbs = cbs;
    ws->ud = ud;
    uint64_t now = pt_now_ms();
    ws->last_in_ms = ws->last_io_ms = ws->last_ping_ms = now;
    if (base != NULL) {
        ws->timer = evtimer_new(base, on_timer, ws);
        if (ws->timer == NULL) {
            fputs("portico: out of memory\n", stderr);
            abort();
        }
        if (ws->o.ping_interval_ms != 0 || ws->o.idle_ms != 0)
            arm(ws, sample_period(ws));
    }
    return ws;
}

void pt_ws_free(pt_ws_t *ws)
{
    if (ws == NULL)
        return;
    if (ws->busy != 0) {
        ws->free_pending = true;
        ws->ended = true; /* no callback after this */
        if (ws->timer != NULL)
            evtimer_del(ws->timer);
        return;
    }
    really_free(ws);
}

bool pt_ws_sending_frame(const pt_ws_t *ws) { return ws->out_frame; }
bool pt_ws_ended(const pt_ws_t *ws) { return ws->ended; }
const pt_ws_stats_t *pt_ws_stats(const pt_ws_t *ws) { return &ws->st; }

/* ---- the handshake and the request (ws.h, "over a request") ---------------------- */

/* A local 4xx with the JSON error body; `version_hint` adds Sec-WebSocket-Version (426). */
static int refuse(pt_req_t *req, int st, int http, const char *why, bool version_hint)
{
    if (!version_hint) {
        pt__resp_fail(req, st, why);
        return st;
    }
    if (req->fail_status == 0) {
        req->fail_status = st;
        req->fail_reason = why;
    }
    pt_str_t body = pt__error_body(req, st, why);
    req->resp_status = http;
    pt_headers_init(&req->resp_headers, req->arena);
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("sec-websocket-version"), PT_STR("13"));
    req->resp_content_length = (int64_t)body.len;
    pt__resp_head(req);
    pt__resp_body(req, body.base, body.len, true);
    return st;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* RFC 6455 §4.1: a base64-encoded 16-byte value is 22 characters and "==". */
static bool key_ok(pt_str_t k)
{
    if (k.len != 24 || k.base[22] != '=' || k.base[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(k.base[i]))
            return false;
    return true;
}

static bool origin_allowed(const pt_conf_strlist_t *origins, pt_str_t origin)
{
    if (origins == NULL || origins->cnt == 0 || origin.len == 0)
        return true;
    for (size_t i = 0; i < origins->cnt; i++) {
        pt_str_t o = pt_str_c(origins->v[i]);
        if (pt_str_eq(o, PT_STR("*")) || pt_str_ieq(o, origin))
            return true;
    }
    return false;
}

int pt_ws_hs_check(pt_req_t *req, const pt_conf_strlist_t *origins, pt_ws_hs_t *hs)
{
    memset(hs, 0, sizeof(*hs));
    const pt_headers_t *h = &req->headers;
    if (req->version != 20) {
        if (!pt_str_eq(req->method, PT_STR("GET")))
            return refuse(req, PT_ERR_INVALID, 400, "websocket handshake must be a GET", false);
        if (req->expect_body)
            return refuse(req, PT_ERR_INVALID, 400, "websocket handshake with a body", false);
    }
    pt_str_t ver = pt_str_trim_ows(pt_headers_get(h, PT_STR("sec-websocket-version")));
    if (pt_headers_count(h, PT_STR("sec-websocket-version")) != 1 || !pt_str_eq(ver, PT_STR("13")))
        return refuse(req, PT_ERR_INVALID, 426,
                      "websocket handshake needs Sec-WebSocket-Version: 13", true);
    if (req->version != 20) {
        pt_str_t key = pt_str_trim_ows(pt_headers_get(h, PT_STR("sec-websocket-key")));
        if (pt_headers_count(h, PT_STR("sec-websocket-key")) != 1 || !key_ok(key))
            return refuse(req, PT_ERR_INVALID, 400,
                          "websocket handshake needs one Sec-WebSocket-Key of 16 base64 bytes",
                          false);
        hs->key = key;
    }
    if (pt_headers_count(h, PT_STR("origin")) > 1)
        return refuse(req, PT_ERR_INVALID, 400, "more than one Origin header", false);
    hs->origin = pt_str_trim_ows(pt_headers_get(h, PT_STR("origin")));
    if (!origin_allowed(origins, hs->origin))
        return refuse(req, PT_ERR_FORBIDDEN, 403, "websocket Origin not allowed on this route",
                      false);
    size_t np = pt_headers_count(h, PT_STR("sec-websocket-protocol"));
    if (np == 1) {
        hs->protocols = pt_headers_get(h, PT_STR("sec-websocket-protocol"));
    } else if (np > 1) {
        size_t len = 0;
        for (size_t i = 0; i < h->cnt; i++)
            if (pt_str_eq(h->v[i].name, PT_STR("sec-websocket-protocol")))
                len += h->v[i].value.len + 2;
        char *buf = pt_arena_alloc(req->arena, len + 1);
        if (buf == NULL)
            return refuse(req, PT_ERR_HEADERS_TOO_LARGE, 431, "request arena full", false);
        size_t off = 0;
        for (size_t i = 0; i < h->cnt; i++) {
            if (!pt_str_eq(h->v[i].name, PT_STR("sec-websocket-protocol")))
                continue;
            if (off != 0) {
                buf[off++] = ',';
                buf[off++] = ' ';
            }
            memcpy(buf + off, h->v[i].value.base, h->v[i].value.len);
            off += h->v[i].value.len;
        }
        hs->protocols = (pt_str_t){buf, off};
    }
    return 0;
}

bool pt_ws_hs_offers(const pt_ws_hs_t *hs, pt_str_t proto)
{
    pt_str_t l = hs->protocols;
    size_t start = 0;
    for (size_t i = 0; i <= l.len; i++) {
        if (i < l.len && l.base[i] != ',')
            continue;
        pt_str_t tok = pt_str_trim_ows((pt_str_t){l.base + start, i - start});
        start = i + 1;
        if (tok.len != 0 && pt_str_eq(tok, proto))
            return true;
    }
    return false;
}

int pt_ws_hs_accept(pt_req_t *req, const pt_ws_hs_t *hs, pt_str_t subprotocol,
                    uint64_t tunnel_idle_ms)
{
    if (subprotocol.len != 0 && !pt_ws_hs_offers(hs, subprotocol))
        return PT_ERR_INVALID;
    pt_headers_t *rh = &req->resp_headers;
    pt_headers_remove(rh, PT_STR("sec-websocket-accept"));
    pt_headers_remove(rh, PT_STR("sec-websocket-protocol"));
    pt_headers_remove(rh, PT_STR("sec-websocket-extensions"));
    if (req->version != 20) {
        char *acc = pt_arena_alloc(req->arena, 29);
        if (acc == NULL)
            return PT_ERR_INVALID;
        pt__tunnel_ws_accept(hs->key, acc);
        if (pt_headers_add_nocopy(rh, PT_STR("upgrade"), PT_STR("websocket")) != 0 ||
            pt_headers_add_nocopy(rh, PT_STR("sec-websocket-accept"), (pt_str_t){acc, 28}) != 0)
            return PT_ERR_INVALID;
    }
    if (subprotocol.len != 0 &&
        pt_headers_add_nocopy(rh, PT_STR("sec-websocket-protocol"), subprotocol) != 0)
        return PT_ERR_INVALID;
    return pt__req_tunnel_open(req, tunnel_idle_ms);
}

static void ws_req_dispose(void *data)
{
    pt_ws_free(data);
}

int pt_ws_req_attach(pt_req_t *req, pt_ws_t *ws)
{
    if (pt_arena_defer(req->arena, ws_req_dispose, ws) != 0) {
        pt_ws_free(ws);
        return PT_ERR_LIMIT;
    }
    req->ws = ws;
    pt_observe_ws_open(req->worker);
    return 0;
}
