/*
 * plugin_gzip.c -- a test filter built against the SDK headers only: it
 * gzip-compresses response bodies as they stream (zlib), chunk by chunk, so
 * a long or endless body is never buffered whole. It exercises the
 * transforming response-body phase (output != input, held bytes released at
 * the end), the framing change (pt_req_set_resp_body_length(-1)), and, with
 * `head_delay_ms` / `body_delay_ms`, SUSPEND in the response-header and
 * response-body phases.
 *
 *   - test_gzip: { min_size: 0, head_delay_ms: 0, body_delay_ms: 0 }
 *
 * Compresses when the client's Accept-Encoding names gzip, the response has
 * no Content-Encoding and is at least min_size bytes (when its length is known).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "portico/async.h"
#include "portico/filter.h"

typedef struct gconf {
    long long min_size;
    long long head_delay_ms;
    long long body_delay_ms;
} gconf_t;

typedef struct gctx {
    z_stream z;
    bool on;          /* compressing this response */
    bool z_init;
    bool body_waited; /* the body delay happened */
    pt_req_t *req;
    pt_timer_t *timer;
} gctx_t;

static const pt_conf_field_t fields[] = {
    {"min_size", PT_CONF_T_INT, offsetof(gconf_t, min_size), 0, 1 << 30, false, NULL},
    {"head_delay_ms", PT_CONF_T_INT, offsetof(gconf_t, head_delay_ms), 0, 10000, false, NULL},
    {"body_delay_ms", PT_CONF_T_INT, offsetof(gconf_t, body_delay_ms), 0, 10000, false, NULL},
    PT_CONF_FIELDS_END,
};

static void end_z(gctx_t *c)
{
    if (c->z_init) {
        deflateEnd(&c->z);
        c->z_init = false;
    }
}

/* The client left while a delay was pending: the resume must never come. */
static void on_abort(void *data)
{
    gctx_t *c = data;
    pt_timer_cancel(c->timer);
    c->timer = NULL;
}

/* Runs for every request that reached the chain, however it ended. */
static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    end_z(ctx);
}

static void resume(void *data)
{
    gctx_t *c = data;
    c->timer = NULL;
    pt_chain_resume(c->req, PT_FILTER_CONTINUE);
}

static pt_fstatus_t wait_ms(gctx_t *c, pt_req_t *req, long long ms)
{
    c->req = req;
    if (pt_timer_start(pt_req_worker(req), (uint64_t)ms, resume, c, &c->timer) != 0)
        return PT_FILTER_ERROR;
    return PT_FILTER_SUSPEND;
}

static bool accepts_gzip(pt_req_t *req)
{
    pt_str_t ae = pt_headers_get(pt_req_headers(req), PT_STR("accept-encoding"));
    for (size_t i = 0; i + 4 <= ae.len; i++)
        if (memcmp(ae.base + i, "gzip", 4) == 0)
            return true;
    return false;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    gctx_t *c = ctx;
    c->on = accepts_gzip(req); /* decided now: the request headers may change later */
    return pt_req_on_abort(req, on_abort, c) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const gconf_t *conf = f->conf;
    gctx_t *c = ctx;
    pt_headers_t *h = pt_req_resp_headers(req);
    int64_t len = pt_req_resp_body_length(req);
    int status = pt_req_resp_status(req);
    if (!c->on || pt_req_is_tunnel(req) || status < 200 || status == 204 || status == 304 ||
        pt_headers_get(h, PT_STR("content-encoding")).base != NULL ||
        (len >= 0 && len < conf->min_size) || len == 0) {
        c->on = false;
        return conf->head_delay_ms > 0 ? wait_ms(c, req, conf->head_delay_ms) : PT_FILTER_CONTINUE;
    }
    if (deflateInit2(&c->z, 5, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return PT_FILTER_ERROR;
    c->z_init = true;
    pt_headers_set(h, PT_STR("content-encoding"), PT_STR("gzip"));
    pt_headers_add(h, PT_STR("vary"), PT_STR("Accept-Encoding"));
    pt_req_set_resp_body_length(req, -1);
    /* The head is settled; a delay here stands for an asynchronous check
     * (the chain goes on with the next filter after the resume). */
    return conf->head_delay_ms > 0 ? wait_ms(c, req, conf->head_delay_ms) : PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_response_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    const gconf_t *conf = f->conf;
    gctx_t *c = ctx;
    if (conf->body_delay_ms > 0 && !c->body_waited) {
        c->body_waited = true; /* called again with the same input after the resume */
        return wait_ms(c, req, conf->body_delay_ms);
    }
    if (!c->on)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    unsigned char buf[16384];
    for (size_t i = 0; i <= in->cnt; i++) {
        bool last = i == in->cnt;
        if (last && !end)
            break; /* nothing more to feed; what zlib holds waits for more input */
        c->z.next_in = last ? NULL : (unsigned char *)in->v[i].base;
        c->z.avail_in = last ? 0 : (uInt)in->v[i].len;
        int flush = last ? Z_FINISH : Z_NO_FLUSH;
        int rc;
        do {
            c->z.next_out = buf;
            c->z.avail_out = sizeof(buf);
            rc = deflate(&c->z, flush);
            if (rc == Z_STREAM_ERROR)
                return PT_FILTER_ERROR;
            size_t n = sizeof(buf) - c->z.avail_out;
            if (n != 0 && pt_body_write(out, buf, n) != 0)
                return PT_FILTER_ERROR;
        } while (c->z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    }
    if (end)
        end_z(c);
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "test_gzip",
    .conf_size = sizeof(gconf_t),
    .ctx_size = sizeof(gctx_t),
    .fields = fields,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_log = on_log,
};
