/*
 * ws.h -- a WebSocket endpoint (RFC 6455 framing) that runs over a byte
 * stream, in either role:
 *
 *   PT_WS_SERVER  Portico faces a WebSocket client: incoming frames must be
 *                 masked (else close 1002), outgoing frames are unmasked.
 *   PT_WS_CLIENT  Portico faces a WebSocket server (a ws:// upstream):
 *                 incoming frames must be unmasked, outgoing ones are masked.
 *
 * The endpoint does no I/O of its own. Its owner moves the bytes:
 *
 *   owner                                 pt_ws_t (ws.c, its own frame codec)
 *   bytes from the peer arrive ---------> pt_ws_on_readable(): pulls them with
 *                                         cbs->read() until it returns 0, a
 *                                         callback asks to pause, or the session ends
 *                  <--------------------- on_msg_start / on_frame_start /
 *                                         on_msg_data / on_msg_end / on_control /
 *                                         on_close / on_end
 *   pt_ws_send_*() ---------------------> framed bytes through cbs->write()
 *   the sink drained (owner's event) ---> pt_ws_on_readable() again (resume)
 *
 * What the endpoint checks on every incoming frame, closing with the RFC
 * 6455 §7.4.1 code and calling on_end() (never a callback after it):
 * masking by role (1002), reserved bits and opcodes (1002), control frames
 * of at most 125 bytes and never fragmented (1002), continuation frames only
 * inside a fragmented message and a new message only after the last one
 * ended (1002), text payloads valid UTF-8 across frame boundaries (1007,
 * checked as bytes arrive: a message is never buffered for the check), the
 * message size limit `max_message` counted while receiving (1009, before the
 * offending bytes are delivered), close payloads (1 byte, invalid codes,
 * invalid UTF-8 reason: 1002). A text message's last payload bytes are
 * delivered only once they end its last UTF-8 sequence, so a relay never
 * completes an invalid text message on the other leg.
 *
 * Streaming: message payloads are delivered in the chunks the parser sees
 * (at most PT_WS_CHUNK bytes each, already unmasked); nothing is buffered
 * beyond the parser's 4 KiB input window. A relay that wants to keep the
 * peer's frame boundaries uses on_frame_start + pt_ws_send_frame_begin();
 * one that thinks in messages uses on_msg_start/data/end and
 * pt_ws_send_msg() or the streamed pt_ws_send_frame_*() calls. A relay
 * between two legs of opposite roles also sets on_raw: a data frame that
 * arrived whole in one read and passed every check above (a text frame's
 * UTF-8 on its unmasked view) is forwarded as the bytes it came in
 * (pt_ws_send_raw), re-masked with a fresh key in the server role; the
 * streamed callbacks carry only what does not fit that path.
 *
 * Backpressure: cbs->write() must accept every byte (copy it into the sink).
 * A data callback returns PT_WS_PAUSE when its sink is above its high-water
 * mark; the endpoint then stops pulling input (the bytes already inside the
 * parser stay there) until the owner calls pt_ws_on_readable() again. Memory
 * per endpoint is bounded: the parser window plus three control slots (one
 * pong, one ping, one close) held while an outgoing data frame is half sent.
 *
 * Time: with a non-NULL event base the endpoint runs its own timers --
 * keepalive pings after `ping_interval_ms` without input, the idle timeout
 * (`idle_ms` without a data payload byte either way -- pings and pongs do
 * not count: close 1001), and the closing
 * timeout (`close_timeout_ms` after our close frame without the peer's:
 * on_end with PT_WS_END_TIMEOUT). A pong answering our own keepalive ping
 * is consumed here, never reported.
 *
 * Threads: an endpoint belongs to one worker; every call and callback runs
 * on that worker's thread. Callbacks may call pt_ws_send_*() and
 * pt_ws_close() on the same or another endpoint, and pt_ws_free() on it:
 * freeing from inside a callback is deferred until the outermost pt_ws_*
 * call returns, and no callback runs after it.
 */
#ifndef PT_HTTP_WS_H
#define PT_HTTP_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/request.h"
#include "portico/conf.h"
#include "portico/status.h"

struct event_base;

typedef struct pt_ws pt_ws_t;
struct pt_ws_raw;

/** The role of Portico on this connection (see the top comment). */
typedef enum pt_ws_role {
    PT_WS_SERVER = 0,
    PT_WS_CLIENT = 1,
} pt_ws_role_t;

