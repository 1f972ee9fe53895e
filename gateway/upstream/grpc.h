/*
 * grpc.h -- gRPC calls, message by message, over the upstream call primitive
 * (private to the gateway).
 *
 * REST->gRPC transcoding (handlers/grpc.c) speaks in messages: send one,
 * receive one, get a status. This layer turns that into ONE pt_upcall_start()
 * call (upstream/call.h) on a `protocol: grpc` cluster, which rides the
 * worker's nghttp2 client sessions (upstream/h2.c), the same streams native
 * gRPC passthrough uses, with the same endpoint policy, retries and TLS:
 *
 *   request   each message framed (5-byte prefix: flag 0, u32 length) and
 *             pulled by the call's read_body; :path "/pkg.Service/Method",
 *             content-type application/grpc, te: trailers, grpc-timeout,
 *             metadata (`-bin` values base64 on the wire)
 *   response  the framing is followed as bytes arrive: a prefix announcing a
 *             message over `max_message`, or a flag other than 0 (no
 *             compression is offered), ends the call AT THE PREFIX
 *             (RST_STREAM upstream; nothing of the message is buffered);
 *             whole messages are handed over one per pt_grpc_call_recv();
 *             the upstream stream is paused while a whole message waits, so
 *             at most one message (<= max_message) plus one read is held
 *   status    grpc-status / grpc-message (percent-decoded) /
 *             grpc-status-details-bin (base64-decoded) from the trailers, or
 *             from the head of a Trailers-Only answer; a non-200 HTTP status
 *             without grpc-status is mapped (pt_grpc_code_from_http); a
 *             failure of the call itself (connect, reset, deadline) gives
 *             UNAVAILABLE or DEADLINE_EXCEEDED with `local` set.
 *
 * Why not gRPC C core: it was the transcoding back end until the nghttp2
 * client could carry it; a unary call through it cost 2-3x the CPU of the
 * same call passed through natively (docs/architecture.md has the figures),
 * and it read a backend's message whole before checking its size.
 *
 * Threads: everything runs on the worker that started the call. Callbacks
 * are never called from inside a pt_grpc_call_* function: they run from an
 * event of the worker's loop (so a callback may call any of them, cancel
 * included).
 *
 * Flow of a call (one outstanding operation of each kind):
 *
 *   pt_grpc_call_start()   starts the stream (+ first message, + close)
 *   pt_grpc_call_send()    one message (+ close); the next only after on_sent
 *   pt_grpc_call_recv()    asks for one message; on_message answers it
 *   on_done                status, details, trailers; always the last callback
 *   pt_grpc_call_cancel()  stops the call: no callback at all afterwards
 *
 * With `unary` set, the response is delivered in one go when the call ends:
 * on_headers, on_message (the message, or NULL), on_done. No recv needed.
 */
#ifndef PT_GATEWAY_UPSTREAM_GRPC_H
#define PT_GATEWAY_UPSTREAM_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cluster.h"
#include "net/worker.h"
#include "portico/arena.h"
#include "portico/headers.h"

/** gRPC status codes (google.rpc.Code). */
enum {
    PT_GRPC_OK = 0, PT_GRPC_CANCELLED = 1, PT_GRPC_UNKNOWN = 2, PT_GRPC_INVALID_ARGUMENT = 3,
    PT_GRPC_DEADLINE_EXCEEDED = 4, PT_GRPC_NOT_FOUND = 5, PT_GRPC_ALREADY_EXISTS = 6,
    PT_GRPC_PERMISSION_DENIED = 7, PT_GRPC_RESOURCE_EXHAUSTED = 8, PT_GRPC_FAILED_PRECONDITION = 9,
    PT_GRPC_ABORTED = 10, PT_GRPC_OUT_OF_RANGE = 11, PT_GRPC_UNIMPLEMENTED = 12,
    PT_GRPC_INTERNAL = 13, PT_GRPC_UNAVAILABLE = 14, PT_GRPC_DATA_LOSS = 15,
    PT_GRPC_UNAUTHENTICATED = 16,
};

typedef struct pt_grpc_call pt_grpc_call_t;

