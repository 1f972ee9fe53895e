/*
 * aggregate.c -- the `aggregate` route handler: one client request, several
 * REST / gRPC calls, one composed JSON response.
 *
 *   - match: { template: "/v1/dashboard/{user}" }
 *     aggregate:
 *       timeout: 2s                    # the whole aggregate (default: the route's, else 15s)
 *       max_result: 4m                 # bytes of one call's answer
 *       calls:
 *         - name: profile
 *           http: { cluster: users, path: "/users/{user}",
 *                   headers: { x-tenant: "{header.x-tenant}" } }
 *           select: [ id, name, favorite ]
 *         - name: item
 *           grpc: { cluster: inv, method: inventory.v1.Inventory/GetItem,
 *                   body: { name: "items/{profile.favorite}" } }
 *         - name: orders
 *           http: { cluster: users, path: "/orders?user={user}" }
 *           optional: true
 *           timeout: 300ms
 *           copy_headers: [ etag ]
 *       merge: { flatten: [ profile ] }
 *
 * The plan (check_conf): every template reference is resolved once; a
 * reference to a call's result makes the call depend on it; unknown heads
 * and dependency cycles are config errors at the template's position. At
 * request time calls whose dependencies are done start at once (all the
 * independent ones in the first loop turn); each completion starts the calls
 * it unblocks. A failed required call cancels everything outstanding and
 * answers with its status; a failed optional one is reported under
 * `errors` and the answer carries `portico-partial: <names>`. The overall
 * timer, the per-call timeouts (passed to the upstream primitive as
 * deadlines) and a client that goes away all end outstanding calls with
 * their kinds' cancel.
 */
#include "handlers/aggregate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "core/chain.h"
#include "core/handler.h"
#include "core/handler_lifetime.h"
#include "core/xalloc.h"
#include "observe/observe.h"
#include "portico/status.h"

#define DEFAULT_TIMEOUT_MS 15000u
#define BODY_CHUNK 16384

/* ---- call kinds --------------------------------------------------------------------
 * A kind is a vtable (aggregate.h); `unavailable` names why a kind that is
 * not built cannot be used (a config error at its key). */

static const struct {
    const char *key;
    const pt_agg_kind_t *kind;
    const char *unavailable;
} kinds[] = {
    {"http", &pt_agg_kind_http, NULL},
    {"grpc", &pt_agg_kind_grpc, NULL},
    {"soap", &pt_agg_kind_soap, NULL},
};
#define KIND_CNT (sizeof(kinds) / sizeof(kinds[0]))

/* ---- config: templates from nodes -------------------------------------------------- */

/* Where a reference starts in the file: the scalar's position plus its offset,
 * when the scalar is on one line and unescaped (else the scalar's start). */
static pt_conf_node_t at_offset(const pt_conf_node_t *n, size_t off)
{
    pt_conf_node_t at = *n;
    if (n->str != NULL && memchr(n->str, '\n', n->len) == NULL &&
        memchr(n->str, '\\', n->len) == NULL)
        at.col += (unsigned)off + (n->quoted ? 1u : 0u);
    return at;
}

int pt__agg_tmpl_from_node(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_agg_tmpl_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n == NULL || n->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "expected a text template (a string)");
    char err[128];
    size_t off = 0;
    if (pt_agg_tmpl_parse(n->str, n->len, out, err, sizeof(err), &off) != 0) {
        pt_conf_node_t at = at_offset(n, off);
        return pt_conf_error(cx, &at, "template '%s': %s", n->str, err);
    }
    return 0;
}

int pt__agg_tmap_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *what,
                       bool (*allowed)(const char *lname), pt_agg_tmap_t *out)
{
    memset(out, 0, sizeof(*out));
    out->node = node;
    if (node == NULL)
        return 0;
    if (node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "%s: expected a map { name: value }", what);
    out->names = pt_conf_alloc(cx, node->cnt * sizeof(char *) + 1);
    out->values = pt_xcalloc(node->cnt + 1, sizeof(pt_agg_tmpl_t));
    int rc = 0;
    for (size_t i = 0; i < node->cnt; i++) {
        char *ln = pt_conf_strdup(cx, node->keys[i]->str, node->keys[i]->len);
        for (char *p = ln; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!allowed(ln)) {
            rc = pt_conf_error(cx, node->keys[i], "%s: '%s' cannot be set on a call", what, ln);
            continue;
        }
        if (pt__agg_tmpl_from_node(cx, node->items[i], &out->values[out->cnt]) != 0) {
            rc = PT_ERR_INVALID;
            continue;
        }
        out->names[out->cnt++] = ln;
    }
    return rc;
}

void pt__agg_tmap_each(pt_agg_tmap_t *m, void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node),
                       void *ud)
{
    for (size_t i = 0; i < m->cnt; i++)
        fn(ud, &m->values[i], pt_conf_map_get(m->node, m->names[i]));
}

void pt__agg_tmap_dispose(pt_agg_tmap_t *m)
{
    for (size_t i = 0; i < m->cnt; i++)
        pt_agg_tmpl_dispose(&m->values[i]);
    free(m->values);
    m->values = NULL;
    m->cnt = 0;
}

