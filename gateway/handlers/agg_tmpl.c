/*
 * agg_tmpl.c -- value templates of the `aggregate` handler (see agg_tmpl.h).
 *
 * Parsing happens at config load (and in the fuzzer); rendering once per call
 * per request, so it walks the parsed segments and never re-scans text.
 */
#include "handlers/agg_tmpl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/xalloc.h"

/* ---- parsing ---------------------------------------------------------------------- */

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* Header name characters (RFC 9110 tchar). */
static bool tchar(char c)
{
    return isalnum((unsigned char)c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char *dup_n(const char *s, size_t n)
{
    char *d = pt_xcheck(malloc(n + 1));
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void ref_dispose(pt_agg_ref_t *r)
{
    for (size_t i = 0; i < r->step_cnt; i++)
        free((char *)r->steps[i].name);
    free(r->steps);
    free(r->head);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

/*
 * Parses the inside of one reference, s[0..len) (braces excluded, blanks
 * trimmed by the caller). Returns 0 or -1 with `why` and the offset within s.
 */
static int parse_ref(const char *s, size_t len, pt_agg_ref_t *r, const char **why, size_t *at)
{
    size_t i = 0;
    while (i < len && name_char(s[i]))
        i++;
    if (i == 0) {
        *why = len == 0 ? "empty reference" : "a reference starts with a name";
        *at = 0;
        return -1;
    }
    r->call = -1;
    r->head = dup_n(s, i);
    r->head_len = i;
    if (i == 6 && memcmp(s, "header", 6) == 0 && i < len) {
        if (s[i] != '.') {
            *why = "expected `.NAME` after `header`";
            *at = i;
            return -1;
        }
        size_t j = i + 1;
        while (j < len && tchar(s[j]))
            j++;
        if (j == i + 1 || j != len) {
            *why = "`header.` takes a header name";
            *at = j;
            return -1;
        }
        free(r->head);
        r->head = dup_n(s + i + 1, j - i - 1);
        r->head_len = j - i - 1;
        for (size_t k = 0; k < r->head_len; k++)
            r->head[k] = (char)tolower((unsigned char)r->head[k]);
        r->kind = PT_AGG_REF_HEADER;
        return 0;
    }
    bool is_body = i == 4 && memcmp(s, "body", 4) == 0;
    r->kind = is_body ? PT_AGG_REF_BODY : i == len ? PT_AGG_REF_NAME : PT_AGG_REF_PATH;
    while (i < len) {
        if (r->step_cnt == PT_AGG_MAX_STEPS) {
            *why = "too many steps in a reference (at most 32)";
            *at = i;
            return -1;
        }
        if (r->steps == NULL)
            r->steps = pt_xcalloc(PT_AGG_MAX_STEPS, sizeof(*r->steps));
        pt_agg_step_t *st = &r->steps[r->step_cnt];
        if (s[i] == '.') {
            size_t j = i + 1;
            while (j < len && name_char(s[j]))
                j++;
            if (j == i + 1) {
                *why = "expected a field name after `.`";
                *at = j;
                return -1;
            }
            st->name = dup_n(s + i + 1, j - i - 1);
            st->len = j - i - 1;
            r->step_cnt++;
            i = j;
        } else if (s[i] == '[') {
            size_t j = i + 1;
            long v = 0;
            while (j < len && isdigit((unsigned char)s[j]) && v <= PT_AGG_MAX_INDEX) {
                v = v * 10 + (s[j] - '0');
                j++;
            }
            if (j == i + 1 || j >= len || s[j] != ']' || v > PT_AGG_MAX_INDEX) {
                *why = "expected `[N]` with N a number up to 1000000";
                *at = i;
                return -1;
            }
            st->name = NULL;
            st->index = v;
            r->step_cnt++;
            i = j + 1;
        } else {
            *why = "unexpected character in a reference (use `.field` or `[N]`)";
            *at = i;
            return -1;
        }
    }
    return 0;
}

static void add_seg(pt_agg_tmpl_t *t, size_t *cap, pt_agg_seg_t seg)
{
    if (t->seg_cnt == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        t->segs = pt_xrealloc(t->segs, *cap * sizeof(*t->segs));
    }
    t->segs[t->seg_cnt++] = seg;
}

int pt_agg_tmpl_parse(const char *s, size_t len, pt_agg_tmpl_t *out, char *err, size_t errlen,
                      size_t *err_off)
{
    memset(out, 0, sizeof(*out));
    size_t seg_cap = 0;
    char *lit = pt_xcheck(malloc(len + 1));
    size_t lit_len = 0;
    const char *why = NULL;
    size_t at = 0;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if ((c == '{' || c == '}') && i + 1 < len && s[i + 1] == c) {
            lit[lit_len++] = c;
            i += 2;
            continue;
        }
        if (c == '}') {
            why = "unmatched `}` (write `}}` for a literal brace)";
            at = i;
            goto fail;
        }
        if (c != '{') {
            if (c == '\0') {
                why = "NUL byte in a template";
                at = i;
                goto fail;
            }
            lit[lit_len++] = c;
            i++;
            continue;
        }
        const char *close = memchr(s + i + 1, '}', len - i - 1);
        if (close == NULL) {
            why = "unclosed `{` (write `{{` for a literal brace)";
            at = i;
            goto fail;
        }
        size_t a = i + 1, b = (size_t)(close - s);
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (memchr(s + i + 1, '{', (size_t)(close - s) - i - 1) != NULL) {
            why = "`{` inside a reference";
            at = i;
            goto fail;
        }
        if (out->ref_cnt == PT_AGG_MAX_REFS) {
            why = "too many references in one template (at most 64)";
            at = i;
            goto fail;
        }
        if (lit_len != 0) {
            add_seg(out, &seg_cap, (pt_agg_seg_t){dup_n(lit, lit_len), lit_len, 0});
            lit_len = 0;
        }
        if (out->refs == NULL)
            out->refs = pt_xcalloc(PT_AGG_MAX_REFS, sizeof(*out->refs));
        pt_agg_ref_t *r = &out->refs[out->ref_cnt];
        r->offset = i;
        r->call = -1;
        size_t rat = 0;
        if (parse_ref(s + a, b - a, r, &why, &rat) != 0) {
            ref_dispose(r);
            at = a + rat;
            goto fail;
        }
        r->text = dup_n(s + a, b - a);
        add_seg(out, &seg_cap, (pt_agg_seg_t){NULL, 0, out->ref_cnt});
        out->ref_cnt++;
        i = (size_t)(close - s) + 1;
    }
    if (lit_len != 0)
        add_seg(out, &seg_cap, (pt_agg_seg_t){dup_n(lit, lit_len), lit_len, 0});
    free(lit);
    out->whole_ref = out->seg_cnt == 1 && out->ref_cnt == 1;
    return 0;
fail:
    free(lit);
    pt_agg_tmpl_dispose(out);
    if (err != NULL && errlen != 0)
        snprintf(err, errlen, "%s", why);
    if (err_off != NULL)
        *err_off = at;
    return -1;
}

void pt_agg_tmpl_dispose(pt_agg_tmpl_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->seg_cnt; i++)
        free(t->segs[i].lit);
    for (size_t i = 0; i < t->ref_cnt; i++)
        ref_dispose(&t->refs[i]);
    free(t->segs);
    free(t->refs);
    memset(t, 0, sizeof(*t));
}

/* ---- walking and rendering ----------------------------------------------------------- */

struct json_object *pt_agg_json_walk(struct json_object *root, const pt_agg_step_t *steps,
                                     size_t cnt, bool *found)
{
    struct json_object *cur = root;
    for (size_t i = 0; i < cnt; i++) {
        const pt_agg_step_t *st = &steps[i];
        if (st->name != NULL) {
            struct json_object *next = NULL;
            if (!json_object_is_type(cur, json_type_object) ||
                !json_object_object_get_ex(cur, st->name, &next)) {
                *found = false;
                return NULL;
            }
            cur = next;
        } else {
            if (!json_object_is_type(cur, json_type_array) ||
                (size_t)st->index >= json_object_array_length(cur)) {
                *found = false;
                return NULL;
            }
            cur = json_object_array_get_idx(cur, (size_t)st->index);
        }
    }
    *found = true;
    return cur;
}

/* Output being rendered: bytes past cap are an overflow (an error). */
typedef struct rout {
    char *buf;
    size_t cap, len;
    bool over;
} rout_t;

static void rput(rout_t *o, const char *s, size_t n)
{
    if (o->over || o->len + n + 1 > o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static bool unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends value text with the encoding; false when refused (a control in a header). */
static bool put_enc(rout_t *o, const char *s, size_t n, pt_agg_enc_t enc)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (enc == PT_AGG_ENC_URL) {
            if (unreserved(c)) {
                rput(o, (const char *)&c, 1);
            } else {
                char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                rput(o, e, 3);
            }
        } else {
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return false;
            rput(o, (const char *)&c, 1);
        }
    }
    return true;
}

/* The text of a scalar value, or false (null, object, array, missing). */
static bool value_text(const pt_agg_val_t *v, pt_str_t *out)
{
    if (!v->found)
        return false;
    if (!v->is_json) {
        *out = v->str;
        return true;
    }
    switch (json_object_get_type(v->j)) {
    case json_type_string:
        *out = (pt_str_t){json_object_get_string(v->j), (size_t)json_object_get_string_len(v->j)};
        return true;
    case json_type_int:
    case json_type_double:
    case json_type_boolean:
        *out = pt_str_c(json_object_to_json_string_ext(v->j, JSON_C_TO_STRING_PLAIN));
        return true;
    default:
        return false;
    }
}

static const char *missing_why(const pt_agg_val_t *v)
{
    if (!v->found)
        return "no such value";
    return v->j == NULL ? "value is null" : "value is an object or array, not text";
}

long pt_agg_tmpl_render(const pt_agg_tmpl_t *t, pt_agg_enc_t enc, pt_agg_lookup_cb lookup, void *ud,
                        char *buf, size_t cap, pt_agg_rerr_t *e)
{
    rout_t o = {buf, cap, 0, cap == 0};
    for (size_t i = 0; i < t->seg_cnt; i++) {
        const pt_agg_seg_t *s = &t->segs[i];
        if (s->lit != NULL) {
            rput(&o, s->lit, s->lit_len);
            continue;
        }
        const pt_agg_ref_t *r = &t->refs[s->ref];
        pt_agg_val_t v = lookup(ud, r);
        pt_str_t txt;
        if (!value_text(&v, &txt)) {
            e->ref = r;
            e->why = missing_why(&v);
            return -1;
        }
        if (!put_enc(&o, txt.base, txt.len, enc)) {
            e->ref = r;
            e->why = "value has a control character";
            return -1;
        }
    }
    if (o.over) {
        e->ref = NULL;
        e->why = "rendered text too long";
        return -1;
    }
    buf[o.len] = '\0';
    return (long)o.len;
}

struct json_object *pt_agg_tmpl_json(const pt_agg_tmpl_t *t, pt_agg_lookup_cb lookup, void *ud,
                                     pt_agg_rerr_t *e)
{
    if (t->whole_ref) {
        const pt_agg_ref_t *r = &t->refs[0];
        pt_agg_val_t v = lookup(ud, r);
        if (!v.found) {
            e->ref = r;
            e->why = "no such value";
            return NULL;
        }
        if (!v.is_json)
            return json_object_new_string_len(v.str.base, (int)v.str.len);
        if (v.j == NULL)
            return json_object_new_null();
        struct json_object *copy = NULL;
        if (json_object_deep_copy(v.j, &copy, NULL) != 0) {
            e->ref = r;
            e->why = "cannot copy the value";
            return NULL;
        }
        return copy;
    }
    size_t cap = 256;
    for (;;) {
        char *buf = pt_xcheck(malloc(cap));
        long n = pt_agg_tmpl_render(t, PT_AGG_ENC_HEADER, lookup, ud, buf, cap, e);
        if (n >= 0) {
            struct json_object *s = json_object_new_string_len(buf, (int)n);
            free(buf);
            return s;
        }
        free(buf);
        if (e->ref != NULL || cap >= (64u << 20))
            return NULL;
        cap *= 4;
    }
}

struct json_object *pt_agg_jtmpl_render(const pt_agg_jtmpl_t *j, pt_agg_lookup_cb lookup, void *ud,
                                        pt_agg_rerr_t *e)
{
    switch (j->kind) {
    case PT_AGG_J_LITERAL: {
        /* A copy, never a reference: the literal belongs to the config that
         * every worker renders from, and json-c counts references without
         * atomics (Debian's build: a plain add), so two workers taking and
         * dropping references at once could lose one -- the literal freed
         * under the config (a call through a freed object's serializer) or
         * never freed. */
        struct json_object *copy = NULL;
        if (j->lit != NULL && json_object_deep_copy(j->lit, &copy, NULL) != 0) {
            e->why = "cannot copy the value";
            return NULL;
        }
        return copy;
    }
    case PT_AGG_J_TEMPLATE:
        return pt_agg_tmpl_json(&j->tmpl, lookup, ud, e);
    case PT_AGG_J_OBJECT: {
        struct json_object *o = json_object_new_object();
        for (size_t i = 0; i < j->cnt; i++) {
            struct json_object *v = pt_agg_jtmpl_render(j->items[i], lookup, ud, e);
            if (v == NULL && e->why != NULL) {
                json_object_put(o);
                return NULL;
            }
            json_object_object_add(o, j->keys[i], v);
        }
        return o;
    }
    case PT_AGG_J_ARRAY: {
        struct json_object *a = json_object_new_array_ext((int)j->cnt);
        for (size_t i = 0; i < j->cnt; i++) {
            struct json_object *v = pt_agg_jtmpl_render(j->items[i], lookup, ud, e);
            if (v == NULL && e->why != NULL) {
                json_object_put(a);
                return NULL;
            }
            json_object_array_add(a, v);
        }
        return a;
    }
    }
    return NULL;
}

void pt_agg_jtmpl_each(pt_agg_jtmpl_t *j, void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node),
                       void *ud)
{
    if (j == NULL)
        return;
    if (j->kind == PT_AGG_J_TEMPLATE)
        fn(ud, &j->tmpl, j->node);
    for (size_t i = 0; i < j->cnt; i++)
        pt_agg_jtmpl_each(j->items[i], fn, ud);
}

void pt_agg_jtmpl_free(pt_agg_jtmpl_t *j)
{
    if (j == NULL)
        return;
    json_object_put(j->lit);
    pt_agg_tmpl_dispose(&j->tmpl);
    for (size_t i = 0; i < j->cnt; i++) {
        if (j->keys != NULL)
            free(j->keys[i]);
        pt_agg_jtmpl_free(j->items[i]);
    }
    free(j->keys);
    free(j->items);
    free(j);
}
