/*
 * xmljson.c -- generic XML <-> JSON (the convention is in xmljson.h).
 *
 * XML -> JSON parses with the safe push parser (xml_util.c) and walks the
 * tree once it is complete: "repeated names become arrays" needs all of an
 * element's children before the first can be written. Siblings are grouped
 * by name with a sort of their indices, so a flat list of 100k children costs
 * O(n log n), not O(n^2).
 */
#include "xml_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/xmljson.h"

/* ======================= XML -> JSON ======================= */

static int put_name(pt_xbuf_t *b, const xmlNs *ns, const xmlChar *name, const char *pre)
{
    /* a quoted JSON key: pre + [prefix:]name */
    int rc;
    if ((rc = pt_xbuf_putc(b, '"')) != 0 || (rc = pt_xbuf_puts(b, pre)) != 0)
        return rc;
    if (ns != NULL && ns->prefix != NULL) {
        if ((rc = pt_xbuf_puts(b, (const char *)ns->prefix)) != 0 || (rc = pt_xbuf_putc(b, ':')))
            return rc;
    }
    /* names are XML names: nothing to escape but be safe about '"' and '\\' */
    size_t start = b->len - 1;
    (void)start;
    const char *s = (const char *)name;
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            if ((rc = pt_xbuf_putc(b, '\\')) != 0)
                return rc;
        if ((rc = pt_xbuf_putc(b, (uint8_t)*s)) != 0)
            return rc;
    }
    return pt_xbuf_puts(b, "\":");
}

static bool same_name(const xmlNode *a, const xmlNode *b)
{
    if (!xmlStrEqual(a->name, b->name))
        return false;
    const xmlChar *pa = a->ns != NULL ? a->ns->prefix : NULL;
    const xmlChar *pb = b->ns != NULL ? b->ns->prefix : NULL;
    return xmlStrEqual(pa, pb);
}

typedef struct kid {
    const xmlNode *n;
    size_t idx;
} kid_t;

static int cmp_kid(const void *pa, const void *pb)
{
    const kid_t *a = pa, *b = pb;
    const xmlChar *xa = a->n->ns != NULL ? a->n->ns->prefix : NULL;
    const xmlChar *xb = b->n->ns != NULL ? b->n->ns->prefix : NULL;
    int c = xmlStrcmp(xa, xb);
    if (c == 0)
        c = xmlStrcmp(a->n->name, b->n->name);
    if (c == 0)
        c = a->idx < b->idx ? -1 : a->idx > b->idx;
    return c;
}

