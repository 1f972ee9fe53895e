/*
 * httpbind.c -- google.api.http request and response transcoding for a
 * matched binding (see httprule.h, sections 4 and 5).
 *
 * Conversions are not done here: the body, the path variables and the query
 * parameters all go through pt_json_to_pb_bind(), so a query value is checked
 * exactly as the same value in a JSON body would be, with the same error text.
 * This file adds what is specific to HTTP: form-decoding the query string,
 * the policy about which fields a parameter may target (body and path
 * conflicts), HttpBody raw bodies, and response_body extraction.
 */
#include <stdio.h>
#include <string.h>

#include "httprule_internal.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/wkt.h"

/* ------------------------------------------------------------------------ */
/* Request                                                                  */

/* application/x-www-form-urlencoded decoding; -1 on a malformed escape. */
static long form_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            out[o++] = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = pt_hexval((unsigned char)s[i + 1]), l = pt_hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = c;
        }
    }
    return (long)o;
}

static bool all_space(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

static int put_varint(pt_xbuf_t *o, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    return pt_xbuf_append(o, b, n);
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Appends a google.api.HttpBody {content_type, data}, optionally as field `wrap_num`. */
static int put_httpbody(pt_xbuf_t *o, uint32_t wrap_num, const char *ct, const uint8_t *data,
                        size_t len)
{
    size_t ctlen = ct ? strlen(ct) : 0;
    size_t inner =
        (ctlen ? 1 + varint_len(ctlen) + ctlen : 0) + (len ? 1 + varint_len(len) + len : 0);
    int rc = 0;
    if (wrap_num != 0) {
        rc = put_varint(o, ((uint64_t)wrap_num << 3) | 2);
        if (rc == 0)
            rc = put_varint(o, inner);
    }
    if (rc == 0 && ctlen) {
        rc = pt_xbuf_putc(o, 0x0a);
        if (rc == 0)
            rc = put_varint(o, ctlen);
        if (rc == 0)
            rc = pt_xbuf_append(o, ct, ctlen);
    }
    if (rc == 0 && len) {
        rc = pt_xbuf_putc(o, 0x12);
        if (rc == 0)
            rc = put_varint(o, len);
        if (rc == 0)
            rc = pt_xbuf_append(o, data, len);
    }
    return rc;
}

#define MAX_DEPTH 16

static void verr(pt_xerrs_t *errs, int *first, int code, const char *path, const char *msg)
{
    if (*first == 0)
        *first = code;
    pt_xerrs_add(errs, code, path, "%s", msg);
}

/*
 * If `chain` sets a member of a oneof of which an earlier binding set another
 * member (in the same message instance: identical chain prefix), returns that
 * member's name.
 */
static const char *oneof_clash(const pt_fielddesc_t *const *chains, const uint8_t *cdepth, size_t n,
                               const pt_fielddesc_t *const *chain, size_t depth)
{
    for (size_t i = 0; i < n; i++) {
        const pt_fielddesc_t *const *c = chains + i * MAX_DEPTH;
        size_t d = cdepth[i] < depth ? cdepth[i] : depth;
        size_t k = 0;
        while (k < d && c[k] == chain[k])
            k++;
        if (k < d && c[k]->oneof_index >= 0 && c[k]->oneof_index == chain[k]->oneof_index)
            return c[k]->name;
    }
    return NULL;
}

/* Path of a raw query key for error messages (truncated, not NUL-terminated input). */
static void key_path(char *dst, size_t cap, const char *k, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, k, n);
    dst[n] = '\0';
}

int pt_httprule_transcode_request(const pt_httprule_table_t *t, const pt_httprule_match_t *m,
                                  const uint8_t *body, size_t body_len, const char *content_type,
                                  const char *query, size_t query_len, const pt_json_opts_t *jopts,
                                  pt_xbuf_t *out, pt_xerrs_t *errs)
{
    const pt_httpbinding_t *b = m->binding;
    if (b == NULL)
        return pt_xerrs_add(errs, PT_XERR_INVALID, NULL, "no binding matched");
    const pt_allocator_t *a = pt__httprule_table_allocator(t);
    const pt_descpool_t *pool = pt_httprule_table_pool(t);
    const pt_msgdesc_t *in = b->method->input;
    bool ignore_unknown = jopts != NULL && jopts->ignore_unknown;
    size_t start = out->len;
    int first = 0;

    /* upper bound of query pairs */
    size_t npairs = 0;
    if (query != NULL && query_len > 0) {
        npairs = 1;
        for (size_t i = 0; i < query_len; i++)
            npairs += query[i] == '&';
    }
    size_t nv = m->path.var_cnt;
    size_t cap =
        nv + (npairs > PT_HTTPRULE_MAX_QUERY_PARAMS ? PT_HTTPRULE_MAX_QUERY_PARAMS : npairs);
    pt_json_binding_t *bind = NULL;
    const pt_fielddesc_t **chains = NULL; /* cap x MAX_DEPTH resolved fields, for oneof checks */
    uint8_t *cdepth = NULL;
    char *qbuf = NULL;
    if (cap > 0) {
        size_t sz = cap * (sizeof(*bind) + MAX_DEPTH * sizeof(*chains) + 1);
        bind = a->alloc(a->ud, sz);
        if (bind == NULL)
            return pt_xerrs_add(errs, PT_XERR_NOMEM, NULL, "out of memory");
        chains = (const pt_fielddesc_t **)(bind + cap);
        cdepth = (uint8_t *)(chains + cap * MAX_DEPTH);
    }
    if (query_len > 0) {
        qbuf = a->alloc(a->ud, query_len + 1);
        if (qbuf == NULL) {
            a->free(a->ud, bind);
            return pt_xerrs_add(errs, PT_XERR_NOMEM, NULL, "out of memory");
        }
    }
    size_t n = 0;

    /* path variables; their fields were validated when the table was built */
    for (size_t v = 0; v < nv; v++) {
        const pt_pathvar_t *pv = &m->path.vars[v];
        memcpy(chains + n * MAX_DEPTH, b->_var_fields + v * MAX_DEPTH, // NOLINT(clang-analyzer-core.NonNullParamChecker): nv > 0 => cap > 0 => chains allocated
               b->_var_depth[v] * sizeof(*chains));
        cdepth[n] = b->_var_depth[v];
        bind[n++] = (pt_json_binding_t){.path = pv->field_path,
                                        .path_len = pv->field_path_len,
                                        .value = pv->value,
                                        .value_len = pv->value_len};
    }

    /* query parameters */
    char *qo = qbuf;
    size_t pairs = 0;
    for (size_t i = 0; query != NULL && i < query_len;) {
        size_t j = i;
        while (j < query_len && query[j] != '&')
            j++;
        const char *kv = query + i;
        size_t kvlen = j - i;
        i = j + 1;
        if (kvlen == 0)
            continue;
        if (++pairs > PT_HTTPRULE_MAX_QUERY_PARAMS) {
            verr(errs, &first, PT_XERR_LIMIT, NULL, "too many query parameters");
            break;
        }
        const char *eq = memchr(kv, '=', kvlen);
        size_t klen_raw = eq ? (size_t)(eq - kv) : kvlen;
        char kp[PT_XERR_PATH_MAX];
        key_path(kp, sizeof(kp), kv, klen_raw);
        long kl = form_decode(kv, klen_raw, qo);
        if (kl < 0) {
            verr(errs, &first, PT_XERR_INVALID, kp,
                 "malformed percent-escape in a query parameter name");
            continue;
        }
        char *key = qo;
        qo += kl;
        char *val = qo;
        long vl = 0;
        if (eq != NULL) {
            vl = form_decode(eq + 1, kvlen - klen_raw - 1, qo);
            if (vl < 0) {
                qo = key;
                verr(errs, &first, PT_XERR_INVALID, kp,
                     "malformed percent-escape in a query parameter value");
                continue;
            }
            qo += vl;
        }
        /* labels[env] -> map key */
        size_t name_len = (size_t)kl;
        const char *mkey = NULL;
        size_t mkey_len = 0;
        if (kl > 0 && key[kl - 1] == ']') {
            char *lb = memchr(key, '[', (size_t)kl);
            if (lb != NULL) {
                name_len = (size_t)(lb - key);
                mkey = lb + 1;
                mkey_len = (size_t)kl - name_len - 2;
            }
        }
        key_path(kp, sizeof(kp), key, (size_t)kl);
        const pt_fielddesc_t *chain[MAX_DEPTH];
        size_t depth = 0;
        const char *why = NULL;
        int r = pt__httprule_resolve(in, key, name_len, chain, MAX_DEPTH, &depth, &why);
        if (r == -2 && ignore_unknown)
            continue;
        if (r == 0) {
            if (b->body_kind == PT_HTTPBODY_ALL) {
                verr(errs, &first, PT_XERR_INVALID, kp,
                     "query parameters are not accepted: the request body (body \"*\") carries "
                     "every field");
                continue;
            }
            if (b->body_kind == PT_HTTPBODY_FIELD && chain[0] == b->body_field) {
                verr(errs, &first, PT_XERR_INVALID, kp,
                     "this field is carried by the request body, not the query string");
                continue;
            }
            bool dup = false;
            for (size_t v = 0; v < nv && !dup; v++) {
                if (b->_var_depth[v] != depth)
                    continue;
                dup = memcmp(b->_var_fields + v * MAX_DEPTH, chain, depth * sizeof(chain[0])) == 0;
            }
            if (dup) {
                verr(errs, &first, PT_XERR_INVALID, kp,
                     "this field is already bound by the URL path");
                continue;
            }
            if (mkey != NULL && !chain[depth - 1]->is_map) {
                verr(errs, &first, PT_XERR_INVALID, kp,
                     "[key] syntax on a field that is not a map");
                continue;
            }
            if (mkey == NULL && chain[depth - 1]->is_map) {
                verr(errs, &first, PT_XERR_INVALID, kp, "a map field needs a key: name[key]=value");
                continue;
            }
        }
        if (r == 0) {
            const char *other = oneof_clash(chains, cdepth, n, chain, depth);
            if (other != NULL) {
                char msg[PT_XERR_MSG_MAX];
                snprintf(msg, sizeof(msg), "oneof conflict: \"%s\" is already set", other);
                verr(errs, &first, PT_XERR_INVALID, kp, msg);
                continue;
            }
            memcpy(chains + n * MAX_DEPTH, chain, depth * sizeof(*chains));
            cdepth[n] = (uint8_t)depth;
        } else {
            cdepth[n] = 0;
        }
        /* unknown names and other problems are reported by the binder with its own words */
        bind[n++] = (pt_json_binding_t){.path = key,
                                        .path_len = name_len,
                                        .map_key = mkey,
                                        .map_key_len = mkey_len,
                                        .value = val,
                                        .value_len = (size_t)vl};
    }

    /* body */
    const char *json = NULL;
    size_t json_len = 0;
    const pt_fielddesc_t *body_field = NULL;
    int rc = 0;
    if (b->body_kind != PT_HTTPBODY_NONE && b->request_is_httpbody) {
        rc = put_httpbody(out, b->body_kind == PT_HTTPBODY_FIELD ? b->body_field->number : 0,
                          content_type, body, body_len);
        if (rc != 0)
            verr(errs, &first, rc, NULL,
                 rc == PT_XERR_NOMEM ? "out of memory" : "request too large");
    } else if (b->body_kind == PT_HTTPBODY_ALL) {
        /* an empty body is an empty message, as grpc-gateway does */
        if (body != NULL && !all_space(body, body_len)) {
            json = (const char *)body;
            json_len = body_len;
        }
    } else if (b->body_kind == PT_HTTPBODY_FIELD) {
        if (body == NULL || all_space(body, body_len)) {
            verr(errs, &first, PT_XERR_INVALID, b->body, "request body required");
        } else {
            json = (const char *)body;
            json_len = body_len;
            body_field = b->body_field;
        }
    }

    /* the binder reports its own problems next to ours, so the client sees all of them */
    if (rc == 0) {
        rc = pt_json_to_pb_bind(pool, in, body_field, json, json_len, bind, n, jopts, out, errs);
        if (rc != 0 && first == 0)
            first = rc;
    }
    a->free(a->ud, bind);
    a->free(a->ud, qbuf);
    if (first != 0) {
        out->len = start;
        return first;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Response                                                                 */

static int corrupt(pt_xerr_t *err)
{
    return pt_xerr_set(err, PT_XERR_CORRUPT, NULL, "malformed protobuf response");
}

static int raw_httpbody(const uint8_t *p, size_t len, pt_xbuf_t *out, pt_httprule_str_t *ct,
                        pt_xerr_t *err)
{
    static const uint8_t none[1];
    if (p == NULL) /* NULL + 0 is undefined behaviour */
        p = none, len = 0;
    const uint8_t *end = p + len, *data = NULL;
    size_t data_len = 0;
    *ct = (pt_httprule_str_t){"", 0};
    while (p < end) {
        uint32_t num;
        unsigned wt;
        if (pt__wire_tag(&p, end, &num, &wt) != 0)
            return corrupt(err);
        if ((num == 1 || num == 2) && wt == 2) {
            const uint8_t *s;
            size_t n;
            if (pt__wire_bytes(&p, end, &s, &n) != 0)
                return corrupt(err);
            if (num == 1)
                *ct = (pt_httprule_str_t){(const char *)s, n};
            else
                data = s, data_len = n;
        } else if (pt__wire_skip(&p, end, wt, num) != 0) {
            return corrupt(err);
        }
    }
    int rc = pt_xbuf_append(out, data, data_len);
    if (rc != 0)
        return pt_xerr_set(err, rc, NULL,
                           rc == PT_XERR_NOMEM ? "out of memory" : "response too large");
    return 0;
}

/*
 * Copies the occurrences of field `num` from message bytes p[0..len) into
 * `dst`: with `payload_only`, the concatenated payloads (protobuf merge of a
 * message field); otherwise whole tag+value records.
 */
static int filter_field(const uint8_t *p, size_t len, uint32_t num, bool payload_only,
                        pt_xbuf_t *dst, pt_xerr_t *err)
{
    if (p == NULL)
        return 0;
    const uint8_t *end = p + len;
    while (p < end) {
        const uint8_t *rec = p;
        uint32_t n;
        unsigned wt;
        if (pt__wire_tag(&p, end, &n, &wt) != 0)
            return corrupt(err);
        if (n == num && payload_only && wt == 2) {
            const uint8_t *s;
            size_t sl;
            if (pt__wire_bytes(&p, end, &s, &sl) != 0)
                return corrupt(err);
            int rc = pt_xbuf_append(dst, s, sl);
            if (rc != 0)
                return pt_xerr_set(err, rc, NULL, "out of memory");
            continue;
        }
        if (pt__wire_skip(&p, end, wt, n) != 0)
            return corrupt(err);
        if (n == num && !payload_only) {
            int rc = pt_xbuf_append(dst, rec, (size_t)(p - rec));
            if (rc != 0)
                return pt_xerr_set(err, rc, NULL, "out of memory");
        }
    }
    return 0;
}

/* From `{"key":VALUE}` (the JSON of a one-field message) keeps VALUE. */
static int unwrap_one(const uint8_t *j, size_t n, const uint8_t **v, size_t *vlen)
{
    size_t i = 0;
    while (i < n && j[i] != '{')
        i++;
    i++;
    while (i < n && (j[i] == ' ' || j[i] == '\n' || j[i] == '\t' || j[i] == '\r'))
        i++;
    if (i >= n || j[i] != '"')
        return -1;
    for (i++; i < n && j[i] != '"'; i++)
        if (j[i] == '\\')
            i++;
    i++;
    while (i < n && j[i] != ':')
        i++;
    i++;
    while (i < n && (j[i] == ' ' || j[i] == '\n' || j[i] == '\t' || j[i] == '\r'))
        i++;
    size_t e = n;
    while (e > i && j[e - 1] != '}')
        e--;
    if (e <= i)
        return -1;
    e--;
    while (e > i && (j[e - 1] == ' ' || j[e - 1] == '\n' || j[e - 1] == '\t' || j[e - 1] == '\r'))
        e--;
    *v = j + i;
    *vlen = e - i;
    return 0;
}

/* The JSON of an absent non-message field (enum names are handled by the caller). */
static void default_json(const pt_fielddesc_t *f, const pt_json_opts_t *o, char *buf, size_t cap)
{
    const char *v = "0";
    if (f->is_map)
        v = "{}";
    else if (f->label == PT_LABEL_REPEATED)
        v = "[]";
    else if (f->type == PT_FT_BOOL)
        v = "false";
    else if (f->type == PT_FT_STRING || f->type == PT_FT_BYTES)
        v = "\"\"";
    else if (f->type == PT_FT_INT64 || f->type == PT_FT_UINT64 || f->type == PT_FT_SINT64 ||
             f->type == PT_FT_FIXED64 || f->type == PT_FT_SFIXED64)
        v = "\"0\"";
    (void)o;
    snprintf(buf, cap, "%s", v);
}

int pt_httprule_transcode_response(const pt_httprule_table_t *t, const pt_httpbinding_t *b,
                                   const uint8_t *pb, size_t len, const pt_json_opts_t *jopts,
                                   pt_xbuf_t *out, pt_httprule_str_t *content_type, pt_xerr_t *err)
{
    static const char json_ct[] = "application/json";
    static const uint8_t empty[1]; /* never pass NULL data: NULL + 0 is undefined */
    if (pb == NULL)
        pb = empty, len = 0;
    const pt_descpool_t *pool = pt_httprule_table_pool(t);
    const pt_fielddesc_t *f = b->response_field;
    size_t start = out->len;
    if (f == NULL) {
        if (b->response_is_httpbody)
            return raw_httpbody(pb, len, out, content_type, err);
        *content_type = (pt_httprule_str_t){json_ct, sizeof(json_ct) - 1};
        return pt_pb_to_json(pool, b->method->output, pb, len, jopts, out, err);
    }
    const pt_allocator_t *a = pt__httprule_table_allocator(t);
    pt_xbuf_t tmp;
    pt_xbuf_init(&tmp, a);
    int rc;
    bool singular_msg = f->label != PT_LABEL_REPEATED && f->type == PT_FT_MESSAGE;
    if (singular_msg) {
        rc = filter_field(pb, len, f->number, true, &tmp, err);
        if (rc == 0) {
            if (b->response_is_httpbody) {
                rc = raw_httpbody(tmp.data, tmp.len, out, content_type, err);
            } else {
                *content_type = (pt_httprule_str_t){json_ct, sizeof(json_ct) - 1};
                rc = pt_pb_to_json(pool, f->message, tmp.data ? tmp.data : empty, tmp.len, jopts,
                                   out, err);
            }
        }
        pt_xbuf_dispose(&tmp);
        return rc;
    }
    /* scalar, repeated or map: render the one-field message and keep the value */
    *content_type = (pt_httprule_str_t){json_ct, sizeof(json_ct) - 1};
    pt_xbuf_t js;
    pt_xbuf_init(&js, a);
    rc = filter_field(pb, len, f->number, false, &tmp, err);
    if (rc == 0) {
        pt_json_opts_t o = jopts ? *jopts : (pt_json_opts_t){0};
        o.emit_defaults = false; /* only this field is present; absent is handled below */
        rc = pt_pb_to_json(pool, b->method->output, tmp.data ? tmp.data : empty, tmp.len, &o, &js,
                           err);
    }
    if (rc == 0) {
        const uint8_t *v;
        size_t vl;
        char dflt[16];
        if (unwrap_one(js.data, js.len, &v, &vl) != 0) {
            /* the field is absent ("{}"): its default JSON value */
            default_json(f, jopts, dflt, sizeof(dflt));
            v = (const uint8_t *)dflt;
            vl = strlen(dflt);
            if (f->type == PT_FT_ENUM && f->label != PT_LABEL_REPEATED &&
                !(jopts && jopts->enums_as_ints) && f->enumdesc) {
                const pt_enumvalue_t *ev = pt_enumdesc_value_by_number(f->enumdesc, 0);
                if (ev != NULL) {
                    rc = pt_xbuf_putc(out, '"');
                    if (rc == 0)
                        rc = pt_xbuf_puts(out, ev->name);
                    if (rc == 0)
                        rc = pt_xbuf_putc(out, '"');
                    vl = 0;
                }
            }
        }
        if (rc == 0)
            rc = pt_xbuf_append(out, v, vl);
        if (rc != 0)
            pt_xerr_set(err, rc, NULL, "out of memory");
    }
    pt_xbuf_dispose(&tmp);
    pt_xbuf_dispose(&js);
    if (rc != 0)
        out->len = start;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Error bodies                                                             */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Appends s as a JSON string; invalid UTF-8 becomes U+FFFD. */
static int put_jstr(pt_xbuf_t *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    int rc = pt_xbuf_putc(o, '"');
    for (size_t i = 0; rc == 0 && i < n;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = pt_xbuf_append(o, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", c);
            rc = pt_xbuf_append(o, e, 6);
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                rc = pt_xbuf_puts(o, "\\ufffd");
                i++;
            } else {
                rc = pt_xbuf_append(o, s + i, k);
                i += k;
            }
        }
    }
    if (rc == 0)
        rc = pt_xbuf_putc(o, '"');
    return rc;
}

int pt_httprule_status_json(int grpc_code, const char *message, const pt_xerrs_t *errs,
                            pt_xbuf_t *out)
{
    size_t start = out->len;
    size_t cnt = errs != NULL ? errs->cnt : 0;
    char num[32], msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 64];
    if (message == NULL) {
        if (cnt == 0) {
            message = "invalid request";
        } else {
            size_t more = cnt - 1 + errs->dropped;
            int k = (int)pt_xerr_format(&errs->items[0], msg, sizeof(msg));
            if (more > 0 && k >= 0 && (size_t)k < sizeof(msg))
                snprintf(msg + k, sizeof(msg) - (size_t)k, " (and %zu more problem%s)", more,
                         more == 1 ? "" : "s");
            message = msg;
        }
    }
    snprintf(num, sizeof(num), "%d", grpc_code);
    int rc = pt_xbuf_puts(out, "{\"code\":");
    if (rc == 0)
        rc = pt_xbuf_puts(out, num);
    if (rc == 0)
        rc = pt_xbuf_puts(out, ",\"message\":");
    if (rc == 0)
        rc = put_jstr(out, message);
    if (rc == 0 && cnt > 0) {
        rc = pt_xbuf_puts(out, ",\"details\":[{\"@type\":\"type.googleapis.com/"
                               "google.rpc.BadRequest\",\"fieldViolations\":[");
        for (size_t i = 0; rc == 0 && i < cnt; i++) {
            rc = pt_xbuf_puts(out, i ? ",{\"field\":" : "{\"field\":");
            if (rc == 0)
                rc = put_jstr(out, errs->items[i].path);
            if (rc == 0)
                rc = pt_xbuf_puts(out, ",\"description\":");
            if (rc == 0)
                rc = put_jstr(out, errs->items[i].msg);
            if (rc == 0)
                rc = pt_xbuf_putc(out, '}');
        }
        if (rc == 0)
            rc = pt_xbuf_puts(out, "]}]");
    }
    if (rc == 0)
        rc = pt_xbuf_putc(out, '}');
    if (rc != 0)
        out->len = start;
    return rc;
}
