/*
 * async.h -- asynchronous work for filters: timers and upstream calls.
 *
 * A filter that must wait (a JWKS fetch, an OAuth2 introspection, an external
 * authorisation check, a delay) starts the work here, returns
 * PT_FILTER_SUSPEND, and calls pt_chain_resume() from the completion
 * callback (filter.h, contract 4). Everything runs on the worker's event
 * loop: callbacks come on the thread that started the work, never inline
 * from the start function, and never after a cancel.
 *
 * Upstream calls go through the same primitive, endpoint policy and pools as
 * the proxy handler's (upstream/call.h); a filter names a cluster of the
 * config, resolved once at load time with pt_conf_cluster().
 *
 * Callback rule (libuv's): a start function either returns an error and never
 * calls the callback, or returns 0 and calls it exactly once -- unless the
 * work is cancelled first, after which it is never called.
 *
 * This header includes no libevent, nghttp2 or libcurl type; plugins built
 * against the installed SDK headers use it as it is.
 */
#ifndef PT_PORTICO_ASYNC_H
#define PT_PORTICO_ASYNC_H

#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/str.h"

/* ---- timers ------------------------------------------------------------- */

typedef struct pt_timer pt_timer_t;
typedef void (*pt_timer_cb)(void *ud);

/**
 * Calls `cb(ud)` once, `delay_ms` milliseconds from now, on worker `w`'s loop
 * (0: on the next loop iteration). The timer frees itself after the call;
 * *out is valid until then (or until pt_timer_cancel). Returns 0, or
 * PT_ERR_NOMEM. Worker thread only.
 */
int pt_timer_start(pt_worker_t *w, uint64_t delay_ms, pt_timer_cb cb, void *ud, pt_timer_t **out);

/** Cancels a pending timer and frees it: `cb` is not called. */
void pt_timer_cancel(pt_timer_t *t);

/* ---- upstream calls ----------------------------------------------------- */

/** A cluster of the config snapshot, as a filter's config holds it. */
typedef struct pt_cluster_ref pt_cluster_ref_t;

/**
 * Looks up cluster `name` of the snapshot being loaded, from a filter's
 * parse_conf or check_conf. An unknown name is reported at `at` (FILE:LINE:COL)
 * and NULL returned. The reference is valid as long as that snapshot, i.e.
 * as long as the filter's conf.
 */
const pt_cluster_ref_t *pt_conf_cluster(pt_conf_cx_t *cx, const pt_conf_node_t *at,
                                        const char *name);

/**
 * The name of the first cluster of the snapshot being loaded with an endpoint
 * at `url`'s origin (http:// or https://, host compared without case, IPv6 in
 * brackets, default ports 80/443), or NULL when none has. Reports nothing:
 * the caller says what it wanted the cluster for. Load time.
 */
const char *pt_conf_cluster_for_url(pt_conf_cx_t *cx, const char *url);

/** Monotonic clock, for filters' expiry times and rates (the worker's clock). */
uint64_t pt_clock_ms(void);
uint64_t pt_clock_ns(void);

typedef struct pt_fetch pt_fetch_t;

typedef struct pt_fetch_req {
    const pt_cluster_ref_t *cluster;
    pt_str_t method;             /* empty: GET */
    pt_str_t path;               /* path and query ("/check?x=1"); empty: "/" */
    pt_str_t authority;          /* Host to send; empty: the cluster's authority or the endpoint */
    const pt_headers_t *headers; /* extra request headers, or NULL (no hop-by-hop ones) */
    pt_str_t body;               /* request body (sent with Content-Length), may be empty */
    uint64_t timeout_ms;         /* whole exchange; 0: the cluster's timeout */
    size_t max_response;         /* response body bytes accepted; 0: 1 MiB; more -> PT_ERR_LIMIT */
} pt_fetch_req_t;

typedef struct pt_fetch_resp {
    int status;                  /* HTTP status */
    const pt_header_t *headers;  /* lowercase names */
    size_t header_cnt;
    pt_str_t body;
} pt_fetch_resp_t;

/**
 * Completion of a fetch: `st` is 0 with `resp` set (any HTTP status is a
 * completed call), or PT_ERR_UNAVAILABLE (no endpoint could be reached),
 * PT_ERR_UPSTREAM (connection failed or a bad response), PT_ERR_TIMEOUT,
 * PT_ERR_LIMIT (the body was larger than max_response) with `resp` NULL.
 * `resp` and everything it points to are valid during the call only.
 */
typedef void (*pt_fetch_cb)(void *ud, int st, const pt_fetch_resp_t *resp);

/**
 * Sends one request to a cluster on worker `w` and collects the whole
 * response. Everything in `r` is copied: it need not outlive this call.
 * Returns 0 and sets *out (valid until the callback returns or
 * pt_fetch_cancel), or PT_ERR_INVALID (no cluster), PT_ERR_UNAVAILABLE.
 * Worker thread only.
 */
int pt_fetch_start(pt_worker_t *w, const pt_fetch_req_t *r, pt_fetch_cb cb, void *ud,
                   pt_fetch_t **out);

/** Cancels a fetch in flight and frees it: the callback is not called. */
void pt_fetch_cancel(pt_fetch_t *f);

#endif /* PT_PORTICO_ASYNC_H */
