/*
 * policy.h -- the one endpoint policy of every upstream back end.
 *
 * Which endpoint a call goes to, when an endpoint is taken out of rotation,
 * whether a failed attempt is tried again (and where), and how many
 * connections a worker may hold to one endpoint: decided here, once, for the
 * native HTTP/1.1 client (h1.c), libcurl (http.c) and the nghttp2 client
 * (h2.c, which carries gRPC too: native passthrough and, through
 * grpc_call.c, REST transcoding). The back ends only report
 * what happened and follow the answers.
 *
 * State is per worker (w->upstream_policy) and touched only by that worker's
 * thread: no lock on the request path.
 *   - Round robin: a cursor per cluster (by cluster->index; set up again when
 *     the slot holds another snapshot's cluster).
 *   - Passive health: per endpoint URL, shared by every cluster naming it
 *     (a reload keeps it); https:// endpoints per URL and TLS settings (CA,
 *     verification, authority), so a misconfigured cluster cannot eject an
 *     endpoint for the others. PT_POLICY_EJECT_AFTER consecutive connect failures
 *     eject the endpoint for PT_POLICY_EJECT_MS; after that it gets traffic
 *     again and one more failure ejects it again. A connection that was made
 *     clears the count. Local resource errors (EMFILE, ENFILE, ENOBUFS,
 *     ENOMEM: Portico's own shortage) never count against an endpoint.
 *   - Connection cap (HTTP/1.1): per endpoint URL, at most
 *     `max_connections_per_endpoint` open connections (idle ones included);
 *     calls beyond it wait in a FIFO of at most `max_pending_per_endpoint`,
 *     then get PT_ERR_OVERLOADED at once. Waiting calls keep their deadline.
 *     HTTP/2 counts connections against the same key (streams multiplex).
 *
 * Issue 12 will make the ejection constants configuration (`outlier:`); they
 * are defined here and nowhere else.
 */
#ifndef PT_GATEWAY_UPSTREAM_POLICY_H
#define PT_GATEWAY_UPSTREAM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "upstream/call.h"

enum {
    PT_POLICY_EJECT_AFTER = 5,     /* consecutive connect failures that eject an endpoint */
    PT_POLICY_EJECT_MS = 10000,    /* ... for this long */
    PT_POLICY_H1_MAX_CONNS = 128,  /* default max_connections_per_endpoint, HTTP/1.1 */
    PT_POLICY_H2_MAX_CONNS = 8,    /* default max_connections_per_endpoint, HTTP/2 */
    PT_POLICY_MAX_PENDING = 1024,  /* default max_pending_per_endpoint */
};

/** How an attempt failed, as far as the policy cares. */
typedef enum pt_policy_fail {
    PT_POLICY_FAIL_CONNECT = 0, /**< the connection could not be made (refused, timeout, DNS) */
    PT_POLICY_FAIL_REFUSED,     /**< the server did not process it (REFUSED_STREAM, GOAWAY) */
    PT_POLICY_FAIL_EARLY,       /**< the connection died before any response byte */
    PT_POLICY_FAIL_OTHER,       /**< anything else: never retried */
    PT_POLICY_FAIL_LOCAL,       /**< Portico ran short (fds, buffers): never retried, never ejects */
} pt_policy_fail_t;

/** Per-call retry bookkeeping, embedded in each back end's call (zeroed at start). */
typedef struct pt_policy_try {
    uint64_t tried;           /**< endpoint indexes already tried (the first 64) */
    unsigned attempts;        /**< attempts started so far */
    bool refused_retried;     /**< the one retry of a refused request was used */
} pt_policy_try_t;

/**
 * A call run by a route's `retry:` policy (upstream/retry.c): each attempt is
 * a call of its own, started with req->_route pointing here. The first pick
 * of an attempt avoids the endpoints in `seed` (and adds its own); a failed
 * attempt is not retried inside the back end (only a REFUSED one, once) but
 * reported here, and retry.c decides.
 */
struct pt_policy_route_try {
    pt_policy_try_t seed;         /* endpoints tried by this call's earlier attempts */
    bool failed;                  /* the back end reported a failure (kind, replayable) */
    pt_policy_fail_t kind;
    bool replayable;
};

/** One endpoint (URL, plus TLS settings for https://) on one worker: health, connection count,
 *  waiting calls. Lives as long as the worker. */
typedef struct pt_policy_ep pt_policy_ep_t;

/** A call waiting for a connection slot (embedded in the call; zeroed). */
typedef struct pt_policy_wait {
    pt_policy_ep_t *_ep;          /* non-NULL while queued */
    struct pt_policy_wait *_prev, *_next;
} pt_policy_wait_t;

