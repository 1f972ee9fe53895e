/*
 * soap_req.c -- JSON body (+ path/query bindings) -> SOAP request envelope.
 *
 * The JSON is parsed into a small tree first (xml_util.c) because the
 * envelope must follow the schema's element order, not the client's key
 * order. Bindings are applied to the tree (a binding replaces the same field
 * of the body, or is appended to a repeated one), then one walk of the
 * operation's input element writes the Body content into a scratch buffer
 * while recording the namespaces it used; the envelope is written last, with
 * one prefix (ns1, ns2, ...) declared per namespace on the Envelope. No
 * default namespace is ever declared, so an unqualified local element is
 * simply unprefixed and is in no namespace, as the schema says.
 */
#include "soap_internal.h"
#include "json_lex.h"

#include <stdio.h>
#include <string.h>

#define WSSE_NS "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
#define WSSE_PASSTEXT                                                                              \
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"          \
    "#PasswordText"
#define MAX_NS 64
#define MAX_BINDINGS 1024

typedef struct rq {
    const pt_wsdl_t *w;
    pt_xbuf_t *out; /* the Body content (scratch) */
    pt_xerrs_t *errs;
    pt_xpath_t path;
    int fatal;
    size_t err_cnt;
    bool xsi_used;
    const char *nss[MAX_NS];
    size_t ns_cnt;
    unsigned depth;
} rq_t;

