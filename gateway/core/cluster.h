/*
 * cluster.h -- an upstream cluster as configured (`clusters:`) and its endpoints.
 * Types only (the configuration snapshot, core/config.h, holds these; a file
 * that only needs them includes this, not config.h).
 */
#ifndef PT_GATEWAY_CLUSTER_H
#define PT_GATEWAY_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"

typedef enum pt_proto { PT_PROTO_HTTP = 0, PT_PROTO_GRPC = 1 } pt_proto_t;

typedef struct pt_health_conf pt_health_conf_t; /* upstream/health.h */

typedef struct pt_endpoint {
    const char *url;        /* "http://127.0.0.1:9000" (no trailing slash) */
    const char *host;       /* "127.0.0.1" */
    uint16_t port;
    bool tls;
    const pt_conf_node_t *node;
} pt_endpoint_t;

typedef struct pt_cluster {
    const char *name;
    unsigned index;         /* position in config->clusters, for per-worker state arrays */
    pt_proto_t protocol;
    pt_endpoint_t *endpoints;
    size_t endpoint_cnt;
    uint64_t connect_timeout_ms; /* 5 s */
    uint64_t timeout_ms;         /* whole upstream exchange (15 s); route may override */
    unsigned retries;            /* extra attempts on another endpoint when connecting fails (1) */
    bool http2;                  /* talk HTTP/2 to the endpoints (h2c prior knowledge / ALPN) */
    bool tls_verify;             /* verify upstream certificates (true) */
    const char *ca_file;         /* CA bundle for tls_verify, or NULL for the system store */
    const char *authority;       /* Host/:authority override, or NULL to forward the client's */
    uint32_t max_idle_per_endpoint; /* pooled connections kept per endpoint per worker (64) */
    uint32_t max_conns_per_endpoint;   /* open connections per endpoint per worker (0: 128 HTTP/1.1, 8 HTTP/2) */
    uint32_t max_pending_per_endpoint; /* calls waiting for one of them per worker (1024), then 503 */
    const pt_health_conf_t *health_check; /* active checks (upstream/health.h), or NULL */
    const pt_conf_node_t *node;
} pt_cluster_t;

#endif /* PT_GATEWAY_CLUSTER_H */
