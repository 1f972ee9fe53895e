/*
 * observe.h -- metrics, access log and the admin listener.
 *
 * Workers record into their own metrics shard (no locks, no shared cache
 * lines on the hot path); the admin endpoint sums the shards when scraped.
 * The access log is one JSON line per request, buffered per worker and
 * written with O_APPEND so lines from different workers never interleave.
 */
#ifndef PT_GATEWAY_OBSERVE_H
#define PT_GATEWAY_OBSERVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include "core/cluster.h"
#include "portico/req.h"

typedef struct pt_config pt_config_t; /* core/config.h */

struct event_base;
typedef struct pt_server pt_server_t;

/** Per-worker setup/teardown (worker thread): metrics shard, access log buffer. */
int pt_observe_worker_init(pt_worker_t *w);
void pt_observe_worker_dispose(pt_worker_t *w);

/**
 * Records a finished request: metrics (requests by route and status, latency
 * histogram, upstream errors, bytes) and the access log line. Called once per
 * request by request.c, after the log phase, before the arena is freed.
 */
void pt_observe_request(pt_req_t *req);

/** Connection gauges (worker thread). */
void pt_observe_conn_open(pt_worker_t *w);
void pt_observe_conn_close(pt_worker_t *w);

/** Tunnel session gauges (worker thread; tunnel.c): opened, and ended (finalised). */
void pt_observe_tunnel_open(pt_worker_t *w);
void pt_observe_tunnel_close(pt_worker_t *w);

/** A WebSocket session started (worker thread; ws.c). Its end is counted with its request. */
void pt_observe_ws_open(pt_worker_t *w);

/** Counts an upstream failure for `cluster` (status is the PT_ERR_* that ended the call). */
void pt_observe_upstream_error(pt_worker_t *w, const pt_cluster_t *cluster, int status);

/**
 * Asks every worker to reopen its access log file (log rotation). Any thread;
 * each worker does it at its next line or flush tick (within 100 ms), after
 * writing what it buffered to the old file. main.c calls it on every SIGHUP,
 * before loading the config, so rotation works even if the new config fails.
 */
void pt_observe_log_reopen(void);

/** Upstream events counted per cluster (besides failed calls). */
typedef enum pt_observe_upevent {
    PT_OBSERVE_UP_LOCAL_ERROR = 0, /* a connection failed for lack of fds/buffers (Portico's own) */
    PT_OBSERVE_UP_QUEUED = 1,      /* a call waited for a connection slot */
    PT_OBSERVE_UP_OVERFLOW = 2,    /* a call got 503 at once: the waiting queue was full */
    PT_OBSERVE_UP_BREAKER = 3,     /* a call got 503 at once: the cluster's circuit_breaker */
    PT_OBSERVE_UP_EJECTION = 4,    /* an endpoint was ejected (outlier detection) */
    PT_OBSERVE_UP_RETRY = 5,        /* a route's retry policy started another attempt */
    PT_OBSERVE_UP_RETRY_BUDGET = 6, /* ... wanted to, but the retry budget was spent */
} pt_observe_upevent_t;

/** Counts upstream event `ev` for `cluster` (worker thread). */
void pt_observe_upstream_event(pt_worker_t *w, const pt_cluster_t *cluster, pt_observe_upevent_t ev);

/** Counts a config reload attempt (main thread). */
void pt_observe_reload(bool ok);

/**
 * The server as the admin endpoint sees it (main.c owns it): the workers (for
 * summing shards), the current config, readiness and draining flags.
 */
struct pt_server {
    pt_worker_t **workers;
    unsigned worker_cnt;
    pt_config_t *(*current_config)(pt_server_t *s); /* returns a new reference */
    bool ready;
    bool draining;
    bool drain_started;          /* worker.c: drain messages were posted */
    atomic_uint stopped_workers; /* worker.c: worker loops that have ended */
    void *admin;                 /* admin.c state */
};

/**
 * Starts the admin HTTP listener of `config` (if any) on `base` (the main
 * thread's loop): GET /healthz, /ready, /metrics (Prometheus text), /config.
 * Returns 0 or a negative PT_ERR_* with a message on stderr.
 */
int pt_admin_start(pt_server_t *s, struct event_base *base, const pt_config_t *config);
/** Moves the admin listener when a reload changed its address (no-op otherwise). */
int pt_admin_reconfigure(pt_server_t *s, const pt_config_t *config);
void pt_admin_stop(pt_server_t *s);

#endif /* PT_GATEWAY_OBSERVE_H */
