/*
 * proxy.c -- the `proxy` route handler: forwards a request to a REST cluster
 * through the upstream call primitive and streams the answer back.
 *
 *   routes:
 *     - match: { prefix: /api/ }
 *       proxy: { cluster: web, timeout: 5s, preserve_host: false }
 *
 * (`proxy: web` is shorthand for `proxy: { cluster: web }`.)
 *
 * Headers: hop-by-hop fields and those the client named in `Connection` are
 * dropped both ways. The fields Portico owns upstream (X-Forwarded-For,
 * -Proto, -Host, Forwarded, Via, X-Request-Id) are removed from the client's
 * request first and set afterwards, so a client can neither pre-seed nor strip
 * them (H1-15); `trust_forwarded: true` keeps and extends the client's
 * X-Forwarded-* instead, for a Portico behind another trusted proxy.
 *
 * Bodies stream both ways with backpressure: the upstream pulls the request
 * body from the request queue (pausing when it is empty, on_body wakes it),
 * and the response stops being read from the upstream while the client's
 * output is over limits.max_response_buffer (on_writable resumes it).
 *
 * Tunnels (request.h, "Tunnels"): a request that asks to switch protocols
 * (HTTP/1.1 `Connection: upgrade` + `Upgrade: P`, or HTTP/2 extended CONNECT
 * with `:protocol P`) is forwarded only when the route allows P
 * (`websocket: true` allows `websocket`, `upgrade: [P, ...]` any token);
 * otherwise it is refused with 403 and never reaches the upstream (a request
 * without an upgrade is unaffected). Allowed, it goes upstream as an HTTP/1.1
 * upgrade (an extended CONNECT becomes `GET` + `Upgrade: P`); a 101 naming P
 * opens the tunnel (101 to an HTTP/1.1 client, 200 over HTTP/2) and the same
 * body paths then carry raw bytes both ways; any other answer is relayed as
 * an ordinary response. For `websocket` the upstream's Sec-WebSocket-Accept
 * must match the key sent (the client's, or one made here for an RFC 8441
 * client, which sends none), else 502: a 101 we cannot trust opens nothing.
 */
#include <stdio.h>
#include <string.h>

#include "core/chain.h"
#include "core/config.h"
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "core/headers_priv.h"
#include "observe/observe.h"
#include "core/request.h"
#include "core/route_retry.h"
#include "handlers/ws_proxy.h"
#include "http/ws.h"
#include "upstream/call.h"
#include "observe/trace.h"

/* A request that already passed this many Portico hops is looping (OV-9). */
#define PROXY_MAX_HOPS 8

typedef struct proxy_conf {
    const char *cluster_name;
    const pt_cluster_t *cluster;   /* resolved by check_conf */
    uint64_t timeout_ms;           /* 0: the route's, else the cluster's */
    bool preserve_host;            /* forward the client's Host instead of the endpoint's */
    bool trust_forwarded;          /* extend client-sent X-Forwarded-* instead of replacing them */
    bool websocket;                /* allow `Upgrade: websocket` / `:protocol websocket` */
    pt_conf_strlist_t upgrade;     /* other protocols a client may upgrade to (tokens) */
    uint64_t tunnel_idle_ms;       /* 0: timeouts.tunnel_idle */
    /* WebSocket sessions (ws_proxy.h) */
    uint64_t max_message;          /* bytes per message, each direction (default 1 MiB) */
    uint64_t ping_interval_ms;     /* keepalive pings on both legs (0: none) */
    uint64_t close_timeout_ms;     /* answer to a close frame (default 5 s) */
    pt_conf_strlist_t web_origins; /* Origin allow-list for handshakes (empty: any) */
    const pt_conf_node_t *split_node, *hash_key_node; /* `split:`, `hash_key:` (route_split.c) */
    pt_split_t *split;             /* or NULL: every request to `cluster` */
} proxy_conf_t;

