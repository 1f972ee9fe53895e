/*
 * grpc_md.c -- what the parts of the `grpc` handler share about a request
 * (grpc.h): which headers become gRPC metadata, and the call's deadline.
 *
 * The lowest file of the handler: grpc.c (the route, REST transcoding) and
 * grpc_native.c (passthrough, gRPC-Web) both call it, it calls neither.
 */
#include "handlers/grpc.h"

#include <string.h>

#include "portico/status.h"
#include "portico/transcoder/wkt.h"
#include "observe/trace.h"

/* Header names Portico or gRPC own: never forwarded as metadata. */
bool pt__grpc_md_reserved(const char *n)
{
    static const char *const names[] = {"content-type", "te", "host", "connection",
                                        "transfer-encoding", "content-length", "user-agent",
                                        "keep-alive", "upgrade", "proxy-connection", NULL};
    if (n[0] == ':' || strncmp(n, "grpc-", 5) == 0)
        return true;
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(n, names[i]) == 0)
            return true;
    return false;
}

static bool md_allowed(const pt_grpc_conf_t *conf, pt_str_t name)
{
    for (size_t i = 0; i < conf->md_forward_cnt; i++) {
        const char *f = conf->md_forward[i];
        size_t fl = strlen(f);
        if (fl > 0 && f[fl - 1] == '*') {
            if (name.len >= fl - 1 && memcmp(name.base, f, fl - 1) == 0)
                return true;
        } else if (name.len == fl && memcmp(name.base, f, fl) == 0) {
            return true;
        }
    }
    return false;
}

int pt__grpc_request_md(pt_req_t *req, const pt_grpc_conf_t *conf, pt_header_t **md, size_t *cnt,
                        pt_str_t *bad)
{
    const pt_headers_t *h = &req->headers;
    pt_header_t *v = pt_arena_alloc(req->arena, (h->cnt + 1) * sizeof(*v));
    if (v == NULL)
        return PT_ERR_LIMIT;
    size_t n = 0;
    bool want_id = md_allowed(conf, PT_STR("x-request-id"));
    for (size_t i = 0; i < h->cnt; i++) {
        pt_str_t name = h->v[i].name, value = h->v[i].value;
        bool trace_hdr = req->trace != NULL && (pt_str_eq(name, PT_STR("traceparent")) ||
                                                pt_str_eq(name, PT_STR("tracestate")));
        if (pt_str_eq(name, PT_STR("x-request-id")) || (!trace_hdr && !md_allowed(conf, name)))
            continue; /* with tracing on, the trace context always reaches gRPC upstreams */
        if (trace_hdr && name.len == 11) { /* traceparent: the call's own span (observe/trace.h) */
            v[n++] = (pt_header_t){name, pt_trace_child(req->trace, req->arena)};
            if (v[n - 1].value.base == NULL)
                return PT_ERR_LIMIT;
            continue;
        }
        char nz[64];
        if (name.len < sizeof(nz)) {
            memcpy(nz, name.base, name.len);
            nz[name.len] = '\0';
            if (pt__grpc_md_reserved(nz))
                continue;
        }
        if (pt_str_has_isuffix(name, PT_STR("-bin"))) {
            uint8_t *raw = pt_arena_alloc(req->arena, PT_BASE64_DECODED_MAX(value.len));
            if (raw == NULL)
                return PT_ERR_LIMIT;
            long dl = pt_base64_decode_to(raw, value.base, value.len);
            if (dl < 0)
                continue; /* not base64: not forwardable */
            value = (pt_str_t){(const char *)raw, (size_t)dl};
        } else if (!pt_grpc_md_valid(name, value)) {
            *bad = name; /* refused, not dropped: see pt_grpc_md_valid (issue 14) */
            return PT_ERR_INVALID;
        }
        v[n++] = (pt_header_t){name, value};
    }
    if (want_id && req->request_id.len > 0)
        v[n++] = (pt_header_t){PT_STR("x-request-id"), req->request_id};
    *md = v;
    *cnt = n;
    return 0;
}

uint64_t pt__grpc_deadline_ms(const pt_req_t *req, const pt_grpc_conf_t *conf, bool *send)
{
    uint64_t ms = conf->timeout_ms;
    if (ms == 0 && req->route.route != NULL)
        ms = req->route.route->timeout_ms;
    if (ms == 0)
        ms = conf->cluster->timeout_ms;
    uint64_t client;
    pt_str_t gt = pt_headers_get(&req->headers, PT_STR("grpc-timeout"));
    bool given = gt.base != NULL && pt_grpc_timeout_parse(gt, &client) == 0;
    if (given && (ms == 0 || client < ms))
        ms = client;
    *send = given || conf->send_deadline;
    return ms != 0 ? ms : 1;
}
