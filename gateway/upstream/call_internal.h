/*
 * call_internal.h -- what call.c shares with the protocol back ends.
 *
 * REST clusters (PT_PROTO_HTTP) over HTTP/1.1 have two back ends:
 *   h1.c    the native HTTP/1.1 client (plain http:// endpoints, `http2: false`):
 *           our own keep-alive pools, one writev + one read per exchange;
 *   http.c  libcurl's multi interface, HTTP/1.1 only, for the rest (https://
 *           endpoints, endpoints given by host name) and for the calls h2.c
 *           hands over when an https:// endpoint picks http/1.1 in ALPN.
 * `http2: true` REST clusters and gRPC go to h2.c (h2.h). call.c picks one
 * per cluster (pt__up_cluster()); the endpoint policy all follow is policy.h's.
 *
 * Every pt_upcall_t starts with a pointer to its back end's ops, so the
 * public functions in call.c dispatch without knowing the back end.
 */
#ifndef PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H
#define PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H

#include "upstream/call.h"
#include "upstream/policy.h"

typedef struct pt__upcall_ops {
    void (*body_ready)(pt_upcall_t *c);
    void (*resume)(pt_upcall_t *c);
    void (*cancel)(pt_upcall_t *c);
    const char *(*endpoint)(const pt_upcall_t *c);
    /** pt_upcall_tunnel_lend (optional: NULL where a back end cannot). */
    int (*tunnel_lend)(pt_upcall_t *c, pt_upcall_lent_t *lent);
} pt__upcall_ops_t;

/** The common head of every back end's call struct (its first member). */
struct pt_upcall {
    const pt__upcall_ops_t *ops;
    void *traced; /* call.c: the client span wrapper while tracing, or NULL (zeroed by the back end) */
};

/* ---- shared per-worker state (call.c) ------------------------------------ */

/*
 * Endpoint choice, ejection, retries and connection caps are the policy's
 * (policy.h), shared with h2.c; call.c keeps only the choice of
 * back end per REST cluster.
 */
enum {
    PT__UP_DEFAULT_TIMEOUT_MS = 15000,
    PT__UP_DEFAULT_CONNECT_MS = 5000,
    PT__UP_DEFAULT_IDLE_PER_EP = 64,
    PT__UP_HDR_MAX_BYTES = 128 * 1024, /* response head (or trailers) from an upstream */
    PT__UP_HDR_MAX_CNT = 256,
};

/** Back end of a REST cluster. */
typedef enum pt__upbackend { PT__UP_CURL = 0, PT__UP_H1 = 1 } pt__upbackend_t;

enum { PT__UP_BUDGET_SECS = 10 }; /* the retry budget's sliding window (retry.c) */

/** Per worker, per cluster (by cluster->index): the back end, the retry budget's window. */
typedef struct pt__upcluster {
    const pt_cluster_t *cl;   /* the snapshot's cluster this slot was set up for */
    pt__upbackend_t backend;
    uint64_t budget_sec;      /* the second (monotonic) of the newest bucket */
    uint32_t calls[PT__UP_BUDGET_SECS], retries[PT__UP_BUDGET_SECS]; /* by second % window */
} pt__upcluster_t;

/** The worker's upstream state (w->upstream_http). */
typedef struct pt__upworker {
    pt_worker_t *w;
    void *curl;                /* http.c */
    void *h1;                  /* h1.c */
    bool native_off;           /* PORTICO_UPSTREAM_NATIVE=0: every REST cluster through libcurl */
    pt__upcluster_t *clusters; /* by cluster->index */
    size_t cluster_cnt;
} pt__upworker_t;

/** The worker's state for `cl` (set up again when `cl` is another snapshot's). */
pt__upcluster_t *pt__up_cluster(pt__upworker_t *uw, const pt_cluster_t *cl);

/**
 * The whole-exchange timeout of `r` in ms (route, else cluster, else default).
 * Inline: the back ends need it and call.c calls them, never the other way.
 */
static inline uint64_t pt__up_timeout_ms(const pt_upcall_req_t *r)
{
    if (r->timeout_ms != 0)
        return r->timeout_ms;
    return r->cluster->timeout_ms != 0 ? r->cluster->timeout_ms : PT__UP_DEFAULT_TIMEOUT_MS;
}

/** The back end of `r` (pt_upcall_start without a route's retry policy). */
int pt__upcall_dispatch(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                        void *ud, pt_upcall_t **out);

/* ---- a route's retry policy (retry.c) ------------------------------------- */

/** Runs `r` under r->retry: attempts through pt__upcall_dispatch (same contract as pt_upcall_start). */
int pt__upretry_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                      void *ud, pt_upcall_t **out);

/** Counts a call on `cl` in the retry budget's window (every pt_upcall_start). */
void pt__upretry_count_call(pt_worker_t *w, const pt_cluster_t *cl);

/* ---- libcurl back end (http.c) ------------------------------------------- */

/**
 * http.c: starts a call on a PT_PROTO_HTTP cluster (same contract as
 * pt_upcall_start).
 */
int pt__uphttp_start(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                     void *ud, pt_upcall_t **out);

/**
 * http.c: continues a call of h2.c over HTTP/1.1 on endpoint `idx` (an https://
 * endpoint that picked http/1.1 in ALPN): `pol` is the call's policy state
 * (the new call takes it over on success: the caller forgets its copy; on
 * failure it stays the caller's), `deadline_ms` (pt_now_ms clock) the call's
 * deadline. Same contract as pt_upcall_start otherwise; PT_ERR_TIMEOUT when
 * the deadline passed already.
 */
int pt__uphttp_start_on(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                        void *ud, pt_upcall_t **out, size_t idx, const pt_policy_try_t *pol,
                        uint64_t deadline_ms);

/** http.c: per-worker curl multi handle bound to the worker's loop; stored in uw->curl. */
int pt__uphttp_worker_init(pt__upworker_t *uw);

/**
 * http.c: releases the worker's curl state. Calls still running are dropped
 * without callbacks (the worker is exiting).
 */
void pt__uphttp_worker_dispose(pt__upworker_t *uw);

/* ---- native HTTP/1.1 back end (h1.c) ------------------------------------- */

/** h1.c: starts a call on a cluster whose back end is PT__UP_H1 (same contract). */
int pt__uph1_start(pt__upworker_t *uw, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                   void *ud, pt_upcall_t **out);

/** h1.c: per-worker pools and call free list; stored in uw->h1. */
int pt__uph1_worker_init(pt__upworker_t *uw);

/** h1.c: closes every pooled connection; running calls are dropped without callbacks. */
void pt__uph1_worker_dispose(pt__upworker_t *uw);

/**
 * h1.c: whether endpoint `ep` can be reached by the native client (plain
 * http:// with an IP address, or "localhost").
 */
bool pt__uph1_endpoint_ok(const pt_endpoint_t *ep);
/** h1.c can carry a tunnel (an upgrade) to it: an IP address or localhost, http:// or https://. */
bool pt__uph1_tunnel_ok(const pt_endpoint_t *ep);

#endif /* PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H */
