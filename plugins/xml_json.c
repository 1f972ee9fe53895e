/*
 * xml_json.c -- the `xml_json` filter: JSON clients in front of plain XML
 * (REST, no WSDL) upstreams, converting bodies by Content-Type with the
 * generic convention of portico/transcoder/xmljson.h.
 *
 *   filters:
 *     - xml_json: { reverse: false, request: true, response: true, max_size: 8MiB, max_depth: 64 }
 *
 * Forward (default): a request body with a JSON Content-Type becomes XML for
 * the upstream (Content-Type application/xml); a response body with an XML
 * Content-Type (application/xml, text/xml, +xml) becomes JSON for the client.
 * `reverse: true` swaps the roles (XML clients, JSON upstream). `request` /
 * `response` switch a side off. Bodies of other types pass untouched, as do
 * compressed responses (Content-Encoding) and HEAD/204/304 answers.
 *
 * XML input is fed to the converter chunk by chunk as it arrives (the push
 * parser holds the tree, bounded by max_size: a larger body is refused as
 * soon as it crosses the cap); JSON input is held until the end (its keys
 * become element names in order, which needs the whole object), also bounded
 * by max_size. A request body that does not convert gets a 400 (413 over the
 * cap) whose JSON names what was wrong, before the upstream sees it; with
 * `request_buffering: true` on the route the upstream never sees a byte.
 * A response body that does not convert cannot change the status any more
 * (the head went out when the body started): the response is cut off and
 * the log says why.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"
#include "portico/transcoder/xmljson.h"

typedef struct xj_conf {
    bool reverse;
    bool request;
    bool response;
    uint64_t max_size;
    uint32_t max_depth;
} xj_conf_t;

/* One direction of conversion for one body. */
typedef struct side {
    bool on;
    bool xml_in;        /* input is XML (streamed to x2j), else JSON (held in buf) */
    pt_xbuf_t buf;      /* JSON input held until the end */
    pt_xml2json_t *x2j; /* XML input converter */
} side_t;

typedef struct xj_ctx {
    side_t req, resp;
} xj_ctx_t;

static const pt_conf_field_t fields[] = {
    {"reverse", PT_CONF_T_BOOL, offsetof(xj_conf_t, reverse), 0, 0, false, NULL},
    {"request", PT_CONF_T_BOOL, offsetof(xj_conf_t, request), 0, 0, false, NULL},
    {"response", PT_CONF_T_BOOL, offsetof(xj_conf_t, response), 0, 0, false, NULL},
    {"max_size", PT_CONF_T_SIZE, offsetof(xj_conf_t, max_size), 1, 1ll << 30, false, NULL},
    {"max_depth", PT_CONF_T_UINT32, offsetof(xj_conf_t, max_depth), 1, 1000, false, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    xj_conf_t *c = conf;
    c->request = c->response = true;
    c->max_size = 8u << 20;
    c->max_depth = 64;
    return pt_conf_parse_fields(cx, node, fields, c);
}

/* ---- content types ---- */

/* The media type of a Content-Type value, without parameters. */
static pt_str_t media_type(pt_str_t ct)
{
    size_t n = 0;
    while (n < ct.len && ct.base[n] != ';' && ct.base[n] != ' ' && ct.base[n] != '\t')
        n++;
    return (pt_str_t){ct.base, n};
}

static bool media_is(pt_str_t m, const char *want)
{
    return m.len == strlen(want) && strncasecmp(m.base, want, m.len) == 0;
}

static bool ends_with(pt_str_t m, const char *suf)
{
    size_t n = strlen(suf);
    return m.len > n && strncasecmp(m.base + m.len - n, suf, n) == 0;
}

static bool is_json(pt_str_t ct)
{
    pt_str_t m = media_type(ct);
    return media_is(m, "application/json") || ends_with(m, "+json");
}

static bool is_xml(pt_str_t ct)
{
    pt_str_t m = media_type(ct);
    return media_is(m, "application/xml") || media_is(m, "text/xml") || ends_with(m, "+xml");
}

/* ---- per body ---- */

static int side_start(side_t *s, const xj_conf_t *c, bool xml_in)
{
    s->on = true;
    s->xml_in = xml_in;
    pt_xbuf_init(&s->buf, NULL);
    s->buf.limit = (size_t)c->max_size;
    if (xml_in) {
        pt_xmljson_opts_t o = {.max_size = (size_t)c->max_size, .max_depth = c->max_depth};
        s->x2j = pt_xml2json_new(NULL, &o);
        if (s->x2j == NULL)
            return -1;
    }
    return 0;
}

static void side_end(side_t *s)
{
    pt_xml2json_free(s->x2j);
    s->x2j = NULL;
    pt_xbuf_dispose(&s->buf);
    s->on = false;
}

/* Takes the input slices; at `end` writes the converted body to `out`.
 * Returns 0, or the PT_XERR_* of the failure with `err` filled. */
static int side_run(side_t *s, const xj_conf_t *c, const pt_bufvec_t *in, bool end,
                    pt_body_out_t *out, pt_xerr_t *err)
{
    pt_xerr_clear(err);
    for (size_t i = 0; i < in->cnt; i++) {
        int rc = s->xml_in ? pt_xml2json_feed(s->x2j, in->v[i].base, in->v[i].len, err)
                           : pt_xbuf_append(&s->buf, in->v[i].base, in->v[i].len);
        if (rc == PT_XERR_LIMIT && !s->xml_in)
            return pt_xerr_set(err, rc, NULL, "body larger than %llu bytes",
                               (unsigned long long)c->max_size);
        if (rc != 0)
            return rc == PT_XERR_NOMEM ? pt_xerr_set(err, rc, NULL, "out of memory") : rc;
    }
    if (!end)
        return 0;
    pt_xbuf_t res;
    pt_xbuf_init(&res, NULL);
    int rc;
    if (s->xml_in) {
        rc = pt_xml2json_finish(s->x2j, &res, err);
    } else {
        pt_xmljson_opts_t o = {.max_size = (size_t)c->max_size, .max_depth = c->max_depth};
        rc = pt_json_to_xml((const char *)s->buf.data, s->buf.len, &o, &res, err);
    }
    if (rc == 0 && res.len > 0 && pt_body_write(out, res.data, res.len) != 0)
        rc = pt_xerr_set(err, PT_XERR_LIMIT, NULL, "converted body over the memory cap");
    pt_xbuf_dispose(&res);
    side_end(s);
    return rc;
}

/* The 400/413 answer for a request body that does not convert. */
static pt_fstatus_t refuse(pt_req_t *req, const pt_xerr_t *err, bool xml_in)
{
    bool big = err->code == PT_XERR_LIMIT;
    char what[600];
    pt_xerr_format(err, what, sizeof(what));
    char body[1400];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"xml_json: "
                                                   "request body (%s): ",
                                big ? "LIMIT" : "INVALID", xml_in ? "XML" : "JSON");
    for (const char *p = what; *p != '\0' && n + 8 < sizeof(body); p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            body[n++] = '\\', body[n++] = (char)ch;
        else if (ch < 0x20)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "\\u%04x", ch);
        else
            body[n++] = (char)ch;
    }
    pt_str_t id = pt_req_id(req);
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\",\"request_id\":\"%.*s\"}}", (int)id.len,
                          id.base);
    if (n >= sizeof(body))
        n = sizeof(body) - 1;
    if (pt_req_respond(req, big ? 413 : 400, PT_STR("application/json"),
                       (pt_str_t){body, n}) != 0) {
        pt_req_fail(req, big ? PT_ERR_LIMIT : PT_ERR_INVALID, "xml_json: request body refused");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_RESPOND;
}

