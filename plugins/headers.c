/*
 * headers.c -- the `headers` filter: add, set, remove and rename request and
 * response headers.
 *
 *   - headers:
 *       request:  { set: { x-env: prod, x-client: "${client_addr}" }, remove: [ x-internal ] }
 *       response: { add: { x-served-by: portico }, rename: { server: x-upstream-server } }
 *
 * Operations of one side run in the order remove, rename, set, add. Values
 * may use variables; they are compiled at load time into a list of literal
 * and variable segments, so a request only measures, allocates once in its
 * arena and copies. A value made only of literal text is never copied.
 *
 * Only the SDK headers are used: this file is what a plugin looks like.
 */
#include <ctype.h>
#include <string.h>

#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

typedef enum var_kind {
    V_LITERAL = 0,
    V_CLIENT_ADDR,
    V_REQUEST_ID,
    V_HOST,
    V_PATH,
    V_METHOD,
    V_SCHEME,
    V_QUERY,
    V_PARAM,  /* ${param.NAME}: a route template variable */
    V_HEADER, /* ${header.NAME}: a request header (first value) */
    V_VAR,    /* a request variable: ${consumer}, ${jwt.PATH}, ${oauth2.PATH}, ${var.NAME} */
} var_kind_t;

typedef struct seg {
    var_kind_t kind;
    pt_str_t text; /* literal text, or the NAME of param./header. */
} seg_t;

typedef struct value {
    seg_t *segs;
    size_t cnt;
    bool literal; /* one literal segment (or none): use segs[0].text as is */
} value_t;

typedef struct op {
    pt_str_t name; /* lowercase */
    pt_str_t to;   /* rename target, lowercase */
    value_t value; /* set / add */
} op_t;

typedef struct side {
    op_t *remove, *rename, *set, *add;
    size_t remove_cnt, rename_cnt, set_cnt, add_cnt;
} side_t;

typedef struct headers_conf {
    side_t request, response;
} headers_conf_t;

/* ---- load time ------------------------------------------------------------- */

static const struct {
    const char *name;
    var_kind_t kind;
} simple_vars[] = {
    {"client_addr", V_CLIENT_ADDR},
    {"request_id", V_REQUEST_ID},
    {"host", V_HOST},
    {"path", V_PATH},
    {"method", V_METHOD},
    {"scheme", V_SCHEME},
    {"query", V_QUERY},
};

/*
 * Splits "pre ${var} post" into segments. `$$` is a literal `$`; a `$` not
 * followed by `{` is literal too. Unknown variables are errors.
 */
static int compile_value(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *s, value_t *out)
{
    size_t len = strlen(s);
    size_t max_segs = 1;
    for (size_t i = 0; i < len; i++)
        max_segs += s[i] == '$';
    seg_t *segs = pt_conf_alloc(cx, (2 * max_segs + 1) * sizeof(*segs));
    size_t cnt = 0;
    char *lit = pt_conf_alloc(cx, len + 1); /* literal bytes, unescaped, shared by segments */
    size_t lit_start = 0, lit_len = 0;
    bool has_var = false;
#define FLUSH_LITERAL()                                                                            \
    do {                                                                                           \
        if (lit_len != lit_start) {                                                                \
            segs[cnt++] = (seg_t){V_LITERAL, {lit + lit_start, lit_len - lit_start}};              \
            lit_start = lit_len;                                                                   \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '$' && i + 1 < len && s[i + 1] == '$') {
            lit[lit_len++] = '$';
            i++;
            continue;
        }
        if (!(s[i] == '$' && i + 1 < len && s[i + 1] == '{')) {
            lit[lit_len++] = s[i];
            continue;
        }
        const char *close = memchr(s + i + 2, '}', len - i - 2);
        if (close == NULL)
            return pt_conf_error(cx, n, "unterminated variable in '%s' (write $$ for a '$')", s);
        const char *name = s + i + 2;
        size_t nl = (size_t)(close - name);
        seg_t seg = {V_LITERAL, PT_STR_NULL};
        for (size_t k = 0; k < sizeof(simple_vars) / sizeof(simple_vars[0]); k++)
            if (strlen(simple_vars[k].name) == nl && memcmp(simple_vars[k].name, name, nl) == 0)
                seg.kind = simple_vars[k].kind;
        if (seg.kind == V_LITERAL && nl > 6 && memcmp(name, "param.", 6) == 0) {
            seg.kind = V_PARAM;
            seg.text = (pt_str_t){pt_conf_strdup(cx, name + 6, nl - 6), nl - 6};
        } else if (seg.kind == V_LITERAL && nl > 7 && memcmp(name, "header.", 7) == 0) {
            seg.kind = V_HEADER;
            char *h = pt_conf_strdup(cx, name + 7, nl - 7);
            for (char *q = h; *q != '\0'; q++)
                *q = (char)tolower((unsigned char)*q);
            seg.text = (pt_str_t){h, nl - 7};
            if (!pt_header_name_valid(seg.text, true))
                return pt_conf_error(cx, n, "bad header name in '${%.*s}'", (int)nl, name);
        }
        if (seg.kind == V_LITERAL) {
            /* request variables set by other filters (pt_req_var_set / providers) */
            size_t skip = nl > 4 && memcmp(name, "var.", 4) == 0 ? 4 : 0;
            if (skip != 0 || (nl == 8 && memcmp(name, "consumer", 8) == 0) ||
                (nl > 4 && memcmp(name, "jwt.", 4) == 0) || (nl > 7 && memcmp(name, "oauth2.", 7) == 0)) {
                seg.kind = V_VAR;
                seg.text = (pt_str_t){pt_conf_strdup(cx, name + skip, nl - skip), nl - skip};
            }
        }
        if (seg.kind == V_LITERAL)
            return pt_conf_error(cx, n,
                                 "unknown variable '${%.*s}' (known: client_addr, request_id, "
                                 "host, path, method, scheme, query, param.NAME, header.NAME, "
                                 "consumer, jwt.CLAIM, oauth2.FIELD, var.NAME)",
                                 (int)nl, name);
        FLUSH_LITERAL();
        segs[cnt++] = seg;
        has_var = true;
        i = (size_t)(close - s);
    }
    FLUSH_LITERAL();
#undef FLUSH_LITERAL
    lit[lit_len] = '\0';
    if (!pt_header_value_valid((pt_str_t){lit, lit_len}))
        return pt_conf_error(cx, n, "header value contains control characters");
    out->segs = segs;
    out->cnt = cnt;
    out->literal = !has_var;
    return 0;
}

