/*
 * server.c -- the Bookstore example gRPC service, on gRPC C core.
 *
 *   bookstore-server --port N [--threads T] [--grace-ms MS] [--tls-cert PEM --tls-key PEM]
 *
 * Listens on 127.0.0.1:N (N = 0 picks a free port), without TLS unless given
 * a certificate chain and its key, and prints
 * "bookstore-server listening on 127.0.0.1:PORT" once it serves. SIGTERM or
 * SIGINT shut it down gracefully: no new calls; watch streams end with
 * UNAVAILABLE; other calls get --grace-ms (default 5000) to finish before
 * they are cancelled; exit status 0.
 *
 * How it works (the C core API is asynchronous and callback-free):
 *
 *  - Each of the T worker threads owns one completion queue (cq). A worker
 *    asks the server in advance for the next calls of every method
 *    (grpc_server_request_registered_call), naming its own cq both for the
 *    "call arrived" notification and for every later operation on the call.
 *    So a call lives on one thread from start to end and its state needs no
 *    lock; only the store (store.c) is shared, behind its mutex.
 *  - Work on a call is started in batches (grpc_call_start_batch); a batch
 *    completes on the cq with the tag given, which here points into the
 *    call's own struct (call_t.tags[]) and says which batch finished.
 *  - Every call has a RECV_CLOSE_ON_SERVER op in flight until it ends: it
 *    completes when the status has gone out, or earlier when the client
 *    cancels, the deadline passes or the connection drops (`cancelled` = 1).
 *    The call struct is freed once that op and every other batch have
 *    completed and no timer is pending: that is what keeps a cancelled call
 *    from leaking or being touched after free.
 *  - C core has no public timer for cqs, so each worker keeps its own timer
 *    list and wakes up from grpc_completion_queue_next() with a deadline.
 *    WatchShelf streams poll the store's change counter every POLL_MS.
 *
 * Messages are serialized with protobuf-c (bookstore.pb-c.h); C core only
 * sees byte buffers. Unary methods and server-streaming methods are
 * registered with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so the request
 * message has already been read when the call is handed to us.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "google/protobuf/empty.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "store.h"

#define POLL_MS 10         /* WatchShelf change polling and shutdown notice */
#define MAX_ECHO_MD 16     /* request metadata entries echoed back, at most */
#define MAX_DELAY_MS 60000 /* Echo delay_ms, WatchBooks interval_ms */
#define MAX_WATCH_COUNT 100000

/* ---- types ------------------------------------------------------------------- */

typedef struct app app_t;
typedef struct worker worker_t;
typedef struct call call_t;

/* What a completion on the cq was for. */
typedef enum op_kind {
    OP_NEW,   /* a requested call arrived (or the request failed: shutdown) */
    OP_CLOSE, /* the standalone RECV_CLOSE_ON_SERVER: the call is over */
    OP_MD,    /* initial metadata sent on its own */
    OP_SEND,  /* one streamed response message sent */
    OP_RECV,  /* one streamed request message received (or end of stream) */
    OP_FINAL, /* the final batch: status (and for unary calls, everything) */
    OP_COUNT
} op_kind_t;

typedef struct tag {
    call_t *call;
    op_kind_t kind;
} tag_t;

/* Why a streaming method's step function runs. */
typedef enum step {
    STEP_SENT,  /* the last message went out; another may be sent */
    STEP_RECV,  /* c->recv_buf holds a message, or NULL at end of stream */
    STEP_TIMER, /* the call's timer fired */
    STEP_POLL,  /* periodic, for calls on the worker's watch list */
} step_t;

typedef enum method_kind { UNARY, SERVER_STREAMING, CLIENT_STREAMING, BIDI } method_kind_t;

/*
 * A unary handler returns 0 with `*resp` set (a packed message the caller
 * sends and frees), or -1 with `err` set. It may set c->delay_ms to have the
 * answer sent later (Echo).
 */
typedef int (*unary_fn)(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **resp,
                        bs_error_t *err);
/* Streaming: `start` runs once when the call arrives (`req` is the request
 * for server streaming, NULL otherwise; owned by the caller); `step` runs on
 * every later event until the call finishes. */
typedef void (*start_fn)(call_t *c, const ProtobufCMessage *req);
typedef void (*step_fn)(call_t *c, step_t why);

typedef struct method {
    const char *path; /* "/bookstore.v1.Bookstore/GetShelf" */
    method_kind_t kind;
    const ProtobufCMessageDescriptor *input; /* read up front; NULL for client streams */
    unary_fn unary;
    start_fn start;
    step_fn step;
    int backlog; /* calls requested in advance, per worker */
} method_t;

struct app {
    grpc_server *server;
    bs_store_t *store;
    void **registered; /* grpc_server_register_method() handles, by method index */
    atomic_bool shutting_down;
};

struct worker {
    app_t *app;
    pthread_t thread;
    grpc_completion_queue *cq;
    call_t *timers;  /* armed timers, soonest first */
    call_t *watches; /* calls that want STEP_POLL (watch streams) */
    /* Call structs alive, requested ones included. Main reads it at
     * shutdown: a worker's cq may only be shut down once it is 0, because
     * starting a batch on a shut-down cq is a fatal error in C core. */
    atomic_size_t live_calls;
};

struct call {
    worker_t *w;
    int method;        /* index into METHODS, or -1 for a method we do not serve */
    const method_t *m; /* &METHODS[method], or NULL */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array req_md;
    grpc_call_details details;     /* unknown methods only */
    grpc_byte_buffer *req_payload; /* the request, for unary and server streaming */
    grpc_byte_buffer *recv_buf;    /* streamed request message being received */
    grpc_byte_buffer *send_buf;    /* response message being sent */
    tag_t tags[OP_COUNT];

    int in_flight;       /* batches started, not yet completed */
    bool close_started;  /* RECV_CLOSE_ON_SERVER is in flight or done */
    bool closed;         /* ... and it completed: nothing more may be started */
    int cancelled;       /* from RECV_CLOSE_ON_SERVER */
    bool md_sent;        /* initial metadata went out (or is going) */
    bool sending;        /* a SEND_MESSAGE is in flight */
    bool finishing;      /* the status has been sent */
    bool close_in_final; /* RECV_CLOSE_ON_SERVER rides in the final batch */

    /* Initial metadata (echoed request entries) and trailers. The slices of
     * echoed entries belong to req_md, which lives as long as the call. */
    grpc_metadata md[MAX_ECHO_MD];
    size_t md_cnt;
    grpc_metadata trailers[2];
    grpc_slice status_msg;
    grpc_slice details_bin; /* google.rpc.Status for grpc-status-details-bin */

    /* Timer (one per call is enough here). */
    int64_t timer_at_ms;
    bool timer_armed;
    call_t *timer_next;
    /* Watch list membership. */
    bool watching;
    call_t *watch_prev, *watch_next;

