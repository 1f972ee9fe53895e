/*
 * openapi.c -- the OpenAPI 3.1 document of the loaded configuration (see
 * openapi.h for what it lists), built as a json-c tree.
 *
 * Rendering choices (docs/configuration.md, "OpenAPI and /docs"):
 *   - a path variable spanning segments ({name=shelves/ * /books/ *}, {x=**})
 *     cannot be an OpenAPI path parameter with '/' in it, so the path shows
 *     {name} and the parameter carries a `pattern` of the segments, a
 *     description, and `x-portico-multi-segment: true` (its '/' must be sent
 *     as is, not as %2F: the explorer does so). grpc-gateway's openapiv2 and
 *     Envoy render them the same way;
 *   - operations with a custom HTTP method (custom { kind: "PURGE" }) or "*"
 *     have no place in an OpenAPI 3.1 path item: they are listed under
 *     `x-portico-unlisted` at the top level, as are bindings whose rendered
 *     path and method another binding already took;
 *   - schemas are named by the message's full name; a route with other JSON
 *     output options (proto_names, enums_as_ints) gets its own copies with a
 *     suffix (-proto_names, -enums_as_ints), since the names and types differ.
 */
#include "observe/openapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <yaml.h>

#include "core/handler.h"
#include "core/router.h"
#include "handlers/grpc.h"
#include "handlers/soap.h"
#include "portico/status.h"
#include "portico/transcoder/soap_schema.h"

#define REF_PREFIX "#/components/schemas/"
/* query parameters: nesting of message fields followed, and parameters per operation */
#define QUERY_MAX_DEPTH 6
#define QUERY_MAX_PARAMS 256

/* ---- config ---------------------------------------------------------------------- */

static const pt_conf_field_t conf_fields[] = {
    {"title", PT_CONF_T_STR, offsetof(pt_openapi_conf_t, title), 0, 0, false, NULL},
    {"version", PT_CONF_T_STR, offsetof(pt_openapi_conf_t, version), 0, 0, false, NULL},
    {"description", PT_CONF_T_STR, offsetof(pt_openapi_conf_t, description), 0, 0, false, NULL},
    {"server", PT_CONF_T_STR, offsetof(pt_openapi_conf_t, server), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

int pt_openapi_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_openapi_conf_t *out)
{
    if (node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "openapi: expected a map like { title: \"Books\", version: "
                                       "\"1.2\" }");
    pt_openapi_conf_t c = {0};
    if (pt_conf_parse_fields(cx, node, conf_fields, &c) != 0)
        return PT_ERR_INVALID;
    if (c.server != NULL && strncmp(c.server, "http://", 7) != 0 &&
        strncmp(c.server, "https://", 8) != 0)
        return pt_conf_error(cx, pt_conf_map_get(node, "server"),
                             "openapi.server: expected an http:// or https:// URL, got '%s'",
                             c.server);
    if (c.title != NULL && c.title[0] == '\0')
        return pt_conf_error(cx, pt_conf_map_get(node, "title"), "openapi.title must not be empty");
    *out = c;
    return 0;
}

/* ---- the builder ------------------------------------------------------------------ */

/* A schema to write into components: a message or an enum, in one naming variant. */
typedef struct pending {
    const pt_msgdesc_t *msg;
    const pt_enumdesc_t *en;
    unsigned variant;
} pending_t;

enum { V_PROTO_NAMES = 1, V_ENUM_INTS = 2 };

struct pt_openapi {
    json_object *doc, *paths, *schemas, *tags, *unlisted;
    pending_t *pend;
    size_t pend_cnt, pend_cap;
    bool nomem;
    bool need_status;
};

static json_object *jstr(const char *s)
{
    return json_object_new_string(s != NULL ? s : "");
}

static void put(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

static void put_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, jstr(v));
}

static json_object *typed(const char *type)
{
    json_object *o = json_object_new_object();
    put_str(o, "type", type);
    return o;
}

static json_object *typed_fmt(const char *type, const char *fmt)
{
    json_object *o = typed(type);
    if (fmt != NULL)
        put_str(o, "format", fmt);
    return o;
}

static const char *variant_suffix(unsigned v)
{
    static const char *const s[] = {"", "-proto_names", "-enums_as_ints",
                                    "-proto_names-enums_as_ints"};
    return s[v & 3];
}

static unsigned variant_of(const pt_json_opts_t *j)
{
    return (j->proto_names ? V_PROTO_NAMES : 0) | (j->enums_as_ints ? V_ENUM_INTS : 0);
}

/* The component key of a message or enum in a variant; enums differ only with enums_as_ints. */
static void comp_key(char *out, size_t n, const char *full_name, unsigned variant, bool is_enum)
{
    snprintf(out, n, "%s%s", full_name, variant_suffix(is_enum ? variant & V_ENUM_INTS : variant));
}

static json_object *ref_to(pt_openapi_t *o, const pt_msgdesc_t *m, const pt_enumdesc_t *e,
                           unsigned variant)
{
    char key[600], ref[640];
    const char *full = m != NULL ? m->full_name : e != NULL ? e->full_name : NULL;
    if (full == NULL)
        return json_object_new_object();
    if (e != NULL)
        variant &= V_ENUM_INTS;
    comp_key(key, sizeof(key), full, variant, e != NULL);
    snprintf(ref, sizeof(ref), REF_PREFIX "%s", key);
    if (json_object_object_get(o->schemas, key) == NULL) {
        bool queued = false;
        for (size_t i = 0; i < o->pend_cnt && !queued; i++)
            queued = o->pend[i].msg == m && o->pend[i].en == e && o->pend[i].variant == variant;
        if (!queued) {
            if (o->pend_cnt == o->pend_cap) {
                size_t ncap = o->pend_cap != 0 ? o->pend_cap * 2 : 64;
                pending_t *np = realloc(o->pend, ncap * sizeof(*np));
                if (np == NULL) {
                    o->nomem = true;
                    return json_object_new_object();
                }
                o->pend = np;
                o->pend_cap = ncap;
            }
            o->pend[o->pend_cnt++] = (pending_t){m, e, variant};
        }
    }
    json_object *r = json_object_new_object();
    put_str(r, "$ref", ref);
    return r;
}

