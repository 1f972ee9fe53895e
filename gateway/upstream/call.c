/*
 * call.c -- the upstream call primitive: dispatch on the cluster's protocol.
 *
 * The back ends implement the calls; this file routes the public API of
 * call.h to them and owns the policy they share (call_internal.h).
 *
 * gRPC clusters and `http2: true` REST clusters go to h2.c, the nghttp2
 * client (h2c prior knowledge for http://, TLS + ALPN for https://; an
 * https:// endpoint that picks http/1.1 gets its calls continued through
 * http.c). Other REST clusters (PT_PROTO_HTTP, HTTP/1.1) go to one of two back
 * ends, chosen once per cluster per worker:
 *   - h1.c, the native HTTP/1.1 client, when every endpoint is a plain
 *     http:// one with an IP address (or localhost): per-endpoint keep-alive
 *     pools, one writev and one read per exchange, no allocation per request
 *     in steady state;
 *   - http.c (libcurl multi, HTTP/1.1 only) otherwise: https:// endpoints
 *     (TLS), endpoints named by DNS host names (libcurl resolves them
 *     asynchronously).
 * The environment variable PORTICO_UPSTREAM_NATIVE=0 sends every HTTP/1.1 REST
 * cluster through libcurl (a switch for comparisons and a fallback).
 *
 * Every back end follows the one endpoint policy of policy.c: round robin,
 * passive ejection, retries, connection caps.
 */
#include "core/xalloc.h"
#include "upstream/call_internal.h"

#include <stdlib.h>
#include <string.h>
#include "http/h2mem.h"
#include "upstream/h2.h"

#include "observe/trace.h"
#include "portico/status.h"

/* ---- tracing: a client span around a call -------------------------------- */

/*
 * A traced call's callbacks go through this wrapper, which records the
 * response status and ends the span when the call ends (on_done) or is
 * cancelled; the caller's callbacks then run as they would without it.
 */
typedef struct traced {
    pt_trace_call_t *tc;
    pt_worker_t *w;
    pt_upcall_t *call; /* set once the back end's start returned */
    pt_upcall_cbs_t orig, mine;
    void *ud;
    int end_st;
    bool in_start, ended;
} traced_t;

static size_t t_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    traced_t *x = ud;
    return x->orig.read_body(x->ud, buf, max, eof);
}

static void t_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    traced_t *x = ud;
    pt_trace_call_status(x->tc, status);
    if (x->orig.on_head != NULL)
        x->orig.on_head(x->ud, status, h, cnt);
}

static bool t_on_data(void *ud, const char *data, size_t len)
{
    traced_t *x = ud;
    return x->orig.on_data(x->ud, data, len);
}

static void t_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    traced_t *x = ud;
    void (*done)(void *, int, const char *, const pt_header_t *, size_t) = x->orig.on_done;
    void *oud = x->ud;
    if (x->in_start) {
        x->ended = true; /* pt_upcall_start ends the span */
        x->end_st = st;
    } else {
        if (x->call != NULL)
            x->call->traced = NULL;
        /* x lives in the span's record: released with it */
        pt_trace_call_end(x->w, x->tc, st, x->call != NULL ? pt_upcall_endpoint(x->call) : NULL);
    }
    done(oud, st, reason, t, tcnt);
}

static int start_call(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                      void *ud, pt_upcall_t **out);

_Static_assert(sizeof(traced_t) <= PT_TRACE_CALL_USER, "traced_t must fit the span record's user area");

int pt_upcall_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                    void *ud, pt_upcall_t **out)
{
    pt_trace_call_t *tc = w != NULL && r != NULL && cbs != NULL && r->cluster != NULL
                              ? pt_trace_call_begin(w, r)
                              : NULL;
    if (tc == NULL)
        return start_call(w, r, cbs, ud, out);
    traced_t *x = pt_trace_call_user(tc);
    *x = (traced_t){.tc = tc, .w = w, .orig = *cbs, .ud = ud, .in_start = true};
    x->mine = (pt_upcall_cbs_t){cbs->read_body != NULL ? t_read_body : NULL, t_on_head,
                                cbs->on_data != NULL ? t_on_data : NULL, t_on_done};
    int rc = start_call(w, r, &x->mine, x, out);
    x->in_start = false;
    if (rc != 0 || x->ended) {
        pt_trace_call_end(w, tc, rc != 0 ? rc : x->end_st, NULL); /* releases x */
        return rc;
    }
    x->call = *out;
    (*out)->traced = x;
    return 0;
}