/** Frame opcodes (RFC 6455 §5.2). */
typedef enum pt_ws_opcode {
    PT_WS_OP_CONT = 0x0,
    PT_WS_OP_TEXT = 0x1,
    PT_WS_OP_BINARY = 0x2,
    PT_WS_OP_CLOSE = 0x8,
    PT_WS_OP_PING = 0x9,
    PT_WS_OP_PONG = 0xa,
} pt_ws_opcode_t;

/** Close codes Portico sends or relays (RFC 6455 §7.4.1). */
enum {
    PT_WS_CLOSE_NORMAL = 1000,
    PT_WS_CLOSE_GOING_AWAY = 1001,
    PT_WS_CLOSE_PROTOCOL = 1002,
    PT_WS_CLOSE_UNSUPPORTED = 1003,
    PT_WS_CLOSE_NO_STATUS = 1005,   /* never on the wire: a close frame without a code */
    PT_WS_CLOSE_ABNORMAL = 1006,    /* never on the wire: the connection ended without a close */
    PT_WS_CLOSE_INVALID_DATA = 1007,
    PT_WS_CLOSE_POLICY = 1008,
    PT_WS_CLOSE_TOO_BIG = 1009,
    PT_WS_CLOSE_INTERNAL = 1011,
};

/** Return values of the data callbacks. */
enum {
    PT_WS_GO = 0,      /* keep reading */
    PT_WS_PAUSE = 1,   /* the sink is full: stop pulling input until pt_ws_on_readable() */
};

/** Largest payload chunk handed to on_msg_data (the parser's input window). */
#define PT_WS_CHUNK 4096u

/** Largest control frame payload (RFC 6455 §5.5). */
#define PT_WS_MAX_CONTROL 125u

/** Why a session ended (on_end). */
typedef enum pt_ws_end {
    PT_WS_END_CLOSED = 0,    /* close frames went both ways (the clean end) */
    PT_WS_END_PROTOCOL,      /* the peer broke the protocol; we sent the close code in stats */
    PT_WS_END_TOO_BIG,       /* a message went over max_message; we sent 1009 */
    PT_WS_END_IDLE,          /* nothing moved for idle_ms; we sent 1001 */
    PT_WS_END_TIMEOUT,       /* our close frame got no answer within close_timeout_ms */
    PT_WS_END_EOF,           /* the byte stream ended without a close handshake (1006) */
} pt_ws_end_t;

/** Per-endpoint counters (for the access log and metrics); read them any time. */
typedef struct pt_ws_stats {
    uint64_t msgs_in, msgs_out;       /* complete data messages received / sent */
    uint64_t bytes_in, bytes_out;     /* data payload bytes received / sent */
    uint64_t frames_in, frames_out;   /* all frames, control frames included */
    uint64_t pings_in, pongs_in;      /* control frames received (keepalive pongs included) */
    uint16_t close_in;                /* the peer's close code (0: none received; 1005: no code) */
    uint16_t close_out;               /* the code we sent (0: none sent) */
} pt_ws_stats_t;

/** Settings; copied by pt_ws_new(). Zero means "off" for every time and limit. */
typedef struct pt_ws_opts {
    pt_ws_role_t role;
    uint64_t max_message;        /* bytes per data message; over it: close 1009 (0: no limit) */
    uint64_t ping_interval_ms;   /* keepalive ping after this long without input (0: none) */
    uint64_t idle_ms;            /* close 1001 after this long without data payload either way
                                    (control frames do not count; 0: none) */
    uint64_t close_timeout_ms;   /* wait for the peer's close after ours (0: 5 s) */
    /**
     * true: the endpoint answers pings with pongs and echoes the peer's close
     * itself (a terminating endpoint, e.g. the WebSocket <-> gRPC bridge);
     * on_control / on_close still report them. false: the owner decides
     * (a relay forwards them to the other side and relays the answers back).
     */
    bool answer_control;
    /**
     * true: cbs->read returning fewer bytes than asked means nothing more is
     * available now (the owner calls pt_ws_on_readable() when more arrives or
     * the stream ends), so the endpoint does not ask again in vain; such a
     * read may also report the end of the stream with its last bytes (*eof
     * with a non-zero return). false: the endpoint reads until a read
     * returns 0.
     */
    bool short_read_drains;
} pt_ws_opts_t;

