/*
 * trace.c -- W3C Trace Context, spans, and their export as OTLP/HTTP
 * protobuf or JSON (see trace.h).
 *
 * Memory and threads: a request's context lives in its arena; a client span
 * in progress is a record from the worker's free list, owned by its call.
 * Finished spans are copied into the worker's ring, a single-producer (the
 * worker) single-consumer (the exporter) queue of fixed-size records: the
 * worker only stores and publishes an index, so recording a span costs a
 * copy, never a lock. Ids come from the worker's xorshift128+ (seeded from
 * getrandom). The exporter thread (started with the first traced request)
 * takes the registry lock to walk the rings and encodes straight from them
 * (no copy); workers take the lock only when they add or remove their ring.
 * The exporter looks every 50 ms and sends when the flush interval passed or
 * a ring is a quarter full (workers never signal it on the request path: no
 * system call on their side); a worker that is going wakes it and waits for
 * its ring to be drained (bounded).
 */
#include "observe/trace.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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
    const char *endpoint, *service_name, *protocol;
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
    {"protocol", PT_CONF_T_STR, offsetof(trace_raw_t, protocol), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

int pt_tracing_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_tracing_conf_t *out)
{
    trace_raw_t raw = {.service_name = "portico", .protocol = "protobuf", .queue = 2048, .batch = 512, .flush_ms = 1000,
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
    if (strcmp(raw.protocol, "protobuf") != 0 && strcmp(raw.protocol, "json") != 0)
        return pt_conf_error(cx, pt_conf_map_get(node, "protocol"),
                             "tracing.protocol: expected protobuf or json, got '%s'", raw.protocol);
    *out = (pt_tracing_conf_t){.on = true, .endpoint = raw.endpoint, .sample = sample,
                               .service_name = raw.service_name, .queue = raw.queue,
                               .batch = raw.batch, .flush_ms = raw.flush_ms,
                               .timeout_ms = raw.timeout_ms,
                               .json = strcmp(raw.protocol, "json") == 0};
    return 0;
}

/* ---- traceparent ------------------------------------------------------- */

/* Lowercase hex digit values plus one (0: not a lowercase hex digit). */
static const uint8_t hex1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

static int hexval(char c)
{
    return (int)hex1[(unsigned char)c] - 1;
}

static bool unhex(const char *s, uint8_t *out, size_t n)
{
    unsigned bad = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hex1[(unsigned char)s[2 * i]], lo = hex1[(unsigned char)s[2 * i + 1]];
        bad |= (hi - 1) | (lo - 1); /* 0 - 1 sets the high bits */
        out[i] = (uint8_t)((hi - 1) << 4 | ((lo - 1) & 15));
        any |= out[i];
    }
    return (bad & ~15u) == 0 && any != 0; /* all-zero ids are invalid */
}

/* The two lowercase hex digits of every byte value. */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static inline void tohex(char *out, const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * v[i], 2);
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

enum { KIND_SKIP = 0, KIND_SERVER = 2, KIND_CLIENT = 3 };
enum { REC_PARENT = 1, REC_GRPC = 2 };

/* A span's strings, in the order a record stores them. */
enum { F_METHOD, F_TARGET, F_ROUTE, F_UPSTREAM, F_ENDPOINT, F_RID, F_CNT };
/* The longest each may be (longer ones are cut): method; path (client spans: as sent upstream, no
 * query; gRPC: /pkg.Service/Method); route (server spans); cluster, endpoint URL (client spans);
 * request id (server spans). */
static const uint8_t f_max[F_CNT] = {16, 255, 64, 64, 96, 64};

/*
 * A finished span in a worker's ring: this fixed head, then its strings'
 * bytes one after the other (no terminators), the whole padded to 8 bytes.
 * Records are as long as what they hold (~100-200 bytes): fewer cache lines
 * for the worker to write and the exporter to read than fixed-size slots.
 */
typedef struct span_hdr {
    uint32_t size; /* the record's bytes, head included (a KIND_SKIP record: the ring's end) */
    uint8_t kind, flags;
    uint16_t http_status;
    int32_t st;    /* 0 or the PT_ERR_* that ended it */
    uint8_t n[F_CNT];
    uint8_t trace_id[16], span_id[8], parent_id[8];
    uint64_t start_ns, end_ns; /* unix time */
} span_hdr_t;

#define REC_MAX (sizeof(span_hdr_t) + 16 + 255 + 64 + 64 + 96 + 64 + 8)

/* The exporter's view of a record. */
typedef struct span_view {
    const span_hdr_t *h;
    const char *f[F_CNT];
} span_view_t;

