/*
 * config.h -- the configuration snapshot.
 *
 * A pt_config_t is built from a file by pt_config_load(), validated as a
 * whole, then frozen: nothing in it changes afterwards, so every worker reads
 * it without locks. It is refcounted: the process holds the current one, and
 * every request holds the snapshot it started with, so a reload (SIGHUP)
 * swaps in a new snapshot while in-flight requests finish on the old one.
 *
 * All memory of a snapshot (structs below, strings, compiled matchers, filter
 * configs) lives in its own arena and is released with the last reference.
 *
 * The parts are declared in types-only headers -- core/listener_conf.h,
 * core/limits.h, core/cluster.h, core/route.h -- so a file that only reads a
 * cluster or a route includes that, and a header that only passes a
 * snapshot around declares `typedef struct pt_config pt_config_t;`.
 */
#ifndef PT_GATEWAY_CONFIG_H
#define PT_GATEWAY_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include "core/cluster.h"
#include "core/limits.h"
#include "core/listener_conf.h"
#include "core/route.h"
#include "portico/conf.h"
#include "portico/filter.h"

typedef struct pt_router pt_router_t;
typedef struct pt_redis_target pt_redis_target_t; /* upstream/redis.h */

/** `tracing:` (top level of the config). */
typedef struct pt_tracing_conf {
    bool on;
    const char *endpoint;     /* OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces */
    double sample;            /* 0..1: share of new traces recorded (parent's flag when continued) */
    const char *service_name; /* resource service.name ("portico") */
    uint32_t queue;           /* spans buffered per worker (2048) */
    uint32_t batch;           /* spans per POST at most (512) */
    uint64_t flush_ms;        /* export interval (1000) */
    uint64_t timeout_ms;      /* one POST (2000) */
} pt_tracing_conf_t;

/** `openapi:` (top level): the document served at the admin's /openapi.json (observe/openapi.h). */
typedef struct pt_openapi_conf {
    const char *title, *version, *description; /* NULL: defaults */
    const char *server;                        /* base URL of the gateway for `servers`, or NULL */
} pt_openapi_conf_t;

typedef struct pt_config {
    atomic_uint refcnt;
    uint64_t generation;           /* increments with every successful load */
    const char *path;
    pt_listener_conf_t *listeners;
    size_t listener_cnt;
    bool has_admin;
    pt_sockaddr_t admin_addr;
    bool admin_show_secrets;       /* admin.show_secrets: /config without redaction */
    const char *admin_token;       /* admin.token_file's token (NUL-terminated), or NULL */
    size_t admin_token_len;
    void *admin_ssl_ctx;           /* admin.tls: SSL_CTX * (released with the snapshot), or NULL */
    bool admin_client_certs;       /* admin.tls.client_ca: clients must present a certificate */
    const char *access_log;        /* "stdout", "stderr", a path, or NULL (off) */
    pt_tracing_conf_t tracing;     /* `tracing:` (observe/trace.h); .on false when absent */
    pt_openapi_conf_t openapi;     /* `openapi:` (observe/openapi.h); all NULL when absent */
    unsigned workers;              /* 0 = number of cores */
    pt_limits_t limits;
    pt_timeouts_t timeouts;
    pt_overload_t overload;       /* `overload:` (core/overload.h) */
    pt_cluster_t *clusters;
    size_t cluster_cnt;
    pt_redis_target_t *redis_targets; /* `redis:` targets (upstream/redis.h), config order */
    size_t redis_target_cnt;
    pt_redis_target_t *redis_inline;  /* targets defined in a filter's config (pt_redis_conf_inline) */
    pt_route_t *routes;
    size_t route_cnt;
    const pt_filter_t **global_filters;
    size_t global_filter_cnt;
    unsigned filter_slot_cnt;      /* filter instances in total (slots 0..cnt-1) */
    pt_filter_t **filters;         /* every instance, by slot */
    const pt_router_t *router;
    const char *redacted_json;     /* the config as JSON with secrets redacted, for /config */
    void *descpool;                /* pt_descpool_t * of `descriptors:` (built), or NULL when none;
                                      released with the snapshot */
    void *_private;                /* arena and release hooks (config.c) */
} pt_config_t;

/**
 * Loads, validates and freezes the config at `path`. Every problem is printed
 * to `errs` as `FILE:LINE:COL: message`. Returns a snapshot with one reference,
 * or NULL when there was any error (nothing half-configured is ever returned).
 * Main thread only.
 */
pt_config_t *pt_config_load(const char *path, FILE *errs);

/** Like pt_config_load() from a string (tests); `name` is used in messages. */
pt_config_t *pt_config_load_string(const char *name, const char *text, size_t len, FILE *errs);

/** Takes a reference (any thread). */
pt_config_t *pt_config_ref(pt_config_t *c);
/** Drops a reference (any thread); the last one releases everything. NULL is accepted. */
void pt_config_unref(pt_config_t *c);

/** A cluster by name, or NULL. */
const pt_cluster_t *pt_config_cluster(const pt_config_t *c, const char *name);

#endif /* PT_GATEWAY_CONFIG_H */
