/*
 * confparse.c -- YAML to pt_conf_node_t, errors, getters and field tables.
 *
 * The tree is built from libyaml's event stream with an explicit stack, so a
 * hostile file cannot recurse us into the ground; depth, node count and file
 * size are capped (confparse.h). Anchors and aliases are refused: a config
 * has no need for them and they are the vector of "billion laughs".
 *
 * Duplicate map keys are detected while the tree is built, for every map in
 * the file (so filter and handler configs get the check for free); the later
 * duplicate is reported and dropped from the tree.
 */
#include "core/confparse.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "portico/status.h"

/* ---- context ----------------------------------------------------------- */

void pt__conf_cx_init(pt_conf_cx_t *cx, const char *file, FILE *errs)
{
    memset(cx, 0, sizeof(*cx));
    cx->errs = errs;
    cx->arena = pt_arena_new(16384, 0);
    if (file == NULL)
        file = "<config>";
    cx->file = pt_conf_strdup(cx, file, strlen(file));
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        cx->dir = ".";
    else if (slash == file)
        cx->dir = "/";
    else
        cx->dir = pt_conf_strdup(cx, file, (size_t)(slash - file));
}

void pt__conf_cx_dispose(pt_conf_cx_t *cx)
{
    pt_arena_destroy(cx->arena);
    cx->arena = NULL;
}

pt_arena_t *pt__conf_cx_take_arena(pt_conf_cx_t *cx)
{
    pt_arena_t *a = cx->arena;
    cx->arena = NULL;
    return a;
}

/* ---- conf.h basics ----------------------------------------------------- */

static int verror(pt_conf_cx_t *cx, const char *file, unsigned line, unsigned col, const char *fmt,
                  va_list ap)
{
    cx->err_cnt++;
    if (cx->errs != NULL) {
        fprintf(cx->errs, "%s:%u:%u: ", file, line, col);
        vfprintf(cx->errs, fmt, ap);
        fputc('\n', cx->errs);
        fflush(cx->errs);
    }
    return PT_ERR_INVALID;
}

int pt_conf_error(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (node != NULL)
        verror(cx, node->file != NULL ? node->file : cx->file, node->line, node->col, fmt, ap);
    else
        verror(cx, cx->file, 1, 1, fmt, ap);
    va_end(ap);
    return PT_ERR_INVALID;
}