/* memcpy for the short strings of a span, inline (two overlapping moves up to 16 bytes). */
static inline void cpy(char *d, const char *s, size_t n)
{
    if (n == 0 || s == NULL)
        return;
    // cppcheck-suppress pointerOutOfBoundsCond ; one past the end of the source, never read
    const char *end = s + n;
    char *dend = d + n;
    if (n >= 8) {
        if (n > 32) {
            memcpy(d, s, n);
        } else if (n >= 16) {
            char a[16], b[16];
            memcpy(a, s, 16);
            memcpy(b, end - 16, 16);
            memcpy(d, a, 16);
            memcpy(dend - 16, b, 16);
        } else {
            uint64_t a, b;
            memcpy(&a, s, 8);
            memcpy(&b, end - 8, 8);
            memcpy(d, &a, 8);
            memcpy(dend - 8, &b, 8);
        }
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, end - 4, 4);
        memcpy(d, &a, 4);
        memcpy(dend - 4, &b, 4);
    } else {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

/* A client span in progress: its head and its strings (the endpoint comes at its end). */
struct pt_trace_call {
    span_hdr_t h;
    char method[16], target[255], upstream[64];
    struct pt_trace_call *next; /* the worker's free list */
    _Alignas(max_align_t) unsigned char user[PT_TRACE_CALL_USER];
};

static inline size_t cut(size_t len, unsigned f)
{
    return len < f_max[f] ? len : f_max[f];
}

/* Free client-span records a worker keeps (more are freed). */
#define CALL_FREE_MAX 256

/* Bytes of ring per span of `queue:` (records average well under this). */
#define RING_BYTES_PER_SPAN 256

typedef struct ring {
    char *buf;
    uint64_t cap;          /* bytes, a multiple of 8 */
    _Atomic uint64_t head; /* bytes written, by the worker */
    _Atomic uint64_t tail; /* bytes read, by the exporter */
    struct ring *next;
    pt_trace_call_t *free_calls; /* worker only */
    unsigned free_cnt;
} ring_t;

/* Process state: the registry of rings and the exporter's settings. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t x_wake;   /* exporter: flush now (a worker is going) */
static pthread_cond_t x_done;   /* workers: the exporter finished a round */
static bool x_flush_now;        /* under reg_mu */
static uint64_t x_rounds;       /* under reg_mu: export rounds finished */
static ring_t *rings;
static struct {
    char *endpoint, *service;
    uint32_t batch;
    uint64_t flush_ms, timeout_ms;
    bool json;
} xconf;
static _Atomic uint64_t published_gen; /* config generation whose tracing settings xconf holds (+1) */
static atomic_bool tracing_on, exporter_up;
static _Atomic uint64_t n_exported, n_dropped, n_failed;
static pthread_once_t exporter_once = PTHREAD_ONCE_INIT;

uint64_t pt_trace_spans_exported(void) { return atomic_load(&n_exported); }
uint64_t pt_trace_spans_dropped(void) { return atomic_load(&n_dropped); }
uint64_t pt_trace_export_failures(void) { return atomic_load(&n_failed); }

/* The worker's ring, made with its first traced request. */
static ring_t *worker_ring(pt_worker_t *w, uint32_t spans)
{
    ring_t *r = w->trace;
    if (r != NULL || spans == 0)
        return r;
    r = pt_xcalloc(1, sizeof(*r));
    r->cap = (uint64_t)spans * RING_BYTES_PER_SPAN;
    if (r->cap < 4 * REC_MAX)
        r->cap = (4 * REC_MAX + 7) & ~(uint64_t)7;
    r->buf = pt_xcheck(aligned_alloc(8, r->cap));
    pthread_mutex_lock(&reg_mu);
    r->next = rings;
    rings = r;
    pthread_mutex_unlock(&reg_mu);
    w->trace = r;
    return r;
}

/*
 * Worker thread: appends one record (head h, strings f[] cut to their maxima)
 * and publishes it; a full ring drops it and counts it. A record never wraps:
 * when it does not fit before the ring's end, a KIND_SKIP record fills the
 * rest and it goes at the start.
 */
static void ring_put(ring_t *r, span_hdr_t *h, const pt_str_t f[F_CNT])
{
    size_t size = sizeof(*h);
    for (unsigned i = 0; i < F_CNT; i++) {
        h->n[i] = (uint8_t)cut(f[i].len, i);
        size += h->n[i];
    }
    size = (size + 7) & ~(size_t)7;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t pos = head % r->cap, skip = pos + size > r->cap ? r->cap - pos : 0;
    if (head + skip + size - tail > r->cap) {
        atomic_fetch_add_explicit(&n_dropped, 1, memory_order_relaxed);
        return;
    }
    if (skip != 0) {
        span_hdr_t *k = (span_hdr_t *)(void *)(r->buf + pos);
        k->size = (uint32_t)skip;
        k->kind = KIND_SKIP;
        pos = 0;
    }
    h->size = (uint32_t)size;
    char *o = r->buf + pos;
    memcpy(o, h, sizeof(*h));
    o += sizeof(*h);
    for (unsigned i = 0; i < F_CNT; i++) {
        cpy(o, f[i].base, h->n[i]);
        o += h->n[i];
    }
    atomic_store_explicit(&r->head, head + skip + size, memory_order_release);
}

int pt_trace_worker_init(pt_worker_t *w)
{
    w->trace = NULL; /* made on first use */
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Going away: the spans still queued are sent first (the exporter is woken and
 * the worker waits for it, at most the export timeout plus a little), then the
 * ring leaves the registry; what is left is counted as dropped. */
void pt_trace_worker_dispose(pt_worker_t *w)
{
    ring_t *r = w->trace;
    if (r == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    if (atomic_load(&exporter_up) && xconf.endpoint != NULL) {
        uint64_t bound = xconf.timeout_ms + 500 < 10000 ? xconf.timeout_ms + 500 : 10000;
        uint64_t end = mono_ms() + bound;
        struct timespec until;
        deadline_in(&until, bound);
        while (atomic_load(&r->head) != atomic_load(&r->tail) && mono_ms() < end) {
            x_flush_now = true;
            pthread_cond_signal(&x_wake);
            uint64_t round = x_rounds;
            while (x_rounds == round && mono_ms() < end)
                if (pthread_cond_timedwait(&x_done, &reg_mu, &until) != 0)
                    break;
        }
    }
    for (ring_t **p = &rings; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    for (uint64_t t = atomic_load(&r->tail), h = atomic_load(&r->head); t < h;) {
        const span_hdr_t *k = (const span_hdr_t *)(const void *)(r->buf + t % r->cap);
        if (k->kind != KIND_SKIP)
            atomic_fetch_add(&n_dropped, 1); /* not exported before the worker went */
        t += k->size;
    }
    while (r->free_calls != NULL) {
        pt_trace_call_t *c = r->free_calls;
        r->free_calls = c->next;
        free(c);
    }
    free(r->buf);
    free(r);
    w->trace = NULL;
}

/* ---- ids -------------------------------------------------------------- */

/* pt__rand64: xorshift128+ per thread, seeded from getrandom (core/request.c). */
static void new_span_id(uint8_t out[8])
{
    uint64_t x;
    do
        x = pt__rand64();
    while (x == 0); /* never all zero */
    memcpy(out, &x, 8);
}

static void new_trace_id(uint8_t out[16])
{
    uint64_t x[2];
    do {
        x[0] = pt__rand64();
        x[1] = pt__rand64();
    } while ((x[0] | x[1]) == 0);
    memcpy(out, x, 16);
}

static uint64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- encoding: shared --------------------------------------------------- */

typedef struct obuf {
    char *p;
    size_t len, cap;
} obuf_t;

static void ob_room(obuf_t *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = pt_xrealloc(b->p, b->cap);
    }
}

static inline void oput(obuf_t *b, const void *s, size_t n)
{
    ob_room(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A string literal, without strlen. */
#define OLIT(b, lit) oput((b), (lit), sizeof(lit) - 1)

/* The span's name: "METHOD route" (server), "pkg.Service/Method" (gRPC client), "METHOD cluster"
 * (client). Returns its length in out (room: method + 1 + the longest second part). */
static size_t span_name(const span_view_t *v, char *out)
{
    const span_hdr_t *s = v->h;
    if (s->kind == KIND_CLIENT && (s->flags & REC_GRPC)) {
        size_t skip = s->n[F_TARGET] != 0 && v->f[F_TARGET][0] == '/';
        memcpy(out, v->f[F_TARGET] + skip, s->n[F_TARGET] - skip);
        return s->n[F_TARGET] - skip;
    }
    const char *second = s->kind == KIND_SERVER ? v->f[F_ROUTE] : v->f[F_UPSTREAM];
    size_t k = s->kind == KIND_SERVER ? s->n[F_ROUTE] : s->n[F_UPSTREAM];
    if (s->kind == KIND_SERVER && k == 0) {
        second = "(no route)";
        k = 10;
    }
    cpy(out, v->f[F_METHOD], s->n[F_METHOD]);
    out[s->n[F_METHOD]] = ' ';
    cpy(out + s->n[F_METHOD] + 1, second, k);
    return s->n[F_METHOD] + 1 + k;
}
#define NAME_MAX_LEN (16 + 1 + 255)

static bool span_error(const span_hdr_t *s)
{
    return s->st != 0 || s->http_status >= 500 || (s->kind == KIND_CLIENT && s->http_status >= 400);
}

/* ---- encoding: OTLP/HTTP protobuf ------------------------------------------ */

/*
 * ExportTraceServiceRequest, written by hand from the OTLP wire format:
 *   request:        1 resource_spans (ResourceSpans)
 *   ResourceSpans:  1 resource (Resource), 2 scope_spans (ScopeSpans)
 *   Resource:       1 attributes (KeyValue)
 *   ScopeSpans:     1 scope (InstrumentationScope: 1 name), 2 spans (Span)
 *   Span:           1 trace_id, 2 span_id, 4 parent_span_id (bytes), 5 name,
 *                   6 kind (enum), 7 start_time_unix_nano, 8 end_time_unix_nano
 *                   (fixed64), 9 attributes (KeyValue), 15 status (Status)
 *   KeyValue:       1 key, 2 value (AnyValue: 1 string_value, 3 int_value)
 *   Status:         2 message, 3 code (enum: 2 = error)
 * Spans are encoded one after the other into the buffer; the envelope (whose
 * lengths depend on them) is written last into room kept in front.
 */

#define TAG(field, wire) ((uint8_t)((field) << 3 | (wire)))
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline char *pb_varint(char *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (char)v;
    return o;
}

static inline char *pb_bytes(char *o, uint8_t tag, const void *p, size_t n)
{
    *o++ = (char)tag;
    o = pb_varint(o, n);
    cpy(o, p, n);
    return o + n;
}

static inline char *pb_fixed64(char *o, uint8_t tag, uint64_t v)
{
    *o++ = (char)tag;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(o, &v, 8);
    return o + 8;
#else
    for (int i = 0; i < 8; i++)
        *o++ = (char)(v >> (8 * i));
    return o;
#endif
}

/* Span.attributes: KeyValue{key, AnyValue{string_value}}; nothing for an empty value. */
static inline __attribute__((always_inline)) char *pb_attr_str(char *o, const char *key, size_t kn, const char *v, size_t vn)
{
    if (vn == 0)
        return o;
    size_t any = 1 + varint_len(vn) + vn;
    size_t kv = 1 + varint_len(kn) + kn + 1 + varint_len(any) + any;
    *o++ = (char)TAG(9, WT_LEN);
    o = pb_varint(o, kv);
    o = pb_bytes(o, TAG(1, WT_LEN), key, kn);
    *o++ = (char)TAG(2, WT_LEN);
    o = pb_varint(o, any);
    return pb_bytes(o, TAG(1, WT_LEN), v, vn);
}
#define PB_ATTR(o, key, v, vn) pb_attr_str((o), (key), sizeof(key) - 1, (v), (vn))

static char *pb_attr_int(char *o, const char *key, size_t kn, uint64_t v)
{
    size_t any = 1 + varint_len(v);
    size_t kv = 1 + varint_len(kn) + kn + 1 + varint_len(any) + any;
    *o++ = (char)TAG(9, WT_LEN);
    o = pb_varint(o, kv);
    o = pb_bytes(o, TAG(1, WT_LEN), key, kn);
    *o++ = (char)TAG(2, WT_LEN);
    o = pb_varint(o, any);
    *o++ = (char)TAG(3, WT_VARINT);
    return pb_varint(o, v);
}

/* Room one encoded span can take at most (every string at its field's size, plus tags). */
#define PB_SPAN_MAX 1536

/* Appends ScopeSpans.spans (field 2) for s. */
static void pb_span(obuf_t *b, const span_view_t *v)
{
    const span_hdr_t *s = v->h;
    ob_room(b, PB_SPAN_MAX + 4);
    char *start = b->p + b->len;
    char *o = start + 3; /* tag and a two-byte length, moved if the length needs another size */
    o = pb_bytes(o, TAG(1, WT_LEN), s->trace_id, 16);
    o = pb_bytes(o, TAG(2, WT_LEN), s->span_id, 8);
    if (s->flags & REC_PARENT)
        o = pb_bytes(o, TAG(4, WT_LEN), s->parent_id, 8);
    char name[NAME_MAX_LEN] = "";
    o = pb_bytes(o, TAG(5, WT_LEN), name, span_name(v, name));
    *o++ = (char)TAG(6, WT_VARINT);
    *o++ = (char)s->kind;
    o = pb_fixed64(o, TAG(7, WT_I64), s->start_ns);
    o = pb_fixed64(o, TAG(8, WT_I64), s->end_ns);
    o = PB_ATTR(o, "http.request.method", v->f[F_METHOD], s->n[F_METHOD]);
    if (s->kind == KIND_SERVER) {
        o = PB_ATTR(o, "url.path", v->f[F_TARGET], s->n[F_TARGET]);
        o = PB_ATTR(o, "http.route", v->f[F_ROUTE], s->n[F_ROUTE]);
        o = PB_ATTR(o, "portico.request_id", v->f[F_RID], s->n[F_RID]);
    } else {
        o = PB_ATTR(o, "portico.upstream", v->f[F_UPSTREAM], s->n[F_UPSTREAM]);
        o = PB_ATTR(o, "server.address", v->f[F_ENDPOINT], s->n[F_ENDPOINT]);
        if (s->flags & REC_GRPC) {
            o = PB_ATTR(o, "rpc.system", "grpc", 4);
            o = PB_ATTR(o, "rpc.method", v->f[F_TARGET], s->n[F_TARGET]);
        } else {
            o = PB_ATTR(o, "url.path", v->f[F_TARGET], s->n[F_TARGET]);
        }
    }
    if (s->http_status > 0)
        o = pb_attr_int(o, "http.response.status_code", 25, s->http_status);
    if (s->st != 0) {
        const char *e = pt_status_name(s->st);
        o = pb_attr_str(o, "error.type", 10, e, strlen(e));
    }
    if (span_error(s)) {
        const char *m = s->st != 0 ? pt_strerror(s->st) : "error status";
        size_t mn = strlen(m), st = 1 + varint_len(mn) + mn + 2;
        *o++ = (char)TAG(15, WT_LEN);
        o = pb_varint(o, st);
        o = pb_bytes(o, TAG(2, WT_LEN), m, mn);
        *o++ = (char)TAG(3, WT_VARINT);
        *o++ = 2; /* STATUS_CODE_ERROR */
    }
    size_t body = (size_t)(o - (start + 3));
    size_t hl = 1 + varint_len(body);
    if (hl != 3)
        memmove(start + hl, start + 3, body);
    start[0] = (char)TAG(2, WT_LEN);
    pb_varint(start + 1, body);
    b->len += hl + body;
}

/* Room kept in front of the spans for the envelope (plus the service name's length). */
#define PB_HEAD_ROOM 64

static void pb_begin(obuf_t *b, const char *service)
{
    b->len = PB_HEAD_ROOM + strlen(service);
    ob_room(b, 0);
}

/* Writes the envelope in front of the spans; returns where the message starts. */
static const char *pb_end(obuf_t *b, const char *service, size_t *len)
{
    static const char scope_name[] = "portico";
    size_t svc = strlen(service), spans = b->len - (PB_HEAD_ROOM + svc);
    /* Resource{attributes: KeyValue{"service.name", AnyValue{string_value}}} */
    size_t any = 1 + varint_len(svc) + svc;
    size_t kv = 1 + 1 + 12 + 1 + varint_len(any) + any;
    size_t res = 1 + varint_len(kv) + kv;
    size_t scope = 1 + 1 + sizeof(scope_name) - 1;
    size_t ss = 1 + varint_len(scope) + scope + spans;
    size_t rs = 1 + varint_len(res) + res + 1 + varint_len(ss) + ss - spans;
    size_t total_head = 1 + varint_len(rs + spans) + rs;
    char *start = b->p + PB_HEAD_ROOM + svc - total_head, *o = start;
    *o++ = (char)TAG(1, WT_LEN); /* ExportTraceServiceRequest.resource_spans */
    o = pb_varint(o, rs + spans);
    *o++ = (char)TAG(1, WT_LEN); /* ResourceSpans.resource */
    o = pb_varint(o, res);
    *o++ = (char)TAG(1, WT_LEN); /* Resource.attributes */
    o = pb_varint(o, kv);
    o = pb_bytes(o, TAG(1, WT_LEN), "service.name", 12);
    *o++ = (char)TAG(2, WT_LEN);
    o = pb_varint(o, any);
    o = pb_bytes(o, TAG(1, WT_LEN), service, svc);
    *o++ = (char)TAG(2, WT_LEN); /* ResourceSpans.scope_spans */
    o = pb_varint(o, ss);
    *o++ = (char)TAG(1, WT_LEN); /* ScopeSpans.scope */
    o = pb_varint(o, scope);
    o = pb_bytes(o, TAG(1, WT_LEN), scope_name, sizeof(scope_name) - 1);
    (void)o; /* the spans follow */
    *len = total_head + spans;
    return start;
}

/* ---- encoding: OTLP/HTTP JSON ------------------------------------------- */

/* Bytes a JSON string cannot hold as they are: controls, '"', '\\', and (to stay ASCII) 0x7f and up. */
static bool json_plain(unsigned char u)
{
    return u >= 0x20 && u < 0x7f && u != '"' && u != '\\';
}

static void jstr(obuf_t *b, const char *s, size_t n)
{
    ob_room(b, n * 6 + 2); /* room for the worst case: no check per byte */
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

static void jnum(obuf_t *b, unsigned long long v)
{
    char d[24];
    oput(b, d, u64dec(d, v));
}

static void jhex(obuf_t *b, const uint8_t *v, size_t n)
{
    char h[34];
    h[0] = '"';
    tohex(h + 1, v, n);
    h[2 * n + 1] = '"';
    oput(b, h, 2 * n + 2);
}

/* `key` is one of this file's literals: copied as it is; `val` is escaped. */
static void jattr_str(obuf_t *b, bool *first, const char *key, const char *val, size_t n)
{
    if (n == 0)
        return;
    if (*first)
        OLIT(b, "{\"key\":\"");
    else
        OLIT(b, ",{\"key\":\"");
    *first = false;
    oput(b, key, strlen(key));
    OLIT(b, "\",\"value\":{\"stringValue\":");
    jstr(b, val, n);
    OLIT(b, "}}");
}

static void jattr_int(obuf_t *b, bool *first, const char *key, unsigned v)
{
    if (*first)
        OLIT(b, "{\"key\":\"");
    else
        OLIT(b, ",{\"key\":\"");
    *first = false;
    oput(b, key, strlen(key));
    OLIT(b, "\",\"value\":{\"intValue\":\"");
    jnum(b, v);
    OLIT(b, "\"}}");
}

static void json_span(obuf_t *b, const span_view_t *v, bool first_span)
{
    const span_hdr_t *s = v->h;
    if (!first_span)
        OLIT(b, ",");
    OLIT(b, "{\"traceId\":");
    jhex(b, s->trace_id, 16);
    OLIT(b, ",\"spanId\":");
    jhex(b, s->span_id, 8);
    if (s->flags & REC_PARENT) {
        OLIT(b, ",\"parentSpanId\":");
        jhex(b, s->parent_id, 8);
    }
    char name[NAME_MAX_LEN] = "";
    OLIT(b, ",\"name\":");
    jstr(b, name, span_name(v, name));
    if (s->kind == KIND_SERVER)
        OLIT(b, ",\"kind\":2");
    else
        OLIT(b, ",\"kind\":3");
    OLIT(b, ",\"startTimeUnixNano\":\"");
    jnum(b, s->start_ns);
    OLIT(b, "\",\"endTimeUnixNano\":\"");
    jnum(b, s->end_ns);
    OLIT(b, "\",\"attributes\":[");
    bool first = true;
    jattr_str(b, &first, "http.request.method", v->f[F_METHOD], s->n[F_METHOD]);
    if (s->kind == KIND_SERVER) {
        jattr_str(b, &first, "url.path", v->f[F_TARGET], s->n[F_TARGET]);
        jattr_str(b, &first, "http.route", v->f[F_ROUTE], s->n[F_ROUTE]);
        jattr_str(b, &first, "portico.request_id", v->f[F_RID], s->n[F_RID]);
    } else {
        jattr_str(b, &first, "portico.upstream", v->f[F_UPSTREAM], s->n[F_UPSTREAM]);
        jattr_str(b, &first, "server.address", v->f[F_ENDPOINT], s->n[F_ENDPOINT]);
        if (s->flags & REC_GRPC) {
            jattr_str(b, &first, "rpc.system", "grpc", 4);
            jattr_str(b, &first, "rpc.method", v->f[F_TARGET], s->n[F_TARGET]);
        } else {
            jattr_str(b, &first, "url.path", v->f[F_TARGET], s->n[F_TARGET]);
        }
    }
    if (s->http_status > 0)
        jattr_int(b, &first, "http.response.status_code", s->http_status);
    if (s->st != 0) {
        const char *e = pt_status_name(s->st);
        jattr_str(b, &first, "error.type", e, strlen(e));
    }
    OLIT(b, "]");
    if (span_error(s)) {
        const char *m = s->st != 0 ? pt_strerror(s->st) : "error status";
        OLIT(b, ",\"status\":{\"code\":2,\"message\":");
        jstr(b, m, strlen(m));
        OLIT(b, "}");
    }
    OLIT(b, "}");
}

static void json_begin(obuf_t *b, const char *service)
{
    b->len = 0;
    OLIT(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
            "\"value\":{\"stringValue\":");
    jstr(b, service, strlen(service));
    OLIT(b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"portico\"},\"spans\":[");
}

static const char *json_end(obuf_t *b, size_t *len)
{
    OLIT(b, "]}]}]}");
    *len = b->len;
    return b->p;
}

/* ---- the exporter ------------------------------------------------------- */

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Exporter thread: POSTs one encoded batch of n spans. */
static void post_batch(CURL *curl, const char *body, size_t len, size_t n, const char *endpoint, bool json,
                       uint64_t timeout_ms)
{
    struct curl_slist *h = curl_slist_append(
        NULL, json ? "Content-Type: application/json" : "Content-Type: application/x-protobuf");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    long code = 0;
    CURLcode rc = h != NULL ? curl_easy_perform(curl) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        atomic_fetch_add(&n_exported, n);
    } else {
        atomic_fetch_add(&n_failed, 1);
        atomic_fetch_add(&n_dropped, n);
    }
    curl_slist_free_all(h);
}

/* How often the exporter looks at the rings between flushes (a quarter-full ring is sent at once). */
#define EXPORT_POLL_MS 50

/* Under reg_mu: is it time to send (the interval passed, a ring filled up, a worker is going)? */
static bool export_due(uint64_t last_ms)
{
    uint64_t flush = xconf.flush_ms != 0 ? xconf.flush_ms : 1000;
    if (x_flush_now || mono_ms() - last_ms >= flush)
        return true;
    for (ring_t *r = rings; r != NULL; r = r->next)
        if (atomic_load_explicit(&r->head, memory_order_acquire) -
                atomic_load_explicit(&r->tail, memory_order_relaxed) >= r->cap / 4)
            return true;
    return false;
}

/* Under reg_mu: encodes up to `want` queued spans (straight from the rings) into b; returns how
 * many, and whether spans are left over. */
static size_t take_batch(obuf_t *b, size_t want, bool json, bool *more)
{
    size_t n = 0;
    *more = false;
    for (ring_t *r = rings; r != NULL; r = r->next) {
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail < head && n < want) {
            const span_hdr_t *h = (const span_hdr_t *)(const void *)(r->buf + tail % r->cap);
            tail += h->size;
            if (h->kind == KIND_SKIP)
                continue;
            span_view_t v = {h, {NULL}};
            const char *p = (const char *)(h + 1);
            for (unsigned i = 0; i < F_CNT; i++) {
                v.f[i] = p;
                p += h->n[i];
            }
            if (json)
                json_span(b, &v, n == 0);
            else
                pb_span(b, &v);
            n++;
        }
        atomic_store_explicit(&r->tail, tail, memory_order_release);
        *more |= tail < head;
    }
    return n;
}

static void *exporter_main(void *arg)
{
    (void)arg;
    CURL *curl = curl_easy_init();
    obuf_t b = {NULL, 0, 0};
    uint64_t last = mono_ms();
    pthread_mutex_lock(&reg_mu);
    ob_room(&b, (size_t)(xconf.batch != 0 ? xconf.batch : 512) * 400); /* a batch, without regrowing */
    for (;;) {
        struct timespec until;
        deadline_in(&until, EXPORT_POLL_MS);
        while (!x_flush_now && pthread_cond_timedwait(&x_wake, &reg_mu, &until) == 0) {
        }
        if (!export_due(last))
            continue;
        x_flush_now = false;
        last = mono_ms();
        size_t want = xconf.batch != 0 ? xconf.batch : 512;
        char *endpoint = xconf.endpoint != NULL ? strdup(xconf.endpoint) : NULL;
        char *service = strdup(xconf.service != NULL ? xconf.service : "portico");
        bool json = xconf.json;
        uint64_t timeout_ms = xconf.timeout_ms;
        bool more = true;
        while (more && service != NULL) {
            if (json)
                json_begin(&b, service);
            else
                pb_begin(&b, service);
            size_t n = take_batch(&b, want, json, &more);
            if (n == 0)
                break;
            size_t len;
            const char *body = json ? json_end(&b, &len) : pb_end(&b, service, &len);
            pthread_mutex_unlock(&reg_mu); /* the POST runs unlocked: the spans are in b */
            if (endpoint != NULL && curl != NULL)
                post_batch(curl, body, len, n, endpoint, json, timeout_ms);
            else
                atomic_fetch_add(&n_dropped, n);
            pthread_mutex_lock(&reg_mu);
        }
        x_rounds++;
        pthread_cond_broadcast(&x_done);
        free(endpoint);
        free(service);
        if (b.cap > ((size_t)8 << 20)) { /* a burst's buffer is not kept */
            free(b.p);
            b = (obuf_t){NULL, 0, 0};
        }
    }
    return NULL;
}

static void exporter_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x_wake, &ca);
    pthread_cond_init(&x_done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, exporter_main, NULL) != 0)
        fputs("portico: tracing: could not start the span exporter thread\n", stderr);
    else
        atomic_store(&exporter_up, true);
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
        xconf.json = t->json;
        atomic_store(&tracing_on, t->on);
        atomic_store(&published_gen, gen);
    }
    pthread_mutex_unlock(&reg_mu);
    if (t->on)
        pthread_once(&exporter_once, exporter_start);
}

