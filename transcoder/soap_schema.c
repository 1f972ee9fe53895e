/*
 * soap_schema.c -- JSON Schemas of a WSDL port's operations (soap_schema.h),
 * read from the loaded XSD model (soap_internal.h) by the same mapping the
 * request builder and the answer converter use.
 */
#include <stdio.h>
#include <string.h>

#include "portico/transcoder/soap_schema.h"
#include "soap_internal.h"

/* Complex types met so far: each gets one entry under "types". */
typedef struct ctname {
    const pt_xct_t *ct;
    char *name;
} ctname_t;

typedef struct sw {
    pt_xbuf_t *out;
    const char *ref_prefix;
    ctname_t *tab;
    size_t cnt, cap;
    int rc;
} sw_t;

static void put(sw_t *w, const char *s)
{
    if (w->rc == 0)
        w->rc = pt_xbuf_puts(w->out, s);
}

static void put_str(sw_t *w, const char *s)
{
    if (w->rc == 0)
        w->rc = pt__put_json_str(w->out, s, strlen(s));
}

static void put_num(sw_t *w, double v)
{
    char b[64];
    snprintf(b, sizeof(b), "%.17g", v);
    put(w, b);
}

/* An integer bound, written only when a double holds it exactly (|v| <= 2^53). */
static void put_bound(sw_t *w, const char *key, __int128 v)
{
    const __int128 lim = (__int128)1 << 53;
    if (v > lim || v < -lim)
        return;
    char b[64];
    snprintf(b, sizeof(b), ",\"%s\":%lld", key, (long long)v);
    put(w, b);
}

/* [A-Za-z0-9._-] only: a valid OpenAPI component key. */
static void sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            *s = '_';
    }
}

/* The name of `ct` under "types", registered on first sight; NULL when out of memory. */
static const char *ct_name(sw_t *w, const pt_xct_t *ct, const char *elem_name)
{
    for (size_t i = 0; i < w->cnt; i++)
        if (w->tab[i].ct == ct)
            return w->tab[i].name;
    if (w->cnt == w->cap) {
        size_t ncap = w->cap != 0 ? w->cap * 2 : 16;
        ctname_t *n = pt_xalloc(w->out->a, ncap * sizeof(*n));
        if (n == NULL) {
            w->rc = PT_XERR_NOMEM;
            return NULL;
        }
        if (w->cnt != 0)
            memcpy(n, w->tab, w->cnt * sizeof(*n));
        pt_xfree(w->out->a, w->tab);
        w->tab = n;
        w->cap = ncap;
    }
    const char *base = ct->name != NULL && strcmp(ct->name, "(anonymous)") != 0 ? ct->name
                       : elem_name != NULL && elem_name[0] != '\0'           ? elem_name
                                                                             : "Type";
    size_t bl = strlen(base);
    char *name = pt_xalloc(w->out->a, bl + 24);
    if (name == NULL) {
        w->rc = PT_XERR_NOMEM;
        return NULL;
    }
    memcpy(name, base, bl + 1);
    sanitize(name);
    for (unsigned k = 2;; k++) {
        bool taken = false;
        for (size_t i = 0; i < w->cnt && !taken; i++)
            taken = strcmp(w->tab[i].name, name) == 0;
        if (!taken)
            break;
        snprintf(name + bl, 24, "_%u", k);
    }
    w->tab[w->cnt].ct = ct;
    w->tab[w->cnt].name = name;
    w->cnt++;
    return name;
}

