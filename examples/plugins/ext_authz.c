/*
 * ext_authz.c -- an example filter that asks another service before letting a
 * request through (Envoy's ext_authz, nginx's auth_request), built as a
 * shared object against the SDK headers only.
 *
 *   plugins: [ { path: build/lib/pt_ext_authz.so } ]
 *   clusters: [ { name: authz, endpoints: [ "127.0.0.1:9001" ] } ]
 *   routes:
 *     - match: { prefix: /api/ }
 *       proxy: { cluster: web }
 *       filters:
 *         - ext_authz: { cluster: authz, path: /check, forward: [ authorization ],
 *                        copy: [ x-user ], timeout: 1s }
 *
 * For each request it sends `GET <path>` to the cluster with the headers
 * named in `forward` plus x-original-method / x-original-uri, and waits
 * (PT_FILTER_SUSPEND) for the answer, on the worker's loop:
 *   2xx  -> the request goes on, with the response headers named in `copy`
 *           set on it (e.g. the user the token belongs to) and as request
 *           variables `authz.NAME` (`${var.authz.x-user}` in header rules);
 *   401  -> 401 for the client (with the check's WWW-Authenticate), 403 and
 *           other 4xx -> 403: pt_req_reject, so a JSON error body, or the
 *           gRPC status UNAUTHENTICATED / PERMISSION_DENIED for gRPC clients;
 *   5xx, timeout, no endpoint -> 503, or the request goes on when
 *           `fail_open: true` (with x-authz-skipped: 1 for the upstream).
 * A client that leaves while the check is in flight cancels it (abort hook).
 *
 * It shows the asynchronous half of the SDK: a cluster resolved at load time
 * (pt_conf_cluster in check_conf), an upstream call (pt_fetch_start), the
 * resume from its callback, and the abort hook.
 */
#include <stdio.h>
#include <string.h>
#include "portico/async.h"
#include "portico/conf.h"
#include "portico/filter.h"

typedef struct authz_conf {
    const char *cluster_name;
    const char *path;           /* "/check" */
    pt_conf_strlist_t forward;  /* request headers sent to the check */
    pt_conf_strlist_t copy;     /* check-response headers set on the request */
    uint64_t timeout_ms;
    bool fail_open;
    const pt_cluster_ref_t *cluster;
} authz_conf_t;

typedef struct authz_ctx {
    pt_req_t *req;
    const authz_conf_t *conf;
    pt_fetch_t *fetch;
} authz_ctx_t;

static const pt_conf_field_t fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(authz_conf_t, cluster_name), 0, 0, true, NULL},
    {"path", PT_CONF_T_STR, offsetof(authz_conf_t, path), 0, 0, false, NULL},
    {"forward", PT_CONF_T_STRLIST, offsetof(authz_conf_t, forward), 0, 0, false, NULL},
    {"copy", PT_CONF_T_STRLIST, offsetof(authz_conf_t, copy), 0, 0, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(authz_conf_t, timeout_ms), 1, 60000, false, NULL},
    {"fail_open", PT_CONF_T_BOOL, offsetof(authz_conf_t, fail_open), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    authz_conf_t *c = conf;
    if (c->path == NULL)
        c->path = "/check";
    else if (c->path[0] != '/')
        return pt_conf_error(cx, pt_conf_map_get(node, "path"), "ext_authz: path must start with '/'");
    if (c->timeout_ms == 0)
        c->timeout_ms = 1000;
    /* header names are matched lowercase, as requests store them */
    const pt_conf_strlist_t *lists[] = {&c->forward, &c->copy};
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; i < lists[l]->cnt; i++)
            for (char *p = (char *)lists[l]->v[i]; *p != '\0'; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
    c->cluster = pt_conf_cluster(cx, pt_conf_map_get(node, "cluster"), c->cluster_name);
    return c->cluster != NULL ? 0 : PT_ERR_INVALID;
}