/** How a call ended (valid during on_done only). */
typedef struct pt_grpc_status {
    int code;                     /**< gRPC status code */
    pt_str_t details;             /**< grpc-message, percent-decoded (may be empty) */
    const pt_header_t *trailers;  /**< trailing metadata (`-bin` values raw bytes) */
    size_t trailer_cnt;
    const uint8_t *bin;           /**< raw grpc-status-details-bin (google.rpc.Status), or NULL */
    size_t bin_len;
    /**
     * 0 when the backend gave the status. Otherwise Portico ended the call and
     * this says why, as a PT_ERR_*: PT_ERR_UNAVAILABLE (no endpoint could be
     * reached), PT_ERR_TIMEOUT (deadline), PT_ERR_UPSTREAM (connection or
     * TLS failure, reset, a bad or oversized message, a stream that ended
     * inside a message); `reason` is static text for logs.
     */
    int local;
    const char *reason;
} pt_grpc_status_t;

typedef struct pt_grpc_call_cbs {
    /** Response initial metadata (keys lowercase; `-bin` values raw bytes). Optional. */
    void (*on_headers)(void *ud, const pt_header_t *md, size_t cnt);
    /**
     * The answer to pt_grpc_call_recv() (or the unary delivery): one message,
     * valid during the callback, or data == NULL when the response stream
     * ended (on_done follows).
     */
    void (*on_message)(void *ud, const uint8_t *data, size_t len);
    /** The message of the last send (or the close) was handed to the transport. Optional. */
    void (*on_sent)(void *ud, bool ok);
    /** The call ended. Exactly once, the last callback; the handle is invalid afterwards. */
    void (*on_done)(void *ud, const pt_grpc_status_t *st);
} pt_grpc_call_cbs_t;

typedef struct pt_grpc_call_req {
    const pt_cluster_t *cluster;  /**< a `protocol: grpc` cluster */
    pt_arena_t *arena;            /**< request headers are built here; must outlive the call */
    pt_str_t method;              /**< "/pkg.Service/Method" (must outlive the call) */
    pt_str_t authority;           /**< :authority when the cluster sets none (may be empty) */
    const pt_header_t *md;        /**< request metadata: lowercase keys; `-bin` values raw bytes */
    size_t md_cnt;
    uint64_t timeout_ms;          /**< deadline from now; 0 = the cluster's */
    bool send_deadline;           /**< also send it upstream as grpc-timeout (else the deadline is
                                       enforced here only: the call is reset when it passes) */
    uint64_t max_message;         /**< largest response message accepted (0 = 4 MiB) */
    const uint8_t *msg;           /**< first message (copied), or NULL */
    size_t msg_len;
    bool close;                   /**< half-close after `msg` (or right away) */
    bool unary;                   /**< deliver the response in one go (see the top comment) */
    pt_str_t hash_key;            /**< for a ring_hash cluster (pt_upcall_hash_key); must outlive the call */
    const struct pt_retry_conf *retry; /**< the route's `retry:` (core/route.h), or NULL */
    const struct pt_trace *trace; /**< the traced request (pt_upcall_req_t.trace), or NULL */
} pt_grpc_call_req_t;

/**
 * Starts a call on worker `w` (its own thread). On success sets *out and
 * returns 0; the callbacks then run on `w` with `ud`. On error returns
 * PT_ERR_UNAVAILABLE (no endpoint can be tried), PT_ERR_LIMIT (arena full) or
 * PT_ERR_INTERNAL (bad arguments), and no callback is ever called. A call
 * must end (on_done) or be cancelled before the worker's upstream machinery
 * is disposed (worker.c destroys its requests first, and they cancel).
 */
int pt_grpc_call_start(pt_worker_t *w, const pt_grpc_call_req_t *r, const pt_grpc_call_cbs_t *cbs,
                       void *ud, pt_grpc_call_t **out);

/**
 * Sends one message (copied), optionally half-closing. Only one send may be
 * outstanding: wait for on_sent. Returns 0 or PT_ERR_INVALID (a send is
 * outstanding, the call was closed, or it already ended).
 */
int pt_grpc_call_send(pt_grpc_call_t *c, const uint8_t *msg, size_t len, bool close);

/** Half-closes without a message (on_sent follows). Returns as pt_grpc_call_send(). */
int pt_grpc_call_close(pt_grpc_call_t *c);

/**
 * Asks for the next response message (on_message answers; on_headers comes
 * first when metadata arrived). One at a time: this is the flow control.
 * Returns 0 or PT_ERR_INVALID (one is outstanding, or the call is unary).
 */
int pt_grpc_call_recv(pt_grpc_call_t *c);

/**
 * Cancels the call (RST_STREAM CANCEL upstream when it still runs) and frees
 * it: no callback is called afterwards. NULL accepted.
 */
