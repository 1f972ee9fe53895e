/*
 * call.c -- the upstream call primitive: dispatch on the cluster's protocol.
 *
 * The back ends implement the calls; this file routes the public API of
 * call.h to them and owns the policy they share (call_internal.h).
 *
 * REST clusters (PT_PROTO_HTTP) go to one of two back ends, chosen once per
 * cluster per worker:
 *   - h1.c, the native HTTP/1.1 client, when `http2` is off and every
 *     endpoint is a plain http:// one with an IP address (or localhost):
 *     per-endpoint keep-alive pools, one writev and one read per exchange,
 *     no allocation per request in steady state;
 *   - http.c (libcurl multi) otherwise: https:// endpoints (TLS), `http2: true`
 *     (h2c / ALPN h2), endpoints named by DNS host names (libcurl resolves
 *     them asynchronously).
 * The environment variable PORTICO_UPSTREAM_NATIVE=0 sends every REST cluster
 * through libcurl (a switch for comparisons and a fallback).
 *
 * Both use the same endpoint policy: round robin per cluster per worker,
 * passive ejection after PT__UP_EJECT_AFTER consecutive connect failures.
 */
#include "upstream/call_internal.h"

#include <stdlib.h>
#include <string.h>
#include "upstream/h2.h"

#include "portico/status.h"

int pt_upcall_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                    void *ud, pt_upcall_t **out)
{
    if (w == NULL || r == NULL || r->cluster == NULL || cbs == NULL || out == NULL)
        return PT_ERR_INTERNAL;
    if (r->upgrade.len != 0) {
        /* Tunnels need the connection to themselves after the 101: only the
         * native HTTP/1.1 client hands it over (libcurl would need
         * CONNECT_ONLY and blocking send/recv; an HTTP/2 upstream would need
         * extended CONNECT). */
        pt__upworker_t *uw = w->upstream_http;
        if (r->cluster->protocol != PT_PROTO_HTTP || pt__uph2_serves(r->cluster) || uw == NULL ||
            pt__up_cluster(uw, r->cluster)->backend != PT__UP_H1 || r->has_body)
            return PT_ERR_NOT_IMPLEMENTED;
        return pt__uph1_start(uw, r, cbs, ud, out);
    }
    if (pt__uph2_serves(r->cluster)) /* grpc, and h2c http clusters: native HTTP/2 (h2.c) */
        return pt__uph2_start(w, r, cbs, ud, out);
    switch (r->cluster->protocol) {
    case PT_PROTO_HTTP: {
        pt__upworker_t *uw = w->upstream_http;
        if (uw == NULL)
            return PT_ERR_INTERNAL;
        if (pt__up_cluster(uw, r->cluster)->backend == PT__UP_H1)
            return pt__uph1_start(uw, r, cbs, ud, out);
        return pt__uphttp_start(uw, r, cbs, ud, out);
    }
    case PT_PROTO_GRPC:
        break; /* served by h2.c above */
    }
    return PT_ERR_INTERNAL;
}

void pt_upcall_body_ready(pt_upcall_t *c)
{
    if (c != NULL)
        c->ops->body_ready(c);
}

void pt_upcall_resume(pt_upcall_t *c)
{
    if (c != NULL)
        c->ops->resume(c);
}

void pt_upcall_cancel(pt_upcall_t *c)
{
    if (c != NULL)
        c->ops->cancel(c);
}

const char *pt_upcall_endpoint(const pt_upcall_t *c)
{
    return c != NULL ? c->ops->endpoint(c) : NULL;
}

/* ---- shared per-worker state ------------------------------------------------ */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        abort(); /* gateway OOM policy: abort (STYLE.md) */
    return p;
}

static size_t url_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % PT__UP_HEALTH_BUCKETS;
}

static pt__ephealth_t *health_of(pt__upworker_t *uw, const char *url)
{
    size_t b = url_hash(url);
    for (pt__ephealth_t *h = uw->health[b]; h != NULL; h = h->next)
        if (strcmp(h->url, url) == 0)
            return h;
    pt__ephealth_t *h = xcalloc(1, sizeof(*h));
    h->url = strdup(url);
    if (h->url == NULL)
        abort();
    h->next = uw->health[b];
    uw->health[b] = h;
    return h;
}

