/*
 * request.c -- the request lifecycle (see request.h) and the SDK accessors
 * of req.h.
 *
 * A request is created by a codec, routed, run through its filter chain
 * (chain.c), handed to its route's handler, and finalised when neither the
 * codec nor the handler (nor a suspended filter) holds it any more. The
 * request struct itself lives in its own arena, so finalisation is one
 * pt_arena_destroy().
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include "chain.h"
#include "handler.h"
#include "observe.h"
#include "path.h"
#include "request.h"

/* A request's arena may not grow past this: hostile growth becomes PT_ERR_LIMIT. */
#define REQ_ARENA_LIMIT ((size_t)16 * 1024 * 1024)

/* ---- request ids ------------------------------------------------------- */

/* xorshift128+ per thread, seeded from the kernel once: ids need to be unique
 * and unguessable enough for correlation, not cryptographic. */
static __thread uint64_t rid_s[2];

static uint64_t rid_next(void)
{
    if (rid_s[0] == 0 && rid_s[1] == 0) {
        if (getrandom(rid_s, sizeof(rid_s), 0) != (ssize_t)sizeof(rid_s) ||
            (rid_s[0] == 0 && rid_s[1] == 0)) {
            rid_s[0] = pt_now_ns() | 1;
            rid_s[1] = (uint64_t)(uintptr_t)&rid_s ^ 0x9e3779b97f4a7c15ull;
        }
    }
    uint64_t x = rid_s[0], y = rid_s[1];
    rid_s[0] = y;
    x ^= x << 23;
    rid_s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return rid_s[1] + y;
}

/* 16 lowercase hex digits of v, most significant first (no terminator):
 * the request id without a trip through vfprintf on every request. */
static void hex64(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 0xfu];
        v >>= 4;
    }
}