    /* Echo with delay_ms: the answer waits here for the timer. */
    int delay_ms;
    grpc_byte_buffer *deferred;
    bs_error_t deferred_err;
    bool deferred_failed;

    /* Per-method state of streaming calls. */
    union {
        struct {
            int64_t shelf;
            int interval_ms, count, abort_after, sent;
        } books; /* WatchBooks */
        struct {
            int64_t shelf;
            uint64_t cursor;
            int max_events, sent;
            bool shelf_gone;
        } shelf; /* WatchShelf */
        struct {
            Bookstore__V1__CreateBookRequest **reqs;
            size_t n, cap;
        } bulk; /* BulkCreateBooks */
        struct {
            int64_t seq;
        } chat; /* Chat */
        struct {
            bs_cover_t cover;
            size_t off;
            int chunk, interval_ms, abort_after, sent;
        } cover; /* DownloadShelfCover */
        struct {
            int64_t shelf;
            char *content_type;
            uint8_t *data;
            size_t len, cap, msgs;
        } upload; /* UploadShelfCover */
    } u;
};

/* ---- small helpers ------------------------------------------------------------ */

static int64_t now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static gpr_timespec ms_to_deadline(int64_t ms)
{
    gpr_timespec t = {.tv_sec = ms / 1000,
                      .tv_nsec = (int32_t)(ms % 1000) * 1000000,
                      .clock_type = GPR_CLOCK_MONOTONIC};
    return t;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *p)
{
    size_t n = strlen(p) + 1;
    char *d = xcalloc(1, n);
    memcpy(d, p, n);
    return d;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Packs a store answer and frees it. */
static int reply(void *msg, grpc_byte_buffer **out)
{
    *out = pack(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

/* Is [p, p+len) well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
static bool utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += n + 1;
    }
    return true;
}

/*
 * proto3 requires string fields to hold UTF-8 and protobuf-c does not check
 * it, so we do, walking the message through its descriptor (nested
 * messages and map entries included). Otherwise a bad title would be stored
 * and break every client that later reads it.
 */
static bool strings_valid(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m + f->offset;
        size_t cnt = 1;
        void *const *items = (void *const *)base;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            cnt = *(const size_t *)((const char *)m + f->quantifier_offset);
            items = *(void *const *const *)base;
        } else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id) {
            continue; /* another member of the oneof is set */
        }
        for (size_t k = 0; k < cnt; k++) {
            if (items[k] == NULL)
                continue;
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                if (!utf8_valid(items[k], strlen(items[k])))
                    return false;
            } else if (!strings_valid(items[k])) {
                return false;
            }
        }
    }
    return true;
}

