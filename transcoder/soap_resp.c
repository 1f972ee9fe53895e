/*
 * soap_resp.c -- SOAP response envelope -> JSON, a fault, or "bad answer".
 *
 * The answer is fed chunk by chunk into our tokenizer (xml_tok.c), which
 * refuses it at the byte cap as soon as the cap is crossed (the rest is never
 * read), at the depth/attribute caps as soon as the offending start tag is
 * seen, and at the first byte that makes it not well-formed.
 * The conversion is driven by the operation's output element -- while
 * parsing for the common answer (see "streaming" below), else from a tree
 * at the end: child elements are matched to the type's
 * fields by namespace and local name, values are checked against their XSD
 * type, and anything the schema does not declare makes the answer "not the
 * declared output" (a 502 for the client, naming the element and path).
 * Unknown attributes are ignored (servers add xmlns and xsi noise freely).
 */
#include "soap_internal.h"
#include "xml_tok.h"

#include <stdio.h>
#include <string.h>

/*
 * Streaming: the common answer (one declared output element whose children
 * come in schema order) is converted from the tokenizer's events as they
 * come, with no tree: a frame per open element, the JSON written to `json` as
 * it goes, the text of the current simple-typed leaf gathered in `text`.
 * Anything else -- a fault, a mismatch of any kind, children out of schema
 * order, a repeated element interrupted and resumed, anyType, the depth cap,
 * or a verdict the tokenizer leaves to libxml2 -- sets `slow`: the events are
 * then ignored and pt_soap_resp_finish() has libxml2 parse the kept copy of
 * the input into a tree and converts that (tree_convert below), so every
 * such answer gets exactly the tree walk's result and message.
 */
enum { F_SKIP, F_ENV, F_BODY, F_COMPLEX, F_SIMPLE };

typedef struct frame {
    uint8_t kind;
    bool wrap;      /* F_SIMPLE: simpleContent of a complex type, close with '}' */
    bool comma;     /* F_COMPLEX: a member was written */
    bool arr_open;  /* F_COMPLEX: the last member is an array still open */
    int last;       /* F_COMPLEX: field index of the last child, -1 */
    const pt_xct_t *ct;
    const pt_xst_t *st;
} frame_t;

struct pt_soap_resp {
    const pt_allocator_t *a;
    const pt_soap_op_t *op;
    pt_soap_resp_opts_t o;
    pt__xt_t *xt; /* our tokenizer (libxml2 only for the slow path) */
    /* streaming */
    pt_xbuf_t raw;  /* the input so far, for the slow path */
    pt_xbuf_t json; /* the output so far */
    pt_xbuf_t text; /* the current leaf's text when it came in pieces (tmode 2) */
    size_t toff, tlen; /* tmode 1: the leaf's text is raw[toff..toff+tlen) */
    uint8_t tmode;     /* 0 none yet, 1 a span of raw, 2 in text */
    frame_t *fr;
    unsigned nfr, cap_fr;
    /* ns_is()'s memo: the URI at mu (from the tokenizer, at its namespace
     * epoch mep) equals the schema namespace string mns */
    const char *mu, *mns;
    uint64_t mep;
    unsigned cdepth; /* complex values open (the tree walk's depth) */
    bool slow, body_seen, done;
    bool nomem;     /* the copy of the input could not be kept */
    bool too_large; /* the byte cap was crossed */
    bool forced;    /* pt__soap_resp_force_tree: libxml2 and the tree walk only */
};

typedef struct cv {
    const pt_wsdl_t *w;
    pt_xbuf_t *out;
    pt_xpath_t path;
    unsigned depth, max_depth;
    int rc;        /* fatal: NOMEM / LIMIT of the output */
    char why[600]; /* the first mismatch */
} cv_t;