/* A client's X-Request-Id is kept when it is 1..128 bytes of [A-Za-z0-9._:-]. */
static bool rid_valid(pt_str_t id)
{
    if (id.len == 0 || id.len > 128)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static void assign_request_id(pt_req_t *req)
{
    static const pt_str_t name = {"x-request-id", 12};
    pt_str_t id = pt_headers_get(&req->headers, name);
    if (pt_headers_count(&req->headers, name) == 1 && rid_valid(id)) {
        req->request_id = id;
        return;
    }
    char *buf = pt_arena_alloc(req->arena, 33);
    if (buf == NULL) {
        req->request_id = PT_STR("-");
        return;
    }
    hex64(buf, rid_next());
    hex64(buf + 16, rid_next());
    buf[32] = '\0';
    req->request_id = (pt_str_t){buf, 32};
    pt_headers_remove(&req->headers, name);
    pt_headers_add_nocopy(&req->headers, name, req->request_id);
}

/* ---- lifetime ---------------------------------------------------------- */

static void finalize(pt_req_t *req)
{
    req->finalized = true;
    pt__chain_log(req);
    pt_observe_request(req);
    if (req->body != NULL)
        evbuffer_free(req->body);
    pt_config_t *cfg = req->config;
    pt_worker_t *w = req->worker;
    pt_arena_destroy(req->arena); /* frees req itself */
    pt__worker_config_release(w, cfg);
}

static void release(pt_req_t *req, unsigned hold)
{
    req->holds &= ~hold;
    if (req->holds == 0 && req->busy == 0 && !req->finalized)
        finalize(req);
}

void pt__req_enter(pt_req_t *req)
{
    req->busy++;
}

void pt__req_leave(pt_req_t *req)
{
    if (--req->busy == 0 && req->holds == 0 && !req->finalized)
        finalize(req);
}

static void run_abort_hooks(pt_req_t *req)
{
    while (req->abort_hooks != NULL) {
        pt_abort_hook_t *h = req->abort_hooks;
        req->abort_hooks = h->next;
        h->cb(h->data);
    }
}

pt_req_t *pt__req_new(pt_worker_t *w, const pt_stream_ops_t *ops, void *stream)
{
    pt_arena_t *a = pt_arena_new(0, REQ_ARENA_LIMIT);
    pt_req_t *req = pt_arena_zalloc(a, sizeof(*req));
    req->arena = a;
    req->worker = w;
    req->config = pt__worker_config_acquire(w);
    req->ops = ops;
    req->stream = stream;
    req->content_length = -1;
    req->resp_content_length = -1;
    req->scheme = PT_STR("http");
    pt_headers_init(&req->headers, a);
    pt_headers_init(&req->resp_headers, a);
    pt_headers_init(&req->resp_trailers, a);
    req->body = evbuffer_new();
    if (req->body == NULL) {
        fputs("portico: out of memory\n", stderr);
        abort();
    }
    req->holds = PT_REQ_HOLD_CODEC;
    req->start_ns = pt_now_ns();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    req->start_wall_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    return req;
}

static uint64_t max_body_of(const pt_req_t *req)
{
    const pt_route_t *r = req->route.route;
    return r != NULL && r->max_body != 0 ? r->max_body : req->config->limits.max_body;
}

void pt__req_headers_done(pt_req_t *req)
{
    const char *why = NULL;
    req->method_bit = pt_method_bit(req->method);
    assign_request_id(req);

    pt_str_t norm;
    int rc = pt_path_normalize(req->arena, req->path,
                               req->config->limits.merge_slashes ? 0 : PT_PATH_KEEP_EMPTY_SEGMENTS,
                               &norm, &why);
    if (rc != 0) {
        req->close_after = true;
        pt__req_reject(req, rc, why != NULL ? why : "invalid path");
        return;
    }
    req->path = norm;

    rc = pt_router_match(req->config->router, req->method, req->authority, req->path,
                         &req->headers, req->arena, &req->route);
    if (rc != 0) {
        pt__req_reject(req, PT_ERR_NOT_FOUND, "no route matches the request");
        return;
    }
    const pt_route_t *route = req->route.route;
    if (req->content_length > 0 && (uint64_t)req->content_length > max_body_of(req)) {
        /* Refuse before reading (and before any 100 Continue): the body is not wanted. */
        req->close_after = true;
        pt__req_reject(req, PT_ERR_LIMIT, "request body larger than the route allows");
        return;
    }

    req->chain = route->chain;
    req->chain_cnt = route->chain_cnt;
    if (req->chain_cnt != 0) {
        req->filter_ctx = pt_arena_zalloc(req->arena, req->chain_cnt * sizeof(void *));
        if (req->filter_ctx == NULL) {
            pt__req_reject(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
            return;
        }
        for (size_t i = 0; i < req->chain_cnt; i++) {
            size_t n = req->chain[i]->def->ctx_size;
            if (n != 0 && (req->filter_ctx[i] = pt_arena_zalloc(req->arena, n)) == NULL) {
                pt__req_reject(req, PT_ERR_HEADERS_TOO_LARGE, "request too large");
                return;
            }
        }
    }
    pt__chain_run(req);
}

/* Called by chain.c when the request side is through: the handler takes over. */
void pt__req_start_handler(pt_req_t *req)
{
    const pt_route_t *route = req->route.route;
    if (route->handler == NULL) {
        pt__resp_fail(req, PT_ERR_NOT_IMPLEMENTED, "route has no handler");
        return;
    }
    if (req->expect_continue && !req->body_done && !req->continue_sent &&
        req->ops->send_continue != NULL) {
        req->continue_sent = true;
        req->ops->send_continue(req);
    }
    req->holds |= PT_REQ_HOLD_HANDLER;
    req->handler_started = true;
    route->handler->start(req, route->handler_conf);
}

void pt__req_reject(pt_req_t *req, int st, const char *reason)
{
    if (req->request_id.base == NULL)
        assign_request_id(req); /* codec rejects come before pt__req_headers_done */
    pt__resp_fail(req, st, reason);
}

void pt__req_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (req->body_done || req->finalized)
        return;
    if (len != 0) {
        req->body_received += len;
        if (req->body_received > max_body_of(req)) {
            req->body_done = true;
            req->close_after = true;
            evbuffer_drain(req->body, evbuffer_get_length(req->body));
            pt__resp_fail(req, PT_ERR_LIMIT, "request body larger than the route allows");
            /* The handler (if any) must stop: its abort hooks cancel upstream work.
             * A suspended filter is cancelled the same way; its late resume, if
             * the request is still alive, finds the chain no longer suspended. */
            run_abort_hooks(req);
            if (req->chain_suspended) {
                req->chain_suspended = false;
                req->holds &= ~PT_REQ_HOLD_CHAIN; /* the codec still holds it */
            }
            return;
        }
        evbuffer_add(req->body, data, len);
    }
    if (end)
        req->body_done = true;
    if (req->handler_started && req->route.route->handler->on_body != NULL &&
        (req->holds & PT_REQ_HOLD_HANDLER))
        req->route.route->handler->on_body(req);
}

size_t pt__req_body_read(pt_req_t *req, char *buf, size_t max, bool *eof)
{
    int n = evbuffer_remove(req->body, buf, max);
    if (n < 0)
        n = 0;
    bool drained = evbuffer_get_length(req->body) == 0;
    *eof = req->body_done && drained;
    if (n > 0 || *eof) {
        if (pt__chain_request_body(req, buf, (size_t)n, *eof) != 0) {
            /* A body filter refused: answer it, stop reading, let the handler go. */
            req->body_done = true;
            req->close_after = true;
            evbuffer_drain(req->body, evbuffer_get_length(req->body));
            pt__resp_fail(req, req->fail_status != 0 ? req->fail_status : PT_ERR_INTERNAL,
                          req->fail_reason != NULL ? req->fail_reason : "request body filter failed");
            run_abort_hooks(req);
            *eof = false;
            return 0;
        }
    }
    if (n > 0 && req->ops->body_consumed != NULL)
        req->ops->body_consumed(req, (size_t)n);
    return (size_t)n;
}

void pt__req_on_writable(pt_req_t *req)
{
    if (!req->want_writable || req->finalized || !(req->holds & PT_REQ_HOLD_HANDLER))
        return;
    req->want_writable = false;
    if (req->route.route->handler->on_writable != NULL)
        req->route.route->handler->on_writable(req);
}

void pt__req_codec_done(pt_req_t *req)
{
    if (!(req->holds & PT_REQ_HOLD_CODEC))
        return;
    if (!req->resp_ended) {
        /* The codec gave up on the stream before the response ended: treat as an abort. */
        pt__req_abort(req);
        return;
    }
    if (req->chain_suspended) {
        run_abort_hooks(req);
        req->chain_suspended = false;
        req->holds &= ~PT_REQ_HOLD_CHAIN;
    }
    release(req, PT_REQ_HOLD_CODEC);
}

void pt__req_abort(pt_req_t *req)
{
    if (req->finalized || !(req->holds & PT_REQ_HOLD_CODEC))
        return;
    req->aborted = true;
    if (req->fail_status == 0)
        req->fail_status = PT_ERR_CANCELED;
    run_abort_hooks(req);
    if (req->chain_suspended) {
        req->chain_suspended = false;
        req->holds &= ~PT_REQ_HOLD_CHAIN;
    }
    release(req, PT_REQ_HOLD_CODEC);
}

void pt__req_handler_done(pt_req_t *req)
{
    if (!(req->holds & PT_REQ_HOLD_HANDLER))
        return;
    release(req, PT_REQ_HOLD_HANDLER);
}

/* ---- responses --------------------------------------------------------- */

void pt__resp_head(pt_req_t *req)
{
    if (req->resp_started || req->aborted)
        return;
    req->resp_started = true;
    pt_headers_set(&req->resp_headers, PT_STR("x-request-id"), req->request_id);
    if (pt__chain_response_head(req) != 0 && req->fail_status == 0)
        req->fail_status = PT_ERR_INTERNAL;
    req->ops->send_head(req);
}

void pt__resp_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (req->resp_ended || req->aborted || !req->resp_started)
        return;
    if (pt__chain_response_body(req, data, len, end) != 0) {
        req->resp_ended = true;
        req->ops->reset(req);
        return;
    }
    req->bytes_out += len;
    if (end)
        req->resp_ended = true;
    req->ops->send_body(req, data, len, end);
}

