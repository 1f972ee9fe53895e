/*
 * router.c -- route matching.
 *
 * Routes are tried in config order and the first match wins, exactly as the
 * user wrote them; each test is cheap and precompiled: the method is one bit
 * test, prefixes and exact paths are memcmp, templates are pre-split into
 * literal and variable segments and matched in one pass over the path
 * without copying, hosts are lowercased at load and compared
 * case-insensitively. The only allocation is the params array of a template
 * match (request arena).
 */
#include "core/router.h"
#include "core/config.h"

#include <ctype.h>
#include <string.h>

#include "core/confparse.h"
#include "portico/status.h"

#define MAX_TEMPLATE_VARS 16

/* ---- methods ---------------------------------------------------------------------- */

uint32_t pt_method_bit(pt_str_t m)
{
#define IS(lit) (m.len == sizeof(lit) - 1 && memcmp(m.base, lit, sizeof(lit) - 1) == 0)
    switch (m.len) {
    case 3:
        if (IS("GET"))
            return PT_METHOD_GET;
        if (IS("PUT"))
            return PT_METHOD_PUT;
        break;
    case 4:
        if (IS("POST"))
            return PT_METHOD_POST;
        if (IS("HEAD"))
            return PT_METHOD_HEAD;
        break;
    case 5:
        if (IS("PATCH"))
            return PT_METHOD_PATCH;
        if (IS("TRACE"))
            return PT_METHOD_TRACE;
        break;
    case 6:
        if (IS("DELETE"))
            return PT_METHOD_DELETE;
        break;
    case 7:
        if (IS("OPTIONS"))
            return PT_METHOD_OPTIONS;
        if (IS("CONNECT"))
            return PT_METHOD_CONNECT;
        break;
    }
    return PT_METHOD_OTHER;
#undef IS
}

/* ---- templates ------------------------------------------------------------------- */

typedef struct tseg {
    pt_str_t lit; /* literal segment text, when var < 0 */
    int var;      /* index into names, or -1 for a literal */
    bool rest;    /* {name=**}: matches the rest of the path (0..n segments) */
} tseg_t;

typedef struct tmpl {
    tseg_t *segs;
    size_t seg_cnt;
    pt_str_t *names;
    size_t var_cnt;
} tmpl_t;

static bool var_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

/*
 * "/users/{id}/books/{book}", "/files/{path=**}": variables take a whole
 * segment; `{x}` and `{x=*}` match one non-empty segment, `{x=**}` (last
 * only) matches whatever remains, possibly nothing.
 */
static const tmpl_t *compile_template(pt_conf_cx_t *cx, const pt_conf_node_t *where,
                                      const char *text)
{
    size_t len = strlen(text);
    size_t nseg = 1;
    for (size_t i = 1; i < len; i++)
        nseg += text[i] == '/';
    tmpl_t *t = pt_conf_alloc(cx, sizeof(*t));
    t->segs = pt_conf_alloc(cx, nseg * sizeof(*t->segs));
    t->names = pt_conf_alloc(cx, MAX_TEMPLATE_VARS * sizeof(*t->names));
    size_t pos = 1;
    for (size_t si = 0; si < nseg; si++) {
        const char *s = text + pos;
        const char *slash = memchr(s, '/', len - pos);
        size_t sl = slash != NULL ? (size_t)(slash - s) : len - pos;
        tseg_t *seg = &t->segs[t->seg_cnt++];
        seg->var = -1;
        if (sl > 0 && s[0] == '{') {
            if (s[sl - 1] != '}') {
                pt_conf_error(cx, where,
                              "template '%s': a variable must be a whole segment "
                              "like {name}",
                              text);
                return NULL;
            }
            const char *name = s + 1;
            size_t nl = sl - 2;
            const char *eq = memchr(name, '=', nl);
            size_t name_len = eq != NULL ? (size_t)(eq - name) : nl;
            if (eq != NULL) {
                size_t pl = nl - name_len - 1;
                if (pl == 2 && memcmp(eq + 1, "**", 2) == 0) {
                    seg->rest = true;
                } else if (!(pl == 1 && eq[1] == '*')) {
                    pt_conf_error(cx, where,
                                  "template '%s': only {name}, {name=*} and "
                                  "{name=**} are supported",
                                  text);
                    return NULL;
                }
            }
            if (!var_name_ok(name, name_len)) {
                pt_conf_error(cx, where, "template '%s': bad variable name '%.*s'", text,
                              (int)name_len, name);
                return NULL;
            }
            for (size_t k = 0; k < t->var_cnt; k++)
                if (t->names[k].len == name_len && memcmp(t->names[k].base, name, name_len) == 0) {
                    pt_conf_error(cx, where, "template '%s': variable '%.*s' used twice", text,
                                  (int)name_len, name);
                    return NULL;
                }
            if (t->var_cnt == MAX_TEMPLATE_VARS) {
                pt_conf_error(cx, where, "template '%s': more than %d variables", text,
                              MAX_TEMPLATE_VARS);
                return NULL;
            }
            if (seg->rest && si + 1 != nseg) {
                pt_conf_error(cx, where, "template '%s': {%.*s=**} must be the last segment", text,
                              (int)name_len, name);
                return NULL;
            }
            t->names[t->var_cnt] = (pt_str_t){pt_conf_strdup(cx, name, name_len), name_len};
            seg->var = (int)t->var_cnt++;
        } else {
            if (memchr(s, '{', sl) != NULL || memchr(s, '}', sl) != NULL) {
                pt_conf_error(cx, where,
                              "template '%s': a variable must be a whole segment "
                              "like {name}",
                              text);
                return NULL;
            }
            seg->lit = (pt_str_t){s, sl};
        }
        pos += sl + 1;
    }
    return t;
}

