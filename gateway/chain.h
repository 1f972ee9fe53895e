/*
 * chain.h -- running a request through its filter chain (private).
 */
#ifndef PT_GATEWAY_CHAIN_H
#define PT_GATEWAY_CHAIN_H

#include "request.h"

/**
 * Runs the request-header phase from the current position. Ends in one of:
 * the handler started, a local reply sent, or the chain suspended (a filter
 * will call pt_chain_resume()).
 */
void pt__chain_run(pt_req_t *req);

/** request.c: the request side is through; starts the route's handler. */
void pt__req_start_handler(pt_req_t *req);

/** Response-header phase over the filters that ran, in reverse. Returns 0 or a PT_ERR_*. */
int pt__chain_response_head(pt_req_t *req);

/**
 * Response-body phase over `data` (in reverse order). Filters observe the
 * slice; returns 0 or a PT_ERR_*.
 */
int pt__chain_response_body(pt_req_t *req, const void *data, size_t len, bool end);

/** Request-body phase (chain order) over bytes read by the handler. Returns 0 or a PT_ERR_*. */
int pt__chain_request_body(pt_req_t *req, const void *data, size_t len, bool end);

/** Log phase over the filters that ran (chain order). */
void pt__chain_log(pt_req_t *req);

/**
 * Builds the JSON error body of `st` for `req` into the arena:
 * {"error":{"code":"NOT_FOUND","message":"...","detail":"...","request_id":"..."}}.
 * `detail` (a static reason) is included only for 4xx statuses: it names what
 * was wrong with the client's input; server-side reasons are never exposed.
 */
pt_str_t pt__error_body(pt_req_t *req, int st, const char *detail);

#endif /* PT_GATEWAY_CHAIN_H */