/* Unpacks a request; NULL if it is missing, malformed or not valid UTF-8. */
static ProtobufCMessage *parse(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (m != NULL && !strings_valid(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    return m;
}

static bs_error_t make_error(grpc_status_code code, const char *field, const char *message)
{
    bs_error_t e;
    memset(&e, 0, sizeof(e));
    e.code = code;
    snprintf(e.message, sizeof(e.message), "%s", message);
    if (field != NULL)
        snprintf(e.field, sizeof(e.field), "%s", field);
    return e;
}

static bool has_suffix(grpc_slice s, const char *suffix)
{
    size_t n = strlen(suffix), len = GRPC_SLICE_LENGTH(s);
    return len >= n && memcmp(GRPC_SLICE_START_PTR(s) + len - n, suffix, n) == 0;
}

/* Standard base64 (with padding) of `len` bytes; returns a malloc'd string. */
static char *base64(const uint8_t *p, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xcalloc(1, (len + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? tbl[v & 63] : '=';
    }
    return out;
}

/* ---- timers and the watch list -------------------------------------------------- */

static void timer_arm(call_t *c, int ms)
{
    worker_t *w = c->w;
    c->timer_at_ms = now_ms() + ms;
    c->timer_armed = true;
    call_t **pp = &w->timers;
    while (*pp != NULL && (*pp)->timer_at_ms <= c->timer_at_ms)
        pp = &(*pp)->timer_next;
    c->timer_next = *pp;
    *pp = c;
}

static void timer_cancel(call_t *c)
{
    if (!c->timer_armed)
        return;
    for (call_t **pp = &c->w->timers; *pp != NULL; pp = &(*pp)->timer_next) {
        if (*pp == c) {
            *pp = c->timer_next;
            break;
        }
    }
    c->timer_armed = false;
    c->timer_next = NULL;
}

static void watch_add(call_t *c)
{
    c->watching = true;
    c->watch_prev = NULL;
    c->watch_next = c->w->watches;
    if (c->w->watches != NULL)
        c->w->watches->watch_prev = c;
    c->w->watches = c;
}

static void watch_remove(call_t *c)
{
    if (!c->watching)
        return;
    if (c->watch_prev != NULL)
        c->watch_prev->watch_next = c->watch_next;
    else
        c->w->watches = c->watch_next;
    if (c->watch_next != NULL)
        c->watch_next->watch_prev = c->watch_prev;
    c->watching = false;
}

/* ---- call lifetime ---------------------------------------------------------------- */

static void request_call(worker_t *w, int method);
static void download_start(call_t *c, const ProtobufCMessage *req);
static void upload_start(call_t *c, const ProtobufCMessage *req);
static void bulk_start(call_t *c, const ProtobufCMessage *req);

static void call_free(call_t *c)
{
    timer_cancel(c);
    watch_remove(c);
    if (c->m != NULL && c->m->start == bulk_start) {
        for (size_t i = 0; i < c->u.bulk.n; i++)
            protobuf_c_message_free_unpacked(&c->u.bulk.reqs[i]->base, NULL);
        free(c->u.bulk.reqs);
    }
    if (c->m != NULL && c->m->start == download_start)
        bs_cover_dispose(&c->u.cover.cover);
    if (c->m != NULL && c->m->start == upload_start) {
        free(c->u.upload.content_type);
        free(c->u.upload.data);
    }
    grpc_byte_buffer_destroy(c->req_payload); /* all accept NULL */
    grpc_byte_buffer_destroy(c->recv_buf);
    grpc_byte_buffer_destroy(c->send_buf);
    grpc_byte_buffer_destroy(c->deferred);
    grpc_slice_unref(c->status_msg);
    grpc_slice_unref(c->details_bin);
    grpc_metadata_array_destroy(&c->req_md);
    if (c->method < 0)
        grpc_call_details_destroy(&c->details);
    if (c->call != NULL)
        grpc_call_unref(c->call);
    atomic_fetch_sub(&c->w->live_calls, 1);
    free(c);
}

/* Frees the call once nothing can refer to it any more. */
static void maybe_free(call_t *c)
{
    if (c->closed && c->in_flight == 0 && !c->timer_armed)
        call_free(c);
}

static void start_batch(call_t *c, grpc_op *ops, size_t n, op_kind_t kind)
{
    c->in_flight++;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tags[kind], NULL);
    if (e != GRPC_CALL_OK) { /* only a programming error gets here */
        fprintf(stderr, "bookstore-server: grpc_call_start_batch: error %d\n", (int)e);
        abort();
    }
}

/* Puts the initial metadata op in `op` unless it went out already. */
static size_t initial_md_op(call_t *c, grpc_op *op)
{
    if (c->md_sent)
        return 0;
    c->md_sent = true;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = c->md_cnt;
    op->data.send_initial_metadata.metadata = c->md;
    return 1;
}

/*
 * Chooses the request metadata echoed back: x-request-id and x-echo-*.
 * gRPC C core hands the server metadata values it will not send itself (a
 * tab, bytes over 0x7E: HTTP allows them, gRPC's ASCII metadata does not),
 * and grpc_call_start_batch refuses a batch carrying one. Such entries are
 * ignored here, so a client's odd header cannot fail (or, before this check,
 * abort) the server.
 */
static void pick_echo_md(call_t *c)
{
    for (size_t i = 0; i < c->req_md.count && c->md_cnt < MAX_ECHO_MD; i++) {
        grpc_slice k = c->req_md.metadata[i].key;
        grpc_slice v = c->req_md.metadata[i].value;
        if (!grpc_header_key_is_legal(k) ||
            (!grpc_is_binary_header(k) && !grpc_header_nonbin_value_is_legal(v)))
            continue;
        if (grpc_slice_str_cmp(k, "x-request-id") == 0 ||
            (GRPC_SLICE_LENGTH(k) > 7 && memcmp(GRPC_SLICE_START_PTR(k), "x-echo-", 7) == 0))
            c->md[c->md_cnt++] = c->req_md.metadata[i];
    }
}

/* Encodes err as a google.rpc.Status with one detail (BadRequest for a bad
 * field, ResourceInfo for a missing or duplicate resource), or an empty
 * slice if there is nothing to add to the status code and message. */
static grpc_slice status_details(const bs_error_t *err)
{
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *fvs[] = {&fv};
    Google__Rpc__ResourceInfo ri = GOOGLE__RPC__RESOURCE_INFO__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *anys[] = {&any};
    const ProtobufCMessage *detail;

    if (err->field[0] != '\0') {
        fv.field = (char *)err->field;
        fv.description = (char *)err->message;
        br.n_field_violations = 1;
        br.field_violations = fvs;
        any.type_url = "type.googleapis.com/google.rpc.BadRequest";
        detail = &br.base;
    } else if (err->resource_type[0] != '\0') {
        ri.resource_type = (char *)err->resource_type;
        ri.resource_name = (char *)err->resource_name;
        ri.description = (char *)err->message;
        any.type_url = "type.googleapis.com/google.rpc.ResourceInfo";
        detail = &ri.base;
    } else {
        return grpc_empty_slice();
    }
    uint8_t buf[1024];
    if (protobuf_c_message_get_packed_size(detail) > sizeof(buf))
        return grpc_empty_slice();
    any.value.len = protobuf_c_message_pack(detail, buf);
    any.value.data = buf;

    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = (int32_t)err->code;
    st.message = (char *)err->message;
    st.n_details = 1;
    st.details = anys;
    grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(&st.base));
    protobuf_c_message_pack(&st.base, GRPC_SLICE_START_PTR(s));
    return s;
}

/*
 * Ends the call: initial metadata (if not sent yet), the response message
 * `resp` (owned; NULL for none), the status (OK, or err's) with the trailers,
 * and RECV_CLOSE_ON_SERVER unless it is already running. No SEND_MESSAGE may
 * be in flight.
 */
static void finish(call_t *c, grpc_byte_buffer *resp, const bs_error_t *err)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    c->finishing = true;
    timer_cancel(c);
    watch_remove(c);

    n += initial_md_op(c, &ops[n]);
    if (resp != NULL && err == NULL) {
        c->send_buf = resp;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = resp;
    } else {
        grpc_byte_buffer_destroy(resp);
    }

    size_t trailer_cnt = 0;
    c->trailers[trailer_cnt].key = grpc_slice_from_static_string("x-bookstore");
    c->trailers[trailer_cnt++].value = grpc_slice_from_static_string("1");
    if (err != NULL) {
        c->status_msg = grpc_slice_from_copied_string(err->message);
        c->details_bin = status_details(err);
        if (!GRPC_SLICE_IS_EMPTY(c->details_bin)) {
            c->trailers[trailer_cnt].key = grpc_slice_from_static_string("grpc-status-details-bin");
            c->trailers[trailer_cnt++].value = c->details_bin;
        }
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = err != NULL ? err->code : GRPC_STATUS_OK;
    ops[n].data.send_status_from_server.status_details = err != NULL ? &c->status_msg : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = trailer_cnt;
    ops[n++].data.send_status_from_server.trailing_metadata = c->trailers;

    if (!c->close_started) {
        c->close_started = true;
        c->close_in_final = true;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    start_batch(c, ops, n, OP_FINAL);
}

static void finish_error(call_t *c, grpc_status_code code, const char *field, const char *msg)
{
    bs_error_t e = make_error(code, field, msg);
    finish(c, NULL, &e);
}

/* Starts the RECV_CLOSE_ON_SERVER that tells a long call it is over. */
static void start_recv_close(call_t *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_started = true;
    start_batch(c, &op, 1, OP_CLOSE);
}

static void send_initial_md(call_t *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    if (initial_md_op(c, &op))
        start_batch(c, &op, 1, OP_MD);
}

/* Sends one message of a stream (with the initial metadata if not sent). */
static void send_msg(call_t *c, const ProtobufCMessage *m)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    n += initial_md_op(c, &ops[n]);
    c->send_buf = pack(m);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_buf;
    c->sending = true;
    start_batch(c, ops, n, OP_SEND);
}

/* Asks for the next message of a client stream. */
static void recv_msg(call_t *c)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    n += initial_md_op(c, &ops[n]);
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv_buf;
    start_batch(c, ops, n, OP_RECV);
}

/* ---- unary methods --------------------------------------------------------------- */

#define STORE(c) ((c)->w->app->store)

