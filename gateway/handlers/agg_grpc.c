/*
 * agg_grpc.c -- the `grpc` call kind of the aggregate handler.
 *
 *   - name: item
 *     grpc: { cluster: inv, method: inventory.v1.Inventory/GetItem,
 *             body: { name: "warehouses/w1/items/{profile.favorite}" },
 *             metadata: { x-tenant: "{header.x-tenant}" },
 *             emit_defaults: false, proto_names: false, enums_as_ints: false }
 *
 * The method comes from the snapshot's descriptor pool (`descriptors:`, the
 * one the grpc routes load) and must be unary. At request time the body
 * template is rendered to JSON, turned into the request message by the
 * transcoder (pt_json_to_pb), and sent with upstream/grpc.h (the nghttp2
 * client: the cheaper gRPC path) as a unary call; the response message
 * becomes JSON with the call's JSON options (pt_pb_to_json). A gRPC status
 * fails the call with the HTTP status grpc routes use (pt_grpc_code_http)
 * and its google.rpc.Status JSON; a message that is not the declared type is
 * a 502 failure (JP-7).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/xalloc.h"
#include "handlers/aggregate.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/json.h"
#include "upstream/grpc.h"
#include "observe/trace.h"

typedef struct grpc_kconf {
    const char *cluster_name;
    const char *method_name;
    const pt_conf_node_t *body_node, *md_node;
    bool emit_defaults, proto_names, enums_as_ints;
    const pt_cluster_t *cluster;
    const pt_descpool_t *pool;
    const pt_methoddesc_t *method;
    char *path; /* "/pkg.Svc/Method" */
    pt_agg_jtmpl_t *body;
    pt_agg_tmap_t md;
    pt_json_opts_t jopts;
    const uint8_t *static_pb; /* the request message when the body has no reference */
    size_t static_len;
    bool has_static;
} grpc_kconf_t;

static const pt_conf_field_t grpc_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(grpc_kconf_t, cluster_name), 0, 0, true, NULL},
    {"method", PT_CONF_T_STR, offsetof(grpc_kconf_t, method_name), 0, 0, true, NULL},
    {"body", PT_CONF_T_NODE, offsetof(grpc_kconf_t, body_node), 0, 0, false, NULL},
    {"metadata", PT_CONF_T_NODE, offsetof(grpc_kconf_t, md_node), 0, 0, false, NULL},
    {"emit_defaults", PT_CONF_T_BOOL, offsetof(grpc_kconf_t, emit_defaults), 0, 0, false, NULL},
    {"proto_names", PT_CONF_T_BOOL, offsetof(grpc_kconf_t, proto_names), 0, 0, false, NULL},
    {"enums_as_ints", PT_CONF_T_BOOL, offsetof(grpc_kconf_t, enums_as_ints), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void grpc_dispose(void *v)
{
    grpc_kconf_t *k = v;
    pt_agg_jtmpl_free(k->body);
    k->body = NULL;
    pt__agg_tmap_dispose(&k->md);
}

static bool md_allowed(const char *ln)
{
    pt_str_t n = pt_str_c(ln);
    return pt_grpc_md_valid(n, PT_STR("x")) && strncmp(ln, "grpc-", 5) != 0 &&
           strcmp(ln, "content-type") != 0 && strcmp(ln, "te") != 0 &&
           !pt_str_has_isuffix(n, PT_STR("-bin"));
}

static int grpc_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_agg_call_conf_t *cc,
                      void **out)
{
    (void)cc;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "grpc: expected a map { cluster, method, body, ... }");
    grpc_kconf_t *k = pt_conf_alloc(cx, sizeof(*k));
    if (pt_conf_parse_fields(cx, node, grpc_fields, k) != 0)
        return PT_ERR_INVALID;
    *out = k;
    pt_conf_on_release(cx, grpc_dispose, k);
    k->jopts.emit_defaults = k->emit_defaults;
    k->jopts.proto_names = k->proto_names;
    k->jopts.enums_as_ints = k->enums_as_ints;
    if (k->body_node != NULL) {
        if (k->body_node->kind != PT_CONF_MAP)
            return pt_conf_error(cx, k->body_node,
                                 "grpc: body: expected a map (the request "
                                 "message as JSON)");
        k->body = pt__agg_jtmpl_from_node(cx, k->body_node);
    }
    pt__agg_tmap_parse(cx, k->md_node, "grpc: metadata", md_allowed, &k->md);
    return pt_conf_error_count(cx) == 0 ? 0 : PT_ERR_INVALID;
}

