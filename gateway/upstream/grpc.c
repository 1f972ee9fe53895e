/*
 * grpc.c -- gRPC upstream calls through gRPC C core (see grpc.h): the source
 * of the shared module portico_grpc.so, which the core loads only for configs
 * with grpc routes. Exports one symbol, the pt_grpc_module table; calls the
 * core only through the pt_grpc_host_t given to init().
 *
 * Threading in one picture:
 *
 *   worker thread                       completion thread (one per worker)
 *   M->call_start() --batch-->          grpc_completion_queue_next()
 *                                       tag done: lock ws, append to ws->done,
 *   drain() <-- host.worker_post() ---- post drain() if not yet posted, unlock
 *   callbacks (on_message, on_done...)
 *
 * gRPC's own I/O runs in the completion thread (it polls while waiting in
 * grpc_completion_queue_next), so a worker's upstream traffic never blocks
 * its event loop, and request state is touched only by the worker.
 *
 * Lifetime of a call: `pending` counts batches gRPC still owns (each batch
 * has a tag embedded in the call; at most one batch per kind). The call is
 * freed when pending is 0 and the owner let go (on_done delivered or cancel).
 *
 * Worker exit: the worker state (ws) turns "orphan": the completion thread
 * then finishes completions itself (under ws->lock, no callbacks) while the
 * worker cancels every live call, shuts the queue down and joins the thread.
 */
#include "grpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "portico/status.h"

/* The only symbol the module exports (built with -fvisibility=hidden). */
extern const pt_grpc_module_t pt_grpc_module __attribute__((visibility("default")));

/* ---- process-wide: the host's functions, gRPC init, the channel registry ---- */

static pt_grpc_host_t host; /* set by mod_init(), before any other entry point */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_bool grpc_started;

static void do_init(void)
{
    grpc_init();
    atomic_store(&grpc_started, true);
}

/*
 * Channels are shared by every snapshot that names the same endpoint, so a
 * reload keeps the upstream connections. The registry is small (one entry
 * per endpoint) and only touched when a channel is first needed or dropped.
 */
typedef struct chan {
    struct chan *next;
    char *key; /* url \n authority \n ca_file */
    grpc_channel *ch;
    unsigned refs;
} chan_t;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static chan_t *registry;

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        /* buf != NULL inside the loop; the check after it is for the break */
        // cppcheck-suppress nullPointerArithmeticRedundantCheck
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

