/*
 * chain.c -- running the filter chain (see filter.h for the contract, chain.h
 * for the body pipelines).
 *
 * Request-side phases run in chain order from req->chain_pos; every filter
 * whose request side ran is counted in req->chain_ran, and exactly those see
 * the response side, in reverse order, so each filter wraps the ones after
 * it. A local reply (a filter's RESPOND or a gateway error) goes through the
 * same response path.
 *
 * Suspension: req->wait says which phase waits for pt_chain_resume(); the
 * chain holds the request meanwhile (PT_REQ_HOLD_CHAIN). Body bytes that
 * arrive while a body or response-head filter waits are queued in the side's
 * pipeline (struct pt_bodyq) and counted by the backpressure checks, so a
 * waiting filter stops the client (request side) or the handler's upstream
 * reads (response side) instead of growing a buffer.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/xalloc.h"
#include "core/chain.h"

/* ---- scratch memory for body-filter output ------------------------------ */

/* Outputs of one run live here until the run delivered them (the codec and
 * req->body copy). Runs can nest (a delivery may make a handler answer), so
 * the store is emptied only when the outermost run ends. */
#define SCRATCH_BLOCK 16384u
#define SCRATCH_RUN_LIMIT ((size_t)64 << 20) /* one run's output; past it -> PT_ERR_LIMIT */

typedef struct scratch_blk {
    struct scratch_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} scratch_blk_t;

struct pt_scratch {
    scratch_blk_t *blocks; /* newest first */
    size_t total;          /* bytes handed out since the last reset */
    unsigned depth;        /* runs in progress */
};

struct pt_body_out {
    struct pt_scratch *s;
    pt_str_t *v;
    size_t cnt, cap;
};

static void *scratch_alloc(struct pt_scratch *s, size_t len, size_t align)
{
    if (len > SCRATCH_RUN_LIMIT - s->total)
        return NULL;
    scratch_blk_t *b = s->blocks;
    size_t at = b != NULL ? (b->used + align - 1) & ~(align - 1) : 0;
    if (b == NULL || at > b->cap || b->cap - at < len) {
        size_t cap = len > SCRATCH_BLOCK ? len : SCRATCH_BLOCK;
        b = pt_xcheck(malloc(sizeof(*b) + cap));
        b->next = s->blocks;
        b->used = 0;
        b->cap = cap;
        s->blocks = b;
        at = 0;
    }
    b->used = at + len;
    s->total += len;
    return b->data + at;
}

/* Keeps one standard block for the next run, frees the rest. */
static void scratch_reset(struct pt_scratch *s)
{
    scratch_blk_t *keep = NULL, *next;
    for (scratch_blk_t *b = s->blocks; b != NULL; b = next) {
        next = b->next;
        if (keep == NULL && b->cap == SCRATCH_BLOCK) {
            keep = b;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(b);
        }
    }
    s->blocks = keep;
    s->total = 0;
}

static int out_push(pt_body_out_t *o, const char *base, size_t len)
{
    if (len == 0)
        return 0;
    if (o->cnt != 0 && o->v[o->cnt - 1].base + o->v[o->cnt - 1].len == base) {
        o->v[o->cnt - 1].len += len; /* contiguous with the last slice */
        return 0;
    }
    if (o->cnt == o->cap) {
        size_t cap = o->cap != 0 ? o->cap * 2 : 8;
        pt_str_t *v = scratch_alloc(o->s, cap * sizeof(*v), _Alignof(pt_str_t));
        if (v == NULL)
            return PT_ERR_LIMIT;
        if (o->cnt != 0)
            memcpy(v, o->v, o->cnt * sizeof(*v));
        o->v = v;
        o->cap = cap;
    }
    o->v[o->cnt++] = (pt_str_t){base, len};
    return 0;
}

int pt_body_write(pt_body_out_t *out, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    char *p = scratch_alloc(out->s, len, 1);
    if (p == NULL)
        return PT_ERR_LIMIT;
    memcpy(p, data, len);
    return out_push(out, p, len);
}

