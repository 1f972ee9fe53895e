/*
 * request.c -- the request lifecycle (see request.h) and the SDK accessors
 * of req.h.
 *
 * A request is created by a codec, routed, run through its filter chain
 * (chain.c), handed to its route's handler, and finalised when neither the
 * codec nor the handler (nor a suspended filter) holds it any more. The
 * request struct itself lives in its own arena, so finalisation is one
 * pt_arena_reset() (the arena then waits for the worker's next request, see
 * "Spare requests").
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include "core/chain.h"
#include "core/config.h"
#include "core/handler.h"
#include "core/headers_priv.h"
#include "core/overload.h"
#include "observe/observe.h"
#include "observe/trace.h"
#include "core/path.h"
#include "core/request.h"

/* Body bytes an HTTP/1 connection reads and drops after a body filter refused, to keep it. */
#define BODY_DISCARD_MAX ((uint64_t)1 << 20)

/* A request's arena may not grow past this: hostile growth becomes PT_ERR_LIMIT. */
#define REQ_ARENA_LIMIT ((size_t)16 * 1024 * 1024)
/* Its first block: a proxied request (~3 KB) and a transcoded call (~6 KB) fit
 * in it, so neither mallocs a second block; 64 bytes leave room for the block
 * header within 8 KiB. */
#define REQ_ARENA_FIRST ((size_t)8 * 1024 - 64)

/* ---- request ids ------------------------------------------------------- */

/* xorshift128+ per thread, seeded from the kernel once: ids need to be unique
 * and unguessable enough for correlation, not cryptographic. */
static __thread uint64_t rid_s[2];

uint64_t pt__rand64(void)
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
 * the request id without a trip through vfprintf on every request. Eight
 * digits at a time: the nibbles of 32 bits spread to one a byte (the least
 * significant in byte 0), each made a digit (+'0', +39 more from 10 on),
 * then the bytes reversed so the most significant digit comes first. */
static uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = (x | (x << 16)) & 0x0000ffff0000ffffull;
    x = (x | (x << 8)) & 0x00ff00ff00ff00ffull;
    x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0full;
    uint64_t ten_up = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    x += 0x3030303030303030ull + ten_up * 39;
    return __builtin_bswap64(x);
}

void pt__hex64(char *out, uint64_t v)
{
    uint64_t hi = hex8((uint32_t)(v >> 32)), lo = hex8((uint32_t)v);
    memcpy(out, &hi, 8);
    memcpy(out + 8, &lo, 8);
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
    /* One pass: the client's ids (kept only when there is exactly one). */
    const pt_headers_t *h = &req->headers;
    size_t cnt = 0;
    pt_str_t id = PT_STR_NULL;
    for (size_t i = 0; i < h->cnt; i++)
        if (h->v[i].name.len == 12 && pt_str_ieq(h->v[i].name, name) && cnt++ == 0)
            id = h->v[i].value;
    if (cnt == 1 && rid_valid(id)) {
        req->request_id = id;
        return;
    }
    char *buf = pt_arena_alloc(req->arena, 33);
    if (buf == NULL) {
        req->request_id = PT_STR("-");
        return;
    }
    pt__hex64(buf, pt__rand64());
    pt__hex64(buf + 16, pt__rand64());
    buf[32] = '\0';
    req->request_id = (pt_str_t){buf, 32};
    if (cnt != 0)
        pt_headers_remove(&req->headers, name);
    pt__headers_push(&req->headers, name, req->request_id);
}

/* ---- lifetime ---------------------------------------------------------- */

/*
 * Spare requests: a finished request's arena (reset: its first block kept)
 * and its body buffer (empty) wait on the worker for the next request, so a
 * request on a busy worker mallocs neither (three mallocs and three frees a
 * request before). LIFO, at most REQ_SPARE_MAX (8 KiB each); the worker frees
 * them when it ends (pt__req_spares_free). Arena memory left over from the
 * last request is poisoned under ASan while it waits (arena.c), so a stale
 * pointer into a finished request still faults in the sanitizer build.
 */
#define REQ_SPARE_MAX 32

typedef struct req_spare {
    pt_arena_t *arena;
    struct evbuffer *body;
} req_spare_t;

