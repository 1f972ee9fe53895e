/*
 * config_reflect.c -- `descriptors: [ grpc-reflection://CLUSTER ]` (the load
 * side, over upstream/reflect.h) and the reload diff of bound methods.
 *
 * A reflection entry is fetched while the config loads, like a descriptor set
 * file is read: synchronously, before any worker sees the snapshot. Its files
 * go into the same pool through the same pt_descpool_add_set() as a file's,
 * so bindings and JSON options work unchanged. Any failure is a config error
 * at the entry: at start Portico does not start, on SIGHUP the running
 * snapshot (with its descriptors) keeps serving.
 */
#include "core/config_reflect.h"

#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/confparse.h"
#include "core/handler.h"
#include "core/route.h"
#include "handlers/grpc.h"
#include "portico/transcoder/descpool.h"
#include "upstream/reflect.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_SERVICES 256

bool pt__conf_is_reflection(const char *entry)
{
    return strncmp(entry, PT_REFLECT_SCHEME, sizeof(PT_REFLECT_SCHEME) - 1) == 0;
}

/* "250ms", "5s": milliseconds, 0 when malformed or out of 1 ms .. 10 min */
static uint64_t parse_timeout(const char *s, size_t len)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9' && v < 1000000; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i == 0)
        return 0;
    if (len - i == 2 && memcmp(s + i, "ms", 2) == 0)
        ;
    else if (len - i == 1 && s[i] == 's')
        v *= 1000;
    else
        return 0;
    return v >= 1 && v <= 600000 ? v : 0;
}

static bool service_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 512 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!(ch == '_' || ch == '.' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
              (ch >= 'A' && ch <= 'Z')))
            return false;
    }
    return true;
}