pt__upcluster_t *pt__up_cluster(pt__upworker_t *uw, const pt_cluster_t *cl)
{
    if (cl->index >= uw->cluster_cnt) {
        size_t cnt = (size_t)cl->index + 8;
        pt__upcluster_t *v = realloc(uw->clusters, cnt * sizeof(*v));
        if (v == NULL)
            abort();
        memset(v + uw->cluster_cnt, 0, (cnt - uw->cluster_cnt) * sizeof(*v));
        uw->clusters = v;
        uw->cluster_cnt = cnt;
    }
    pt__upcluster_t *s = &uw->clusters[cl->index];
    if (s->cl == cl)
        return s;
    /* Another snapshot's cluster at this index (or the first call): start over. */
    s->cl = cl;
    s->next = 0;
    free(s->health);
    s->health = xcalloc(cl->endpoint_cnt ? cl->endpoint_cnt : 1, sizeof(*s->health));
    bool native = !uw->native_off && cl->protocol == PT_PROTO_HTTP && !cl->http2 &&
                  cl->endpoint_cnt > 0;
    for (size_t i = 0; i < cl->endpoint_cnt; i++) {
        s->health[i] = health_of(uw, cl->endpoints[i].url);
        if (!pt__uph1_endpoint_ok(&cl->endpoints[i]))
            native = false;
    }
    s->backend = native ? PT__UP_H1 : PT__UP_CURL;
    return s;
}

long pt__up_pick(pt__upworker_t *uw, const pt_cluster_t *cl, uint64_t tried, bool skip_tried)
{
    size_t n = cl->endpoint_cnt;
    if (n == 0)
        return -1;
    pt__upcluster_t *s = pt__up_cluster(uw, cl);
    uint64_t now = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (s->next + i) % n;
        if (skip_tried && idx < 64 && (tried & ((uint64_t)1 << idx)) != 0)
            continue;
        if (s->health[idx]->eject_until_ms != 0) {
            if (now == 0)
                now = pt_now_ms();
            if (s->health[idx]->eject_until_ms > now)
                continue;
        }
        s->next = idx + 1;
        return (long)idx;
    }
    return -1;
}

void pt__up_connect_failed(pt__upworker_t *uw, const pt_cluster_t *cl, size_t idx)
{
    pt__ephealth_t *h = pt__up_cluster(uw, cl)->health[idx];
    /* Passive checks only: after the cool-down the endpoint gets traffic
     * again, and one more failure ejects it again (fails is not reset). */
    if (++h->fails >= PT__UP_EJECT_AFTER)
        h->eject_until_ms = pt_now_ms() + PT__UP_EJECT_MS;
}

void pt__up_connect_ok(pt__upworker_t *uw, const pt_cluster_t *cl, size_t idx)
{
    pt__ephealth_t *h = pt__up_cluster(uw, cl)->health[idx];
    h->fails = 0;
    h->eject_until_ms = 0;
}

uint64_t pt__up_timeout_ms(const pt_upcall_req_t *r)
{
    if (r->timeout_ms != 0)
        return r->timeout_ms;
    return r->cluster->timeout_ms != 0 ? r->cluster->timeout_ms : PT__UP_DEFAULT_TIMEOUT_MS;
}

static void upworker_free(pt__upworker_t *uw)
{
    for (size_t b = 0; b < PT__UP_HEALTH_BUCKETS; b++) {
        while (uw->health[b] != NULL) {
            pt__ephealth_t *h = uw->health[b];
            uw->health[b] = h->next;
            free(h->url);
            free(h);
        }
    }
    for (size_t i = 0; i < uw->cluster_cnt; i++)
        free(uw->clusters[i].health);
    free(uw->clusters);
    free(uw);
}

int pt_upstream_worker_init(pt_worker_t *w)
{
    if (w == NULL || w->base == NULL)
        return PT_ERR_INTERNAL;
    pt__upworker_t *uw = xcalloc(1, sizeof(*uw));
    uw->w = w;
    const char *nat = getenv("PORTICO_UPSTREAM_NATIVE");
    uw->native_off = nat != NULL && (strcmp(nat, "0") == 0 || strcmp(nat, "off") == 0);
    int rc = pt__uphttp_worker_init(uw);
    if (rc == 0 && (rc = pt__uph1_worker_init(uw)) != 0)
        pt__uphttp_worker_dispose(uw);
    if (rc != 0) {
        upworker_free(uw);
        return rc;
    }
    w->upstream_http = uw;
    return 0;
}

void pt_upstream_worker_dispose(pt_worker_t *w)
{
    pt__uph2_worker_dispose(w);
    pt__upworker_t *uw = w != NULL ? w->upstream_http : NULL;
    if (uw == NULL)
        return;
    pt__uph1_worker_dispose(uw);
    pt__uphttp_worker_dispose(uw);
    upworker_free(uw);
    w->upstream_http = NULL;
}
