/*
 * handler.h -- route handlers (what answers a request once the request-side
 * filters have passed): proxy, grpc, soap, aggregate, ...
 *
 * A handler is configured by the route key of the same name
 * (`proxy: { cluster: web }`). At request time it is started once; from then
 * on it owns the exchange until it calls pt__req_handler_done(). It produces
 * the response with pt__resp_head()/pt__resp_body() (request.h) and reads the
 * request body with pt__req_body_read(). The rules of that ownership (the
 * enter/leave bracket around upstream and timer callbacks, finish once) and
 * their helpers are in core/handler_lifetime.h; every handler uses them.
 */
#ifndef PT_GATEWAY_HANDLER_H
#define PT_GATEWAY_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include "portico/conf.h"
#include "portico/req.h"

typedef struct pt_config pt_config_t;

struct pt_handler_def {
    const char *name;        /* route key */
    size_t conf_size;
    const pt_conf_field_t *fields;
    int (*parse_conf)(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf);
    /** After the whole snapshot is parsed: resolve cluster names etc. */
    int (*check_conf)(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf,
                      const pt_config_t *config);
    void (*conf_dispose)(void *conf);
    /**
     * Optional. The request body cap (total bytes; over it -> 413) for `req`,
     * called once the request is routed, before filters and start(), with the
     * route's max_body as `route_max`. A handler that limits a body in its
     * own units (a stream's messages) returns UINT64_MAX and enforces its
     * limit itself. Must not touch the body or answer. NULL: `route_max`.
     * Not asked for routes with request_buffering (the whole body is held).
     * A route with this hook also lifts the HTTP/1 codec's pre-routing cap
     * (the routed limit is then checked by request.c, before any body byte
     * is read when a Content-Length says too much).
     * It may leave a note for its own start() in req->handler_ctx (allocated
     * in req->arena; nothing else reads handler_ctx before start()); start()
     * must check the note still applies: request filters run in between and
     * may rewrite the method or path.
     */
    uint64_t (*body_limit)(pt_req_t *req, const void *conf, uint64_t route_max);
    /** Takes over the request. Must eventually call pt__req_handler_done(req) exactly once. */
    void (*start)(pt_req_t *req, const void *conf);
    /** More request body is readable (or it ended). Optional. */
    void (*on_body)(pt_req_t *req);
    /** The client's output buffer drained below the low watermark. Optional. */
    void (*on_writable)(pt_req_t *req);
    /**
     * The handler understands req->upgrade: it opens a tunnel
     * (pt__req_tunnel_open) or refuses. Other handlers never see an HTTP/2
     * extended CONNECT (501: a 2xx from them would tell the client a tunnel
     * is open); an HTTP/1.1 Upgrade reaches them as a plain request, which
     * RFC 9110 §7.8 allows a server to serve while ignoring the offer.
     */
    bool tunnels;
    /**
     * Optional (CORS, plugins/cors.c). The PT_METHOD_* bits of the methods
     * the route serves at req's path (a grpc route: the verbs bound to it),
     * OPTIONS aside; 0 when none. Called for preflights only.
     */
    uint32_t (*cors_methods)(pt_req_t *req, const void *conf);
    /**
     * Optional. A handler key that configures CORS (a grpc route's
     * web_origins): fills the origins and returns true; the loader then puts
     * an implicit `cors` filter in front of the route's chain when the chain
     * has none. `*web_only`: only gRPC-Web answers are decorated.
     */
    bool (*cors_alias)(const void *conf, pt_conf_strlist_t *origins, bool *web_only);
};

/** The handler registered under `name`, or NULL. */
const struct pt_handler_def *pt_handler_find(const char *name, size_t len);

#endif /* PT_GATEWAY_HANDLER_H */
