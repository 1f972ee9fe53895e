/*
 * request.h -- the request object and its lifecycle (private to the gateway).
 *
 * Codecs (h1.c, h2.c) create requests and feed them; request.c runs the
 * router, the filter chain (chain.c) and the route's handler; handlers answer
 * through pt__resp_*; the codec writes what they produce.
 *
 *   codec                         request.c / chain.c             handler
 *   pt__req_new()  ------------->
 *   fill method/path/headers
 *   pt__req_headers_done() ------> route, request-side filters --> start()
 *   pt__req_body(data, end) -----> queue (backpressure) ---------> on_body() / pt__req_body_read()
 *                 <-------------- response-side filters <-------- pt__resp_head(), pt__resp_body()
 *   ops->send_head/send_body
 *   pt__req_on_writable() -------------------------------------> on_writable()
 *   pt__req_codec_done() / pt__req_abort()
 *
 * Lifetime: a request is held by the codec (until the response is written or
 * the stream dies) and by the handler (from start() to
 * pt__req_handler_done()). When both holds are gone the log phase runs and
 * the arena is destroyed; nothing may touch the request after its last hold
 * is released. Everything happens on the owning worker's thread.
 */
#ifndef PT_GATEWAY_REQUEST_H
#define PT_GATEWAY_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include "core/router.h"
#include "net/worker.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"

typedef struct pt_config pt_config_t; /* core/config.h */

struct evbuffer;

/** Gives back a body block handed over with pt__resp_body_owned (libevent's cleanup signature). */
typedef void (*pt_body_release_fn)(const void *data, size_t len, void *arg);

/** What a codec implements for the requests it creates. */
typedef struct pt_stream_ops {
    /** Write the response head: req->resp_status, req->resp_headers. */
    void (*send_head)(pt_req_t *req);
    /** Queue `len` bytes of body (copied); `end` ends the response (with req->resp_trailers if any). */
    void (*send_body)(pt_req_t *req, const void *data, size_t len, bool end);
    /** Bytes queued for this request and not yet written to the socket. */
    size_t (*out_pending)(pt_req_t *req);
    /** The handler consumed `len` body bytes: reopen flow control / resume reading. */
    void (*body_consumed)(pt_req_t *req, size_t len);
    /** Send `100 Continue` now (HTTP/1.1 only; NULL elsewhere). */
    void (*send_continue)(pt_req_t *req);
    /**
     * End the response abnormally after its head was sent, so the client sees
     * a truncated exchange, never a clean end (HTTP/1: close the connection
     * without the last chunk; HTTP/2: RST_STREAM INTERNAL_ERROR). The codec then
     * releases its hold as usual (pt__req_codec_done), possibly before returning.
     */
    void (*reset)(pt_req_t *req);
    /**
     * Turn this request into a tunnel (see "Tunnels" below), before its
     * response head is sent: from the head on, send_body carries raw bytes to
     * the client (`end`: no more; HTTP/1 closes the connection once written,
     * HTTP/2 ends the stream), and the client's bytes arrive through
     * pt__req_body (`end` at the client's half-close). Returns 0, or
     * PT_ERR_INVALID when the stream cannot become one (nothing changed then).
     * NULL for codecs without tunnels.
     */
    int (*tunnel)(pt_req_t *req);
    /**
     * Optional (NULL: the core copies through send_body and releases): the
     * whole rest of the body in one block, ending the response, taken
     * without a copy; the codec calls release(data, len, arg) once the bytes
     * are written or dropped (possibly before returning). It may copy and
     * release at once where it cannot hold the block (chunked, tunnel...).
     */
    void (*send_body_owned)(pt_req_t *req, const void *data, size_t len,
                            pt_body_release_fn release, void *arg);
} pt_stream_ops_t;

