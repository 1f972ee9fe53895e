/*
 * h2.h -- the native HTTP/2 upstream back end (upstream/h2.c), private to
 * the upstream call machinery.
 *
 * Calls to `protocol: grpc` clusters and to `http2: true` REST clusters go
 * through nghttp2 client sessions that this back end keeps per worker and per
 * endpoint: a few connections, many concurrent streams each (h2c prior
 * knowledge for http://, TLS + ALPN for https://: gRPC asks for h2 only, REST
 * offers h2 and http/1.1 and continues over HTTP/1.1 through http.c when the
 * server picks it). Same contract as pt_upcall_start() (call.h).
 */
#ifndef PT_GATEWAY_UPSTREAM_H2_H
#define PT_GATEWAY_UPSTREAM_H2_H

#include <stdbool.h>
#include "upstream/call_internal.h"

/** True when calls on `cl` are served by this back end (see the top comment). */
bool pt__uph2_serves(const pt_cluster_t *cl);

/**
 * Starts a call (contract of pt_upcall_start). The worker's state is made on
 * first use. Returns 0 and sets *out, PT_ERR_UNAVAILABLE when every endpoint
 * is ejected (or the cluster has none), PT_ERR_INTERNAL on bad arguments.
 */
int pt__uph2_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs, void *ud,
                   pt_upcall_t **out);

/**
 * Releases the worker's connections (worker thread, at exit). Calls still
 * running are dropped without callbacks. Harmless when nothing was made.
 */
void pt__uph2_worker_dispose(pt_worker_t *w);

/** Counters for tests and the benchmark (the calling worker's; zeros if none). */
typedef struct pt_uph2_stats {
    uint64_t conns_opened;    /* connections made (connect attempts that reached the socket) */
    uint64_t streams;         /* streams submitted */
    uint64_t retries;         /* attempts repeated after REFUSED_STREAM / GOAWAY / connect failure */
    uint64_t h1_calls;        /* calls continued over HTTP/1.1 (the endpoint picked it in ALPN) */
    unsigned conns_live;      /* connections open now */
} pt_uph2_stats_t;

/** Fills *st with worker `w`'s counters. */
void pt__uph2_stats(pt_worker_t *w, pt_uph2_stats_t *st);

#endif /* PT_GATEWAY_UPSTREAM_H2_H */