static chan_t *chan_get(const pt_cluster_t *cl, const pt_endpoint_t *ep)
{
    const char *auth = cl->authority != NULL ? cl->authority : "";
    const char *ca = cl->ca_file != NULL ? cl->ca_file : "";
    size_t klen = strlen(ep->url) + strlen(auth) + strlen(ca) + 3;
    char *key = malloc(klen);
    if (key == NULL)
        return NULL;
    snprintf(key, klen, "%s\n%s\n%s", ep->url, auth, ca);
    pthread_mutex_lock(&reg_lock);
    for (chan_t *c = registry; c != NULL; c = c->next)
        if (strcmp(c->key, key) == 0) {
            c->refs++;
            pthread_mutex_unlock(&reg_lock);
            free(key);
            return c;
        }
    /*
     * Target: IP literals as "ipv4:A:P" / "ipv6:[A]:P" (no resolver involved),
     * names as "dns:///host:port" (gRPC resolves them off our threads).
     */
    const char *hostport = strstr(ep->url, "://");
    hostport = hostport != NULL ? hostport + 3 : ep->url;
    struct in6_addr a6;
    struct in_addr a4;
    const char *scheme = inet_pton(AF_INET, ep->host, &a4) == 1    ? "ipv4:"
                         : inet_pton(AF_INET6, ep->host, &a6) == 1 ? "ipv6:"
                                                                   : "dns:///";
    char target[300];
    snprintf(target, sizeof(target), "%s%s", scheme, hostport);
    grpc_arg args[4];
    size_t nargs = 0;
    if (cl->authority != NULL)
        args[nargs++] = (grpc_arg){.type = GRPC_ARG_STRING,
                                   .key = GRPC_ARG_DEFAULT_AUTHORITY,
                                   .value.string = (char *)cl->authority};
    /*
     * Per-call costs we do not need: channelz call counters, and the retry
     * filter (it keeps a copy of every sent message for replay; a gateway
     * call that fails maps to an HTTP error the client can retry itself).
     */
    args[nargs++] = (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_CHANNELZ, .value.integer = 0};
    args[nargs++] = (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0};
    grpc_channel_args cargs = {nargs, args};
    grpc_channel_credentials *creds;
    if (ep->tls) {
        char *pem = NULL;
        if (cl->ca_file != NULL && (pem = read_file(cl->ca_file)) == NULL) {
            pthread_mutex_unlock(&reg_lock);
            free(key);
            return NULL;
        }
        creds = grpc_ssl_credentials_create(pem, NULL, NULL, NULL);
        free(pem);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    chan_t *c = calloc(1, sizeof(*c));
    if (ch == NULL || c == NULL) {
        if (ch != NULL)
            grpc_channel_destroy(ch);
        free(c);
        free(key);
        pthread_mutex_unlock(&reg_lock);
        return NULL;
    }
    c->key = key;
    c->ch = ch;
    c->refs = 1;
    c->next = registry;
    registry = c;
    pthread_mutex_unlock(&reg_lock);
    return c;
}

static void chan_put(chan_t *c)
{
    pthread_mutex_lock(&reg_lock);
    if (--c->refs > 0) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    for (chan_t **pp = &registry; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
    grpc_channel_destroy(c->ch);
    free(c->key);
    free(c);
}

/* ---- upstreams (per cluster, per snapshot) --------------------------------- */

struct pt_grpc_upstream {
    const pt_cluster_t *cluster;
    _Atomic(chan_t *) *chans; /* per endpoint, created on first use */
    pthread_mutex_t lock;     /* serialises the lazy creation */
    atomic_uint rr;
};

static int mod_upstream_new(const pt_cluster_t *cl, pt_grpc_upstream_t **out, const char **err)
{
    if (cl->endpoint_cnt == 0) {
        *err = "cluster has no endpoints";
        return PT_ERR_INVALID;
    }
    bool any_tls = false;
    for (size_t i = 0; i < cl->endpoint_cnt; i++)
        any_tls |= cl->endpoints[i].tls;
    if (any_tls && !cl->tls_verify) {
        *err = "tls_verify: false is not supported for grpc clusters (give a ca_file instead)";
        return PT_ERR_INVALID;
    }
    pt_grpc_upstream_t *u = calloc(1, sizeof(*u));
    if (u == NULL || (u->chans = calloc(cl->endpoint_cnt, sizeof(*u->chans))) == NULL) {
        free(u);
        *err = "out of memory";
        return PT_ERR_NOMEM;
    }
    u->cluster = cl;
    pthread_mutex_init(&u->lock, NULL);
    *out = u;
    return 0;
}

static void mod_upstream_free(pt_grpc_upstream_t *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->cluster->endpoint_cnt; i++) {
        chan_t *c = atomic_load(&u->chans[i]);
        if (c != NULL)
            chan_put(c);
    }
    pthread_mutex_destroy(&u->lock);
    free(u->chans);
    free(u);
}

static chan_t *pick_channel(pt_grpc_upstream_t *u, size_t *idx)
{
    size_t n = u->cluster->endpoint_cnt;
    size_t i = n == 1 ? 0 : atomic_fetch_add_explicit(&u->rr, 1, memory_order_relaxed) % n;
    *idx = i;
    chan_t *c = atomic_load_explicit(&u->chans[i], memory_order_acquire);
    if (c != NULL)
        return c;
    pthread_once(&init_once, do_init);
    pthread_mutex_lock(&u->lock);
    c = atomic_load(&u->chans[i]);
    if (c == NULL) {
        c = chan_get(u->cluster, &u->cluster->endpoints[i]);
        if (c != NULL)
            atomic_store_explicit(&u->chans[i], c, memory_order_release);
    }
    pthread_mutex_unlock(&u->lock);
    return c;
}

/* ---- per-worker state: completion queue and thread --------------------------- */

enum { TAG_SEND = 0, TAG_RECV = 1, TAG_STATUS = 2, TAG_UNARY = 3, TAG_CNT };

typedef struct tag {
    struct tag *next; /* in ws->done */
    pt_grpc_call_t *call;
    uint8_t kind;
    bool ok;
} tag_t;

typedef struct wstate {
    pt_worker_t *w;
    grpc_completion_queue *cq;
    pthread_t thread;
    pthread_mutex_t lock; /* done list, posted, orphan mode */
    tag_t *done_head, *done_tail;
    bool posted;
    bool alive;
    pt_grpc_call_t *calls; /* live calls (worker thread; under lock once orphaned) */
} wstate_t;

struct pt_grpc_call {
    wstate_t *ws;
    pt_grpc_call_t *prev, *next; /* ws->calls */
    grpc_call *call;
    const char *endpoint;
    pt_grpc_call_cbs_t cbs;
    void *ud;
    tag_t tags[TAG_CNT];
    unsigned pending;      /* batches gRPC still owns */
    unsigned in_cb;        /* > 0 while our callbacks run: the owner may cancel inside */
    bool detached;         /* canceled by the owner, or on_done delivered */
    bool unary;
    bool closed;           /* half-close sent or queued */
    bool send_busy, recv_busy;
    bool got_headers;      /* initial metadata delivered */
    bool got_status;
    bool eos;              /* a recv returned end of stream */
    grpc_byte_buffer *send_buf, *recv_buf;
    grpc_metadata_array md_in, md_trail;
    grpc_status_code status;
    grpc_slice details;
    grpc_metadata *md_out;  /* initial metadata sent (copies) */
    size_t md_out_cnt;
};

static void *cq_thread(void *arg);
static void drain(void *arg);

static wstate_t *ws_of(pt_worker_t *w)
{
    wstate_t *ws = w->upstream_grpc;
    if (ws != NULL)
        return ws;
    pthread_once(&init_once, do_init);
    ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        return NULL;
    ws->w = w;
    ws->alive = true;
    pthread_mutex_init(&ws->lock, NULL);
    ws->cq = grpc_completion_queue_create_for_next(NULL);
    if (ws->cq == NULL || pthread_create(&ws->thread, NULL, cq_thread, ws) != 0) {
        if (ws->cq != NULL)
            grpc_completion_queue_destroy(ws->cq);
        pthread_mutex_destroy(&ws->lock);
        free(ws);
        return NULL;
    }
    w->upstream_grpc = ws;
    return ws;
}

/* ---- call bookkeeping ------------------------------------------------------- */

static void call_free(pt_grpc_call_t *c)
{
    wstate_t *ws = c->ws;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ws->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    if (c->send_buf != NULL)
        grpc_byte_buffer_destroy(c->send_buf);
    if (c->recv_buf != NULL)
        grpc_byte_buffer_destroy(c->recv_buf);
    grpc_metadata_array_destroy(&c->md_in);
    grpc_metadata_array_destroy(&c->md_trail);
    grpc_slice_unref(c->details);
    for (size_t i = 0; i < c->md_out_cnt; i++) {
        grpc_slice_unref(c->md_out[i].key);
        grpc_slice_unref(c->md_out[i].value);
    }
    free(c->md_out);
    free(c);
}

static void maybe_free(pt_grpc_call_t *c)
{
    if (c->pending == 0 && c->detached && c->in_cb == 0)
        call_free(c);
}

/* Converts a metadata array to headers (slices into `a`, valid while it lives). */
static pt_header_t *md_view(const grpc_metadata_array *a, pt_header_t *stack, size_t cap,
                            size_t *cnt)
{
    pt_header_t *h = a->count <= cap ? stack : malloc(a->count * sizeof(*h));
    *cnt = 0;
    if (h == NULL)
        return stack;
    for (size_t i = 0; i < a->count; i++) {
        const grpc_metadata *m = &a->metadata[i];
        h[i].name = (pt_str_t){(const char *)GRPC_SLICE_START_PTR(m->key), GRPC_SLICE_LENGTH(m->key)};
        h[i].value =
            (pt_str_t){(const char *)GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value)};
    }
    *cnt = a->count;
    return h;
}

