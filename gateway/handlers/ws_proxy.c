/*
 * ws_proxy.c -- the WebSocket relay of ws_proxy.h: two http/ws.h endpoints
 * joined frame by frame.
 *
 * Re-entrancy: feeding one endpoint writes into the other, and a write can
 * make the upstream call pull bytes at once (pt_upcall_body_ready), which
 * may drain below the high-water mark and want to resume reading the very
 * endpoint that is running. An endpoint is never entered twice: run_c/run_u
 * note the wish (c_again/u_again) and the outer call loops.
 *
 * Lifetime: the relay lives in the request's arena; the endpoints are freed
 * by arena cleanups. Every callback is bracketed with pt__req_enter/leave so
 * the request (and this struct) outlive a callback in which the client goes
 * away, and after pt_wsp_abort() nothing is relayed any more.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"
#include "handlers/ws_proxy.h"
#include "http/ws.h"

/* Bytes gathered for the client during a run before they go to the codec. */
#define C_OUT_CAP 8192u

/* The client's queue is asked (pt__resp_blocked) after this many bytes relayed
 * to it within a delivery, and after every delivery (pt_wsp_up_data). */
#define C_CHECK_EVERY 16384u

/*
 * A byte queue without per-write allocations: one block, grown by doubling
 * (its size is bounded by the high-water mark plus one chunk and a few
 * control frames), emptied by the reader from the front.
 */
typedef struct bq {
    uint8_t *p;
    size_t off, len, cap;
} bq_t;

static void bq_add(bq_t *q, const uint8_t *d, size_t n)
{
    if (n == 0)
        return;
    if (q->off + q->len + n > q->cap) {
        if (q->off != 0) {
            memmove(q->p, q->p + q->off, q->len);
            q->off = 0;
        }
        if (q->len + n > q->cap) {
            size_t cap = q->cap != 0 ? q->cap : 4096;
            while (cap < q->len + n)
                cap *= 2;
            q->p = pt_xrealloc(q->p, cap);
            q->cap = cap;
        }
    }
    memcpy(q->p + q->off + q->len, d, n);
    q->len += n;
}

static size_t bq_take(bq_t *q, uint8_t *buf, size_t max)
{
    size_t n = q->len < max ? q->len : max;
    memcpy(buf, q->p + q->off, n);
    q->len -= n;
    q->off = q->len == 0 ? 0 : q->off + n;
    return n;
}

struct pt_wsp {
    pt_req_t *req;
    const pt_wsp_io_t *io;
    void *ud;
    pt_ws_t *c;                  /* facing the client (server role), attached to req */
    pt_ws_t *u;                  /* facing the upstream (client role) */
    bq_t up_in;                  /* upstream bytes not yet parsed */
    const char *feed;            /* on_data's bytes, read in place while up_in is empty */
    size_t feed_len;
    bq_t up_out;                 /* framed bytes for the upstream, not yet pulled */
    size_t c_out_len;            /* framed bytes for the client, gathered during a run */
    size_t c_unchecked;          /* bytes to the client since pt__resp_blocked was asked */
    bool kick;                   /* up_out grew during a run: wake the upstream at its end */
    bool up_eof;                 /* the upstream connection ended */
    bool up_in_paused;           /* we told the call to stop delivering */
    bool up_shut;                /* nothing more goes upstream: read_body reports eof */
    bool c_ended, u_ended;
    pt_ws_end_t c_why, u_why;
    bool resp_ended;             /* the client stream was ended */
    bool dead;                   /* aborted or done: relay nothing */
    bool c_running, c_again, u_running, u_again;
    bool u_fed_pause;            /* u_raw asked U to pause during pt_ws_feed */
    uint8_t c_out[C_OUT_CAP];
};

static void run_u(pt_wsp_t *p);

/*
 * Batching: a relayed frame is written as a header and then its payload, and
 * pings or closes may follow. Writes to the client gather in c_out and go to
 * the codec in one pt__resp_body per run; the upstream is woken once per run
 * (its client sends at once when woken). Outside a run (timers) both happen
 * right away.
 */
static bool in_run(const pt_wsp_t *p)
{
    return p->c_running || p->u_running;
}

/* Bytes to the client's codec now (gathered ones or one large write). */
static void to_client(pt_wsp_t *p, const uint8_t *d, size_t n)
{
    if (p->dead || p->resp_ended || pt__resp_ended(p->req) || p->req->aborted)
        return;
    pt__req_enter(p->req);
    pt__resp_body(p->req, (const char *)d, n, false);
    pt__req_leave(p->req);
}

static void flush_client(pt_wsp_t *p)
{
    size_t n = p->c_out_len;
    if (n == 0)
        return;
    p->c_out_len = 0;
    to_client(p, p->c_out, n);
}