typedef struct pt_ws_cbs {
    /**
     * Input source: copy up to `max` bytes from the peer into `buf` and return
     * how many; 0 with *eof = false when nothing is available yet; 0 with
     * *eof = true when the peer's byte stream ended. Required.
     */
    size_t (*read)(void *ud, uint8_t *buf, size_t max, bool *eof);
    /** Output sink: take all `len` bytes (copy them). Required. */
    void (*write)(void *ud, const uint8_t *data, size_t len);
    /** A data message begins: `op` is PT_WS_OP_TEXT or PT_WS_OP_BINARY. Optional. */
    int (*on_msg_start)(void *ud, pt_ws_opcode_t op);
    /**
     * A frame of the current message begins (`op`: the message's first frame
     * carries TEXT/BINARY, later ones CONT), announcing its payload length and
     * whether it is the message's last frame. For relays keeping frame
     * boundaries. Optional.
     */
    int (*on_frame_start)(void *ud, pt_ws_opcode_t op, uint64_t payload_len, bool fin);
    /** Payload bytes of the current message, unmasked and checked. Optional. */
    int (*on_msg_data)(void *ud, const uint8_t *data, size_t len);
    /** The current message is complete (text: UTF-8 checked to its end). Optional. */
    int (*on_msg_end)(void *ud);
    /** A ping or pong arrived (payload <= 125 bytes, valid during the call). Optional. */
    int (*on_control)(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len);
    /**
     * The peer's close frame: `code` (1005 when it carried none) and its reason
     * (UTF-8, <= 123 bytes, valid during the call). With answer_control the
     * close was already echoed. No data callbacks follow. Optional.
     */
    void (*on_close)(void *ud, uint16_t code, const char *reason, size_t reason_len);
    /**
     * The session is over (see pt_ws_end_t): no callback follows and
     * pt_ws_send_*() do nothing. The owner ends the byte stream (a server
     * closes the connection; a client waits briefly for the server's close or
     * closes itself) and frees the endpoint once it is outside pt_ws_* calls.
     * Called exactly once. Required.
     */
    void (*on_end)(void *ud, pt_ws_end_t why);
    /**
     * Verbatim relay (optional; see pt_ws_raw_t): when set, complete data
     * frames that pass every check are handed over as the bytes that
     * arrived -- header and payload, several frames in one call when one
     * read carried them -- instead of on_msg_start / on_frame_start /
     * on_msg_data / on_msg_end. In the server role each frame's masking key
     * was replaced by a fresh one from the CSPRNG (payload re-masked in
     * place), so the bytes are ready for a client-role leg; in the client
     * role they are unmasked, ready for a server-role leg. Frames that do
     * not fit this path (split across reads, control frames, anything the
     * checks refuse) still go through the other callbacks, in order. Pass
     * the bytes to pt_ws_send_raw() of the other leg (or copy them).
     */
    int (*on_raw)(void *ud, const uint8_t *frames, size_t len, const struct pt_ws_raw *info);
} pt_ws_cbs_t;

/** What a run of frames handed to on_raw carries (for pt_ws_send_raw and counters). */
typedef struct pt_ws_raw {
    uint32_t frames;      /* data frames in the run */
    uint32_t msgs;        /* messages the run completes (frames with FIN) */
    uint64_t bytes;       /* payload bytes */
    bool masked;          /* the frames are masked (they came from a client) */
    bool starts_cont;     /* the first frame continues an open message (CONT) */
    bool ends_open;       /* the last frame leaves its message open (no FIN) */
} pt_ws_raw_t;

/**
 * Creates an endpoint. `base` drives its timers (NULL: no timers; keepalive,
 * idle and closing timeout are then off). `cbs` must outlive the endpoint;
 * `ud` is passed to every callback. Aborts on OOM; never NULL.
 */
pt_ws_t *pt_ws_new(struct event_base *base, const pt_ws_opts_t *opts, const pt_ws_cbs_t *cbs,
                   void *ud);

/** Frees the endpoint and its timers; no callback runs. NULL is accepted. */
void pt_ws_free(pt_ws_t *ws);

/**
 * Pulls and processes input (cbs->read) until no more is available, a
 * callback returned PT_WS_PAUSE, or the session ended. Call it when the peer's
 * bytes arrive and when a sink that caused a pause drained. Callbacks run
 * synchronously from here.
 */
void pt_ws_on_readable(pt_ws_t *ws);

/**
 * Verbatim relay without the copy into the parser's window (client role,
 * on_raw set): when nothing is pending inside the endpoint (no partial frame
 * or header, not paused), the whole data frames at the front of `data` that
 * pass every check go to on_raw straight from `data`. Returns how many bytes
 * were taken (0 when the conditions are not met); the owner hands the rest
 * through cbs->read as usual and calls pt_ws_on_readable(). `data` is only
 * read.
 */
