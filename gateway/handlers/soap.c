/*
 * soap.c -- the `soap` route handler: a JSON API in front of a SOAP service,
 * driven by its WSDL.
 *
 *   routes:
 *     - match: { prefix: /crm/ }
 *       soap:
 *         cluster: crm                  # an http cluster: the SOAP endpoint(s)
 *         wsdl: crm.wsdl                # WSDL 1.1, XSDs embedded or imported (local files)
 *         operations:                   # optional REST mappings, google.api.http style
 *           GetCustomer: { get: "/crm/customers/{id}" }
 *         service: CustomerService      # optional: pick a port when the WSDL has several
 *         port: CustomerSoap
 *         path: /services/crm           # optional: the endpoint path (else soap:address's)
 *         ws_security: { username: portico, password_file: crm.password }
 *         timeout: 10s                  # optional (else the route's, else the cluster's)
 *         max_response: 8MiB            # answers above this are refused (502), never buffered
 *
 * Each operation of the port is served at POST <match.prefix><OperationName>
 * with the input element's children as a JSON object. A REST mapping binds
 * path variables (and query parameters, on every request) to simple-typed
 * fields of the input; the JSON body, if any, gives the rest.
 *
 * The WSDL is loaded at config load (and on every reload) by the transcoder
 * (transcoder/include/portico/transcoder/soap.h, which owns the XML and the
 * JSON mapping); its errors are `FILE:LINE:COL: message` of the WSDL or XSD
 * and refuse the whole config.
 *
 * A call (pt_soapcall_*, soap.h, also used outside client requests) is one
 * pt_upcall_start() on the cluster: POST of the envelope with SOAPAction
 * (1.1) or the Content-Type action parameter (1.2); the answer is fed to the
 * streaming envelope parser as it arrives and the call is stopped the moment
 * the parser says the answer is bad or over max_response, so a 1 GB answer
 * costs max_response bytes at most. Answers: the output as JSON (200), a
 * fault as {"error":{...}} (4xx Client/Sender, 5xx otherwise), anything
 * else 502 naming what was wrong; timeouts 504, unreachable 502/503 as on
 * proxy routes; client mistakes 400 with the JSON path of each.
 */
#include "handlers/soap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "core/request.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "portico/transcoder/pathtmpl.h"
#include "upstream/call.h"
#include "observe/trace.h"

/* Bytes read from the request body queue per pt__req_body_read() call. */
#define BODY_CHUNK 16384
/* Default cap of an upstream answer (transcoder's default too). */
#define SOAP_MAX_RESPONSE_DEFAULT (8u * 1024u * 1024u)
/* WS-Security passwords: a line of a file, within reason. */
#define WSSE_PASSWORD_MAX 1024

/* ---- config ------------------------------------------------------------------ */

/* One REST mapping: `method template` -> operation. */
typedef struct soap_rest {
    const pt_soap_op_t *op;
    pt_pathtmpl_t *tmpl;
} soap_rest_t;

struct pt_soap_target {
    const pt_cluster_t *cluster;
    pt_wsdl_t *wsdl;
    const pt_soap_port_t *port;
    pt_str_t path;             /* upstream request path (and query) */
    const char *wsse_user;     /* NULL: no Security header */
    const char *wsse_password;
    uint64_t timeout_ms;       /* 0: the caller's or the cluster's */
    uint64_t max_response;
};

typedef struct soap_conf {
    /* as written */
    const char *cluster_name;
    const char *wsdl_path;
    const pt_conf_node_t *operations;
    const char *path;
    const char *service;
    const char *port;
    const pt_conf_node_t *ws_security;
    uint64_t timeout_ms;
    uint64_t max_response;
    /* target: loaded by parse_conf (WSDL, port, path), cluster by check_conf */
    pt_soap_target_t target;
    const pt_route_t *route;
    pt_str_t prefix;           /* POST <prefix><Operation> */
    soap_rest_t *rest;
    size_t rest_cnt;
    pt_pathmatcher_t *matcher; /* NULL without REST mappings */
} soap_conf_t;

static const pt_conf_field_t soap_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(soap_conf_t, cluster_name), 0, 0, true, NULL},
    {"wsdl", PT_CONF_T_PATH, offsetof(soap_conf_t, wsdl_path), 0, 0, true, NULL},
    {"operations", PT_CONF_T_NODE, offsetof(soap_conf_t, operations), 0, 0, false, NULL},
    {"path", PT_CONF_T_STR, offsetof(soap_conf_t, path), 0, 0, false, NULL},
    {"service", PT_CONF_T_STR, offsetof(soap_conf_t, service), 0, 0, false, NULL},
    {"port", PT_CONF_T_STR, offsetof(soap_conf_t, port), 0, 0, false, NULL},
    {"ws_security", PT_CONF_T_NODE, offsetof(soap_conf_t, ws_security), 0, 0, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(soap_conf_t, timeout_ms), 1, 0, false, NULL},
    {"max_response", PT_CONF_T_SIZE, offsetof(soap_conf_t, max_response), 1024, 1ull << 31, false,
     NULL},
    PT_CONF_FIELDS_END,
};

typedef struct wsse_raw {
    const char *username;
    const char *password_file;
} wsse_raw_t;

static const pt_conf_field_t wsse_fields[] = {
    {"username", PT_CONF_T_STR, offsetof(wsse_raw_t, username), 0, 0, true, NULL},
    {"password_file", PT_CONF_T_PATH, offsetof(wsse_raw_t, password_file), 0, 0, true, NULL},
    PT_CONF_FIELDS_END,
};

static const struct {
    const char *key;
    const char *method;
} rest_methods[] = {
    {"get", "GET"}, {"post", "POST"}, {"put", "PUT"}, {"delete", "DELETE"}, {"patch", "PATCH"},
};

