/*
 * call.h -- the one asynchronous upstream call primitive.
 *
 * Every handler reaches backends through pt_upcall_start(): proxying,
 * transcoding, SOAP and aggregation (several calls and a join). A call runs
 * on the calling worker's loop and completes there.
 *
 * Contract (libuv rule): pt_upcall_start() either returns an error and never
 * calls a callback, or returns 0 and later calls on_done exactly once, unless
 * pt_upcall_cancel() is called first, after which no callback runs at all.
 * on_head is called at most once, before any on_data.
 *
 * Back ends (chosen per cluster by call.c): REST clusters with plain http://
 * endpoints given as IP addresses and `http2: false` use the native HTTP/1.1
 * client (upstream/h1.c); https://, DNS-named endpoints and `http2: true`
 * over TLS use libcurl (upstream/http.c); gRPC clusters and h2c use the
 * native HTTP/2 client (upstream/h2.c). The contract above is the same for
 * all of them.
 */
#ifndef PT_GATEWAY_UPSTREAM_CALL_H
#define PT_GATEWAY_UPSTREAM_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/cluster.h"
#include "net/worker.h"
#include "portico/headers.h"

typedef struct pt_upcall pt_upcall_t;
typedef struct pt_retry_conf pt_retry_conf_t;              /* core/route.h */
typedef struct pt_policy_route_try pt_policy_route_try_t;  /* upstream/policy.h */

typedef struct pt_upcall_req {
    const pt_cluster_t *cluster;
    pt_str_t method;
    pt_str_t path;                 /* path and query, as sent upstream ("/v1/x?y=1") */
    pt_str_t authority;            /* Host to send (cluster->authority overrides when set) */
    const pt_headers_t *headers;   /* final upstream headers; hop-by-hop already removed */
    int64_t content_length;        /* -1: length unknown (chunked / streamed) */
    bool has_body;
    uint64_t timeout_ms;           /* whole exchange; 0 = cluster default */
    bool idempotent;               /* may be retried after the request was sent */
    /**
     * Non-empty: ask the upstream to switch to this protocol (`Upgrade: <v>`,
     * `Connection: upgrade`; has_body must be false). A 101 answer is then
     * accepted: on_head(101, ...) and from then on the connection is the
     * call's byte pipe (never pooled): read_body is pulled for the bytes to
     * send (eof: half-close, shutdown(SHUT_WR)), on_data gets every byte the
     * upstream sends, on_done(0) at its end of stream. The exchange timeout
     * stops at the 101 (the caller owns the idle timeout then). Any other
     * answer is an ordinary response. Only plain http:// clusters served by
     * the native HTTP/1.1 client can do this: pt_upcall_start() returns
     * PT_ERR_NOT_IMPLEMENTED for the others (https://, DNS names, http2).
     */
    pt_str_t upgrade;
    /**
     * What a `lb: ring_hash` cluster hashes to pick the endpoint (the client
     * IP, a header or a cookie value as its `hash_key` says; fill it with
     * pt_upcall_hash_key()). Empty: a random endpoint. Other lbs ignore it.
     */
    pt_str_t hash_key;
    /**
     * The route's `retry:` policy, or NULL (then only the cluster's
     * retry-on-connect, policy.h). With one, upstream/retry.c runs the call:
     * attempts on different endpoints, back-off, budget, per-try timeout.
     */
    const pt_retry_conf_t *retry;
    /**
     * The traced request this call serves (observe/trace.h), or NULL. With it,
     * the call's client span is the span named by the traceparent in
     * `headers` (made by pt_trace_child()) and the request's server span is its
     * parent; without it, a traceparent in `headers` is the parent.
     */
    const struct pt_trace *trace;
    /** Set by retry.c on the attempts it starts (policy.c reports into it); callers leave it NULL. */
    pt_policy_route_try_t *_route;
} pt_upcall_req_t;

