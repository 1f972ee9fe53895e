/*
 * xml_util.c -- pool, safe libxml2 push parser, JSON tree, escaping.
 *
 * The parser is the only place where libxml2 parses anything in the
 * transcoder. Its safety does not rest on libxml2's defaults alone:
 *  - options: XML_PARSE_NONET (no network fetch ever), NOCDATA (CDATA is
 *    text), and never NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE;
 *  - the internalSubset SAX callback fires at "<!DOCTYPE" before any markup
 *    declaration is read: we stop the parser there, so no entity (internal,
 *    external, parameter) is ever declared, let alone expanded, and billion
 *    laughs / quadratic blowup / XXE never get started;
 *  - startElementNs counts depth, attributes and namespace declarations per
 *    element before libxml2 builds the node, so a hostile document is cut off
 *    at the cap instead of after it has been built;
 *  - the byte cap is checked before a chunk is handed to libxml2, so an
 *    oversized answer is refused without reading (or holding) the rest;
 *  - only UTF-8 input is accepted (any transcoding encoder means another
 *    encoding was declared or detected).
 */
#include "xml_internal.h"

#include <stdio.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include "json_lex.h"
#include "portico/transcoder/wkt.h"

/* ======================= pool ======================= */

struct pt__xpool_blk {
    pt__xpool_blk_t *next;
    size_t size;
    _Alignas(16) unsigned char data[];
};

void pt__xpool_init(pt__xpool_t *p, const pt_allocator_t *a, size_t limit)
{
    memset(p, 0, sizeof(*p));
    p->a = a != NULL ? a : pt_allocator_default();
    p->limit = limit;
}

void pt__xpool_dispose(pt__xpool_t *p)
{
    pt__xpool_blk_t *b = p->head;
    while (b != NULL) {
        pt__xpool_blk_t *next = b->next;
        pt_xfree(p->a, b);
        b = next;
    }
    p->head = NULL;
    p->used = p->cap = p->total = 0;
}

void *pt__xpool_alloc(pt__xpool_t *p, size_t n)
{
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0)
        n = 16;
    if (p->limit != 0 && (n > p->limit || p->total > p->limit - n))
        return NULL;
    if (p->head == NULL || p->cap - p->used < n) {
        size_t sz = p->head == NULL ? 4096 : p->head->size * 2;
        if (sz > 262144)
            sz = 262144;
        if (sz < n)
            sz = n;
        pt__xpool_blk_t *b = pt_xalloc(p->a, sizeof(*b) + sz);
        if (b == NULL)
            return NULL;
        b->size = sz;
        b->next = p->head;
        p->head = b;
        p->used = 0;
        p->cap = sz;
    }
    void *r = p->head->data + p->used;
    p->used += n;
    p->total += n;
    memset(r, 0, n);
    return r;
}