static const pt_conf_field_t proxy_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(proxy_conf_t, cluster_name), 0, 0, false, NULL},
    {"split", PT_CONF_T_NODE, offsetof(proxy_conf_t, split_node), 0, 0, false, NULL},
    {"hash_key", PT_CONF_T_NODE, offsetof(proxy_conf_t, hash_key_node), 0, 0, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(proxy_conf_t, timeout_ms), 1, 0, false, NULL},
    {"preserve_host", PT_CONF_T_BOOL, offsetof(proxy_conf_t, preserve_host), 0, 0, false, NULL},
    {"trust_forwarded", PT_CONF_T_BOOL, offsetof(proxy_conf_t, trust_forwarded), 0, 0, false, NULL},
    {"websocket", PT_CONF_T_BOOL, offsetof(proxy_conf_t, websocket), 0, 0, false, NULL},
    {"upgrade", PT_CONF_T_STRLIST, offsetof(proxy_conf_t, upgrade), 0, 0, false, NULL},
    {"tunnel_idle", PT_CONF_T_DURATION, offsetof(proxy_conf_t, tunnel_idle_ms), 1, 86400000, false,
     NULL},
    {"max_message", PT_CONF_T_SIZE, offsetof(proxy_conf_t, max_message), 1, 1ull << 32, false, NULL},
    {"ping_interval", PT_CONF_T_DURATION, offsetof(proxy_conf_t, ping_interval_ms), 100, 86400000,
     false, NULL},
    {"close_timeout", PT_CONF_T_DURATION, offsetof(proxy_conf_t, close_timeout_ms), 1, 600000, false,
     NULL},
    {"web_origins", PT_CONF_T_STRLIST, offsetof(proxy_conf_t, web_origins), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

typedef struct proxy_ctx {
    pt_req_t *req;
    const proxy_conf_t *conf;
    pt_upcall_t *call;
    pt_upcall_req_t up;
    pt_headers_t up_headers;
    char ws_accept[29];            /* the Sec-WebSocket-Accept a websocket 101 must carry, or "" */
    bool is_ws;                    /* a WebSocket handshake (checked by pt_ws_hs_check) */
    pt_ws_hs_t ws_hs;
    pt_wsp_t *wsp;                 /* the WebSocket relay once the tunnel is open */
    uint64_t t0_ns;
} proxy_ctx_t;

/* ---- config ------------------------------------------------------------ */

static int proxy_parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    proxy_conf_t *conf = vconf;
    if (node != NULL && node->kind == PT_CONF_SCALAR)
        return pt_conf_get_str(cx, node, &conf->cluster_name);
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "proxy: expected a map like { cluster: NAME } or a cluster name");
    if (pt_conf_parse_fields(cx, node, proxy_fields, conf) != 0)
        return PT_ERR_INVALID;
    return pt_split_parse(cx, "proxy", conf->split_node, conf->hash_key_node,
                          conf->cluster_name != NULL, &conf->split);
}

static int proxy_check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf,
                            const pt_config_t *config)
{
    proxy_conf_t *conf = vconf;
    if (conf->split != NULL) {
        if (pt_split_resolve(cx, "proxy", conf->split, config, PT_PROTO_HTTP, &conf->cluster) != 0)
            return PT_ERR_INVALID;
    } else {
        if (conf->cluster_name == NULL)
            return pt_conf_error(cx, node, "proxy: `cluster` (or `split`) is required");
        const pt_conf_node_t *at = node != NULL && node->kind == PT_CONF_MAP ? pt_conf_map_get(node, "cluster") : node;
        conf->cluster = pt_config_cluster(config, conf->cluster_name);
        if (conf->cluster == NULL)
            return pt_conf_error(cx, at, "proxy: unknown cluster '%s'", conf->cluster_name);
        if (conf->cluster->protocol != PT_PROTO_HTTP)
            return pt_conf_error(cx, at, "proxy: cluster '%s' is not an http cluster", conf->cluster_name);
        if (conf->cluster->endpoint_cnt == 0)
            return pt_conf_error(cx, at, "proxy: cluster '%s' has no endpoints", conf->cluster_name);
    }
    if (conf->max_message == 0)
        conf->max_message = 1u << 20;
    if (conf->close_timeout_ms == 0)
        conf->close_timeout_ms = 5000;
    const pt_conf_node_t *un =
        node != NULL && node->kind == PT_CONF_MAP ? pt_conf_map_get(node, "upgrade") : NULL;
    for (size_t i = 0; i < conf->upgrade.cnt; i++) {
        pt_str_t t = pt_str_c(conf->upgrade.v[i]);
        bool ok = t.len != 0 && !pt_str_ieq(t, PT_STR("h2c"));
        for (size_t j = 0; ok && j < t.len; j++) /* a token (RFC 9110 §5.6.2), '/' for versions */
            ok = t.base[j] > 0x20 && t.base[j] < 0x7f &&
                 strchr("\"(),:;<=>?@[\\]{}", t.base[j]) == NULL;
        if (!ok)
            return pt_conf_error(
                cx, un != NULL && un->kind == PT_CONF_SEQ && i < un->cnt ? un->items[i] : un,
                "proxy: upgrade: '%s' is not a protocol token (h2c belongs to the listener)",
                conf->upgrade.v[i]);
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

/** Whether `name` is listed in any `Connection` header of `h` (so it is hop-by-hop too). */
static bool named_by_connection(const pt_headers_t *h, pt_str_t name)
{
    return pt_headers_has_token(h, PT_STR("connection"), name);
}

/* The elements of a field list's Connection fields, split once for the walk
 * over its fields (each would otherwise rescan the list): the answers of
 * named_by_connection(), which `many` falls back to. */
#define CONN_TOKENS_MAX 8
typedef struct conn_tokens {
    const pt_headers_t *h;
    pt_str_t tok[CONN_TOKENS_MAX];
    size_t n;
    bool many;
} conn_tokens_t;

static void conn_tokens_init(conn_tokens_t *t, const pt_headers_t *h)
{
    t->h = h;
    t->n = 0;
    t->many = false;
    for (size_t i = 0; i < h->cnt && !t->many; i++) {
        if (h->v[i].name.len != 10 || !pt_str_ieq(h->v[i].name, PT_STR("connection")))
            continue;
        pt_str_t v = h->v[i].value;
        size_t start = 0;
        for (size_t j = 0; j <= v.len; j++) {
            if (j < v.len && v.base[j] != ',')
                continue;
            if (t->n == CONN_TOKENS_MAX) {
                t->many = true;
                break;
            }
            t->tok[t->n++] = pt_str_trim_ows((pt_str_t){v.base + start, j - start});
            start = j + 1;
        }
    }
}

static bool conn_tokens_name(const conn_tokens_t *t, pt_str_t name)
{
    if (t->many)
        return named_by_connection(t->h, name);
    for (size_t i = 0; i < t->n; i++)
        if (t->tok[i].len == name.len && pt_str_ieq(t->tok[i], name))
            return true;
    return false;
}

/** How many `Via` elements name us ("1.1 portico", "2 portico (comment)"). */
static size_t via_hops(const pt_headers_t *h)
{
    size_t hops = 0;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!pt_str_eq(h->v[i].name, PT_STR("via")))
            continue;
        pt_str_t v = h->v[i].value;
        size_t start = 0;
        for (size_t j = 0; j <= v.len; j++) {
            if (j < v.len && v.base[j] != ',')
                continue;
            pt_str_t el = pt_str_trim_ows((pt_str_t){v.base + start, j - start});
            start = j + 1;
            const char *sp = memchr(el.base, ' ', el.len);
            if (sp == NULL)
                continue;
            pt_str_t by = {sp + 1, el.len - (size_t)(sp + 1 - el.base)};
            const char *end = memchr(by.base, ' ', by.len);
            if (end != NULL)
                by.len = (size_t)(end - by.base);
            if (pt_str_ieq(by, PT_STR("portico")))
                hops++;
        }
    }
    return hops;
}

