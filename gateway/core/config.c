/*
 * config.c -- build, validate, freeze and refcount config snapshots.
 *
 * The loader reads the node tree (confparse.c) section by section in a fixed
 * order (plugins, limits, timeouts, listeners, admin, access log, clusters,
 * descriptors, redis targets, global filters, routes, then the cross
 * checks), reporting every problem it finds and carrying on, so one
 * `portico --validate` run lists them all.
 * Any error and the whole snapshot is dropped: nothing half-configured is
 * ever returned.
 *
 * Everything a snapshot owns lives in one arena (the conf context's); the
 * resources modules create at load time (SSL_CTX, compiled regexes, filter
 * and handler configs) are freed by arena cleanups registered with
 * pt_conf_on_release(), which run when the last reference is dropped.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/confparse.h"
#include "core/config_reflect.h"
#include "core/confvalue.h"
#include "core/filter_registry.h"
#include "core/handler.h"
#include "core/route_retry.h"
#include "core/router.h"
#include "plugins/cors.h"
#include "net/tls.h"
#include "upstream/health.h"
#include "upstream/redis.h"
#include "observe/trace.h"
#include "observe/openapi.h"
#include "portico/status.h"
#include "portico/transcoder/descpool.h"

#define MAX_PLUGINS 64
#define MAX_WORKERS 256 /* same bound as `portico -w` */

/* Incremented by every successful load; the only process-wide counter here. */
static atomic_uint_fast64_t load_generation;

typedef struct loader {
    pt_conf_cx_t *cx;
    pt_config_t *c;
    const pt_filter_def_t *plugins[MAX_PLUGINS];
    size_t plugin_cnt;
    pt_filter_t **filters; /* malloc'd while loading, copied to the arena at the end */
    size_t filter_cnt, filter_cap;
    const pt_route_t **route_names; /* route names seen (open addressing; 10k routes load fast) */
    size_t route_names_cap;
} loader_t;

/* ---- small helpers ------------------------------------------------------ */

/*
 * A table-driven section (limits, timeouts): every key is read as a raw node
 * through pt_conf_parse_fields (which reports unknown and duplicate keys),
 * then converted here with its own kind and range.
 */
typedef enum { K_U32, K_SIZE32, K_SIZE64, K_BOOL, K_DURATION } kind_t;
typedef struct spec {
    const char *key;
    kind_t kind;
    size_t offset;
    uint64_t min, max;
} spec_t;