static int put_text_of(pt_xbuf_t *out, const xmlNode *e, bool skip_ws_only)
{
    /* concatenated text children as one JSON string */
    size_t tot = 0;
    bool all_ws = true;
    for (const xmlNode *c = e->children; c != NULL; c = c->next) {
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            continue;
        for (const xmlChar *p = c->content; p != NULL && *p != '\0'; p++, tot++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                all_ws = false;
    }
    if (skip_ws_only && all_ws)
        return 1; /* nothing to write */
    int rc = pt_xbuf_putc(out, '"');
    if (rc != 0)
        return rc;
    for (const xmlNode *c = e->children; c != NULL; c = c->next) {
        if ((c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) || c->content == NULL)
            continue;
        size_t mark = out->len;
        if ((rc = pt__put_json_str(out, (const char *)c->content, strlen((const char *)c->content))))
            return rc;
        /* drop the quotes of the piece: move it back one byte */
        size_t n = out->len - mark - 2;
        memmove(out->data + mark, out->data + mark + 1, n);
        out->len = mark + n;
    }
    (void)tot;
    return pt_xbuf_putc(out, '"');
}

int pt__xml_generic_value(const xmlNode *e, pt_xbuf_t *out, unsigned depth, unsigned max_depth)
{
    if (depth > max_depth)
        return PT_XERR_LIMIT;
    size_t nkids = 0;
    for (const xmlNode *c = e->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            nkids++;
    bool has_attr = e->properties != NULL || e->nsDef != NULL;
    int rc;
    if (nkids == 0 && !has_attr) {
        rc = put_text_of(out, e, false);
        return rc < 0 ? rc : 0;
    }
    if ((rc = pt_xbuf_putc(out, '{')) != 0)
        return rc;
    bool comma = false;
    for (const xmlNs *ns = e->nsDef; ns != NULL; ns = ns->next) {
        if (comma && (rc = pt_xbuf_putc(out, ',')) != 0)
            return rc;
        comma = true;
        if ((rc = pt_xbuf_puts(out, ns->prefix != NULL ? "\"@xmlns:" : "\"@xmlns")) != 0)
            return rc;
        if (ns->prefix != NULL && (rc = pt_xbuf_puts(out, (const char *)ns->prefix)) != 0)
            return rc;
        if ((rc = pt_xbuf_puts(out, "\":")) != 0)
            return rc;
        const char *h = ns->href != NULL ? (const char *)ns->href : "";
        if ((rc = pt__put_json_str(out, h, strlen(h))) != 0)
            return rc;
    }
    for (const xmlAttr *a = e->properties; a != NULL; a = a->next) {
        if (comma && (rc = pt_xbuf_putc(out, ',')) != 0)
            return rc;
        comma = true;
        if ((rc = put_name(out, a->ns, a->name, "@")) != 0)
            return rc;
        xmlChar *v = xmlNodeListGetString(e->doc, a->children, 1);
        rc = pt__put_json_str(out, v != NULL ? (const char *)v : "", v != NULL ? strlen((char *)v) : 0);
        xmlFree(v);
        if (rc != 0)
            return rc;
    }
    /* text beside children / attributes */
    size_t mark = out->len;
    if (comma && (rc = pt_xbuf_putc(out, ',')) != 0)
        return rc;
    if ((rc = pt_xbuf_puts(out, "\"#text\":")) != 0)
        return rc;
    rc = put_text_of(out, e, true);
    if (rc < 0)
        return rc;
    if (rc == 1)
        out->len = mark;
    else
        comma = true;
    rc = 0;
    if (nkids > 0) {
        /* group children by name: sort (name, index), then emit each group at
         * the position of its first member */
        const pt_allocator_t *al = out->a != NULL ? out->a : pt_allocator_default();
        kid_t *k = pt_xalloc(al, nkids * sizeof(*k));
        size_t *first = pt_xalloc(al, nkids * sizeof(*first)); /* group start, by idx */
        if (k == NULL || first == NULL) {
            pt_xfree(al, k);
            pt_xfree(al, first);
            return PT_XERR_NOMEM;
        }
        size_t i = 0;
        for (const xmlNode *c = e->children; c != NULL; c = c->next)
            if (c->type == XML_ELEMENT_NODE) {
                k[i].n = c;
                k[i].idx = i;
                i++;
            }
        qsort(k, nkids, sizeof(*k), cmp_kid);
        /* first[idx of a group's first member] = sorted position of the group start, else SIZE_MAX */
        for (i = 0; i < nkids; i++)
            first[i] = SIZE_MAX;
        for (i = 0; i < nkids; i++)
            if (i == 0 || !same_name(k[i - 1].n, k[i].n))
                first[k[i].idx] = i;
        for (size_t idx = 0; idx < nkids && rc == 0; idx++) {
            size_t s = first[idx];
            if (s == SIZE_MAX)
                continue;
            size_t end = s + 1;
            while (end < nkids && same_name(k[s].n, k[end].n))
                end++;
            if (comma && (rc = pt_xbuf_putc(out, ',')) != 0)
                break;
            comma = true;
            if ((rc = put_name(out, k[s].n->ns, k[s].n->name, "")) != 0)
                break;
            bool arr = end - s > 1;
            if (arr && (rc = pt_xbuf_putc(out, '[')) != 0)
                break;
            for (size_t j = s; j < end && rc == 0; j++) {
                if (j > s && (rc = pt_xbuf_putc(out, ',')) != 0)
                    break;
                rc = pt__xml_generic_value(k[j].n, out, depth + 1, max_depth);
            }
            if (rc == 0 && arr)
                rc = pt_xbuf_putc(out, ']');
        }
        pt_xfree(al, k);
        pt_xfree(al, first);
        if (rc != 0)
            return rc;
    }
    return pt_xbuf_putc(out, '}');
}

struct pt_xml2json {
    const pt_allocator_t *a;
    pt__xp_t *xp;
    pt_xmljson_opts_t o;
};

static void fill_opts(pt_xmljson_opts_t *o, const pt_xmljson_opts_t *in)
{
    if (in != NULL)
        *o = *in;
    else
        memset(o, 0, sizeof(*o));
    if (o->max_size == 0)
        o->max_size = 8u << 20;
    if (o->max_depth == 0)
        o->max_depth = 64;
    if (o->max_attrs == 0)
        o->max_attrs = 64;
}

pt_xml2json_t *pt_xml2json_new(const pt_allocator_t *a, const pt_xmljson_opts_t *opts)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt_xml2json_t *c = pt_xalloc(a, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->a = a;
    fill_opts(&c->o, opts);
    pt__xp_opts_t xo = {c->o.max_size, c->o.max_depth, c->o.max_attrs, NULL};
    c->xp = pt__xp_new(a, &xo);
    if (c->xp == NULL) {
        pt_xfree(a, c);
        return NULL;
    }
    return c;
}

static int xp_err(const pt__xp_t *xp, pt__xp_fail_t f, pt_xerr_t *err)
{
    if (pt__xp_line(xp) > 0)
        return pt_xerr_set(err, pt__xp_code(f), NULL, "XML line %d column %d: %s", pt__xp_line(xp),
                           pt__xp_col(xp), pt__xp_msg(xp));
    return pt_xerr_set(err, pt__xp_code(f), NULL, "XML: %s", pt__xp_msg(xp));
}

int pt_xml2json_feed(pt_xml2json_t *c, const void *chunk, size_t len, pt_xerr_t *err)
{
    pt__xp_fail_t f = pt__xp_feed(c->xp, chunk, len);
    return f == PT_XP_OK ? 0 : xp_err(c->xp, f, err);
}

int pt_xml2json_finish(pt_xml2json_t *c, pt_xbuf_t *out, pt_xerr_t *err)
{
    xmlDocPtr doc;
    pt__xp_fail_t f = pt__xp_finish(c->xp, &doc);
    if (f != PT_XP_OK)
        return xp_err(c->xp, f, err);
    size_t mark = out->len;
    const xmlNode *root = xmlDocGetRootElement(doc);
    int rc = pt_xbuf_putc(out, '{');
    if (rc == 0)
        rc = put_name(out, root->ns, root->name, "");
    if (rc == 0)
        rc = pt__xml_generic_value(root, out, 1, c->o.max_depth);
    if (rc == 0)
        rc = pt_xbuf_putc(out, '}');
    xmlFreeDoc(doc);
    if (rc != 0) {
        out->len = mark;
        return pt_xerr_set(err, rc, NULL, rc == PT_XERR_LIMIT ? "JSON output over the size limit"
                                                              : "out of memory");
    }
    return 0;
}

void pt_xml2json_free(pt_xml2json_t *c)
{
    if (c == NULL)
        return;
    pt__xp_free(c->xp);
    pt_xfree(c->a, c);
}

int pt_xml_to_json(const char *xml, size_t len, const pt_xmljson_opts_t *opts, pt_xbuf_t *out,
                   pt_xerr_t *err)
{
    pt_xml2json_t *c = pt_xml2json_new(out->a, opts);
    if (c == NULL)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    int rc = pt_xml2json_feed(c, xml, len, err);
    if (rc == 0)
        rc = pt_xml2json_finish(c, out, err);
    pt_xml2json_free(c);
    return rc;
}

/* ======================= JSON -> XML ======================= */

static int gen_element(const char *name, size_t nlen, const pt__jv_t *v, pt_xbuf_t *out,
                       pt_xpath_t *path, pt_xerr_t *err);

static int scalar_text(const pt__jv_t *v, pt_xbuf_t *out, bool attr, pt_xpath_t *path,
                       pt_xerr_t *err)
{
    switch (v->type) {
    case PT_JV_NULL:
        return 0;
    case PT_JV_TRUE:
        return pt_xbuf_puts(out, "true");
    case PT_JV_FALSE:
        return pt_xbuf_puts(out, "false");
    case PT_JV_NUM:
        return pt_xbuf_append(out, v->s, v->len);
    case PT_JV_STR: {
        int rc = pt__put_xml_text(out, v->s, v->len, attr);
        if (rc == PT_XERR_INVALID)
            return pt_xerr_set(err, rc, path->buf, "string holds a character XML cannot carry");
        return rc;
    }
    default:
        return pt_xerr_set(err, PT_XERR_INVALID, path->buf, "expected a string, number, boolean "
                                                            "or null, got %s",
                           pt__jv_type_name(v));
    }
}

static int check_name(const char *s, size_t n, pt_xpath_t *path, pt_xerr_t *err)
{
    if (!pt__is_xml_name(s, n))
        return pt_xerr_set(err, PT_XERR_INVALID, path->buf, "key is not an XML name");
    return 0;
}

int pt__json_generic_content(const pt__jv_t *v, pt_xbuf_t *out, pt_xpath_t *path, pt_xerr_t *err)
{
    int rc;
    if (v->type != PT_JV_OBJ) {
        if ((rc = pt_xbuf_putc(out, '>')) != 0)
            return rc;
        return scalar_text(v, out, false, path, err);
    }
    /* attributes first */
    for (const pt__jv_t *k = v->first; k != NULL; k = k->next) {
        if (k->key_len < 1 || k->key[0] != '@')
            continue;
        size_t m = pt_xpath_push_field(path, k->key, k->key_len);
        if ((rc = check_name(k->key + 1, k->key_len - 1, path, err)) != 0)
            return rc;
        if ((rc = pt_xbuf_putc(out, ' ')) != 0 || (rc = pt_xbuf_append(out, k->key + 1, k->key_len - 1)) ||
            (rc = pt_xbuf_puts(out, "=\"")) != 0)
            return rc;
        if ((rc = scalar_text(k, out, true, path, err)) != 0)
            return rc;
        if ((rc = pt_xbuf_putc(out, '"')) != 0)
            return rc;
        pt_xpath_pop(path, m);
    }
    if ((rc = pt_xbuf_putc(out, '>')) != 0)
        return rc;
    for (const pt__jv_t *k = v->first; k != NULL; k = k->next) {
        if (k->key_len >= 1 && k->key[0] == '@')
            continue;
        size_t m = pt_xpath_push_field(path, k->key, k->key_len);
        if (k->key_len == 5 && memcmp(k->key, "#text", 5) == 0) {
            rc = scalar_text(k, out, false, path, err);
        } else if ((rc = check_name(k->key, k->key_len, path, err)) != 0) {
            return rc;
        } else if (k->type == PT_JV_ARR) {
            size_t i = 0;
            for (const pt__jv_t *it = k->first; it != NULL && rc == 0; it = it->next, i++) {
                size_t mi = pt_xpath_push_index(path, i);
                if (it->type == PT_JV_ARR)
                    rc = pt_xerr_set(err, PT_XERR_INVALID, path->buf,
                                     "arrays of arrays have no XML form");
                else
                    rc = gen_element(k->key, k->key_len, it, out, path, err);
                pt_xpath_pop(path, mi);
            }
        } else {
            rc = gen_element(k->key, k->key_len, k, out, path, err);
        }
        if (rc != 0)
            return rc;
        pt_xpath_pop(path, m);
    }
    return 0;
}

static int gen_element(const char *name, size_t nlen, const pt__jv_t *v, pt_xbuf_t *out,
                       pt_xpath_t *path, pt_xerr_t *err)
{
    int rc;
    if ((rc = pt_xbuf_putc(out, '<')) != 0 || (rc = pt_xbuf_append(out, name, nlen)) != 0)
        return rc;
    if ((rc = pt__json_generic_content(v, out, path, err)) != 0)
        return rc;
    if ((rc = pt_xbuf_puts(out, "</")) != 0 || (rc = pt_xbuf_append(out, name, nlen)) != 0)
        return rc;
    return pt_xbuf_putc(out, '>');
}

int pt_json_to_xml(const char *json, size_t len, const pt_xmljson_opts_t *opts, pt_xbuf_t *out,
                   pt_xerr_t *err)
{
    pt_xmljson_opts_t o;
    fill_opts(&o, opts);
    if (len > o.max_size)
        return pt_xerr_set(err, PT_XERR_LIMIT, NULL, "JSON body larger than %zu bytes", o.max_size);
    pt__xpool_t pool;
    pt__xpool_init(&pool, out->a, 0);
    size_t mark = out->len;
    pt__jv_t *v = NULL;
    pt_xpath_t path;
    pt_xpath_init(&path);
    int rc = pt__jv_parse(&pool, json, len, o.max_depth, &v, err);
    if (rc == 0 && (v->type != PT_JV_OBJ || v->n != 1))
        rc = pt_xerr_set(err, PT_XERR_INVALID, NULL,
                         "expected an object with exactly one key (the root element)");
    if (rc == 0 && v->first->type == PT_JV_ARR)
        rc = pt_xerr_set(err, PT_XERR_INVALID, NULL, "the root element cannot be an array");
    if (rc == 0) {
        const pt__jv_t *r = v->first;
        size_t m = pt_xpath_push_field(&path, r->key, r->key_len);
        if ((rc = check_name(r->key, r->key_len, &path, err)) == 0 &&
            (rc = pt_xbuf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")) == 0)
            rc = gen_element(r->key, r->key_len, r, out, &path, err);
        pt_xpath_pop(&path, m);
        if (rc == PT_XERR_LIMIT || rc == PT_XERR_NOMEM)
            pt_xerr_set(err, rc, NULL, rc == PT_XERR_LIMIT ? "XML output over the size limit"
                                                           : "out of memory");
    }
    pt__xpool_dispose(&pool);
    if (rc != 0)
        out->len = mark;
    return rc;
}