/* ---- requests ----------------------------------------------------------- */

/* "00-" trace-id "-" span-id "-0" flag, 55 characters, into v. */
static void traceparent_write(char *v, const uint8_t trace_id[16], const uint8_t span_id[8], bool sampled)
{
    v[0] = '0';
    v[1] = '0';
    v[2] = '-';
    tohex(v + 3, trace_id, 16);
    v[35] = '-';
    tohex(v + 36, span_id, 8);
    v[52] = '-';
    v[53] = '0';
    v[54] = sampled ? '1' : '0';
}

pt_str_t pt_trace_child(const pt_trace_t *t, pt_arena_t *a)
{
    char *v = t != NULL ? pt_arena_alloc(a, 55) : NULL;
    if (v == NULL)
        return PT_STR_NULL;
    uint8_t id[8];
    new_span_id(id);
    memcpy(v, t->traceparent, 55); /* version, trace id, flags: the request's */
    tohex(v + 36, id, 8);
    return (pt_str_t){v, 55};
}

int pt_trace_add_headers(const pt_req_t *req, pt_headers_t *out)
{
    if (req->trace == NULL)
        return 0;
    pt_str_t tp = pt_trace_child(req->trace, out->arena);
    if (tp.base == NULL)
        return PT_ERR_LIMIT;
    int rc = pt_headers_add_nocopy(out, PT_STR("traceparent"), tp);
    pt_str_t ts = pt_headers_get(&req->headers, PT_STR("tracestate"));
    if (rc == 0 && ts.base != NULL)
        rc = pt_headers_add(out, PT_STR("tracestate"), ts);
    return rc;
}

