/*
 * agg_http.c -- the `http` call kind of the aggregate handler.
 *
 *   - name: profile
 *     http: { cluster: users, method: GET, path: "/users/{user}",
 *             headers: { x-tenant: "{header.x-tenant}" }, body: { ... } }
 *
 * One pt_upcall_start() per call (upstream/call.h: pools, endpoint policy,
 * retries of idempotent methods). Upstream headers are only what the call
 * names, plus accept, x-request-id and, with a body, content-type: nothing
 * of the client's request leaks to a back end unless a template asks for it.
 * The answer is kept up to the aggregate's max_result and parsed as JSON when
 * it ends: 2xx -> the result; 4xx -> a failure carrying the upstream's status
 * and its JSON error; anything else -> 502.
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/xalloc.h"
#include "handlers/aggregate.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "upstream/call.h"
#include "observe/trace.h"

typedef struct http_kconf {
    const char *cluster_name;
    const char *method;
    const pt_conf_node_t *path_node, *headers_node, *body_node;
    const pt_cluster_t *cluster;
    pt_agg_tmpl_t path;
    pt_agg_tmap_t headers;
    pt_agg_jtmpl_t *body; /* NULL: no body */
    bool idempotent;
} http_kconf_t;

static const pt_conf_field_t http_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(http_kconf_t, cluster_name), 0, 0, true, NULL},
    {"method", PT_CONF_T_STR, offsetof(http_kconf_t, method), 0, 0, false, NULL},
    {"path", PT_CONF_T_NODE, offsetof(http_kconf_t, path_node), 0, 0, true, NULL},
    {"headers", PT_CONF_T_NODE, offsetof(http_kconf_t, headers_node), 0, 0, false, NULL},
    {"body", PT_CONF_T_NODE, offsetof(http_kconf_t, body_node), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void http_dispose(void *v)
{
    http_kconf_t *k = v;
    pt_agg_tmpl_dispose(&k->path);
    pt__agg_tmap_dispose(&k->headers);
    pt_agg_jtmpl_free(k->body);
    k->body = NULL;
}

static bool method_token(const char *m)
{
    if (*m == '\0')
        return false;
    for (; *m != '\0'; m++)
        if (!(*m >= 'A' && *m <= 'Z'))
            return false;
    return true;
}

static bool header_allowed(const char *ln)
{
    pt_str_t n = pt_str_c(ln);
    return pt_header_name_valid(n, true) && !pt_header_is_hop_by_hop(n) &&
           strcmp(ln, "host") != 0 && strcmp(ln, "content-length") != 0 &&
           strcmp(ln, "transfer-encoding") != 0;
}

static int http_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_agg_call_conf_t *cc,
                      void **out)
{
    (void)cc;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "http: expected a map { cluster, method, path, ... }");
    http_kconf_t *k = pt_conf_alloc(cx, sizeof(*k));
    k->method = "GET";
    if (pt_conf_parse_fields(cx, node, http_fields, k) != 0)
        return PT_ERR_INVALID;
    *out = k;
    if (!method_token(k->method))
        pt_conf_error(cx, pt_conf_map_get(node, "method"),
                      "http: method '%s' is not an upper-case method token (GET, POST, ...)",
                      k->method);
    k->idempotent = strcmp(k->method, "GET") == 0 || strcmp(k->method, "HEAD") == 0 ||
                    strcmp(k->method, "PUT") == 0 || strcmp(k->method, "DELETE") == 0 ||
                    strcmp(k->method, "OPTIONS") == 0;
    if (pt__agg_tmpl_from_node(cx, k->path_node, &k->path) == 0 &&
        (k->path.seg_cnt == 0 || k->path.segs[0].lit == NULL || k->path.segs[0].lit[0] != '/'))
        pt_conf_error(cx, k->path_node,
                      "http: path must start with `/` (a literal, not a reference)");
    pt__agg_tmap_parse(cx, k->headers_node, "http: headers", header_allowed, &k->headers);
    if (k->body_node != NULL) {
        if (k->idempotent && strcmp(k->method, "PUT") != 0)
            pt_conf_error(cx, k->body_node, "http: a %s call has no body", k->method);
        k->body = pt__agg_jtmpl_from_node(cx, k->body_node);
    }
    pt_conf_on_release(cx, http_dispose, k);
    return pt_conf_error_count(cx) == 0 ? 0 : PT_ERR_INVALID;
}

static int http_check(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, const pt_config_t *config)
{
    http_kconf_t *k = cc->kconf;
    const pt_conf_node_t *at = pt_conf_map_get(cc->kind_node, "cluster");
    k->cluster = pt_config_cluster(config, k->cluster_name);
    if (k->cluster == NULL)
        return pt_conf_error(cx, at, "aggregate: call '%s': unknown cluster '%s'", cc->name,
                             k->cluster_name);
    if (k->cluster->protocol != PT_PROTO_HTTP)
        return pt_conf_error(cx, at, "aggregate: call '%s': cluster '%s' is not an http cluster",
                             cc->name, k->cluster_name);
    if (k->cluster->endpoint_cnt == 0)
        return pt_conf_error(cx, at, "aggregate: call '%s': cluster '%s' has no endpoints",
                             cc->name, k->cluster_name);
    return 0;
}