static int do_list_shelves(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                           bs_error_t *err)
{
    Bookstore__V1__ListShelvesResponse *resp;
    if (bs_store_list_shelves(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int do_create_shelf(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                           bs_error_t *err)
{
    Bookstore__V1__Shelf *resp;
    if (bs_store_create_shelf(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int do_get_shelf(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                        bs_error_t *err)
{
    Bookstore__V1__Shelf *resp;
    if (bs_store_get_shelf(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int reply_empty(grpc_byte_buffer **out)
{
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    *out = pack(&empty.base);
    return 0;
}

static int do_delete_shelf(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                           bs_error_t *err)
{
    if (bs_store_delete_shelf(STORE(c), (const void *)req, err) < 0)
        return -1;
    return reply_empty(out);
}

static int do_list_books(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                         bs_error_t *err)
{
    Bookstore__V1__ListBooksResponse *resp;
    if (bs_store_list_books(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int do_create_book(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                          bs_error_t *err)
{
    Bookstore__V1__Book *resp;
    if (bs_store_create_book(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int do_get_book(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                       bs_error_t *err)
{
    Bookstore__V1__Book *resp;
    if (bs_store_get_book(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

static int do_delete_book(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                          bs_error_t *err)
{
    if (bs_store_delete_book(STORE(c), (const void *)req, err) < 0)
        return -1;
    return reply_empty(out);
}

/* Echo: no store access, one small message each way. The benchmark's
 * per-call baseline, and a tool for gateway tests (delay, failures,
 * metadata). */
static int do_echo(call_t *c, const ProtobufCMessage *msg, grpc_byte_buffer **out, bs_error_t *err)
{
    const Bookstore__V1__EchoRequest *req = (const void *)msg;
    if (req->delay_ms < 0 || req->delay_ms > MAX_DELAY_MS) {
        *err = make_error(GRPC_STATUS_INVALID_ARGUMENT, "delay_ms",
                          "delay_ms must be between 0 and 60000");
        return -1;
    }
    c->delay_ms = req->delay_ms;
    if (req->fail_code != 0) {
        if (req->fail_code < 1 || req->fail_code > 16)
            *err = make_error(GRPC_STATUS_INVALID_ARGUMENT, "fail_code",
                              "fail_code must be a gRPC status code, 1 to 16");
        else
            *err = make_error((grpc_status_code)req->fail_code, NULL, "echo: requested failure");
        return -1;
    }

    Bookstore__V1__EchoResponse resp = BOOKSTORE__V1__ECHO_RESPONSE__INIT;
    resp.message = req->message;
    if (!req->echo_metadata) {
        *out = pack(&resp.base);
        return 0;
    }

    /* The request metadata as a map; values of repeated keys are joined. */
    size_t cnt = c->req_md.count;
    Bookstore__V1__EchoResponse__MetadataEntry *ents = xcalloc(cnt, sizeof(*ents));
    Bookstore__V1__EchoResponse__MetadataEntry **ptrs = xcalloc(cnt, sizeof(*ptrs));
    for (size_t i = 0; i < cnt; i++) {
        const grpc_metadata *md = &c->req_md.metadata[i];
        char *key = grpc_slice_to_c_string(md->key);
        char *val = has_suffix(md->key, "-bin")
                        ? base64(GRPC_SLICE_START_PTR(md->value), GRPC_SLICE_LENGTH(md->value))
                        : grpc_slice_to_c_string(md->value);
        size_t j = 0;
        while (j < resp.n_metadata && strcmp(ptrs[j]->key, key) != 0)
            j++;
        if (j < resp.n_metadata) {
            size_t len = strlen(ptrs[j]->value) + 2 + strlen(val) + 1;
            char *joined = xcalloc(1, len);
            snprintf(joined, len, "%s, %s", ptrs[j]->value, val);
            free(ptrs[j]->value);
            ptrs[j]->value = joined;
            gpr_free(key);
            free(val);
            continue;
        }
        Bookstore__V1__EchoResponse__MetadataEntry init =
            BOOKSTORE__V1__ECHO_RESPONSE__METADATA_ENTRY__INIT;
        ents[j] = init;
        ents[j].key = key;
        ents[j].value = val;
        ptrs[resp.n_metadata++] = &ents[j];
    }
    resp.metadata = ptrs;
    *out = pack(&resp.base);
    for (size_t i = 0; i < resp.n_metadata; i++) {
        gpr_free(ptrs[i]->key);
        free(ptrs[i]->value);
    }
    free(ents);
    free(ptrs);
    return 0;
}

/* ---- shelf covers: google.api.HttpBody -------------------------------------------- */

static int do_get_shelf_cover(call_t *c, const ProtobufCMessage *msg, grpc_byte_buffer **out,
                              bs_error_t *err)
{
    const Bookstore__V1__GetShelfCoverRequest *req = (const void *)msg;
    bs_cover_t cover = {0};
    if (bs_store_get_cover(STORE(c), req->shelf, &cover, err) < 0)
        return -1;
    Google__Api__HttpBody body = GOOGLE__API__HTTP_BODY__INIT;
    body.content_type = cover.content_type;
    body.data.data = cover.data;
    body.data.len = cover.len;
    *out = pack(&body.base);
    bs_cover_dispose(&cover);
    return 0;
}

static int do_put_shelf_cover(call_t *c, const ProtobufCMessage *req, grpc_byte_buffer **out,
                              bs_error_t *err)
{
    Bookstore__V1__Shelf *resp;
    if (bs_store_put_cover(STORE(c), (const void *)req, &resp, err) < 0)
        return -1;
    return reply(resp, out);
}

/* DownloadShelfCover: the cover in HttpBody chunks, on a timer like WatchBooks. */
static void cover_emit(call_t *c)
{
    bs_cover_t *cv = &c->u.cover.cover;
    size_t n = cv->len - c->u.cover.off;
    if (n > (size_t)c->u.cover.chunk)
        n = (size_t)c->u.cover.chunk;
    Google__Api__HttpBody body = GOOGLE__API__HTTP_BODY__INIT;
    body.content_type = cv->content_type;
    body.data.data = cv->data + c->u.cover.off;
    body.data.len = n;
    c->u.cover.off += n;
    send_msg(c, &body.base);
}

static void download_start(call_t *c, const ProtobufCMessage *msg)
{
    const Bookstore__V1__DownloadShelfCoverRequest *req = (const void *)msg;
    if (req->chunk_size < 0 || req->chunk_size > 65536) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "chunk_size",
                     "chunk_size must be between 0 and 65536");
        return;
    }
    if (req->interval_ms < 0 || req->interval_ms > MAX_DELAY_MS) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "interval_ms",
                     "interval_ms must be between 0 and 60000");
        return;
    }
    if (req->abort_after < 0) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "abort_after",
                     "abort_after must not be negative");
        return;
    }
    bs_error_t err;
    if (bs_store_get_cover(STORE(c), req->shelf, &c->u.cover.cover, &err) < 0) {
        finish(c, NULL, &err); /* before the first chunk: a gateway can still say 404 */
        return;
    }
    c->u.cover.chunk = req->chunk_size != 0 ? req->chunk_size : 1024;
    c->u.cover.interval_ms = req->interval_ms;
    c->u.cover.abort_after = req->abort_after;
    start_recv_close(c);
    watch_add(c); /* for the shutdown notice */
    cover_emit(c); /* a cover is never empty */
}

static void download_step(call_t *c, step_t why)
{
    if (why == STEP_POLL)
        return; /* only the shutdown notice matters; handled by the worker */
    if (why == STEP_SENT) {
        c->u.cover.sent++;
        if (c->u.cover.off >= c->u.cover.cover.len) {
            finish(c, NULL, NULL);
            return;
        }
        if (c->u.cover.abort_after > 0 && c->u.cover.sent >= c->u.cover.abort_after) {
            finish_error(c, GRPC_STATUS_ABORTED, NULL, "aborted after abort_after chunks");
            return;
        }
        if (c->u.cover.interval_ms > 0) {
            timer_arm(c, c->u.cover.interval_ms);
            return;
        }
    }
    cover_emit(c); /* STEP_TIMER, or STEP_SENT with no interval */
}

/* UploadShelfCover: pieces appended as they come, stored at the half-close. */
static void upload_start(call_t *c, const ProtobufCMessage *req)
{
    start_recv_close(c);
    recv_msg(c);
}

static void upload_step(call_t *c, step_t why)
{
    if (why != STEP_RECV)
        return;
    if (c->recv_buf == NULL && grpc_call_failed_before_recv_message(c->call))
        return; /* cut off, not finished (see bulk_step): store nothing */
    bs_error_t err;
    if (c->recv_buf == NULL) { /* the client half-closed: store it */
        Google__Api__HttpBody cover = GOOGLE__API__HTTP_BODY__INIT;
        Bookstore__V1__PutShelfCoverRequest put = BOOKSTORE__V1__PUT_SHELF_COVER_REQUEST__INIT;
        cover.content_type = c->u.upload.content_type != NULL ? c->u.upload.content_type : "";
        cover.data.data = c->u.upload.data;
        cover.data.len = c->u.upload.len;
        put.shelf = c->u.upload.shelf;
        put.cover = &cover;
        Bookstore__V1__Shelf *resp;
        if (bs_store_put_cover(STORE(c), &put, &resp, &err) < 0) {
            finish(c, NULL, &err);
            return;
        }
        grpc_byte_buffer *out;
        reply(resp, &out);
        finish(c, out, NULL);
        return;
    }
    Bookstore__V1__UploadShelfCoverRequest *req =
        (void *)parse(c->recv_buf, &bookstore__v1__upload_shelf_cover_request__descriptor);
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (req == NULL) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "malformed request message");
        return;
    }
    const char *bad = NULL, *field = NULL;
    if (c->u.upload.msgs == 0) {
        c->u.upload.shelf = req->shelf;
        if (req->chunk != NULL && req->chunk->content_type[0] != '\0')
            c->u.upload.content_type = xstrdup(req->chunk->content_type);
    } else if (req->shelf != c->u.upload.shelf) {
        bad = "every message must name the same shelf", field = "shelf";
    }
    size_t n = req->chunk != NULL ? req->chunk->data.len : 0;
    if (bad == NULL && n > BS_MAX_COVER - c->u.upload.len)
        bad = "the cover is larger than 1 MiB", field = "chunk.data";
    if (bad != NULL) {
        protobuf_c_message_free_unpacked(&req->base, NULL);
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, field, bad);
        return;
    }
    if (c->u.upload.len + n > c->u.upload.cap) {
        size_t cap = c->u.upload.cap ? c->u.upload.cap : 16384;
        while (cap < c->u.upload.len + n)
            cap *= 2;
        c->u.upload.data = realloc(c->u.upload.data, cap);
        if (c->u.upload.data == NULL)
            abort();
        c->u.upload.cap = cap;
    }
    if (n != 0)
        memcpy(c->u.upload.data + c->u.upload.len, req->chunk->data.data, n);
    c->u.upload.len += n;
    c->u.upload.msgs++;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    recv_msg(c);
}

/* ---- WatchBooks: server streaming on a timer -------------------------------------- */

static void books_emit(call_t *c, Bookstore__V1__Book *book)
{
    Bookstore__V1__WatchBooksResponse m = BOOKSTORE__V1__WATCH_BOOKS_RESPONSE__INIT;
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bs_now(&now);
    m.sequence = c->u.books.sent + 1;
    m.book = book;
    m.emit_time = &now;
    send_msg(c, &m.base);
    protobuf_c_message_free_unpacked(&book->base, NULL);
}

static void watch_books_start(call_t *c, const ProtobufCMessage *msg)
{
    const Bookstore__V1__WatchBooksRequest *req = (const void *)msg;
    if (req->interval_ms < 0 || req->interval_ms > MAX_DELAY_MS) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "interval_ms",
                     "interval_ms must be between 0 and 60000");
        return;
    }
    if (req->count < 0 || req->count > MAX_WATCH_COUNT) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "count",
                     "count must be between 0 and 100000");
        return;
    }
    if (req->abort_after < 0) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "abort_after",
                     "abort_after must not be negative");
        return;
    }

    /* The checks above and this lookup happen before anything is sent, so a
     * gateway can still answer with a proper HTTP status. */
    Bookstore__V1__Book *book = NULL;
    size_t book_cnt = 0;
    bs_error_t err;
    int rc = bs_store_book_at(STORE(c), req->shelf, 0, &book, &book_cnt, &err);
    if (rc < 0) {
        finish(c, NULL, &err);
        return;
    }
    c->u.books.shelf = req->shelf;
    c->u.books.interval_ms = req->interval_ms;
    c->u.books.count = req->count != 0 ? req->count : (int)book_cnt;
    c->u.books.abort_after = req->abort_after;
    if (rc == 0 || c->u.books.count == 0) { /* nothing to stream */
        finish(c, NULL, NULL);
        return;
    }
    start_recv_close(c);
    watch_add(c); /* for the shutdown notice */
    books_emit(c, book);
}

static void watch_books_step(call_t *c, step_t why)
{
    if (why == STEP_SENT) {
        c->u.books.sent++;
        if (c->u.books.abort_after > 0 && c->u.books.sent >= c->u.books.abort_after) {
            finish_error(c, GRPC_STATUS_ABORTED, NULL, "aborted after abort_after messages");
            return;
        }
        if (c->u.books.sent >= c->u.books.count) {
            finish(c, NULL, NULL);
            return;
        }
        if (c->u.books.interval_ms > 0) {
            timer_arm(c, c->u.books.interval_ms);
            return;
        }
    } else if (why == STEP_POLL) {
        return; /* only the shutdown notice matters; handled by the worker */
    }
    /* STEP_TIMER, or STEP_SENT with no interval: the next message. */
    Bookstore__V1__Book *book = NULL;
    size_t book_cnt;
    bs_error_t err;
    int rc = bs_store_book_at(STORE(c), c->u.books.shelf, (uint64_t)c->u.books.sent, &book,
                              &book_cnt, &err);
    if (rc < 0) { /* the shelf was deleted meanwhile: a mid-stream error */
        finish(c, NULL, &err);
        return;
    }
    if (rc == 0) { /* it was emptied: nothing left to show */
        finish(c, NULL, NULL);
        return;
    }
    books_emit(c, book);
}

/* ---- WatchShelf: server streaming driven by changes -------------------------------- */

static void watch_shelf_start(call_t *c, const ProtobufCMessage *msg)
{
    const Bookstore__V1__WatchShelfRequest *req = (const void *)msg;
    if (req->max_events < 0) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "max_events",
                     "max_events must not be negative");
        return;
    }
    bs_error_t err;
    if (bs_store_watch_begin(STORE(c), req->shelf, &c->u.shelf.cursor, &err) < 0) {
        finish(c, NULL, &err);
        return;
    }
    c->u.shelf.shelf = req->shelf;
    c->u.shelf.max_events = req->max_events;
    start_recv_close(c);
    send_initial_md(c); /* the client learns that the watch is in place */
    watch_add(c);
}

static void watch_shelf_step(call_t *c, step_t why)
{
    if (why == STEP_SENT)
        c->u.shelf.sent++;
    if (c->sending)
        return;
    if (c->u.shelf.shelf_gone ||
        (c->u.shelf.max_events > 0 && c->u.shelf.sent >= c->u.shelf.max_events)) {
        finish(c, NULL, NULL);
        return;
    }
    /* Cheap check first: has anything changed anywhere since we looked? */
    if (c->u.shelf.cursor == bs_store_event_seq(STORE(c)))
        return;
    Bookstore__V1__ShelfEvent *ev = NULL;
    int rc = bs_store_next_event(STORE(c), c->u.shelf.shelf, &c->u.shelf.cursor, &ev);
    if (rc < 0) {
        finish_error(c, GRPC_STATUS_ABORTED, NULL, "the watcher fell behind and events were lost");
        return;
    }
    if (rc == 0)
        return;
    c->u.shelf.shelf_gone = ev->type == BOOKSTORE__V1__SHELF_EVENT__TYPE__SHELF_DELETED;
    send_msg(c, &ev->base);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

/* ---- BulkCreateBooks: client streaming ---------------------------------------------- */

static void bulk_start(call_t *c, const ProtobufCMessage *req)
{
    start_recv_close(c);
    recv_msg(c); /* with the initial metadata */
}

static void bulk_step(call_t *c, step_t why)
{
    if (why != STEP_RECV)
        return;
    bs_error_t err;
    /* A NULL message means the request stream ended: cleanly (the client
     * half-closed) or not (it cancelled, the connection dropped). C core
     * reports both the same way and tells them apart on request; a cut
     * stream must not create anything. RECV_CLOSE will end the call. */
    if (c->recv_buf == NULL && grpc_call_failed_before_recv_message(c->call))
        return;
    if (c->recv_buf == NULL) { /* the client half-closed: commit */
        Bookstore__V1__BulkCreateBooksResponse *resp;
        if (bs_store_bulk_create(STORE(c), c->u.bulk.reqs, c->u.bulk.n, &resp, &err) < 0) {
            finish(c, NULL, &err);
            return;
        }
        grpc_byte_buffer *out;
        reply(resp, &out);
        finish(c, out, NULL);
        return;
    }
    Bookstore__V1__CreateBookRequest *req =
        (void *)parse(c->recv_buf, &bookstore__v1__create_book_request__descriptor);
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (req == NULL) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "malformed request message");
        return;
    }
    if (bs_store_check_create_book(STORE(c), req, c->u.bulk.n, &err) < 0) {
        protobuf_c_message_free_unpacked(&req->base, NULL);
        finish(c, NULL, &err); /* ends the call; the client may still be sending */
        return;
    }
    if (c->u.bulk.n == c->u.bulk.cap) {
        c->u.bulk.cap = c->u.bulk.cap ? 2 * c->u.bulk.cap : 16;
        c->u.bulk.reqs = realloc(c->u.bulk.reqs, c->u.bulk.cap * sizeof(*c->u.bulk.reqs));
        if (c->u.bulk.reqs == NULL)
            abort();
    }
    c->u.bulk.reqs[c->u.bulk.n++] = req;
    recv_msg(c);
}