pt_agg_jtmpl_t *pt__agg_jtmpl_from_node(pt_conf_cx_t *cx, const pt_conf_node_t *n)
{
    pt_agg_jtmpl_t *j = pt_xcalloc(1, sizeof(*j));
    j->node = n;
    if (n == NULL || n->kind == PT_CONF_NULL) {
        j->kind = PT_AGG_J_LITERAL;
        j->lit = NULL;
        return j;
    }
    if (n->kind == PT_CONF_MAP || n->kind == PT_CONF_SEQ) {
        j->kind = n->kind == PT_CONF_MAP ? PT_AGG_J_OBJECT : PT_AGG_J_ARRAY;
        j->items = pt_xcalloc(n->cnt + 1, sizeof(*j->items));
        if (n->kind == PT_CONF_MAP)
            j->keys = pt_xcalloc(n->cnt + 1, sizeof(*j->keys));
        bool bad = false;
        for (size_t i = 0; i < n->cnt; i++) {
            if (j->keys != NULL)
                j->keys[i] = pt_xcheck(strdup(n->keys[i]->str));
            j->items[i] = pt__agg_jtmpl_from_node(cx, n->items[i]);
            j->cnt = i + 1;
            bad |= j->items[i] == NULL;
        }
        if (bad) {
            pt_agg_jtmpl_free(j);
            return NULL;
        }
        return j;
    }
    if (memchr(n->str, '{', n->len) != NULL || memchr(n->str, '}', n->len) != NULL) {
        j->kind = PT_AGG_J_TEMPLATE;
        if (pt__agg_tmpl_from_node(cx, n, &j->tmpl) != 0) {
            pt_agg_jtmpl_free(j);
            return NULL;
        }
        return j;
    }
    j->kind = PT_AGG_J_LITERAL;
    if (!n->quoted) { /* YAML plain scalars keep their type: 3, 2.5, true, null */
        struct json_object *v = json_tokener_parse(n->str);
        json_type t = json_object_get_type(v);
        if (v != NULL && (t == json_type_int || t == json_type_double || t == json_type_boolean)) {
            j->lit = v;
            return j;
        }
        json_object_put(v);
        if (strcmp(n->str, "null") == 0 || strcmp(n->str, "~") == 0)
            return j; /* lit NULL: JSON null */
    }
    j->lit = json_object_new_string_len(n->str, (int)n->len);
    return j;
}

/* ---- config: the aggregate ----------------------------------------------------------- */

typedef struct call_raw {
    const char *name;
    const pt_conf_node_t *kind_nodes[KIND_CNT];
    bool optional;
    uint64_t timeout_ms;
    pt_conf_strlist_t copy_headers, select, omit;
    pt_conf_strmap_t rename;
} call_raw_t;