bool pt__resp_blocked(pt_req_t *req)
{
    if (req->ops->out_pending(req) <= req->config->limits.max_response_buffer)
        return false;
    req->want_writable = true;
    return true;
}

void pt__resp_fail(pt_req_t *req, int st, const char *reason)
{
    if (req->fail_status == 0 || req->fail_status == PT_ERR_CANCELED) {
        req->fail_status = st;
        req->fail_reason = reason;
    }
    if (req->aborted || req->resp_ended)
        return;
    if (req->resp_started) {
        req->resp_ended = true;
        req->ops->reset(req);
        return;
    }
    pt_str_t body = pt__error_body(req, st, reason);
    req->resp_status = pt_status_http(st);
    pt_headers_init(&req->resp_headers, req->arena);
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    req->resp_content_length = (int64_t)body.len;
    pt__resp_head(req);
    pt__resp_body(req, body.base, body.len, true);
}

/* ---- SDK accessors (req.h) --------------------------------------------- */

pt_str_t pt_req_method(const pt_req_t *req) { return req->method; }
pt_str_t pt_req_path(const pt_req_t *req) { return req->path; }
pt_str_t pt_req_query(const pt_req_t *req) { return req->query; }
pt_str_t pt_req_authority(const pt_req_t *req) { return req->authority; }
pt_str_t pt_req_scheme(const pt_req_t *req) { return req->scheme; }
int pt_req_http_version(const pt_req_t *req) { return req->version; }
pt_headers_t *pt_req_headers(pt_req_t *req) { return &req->headers; }
pt_str_t pt_req_client_addr(const pt_req_t *req) { return req->client_addr; }
pt_str_t pt_req_id(const pt_req_t *req) { return req->request_id; }
pt_arena_t *pt_req_arena(pt_req_t *req) { return req->arena; }
pt_worker_t *pt_req_worker(pt_req_t *req) { return req->worker; }
pt_headers_t *pt_req_resp_headers(pt_req_t *req) { return &req->resp_headers; }
int pt_req_resp_status(const pt_req_t *req) { return req->resp_status; }
void pt_req_set_resp_status(pt_req_t *req, int status) { req->resp_status = status; }
bool pt_req_is_aborted(const pt_req_t *req) { return req->aborted; }