static void soap_conf_dispose(void *vconf)
{
    soap_conf_t *conf = vconf;
    pt_pathmatcher_free(conf->matcher);
    conf->matcher = NULL;
    for (size_t i = 0; i < conf->rest_cnt; i++)
        pt_pathtmpl_free(conf->rest[i].tmpl);
    conf->rest_cnt = 0;
    pt_wsdl_free(conf->target.wsdl);
    conf->target.wsdl = NULL;
}

/*
 * Reports a WSDL/XSD load error at its own FILE:LINE:COL (the place to fix),
 * naming the config line that asked for the file.
 */
static void wsdl_error(pt_conf_cx_t *cx, const pt_conf_node_t *at, const pt_wsdl_err_t *e, int rc)
{
    pt_conf_node_t where = {.kind = PT_CONF_SCALAR,
                            .file = e->file[0] != '\0' ? e->file : at->file,
                            .line = e->file[0] != '\0' ? (unsigned)(e->line > 0 ? e->line : 1) : at->line,
                            .col = e->file[0] != '\0' ? (unsigned)(e->col > 0 ? e->col : 1) : at->col};
    pt_conf_error(cx, &where, "%s (the wsdl of the soap route at %s:%u:%u)",
                  e->msg[0] != '\0' ? e->msg : pt_xerr_name(rc), at->file, at->line, at->col);
}

/* The path part of a soap:address URL ("http://h:1/a/b?x" -> "/a/b?x"), or "/" */
static pt_str_t address_path(pt_conf_cx_t *cx, const char *url)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? strchr(p + 3, '/') : NULL;
    if (p == NULL || *p == '\0')
        return PT_STR("/");
    const char *end = strchr(p, '#');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    return (pt_str_t){pt_conf_strdup(cx, p, len), len};
}

static int load_wsse(pt_conf_cx_t *cx, soap_conf_t *conf)
{
    const pt_conf_node_t *n = conf->ws_security;
    if (n->kind != PT_CONF_MAP)
        return pt_conf_error(cx, n, "soap: ws_security: expected { username: U, password_file: F }");
    wsse_raw_t raw = {0};
    if (pt_conf_parse_fields(cx, n, wsse_fields, &raw) != 0)
        return PT_ERR_INVALID;
    const pt_conf_node_t *fn = pt_conf_map_get(n, "password_file");
    FILE *f = fopen(raw.password_file, "rb");
    if (f == NULL)
        return pt_conf_error(cx, fn, "soap: ws_security: cannot read password file '%s': %s",
                             raw.password_file, strerror(errno));
    char buf[WSSE_PASSWORD_MAX + 2];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    int rc = 0;
    if (len == 0 || len > WSSE_PASSWORD_MAX || memchr(buf, '\0', len) != NULL ||
        memchr(buf, '\n', len) != NULL)
        rc = pt_conf_error(cx, fn,
                           "soap: ws_security: the password file '%s' must hold one line of 1 to "
                           "%u bytes",
                           raw.password_file, WSSE_PASSWORD_MAX);
    else {
        conf->target.wsse_user = raw.username;
        conf->target.wsse_password = pt_conf_strdup(cx, buf, len);
    }
    memset(buf, 0, sizeof(buf));
    return rc;
}

/* operations: { Op: { get: "/t/{x}", ... }, ... } -> REST mappings and the matcher. */
static int load_operations(pt_conf_cx_t *cx, soap_conf_t *conf)
{
    const pt_conf_node_t *ops = conf->operations;
    if (ops->kind == PT_CONF_NULL)
        return 0;
    if (ops->kind != PT_CONF_MAP)
        return pt_conf_error(cx, ops, "soap: operations: expected a map like "
                                      "{ GetCustomer: { get: \"/crm/customers/{id}\" } }");
    size_t total = 0;
    for (size_t i = 0; i < ops->cnt; i++)
        total += ops->items[i]->kind == PT_CONF_MAP ? ops->items[i]->cnt : 0;
    conf->rest = pt_conf_alloc(cx, (total != 0 ? total : 1) * sizeof(*conf->rest));
    if (pt_pathmatcher_new(NULL, &conf->matcher) != 0)
        return pt_conf_error(cx, ops, "soap: out of memory");
    const pt_soap_port_t *port = conf->target.port;
    for (size_t i = 0; i < ops->cnt; i++) {
        const pt_conf_node_t *key = ops->keys[i], *val = ops->items[i];
        const pt_soap_op_t *op = pt_soap_port_op(port, key->str, key->len);
        if (op == NULL) {
            pt_conf_error(cx, key, "soap: operations: port '%s' has no operation '%s'", port->name,
                          key->str);
            continue;
        }
        if (val->kind != PT_CONF_MAP || val->cnt == 0) {
            pt_conf_error(cx, val, "soap: operations.%s: expected a map of get|post|put|delete|patch "
                                   "to a path template", key->str);
            continue;
        }
        for (size_t j = 0; j < val->cnt; j++) {
            const pt_conf_node_t *mk = val->keys[j], *mv = val->items[j];
            const char *method = NULL;
            for (size_t m = 0; m < sizeof(rest_methods) / sizeof(rest_methods[0]); m++)
                if (strcmp(mk->str, rest_methods[m].key) == 0)
                    method = rest_methods[m].method;
            if (method == NULL) {
                pt_conf_error(cx, mk, "soap: operations.%s: unknown key '%s' (expected get, post, "
                                      "put, delete or patch)", key->str, mk->str);
                continue;
            }
            if (mv->kind != PT_CONF_SCALAR || mv->len == 0 || mv->str[0] != '/') {
                pt_conf_error(cx, mv, "soap: operations.%s.%s: expected a path template like "
                                      "\"/crm/customers/{id}\"", key->str, mk->str);
                continue;
            }
            if (conf->prefix.len > 1 && !pt_str_has_prefix((pt_str_t){mv->str, mv->len}, conf->prefix)) {
                pt_conf_error(cx, mv, "soap: operations.%s.%s: '%s' is outside the route's prefix '%.*s' "
                                      "(such requests never reach this route)",
                              key->str, mk->str, mv->str, (int)conf->prefix.len, conf->prefix.base);
                continue;
            }
            pt_xerr_t xe;
            pt_xerr_clear(&xe);
            pt_pathtmpl_t *t = NULL;
            if (pt_pathtmpl_parse(NULL, mv->str, mv->len, &t, &xe) != 0) {
                pt_conf_error(cx, mv, "soap: operations.%s.%s: bad path template: %s", key->str,
                              mk->str, xe.msg);
                continue;
            }
            soap_rest_t *r = &conf->rest[conf->rest_cnt++];
            r->op = op;
            r->tmpl = t;
            bool ok = true;
            for (size_t v = 0; v < pt_pathtmpl_var_cnt(t); v++) {
                const pt_pathtmpl_var_t *var = pt_pathtmpl_var(t, v);
                if (pt_soap_op_field_bindable(op, var->field_path, var->field_path_len) != 1) {
                    pt_conf_error(cx, mv, "soap: operations.%s.%s: {%s} is not a simple-typed field "
                                          "of %s's input",
                                  key->str, mk->str, var->field_path, op->name);
                    ok = false;
                }
            }
            if (ok && pt_pathmatcher_add(conf->matcher, method, t, r, &xe) != 0)
                pt_conf_error(cx, mv, "soap: operations.%s.%s: %s", key->str, mk->str,
                              xe.msg[0] != '\0' ? xe.msg : "cannot add the mapping");
        }
    }
    return pt_conf_error_count(cx) == 0 ? 0 : PT_ERR_INVALID;
}