/* Matches `path` against `t`; fills vals[0..var_cnt). */
static bool match_template(const tmpl_t *t, pt_str_t path, pt_str_t *vals)
{
    if (path.len == 0 || path.base[0] != '/')
        return false;
    size_t pos = 1;
    for (size_t i = 0; i < t->seg_cnt; i++) {
        const tseg_t *seg = &t->segs[i];
        if (seg->rest) {
            vals[seg->var] = pos <= path.len ? (pt_str_t){path.base + pos, path.len - pos}
                                             : (pt_str_t){path.base + path.len, 0};
            return true;
        }
        if (pos > path.len)
            return false;
        const char *s = path.base + pos;
        const char *slash = memchr(s, '/', path.len - pos);
        size_t sl = slash != NULL ? (size_t)(slash - s) : path.len - pos;
        if (seg->var < 0) {
            if (sl != seg->lit.len || (sl != 0 && memcmp(s, seg->lit.base, sl) != 0))
                return false;
        } else {
            if (sl == 0)
                return false;
            vals[seg->var] = (pt_str_t){s, sl};
        }
        pos += sl + 1; /* past the '/', or past the end (pos = len + 1) */
        bool last = i + 1 == t->seg_cnt;
        if (last)
            return slash == NULL;
        /* a following {x=**} may take an absent rest: "/static" matches "/static/{p=**}" */
        if (slash == NULL && !t->segs[i + 1].rest)
            return false;
    }
    return true;
}

int pt_router_compile_route(pt_conf_cx_t *cx, pt_route_t *route)
{
    pt_route_match_t *m = &route->match;
    if (m->path_kind != PT_PATH_TEMPLATE)
        return 0;
    const pt_conf_node_t *where =
        pt_conf_map_get(pt_conf_map_get(route->node, "match"), "template");
    m->tmpl = compile_template(cx, where, m->path);
    return m->tmpl != NULL ? 0 : PT_ERR_INVALID;
}

/* ---- the router ------------------------------------------------------------------ */

typedef struct croute {
    const pt_route_t *route;
    pt_str_t path;
    pt_str_t *hosts; /* lowercase; wildcard entries keep the leading '.' of "*.x" */
    bool *wild;
    size_t host_cnt;
    pt_str_t *ext_methods; /* extension methods when PT_METHOD_OTHER is in the mask */
    size_t ext_cnt;
} croute_t;

struct pt_router {
    croute_t *v;
    size_t cnt;
};

const pt_router_t *pt_router_new(pt_conf_cx_t *cx, const pt_config_t *config)
{
    pt_router_t *r = pt_conf_alloc(cx, sizeof(*r));
    r->v = pt_conf_alloc(cx, (config->route_cnt != 0 ? config->route_cnt : 1) * sizeof(*r->v));
    r->cnt = config->route_cnt;
    for (size_t i = 0; i < config->route_cnt; i++) {
        const pt_route_t *rt = &config->routes[i];
        const pt_route_match_t *m = &rt->match;
        croute_t *c = &r->v[i];
        c->route = rt;
        c->path = pt_str_c(m->path);
        c->host_cnt = m->host_cnt;
        c->hosts = pt_conf_alloc(cx, (m->host_cnt != 0 ? m->host_cnt : 1) * sizeof(*c->hosts));
        c->wild = pt_conf_alloc(cx, (m->host_cnt != 0 ? m->host_cnt : 1) * sizeof(*c->wild));
        for (size_t k = 0; k < m->host_cnt; k++) {
            const char *h = m->hosts[k];
            c->wild[k] = h[0] == '*' && h[1] == '.';
            c->hosts[k] = pt_str_c(c->wild[k] ? h + 1 : h);
        }
        if (m->methods & PT_METHOD_OTHER) {
            /* Which extension methods: re-read from the route's match node. */
            const pt_conf_node_t *mn =
                pt_conf_map_get(pt_conf_map_get(rt->node, "match"), "methods");
            size_t n = mn == NULL ? 0 : mn->kind == PT_CONF_SEQ ? mn->cnt : 1;
            c->ext_methods = pt_conf_alloc(cx, (n != 0 ? n : 1) * sizeof(*c->ext_methods));
            for (size_t k = 0; k < n; k++) {
                const pt_conf_node_t *it = mn->kind == PT_CONF_SEQ ? mn->items[k] : mn;
                if (it->kind != PT_CONF_SCALAR)
                    continue;
                char *up = pt_conf_strdup(cx, it->str, it->len);
                for (char *q = up; *q != '\0'; q++)
                    *q = (char)toupper((unsigned char)*q);
                pt_str_t s = {up, it->len};
                if (pt_method_bit(s) == PT_METHOD_OTHER)
                    c->ext_methods[c->ext_cnt++] = s;
            }
        }
    }
    return r;
}

