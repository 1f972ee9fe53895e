/*
 * server.h -- the process: workers, their listener sockets, reload and
 * drain (main thread side), plus what each worker does with them.
 */
#ifndef PT_GATEWAY_SERVER_H
#define PT_GATEWAY_SERVER_H

#include <stdbool.h>
#include "observe/observe.h"
#include "net/worker.h"

typedef struct pt_config pt_config_t; /* core/config.h */

/**
 * Creates `n` workers for `config` (a reference is taken for each), binds
 * every listener (SO_REUSEPORT, one socket per worker) and starts the worker
 * threads. Errors (bind failures) are printed to stderr; returns 0 or -1, in
 * which case nothing is left running.
 */
int pt_server_start(pt_server_t *s, pt_config_t *config, unsigned n);

/**
 * Applies a new snapshot to every worker: sockets of listeners that stay are
 * kept (no queued connection is lost), new ones are bound first (a bind
 * failure rejects the reload and returns -1 with nothing changed), removed
 * ones are closed by their workers. In-flight requests keep their snapshot.
 */
int pt_server_reload(pt_server_t *s, pt_config_t *config);

/**
 * Starts the graceful drain of every worker (see below) and returns at once;
 * pt_server_all_stopped() tells when every worker loop has ended.
 */
void pt_server_drain_start(pt_server_t *s, uint64_t drain_ms);

/** True once every worker's loop has ended (any thread). */
bool pt_server_all_stopped(pt_server_t *s);

/**
 * Graceful drain of every worker: stop accepting, ask each connection to
 * finish (HTTP/2 GOAWAY, HTTP/1 Connection: close), then stop when none is
 * left or `drain_ms` passed (remaining connections are cut). Blocks until
 * every worker thread has exited; main thread. Starting the drain again after
 * pt_server_drain_start() is harmless.
 */
void pt_server_drain_and_stop(pt_server_t *s, uint64_t drain_ms);

/** Frees the workers after they stopped. */
void pt_server_free(pt_server_t *s);

/** The current snapshot, with a new reference (thread-safe). */
pt_config_t *pt_server_config(pt_server_t *s);

/**
 * A worker with its loop, filter state, upstream and observe state, but no
 * thread: the caller runs w->base itself (unit tests and the loopback seam).
 * Takes a reference to `config`.
 */
pt_worker_t *pt__worker_new_detached(pt_config_t *config);
void pt__worker_free_detached(pt_worker_t *w);

#endif /* PT_GATEWAY_SERVER_H */