char *pt__xpool_strndup(pt__xpool_t *p, const char *s, size_t n)
{
    char *r = pt__xpool_alloc(p, n + 1);
    if (r == NULL)
        return NULL;
    if (n != 0)
        memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

/* ======================= safe parser ======================= */

/* States of the attribute pre-scan (see scan_attrs). */
enum { S_TEXT = 0, S_LT, S_BANG, S_BANG_DASH, S_COMMENT, S_CDATA, S_PI, S_ETAG, S_STAG, S_STAG_Q,
       S_OFF };

struct pt__xp {
    const pt_allocator_t *a;
    xmlParserCtxtPtr ctxt;
    pt__xp_opts_t o;
    size_t fed;
    uint8_t scan, quote, run; /* attribute pre-scan state */
    unsigned eqs;
    unsigned depth;
    bool seen_root;
    pt__xp_fail_t fail;
    int line, col;
    char msg[256];
};

/*
 * Stops libxml2 from inside one of its callbacks (SAX or error). Not with
 * xmlStopParser: in libxml2 2.9 it frees the input buffer at once
 * (xmlHaltParser) while the caller may still read from it -- e.g.
 * xmlSAX2StartElementNs reports a bad xml:id and then copies the next
 * attribute's value out of the freed buffer (a heap use-after-free on
 * `<a xml:id="" d="x">`, found by fuzz.soap_resp). So what xmlHaltParser
 * does minus the freeing: no more SAX events, and the push parser ends at
 * its next check; the input goes with the context (pt__xp_free).
 */
static void halt(pt__xp_t *x)
{
    if (x->ctxt != NULL) {
        x->ctxt->disableSAX = 1;
        x->ctxt->instate = XML_PARSER_EOF;
    }
}

static void xp_fail(pt__xp_t *x, pt__xp_fail_t f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void xp_fail(pt__xp_t *x, pt__xp_fail_t f, const char *fmt, ...)
{
    if (x->fail != PT_XP_OK)
        return;
    x->fail = f;
    if (x->ctxt != NULL && x->ctxt->input != NULL) {
        x->line = x->ctxt->input->line;
        x->col = x->ctxt->input->col;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
    va_end(ap);
    halt(x);
}

static pt__xp_t *xp_of(void *ctx)
{
    xmlParserCtxtPtr c = ctx;
    return c->_private;
}

static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
{
    (void)name, (void)eid, (void)sid;
    pt__xp_t *x = xp_of(ctx);
    xp_fail(x, PT_XP_DOCTYPE, "a DOCTYPE is not accepted (no DTDs, no entities)");
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *pid,
                           const xmlChar *sid, xmlChar *content)
{
    (void)name, (void)type, (void)pid, (void)sid, (void)content;
    xp_fail(xp_of(ctx), PT_XP_DOCTYPE, "entity declarations are not accepted");
}

static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
    /* Only the five predefined entities exist (there is never a DTD). */
    (void)ctx;
    return xmlGetPredefinedEntity(name);
}

static xmlEntityPtr on_get_param_entity(void *ctx, const xmlChar *name)
{
    (void)name;
    xp_fail(xp_of(ctx), PT_XP_DOCTYPE, "parameter entities are not accepted");
    return NULL;
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                     int nb_defaulted, const xmlChar **attributes)
{
    pt__xp_t *x = xp_of(ctx);
    if (x->fail != PT_XP_OK)
        return;
    if (++x->depth > x->o.max_depth) {
        xp_fail(x, PT_XP_LIMIT, "elements nested deeper than %u", x->o.max_depth);
        return;
    }
    if ((unsigned)nb_attributes > x->o.max_attrs || (unsigned)nb_namespaces > x->o.max_attrs) {
        xp_fail(x, PT_XP_LIMIT, "element <%s> has more than %u attributes or namespace declarations",
                (const char *)localname, x->o.max_attrs);
        return;
    }
    x->seen_root = true;
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    pt__xp_t *x = xp_of(ctx);
    if (x->depth > 0)
        x->depth--;
    if (x->fail != PT_XP_OK)
        return;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
}

/* Our words for libxml2's errors: the client sees these, never libxml2's text. */
static const char *error_words(int code)
{
    switch (code) {
    case XML_ERR_DOCUMENT_EMPTY:
        return "no XML document (empty, or text where the root element should be)";
    case XML_ERR_INVALID_CHAR:
    case XML_ERR_INVALID_ENCODING:
        return "invalid UTF-8 or a character not allowed in XML";
    case XML_ERR_UNSUPPORTED_ENCODING:
        return "unsupported encoding";
    case XML_ERR_TAG_NAME_MISMATCH:
        return "mismatched end tag";
    case XML_ERR_TAG_NOT_FINISHED:
        return "element not closed";
    case XML_ERR_DOCUMENT_END:
        return "content after the root element";
    case XML_ERR_UNDECLARED_ENTITY:
    case XML_WAR_UNDECLARED_ENTITY:
        return "undeclared entity";
    case XML_NS_ERR_UNDEFINED_NAMESPACE:
        return "undeclared namespace prefix";
    case XML_ERR_ATTRIBUTE_REDEFINED:
        return "attribute given twice";
    case XML_NS_ERR_QNAME:
        return "bad qualified name";
    default:
        return "not well-formed";
    }
}

static void on_error(void *ud, xmlErrorPtr e)
{
    pt__xp_t *x = xp_of(ud);
    if (e == NULL || e->level < XML_ERR_ERROR)
        return;
    if (x->fail != PT_XP_OK)
        return;
    /* libxml2 reports a namespace error (undeclared prefix) as an error but
     * goes on; we refuse it: a prefix that maps to nothing is "namespace
     * confusion" waiting to happen. */
    x->fail = PT_XP_NOT_XML;
    x->line = e->line;
    x->col = e->int2;
    snprintf(x->msg, sizeof(x->msg), "%s", error_words(e->code));
    halt(x);
}

pt__xp_t *pt__xp_new(const pt_allocator_t *a, const pt__xp_opts_t *o)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt__xp_t *x = pt_xalloc(a, sizeof(*x));
    if (x == NULL)
        return NULL;
    memset(x, 0, sizeof(*x));
    x->a = a;
    x->o = *o;
    if (x->o.max_depth == 0)
        x->o.max_depth = 64;
    if (x->o.max_attrs == 0)
        x->o.max_attrs = 64;
    if (x->o.max_size == 0)
        x->o.max_size = 8u << 20;

    xmlSAXHandler sax;
    memset(&sax, 0, sizeof(sax));
    xmlSAXVersion(&sax, 2);
    sax.internalSubset = on_doctype;
    sax.externalSubset = on_doctype;
    sax.entityDecl = on_entity_decl;
    sax.getEntity = on_get_entity;
    sax.getParameterEntity = on_get_param_entity;
    sax.startElementNs = on_start;
    sax.endElementNs = on_end;
    sax.serror = on_error;
    sax.warning = NULL;
    sax.error = NULL;
    sax.fatalError = NULL;
    x->ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, o->name);
    if (x->ctxt == NULL) {
        pt_xfree(a, x);
        return NULL;
    }
    x->ctxt->_private = x;
    /* Not NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE, HUGE: see the top. */
    xmlCtxtUseOptions(x->ctxt, XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_COMPACT | XML_PARSE_NOERROR |
                                   XML_PARSE_NOWARNING);
    x->ctxt->sax->serror = on_error;
    return x;
}