/* ---- Chat: bidirectional streaming --------------------------------------------------- */

static void chat_start(call_t *c, const ProtobufCMessage *req)
{
    start_recv_close(c);
    recv_msg(c);
}

/* One reply per message, and the next message is read only when the reply
 * has gone out: a client that does not read its replies is slowed down
 * instead of filling our memory. */
static void chat_step(call_t *c, step_t why)
{
    if (why == STEP_SENT) {
        recv_msg(c);
        return;
    }
    if (why != STEP_RECV)
        return;
    if (c->recv_buf == NULL && grpc_call_failed_before_recv_message(c->call))
        return;                /* cut off, not finished (see bulk_step) */
    if (c->recv_buf == NULL) { /* the client is done */
        finish(c, NULL, NULL);
        return;
    }
    Bookstore__V1__ChatMessage *in =
        (void *)parse(c->recv_buf, &bookstore__v1__chat_message__descriptor);
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (in == NULL) {
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "malformed request message");
        return;
    }
    if (in->text[0] == '\0') {
        protobuf_c_message_free_unpacked(&in->base, NULL);
        finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, "text", "text must not be empty");
        return;
    }
    Bookstore__V1__ChatMessage out = BOOKSTORE__V1__CHAT_MESSAGE__INIT;
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bs_now(&now);
    out.from = "bookstore";
    out.text = in->text;
    out.room = in->room;
    out.to = in->from;
    out.time = &now;
    out.sequence = ++c->u.chat.seq;
    send_msg(c, &out.base);
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* ---- the method table ------------------------------------------------------------------ */