static bool owned_upstream_header(pt_str_t n)
{
    return pt_str_eq(n, PT_STR("x-forwarded-for")) || pt_str_eq(n, PT_STR("x-forwarded-proto")) ||
           pt_str_eq(n, PT_STR("x-forwarded-host")) || pt_str_eq(n, PT_STR("forwarded")) ||
           pt_str_eq(n, PT_STR("via")) || pt_str_eq(n, PT_STR("x-request-id"));
}

/** Joins every value of `name` in `h` with ", " (arena), or PT_STR_NULL when absent. */
static pt_str_t joined(pt_arena_t *a, const pt_headers_t *h, pt_str_t name)
{
    size_t len = 0, cnt = 0;
    for (size_t i = 0; i < h->cnt; i++)
        if (pt_str_eq(h->v[i].name, name)) {
            len += h->v[i].value.len + (cnt ? 2 : 0);
            cnt++;
        }
    if (cnt == 0)
        return PT_STR_NULL;
    char *buf = pt_arena_alloc(a, len + 1);
    if (buf == NULL)
        return PT_STR_NULL;
    size_t off = 0;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!pt_str_eq(h->v[i].name, name))
            continue;
        if (off != 0) {
            memcpy(buf + off, ", ", 2);
            off += 2;
        }
        memcpy(buf + off, h->v[i].value.base, h->v[i].value.len);
        off += h->v[i].value.len;
    }
    buf[off] = '\0';
    return (pt_str_t){buf, off};
}

/* `name` is a lowercase literal and `mine` lives as long as the request (a
 * literal or request arena memory): neither is copied. */
static int add_joined(pt_headers_t *out, pt_arena_t *a, pt_str_t name, pt_str_t prior, pt_str_t mine)
{
    if (prior.len == 0)
        return pt__headers_push(out, name, mine);
    char *v = pt_arena_printf(a, "%.*s, %.*s", (int)prior.len, prior.base, (int)mine.len, mine.base);
    if (v == NULL)
        return PT_ERR_LIMIT;
    return pt__headers_push(out, name, pt_str_c(v));
}