static void fmt_value(char *buf, size_t len, kind_t kind, uint64_t v)
{
    if (kind == K_DURATION)
        snprintf(buf, len, v % 1000 == 0 ? "%llus" : "%llums",
                 (unsigned long long)(v % 1000 == 0 ? v / 1000 : v));
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void parse_table(pt_conf_cx_t *cx, const pt_conf_node_t *map, const spec_t *spec, size_t n,
                        void *base)
{
    const pt_conf_node_t *nodes[32] = {0};
    pt_conf_field_t fields[33];
    for (size_t i = 0; i < n; i++)
        fields[i] =
            (pt_conf_field_t){spec[i].key, PT_CONF_T_NODE, i * sizeof(nodes[0]), 0, 0, false, NULL};
    fields[n] = (pt_conf_field_t)PT_CONF_FIELDS_END;
    pt_conf_parse_fields(cx, map, fields, nodes);
    for (size_t i = 0; i < n; i++) {
        const pt_conf_node_t *v = nodes[i];
        if (v == NULL)
            continue;
        char *dst = (char *)base + spec[i].offset;
        uint64_t val = 0;
        switch (spec[i].kind) {
        case K_BOOL:
            pt_conf_get_bool(cx, v, (bool *)dst);
            continue;
        case K_U32: {
            long long ll = 0;
            if (pt_conf_get_int(cx, v, (long long)spec[i].min, (long long)spec[i].max, &ll) == 0)
                *(uint32_t *)dst = (uint32_t)ll;
            continue;
        }
        case K_SIZE32:
        case K_SIZE64:
            if (pt_conf_get_size(cx, v, &val) != 0)
                continue;
            break;
        case K_DURATION:
            if (pt_conf_get_duration_ms(cx, v, &val) != 0)
                continue;
            break;
        }
        if (val < spec[i].min || val > spec[i].max) {
            char a[32], b[32];
            fmt_value(a, sizeof(a), spec[i].kind, spec[i].min);
            fmt_value(b, sizeof(b), spec[i].kind, spec[i].max);
            pt_conf_error(cx, v, "%s '%s' out of range [%s, %s]", spec[i].key, v->str, a, b);
            continue;
        }
        if (spec[i].kind == K_SIZE32)
            *(uint32_t *)dst = (uint32_t)val;
        else
            *(uint64_t *)dst = val;
    }
}

static void check_readable(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *what,
                           const char *path)
{
    if (access(path, R_OK) != 0)
        pt_conf_error(cx, n, "cannot read %s '%s': %s", what, path, strerror(errno));
}

/* ---- addresses ------------------------------------------------------------ */

static uint16_t sa_port(const pt_sockaddr_t *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static bool sa_is_any(const pt_sockaddr_t *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static bool sa_same_ip(const pt_sockaddr_t *a, const pt_sockaddr_t *b)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
}

/* Two addresses that cannot both be bound: same family and port, and same IP or a wildcard. */
static bool sa_conflict(const pt_sockaddr_t *a, const pt_sockaddr_t *b)
{
    return a->ss.ss_family == b->ss.ss_family && sa_port(a) == sa_port(b) &&
           (sa_same_ip(a, b) || sa_is_any(a) || sa_is_any(b));
}

/* ---- limits and timeouts ---------------------------------------------------- */

#define LIM(k, kind, field, lo, hi)                                                                \
    {                                                                                              \
        k, kind, offsetof(pt_limits_t, field), lo, hi                                              \
    }
static const spec_t limits_spec[] = {
    LIM("max_request_line", K_SIZE32, max_request_line, 256, 1u << 20),
    LIM("max_header_bytes", K_SIZE32, max_header_bytes, 1024, 16u << 20),
    LIM("max_header_count", K_U32, max_header_count, 8, 10000),
    LIM("max_body", K_SIZE64, max_body, 0, 1ull << 40),
    LIM("max_pipeline", K_U32, max_pipeline, 1, 1024),
    LIM("max_requests_per_conn", K_U32, max_requests_per_conn, 1, 100000000),
    LIM("max_connections", K_U32, max_connections, 1, 10000000),
    LIM("h2_max_streams", K_U32, h2_max_streams, 1, 10000),
    LIM("h2_stream_window", K_SIZE32, h2_stream_window, 65535, 2147483647),
    LIM("h2_conn_window", K_SIZE32, h2_conn_window, 65535, 2147483647),
    LIM("h2_reset_burst", K_U32, h2_reset_burst, 1, 1000000),
    LIM("h2_reset_rate", K_U32, h2_reset_rate, 1, 1000000),
    LIM("h2_max_continuations", K_U32, h2_max_continuations, 1, 1000),
    LIM("h2_glitch_burst", K_U32, h2_glitch_burst, 1, 1000000),
    LIM("h2_glitch_rate", K_U32, h2_glitch_rate, 1, 1000000),
    LIM("max_chunk_ext", K_SIZE32, max_chunk_ext, 0, 1u << 20),
    LIM("allow_underscores", K_BOOL, allow_underscores, 0, 1),
    LIM("merge_slashes", K_BOOL, merge_slashes, 0, 1),
    LIM("max_response_buffer", K_SIZE64, max_response_buffer, 4096, 1ull << 30),
};
#undef LIM

#define TMO(k, field, lo)                                                                          \
    {                                                                                              \
        k, K_DURATION, offsetof(pt_timeouts_t, field), lo, 86400000                                \
    }
static const spec_t timeouts_spec[] = {
    TMO("header", header_ms, 1),   TMO("body", body_ms, 1), TMO("keepalive", keepalive_ms, 1),
    TMO("h2_idle", h2_idle_ms, 1), TMO("send", send_ms, 1), TMO("drain", drain_ms, 0),
    TMO("tunnel_idle", tunnel_idle_ms, 1),
};
#undef TMO

static void set_defaults(pt_config_t *c)
{
    c->limits = (pt_limits_t){
        .max_request_line = 8192,
        .max_header_bytes = 65536,
        .max_header_count = 100,
        .max_body = 1u << 20,
        .max_pipeline = 16,
        .max_requests_per_conn = 1000,
        .max_connections = 10000,
        .h2_max_streams = 100,
        .h2_stream_window = 65536,
        .h2_conn_window = 1u << 20,
        .h2_reset_burst = 1000,
        .h2_reset_rate = 33,
        .h2_max_continuations = 8,
        .h2_glitch_burst = 100,
        .h2_glitch_rate = 10,
        .max_chunk_ext = 4096,
        .allow_underscores = false,
        .merge_slashes = true,
        .max_response_buffer = 256u << 10,
    };
    c->timeouts = (pt_timeouts_t){
        .header_ms = 10000,
        .body_ms = 30000,
        .keepalive_ms = 60000,
        .h2_idle_ms = 60000,
        .send_ms = 30000,
        .drain_ms = 30000,
        .tunnel_idle_ms = 300000,
    };
}

/* ---- listeners, admin, access log ------------------------------------------ */

typedef struct listener_raw {
    const pt_conf_node_t *address, *tls;
    bool h2c;
} listener_raw_t;

static const pt_conf_field_t listener_fields[] = {
    {"address", PT_CONF_T_NODE, offsetof(listener_raw_t, address), 0, 0, true, NULL},
    {"tls", PT_CONF_T_NODE, offsetof(listener_raw_t, tls), 0, 0, false, NULL},
    {"h2c", PT_CONF_T_BOOL, offsetof(listener_raw_t, h2c), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

typedef struct tls_raw {
    const char *cert, *key;
    const char *client_ca; /* admin.tls only */
} tls_raw_t;

static const pt_conf_field_t tls_fields[] = {
    {"cert", PT_CONF_T_PATH, offsetof(tls_raw_t, cert), 0, 0, true, NULL},
    {"key", PT_CONF_T_PATH, offsetof(tls_raw_t, key), 0, 0, true, NULL},
    PT_CONF_FIELDS_END,
};

/*
 * Checks the files of a parsed `tls` map and builds its context, released
 * with the snapshot. Returns NULL after reporting every problem at its key.
 */
static void *build_tls_ctx(pt_conf_cx_t *cx, const pt_conf_node_t *tls, const tls_raw_t *raw,
                           int offer_h2)
{
    unsigned before = pt_conf_error_count(cx);
    check_readable(cx, pt_conf_map_get(tls, "cert"), "certificate file", raw->cert);
    check_readable(cx, pt_conf_map_get(tls, "key"), "key file", raw->key);
    if (raw->client_ca != NULL)
        check_readable(cx, pt_conf_map_get(tls, "client_ca"), "client CA file", raw->client_ca);
    if (pt_conf_error_count(cx) != before)
        return NULL;
    char err[512];
    void *ctx = pt_tls_ctx_new(raw->cert, raw->key, offer_h2, err, sizeof(err));
    if (ctx == NULL) {
        pt_conf_error(cx, tls, "%s", err);
        return NULL;
    }
    pt_conf_on_release(cx, pt_tls_ctx_free, ctx);
    if (raw->client_ca != NULL &&
        pt_tls_ctx_verify_clients(ctx, raw->client_ca, err, sizeof(err)) != 0) {
        pt_conf_error(cx, pt_conf_map_get(tls, "client_ca"), "%s", err);
        return NULL;
    }
    return ctx;
}

static void load_tls(loader_t *L, pt_listener_conf_t *lc, const pt_conf_node_t *tls)
{
    tls_raw_t raw = {0};
    if (pt_conf_parse_fields(L->cx, tls, tls_fields, &raw) != 0)
        return;
    void *ctx = build_tls_ctx(L->cx, tls, &raw, 1);
    if (ctx == NULL)
        return;
    lc->has_tls = true;
    lc->cert_path = raw.cert;
    lc->key_path = raw.key;
    lc->ssl_ctx = ctx;
}

static void load_listeners(loader_t *L, const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    pt_config_t *c = L->c;
    if (n->kind != PT_CONF_SEQ || n->cnt == 0) {
        pt_conf_error(cx, n, "listeners: expected a non-empty list of listeners");
        return;
    }
    c->listeners = pt_conf_alloc(cx, n->cnt * sizeof(*c->listeners));
    for (size_t i = 0; i < n->cnt; i++) {
        const pt_conf_node_t *item = n->items[i];
        listener_raw_t raw = {.h2c = true};
        if (pt_conf_parse_fields(cx, item, listener_fields, &raw) != 0 && raw.address == NULL)
            continue;
        pt_listener_conf_t *lc = &c->listeners[c->listener_cnt];
        lc->node = item;
        lc->h2c = raw.h2c;
        if (raw.address == NULL || pt__config_sockaddr(cx, raw.address, &lc->addr) != 0)
            continue;
        bool dup = false;
        for (size_t j = 0; j < c->listener_cnt && !dup; j++)
            if (sa_conflict(&c->listeners[j].addr, &lc->addr)) {
                pt_conf_error(cx, raw.address, "listener address %s conflicts with %s (line %u)",
                              lc->addr.text, c->listeners[j].addr.text, c->listeners[j].node->line);
                dup = true;
            }
        if (dup)
            continue;
        if (raw.tls != NULL)
            load_tls(L, lc, raw.tls);
        c->listener_cnt++;
    }
}

typedef struct admin_raw {
    const pt_conf_node_t *address, *tls;
    bool show_secrets;
    const char *token_file;
} admin_raw_t;

static const pt_conf_field_t admin_fields[] = {
    {"address", PT_CONF_T_NODE, offsetof(admin_raw_t, address), 0, 0, true, NULL},
    {"show_secrets", PT_CONF_T_BOOL, offsetof(admin_raw_t, show_secrets), 0, 0, false, NULL},
    {"token_file", PT_CONF_T_PATH, offsetof(admin_raw_t, token_file), 0, 0, false, NULL},
    {"tls", PT_CONF_T_NODE, offsetof(admin_raw_t, tls), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_conf_field_t admin_tls_fields[] = {
    {"cert", PT_CONF_T_PATH, offsetof(tls_raw_t, cert), 0, 0, true, NULL},
    {"key", PT_CONF_T_PATH, offsetof(tls_raw_t, key), 0, 0, true, NULL},
    {"client_ca", PT_CONF_T_PATH, offsetof(tls_raw_t, client_ca), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* admin.tls: HTTPS on the admin listener (HTTP/1.1 only: evhttp), with client
 * certificates required when client_ca is given. */
static void load_admin_tls(loader_t *L, const pt_conf_node_t *tls)
{
    tls_raw_t raw = {0};
    if (pt_conf_parse_fields(L->cx, tls, admin_tls_fields, &raw) != 0)
        return;
    L->c->admin_ssl_ctx = build_tls_ctx(L->cx, tls, &raw, 0);
    L->c->admin_client_certs = L->c->admin_ssl_ctx != NULL && raw.client_ca != NULL;
}

#define ADMIN_TOKEN_MIN 16   /* bytes: short tokens are guessable */
#define ADMIN_TOKEN_MAX 4096

static uint8_t *slurp(const char *path, size_t *len);

/*
 * The admin bearer token: the file's content without trailing whitespace (an
 * editor's newline), visible ASCII only (what an Authorization header can
 * carry), at least ADMIN_TOKEN_MIN bytes. Read at every load, so a SIGHUP
 * after replacing the file rotates the token.
 */
static void load_admin_token(loader_t *L, const pt_conf_node_t *n, const char *path)
{
    size_t len = 0;
    uint8_t *data = slurp(path, &len);
    if (data == NULL) {
        pt_conf_error(L->cx, n, "cannot read admin token file '%s': %s", path, strerror(errno));
        return;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' ||
                       data[len - 1] == '\t'))
        len--;
    bool visible = true;
    for (size_t i = 0; i < len; i++)
        visible = visible && data[i] > 0x20 && data[i] < 0x7f;
    if (!visible)
        pt_conf_error(L->cx, n, "admin token in '%s' must be printable ASCII with no spaces",
                      path);
    else if (len < ADMIN_TOKEN_MIN || len > ADMIN_TOKEN_MAX)
        pt_conf_error(L->cx, n,
                      "admin token in '%s' is %zu bytes; use %u to %u (e.g. `openssl rand -hex "
                      "32`)",
                      path, len, ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX);
    else {
        L->c->admin_token = pt_conf_strdup(L->cx, (const char *)data, len);
        L->c->admin_token_len = len;
    }
    memset(data, 0, len);
    free(data);
}

static bool is_loopback(const pt_sockaddr_t *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

static void load_admin(loader_t *L, const pt_conf_node_t *n)
{
    admin_raw_t raw = {0};
    pt_config_t *c = L->c;
    if (pt_conf_parse_fields(L->cx, n, admin_fields, &raw) != 0 || raw.address == NULL)
        return;
    c->admin_show_secrets = raw.show_secrets;
    if (raw.token_file != NULL)
        load_admin_token(L, pt_conf_map_get(n, "token_file"), raw.token_file);
    if (raw.tls != NULL)
        load_admin_tls(L, raw.tls);
    if (pt__config_sockaddr(L->cx, raw.address, &c->admin_addr) != 0)
        return;
    for (size_t j = 0; j < c->listener_cnt; j++)
        if (sa_conflict(&c->listeners[j].addr, &c->admin_addr)) {
            pt_conf_error(
                L->cx, raw.address, "admin address %s conflicts with listener %s (line %u)",
                c->admin_addr.text, c->listeners[j].addr.text, c->listeners[j].node->line);
            return;
        }
    /* Legal (a private network may be the point), but /metrics and /config
     * would be open to anyone who can reach the address. */
    if (!is_loopback(&c->admin_addr) && raw.token_file == NULL && !c->admin_client_certs)
        pt__conf_warn(L->cx, raw.address,
                      "admin listener %s is not a loopback address and has no token_file or "
                      "tls.client_ca: anyone who can reach it can read /metrics and /config",
                      c->admin_addr.text);
    c->has_admin = true;
}

typedef struct alog_raw {
    const char *path;
} alog_raw_t;

static const pt_conf_field_t alog_fields[] = {
    {"path", PT_CONF_T_STR, offsetof(alog_raw_t, path), 0, 0, true, NULL},
    PT_CONF_FIELDS_END,
};

static void load_access_log(loader_t *L, const pt_conf_node_t *n)
{
    alog_raw_t raw = {0};
    if (pt_conf_parse_fields(L->cx, n, alog_fields, &raw) != 0)
        return;
    if (raw.path[0] == '\0') {
        pt_conf_error(L->cx, pt_conf_map_get(n, "path"), "access_log.path must not be empty");
        return;
    }
    if (strcmp(raw.path, "stdout") == 0 || strcmp(raw.path, "stderr") == 0)
        L->c->access_log = raw.path;
    else
        L->c->access_log = pt_conf_resolve_path(L->cx, n, raw.path);
}

/* ---- clusters ------------------------------------------------------------------ */

typedef struct cluster_raw {
    const char *name, *protocol, *ca_file, *authority;
    const pt_conf_node_t *endpoints, *http2, *health_check;
    uint64_t connect_timeout_ms, timeout_ms;
    uint32_t retries, max_idle, max_conns, max_pending;
    bool tls_verify;
    const char *lb, *hash_key;
    const pt_conf_node_t *outlier, *breaker;
} cluster_raw_t;

static const pt_conf_field_t cluster_fields[] = {
    {"name", PT_CONF_T_STR, offsetof(cluster_raw_t, name), 0, 0, true, NULL},
    {"protocol", PT_CONF_T_STR, offsetof(cluster_raw_t, protocol), 0, 0, false, NULL},
    {"endpoints", PT_CONF_T_NODE, offsetof(cluster_raw_t, endpoints), 0, 0, true, NULL},
    {"connect_timeout", PT_CONF_T_DURATION, offsetof(cluster_raw_t, connect_timeout_ms), 1, 3600000,
     false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(cluster_raw_t, timeout_ms), 1, 86400000, false, NULL},
    {"retries", PT_CONF_T_UINT32, offsetof(cluster_raw_t, retries), 0, 10, false, NULL},
    {"http2", PT_CONF_T_NODE, offsetof(cluster_raw_t, http2), 0, 0, false, NULL},
    {"tls_verify", PT_CONF_T_BOOL, offsetof(cluster_raw_t, tls_verify), 0, 0, false, NULL},
    {"ca_file", PT_CONF_T_PATH, offsetof(cluster_raw_t, ca_file), 0, 0, false, NULL},
    {"authority", PT_CONF_T_STR, offsetof(cluster_raw_t, authority), 0, 0, false, NULL},
    {"max_idle_per_endpoint", PT_CONF_T_UINT32, offsetof(cluster_raw_t, max_idle), 0, 100000, false,
     NULL},
    {"max_connections_per_endpoint", PT_CONF_T_UINT32, offsetof(cluster_raw_t, max_conns), 1,
     100000, false, NULL},
    {"max_pending_per_endpoint", PT_CONF_T_UINT32, offsetof(cluster_raw_t, max_pending), 0,
     1000000, false, NULL},
    {"lb", PT_CONF_T_STR, offsetof(cluster_raw_t, lb), 0, 0, false, NULL},
    {"hash_key", PT_CONF_T_STR, offsetof(cluster_raw_t, hash_key), 0, 0, false, NULL},
    {"outlier", PT_CONF_T_NODE, offsetof(cluster_raw_t, outlier), 0, 0, false, NULL},
    {"circuit_breaker", PT_CONF_T_NODE, offsetof(cluster_raw_t, breaker), 0, 0, false, NULL},
    {"health_check", PT_CONF_T_NODE, offsetof(cluster_raw_t, health_check), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* ---- load balancing keys (lb, hash_key, endpoint maps, outlier, circuit_breaker) ---- */

typedef struct endpoint_raw {
    const pt_conf_node_t *address;
    uint32_t weight, priority;
} endpoint_raw_t;

static const pt_conf_field_t endpoint_fields[] = {
    {"address", PT_CONF_T_NODE, offsetof(endpoint_raw_t, address), 0, 0, true, NULL},
    {"weight", PT_CONF_T_UINT32, offsetof(endpoint_raw_t, weight), 1, 10000, false, NULL},
    {"priority", PT_CONF_T_UINT32, offsetof(endpoint_raw_t, priority), 0, 15, false, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_conf_field_t outlier_fields[] = {
    {"consecutive_failures", PT_CONF_T_UINT32, offsetof(pt_outlier_t, consecutive_failures), 0,
     1000000, false, NULL},
    {"base_ejection", PT_CONF_T_DURATION, offsetof(pt_outlier_t, base_ejection_ms), 1, 86400000,
     false, NULL},
    {"max_ejection", PT_CONF_T_DURATION, offsetof(pt_outlier_t, max_ejection_ms), 1, 86400000,
     false, NULL},
    {"max_ejection_percent", PT_CONF_T_UINT32, offsetof(pt_outlier_t, max_ejection_percent), 0,
     100, false, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_conf_field_t breaker_fields[] = {
    {"max_connections", PT_CONF_T_UINT32, offsetof(pt_breaker_t, max_connections), 1, 10000000,
     false, NULL},
    {"max_pending", PT_CONF_T_UINT32, offsetof(pt_breaker_t, max_pending), 0, 10000000, false,
     NULL},
    {"max_requests", PT_CONF_T_UINT32, offsetof(pt_breaker_t, max_requests), 1, 10000000, false,
     NULL},
    PT_CONF_FIELDS_END,
};

static int parse_endpoint(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_endpoint_t *ep);

/* An endpoint: "HOST:PORT" / URL, or { address: ..., weight: N, priority: N }. */
static int parse_endpoint_item(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_endpoint_t *ep)
{
    if (n->kind != PT_CONF_MAP) {
        ep->weight = 1;
        return parse_endpoint(cx, n, ep);
    }
    endpoint_raw_t raw = {.weight = 1};
    if (pt_conf_parse_fields(cx, n, endpoint_fields, &raw) != 0)
        return PT_ERR_INVALID;
    if (parse_endpoint(cx, raw.address, ep) != 0)
        return PT_ERR_INVALID;
    ep->weight = raw.weight;
    ep->priority = raw.priority;
    ep->node = n;
    return 0;
}

/* lb, hash_key, outlier and circuit_breaker of cluster `item` into `cl` (defaults first). */
static void parse_cluster_lb(pt_conf_cx_t *cx, const pt_conf_node_t *item, const cluster_raw_t *raw,
                             pt_cluster_t *cl)
{
    static const char *const lbs[] = {"round_robin", "least_request", "random", "ring_hash"};
    cl->lb = PT_LB_ROUND_ROBIN;
    if (raw->lb != NULL) {
        size_t i = 0;
        while (i < 4 && strcmp(raw->lb, lbs[i]) != 0)
            i++;
        if (i == 4)
            pt_conf_error(cx, pt_conf_map_get(item, "lb"),
                          "unknown lb '%s' (expected round_robin, least_request, random or "
                          "ring_hash)",
                          raw->lb);
        else
            cl->lb = (pt_lb_policy_t)i;
    }
    cl->hash_src = PT_HASH_CLIENT_IP;
    if (raw->hash_key != NULL) {
        const pt_conf_node_t *hn = pt_conf_map_get(item, "hash_key");
        const char *k = raw->hash_key;
        if (cl->lb != PT_LB_RING_HASH) {
            pt_conf_error(cx, hn, "hash_key needs lb: ring_hash");
        } else if (strcmp(k, "client_ip") == 0) {
            cl->hash_src = PT_HASH_CLIENT_IP;
        } else if (strncmp(k, "header:", 7) == 0 || strncmp(k, "cookie:", 7) == 0) {
            bool hdr = k[0] == 'h';
            const char *name = k + 7;
            bool ok = name[0] != '\0';
            for (const char *q = name; *q != '\0'; q++)
                if (!(isalnum((unsigned char)*q) || strchr("!#$%&'*+-.^_`|~", *q) != NULL))
                    ok = false;
            if (!ok) {
                pt_conf_error(cx, hn, "hash_key '%s': bad %s name", k, hdr ? "header" : "cookie");
            } else {
                char *lower = pt_conf_strdup(cx, name, strlen(name));
                if (hdr)
                    for (char *q = lower; *q != '\0'; q++)
                        *q = (char)tolower((unsigned char)*q);
                cl->hash_src = hdr ? PT_HASH_HEADER : PT_HASH_COOKIE;
                cl->hash_name = lower;
            }
        } else {
            pt_conf_error(cx, hn,
                          "unknown hash_key '%s' (expected client_ip, \"header:NAME\" or "
                          "\"cookie:NAME\")",
                          k);
        }
    }
    cl->outlier = (pt_outlier_t){.consecutive_failures = 5,
                                 .base_ejection_ms = 10000,
                                 .max_ejection_ms = 300000,
                                 .max_ejection_percent = 50};
    cl->outlier.answers = raw->outlier != NULL;
    if (raw->outlier != NULL &&
        pt_conf_parse_fields(cx, raw->outlier, outlier_fields, &cl->outlier) == 0 &&
        cl->outlier.max_ejection_ms < cl->outlier.base_ejection_ms) {
        const pt_conf_node_t *mn = pt_conf_map_get(raw->outlier, "max_ejection");
        if (mn != NULL)
            pt_conf_error(cx, mn, "outlier: max_ejection is shorter than base_ejection");
        else /* only the base was given, beyond the default cap: the cap follows */
            cl->outlier.max_ejection_ms = cl->outlier.base_ejection_ms;
    }
    cl->breaker = (pt_breaker_t){0};
    if (raw->breaker != NULL &&
        pt_conf_parse_fields(cx, raw->breaker, breaker_fields, &cl->breaker) == 0 &&
        raw->breaker->cnt == 0)
        pt_conf_error(cx, raw->breaker,
                      "circuit_breaker: expected at least one of max_connections, max_pending, "
                      "max_requests");
    cl->shared = pt_conf_alloc(cx, sizeof(*cl->shared));
}

static bool valid_host(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.' || h[i] == '_'))
            return false;
    return true;
}

/*
 * "host:port" (plain http), "http://host[:port][/]" or "https://host[:port][/]".
 * Hosts may be names: they are resolved by the upstream client at run time,
 * never at load.
 */
static int parse_endpoint(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_endpoint_t *ep)
{
    const char *text = NULL;
    if (pt_conf_get_str(cx, n, &text) != 0)
        return PT_ERR_INVALID;
    const char *p = text;
    bool tls = false, has_scheme = false;
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
        has_scheme = true;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        tls = has_scheme = true;
    } else if (strstr(p, "://") != NULL) {
        return pt_conf_error(cx, n, "bad endpoint '%s': only http:// and https:// are supported",
                             text);
    }
    size_t rest = strlen(p);
    if (rest > 0 && p[rest - 1] == '/')
        rest--;
    if (memchr(p, '/', rest) != NULL || memchr(p, '?', rest) != NULL ||
        memchr(p, '@', rest) != NULL)
        return pt_conf_error(cx, n,
                             "bad endpoint '%s': expected HOST:PORT or a URL without "
                             "path, query or credentials",
                             text);
    const char *host = p, *port = NULL;
    size_t hlen;
    bool v6 = false;
    if (*p == '[') {
        const char *close = memchr(p, ']', rest);
        if (close == NULL)
            return pt_conf_error(cx, n, "bad endpoint '%s': unterminated IPv6 address", text);
        host = p + 1;
        hlen = (size_t)(close - host);
        v6 = true;
        if ((size_t)(close + 1 - p) < rest) {
            if (close[1] != ':')
                return pt_conf_error(cx, n, "bad endpoint '%s'", text);
            port = close + 2;
        }
        char tmp[64];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp))
            return pt_conf_error(cx, n, "bad endpoint '%s': bad IPv6 address", text);
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return pt_conf_error(cx, n, "bad endpoint '%s': bad IPv6 address", text);
    } else {
        const char *colon = memchr(p, ':', rest);
        hlen = colon != NULL ? (size_t)(colon - p) : rest;
        if (colon != NULL)
            port = colon + 1;
        if (!valid_host(host, hlen))
            return pt_conf_error(cx, n, "bad endpoint '%s': bad host name", text);
    }
    unsigned long long pnum = tls ? 443 : 80;
    if (port != NULL) {
        size_t plen = rest - (size_t)(port - p);
        if (pt_str_to_u64((pt_str_t){port, plen}, 65535, &pnum) != 0 || pnum == 0)
            return pt_conf_error(cx, n, "bad endpoint '%s': port must be a number in 1-65535",
                                 text);
    } else if (!has_scheme) {
        return pt_conf_error(cx, n, "bad endpoint '%s': expected HOST:PORT or http(s)://HOST",
                             text);
    }
    char *h = pt_conf_strdup(cx, host, hlen);
    for (char *q = h; *q != '\0'; q++)
        *q = (char)tolower((unsigned char)*q);
    size_t ulen = hlen + 32;
    char *url = pt_conf_alloc(cx, ulen);
    snprintf(url, ulen, "%s://%s%s%s:%llu", tls ? "https" : "http", v6 ? "[" : "", h, v6 ? "]" : "",
             pnum);
    ep->url = url;
    ep->host = h;
    ep->port = (uint16_t)pnum;
    ep->tls = tls;
    ep->node = n;
    return 0;
}

static void load_clusters(loader_t *L, const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    pt_config_t *c = L->c;
    if (n->kind == PT_CONF_NULL)
        return;
    if (n->kind != PT_CONF_SEQ) {
        pt_conf_error(cx, n, "clusters: expected a list of clusters");
        return;
    }
    c->clusters = pt_conf_alloc(cx, (n->cnt != 0 ? n->cnt : 1) * sizeof(*c->clusters));
    for (size_t i = 0; i < n->cnt; i++) {
        const pt_conf_node_t *item = n->items[i];
        cluster_raw_t raw = {.connect_timeout_ms = 5000,
                             .timeout_ms = 15000,
                             .retries = 1,
                             .max_idle = 64,
                             .max_pending = 1024, /* PT_POLICY_MAX_PENDING */
                             .tls_verify = true};
        unsigned before = pt_conf_error_count(cx);
        pt_conf_parse_fields(cx, item, cluster_fields, &raw);
        pt_cluster_t *cl = &c->clusters[c->cluster_cnt];
        cl->node = item;
        if (raw.name != NULL) {
            if (!pt__config_valid_name(raw.name))
                pt_conf_error(cx, pt_conf_map_get(item, "name"),
                              "cluster name '%s' may only contain letters, digits, '_', '-', '.'",
                              raw.name);
            for (size_t j = 0; j < c->cluster_cnt; j++)
                if (strcmp(c->clusters[j].name, raw.name) == 0)
                    pt_conf_error(cx, pt_conf_map_get(item, "name"),
                                  "duplicate cluster name '%s' (first defined at line %u)",
                                  raw.name, c->clusters[j].node->line);
        }
        cl->protocol = PT_PROTO_HTTP;
        if (raw.protocol != NULL) {
            if (strcmp(raw.protocol, "grpc") == 0)
                cl->protocol = PT_PROTO_GRPC;
            else if (strcmp(raw.protocol, "http") != 0)
                pt_conf_error(cx, pt_conf_map_get(item, "protocol"),
                              "unknown protocol '%s' (expected http or grpc)", raw.protocol);
        }
        cl->http2 = cl->protocol == PT_PROTO_GRPC;
        if (raw.http2 != NULL && pt_conf_get_bool(cx, raw.http2, &cl->http2) == 0 && !cl->http2 &&
            cl->protocol == PT_PROTO_GRPC)
            pt_conf_error(cx, raw.http2, "gRPC clusters always use HTTP/2");
        if (raw.endpoints != NULL) {
            const pt_conf_node_t *e = raw.endpoints;
            if (e->kind == PT_CONF_SCALAR || e->kind == PT_CONF_MAP) {
                cl->endpoints = pt_conf_alloc(cx, sizeof(*cl->endpoints));
                if (parse_endpoint_item(cx, e, &cl->endpoints[0]) == 0)
                    cl->endpoint_cnt = 1;
            } else if (e->kind == PT_CONF_SEQ && e->cnt > 0) {
                cl->endpoints = pt_conf_alloc(cx, e->cnt * sizeof(*cl->endpoints));
                for (size_t k = 0; k < e->cnt; k++)
                    if (parse_endpoint_item(cx, e->items[k], &cl->endpoints[cl->endpoint_cnt]) == 0)
                        cl->endpoint_cnt++;
            } else {
                pt_conf_error(cx, e, "endpoints: expected a non-empty list of endpoints");
            }
        }
        parse_cluster_lb(cx, item, &raw, cl);
        if (raw.ca_file != NULL)
            check_readable(cx, pt_conf_map_get(item, "ca_file"), "CA file", raw.ca_file);
        if (raw.authority != NULL &&
            (raw.authority[0] == '\0' || strpbrk(raw.authority, " \t\r\n/") != NULL))
            pt_conf_error(cx, pt_conf_map_get(item, "authority"), "bad authority '%s'",
                          raw.authority);
        if (pt_conf_error_count(cx) != before)
            continue;
        cl->name = raw.name;
        cl->index = (unsigned)c->cluster_cnt;
        cl->connect_timeout_ms = raw.connect_timeout_ms;
        cl->timeout_ms = raw.timeout_ms;
        cl->retries = raw.retries;
        cl->tls_verify = raw.tls_verify;
        cl->ca_file = raw.ca_file;
        cl->authority = raw.authority;
        cl->max_idle_per_endpoint = raw.max_idle;
        cl->max_conns_per_endpoint = raw.max_conns;
        cl->max_pending_per_endpoint = raw.max_pending;
        if (raw.health_check != NULL) /* issue 12: active health checks (upstream/health.c) */
            cl->health_check = pt__health_conf_parse(cx, raw.health_check, cl);
        c->cluster_cnt++;
    }
}

/* ---- plugins and filters ---------------------------------------------------------- */

typedef struct plugin_raw {
    const char *path;
} plugin_raw_t;

static const pt_conf_field_t plugin_fields[] = {
    {"path", PT_CONF_T_PATH, offsetof(plugin_raw_t, path), 0, 0, true, NULL},
    PT_CONF_FIELDS_END,
};

static const pt_filter_def_t *find_filter(loader_t *L, const char *name)
{
    const pt_filter_def_t *d = pt_filter_builtin_find(name, strlen(name));
    for (size_t i = 0; d == NULL && i < L->plugin_cnt; i++)
        if (strcmp(L->plugins[i]->name, name) == 0)
            d = L->plugins[i];
    return d;
}

static void load_plugins(loader_t *L, const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    if (n->kind == PT_CONF_NULL)
        return;
    if (n->kind != PT_CONF_SEQ) {
        pt_conf_error(cx, n, "plugins: expected a list of { path: FILE.so }");
        return;
    }
    for (size_t i = 0; i < n->cnt; i++) {
        plugin_raw_t raw = {0};
        if (pt_conf_parse_fields(cx, n->items[i], plugin_fields, &raw) != 0)
            continue;
        const pt_conf_node_t *pn = pt_conf_map_get(n->items[i], "path");
        if (L->plugin_cnt == MAX_PLUGINS) {
            pt_conf_error(cx, pn, "too many plugins (at most %d)", MAX_PLUGINS);
            return;
        }
        const pt_filter_def_t *def;
        char err[512];
        if (pt_filter_plugin_load(raw.path, &def, err, sizeof(err)) != 0) {
            pt_conf_error(cx, pn, "%s", err);
            continue;
        }
        if (find_filter(L, def->name) != NULL) {
            pt_conf_error(cx, pn, "plugin %s: a filter named '%s' already exists", raw.path,
                          def->name);
            continue;
        }
        L->plugins[L->plugin_cnt++] = def;
    }
}

static void register_filter(loader_t *L, pt_filter_t *f);

/* Builds one filter instance from `- name: { conf }`. NULL on error. */
static pt_filter_t *make_filter(loader_t *L, const pt_conf_node_t *item)
{
    pt_conf_cx_t *cx = L->cx;
    if (item->kind != PT_CONF_MAP || item->cnt != 1) {
        pt_conf_error(cx, item,
                      "a filter is a map with exactly one key, the filter name "
                      "(e.g. `- headers: {...}`)");
        return NULL;
    }
    const pt_conf_node_t *key = item->keys[0], *val = item->items[0];
    const pt_filter_def_t *def = find_filter(L, key->str);
    if (def == NULL) {
        const char *names[MAX_PLUGINS + 16];
        size_t k = 0;
        for (size_t i = 0; pt_builtin_filters[i] != NULL && k < 15; i++)
            names[k++] = pt_builtin_filters[i]->name;
        for (size_t i = 0; i < L->plugin_cnt; i++)
            names[k++] = L->plugins[i]->name;
        names[k] = NULL;
        pt__conf_unknown_key(cx, key, "filter", names);
        return NULL;
    }
    unsigned before = pt_conf_error_count(cx);
    pt_filter_t *f = pt_conf_alloc(cx, sizeof(*f));
    void *conf = def->conf_size != 0 ? pt_conf_alloc(cx, def->conf_size) : NULL;
    f->def = def;
    f->conf = conf;
    if (def->conf_dispose != NULL && conf != NULL)
        pt_conf_on_release(cx, def->conf_dispose, conf);
    if (def->fields != NULL)
        pt_conf_parse_fields(cx, val, def->fields, conf);
    if (def->parse_conf != NULL && pt_conf_error_count(cx) == before)
        def->parse_conf(cx, val, conf);
    if (def->fields == NULL && def->parse_conf == NULL &&
        !(val->kind == PT_CONF_NULL || (val->kind == PT_CONF_MAP && val->cnt == 0)))
        pt_conf_error(cx, val, "filter '%s' takes no configuration", def->name);
    if (def->check_conf != NULL && pt_conf_error_count(cx) == before)
        def->check_conf(cx, val, conf);
    if (pt_conf_error_count(cx) != before)
        return NULL;
    register_filter(L, f);
    return f;
}

/* Gives instance `f` its slot (per-request ctx, per-worker state). */
static void register_filter(loader_t *L, pt_filter_t *f)
{
    if (L->filter_cnt == L->filter_cap) {
        size_t cap = L->filter_cap != 0 ? L->filter_cap * 2 : 16;
        pt_filter_t **v = realloc(L->filters, cap * sizeof(*v));
        if (v == NULL)
            abort();
        L->filters = v;
        L->filter_cap = cap;
    }
    f->slot = (unsigned)L->filter_cnt;
    L->filters[L->filter_cnt++] = f;
}

/* Parses `filters: [...]` into an arena array of instances (config order). */
static const pt_filter_t **load_filter_list(loader_t *L, const pt_conf_node_t *n, size_t *cnt)
{
    *cnt = 0;
    if (n == NULL || n->kind == PT_CONF_NULL)
        return NULL;
    if (n->kind != PT_CONF_SEQ) {
        pt_conf_error(L->cx, n, "filters: expected a list of `- name: {config}`");
        return NULL;
    }
    const pt_filter_t **v = pt_conf_alloc(L->cx, (n->cnt != 0 ? n->cnt : 1) * sizeof(*v));
    for (size_t i = 0; i < n->cnt; i++) {
        pt_filter_t *f = make_filter(L, n->items[i]);
        if (f != NULL)
            v[(*cnt)++] = f;
    }
    return v;
}

/* ---- routes --------------------------------------------------------------------- */

typedef struct match_raw {
    const char *prefix, *path, *tmpl;
    const pt_conf_node_t *host, *headers;
    pt_conf_strlist_t methods;
} match_raw_t;

static const pt_conf_field_t match_fields[] = {
    {"prefix", PT_CONF_T_STR, offsetof(match_raw_t, prefix), 0, 0, false, NULL},
    {"path", PT_CONF_T_STR, offsetof(match_raw_t, path), 0, 0, false, NULL},
    {"template", PT_CONF_T_STR, offsetof(match_raw_t, tmpl), 0, 0, false, NULL},
    {"host", PT_CONF_T_NODE, offsetof(match_raw_t, host), 0, 0, false, NULL},
    {"methods", PT_CONF_T_STRLIST, offsetof(match_raw_t, methods), 0, 0, false, NULL},
    {"headers", PT_CONF_T_NODE, offsetof(match_raw_t, headers), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool valid_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!is_tchar(*s))
            return false;
    return true;
}

/* "example.com", "*.example.com", "[::1]" or "10.0.0.1"; stored lowercase. */
static const char *parse_host_pattern(pt_conf_cx_t *cx, const pt_conf_node_t *n)
{
    const char *s = NULL;
    if (pt_conf_get_str(cx, n, &s) != 0)
        return NULL;
    size_t len = strlen(s);
    const char *body = s;
    if (len > 2 && s[0] == '*' && s[1] == '.')
        body = s + 2;
    bool ok;
    if (body[0] == '[') {
        struct in6_addr a6;
        char tmp[64];
        size_t bl = strlen(body);
        ok = bl > 2 && bl < sizeof(tmp) && body[bl - 1] == ']' && body == s;
        if (ok) {
            memcpy(tmp, body + 1, bl - 2);
            tmp[bl - 2] = '\0';
            ok = inet_pton(AF_INET6, tmp, &a6) == 1;
        }
    } else {
        ok = valid_host(body, strlen(body)) && body[0] != '.';
    }
    if (!ok) {
        pt_conf_error(cx, n,
                      "bad host '%s': expected a host name, '*.domain' or an IP address "
                      "(without port)",
                      s);
        return NULL;
    }
    char *out = pt_conf_strdup(cx, s, len);
    for (char *q = out; *q != '\0'; q++)
        *q = (char)tolower((unsigned char)*q);
    return out;
}

static void load_match(loader_t *L, pt_route_t *r, const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    match_raw_t raw = {0};
    if (pt_conf_parse_fields(cx, n, match_fields, &raw) != 0)
        return;
    pt_route_match_t *m = &r->match;
    int kinds = (raw.prefix != NULL) + (raw.path != NULL) + (raw.tmpl != NULL);
    if (kinds > 1)
        pt_conf_error(cx, n, "match: use only one of prefix, path and template");
    if (raw.prefix != NULL) {
        m->path_kind = PT_PATH_PREFIX;
        m->path = raw.prefix;
    } else if (raw.path != NULL) {
        m->path_kind = PT_PATH_EXACT;
        m->path = raw.path;
    } else if (raw.tmpl != NULL) {
        m->path_kind = PT_PATH_TEMPLATE;
        m->path = raw.tmpl;
    }
    if (m->path != NULL && m->path[0] != '/') {
        const char *k = raw.prefix ? "prefix" : raw.path ? "path" : "template";
        pt_conf_error(cx, pt_conf_map_get(n, k), "%s must start with '/'", k);
    }
    if (raw.host != NULL) {
        const pt_conf_node_t *h = raw.host;
        if (h->kind == PT_CONF_SCALAR) {
            m->hosts = pt_conf_alloc(cx, sizeof(*m->hosts));
            if ((m->hosts[0] = parse_host_pattern(cx, h)) != NULL)
                m->host_cnt = 1;
        } else if (h->kind == PT_CONF_SEQ && h->cnt > 0) {
            m->hosts = pt_conf_alloc(cx, h->cnt * sizeof(*m->hosts));
            for (size_t i = 0; i < h->cnt; i++)
                if ((m->hosts[m->host_cnt] = parse_host_pattern(cx, h->items[i])) != NULL)
                    m->host_cnt++;
        } else {
            pt_conf_error(cx, h, "host: expected a host or a non-empty list of hosts");
        }
    }
    const pt_conf_node_t *mnode = pt_conf_map_get(n, "methods");
    for (size_t i = 0; i < raw.methods.cnt; i++) {
        const char *meth = raw.methods.v[i];
        const pt_conf_node_t *where = mnode->kind == PT_CONF_SEQ ? mnode->items[i] : mnode;
        if (!valid_token(meth) || strlen(meth) > 32) {
            pt_conf_error(cx, where, "bad method '%s'", meth);
            continue;
        }
        m->methods |= pt__method_bit_anycase(meth, strlen(meth));
    }
    if (mnode != NULL && raw.methods.cnt == 0 && mnode->kind != PT_CONF_NULL)
        pt_conf_error(cx, mnode, "methods: expected a non-empty list of methods");
    if (raw.headers != NULL) {
        const pt_conf_node_t *h = raw.headers;
        if (h->kind != PT_CONF_MAP) {
            pt_conf_error(cx, h, "headers: expected a map of header name to value (or true)");
            return;
        }
        m->headers = pt_conf_alloc(cx, (h->cnt != 0 ? h->cnt : 1) * sizeof(*m->headers));
        for (size_t i = 0; i < h->cnt; i++) {
            const pt_conf_node_t *k = h->keys[i], *v = h->items[i];
            if (!valid_token(k->str)) {
                pt_conf_error(cx, k, "bad header name '%s'", k->str);
                continue;
            }
            char *name = pt_conf_strdup(cx, k->str, k->len);
            for (char *q = name; *q != '\0'; q++)
                *q = (char)tolower((unsigned char)*q);
            const char *value = NULL;
            if (pt__conf_is_plain(v, "true")) {
                value = NULL;
            } else if (v->kind == PT_CONF_SCALAR && !pt__conf_is_plain(v, "false")) {
                value = v->str;
                if (!pt_header_value_valid(pt_str_c(value))) {
                    pt_conf_error(cx, v, "bad header value for '%s'", name);
                    continue;
                }
            } else {
                pt_conf_error(cx, v,
                              "header match '%s': expected a value, or true for "
                              "\"present\"",
                              name);
                continue;
            }
            m->headers[m->header_cnt++] = (pt_header_match_t){name, value};
        }
    }
}

static const char *const route_keys[] = {"name",    "match",   "filters", "max_body",
                                         "timeout", "request_buffering", "retry", NULL};

/* The route's handler conf: fields, parse_conf; check_conf runs after everything is loaded. */
static void load_handler(loader_t *L, pt_route_t *r, const pt_handler_def_t *def,
                         const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    unsigned before = pt_conf_error_count(cx);
    void *conf = def->conf_size != 0 ? pt_conf_alloc(cx, def->conf_size) : NULL;
    r->handler = def;
    r->handler_conf = conf;
    if (def->conf_dispose != NULL && conf != NULL)
        pt_conf_on_release(cx, def->conf_dispose, conf);
    if (def->fields != NULL)
        pt_conf_parse_fields(cx, n, def->fields, conf);
    if (def->parse_conf != NULL && pt_conf_error_count(cx) == before)
        def->parse_conf(cx, n, conf);
}

/* The route named like `r` seen before (then NULL: `r` is recorded), in O(1). */
static const pt_route_t *route_name_seen(loader_t *L, const pt_route_t *r)
{
    if (L->route_names == NULL) {
        size_t cap = 16;
        while (cap < 2 * L->c->route_cnt)
            cap *= 2;
        L->route_names = calloc(cap, sizeof(*L->route_names));
        if (L->route_names == NULL)
            abort();
        L->route_names_cap = cap;
    }
    size_t h = 2166136261u;
    for (const char *q = r->name; *q != '\0'; q++)
        h = (h ^ (unsigned char)*q) * 16777619u;
    for (size_t i = h & (L->route_names_cap - 1);; i = (i + 1) & (L->route_names_cap - 1)) {
        const pt_route_t *o = L->route_names[i];
        if (o == NULL) {
            L->route_names[i] = r;
            return NULL;
        }
        if (strcmp(o->name, r->name) == 0)
            return o;
    }
}

/*
 * The implicit `cors` filter of a handler key that configures CORS (a grpc
 * route's web_origins, plugins/cors.h), unless the chain has a cors filter.
 */
static const pt_filter_t *cors_alias_filter(loader_t *L, const pt_route_t *r,
                                            const pt_filter_t **global, size_t gcnt,
                                            const pt_filter_t **own, size_t ocnt)
{
    pt_conf_strlist_t origins = {0};
    bool web_only = false;
    if (r->handler == NULL || r->handler->cors_alias == NULL || r->handler_conf == NULL ||
        pt_conf_error_count(L->cx) != 0 || !r->handler->cors_alias(r->handler_conf, &origins, &web_only))
        return NULL;
    for (size_t i = 0; i < gcnt; i++)
        if (global[i]->def == &pt_filter_cors)
            return NULL;
    for (size_t i = 0; i < ocnt; i++)
        if (own[i]->def == &pt_filter_cors)
            return NULL;
    pt_filter_t *f = pt_conf_alloc(L->cx, sizeof(*f));
    f->def = &pt_filter_cors;
    f->conf = pt_cors_alias_conf(L->cx, &origins, web_only);
    register_filter(L, f);
    return f;
}

static void load_route(loader_t *L, size_t idx, const pt_conf_node_t *n, const pt_filter_t **global,
                       size_t global_cnt)
{
    pt_conf_cx_t *cx = L->cx;
    pt_config_t *c = L->c;
    pt_route_t *r = &c->routes[idx];
    r->index = (unsigned)idx;
    r->node = n;
    r->max_body = c->limits.max_body;
    if (n->kind != PT_CONF_MAP) {
        pt_conf_error(cx, n, "a route is a map (match, a handler such as proxy, filters, ...)");
        return;
    }
    const pt_conf_node_t *match = NULL, *filters = NULL, *hnode = NULL, *hkey = NULL;
    for (size_t i = 0; i < n->cnt; i++) {
        const pt_conf_node_t *k = n->keys[i], *v = n->items[i];
        if (strcmp(k->str, "name") == 0) {
            if (pt_conf_get_str(cx, v, &r->name) == 0 && !pt__config_valid_name(r->name))
                pt_conf_error(cx, v,
                              "route name '%s' may only contain letters, digits, '_', "
                              "'-', '.'",
                              r->name);
        } else if (strcmp(k->str, "match") == 0) {
            match = v;
        } else if (strcmp(k->str, "filters") == 0) {
            filters = v;
        } else if (strcmp(k->str, "max_body") == 0) {
            pt_conf_get_size(cx, v, &r->max_body);
        } else if (strcmp(k->str, "timeout") == 0) {
            if (pt_conf_get_duration_ms(cx, v, &r->timeout_ms) == 0 && r->timeout_ms == 0)
                pt_conf_error(cx, v, "timeout must be positive");
        } else if (strcmp(k->str, "request_buffering") == 0) {
            pt_conf_get_bool(cx, v, &r->request_buffering);
        } else if (strcmp(k->str, "retry") == 0) {
            pt_route_retry_parse(cx, v, &r->retry); /* issue 12: core/route_retry.c */
        } else {
            const pt_handler_def_t *def = pt_handler_find(k->str, k->len);
            if (def == NULL) {
                pt__conf_unknown_key(cx, k, "key", route_keys);
            } else if (hkey != NULL) {
                pt_conf_error(cx, k, "a route has one handler: '%s' and '%s' (line %u) both given",
                              k->str, hkey->str, hkey->line);
            } else {
                hkey = k;
                hnode = v;
                load_handler(L, r, def, v);
            }
        }
    }
    if (hkey == NULL)
        pt_conf_error(cx, n, "route has no handler (e.g. `proxy: { cluster: NAME }`)");
    if (r->name == NULL) {
        char buf[32];
        snprintf(buf, sizeof(buf), "route[%zu]", idx);
        r->name = pt_conf_strdup(cx, buf, strlen(buf));
    }
    const pt_route_t *first = route_name_seen(L, r);
    if (first != NULL)
        pt_conf_error(cx, pt_conf_map_get(n, "name"),
                      "duplicate route name '%s' (first defined at line %u)", r->name,
                      first->node->line);
    if (match != NULL)
        load_match(L, r, match);
    size_t own_cnt;
    const pt_filter_t **own = load_filter_list(L, filters, &own_cnt);
    const pt_filter_t *alias = cors_alias_filter(L, r, global, global_cnt, own, own_cnt);
    r->chain_cnt = global_cnt + own_cnt + (alias != NULL);
    const pt_filter_t **chain =
        pt_conf_alloc(cx, (r->chain_cnt != 0 ? r->chain_cnt : 1) * sizeof(*chain));
    size_t k = 0;
    if (alias != NULL)
        chain[k++] = alias; /* first: the refusals of later filters carry CORS headers too */
    for (size_t i = 0; i < global_cnt; i++)
        chain[k++] = global[i];
    for (size_t i = 0; i < own_cnt; i++)
        chain[k++] = own[i];
    r->chain = chain;
    for (size_t i = 0; i < r->chain_cnt; i++) {
        r->has_request_body_filters |= chain[i]->def->on_request_body != NULL;
        r->has_response_body_filters |= chain[i]->def->on_response_body != NULL;
    }
    (void)hnode;
}

/* ---- redacted JSON ------------------------------------------------------------- */

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf_t;

static void jput(jbuf_t *b, const char *s, size_t n)
{
    if (b->p == NULL || b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jstr(jbuf_t *b, const char *s, size_t n)
{
    jput(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            jput(b, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            jput(b, esc, 6);
        } else {
            jput(b, (const char *)&s[i], 1);
        }
    }
    jput(b, "\"", 1);
}

static bool is_json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/*
 * What /config never shows (unless admin.show_secrets):
 * - the value of any key named like a credential (is_secret_key); a list or
 *   map under such a key keeps its shape with every scalar redacted;
 * - every header value the config sets or matches: the values of maps under
 *   a key named `headers`, `set`, `add`, `append` or ending in `_headers`
 *   (the headers filter, respond headers, route header matches, and any
 *   module following the same naming), whatever the header's name:
 *   `x-upstream-auth: Basic ...` is as secret as `authorization`. Plain
 *   `true`/`false` stay (a match on presence reveals nothing).
 * Redacting by shape rather than by a list of known modules keeps plugins and
 * keys added later covered.
 */
typedef enum redact_mode {
    REDACT_NONE,    /* admin.show_secrets */
    REDACT_KEYS,    /* the default: per key name */
    REDACT_HEADERS, /* a map of header name -> value */
    REDACT_ALL,     /* under a secret key: every scalar */
} redact_mode_t;

/* Keys whose values never leave the process in /config. */
static bool is_secret_key(const char *k)
{
    static const char *const words[] = {"secret", "password",   "passwd", "token",
                                        "auth",   "credential", "cookie", "session",
                                        "apikey", "private",    "jwt",    "bearer",
                                        "signature", NULL};
    char low[128];
    size_t n = strlen(k);
    if (n >= sizeof(low))
        n = sizeof(low) - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)k[i]);
    low[n] = '\0';
    for (size_t i = 0; words[i] != NULL; i++)
        if (strstr(low, words[i]) != NULL)
            return true;
    /* "key", "keys", "api_key", "x-api-key", "signing_keys"... */
    static const char *const ends[] = {"key", "keys", NULL};
    for (size_t i = 0; ends[i] != NULL; i++) {
        size_t el = strlen(ends[i]);
        if (n >= el && strcmp(low + n - el, ends[i]) == 0 &&
            (n == el || low[n - el - 1] == '_' || low[n - el - 1] == '-' || low[n - el - 1] == '.'))
            return true;
    }
    return false;
}

/* Keys whose map value is header name -> header value. */
static bool is_header_map_key(const char *k)
{
    static const char *const names[] = {"headers", "set", "add", "append", NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcasecmp(k, names[i]) == 0)
            return true;
    size_t n = strlen(k);
    return n > 8 && (strcasecmp(k + n - 8, "_headers") == 0 || strcasecmp(k + n - 8, "-headers") == 0);
}

static void render(jbuf_t *b, const pt_conf_node_t *n, redact_mode_t mode);

/* The value of one map entry, in a map rendered in `mode`. */
static void render_value(jbuf_t *b, const char *key, const pt_conf_node_t *v, redact_mode_t mode)
{
    if (mode == REDACT_NONE || v->kind == PT_CONF_NULL) {
        render(b, v, mode);
        return;
    }
    if (mode == REDACT_HEADERS) {
        if (v->kind == PT_CONF_SCALAR &&
            (pt__conf_is_plain(v, "true") || pt__conf_is_plain(v, "false")))
            render(b, v, REDACT_KEYS);
        else
            render(b, v, v->kind == PT_CONF_MAP ? REDACT_KEYS : REDACT_ALL);
        return;
    }
    if (mode == REDACT_ALL || is_secret_key(key))
        render(b, v, REDACT_ALL);
    else if (v->kind == PT_CONF_MAP && is_header_map_key(key))
        render(b, v, REDACT_HEADERS);
    else
        render(b, v, REDACT_KEYS);
}

static void render(jbuf_t *b, const pt_conf_node_t *n, redact_mode_t mode)
{
    switch (n->kind) {
    case PT_CONF_NULL:
        jput(b, "null", 4);
        return;
    case PT_CONF_SCALAR:
        if (mode == REDACT_ALL)
            jput(b, "\"[redacted]\"", 12);
        else if (!n->quoted && (strcmp(n->str, "true") == 0 || strcmp(n->str, "false") == 0 ||
                                is_json_number(n->str)))
            jput(b, n->str, n->len);
        else
            jstr(b, n->str, n->len);
        return;
    case PT_CONF_SEQ:
        jput(b, "[", 1);
        for (size_t i = 0; i < n->cnt; i++) {
            if (i != 0)
                jput(b, ",", 1);
            render(b, n->items[i], mode);
        }
        jput(b, "]", 1);
        return;
    case PT_CONF_MAP:
        jput(b, "{", 1);
        for (size_t i = 0; i < n->cnt; i++) {
            if (i != 0)
                jput(b, ",", 1);
            jstr(b, n->keys[i]->str, n->keys[i]->len);
            jput(b, ":", 1);
            render_value(b, n->keys[i]->str, n->items[i], mode);
        }
        jput(b, "}", 1);
        return;
    }
}

/* ---- the top level ---------------------------------------------------------------- */

typedef struct top_raw {
    const pt_conf_node_t *listeners, *admin, *access_log, *limits, *timeouts, *clusters, *routes,
        *filters, *plugins, *descriptors, *redis, *overload;
    const pt_conf_node_t *tracing; /* issue 13 (edge) */
    const pt_conf_node_t *openapi; /* issue 13 (openapi) */
    long long workers;
} top_raw_t;

static const pt_conf_field_t top_fields[] = {
    {"listeners", PT_CONF_T_NODE, offsetof(top_raw_t, listeners), 0, 0, true, NULL},
    {"admin", PT_CONF_T_NODE, offsetof(top_raw_t, admin), 0, 0, false, NULL},
    {"access_log", PT_CONF_T_NODE, offsetof(top_raw_t, access_log), 0, 0, false, NULL},
    {"workers", PT_CONF_T_INT, offsetof(top_raw_t, workers), 0, MAX_WORKERS, false, NULL},
    {"limits", PT_CONF_T_NODE, offsetof(top_raw_t, limits), 0, 0, false, NULL},
    {"timeouts", PT_CONF_T_NODE, offsetof(top_raw_t, timeouts), 0, 0, false, NULL},
    {"clusters", PT_CONF_T_NODE, offsetof(top_raw_t, clusters), 0, 0, false, NULL},
    {"routes", PT_CONF_T_NODE, offsetof(top_raw_t, routes), 0, 0, false, NULL},
    {"filters", PT_CONF_T_NODE, offsetof(top_raw_t, filters), 0, 0, false, NULL},
    {"plugins", PT_CONF_T_NODE, offsetof(top_raw_t, plugins), 0, 0, false, NULL},
    {"descriptors", PT_CONF_T_NODE, offsetof(top_raw_t, descriptors), 0, 0, false, NULL},
    {"redis", PT_CONF_T_NODE, offsetof(top_raw_t, redis), 0, 0, false, NULL},
    {"overload", PT_CONF_T_NODE, offsetof(top_raw_t, overload), 0, 0, false, NULL},
    {"tracing", PT_CONF_T_NODE, offsetof(top_raw_t, tracing), 0, 0, false, NULL},
    {"openapi", PT_CONF_T_NODE, offsetof(top_raw_t, openapi), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

/* `overload: { memory: 512m, retry_after: 2s }` (core/overload.h) */
static int parse_retry_after(pt_conf_cx_t *cx, const pt_conf_node_t *n, void *dst)
{
    uint64_t ms = 0;
    if (pt_conf_get_duration_ms(cx, n, &ms) != 0)
        return PT_ERR_INVALID;
    if (ms < 1000 || ms > 3600000 || ms % 1000 != 0)
        return pt_conf_error(cx, n, "retry_after: whole seconds from 1s to 1h");
    *(uint32_t *)dst = (uint32_t)(ms / 1000);
    return 0;
}

static const pt_conf_field_t overload_fields[] = {
    {"memory", PT_CONF_T_SIZE, offsetof(pt_overload_t, memory), 0, 1ll << 50, false, NULL},
    {"retry_after", PT_CONF_T_CUSTOM, offsetof(pt_overload_t, retry_after_s), 0, 0, false,
     parse_retry_after},
    PT_CONF_FIELDS_END,
};

/* ---- descriptors (gRPC) ------------------------------------------------------ */

static void descpool_release(void *p)
{
    pt_descpool_unref(p);
}

/* Reads a whole file into malloc'd memory; NULL with errno on failure. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            uint8_t *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

/*
 * `descriptors: [ api.pb, ... ]`: binary FileDescriptorSets (paths relative to
 * the config file) merged into one built pool per snapshot; an entry
 * `grpc-reflection://CLUSTER` is fetched from that cluster (config_reflect.c). A reload reads
 * the files again, so new descriptor sets take effect with SIGHUP.
 */
static void load_descriptors(loader_t *L, const pt_conf_node_t *n)
{
    pt_conf_cx_t *cx = L->cx;
    if (n->kind == PT_CONF_NULL)
        return;
    const pt_conf_node_t *one[1] = {n};
    pt_conf_node_t *const *items = (pt_conf_node_t *const *)one;
    size_t cnt = 1;
    if (n->kind == PT_CONF_SEQ) {
        items = n->items;
        cnt = n->cnt;
    } else if (n->kind != PT_CONF_SCALAR) {
        pt_conf_error(cx, n, "descriptors: expected a list of descriptor set files (.pb) or "
                      "grpc-reflection://CLUSTER entries");
        return;
    }
    if (cnt == 0)
        return;
    pt_descpool_t *pool = NULL;
    pt_xerr_t xe;
    if (pt_descpool_new(NULL, &pool, &xe) != 0) {
        pt_conf_error(cx, n, "descriptors: out of memory");
        return;
    }
    pt_conf_on_release(cx, descpool_release, pool);
    unsigned before = pt_conf_error_count(cx);
    for (size_t i = 0; i < cnt; i++) {
        const char *raw = NULL;
        if (pt_conf_get_str(cx, items[i], &raw) != 0)
            continue;
        if (pt__conf_is_reflection(raw)) { /* issue 13: config_reflect.c */
            pt__conf_descriptors_reflect(cx, items[i], raw, L->c, pool);
            continue;
        }
        const char *path = pt_conf_resolve_path(cx, items[i], raw);
        size_t len = 0;
        uint8_t *data = slurp(path, &len);
        if (data == NULL) {
            pt_conf_error(cx, items[i], "descriptor set %s: %s", path, strerror(errno));
            continue;
        }
        pt_xerr_clear(&xe);
        if (pt_descpool_add_set(pool, data, len, raw, &xe) != 0) {
            char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
            pt_xerr_format(&xe, msg, sizeof(msg));
            pt_conf_error(cx, items[i], "descriptor set %s: %s", raw, msg);
        }
        free(data);
    }
    if (pt_conf_error_count(cx) != before)
        return;
    pt_xerr_clear(&xe);
    if (pt_descpool_build(pool, &xe) != 0) {
        char msg[PT_XERR_PATH_MAX + PT_XERR_MSG_MAX + 4];
        pt_xerr_format(&xe, msg, sizeof(msg));
        pt_conf_error(cx, n, "descriptors: %s", msg);
        return;
    }
    L->c->descpool = pool;
}

static void sort_by_priority(const pt_filter_t **v, size_t n)
{
    /* insertion sort: stable (config order among equal priorities), n is small */
    for (size_t i = 1; i < n; i++) {
        const pt_filter_t *x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1]->def->priority < x->def->priority) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static void build(loader_t *L, const pt_conf_node_t *root)
{
    pt_conf_cx_t *cx = L->cx;
    pt_config_t *c = L->c;
    if (root->kind != PT_CONF_MAP) {
        pt_conf_error(cx, root, "the config must be a map (listeners, routes, ...), got %s",
                      root->kind == PT_CONF_NULL ? "an empty document" : "something else");
        return;
    }
    top_raw_t raw = {0};
    pt_conf_parse_fields(cx, root, top_fields, &raw);
    c->workers = (unsigned)raw.workers;
    if (raw.plugins != NULL)
        load_plugins(L, raw.plugins);
    if (raw.limits != NULL)
        parse_table(cx, raw.limits, limits_spec, sizeof(limits_spec) / sizeof(limits_spec[0]),
                    &c->limits);
    if (raw.timeouts != NULL)
        parse_table(cx, raw.timeouts, timeouts_spec,
                    sizeof(timeouts_spec) / sizeof(timeouts_spec[0]), &c->timeouts);
    c->overload.retry_after_s = 1;
    if (raw.overload != NULL) /* issue 12: core/overload.h */
        pt_conf_parse_fields(cx, raw.overload, overload_fields, &c->overload);
    if (raw.listeners != NULL)
        load_listeners(L, raw.listeners);
    if (raw.admin != NULL)
        load_admin(L, raw.admin);
    if (raw.access_log != NULL)
        load_access_log(L, raw.access_log);
    if (raw.tracing != NULL)
        pt_tracing_conf_load(cx, raw.tracing, &c->tracing);
    if (raw.openapi != NULL)
        pt_openapi_conf_load(cx, raw.openapi, &c->openapi);
    if (raw.clusters != NULL)
        load_clusters(L, raw.clusters);
    if (raw.descriptors != NULL)
        load_descriptors(L, raw.descriptors);
    /* before the filters: their parse/check_conf resolve targets by name */
    if (raw.redis != NULL)
        pt__redis_conf_load(cx, raw.redis, &c->redis_targets, &c->redis_target_cnt);

    size_t gcnt = 0;
    const pt_filter_t **global = load_filter_list(L, raw.filters, &gcnt);
    sort_by_priority(global, gcnt);
    c->global_filters = global;
    c->global_filter_cnt = gcnt;

    const pt_conf_node_t *routes = raw.routes;
    if (routes != NULL && routes->kind != PT_CONF_SEQ && routes->kind != PT_CONF_NULL) {
        pt_conf_error(cx, routes, "routes: expected a list of routes");
        routes = NULL;
    }
    if (routes != NULL && routes->kind == PT_CONF_SEQ && routes->cnt > 0) {
        c->routes = pt_conf_alloc(cx, routes->cnt * sizeof(*c->routes));
        c->route_cnt = routes->cnt;
        for (size_t i = 0; i < routes->cnt; i++)
            load_route(L, i, routes->items[i], global, gcnt);
    }

    c->filter_slot_cnt = (unsigned)L->filter_cnt;
    c->filters = pt_conf_alloc(cx, (L->filter_cnt != 0 ? L->filter_cnt : 1) * sizeof(*c->filters));
    for (size_t i = 0; i < L->filter_cnt; i++)
        c->filters[i] = L->filters[i];
    if (pt_conf_error_count(cx) != 0)
        return;

    /* Cross checks, now that the whole snapshot exists. */
    for (size_t i = 0; i < c->route_cnt; i++) {
        pt_route_t *r = &c->routes[i];
        if (r->handler != NULL && r->handler->check_conf != NULL) {
            const pt_conf_node_t *hn = pt_conf_map_get(r->node, r->handler->name);
            r->handler->check_conf(cx, hn, (void *)r->handler_conf, c);
        }
        pt_router_compile_route(cx, r);
    }
    if (pt_conf_error_count(cx) != 0)
        return;
    c->router = pt_router_new(cx, c);

    jbuf_t jb = {0};
    render(&jb, root, c->admin_show_secrets ? REDACT_NONE : REDACT_KEYS);
    c->redacted_json = pt_conf_strdup(cx, jb.p, jb.len);
    free(jb.p);
}

static pt_config_t *finish(pt_conf_cx_t *cx, const pt_conf_node_t *root, const char *path)
{
    if (root == NULL) {
        pt__conf_cx_dispose(cx);
        return NULL;
    }
    loader_t L = {.cx = cx};
    pt_config_t *c = pt_conf_alloc(cx, sizeof(*c));
    L.c = c;
    cx->user = c;
    c->path = path != NULL ? cx->file : NULL;
    set_defaults(c);
    build(&L, root);
    free(L.filters);
    free(L.route_names);
    if (pt_conf_error_count(cx) != 0) {
        pt__conf_cx_dispose(cx);
        return NULL;
    }
    atomic_init(&c->refcnt, 1);
    c->generation = atomic_fetch_add(&load_generation, 1) + 1;
    c->_private = pt__conf_cx_take_arena(cx);
    return c;
}

pt_config_t *pt_config_load(const char *path, FILE *errs)
{
    pt_conf_cx_t cx;
    pt__conf_cx_init(&cx, path, errs);
    return finish(&cx, pt__conf_parse_file(&cx), path);
}

pt_config_t *pt_config_load_string(const char *name, const char *text, size_t len, FILE *errs)
{
    pt_conf_cx_t cx;
    pt__conf_cx_init(&cx, name, errs);
    return finish(&cx, pt__conf_parse(&cx, text, len), NULL);
}

pt_config_t *pt_config_ref(pt_config_t *c)
{
    atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
    return c;
}

void pt_config_unref(pt_config_t *c)
{
    if (c == NULL)
        return;
    /* acq_rel: every thread's last reads of the snapshot happen before the release */
    if (atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    pt_arena_t *a = c->_private;
    pt_arena_destroy(a); /* runs the release hooks (LIFO), then frees c itself */
}

const pt_cluster_t *pt_config_cluster(const pt_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->cluster_cnt; i++)
        if (strcmp(c->clusters[i].name, name) == 0)
            return &c->clusters[i];
    return NULL;
}
