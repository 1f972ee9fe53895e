/*
 * grpc.c -- the `grpc` route handler: REST/JSON -> gRPC transcoding.
 *
 *   routes:
 *     - grpc:
 *         cluster: books
 *         services: [ bookstore.v1.Bookstore ]     # default: every loaded service
 *         metadata: { forward: [ authorization, x-request-id, "x-echo-*" ], prefix: "grpc-metadata-" }
 *         header_bindings: { x-tenant: tenant_id }
 *         stream_format: ndjson                    # json (default) | ndjson | sse
 *
 * start() dispatches on Content-Type (grpc.h): native gRPC and gRPC-Web go to
 * their own part; everything else is REST, handled here:
 *
 *   1. route: the google.api.http bindings of the loaded descriptors
 *      (pt_httprule_match): 404 / 405 + Allow / 400 for a bad path;
 *   2. body: 415 unless JSON (HttpBody bodies excepted: any content type,
 *      the raw bytes and the Content-Type become the HttpBody); 413 is the
 *      core's (route max_body), except for client streams, where max_body
 *      limits each NDJSON line (grpc_body_limit); client-streaming methods take the body as
 *      newline-delimited JSON messages, sent to the backend as they arrive,
 *      each one the body of its binding (a whole message for body "*", the
 *      body field's JSON otherwise) with the path variables, query
 *      parameters and header bindings merged into EVERY message (a stream of
 *      google.api.HttpBody takes the raw body instead, sent in pieces as it
 *      arrives, one message per read);
 *   3. request message: path variables + query + body + header bindings
 *      (pt_httprule_transcode_request): 400 with a google.rpc.Status carrying
 *      a BadRequest field violation per problem;
 *   4. the call (upstream/grpc.h: messages over the one upstream primitive,
 *      the nghttp2 client): unary methods get their answer in one delivery;
 *      metadata from the allowed headers, deadline from the route or
 *      grpc-timeout; a response message over max_message is refused at its
 *      length prefix (502, RESOURCE_EXHAUSTED);
 *   5. response: JSON of the message (or its response_body field; HttpBody
 *      raw), gRPC status -> HTTP status (pt_grpc_code_http), errors as
 *      google.rpc.Status JSON with the details of grpc-status-details-bin
 *      rendered through the pool; metadata back as `<prefix><key>` headers.
 *      Server streaming: JSON array / NDJSON / SSE chosen from Accept, each
 *      message written as it arrives, the head held until the first message
 *      so an early failure keeps its HTTP status, a later one becomes a
 *      final error element/event. A stream of google.api.HttpBody is written
 *      raw instead: the first message's content type, then each message's
 *      bytes, unframed; a later failure ends the response abruptly (no last
 *      chunk / RST_STREAM), since raw bytes have no room for an error. One
 *      upstream message is requested at a time and none while the client's
 *      output is over its buffer limit.
 *   6. a call Portico ended itself answers by its cause: 503 no endpoint
 *      could be reached, 502 connection or TLS failure (bad certificate or
 *      name: SECURITY-CASES UP-9), reset or bad message, 504 deadline.
 */
#include "handlers/grpc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/ascii.h"
#include "core/config.h"
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "http/h2mem.h"
#include "observe/observe.h"
#include "portico/status.h"
#include "portico/transcoder/wkt.h"
#include "upstream/call.h"

/* Bytes read from the request body queue per pt__req_body_read() call. */
#define BODY_CHUNK 16384

/* ---- config --------------------------------------------------------------- */