/** The upstream request headers (see the top comment). */
static int build_upstream_headers(proxy_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    pt_arena_t *a = req->arena;
    const pt_headers_t *in = &req->headers;
    pt_headers_t *out = &ctx->up_headers;
    pt_headers_init(out, a);
    int rc = 0;
    conn_tokens_t conn;
    conn_tokens_init(&conn, in);

    for (size_t i = 0; i < in->cnt && rc == 0; i++) {
        pt_str_t n = in->v[i].name;
        if (pt_header_is_hop_by_hop(n) || conn_tokens_name(&conn, n) || owned_upstream_header(n) ||
            pt_str_eq(n, PT_STR("host")) || pt_str_eq(n, PT_STR("content-length")) ||
            pt_str_eq(n, PT_STR("transfer-encoding")) || pt_str_eq(n, PT_STR("expect")) ||
            (n.len > 0 && n.base[0] == ':'))
            continue;
        pt_str_t v = in->v[i].value;
        if (req->trace != NULL && n.len == 11 && pt_str_eq(n, PT_STR("traceparent"))) {
            v = pt_trace_child(req->trace, a); /* the call's own span (observe/trace.h) */
            if (v.base == NULL)
                return PT_ERR_LIMIT;
        }
        rc = pt__headers_push(out, n, v);
    }
    if (rc != 0)
        return rc;

    bool trust = ctx->conf->trust_forwarded;
    /* A hop named in Connection is not ours to forward, even when trusted. */
    pt_str_t xff = trust && !conn_tokens_name(&conn, PT_STR("x-forwarded-for"))
                       ? joined(a, in, PT_STR("x-forwarded-for")) : PT_STR_NULL;
    pt_str_t client = req->client_addr.len ? req->client_addr : PT_STR("unknown");
    if ((rc = add_joined(out, a, PT_STR("x-forwarded-for"), xff, client)) != 0)
        return rc;
    pt_str_t proto = trust ? pt_headers_get(in, PT_STR("x-forwarded-proto")) : PT_STR_NULL;
    if (proto.base == NULL)
        proto = req->is_tls ? PT_STR("https") : PT_STR("http");
    if ((rc = pt__headers_push(out, PT_STR("x-forwarded-proto"), proto)) != 0)
        return rc;
    pt_str_t fhost = trust ? pt_headers_get(in, PT_STR("x-forwarded-host")) : PT_STR_NULL;
    if (fhost.base == NULL)
        fhost = req->authority;
    if (fhost.len > 0 && (rc = pt__headers_push(out, PT_STR("x-forwarded-host"), fhost)) != 0)
        return rc;

    /* Via keeps the chain (that is its point) and adds us (RFC 9110 §7.6.3). */
    pt_str_t mine = req->version == 20 ? PT_STR("2 portico")
                    : req->version == 10 ? PT_STR("1.0 portico") : PT_STR("1.1 portico");
    if ((rc = add_joined(out, a, PT_STR("via"), joined(a, in, PT_STR("via")), mine)) != 0)
        return rc;
    if (req->request_id.len > 0)
        rc = pt__headers_push(out, PT_STR("x-request-id"), req->request_id);
    return rc;
}

/* Lifetime: callbacks bracketed with pt_handler_enter/leave (core/handler_lifetime.h). */

/* Stops the upstream call (if any) and lets go of the request. */
static void stop(proxy_ctx_t *ctx)
{
    pt_upcall_stop(&ctx->call);
    pt_handler_finish(ctx->req);
}

static void note_upstream(proxy_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const char *ep = ctx->call != NULL ? pt_upcall_endpoint(ctx->call) : NULL;
    if (ep != NULL) {
        req->upstream_addr = ep; /* config memory: lives as long as req's snapshot */
        req->upstream_cluster = ctx->up.cluster->name;
    }
    req->upstream_ns = pt_now_ns() - ctx->t0_ns;
}

static void loop_detected(pt_req_t *req)
{
    pt__resp_fail(req, PT_ERR_LOOP_DETECTED, "forwarding loop detected (via)");
}

/* ---- tunnels ---------------------------------------------------------------- */

/** Whether the route lets a client switch to `proto` (case-insensitive, as RFC 9110 §7.8). */
static bool upgrade_allowed(const proxy_conf_t *conf, pt_str_t proto)
{
    if (conf->websocket && pt_str_ieq(proto, PT_STR("websocket")))
        return true;
    for (size_t i = 0; i < conf->upgrade.cnt; i++)
        if (pt_str_ieq(proto, pt_str_c(conf->upgrade.v[i])))
            return true;
    return false;
}

/*
 * The protocol to offer upstream: the first one of the client's Upgrade list
 * (RFC 9110 §7.8: in order of preference) that the route allows, or an empty
 * slice when none is.
 */
static pt_str_t pick_upgrade(const proxy_conf_t *conf, pt_str_t offer)
{
    size_t start = 0;
    for (size_t i = 0; i <= offer.len; i++) {
        if (i < offer.len && offer.base[i] != ',')
            continue;
        pt_str_t tok = pt_str_trim_ows((pt_str_t){offer.base + start, i - start});
        start = i + 1;
        if (tok.len != 0 && upgrade_allowed(conf, tok))
            return tok;
    }
    return PT_STR_NULL;
}

