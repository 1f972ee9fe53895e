/*
 * httprule.c -- google.api.http: decoding HttpRule from MethodOptions bytes,
 * building and validating the route table, matching requests.
 *
 * Request/response transcoding for a matched binding is in httpbind.c.
 *
 * The HttpRule is read straight from the serialized MethodOptions that the
 * descriptor pool keeps per method: descriptor.proto's generated code does not
 * know the extension, and decoding three string fields and a recursion by hand
 * is smaller than carrying generated code for google/api/http.proto.
 */
#include "portico/transcoder/httprule.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "httprule_internal.h"

/* ------------------------------------------------------------------------ */
/* Wire reading                                                             */

int pt__wire_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= end)
            return -1;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return -1;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Skips one field value of wire type `wt` (tag already read). Groups nest up to 64. */
int pt__wire_skip(const uint8_t **pp, const uint8_t *end, unsigned wt, uint32_t number)
{
    const uint8_t *p = *pp;
    uint64_t v;
    switch (wt) {
    case 0:
        if (pt__wire_varint(&p, end, &v) != 0)
            return -1;
        break;
    case 1:
        if ((size_t)(end - p) < 8)
            return -1;
        p += 8;
        break;
    case 5:
        if ((size_t)(end - p) < 4)
            return -1;
        p += 4;
        break;
    case 2:
        if (pt__wire_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
            return -1;
        p += v;
        break;
    case 3: {
        /* a group: skip fields until the matching end-group, iteratively */
        uint32_t stack[64];
        int depth = 0;
        stack[depth++] = number;
        while (depth > 0) {
            uint64_t tag;
            if (pt__wire_varint(&p, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
                return -1;
            unsigned w = (unsigned)(tag & 7);
            uint32_t num = (uint32_t)(tag >> 3);
            if (w == 4) {
                if (stack[depth - 1] != num)
                    return -1;
                depth--;
            } else if (w == 3) {
                if (depth == 64)
                    return -1;
                stack[depth++] = num;
            } else if (pt__wire_skip(&p, end, w, num) != 0) {
                return -1;
            }
        }
        break;
    }
    default:
        return -1;
    }
    *pp = p;
    return 0;
}

/* Reads a tag; returns 0 and sets *num and *wt, or -1. */
int pt__wire_tag(const uint8_t **pp, const uint8_t *end, uint32_t *num, unsigned *wt)
{
    uint64_t tag;
    if (pt__wire_varint(pp, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    *num = (uint32_t)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    return 0;
}

/* Reads a length-delimited payload (tag already read, wire type 2). */
int pt__wire_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **data, size_t *len)
{
    uint64_t v;
    const uint8_t *p = *pp;
    if (pt__wire_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
        return -1;
    *data = p;
    *len = (size_t)v;
    *pp = p + v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* HttpRule decoding                                                        */

typedef struct decoder {
    pt_httprule_pattern_t *out;
    size_t cap, cnt;
    pt_xerr_t *err;
} decoder_t;

static const char *const std_methods[] = {NULL, NULL, "GET", "PUT", "POST", "DELETE", "PATCH"};

static int corrupt(decoder_t *d, const char *what)
{
    return pt_xerr_set(d->err, PT_XERR_CORRUPT, NULL, "google.api.http option: %s", what);
}

static int decode_custom(decoder_t *d, const uint8_t *p, const uint8_t *end,
                         pt_httprule_pattern_t *r)
{
    pt_httprule_str_t kind = {"", 0}, path = {"", 0};
    while (p < end) {
        uint32_t num;
        unsigned wt;
        if (pt__wire_tag(&p, end, &num, &wt) != 0)
            return corrupt(d, "malformed CustomHttpPattern");
        if ((num == 1 || num == 2) && wt == 2) {
            const uint8_t *s;
            size_t n;
            if (pt__wire_bytes(&p, end, &s, &n) != 0)
                return corrupt(d, "malformed CustomHttpPattern");
            pt_httprule_str_t *dst = num == 1 ? &kind : &path;
            dst->p = (const char *)s;
            dst->len = n;
        } else if (num == 1 || num == 2) {
            return corrupt(d, "wrong wire type in CustomHttpPattern");
        } else if (pt__wire_skip(&p, end, wt, num) != 0) {
            return corrupt(d, "malformed CustomHttpPattern");
        }
    }
    r->method = kind;
    r->path = path;
    return 0;
}

/* Decodes one HttpRule message into out[slot]; nested bindings are appended. */
static int decode_rule(decoder_t *d, const uint8_t *p, const uint8_t *end, size_t slot,
                       uint8_t level)
{
    while (p < end) {
        uint32_t num;
        unsigned wt;
        if (pt__wire_tag(&p, end, &num, &wt) != 0)
            return corrupt(d, "malformed HttpRule");
        bool known = (num >= 1 && num <= 8) || num == 11 || num == 12;
        if (!known) {
            if (pt__wire_skip(&p, end, wt, num) != 0)
                return corrupt(d, "malformed HttpRule");
            continue;
        }
        if (wt != 2)
            return corrupt(d, "wrong wire type in HttpRule");
        const uint8_t *s;
        size_t n;
        if (pt__wire_bytes(&p, end, &s, &n) != 0)
            return corrupt(d, "malformed HttpRule");
        pt_httprule_pattern_t *r = &d->out[slot];
        pt_httprule_str_t str = {(const char *)s, n};
        switch (num) {
        case 1: /* selector: meaningless in a method option */
            break;
        case 2:
        case 3:
        case 4:
        case 5:
        case 6:
            r->method.p = std_methods[num];
            r->method.len = strlen(std_methods[num]);
            r->path = str;
            break;
        case 7:
            r->body = str;
            break;
        case 8: {
            int rc = decode_custom(d, s, s + n, r);
            if (rc != 0)
                return rc;
            break;
        }
        case 12:
            r->response_body = str;
            break;
        case 11: {
            if (level + 1 > PT_HTTPRULE_MAX_NESTING)
                return pt_xerr_set(d->err, PT_XERR_LIMIT, NULL,
                                   "google.api.http option: additional_bindings nested deeper "
                                   "than %d levels",
                                   PT_HTTPRULE_MAX_NESTING);
            if (d->cnt == d->cap)
                return pt_xerr_set(d->err, PT_XERR_LIMIT, NULL,
                                   "google.api.http option: more than %zu bindings", d->cap);
            size_t child = d->cnt++;
            memset(&d->out[child], 0, sizeof(d->out[child]));
            d->out[child].level = (uint8_t)(level + 1);
            int rc = decode_rule(d, s, s + n, child, (uint8_t)(level + 1));
            if (rc != 0)
                return rc;
            break;
        }
        }
    }
    return 0;
}

int pt_httprule_decode(const uint8_t *opts, size_t len, pt_httprule_pattern_t *out, size_t cap,
                       size_t *cnt, pt_xerr_t *err)
{
    decoder_t d = {.out = out, .cap = cap, .cnt = 0, .err = err};
    if (opts == NULL || len == 0) {
        *cnt = 0;
        return 0;
    }
    const uint8_t *p = opts, *end = opts + len;
    bool have_top = false;
    while (p < end) {
        uint32_t num;
        unsigned wt;
        if (pt__wire_tag(&p, end, &num, &wt) != 0)
            return corrupt(&d, "malformed MethodOptions");
        if (num != PT_HTTPRULE_EXTENSION) {
            if (pt__wire_skip(&p, end, wt, num) != 0)
                return corrupt(&d, "malformed MethodOptions");
            continue;
        }
        if (wt != 2)
            return corrupt(&d, "wrong wire type for the http extension");
        const uint8_t *s;
        size_t n;
        if (pt__wire_bytes(&p, end, &s, &n) != 0)
            return corrupt(&d, "malformed MethodOptions");
        if (!have_top) {
            /* slot 0 is the rule itself; repeated occurrences merge into it */
            if (cap == 0)
                return pt_xerr_set(err, PT_XERR_LIMIT, NULL,
                                   "google.api.http option: no room for bindings");
            memset(&out[0], 0, sizeof(out[0]));
            d.cnt = 1;
            have_top = true;
        }
        int rc = decode_rule(&d, s, s + n, 0, 0);
        if (rc != 0)
            return rc;
    }
    /* drop rules without a pattern (e.g. a rule that only has additional bindings) */
    size_t k = 0;
    for (size_t i = 0; i < d.cnt; i++) {
        if (out[i].method.p == NULL)
            continue;
        if (out[i].body.p == NULL)
            out[i].body = (pt_httprule_str_t){"", 0};
        if (out[i].response_body.p == NULL)
            out[i].response_body = (pt_httprule_str_t){"", 0};
        if (out[i].path.p == NULL)
            out[i].path = (pt_httprule_str_t){"", 0};
        out[k++] = out[i];
    }
    *cnt = k;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Route table                                                              */

#define MAX_FIELD_DEPTH 16

/* Per-binding owned storage: strings and resolved variable chains. */
typedef struct bstore {
    pt_pathtmpl_t *tmpl;
    void *blob;
} bstore_t;

struct pt_httprule_table {
    const pt_allocator_t *a;
    pt_descpool_t *pool;
    pt_pathmatcher_t *matcher;
    pt_httpbinding_t *b;
    bstore_t *store;
    size_t cnt, cap;
};

static bool is_httpbody(const pt_msgdesc_t *m)
{
    return m != NULL && strcmp(m->full_name, "google.api.HttpBody") == 0;
}

bool pt__httprule_is_httpbody(const pt_msgdesc_t *m)
{
    return is_httpbody(m);
}

/* Message types a text value can be bound to (JSON string/number/bool forms). */
static bool text_bindable(const pt_fielddesc_t *f)
{
    if (f->type != PT_FT_MESSAGE && f->type != PT_FT_GROUP)
        return true;
    switch (f->message->wkt) {
    case PT_WKT_TIMESTAMP:
    case PT_WKT_DURATION:
    case PT_WKT_FIELDMASK:
    case PT_WKT_VALUE:
    case PT_WKT_DOUBLEVALUE:
    case PT_WKT_FLOATVALUE:
    case PT_WKT_INT64VALUE:
    case PT_WKT_UINT64VALUE:
    case PT_WKT_INT32VALUE:
    case PT_WKT_UINT32VALUE:
    case PT_WKT_BOOLVALUE:
    case PT_WKT_STRINGVALUE:
    case PT_WKT_BYTESVALUE:
        return true;
    default:
        return false;
    }
}

int pt__httprule_resolve(const pt_msgdesc_t *m, const char *path, size_t len,
                         const pt_fielddesc_t **chain, size_t cap, size_t *depth, const char **why)
{
    size_t d = 0, i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '.')
            j++;
        if (j == i) {
            *why = "empty field name";
            return -1;
        }
        if (m == NULL) {
            *why = "not a message field";
            return -1;
        }
        if (d == cap) {
            *why = "field path too deep";
            return -1;
        }
        const pt_fielddesc_t *f = pt_msgdesc_field_by_name(m, path + i, j - i);
        if (f == NULL) {
            *why = "unknown field";
            *depth = d;
            return -2;
        }
        chain[d++] = f;
        if (j < len) {
            if (f->label == PT_LABEL_REPEATED) {
                *why = "a repeated field or map cannot be traversed";
                return -1;
            }
            if (f->type != PT_FT_MESSAGE && f->type != PT_FT_GROUP) {
                *why = "not a message field";
                return -1;
            }
            m = f->message;
        }
        i = j + 1;
    }
    *depth = d;
    return 0;
}

/* Adds a table-build problem (path = method or service name) to errs; returns code. */
__attribute__((format(printf, 5, 6))) static int terr(pt_xerrs_t *errs, int *first, int code,
                                                      const char *where, const char *fmt, ...)
{
    char msg[PT_XERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (*first == 0)
        *first = code;
    pt_xerrs_add(errs, code, where, "%s", msg);
    return code;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void table_free_parts(pt_httprule_table_t *t)
{
    const pt_allocator_t *a = t->a;
    pt_pathmatcher_free(t->matcher);
    t->matcher = NULL;
    for (size_t i = 0; i < t->cnt; i++) {
        pt_pathtmpl_free(t->store[i].tmpl);
        a->free(a->ud, t->store[i].blob);
    }
    a->free(a->ud, t->b);
    a->free(a->ud, t->store);
    t->b = NULL;
    t->store = NULL;
    t->cnt = t->cap = 0;
}

static int grow(pt_httprule_table_t *t)
{
    if (t->cnt < t->cap)
        return 0;
    const pt_allocator_t *a = t->a;
    size_t cap = t->cap ? 2 * t->cap : 16;
    pt_httpbinding_t *b = a->realloc(a->ud, t->b, cap * sizeof(*b));
    if (b == NULL)
        return PT_XERR_NOMEM;
    t->b = b;
    bstore_t *s = a->realloc(a->ud, t->store, cap * sizeof(*s));
    if (s == NULL)
        return PT_XERR_NOMEM;
    t->store = s;
    t->cap = cap;
    return 0;
}

static char *blob_str(char **bp, const char *s, size_t n)
{
    char *r = *bp;
    if (n != 0)
        memcpy(r, s, n);
    r[n] = '\0';
    *bp += n + 1;
    return r;
}

/* Compiles and validates one pattern of method `md`; appends a binding on success. */
static int add_binding(pt_httprule_table_t *t, const pt_methoddesc_t *md,
                       const pt_httprule_pattern_t *pat, bool is_default, pt_xerrs_t *errs,
                       int *first)
{
    const pt_allocator_t *a = t->a;
    const char *where = md->full_name;
    char what[160];
    snprintf(what, sizeof(what), "%.*s %.*s", (int)(pat->method.len > 16 ? 16 : pat->method.len),
             pat->method.p, (int)(pat->path.len > 120 ? 120 : pat->path.len), pat->path.p);
    if (pat->method.len == 0)
        return terr(errs, first, PT_XERR_INVALID, where, "%s: empty custom HTTP method", what);
    for (size_t i = 0; i < pat->method.len; i++)
        if (!is_tchar((unsigned char)pat->method.p[i]))
            return terr(errs, first, PT_XERR_INVALID, where, "%s: invalid HTTP method", what);
    pt_xerr_t perr;
    pt_pathtmpl_t *tmpl = NULL;
    int rc = pt_pathtmpl_parse(a, pat->path.p, pat->path.len, &tmpl, &perr);
    if (rc != 0)
        return terr(errs, first, rc, where, "%s: %s", what, perr.msg);

    /* one blob: method, body, response_body strings + var chains + depths */
    size_t nv = pt_pathtmpl_var_cnt(tmpl);
    size_t ptrs = nv * MAX_FIELD_DEPTH;
    size_t sz = ptrs * sizeof(const pt_fielddesc_t *) + nv + pat->method.len + pat->body.len +
                pat->response_body.len + 3;
    void *blob = a->alloc(a->ud, sz);
    if (blob == NULL) {
        pt_pathtmpl_free(tmpl);
        return terr(errs, first, PT_XERR_NOMEM, where, "out of memory");
    }
    const pt_fielddesc_t **chains = blob;
    uint8_t *depths = (uint8_t *)(chains + ptrs);
    char *sp = (char *)(depths + nv);
    pt_httpbinding_t b = {0};
    b.method = md;
    b.http_method = blob_str(&sp, pat->method.p, pat->method.len);
    b.tmpl = tmpl;
    b.path = pt_pathtmpl_text(tmpl);
    b.body = blob_str(&sp, pat->body.p, pat->body.len);
    b.response_body = blob_str(&sp, pat->response_body.p, pat->response_body.len);
    b.is_default = is_default;
    b.level = pat->level;
    b._var_fields = chains;
    b._var_depth = depths;

    int bad = 0;
    for (size_t v = 0; v < nv; v++) {
        const pt_pathtmpl_var_t *tv = pt_pathtmpl_var(tmpl, v);
        size_t depth = 0;
        const char *why = NULL;
        const pt_fielddesc_t **chain = chains + v * MAX_FIELD_DEPTH;
        int r = pt__httprule_resolve(md->input, tv->field_path, tv->field_path_len, chain,
                                     MAX_FIELD_DEPTH, &depth, &why);
        if (r == 0) {
            const pt_fielddesc_t *leaf = chain[depth - 1];
            if (leaf->label == PT_LABEL_REPEATED)
                why = "a path variable cannot bind a repeated field or map", r = -1;
            else if (!text_bindable(leaf))
                why = "a path variable cannot bind this message type", r = -1;
        }
        if (r != 0) {
            terr(errs, first, PT_XERR_INVALID, where, "%s: path variable {%s}: %s", what,
                 tv->field_path, why);
            bad = 1;
        }
        depths[v] = (uint8_t)depth;
    }
    if (pat->body.len == 0) {
        b.body_kind = PT_HTTPBODY_NONE;
    } else if (pat->body.len == 1 && pat->body.p[0] == '*') {
        b.body_kind = PT_HTTPBODY_ALL;
        b.request_is_httpbody = is_httpbody(md->input);
    } else {
        b.body_kind = PT_HTTPBODY_FIELD;
        b.body_field = pt_msgdesc_field_by_name(md->input, pat->body.p, pat->body.len);
        if (b.body_field == NULL) {
            terr(errs, first, PT_XERR_INVALID, where, "%s: body field \"%s\" is not a field of %s",
                 what, b.body, md->input->full_name);
            bad = 1;
        } else {
            b.request_is_httpbody = b.body_field->label != PT_LABEL_REPEATED &&
                                    b.body_field->type == PT_FT_MESSAGE &&
                                    is_httpbody(b.body_field->message);
        }
    }
    if (pat->response_body.len == 0) {
        b.response_is_httpbody = is_httpbody(md->output);
    } else {
        b.response_field =
            pt_msgdesc_field_by_name(md->output, pat->response_body.p, pat->response_body.len);
        if (b.response_field == NULL) {
            terr(errs, first, PT_XERR_INVALID, where,
                 "%s: response_body \"%s\" is not a field of %s", what, b.response_body,
                 md->output->full_name);
            bad = 1;
        } else {
            b.response_is_httpbody = b.response_field->label != PT_LABEL_REPEATED &&
                                     b.response_field->type == PT_FT_MESSAGE &&
                                     is_httpbody(b.response_field->message);
        }
    }
    if (bad || (rc = grow(t)) != 0) {
        pt_pathtmpl_free(tmpl);
        a->free(a->ud, blob);
        if (rc != 0)
            return terr(errs, first, rc, where, "out of memory");
        return PT_XERR_INVALID;
    }
    t->b[t->cnt] = b;
    t->store[t->cnt] = (bstore_t){.tmpl = tmpl, .blob = blob};
    t->cnt++;
    return 0;
}

static bool service_selected(const pt_httprule_opts_t *o, const pt_svcdesc_t *s)
{
    if (o->services == NULL)
        return true;
    for (size_t i = 0; i < o->service_cnt; i++)
        if (strcmp(o->services[i], s->full_name) == 0)
            return true;
    return false;
}

int pt_httprule_table_new(const pt_descpool_t *pool, const pt_httprule_opts_t *opts,
                          pt_httprule_table_t **out, pt_xerrs_t *errs)
{
    pt_httprule_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    const pt_allocator_t *a = pt_descpool_allocator(pool);
    int first = 0;
    pt_httprule_table_t *t = a->alloc(a->ud, sizeof(*t));
    if (t == NULL)
        return pt_xerrs_add(errs, PT_XERR_NOMEM, NULL, "out of memory");
    memset(t, 0, sizeof(*t));
    t->a = a;
    t->pool = (pt_descpool_t *)pool;

    if (opts->services != NULL) {
        for (size_t i = 0; i < opts->service_cnt; i++) {
            const char *n = opts->services[i];
            if (pt_descpool_service(pool, n, strlen(n)) == NULL)
                terr(errs, &first, PT_XERR_NOT_FOUND, n, "service %s is not in the descriptor pool",
                     n);
        }
    }

    pt_httprule_pattern_t pats[PT_HTTPRULE_MAX_BINDINGS];
    char defpath[1024];
    for (size_t si = 0; si < pt_descpool_service_cnt(pool); si++) {
        const pt_svcdesc_t *s = pt_descpool_service_at(pool, si);
        if (!service_selected(opts, s))
            continue;
        for (size_t mi = 0; mi < s->method_cnt; mi++) {
            const pt_methoddesc_t *md = &s->methods[mi];
            size_t n = 0;
            pt_xerr_t derr;
            int rc = pt_httprule_decode(md->options, md->options_len, pats,
                                        PT_HTTPRULE_MAX_BINDINGS, &n, &derr);
            if (rc != 0) {
                terr(errs, &first, rc, md->full_name, "%s", derr.msg);
                continue;
            }
            bool is_default = false;
            if (n == 0 && opts->add_default_bindings) {
                int k = snprintf(defpath, sizeof(defpath), "/%s/%s", s->full_name, md->name);
                if (k < 0 || (size_t)k >= sizeof(defpath)) {
                    terr(errs, &first, PT_XERR_LIMIT, md->full_name, "method name too long");
                    continue;
                }
                pats[0] = (pt_httprule_pattern_t){.method = {"POST", 4},
                                                  .path = {defpath, (size_t)k},
                                                  .body = {"*", 1},
                                                  .response_body = {"", 0}};
                n = 1;
                is_default = true;
            }
            for (size_t k = 0; k < n; k++)
                if (add_binding(t, md, &pats[k], is_default, errs, &first) == PT_XERR_NOMEM)
                    goto fail;
        }
    }
    if (first != 0)
        goto fail;

    /* the bindings array is final: now its addresses can be handed to the matcher */
    int rc = pt_pathmatcher_new(a, &t->matcher);
    if (rc != 0) {
        terr(errs, &first, rc, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < t->cnt; i++) {
        pt_xerr_t merr;
        rc = pt_pathmatcher_add(t->matcher, t->b[i].http_method, t->b[i].tmpl, &t->b[i], &merr);
        if (rc != 0) {
            terr(errs, &first, rc, t->b[i].method->full_name, "%s", merr.msg);
            if (rc == PT_XERR_NOMEM)
                goto fail;
        }
    }
    if (first != 0)
        goto fail;
    pt_descpool_ref(t->pool);
    *out = t;
    return 0;
fail:
    table_free_parts(t);
    a->free(a->ud, t);
    return first != 0 ? first : PT_XERR_NOMEM;
}

void pt_httprule_table_free(pt_httprule_table_t *t)
{
    if (t == NULL)
        return;
    const pt_allocator_t *a = t->a;
    pt_descpool_t *pool = t->pool;
    table_free_parts(t);
    a->free(a->ud, t);
    pt_descpool_unref(pool);
}

const pt_descpool_t *pt_httprule_table_pool(const pt_httprule_table_t *t)
{
    return t->pool;
}

const pt_allocator_t *pt__httprule_table_allocator(const pt_httprule_table_t *t)
{
    return t->a;
}

size_t pt_httprule_table_binding_cnt(const pt_httprule_table_t *t)
{
    return t->cnt;
}

const pt_httpbinding_t *pt_httprule_table_binding(const pt_httprule_table_t *t, size_t i)
{
    return i < t->cnt ? &t->b[i] : NULL;
}

pt_pathmatch_status_t pt_httprule_match(const pt_httprule_table_t *t, const char *method,
                                        size_t method_len, const char *target, size_t target_len,
                                        const pt_pathmatch_opts_t *opts, char *scratch,
                                        size_t scratch_len, pt_httprule_match_t *m)
{
    m->binding = NULL;
    pt_pathmatch_status_t st = pt_pathmatcher_match(
        t->matcher, method, method_len, target, target_len, opts, scratch, scratch_len, &m->path);
    if (st == PT_PATHMATCH_OK)
        m->binding = m->path.route;
    return st;
}
