/*
 * plugin_chain.c -- a test filter (.so, SDK headers only) whose `mode` picks
 * one chain behaviour, for the loopback tests of test_chain.c and
 * test_filters.c:
 *
 *   reflect        request headers: answers 200 text/plain describing the
 *                  request as the filters before it left it
 *                  ("METHOD path?query authority\n" then "name: value\n" lines)
 *   double         response body: every byte written twice; announces the new
 *                  length (-1) in on_response_headers unless `announce: false`
 *   hold           response body: writes nothing until `end`, then everything
 *                  it held followed by "|calls=N" (N body calls); announces -1
 *   suspend_head   response headers: SUSPENDs for delay_ms, then adds
 *                  x-resumed: head and CONTINUEs
 *   suspend_body   response body: the first call with bytes SUSPENDs for
 *                  delay_ms; every call's input is logged and the log
 *                  ("[in1][in2]...") is appended at `end`; announces -1
 *   respond        response headers: replaces the response with 418 "replaced"
 *   refuse         request body: ERROR (PT_ERR_INVALID) when a slice holds 'X'
 *
 * Abort hooks cancel the timers, as filter.h contract 4 requires.
 */
#include <stddef.h>
#include <string.h>
#include "portico/async.h"
#include "portico/filter.h"
#include "portico/status.h"

typedef enum mode {
    M_REFLECT,
    M_DOUBLE,
    M_HOLD,
    M_SUSPEND_HEAD,
    M_SUSPEND_BODY,
    M_RESPOND,
    M_REFUSE,
} mode_t_;

static const char *const mode_names[] = {"reflect", "double",  "hold",  "suspend_head",
                                         "suspend_body", "respond", "refuse"};

typedef struct cconf {
    const char *mode_name;
    long long delay_ms;
    bool announce;
    int mode;
} cconf_t;

/* A growing byte buffer in the request arena. */
typedef struct abuf {
    char *p;
    size_t len, cap;
} abuf_t;

typedef struct cctx {
    pt_req_t *req;
    pt_timer_t *timer;
    bool suspended;         /* suspend_body: already suspended once */
    unsigned body_calls;
    abuf_t buf;             /* hold: the held bytes; suspend_body: the log */
} cctx_t;

static const pt_conf_field_t fields[] = {
    {"mode", PT_CONF_T_STR, offsetof(cconf_t, mode_name), 0, 0, true, NULL},
    {"delay_ms", PT_CONF_T_INT, offsetof(cconf_t, delay_ms), 0, 10000, false, NULL},
    {"announce", PT_CONF_T_BOOL, offsetof(cconf_t, announce), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    cconf_t *c = conf;
    c->delay_ms = 5;
    c->announce = true;
    return pt_conf_parse_fields(cx, node, fields, c);
}

static int check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    cconf_t *c = conf;
    for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
        if (strcmp(c->mode_name, mode_names[i]) == 0) {
            c->mode = (int)i;
            return 0;
        }
    return pt_conf_error(cx, pt_conf_map_get(node, "mode"), "unknown mode '%s'", c->mode_name);
}

