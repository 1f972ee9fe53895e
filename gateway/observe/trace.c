/*
 * trace.c -- W3C Trace Context, spans, and their export as OTLP/HTTP JSON
 * (see trace.h).
 *
 * Memory and threads: a request's context lives in its arena; a client span
 * in progress is one malloc'd record owned by its call. Finished spans are
 * copied into the worker's ring, a single-producer (the worker) single-
 * consumer (the exporter) queue of fixed-size records: the worker only
 * stores and publishes an index, so recording a span costs a copy, never a
 * lock. The exporter thread (started with the first traced request) takes
 * the registry lock to walk the rings; workers take it only when they add or
 * remove their ring. The exporter looks every 50 ms and sends when the flush
 * interval passed or a ring is a quarter full (workers never signal it: no
 * system call on their side).
 */
#include "observe/trace.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/request.h"
#include "core/route.h"
#include "core/xalloc.h"
#include "net/worker.h"
#include "portico/status.h"
#include "upstream/call.h"

/* ---- configuration ----------------------------------------------------- */

typedef struct trace_raw {
    const char *endpoint, *service_name;
    const pt_conf_node_t *sample;
    uint32_t queue, batch;
    uint64_t flush_ms, timeout_ms;
} trace_raw_t;

static const pt_conf_field_t fields[] = {
    {"otlp_endpoint", PT_CONF_T_STR, offsetof(trace_raw_t, endpoint), 0, 0, true, NULL},
    {"service_name", PT_CONF_T_STR, offsetof(trace_raw_t, service_name), 0, 0, false, NULL},
    {"sample", PT_CONF_T_NODE, offsetof(trace_raw_t, sample), 0, 0, false, NULL},
    {"queue", PT_CONF_T_UINT32, offsetof(trace_raw_t, queue), 16, 1 << 20, false, NULL},
    {"batch", PT_CONF_T_UINT32, offsetof(trace_raw_t, batch), 1, 1 << 16, false, NULL},
    {"flush_interval", PT_CONF_T_DURATION, offsetof(trace_raw_t, flush_ms), 10, 60000, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(trace_raw_t, timeout_ms), 10, 60000, false, NULL},
    PT_CONF_FIELDS_END,
};

int pt_tracing_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_tracing_conf_t *out)
{
    trace_raw_t raw = {.service_name = "portico", .queue = 2048, .batch = 512, .flush_ms = 1000,
                       .timeout_ms = 2000};
    if (pt_conf_parse_fields(cx, node, fields, &raw) != 0)
        return PT_ERR_INVALID;
    const pt_conf_node_t *ep = pt_conf_map_get(node, "otlp_endpoint");
    if (strncmp(raw.endpoint, "http://", 7) != 0 && strncmp(raw.endpoint, "https://", 8) != 0)
        return pt_conf_error(cx, ep, "tracing.otlp_endpoint: expected an http:// or https:// URL, got '%s'",
                             raw.endpoint);
    double sample = 1.0;
    if (raw.sample != NULL) {
        const char *s;
        if (pt_conf_get_str(cx, raw.sample, &s) != 0)
            return PT_ERR_INVALID;
        char *end;
        sample = strtod(s, &end);
        if (end == s || *end != '\0' || !(sample >= 0.0 && sample <= 1.0))
            return pt_conf_error(cx, raw.sample, "tracing.sample: expected a number from 0 to 1, got '%s'", s);
    }
    if (raw.service_name[0] == '\0')
        return pt_conf_error(cx, pt_conf_map_get(node, "service_name"),
                             "tracing.service_name must not be empty");
    *out = (pt_tracing_conf_t){.on = true, .endpoint = raw.endpoint, .sample = sample,
                               .service_name = raw.service_name, .queue = raw.queue,
                               .batch = raw.batch, .flush_ms = raw.flush_ms,
                               .timeout_ms = raw.timeout_ms};
    return 0;
}

/* ---- traceparent ------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool unhex(const char *s, uint8_t *out, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i] != 0;
    }
    return nonzero; /* all-zero ids are invalid */
}

static void tohex(char *out, const uint8_t *v, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[v[i] >> 4];
        out[2 * i + 1] = digits[v[i] & 15];
    }
}