static void count_refs(void *ud, pt_agg_tmpl_t *t, const void *node)
{
    (void)node;
    *(size_t *)ud += t->ref_cnt;
}

static pt_agg_val_t no_lookup(void *ud, const pt_agg_ref_t *ref)
{
    (void)ud;
    (void)ref;
    return (pt_agg_val_t){0};
}

/*
 * A body without references is the same message for every request: encoded
 * once here (a body that does not fit the method's input is a config error
 * at the body), sent as it is at request time.
 */
static int encode_static(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, grpc_kconf_t *k)
{
    size_t refs = 0;
    pt_agg_jtmpl_each(k->body, count_refs, &refs);
    if (refs != 0)
        return 0;
    struct json_object *b = NULL;
    if (k->body != NULL) {
        pt_agg_rerr_t e = {0};
        b = pt_agg_jtmpl_render(k->body, no_lookup, NULL, &e);
    }
    size_t n = 2;
    const char *json =
        b != NULL ? json_object_to_json_string_length(b, JSON_C_TO_STRING_PLAIN, &n) : "{}";
    pt_xbuf_t pb;
    pt_xbuf_init(&pb, NULL);
    pt_xerr_t xe;
    int rc = pt_json_to_pb(k->pool, k->method->input, json, n, NULL, &pb, &xe);
    json_object_put(b);
    if (rc != 0) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
        pt_xerr_format(&xe, msg, sizeof(msg));
        pt_xbuf_dispose(&pb);
        return pt_conf_error(cx, k->body_node, "aggregate: call '%s': body is not a %s: %s",
                             cc->name, k->method->input->full_name, msg);
    }
    uint8_t *copy = pt_conf_alloc(cx, pb.len + 1);
    if (pb.len != 0)
        memcpy(copy, pb.data, pb.len);
    k->static_pb = copy;
    k->static_len = pb.len;
    k->has_static = true;
    pt_xbuf_dispose(&pb);
    return 0;
}

static int grpc_check(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, const pt_config_t *config)
{
    grpc_kconf_t *k = cc->kconf;
    const pt_conf_node_t *at = pt_conf_map_get(cc->kind_node, "cluster");
    k->cluster = pt_config_cluster(config, k->cluster_name);
    if (k->cluster == NULL)
        return pt_conf_error(cx, at, "aggregate: call '%s': unknown cluster '%s'", cc->name,
                             k->cluster_name);
    if (k->cluster->protocol != PT_PROTO_GRPC)
        return pt_conf_error(cx, at,
                             "aggregate: call '%s': cluster '%s' is not a grpc cluster "
                             "(protocol: grpc)",
                             cc->name, k->cluster_name);
    const pt_conf_node_t *mn = pt_conf_map_get(cc->kind_node, "method");
    k->pool = config->descpool;
    if (k->pool == NULL)
        return pt_conf_error(cx, mn,
                             "aggregate: call '%s': no descriptors loaded (add a "
                             "top-level `descriptors: [ api.pb ]`)",
                             cc->name);
    k->method = pt_descpool_method(k->pool, k->method_name, strlen(k->method_name));
    if (k->method == NULL)
        return pt_conf_error(cx, mn,
                             "aggregate: call '%s': no method '%s' in the descriptors "
                             "(write pkg.Service/Method)",
                             cc->name, k->method_name);
    if (k->method->client_streaming || k->method->server_streaming)
        return pt_conf_error(cx, mn,
                             "aggregate: call '%s': method '%s' streams; only unary "
                             "methods can be aggregated",
                             cc->name, k->method_name);
    const char *full = k->method->full_name; /* "pkg.Svc.Method" -> "/pkg.Svc/Method" */
    size_t fl = strlen(full);
    k->path = pt_conf_alloc(cx, fl + 2);
    k->path[0] = '/';
    memcpy(k->path + 1, full, fl + 1);
    char *dot = strrchr(k->path, '.');
    if (dot != NULL)
        *dot = '/';
    return encode_static(cx, cc, k);
}

static void grpc_each(pt_agg_call_conf_t *cc,
                      void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node), void *ud)
{
    grpc_kconf_t *k = cc->kconf;
    pt_agg_jtmpl_each(k->body, fn, ud);
    pt__agg_tmap_each(&k->md, fn, ud);
}

/* ---- one call ------------------------------------------------------------------------ */

typedef struct grpc_call {
    pt_agg_call_t *c;
    pt_grpc_call_t *call;
    pt_xbuf_t pb, json;
    bool got, bad;
} grpc_call_t;