/* The JSON forms of the well-known types (proto3 JSON mapping). */
static json_object *wkt_schema(const pt_msgdesc_t *m)
{
    json_object *s;
    switch (m->wkt) {
    case PT_WKT_TIMESTAMP:
        s = typed_fmt("string", "date-time");
        put_str(s, "description", "google.protobuf.Timestamp: RFC 3339, e.g. 2024-01-01T00:00:00Z");
        return s;
    case PT_WKT_DURATION:
        s = typed_fmt("string", "duration");
        put_str(s, "pattern", "^-?[0-9]+(\\.[0-9]{1,9})?s$");
        put_str(s, "description", "google.protobuf.Duration: seconds with an 's' suffix, e.g. 3.5s");
        return s;
    case PT_WKT_FIELDMASK:
        s = typed_fmt("string", "field-mask");
        put_str(s, "description",
                "google.protobuf.FieldMask: comma-separated lowerCamelCase field paths, e.g. "
                "title,updateTime");
        return s;
    case PT_WKT_STRUCT:
        s = typed("object");
        put_str(s, "description", "google.protobuf.Struct: any JSON object");
        return s;
    case PT_WKT_VALUE:
        s = json_object_new_object();
        put_str(s, "description", "google.protobuf.Value: any JSON value");
        return s;
    case PT_WKT_LISTVALUE:
        s = typed("array");
        put(s, "items", json_object_new_object());
        put_str(s, "description", "google.protobuf.ListValue: any JSON array");
        return s;
    case PT_WKT_EMPTY:
        s = typed("object");
        put(s, "additionalProperties", json_object_new_boolean(0));
        put_str(s, "description", "google.protobuf.Empty: {}");
        return s;
    case PT_WKT_ANY: {
        s = typed("object");
        json_object *props = json_object_new_object();
        json_object *t = typed("string");
        put_str(t, "description",
                "type URL, e.g. type.googleapis.com/pkg.Message; the message's fields follow (or "
                "\"value\" for types with a special JSON form)");
        put(props, "@type", t);
        put(s, "properties", props);
        json_object *req = json_object_new_array();
        json_object_array_add(req, jstr("@type"));
        put(s, "required", req);
        put(s, "additionalProperties", json_object_new_boolean(1));
        put_str(s, "description", "google.protobuf.Any");
        return s;
    }
    default:
        break;
    }
    /* wrappers: the wrapped scalar's JSON form, or null */
    const char *type = "string", *fmt = NULL;
    switch (m->wkt) {
    case PT_WKT_DOUBLEVALUE: type = "number"; fmt = "double"; break;
    case PT_WKT_FLOATVALUE: type = "number"; fmt = "float"; break;
    case PT_WKT_INT64VALUE: fmt = "int64"; break;
    case PT_WKT_UINT64VALUE: fmt = "uint64"; break;
    case PT_WKT_INT32VALUE: type = "integer"; fmt = "int32"; break;
    case PT_WKT_UINT32VALUE: type = "integer"; fmt = "uint32"; break;
    case PT_WKT_BOOLVALUE: type = "boolean"; break;
    case PT_WKT_BYTESVALUE: fmt = "byte"; break;
    default: break;
    }
    s = json_object_new_object();
    json_object *types = json_object_new_array();
    json_object_array_add(types, jstr(type));
    json_object_array_add(types, jstr("null"));
    put(s, "type", types);
    if (fmt != NULL)
        put_str(s, "format", fmt);
    if (m->wkt == PT_WKT_BYTESVALUE)
        put_str(s, "contentEncoding", "base64");
    put_str(s, "description", m->full_name);
    return s;
}

static json_object *scalar_schema(pt_openapi_t *o, const pt_fielddesc_t *f, unsigned variant)
{
    json_object *s;
    switch (f->type) {
    case PT_FT_DOUBLE: return typed_fmt("number", "double");
    case PT_FT_FLOAT: return typed_fmt("number", "float");
    case PT_FT_INT32: case PT_FT_SINT32: case PT_FT_SFIXED32: return typed_fmt("integer", "int32");
    case PT_FT_UINT32: case PT_FT_FIXED32:
        s = typed_fmt("integer", "uint32");
        put(s, "minimum", json_object_new_int64(0));
        put(s, "maximum", json_object_new_int64(4294967295LL));
        return s;
    case PT_FT_INT64: case PT_FT_SINT64: case PT_FT_SFIXED64:
        s = typed_fmt("string", "int64");
        put_str(s, "pattern", "^-?[0-9]+$");
        return s;
    case PT_FT_UINT64: case PT_FT_FIXED64:
        s = typed_fmt("string", "uint64");
        put_str(s, "pattern", "^[0-9]+$");
        return s;
    case PT_FT_BOOL: return typed("boolean");
    case PT_FT_STRING: return typed("string");
    case PT_FT_BYTES:
        s = typed_fmt("string", "byte");
        put_str(s, "contentEncoding", "base64");
        return s;
    case PT_FT_ENUM:
        if (f->enumdesc != NULL && strcmp(f->enumdesc->full_name, "google.protobuf.NullValue") == 0)
            return typed("null");
        return f->enumdesc != NULL ? ref_to(o, NULL, f->enumdesc, variant) : typed("string");
    case PT_FT_MESSAGE: case PT_FT_GROUP:
        if (f->message == NULL)
            return json_object_new_object();
        return f->message->wkt != PT_WKT_NONE ? wkt_schema(f->message)
                                              : ref_to(o, f->message, NULL, variant);
    default:
        return json_object_new_object();
    }
}

static json_object *field_schema(pt_openapi_t *o, const pt_fielddesc_t *f, unsigned variant)
{
    if (f->is_map && f->message != NULL && f->message->field_cnt == 2) {
        const pt_fielddesc_t *k = &f->message->fields[0], *v = &f->message->fields[1];
        json_object *s = typed("object");
        put(s, "additionalProperties", scalar_schema(o, v, variant));
        if (k->type == PT_FT_BOOL) {
            json_object *pn = json_object_new_object(), *en = json_object_new_array();
            json_object_array_add(en, jstr("true"));
            json_object_array_add(en, jstr("false"));
            put(pn, "enum", en);
            put(s, "propertyNames", pn);
        } else if (k->type != PT_FT_STRING) {
            json_object *pn = json_object_new_object();
            put_str(pn, "pattern", "^-?[0-9]+$");
            put(s, "propertyNames", pn);
        }
        return s;
    }
    json_object *item = scalar_schema(o, f, variant);
    if (f->label != PT_LABEL_REPEATED)
        return item;
    json_object *s = typed("array");
    put(s, "items", item);
    return s;
}

static const char *field_key(const pt_fielddesc_t *f, unsigned variant)
{
    return (variant & V_PROTO_NAMES) ? f->name : f->json_name;
}

static json_object *message_schema(pt_openapi_t *o, const pt_msgdesc_t *m, unsigned variant)
{
    json_object *s = typed("object");
    put_str(s, "title", m->full_name);
    json_object *props = json_object_new_object(), *req = NULL;
    for (size_t i = 0; i < m->field_cnt; i++) {
        const pt_fielddesc_t *f = &m->fields[i];
        json_object *fs = field_schema(o, f, variant);
        if (f->oneof_index >= 0 && (size_t)f->oneof_index < m->oneof_cnt) {
            char d[300];
            snprintf(d, sizeof(d), "member of oneof %s: set at most one of its fields",
                     m->oneof_names[f->oneof_index]);
            /* a $ref object takes siblings in 3.1; keep the description beside it */
            put_str(fs, "description", d);
            put_str(fs, "x-oneof", m->oneof_names[f->oneof_index]);
        }
        put(props, field_key(f, variant), fs);
        if (f->label == PT_LABEL_REQUIRED) {
            if (req == NULL)
                req = json_object_new_array();
            json_object_array_add(req, jstr(field_key(f, variant)));
        }
    }
    put(s, "properties", props);
    if (req != NULL)
        put(s, "required", req);
    return s;
}

static json_object *enum_schema(const pt_enumdesc_t *e, unsigned variant)
{
    json_object *s = json_object_new_object(), *vals = json_object_new_array();
    put_str(s, "title", e->full_name);
    if (variant & V_ENUM_INTS) {
        put_str(s, "type", "integer");
        put_str(s, "format", "int32");
        for (size_t i = 0; i < e->value_cnt; i++)
            json_object_array_add(vals, json_object_new_int64(e->values[i].number));
        put_str(s, "description", "enum numbers (requests may also give the value names)");
    } else {
        put_str(s, "type", "string");
        for (size_t i = 0; i < e->value_cnt; i++) {
            /* aliases: each name once */
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = strcmp(e->values[j].name, e->values[i].name) == 0;
            if (!dup)
                json_object_array_add(vals, jstr(e->values[i].name));
        }
        put_str(s, "description", "enum value names (requests may also give the numbers)");
    }
    put(s, "enum", vals);
    return s;
}