static bool is_name(pt_str_t n, const char *lit, size_t len)
{
    return n.len == len && memcmp(n.base, lit, len) == 0; /* header names are stored lowercase */
}

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
    char *v = t->traceparent;
    /* One pass for traceparent (must come once) and tracestate. */
    pt_headers_t *h = &req->headers;
    size_t tp_at = 0, tp_cnt = 0;
    bool has_ts = false;
    for (size_t i = 0; i < h->cnt; i++) {
        pt_str_t n = h->v[i].name;
        if (is_name(n, "traceparent", 11)) {
            tp_at = i;
            tp_cnt++;
        } else if (is_name(n, "tracestate", 10)) {
            has_ts = true;
        }
    }
    if (tp_cnt == 1 && pt_traceparent_parse(h->v[tp_at].value, t->trace_id, t->parent_id, &t->sampled) == 0) {
        t->has_parent = true; /* continued: the client's sampling decision holds */
    } else {
        /* absent or malformed: a new trace (and a tracestate without its traceparent is dropped) */
        t->has_parent = false;
        new_trace_id(t->trace_id);
        uint64_t r;
        memcpy(&r, t->trace_id + 8, 8);
        t->sampled = conf->sample >= 1.0 || (double)(r >> 11) < conf->sample * (double)(1ull << 53);
        if (has_ts)
            pt_headers_remove(h, PT_STR("tracestate"));
    }
    new_span_id(t->span_id);
    traceparent_write(v, t->trace_id, t->span_id, t->sampled);
    memcpy(t->trace_hex, v + 3, 32);
    t->trace_hex[32] = '\0';
    if (tp_cnt == 1 && h->v[tp_at].name.len == 11) { /* the one entry takes Portico's value */
        h->v[tp_at].value = (pt_str_t){v, 55};
    } else {
        if (tp_cnt != 0)
            pt_headers_remove(h, PT_STR("traceparent"));
        pt_headers_add_nocopy(h, PT_STR("traceparent"), (pt_str_t){v, 55});
    }
    req->trace = t;
    if (t->sampled)
        worker_ring(req->worker, conf->queue);
}