/*
 * Prepares the upstream request of an allowed upgrade. The client's own
 * Upgrade/Connection were dropped as hop-by-hop; the call offers exactly
 * req->upgrade. For WebSocket the key the upstream must answer is kept: the
 * client's (HTTP/1.1), or a fresh one for an RFC 8441 client, which has none
 * (the h2 -> h1 translation: CONNECT + :protocol becomes GET + Upgrade).
 * Returns 0, or a PT_ERR_* to answer with (`*why` says why).
 */
static int prepare_upgrade(proxy_ctx_t *ctx, const char **why)
{
    pt_req_t *req = ctx->req;
    if (req->expect_body && req->version != 20) {
        *why = "upgrade request with a body";
        return PT_ERR_INVALID;
    }
    if (req->version == 20)
        ctx->up.method = PT_STR("GET");
    if (!pt_str_ieq(req->upgrade, PT_STR("websocket")))
        return 0;
    pt_headers_t *h = &ctx->up_headers;
    /* Frames are checked on both legs: no extension (permessage-deflate sets
     * RSV1) is negotiated through Portico. */
    pt_headers_remove(h, PT_STR("sec-websocket-extensions"));
    pt_str_t key = pt_headers_get(&req->headers, PT_STR("sec-websocket-key"));
    if (req->version == 20) {
        char *k = pt_arena_alloc(req->arena, 25);
        if (k == NULL)
            return PT_ERR_HEADERS_TOO_LARGE;
        pt__tunnel_ws_key(k);
        key = (pt_str_t){k, 24};
        pt_headers_remove(h, PT_STR("sec-websocket-key"));
        if (pt__headers_push(h, PT_STR("sec-websocket-key"), key) != 0)
            return PT_ERR_HEADERS_TOO_LARGE;
        if (pt_headers_get(h, PT_STR("sec-websocket-version")).base == NULL &&
            pt__headers_push(h, PT_STR("sec-websocket-version"), PT_STR("13")) != 0)
            return PT_ERR_HEADERS_TOO_LARGE;
    } else if (key.len == 0 ||
               pt_headers_count(&req->headers, PT_STR("sec-websocket-key")) != 1) {
        *why = "websocket handshake without exactly one Sec-WebSocket-Key";
        return PT_ERR_INVALID;
    }
    pt__tunnel_ws_accept(key, ctx->ws_accept);
    return 0;
}

/*
 * The upstream switched protocols: check that it switched to what was asked
 * (and, for WebSocket, answered our key), build the client's head, open the
 * tunnel. Returns NULL, or the reason for a 502.
 */
static const char *accept_upgrade(proxy_ctx_t *ctx, const pt_header_t *h, size_t cnt)
{
    pt_req_t *req = ctx->req;
    pt_headers_t view = {(pt_header_t *)h, cnt, cnt, NULL};
    pt_str_t up = pt_headers_get(&view, PT_STR("upgrade"));
    if (pt_headers_count(&view, PT_STR("upgrade")) != 1 ||
        !pt_str_ieq(pt_str_trim_ows(up), req->upgrade))
        return "upstream 101 switched to another protocol";
    if (ctx->ws_accept[0] != '\0') {
        pt_str_t acc = pt_headers_get(&view, PT_STR("sec-websocket-accept"));
        if (pt_headers_count(&view, PT_STR("sec-websocket-accept")) != 1 ||
            !pt_str_eq(pt_str_trim_ows(acc), pt_str_c(ctx->ws_accept)))
            return "upstream 101 with a wrong Sec-WebSocket-Accept";
    }
    if (ctx->is_ws) {
        if (pt_headers_get(&view, PT_STR("sec-websocket-extensions")).base != NULL)
            return "upstream 101 with an extension that was not offered";
        pt_str_t proto = pt_headers_get(&view, PT_STR("sec-websocket-protocol"));
        if (proto.base != NULL &&
            (pt_headers_count(&view, PT_STR("sec-websocket-protocol")) != 1 ||
             !pt_ws_hs_offers(&ctx->ws_hs, pt_str_trim_ows(proto))))
            return "upstream 101 chose a subprotocol the client did not offer";
    }
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t n = h[i].name;
        if (pt_header_is_hop_by_hop(n) || named_by_connection(&view, n) ||
            pt_str_eq(n, PT_STR("content-length")) ||
            (req->version == 20 && pt_str_eq(n, PT_STR("sec-websocket-accept"))))
            continue; /* RFC 8441 §5: no Accept over HTTP/2; the key was ours */
        if (pt_headers_add(&req->resp_headers, n, h[i].value) != 0)
            return "upstream response headers too large";
    }
    if (req->version != 20 &&
        pt__headers_push(&req->resp_headers, PT_STR("upgrade"), req->upgrade) != 0)
        return "upstream response headers too large";
    uint64_t idle = ctx->conf->tunnel_idle_ms;
    if (ctx->is_ws) {
        /* The WebSocket layer has its own idle clock (data messages) and ends
         * with a close frame; the tunnel's byte clock is only a backstop. */
        if (idle == 0)
            idle = req->config->timeouts.tunnel_idle_ms;
        idle += ctx->conf->close_timeout_ms + 1000;
    }
    if (pt__req_tunnel_open(req, idle) != 0)
        return "client stream cannot become a tunnel";
    return NULL;
}

