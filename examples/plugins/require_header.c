/*
 * require_header.c -- an example filter built as a shared object.
 *
 * It refuses requests that lack a header, or whose value is not in an
 * allowed list, with 400 and a JSON body naming the header:
 *
 *   plugins: [ { path: build/lib/pt_require_header.so } ]
 *   routes:
 *     - match: { prefix: /v2/ }
 *       proxy: { cluster: web }
 *       filters:
 *         - require_header: { name: x-api-version, values: [ "2", "2.1" ] }
 *
 * It uses only the SDK headers (gateway/include/portico/), as every plugin
 * must, and shows the three parts of a filter: a config schema (field table +
 * a cross-field check), a per-request callback, and the exported definition.
 */
#include <stdio.h>
#include <string.h>
#include "portico/conf.h"
#include "portico/filter.h"

typedef struct rh_conf {
    const char *name;          /* header name, as configured */
    pt_conf_strlist_t values;  /* allowed values; empty = any value */
    long long status;          /* answer when refused (400) */
} rh_conf_t;

static const pt_conf_field_t fields[] = {
    {"name", PT_CONF_T_STR, offsetof(rh_conf_t, name), 0, 0, true, NULL},
    {"values", PT_CONF_T_STRLIST, offsetof(rh_conf_t, values), 0, 0, false, NULL},
    {"status", PT_CONF_T_INT, offsetof(rh_conf_t, status), 400, 499, false, NULL},
    PT_CONF_FIELDS_END,
};

/* Defaults first, then the declarative table does the parsing and the errors. */
static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    rh_conf_t *c = conf;
    c->status = 400;
    return pt_conf_parse_fields(cx, node, fields, c);
}

/* Cross-field checks get the node for FILE:LINE:COL errors. */
static int check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    const rh_conf_t *c = conf;
    if (!pt_header_name_valid(pt_str_c(c->name), true))
        return pt_conf_error(cx, pt_conf_map_get(node, "name"), "'%s' is not a header name",
                             c->name);
    return 0;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const rh_conf_t *c = f->conf;
    pt_str_t v = pt_headers_get(pt_req_headers(req), pt_str_c(c->name));
    bool ok = v.base != NULL && c->values.cnt == 0;
    for (size_t i = 0; v.base != NULL && !ok && i < c->values.cnt; i++)
        ok = pt_str_eq(v, pt_str_c(c->values.v[i]));
    if (ok)
        return PT_FILTER_CONTINUE;
    /* The body is built in the request arena: it lives until the request ends. */
    char *body = pt_arena_printf(pt_req_arena(req),
                                 "{\"error\":{\"code\":\"INVALID\",\"message\":\"header %s %s\","
                                 "\"request_id\":\"%.*s\"}}\n",
                                 c->name, v.base == NULL ? "is required" : "has a value not allowed",
                                 (int)pt_req_id(req).len, pt_req_id(req).base);
    if (body == NULL || pt_req_respond(req, (int)c->status, PT_STR("application/json"),
                                       pt_str_c(body)) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "require_header: out of request memory");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_RESPOND;
}

/* The one exported symbol the loader looks for. */
const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "require_header",
    .priority = 0,
    .conf_size = sizeof(rh_conf_t),
    .parse_conf = parse_conf,
    .check_conf = check_conf,
    .on_request_headers = on_request_headers,
};