/** Where the filter chain waits for a suspended filter (filter.h contract 4). */
typedef enum pt_chain_wait {
    PT_WAIT_NONE = 0,
    PT_WAIT_REQ_HEADERS,
    PT_WAIT_REQ_BODY,
    PT_WAIT_RESP_HEADERS,
    PT_WAIT_RESP_BODY,
} pt_chain_wait_t;

enum { PT_SIDE_REQ = 0, PT_SIDE_RESP = 1 };

enum {
    PT_REQ_HOLD_CODEC = 1u << 0,
    PT_REQ_HOLD_HANDLER = 1u << 1,
    PT_REQ_HOLD_CHAIN = 1u << 2,   /* a filter suspended the chain */
};

/**
 * Codecs stop reading a request body once this many bytes are queued and not
 * yet read by the handler; ops->body_consumed() tells them to go on.
 */
#define PT_REQ_BODY_HIGH_WATER (256u * 1024u)

typedef struct pt_abort_hook {
    void (*cb)(void *data);
    void *data;
    struct pt_abort_hook *next;
} pt_abort_hook_t;

/** A request variable (pt_req_var_set) or a provider of a prefix (pt_req_var_provider), in the arena. */
typedef struct pt_req_varent {
    pt_str_t name;               /* the full name, or the provider's prefix */
    pt_str_t value;              /* set variables */
    pt_req_var_fn fn;            /* providers: non-NULL */
    void *data;
    struct pt_req_varent *next;  /* newest first */
} pt_req_varent_t;

/**
 * Where a request's response is. One state machine that only moves forward;
 * STARTED -> ENDED directly when a response is cut off while a
 * response-header filter waits.
 */
typedef enum pt_resp_state {
    PT_RESP_NONE = 0,  /**< nothing started */
    PT_RESP_STARTED,   /**< the handler (or a local reply) started it: response-header filters run */
    PT_RESP_HEAD_SENT, /**< the response-header filters are through and the codec has the head */
    PT_RESP_ENDED,     /**< complete, or cut off (reset): nothing more goes out */
} pt_resp_state_t;

/**
 * One call of a handler that makes several (aggregate), for the access log
 * (a `calls` array in the request's line) and the per-call metrics. Set by
 * the handler before it releases the request; arena or config memory.
 */
typedef struct pt_req_subcall {
    const char *name;      /* the call's name (config memory) */
    const char *upstream;  /* endpoint URL of its last attempt, or NULL */
    int status;            /* HTTP status it ended with (0: never started) */
    uint64_t ns;           /* from its start to its end (or cancel) */
    bool started;
} pt_req_subcall_t;

struct pt_req {
    pt_arena_t *arena;
    pt_worker_t *worker;
    pt_config_t *config;           /* the snapshot this request started with (reference held) */
    const pt_stream_ops_t *ops;
    void *stream;                  /* codec's per-request state */

    /* request, filled by the codec before pt__req_headers_done() */
    pt_str_t method, path, query, authority, scheme;
    pt_str_t target;               /* raw request target as received (logs) */
    int version;                   /* 10, 11, 20 */
    pt_headers_t headers;
    int64_t content_length;        /* -1 when unknown (chunked / h2 without content-length); the upstream's */
    int64_t content_length_in;     /* the client's, as received (content_length may be changed by filters) */
    bool expect_body;              /* a body follows (CL > 0, chunked, or h2 without END_STREAM) */
    bool expect_continue;          /* HTTP/1.1 `Expect: 100-continue` */
    pt_str_t client_addr;
    bool is_tls;
    /*
     * The protocol the client asks to switch to: the HTTP/1.1 `Upgrade` value
     * of a request with `Connection: upgrade` (h2c excepted: the h1 codec
     * handles it), or the `:protocol` of an HTTP/2 extended CONNECT (RFC
     * 8441). Empty (len 0) on ordinary requests.
     */
    pt_str_t upgrade;

    /* derived by request.c */
    pt_str_t request_id;
    pt_route_result_t route;
    uint32_t method_bit;
    uint64_t body_limit;           /* total request body bytes allowed (413 past it): the route's
                                      max_body, or what its handler's body_limit() said */