void pt_trace_request_end(pt_req_t *req, uint64_t now_ns)
{
    const pt_trace_t *t = req->trace;
    if (t == NULL || !t->sampled || req->worker == NULL || req->worker->trace == NULL)
        return;
    span_hdr_t h;
    memcpy(h.trace_id, t->trace_id, 16);
    memcpy(h.span_id, t->span_id, 8);
    memcpy(h.parent_id, t->parent_id, 8);
    h.flags = t->has_parent ? REC_PARENT : 0;
    h.kind = KIND_SERVER;
    h.http_status = (uint16_t)(req->resp_status > 0 && req->resp_status < 1000 ? req->resp_status : 0);
    h.st = req->fail_status != PT_ERR_CANCELED ? req->fail_status : 0;
    h.start_ns = (uint64_t)req->start_wall_us * 1000u;
    h.end_ns = h.start_ns + (now_ns > req->start_ns ? now_ns - req->start_ns : 0);
    const pt_str_t f[F_CNT] = {
        [F_METHOD] = req->method,
        [F_TARGET] = req->path,
        [F_ROUTE] = pt_str_c(req->route.route != NULL ? req->route.route->name : NULL),
        [F_RID] = req->request_id,
    };
    ring_put(req->worker->trace, &h, f);
}

/* ---- upstream calls ----------------------------------------------------- */