/*
 * libxml2 reads a whole start tag, checking every attribute against every
 * other for duplicates, before startElementNs can count them: 100k attributes
 * in one tag (1.2 MB) cost it 14 s of CPU. So the bytes are pre-scanned: a
 * small state machine over text, tags, quoted values, comments, CDATA and
 * PIs counts '=' outside quotes in each start tag and refuses the tag once it
 * passes twice max_attrs (attributes plus namespace declarations), before
 * libxml2 sees the chunk. A "<!" that is neither a comment nor CDATA (a
 * DOCTYPE) stops the scan: the parser refuses it at its first byte anyway.
 */
static bool scan_attrs(pt__xp_t *x, const unsigned char *p, size_t n)
{
    unsigned max = 2 * x->o.max_attrs;
    for (size_t i = 0; i < n && x->scan != S_OFF; i++) {
        unsigned char c = p[i];
        switch (x->scan) {
        case S_TEXT: {
            /* skip to the next '<' in one go: text is most of the bytes */
            const unsigned char *lt = memchr(p + i, '<', n - i);
            if (lt == NULL)
                return true;
            i = (size_t)(lt - p);
            x->scan = S_LT;
            break;
        }
        case S_LT:
            x->scan = c == '!' ? S_BANG : c == '?' ? S_PI : c == '/' ? S_ETAG : S_STAG;
            x->eqs = 0;
            x->run = 0;
            break;
        case S_BANG:
            x->scan = c == '-' ? S_BANG_DASH : c == '[' ? S_CDATA : S_OFF;
            break;
        case S_BANG_DASH:
            x->scan = c == '-' ? S_COMMENT : S_OFF;
            break;
        case S_COMMENT: /* to "-->" */
        case S_CDATA:   /* to "]]>" */
            if (c == (x->scan == S_COMMENT ? '-' : ']'))
                x->run = x->run < 2 ? x->run + 1 : 2;
            else if (c == '>' && x->run >= 2)
                x->scan = S_TEXT;
            else
                x->run = 0;
            break;
        case S_PI: /* to "?>" */
            if (c == '>' && x->run)
                x->scan = S_TEXT;
            x->run = c == '?';
            break;
        case S_ETAG: {
            const unsigned char *gt = memchr(p + i, '>', n - i);
            if (gt == NULL)
                return true;
            i = (size_t)(gt - p);
            x->scan = S_TEXT;
            break;
        }
        case S_STAG:
            while (i + 1 < n && c != '"' && c != '\'' && c != '>' && c != '=')
                c = p[++i]; /* names and blanks */
            if (c == '"' || c == '\'') {
                x->quote = c;
                x->scan = S_STAG_Q;
            } else if (c == '>') {
                x->scan = S_TEXT;
            } else if (c == '=' && ++x->eqs > max) {
                xp_fail(x, PT_XP_LIMIT, "an element has more than %u attributes or namespace "
                        "declarations", x->o.max_attrs);
                x->line = x->col = 0; /* libxml2 has not seen these bytes: no position */
                return false;
            }
            break;
        case S_STAG_Q: {
            const unsigned char *q = memchr(p + i, x->quote, n - i);
            if (q == NULL)
                return true;
            i = (size_t)(q - p);
            x->scan = S_STAG;
            break;
        }
        default:
            break;
        }
    }
    return true;
}

