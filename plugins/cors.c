/*
 * cors.c -- the `cors` filter: Cross-Origin Resource Sharing for every route
 * kind (proxy, grpc REST bindings and gRPC-Web, soap, aggregate, WebSocket
 * handshakes), and the implementation behind a grpc route's `web_origins`.
 *
 *   - cors:
 *       origins: [ "https://app.example.com" ]   # "*": any (not with credentials)
 *       methods: [ GET, POST, PATCH ]            # default: what the path has
 *       headers: [ content-type, authorization ] # default: the ones asked for
 *       expose:  [ x-request-id ]
 *       max_age: 10m
 *       credentials: true
 *
 * Preflights (OPTIONS with Origin and Access-Control-Request-Method) are
 * answered here and never reach a handler or an upstream: 204 with
 * Access-Control-Allow-* for an allowed origin, a 403 JSON error without any
 * Access-Control-Allow-Origin for another one. The methods allowed are the
 * ones the path really has: the handler says (pt_handler_def_t.cors_methods:
 * a grpc route answers with the verbs google.api.http binds to that path,
 * plus POST for gRPC-Web method paths), else the route's `match.methods`,
 * else GET, HEAD, POST, PUT, PATCH, DELETE; `methods:` narrows that set.
 *
 * Other requests pass; their answers (local replies and errors included)
 * get Access-Control-Allow-Origin -- the literal origin, or `*` when any is
 * allowed and credentials are off -- plus Vary: Origin whenever the answer
 * depends on the origin, Access-Control-Allow-Credentials and
 * Access-Control-Expose-Headers. gRPC-Web answers also expose grpc-status,
 * grpc-message, grpc-status-details-bin and the upstream's metadata headers,
 * so browsers can read them. CORS headers an upstream sent are replaced: with
 * this filter on a route, Portico owns the policy. A WebSocket handshake
 * (browsers send Origin but never a preflight) from an origin not allowed is
 * refused with 403 (cross-site WebSocket hijacking).
 */
#include <stdio.h>
#include <string.h>

#include "plugins/cors.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

#define DEFAULT_METHODS                                                                            \
    (PT_METHOD_GET | PT_METHOD_HEAD | PT_METHOD_POST | PT_METHOD_PUT | PT_METHOD_PATCH |             \
     PT_METHOD_DELETE)
#define GRPC_WEB_EXPOSE "grpc-status, grpc-message, grpc-status-details-bin"
#define MAX_ASKED 2048 /* Access-Control-Request-Headers echoed at most this long */

typedef struct cors_conf {
    const char **origins; /* lowercase "scheme://host[:port]" */
    size_t origin_cnt;
    bool any_origin;
    uint32_t methods;     /* PT_METHOD_* bits allowed at most (0: DEFAULT_METHODS) */
    pt_str_t headers;     /* "a, b" or empty: echo the request's */
    pt_str_t expose;      /* "a, b" or empty */
    pt_str_t max_age;     /* seconds as text, or empty */
    bool credentials;
    bool web_only;        /* alias without web_origins: gRPC-Web answers and preflights only */
} cors_conf_t;

typedef struct cors_ctx {
    pt_str_t allow_origin; /* ACAO for this request's answer, or empty */
    bool active;           /* the filter decorates this request's answer */
} cors_ctx_t;

/* ---- config ------------------------------------------------------------------------- */

static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool token(pt_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!tchar(s.base[i]))
            return false;
    return true;
}

