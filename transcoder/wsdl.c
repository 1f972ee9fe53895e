/*
 * wsdl.c -- WSDL 1.1 + XSD loader: files -> the immutable model of soap_internal.h.
 *
 * Loading happens in three steps:
 *  1. read the WSDL and, transitively, every wsdl:import / xs:import /
 *     xs:include it names (local paths only, resolved against the importing
 *     file; any URL scheme is a config error), each parsed by the safe parser;
 *  2. index the top-level definitions: messages, portTypes, bindings,
 *     services, and the schemas' elements, complexTypes, simpleTypes and
 *     attributes, keyed by {namespace}name;
 *  3. walk every SOAP port's operations and build, on demand, the types they
 *     reach. Unreachable types are never built, so an unsupported construct
 *     somewhere unused in a big WSDL does not stop the gateway; a reachable one
 *     is an error naming file:line and the construct.
 */
#include "soap_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WSDL_NS "http://schemas.xmlsoap.org/wsdl/"
#define WSDL_SOAP11 "http://schemas.xmlsoap.org/wsdl/soap/"
#define WSDL_SOAP12 "http://schemas.xmlsoap.org/wsdl/soap12/"
#define WSDL20_NS "http://www.w3.org/ns/wsdl"
#define XML_NS "http://www.w3.org/XML/1998/namespace"

/* ======================= loader state ======================= */

typedef struct ent {
    const char *ns, *name;
    xmlNode *node;
    int schema; /* index into ld->schemas, -1 for WSDL definitions */
    void *built;
    uint8_t state; /* 0 new, 1 building, 2 done */
} ent_t;

typedef struct table {
    ent_t *v;
    size_t n, cap;
} table_t;

typedef struct schema {
    const char *tns;
    bool qual_el, qual_attr;
} schema_t;

typedef struct ld {
    pt_wsdl_t *w;
    pt__xpool_t *pool;
    const pt_allocator_t *a;
    pt_wsdl_opts_t o;
    pt_wsdl_err_t *err;
    int rc;
    /* loaded documents */
    xmlDocPtr docs[256];
    char *paths[256];
    size_t doc_cnt;
    schema_t *schemas;
    size_t schema_cnt, schema_cap;
    table_t messages, port_types, bindings, services;
    table_t elements, ctypes, stypes, attrs;
    pt_xst_t *builtins[64];
} ld_t;

static int fail(ld_t *l, const xmlNode *n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ld_t *l, const xmlNode *n, int code, const char *fmt, ...)
{
    if (l->rc != 0)
        return l->rc;
    l->rc = code;
    if (l->err != NULL) {
        const char *f = n != NULL && n->doc != NULL && n->doc->URL != NULL
                            ? (const char *)n->doc->URL
                            : "";
        snprintf(l->err->file, sizeof(l->err->file), "%s", f);
        l->err->line = n != NULL ? (int)xmlGetLineNo(n) : 0;
        if (l->err->line < 0)
            l->err->line = 0;
        l->err->col = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err->msg, sizeof(l->err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

static int nomem(ld_t *l) { return fail(l, NULL, PT_XERR_NOMEM, "out of memory"); }

static bool is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->ns != NULL && xmlStrEqual(n->ns->href, BAD_CAST ns) &&
           xmlStrEqual(n->name, BAD_CAST name);
}

static bool in_ns(const xmlNode *n, const char *ns)
{
    return n->type == XML_ELEMENT_NODE && n->ns != NULL && xmlStrEqual(n->ns->href, BAD_CAST ns);
}

/* attribute value copied into the pool ("" when absent is NOT done here: NULL) */
static const char *attr(ld_t *l, const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    if (v == NULL)
        return NULL;
    const char *r = pt__xpool_strdup(l->pool, (const char *)v);
    xmlFree(v);
    if (r == NULL)
        nomem(l);
    return r;
}

/* Resolves a QName attribute value against the namespaces in scope of n. */
static int qname(ld_t *l, const xmlNode *n, const char *v, const char **ns, const char **local)
{
    *ns = "";
    *local = v;
    const char *c = strchr(v, ':');
    const xmlChar *prefix = NULL;
    char pbuf[128];
    if (c != NULL) {
        size_t pl = (size_t)(c - v);
        if (pl >= sizeof(pbuf))
            return fail(l, n, PT_XERR_INVALID, "QName \"%s\": prefix too long", v);
        memcpy(pbuf, v, pl);
        pbuf[pl] = '\0';
        prefix = BAD_CAST pbuf;
        *local = c + 1;
    } else {
        *local = v;
    }
    xmlNsPtr x = xmlSearchNs(n->doc, (xmlNode *)n, prefix);
    if (x == NULL && prefix != NULL)
        return fail(l, n, PT_XERR_INVALID, "QName \"%s\": prefix \"%s\" is not declared", v,
                    pbuf);
    *ns = x != NULL ? pt__xpool_strdup(l->pool, (const char *)x->href) : "";
    if (*ns == NULL)
        return nomem(l);
    return 0;
}

static int tput(ld_t *l, table_t *t, const char *ns, const char *name, xmlNode *node, int schema,
                const char *what)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].ns, ns) == 0 && strcmp(t->v[i].name, name) == 0) {
            if (t->v[i].node == node)
                return 0;
            return fail(l, node, PT_XERR_INVALID, "%s {%s}%s defined twice (also at line %ld)", what,
                        ns, name, xmlGetLineNo(t->v[i].node));
        }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        ent_t *v = l->a->realloc(l->a->ud, t->v, nc * sizeof(*v));
        if (v == NULL)
            return nomem(l);
        t->v = v;
        t->cap = nc;
    }
    t->v[t->n++] = (ent_t){ns, name, node, schema, NULL, 0};
    return 0;
}

static ent_t *tget(table_t *t, const char *ns, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].ns, ns) == 0 && strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

/* ======================= step 1: files ======================= */

