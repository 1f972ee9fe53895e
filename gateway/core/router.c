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
#include <stdlib.h>
#include <string.h>

#include "core/confparse.h"
#include "core/xalloc.h"
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

uint32_t pt__method_bit_anycase(const char *m, size_t len)
{
    char up[33];
    if (len >= sizeof(up))
        return PT_METHOD_OTHER; /* longer than any method with a bit of its own */
    for (size_t i = 0; i < len; i++)
        up[i] = (char)toupper((unsigned char)m[i]);
    return pt_method_bit((pt_str_t){up, len});
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

/* ---- the compiled index ------------------------------------------------------------
 *
 * Routes are split by host: one group for the routes without `host`, one per
 * exact host (hash table), one per wildcard suffix ("*.example.com" is found
 * under "example.com" from each label boundary of the request's host). Inside
 * a group, by path kind:
 *   - exact paths: a hash table path -> route indexes;
 *   - prefixes: a radix tree over the bytes (a prefix is not segment-aware:
 *     "/api" matches "/apis"); every node passed on the way down holds
 *     candidates;
 *   - templates: a trie over segments as in transcoder/pathtmpl.c: literal
 *     edges sorted for binary search, one child for a one-segment variable,
 *     `{x=**}` lists at the node where the rest starts; the walk visits each
 *     node at most once;
 *   - routes with no path condition: one list.
 * Every list is in route order. A match walks the (at most a few) groups of
 * the request's host, and in each list checks the remaining conditions
 * (methods, headers) only for indexes below the best found so far: the
 * result is the lowest index whose conditions all hold, exactly what the
 * linear scan in config order finds (pt_router_match_linear; the unit test
 * router_diff compares them on random route sets). Built at load, read-only
 * afterwards, shared by the workers; freed with the snapshot. The
 * environment variable PORTICO_ROUTER_LINEAR=1 (read at each load) skips the
 * index and scans: a switch for comparisons (bench/router_bench.c) and a
 * fallback.
 */

typedef struct idxlist {
    uint32_t *v;
    uint32_t cnt, cap;
} idxlist_t;

typedef struct smap_slot {
    pt_str_t key;
    uint64_t hash;
    void *val;
} smap_slot_t;

typedef struct smap { /* string -> pointer, open addressing; keys point into config memory */
    smap_slot_t *slots;
    size_t cap, cnt; /* cap: a power of two */
} smap_t;

typedef struct rnode { /* prefix radix tree */
    const char *label; /* edge from the parent (into a route's prefix text) */
    size_t len;
    idxlist_t routes;  /* prefixes ending exactly here */
    struct rnode **kids; /* sorted by label[0] (distinct) */
    unsigned char *first; /* kids[i]->label[0], contiguous for the walk */
    size_t kid_cnt;
} rnode_t;

typedef struct tnode tnode_t;
typedef struct tlit {
    uint64_t key8;  /* the first 8 bytes (zero padded), compared before the text */
    pt_str_t lit;
    tnode_t *child;
} tlit_t;

struct tnode { /* template segment trie */
    tlit_t *lits; /* sorted by (len, bytes) */
    size_t lit_cnt, lit_cap;
    tnode_t *star;  /* a one-segment variable */
    idxlist_t end;  /* templates ending here */
    idxlist_t rest; /* templates whose {x=**} starts here */
};

typedef struct group {
    smap_t exact;     /* path -> idxlist_t * */
    rnode_t *prefix;  /* root: empty label */
    tnode_t *tmpl;
    idxlist_t any;    /* no path condition */
} group_t;

/* What a candidate still has to pass, packed for the index walk (8 bytes a route). */
typedef struct rcond {
    uint32_t methods;     /* PT_METHOD_* mask, 0 = any */
    uint16_t header_cnt;  /* header conditions */
    uint16_t pad;
} rcond_t;

struct pt_router {
    croute_t *v;
    rcond_t *cond;    /* by route index */
    size_t cnt;
    group_t nohost;
    smap_t hosts;     /* lowercase host -> group_t * */
    smap_t wild;      /* lowercase suffix after "*." -> group_t * */
    size_t mem;       /* bytes of the compiled index (pt_router_mem) */
    bool linear;      /* PORTICO_ROUTER_LINEAR=1 at load: no index, every match scans */
};

static void *rmalloc(pt_router_t *r, size_t n)
{
    r->mem += n;
    return pt_xcalloc(1, n);
}

static void idx_add(pt_router_t *r, idxlist_t *l, uint32_t idx)
{
    if (l->cnt != 0 && l->v[l->cnt - 1] == idx)
        return; /* a route listing one host twice */
    if (l->cnt == l->cap) {
        uint32_t cap = l->cap != 0 ? l->cap * 2 : 2;
        r->mem += (size_t)(cap - l->cap) * sizeof(*l->v);
        l->v = pt_xrealloc(l->v, cap * sizeof(*l->v));
        l->cap = cap;
    }
    l->v[l->cnt++] = idx;
}

static uint64_t shash(pt_str_t s)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < s.len; i++)
        h = (h ^ (unsigned char)s.base[i]) * 1099511628211ull;
    return h ^ (h >> 31);
}

