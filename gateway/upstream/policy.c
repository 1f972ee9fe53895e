/*
 * policy.c -- the endpoint policy shared by every upstream back end (see
 * policy.h): the lb picks (round robin, least request, random, ring hash)
 * with weights and priority levels, outlier ejection, the circuit breaker,
 * the retry decision, connection caps with a bounded queue.
 */
#include "core/xalloc.h"
#include "upstream/policy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "observe/observe.h"
#include "upstream/health.h"
#include "portico/status.h"

#define RLX memory_order_relaxed

enum {
    EP_BUCKETS = 64,
    HEALTH_BUCKETS = 256,
    RING_POINTS_MAX = 16384, /* points on one cluster's ring (weights beyond: fewer per weight) */
    RING_POINTS_PER_EP = 256,
};

/* ---- process-wide endpoint health ------------------------------------------------ */

/*
 * One per endpoint key (URL, TLS settings) for the life of the process:
 * the registry only grows by the endpoints some config named. Read by every
 * worker without a lock; changed by relaxed atomics, ejections under
 * eject_mu (rare) so that max_ejection_percent holds exactly.
 */
typedef struct ep_health {
    char *key;
    atomic_uint fails;                 /* consecutive failures */
    atomic_uint_fast64_t eject_until;  /* monotonic ms; 0 = in rotation */
    uint64_t last_until, last_dur;     /* end and length of the last ejection (eject_mu) */
    unsigned ejections;                /* ejections in a row (eject_mu) */
    atomic_uint conns;                 /* open connections, every worker (circuit_breaker) */
    struct ep_health *next;
} ep_health_t;

static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;  /* the registry's chains */
static pthread_mutex_t eject_mu = PTHREAD_MUTEX_INITIALIZER;   /* ejection decisions */
static ep_health_t *_Atomic health_tab[HEALTH_BUCKETS];