/* ---- WebSocket relay glue (ws_proxy.h) ------------------------------------- */

static void wsp_up_kick(void *ud)
{
    proxy_ctx_t *ctx = ud;
    if (ctx->call != NULL)
        pt_upcall_body_ready(ctx->call);
}

static void wsp_up_resume(void *ud)
{
    proxy_ctx_t *ctx = ud;
    if (ctx->call != NULL)
        pt_upcall_resume(ctx->call);
}

static void stop(proxy_ctx_t *ctx);
static void fail_head(proxy_ctx_t *ctx, const char *reason);

static void wsp_done(void *ud)
{
    stop(ud);
}

static const pt_wsp_io_t wsp_io = {wsp_up_kick, wsp_up_resume, wsp_done};

/* The tunnel is open: relay frames instead of bytes. */
static void open_ws_relay(proxy_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const proxy_conf_t *c = ctx->conf;
    pt_wsp_conf_t wc = {
        .max_message = c->max_message,
        .ping_interval_ms = c->ping_interval_ms,
        .idle_ms = c->tunnel_idle_ms ? c->tunnel_idle_ms : req->config->timeouts.tunnel_idle_ms,
        .close_timeout_ms = c->close_timeout_ms,
    };
    ctx->wsp = pt_wsp_open(req, &wc, &wsp_io, ctx);
    if (ctx->wsp == NULL)
        fail_head(ctx, "request arena full");
    else
        pt_wsp_pump(ctx->wsp, ctx->call); /* plain TCP both ways: the sockets directly */
}

/* ---- upstream callbacks --------------------------------------------------- */

static size_t up_read_body(void *ud, char *buf, size_t max, bool *eof)
{
    proxy_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    if (ctx->wsp != NULL) {
        size_t w = pt_wsp_up_read(ctx->wsp, buf, max, eof);
        pt_handler_leave(req);
        return w;
    }
    size_t n = pt__req_body_read(req, buf, max, eof);
    if (pt_handler_gone(req)) {
        /* A request-body filter failed (its error answer is out): the
         * upstream must not see the body end as if it were complete. */
        *eof = false;
        n = 0;
        stop(ctx);
    }
    pt_handler_leave(req);
    return n;
}

/* The response head could not be passed on: stop the call, answer the failure. */
static void fail_head(proxy_ctx_t *ctx, const char *reason)
{
    pt_upcall_stop(&ctx->call);
    pt__resp_fail(ctx->req, PT_ERR_UPSTREAM, reason);
    pt_handler_finish(ctx->req);
}

static void up_on_head(void *ud, int status, const pt_header_t *h, size_t cnt)
{
    proxy_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    note_upstream(ctx);
    req->resp_status = status;
    pt_headers_init(&req->resp_headers, req->arena);
    req->resp_content_length = -1;
    if (status == 101) { /* the call only accepts one when we offered an upgrade */
        const char *why = accept_upgrade(ctx, h, cnt);
        if (why != NULL) {
            req->resp_status = 0;
            pt_headers_init(&req->resp_headers, req->arena);
            fail_head(ctx, why);
        } else if (pt_handler_gone(req)) {
            fail_head(ctx, "tunnel head not delivered");
        } else if (ctx->is_ws) {
            open_ws_relay(ctx);
        }
        pt_handler_leave(req);
        return;
    }
    pt_headers_t view = {(pt_header_t *)h, cnt, cnt, NULL};
    conn_tokens_t conn;
    conn_tokens_init(&conn, &view);
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t n = h[i].name;
        if (pt_str_eq(n, PT_STR("content-length"))) {
            /* Framing is the codec's: it frames with resp_content_length. */
            unsigned long long cl;
            if (pt_str_to_u64(h[i].value, ~0ull >> 1, &cl) == 0)
                req->resp_content_length = (int64_t)cl;
            continue;
        }
        if (pt_header_is_hop_by_hop(n) || pt_str_eq(n, PT_STR("transfer-encoding")) ||
            conn_tokens_name(&conn, n))
            continue;
        if (pt__headers_push(&req->resp_headers, n, h[i].value) != 0) {
            pt_headers_init(&req->resp_headers, req->arena); /* nothing pointing into the call's buffer */
            fail_head(ctx, "upstream response headers too large");
            pt_handler_leave(req);
            return;
        }
    }
    /* The fields point into the call's buffer (the connection's, reused by
     * the next exchange): copied into one arena block, names lowercased. */
    if (pt__headers_own(&req->resp_headers, 0) != 0) {
        pt_headers_init(&req->resp_headers, req->arena); /* nothing pointing into the call's buffer */
        fail_head(ctx, "upstream response headers too large");
        pt_handler_leave(req);
        return;
    }
    if (status == 204 || status == 304)
        req->resp_content_length = -1;
    pt__resp_head(req);
    if (pt_handler_gone(req)) /* a response-header filter failed, or the client left */
        fail_head(ctx, "response head not delivered");
    pt_handler_leave(req);
}