static const pt_conf_field_t grpc_fields[] = {
    {"cluster", PT_CONF_T_STR, offsetof(pt_grpc_conf_t, cluster_name), 0, 0, false, NULL},
    {"split", PT_CONF_T_NODE, offsetof(pt_grpc_conf_t, split_node), 0, 0, false, NULL},
    {"hash_key", PT_CONF_T_NODE, offsetof(pt_grpc_conf_t, hash_key_node), 0, 0, false, NULL},
    {"services", PT_CONF_T_STRLIST, offsetof(pt_grpc_conf_t, services), 0, 0, false, NULL},
    {"emit_defaults", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, emit_defaults), 0, 0, false, NULL},
    {"proto_names", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, proto_names), 0, 0, false, NULL},
    {"enums_as_ints", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, enums_as_ints), 0, 0, false, NULL},
    {"ignore_unknown", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, ignore_unknown), 0, 0, false,
     NULL},
    {"default_bindings", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, default_bindings), 0, 0, false,
     NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(pt_grpc_conf_t, timeout_ms), 1, 0, false, NULL},
    {"send_deadline", PT_CONF_T_BOOL, offsetof(pt_grpc_conf_t, send_deadline), 0, 0, false, NULL},
    {"metadata", PT_CONF_T_NODE, offsetof(pt_grpc_conf_t, metadata), 0, 0, false, NULL},
    {"header_bindings", PT_CONF_T_STRMAP, offsetof(pt_grpc_conf_t, header_bindings), 0, 0, false,
     NULL},
    {"stream_format", PT_CONF_T_STR, offsetof(pt_grpc_conf_t, stream_format), 0, 0, false, NULL},
    {"max_message", PT_CONF_T_SIZE, offsetof(pt_grpc_conf_t, max_message), 1, 0, false, NULL},
    {"web_origins", PT_CONF_T_STRLIST, offsetof(pt_grpc_conf_t, web_origins), 0, 0, false, NULL},
    {"websocket", PT_CONF_T_NODE, offsetof(pt_grpc_conf_t, websocket), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* `websocket:` -- the bridge's limits (docs/configuration.md, ws_bridge.c). */
static const pt_conf_field_t ws_fields[] = {
    {"max_message", PT_CONF_T_SIZE, offsetof(pt_grpc_ws_conf_t, max_message), 1, 1ull << 32, false,
     NULL},
    {"ping_interval", PT_CONF_T_DURATION, offsetof(pt_grpc_ws_conf_t, ping_interval_ms), 100,
     86400000, false, NULL},
    {"tunnel_idle", PT_CONF_T_DURATION, offsetof(pt_grpc_ws_conf_t, tunnel_idle_ms), 1, 86400000,
     false, NULL},
    {"close_timeout", PT_CONF_T_DURATION, offsetof(pt_grpc_ws_conf_t, close_timeout_ms), 1, 600000,
     false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(pt_grpc_ws_conf_t, timeout_ms), 1, 604800000, false,
     NULL},
    PT_CONF_FIELDS_END,
};

typedef struct md_raw {
    pt_conf_strlist_t forward;
    const char *prefix;
} md_raw_t;

static const pt_conf_field_t md_fields[] = {
    {"forward", PT_CONF_T_STRLIST, offsetof(md_raw_t, forward), 0, 0, false, NULL},
    {"prefix", PT_CONF_T_STR, offsetof(md_raw_t, prefix), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static char *lower_dup(pt_conf_cx_t *cx, const char *s)
{
    char *d = pt_conf_strdup(cx, s, strlen(s));
    for (char *p = d; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

static int grpc_parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    pt_grpc_conf_t *conf = vconf;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "grpc: expected a map like { cluster: NAME }");
    if (pt_split_parse(cx, "grpc", conf->split_node, conf->hash_key_node,
                       conf->cluster_name != NULL, &conf->split) != 0)
        return PT_ERR_INVALID;
    /* fields were parsed by the table (def->fields); defaults for what was not given */
    conf->md_prefix = "grpc-metadata-";
    static const char *const def_forward[] = {"authorization", "x-request-id"};
    conf->md_forward = (const char **)def_forward;
    conf->md_forward_cnt = 2;
    if (conf->metadata != NULL) {
        md_raw_t raw = {0};
        if (conf->metadata->kind != PT_CONF_MAP)
            return pt_conf_error(cx, conf->metadata,
                                 "metadata: expected a map { forward: [...], prefix: ... }");
        if (pt_conf_parse_fields(cx, conf->metadata, md_fields, &raw) != 0)
            return PT_ERR_INVALID;
        const pt_conf_node_t *fn = pt_conf_map_get(conf->metadata, "forward");
        if (fn != NULL) {
            conf->md_forward = pt_conf_alloc(cx, (raw.forward.cnt + 1) * sizeof(char *));
            conf->md_forward_cnt = 0;
            for (size_t i = 0; i < raw.forward.cnt; i++) {
                const char *n = lower_dup(cx, raw.forward.v[i]);
                size_t len = strlen(n);
                bool star = len > 0 && n[len - 1] == '*';
                pt_str_t bare = {n, star ? len - 1 : len};
                const pt_conf_node_t *at = fn->kind == PT_CONF_SEQ ? fn->items[i] : fn;
                if (bare.len == 0 || !pt_header_name_valid(bare, true) ||
                    memchr(bare.base, '*', bare.len) != NULL) {
                    pt_conf_error(cx, at, "metadata.forward: bad header name '%s'", n);
                    continue;
                }
                if (pt__grpc_md_reserved(n)) {
                    pt_conf_error(cx, at,
                                  "metadata.forward: '%s' is reserved (gRPC or HTTP framing)", n);
                    continue;
                }
                conf->md_forward[conf->md_forward_cnt++] = n;
            }
        }
        if (raw.prefix != NULL) {
            pt_str_t p = pt_str_c(raw.prefix);
            if (p.len != 0 && !pt_header_name_valid(p, true))
                pt_conf_error(cx, pt_conf_map_get(conf->metadata, "prefix"),
                              "metadata.prefix: '%s' is not a valid header name prefix",
                              raw.prefix);
            conf->md_prefix = lower_dup(cx, raw.prefix);
        }
    }
    for (size_t i = 0; i < conf->header_bindings.cnt; i++) {
        pt_conf_kv_t *kv = &conf->header_bindings.v[i];
        const pt_conf_node_t *hb = pt_conf_map_get(node, "header_bindings");
        if (!pt_header_name_valid(pt_str_c(kv->key), true))
            pt_conf_error(cx, hb, "header_bindings: bad header name '%s'", kv->key);
        if (kv->value[0] == '\0' || strspn(kv->value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO"
                                                      "PQRSTUVWXYZ0123456789_.") !=
                                        strlen(kv->value))
            pt_conf_error(cx, hb, "header_bindings: '%s' is not a field path", kv->value);
        kv->key = lower_dup(cx, kv->key);
    }
    if (conf->websocket != NULL) {
        if (conf->websocket->kind != PT_CONF_MAP)
            pt_conf_error(cx, conf->websocket,
                          "websocket: expected a map like { max_message: 1m, ping_interval: 30s }");
        else
            pt_conf_parse_fields(cx, conf->websocket, ws_fields, &conf->ws);
    }
    if (conf->ws.max_message == 0)
        conf->ws.max_message = 1u << 20;
    if (conf->ws.close_timeout_ms == 0)
        conf->ws.close_timeout_ms = 5000;
    if (conf->ws.timeout_ms == 0)
        conf->ws.timeout_ms = 86400000;
    conf->fmt = PT_GRPC_FMT_JSON;
    if (conf->stream_format != NULL) {
        if (strcmp(conf->stream_format, "json") == 0)
            conf->fmt = PT_GRPC_FMT_JSON;
        else if (strcmp(conf->stream_format, "ndjson") == 0)
            conf->fmt = PT_GRPC_FMT_NDJSON;
        else if (strcmp(conf->stream_format, "sse") == 0)
            conf->fmt = PT_GRPC_FMT_SSE;
        else
            pt_conf_error(cx, pt_conf_map_get(node, "stream_format"),
                          "stream_format: expected json, ndjson or sse, got '%s'",
                          conf->stream_format);
    }
    conf->jopts.emit_defaults = conf->emit_defaults;
    conf->jopts.proto_names = conf->proto_names;
    conf->jopts.enums_as_ints = conf->enums_as_ints;
    conf->jopts.ignore_unknown = conf->ignore_unknown;
    return pt_conf_error_count(cx) == 0 ? 0 : PT_ERR_INVALID;
}

static int grpc_check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf,
                           const pt_config_t *config)
{
    pt_grpc_conf_t *conf = vconf;
    const pt_conf_node_t *at = pt_conf_map_get(node, "cluster");
    if (conf->split != NULL) {
        if (pt_split_resolve(cx, "grpc", conf->split, config, PT_PROTO_GRPC, &conf->cluster) != 0)
            return PT_ERR_INVALID;
    } else if (conf->cluster_name == NULL) {
        return pt_conf_error(cx, node, "grpc: `cluster` (or `split`) is required");
    } else {
        conf->cluster = pt_config_cluster(config, conf->cluster_name);
        if (conf->cluster == NULL)
            return pt_conf_error(cx, at, "grpc: unknown cluster '%s'", conf->cluster_name);
        if (conf->cluster->protocol != PT_PROTO_GRPC)
            return pt_conf_error(cx, at, "grpc: cluster '%s' is not a grpc cluster (protocol: grpc)",
                                 conf->cluster_name);
    }
    conf->pool = config->descpool;
    if (conf->pool == NULL)
        return pt_conf_error(cx, node,
                             "grpc: no descriptors loaded (add a top-level `descriptors: [ "
                             "api.pb ]`)");
    pt_httprule_opts_t ro = {0};
    ro.services = conf->services.cnt != 0 ? conf->services.v : NULL;
    ro.service_cnt = conf->services.cnt;
    ro.add_default_bindings = conf->default_bindings;
    pt_xerrs_t *errs = calloc(1, sizeof(*errs));
    if (errs == NULL)
        return pt_conf_error(cx, node, "grpc: out of memory");
    int rc = pt_httprule_table_new(conf->pool, &ro, &conf->table, errs);
    if (rc != 0) {
        const pt_conf_node_t *sn = pt_conf_map_get(node, "services");
        for (size_t i = 0; i < errs->cnt; i++) {
            char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
            pt_xerr_format(&errs->items[i], msg, sizeof(msg));
            pt_conf_error(cx, rc == PT_XERR_NOT_FOUND && sn != NULL ? sn : node, "grpc: %s", msg);
        }
        if (errs->cnt == 0)
            pt_conf_error(cx, node, "grpc: cannot build the HTTP bindings (%s)", pt_xerr_name(rc));
        conf->table = NULL;
    }
    free(errs);
    return rc == 0 ? 0 : PT_ERR_INVALID;
}

static void grpc_conf_dispose(void *vconf)
{
    pt_grpc_conf_t *conf = vconf;
    pt_httprule_table_free(conf->table);
    conf->table = NULL;
}

/* ---- per-request state ---------------------------------------------------------- */

typedef struct rest_ctx {
    pt_grpc_ctx_base_t base;
    pt_req_t *req;
    const pt_grpc_conf_t *conf;
    const pt_httpbinding_t *binding;
    const pt_methoddesc_t *method;
    pt_httprule_match_t match;
    pt_grpc_call_t *call;
    pt_xbuf_t in;            /* request body (unary) or NDJSON line buffer (client streaming) */
    pt_xbuf_t pb;            /* request message */
    pt_xbuf_t out;           /* response JSON */
    pt_xbuf_t frame;         /* one streamed element with its framing */
    pt_str_t out_type;       /* content type of `out` */
    pt_grpc_fmt_t fmt;
    pt_headers_t up_headers; /* response metadata, as headers, until the head goes out */
    uint64_t t0_ns;
    size_t msgs_out;         /* streamed messages written */
    size_t lines_in;         /* NDJSON request messages sent */
    bool stream_req, stream_resp;
    bool got_message;        /* the single response message is in `out` */
    bool bad_response;       /* a response message did not transcode */
    bool want_recv;          /* the next message waits for on_writable */
    bool body_eof;           /* all of the request body was read */
    bool send_busy;
    bool closed;             /* half-close sent */
    bool call_done;
} rest_ctx_t;

static void stop_call(rest_ctx_t *ctx)
{
    pt_grpc_call_stop(&ctx->call);
}

static void ctx_cleanup(void *data)
{
    rest_ctx_t *ctx = data;
    stop_call(ctx);
    pt_xbuf_dispose(&ctx->in);
    pt_xbuf_dispose(&ctx->pb);
    pt_xbuf_dispose(&ctx->out);
    pt_xbuf_dispose(&ctx->frame);
}

static void on_client_abort(void *data)
{
    rest_ctx_t *ctx = data;
    stop_call(ctx);
    pt_handler_finish(ctx->req);
}

/* ---- answers ------------------------------------------------------------------ */

/* Sends a complete response; `body` is copied by the codec. */
static void reply(rest_ctx_t *ctx, int http, pt_str_t type, const void *body, size_t len)
{
    pt_req_t *req = ctx->req;
    req->resp_status = http;
    req->resp_content_length = (int64_t)len;
    /* `type` is a literal or in req->arena (raw_type): not copied again */
    pt_headers_remove(&req->resp_headers, PT_STR("content-type"));
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), type);
    pt__resp_head(req);
    pt__resp_body(req, body, len, true);
}