static void bad(rq_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad(rq_t *r, const char *fmt, ...)
{
    r->err_cnt++;
    if (r->errs == NULL)
        return;
    char msg[PT_XERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pt_xerrs_add(r->errs, PT_XERR_INVALID, r->path.buf, "%s", msg);
}

static bool put(rq_t *r, int rc)
{
    if (rc != 0 && r->fatal == 0)
        r->fatal = rc;
    return r->fatal == 0;
}

/* "<" / "</" + prefix:name; registers the namespace */
/* "ns" and the prefix number k (1..MAX_NS) without printf. */
static int put_ns_prefix(pt_xbuf_t *out, size_t k)
{
    char p[8] = {'n', 's'};
    size_t n = 2;
    if (k >= 10)
        p[n++] = (char)('0' + k / 10);
    p[n++] = (char)('0' + k % 10);
    return pt_xbuf_append(out, p, n);
}

static bool put_name(rq_t *r, const char *ns, const char *name)
{
    if (ns[0] != '\0') {
        size_t i = 0;
        while (i < r->ns_cnt && strcmp(r->nss[i], ns) != 0)
            i++;
        if (i == r->ns_cnt) {
            if (r->ns_cnt == MAX_NS)
                return put(r, PT_XERR_LIMIT);
            r->nss[r->ns_cnt++] = ns;
        }
        if (!put(r, put_ns_prefix(r->out, i + 1)) || !put(r, pt_xbuf_putc(r->out, ':')))
            return false;
    }
    return put(r, pt_xbuf_puts(r->out, name));
}

static bool is_special_num(const pt__jv_t *v, const char **xs)
{
    if (v->type != PT_JV_STR)
        return false;
    if (v->len == 3 && memcmp(v->s, "NaN", 3) == 0)
        *xs = "NaN";
    else if (v->len == 8 && memcmp(v->s, "Infinity", 8) == 0)
        *xs = "INF";
    else if (v->len == 9 && memcmp(v->s, "-Infinity", 9) == 0)
        *xs = "-INF";
    else
        return false;
    return true;
}

/* Writes the XSD text of a JSON scalar of type st (escaped for attr or text). */
static void scalar(rq_t *r, const pt_xst_t *st, const pt__jv_t *v, bool attr)
{
    const char *s = v->s;
    size_t n = v->len;
    const char *want = NULL;
    if (v->from_text) {
        /* a path/query binding: the type's text form */
    } else {
        switch (st->prim) {
        case PT_XSP_BOOLEAN:
            if (v->type == PT_JV_TRUE)
                s = "true", n = 4;
            else if (v->type == PT_JV_FALSE)
                s = "false", n = 5;
            else
                want = "boolean";
            break;
        case PT_XSP_INTEGER:
            if (v->type == PT_JV_NUM && (v->numflags & (PT_JTOK_F_FRAC | PT_JTOK_F_EXP)) == 0)
                break;
            if (v->type == PT_JV_STR && !st->int_small)
                break; /* long, integer: digits as a string, for values beyond 2^53 */
            want = v->type == PT_JV_NUM ? "integer (no fraction or exponent)" : "integer";
            break;
        case PT_XSP_DECIMAL:
            if (v->type == PT_JV_STR || (v->type == PT_JV_NUM && !(v->numflags & PT_JTOK_F_EXP)))
                break;
            want = v->type == PT_JV_NUM ? "decimal without exponent (or a string)"
                                        : "decimal number or string";
            break;
        case PT_XSP_FLOAT:
        case PT_XSP_DOUBLE:
            if (v->type == PT_JV_NUM)
                break;
            if (is_special_num(v, &s)) {
                n = strlen(s);
                break;
            }
            want = "number (or \"NaN\", \"Infinity\", \"-Infinity\")";
            break;
        default:
            if (v->type != PT_JV_STR)
                want = "string";
        }
    }
    if (want != NULL) {
        bad(r, "expected %s, got %s", want, pt__jv_type_name(v));
        return;
    }
    const char *why = pt__xst_check(r->w, st, s, n);
    if (why != NULL) {
        bad(r, "value %.*s%.*s%.*s %s (%s)", v->type == PT_JV_STR ? 1 : 0, "\"",
            (int)(n > 64 ? 64 : n), s, v->type == PT_JV_STR ? 1 : 0, "\"", why, st->name);
        return;
    }
    int rc = pt__put_xml_text(r->out, s, n, attr);
    if (rc == PT_XERR_INVALID)
        bad(r, "string holds a character XML cannot carry");
    else
        put(r, rc);
}

static void emit_particle(rq_t *r, const pt_xpart_t *p, pt__jv_t *obj, bool opt, bool rep);

static void unknown_keys(rq_t *r, const pt__jv_t *obj)
{
    for (const pt__jv_t *k = obj->first; k != NULL; k = k->next) {
        if (k->used)
            continue;
        size_t m = pt_xpath_push_field(&r->path, k->key, k->key_len);
        bad(r, "unknown field");
        pt_xpath_pop(&r->path, m);
    }
}

/* One occurrence of element e with JSON value v (not an array). */
static void emit_value(rq_t *r, const pt_xelem_t *e, pt__jv_t *v)
{
    if (r->fatal)
        return;
    if (v->type == PT_JV_NULL) {
        if (!e->nillable) {
            bad(r, "null is not allowed (element is not nillable)");
            return;
        }
        r->xsi_used = true;
        if (put(r, pt_xbuf_putc(r->out, '<')) && put_name(r, e->ns, e->name))
            put(r, pt_xbuf_puts(r->out, " xsi:nil=\"true\"/>"));
        return;
    }
    if (!put(r, pt_xbuf_putc(r->out, '<')) || !put_name(r, e->ns, e->name))
        return;
    const pt_xct_t *ct = e->ct;
    if (ct == NULL && e->st != NULL) {
        if (v->type == PT_JV_OBJ || v->type == PT_JV_ARR) {
            bad(r, "expected a value of type %s, got %s", e->st->name, pt__jv_type_name(v));
            return;
        }
        put(r, pt_xbuf_putc(r->out, '>'));
        scalar(r, e->st, v, false);
    } else if (ct == NULL) {
        /* xs:anyType: the generic convention of xmljson.h */
        pt_xerr_t err;
        pt_xerr_clear(&err);
        int rc = pt__json_generic_content(v, r->out, &r->path, &err);
        if (rc == PT_XERR_INVALID)
            bad(r, "%s", err.msg);
        else
            put(r, rc);
    } else {
        if (v->type != PT_JV_OBJ) {
            bad(r, "expected object, got %s", pt__jv_type_name(v));
            return;
        }
        if (++r->depth > 64) {
            put(r, PT_XERR_LIMIT);
            return;
        }
        for (size_t i = 0; i < ct->attr_cnt && !r->fatal; i++) {
            const pt_xattr_t *a = &ct->attrs[i];
            char key[256];
            int kl = snprintf(key, sizeof(key), "@%s", a->name);
            pt__jv_t *av = pt__jv_get(v, key, (size_t)kl);
            size_t m = pt_xpath_push_field(&r->path, key, (size_t)kl);
            if (av == NULL || av->type == PT_JV_NULL) {
                if (a->required)
                    bad(r, "missing required attribute");
            } else if (av->type == PT_JV_OBJ || av->type == PT_JV_ARR) {
                bad(r, "expected a value of type %s, got %s", a->st->name, pt__jv_type_name(av));
            } else if (put(r, pt_xbuf_putc(r->out, ' ')) &&
                       (a->ns[0] == '\0' || strcmp(a->ns, "http://www.w3.org/XML/1998/namespace") != 0
                            ? put_name(r, a->ns, a->name)
                            : put(r, pt_xbuf_puts(r->out, "xml:")) && put_name(r, "", a->name)) &&
                       put(r, pt_xbuf_puts(r->out, "=\""))) {
                scalar(r, a->st, av, true);
                put(r, pt_xbuf_putc(r->out, '"'));
            }
            if (av != NULL)
                av->used = true;
            pt_xpath_pop(&r->path, m);
        }
        put(r, pt_xbuf_putc(r->out, '>'));
        if (ct->simple != NULL) {
            pt__jv_t *tv = pt__jv_get(v, "#text", 5);
            size_t m = pt_xpath_push_field(&r->path, "#text", 5);
            if (tv == NULL || tv->type == PT_JV_NULL)
                bad(r, "missing the element's text value");
            else if (tv->type == PT_JV_OBJ || tv->type == PT_JV_ARR)
                bad(r, "expected a value of type %s, got %s", ct->simple->name,
                    pt__jv_type_name(tv));
            else
                scalar(r, ct->simple, tv, false);
            if (tv != NULL)
                tv->used = true;
            pt_xpath_pop(&r->path, m);
        }
        emit_particle(r, ct->part, v, false, false);
        unknown_keys(r, v);
        r->depth--;
    }
    if (put(r, pt_xbuf_puts(r->out, "</")) && put_name(r, e->ns, e->name))
        put(r, pt_xbuf_putc(r->out, '>'));
}

static bool has_any(const pt_xpart_t *p, const pt__jv_t *obj)
{
    if (p->kind == PT_PART_ELEM)
        return pt__jv_get(obj, p->elem->name, strlen(p->elem->name)) != NULL;
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        if (has_any(k, obj))
            return true;
    return false;
}

static void branch_names(const pt_xpart_t *p, char *b, size_t n, size_t *len)
{
    if (p->kind == PT_PART_ELEM) {
        int w = snprintf(b + *len, n - *len, "%s%s", *len ? ", " : "", p->elem->name);
        if (w > 0 && (size_t)w < n - *len)
            *len += (size_t)w;
        return;
    }
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        branch_names(k, b, n, len);
}

static void emit_particle(rq_t *r, const pt_xpart_t *p, pt__jv_t *obj, bool opt, bool rep)
{
    if (p == NULL || r->fatal)
        return;
    if (p->kind == PT_PART_ELEM) {
        const pt_xelem_t *e = p->elem;
        size_t nl = strlen(e->name);
        pt__jv_t *v = pt__jv_get(obj, e->name, nl);
        size_t m = pt_xpath_push_field(&r->path, e->name, nl);
        bool repeated = rep || p->max > 1;
        if (v != NULL)
            v->used = true;
        if (v == NULL || (v->type == PT_JV_NULL && (!e->nillable || repeated))) {
            if (!opt && p->min > 0)
                bad(r, "missing required field");
        } else if (repeated) {
            if (v->type != PT_JV_ARR) {
                bad(r, "expected array (maxOccurs > 1), got %s", pt__jv_type_name(v));
            } else {
                size_t i = 0;
                for (pt__jv_t *it = v->first; it != NULL && !r->fatal; it = it->next, i++) {
                    size_t mi = pt_xpath_push_index(&r->path, i);
                    if (it->type == PT_JV_ARR)
                        bad(r, "expected a single value, got array");
                    else
                        emit_value(r, e, it);
                    pt_xpath_pop(&r->path, mi);
                }
                if (!opt && i < p->min)
                    bad(r, "needs at least %u items, got %zu", p->min, i);
                if (!rep && p->max != PT_UNBOUNDED && i > p->max)
                    bad(r, "allows at most %u items, got %zu", p->max, i);
            }
        } else if (v->type == PT_JV_ARR) {
            bad(r, "expected a single value, got array");
        } else {
            emit_value(r, e, v);
        }
        pt_xpath_pop(&r->path, m);
        return;
    }
    bool o = opt || p->min == 0;
    bool rp = rep || p->max > 1;
    if (p->kind != PT_PART_CHOICE) {
        for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
            emit_particle(r, k, obj, o, rp);
        return;
    }
    size_t present = 0;
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        present += has_any(k, obj);
    if (present > 1 && !rp) {
        char names[256];
        size_t len = 0;
        names[0] = '\0';
        branch_names(p, names, sizeof(names), &len);
        bad(r, "only one of (%s) may be given", names);
    } else if (present == 0 && !o) {
        char names[256];
        size_t len = 0;
        names[0] = '\0';
        branch_names(p, names, sizeof(names), &len);
        bad(r, "one of (%s) is required", names);
    }
    for (const pt_xpart_t *k = p->kids; k != NULL; k = k->next)
        if (has_any(k, obj))
            emit_particle(r, k, obj, true, rp);
}

/* ---- bindings ---- */

static const pt_xfield_t *field_named(const pt_xct_t *ct, const char *s, size_t n)
{
    for (size_t i = 0; i < ct->field_cnt; i++)
        if (strlen(ct->fields[i].elem->name) == n && memcmp(ct->fields[i].elem->name, s, n) == 0)
            return &ct->fields[i];
    return NULL;
}

static int bind(pt__xpool_t *pool, const pt_xelem_t *root, pt__jv_t *obj,
                const pt_soap_binding_t *b, pt_xerrs_t *errs)
{
    const pt_xelem_t *e = root;
    size_t i = 0;
    char pbuf[PT_XERR_PATH_MAX];
    snprintf(pbuf, sizeof(pbuf), "%.*s", (int)b->path_len, b->path);
    for (;;) {
        size_t j = i;
        while (j < b->path_len && b->path[j] != '.')
            j++;
        const char *seg = b->path + i;
        size_t sl = j - i;
        bool last = j == b->path_len;
        if (e->ct == NULL || sl == 0 || obj->type != PT_JV_OBJ)
            return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf, "no such field to bind");
        bool repeated = false;
        const pt_xfield_t *f = NULL;
        if (seg[0] == '@') {
            bool found = false;
            for (size_t k = 0; k < e->ct->attr_cnt && !found; k++)
                found = strlen(e->ct->attrs[k].name) == sl - 1 &&
                        memcmp(e->ct->attrs[k].name, seg + 1, sl - 1) == 0;
            if (!found || !last)
                return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf, "no such field to bind");
        } else {
            f = field_named(e->ct, seg, sl);
            if (f == NULL)
                return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf, "no such field to bind");
            repeated = f->repeated;
            if (!last && (repeated || f->elem->ct == NULL))
                return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf,
                                    "cannot bind inside a repeated or simple field");
            if (last && f->elem->ct != NULL)
                return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf,
                                    "cannot bind text to a structured field");
        }
        pt__jv_t *cur = pt__jv_get(obj, seg, sl);
        if (!last) {
            if (cur == NULL) {
                cur = pt__xpool_alloc(pool, sizeof(*cur));
                if (cur == NULL)
                    return PT_XERR_NOMEM;
                cur->type = PT_JV_OBJ;
                cur->key = seg;
                cur->key_len = sl;
                pt__jv_append(obj, cur);
            } else if (cur->type != PT_JV_OBJ) {
                return pt_xerrs_add(errs, PT_XERR_INVALID, pbuf,
                                    "the body gives this field's parent a non-object value");
            }
            obj = cur;
            e = f->elem;
            i = j + 1;
            continue;
        }
        pt__jv_t *v = pt__xpool_alloc(pool, sizeof(*v));
        if (v == NULL)
            return PT_XERR_NOMEM;
        v->type = PT_JV_STR;
        v->from_text = true;
        v->s = b->value;
        v->len = b->value_len;
        if (repeated) {
            if (cur == NULL || cur->type != PT_JV_ARR) {
                pt__jv_t *arr = cur != NULL ? cur : pt__xpool_alloc(pool, sizeof(*arr));
                if (arr == NULL)
                    return PT_XERR_NOMEM;
                arr->type = PT_JV_ARR;
                arr->first = arr->last = NULL;
                arr->n = 0;
                if (cur == NULL) {
                    arr->key = seg;
                    arr->key_len = sl;
                    pt__jv_append(obj, arr);
                }
                cur = arr;
            }
            pt__jv_append(cur, v);
        } else if (cur != NULL) {
            cur->type = PT_JV_STR;
            cur->from_text = true;
            cur->s = b->value;
            cur->len = b->value_len;
            cur->first = cur->last = NULL;
            cur->n = 0;
        } else {
            v->key = seg;
            v->key_len = sl;
            pt__jv_append(obj, v);
        }
        return 0;
    }
}