static void *smap_get(const smap_t *m, pt_str_t key)
{
    if (m->cap == 0)
        return NULL;
    uint64_t h = shash(key);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const smap_slot_t *s = &m->slots[i];
        if (s->val == NULL)
            return NULL;
        if (s->hash == h && pt_str_eq(s->key, key))
            return s->val;
    }
}

static void smap_put(pt_router_t *r, smap_t *m, pt_str_t key, void *val)
{
    if ((m->cnt + 1) * 2 > m->cap) {
        smap_t n = {.cap = m->cap != 0 ? m->cap * 2 : 16};
        n.slots = rmalloc(r, n.cap * sizeof(*n.slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].val != NULL)
                smap_put(r, &n, m->slots[i].key, m->slots[i].val);
        r->mem -= m->cap * sizeof(*m->slots);
        free(m->slots);
        *m = n;
    }
    uint64_t h = shash(key);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].val != NULL)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (smap_slot_t){key, h, val};
    m->cnt++;
}

/* -- prefixes -- */

static void prefix_add(pt_router_t *r, rnode_t *n, const char *s, size_t len, uint32_t idx)
{
    for (;;) {
        if (len == 0) {
            idx_add(r, &n->routes, idx);
            return;
        }
        size_t k = 0;
        while (k < n->kid_cnt && n->first[k] < (unsigned char)s[0])
            k++;
        if (k == n->kid_cnt || n->first[k] != (unsigned char)s[0]) { /* a new edge: the rest */
            rnode_t *c = rmalloc(r, sizeof(*c));
            c->label = s;
            c->len = len;
            n->kids = pt_xrealloc(n->kids, (n->kid_cnt + 1) * sizeof(*n->kids));
            n->first = pt_xrealloc(n->first, n->kid_cnt + 1);
            r->mem += sizeof(*n->kids) + 1;
            memmove(&n->kids[k + 1], &n->kids[k], (n->kid_cnt - k) * sizeof(*n->kids));
            memmove(&n->first[k + 1], &n->first[k], n->kid_cnt - k);
            n->kids[k] = c;
            n->first[k] = (unsigned char)s[0];
            n->kid_cnt++;
            idx_add(r, &c->routes, idx);
            return;
        }
        rnode_t *c = n->kids[k];
        size_t common = 0;
        while (common < c->len && common < len && c->label[common] == s[common])
            common++;
        if (common < c->len) { /* split the edge at `common` */
            rnode_t *mid = rmalloc(r, sizeof(*mid));
            mid->label = c->label;
            mid->len = common;
            mid->kids = pt_xcalloc(1, sizeof(*mid->kids));
            mid->first = pt_xcalloc(1, 1);
            r->mem += sizeof(*mid->kids) + 1;
            mid->kids[0] = c;
            c->label += common;
            c->len -= common;
            mid->first[0] = (unsigned char)c->label[0];
            mid->kid_cnt = 1;
            n->kids[k] = mid;
            c = mid;
        }
        n = c;
        s += common;
        len -= common;
    }
}

/* -- templates -- */

static uint64_t key8(const char *s, size_t len)
{
    unsigned char b[8] = {0};
    memcpy(b, s, len < 8 ? len : 8);
    return (uint64_t)b[0] << 56 | (uint64_t)b[1] << 48 | (uint64_t)b[2] << 40 |
           (uint64_t)b[3] << 32 | (uint64_t)b[4] << 24 | (uint64_t)b[5] << 16 |
           (uint64_t)b[6] << 8 | (uint64_t)b[7];
}

/* Order of literals: length, then the first 8 bytes (big-endian: byte order), then the rest. */
static int litcmp(const tlit_t *a, uint64_t k, const char *b, size_t blen)
{
    if (a->lit.len != blen)
        return a->lit.len < blen ? -1 : 1;
    if (a->key8 != k)
        return a->key8 < k ? -1 : 1;
    return blen > 8 ? memcmp(a->lit.base + 8, b + 8, blen - 8) : 0;
}