static void deliver_headers(pt_grpc_call_t *c)
{
    if (c->got_headers)
        return;
    c->got_headers = true;
    if (c->cbs.on_headers == NULL || c->md_in.count == 0)
        return;
    pt_header_t stack[16];
    size_t cnt;
    pt_header_t *h = md_view(&c->md_in, stack, 16, &cnt);
    c->cbs.on_headers(c->ud, h, cnt);
    if (h != stack)
        free(h);
}

/* Delivers the received message (or end of stream); returns false if the owner detached. */
static void deliver_message(pt_grpc_call_t *c)
{
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    if (bb == NULL) {
        c->eos = true;
        c->cbs.on_message(c->ud, NULL, 0);
        return;
    }
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        grpc_byte_buffer_destroy(bb);
        c->eos = true;
        c->cbs.on_message(c->ud, NULL, 0);
        return;
    }
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(bb);
    static const uint8_t empty[1];
    const uint8_t *p = GRPC_SLICE_LENGTH(s) != 0 ? GRPC_SLICE_START_PTR(s) : empty;
    c->cbs.on_message(c->ud, p, GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
}

static void deliver_done(pt_grpc_call_t *c)
{
    c->detached = true;
    pt_header_t stack[16];
    size_t cnt;
    pt_header_t *h = md_view(&c->md_trail, stack, 16, &cnt);
    const uint8_t *sb = NULL;
    size_t sb_len = 0;
    size_t out = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (pt_str_eq(h[i].name, PT_STR("grpc-status-details-bin"))) {
            sb = (const uint8_t *)h[i].value.base;
            sb_len = h[i].value.len;
            continue;
        }
        h[out++] = h[i];
    }
    pt_str_t details = {(const char *)GRPC_SLICE_START_PTR(c->details),
                        GRPC_SLICE_LENGTH(c->details)};
    c->cbs.on_done(c->ud, (int)c->status, details, h, out, sb, sb_len);
    if (h != stack)
        free(h);
}