static void kick_upstream(pt_wsp_t *p)
{
    if (in_run(p)) {
        p->kick = true;
        return;
    }
    p->kick = false;
    if (!p->dead)
        p->io->up_kick(p->ud);
}

/* The end of a run: what was gathered goes out. */
static void run_done(pt_wsp_t *p)
{
    if (in_run(p))
        return;
    flush_client(p);
    if (p->kick && !p->dead) {
        p->kick = false;
        p->io->up_kick(p->ud);
    }
}

static void run_c(pt_wsp_t *p)
{
    if (p->c_running) {
        p->c_again = true;
        return;
    }
    p->c_running = true;
    do {
        p->c_again = false;
        if (!p->dead && !p->c_ended)
            pt_ws_on_readable(p->c);
    } while (p->c_again && !p->dead && !p->c_ended);
    p->c_running = false;
    run_done(p);
}

static void run_u(pt_wsp_t *p)
{
    if (p->u_running) {
        p->u_again = true;
        return;
    }
    p->u_running = true;
    do {
        p->u_again = false;
        if (!p->dead && !p->u_ended)
            pt_ws_on_readable(p->u);
    } while (p->u_again && !p->dead && !p->u_ended);
    p->u_running = false;
    run_done(p);
    /* Delivery was paused because up_in was full; it drained. */
    if (p->up_in_paused && !p->dead && p->up_in.len < PT_WSP_HIGH_WATER &&
        !pt__resp_blocked(p->req)) {
        p->up_in_paused = false;
        p->io->up_resume(p->ud);
    }
}

static bool up_full(const pt_wsp_t *p)
{
    return p->up_out.len >= PT_WSP_HIGH_WATER;
}

static void end_client_stream(pt_wsp_t *p)
{
    flush_client(p);
    if (p->resp_ended || pt__resp_ended(p->req) || p->req->aborted)
        return;
    p->resp_ended = true;
    pt__resp_body(p->req, NULL, 0, true);
}

static void maybe_done(pt_wsp_t *p)
{
    if (p->dead || !p->c_ended || !p->u_ended)
        return;
    p->dead = true;
    end_client_stream(p);
    p->io->done(p->ud);
}

/* The code and reason the other leg gets when one leg ended without a relayed close. */
static void close_other(pt_ws_t *other, pt_ws_end_t why, bool from_client)
{
    char reason[64];
    int n = snprintf(reason, sizeof(reason), "%s %s", from_client ? "client" : "upstream",
                     why == PT_WS_END_EOF ? "went away" : pt_ws_end_name(why));
    pt_ws_close(other, PT_WS_CLOSE_GOING_AWAY, reason, n > 0 ? (size_t)n : 0);
}

/* ---- the client leg (server role) ---------------------------------------------------- */

static size_t c_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return 0;
    pt_req_t *req = p->req;
    if (req->body_offer_len == 0 && evbuffer_get_length(req->body) == 0) {
        /* drained (the endpoint asks once more after each read): what
         * pt__req_body_read would answer, without its buffer calls */
        *eof = req->body_out_done;
        return 0;
    }
    size_t n = pt__req_body_read(req, (char *)buf, max, eof);
    /* a short read is all there is (short_read_drains): the end, if it came
     * with the last bytes (lent ones report none), is told with them */
    if (n < max && !*eof && req->body_out_done)
        *eof = req->body_offer_len == 0 && evbuffer_get_length(req->body) == 0;
    return n;
}

static void c_write(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->resp_ended)
        return;
    p->c_unchecked += len;
    if (p->c_out_len + len > sizeof(p->c_out))
        flush_client(p);
    if (len > sizeof(p->c_out)) {
        to_client(p, data, len);
        return;
    }
    memcpy(p->c_out + p->c_out_len, data, len);
    p->c_out_len += len;
    if (!in_run(p))
        flush_client(p);
}

/* The client side is full: what we gathered counts as well. Asked once per
 * C_CHECK_EVERY bytes (the codec's queue is several calls deep); between two
 * checks the client side holds at most that much more than
 * limits.max_response_buffer. */
static bool client_full(pt_wsp_t *p)
{
    if (p->c_out_len >= sizeof(p->c_out) / 2)
        flush_client(p);
    if (p->c_unchecked < C_CHECK_EVERY)
        return false;
    p->c_unchecked = 0;
    return !p->dead && pt__resp_blocked(p->req);
}

