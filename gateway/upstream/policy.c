/*
 * policy.c -- the endpoint policy shared by every upstream back end (see
 * policy.h): round robin, passive ejection, the retry decision, connection
 * caps with a bounded queue.
 */
#include "core/xalloc.h"
#include "upstream/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/observe.h"
#include "upstream/health.h"
#include "portico/status.h"

enum { EP_BUCKETS = 64 };

struct pt_policy_ep {
    char *key;                    /* the URL; for https:// also the TLS settings (ep_key) */
    unsigned fails;               /* consecutive connect failures */
    uint64_t eject_until_ms;      /* monotonic; 0 = not ejected */
    unsigned conns;               /* counted connections (HTTP/1.1) */
    unsigned waiting;
    pt_policy_wait_t *wait_head, *wait_tail;
    pt_policy_ep_t *next;         /* hash chain */
};

/* Per worker, per cluster (by cluster->index). */
typedef struct cl_state {
    const pt_cluster_t *cl;       /* the snapshot's cluster this slot was set up for */
    size_t next;                  /* round-robin cursor */
    pt_policy_ep_t **eps;         /* by endpoint index */
} cl_state_t;

typedef struct policy_worker {
    pt_worker_t *w;
    pt_policy_ep_t *eps[EP_BUCKETS];
    cl_state_t *cls;
    size_t cl_cnt;
} policy_worker_t;

int pt_policy_worker_init(pt_worker_t *w)
{
    if (w == NULL)
        return PT_ERR_INTERNAL;
    policy_worker_t *pw = pt_xcalloc(1, sizeof(*pw));
    pw->w = w;
    w->upstream_policy = pw;
    return 0;
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
        free(pw->cls[i].eps);
    free(pw->cls);
    free(pw);
    w->upstream_policy = NULL;
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
    char *k = malloc(n);
    if (k == NULL)
        abort();
    if (ep->tls)
        snprintf(k, n, "%s|%s|%s|%s", ep->url, verify, ca, auth);
    else
        snprintf(k, n, "%s", ep->url);
    return k;
}

static pt_policy_ep_t *ep_of(policy_worker_t *pw, const pt_cluster_t *cl, const pt_endpoint_t *ep)
{
    char *key = ep_key(cl, ep);
    size_t h = 2166136261u;
    for (const char *s = key; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h %= EP_BUCKETS;
    for (pt_policy_ep_t *e = pw->eps[h]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            free(key);
            return e;
        }
    }
    pt_policy_ep_t *e = pt_xcalloc(1, sizeof(*e));
    e->key = key;
    e->next = pw->eps[h];
    pw->eps[h] = e;
    return e;
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
        s->cl = cl;
        s->next = 0;
        free(s->eps);
        s->eps = pt_xcalloc(cl->endpoint_cnt ? cl->endpoint_cnt : 1, sizeof(*s->eps));
        for (size_t i = 0; i < cl->endpoint_cnt; i++)
            s->eps[i] = ep_of(pw, cl, &cl->endpoints[i]);
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

static void tried_add(pt_policy_try_t *t, long idx)
{
    if (idx < 0)
        return;
    if (idx < 64)
        t->tried |= (uint64_t)1 << idx;
    t->attempts++;
}

/* The next endpoint in round-robin order that is not ejected (nor tried, with skip_tried). */
static long next_ep(pt_worker_t *w, const pt_cluster_t *cl, uint64_t tried, bool skip_tried)
{
    size_t n = cl->endpoint_cnt;
    if (n == 0)
        return -1;
    cl_state_t *s = cl_of(pw_of(w), cl);
    uint64_t now = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (s->next + i) % n;
        if (skip_tried && idx < 64 && (tried & ((uint64_t)1 << idx)) != 0)
            continue;
        if (!pt_health_endpoint_up(cl, idx)) /* active health checks (health.h) */
            continue;
        if (s->eps[idx]->eject_until_ms != 0) {
            if (now == 0)
                now = pt_now_ms();
            if (s->eps[idx]->eject_until_ms > now)
                continue;
        }
        s->next = idx + 1;
        return (long)idx;
    }
    return -1;
}

long pt_policy_pick(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_try_t *t)
{
    long idx = next_ep(w, cl, 0, false);
    tried_add(t, idx);
    return idx;
}

long pt_policy_retry(pt_worker_t *w, const pt_upcall_req_t *r, pt_policy_try_t *t,
                     pt_policy_fail_t kind, bool replayable)
{
    if (!replayable)
        return -1;
    const pt_cluster_t *cl = r->cluster;
    long idx;
    switch (kind) {
    case PT_POLICY_FAIL_CONNECT:
        if (t->attempts > cl->retries)
            return -1;
        idx = next_ep(w, cl, t->tried, true);
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
        idx = next_ep(w, cl, t->tried, true);
        if (idx < 0) /* the request may be fine on the same host, another connection */
            idx = next_ep(w, cl, t->tried, false);
        break;
    default:
        return -1;
    }
    tried_add(t, idx);
    return idx;
}

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
    if (pt_policy_errno_local(err)) {
        /* Our own shortage says nothing about the endpoint: ejecting it would
         * turn one client's fd exhaustion into an outage for everyone. */
        pt_policy_count_local(w, cl);
        return PT_POLICY_FAIL_LOCAL;
    }
    /* Passive checks only: after the cool-down the endpoint gets traffic
     * again, and one more failure ejects it again (fails is not reset). */
    if (++e->fails >= PT_POLICY_EJECT_AFTER)
        e->eject_until_ms = pt_now_ms() + PT_POLICY_EJECT_MS;
    return PT_POLICY_FAIL_CONNECT;
}

void pt_policy_connect_ok(pt_policy_ep_t *e)
{
    e->fails = 0;
    e->eject_until_ms = 0;
}

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

int pt_policy_conn_acquire(pt_worker_t *w, const pt_cluster_t *cl, pt_policy_ep_t *e,
                           pt_policy_wait_t *wt)
{
    if (e->conns < pt_policy_max_conns(cl, false) && e->wait_head == NULL) {
        e->conns++;
        return PT_POLICY_GRANTED;
    }
    if (e->waiting >= pt_policy_max_pending(cl)) {
        pt_policy_count_overflow(w, cl);
        return PT_ERR_OVERLOADED;
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
    if (wt == NULL && e->conns > 0)
        e->conns--; /* else the slot passes to the waiter, still counted */
    return wt;
}
