/*
 * health.h -- active health checks of cluster endpoints (`health_check:`).
 *
 * One prober for the whole process, on the main thread's loop (beside the
 * admin listener): each distinct check (endpoint URL + TLS settings + kind
 * of probe) is probed once per interval, whatever the number of workers or of
 * clusters naming the endpoint. Its verdict is one atomic flag per check,
 * which every worker reads without a lock (pt_health_endpoint_up, consulted
 * by the endpoint policy's pick).
 *
 *   health_check: { type: http, path: /healthz, interval: 1s, timeout: 500ms,
 *                   unhealthy: 2, healthy: 1, expect: [200-299], fail_open: true }
 *   health_check: { type: grpc, service: my.Service }   # grpc.health.v1.Health/Check
 *   health_check: { type: tcp }                          # connect only
 *
 * Lifetimes. A check's state lives in a process-wide registry, keyed by what
 * is probed; each configuration snapshot naming it holds a reference (taken
 * at load, released with the snapshot), and so does the prober while the
 * current snapshot names it. A reload that keeps the endpoint and its probe
 * keeps its state (healthy or not, counters); a new check starts healthy and
 * is probed at once.
 */
#ifndef PT_GATEWAY_UPSTREAM_HEALTH_H
#define PT_GATEWAY_UPSTREAM_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/cluster.h"
#include "portico/conf.h"

struct event_base;
typedef struct pt_config pt_config_t; /* core/config.h */

typedef enum pt_health_type {
    PT_HEALTH_HTTP = 0, /* GET path over HTTP/1.1 (HTTP/2 for http2 clusters); status in `expect` */
    PT_HEALTH_GRPC,     /* grpc.health.v1.Health/Check over HTTP/2; SERVING */
    PT_HEALTH_TCP,      /* the connection (and TLS handshake for https) is made */
} pt_health_type_t;

enum { PT_HEALTH_MAX_EXPECT = 16 };

/** One state per distinct check (registry entry). Opaque. */
typedef struct pt_health_ep pt_health_ep_t;

/** A cluster's `health_check:` as loaded (snapshot memory). */
struct pt_health_conf {
    pt_health_type_t type;
    const char *path;          /* http: request target ("/") */
    const char *service;       /* grpc: HealthCheckRequest.service ("" = the whole server) */
    uint64_t interval_ms;      /* between checks of one endpoint (5 s) */
    uint64_t timeout_ms;       /* one check, connect included (1 s; at most interval) */
    uint32_t unhealthy;        /* consecutive failures that mark an endpoint down (3) */
    uint32_t healthy;          /* consecutive successes that bring it back (2) */
    bool fail_open;            /* every endpoint down: use them all anyway (true), or 503 */
    struct { uint16_t lo, hi; } expect[PT_HEALTH_MAX_EXPECT]; /* http: accepted statuses (200-299) */
    size_t expect_cnt;
    pt_health_ep_t **eps;      /* per endpoint of the cluster, one reference each */
    const pt_conf_node_t *node;
};

/**
 * Reads `health_check:` of cluster `cl` (its endpoints and TLS settings are
 * set) from `n` and attaches the registry entries (released with the
 * snapshot). Errors go through pt_conf_error; returns NULL then.
 */
const pt_health_conf_t *pt__health_conf_parse(pt_conf_cx_t *cx, const pt_conf_node_t *n,
                                              const pt_cluster_t *cl);

/**
 * True when endpoint `ep` of `cl` may take traffic as far as active checks
 * go: no health_check configured, the endpoint passes its checks, or every
 * endpoint of the cluster fails them and fail_open is on. Any thread; no lock.
 */
bool pt_health_endpoint_up(const pt_cluster_t *cl, size_t ep);

/** Starts the prober on `base` (the main thread's loop). Main thread. Returns 0 or PT_ERR_*. */
int pt_health_start(struct event_base *base);

/**
 * Probes what `config` names from now on: new checks start at once (healthy
 * until proven otherwise), checks no longer named stop. Main thread.
 */
void pt_health_reconfigure(const pt_config_t *config);

/** Stops every probe and frees the prober (main thread, at exit). */
void pt_health_stop(void);

/** Prometheus lines for the clusters of `config` (admin /metrics; main thread). */
void pt_health_metrics(FILE *f, const pt_config_t *config);

/** The JSON document of admin GET /upstreams: health per cluster and endpoint (main thread). */
void pt_health_json(FILE *f, const pt_config_t *config);

#endif /* PT_GATEWAY_UPSTREAM_HEALTH_H */
