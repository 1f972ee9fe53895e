/*
 * chain.h -- running a request through its filter chain (private).
 *
 * Every phase of filter.h runs here: request headers, request body, response
 * headers, response body and log, with suspension (contract 4) possible in
 * the first four. The chain reports outcomes to request.c through the
 * functions marked "request.c:" below; handlers never call the chain
 * directly, they use pt__resp_* and pt__req_body_read (request.h).
 *
 * Body pipelines: each side (PT_SIDE_REQ, PT_SIDE_RESP) has a queue of bytes
 * that entered but could not run yet (a filter is suspended, or the request
 * side is not open yet), and a "park" holding the input of the suspended
 * filter. A run passes one input through the filters in order (request side:
 * chain order; response side: reverse), each filter's output being the next
 * one's input, and delivers the last output (to req->body for the handler, or
 * to the codec). Outputs live in a per-request scratch store that is emptied
 * after each run, so nothing is allocated per chunk once it has warmed up.
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

/**
 * Response head: runs the response-header filters (reverse order) over the
 * filters that ran, then hands the head to the codec -- now, or when a
 * suspended filter resumes. Body bytes given meanwhile are queued.
 */
void pt__chain_resp_head(pt_req_t *req);

/**
 * Response body: runs the response-body filters over `data` and hands their
 * output to the codec, or queues it while a filter is suspended. On a
 * filter error the response is cut off (ops->reset).
 */
void pt__chain_resp_body(pt_req_t *req, const void *data, size_t len, bool end);

/** Response bytes queued in the chain (not yet handed to the codec). */
size_t pt__chain_resp_queued(const pt_req_t *req);

/**
 * Request body from the codec for a route with request-body filters or
 * request_buffering: queued (copied), then run through the filters once the
 * request side is open. The output goes to req->body.
 */
void pt__chain_req_body(pt_req_t *req, const void *data, size_t len, bool end);

/** Request bytes queued in the chain before the filters (not in req->body yet). */
size_t pt__chain_req_queued(const pt_req_t *req);

/** Opens the request-body pipeline (the handler starts, or buffering begins) and runs what is queued. */
void pt__chain_req_open(pt_req_t *req);

/** The client went away or the request is being finalised: forget any suspension. */
void pt__chain_abandon(pt_req_t *req);

/** Frees the body pipelines (finalisation). */
void pt__chain_dispose(pt_req_t *req);

/** Log phase over the filters that ran (chain order). */
void pt__chain_log(pt_req_t *req);

/** request.c: the filtered request body ended (req->body_out_done is set). */
void pt__req_body_filtered_end(pt_req_t *req);

/** request.c: new filtered request body bytes are in req->body (raw_len input bytes consumed). */
void pt__req_body_filtered(pt_req_t *req, size_t raw_len);

/**
 * request.c: a request-body filter refused (ERROR) or answered (RESPOND):
 * answer the client, stop reading the body, stop the handler if it runs.
 */
void pt__req_body_refused(pt_req_t *req, bool respond);

/**
 * Builds the JSON error body of `st` for `req` into the arena:
 * {"error":{"code":"NOT_FOUND","message":"...","detail":"...","request_id":"..."}}.
 * `detail` (a static reason) is included only for 4xx statuses: it names what
 * was wrong with the client's input; server-side reasons are never exposed.
 */
pt_str_t pt__error_body(pt_req_t *req, int st, const char *detail);

#endif /* PT_GATEWAY_CHAIN_H */