/* One completion, on the worker thread (or in orphan mode, under ws->lock). */
static void complete(pt_grpc_call_t *c, tag_t *t, bool orphan)
{
    c->pending--;
    c->in_cb++;
    switch (t->kind) {
    case TAG_SEND:
        c->send_busy = false;
        if (c->send_buf != NULL) {
            grpc_byte_buffer_destroy(c->send_buf);
            c->send_buf = NULL;
        }
        if (!c->detached && !orphan && c->cbs.on_sent != NULL)
            c->cbs.on_sent(c->ud, t->ok);
        break;
    case TAG_RECV:
        c->recv_busy = false;
        if (!c->detached && !orphan) {
            deliver_headers(c);
            if (!c->detached)
                deliver_message(c);
        }
        break;
    case TAG_STATUS:
        c->got_status = true;
        break;
    case TAG_UNARY:
        c->got_status = true;
        c->send_busy = c->recv_busy = false;
        if (c->send_buf != NULL) {
            grpc_byte_buffer_destroy(c->send_buf);
            c->send_buf = NULL;
        }
        if (!c->detached && !orphan) {
            deliver_headers(c);
            /* A failed status has no message: don't report an empty one. */
            if (!c->detached && (c->status == GRPC_STATUS_OK || c->recv_buf != NULL))
                deliver_message(c);
        }
        break;
    }
    if (!c->detached && !orphan && c->got_status && c->pending == 0)
        deliver_done(c);
    if (orphan)
        c->detached = true;
    c->in_cb--;
    maybe_free(c);
}

static void drain(void *arg)
{
    wstate_t *ws = arg;
    pthread_mutex_lock(&ws->lock);
    tag_t *t = ws->done_head;
    ws->done_head = ws->done_tail = NULL;
    ws->posted = false;
    pthread_mutex_unlock(&ws->lock);
    while (t != NULL) {
        tag_t *next = t->next;
        complete(t->call, t, false);
        t = next;
    }
}