static void http_each(pt_agg_call_conf_t *cc,
                      void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node), void *ud)
{
    http_kconf_t *k = cc->kconf;
    fn(ud, &k->path, k->path_node);
    pt__agg_tmap_each(&k->headers, fn, ud);
    pt_agg_jtmpl_each(k->body, fn, ud);
}

/* ---- one call ------------------------------------------------------------------------ */

typedef struct http_call {
    pt_agg_call_t *c;
    pt_upcall_t *up;
    pt_upcall_req_t r;
    pt_headers_t headers;
    const char *body;
    size_t body_len, body_off;
    char *buf; /* the answer (malloc, freed by the arena cleanup) */
    size_t len, cap;
    int status;
    uint64_t max;
} http_call_t;

static void http_cleanup(void *data)
{
    http_call_t *h = data;
    pt_upcall_stop(&h->up);
    free(h->buf);
    h->buf = NULL;
}

static size_t up_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    http_call_t *h = ud;
    size_t n = h->body_len - h->body_off;
    if (n > max)
        n = max;
    memcpy(buf, h->body + h->body_off, n);
    h->body_off += n;
    *eof = h->body_off == h->body_len;
    return n;
}

static void fail(http_call_t *h, int http, int st, const char *msg)
{
    pt_agg_call_t *c = h->c;
    pt_upcall_stop(&h->up);
    c->status = http;
    c->fail = st;
    c->message = msg;
    pt__agg_call_done(c, false);
}

static void up_on_head(void *ud, int status, const pt_header_t *hd, size_t cnt)
{
    http_call_t *h = ud;
    h->status = status;
    if (pt_upcall_endpoint(h->up) != NULL)
        h->c->upstream = pt_upcall_endpoint(h->up);
    pt__agg_copy_headers(h->c, hd, cnt);
    for (size_t i = 0; i < cnt; i++) {
        unsigned long long cl;
        if (pt_str_eq(hd[i].name, PT_STR("content-length")) &&
            pt_str_to_u64(hd[i].value, ~0ull >> 1, &cl) == 0 && cl > h->max) {
            fail(h, 502, PT_ERR_UPSTREAM, "upstream answer larger than max_result");
            return;
        }
    }
}

static bool up_on_data(void *ud, const char *data, size_t len)
{
    http_call_t *h = ud;
    if (h->len + len > h->max) {
        fail(h, 502, PT_ERR_UPSTREAM, "upstream answer larger than max_result");
        return false;
    }
    if (h->len + len > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        while (cap < h->len + len)
            cap *= 2;
        h->buf = pt_xrealloc(h->buf, cap);
        h->cap = cap;
    }
    memcpy(h->buf + h->len, data, len);
    h->len += len;
    return true;
}

/* The text of an upstream JSON error: error.message, message, error (a string), or NULL. */
static const char *error_text(pt_req_t *req, struct json_object *j)
{
    struct json_object *e = NULL, *m = NULL;
    if (json_object_object_get_ex(j, "error", &e)) {
        if (json_object_is_type(e, json_type_string))
            m = e;
        else
            json_object_object_get_ex(e, "message", &m);
    }
    if (m == NULL)
        json_object_object_get_ex(j, "message", &m);
    if (!json_object_is_type(m, json_type_string))
        return NULL;
    return pt_arena_printf(req->arena, "%.200s", json_object_get_string(m));
}

static void up_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    (void)t;
    (void)tcnt;
    http_call_t *h = ud;
    pt_agg_call_t *c = h->c;
    pt_req_t *req = pt__agg_req(c);
    if (h->up != NULL && pt_upcall_endpoint(h->up) != NULL)
        c->upstream = pt_upcall_endpoint(h->up);
    h->up = NULL; /* the call machinery frees it */
    if (st != 0) {
        http_kconf_t *k = c->conf->kconf;
        pt_observe_upstream_error(req->worker, k->cluster, st);
        if (reason != NULL && req->fail_reason == NULL)
            req->fail_reason = reason; /* internal: the log's, never the client's */
        fail(h, pt_status_http(st), st, pt_strerror(st));
        return;
    }
    bool ok;
    struct json_object *j = pt__agg_parse_json(c->run, h->buf, h->len, &ok);
    c->status = h->status;
    if (h->status >= 200 && h->status < 300) {
        if (!ok) {
            fail(h, 502, PT_ERR_UPSTREAM, "upstream answer is not valid JSON");
            return;
        }
        c->result = j;
        pt__agg_call_done(c, true);
        return;
    }
    if (h->status >= 400 && h->status < 500) {
        /* passed through: the upstream's status, its JSON error when it sent one */
        if (ok && j != NULL) {
            char *copy = pt_arena_alloc(req->arena, h->len);
            if (copy != NULL) {
                memcpy(copy, h->buf, h->len);
                c->error_body = (pt_str_t){copy, h->len};
            }
            c->message = error_text(req, j);
        }
        json_object_put(j);
        if (c->message == NULL)
            c->message = pt_arena_printf(req->arena, "upstream answered %d", h->status);
        c->fail = 0;
        pt__agg_call_done(c, false);
        return;
    }
    json_object_put(j);
    fail(h, 502, PT_ERR_UPSTREAM, pt_arena_printf(req->arena, "upstream answered %d", h->status));
}