    /* request body, queued between codec and handler */
    struct evbuffer *body;         /* bytes for the handler (after request-body filters), not yet read */
    const char *body_offer;        /* a tunnel's bytes lent by the codec during on_body (read before */
    size_t body_offer_len;         /* `body`, which is empty then); the rest is copied into `body` */
    uint64_t body_received;        /* total body bytes so far (bytes in) */
    bool body_done;                /* the codec's input ended, or was refused: no more pt__req_body */
    bool body_out_done;            /* the handler's view: the (filtered) body ended */
    bool continue_sent;
    uint64_t body_unacked;         /* filtered input bytes not yet reported to ops->body_consumed */
    uint64_t body_out_total;       /* bytes the request-body filters handed to the handler */

    /* response */
    int resp_status;
    pt_headers_t resp_headers;     /* never framing headers: content-length/transfer-encoding are the codec's */
    int64_t resp_content_length;   /* body length when known (the codec frames with it), else -1 */
    pt_headers_t resp_trailers;    /* sent with the end of the body when non-empty (h2, chunked h1) */
    pt_resp_state_t resp_state;    /* NONE -> STARTED -> HEAD_SENT -> ENDED; read with
                                      pt__resp_started() / pt__resp_ended() */
    uint64_t bytes_out;            /* body bytes handed to the codec */
    pt_str_t local_body;           /* body of a local reply */
    pt_str_t local_type;

    /* failure bookkeeping */
    int fail_status;               /* pt_status of a failure, 0 if none */
    const char *fail_reason;       /* static, log only */

    /* chain state (chain.c) */
    const pt_filter_t *const *chain;
    size_t chain_cnt;
    size_t chain_pos;              /* next request-side filter to run */
    size_t chain_ran;              /* filters whose request side ran (response side unwinds these) */
    void **filter_ctx;             /* per chain position, ctx_size bytes each (or NULL) */
    pt_chain_wait_t wait;          /* which phase a filter suspended, if any */
    size_t wait_step;              /* response headers: the step of the suspended filter */
    size_t resp_body_first;        /* response-body steps before this one are skipped (replaced response) */
    bool buffering;                /* request_buffering: the handler waits for the filtered body */
    bool buffer_body;              /* a filter asked for request_buffering (pt_req_buffer_body) */
    bool resp_replaced;            /* a response-side RESPOND/ERROR replaced the handler's response */
    struct pt_bodyq *bq[2];        /* body pipelines (PT_SIDE_REQ/RESP), NULL until a body filter runs */
    struct pt_scratch *scratch;    /* output of body filters during one pipeline run */

    /* handler */
    void *handler_ctx;
    bool handler_started;
    bool want_writable;            /* the handler paused on output; call on_writable when drained */

    /* lifetime */
    unsigned holds;
    unsigned busy;                 /* open pt__req_enter() brackets: finalisation waits for 0 */
    bool aborted;
    bool finalized;
    pt_abort_hook_t *abort_hooks;
    pt_req_varent_t *vars;         /* request variables and providers, newest first (reqvar.c) */

    /* timing and upstream info for logs and metrics */
    uint64_t start_ns;             /* monotonic */
    int64_t start_wall_us;         /* wall clock, for the access log */
    const char *upstream_addr;     /* endpoint URL of the last attempt, or NULL */
    uint64_t upstream_ns;          /* time spent waiting for the upstream */
    const char *upstream_cluster;  /* name of the cluster of the last attempt (config memory), or
                                      NULL: the per-cluster series (observe/metrics.h) */
    struct pt_trace *trace;        /* W3C trace context (observe/trace.h), NULL without `tracing:` */
    bool close_after;              /* codec: close the connection after this response */
    const pt_req_subcall_t *subcalls; /* calls of an aggregate (see pt_req_subcall_t), or NULL */
    size_t subcall_cnt;