static uint64_t fnv64(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* A 64-bit finaliser (splitmix64): spreads FNV's output over the whole ring. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static ep_health_t *health_of(const char *key)
{
    size_t b = fnv64(key, strlen(key), 1469598103934665603ull) % HEALTH_BUCKETS;
    pthread_mutex_lock(&health_mu);
    ep_health_t *h = atomic_load(&health_tab[b]);
    while (h != NULL && strcmp(h->key, key) != 0)
        h = h->next;
    if (h == NULL) {
        h = pt_xcalloc(1, sizeof(*h));
        h->key = pt_xcheck(strdup(key));
        h->next = atomic_load(&health_tab[b]);
        atomic_store(&health_tab[b], h);
    }
    pthread_mutex_unlock(&health_mu);
    return h;
}

void pt_policy_health_reset(void)
{
    pthread_mutex_lock(&health_mu);
    for (size_t b = 0; b < HEALTH_BUCKETS; b++)
        for (ep_health_t *h = atomic_load(&health_tab[b]); h != NULL; h = h->next) {
            atomic_store(&h->fails, 0);
            atomic_store(&h->eject_until, 0);
            h->last_until = h->last_dur = 0;
            h->ejections = 0;
        }
    pthread_mutex_unlock(&health_mu);
}

unsigned pt_policy_ejected_now(void)
{
    uint64_t now = pt_now_ms();
    unsigned n = 0;
    for (size_t b = 0; b < HEALTH_BUCKETS; b++)
        for (ep_health_t *h = atomic_load(&health_tab[b]); h != NULL; h = h->next)
            if (atomic_load_explicit(&h->eject_until, RLX) > now)
                n++;
    return n;
}

static char *ep_key(const pt_cluster_t *cl, const pt_endpoint_t *ep);

void pt_policy_ep_status(const pt_cluster_t *cl, size_t idx, pt_policy_ep_status_t *out)
{
    memset(out, 0, sizeof(*out));
    char *key = ep_key(cl, &cl->endpoints[idx]);
    size_t b = fnv64(key, strlen(key), 1469598103934665603ull) % HEALTH_BUCKETS;
    ep_health_t *h = atomic_load(&health_tab[b]);
    while (h != NULL && strcmp(h->key, key) != 0)
        h = h->next;
    free(key);
    if (h == NULL)
        return;
    uint64_t now = pt_now_ms(), until = atomic_load_explicit(&h->eject_until, RLX);
    out->known = true;
    out->fails = atomic_load_explicit(&h->fails, RLX);
    out->ejected_ms = until > now ? until - now : 0;
    pthread_mutex_lock(&eject_mu);
    out->ejections = h->ejections;
    pthread_mutex_unlock(&eject_mu);
    out->conns = atomic_load_explicit(&h->conns, RLX);
}

/* ---- per worker ------------------------------------------------------------------ */

struct pt_policy_ep {
    char *key;                    /* the URL; for https:// also the TLS settings (ep_key) */
    ep_health_t *h;               /* process-wide health */
    unsigned inflight;            /* this worker's requests on it (least_request) */
    unsigned conns;               /* counted connections (HTTP/1.1) */
    unsigned waiting;
    pt_policy_wait_t *wait_head, *wait_tail;
    pt_policy_ep_t *next;         /* hash chain */
};

/* Per worker, per cluster (by cluster->index). */
typedef struct cl_state {
    const pt_cluster_t *cl;       /* the snapshot's cluster this slot was set up for */
    size_t next;                  /* round-robin cursor (equal weights) */
    pt_policy_ep_t **eps;         /* by endpoint index */
    int64_t *cur;                 /* smooth weighted round robin: current weights */
    uint32_t *cand;               /* scratch: endpoints in rotation for one pick */
    bool weighted;                /* the weights differ */
    bool levels;                  /* more than one priority level */
    uint64_t *ring;               /* ring_hash: sorted points (hash << 0), with ... */
    uint32_t *ring_ep;            /* ... the endpoint of each */
    size_t ring_len;
} cl_state_t;

typedef struct policy_worker {
    pt_worker_t *w;
    pt_policy_ep_t *eps[EP_BUCKETS];
    cl_state_t *cls;
    size_t cl_cnt;
    uint64_t rng;                 /* xorshift64* state */
} policy_worker_t;

int pt_policy_worker_init(pt_worker_t *w)
{
    if (w == NULL)
        return PT_ERR_INTERNAL;
    policy_worker_t *pw = pt_xcalloc(1, sizeof(*pw));
    pw->w = w;
    pw->rng = mix64(pt_now_ns() ^ (uint64_t)(uintptr_t)pw) | 1;
    w->upstream_policy = pw;
    return 0;
}

static void cl_state_clear(cl_state_t *s)
{
    free(s->eps);
    free(s->cur);
    free(s->cand);
    free(s->ring);
    free(s->ring_ep);
    memset(s, 0, sizeof(*s));
}

void pt_policy_worker_dispose(pt_worker_t *w)
{
    policy_worker_t *pw = w != NULL ? w->upstream_policy : NULL;
    if (pw == NULL)
        return;
    for (size_t b = 0; b < EP_BUCKETS; b++) {
        while (pw->eps[b] != NULL) {
            pt_policy_ep_t *e = pw->eps[b];
            pw->eps[b] = e->next;
            /* the back ends dropped their calls already; unlink what may remain */
            for (pt_policy_wait_t *wt = e->wait_head; wt != NULL; wt = wt->_next)
                wt->_ep = NULL;
            free(e->key);
            free(e);
        }
    }
    for (size_t i = 0; i < pw->cl_cnt; i++)
        cl_state_clear(&pw->cls[i]);
    free(pw->cls);
    free(pw);
    w->upstream_policy = NULL;
}

static uint64_t rnd(policy_worker_t *pw)
{
    uint64_t x = pw->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pw->rng = x;
    return x * 2685821657736338717ull;
}

/* A number in [0, n) (n > 0), without modulo bias worth speaking of for small n. */
static uint32_t rnd_below(policy_worker_t *pw, uint64_t n)
{
    return (uint32_t)(((rnd(pw) >> 32) * n) >> 32);
}

/*
 * The key of an endpoint's state. Clusters naming the same plain http://
 * endpoint share its health and its connections (they share the native
 * client's pool too). An https:// endpoint is another endpoint for each TLS
 * configuration: a cluster with the wrong CA or server name fails every
 * handshake, and that must not eject the endpoint for a cluster that is
 * configured right.
 */
static char *ep_key(const pt_cluster_t *cl, const pt_endpoint_t *ep)
{
    const char *ca = "", *auth = "", *verify = "";
    if (ep->tls) {
        ca = cl->ca_file != NULL ? cl->ca_file : "";
        auth = cl->authority != NULL ? cl->authority : "";
        verify = cl->tls_verify ? "1" : "0";
    }
    size_t n = strlen(ep->url) + strlen(ca) + strlen(auth) + strlen(verify) + 4;
    char *k = pt_xcheck(malloc(n));
    if (ep->tls)
        snprintf(k, n, "%s|%s|%s|%s", ep->url, verify, ca, auth);
    else
        snprintf(k, n, "%s", ep->url);
    return k;
}

static pt_policy_ep_t *ep_of(policy_worker_t *pw, const pt_cluster_t *cl, const pt_endpoint_t *ep)
{
    char *key = ep_key(cl, ep);
    size_t h = fnv64(key, strlen(key), 1469598103934665603ull) % EP_BUCKETS;
    for (pt_policy_ep_t *e = pw->eps[h]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            free(key);
            return e;
        }
    }
    pt_policy_ep_t *e = pt_xcalloc(1, sizeof(*e));
    e->key = key;
    e->h = health_of(key);
    e->next = pw->eps[h];
    pw->eps[h] = e;
    return e;
}