static long find_lit(const tnode_t *n, const char *s, size_t len)
{
    uint64_t k = key8(s, len);
    size_t lo = 0, hi = n->lit_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = litcmp(&n->lits[mid], k, s, len);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

static void tmpl_add(pt_router_t *r, tnode_t *n, const tmpl_t *t, uint32_t idx)
{
    for (size_t i = 0; i < t->seg_cnt; i++) {
        const tseg_t *sg = &t->segs[i];
        if (sg->rest) {
            idx_add(r, &n->rest, idx);
            return;
        }
        if (sg->var >= 0) {
            if (n->star == NULL)
                n->star = rmalloc(r, sizeof(*n->star));
            n = n->star;
            continue;
        }
        long at = find_lit(n, sg->lit.base, sg->lit.len);
        if (at >= 0 && n->lits != NULL) { /* (find_lit says so; the analyzer cannot tell) */
            n = n->lits[at].child;
            continue;
        }
        size_t ins = (size_t)(-at - 1);
        if (n->lits == NULL || n->lit_cnt == n->lit_cap) {
            size_t cap = n->lit_cap != 0 ? n->lit_cap * 2 : 2;
            r->mem += (cap - n->lit_cap) * sizeof(*n->lits);
            n->lits = pt_xrealloc(n->lits, cap * sizeof(*n->lits));
            n->lit_cap = cap;
        }
        memmove(&n->lits[ins + 1], &n->lits[ins], (n->lit_cnt - ins) * sizeof(*n->lits));
        tnode_t *c = rmalloc(r, sizeof(*c));
        n->lits[ins] = (tlit_t){key8(sg->lit.base, sg->lit.len), sg->lit, c};
        n->lit_cnt++;
        n = c;
    }
    idx_add(r, &n->end, idx);
}

static void group_add(pt_router_t *r, group_t *g, const croute_t *c, uint32_t idx)
{
    const pt_route_match_t *m = &c->route->match;
    switch (m->path_kind) {
    case PT_PATH_ANY:
        idx_add(r, &g->any, idx);
        break;
    case PT_PATH_EXACT: {
        idxlist_t *l = smap_get(&g->exact, c->path);
        if (l == NULL) {
            l = rmalloc(r, sizeof(*l));
            smap_put(r, &g->exact, c->path, l);
        }
        idx_add(r, l, idx);
        break;
    }
    case PT_PATH_PREFIX:
        if (g->prefix == NULL)
            g->prefix = rmalloc(r, sizeof(*g->prefix));
        prefix_add(r, g->prefix, c->path.base, c->path.len, idx);
        break;
    case PT_PATH_TEMPLATE:
        if (g->tmpl == NULL)
            g->tmpl = rmalloc(r, sizeof(*g->tmpl));
        tmpl_add(r, g->tmpl, m->tmpl, idx);
        break;
    }
}

static group_t *group_for(pt_router_t *r, smap_t *m, pt_str_t key)
{
    group_t *g = smap_get(m, key);
    if (g == NULL) {
        g = rmalloc(r, sizeof(*g));
        smap_put(r, m, key, g);
    }
    return g;
}

/* -- freeing (the snapshot's release) -- */

static void rnode_free(rnode_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->kid_cnt; i++)
        rnode_free(n->kids[i]);
    free(n->kids);
    free(n->first);
    free(n->routes.v);
    free(n);
}

static void tnode_free(tnode_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->lit_cnt; i++)
        tnode_free(n->lits[i].child);
    free(n->lits);
    tnode_free(n->star);
    free(n->end.v);
    free(n->rest.v);
    free(n);
}

static void group_dispose(group_t *g)
{
    for (size_t i = 0; i < g->exact.cap; i++) {
        idxlist_t *l = g->exact.slots[i].val;
        if (l != NULL) {
            free(l->v);
            free(l);
        }
    }
    free(g->exact.slots);
    rnode_free(g->prefix);
    tnode_free(g->tmpl);
    free(g->any.v);
}

static void groups_free(smap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        group_t *g = m->slots[i].val;
        if (g != NULL) {
            group_dispose(g);
            free(g);
        }
    }
    free(m->slots);
}

static void router_release(void *data)
{
    pt_router_t *r = data;
    group_dispose(&r->nohost);
    groups_free(&r->hosts);
    groups_free(&r->wild);
}

