/*
 * pathtmpl.c -- google.api.http path templates: parser and trie matcher.
 *
 * The parser is a small recursive descent over the grammar quoted in
 * pathtmpl.h; it copies everything it keeps into one string block owned by the
 * template, so the caller's text can go away.
 *
 * The matcher is a trie over path segments. Literal edges are kept sorted for
 * binary search; `*` is a single child; templates that end in `**` hang off the
 * node where the `**` starts. A lookup is a depth-first walk in precedence
 * order (literal, `*`, `**`), which visits every node at most once because each
 * node sits at one depth: the cost is bounded by the trie size, never
 * exponential, and the recursion depth by PT_PATHTMPL_MAX_SEGMENTS.
 */
#include "portico/transcoder/pathtmpl.h"
#include "portico/transcoder/wkt.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Character classes (RFC 3986)                                             */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(unsigned char c)
{
    return c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '+' ||
           c == ',' || c == ';' || c == '=';
}

static const char HEX[] = "0123456789ABCDEF";

/*
 * Normalizes one segment: escapes of unreserved characters are decoded, other
 * escapes get upper-case hex. Writes at most `n` bytes to `out`. Returns the
 * output length, or -1 on a malformed escape.
 */
static long normalize_seg(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '%') {
            out[o++] = (char)c;
            continue;
        }
        if (i + 2 >= n)
            return -1;
        int h = pt_hexval((unsigned char)s[i + 1]), l = pt_hexval((unsigned char)s[i + 2]);
        if (h < 0 || l < 0)
            return -1;
        unsigned char d = (unsigned char)(h * 16 + l);
        if (is_unreserved(d)) {
            out[o++] = (char)d;
        } else {
            out[o++] = '%';
            out[o++] = HEX[h];
            out[o++] = HEX[l];
        }
        i += 2;
    }
    return (long)o;
}

