/*
 * conn_io.c -- the client connection I/O layer (see conn.h): one persistent
 * read registration, batched writes, EV_WRITE only while the socket is
 * blocked, TLS over SSL_read/SSL_write on the plain socket.
 *
 * Why not bufferevents: a bufferevent sizes every read with ioctl(FIONREAD)
 * and registers EV_WRITE (epoll_ctl) whenever its output gets data, then
 * unregisters it after the write: five system calls for a keep-alive request
 * where a read and a write suffice.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/conn.h"
#include "core/overload.h"
#include "net/sys.h"
#include "portico/status.h"

/* Bytes asked for per read: a little under 16 KiB so that the evbuffer chain
 * (header included) is one 16 KiB allocation; doubled while reads come back
 * full, up to READ_MAX. */
#define READ_MIN (16u * 1024u - 128u)
#define READ_MAX (64u * 1024u - 128u)
/* Reads into an empty input buffer go through a stack buffer of this size
 * while reads stay below it (see read_small). */
#define SMALL_READ 4096u
/* One write system call takes at most this many buffer segments. */
#define WRITE_IOV 64
/* Plaintext handed to one SSL_write (one TLS record at most). */
#define TLS_WRITE_MAX 16384

enum { W_DONE, W_BLOCKED, W_ERROR };

static void flush_now(pt_conn_t *conn);
static void do_read(pt_conn_t *conn);

/* ---- dispatch bookkeeping ------------------------------------------------ */

static void enter(pt_conn_t *conn)
{
    conn->io.depth++;
}

/* Returns true when the connection was closed (conn is freed). */
static bool leave(pt_conn_t *conn)
{
    if (--conn->io.depth == 0 && conn->io.close_pending) {
        conn->close(conn);
        return true;
    }
    return false;
}

static bool gone(const pt_conn_t *conn)
{
    return conn->io.close_pending;
}

static void deliver_event(pt_conn_t *conn, int what)
{
    pt_conn_io_t *io = &conn->io;
    if (io->on_event != NULL && !io->close_pending)
        io->on_event(conn, what, io->ctx);
}

static void timeval_ms(struct timeval *tv, uint64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000u);
    tv->tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
}

/* ---- registrations ------------------------------------------------------- */

static void want_write(pt_conn_io_t *io)
{
    if (io->wev_added)
        return;
    struct timeval tv;
    timeval_ms(&tv, io->send_ms);
    /* during the handshake its own timer bounds everything */
    event_add(io->wev, io->send_ms != 0 && io->hs_done ? &tv : NULL);
    io->wev_added = true;
}

static void stop_write(pt_conn_io_t *io)
{
    if (!io->wev_added)
        return;
    event_del(io->wev);
    io->wev_added = false;
}

static void stop_read(pt_conn_io_t *io)
{
    if (!io->rev_added)
        return;
    event_del(io->rev);
    io->rev_added = false;
}

/* ---- reading ------------------------------------------------------------- */

enum { RD_OK, RD_EOF, RD_ERROR };

/* A read that finds the input empty and expects a small batch goes to the
 * stack (`buf`, SMALL_READ bytes; `*lent` bytes read): offered in place to
 * on_data if the codec has one, and what it does not take is appended. The
 * append takes a small buffer chain (from malloc's per-thread cache) where
 * reading in place would take, and free when the codec drains it, a chain of
 * read_size bytes for every read. A read that fills SMALL_READ switches to
 * reading in place until one comes back short. */
