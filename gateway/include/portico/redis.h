/*
 * redis.h -- Redis commands from filters, on the worker's own event loop.
 *
 * The config names Redis targets at the top level (`redis: { main: {...} }`,
 * docs/configuration.md). A filter resolves a target by name at load time
 * (pt_redis_conf_target(), usable as a PT_CONF_T_CUSTOM field parser) and
 * keeps the pointer in its conf: a target belongs to the snapshot, so it lives
 * exactly as long as the filter's conf.
 *
 * At request time pt_redis_command() sends a command on one of the worker's
 * connections to that target. Each worker has its own connections (no lock,
 * no cross-thread hop); commands issued in one loop turn leave in one write
 * (pipelining) and replies come back in order on the same worker. The reply
 * is delivered to a callback with a status:
 *
 *   0                   a reply arrived (a Redis error reply, `-ERR ...`, is
 *                       still status 0, with reply->type PT_REDIS_ERROR)
 *   PT_ERR_TIMEOUT      no reply within the target's `timeout`; a reply that
 *                       comes later is dropped
 *   PT_ERR_UNAVAILABLE  the connection failed or was lost before the reply
 *   PT_ERR_CANCELED     pt_redis_cancel() was called, or the worker is exiting
 *
 * The callback contract is libuv's: pt_redis_command() either returns an
 * error and never calls `cb`, or returns 0 and calls `cb` exactly once,
 * always later from the worker's loop, never from inside pt_redis_command().
 *
 * Every function here runs on a worker thread, for that worker; none blocks.
 * The SDK hides the client library: no hiredis or libevent type appears here.
 */
#ifndef PT_PORTICO_REDIS_H
#define PT_PORTICO_REDIS_H

#include <stddef.h>
#include "portico/conf.h"
#include "portico/req.h"
#include "portico/str.h"

/** A configured Redis target (`redis: { NAME: {...} }`); part of a config snapshot. */
typedef struct pt_redis_target pt_redis_target_t;

/** One command in flight; a handle for pt_redis_cancel(), valid until its callback ran. */
typedef struct pt_redis_cmd pt_redis_cmd_t;

typedef enum pt_redis_type {
    PT_REDIS_NIL = 0, /* `$-1` / `*-1`: no value (GET of a missing key) */
    PT_REDIS_INT,     /* `:N`: `integer` */
    PT_REDIS_STRING,  /* `$N`: a bulk string, binary-safe, in `str` */
    PT_REDIS_STATUS,  /* `+OK`: a status line in `str` */
    PT_REDIS_ERROR,   /* `-ERR ...`: the server refused the command; the text in `str` */
    PT_REDIS_ARRAY,   /* `*N`: `element_cnt` replies in `elements` (nested arrays possible) */
} pt_redis_type_t;

typedef struct pt_redis_reply pt_redis_reply_t;

/**
 * A reply, as Portico's own type. It and everything it points to (strings,
 * elements) are valid only during the callback that receives it: copy what
 * you keep (e.g. into the request arena).
 */
struct pt_redis_reply {
    pt_redis_type_t type;
    long long integer;                /* PT_REDIS_INT */
    pt_str_t str;                     /* STRING, STATUS, ERROR (not NUL-terminated: use len) */
    const pt_redis_reply_t *elements; /* ARRAY */
    size_t element_cnt;               /* ARRAY */
};

/**
 * Completion of a command. `status` is one of the values listed at the top;
 * `reply` is non-NULL exactly when `status` is 0. Runs on the worker that
 * sent the command. It may send new commands and cancel other ones; the
 * handle of this command is invalid once the callback returns.
 */
typedef void (*pt_redis_cb)(int status, const pt_redis_reply_t *reply, void *ud);

/** Most arguments one command may have (more: PT_ERR_INVALID). */
#define PT_REDIS_MAX_ARGS 1024

/**
 * Resolves the Redis target named by scalar `node` in the snapshot being
 * loaded, and stores it in `*(const pt_redis_target_t **)out`. Call it from a
 * filter's parse_conf or check_conf, or name it as the `parse` function of a
 * PT_CONF_T_CUSTOM field (its signature fits). An unknown name, or a node that
 * is not a string, is reported at `node` (FILE:LINE:COL) with the names that
 * exist. Returns 0 or PT_ERR_INVALID (then `*out` is untouched).
 * Main thread, load time only.
 */
int pt_redis_conf_target(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *out);