static void *cq_thread(void *arg)
{
    wstate_t *ws = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(ws->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        tag_t *t = ev.tag;
        t->ok = ev.success != 0;
        t->next = NULL;
        pthread_mutex_lock(&ws->lock);
        if (!ws->alive) {
            complete(t->call, t, true);
        } else {
            if (ws->done_tail != NULL)
                ws->done_tail->next = t;
            else
                ws->done_head = t;
            ws->done_tail = t;
            if (!ws->posted) {
                ws->posted = true;
                /* Under the lock: the worker cannot be torn down meanwhile. */
                host.worker_post(ws->w, drain, ws);
            }
        }
        pthread_mutex_unlock(&ws->lock);
    }
    return NULL;
}

static void mod_worker_dispose(pt_worker_t *w)
{
    wstate_t *ws = w->upstream_grpc;
    if (ws == NULL)
        return;
    pthread_mutex_lock(&ws->lock);
    ws->alive = false;
    tag_t *t = ws->done_head;
    ws->done_head = ws->done_tail = NULL;
    while (t != NULL) {
        tag_t *next = t->next;
        complete(t->call, t, true);
        t = next;
    }
    for (pt_grpc_call_t *c = ws->calls, *next; c != NULL; c = next) {
        next = c->next;
        c->detached = true;
        if (c->call != NULL)
            grpc_call_cancel(c->call, NULL);
        maybe_free(c);
    }
    pthread_mutex_unlock(&ws->lock);
    grpc_completion_queue_shutdown(ws->cq);
    pthread_join(ws->thread, NULL);
    grpc_completion_queue_destroy(ws->cq);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
    w->upstream_grpc = NULL;
}

static void mod_global_shutdown(void)
{
    if (atomic_load(&grpc_started)) {
        /* Channels still registered belong to snapshots someone leaked. */
        grpc_shutdown();
        atomic_store(&grpc_started, false);
    }
}

/* ---- the API ---------------------------------------------------------------- */

static int start_batch(pt_grpc_call_t *c, const grpc_op *ops, size_t n, int kind)
{
    tag_t *t = &c->tags[kind];
    t->call = c;
    t->kind = (uint8_t)kind;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e != GRPC_CALL_OK)
        return PT_ERR_INTERNAL;
    c->pending++;
    return 0;
}

static grpc_byte_buffer *make_buf(const uint8_t *msg, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static int mod_call_start(pt_worker_t *w, const pt_grpc_call_req_t *r,
                          const pt_grpc_call_cbs_t *cbs, void *ud, pt_grpc_call_t **out)
{
    if (r->upstream == NULL || r->method.len == 0 || cbs->on_message == NULL ||
        cbs->on_done == NULL || (r->unary && (r->msg == NULL || !r->close)))
        return PT_ERR_INVALID;
    size_t ep;
    chan_t *ch = pick_channel(r->upstream, &ep);
    if (ch == NULL)
        return PT_ERR_UNAVAILABLE;
    wstate_t *ws = ws_of(w);
    if (ws == NULL)
        return PT_ERR_INTERNAL;
    pt_grpc_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PT_ERR_NOMEM;
    c->ws = ws;
    c->cbs = *cbs;
    c->ud = ud;
    c->unary = r->unary;
    c->endpoint = r->upstream->cluster->endpoints[ep].url;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md_in);
    grpc_metadata_array_init(&c->md_trail);
    c->next = ws->calls;
    if (ws->calls != NULL)
        ws->calls->prev = c;
    ws->calls = c;

    gpr_timespec deadline =
        r->timeout_ms != 0
            ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                           gpr_time_from_millis((int64_t)r->timeout_ms, GPR_TIMESPAN))
            : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice method = grpc_slice_from_copied_buffer(r->method.base, r->method.len);
    c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ws->cq, method, NULL,
                                       deadline, NULL);
    grpc_slice_unref(method);
    if (c->call == NULL)
        goto fail;

    if (r->md_cnt != 0) {
        c->md_out = calloc(r->md_cnt, sizeof(*c->md_out));
        if (c->md_out == NULL)
            goto fail;
        for (size_t i = 0; i < r->md_cnt; i++) {
            c->md_out[i].key = grpc_slice_from_copied_buffer(r->md[i].name.base, r->md[i].name.len);
            c->md_out[i].value =
                grpc_slice_from_copied_buffer(r->md[i].value.base, r->md[i].value.len);
            c->md_out_cnt++;
        }
    }

    grpc_op ops[6];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = c->md_out_cnt;
    ops[n].data.send_initial_metadata.metadata = c->md_out;
    n++;
    if (r->msg != NULL) {
        c->send_buf = make_buf(r->msg, r->msg_len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_buf;
        n++;
    }
    if (r->close) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        c->closed = true;
    }
    if (r->unary) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->md_in;
        n++;
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n].data.recv_message.recv_message = &c->recv_buf;
        n++;
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &c->md_trail;
        ops[n].data.recv_status_on_client.status = &c->status;
        ops[n].data.recv_status_on_client.status_details = &c->details;
        n++;
        c->send_busy = c->recv_busy = true;
        if (start_batch(c, ops, n, TAG_UNARY) != 0)
            goto fail;
    } else {
        c->send_busy = true; /* initial metadata at least: on_sent tells when it is out */
        if (start_batch(c, ops, n, TAG_SEND) != 0)
            goto fail;
        grpc_op st;
        memset(&st, 0, sizeof(st));
        st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        st.data.recv_status_on_client.trailing_metadata = &c->md_trail;
        st.data.recv_status_on_client.status = &c->status;
        st.data.recv_status_on_client.status_details = &c->details;
        if (start_batch(c, &st, 1, TAG_STATUS) != 0) {
            /* The send batch is gRPC's now: cancel and let it complete. */
            c->detached = true;
            grpc_call_cancel(c->call, NULL);
            return PT_ERR_INTERNAL;
        }
    }
    *out = c;
    return 0;