static bool up_on_data(void *ud, const char *data, size_t len)
{
    proxy_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    if (ctx->wsp != NULL) {
        bool go = pt_wsp_up_data(ctx->wsp, data, len);
        pt_handler_leave(req);
        return go;
    }
    pt__resp_body(req, data, len, false);
    bool more;
    if (pt_handler_gone(req)) { /* a body filter failed, or the client left */
        stop(ctx);
        more = false;
    } else {
        more = !pt__resp_blocked(req);
    }
    pt_handler_leave(req);
    return more;
}

static void up_on_done(void *ud, int st, const char *reason, const pt_header_t *t, size_t tcnt)
{
    proxy_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    note_upstream(ctx);
    ctx->call = NULL; /* freed by the call machinery after we return */
    if (ctx->wsp != NULL) {
        /* the upstream connection ended: its leg sees the end of its input */
        pt_wsp_up_end(ctx->wsp);
        pt_handler_leave(req);
        return;
    }
    if (st == 0) {
        for (size_t i = 0; i < tcnt; i++)
            if (!pt_header_is_hop_by_hop(t[i].name))
                pt_headers_add(&req->resp_trailers, t[i].name, t[i].value);
        pt__resp_body(req, NULL, 0, true);
    } else {
        pt_observe_upstream_error(req->worker, ctx->up.cluster, st);
        /* JSON error if nothing was sent; else an abrupt end so the client
         * sees the truncation (UP-4). */
        pt__resp_fail(req, st, reason);
    }
    pt_handler_finish(req);
    pt_handler_leave(req);
}

static void on_client_abort(void *data)
{
    proxy_ctx_t *ctx = data;
    if (ctx->wsp != NULL)
        pt_wsp_abort(ctx->wsp);
    stop(ctx);
}

/* ---- the handler ------------------------------------------------------------ */