/* A google.rpc.Status error made by Portico itself (no upstream status). */
static void reply_status(rest_ctx_t *ctx, int http, int code, const char *msg,
                         const pt_xerrs_t *errs)
{
    pt_req_t *req = ctx->req;
    pt_xbuf_reset(&ctx->out);
    if (pt_httprule_status_json(code, msg, errs, &ctx->out) != 0) {
        pt__resp_fail(req, PT_ERR_NOMEM, "cannot render the error");
        return;
    }
    if (http >= 500 && req->fail_status == 0) {
        req->fail_status = http == 504 ? PT_ERR_TIMEOUT
                           : http == 503 ? PT_ERR_UNAVAILABLE
                           : http == 502 ? PT_ERR_UPSTREAM : PT_ERR_INTERNAL;
        req->fail_reason = msg;
    }
    reply(ctx, http, PT_STR("application/json"), ctx->out.data, ctx->out.len);
}

/* The JSON of an upstream failure (grpc.h). */
int pt__grpc_status_json(const pt_grpc_conf_t *conf, int code, pt_str_t details,
                         const uint8_t *bin, size_t bin_len, pt_xbuf_t *out)
{
    const pt_descpool_t *pool = conf->pool;
    if (bin != NULL) {
        const pt_msgdesc_t *st = pt_descpool_message(pool, "google.rpc.Status", 17);
        pt_xerr_t xe;
        if (st != NULL && pt_pb_to_json(pool, st, bin, bin_len, NULL, out, &xe) == 0)
            return 0;
    }
    char msg[1024];
    size_t n = details.len < sizeof(msg) - 1 ? details.len : sizeof(msg) - 1;
    memcpy(msg, details.base, n);
    msg[n] = '\0';
    return pt_httprule_status_json(code, n != 0 ? msg : pt_grpc_code_name(code), NULL, out);
}

/* "upstream grpc-status 14: <the backend's message>" for the access log (arena). */
const char *pt__grpc_status_log(pt_req_t *req, const pt_grpc_status_t *st)
{
    const char *s = pt_arena_printf(req->arena, "upstream grpc-status %d: %.*s", st->code,
                                    (int)(st->details.len > 512 ? 512 : st->details.len),
                                    st->details.base != NULL ? st->details.base : "");
    return s != NULL ? s : "upstream gRPC error status";
}

/* Response metadata -> `<prefix><key>` headers (binary values base64). */
static void add_md_headers(rest_ctx_t *ctx, pt_headers_t *dst, const pt_header_t *md, size_t cnt)
{
    pt_req_t *req = ctx->req;
    pt_str_t prefix = pt_str_c(ctx->conf->md_prefix);
    for (size_t i = 0; i < cnt; i++) {
        pt_str_t k = md[i].name, v = md[i].value;
        if (k.len == 0 || k.base[0] == ':' || pt_str_has_prefix(k, PT_STR("grpc-")) ||
            pt_str_eq(k, PT_STR("content-type")) || pt_str_eq(k, PT_STR("te")))
            continue;
        char *name = pt_arena_alloc(req->arena, prefix.len + k.len);
        if (name == NULL)
            return;
        if (prefix.len != 0)
            memcpy(name, prefix.base, prefix.len);
        if (!pt_ascii_has_upper(k)) { /* HTTP/2 names are lowercase: one copy */
            memcpy(name + prefix.len, k.base, k.len);
        } else { /* ASCII lowercase, as pt_headers_add() stores names */
            for (size_t j = 0; j < k.len; j++) {
                char ch = k.base[j];
                name[prefix.len + j] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
            }
        }
        pt_str_t n = {name, prefix.len + k.len};
        if (pt_str_has_isuffix(k, PT_STR("-bin"))) {
            char *b = pt_arena_alloc(req->arena, PT_BASE64_ENCODED_LEN(v.len) + 1);
            if (b == NULL)
                return;
            v = (pt_str_t){b, pt_base64_encode_to(b, (const uint8_t *)v.base, v.len)};
            pt_headers_add_nocopy(dst, n, v);
        } else if (pt_header_value_valid(v)) {
            /* not copied again: upstream/grpc_call.c copied the metadata into this
             * request's arena (the call's arena is req->arena, start_call) */
            pt_headers_add_nocopy(dst, n, v);
        }
    }
}

static void send_error(rest_ctx_t *ctx, int code, pt_str_t details, const uint8_t *bin,
                       size_t bin_len)
{
    pt_req_t *req = ctx->req;
    pt_xbuf_reset(&ctx->out);
    if (pt__grpc_status_json(ctx->conf, code, details, bin, bin_len, &ctx->out) != 0) {
        pt__resp_fail(req, PT_ERR_INTERNAL, "cannot render the upstream status");
        return;
    }
    int http = pt_grpc_code_http(code);
    if (http >= 500 && req->fail_status == 0) {
        req->fail_status = http == 504 ? PT_ERR_TIMEOUT
                           : http == 503 ? PT_ERR_UNAVAILABLE : PT_ERR_UPSTREAM;
        if (req->fail_reason == NULL)
            req->fail_reason = "upstream gRPC error status";
    }
    reply(ctx, http, PT_STR("application/json"), ctx->out.data, ctx->out.len);
}

/* ---- server streaming output ---------------------------------------------------- */

static pt_grpc_fmt_t pick_format(const pt_req_t *req, pt_grpc_fmt_t dflt)
{
    pt_str_t a = pt_headers_get(&req->headers, PT_STR("accept"));
    if (a.base == NULL)
        return dflt;
    /* the first type mentioned wins; anything else keeps the route's default */
    for (size_t i = 0; i < a.len; i++) {
        pt_str_t rest = {a.base + i, a.len - i};
        if (rest.len >= 20 && strncasecmp(rest.base, "application/x-ndjson", 20) == 0)
            return PT_GRPC_FMT_NDJSON;
        if (rest.len >= 17 && strncasecmp(rest.base, "text/event-stream", 17) == 0)
            return PT_GRPC_FMT_SSE;
        if (rest.len >= 16 && strncasecmp(rest.base, "application/json", 16) == 0)
            return PT_GRPC_FMT_JSON;
    }
    return dflt;
}

static pt_str_t fmt_type(pt_grpc_fmt_t f)
{
    return f == PT_GRPC_FMT_NDJSON ? PT_STR("application/x-ndjson")
           : f == PT_GRPC_FMT_SSE  ? PT_STR("text/event-stream")
                                   : PT_STR("application/json");
}

static void stream_head(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    req->resp_status = 200;
    req->resp_content_length = -1;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), fmt_type(ctx->fmt));
    if (ctx->fmt == PT_GRPC_FMT_SSE)
        pt_headers_set(&req->resp_headers, PT_STR("cache-control"), PT_STR("no-cache"));
    for (size_t i = 0; i < ctx->up_headers.cnt; i++)
        pt_headers_add_nocopy(&req->resp_headers, ctx->up_headers.v[i].name,
                              ctx->up_headers.v[i].value);
    pt__resp_head(req);
}

/* Writes one streamed element (a message's JSON, or an error Status as `{"error":...}`). */
static void stream_write(rest_ctx_t *ctx, const uint8_t *json, size_t len, bool is_error, bool end)
{
    pt_req_t *req = ctx->req;
    pt_xbuf_t *b = &ctx->frame;
    pt_xbuf_reset(b);
    int rc = 0;
    switch (ctx->fmt) {
    case PT_GRPC_FMT_JSON:
        rc |= pt_xbuf_puts(b, ctx->msgs_out == 0 ? "[" : ",");
        if (is_error)
            rc |= pt_xbuf_puts(b, "{\"error\":");
        rc |= pt_xbuf_append(b, json, len);
        if (is_error)
            rc |= pt_xbuf_puts(b, "}");
        if (end)
            rc |= pt_xbuf_puts(b, "]");
        break;
    case PT_GRPC_FMT_NDJSON:
        if (is_error)
            rc |= pt_xbuf_puts(b, "{\"error\":");
        rc |= pt_xbuf_append(b, json, len);
        rc |= pt_xbuf_puts(b, is_error ? "}\n" : "\n");
        break;
    case PT_GRPC_FMT_SSE:
        rc |= pt_xbuf_puts(b, is_error ? "event: error\ndata: " : "data: ");
        rc |= pt_xbuf_append(b, json, len);
        rc |= pt_xbuf_puts(b, "\n\n");
        break;
    }
    ctx->msgs_out++;
    if (rc != 0)
        pt__resp_fail(req, PT_ERR_NOMEM, "stream buffer");
    else
        pt__resp_body(req, b->data, b->len, end);
}