int pt_traceparent_parse(pt_str_t v, uint8_t trace_id[16], uint8_t parent_id[8], bool *sampled)
{
    /* version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55 */
    v = pt_str_trim_ows(v);
    if (v.len < 55)
        return PT_ERR_INVALID;
    const char *s = v.base;
    int hi = hexval(s[0]), lo = hexval(s[1]);
    if (hi < 0 || lo < 0)
        return PT_ERR_INVALID;
    unsigned ver = (unsigned)(hi << 4 | lo);
    /* version ff is invalid; 00 is exactly 55 characters; a later version may
     * append fields after a '-' (read as 00 by its first four fields) */
    if (ver == 0xff || (ver == 0 && v.len != 55) || (ver != 0 && v.len > 55 && s[55] != '-'))
        return PT_ERR_INVALID;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return PT_ERR_INVALID;
    if (!unhex(s + 3, trace_id, 16) || !unhex(s + 36, parent_id, 8))
        return PT_ERR_INVALID;
    if (hexval(s[53]) < 0 || hexval(s[54]) < 0)
        return PT_ERR_INVALID;
    *sampled = (hexval(s[54]) & 1) != 0; /* flags: bit 0 is "sampled" */
    return 0;
}

/* ---- span records and the per-worker rings -------------------------------- */

enum { KIND_SERVER = 2, KIND_CLIENT = 3 };

typedef struct span_rec {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    bool has_parent;
    uint8_t kind;
    bool grpc;
    int http_status;
    int st; /* 0 or the PT_ERR_* that ended it */
    uint64_t start_ns, end_ns; /* unix time */
    char method[16];
    char target[160];   /* path (client spans: as sent upstream; gRPC: /pkg.Service/Method) */
    char route[64];     /* server spans */
    char upstream[64];  /* cluster (client spans) */
    char endpoint[80];  /* endpoint URL (client spans) */
    char request_id[40];
} span_rec_t;

typedef struct ring {
    span_rec_t *v;
    uint32_t cap;
    _Atomic uint64_t head; /* written by the worker */
    _Atomic uint64_t tail; /* written by the exporter */
    struct ring *next;
} ring_t;

/* Process state: the registry of rings and the exporter's settings. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ring_t *rings;
static struct {
    char *endpoint, *service;
    uint32_t batch;
    uint64_t flush_ms, timeout_ms;
} xconf;
static _Atomic uint64_t published_gen; /* config generation whose tracing settings xconf holds (+1) */
static atomic_bool tracing_on;
static _Atomic uint64_t n_exported, n_dropped, n_failed;
static pthread_once_t exporter_once = PTHREAD_ONCE_INIT;

uint64_t pt_trace_spans_exported(void) { return atomic_load(&n_exported); }
uint64_t pt_trace_spans_dropped(void) { return atomic_load(&n_dropped); }
uint64_t pt_trace_export_failures(void) { return atomic_load(&n_failed); }

static void copy_str(char *dst, size_t cap, pt_str_t s)
{
    size_t n = s.base == NULL ? 0 : s.len < cap - 1 ? s.len : cap - 1;
    if (n != 0)
        memcpy(dst, s.base, n);
    dst[n] = '\0';
}

/* The worker's ring, made with its first traced request. */
static ring_t *worker_ring(pt_worker_t *w, uint32_t cap)
{
    ring_t *r = w->trace;
    if (r != NULL || cap == 0)
        return r;
    r = pt_xcalloc(1, sizeof(*r));
    r->v = pt_xcalloc(cap, sizeof(*r->v));
    r->cap = cap;
    pthread_mutex_lock(&reg_mu);
    r->next = rings;
    rings = r;
    pthread_mutex_unlock(&reg_mu);
    w->trace = r;
    return r;
}

/* Worker thread: claims the next slot, or NULL (full: the span is dropped and counted). */
static span_rec_t *ring_slot(ring_t *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail >= r->cap) {
        atomic_fetch_add_explicit(&n_dropped, 1, memory_order_relaxed);
        return NULL;
    }
    return &r->v[head % r->cap];
}

static void ring_publish(ring_t *r)
{
    atomic_store_explicit(&r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + 1,
                          memory_order_release);
}

int pt_trace_worker_init(pt_worker_t *w)
{
    w->trace = NULL; /* made on first use */
    return 0;
}