static int read_small(pt_conn_t *conn, char *buf, size_t *lent)
{
    pt_conn_io_t *io = &conn->io;
    ssize_t r;
    do {
        r = pt_read(conn->fd, buf, SMALL_READ);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? RD_OK : RD_ERROR;
    if (r == 0)
        return RD_EOF;
    if ((size_t)r == SMALL_READ)
        io->large_reads = true; /* more may be waiting: epoll reports it again (level-triggered) */
    *lent = (size_t)r;
    return RD_OK;
}

static int read_plain(pt_conn_t *conn, size_t *got)
{
    pt_conn_io_t *io = &conn->io;
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(io->in, (ev_ssize_t)io->read_size, v, 2);
    if (n < 1)
        return RD_ERROR;
    ssize_t r;
    do {
        r = pt_readv(conn->fd, (struct iovec *)v, n);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        evbuffer_commit_space(io->in, v, 0);
        return errno == EAGAIN || errno == EWOULDBLOCK ? RD_OK : RD_ERROR;
    }
    if (r == 0) {
        evbuffer_commit_space(io->in, v, 0);
        return RD_EOF;
    }
    size_t left = (size_t)r;
    for (int i = 0; i < n; i++) {
        if (v[i].iov_len > left)
            v[i].iov_len = left;
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(io->in, v, n);
    if ((size_t)r < SMALL_READ)
        io->large_reads = false;
    if ((size_t)r == io->read_size && io->read_size < READ_MAX)
        io->read_size = io->read_size * 2 + 128u > READ_MAX ? READ_MAX : io->read_size * 2 + 128u;
    *got = (size_t)r;
    return RD_OK;
}

/* Classifies a failed SSL call. Returns -1 for fatal errors. */
static int ssl_err(pt_conn_io_t *io, int r)
{
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_ZERO_RETURN)
        return e;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
        return SSL_ERROR_ZERO_RETURN; /* EOF without close_notify */
    io->ssl_fatal = true;
    ERR_clear_error();
    return -1;
}

/* SSL_read until OpenSSL holds nothing more: a socket read at most once per
 * record boundary, then the plaintext of every record it brought. */
static int read_tls(pt_conn_t *conn, size_t *got)
{
    pt_conn_io_t *io = &conn->io;
    for (int rounds = 0; rounds < 64; rounds++) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(io->in, (ev_ssize_t)io->read_size, &v, 1) < 1)
            return RD_ERROR;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(io->ssl, v.iov_base, (int)v.iov_len);
        if (r > 0) {
            v.iov_len = (size_t)r;
            evbuffer_commit_space(io->in, &v, 1);
            *got += (size_t)r;
            if (!SSL_has_pending(io->ssl))
                return RD_OK;
            continue;
        }
        evbuffer_commit_space(io->in, &v, 0);
        switch (ssl_err(io, r)) {
        case SSL_ERROR_WANT_READ:
            return RD_OK;
        case SSL_ERROR_WANT_WRITE:
            io->ssl_read_wants_write = true; /* e.g. answering a key update */
            want_write(io);
            return RD_OK;
        case SSL_ERROR_ZERO_RETURN:
            return RD_EOF;
        default:
            return RD_ERROR;
        }
    }
    /* more than 64 records at once: the rest next time (level-triggered,
     * and SSL_has_pending is checked again on resume) */
    event_active(io->rev, EV_READ, 0);
    return RD_OK;
}

static void do_read(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    size_t got = 0, lent = 0;
    char small[SMALL_READ];
    int st;
    if (io->ssl != NULL)
        st = read_tls(conn, &got);
    else if (!io->large_reads && evbuffer_get_length(io->in) == 0)
        st = read_small(conn, small, &lent);
    else
        st = read_plain(conn, &got);
    if (st != RD_OK) {
        stop_read(io);
        if (st == RD_EOF)
            io->eof = true;
        else
            io->failed = true;
    }
    if (lent != 0) {
        size_t took = 0;
        if (io->on_data != NULL && io->on_read != NULL) {
            io->in_read = true;
            took = io->on_data(conn, small, lent, io->ctx);
            io->in_read = false;
            if (gone(conn))
                return;
        }
        if (took < lent) {
            if (evbuffer_add(io->in, small + took, lent - took) != 0) {
                stop_read(io);
                io->failed = true;
                st = RD_ERROR;
            } else {
                got = lent - took;
            }
        }
    }
    if (got != 0 && io->on_read != NULL) {
        io->in_read = true;
        io->on_read(conn, io->ctx);
        io->in_read = false;
        if (gone(conn))
            return;
    }
    /* what the read produced goes out before an EOF is reported */
    flush_now(conn);
    if (gone(conn) || st == RD_OK)
        return;
    if (st == RD_ERROR)
        deliver_event(conn, PT_CONN_ERROR);
    else if (!io->failed)
        deliver_event(conn, PT_CONN_EOF);
}

/* ---- writing ------------------------------------------------------------- */

static int write_plain(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    for (;;) {
        struct evbuffer_iovec v[WRITE_IOV];
        int n = evbuffer_peek(io->out, -1, NULL, v, WRITE_IOV);
        if (n <= 0)
            return W_DONE;
        if (n > WRITE_IOV)
            n = WRITE_IOV;
        struct iovec iov[WRITE_IOV];
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            total += v[i].iov_len;
        }
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        ssize_t w = pt_sendmsg(conn->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? W_BLOCKED : W_ERROR;
        }
        evbuffer_drain(io->out, (size_t)w);
        if ((size_t)w < total)
            return W_BLOCKED;
        if (evbuffer_get_length(io->out) == 0)
            return W_DONE;
    }
}