/* ---- envelope ---- */

static int put_text(pt_xbuf_t *b, const char *s)
{
    int rc = pt__put_xml_text(b, s, strlen(s), false);
    return rc;
}

int pt_soap_build_request(const pt_soap_op_t *op, const char *json, size_t len,
                          const pt_soap_binding_t *b, size_t n, const pt_soap_req_opts_t *opts,
                          pt_xbuf_t *out, pt_xerrs_t *errs)
{
    const pt_opimpl_t *im = op->_impl;
    pt_soap_req_opts_t o;
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof(o));
    if (o.max_size != 0 && len > o.max_size)
        return pt_xerrs_add(errs, PT_XERR_LIMIT, "", "JSON body larger than %zu bytes",
                            o.max_size);
    pt__xpool_t pool;
    pt__xpool_init(&pool, out->a, 0);
    pt_xbuf_t body;
    pt_xbuf_init(&body, out->a);
    body.limit = o.max_size;
    size_t mark = out->len;
    pt__jv_t *root = NULL;
    int rc = 0;
    if (json != NULL && len > 0) {
        pt_xerr_t err;
        pt_xerr_clear(&err);
        rc = pt__jv_parse(&pool, json, len, o.max_depth, &root, &err);
        if (rc != 0)
            pt_xerrs_push(errs, &err);
    } else {
        root = pt__xpool_alloc(&pool, sizeof(*root));
        if (root == NULL)
            rc = pt_xerrs_add(errs, PT_XERR_NOMEM, "", "out of memory");
        else
            root->type = PT_JV_OBJ;
    }
    rq_t r;
    memset(&r, 0, sizeof(r));
    r.w = im->w;
    r.out = &body;
    r.errs = errs;
    pt_xpath_init(&r.path);
    if (rc == 0 && n > MAX_BINDINGS)
        rc = pt_xerrs_add(errs, PT_XERR_LIMIT, "", "more than %d bindings", MAX_BINDINGS);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (root == NULL || root->type != PT_JV_OBJ) {
            rc = pt_xerrs_add(errs, PT_XERR_INVALID, "", "bindings need a JSON object body");
            break;
        }
        int br = bind(&pool, im->in, root, &b[i], errs);
        if (br == PT_XERR_NOMEM)
            rc = pt_xerrs_add(errs, PT_XERR_NOMEM, "", "out of memory");
        else if (br != 0)
            r.err_cnt++;
    }
    if (rc == 0 && root != NULL) {
        emit_value(&r, im->in, root);
        if (r.fatal != 0)
            rc = pt_xerrs_add(errs, r.fatal, "",
                              r.fatal == PT_XERR_LIMIT ? "envelope over the size or depth limit"
                                                       : "out of memory");
        else if (r.err_cnt > 0)
            rc = PT_XERR_INVALID;
    }
    if (rc == 0) {
        const char *env = op->soap_version == PT_SOAP_12 ? PT_SOAP12_ENV : PT_SOAP11_ENV;
        int w = pt_xbuf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                  "<soapenv:Envelope xmlns:soapenv=\"");
        if (w == 0)
            w = pt_xbuf_puts(out, env);
        if (w == 0)
            w = pt_xbuf_putc(out, '"');
        if (w == 0 && r.xsi_used)
            w = pt_xbuf_puts(out, " xmlns:xsi=\"" PT_XSI_NS "\"");
        for (size_t i = 0; i < r.ns_cnt && w == 0; i++) {
            if ((w = pt_xbuf_puts(out, " xmlns:")) == 0 && (w = put_ns_prefix(out, i + 1)) == 0 &&
                (w = pt_xbuf_puts(out, "=\"")) == 0 &&
                (w = pt__put_xml_text(out, r.nss[i], strlen(r.nss[i]), true)) == 0)
                w = pt_xbuf_putc(out, '"');
        }
        if (w == 0)
            w = pt_xbuf_putc(out, '>');
        if (w == 0 && o.wsse_user != NULL && o.wsse_password != NULL) {
            if ((w = pt_xbuf_puts(out, "<soapenv:Header><wsse:Security xmlns:wsse=\"" WSSE_NS
                                       "\" soapenv:mustUnderstand=\"1\"><wsse:UsernameToken>"
                                       "<wsse:Username>")) == 0 &&
                (w = put_text(out, o.wsse_user)) == 0 &&
                (w = pt_xbuf_puts(out, "</wsse:Username><wsse:Password Type=\"" WSSE_PASSTEXT
                                       "\">")) == 0 &&
                (w = put_text(out, o.wsse_password)) == 0)
                w = pt_xbuf_puts(out, "</wsse:Password></wsse:UsernameToken></wsse:Security>"
                                      "</soapenv:Header>");
        }
        if (w == 0)
            w = pt_xbuf_puts(out, "<soapenv:Body>");
        if (w == 0)
            w = pt_xbuf_append(out, body.data, body.len);
        if (w == 0)
            w = pt_xbuf_puts(out, "</soapenv:Body></soapenv:Envelope>");
        if (w != 0)
            rc = pt_xerrs_add(errs, w, "",
                              w == PT_XERR_LIMIT ? "envelope over the size limit"
                              : w == PT_XERR_INVALID ? "WS-Security user or password holds a "
                                                       "character XML cannot carry"
                                                     : "out of memory");
    }
    pt_xbuf_dispose(&body);
    pt__xpool_dispose(&pool);
    if (rc != 0)
        out->len = mark;
    return rc;
}