/* Writes every queued schema; new references queue more (recursion ends at known keys). */
static void drain(pt_openapi_t *o)
{
    for (size_t i = 0; i < o->pend_cnt && !o->nomem; i++) {
        pending_t p = o->pend[i];
        char key[600];
        comp_key(key, sizeof(key), p.msg != NULL ? p.msg->full_name : p.en->full_name, p.variant,
                 p.en != NULL);
        if (json_object_object_get(o->schemas, key) != NULL)
            continue;
        /* add a placeholder first: a recursive reference finds the key taken */
        json_object *s = json_object_new_object();
        put(o->schemas, key, s);
        json_object *full = p.msg != NULL ? message_schema(o, p.msg, p.variant)
                                          : enum_schema(p.en, p.variant);
        struct json_object_iterator it = json_object_iter_begin(full),
                                    end = json_object_iter_end(full);
        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
            put(s, json_object_iter_peek_name(&it), json_object_get(json_object_iter_peek_value(&it)));
        json_object_put(full);
    }
    o->pend_cnt = 0;
}

pt_openapi_t *pt_openapi_new(const char *title, const char *version, const char *description,
                             const char *server_url)
{
    pt_openapi_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->doc = json_object_new_object();
    put_str(o->doc, "openapi", "3.1.0");
    json_object *info = json_object_new_object();
    put_str(info, "title", title != NULL ? title : "Portico");
    put_str(info, "version", version != NULL ? version : "1");
    put_str(info, "description",
            description != NULL
                ? description
                : "The APIs this Portico gateway serves, generated from its live configuration: "
                  "the google.api.http bindings of its grpc routes and the WSDL operations of its "
                  "soap routes.");
    put(o->doc, "info", info);
    put_str(o->doc, "jsonSchemaDialect", "https://spec.openapis.org/oas/3.1/dialect/base");
    if (server_url != NULL) {
        json_object *servers = json_object_new_array(), *srv = json_object_new_object();
        put_str(srv, "url", server_url);
        put_str(srv, "description", "the gateway's data listener");
        json_object_array_add(servers, srv);
        put(o->doc, "servers", servers);
    }
    o->tags = json_object_new_array();
    put(o->doc, "tags", o->tags);
    o->paths = json_object_new_object();
    put(o->doc, "paths", o->paths);
    json_object *comp = json_object_new_object();
    o->schemas = json_object_new_object();
    put(comp, "schemas", o->schemas);
    put(o->doc, "components", comp);
    o->unlisted = json_object_new_array();
    return o;
}

static void add_tag(pt_openapi_t *o, const char *name, const char *desc)
{
    size_t n = json_object_array_length(o->tags);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(o->tags, i);
        if (strcmp(json_object_get_string(json_object_object_get(t, "name")), name) == 0)
            return;
    }
    json_object *t = json_object_new_object();
    put_str(t, "name", name);
    put_str(t, "description", desc);
    json_object_array_add(o->tags, t);
}

static void unlisted(pt_openapi_t *o, const char *method, const char *path, const char *op,
                     const char *why)
{
    json_object *u = json_object_new_object();
    put_str(u, "method", method);
    put_str(u, "path", path);
    put_str(u, "operation", op);
    put_str(u, "reason", why);
    json_object_array_add(o->unlisted, u);
}

/* The path item for `path`, and whether `method` (lowercase) is still free in it. */
static json_object *path_slot(pt_openapi_t *o, const char *path, const char *method)
{
    json_object *item = json_object_object_get(o->paths, path);
    if (item == NULL) {
        item = json_object_new_object();
        put(o->paths, path, item);
    }
    return json_object_object_get(item, method) == NULL ? item : NULL;
}

static const char *oa_method(const char *m)
{
    static const char *const known[] = {"get", "put", "post", "delete", "patch", "head", "options"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(m, known[i]) == 0)
            return known[i];
    return NULL;
}

/* Regex-escapes a literal path segment into `b`. */
static void re_lit(char *b, size_t n, size_t *at, const char *s)
{
    for (; *s != '\0' && *at + 3 < n; s++) {
        if (strchr(".^$*+?()[]{}|\\", *s) != NULL)
            b[(*at)++] = '\\';
        b[(*at)++] = *s;
    }
    b[*at] = '\0';
}

static void cat(char *b, size_t n, size_t *at, const char *s)
{
    size_t l = strlen(s);
    if (*at + l >= n)
        l = n - *at - 1;
    memcpy(b + *at, s, l);
    *at += l;
    b[*at] = '\0';
}

/* One rendered path variable (a template variable or an unnamed wildcard). */
typedef struct pvar {
    char name[128];
    char pattern[512];
    bool multi;   /* may contain '/' */
    bool unbound; /* an unnamed wildcard: not a field */
} pvar_t;

/*
 * Renders template `t` as an OpenAPI path ("/v1/{book.name}:download") into
 * out[n] and its variables into vars (at most PT_PATHTMPL_MAX_VARS + 8).
 */
static size_t render_path(const pt_pathtmpl_t *t, char *out, size_t n, pvar_t *vars, size_t cap)
{
    size_t at = 0, nv = 0, segs = pt_pathtmpl_seg_cnt(t), wild = 0;
    out[0] = '\0';
    for (size_t i = 0; i < segs;) {
        const pt_pathtmpl_var_t *var = NULL;
        for (size_t v = 0; v < pt_pathtmpl_var_cnt(t); v++)
            if (pt_pathtmpl_var(t, v)->first_seg == i)
                var = pt_pathtmpl_var(t, v);
        cat(out, n, &at, "/");
        if (var == NULL) {
            const pt_pathseg_t *s = pt_pathtmpl_seg(t, i);
            if (s->kind == PT_PATHSEG_LITERAL) {
                cat(out, n, &at, s->lit);
            } else if (nv < cap) {
                pvar_t *pv = &vars[nv++];
                memset(pv, 0, sizeof(*pv));
                snprintf(pv->name, sizeof(pv->name), "_wildcard%zu", ++wild);
                pv->unbound = true;
                pv->multi = s->kind == PT_PATHSEG_DSTAR;
                snprintf(pv->pattern, sizeof(pv->pattern), "%s",
                         pv->multi ? "^.*$" : "^[^/]+$");
                cat(out, n, &at, "{");
                cat(out, n, &at, pv->name);
                cat(out, n, &at, "}");
            }
            i++;
            continue;
        }
        if (nv < cap) {
            pvar_t *pv = &vars[nv++];
            memset(pv, 0, sizeof(*pv));
            snprintf(pv->name, sizeof(pv->name), "%s", var->field_path);
            pv->multi = var->is_multi;
            size_t pa = 0;
            cat(pv->pattern, sizeof(pv->pattern), &pa, "^");
            for (size_t k = var->first_seg; k < var->end_seg && k < segs; k++) {
                const pt_pathseg_t *s = pt_pathtmpl_seg(t, k);
                if (k > var->first_seg)
                    cat(pv->pattern, sizeof(pv->pattern), &pa, "/");
                if (s->kind == PT_PATHSEG_LITERAL)
                    re_lit(pv->pattern, sizeof(pv->pattern), &pa, s->lit);
                else
                    cat(pv->pattern, sizeof(pv->pattern), &pa,
                        s->kind == PT_PATHSEG_STAR ? "[^/]+" : ".*");
            }
            cat(pv->pattern, sizeof(pv->pattern), &pa, "$");
            cat(out, n, &at, "{");
            cat(out, n, &at, var->field_path);
            cat(out, n, &at, "}");
        }
        i = var->end_seg > i ? var->end_seg : i + 1;
    }
    if (segs == 0)
        cat(out, n, &at, "/");
    const char *verb = pt_pathtmpl_verb(t);
    if (verb != NULL) {
        cat(out, n, &at, ":");
        cat(out, n, &at, verb);
    }
    return nv;
}

