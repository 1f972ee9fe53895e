/*
 * health.c -- the active health checker (see health.h): one prober on the
 * main thread's loop, verdicts read by the workers through one atomic flag per
 * check.
 *
 * A probe is one fresh connection (never the workers' pools: a check must see
 * what a new connection sees, and must not take a slot of the connection
 * caps), with libevent bufferevents and, for https endpoints, an OpenSSL
 * filter made from the cluster's TLS settings as upstream/tls.h reads them
 * (verification against ca_file or the system store, host name or IP SAN,
 * SNI for names; ALPN as the call path offers it):
 *   tcp   connect (+ TLS handshake) -> success
 *   http  GET path over HTTP/1.1 with Connection: close; the status line's code
 *         must be in `expect`. On http2 clusters the same GET over HTTP/2 (h2c
 *         prior knowledge, or ALPN h2), with nghttp2; an https server that
 *         picks http/1.1 (or no ALPN) gets the HTTP/1.1 GET, as a call would.
 *   grpc  POST /grpc.health.v1.Health/Check over HTTP/2 with a
 *         HealthCheckRequest{service}; success = :status 200, grpc-status 0 and
 *         HealthCheckResponse.status == SERVING (1).
 * The whole probe, connect and resolution included, is bounded by `timeout`.
 * The next probe of a check starts `interval` after the previous one started
 * (or at once, when it took longer).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/xalloc.h"
#include "upstream/health_internal.h"
#include "upstream/tls.h"
#include "portico/status.h"

enum { ST_CONNECT, ST_HANDSHAKE, ST_EXCHANGE };
enum { MAX_HEAD = 16384, MAX_MSG = 64 };

typedef struct probe {
    pt_health_ep_t *e;
    struct bufferevent *bev; /* the socket, or the TLS filter over it */
    struct event *tmo;
    int state;
    uint64_t started_ms;
    /* HTTP/2 */
    nghttp2_session *ng;
    int32_t sid;
    int status;      /* :status, 0 = none yet */
    int grpc_status; /* -1 = none */
    bool closed;     /* the stream ended */
    uint32_t close_error;
    uint8_t msg[MAX_MSG];
    size_t msg_len;
    uint8_t body[5 + 3 + 256];
    size_t body_len, body_off;
} probe_t;

typedef struct prober {
    struct event_base *base;
    struct evdns_base *dns;
    unsigned pass;
    pt_health_ep_t **active;
    size_t active_cnt, active_cap;
} prober_t;

static prober_t P; /* main thread only */

/* ---- the verdict (any thread) -------------------------------------------------------- */

static bool ep_up(const pt_health_ep_t *e)
{
    return atomic_load_explicit(&e->up, memory_order_relaxed);
}

bool pt_health_endpoint_up(const pt_cluster_t *cl, size_t ep)
{
    const pt_health_conf_t *h = cl->health_check;
    if (h == NULL || ep >= cl->endpoint_cnt || ep_up(h->eps[ep]))
        return true;
    if (!h->fail_open)
        return false;
    /* Fail open: when every endpoint fails its checks, the checks are more
     * likely wrong (or the whole service is) than every instance; sending
     * traffic anyway beats a certain 503. */
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        if (ep_up(h->eps[i]))
            return false;
    return true;
}

/* ---- results --------------------------------------------------------------------------- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void schedule(pt_health_ep_t *e, uint64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)((delay_ms % 1000) * 1000)};
    evtimer_add(e->timer, &tv);
}

static void probe_free(probe_t *p)
{
    if (p->bev != NULL)
        bufferevent_free(p->bev); /* the TLS filter frees the socket under it */
    if (p->tmo != NULL)
        event_free(p->tmo);
    if (p->ng != NULL)
        nghttp2_session_del(p->ng);
    free(p);
}

