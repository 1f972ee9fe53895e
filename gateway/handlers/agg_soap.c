/*
 * agg_soap.c -- the `soap` call kind of the aggregate handler.
 *
 *   - name: customer
 *     soap: { route: crm, operation: GetCustomer, body: { id: "{profile.crm_id}" } }
 *
 * `route` names a `soap:` route of the same file (before or after the
 * aggregate: the soap handler loads its WSDL while routes are parsed); the
 * call reuses that route's WSDL port, cluster, upstream path, WS-Security and
 * max_response through handlers/soap.h. The body is a JSON template of the
 * operation's input (typed values, `{...}` references like grpc bodies); a
 * body without references is checked against the input at load, one with
 * references has its top-level keys checked there and the rest at request
 * time (400 naming each JSON path, like a grpc body that does not fit).
 *
 * Answers: the declared output becomes the call's JSON result; a SOAP fault
 * fails the call with the fault's status (400 Client/Sender, 500 otherwise)
 * and the fault's {"error":{...}} as its error body (a required call passes
 * it through, an optional one is listed under `errors`); anything else fails
 * it as pt_soapcall_res_t says (502 bad answer, 503 unreachable, 504 timeout)
 * with the call's client-fit detail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/handler.h"
#include "handlers/aggregate.h"
#include "handlers/soap.h"
#include "observe/observe.h"
#include "portico/status.h"

typedef struct soap_kconf {
    const char *route_name;
    const char *op_name;
    const pt_conf_node_t *body_node;
    pt_agg_jtmpl_t *body;
    const pt_soap_target_t *target;
    const pt_soap_op_t *op;
    const char *static_json; /* the body when it has no reference (snapshot memory) */
    size_t static_len;
} soap_kconf_t;

static const pt_conf_field_t soap_fields[] = {
    {"route", PT_CONF_T_STR, offsetof(soap_kconf_t, route_name), 0, 0, true, NULL},
    {"operation", PT_CONF_T_STR, offsetof(soap_kconf_t, op_name), 0, 0, true, NULL},
    {"body", PT_CONF_T_NODE, offsetof(soap_kconf_t, body_node), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void soap_dispose(void *v)
{
    soap_kconf_t *k = v;
    pt_agg_jtmpl_free(k->body);
    k->body = NULL;
}

static int soap_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_agg_call_conf_t *cc,
                      void **out)
{
    (void)cc;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "soap: expected a map { route, operation, body }");
    soap_kconf_t *k = pt_conf_alloc(cx, sizeof(*k));
    if (pt_conf_parse_fields(cx, node, soap_fields, k) != 0)
        return PT_ERR_INVALID;
    *out = k;
    pt_conf_on_release(cx, soap_dispose, k);
    if (k->body_node != NULL) {
        if (k->body_node->kind != PT_CONF_MAP)
            return pt_conf_error(cx, k->body_node,
                                 "soap: body: expected a map (the operation's input as JSON)");
        k->body = pt__agg_jtmpl_from_node(cx, k->body_node);
    }
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

static bool op_has_field(const pt_soap_op_t *op, const char *name)
{
    for (size_t i = 0; i < op->field_cnt; i++)
        if (strcmp(op->fields[i].name, name) == 0)
            return true;
    return false;
}

/*
 * A body without references is the same input for every request: built once
 * here into an envelope (every problem a config error at the body, with its
 * JSON path) and kept as JSON. A body with references has its top-level keys
 * checked against the input's fields; the values are checked per request.
 */
static int check_body(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, soap_kconf_t *k)
{
    if (k->body == NULL)
        return 0;
    size_t refs = 0;
    pt_agg_jtmpl_each(k->body, count_refs, &refs);
    if (refs != 0) {
        int rc = 0;
        for (size_t i = 0; i < k->body_node->cnt; i++) {
            const pt_conf_node_t *key = k->body_node->keys[i];
            if (!op_has_field(k->op, key->str))
                rc = pt_conf_error(cx, key,
                                   "aggregate: call '%s': '%s' is not a field of %s's input",
                                   cc->name, key->str, k->op->name);
        }
        return rc;
    }
    pt_agg_rerr_t e = {0};
    struct json_object *b = pt_agg_jtmpl_render(k->body, no_lookup, NULL, &e);
    size_t n = 2;
    const char *json =
        b != NULL ? json_object_to_json_string_length(
                        b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n)
                  : "{}";
    pt_xbuf_t env;
    pt_xbuf_init(&env, NULL);
    pt_xerrs_t *errs = calloc(1, sizeof(*errs));
    if (errs == NULL) {
        json_object_put(b);
        return pt_conf_error(cx, k->body_node, "aggregate: out of memory");
    }
    int rc = pt_soap_build_request(k->op, json, n, NULL, 0, NULL, &env, errs);
    pt_xbuf_dispose(&env);
    if (rc == 0) {
        k->static_json = pt_conf_strdup(cx, json, n);
        k->static_len = n;
    } else if (errs->cnt == 0) {
        pt_conf_error(cx, k->body_node, "aggregate: call '%s': body is not %s's input", cc->name,
                      k->op->name);
    }
    for (size_t i = 0; i < errs->cnt; i++) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
        pt_xerr_format(&errs->items[i], msg, sizeof(msg));
        pt_conf_error(cx, k->body_node, "aggregate: call '%s': body is not %s's input: %s",
                      cc->name, k->op->name, msg);
    }
    free(errs);
    json_object_put(b);
    return rc == 0 ? 0 : PT_ERR_INVALID;
}