/* The response is raw bytes (google.api.HttpBody), streamed or not. */
static bool raw_body(const rest_ctx_t *ctx)
{
    return ctx->binding->response_is_httpbody;
}

/*
 * The Content-Type of an HttpBody answer: the backend's, unless it is empty
 * or could not be a header value (it comes from the backend: no CR/LF may
 * reach the client's response head).
 */
static pt_str_t raw_type(rest_ctx_t *ctx, pt_httprule_str_t ct)
{
    pt_str_t t = {ct.p, ct.len};
    if (t.len == 0 || t.len > 256 || !pt_header_value_valid(t))
        return PT_STR("application/octet-stream");
    t = pt_arena_strdup(ctx->req->arena, t);
    return t.base != NULL ? t : PT_STR("application/octet-stream");
}

/* The head of a raw (HttpBody) stream. */
static void raw_stream_head(rest_ctx_t *ctx, pt_str_t type)
{
    pt_req_t *req = ctx->req;
    req->resp_status = 200;
    req->resp_content_length = -1;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), type);
    for (size_t i = 0; i < ctx->up_headers.cnt; i++)
        pt_headers_add_nocopy(&req->resp_headers, ctx->up_headers.v[i].name,
                              ctx->up_headers.v[i].value);
    pt__resp_head(req);
}

/*
 * A stream whose head is out failed: a final error element or event with the
 * google.rpc.Status `json`, or, for raw bytes, an abrupt end so the client
 * sees the truncation.
 */
static void stream_fail(rest_ctx_t *ctx, const uint8_t *json, size_t len)
{
    pt_req_t *req = ctx->req;
    if (raw_body(ctx)) {
        pt__resp_fail(req, PT_ERR_UPSTREAM, "upstream stream failed mid-body");
        return;
    }
    stream_write(ctx, json, len, true, ctx->fmt == PT_GRPC_FMT_JSON);
    if (ctx->fmt != PT_GRPC_FMT_JSON)
        pt__resp_body(req, NULL, 0, true);
}

static void stream_end(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    if (raw_body(ctx))
        pt__resp_body(req, NULL, 0, true);
    else if (ctx->fmt == PT_GRPC_FMT_JSON)
        pt__resp_body(req, ctx->msgs_out == 0 ? "[]" : "]", ctx->msgs_out == 0 ? 2 : 1, true);
    else
        pt__resp_body(req, NULL, 0, true);
}

/* ---- upstream callbacks -------------------------------------------------------- */

static void start_call(rest_ctx_t *ctx, bool unary_req);

static void up_on_headers(void *ud, const pt_header_t *md, size_t cnt)
{
    rest_ctx_t *ctx = ud;
    add_md_headers(ctx, &ctx->up_headers, md, cnt);
}

static void request_next(rest_ctx_t *ctx)
{
    if (ctx->call == NULL || pt_handler_gone(ctx->req))
        return;
    if (pt__resp_blocked(ctx->req)) {
        ctx->want_recv = true; /* on_writable resumes */
        return;
    }
    ctx->want_recv = false;
    pt_grpc_call_recv(ctx->call);
}

static void up_on_message(void *ud, const uint8_t *data, size_t len)
{
    rest_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    if (data == NULL || ctx->bad_response)
        return; /* end of stream: on_done follows */
    pt_handler_enter(req);
    pt_xbuf_t *out = &ctx->out;
    pt_xbuf_reset(out);
    pt_httprule_str_t ct = {0};
    pt_xerr_t xe;
    int rc = pt_httprule_transcode_response(ctx->conf->table, ctx->binding, data, len,
                                            &ctx->conf->jopts, out, &ct, &xe);
    if (rc != 0) {
        /* JP-7: the backend sent something that is not its declared message. */
        ctx->bad_response = true;
        req->fail_reason = "upstream sent an undecodable message";
        if (!ctx->stream_resp || !pt__resp_started(req)) {
            stop_call(ctx);
            reply_status(ctx, 502, PT_GRPC_INTERNAL, "upstream sent an invalid response message",
                         NULL);
        } else {
            static const char err[] =
                "{\"code\":13,\"message\":\"upstream sent an invalid response message\"}";
            stop_call(ctx);
            stream_fail(ctx, (const uint8_t *)err, sizeof(err) - 1);
        }
        pt_handler_finish(req);
        pt_handler_leave(req);
        return;
    }
    if (!ctx->stream_resp) {
        ctx->got_message = true;
        ctx->out_type = raw_body(ctx) ? raw_type(ctx, ct) : PT_STR("application/json");
        pt_handler_leave(req);
        return;
    }
    if (raw_body(ctx)) {
        /* HttpBody stream: the first message's type for all, bytes unframed */
        if (!pt__resp_started(req))
            raw_stream_head(ctx, raw_type(ctx, ct));
        if (!pt_handler_gone(req) && out->len != 0)
            pt__resp_body(req, out->data, out->len, false);
        ctx->msgs_out++;
    } else {
        if (!pt__resp_started(req))
            stream_head(ctx);
        if (!pt_handler_gone(req))
            stream_write(ctx, out->data, out->len, false, false);
    }
    if (pt_handler_gone(req)) {
        stop_call(ctx);
        pt_handler_finish(req);
    } else {
        request_next(ctx);
    }
    pt_handler_leave(req);
}

static void up_on_done(void *ud, const pt_grpc_status_t *st)
{
    rest_ctx_t *ctx = ud;
    pt_req_t *req = ctx->req;
    pt_handler_enter(req);
    ctx->call = NULL; /* freed by the upstream layer after we return */
    ctx->call_done = true;
    req->upstream_ns = pt_now_ns() - ctx->t0_ns;
    if (pt_handler_gone(req) || ctx->bad_response) {
        pt_handler_finish(req);
        pt_handler_leave(req);
        return;
    }
    int code = st->code;
    pt_str_t details;
    const uint8_t *bin;
    size_t bin_len;
    if (pt_grpc_status_public(st, &details, &bin, &bin_len) && st->local == 0)
        req->fail_reason = pt__grpc_status_log(req, st); /* the backend's words: log only */
    const pt_header_t *trailers = st->trailers;
    size_t cnt = st->trailer_cnt;
    if (st->local != 0 && pt_status_http(st->local) >= 502)
        pt_observe_upstream_error(req->worker, ctx->base.cluster, st->local);
    else if (code != PT_GRPC_OK && pt_grpc_code_http(code) >= 502)
        pt_observe_upstream_error(req->worker, ctx->base.cluster,
                                  code == PT_GRPC_DEADLINE_EXCEEDED ? PT_ERR_TIMEOUT
                                                                    : PT_ERR_UNAVAILABLE);
    if (st->local != 0 && !pt__resp_started(req)) {
        /* Portico ended the call (no endpoint, connection or TLS failure, deadline,
         * a bad or oversized message): 503 / 502 / 504 by that cause, the gRPC code
         * and the status's public message in the body; the reason ("upstream TLS
         * handshake failed") goes to the log only (issue 11). */
        req->fail_status = st->local;
        req->fail_reason = st->reason;
        reply_status(ctx, pt_status_http(st->local), code, pt_strerror(st->local), NULL);
    } else if (!pt__resp_started(req)) {
        /* Unary answer, or a stream that ended before its first message. */
        for (size_t i = 0; i < ctx->up_headers.cnt; i++)
            pt_headers_add_nocopy(&req->resp_headers, ctx->up_headers.v[i].name,
                                  ctx->up_headers.v[i].value);
        add_md_headers(ctx, &req->resp_headers, trailers, cnt);
        if (code != PT_GRPC_OK) {
            send_error(ctx, code, details, bin, bin_len);
        } else if (ctx->stream_resp) {
            req->resp_status = 200;
            req->resp_content_length = -1;
            pt_headers_set(&req->resp_headers, PT_STR("content-type"),
                           raw_body(ctx) ? PT_STR("application/octet-stream")
                                         : fmt_type(ctx->fmt));
            pt__resp_head(req);
            stream_end(ctx);
        } else if (!ctx->got_message) {
            reply_status(ctx, 502, PT_GRPC_INTERNAL, "upstream sent no response message", NULL);
        } else {
            reply(ctx, 200, ctx->out_type, ctx->out.data, ctx->out.len);
        }
    } else {
        /* Streaming, head out: trailers as HTTP trailers, errors as a last element. */
        add_md_headers(ctx, &req->resp_trailers, trailers, cnt);
        if (code != PT_GRPC_OK) {
            pt_xbuf_reset(&ctx->out);
            if (pt__grpc_status_json(ctx->conf, code, details, bin, bin_len, &ctx->out) != 0) {
                pt__resp_fail(req, PT_ERR_INTERNAL, "cannot render the upstream status");
            } else {
                if (req->fail_reason == NULL)
                    req->fail_reason = "upstream gRPC error mid-stream";
                stream_fail(ctx, ctx->out.data, ctx->out.len);
            }
        } else {
            stream_end(ctx);
        }
    }
    pt_handler_finish(req);
    pt_handler_leave(req);
}