static json_object *path_param(const pvar_t *pv, json_object *schema, const char *field_desc)
{
    json_object *p = json_object_new_object();
    put_str(p, "name", pv->name);
    put_str(p, "in", "path");
    put(p, "required", json_object_new_boolean(1));
    if (pv->multi || strcmp(pv->pattern, "^[^/]+$") != 0) {
        if (json_object_get_type(schema) == json_type_object &&
            json_object_object_get(schema, "$ref") == NULL)
            put_str(schema, "pattern", pv->pattern);
    }
    char d[900];
    if (pv->unbound)
        snprintf(d, sizeof(d), "%s (matched, not passed to the method)",
                 pv->multi ? "any path segments" : "any one path segment");
    else if (pv->multi)
        snprintf(d, sizeof(d),
                 "%s. Spans path segments (template pattern %s): send its '/' as is, not as %%2F.",
                 field_desc, pv->pattern);
    else
        snprintf(d, sizeof(d), "%s", field_desc);
    put_str(p, "description", d);
    if (pv->multi) {
        put(p, "x-portico-multi-segment", json_object_new_boolean(1));
    }
    put(p, "schema", schema);
    return p;
}

/* Resolves a dotted field path (proto or json names) from `m`; the leaf, or NULL. */
static const pt_fielddesc_t *resolve(const pt_msgdesc_t *m, const char *path, char *proto_path,
                                     size_t n)
{
    const pt_fielddesc_t *f = NULL;
    size_t at = 0;
    proto_path[0] = '\0';
    while (m != NULL && *path != '\0') {
        const char *dot = strchr(path, '.');
        size_t l = dot != NULL ? (size_t)(dot - path) : strlen(path);
        f = pt_msgdesc_field_by_name(m, path, l);
        if (f == NULL)
            return NULL;
        if (at > 0)
            cat(proto_path, n, &at, ".");
        cat(proto_path, n, &at, f->name);
        if (dot == NULL)
            return f;
        m = f->type == PT_FT_MESSAGE ? f->message : NULL;
        path = dot + 1;
    }
    return NULL;
}

/* A field a query parameter can set with one value: scalar, enum or a WKT with a string form. */
static bool query_scalar(const pt_fielddesc_t *f)
{
    if (f->type != PT_FT_MESSAGE && f->type != PT_FT_GROUP)
        return true;
    if (f->message == NULL)
        return false;
    switch (f->message->wkt) {
    case PT_WKT_TIMESTAMP: case PT_WKT_DURATION: case PT_WKT_FIELDMASK:
    case PT_WKT_DOUBLEVALUE: case PT_WKT_FLOATVALUE: case PT_WKT_INT64VALUE:
    case PT_WKT_UINT64VALUE: case PT_WKT_INT32VALUE: case PT_WKT_UINT32VALUE:
    case PT_WKT_BOOLVALUE: case PT_WKT_STRINGVALUE: case PT_WKT_BYTESVALUE:
        return true;
    default:
        return false;
    }
}

typedef struct qctx {
    pt_openapi_t *o;
    json_object *params;
    unsigned variant;
    const char (*skip)[256]; /* proto paths the path binds */
    size_t skip_cnt;
    const pt_fielddesc_t *body_field; /* top-level field the body carries */
    const pt_msgdesc_t *stack[QUERY_MAX_DEPTH];
    size_t count;
} qctx_t;

static void query_params(qctx_t *q, const pt_msgdesc_t *m, const char *prefix,
                         const char *proto_prefix, size_t depth)
{
    if (depth >= QUERY_MAX_DEPTH)
        return;
    for (size_t d = 0; d < depth; d++)
        if (q->stack[d] == m)
            return; /* recursive message: its fields are listed once, at the outer level */
    q->stack[depth] = m;
    for (size_t i = 0; i < m->field_cnt && q->count < QUERY_MAX_PARAMS; i++) {
        const pt_fielddesc_t *f = &m->fields[i];
        if (depth == 0 && f == q->body_field)
            continue;
        char name[256], pname[256];
        snprintf(name, sizeof(name), "%s%s", prefix, field_key(f, q->variant));
        snprintf(pname, sizeof(pname), "%s%s", proto_prefix, f->name);
        bool bound = false;
        for (size_t s = 0; s < q->skip_cnt && !bound; s++)
            bound = strcmp(q->skip[s], pname) == 0;
        if (bound)
            continue;
        json_object *schema = NULL, *p = NULL;
        if (f->is_map) {
            const pt_fielddesc_t *v = f->message != NULL && f->message->field_cnt == 2
                                          ? &f->message->fields[1] : NULL;
            if (v == NULL || !query_scalar(v))
                continue;
            schema = field_schema(q->o, f, q->variant);
            p = json_object_new_object();
            put_str(p, "style", "deepObject");
            put(p, "explode", json_object_new_boolean(1));
        } else if (f->label == PT_LABEL_REPEATED) {
            if (!query_scalar(f))
                continue;
            schema = field_schema(q->o, f, q->variant);
            p = json_object_new_object();
            put_str(p, "style", "form");
            put(p, "explode", json_object_new_boolean(1));
        } else if (query_scalar(f)) {
            schema = scalar_schema(q->o, f, q->variant);
            /* a wrapper's query value is its scalar: drop the null */
            json_object *ty = json_object_object_get(schema, "type");
            if (ty != NULL && json_object_get_type(ty) == json_type_array)
                put(schema, "type", json_object_get(json_object_array_get_idx(ty, 0)));
            p = json_object_new_object();
        } else {
            if (f->message != NULL && f->message->wkt == PT_WKT_NONE &&
                strcmp(f->message->full_name, "google.api.HttpBody") != 0) {
                char np[256], npp[256];
                snprintf(np, sizeof(np), "%.250s.", name);
                snprintf(npp, sizeof(npp), "%.250s.", pname);
                query_params(q, f->message, np, npp, depth + 1);
            }
            continue;
        }
        put_str(p, "name", name);
        put_str(p, "in", "query");
        if (f->oneof_index >= 0 && (size_t)f->oneof_index < m->oneof_cnt) {
            char d[300];
            snprintf(d, sizeof(d), "member of oneof %s: give at most one of its fields",
                     m->oneof_names[f->oneof_index]);
            put_str(p, "description", d);
        }
        put(p, "schema", schema);
        json_object_array_add(q->params, p);
        q->count++;
    }
}

static json_object *status_ref(pt_openapi_t *o)
{
    o->need_status = true;
    json_object *r = json_object_new_object();
    put_str(r, "$ref", REF_PREFIX "google.rpc.Status");
    return r;
}

static json_object *media(json_object *schema)
{
    json_object *m = json_object_new_object();
    put(m, "schema", schema);
    return m;
}

static json_object *binary_media(void)
{
    json_object *s = typed("string");
    put_str(s, "contentMediaType", "application/octet-stream");
    return media(s);
}

static void add_error_response(pt_openapi_t *o, json_object *responses)
{
    json_object *e = json_object_new_object(), *c = json_object_new_object();
    put_str(e, "description",
            "An error: the gRPC status as google.rpc.Status JSON (HTTP status mapped from the gRPC "
            "code; 400 with google.rpc.BadRequest field violations for bad input)");
    put(c, "application/json", media(status_ref(o)));
    put(e, "content", c);
    put(responses, "default", e);
}

static const char *stream_kind(const pt_methoddesc_t *m)
{
    return m->client_streaming && m->server_streaming ? "bidi"
           : m->client_streaming                      ? "client"
           : m->server_streaming                      ? "server"
                                                      : NULL;
}

/*
 * The route's conditions besides path and method (core/route.h): each header it
 * matches on becomes a required header parameter (merged into a header binding
 * of the same name), so that the explorer's requests reach the route; its hosts
 * are listed as x-portico-hosts.
 */