void pt__conf_warn(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *fmt, ...)
{
    if (cx->errs == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(cx->errs, "%s:%u:%u: warning: ", node->file != NULL ? node->file : cx->file,
            node->line, node->col);
    vfprintf(cx->errs, fmt, ap);
    fputc('\n', cx->errs);
    fflush(cx->errs);
    va_end(ap);
}

static int error_at(pt_conf_cx_t *cx, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int error_at(pt_conf_cx_t *cx, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(cx, cx->file, line, col, fmt, ap);
    va_end(ap);
    return PT_ERR_INVALID;
}

unsigned pt_conf_error_count(const pt_conf_cx_t *cx)
{
    return cx->err_cnt;
}

void *pt_conf_alloc(pt_conf_cx_t *cx, size_t size)
{
    void *p = pt_arena_zalloc(cx->arena, size != 0 ? size : 1);
    if (p == NULL) /* the config arena has no byte limit; this is OOM */
        abort();
    return p;
}

char *pt_conf_strdup(pt_conf_cx_t *cx, const char *s, size_t len)
{
    char *p = pt_conf_alloc(cx, len + 1);
    if (len != 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

const char *pt_conf_resolve_path(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *path)
{
    (void)node; /* one file per load: every node shares cx->dir */
    size_t plen = strlen(path);
    if (path[0] == '/' || strcmp(cx->dir, ".") == 0)
        return pt_conf_strdup(cx, path, plen);
    size_t dlen = strlen(cx->dir);
    bool slash = dlen > 0 && cx->dir[dlen - 1] == '/';
    char *out = pt_conf_alloc(cx, dlen + 1 + plen + 1);
    memcpy(out, cx->dir, dlen);
    size_t o = dlen;
    if (!slash)
        out[o++] = '/';
    memcpy(out + o, path, plen + 1);
    return out;
}

void pt_conf_on_release(pt_conf_cx_t *cx, void (*cb)(void *data), void *data)
{
    if (pt_arena_defer(cx->arena, cb, data) != 0)
        abort(); /* unlimited arena: cannot happen short of OOM */
}

const pt_conf_node_t *pt_conf_map_get(const pt_conf_node_t *map, const char *key)
{
    if (map == NULL || map->kind != PT_CONF_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->cnt; i++) {
        const pt_conf_node_t *k = map->keys[i];
        if (k->len == klen && memcmp(k->str, key, klen) == 0)
            return map->items[i];
    }
    return NULL;
}

bool pt__conf_is_plain(const pt_conf_node_t *n, const char *lit)
{
    return n != NULL && n->kind == PT_CONF_SCALAR && !n->quoted && strcmp(n->str, lit) == 0;
}

/* ---- YAML to tree ------------------------------------------------------ */

typedef struct frame {
    pt_conf_node_t *node;
    pt_conf_node_t **kids; /* malloc'd while open; key, value, key, value... for maps */
    size_t cnt, cap;
} frame_t;

typedef struct builder {
    pt_conf_cx_t *cx;
    frame_t stack[PT_CONF_MAX_DEPTH];
    int depth;
    pt_conf_node_t *root;
    unsigned docs;
    bool fatal;
} builder_t;

static pt_conf_node_t *new_node(builder_t *b, pt_conf_kind_t kind, const yaml_mark_t *m)
{
    if (++b->cx->node_cnt > PT_CONF_MAX_NODES) {
        error_at(b->cx, (unsigned)m->line + 1, (unsigned)m->column + 1,
                 "config too large: more than %u nodes", PT_CONF_MAX_NODES);
        b->fatal = true;
        return NULL;
    }
    pt_conf_node_t *n = pt_conf_alloc(b->cx, sizeof(*n));
    n->kind = kind;
    n->file = b->cx->file;
    n->line = (unsigned)m->line + 1;
    n->col = (unsigned)m->column + 1;
    return n;
}

static void attach(builder_t *b, pt_conf_node_t *n)
{
    if (b->depth == 0) {
        b->root = n;
        return;
    }
    frame_t *f = &b->stack[b->depth - 1];
    if (f->cnt == f->cap) {
        size_t cap = f->cap != 0 ? f->cap * 2 : 8;
        pt_conf_node_t **k = realloc(f->kids, cap * sizeof(*k));
        if (k == NULL)
            abort();
        f->kids = k;
        f->cap = cap;
    }
    f->kids[f->cnt++] = n;
}

static int key_cmp(const pt_conf_node_t *a, const pt_conf_node_t *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n != 0 ? memcmp(a->str, b->str, n) : 0;
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

typedef struct keyref {
    const pt_conf_node_t *key;
    size_t idx;
} keyref_t;

static int keyref_cmp(const void *pa, const void *pb)
{
    const keyref_t *a = pa, *b = pb;
    int c = key_cmp(a->key, b->key);
    if (c != 0)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static void report_dup(builder_t *b, const pt_conf_node_t *dup, const pt_conf_node_t *first)
{
    pt_conf_error(b->cx, dup, "duplicate key '%s' (first defined at line %u)", dup->str,
                  first->line);
}

/* Closes a map: checks its keys, drops duplicates, moves the pairs to the arena. */
static void finish_map(builder_t *b, frame_t *f)
{
    pt_conf_node_t *m = f->node;
    size_t pairs = f->cnt / 2;
    bool *drop = calloc(pairs != 0 ? pairs : 1, sizeof(bool));
    if (drop == NULL)
        abort();
    for (size_t i = 0; i < pairs; i++) {
        const pt_conf_node_t *k = f->kids[2 * i];
        if (k->kind != PT_CONF_SCALAR) {
            pt_conf_error(b->cx, k, "map keys must be plain strings");
            drop[i] = true;
        }
    }
    if (pairs <= 16) {
        for (size_t i = 1; i < pairs; i++)
            for (size_t j = 0; j < i && !drop[i]; j++)
                if (!drop[j] && key_cmp(f->kids[2 * i], f->kids[2 * j]) == 0) {
                    report_dup(b, f->kids[2 * i], f->kids[2 * j]);
                    drop[i] = true;
                }
    } else {
        /* Big maps: sort (key, index) and compare neighbours, O(n log n). */
        keyref_t *refs = malloc(pairs * sizeof(*refs));
        if (refs == NULL)
            abort();
        size_t n = 0;
        for (size_t i = 0; i < pairs; i++)
            if (!drop[i])
                refs[n++] = (keyref_t){f->kids[2 * i], i};
        qsort(refs, n, sizeof(*refs), keyref_cmp);
        for (size_t i = 1; i < n; i++) {
            size_t first = i - 1;
            while (i < n && key_cmp(refs[i].key, refs[first].key) == 0) {
                report_dup(b, refs[i].key, refs[first].key);
                drop[refs[i].idx] = true;
                i++;
            }
        }
        free(refs);
    }
    size_t keep = 0;
    for (size_t i = 0; i < pairs; i++)
        keep += !drop[i];
    m->keys = pt_conf_alloc(b->cx, (keep != 0 ? keep : 1) * sizeof(*m->keys));
    m->items = pt_conf_alloc(b->cx, (keep != 0 ? keep : 1) * sizeof(*m->items));
    for (size_t i = 0; i < pairs; i++) {
        if (drop[i])
            continue;
        m->keys[m->cnt] = f->kids[2 * i];
        m->items[m->cnt] = f->kids[2 * i + 1];
        m->cnt++;
    }
    free(drop);
}

static void finish_seq(builder_t *b, frame_t *f)
{
    pt_conf_node_t *s = f->node;
    s->cnt = f->cnt;
    s->items = pt_conf_alloc(b->cx, (f->cnt != 0 ? f->cnt : 1) * sizeof(*s->items));
    if (f->cnt != 0)
        memcpy(s->items, f->kids, f->cnt * sizeof(*s->items));
}

static void push(builder_t *b, pt_conf_node_t *n, const yaml_mark_t *m)
{
    if (b->depth == PT_CONF_MAX_DEPTH) {
        error_at(b->cx, (unsigned)m->line + 1, (unsigned)m->column + 1,
                 "config nested too deeply (more than %d levels)", PT_CONF_MAX_DEPTH);
        b->fatal = true;
        return;
    }
    attach(b, n);
    b->stack[b->depth++] = (frame_t){n, NULL, 0, 0};
}

static void pop(builder_t *b)
{
    frame_t *f = &b->stack[--b->depth];
    if (f->node->kind == PT_CONF_MAP)
        finish_map(b, f);
    else
        finish_seq(b, f);
    free(f->kids);
    f->kids = NULL;
}

static bool is_null_scalar(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 &&
            (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

static bool refuse_anchor(builder_t *b, const yaml_char_t *anchor, const yaml_mark_t *m)
{
    if (anchor == NULL)
        return false;
    error_at(b->cx, (unsigned)m->line + 1, (unsigned)m->column + 1,
             "YAML anchors (&%s) are not supported", (const char *)anchor);
    b->fatal = true;
    return true;
}

static void on_event(builder_t *b, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    pt_conf_node_t *n;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->docs++ != 0) {
            error_at(b->cx, (unsigned)m->line + 1, (unsigned)m->column + 1,
                     "only one YAML document is allowed in a config file");
            b->fatal = true;
        }
        break;
    case YAML_ALIAS_EVENT:
        error_at(b->cx, (unsigned)m->line + 1, (unsigned)m->column + 1,
                 "YAML aliases (*%s) are not supported", (const char *)ev->data.alias.anchor);
        b->fatal = true;
        break;
    case YAML_SCALAR_EVENT:
        if (refuse_anchor(b, ev->data.scalar.anchor, m))
            break;
        n = new_node(b, is_null_scalar(ev) ? PT_CONF_NULL : PT_CONF_SCALAR, m);
        if (n == NULL)
            break;
        if (n->kind == PT_CONF_SCALAR) {
            n->len = ev->data.scalar.length;
            n->str = pt_conf_strdup(b->cx, (const char *)ev->data.scalar.value, n->len);
            const char *tag = (const char *)ev->data.scalar.tag;
            n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                        (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0);
            if (memchr(n->str, '\0', n->len) != NULL) {
                pt_conf_error(b->cx, n, "NUL bytes are not allowed in config strings");
                n->len = strlen(n->str);
            }
        }
        attach(b, n);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        const yaml_char_t *anchor = ev->type == YAML_SEQUENCE_START_EVENT
                                        ? ev->data.sequence_start.anchor
                                        : ev->data.mapping_start.anchor;
        if (refuse_anchor(b, anchor, m))
            break;
        n = new_node(b, ev->type == YAML_SEQUENCE_START_EVENT ? PT_CONF_SEQ : PT_CONF_MAP, m);
        if (n != NULL)
            push(b, n, m);
        break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0)
            pop(b);
        break;
    default:
        break;
    }
}

const pt_conf_node_t *pt__conf_parse(pt_conf_cx_t *cx, const char *text, size_t len)
{
    if (len > PT_CONF_MAX_FILE) {
        error_at(cx, 1, 1, "config file too large (%zu bytes, at most %u)", len, PT_CONF_MAX_FILE);
        return NULL;
    }
    unsigned errs_before = cx->err_cnt;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    builder_t b = {.cx = cx};
    bool done = false;
    while (!done && !b.fatal) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const yaml_mark_t *pm = &parser.problem_mark;
            const char *problem = parser.problem != NULL ? parser.problem : "invalid input";
            if (parser.context != NULL)
                error_at(cx, (unsigned)pm->line + 1, (unsigned)pm->column + 1,
                         "YAML syntax error: %s %s", problem, parser.context);
            else
                error_at(cx, (unsigned)pm->line + 1, (unsigned)pm->column + 1,
                         "YAML syntax error: %s", problem);
            b.fatal = true;
            break;
        }
        on_event(&b, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    while (b.depth > 0) { /* unwind after a fatal error; the tree is discarded anyway */
        frame_t *f = &b.stack[--b.depth];
        free(f->kids);
        f->kids = NULL;
    }
    if (b.fatal || cx->err_cnt != errs_before)
        return NULL;
    if (b.root == NULL) { /* empty file */
        yaml_mark_t m = {0, 0, 0};
        b.root = new_node(&b, PT_CONF_NULL, &m);
    }
    return b.root;
}

const pt_conf_node_t *pt__conf_parse_file(pt_conf_cx_t *cx)
{
    FILE *f = fopen(cx->file, "rb");
    if (f == NULL) {
        error_at(cx, 1, 1, "cannot open config file: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    for (;;) {
        if (len == cap) {
            if (cap > PT_CONF_MAX_FILE) {
                fclose(f);
                free(buf);
                error_at(cx, 1, 1, "config file too large (more than %u bytes)", PT_CONF_MAX_FILE);
                return NULL;
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                abort();
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        error_at(cx, 1, 1, "cannot read config file");
        return NULL;
    }
    const pt_conf_node_t *root = pt__conf_parse(cx, buf, len);
    free(buf);
    return root;
}

/* ---- getters ------------------------------------------------------------ */

static const char *describe(const pt_conf_node_t *n)
{
    if (n == NULL)
        return "nothing";
    switch (n->kind) {
    case PT_CONF_NULL:
        return "null";
    case PT_CONF_MAP:
        return "a map";
    case PT_CONF_SEQ:
        return "a list";
    default:
        return n->quoted ? "a quoted string" : "a scalar";
    }
}

int pt_conf_get_str(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char **out)
{
    if (n == NULL || n->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "expected a string, got %s", describe(n));
    *out = n->str;
    return 0;
}

int pt_conf_get_bool(pt_conf_cx_t *cx, const pt_conf_node_t *n, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off", NULL};
    if (n != NULL && n->kind == PT_CONF_SCALAR && !n->quoted) {
        for (size_t i = 0; yes[i] != NULL; i++)
            if (strcmp(n->str, yes[i]) == 0) {
                *out = true;
                return 0;
            }
        for (size_t i = 0; no[i] != NULL; i++)
            if (strcmp(n->str, no[i]) == 0) {
                *out = false;
                return 0;
            }
    }
    if (n != NULL && n->kind == PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "expected true or false, got '%s'", n->str);
    return pt_conf_error(cx, n, "expected true or false, got %s", describe(n));
}

/* A plain decimal integer with optional sign; 0 or -1 (not a number / overflow). */
static int parse_ll(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    for (const char *q = p; *q != '\0'; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int pt_conf_get_int(pt_conf_cx_t *cx, const pt_conf_node_t *n, long long min, long long max,
                    long long *out)
{
    long long v = 0;
    if (n == NULL || n->kind != PT_CONF_SCALAR || n->quoted)
        return pt_conf_error(cx, n, "expected an integer, got %s", describe(n));
    if (parse_ll(n->str, &v) != 0)
        return pt_conf_error(cx, n, "expected an integer, got '%s'", n->str);
    if (v < min || v > max)
        return pt_conf_error(cx, n, "value %lld out of range [%lld, %lld]", v, min, max);
    *out = v;
    return 0;
}

/*
 * "<digits>[.<digits>]<unit>" with unit scaled by `unit_of`. Works in
 * integers: the fraction is applied to the unit with up to 9 digits.
 * Returns 0 or -1 (syntax or overflow).
 */
static int parse_scaled(const char *s, uint64_t (*unit_of)(const char *u), bool allow_frac,
                        uint64_t *out)
{
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    uint64_t ip = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (ip > (UINT64_MAX - 9) / 10)
            return -1;
        ip = ip * 10 + (uint64_t)(*p - '0');
    }
    uint64_t frac = 0, scale = 1;
    if (*p == '.') {
        if (!allow_frac)
            return -1;
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale >= 1000000000ull)
                return -1;
            frac = frac * 10 + (uint64_t)(*p - '0');
            scale *= 10;
        }
    }
    uint64_t unit = unit_of(p);
    if (unit == 0)
        return -1;
    if (ip != 0 && unit > UINT64_MAX / ip)
        return -1;
    uint64_t v = ip * unit;
    /* frac < scale <= 1e9 and unit fits the table below, so no overflow here */
    uint64_t f = frac * unit / scale;
    if (v > UINT64_MAX - f)
        return -1;
    *out = v + f;
    return 0;
}

static uint64_t duration_unit(const char *u)
{
    if (*u == '\0' || strcmp(u, "s") == 0)
        return 1000;
    if (strcmp(u, "ms") == 0)
        return 1;
    if (strcmp(u, "m") == 0)
        return 60000;
    if (strcmp(u, "h") == 0)
        return 3600000;
    if (strcmp(u, "d") == 0)
        return 86400000;
    return 0;
}

static uint64_t size_unit(const char *u)
{
    static const struct {
        const char *s;
        uint64_t v;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ull << 10},
        {"kb", 1ull << 10},
        {"kib", 1ull << 10},
        {"m", 1ull << 20},
        {"mb", 1ull << 20},
        {"mib", 1ull << 20},
        {"g", 1ull << 30},
        {"gb", 1ull << 30},
        {"gib", 1ull << 30},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(u, units[i].s) == 0)
            return units[i].v;
    return 0;
}

int pt_conf_get_duration_ms(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint64_t *out_ms)
{
    uint64_t v = 0;
    if (n == NULL || n->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "expected a duration (e.g. 250ms, 5s, 2m, 1h), got %s",
                             describe(n));
    if (parse_scaled(n->str, duration_unit, true, &v) != 0)
        return pt_conf_error(cx, n, "expected a duration (e.g. 250ms, 5s, 2m, 1h), got '%s'",
                             n->str);
    *out_ms = v;
    return 0;
}

int pt_conf_get_size(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == NULL || n->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, n, "expected a size (e.g. 512, 64k, 1MiB), got %s", describe(n));
    if (parse_scaled(n->str, size_unit, false, &v) != 0)
        return pt_conf_error(cx, n, "expected a size (e.g. 512, 64k, 1MiB), got '%s'", n->str);
    *out = v;
    return 0;
}

/* ---- field tables -------------------------------------------------------- */

/* Edit distance capped at 3, for "did you mean" hints on unknown keys. */
static unsigned edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    unsigned row[33];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned prev = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned cur = row[j];
            unsigned best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

static void consider(const char *key, const char *cand, const char **best, unsigned *best_d)
{
    unsigned d = edit_distance(key, cand);
    if (d < *best_d) {
        *best_d = d;
        *best = cand;
    }
}

static int report_unknown(pt_conf_cx_t *cx, const pt_conf_node_t *key, const char *what,
                          const char *best)
{
    if (best != NULL)
        return pt_conf_error(cx, key, "unknown %s '%s' (did you mean '%s'?)", what, key->str, best);
    return pt_conf_error(cx, key, "unknown %s '%s'", what, key->str);
}

int pt__conf_unknown_key(pt_conf_cx_t *cx, const pt_conf_node_t *key, const char *what,
                         const char *const *candidates)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; candidates != NULL && candidates[i] != NULL; i++)
        consider(key->str, candidates[i], &best, &best_d);
    return report_unknown(cx, key, what, best);
}

static int unknown_key(pt_conf_cx_t *cx, const pt_conf_node_t *key, const pt_conf_field_t *fields)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (const pt_conf_field_t *f = fields; f->key != NULL; f++)
        consider(key->str, f->key, &best, &best_d);
    return report_unknown(cx, key, "key", best);
}

static int get_strlist(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_conf_strlist_t *out)
{
    if (n->kind == PT_CONF_NULL) {
        out->v = NULL;
        out->cnt = 0;
        return 0;
    }
    if (n->kind == PT_CONF_SCALAR) {
        out->v = pt_conf_alloc(cx, sizeof(*out->v));
        out->v[0] = n->str;
        out->cnt = 1;
        return 0;
    }
    if (n->kind != PT_CONF_SEQ)
        return pt_conf_error(cx, n, "expected a list of strings, got %s", describe(n));
    const char **v = pt_conf_alloc(cx, (n->cnt != 0 ? n->cnt : 1) * sizeof(*v));
    int rc = 0;
    for (size_t i = 0; i < n->cnt; i++)
        if (pt_conf_get_str(cx, n->items[i], &v[i]) != 0)
            rc = PT_ERR_INVALID;
    if (rc == 0) {
        out->v = v;
        out->cnt = n->cnt;
    }
    return rc;
}

static int get_strmap(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_conf_strmap_t *out)
{
    if (n->kind == PT_CONF_NULL) {
        out->v = NULL;
        out->cnt = 0;
        return 0;
    }
    if (n->kind != PT_CONF_MAP)
        return pt_conf_error(cx, n, "expected a map of strings, got %s", describe(n));
    pt_conf_kv_t *v = pt_conf_alloc(cx, (n->cnt != 0 ? n->cnt : 1) * sizeof(*v));
    int rc = 0;
    for (size_t i = 0; i < n->cnt; i++) {
        v[i].key = n->keys[i]->str;
        if (pt_conf_get_str(cx, n->items[i], &v[i].value) != 0)
            rc = PT_ERR_INVALID;
    }
    if (rc == 0) {
        out->v = v;
        out->cnt = n->cnt;
    }
    return rc;
}

static void fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static int set_field(pt_conf_cx_t *cx, const pt_conf_field_t *f, const pt_conf_node_t *n, void *dst)
{
    switch (f->type) {
    case PT_CONF_T_STR: {
        const char *s = NULL;
        if (pt_conf_get_str(cx, n, &s) != 0)
            return PT_ERR_INVALID;
        *(const char **)dst = s;
        return 0;
    }
    case PT_CONF_T_PATH: {
        const char *s = NULL;
        if (pt_conf_get_str(cx, n, &s) != 0 || s == NULL)
            return PT_ERR_INVALID;
        if (s[0] == '\0')
            return pt_conf_error(cx, n, "expected a file path, got an empty string");
        *(const char **)dst = pt_conf_resolve_path(cx, n, s);
        return 0;
    }
    case PT_CONF_T_BOOL:
        return pt_conf_get_bool(cx, n, (bool *)dst);
    case PT_CONF_T_INT: {
        long long min = f->min, max = f->max, v = 0;
        if (min == 0 && max == 0) {
            min = LLONG_MIN;
            max = LLONG_MAX;
        }
        if (pt_conf_get_int(cx, n, min, max, &v) != 0)
            return PT_ERR_INVALID;
        *(long long *)dst = v;
        return 0;
    }
    case PT_CONF_T_UINT32: {
        long long min = f->min < 0 ? 0 : f->min;
        long long max =
            (f->max <= 0 || f->max > (long long)UINT32_MAX) ? (long long)UINT32_MAX : f->max;
        long long v = 0;
        if (pt_conf_get_int(cx, n, min, max, &v) != 0)
            return PT_ERR_INVALID;
        *(uint32_t *)dst = (uint32_t)v;
        return 0;
    }
    case PT_CONF_T_DURATION: {
        uint64_t v = 0;
        if (pt_conf_get_duration_ms(cx, n, &v) != 0)
            return PT_ERR_INVALID;
        uint64_t min = f->min > 0 ? (uint64_t)f->min : 0;
        if (v < min || (f->max > 0 && v > (uint64_t)f->max)) {
            char a[32], b[32] = "-";
            fmt_ms(a, sizeof(a), min);
            if (f->max > 0)
                fmt_ms(b, sizeof(b), (uint64_t)f->max);
            return pt_conf_error(cx, n, "duration '%s' out of range [%s, %s]", n->str, a,
                                 f->max > 0 ? b : "unbounded");
        }
        *(uint64_t *)dst = v;
        return 0;
    }
    case PT_CONF_T_SIZE: {
        uint64_t v = 0;
        if (pt_conf_get_size(cx, n, &v) != 0)
            return PT_ERR_INVALID;
        uint64_t min = f->min > 0 ? (uint64_t)f->min : 0;
        if (v < min || (f->max > 0 && v > (uint64_t)f->max)) {
            if (f->max > 0)
                return pt_conf_error(cx, n, "size '%s' out of range [%" PRIu64 ", %lld] bytes",
                                     n->str, min, f->max);
            return pt_conf_error(cx, n, "size '%s' below the minimum of %" PRIu64 " bytes", n->str,
                                 min);
        }
        *(uint64_t *)dst = v;
        return 0;
    }
    case PT_CONF_T_STRLIST:
        return get_strlist(cx, n, (pt_conf_strlist_t *)dst);
    case PT_CONF_T_STRMAP:
        return get_strmap(cx, n, (pt_conf_strmap_t *)dst);
    case PT_CONF_T_NODE:
        *(const pt_conf_node_t **)dst = n;
        return 0;
    case PT_CONF_T_CUSTOM:
        return f->parse != NULL ? f->parse(cx, n, dst) : 0;
    }
    return pt_conf_error(cx, n, "internal error: bad field type");
}

int pt_conf_parse_fields(pt_conf_cx_t *cx, const pt_conf_node_t *map, const pt_conf_field_t *fields,
                         void *dst)
{
    unsigned before = cx->err_cnt;
    if (map != NULL && map->kind != PT_CONF_MAP && map->kind != PT_CONF_NULL)
        return pt_conf_error(cx, map, "expected a map, got %s", describe(map));
    size_t nfields = 0;
    while (fields[nfields].key != NULL)
        nfields++;
    const pt_conf_node_t *seen_buf[64];
    const pt_conf_node_t **seen = seen_buf;
    if (nfields > 64) {
        seen = calloc(nfields, sizeof(*seen));
        if (seen == NULL)
            abort();
    } else {
        memset(seen_buf, 0, sizeof(seen_buf));
    }
    size_t cnt = (map != NULL && map->kind == PT_CONF_MAP) ? map->cnt : 0;
    for (size_t i = 0; i < cnt; i++) {
        const pt_conf_node_t *k = map->keys[i];
        size_t fi = 0;
        while (fi < nfields && strcmp(fields[fi].key, k->str) != 0)
            fi++;
        if (fi == nfields) {
            unknown_key(cx, k, fields);
            continue;
        }
        if (seen[fi] != NULL) { /* the parser drops duplicates; kept for hand-built trees */
            pt_conf_error(cx, k, "duplicate key '%s' (first defined at line %u)", k->str,
                          seen[fi]->line);
            continue;
        }
        seen[fi] = k;
        set_field(cx, &fields[fi], map->items[i], (char *)dst + fields[fi].offset);
    }
    for (size_t fi = 0; fi < nfields; fi++)
        if (fields[fi].required && seen[fi] == NULL)
            pt_conf_error(cx, map, "missing required key '%s'", fields[fi].key);
    if (seen != seen_buf)
        free(seen);
    return cx->err_cnt == before ? 0 : PT_ERR_INVALID;
}