/* Records one check's result, moves the verdict after enough of the same in a row. */
static void finish(probe_t *p, bool ok, const char *why)
{
    pt_health_ep_t *e = p->e;
    uint64_t took = pt_now_ms() - p->started_ms;
    e->probe = NULL;
    probe_free(p);
    e->checks++;
    bool up = ep_up(e);
    if (ok) {
        e->fail_run = 0;
        e->ok_run++;
        if (!up && e->ok_run >= e->healthy) {
            atomic_store_explicit(&e->up, true, memory_order_relaxed);
            e->transitions++;
            e->changed_ms = wall_ms();
            fprintf(stderr, "portico: health: cluster %s endpoint %s is UP (%u check%s passed)\n",
                    e->cluster, e->url, e->ok_run, e->ok_run == 1 ? "" : "s");
        }
    } else {
        e->failures++;
        e->ok_run = 0;
        e->fail_run++;
        snprintf(e->last_error, sizeof(e->last_error), "%s", why);
        if (up && e->fail_run >= e->unhealthy) {
            atomic_store_explicit(&e->up, false, memory_order_relaxed);
            e->transitions++;
            e->changed_ms = wall_ms();
            fprintf(stderr, "portico: health: cluster %s endpoint %s is DOWN (%u failed check%s: %s)\n",
                    e->cluster, e->url, e->fail_run, e->fail_run == 1 ? "" : "s", why);
        }
    }
    schedule(e, took >= e->interval_ms ? 0 : e->interval_ms - took);
}

static bool status_expected(const pt_health_ep_t *e, int st)
{
    for (size_t i = 0; i < e->expect_cnt; i++)
        if (st >= e->expect[i].lo && st <= e->expect[i].hi)
            return true;
    return false;
}

/* ---- HTTP/1.1 --------------------------------------------------------------------------- */

static void h1_send(probe_t *p)
{
    const pt_health_ep_t *e = p->e;
    evbuffer_add_printf(bufferevent_get_output(p->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portico-health-check\r\n"
                        "Accept: */*\r\nConnection: close\r\n\r\n",
                        e->path, e->authority);
}

/* The status line is all we need: "HTTP/1.x NNN ...". True when the probe finished (p is gone). */
static bool h1_read(probe_t *p)
{
    struct evbuffer *in = bufferevent_get_input(p->bev);
    size_t len = 0;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
        if (evbuffer_get_length(in) <= MAX_HEAD)
            return false;
        finish(p, false, "status line too long");
        return true;
    }
    int st = 0;
    bool ok = len >= 12 && memcmp(line, "HTTP/1.", 7) == 0 && line[8] == ' ' &&
              line[9] >= '1' && line[9] <= '5' && line[10] >= '0' && line[10] <= '9' &&
              line[11] >= '0' && line[11] <= '9' && (len == 12 || line[12] == ' ');
    if (ok)
        st = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    free(line);
    if (!ok) {
        finish(p, false, "not an HTTP/1.1 status line");
        return true;
    }
    char why[48];
    snprintf(why, sizeof(why), "status %d", st);
    finish(p, status_expected(p->e, st), why);
    return true;
}

/* ---- HTTP/2 (gRPC health, or GET on http2 clusters) -------------------------------------- */

static void h2_flush(probe_t *p)
{
    for (;;) {
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(p->ng, &data);
        if (n <= 0)
            break;
        bufferevent_write(p->bev, data, (size_t)n);
    }
}

/* 1 to 4 decimal digits, else 999 (never a pass: not 200, not grpc-status 0) */
static int small_uint(const uint8_t *v, size_t len)
{
    int n = 0;
    if (len == 0 || len > 4)
        return 999;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 999;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

static int on_h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)s;
    (void)flags;
    probe_t *p = ud;
    if (f->hd.stream_id != p->sid)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        p->status = small_uint(value, valuelen);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        p->grpc_status = small_uint(value, valuelen);
    return 0;
}

static int on_h2_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)s;
    (void)flags;
    probe_t *p = ud;
    if (sid == p->sid && p->msg_len < MAX_MSG) {
        size_t take = len < MAX_MSG - p->msg_len ? len : MAX_MSG - p->msg_len;
        memcpy(p->msg + p->msg_len, data, take);
        p->msg_len += take;
    }
    return 0;
}

static int on_h2_close(nghttp2_session *s, int32_t sid, uint32_t err, void *ud)
{
    (void)s;
    probe_t *p = ud;
    if (sid == p->sid) {
        p->closed = true;
        p->close_error = err;
    }
    return 0;
}

