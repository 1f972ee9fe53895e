/*
 * admin.h -- filters extending the admin listener: endpoints and metrics.
 *
 * A filter registers them at load time (parse_conf / check_conf) for the
 * snapshot being built; they live and die with that snapshot, and the admin
 * listener uses those of the current snapshot. Both callbacks run on the
 * admin thread, never on a worker: they may block briefly (e.g. a blocking
 * Redis command with pt_redis_sync_*, portico/redis.h), they must not touch
 * per-worker state, and what they read of the filter's own state must be
 * thread-safe (atomics, locks). The admin token protects them like every
 * admin path but the probes.
 */
#ifndef PT_PORTICO_ADMIN_H
#define PT_PORTICO_ADMIN_H

#include <stdio.h>
#include "portico/conf.h"
#include "portico/str.h"

typedef struct pt_admin_req {
    pt_str_t method; /* "GET", "POST", "DELETE", ... */
    pt_str_t path;   /* the registered path */
    pt_str_t query;  /* raw query string without '?', percent-encoding untouched */
} pt_admin_req_t;

/**
 * Answers an admin request: writes one JSON value to `out` and returns the
 * HTTP status. When several filter instances registered the same path, each
 * is called in config order and the client gets a JSON array of their values
 * with the highest status.
 */
typedef int (*pt_admin_fn)(void *data, const pt_admin_req_t *r, FILE *out);

/**
 * Registers `fn(data, ...)` for the admin path `path` (exact match, any
 * method; copied). Paths of the admin listener itself (/metrics, /config ...)
 * cannot be taken: a config error is reported at `at`. Load time only.
 */
int pt_conf_admin_endpoint(pt_conf_cx_t *cx, const pt_conf_node_t *at, const char *path,
                           pt_admin_fn fn, void *data);

/**
 * Writes Prometheus text lines for /metrics for every instance registered
 * under one family at once (`data[0..n)`, in config order), so that each
 * metric's # HELP / # TYPE lines and samples stay in one group.
 */
typedef void (*pt_metrics_fn)(void *const *data, size_t n, FILE *out);

/**
 * Registers instance `data` under `family` (e.g. "portico_cache"; copied);
 * every registration of a family must pass the same `fn`. Load time only.
 */
void pt_conf_metrics(pt_conf_cx_t *cx, const char *family, pt_metrics_fn fn, void *data);

#endif /* PT_PORTICO_ADMIN_H */