static void match_conditions(json_object *op, json_object *params, const pt_route_match_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->header_cnt; i++) {
        const pt_header_match_t *h = &m->headers[i];
        char d[900];
        if (h->value != NULL)
            snprintf(d, sizeof(d), "the route matches only requests whose %s header is \"%s\"",
                     h->name, h->value);
        else
            snprintf(d, sizeof(d), "the route matches only requests that carry a %s header",
                     h->name);
        json_object *p = NULL;
        for (size_t k = 0; k < json_object_array_length(params) && p == NULL; k++) {
            json_object *q = json_object_array_get_idx(params, k);
            const char *in = json_object_get_string(json_object_object_get(q, "in"));
            const char *name = json_object_get_string(json_object_object_get(q, "name"));
            if (in != NULL && name != NULL && strcmp(in, "header") == 0 &&
                strcasecmp(name, h->name) == 0)
                p = q;
        }
        if (p == NULL) {
            p = json_object_new_object();
            put_str(p, "name", h->name);
            put_str(p, "in", "header");
            json_object *sch = typed("string");
            if (h->value != NULL) {
                json_object *e = json_object_new_array();
                json_object_array_add(e, json_object_new_string(h->value));
                put(sch, "enum", e);
            }
            put(p, "schema", sch);
            put_str(p, "description", d);
            json_object_array_add(params, p);
        } else {
            const char *had = json_object_get_string(json_object_object_get(p, "description"));
            char both[1400];
            snprintf(both, sizeof(both), "%s%s%s", had != NULL ? had : "", had != NULL ? "; " : "",
                     d);
            put_str(p, "description", both);
        }
        put(p, "required", json_object_new_boolean(1));
    }
    if (m->host_cnt > 0) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < m->host_cnt; i++)
            json_object_array_add(a, json_object_new_string(m->hosts[i]));
        put(op, "x-portico-hosts", a);
    }
}

/* Does the route take `method` (any case: SOAP mappings are written `get:`)? "*" is any. */
static bool route_takes(const pt_route_match_t *m, const char *method)
{
    if (m == NULL || m->methods == 0 || strcmp(method, "*") == 0)
        return true;
    return (m->methods & pt__method_bit_anycase(method, strlen(method))) != 0;
}

/* Can requests reach binding `b` through the route's match (exact path or prefix, methods)? */
static bool reachable(const pt_openapi_grpc_t *g, const pt_httpbinding_t *b)
{
    if (!route_takes(g->match, b->http_method))
        return false;
    const char *tp = b->path;
    if (g->exact != NULL)
        return strcmp(tp, g->exact) == 0;
    if (g->prefix == NULL)
        return true;
    size_t pl = strlen(g->prefix), lit = strcspn(tp, "{*");
    /* the template's literal start must begin with the prefix, or be a start of it (a
     * variable may then match the rest) */
    return lit >= pl ? strncmp(tp, g->prefix, pl) == 0 : strncmp(tp, g->prefix, lit) == 0;
}

static void add_binding(pt_openapi_t *o, const pt_openapi_grpc_t *g, const pt_httpbinding_t *b,
                        unsigned nth)
{
    const pt_methoddesc_t *md = b->method;
    unsigned variant = variant_of(&g->jopts);
    char path[2048];
    pvar_t vars[PT_PATHTMPL_MAX_VARS + 8];
    size_t nv = render_path(b->tmpl, path, sizeof(path), vars, sizeof(vars) / sizeof(vars[0]));
    const char *m = oa_method(b->http_method);
    if (m == NULL) {
        unlisted(o, b->http_method, b->path, md->full_name,
                 "a custom HTTP method has no OpenAPI 3.1 operation");
        return;
    }
    json_object *item = path_slot(o, path, m);
    if (item == NULL) {
        unlisted(o, b->http_method, b->path, md->full_name,
                 "another binding already took this method and rendered path");
        return;
    }
    add_tag(o, md->service->full_name, "gRPC service (REST bindings by google.api.http)");
    json_object *op = json_object_new_object();
    json_object *tags = json_object_new_array();
    json_object_array_add(tags, jstr(md->service->full_name));
    put(op, "tags", tags);
    put_str(op, "summary", md->name);
    char opid[600];
    if (nth > 0)
        snprintf(opid, sizeof(opid), "%s_%u", md->full_name, nth + 1);
    else
        snprintf(opid, sizeof(opid), "%s", md->full_name);
    put_str(op, "operationId", opid);
    char desc[1200];
    snprintf(desc, sizeof(desc), "gRPC method /%s/%s%s%s%s", md->service->full_name, md->name,
             b->is_default ? " (default binding: POST /pkg.Service/Method, the whole message as "
                             "JSON)" : "",
             b->response_body[0] != '\0' ? "; the answer is its field " : "", b->response_body);
    put_str(op, "description", desc);
    char gm[600];
    snprintf(gm, sizeof(gm), "/%s/%s", md->service->full_name, md->name);
    put_str(op, "x-grpc-method", gm);
    if (g->route != NULL)
        put_str(op, "x-portico-route", g->route);
    const char *sk = stream_kind(md);
    if (sk != NULL)
        put_str(op, "x-portico-streaming", sk);

    /* parameters: path variables, then query fields, then header bindings */
    json_object *params = json_object_new_array();
    char skip[PT_PATHTMPL_MAX_VARS + 8][256];
    size_t skip_cnt = 0;
    for (size_t i = 0; i < nv; i++) {
        json_object *schema = NULL;
        char desc2[400];
        if (!vars[i].unbound) {
            const pt_fielddesc_t *f =
                resolve(md->input, vars[i].name, skip[skip_cnt], sizeof(skip[0]));
            if (f != NULL) {
                skip_cnt++;
                schema = scalar_schema(o, f, variant);
                json_object *ty = json_object_object_get(schema, "type");
                if (ty != NULL && json_object_get_type(ty) == json_type_array)
                    put(schema, "type", json_object_get(json_object_array_get_idx(ty, 0)));
                snprintf(desc2, sizeof(desc2), "field %.120s of %.250s", vars[i].name,
                         md->input->full_name);
            }
        }
        if (schema == NULL) {
            schema = typed("string");
            snprintf(desc2, sizeof(desc2), "%.120s", vars[i].name);
        }
        json_object_array_add(params, path_param(&vars[i], schema, desc2));
    }
    if (b->body_kind != PT_HTTPBODY_ALL) {
        qctx_t q = {.o = o, .params = params, .variant = variant, .skip = skip,
                    .skip_cnt = skip_cnt, .body_field = b->body_field};
        query_params(&q, md->input, "", "", 0);
    }
    for (size_t i = 0; g->header_bindings != NULL && i < g->header_bindings->cnt; i++) {
        char pp[256];
        const pt_fielddesc_t *f =
            resolve(md->input, g->header_bindings->v[i].value, pp, sizeof(pp));
        if (f == NULL || !query_scalar(f))
            continue;
        json_object *p = json_object_new_object();
        put_str(p, "name", g->header_bindings->v[i].key);
        put_str(p, "in", "header");
        char d[400];
        snprintf(d, sizeof(d), "bound to field %s (route header_bindings)",
                 g->header_bindings->v[i].value);
        put_str(p, "description", d);
        put(p, "schema", scalar_schema(o, f, variant));
        json_object_array_add(params, p);
    }
    match_conditions(op, params, g->match);
    if (json_object_array_length(params) > 0)
        put(op, "parameters", params);
    else
        json_object_put(params);

    /* request body */
    if (md->client_streaming) {
        json_object *rb = json_object_new_object(), *c = json_object_new_object();
        put_str(rb, "description",
                "client stream: one JSON value per line (NDJSON), each a message (or its body "
                "field); path and query values are merged into every message");
        put(c, "application/x-ndjson",
            media(b->body_kind == PT_HTTPBODY_FIELD && b->body_field != NULL
                      ? field_schema(o, b->body_field, variant)
                      : ref_to(o, md->input, NULL, variant)));
        put(rb, "content", c);
        put(op, "requestBody", rb);
    } else if (b->body_kind != PT_HTTPBODY_NONE) {
        json_object *rb = json_object_new_object(), *c = json_object_new_object();
        if (b->request_is_httpbody) {
            put_str(rb, "description", "raw bytes (google.api.HttpBody): the Content-Type is kept");
            put(c, "*/*", binary_media());
        } else {
            json_object *s = b->body_kind == PT_HTTPBODY_ALL
                                 ? (md->input->wkt != PT_WKT_NONE
                                        ? wkt_schema(md->input)
                                        : ref_to(o, md->input, NULL, variant))
                                 : field_schema(o, b->body_field, variant);
            put(c, "application/json", media(s));
            put(rb, "required", json_object_new_boolean(1));
            char d[400];
            if (b->body_kind == PT_HTTPBODY_ALL)
                snprintf(d, sizeof(d), "%s as JSON (values from the path win)",
                         md->input->full_name);
            else
                snprintf(d, sizeof(d), "field %s of %s as JSON", b->body, md->input->full_name);
            put_str(rb, "description", d);
        }
        put(rb, "content", c);
        put(op, "requestBody", rb);
    }

    /* responses */
    json_object *responses = json_object_new_object(), *ok = json_object_new_object(),
                *c = json_object_new_object();
    if (b->response_is_httpbody) {
        put_str(ok, "description", md->server_streaming
                                       ? "raw bytes streamed in chunks (google.api.HttpBody)"
                                       : "raw bytes (google.api.HttpBody) with its content type");
        put(c, "*/*", binary_media());
    } else {
        json_object *one;
        if (b->response_field != NULL)
            one = field_schema(o, b->response_field, variant);
        else
            one = md->output->wkt != PT_WKT_NONE ? wkt_schema(md->output)
                                                 : ref_to(o, md->output, NULL, variant);
        if (md->server_streaming) {
            char d[600];
            snprintf(d, sizeof(d),
                     "server stream, each message as it arrives, framed by the Accept header: "
                     "application/json (one array), application/x-ndjson (a line per message), "
                     "text/event-stream (a data: event per message); without one: %s. A failure "
                     "after the first message ends the stream with {\"error\":{\"code\":..,"
                     "\"message\":..}} (SSE: event: error)",
                     g->stream_format != NULL ? g->stream_format : "json");
            put_str(ok, "description", d);
            json_object *arr = typed("array");
            put(arr, "items", json_object_get(one));
            put(c, "application/json", media(arr));
            put(c, "application/x-ndjson", media(json_object_get(one)));
            json_object *sse = typed("string");
            put_str(sse, "description", "data: <message JSON> events");
            put(c, "text/event-stream", media(sse));
            json_object_put(one);
        } else {
            put_str(ok, "description", "OK");
            put(c, "application/json", media(one));
        }
    }
    put(ok, "content", c);
    put(responses, "200", ok);
    add_error_response(o, responses);
    put(op, "responses", responses);
    put(item, m, op);
}