/* ---- client streaming: NDJSON request body -> messages ---------------------------- */

static void pump_body(rest_ctx_t *ctx);

static void up_on_sent(void *ud, bool ok)
{
    rest_ctx_t *ctx = ud;
    pt_handler_enter(ctx->req);
    ctx->send_busy = false;
    if (ok && ctx->stream_req) /* unary requests were sent and closed by start_call */
        pump_body(ctx);
    pt_handler_leave(ctx->req);
}

static bool is_blank(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

/*
 * A request line cannot be sent: the call is over, the client hears why --
 * `http` with `msg` when no response was sent yet, else a last error element
 * (google.rpc.Status `code`, `element_msg`, `errs`).
 */
static void line_failed(rest_ctx_t *ctx, int http, int code, const char *msg,
                        const char *element_msg, pt_xerrs_t *errs)
{
    stop_call(ctx);
    pt_req_t *req = ctx->req;
    if (!pt__resp_started(req)) {
        reply_status(ctx, http, code, msg, errs);
    } else {
        pt_xbuf_t b;
        pt_xbuf_init(&b, NULL);
        if (pt_httprule_status_json(code, element_msg, errs, &b) == 0)
            stream_fail(ctx, b.data, b.len);
        else
            pt__resp_fail(req, PT_ERR_NOMEM, "cannot render the error");
        pt_xbuf_dispose(&b);
    }
    pt_handler_finish(req);
}

/* A request line did not convert. */
static void bad_line(rest_ctx_t *ctx, pt_xerrs_t *errs)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "request message %zu is invalid", ctx->lines_in + 1);
    line_failed(ctx, 400, PT_GRPC_INVALID_ARGUMENT, msg, NULL, errs);
}

/* A request line is over max_body (the per-message limit of a client stream). */
static void line_too_large(rest_ctx_t *ctx)
{
    static const char msg[] = "request message larger than the limit";
    ctx->req->fail_status = PT_ERR_LIMIT;
    ctx->req->fail_reason = "NDJSON request line over max_body";
    line_failed(ctx, 413, PT_GRPC_RESOURCE_EXHAUSTED, msg, msg, NULL);
}

/*
 * One request message of a client stream into ctx->pb: the NDJSON line is the
 * body of the binding (the whole message for body "*", the body field's JSON
 * otherwise), merged with the path variables, the query parameters and the
 * header bindings exactly as for a unary call -- so EVERY message carries
 * them (POST /v1/shelves/7/books:bulkCreate sets shelf 7 in each book's
 * request). The query is parsed again per message: it is short, and this
 * keeps one set of binding rules (conflicts, precedence, error paths).
 */
static int line_message(rest_ctx_t *ctx, const uint8_t *line, size_t len, pt_xerrs_t *errs)
{
    pt_req_t *req = ctx->req;
    pt_xbuf_reset(&ctx->pb);
    int rc = pt_httprule_transcode_request(ctx->conf->table, &ctx->match, line, len, NULL,
                                           req->query.base, req->query.len, &ctx->conf->jopts,
                                           &ctx->pb, errs);
    if (rc == 0)
        rc = pt__grpc_bind_headers(ctx->req, ctx->conf, ctx->method, &ctx->pb, errs);
    return rc;
}

/*
 * Before a client stream's call starts: the path variables, query parameters
 * and header bindings alone must make a valid message, so a bad `{shelf}` or
 * an unknown parameter is a 400 before the backend is called, even when the
 * body holds no message at all. The check uses a copy of the binding without
 * its body rule; each message's own conversion (line_message) still refuses
 * a query parameter naming a field that the body carries.
 */
static int check_stream_params(rest_ctx_t *ctx, pt_xerrs_t *errs)
{
    pt_req_t *req = ctx->req;
    pt_httpbinding_t nobody = *ctx->binding;
    nobody.body_kind = PT_HTTPBODY_NONE;
    nobody.request_is_httpbody = false;
    pt_httprule_match_t m = ctx->match;
    m.binding = &nobody;
    pt_xbuf_reset(&ctx->pb);
    int rc = pt_httprule_transcode_request(ctx->conf->table, &m, NULL, 0, NULL, req->query.base,
                                           req->query.len, &ctx->conf->jopts, &ctx->pb, errs);
    if (rc == 0)
        rc = pt__grpc_bind_headers(ctx->req, ctx->conf, ctx->method, &ctx->pb, errs);
    pt_xbuf_reset(&ctx->pb);
    return rc;
}

/* The request's Content-Type as a C string (arena), or NULL if absent or too long. */
static const char *content_type_z(rest_ctx_t *ctx)
{
    pt_str_t ct = pt_headers_get(&ctx->req->headers, PT_STR("content-type"));
    if (ct.base == NULL || ct.len > 255)
        return NULL;
    char *z = pt_arena_alloc(ctx->req->arena, ct.len + 1);
    if (z == NULL)
        return NULL;
    memcpy(z, ct.base, ct.len);
    z[ct.len] = '\0';
    return z;
}

/*
 * A client stream whose body field is a google.api.HttpBody (an upload in
 * pieces): the request body is not NDJSON but raw bytes, sent as they arrive,
 * each read (up to BODY_CHUNK bytes) one message carrying the Content-Type,
 * the path variables and query parameters.
 */
static void pump_raw(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    const char *ctz = content_type_z(ctx);
    while (ctx->call != NULL && !ctx->send_busy && !ctx->closed && !pt_handler_gone(req)) {
        char buf[BODY_CHUNK];
        bool eof = false;
        size_t n = pt__req_body_read(req, buf, sizeof(buf), &eof);
        if (pt_handler_gone(req)) /* a request-body filter failed and answered */
            return;
        if (n == 0 && !eof)
            return; /* on_body resumes */
        if (eof)
            ctx->body_eof = true;
        if (n == 0) { /* body over */
            ctx->closed = true;
            ctx->send_busy = true;
            if (pt_grpc_call_close(ctx->call) != 0)
                ctx->send_busy = false;
            return;
        }
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        pt_xbuf_reset(&ctx->pb);
        int rc = pt_httprule_transcode_request(ctx->conf->table, &ctx->match, (const uint8_t *)buf,
                                               n, ctz, req->query.base, req->query.len,
                                               &ctx->conf->jopts, &ctx->pb, &errs);
        if (rc == 0)
            rc = pt__grpc_bind_headers(ctx->req, ctx->conf, ctx->method, &ctx->pb, &errs);
        if (rc != 0) {
            bad_line(ctx, &errs);
            return;
        }
        ctx->lines_in++;
        ctx->send_busy = true;
        if (eof)
            ctx->closed = true;
        if (pt_grpc_call_send(ctx->call, ctx->pb.data, ctx->pb.len, eof) != 0) {
            ctx->send_busy = false;
            return;
        }
    }
}