static const pt_conf_field_t call_fields[] = {
    {"name", PT_CONF_T_STR, offsetof(call_raw_t, name), 0, 0, true, NULL},
    {"http", PT_CONF_T_NODE, offsetof(call_raw_t, kind_nodes[0]), 0, 0, false, NULL},
    {"grpc", PT_CONF_T_NODE, offsetof(call_raw_t, kind_nodes[1]), 0, 0, false, NULL},
    {"soap", PT_CONF_T_NODE, offsetof(call_raw_t, kind_nodes[2]), 0, 0, false, NULL},
    {"optional", PT_CONF_T_BOOL, offsetof(call_raw_t, optional), 0, 0, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(call_raw_t, timeout_ms), 1, 0, false, NULL},
    {"copy_headers", PT_CONF_T_STRLIST, offsetof(call_raw_t, copy_headers), 0, 0, false, NULL},
    {"select", PT_CONF_T_STRLIST, offsetof(call_raw_t, select), 0, 0, false, NULL},
    {"omit", PT_CONF_T_STRLIST, offsetof(call_raw_t, omit), 0, 0, false, NULL},
    {"rename", PT_CONF_T_STRMAP, offsetof(call_raw_t, rename), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

typedef struct agg_raw {
    uint64_t timeout_ms, max_result;
    const pt_conf_node_t *calls, *merge;
} agg_raw_t;

static const pt_conf_field_t agg_fields[] = {
    {"timeout", PT_CONF_T_DURATION, offsetof(agg_raw_t, timeout_ms), 1, 0, false, NULL},
    {"max_result", PT_CONF_T_SIZE, offsetof(agg_raw_t, max_result), 1, 1ll << 30, false, NULL},
    {"calls", PT_CONF_T_NODE, offsetof(agg_raw_t, calls), 0, 0, true, NULL},
    {"merge", PT_CONF_T_NODE, offsetof(agg_raw_t, merge), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

typedef struct merge_raw {
    pt_conf_strlist_t flatten;
} merge_raw_t;

static const pt_conf_field_t merge_fields[] = {
    {"flatten", PT_CONF_T_STRLIST, offsetof(merge_raw_t, flatten), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static bool call_name_ok(const char *s)
{
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    return strlen(s) <= 64 && strcmp(s, "header") != 0 && strcmp(s, "body") != 0 &&
           strcmp(s, "errors") != 0;
}

static const pt_conf_node_t *list_item(const pt_conf_node_t *list, size_t i)
{
    return list != NULL && list->kind == PT_CONF_SEQ && i < list->cnt ? list->items[i] : list;
}

static void shape_dispose(void *data)
{
    pt_agg_shape_dispose(data);
}

static void parse_shape(pt_conf_cx_t *cx, const pt_conf_node_t *cn, const call_raw_t *raw,
                        pt_agg_shape_t *sh)
{
    const char *why = NULL;
    sh->select = pt_xcalloc(raw->select.cnt + 1, sizeof(pt_agg_fpath_t));
    for (size_t i = 0; i < raw->select.cnt; i++) {
        if (pt_agg_fpath_parse(raw->select.v[i], &sh->select[sh->select_cnt], &why) == 0)
            sh->select_cnt++;
        else
            pt_conf_error(cx, list_item(pt_conf_map_get(cn, "select"), i), "select: '%s': %s",
                          raw->select.v[i], why);
    }
    sh->omit = pt_xcalloc(raw->omit.cnt + 1, sizeof(pt_agg_fpath_t));
    for (size_t i = 0; i < raw->omit.cnt; i++) {
        if (pt_agg_fpath_parse(raw->omit.v[i], &sh->omit[sh->omit_cnt], &why) == 0)
            sh->omit_cnt++;
        else
            pt_conf_error(cx, list_item(pt_conf_map_get(cn, "omit"), i), "omit: '%s': %s",
                          raw->omit.v[i], why);
    }
    sh->rename_from = pt_xcalloc(raw->rename.cnt + 1, sizeof(pt_agg_fpath_t));
    sh->rename_to = pt_xcalloc(raw->rename.cnt + 1, sizeof(char *));
    for (size_t i = 0; i < raw->rename.cnt; i++) {
        const pt_conf_kv_t *kv = &raw->rename.v[i];
        pt_agg_fpath_t p;
        if (pt_agg_fpath_parse(kv->value, &p, &why) != 0 || strchr(kv->key, '.') != NULL ||
            strchr(kv->key, '[') != NULL || kv->key[0] == '\0') {
            if (why == NULL)
                why = "the new name is a plain field name";
            else
                pt_agg_fpath_dispose(&p);
            pt_conf_error(cx, pt_conf_map_get(cn, "rename"), "rename: '%s: %s': %s", kv->key,
                          kv->value, why);
            continue;
        }
        sh->rename_from[sh->rename_cnt] = p;
        sh->rename_to[sh->rename_cnt++] = pt_xcheck(strdup(kv->key));
    }
    pt_conf_on_release(cx, shape_dispose, sh);
}

static int parse_call(pt_conf_cx_t *cx, const pt_conf_node_t *cn, pt_agg_conf_t *conf,
                      pt_agg_call_conf_t *cc)
{
    if (cn->kind != PT_CONF_MAP)
        return pt_conf_error(cx, cn, "aggregate: a call is a map { name, http | grpc, ... }");
    call_raw_t raw = {0};
    if (pt_conf_parse_fields(cx, cn, call_fields, &raw) != 0)
        return PT_ERR_INVALID;
    cc->node = cn;
    cc->name = raw.name;
    cc->optional = raw.optional;
    cc->timeout_ms = raw.timeout_ms;
    if (!call_name_ok(raw.name))
        return pt_conf_error(cx, pt_conf_map_get(cn, "name"),
                             "aggregate: call name '%s': letters, digits, `_`, `-` (at most 64, "
                             "starting with a letter; not header, body or errors)",
                             raw.name);
    for (size_t i = 0; i < cc->index; i++)
        if (strcmp(conf->calls[i].name, raw.name) == 0)
            return pt_conf_error(cx, pt_conf_map_get(cn, "name"), "aggregate: two calls named '%s'",
                                 raw.name);
    size_t nkinds = 0;
    for (size_t k = 0; k < KIND_CNT; k++) {
        if (raw.kind_nodes[k] == NULL)
            continue;
        nkinds++;
        if (kinds[k].kind == NULL) {
            pt_conf_error(cx, raw.kind_nodes[k], "aggregate: call '%s': %s", raw.name,
                          kinds[k].unavailable);
            continue;
        }
        cc->kind = kinds[k].kind;
        cc->kind_node = raw.kind_nodes[k];
    }
    if (nkinds != 1)
        return pt_conf_error(cx, cn, "aggregate: call '%s' needs exactly one of http, grpc, soap",
                             raw.name);
    if (cc->kind == NULL)
        return PT_ERR_INVALID;
    cc->copy_headers = raw.copy_headers;
    for (size_t i = 0; i < raw.copy_headers.cnt; i++) {
        char *n = pt_conf_strdup(cx, raw.copy_headers.v[i], strlen(raw.copy_headers.v[i]));
        for (char *p = n; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!pt_header_name_valid(pt_str_c(n), true) || pt_header_is_hop_by_hop(pt_str_c(n)) ||
            strcmp(n, "content-length") == 0 || strcmp(n, "content-type") == 0 ||
            strcmp(n, "transfer-encoding") == 0)
            pt_conf_error(cx, list_item(pt_conf_map_get(cn, "copy_headers"), i),
                          "copy_headers: '%s' cannot be copied to the client", n);
        cc->copy_headers.v[i] = n;
    }
    parse_shape(cx, cn, &raw, &cc->shape);
    return cc->kind->parse(cx, cc->kind_node, cc, &cc->kconf);
}

static int agg_parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    pt_agg_conf_t *conf = vconf;
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "aggregate: expected a map { timeout, calls: [...] }");
    agg_raw_t raw = {0};
    raw.max_result = PT_AGG_DEFAULT_MAX_RESULT;
    if (pt_conf_parse_fields(cx, node, agg_fields, &raw) != 0)
        return PT_ERR_INVALID;
    conf->timeout_ms = raw.timeout_ms;
    conf->max_result = raw.max_result;
    const pt_conf_node_t *calls = raw.calls;
    if (calls->kind != PT_CONF_SEQ || calls->cnt == 0)
        return pt_conf_error(cx, calls, "aggregate: calls: expected a list of calls");
    if (calls->cnt > PT_AGG_MAX_CALLS)
        return pt_conf_error(cx, calls->items[PT_AGG_MAX_CALLS],
                             "aggregate: at most %d calls per aggregate", PT_AGG_MAX_CALLS);
    conf->calls = pt_conf_alloc(cx, calls->cnt * sizeof(*conf->calls));
    conf->call_cnt = calls->cnt;
    for (size_t i = 0; i < calls->cnt; i++) {
        conf->calls[i].index = (unsigned)i;
        parse_call(cx, calls->items[i], conf, &conf->calls[i]);
    }
    if (raw.merge != NULL) {
        merge_raw_t m = {0};
        if (raw.merge->kind != PT_CONF_MAP)
            return pt_conf_error(cx, raw.merge,
                                 "aggregate: merge: expected a map { flatten: [...] }");
        if (pt_conf_parse_fields(cx, raw.merge, merge_fields, &m) != 0)
            return PT_ERR_INVALID;
        for (size_t i = 0; i < m.flatten.cnt; i++) {
            size_t k = 0;
            while (k < conf->call_cnt && (conf->calls[k].name == NULL ||
                                          strcmp(conf->calls[k].name, m.flatten.v[i]) != 0))
                k++;
            if (k == conf->call_cnt)
                pt_conf_error(cx, list_item(pt_conf_map_get(raw.merge, "flatten"), i),
                              "aggregate: merge.flatten: no call named '%s'", m.flatten.v[i]);
            else
                conf->flatten |= 1u << k;
        }
    }
    return pt_conf_error_count(cx) == 0 ? 0 : PT_ERR_INVALID;
}

/* The plan: resolve references, find dependencies (check_conf). */
typedef struct plan_cx {
    pt_conf_cx_t *cx;
    pt_agg_conf_t *conf;
    pt_agg_call_conf_t *cc;
    bool bad;
} plan_cx_t;

static int call_index(const pt_agg_conf_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->call_cnt; i++)
        if (conf->calls[i].name != NULL && strcmp(conf->calls[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void plan_tmpl(void *ud, pt_agg_tmpl_t *t, const void *vnode)
{
    plan_cx_t *p = ud;
    const pt_conf_node_t *node = vnode;
    for (size_t i = 0; i < t->ref_cnt; i++) {
        pt_agg_ref_t *r = &t->refs[i];
        if (r->kind == PT_AGG_REF_HEADER)
            continue;
        if (r->kind == PT_AGG_REF_BODY) {
            p->conf->uses_body = true;
            continue;
        }
        int k = call_index(p->conf, r->head);
        if (k >= 0) {
            r->call = k;
            p->cc->deps |= 1u << k;
            continue;
        }
        if (r->kind == PT_AGG_REF_NAME)
            continue; /* a path or query parameter of the client request */
        pt_conf_node_t at = node != NULL ? at_offset(node, r->offset) : (pt_conf_node_t){0};
        pt_conf_error(p->cx, node != NULL ? &at : p->cc->node,
                      "aggregate: call '%s': unknown reference {%s}: no call named '%s' (a "
                      "reference is {param}, {header.NAME}, {body.PATH} or {CALL.PATH})",
                      p->cc->name, r->text, r->head);
        p->bad = true;
    }
}

/* Depth-first search for a cycle through `i`; `path` holds the calls on the way. */
static bool find_cycle(const pt_agg_conf_t *conf, unsigned i, uint8_t *color, unsigned *path,
                       size_t depth, size_t *cycle_len)
{
    color[i] = 1;
    path[depth] = i;
    for (unsigned d = 0; d < conf->call_cnt; d++) {
        if (!(conf->calls[i].deps & (1u << d)))
            continue;
        if (color[d] == 1) {
            /* the cycle is path[k..depth] where path[k] == d */
            size_t k = 0;
            while (path[k] != d)
                k++;
            memmove(path, path + k, (depth - k + 1) * sizeof(*path));
            *cycle_len = depth - k + 1;
            return true;
        }
        if (color[d] == 0 && find_cycle(conf, d, color, path, depth + 1, cycle_len))
            return true;
    }
    color[i] = 2;
    return false;
}

static int agg_check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf,
                          const pt_config_t *config)
{
    (void)node;
    pt_agg_conf_t *conf = vconf;
    conf->config = config;
    bool bad = false;
    for (size_t i = 0; i < conf->call_cnt; i++) {
        pt_agg_call_conf_t *cc = &conf->calls[i];
        if (cc->kind == NULL || cc->kconf == NULL)
            return PT_ERR_INVALID;
        if (cc->kind->check(cx, cc, config) != 0)
            bad = true;
        plan_cx_t p = {cx, conf, cc, false};
        cc->kind->each_tmpl(cc, plan_tmpl, &p);
        bad |= p.bad;
    }
    uint8_t color[PT_AGG_MAX_CALLS] = {0};
    unsigned path[PT_AGG_MAX_CALLS + 1];
    for (unsigned i = 0; i < conf->call_cnt; i++) {
        size_t len = 0;
        if (color[i] != 0 || !find_cycle(conf, i, color, path, 0, &len) || len == 0)
            continue;
        char text[PT_AGG_MAX_CALLS * 70 + 8];
        size_t off = 0;
        for (size_t k = 0; k <= len; k++)
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%s", k ? " -> " : "",
                                    conf->calls[path[k % len]].name);
        pt_conf_error(cx, conf->calls[path[0]].node,
                      "aggregate: dependency cycle between calls: %s", text);
        bad = true;
        for (size_t k = 0; k < conf->call_cnt; k++) /* the search stopped midway: done with it */
            if (color[k] == 1)
                color[k] = 2;
    }
    return bad ? PT_ERR_INVALID : 0;
}

/* ---- per request ------------------------------------------------------------------------ */

struct pt_agg_run {
    pt_req_t *req;
    const pt_agg_conf_t *conf;
    pt_agg_call_t *calls; /* conf->call_cnt of them */
    uint32_t ok_mask, failed_mask;
    struct event *timer;
    uint64_t t0_ns, deadline_ns;
    struct json_object *body; /* the client's JSON body (uses_body) */
    struct json_tokener *tok; /* one JSON parser for all the answers (made on first use) */
    char *in;                 /* body bytes being read */
    size_t in_len, in_cap;
    bool started; /* the calls were started (body read) */
    bool answered;
    bool finished;
};

pt_req_t *pt__agg_req(const pt_agg_call_t *c)
{
    return c->run->req;
}

const pt_agg_conf_t *pt__agg_conf(const pt_agg_call_t *c)
{
    return c->run->conf;
}

uint64_t pt__agg_call_timeout(const pt_agg_call_t *c)
{
    uint64_t now = pt_now_ns();
    uint64_t left = c->run->deadline_ns > now ? (c->run->deadline_ns - now + 999999) / 1000000 : 1;
    if (c->conf->timeout_ms != 0 && c->conf->timeout_ms < left)
        left = c->conf->timeout_ms;
    return left != 0 ? left : 1;
}

static void run_cleanup(void *data)
{
    pt_agg_run_t *run = data;
    for (size_t i = 0; i < run->conf->call_cnt; i++) {
        pt_agg_call_t *c = &run->calls[i];
        if (c->state == PT_AGG_RUNNING) {
            c->conf->kind->cancel(c);
            c->state = PT_AGG_FAILED;
        }
        json_object_put(c->result);
        c->result = NULL;
    }
    if (run->timer != NULL) {
        event_free(run->timer);
        run->timer = NULL;
    }
    json_object_put(run->body);
    run->body = NULL;
    if (run->tok != NULL)
        json_tokener_free(run->tok);
    run->tok = NULL;
    free(run->in);
    run->in = NULL;
}

static bool blank(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

struct json_object *pt__agg_parse_json(pt_agg_run_t *run, const char *buf, size_t len, bool *ok)
{
    *ok = false;
    size_t i = 0;
    while (i < len && blank(buf[i]))
        i++;
    if (i == len) {
        *ok = true;
        return NULL;
    }
    if (len > INT32_MAX)
        return NULL;
    if (run->tok == NULL) {
        /* proto3 JSON of 64 nested messages is 2 * 64 + 2 levels deep */
        run->tok = json_tokener_new_ex(PT_AGG_JSON_DEPTH);
        if (run->tok == NULL)
            return NULL;
        json_tokener_set_flags(run->tok, JSON_TOKENER_STRICT);
    } else {
        json_tokener_reset(run->tok);
    }
    struct json_object *j = json_tokener_parse_ex(run->tok, buf + i, (int)(len - i));
    size_t end = i + json_tokener_get_parse_end(run->tok);
    if (j == NULL && json_tokener_get_error(run->tok) == json_tokener_continue) {
        /* a number or literal that ends the input waits for a terminator */
        j = json_tokener_parse_ex(run->tok, "", 1);
        end = len;
    }
    if (json_tokener_get_error(run->tok) != json_tokener_success) { /* also incomplete */
        json_object_put(j);
        return NULL;
    }
    for (size_t k = end; k < len; k++)
        if (!blank(buf[k])) {
            json_object_put(j);
            return NULL;
        }
    *ok = true;
    return j;
}

/* ---- lookups --------------------------------------------------------------------------- */

/* Percent-decodes s into the arena ('+' is a space in a query); NULL on a NUL byte. */
static const char *decode(pt_arena_t *a, pt_str_t s, bool plus, size_t *len)
{
    char *d = pt_arena_alloc(a, s.len + 1);
    if (d == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        int hi, lo;
        if (c == '%' && i + 2 < s.len && (hi = pt_str_hexval(s.base[i + 1])) >= 0 &&
            (lo = pt_str_hexval(s.base[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == '\0')
            return NULL;
        d[n++] = c;
    }
    d[n] = '\0';
    *len = n;
    return d;
}

static pt_agg_val_t param_value(pt_agg_run_t *run, const pt_agg_ref_t *r)
{
    pt_req_t *req = run->req;
    pt_agg_val_t v = {0};
    pt_str_t name = {r->head, r->head_len};
    for (size_t i = 0; i < req->route.param_cnt; i++) {
        if (!pt_str_eq(req->route.params[i].name, name))
            continue;
        size_t n = 0;
        const char *d = decode(req->arena, req->route.params[i].value, false, &n);
        if (d != NULL) {
            v.found = true;
            v.str = (pt_str_t){d, n};
        }
        return v;
    }
    pt_str_t q = req->query;
    size_t start = 0;
    for (size_t i = 0; i <= q.len; i++) {
        if (i < q.len && q.base[i] != '&')
            continue;
        pt_str_t kv = {q.base + start, i - start};
        start = i + 1;
        const char *eq = memchr(kv.base, '=', kv.len);
        pt_str_t k = eq != NULL ? (pt_str_t){kv.base, (size_t)(eq - kv.base)} : kv;
        if (!pt_str_eq(k, name))
            continue;
        pt_str_t val = eq != NULL ? (pt_str_t){eq + 1, kv.len - k.len - 1} : PT_STR("");
        size_t n = 0;
        const char *d = decode(req->arena, val, true, &n);
        if (d != NULL) {
            v.found = true;
            v.str = (pt_str_t){d, n};
        }
        return v;
    }
    return v;
}

pt_agg_val_t pt__agg_lookup(void *ud, const pt_agg_ref_t *r)
{
    pt_agg_run_t *run = ud;
    pt_agg_val_t v = {0};
    switch (r->kind) {
    case PT_AGG_REF_HEADER: {
        pt_str_t h = pt_headers_get(&run->req->headers, (pt_str_t){r->head, r->head_len});
        if (h.base != NULL) {
            v.found = true;
            v.str = h;
        }
        return v;
    }
    case PT_AGG_REF_BODY:
        if (run->body == NULL)
            return v;
        v.is_json = true;
        v.j = pt_agg_json_walk(run->body, r->steps, r->step_cnt, &v.found);
        return v;
    case PT_AGG_REF_NAME:
    case PT_AGG_REF_PATH:
        if (r->call < 0)
            return param_value(run, r);
        if (run->calls[r->call].state != PT_AGG_OK)
            return v;
        v.is_json = true;
        v.j = pt_agg_json_walk(run->calls[r->call].result, r->steps, r->step_cnt, &v.found);
        return v;
    }
    return v;
}

static void render_failed(pt_agg_call_t *c, const pt_agg_rerr_t *e)
{
    pt_req_t *req = c->run->req;
    if (e->ref != NULL && e->ref->call >= 0) {
        c->status = 502;
        c->fail = PT_ERR_UPSTREAM;
        c->message = pt_arena_printf(req->arena, "{%s} in the result of '%s': %s", e->ref->text,
                                     c->run->conf->calls[e->ref->call].name, e->why);
    } else if (e->ref != NULL) {
        c->status = 400;
        c->fail = PT_ERR_INVALID;
        c->message = pt_arena_printf(req->arena, "{%s} of the request: %s", e->ref->text, e->why);
    } else {
        c->status = 400;
        c->fail = PT_ERR_INVALID;
        c->message = e->why;
    }
    if (c->message == NULL)
        c->message = e->why;
}

const char *pt__agg_render(pt_agg_call_t *c, const pt_agg_tmpl_t *t, pt_agg_enc_t enc)
{
    pt_req_t *req = c->run->req;
    for (size_t cap = 512; cap <= 65536; cap *= 8) {
        char *buf = pt_arena_alloc(req->arena, cap);
        if (buf == NULL)
            break;
        pt_agg_rerr_t e = {0};
        if (pt_agg_tmpl_render(t, enc, pt__agg_lookup, c->run, buf, cap, &e) >= 0)
            return buf;
        if (e.ref != NULL) {
            render_failed(c, &e);
            return NULL;
        }
    }
    pt_agg_rerr_t e = {NULL, "a rendered value is too long"};
    render_failed(c, &e);
    return NULL;
}

struct json_object *pt__agg_render_json(pt_agg_call_t *c, const pt_agg_jtmpl_t *j)
{
    pt_agg_rerr_t e = {0};
    struct json_object *v = pt_agg_jtmpl_render(j, pt__agg_lookup, c->run, &e);
    if (v == NULL && e.why != NULL) {
        render_failed(c, &e);
        return NULL;
    }
    return v != NULL ? v : json_object_new_null();
}

int pt__agg_start_failed(pt_agg_call_t *c, const pt_cluster_t *cluster, int rc)
{
    pt_observe_upstream_error(c->run->req->worker, cluster, rc);
    c->message = rc == PT_ERR_UNAVAILABLE ? "no upstream endpoint available"
                                          : "upstream call failed to start";
    return rc;
}

void pt__agg_copy_headers(pt_agg_call_t *c, const pt_header_t *h, size_t cnt)
{
    const pt_conf_strlist_t *want = &c->conf->copy_headers;
    if (want->cnt == 0)
        return;
    if (c->copied.arena == NULL)
        pt_headers_init(&c->copied, c->run->req->arena);
    for (size_t i = 0; i < cnt; i++)
        for (size_t k = 0; k < want->cnt; k++)
            if (pt_str_ieq(h[i].name, pt_str_c(want->v[k])) && pt_header_value_valid(h[i].value))
                pt_headers_add(&c->copied, pt_str_c(want->v[k]), h[i].value);
}

/* ---- answers -------------------------------------------------------------------------------- */

static void record_calls(pt_agg_run_t *run)
{
    pt_req_t *req = run->req;
    pt_req_subcall_t *s = pt_arena_zalloc(req->arena, run->conf->call_cnt * sizeof(*s));
    if (s == NULL)
        return;
    uint64_t now = pt_now_ns();
    for (size_t i = 0; i < run->conf->call_cnt; i++) {
        const pt_agg_call_t *c = &run->calls[i];
        s[i].name = c->conf->name;
        s[i].upstream = c->upstream;
        s[i].status = c->t0_ns != 0 ? c->status : 0;
        s[i].ns = c->t0_ns == 0 ? 0 : (c->t1_ns != 0 ? c->t1_ns : now) - c->t0_ns;
        s[i].started = c->t0_ns != 0;
    }
    req->subcalls = s;
    req->subcall_cnt = run->conf->call_cnt;
}

/* Cancels every running call (their state: failed with `st`, `msg`). */
static void cancel_all(pt_agg_run_t *run, int http, int st, const char *msg)
{
    uint64_t now = pt_now_ns();
    for (size_t i = 0; i < run->conf->call_cnt; i++) {
        pt_agg_call_t *c = &run->calls[i];
        if (c->state == PT_AGG_RUNNING) {
            c->conf->kind->cancel(c);
            c->t1_ns = now;
        }
        if (c->state == PT_AGG_RUNNING || c->state == PT_AGG_WAITING) {
            c->state = PT_AGG_FAILED;
            c->status = http;
            c->fail = st;
            c->message = msg;
            run->failed_mask |= 1u << i;
        }
    }
}

static void finish(pt_agg_run_t *run)
{
    if (run->finished)
        return;
    run->finished = true;
    if (run->timer != NULL)
        event_del(run->timer);
    record_calls(run);
    pt_handler_finish(run->req);
}

static void reply(pt_agg_run_t *run, int status, const char *body, size_t len)
{
    pt_req_t *req = run->req;
    req->resp_status = status;
    req->resp_content_length = (int64_t)len;
    pt_headers_set(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    pt__resp_head(req);
    if (!pt_handler_gone(req))
        pt__resp_body(req, body, len, true);
}

/* A required call failed: the request fails with its status. */
static void fail_request(pt_agg_run_t *run, pt_agg_call_t *c)
{
    pt_req_t *req = run->req;
    run->answered = true;
    cancel_all(run, 502, PT_ERR_CANCELED, "cancelled: a required call failed");
    int st = c->fail != 0 ? c->fail : c->status >= 500 ? PT_ERR_UPSTREAM : PT_ERR_INVALID;
    if (req->fail_status == 0) {
        req->fail_status = st;
        if (req->fail_reason == NULL)
            req->fail_reason = "aggregate: a required call failed";
    }
    pt_headers_init(&req->resp_headers, req->arena);
    pt_headers_add_nocopy(&req->resp_headers, PT_STR("portico-failed-call"),
                          pt_str_c(c->conf->name));
    if (c->error_body.len != 0) {
        reply(run, c->status, c->error_body.base, c->error_body.len);
        return;
    }
    /* Portico's own JSON error, naming the call (and, for a 4xx, what was wrong) */
    int http = c->status != 0 ? c->status : pt_status_http(st);
    struct json_object *o = json_object_new_object(), *e = json_object_new_object();
    json_object_object_add(
        e, "code",
        json_object_new_string(c->fail != 0 ? pt_status_name(c->fail) : "UPSTREAM_ERROR"));
    json_object_object_add(e, "message",
                           json_object_new_string(c->fail != 0 ? pt_strerror(c->fail)
                                                               : "a call of the aggregate failed"));
    json_object_object_add(e, "call", json_object_new_string(c->conf->name));
    if (http < 500 && c->message != NULL)
        json_object_object_add(e, "detail", json_object_new_string(c->message));
    if (req->request_id.len != 0)
        json_object_object_add(
            e, "request_id",
            json_object_new_string_len(req->request_id.base, (int)req->request_id.len));
    json_object_object_add(o, "error", e);
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    reply(run, http, s, n);
    json_object_put(o);
}

static void answer(pt_agg_run_t *run)
{
    pt_req_t *req = run->req;
    const pt_agg_conf_t *conf = run->conf;
    run->answered = true;
    struct json_object *top = json_object_new_object(), *errors = NULL;
    pt_headers_init(&req->resp_headers, req->arena);
    char partial[PT_AGG_MAX_CALLS * 66];
    size_t plen = 0;
    for (size_t i = 0; i < conf->call_cnt; i++) {
        pt_agg_call_t *c = &run->calls[i];
        if (c->state != PT_AGG_OK) {
            if (errors == NULL)
                errors = json_object_new_object();
            struct json_object *e = json_object_new_object();
            json_object_object_add(e, "status", json_object_new_int(c->status));
            json_object_object_add(
                e, "message", json_object_new_string(c->message != NULL ? c->message : "failed"));
            json_object_object_add(errors, c->conf->name, e);
            plen += (size_t)snprintf(partial + plen, sizeof(partial) - plen, "%s%s",
                                     plen ? ", " : "", c->conf->name);
            continue;
        }
        for (size_t k = 0; k < c->copied.cnt; k++)
            pt_headers_add_nocopy(&req->resp_headers, c->copied.v[k].name, c->copied.v[k].value);
        struct json_object *v = pt_agg_shape_empty(&c->conf->shape)
                                    ? json_object_get(c->result)
                                    : pt_agg_shape_apply(&c->conf->shape, c->result);
        if ((conf->flatten & (1u << i)) && json_object_is_type(v, json_type_object)) {
            struct json_object_iterator it = json_object_iter_begin(v);
            struct json_object_iterator end = json_object_iter_end(v);
            for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
                json_object_object_add(top, json_object_iter_peek_name(&it),
                                       json_object_get(json_object_iter_peek_value(&it)));
            json_object_put(v);
        } else {
            json_object_object_add(top, c->conf->name, v);
        }
    }
    if (errors != NULL) {
        json_object_object_add(top, "errors", errors);
        pt_headers_add(&req->resp_headers, PT_STR("portico-partial"), (pt_str_t){partial, plen});
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        top, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    reply(run, 200, s, n);
    json_object_put(top);
}

/* ---- scheduling -------------------------------------------------------------------------- */

static void mark_failed(pt_agg_run_t *run, pt_agg_call_t *c)
{
    c->state = PT_AGG_FAILED;
    if (c->t0_ns != 0 && c->t1_ns == 0)
        c->t1_ns = pt_now_ns();
    run->failed_mask |= 1u << c->conf->index;
}

/*
 * Starts what can start, fails what cannot run, answers when nothing is left.
 * Returns after the answer (or with calls still running).
 */
static void settle(pt_agg_run_t *run)
{
    const pt_agg_conf_t *conf = run->conf;
    bool changed = true;
    while (changed && !run->answered) {
        changed = false;
        for (size_t i = 0; i < conf->call_cnt && !run->answered; i++) {
            pt_agg_call_t *c = &run->calls[i];
            if (c->state != PT_AGG_WAITING)
                continue;
            uint32_t deps = c->conf->deps;
            if (deps & run->failed_mask) {
                unsigned d = 0;
                while (!(deps & run->failed_mask & (1u << d)))
                    d++;
                const pt_agg_call_t *dc = &run->calls[d];
                c->status = dc->status;
                c->fail = dc->fail;
                c->message = pt_arena_printf(run->req->arena, "depends on '%s', which failed",
                                             dc->conf->name);
                mark_failed(run, c);
                changed = true;
                if (!c->conf->optional)
                    fail_request(run, c);
                continue;
            }
            if ((deps & ~run->ok_mask) != 0)
                continue;
            c->state = PT_AGG_RUNNING;
            c->t0_ns = pt_now_ns();
            int rc = c->conf->kind->start(c);
            changed = true;
            if (rc != 0) {
                if (c->status == 0)
                    c->status = pt_status_http(rc);
                if (c->fail == 0)
                    c->fail = rc;
                mark_failed(run, c);
                if (!c->conf->optional)
                    fail_request(run, c);
            }
        }
    }
    if (run->answered)
        return;
    for (size_t i = 0; i < conf->call_cnt; i++)
        if (run->calls[i].state == PT_AGG_RUNNING || run->calls[i].state == PT_AGG_WAITING)
            return;
    answer(run);
}

void pt__agg_call_done(pt_agg_call_t *c, bool ok)
{
    pt_agg_run_t *run = c->run;
    pt_req_t *req = run->req;
    pt_handler_enter(req);
    if (c->state == PT_AGG_RUNNING) {
        c->t1_ns = pt_now_ns();
        if (ok) {
            c->state = PT_AGG_OK;
            run->ok_mask |= 1u << c->conf->index;
        } else {
            mark_failed(run, c);
        }
        if (!run->answered && !run->finished) {
            if (!ok && !c->conf->optional)
                fail_request(run, c);
            else
                settle(run);
            if (run->answered)
                finish(run);
        }
    }
    pt_handler_leave(req);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_agg_run_t *run = arg;
    pt_req_t *req = run->req;
    pt_handler_enter(req);
    if (!run->answered && !run->finished) {
        /* the first required call still outstanding decides; else a partial answer */
        pt_agg_call_t *req_call = NULL;
        for (size_t i = 0; i < run->conf->call_cnt; i++) {
            pt_agg_call_t *c = &run->calls[i];
            if ((c->state == PT_AGG_RUNNING || c->state == PT_AGG_WAITING) && !c->conf->optional &&
                req_call == NULL)
                req_call = c;
        }
        cancel_all(run, 504, PT_ERR_TIMEOUT, "aggregate timeout");
        if (req_call != NULL)
            fail_request(run, req_call);
        else
            answer(run);
        finish(run);
    }
    pt_handler_leave(req);
}

static void on_client_abort(void *data)
{
    pt_agg_run_t *run = data;
    run->answered = true;
    cancel_all(run, 499, PT_ERR_CANCELED, "client went away");
    finish(run);
}

static void start_calls(pt_agg_run_t *run)
{
    run->started = true;
    settle(run);
    if (run->answered)
        finish(run);
}

/* The client's body, when templates read it: all of it, then JSON. */
static void read_body(pt_agg_run_t *run)
{
    pt_req_t *req = run->req;
    for (;;) {
        if (run->in_cap - run->in_len < BODY_CHUNK) {
            run->in_cap = run->in_cap ? run->in_cap * 2 : BODY_CHUNK * 2;
            run->in = pt_xrealloc(run->in, run->in_cap);
        }
        bool eof = false;
        size_t n = pt__req_body_read(req, run->in + run->in_len, run->in_cap - run->in_len, &eof);
        run->in_len += n;
        if (pt_handler_gone(req)) {
            run->answered = true;
            finish(run);
            return;
        }
        if (eof)
            break;
        if (n == 0)
            return; /* on_body continues */
    }
    bool ok = false;
    run->body = pt__agg_parse_json(run, run->in, run->in_len, &ok);
    if (!ok) {
        run->answered = true;
        pt__resp_fail(req, PT_ERR_INVALID, "the request body is not valid JSON");
        finish(run);
        return;
    }
    start_calls(run);
}

static void agg_on_body(pt_req_t *req)
{
    pt_agg_run_t *run = req->handler_ctx;
    if (run == NULL || run->started || run->finished || !run->conf->uses_body)
        return;
    pt_handler_enter(req);
    read_body(run);
    pt_handler_leave(req);
}

static void agg_start(pt_req_t *req, const void *vconf)
{
    const pt_agg_conf_t *conf = vconf;
    pt_agg_run_t *run = pt_arena_zalloc(req->arena, sizeof(*run));
    pt_agg_call_t *calls = pt_arena_zalloc(req->arena, conf->call_cnt * sizeof(*calls));
    if (run == NULL || calls == NULL || pt_arena_defer(req->arena, run_cleanup, run) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        pt_handler_finish(req);
        return;
    }
    run->req = req;
    run->conf = conf;
    run->calls = calls;
    req->handler_ctx = run;
    for (size_t i = 0; i < conf->call_cnt; i++) {
        run->calls[i].run = run;
        run->calls[i].conf = &conf->calls[i];
    }
    pt_handler_enter(req);
    uint64_t ms = conf->timeout_ms;
    if (ms == 0 && req->route.route != NULL)
        ms = req->route.route->timeout_ms;
    if (ms == 0)
        ms = DEFAULT_TIMEOUT_MS;
    run->t0_ns = pt_now_ns();
    run->deadline_ns = run->t0_ns + ms * 1000000ull;
    run->timer = evtimer_new(req->worker->base, on_timeout, run);
    if (run->timer == NULL || pt_req_on_abort(req, on_client_abort, run) != 0) {
        pt__resp_fail(req, PT_ERR_HEADERS_TOO_LARGE, "request arena full");
        run->answered = true;
        finish(run);
        pt_handler_leave(req);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(run->timer, &tv);
    if (conf->uses_body && req->expect_body)
        read_body(run);
    else
        start_calls(run);
    pt_handler_leave(req);
}

const pt_handler_def_t pt_handler_aggregate = {
    .name = "aggregate",
    .conf_size = sizeof(pt_agg_conf_t),
    .fields = NULL, /* parse_conf reads the map (the calls are a list of maps of their own) */
    .parse_conf = agg_parse_conf,
    .check_conf = agg_check_conf,
    .conf_dispose = NULL,
    .start = agg_start,
    .on_body = agg_on_body,
    .on_writable = NULL,
};