static bool is_url(const char *s)
{
    /* "scheme:" with a scheme of 2+ letters (so "C:\..." would not count) */
    size_t i = 0;
    while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
           (i > 0 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' || s[i] == '.')))
        i++;
    return i >= 2 && s[i] == ':';
}

static int parse_buf(ld_t *l, const char *name, const char *data, size_t len, xmlDocPtr *doc,
                     const xmlNode *from)
{
    pt__xp_opts_t xo = {l->o.max_file_size, l->o.max_depth, 1024, name};
    pt__xp_t *xp = pt__xp_new(l->a, &xo);
    if (xp == NULL)
        return nomem(l);
    pt__xp_fail_t f = pt__xp_feed(xp, data, len);
    if (f == PT_XP_OK)
        f = pt__xp_finish(xp, doc);
    if (f != PT_XP_OK) {
        l->rc = pt__xp_code(f);
        if (l->err != NULL) {
            snprintf(l->err->file, sizeof(l->err->file), "%s", name);
            l->err->line = pt__xp_line(xp);
            l->err->col = pt__xp_col(xp);
            snprintf(l->err->msg, sizeof(l->err->msg), "%s", pt__xp_msg(xp));
        }
        (void)from;
    }
    pt__xp_free(xp);
    return l->rc;
}

static int read_file(ld_t *l, const char *path, const xmlNode *from, xmlDocPtr *doc)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (from != NULL)
            return fail(l, from, PT_XERR_NOT_FOUND, "cannot read \"%s\": %s", path,
                        strerror(errno));
        l->rc = PT_XERR_NOT_FOUND;
        if (l->err != NULL) {
            snprintf(l->err->file, sizeof(l->err->file), "%s", path);
            snprintf(l->err->msg, sizeof(l->err->msg), "cannot read: %s", strerror(errno));
        }
        return l->rc;
    }
    size_t cap = 65536, len = 0;
    char *buf = pt_xalloc(l->a, cap);
    int rc = 0;
    while (buf != NULL) {
        if (len == cap) {
            if (cap >= l->o.max_file_size + 1)
                break;
            char *nb = l->a->realloc(l->a->ud, buf, cap * 2);
            if (nb == NULL) {
                pt_xfree(l->a, buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    if (buf == NULL)
        return nomem(l);
    if (len > l->o.max_file_size)
        rc = fail(l, from, PT_XERR_LIMIT, "\"%s\" is larger than %zu bytes", path,
                  l->o.max_file_size);
    else
        rc = parse_buf(l, path, buf, len, doc, from);
    pt_xfree(l->a, buf);
    return rc;
}

/* Loads `loc` relative to the document of `from`; *out is the root element
 * (NULL when the file was loaded before: nothing more to do). */
static int load_rel(ld_t *l, const xmlNode *from, const char *loc, xmlNode **out)
{
    *out = NULL;
    if (is_url(loc))
        return fail(l, from, PT_XERR_INVALID,
                    "import of \"%s\" refused: only local files may be imported (no network)",
                    loc);
    char path[PATH_MAX];
    const char *base = (const char *)from->doc->URL;
    const char *slash = base != NULL ? strrchr(base, '/') : NULL;
    int n;
    if (loc[0] == '/' || slash == NULL)
        n = snprintf(path, sizeof(path), "%s", loc);
    else
        n = snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - base), base, loc);
    if (n < 0 || (size_t)n >= sizeof(path))
        return fail(l, from, PT_XERR_INVALID, "import path too long");
    char real[PATH_MAX];
    const char *key = realpath(path, real) != NULL ? real : path;
    for (size_t i = 0; i < l->doc_cnt; i++)
        if (strcmp(l->paths[i], key) == 0)
            return 0;
    if (l->doc_cnt >= l->o.max_files || l->doc_cnt >= 256)
        return fail(l, from, PT_XERR_LIMIT, "more than %u WSDL/XSD files", l->o.max_files);
    xmlDocPtr doc = NULL;
    if (read_file(l, path, from, &doc) != 0)
        return l->rc;
    l->paths[l->doc_cnt] = pt__xpool_strdup(l->pool, key);
    l->docs[l->doc_cnt++] = doc;
    if (l->paths[l->doc_cnt - 1] == NULL)
        return nomem(l);
    *out = xmlDocGetRootElement(doc);
    return 0;
}

/* ======================= step 2: index ======================= */

static int index_schema(ld_t *l, xmlNode *s, const char *tns_override);

static int schema_add(ld_t *l, xmlNode *s, const char *tns)
{
    if (l->schema_cnt == l->schema_cap) {
        size_t nc = l->schema_cap ? l->schema_cap * 2 : 8;
        schema_t *v = l->a->realloc(l->a->ud, l->schemas, nc * sizeof(*v));
        if (v == NULL)
            return -1;
        l->schemas = v;
        l->schema_cap = nc;
    }
    const char *ef = attr(l, s, "elementFormDefault");
    const char *af = attr(l, s, "attributeFormDefault");
    l->schemas[l->schema_cnt] = (schema_t){tns, ef != NULL && strcmp(ef, "qualified") == 0,
                                           af != NULL && strcmp(af, "qualified") == 0};
    return (int)l->schema_cnt++;
}

static int index_schema(ld_t *l, xmlNode *s, const char *tns_override)
{
    if (!is_el(s, PT_XS_NS, "schema"))
        return fail(l, s, PT_XERR_INVALID, "expected an xs:schema element, got <%s>",
                    (const char *)s->name);
    const char *tns = attr(l, s, "targetNamespace");
    if (l->rc != 0)
        return l->rc;
    if (tns == NULL)
        tns = tns_override != NULL ? tns_override : "";
    int si = schema_add(l, s, tns);
    if (si < 0)
        return nomem(l);
    for (xmlNode *c = s->children; c != NULL && l->rc == 0; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!in_ns(c, PT_XS_NS))
            continue; /* foreign annotations */
        const char *nm = (const char *)c->name;
        const char *name = attr(l, c, "name");
        if (strcmp(nm, "import") == 0 || strcmp(nm, "include") == 0) {
            const char *loc = attr(l, c, "schemaLocation");
            if (loc == NULL) {
                if (strcmp(nm, "include") == 0)
                    fail(l, c, PT_XERR_INVALID, "xs:include without schemaLocation");
                continue; /* an import by namespace: resolved among the loaded schemas */
            }
            xmlNode *root;
            if (load_rel(l, c, loc, &root) != 0 || root == NULL)
                continue;
            if (strcmp(nm, "include") == 0) {
                const char *itns = attr(l, root, "targetNamespace");
                if (itns != NULL && strcmp(itns, tns) != 0)
                    fail(l, c, PT_XERR_INVALID,
                         "xs:include of a schema with another targetNamespace (%s)", itns);
                else
                    index_schema(l, root, tns);
            } else {
                index_schema(l, root, NULL);
            }
        } else if (strcmp(nm, "element") == 0) {
            if (name != NULL)
                tput(l, &l->elements, tns, name, c, si, "element");
        } else if (strcmp(nm, "complexType") == 0) {
            if (name != NULL)
                tput(l, &l->ctypes, tns, name, c, si, "complexType");
        } else if (strcmp(nm, "simpleType") == 0) {
            if (name != NULL)
                tput(l, &l->stypes, tns, name, c, si, "simpleType");
        } else if (strcmp(nm, "attribute") == 0) {
            if (name != NULL)
                tput(l, &l->attrs, tns, name, c, si, "attribute");
        } else if (strcmp(nm, "redefine") == 0 || strcmp(nm, "override") == 0) {
            fail(l, c, PT_XERR_INVALID, "xs:%s is not supported", nm);
        }
        /* annotation, notation, group, attributeGroup: errors only when used */
    }
    return l->rc;
}

static int index_wsdl(ld_t *l, xmlNode *d)
{
    if (is_el(d, WSDL20_NS, "description"))
        return fail(l, d, PT_XERR_INVALID, "WSDL 2.0 is not supported (WSDL 1.1 only)");
    if (!is_el(d, WSDL_NS, "definitions"))
        return fail(l, d, PT_XERR_INVALID, "not a WSDL 1.1 document (root <%s>)",
                    (const char *)d->name);
    const char *tns = attr(l, d, "targetNamespace");
    if (tns == NULL)
        tns = "";
    for (xmlNode *c = d->children; c != NULL && l->rc == 0; c = c->next) {
        if (!in_ns(c, WSDL_NS))
            continue;
        const char *nm = (const char *)c->name;
        const char *name = attr(l, c, "name");
        if (strcmp(nm, "import") == 0) {
            const char *loc = attr(l, c, "location");
            xmlNode *root;
            if (loc == NULL) {
                fail(l, c, PT_XERR_INVALID, "wsdl:import without location");
            } else if (load_rel(l, c, loc, &root) == 0 && root != NULL) {
                if (is_el(root, PT_XS_NS, "schema"))
                    index_schema(l, root, NULL);
                else
                    index_wsdl(l, root);
            }
        } else if (strcmp(nm, "types") == 0) {
            for (xmlNode *s = c->children; s != NULL && l->rc == 0; s = s->next)
                if (is_el(s, PT_XS_NS, "schema"))
                    index_schema(l, s, NULL);
        } else if (name == NULL) {
            continue;
        } else if (strcmp(nm, "message") == 0) {
            tput(l, &l->messages, tns, name, c, -1, "message");
        } else if (strcmp(nm, "portType") == 0) {
            tput(l, &l->port_types, tns, name, c, -1, "portType");
        } else if (strcmp(nm, "binding") == 0) {
            tput(l, &l->bindings, tns, name, c, -1, "binding");
        } else if (strcmp(nm, "service") == 0) {
            tput(l, &l->services, tns, name, c, -1, "service");
        }
    }
    return l->rc;
}

/* ======================= step 3: types ======================= */

typedef struct builtin {
    const char *name;
    pt_xprim_t prim;
    int8_t bounds; /* 0 none, 1 nonneg, 2 pos, 3 nonpos, 4 neg, 5+ sized */
    bool small;
    int bits; /* for sized: signed bits (negative = unsigned) */
} builtin_t;

static const builtin_t builtins[] = {
    {"string", PT_XSP_STRING, 0, false, 0},
    {"normalizedString", PT_XSP_STRING, 0, false, 0},
    {"token", PT_XSP_STRING, 0, false, 0},
    {"language", PT_XSP_STRING, 0, false, 0},
    {"Name", PT_XSP_STRING, 0, false, 0},
    {"NCName", PT_XSP_STRING, 0, false, 0},
    {"ID", PT_XSP_STRING, 0, false, 0},
    {"IDREF", PT_XSP_STRING, 0, false, 0},
    {"IDREFS", PT_XSP_STRING, 0, false, 0},
    {"ENTITY", PT_XSP_STRING, 0, false, 0},
    {"ENTITIES", PT_XSP_STRING, 0, false, 0},
    {"NMTOKEN", PT_XSP_STRING, 0, false, 0},
    {"NMTOKENS", PT_XSP_STRING, 0, false, 0},
    {"anyURI", PT_XSP_STRING, 0, false, 0},
    {"QName", PT_XSP_STRING, 0, false, 0},
    {"NOTATION", PT_XSP_STRING, 0, false, 0},
    {"boolean", PT_XSP_BOOLEAN, 0, false, 0},
    {"decimal", PT_XSP_DECIMAL, 0, false, 0},
    {"float", PT_XSP_FLOAT, 0, false, 0},
    {"double", PT_XSP_DOUBLE, 0, false, 0},
    {"integer", PT_XSP_INTEGER, 0, false, 0},
    {"nonNegativeInteger", PT_XSP_INTEGER, 1, false, 0},
    {"positiveInteger", PT_XSP_INTEGER, 2, false, 0},
    {"nonPositiveInteger", PT_XSP_INTEGER, 3, false, 0},
    {"negativeInteger", PT_XSP_INTEGER, 4, false, 0},
    {"long", PT_XSP_INTEGER, 5, false, 64},
    {"int", PT_XSP_INTEGER, 5, true, 32},
    {"short", PT_XSP_INTEGER, 5, true, 16},
    {"byte", PT_XSP_INTEGER, 5, true, 8},
    {"unsignedLong", PT_XSP_INTEGER, 5, false, -64},
    {"unsignedInt", PT_XSP_INTEGER, 5, true, -32},
    {"unsignedShort", PT_XSP_INTEGER, 5, true, -16},
    {"unsignedByte", PT_XSP_INTEGER, 5, true, -8},
    {"dateTime", PT_XSP_DATETIME, 0, false, 0},
    {"date", PT_XSP_DATE, 0, false, 0},
    {"time", PT_XSP_TIME, 0, false, 0},
    {"duration", PT_XSP_DURATION, 0, false, 0},
    {"gYear", PT_XSP_GREG, 0, false, 0},
    {"gYearMonth", PT_XSP_GREG, 0, false, 1},
    {"gMonth", PT_XSP_GREG, 0, false, 2},
    {"gMonthDay", PT_XSP_GREG, 0, false, 3},
    {"gDay", PT_XSP_GREG, 0, false, 4},
    {"base64Binary", PT_XSP_BASE64, 0, false, 0},
    {"hexBinary", PT_XSP_HEX, 0, false, 0},
    {"anySimpleType", PT_XSP_ANYSIMPLE, 0, false, 0},
};