void pt_trace_worker_dispose(pt_worker_t *w)
{
    ring_t *r = w->trace;
    if (r == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    for (ring_t **p = &rings; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    uint64_t left = atomic_load(&r->head) - atomic_load(&r->tail);
    atomic_fetch_add(&n_dropped, left); /* not exported before the worker went */
    free(r->v);
    free(r);
    w->trace = NULL;
}

/* ---- ids -------------------------------------------------------------- */

static void random_id(uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t x = pt__rand64();
            memcpy(out + i, &x, n - i < 8 ? n - i : 8);
        }
    } while (out[0] == 0 && out[n - 1] == 0 && out[n / 2] == 0); /* never all zero */
}

static uint64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the exporter ------------------------------------------------------- */

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf_t;

static inline void jput(jbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = pt_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jputs(jbuf_t *b, const char *s)
{
    jput(b, s, strlen(s));
}

/* A string literal, without strlen. */
#define JLIT(b, lit) jput((b), (lit), sizeof(lit) - 1)

/* Bytes a JSON string cannot hold as they are: controls, '"', '\\', and (to stay ASCII) 0x7f and up. */
static bool json_plain(unsigned char u)
{
    return u >= 0x20 && u < 0x7f && u != '"' && u != '\\';
}

static void jstr(jbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n * 6 + 3 > b->cap) { /* room for the worst case: no check per byte */
        b->cap = (b->len + n * 6 + 3) * 2;
        b->p = pt_xrealloc(b->p, b->cap);
    }
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char u = (unsigned char)s[i];
        if (json_plain(u)) {
            *o++ = (char)u;
        } else if (u == '"' || u == '\\') {
            *o++ = '\\';
            *o++ = (char)u;
        } else { /* a byte as a code point: the JSON stays valid */
            static const char hex[] = "0123456789abcdef";
            o[0] = '\\';
            o[1] = 'u';
            o[2] = o[3] = '0';
            o[4] = hex[u >> 4];
            o[5] = hex[u & 15];
            o += 6;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

/* Decimal digits of v (no terminator), two at a time; returns how many. */
static size_t u64dec(char *out, unsigned long long v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24];
    size_t n = sizeof(tmp);
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        tmp[--n] = pairs[d + 1];
        tmp[--n] = pairs[d];
    }
    if (v >= 10) {
        tmp[--n] = pairs[v * 2 + 1];
        tmp[--n] = pairs[v * 2];
    } else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(out, tmp + n, sizeof(tmp) - n);
    return sizeof(tmp) - n;
}

static void jnum(jbuf_t *b, unsigned long long v)
{
    char d[24];
    jput(b, d, u64dec(d, v));
}

static void jhex(jbuf_t *b, const uint8_t *v, size_t n)
{
    char h[33];
    tohex(h, v, n);
    h[2 * n] = '\0';
    jput(b, "\"", 1);
    jputs(b, h);
    jput(b, "\"", 1);
}

/* `key` is one of this file's literals: copied as it is; `val` is escaped. */
static void jattr_str(jbuf_t *b, bool *first, const char *key, const char *val)
{
    if (val[0] == '\0')
        return;
    if (*first)
        JLIT(b, "{\"key\":\"");
    else
        JLIT(b, ",{\"key\":\"");
    *first = false;
    jputs(b, key);
    JLIT(b, "\",\"value\":{\"stringValue\":");
    jstr(b, val);
    JLIT(b, "}}");
}

static void jattr_int(jbuf_t *b, bool *first, const char *key, unsigned v)
{
    jputs(b, *first ? "{\"key\":\"" : ",{\"key\":\"");
    *first = false;
    jputs(b, key);
    JLIT(b, "\",\"value\":{\"intValue\":\"");
    jnum(b, v);
    JLIT(b, "\"}}");
}

