/*
 * trace.h -- W3C Trace Context and span export (OTLP/HTTP JSON), issue 13.
 *
 * With `tracing:` configured, every request gets a trace context before its
 * filters and handler run (pt_trace_request_start, from the core): the
 * client's `traceparent` is continued (same trace id, Portico's own span id,
 * the client's span as parent), a missing or malformed one starts a new
 * trace. The request's `traceparent` header is replaced by Portico's, so every
 * handler forwards it as it forwards headers (REST upstreams as a header,
 * gRPC upstreams as metadata); `tracestate` passes unchanged.
 *
 * Spans: one server span per request (pt_trace_request_end) and one client
 * span per upstream call (upstream/call.c, from the traceparent in the call's
 * headers), written by the worker into its own bounded ring (never a lock,
 * never a wait: a full ring drops the span and counts it). An exporter thread
 * drains the rings every flush interval (or when one is a quarter full) and POSTs
 * batches as OTLP/HTTP JSON with libcurl; workers never see the network.
 */
#ifndef PT_GATEWAY_TRACE_H
#define PT_GATEWAY_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include "core/config.h"
#include "portico/conf.h"
#include "portico/headers.h"
#include "portico/str.h"
#include "portico/arena.h"

typedef struct pt_req pt_req_t;
typedef struct pt_worker pt_worker_t;
typedef struct pt_upcall_req pt_upcall_req_t;

/** Parses the `tracing:` map (FILE:LINE:COL errors through cx). Returns 0 or PT_ERR_INVALID. */
int pt_tracing_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_tracing_conf_t *out);

/** A request's trace context (in the request arena). */
typedef struct pt_trace {
    uint8_t trace_id[16];
    uint8_t span_id[8];   /* Portico's server span */
    uint8_t parent_id[8]; /* the client's span, when continued */
    bool has_parent;
    bool sampled;
    char trace_hex[33];
    char traceparent[55]; /* Portico's (the server span's), the request's header value */
} pt_trace_t;

/**
 * Parses a traceparent value (version 00 exactly as W3C Trace Context level 1
 * gives it; a higher version is read by its first four fields). Returns 0 and
 * fills trace_id, parent_id (the header's parent-id) and sampled, or
 * PT_ERR_INVALID (wrong length or characters, uppercase hex, all-zero ids,
 * version ff).
 */
int pt_traceparent_parse(pt_str_t v, uint8_t trace_id[16], uint8_t parent_id[8], bool *sampled);

/**
 * A traceparent value for one upstream call of a traced request: t's trace id
 * and sampled flag, a new span id (the call's client span; pass t as the
 * call's `trace` too). 55 characters in `a`; PT_STR_NULL when t is NULL or
 * the arena is full.
 */
pt_str_t pt_trace_child(const pt_trace_t *t, pt_arena_t *a);

/**
 * For a handler building an upstream call's headers itself: adds a child
 * traceparent (pt_trace_child) and the request's tracestate to `out` (copied
 * into out's arena). Nothing without tracing. Returns 0 or PT_ERR_LIMIT.
 */
int pt_trace_add_headers(const pt_req_t *req, pt_headers_t *out);

/** Core: sets up req->trace and the traceparent header when the config has tracing. */
void pt_trace_request_start(pt_req_t *req);
/** Observe: records the server span of a finished request (when sampled). */
void pt_trace_request_end(pt_req_t *req, uint64_t now_ns);

/** A client span in progress (upstream/call.c). */
typedef struct pt_trace_call pt_trace_call_t;
/**
 * NULL when the call is not traced (no tracing, no valid sampled traceparent
 * in r->headers). The record comes from the worker's free list.
 */
pt_trace_call_t *pt_trace_call_begin(pt_worker_t *w, const pt_upcall_req_t *r);
/**
 * PT_TRACE_CALL_USER bytes (max_align_t aligned) that live as long as tc:
 * upstream/call.c keeps its callback wrapper there (no allocation per call).
 */
#define PT_TRACE_CALL_USER 160
void *pt_trace_call_user(pt_trace_call_t *tc);
/** The call's response status (0 when none came). */
void pt_trace_call_status(pt_trace_call_t *tc, int http_status);
/**
 * Records the span and releases tc (and its user area): `st` is the call's
 * end (0 or a PT_ERR_*), `endpoint` may be NULL.
 */
void pt_trace_call_end(pt_worker_t *w, pt_trace_call_t *tc, int st, const char *endpoint);

/** Per worker: the span ring (worker thread). */
int pt_trace_worker_init(pt_worker_t *w);
void pt_trace_worker_dispose(pt_worker_t *w);

/** Process totals for /metrics. */
uint64_t pt_trace_spans_exported(void);
uint64_t pt_trace_spans_dropped(void);
uint64_t pt_trace_export_failures(void);

#endif /* PT_GATEWAY_TRACE_H */