/* A header name we may touch: a valid token, not one the gateway frames itself. */
static int parse_name(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *s, pt_str_t *out)
{
    size_t len = strlen(s);
    if (!pt_header_name_valid((pt_str_t){s, len}, true))
        return pt_conf_error(cx, n, "bad header name '%s'", s);
    char *low = pt_conf_strdup(cx, s, len);
    for (char *q = low; *q != '\0'; q++)
        *q = (char)tolower((unsigned char)*q);
    if (strcmp(low, "content-length") == 0 || strcmp(low, "transfer-encoding") == 0 ||
        strcmp(low, "connection") == 0)
        return pt_conf_error(cx, n, "header '%s' is managed by the gateway and cannot be changed",
                             low);
    *out = (pt_str_t){low, len};
    return 0;
}

typedef struct side_raw {
    pt_conf_strlist_t remove;
    const pt_conf_node_t *rename, *set, *add;
} side_raw_t;

static const pt_conf_field_t side_fields[] = {
    {"remove", PT_CONF_T_STRLIST, offsetof(side_raw_t, remove), 0, 0, false, NULL},
    {"rename", PT_CONF_T_NODE, offsetof(side_raw_t, rename), 0, 0, false, NULL},
    {"set", PT_CONF_T_NODE, offsetof(side_raw_t, set), 0, 0, false, NULL},
    {"add", PT_CONF_T_NODE, offsetof(side_raw_t, add), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* set/add/rename: a map of header name to a string (value or new name). */
static int parse_map_ops(pt_conf_cx_t *cx, const pt_conf_node_t *m, bool is_rename, op_t **ops,
                         size_t *cnt)
{
    if (m == NULL || m->kind == PT_CONF_NULL)
        return 0;
    if (m->kind != PT_CONF_MAP)
        return pt_conf_error(cx, m, "expected a map of header name to %s",
                             is_rename ? "new name" : "value");
    int rc = 0;
    op_t *v = pt_conf_alloc(cx, (m->cnt != 0 ? m->cnt : 1) * sizeof(*v));
    for (size_t i = 0; i < m->cnt; i++) {
        op_t *op = &v[i];
        const char *val = NULL;
        if (parse_name(cx, m->keys[i], m->keys[i]->str, &op->name) != 0 ||
            pt_conf_get_str(cx, m->items[i], &val) != 0) {
            rc = PT_ERR_INVALID;
            continue;
        }
        if (is_rename) {
            if (parse_name(cx, m->items[i], val, &op->to) != 0)
                rc = PT_ERR_INVALID;
        } else if (compile_value(cx, m->items[i], val, &op->value) != 0) {
            rc = PT_ERR_INVALID;
        }
    }
    *ops = v;
    *cnt = m->cnt;
    return rc;
}

static int parse_side(pt_conf_cx_t *cx, const pt_conf_node_t *n, side_t *side)
{
    side_raw_t raw = {0};
    if (pt_conf_parse_fields(cx, n, side_fields, &raw) != 0)
        return PT_ERR_INVALID;
    int rc = 0;
    const pt_conf_node_t *rn = pt_conf_map_get(n, "remove");
    side->remove =
        pt_conf_alloc(cx, (raw.remove.cnt != 0 ? raw.remove.cnt : 1) * sizeof(*side->remove));
    for (size_t i = 0; i < raw.remove.cnt; i++) {
        const pt_conf_node_t *where = rn->kind == PT_CONF_SEQ ? rn->items[i] : rn;
        if (parse_name(cx, where, raw.remove.v[i], &side->remove[i].name) != 0)
            rc = PT_ERR_INVALID;
    }
    side->remove_cnt = raw.remove.cnt;
    if (parse_map_ops(cx, raw.rename, true, &side->rename, &side->rename_cnt) != 0 ||
        parse_map_ops(cx, raw.set, false, &side->set, &side->set_cnt) != 0 ||
        parse_map_ops(cx, raw.add, false, &side->add, &side->add_cnt) != 0)
        rc = PT_ERR_INVALID;
    return rc;
}

typedef struct conf_raw {
    const pt_conf_node_t *request, *response;
} conf_raw_t;

static const pt_conf_field_t conf_fields[] = {
    {"request", PT_CONF_T_NODE, offsetof(conf_raw_t, request), 0, 0, false, NULL},
    {"response", PT_CONF_T_NODE, offsetof(conf_raw_t, response), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    headers_conf_t *hc = conf;
    conf_raw_t raw = {0};
    if (pt_conf_parse_fields(cx, node, conf_fields, &raw) != 0)
        return PT_ERR_INVALID;
    if (raw.request == NULL && raw.response == NULL)
        return pt_conf_error(cx, node, "headers: give request: and/or response: operations");
    int rc = 0;
    if (raw.request != NULL && parse_side(cx, raw.request, &hc->request) != 0)
        rc = PT_ERR_INVALID;
    if (raw.response != NULL && parse_side(cx, raw.response, &hc->response) != 0)
        rc = PT_ERR_INVALID;
    return rc;
}

/* ---- request time ------------------------------------------------------------- */

static pt_str_t var_value(pt_req_t *req, const seg_t *s)
{
    switch (s->kind) {
    case V_LITERAL:
        return s->text;
    case V_CLIENT_ADDR:
        return pt_req_client_addr(req);
    case V_REQUEST_ID:
        return pt_req_id(req);
    case V_HOST:
        return pt_req_authority(req);
    case V_PATH:
        return pt_req_path(req);
    case V_METHOD:
        return pt_req_method(req);
    case V_SCHEME:
        return pt_req_scheme(req);
    case V_QUERY:
        return pt_req_query(req);
    case V_PARAM:
        return pt_req_param(req, s->text);
    case V_HEADER:
        return pt_headers_get(pt_req_headers(req), s->text);
    case V_VAR:
        return pt_req_var(req, s->text);
    }
    return PT_STR_NULL;
}

/* Expands `v` into the request arena. Returns 0, 1 (result unusable: skip), or PT_ERR_LIMIT. */
static int expand(pt_req_t *req, const value_t *v, pt_str_t *out)
{
    if (v->literal) {
        *out = v->cnt != 0 ? v->segs[0].text : (pt_str_t){"", 0};
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < v->cnt; i++)
        total += var_value(req, &v->segs[i]).len;
    char *buf = pt_arena_alloc(pt_req_arena(req), total + 1);
    if (buf == NULL)
        return PT_ERR_LIMIT;
    size_t o = 0;
    for (size_t i = 0; i < v->cnt; i++) {
        pt_str_t s = var_value(req, &v->segs[i]);
        if (s.len != 0 && o + s.len <= total) {
            memcpy(buf + o, s.base, s.len);
            o += s.len;
        }
    }
    buf[o] = '\0';
    *out = (pt_str_t){buf, o};
    /* variables carry client bytes: never let one smuggle a CR/LF into a header */
    return pt_header_value_valid(*out) ? 0 : 1;
}

static int apply(pt_req_t *req, const side_t *s, pt_headers_t *h)
{
    int rc;
    for (size_t i = 0; i < s->remove_cnt; i++)
        pt_headers_remove(h, s->remove[i].name);
    for (size_t i = 0; i < s->rename_cnt; i++)
        if ((rc = pt_headers_rename(h, s->rename[i].name, s->rename[i].to)) < 0)
            return rc;
    for (size_t i = 0; i < s->set_cnt; i++) {
        pt_str_t v;
        if ((rc = expand(req, &s->set[i].value, &v)) < 0)
            return rc;
        if (rc == 0 && (rc = pt_headers_set(h, s->set[i].name, v)) != 0)
            return rc;
    }
    for (size_t i = 0; i < s->add_cnt; i++) {
        pt_str_t v;
        if ((rc = expand(req, &s->add[i].value, &v)) < 0)
            return rc;
        /* name and literal values live in the snapshot, which outlives the request */
        if (rc == 0 && (rc = pt_headers_add_nocopy(h, s->add[i].name, v)) != 0)
            return rc;
    }
    return 0;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const headers_conf_t *hc = f->conf;
    if (apply(req, &hc->request, pt_req_headers(req)) != 0) {
        pt_req_fail(req, PT_ERR_LIMIT, "headers filter: request arena full");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

static pt_fstatus_t on_response_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const headers_conf_t *hc = f->conf;
    if (apply(req, &hc->response, pt_req_resp_headers(req)) != 0) {
        pt_req_fail(req, PT_ERR_LIMIT, "headers filter: request arena full");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_headers = {
    .abi = PT_FILTER_ABI,
    .name = "headers",
    .priority = 100,
    .conf_size = sizeof(headers_conf_t),
    .parse_conf = parse_conf,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
