/*
 * respond.c -- the `respond` route handler: a fixed answer from the gateway
 * itself, with no upstream (health pages, maintenance answers, mocks, and the
 * test seam for filters).
 *
 *   routes:
 *     - match: { path: /ping }
 *       respond: { status: 200, body: "pong\n", content_type: text/plain }
 *
 * The request body, if any, is read and discarded (up to the route limit), so
 * keep-alive connections stay in sync.
 */
#include <string.h>
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "core/request.h"

typedef struct respond_conf {
    long long status;
    const char *body;
    const char *content_type;
    pt_conf_strmap_t headers;
} respond_conf_t;

static const pt_conf_field_t respond_fields[] = {
    {"status", PT_CONF_T_INT, offsetof(respond_conf_t, status), 100, 999, false, NULL},
    {"body", PT_CONF_T_STR, offsetof(respond_conf_t, body), 0, 0, false, NULL},
    {"content_type", PT_CONF_T_STR, offsetof(respond_conf_t, content_type), 0, 0, false, NULL},
    {"headers", PT_CONF_T_STRMAP, offsetof(respond_conf_t, headers), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int respond_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    respond_conf_t *c = conf;
    c->status = 200;
    c->body = "";
    c->content_type = "text/plain";
    return pt_conf_parse_fields(cx, node, respond_fields, c);
}

static void finish(pt_req_t *req)
{
    const respond_conf_t *c = req->handler_ctx;
    req->resp_status = (int)c->status;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), pt_str_c(c->content_type));
    for (size_t i = 0; i < c->headers.cnt; i++)
        pt_headers_add(&req->resp_headers, pt_str_c(c->headers.v[i].key),
                       pt_str_c(c->headers.v[i].value));
    size_t len = strlen(c->body);
    req->resp_content_length = (int64_t)len;
    pt__resp_head(req);
    pt__resp_body(req, c->body, len, true);
    pt_handler_finish(req);
}

/* Drains what the client sent; answers once the body has ended. */
static void on_body(pt_req_t *req)
{
    char buf[16384];
    bool eof = false;
    for (;;) {
        size_t n = pt__req_body_read(req, buf, sizeof(buf), &eof);
        if (eof)
            break;
        if (n == 0)
            return; /* more will come: on_body again */
    }
    if (!pt__resp_started(req))
        finish(req);
}

/* The exchange was cut short (client gone, body over the limit): let go. */
static void on_abort(void *data)
{
    pt_handler_finish(data);
}

static void respond_start(pt_req_t *req, const void *conf)
{
    req->handler_ctx = (void *)conf;
    pt_req_on_abort(req, on_abort, req);
    on_body(req);
}

const pt_handler_def_t pt_handler_respond = {
    .name = "respond",
    .conf_size = sizeof(respond_conf_t),
    .parse_conf = respond_parse,
    .start = respond_start,
    .on_body = on_body,
};