pt_str_t pt_req_param(const pt_req_t *req, pt_str_t name)
{
    for (size_t i = 0; i < req->route.param_cnt; i++)
        if (pt_str_eq(req->route.params[i].name, name))
            return req->route.params[i].value;
    return PT_STR_NULL;
}

int pt_req_set_path(pt_req_t *req, pt_str_t path)
{
    pt_str_t p = pt_arena_strdup(req->arena, path);
    if (p.base == NULL)
        return PT_ERR_LIMIT;
    req->path = p;
    return 0;
}

int pt_req_set_authority(pt_req_t *req, pt_str_t authority)
{
    pt_str_t p = pt_arena_strdup(req->arena, authority);
    if (p.base == NULL)
        return PT_ERR_LIMIT;
    req->authority = p;
    return 0;
}

int pt_req_respond(pt_req_t *req, int status, pt_str_t content_type, pt_str_t body)
{
    pt_str_t b = pt_arena_strdup(req->arena, body);
    if (b.base == NULL)
        return PT_ERR_LIMIT;
    req->resp_status = status;
    req->local_body = b;
    req->resp_content_length = (int64_t)b.len;
    if (content_type.len != 0 &&
        pt_headers_set(&req->resp_headers, PT_STR("content-type"), content_type) != 0)
        return PT_ERR_LIMIT;
    return 0;
}

void pt_req_fail(pt_req_t *req, int st, const char *reason)
{
    req->fail_status = st;
    req->fail_reason = reason;
}

int pt_req_on_abort(pt_req_t *req, void (*cb)(void *data), void *data)
{
    pt_abort_hook_t *h = pt_arena_alloc(req->arena, sizeof(*h));
    if (h == NULL)
        return PT_ERR_LIMIT;
    h->cb = cb;
    h->data = data;
    h->next = req->abort_hooks;
    req->abort_hooks = h;
    return 0;
}