/**
 * Loads a target written where it is used (`rate_limit: { redis: { address:
 * ... } }`) from map `n`, with the keys of a named target; keys named in
 * `skip` (NULL-terminated; the caller's own, e.g. on_error) are left to the
 * caller. The target is named `name` in log lines and listed in the snapshot
 * (config->redis_inline) so that workers keep its connections like a named
 * target's. Returns it, or NULL after reporting errors. Main thread, load time.
 */
const pt_redis_target_t *pt_redis_conf_inline(pt_conf_cx_t *cx, const pt_conf_node_t *n,
                                              const char *name, const char *const *skip);

/** The target's name as configured. */
const char *pt_redis_target_name(const pt_redis_target_t *t);

/**
 * The target's `prefix` (possibly empty): Portico does not know which
 * arguments of a command are keys, so filters prepend it to the keys they build.
 */
pt_str_t pt_redis_target_prefix(const pt_redis_target_t *t);

/**
 * Sends the command `argv[0..argc)` (binary-safe; copied before returning,
 * so the slices may be temporary) to target `t` from worker `w` (from a
 * filter: pt_req_worker(req)). Connections are opened lazily, authenticated
 * (AUTH) and switched to the target's database (SELECT) before any command.
 * On success stores a handle in `*out` (when `out` is not NULL) and returns 0;
 * `cb(status, reply, ud)` then runs exactly once, later, on this worker.
 *
 * Returns, without ever calling `cb`:
 *   PT_ERR_INVALID      argc is 0 or over PT_REDIS_MAX_ARGS, `cb` or `t` is NULL,
 *                       `w` is not the calling thread's worker, or the command is
 *                       one that would change the connection's state for every
 *                       other user (SUBSCRIBE and friends, MONITOR, SELECT, AUTH,
 *                       HELLO, RESET, QUIT)
 *   PT_ERR_UNAVAILABLE  no connection can take it: Redis was unreachable and the
 *                       reconnect backoff has not expired (fail fast, no wait)
 *   PT_ERR_LIMIT        the target's `max_pending` commands are already waiting
 *                       for replies on this worker
 */
int pt_redis_command(pt_worker_t *w, const pt_redis_target_t *t, size_t argc, const pt_str_t *argv,
                     pt_redis_cb cb, void *ud, pt_redis_cmd_t **out);

/**
 * Cancels a command whose callback has not run yet: the callback runs NOW,
 * inside this call, with PT_ERR_CANCELED (so after pt_redis_cancel() returns
 * nothing of the command touches your memory any more), and the reply, when
 * it comes, is dropped. Meant for abort hooks (pt_req_on_abort): a filter
 * that suspended on a command cancels it there and must not call
 * pt_chain_resume() from the CANCELED callback. Calling it with a handle
 * whose callback already ran is a use-after-free: clear your copy of the
 * handle in the callback. NULL is accepted (no-op).
 */
void pt_redis_cancel(pt_redis_cmd_t *cmd);

/* ---- blocking commands, for threads without a worker loop ---------------- */

/** A blocking connection to a target (pt_redis_sync_open). */
typedef struct pt_redis_sync pt_redis_sync_t;

/**
 * Opens a blocking connection to `t` (its connect timeout; AUTH and SELECT
 * done) for a thread that has no worker loop: an admin endpoint's handler
 * (portico/admin.h) or a filter's own background thread. Never call it on a
 * worker: it blocks the thread. Returns NULL with a message in `err` when the
 * target cannot be reached.
 */
pt_redis_sync_t *pt_redis_sync_open(const pt_redis_target_t *t, char *err, size_t errlen);

/**
 * Runs one command and waits for the reply (at most the target's `timeout`).
 * Returns 0 after calling `cb(0, reply, ud)` inline (the reply is valid
 * during the call only), or PT_ERR_TIMEOUT / PT_ERR_UNAVAILABLE (the
 * connection is then closed: further commands fail with PT_ERR_INVALID),
 * PT_ERR_INVALID, PT_ERR_NOMEM, without calling `cb`.
 */
int pt_redis_sync_command(pt_redis_sync_t *s, size_t argc, const pt_str_t *argv, pt_redis_cb cb,
                          void *ud);

/** Closes the connection. NULL is accepted. */
void pt_redis_sync_close(pt_redis_sync_t *s);

#endif /* PT_PORTICO_REDIS_H */