static bool mismatch(cv_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool mismatch(cv_t *c, const char *fmt, ...)
{
    if (c->why[0] == '\0' && c->rc == 0) {
        char m[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, sizeof(m), fmt, ap);
        va_end(ap);
        if (c->path.len > 0)
            snprintf(c->why, sizeof(c->why), "%s: %s", c->path.buf, m);
        else
            snprintf(c->why, sizeof(c->why), "%s", m);
    }
    return false;
}

static bool ok(cv_t *c, int rc)
{
    if (rc != 0 && c->rc == 0)
        c->rc = rc;
    return c->rc == 0 && c->why[0] == '\0';
}

static const char *ns_of(const xmlNode *n)
{
    return n->ns != NULL && n->ns->href != NULL ? (const char *)n->ns->href : "";
}

/* The value of an attribute node without copying it when it is one text node. */
static const xmlChar *attr_text(const xmlAttr *a)
{
    const xmlNode *t = a->children;
    if (t != NULL && t->next == NULL && t->type == XML_TEXT_NODE && t->content != NULL)
        return t->content;
    return t == NULL ? BAD_CAST "" : NULL;
}

static bool is_nil(const xmlNode *n)
{
    for (const xmlAttr *a = n->properties; a != NULL; a = a->next) {
        if (a->ns == NULL || !xmlStrEqual(a->name, BAD_CAST "nil") ||
            !xmlStrEqual(a->ns->href, BAD_CAST PT_XSI_NS))
            continue;
        const xmlChar *v = attr_text(a);
        return v != NULL && (xmlStrEqual(v, BAD_CAST "true") || xmlStrEqual(v, BAD_CAST "1"));
    }
    return false;
}

static bool only_ws(const xmlChar *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* The text of a simple-typed element; false (mismatch) when it has child
 * elements. *text points into the tree when the element holds one text node
 * (the common case: no copy), else to a copy in *owned (xmlFree it). */
static bool simple_text(cv_t *c, const xmlNode *n, const xmlChar **text, xmlChar **owned)
{
    *text = NULL;
    *owned = NULL;
    for (const xmlNode *k = n->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE)
            return mismatch(c, "element <%s> inside a simple-typed value", (const char *)k->name);
    const xmlNode *k = n->children;
    if (k == NULL) {
        *text = BAD_CAST "";
        return true;
    }
    if (k->next == NULL && k->type == XML_TEXT_NODE && k->content != NULL) {
        *text = k->content;
        return true;
    }
    *owned = xmlNodeGetContent(n);
    if (*owned == NULL) {
        ok(c, PT_XERR_NOMEM);
        return false;
    }
    *text = *owned;
    return true;
}

static bool typed(cv_t *c, const pt_xst_t *st, const char *s)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    const char *why = pt__xst_check(c->w, st, s, n);
    if (why != NULL)
        return mismatch(c, "value \"%.*s\" %s (%s)", (int)(n > 64 ? 64 : n), s, why, st->name);
    return ok(c, pt__xst_to_json(st, s, n, c->out));
}

static bool value(cv_t *c, const pt_xelem_t *e, const xmlNode *n);

static bool complex_value(cv_t *c, const pt_xct_t *ct, const xmlNode *n)
{
    if (++c->depth > c->max_depth)
        return ok(c, PT_XERR_LIMIT);
    bool comma = false;
    if (!ok(c, pt_xbuf_putc(c->out, '{')))
        return false;
    for (size_t i = 0; i < ct->attr_cnt; i++) {
        const pt_xattr_t *a = &ct->attrs[i];
        xmlChar *v = a->ns[0] != '\0' ? xmlGetNsProp(n, BAD_CAST a->name, BAD_CAST a->ns)
                                      : xmlGetNoNsProp(n, BAD_CAST a->name);
        if (v == NULL)
            continue;
        size_t m = pt_xpath_push_field(&c->path, a->name, strlen(a->name));
        bool good = (!comma || ok(c, pt_xbuf_putc(c->out, ','))) &&
                    ok(c, pt_xbuf_puts(c->out, "\"@")) && ok(c, pt_xbuf_puts(c->out, a->name)) &&
                    ok(c, pt_xbuf_puts(c->out, "\":")) && typed(c, a->st, (const char *)v);
        xmlFree(v);
        pt_xpath_pop(&c->path, m);
        if (!good)
            return false;
        comma = true;
    }
    if (ct->simple != NULL) {
        const xmlChar *t;
        xmlChar *owned;
        if (!simple_text(c, n, &t, &owned))
            return false;
        bool good = (!comma || ok(c, pt_xbuf_putc(c->out, ','))) &&
                    ok(c, pt_xbuf_puts(c->out, "\"#text\":")) &&
                    typed(c, ct->simple, (const char *)t);
        xmlFree(owned);
        c->depth--;
        return good && ok(c, pt_xbuf_putc(c->out, '}'));
    }
    /* children -> fields */
    size_t nk = 0;
    for (const xmlNode *k = n->children; k != NULL; k = k->next) {
        if (k->type == XML_ELEMENT_NODE) {
            nk++;
        } else if ((k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) &&
                   !only_ws(k->content)) {
            return mismatch(c, "text in element-only content of %s", ct->name);
        }
    }
    const pt_xfield_t **fk = NULL;
    if (nk > 0) {
        fk = pt_xalloc(c->out->a, nk * sizeof(*fk));
        if (fk == NULL)
            return ok(c, PT_XERR_NOMEM);
    }
    size_t i = 0;
    bool good = true;
    for (const xmlNode *k = n->children; k != NULL && good; k = k->next) {
        if (k->type != XML_ELEMENT_NODE)
            continue;
        fk[i] = pt__xct_field(ct, ns_of(k), (const char *)k->name);
        if (fk[i] == NULL) {
            const char *kns = ns_of(k);
            good = mismatch(c, "unexpected element %s%s%s<%s> in %s", kns[0] ? "{" : "", kns,
                            kns[0] ? "}" : "", (const char *)k->name, ct->name);
        }
        i++;
    }
    for (size_t f = 0; f < ct->field_cnt && good; f++) {
        const pt_xfield_t *fd = &ct->fields[f];
        size_t cnt = 0;
        for (i = 0; i < nk; i++)
            cnt += fk[i] == fd;
        if (cnt == 0)
            continue;
        const char *name = fd->elem->name; // NOLINT(clang-analyzer-core.NullDereference)
        size_t m = pt_xpath_push_field(&c->path, name, strlen(name));
        if (cnt > 1 && !fd->repeated) {
            good = mismatch(c, "appears %zu times (at most once)", cnt);
            pt_xpath_pop(&c->path, m);
            break;
        }
        good = (!comma || ok(c, pt_xbuf_putc(c->out, ','))) &&
               ok(c, pt__put_json_str(c->out, name, strlen(name))) &&
               ok(c, pt_xbuf_putc(c->out, ':')) &&
               (!fd->repeated || ok(c, pt_xbuf_putc(c->out, '[')));
        comma = true;
        size_t idx = 0;
        i = 0;
        for (const xmlNode *k = n->children; k != NULL && good; k = k->next) {
            if (k->type != XML_ELEMENT_NODE)
                continue;
            if (fk[i++] != fd)
                continue;
            size_t mi = fd->repeated ? pt_xpath_push_index(&c->path, idx) : c->path.len;
            good = (idx == 0 || ok(c, pt_xbuf_putc(c->out, ','))) && value(c, fd->elem, k);
            pt_xpath_pop(&c->path, mi);
            idx++;
        }
        if (good && fd->repeated)
            good = ok(c, pt_xbuf_putc(c->out, ']'));
        pt_xpath_pop(&c->path, m);
    }
    pt_xfree(c->out->a, fk);
    c->depth--;
    return good && ok(c, pt_xbuf_putc(c->out, '}'));
}

static bool value(cv_t *c, const pt_xelem_t *e, const xmlNode *n)
{
    if (is_nil(n))
        return ok(c, pt_xbuf_puts(c->out, "null"));
    if (e->ct != NULL)
        return complex_value(c, e->ct, n);
    if (e->st != NULL) {
        const xmlChar *t;
        xmlChar *owned;
        if (!simple_text(c, n, &t, &owned))
            return false;
        bool good = typed(c, e->st, (const char *)t);
        xmlFree(owned);
        return good;
    }
    int rc = pt__xml_generic_value(n, c->out, c->depth, c->max_depth);
    return ok(c, rc);
}

/* ---- faults ---- */

static const xmlNode *kid(const xmlNode *n, const char *ns, const char *local)
{
    for (const xmlNode *k = n != NULL ? n->children : NULL; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE && xmlStrEqual(k->name, BAD_CAST local) &&
            (ns == NULL || strcmp(ns_of(k), ns) == 0))
            return k;
    return NULL;
}

static void text_into(const xmlNode *n, char *b, size_t sz)
{
    b[0] = '\0';
    if (n == NULL)
        return;
    xmlChar *t = xmlNodeGetContent(n);
    if (t == NULL)
        return;
    const char *s = (const char *)t;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    int full = snprintf(b, sz, "%s", s);
    size_t l = strlen(b);
    if ((size_t)full > l) {
        /* cut: never inside a UTF-8 sequence (the JSON must stay valid UTF-8) */
        size_t i = l;
        while (i > 0 && ((unsigned char)b[i - 1] & 0xC0) == 0x80)
            i--;
        if (i > 0 && (unsigned char)b[i - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)b[i - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (l - (i - 1) < need)
                b[l = i - 1] = '\0';
        }
    }
    while (l > 0 && (b[l - 1] == ' ' || b[l - 1] == '\t' || b[l - 1] == '\n' || b[l - 1] == '\r'))
        b[--l] = '\0';
    xmlFree(t);
}

static const char *local_part(const char *q)
{
    const char *c = strrchr(q, ':');
    return c != NULL ? c + 1 : q;
}

static bool starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int fault(cv_t *c, const pt_opimpl_t *im, const xmlNode *f, bool v12, pt_soap_result_t *res)
{
    char code[256], sub[256] = "", reason[512];
    const xmlNode *detail;
    if (v12) {
        const xmlNode *cn = kid(f, PT_SOAP12_ENV, "Code");
        text_into(kid(cn, PT_SOAP12_ENV, "Value"), code, sizeof(code));
        text_into(kid(kid(cn, PT_SOAP12_ENV, "Subcode"), PT_SOAP12_ENV, "Value"), sub, sizeof(sub));
        text_into(kid(kid(f, PT_SOAP12_ENV, "Reason"), PT_SOAP12_ENV, "Text"), reason,
                  sizeof(reason));
        detail = kid(f, PT_SOAP12_ENV, "Detail");
    } else {
        text_into(kid(f, NULL, "faultcode"), code, sizeof(code));
        text_into(kid(f, NULL, "faultstring"), reason, sizeof(reason));
        detail = kid(f, NULL, "detail");
    }
    /* Servers mix the shapes (npm soap answers a 1.1 envelope with 1.2-style
     * Code/Reason children in the 1.1 namespace): read whichever is there. */
    if (code[0] == '\0') {
        const xmlNode *cn = kid(f, NULL, "Code");
        text_into(kid(cn, NULL, "Value"), code, sizeof(code));
        if (sub[0] == '\0')
            text_into(kid(kid(cn, NULL, "Subcode"), NULL, "Value"), sub, sizeof(sub));
        if (reason[0] == '\0')
            text_into(kid(kid(f, NULL, "Reason"), NULL, "Text"), reason, sizeof(reason));
        if (detail == NULL)
            detail = kid(f, NULL, "Detail");
    }
    if (code[0] == '\0') {
        text_into(kid(f, NULL, "faultcode"), code, sizeof(code));
        if (reason[0] == '\0')
            text_into(kid(f, NULL, "faultstring"), reason, sizeof(reason));
        if (detail == NULL)
            detail = kid(f, NULL, "detail");
    }
    if (code[0] == '\0')
        snprintf(code, sizeof(code), "Fault"); /* a fault without a code: a 5xx */
    const char *lc = local_part(code);
    res->outcome = PT_SOAP_FAULT;
    snprintf(res->fault_code, sizeof(res->fault_code), "%s", lc);
    snprintf(res->msg, sizeof(res->msg), "%s", reason);
    if (starts(lc, "Client") || starts(lc, "Sender"))
        res->fault_class = PT_SOAP_FAULT_CLIENT;
    else if (starts(lc, "Server") || starts(lc, "Receiver"))
        res->fault_class = PT_SOAP_FAULT_SERVER;
    else if (starts(lc, "VersionMismatch"))
        res->fault_class = PT_SOAP_FAULT_VERSION;
    else if (starts(lc, "MustUnderstand"))
        res->fault_class = PT_SOAP_FAULT_MUST_UNDERSTAND;
    else
        res->fault_class = PT_SOAP_FAULT_OTHER;
    res->http_status = res->fault_class == PT_SOAP_FAULT_CLIENT ? 400 : 500;
    bool good = ok(c, pt_xbuf_puts(c->out, "{\"error\":{\"code\":")) &&
                ok(c, pt__put_json_str(c->out, lc, strlen(lc)));
    if (good && sub[0] != '\0') {
        const char *ls = local_part(sub);
        good = ok(c, pt_xbuf_puts(c->out, ",\"subcode\":")) &&
               ok(c, pt__put_json_str(c->out, ls, strlen(ls)));
    }
    good = good && ok(c, pt_xbuf_puts(c->out, ",\"message\":")) &&
           ok(c, pt__put_json_str(c->out, reason, strlen(reason)));
    size_t nd = 0;
    for (const xmlNode *k = detail != NULL ? detail->children : NULL; k != NULL; k = k->next)
        nd += k->type == XML_ELEMENT_NODE;
    if (good && detail != NULL && nd == 0) {
        char dt[512];
        text_into(detail, dt, sizeof(dt));
        if (dt[0] != '\0')
            good = ok(c, pt_xbuf_puts(c->out, ",\"detail\":")) &&
                   ok(c, pt__put_json_str(c->out, dt, strlen(dt)));
    } else if (good && nd > 0) {
        good = ok(c, pt_xbuf_puts(c->out, ",\"detail\":{"));
        bool comma = false;
        for (const xmlNode *k = detail->children; k != NULL && good; k = k->next) {
            if (k->type != XML_ELEMENT_NODE)
                continue;
            const pt_xelem_t *decl = NULL;
            for (size_t i = 0; i < im->fault_cnt && decl == NULL; i++) {
                const pt_xelem_t *fe = im->faults[i].elem;
                if (fe != NULL && strcmp(fe->name, (const char *)k->name) == 0 &&
                    strcmp(fe->ns, ns_of(k)) == 0)
                    decl = fe;
            }
            size_t mark = c->out->len;
            if (comma)
                good = ok(c, pt_xbuf_putc(c->out, ','));
            if (decl != NULL) {
                /* a declared fault element: typed, keyed by its local name */
                size_t m = pt_xpath_push_field(&c->path, decl->name, strlen(decl->name));
                good = good && ok(c, pt__put_json_str(c->out, decl->name, strlen(decl->name))) &&
                       ok(c, pt_xbuf_putc(c->out, ':')) && value(c, decl, k);
                pt_xpath_pop(&c->path, m);
                if (!good && c->rc == 0) {
                    /* a detail that does not match its declaration: fall back to generic */
                    c->why[0] = '\0';
                    c->out->len = mark;
                    decl = NULL;
                    good = !comma || ok(c, pt_xbuf_putc(c->out, ','));
                }
            }
            if (decl == NULL && good) {
                char qn[512];
                pt__xml_qname(k->ns, k->name, qn, sizeof(qn));
                good = ok(c, pt__put_json_str(c->out, qn, strlen(qn))) &&
                       ok(c, pt_xbuf_putc(c->out, ':')) &&
                       ok(c, pt__xml_generic_value(k, c->out, 1, c->max_depth));
            }
            comma = true;
        }
        good = good && ok(c, pt_xbuf_putc(c->out, '}'));
    }
    good = good && ok(c, pt_xbuf_puts(c->out, "}}"));
    return good ? 0 : (c->rc != 0 ? c->rc : PT_XERR_INVALID);
}

/* ---- streaming ---- */

static void go_slow(pt_soap_resp_t *r) { r->slow = true; }

static bool put(pt_soap_resp_t *r, int rc)
{
    if (rc != 0)
        go_slow(r);
    return rc == 0;
}

/* z (NUL-terminated) equals s[0..n) */
static bool eqn(const char *z, const char *s, size_t n)
{
    if (n == 0)
        return z[0] == '\0';
    return z[0] == s[0] && strncmp(z, s, n) == 0 && z[n] == '\0';
}

/* z[0..zl) equals s[0..n) */
static inline bool eqm(const char *z, size_t zl, const char *s, size_t n)
{
    return zl == n && pt__same(z, s, n);
}

static frame_t *push(pt_soap_resp_t *r, uint8_t kind)
{
    if (r->nfr == r->cap_fr) { /* cannot happen: the tokenizer caps the depth */
        go_slow(r);
        return NULL;
    }
    frame_t *f = &r->fr[r->nfr++];
    *f = (frame_t){.kind = kind, .last = -1};
    return f;
}

/* The attribute {ns}name, or NULL (nsl 0: no namespace). */
static const pt__xt_attr_t *find_attr(const pt__xt_attr_t *at, unsigned nb, const char *ns,
                                      size_t nsl, const char *name, size_t nl)
{
    for (unsigned i = 0; i < nb; i++) {
        bool ns_ok = nsl != 0 ? at[i].uri != NULL && eqm(ns, nsl, at[i].uri, at[i].ulen)
                              : at[i].uri == NULL;
        if (ns_ok && eqm(name, nl, at[i].local, at[i].llen))
            return &at[i];
    }
    return NULL;
}

/* Checks and writes s[0..n) as `st`; false (slow) on a mismatch. */
static bool stream_typed(pt_soap_resp_t *r, const pt_xst_t *st, const char *s, size_t n)
{
    if (st->prim == PT_XSP_STRING && st->enum_cnt == 0 && !st->facets)
        return put(r, pt__put_json_str_fast(&r->json, s, n)); /* the common leaf */
    const pt_opimpl_t *im = r->op->_impl;
    return put(r, pt__xst_json(im->w, st, s, n, &r->json));
}

/*
 * The current leaf's text. Mostly one piece of the input: it is then only
 * remembered by offset into `raw` (the input so far, which may move between
 * feeds), and copied into `text` only when it comes in pieces that do not
 * follow each other there (references, CR LF, CDATA).
 */
static void text_reset(pt_soap_resp_t *r)
{
    r->tmode = 0;
    r->tlen = 0;
}

static const char *text_get(const pt_soap_resp_t *r, size_t *n)
{
    if (r->tmode == 1) {
        *n = r->tlen;
        return (const char *)r->raw.data + r->toff;
    }
    *n = r->tmode == 2 ? r->text.len : 0;
    return r->tmode == 2 ? (const char *)r->text.data : "";
}

static void text_add(pt_soap_resp_t *r, const char *s, size_t len)
{
    uintptr_t base = (uintptr_t)r->raw.data, at = (uintptr_t)s;
    bool in_raw = at >= base && at - base < r->raw.len;
    if (r->tmode == 0 && in_raw) {
        r->tmode = 1;
        r->toff = at - base;
        r->tlen = len;
        return;
    }
    if (r->tmode == 1 && in_raw && at - base == r->toff + r->tlen) {
        r->tlen += len;
        return;
    }
    if (r->tmode != 2) {
        r->text.len = 0;
        if (r->tmode == 1 && !put(r, pt_xbuf_append(&r->text, r->raw.data + r->toff, r->tlen)))
            return;
        r->tmode = 2;
    }
    put(r, pt_xbuf_append(&r->text, s, len));
}

/* Starts the value of element `e` (the tree walk's value()). */
static void stream_value(pt_soap_resp_t *r, const pt_xelem_t *e, const pt__xt_attr_t *at,
                         unsigned nb)
{
    if (nb != 0) {
        const pt__xt_attr_t *nil =
            find_attr(at, nb, PT_XSI_NS, sizeof(PT_XSI_NS) - 1, "nil", 3);
        if (nil != NULL && ((nil->vlen == 4 && memcmp(nil->val, "true", 4) == 0) ||
                            (nil->vlen == 1 && nil->val[0] == '1'))) {
            if (put(r, pt_xbuf_append(&r->json, "null", 4)))
                push(r, F_SKIP);
            return;
        }
    }
    if (e->st != NULL) {
        frame_t *f = push(r, F_SIMPLE);
        if (f != NULL)
            f->st = e->st;
        text_reset(r);
        return;
    }
    if (e->ct == NULL) { /* anyType: the generic form, from the tree */
        go_slow(r);
        return;
    }
    const pt_xct_t *ct = e->ct;
    if (++r->cdepth > r->o.max_depth || !put(r, pt_xbuf_putc(&r->json, '{'))) {
        go_slow(r);
        return;
    }
    bool comma = false;
    for (size_t i = 0; i < ct->attr_cnt && nb != 0; i++) {
        const pt_xattr_t *a = &ct->attrs[i];
        const pt__xt_attr_t *v = find_attr(at, nb, a->ns, a->nslen, a->name, a->nlen);
        if (v == NULL)
            continue;
        /* the key is made at load time: ,"@name": */
        if (!put(r, pt_xbuf_append(&r->json, a->key + !comma, a->klen - !comma)) ||
            !stream_typed(r, a->st, v->val, v->vlen))
            return;
        comma = true;
    }
    frame_t *f = push(r, ct->simple != NULL ? F_SIMPLE : F_COMPLEX);
    if (f == NULL)
        return;
    f->ct = ct;
    f->comma = comma;
    if (ct->simple != NULL) {
        f->st = ct->simple;
        f->wrap = true;
        text_reset(r);
    }
}

/* The schema namespace ns[0..nsl) equals the event's URI: compared once,
 * then known by the pointers while the tokenizer makes no new binding
 * (xml_tok.h, pt__xt_ns_epoch). Fields of one schema share the ns pointer. */
static inline bool ns_is(pt_soap_resp_t *r, const char *ns, size_t nsl, const char *uri,
                         size_t ulen)
{
    if (nsl != ulen)
        return false;
    uint64_t ep = pt__xt_ns_epoch(r->xt);
    if (uri == r->mu && ns == r->mns && ep == r->mep)
        return true;
    if (!pt__same(ns, uri, ulen))
        return false;
    r->mu = uri, r->mns = ns, r->mep = ep;
    return true;
}

/* The field of child element {uri}local of the complex value `p`, its key
 * written; NULL (slow) when it does not fit the schema here. */
static inline __attribute__((always_inline)) const pt_xfield_t *
child_field(pt_soap_resp_t *r, frame_t *p, const char *local, size_t llen, const char *uri,
            size_t ulen)
{
    /* Field names are unique in a type (the model refuses two alike), so the
     * search may start at the last field: children mostly come in order, the
     * same one again or the next. */
    const pt_xct_t *ct = p->ct;
    size_t n = ct->field_cnt, f = p->last > 0 ? (size_t)p->last : 0;
    if (p->last >= 0 && !ct->fields[f].repeated)
        f = f + 1 == n ? 0 : f + 1; /* that one again is a mismatch: it is looked at last */
    const pt_xfield_t *fd = NULL;
    for (size_t k = 0; k < n; k++, f = f + 1 == n ? 0 : f + 1) {
        const pt_xfield_t *c = &ct->fields[f];
        if (c->nlen == llen && pt__same(c->name, local, llen) && ns_is(r, c->ns, c->nslen, uri, ulen)) {
            fd = c;
            break;
        }
    }
    if (fd == NULL) {
        go_slow(r);
        return NULL;
    }
    int idx = (int)f;
    pt_xbuf_t *j = &r->json;
    if (idx == p->last) {
        /* the next item of a run; a second non-repeated one is a mismatch */
        if (!fd->repeated || !put(r, pt_xbuf_putc(j, ','))) {
            go_slow(r);
            return NULL;
        }
    } else if (idx < p->last) {
        go_slow(r); /* out of schema order, or a run resumed: the tree walk groups them */
        return NULL;
    } else {
        /* the key is made at load time: ,"name": */
        if (!put(r, pt_xbuf_reserve(j, fd->klen + 2)))
            return NULL;
        char *o = (char *)j->data + j->len, *o0 = o;
        if (p->arr_open)
            *o++ = ']';
        size_t skip = p->comma ? 0 : 1;
        pt__copy(o, fd->key + skip, fd->klen - skip);
        o += fd->klen - skip;
        if (fd->repeated)
            *o++ = '[';
        j->len += (size_t)(o - o0);
        p->arr_open = fd->repeated;
        p->comma = true;
        p->last = idx;
    }
    return fd;
}

static void stream_child(pt_soap_resp_t *r, frame_t *p, const char *local, size_t llen,
                         const char *uri, size_t ulen, const pt__xt_attr_t *at, unsigned nb)
{
    const pt_xfield_t *fd = child_field(r, p, local, llen, uri, ulen);
    if (fd != NULL)
        stream_value(r, fd->elem, at, nb);
}

static void on_start(void *ud, const char *local, size_t llen, const char *uri, size_t ulen,
                     const pt__xt_attr_t *at, unsigned nb)
{
    pt_soap_resp_t *r = ud;
    if (r->slow)
        return;
    if (uri == NULL)
        uri = "", ulen = 0;
    frame_t *p = r->nfr != 0 ? &r->fr[r->nfr - 1] : NULL;
    if (p != NULL && p->kind == F_COMPLEX) { /* the common case */
        stream_child(r, p, local, llen, uri, ulen, at, nb);
        return;
    }
    const pt_opimpl_t *im = r->op->_impl;
    const char *env = r->op->soap_version == PT_SOAP_12 ? PT_SOAP12_ENV : PT_SOAP11_ENV;
    if (p == NULL) {
        /* the root: a SOAP Envelope of our version, else the slow path tells what is wrong */
        if (!eqn(env, uri, ulen) || !eqn("Envelope", local, llen))
            go_slow(r);
        else
            push(r, F_ENV);
        return;
    }
    switch (p->kind) {
    case F_ENV:
        if (!r->body_seen && eqn(env, uri, ulen) && eqn("Body", local, llen)) {
            r->body_seen = true;
            push(r, F_BODY);
        } else {
            push(r, F_SKIP); /* a Header, or what follows the Body */
        }
        return;
    case F_BODY:
        /* exactly the declared output (not a Fault, not one-way, not two elements) */
        if (p->last != -1 || r->op->is_oneway || im->out == NULL ||
            !eqn(im->out->name, local, llen) || !eqn(im->out->ns, uri, ulen)) {
            go_slow(r);
            return;
        }
        p->last = 0;
        stream_value(r, im->out, at, nb);
        return;
    case F_SIMPLE: /* an element inside a simple-typed value */
        go_slow(r);
        return;
    default:
        push(r, F_SKIP);
        return;
    }
}

static void on_end(void *ud)
{
    pt_soap_resp_t *r = ud;
    if (r->slow || r->nfr == 0)
        return;
    frame_t *f = &r->fr[--r->nfr];
    pt_xbuf_t *j = &r->json;
    switch (f->kind) {
    case F_COMPLEX:
        r->cdepth--;
        if (!put(r, pt_xbuf_reserve(j, 2)))
            return;
        if (f->arr_open)
            j->data[j->len++] = ']';
        j->data[j->len++] = '}';
        break;
    case F_SIMPLE: {
        if (f->wrap) {
            r->cdepth--;
            static const char key[] = ",\"#text\":";
            if (!put(r, pt_xbuf_append(j, key + !f->comma, sizeof(key) - 1 - !f->comma)))
                return;
        }
        size_t n;
        const char *t = text_get(r, &n);
        if (!stream_typed(r, f->st, t, n) || (f->wrap && !put(r, pt_xbuf_putc(j, '}'))))
            return;
        break;
    }
    default:
        break;
    }
    if (r->nfr > 0 && r->fr[r->nfr - 1].kind == F_BODY)
        r->done = true; /* the output element is written */
}

static void on_text(void *ud, const char *s, size_t len)
{
    pt_soap_resp_t *r = ud;
    if (r->slow || r->nfr == 0)
        return;
    const frame_t *f = &r->fr[r->nfr - 1];
    if (f->kind == F_SIMPLE) {
        text_add(r, s, len);
    } else if (f->kind == F_COMPLEX) {
        for (size_t i = 0; i < len; i++)
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
                go_slow(r); /* text in element-only content */
                return;
            }
    }
}

/* <name>text</name> (or with attributes) in one event: start, text and end in one go. */
static void on_leaf(void *ud, const char *local, size_t llen, const char *uri, size_t ulen,
                    const pt__xt_attr_t *at, unsigned nb, const char *s, size_t n)
{
    pt_soap_resp_t *r = ud;
    if (r->slow)
        return;
    frame_t *p = r->nfr != 0 ? &r->fr[r->nfr - 1] : NULL;
    if (p != NULL && p->kind == F_COMPLEX) {
        const pt_xfield_t *fd =
            child_field(r, p, local, llen, uri != NULL ? uri : "", uri != NULL ? ulen : 0);
        if (fd == NULL)
            return;
        if (fd->elem->st != NULL && nb == 0) { /* the common leaf: no frame */
            stream_typed(r, fd->elem->st, s, n);
            return;
        }
        stream_value(r, fd->elem, at, nb);
    } else {
        on_start(ud, local, llen, uri, ulen, at, nb);
    }
    if (n != 0)
        on_text(ud, s, n);
    on_end(ud);
}

static const pt__xt_cb_t stream_cb = {on_start, on_end, on_text, on_leaf};

/* ---- public ---- */

pt_soap_resp_t *pt_soap_resp_new(const pt_soap_op_t *op, const pt_allocator_t *a,
                                 const pt_soap_resp_opts_t *opts)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt_soap_resp_t *r = pt_xalloc(a, sizeof(*r));
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->a = a;
    r->op = op;
    if (opts != NULL)
        r->o = *opts;
    if (r->o.max_size == 0)
        r->o.max_size = 8u << 20;
    if (r->o.max_depth == 0)
        r->o.max_depth = 64;
    if (r->o.max_attrs == 0)
        r->o.max_attrs = 64;
    pt_xbuf_init(&r->raw, a);
    pt_xbuf_init(&r->json, a);
    pt_xbuf_init(&r->text, a);
    pt__xp_opts_t xo = {r->o.max_size, r->o.max_depth + 3, r->o.max_attrs, NULL};
    r->cap_fr = r->o.max_depth + 4;
    r->fr = pt_xalloc(a, r->cap_fr * sizeof(*r->fr));
    r->xt = r->fr != NULL ? pt__xt_new(a, &xo, &stream_cb, r) : NULL;
    if (r->xt == NULL) {
        pt_xfree(a, r->fr);
        pt_xfree(a, r);
        return NULL;
    }
    return r;
}