/** Per-worker setup and teardown (worker thread; call.c's pt_upstream_worker_*). */
int pt_policy_worker_init(pt_worker_t *w);
void pt_policy_worker_dispose(pt_worker_t *w);

/**
 * The endpoint for the first attempt of a call on `cl`: the next one in
 * round-robin order that is not ejected, or -1 when every endpoint is
 * (fail fast, PT_ERR_UNAVAILABLE). Records the attempt in `t`.
 */
long pt_policy_pick(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_try_t *t);

/**
 * pt_policy_pick() for a call's first attempt; for an attempt of a route
 * retry (r->_route) an endpoint no earlier attempt tried, when there is one.
 */
long pt_policy_pick_req(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t);

/**
 * The retry decision after an attempt of `r` failed with `kind`, and where.
 * `replayable`: the back end can send the request again (no response byte
 * came, and no request body byte was taken that it cannot replay). Returns
 * the endpoint index of the next attempt (recorded in `t`), or -1: give up.
 *   - CONNECT: at most cluster->retries more attempts, on endpoints not
 *     tried yet.
 *   - EARLY: idempotent requests only, at most cluster->retries more; another
 *     endpoint if there is one, else the same.
 *   - REFUSED: once, whatever `retries` (the server said it did nothing).
 *   - OTHER, LOCAL: never.
 * With r->_route (a route's `retry:` policy), only REFUSED is retried here;
 * every failure is recorded in r->_route and retry.c decides.
 */
long pt_policy_retry(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t,
                     pt_policy_fail_t kind, bool replayable);

/** Endpoint `idx` of `cl` on worker `w` (created on first use; lives as long as the worker). */
pt_policy_ep_t *pt_policy_ep(pt_worker_t *w, const pt_cluster_t *cl, size_t idx);

/** True for errno values that mean Portico itself ran short (EMFILE, ENFILE, ENOBUFS, ENOMEM). */
bool pt_policy_errno_local(int err);

/**
 * A connection to `e` could not be made; `err` is the errno (0 if unknown).
 * Returns PT_POLICY_FAIL_LOCAL for a local resource error (counted in
 * portico_upstream_local_errors_total for `cl`, the endpoint untouched; `cl`
 * may be NULL when no call is known), else PT_POLICY_FAIL_CONNECT (one more
 * consecutive failure; may eject `e`).
 */
pt_policy_fail_t pt_policy_connect_failed(pt_worker_t *w, const pt_cluster_t *cl,
                                          pt_policy_ep_t *e, int err);

/** A connection to `e` was made: clears its failures and any ejection. */
void pt_policy_connect_ok(pt_policy_ep_t *e);

/** Counts a local resource error of a call on `cl` (when the back end found it itself). */
void pt_policy_count_local(pt_worker_t *w, const pt_cluster_t *cl);

/**
 * The connection limits of `cl`: max_connections_per_endpoint (0 in the
 * cluster: the default above for the protocol) and max_pending_per_endpoint
 * (the config sets PT_POLICY_MAX_PENDING by default; 0 means no queue).
 */
unsigned pt_policy_max_conns(const pt_cluster_t *cl, bool multiplexed);
unsigned pt_policy_max_pending(const pt_cluster_t *cl);

/** Counts a call refused because the pending queue of `cl`'s endpoint was full. */
void pt_policy_count_overflow(pt_worker_t *w, const pt_cluster_t *cl);

enum { PT_POLICY_GRANTED = 0, PT_POLICY_QUEUED = 1 };

/**
 * Asks for a new connection to `e` (HTTP/1.1 back end). Returns
 * PT_POLICY_GRANTED (the connection is counted: pt_policy_conn_release() when
 * it closes), PT_POLICY_QUEUED (`wt` waits in FIFO order; the back end gets
 * it back from pt_policy_conn_release() or pt_policy_wait_next()), or
 * PT_ERR_OVERLOADED (the queue is full; counted in metrics).
 */
int pt_policy_conn_acquire(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_ep_t *e,
                           pt_policy_wait_t *wt);

/**
 * A counted connection to `e` closed. If a call waits, its slot passes to it
 * (still counted) and its wait is returned, dequeued; else NULL.
 */
pt_policy_wait_t *pt_policy_conn_release(pt_policy_ep_t *e);

/** The first waiting call of `e`, dequeued (an idle connection can go to it), or NULL. */
pt_policy_wait_t *pt_policy_wait_next(pt_policy_ep_t *e);

/** Leaves the queue (timeout, cancel). Harmless when `wt` is not queued. */
void pt_policy_wait_cancel(pt_policy_wait_t *wt);

#endif /* PT_GATEWAY_UPSTREAM_POLICY_H */
