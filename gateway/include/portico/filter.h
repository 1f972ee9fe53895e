/*
 * filter.h -- the filter (plugin) interface.
 *
 * A filter is a pt_filter_def_t: a config parser plus per-request phase
 * callbacks. Built-in filters are listed in plugins/builtin.c; the same
 * definition can be loaded from a shared object exporting the symbol
 * `pt_filter_def` (checked against PT_FILTER_ABI).
 *
 * The contract:
 * 1. Request-side phases run in chain order (global filters first, then the
 *    route's). Response-side phases run in reverse order, so each filter wraps
 *    the later ones. on_log runs in chain order for every request that reached
 *    the chain, aborted ones included.
 * 2. `f->conf` is read-only at request time and shared by all workers.
 *    Mutable per-worker state is reached through pt_worker_filter_state().
 *    Nothing is stored in statics.
 * 3. A local reply (PT_FILTER_RESPOND, or a gateway error) still goes
 *    through the response-side filters of the filters that ran.
 * 4. Every phase that can wait may return PT_FILTER_SUSPEND: request
 *    headers, request body, response headers, response body. The filter then
 *    touches `req` only from its completion callback, on the same worker, and
 *    calls pt_chain_resume() exactly once. If the client goes away first,
 *    hooks registered with pt_req_on_abort() fire; they must cancel or detach
 *    the pending work, and pt_chain_resume() must then never be called: the
 *    request may already be freed. Abort hooks stay registered for the whole
 *    request, so they must be idempotent and keep their data in the request
 *    arena (or detach it). Timers, upstream calls and Redis commands for
 *    such work are in portico/async.h and portico/redis.h.
 * 5. Body phases transform (see pt_body_out_t below): a body filter gets the
 *    input slices and `end`, and produces its output with pt_body_write()
 *    (copied) or pt_body_pass() (the input slices forwarded without a copy).
 *    What it does not produce is gone, so a filter that only looks at the
 *    bytes passes them on with pt_body_pass(out, in). It may produce more,
 *    less or later (hold bytes in its ctx and write them at `end`). Slices
 *    are valid only during the call. A body phase that returns SUSPEND has
 *    NOT consumed `in`: the chain keeps those bytes (and queues what arrives
 *    meanwhile, with backpressure on the client or the handler) and calls the
 *    filter again with them after pt_chain_resume(req, PT_FILTER_CONTINUE).
 *    It must write nothing to `out` in that call.
 * 6. A filter that changes a body's length says so before the head goes on:
 *    pt_req_set_body_length(req, -1) in on_request_headers (the request goes
 *    upstream without Content-Length), pt_req_set_resp_body_length(req, -1)
 *    in on_response_headers (the client gets chunked / HTTP/2 without
 *    content-length). A body whose length disagrees with the Content-Length
 *    that was sent is cut off (the peer sees a truncation, never a wrong
 *    body), and the log names the filter's mistake.
 * 7. A route with `request_buffering: true` runs the request-body filters
 *    over the whole body (up to the route's max_body) before the handler
 *    starts: a filter can then refuse (ERROR, or RESPOND with a local reply)
 *    before anything reaches an upstream, and the upstream gets the
 *    transformed body with its exact Content-Length.
 * 8. Tunnels (an HTTP/1.1 Upgrade answered 101, an HTTP/2 extended CONNECT):
 *    the header phases run for the handshake; the bytes of the session are
 *    not an HTTP body and never pass the body phases.
 * 9. Response-side RESPOND (from on_response_headers) replaces the response:
 *    pt_req_respond() set the new status and body, the handler's body is
 *    discarded, and the filters that wrap this one still see the new one.
 */
#ifndef PT_PORTICO_FILTER_H
#define PT_PORTICO_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"
#include "portico/req.h"

/** Bumped whenever pt_filter_def_t or the SDK changes incompatibly. */
#define PT_FILTER_ABI 0x50540002u

