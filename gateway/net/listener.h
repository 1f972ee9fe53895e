/*
 * listener.h -- listening sockets and accepted connections (private).
 *
 * Main thread: pt__listener_bind_all() keeps a registry of bound addresses
 * (one SO_REUSEPORT socket per worker each) so that a reload reuses the
 * sockets of addresses that stay, and binds only new ones.
 * Worker thread: the rest -- accept, TLS handshake, connection objects.
 *
 * worker.c calls this file; this file uses the pt_worker_t it is given
 * (worker.h) and never calls back into worker.c.
 */
#ifndef PT_GATEWAY_LISTENER_H
#define PT_GATEWAY_LISTENER_H

#include "net/worker.h"

typedef struct pt_config pt_config_t; /* core/config.h */

/** One worker's sockets for the listeners of a snapshot, index-aligned with config->listeners. */
typedef struct pt_listener_fds {
    int *fd;
    size_t cnt;
} pt_listener_fds_t;

/** A worker's active listeners (worker-private). */
typedef struct pt_listener_set {
    struct wlistener *v;
    size_t cnt;
} pt_listener_set_t;

/**
 * Main thread: makes sure every listener address of `config` has one bound,
 * listening socket per worker (reusing registered ones), and fills fds[i] for
 * each of the `nworkers` workers. Addresses no longer in `config` are dropped
 * from the registry (their workers close the sockets when they apply the
 * snapshot). On a bind error, prints `FILE:LINE:COL: cannot listen on ...`,
 * closes what this call opened, and returns -1 with the registry unchanged.
 */
int pt__listener_bind_all(const pt_config_t *config, unsigned nworkers, pt_listener_fds_t *fds);

/** Closes the sockets in `fds` that this worker will not use (a dropped message). */
void pt__listener_fds_close(pt_listener_fds_t *fds);

/** Worker: start accepting on `fds` for `config`, stop listeners not in it. Frees fds->fd. */
void pt__listener_set_apply(pt_worker_t *w, pt_listener_set_t *set, const pt_config_t *config,
                            pt_listener_fds_t *fds);

/** Worker: stops accepting and closes every listening socket of the set. */
void pt__listener_set_close(pt_listener_set_t *set);

/**
 * Worker: asks every connection to drain (codec_ops->drain). With w->draining
 * set, the worker's loop exits when no connection is left (now or when the
 * last one closes).
 */
void pt__listener_conns_drain_all(pt_worker_t *w);

/** Worker: tears every connection down at once (drain deadline, exit). */
void pt__listener_conns_destroy_all(pt_worker_t *w);

#endif /* PT_GATEWAY_LISTENER_H */