static pt_xst_t *builtin_type(ld_t *l, const char *local)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        const builtin_t *b = &builtins[i];
        if (strcmp(b->name, local) != 0)
            continue;
        if (l->builtins[i] != NULL)
            return l->builtins[i];
        pt_xst_t *t = pt__xpool_alloc(l->pool, sizeof(*t));
        if (t == NULL)
            return NULL;
        char nb[64];
        snprintf(nb, sizeof(nb), "xs:%s", b->name);
        t->name = pt__xpool_strdup(l->pool, nb);
        t->prim = b->prim;
        t->int_small = b->small;
        t->total_digits = t->fraction_digits = -1;
        if (b->prim == PT_XSP_GREG)
            t->sub = (uint8_t)b->bits;
        switch (b->bounds) {
        case 1:
            t->has_imin = true, t->imin = 0;
            break;
        case 2:
            t->has_imin = true, t->imin = 1;
            break;
        case 3:
            t->has_imax = true, t->imax = 0;
            break;
        case 4:
            t->has_imax = true, t->imax = -1;
            break;
        case 5:
            t->has_imin = t->has_imax = true;
            if (b->bits > 0) {
                t->imax = ((__int128)1 << (b->bits - 1)) - 1;
                t->imin = -t->imax - 1;
            } else {
                t->imin = 0;
                t->imax = ((__int128)1 << -b->bits) - 1;
            }
            break;
        default:
            break;
        }
        l->builtins[i] = t;
        return t;
    }
    return NULL;
}

typedef struct tref {
    const pt_xst_t *st;
    const pt_xct_t *ct;
} tref_t;

static const pt_xst_t *build_simple(ld_t *l, xmlNode *n, int si, const char *name);
static const pt_xct_t *build_complex(ld_t *l, xmlNode *n, int si, const char *name, ent_t *e);

static const char *type_name(ld_t *l, int si, const char *name)
{
    if (name == NULL)
        return "(anonymous)";
    (void)si;
    return name;
}

/* Resolves the type QName `v` written on node n. anyType -> both NULL. */
static int resolve_type(ld_t *l, xmlNode *n, const char *v, tref_t *r)
{
    const char *ns, *local;
    r->st = NULL;
    r->ct = NULL;
    if (qname(l, n, v, &ns, &local) != 0)
        return l->rc;
    if (strcmp(ns, PT_XS_NS) == 0) {
        if (strcmp(local, "anyType") == 0)
            return 0;
        r->st = builtin_type(l, local);
        if (r->st == NULL && l->rc == 0)
            return fail(l, n, PT_XERR_INVALID, "unknown or unsupported XSD built-in type xs:%s",
                        local);
        return l->rc;
    }
    if (strcmp(ns, "http://schemas.xmlsoap.org/soap/encoding/") == 0)
        return fail(l, n, PT_XERR_INVALID,
                    "SOAP encoding types (%s) are not supported (rpc/encoded is not; use literal)",
                    v);
    ent_t *e = tget(&l->ctypes, ns, local);
    if (e != NULL) {
        r->ct = build_complex(l, e->node, e->schema, e->name, e);
        return l->rc;
    }
    e = tget(&l->stypes, ns, local);
    if (e != NULL) {
        if (e->state == 1)
            return fail(l, n, PT_XERR_INVALID, "simpleType %s is defined in terms of itself",
                        local);
        if (e->state == 0) {
            e->state = 1;
            e->built = (void *)build_simple(l, e->node, e->schema, e->name);
            e->state = 2;
        }
        r->st = e->built;
        return l->rc;
    }
    return fail(l, n, PT_XERR_INVALID, "type {%s}%s is not defined", ns, local);
}

static bool parse_occurs(const char *v, uint32_t *out, bool max)
{
    if (v == NULL)
        return true;
    if (max && strcmp(v, "unbounded") == 0) {
        *out = PT_UNBOUNDED;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || x >= PT_UNBOUNDED || v[0] == '-')
        return false;
    *out = (uint32_t)x;
    return true;
}

static int add_regex(ld_t *l, xmlNode *n, pt_xst_t *t, const char *pat)
{
    xmlRegexpPtr re = xmlRegexpCompile(BAD_CAST pat);
    if (re == NULL)
        return fail(l, n, PT_XERR_INVALID, "pattern \"%s\" is not a valid XSD regular expression",
                    pat);
    pt_wsdl_t *w = l->w;
    if (w->reg_cnt == w->reg_cap) {
        size_t nc = w->reg_cap ? w->reg_cap * 2 : 8;
        xmlRegexpPtr *v = l->a->realloc(l->a->ud, w->regs, nc * sizeof(*v));
        if (v == NULL) {
            xmlRegFreeRegexp(re);
            return nomem(l);
        }
        w->regs = v;
        w->reg_cap = nc;
    }
    w->regs[w->reg_cnt++] = re;
    xmlRegexpPtr *np = pt__xpool_alloc(l->pool, (t->pattern_cnt + 1) * sizeof(*np));
    if (np == NULL)
        return nomem(l);
    if (t->pattern_cnt)
        memcpy(np, t->patterns, t->pattern_cnt * sizeof(*np));
    np[t->pattern_cnt++] = re;
    t->patterns = np;
    return 0;
}

static bool num_prim(pt_xprim_t p)
{
    return p == PT_XSP_DECIMAL || p == PT_XSP_FLOAT || p == PT_XSP_DOUBLE || p == PT_XSP_INTEGER;
}

static int facet(ld_t *l, xmlNode *f, pt_xst_t *t, const char ***enums, size_t *ecnt,
                 size_t *ecap)
{
    const char *fn = (const char *)f->name;
    const char *v = attr(l, f, "value");
    if (l->rc != 0)
        return l->rc;
    if (v == NULL)
        return fail(l, f, PT_XERR_INVALID, "facet xs:%s without value", fn);
    char *end;
    if (strcmp(fn, "enumeration") == 0) {
        const char *bad = pt__xst_check(l->w, t, v, strlen(v));
        if (bad != NULL)
            return fail(l, f, PT_XERR_INVALID, "enumeration value \"%s\": %s", v, bad);
        if (*ecnt == *ecap) {
            size_t nc = *ecap ? *ecap * 2 : 8;
            const char **nv = pt__xpool_alloc(l->pool, nc * sizeof(*nv));
            if (nv == NULL)
                return nomem(l);
            if (*ecnt)
                memcpy(nv, *enums, *ecnt * sizeof(*nv));
            *enums = nv;
            *ecap = nc;
        }
        (*enums)[(*ecnt)++] = v;
        return 0;
    }
    if (strcmp(fn, "pattern") == 0)
        return add_regex(l, f, t, v);
    if (strcmp(fn, "whiteSpace") == 0)
        return 0; /* values are checked as sent; output keeps them as sent */
    if (strcmp(fn, "length") == 0 || strcmp(fn, "minLength") == 0 ||
        strcmp(fn, "maxLength") == 0 || strcmp(fn, "totalDigits") == 0 ||
        strcmp(fn, "fractionDigits") == 0) {
        errno = 0;
        unsigned long x = strtoul(v, &end, 10);
        if (end == v || *end != '\0' || errno != 0 || v[0] == '-' || x > INT_MAX)
            return fail(l, f, PT_XERR_INVALID, "xs:%s value \"%s\" is not a small integer", fn, v);
        if (fn[0] == 'l')
            t->has_len = true, t->len = x;
        else if (strcmp(fn, "minLength") == 0)
            t->has_minlen = true, t->minlen = x;
        else if (strcmp(fn, "maxLength") == 0)
            t->has_maxlen = true, t->maxlen = x;
        else if (fn[0] == 't')
            t->total_digits = (int)x;
        else
            t->fraction_digits = (int)x;
        return 0;
    }
    if (strncmp(fn, "min", 3) == 0 || strncmp(fn, "max", 3) == 0) {
        bool excl = strstr(fn, "Exclusive") != NULL;
        if (!excl && strstr(fn, "Inclusive") == NULL)
            return fail(l, f, PT_XERR_INVALID, "facet xs:%s is not supported", fn);
        if (!num_prim(t->prim))
            return fail(l, f, PT_XERR_INVALID,
                        "facet xs:%s on a non-numeric type (%s) is not supported", fn, t->name);
        double d = strtod(v, &end);
        if (end == v || *end != '\0')
            return fail(l, f, PT_XERR_INVALID, "xs:%s value \"%s\" is not a number", fn, v);
        if (fn[1] == 'i')
            t->has_min = true, t->min = d, t->min_excl = excl;
        else
            t->has_max = true, t->max = d, t->max_excl = excl;
        return 0;
    }
    if (strcmp(fn, "annotation") == 0)
        return 0;
    return fail(l, f, PT_XERR_INVALID, "facet xs:%s is not supported", fn);
}