static int cmp_point(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return *x < *y ? -1 : *x > *y;
}

/*
 * The hash ring of `cl`: RING_POINTS_PER_EP points per unit of weight (fewer
 * when the total would pass RING_POINTS_MAX), each at the hash of
 * "URL#j". Sorted; the endpoint index rides in the low bits of a copy so one
 * sort orders both.
 */
static void ring_build(cl_state_t *s, const pt_cluster_t *cl)
{
    uint64_t total = 0;
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        total += cl->endpoints[i].weight ? cl->endpoints[i].weight : 1;
    uint64_t per = RING_POINTS_PER_EP;
    if (total * per > RING_POINTS_MAX)
        per = RING_POINTS_MAX / total > 0 ? RING_POINTS_MAX / total : 1;
    size_t len = (size_t)(total * per);
    uint64_t *pts = pt_xcalloc(len, sizeof(*pts));
    size_t k = 0;
    for (size_t i = 0; i < cl->endpoint_cnt; i++) {
        const char *url = cl->endpoints[i].url;
        uint64_t base = fnv64(url, strlen(url), 1469598103934665603ull);
        uint64_t n = (cl->endpoints[i].weight ? cl->endpoints[i].weight : 1) * per;
        for (uint64_t j = 0; j < n; j++) {
            uint64_t hj = mix64(base ^ mix64(j + 1));
            /* the top 48 bits place the point, the low 16 name the endpoint */
            pts[k++] = (hj & ~(uint64_t)0xffff) | (uint64_t)(i & 0xffff);
        }
    }
    qsort(pts, len, sizeof(*pts), cmp_point);
    s->ring = pts;
    s->ring_ep = pt_xcalloc(len, sizeof(*s->ring_ep));
    for (size_t j = 0; j < len; j++)
        s->ring_ep[j] = (uint32_t)(pts[j] & 0xffff);
    s->ring_len = len;
}

static cl_state_t *cl_of(policy_worker_t *pw, const pt_cluster_t *cl)
{
    if (cl->index >= pw->cl_cnt) {
        size_t cnt = (size_t)cl->index + 8;
        cl_state_t *v = realloc(pw->cls, cnt * sizeof(*v));
        if (v == NULL)
            abort();
        memset(v + pw->cl_cnt, 0, (cnt - pw->cl_cnt) * sizeof(*v));
        pw->cls = v;
        pw->cl_cnt = cnt;
    }
    cl_state_t *s = &pw->cls[cl->index];
    if (s->cl != cl) { /* another snapshot's cluster at this index (or the first call) */
        cl_state_clear(s);
        s->cl = cl;
        size_t n = cl->endpoint_cnt ? cl->endpoint_cnt : 1;
        s->eps = pt_xcalloc(n, sizeof(*s->eps));
        s->cur = pt_xcalloc(n, sizeof(*s->cur));
        s->cand = pt_xcalloc(n, sizeof(*s->cand));
        for (size_t i = 0; i < cl->endpoint_cnt; i++) {
            s->eps[i] = ep_of(pw, cl, &cl->endpoints[i]);
            if (cl->endpoints[i].weight != cl->endpoints[0].weight)
                s->weighted = true;
            if (cl->endpoints[i].priority != cl->endpoints[0].priority)
                s->levels = true;
        }
        if (cl->lb == PT_LB_RING_HASH && cl->endpoint_cnt > 0 && cl->endpoint_cnt <= 0xffff)
            ring_build(s, cl);
    }
    return s;
}