static ssize_t h2_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)src;
    probe_t *p = ud;
    size_t n = p->body_len - p->body_off;
    if (n > len)
        n = len;
    memcpy(buf, p->body + p->body_off, n);
    p->body_off += n;
    if (p->body_off == p->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static int h2_send(probe_t *p)
{
    const pt_health_ep_t *e = p->e;
    nghttp2_session_callbacks *cb = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_h2_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_h2_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_h2_close);
    int rv = nghttp2_session_client_new(&p->ng, cb, p);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return -1;
    nghttp2_submit_settings(p->ng, NGHTTP2_FLAG_NONE, NULL, 0);
    const char *scheme = e->tls ? "https" : "http";
    if (e->type == PT_HEALTH_GRPC) {
        /* HealthCheckRequest { string service = 1; } in one uncompressed message */
        size_t sl = strlen(e->service), pl = 0;
        uint8_t *m = p->body + 5;
        if (sl > 0) {
            m[pl++] = 0x0a;
            if (sl >= 128)
                m[pl++] = (uint8_t)(0x80 | (sl & 0x7f)), m[pl++] = (uint8_t)(sl >> 7);
            else
                m[pl++] = (uint8_t)sl;
            memcpy(m + pl, e->service, sl);
            pl += sl;
        }
        p->body[0] = 0;
        p->body[1] = (uint8_t)(pl >> 24);
        p->body[2] = (uint8_t)(pl >> 16);
        p->body[3] = (uint8_t)(pl >> 8);
        p->body[4] = (uint8_t)pl;
        p->body_len = 5 + pl;
        const nghttp2_nv nva[] = {
            NV(":method", "POST"),         NV(":scheme", scheme),
            NV(":path", "/grpc.health.v1.Health/Check"), NV(":authority", e->authority),
            NV("content-type", "application/grpc"), NV("te", "trailers"),
            NV("user-agent", "portico-health-check"),
        };
        nghttp2_data_provider dp = {.source.ptr = NULL, .read_callback = h2_body};
        p->sid = nghttp2_submit_request(p->ng, NULL, nva, sizeof(nva) / sizeof(nva[0]), &dp, NULL);
    } else {
        const nghttp2_nv nva[] = {
            NV(":method", "GET"), NV(":scheme", scheme), NV(":path", e->path),
            NV(":authority", e->authority), NV("user-agent", "portico-health-check"),
        };
        p->sid = nghttp2_submit_request(p->ng, NULL, nva, sizeof(nva) / sizeof(nva[0]), NULL, NULL);
    }
    if (p->sid < 0)
        return -1;
    h2_flush(p);
    return 0;
}

/* HealthCheckResponse { ServingStatus status = 1; }: SERVING = 1. */
static bool grpc_serving(const probe_t *p)
{
    if (p->msg_len < 5 || p->msg[0] != 0)
        return false;
    size_t len = ((size_t)p->msg[1] << 24) | ((size_t)p->msg[2] << 16) |
                 ((size_t)p->msg[3] << 8) | p->msg[4];
    if (len > p->msg_len - 5)
        return false;
    const uint8_t *m = p->msg + 5;
    int status = 0;
    for (size_t i = 0; i < len;) {
        uint8_t tag = m[i++];
        if (tag == 0x08 && i < len) {
            uint64_t v = 0;
            unsigned shift = 0;
            while (i < len && shift < 64) {
                v |= (uint64_t)(m[i] & 0x7f) << shift;
                shift += 7;
                if ((m[i++] & 0x80) == 0)
                    break;
            }
            status = (int)v;
        } else {
            return false; /* nothing else is in a HealthCheckResponse */
        }
    }
    return status == 1;
}

static void h2_done(probe_t *p)
{
    const pt_health_ep_t *e = p->e;
    char why[64];
    if (p->close_error != 0 && p->status == 0) {
        snprintf(why, sizeof(why), "stream reset (HTTP/2 error %u)", p->close_error);
        finish(p, false, why);
    } else if (e->type == PT_HEALTH_HTTP) {
        if (status_expected(e, p->status)) {
            finish(p, true, NULL);
            return;
        }
        snprintf(why, sizeof(why), "status %d", p->status);
        finish(p, false, why);
    } else if (p->status != 200) {
        snprintf(why, sizeof(why), "status %d", p->status);
        finish(p, false, why);
    } else if (p->grpc_status != 0) {
        snprintf(why, sizeof(why), "grpc-status %d", p->grpc_status);
        finish(p, false, p->grpc_status < 0 ? "no grpc-status" : why);
    } else {
        finish(p, grpc_serving(p), "not SERVING");
    }
}