static bool is_dot_seg(const char *s, size_t n)
{
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                */

struct pt_pathtmpl {
    const pt_allocator_t *a;
    char *text;       /* copy of the template text */
    const char *verb; /* into strs, or NULL */
    size_t seg_cnt, var_cnt;
    pt_pathseg_t segs[PT_PATHTMPL_MAX_SEGMENTS];
    pt_pathtmpl_var_t vars[PT_PATHTMPL_MAX_VARS];
    char *strs; /* one block: text, literals, field paths, verb */
};

typedef struct parser {
    pt_pathtmpl_t *t;
    const char *s;
    size_t len, i;
    char *sp; /* next free byte of t->strs */
    bool dstar_seen;
    pt_xerr_t *err;
} parser_t;

static int perr(parser_t *p, size_t at, const char *why)
{
    return pt_xerr_set(p->err, PT_XERR_INVALID, NULL, "column %zu: %s", at + 1, why);
}

static bool at_end(const parser_t *p)
{
    return p->i >= p->len;
}
static char peek(const parser_t *p)
{
    return at_end(p) ? '\0' : p->s[p->i];
}

static bool is_lit_char(unsigned char c)
{
    return is_unreserved(c) || is_sub_delim(c) || c == '@' || c == '%';
}

/* Reads a LITERAL at p->i into the string block; stores its normalized form. */
static int parse_literal(parser_t *p, const char **lit, size_t *lit_len)
{
    size_t start = p->i;
    while (!at_end(p) && is_lit_char((unsigned char)p->s[p->i]))
        p->i++;
    if (p->i == start)
        return perr(p, start, at_end(p) ? "empty segment" : "invalid character in path literal");
    long n = normalize_seg(p->s + start, p->i - start, p->sp);
    if (n < 0)
        return perr(p, start, "malformed percent-escape in literal");
    if (is_dot_seg(p->sp, (size_t)n))
        return perr(p, start, "'.' and '..' segments are not allowed");
    *lit = p->sp;
    *lit_len = (size_t)n;
    p->sp[n] = '\0';
    p->sp += n + 1;
    return 0;
}

static int parse_segments(parser_t *p, bool in_var);

static int add_seg(parser_t *p, size_t at, pt_pathseg_kind_t kind, const char *lit, size_t lit_len)
{
    pt_pathtmpl_t *t = p->t;
    if (t->seg_cnt >= PT_PATHTMPL_MAX_SEGMENTS)
        return pt_xerr_set(p->err, PT_XERR_LIMIT, NULL, "column %zu: more than %d segments", at + 1,
                           PT_PATHTMPL_MAX_SEGMENTS);
    pt_pathseg_t *sg = &t->segs[t->seg_cnt++];
    sg->kind = kind;
    sg->lit = lit;
    sg->lit_len = lit_len;
    if (kind == PT_PATHSEG_DSTAR)
        p->dstar_seen = true;
    return 0;
}

static int parse_variable(parser_t *p)
{
    pt_pathtmpl_t *t = p->t;
    size_t open = p->i++;
    if (t->var_cnt >= PT_PATHTMPL_MAX_VARS)
        return pt_xerr_set(p->err, PT_XERR_LIMIT, NULL, "column %zu: more than %d variables",
                           open + 1, PT_PATHTMPL_MAX_VARS);
    /* FieldPath = IDENT { "." IDENT } */
    size_t fstart = p->i;
    for (;;) {
        char c = peek(p);
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
            return perr(p, p->i, "expected a field name");
        while (!at_end(p)) {
            c = p->s[p->i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_'))
                break;
            p->i++;
        }
        if (peek(p) != '.')
            break;
        p->i++;
    }
    size_t flen = p->i - fstart;
    for (size_t k = 0; k < t->var_cnt; k++)
        if (t->vars[k].field_path_len == flen &&
            memcmp(t->vars[k].field_path, p->s + fstart, flen) == 0)
            return perr(p, fstart, "field bound twice in one template");
    pt_pathtmpl_var_t *v = &t->vars[t->var_cnt];
    memcpy(p->sp, p->s + fstart, flen);
    p->sp[flen] = '\0';
    v->field_path = p->sp;
    v->field_path_len = flen;
    p->sp += flen + 1;
    size_t first = t->seg_cnt;
    if (peek(p) == '=') {
        p->i++;
        int rc = parse_segments(p, true);
        if (rc != 0)
            return rc;
    } else if (peek(p) == '}') {
        int rc = add_seg(p, p->i, PT_PATHSEG_STAR, NULL, 0);
        if (rc != 0)
            return rc;
    } else {
        return perr(p, p->i, "expected '=' or '}' after the field name");
    }
    if (peek(p) != '}')
        return perr(p, p->i, at_end(p) ? "unterminated variable" : "expected '}'");
    p->i++;
    v->first_seg = (uint16_t)first;
    v->end_seg = (uint16_t)t->seg_cnt;
    v->is_multi = t->seg_cnt - first > 1 || t->segs[t->seg_cnt - 1].kind == PT_PATHSEG_DSTAR;
    t->var_cnt++;
    return 0;
}

static int parse_segment(parser_t *p, bool in_var)
{
    size_t at = p->i;
    if (p->dstar_seen)
        return perr(p, at, "'**' must be the last segment");
    char c = peek(p);
    if (c == '{') {
        if (in_var)
            return perr(p, at, "variables cannot be nested");
        return parse_variable(p);
    }
    if (c == '*') {
        pt_pathseg_kind_t k = PT_PATHSEG_STAR;
        p->i++;
        if (peek(p) == '*') {
            k = PT_PATHSEG_DSTAR;
            p->i++;
        }
        char n = peek(p);
        if (!(at_end(p) || n == '/' || n == ':' || (in_var && n == '}')))
            return perr(p, at, "'*' and '**' must be whole segments");
        return add_seg(p, at, k, NULL, 0);
    }
    if (at_end(p) || c == '/' || c == '}' || c == ':')
        return perr(p, at, "empty segment");
    const char *lit = NULL;
    size_t lit_len = 0;
    int rc = parse_literal(p, &lit, &lit_len);
    if (rc != 0)
        return rc;
    return add_seg(p, at, PT_PATHSEG_LITERAL, lit, lit_len);
}

static int parse_segments(parser_t *p, bool in_var)
{
    for (;;) {
        int rc = parse_segment(p, in_var);
        if (rc != 0)
            return rc;
        if (peek(p) != '/')
            return 0;
        p->i++;
    }
}

int pt_pathtmpl_parse(const pt_allocator_t *a, const char *text, size_t len, pt_pathtmpl_t **out,
                      pt_xerr_t *err)
{
    if (a == NULL)
        a = pt_allocator_default();
    if (len > PT_PATHTMPL_MAX_LEN)
        return pt_xerr_set(err, PT_XERR_LIMIT, NULL, "template longer than %d bytes",
                           PT_PATHTMPL_MAX_LEN);
    pt_pathtmpl_t *t = a->alloc(a->ud, sizeof(*t));
    if (t == NULL)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    memset(t, 0, sizeof(*t));
    t->a = a;
    /* text copy + literals (<= len + segs) + field paths (<= len + vars) + verb */
    size_t cap = 4 * len + PT_PATHTMPL_MAX_SEGMENTS + PT_PATHTMPL_MAX_VARS + 8;
    t->strs = a->alloc(a->ud, cap);
    if (t->strs == NULL) {
        a->free(a->ud, t);
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    }
    if (len != 0)
        memcpy(t->strs, text, len);
    t->strs[len] = '\0';
    t->text = t->strs;

    parser_t p = {.t = t, .s = text, .len = len, .i = 0, .sp = t->strs + len + 1, .err = err};
    int rc;
    if (len == 0 || text[0] != '/') {
        rc = perr(&p, 0, "a template must start with '/'");
        goto fail;
    }
    p.i = 1;
    if (len > 1) {
        rc = parse_segments(&p, false);
        if (rc != 0)
            goto fail;
        if (peek(&p) == ':') {
            size_t vstart = ++p.i;
            while (!at_end(&p) && is_lit_char((unsigned char)text[p.i]))
                p.i++;
            if (p.i == vstart) {
                rc = perr(&p, vstart, at_end(&p) ? "empty verb" : "invalid character in verb");
                goto fail;
            }
            memcpy(p.sp, text + vstart, p.i - vstart);
            p.sp[p.i - vstart] = '\0';
            t->verb = p.sp;
            p.sp += p.i - vstart + 1;
        }
        if (!at_end(&p)) {
            char c = text[p.i];
            const char *why = "invalid character in path template";
            if (c == '}')
                why = "unbalanced '}'";
            else if (c == ':' || (c == '/' && t->verb != NULL))
                why = "':' is only allowed before the final verb";
            rc = perr(&p, p.i, why);
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    pt_pathtmpl_free(t);
    return rc;
}

void pt_pathtmpl_free(pt_pathtmpl_t *t)
{
    if (t == NULL)
        return;
    const pt_allocator_t *a = t->a;
    a->free(a->ud, t->strs);
    a->free(a->ud, t);
}

const char *pt_pathtmpl_text(const pt_pathtmpl_t *t)
{
    return t->text;
}
const char *pt_pathtmpl_verb(const pt_pathtmpl_t *t)
{
    return t->verb;
}
size_t pt_pathtmpl_seg_cnt(const pt_pathtmpl_t *t)
{
    return t->seg_cnt;
}
const pt_pathseg_t *pt_pathtmpl_seg(const pt_pathtmpl_t *t, size_t i)
{
    return &t->segs[i];
}
size_t pt_pathtmpl_var_cnt(const pt_pathtmpl_t *t)
{
    return t->var_cnt;
}
const pt_pathtmpl_var_t *pt_pathtmpl_var(const pt_pathtmpl_t *t, size_t i)
{
    return &t->vars[i];
}

/* ------------------------------------------------------------------------ */
/* Matcher                                                                  */

typedef struct entry {
    const char *method; /* NUL-terminated; "*" = any */
    bool any_method;
    unsigned method_bit;
    const pt_pathtmpl_t *tmpl;
    void *route;
    struct entry *next;
} entry_t;

typedef struct node node_t;

typedef struct litedge {
    const char *lit;
    size_t len;
    node_t *child;
} litedge_t;

struct node {
    litedge_t *lits; /* sorted by (len, bytes) */
    size_t lit_cnt, lit_cap;
    node_t *star;
    entry_t *end;   /* templates ending at this node */
    entry_t *dstar; /* templates whose final `**` starts after this node */
};

struct pt_pathmatcher {
    const pt_allocator_t *a;
    node_t *root;
    size_t route_cnt;
};

static int litcmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

/* Binary search; returns the index of the match, or -(insertion point) - 1. */
static long find_lit(const node_t *n, const char *s, size_t len)
{
    size_t lo = 0, hi = n->lit_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = litcmp(n->lits[mid].lit, n->lits[mid].len, s, len);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

static node_t *node_new(const pt_allocator_t *a)
{
    node_t *n = a->alloc(a->ud, sizeof(*n));
    if (n != NULL)
        memset(n, 0, sizeof(*n));
    return n;
}

static void node_free(const pt_allocator_t *a, node_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->lit_cnt; i++)
        node_free(a, n->lits[i].child);
    a->free(a->ud, n->lits);
    node_free(a, n->star);
    for (entry_t *e = n->end, *nx; e != NULL; e = nx) {
        nx = e->next;
        a->free(a->ud, e);
    }
    for (entry_t *e = n->dstar, *nx; e != NULL; e = nx) {
        nx = e->next;
        a->free(a->ud, e);
    }
    a->free(a->ud, n);
}

int pt_pathmatcher_new(const pt_allocator_t *a, pt_pathmatcher_t **out)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt_pathmatcher_t *m = a->alloc(a->ud, sizeof(*m));
    if (m == NULL)
        return PT_XERR_NOMEM;
    m->a = a;
    m->route_cnt = 0;
    m->root = node_new(a);
    if (m->root == NULL) {
        a->free(a->ud, m);
        return PT_XERR_NOMEM;
    }
    *out = m;
    return 0;
}

void pt_pathmatcher_free(pt_pathmatcher_t *m)
{
    if (m == NULL)
        return;
    node_free(m->a, m->root);
    m->a->free(m->a->ud, m);
}

size_t pt_pathmatcher_route_cnt(const pt_pathmatcher_t *m)
{
    return m->route_cnt;
}

static unsigned method_bit(const char *m, size_t n)
{
    static const struct {
        const char *name;
        unsigned bit;
    } tab[] = {{"GET", PT_HTTP_M_GET},        {"PUT", PT_HTTP_M_PUT},     {"POST", PT_HTTP_M_POST},
               {"DELETE", PT_HTTP_M_DELETE},  {"PATCH", PT_HTTP_M_PATCH}, {"HEAD", PT_HTTP_M_HEAD},
               {"OPTIONS", PT_HTTP_M_OPTIONS}};
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strlen(tab[i].name) == n && memcmp(tab[i].name, m, n) == 0)
            return tab[i].bit;
    return PT_HTTP_M_OTHER;
}

static bool str_eq_opt(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int pt_pathmatcher_add(pt_pathmatcher_t *m, const char *method, const pt_pathtmpl_t *tmpl,
                       void *route, pt_xerr_t *err)
{
    const pt_allocator_t *a = m->a;
    node_t *n = m->root;
    bool dstar = false;
    for (size_t i = 0; i < tmpl->seg_cnt; i++) {
        const pt_pathseg_t *sg = &tmpl->segs[i];
        if (sg->kind == PT_PATHSEG_DSTAR) {
            dstar = true; /* always the last segment */
            break;
        }
        if (sg->kind == PT_PATHSEG_STAR) {
            if (n->star == NULL && (n->star = node_new(a)) == NULL)
                return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
            n = n->star;
            continue;
        }
        long at = find_lit(n, sg->lit, sg->lit_len);
        if (at >= 0) {
            n = n->lits[at].child;
            continue;
        }
        size_t ins = (size_t)(-at - 1);
        if (n->lit_cnt == n->lit_cap) {
            size_t cap = n->lit_cap ? 2 * n->lit_cap : 4;
            litedge_t *l = a->realloc(a->ud, n->lits, cap * sizeof(*l));
            if (l == NULL)
                return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
            n->lits = l;
            n->lit_cap = cap;
        }
        node_t *child = node_new(a);
        if (child == NULL)
            return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
        memmove(&n->lits[ins + 1], &n->lits[ins], (n->lit_cnt - ins) * sizeof(litedge_t));
        n->lits[ins] = (litedge_t){.lit = sg->lit, .len = sg->lit_len, .child = child};
        n->lit_cnt++;
        n = child;
    }
    entry_t **list = dstar ? &n->dstar : &n->end;
    bool any = strcmp(method, "*") == 0;
    for (entry_t *e = *list; e != NULL; e = e->next) {
        if (str_eq_opt(e->tmpl->verb, tmpl->verb) && strcmp(e->method, method) == 0)
            return pt_xerr_set(err, PT_XERR_INVALID, NULL,
                               "%s %s conflicts with %s %s (same shape, verb and method)", method,
                               tmpl->text, e->method, e->tmpl->text);
    }
    entry_t *e = a->alloc(a->ud, sizeof(*e));
    if (e == NULL)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    *e = (entry_t){.method = method,
                   .any_method = any,
                   .method_bit = any ? PT_HTTP_M_OTHER : method_bit(method, strlen(method)),
                   .tmpl = tmpl,
                   .route = route,
                   .next = NULL};
    /* append: keeps insertion order among equals (stable, predictable) */
    while (*list != NULL)
        list = &(*list)->next;
    *list = e;
    m->route_cnt++;
    return 0;
}

typedef struct pseg {
    const char *s; /* normalized, inside scratch */
    size_t len;
} pseg_t;

typedef struct mctx {
    const pseg_t *segs;
    size_t n;
    const char *verb; /* NULL: only verb-less templates */
    size_t verb_len;
    const char *method;
    size_t method_len;
    const entry_t *found;
    unsigned allowed;
    bool path_hit;
} mctx_t;

static bool verb_ok(const mctx_t *c, const pt_pathtmpl_t *t)
{
    if (c->verb == NULL)
        return t->verb == NULL;
    return t->verb != NULL && strlen(t->verb) == c->verb_len &&
           memcmp(t->verb, c->verb, c->verb_len) == 0;
}

/* The best entry of `list` for the request, exact method before "*". */
static const entry_t *pick(mctx_t *c, const entry_t *list)
{
    const entry_t *any = NULL;
    for (const entry_t *e = list; e != NULL; e = e->next) {
        if (!verb_ok(c, e->tmpl))
            continue;
        c->path_hit = true;
        c->allowed |= e->method_bit;
        if (e->any_method) {
            if (any == NULL)
                any = e;
        } else if (strlen(e->method) == c->method_len &&
                   memcmp(e->method, c->method, c->method_len) == 0) {
            return e;
        }
    }
    return any;
}

static bool walk(mctx_t *c, const node_t *n, size_t depth)
{
    if (depth == c->n) {
        const entry_t *e = pick(c, n->end);
        if (e != NULL) {
            c->found = e;
            return true;
        }
    } else {
        long at = find_lit(n, c->segs[depth].s, c->segs[depth].len);
        if (at >= 0 && walk(c, n->lits[at].child, depth + 1))
            return true;
        if (n->star != NULL && walk(c, n->star, depth + 1))
            return true;
    }
    const entry_t *e = pick(c, n->dstar);
    if (e != NULL) {
        c->found = e;
        return true;
    }
    return false;
}

static pt_pathmatch_status_t fail(pt_pathmatch_t *res, pt_pathmatch_status_t st, const char *why)
{
    res->status = st;
    res->reason = why;
    return st;
}

/*
 * Decodes one variable value. Single-segment: every escape; "%2F" refused
 * unless allowed. Multi-segment: every escape except "%2F" (normalization has
 * made hex digits upper-case, so "%2f" cannot appear).
 */
static long decode_value(const char *s, size_t n, bool multi, bool allow_slash, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        /* normalize_seg() validated every escape already */
        int d = pt_hexval((unsigned char)s[i + 1]) * 16 + pt_hexval((unsigned char)s[i + 2]);
        if (d == '/') {
            if (multi) {
                memcpy(out + o, "%2F", 3); // NOLINT(bugprone-not-null-terminated-result): fragment of out
                o += 3;
                i += 2;
                continue;
            }
            if (!allow_slash)
                return -1;
        }
        out[o++] = (char)d;
        i += 2;
    }
    return (long)o;
}

pt_pathmatch_status_t pt_pathmatcher_match(const pt_pathmatcher_t *m, const char *method,
                                           size_t method_len, const char *path, size_t path_len,
                                           const pt_pathmatch_opts_t *opts, char *scratch,
                                           size_t scratch_len, pt_pathmatch_t *res)
{
    memset(res, 0, sizeof(*res));
    bool allow_slash = opts != NULL && opts->allow_encoded_slash;
    for (size_t i = 0; i < path_len; i++) {
        if (path[i] == '?' || path[i] == '#') {
            path_len = i;
            break;
        }
    }
    if (path_len == 0 || path[0] != '/')
        return fail(res, PT_PATHMATCH_BAD_PATH, "the path must start with '/'");
    if (scratch_len < PT_PATHMATCH_SCRATCH_LEN(path_len))
        return fail(res, PT_PATHMATCH_LIMIT, "scratch buffer too small");

    /* Split and normalize into scratch as "/seg/seg..." so a run of segments
     * stays one contiguous slice. */
    pseg_t segs[PT_PATHMATCH_MAX_SEGMENTS];
    size_t n = 0, o = 0;
    size_t i = 1;
    if (path_len > 1) {
        for (;;) {
            size_t start = i;
            while (i < path_len && path[i] != '/') {
                unsigned char c = (unsigned char)path[i];
                if (c < 0x20 || c == 0x7f)
                    return fail(res, PT_PATHMATCH_BAD_PATH, "control character in the path");
                i++;
            }
            if (i == start)
                return fail(res, PT_PATHMATCH_BAD_PATH, "empty path segment");
            if (n == PT_PATHMATCH_MAX_SEGMENTS)
                return fail(res, PT_PATHMATCH_LIMIT, "too many path segments");
            scratch[o++] = '/';
            long k = normalize_seg(path + start, i - start, scratch + o);
            if (k < 0)
                return fail(res, PT_PATHMATCH_BAD_PATH, "malformed percent-escape in the path");
            if (is_dot_seg(scratch + o, (size_t)k))
                return fail(res, PT_PATHMATCH_BAD_PATH, "'.' or '..' path segment");
            segs[n].s = scratch + o;
            segs[n].len = (size_t)k;
            n++;
            o += (size_t)k;
            if (i == path_len)
                break;
            i++; /* the '/' */
        }
    }
    char *vals = scratch + o + 1;

    mctx_t c = {.segs = segs, .n = n, .method = method, .method_len = method_len};
    bool hit = false;
    unsigned allowed = 0;
    if (n > 0) {
        /* A ':' in the last segment may introduce a verb; try that first. */
        pseg_t last = segs[n - 1];
        const char *colon = NULL;
        for (size_t k = last.len; k > 0; k--) {
            if (last.s[k - 1] == ':') {
                colon = last.s + k - 1;
                break;
            }
        }
        if (colon != NULL && colon > last.s && colon + 1 < last.s + last.len) {
            segs[n - 1].len = (size_t)(colon - last.s);
            c.verb = colon + 1;
            c.verb_len = (size_t)(last.s + last.len - colon - 1);
            walk(&c, m->root, 0);
            hit = c.path_hit;
            allowed = c.allowed;
            if (c.found == NULL) {
                segs[n - 1] = last;
                c.verb = NULL;
                c.verb_len = 0;
                c.path_hit = false;
                c.allowed = 0;
            }
        }
    }
    if (c.found == NULL) {
        walk(&c, m->root, 0);
        hit = hit || c.path_hit;
        allowed |= c.allowed;
    }
    if (c.found == NULL) {
        if (hit) {
            res->allowed = allowed;
            return fail(res, PT_PATHMATCH_METHOD, "method not allowed");
        }
        return fail(res, PT_PATHMATCH_NOT_FOUND, "no route matches the path");
    }

    const pt_pathtmpl_t *t = c.found->tmpl;
    bool ends_dstar = t->seg_cnt > 0 && t->segs[t->seg_cnt - 1].kind == PT_PATHSEG_DSTAR;
    for (size_t v = 0; v < t->var_cnt; v++) {
        const pt_pathtmpl_var_t *tv = &t->vars[v];
        size_t first = tv->first_seg;
        size_t end = (ends_dstar && tv->end_seg == t->seg_cnt) ? n : tv->end_seg;
        const char *vs = "";
        size_t vlen = 0;
        if (first < end && first < n) {
            vs = segs[first].s;
            vlen = (size_t)(segs[end - 1].s + segs[end - 1].len - vs);
        }
        long k = decode_value(vs, vlen, tv->is_multi, allow_slash, vals);
        if (k < 0) {
            memset(res, 0, sizeof(*res));
            return fail(res, PT_PATHMATCH_BAD_PATH, "'%2F' in a single-segment path variable");
        }
        vals[k] = '\0';
        res->vars[v] = (pt_pathvar_t){.field_path = tv->field_path,
                                      .field_path_len = tv->field_path_len,
                                      .value = vals,
                                      .value_len = (size_t)k};
        vals += k + 1;
    }
    res->var_cnt = t->var_cnt;
    res->route = c.found->route;
    res->tmpl = t;
    res->status = PT_PATHMATCH_OK;
    return PT_PATHMATCH_OK;
}

const char *pt_pathmatch_status_name(pt_pathmatch_status_t s)
{
    switch (s) {
    case PT_PATHMATCH_OK:
        return "OK";
    case PT_PATHMATCH_NOT_FOUND:
        return "NOT_FOUND";
    case PT_PATHMATCH_METHOD:
        return "METHOD_NOT_ALLOWED";
    case PT_PATHMATCH_BAD_PATH:
        return "BAD_PATH";
    case PT_PATHMATCH_LIMIT:
        return "LIMIT";
    }
    return "UNKNOWN";
}