/*
 * The route's own map: the WSDL model, the port and the upstream path depend
 * on nothing else in the file, so they are loaded here, while the routes are
 * parsed. Every check_conf (run in route order, after all routes are parsed)
 * then finds any soap route's port and operations ready -- an aggregate's
 * `soap:` call checks its operation whether its route comes before or after
 * the soap route. Cross-references (cluster, the route's match) stay in
 * check_conf.
 */
static int soap_parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    soap_conf_t *conf = vconf;
    pt_soap_target_t *t = &conf->target;
    if (conf->path != NULL && conf->path[0] != '/')
        return pt_conf_error(cx, pt_conf_map_get(node, "path"), "soap: path must start with '/'");
    const pt_conf_node_t *wn = pt_conf_map_get(node, "wsdl");
    pt_wsdl_err_t *we = calloc(1, sizeof(*we));
    if (we == NULL)
        return pt_conf_error(cx, wn, "soap: out of memory");
    int rc = pt_wsdl_load(conf->wsdl_path, NULL, NULL, &t->wsdl, we);
    if (rc != 0) {
        t->wsdl = NULL;
        wsdl_error(cx, wn, we, rc);
        free(we);
        return PT_ERR_INVALID;
    }
    free(we);
    char msg[512];
    t->port = pt_wsdl_find_port(t->wsdl, conf->service, conf->port, msg, sizeof(msg));
    if (t->port == NULL) {
        const pt_conf_node_t *pn = pt_conf_map_get(node, conf->port != NULL ? "port" : "service");
        return pt_conf_error(cx, pn != NULL ? pn : wn, "soap: %s", msg);
    }
    t->path = conf->path != NULL ? pt_str_c(conf->path) : address_path(cx, t->port->address);
    t->timeout_ms = conf->timeout_ms;
    t->max_response = conf->max_response != 0 ? conf->max_response : SOAP_MAX_RESPONSE_DEFAULT;
    return 0;
}

static int soap_check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf,
                           const pt_config_t *config)
{
    soap_conf_t *conf = vconf;
    pt_soap_target_t *t = &conf->target;
    const pt_conf_node_t *at = pt_conf_map_get(node, "cluster");
    t->cluster = pt_config_cluster(config, conf->cluster_name);
    if (t->cluster == NULL)
        return pt_conf_error(cx, at, "soap: unknown cluster '%s'", conf->cluster_name);
    if (t->cluster->protocol != PT_PROTO_HTTP)
        return pt_conf_error(cx, at, "soap: cluster '%s' is not an http cluster", conf->cluster_name);
    if (t->cluster->endpoint_cnt == 0)
        return pt_conf_error(cx, at, "soap: cluster '%s' has no endpoints", conf->cluster_name);
    for (size_t i = 0; i < config->route_cnt; i++)
        if (config->routes[i].handler_conf == conf)
            conf->route = &config->routes[i];
    if (conf->route == NULL)
        return pt_conf_error(cx, node, "soap: route not found (internal)");
    const pt_route_match_t *m = &conf->route->match;
    if (m->path_kind == PT_PATH_PREFIX)
        conf->prefix = pt_str_c(m->path);
    else if (m->path_kind == PT_PATH_ANY)
        conf->prefix = PT_STR("/");
    else
        return pt_conf_error(cx, node, "soap: the route needs `match: { prefix: ... }` (operations "
                                       "are served at POST <prefix><OperationName>)");
    if (conf->prefix.len == 0 || conf->prefix.base[conf->prefix.len - 1] != '/')
        return pt_conf_error(cx, node, "soap: the route's prefix must end with '/' (operations are "
                                       "served at POST <prefix><OperationName>), got '%s'",
                             m->path);
    if (conf->ws_security != NULL && load_wsse(cx, conf) != 0)
        return PT_ERR_INVALID;
    if (conf->operations != NULL && load_operations(cx, conf) != 0)
        return PT_ERR_INVALID;
    return 0;
}

