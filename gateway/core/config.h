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
 */
#ifndef PT_GATEWAY_CONFIG_H
#define PT_GATEWAY_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include "portico/conf.h"
#include "portico/filter.h"

typedef struct pt_handler_def pt_handler_def_t;
typedef struct pt_router pt_router_t;
typedef struct pt_redis_target pt_redis_target_t; /* upstream/redis.h */

/** An IP address and port from `address: 127.0.0.1:8080` or `[::1]:8080`. */
typedef struct pt_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
    const char *text; /* as written in the file */
} pt_sockaddr_t;

typedef struct pt_listener_conf {
    pt_sockaddr_t addr;
    bool has_tls;
    const char *cert_path, *key_path; /* PEM; resolved against the config directory */
    void *ssl_ctx;                    /* SSL_CTX * built at load time (tls.c), or NULL */
    bool h2c;                         /* accept cleartext HTTP/2 (prior knowledge and Upgrade); default true */
    const pt_conf_node_t *node;
} pt_listener_conf_t;

/** Safety limits on untrusted input; every value is a config key under `limits:`. */
typedef struct pt_limits {
    uint32_t max_request_line;     /* bytes of the HTTP/1 request line (8 KiB) -> 414 */
    uint32_t max_header_bytes;     /* sum of name+value+32 per field (64 KiB) -> 431 */
    uint32_t max_header_count;     /* fields, cookie crumbs included (100) -> 431 */
    uint64_t max_body;             /* request body bytes (1 MiB) -> 413; route may override */
    uint32_t max_pipeline;         /* HTTP/1 requests parsed ahead of responses (16) */
    uint32_t max_requests_per_conn;/* then Connection: close / GOAWAY (1000) */
    uint32_t max_connections;      /* per worker (10000) */
    uint32_t h2_max_streams;       /* SETTINGS_MAX_CONCURRENT_STREAMS (100) */
    uint32_t h2_stream_window;     /* initial stream window (64 KiB) */
    uint32_t h2_conn_window;       /* connection window (1 MiB) */
    uint32_t h2_reset_burst;       /* client RST_STREAM token bucket burst (1000) */
    uint32_t h2_reset_rate;        /* refill per second (33) */
    uint32_t h2_max_continuations; /* CONTINUATION frames per header block (8) */
    uint32_t h2_glitch_burst;      /* client-provoked errors and zero-progress frames at once (100) ... */
    uint32_t h2_glitch_rate;       /* ... and per second; then GOAWAY(ENHANCE_YOUR_CALM) (10) */
    uint32_t max_chunk_ext;        /* bytes of chunk extensions per request (4 KiB) */
    bool allow_underscores;        /* accept '_' in header names (false: 400) */
    bool merge_slashes;            /* merge empty path segments, "//" -> "/" (true) */
    uint64_t max_response_buffer;  /* output bytes buffered per request before upstream reads pause (256 KiB) */
} pt_limits_t;

typedef struct pt_timeouts {
    uint64_t header_ms;     /* whole request head (10 s) -> 408 */
    uint64_t body_ms;       /* inactivity while reading a body (30 s) -> 408 */
    uint64_t keepalive_ms;  /* idle HTTP/1 connection between requests (60 s) */
    uint64_t h2_idle_ms;    /* HTTP/2 connection with no open stream (60 s) */
    uint64_t send_ms;       /* no write progress to a client (30 s) -> close */
    uint64_t drain_ms;      /* graceful shutdown deadline (30 s) */
    uint64_t tunnel_idle_ms;/* upgraded / CONNECT tunnel with no byte either way (300 s) */
} pt_timeouts_t;

typedef enum pt_proto { PT_PROTO_HTTP = 0, PT_PROTO_GRPC = 1 } pt_proto_t;

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
    const pt_conf_node_t *node;
} pt_cluster_t;

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

/** Method bits for route matching. */
enum {
    PT_METHOD_GET = 1u << 0, PT_METHOD_HEAD = 1u << 1, PT_METHOD_POST = 1u << 2,
    PT_METHOD_PUT = 1u << 3, PT_METHOD_DELETE = 1u << 4, PT_METHOD_PATCH = 1u << 5,
    PT_METHOD_OPTIONS = 1u << 6, PT_METHOD_TRACE = 1u << 7, PT_METHOD_CONNECT = 1u << 8,
    PT_METHOD_OTHER = 1u << 9,
};
/** The PT_METHOD_* bit of a method token (PT_METHOD_OTHER for extension methods). */
uint32_t pt_method_bit(pt_str_t method);

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
    bool request_buffering;        /* request-body filters run over the whole body before the handler */
    bool has_request_body_filters; /* some filter of `chain` has on_request_body */
    bool has_response_body_filters;
    const pt_conf_node_t *node;
} pt_route_t;

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
    unsigned workers;              /* 0 = number of cores */
    pt_limits_t limits;
    pt_timeouts_t timeouts;
    pt_cluster_t *clusters;
    size_t cluster_cnt;
    pt_redis_target_t *redis_targets; /* `redis:` targets (upstream/redis.h), config order */
    size_t redis_target_cnt;
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

/**
 * Parses an `IPv4:PORT` / `[IPv6]:PORT` scalar (numeric only: no DNS at load
 * time) into `out`, reporting problems at `n`. 0 or PT_ERR_INVALID.
 */
int pt__config_sockaddr(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_sockaddr_t *out);

/** True for a name of a cluster or Redis target: 1-128 of letters, digits, '_', '-', '.'. */
bool pt__config_valid_name(const char *s);

/** A cluster by name, or NULL. */
const pt_cluster_t *pt_config_cluster(const pt_config_t *c, const char *name);

#endif /* PT_GATEWAY_CONFIG_H */