static int http_start(pt_agg_call_t *c)
{
    const http_kconf_t *k = c->conf->kconf;
    pt_req_t *req = pt__agg_req(c);
    http_call_t *h = pt_arena_zalloc(req->arena, sizeof(*h));
    if (h == NULL || pt_arena_defer(req->arena, http_cleanup, h) != 0) {
        c->message = "request arena full";
        return PT_ERR_LIMIT;
    }
    h->c = c;
    c->kstate = h;
    h->max = pt__agg_conf(c)->max_result;
    const char *path = pt__agg_render(c, &k->path, PT_AGG_ENC_URL);
    if (path == NULL)
        return PT_ERR_INVALID;
    pt_headers_init(&h->headers, req->arena);
    for (size_t i = 0; i < k->headers.cnt; i++) {
        const char *v = pt__agg_render(c, &k->headers.values[i], PT_AGG_ENC_HEADER);
        if (v == NULL)
            return PT_ERR_INVALID;
        pt_headers_add_nocopy(&h->headers, pt_str_c(k->headers.names[i]), pt_str_c(v));
    }
    if (pt_headers_get(&h->headers, PT_STR("accept")).base == NULL)
        pt_headers_add_nocopy(&h->headers, PT_STR("accept"), PT_STR("application/json"));
    if (req->request_id.len != 0)
        pt_headers_add_nocopy(&h->headers, PT_STR("x-request-id"), req->request_id);
    if (pt_trace_add_headers(req, &h->headers) != 0) {
        c->message = "request arena full";
        return PT_ERR_LIMIT;
    }
    if (k->body != NULL) {
        struct json_object *b = pt__agg_render_json(c, k->body);
        if (b == NULL)
            return PT_ERR_INVALID;
        size_t n = 0;
        const char *s = json_object_to_json_string_length(
            b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        char *copy = pt_arena_alloc(req->arena, n + 1);
        if (copy == NULL) {
            json_object_put(b);
            c->message = "request arena full";
            return PT_ERR_LIMIT;
        }
        memcpy(copy, s, n);
        json_object_put(b);
        h->body = copy;
        h->body_len = n;
        if (pt_headers_get(&h->headers, PT_STR("content-type")).base == NULL)
            pt_headers_add_nocopy(&h->headers, PT_STR("content-type"), PT_STR("application/json"));
    }
    pt_upcall_req_t *r = &h->r;
    r->cluster = k->cluster;
    r->method = pt_str_c(k->method);
    r->path = pt_str_c(path);
    r->headers = &h->headers;
    r->has_body = k->body != NULL;
    bool framed = strcmp(k->method, "POST") == 0 || strcmp(k->method, "PUT") == 0 ||
                  strcmp(k->method, "PATCH") == 0; /* a body is expected: say it is empty */
    r->content_length = k->body != NULL ? (int64_t)h->body_len : framed ? 0 : -1;
    r->timeout_ms = pt__agg_call_timeout(c);
    r->idempotent = k->idempotent;
    r->trace = req->trace;
    static const pt_upcall_cbs_t cbs = {
        .read_body = up_read_body,
        .on_head = up_on_head,
        .on_data = up_on_data,
        .on_done = up_on_done,
    };
    int rc = pt_upcall_start(req->worker, r, &cbs, h, &h->up);
    if (rc != 0) {
        h->up = NULL;
        return pt__agg_start_failed(c, k->cluster, rc);
    }
    c->upstream = pt_upcall_endpoint(h->up);
    return 0;
}

static void http_cancel(pt_agg_call_t *c)
{
    http_call_t *h = c->kstate;
    if (h != NULL && h->up != NULL) {
        pt_upcall_t *u = h->up;
        h->up = NULL;
        if (pt_upcall_endpoint(u) != NULL)
            c->upstream = pt_upcall_endpoint(u);
        pt_upcall_cancel(u);
    }
}

const pt_agg_kind_t pt_agg_kind_http = {
    .key = "http",
    .parse = http_parse,
    .check = http_check,
    .each_tmpl = http_each,
    .start = http_start,
    .cancel = http_cancel,
    .dispose = http_dispose,
};