/* ---- the call: JSON -> envelope -> upstream -> JSON ---------------------------------- */

struct pt_soapcall {
    pt_arena_t *arena;             /* headers and small strings of this call */
    const pt_soap_target_t *t;
    const pt_soap_op_t *op;
    pt_upcall_t *up;
    pt_upcall_req_t ureq;
    pt_headers_t headers;
    pt_xbuf_t env;                 /* the request envelope */
    size_t env_off;                /* bytes of it the upstream took */
    pt_soap_resp_t *parser;
    pt_xbuf_t out;                 /* JSON of the answer */
    int up_status;                 /* HTTP status of the answer (0 before the head) */
    const char *endpoint;
    pt_soapcall_cb cb;
    void *ud;
};

static void soapcall_free(pt_soapcall_t *c)
{
    pt_soap_resp_free(c->parser);
    pt_xbuf_dispose(&c->env);
    pt_xbuf_dispose(&c->out);
    pt_arena_destroy(c->arena);
    free(c);
}

/* Hands the outcome to the caller, then frees the call (from an upstream callback). */
static void deliver(pt_soapcall_t *c, pt_soapcall_res_t *res)
{
    res->endpoint = c->endpoint;
    c->cb(c->ud, res);
    soapcall_free(c);
}

static void deliver_error(pt_soapcall_t *c, int st, const char *detail, const char *reason)
{
    pt_soapcall_res_t res = {.st = st, .http_status = pt_status_http(st), .outcome = PT_SOAP_BAD,
                             .detail = detail, .reason = reason != NULL ? reason : detail};
    deliver(c, &res);
}

/* The parser's verdict (input ended or refused), as the caller's result. */
static void deliver_parsed(pt_soapcall_t *c)
{
    pt_soap_result_t r;
    memset(&r, 0, sizeof(r));
    int rc = pt_soap_resp_finish(c->parser, &r, &c->out);
    if (rc != 0) {
        deliver_error(c, rc == PT_XERR_NOMEM ? PT_ERR_NOMEM : PT_ERR_UPSTREAM,
                      rc == PT_XERR_NOMEM ? "out of memory converting the answer"
                                          : "the upstream answer converts to too much JSON",
                      NULL);
        return;
    }
    if (r.outcome == PT_SOAP_OUTPUT && (c->up_status < 200 || c->up_status > 299)) {
        r.outcome = PT_SOAP_BAD;
        snprintf(r.msg, sizeof(r.msg), "upstream answered HTTP %d with an output, not a fault",
                 c->up_status);
    }
    if (r.outcome == PT_SOAP_BAD) {
        char *d = r.msg[0] != '\0' ? r.msg : "the upstream answer is not the declared output";
        if (c->up_status != 200 && r.msg[0] != '\0' && strstr(r.msg, "HTTP ") == NULL)
            d = pt_arena_printf(c->arena, "%s (HTTP %d)", r.msg, c->up_status);
        deliver_error(c, PT_ERR_UPSTREAM, d != NULL ? d : r.msg, "bad SOAP answer");
        return;
    }
    pt_soapcall_res_t res = {.st = 0,
                             .http_status = r.http_status,
                             .outcome = r.outcome,
                             .json = c->out.data,
                             .json_len = c->out.len,
                             ._buf = &c->out};
    deliver(c, &res);
}

uint8_t *pt_soapcall_take_json(const pt_soapcall_res_t *res)
{
    pt_xbuf_t *b = res->_buf;
    if (b == NULL || b->data == NULL || b->data != res->json || b->a != pt_allocator_default())
        return NULL;
    uint8_t *d = b->data;
    b->data = NULL, b->len = b->cap = 0;
    return d;
}

void pt_soapcall_json_release(const void *data, size_t len, void *arg)
{
    (void)len, (void)arg;
    pt_xfree(pt_allocator_default(), (void *)(uintptr_t)data);
}

static size_t up_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    pt_soapcall_t *c = ud;
    size_t n = c->env.len - c->env_off;
    if (n > max)
        n = max;
    memcpy(buf, c->env.data + c->env_off, n);
    c->env_off += n;
    *eof = c->env_off == c->env.len;
    return n;
}

static void up_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    pt_soapcall_t *c = ud;
    c->up_status = status;
    c->endpoint = pt_upcall_endpoint(c->up);
    /* the answer's size, when told: the parser makes room once */
    for (size_t i = 0; i < cnt; i++) {
        unsigned long long n;
        if (pt_str_ieq(h[i].name, PT_STR("content-length")) &&
            pt_str_to_u64(h[i].value, SIZE_MAX, &n) == 0) {
            pt_soap_resp_expect(c->parser, (size_t)n);
            break;
        }
    }
}

static bool up_on_data(void *ud, const char *data, size_t len)
{
    pt_soapcall_t *c = ud;
    if (pt_soap_resp_feed(c->parser, data, len) == 0)
        return true;
    /* Known bad (not XML, a DOCTYPE, over max_response, ...): stop reading now;
     * the rest of the answer is never fetched, let alone kept. */
    pt_upcall_stop(&c->up);
    deliver_parsed(c);
    return false;
}

static void up_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    (void)t;
    (void)tcnt;
    pt_soapcall_t *c = ud;
    const char *ep = pt_upcall_endpoint(c->up);
    if (ep != NULL)
        c->endpoint = ep;
    c->up = NULL; /* freed by the call machinery after we return */
    if (st != 0) {
        /* the transport's reason is internal (logs); the client gets our words */
        deliver_error(c, st,
                      st == PT_ERR_TIMEOUT       ? "the SOAP service did not answer in time"
                      : st == PT_ERR_UNAVAILABLE ? "no endpoint of the SOAP service could be reached"
                      : st == PT_ERR_OVERLOADED  ? NULL
                                                 : "the connection to the SOAP service failed",
                      reason);
        return;
    }
    deliver_parsed(c);
}

