/*
 * h2.c -- the HTTP/2 codec: an nghttp2 server session per connection, each
 * stream turned into a pt_req_t (request.h).
 *
 * Shape of a connection:
 *   connection read   -> nghttp2_session_mem_recv -> callbacks below fill
 *                        requests; finished heads are dispatched (headers_done)
 *                        only after the whole read was processed, so a
 *                        HEADERS+RST_STREAM pair in one read never starts work.
 *   request.c ops     -> per-stream output queue (evbuffer), flush scheduled
 *   flush             -> nghttp2_session_mem_send into the connection output
 *                        (conn.h: written once per batch), stopping above
 *                        OUT_HIGH; the drain callback (low watermark)
 *                        continues. DATA frames move bytes from the
 *                        stream queue without an extra copy (NO_COPY).
 *   one timer         -> SETTINGS ack, connection idle, drain phases, stream
 *                        header/body/send timeouts; re-armed lazily.
 *
 * Safety limits that nghttp2 1.52 does not enforce itself are enforced here
 * (SECURITY-CASES §1, §2.2): the decoded header list size and field count
 * (counted while decoding, HPACK kept in sync, 431 answered, connection closed
 * after repeated over-limit blocks), a glitch budget for client-provoked
 * errors and zero-progress frames (see count_frame()), a premature-reset ratio on top of nghttp2's RST_STREAM bucket, the
 * number of requests per connection, and request-body flow control driven by
 * what the handler actually consumed (manual WINDOW_UPDATEs).
 *
 * HTTP messaging (RFC 9113 §8) is checked here, not by nghttp2 (its HTTP
 * messaging is off: ~2k instructions a request, issue 7): every field goes
 * through the rules of http/h2rules.h, their verdicts kept per HPACK entry
 * (field_verdict()); a malformed request gets RST_STREAM(PROTOCOL_ERROR) and
 * a glitch and is never dispatched (malformed()).
 *
 * Extended CONNECT (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is sent, so
 * the rules accept `:protocol` on CONNECT; it becomes req->upgrade. A stream
 * the handler turns into a tunnel (op_tunnel) keeps its DATA path both ways
 * and its 200; only the stream timers change (stream_limit).
 *
 * Re-entrancy: the libevent callbacks are the only places that may free the
 * connection. They bracket their work with enter()/leave(); a close requested
 * inside (from an nghttp2 callback, a timeout, an error) is carried out by the
 * outermost leave(). The request-side ops never close anything: they queue
 * and schedule a flush.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include "core/clock.h"
#include "core/config.h"
#include "net/conn.h"
#include "http/h2.h"
#include "http/h2mem.h"
#include "http/h2rules.h"
#include "http/hpack_policy.h"
#include "http/reqcheck.h"
#include "observe/metrics.h"
#include "core/request.h"
#include "portico/transcoder/alloc.h"
#include "portico/transcoder/wkt.h"

/* Output: stop serializing frames while this much is waiting in the socket's
 * output buffer; continue when it drained to OUT_LOW. Bounds memory per
 * connection regardless of how many streams have data queued. */
#define OUT_HIGH (64u * 1024u)
#define OUT_LOW (16u * 1024u)

/* Timers and budgets that have no config key (yet). */
#define SETTINGS_ACK_MS 10000u  /* client must ACK our SETTINGS (nghttpx: 10 s) */
#define DRAIN_RTT_MS 1000u      /* phase 1 -> phase 2 of the GOAWAY at the latest */
#define CLOSE_LINGER_MS 5000u   /* flushing a final GOAWAY before closing */
#define PREMATURE_MIN 100u      /* streams seen before the reset ratio applies */
#define HDR_OVERLIMIT_MAX 4u    /* over-limit header blocks before GOAWAY */
#define WU_CREDIT_PER_DATA 4u   /* WINDOW_UPDATEs a DATA frame we sent may earn back ... */
#define WU_CREDIT_PER_STREAM 2u /* ... and a request stream the client opened */
#define WU_CREDIT_MAX 1024u     /* earned credit is not banked beyond this */
#define DEFAULT_STREAM_IDLE_MS (5u * 60u * 1000u)
#define SPARE_STREAMS 16u       /* freed streams a connection keeps for its next ones */
#define VERDICT_SETS 8u         /* field verdicts kept per connection: sets (a power of two) ... */
#define VERDICT_WAYS 4u         /* ... of four ways ... */
#define VERDICTS (VERDICT_SETS * VERDICT_WAYS)
#define VERDICT_MAX_FIELD 256u  /* ... for fields of name + value up to this many bytes */
#define VERDICT_CREDIT 3u
#define FLUSH_BUF 4096u         /* frames flush() gathers before adding them to the output */
#define INLINE_OUT 128u         /* response bytes a stream holds in itself (see h2_stream_t.inl) */
#define STREAM_SLOTS 64u        /* open streams found by id without nghttp2 (a power of two) */

static const uint8_t DRAIN_PING[8] = {'p', 't', 'd', 'r', 'a', 'i', 'n', '1'};

typedef struct h2_conn h2_conn_t;

typedef struct h2_stream {
    h2_conn_t *c;
    int32_t id;
    pt_req_t *req;             /* NULL once the codec hold was given back */
    struct evbuffer *out;      /* response body bytes not yet framed */
    uint64_t recv_total;       /* DATA bytes handed to the request */
    uint64_t consumed_total;   /* ... of which the handler consumed (window reopened) */
    uint64_t last_ms;          /* last frame received or DATA sent on this stream */
    uint32_t hdr_bytes;        /* current header block: sum of name+value+32 */
    uint32_t hdr_cnt;          /* current header block: regular fields */
    int reject;                /* PT_ERR_* to answer instead of running the request */
    const char *reject_why;
    pt_str_t host;             /* the `host` field, if any */
    bool is_trailer_block;     /* the block being decoded is the request's trailers */
    bool over_limit;           /* current block went over a limit: fields are dropped */
    bool dispatch;             /* head complete, headers_done pending after this read */
    bool dispatched;           /* pt__req_headers_done was called */
    bool end_pending;          /* END_STREAM seen before dispatch */
    bool head_pending;         /* send_head called, response HEADERS not submitted yet */
    bool submitted;            /* response HEADERS submitted */
    bool out_end;              /* the handler ended the body */
    bool deferred;             /* our data provider returned DEFERRED */
    bool resp_complete;        /* END_STREAM sent */
    bool app_reset;            /* request.c asked for RST_STREAM (truncation) */
    bool client_reset;         /* the peer sent RST_STREAM */
    bool notify_writable;      /* output drained: tell the handler after this flush */
    bool glitched;             /* already counted as a glitch */
    bool tunnel;               /* an extended CONNECT turned into a tunnel (op_tunnel) */
    bool malformed;            /* broke an HTTP messaging rule: RST_STREAM sent, never dispatched */
    bool prio_set, prio_bad;   /* an RFC 9218 `priority` field was read / one was not a dictionary */
    uint8_t urgency;           /* ... its urgency and incremental flag */
    bool incremental;
    pt_h2_rules_t rules;       /* the request's messaging rules state (h2rules.h) */
    struct h2_stream *prev, *next;
    uint16_t inl_off, inl_len; /* inl[inl_off..inl_len): body bytes not yet framed, before `out` */
    /* A small body (most answers) is kept here rather than in `out`: an
     * evbuffer chain is a malloc and a free for every response (~600
     * instructions with the moves, callgrind). Used only while `out` is
     * empty, so the bytes keep their order. Last: stream_new() clears what
     * comes before it only. */
    unsigned char inl[INLINE_OUT];
} h2_stream_t;

struct h2_conn {
    pt_conn_t *conn;
    pt_worker_t *worker;
    struct event_base *base;
    struct evbuffer *out;      /* the connection's output (pt_conn_output) */
    nghttp2_session *ng;
    struct event *flush_ev;
    struct event *timer;
    uint64_t timer_at;         /* when `timer` fires (0: not armed) */

    /* limits, copied from the snapshot at start */
    uint32_t max_hdr_bytes, max_hdr_cnt, max_requests, max_streams;
    uint32_t stream_window, conn_window;
    bool allow_underscores;
    uint64_t idle_ms, header_ms, body_ms, send_ms, drain_ms, stream_idle_ms;

    h2_stream_t *head, *tail;  /* open streams, oldest first */
    unsigned nstreams;
    h2_stream_t *spare;        /* freed streams kept for reuse, with their `out` (empty) */
    unsigned nspare;
    const pt_allocator_t *xa;  /* the worker's h2mem lists (streams come from them) */
    h2_stream_t *hdr_cache;    /* the stream of the header block being decoded (on_header) */
    h2_stream_t *by_id[STREAM_SLOTS]; /* open streams by (id / 2) % STREAM_SLOTS, see stream_of() */
    struct verdict_ent {       /* field verdicts (h2rules.h) by HPACK entry, see field_verdict() */
        nghttp2_rcbuf *name, *value;
        pt_h2_verdict_t vd;
        uint8_t credit; /* hits banked against eviction (VERDICT_CREDIT at most) */
    } verdicts[VERDICTS];
    pt_h2_verdict_t verdict_tmp; /* the verdict of a field too long to keep */
    uint8_t hpack_seeded;      /* never-indexed names indexed once (pt_hpack_nv_flags_seeded) */
    uint64_t requests;         /* streams opened by the client */
    uint64_t premature;        /* streams the client reset before our response ended */
    unsigned hdr_overlimit;    /* header blocks over the limits */
    double glitch_tokens;
    double glitch_burst, glitch_rate; /* limits.h2_glitch_burst / h2_glitch_rate */
    uint64_t glitch_ms;
    uint32_t wu_credit;        /* WINDOW_UPDATEs earned by DATA we sent / streams opened */
    uint64_t unreturned_conn;  /* DATA bytes we sent that no connection WINDOW_UPDATE returned yet */
    uint64_t unreturned_strm;  /* ... that no stream WINDOW_UPDATE returned yet (all streams) */