pt_trace_call_t *pt_trace_call_begin(pt_worker_t *w, const pt_upcall_req_t *r)
{
    ring_t *ring = w != NULL ? w->trace : NULL;
    if (ring == NULL || r->headers == NULL || !atomic_load_explicit(&tracing_on, memory_order_relaxed))
        return NULL;
    const pt_headers_t *h = r->headers;
    pt_str_t tp = PT_STR_NULL;
    for (size_t i = h->cnt; i-- > 0;) { /* the traceparent is usually among the last */
        if (is_name(h->v[i].name, "traceparent", 11)) {
            tp = h->v[i].value;
            break;
        }
    }
    uint8_t trace_id[16], id[8];
    bool sampled;
    const pt_trace_t *t = r->trace;
    if (t != NULL && tp.len == 55 && memcmp(tp.base, t->traceparent, 36) == 0 &&
        tp.base[54] == t->traceparent[54]) {
        /* the request's own trace (pt_trace_child's or the server span's): only the span id to read */
        if (!t->sampled || !unhex(tp.base + 36, id, 8))
            return NULL;
        memcpy(trace_id, t->trace_id, 16);
    } else if (tp.base == NULL || pt_traceparent_parse(tp, trace_id, id, &sampled) != 0 || !sampled) {
        return NULL;
    } else {
        t = NULL; /* some other trace: its header names the parent */
    }
    pt_trace_call_t *tc = ring->free_calls;
    if (tc != NULL) {
        ring->free_calls = tc->next;
        ring->free_cnt--;
    } else {
        tc = pt_xcalloc(1, sizeof(*tc));
    }
    span_hdr_t *s = &tc->h;
    memcpy(s->trace_id, trace_id, 16);
    if (t != NULL && memcmp(id, t->span_id, 8) != 0) {
        memcpy(s->span_id, id, 8); /* pt_trace_child's: the upstream's parent is this span */
        memcpy(s->parent_id, t->span_id, 8);
    } else {
        memcpy(s->parent_id, id, 8); /* the header names the server span (or a caller's) */
        new_span_id(s->span_id);
    }
    s->flags = REC_PARENT | (r->cluster->protocol == PT_PROTO_GRPC ? REC_GRPC : 0);
    s->kind = KIND_CLIENT;
    s->http_status = 0;
    s->st = 0;
    s->start_ns = unix_ns();
    s->n[F_METHOD] = (uint8_t)cut(r->method.len, F_METHOD);
    cpy(tc->method, r->method.base, s->n[F_METHOD]);
    pt_str_t path = r->path;
    const char *q = path.base != NULL ? memchr(path.base, '?', path.len) : NULL;
    if (q != NULL)
        path.len = (size_t)(q - path.base); /* the query may hold secrets: not exported */
    s->n[F_TARGET] = (uint8_t)cut(path.len, F_TARGET);
    cpy(tc->target, path.base, s->n[F_TARGET]);
    pt_str_t up = pt_str_c(r->cluster->name);
    s->n[F_UPSTREAM] = (uint8_t)cut(up.len, F_UPSTREAM);
    cpy(tc->upstream, up.base, s->n[F_UPSTREAM]);
    return tc;
}