/* True when the probe finished (p is gone). */
static bool h2_read(probe_t *p)
{
    struct evbuffer *in = bufferevent_get_input(p->bev);
    size_t len = evbuffer_get_length(in);
    const uint8_t *data = evbuffer_pullup(in, -1);
    ssize_t n = len > 0 ? nghttp2_session_mem_recv(p->ng, data, len) : 0;
    evbuffer_drain(in, len);
    if (n < 0) {
        finish(p, false, "bad HTTP/2 from the endpoint");
        return true;
    }
    if (p->closed) {
        h2_done(p);
        return true;
    }
    h2_flush(p);
    return false;
}

/* ---- connection ----------------------------------------------------------------------- */

static bool exchange_read(probe_t *p)
{
    if (p->state != ST_EXCHANGE)
        return false;
    return p->ng != NULL ? h2_read(p) : h1_read(p);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    exchange_read(arg);
}

static void exchange(probe_t *p)
{
    p->state = ST_EXCHANGE;
    if (p->e->type == PT_HEALTH_TCP) {
        finish(p, true, NULL);
        return;
    }
    /* A REST check on an https `http2: true` cluster speaks what ALPN chose (h2, else HTTP/1.1). */
    bool h2 = p->e->h2;
    if (h2 && p->e->tls && p->e->type == PT_HEALTH_HTTP)
        h2 = strcmp(pt__uptls_alpn(bufferevent_openssl_get_ssl(p->bev)), "h2") == 0;
    if (h2) {
        if (h2_send(p) != 0) {
            finish(p, false, "HTTP/2 session setup failed");
            return;
        }
    } else {
        h1_send(p);
    }
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
}

/*
 * ALPN offers what the call path offers (upstream/tls.h): h2 for gRPC, h2
 * then http/1.1 for REST clusters with `http2: true` (the check then speaks
 * what the server picked, as a call does), else http/1.1.
 */
static SSL_CTX *tls_ctx(pt_health_ep_t *e)
{
    if (e->ssl_ctx != NULL)
        return e->ssl_ctx;
    if (e->type == PT_HEALTH_GRPC)
        e->ssl_ctx = pt__uptls_ctx_new(e->verify, e->ca_file, PT_UPTLS_ALPN_H2,
                                       sizeof(PT_UPTLS_ALPN_H2) - 1);
    else if (e->h2)
        e->ssl_ctx = pt__uptls_ctx_new(e->verify, e->ca_file, PT_UPTLS_ALPN_H2_H1,
                                       sizeof(PT_UPTLS_ALPN_H2_H1) - 1);
    else
        e->ssl_ctx = pt__uptls_ctx_new(e->verify, e->ca_file, PT_UPTLS_ALPN_H1,
                                       sizeof(PT_UPTLS_ALPN_H1) - 1);
    return e->ssl_ctx;
}

static void on_event(struct bufferevent *bev, short what, void *arg);

