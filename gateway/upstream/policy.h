/*
 * policy.h -- the one endpoint policy of every upstream back end.
 *
 * Which endpoint a call goes to, when an endpoint is taken out of rotation,
 * whether a failed attempt is tried again (and where), how many connections
 * a worker may hold to one endpoint and how many calls a cluster may have at
 * once: decided here, once, for the native HTTP/1.1 client (h1.c), libcurl
 * (http.c) and the nghttp2 client (h2.c, which carries gRPC too: native
 * passthrough and, through grpc_call.c, REST transcoding). The back ends only
 * report what happened and follow the answers.
 *
 * The pick (cluster `lb:`), among the endpoints in rotation (not ejected, not
 * down for health checks) of the first priority level that has any:
 *   - round_robin: smooth weighted round robin (a plain cursor when every
 *     weight is the same);
 *   - least_request: two endpoints drawn at random, the one with fewer of
 *     this worker's requests in flight (relative to its weight) wins;
 *   - random: weighted random;
 *   - ring_hash: the call's hash_key (pt_upcall_req_t.hash_key) hashed onto a
 *     ring of weight-proportional points per endpoint; the first point
 *     clockwise whose endpoint is in rotation wins, so an ejected endpoint
 *     moves only its own keys. No key (header absent): random.
 * A retry never goes to an endpoint the call tried already while another one
 * is left (pt_policy_try_t.tried), whatever the lb.
 *
 * State:
 *   - Per worker (w->upstream_policy, that worker's thread only, no lock):
 *     cursors and smooth-RR weights and the hash ring per cluster (by
 *     cluster->index; set up again when the slot holds another snapshot's
 *     cluster), and per endpoint URL the requests in flight, the connection
 *     count and the FIFO of calls waiting for a connection.
 *   - Per process, endpoint health (outlier detection): per endpoint URL
 *     (https:// per URL and TLS settings: CA, verification, authority, so a
 *     misconfigured cluster cannot eject an endpoint for the others), shared
 *     by every worker and every cluster naming it, kept across reloads:
 *     consecutive failures, the ejection deadline and how many ejections in a
 *     row. Failures: connect failures, resets before an answer, 5xx answers,
 *     gRPC UNAVAILABLE; any other answer clears the count. `outlier:` of the
 *     cluster that saw the failure decides: consecutive_failures in a row eject
 *     the endpoint for base_ejection x n (n-th ejection in a row, reset once it
 *     stayed in rotation as long as its last ejection), capped at
 *     max_ejection; never more than max_ejection_percent of the cluster's
 *     endpoints out at once (one may always go). Local resource errors
 *     (EMFILE, ENFILE, ENOBUFS, ENOMEM: Portico's own shortage) never count.
 *   - Per cluster per process (cl->shared, atomics): the circuit breaker's
 *     counts of calls in flight and calls waiting for a connection; open
 *     connections are counted per endpoint per process and summed over the
 *     cluster's endpoints when a connection is to be opened. Over a limit:
 *     PT_ERR_OVERLOADED (503) at once, counted in
 *     portico_upstream_breaker_trips_total.
 *   - Connection cap (HTTP/1.1): per endpoint URL, at most
 *     `max_connections_per_endpoint` open connections (idle ones included);
 *     calls beyond it wait in a FIFO of at most `max_pending_per_endpoint`,
 *     then get PT_ERR_OVERLOADED at once. Waiting calls keep their deadline.
 *     HTTP/2 counts connections against the same key (streams multiplex).
 *
 * Where the active health checks meet this file: ep_in_rotation() in
 * policy.c, the one place that says whether an endpoint may take traffic.
 */
#ifndef PT_GATEWAY_UPSTREAM_POLICY_H
#define PT_GATEWAY_UPSTREAM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "upstream/call.h"

