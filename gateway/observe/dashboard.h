/*
 * dashboard.h -- the admin's live dashboard: GET /dashboard (one self-contained
 * page), GET /stats (a JSON snapshot of the metric shards) and GET
 * /stats/stream (the same snapshot pushed every second as server-sent events).
 *
 * Everything runs on the main thread's loop (the admin listener's). The
 * snapshot holds monotonically increasing counters and histogram buckets
 * only; the page computes rates and quantiles from the difference of two
 * snapshots. The format is documented in docs/configuration.md ("The live
 * dashboard").
 */
#ifndef PT_GATEWAY_DASHBOARD_H
#define PT_GATEWAY_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "observe/metrics.h"

struct json_object;
struct event_base;
struct evhttp_request;
typedef struct pt_config pt_config_t;
typedef struct pt_server pt_server_t;

/** Snapshot format version (the "version" field). */
#define PT_DASHBOARD_VERSION 1
/** Event streams open at once; one more gets 503. */
#define PT_DASHBOARD_MAX_STREAMS 8
/** A stream whose client has this much unread output skips snapshots ... */
#define PT_DASHBOARD_STREAM_BACKLOG (256u * 1024u)
/** ... and is ended after skipping this many in a row. */
#define PT_DASHBOARD_STREAM_SKIPS 10

/**
 * The snapshot of `n` shards (NULL entries skipped) as a JSON object: gauges,
 * counters, per-route and per-cluster series; `c` (may be NULL) names the
 * routes and clusters configured now (listed even without traffic; series of
 * removed ones are kept, with "configured": false) and the endpoints' health.
 * `g` may be NULL. `now_ms` is the wall clock. The caller puts the result.
 */
struct json_object *pt_dashboard_snapshot(pt_metrics_shard_t *const *shards, unsigned n,
                                          const pt_config_t *c, const pt_metrics_globals_t *g,
                                          uint64_t now_ms);

typedef struct pt_dashboard pt_dashboard_t;

pt_dashboard_t *pt_dashboard_new(struct event_base *base, pt_server_t *s);
/** Ends every open stream (their connections must be gone or going) and frees `d`. */
void pt_dashboard_free(pt_dashboard_t *d);

/** Is `path` (`len` bytes) the page, which needs no admin token (it holds no data)? */
bool pt_dashboard_is_page(const char *path, size_t len);

/**
 * Answers `r` if `path` is /dashboard, /stats or /stats/stream (GET or HEAD,
 * authorised by the caller); false otherwise (not answered).
 */
bool pt_dashboard_serve(pt_dashboard_t *d, struct evhttp_request *r, const char *path, size_t len);

/** Event streams open now. */
unsigned pt_dashboard_streams(const pt_dashboard_t *d);

#endif /* PT_GATEWAY_DASHBOARD_H */