    uint64_t start_ms, last_ms; /* last_ms: start, or last time a stream closed */
    uint64_t tick_ms;           /* while feed()/flush() run: the clock read once at their
                                 * start, for the callbacks' time stamps (0 otherwise) */
    uint64_t settings_ms;       /* when our SETTINGS went out; 0 once ACKed */
    int drain_phase;            /* 0 none, 1 shutdown notice sent, 2 final GOAWAY sent */
    uint64_t drain_start_ms;
    uint64_t closing_ms;        /* flushing before close since (0: not closing) */
    bool read_paused;
    bool dispatch_pending;
    bool in_flush;
    bool flush_sched;           /* flush_ev is active (schedule_flush) */
    bool attached;              /* conn->codec is us and the connection calls us */
    bool terminating;           /* GOAWAY ending the session is queued: start nothing new */
    uint32_t rx_to_hdr;         /* input bytes before the next frame header (client magic first) */
    pt_conn_t *io_conn;         /* the connection whose callbacks point at us (attached) */

    uint8_t *obuf;              /* during flush(): frames gathered for one add to `out` */
    size_t olen, ocap;
    unsigned depth;             /* enter()/leave() nesting */
    bool close_pending;         /* close at the outermost leave() */
};

static const pt_codec_ops_t h2_codec_ops;
static const pt_stream_ops_t h2_stream_ops;

/* ---- small helpers ------------------------------------------------------ */

/* The time stamp for stream and connection bookkeeping: one clock read per
 * feed() or flush() rather than one per header field and frame. */
static uint64_t conn_now(const h2_conn_t *c)
{
    return c->tick_ms != 0 ? c->tick_ms : pt_now_ms();
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void oom(void)
{
    fputs("portico: out of memory (h2)\n", stderr);
    abort();
}

static pt_str_t nv_str(const uint8_t *p, size_t len)
{
    return (pt_str_t){(const char *)p, len};
}

/* Activates the flush event once until it runs (a request asks three times:
 * head, body, body consumed; event_active of an active event still costs
 * ~60 instructions, callgrind). */
static void schedule_flush(h2_conn_t *c)
{
    if (c->flush_ev != NULL && !c->in_flush && !c->flush_sched) {
        c->flush_sched = true;
        event_active(c->flush_ev, EV_WRITE, 0);
    }
}

/* Arms the timer to fire no later than `at` (lazy: firing early is harmless,
 * on_timer recomputes the real next deadline). */
static void arm_at(h2_conn_t *c, uint64_t at)
{
    if (c->timer == NULL || at == UINT64_MAX)
        return;
    if (c->timer_at != 0 && c->timer_at <= at)
        return;
    uint64_t now = pt_now_ms();
    uint64_t d = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(d / 1000u), (suseconds_t)((d % 1000u) * 1000u)};
    event_add(c->timer, &tv);
    c->timer_at = at;
}

/* ---- streams ------------------------------------------------------------ */

/* The worker's open-streams gauge (the dashboard): one relaxed store. */
static inline void streams_gauge(h2_conn_t *c, int d)
{
    if (c->worker != NULL && c->worker->metrics != NULL)
        pt_metrics_gauge_add(&c->worker->metrics->h2_streams_active, d);
}

/* Response body bytes of `s` not yet framed. */
static size_t out_len(const h2_stream_t *s)
{
    return (size_t)(s->inl_len - s->inl_off) + evbuffer_get_length(s->out);
}

/* A stream from the connection's spares (its empty `out` kept), else a new one. */
static h2_stream_t *stream_new(h2_conn_t *c, int32_t id)
{
    h2_stream_t *s = c->spare;
    struct evbuffer *out;
    if (s != NULL) {
        c->spare = s->next;
        c->nspare--;
        out = s->out;
    } else {
        s = c->xa->alloc(c->xa->ud, sizeof(*s));
        out = evbuffer_new();
        if (s == NULL || out == NULL)
            oom();
    }
    memset(s, 0, offsetof(h2_stream_t, inl));
    pt_h2_rules_init(&s->rules);
    s->c = c;
    s->id = id;
    s->out = out;
    c->by_id[((uint32_t)id >> 1) & (STREAM_SLOTS - 1u)] = s;
    s->last_ms = conn_now(c);
    s->prev = c->tail;
    if (c->tail != NULL)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->nstreams++;
    streams_gauge(c, 1);
    return s;
}

static void stream_free(h2_stream_t *s)
{
    h2_conn_t *c = s->c;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    else
        c->tail = s->prev;
    c->nstreams--;
    streams_gauge(c, -1);
    if (c->hdr_cache == s)
        c->hdr_cache = NULL;
    if (c->by_id[((uint32_t)s->id >> 1) & (STREAM_SLOTS - 1u)] == s)
        c->by_id[((uint32_t)s->id >> 1) & (STREAM_SLOTS - 1u)] = NULL;
    size_t left = evbuffer_get_length(s->out);
    if (c->nspare < SPARE_STREAMS && (left == 0 || evbuffer_drain(s->out, left) == 0)) {
        s->next = c->spare;
        c->spare = s;
        c->nspare++;
        return;
    }
    evbuffer_free(s->out);
    c->xa->free(c->xa->ud, s);
}

static void spares_free(h2_conn_t *c)
{
    while (c->spare != NULL) {
        h2_stream_t *s = c->spare;
        c->spare = s->next;
        evbuffer_free(s->out);
        c->xa->free(c->xa->ud, s);
    }
    c->nspare = 0;
}

/* Gives the codec's hold on the request back: done when the response went
 * out whole (or request.c itself asked for the reset), aborted otherwise. */
static void stream_release(h2_stream_t *s)
{
    pt_req_t *req = s->req;
    if (req == NULL)
        return;
    s->req = NULL;
    req->stream = NULL;
    if (pt__resp_ended(req) && (s->resp_complete || s->app_reset))
        pt__req_codec_done(req);
    else
        pt__req_abort(req);
}

/* The timeout that currently applies to a stream (0: none), and whether its
 * expiry ends the whole connection. */
static uint64_t stream_limit(const h2_conn_t *c, const h2_stream_t *s, bool *conn_wide)
{
    *conn_wide = false;
    if (s->req == NULL || s->app_reset)
        return 0;
    if (!s->dispatched && !s->dispatch) {
        *conn_wide = true; /* a head still arriving (CONTINUATIONs trickling) blocks everything */
        return c->header_ms;
    }
    if (s->tunnel) /* quiet is normal in a tunnel: its idle timer is the core's */
        return out_len(s) != 0 ? c->send_ms : 0;
    if (!s->req->body_done && s->recv_total == s->consumed_total)
        return c->body_ms; /* the client has window and sends nothing */
    if (out_len(s) != 0)
        return c->send_ms; /* the client does not open its window for our data */
    if (!s->resp_complete)
        return c->stream_idle_ms;
    return 0;
}

static void arm_stream(h2_conn_t *c, const h2_stream_t *s)
{
    bool conn_wide;
    uint64_t limit = stream_limit(c, s, &conn_wide);
    if (limit != 0)
        arm_at(c, s->last_ms + limit);
}

/* The stream of `id`. Client stream ids are consecutive odd numbers, so the
 * open ones rarely share a slot of `by_id` (a newer stream takes the slot of
 * an older one, which is then found by nghttp2's map look-up: ~55
 * instructions, six times a request otherwise, callgrind). stream_new()
 * fills the slot, stream_free() empties it. */