/* Joins list items (checked by `ok`) into "a, b"; lowercased when `lower`. */
static int join_list(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *key, bool lower,
                     pt_str_t *out)
{
    if (n->kind != PT_CONF_SEQ)
        return pt_conf_error(cx, n, "cors: %s must be a list of header names", key);
    size_t len = 0;
    for (size_t i = 0; i < n->cnt; i++) {
        const pt_conf_node_t *it = n->items[i];
        if (it->kind != PT_CONF_SCALAR || !token((pt_str_t){it->str, it->len}))
            return pt_conf_error(cx, it, "cors: %s: not a header name", key);
        len += it->len + 2;
    }
    char *s = pt_conf_alloc(cx, len + 1);
    size_t o = 0;
    for (size_t i = 0; i < n->cnt; i++) {
        if (o != 0) {
            s[o++] = ',';
            s[o++] = ' ';
        }
        for (size_t j = 0; j < n->items[i]->len; j++) {
            char ch = n->items[i]->str[j];
            s[o++] = lower && ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
    }
    *out = (pt_str_t){s, o};
    return 0;
}

/* "https://app.example.com[:port]" -> lowercase copy; NULL and an error when malformed. */
static const char *origin_conf(pt_conf_cx_t *cx, const pt_conf_node_t *it)
{
    pt_str_t s = {it->str, it->len};
    if (it->kind != PT_CONF_SCALAR ||
        !(pt_str_has_prefix(s, PT_STR("http://")) || pt_str_has_prefix(s, PT_STR("https://")))) {
        pt_conf_error(cx, it, "cors: an origin is \"*\" or scheme://host[:port] (e.g. https://app.example.com)");
        return NULL;
    }
    const char *host = strstr(it->str, "://") + 3;
    if (*host == '\0' || strpbrk(host, "/?# ") != NULL) {
        pt_conf_error(cx, it, "cors: origin '%s' must not have a path (scheme://host[:port])", it->str);
        return NULL;
    }
    char *c = pt_conf_strdup(cx, it->str, it->len);
    for (char *p = c; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
    return c;
}

static int parse_origins(pt_conf_cx_t *cx, const pt_conf_node_t *n, cors_conf_t *c)
{
    if (n == NULL)
        return 0;
    size_t cnt = n->kind == PT_CONF_SEQ ? n->cnt : 1;
    if (n->kind != PT_CONF_SEQ && n->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "cors: origins must be a list");
    c->origins = pt_conf_alloc(cx, (cnt != 0 ? cnt : 1) * sizeof(*c->origins));
    int rc = 0;
    for (size_t i = 0; i < cnt; i++) {
        const pt_conf_node_t *it = n->kind == PT_CONF_SEQ ? n->items[i] : n;
        if (it->kind == PT_CONF_SCALAR && strcmp(it->str, "*") == 0) {
            c->any_origin = true;
            continue;
        }
        const char *o = origin_conf(cx, it);
        if (o == NULL)
            rc = PT_ERR_INVALID;
        else
            c->origins[c->origin_cnt++] = o;
    }
    return rc;
}

static int parse_methods(pt_conf_cx_t *cx, const pt_conf_node_t *n, cors_conf_t *c)
{
    if (n->kind != PT_CONF_SEQ || n->cnt == 0)
        return pt_conf_error(cx, n, "cors: methods must be a non-empty list (GET, POST, ...)");
    for (size_t i = 0; i < n->cnt; i++) {
        const pt_conf_node_t *it = n->items[i];
        uint32_t bit = it->kind == PT_CONF_SCALAR ? pt_method_bit((pt_str_t){it->str, it->len}) : 0;
        if (bit == 0 || bit == PT_METHOD_OTHER || bit == PT_METHOD_CONNECT || bit == PT_METHOD_TRACE)
            return pt_conf_error(cx, it,
                                 "cors: method '%s' (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; "
                                 "uppercase)",
                                 it->str != NULL ? it->str : "");
        c->methods |= bit;
    }
    return 0;
}

static int cors_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    cors_conf_t *c = vconf;
    c->max_age = PT_STR("600");
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "cors: expected a map (origins, methods, headers, expose, "
                                       "max_age, credentials)");
    int rc = 0;
    for (size_t i = 0; i < node->cnt; i++) {
        const char *k = node->keys[i]->str;
        const pt_conf_node_t *v = node->items[i];
        if (strcmp(k, "origins") == 0) {
            rc |= parse_origins(cx, v, c);
        } else if (strcmp(k, "methods") == 0) {
            rc |= parse_methods(cx, v, c);
        } else if (strcmp(k, "headers") == 0) {
            rc |= join_list(cx, v, "headers", true, &c->headers);
        } else if (strcmp(k, "expose") == 0) {
            rc |= join_list(cx, v, "expose", true, &c->expose);
        } else if (strcmp(k, "max_age") == 0) {
            uint64_t ms;
            if (pt_conf_get_duration_ms(cx, v, &ms) != 0) {
                rc = PT_ERR_INVALID;
            } else {
                char buf[32];
                int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(ms / 1000));
                c->max_age = (pt_str_t){pt_conf_strdup(cx, buf, (size_t)n), (size_t)n};
            }
        } else if (strcmp(k, "credentials") == 0) {
            rc |= pt_conf_get_bool(cx, v, &c->credentials);
        } else {
            rc = pt_conf_error(cx, node->keys[i],
                               "cors: unknown key '%s' (origins, methods, headers, expose, max_age, "
                               "credentials)",
                               k);
        }
    }
    const pt_conf_node_t *origins = pt_conf_map_get(node, "origins");
    if (origins == NULL)
        return pt_conf_error(cx, node, "cors: origins is required (a list of origins, or [\"*\"])");
    if (rc == 0 && c->credentials && c->any_origin)
        return pt_conf_error(cx, origins,
                             "cors: credentials: true needs the origins listed (\"*\" would let any "
                             "site read answers made with the user's cookies)");
    if (rc == 0 && !c->any_origin && c->origin_cnt == 0)
        return pt_conf_error(cx, origins, "cors: origins is empty");
    return rc != 0 ? PT_ERR_INVALID : 0;
}

