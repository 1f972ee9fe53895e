/*
 * conn.h -- a client connection, as the listener hands it to a codec, and
 * the connection I/O layer (conn_io.c) the codecs read and write through.
 *
 * listener.c accepts a socket, sets up the I/O layer on it (pt_conn_io_init;
 * on TLS listeners with an SSL object and pt_conn_tls_accept, the codec
 * starting after the handshake and ALPN), links it into its worker's
 * connection list and passes it to a codec:
 *
 *   listener.c --> pt__h1_conn_start(conn)            (h1.c; ALPN http/1.1 or none)
 *              --> pt__h2_conn_start(conn, NULL, 0)   (h2.c; ALPN h2)
 *   h1.c       --> pt__h2_conn_start(conn, data, len) (prior-knowledge preface on cleartext)
 *              --> pt__h2_conn_upgrade(conn, ...)     (h2c Upgrade; see h2.h)
 *
 * From then on the codec owns the I/O callbacks (pt_conn_set_callbacks) and
 * the `codec` slot. Two ways a connection ends:
 *   - the codec is finished (peer closed, error, drain complete): it frees its
 *     own state, sets conn->codec = NULL, and calls pt_conn_close(conn), which
 *     releases the I/O layer (closing the socket), unlinks and frees `conn`;
 *   - the worker tears connections down (exit, drain deadline): it calls
 *     codec_ops->destroy(conn) -- the codec aborts its requests and frees its
 *     state, without closing -- then closes the connection itself.
 * A graceful drain (SIGTERM, reload of a listener) calls codec_ops->drain(conn):
 * the codec finishes what is in flight and then closes on its own.
 *
 * Everything happens on the owning worker's thread.
 *
 * ---- The I/O layer ---------------------------------------------------------
 *
 * Built for few system calls: in steady state one read and one write per
 * request batch, and no epoll_ctl per request.
 *
 *   Input. One persistent EV_READ event, registered once. On readiness the
 *   layer reads once (read(2), or SSL_read plus whatever OpenSSL already
 *   holds) into the input buffer (pt_conn_input) and calls on_read. While
 *   reads stay small (under 4 KiB) and the input is empty, the read goes to
 *   the stack and is appended: no buffer chain of the full read size is
 *   allocated and freed per read. A codec that sets a data callback
 *   (pt_conn_set_data_cb) is offered such a read in place first and only
 *   what it leaves is buffered. The codec
 *   consumes what it can from the input buffer; what it leaves stays there
 *   for the next on_read. Pausing is lazy: pt_conn_pause_read only sets a
 *   flag; the event is unregistered only if the socket becomes readable while
 *   paused, and registered again by pt_conn_resume_read.
 *
 *   Output. The codec appends to the output buffer (pt_conn_output, or
 *   pt_conn_write). Appending never writes: the layer writes once per batch,
 *   at the end of the on_read dispatch, or -- for output produced by other
 *   events (timers, upstream data) -- from one deferred per-connection event
 *   run later in the same loop iteration, however many appends happened.
 *   A codec that has queued a complete unit (an HTTP/1.1 response) may call
 *   pt_conn_flush to write it at once; its callbacks still come from the
 *   deferred event. A codec whose unit is one piece of bytes (a tunnel's
 *   relayed frames) hands it to pt_conn_send: written straight from the
 *   caller's memory when nothing is queued, no buffer and no event.
 *   Only when the socket does not take everything does the layer register
 *   EV_WRITE, until the output is empty again.
 *
 *   After every write of queued output that leaves at most the low watermark
 *   queued (pt_conn_set_lowat; 0 means "empty"), the layer calls on_drain
 *   (after pt_conn_flush and pt_conn_send only when more than the watermark
 *   had been queued: see there).
 *
 *   End. EOF (clean or, on TLS, without close_notify) is reported once with
 *   PT_CONN_EOF after the data read before it was delivered and the output
 *   flushed; reading stops. Read/write errors (ECONNRESET, EPIPE, TLS alerts)
 *   are reported with PT_CONN_ERROR, no write progress for the send timeout
 *   with PT_CONN_TIMEOUT. The layer never closes on its own.
 *
 *   Re-entrancy. pt_conn_close() called from inside a layer callback only
 *   marks the connection; it is closed when that callback returns to the
 *   layer (no callback is delivered in between). Callbacks may change the
 *   callbacks (a codec handing over to another) and append output freely.
 */
#ifndef PT_GATEWAY_CONN_H
#define PT_GATEWAY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/listener_conf.h"
#include "net/worker.h"
#include "portico/str.h"