static policy_worker_t *pw_of(pt_worker_t *w)
{
    /* Workers set up by pt_upstream_worker_init() always have one; a worker
     * that never ran it (a unit test driving a back end alone) gets one here. */
    if (w->upstream_policy == NULL)
        pt_policy_worker_init(w);
    return w->upstream_policy;
}

pt_policy_ep_t *pt_policy_ep(pt_worker_t *w, const pt_cluster_t *cl, size_t idx)
{
    return cl_of(pw_of(w), cl)->eps[idx];
}

/* ---- the pick ---------------------------------------------------------------------- */

/*
 * May endpoint `idx` of `cl` take traffic? Not while ejected. The active
 * health checks (upstream/health.c) add their verdict here, and only here.
 */
static bool ep_in_rotation(const cl_state_t *s, size_t idx, uint64_t *now)
{
    if (!pt_health_endpoint_up(s->cl, idx)) /* active health checks (health.h) */
        return false;
    uint64_t until = atomic_load_explicit(&s->eps[idx]->h->eject_until, RLX);
    if (until != 0) {
        if (*now == 0)
            *now = pt_now_ms();
        if (until > *now)
            return false;
    }
    return true;
}

static bool was_tried(uint64_t tried, size_t idx)
{
    return idx < 64 && (tried & ((uint64_t)1 << idx)) != 0;
}

static uint32_t weight_of(const pt_cluster_t *cl, size_t idx)
{
    return cl->endpoints[idx].weight ? cl->endpoints[idx].weight : 1;
}

/*
 * The endpoints that may take this pick, into s->cand: in rotation, not
 * tried (with skip_tried), of the first priority level that has any.
 * Returns how many; *total gets the sum of their weights.
 */
static size_t candidates(cl_state_t *s, uint64_t tried, bool skip_tried, uint64_t *total)
{
    const pt_cluster_t *cl = s->cl;
    size_t n = cl->endpoint_cnt, cnt = 0;
    uint64_t now = 0, sum = 0;
    uint32_t level = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        uint32_t p = cl->endpoints[i].priority;
        if (p > level || (skip_tried && was_tried(tried, i)) || !ep_in_rotation(s, i, &now))
            continue;
        if (p < level) { /* a better level: start over */
            level = p;
            cnt = 0;
            sum = 0;
        }
        s->cand[cnt++] = (uint32_t)i;
        sum += weight_of(cl, i);
    }
    *total = sum;
    return cnt;
}

/* Smooth weighted round robin (each candidate gains its weight, the highest wins and pays the total). */
static long pick_swrr(cl_state_t *s, size_t cnt, uint64_t total)
{
    size_t best = s->cand[0];
    for (size_t k = 0; k < cnt; k++) {
        size_t i = s->cand[k];
        s->cur[i] += weight_of(s->cl, i);
        if (s->cur[i] > s->cur[best])
            best = i;
    }
    s->cur[best] -= (int64_t)total;
    return (long)best;
}

static long pick_weighted_random(policy_worker_t *pw, cl_state_t *s, size_t cnt, uint64_t total)
{
    uint64_t r = rnd_below(pw, total);
    for (size_t k = 0; k < cnt; k++) {
        uint32_t wgt = weight_of(s->cl, s->cand[k]);
        if (r < wgt)
            return s->cand[k];
        r -= wgt;
    }
    return s->cand[cnt - 1];
}

/* Power of two choices: fewer requests in flight per unit of weight wins. */
static long pick_least_request(policy_worker_t *pw, cl_state_t *s, size_t cnt)
{
    if (cnt == 1)
        return s->cand[0];
    uint32_t ia = rnd_below(pw, cnt), ib = rnd_below(pw, cnt - 1);
    if (ib >= ia) /* b is drawn among the others */
        ib++;
    uint32_t a = s->cand[ia], b = s->cand[ib];
    uint64_t la = (uint64_t)s->eps[a]->inflight * weight_of(s->cl, b);
    uint64_t lb = (uint64_t)s->eps[b]->inflight * weight_of(s->cl, a);
    return lb < la ? b : a;
}

