/*
 * cluster.h -- an upstream cluster as configured (`clusters:`) and its endpoints.
 * Types only (the configuration snapshot, core/config.h, holds these; a file
 * that only needs them includes this, not config.h).
 */
#ifndef PT_GATEWAY_CLUSTER_H
#define PT_GATEWAY_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"

typedef enum pt_proto { PT_PROTO_HTTP = 0, PT_PROTO_GRPC = 1 } pt_proto_t;

typedef struct pt_endpoint {
    const char *url;        /* "http://127.0.0.1:9000" (no trailing slash) */
    const char *host;       /* "127.0.0.1" */
    uint16_t port;
    bool tls;
    uint32_t weight;        /* share of the traffic relative to the others (1; `weight:`) */
    uint32_t priority;      /* level: 0 first; a higher level takes traffic only when every
                               endpoint of the levels before it is down (`priority:`) */
    const pt_conf_node_t *node;
} pt_endpoint_t;

/** `lb:` how a cluster picks an endpoint (upstream/policy.c). */
typedef enum pt_lb_policy {
    PT_LB_ROUND_ROBIN = 0, /* smooth weighted round robin */
    PT_LB_LEAST_REQUEST,   /* power of two random choices on requests in flight */
    PT_LB_RANDOM,          /* weighted random */
    PT_LB_RING_HASH,       /* consistent hashing of `hash_key` on a ring */
} pt_lb_policy_t;

/** `hash_key:` what ring_hash hashes. */
typedef enum pt_hash_src {
    PT_HASH_CLIENT_IP = 0,
    PT_HASH_HEADER,        /* "header:NAME" */
    PT_HASH_COOKIE,        /* "cookie:NAME" */
} pt_hash_src_t;

/** `outlier:` passive ejection (upstream/policy.c); all zero (a cluster built by hand): the defaults. */
typedef struct pt_outlier {
    uint32_t consecutive_failures; /* failures in a row that eject an endpoint (5) */
    uint64_t base_ejection_ms;     /* first ejection (10 s); the n-th lasts n times as long */
    uint64_t max_ejection_ms;      /* ... capped at this (300 s) */
    uint32_t max_ejection_percent; /* at most this share of the endpoints out at once (50) */
} pt_outlier_t;

/** `circuit_breaker:` per cluster, per process (0: no limit). */
typedef struct pt_breaker {
    uint32_t max_connections; /* open connections to the cluster's endpoints */
    uint32_t max_pending;     /* calls waiting for a connection */
    uint32_t max_requests;    /* calls in flight */
} pt_breaker_t;

/**
 * Process-wide state of one cluster of one snapshot, shared by every worker
 * without a lock (upstream/policy.c counts; the loader allocates it zeroed).
 */
typedef struct pt_cluster_shared {
    atomic_uint requests;  /* calls in flight (circuit_breaker.max_requests) */
    atomic_uint pending;   /* calls waiting for a connection (circuit_breaker.max_pending) */
} pt_cluster_shared_t;

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
    pt_lb_policy_t lb;
    pt_hash_src_t hash_src;      /* ring_hash only */
    const char *hash_name;       /* header name (lowercase) or cookie name, for those sources */
    pt_outlier_t outlier;
    pt_breaker_t breaker;
    pt_cluster_shared_t *shared; /* breaker counters (process-wide, lock-free), from the loader */
    const pt_conf_node_t *node;
} pt_cluster_t;

#endif /* PT_GATEWAY_CLUSTER_H */