typedef struct pt_config pt_config_t; /* core/config.h */

struct evbuffer;
struct event;
struct event_base;
struct ssl_st;

typedef struct pt_conn pt_conn_t;

/** What the codec currently driving a connection implements for the listener. */
typedef struct pt_codec_ops {
    const char *name; /* "h1", "h2" (logs, metrics) */
    /**
     * Graceful drain: accept no new request (H1: `Connection: close` on the
     * current response, or close at once when idle; H2: GOAWAY), let the
     * in-flight ones finish, then close through pt_conn_close(). May close
     * synchronously (the connection is gone when it returns in that case).
     */
    void (*drain)(pt_conn_t *conn);
    /**
     * Hard teardown: abort every request (pt__req_abort), free the codec
     * state and set conn->codec = NULL. Must NOT close or free `conn`: the
     * caller does that right after.
     */
    void (*destroy)(pt_conn_t *conn);
} pt_codec_ops_t;

/** What on_event reports (exactly one per call). */
enum {
    /** The peer ended its side cleanly; reading stopped, writing still works. */
    PT_CONN_EOF = 1,
    /** Read or write failed (reset, broken pipe, TLS error): nothing more gets through. */
    PT_CONN_ERROR = 2,
    /** Output pending and no write progress for the send timeout. */
    PT_CONN_TIMEOUT = 4,
};

/** Bytes arrived: they are at the end of pt_conn_input(conn). */
typedef void (*pt_conn_read_cb)(pt_conn_t *conn, void *ctx);
/**
 * Bytes arrived while the input buffer was empty, offered in place: returns how
 * many it took (consumed for good); the rest goes to the input buffer and
 * on_read follows. Same rules as on_read (output appended is written at the
 * end of the dispatch).
 */
typedef size_t (*pt_conn_data_cb)(pt_conn_t *conn, const void *data, size_t len, void *ctx);
/** A write left at most the low watermark in pt_conn_output(conn). */
typedef void (*pt_conn_drain_cb)(pt_conn_t *conn, void *ctx);
/** EOF, error or send timeout (PT_CONN_*). */
typedef void (*pt_conn_event_cb)(pt_conn_t *conn, int what, void *ctx);
/** The TLS handshake ended: `ok` false on failure or timeout (the callee closes then). */
typedef void (*pt_conn_handshake_cb)(pt_conn_t *conn, bool ok);

/** The I/O layer's state, embedded in pt_conn_t. Private to conn_io.c. */
typedef struct pt_conn_io {
    struct event_base *base;
    /* EV_READ|EV_PERSIST; unregistered only when readable while paused, or at EOF */
    struct event *rev;
    struct event *wev;      /* EV_WRITE|EV_PERSIST, registered only while the socket is blocked */
    struct event *flush_ev; /* deferred flush, made active by appends outside on_read */
    struct event *hs_timer; /* TLS handshake deadline (NULL after it) */
    struct evbuffer *in, *out;
    struct ssl_st *ssl; /* NULL on cleartext */
    pt_conn_read_cb on_read;
    pt_conn_data_cb on_data; /* optional, with on_read: small reads offered in place first */
    pt_conn_drain_cb on_drain;
    pt_conn_event_cb on_event;
    void *ctx;
    pt_conn_handshake_cb on_handshake;
    size_t lowat;     /* on_drain once the output is at most this */
    size_t read_size; /* bytes asked for per read (grows while reads come back full) */
    uint64_t send_ms; /* send timeout (0: none) */
    int ssl_wlen;     /* SSL_write length to repeat after WANT_*, 0 if none */
    unsigned depth;   /* layer callbacks on the stack */
    bool large_reads; /* the last read filled SMALL_READ: read in place (conn_io.c read_small) */
    bool rev_added;
    bool wev_added;
    bool read_paused;
    bool blocked;       /* the last write did not take everything: wait for the socket */
    bool flush_pending; /* flush_ev is active */
    bool early_drain;   /* pt_conn_flush() wrote: flush_ev owes on_drain */
    bool early_error;   /* pt_conn_flush() failed: flush_ev owes PT_CONN_ERROR */
    bool in_read;       /* inside on_read: the read dispatch flushes at its end */
    bool hold;          /* pt_conn_hold_flush(): appends schedule no deferred flush */
    bool eof;
    bool failed;
    bool close_pending; /* pt_conn_close() was called inside a callback */
    bool hs_done;       /* TLS handshake finished (always true on cleartext) */
    bool ssl_fatal;     /* a fatal TLS error happened: no SSL_shutdown */
    bool ssl_read_wants_write;
    bool ssl_write_wants_read;
    bool lent;          /* the socket is lent (pt_conn_lend): no reads, output held */
} pt_conn_io_t;