static pt_str_t lower_copy(pt_conf_cx_t *cx, pt_str_t s)
{
    char *p = pt_conf_strdup(cx, s.base, s.len);
    for (size_t i = 0; i < s.len; i++)
        p[i] = (char)tolower((unsigned char)p[i]);
    return (pt_str_t){p, s.len};
}

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
    r->cond = pt_conf_alloc(cx, (r->cnt != 0 ? r->cnt : 1) * sizeof(*r->cond));
    for (size_t i = 0; i < r->cnt; i++)
        r->cond[i] = (rcond_t){r->v[i].route->match.methods,
                               (uint16_t)(r->v[i].route->match.header_cnt > 0xffff
                                              ? 0xffff
                                              : r->v[i].route->match.header_cnt),
                               0};
    r->mem += r->cnt * sizeof(*r->cond);
    pt_conf_on_release(cx, router_release, r);
    const char *lin = getenv("PORTICO_ROUTER_LINEAR");
    r->linear = lin != NULL && strcmp(lin, "1") == 0;
    for (size_t i = 0; i < config->route_cnt && !r->linear; i++) {
        const croute_t *c = &r->v[i];
        if (c->host_cnt == 0)
            group_add(r, &r->nohost, c, (uint32_t)i);
        for (size_t k = 0; k < c->host_cnt; k++) {
            /* "*.x": under "x" in `wild` (c->hosts keeps the '.'); else under the host */
            pt_str_t key = c->wild[k] ? (pt_str_t){c->hosts[k].base + 1, c->hosts[k].len - 1}
                                      : c->hosts[k];
            key = lower_copy(cx, key);
            group_add(r, group_for(r, c->wild[k] ? &r->wild : &r->hosts, key), c, (uint32_t)i);
        }
    }
    return r;
}

