/*
 * redis.h -- the core's side of portico/redis.h: configured targets, the
 * loader of the `redis:` section, and the per-worker connection sets.
 *
 * Targets are snapshot data (config arena, immutable). Connections are
 * worker data: each worker keeps, per distinct target definition, a set of
 * `connections` hiredis async contexts on its own loop, created on first
 * use. Sets are keyed by the definition (address, db, credentials,
 * connections, timeouts, max_pending), not by the snapshot: a reload that
 * leaves a target unchanged keeps its connections, and a set no target of the
 * worker's current snapshot uses any more is closed once it has no command
 * pending (pt__redis_worker_gc, every second).
 */
#ifndef PT_GATEWAY_UPSTREAM_REDIS_H
#define PT_GATEWAY_UPSTREAM_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include "portico/conf.h"
#include "portico/redis.h"

struct redisReply;

struct pt_redis_target {
    const char *name;
    const char *host; /* IP literal, or NULL for a unix socket */
    uint16_t port;
    const char *unix_path; /* `unix:/path` address, or NULL */
    const char *address;   /* as written */
    const char *username;  /* AUTH username (Redis 6 ACL), or NULL */
    const char *password;  /* read from password_file at load, or NULL */
    uint32_t db;           /* SELECT db on connect when not 0 */
    const char *prefix;    /* "" when none */
    size_t prefix_len;
    uint64_t timeout_ms;         /* per command (200 ms) */
    uint64_t connect_timeout_ms; /* per connection attempt (1 s) */
    uint32_t connections;        /* per worker (1) */
    uint32_t max_pending;        /* commands awaiting replies per worker (1024) */
    const char *key;             /* the definition as one string: identity of a worker's set */
    const pt_conf_node_t *node;
    pt_redis_target_t *next_inline; /* in config->redis_inline */
};

/**
 * Loads `redis: { NAME: {...}, ... }` into an arena array of targets.
 * Errors go through pt_conf_error(). Main thread, load time.
 */
void pt__redis_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_redis_target_t **out,
                         size_t *cnt);


/**
 * Closes the connection sets of worker `w` that no target of w's current
 * snapshot uses and that have no command pending. Worker thread.
 */
void pt__redis_worker_gc(pt_worker_t *w);

/**
 * At worker exit: completes every pending command with PT_ERR_CANCELED,
 * closes every connection and frees the worker's Redis state; commands sent
 * on `w` afterwards fail with PT_ERR_UNAVAILABLE. Runs before the filters'
 * worker_dispose, so CANCELED callbacks still find their filter's state.
 * Worker thread (or the thread owning a detached worker).
 */
void pt__redis_worker_dispose(pt_worker_t *w);

/**
 * Converts a hiredis reply into Portico's reply type. The tree is written to
 * `nodes` (`cap` entries) when it fits, else to one malloc'd block stored in
 * `*heap` (free it after use; NULL when unused). Strings point into `r`.
 * Returns the root, or NULL on OOM or an unknown reply type.
 */
const pt_redis_reply_t *pt__redis_reply_convert(const struct redisReply *r, pt_redis_reply_t *nodes,
                                                size_t cap, pt_redis_reply_t **heap);

#endif /* PT_GATEWAY_UPSTREAM_REDIS_H */
