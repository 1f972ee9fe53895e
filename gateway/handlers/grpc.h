/*
 * grpc.h -- the `grpc` route handler, shared between its parts (private).
 *
 *   descriptors: [ bookstore.pb ]
 *   clusters:
 *     - { name: books, protocol: grpc, endpoints: [ "127.0.0.1:50051" ] }
 *   routes:
 *     - grpc: { cluster: books }
 *
 * One route serves a gRPC cluster three ways; start() looks at the request's
 * Content-Type and hands it to one of them:
 *
 *   application/grpc-web*   pt__grpc_web_start()          (handlers/grpc_native.c)
 *   application/grpc*       pt__grpc_passthrough_start()  (handlers/grpc_native.c)
 *   a WebSocket handshake   pt__grpc_ws_start()            (handlers/ws_bridge.c)
 *   anything else           REST/JSON transcoding          (handlers/grpc.c)
 *
 * Each part keeps its per-request state in req->handler_ctx, in a struct
 * whose FIRST member is a pt_grpc_ctx_base_t: the handler's on_body and
 * on_writable entry points (the route has one handler_def) forward to the
 * functions found there. A part that does not need one leaves it NULL.
 *
 * What the parts share about a request (metadata, deadline) is in
 * handlers/grpc_md.c, below both: grpc.c calls grpc_native.c and
 * grpc_md.c, grpc_native.c calls grpc_md.c, never the other way.
 *
 * Everything in pt_grpc_conf_t is built at load time (check_conf) and is
 * read-only afterwards. All three parts reach the cluster through the one
 * upstream primitive (upstream/call.h), the REST part through the message
 * layer of upstream/grpc.h.
 */
#ifndef PT_GATEWAY_HANDLERS_GRPC_H
#define PT_GATEWAY_HANDLERS_GRPC_H

#include "core/route_retry.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cluster.h"
#include "core/request.h"
#include "upstream/grpc.h"
#include "portico/conf.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/json.h"

/** Output framing of server-streaming REST responses. */
typedef enum pt_grpc_fmt {
    PT_GRPC_FMT_JSON = 0,   /**< one JSON array, written element by element */
    PT_GRPC_FMT_NDJSON = 1, /**< application/x-ndjson: one message per line */
    PT_GRPC_FMT_SSE = 2,    /**< text/event-stream: one `data:` event per message */
} pt_grpc_fmt_t;

/**
 * The route's `websocket:` map: limits of the WebSocket <-> gRPC bridge
 * (ws_bridge.c). Every key is optional; zero values are replaced by the
 * defaults in parse_conf.
 */
typedef struct pt_grpc_ws_conf {
    uint64_t max_message;        /**< bytes per client message (default 1 MiB; over it: 1009) */
    uint64_t ping_interval_ms;   /**< keepalive pings to the client (0: none) */
    uint64_t tunnel_idle_ms;     /**< nothing moved either way: close 1001 (0: timeouts.tunnel_idle) */
    uint64_t close_timeout_ms;   /**< wait for the client's answer to our close (default 5 s) */
    uint64_t timeout_ms;         /**< deadline of a bridged call (default 24 h) */
} pt_grpc_ws_conf_t;

/** The route's `grpc:` configuration. */
typedef struct pt_grpc_conf {
    /* as written (see docs/configuration.md) */
    const char *cluster_name;
    pt_conf_strlist_t services;        /**< full service names; empty = every service */
    bool emit_defaults, proto_names, enums_as_ints, ignore_unknown;
    bool default_bindings;             /**< POST /pkg.Svc/Method for unannotated methods */
    uint64_t timeout_ms;               /**< 0: the route's, else the cluster's */
    bool send_deadline;                /**< grpc-timeout upstream on every call, not only when
                                            the client sent one (grpc_md.c) */
    const pt_conf_node_t *metadata;    /**< raw `metadata:` map */
    pt_conf_strmap_t header_bindings;  /**< header name -> request field path */
    const char *stream_format;         /**< raw `stream_format:` */
    uint64_t max_message;              /**< largest message in bytes, every part (0: 4 MiB) */
    pt_conf_strlist_t web_origins;     /**< gRPC-Web CORS origins and WebSocket Origin allow-list;
                                            empty = "*" (grpc_native.c, ws_bridge.c) */
    const pt_conf_node_t *websocket;   /**< raw `websocket:` map (bridge limits) */
    pt_grpc_ws_conf_t ws;              /**< parsed from it, defaults filled */

    /* derived (parse_conf / check_conf) */
    const char **md_forward;           /**< lowercase header names; "x-echo-*" is a prefix */
    size_t md_forward_cnt;
    const char *md_prefix;             /**< response metadata -> header name prefix */
    pt_grpc_fmt_t fmt;                 /**< default stream format */
    const pt_cluster_t *cluster;       /**< `cluster`, or the first of `split` */
    const pt_conf_node_t *split_node, *hash_key_node;
    struct pt_split *split;            /**< `split:` (core/route_retry.h), or NULL */
    const pt_descpool_t *pool;         /**< the snapshot's pool (config->descpool) */
    pt_httprule_table_t *table;        /**< REST bindings of the exposed services */
    pt_json_opts_t jopts;
} pt_grpc_conf_t;