static h2_stream_t *stream_of(h2_conn_t *c, int32_t id)
{
    h2_stream_t *s = c->by_id[((uint32_t)id >> 1) & (STREAM_SLOTS - 1u)];
    if (s != NULL && s->id == id)
        return s;
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

/* ---- connection end ----------------------------------------------------- */

/* Frees everything of the codec (requests aborted); does not close `conn`. */
static void teardown(h2_conn_t *c)
{
    while (c->head != NULL) {
        h2_stream_t *s = c->head;
        /* stream_free() unlinks s, so c->head is never a freed stream here;
         * the analyzer loses that across the opaque calls. */
        if (c->ng != NULL)
            nghttp2_session_set_stream_user_data(c->ng, s->id, NULL); // NOLINT(clang-analyzer-unix.Malloc): head is live
        stream_release(s); // NOLINT(clang-analyzer-unix.Malloc): head is live
        stream_free(s);
    }
    spares_free(c);
    for (size_t i = 0; i < VERDICTS; i++) {
        nghttp2_rcbuf_decref(c->verdicts[i].name);
        nghttp2_rcbuf_decref(c->verdicts[i].value);
    }
    if (c->ng != NULL)
        nghttp2_session_del(c->ng);
    c->ng = NULL;
    if (c->flush_ev != NULL)
        event_free(c->flush_ev);
    if (c->timer != NULL)
        event_free(c->timer);
    c->flush_ev = c->timer = NULL;
    if (c->attached && c->io_conn != NULL)
        pt_conn_set_callbacks(c->io_conn, NULL, NULL, NULL, NULL);
    if (c->conn != NULL && c->conn->codec == c) {
        c->conn->codec = NULL;
        c->conn->codec_ops = NULL;
    }
    free(c);
}

/* Closes now, or at the outermost leave() when inside a callback. */
static void close_now(h2_conn_t *c)
{
    if (c->depth > 0) {
        c->close_pending = true;
        return;
    }
    pt_conn_t *conn = c->conn;
    teardown(c);
    if (conn != NULL)
        pt_conn_close(conn);
}

/* The session is over: flush what is queued (a GOAWAY), then close. */
static void finish(h2_conn_t *c)
{
    if (c->closing_ms != 0)
        return;
    c->closing_ms = pt_now_ms();
    pt_conn_pause_read(c->io_conn);
    if (evbuffer_get_length(c->out) == 0) {
        close_now(c);
        return;
    }
    pt_conn_set_lowat(c->io_conn, 0); /* on_drain once everything is written */
    arm_at(c, c->closing_ms + CLOSE_LINGER_MS);
}

static void enter(h2_conn_t *c)
{
    c->depth++;
}

/* Returns true when the connection was closed (c is freed). */
static bool leave(h2_conn_t *c)
{
    if (--c->depth == 0 && c->close_pending) {
        c->close_pending = false;
        close_now(c);
        return true;
    }
    return false;
}

/* Tears the session down with a GOAWAY(code) once it is written. */
static void terminate(h2_conn_t *c, uint32_t code)
{
    c->terminating = true;
    if (c->ng != NULL)
        nghttp2_session_terminate_session(c->ng, code);
    schedule_flush(c);
}

/* ---- abuse accounting --------------------------------------------------- */

/* One client-provoked error (malformed field or frame, over-limit block,
 * refused stream): a token bucket; empty -> GOAWAY(ENHANCE_YOUR_CALM). This
 * covers MadeYouReset-style floods that nghttp2's RST bucket never sees. */
static void glitch(h2_conn_t *c)
{
    uint64_t now = pt_now_ms();
    c->glitch_tokens += (double)(now - c->glitch_ms) * c->glitch_rate / 1000.0;
    if (c->glitch_tokens > c->glitch_burst)
        c->glitch_tokens = c->glitch_burst;
    c->glitch_ms = now;
    c->glitch_tokens -= 1.0;
    if (c->glitch_tokens < 0)
        terminate(c, NGHTTP2_ENHANCE_YOUR_CALM);
}

static void earn_wu_credit(h2_conn_t *c, uint32_t n)
{
    c->wu_credit = c->wu_credit + n > WU_CREDIT_MAX ? WU_CREDIT_MAX : c->wu_credit + n;
}

/*
 * Frames that cost us a wake-up and a parse but move no request forward
 * (issue 14: 4 connections sending them used 174% CPU). Debian's nghttp2 1.52
 * has no limit of its own for any of them (no empty-DATA option, no glitch
 * limiter), and some never reach a callback (frames of unknown types,
 * WINDOW_UPDATE on closed streams), so they are classified here from the raw
 * frame header, before nghttp2 sees them, and each one costs a glitch token:
 *  - DATA without END_STREAM carrying no payload (or only padding);
 *  - PRIORITY (we advertise SETTINGS_NO_RFC7540_PRIORITIES: they change nothing);
 *  - extension frame types (> CONTINUATION): Portico implements none;
 *  - WINDOW_UPDATE that neither returns DATA bytes we sent (stream and
 *    connection level counted apart) nor is covered by the credit earned
 *    by DATA frames we sent or streams the client opened (Envoy's "window
 *    updates per data frame sent" idea), whatever its increment: small
 *    earned ones are how gRPC clients return the window of small messages.
 *    Both are judged after nghttp2 processed the frames before it, so the
 *    verdict never depends on how many frames one read held (our load).
 * A client sending a few (a browser's PRIORITY frames, a connection-window
 * WINDOW_UPDATE at start) stays far inside the budget. `need` is how many
 * payload bytes the classification reads (0, 1 for a padded DATA, 4 for a
 * WINDOW_UPDATE); a frame too short for that is left to nghttp2's own checks.
 */
static size_t classify_need(uint8_t type, uint8_t flags, uint32_t flen)
{
    if (type == NGHTTP2_DATA && (flags & NGHTTP2_FLAG_PADDED) && flen >= 1)
        return 1;
    if (type == NGHTTP2_WINDOW_UPDATE && flen == 4)
        return 4;
    return 0;
}

static bool zero_progress(h2_conn_t *c, const uint8_t *hd, uint32_t flen)
{
    uint8_t type = hd[3], flags = hd[4];
    const uint8_t *pl = hd + 9;
    switch (type) {
    case NGHTTP2_DATA:
        if (flags & NGHTTP2_FLAG_END_STREAM)
            return false; /* an empty final DATA is how a body ends */
        if (flags & NGHTTP2_FLAG_PADDED)
            return flen >= 1 && (uint32_t)pl[0] + 1 == flen; /* longer padding: nghttp2 refuses */
        return flen == 0;
    case NGHTTP2_PRIORITY:
        return true;
    case NGHTTP2_WINDOW_UPDATE: {
        if (flen != 4)
            return false; /* FRAME_SIZE_ERROR, nghttp2's */
        uint32_t incr = (((uint32_t)pl[0] & 0x7f) << 24) | ((uint32_t)pl[1] << 16) |
                        ((uint32_t)pl[2] << 8) | pl[3];
        if (incr == 0)
            return false; /* a protocol error nghttp2 reports (on_invalid_frame counts it) */
        /* Small increments are legitimate when earned: gRPC clients return
         * the window message by message (a few bytes each), so 60
         * concurrent small calls brought 60+ tiny WINDOW_UPDATEs, and one
         * DATA frame of ours carrying many messages brings many. An update
         * returning bytes we sent is progress whatever the number of
         * frames they went in (which depends on our load, not on the
         * peer); beyond that, the frame credit covers window raises. */
        uint64_t *unreturned = (hd[5] & 0x7f) == 0 && hd[6] == 0 && hd[7] == 0 && hd[8] == 0
                                   ? &c->unreturned_conn
                                   : &c->unreturned_strm;
        if (*unreturned != 0) {
            *unreturned -= incr < *unreturned ? incr : *unreturned;
            return false;
        }
        if (c->wu_credit == 0)
            return true;
        c->wu_credit--;
        return false;
    }
    default:
        return type > NGHTTP2_CONTINUATION;
    }
}

/* ---- drain -------------------------------------------------------------- */

static void drain_final(h2_conn_t *c)
{
    if (c->drain_phase >= 2 || c->ng == NULL)
        return;
    c->drain_phase = 2;
    nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    schedule_flush(c);
}

static void drain_begin(h2_conn_t *c)
{
    if (c->drain_phase != 0 || c->ng == NULL || c->closing_ms != 0)
        return;
    c->drain_phase = 1;
    c->drain_start_ms = pt_now_ms();
    /* RFC 9113 §6.8: GOAWAY(2^31-1) first, the real one about an RTT later so
     * requests already in flight towards us are not lost. The PING measures
     * that RTT; the timer bounds it. */
    if (nghttp2_submit_shutdown_notice(c->ng) != 0) {
        drain_final(c);
        return;
    }
    nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, DRAIN_PING);
    arm_at(c, c->drain_start_ms + DRAIN_RTT_MS);
    if (c->drain_ms != 0)
        arm_at(c, c->drain_start_ms + c->drain_ms);
    schedule_flush(c);
}

/* ---- response side (pt_stream_ops_t) ------------------------------------ */

static bool is_conn_specific(pt_str_t n)
{
    return pt_str_eq(n, PT_STR("connection")) || pt_str_eq(n, PT_STR("keep-alive")) ||
           pt_str_eq(n, PT_STR("proxy-connection")) || pt_str_eq(n, PT_STR("transfer-encoding")) ||
           pt_str_eq(n, PT_STR("upgrade")) || pt_str_eq(n, PT_STR("content-length"));
}

/* Decimal digits of `v` at the end of `buf` (24 bytes), without printf (once a response). */
static pt_str_t fmt_u64(char buf[24], uint64_t v)
{
    size_t i = 24;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    return (pt_str_t){&buf[i], 24 - i};
}

/* A field of a header block that goes out (not a pseudo-header, not connection-specific). */
static bool field_sent(pt_str_t name)
{
    return name.len != 0 && name.base[0] != ':' && !is_conn_specific(name);
}