static const pt_upcall_cbs_t soapcall_cbs = {
    .read_body = up_read_body,
    .on_head = up_on_head,
    .on_data = up_on_data,
    .on_done = up_on_done,
};

int pt_soapcall_start(pt_worker_t *w, const pt_soap_target_t *t, const pt_soap_op_t *op,
                      const char *json, size_t len, const pt_soap_binding_t *b, size_t n,
                      const pt_soapcall_opts_t *opts, pt_soapcall_cb cb, void *ud,
                      pt_soapcall_t **out, pt_xerrs_t *errs)
{
    pt_soapcall_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PT_ERR_NOMEM;
    c->arena = pt_arena_new(2048, 0);
    c->t = t;
    c->op = op;
    c->cb = cb;
    c->ud = ud;
    pt_xbuf_init(&c->env, NULL);
    pt_xbuf_init(&c->out, NULL);
    /* JSON from XML is rarely larger than the XML; the cap keeps a hostile
     * answer from growing past a known bound either way. */
    c->out.limit = 2 * t->max_response + 65536;

    pt_soap_req_opts_t ro = {.wsse_user = t->wsse_user, .wsse_password = t->wsse_password};
    int rc = pt_soap_build_request(op, json, len, b, n, &ro, &c->env, errs);
    if (rc != 0) {
        soapcall_free(c);
        return rc == PT_XERR_NOMEM ? PT_ERR_NOMEM : rc == PT_XERR_LIMIT ? PT_ERR_LIMIT : PT_ERR_INVALID;
    }
    pt_soap_resp_opts_t po = {.max_size = t->max_response};
    c->parser = pt_soap_resp_new(op, NULL, &po);
    if (c->parser == NULL) {
        soapcall_free(c);
        return PT_ERR_NOMEM;
    }

    char ct[1024], action[1024];
    size_t ctl = pt_soap_content_type(op, ct, sizeof(ct));
    size_t al = pt_soap_action_header(op, action, sizeof(action));
    pt_headers_init(&c->headers, c->arena);
    rc = ctl < sizeof(ct) && al < sizeof(action) ? 0 : PT_ERR_LIMIT;
    if (rc == 0)
        rc = pt_headers_add(&c->headers, PT_STR("content-type"), (pt_str_t){ct, ctl});
    if (rc == 0 && op->soap_version == PT_SOAP_11)
        rc = pt_headers_add(&c->headers, PT_STR("soapaction"), (pt_str_t){action, al});
    if (rc == 0)
        rc = pt_headers_add_nocopy(&c->headers, PT_STR("accept"),
                                   op->soap_version == PT_SOAP_11 ? PT_STR("text/xml")
                                                                  : PT_STR("application/soap+xml"));
    if (rc == 0 && opts != NULL && opts->request_id.len != 0)
        rc = pt_headers_add(&c->headers, PT_STR("x-request-id"), opts->request_id);
    if (rc == 0 && opts != NULL && opts->trace != NULL) { /* the call's own span (observe/trace.h) */
        pt_str_t tp = pt_trace_child(opts->trace, c->arena);
        rc = tp.base != NULL ? pt_headers_add_nocopy(&c->headers, PT_STR("traceparent"), tp) : PT_ERR_LIMIT;
        if (rc == 0 && opts->tracestate.len != 0)
            rc = pt_headers_add(&c->headers, PT_STR("tracestate"), opts->tracestate);
    }
    if (rc != 0) {
        soapcall_free(c);
        return rc < 0 ? rc : PT_ERR_NOMEM;
    }

    pt_upcall_req_t *u = &c->ureq;
    u->cluster = t->cluster;
    u->method = PT_STR("POST");
    u->path = t->path;
    u->authority = PT_STR_NULL; /* the endpoint's own host:port (or the cluster's authority) */
    u->headers = &c->headers;
    u->content_length = (int64_t)c->env.len;
    u->has_body = true;
    u->timeout_ms = opts != NULL && opts->timeout_ms != 0 ? opts->timeout_ms : t->timeout_ms;
    u->idempotent = false; /* a SOAP call may change things: retried only before it was sent */
    u->trace = opts != NULL ? opts->trace : NULL;
    rc = pt_upcall_start(w, u, &soapcall_cbs, c, &c->up);
    if (rc != 0) {
        soapcall_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void pt_soapcall_cancel(pt_soapcall_t *c)
{
    if (c == NULL)
        return;
    if (c->up != NULL)
        pt_upcall_cancel(c->up);
    soapcall_free(c);
}

extern const pt_handler_def_t pt_handler_soap;

const pt_soap_target_t *pt_soap_target_of(const pt_config_t *config, const char *route_name)
{
    for (size_t i = 0; i < config->route_cnt; i++) {
        const pt_route_t *r = &config->routes[i];
        if (r->handler == &pt_handler_soap && r->name != NULL && strcmp(r->name, route_name) == 0)
            return &((const soap_conf_t *)r->handler_conf)->target;
    }
    return NULL;
}

const pt_soap_op_t *pt_soap_target_op(const pt_soap_target_t *t, const char *name, size_t len)
{
    return pt_soap_port_op(t->port, name, len);
}

const pt_soap_port_t *pt_soap_target_port(const pt_soap_target_t *t)
{
    return t->port;
}

const pt_cluster_t *pt_soap_target_cluster(const pt_soap_target_t *t)
{
    return t->cluster;
}

/* ---- the handler ------------------------------------------------------------------------- */

typedef struct soap_ctx {
    pt_req_t *req;
    const soap_conf_t *conf;
    const pt_soap_op_t *op;
    pt_soap_binding_t *bind;
    size_t bind_cnt;
    pt_xbuf_t in;                  /* the JSON body */
    pt_soapcall_t *call;
    uint64_t t0_ns;
    bool body_eof;
} soap_ctx_t;

static void stop_call(soap_ctx_t *ctx)
{
    pt_soapcall_stop(&ctx->call);
}

static void ctx_cleanup(void *data)
{
    soap_ctx_t *ctx = data;
    stop_call(ctx);
    pt_xbuf_dispose(&ctx->in);
}

static void on_client_abort(void *data)
{
    soap_ctx_t *ctx = data;
    stop_call(ctx);
    pt_handler_finish(ctx->req);
}

/* Appends `s[0..n)` as the inside of a JSON string. */
static int json_str(pt_xbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            rc = pt_xbuf_putc(b, '\\');
            if (rc == 0)
                rc = pt_xbuf_putc(b, ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            rc = pt_xbuf_append(b, e, sizeof(e));
        } else {
            rc = pt_xbuf_putc(b, ch);
        }
    }
    return rc;
}

/* owned: body came from pt_soapcall_take_json and is handed over (no copy). */
static void reply(soap_ctx_t *ctx, int http, const void *body, size_t len, bool owned)
{
    pt_req_t *req = ctx->req;
    req->resp_status = http;
    req->resp_content_length = (int64_t)len;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    pt__resp_head(req);
    if (owned)
        pt__resp_body_owned(req, body, len, pt_soapcall_json_release, NULL);
    else
        pt__resp_body(req, body, len, true);
}

/*
 * A Portico error as JSON: {"error":{"code","message","detail","fields":[...],
 * "request_id"}}. `detail` says what was wrong in our own words (for 4xx the
 * client's mistake; for a 502 what the upstream answer was -- never a
 * parser's internal text); `errs` adds one {"field","description"} per
 * mapping problem.
 */
static void reply_error(soap_ctx_t *ctx, int st, const char *detail, const pt_xerrs_t *errs)
{
    pt_req_t *req = ctx->req;
    int http = pt_status_http(st);
    if (req->fail_status == 0) {
        req->fail_status = st;
        req->fail_reason = detail; /* static or arena text: lives as long as req */
    }
    pt_xbuf_t b;
    pt_xbuf_init(&b, NULL);
    int rc = pt_xbuf_puts(&b, "{\"error\":{\"code\":\"");
    rc = rc ? rc : pt_xbuf_puts(&b, pt_status_name(st));
    rc = rc ? rc : pt_xbuf_puts(&b, "\",\"message\":\"");
    rc = rc ? rc : pt_xbuf_puts(&b, pt_strerror(st));
    rc = rc ? rc : pt_xbuf_putc(&b, '"');
    if (detail != NULL) {
        rc = rc ? rc : pt_xbuf_puts(&b, ",\"detail\":\"");
        rc = rc ? rc : json_str(&b, detail, strlen(detail));
        rc = rc ? rc : pt_xbuf_putc(&b, '"');
    }
    if (errs != NULL && errs->cnt != 0) {
        rc = rc ? rc : pt_xbuf_puts(&b, ",\"fields\":[");
        for (size_t i = 0; i < errs->cnt && rc == 0; i++) {
            const pt_xerr_t *e = &errs->items[i];
            rc = pt_xbuf_puts(&b, i != 0 ? ",{\"field\":\"" : "{\"field\":\"");
            rc = rc ? rc : json_str(&b, e->path, strlen(e->path));
            rc = rc ? rc : pt_xbuf_puts(&b, "\",\"description\":\"");
            rc = rc ? rc : json_str(&b, e->msg, strlen(e->msg));
            rc = rc ? rc : pt_xbuf_puts(&b, "\"}");
        }
        rc = rc ? rc : pt_xbuf_putc(&b, ']');
    }
    rc = rc ? rc : pt_xbuf_puts(&b, ",\"request_id\":\"");
    rc = rc ? rc : json_str(&b, req->request_id.base, req->request_id.len);
    rc = rc ? rc : pt_xbuf_puts(&b, "\"}}\n");
    if (rc != 0)
        pt__resp_fail(req, st, detail);
    else
        reply(ctx, http, b.data, b.len, false);
    pt_xbuf_dispose(&b);
}

static void note_upstream(soap_ctx_t *ctx, const char *endpoint)
{
    pt_req_t *req = ctx->req;
    if (endpoint != NULL) {
        req->upstream_addr = endpoint; /* config memory: lives as long as req's snapshot */
        req->upstream_cluster = ctx->conf->target.cluster->name;
    }
    req->upstream_ns = pt_now_ns() - ctx->t0_ns;
}

static void on_result(void *ud, const pt_soapcall_res_t *res)
{
    soap_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    ctx->call = NULL; /* frees itself after we return */
    note_upstream(ctx, res->endpoint);
    if (pt_handler_gone(req)) {
        pt_handler_finish(req);
    } else if (res->st == 0) {
        const uint8_t *body = res->json;
        size_t len = res->json_len;
        if (res->outcome == PT_SOAP_FAULT) {
            if (req->fail_status == 0) {
                req->fail_status = res->http_status >= 500 ? PT_ERR_UPSTREAM : PT_ERR_INVALID;
                req->fail_reason = "SOAP fault";
            }
            /* {"error":{...}} like every other error: with the request id */
            if (len >= 2 && body[len - 2] == '}' && body[len - 1] == '}') {
                char *b = pt_arena_printf(req->arena, "%.*s,\"request_id\":\"%.*s\"}}\n",
                                          (int)(len - 2), (const char *)body,
                                          (int)req->request_id.len, req->request_id.base);
                if (b != NULL) {
                    body = (const uint8_t *)b;
                    len = strlen(b);
                }
            }
        }
        const uint8_t *own = body == res->json ? pt_soapcall_take_json(res) : NULL;
        reply(ctx, res->http_status, own != NULL ? own : body, len, own != NULL);
        pt_handler_finish(req);
    } else {
        pt_observe_upstream_error(req->worker, ctx->conf->target.cluster, res->st);
        /* the detail is the call's (freed after we return): keep a copy */
        const char *d = res->detail != NULL ? pt_arena_printf(req->arena, "%s", res->detail) : NULL;
        if (req->fail_status == 0 && res->reason != NULL) {
            req->fail_status = res->st;
            req->fail_reason = pt_arena_printf(req->arena, "%s", res->reason);
        }
        reply_error(ctx, res->st, d, NULL);
        pt_handler_finish(req);
    }
    pt_handler_leave(req);
}

static bool json_type(pt_str_t ct)
{
    const char *semi = memchr(ct.base, ';', ct.len);
    if (semi != NULL)
        ct.len = (size_t)(semi - ct.base);
    ct = pt_str_trim_ows(ct);
    return pt_str_ieq(ct, PT_STR("application/json")) || pt_str_has_isuffix(ct, PT_STR("+json"));
}

static void body_complete(soap_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    if (ctx->in.len != 0 &&
        !json_type(pt_headers_get(&req->headers, PT_STR("content-type")))) {
        reply_error(ctx, PT_ERR_MEDIA_TYPE, "the body must be JSON (Content-Type: application/json)",
                    NULL);
        pt_handler_finish(req);
        return;
    }
    pt_xerrs_t *errs = pt_arena_alloc(req->arena, sizeof(*errs));
    if (errs == NULL) {
        reply_error(ctx, PT_ERR_LIMIT, "request too large", NULL);
        pt_handler_finish(req);
        return;
    }
    pt_xerrs_clear(errs);
    pt_soapcall_opts_t o = {.request_id = req->request_id, .trace = req->trace,
                            .tracestate = pt_headers_get(&req->headers, PT_STR("tracestate"))};
    o.timeout_ms = ctx->conf->timeout_ms != 0 ? ctx->conf->timeout_ms
                   : req->route.route != NULL ? req->route.route->timeout_ms : 0;
    ctx->t0_ns = pt_now_ns();
    int rc = pt_soapcall_start(req->worker, &ctx->conf->target, ctx->op, (const char *)ctx->in.data,
                               ctx->in.len, ctx->bind, ctx->bind_cnt, &o, on_result, ctx, &ctx->call,
                               errs);
    if (rc == 0)
        return;
    ctx->call = NULL;
    if (rc == PT_ERR_INVALID) {
        char first[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4] = "the body does not fit the operation's input";
        if (errs->cnt != 0)
            pt_xerr_format(&errs->items[0], first, sizeof(first));
        reply_error(ctx, PT_ERR_INVALID, pt_arena_printf(req->arena, "%s", first), errs);
    } else if (rc == PT_ERR_LIMIT) {
        reply_error(ctx, PT_ERR_LIMIT, "the request is too large for a SOAP envelope", NULL);
    } else {
        pt_observe_upstream_error(req->worker, ctx->conf->target.cluster, rc);
        reply_error(ctx, rc, rc == PT_ERR_UNAVAILABLE ? "no endpoint of the SOAP service could be reached"
                             : NULL, NULL);
    }
    pt_handler_finish(req);
}

/* Reads queued body bytes into ctx->in; calls body_complete() at the end. */
static void read_body(soap_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    while (!ctx->body_eof && !pt_handler_gone(req)) {
        char buf[BODY_CHUNK];
        bool eof = false;
        size_t n = pt__req_body_read(req, buf, sizeof(buf), &eof);
        if (pt_handler_gone(req))
            break;
        if (n != 0 && pt_xbuf_append(&ctx->in, buf, n) != 0) {
            reply_error(ctx, PT_ERR_LIMIT, "request body too large", NULL);
            pt_handler_finish(req);
            return;
        }
        if (eof) {
            ctx->body_eof = true;
            body_complete(ctx);
            return;
        }
        if (n == 0)
            return; /* on_body resumes */
    }
    if (pt_handler_gone(req))
        pt_handler_finish(req);
}

/* Percent-decodes (and '+' -> ' ') `s` into arena memory; NULL on a bad escape. */
static char *query_decode(pt_arena_t *a, pt_str_t s, size_t *out_len)
{
    char *d = pt_arena_alloc(a, s.len + 1);
    if (d == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.base[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= s.len)
                return NULL;
            int hi = pt_str_hexval(s.base[i + 1]), lo = pt_str_hexval(s.base[i + 2]);
            if (hi < 0 || lo < 0)
                return NULL;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        d[o++] = ch;
    }
    d[o] = '\0';
    *out_len = o;
    return d;
}

/* Adds the query parameters as bindings; answers 400 and returns -1 on a bad one. */
static int bind_query(soap_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    pt_str_t q = req->query;
    size_t start = 0;
    for (size_t i = 0; i <= q.len; i++) {
        if (i < q.len && q.base[i] != '&')
            continue;
        pt_str_t kv = {q.base + start, i - start};
        start = i + 1;
        if (kv.len == 0)
            continue;
        const char *eq = memchr(kv.base, '=', kv.len);
        pt_str_t k = {kv.base, eq != NULL ? (size_t)(eq - kv.base) : kv.len};
        pt_str_t v = eq != NULL ? (pt_str_t){eq + 1, kv.len - k.len - 1} : PT_STR("");
        size_t kl = 0, vl = 0;
        char *kd = query_decode(req->arena, k, &kl), *vd = query_decode(req->arena, v, &vl);
        if (kd == NULL || vd == NULL) {
            reply_error(ctx, PT_ERR_INVALID, "malformed percent-escape in the query string", NULL);
            return -1;
        }
        if (pt_soap_op_field_bindable(ctx->op, kd, kl) != 1) {
            reply_error(ctx, PT_ERR_INVALID,
                        pt_arena_printf(req->arena,
                                        "unknown query parameter '%s' (not a simple-typed field of "
                                        "%s's input)",
                                        kd, ctx->op->name),
                        NULL);
            return -1;
        }
        ctx->bind[ctx->bind_cnt++] = (pt_soap_binding_t){kd, kl, vd, vl};
    }
    return 0;
}

static void allow_header(pt_req_t *req, unsigned bits)
{
    static const struct {
        unsigned bit;
        const char *name;
    } m[] = {{PT_HTTP_M_GET, "GET"},     {PT_HTTP_M_POST, "POST"},  {PT_HTTP_M_PUT, "PUT"},
             {PT_HTTP_M_PATCH, "PATCH"}, {PT_HTTP_M_DELETE, "DELETE"}};
    char buf[64];
    size_t o = 0;
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        if (!(bits & m[i].bit))
            continue;
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", o != 0 ? ", " : "", m[i].name);
    }
    if (o != 0)
        pt_headers_set(&req->resp_headers, PT_STR("allow"), (pt_str_t){buf, o});
}