static void span_json(jbuf_t *b, const span_rec_t *s)
{
    JLIT(b, "{\"traceId\":");
    jhex(b, s->trace_id, 16);
    JLIT(b, ",\"spanId\":");
    jhex(b, s->span_id, 8);
    if (s->has_parent) {
        JLIT(b, ",\"parentSpanId\":");
        jhex(b, s->parent_id, 8);
    }
    /* name: "METHOD route" (server), "pkg.Service/Method" (gRPC client), "METHOD cluster" (client) */
    char name[sizeof(s->method) + sizeof(s->target) + 2];
    const char *second = s->kind == KIND_SERVER ? (s->route[0] != '\0' ? s->route : "(no route)")
                                                : s->upstream;
    if (s->kind == KIND_CLIENT && s->grpc) {
        const char *m = s->target[0] == '/' ? s->target + 1 : s->target;
        memcpy(name, m, strlen(m) + 1); /* target is NUL-terminated within its array */
    } else {
        size_t m = strlen(s->method), k = strlen(second);
        memcpy(name, s->method, m);
        name[m] = ' ';
        memcpy(name + m + 1, second, k + 1);
    }
    JLIT(b, ",\"name\":");
    jstr(b, name);
    jputs(b, s->kind == KIND_SERVER ? ",\"kind\":2" : ",\"kind\":3");
    JLIT(b, ",\"startTimeUnixNano\":\"");
    jnum(b, s->start_ns);
    JLIT(b, "\",\"endTimeUnixNano\":\"");
    jnum(b, s->end_ns);
    JLIT(b, "\"");
    JLIT(b, ",\"attributes\":[");
    bool first = true;
    jattr_str(b, &first, "http.request.method", s->method);
    if (s->kind == KIND_SERVER) {
        jattr_str(b, &first, "url.path", s->target);
        jattr_str(b, &first, "http.route", s->route);
        jattr_str(b, &first, "portico.request_id", s->request_id);
    } else {
        jattr_str(b, &first, "portico.upstream", s->upstream);
        jattr_str(b, &first, "server.address", s->endpoint);
        if (s->grpc) {
            jattr_str(b, &first, "rpc.system", "grpc");
            jattr_str(b, &first, "rpc.method", s->target);
        } else {
            jattr_str(b, &first, "url.path", s->target);
        }
    }
    if (s->http_status > 0)
        jattr_int(b, &first, "http.response.status_code", (unsigned)s->http_status);
    if (s->st != 0)
        jattr_str(b, &first, "error.type", pt_status_name(s->st));
    JLIT(b, "]");
    bool error = s->st != 0 || s->http_status >= 500 || (s->kind == KIND_CLIENT && s->http_status >= 400);
    if (error) {
        JLIT(b, ",\"status\":{\"code\":2,\"message\":");
        jstr(b, s->st != 0 ? pt_strerror(s->st) : "error status");
        JLIT(b, "}");
    }
    JLIT(b, "}");
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Exporter thread: POSTs one batch. */
static void post_batch(CURL *curl, const span_rec_t *v, size_t n, const char *endpoint,
                       const char *service, uint64_t timeout_ms)
{
    jbuf_t b = {pt_xcheck(malloc(n * 1024 + 512)), 0, n * 1024 + 512};
    jputs(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
              "\"value\":{\"stringValue\":");
    jstr(&b, service);
    JLIT(&b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"portico\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        if (i != 0)
            jput(&b, ",", 1);
        span_json(&b, &v[i]);
    }
    JLIT(&b, "]}]}]}");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, b.p);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)b.len);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    long code = 0;
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        atomic_fetch_add(&n_exported, n);
    } else {
        atomic_fetch_add(&n_failed, 1);
        atomic_fetch_add(&n_dropped, n);
    }
    curl_slist_free_all(h);
    free(b.p);
}

/* How often the exporter looks at the rings between flushes (a quarter-full ring is sent at once). */
#define EXPORT_POLL_MS 50

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Under reg_mu: is it time to send (the interval passed, or a ring filled up)? */
static bool export_due(uint64_t last_ms)
{
    uint64_t flush = xconf.flush_ms != 0 ? xconf.flush_ms : 1000;
    if (mono_ms() - last_ms >= flush)
        return true;
    for (ring_t *r = rings; r != NULL; r = r->next)
        if (atomic_load_explicit(&r->head, memory_order_acquire) -
                atomic_load_explicit(&r->tail, memory_order_relaxed) >= r->cap / 4)
            return true;
    return false;
}