struct pt_conn {
    pt_worker_t *worker;
    int fd;
    /** The I/O layer (conn_io.c); released by the `close` operation. */
    pt_conn_io_t io;
    char client_addr_buf[64]; /* "127.0.0.1", "::1" (no port) */
    pt_str_t client_addr;     /* slice of client_addr_buf */
    bool is_tls;
    const pt_listener_conf_t *listener; /* in the snapshot `config` */
    pt_config_t *config;    /* snapshot the listener belongs to (reference held by listener.c) */
    pt_conn_t *prev, *next; /* worker's connection list (listener.c) */
    /**
     * Closes and frees the connection (listener.c; test harnesses provide
     * their own). Must call pt_conn_io_release(). Use pt_conn_close().
     */
    void (*close)(pt_conn_t *conn);
    /** Codec state and operations; NULL until a codec starts. */
    void *codec;
    const pt_codec_ops_t *codec_ops;
    bool draining; /* set by the worker before codec_ops->drain() */
};

/* ---- set-up and tear-down (listener.c, test harnesses) ---------------------- */

/**
 * Sets up the I/O layer of `conn` on the non-blocking socket `fd` in `base`:
 * buffers, events, the read registration (the only one a connection needs in
 * steady state). `fd` and `ssl` belong to the layer from this call on, also
 * when it fails: pt_conn_io_release() closes and frees them. With `ssl` the
 * connection speaks TLS as a server; call pt_conn_tls_accept() next. No
 * callbacks are set: nothing is read until a codec sets them. Returns 0, or
 * PT_ERR_NOMEM (release the connection then).
 */
int pt_conn_io_init(pt_conn_t *conn, struct event_base *base, int fd, struct ssl_st *ssl);

/**
 * Starts the TLS server handshake, driven by socket readiness, bounded by
 * `timeout_ms` (0: none). `done` runs once, from the loop: on success the
 * ALPN result is available (SSL_get0_alpn_selected on conn->io.ssl) and
 * `done` typically starts a codec; on failure `done` must close `conn`.
 */
void pt_conn_tls_accept(pt_conn_t *conn, uint64_t timeout_ms, pt_conn_handshake_cb done);

/**
 * Releases the layer: TLS close_notify (best effort, never after a fatal
 * error), events, buffers, SSL object, and closes conn->fd. Idempotent. For
 * `close` implementations only; everyone else calls pt_conn_close().
 */
void pt_conn_io_release(pt_conn_t *conn);

/**
 * Closes the socket and frees `conn` (the codec must have released its
 * state and set conn->codec = NULL first). `conn` is invalid afterwards.
 * Called from inside an I/O callback the close happens when the callback
 * returns to the layer.
 */
void pt_conn_close(pt_conn_t *conn);

/* ---- what codecs use ------------------------------------------------------------ */

/**
 * Sets (replaces) the callbacks and their `ctx`; any may be NULL. While
 * on_read is NULL nothing is read. A codec handing the connection over
 * leaves the callbacks to its successor; one that is torn down clears them.
 */
void pt_conn_set_callbacks(pt_conn_t *conn, pt_conn_read_cb on_read, pt_conn_drain_cb on_drain,
                           pt_conn_event_cb on_event, void *ctx);

/**
 * Optional, after pt_conn_set_callbacks (which clears it): small plaintext
 * reads that find the input buffer empty are offered to `on_data` in place,
 * before anything is buffered (see pt_conn_data_cb); on_read still gets what
 * it leaves. For a codec that usually consumes a read whole (a tunnel).
 */
void pt_conn_set_data_cb(pt_conn_t *conn, pt_conn_data_cb on_data);

/** The input buffer: bytes read and not yet consumed (drain what you used). */
struct evbuffer *pt_conn_input(pt_conn_t *conn);

/**
 * The output buffer. Append with any evbuffer function (evbuffer_add,
 * evbuffer_add_buffer, evbuffer_add_reference for zero copy, ...); do not
 * remove from it. Appends are written in batches (see the top comment).
 */
struct evbuffer *pt_conn_output(pt_conn_t *conn);

/** Appends `len` bytes (copied) to the output. Returns 0 or PT_ERR_NOMEM. */
int pt_conn_write(pt_conn_t *conn, const void *data, size_t len);

/** Bytes queued in the output and not yet handed to the kernel (or TLS). */
size_t pt_conn_out_pending(const pt_conn_t *conn);

