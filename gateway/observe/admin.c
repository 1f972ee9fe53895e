/*
 * admin.c -- the admin listener: /healthz, /ready, /metrics, /config, /upstreams
 * (active health state per cluster endpoint).
 *
 * It runs on the main thread's loop with libevent's evhttp: a small control
 * endpoint, separate from the data path (which never answers these paths:
 * SECURITY-CASES H1-16). Meant for loopback; on another address config.c
 * warns unless admin.token_file is set, and then everything but the probes
 * needs the bearer token.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "observe/metrics.h"
#include "core/config.h"
#include "core/overload.h"
#include "observe/observe.h"
#include "observe/openapi.h"  /* issue 13 (openapi) */
#include "net/worker.h"
#include "upstream/health.h"
#include "upstream/policy.h"

void pt__observe_globals(uint64_t *ok, uint64_t *failed);

typedef struct admin {
    struct evhttp *http;
    struct event_base *base;
    char *addr_text;
    SSL_CTX *ssl_ctx; /* admin.tls of the current snapshot (own reference), or NULL */
} admin_t;

/* evhttp's connection factory when admin.tls is on: each connection gets an
 * SSL of the current context (SSL_new takes its own reference to the
 * context, so a reload never pulls it from under a live connection). */
static struct bufferevent *make_tls_bev(struct event_base *base, void *arg)
{
    admin_t *a = arg;
    SSL *ssl = SSL_new(a->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

/* Keeps a reference to the snapshot's context: the snapshot may go before the
 * next reload does. */
static void set_ssl_ctx(admin_t *a, const pt_config_t *config)
{
    SSL_CTX *ctx = config != NULL ? config->admin_ssl_ctx : NULL;
    if (ctx != NULL)
        SSL_CTX_up_ref(ctx);
    SSL_CTX_free(a->ssl_ctx);
    a->ssl_ctx = ctx;
}

static void reply(struct evhttp_request *r, int code, const char *ctype, const char *body,
                  size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", ctype);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Cache-Control", "no-store");
    evhttp_send_reply(r, code,
                      code == 200   ? "OK"
                      : code == 401 ? "Unauthorized"
                      : code == 404 ? "Not Found"
                                    : "Error",
                      b);
    evbuffer_free(b);
}

static void reply_str(struct evhttp_request *r, int code, const char *ctype, const char *body)
{
    reply(r, code, ctype, body, strlen(body));
}

/*
 * Bearer-token check for admin.token_file. Both sides are hashed with SHA-256
 * and the digests compared with CRYPTO_memcmp, so the time taken depends on
 * neither the token's content nor its length.
 */
static bool token_ok(const pt_config_t *c, const char *authz)
{
    if (c == NULL || c->admin_token == NULL)
        return true;
    if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
        return false;
    const char *given = authz + 7;
    while (*given == ' ')
        given++;
    unsigned char want[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE];
    unsigned wl = 0, gl = 0;
    if (EVP_Digest(c->admin_token, c->admin_token_len, want, &wl, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(given, strlen(given), got, &gl, EVP_sha256(), NULL) != 1 || wl != gl)
        return false;
    return CRYPTO_memcmp(want, got, wl) == 0;
}

/* issue 13 (openapi): GET /openapi.json, /openapi.yaml (observe/openapi.c), /docs (its page). */
static void openapi_reply(struct evhttp_request *r, pt_server_t *s, bool docs, bool yaml)
{
    if (docs) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Security-Policy",
                          "default-src 'self' 'unsafe-inline'; connect-src *; img-src 'self' data:");
        reply(r, 200, "text/html; charset=utf-8", (const char *)pt_docs_html, pt_docs_html_len);
        return;
    }
    pt_config_t *c = s->current_config(s);
    size_t len = 0;
    const char *txt = c != NULL ? pt_openapi_cached(c, evhttp_find_header(
                                                         evhttp_request_get_input_headers(r), "Host"),
                                                    yaml, &len)
                                : NULL;
    if (txt == NULL) {
        reply_str(r, 500, "application/json",
                  "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"cannot build the OpenAPI "
                  "document\"}}\n");
    } else {
        char ms[32];
        snprintf(ms, sizeof(ms), "%.3f", pt_openapi_cached_build_ms());
        evhttp_add_header(evhttp_request_get_output_headers(r), "X-Portico-Build-Ms", ms);
        reply(r, 200, yaml ? "application/yaml" : "application/json", txt, len);
    }
    pt_config_unref(c);
}