enum {
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

/** One endpoint (URL, plus TLS settings for https://) on one worker: requests in flight,
 *  connection count, waiting calls, and its process-wide health. Lives as long as the worker. */
typedef struct pt_policy_ep pt_policy_ep_t;

/**
 * Per-call bookkeeping, embedded in each back end's call (zeroed at start;
 * it may be copied before the first attempt). pt_policy_call_end() must run
 * once the call is over (done or cancelled).
 */
typedef struct pt_policy_try {
    uint64_t tried;           /**< endpoint indexes already tried (the first 64) */
    unsigned attempts;        /**< attempts started so far */
    bool refused_retried;     /**< the one retry of a refused request was used */
    /* private */
    bool _holds_request;      /* counted in cluster->shared->requests (circuit breaker) */
    const pt_cluster_t *_cl;
    pt_policy_ep_t *_ep;      /* the current attempt's endpoint: one request in flight on it */
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

/** A call waiting for a connection slot (embedded in the call; zeroed). */
typedef struct pt_policy_wait {
    pt_policy_ep_t *_ep;          /* non-NULL while queued */
    pt_cluster_shared_t *_cls;    /* the cluster whose pending count it holds */
    struct pt_policy_wait *_prev, *_next;
} pt_policy_wait_t;

/** Per-worker setup and teardown (worker thread; call.c's pt_upstream_worker_*). */
int pt_policy_worker_init(pt_worker_t *w);
void pt_policy_worker_dispose(pt_worker_t *w);

/**
 * The endpoint for the first attempt of call `r` (its cluster's lb, see the
 * top comment), recorded in `t`; or a negative PT_ERR_*: PT_ERR_UNAVAILABLE
 * when no endpoint is in rotation (fail fast), PT_ERR_OVERLOADED when the
 * cluster's circuit_breaker.max_requests calls are in flight already
 * (counted in metrics). On success the call holds a request slot and counts
 * in flight on the endpoint until pt_policy_call_end().
 */
long pt_policy_pick(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t);

/**
 * The current attempt of `t` got its answer: HTTP `status`, and for gRPC
 * calls the grpc-status (`grpc_status`, -1 when none or not gRPC). 5xx and
 * gRPC UNAVAILABLE (14) count as a failure of the endpoint (may eject it);
 * anything else clears its count. HTTP back ends report at the response
 * head, h2.c at the end of the stream (when grpc-status is known).
 */
void pt_policy_answered(pt_worker_t *w, pt_policy_try_t *t, int status, int grpc_status);

/** The call is over: its request slot and in-flight count are released. Idempotent. */
void pt_policy_call_end(pt_policy_try_t *t);

/**
 * The retry decision after an attempt of `r` failed with `kind`, and where
 * (EARLY counts as a failure of the endpoint for outlier detection).
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

/** Forgets the health of every endpoint (unit tests run many clusters in one process). */
void pt_policy_health_reset(void);

/** Endpoints ejected now, process-wide (the portico_upstream_ejected_endpoints gauge). */
unsigned pt_policy_ejected_now(void);

/** Outlier-detection state of one endpoint (the admin's view; any thread, no lock). */
typedef struct pt_policy_ep_status {
    bool known;             /* some worker has used the endpoint (else the rest is zero) */
    unsigned fails;         /* consecutive failures seen by the passive checks */
    uint64_t ejected_ms;    /* ms left of its ejection; 0: in rotation */
    unsigned ejections;     /* ejections in a row (the next one lasts longer) */
    unsigned conns;         /* open connections, every worker */
} pt_policy_ep_status_t;
void pt_policy_ep_status(const pt_cluster_t *cl, size_t idx, pt_policy_ep_status_t *out);

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
 * PT_ERR_OVERLOADED (the queue is full, or the cluster's circuit breaker is
 * at max_pending or max_connections; counted in metrics).
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

/**
 * May a new connection to endpoint `e` of `cl` be opened under the cluster's
 * circuit_breaker.max_connections? Counts it when true (pt_policy_conn_closed()
 * when it closes); false is a breaker trip (counted). pt_policy_conn_acquire()
 * asks it itself; h2.c asks it directly.
 */
bool pt_policy_conn_open(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_ep_t *e);
void pt_policy_conn_closed(pt_policy_ep_t *e);

#endif /* PT_GATEWAY_UPSTREAM_POLICY_H */