static const pt_xst_t *build_simple(ld_t *l, xmlNode *n, int si, const char *name)
{
    for (xmlNode *c = n->children; c != NULL; c = c->next) {
        if (!in_ns(c, PT_XS_NS) || xmlStrEqual(c->name, BAD_CAST "annotation"))
            continue;
        if (xmlStrEqual(c->name, BAD_CAST "list") || xmlStrEqual(c->name, BAD_CAST "union")) {
            fail(l, c, PT_XERR_INVALID, "xs:%s simple types are not supported",
                 (const char *)c->name);
            return NULL;
        }
        if (!xmlStrEqual(c->name, BAD_CAST "restriction")) {
            fail(l, c, PT_XERR_INVALID, "unexpected <xs:%s> in xs:simpleType",
                 (const char *)c->name);
            return NULL;
        }
        const pt_xst_t *base = NULL;
        const char *bv = attr(l, c, "base");
        if (bv != NULL) {
            tref_t r;
            if (resolve_type(l, c, bv, &r) != 0)
                return NULL;
            if (r.st == NULL) {
                fail(l, c, PT_XERR_INVALID, "restriction base %s is not a simple type", bv);
                return NULL;
            }
            base = r.st;
        }
        xmlNode *f = c->children;
        for (; f != NULL && bv == NULL; f = f->next)
            if (is_el(f, PT_XS_NS, "simpleType")) {
                base = build_simple(l, f, si, NULL);
                if (base == NULL)
                    return NULL;
                f = f->next;
                break;
            }
        if (base == NULL) {
            fail(l, c, PT_XERR_INVALID, "xs:restriction without a base type");
            return NULL;
        }
        pt_xst_t *t = pt__xpool_alloc(l->pool, sizeof(*t));
        if (t == NULL) {
            nomem(l);
            return NULL;
        }
        *t = *base;
        t->name = type_name(l, si, name);
        /* enumerations restart per step (a restriction narrows the base's) */
        const char **enums = NULL;
        size_t ecnt = 0, ecap = 0;
        for (f = bv != NULL ? c->children : f; f != NULL; f = f->next)
            if (in_ns(f, PT_XS_NS) && facet(l, f, t, &enums, &ecnt, &ecap) != 0)
                return NULL;
        if (ecnt > 0) {
            size_t *lens = pt__xpool_alloc(l->pool, ecnt * sizeof(*lens));
            if (lens == NULL) {
                nomem(l);
                return NULL;
            }
            for (size_t i = 0; i < ecnt; i++)
                lens[i] = strlen(enums[i]);
            t->enums = enums;
            t->enum_lens = lens;
            t->enum_cnt = ecnt;
        }
        t->facets = t->has_len || t->has_minlen || t->has_maxlen ||
                    t->pattern_cnt > 0 || t->has_min || t->has_max || t->total_digits >= 0 ||
                    t->fraction_digits >= 0;
        return t;
    }
    fail(l, n, PT_XERR_INVALID, "xs:simpleType without xs:restriction");
    return NULL;
}

static pt_xelem_t *build_element(ld_t *l, xmlNode *n, int si, bool top, uint32_t *min,
                                 uint32_t *max);

static pt_xelem_t *top_element(ld_t *l, xmlNode *from, const char *ns, const char *local)
{
    ent_t *e = tget(&l->elements, ns, local);
    if (e == NULL) {
        fail(l, from, PT_XERR_INVALID, "element {%s}%s is not defined", ns, local);
        return NULL;
    }
    if (e->state == 0) {
        e->state = 1;
        uint32_t mn = 1, mx = 1;
        e->built = build_element(l, e->node, e->schema, true, &mn, &mx);
        e->state = 2;
    } else if (e->state == 1 && e->built == NULL) {
        fail(l, from, PT_XERR_INVALID, "element {%s}%s refers to itself", ns, local);
        return NULL;
    }
    return e->built;
}

static pt_xelem_t *build_element(ld_t *l, xmlNode *n, int si, bool top, uint32_t *min,
                                 uint32_t *max)
{
    if (!parse_occurs(attr(l, n, "minOccurs"), min, false) ||
        !parse_occurs(attr(l, n, "maxOccurs"), max, true)) {
        fail(l, n, PT_XERR_INVALID, "bad minOccurs/maxOccurs");
        return NULL;
    }
    const char *ref = attr(l, n, "ref");
    if (ref != NULL) {
        const char *ns, *local;
        if (qname(l, n, ref, &ns, &local) != 0)
            return NULL;
        return top_element(l, n, ns, local);
    }
    const char *name = attr(l, n, "name");
    if (name == NULL) {
        fail(l, n, PT_XERR_INVALID, "xs:element without name or ref");
        return NULL;
    }
    if (attr(l, n, "substitutionGroup") != NULL || attr(l, n, "abstract") != NULL) {
        fail(l, n, PT_XERR_INVALID, "substitution groups / abstract elements are not supported");
        return NULL;
    }
    pt_xelem_t *e = pt__xpool_alloc(l->pool, sizeof(*e));
    if (e == NULL) {
        nomem(l);
        return NULL;
    }
    e->name = name;
    const char *form = attr(l, n, "form");
    bool qual = top || (form != NULL ? strcmp(form, "qualified") == 0 : l->schemas[si].qual_el);
    e->ns = qual ? l->schemas[si].tns : "";
    const char *nil = attr(l, n, "nillable");
    e->nillable = nil != NULL && (strcmp(nil, "true") == 0 || strcmp(nil, "1") == 0);
    if (top) {
        /* register before building the type: a recursive type may refer back */
        ent_t *me = tget(&l->elements, e->ns, name);
        if (me != NULL)
            me->built = e;
    }
    const char *tv = attr(l, n, "type");
    if (tv != NULL) {
        tref_t r;
        if (resolve_type(l, n, tv, &r) != 0)
            return NULL;
        e->st = r.st;
        e->ct = r.ct;
    } else {
        for (xmlNode *c = n->children; c != NULL; c = c->next) {
            if (is_el(c, PT_XS_NS, "complexType")) {
                e->ct = build_complex(l, c, si, NULL, NULL);
                if (e->ct == NULL)
                    return NULL;
            } else if (is_el(c, PT_XS_NS, "simpleType")) {
                e->st = build_simple(l, c, si, NULL);
                if (e->st == NULL)
                    return NULL;
            }
        }
    }
    return l->rc == 0 ? e : NULL;
}

static pt_xpart_t *build_group(ld_t *l, xmlNode *n, int si)
{
    pt_xpart_t *p = pt__xpool_alloc(l->pool, sizeof(*p));
    if (p == NULL) {
        nomem(l);
        return NULL;
    }
    const char *k = (const char *)n->name;
    p->kind = strcmp(k, "sequence") == 0 ? PT_PART_SEQ
              : strcmp(k, "choice") == 0 ? PT_PART_CHOICE
                                         : PT_PART_ALL;
    p->min = p->max = 1;
    if (!parse_occurs(attr(l, n, "minOccurs"), &p->min, false) ||
        !parse_occurs(attr(l, n, "maxOccurs"), &p->max, true)) {
        fail(l, n, PT_XERR_INVALID, "bad minOccurs/maxOccurs");
        return NULL;
    }
    pt_xpart_t **tail = &p->kids;
    for (xmlNode *c = n->children; c != NULL; c = c->next) {
        if (!in_ns(c, PT_XS_NS) || xmlStrEqual(c->name, BAD_CAST "annotation"))
            continue;
        pt_xpart_t *kid;
        if (xmlStrEqual(c->name, BAD_CAST "element")) {
            kid = pt__xpool_alloc(l->pool, sizeof(*kid));
            if (kid == NULL) {
                nomem(l);
                return NULL;
            }
            kid->kind = PT_PART_ELEM;
            kid->min = kid->max = 1;
            kid->elem = build_element(l, c, si, false, &kid->min, &kid->max);
            if (kid->elem == NULL)
                return NULL;
            if (kid->max == 0)
                continue;
        } else if (xmlStrEqual(c->name, BAD_CAST "sequence") ||
                   xmlStrEqual(c->name, BAD_CAST "choice")) {
            kid = build_group(l, c, si);
            if (kid == NULL)
                return NULL;
        } else {
            fail(l, c, PT_XERR_INVALID, "xs:%s in a content model is not supported",
                 (const char *)c->name);
            return NULL;
        }
        *tail = kid;
        tail = &kid->next;
    }
    return p;
}

