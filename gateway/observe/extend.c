/*
 * extend.c -- admin endpoints and metrics registered by filters
 * (portico/admin.h). The registrations are lists in the snapshot's memory
 * (config->ext), made at load time and read-only afterwards.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "core/confparse.h"
#include "core/config.h"
#include "observe/extend.h"
#include "portico/admin.h"

typedef struct ext_endpoint {
    struct ext_endpoint *next;
    const char *path;
    pt_admin_fn fn;
    void *data;
} ext_endpoint_t;

typedef struct ext_metrics {
    struct ext_metrics *next;
    const char *family;
    pt_metrics_fn fn;
    void *data;
} ext_metrics_t;

struct pt_config_ext {
    ext_endpoint_t *endpoints, **ep_tail;
    ext_metrics_t *metrics, **m_tail;
};

static struct pt_config_ext *ext_of(pt_conf_cx_t *cx)
{
    pt_config_t *c = cx->user;
    if (c == NULL)
        return NULL; /* a load without a snapshot (unit tests of parsers) */
    if (c->ext == NULL) {
        c->ext = pt_conf_alloc(cx, sizeof(*c->ext));
        c->ext->ep_tail = &c->ext->endpoints;
        c->ext->m_tail = &c->ext->metrics;
    }
    return c->ext;
}

static const char *const reserved[] = {"/healthz", "/ready", "/metrics", "/upstreams", "/config",
                                       "/openapi.json", "/openapi.yaml", "/docs", NULL};

int pt_conf_admin_endpoint(pt_conf_cx_t *cx, const pt_conf_node_t *at, const char *path,
                           pt_admin_fn fn, void *data)
{
    if (path == NULL || path[0] != '/' || strpbrk(path, "?# ") != NULL)
        return pt_conf_error(cx, at, "admin endpoint '%s' is not a path", path != NULL ? path : "");
    for (size_t i = 0; reserved[i] != NULL; i++)
        if (strcmp(path, reserved[i]) == 0)
            return pt_conf_error(cx, at, "admin path %s is the admin listener's own", path);
    struct pt_config_ext *x = ext_of(cx);
    if (x == NULL)
        return 0;
    ext_endpoint_t *e = pt_conf_alloc(cx, sizeof(*e));
    e->path = pt_conf_strdup(cx, path, strlen(path));
    e->fn = fn;
    e->data = data;
    *x->ep_tail = e;
    x->ep_tail = &e->next;
    return 0;
}

void pt_conf_metrics(pt_conf_cx_t *cx, const char *family, pt_metrics_fn fn, void *data)
{
    struct pt_config_ext *x = ext_of(cx);
    if (x == NULL)
        return;
    ext_metrics_t *m = pt_conf_alloc(cx, sizeof(*m));
    m->family = pt_conf_strdup(cx, family, strlen(family));
    m->fn = fn;
    m->data = data;
    *x->m_tail = m;
    x->m_tail = &m->next;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

bool pt__ext_admin_request(const pt_config_t *c, struct evhttp_request *r, const char *uri,
                           size_t plen)
{
    if (c == NULL || c->ext == NULL)
        return false;
    size_t hits = 0;
    for (const ext_endpoint_t *e = c->ext->endpoints; e != NULL; e = e->next)
        hits += strlen(e->path) == plen && memcmp(e->path, uri, plen) == 0;
    if (hits == 0)
        return false;
    const char *q = uri[plen] == '?' ? uri + plen + 1 : "";
    pt_admin_req_t ar = {pt_str_c(method_name(evhttp_request_get_command(r))), {uri, plen},
                         pt_str_c(q)};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return false;
    int status = 0;
    size_t n = 0;
    if (hits > 1)
        fputc('[', f);
    for (const ext_endpoint_t *e = c->ext->endpoints; e != NULL; e = e->next) {
        if (strlen(e->path) != plen || memcmp(e->path, uri, plen) != 0)
            continue;
        if (n++ != 0)
            fputc(',', f);
        int st = e->fn(e->data, &ar, f);
        status = st > status ? st : status;
    }
    if (hits > 1)
        fputc(']', f);
    fputc('\n', f);
    fclose(f);
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        evbuffer_add(b, text, len);
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
        evhttp_send_reply(r, status, status < 400 ? "OK" : "Error", b);
        evbuffer_free(b);
    }
    free(text);
    return true;
}

void pt__ext_metrics(const pt_config_t *c, FILE *f)
{
    if (c == NULL || c->ext == NULL)
        return;
    for (const ext_metrics_t *m = c->ext->metrics; m != NULL; m = m->next) {
        size_t n = 0;
        for (const ext_metrics_t *p = c->ext->metrics; p != NULL; p = p->next)
            n += strcmp(p->family, m->family) == 0;
        /* once per family, at its first registration */
        const ext_metrics_t *head = c->ext->metrics;
        while (strcmp(head->family, m->family) != 0)
            head = head->next;
        if (head != m)
            continue;
        void **data = calloc(n, sizeof(*data));
        if (data == NULL)
            return;
        size_t k = 0;
        for (const ext_metrics_t *p = m; p != NULL; p = p->next)
            if (strcmp(p->family, m->family) == 0)
                data[k++] = p->data;
        m->fn((void *const *)data, n, f);
        free(data);
    }
}