static void on_request(struct evhttp_request *r, void *arg)
{
    pt_server_t *s = arg;
    const char *uri = evhttp_request_get_uri(r);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(r);
    size_t plen = strcspn(uri, "?");
    /* Probes stay open: a liveness or readiness check tells nothing an
     * attacker could use, and kubelets and load balancers rarely carry tokens.
     * Everything else (/metrics, /config, unknown paths) needs the token. */
    bool is_probe = (plen == 8 && memcmp(uri, "/healthz", 8) == 0) ||
                    (plen == 6 && memcmp(uri, "/ready", 6) == 0);
    /* /docs is a static page with no data in it; its script fetches /openapi.json,
     * which stays behind the token (the page asks for it on a 401). */
    bool is_docs = plen == 5 && memcmp(uri, "/docs", 5) == 0;
    if (!is_probe && !is_docs) {
        pt_config_t *c = s->current_config(s);
        bool ok = token_ok(c, evhttp_find_header(evhttp_request_get_input_headers(r),
                                                 "Authorization"));
        pt_config_unref(c);
        if (!ok) {
            evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate",
                              "Bearer realm=\"portico-admin\"");
            reply_str(r, 401, "application/json",
                      "{\"error\":{\"code\":\"UNAUTHENTICATED\",\"message\":\"admin token "
                      "required\"}}\n");
            return;
        }
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        reply_str(r, 405, "application/json", "{\"error\":{\"code\":\"METHOD\"}}\n");
        return;
    }
    if (plen == 8 && memcmp(uri, "/healthz", 8) == 0) {
        reply_str(r, 200, "application/json", "{\"status\":\"ok\"}\n");
    } else if (plen == 6 && memcmp(uri, "/ready", 6) == 0) {
        if (s->ready && !s->draining)
            reply_str(r, 200, "application/json", "{\"status\":\"ready\"}\n");
        else
            reply_str(r, 503, "application/json",
                      s->draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"starting\"}\n");
    } else if (plen == 8 && memcmp(uri, "/metrics", 8) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f == NULL) {
            reply_str(r, 500, "application/json", "{\"error\":{\"code\":\"INTERNAL\"}}\n");
            return;
        }
        pt_metrics_shard_t **shards = calloc(s->worker_cnt + 1, sizeof(pt_metrics_shard_t *));
        for (unsigned i = 0; i < s->worker_cnt; i++)
            shards[i] = s->workers[i]->metrics;
        pt_metrics_globals_t g = {0};
        pt_config_t *c = s->current_config(s);
        g.generation = c != NULL ? c->generation : 0;
        pt_config_unref(c);
        pt__observe_globals(&g.reloads_ok, &g.reloads_failed);
        g.workers = s->worker_cnt;
        g.ejected = pt_policy_ejected_now();
        pt_metrics_render(f, shards, s->worker_cnt, &g);
        c = s->current_config(s);
        pt_health_metrics(f, c);
        if (c != NULL)
            pt_overload_metrics(f, &c->overload, c->limits.max_connections);
        pt_config_unref(c);
        fclose(f);
        free(shards);
        reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
    } else if (plen == 10 && memcmp(uri, "/upstreams", 10) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f == NULL) {
            reply_str(r, 500, "application/json", "{\"error\":{\"code\":\"INTERNAL\"}}\n");
            return;
        }
        pt_config_t *c = s->current_config(s);
        pt_health_json(f, c);
        pt_config_unref(c);
        fclose(f);
        reply(r, 200, "application/json", text, len);
        free(text);
    } else if (plen == 7 && memcmp(uri, "/config", 7) == 0) {
        pt_config_t *c = s->current_config(s);
        const char *json = c != NULL && c->redacted_json != NULL ? c->redacted_json : "{}";
        reply_str(r, 200, "application/json", json);
        pt_config_unref(c);
    } else if (is_docs || (plen == 13 && (memcmp(uri, "/openapi.json", 13) == 0 ||
                                          memcmp(uri, "/openapi.yaml", 13) == 0))) {
        openapi_reply(r, s, is_docs, plen == 13 && uri[9] == 'y');
    } else {
        reply_str(r, 404, "application/json",
                  "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"unknown admin path\"}}\n");
    }
}