int pt_openapi_add_grpc(pt_openapi_t *o, const pt_openapi_grpc_t *g)
{
    if (g->table == NULL)
        return 0;
    size_t n = pt_httprule_table_binding_cnt(g->table);
    const pt_methoddesc_t *last = NULL;
    unsigned nth = 0;
    for (size_t i = 0; i < n; i++) {
        const pt_httpbinding_t *b = pt_httprule_table_binding(g->table, i);
        if (b == NULL || b->method == NULL || b->tmpl == NULL)
            continue;
        nth = b->method == last ? nth + 1 : 0;
        last = b->method;
        if (!reachable(g, b))
            continue;
        add_binding(o, g, b, nth);
        drain(o);
    }
    return o->nomem ? PT_ERR_NOMEM : 0;
}

/* ---- soap routes ------------------------------------------------------------------ */

static void soap_op(pt_openapi_t *o, const pt_soap_port_t *port, const pt_soap_op_t *op,
                    json_object *sch, const char *method, const char *path,
                    const pt_pathtmpl_t *tmpl, const char *route, const pt_route_match_t *match,
                    unsigned nth)
{
    if (!route_takes(match, method))
        return;
    json_object *opsch = json_object_object_get(json_object_object_get(sch, "operations"), op->name);
    json_object *fields = json_object_object_get(opsch, "fields");
    char rendered[2048];
    pvar_t vars[PT_PATHTMPL_MAX_VARS + 8];
    size_t nv = 0;
    if (tmpl != NULL)
        nv = render_path(tmpl, rendered, sizeof(rendered), vars, sizeof(vars) / sizeof(vars[0]));
    else
        snprintf(rendered, sizeof(rendered), "%s", path);
    const char *m = oa_method(method);
    json_object *item = m != NULL ? path_slot(o, rendered, m) : NULL;
    if (item == NULL) {
        unlisted(o, method, path, op->name, "another route already took this method and path");
        return;
    }
    char tag[600];
    snprintf(tag, sizeof(tag), "%s.%s", port->service, port->name);
    add_tag(o, tag, "SOAP port (JSON API from its WSDL)");
    json_object *jop = json_object_new_object(), *tags = json_object_new_array();
    json_object_array_add(tags, jstr(tag));
    put(jop, "tags", tags);
    put_str(jop, "summary", op->name);
    char opid[700];
    /* POST <prefix><Op> is "Svc.Port.Op"; a REST mapping adds its method (one per method) */
    snprintf(opid, sizeof(opid), "%.400s.%.200s%s%s", tag, op->name, nth > 0 ? "." : "",
             nth > 0 ? m : "");
    put_str(jop, "operationId", opid);
    char d[1200];
    snprintf(d, sizeof(d), "SOAP %s operation %s of port %s (%s/literal)%s%s",
             op->soap_version == PT_SOAP_12 ? "1.2" : "1.1", op->name, port->name,
             op->is_rpc ? "rpc" : "document", op->soap_action[0] != '\0' ? ", soapAction " : "",
             op->soap_action);
    put_str(jop, "description", d);
    put_str(jop, "x-soap-operation", op->name);
    if (route != NULL)
        put_str(jop, "x-portico-route", route);
    json_object *params = json_object_new_array();
    for (size_t i = 0; i < nv; i++) {
        json_object *fs = json_object_object_get(fields, vars[i].name);
        json_object *schema = fs != NULL && json_object_object_get(fs, "type") != NULL
                                  ? json_object_get(fs) : typed("string");
        char fd[300];
        snprintf(fd, sizeof(fd), "input field %.120s", vars[i].name);
        json_object_array_add(params, path_param(&vars[i], schema, fd));
    }
    /* every simple-typed top-level field may come from the query (not repeated in the path) */
    for (size_t i = 0; i < op->field_cnt; i++) {
        const pt_soap_field_t *f = &op->fields[i];
        if (!f->is_bindable)
            continue;
        bool in_path = false;
        for (size_t k = 0; k < nv && !in_path; k++)
            in_path = strcmp(vars[k].name, f->name) == 0;
        if (in_path)
            continue;
        json_object *p = json_object_new_object(), *fs = json_object_object_get(fields, f->name);
        put_str(p, "name", f->name);
        put_str(p, "in", "query");
        put_str(p, "description", "input field (overrides the body's)");
        put(p, "schema", fs != NULL ? json_object_get(fs) : typed("string"));
        if (f->is_repeated) {
            put_str(p, "style", "form");
            put(p, "explode", json_object_new_boolean(1));
        }
        json_object_array_add(params, p);
    }
    match_conditions(jop, params, match);
    if (json_object_array_length(params) > 0)
        put(jop, "parameters", params);
    else
        json_object_put(params);
    if (strcmp(m, "get") != 0 && strcmp(m, "delete") != 0) {
        json_object *rb = json_object_new_object(), *c = json_object_new_object();
        put_str(rb, "description", "the input element's content as JSON");
        put(c, "application/json", media(json_object_object_get(opsch, "input") != NULL
                                           ? json_object_get(json_object_object_get(opsch, "input"))
                                           : json_object_new_object()));
        put(rb, "content", c);
        put(jop, "requestBody", rb);
    }
    json_object *responses = json_object_new_object(), *ok = json_object_new_object(),
                *c = json_object_new_object();
    json_object *out = json_object_object_get(opsch, "output");
    if (op->is_oneway || out == NULL) {
        put_str(ok, "description", "one-way operation: empty answer");
    } else {
        put_str(ok, "description", "the output element's content as JSON");
        put(c, "application/json", media(json_object_get(out)));
        put(ok, "content", c);
        c = NULL;
    }
    if (c != NULL)
        json_object_put(c);
    put(responses, "200", ok);
    json_object *fault = json_object_new_object(), *fc = json_object_new_object();
    put_str(fault, "description",
            "a SOAP fault (400 for Client/Sender, 500 otherwise), or the gateway's own error "
            "(400 bad input with the JSON path of each problem, 502/503/504)");
    json_object *fs = typed("object"), *props = json_object_new_object(),
                *err = typed("object"), *eprops = json_object_new_object();
    put(eprops, "code", typed("string"));
    put(eprops, "subcode", typed("string"));
    put(eprops, "message", typed("string"));
    put(eprops, "detail", json_object_new_object());
    put(err, "properties", eprops);
    put(props, "error", err);
    put(fs, "properties", props);
    put(fc, "application/json", media(fs));
    put(fault, "content", fc);
    put(responses, "default", fault);
    put(jop, "responses", responses);
    put(item, m, jop);
}