struct pt__req_spares {
    unsigned cnt;
    req_spare_t v[REQ_SPARE_MAX];
};

void pt__req_spares_free(pt_worker_t *w)
{
    pt__req_spares_t *sp = w->req_spares;
    if (sp == NULL)
        return;
    for (unsigned i = 0; i < sp->cnt; i++) {
        pt_arena_destroy(sp->v[i].arena);
        evbuffer_free(sp->v[i].body);
    }
    free(sp);
    w->req_spares = NULL;
}

unsigned pt__req_spares_count(const pt_worker_t *w)
{
    return w->req_spares != NULL ? w->req_spares->cnt : 0;
}

/* Keeps (arena, body) for the next request, or frees them when full. */
static void spare_put(pt_worker_t *w, pt_arena_t *a, struct evbuffer *body)
{
    pt__req_spares_t *sp = w != NULL ? w->req_spares : NULL;
    if (sp == NULL && w != NULL) {
        sp = calloc(1, sizeof(*sp));
        w->req_spares = sp;
    }
    if (sp == NULL || sp->cnt == REQ_SPARE_MAX || body == NULL) {
        if (body != NULL)
            evbuffer_free(body);
        pt_arena_destroy(a); /* runs the cleanups */
        return;
    }
    size_t left = evbuffer_get_length(body);
    if (left != 0)
        evbuffer_drain(body, left); /* a body never read (an early answer) */
    pt_arena_reset(a); /* runs the cleanups; keeps the first block */
    if (sp->cnt == REQ_SPARE_MAX) { /* a cleanup ended other requests meanwhile */
        evbuffer_free(body);
        pt_arena_destroy(a);
        return;
    }
    sp->v[sp->cnt++] = (req_spare_t){a, body};
}