static void on_checked(void *ud, int st, const pt_fetch_resp_t *resp)
{
    authz_ctx_t *c = ud;
    pt_req_t *req = c->req;
    c->fetch = NULL;
    if (st == 0 && resp->status >= 200 && resp->status < 300) {
        pt_headers_t *h = pt_req_headers(req);
        for (size_t i = 0; i < c->conf->copy.cnt; i++) {
            pt_str_t name = pt_str_c(c->conf->copy.v[i]);
            for (size_t k = 0; k < resp->header_cnt; k++)
                if (pt_str_eq(resp->headers[k].name, name)) {
                    pt_headers_set(h, name, resp->headers[k].value);
                    char var[128];
                    int n = snprintf(var, sizeof(var), "authz.%.*s", (int)name.len, name.base);
                    if (n > 0 && (size_t)n < sizeof(var))
                        pt_req_var_set(req, (pt_str_t){var, (size_t)n}, resp->headers[k].value);
                }
        }
        pt_chain_resume(req, PT_FILTER_CONTINUE);
        return;
    }
    if (st == 0 && resp->status >= 400 && resp->status < 500) {
        if (resp->status == 401) {
            for (size_t k = 0; k < resp->header_cnt; k++)
                if (pt_str_eq(resp->headers[k].name, PT_STR("www-authenticate")))
                    pt_headers_set(pt_req_resp_headers(req), PT_STR("www-authenticate"),
                                   resp->headers[k].value);
            pt_req_reject(req, PT_ERR_UNAUTHORIZED, "the check refused the credentials");
        } else {
            pt_req_reject(req, PT_ERR_FORBIDDEN, "the check denied the request");
        }
        pt_chain_resume(req, PT_FILTER_RESPOND);
        return;
    }
    if (c->conf->fail_open) {
        pt_headers_set(pt_req_headers(req), PT_STR("x-authz-skipped"), PT_STR("1"));
        pt_chain_resume(req, PT_FILTER_CONTINUE);
        return;
    }
    pt_req_fail(req, PT_ERR_UNAVAILABLE, "ext_authz: the check service failed");
    pt_chain_resume(req, PT_FILTER_ERROR);
}

static void on_abort(void *data)
{
    authz_ctx_t *c = data;
    pt_fetch_cancel(c->fetch);
    c->fetch = NULL;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const authz_conf_t *conf = f->conf;
    authz_ctx_t *c = ctx;
    c->req = req;
    c->conf = conf;

    pt_headers_t h;
    pt_headers_init(&h, pt_req_arena(req));
    const pt_headers_t *in = pt_req_headers(req);
    for (size_t i = 0; i < conf->forward.cnt; i++) {
        pt_str_t name = pt_str_c(conf->forward.v[i]);
        for (size_t k = 0; k < in->cnt; k++)
            if (pt_str_eq(in->v[k].name, name))
                pt_headers_add(&h, name, in->v[k].value);
    }
    pt_str_t path = pt_req_path(req), query = pt_req_query(req);
    char *uri = pt_arena_printf(pt_req_arena(req), "%.*s%s%.*s", (int)path.len, path.base,
                                query.len != 0 ? "?" : "", (int)query.len, query.base);
    pt_headers_add(&h, PT_STR("x-original-method"), pt_req_method(req));
    if (uri != NULL)
        pt_headers_add(&h, PT_STR("x-original-uri"), pt_str_c(uri));

    pt_fetch_req_t r = {
        .cluster = conf->cluster,
        .method = PT_STR("GET"),
        .path = pt_str_c(conf->path),
        .headers = &h,
        .timeout_ms = conf->timeout_ms,
        .max_response = 64 * 1024,
    };
    if (pt_req_on_abort(req, on_abort, c) != 0 ||
        pt_fetch_start(pt_req_worker(req), &r, on_checked, c, &c->fetch) != 0) {
        if (conf->fail_open)
            return PT_FILTER_CONTINUE;
        pt_req_fail(req, PT_ERR_UNAVAILABLE, "ext_authz: the check could not be started");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_SUSPEND;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "ext_authz",
    .conf_size = sizeof(authz_conf_t),
    .ctx_size = sizeof(authz_ctx_t),
    .fields = fields,
    .check_conf = check_conf,
    .on_request_headers = on_request_headers,
};