static int abuf_add(pt_req_t *req, abuf_t *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + len)
            cap *= 2;
        char *p = pt_arena_alloc(pt_req_arena(req), cap);
        if (p == NULL)
            return PT_ERR_LIMIT;
        if (b->len != 0)
            memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    if (len != 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static void on_abort(void *data)
{
    cctx_t *c = data;
    pt_timer_cancel(c->timer);
    c->timer = NULL;
}

static void on_timer(void *data)
{
    cctx_t *c = data;
    c->timer = NULL; /* a fired timer frees itself */
    if (pt_req_resp_status(c->req) != 0 && !c->suspended)
        pt_headers_set(pt_req_resp_headers(c->req), PT_STR("x-resumed"), PT_STR("head"));
    pt_chain_resume(c->req, PT_FILTER_CONTINUE);
}

static pt_fstatus_t suspend(const cconf_t *conf, pt_req_t *req, cctx_t *c)
{
    c->req = req;
    if (pt_req_on_abort(req, on_abort, c) != 0 ||
        pt_timer_start(pt_req_worker(req), (uint64_t)conf->delay_ms, on_timer, c, &c->timer) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "test_chain: no timer");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_SUSPEND;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const cconf_t *conf = f->conf;
    if (conf->mode != M_REFLECT)
        return PT_FILTER_CONTINUE;
    pt_str_t m = pt_req_method(req), p = pt_req_path(req), q = pt_req_query(req),
             a = pt_req_authority(req);
    const pt_headers_t *h = pt_req_headers(req);
    /* one allocation of the exact size: the reflection stays cheap for big headers */
    size_t len = m.len + p.len + q.len + a.len + 4;
    for (size_t i = 0; i < h->cnt; i++)
        len += h->v[i].name.len + h->v[i].value.len + 3;
    abuf_t b = {0};
    int rc = 0;
    if ((b.p = pt_arena_alloc(pt_req_arena(req), len)) == NULL)
        rc = PT_ERR_LIMIT;
    b.cap = len;
    const pt_str_t line[] = {m, PT_STR(" "), p, PT_STR("?"), q, PT_STR(" "), a, PT_STR("\n")};
    for (size_t i = 0; rc == 0 && i < sizeof(line) / sizeof(line[0]); i++)
        rc = abuf_add(req, &b, line[i].base, line[i].len);
    for (size_t i = 0; rc == 0 && i < h->cnt; i++) {
        rc = abuf_add(req, &b, h->v[i].name.base, h->v[i].name.len);
        if (rc == 0)
            rc = abuf_add(req, &b, ": ", 2);
        if (rc == 0)
            rc = abuf_add(req, &b, h->v[i].value.base, h->v[i].value.len);
        if (rc == 0)
            rc = abuf_add(req, &b, "\n", 1);
    }
    if (rc != 0 ||
        pt_req_respond(req, 200, PT_STR("text/plain"), (pt_str_t){b.p, b.len}) != 0) {
        pt_req_fail(req, PT_ERR_LIMIT, "test_chain: reflect out of memory");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)ctx;
    (void)end;
    const cconf_t *conf = f->conf;
    for (size_t i = 0; conf->mode == M_REFUSE && i < in->cnt; i++)
        if (memchr(in->v[i].base, 'X', in->v[i].len) != NULL) {
            pt_req_fail(req, PT_ERR_INVALID, "test_chain: body refused");
            return PT_FILTER_ERROR;
        }
    return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const cconf_t *conf = f->conf;
    switch (conf->mode) {
    case M_DOUBLE:
        if (conf->announce)
            pt_req_set_resp_body_length(req, -1);
        return PT_FILTER_CONTINUE;
    case M_HOLD:
    case M_SUSPEND_BODY:
        pt_req_set_resp_body_length(req, -1);
        return PT_FILTER_CONTINUE;
    case M_SUSPEND_HEAD:
        return suspend(conf, req, ctx);
    case M_RESPOND:
        if (pt_req_respond(req, 418, PT_STR("text/plain"), PT_STR("replaced")) != 0)
            return PT_FILTER_ERROR;
        return PT_FILTER_RESPOND;
    default:
        return PT_FILTER_CONTINUE;
    }
}

static pt_fstatus_t on_response_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    const cconf_t *conf = f->conf;
    cctx_t *c = ctx;
    c->body_calls++;
    int rc = 0;
    switch (conf->mode) {
    case M_DOUBLE:
        for (size_t i = 0; rc == 0 && i < in->cnt; i++)
            for (size_t j = 0; rc == 0 && j < in->v[i].len; j++) {
                char two[2] = {in->v[i].base[j], in->v[i].base[j]};
                rc = pt_body_write(out, two, 2);
            }
        break;
    case M_HOLD:
        for (size_t i = 0; rc == 0 && i < in->cnt; i++)
            rc = abuf_add(req, &c->buf, in->v[i].base, in->v[i].len);
        if (rc == 0 && end) {
            char *tail = pt_arena_printf(pt_req_arena(req), "|calls=%u", c->body_calls);
            rc = tail == NULL ? PT_ERR_LIMIT : abuf_add(req, &c->buf, tail, strlen(tail));
            if (rc == 0)
                rc = pt_body_write(out, c->buf.p, c->buf.len);
        }
        break;
    case M_SUSPEND_BODY: {
        size_t n = 0;
        rc = abuf_add(req, &c->buf, "[", 1);
        for (size_t i = 0; rc == 0 && i < in->cnt; i++) {
            rc = abuf_add(req, &c->buf, in->v[i].base, in->v[i].len);
            n += in->v[i].len;
        }
        if (rc == 0)
            rc = abuf_add(req, &c->buf, "]", 1);
        if (rc == 0 && n != 0 && !c->suspended) {
            c->suspended = true;
            return suspend(conf, req, c); /* `in` is not consumed: it comes again */
        }
        if (rc == 0)
            rc = pt_body_pass(out, in);
        if (rc == 0 && end)
            rc = pt_body_write(out, c->buf.p, c->buf.len);
        break;
    }
    default:
        rc = pt_body_pass(out, in);
        break;
    }
    if (rc != 0) {
        pt_req_fail(req, rc, "test_chain: out of body memory");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "test_chain",
    .conf_size = sizeof(cconf_t),
    .ctx_size = sizeof(cctx_t),
    .fields = fields,
    .parse_conf = parse_conf,
    .check_conf = check_conf,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
};