/* The first point at or after the key's hash whose endpoint is a candidate. */
static long pick_ring(cl_state_t *s, size_t cnt, pt_str_t key)
{
    uint64_t h = mix64(fnv64(key.base, key.len, 1469598103934665603ull)) & ~(uint64_t)0xffff;
    size_t lo = 0, hi = s->ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((s->ring[mid] & ~(uint64_t)0xffff) < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t j = 0; j < s->ring_len; j++) {
        uint32_t e = s->ring_ep[(lo + j) % s->ring_len];
        for (size_t k = 0; k < cnt; k++)
            if (s->cand[k] == e)
                return e;
    }
    return s->cand[0];
}

/* Plain round robin (equal weights, one level): the next endpoint in rotation from the cursor. */
static long pick_cursor(cl_state_t *s, uint64_t tried, bool skip_tried)
{
    size_t n = s->cl->endpoint_cnt;
    uint64_t now = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (s->next + i) % n;
        if ((skip_tried && was_tried(tried, idx)) || !ep_in_rotation(s, idx, &now))
            continue;
        s->next = idx + 1;
        return (long)idx;
    }
    return -1;
}

/* The endpoint for an attempt of `r` by its cluster's lb, or -1 when none may take it. */
static long next_ep(policy_worker_t *pw, const pt_upcall_req_t *r, uint64_t tried, bool skip_tried)
{
    const pt_cluster_t *cl = r->cluster;
    if (cl->endpoint_cnt == 0)
        return -1;
    cl_state_t *s = cl_of(pw, cl);
    if (cl->lb == PT_LB_ROUND_ROBIN && !s->weighted && !s->levels)
        return pick_cursor(s, tried, skip_tried);
    uint64_t total;
    size_t cnt = candidates(s, tried, skip_tried, &total);
    if (cnt == 0)
        return -1;
    switch (cl->lb) {
    case PT_LB_ROUND_ROBIN:
        return pick_swrr(s, cnt, total);
    case PT_LB_LEAST_REQUEST:
        return pick_least_request(pw, s, cnt);
    case PT_LB_RING_HASH:
        if (r->hash_key.len > 0 && s->ring_len > 0)
            return pick_ring(s, cnt, r->hash_key);
        return pick_weighted_random(pw, s, cnt, total);
    case PT_LB_RANDOM:
        break;
    }
    return pick_weighted_random(pw, s, cnt, total);
}

/* A route retry's record of the endpoints its attempts went to (upstream/retry.c). */
static void seed_add(pt_policy_try_t *seed, long idx)
{
    if (idx < 0)
        return;
    if (idx < 64)
        seed->tried |= (uint64_t)1 << idx;
    seed->attempts++;
}

/* Attempt on `idx` starts: recorded as tried, one request in flight on it. */
static void attempt_on(policy_worker_t *pw, const pt_cluster_t *cl, pt_policy_try_t *t, long idx)
{
    if (idx < 0)
        return;
    if (idx < 64)
        t->tried |= (uint64_t)1 << idx;
    t->attempts++;
    if (t->_ep != NULL)
        t->_ep->inflight--;
    t->_cl = cl;
    t->_ep = cl_of(pw, cl)->eps[idx];
    t->_ep->inflight++;
}

long pt_policy_pick(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t)
{
    const pt_cluster_t *cl = r->cluster;
    uint32_t max = cl->breaker.max_requests;
    if (max != 0 && cl->shared != NULL) {
        if (atomic_fetch_add_explicit(&cl->shared->requests, 1, RLX) >= max) {
            atomic_fetch_sub_explicit(&cl->shared->requests, 1, RLX);
            pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_BREAKER);
            return PT_ERR_OVERLOADED;
        }
        t->_holds_request = true;
        t->_cl = cl;
    }
    policy_worker_t *pw = pw_of(w);
    pt_policy_route_try_t *rt = r->_route;
    long idx = -1;
    if (rt != NULL && rt->seed.attempts != 0) {
        /* another attempt of a route retry (upstream/retry.c): an endpoint no earlier attempt
         * tried, else any; the back end's own retries avoid them too */
        t->tried |= rt->seed.tried;
        idx = next_ep(pw, r, rt->seed.tried, true);
    }
    if (idx < 0)
        idx = next_ep(pw, r, 0, false);
    if (idx < 0) {
        pt_policy_call_end(t);
        return PT_ERR_UNAVAILABLE;
    }
    attempt_on(pw, cl, t, idx);
    if (rt != NULL)
        seed_add(&rt->seed, idx);
    return idx;
}

