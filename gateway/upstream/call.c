/*
 * call.c -- the upstream call primitive: dispatch on the cluster's protocol.
 *
 * The back ends (http.c over libcurl, grpc.c later) implement the calls;
 * this file only routes the public API of call.h to them.
 */
#include "upstream/call_internal.h"
#include "upstream/grpc.h"
#include "upstream/h2.h"

#include "portico/status.h"

int pt_upcall_start(pt_worker_t *w, const pt_upcall_req_t *r, const pt_upcall_cbs_t *cbs,
                    void *ud, pt_upcall_t **out)
{
    if (w == NULL || r == NULL || r->cluster == NULL || cbs == NULL || out == NULL)
        return PT_ERR_INTERNAL;
    if (pt__uph2_serves(r->cluster)) /* grpc, and h2c http clusters: native HTTP/2 (h2.c) */
        return pt__uph2_start(w, r, cbs, ud, out);
    switch (r->cluster->protocol) {
    case PT_PROTO_HTTP:
        return pt__uphttp_start(w, r, cbs, ud, out);
    case PT_PROTO_GRPC:
        /* upstream/grpc.c (gRPC core) is not written yet. */
        return PT_ERR_NOT_IMPLEMENTED;
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

int pt_upstream_worker_init(pt_worker_t *w)
{
    return pt__uphttp_worker_init(w);
}

void pt_upstream_worker_dispose(pt_worker_t *w)
{
    pt__uph2_worker_dispose(w);
    pt__upgrpc_worker_dispose(w); /* grpc.c: cancels its calls, stops its completion thread */
    pt__uphttp_worker_dispose(w);
}