void pt__conf_descriptors_reflect(pt_conf_cx_t *cx, const pt_conf_node_t *item, const char *uri,
                                  const pt_config_t *c, pt_descpool_t *pool)
{
    const char *name = uri + sizeof(PT_REFLECT_SCHEME) - 1;
    const char *q = strchr(name, '?');
    size_t nlen = q != NULL ? (size_t)(q - name) : strlen(name);
    if (nlen == 0 || nlen > 200) {
        pt_conf_error(cx, item, "%s: expected grpc-reflection://CLUSTER", uri);
        return;
    }
    char cname[256];
    memcpy(cname, name, nlen);
    cname[nlen] = '\0';
    const char *svcs[MAX_SERVICES];
    size_t svc_cnt = 0;
    uint64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    /* the query: services=a.B,c.D & timeout=5s; names are copied into the snapshot */
    for (const char *p = q != NULL ? q + 1 : NULL; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        const char *v = eq != NULL ? eq + 1 : p + plen;
        size_t vlen = plen - klen - (eq != NULL ? 1 : 0);
        if (klen == 8 && memcmp(p, "services", 8) == 0 && vlen > 0) {
            for (const char *s = v; s < v + vlen;) {
                const char *comma = memchr(s, ',', (size_t)(v + vlen - s));
                size_t slen = comma != NULL ? (size_t)(comma - s) : (size_t)(v + vlen - s);
                if (!service_name_ok(s, slen)) {
                    pt_conf_error(cx, item,
                                  "%s: services: \"%.*s\" is not a full service name "
                                  "(pkg.Service)",
                                  uri, (int)slen, s);
                    return;
                }
                if (svc_cnt == MAX_SERVICES) {
                    pt_conf_error(cx, item, "%s: more than %d services", uri, MAX_SERVICES);
                    return;
                }
                svcs[svc_cnt++] = pt_conf_strdup(cx, s, slen);
                s += slen + 1;
            }
        } else if (klen == 7 && memcmp(p, "timeout", 7) == 0) {
            timeout_ms = parse_timeout(v, vlen);
            if (timeout_ms == 0) {
                pt_conf_error(cx, item,
                              "%s: timeout: expected a duration from 1ms to 10m "
                              "(e.g. 5s, 500ms)",
                              uri);
                return;
            }
        } else {
            pt_conf_error(cx, item,
                          "%s: unknown parameter \"%.*s\" (services=pkg.Svc,..., "
                          "timeout=5s)",
                          uri, (int)plen, p);
            return;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    const pt_cluster_t *cl = pt_config_cluster(c, cname);
    if (cl == NULL) {
        pt_conf_error(cx, item, "%s%s: no cluster named %s", PT_REFLECT_SCHEME, cname, cname);
        return;
    }
    if (cl->protocol != PT_PROTO_GRPC) {
        pt_conf_error(cx, item, "%s%s: cluster %s is not a grpc cluster (protocol: grpc)",
                      PT_REFLECT_SCHEME, cname, cname);
        return;
    }
    pt_refl_files_t fs = {0};
    char err[1024], used[300] = "";
    uint64_t t0 = pt_now_ms();
    if (pt_reflect_fetch(cl, svcs, svc_cnt, timeout_ms, &fs, err, sizeof(err), used,
                         sizeof(used)) != 0) {
        pt_conf_error(cx, item, "%s%s: %s", PT_REFLECT_SCHEME, cname, err);
        pt_refl_files_free(&fs);
        return;
    }
    size_t len = 0;
    uint8_t *set = pt_refl_files_to_set(&fs, &len);
    size_t files = fs.cnt;
    pt_refl_files_free(&fs);
    if (set == NULL) {
        pt_conf_error(cx, item, "%s%s: out of memory", PT_REFLECT_SCHEME, cname);
        return;
    }
    char origin[300];
    snprintf(origin, sizeof(origin), "%s%s", PT_REFLECT_SCHEME, cname);
    pt_xerr_t xe;
    pt_xerr_clear(&xe);
    if (pt_descpool_add_set(pool, set, len, origin, &xe) != 0) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
        pt_xerr_format(&xe, msg, sizeof(msg));
        pt_conf_error(cx, item, "%s: %s", origin, msg);
    } else if (cx->errs != NULL) {
        fprintf(stderr, "portico: descriptors: %s: %zu files (%zu bytes) from %s in %llu ms\n",
                origin, files, len, used, (unsigned long long)(pt_now_ms() - t0));
    }
    free(set);
}

/* ---- the reload diff ----------------------------------------------------------------- */

typedef struct names {
    const char **v;
    size_t cnt, cap;
} names_t;

static bool names_has(const names_t *n, const char *s)
{
    for (size_t i = 0; i < n->cnt; i++)
        if (strcmp(n->v[i], s) == 0)
            return true;
    return false;
}

static void names_add(names_t *n, const char *s)
{
    if (names_has(n, s))
        return;
    if (n->cnt == n->cap) {
        size_t nc = n->cap != 0 ? n->cap * 2 : 16;
        const char **nv = realloc(n->v, nc * sizeof(*nv));
        if (nv == NULL)
            return; /* a shorter diff, never a crash */
        n->v = nv;
        n->cap = nc;
    }
    n->v[n->cnt++] = s;
}

/* Full names of the methods the grpc routes of `c` bind. */
static void bound_methods(const pt_config_t *c, names_t *out)
{
    for (size_t i = 0; i < c->route_cnt; i++) {
        const pt_route_t *r = &c->routes[i];
        if (r->handler == NULL || strcmp(r->handler->name, "grpc") != 0 || r->handler_conf == NULL)
            continue;
        const pt_grpc_conf_t *g = r->handler_conf;
        if (g->table == NULL)
            continue;
        size_t n = pt_httprule_table_binding_cnt(g->table);
        for (size_t j = 0; j < n; j++) {
            const pt_httpbinding_t *b = pt_httprule_table_binding(g->table, j);
            if (b != NULL && b->method != NULL)
                names_add(out, b->method->full_name);
        }
    }
}

static const char *type_name(const pt_fielddesc_t *f)
{
    static const char *const names[] = {"?",        "double",   "float",   "int64",  "uint64",
                                        "int32",    "fixed64",  "fixed32", "bool",   "string",
                                        "group",    "message",  "bytes",   "uint32", "enum",
                                        "sfixed32", "sfixed64", "sint32",  "sint64"};
    if (f->type == PT_FT_MESSAGE || f->type == PT_FT_GROUP)
        return f->message != NULL ? f->message->full_name : "message";
    if (f->type == PT_FT_ENUM)
        return f->enumdesc != NULL ? f->enumdesc->full_name : "enum";
    return f->type < sizeof(names) / sizeof(names[0]) ? names[f->type] : "?";
}

static void field_desc(const pt_fielddesc_t *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s %s = %u", f->label == PT_LABEL_REPEATED ? "repeated " : "",
             type_name(f), f->name, (unsigned)f->number);
}