static int soap_check(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, const pt_config_t *config)
{
    soap_kconf_t *k = cc->kconf;
    const pt_conf_node_t *rn = pt_conf_map_get(cc->kind_node, "route");
    k->target = pt_soap_target_of(config, k->route_name);
    if (k->target == NULL) {
        for (size_t i = 0; i < config->route_cnt; i++) {
            const pt_route_t *r = &config->routes[i];
            if (r->name != NULL && strcmp(r->name, k->route_name) == 0)
                return pt_conf_error(cx, rn,
                                     "aggregate: call '%s': route '%s' is not a soap route "
                                     "(its handler is %s)",
                                     cc->name, k->route_name,
                                     r->handler != NULL ? r->handler->name : "none");
        }
        return pt_conf_error(cx, rn,
                             "aggregate: call '%s': no soap route named '%s' (give the "
                             "soap route `name: %s`)",
                             cc->name, k->route_name, k->route_name);
    }
    if (pt_soap_target_port(k->target) == NULL) /* the soap route's WSDL did not load */
        return pt_conf_error(cx, rn, "aggregate: call '%s': soap route '%s' has no WSDL port",
                             cc->name, k->route_name);
    const pt_conf_node_t *on = pt_conf_map_get(cc->kind_node, "operation");
    k->op = pt_soap_target_op(k->target, k->op_name, strlen(k->op_name));
    if (k->op == NULL)
        return pt_conf_error(cx, on,
                             "aggregate: call '%s': soap route '%s' (port %s) has no "
                             "operation '%s'",
                             cc->name, k->route_name, pt_soap_target_port(k->target)->name,
                             k->op_name);
    return check_body(cx, cc, k);
}

static void soap_each(pt_agg_call_conf_t *cc,
                      void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node), void *ud)
{
    soap_kconf_t *k = cc->kconf;
    pt_agg_jtmpl_each(k->body, fn, ud);
}

/* ---- one call ------------------------------------------------------------------------ */

typedef struct soap_call {
    pt_agg_call_t *c;
    pt_soapcall_t *call;
} soap_call_t;

static void soap_cleanup(void *data)
{
    soap_call_t *s = data;
    pt_soapcall_stop(&s->call);
}

/* The fault's message (error.message), for the `errors` entry of an optional call. */
static const char *fault_text(pt_req_t *req, struct json_object *j, int status)
{
    struct json_object *e = NULL, *m = NULL;
    if (json_object_object_get_ex(j, "error", &e))
        json_object_object_get_ex(e, "message", &m);
    if (json_object_is_type(m, json_type_string))
        return pt_arena_printf(req->arena, "%.200s", json_object_get_string(m));
    return pt_arena_printf(req->arena, "SOAP fault (%d)", status);
}