static void finalize(pt_req_t *req)
{
    req->finalized = true;
    pt__chain_log(req);
    pt_observe_request(req);
    pt__chain_dispose(req);
    pt_config_t *cfg = req->config;
    pt_worker_t *w = req->worker;
    spare_put(w, req->arena, req->body); /* req itself lives in the arena: gone after this */
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

void pt__req_cancel_handler(pt_req_t *req)
{
    run_abort_hooks(req);
}

pt_req_t *pt__req_new(pt_worker_t *w, const pt_stream_ops_t *ops, void *stream)
{
    pt__req_spares_t *sp = w != NULL ? w->req_spares : NULL;
    pt_arena_t *a;
    struct evbuffer *body;
    if (sp != NULL && sp->cnt != 0) {
        req_spare_t *s = &sp->v[--sp->cnt];
        a = s->arena;
        body = s->body;
    } else {
        a = pt_arena_new(REQ_ARENA_FIRST, REQ_ARENA_LIMIT);
        body = evbuffer_new();
        if (body == NULL) {
            fputs("portico: out of memory\n", stderr);
            abort();
        }
    }
    pt_req_t *req = pt_arena_zalloc(a, sizeof(*req));
    req->arena = a;
    req->worker = w;
    req->config = pt__worker_config_acquire(w);
    req->ops = ops;
    req->stream = stream;
    req->content_length = -1;
    req->content_length_in = -1;
    req->resp_content_length = -1;
    req->body_limit = req->config->limits.max_body; /* until routing says otherwise */
    req->scheme = PT_STR("http");
    pt_headers_init(&req->headers, a);
    pt_headers_init(&req->resp_headers, a);
    pt_headers_init(&req->resp_trailers, a);
    req->body = body;
    req->holds = PT_REQ_HOLD_CODEC;
    req->start_ns = pt_now_ns();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    req->start_wall_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    return req;
}

/* The route runs request-body filters (or buffers): bytes go through chain.c first. */
static bool body_filtered_route(const pt_req_t *req)
{
    const pt_route_t *r = req->route.route;
    /* A tunnel's bytes are not an HTTP body: body filters never see them. */
    return r != NULL && !req->is_tunnel && (r->has_request_body_filters || r->request_buffering);
}

/*
 * The request body cap once routed: the route's max_body, unless its handler
 * bounds the body itself (gRPC streams are limited per message, never by
 * their total: issue 14). A route with request_buffering holds the whole body
 * in memory, so max_body stays its cap whatever the handler says.
 */
static uint64_t body_limit_of(pt_req_t *req)
{
    const pt_route_t *r = req->route.route;
    uint64_t limit = r != NULL && r->max_body != 0 ? r->max_body : req->config->limits.max_body;
    if (r != NULL && !r->request_buffering && r->handler != NULL &&
        r->handler->body_limit != NULL)
        limit = r->handler->body_limit(req, r->handler_conf, limit);
    return limit;
}

static void after_request_headers(pt_req_t *req, pt_fstatus_t st);

void pt_req_buffer_body(pt_req_t *req)
{
    if (req->handler_started || req->buffer_body || req->route.route == NULL)
        return;
    /* The body is held like a request_buffering route's: max_body is its cap. */
    const pt_route_t *r = req->route.route;
    uint64_t cap = r->max_body != 0 ? r->max_body : req->config->limits.max_body;
    req->buffer_body = true;
    if (req->body_limit > cap)
        req->body_limit = cap;
}

/*
 * Load shedding (core/overload.h): over the memory watermark a new request
 * is answered 503 OVERLOADED with Retry-After before routing, and its
 * connection is not kept. Requests already running are left alone.
 */
static bool shed(pt_req_t *req)
{
    const pt_overload_t *o = &req->config->overload;
    if (!pt_overload_over(o))
        return false;
    pt_overload_count_shed();
    req->close_after = true;
    pt__req_reject(req, PT_ERR_OVERLOADED, "over the overload.memory watermark");
    return true;
}

void pt__req_headers_done(pt_req_t *req)
{
    const char *why = NULL;
    req->method_bit = pt_method_bit(req->method);
    assign_request_id(req);
    pt_trace_request_start(req); /* before routing: 404s are traced too, filters see the header */
    if (shed(req))
        return;

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
    req->body_limit = body_limit_of(req);
    if (req->content_length > 0 && (uint64_t)req->content_length > req->body_limit) {
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
    req->content_length_in = req->content_length;
    if (body_filtered_route(req)) {
        /* What arrived before routing (at most the end mark, or a first DATA
         * frame) goes through the filters like the rest. */
        size_t early = evbuffer_get_length(req->body);
        req->body_out_done = false;
        if (early != 0 || req->body_done) {
            size_t raw; /* the side is not open yet: this only queues */
            (void)pt__chain_req_body(req, evbuffer_pullup(req->body, -1), early, req->body_done, &raw);
            evbuffer_drain(req->body, early);
        }
    }
    after_request_headers(req, pt__chain_run(req));
}

static void start_handler(pt_req_t *req)
{
    const pt_route_t *route = req->route.route;
    req->holds |= PT_REQ_HOLD_HANDLER;
    req->handler_started = true;
    route->handler->start(req, route->handler_conf);
}

/* New filtered request-body bytes are in req->body; `raw` input bytes were consumed. */
static void body_filtered(pt_req_t *req, size_t raw)
{
    req->body_unacked += raw;
    if (req->body_unacked != 0 &&
        (req->buffering || evbuffer_get_length(req->body) < PT_REQ_BODY_HIGH_WATER)) {
        size_t n = (size_t)req->body_unacked;
        req->body_unacked = 0;
        if (req->ops->body_consumed != NULL)
            req->ops->body_consumed(req, n);
    }
    if (req->buffering) {
        if (req->body_out_done) {
            req->buffering = false;
            req->content_length = (int64_t)evbuffer_get_length(req->body);
            req->expect_body = req->content_length > 0;
            start_handler(req);
        }
        return;
    }
    if (req->handler_started && req->route.route->handler->on_body != NULL &&
        (req->holds & PT_REQ_HOLD_HANDLER))
        req->route.route->handler->on_body(req);
}

/* A request-body filter refused (ERROR) or answered (RESPOND): answer the
 * client, stop reading the body, stop the handler if it runs. */
static void body_refused(pt_req_t *req, bool respond)
{
    /* The rest of the body is read and dropped (the codec sees body_done),
     * so the client, still sending, gets the answer instead of a reset; past
     * a bound the connection closes instead. HTTP/2 drops just the stream. */
    uint64_t left = req->content_length_in >= 0 && (uint64_t)req->content_length_in >= req->body_received
                        ? (uint64_t)req->content_length_in - req->body_received
                        : UINT64_MAX;
    if (req->version < 20 && !req->body_done && left > BODY_DISCARD_MAX)
        req->close_after = true;
    req->body_done = true;
    req->body_out_done = true;
    req->buffering = false;
    evbuffer_drain(req->body, evbuffer_get_length(req->body));
    if (respond && !pt__resp_started(req) && req->resp_status >= 200 && req->resp_status <= 999) {
        pt__resp_head(req);
        pt__resp_body(req, req->local_body.base, req->local_body.len, true);
    } else {
        pt__resp_fail(req, req->fail_status != 0 ? req->fail_status : PT_ERR_INTERNAL,
                      req->fail_reason != NULL ? req->fail_reason : "request body filter failed");
    }
    /* A running handler must stop: its abort hooks cancel the upstream work. */
    run_abort_hooks(req);
    pt__chain_abandon(req);
}

static void body_outcome(pt_req_t *req, pt_pipe_t rc, size_t raw)
{
    if (rc == PT_PIPE_FAILED || rc == PT_PIPE_RESPOND)
        body_refused(req, rc == PT_PIPE_RESPOND);
    else
        body_filtered(req, raw);
}

/* The request side is through: the handler takes over (after the whole body
 * went through the filters, for request_buffering routes). */
static void handler_go(pt_req_t *req)
{
    const pt_route_t *route = req->route.route;
    if (route->handler == NULL) {
        pt__resp_fail(req, PT_ERR_NOT_IMPLEMENTED, "route has no handler");
        return;
    }
    if (req->upgrade.len != 0 && !route->handler->tunnels) { /* see handler.h */
        if (req->version == 20) {
            pt__resp_fail(req, PT_ERR_NOT_IMPLEMENTED, "route handler does not open tunnels");
            return;
        }
        req->upgrade = PT_STR_NULL;
    }
    if (req->expect_continue && !req->body_done && !req->continue_sent &&
        req->ops->send_continue != NULL) {
        req->continue_sent = true;
        req->ops->send_continue(req);
    }
    if (!body_filtered_route(req)) {
        start_handler(req);
        return;
    }
    size_t raw;
    if ((route->request_buffering || req->buffer_body) && !req->body_out_done) {
        req->buffering = true;
        pt_pipe_t rc = pt__chain_req_open(req, &raw);
        body_outcome(req, rc, raw);
        return;
    }
    start_handler(req);
    if (!req->aborted && !pt__resp_ended(req)) {
        pt_pipe_t rc = pt__chain_req_open(req, &raw);
        body_outcome(req, rc, raw);
    }
}

static void send_local(pt_req_t *req)
{
    /* 1xx is never a final answer: a client would wait for the real one. */
    if (req->resp_status < 200 || req->resp_status > 999) {
        pt__resp_fail(req, PT_ERR_INTERNAL, "filter returned RESPOND without a response");
        return;
    }
    pt__resp_head(req);
    pt__resp_body(req, req->local_body.base, req->local_body.len, true);
}

/* What the request-header phase (or its resumed rest) ended in. */
static void after_request_headers(pt_req_t *req, pt_fstatus_t st)
{
    switch (st) {
    case PT_FILTER_CONTINUE:
        handler_go(req);
        break;
    case PT_FILTER_RESPOND:
        send_local(req);
        break;
    case PT_FILTER_SUSPEND:
        break; /* pt_chain_resume() continues */
    default:
        pt__resp_fail(req, req->fail_status != 0 ? req->fail_status : PT_ERR_INTERNAL,
                      req->fail_reason != NULL ? req->fail_reason : "filter failed");
        break;
    }
}

size_t pt__req_body_queued(const pt_req_t *req)
{
    if (req->buffering)
        return 0;
    return evbuffer_get_length(req->body) + pt__chain_req_queued(req);
}

void pt__req_reject(pt_req_t *req, int st, const char *reason)
{
    if (req->request_id.base == NULL)
        assign_request_id(req); /* codec rejects come before pt__req_headers_done */
    pt__resp_fail(req, st, reason);
}

/* Client bytes for a route with request-body filters. */
static void filtered_in(pt_req_t *req, const void *data, size_t len, bool end)
{
    size_t raw;
    pt__req_enter(req); /* a refusal or the handler may release the last hold */
    pt_pipe_t rc = pt__chain_req_body(req, data, len, end, &raw);
    body_outcome(req, rc, raw);
    pt__req_leave(req);
}

void pt__req_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (req->body_done || req->finalized)
        return;
    if (len != 0) {
        req->body_received += len;
        /* A tunnel's client bytes are a stream, not a body: no size limit. */
        if (!req->is_tunnel && req->body_received > req->body_limit) {
            req->body_done = true;
            req->body_out_done = true;
            req->buffering = false;
            req->close_after = true;
            evbuffer_drain(req->body, evbuffer_get_length(req->body));
            pt__resp_fail(req, PT_ERR_LIMIT, "request body larger than the route allows");
            /* The handler (if any) must stop: its abort hooks cancel upstream work.
             * A suspended filter is cancelled the same way; its late resume, if
             * the request is still alive, finds the chain no longer suspended. */
            run_abort_hooks(req);
            pt__chain_abandon(req); /* the codec still holds it */
            return;
        }
        if (body_filtered_route(req)) {
            if (end)
                req->body_done = true;
            filtered_in(req, data, len, end);
            return;
        }
        if (req->body_offer_len != 0) {
            /* called again while bytes are lent: they come first */
            evbuffer_add(req->body, req->body_offer, req->body_offer_len);
            req->body_offer_len = 0;
        }
        if (req->is_tunnel && evbuffer_get_length(req->body) == 0 && req->handler_started &&
            req->route.route->handler->on_body != NULL && (req->holds & PT_REQ_HOLD_HANDLER)) {
            /* A tunnel's bytes are lent to the handler, which reads them in
             * place from on_body (pt__req_body_read); what it leaves is copied. */
            if (end) {
                req->body_done = true;
                req->body_out_done = true;
            }
            pt__req_enter(req);
            req->body_offer = data;
            req->body_offer_len = len;
            req->route.route->handler->on_body(req);
            if (req->body_offer_len != 0)
                evbuffer_add(req->body, req->body_offer, req->body_offer_len);
            req->body_offer = NULL;
            req->body_offer_len = 0;
            pt__req_leave(req);
            return;
        }
        evbuffer_add(req->body, data, len);
    } else if (end && body_filtered_route(req)) {
        req->body_done = true;
        filtered_in(req, NULL, 0, true);
        return;
    }
    if (end) {
        req->body_done = true;
        req->body_out_done = true;
    }
    if (req->handler_started && req->route.route->handler->on_body != NULL &&
        (req->holds & PT_REQ_HOLD_HANDLER))
        req->route.route->handler->on_body(req);
}

size_t pt__req_body_read(pt_req_t *req, char *buf, size_t max, bool *eof)
{
    if (req->body_offer_len != 0) { /* lent tunnel bytes (pt__req_body); `body` is empty */
        size_t k = req->body_offer_len < max ? req->body_offer_len : max;
        memcpy(buf, req->body_offer, k);
        req->body_offer += k;
        req->body_offer_len -= k;
        *eof = false;
        if (k != 0 && req->ops->body_consumed != NULL)
            req->ops->body_consumed(req, k);
        return k;
    }
    int n = evbuffer_remove(req->body, buf, max);
    if (n < 0)
        n = 0;
    *eof = req->body_out_done && evbuffer_get_length(req->body) == 0;
    if (body_filtered_route(req)) {
        /* The filters ran when the bytes arrived; report what they took to
         * the codec once the handler's queue is low again. */
        if (n > 0 && req->body_unacked != 0 &&
            evbuffer_get_length(req->body) < PT_REQ_BODY_HIGH_WATER) {
            size_t acked = (size_t)req->body_unacked;
            req->body_unacked = 0;
            if (req->ops->body_consumed != NULL)
                req->ops->body_consumed(req, acked);
        }
        return (size_t)n;
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
    if (!pt__resp_ended(req)) {
        /* The codec gave up on the stream before the response ended: treat as an abort. */
        pt__req_abort(req);
        return;
    }
    if (req->wait != PT_WAIT_NONE) {
        run_abort_hooks(req);
        pt__chain_abandon(req);
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
    pt__chain_abandon(req);
    release(req, PT_REQ_HOLD_CODEC);
}

void pt__req_handler_done(pt_req_t *req)
{
    if (!(req->holds & PT_REQ_HOLD_HANDLER))
        return;
    release(req, PT_REQ_HOLD_HANDLER);
}

/* ---- responses --------------------------------------------------------- */

static void resp_outcome(pt_req_t *req, pt_pipe_t rc)
{
    if (rc == PT_PIPE_FAILED && !pt__resp_ended(req)) {
        req->resp_state = PT_RESP_ENDED;
        req->ops->reset(req); /* the client sees a truncation, never a wrong body */
    }
}

/* The handler may have paused on output that the chain held and just released. */
static void maybe_writable(pt_req_t *req)
{
    if (req->want_writable && !req->aborted && pt__chain_resp_queued(req) == 0 &&
        req->ops->out_pending(req) <= req->config->limits.max_response_buffer)
        pt__req_on_writable(req);
}

/* The response-header filters are through: the head goes to the codec, then what waited. */
static void head_ready(pt_req_t *req)
{
    if (pt__resp_ended(req) || req->aborted)
        return; /* cut off (pt__resp_fail) while a filter waited */
    req->resp_state = PT_RESP_HEAD_SENT;
    req->ops->send_head(req);
    if (req->resp_replaced)
        resp_outcome(req, pt__chain_resp_body(req, req->local_body.base, req->local_body.len, true));
    else
        resp_outcome(req, pt__chain_resp_flush(req, false));
}

void pt__resp_head(pt_req_t *req)
{
    if (pt__resp_started(req) || req->aborted)
        return;
    req->resp_state = PT_RESP_STARTED;
    /* request_id is request arena memory (or a literal): not copied */
    pt_headers_remove(&req->resp_headers, PT_STR("x-request-id"));
    pt__headers_push(&req->resp_headers, PT_STR("x-request-id"), req->request_id);
    if (pt__chain_resp_head(req, 0) == PT_FILTER_CONTINUE)
        head_ready(req);
}

void pt__resp_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (pt__resp_ended(req) || req->aborted || !pt__resp_started(req) || req->resp_replaced)
        return;
    resp_outcome(req, pt__chain_resp_body(req, data, len, end));
}

void pt__resp_body_owned(pt_req_t *req, const void *data, size_t len, pt_body_release_fn release,
                         void *arg)
{
    if (pt__resp_ended(req) || req->aborted || !pt__resp_started(req) || req->resp_replaced) {
        release(data, len, arg);
        return;
    }
    resp_outcome(req, pt__chain_resp_body_owned(req, data, len, release, arg));
}

/* ---- resuming a suspended filter (filter.h) ----------------------------- */

void pt_chain_resume(pt_req_t *req, pt_fstatus_t st)
{
    /* Not suspended: a second resume, or the abort path already let go. */
    if (req->wait == PT_WAIT_NONE || req->aborted)
        return;
    pt_chain_wait_t wait = req->wait;
    req->wait = PT_WAIT_NONE;
    req->holds &= ~PT_REQ_HOLD_CHAIN;
    pt__req_enter(req); /* what follows may release the last hold */
    size_t raw = 0;
    switch (wait) {
    case PT_WAIT_REQ_HEADERS:
        after_request_headers(req, st == PT_FILTER_CONTINUE ? pt__chain_run(req) : st);
        break;
    case PT_WAIT_REQ_BODY:
        if (st == PT_FILTER_CONTINUE) {
            pt_pipe_t rc = pt__chain_req_resume(req, &raw);
            body_outcome(req, rc, raw);
        } else {
            body_refused(req, st == PT_FILTER_RESPOND);
        }
        break;
    case PT_WAIT_RESP_HEADERS:
        if (st != PT_FILTER_CONTINUE)
            pt__chain_resp_replace(req, st, req->wait_step);
        if (pt__chain_resp_head(req, req->wait_step + 1) == PT_FILTER_CONTINUE)
            head_ready(req);
        break;
    case PT_WAIT_RESP_BODY:
        resp_outcome(req, st == PT_FILTER_CONTINUE ? pt__chain_resp_flush(req, true) : PT_PIPE_FAILED);
        break;
    case PT_WAIT_NONE:
        break;
    }
    maybe_writable(req);
    pt__req_leave(req);
}

bool pt__resp_blocked(pt_req_t *req)
{
    if (req->ops->out_pending(req) + pt__chain_resp_queued(req) <=
        req->config->limits.max_response_buffer)
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
    if (req->aborted || pt__resp_ended(req))
        return;
    if (pt__resp_started(req)) {
        req->resp_state = PT_RESP_ENDED;
        req->ops->reset(req);
        return;
    }
    pt_headers_init(&req->resp_headers, req->arena);
    if (pt__req_is_grpc(req) && pt__grpc_local_reply(req, st, reason) == 0) {
        pt__resp_head(req);
        pt__resp_body(req, NULL, 0, true);
        return;
    }
    pt_headers_init(&req->resp_headers, req->arena);
    pt_str_t body = pt__error_body(req, st, reason);
    req->resp_status = pt_status_http(st);
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    if (st == PT_ERR_OVERLOADED) { /* shed (overload.h) or a local shortage: come back later */
        char ra[16];
        int n = snprintf(ra, sizeof(ra), "%u", req->config->overload.retry_after_s);
        pt_headers_add(&req->resp_headers, PT_STR("retry-after"), (pt_str_t){ra, (size_t)n});
    }
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
bool pt_req_is_tunnel(const pt_req_t *req) { return req->is_tunnel; }
int64_t pt_req_body_length(const pt_req_t *req) { return req->content_length; }
void pt_req_set_body_length(pt_req_t *req, int64_t len) { req->content_length = len < 0 ? -1 : len; }
int64_t pt_req_resp_body_length(const pt_req_t *req) { return req->resp_content_length; }
void pt_req_set_resp_body_length(pt_req_t *req, int64_t len)
{
    if (req->resp_state < PT_RESP_HEAD_SENT)
        req->resp_content_length = len < 0 ? -1 : len;
}

pt_str_t pt_req_param(const pt_req_t *req, pt_str_t name)
{
    for (size_t i = 0; i < req->route.param_cnt; i++)
        if (pt_str_eq(req->route.params[i].name, name))
            return req->route.params[i].value;
    return PT_STR_NULL;
}

bool pt_req_allowed_methods(pt_req_t *req, uint32_t *bits)
{
    const pt_route_t *r = req->route.route;
    if (r == NULL)
        return false;
    if (r->handler != NULL && r->handler->cors_methods != NULL) {
        *bits = r->handler->cors_methods(req, r->handler_conf);
        return true;
    }
    if (r->match.methods == 0)
        return false;
    *bits = r->match.methods;
    return true;
}

pt_str_t pt_req_upgrade(const pt_req_t *req) { return req->upgrade.len != 0 ? req->upgrade : PT_STR(""); }

int pt_req_set_query(pt_req_t *req, pt_str_t query)
{
    pt_str_t q = pt_arena_strdup(req->arena, query);
    if (q.base == NULL)
        return PT_ERR_LIMIT;
    req->query = q;
    return 0;
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

static int respond(pt_req_t *req, int status, pt_str_t content_type, pt_str_t b)
{
    if (pt__resp_started(req)) {
        /* From the response side: the reply replaces the handler's response whole. */
        pt_headers_init(&req->resp_headers, req->arena);
        pt_headers_init(&req->resp_trailers, req->arena);
    }
    req->resp_status = status;
    req->local_body = b;
    req->resp_content_length = (int64_t)b.len;
    if (content_type.len != 0 &&
        pt_headers_set(&req->resp_headers, PT_STR("content-type"), content_type) != 0)
        return PT_ERR_LIMIT;
    return 0;
}

int pt_req_respond(pt_req_t *req, int status, pt_str_t content_type, pt_str_t body)
{
    pt_str_t b = pt_arena_strdup(req->arena, body);
    if (b.base == NULL)
        return PT_ERR_LIMIT;
    return respond(req, status, content_type, b);
}

int pt_req_respond_nocopy(pt_req_t *req, int status, pt_str_t body)
{
    return respond(req, status, PT_STR(""), body.base != NULL ? body : PT_STR(""));
}

void pt_req_fail(pt_req_t *req, int st, const char *reason)
{
    pt__req_set_fail(req, st, reason);
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