int pt_soap_resp_feed(pt_soap_resp_t *r, const void *chunk, size_t len)
{
    /* The byte cap first: nothing past it is kept or read. The bytes are kept
     * for the tokenizer (it reads the whole input so far) and the slow path. */
    if (r->nomem)
        return PT_XERR_NOMEM;
    if (r->too_large || len > r->o.max_size - r->raw.len) {
        r->too_large = true;
        return PT_XERR_LIMIT;
    }
    if (pt_xbuf_append(&r->raw, chunk, len) != 0) {
        r->nomem = true;
        return PT_XERR_NOMEM;
    }
    if (r->forced)
        return 0;
    pt__xp_fail_t f = pt__xt_run(r->xt, (const char *)r->raw.data, r->raw.len, false);
    if (pt__xt_deferred(r->xt))
        go_slow(r);
    return pt__xp_code(f);
}

void pt_soap_resp_expect(pt_soap_resp_t *r, size_t n)
{
    if (n > r->o.max_size)
        n = r->o.max_size;
    if (r->raw.len == 0 && n > r->raw.cap)
        (void)pt_xbuf_reserve(&r->raw, n);
    if (r->json.len == 0 && n > r->json.cap)
        (void)pt_xbuf_reserve(&r->json, n);
}

static void set_bad(pt_soap_result_t *res, pt_soap_bad_t bad, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_bad(pt_soap_result_t *res, pt_soap_bad_t bad, const char *fmt, ...)
{
    res->outcome = PT_SOAP_BAD;
    res->bad = bad;
    res->http_status = 502;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
    va_end(ap);
}

static void set_parse_bad(pt_soap_result_t *res, pt__xp_fail_t f, const char *msg, int line,
                          int col)
{
    pt_soap_bad_t b = f == PT_XP_LIMIT     ? PT_SOAP_BAD_TOO_LARGE
                      : f == PT_XP_DOCTYPE ? PT_SOAP_BAD_DOCTYPE
                                           : PT_SOAP_BAD_NOT_XML;
    const char *what = f == PT_XP_LIMIT || f == PT_XP_DOCTYPE ? "upstream answer refused"
                                                              : "upstream answer is not XML";
    if (line > 0)
        set_bad(res, b, "%s: line %d column %d: %s", what, line, col, msg);
    else
        set_bad(res, b, "%s: %s", what, msg);
}

static int tree_convert(pt_soap_resp_t *r, xmlDocPtr doc, pt_soap_result_t *res, pt_xbuf_t *out);

int pt_soap_resp_finish(pt_soap_resp_t *r, pt_soap_result_t *res, pt_xbuf_t *out)
{
    memset(res, 0, sizeof(*res));
    if (r->nomem)
        return PT_XERR_NOMEM;
    if (r->too_large) {
        char m[64];
        snprintf(m, sizeof(m), "larger than %zu bytes", r->o.max_size);
        set_parse_bad(res, PT_XP_LIMIT, m, 0, 0);
        return 0;
    }
    pt__xp_fail_t f = PT_XP_OK;
    if (!r->forced) {
        f = pt__xt_run(r->xt, (const char *)r->raw.data, r->raw.len, true);
        if (f == PT_XP_NOMEM)
            return PT_XERR_NOMEM;
        if (f != PT_XP_OK) {
            set_parse_bad(res, f, pt__xt_msg(r->xt), pt__xt_line(r->xt), pt__xt_col(r->xt));
            return 0;
        }
        if (pt__xt_deferred(r->xt))
            go_slow(r);
    }
    if (!r->slow && r->done) {
        size_t mark = out->len;
        if (out->len == 0 && out->a == r->json.a && (out->limit == 0 || r->json.len <= out->limit)) {
            pt_xbuf_t mine = r->json; /* hand the storage over */
            r->json.data = out->data, r->json.len = 0, r->json.cap = out->cap;
            out->data = mine.data, out->len = mine.len, out->cap = mine.cap;
            res->outcome = PT_SOAP_OUTPUT;
            res->http_status = 200;
            return 0;
        }
        if (pt_xbuf_append(out, r->json.data, r->json.len) == 0) {
            res->outcome = PT_SOAP_OUTPUT;
            res->http_status = 200;
            return 0;
        }
        out->len = mark; /* over the output's limit: the tree walk says how */
    }
    /* The slow path: libxml2 reads the input into a tree (and is the judge
     * of what the tokenizer deferred). */
    xmlDocPtr doc = NULL;
    pt__xp_opts_t xo = {r->o.max_size, r->o.max_depth + 3, r->o.max_attrs, NULL};
    pt__xp_t *xp = pt__xp_new(r->a, &xo);
    if (xp == NULL)
        return PT_XERR_NOMEM;
    f = pt__xp_feed(xp, r->raw.data, r->raw.len);
    if (f == PT_XP_OK)
        f = pt__xp_finish(xp, &doc);
    int rc = 0;
    if (f == PT_XP_NOMEM)
        rc = PT_XERR_NOMEM;
    else if (f != PT_XP_OK)
        set_parse_bad(res, f, pt__xp_msg(xp), pt__xp_line(xp), pt__xp_col(xp));
    else
        rc = tree_convert(r, doc, res, out);
    pt__xp_free(xp);
    return rc;
}

static int tree_convert(pt_soap_resp_t *r, xmlDocPtr doc, pt_soap_result_t *res, pt_xbuf_t *out)
{
    const pt_opimpl_t *im = r->op->_impl;
    bool v12 = r->op->soap_version == PT_SOAP_12;
    const char *env = v12 ? PT_SOAP12_ENV : PT_SOAP11_ENV;
    const char *other = v12 ? PT_SOAP11_ENV : PT_SOAP12_ENV;
    const xmlNode *root = xmlDocGetRootElement(doc);
    const xmlNode *body = NULL, *first = NULL;
    size_t nbody = 0;
    int rc = 0;
    if (!xmlStrEqual(root->name, BAD_CAST "Envelope") ||
        (strcmp(ns_of(root), env) != 0 && strcmp(ns_of(root), other) != 0)) {
        set_bad(res, PT_SOAP_BAD_NOT_SOAP, "upstream answer is not SOAP: root element <%s> is "
                                           "not a SOAP Envelope",
                (const char *)root->name);
        goto done;
    }
    if (strcmp(ns_of(root), other) == 0) {
        set_bad(res, PT_SOAP_BAD_VERSION, "upstream answered with a SOAP %s envelope, expected "
                                          "SOAP %s",
                v12 ? "1.1" : "1.2", v12 ? "1.2" : "1.1");
        goto done;
    }
    body = kid(root, env, "Body");
    if (body == NULL) {
        set_bad(res, PT_SOAP_BAD_NOT_SOAP, "upstream answer is not SOAP: Envelope without Body");
        goto done;
    }
    for (const xmlNode *k = body->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE) {
            if (first == NULL)
                first = k;
            nbody++;
        }
    cv_t c;
    memset(&c, 0, sizeof(c));
    c.w = im->w;
    c.out = out;
    c.max_depth = r->o.max_depth;
    pt_xpath_init(&c.path);
    size_t mark = out->len;
    if (first != NULL && xmlStrEqual(first->name, BAD_CAST "Fault") &&
        strcmp(ns_of(first), env) == 0) {
        rc = fault(&c, im, first, v12, res);
    } else if (r->op->is_oneway) {
        if (nbody != 0)
            set_bad(res, PT_SOAP_BAD_NOT_DECLARED,
                    "upstream answer is not the declared output: a one-way operation got <%s>",
                    (const char *)first->name);
        else if ((rc = pt_xbuf_puts(out, "{}")) == 0)
            res->outcome = PT_SOAP_OUTPUT, res->http_status = 200;
        goto done;
    } else if (first == NULL) {
        set_bad(res, PT_SOAP_BAD_NOT_DECLARED, "upstream answer is not the declared output: "
                                               "empty Body, expected <%s>",
                im->out->name);
        goto done;
    } else if (nbody > 1) {
        set_bad(res, PT_SOAP_BAD_NOT_DECLARED, "upstream answer is not the declared output: "
                                               "Body holds %zu elements, expected one <%s>",
                nbody, im->out->name);
        goto done;
    } else if (!xmlStrEqual(first->name, BAD_CAST im->out->name) ||
               strcmp(ns_of(first), im->out->ns) != 0) {
        set_bad(res, PT_SOAP_BAD_NOT_DECLARED,
                "upstream answer is not the declared output: Body holds {%s}%s, expected {%s}%s",
                ns_of(first), (const char *)first->name, im->out->ns, im->out->name);
        goto done;
    } else {
        res->outcome = PT_SOAP_OUTPUT;
        res->http_status = 200;
        rc = value(&c, im->out, first) ? 0 : (c.rc != 0 ? c.rc : PT_XERR_INVALID);
    }
    if (rc == PT_XERR_INVALID) {
        out->len = mark;
        rc = 0;
        set_bad(res, PT_SOAP_BAD_NOT_DECLARED, "upstream answer is not the declared output: %s",
                c.why);
    } else if (rc == PT_XERR_LIMIT && out->limit == 0) {
        out->len = mark;
        rc = 0;
        set_bad(res, PT_SOAP_BAD_TOO_LARGE, "upstream answer refused: nested deeper than %u",
                r->o.max_depth);
    } else if (rc != 0) {
        out->len = mark;
    }
done:
    xmlFreeDoc(doc);
    return rc;
}

void pt__soap_resp_force_tree(pt_soap_resp_t *r)
{
    r->forced = true;
    go_slow(r);
}

void pt_soap_resp_free(pt_soap_resp_t *r)
{
    if (r == NULL)
        return;
    pt__xt_free(r->xt);
    pt_xbuf_dispose(&r->raw);
    pt_xbuf_dispose(&r->json);
    pt_xbuf_dispose(&r->text);
    pt_xfree(r->a, r->fr);
    pt_xfree(r->a, r);
}

int pt_soap_parse_response(const pt_soap_op_t *op, const char *xml, size_t len,
                           const pt_soap_resp_opts_t *opts, pt_soap_result_t *res, pt_xbuf_t *out)
{
    pt_soap_resp_t *r = pt_soap_resp_new(op, out->a, opts);
    if (r == NULL)
        return PT_XERR_NOMEM;
    pt_soap_resp_feed(r, xml, len);
    int rc = pt_soap_resp_finish(r, res, out);
    pt_soap_resp_free(r);
    return rc;
}