/* The JSON member's start for a name, made once: ,"<pfx><name>": (escaped). */
static int json_key(ld_t *l, const char *pfx, const char *name, const char **key, uint32_t *klen)
{
    pt_xbuf_t b;
    pt_xbuf_init(&b, l->pool->a);
    int rc = pt_xbuf_putc(&b, ',');
    if (rc == 0) {
        size_t pl = strlen(pfx), nl = strlen(name);
        char *both = pt_xalloc(l->pool->a, pl + nl + 1);
        if (both == NULL) {
            rc = PT_XERR_NOMEM;
        } else {
            memcpy(both, pfx, pl);
            memcpy(both + pl, name, nl);
            both[pl + nl] = '\0';
            rc = pt__put_json_str(&b, both, pl + nl);
            pt_xfree(l->pool->a, both);
        }
    }
    if (rc == 0)
        rc = pt_xbuf_putc(&b, ':');
    char *k = rc == 0 ? pt__xpool_strndup(l->pool, (const char *)b.data, b.len) : NULL;
    *key = k;
    *klen = (uint32_t)b.len;
    pt_xbuf_dispose(&b);
    return k == NULL ? nomem(l) : 0;
}

static int build_attr_decl(ld_t *l, xmlNode *n, int si, pt_xattr_t *a);

static int build_attr(ld_t *l, xmlNode *n, int si, pt_xattr_t *a)
{
    int rc = build_attr_decl(l, n, si, a);
    if (rc != 0)
        return rc;
    /* build_attr_decl sets name and ns ("" when unqualified) on every 0 return
     * (fail() never returns 0; the analyzer cannot see that) */
    // NOLINTBEGIN(clang-analyzer-core.NonNullParamChecker)
    a->nlen = (uint32_t)strlen(a->name);
    a->nslen = (uint32_t)strlen(a->ns);
    // NOLINTEND(clang-analyzer-core.NonNullParamChecker)
    return json_key(l, "@", a->name, &a->key, &a->klen);
}

static int build_attr_decl(ld_t *l, xmlNode *n, int si, pt_xattr_t *a)
{
    const char *ref = attr(l, n, "ref");
    xmlNode *def = n;
    int dsi = si;
    bool top = false;
    if (ref != NULL) {
        const char *ns, *local;
        if (qname(l, n, ref, &ns, &local) != 0)
            return l->rc;
        if (strcmp(ns, XML_NS) == 0) {
            a->name = local;
            a->ns = XML_NS;
            a->st = builtin_type(l, "string");
            const char *use = attr(l, n, "use");
            a->required = use != NULL && strcmp(use, "required") == 0;
            return a->st == NULL ? nomem(l) : 0;
        }
        ent_t *e = tget(&l->attrs, ns, local);
        if (e == NULL)
            return fail(l, n, PT_XERR_INVALID, "attribute {%s}%s is not defined", ns, local);
        def = e->node;
        dsi = e->schema;
        top = true;
    }
    a->name = attr(l, def, "name");
    if (a->name == NULL)
        return fail(l, def, PT_XERR_INVALID, "xs:attribute without name");
    const char *form = attr(l, def, "form");
    bool qual = top || (form != NULL ? strcmp(form, "qualified") == 0 : l->schemas[dsi].qual_attr);
    a->ns = qual ? l->schemas[dsi].tns : "";
    const char *use = attr(l, n, "use");
    if (use != NULL && strcmp(use, "prohibited") == 0)
        return 1;
    a->required = use != NULL && strcmp(use, "required") == 0;
    const char *tv = attr(l, def, "type");
    if (tv != NULL) {
        tref_t r;
        if (resolve_type(l, def, tv, &r) != 0)
            return l->rc;
        if (r.ct != NULL)
            return fail(l, def, PT_XERR_INVALID, "attribute type %s is not a simple type", tv);
        a->st = r.st != NULL ? r.st : builtin_type(l, "anySimpleType");
    } else {
        for (xmlNode *c = def->children; c != NULL; c = c->next)
            if (is_el(c, PT_XS_NS, "simpleType"))
                a->st = build_simple(l, c, dsi, NULL);
        if (a->st == NULL && l->rc == 0)
            a->st = builtin_type(l, "anySimpleType");
    }
    return l->rc;
}

static int add_attrs(ld_t *l, xmlNode *parent, int si, pt_xct_t *t)
{
    for (xmlNode *c = parent->children; c != NULL && l->rc == 0; c = c->next) {
        if (!in_ns(c, PT_XS_NS))
            continue;
        if (xmlStrEqual(c->name, BAD_CAST "attributeGroup"))
            return fail(l, c, PT_XERR_INVALID, "xs:attributeGroup is not supported");
        if (!xmlStrEqual(c->name, BAD_CAST "attribute"))
            continue;
        pt_xattr_t a;
        memset(&a, 0, sizeof(a));
        int rc = build_attr(l, c, si, &a);
        if (rc < 0)
            return rc;
        if (rc == 1)
            continue;
        pt_xattr_t *na = pt__xpool_alloc(l->pool, (t->attr_cnt + 1) * sizeof(*na));
        if (na == NULL)
            return nomem(l);
        if (t->attr_cnt)
            memcpy(na, t->attrs, t->attr_cnt * sizeof(*na));
        na[t->attr_cnt++] = a;
        t->attrs = na;
    }
    return l->rc;
}

static int flatten(ld_t *l, xmlNode *n, pt_xct_t *t, const pt_xpart_t *p, bool rep,
                   pt_xfield_t **v, size_t *cnt, size_t *cap)
{
    if (p == NULL)
        return 0;
    bool r = rep || p->max > 1;
    if (p->kind == PT_PART_ELEM) {
        for (size_t i = 0; i < *cnt; i++) {
            const pt_xelem_t *o = (*v)[i].elem;
            if (strcmp(o->name, p->elem->name) != 0)
                continue;
            if (strcmp(o->ns, p->elem->ns) != 0)
                return fail(l, n, PT_XERR_INVALID,
                            "type %s has two child elements named %s in different namespaces "
                            "(not supported: JSON keys are local names)",
                            t->name, o->name);
            if (o->st != p->elem->st || o->ct != p->elem->ct)
                return fail(l, n, PT_XERR_INVALID,
                            "type %s has two child elements named %s with different types "
                            "(not supported)",
                            t->name, o->name);
            (*v)[i].repeated = true;
            return 0;
        }
        if (*cnt == *cap) {
            size_t nc = *cap ? *cap * 2 : 8;
            pt_xfield_t *nv = pt__xpool_alloc(l->pool, nc * sizeof(*nv));
            if (nv == NULL)
                return nomem(l);
            if (*cnt)
                memcpy(nv, *v, *cnt * sizeof(*nv));
            *v = nv;
            *cap = nc;
        }
        pt_xfield_t *f = &(*v)[(*cnt)++];
        *f = (pt_xfield_t){p->elem,          r, (uint32_t)strlen(p->elem->name),
                           (uint32_t)strlen(p->elem->ns), NULL, 0, p->elem->name, p->elem->ns};
        return json_key(l, "", p->elem->name, &f->key, &f->klen);
    }
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        if (flatten(l, n, t, k, r, v, cnt, cap) != 0)
            return l->rc;
    return 0;
}