size_t pt_router_mem(const pt_router_t *r)
{
    return r->mem;
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

static bool method_ok(const croute_t *c, uint32_t bit, pt_str_t method)
{
    const pt_route_match_t *m = &c->route->match;
    if (m->methods == 0)
        return true;
    if ((m->methods & bit) == 0)
        return false;
    if (bit != PT_METHOD_OTHER)
        return true;
    for (size_t k = 0; k < c->ext_cnt; k++)
        if (pt_str_eq(c->ext_methods[k], method))
            return true;
    return false;
}

/* Fills *out for route `c` matched by `path` (its template parameters, in the arena). */
static int result(const croute_t *c, pt_str_t path, pt_arena_t *arena, pt_route_result_t *out)
{
    const pt_route_match_t *m = &c->route->match;
    pt_route_param_t *params = NULL;
    size_t pcnt = 0;
    if (m->path_kind == PT_PATH_TEMPLATE && ((const tmpl_t *)m->tmpl)->var_cnt != 0) {
        const tmpl_t *t = m->tmpl;
        pt_str_t vals[MAX_TEMPLATE_VARS];
        if (!match_template(t, path, vals))
            return PT_ERR_INTERNAL; /* the index said it matches */
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

int pt_router_match_linear(const pt_router_t *r, pt_str_t method, pt_str_t host, pt_str_t path,
                           const pt_headers_t *headers, pt_arena_t *arena, pt_route_result_t *out)
{
    uint32_t bit = pt_method_bit(method);
    pt_str_t h = host_only(host);
    pt_str_t vals[MAX_TEMPLATE_VARS];
    for (size_t i = 0; i < r->cnt; i++) {
        const croute_t *c = &r->v[i];
        const pt_route_match_t *m = &c->route->match;
        if (!method_ok(c, bit, method))
            continue;
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
        return result(c, path, arena, out);
    }
    return PT_ERR_NOT_FOUND;
}

/* -- the compiled match -- */

typedef struct mctx {
    const pt_router_t *r;
    uint32_t bit;
    pt_str_t method;
    const pt_headers_t *headers;
    pt_str_t path;
    uint32_t best;               /* lowest matching index so far (r->cnt: none) */
    pt_str_t segs[64];           /* the path's segments, for templates */
    size_t seg_cnt;
    bool segs_split, segs_ok;    /* split yet; split and fit */
    bool segs_over;              /* more than 64 segments: the scan decides */
} mctx_t;

/* The first index of `l` below the best whose other conditions hold becomes the best. */
static void consider(mctx_t *m, const idxlist_t *l)
{
    for (uint32_t i = 0; i < l->cnt && l->v[i] < m->best; i++) {
        const rcond_t *k = &m->r->cond[l->v[i]];
        if (k->methods != 0 &&
            ((k->methods & m->bit) == 0 ||
             (m->bit == PT_METHOD_OTHER && !method_ok(&m->r->v[l->v[i]], m->bit, m->method))))
            continue;
        if (k->header_cnt != 0 && !headers_ok(&m->r->v[l->v[i]].route->match, m->headers))
            continue;
        m->best = l->v[i];
        return;
    }
}

static void walk_prefix(mctx_t *m, const rnode_t *n)
{
    size_t pos = 0;
    const char *p = m->path.base;
    size_t len = m->path.len;
    for (;;) {
        consider(m, &n->routes);
        if (pos == len)
            return;
        const unsigned char *f = n->kid_cnt != 0 ? memchr(n->first, p[pos], n->kid_cnt) : NULL;
        const rnode_t *next = f != NULL ? n->kids[f - n->first] : NULL;
        if (next == NULL || next->len > len - pos || memcmp(next->label, p + pos, next->len) != 0)
            return;
        pos += next->len;
        n = next;
    }
}

static void walk_tmpl(mctx_t *m, const tnode_t *n, size_t depth)
{
    if (n->rest.cnt != 0)
        consider(m, &n->rest);
    if (depth == m->seg_cnt) {
        consider(m, &n->end);
        return;
    }
    pt_str_t s = m->segs[depth];
    long at = find_lit(n, s.base, s.len);
    if (at >= 0)
        walk_tmpl(m, n->lits[at].child, depth + 1);
    if (n->star != NULL && s.len != 0)
        walk_tmpl(m, n->star, depth + 1);
}

static bool split_segs(mctx_t *m)
{
    if (m->segs_split)
        return m->segs_ok;
    m->segs_split = true;
    pt_str_t p = m->path;
    if (p.len == 0 || p.base[0] != '/')
        return false; /* no template matches a path without its leading '/' */
    size_t pos = 1;
    for (;;) {
        const char *s = p.base + pos;
        const char *slash = memchr(s, '/', p.len - pos);
        size_t sl = slash != NULL ? (size_t)(slash - s) : p.len - pos;
        if (m->seg_cnt == sizeof(m->segs) / sizeof(m->segs[0])) {
            m->segs_over = true;
            return false;
        }
        m->segs[m->seg_cnt++] = (pt_str_t){s, sl};
        if (slash == NULL)
            return m->segs_ok = true;
        pos += sl + 1;
    }
}

static void search_group(mctx_t *m, const group_t *g)
{
    if (g->any.cnt != 0)
        consider(m, &g->any);
    if (g->exact.cnt != 0) {
        const idxlist_t *l = smap_get(&g->exact, m->path);
        if (l != NULL)
            consider(m, l);
    }
    if (g->prefix != NULL)
        walk_prefix(m, g->prefix);
    if (g->tmpl != NULL && split_segs(m))
        walk_tmpl(m, g->tmpl, 0);
}

int pt_router_match(const pt_router_t *r, pt_str_t method, pt_str_t host, pt_str_t path,
                    const pt_headers_t *headers, pt_arena_t *arena, pt_route_result_t *out)
{
    if (r->linear)
        return pt_router_match_linear(r, method, host, path, headers, arena, out);
    pt_str_t h = host_only(host);
    char lower[256];
    mctx_t m;
    m.r = r;
    m.bit = pt_method_bit(method);
    m.method = method;
    m.headers = headers;
    m.path = path;
    m.best = (uint32_t)r->cnt;
    m.seg_cnt = 0;
    m.segs_split = m.segs_ok = m.segs_over = false;
    search_group(&m, &r->nohost);
    if (m.segs_over || h.len > sizeof(lower)) /* beyond the index's bounds: the scan decides */
        return pt_router_match_linear(r, method, host, path, headers, arena, out);
    if (r->hosts.cnt != 0 || r->wild.cnt != 0) {
        for (size_t i = 0; i < h.len; i++)
            lower[i] = (char)tolower((unsigned char)h.base[i]);
        pt_str_t lh = {lower, h.len};
        const group_t *g = smap_get(&r->hosts, lh);
        if (g != NULL)
            search_group(&m, g);
        /* "*.example.com": at least one label before ".example.com" */
        for (size_t i = 1; r->wild.cnt != 0 && i < h.len; i++) {
            if (lower[i] != '.')
                continue;
            g = smap_get(&r->wild, (pt_str_t){lower + i + 1, h.len - i - 1});
            if (g != NULL)
                search_group(&m, g);
        }
        if (m.segs_over)
            return pt_router_match_linear(r, method, host, path, headers, arena, out);
    }
    if (m.best == r->cnt)
        return PT_ERR_NOT_FOUND;
    return result(&r->v[m.best], path, arena, out);
}