static void *exporter_main(void *arg)
{
    (void)arg;
    CURL *curl = curl_easy_init();
    size_t cap = 0;
    span_rec_t *batch = NULL;
    uint64_t last = mono_ms();
    for (;;) {
        struct timespec nap = {0, EXPORT_POLL_MS * 1000000L};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&reg_mu);
        if (!export_due(last)) {
            pthread_mutex_unlock(&reg_mu);
            continue;
        }
        last = mono_ms();
        /* Take what the rings hold (copied out, so the POST runs unlocked). */
        size_t want = xconf.batch != 0 ? xconf.batch : 512;
        if (cap < want) {
            cap = want;
            batch = pt_xrealloc(batch, cap * sizeof(*batch));
        }
        char *endpoint = xconf.endpoint != NULL ? strdup(xconf.endpoint) : NULL;
        char *service = strdup(xconf.service != NULL ? xconf.service : "portico");
        uint64_t timeout_ms = xconf.timeout_ms;
        bool more = true;
        while (more) {
            size_t n = 0;
            more = false;
            for (ring_t *r = rings; r != NULL && n < want; r = r->next) {
                uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
                uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
                while (tail < head && n < want)
                    batch[n++] = r->v[tail++ % r->cap];
                atomic_store_explicit(&r->tail, tail, memory_order_release);
                more |= tail < head;
            }
            if (n == 0)
                break;
            pthread_mutex_unlock(&reg_mu);
            if (endpoint != NULL && curl != NULL && service != NULL)
                post_batch(curl, batch, n, endpoint, service, timeout_ms);
            else
                atomic_fetch_add(&n_dropped, n);
            pthread_mutex_lock(&reg_mu);
            more |= n == want;
        }
        pthread_mutex_unlock(&reg_mu);
        free(endpoint);
        free(service);
    }
    return NULL;
}

static void exporter_start(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, exporter_main, NULL) != 0)
        fputs("portico: tracing: could not start the span exporter thread\n", stderr);
    pthread_attr_destroy(&a);
}

/* Hands a newer snapshot's tracing settings to the exporter (once per generation). */
static void publish(const pt_config_t *c)
{
    uint64_t gen = c->generation + 1;
    if (atomic_load_explicit(&published_gen, memory_order_acquire) >= gen)
        return;
    const pt_tracing_conf_t *t = &c->tracing;
    pthread_mutex_lock(&reg_mu);
    if (atomic_load(&published_gen) < gen) {
        free(xconf.endpoint);
        free(xconf.service);
        xconf.endpoint = t->on ? strdup(t->endpoint) : NULL;
        xconf.service = t->on ? strdup(t->service_name) : NULL;
        xconf.batch = t->batch;
        xconf.flush_ms = t->flush_ms;
        xconf.timeout_ms = t->timeout_ms;
        atomic_store(&tracing_on, t->on);
        atomic_store(&published_gen, gen);
    }
    pthread_mutex_unlock(&reg_mu);
    if (t->on)
        pthread_once(&exporter_once, exporter_start);
}

/* ---- requests ----------------------------------------------------------- */

void pt_trace_request_start(pt_req_t *req)
{
    const pt_tracing_conf_t *conf = &req->config->tracing;
    if (!conf->on) {
        if (atomic_load_explicit(&tracing_on, memory_order_relaxed))
            publish(req->config); /* tracing was turned off by a reload */
        return;
    }
    publish(req->config);
    pt_trace_t *t = pt_arena_alloc(req->arena, sizeof(*t));
    if (t == NULL)
        return;
    static const pt_str_t tp = {"traceparent", 11}, ts = {"tracestate", 10};
    pt_str_t in = pt_headers_get(&req->headers, tp);
    if (in.base != NULL && pt_headers_count(&req->headers, tp) == 1 &&
        pt_traceparent_parse(in, t->trace_id, t->parent_id, &t->sampled) == 0) {
        t->has_parent = true; /* continued: the client's sampling decision holds */
    } else {
        /* absent or malformed: a new trace (and a tracestate without its traceparent is dropped) */
        t->has_parent = false;
        random_id(t->trace_id, 16);
        uint64_t r;
        memcpy(&r, t->trace_id + 8, 8);
        t->sampled = conf->sample >= 1.0 || (double)(r >> 11) < conf->sample * (double)(1ull << 53);
        if (in.base != NULL)
            pt_headers_remove(&req->headers, ts);
    }
    random_id(t->span_id, 8);
    tohex(t->trace_hex, t->trace_id, 16);
    t->trace_hex[32] = '\0';
    char *v = pt_arena_alloc(req->arena, 56);
    if (v == NULL)
        return;
    memcpy(v, "00-", 3);
    memcpy(v + 3, t->trace_hex, 32);
    v[35] = '-';
    tohex(v + 36, t->span_id, 8);
    v[52] = '-';
    v[53] = '0';
    v[54] = t->sampled ? '1' : '0';
    v[55] = '\0';
    pt_headers_remove(&req->headers, tp);
    pt_headers_add_nocopy(&req->headers, tp, (pt_str_t){v, 55});
    req->trace = t;
    if (t->sampled)
        worker_ring(req->worker, conf->queue);
}