/*
 * The nghttp2 fields of a response head or trailer block, with every name and
 * value copied behind them in the request's arena (pt_hpack_nv_copy): the
 * arena is the stream's until on_stream_close, after which nghttp2 drops a
 * frame it still holds for the stream unread. The fields of `h` start at slot
 * `lead`; `extra` slots in all are left to the caller (before and after
 * them), with `extra_bytes` of room at *strs for their strings. Sets *n to
 * the slots used so far (`lead` included); NULL when the arena is over its
 * limit.
 */
static nghttp2_nv *block_nva(h2_conn_t *c, pt_req_t *req, const pt_headers_t *h, size_t lead,
                             size_t extra, size_t extra_bytes, char **strs, size_t *n)
{
    size_t bytes = extra_bytes;
    for (size_t i = 0; i < h->cnt; i++)
        bytes += h->v[i].name.len + h->v[i].value.len;
    nghttp2_nv *nva = pt_arena_alloc(req->arena, (h->cnt + extra) * sizeof(*nva) + bytes);
    if (nva == NULL)
        return NULL;
    char *p = (char *)(nva + h->cnt + extra);
    size_t k = lead;
    for (size_t i = 0; i < h->cnt; i++) {
        if (!field_sent(h->v[i].name))
            continue;
        nghttp2_nv nv = pt_hpack_nv_copy(&p, h->v[i].name, h->v[i].value);
        pt_str_t copied = {(const char *)nv.name, nv.namelen};
        nv.flags |= pt_hpack_nv_flags_seeded(copied, &c->hpack_seeded);
        nva[k++] = nv;
    }
    *strs = p;
    *n = k;
    return nva;
}

/* The frames flush() gathered, to the connection output. */
static void out_gathered(h2_conn_t *c)
{
    if (c->olen != 0 && evbuffer_add(c->out, c->obuf, c->olen) != 0)
        oom();
    c->olen = 0;
}

/* Bytes of the next frame(s): gathered while flush() runs (one evbuffer_add
 * for all of them: each add is ~130 instructions with the output's
 * callbacks, two a request otherwise, callgrind), else added at once. */
static void out_put(h2_conn_t *c, const void *p, size_t n)
{
    if (c->obuf != NULL && n <= c->ocap - c->olen) {
        memcpy(c->obuf + c->olen, p, n);
        c->olen += n;
        return;
    }
    out_gathered(c);
    if (evbuffer_add(c->out, p, n) != 0)
        oom();
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user_data);

/* Submits the response HEADERS for a stream whose head is pending. When the
 * whole response is already known to be empty, HEADERS carries END_STREAM. */
static void submit_head(h2_stream_t *s)
{
    h2_conn_t *c = s->c;
    pt_req_t *req = s->req;
    s->head_pending = false;
    if (req == NULL || s->app_reset)
        return;
    int st = req->resp_status;
    size_t n = 0;
    char *p = NULL;
    /* one slot up front for :status (3 digits), one at the end for content-length (<= 20 digits) */
    nghttp2_nv *nva = st >= 200 && st <= 999
                          ? block_nva(c, req, &req->resp_headers, 1, 2, 7 + 3 + 14 + 20, &p, &n)
                          : NULL;
    if (nva == NULL) {
        s->app_reset = true;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    char status[3] = {(char)('0' + st / 100), (char)('0' + st / 10 % 10), (char)('0' + st % 10)};
    nva[0] = pt_hpack_nv_copy(&p, PT_STR(":status"), (pt_str_t){status, 3});
    if (req->resp_content_length >= 0 && st != 204 && st != 304) {
        char clbuf[24];
        nva[n++] = pt_hpack_nv_copy(&p, PT_STR("content-length"),
                                    fmt_u64(clbuf, (uint64_t)req->resp_content_length));
    }
    bool empty = s->out_end && out_len(s) == 0 && req->resp_trailers.cnt == 0;
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = data_read};
    int rv = nghttp2_submit_response(c->ng, s->id, nva, n, empty ? NULL : &dp);
    if (rv != 0) {
        s->app_reset = true;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    s->submitted = true;
}

static void op_send_head(pt_req_t *req)
{
    h2_stream_t *s = req->stream;
    if (s == NULL || s->submitted || s->head_pending)
        return;
    s->head_pending = true;
    schedule_flush(s->c);
}

static void op_send_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    h2_stream_t *s = req->stream;
    if (s == NULL || s->out_end || s->app_reset)
        return;
    if (pt_str_eq(req->method, PT_STR("HEAD")))
        len = 0; /* a HEAD answer has no DATA (a local reply's body: its length is in the head) */
    if (len != 0) {
        if (len <= INLINE_OUT && s->inl_off == s->inl_len && evbuffer_get_length(s->out) == 0) {
            memcpy(s->inl, data, len);
            s->inl_off = 0;
            s->inl_len = (uint16_t)len;
        } else if (evbuffer_add(s->out, data, len) != 0) {
            oom();
        }
    }
    if (end)
        s->out_end = true;
    if (len != 0 && s->c->send_ms != 0)
        arm_at(s->c, pt_now_ms() + s->c->send_ms);
    if (s->submitted && s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    schedule_flush(s->c);
}

static size_t op_out_pending(pt_req_t *req)
{
    h2_stream_t *s = req->stream;
    return s != NULL ? out_len(s) : 0;
}

static void op_body_consumed(pt_req_t *req, size_t len)
{
    h2_stream_t *s = req->stream;
    if (s == NULL || len == 0)
        return;
    if (len > s->recv_total - s->consumed_total)
        len = (size_t)(s->recv_total - s->consumed_total);
    s->consumed_total += len;
    nghttp2_session_consume(s->c->ng, s->id, len);
    schedule_flush(s->c);
}

static void op_reset(pt_req_t *req)
{
    h2_stream_t *s = req->stream;
    if (s == NULL || s->app_reset || s->resp_complete)
        return;
    s->app_reset = true;
    s->head_pending = false;
    evbuffer_drain(s->out, evbuffer_get_length(s->out));
    s->inl_off = s->inl_len = 0;
    nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    schedule_flush(s->c);
}

/* An extended CONNECT stream is already two-way: its DATA frames are the
 * tunnel both ways. Only the timeouts change (stream_limit). */
static int op_tunnel(pt_req_t *req)
{
    h2_stream_t *s = req->stream;
    if (s == NULL || req->upgrade.len == 0 || s->submitted || s->head_pending || s->app_reset)
        return PT_ERR_INVALID;
    s->tunnel = true;
    return 0;
}

static const pt_stream_ops_t h2_stream_ops = {
    .send_head = op_send_head,
    .send_body = op_send_body,
    .out_pending = op_out_pending,
    .body_consumed = op_body_consumed,
    .send_continue = NULL,
    .reset = op_reset,
    .tunnel = op_tunnel,
};

/* Data provider: frames the stream's queue; DEFERRED while it is empty and
 * the handler has not ended the body (op_send_body resumes it). */
static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user_data)
{
    (void)buf;
    (void)user_data;
    h2_stream_t *s = src->ptr;
    size_t avail = out_len(s);
    if (avail == 0 && !s->out_end) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->out_end && n == avail) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        pt_req_t *req = s->req;
        if (req != NULL && req->resp_trailers.cnt != 0) {
            size_t k = 0;
            char *p;
            nghttp2_nv *nva = block_nva(s->c, req, &req->resp_trailers, 0, 0, 0, &p, &k);
            if (nva != NULL && k != 0 && nghttp2_submit_trailer(ng, id, nva, k) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
    }
    return (ssize_t)n;
}