static void proxy_start(pt_req_t *req, const void *vconf)
{
    const proxy_conf_t *conf = vconf;
    proxy_ctx_t *ctx = pt_arena_zalloc(req->arena, sizeof(*ctx));
    if (ctx == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    ctx->req = req;
    ctx->conf = conf;
    ctx->t0_ns = pt_now_ns();
    req->handler_ctx = ctx;
    pt_handler_enter(ctx->req);

    uint32_t mb = req->method_bit ? req->method_bit : pt_method_bit(req->method);
    if (req->upgrade.len != 0 && (req->upgrade = pick_upgrade(conf, req->upgrade)).len == 0) {
        /* Refused, never forwarded, even as a plain request: a client that
         * asked for a tunnel must not get a half-understood exchange. */
        pt__resp_fail(req, PT_ERR_FORBIDDEN, "protocol upgrade not allowed on this route");
        pt_handler_finish(ctx->req);
        pt_handler_leave(ctx->req);
        return;
    }
    if ((mb & PT_METHOD_CONNECT) && req->upgrade.len == 0) {
        /* a tunnel to anywhere, not a request: never forwarded as one */
        pt__resp_fail(req, PT_ERR_METHOD, "CONNECT is not proxied");
        pt_handler_finish(ctx->req);
        pt_handler_leave(ctx->req);
        return;
    }
    if (conf->websocket && req->upgrade.len == 0 && req->version == 10 &&
        pt_headers_has_token(&req->headers, PT_STR("upgrade"), PT_STR("websocket"))) {
        /* HTTP/1.0 has no Upgrade: never a half-understood handshake (WS-1) */
        pt__resp_fail(req, PT_ERR_INVALID, "websocket handshake needs HTTP/1.1");
        pt_handler_finish(ctx->req);
        pt_handler_leave(ctx->req);
        return;
    }
    if (conf->websocket && pt_str_ieq(req->upgrade, PT_STR("websocket"))) {
        /* Checked here, before anything goes upstream: version, key, Origin.
         * (`upgrade: [websocket]` without `websocket: true` stays a raw tunnel.) */
        ctx->is_ws = true;
        if (pt_ws_hs_check(req, &conf->web_origins, &ctx->ws_hs) != 0) {
            pt_handler_finish(ctx->req);
            pt_handler_leave(ctx->req);
            return;
        }
    }
    if (via_hops(&req->headers) >= PROXY_MAX_HOPS) {
        loop_detected(req);
        pt_handler_finish(ctx->req);
        pt_handler_leave(ctx->req);
        return;
    }

    pt_str_t path = req->path.len ? req->path : PT_STR("/");
    if (req->query.len > 0) {
        char *p = pt_arena_printf(req->arena, "%.*s?%.*s", (int)path.len, path.base,
                                  (int)req->query.len, req->query.base);
        if (p == NULL)
            goto too_large;
        path = pt_str_c(p);
    }
    if (build_upstream_headers(ctx) != 0 || pt_req_on_abort(req, on_client_abort, ctx) != 0)
        goto too_large;

    bool needs_body_framing = (mb & (PT_METHOD_POST | PT_METHOD_PUT | PT_METHOD_PATCH)) != 0;
    pt_upcall_req_t *up = &ctx->up;
    up->cluster = conf->split != NULL ? pt_split_pick(conf->split, req) : conf->cluster;
    up->method = req->method;
    up->path = path;
    up->authority = conf->preserve_host ? req->authority : PT_STR_NULL;
    up->headers = &ctx->up_headers;
    up->has_body = req->expect_body;
    up->content_length = req->expect_body ? req->content_length : (needs_body_framing ? 0 : -1);
    up->timeout_ms = conf->timeout_ms ? conf->timeout_ms
                                      : (req->route.route != NULL ? req->route.route->timeout_ms : 0);
    up->idempotent = (mb & (PT_METHOD_GET | PT_METHOD_HEAD | PT_METHOD_OPTIONS | PT_METHOD_TRACE |
                            PT_METHOD_PUT | PT_METHOD_DELETE)) != 0;
    up->hash_key = pt_upcall_hash_key(up->cluster, req->client_addr, &req->headers);
    up->retry = req->route.route != NULL ? req->route.route->retry : NULL;
    up->trace = req->trace;
    if (req->upgrade.len != 0) {
        const char *why = "invalid upgrade request";
        int st = prepare_upgrade(ctx, &why);
        if (st != 0) {
            pt__resp_fail(req, st, why);
            pt_handler_finish(ctx->req);
            pt_handler_leave(ctx->req);
            return;
        }
        up->upgrade = req->upgrade;
        up->has_body = false; /* the body, if any, is the tunnel's (HTTP/2 DATA) */
        up->content_length = -1;
        up->idempotent = false;
    }

    static const pt_upcall_cbs_t cbs = {
        .read_body = up_read_body,
        .on_head = up_on_head,
        .on_data = up_on_data,
        .on_done = up_on_done,
    };
    int rc = pt_upcall_start(req->worker, up, &cbs, ctx, &ctx->call);
    if (rc != 0) {
        ctx->call = NULL;
        pt_observe_upstream_error(req->worker, up->cluster, rc);
        pt__resp_fail(req, rc, rc == PT_ERR_UNAVAILABLE ? "no upstream endpoint available"
                                                        : "upstream call failed to start");
        pt_handler_finish(ctx->req);
    }
    pt_handler_leave(ctx->req);
    return;

too_large:
    pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request too large to forward");
    pt_handler_finish(ctx->req);
    pt_handler_leave(ctx->req);
}

static void proxy_on_body(pt_req_t *req)
{
    proxy_ctx_t *ctx = req->handler_ctx;
    if (ctx != NULL && !pt_handler_finished(ctx->req) && ctx->wsp != NULL) {
        pt_handler_enter(ctx->req);
        pt_wsp_client_readable(ctx->wsp);
        pt_handler_leave(ctx->req);
        return;
    }
    if (ctx == NULL || pt_handler_finished(ctx->req) || ctx->call == NULL)
        return;
    pt_handler_enter(ctx->req);
    pt_upcall_body_ready(ctx->call);
    pt_handler_leave(ctx->req);
}

static void proxy_on_writable(pt_req_t *req)
{
    proxy_ctx_t *ctx = req->handler_ctx;
    if (ctx != NULL && !pt_handler_finished(ctx->req) && ctx->wsp != NULL) {
        pt_handler_enter(ctx->req);
        pt_wsp_client_writable(ctx->wsp);
        pt_handler_leave(ctx->req);
        return;
    }
    if (ctx == NULL || pt_handler_finished(ctx->req) || ctx->call == NULL)
        return;
    pt_handler_enter(ctx->req);
    pt_upcall_resume(ctx->call);
    pt_handler_leave(ctx->req);
}

const pt_handler_def_t pt_handler_proxy = {
    .name = "proxy",
    .conf_size = sizeof(proxy_conf_t),
    .fields = NULL, /* parse_conf reads the map itself (it also accepts `proxy: NAME`) */
    .parse_conf = proxy_parse_conf,
    .check_conf = proxy_check_conf,
    .conf_dispose = NULL,
    .start = proxy_start,
    .on_body = proxy_on_body,
    .on_writable = proxy_on_writable,
    .tunnels = true,
};
