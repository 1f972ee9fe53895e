/*
 * metrics.h -- per-worker metric shards and the Prometheus rendering (private).
 *
 * A shard is written only by its worker. Each counter is a relaxed atomic
 * that only its worker stores to, so a store is a plain write and the admin
 * thread's summing read is race-free. Keyed series (per route, per cluster)
 * live in fixed-size open-addressing tables: a slot's key is written before
 * its `used` flag is published (release), and never changes afterwards, so
 * readers need no lock. Series past the table size go to an "_other" series,
 * which keeps cardinality bounded whatever the config or the traffic.
 */
#ifndef PT_GATEWAY_METRICS_H
#define PT_GATEWAY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PT_METRICS_BUCKETS 15 /* latency buckets, the last is +Inf */
#define PT_METRICS_NAME_MAX 64
#define PT_METRICS_ROUTES 128  /* (route, status) series */
#define PT_METRICS_HISTS 64    /* per-route latency histograms */
#define PT_METRICS_UPERRS 64   /* (cluster, code) upstream error series */
#define PT_METRICS_CLUSTERS 64 /* per-cluster answers and upstream latency (dashboard) */
#define PT_METRICS_CLASSES 6   /* status classes: 1xx..5xx, then "other" (0: no answer) */

typedef struct pt_metrics_counter_slot {
    atomic_bool used;
    char name[PT_METRICS_NAME_MAX];
    int code;                  /* HTTP status, or a PT_ERR_* for upstream errors */
    atomic_uint_fast64_t count;
} pt_metrics_counter_slot_t;

typedef struct pt_metrics_hist_slot {
    atomic_bool used;
    char name[PT_METRICS_NAME_MAX];
    atomic_uint_fast64_t buckets[PT_METRICS_BUCKETS]; /* non-cumulative */
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t up_buckets[PT_METRICS_BUCKETS]; /* upstream wait time */
    atomic_uint_fast64_t up_sum_us;
    atomic_uint_fast64_t up_count;
} pt_metrics_hist_slot_t;

/*
 * Requests that reached a cluster (the cluster of their last attempt): answers
 * by the class of the status the client got, and the upstream wait time.
 */
typedef struct pt_metrics_cluster_slot {
    atomic_bool used;
    char name[PT_METRICS_NAME_MAX];
    atomic_uint_fast64_t classes[PT_METRICS_CLASSES];
    atomic_uint_fast64_t buckets[PT_METRICS_BUCKETS]; /* upstream wait, non-cumulative */
    atomic_uint_fast64_t sum_us;
} pt_metrics_cluster_slot_t;

/*
 * Close codes counted for WebSocket sessions: 1000-1015 by value, then
 * 3000-3999, 4000-4999, and "none" (the connection ended without a close
 * frame to the client: 1006).
 */
#define PT_METRICS_WS_CLOSE 19

typedef struct pt_metrics_shard {
    _Alignas(64) atomic_int_fast64_t conns_active;
    atomic_uint_fast64_t conns_total;
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_uint_fast64_t log_dropped; /* access-log lines lost (no file, failed write) */
    atomic_int_fast64_t tunnels_active;  /* upgraded / CONNECT sessions open now */
    atomic_uint_fast64_t tunnels_total;  /* ... opened */
    /* WebSocket sessions (http/ws.h), counted when they end */
    atomic_uint_fast64_t ws_sessions;
    atomic_uint_fast64_t ws_msgs[2];     /* data messages from the client / to the client */
    atomic_uint_fast64_t ws_close[PT_METRICS_WS_CLOSE]; /* by the close code the client got */
    atomic_uint_fast64_t ws_opened;      /* WebSocket sessions started (open = ws_opened - ws_sessions) */
    atomic_int_fast64_t h2_streams_active; /* client HTTP/2 streams open now */
    pt_metrics_cluster_slot_t clusters[PT_METRICS_CLUSTERS];
    pt_metrics_counter_slot_t requests[PT_METRICS_ROUTES];
    pt_metrics_hist_slot_t hists[PT_METRICS_HISTS];
    pt_metrics_counter_slot_t uperrs[PT_METRICS_UPERRS];
    pt_metrics_counter_slot_t upevents[PT_METRICS_UPERRS]; /* (cluster, pt_observe_upevent_t) */
    /* aggregate calls: keyed "route\x1fcall" (status as the code) */
    pt_metrics_counter_slot_t subcalls[PT_METRICS_ROUTES];
    pt_metrics_hist_slot_t subcall_hists[PT_METRICS_HISTS];
    /* The owning worker's last lookup per table (metrics.c): the same route
     * and cluster come again and again; a hit is checked by name. */
    struct {
        const char *name;
        int code;
        void *slot;
    } memo_req, memo_hist, memo_cluster;
} pt_metrics_shard_t;