    /* tunnel (tunnel.c); zero unless pt__req_tunnel_open() succeeded */
    bool is_tunnel;                /* the exchange is a two-way byte stream now */
    void *tunnel;                  /* tunnel.c's state (idle timer), in the arena */
    struct pt_ws *ws;              /* http/ws.c: the WebSocket endpoint facing the client, or NULL
                                      (pt_ws_req_attach; the log phase reads its stats) */
};

/** The response has started (pt__resp_head() or a local reply); true also once it ended. */
static inline bool pt__resp_started(const pt_req_t *req)
{
    return req->resp_state >= PT_RESP_STARTED;
}

/** Records why the request failed (the SDK's pt_req_fail; chain.c uses it without calling up). */
static inline void pt__req_set_fail(pt_req_t *req, int st, const char *reason)
{
    req->fail_status = st;
    req->fail_reason = reason;
}

/** The response is complete or was cut off: nothing more goes out. */
static inline bool pt__resp_ended(const pt_req_t *req)
{
    return req->resp_state == PT_RESP_ENDED;
}

/* ---- called by codecs --------------------------------------------------- */

/**
 * Creates a request on worker `w` with the worker's current config snapshot
 * and the codec hold. Aborts on OOM; never NULL.
 */
pt_req_t *pt__req_new(pt_worker_t *w, const pt_stream_ops_t *ops, void *stream);

/** Frees worker `w`'s spare request arenas (request.c keeps finished ones for reuse); at its end. */
void pt__req_spares_free(pt_worker_t *w);
/** How many spare request arenas worker `w` holds (tests). */
unsigned pt__req_spares_count(const pt_worker_t *w);

/** 64 random bits from the thread's xorshift128+ (request and trace ids; not cryptographic). */
uint64_t pt__rand64(void);
/** Writes v as 16 lowercase hex digits, most significant first, to out (no terminator). */
void pt__hex64(char *out, uint64_t v);

/**
 * The head is complete: validates and normalises the path, assigns the request
 * id, routes, runs the request-side filters and starts the handler (or
 * answers locally). May call ops->send_head/send_body before returning.
 */
void pt__req_headers_done(pt_req_t *req);

/**
 * Answers a request the codec refused (malformed, over a limit) with the JSON
 * error of `st`, skipping routing and filters. The codec sets close_after as needed.
 */
void pt__req_reject(pt_req_t *req, int st, const char *reason);

/** Body bytes arrived (copied into the queue); `end` marks the end of the body. */
void pt__req_body(pt_req_t *req, const void *data, size_t len, bool end);

/**
 * Body bytes queued for this request on the way to its handler (codecs stop
 * reading above PT_REQ_BODY_HIGH_WATER). 0 while a request_buffering route
 * collects its body: that buffer is bounded by max_body instead.
 */
size_t pt__req_body_queued(const pt_req_t *req);

/** The codec's output for this request drained below its low watermark. */
void pt__req_on_writable(pt_req_t *req);

/** The response was fully written: the codec releases its hold (the request may be freed). */
void pt__req_codec_done(pt_req_t *req);

/**
 * The client went away (connection closed, stream reset, timeout) before the
 * exchange finished: runs the abort hooks, then releases the codec hold.
 */
void pt__req_abort(pt_req_t *req);

/* ---- called by handlers ------------------------------------------------- */

/**
 * Reads up to `max` queued body bytes into `buf` (they already passed the
 * request-body filters). Returns the number of bytes (0 when none are
 * queued); *eof is set once the body has ended and everything was read.
 */
size_t pt__req_body_read(pt_req_t *req, char *buf, size_t max, bool *eof);

/** Starts the response with req->resp_status / resp_headers (response-header filters run). */
void pt__resp_head(pt_req_t *req);

/** Sends body bytes (response-body filters run); `end` ends the response. */
void pt__resp_body(pt_req_t *req, const void *data, size_t len, bool end);