pt__xp_fail_t pt__xp_feed(pt__xp_t *x, const void *data, size_t len)
{
    if (x->fail != PT_XP_OK)
        return x->fail;
    if (len > x->o.max_size - x->fed) {
        xp_fail(x, PT_XP_LIMIT, "larger than %zu bytes", x->o.max_size);
        return x->fail;
    }
    x->fed += len;
    if (!scan_attrs(x, data, len))
        return x->fail;
    const char *p = data;
    /* libxml2 takes an int length; feed large chunks in pieces. */
    while (len > 0 && x->fail == PT_XP_OK) {
        size_t n = len > (1u << 20) ? (1u << 20) : len;
        xmlParseChunk(x->ctxt, p, (int)n, 0);
        p += n;
        len -= n;
    }
    return x->fail;
}

/*
 * libxml2 2.9 lets some malformed UTF-8 through (an overlong sequence inside
 * CDATA, whether fed whole or in chunks: fuzz.xml2json), and every tree we
 * convert becomes JSON, which must never carry it. Checks every text, CDATA
 * and attribute value of the tree; the offending element's name or NULL.
 */
static const xmlNode *bad_utf8_node(const xmlNode *root)
{
    const xmlNode *n = root;
    while (n != NULL) {
        if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content != NULL &&
            !pt_utf8_valid(n->content, strlen((const char *)n->content)))
            return n->parent != NULL ? n->parent : n;
        if (n->type == XML_ELEMENT_NODE)
            for (const xmlAttr *a = n->properties; a != NULL; a = a->next)
                for (const xmlNode *t = a->children; t != NULL; t = t->next)
                    if (t->content != NULL &&
                        !pt_utf8_valid(t->content, strlen((const char *)t->content)))
                        return n;
        /* depth first, without recursion */
        if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != NULL && n != root && n->next == NULL)
            n = n->parent;
        n = n == NULL || n == root ? NULL : n->next;
    }
    return NULL;
}

pt__xp_fail_t pt__xp_finish(pt__xp_t *x, xmlDocPtr *doc)
{
    *doc = NULL;
    if (x->fail == PT_XP_OK && x->fed == 0)
        xp_fail(x, PT_XP_NOT_XML, "empty document");
    if (x->fail == PT_XP_OK)
        xmlParseChunk(x->ctxt, NULL, 0, 1);
    xmlParserCtxtPtr c = x->ctxt;
    if (x->fail == PT_XP_OK && c->input != NULL && c->input->buf != NULL &&
        c->input->buf->encoder != NULL)
        xp_fail(x, PT_XP_NOT_XML, "only UTF-8 is accepted");
    if (x->fail == PT_XP_OK &&
        (!c->wellFormed || c->myDoc == NULL || !x->seen_root ||
         xmlDocGetRootElement(c->myDoc) == NULL)) {
        x->fail = PT_XP_NOT_XML;
        snprintf(x->msg, sizeof(x->msg), "%s", x->fed == 0 ? "empty document" : "not well-formed");
    }
    if (x->fail == PT_XP_OK && c->myDoc != NULL && c->myDoc->encoding != NULL &&
        xmlStrcasecmp(c->myDoc->encoding, (const xmlChar *)"UTF-8") != 0)
        xp_fail(x, PT_XP_NOT_XML, "only UTF-8 is accepted");
    const xmlNode *bad = x->fail == PT_XP_OK ? bad_utf8_node(xmlDocGetRootElement(c->myDoc)) : NULL;
    if (bad != NULL) {
        xp_fail(x, PT_XP_NOT_XML, "invalid UTF-8 in the text of <%.64s>",
                bad->name != NULL ? (const char *)bad->name : "?");
        x->line = x->col = 0; /* the end of the input would say nothing */
    }
    if (x->fail == PT_XP_OK) {
        *doc = c->myDoc;
        c->myDoc = NULL;
    }
    return x->fail;
}

const char *pt__xp_msg(const pt__xp_t *x) { return x->msg; }
int pt__xp_line(const pt__xp_t *x) { return x->line; }
int pt__xp_col(const pt__xp_t *x) { return x->col; }

void pt__xp_free(pt__xp_t *x)
{
    if (x == NULL)
        return;
    if (x->ctxt != NULL) {
        if (x->ctxt->myDoc != NULL)
            xmlFreeDoc(x->ctxt->myDoc);
        x->ctxt->myDoc = NULL;
        xmlFreeParserCtxt(x->ctxt);
    }
    pt_xfree(x->a, x);
}