typedef struct diff {
    FILE *log;
    unsigned lines;
    names_t seen; /* message pairs compared (by old full name) */
} diff_t;

static void say(diff_t *d, const char *what, const char *name, const char *detail)
{
    d->lines++;
    if (d->log != NULL)
        fprintf(d->log, "portico: descriptors changed: %s %s%s%s\n", what, name,
                detail[0] ? ": " : "", detail);
}

static void diff_msg(diff_t *d, const pt_msgdesc_t *om, const pt_msgdesc_t *nm, unsigned depth)
{
    if (om == NULL || nm == NULL || depth > 32 || names_has(&d->seen, om->full_name))
        return;
    names_add(&d->seen, om->full_name);
    for (size_t i = 0; i < om->field_cnt; i++) {
        const pt_fielddesc_t *of = &om->fields[i];
        char full[512], was[256], now[256];
        snprintf(full, sizeof(full), "%s.%s", om->full_name, of->name);
        const pt_fielddesc_t *nf = pt_msgdesc_field_by_number(nm, of->number);
        if (nf == NULL) {
            nf = pt_msgdesc_field_by_name(nm, of->name, strlen(of->name));
            field_desc(of, was, sizeof(was));
            if (nf == NULL) {
                say(d, "field", full, "removed");
                continue;
            }
            field_desc(nf, now, sizeof(now));
            char det[600];
            snprintf(det, sizeof(det), "changed (%s -> %s)", was, now);
            say(d, "field", full, det);
            continue;
        }
        bool same_type = of->type == nf->type && strcmp(type_name(of), type_name(nf)) == 0;
        if (!same_type || of->label != nf->label || strcmp(of->name, nf->name) != 0) {
            field_desc(of, was, sizeof(was));
            field_desc(nf, now, sizeof(now));
            char det[600];
            snprintf(det, sizeof(det), "changed (%s -> %s)", was, now);
            say(d, "field", full, det);
            continue;
        }
        if (of->type == PT_FT_MESSAGE || of->type == PT_FT_GROUP)
            diff_msg(d, of->message, nf->message, depth + 1);
    }
}

unsigned pt_config_descriptor_diff(const pt_config_t *old, const pt_config_t *nw, FILE *log)
{
    if (old == NULL || nw == NULL || old->descpool == NULL)
        return 0;
    const pt_descpool_t *np = nw->descpool;
    names_t ob = {0}, nb = {0};
    bound_methods(old, &ob);
    bound_methods(nw, &nb);
    diff_t d = {.log = log};
    for (size_t i = 0; i < ob.cnt; i++) {
        const pt_methoddesc_t *om = pt_descpool_method(old->descpool, ob.v[i], strlen(ob.v[i]));
        const pt_methoddesc_t *nm =
            np != NULL ? pt_descpool_method(np, ob.v[i], strlen(ob.v[i])) : NULL;
        if (om == NULL)
            continue;
        if (nm == NULL) {
            say(&d, "method", om->full_name, "removed");
            continue;
        }
        char det[600];
        if (strcmp(om->input->full_name, nm->input->full_name) != 0) {
            snprintf(det, sizeof(det), "request type changed (%s -> %s)", om->input->full_name,
                     nm->input->full_name);
            say(&d, "method", om->full_name, det);
        } else {
            diff_msg(&d, om->input, nm->input, 0);
        }
        if (strcmp(om->output->full_name, nm->output->full_name) != 0) {
            snprintf(det, sizeof(det), "response type changed (%s -> %s)", om->output->full_name,
                     nm->output->full_name);
            say(&d, "method", om->full_name, det);
        } else {
            diff_msg(&d, om->output, nm->output, 0);
        }
        if (om->client_streaming != nm->client_streaming ||
            om->server_streaming != nm->server_streaming)
            say(&d, "method", om->full_name, "streaming changed");
    }
    for (size_t i = 0; i < nb.cnt; i++)
        if (pt_descpool_method(old->descpool, nb.v[i], strlen(nb.v[i])) == NULL)
            say(&d, "method", nb.v[i], "added");
    free(ob.v);
    free(nb.v);
    free(d.seen.v);
    return d.lines;
}