int pt_openapi_add_soap(pt_openapi_t *o, const pt_soap_port_t *port, const char *prefix,
                        const pt_conf_node_t *operations, const char *route,
                        const pt_route_match_t *match)
{
    char ref_prefix[600];
    snprintf(ref_prefix, sizeof(ref_prefix), REF_PREFIX "%s.%s.", port->service, port->name);
    for (char *p = ref_prefix + strlen(REF_PREFIX); *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '_';
    pt_xbuf_t b;
    pt_xbuf_init(&b, NULL);
    if (pt_soap_port_json_schema(port, ref_prefix, &b) != 0 || pt_xbuf_terminate(&b) != 0) {
        pt_xbuf_dispose(&b);
        return PT_ERR_NOMEM;
    }
    json_object *sch = json_tokener_parse((const char *)b.data);
    pt_xbuf_dispose(&b);
    if (sch == NULL)
        return PT_ERR_NOMEM;
    json_object *types = json_object_object_get(sch, "types");
    struct json_object_iterator it = json_object_iter_begin(types), end = json_object_iter_end(types);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        char key[700];
        snprintf(key, sizeof(key), "%s%s", ref_prefix + strlen(REF_PREFIX),
                 json_object_iter_peek_name(&it));
        if (json_object_object_get(o->schemas, key) == NULL)
            put(o->schemas, key, json_object_get(json_object_iter_peek_value(&it)));
    }
    for (size_t i = 0; i < port->op_cnt; i++) {
        const pt_soap_op_t *op = &port->ops[i];
        char path[1024];
        snprintf(path, sizeof(path), "%s%s", prefix != NULL ? prefix : "/", op->name);
        soap_op(o, port, op, sch, "POST", path, NULL, route, match, 0);
    }
    unsigned nth = 0;
    for (size_t i = 0; operations != NULL && operations->kind == PT_CONF_MAP && i < operations->cnt;
         i++) {
        const pt_conf_node_t *key = operations->keys[i], *val = operations->items[i];
        const pt_soap_op_t *op = pt_soap_port_op(port, key->str, key->len);
        if (op == NULL || val->kind != PT_CONF_MAP)
            continue;
        for (size_t j = 0; j < val->cnt; j++) {
            const pt_conf_node_t *mv = val->items[j];
            if (mv->kind != PT_CONF_SCALAR)
                continue;
            pt_pathtmpl_t *t = NULL;
            if (pt_pathtmpl_parse(NULL, mv->str, mv->len, &t, NULL) != 0)
                continue;
            char method[16];
            snprintf(method, sizeof(method), "%s", val->keys[j]->str);
            soap_op(o, port, op, sch, method, mv->str, t, route, match, ++nth);
            pt_pathtmpl_free(t);
        }
    }
    json_object_put(sch);
    return o->nomem ? PT_ERR_NOMEM : 0;
}

json_object *pt_openapi_finish(pt_openapi_t *o)
{
    if (o == NULL)
        return NULL;
    drain(o);
    if (o->need_status && json_object_object_get(o->schemas, "google.rpc.Status") == NULL) {
        json_object *s = typed("object"), *props = json_object_new_object();
        put_str(s, "title", "google.rpc.Status");
        put(props, "code", typed_fmt("integer", "int32"));
        put(props, "message", typed("string"));
        json_object *det = typed("array"), *any = wkt_schema(&(pt_msgdesc_t){
                                                   .full_name = "google.protobuf.Any",
                                                   .wkt = PT_WKT_ANY});
        put(det, "items", any);
        put(props, "details", det);
        put(s, "properties", props);
        put_str(s, "description", "gRPC status: code (google.rpc.Code), message and details");
        put(o->schemas, "google.rpc.Status", s);
    }
    if (json_object_array_length(o->unlisted) > 0)
        put(o->doc, "x-portico-unlisted", o->unlisted);
    else
        json_object_put(o->unlisted);
    json_object *doc = o->doc;
    bool nomem = o->nomem;
    free(o->pend);
    free(o);
    if (nomem) {
        json_object_put(doc);
        return NULL;
    }
    return doc;
}

/* ---- from a snapshot ---------------------------------------------------------------- */

json_object *pt_openapi_from_config(const pt_config_t *c, const char *server_url)
{
    char url[300];
    if (server_url == NULL && c->openapi.server != NULL) {
        server_url = c->openapi.server;
    } else if (server_url == NULL && c->listener_cnt > 0) {
        snprintf(url, sizeof(url), "%s://%s", c->listeners[0].has_tls ? "https" : "http",
                 c->listeners[0].addr.text);
        server_url = url;
    }
    pt_openapi_t *o =
        pt_openapi_new(c->openapi.title, c->openapi.version, c->openapi.description, server_url);
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < c->route_cnt; i++) {
        const pt_route_t *r = &c->routes[i];
        if (r->handler == NULL || r->handler_conf == NULL)
            continue;
        const char *prefix = r->match.path_kind == PT_PATH_PREFIX ? r->match.path : NULL;
        if (strcmp(r->handler->name, "grpc") == 0) {
            const pt_grpc_conf_t *gc = r->handler_conf;
            pt_openapi_grpc_t g = {.table = gc->table, .jopts = gc->jopts,
                                   .stream_format = gc->stream_format,
                                   .header_bindings = &gc->header_bindings, .route = r->name,
                                   .prefix = prefix,
                                   .exact = r->match.path_kind == PT_PATH_EXACT ? r->match.path
                                                                                : NULL,
                                   .match = &r->match};
            pt_openapi_add_grpc(o, &g);
        } else if (strcmp(r->handler->name, "soap") == 0) {
            const pt_soap_target_t *t = pt_soap_target_of(c, r->name);
            const pt_conf_node_t *sn = r->node != NULL ? pt_conf_map_get(r->node, "soap") : NULL;
            if (t != NULL && pt_soap_target_port(t) != NULL)
                pt_openapi_add_soap(o, pt_soap_target_port(t), prefix,
                                    sn != NULL ? pt_conf_map_get(sn, "operations") : NULL,
                                    r->name, &r->match);
        }
    }
    return pt_openapi_finish(o);
}