typedef enum pt_fstatus {
    PT_FILTER_CONTINUE = 0, /* hand the exchange to the next filter */
    PT_FILTER_RESPOND = 1,  /* the filter called pt_req_respond(); skip the rest of the request side */
    PT_FILTER_SUSPEND = 2,  /* async work started; pt_chain_resume() comes later, once, on this worker */
    PT_FILTER_ERROR = -1,   /* internal failure; pt_req_fail() said why; the chain answers and logs it */
} pt_fstatus_t;

typedef struct pt_filter_def pt_filter_def_t;

/** A configured filter instance: immutable, shared by all workers. */
typedef struct pt_filter {
    const pt_filter_def_t *def;
    const void *conf;   /* def->conf_size bytes filled by the field table / parse_conf */
    unsigned slot;      /* index of this instance's per-request ctx and per-worker state */
} pt_filter_t;

/** A slice list for body phases. */
typedef struct pt_bufvec {
    const pt_str_t *v;
    size_t cnt;
} pt_bufvec_t;

/**
 * Where a body phase puts its output: the next filter's input (request side:
 * at the end, the handler's; response side: the client's). Valid only during
 * the body-phase call it was passed to.
 */
typedef struct pt_body_out pt_body_out_t;

/**
 * Appends a copy of `len` bytes at `data` to the output. Returns 0, or
 * PT_ERR_LIMIT when the request's body memory cap is reached (return
 * PT_FILTER_ERROR then; the chain answers 413 / truncates).
 */
int pt_body_write(pt_body_out_t *out, const void *data, size_t len);

/**
 * Appends the slices of `in` to the output without copying them (they must
 * be slices the filter was given in this call, or memory that outlives the
 * request). Returns 0 or PT_ERR_LIMIT.
 */
int pt_body_pass(pt_body_out_t *out, const pt_bufvec_t *in);

struct pt_filter_def {
    uint32_t abi;          /* PT_FILTER_ABI */
    const char *name;      /* config key, e.g. "headers" */
    int priority;          /* order among global filters: higher first (route filters keep config order) */
    size_t conf_size;      /* bytes of parsed config (zeroed before parsing) */
    size_t ctx_size;       /* bytes of per-request state (zeroed, in the request arena) */
    const pt_conf_field_t *fields; /* declarative keys, or NULL when parse_conf does it all */
    /* load time, main thread; errors through pt_conf_error() */
    int (*parse_conf)(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf);
    int (*check_conf)(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf);
    void (*conf_dispose)(void *conf); /* when the last snapshot using it is released */
    /* per worker, on that worker's thread */
    int (*worker_init)(const pt_filter_t *f, pt_worker_t *w);
    void (*worker_dispose)(const pt_filter_t *f, pt_worker_t *w);
    /* per request; each may be NULL */
    pt_fstatus_t (*on_request_headers)(const pt_filter_t *f, pt_req_t *req, void *ctx);
    pt_fstatus_t (*on_request_body)(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out);
    pt_fstatus_t (*on_response_headers)(const pt_filter_t *f, pt_req_t *req, void *ctx);
    pt_fstatus_t (*on_response_body)(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out);
    void (*on_log)(const pt_filter_t *f, pt_req_t *req, void *ctx);
};

/**
 * Resumes a chain suspended by PT_FILTER_SUSPEND, with the filter's verdict:
 * CONTINUE (go on; a body phase is called again with the bytes it did not
 * consume), RESPOND (request headers / request body in a buffering route /
 * response headers: the reply made with pt_req_respond()), ERROR (the status
 * given to pt_req_fail() is answered, or the response is cut off if it had
 * started). Call it once, on the request's worker; it may run the rest of the
 * chain, the handler and the codec before it returns, and may free the
 * request: touch nothing of it afterwards. Never call it after your abort
 * hook ran (cancel or detach in the hook instead).
 */
void pt_chain_resume(pt_req_t *req, pt_fstatus_t st);

/** Per-worker state a filter allocated in worker_init (stored with pt_worker_filter_state_set). */
void *pt_worker_filter_state(pt_worker_t *w, const pt_filter_t *f);
void pt_worker_filter_state_set(pt_worker_t *w, const pt_filter_t *f, void *state);

#endif /* PT_PORTICO_FILTER_H */