static int write_tls(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    for (;;) {
        size_t len = evbuffer_get_length(io->out);
        if (len == 0)
            return W_DONE;
        int n = io->ssl_wlen != 0 ? io->ssl_wlen : (int)(len < TLS_WRITE_MAX ? len : TLS_WRITE_MAX);
        /* the first n bytes never change between a WANT_* and its retry:
         * output is only appended to */
        unsigned char *p = evbuffer_pullup(io->out, n);
        if (p == NULL)
            return W_ERROR;
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(io->ssl, p, n);
        if (r > 0) {
            io->ssl_wlen = 0;
            evbuffer_drain(io->out, (size_t)r);
            continue;
        }
        switch (ssl_err(io, r)) {
        case SSL_ERROR_WANT_WRITE:
            io->ssl_wlen = n;
            return W_BLOCKED;
        case SSL_ERROR_WANT_READ:
            io->ssl_wlen = n;
            io->ssl_write_wants_read = true;
            if (!io->rev_added) {
                event_add(io->rev, NULL);
                io->rev_added = true;
            }
            return W_BLOCKED;
        default:
            return W_ERROR;
        }
    }
}

/* Writes what the output holds, as far as the socket takes it. */
static void write_out(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    size_t before = evbuffer_get_length(io->out);
    if (before == 0 || io->failed || !io->hs_done || io->lent)
        return;
    int st = io->ssl != NULL ? write_tls(conn) : write_plain(conn);
    if (st == W_ERROR) {
        io->failed = true;
        stop_write(io);
        stop_read(io);
        deliver_event(conn, PT_CONN_ERROR);
        return;
    }
    size_t after = evbuffer_get_length(io->out);
    io->blocked = st == W_BLOCKED;
    if (io->blocked && !io->ssl_write_wants_read)
        want_write(io);
    else if (!io->ssl_read_wants_write)
        stop_write(io);
    if (after < before && after <= io->lowat && io->on_drain != NULL)
        io->on_drain(conn, io->ctx);
}

/* A batch is complete: write now unless the socket is known to be blocked. */
static void flush_now(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    if (io->flush_pending) {
        io->flush_pending = false;
        event_del(io->flush_ev); /* no system call: it has no fd */
    }
    if (io->blocked || gone(conn))
        return;
    write_out(conn);
}

/* The output changed: schedule one flush for this loop iteration, unless the
 * read dispatch that is running flushes anyway or the socket is blocked. */
static void on_out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    pt_conn_t *conn = arg;
    pt_conn_io_t *io = &conn->io;
    pt_overload_buffered_add((int64_t)info->n_added - (int64_t)info->n_deleted);
    if (info->n_added == 0 || io->in_read || io->flush_pending || io->blocked || io->failed ||
        io->close_pending || io->hold || io->lent)
        return;
    io->flush_pending = true;
    event_active(io->flush_ev, EV_WRITE, 0);
}

/* The early write of pt_conn_flush(): write_out() without callbacks. What
 * write_out() would have called back (on_drain, the error event) is owed,
 * and delivered by the deferred flush event later in this loop iteration. */
static void flush_quiet(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    size_t before = evbuffer_get_length(io->out);
    int st = io->ssl != NULL ? write_tls(conn) : write_plain(conn);
    if (st == W_ERROR) {
        io->failed = true;
        stop_write(io);
        stop_read(io);
        io->early_error = true;
    } else {
        size_t after = evbuffer_get_length(io->out);
        io->blocked = st == W_BLOCKED;
        if (io->blocked && !io->ssl_write_wants_read)
            want_write(io);
        else if (!io->ssl_read_wants_write)
            stop_write(io);
        /* owed only to a codec that may wait for the output to go down: one
         * that queued no more than the low watermark waits for nothing */
        if (after < before && after <= io->lowat && before > io->lowat && io->on_drain != NULL)
            io->early_drain = true;
        if (!io->early_drain) {
            /* nothing owed: the deferred flush has nothing left to do */
            if (io->flush_pending) {
                io->flush_pending = false;
                event_del(io->flush_ev); /* no system call: it has no fd */
            }
            return;
        }
    }
    if (!io->flush_pending) {
        io->flush_pending = true;
        event_active(io->flush_ev, EV_WRITE, 0);
    }
}