/* ---- phases ---- */

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const xj_conf_t *c = f->conf;
    xj_ctx_t *x = ctx;
    pt_headers_t *h = pt_req_headers(req);
    pt_str_t ct = pt_headers_get(h, PT_STR("content-type"));
    pt_str_t accept = pt_headers_get(h, PT_STR("accept"));
    bool in_ok = c->reverse ? is_xml(ct) : is_json(ct);
    if (c->request && ct.base != NULL && in_ok && pt_req_body_length(req) != 0) {
        if (side_start(&x->req, c, c->reverse) != 0) {
            pt_req_fail(req, PT_ERR_INTERNAL, "xml_json: out of memory");
            return PT_FILTER_ERROR;
        }
        pt_headers_set(h, PT_STR("content-type"),
                       c->reverse ? PT_STR("application/json")
                                  : PT_STR("application/xml; charset=utf-8"));
        pt_req_set_body_length(req, -1);
    }
    /* the client asks for the converted type: ask the upstream for its own */
    if (c->response && accept.base != NULL && (c->reverse ? is_xml(accept) : is_json(accept)))
        pt_headers_set(h, PT_STR("accept"),
                       c->reverse ? PT_STR("application/json") : PT_STR("application/xml"));
    return PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    xj_ctx_t *x = ctx;
    if (!x->req.on)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    pt_xerr_t err;
    bool xml_in = x->req.xml_in;
    if (side_run(&x->req, f->conf, in, end, out, &err) != 0) {
        side_end(&x->req);
        return refuse(req, &err, xml_in);
    }
    return PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const xj_conf_t *c = f->conf;
    xj_ctx_t *x = ctx;
    pt_headers_t *h = pt_req_resp_headers(req);
    int status = pt_req_resp_status(req);
    pt_str_t ct = pt_headers_get(h, PT_STR("content-type"));
    if (!c->response || ct.base == NULL || !(c->reverse ? is_json(ct) : is_xml(ct)) ||
        pt_req_is_tunnel(req) || status < 200 || status == 204 || status == 304 ||
        pt_req_resp_body_length(req) == 0 ||
        pt_headers_get(h, PT_STR("content-encoding")).base != NULL ||
        media_is(pt_req_method(req), "HEAD"))
        return PT_FILTER_CONTINUE;
    if (side_start(&x->resp, c, !c->reverse) != 0) {
        pt_req_fail(req, PT_ERR_INTERNAL, "xml_json: out of memory");
        return PT_FILTER_ERROR;
    }
    pt_headers_set(h, PT_STR("content-type"),
                   c->reverse ? PT_STR("application/xml; charset=utf-8")
                              : PT_STR("application/json"));
    pt_req_set_resp_body_length(req, -1);
    return PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_response_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                     const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    xj_ctx_t *x = ctx;
    if (!x->resp.on)
        return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
    pt_xerr_t err;
    if (side_run(&x->resp, f->conf, in, end, out, &err) != 0) {
        side_end(&x->resp);
        pt_req_fail(req, PT_ERR_UPSTREAM,
                    err.code == PT_XERR_LIMIT ? "xml_json: upstream body over max_size"
                                              : "xml_json: upstream body does not convert");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    xj_ctx_t *x = ctx;
    side_end(&x->req);
    side_end(&x->resp);
}

const pt_filter_def_t pt_filter_xml_json = {
    .abi = PT_FILTER_ABI,
    .name = "xml_json",
    .conf_size = sizeof(xj_conf_t),
    .ctx_size = sizeof(xj_ctx_t),
    .parse_conf = parse_conf,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_log = on_log,
};