fail:
    c->detached = true;
    maybe_free(c);
    return PT_ERR_INTERNAL;
}

static int mod_call_send(pt_grpc_call_t *c, const uint8_t *msg, size_t len, bool close)
{
    if (c == NULL || c->unary || c->closed || c->send_busy || c->detached)
        return PT_ERR_INVALID;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (msg != NULL) {
        c->send_buf = make_buf(msg, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_buf;
        n++;
    }
    if (close) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        c->closed = true;
    }
    if (n == 0)
        return 0;
    c->send_busy = true;
    if (start_batch(c, ops, n, TAG_SEND) != 0) {
        c->send_busy = false;
        if (c->send_buf != NULL) {
            grpc_byte_buffer_destroy(c->send_buf);
            c->send_buf = NULL;
        }
        return PT_ERR_INTERNAL;
    }
    return 0;
}

static int mod_call_close(pt_grpc_call_t *c)
{
    return mod_call_send(c, NULL, 0, true);
}

static int mod_call_recv(pt_grpc_call_t *c)
{
    if (c == NULL || c->unary || c->recv_busy || c->eos || c->detached)
        return PT_ERR_INVALID;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->got_headers) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->md_in;
        n++;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->recv_buf;
    n++;
    c->recv_busy = true;
    if (start_batch(c, ops, n, TAG_RECV) != 0) {
        c->recv_busy = false;
        return PT_ERR_INTERNAL;
    }
    return 0;
}

static void mod_call_cancel(pt_grpc_call_t *c)
{
    if (c == NULL || c->detached)
        return;
    c->detached = true;
    if (c->call != NULL && c->pending != 0)
        grpc_call_cancel(c->call, NULL);
    maybe_free(c);
}

static const char *mod_call_endpoint(const pt_grpc_call_t *c)
{
    return c != NULL ? c->endpoint : NULL;
}

/* ---- the module's table ------------------------------------------------------- */

static int mod_init(const pt_grpc_host_t *h)
{
    host = *h;
    return 0;
}

const pt_grpc_module_t pt_grpc_module = {
    .abi = PT_GRPC_MODULE_ABI,
    .size = sizeof(pt_grpc_module_t),
    .version = PORTICO_VERSION,
    .init = mod_init,
    .upstream_new = mod_upstream_new,
    .upstream_free = mod_upstream_free,
    .call_start = mod_call_start,
    .call_send = mod_call_send,
    .call_close = mod_call_close,
    .call_recv = mod_call_recv,
    .call_cancel = mod_call_cancel,
    .call_endpoint = mod_call_endpoint,
    .worker_dispose = mod_worker_dispose,
    .global_shutdown = mod_global_shutdown,
};