static int start_call(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                      void *ud, pt_upcall_t **out)
{
    if (w == NULL || r == NULL || r->cluster == NULL || cbs == NULL || out == NULL)
        return PT_ERR_INTERNAL;
    pt__upretry_count_call(w, r->cluster);
    if (r->retry != NULL && r->upgrade.len == 0) /* a route's `retry:` policy (retry.c) */
        return pt__upretry_start(w, r, cbs, ud, out);
    return pt__upcall_dispatch(w, r, cbs, ud, out);
}

int pt__upcall_dispatch(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                        void *ud, pt_upcall_t **out)
{
    if (r->upgrade.len != 0) {
        /* Tunnels need the connection to themselves after the 101: only the
         * native HTTP/1.1 client hands it over, over TCP (ws://) or TLS
         * (wss://, https:// endpoints: h1.c speaks TLS for tunnels only).
         * libcurl would need CONNECT_ONLY and its own request writing and
         * response parsing; an HTTP/2 upstream would need extended CONNECT. */
        pt__upworker_t *uw = w->upstream_http;
        const pt_cluster_t *cl = r->cluster;
        bool ok = cl->protocol == PT_PROTO_HTTP && uw != NULL && uw->h1 != NULL &&
                  !uw->native_off && !r->has_body && cl->endpoint_cnt > 0;
        bool any_tls = false; /* `http2: true` over http:// only is h2c: no HTTP/1.1 there */
        for (size_t i = 0; ok && i < cl->endpoint_cnt; i++) {
            ok = pt__uph1_tunnel_ok(&cl->endpoints[i]);
            any_tls = any_tls || cl->endpoints[i].tls;
        }
        if (cl->http2 && !any_tls)
            ok = false;
        if (!ok)
            return PT_ERR_NOT_IMPLEMENTED;
        return pt__uph1_start(uw, r, cbs, ud, out);
    }
    if (pt__uph2_serves(r->cluster)) /* grpc, and http2 REST clusters: native HTTP/2 (h2.c) */
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
    if (c == NULL)
        return;
    traced_t *x = c->traced;
    if (x != NULL) { /* the span ends here: no on_done comes after a cancel */
        c->traced = NULL;
        pt_trace_call_end(x->w, x->tc, PT_ERR_CANCELED, pt_upcall_endpoint(c)); /* releases x */
    }
    c->ops->cancel(c);
}

int pt_upcall_tunnel_lend(pt_upcall_t *c, pt_upcall_lent_t *lent)
{
    /* A traced call's span takes its end status from on_done, which a lent
     * call never calls: traced calls keep the full path. */
    if (c == NULL || c->ops->tunnel_lend == NULL || c->traced != NULL)
        return PT_ERR_INVALID;
    return c->ops->tunnel_lend(c, lent);
}

const char *pt_upcall_endpoint(const pt_upcall_t *c)
{
    return c != NULL ? c->ops->endpoint(c) : NULL;
}

/* ---- shared per-worker state ------------------------------------------------ */

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
    /* Another snapshot's cluster at this index (or the first call): decide again. */
    memset(s, 0, sizeof(*s));
    s->cl = cl;
    bool native = !uw->native_off && cl->protocol == PT_PROTO_HTTP && !cl->http2 &&
                  cl->endpoint_cnt > 0;
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        if (!pt__uph1_endpoint_ok(&cl->endpoints[i]))
            native = false;
    s->backend = native ? PT__UP_H1 : PT__UP_CURL;
    return s;
}

static void upworker_free(pt__upworker_t *uw)
{
    free(uw->clusters);
    free(uw);
}

int pt_upstream_worker_init(pt_worker_t *w)
{
    if (w == NULL || w->base == NULL)
        return PT_ERR_INTERNAL;
    if (w->upstream_policy == NULL && pt_policy_worker_init(w) != 0)
        return PT_ERR_INTERNAL;
    pt__upworker_t *uw = pt_xcalloc(1, sizeof(*uw));
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
    if (uw != NULL) {
        pt__uph1_worker_dispose(uw);
        pt__uphttp_worker_dispose(uw);
        upworker_free(uw);
        w->upstream_http = NULL;
    }
    pt_policy_worker_dispose(w); /* last: the back ends' pools point into it */
    /* The nghttp2 allocator: the client sessions are gone now, and a worker's
     * connections (server sessions) are destroyed before its upstream state. */
    if (w != NULL)
        pt_h2mem_dispose(w);
}