static void simple_schema(sw_t *w, const pt_xst_t *st)
{
    switch (st->prim) {
    case PT_XSP_BOOLEAN:
        put(w, "{\"type\":\"boolean\"");
        break;
    case PT_XSP_DECIMAL:
        put(w, "{\"type\":\"string\",\"format\":\"decimal\",\"pattern\":\"^[+-]?([0-9]+(\\\\.[0-9]*)?"
               "|\\\\.[0-9]+)$\",\"description\":\"xs:decimal: a string of the value as sent, so no "
               "precision is lost (requests may give a JSON number)\"");
        break;
    case PT_XSP_FLOAT:
        put(w, "{\"type\":\"number\",\"format\":\"float\"");
        break;
    case PT_XSP_DOUBLE:
        put(w, "{\"type\":\"number\",\"format\":\"double\"");
        break;
    case PT_XSP_INTEGER:
        if (st->int_small) {
            put(w, "{\"type\":\"integer\"");
        } else {
            put(w, "{\"type\":[\"integer\",\"string\"],\"pattern\":\"^[+-]?[0-9]+$\",\"description\":"
                   "\"a JSON number when |value| <= 2^53, else a string of the digits\"");
        }
        if (st->has_imin)
            put_bound(w, "minimum", st->imin);
        if (st->has_imax)
            put_bound(w, "maximum", st->imax);
        break;
    case PT_XSP_DATETIME:
        put(w, "{\"type\":\"string\",\"format\":\"date-time\"");
        break;
    case PT_XSP_DATE:
        put(w, "{\"type\":\"string\",\"format\":\"date\"");
        break;
    case PT_XSP_TIME:
        put(w, "{\"type\":\"string\",\"format\":\"time\"");
        break;
    case PT_XSP_DURATION:
        put(w, "{\"type\":\"string\",\"format\":\"duration\"");
        break;
    case PT_XSP_BASE64:
        put(w, "{\"type\":\"string\",\"contentEncoding\":\"base64\"");
        break;
    case PT_XSP_HEX:
        put(w, "{\"type\":\"string\",\"contentEncoding\":\"base16\"");
        break;
    case PT_XSP_ANYSIMPLE:
        put(w, "{\"type\":[\"string\",\"number\",\"boolean\"]");
        break;
    case PT_XSP_STRING:
    case PT_XSP_GREG:
    default:
        put(w, "{\"type\":\"string\"");
        break;
    }
    if (st->enum_cnt > 0) {
        put(w, ",\"enum\":[");
        for (size_t i = 0; i < st->enum_cnt; i++) {
            if (i > 0)
                put(w, ",");
            put_str(w, st->enums[i]);
        }
        put(w, "]");
    }
    if (st->prim == PT_XSP_STRING || st->prim == PT_XSP_BASE64 || st->prim == PT_XSP_HEX) {
        char b[64];
        if (st->has_len) {
            snprintf(b, sizeof(b), ",\"minLength\":%zu,\"maxLength\":%zu", st->len, st->len);
            put(w, b);
        }
        if (st->has_minlen) {
            snprintf(b, sizeof(b), ",\"minLength\":%zu", st->minlen);
            put(w, b);
        }
        if (st->has_maxlen) {
            snprintf(b, sizeof(b), ",\"maxLength\":%zu", st->maxlen);
            put(w, b);
        }
    }
    if ((st->prim == PT_XSP_FLOAT || st->prim == PT_XSP_DOUBLE ||
         (st->prim == PT_XSP_INTEGER && st->int_small))) {
        if (st->has_min) {
            put(w, st->min_excl ? ",\"exclusiveMinimum\":" : ",\"minimum\":");
            put_num(w, st->min);
        }
        if (st->has_max) {
            put(w, st->max_excl ? ",\"exclusiveMaximum\":" : ",\"maximum\":");
            put_num(w, st->max);
        }
    }
    put(w, ",\"x-xsd-type\":");
    put_str(w, st->name != NULL ? st->name : "(anonymous)");
    put(w, "}");
}

static void ref(sw_t *w, const pt_xct_t *ct, const char *elem_name)
{
    const char *n = ct_name(w, ct, elem_name);
    if (n == NULL)
        return;
    put(w, "{\"$ref\":");
    if (w->rc == 0) {
        size_t a = strlen(w->ref_prefix), b = strlen(n);
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s%.*s", (int)(a < 512 ? a : 512), w->ref_prefix,
                 (int)(b < 500 ? b : 500), n);
        put_str(w, buf);
    }
    put(w, "}");
}

static void elem_schema(sw_t *w, const pt_xelem_t *e, bool repeated)
{
    if (repeated)
        put(w, "{\"type\":\"array\",\"items\":");
    if (e->nillable)
        put(w, "{\"anyOf\":[");
    if (e->st != NULL)
        simple_schema(w, e->st);
    else if (e->ct != NULL)
        ref(w, e->ct, e->name);
    else
        put(w, "{\"description\":\"xs:anyType: any JSON\"}");
    if (e->nillable)
        put(w, ",{\"type\":\"null\"}]}");
    if (repeated)
        put(w, "}");
}

/* Elements every valid instance carries: a sequence/all path of min >= 1, no choice. */
static void collect_required(const pt_xpart_t *p, const pt_xelem_t **req, size_t cap, size_t *n)
{
    if (p == NULL || p->min == 0)
        return;
    if (p->kind == PT_PART_ELEM) {
        if (*n < cap)
            req[(*n)++] = p->elem;
        return;
    }
    if (p->kind == PT_PART_CHOICE) {
        /* one branch: required only when the choice has a single one */
        if (p->kids != NULL && p->kids->next == NULL)
            collect_required(p->kids, req, cap, n);
        return;
    }
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        collect_required(k, req, cap, n);
}

#define MAX_REQUIRED 256