void pt_policy_call_end(pt_policy_try_t *t)
{
    if (t->_ep != NULL) {
        t->_ep->inflight--;
        t->_ep = NULL;
    }
    if (t->_holds_request) {
        t->_holds_request = false;
        atomic_fetch_sub_explicit(&t->_cl->shared->requests, 1, RLX);
    }
}

/* ---- outlier detection --------------------------------------------------------------- */

/* The cluster's `outlier:`; a cluster built by hand (all zero) gets the config's defaults. */
static const pt_outlier_t *outlier_of(const pt_cluster_t *cl)
{
    static const pt_outlier_t defaults = {.consecutive_failures = 5,
                                          .base_ejection_ms = 10000,
                                          .max_ejection_ms = 300000,
                                          .max_ejection_percent = 50,
                                          .answers = true};
    return cl->outlier.base_ejection_ms != 0 ? &cl->outlier : &defaults;
}

/*
 * Ejects `e` (it had its consecutive failures) for base x n, unless
 * max_ejection_percent of `cl`'s endpoints are out already (one may always
 * go). n counts ejections in a row: it starts over once the endpoint stayed
 * in rotation for as long as its last ejection lasted.
 */
static void eject(pt_worker_t *w, const pt_cluster_t *cl, ep_health_t *h)
{
    const pt_outlier_t *o = outlier_of(cl);
    cl_state_t *s = cl_of(pw_of(w), cl);
    uint64_t now = pt_now_ms();
    pthread_mutex_lock(&eject_mu);
    if (atomic_load_explicit(&h->eject_until, RLX) > now) { /* another worker was first */
        pthread_mutex_unlock(&eject_mu);
        return;
    }
    size_t out = 0;
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        if (atomic_load_explicit(&s->eps[i]->h->eject_until, RLX) > now)
            out++;
    if (out > 0 && (out + 1) * 100 > (size_t)o->max_ejection_percent * cl->endpoint_cnt) {
        pthread_mutex_unlock(&eject_mu);
        return;
    }
    if (h->ejections > 0 && now >= h->last_until + h->last_dur)
        h->ejections = 0;
    h->ejections++;
    uint64_t dur = o->base_ejection_ms * h->ejections;
    if (dur > o->max_ejection_ms)
        dur = o->max_ejection_ms;
    h->last_until = now + dur;
    h->last_dur = dur;
    atomic_store_explicit(&h->eject_until, now + dur, RLX);
    atomic_store_explicit(&h->fails, 0, RLX);
    pthread_mutex_unlock(&eject_mu);
    pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_EJECTION);
}

/* The current attempt of `t` failed in a way that counts against its endpoint. */
static void outlier_failed(pt_worker_t *w, const pt_policy_try_t *t)
{
    if (t->_ep == NULL)
        return;
    const pt_cluster_t *cl = t->_cl;
    ep_health_t *h = t->_ep->h;
    unsigned n = atomic_fetch_add_explicit(&h->fails, 1, RLX) + 1;
    unsigned max = outlier_of(cl)->consecutive_failures;
    if (max != 0 && n >= max)
        eject(w, cl, h);
}

void pt_policy_answered(pt_worker_t *w, pt_policy_try_t *t, int status, int grpc_status)
{
    if (t->_ep == NULL)
        return;
    if (status >= 500 || grpc_status == 14 /* UNAVAILABLE */) {
        /* without an `outlier:` key only connections count: a lone endpoint's own 503s
         * reach the client as they are, never turned into "no upstream available" */
        if (outlier_of(t->_cl)->answers)
            outlier_failed(w, t);
        return;
    }
    ep_health_t *h = t->_ep->h;
    if (atomic_load_explicit(&h->fails, RLX) != 0) /* no store when clear: no shared line bouncing */
        atomic_store_explicit(&h->fails, 0, RLX);
}