size_t pt_ws_feed(pt_ws_t *ws, const uint8_t *data, size_t len);

/**
 * Verbatim relay without callbacks, for an owner that reads and writes the
 * sockets itself (handlers/ws_proxy.c's pump): `ws` (on_raw set) and `to` are
 * the two legs of a relay (opposite roles). The whole data frames at the
 * front of `buf` that pass every check on_raw's do are taken -- in the server
 * role re-masked in place with fresh keys --, counted as received by `ws` and
 * as sent by `to` (as on_raw + pt_ws_send_raw would), and their length is
 * returned: the owner writes buf[0, n) to `to`'s peer itself, and hands the
 * rest through ws's cbs->read as usual. Returns 0 (nothing taken) when `ws`
 * holds input or a state the general path must see first (a partial frame,
 * paused, the peer's close received, ended) or `to` cannot take a verbatim
 * run (a streamed frame half sent, our close sent, out of sequence, ended).
 */
size_t pt_ws_relay(pt_ws_t *ws, pt_ws_t *to, uint8_t *buf, size_t len);

/**
 * Sends a whole data message (`op` TEXT or BINARY) as one frame. Returns 0,
 * PT_ERR_INVALID (bad opcode, a streamed message is in progress, or our close
 * was sent). The bytes are copied into the sink at once.
 */
int pt_ws_send_msg(pt_ws_t *ws, pt_ws_opcode_t op, const void *data, size_t len);

/**
 * Streamed sending: starts one frame of `payload_len` bytes (`op`: TEXT or
 * BINARY for a message's first frame, CONT for the next ones; `fin`: last
 * frame of the message), whose payload then follows through
 * pt_ws_send_frame_data() (exactly payload_len bytes in total, in as many
 * calls as wanted). Control frames requested meanwhile (pongs, keepalive
 * pings, close) are held and sent when the frame is complete. Returns 0 or
 * PT_ERR_INVALID (out of sequence, or our close was sent).
 */
int pt_ws_send_frame_begin(pt_ws_t *ws, pt_ws_opcode_t op, uint64_t payload_len, bool fin);
int pt_ws_send_frame_data(pt_ws_t *ws, const void *data, size_t len);

/**
 * Verbatim relay: writes a run of complete data frames handed to another
 * endpoint's on_raw (`info` as given there) as they are. The frames must be
 * masked exactly when this endpoint is in the client role, and must follow
 * on what this endpoint sent (a CONT first frame only inside an open
 * message, and not while a streamed frame is half sent). Counts them as
 * sent. Returns 0 or PT_ERR_INVALID (nothing sent: out of sequence, wrong
 * masking, or our close was sent).
 */
int pt_ws_send_raw(pt_ws_t *ws, const void *frames, size_t len, const pt_ws_raw_t *info);

/**
 * Sends a ping or pong (`len` <= 125; the payload is copied). While a data
 * frame is half sent it is held in its slot (a newer one replaces an older
 * one of the same kind). Returns 0 or PT_ERR_INVALID.
 */
int pt_ws_send_control(pt_ws_t *ws, pt_ws_opcode_t op, const void *data, size_t len);

/**
 * Starts (or answers) the close handshake: sends a close frame with `code`
 * (0: no code; else 1000-4999 and not 1005/1006/1015) and `reason` (UTF-8,
 * truncated to 123 bytes), stops sending data, and arms the closing timeout
 * unless the peer's close was already received (then the session ends at
 * once: on_end(PT_WS_END_CLOSED)). Input is still read until the peer's
 * close arrives. Idempotent: a second call does nothing. Returns 0 or
 * PT_ERR_INVALID (bad code).
 */
int pt_ws_close(pt_ws_t *ws, uint16_t code, const char *reason, size_t reason_len);

/** Whether a streamed outgoing frame is half sent (see pt_ws_send_frame_begin). */
bool pt_ws_sending_frame(const pt_ws_t *ws);

/** Whether on_end was called. */
bool pt_ws_ended(const pt_ws_t *ws);

/** The endpoint's counters. */
const pt_ws_stats_t *pt_ws_stats(const pt_ws_t *ws);

/**
 * Whether `code` may be sent in a close frame (RFC 6455 §7.4: 1000-1003,
 * 1007-1011, 3000-4999) -- also how received codes are checked.
 */
bool pt_ws_close_code_valid(uint16_t code);