#define SVC "/bookstore.v1.Bookstore/"
#define D(name) &bookstore__v1__##name##__descriptor

static const method_t METHODS[] = {
    {SVC "ListShelves", UNARY, D(list_shelves_request), do_list_shelves, NULL, NULL, 2},
    {SVC "CreateShelf", UNARY, D(create_shelf_request), do_create_shelf, NULL, NULL, 2},
    {SVC "GetShelf", UNARY, D(get_shelf_request), do_get_shelf, NULL, NULL, 2},
    {SVC "DeleteShelf", UNARY, D(delete_shelf_request), do_delete_shelf, NULL, NULL, 2},
    {SVC "ListBooks", UNARY, D(list_books_request), do_list_books, NULL, NULL, 2},
    {SVC "CreateBook", UNARY, D(create_book_request), do_create_book, NULL, NULL, 4},
    {SVC "GetBook", UNARY, D(get_book_request), do_get_book, NULL, NULL, 4},
    {SVC "DeleteBook", UNARY, D(delete_book_request), do_delete_book, NULL, NULL, 2},
    {SVC "WatchShelf", SERVER_STREAMING, D(watch_shelf_request), NULL, watch_shelf_start,
     watch_shelf_step, 2},
    {SVC "WatchBooks", SERVER_STREAMING, D(watch_books_request), NULL, watch_books_start,
     watch_books_step, 2},
    {SVC "BulkCreateBooks", CLIENT_STREAMING, NULL, NULL, bulk_start, bulk_step, 2},
    {SVC "Chat", BIDI, NULL, NULL, chat_start, chat_step, 2},
    {SVC "Echo", UNARY, D(echo_request), do_echo, NULL, NULL, 16},
    {SVC "GetShelfCover", UNARY, D(get_shelf_cover_request), do_get_shelf_cover, NULL, NULL, 2},
    {SVC "PutShelfCover", UNARY, D(put_shelf_cover_request), do_put_shelf_cover, NULL, NULL, 2},
    {SVC "DownloadShelfCover", SERVER_STREAMING, D(download_shelf_cover_request), NULL,
     download_start, download_step, 2},
    {SVC "UploadShelfCover", CLIENT_STREAMING, NULL, NULL, upload_start, upload_step, 2},
};
static const size_t METHOD_CNT = sizeof(METHODS) / sizeof(METHODS[0]);
#define UNKNOWN_BACKLOG 2