void pt_grpc_call_cancel(pt_grpc_call_t *c);

/** Cancels *call if it is running and clears it first (the twin of pt_upcall_stop). */
static inline void pt_grpc_call_stop(pt_grpc_call_t **call)
{
    pt_grpc_call_t *c = *call;
    if (c != NULL) {
        *call = NULL; /* cleared first: nothing may reach a cancelled call */
        pt_grpc_call_cancel(c);
    }
}

/** The endpoint URL of the call's current attempt, for logs (worker lifetime), or NULL. */
const char *pt_grpc_call_endpoint(const pt_grpc_call_t *c);

/* ---- status helpers ------------------------------------------------------------ */

/** google.rpc.Code name ("NOT_FOUND"), "UNKNOWN" for values out of range. */
const char *pt_grpc_code_name(int code);

/** HTTP status for a gRPC code, as grpc-gateway maps them (SECURITY-CASES JP-9). */
int pt_grpc_code_http(int code);

/**
 * The gRPC code for a non-200 HTTP answer that carries no grpc-status (gRPC's
 * http-grpc-status-mapping: 400 INTERNAL, 401 UNAUTHENTICATED, 403
 * PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, others
 * UNKNOWN).
 */
int pt_grpc_code_from_http(int http_status);

/**
 * Parses a `grpc-status` value (gRPC over HTTP/2: 1*DIGIT): the code when the
 * value is decimal digits only, naming 0..16; 2 UNKNOWN for anything else
 * (empty, signs, spaces, letters, out of range). Never fails. gRPC defines no
 * other code and clients must not see one (a -1 or 99 reached REST clients as
 * `"code":-1` and native ones as an undefined grpc-status); UNKNOWN is what
 * gRPC libraries report for a status they cannot interpret. Native gRPC,
 * gRPC-Web and REST transcoding all map statuses through this (issue 14).
 */
int pt_grpc_status_parse(pt_str_t v);

/**
 * What a client may be told of a gRPC status (issue 11: no library internals
 * reach clients). A failure Portico saw itself (st->local) is told by the
 * public message of that status (portico/status.h: "upstream failed", "no
 * upstream available", "upstream timed out"), never by the static reason,
 * which is for the log. A backend status whose code reports a failure of
 * infrastructure rather than of the request -- UNKNOWN, DEADLINE_EXCEEDED,
 * INTERNAL, UNAVAILABLE, DATA_LOSS: where gRPC libraries put "failed to
 * connect to all addresses; last error: ..." and exception texts -- is told by
 * the public message of PT_ERR_UPSTREAM (PT_ERR_TIMEOUT for DEADLINE_EXCEEDED)
 * and loses its grpc-status-details-bin. Other codes (NOT_FOUND,
 * INVALID_ARGUMENT, ...) keep the backend's message and details: those are the
 * API's answers. Sets *msg (and *bin, *bin_len, NULL/0 when dropped); returns
 * true when the backend's or Portico's own text was replaced.
 */
bool pt_grpc_status_public(const pt_grpc_status_t *st, pt_str_t *msg, const uint8_t **bin,
                           size_t *bin_len);

/** True for the gRPC codes whose backend messages pt_grpc_status_public() replaces. */
bool pt_grpc_code_internal(int code);

/**
 * True when the request header `name: value` can be sent as gRPC metadata:
 * the key is lowercase letters, digits, `-`, `_`, `.`, and, unless it ends in
 * `-bin` (binary metadata, which HTTP carries as base64), the value is
 * printable ASCII (0x20-0x7E): gRPC's ASCII metadata forbids the tab and the
 * obs-text bytes that HTTP allows, and gRPC libraries refuse or abort on them.
 */
bool pt_grpc_md_valid(pt_str_t name, pt_str_t value);

/**
 * Parses a `grpc-timeout` header value ("100m", "5S", "1H"; at most 8 digits)
 * to milliseconds (rounded up). Returns 0 or PT_ERR_INVALID.
 */
int pt_grpc_timeout_parse(pt_str_t v, uint64_t *ms);

/**
 * Formats `ms` as a `grpc-timeout` value in `a`: milliseconds ("250m"), or
 * whole seconds ("200000S") past 8 digits of them, capped at 99999999S (the
 * value has at most 8 digits). "1m" when the arena is out of memory.
 */
pt_str_t pt_grpc_timeout_format(pt_arena_t *a, uint64_t ms);

#endif /* PT_GATEWAY_UPSTREAM_GRPC_H */