/* ---- TLS handshake ------------------------------------------------------- */

static void handshake_end(pt_conn_t *conn, bool ok)
{
    pt_conn_io_t *io = &conn->io;
    if (io->hs_timer != NULL) {
        event_free(io->hs_timer);
        io->hs_timer = NULL;
    }
    stop_write(io);
    pt_conn_handshake_cb cb = io->on_handshake;
    io->on_handshake = NULL;
    if (ok)
        io->hs_done = true;
    if (cb != NULL)
        cb(conn, ok);
    if (!ok || gone(conn))
        return;
    /* the client's first request may have come with its Finished */
    if (SSL_has_pending(io->ssl) && io->on_read != NULL && !io->read_paused)
        do_read(conn);
    else
        flush_now(conn); /* e.g. HTTP/2 SETTINGS */
}

static void do_handshake(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(io->ssl);
    if (r == 1) {
        handshake_end(conn, true);
        return;
    }
    switch (ssl_err(io, r)) {
    case SSL_ERROR_WANT_READ:
        stop_write(io);
        return;
    case SSL_ERROR_WANT_WRITE:
        want_write(io);
        return;
    default:
        io->failed = true;
        stop_read(io);
        handshake_end(conn, false);
        return;
    }
}

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_conn_t *conn = arg;
    enter(conn);
    conn->io.failed = true;
    stop_read(&conn->io);
    handshake_end(conn, false);
    leave(conn);
}

/* ---- event callbacks ----------------------------------------------------- */

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_conn_t *conn = arg;
    pt_conn_io_t *io = &conn->io;
    enter(conn);
    if (!io->hs_done) {
        do_handshake(conn);
        goto out;
    }
    if (io->ssl_write_wants_read) {
        io->ssl_write_wants_read = false;
        io->blocked = false;
        write_out(conn);
        if (gone(conn))
            goto out;
    }
    if (io->read_paused || io->on_read == NULL || io->eof || io->failed) {
        stop_read(io); /* lazy pause: only now does it cost a system call */
        goto out;
    }
    do_read(conn);
out:
    leave(conn);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pt_conn_t *conn = arg;
    pt_conn_io_t *io = &conn->io;
    enter(conn);
    if (!io->hs_done) {
        do_handshake(conn);
        goto out;
    }
    if (what & EV_TIMEOUT) {
        stop_write(io);
        if (evbuffer_get_length(io->out) != 0 && !io->failed)
            deliver_event(conn, PT_CONN_TIMEOUT);
        goto out;
    }
    if (io->ssl_read_wants_write) {
        io->ssl_read_wants_write = false;
        if (!io->blocked)
            stop_write(io);
        if (!io->read_paused && io->on_read != NULL && !io->eof && !io->failed) {
            do_read(conn);
            if (gone(conn))
                goto out;
        }
    }
    if (io->blocked && !io->ssl_write_wants_read) {
        io->blocked = false;
        write_out(conn);
    }
out:
    leave(conn);
}

static void on_flush_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_conn_t *conn = arg;
    pt_conn_io_t *io = &conn->io;
    enter(conn);
    io->flush_pending = false;
    bool drain = io->early_drain;
    io->early_drain = false;
    if (io->early_error) {
        io->early_error = false;
        deliver_event(conn, PT_CONN_ERROR);
    } else if (!io->blocked && evbuffer_get_length(io->out) != 0) {
        write_out(conn); /* calls on_drain itself when it leaves at most lowat */
    } else if (drain && !io->failed && io->on_drain != NULL &&
               evbuffer_get_length(io->out) <= io->lowat) {
        io->on_drain(conn, io->ctx); /* owed by pt_conn_flush() */
    }
    leave(conn);
}

/* ---- public -------------------------------------------------------------- */