/** on_drain fires after a write leaves at most `lowat` bytes queued (0: when empty). */
void pt_conn_set_lowat(pt_conn_t *conn, size_t lowat);

/** PT_CONN_TIMEOUT after `ms` without write progress while output waits (0: never). */
void pt_conn_set_send_timeout(pt_conn_t *conn, uint64_t ms);

/**
 * A unit of output (e.g. a complete response) is queued: write it now instead
 * of from the deferred flush at the end of this loop iteration, so it leaves
 * before the other events of the iteration run. Never calls back: on_drain or
 * an error event that the write causes is delivered from the deferred flush,
 * later in the same iteration. No effect inside a layer callback of this
 * connection (on_read's dispatch flushes at its end), while the socket is
 * blocked, after an error, or with nothing queued. on_drain is owed only when
 * more than the low watermark was queued before the write (a codec that queued
 * less waits for nothing: it schedules its own next step).
 */
void pt_conn_flush(pt_conn_t *conn);

/**
 * Sends `len` bytes (copied if they must wait) as one unit, at once: when
 * nothing is queued, the socket is not blocked and no layer callback of this
 * connection runs, they go to the socket straight from `data` (one send(2), no
 * buffer, no event); what the socket does not take is queued and written when
 * it is writable. Otherwise they are appended as pt_conn_write does (inside
 * on_read: written at the end of the dispatch; behind queued bytes or on TLS:
 * written now with them, as pt_conn_flush). Never calls back: an error event
 * comes from the deferred flush later in this loop iteration; on_drain follows
 * only a write of queued bytes (none when the socket took everything at once).
 * For a codec whose units are complete when handed over (a tunnel's relayed
 * bytes); one that builds a unit from several appends uses pt_conn_write and
 * pt_conn_flush. Returns 0 or PT_ERR_NOMEM.
 */
int pt_conn_send(pt_conn_t *conn, const void *data, size_t len);

/**
 * While held, appends made outside the layer's callbacks schedule no deferred
 * flush: the codec has its own step coming in this loop iteration and either
 * writes the unit itself (pt_conn_flush) or releases the hold, which schedules
 * the flush for what is still queued. Saves the flush event (scheduled, then
 * cancelled) of a unit built from several appends and flushed at once.
 * pt_conn_set_callbacks() releases it.
 */
void pt_conn_hold_flush(pt_conn_t *conn, bool hold);

/** Stops reading (cheap: no system call unless the socket becomes readable meanwhile). */
void pt_conn_pause_read(pt_conn_t *conn);

/** Reads again after pt_conn_pause_read(). No effect after EOF or an error. */
void pt_conn_resume_read(pt_conn_t *conn);

/**
 * Lends the plaintext socket to another owner for a while (a WebSocket
 * relay's data phase, handlers/ws_proxy.c): the layer stops reading it and
 * holds whatever is appended to its output (nothing is written, no event is
 * scheduled) until pt_conn_unlend(). The borrower reads and writes conn->fd
 * itself and first takes what the layer still holds: the input buffer's
 * bytes (the peer's, read already) and the output buffer's (to be written
 * before anything of its own), removing them (evbuffer_remove) from
 * pt_conn_input() and pt_conn_output(), and keeps the layer's send timeout
 * (*send_ms, 0: none) for its own blocked writes. Refused (false, nothing changed) on
 * TLS, after EOF or an error, while a write waits for the socket, or when
 * already lent. Closing the connection while lent is allowed (the borrower
 * must not touch the fd afterwards: its owner learns of it through its own
 * teardown, e.g. the request's abort hooks).
 */
bool pt_conn_lend(pt_conn_t *conn, uint64_t *send_ms);

/**
 * Ends a loan (pt_conn_lend): `data`/`len` (the borrower's bytes not yet
 * written; copied) go out before anything appended meanwhile, and
 * reading resumes unless paused (a peer's end of stream or reset the
 * borrower saw is seen again by the layer's next read and reported as
 * usual). Output is flushed from the deferred event of this loop iteration.
 */
void pt_conn_unlend(pt_conn_t *conn, const void *data, size_t len);

/**
 * Starts the HTTP/1.1 codec on `conn` (h1.c). `data`/`len` are bytes already
 * read from the connection that belong to the codec (may be NULL/0); they are
 * copied. On return the codec owns the I/O callbacks. Never fails: on
 * internal errors it closes the connection itself.
 */
void pt__h1_conn_start(pt_conn_t *conn, const void *data, size_t len);

#endif /* PT_GATEWAY_CONN_H */