static int send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *src, void *user_data)
{
    (void)ng;
    h2_conn_t *c = user_data;
    h2_stream_t *s = src->ptr;
    size_t k = (size_t)(s->inl_len - s->inl_off); /* the inline bytes go first */
    if (k > length)
        k = length;
    if (frame->data.padlen == 0 && k == length) {
        /* the whole frame from `inl`: header and payload gathered together */
        uint8_t f[9 + INLINE_OUT];
        memcpy(f, framehd, 9);
        if (k != 0)
            memcpy(f + 9, s->inl + s->inl_off, k);
        out_put(c, f, 9 + k);
        s->inl_off = (uint16_t)(s->inl_off + k);
    } else {
        out_gathered(c); /* what came before goes first */
        if (evbuffer_add(c->out, framehd, 9) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (frame->data.padlen > 0) {
            uint8_t pad[256] = {0};
            pad[0] = (uint8_t)(frame->data.padlen - 1);
            evbuffer_add(c->out, pad, 1);
        }
        if (k != 0) {
            if (evbuffer_add(c->out, s->inl + s->inl_off, k) != 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            s->inl_off = (uint16_t)(s->inl_off + k);
        }
        if (length > k && evbuffer_remove_buffer(s->out, c->out, length - k) != (int)(length - k))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (frame->data.padlen > 1) {
        uint8_t pad[256] = {0};
        evbuffer_add(c->out, pad, frame->data.padlen - 1);
    }
    s->last_ms = conn_now(c);
    earn_wu_credit(c, WU_CREDIT_PER_DATA);
    c->unreturned_conn += frame->hd.length;
    c->unreturned_strm += frame->hd.length;
    pt_req_t *req = s->req;
    if (req != NULL && req->want_writable &&
        out_len(s) <= req->config->limits.max_response_buffer / 2)
        s->notify_writable = true;
    return 0;
}

/* ---- request side: nghttp2 callbacks ------------------------------------ */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    h2_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    int32_t id = frame->hd.stream_id;
    h2_stream_t *s = stream_of(c, id);
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* trailers (a second HEADERS without END_STREAM is malformed, h2rules.h): a new block to count */
        if (s != NULL) {
            c->hdr_cache = s;
            s->is_trailer_block = true;
            s->hdr_bytes = s->hdr_cnt = 0;
            s->over_limit = false;
        }
        return 0;
    }
    c->requests++;
    earn_wu_credit(c, WU_CREDIT_PER_STREAM);
    if (c->drain_phase >= 2 ||
        (c->max_requests != 0 && c->requests > (uint64_t)c->max_requests + c->max_streams)) {
        /* Past the GOAWAY we sent: nghttp2 normally ignores these; refuse what is left. */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s = stream_new(c, id);
    c->hdr_cache = s;
    nghttp2_session_set_stream_user_data(ng, id, s);
    pt_req_t *req = pt__req_new(c->worker, &h2_stream_ops, s);
    s->req = req;
    req->version = 20;
    req->client_addr = pt_arena_strdup(req->arena, c->conn->client_addr); /* outlives conn */
    req->is_tls = c->conn->is_tls;
    req->scheme = c->conn->is_tls ? PT_STR("https") : PT_STR("http");
    arm_stream(c, s);
    if (c->max_requests != 0 && c->requests >= c->max_requests)
        drain_begin(c); /* this one is served; the client moves to a new connection */
    return 0;
}

static void stream_reject(h2_stream_t *s, int st, const char *why)
{
    if (s->reject == 0) {
        s->reject = st;
        s->reject_why = why;
    }
}

/* Stores one request field (pseudo-headers into the request fields). Returns
 * a PT_ERR_* that rejects the request, or 0. */
static int store_field(h2_conn_t *c, h2_stream_t *s, pt_str_t name, pt_str_t value,
                       const pt_h2_verdict_t *vd)
{
    pt_req_t *req = s->req;
    if (name.len != 0 && name.base[0] == ':') {
        pt_str_t v = pt_arena_strdup(req->arena, value);
        if (v.base == NULL)
            return PT_ERR_HEADERS_TOO_LARGE;
        /* the verdict (h2rules.h) says which pseudo-header this is */
        switch (vd->once) {
        case PT_H2R_METHOD:
            req->method = v;
            break;
        case PT_H2R_SCHEME:
            req->scheme = v;
            break;
        case PT_H2R_AUTHORITY:
            req->authority = v;
            break;
        case PT_H2R_PATH:
            req->target = v;
            break;
        case PT_H2R_PROTOCOL:
            req->upgrade = v; /* RFC 8441; pt_h2_rules_head() accepts it only on CONNECT
                               * (we send SETTINGS_ENABLE_CONNECT_PROTOCOL) */
            break;
        default:
            return PT_ERR_INVALID;
        }
        return 0;
    }
    /* The verdict passed the name (non-empty, lowercase token characters;
     * anything else resets the stream). What is left of
     * pt_header_name_valid() is the underscore policy. */
    if (!c->allow_underscores && vd->underscore)
        return PT_ERR_INVALID;
    /* name and value in one arena block, each NUL-terminated */
    char *p = pt_arena_alloc(req->arena, name.len + value.len + 2);
    if (p == NULL)
        return PT_ERR_HEADERS_TOO_LARGE;
    memcpy(p, name.base, name.len);
    p[name.len] = '\0';
    pt_str_t n = {p, name.len};
    p += name.len + 1;
    if (value.len != 0)
        memcpy(p, value.base, value.len);
    p[value.len] = '\0';
    pt_str_t v = {p, value.len};
    if (pt_headers_add_nocopy(&req->headers, n, v) != 0)
        return PT_ERR_HEADERS_TOO_LARGE;
    if (vd->once == PT_H2R_HOST) {
        if (s->host.base != NULL)
            return PT_ERR_INVALID;
        s->host = v;
    } else if (vd->content_length >= 0) {
        req->content_length = vd->content_length; /* digits, <= INT64_MAX (h2rules.c) */
    } else if (name.len == 8 && memcmp(name.base, "priority", 8) == 0 && !s->prio_bad) {
        /* RFC 9218: the response's scheduling among the connection's streams
         * (nghttp2 read it while its HTTP messaging was on); one field that is
         * not a dictionary voids them all, as there */
        if (!s->prio_set) {
            s->urgency = NGHTTP2_EXTPRI_DEFAULT_URGENCY;
            s->incremental = false;
        }
        s->prio_set = true;
        s->prio_bad = !pt_h2_parse_priority((const uint8_t *)v.base, v.len, &s->urgency, &s->incremental);
    }
    return 0;
}

/* The verdict for a field. Fields from the HPACK tables come back as the same
 * nghttp2_rcbuf pair request after request, so verdicts are kept by that
 * pair, holding a reference on both: a kept buffer is never freed, so its
 * address cannot come back as another field's while its verdict is here.
 * Four ways a set (fields a client repeats may share one). Literal
 * fields (new buffers each time) would keep evicting them, and the allocator
 * hands a literal the same address again and again, so it lands on the same
 * set: an entry banks its hits (up to VERDICT_CREDIT) and a miss spends one
 * of the poorest way's instead of replacing it. Fields over VERDICT_MAX_FIELD,
 * and the two that clients never index, are never kept (bounded memory per
 * connection). */
/* :path and content-length: nghttp2-based clients (h2load, curl, nghttp)
 * never put them in the HPACK table, so they come as new buffers every time;
 * keeping their verdicts would only evict the others. */
static bool never_indexed_by_clients(nghttp2_vec n)
{
    return (n.len == 5 && memcmp(n.base, ":path", 5) == 0) ||
           (n.len == 14 && memcmp(n.base, "content-length", 14) == 0);
}

static const pt_h2_verdict_t *field_verdict(h2_conn_t *c, nghttp2_rcbuf *rn, nghttp2_rcbuf *rv,
                                            nghttp2_vec n, nghttp2_vec v)
{
    uintptr_t x = (uintptr_t)rv >> 4; /* allocations are 16-byte aligned: fold the rest */
    x ^= (x >> 5) ^ (x >> 11);
    struct verdict_ent *set = &c->verdicts[VERDICT_WAYS * (x & (VERDICT_SETS - 1u))];
    struct verdict_ent *e = &set[0]; /* an empty way, else the one with the least credit */
    for (size_t w = 0; w < VERDICT_WAYS; w++) {
        struct verdict_ent *h = &set[w];
        if (h->value == rv && h->name == rn) {
            if (h->credit < VERDICT_CREDIT)
                h->credit++;
            return &h->vd;
        }
        if (e->value != NULL && (h->value == NULL || h->credit < e->credit))
            e = h;
    }
    pt_h2_verdict_t vd = pt_h2_rules_classify(n.base, n.len, v.base, v.len);
    if (n.len + v.len > VERDICT_MAX_FIELD || never_indexed_by_clients(n) ||
        (e->value != NULL && e->credit-- > 0)) {
        c->verdict_tmp = vd;
        return &c->verdict_tmp;
    }
    nghttp2_rcbuf_decref(e->name);
    nghttp2_rcbuf_decref(e->value);
    nghttp2_rcbuf_incref(rn);
    nghttp2_rcbuf_incref(rv);
    e->name = rn;
    e->value = rv;
    e->vd = vd;
    e->credit = 0;
    return &e->vd;
}

/* The request broke an HTTP messaging rule (h2rules.h): RST_STREAM
 * (PROTOCOL_ERROR, RFC 9113 §8.1.1) and one glitch, as nghttp2's own HTTP
 * messaging did; the request is never dispatched (if it already was, the
 * stream's close aborts it) and nothing more of it is read. */
static void malformed(h2_conn_t *c, h2_stream_t *s)
{
    s->malformed = true;
    s->dispatch = false;
    s->end_pending = false;
    nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
    if (!s->glitched) {
        s->glitched = true;
        glitch(c);
    }
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, nghttp2_rcbuf *rname,
                     nghttp2_rcbuf *rvalue, uint8_t flags, void *user_data)
{
    (void)ng;
    (void)flags;
    h2_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* one look-up per block, not per field: the stream on_begin_headers saw */
    h2_stream_t *s = c->hdr_cache;
    if (s == NULL || s->id != frame->hd.stream_id)
        s = stream_of(c, frame->hd.stream_id);
    if (s == NULL || s->req == NULL || s->malformed)
        return 0;
    nghttp2_vec nb = nghttp2_rcbuf_get_buf(rname), vb = nghttp2_rcbuf_get_buf(rvalue);
    const uint8_t *name = nb.base, *value = vb.base;
    size_t namelen = nb.len, valuelen = vb.len;
    const pt_h2_verdict_t *vd = field_verdict(c, rname, rvalue, nb, vb);
    if (!pt_h2_rules_apply(&s->rules, vd, s->is_trailer_block)) {
        malformed(c, s);
        return 0;
    }
    s->last_ms = conn_now(c);
    /* Count every decoded field (cookie crumbs included) while decoding; once
     * over, drop the rest but let nghttp2 keep decoding so HPACK stays in sync. */
    uint64_t bytes = (uint64_t)s->hdr_bytes + namelen + valuelen + 32u;
    s->hdr_bytes = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
    if (namelen == 0 || name[0] != ':')
        s->hdr_cnt++;
    if (s->over_limit)
        return 0;
    if (s->hdr_bytes > c->max_hdr_bytes || s->hdr_cnt > c->max_hdr_cnt) {
        s->over_limit = true;
        stream_reject(s, PT_ERR_HEADERS_TOO_LARGE, "request header list over the limit");
        return 0;
    }
    if (s->is_trailer_block || s->reject != 0)
        return 0; /* request trailers are not forwarded; a rejected request needs no more */
    int st = store_field(c, s, nv_str(name, namelen), nv_str(value, valuelen), vd);
    if (st != 0)
        stream_reject(s, st, st == PT_ERR_INVALID ? "invalid request header" : "request too large");
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *user_data)
{
    (void)ng;
    (void)lib_error;
    h2_conn_t *c = user_data;
    h2_stream_t *s = frame->hd.stream_id != 0 ? stream_of(c, frame->hd.stream_id) : NULL;
    if (s == NULL || !s->glitched) {
        if (s != NULL)
            s->glitched = true;
        glitch(c);
    }
    return 0;
}

static bool path_valid(pt_str_t p)
{
    for (size_t i = 0; i < p.len; i++) {
        unsigned char ch = (unsigned char)p.base[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '#')
            return false;
    }
    return true;
}

/* The head is complete: fill the remaining request fields, check them. */
static void head_complete(h2_conn_t *c, h2_stream_t *s, bool end_stream)
{
    pt_req_t *req = s->req;
    if (s->over_limit) {
        c->hdr_overlimit++;
        glitch(c);
        if (c->hdr_overlimit >= HDR_OVERLIMIT_MAX)
            terminate(c, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    if (s->reject == 0) {
        if (pt_str_eq(req->method, PT_STR("CONNECT")) && req->upgrade.len == 0)
            stream_reject(s, PT_ERR_NOT_IMPLEMENTED, "CONNECT is not supported");
        else if (req->upgrade.len != 0 && !pt_str_eq(req->method, PT_STR("CONNECT")))
            stream_reject(s, PT_ERR_INVALID, ":protocol without CONNECT");
        else if (req->method.len == 0 || req->target.len == 0)
            stream_reject(s, PT_ERR_INVALID, "missing :method or :path");
        else if (!path_valid(req->target))
            stream_reject(s, PT_ERR_INVALID, "invalid :path");
        else if (!pt_str_eq(req->scheme, PT_STR("http")) && !pt_str_eq(req->scheme, PT_STR("https")))
            stream_reject(s, PT_ERR_INVALID, "invalid :scheme");
    }
    if (s->reject == 0) {
        /* RFC 9113 §8.3.1: a host that differs from :authority is malformed. */
        if (req->authority.len == 0)
            req->authority = s->host;
        else if (s->host.base != NULL && !pt_str_ieq(s->host, req->authority))
            stream_reject(s, PT_ERR_INVALID, ":authority and host differ");
        if (req->authority.len == 0)
            stream_reject(s, PT_ERR_INVALID, "missing :authority");
    }
    if (s->reject == 0) {
        /* the same method and authority rules as HTTP/1.1 (reqcheck.h) */
        const char *why;
        int st = pt_reqcheck_method(req->method, &why);
        if (st == 0)
            st = pt_reqcheck_authority(req->authority, &why);
        if (st != 0)
            stream_reject(s, st, why);
    }
    if (s->reject == 0) {
        const char *q = memchr(req->target.base, '?', req->target.len);
        if (q != NULL) {
            req->path = (pt_str_t){req->target.base, (size_t)(q - req->target.base)};
            req->query = (pt_str_t){q + 1, req->target.len - req->path.len - 1};
        } else {
            req->path = req->target;
        }
        /* RFC 9113 §8.2.3: cookie crumbs are joined with "; " for HTTP/1 upstreams. */
        size_t ncookie = pt_headers_count(&req->headers, PT_STR("cookie"));
        if (ncookie > 1) {
            size_t total = 0;
            for (size_t i = 0; i < req->headers.cnt; i++)
                if (pt_str_eq(req->headers.v[i].name, PT_STR("cookie")))
                    total += req->headers.v[i].value.len + 2;
            char *buf = pt_arena_alloc(req->arena, total);
            if (buf == NULL) {
                stream_reject(s, PT_ERR_HEADERS_TOO_LARGE, "request too large");
            } else {
                size_t off = 0;
                for (size_t i = 0; i < req->headers.cnt; i++) {
                    pt_header_t *h = &req->headers.v[i];
                    if (!pt_str_eq(h->name, PT_STR("cookie")))
                        continue;
                    if (off != 0) {
                        buf[off++] = ';';
                        buf[off++] = ' ';
                    }
                    memcpy(buf + off, h->value.base, h->value.len);
                    off += h->value.len;
                }
                pt_headers_remove(&req->headers, PT_STR("cookie"));
                pt_headers_add_nocopy(&req->headers, PT_STR("cookie"), (pt_str_t){buf, off});
            }
        }
    }
    req->expect_body = !end_stream;
    s->end_pending = end_stream;
    s->dispatch = true;
    c->dispatch_pending = true;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    (void)ng;
    h2_conn_t *c = user_data;
    h2_stream_t *s;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
        s = stream_of(c, frame->hd.stream_id);
        if (s == NULL || s->req == NULL || s->malformed)
            return 0;
        bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        /* the head's rules; trailers end the stream; END_STREAM: content-length met */
        if ((!s->is_trailer_block ? !pt_h2_rules_head(&s->rules) : !end) ||
            (end && !pt_h2_rules_end(&s->rules))) {
            malformed(c, s);
            return 0;
        }
        s->last_ms = conn_now(c);
        if (!s->is_trailer_block) {
            if (s->prio_set && !s->prio_bad) {
                nghttp2_extpri pri = {s->urgency, s->incremental ? 1 : 0};
                nghttp2_session_change_extpri_stream_priority(ng, s->id, &pri, 0);
            }
            head_complete(c, s, end);
        } else {
            if (s->over_limit) {
                c->hdr_overlimit++;
                glitch(c);
                if (c->hdr_overlimit >= HDR_OVERLIMIT_MAX)
                    terminate(c, NGHTTP2_ENHANCE_YOUR_CALM);
            }
            if (s->dispatched)
                pt__req_body(s->req, NULL, 0, true);
            else
                s->end_pending = true;
        }
        break;
    }
    case NGHTTP2_DATA:
        s = stream_of(c, frame->hd.stream_id);
        if (s == NULL || s->req == NULL || s->malformed || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
            return 0;
        if (!pt_h2_rules_end(&s->rules)) {
            malformed(c, s);
            return 0;
        }
        if (s->dispatched)
            pt__req_body(s->req, NULL, 0, true);
        else
            s->end_pending = true;
        break;
    case NGHTTP2_RST_STREAM:
        s = stream_of(c, frame->hd.stream_id);
        if (s != NULL)
            s->client_reset = true;
        break;
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->settings_ms = 0;
        break;
    case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && c->drain_phase == 1 &&
            memcmp(frame->ping.opaque_data, DRAIN_PING, 8) == 0)
            drain_final(c);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data)
{
    (void)flags;
    h2_conn_t *c = user_data;
    h2_stream_t *s = stream_of(c, id);
    if (s != NULL && !s->malformed && !pt_h2_rules_data(&s->rules, len))
        malformed(c, s); /* past content-length: these bytes are not the request's */
    if (s == NULL || s->req == NULL || s->reject != 0 || s->req->body_done || s->malformed) {
        /* Nobody will read these bytes: give the window back at once. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    s->last_ms = conn_now(c);
    s->recv_total += len;
    pt__req_body(s->req, data, len, false);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    h2_conn_t *c = user_data;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream_t *s = stream_of(c, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    s->resp_complete = true;
    /* RFC 9113 §8.1: the response is complete while the client is still
     * sending: stop the upload with RST_STREAM(NO_ERROR). */
    if (nghttp2_session_get_stream_remote_close(ng, s->id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user_data)
{
    (void)error_code;
    h2_conn_t *c = user_data;
    h2_stream_t *s = stream_of(c, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    /* Body bytes the handler never consumed still hold connection window. */
    if (s->recv_total > s->consumed_total)
        nghttp2_session_consume_connection(ng, (size_t)(s->recv_total - s->consumed_total));
    if (s->client_reset && !s->resp_complete) {
        c->premature++;
        /* Envoy-style: once enough streams were seen, a majority of client
         * resets before the response ended is an attack (Rapid Reset). */
        if (c->requests >= PREMATURE_MIN && c->premature * 2 > c->requests)
            terminate(c, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    stream_release(s);
    stream_free(s);
    c->last_ms = conn_now(c);
    if (c->nstreams == 0 && c->idle_ms != 0)
        arm_at(c, c->last_ms + c->idle_ms);
    return 0;
}

/* Starts the requests whose head arrived in the bytes just processed, unless
 * the client already reset them (Rapid Reset costs us nothing then). */
static void dispatch(h2_conn_t *c)
{
    if (!c->dispatch_pending || c->terminating)
        return;
    c->dispatch_pending = false;
    for (h2_stream_t *s = c->head, *next; s != NULL; s = next) {
        next = s->next;
        if (!s->dispatch)
            continue;
        s->dispatch = false;
        pt_req_t *req = s->req;
        if (req == NULL)
            continue;
        s->dispatched = true;
        if (s->end_pending) {
            s->end_pending = false;
            pt__req_body(req, NULL, 0, true);
        }
        arm_stream(c, s);
        /* Streams can be freed by what the request does next (a local reply
         * never closes a stream synchronously, but stay safe): re-read `next`
         * is not needed because stream closes only happen in nghttp2 calls. */
        if (s->reject != 0) {
            if (s->reject == PT_ERR_INVALID || s->reject == PT_ERR_NOT_IMPLEMENTED)
                glitch(c);
            pt__req_reject(req, s->reject, s->reject_why);
        } else {
            pt__req_headers_done(req);
        }
    }
}

/* ---- output ------------------------------------------------------------- */

static bool notify_writable(h2_conn_t *c)
{
    bool any = false;
    for (h2_stream_t *s = c->head; s != NULL; s = s->next) {
        if (!s->notify_writable)
            continue;
        s->notify_writable = false;
        if (s->req != NULL) {
            any = true;
            pt__req_on_writable(s->req);
        }
    }
    return any;
}

static void flush(h2_conn_t *c)
{
    if (c->ng == NULL || c->in_flush)
        return;
    c->in_flush = true;
    uint64_t outer = c->tick_ms;
    if (outer == 0)
        c->tick_ms = pt_now_ms();
    uint8_t obuf[FLUSH_BUF];
    c->obuf = obuf;
    c->ocap = sizeof(obuf);
    c->olen = 0;
    for (int round = 0; round < 8; round++) {
        for (h2_stream_t *s = c->head; s != NULL; s = s->next)
            if (s->head_pending)
                submit_head(s);
        while (evbuffer_get_length(c->out) + c->olen < OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->ng, &p);
            if (n < 0) {
                out_gathered(c);
                c->obuf = NULL;
                c->in_flush = false;
                c->tick_ms = outer;
                close_now(c);
                return;
            }
            if (n == 0)
                break;
            out_put(c, p, (size_t)n);
        }
        out_gathered(c);
        if (!notify_writable(c))
            break;
    }
    c->obuf = NULL;
    c->in_flush = false;
    c->tick_ms = outer;
    /* nghttp2 considers itself done once a GOAWAY went out and no stream is
     * open, the shutdown notice included; but during drain phase 1 requests
     * may still be on their way to us, so wait for the final GOAWAY. */
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        c->drain_phase != 1) {
        finish(c);
        return;
    }
    if (evbuffer_get_length(c->out) >= OUT_HIGH) {
        if (!c->read_paused) {
            /* A client that does not read gets no more of our attention. */
            c->read_paused = true;
            pt_conn_pause_read(c->io_conn);
        }
    }
}

/* ---- libevent callbacks ------------------------------------------------- */

static void feed(h2_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->ng == NULL || c->closing_ms != 0 || c->close_pending)
        return;
    uint64_t outer = c->tick_ms;
    if (outer == 0)
        c->tick_ms = pt_now_ms();
    ssize_t rv = nghttp2_session_mem_recv(c->ng, data, len);
    c->tick_ms = outer;
    if (rv < 0) {
        /* Bad preface, flood detected, fatal error: nothing more to say. */
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC || rv == NGHTTP2_ERR_FLOODED ||
            nghttp2_is_fatal((int)rv))
            close_now(c);
        else
            terminate(c, NGHTTP2_PROTOCOL_ERROR);
    }
}

/* How many of the `len` bytes at `p` may go to nghttp2 now without cutting a
 * 9-byte frame header in two; the rest waits for more bytes. Debian's 1.52
 * counts a CONTINUATION once per partial frame header it sees (upstream
 * #2817), so a legitimate header block arriving a byte at a time would hit
 * the CONTINUATION limit. Frame payloads may still be split anywhere, except
 * the few first bytes zero_progress() reads. Every frame header passes here
 * once, so this is also where zero-progress frames are counted; when that
 * empties the glitch budget, the walk stops before the frame (the session is
 * terminating and the rest of the input is ignored). */
static size_t feedable(h2_conn_t *c, const uint8_t *p, size_t len)
{
    size_t off = 0;
    uint32_t to = c->rx_to_hdr;
    bool earning = false; /* a frame that may earn WINDOW_UPDATE credit is in [0, off) */
    while (off < len) {
        if (to > 0) {
            size_t n = len - off < to ? len - off : to;
            off += n;
            to -= (uint32_t)n;
            continue;
        }
        if (len - off < 9)
            break;
        uint32_t flen = ((uint32_t)p[off] << 16) | ((uint32_t)p[off + 1] << 8) | p[off + 2];
        if (len - off < 9 + classify_need(p[off + 3], p[off + 4], flen))
            break;
        /* Whether a WINDOW_UPDATE was earned depends on the frames before
         * it (a HEADERS opening a stream earns credit): those go to nghttp2
         * first. Otherwise the verdict would depend on how many frames one
         * read happened to hold, i.e. on how loaded we are. */
        if (p[off + 3] == NGHTTP2_WINDOW_UPDATE && earning)
            break;
        if (p[off + 3] == NGHTTP2_HEADERS)
            earning = true;
        if (zero_progress(c, p + off, flen)) {
            glitch(c);
            if (c->terminating)
                break;
        }
        to = flen;
        off += 9;
    }
    c->rx_to_hdr = to;
    return off;
}

static void on_read(pt_conn_t *conn, void *arg)
{
    h2_conn_t *c = arg;
    struct evbuffer *in = pt_conn_input(conn);
    enter(c);
    size_t len = evbuffer_get_length(in);
    /* feedable() stops before a WINDOW_UPDATE that follows a HEADERS, so
     * this may take a few rounds for one read. */
    while (len != 0 && c->ng != NULL && c->closing_ms == 0 && !c->close_pending &&
           !c->terminating) {
        const uint8_t *p = evbuffer_pullup(in, -1);
        size_t n = p != NULL ? feedable(c, p, len) : 0;
        if (n == 0)
            break;
        feed(c, p, n);
        evbuffer_drain(in, n);
        len = evbuffer_get_length(in);
    }
    if (c->closing_ms != 0 || c->close_pending || c->terminating) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* garbage after GOAWAY is ignored */
    } else {
        dispatch(c); /* after the whole read: a HEADERS+RST pair never starts work */
        flush(c);
    }
    leave(c);
}

static void on_drain(pt_conn_t *conn, void *arg)
{
    (void)conn;
    h2_conn_t *c = arg;
    enter(c);
    if (c->closing_ms != 0) {
        if (evbuffer_get_length(c->out) == 0)
            close_now(c);
    } else {
        flush(c);
        if (c->read_paused && c->closing_ms == 0 && evbuffer_get_length(c->out) < OUT_HIGH) {
            c->read_paused = false;
            pt_conn_resume_read(c->io_conn);
        }
    }
    leave(c);
}

static void on_event(pt_conn_t *conn, int what, void *arg)
{
    (void)conn;
    (void)what;
    h2_conn_t *c = arg;
    /* EOF, error, or the send timeout (no write progress for send_ms). */
    enter(c);
    close_now(c);
    leave(c);
}

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h2_conn_t *c = arg;
    c->flush_sched = false;
    enter(c);
    if (c->closing_ms == 0)
        flush(c);
    leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h2_conn_t *c = arg;
    c->timer_at = 0;
    enter(c);
    uint64_t now = pt_now_ms();
    uint64_t next = UINT64_MAX;
    if (c->closing_ms != 0) {
        if (now >= c->closing_ms + CLOSE_LINGER_MS)
            close_now(c);
        else
            next = c->closing_ms + CLOSE_LINGER_MS;
        goto out;
    }
    if (c->settings_ms != 0) {
        if (now >= c->settings_ms + SETTINGS_ACK_MS) {
            terminate(c, NGHTTP2_SETTINGS_TIMEOUT);
            goto out;
        }
        next = min_u64(next, c->settings_ms + SETTINGS_ACK_MS);
    }
    if (c->drain_phase == 1) {
        if (now >= c->drain_start_ms + DRAIN_RTT_MS)
            drain_final(c);
        else
            next = min_u64(next, c->drain_start_ms + DRAIN_RTT_MS);
    }
    if (c->drain_phase >= 1 && c->drain_ms != 0) {
        if (now >= c->drain_start_ms + c->drain_ms) {
            /* hard deadline: whatever is still running is cut */
            terminate(c, NGHTTP2_NO_ERROR);
            goto out;
        }
        next = min_u64(next, c->drain_start_ms + c->drain_ms);
    }
    if (c->nstreams == 0 && c->idle_ms != 0) {
        if (now >= c->last_ms + c->idle_ms) {
            terminate(c, NGHTTP2_NO_ERROR);
            goto out;
        }
        next = min_u64(next, c->last_ms + c->idle_ms);
    }
    for (h2_stream_t *s = c->head; s != NULL; s = s->next) {
        bool conn_wide;
        uint64_t limit = stream_limit(c, s, &conn_wide);
        if (limit == 0)
            continue;
        if (now < s->last_ms + limit) {
            next = min_u64(next, s->last_ms + limit);
            continue;
        }
        if (conn_wide) {
            terminate(c, NGHTTP2_PROTOCOL_ERROR);
            goto out;
        }
        s->app_reset = true;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        schedule_flush(c);
    }
out:
    if (!leave(c))
        arm_at(c, next);
}

/* ---- setup -------------------------------------------------------------- */

static nghttp2_session_callbacks *callbacks;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static void callbacks_init(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        oom();
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(callbacks, on_header);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, send_data);
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v != 0 ? v : def;
}

/* Creates the codec state and the nghttp2 session for `conn`, without
 * touching the connection yet (conn_attach does). Nothing is sent. */
static h2_conn_t *conn_new(pt_conn_t *conn)
{
    pthread_once(&callbacks_once, callbacks_init);
    h2_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        oom();
    c->conn = conn;
    c->worker = conn->worker;
    c->base = conn->worker->base;
    c->out = pt_conn_output(conn);
    c->xa = pt_h2mem_allocator(c->worker);

    const pt_config_t *cfg = conn->worker->config != NULL ? conn->worker->config : conn->config;
    const pt_limits_t *l = &cfg->limits;
    const pt_timeouts_t *t = &cfg->timeouts;
    c->max_hdr_bytes = or_default(l->max_header_bytes, 64u * 1024u);
    c->max_hdr_cnt = or_default(l->max_header_count, 100u);
    c->max_requests = l->max_requests_per_conn;
    c->max_streams = or_default(l->h2_max_streams, 100u);
    c->stream_window = or_default(l->h2_stream_window, 64u * 1024u);
    c->conn_window = or_default(l->h2_conn_window, 1024u * 1024u);
    c->allow_underscores = l->allow_underscores;
    c->idle_ms = t->h2_idle_ms;
    c->header_ms = t->header_ms;
    c->body_ms = t->body_ms;
    c->send_ms = t->send_ms;
    c->drain_ms = t->drain_ms;
    c->stream_idle_ms = DEFAULT_STREAM_IDLE_MS;
    c->glitch_burst = or_default(l->h2_glitch_burst, 100u);
    c->glitch_rate = or_default(l->h2_glitch_rate, 10u);
    c->glitch_tokens = c->glitch_burst;
    c->rx_to_hdr = 24; /* the client connection preface */
    c->start_ms = c->last_ms = c->glitch_ms = pt_now_ms();

    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        oom();
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* HTTP messaging rules are ours (h2rules.h): the same rules, ~2k
     * instructions a request cheaper than nghttp2's generic checks. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_option_set_max_continuations(opt, or_default(l->h2_max_continuations, 8u));
    nghttp2_option_set_stream_reset_rate_limit(opt, or_default(l->h2_reset_burst, 1000u),
                                               or_default(l->h2_reset_rate, 33u));
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    int rv = nghttp2_session_server_new3(&c->ng, callbacks, c, opt, pt_h2mem_of(c->worker));
    nghttp2_option_del(opt);
    if (rv != 0)
        oom();

    c->flush_ev = event_new(c->base, -1, 0, on_flush_ev, c);
    c->timer = event_new(c->base, -1, 0, on_timer, c);
    if (c->flush_ev == NULL || c->timer == NULL)
        oom();

    return c;
}

/* Makes `c` the codec of its connection: I/O callbacks, low watermark, the
 * send timeout, reading on. */
static void conn_attach(h2_conn_t *c)
{
    pt_conn_t *conn = c->conn;
    c->attached = true;
    c->io_conn = conn;
    conn->codec = c;
    conn->codec_ops = &h2_codec_ops;
    pt_conn_set_callbacks(conn, on_read, on_drain, on_event, c);
    pt_conn_set_lowat(conn, OUT_LOW);
    pt_conn_set_send_timeout(conn, c->send_ms);
    pt_conn_resume_read(conn);
}

/* Queues the server connection preface: SETTINGS and the connection window. */
static int send_preface(h2_conn_t *c)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->max_hdr_bytes},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
        /* RFC 8441: clients may open tunnels (WebSocket) with extended CONNECT;
         * a route still has to allow the protocol (handlers/proxy.c). */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    int rv = nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv != 0)
        return rv;
    if (c->conn_window > 65535u)
        rv = nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                                   (int32_t)c->conn_window);
    c->settings_ms = pt_now_ms();
    arm_at(c, c->settings_ms + SETTINGS_ACK_MS);
    if (c->idle_ms != 0)
        arm_at(c, c->last_ms + c->idle_ms);
    return rv;
}