int pt_conn_io_init(pt_conn_t *conn, struct event_base *base, int fd, struct ssl_st *ssl)
{
    pt_conn_io_t *io = &conn->io;
    memset(io, 0, sizeof(*io));
    conn->fd = fd;
    io->base = base;
    io->ssl = ssl;
    io->read_size = READ_MIN;
    io->hs_done = ssl == NULL;
    io->in = evbuffer_new();
    io->out = evbuffer_new();
    io->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, conn);
    io->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, conn);
    io->flush_ev = event_new(base, -1, 0, on_flush_ev, conn);
    if (io->in == NULL || io->out == NULL || io->rev == NULL || io->wev == NULL ||
        io->flush_ev == NULL || evbuffer_add_cb(io->out, on_out_changed, conn) == NULL)
        return PT_ERR_NOMEM;
    if (ssl != NULL) {
        if (SSL_set_fd(ssl, fd) != 1)
            return PT_ERR_NOMEM;
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* one read(2) per record batch instead of header + body reads */
        SSL_set_read_ahead(ssl, 1);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
        SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF); /* EOF without close_notify is EOF */
#endif
        SSL_set_accept_state(ssl);
    }
    if (event_add(io->rev, NULL) != 0)
        return PT_ERR_NOMEM;
    io->rev_added = true;
    return 0;
}

void pt_conn_tls_accept(pt_conn_t *conn, uint64_t timeout_ms, pt_conn_handshake_cb done)
{
    pt_conn_io_t *io = &conn->io;
    io->on_handshake = done;
    if (timeout_ms != 0) {
        io->hs_timer = evtimer_new(io->base, on_hs_timeout, conn);
        if (io->hs_timer == NULL)
            abort();
        struct timeval tv;
        timeval_ms(&tv, timeout_ms);
        evtimer_add(io->hs_timer, &tv);
    }
}