/* ---- retries ---------------------------------------------------------------------------- */

long pt_policy_retry(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t,
                     pt_policy_fail_t kind, bool replayable)
{
    if (kind == PT_POLICY_FAIL_CONNECT || kind == PT_POLICY_FAIL_EARLY)
        outlier_failed(w, t);
    pt_policy_route_try_t *rt = r->_route;
    if (rt != NULL && (kind != PT_POLICY_FAIL_REFUSED || t->refused_retried || !replayable)) {
        /* the route's retry policy decides (upstream/retry.c) */
        rt->failed = true;
        rt->kind = kind;
        rt->replayable = replayable;
        return -1;
    }
    if (!replayable)
        return -1;
    const pt_cluster_t *cl = r->cluster;
    policy_worker_t *pw = pw_of(w);
    long idx;
    switch (kind) {
    case PT_POLICY_FAIL_CONNECT:
        if (t->attempts > cl->retries)
            return -1;
        idx = next_ep(pw, r, t->tried, true);
        break;
    case PT_POLICY_FAIL_EARLY:
    case PT_POLICY_FAIL_REFUSED:
        if (kind == PT_POLICY_FAIL_EARLY && (!r->idempotent || t->attempts > cl->retries))
            return -1;
        if (kind == PT_POLICY_FAIL_REFUSED) {
            if (t->refused_retried)
                return -1;
            t->refused_retried = true;
        }
        idx = next_ep(pw, r, t->tried, true);
        if (idx < 0) /* the request may be fine on the same host, another connection */
            idx = next_ep(pw, r, t->tried, false);
        break;
    default:
        return -1;
    }
    attempt_on(pw, cl, t, idx);
    if (rt != NULL)
        seed_add(&rt->seed, idx);
    return idx;
}

/* ---- the hash key of a call ------------------------------------------------------------- */

/* The value of cookie `name` in one Cookie header value ("a=1; b=2"), or empty. */
static pt_str_t cookie_value(pt_str_t v, const char *name)
{
    size_t nlen = strlen(name), i = 0;
    while (i < v.len) {
        while (i < v.len && (v.base[i] == ' ' || v.base[i] == ';'))
            i++;
        size_t start = i;
        while (i < v.len && v.base[i] != ';')
            i++;
        pt_str_t pair = {v.base + start, i - start};
        if (pair.len > nlen && pair.base[nlen] == '=' && memcmp(pair.base, name, nlen) == 0)
            return (pt_str_t){pair.base + nlen + 1, pair.len - nlen - 1};
    }
    return (pt_str_t){NULL, 0};
}

pt_str_t pt_upcall_hash_key(const pt_cluster_t *cl, pt_str_t client_addr, const pt_headers_t *h)
{
    pt_str_t none = {NULL, 0};
    if (cl == NULL || cl->lb != PT_LB_RING_HASH)
        return none;
    switch (cl->hash_src) {
    case PT_HASH_CLIENT_IP:
        return client_addr;
    case PT_HASH_HEADER:
        return h != NULL ? pt_headers_get(h, pt_str_c(cl->hash_name)) : none;
    case PT_HASH_COOKIE:
        for (size_t i = 0; h != NULL && i < h->cnt; i++) {
            if (!pt_str_eq(h->v[i].name, PT_STR("cookie")))
                continue;
            pt_str_t v = cookie_value(h->v[i].value, cl->hash_name);
            if (v.len > 0)
                return v;
        }
        return none;
    }
    return none;
}

/* ---- failures, counts -------------------------------------------------------------------- */

bool pt_policy_errno_local(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

void pt_policy_count_local(pt_worker_t *w, const pt_cluster_t *cl)
{
    if (cl != NULL)
        pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_LOCAL_ERROR);
}

void pt_policy_count_overflow(pt_worker_t *w, const pt_cluster_t *cl)
{
    pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_OVERFLOW);
}

pt_policy_fail_t pt_policy_connect_failed(pt_worker_t *w, const pt_cluster_t *cl,
                                          pt_policy_ep_t *e, int err)
{
    (void)e; /* the failure counts against it through the call's retry decision */
    if (pt_policy_errno_local(err)) {
        /* Our own shortage says nothing about the endpoint: ejecting it would
         * turn one client's fd exhaustion into an outage for everyone. */
        pt_policy_count_local(w, cl);
        return PT_POLICY_FAIL_LOCAL;
    }
    return PT_POLICY_FAIL_CONNECT;
}