/**
 * Incremental UTF-8 check (RFC 3629, no overlongs, no surrogates): feed
 * `len` bytes with *state starting at 0. Returns false at the first invalid
 * byte; a message is valid when every call returned true and *state is 0 at
 * its end.
 */
bool pt_ws_utf8_check(uint32_t *state, const uint8_t *p, size_t len);

/** A static name for an end reason (logs): "closed", "protocol_error", ... */
const char *pt_ws_end_name(pt_ws_end_t why);

/* ---- over a request: the handshake and the client side -------------------------
 *
 * A handler terminating or relaying a WebSocket (its definition says
 * `.tunnels = true`; req->upgrade is "websocket") does:
 *
 *   pt_ws_hs_check(req, origins, &hs)      refuses bad handshakes itself (400,
 *                                          403 Origin, 426 + Sec-WebSocket-Version)
 *   pt_ws_hs_accept(req, &hs, proto, idle) 101 + Sec-WebSocket-Accept (HTTP/1.1),
 *                                          200 (RFC 8441); the stream is a tunnel
 *   ws = pt_ws_new(req->worker->base, {role PT_WS_SERVER, ...}, cbs, ctx)
 *   pt_ws_req_attach(req, ws)              the request owns it from here
 *
 * and wires the endpoint to the request: cbs->read = pt__req_body_read(req),
 * cbs->write = pt__resp_body(req, data, len, false), a data callback returns
 * PT_WS_PAUSE when pt__resp_blocked(req) says so (the other direction), the
 * handler's on_body and on_writable call pt_ws_on_readable(ws), and on_end
 * ends the response (pt__resp_body(req, NULL, 0, true)) and lets the handler
 * finish. The log phase then writes the session's access-log line (messages,
 * bytes and close codes from the endpoint's stats) and counts it in the
 * metrics.
 */

/** The client's opening handshake, as checked by pt_ws_hs_check (slices of req's headers). */
typedef struct pt_ws_hs {
    pt_str_t key;         /* Sec-WebSocket-Key (HTTP/1.1); empty over HTTP/2 */
    pt_str_t protocols;   /* the offered Sec-WebSocket-Protocol values joined by ", ", or empty */
    pt_str_t origin;      /* Origin, or empty */
} pt_ws_hs_t;

/**
 * Checks the opening handshake of `req` (RFC 6455 §4.2.1; RFC 8441 §4 over
 * HTTP/2): HTTP/1.1 GET without a body, exactly one Sec-WebSocket-Key that
 * decodes to 16 bytes, Sec-WebSocket-Version 13 (over HTTP/2 too). `origins`:
 * NULL or an empty list lets every Origin in; otherwise a request that
 * carries an Origin must match one entry exactly (scheme://host[:port],
 * case-insensitive; "*" matches all). A request without Origin (not a
 * browser) passes. On failure the client is answered here (400 naming the
 * problem, 403 for the Origin, 426 with `Sec-WebSocket-Version: 13` for
 * another version) and the PT_ERR_* is returned: the handler then just
 * finishes. Returns 0 and fills *hs otherwise.
 */
int pt_ws_hs_check(pt_req_t *req, const pt_conf_strlist_t *origins, pt_ws_hs_t *hs);

/** Whether the client offered subprotocol `proto` (exact token match). */
bool pt_ws_hs_offers(const pt_ws_hs_t *hs, pt_str_t proto);

/**
 * Accepts the handshake: Sec-WebSocket-Accept (HTTP/1.1 only) and, when
 * `subprotocol` is not empty, Sec-WebSocket-Protocol go into req->resp_headers
 * (with whatever the caller put there already), then the tunnel opens
 * (pt__req_tunnel_open with `tunnel_idle_ms`, 0: timeouts.tunnel_idle).
 * Returns 0, PT_ERR_INVALID (subprotocol not offered, or the stream cannot
 * become a tunnel: nothing was sent then).
 */
int pt_ws_hs_accept(pt_req_t *req, const pt_ws_hs_t *hs, pt_str_t subprotocol,
                    uint64_t tunnel_idle_ms);

/**
 * Hands `ws` (the endpoint facing req's client) to the request: it is freed
 * with the request's arena, after the log phase read its stats for the
 * access-log line (`ws` object: messages, bytes each way, close codes) and
 * the WebSocket metrics. Call once, right after pt_ws_new(). Returns 0 or
 * PT_ERR_LIMIT (arena full: `ws` was freed).
 */
int pt_ws_req_attach(pt_req_t *req, pt_ws_t *ws);

#endif /* PT_HTTP_WS_H */
