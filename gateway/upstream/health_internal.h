/*
 * health_internal.h -- the registry entry of one active check, shared by
 * health_conf.c (load time: find or create, reference per snapshot) and
 * health.c (the prober on the main loop, the workers' lock-free reads).
 */
#ifndef PT_GATEWAY_UPSTREAM_HEALTH_INTERNAL_H
#define PT_GATEWAY_UPSTREAM_HEALTH_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "upstream/health.h"

struct event;
struct probe;
typedef struct ssl_ctx_st SSL_CTX;

struct pt_health_ep {
    /* ---- what is probed (immutable; part of the key) */
    char *key;
    pt_health_type_t type;
    char *url, *host, *authority, *path, *service, *ca_file;
    char *tls_name;              /* https: the name the certificate must carry (upstream/tls.h) */
    uint16_t port;
    bool tls, h2, verify;
    struct { uint16_t lo, hi; } expect[PT_HEALTH_MAX_EXPECT];
    size_t expect_cnt;

    /* ---- the verdict: written by the prober, read by every worker */
    atomic_bool up;

    /* ---- registry (under the registry lock) */
    unsigned refs;
    pt_health_ep_t *next;

    /* ---- prober state: main thread only */
    bool active;                 /* the current snapshot names it; the prober holds a reference */
    unsigned seen;               /* reconfigure pass that last saw it */
    char *cluster;               /* first cluster naming it (logs) */
    uint64_t interval_ms, timeout_ms;
    uint32_t unhealthy, healthy;
    unsigned ok_run, fail_run;   /* consecutive results */
    uint64_t checks, failures, transitions;
    uint64_t changed_ms;         /* wall clock (ms since the epoch) of the last transition, 0 = never */
    char last_error[128];
    struct event *timer;
    struct probe *probe;         /* in flight, or NULL */
    SSL_CTX *ssl_ctx;            /* https endpoints: made on the first probe */
};

/** Registry: the entry for this check (new: healthy), with one more reference. Any thread. */
pt_health_ep_t *pt__health_ep_get(const pt_health_ep_t *want);
/** Drops a reference; the last one frees the entry (it is inactive by then). Any thread. */
void pt__health_ep_release(pt_health_ep_t *e);

#endif /* PT_GATEWAY_UPSTREAM_HEALTH_INTERNAL_H */