static int start_tls(probe_t *p)
{
    pt_health_ep_t *e = p->e;
    SSL_CTX *ctx = tls_ctx(e);
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    if (ssl == NULL)
        return -1;
    if (pt__uptls_set_peer(ssl, e->tls_name, e->verify) != 0) {
        SSL_free(ssl);
        return -1;
    }
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        P.base, p->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tls == NULL) {
        SSL_free(ssl);
        return -1;
    }
    p->bev = tls;
    p->state = ST_HANDSHAKE;
    bufferevent_setcb(tls, on_read, NULL, on_event, p);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    return 0;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    probe_t *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (p->state == ST_CONNECT && p->e->tls) {
            if (start_tls(p) != 0)
                finish(p, false, "TLS setup failed");
            return;
        }
        exchange(p);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT)) {
        char why[128];
        if ((what & BEV_EVENT_EOF) && exchange_read(p)) /* what came with the close */
            return;
        int dns_err = bufferevent_socket_get_dns_error(p->bev);
        unsigned long ssl_err = p->state == ST_HANDSHAKE ? bufferevent_get_openssl_error(p->bev) : 0;
        if (dns_err != 0)
            snprintf(why, sizeof(why), "cannot resolve %s: %s", p->e->host,
                     evutil_gai_strerror(dns_err));
        else if (p->state == ST_CONNECT)
            snprintf(why, sizeof(why), "connect failed: %s",
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        else if (p->state == ST_HANDSHAKE)
            snprintf(why, sizeof(why), "TLS handshake failed%s%s", ssl_err ? ": " : "",
                     ssl_err ? ERR_reason_error_string(ssl_err) : "");
        else
            snprintf(why, sizeof(why), "connection closed before an answer");
        ERR_clear_error();
        finish(p, false, why);
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    probe_t *p = arg;
    finish(p, false, p->state == ST_CONNECT     ? "timeout connecting"
                     : p->state == ST_HANDSHAKE ? "timeout in the TLS handshake"
                                                : "timeout waiting for the answer");
}

static void probe_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_health_ep_t *e = arg;
    if (e->probe != NULL)
        return;
    probe_t *p = pt_xcalloc(1, sizeof(*p));
    p->e = e;
    p->grpc_status = -1;
    p->started_ms = pt_now_ms();
    e->probe = p;
    p->tmo = evtimer_new(P.base, on_timeout, p);
    struct timeval tv = {(time_t)(e->timeout_ms / 1000), (suseconds_t)((e->timeout_ms % 1000) * 1000)};
    evtimer_add(p->tmo, &tv);
    /* Deferred callbacks: nothing runs from inside the calls below. */
    p->bev = bufferevent_socket_new(P.base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (p->bev == NULL) {
        finish(p, false, "out of sockets");
        return;
    }
    bufferevent_setcb(p->bev, on_read, NULL, on_event, p);
    if (bufferevent_socket_connect_hostname(p->bev, P.dns, AF_UNSPEC, e->host, e->port) != 0)
        finish(p, false, "connect failed");
}

/* ---- the prober ------------------------------------------------------------------------ */

int pt_health_start(struct event_base *base)
{
    P.base = base;
    P.dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (P.dns == NULL) /* no resolv.conf: numeric hosts and /etc/hosts still work */
        P.dns = evdns_base_new(base, 0);
    if (P.dns != NULL)
        evdns_base_load_hosts(P.dns, NULL);
    return P.dns != NULL ? 0 : PT_ERR_INTERNAL;
}

static void deactivate(pt_health_ep_t *e)
{
    if (e->probe != NULL) {
        probe_free(e->probe);
        e->probe = NULL;
    }
    event_free(e->timer);
    e->timer = NULL;
    e->active = false;
    pt__health_ep_release(e);
}

void pt_health_reconfigure(const pt_config_t *config)
{
    if (P.base == NULL)
        return;
    unsigned pass = ++P.pass;
    for (size_t i = 0; i < config->cluster_cnt; i++) {
        const pt_cluster_t *cl = &config->clusters[i];
        const pt_health_conf_t *h = cl->health_check;
        for (size_t k = 0; h != NULL && k < cl->endpoint_cnt; k++) {
            pt_health_ep_t *e = h->eps[k];
            if (e->seen == pass)
                continue; /* another cluster named the same check first: its timing wins */
            e->seen = pass;
            e->interval_ms = h->interval_ms;
            e->timeout_ms = h->timeout_ms;
            e->unhealthy = h->unhealthy;
            e->healthy = h->healthy;
            free(e->cluster);
            e->cluster = pt_xcheck(strdup(cl->name));
            if (e->active)
                continue;
            pt__health_ep_get(e); /* the prober's reference */
            e->active = true;
            e->timer = evtimer_new(P.base, probe_start, e);
            if (P.active_cnt == P.active_cap) {
                P.active_cap = P.active_cap ? P.active_cap * 2 : 16;
                P.active = pt_xrealloc(P.active, P.active_cap * sizeof(*P.active));
            }
            P.active[P.active_cnt++] = e;
            schedule(e, 0);
        }
    }
    size_t keep = 0;
    for (size_t i = 0; i < P.active_cnt; i++) {
        if (P.active[i]->seen == pass)
            P.active[keep++] = P.active[i];
        else
            deactivate(P.active[i]);
    }
    P.active_cnt = keep;
}

void pt_health_stop(void)
{
    for (size_t i = 0; i < P.active_cnt; i++)
        deactivate(P.active[i]);
    free(P.active);
    if (P.dns != NULL)
        evdns_base_free(P.dns, 0);
    memset(&P, 0, sizeof(P));
}

/* ---- metrics and admin -------------------------------------------------------------------- */

static void put_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void pt_health_metrics(FILE *f, const pt_config_t *c)
{
    static const char *const heads[] = {
        "# HELP portico_upstream_endpoint_healthy Active health check verdict per endpoint "
        "(1 up, 0 down).\n# TYPE portico_upstream_endpoint_healthy gauge\n",
        "# HELP portico_upstream_health_checks_total Active health checks run, by result.\n"
        "# TYPE portico_upstream_health_checks_total counter\n",
        "# HELP portico_upstream_health_transitions_total Endpoints going down or up.\n"
        "# TYPE portico_upstream_health_transitions_total counter\n",
    };
    for (int m = 0; m < 3; m++) {
        bool head = false;
        for (size_t i = 0; c != NULL && i < c->cluster_cnt; i++) {
            const pt_cluster_t *cl = &c->clusters[i];
            for (size_t k = 0; cl->health_check != NULL && k < cl->endpoint_cnt; k++) {
                const pt_health_ep_t *e = cl->health_check->eps[k];
                if (!head)
                    fputs(heads[m], f);
                head = true;
                const char *ep = cl->endpoints[k].url;
                if (m == 0)
                    fprintf(f, "portico_upstream_endpoint_healthy{cluster=\"%s\",endpoint=\"%s\"} %d\n",
                            cl->name, ep, ep_up(e) ? 1 : 0);
                else if (m == 1)
                    fprintf(f,
                            "portico_upstream_health_checks_total{cluster=\"%s\",endpoint=\"%s\","
                            "result=\"ok\"} %llu\n"
                            "portico_upstream_health_checks_total{cluster=\"%s\",endpoint=\"%s\","
                            "result=\"failed\"} %llu\n",
                            cl->name, ep, (unsigned long long)(e->checks - e->failures), cl->name,
                            ep, (unsigned long long)e->failures);
                else
                    fprintf(f,
                            "portico_upstream_health_transitions_total{cluster=\"%s\",endpoint=\"%s\"} "
                            "%llu\n",
                            cl->name, ep, (unsigned long long)e->transitions);
            }
        }
    }
}

void pt_health_json(FILE *f, const pt_config_t *c)
{
    fputs("{\"clusters\":[", f);
    for (size_t i = 0; c != NULL && i < c->cluster_cnt; i++) {
        const pt_cluster_t *cl = &c->clusters[i];
        const pt_health_conf_t *h = cl->health_check;
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        put_json_str(f, cl->name);
        if (h != NULL)
            fprintf(f, ",\"health_check\":{\"type\":\"%s\",\"interval_ms\":%llu,\"fail_open\":%s}",
                    h->type == PT_HEALTH_GRPC ? "grpc" : h->type == PT_HEALTH_TCP ? "tcp" : "http",
                    (unsigned long long)h->interval_ms, h->fail_open ? "true" : "false");
        else
            fputs(",\"health_check\":null", f);
        fputs(",\"endpoints\":[", f);
        for (size_t k = 0; k < cl->endpoint_cnt; k++) {
            fputs(k ? ",{\"address\":" : "{\"address\":", f);
            put_json_str(f, cl->endpoints[k].url);
            if (h == NULL) {
                fputs(",\"healthy\":true,\"checked\":false}", f);
                continue;
            }
            const pt_health_ep_t *e = h->eps[k];
            fprintf(f,
                    ",\"healthy\":%s,\"checked\":true,\"checks\":%llu,\"failures\":%llu,"
                    "\"transitions\":%llu,\"consecutive_failures\":%u,\"consecutive_successes\":%u,"
                    "\"changed_at_ms\":%llu,\"last_error\":",
                    ep_up(e) ? "true" : "false", (unsigned long long)e->checks,
                    (unsigned long long)e->failures, (unsigned long long)e->transitions, e->fail_run,
                    e->ok_run, (unsigned long long)e->changed_ms);
            put_json_str(f, e->last_error);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    fputs("]}\n", f);
}
