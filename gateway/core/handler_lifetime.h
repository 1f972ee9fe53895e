/*
 * handler_lifetime.h -- a handler's side of a request's lifetime, written
 * once for every handler (proxy, grpc, websocket, soap, aggregate, ...).
 *
 * A handler keeps its per-request state in the request's arena
 * (req->handler_ctx), so that state lives exactly as long as the request.
 * From start() the handler holds the request; pt_handler_finish() lets go,
 * and that may free the request and the state with it AT ONCE. The client
 * can also go away in the middle of one of the handler's callbacks (a codec
 * may abort synchronously from send_head/send_body: the abort hooks run, and
 * they finish the handler). Hence the rules:
 *
 *   - A callback that does not come from the request layer (an upstream
 *     completion, a timer, a Redis reply) is bracketed:
 *
 *         static void up_on_data(void *ud, const void *p, size_t n)
 *         {
 *             my_ctx_t *ctx = ud;
 *             pt_handler_enter(ctx->req);  // req and ctx stay valid ...
 *             if (pt_handler_gone(ctx->req)) {
 *                 pt_upcall_stop(&ctx->call);
 *                 pt_handler_finish(ctx->req);
 *             } else {
 *                 pt__resp_body(ctx->req, p, n, false);
 *             }
 *             pt_handler_leave(ctx->req);  // ... until here: touch nothing after it
 *         }
 *
 *     Entry points the request layer calls (start, on_body, on_writable,
 *     abort hooks) need no bracket: the core holds the request around them.
 *   - pt_handler_finish() is safe to call more than once; only the first
 *     call releases the hold. Inside a bracket, pt_handler_finished() tells
 *     whether the handler already let go (then it starts nothing new).
 *   - The abort hook (pt_req_on_abort, registered in start()) cancels what
 *     is pending and calls pt_handler_finish().
 *
 * Everything here is inline and costs what the open-coded version did.
 */
#ifndef PT_GATEWAY_HANDLER_LIFETIME_H
#define PT_GATEWAY_HANDLER_LIFETIME_H

#include <stdbool.h>
#include "core/request.h"

/** A callback from outside the request layer starts: `req` stays valid until pt_handler_leave(). */
static inline void pt_handler_enter(pt_req_t *req)
{
    pt__req_enter(req);
}

/** Ends such a callback. It may free `req` (and the handler's state): touch nothing afterwards. */
static inline void pt_handler_leave(pt_req_t *req)
{
    pt__req_leave(req);
}

/**
 * The handler is done with `req` (releases its hold; later calls do nothing).
 * Outside a bracket this may free `req` and everything in its arena.
 */
static inline void pt_handler_finish(pt_req_t *req)
{
    pt__req_handler_done(req);
}

/** True once the handler let go of `req` (meaningful inside a bracket). */
static inline bool pt_handler_finished(const pt_req_t *req)
{
    return (req->holds & PT_REQ_HOLD_HANDLER) == 0;
}

/** Nothing more can be sent: the client went away, or the response is complete. */
static inline bool pt_handler_gone(const pt_req_t *req)
{
    return req->aborted || pt__resp_ended(req);
}

#endif /* PT_GATEWAY_HANDLER_LIFETIME_H */
