/*
 * worker.h -- worker threads.
 *
 * Each worker is one thread running one libevent loop with its own
 * listeners (SO_REUSEPORT), connections, upstream pools and metrics shard.
 * Nothing on the request path takes a lock. Other threads (the main thread)
 * talk to a worker only through pt_worker_post().
 */
#ifndef PT_GATEWAY_WORKER_H
#define PT_GATEWAY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "core/clock.h"
#include "portico/req.h"

typedef struct pt_config pt_config_t; /* core/config.h */

struct event_base;
struct pt_metrics_shard;
typedef struct pt__req_spares pt__req_spares_t;

struct pt_worker {
    unsigned id;
    struct event_base *base;
    pthread_t thread;
    pt_config_t *config;          /* current snapshot (one reference held); new requests take theirs from here */
    void **filter_state;          /* per filter slot of `config` */
    unsigned filter_state_cnt;
    void *upstream_http;          /* upstream/http.c per-worker state (curl multi, pools) */
    void *upstream_h2;            /* upstream/h2.c per-worker state (pools, calls), made on first use */
    void *h2mem;                  /* http/h2mem.c: the nghttp2 sessions' allocator, made on first use */
    void *redis;                  /* upstream/redis.c per-worker state (connection sets), lazily */
    void *upstream_policy;        /* upstream/policy.c: round robin, endpoint health, connection caps */
    struct pt_metrics_shard *metrics;
    void *observe;                /* observe.c per-worker state (access log, flush timer) */
    void *trace;                  /* observe/trace.c: the span ring, made with the first traced request */
    struct pt__req_spares *req_spares; /* core/request.c: finished requests' arenas for reuse, lazily */
    void *conns;                  /* list of live connections (listener.c) */
    unsigned conn_cnt;
    bool draining;
    uint64_t now_ms;              /* cached monotonic time of the current loop iteration */
    void *_private;               /* queue, wake-up event, listeners */
};

/**
 * Runs `fn(arg)` on worker `w`'s loop thread, soon. Thread-safe; callable from
 * any thread, including w's own (then it still runs later, never inline).
 */
void pt_worker_post(pt_worker_t *w, void (*fn)(void *arg), void *arg);

/** The worker whose loop is running on the calling thread, or NULL. */
pt_worker_t *pt_worker_self(void);

/** request.c: the worker's current snapshot for a new request (counted per worker for the state GC). */
pt_config_t *pt__worker_config_acquire(pt_worker_t *w);
void pt__worker_config_release(pt_worker_t *w, pt_config_t *c);

#endif /* PT_GATEWAY_WORKER_H */