static void grpc_cleanup(void *data)
{
    grpc_call_t *g = data;
    pt_grpc_call_stop(&g->call);
    pt_xbuf_dispose(&g->pb);
    pt_xbuf_dispose(&g->json);
}

static void on_headers(void *ud, const pt_header_t *md, size_t cnt)
{
    grpc_call_t *g = ud;
    pt__agg_copy_headers(g->c, md, cnt);
}

static void on_message(void *ud, const uint8_t *data, size_t len)
{
    grpc_call_t *g = ud;
    if (data == NULL || g->got || g->bad)
        return;
    const grpc_kconf_t *k = g->c->conf->kconf;
    pt_xerr_t xe;
    pt_xbuf_reset(&g->json);
    if (pt_pb_to_json(k->pool, k->method->output, data, len, &k->jopts, &g->json, &xe) != 0) {
        g->bad = true; /* JP-7: not the declared message */
        return;
    }
    g->got = true;
}

static void set_status_body(grpc_call_t *g, int code, const char *msg)
{
    pt_agg_call_t *c = g->c;
    pt_req_t *req = pt__agg_req(c);
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    if (pt_httprule_status_json(code, msg, NULL, &out) == 0) {
        char *copy = pt_arena_alloc(req->arena, out.len);
        if (copy != NULL) {
            memcpy(copy, out.data, out.len);
            c->error_body = (pt_str_t){copy, out.len};
        }
    }
    pt_xbuf_dispose(&out);
}

static void on_done(void *ud, const pt_grpc_status_t *st)
{
    grpc_call_t *g = ud;
    pt_agg_call_t *c = g->c;
    pt_req_t *req = pt__agg_req(c);
    const grpc_kconf_t *k = c->conf->kconf;
    if (pt_grpc_call_endpoint(g->call) != NULL)
        c->upstream = pt_grpc_call_endpoint(g->call);
    g->call = NULL; /* freed by the upstream layer */
    pt__agg_copy_headers(c, st->trailers, st->trailer_cnt);
    if (st->local != 0) {
        if (pt_status_http(st->local) >= 502)
            pt_observe_upstream_error(req->worker, k->cluster, st->local);
        c->status = pt_status_http(st->local);
        c->fail = st->local;
        c->message = pt_strerror(st->local); /* the reason is internal */
        if (req->fail_reason == NULL)
            req->fail_reason = st->reason;
        pt__agg_call_done(c, false);
        return;
    }
    if (st->code != PT_GRPC_OK) {
        pt_str_t pub;
        const uint8_t *bin;
        size_t bin_len;
        if (pt_grpc_status_public(st, &pub, &bin, &bin_len) && req->fail_reason == NULL)
            req->fail_reason = pt_arena_printf(req->arena, "upstream grpc-status %d: %.*s", st->code,
                                               (int)(st->details.len > 512 ? 512 : st->details.len),
                                               st->details.base != NULL ? st->details.base : "");
        char *msg = pt_arena_printf(req->arena, "%.*s", (int)(pub.len > 512 ? 512 : pub.len),
                                    pub.base != NULL ? pub.base : "");
        if (msg == NULL || msg[0] == '\0')
            msg = (char *)pt_grpc_code_name(st->code);
        c->status = pt_grpc_code_http(st->code);
        c->message = msg;
        set_status_body(g, st->code, msg);
        pt__agg_call_done(c, false);
        return;
    }
    if (g->bad || !g->got) {
        c->status = 502;
        c->fail = PT_ERR_UPSTREAM;
        c->message = g->bad ? "upstream sent an invalid response message"
                            : "upstream sent no response message";
        pt__agg_call_done(c, false);
        return;
    }
    bool ok = false;
    struct json_object *res =
        pt__agg_parse_json(c->run, (const char *)g->json.data, g->json.len, &ok);
    if (!ok || res == NULL) {
        c->status = 502;
        c->fail = PT_ERR_UPSTREAM;
        c->message = "upstream message too deep for a result";
        pt__agg_call_done(c, false);
        return;
    }
    c->status = 200;
    c->result = res;
    pt__agg_call_done(c, true);
}