int pt_body_pass(pt_body_out_t *out, const pt_bufvec_t *in)
{
    for (size_t i = 0; i < in->cnt; i++) {
        int rc = out_push(out, in->v[i].base, in->v[i].len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- request headers ---------------------------------------------------- */

static void suspend(pt_req_t *req, pt_chain_wait_t wait)
{
    req->wait = wait;
    req->holds |= PT_REQ_HOLD_CHAIN;
}

pt_fstatus_t pt__chain_run(pt_req_t *req)
{
    while (req->chain_pos < req->chain_cnt) {
        size_t i = req->chain_pos++;
        const pt_filter_t *f = req->chain[i];
        req->chain_ran = i + 1;
        if (f->def->on_request_headers == NULL)
            continue;
        pt_fstatus_t st = f->def->on_request_headers(f, req, req->filter_ctx[i]);
        if (st == PT_FILTER_SUSPEND)
            suspend(req, PT_WAIT_REQ_HEADERS);
        if (st != PT_FILTER_CONTINUE)
            return st;
    }
    return PT_FILTER_CONTINUE;
}

/* ---- body pipelines ----------------------------------------------------- */

struct pt_bodyq {
    struct evbuffer *pend; /* entered, not yet run */
    bool pend_end;
    struct evbuffer *park; /* the suspended filter's input */
    bool park_end;
    size_t park_step;
    bool parked;
    bool open;             /* request side: the filters may run */
    bool ended;            /* the end went through */
};

enum { RUN_DONE, RUN_PARKED, RUN_FAILED, RUN_RESPOND };

static struct pt_bodyq *bodyq(pt_req_t *req, int side)
{
    struct pt_bodyq *q = req->bq[side];
    if (q == NULL) {
        q = pt_xcalloc(1, sizeof(*q));
        q->pend = pt_xcheck(evbuffer_new());
        q->park = pt_xcheck(evbuffer_new());
        req->bq[side] = q;
    }
    return q;
}

static size_t queued(const pt_req_t *req, int side)
{
    const struct pt_bodyq *q = req->bq[side];
    return q != NULL ? evbuffer_get_length(q->pend) + evbuffer_get_length(q->park) : 0;
}

size_t pt__chain_resp_queued(const pt_req_t *req) { return queued(req, PT_SIDE_RESP); }
size_t pt__chain_req_queued(const pt_req_t *req) { return queued(req, PT_SIDE_REQ); }

static struct pt_scratch *run_begin(pt_req_t *req)
{
    if (req->scratch == NULL)
        req->scratch = pt_xcalloc(1, sizeof(*req->scratch));
    req->scratch->depth++;
    return req->scratch;
}

static void run_end(pt_req_t *req)
{
    if (--req->scratch->depth == 0)
        scratch_reset(req->scratch);
}

/* Request side: the output goes to the handler's queue. Returns RUN_DONE or RUN_FAILED. */
static int deliver_req(pt_req_t *req, const pt_bufvec_t *in, bool end)
{
    uint64_t max = req->body_limit; /* the route's max_body, or its handler's (request.c) */
    for (size_t k = 0; k < in->cnt; k++) {
        req->body_out_total += in->v[k].len;
        if (req->body_out_total > max) {
            pt__req_set_fail(req, PT_ERR_LIMIT,
                             "request body (after filters) larger than the route allows");
            return RUN_FAILED;
        }
        evbuffer_add(req->body, in->v[k].base, in->v[k].len);
    }
    /* The handler sends req->content_length upstream: a body that no longer
     * matches it would desynchronise the upstream connection. */
    if (!req->buffering && req->content_length >= 0 &&
        (req->body_out_total > (uint64_t)req->content_length ||
         (end && req->body_out_total != (uint64_t)req->content_length))) {
        pt__req_set_fail(req, PT_ERR_INTERNAL,
                         "a request-body filter changed the length without pt_req_set_body_length");
        return RUN_FAILED;
    }
    if (end) {
        req->body_out_done = true;
        req->bq[PT_SIDE_REQ]->ended = true;
    }
    return RUN_DONE;
}

/* Response side: the output goes to the codec. Returns RUN_DONE or RUN_FAILED. */
static int deliver_resp(pt_req_t *req, const pt_bufvec_t *in, bool end)
{
    uint64_t total = 0;
    for (size_t k = 0; k < in->cnt; k++)
        total += in->v[k].len;
    if (req->resp_content_length >= 0 &&
        (req->bytes_out + total > (uint64_t)req->resp_content_length ||
         (end && req->bytes_out + total != (uint64_t)req->resp_content_length))) {
        pt__req_set_fail(req, PT_ERR_INTERNAL,
                         "a response-body filter changed the length without pt_req_set_resp_body_length");
        return RUN_FAILED;
    }
    if (end) {
        req->resp_state = PT_RESP_ENDED;
        if (req->bq[PT_SIDE_RESP] != NULL)
            req->bq[PT_SIDE_RESP]->ended = true;
    }
    for (size_t k = 0; k < in->cnt && !req->aborted; k++) {
        req->bytes_out += in->v[k].len;
        req->ops->send_body(req, in->v[k].base, in->v[k].len, end && k + 1 == in->cnt);
    }
    if (end && in->cnt == 0 && !req->aborted)
        req->ops->send_body(req, NULL, 0, true);
    return RUN_DONE;
}

typedef pt_fstatus_t (*body_cb)(const pt_filter_t *, pt_req_t *, void *, const pt_bufvec_t *, bool,
                                pt_body_out_t *);

/*
 * Passes `in` through the side's filters from `step` on and delivers the
 * result. A filter that suspends gets its input parked (copied) and is
 * called again with it after the resume.
 */
static int run(pt_req_t *req, int side, size_t step, pt_bufvec_t in, bool end)
{
    struct pt_scratch *s = req->scratch;
    size_t n = req->chain_ran;
    for (; step < n; step++) {
        size_t i = side == PT_SIDE_REQ ? step : n - 1 - step;
        const pt_filter_t *f = req->chain[i];
        body_cb cb = side == PT_SIDE_REQ ? f->def->on_request_body : f->def->on_response_body;
        if (cb == NULL)
            continue;
        pt_body_out_t out = {.s = s};
        pt_fstatus_t st = cb(f, req, req->filter_ctx[i], &in, end, &out);
        if (st == PT_FILTER_CONTINUE) {
            in = (pt_bufvec_t){out.v, out.cnt};
            continue;
        }
        if (st == PT_FILTER_SUSPEND) {
            if (out.cnt != 0) {
                pt__req_set_fail(req, PT_ERR_INTERNAL, "a body filter wrote output and suspended");
                return RUN_FAILED;
            }
            struct pt_bodyq *q = req->bq[side];
            for (size_t k = 0; k < in.cnt; k++)
                evbuffer_add(q->park, in.v[k].base, in.v[k].len);
            q->park_end = end;
            q->park_step = step;
            q->parked = true;
            suspend(req, side == PT_SIDE_REQ ? PT_WAIT_REQ_BODY : PT_WAIT_RESP_BODY);
            return RUN_PARKED;
        }
        if (st == PT_FILTER_RESPOND && side == PT_SIDE_REQ)
            return RUN_RESPOND;
        if (req->fail_status == 0 || req->fail_status == PT_ERR_CANCELED)
            pt__req_set_fail(req, PT_ERR_INTERNAL, "body filter failed");
        return RUN_FAILED;
    }
    return side == PT_SIDE_REQ ? deliver_req(req, &in, end) : deliver_resp(req, &in, end);
}

/* Runs the bytes of `buf` (then empties it) from `step`. */
static int run_buf(pt_req_t *req, int side, size_t step, struct evbuffer *buf, bool end)
{
    size_t len = evbuffer_get_length(buf);
    pt_str_t one = {len != 0 ? (const char *)evbuffer_pullup(buf, -1) : NULL, len};
    int rc = run(req, side, step, (pt_bufvec_t){&one, len != 0 ? 1 : 0}, end);
    evbuffer_drain(buf, len);
    return rc;
}

static size_t first_step(const pt_req_t *req, int side)
{
    return side == PT_SIDE_RESP ? req->resp_body_first : 0;
}

/*
 * Runs what is parked (after a resume), then what is pending, until all of
 * it went through or a filter suspends again. *raw counts the pending bytes
 * taken in (request side: client bytes the codec may now forget).
 */
static int pump(pt_req_t *req, int side, bool resumed, size_t *raw)
{
    struct pt_bodyq *q = req->bq[side];
    struct evbuffer *tmp = pt_xcheck(evbuffer_new());
    run_begin(req);
    int rc = RUN_DONE;
    *raw = 0;
    if (resumed && q->parked) {
        q->parked = false;
        evbuffer_add_buffer(tmp, q->park);
        rc = run_buf(req, side, q->park_step, tmp, q->park_end);
    }
    while (rc == RUN_DONE && !q->ended && !req->aborted &&
           (evbuffer_get_length(q->pend) != 0 || q->pend_end)) {
        bool end = q->pend_end;
        q->pend_end = false;
        *raw += evbuffer_get_length(q->pend);
        evbuffer_add_buffer(tmp, q->pend);
        rc = run_buf(req, side, first_step(req, side), tmp, end);
    }
    evbuffer_free(tmp);
    run_end(req);
    return rc;
}

static pt_pipe_t outcome(int rc)
{
    switch (rc) {
    case RUN_DONE:
        return PT_PIPE_DONE;
    case RUN_PARKED:
        return PT_PIPE_WAIT;
    case RUN_RESPOND:
        return PT_PIPE_RESPOND;
    default:
        return PT_PIPE_FAILED;
    }
}

pt_pipe_t pt__chain_req_body(pt_req_t *req, const void *data, size_t len, bool end, size_t *raw)
{
    struct pt_bodyq *q = bodyq(req, PT_SIDE_REQ);
    *raw = 0;
    if (len != 0)
        evbuffer_add(q->pend, data, len);
    q->pend_end |= end;
    if (!q->open || req->wait == PT_WAIT_REQ_BODY)
        return PT_PIPE_WAIT;
    return outcome(pump(req, PT_SIDE_REQ, false, raw));
}

pt_pipe_t pt__chain_req_open(pt_req_t *req, size_t *raw)
{
    struct pt_bodyq *q = bodyq(req, PT_SIDE_REQ);
    q->open = true;
    *raw = 0;
    if (req->wait == PT_WAIT_REQ_BODY)
        return PT_PIPE_WAIT;
    return outcome(pump(req, PT_SIDE_REQ, false, raw));
}

pt_pipe_t pt__chain_req_resume(pt_req_t *req, size_t *raw)
{
    return outcome(pump(req, PT_SIDE_REQ, true, raw));
}

/* ---- response side ------------------------------------------------------ */

/* Response bytes that no body filter sees: straight to the codec. */
static void send_plain(pt_req_t *req, const void *data, size_t len, bool end)
{
    req->bytes_out += len;
    if (end)
        req->resp_state = PT_RESP_ENDED;
    req->ops->send_body(req, data, len, end);
}

static bool resp_filtered(const pt_req_t *req)
{
    /* A tunnel's bytes are not an HTTP body: body filters never see them. */
    return req->chain_ran != 0 && !req->is_tunnel && req->route.route->has_response_body_filters;
}

pt_pipe_t pt__chain_resp_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (pt__resp_ended(req) || req->aborted)
        return PT_PIPE_DONE;
    struct pt_bodyq *q = req->bq[PT_SIDE_RESP];
    if (req->wait == PT_WAIT_RESP_HEADERS || req->wait == PT_WAIT_RESP_BODY ||
        (q != NULL && evbuffer_get_length(q->pend) != 0)) {
        q = bodyq(req, PT_SIDE_RESP);
        if (len != 0)
            evbuffer_add(q->pend, data, len);
        q->pend_end |= end;
        return PT_PIPE_WAIT;
    }
    if (!resp_filtered(req)) {
        send_plain(req, data, len, end); /* the common case: no body filter */
        return PT_PIPE_DONE;
    }
    bodyq(req, PT_SIDE_RESP);
    run_begin(req);
    pt_str_t one = {data, len};
    int rc = run(req, PT_SIDE_RESP, req->resp_body_first, (pt_bufvec_t){&one, len != 0 ? 1 : 0}, end);
    run_end(req);
    return outcome(rc) == PT_PIPE_RESPOND ? PT_PIPE_FAILED : outcome(rc);
}

pt_pipe_t pt__chain_resp_body_owned(pt_req_t *req, const void *data, size_t len,
                                    pt_body_release_fn release, void *arg)
{
    struct pt_bodyq *q = req->bq[PT_SIDE_RESP];
    if (!pt__resp_ended(req) && !req->aborted && req->ops->send_body_owned != NULL &&
        req->wait != PT_WAIT_RESP_HEADERS && req->wait != PT_WAIT_RESP_BODY &&
        (q == NULL || evbuffer_get_length(q->pend) == 0) && !resp_filtered(req)) {
        /* send_plain's bookkeeping, the block handed to the codec */
        req->bytes_out += len;
        req->resp_state = PT_RESP_ENDED;
        req->ops->send_body_owned(req, data, len, release, arg);
        return PT_PIPE_DONE;
    }
    pt_pipe_t rc = pt__chain_resp_body(req, data, len, true);
    release(data, len, arg);
    return rc;
}

pt_pipe_t pt__chain_resp_flush(pt_req_t *req, bool resumed)
{
    struct pt_bodyq *q = req->bq[PT_SIDE_RESP];
    if (q == NULL || pt__resp_ended(req) || req->aborted)
        return PT_PIPE_DONE;
    if (!resp_filtered(req)) {
        /* Queued only while the head waited: hand it over as it is. */
        size_t len = evbuffer_get_length(q->pend);
        bool end = q->pend_end;
        q->pend_end = false;
        if (len != 0 || end) {
            send_plain(req, len != 0 ? evbuffer_pullup(q->pend, -1) : NULL, len, end);
            evbuffer_drain(q->pend, len);
        }
        return PT_PIPE_DONE;
    }
    size_t raw;
    pt_pipe_t rc = outcome(pump(req, PT_SIDE_RESP, resumed, &raw));
    return rc == PT_PIPE_RESPOND ? PT_PIPE_FAILED : rc;
}

void pt__chain_resp_replace(pt_req_t *req, pt_fstatus_t st, size_t step)
{
    req->resp_replaced = true;
    req->resp_body_first = step + 1;
    if (st != PT_FILTER_RESPOND || req->resp_status < 200 || req->resp_status > 999) {
        int err = req->fail_status != 0 && req->fail_status != PT_ERR_CANCELED ? req->fail_status
                                                                              : PT_ERR_INTERNAL;
        if (st == PT_FILTER_RESPOND)
            err = PT_ERR_INTERNAL;
        req->fail_status = err;
        if (req->fail_reason == NULL)
            req->fail_reason = "response-header filter failed";
        pt_headers_init(&req->resp_headers, req->arena);
        pt_headers_init(&req->resp_trailers, req->arena);
        if (!pt__req_is_grpc(req) || pt__grpc_local_reply(req, err, req->fail_reason) != 0) {
            pt_headers_init(&req->resp_headers, req->arena);
            pt_str_t body = pt__error_body(req, err, req->fail_reason);
            pt_headers_add_nocopy(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
            req->resp_status = pt_status_http(err);
            req->local_body = body;
            req->resp_content_length = (int64_t)body.len;
        }
    }
    pt_headers_set(&req->resp_headers, PT_STR("x-request-id"), req->request_id);
    struct pt_bodyq *q = req->bq[PT_SIDE_RESP];
    if (q != NULL) { /* the handler's body is not wanted any more */
        evbuffer_drain(q->pend, evbuffer_get_length(q->pend));
        q->pend_end = false;
    }
}

pt_fstatus_t pt__chain_resp_head(pt_req_t *req, size_t step)
{
    size_t n = req->chain_ran;
    for (; step < n; step++) {
        const pt_filter_t *f = req->chain[n - 1 - step];
        if (f->def->on_response_headers == NULL)
            continue;
        pt_fstatus_t st = f->def->on_response_headers(f, req, req->filter_ctx[n - 1 - step]);
        if (st == PT_FILTER_CONTINUE)
            continue;
        if (st == PT_FILTER_SUSPEND) {
            req->wait_step = step;
            suspend(req, PT_WAIT_RESP_HEADERS);
            return PT_FILTER_SUSPEND;
        }
        pt__chain_resp_replace(req, st, step);
    }
    return PT_FILTER_CONTINUE;
}

/* ---- teardown ----------------------------------------------------------- */

void pt__chain_abandon(pt_req_t *req)
{
    if (req->wait != PT_WAIT_NONE) {
        req->wait = PT_WAIT_NONE;
        req->holds &= ~PT_REQ_HOLD_CHAIN;
    }
}

void pt__chain_dispose(pt_req_t *req)
{
    for (int side = 0; side < 2; side++) {
        struct pt_bodyq *q = req->bq[side];
        if (q == NULL)
            continue;
        evbuffer_free(q->pend);
        evbuffer_free(q->park);
        free(q);
        req->bq[side] = NULL;
    }
    if (req->scratch != NULL) {
        scratch_reset(req->scratch);
        free(req->scratch->blocks);
        free(req->scratch);
        req->scratch = NULL;
    }
}

void pt__chain_log(pt_req_t *req)
{
    for (size_t i = 0; i < req->chain_ran; i++) {
        const pt_filter_t *f = req->chain[i];
        if (f->def->on_log != NULL)
            f->def->on_log(f, req, req->filter_ctx[i]);
    }
}

/* JSON string body without the quotes; our inputs are short, so a bounded copy is fine. */
static size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

pt_str_t pt__error_body(pt_req_t *req, int st, const char *detail)
{
    char det[512], rid[300];
    int http = pt_status_http(st);
    size_t dn = 0;
    if (http >= 400 && http < 500 && detail != NULL && strcmp(detail, pt_strerror(st)) != 0)
        dn = json_escape(det, sizeof(det), detail, strlen(detail));
    size_t rn = json_escape(rid, sizeof(rid), req->request_id.base != NULL ? req->request_id.base : "",
                            req->request_id.len);
    char *body = pt_arena_printf(req->arena,
                                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"%s%.*s%s,"
                                 "\"request_id\":\"%.*s\"}}\n",
                                 pt_status_name(st), pt_strerror(st), dn ? ",\"detail\":\"" : "",
                                 (int)dn, det, dn ? "\"" : "", (int)rn, rid);
    if (body == NULL)
        return PT_STR("{\"error\":{\"code\":\"INTERNAL\"}}\n");
    return pt_str_c(body);
}

bool pt__req_is_grpc(const pt_req_t *req)
{
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    static const char pre[] = "application/grpc";
    if (ct.len < sizeof(pre) - 1 || strncasecmp(ct.base, pre, sizeof(pre) - 1) != 0)
        return false;
    pt_str_t rest = {ct.base + sizeof(pre) - 1, ct.len - (sizeof(pre) - 1)};
    if (rest.len >= 4 && strncasecmp(rest.base, "-web", 4) == 0)
        return true; /* gRPC-Web, over any HTTP version */
    /* native gRPC exists only over HTTP/2: an HTTP/1.1 client is told so plainly (505) */
    return req->version == 20 && (rest.len == 0 || rest.base[0] == '+' || rest.base[0] == ';');
}

pt_str_t pt__grpc_pct_encode(pt_arena_t *a, const char *msg)
{
    size_t len = strlen(msg);
    char *o = pt_arena_alloc(a, len * 3 + 1);
    if (o == NULL)
        return PT_STR("");
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)msg[i];
        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            o[n++] = '%';
            o[n++] = hex[ch >> 4];
            o[n++] = hex[ch & 15];
        } else {
            o[n++] = (char)ch;
        }
    }
    return (pt_str_t){o, n};
}

