/*
 * route.h -- a route as configured (`routes:`): its match, handler and filter chain.
 * Types only (the configuration snapshot, core/config.h, holds these; a file
 * that only needs them includes this, not config.h).
 */
#ifndef PT_GATEWAY_ROUTE_H
#define PT_GATEWAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"
#include "portico/filter.h"

typedef struct pt_handler_def pt_handler_def_t;

typedef enum pt_path_match { PT_PATH_ANY = 0, PT_PATH_EXACT, PT_PATH_PREFIX, PT_PATH_TEMPLATE } pt_path_match_t;

typedef struct pt_header_match {
    const char *name;   /* lowercase */
    const char *value;  /* exact value, or NULL: the header must be present */
} pt_header_match_t;

typedef struct pt_route_match {
    pt_path_match_t path_kind;
    const char *path;              /* exact path, prefix, or template text */
    const void *tmpl;              /* compiled template (router.c) */
    const char **hosts;            /* exact or "*.example.com"; NULL/0 = any */
    size_t host_cnt;
    uint32_t methods;              /* bit set of PT_METHOD_*; 0 = any */
    pt_header_match_t *headers;
    size_t header_cnt;
} pt_route_match_t;

/* Method bits (PT_METHOD_*) and pt_method_bit() are the SDK's: portico/req.h. */

/**
 * A route's `retry:` policy (core/route_retry.c parses it; upstream/retry.c
 * follows it). NULL on the route: the cluster's retry-on-connect only.
 */
enum {
    PT_RETRY_ON_CONNECT = 1u << 0,     /* the connection could not be made */
    PT_RETRY_ON_5XX = 1u << 1,         /* any 5xx answer */
    PT_RETRY_ON_RESET = 1u << 2,       /* the connection/stream died before any response byte */
    PT_RETRY_ON_UNAVAILABLE = 1u << 3, /* gRPC status 14 UNAVAILABLE */
    PT_RETRY_ON_GATEWAY = 1u << 4,     /* 502, 503, 504 answers */
};
typedef struct pt_retry_conf {
    unsigned attempts;             /* all attempts, the first included (2..10) */
    uint32_t on;                   /* PT_RETRY_ON_* */
    uint32_t methods;              /* PT_METHOD_* that may be retried once sent (REST clusters) */
    uint64_t per_try_timeout_ms;   /* 0: each try may take the whole timeout */
    unsigned budget_pct;           /* retries <= this % of the cluster's calls (per worker, 10 s) */
    uint64_t backoff_base_ms, backoff_max_ms;
    uint64_t replay_limit;         /* request body bytes kept for a replay */
} pt_retry_conf_t;

typedef struct pt_route {
    const char *name;              /* `name:` or "route[N]" */
    unsigned index;
    pt_route_match_t match;
    const pt_handler_def_t *handler;
    const void *handler_conf;
    const pt_filter_t **chain;     /* global filters then the route's, in run order */
    size_t chain_cnt;
    uint64_t max_body;             /* from the route or limits.max_body */
    uint64_t timeout_ms;           /* 0 = the cluster's */
    const pt_retry_conf_t *retry;  /* `retry:`, or NULL */
    bool request_buffering;        /* request-body filters run over the whole body before the handler */
    bool has_request_body_filters; /* some filter of `chain` has on_request_body */
    bool has_response_body_filters;
    const pt_conf_node_t *node;
} pt_route_t;

#endif /* PT_GATEWAY_ROUTE_H */