/* ---- dispatch ------------------------------------------------------------------------ */

/* A call arrived: run its method. */
static void call_start(call_t *c)
{
    pick_echo_md(c);
    if (c->method < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown method %.*s", (int)GRPC_SLICE_LENGTH(c->details.method),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        finish_error(c, GRPC_STATUS_UNIMPLEMENTED, NULL, msg);
        return;
    }
    const method_t *m = c->m;
    ProtobufCMessage *req = NULL;
    if (m->input != NULL) {
        /* NULL payload: the client half-closed without sending a message. */
        req = parse(c->req_payload, m->input);
        if (req == NULL) {
            finish_error(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         c->req_payload == NULL ? "missing request message"
                                                : "malformed request message");
            return;
        }
    }
    if (m->kind != UNARY) {
        m->start(c, req);
    } else {
        grpc_byte_buffer *resp = NULL;
        bs_error_t err;
        int rc = m->unary(c, req, &resp, &err);
        if (c->delay_ms > 0) {
            /* Answer later; meanwhile RECV_CLOSE tells us if the client
             * gives up or the deadline passes. */
            c->deferred = resp;
            c->deferred_failed = rc < 0;
            if (rc < 0)
                c->deferred_err = err;
            start_recv_close(c);
            timer_arm(c, c->delay_ms);
        } else {
            finish(c, resp, rc < 0 ? &err : NULL);
        }
    }
    if (req != NULL)
        protobuf_c_message_free_unpacked(req, NULL);
}

static void on_timer(call_t *c)
{
    c->timer_armed = false;
    if (c->closed || c->finishing)
        return;
    if (c->m->kind == UNARY) { /* deferred Echo */
        grpc_byte_buffer *resp = c->deferred;
        c->deferred = NULL;
        finish(c, resp, c->deferred_failed ? &c->deferred_err : NULL);
    } else {
        c->m->step(c, STEP_TIMER);
    }
}

static void on_complete(worker_t *w, tag_t *tag, bool ok)
{
    call_t *c = tag->call;
    if (tag->kind == OP_NEW) {
        if (!ok) { /* the server is shutting down: the call never came */
            c->call = NULL;
            c->closed = true;
            call_free(c);
            return;
        }
        if (!atomic_load(&w->app->shutting_down))
            request_call(w, c->method); /* keep the backlog for this method */
        call_start(c);
        maybe_free(c);
        return;
    }

    c->in_flight--;
    switch (tag->kind) {
    case OP_CLOSE:
        c->closed = true;
        timer_cancel(c); /* the call is over: stop producing */
        watch_remove(c);
        break;
    case OP_FINAL:
        if (c->close_in_final)
            c->closed = true;
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
        break;
    case OP_SEND:
        c->sending = false;
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
        if (ok && !c->closed && !c->finishing) {
            if (atomic_load(&w->app->shutting_down) && c->watching)
                finish_error(c, GRPC_STATUS_UNAVAILABLE, NULL, "the server is shutting down");
            else
                c->m->step(c, STEP_SENT);
        }
        break;
    case OP_RECV:
        if (ok && !c->closed && !c->finishing) {
            c->m->step(c, STEP_RECV);
        } else {
            grpc_byte_buffer_destroy(c->recv_buf);
            c->recv_buf = NULL;
        }
        break;
    default: /* OP_MD */
        break;
    }
    maybe_free(c);
}

static void request_call(worker_t *w, int method)
{
    call_t *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->method = method;
    c->m = method >= 0 ? &METHODS[method] : NULL;
    c->status_msg = grpc_empty_slice();
    c->details_bin = grpc_empty_slice();
    for (int k = 0; k < OP_COUNT; k++) {
        c->tags[k].call = c;
        c->tags[k].kind = (op_kind_t)k;
    }
    grpc_metadata_array_init(&c->req_md);
    atomic_fetch_add(&w->live_calls, 1);

    grpc_call_error e;
    if (method >= 0) {
        e = grpc_server_request_registered_call(
            w->app->server, w->app->registered[method], &c->call, &c->deadline, &c->req_md,
            METHODS[method].input != NULL ? &c->req_payload : NULL, w->cq, w->cq, &c->tags[OP_NEW]);
    } else {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(w->app->server, &c->call, &c->details, &c->req_md, w->cq,
                                     w->cq, &c->tags[OP_NEW]);
    }
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "bookstore-server: request_call: error %d\n", (int)e);
        c->closed = true;
        call_free(c);
    }
}

/* ---- workers ------------------------------------------------------------------------- */

static void run_timers(worker_t *w)
{
    int64_t now = now_ms();
    while (w->timers != NULL && w->timers->timer_at_ms <= now) {
        call_t *c = w->timers;
        w->timers = c->timer_next;
        c->timer_next = NULL;
        on_timer(c);
        maybe_free(c);
    }
}

/* Watch streams: report store changes; end them at shutdown (also those
 * that start after the shutdown began). */
static void poll_watches(worker_t *w)
{
    bool shutdown = atomic_load(&w->app->shutting_down);
    for (call_t *c = w->watches, *next; c != NULL; c = next) {
        next = c->watch_next; /* c may leave the list */
        if (c->closed || c->finishing || c->sending)
            continue; /* a send in flight: OP_SEND sees the shutdown */
        if (shutdown)
            finish_error(c, GRPC_STATUS_UNAVAILABLE, NULL, "the server is shutting down");
        else
            c->m->step(c, STEP_POLL);
    }
}

