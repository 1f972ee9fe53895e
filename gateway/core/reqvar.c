/*
 * reqvar.c -- request variables and refusals for filters (portico/req.h).
 *
 * Variables are a short list in the request arena, newest first: a lookup
 * walks it and takes the first entry that names the variable (a set value) or
 * whose prefix starts it (a provider). Requests carry a handful of entries,
 * so a list beats a table here, and setting one costs one arena allocation.
 */
#include <string.h>
#include "core/chain.h"
#include "core/request.h"
#include "portico/status.h"

static pt_req_varent_t *push(pt_req_t *req, pt_str_t name)
{
    pt_req_varent_t *e = pt_arena_zalloc(req->arena, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->name = pt_arena_strdup(req->arena, name);
    if (e->name.base == NULL)
        return NULL;
    e->next = req->vars;
    req->vars = e;
    return e;
}

int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value)
{
    pt_str_t v = pt_arena_strdup(req->arena, value);
    if (v.base == NULL)
        return PT_ERR_LIMIT;
    pt_req_varent_t *e = push(req, name);
    if (e == NULL)
        return PT_ERR_LIMIT;
    e->value = v;
    return 0;
}

int pt_req_var_provider(pt_req_t *req, pt_str_t prefix, pt_req_var_fn fn, void *data)
{
    if (fn == NULL || prefix.len == 0)
        return PT_ERR_INVALID;
    pt_req_varent_t *e = push(req, prefix);
    if (e == NULL)
        return PT_ERR_LIMIT;
    e->fn = fn;
    e->data = data;
    return 0;
}

pt_str_t pt_req_var(pt_req_t *req, pt_str_t name)
{
    for (const pt_req_varent_t *e = req->vars; e != NULL; e = e->next) {
        if (e->fn == NULL) {
            if (pt_str_eq(e->name, name))
                return e->value;
        } else if (name.len > e->name.len && memcmp(name.base, e->name.base, e->name.len) == 0) {
            return e->fn(req, e->data, (pt_str_t){name.base + e->name.len, name.len - e->name.len});
        }
    }
    return PT_STR_NULL;
}

int pt_req_reject(pt_req_t *req, int st, const char *detail)
{
    if (st >= 0 || pt_status_http(st) < 400)
        st = PT_ERR_INTERNAL;
    const char *d = NULL;
    if (detail != NULL) {
        d = pt_arena_strdup(req->arena, pt_str_c(detail)).base;
        if (d == NULL)
            return PT_ERR_LIMIT;
    }
    pt__req_set_fail(req, st, d != NULL ? d : pt_strerror(st));
    if (pt__resp_started(req)) { /* from the response side: the refusal replaces the response */
        pt_headers_init(&req->resp_headers, req->arena);
        pt_headers_init(&req->resp_trailers, req->arena);
    }
    if (pt__req_is_grpc(req))
        return pt__grpc_local_reply(req, st, d);
    pt_str_t body = pt__error_body(req, st, d);
    req->resp_status = pt_status_http(st);
    req->local_body = body;
    req->resp_content_length = (int64_t)body.len;
    return pt_headers_set(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
}