static void on_result(void *ud, const pt_soapcall_res_t *res)
{
    soap_call_t *s = ud;
    pt_agg_call_t *c = s->c;
    pt_req_t *req = pt__agg_req(c);
    const soap_kconf_t *k = c->conf->kconf;
    s->call = NULL; /* frees itself after this callback */
    if (res->endpoint != NULL)
        c->upstream = res->endpoint;
    if (res->st != 0) {
        if (pt_status_http(res->st) >= 502)
            pt_observe_upstream_error(req->worker, pt_soap_target_cluster(k->target), res->st);
        c->status = pt_status_http(res->st);
        c->fail = res->st;
        c->message = pt_arena_printf(req->arena, "%.300s",
                                     res->detail != NULL ? res->detail : pt_strerror(res->st));
        pt__agg_call_done(c, false);
        return;
    }
    bool ok = false;
    struct json_object *j =
        pt__agg_parse_json(c->run, (const char *)res->json, res->json_len, &ok);
    if (!ok || j == NULL) {
        json_object_put(j);
        c->status = 502;
        c->fail = PT_ERR_UPSTREAM;
        c->message = "upstream answer too deep for a result";
        pt__agg_call_done(c, false);
        return;
    }
    if (res->outcome == PT_SOAP_OUTPUT) {
        c->status = 200;
        c->result = j;
        pt__agg_call_done(c, true);
        return;
    }
    /* a fault: its status and {"error":{...}}, passed through when the call is required */
    c->status = res->http_status >= 400 ? res->http_status : 500;
    c->fail = 0;
    c->message = fault_text(req, j, c->status);
    json_object_put(j);
    char *copy = pt_arena_alloc(req->arena, res->json_len);
    if (copy != NULL) {
        memcpy(copy, res->json, res->json_len);
        c->error_body = (pt_str_t){copy, res->json_len};
    }
    pt__agg_call_done(c, false);
}

static int soap_start(pt_agg_call_t *c)
{
    const soap_kconf_t *k = c->conf->kconf;
    pt_req_t *req = pt__agg_req(c);
    soap_call_t *s = pt_arena_zalloc(req->arena, sizeof(*s));
    if (s == NULL || pt_arena_defer(req->arena, soap_cleanup, s) != 0) {
        c->message = "request arena full";
        return PT_ERR_LIMIT;
    }
    s->c = c;
    c->kstate = s;
    const char *json = k->static_json;
    size_t len = k->static_len;
    struct json_object *b = NULL;
    if (json == NULL && k->body != NULL) {
        b = pt__agg_render_json(c, k->body);
        if (b == NULL)
            return PT_ERR_INVALID;
        json = json_object_to_json_string_length(
            b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    }
    pt_soapcall_opts_t opts = {.timeout_ms = pt__agg_call_timeout(c),
                               .request_id = req->request_id, .trace = req->trace,
                               .tracestate = pt_headers_get(&req->headers, PT_STR("tracestate"))};
    pt_xerrs_t *errs = pt_arena_zalloc(req->arena, sizeof(*errs));
    int rc = pt_soapcall_start(req->worker, k->target, k->op, json, len, NULL, 0, &opts,
                               on_result, s, &s->call, errs);
    json_object_put(b);
    if (rc == 0)
        return 0;
    s->call = NULL;
    if (rc == PT_ERR_INVALID) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4] = "";
        if (errs != NULL && errs->cnt != 0)
            pt_xerr_format(&errs->items[0], msg, sizeof(msg));
        c->status = 400;
        c->message = pt_arena_printf(req->arena, "cannot build the %s request: %s%s", k->op->name,
                                     msg[0] != '\0' ? msg : "the body does not fit its input",
                                     errs != NULL && errs->cnt > 1 ? " (and more)" : "");
        return rc;
    }
    if (rc == PT_ERR_LIMIT || rc == PT_ERR_NOMEM) {
        c->message = rc == PT_ERR_LIMIT ? "the SOAP request would be too large"
                                        : "out of memory";
        return rc;
    }
    return pt__agg_start_failed(c, pt_soap_target_cluster(k->target), rc);
}

static void soap_cancel(pt_agg_call_t *c)
{
    soap_call_t *s = c->kstate;
    if (s != NULL)
        pt_soapcall_stop(&s->call);
}

const pt_agg_kind_t pt_agg_kind_soap = {
    .key = "soap",
    .parse = soap_parse,
    .check = soap_check,
    .each_tmpl = soap_each,
    .start = soap_start,
    .cancel = soap_cancel,
    .dispose = soap_dispose,
};