int pt__grpc_local_reply(pt_req_t *req, int st, const char *detail)
{
    pt_str_t ct = pt_headers_get(&req->headers, PT_STR("content-type"));
    bool web = ct.len >= 21 && strncasecmp(ct.base, "application/grpc-web", 20) == 0;
    int http = pt_status_http(st);
    const char *msg = http >= 400 && http < 500 && detail != NULL ? detail : pt_strerror(st);
    char *code = pt_arena_printf(req->arena, "%d", pt_status_grpc(st));
    if (code == NULL)
        return PT_ERR_LIMIT;
    req->resp_status = 200;
    req->local_body = PT_STR("");
    /* native: HEADERS with END_STREAM and no content-length; gRPC-Web: an empty body */
    req->resp_content_length = web ? 0 : -1;
    pt_headers_remove(&req->resp_headers, PT_STR("content-type"));
    pt_headers_remove(&req->resp_headers, PT_STR("grpc-status"));
    pt_headers_remove(&req->resp_headers, PT_STR("grpc-message"));
    if (pt_headers_add(&req->resp_headers, PT_STR("content-type"),
                       web ? pt_arena_strdup(req->arena, ct) : PT_STR("application/grpc")) != 0 ||
        pt_headers_add(&req->resp_headers, PT_STR("grpc-status"), pt_str_c(code)) != 0 ||
        pt_headers_add(&req->resp_headers, PT_STR("grpc-message"), pt__grpc_pct_encode(req->arena, msg)) != 0)
        return PT_ERR_LIMIT;
    return 0;
}