void pt__h2_conn_start(pt_conn_t *conn, const uint8_t *already_read, size_t len)
{
    h2_conn_t *c = conn_new(conn);
    conn_attach(c);
    enter(c);
    if (send_preface(c) != 0) {
        close_now(c);
        leave(c);
        return;
    }
    /* Bytes already read go in front of whatever waits in the input buffer,
     * so one path (on_read) processes everything in order. */
    struct evbuffer *in = pt_conn_input(conn);
    if (len != 0 && evbuffer_prepend(in, already_read, len) != 0)
        oom();
    if (evbuffer_get_length(in) != 0)
        on_read(conn, c);
    else
        flush(c);
    leave(c);
}

int pt__h2_conn_upgrade(pt_conn_t *conn, pt_req_t *req, pt_str_t http2_settings_b64)
{
    /* A request with a body cannot be upgraded cleanly (its body would have
     * to be replayed as stream 1 DATA); serve it over HTTP/1.1 instead. */
    if (req->expect_body || req->content_length > 0)
        return PT_ERR_INVALID;
    uint8_t settings[6 * 64 + 2]; /* 64 settings; +2: PT_BASE64_DECODED_MAX's slack */
    if (PT_BASE64_DECODED_MAX(http2_settings_b64.len) > sizeof(settings))
        return PT_ERR_INVALID;
    /* base64url, padding optional (RFC 9113 §3.2.1 omits it) */
    long got = pt_base64_decode_to(settings, http2_settings_b64.base, http2_settings_b64.len);
    if (got < 0 || got % 6 != 0)
        return PT_ERR_INVALID;
    size_t slen = (size_t)got;

    static const char resp101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                  "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    h2_conn_t *c = conn_new(conn);
    h2_stream_t *s = stream_new(c, 1);
    int rv = nghttp2_session_upgrade2(c->ng, settings, slen,
                                      pt_str_eq(req->method, PT_STR("HEAD")), s);
    if (rv != 0) {
        /* Bad settings payload: undo before anything went out or changed. */
        stream_free(s);
        c->conn = NULL;
        teardown(c);
        return PT_ERR_INVALID;
    }
    /* a server session ignores upgrade2's stream_user_data: set it ourselves */
    nghttp2_session_set_stream_user_data(c->ng, 1, s);
    conn_attach(c);
    enter(c);
    evbuffer_add(c->out, resp101, sizeof(resp101) - 1);
    c->requests = 1;
    s->req = req;
    req->ops = &h2_stream_ops;
    req->stream = s;
    req->version = 20;
    s->dispatch = true;
    s->end_pending = true;
    c->dispatch_pending = true;
    if (send_preface(c) != 0) {
        close_now(c);
        leave(c);
        return 0;
    }
    dispatch(c);
    if (!c->close_pending && c->closing_ms == 0 &&
        evbuffer_get_length(pt_conn_input(conn)) != 0)
        on_read(conn, c);
    else
        flush(c);
    leave(c);
    return 0;
}

void pt__h2_conn_drain(pt_conn_t *conn)
{
    if (!pt__h2_conn_is_h2(conn))
        return;
    h2_conn_t *c = conn->codec;
    enter(c);
    if (c->nstreams == 0 && c->drain_phase == 0) {
        /* Nothing in flight: one GOAWAY and close. */
        terminate(c, NGHTTP2_NO_ERROR);
    } else {
        drain_begin(c);
    }
    flush(c);
    leave(c); // NOLINT(clang-analyzer-unix.Malloc): depth > 0 here, so flush() only marks close_pending
}

bool pt__h2_conn_is_h2(const pt_conn_t *conn)
{
    return conn != NULL && conn->codec != NULL && conn->codec_ops == &h2_codec_ops;
}

static void codec_destroy(pt_conn_t *conn)
{
    if (!pt__h2_conn_is_h2(conn))
        return;
    h2_conn_t *c = conn->codec;
    c->conn = NULL; /* teardown must not close: the caller does */
    conn->codec = NULL;
    conn->codec_ops = NULL;
    teardown(c);
}

static const pt_codec_ops_t h2_codec_ops = {
    .name = "h2",
    .drain = pt__h2_conn_drain,
    .destroy = codec_destroy,
};