/*
 * Sends the next complete line of the body as a message (one send at a
 * time), reading more body as needed; half-closes after the last one.
 */
static void pump_body(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    if (ctx->binding->request_is_httpbody) {
        pump_raw(ctx);
        return;
    }
    while (ctx->call != NULL && !ctx->send_busy && !ctx->closed && !pt_handler_gone(req)) {
        pt_xbuf_t *in = &ctx->in;
        uint8_t *nl = in->len != 0 ? memchr(in->data, '\n', in->len) : NULL;
        size_t line_len = nl != NULL ? (size_t)(nl - in->data) : in->len;
        if (nl == NULL && !ctx->body_eof) {
            /* `in` holds one partial line: read no more than the limit leaves
             * (in.limit is max_body + 1, room for the line's newline) */
            char buf[BODY_CHUNK];
            bool eof = false;
            size_t room = in->limit != 0 ? in->limit - in->len : sizeof(buf);
            if (room == 0) {
                line_too_large(ctx);
                return;
            }
            size_t n = pt__req_body_read(req, buf, room < sizeof(buf) ? room : sizeof(buf), &eof);
            if (pt_handler_gone(req)) /* a request-body filter failed and answered */
                break;
            if (n != 0 && pt_xbuf_append(in, buf, n) != 0) {
                line_too_large(ctx);
                return;
            }
            if (eof)
                ctx->body_eof = true;
            if (n == 0 && !eof)
                return; /* on_body resumes */
            continue;
        }
        if (nl == NULL && line_len == 0) { /* body over, nothing left */
            ctx->closed = true;
            ctx->send_busy = true;
            if (pt_grpc_call_close(ctx->call) != 0)
                ctx->send_busy = false;
            return;
        }
        size_t consumed = nl != NULL ? line_len + 1 : line_len;
        if (is_blank(in->data, line_len)) {
            memmove(in->data, in->data + consumed, in->len - consumed);
            in->len -= consumed;
            continue;
        }
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        int rc = line_message(ctx, in->data, line_len, &errs);
        if (rc != 0) {
            bad_line(ctx, &errs);
            return;
        }
        memmove(in->data, in->data + consumed, in->len - consumed);
        in->len -= consumed;
        ctx->lines_in++;
        bool last = ctx->body_eof && in->len == 0;
        ctx->send_busy = true;
        if (last)
            ctx->closed = true;
        static const uint8_t empty[1];
        if (pt_grpc_call_send(ctx->call, ctx->pb.len ? ctx->pb.data : empty, ctx->pb.len,
                                       last) != 0) {
            ctx->send_busy = false;
            return;
        }
    }
}

/* ---- unary request: whole body -> message -> call ---------------------------------- */

static bool json_type(pt_str_t ct)
{
    pt_str_t t = ct;
    const char *semi = memchr(t.base, ';', t.len);
    if (semi != NULL)
        t.len = (size_t)(semi - t.base);
    t = pt_str_trim_ows(t);
    return pt_str_ieq(t, PT_STR("application/json")) || pt_str_has_isuffix(t, PT_STR("+json")) ||
           pt_str_ieq(t, PT_STR("application/x-ndjson")) ||
           pt_str_ieq(t, PT_STR("application/jsonl"));
}

/* Appends the header bindings of the route (x-tenant -> tenant_id) to ctx->pb. */
int pt__grpc_bind_headers(pt_req_t *req, const pt_grpc_conf_t *conf,
                          const pt_methoddesc_t *method, pt_xbuf_t *pb, pt_xerrs_t *errs)
{
    if (conf->header_bindings.cnt == 0)
        return 0;
    pt_json_binding_t b[16];
    size_t n = 0;
    for (size_t i = 0; i < conf->header_bindings.cnt && n < 16; i++) {
        const pt_conf_kv_t *kv = &conf->header_bindings.v[i];
        pt_str_t v = pt_headers_get(&req->headers, pt_str_c(kv->key));
        if (v.base == NULL)
            continue;
        /* Only for methods whose request has that field (first path segment). */
        const char *dot = strchr(kv->value, '.');
        size_t seg = dot != NULL ? (size_t)(dot - kv->value) : strlen(kv->value);
        if (pt_msgdesc_field_by_name(method->input, kv->value, seg) == NULL)
            continue;
        b[n++] = (pt_json_binding_t){kv->value, strlen(kv->value), NULL, 0, v.base, v.len};
    }
    if (n == 0)
        return 0;
    return pt_json_to_pb_bind(conf->pool, method->input, NULL, NULL, 0, b, n, &conf->jopts,
                              pb, errs);
}

static const pt_grpc_call_cbs_t call_cbs = {
    .on_headers = up_on_headers,
    .on_message = up_on_message,
    .on_sent = up_on_sent,
    .on_done = up_on_done,
};

static void start_call(rest_ctx_t *ctx, bool unary_req)
{
    pt_req_t *req = ctx->req;
    pt_header_t *md = NULL;
    size_t md_cnt = 0;
    pt_str_t bad = {0};
    int mrc = pt__grpc_request_md(req, ctx->conf, &md, &md_cnt, &bad);
    if (mrc == PT_ERR_INVALID) {
        char *m = pt_arena_printf(req->arena, "header '%.*s' cannot be sent as gRPC metadata (a "
                                              "tab, control or non-ASCII byte in its value)",
                                  (int)(bad.len > 64 ? 64 : bad.len), bad.base);
        stop_call(ctx);
        req->fail_status = PT_ERR_INVALID;
        req->fail_reason = "request header not valid as gRPC metadata";
        reply_status(ctx, 400, PT_GRPC_INVALID_ARGUMENT, m != NULL ? m : "invalid metadata", NULL);
        pt_handler_finish(req);
        return;
    }
    if (mrc != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
        pt_handler_finish(req);
        return;
    }
    const char *full = ctx->method->full_name; /* "pkg.Svc.Method" -> "/pkg.Svc/Method" */
    size_t fl = strlen(full);
    char *path = pt_arena_alloc(req->arena, fl + 2);
    if (path == NULL) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
        pt_handler_finish(req);
        return;
    }
    path[0] = '/';
    memcpy(path + 1, full, fl);
    path[fl + 1] = '\0';
    char *dot = strrchr(path, '.');
    if (dot != NULL)
        *dot = '/';
    static const uint8_t empty[1];
    bool send_deadline = false;
    pt_grpc_call_req_t r = {
        .cluster = ctx->base.cluster,
        .arena = req->arena,
        .method = {path, fl + 1},
        .max_message = ctx->conf->max_message,
        .md = md,
        .md_cnt = md_cnt,
        .timeout_ms = pt__grpc_deadline_ms(req, ctx->conf, &send_deadline),
        .send_deadline = send_deadline,
        .msg = unary_req ? (ctx->pb.len ? ctx->pb.data : empty) : NULL,
        .msg_len = unary_req ? ctx->pb.len : 0,
        .close = unary_req,
        .unary = unary_req && !ctx->stream_resp,
        .hash_key = pt_upcall_hash_key(ctx->base.cluster, req->client_addr, &req->headers),
        .retry = req->route.route != NULL ? req->route.route->retry : NULL,
        .trace = req->trace,
    };
    ctx->t0_ns = pt_now_ns();
    int rc = pt_grpc_call_start(req->worker, &r, &call_cbs, ctx, &ctx->call);
    if (rc != 0) {
        ctx->call = NULL;
        reply_status(ctx, pt_status_http(rc), pt_status_grpc(rc),
                     rc == PT_ERR_UNAVAILABLE ? "no upstream available" : "upstream call failed",
                     NULL);
        pt_handler_finish(req);
        return;
    }
    const char *ep = pt_grpc_call_endpoint(ctx->call);
    if (ep != NULL) {
        req->upstream_addr = ep;
        req->upstream_cluster = ctx->base.cluster->name;
    }
    if (!r.unary)
        pt_grpc_call_recv(ctx->call);
    if (!unary_req)
        ctx->send_busy = true; /* the initial-metadata batch: on_sent follows */
    else
        ctx->closed = true;
}