typedef struct pt_upcall_cbs {
    /**
     * Request body source: copy up to `max` bytes into `buf` and return how
     * many; return 0 with *eof = true at the end; return 0 with *eof = false
     * when nothing is available yet (then call pt_upcall_body_ready() later).
     */
    size_t (*read_body)(void *ud, char *buf, size_t max, bool *eof);
    /** Response head. `h` is valid during the call only (copy what you keep). */
    void (*on_head)(void *ud, int status, const pt_header_t *h, size_t cnt);
    /**
     * Response body bytes (valid during the call only). Return false to pause
     * delivery; resume with pt_upcall_resume().
     */
    bool (*on_data)(void *ud, const char *data, size_t len);
    /**
     * The call ended: 0 (complete response), or PT_ERR_UPSTREAM (connection
     * failed/reset, bad response), PT_ERR_UNAVAILABLE (no endpoint could be
     * reached), PT_ERR_TIMEOUT. `reason` is static text for logs. Trailers, if
     * the upstream sent any, are passed as `t` (valid during the call).
     */
    void (*on_done)(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt);
} pt_upcall_cbs_t;

/**
 * Starts a call on worker `w`. `r` and the slices it points to must stay valid
 * until on_done (or cancel). Returns 0 and sets *out, or a negative PT_ERR_*.
 */
int pt_upcall_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                    void *ud, pt_upcall_t **out);

/** More request body is available (after read_body returned 0 without eof). */
void pt_upcall_body_ready(pt_upcall_t *c);

/** Resumes response delivery after on_data returned false. */
void pt_upcall_resume(pt_upcall_t *c);

/**
 * The hash key of a request for `cl` (pt_upcall_req_t.hash_key): the value
 * named by the cluster's `hash_key` -- `client_addr`, header NAME or cookie
 * NAME of `h` (slices into them) -- or empty when the cluster is not
 * ring_hash or the request has no such value. upstream/policy.c.
 */
pt_str_t pt_upcall_hash_key(const pt_cluster_t *cl, pt_str_t client_addr, const pt_headers_t *h);

/** Cancels the call; no callback runs afterwards. The connection is not reused. */
void pt_upcall_cancel(pt_upcall_t *c);

/** Cancels *call if it is running and clears it (a handler's "stop the upstream"). */
static inline void pt_upcall_stop(pt_upcall_t **call)
{
    pt_upcall_t *c = *call;
    if (c != NULL) {
        *call = NULL; /* cleared first: nothing may reach a cancelled call */
        pt_upcall_cancel(c);
    }
}

/** What pt_upcall_tunnel_lend hands over. */
typedef struct pt_upcall_lent {
    int fd;               /* the tunnel's plaintext socket (still owned by the call) */
    const char *in;       /* upstream bytes read past the 101 head, not delivered yet */
    size_t in_len;
    const char *out;      /* request bytes not written yet (go before the borrower's) */
    size_t out_len;
} pt_upcall_lent_t;

/**
 * Lends a tunnel's socket to the caller for the rest of the call (a
 * WebSocket relay's data phase, handlers/ws_proxy.c): only a plain-TCP
 * HTTP/1.1 tunnel after its 101 (on_head or later). From then on the call
 * does nothing on its own -- no read, write, timer, read_body, on_data or
 * on_done -- and the caller reads and writes `fd` directly, after taking the
 * bytes in *lent (valid until the caller returns to the loop; consumed by
 * the call). The socket stays the call's: pt_upcall_cancel (or stop) closes
 * it, and the caller must not touch it afterwards. Returns 0, or
 * PT_ERR_INVALID (nothing changed: not such a tunnel, TLS, a back end that
 * cannot, or tracing).
 */
int pt_upcall_tunnel_lend(pt_upcall_t *c, pt_upcall_lent_t *lent);

/** The endpoint URL of the current/last attempt ("http://127.0.0.1:9000"), or NULL. */
const char *pt_upcall_endpoint(const pt_upcall_t *c);

/** Per-worker setup and teardown of the upstream machinery (worker thread). */
int pt_upstream_worker_init(pt_worker_t *w);
void pt_upstream_worker_dispose(pt_worker_t *w);

#endif /* PT_GATEWAY_UPSTREAM_CALL_H */