static int bind_http(admin_t *a, pt_server_t *s, const pt_config_t *config)
{
    a->http = evhttp_new(a->base);
    if (a->http == NULL)
        return -1;
    evhttp_set_max_headers_size(a->http, 16384);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_gencb(a->http, on_request, s);
    set_ssl_ctx(a, config);
    if (a->ssl_ctx != NULL)
        evhttp_set_bevcb(a->http, make_tls_bev, a);
    char host[64] = "127.0.0.1";
    unsigned port = 0;
    const char *t = config->admin_addr.text;
    /* "host:port" or "[v6]:port" as validated by config.c */
    const char *colon = strrchr(t, ':');
    if (colon == NULL)
        return -1;
    size_t hl = (size_t)(colon - t);
    if (hl > 0 && t[0] == '[' && t[hl - 1] == ']') {
        t++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, t, hl);
    host[hl] = '\0';
    port = (unsigned)strtoul(colon + 1, NULL, 10);
    if (evhttp_bind_socket(a->http, host, (ev_uint16_t)port) != 0) {
        fprintf(stderr, "portico: admin: cannot listen on %s\n", config->admin_addr.text);
        evhttp_free(a->http);
        a->http = NULL;
        return -1;
    }
    free(a->addr_text);
    a->addr_text = strdup(config->admin_addr.text);
    return 0;
}

int pt_admin_start(pt_server_t *s, struct event_base *base, const pt_config_t *config)
{
    admin_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    a->base = base;
    s->admin = a;
    if (!config->has_admin)
        return 0;
    return bind_http(a, s, config) == 0 ? 0 : PT_ERR_UNAVAILABLE;
}

int pt_admin_reconfigure(pt_server_t *s, const pt_config_t *config)
{
    admin_t *a = s->admin;
    if (a == NULL)
        return 0;
    const char *want = config->has_admin ? config->admin_addr.text : NULL;
    if (want == NULL && a->http == NULL)
        return 0;
    /* Same address, TLS on both sides or off on both: keep the socket, take
     * the new context (new certificates apply to new connections). */
    if (want != NULL && a->addr_text != NULL && a->http != NULL &&
        strcmp(want, a->addr_text) == 0 &&
        (a->ssl_ctx != NULL) == (config->admin_ssl_ctx != NULL)) {
        set_ssl_ctx(a, config);
        return 0;
    }
    if (a->http != NULL)
        evhttp_free(a->http);
    a->http = NULL;
    if (want == NULL) {
        set_ssl_ctx(a, NULL);
        return 0;
    }
    return bind_http(a, s, config) == 0 ? 0 : PT_ERR_UNAVAILABLE;
}

void pt_admin_stop(pt_server_t *s)
{
    admin_t *a = s->admin;
    if (a == NULL)
        return;
    if (a->http != NULL)
        evhttp_free(a->http);
    pt_openapi_cache_free(); /* issue 13 (openapi) */
    SSL_CTX_free(a->ssl_ctx);
    free(a->addr_text);
    free(a);
    s->admin = NULL;
}
