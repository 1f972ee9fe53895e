/*
 * chain.h -- running a request through its filter chain (private).
 *
 * Every phase of filter.h runs here: request headers, request body, response
 * headers, response body and log, with suspension (contract 4) possible in
 * the first four. The chain only runs filters and reports outcomes; the
 * request core (request.c) decides what follows -- starting the handler,
 * answering, resuming -- so calls go one way, request.c -> chain.c. Handlers
 * never call the chain directly, they use pt__resp_* and pt__req_body_read.
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

#include "core/request.h"

/** What a body pipeline did with the bytes it was given. */
typedef enum pt_pipe {
    PT_PIPE_DONE,    /* everything went through and was delivered */
    PT_PIPE_WAIT,    /* queued: a filter waits (or the request side is not open yet) */
    PT_PIPE_FAILED,  /* a filter failed or refused (pt_req_fail said why) */
    PT_PIPE_RESPOND, /* request side: a filter made a local reply (pt_req_respond) */
} pt_pipe_t;

/**
 * Runs the request-header phase from req->chain_pos. Returns CONTINUE (every
 * filter passed: the handler may start), RESPOND, ERROR, or SUSPEND (req->wait
 * is set and the chain holds the request until pt_chain_resume()).
 */
pt_fstatus_t pt__chain_run(pt_req_t *req);

/**
 * Request body for a route with request-body filters or request_buffering:
 * queued (copied), then run through the filters if the side is open and no
 * filter waits. Output goes to req->body (req->body_out_done at the end).
 * *raw is set to the queued input bytes the run consumed.
 */
pt_pipe_t pt__chain_req_body(pt_req_t *req, const void *data, size_t len, bool end, size_t *raw);

/** Opens the request side (the handler starts, or buffering begins) and runs what is queued. */
pt_pipe_t pt__chain_req_open(pt_req_t *req, size_t *raw);

/** After a request-body filter resumed with CONTINUE: runs its parked input, then the queue. */
pt_pipe_t pt__chain_req_resume(pt_req_t *req, size_t *raw);

/** Request bytes queued in the chain before the filters (not in req->body yet). */
size_t pt__chain_req_queued(const pt_req_t *req);

/**
 * Response-header filters (reverse order) from `step` on. A RESPOND or ERROR
 * replaces the response (pt__chain_resp_replace). Returns CONTINUE (the head
 * is ready for the codec) or SUSPEND (req->wait, req->wait_step are set).
 */
pt_fstatus_t pt__chain_resp_head(pt_req_t *req, size_t step);

/**
 * The response becomes the local reply of a response-side RESPOND (or a JSON
 * error for ERROR) made at `step`; later body filters start after `step`,
 * the handler's body is dropped.
 */
void pt__chain_resp_replace(pt_req_t *req, pt_fstatus_t st, size_t step);

/**
 * Response body: through the response-body filters to the codec (DONE),
 * queued while a filter waits (WAIT), or FAILED (the caller cuts the
 * response off).
 */
pt_pipe_t pt__chain_resp_body(pt_req_t *req, const void *data, size_t len, bool end);

/** pt__chain_resp_body(..., end) with a block handed over (see pt__resp_body_owned). */
pt_pipe_t pt__chain_resp_body_owned(pt_req_t *req, const void *data, size_t len,
                                    pt_body_release_fn release, void *arg);

/** Runs what the response side queued (after the head went out, or a body filter resumed). */
pt_pipe_t pt__chain_resp_flush(pt_req_t *req, bool resumed);

/** Response bytes queued in the chain (not yet handed to the codec). */
size_t pt__chain_resp_queued(const pt_req_t *req);

/** The client went away or the request is being finalised: forget any suspension. */
void pt__chain_abandon(pt_req_t *req);

/** Frees the body pipelines (finalisation). */
void pt__chain_dispose(pt_req_t *req);

/** Log phase over the filters that ran (chain order). */
void pt__chain_log(pt_req_t *req);

/**
 * Builds the JSON error body of `st` for `req` into the arena:
 * {"error":{"code":"NOT_FOUND","message":"...","detail":"...","request_id":"..."}}.
 * `detail` (a static reason) is included only for 4xx statuses: it names what
 * was wrong with the client's input; server-side reasons are never exposed.
 */
pt_str_t pt__error_body(pt_req_t *req, int st, const char *detail);

/** The client speaks gRPC: content-type application/grpc-web* (any HTTP version), or application/grpc[+x] over HTTP/2. */
bool pt__req_is_grpc(const pt_req_t *req);

/** `msg` percent-encoded as a grpc-message value (in arena `a`; "" when it is full). */
pt_str_t pt__grpc_pct_encode(pt_arena_t *a, const char *msg);

/**
 * Makes the local reply a Trailers-Only gRPC answer for status `st`: HTTP 200,
 * content-type application/grpc (or the client's gRPC-Web type), grpc-status
 * pt_status_grpc(st) and grpc-message (`detail` for 4xx statuses, else the
 * public message); other response headers already set stay. Returns 0 or
 * PT_ERR_LIMIT.
 */
int pt__grpc_local_reply(pt_req_t *req, int st, const char *detail);

#endif /* PT_GATEWAY_CHAIN_H */