void *pt_cors_alias_conf(pt_conf_cx_t *cx, const pt_conf_strlist_t *origins, bool web_only)
{
    cors_conf_t *c = pt_conf_alloc(cx, sizeof(*c));
    c->max_age = PT_STR("86400");
    c->web_only = web_only;
    c->origins = pt_conf_alloc(cx, (origins->cnt != 0 ? origins->cnt : 1) * sizeof(*c->origins));
    for (size_t i = 0; i < origins->cnt; i++) {
        const char *o = origins->v[i];
        if (strcmp(o, "*") == 0) {
            c->any_origin = true;
            continue;
        }
        char *l = pt_conf_strdup(cx, o, strlen(o));
        for (char *p = l; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        c->origins[c->origin_cnt++] = l;
    }
    if (origins->cnt == 0)
        c->any_origin = true;
    return c;
}

/* ---- request time ------------------------------------------------------------------ */

/* The Access-Control-Allow-Origin for `origin`, or empty when it is not allowed. */
static pt_str_t allow_origin(const cors_conf_t *c, pt_str_t origin)
{
    if (origin.base == NULL || origin.len == 0)
        return PT_STR("");
    if (c->any_origin)
        return c->credentials ? origin : PT_STR("*");
    for (size_t i = 0; i < c->origin_cnt; i++)
        if (pt_str_ieq(pt_str_c(c->origins[i]), origin))
            return origin;
    return PT_STR("");
}

static bool grpc_web(pt_req_t *req)
{
    pt_str_t ct = pt_headers_get(pt_req_headers(req), PT_STR("content-type"));
    return pt_str_has_prefix(ct, PT_STR("application/grpc-web"));
}

/* "GET, POST, OPTIONS" from method bits, into the arena. */
static pt_str_t methods_text(pt_req_t *req, uint32_t bits)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{PT_METHOD_GET, "GET"},     {PT_METHOD_HEAD, "HEAD"},     {PT_METHOD_POST, "POST"},
                 {PT_METHOD_PUT, "PUT"},     {PT_METHOD_PATCH, "PATCH"},   {PT_METHOD_DELETE, "DELETE"},
                 {PT_METHOD_OPTIONS, "OPTIONS"}};
    char *s = pt_arena_alloc(pt_req_arena(req), 64);
    if (s == NULL)
        return PT_STR("OPTIONS");
    size_t o = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(bits & names[i].bit))
            continue;
        size_t n = strlen(names[i].name);
        if (o != 0) {
            s[o++] = ',';
            s[o++] = ' ';
        }
        memcpy(s + o, names[i].name, n);
        o += n;
    }
    return (pt_str_t){s, o};
}

/* The methods to allow at this request's path (see the top comment). */
static uint32_t path_methods(const cors_conf_t *c, pt_req_t *req)
{
    uint32_t m = DEFAULT_METHODS;
    pt_req_allowed_methods(req, &m);
    if (c->methods != 0)
        m &= c->methods;
    return m | PT_METHOD_OPTIONS;
}

/* The request headers a preflight asked for, if they are all header names. */
static pt_str_t asked_headers(pt_req_t *req)
{
    pt_str_t a = pt_headers_get(pt_req_headers(req), PT_STR("access-control-request-headers"));
    if (a.base == NULL || a.len == 0 || a.len > MAX_ASKED)
        return PT_STR_NULL;
    for (size_t i = 0; i < a.len; i++)
        if (!tchar(a.base[i]) && a.base[i] != ',' && a.base[i] != ' ')
            return PT_STR_NULL;
    return a;
}