/*
 * Which operation: POST <prefix><Operation>, else a REST mapping. Sets ctx->op
 * and the path bindings, or answers (404 / 405 / 400) and returns -1.
 */
static int pick_operation(soap_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const soap_conf_t *conf = ctx->conf;
    pt_str_t path = req->path;
    size_t qcnt = 1;
    for (size_t i = 0; i < req->query.len; i++)
        qcnt += req->query.base[i] == '&';
    ctx->bind = pt_arena_alloc(req->arena, (qcnt + PT_PATHTMPL_MAX_VARS) * sizeof(*ctx->bind));
    if (ctx->bind == NULL) {
        reply_error(ctx, PT_ERR_URI_TOO_LONG, "request target too long", NULL);
        return -1;
    }
    if (pt_str_has_prefix(path, conf->prefix) && path.len > conf->prefix.len &&
        memchr(path.base + conf->prefix.len, '/', path.len - conf->prefix.len) == NULL) {
        const pt_soap_op_t *op = pt_soap_port_op(conf->target.port, path.base + conf->prefix.len,
                                                 path.len - conf->prefix.len);
        if (op != NULL) {
            if (!pt_str_eq(req->method, PT_STR("POST"))) {
                allow_header(req, PT_HTTP_M_POST);
                reply_error(ctx, PT_ERR_METHOD, "SOAP operations are called with POST", NULL);
                return -1;
            }
            ctx->op = op;
            return 0;
        }
    }
    pt_pathmatch_t *m = NULL;
    pt_pathmatch_status_t ms = PT_PATHMATCH_NOT_FOUND;
    if (conf->matcher != NULL) {
        size_t slen = PT_PATHMATCH_SCRATCH_LEN(path.len);
        char *scratch = pt_arena_alloc(req->arena, slen);
        m = pt_arena_alloc(req->arena, sizeof(*m));
        if (scratch == NULL || m == NULL) {
            reply_error(ctx, PT_ERR_URI_TOO_LONG, "request target too long", NULL);
            return -1;
        }
        ms = pt_pathmatcher_match(conf->matcher, req->method.base, req->method.len, path.base,
                                  path.len, NULL, scratch, slen, m);
    }
    switch (ms) {
    case PT_PATHMATCH_OK: {
        const soap_rest_t *r = m->route;
        ctx->op = r->op;
        for (size_t i = 0; i < m->var_cnt; i++)
            ctx->bind[ctx->bind_cnt++] = (pt_soap_binding_t){m->vars[i].field_path,
                                                             m->vars[i].field_path_len,
                                                             m->vars[i].value, m->vars[i].value_len};
        return 0;
    }
    case PT_PATHMATCH_METHOD:
        allow_header(req, m->allowed);
        reply_error(ctx, PT_ERR_METHOD, "this path is mapped for other methods", NULL);
        return -1;
    case PT_PATHMATCH_BAD_PATH:
        reply_error(ctx, PT_ERR_INVALID, m->reason, NULL);
        return -1;
    default:
        reply_error(ctx, PT_ERR_NOT_FOUND,
                    pt_arena_printf(req->arena,
                                    "no operation of port %s and no REST mapping here (operations "
                                    "are called with POST %.*s<OperationName>)",
                                    conf->target.port->name, (int)conf->prefix.len,
                                    conf->prefix.base),
                    NULL);
        return -1;
    }
}