static int c_frame_start(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO; /* the upstream leg is over: what the client still sends is dropped */
    pt__req_enter(p->req);
    pt_ws_send_frame_begin(p->u, op, len, fin);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int c_data(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_data(p->u, data, len);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

/* A run of whole client frames, checked and re-masked by C: to the upstream as they are. */
static int c_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_raw(p->u, frames, len, info);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int c_control(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->u_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_control(p->u, op, data, len);
    kick_upstream(p);
    int r = up_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static void c_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    if (!p->u_ended) {
        pt_ws_close(p->u, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
        kick_upstream(p);
    } else {
        /* the upstream is gone already: answer the client ourselves */
        pt_ws_close(p->c, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    }
    pt__req_leave(p->req);
}

static void c_end(void *ud, pt_ws_end_t why)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    p->c_ended = true;
    p->c_why = why;
    /* Our close (if any) is in the client's output: end the stream after it. */
    end_client_stream(p);
    if (!p->u_ended && !p->dead && pt_ws_sending_frame(p->u)) {
        /* Half a frame went upstream: no close frame can follow it. The
         * upstream connection is closed instead (it sees 1006). */
        p->u_ended = true;
        p->u_why = PT_WS_END_EOF;
        p->up_shut = true;
    }
    if (!p->u_ended && !p->dead) {
        if (why != PT_WS_END_CLOSED)
            close_other(p->u, why, true);
        /* The client is gone: the upstream leg does not wait for an answer to
         * our close (nobody would read it, and a drain would find a request
         * held by nothing but this wait). What is queued goes out now with a
         * half-close after it, then the call ends. */
        p->up_shut = true;
        p->kick = false;
        p->io->up_kick(p->ud);
        p->u_ended = true;
        p->u_why = why;
    }
    maybe_done(p);
    pt__req_leave(p->req);
}

/* ---- the upstream leg (client role) ----------------------------------------------------- */

static size_t u_read(void *ud, uint8_t *buf, size_t max, bool *eof)
{
    pt_wsp_t *p = ud;
    /* all there is up to max (a short read means drained: short_read_drains) */
    size_t n = p->up_in.len != 0 ? bq_take(&p->up_in, buf, max) : 0;
    if (n < max && p->feed_len != 0) {
        size_t k = p->feed_len < max - n ? p->feed_len : max - n;
        memcpy(buf + n, p->feed, k);
        p->feed += k;
        p->feed_len -= k;
        n += k;
    }
    *eof = p->up_eof && p->up_in.len == 0 && p->feed_len == 0;
    return n;
}

static void u_write(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->up_shut)
        return;
    bq_add(&p->up_out, data, len);
}

static int u_frame_start(void *ud, pt_ws_opcode_t op, uint64_t len, bool fin)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_begin(p->c, op, len, fin);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static int u_data(void *ud, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_frame_data(p->c, data, len);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

/* A run of whole upstream frames, checked by U: to the client as they are. */
static int u_raw(void *ud, const uint8_t *frames, size_t len, const pt_ws_raw_t *info)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_raw(p->c, frames, len, info);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    p->u_fed_pause = r == PT_WS_PAUSE;
    pt__req_leave(p->req);
    return r;
}

static int u_control(void *ud, pt_ws_opcode_t op, const uint8_t *data, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead || p->c_ended)
        return PT_WS_GO;
    pt__req_enter(p->req);
    pt_ws_send_control(p->c, op, data, len);
    int r = client_full(p) ? PT_WS_PAUSE : PT_WS_GO;
    pt__req_leave(p->req);
    return r;
}

static void u_close(void *ud, uint16_t code, const char *reason, size_t len)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    if (!p->c_ended)
        pt_ws_close(p->c, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    else
        pt_ws_close(p->u, code == PT_WS_CLOSE_NO_STATUS ? 0 : code, reason, len);
    kick_upstream(p);
    pt__req_leave(p->req);
}

static void u_end(void *ud, pt_ws_end_t why)
{
    pt_wsp_t *p = ud;
    if (p->dead)
        return;
    pt__req_enter(p->req);
    p->u_ended = true;
    p->u_why = why;
    p->up_shut = true; /* after our close (already queued) nothing more goes up */
    kick_upstream(p);
    if (!p->c_ended && !p->dead && pt_ws_sending_frame(p->c)) {
        /* Half a frame went to the client: reset its stream instead of a close. */
        p->c_ended = true;
        p->c_why = PT_WS_END_EOF;
        p->resp_ended = true;
        pt__resp_fail(p->req, PT_ERR_UPSTREAM, "upstream websocket ended mid-frame");
    }
    if (!p->c_ended && !p->dead && why != PT_WS_END_CLOSED)
        close_other(p->c, why, false);
    maybe_done(p);
    pt__req_leave(p->req);
}

/* ---- the relay ---------------------------------------------------------------------------- */

static const pt_ws_cbs_t c_cbs = {
    .read = c_read,
    .write = c_write,
    .on_frame_start = c_frame_start,
    .on_msg_data = c_data,
    .on_control = c_control,
    .on_close = c_close,
    .on_end = c_end,
    .on_raw = c_raw,
};

static const pt_ws_cbs_t u_cbs = {
    .read = u_read,
    .write = u_write,
    .on_frame_start = u_frame_start,
    .on_msg_data = u_data,
    .on_control = u_control,
    .on_close = u_close,
    .on_end = u_end,
    .on_raw = u_raw,
};

static void wsp_dispose(void *data)
{
    pt_wsp_t *p = data;
    p->dead = true;
    pt_ws_free(p->u);
    p->u = NULL;
    free(p->up_in.p);
    p->up_in.p = NULL;
    free(p->up_out.p);
    p->up_out.p = NULL;
}

pt_wsp_t *pt_wsp_open(pt_req_t *req, const pt_wsp_conf_t *conf, const pt_wsp_io_t *io, void *ud)
{
    pt_wsp_t *p = pt_arena_zalloc(req->arena, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->req = req;
    p->io = io;
    p->ud = ud;
    pt_ws_opts_t o = {
        .role = PT_WS_SERVER,
        .max_message = conf->max_message,
        .ping_interval_ms = conf->ping_interval_ms,
        .idle_ms = conf->idle_ms,
        .close_timeout_ms = conf->close_timeout_ms,
        .answer_control = false,
        .short_read_drains = true, /* c_read and u_read hand over all there is */
    };
    p->c = pt_ws_new(req->worker->base, &o, &c_cbs, p);
    if (pt_ws_req_attach(req, p->c) != 0)
        return NULL;
    o.role = PT_WS_CLIENT;
    o.idle_ms = 0; /* one idle clock per session: the client leg's sees data both ways */
    p->u = pt_ws_new(req->worker->base, &o, &u_cbs, p);
    if (pt_arena_defer(req->arena, wsp_dispose, p) != 0) {
        pt_ws_free(p->u);
        p->dead = true;
        return NULL;
    }
    return p;
}

size_t pt_wsp_up_read(pt_wsp_t *p, char *buf, size_t max, bool *eof)
{
    *eof = false;
    size_t have = p->up_out.len;
    if (have == 0) {
        *eof = p->up_shut;
        return 0;
    }
    size_t n = bq_take(&p->up_out, (uint8_t *)buf, max);
    /* Drained below the mark: the client may be read again. What that
     * framed joins this read (the call takes a short read as all there is). */
    if (have >= PT_WSP_HIGH_WATER && have - n < PT_WSP_HIGH_WATER && !p->dead) {
        run_c(p);
        if (n < max && p->up_out.len != 0)
            n += bq_take(&p->up_out, (uint8_t *)buf + n, max - n);
    }
    return n;
}

bool pt_wsp_up_data(pt_wsp_t *p, const char *data, size_t len)
{
    if (p->dead)
        return false;
    /* Whole frames go to the client straight from the call's buffer when U
     * has nothing pending (pt_ws_feed); the rest is parsed through the
     * window as usual, what the parser did not take kept in up_in. */
    if (p->up_in.len == 0 && !p->u_running && !p->u_ended) {
        p->u_running = true;
        p->u_fed_pause = false;
        size_t k = pt_ws_feed(p->u, (const uint8_t *)data, len);
        p->u_running = false;
        data += k;
        len -= k;
        if (!p->dead && !p->u_again && (len == 0 || p->u_fed_pause)) {
            /* all taken, or the client side is full: the rest waits in up_in */
            bq_add(&p->up_in, (const uint8_t *)data, len);
            run_done(p);
            goto check;
        }
    }
    if (p->up_in.len == 0) {
        p->feed = data;
        p->feed_len = len;
    } else {
        bq_add(&p->up_in, (const uint8_t *)data, len);
    }
    run_u(p);
    if (p->feed_len != 0 && !p->dead)
        bq_add(&p->up_in, (const uint8_t *)p->feed, p->feed_len);
    p->feed = NULL;
    p->feed_len = 0;
check:
    if (p->dead)
        return false;
    p->c_unchecked = 0;
    if (p->up_in.len >= PT_WSP_HIGH_WATER || pt__resp_blocked(p->req)) {
        p->up_in_paused = true;
        return false;
    }
    return true;
}

void pt_wsp_up_end(pt_wsp_t *p)
{
    p->up_eof = true;
    if (p->dead)
        return;
    /* U reaches the end of its input once it relayed what it still has (it
     * may be paused on a full client until on_writable). */
    run_u(p);
}

void pt_wsp_client_readable(pt_wsp_t *p)
{
    if (!p->dead)
        run_c(p);
}

void pt_wsp_client_writable(pt_wsp_t *p)
{
    if (p->dead)
        return;
    run_u(p);
    if (!p->dead && p->up_in_paused && p->up_in.len < PT_WSP_HIGH_WATER &&
        !pt__resp_blocked(p->req)) {
        p->up_in_paused = false;
        p->io->up_resume(p->ud);
    }
}

void pt_wsp_abort(pt_wsp_t *p)
{
    p->dead = true;
}