/* The whole body is in ctx->in: build the message and call. */
static void body_complete(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    /* On the stack as in the streaming paths: the list is 16.5 KB, and in the
     * arena it took a malloc'd chunk of its own plus the next block, per call. */
    pt_xerrs_t errs_buf, *errs = &errs_buf;
    pt_xerrs_clear(errs);
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    char ctz[256];
    const char *ctp = NULL;
    if (ct.base != NULL && ct.len < sizeof(ctz)) {
        memcpy(ctz, ct.base, ct.len);
        ctz[ct.len] = '\0';
        ctp = ctz;
    }
    const uint8_t *body = ctx->in.len != 0 ? ctx->in.data : NULL;
    int rc = pt_httprule_transcode_request(ctx->conf->table, &ctx->match, body, ctx->in.len, ctp,
                                           req->query.base, req->query.len, &ctx->conf->jopts,
                                           &ctx->pb, errs);
    if (rc == 0)
        rc = pt__grpc_bind_headers(ctx->req, ctx->conf, ctx->method, &ctx->pb, errs);
    if (rc != 0) {
        if (rc == PT_XERR_NOMEM) {
            pt__resp_fail(req, PT_ERR_NOMEM, "transcoding");
        } else if (rc == PT_XERR_LIMIT && errs->cnt == 0) {
            reply_status(ctx, 413, PT_GRPC_RESOURCE_EXHAUSTED, "request too large to transcode",
                         NULL);
        } else {
            req->fail_status = PT_ERR_INVALID;
            req->fail_reason = "request does not match the method's input";
            reply_status(ctx, 400, PT_GRPC_INVALID_ARGUMENT, NULL, errs);
        }
        pt_handler_finish(req);
        return;
    }
    start_call(ctx, true);
}