void pt_trace_request_end(pt_req_t *req, uint64_t now_ns)
{
    const pt_trace_t *t = req->trace;
    if (t == NULL || !t->sampled || req->worker == NULL || req->worker->trace == NULL)
        return;
    ring_t *r = req->worker->trace;
    span_rec_t *s = ring_slot(r);
    if (s == NULL)
        return;
    memcpy(s->trace_id, t->trace_id, 16);
    memcpy(s->span_id, t->span_id, 8);
    memcpy(s->parent_id, t->parent_id, 8);
    s->has_parent = t->has_parent;
    s->kind = KIND_SERVER;
    s->grpc = false;
    s->http_status = req->resp_status;
    s->st = req->fail_status != PT_ERR_CANCELED ? req->fail_status : 0;
    s->start_ns = (uint64_t)req->start_wall_us * 1000u;
    s->end_ns = s->start_ns + (now_ns > req->start_ns ? now_ns - req->start_ns : 0);
    copy_str(s->method, sizeof(s->method), req->method);
    copy_str(s->target, sizeof(s->target), req->path);
    copy_str(s->route, sizeof(s->route),
             pt_str_c(req->route.route != NULL ? req->route.route->name : NULL));
    s->upstream[0] = s->endpoint[0] = '\0';
    copy_str(s->request_id, sizeof(s->request_id), req->request_id);
    ring_publish(r);
}

/* ---- upstream calls ----------------------------------------------------- */

struct pt_trace_call {
    span_rec_t rec;
};

pt_trace_call_t *pt_trace_call_begin(pt_worker_t *w, const pt_upcall_req_t *r)
{
    if (w == NULL || w->trace == NULL || r->headers == NULL ||
        !atomic_load_explicit(&tracing_on, memory_order_relaxed))
        return NULL;
    pt_str_t tp = pt_headers_get(r->headers, PT_STR("traceparent"));
    uint8_t trace_id[16], parent[8];
    bool sampled;
    if (tp.base == NULL || pt_traceparent_parse(tp, trace_id, parent, &sampled) != 0 || !sampled)
        return NULL;
    pt_trace_call_t *tc = pt_xcalloc(1, sizeof(*tc));
    span_rec_t *s = &tc->rec;
    memcpy(s->trace_id, trace_id, 16);
    memcpy(s->parent_id, parent, 8);
    s->has_parent = true;
    random_id(s->span_id, 8);
    s->kind = KIND_CLIENT;
    s->grpc = r->cluster->protocol == PT_PROTO_GRPC;
    s->start_ns = unix_ns();
    copy_str(s->method, sizeof(s->method), r->method);
    pt_str_t path = r->path;
    const char *q = path.base != NULL ? memchr(path.base, '?', path.len) : NULL;
    if (q != NULL)
        path.len = (size_t)(q - path.base); /* the query may hold secrets: not exported */
    copy_str(s->target, sizeof(s->target), path);
    copy_str(s->upstream, sizeof(s->upstream), pt_str_c(r->cluster->name));
    return tc;
}

void pt_trace_call_status(pt_trace_call_t *tc, int http_status)
{
    if (tc != NULL)
        tc->rec.http_status = http_status;
}

void pt_trace_call_end(pt_worker_t *w, pt_trace_call_t *tc, int st, const char *endpoint)
{
    if (tc == NULL)
        return;
    ring_t *r = w != NULL ? w->trace : NULL;
    span_rec_t *s = r != NULL ? ring_slot(r) : NULL;
    if (s != NULL) {
        *s = tc->rec;
        s->st = st;
        s->end_ns = unix_ns();
        copy_str(s->endpoint, sizeof(s->endpoint), pt_str_c(endpoint));
        ring_publish(r);
    }
    free(tc);
}