void pt_conn_io_release(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    if (io->ssl != NULL) {
        if (io->hs_done && !io->ssl_fatal && !io->failed) {
            ERR_clear_error();
            SSL_shutdown(io->ssl); /* best effort close_notify; never waits */
        }
        ERR_clear_error();
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->hs_timer != NULL)
        event_free(io->hs_timer);
    if (io->rev != NULL)
        event_free(io->rev);
    if (io->wev != NULL)
        event_free(io->wev);
    if (io->flush_ev != NULL)
        event_free(io->flush_ev);
    io->hs_timer = io->rev = io->wev = io->flush_ev = NULL;
    if (io->out != NULL) {
        evbuffer_remove_cb(io->out, on_out_changed, conn);
        pt_overload_buffered_add(-(int64_t)evbuffer_get_length(io->out));
        evbuffer_free(io->out);
    }
    if (io->in != NULL)
        evbuffer_free(io->in);
    io->in = io->out = NULL;
    io->on_read = NULL;
    io->on_drain = NULL;
    io->on_event = NULL;
    io->on_data = NULL;
    if (conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
}

void pt_conn_close(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    if (io->depth > 0) {
        io->close_pending = true;
        return;
    }
    conn->close(conn);
}

void pt_conn_set_callbacks(pt_conn_t *conn, pt_conn_read_cb on_read, pt_conn_drain_cb on_drain,
                           pt_conn_event_cb on_event, void *ctx)
{
    pt_conn_io_t *io = &conn->io;
    io->on_read = on_read;
    io->on_drain = on_drain;
    io->on_event = on_event;
    io->ctx = ctx;
    io->on_data = NULL;
    pt_conn_hold_flush(conn, false);
    /* reading stopped while nobody listened: listen again */
    if (on_read != NULL && !io->read_paused)
        pt_conn_resume_read(conn);
}

void pt_conn_set_data_cb(pt_conn_t *conn, pt_conn_data_cb on_data)
{
    conn->io.on_data = on_data;
}

struct evbuffer *pt_conn_input(pt_conn_t *conn)
{
    return conn->io.in;
}

struct evbuffer *pt_conn_output(pt_conn_t *conn)
{
    return conn->io.out;
}

int pt_conn_write(pt_conn_t *conn, const void *data, size_t len)
{
    return evbuffer_add(conn->io.out, data, len) == 0 ? 0 : PT_ERR_NOMEM;
}

size_t pt_conn_out_pending(const pt_conn_t *conn)
{
    return evbuffer_get_length(conn->io.out);
}

void pt_conn_set_lowat(pt_conn_t *conn, size_t lowat)
{
    conn->io.lowat = lowat;
}

void pt_conn_set_send_timeout(pt_conn_t *conn, uint64_t ms)
{
    pt_conn_io_t *io = &conn->io;
    if (io->send_ms == ms)
        return;
    io->send_ms = ms;
    if (io->wev_added && io->hs_done) {
        io->wev_added = false;
        want_write(io); /* re-adding replaces the timeout */
    }
}

void pt_conn_flush(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    /* inside a layer callback (on_read flushes at its end anyway), or a write is already
     * waiting for the socket, or nothing can be written */
    if (io->depth != 0 || io->in_read || io->blocked || io->failed || io->close_pending ||
        !io->hs_done || io->early_error || io->lent || evbuffer_get_length(io->out) == 0)
        return;
    flush_quiet(conn);
}

int pt_conn_send(pt_conn_t *conn, const void *data, size_t len)
{
    pt_conn_io_t *io = &conn->io;
    if (len == 0)
        return 0;
    bool now = io->depth == 0 && !io->in_read && !io->blocked && !io->failed &&
               !io->close_pending && io->hs_done && !io->early_error && !io->lent;
    if (!now || io->ssl != NULL || evbuffer_get_length(io->out) != 0) {
        if (evbuffer_add(io->out, data, len) != 0)
            return PT_ERR_NOMEM;
        if (now)
            flush_quiet(conn); /* TLS, or behind queued bytes: one write of all of it */
        return 0;
    }
    ssize_t w;
    do {
        w = pt_send(conn->fd, data, len, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            /* as flush_quiet: the error event comes from the deferred flush */
            io->failed = true;
            stop_write(io);
            stop_read(io);
            io->early_error = true;
            if (!io->flush_pending) {
                io->flush_pending = true;
                event_active(io->flush_ev, EV_WRITE, 0);
            }
            return 0;
        }
        w = 0;
    }
    if ((size_t)w == len)
        return 0; /* nothing was queued before, nothing is now: no on_drain owed */
    /* The rest waits for the socket (blocked first: the append schedules nothing). */
    io->blocked = true;
    if (evbuffer_add(io->out, (const char *)data + w, len - (size_t)w) != 0)
        return PT_ERR_NOMEM;
    want_write(io);
    return 0;
}

void pt_conn_hold_flush(pt_conn_t *conn, bool hold)
{
    pt_conn_io_t *io = &conn->io;
    if (io->hold == hold)
        return;
    io->hold = hold;
    /* what was appended meanwhile gets the flush it would have had */
    if (!hold && !io->in_read && !io->flush_pending && !io->blocked && !io->failed &&
        !io->close_pending && !io->lent && io->out != NULL && evbuffer_get_length(io->out) != 0) {
        io->flush_pending = true;
        event_active(io->flush_ev, EV_WRITE, 0);
    }
}

void pt_conn_pause_read(pt_conn_t *conn)
{
    conn->io.read_paused = true;
}

void pt_conn_resume_read(pt_conn_t *conn)
{
    pt_conn_io_t *io = &conn->io;
    io->read_paused = false;
    if (io->eof || io->failed || io->close_pending || io->rev == NULL || io->lent)
        return;
    if (!io->rev_added) {
        event_add(io->rev, NULL);
        io->rev_added = true;
    }
    /* plaintext OpenSSL holds is invisible to epoll */
    if (io->ssl != NULL && io->hs_done && SSL_has_pending(io->ssl))
        event_active(io->rev, EV_READ, 0);
}

/* ---- lending the socket (a WebSocket relay's data phase) --------------------- */

bool pt_conn_lend(pt_conn_t *conn, uint64_t *send_ms)
{
    pt_conn_io_t *io = &conn->io;
    if (io->lent || io->ssl != NULL || io->eof || io->failed || io->close_pending ||
        io->blocked || io->early_error || !io->hs_done || io->rev == NULL)
        return false;
    stop_read(io);
    stop_write(io);
    if (io->flush_pending) {
        io->flush_pending = false;
        event_del(io->flush_ev);
    }
    io->lent = true;
    *send_ms = io->send_ms;
    return true;
}

void pt_conn_unlend(pt_conn_t *conn, const void *data, size_t len)
{
    pt_conn_io_t *io = &conn->io;
    if (!io->lent)
        return;
    io->lent = false;
    if (len != 0 && evbuffer_prepend(io->out, data, len) != 0) {
        io->failed = true; /* reported by the flush below */
        io->early_error = true;
    }
    if (!io->read_paused)
        pt_conn_resume_read(conn);
    if ((evbuffer_get_length(io->out) != 0 || io->early_error) && !io->flush_pending &&
        !io->close_pending) {
        io->flush_pending = true;
        event_active(io->flush_ev, EV_WRITE, 0);
    }
}