static pt_fstatus_t preflight(const cors_conf_t *c, pt_req_t *req, pt_str_t acao)
{
    if (acao.len == 0) {
        pt_req_reject(req, PT_ERR_FORBIDDEN, "origin not allowed (CORS)");
        return PT_FILTER_RESPOND;
    }
    pt_headers_t *h = pt_req_resp_headers(req);
    pt_headers_add_nocopy(h, PT_STR("access-control-allow-origin"), acao);
    if (!pt_str_eq(acao, PT_STR("*")))
        pt_headers_add_nocopy(h, PT_STR("vary"), PT_STR("Origin"));
    if (c->credentials)
        pt_headers_add_nocopy(h, PT_STR("access-control-allow-credentials"), PT_STR("true"));
    pt_headers_add_nocopy(h, PT_STR("access-control-allow-methods"),
                          methods_text(req, path_methods(c, req)));
    pt_str_t hd = c->headers.len != 0 ? c->headers : asked_headers(req);
    if (hd.len != 0)
        pt_headers_add_nocopy(h, PT_STR("access-control-allow-headers"), hd);
    if (c->max_age.len != 0)
        pt_headers_add_nocopy(h, PT_STR("access-control-max-age"), c->max_age);
    pt_req_respond(req, 204, PT_STR_NULL, PT_STR(""));
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t cors_request(const pt_filter_t *f, pt_req_t *req, void *vctx)
{
    const cors_conf_t *c = f->conf;
    cors_ctx_t *ctx = vctx;
    pt_str_t origin = pt_headers_get(pt_req_headers(req), PT_STR("origin"));
    pt_str_t acao = allow_origin(c, origin);
    if (pt_str_eq(pt_req_method(req), PT_STR("OPTIONS")) && origin.base != NULL &&
        pt_headers_get(pt_req_headers(req), PT_STR("access-control-request-method")).base != NULL)
        return preflight(c, req, acao);
    if (pt_req_upgrade(req).len != 0 && origin.base != NULL && acao.len == 0) {
        pt_req_reject(req, PT_ERR_FORBIDDEN, "origin not allowed (WebSocket handshake)");
        return PT_FILTER_RESPOND;
    }
    ctx->active = !c->web_only || grpc_web(req);
    ctx->allow_origin = acao;
    return PT_FILTER_CONTINUE;
}

/* Access-Control-Expose-Headers of a gRPC-Web answer: the gRPC fields and the metadata sent. */
static pt_str_t grpc_web_expose(pt_req_t *req, pt_str_t extra)
{
    const pt_headers_t *h = pt_req_resp_headers(req);
    size_t len = sizeof(GRPC_WEB_EXPOSE) - 1 + extra.len + 2;
    for (size_t i = 0; i < h->cnt; i++)
        len += h->v[i].name.len + 2;
    char *s = pt_arena_alloc(pt_req_arena(req), len);
    if (s == NULL)
        return PT_STR(GRPC_WEB_EXPOSE);
    memcpy(s, GRPC_WEB_EXPOSE, sizeof(GRPC_WEB_EXPOSE) - 1);
    size_t o = sizeof(GRPC_WEB_EXPOSE) - 1;
    if (extra.len != 0) {
        s[o++] = ',';
        s[o++] = ' ';
        memcpy(s + o, extra.base, extra.len);
        o += extra.len;
    }
    for (size_t i = 0; i < h->cnt; i++) {
        pt_str_t n = h->v[i].name;
        if (pt_header_is_hop_by_hop(n) || pt_str_eq(n, PT_STR("content-type")) ||
            pt_str_eq(n, PT_STR("content-length")) || pt_str_has_prefix(n, PT_STR("grpc-")) ||
            pt_str_has_prefix(n, PT_STR("access-control-")) || pt_str_eq(n, PT_STR("vary")))
            continue;
        s[o++] = ',';
        s[o++] = ' ';
        memcpy(s + o, n.base, n.len);
        o += n.len;
    }
    return (pt_str_t){s, o};
}

static pt_fstatus_t cors_response(const pt_filter_t *f, pt_req_t *req, void *vctx)
{
    const cors_conf_t *c = f->conf;
    cors_ctx_t *ctx = vctx;
    if (!ctx->active)
        return PT_FILTER_CONTINUE;
    pt_headers_t *h = pt_req_resp_headers(req);
    for (size_t i = 0; i < h->cnt; i++) {
        if (pt_str_has_prefix(h->v[i].name, PT_STR("access-control-"))) {
            /* the upstream's own CORS headers (rare): ours replace them */
            pt_headers_remove(h, PT_STR("access-control-allow-origin"));
            pt_headers_remove(h, PT_STR("access-control-allow-credentials"));
            pt_headers_remove(h, PT_STR("access-control-expose-headers"));
            break;
        }
    }
    if (!c->any_origin || c->credentials) {
        if (!pt_headers_has_token(h, PT_STR("vary"), PT_STR("origin")))
            pt_headers_add_nocopy(h, PT_STR("vary"), PT_STR("Origin"));
    }
    if (ctx->allow_origin.len == 0)
        return PT_FILTER_CONTINUE;
    pt_headers_add_nocopy(h, PT_STR("access-control-allow-origin"), ctx->allow_origin);
    if (c->credentials)
        pt_headers_add_nocopy(h, PT_STR("access-control-allow-credentials"), PT_STR("true"));
    pt_str_t ct = pt_headers_get(h, PT_STR("content-type"));
    pt_str_t expose = pt_str_has_prefix(ct, PT_STR("application/grpc-web"))
                          ? grpc_web_expose(req, c->expose)
                          : c->expose;
    if (expose.len != 0)
        pt_headers_add_nocopy(h, PT_STR("access-control-expose-headers"), expose);
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_cors = {
    .abi = PT_FILTER_ABI,
    .name = "cors",
    .priority = 1000, /* first among global filters: refusals by later ones carry CORS headers */
    .conf_size = sizeof(cors_conf_t),
    .ctx_size = sizeof(cors_ctx_t),
    .parse_conf = cors_parse,
    .on_request_headers = cors_request,
    .on_response_headers = cors_response,
};