/* ---- connections ---------------------------------------------------------------------------- */

unsigned pt_policy_max_conns(const pt_cluster_t *cl, bool multiplexed)
{
    if (cl->max_conns_per_endpoint != 0)
        return cl->max_conns_per_endpoint;
    return multiplexed ? PT_POLICY_H2_MAX_CONNS : PT_POLICY_H1_MAX_CONNS;
}

unsigned pt_policy_max_pending(const pt_cluster_t *cl)
{
    return cl->max_pending_per_endpoint;
}

bool pt_policy_conn_open(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_ep_t *e)
{
    uint32_t max = cl->breaker.max_connections;
    if (max != 0) {
        /* open connections to the cluster's endpoints, every worker: summed
         * only when a connection is to be opened */
        cl_state_t *s = cl_of(pw_of(w), cl);
        uint64_t open = 0;
        for (size_t i = 0; i < cl->endpoint_cnt; i++)
            open += atomic_load_explicit(&s->eps[i]->h->conns, RLX);
        if (open >= max) {
            pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_BREAKER);
            return false;
        }
    }
    atomic_fetch_add_explicit(&e->h->conns, 1, RLX);
    return true;
}

void pt_policy_conn_closed(pt_policy_ep_t *e)
{
    atomic_fetch_sub_explicit(&e->h->conns, 1, RLX);
}

int pt_policy_conn_acquire(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_ep_t *e,
                           pt_policy_wait_t *wt)
{
    if (e->conns < pt_policy_max_conns(cl, false) && e->wait_head == NULL) {
        if (!pt_policy_conn_open(w, cl, e)) /* the cluster's breaker: 503 at once */
            return PT_ERR_OVERLOADED;
        e->conns++;
        return PT_POLICY_GRANTED;
    }
    if (e->waiting >= pt_policy_max_pending(cl)) {
        pt_policy_count_overflow(w, cl);
        return PT_ERR_OVERLOADED;
    }
    uint32_t maxp = cl->breaker.max_pending;
    if (maxp != 0) { /* the cluster's breaker counts waiting calls, every worker */
        if (atomic_fetch_add_explicit(&cl->shared->pending, 1, RLX) >= maxp) {
            atomic_fetch_sub_explicit(&cl->shared->pending, 1, RLX);
            pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_BREAKER);
            return PT_ERR_OVERLOADED;
        }
        wt->_cls = cl->shared;
    }
    pt_observe_upstream_event(w, cl, PT_OBSERVE_UP_QUEUED);
    wt->_ep = e;
    wt->_next = NULL;
    wt->_prev = e->wait_tail;
    if (e->wait_tail != NULL)
        e->wait_tail->_next = wt;
    else
        e->wait_head = wt;
    e->wait_tail = wt;
    e->waiting++;
    return PT_POLICY_QUEUED;
}

void pt_policy_wait_cancel(pt_policy_wait_t *wt)
{
    pt_policy_ep_t *e = wt->_ep;
    if (e == NULL)
        return;
    if (wt->_prev != NULL)
        wt->_prev->_next = wt->_next;
    else
        e->wait_head = wt->_next;
    if (wt->_next != NULL)
        wt->_next->_prev = wt->_prev;
    else
        e->wait_tail = wt->_prev;
    if (wt->_cls != NULL) {
        atomic_fetch_sub_explicit(&wt->_cls->pending, 1, RLX);
        wt->_cls = NULL;
    }
    wt->_ep = NULL;
    wt->_prev = wt->_next = NULL;
    e->waiting--;
}

pt_policy_wait_t *pt_policy_wait_next(pt_policy_ep_t *e)
{
    pt_policy_wait_t *wt = e->wait_head;
    if (wt != NULL)
        pt_policy_wait_cancel(wt);
    return wt;
}

pt_policy_wait_t *pt_policy_conn_release(pt_policy_ep_t *e)
{
    pt_policy_wait_t *wt = pt_policy_wait_next(e);
    if (wt == NULL && e->conns > 0) {
        e->conns--; /* else the slot passes to the waiter, still counted */
        pt_policy_conn_closed(e);
    }
    return wt;
}