/**
 * pt__resp_body(req, data, len, true) for a block the caller hands over:
 * when no response-body filter runs and nothing is queued, the codec sends
 * it without a copy (send_body_owned); else it goes the usual way. Either
 * way release(data, len, arg) is called once the block is no longer needed
 * (maybe before this returns). Additive: pt__resp_body is unchanged.
 */
void pt__resp_body_owned(pt_req_t *req, const void *data, size_t len, pt_body_release_fn release,
                         void *arg);

/**
 * True when the client side has more than limits.max_response_buffer queued:
 * stop reading the upstream and set req->want_writable; on_writable follows.
 */
bool pt__resp_blocked(pt_req_t *req);

/**
 * Ends the exchange with a failure: a JSON error response if nothing was sent
 * yet, else an abrupt end (no clean end-of-body) so the client sees truncation.
 */
void pt__resp_fail(pt_req_t *req, int st, const char *reason);

/**
 * Runs the abort hooks now (they are then gone), while the codec still holds
 * the request: the handler and suspended work cancel what they started. For
 * the core's own timers (tunnel idle); the client side must already have been
 * answered or reset (pt__resp_fail).
 */
void pt__req_cancel_handler(pt_req_t *req);

/** The handler is finished with the request (releases the handler hold). */
void pt__req_handler_done(pt_req_t *req);

/**
 * Bracket a handler callback that runs outside a request-layer call (an
 * upstream completion, a timer). Until the matching pt__req_leave(), the
 * request is not finalised even when its last hold is released -- a codec
 * may abort synchronously from send_head/send_body, which runs the abort
 * hooks and releases the handler -- so the callback may keep using `req` and
 * its arena. pt__req_leave() may finalise the request: touch nothing after it.
 * Brackets nest.
 */
void pt__req_enter(pt_req_t *req);
void pt__req_leave(pt_req_t *req);

/* ---- tunnels (tunnel.c) -------------------------------------------------------
 *
 * A request whose client asked to switch protocols (req->upgrade not empty)
 * can become a two-way byte stream once its handler has agreed with the
 * upstream (an upstream 101):
 *
 *   handler                           request core / codec
 *   pt__req_tunnel_open(req, idle) -> ops->tunnel(); head 101 (HTTP/1.1) or
 *                                     :status 200 (HTTP/2 extended CONNECT)
 *   pt__req_body_read() <----------- client bytes (pt__req_body), `eof` at
 *                                     the client's half-close
 *   pt__resp_body(data, end) ------> raw bytes to the client; `end` ends it
 *   pt__resp_blocked() / on_writable, on_body: the same backpressure as bodies
 *
 * Nothing else changes: the filter chain's body phases see the bytes as body
 * events both ways, the max_body limit does not apply, the log phase runs
 * when the last hold goes (the access log line carries bytes both ways and
 * the session's duration). An idle timer ends the session (abort hooks run,
 * the client side is reset) when no byte moved either way for `idle_ms`.
 */

/**
 * Opens the tunnel: the response head (req->resp_headers; resp_status is set
 * to 101 for HTTP/1.1 and 200 for HTTP/2) goes out through the response-header
 * filters and the codec switches to raw bytes. `idle_ms` is the idle timeout
 * (0: timeouts.tunnel_idle). Returns 0, or PT_ERR_INVALID when the client did
 * not ask for an upgrade, the head was already sent, or the codec cannot
 * tunnel this stream (nothing was sent then: answer with an error).
 */
int pt__req_tunnel_open(pt_req_t *req, uint64_t idle_ms);

/**
 * RFC 6455 §4.2.2: the Sec-WebSocket-Accept value for `key` (28 base64
 * characters written to `out`, NUL-terminated; `out` has room for 29).
 */
void pt__tunnel_ws_accept(pt_str_t key, char out[29]);

/** A fresh random Sec-WebSocket-Key (24 base64 characters + NUL into `out`). */
void pt__tunnel_ws_key(char out[25]);

#endif /* PT_GATEWAY_REQUEST_H */