static const pt_xct_t *build_complex(ld_t *l, xmlNode *n, int si, const char *name, ent_t *e)
{
    if (e != NULL) {
        if (e->state != 0)
            return e->built; /* done, or being built (a recursive reference) */
        e->state = 1;
    }
    pt_xct_t *t = pt__xpool_alloc(l->pool, sizeof(*t));
    if (t == NULL) {
        nomem(l);
        return NULL;
    }
    t->name = type_name(l, si, name);
    t->state = 1;
    if (e != NULL)
        e->built = t;
    const char *mixed = attr(l, n, "mixed");
    if (mixed != NULL && (strcmp(mixed, "true") == 0 || strcmp(mixed, "1") == 0)) {
        fail(l, n, PT_XERR_INVALID, "mixed content (mixed=\"true\") is not supported");
        return NULL;
    }
    for (xmlNode *c = n->children; c != NULL && l->rc == 0; c = c->next) {
        if (!in_ns(c, PT_XS_NS))
            continue;
        const char *k = (const char *)c->name;
        if (strcmp(k, "annotation") == 0 || strcmp(k, "attribute") == 0 ||
            strcmp(k, "anyAttribute") == 0 || strcmp(k, "attributeGroup") == 0)
            continue;
        if (strcmp(k, "sequence") == 0 || strcmp(k, "choice") == 0 || strcmp(k, "all") == 0) {
            t->part = build_group(l, c, si);
        } else if (strcmp(k, "simpleContent") == 0 || strcmp(k, "complexContent") == 0) {
            bool simple = k[0] == 's';
            xmlNode *x = c->children;
            while (x != NULL && (!in_ns(x, PT_XS_NS) || xmlStrEqual(x->name, BAD_CAST "annotation")))
                x = x->next;
            if (x == NULL || !xmlStrEqual(x->name, BAD_CAST "extension")) {
                fail(l, x != NULL ? x : c, PT_XERR_INVALID,
                     "xs:%s with xs:%s is not supported (only xs:extension)", k,
                     x != NULL ? (const char *)x->name : "nothing");
                return NULL;
            }
            const char *bv = attr(l, x, "base");
            tref_t r = {NULL, NULL};
            if (bv == NULL) {
                fail(l, x, PT_XERR_INVALID, "xs:extension without base");
                return NULL;
            }
            if (resolve_type(l, x, bv, &r) != 0)
                return NULL;
            if (r.ct != NULL && r.ct->state != 2) {
                fail(l, x, PT_XERR_INVALID, "type %s extends itself", t->name);
                return NULL;
            }
            if (simple) {
                if (r.st != NULL)
                    t->simple = r.st;
                else if (r.ct != NULL && r.ct->simple != NULL)
                    t->simple = r.ct->simple;
                else {
                    fail(l, x, PT_XERR_INVALID,
                         "simpleContent extension of %s, which has no simple content", bv);
                    return NULL;
                }
            } else if (r.st != NULL || (r.ct != NULL && r.ct->simple != NULL)) {
                fail(l, x, PT_XERR_INVALID, "complexContent extension of a simple type (%s)", bv);
                return NULL;
            }
            if (r.ct != NULL) {
                t->attrs = r.ct->attrs;
                t->attr_cnt = r.ct->attr_cnt;
            }
            if (add_attrs(l, x, si, t) != 0)
                return NULL;
            if (!simple) {
                pt_xpart_t *own = NULL;
                for (xmlNode *g = x->children; g != NULL; g = g->next) {
                    if (!in_ns(g, PT_XS_NS))
                        continue;
                    if (xmlStrEqual(g->name, BAD_CAST "sequence") ||
                        xmlStrEqual(g->name, BAD_CAST "choice") ||
                        xmlStrEqual(g->name, BAD_CAST "all")) {
                        own = build_group(l, g, si);
                        if (own == NULL)
                            return NULL;
                    } else if (xmlStrEqual(g->name, BAD_CAST "group")) {
                        fail(l, g, PT_XERR_INVALID, "xs:group is not supported");
                        return NULL;
                    }
                }
                const pt_xpart_t *bp = r.ct != NULL ? r.ct->part : NULL;
                if (bp == NULL) {
                    t->part = own;
                } else if (own == NULL) {
                    t->part = (pt_xpart_t *)bp;
                } else {
                    pt_xpart_t *seq = pt__xpool_alloc(l->pool, sizeof(*seq));
                    pt_xpart_t *b2 = pt__xpool_alloc(l->pool, sizeof(*b2));
                    if (seq == NULL || b2 == NULL) {
                        nomem(l);
                        return NULL;
                    }
                    *b2 = *bp;
                    b2->next = own;
                    seq->kind = PT_PART_SEQ;
                    seq->min = seq->max = 1;
                    seq->kids = b2;
                    t->part = seq;
                }
            }
        } else {
            fail(l, c, PT_XERR_INVALID, "xs:%s in xs:complexType is not supported", k);
            return NULL;
        }
    }
    if (l->rc != 0 || add_attrs(l, n, si, t) != 0)
        return NULL;
    size_t cap = 0;
    if (flatten(l, n, t, t->part, false, &t->fields, &t->field_cnt, &cap) != 0)
        return NULL;
    t->state = 2;
    if (e != NULL)
        e->state = 2;
    return t;
}

/* ======================= step 3: operations ======================= */

