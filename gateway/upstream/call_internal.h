/*
 * call_internal.h -- what call.c shares with the protocol back ends
 * (http.c for REST clusters, grpc.c later).
 *
 * Every pt_upcall_t starts with a pointer to its back end's ops, so the
 * public functions in call.c dispatch without knowing the back end.
 */
#ifndef PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H
#define PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H

#include "call.h"

typedef struct pt__upcall_ops {
    void (*body_ready)(pt_upcall_t *c);
    void (*resume)(pt_upcall_t *c);
    void (*cancel)(pt_upcall_t *c);
    const char *(*endpoint)(const pt_upcall_t *c);
} pt__upcall_ops_t;

/** The common head of every back end's call struct (its first member). */
struct pt_upcall {
    const pt__upcall_ops_t *ops;
};

/**
 * http.c: starts a call on a PT_PROTO_HTTP cluster (same contract as
 * pt_upcall_start). Returns PT_ERR_INTERNAL when the worker was not set up
 * with pt__uphttp_worker_init().
 */
int pt__uphttp_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                     void *ud, pt_upcall_t **out);

/** http.c: per-worker curl multi handle bound to w->base; stored in w->upstream_http. */
int pt__uphttp_worker_init(pt_worker_t *w);

/**
 * http.c: releases the worker's curl state. Calls still running are dropped
 * without callbacks (the worker is exiting).
 */
void pt__uphttp_worker_dispose(pt_worker_t *w);

#endif /* PT_GATEWAY_UPSTREAM_CALL_INTERNAL_H */