/* Reads queued body bytes into ctx->in; calls body_complete() at the end. */
static void read_body(rest_ctx_t *ctx)
{
    pt_req_t *req = ctx->req;
    while (!ctx->body_eof && !pt_handler_gone(req)) {
        char buf[BODY_CHUNK];
        bool eof = false;
        size_t n = pt__req_body_read(req, buf, sizeof(buf), &eof);
        if (pt_handler_gone(req))
            break;
        if (n != 0 && pt_xbuf_append(&ctx->in, buf, n) != 0) {
            reply_status(ctx, 413, PT_GRPC_RESOURCE_EXHAUSTED, "request body too large", NULL);
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

/* ---- dispatch of the REST part ---------------------------------------------------- */

static void rest_on_body(pt_req_t *req)
{
    rest_ctx_t *ctx = (rest_ctx_t *)req->handler_ctx;
    if (pt_handler_finished(ctx->req))
        return;
    pt_handler_enter(ctx->req);
    if (ctx->stream_req) {
        if (ctx->call != NULL)
            pump_body(ctx);
    } else if (!ctx->body_eof) {
        read_body(ctx);
    }
    pt_handler_leave(ctx->req);
}

static void rest_on_writable(pt_req_t *req)
{
    rest_ctx_t *ctx = (rest_ctx_t *)req->handler_ctx;
    if (pt_handler_finished(ctx->req) || !ctx->want_recv)
        return;
    pt_handler_enter(ctx->req);
    request_next(ctx);
    pt_handler_leave(ctx->req);
}

static void allow_header(pt_req_t *req, unsigned bits)
{
    static const struct {
        unsigned bit;
        const char *name;
    } m[] = {{PT_HTTP_M_GET, "GET"},       {PT_HTTP_M_HEAD, "HEAD"},
             {PT_HTTP_M_POST, "POST"},     {PT_HTTP_M_PUT, "PUT"},
             {PT_HTTP_M_PATCH, "PATCH"},   {PT_HTTP_M_DELETE, "DELETE"},
             {PT_HTTP_M_OPTIONS, "OPTIONS"}};
    char buf[64];
    size_t o = 0;
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        if (!(bits & m[i].bit))
            continue;
        size_t l = strlen(m[i].name);
        if (o != 0) {
            memcpy(buf + o, ", ", 2); // NOLINT(bugprone-not-null-terminated-result): counted (buf, o)
            o += 2;
        }
        memcpy(buf + o, m[i].name, l); // NOLINT(bugprone-not-null-terminated-result): counted (buf, o)
        o += l;
    }
    if (o != 0)
        pt_headers_set(&req->resp_headers, PT_STR("allow"), (pt_str_t){buf, o});
}

/*
 * grpc_body_limit() runs once the request is routed, before the filter chain
 * and start(), and matches the path against the bindings already; it leaves
 * the match in req->handler_ctx (core/handler.h allows that note) and
 * rest_start() takes it instead of matching again (~800 instructions a
 * call) -- when the method and path are still the ones matched (a filter
 * that rewrote either changed them) and the table the same. The match's
 * variables point into the request's arena.
 */
typedef struct pre_match {
    const void *table;
    pt_str_t method, path;
    pt_httprule_match_t m;
} pre_match_t;

static bool pre_match_take(const pre_match_t *pm, const pt_req_t *req, const pt_grpc_conf_t *conf,
                           pt_httprule_match_t *m)
{
    if (pm == NULL || pm->table != conf->table || pm->method.base != req->method.base ||
        pm->method.len != req->method.len || pm->path.base != req->path.base ||
        pm->path.len != req->path.len)
        return false;
    *m = pm->m;
    return true;
}

static void rest_start(pt_req_t *req, const pt_grpc_conf_t *conf, const pre_match_t *pm)
{
    rest_ctx_t *ctx = pt_arena_zalloc(req->arena, sizeof(*ctx));
    if (ctx == NULL || pt_arena_defer(req->arena, ctx_cleanup, ctx) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt__req_handler_done(req);
        return;
    }
    ctx->base.on_body = rest_on_body;
    ctx->base.on_writable = rest_on_writable;
    ctx->base.cluster = pt__grpc_cluster(conf, req);
    ctx->req = req;
    ctx->conf = conf;
    /* the worker's free lists (http/h2mem.h): three buffers a call, malloc'd and freed otherwise */
    const pt_allocator_t *xa = req->worker != NULL ? pt_h2mem_allocator(req->worker) : NULL;
    pt_xbuf_init(&ctx->in, xa);
    pt_xbuf_init(&ctx->pb, xa);
    pt_xbuf_init(&ctx->out, xa);
    pt_xbuf_init(&ctx->frame, xa);
    pt_headers_init(&ctx->up_headers, req->arena);
    req->handler_ctx = ctx;
    pt_handler_enter(ctx->req);
    if (pt_req_on_abort(req, on_client_abort, ctx) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        goto done;
    }

    pt_pathmatch_status_t ms = PT_PATHMATCH_OK;
    if (!pre_match_take(pm, req, conf, &ctx->match)) {
        size_t slen = PT_PATHMATCH_SCRATCH_LEN(req->path.len);
        char *scratch = pt_arena_alloc(req->arena, slen);
        if (scratch == NULL) {
            pt__resp_fail(req, PT_ERR_URI_TOO_LONG, "path too long");
            goto done;
        }
        ms = pt_httprule_match(conf->table, req->method.base, req->method.len, req->path.base,
                               req->path.len, NULL, scratch, slen, &ctx->match);
    }
    switch (ms) {
    case PT_PATHMATCH_OK:
        break;
    case PT_PATHMATCH_NOT_FOUND:
        req->fail_status = PT_ERR_NOT_FOUND;
        req->fail_reason = "no gRPC binding matches";
        reply_status(ctx, 404, PT_GRPC_NOT_FOUND, "no method is bound to this path", NULL);
        goto done;
    case PT_PATHMATCH_METHOD:
        req->fail_status = PT_ERR_METHOD;
        req->fail_reason = "gRPC binding exists for other methods";
        allow_header(req, ctx->match.path.allowed);
        reply_status(ctx, 405, PT_GRPC_UNIMPLEMENTED, "method not allowed for this path", NULL);
        goto done;
    case PT_PATHMATCH_LIMIT:
        reply_status(ctx, 414, PT_GRPC_RESOURCE_EXHAUSTED, "path has too many segments", NULL);
        goto done;
    default:
        reply_status(ctx, 400, PT_GRPC_INVALID_ARGUMENT,
                     ctx->match.path.reason != NULL ? ctx->match.path.reason : "bad path", NULL);
        goto done;
    }
    ctx->binding = ctx->match.binding;
    ctx->method = ctx->binding->method;
    ctx->stream_req = ctx->method->client_streaming;
    ctx->stream_resp = ctx->method->server_streaming;
    ctx->fmt = pick_format(req, conf->fmt);
    ctx->in.limit = req->route.route != NULL && req->route.route->max_body != 0
                        ? req->route.route->max_body
                        : req->config->limits.max_body;
    if (ctx->stream_req) /* max_body is per NDJSON line (grpc_body_limit), newline aside */
        ctx->in.limit++;

    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    if (ct.base != NULL && req->expect_body && !ctx->binding->request_is_httpbody &&
        (ctx->stream_req || ctx->binding->body_kind != PT_HTTPBODY_NONE) && !json_type(ct)) {
        req->fail_status = PT_ERR_MEDIA_TYPE;
        req->fail_reason = "not a JSON body";
        reply_status(ctx, 415, PT_GRPC_INVALID_ARGUMENT,
                     "unsupported content type (expected application/json)", NULL);
        goto done;
    }
    if (ctx->stream_req) {
        pt_xerrs_t *errs = pt_arena_alloc(req->arena, sizeof(*errs));
        if (errs == NULL) {
            pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
            goto done;
        }
        pt_xerrs_clear(errs);
        int rc = check_stream_params(ctx, errs);
        if (rc == PT_XERR_NOMEM) {
            pt__resp_fail(req, PT_ERR_NOMEM, "transcoding");
            goto done;
        }
        if (rc != 0) {
            req->fail_status = PT_ERR_INVALID;
            req->fail_reason = "path or query does not match the method's input";
            reply_status(ctx, 400, PT_GRPC_INVALID_ARGUMENT, NULL, errs);
            goto done;
        }
        start_call(ctx, false);
        if (!pt_handler_finished(ctx->req) && ctx->call != NULL)
            pump_body(ctx);
    } else {
        read_body(ctx);
    }
    pt_handler_leave(ctx->req);
    return;
done: /* answered locally */
    pt_handler_finish(ctx->req);
    pt_handler_leave(ctx->req);
}

/* ---- the handler ------------------------------------------------------------------------ */

static void grpc_start(pt_req_t *req, const void *vconf)
{
    const pt_grpc_conf_t *conf = vconf;
    const pre_match_t *pm = req->handler_ctx; /* grpc_body_limit's note, or NULL */
    req->handler_ctx = NULL;
    if (req->upgrade.len != 0) {
        if (pt_str_ieq(req->upgrade, PT_STR("websocket"))) {
            pt__grpc_ws_start(req, conf);
            return;
        }
        /* Another protocol: as for handlers without tunnels (core/request.c):
         * an HTTP/2 extended CONNECT is refused, an HTTP/1.1 offer ignored. */
        if (req->version == 20) {
            pt__resp_fail(req, PT_ERR_NOT_IMPLEMENTED, "grpc routes open WebSocket tunnels only");
            pt__req_handler_done(req);
            return;
        }
        req->upgrade = PT_STR_NULL;
    }
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    if (ct.base != NULL && pt_str_has_prefix(ct, PT_STR("application/grpc"))) {
        pt_str_t rest = {ct.base + 16, ct.len - 16};
        if (pt_str_has_prefix(rest, PT_STR("-web")))
            pt__grpc_web_start(req, conf);
        else if (rest.len == 0 || rest.base[0] == '+' || rest.base[0] == ';')
            pt__grpc_passthrough_start(req, conf);
        else
            rest_start(req, conf, pm);
        return;
    }
    rest_start(req, conf, pm);
}

/*
 * Streams are limited per message, never by their total (issue 14): native
 * gRPC and gRPC-Web by max_message at each 5-byte prefix (grpc_native.c), a
 * REST client stream by max_body per NDJSON line (pump_body), and all of them
 * by the call's deadline. Everything else keeps the route's max_body.
 */
static uint64_t grpc_body_limit(pt_req_t *req, const void *vconf, uint64_t route_max)
{
    const pt_grpc_conf_t *conf = vconf;
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    if (ct.base != NULL && pt_str_has_prefix(ct, PT_STR("application/grpc"))) {
        pt_str_t rest = {ct.base + 16, ct.len - 16}; /* as grpc_start() dispatches */
        if (pt_str_has_prefix(rest, PT_STR("-web")) || rest.len == 0 || rest.base[0] == '+' ||
            rest.base[0] == ';')
            return UINT64_MAX;
    }
    if (conf->table == NULL || !req->expect_body)
        return route_max;
    size_t slen = PT_PATHMATCH_SCRATCH_LEN(req->path.len);
    char *scratch = pt_arena_alloc(req->arena, slen);
    pre_match_t *pm = pt_arena_alloc(req->arena, sizeof(*pm));
    if (scratch == NULL || pm == NULL ||
        pt_httprule_match(conf->table, req->method.base, req->method.len, req->path.base,
                          req->path.len, NULL, scratch, slen, &pm->m) != PT_PATHMATCH_OK)
        return route_max;
    pm->table = conf->table;
    pm->method = req->method;
    pm->path = req->path;
    req->handler_ctx = pm;
    return pm->m.binding->method->client_streaming ? UINT64_MAX : route_max;
}

/*
 * CORS (plugins/cors.c): the methods of a path are the verbs google.api.http
 * binds to it (asking the table for OPTIONS, which no binding has, gives the
 * "allowed" set of a 405), plus POST for a gRPC-Web method path.
 */
static uint32_t grpc_cors_methods(pt_req_t *req, const void *vconf)
{
    const pt_grpc_conf_t *conf = vconf;
    static const struct {
        unsigned rule;
        uint32_t bit;
    } map[] = {{PT_HTTP_M_GET, PT_METHOD_GET},       {PT_HTTP_M_PUT, PT_METHOD_PUT},
               {PT_HTTP_M_POST, PT_METHOD_POST},     {PT_HTTP_M_DELETE, PT_METHOD_DELETE},
               {PT_HTTP_M_PATCH, PT_METHOD_PATCH},   {PT_HTTP_M_HEAD, PT_METHOD_HEAD},
               {PT_HTTP_M_OPTIONS, PT_METHOD_OPTIONS}};
    uint32_t m = pt__grpc_method_path(conf, req->path) ? PT_METHOD_POST : 0;
    if (conf->table == NULL)
        return m;
    size_t slen = PT_PATHMATCH_SCRATCH_LEN(req->path.len);
    char *scratch = pt_arena_alloc(req->arena, slen);
    pt_httprule_match_t hm;
    if (scratch == NULL)
        return m;
    pt_pathmatch_status_t st = pt_httprule_match(conf->table, "OPTIONS", 7, req->path.base,
                                                 req->path.len, NULL, scratch, slen, &hm);
    if (st == PT_PATHMATCH_OK)
        m |= PT_METHOD_OPTIONS;
    if (st == PT_PATHMATCH_METHOD)
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
            if (hm.path.allowed & map[i].rule)
                m |= map[i].bit;
    return m;
}

/* `web_origins` configures the route's CORS (an implicit cors filter, plugins/cors.h). */
static bool grpc_cors_alias(const void *vconf, pt_conf_strlist_t *origins, bool *web_only)
{
    const pt_grpc_conf_t *conf = vconf;
    *origins = conf->web_origins;
    *web_only = conf->web_origins.cnt == 0; /* unset: "*" for gRPC-Web, as it always was */
    return true;
}

static void grpc_on_body(pt_req_t *req)
{
    const pt_grpc_ctx_base_t *b = req->handler_ctx;
    if (b != NULL && b->on_body != NULL)
        b->on_body(req);
}

static void grpc_on_writable(pt_req_t *req)
{
    const pt_grpc_ctx_base_t *b = req->handler_ctx;
    if (b != NULL && b->on_writable != NULL)
        b->on_writable(req);
}

const pt_handler_def_t pt_handler_grpc = {
    .name = "grpc",
    .conf_size = sizeof(pt_grpc_conf_t),
    .fields = grpc_fields,
    .parse_conf = grpc_parse_conf,
    .check_conf = grpc_check_conf,
    .conf_dispose = grpc_conf_dispose,
    .body_limit = grpc_body_limit,
    .start = grpc_start,
    .on_body = grpc_on_body,
    .on_writable = grpc_on_writable,
    .tunnels = true, /* WebSocket handshakes: the bridge (ws_bridge.c) */
    .cors_methods = grpc_cors_methods,
    .cors_alias = grpc_cors_alias,
};