static void soap_start(pt_req_t *req, const void *vconf)
{
    const soap_conf_t *conf = vconf;
    soap_ctx_t *ctx = pt_arena_zalloc(req->arena, sizeof(*ctx));
    if (ctx == NULL || pt_arena_defer(req->arena, ctx_cleanup, ctx) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    ctx->req = req;
    ctx->conf = conf;
    pt_xbuf_init(&ctx->in, NULL);
    req->handler_ctx = ctx;
    if (pt_req_on_abort(req, on_client_abort, ctx) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt_handler_finish(req);
    } else if (pick_operation(ctx) != 0 || bind_query(ctx) != 0) {
        pt_handler_finish(req);
    } else {
        read_body(ctx);
    }
}

static void soap_on_body(pt_req_t *req)
{
    soap_ctx_t *ctx = req->handler_ctx;
    if (ctx == NULL || pt_handler_finished(req) || ctx->body_eof || ctx->op == NULL)
        return;
    read_body(ctx);
}

const pt_handler_def_t pt_handler_soap = {
    .name = "soap",
    .conf_size = sizeof(soap_conf_t),
    .fields = soap_fields,
    .parse_conf = soap_parse_conf,
    .check_conf = soap_check_conf,
    .conf_dispose = soap_conf_dispose,
    .start = soap_start,
    .on_body = soap_on_body,
    .on_writable = NULL,
};