int pt__xp_code(pt__xp_fail_t f)
{
    switch (f) {
    case PT_XP_OK:
        return 0;
    case PT_XP_LIMIT:
        return PT_XERR_LIMIT;
    case PT_XP_NOMEM:
        return PT_XERR_NOMEM;
    default:
        return PT_XERR_INVALID;
    }
}

/* ======================= JSON tree ======================= */

static int jv_value(pt__xpool_t *p, pt_jlex_t *lx, const pt_jtok_t *t, pt__jv_t *v,
                    pt_xerr_t *err);

static const char *jdup(pt__xpool_t *p, const pt_jtok_t *t, size_t *len)
{
    if (!(t->flags & PT_JTOK_F_ESC)) {
        *len = t->len;
        return t->s;
    }
    char *d = pt__xpool_alloc(p, t->len + 1);
    if (d == NULL)
        return NULL;
    *len = pt_jstr_decode(t->s, t->len, d);
    d[*len] = '\0';
    return d;
}

static int lex_error(pt_jlex_t *lx, pt_xerr_t *err)
{
    return pt_xerr_set(err, lx->err_code != 0 ? lx->err_code : PT_XERR_INVALID, NULL,
                       "invalid JSON at byte %zu: %s", lx->err_pos,
                       lx->err_msg != NULL ? lx->err_msg : "syntax error");
}

static int jv_value(pt__xpool_t *p, pt_jlex_t *lx, const pt_jtok_t *t, pt__jv_t *v,
                    pt_xerr_t *err)
{
    switch (t->type) {
    case PT_JTOK_NULL:
        v->type = PT_JV_NULL;
        return 0;
    case PT_JTOK_TRUE:
        v->type = PT_JV_TRUE;
        return 0;
    case PT_JTOK_FALSE:
        v->type = PT_JV_FALSE;
        return 0;
    case PT_JTOK_NUMBER:
        v->type = PT_JV_NUM;
        v->numflags = t->flags;
        v->s = t->s;
        v->len = t->len;
        return 0;
    case PT_JTOK_STRING:
        v->type = PT_JV_STR;
        v->s = jdup(p, t, &v->len);
        return v->s == NULL ? pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory") : 0;
    case PT_JTOK_OBJ_BEGIN:
    case PT_JTOK_ARR_BEGIN: {
        bool obj = t->type == PT_JTOK_OBJ_BEGIN;
        v->type = obj ? PT_JV_OBJ : PT_JV_ARR;
        for (;;) {
            pt_jtok_t k;
            int ty = pt_jlex_next(lx, &k);
            if (ty == PT_JTOK_ERROR)
                return lex_error(lx, err);
            if (ty == PT_JTOK_OBJ_END || ty == PT_JTOK_ARR_END)
                return 0;
            pt__jv_t *kid = pt__xpool_alloc(p, sizeof(*kid));
            if (kid == NULL)
                return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
            if (obj) {
                kid->key = jdup(p, &k, &kid->key_len);
                if (kid->key == NULL)
                    return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
                ty = pt_jlex_next(lx, &k);
                if (ty == PT_JTOK_ERROR)
                    return lex_error(lx, err);
            }
            int rc = jv_value(p, lx, &k, kid, err);
            if (rc != 0)
                return rc;
            pt__jv_append(v, kid);
        }
    }
    default:
        return lex_error(lx, err);
    }
}

int pt__jv_parse(pt__xpool_t *p, const char *json, size_t len, unsigned max_depth, pt__jv_t **out,
                 pt_xerr_t *err)
{
    pt_jlex_t *lx = pt_xalloc(p->a, sizeof(*lx));
    if (lx == NULL)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    pt_jkeyset_t ks;
    pt_jkeyset_init(&ks, p->a);
    pt_jlex_init(lx, json, len, max_depth == 0 ? 64 : max_depth);
    pt_jlex_set_keyset(lx, &ks);
    int rc;
    pt__jv_t *v = pt__xpool_alloc(p, sizeof(*v));
    pt_jtok_t t;
    if (v == NULL) {
        rc = pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    } else if (pt_jlex_next(lx, &t) == PT_JTOK_ERROR) {
        rc = lex_error(lx, err);
    } else if ((rc = jv_value(p, lx, &t, v, err)) == 0) {
        if (pt_jlex_next(lx, &t) != PT_JTOK_EOF)
            rc = lex_error(lx, err);
    }
    pt_jkeyset_dispose(&ks);
    pt_xfree(p->a, lx);
    if (rc == 0)
        *out = v;
    return rc;
}