static xmlNode *child(const xmlNode *n, const char *ns, const char *name)
{
    for (xmlNode *c = n->children; c != NULL; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

static ent_t *lookup(ld_t *l, table_t *t, xmlNode *n, const char *attrname, const char *what)
{
    const char *v = attr(l, n, attrname);
    if (v == NULL) {
        fail(l, n, PT_XERR_INVALID, "%s without %s=", (const char *)n->name, attrname);
        return NULL;
    }
    const char *ns, *local;
    if (qname(l, n, v, &ns, &local) != 0)
        return NULL;
    ent_t *e = tget(t, ns, local);
    if (e == NULL)
        fail(l, n, PT_XERR_INVALID, "%s %s is not defined", what, v);
    return e;
}

/* The Body child for one direction of an operation. */
static const pt_xelem_t *body_elem(ld_t *l, xmlNode *pt_io, xmlNode *b_io, const char *soapns,
                                   bool rpc, const char *opname, bool output)
{
    ent_t *m = lookup(l, &l->messages, pt_io, "message", "message");
    if (m == NULL)
        return NULL;
    xmlNode *body = b_io != NULL ? child(b_io, soapns, "body") : NULL;
    if (b_io != NULL) {
        xmlNode *h = child(b_io, soapns, "header");
        if (h != NULL) {
            fail(l, h, PT_XERR_INVALID, "soap:header in a binding is not supported");
            return NULL;
        }
    }
    if (body != NULL) {
        const char *use = attr(l, body, "use");
        if (use != NULL && strcmp(use, "literal") != 0) {
            fail(l, body, PT_XERR_INVALID, "use=\"%s\" is not supported (literal only)", use);
            return NULL;
        }
        if (attr(l, body, "parts") != NULL) {
            fail(l, body, PT_XERR_INVALID, "soap:body parts= is not supported");
            return NULL;
        }
    }
    size_t nparts = 0;
    for (xmlNode *p = m->node->children; p != NULL; p = p->next)
        if (is_el(p, WSDL_NS, "part"))
            nparts++;
    if (!rpc) {
        if (nparts != 1) {
            fail(l, m->node, PT_XERR_INVALID,
                 "document/literal message %s has %zu parts (exactly one element part is supported)",
                 m->name, nparts);
            return NULL;
        }
        xmlNode *p = child(m->node, WSDL_NS, "part");
        const char *ev = attr(l, p, "element");
        if (ev == NULL) {
            fail(l, p, PT_XERR_INVALID, "document/literal part without element= (type= parts "
                                        "are for rpc style)");
            return NULL;
        }
        const char *ns, *local;
        if (qname(l, p, ev, &ns, &local) != 0)
            return NULL;
        return top_element(l, p, ns, local);
    }
    /* rpc/literal: a wrapper named after the operation holding one element per part */
    pt_xelem_t *w = pt__xpool_alloc(l->pool, sizeof(*w));
    pt_xct_t *ct = pt__xpool_alloc(l->pool, sizeof(*ct));
    pt_xpart_t *seq = pt__xpool_alloc(l->pool, sizeof(*seq));
    if (w == NULL || ct == NULL || seq == NULL) {
        nomem(l);
        return NULL;
    }
    char nb[512];
    snprintf(nb, sizeof(nb), "%s%s", opname, output ? "Response" : "");
    w->name = pt__xpool_strdup(l->pool, nb);
    const char *ns = body != NULL ? attr(l, body, "namespace") : NULL;
    w->ns = ns != NULL ? ns : "";
    w->ct = ct;
    ct->name = w->name;
    ct->part = seq;
    seq->kind = PT_PART_SEQ;
    seq->min = seq->max = 1;
    pt_xpart_t **tail = &seq->kids;
    for (xmlNode *p = m->node->children; p != NULL; p = p->next) {
        if (!is_el(p, WSDL_NS, "part"))
            continue;
        pt_xpart_t *k = pt__xpool_alloc(l->pool, sizeof(*k));
        if (k == NULL) {
            nomem(l);
            return NULL;
        }
        k->kind = PT_PART_ELEM;
        k->min = k->max = 1;
        const char *ev = attr(l, p, "element"), *tv = attr(l, p, "type");
        if (ev != NULL) {
            const char *ens, *local;
            if (qname(l, p, ev, &ens, &local) != 0)
                return NULL;
            k->elem = top_element(l, p, ens, local);
        } else if (tv != NULL) {
            pt_xelem_t *pe = pt__xpool_alloc(l->pool, sizeof(*pe));
            tref_t r;
            if (pe == NULL) {
                nomem(l);
                return NULL;
            }
            if (resolve_type(l, p, tv, &r) != 0)
                return NULL;
            pe->name = attr(l, p, "name");
            pe->ns = "";
            pe->st = r.st;
            pe->ct = r.ct;
            k->elem = pe;
            if (pe->name == NULL) {
                fail(l, p, PT_XERR_INVALID, "part without name");
                return NULL;
            }
        } else {
            fail(l, p, PT_XERR_INVALID, "part without element= or type=");
            return NULL;
        }
        if (k->elem == NULL)
            return NULL;
        *tail = k;
        tail = &k->next;
    }
    size_t cap = 0;
    if (flatten(l, m->node, ct, seq, false, &ct->fields, &ct->field_cnt, &cap) != 0)
        return NULL;
    ct->state = 2;
    return w;
}

static void req_flags(const pt_xpart_t *p, const pt_xelem_t *e, bool opt, bool *req)
{
    if (p == NULL)
        return;
    if (p->kind == PT_PART_ELEM) {
        if (p->elem == e && !opt && p->min > 0)
            *req = true;
        return;
    }
    bool o = opt || p->min == 0 || p->kind == PT_PART_CHOICE;
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        req_flags(k, e, o, req);
}

static int op_fields(ld_t *l, pt_soap_op_t *op, const pt_xelem_t *in)
{
    const pt_xct_t *ct = in != NULL ? in->ct : NULL;
    if (ct == NULL)
        return 0;
    size_t n = ct->field_cnt + ct->attr_cnt;
    pt_soap_field_t *f = pt__xpool_alloc(l->pool, (n + 1) * sizeof(*f));
    if (f == NULL)
        return nomem(l);
    size_t i = 0;
    for (size_t k = 0; k < ct->attr_cnt; k++, i++) {
        char *nm = pt__xpool_alloc(l->pool, strlen(ct->attrs[k].name) + 2);
        if (nm == NULL)
            return nomem(l);
        nm[0] = '@';
        memcpy(nm + 1, ct->attrs[k].name, strlen(ct->attrs[k].name) + 1);
        f[i] = (pt_soap_field_t){nm, false, ct->attrs[k].required, true};
    }
    for (size_t k = 0; k < ct->field_cnt; k++, i++) {
        const pt_xfield_t *x = &ct->fields[k];
        bool req = false;
        req_flags(ct->part, x->elem, false, &req);
        f[i] = (pt_soap_field_t){x->elem->name, x->repeated, req, x->elem->ct == NULL};
    }
    op->fields = f;
    op->field_cnt = n;
    return 0;
}

static int build_port(ld_t *l, xmlNode *svc, xmlNode *port, pt_soap_port_t *out, bool *skip)
{
    *skip = false;
    ent_t *b = lookup(l, &l->bindings, port, "binding", "binding");
    if (b == NULL)
        return l->rc;
    const char *soapns = WSDL_SOAP11;
    int ver = PT_SOAP_11;
    xmlNode *sb = child(b->node, WSDL_SOAP11, "binding");
    if (sb == NULL) {
        sb = child(b->node, WSDL_SOAP12, "binding");
        soapns = WSDL_SOAP12;
        ver = PT_SOAP_12;
    }
    if (sb == NULL) {
        *skip = true; /* an HTTP or other non-SOAP binding */
        return 0;
    }
    xmlNode *addr = child(port, soapns, "address");
    const char *loc = addr != NULL ? attr(l, addr, "location") : NULL;
    if (loc == NULL)
        return fail(l, port, PT_XERR_INVALID, "SOAP port without soap:address location");
    const char *bstyle = attr(l, sb, "style");
    ent_t *pt = lookup(l, &l->port_types, b->node, "type", "portType");
    if (pt == NULL)
        return l->rc;
    out->service = attr(l, svc, "name");
    out->name = attr(l, port, "name");
    out->address = loc;
    out->soap_version = ver;
    out->binding = b->name;
    size_t nops = 0;
    for (xmlNode *o = b->node->children; o != NULL; o = o->next)
        if (is_el(o, WSDL_NS, "operation"))
            nops++;
    pt_soap_op_t *ops = pt__xpool_alloc(l->pool, (nops + 1) * sizeof(*ops));
    pt_opimpl_t *impls = pt__xpool_alloc(l->pool, (nops + 1) * sizeof(*impls));
    if (ops == NULL || impls == NULL)
        return nomem(l);
    size_t i = 0;
    for (xmlNode *o = b->node->children; o != NULL && l->rc == 0; o = o->next) {
        if (!is_el(o, WSDL_NS, "operation"))
            continue;
        pt_soap_op_t *op = &ops[i];
        pt_opimpl_t *im = &impls[i];
        i++;
        op->name = attr(l, o, "name");
        if (op->name == NULL)
            return fail(l, o, PT_XERR_INVALID, "binding operation without name");
        xmlNode *so = child(o, soapns, "operation");
        const char *act = so != NULL ? attr(l, so, "soapAction") : NULL;
        const char *ostyle = so != NULL ? attr(l, so, "style") : NULL;
        const char *style = ostyle != NULL ? ostyle : bstyle != NULL ? bstyle : "document";
        if (strcmp(style, "rpc") != 0 && strcmp(style, "document") != 0)
            return fail(l, so != NULL ? so : sb, PT_XERR_INVALID, "unknown style \"%s\"", style);
        xmlNode *pop = NULL;
        for (xmlNode *c = pt->node->children; c != NULL; c = c->next)
            if (is_el(c, WSDL_NS, "operation")) {
                xmlChar *nm = xmlGetNoNsProp(c, BAD_CAST "name");
                bool eq = nm != NULL && strcmp((const char *)nm, op->name) == 0;
                xmlFree(nm);
                if (eq) {
                    pop = c;
                    break;
                }
            }
        if (pop == NULL)
            return fail(l, o, PT_XERR_INVALID, "operation %s is not in portType %s", op->name,
                        pt->name);
        xmlNode *pin = child(pop, WSDL_NS, "input"), *pout = child(pop, WSDL_NS, "output");
        if (pin == NULL)
            return fail(l, pop, PT_XERR_INVALID,
                        "operation %s has no input (notification operations are not supported)",
                        op->name);
        op->service = out->service;
        op->port = out->name;
        op->address = loc;
        op->soap_version = ver;
        op->is_rpc = strcmp(style, "rpc") == 0;
        op->soap_action = act != NULL ? act : "";
        im->w = l->w;
        im->in = body_elem(l, pin, child(o, WSDL_NS, "input"), soapns, op->is_rpc, op->name, false);
        if (im->in == NULL)
            return l->rc != 0 ? l->rc : fail(l, pin, PT_XERR_INVALID, "no input element");
        if (pout != NULL) {
            im->out = body_elem(l, pout, child(o, WSDL_NS, "output"), soapns, op->is_rpc, op->name,
                                true);
            if (im->out == NULL)
                return l->rc != 0 ? l->rc : fail(l, pout, PT_XERR_INVALID, "no output element");
        }
        op->is_oneway = pout == NULL;
        op->input_ns = im->in->ns;
        op->input_name = im->in->name;
        op->output_ns = im->out != NULL ? im->out->ns : "";
        op->output_name = im->out != NULL ? im->out->name : "";
        /* typed fault details: wsdl:fault messages with one element part */
        size_t nf = 0;
        for (xmlNode *f = pop->children; f != NULL; f = f->next)
            nf += is_el(f, WSDL_NS, "fault");
        pt_xfault_t *fl = pt__xpool_alloc(l->pool, (nf + 1) * sizeof(*fl));
        if (fl == NULL)
            return nomem(l);
        size_t fi = 0;
        for (xmlNode *f = pop->children; f != NULL && l->rc == 0; f = f->next) {
            if (!is_el(f, WSDL_NS, "fault"))
                continue;
            ent_t *m = lookup(l, &l->messages, f, "message", "message");
            if (m == NULL)
                return l->rc;
            xmlNode *p = child(m->node, WSDL_NS, "part");
            const char *ev = p != NULL ? attr(l, p, "element") : NULL;
            fl[fi].name = attr(l, f, "name");
            if (ev != NULL) {
                const char *ns, *local;
                if (qname(l, p, ev, &ns, &local) != 0)
                    return l->rc;
                fl[fi].elem = top_element(l, p, ns, local);
                if (fl[fi].elem == NULL)
                    return l->rc;
            }
            fi++;
        }
        im->faults = fl;
        im->fault_cnt = fi;
        op->_impl = im;
        if (op_fields(l, op, im->in) != 0)
            return l->rc;
    }
    out->ops = ops;
    out->op_cnt = i;
    return l->rc;
}

static int build_ports(ld_t *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->services.n; i++)
        for (xmlNode *p = l->services.v[i].node->children; p != NULL; p = p->next)
            n += is_el(p, WSDL_NS, "port");
    pt_soap_port_t *ports = pt__xpool_alloc(l->pool, (n + 1) * sizeof(*ports));
    if (ports == NULL)
        return nomem(l);
    size_t k = 0;
    for (size_t i = 0; i < l->services.n && l->rc == 0; i++)
        for (xmlNode *p = l->services.v[i].node->children; p != NULL && l->rc == 0; p = p->next) {
            if (!is_el(p, WSDL_NS, "port"))
                continue;
            bool skip;
            if (build_port(l, l->services.v[i].node, p, &ports[k], &skip) == 0 && !skip)
                k++;
        }
    if (l->rc == 0 && k == 0) {
        xmlNode *root = l->doc_cnt > 0 ? xmlDocGetRootElement(l->docs[0]) : NULL;
        return fail(l, root, PT_XERR_INVALID, "the WSDL has no service port with a SOAP binding");
    }
    l->w->ports = ports;
    l->w->port_cnt = k;
    return l->rc;
}

/* ======================= public ======================= */

static int load(const char *path, const char *data, size_t len, const pt_allocator_t *a,
                const pt_wsdl_opts_t *opts, pt_wsdl_t **out, pt_wsdl_err_t *err)
{
    if (a == NULL)
        a = pt_allocator_default();
    if (err != NULL)
        memset(err, 0, sizeof(*err));
    ld_t *l = pt_xalloc(a, sizeof(*l));
    pt_wsdl_t *w = pt_xalloc(a, sizeof(*w));
    if (l == NULL || w == NULL) {
        pt_xfree(a, l);
        pt_xfree(a, w);
        return PT_XERR_NOMEM;
    }
    memset(l, 0, sizeof(*l));
    memset(w, 0, sizeof(*w));
    pt__xpool_init(&w->pool, a, 0);
    l->w = w;
    l->pool = &w->pool;
    l->a = a;
    l->err = err;
    if (opts != NULL)
        l->o = *opts;
    if (l->o.max_file_size == 0)
        l->o.max_file_size = 16u << 20;
    if (l->o.max_files == 0)
        l->o.max_files = 64;
    if (l->o.max_depth == 0)
        l->o.max_depth = 128;
    xmlDocPtr doc = NULL;
    if (l->rc == 0) {
        if (data != NULL)
            parse_buf(l, path, data, len, &doc, NULL);
        else
            read_file(l, path, NULL, &doc);
    }
    if (l->rc == 0) {
        char real[PATH_MAX];
        l->paths[0] = pt__xpool_strdup(l->pool, realpath(path, real) != NULL ? real : path);
        l->docs[0] = doc;
        l->doc_cnt = 1;
        if (l->paths[0] == NULL)
            nomem(l);
        else if (index_wsdl(l, xmlDocGetRootElement(doc)) == 0)
            build_ports(l);
    }
    for (size_t i = 0; i < l->doc_cnt; i++)
        xmlFreeDoc(l->docs[i]);
    pt_xfree(a, l->messages.v);
    pt_xfree(a, l->port_types.v);
    pt_xfree(a, l->bindings.v);
    pt_xfree(a, l->services.v);
    pt_xfree(a, l->elements.v);
    pt_xfree(a, l->ctypes.v);
    pt_xfree(a, l->stypes.v);
    pt_xfree(a, l->attrs.v);
    pt_xfree(a, l->schemas);
    int rc = l->rc;
    pt_xfree(a, l);
    if (rc != 0) {
        pt_wsdl_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int pt_wsdl_load(const char *path, const pt_allocator_t *a, const pt_wsdl_opts_t *opts,
                 pt_wsdl_t **out, pt_wsdl_err_t *err)
{
    return load(path, NULL, 0, a, opts, out, err);
}

int pt_wsdl_load_mem(const char *name, const char *data, size_t len, const pt_allocator_t *a,
                     const pt_wsdl_opts_t *opts, pt_wsdl_t **out, pt_wsdl_err_t *err)
{
    return load(name, data != NULL ? data : "", len, a, opts, out, err);
}

void pt_wsdl_free(pt_wsdl_t *w)
{
    if (w == NULL)
        return;
    const pt_allocator_t *a = w->pool.a;
    for (size_t i = 0; i < w->reg_cnt; i++)
        xmlRegFreeRegexp(w->regs[i]);
    pt_xfree(a, w->regs);
    pt__xpool_dispose(&w->pool);
    pt_xfree(a, w);
}

size_t pt_wsdl_err_format(const pt_wsdl_err_t *e, char *out, size_t n)
{
    int r;
    if (e->file[0] == '\0')
        r = snprintf(out, n, "%s", e->msg);
    else if (e->line <= 0)
        r = snprintf(out, n, "%s: %s", e->file, e->msg);
    else if (e->col <= 0)
        r = snprintf(out, n, "%s:%d: %s", e->file, e->line, e->msg);
    else
        r = snprintf(out, n, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
    return r < 0 ? 0 : (size_t)r;
}

size_t pt_wsdl_port_count(const pt_wsdl_t *w) { return w->port_cnt; }

const pt_soap_port_t *pt_wsdl_port(const pt_wsdl_t *w, size_t i)
{
    return i < w->port_cnt ? &w->ports[i] : NULL;
}

const pt_soap_port_t *pt_wsdl_find_port(const pt_wsdl_t *w, const char *service, const char *port,
                                        char *msg, size_t n)
{
    const pt_soap_port_t *hit = NULL;
    size_t hits = 0;
    char list[512] = "";
    size_t ll = 0;
    for (size_t i = 0; i < w->port_cnt; i++) {
        const pt_soap_port_t *p = &w->ports[i];
        int r = snprintf(list + ll, sizeof(list) - ll, "%s%s/%s", i ? ", " : "", p->service,
                         p->name);
        if (r > 0 && (size_t)r < sizeof(list) - ll)
            ll += (size_t)r;
        if ((service != NULL && strcmp(service, p->service) != 0) ||
            (port != NULL && strcmp(port, p->name) != 0))
            continue;
        hit = p;
        hits++;
    }
    if (hits == 1)
        return hit;
    if (msg != NULL && n > 0) {
        if (hits == 0)
            snprintf(msg, n, "no SOAP port matches%s%s%s%s; ports (service/port): %s",
                     service ? " service " : "", service ? service : "", port ? " port " : "",
                     port ? port : "", list);
        else
            snprintf(msg, n, "%zu SOAP ports match, give service: and/or port: (service/port: %s)",
                     hits, list);
    }
    return NULL;
}

const pt_soap_op_t *pt_soap_port_op(const pt_soap_port_t *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->op_cnt; i++)
        if (strlen(p->ops[i].name) == len && memcmp(p->ops[i].name, name, len) == 0)
            return &p->ops[i];
    return NULL;
}

/* a, b and c joined into out[0..n) as snprintf("%s%s%s") would (cut and
 * NUL-terminated when n is short; the joined length returned): per request,
 * without printf's cost. */
static size_t join3(char *out, size_t n, const char *a, const char *b, const char *c)
{
    const char *part[3] = {a, b, c};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(part[i]);
        if (n > 0 && total < n - 1)
            memcpy(out + total, part[i], l < n - 1 - total ? l : n - 1 - total);
        total += l;
    }
    if (n > 0)
        out[total < n - 1 ? total : n - 1] = '\0';
    return total;
}

size_t pt_soap_content_type(const pt_soap_op_t *op, char *out, size_t n)
{
    if (op->soap_version == PT_SOAP_11)
        return join3(out, n, "text/xml; charset=utf-8", "", "");
    if (op->soap_action[0] == '\0')
        return join3(out, n, "application/soap+xml; charset=utf-8", "", "");
    return join3(out, n, "application/soap+xml; charset=utf-8; action=\"", op->soap_action, "\"");
}

size_t pt_soap_action_header(const pt_soap_op_t *op, char *out, size_t n)
{
    if (op->soap_version != PT_SOAP_11) {
        if (n > 0)
            out[0] = '\0';
        return 0;
    }
    return join3(out, n, "\"", op->soap_action, "\"");
}

int pt_soap_op_field_bindable(const pt_soap_op_t *op, const char *path, size_t len)
{
    const pt_opimpl_t *im = op->_impl;
    const pt_xelem_t *e = im->in;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '.')
            j++;
        if (e->ct == NULL || j == i)
            return 0;
        const pt_xct_t *ct = e->ct;
        if (path[i] == '@') {
            if (j != len)
                return 0;
            for (size_t k = 0; k < ct->attr_cnt; k++)
                if (strlen(ct->attrs[k].name) == j - i - 1 &&
                    memcmp(ct->attrs[k].name, path + i + 1, j - i - 1) == 0)
                    return 1;
            return 0;
        }
        const pt_xfield_t *f = NULL;
        for (size_t k = 0; k < ct->field_cnt; k++)
            if (strlen(ct->fields[k].elem->name) == j - i &&
                memcmp(ct->fields[k].elem->name, path + i, j - i) == 0)
                f = &ct->fields[k];
        if (f == NULL)
            return 0;
        if (j == len)
            return f->elem->ct == NULL && f->elem->st != NULL;
        if (f->repeated)
            return 0;
        e = f->elem;
        i = j + 1;
    }
    return 0;
}