/* ---- YAML ------------------------------------------------------------------------------ */

/* Whether a string may be written plain without a YAML 1.1 resolver reading it as another type. */
static bool plain_ok(const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"};
    if (s[0] == '\0')
        return false;
    char c = s[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '/' || c == '_'))
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasecmp(s, words[i]) == 0)
            return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == '#' || *p == ':' || *p == '\'' || *p == '"' ||
            (unsigned char)*p >= 0x80)
            return false;
    size_t l = strlen(s);
    return s[l - 1] != ' ';
}

static int emit_scalar(yaml_emitter_t *e, const char *s, bool is_string)
{
    yaml_event_t ev;
    yaml_scalar_style_t st = !is_string || plain_ok(s) ? YAML_PLAIN_SCALAR_STYLE
                                                        : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s),
                                      st == YAML_PLAIN_SCALAR_STYLE, 1, st))
        return -1;
    return yaml_emitter_emit(e, &ev) ? 0 : -1;
}

static int emit_node(yaml_emitter_t *e, json_object *j, unsigned depth)
{
    yaml_event_t ev;
    char num[64];
    if (depth > 200)
        return -1;
    switch (json_object_get_type(j)) {
    case json_type_null:
        return emit_scalar(e, "null", false);
    case json_type_boolean:
        return emit_scalar(e, json_object_get_boolean(j) ? "true" : "false", false);
    case json_type_int:
        snprintf(num, sizeof(num), "%lld", (long long)json_object_get_int64(j));
        return emit_scalar(e, num, false);
    case json_type_double: {
        int nl = snprintf(num, sizeof(num), "%.17g", json_object_get_double(j));
        if (strpbrk(num, ".eEn") == NULL && nl > 0 && (size_t)nl + 2 < sizeof(num))
            memcpy(num + nl, ".0", 3);
        else if (strchr(num, '.') == NULL && strpbrk(num, "eE") != NULL) {
            /* 1e+300 -> 1.0e+300: YAML 1.1 floats need the dot */
            char tmp[64];
            char *ep = strpbrk(num, "eE");
            snprintf(tmp, sizeof(tmp), "%.*s.0%s", (int)(ep - num), num, ep);
            snprintf(num, sizeof(num), "%s", tmp);
        }
        return emit_scalar(e, num, false);
    }
    case json_type_string:
        return emit_scalar(e, json_object_get_string(j), true);
    case json_type_array: {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  json_object_array_length(j) == 0
                                                      ? YAML_FLOW_SEQUENCE_STYLE
                                                      : YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        for (size_t i = 0; i < json_object_array_length(j); i++)
            if (emit_node(e, json_object_array_get_idx(j, i), depth + 1) != 0)
                return -1;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
    }
    case json_type_object: {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                 json_object_object_length(j) == 0
                                                     ? YAML_FLOW_MAPPING_STYLE
                                                     : YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        struct json_object_iterator it = json_object_iter_begin(j), end = json_object_iter_end(j);
        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
            if (emit_scalar(e, json_object_iter_peek_name(&it), true) != 0 ||
                emit_node(e, json_object_iter_peek_value(&it), depth + 1) != 0)
                return -1;
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev) ? 0 : -1;
    }
    }
    return -1;
}

typedef struct ybuf {
    char *p;
    size_t len, cap;
    bool nomem;
} ybuf_t;

static int ywrite(void *data, unsigned char *buf, size_t size)
{
    ybuf_t *b = data;
    if (b->len + size + 1 > b->cap) {
        size_t ncap = (b->cap != 0 ? b->cap * 2 : 65536);
        while (ncap < b->len + size + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->nomem = true;
            return 0;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, buf, size);
    b->len += size;
    b->p[b->len] = '\0';
    return 1;
}

char *pt_openapi_yaml(json_object *doc, size_t *len)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    ybuf_t b = {0};
    if (!yaml_emitter_initialize(&e))
        return NULL;
    yaml_emitter_set_output(&e, ywrite, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
              yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
              yaml_emitter_emit(&e, &ev) && emit_node(&e, doc, 0) == 0 &&
              yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev) &&
              yaml_emitter_flush(&e);
    yaml_emitter_delete(&e);
    if (!ok || b.nomem) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---- the admin's cache ------------------------------------------------------------------ */

/*
 * One document per (config generation, server URL): the admin runs on the main
 * thread only, so a static cache needs no lock. A reload bumps the generation
 * and the next request builds the new document.
 */
static struct {
    uint64_t generation;
    char *url;
    char *json, *yaml;
    size_t json_len, yaml_len;
    double build_ms;
} cache;

void pt_openapi_cache_free(void)
{
    free(cache.url);
    free(cache.json);
    free(cache.yaml);
    memset(&cache, 0, sizeof(cache));
}

/* The gateway's base URL: openapi.server, else the first listener; a wildcard
 * listener address (0.0.0.0, [::]) takes the host the admin was reached by. */
static void server_url(const pt_config_t *c, const char *host, char *out, size_t n)
{
    out[0] = '\0';
    if (c->openapi.server != NULL) {
        snprintf(out, n, "%s", c->openapi.server);
        return;
    }
    if (c->listener_cnt == 0)
        return;
    const pt_listener_conf_t *l = &c->listeners[0];
    const char *a = l->addr.text, *colon = strrchr(a, ':');
    const char *scheme = l->has_tls ? "https" : "http";
    bool wild = strncmp(a, "0.0.0.0:", 8) == 0 || strncmp(a, "[::]:", 5) == 0 ||
                (colon == a);
    if (!wild || colon == NULL) {
        snprintf(out, n, "%s://%s", scheme, a);
        return;
    }
    /* host part of the admin's Host header ("h", "h:port", "[v6]:port") */
    char h[256] = "localhost";
    if (host != NULL && host[0] != '\0' && strlen(host) < sizeof(h)) {
        snprintf(h, sizeof(h), "%s", host);
        char *end = h[0] == '[' ? strchr(h, ']') : strrchr(h, ':');
        if (h[0] == '[' && end != NULL)
            end[1] = '\0';
        else if (h[0] != '[' && end != NULL)
            *end = '\0';
        for (char *p = h; *p != '\0'; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '.' || *p == '-' || *p == ':' || *p == '[' || *p == ']'))
                *p = '\0';
        if (h[0] == '\0')
            snprintf(h, sizeof(h), "localhost");
    }
    snprintf(out, n, "%s://%s%s", scheme, h, colon);
}

const char *pt_openapi_cached(const pt_config_t *c, const char *host, bool yaml, size_t *len)
{
    char url[400];
    server_url(c, host, url, sizeof(url));
    if (cache.json == NULL || cache.generation != c->generation || cache.url == NULL ||
        strcmp(cache.url, url) != 0) {
        pt_openapi_cache_free();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        json_object *doc = pt_openapi_from_config(c, url[0] != '\0' ? url : NULL);
        if (doc == NULL)
            return NULL;
        const char *txt = json_object_to_json_string_ext(
            doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        cache.json = txt != NULL ? strdup(txt) : NULL;
        cache.json_len = cache.json != NULL ? strlen(cache.json) : 0;
        cache.yaml = pt_openapi_yaml(doc, &cache.yaml_len);
        json_object_put(doc);
        cache.url = strdup(url);
        cache.generation = c->generation;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cache.build_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (cache.json == NULL || cache.yaml == NULL || cache.url == NULL) {
            pt_openapi_cache_free();
            return NULL;
        }
    }
    *len = yaml ? cache.yaml_len : cache.json_len;
    return yaml ? cache.yaml : cache.json;
}

double pt_openapi_cached_build_ms(void)
{
    return cache.build_ms;
}