pt__jv_t *pt__jv_get(const pt__jv_t *o, const char *key, size_t klen)
{
    if (o == NULL || o->type != PT_JV_OBJ)
        return NULL;
    for (pt__jv_t *k = o->first; k != NULL; k = k->next)
        if (k->key_len == klen && memcmp(k->key, key, klen) == 0)
            return k;
    return NULL;
}

void pt__jv_append(pt__jv_t *parent, pt__jv_t *kid)
{
    kid->next = NULL;
    if (parent->last != NULL)
        parent->last->next = kid;
    else
        parent->first = kid;
    parent->last = kid;
    parent->n++;
}

const char *pt__jv_type_name(const pt__jv_t *v)
{
    switch (v->type) {
    case PT_JV_NULL:
        return "null";
    case PT_JV_TRUE:
    case PT_JV_FALSE:
        return "boolean";
    case PT_JV_NUM:
        return "number";
    case PT_JV_STR:
        return "string";
    case PT_JV_OBJ:
        return "object";
    default:
        return "array";
    }
}

/* ======================= escaping ======================= */

/* Bytes a JSON string cannot carry as they are: controls, '"' and '\\'. */
static const uint8_t json_esc[256] = {
    [0 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1,
};

int pt__put_json_str(pt_xbuf_t *b, const char *s, size_t n)
{
    int rc = pt_xbuf_reserve(b, n + 2);
    if (rc != 0)
        return rc;
    uint8_t *o = b->data + b->len;
    if (!pt__json_needs_esc(s, n)) { /* the common case: room was reserved */
        o[0] = '"';
        pt__copy(o + 1, s, n);
        o[n + 1] = '"';
        b->len += n + 2;
        return 0;
    }
    b->data[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!json_esc[c])
            continue;
        if ((rc = pt_xbuf_append(b, s + run, i - run)) != 0)
            return rc;
        run = i + 1;
        char esc[8];
        const char *e = esc;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", c);
        }
        if ((rc = pt_xbuf_puts(b, e)) != 0)
            return rc;
    }
    if ((rc = pt_xbuf_append(b, s + run, n - run)) != 0)
        return rc;
    return pt_xbuf_putc(b, '"');
}

int pt__put_xml_text(pt_xbuf_t *b, const char *s, size_t n, bool attr)
{
    int rc = pt_xbuf_reserve(b, n);
    if (rc != 0)
        return rc;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e;
        if (c == '<')
            e = "&lt;";
        else if (c == '>')
            e = "&gt;";
        else if (c == '&')
            e = "&amp;";
        else if (c == '"' && attr)
            e = "&quot;";
        else if (c == '\t' && attr)
            e = "&#9;";
        else if (c == '\n' && attr)
            e = "&#10;";
        else if (c == '\r')
            e = "&#13;";
        else if (c < 0x20 && c != '\t' && c != '\n')
            return PT_XERR_INVALID;
        else if (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBF &&
                 ((unsigned char)s[i + 2] == 0xBE || (unsigned char)s[i + 2] == 0xBF))
            return PT_XERR_INVALID; /* U+FFFE / U+FFFF */
        else
            continue;
        if ((rc = pt_xbuf_append(b, s + run, i - run)) != 0 || (rc = pt_xbuf_puts(b, e)) != 0)
            return rc;
        run = i + 1;
    }
    return pt_xbuf_append(b, s + run, n - run);
}

bool pt__is_xml_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    int colons = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool start = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
        bool other = start || (c >= '0' && c <= '9') || c == '-' || c == '.';
        if (c == ':') {
            /* at most one colon, not first or last: a QName */
            if (++colons > 1 || i == 0 || i + 1 == n)
                return false;
            continue;
        }
        if (i == 0 || s[i - 1] == ':' ? !start : !other)
            return false;
    }
    /* "xml..." names are reserved; xmlns is allowed as an attribute only (checked by callers) */
    return true;
}

const char *pt__xml_qname(const xmlNs *ns, const xmlChar *name, char *b, size_t n)
{
    if (ns != NULL && ns->prefix != NULL)
        snprintf(b, n, "%s:%s", (const char *)ns->prefix, (const char *)name);
    else
        snprintf(b, n, "%s", (const char *)name);
    return b;
}