/* "Example.COM:8080" -> "Example.COM"; "[::1]:8080" -> "[::1]"; one trailing dot dropped. */
static pt_str_t host_only(pt_str_t h)
{
    if (h.len > 0 && h.base[0] == '[') {
        const char *close = memchr(h.base, ']', h.len);
        if (close != NULL)
            h.len = (size_t)(close - h.base) + 1;
    } else {
        const char *colon = h.len > 0 ? memchr(h.base, ':', h.len) : NULL;
        if (colon != NULL)
            h.len = (size_t)(colon - h.base);
    }
    if (h.len > 1 && h.base[h.len - 1] == '.')
        h.len--;
    return h;
}

static bool host_ok(const croute_t *c, pt_str_t host)
{
    for (size_t i = 0; i < c->host_cnt; i++) {
        if (c->wild[i]) {
            /* "*.example.com" needs at least one label before ".example.com" */
            if (host.len > c->hosts[i].len && pt_str_has_isuffix(host, c->hosts[i]))
                return true;
        } else if (pt_str_ieq(host, c->hosts[i])) {
            return true;
        }
    }
    return false;
}

static bool headers_ok(const pt_route_match_t *m, const pt_headers_t *h)
{
    for (size_t i = 0; i < m->header_cnt; i++) {
        const pt_header_match_t *hm = &m->headers[i];
        pt_str_t name = pt_str_c(hm->name);
        bool found = false;
        for (size_t k = 0; h != NULL && k < h->cnt && !found; k++) {
            if (!pt_str_eq(h->v[k].name, name))
                continue;
            found = hm->value == NULL || pt_str_eq(h->v[k].value, pt_str_c(hm->value));
        }
        if (!found)
            return false;
    }
    return true;
}

int pt_router_match(const pt_router_t *r, pt_str_t method, pt_str_t host, pt_str_t path,
                    const pt_headers_t *headers, pt_arena_t *arena, pt_route_result_t *out)
{
    uint32_t bit = pt_method_bit(method);
    pt_str_t h = host_only(host);
    pt_str_t vals[MAX_TEMPLATE_VARS];
    for (size_t i = 0; i < r->cnt; i++) {
        const croute_t *c = &r->v[i];
        const pt_route_match_t *m = &c->route->match;
        if (m->methods != 0) {
            if ((m->methods & bit) == 0)
                continue;
            if (bit == PT_METHOD_OTHER) {
                bool ok = false;
                for (size_t k = 0; k < c->ext_cnt && !ok; k++)
                    ok = pt_str_eq(c->ext_methods[k], method);
                if (!ok)
                    continue;
            }
        }
        switch (m->path_kind) {
        case PT_PATH_ANY:
            break;
        case PT_PATH_EXACT:
            if (!pt_str_eq(path, c->path))
                continue;
            break;
        case PT_PATH_PREFIX:
            if (!pt_str_has_prefix(path, c->path))
                continue;
            break;
        case PT_PATH_TEMPLATE:
            if (!match_template(m->tmpl, path, vals))
                continue;
            break;
        }
        if (c->host_cnt != 0 && !host_ok(c, h))
            continue;
        if (m->header_cnt != 0 && !headers_ok(m, headers))
            continue;
        pt_route_param_t *params = NULL;
        size_t pcnt = 0;
        if (m->path_kind == PT_PATH_TEMPLATE && ((const tmpl_t *)m->tmpl)->var_cnt != 0) {
            const tmpl_t *t = m->tmpl;
            params = pt_arena_alloc(arena, t->var_cnt * sizeof(*params));
            if (params == NULL)
                return PT_ERR_LIMIT;
            for (size_t k = 0; k < t->var_cnt; k++)
                params[k] = (pt_route_param_t){t->names[k], vals[k]};
            pcnt = t->var_cnt;
        }
        out->route = c->route;
        out->params = params;
        out->param_cnt = pcnt;
        return 0;
    }
    return PT_ERR_NOT_FOUND;
}