static gpr_timespec next_wakeup(worker_t *w)
{
    int64_t at = INT64_MAX;
    if (w->timers != NULL)
        at = w->timers->timer_at_ms;
    if (w->watches != NULL && now_ms() + POLL_MS < at)
        at = now_ms() + POLL_MS;
    return at == INT64_MAX ? gpr_inf_future(GPR_CLOCK_MONOTONIC) : ms_to_deadline(at);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    int64_t last_poll = now_ms();
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, next_wakeup(w), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            on_complete(w, ev.tag, ev.success != 0);
        /* Timers and polls also run while the queue is busy. */
        run_timers(w);
        if (w->watches != NULL && now_ms() - last_poll >= POLL_MS) {
            last_poll = now_ms();
            poll_watches(w);
        }
    }
    if (atomic_load(&w->live_calls) != 0)
        fprintf(stderr, "bookstore-server: worker exits with %zu calls alive\n",
                atomic_load(&w->live_calls));
    return NULL;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bookstore-server --port N [--threads T] [--grace-ms MS]\n"
               "                        [--tls-cert PEM --tls-key PEM]\n"
               "  --port N         listen on 127.0.0.1:N (0: any free port)\n"
               "  --threads T      worker threads, 1..64 (default 2)\n"
               "  --grace-ms MS    on SIGTERM, time given to running calls (default 5000)\n"
               "  --tls-cert PEM   serve TLS with this certificate chain ...\n"
               "  --tls-key PEM    ... and its private key (both or neither)\n");
}

/* The whole of a (small) file as a NUL-terminated string; NULL on error. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = xcalloc(1, cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            if (cap >= (1u << 20)) { /* no certificate is that large */
                free(buf);
                fclose(f);
                return NULL;
            }
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Insecure credentials, or TLS ones from the PEM files; NULL (reported) on error. */
static grpc_server_credentials *server_creds(const char *cert_file, const char *key_file)
{
    if (cert_file == NULL)
        return grpc_insecure_server_credentials_create();
    char *cert = read_file(cert_file), *key = read_file(key_file);
    grpc_server_credentials *creds = NULL;
    if (cert == NULL || key == NULL) {
        fprintf(stderr, "bookstore-server: cannot read %s\n", cert == NULL ? cert_file : key_file);
    } else {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
        if (creds == NULL)
            fprintf(stderr, "bookstore-server: bad TLS certificate or key\n");
    }
    free(cert);
    free(key);
    return creds;
}

static bool parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = s != NULL ? strtol(s, &end, 10) : 0;
    if (s == NULL || errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    long port = -1, threads = 2, grace_ms = 5000;
    const char *tls_cert = NULL, *tls_key = NULL;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok;
        if (strcmp(a, "--port") == 0)
            ok = parse_int(v, 0, 65535, &port);
        else if (strcmp(a, "--threads") == 0)
            ok = parse_int(v, 1, 64, &threads);
        else if (strcmp(a, "--grace-ms") == 0)
            ok = parse_int(v, 0, 3600000, &grace_ms);
        else if (strcmp(a, "--tls-cert") == 0)
            ok = (tls_cert = v) != NULL;
        else if (strcmp(a, "--tls-key") == 0)
            ok = (tls_key = v) != NULL;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else
            ok = false;
        if (!ok) {
            fprintf(stderr, "bookstore-server: bad argument %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (port < 0 || (tls_cert == NULL) != (tls_key == NULL)) {
        usage(stderr);
        return 2;
    }

    /* Block the shutdown signals in every thread (gRPC's included, hence
     * before grpc_init); main takes them with sigwait(). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    /* Credentials first: a bad certificate or key stops us before anything is allocated. */
    grpc_server_credentials *creds = server_creds(tls_cert, tls_key);
    if (creds == NULL) {
        grpc_shutdown();
        return 1;
    }
    app_t app;
    memset(&app, 0, sizeof(app));
    atomic_init(&app.shutting_down, false);
    app.store = bs_store_new();
    app.server = grpc_server_create(NULL, NULL);

    worker_t *workers = xcalloc((size_t)threads, sizeof(*workers));
    for (long i = 0; i < threads; i++) {
        workers[i].app = &app;
        atomic_init(&workers[i].live_calls, 0);
        workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(app.server, workers[i].cq, NULL);
    }
    /* A queue of its own for the shutdown notification. */
    grpc_completion_queue *shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(app.server, shutdown_cq, NULL);

    app.registered = xcalloc(METHOD_CNT, sizeof(*app.registered));
    for (size_t i = 0; i < METHOD_CNT; i++) {
        app.registered[i] = grpc_server_register_method(
            app.server, METHODS[i].path, NULL,
            METHODS[i].input != NULL ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                     : GRPC_SRM_PAYLOAD_NONE,
            0);
        if (app.registered[i] == NULL) {
            fprintf(stderr, "bookstore-server: cannot register %s\n", METHODS[i].path);
            return 1;
        }
    }

    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%ld", port);
    int bound = grpc_server_add_http2_port(app.server, addr, creds);
    grpc_server_credentials_release(creds);
    if (bound == 0) {
        fprintf(stderr, "bookstore-server: cannot listen on %s\n", addr);
        return 1;
    }
    grpc_server_start(app.server);

    for (long i = 0; i < threads; i++) {
        for (size_t m = 0; m < METHOD_CNT; m++)
            for (int k = 0; k < METHODS[m].backlog; k++)
                request_call(&workers[i], (int)m);
        for (int k = 0; k < UNKNOWN_BACKLOG; k++)
            request_call(&workers[i], -1);
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    }
    printf("bookstore-server listening on 127.0.0.1:%d\n", bound);
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "bookstore-server: signal %d, shutting down\n", sig);

    /* Graceful shutdown: stop accepting calls (watch streams are ended by
     * their workers), give the others grace_ms, then cancel what is left. */
    atomic_store(&app.shutting_down, true);
    grpc_server_shutdown_and_notify(app.server, shutdown_cq, &app);
    grpc_event ev = grpc_completion_queue_next(
        shutdown_cq,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(grace_ms, GPR_TIMESPAN)),
        NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        fprintf(stderr, "bookstore-server: grace period over, cancelling calls\n");
        grpc_server_cancel_all_calls(app.server);
        grpc_completion_queue_next(shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }

    /* The notification may come while workers still hold calls with
     * completions queued (and may start a last batch on them, e.g. a status
     * after a failed read). Wait until every call is freed before shutting
     * the workers' queues down. */
    for (int waited_ms = 0;; waited_ms++) {
        size_t alive = 0;
        for (long i = 0; i < threads; i++)
            alive += atomic_load(&workers[i].live_calls);
        if (alive == 0)
            break;
        if (waited_ms == 10000) {
            fprintf(stderr, "bookstore-server: %zu calls alive after shutdown\n", alive);
            _exit(1);
        }
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    for (long i = 0; i < threads; i++)
        grpc_completion_queue_shutdown(workers[i].cq);
    for (long i = 0; i < threads; i++)
        pthread_join(workers[i].thread, NULL);
    grpc_server_destroy(app.server);
    grpc_completion_queue_shutdown(shutdown_cq);
    while (
        grpc_completion_queue_next(shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(shutdown_cq);
    for (long i = 0; i < threads; i++)
        grpc_completion_queue_destroy(workers[i].cq);
    free(workers);
    free(app.registered);
    bs_store_free(app.store);
    grpc_shutdown();
    fprintf(stderr, "bookstore-server: stopped\n");
    return 0;
}