void *pt_trace_call_user(pt_trace_call_t *tc)
{
    return tc->user;
}

void pt_trace_call_status(pt_trace_call_t *tc, int http_status)
{
    if (tc != NULL)
        tc->h.http_status = (uint16_t)(http_status > 0 && http_status < 1000 ? http_status : 0);
}

void pt_trace_call_end(pt_worker_t *w, pt_trace_call_t *tc, int st, const char *endpoint)
{
    if (tc == NULL)
        return;
    ring_t *r = w != NULL ? w->trace : NULL;
    if (r != NULL) {
        tc->h.st = st;
        tc->h.end_ns = unix_ns();
        const pt_str_t f[F_CNT] = {
            [F_METHOD] = {tc->method, tc->h.n[F_METHOD]},
            [F_TARGET] = {tc->target, tc->h.n[F_TARGET]},
            [F_UPSTREAM] = {tc->upstream, tc->h.n[F_UPSTREAM]},
            [F_ENDPOINT] = pt_str_c(endpoint),
        };
        ring_put(r, &tc->h, f);
    }
    if (r != NULL && r->free_cnt < CALL_FREE_MAX) {
        tc->next = r->free_calls;
        r->free_calls = tc;
        r->free_cnt++;
    } else {
        free(tc);
    }
}