static int grpc_start(pt_agg_call_t *c)
{
    const grpc_kconf_t *k = c->conf->kconf;
    pt_req_t *req = pt__agg_req(c);
    grpc_call_t *g = pt_arena_zalloc(req->arena, sizeof(*g));
    if (g == NULL || pt_arena_defer(req->arena, grpc_cleanup, g) != 0) {
        c->message = "request arena full";
        return PT_ERR_LIMIT;
    }
    g->c = c;
    c->kstate = g;
    pt_xbuf_init(&g->pb, NULL);
    pt_xbuf_init(&g->json, NULL);
    pt_header_t *md = pt_arena_alloc(req->arena, (k->md.cnt + 3) * sizeof(*md));
    if (md == NULL) {
        c->message = "request arena full";
        return PT_ERR_LIMIT;
    }
    size_t mdn = 0;
    for (size_t i = 0; i < k->md.cnt; i++) {
        const char *v = pt__agg_render(c, &k->md.values[i], PT_AGG_ENC_HEADER);
        if (v == NULL)
            return PT_ERR_INVALID;
        if (!pt_grpc_md_valid(pt_str_c(k->md.names[i]), pt_str_c(v))) {
            c->status = 400;
            c->message =
                pt_arena_printf(req->arena, "metadata '%s' is not valid ASCII", k->md.names[i]);
            return PT_ERR_INVALID;
        }
        md[mdn++] = (pt_header_t){pt_str_c(k->md.names[i]), pt_str_c(v)};
    }
    if (req->request_id.len != 0)
        md[mdn++] = (pt_header_t){PT_STR("x-request-id"), req->request_id};
    if (req->trace != NULL) { /* the call's own span (observe/trace.h) */
        pt_str_t tp = pt_trace_child(req->trace, req->arena);
        if (tp.base == NULL) {
            c->message = "request arena full";
            return PT_ERR_LIMIT;
        }
        md[mdn++] = (pt_header_t){PT_STR("traceparent"), tp};
        pt_str_t ts = pt_headers_get(&req->headers, PT_STR("tracestate"));
        if (ts.base != NULL && pt_grpc_md_valid(PT_STR("tracestate"), ts))
            md[mdn++] = (pt_header_t){PT_STR("tracestate"), ts};
    }
    int rc = 0;
    pt_xerr_t xe;
    if (!k->has_static && k->body != NULL) {
        struct json_object *b = pt__agg_render_json(c, k->body);
        if (b == NULL)
            return PT_ERR_INVALID;
        size_t n = 0;
        const char *s = json_object_to_json_string_length(
            b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        rc = pt_json_to_pb(k->pool, k->method->input, s, n, NULL, &g->pb, &xe);
        json_object_put(b);
    }
    if (rc != 0) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
        pt_xerr_format(&xe, msg, sizeof(msg));
        c->status = 400;
        c->message = pt_arena_printf(req->arena, "cannot build the request message: %s", msg);
        return PT_ERR_INVALID;
    }
    static const uint8_t empty[1];
    pt_grpc_call_req_t r = {
        .cluster = k->cluster,
        .arena = req->arena,
        .method = pt_str_c(k->path),
        .md = md,
        .md_cnt = mdn,
        .timeout_ms = pt__agg_call_timeout(c),
        .send_deadline = true, /* the aggregate's remaining time (docs/configuration.md) */
        .max_message = pt__agg_conf(c)->max_result,
        .msg = k->has_static ? (k->static_len ? k->static_pb : empty)
                             : (g->pb.len ? g->pb.data : empty),
        .msg_len = k->has_static ? k->static_len : g->pb.len,
        .close = true,
        .unary = true,
        .trace = req->trace,
    };
    static const pt_grpc_call_cbs_t cbs = {
        .on_headers = on_headers,
        .on_message = on_message,
        .on_done = on_done,
    };
    rc = pt_grpc_call_start(req->worker, &r, &cbs, g, &g->call);
    if (rc != 0) {
        g->call = NULL;
        return pt__agg_start_failed(c, k->cluster, rc);
    }
    c->upstream = pt_grpc_call_endpoint(g->call);
    return 0;
}

static void grpc_cancel(pt_agg_call_t *c)
{
    grpc_call_t *g = c->kstate;
    if (g != NULL && g->call != NULL) {
        pt_grpc_call_t *x = g->call;
        g->call = NULL;
        if (pt_grpc_call_endpoint(x) != NULL)
            c->upstream = pt_grpc_call_endpoint(x);
        pt_grpc_call_cancel(x);
    }
}

const pt_agg_kind_t pt_agg_kind_grpc = {
    .key = "grpc",
    .parse = grpc_parse,
    .check = grpc_check,
    .each_tmpl = grpc_each,
    .start = grpc_start,
    .cancel = grpc_cancel,
    .dispose = grpc_dispose,
};