static void ct_schema(sw_t *w, const pt_xct_t *ct)
{
    put(w, "{\"type\":\"object\",\"properties\":{");
    bool comma = false;
    for (size_t i = 0; i < ct->attr_cnt; i++) {
        const pt_xattr_t *a = &ct->attrs[i];
        char key[300];
        snprintf(key, sizeof(key), "@%.290s", a->name);
        if (comma)
            put(w, ",");
        put_str(w, key);
        put(w, ":");
        simple_schema(w, a->st);
        comma = true;
    }
    if (ct->simple != NULL) {
        if (comma)
            put(w, ",");
        put(w, "\"#text\":");
        simple_schema(w, ct->simple);
        comma = true;
    }
    for (size_t i = 0; i < ct->field_cnt; i++) {
        const pt_xfield_t *f = &ct->fields[i];
        if (comma)
            put(w, ",");
        put_str(w, f->elem->name);
        put(w, ":");
        elem_schema(w, f->elem, f->repeated);
        comma = true;
    }
    put(w, "}");
    const pt_xelem_t *req[MAX_REQUIRED];
    size_t nreq = 0;
    collect_required(ct->part, req, MAX_REQUIRED, &nreq);
    bool any = false;
    for (size_t i = 0; i < ct->attr_cnt; i++) {
        if (!ct->attrs[i].required)
            continue;
        char key[300];
        snprintf(key, sizeof(key), "@%.290s", ct->attrs[i].name);
        put(w, any ? "," : ",\"required\":[");
        put_str(w, key);
        any = true;
    }
    if (ct->simple != NULL) {
        put(w, any ? "," : ",\"required\":[");
        put(w, "\"#text\"");
        any = true;
    }
    for (size_t i = 0; i < nreq; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(req[j]->name, req[i]->name) == 0;
        if (dup)
            continue;
        put(w, any ? "," : ",\"required\":[");
        put_str(w, req[i]->name);
        any = true;
    }
    if (any)
        put(w, "]");
    put(w, ",\"additionalProperties\":false");
    if (ct->name != NULL && strcmp(ct->name, "(anonymous)") != 0) {
        put(w, ",\"x-xsd-type\":");
        put_str(w, ct->name);
    }
    put(w, "}");
}

/* The JSON of a body element is its content: an object for complex types. */
static void body_schema(sw_t *w, const pt_xelem_t *e)
{
    if (e == NULL)
        put(w, "null");
    else if (e->ct != NULL)
        ref(w, e->ct, e->name);
    else if (e->st != NULL)
        simple_schema(w, e->st);
    else
        put(w, "{}");
}

/* The schema of top-level input field `name` ("@attr" or an element's local name). */
static void field_schema(sw_t *w, const pt_xelem_t *in, const pt_soap_field_t *f)
{
    const pt_xct_t *ct = in != NULL ? in->ct : NULL;
    if (ct != NULL && f->name[0] == '@') {
        for (size_t i = 0; i < ct->attr_cnt; i++)
            if (strcmp(ct->attrs[i].name, f->name + 1) == 0) {
                simple_schema(w, ct->attrs[i].st);
                return;
            }
    }
    for (size_t i = 0; ct != NULL && i < ct->field_cnt; i++)
        if (strcmp(ct->fields[i].elem->name, f->name) == 0) {
            elem_schema(w, ct->fields[i].elem, ct->fields[i].repeated);
            return;
        }
    put(w, "{}");
}

int pt_soap_port_json_schema(const pt_soap_port_t *p, const char *ref_prefix, pt_xbuf_t *out)
{
    sw_t w = {.out = out, .ref_prefix = ref_prefix != NULL ? ref_prefix : ""};
    size_t start = out->len;
    put(&w, "{\"operations\":{");
    for (size_t i = 0; i < p->op_cnt; i++) {
        const pt_soap_op_t *op = &p->ops[i];
        const pt_opimpl_t *im = op->_impl;
        if (i > 0)
            put(&w, ",");
        put_str(&w, op->name);
        put(&w, ":{\"input\":");
        body_schema(&w, im != NULL ? im->in : NULL);
        put(&w, ",\"output\":");
        body_schema(&w, im != NULL && !op->is_oneway ? im->out : NULL);
        put(&w, ",\"fields\":{");
        for (size_t k = 0; k < op->field_cnt; k++) {
            if (k > 0)
                put(&w, ",");
            put_str(&w, op->fields[k].name);
            put(&w, ":");
            field_schema(&w, im != NULL ? im->in : NULL, &op->fields[k]);
        }
        put(&w, "}}");
    }
    put(&w, "},\"types\":{");
    /* the table grows while types are written: each new reference is written in turn */
    for (size_t i = 0; i < w.cnt && w.rc == 0; i++) {
        if (i > 0)
            put(&w, ",");
        put_str(&w, w.tab[i].name);
        put(&w, ":");
        ct_schema(&w, w.tab[i].ct);
    }
    put(&w, "}}");
    for (size_t i = 0; i < w.cnt; i++)
        pt_xfree(out->a, w.tab[i].name);
    pt_xfree(out->a, w.tab);
    if (w.rc != 0)
        out->len = start;
    return w.rc;
}