/** Bucket upper bounds in microseconds (the last is +Inf, UINT64_MAX). */
extern const uint64_t pt_metrics_bucket_us[PT_METRICS_BUCKETS];

pt_metrics_shard_t *pt_metrics_shard_new(void);
void pt_metrics_shard_free(pt_metrics_shard_t *s);

/** Worker-side recording (only the owning worker calls these). */
void pt_metrics_request(pt_metrics_shard_t *s, const char *route, int status, uint64_t dur_us,
                        uint64_t upstream_us, bool has_upstream, uint64_t in, uint64_t out);
void pt_metrics_upstream_error(pt_metrics_shard_t *s, const char *cluster, int code);
/** A request whose last upstream attempt went to `cluster`: the client's status, the wait. */
void pt_metrics_cluster(pt_metrics_shard_t *s, const char *cluster, int status,
                        uint64_t upstream_us);
/** Status class index of `status` (0..4 for 1xx..5xx, 5 for anything else). */
static inline unsigned pt_metrics_class(int status)
{
    return status >= 100 && status <= 599 ? (unsigned)(status / 100 - 1) : PT_METRICS_CLASSES - 1;
}
/** Single-writer gauge change (the owning worker only): a relaxed load and store. */
static inline void pt_metrics_gauge_add(atomic_int_fast64_t *g, int64_t d)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + d,
                          memory_order_relaxed);
}
/** Bucket index of a duration in microseconds. */
unsigned pt_metrics_bucket_of(uint64_t us);
/** One call of an aggregate request: its HTTP status and duration. */
void pt_metrics_subcall(pt_metrics_shard_t *s, const char *route, const char *call, int status,
                        uint64_t dur_us);
/** `kind`: 0 local errors, 1 calls queued for a connection, 2 calls refused (queue full). */
void pt_metrics_upstream_event(pt_metrics_shard_t *s, const char *cluster, int kind);

/* ---- sums over the shards (any thread; no locks) ---------------------------- */

typedef struct pt_metrics_agg_counter {
    const char *name; /* points into a shard: valid while the shards are */
    int code;
    uint64_t count;
} pt_metrics_agg_counter_t;

typedef struct pt_metrics_agg_hist {
    const char *name;
    uint64_t b[PT_METRICS_BUCKETS], sum, count;     /* whole request */
    uint64_t ub[PT_METRICS_BUCKETS], usum, ucount;  /* upstream wait */
} pt_metrics_agg_hist_t;

typedef struct pt_metrics_agg_cluster {
    const char *name;
    uint64_t classes[PT_METRICS_CLASSES];
    uint64_t b[PT_METRICS_BUCKETS], sum;
} pt_metrics_agg_cluster_t;

typedef struct pt_metrics_totals {
    int64_t conns_active, tunnels_active, h2_streams_active;
    uint64_t conns_total, tunnels_total, bytes_in, bytes_out, log_dropped;
    uint64_t ws_opened, ws_sessions, ws_msgs[2], ws_close[PT_METRICS_WS_CLOSE];
    pt_metrics_agg_counter_t *req, *uperr, *upev;   /* (route, status), (cluster, error), (cluster, event) */
    size_t nreq, nuperr, nupev;
    pt_metrics_agg_hist_t *hist;                    /* by route */
    size_t nhist;
    pt_metrics_agg_cluster_t *cl;                   /* by cluster */
    size_t ncl;
} pt_metrics_totals_t;

/** Sums `n` shards (NULL entries skipped) into `t`; pt_metrics_totals_dispose() frees it. */
void pt_metrics_totals(pt_metrics_totals_t *t, pt_metrics_shard_t *const *shards, unsigned n);
void pt_metrics_totals_dispose(pt_metrics_totals_t *t);

/** Process-wide values the renderer adds (config generation, reloads). */
typedef struct pt_metrics_globals {
    uint64_t generation;
    uint64_t reloads_ok, reloads_failed;
    unsigned workers;
    unsigned ejected;     /* upstream endpoints ejected now (upstream/policy.c) */
} pt_metrics_globals_t;

/**
 * Writes the Prometheus text exposition (format 0.0.4) of the sum of
 * `shards` plus `g` to `out`. Any thread; reads shards without locks.
 */
void pt_metrics_render(FILE *out, pt_metrics_shard_t *const *shards, unsigned n,
                       const pt_metrics_globals_t *g);

#endif /* PT_GATEWAY_METRICS_H */