/** First member of every part's per-request state (see the top comment). */
typedef struct pt_grpc_ctx_base {
    void (*on_body)(pt_req_t *req);
    void (*on_writable)(pt_req_t *req);
    const pt_cluster_t *cluster;       /**< this request's cluster (pt__grpc_cluster) */
} pt_grpc_ctx_base_t;

/** The cluster of a request: picked by the route's `split:` (route_split.c), else `cluster`. */
static inline const pt_cluster_t *pt__grpc_cluster(const pt_grpc_conf_t *conf, const pt_req_t *req)
{
    return conf->split != NULL ? pt_split_pick(conf->split, req) : conf->cluster;
}

/**
 * Native gRPC passthrough of one request (content-type application/grpc*).
 * Same contract as pt_handler_def_t.start: owns the request until it calls
 * pt__req_handler_done().
 */
void pt__grpc_passthrough_start(pt_req_t *req, const pt_grpc_conf_t *conf);

/** gRPC-Web (content-type application/grpc-web*); contract as above. */
void pt__grpc_web_start(pt_req_t *req, const pt_grpc_conf_t *conf);

/** True when `path` names a method native gRPC / gRPC-Web calls may reach ("/pkg.Svc/Method"). */
bool pt__grpc_method_path(const pt_grpc_conf_t *conf, pt_str_t path);

/** Header names Portico or gRPC own (":*", "grpc-*", hop-by-hop, ...): never metadata. */
bool pt__grpc_md_reserved(const char *name);

/**
 * A WebSocket handshake (req->upgrade "websocket") on a path bound to a
 * streaming method: the WebSocket <-> gRPC bridge (ws_bridge.c). Contract as
 * above.
 */
void pt__grpc_ws_start(pt_req_t *req, const pt_grpc_conf_t *conf);

/**
 * The JSON of a gRPC failure (a google.rpc.Status object): the
 * grpc-status-details-bin `bin` rendered through the route's pool (its
 * details are Any messages, shown as JSON), else `code` with `details` (or
 * the code's name). Appends to `out`; returns 0 or a PT_XERR_*.
 */
int pt__grpc_status_json(const pt_grpc_conf_t *conf, int code, pt_str_t details,
                         const uint8_t *bin, size_t bin_len, pt_xbuf_t *out);

/** The backend's status and message as log text (request arena), for a status hidden from the client. */
const char *pt__grpc_status_log(pt_req_t *req, const pt_grpc_status_t *st);

/**
 * The route's header_bindings for a request of `method`: the values of the
 * bound headers the request carries, converted and appended to `pb` (protobuf
 * concatenation merges them into the message). Problems go to `errs`.
 * Returns 0 or a PT_XERR_* (as pt_json_to_pb_bind).
 */
int pt__grpc_bind_headers(pt_req_t *req, const pt_grpc_conf_t *conf,
                          const pt_methoddesc_t *method, pt_xbuf_t *pb, pt_xerrs_t *errs);

/**
 * The gRPC metadata of a request: every header the route's `metadata.forward`
 * allows (`-bin` values base64-decoded; undecodable ones dropped), plus
 * x-request-id = the request id when allowed. Arena memory. Returns 0,
 * PT_ERR_LIMIT (arena full), or PT_ERR_INVALID with the header's name in
 * *bad when an allowed header's value is not valid ASCII metadata
 * (pt_grpc_md_valid: a tab, control or non-ASCII byte); the caller refuses
 * the request (400 naming the header) rather than dropping the header.
 */
int pt__grpc_request_md(pt_req_t *req, const pt_grpc_conf_t *conf, pt_header_t **md,
                        size_t *cnt, pt_str_t *bad);

/**
 * The call deadline of a request: the smaller of the route's timeout (or the
 * cluster's) and the client's `grpc-timeout` header. Milliseconds, never 0.
 * *send tells whether it goes upstream as `grpc-timeout`: when the client
 * sent one, or the route says `send_deadline: true`. Otherwise Portico alone
 * enforces it (the call is reset when it passes): a deadline on every call
 * costs a gRPC C core backend a timer per call (~5 us, bench/rest_bench.py).
 */
uint64_t pt__grpc_deadline_ms(const pt_req_t *req, const pt_grpc_conf_t *conf, bool *send);

#endif /* PT_GATEWAY_HANDLERS_GRPC_H */
