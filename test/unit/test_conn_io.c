/*
 * test_conn_io.c -- the connection I/O layer (gateway/net/conn_io.c) over a
 * socketpair: batching, lazy read pausing, EOF and errors, the low watermark,
 * the send timeout, close from inside a callback, direct sends (pt_conn_send:
 * inline, partial, behind queued bytes, inside on_read, errors), the data
 * callback and small/large reads, holding the deferred flush, lending the
 * socket (pt_conn_lend/unlend: no reads, output held, the borrower's bytes
 * first on return), and TLS (handshake, ALPN,
 * large transfers through partial writes, close_notify, handshake deadline)
 * against an OpenSSL client on the other end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"

/* ---- harness --------------------------------------------------------------- */

typedef struct env {
    struct event_base *base;
    pt_conn_t *conn; /* NULL once closed */
    int peer;        /* the client's end */
    int reads, drains, eofs, errors, timeouts, closes, handshakes, handshake_fails;
    bool echo;          /* on_read: write back what arrived, in two appends */
    bool close_in_read; /* on_read: pt_conn_close() */
    bool closed_during_read;
    struct evbuffer *got; /* what on_read consumed */
    struct evbuffer *taken; /* what the data callback took */
    size_t take_max;        /* ... at most this much per offer */
    int offers;
    bool send_in_read;      /* on_read: pt_conn_send() what arrived, in two pieces */
    char alpn[16];
} env_t;

static env_t E;

static void t_close(pt_conn_t *conn)
{
    E.closes++;
    pt_conn_io_release(conn);
    free(conn);
    E.conn = NULL;
}

static void t_read(pt_conn_t *conn, void *ctx)
{
    assert_ptr_equal(ctx, &E);
    E.reads++;
    struct evbuffer *in = pt_conn_input(conn);
    size_t n = evbuffer_get_length(in);
    if (E.send_in_read) {
        unsigned char *p = evbuffer_pullup(in, -1);
        pt_conn_send(conn, p, n / 2);
        pt_conn_send(conn, p + n / 2, n - n / 2);
    }
    if (E.echo) {
        size_t half = n / 2;
        unsigned char *p = evbuffer_pullup(in, -1);
        pt_conn_write(conn, p, half);
        pt_conn_write(conn, p + half, n - half);
    }
    evbuffer_remove_buffer(in, E.got, n);
    if (E.close_in_read) {
        pt_conn_close(conn);
        E.closed_during_read = E.closes != 0; /* must still be 0: deferred */
    }
}

/* The data callback: records what it was offered and takes E.take_max of it. */
static size_t t_data(pt_conn_t *conn, const void *data, size_t len, void *ctx)
{
    (void)conn;
    assert_ptr_equal(ctx, &E);
    E.offers++;
    size_t n = len < E.take_max ? len : E.take_max;
    evbuffer_add(E.taken, data, n);
    return n;
}

static void t_drain(pt_conn_t *conn, void *ctx)
{
    (void)conn;
    (void)ctx;
    E.drains++;
}

static void t_event(pt_conn_t *conn, int what, void *ctx)
{
    (void)conn;
    (void)ctx;
    if (what == PT_CONN_EOF)
        E.eofs++;
    else if (what == PT_CONN_ERROR)
        E.errors++;
    else if (what == PT_CONN_TIMEOUT)
        E.timeouts++;
}

static void spin(int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(E.base, EVLOOP_NONBLOCK);
}

static void new_conn(SSL *ssl)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    E.peer = sv[1];
    pt_conn_t *conn = calloc(1, sizeof(*conn));
    conn->close = t_close;
    assert_int_equal(pt_conn_io_init(conn, E.base, sv[0], ssl), 0);
    E.conn = conn;
}

static void start_plain(void)
{
    new_conn(NULL);
    pt_conn_set_callbacks(E.conn, t_read, t_drain, t_event, &E);
}

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    E.base = event_base_new();
    E.got = evbuffer_new();
    E.taken = evbuffer_new();
    E.peer = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (E.conn != NULL)
        pt_conn_close(E.conn);
    if (E.peer >= 0)
        close(E.peer);
    evbuffer_free(E.got);
    evbuffer_free(E.taken);
    event_base_free(E.base);
    return 0;
}

/* Reads whatever the peer end has, up to `cap`. */
static size_t peer_read(char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(E.peer, buf + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    return len;
}

static void fire_append(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pt_conn_write(E.conn, "one,", 4);
    evbuffer_add(pt_conn_output(E.conn), "two,", 4);
    pt_conn_write(E.conn, "three", 5);
}

/* ---- plaintext --------------------------------------------------------------- */

static void test_appends_outside_read_are_one_write(void **state)
{
    (void)state;
    start_plain();
    /* output produced by another event (as upstream data would be) */
    struct event *ev = event_new(E.base, -1, 0, fire_append, NULL);
    event_active(ev, EV_TIMEOUT, 0);
    spin(1);
    event_free(ev);
    assert_int_equal(pt_conn_out_pending(E.conn), 0); /* flushed in the same loop iteration */
    assert_int_equal(E.drains, 1);                    /* by exactly one write */
    char buf[64];
    size_t n = peer_read(buf, sizeof(buf));
    assert_int_equal(n, 13);
    assert_memory_equal(buf, "one,two,three", 13);
}

/* pt_conn_flush(): the write happens at the call, its callbacks only from the loop. */
static void test_flush_writes_now_and_calls_back_later(void **state)
{
    (void)state;
    start_plain();
    pt_conn_write(E.conn, "early,", 6);
    pt_conn_write(E.conn, "bird", 4);
    pt_conn_flush(E.conn);
    assert_int_equal(pt_conn_out_pending(E.conn), 0); /* written before the loop ran */
    assert_int_equal(E.drains, 0);                    /* ... without calling back */
    char buf[64];
    assert_int_equal(peer_read(buf, sizeof(buf)), 10);
    assert_memory_equal(buf, "early,bird", 10);
    spin(1);
    assert_int_equal(E.drains, 1); /* owed on_drain, delivered once by the deferred flush */
    pt_conn_flush(E.conn);         /* nothing queued: no effect */
    spin(1);
    assert_int_equal(E.drains, 1);
    assert_int_equal(E.errors, 0);
}

static void test_flush_error_is_reported_from_the_loop(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    start_plain();
    close(E.peer);
    E.peer = -1;
    pt_conn_write(E.conn, "lost", 4);
    pt_conn_flush(E.conn);
    assert_int_equal(E.errors, 0); /* never from inside pt_conn_flush() */
    pt_conn_write(E.conn, "more", 4);
    pt_conn_flush(E.conn); /* after a failure: no effect */
    spin(1);
    assert_int_equal(E.errors, 1);
    assert_int_equal(E.drains, 0);
}

static void test_read_dispatch_flushes_once_at_its_end(void **state)
{
    (void)state;
    E.echo = true;
    start_plain();
    assert_int_equal(write(E.peer, "hello world", 11), 11);
    spin(2);
    assert_int_equal(E.reads, 1);
    assert_int_equal(E.drains, 1); /* two appends, one write */
    char buf[64];
    assert_int_equal(peer_read(buf, sizeof(buf)), 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(evbuffer_get_length(E.got), 11);
}

static void test_eof_after_data_then_half_close_writes(void **state)
{
    (void)state;
    start_plain();
    assert_int_equal(write(E.peer, "abc", 3), 3);
    shutdown(E.peer, SHUT_WR);
    spin(3);
    assert_int_equal(evbuffer_get_length(E.got), 3);
    assert_int_equal(E.eofs, 1);
    assert_int_equal(E.errors, 0);
    spin(3);
    assert_int_equal(E.eofs, 1); /* reported once */
    /* the other direction still works */
    pt_conn_write(E.conn, "bye", 3);
    spin(1);
    char buf[8];
    assert_int_equal(peer_read(buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "bye", 3);
}

static void test_close_inside_callback_is_deferred(void **state)
{
    (void)state;
    E.close_in_read = true;
    start_plain();
    assert_int_equal(write(E.peer, "x", 1), 1);
    spin(2);
    assert_int_equal(E.reads, 1);
    assert_false(E.closed_during_read);
    assert_int_equal(E.closes, 1);
    assert_null(E.conn);
    char c;
    assert_int_equal(read(E.peer, &c, 1), 0); /* socket closed */
}

static void test_pause_and_resume_read(void **state)
{
    (void)state;
    start_plain();
    pt_conn_pause_read(E.conn);
    assert_int_equal(write(E.peer, "data", 4), 4);
    spin(3);
    assert_int_equal(E.reads, 0);
    assert_false(E.conn->io.rev_added); /* readable while paused: unregistered now */
    pt_conn_resume_read(E.conn);
    spin(2);
    assert_int_equal(E.reads, 1);
    assert_int_equal(evbuffer_get_length(E.got), 4);
    /* a pause with nothing arriving keeps the registration (no system call) */
    pt_conn_pause_read(E.conn);
    spin(2);
    assert_true(E.conn->io.rev_added);
    pt_conn_resume_read(E.conn);
    assert_int_equal(write(E.peer, "more", 4), 4);
    spin(2);
    assert_int_equal(E.reads, 2);
}

static void test_blocked_output_drains_in_order(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_lowat(E.conn, 0);
    size_t total = 4u << 20;
    unsigned char *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 12));
    pt_conn_write(E.conn, data, total);
    spin(2);
    assert_true(pt_conn_out_pending(E.conn) > 0); /* the socketpair does not take 4 MiB */
    assert_true(E.conn->io.wev_added);
    assert_int_equal(E.drains, 0);
    unsigned char *got = malloc(total);
    size_t len = 0;
    for (int i = 0; i < 10000 && len < total; i++) {
        len += peer_read((char *)got + len, total - len);
        spin(1);
    }
    assert_int_equal(len, total);
    assert_memory_equal(got, data, total);
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    assert_int_equal(E.drains, 1); /* lowat 0: once, when empty */
    assert_false(E.conn->io.wev_added);
    free(data);
    free(got);
}

static void test_send_timeout(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_send_timeout(E.conn, 50);
    size_t total = 4u << 20;
    char *data = calloc(1, total);
    pt_conn_write(E.conn, data, total);
    free(data);
    struct timeval tv = {0, 200000};
    event_base_loopexit(E.base, &tv);
    event_base_dispatch(E.base);
    assert_int_equal(E.timeouts, 1);
    assert_int_equal(E.errors, 0);
}

static void test_write_error_is_reported(void **state)
{
    (void)state;
    start_plain();
    close(E.peer);
    E.peer = -1;
    pt_conn_write(E.conn, "lost", 4);
    spin(2);
    assert_int_equal(E.errors + E.eofs, 1);
    assert_true(E.conn->io.failed || E.conn->io.eof);
}

/* Below the low watermark a codec waits for nothing: pt_conn_flush owes no on_drain. */
static void test_flush_below_lowat_owes_no_drain(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_lowat(E.conn, 64);
    pt_conn_write(E.conn, "small", 5);
    pt_conn_flush(E.conn);
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    spin(2);
    assert_int_equal(E.drains, 0);
    assert_false(E.conn->io.flush_pending);
    char big[200];
    memset(big, 'b', sizeof(big));
    pt_conn_write(E.conn, big, sizeof(big)); /* above the watermark: the codec may wait */
    pt_conn_flush(E.conn);
    spin(2);
    assert_int_equal(E.drains, 1);
    char buf[256];
    assert_int_equal(peer_read(buf, sizeof(buf)), 205);
}

/* pt_conn_send() outside callbacks: on the socket at the call, nothing queued, no event. */
static void test_send_writes_inline(void **state)
{
    (void)state;
    start_plain();
    assert_int_equal(pt_conn_send(E.conn, "direct", 6), 0);
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    assert_false(E.conn->io.flush_pending); /* no deferred flush was scheduled */
    char buf[16];
    assert_int_equal(peer_read(buf, sizeof(buf)), 6); /* before the loop ran */
    assert_memory_equal(buf, "direct", 6);
    spin(2);
    assert_int_equal(E.drains, 0); /* nothing was queued: no on_drain */
    assert_int_equal(E.errors, 0);
}

/* What the socket does not take is queued, written in order when writable; on_drain then. */
static void test_send_partial_queues_the_rest(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_lowat(E.conn, 0);
    size_t total = 4u << 20;
    unsigned char *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 7 + (i >> 10));
    assert_int_equal(pt_conn_send(E.conn, data, total / 2), 0);
    assert_true(pt_conn_out_pending(E.conn) > 0); /* the socketpair took part of it */
    assert_true(E.conn->io.blocked);
    assert_true(E.conn->io.wev_added);
    assert_int_equal(pt_conn_send(E.conn, data + total / 2, total - total / 2), 0); /* queued */
    assert_int_equal(E.drains, 0);
    unsigned char *got = malloc(total);
    size_t len = 0;
    for (int i = 0; i < 10000 && len < total; i++) {
        len += peer_read((char *)got + len, total - len);
        spin(1);
    }
    assert_int_equal(len, total);
    assert_memory_equal(got, data, total);
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    assert_int_equal(E.drains, 1);
    assert_false(E.conn->io.wev_added);
    free(data);
    free(got);
}

/* Behind bytes appended earlier in the iteration, a send keeps the order (one write). */
static void test_send_behind_queued_bytes_keeps_order(void **state)
{
    (void)state;
    start_plain();
    pt_conn_write(E.conn, "first,", 6); /* waits for the deferred flush */
    assert_int_equal(pt_conn_send(E.conn, "second", 6), 0);
    assert_int_equal(pt_conn_out_pending(E.conn), 0); /* both written by the send */
    char buf[32];
    assert_int_equal(peer_read(buf, sizeof(buf)), 12);
    assert_memory_equal(buf, "first,second", 12);
    spin(2);
    assert_int_equal(E.errors, 0);
}

/* Inside on_read a send is batched like any append: one write at the end of the dispatch. */
static void test_send_inside_read_is_batched(void **state)
{
    (void)state;
    E.send_in_read = true;
    start_plain();
    assert_int_equal(write(E.peer, "ping-pong", 9), 9);
    spin(2);
    assert_int_equal(E.reads, 1);
    assert_int_equal(E.drains, 1); /* two sends, one write of queued bytes */
    char buf[16];
    assert_int_equal(peer_read(buf, sizeof(buf)), 9);
    assert_memory_equal(buf, "ping-pong", 9);
}

static void test_send_error_is_reported_from_the_loop(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    start_plain();
    close(E.peer);
    E.peer = -1;
    assert_int_equal(pt_conn_send(E.conn, "lost", 4), 0);
    assert_int_equal(E.errors, 0); /* never from inside pt_conn_send() */
    assert_int_equal(pt_conn_send(E.conn, "more", 4), 0);
    spin(1);
    assert_int_equal(E.errors, 1);
    assert_int_equal(E.drains, 0);
}

/* A small read into an empty input is offered in place; what is left goes to on_read. */
static void test_data_callback_takes_in_place(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_data_cb(E.conn, t_data);
    E.take_max = 1 << 20;
    assert_int_equal(write(E.peer, "all of it", 9), 9);
    spin(2);
    assert_int_equal(E.offers, 1);
    assert_int_equal(E.reads, 0); /* taken whole: nothing buffered, no on_read */
    assert_int_equal(evbuffer_get_length(E.taken), 9);
    assert_int_equal(evbuffer_get_length(pt_conn_input(E.conn)), 0);
    E.take_max = 3;
    assert_int_equal(write(E.peer, "abcdefgh", 8), 8);
    spin(2);
    assert_int_equal(E.offers, 2);
    assert_int_equal(E.reads, 1); /* the rest, buffered, in order */
    char buf[16];
    assert_int_equal(evbuffer_remove(E.taken, buf, sizeof(buf)), 12);
    assert_memory_equal(buf, "all of itabc", 12);
    assert_int_equal(evbuffer_remove(E.got, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "defgh", 5);
    /* pt_conn_set_callbacks() clears it */
    pt_conn_set_callbacks(E.conn, t_read, t_drain, t_event, &E);
    assert_int_equal(write(E.peer, "xyz", 3), 3);
    spin(2);
    assert_int_equal(E.offers, 2);
    assert_int_equal(E.reads, 2);
}

/* Reads stay in order across the switch between small (stack) and large (in place) reads. */
static void test_small_and_large_reads_keep_order(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_data_cb(E.conn, t_data); /* offered only what finds the input empty */
    E.take_max = 0;
    size_t total = 3u << 20;
    unsigned char *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 13 + (i >> 9));
    size_t sent = 0;
    for (int i = 0; i < 100000 && sent < total; i++) {
        ssize_t n = write(E.peer, data + sent, total - sent);
        if (n > 0)
            sent += (size_t)n;
        spin(1);
    }
    spin(4);
    assert_int_equal(sent, total);
    assert_int_equal(evbuffer_get_length(E.got), total);
    assert_memory_equal(evbuffer_pullup(E.got, -1), data, total);
    assert_true(E.offers >= 1);
    assert_int_equal(evbuffer_get_length(E.taken), 0);
    /* a short read switches back to small reads */
    assert_int_equal(write(E.peer, "tail", 4), 4);
    spin(2);
    assert_false(E.conn->io.large_reads);
    free(data);
}

/* A held connection's appends wait for the codec: its flush, or the release of the hold. */
static void test_hold_flush(void **state)
{
    (void)state;
    start_plain();
    pt_conn_set_lowat(E.conn, 64); /* (no on_drain owed by the flush below) */
    pt_conn_hold_flush(E.conn, true);
    pt_conn_write(E.conn, "held", 4);
    assert_false(E.conn->io.flush_pending); /* no deferred flush scheduled */
    spin(2);
    assert_int_equal(pt_conn_out_pending(E.conn), 4); /* still queued */
    pt_conn_write(E.conn, ",more", 5);
    pt_conn_flush(E.conn); /* the codec's own write */
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    pt_conn_write(E.conn, ",last", 5);
    spin(2);
    assert_int_equal(pt_conn_out_pending(E.conn), 5);
    pt_conn_hold_flush(E.conn, false); /* released: the flush it would have had */
    assert_true(E.conn->io.flush_pending);
    spin(1);
    assert_int_equal(pt_conn_out_pending(E.conn), 0);
    char buf[32];
    assert_int_equal(peer_read(buf, sizeof(buf)), 14);
    assert_memory_equal(buf, "held,more,last", 14);
    /* pt_conn_set_callbacks() releases it */
    pt_conn_hold_flush(E.conn, true);
    pt_conn_set_callbacks(E.conn, t_read, t_drain, t_event, &E);
    assert_false(E.conn->io.hold);
}

/* pt_conn_lend: the layer neither reads nor writes the socket until pt_conn_unlend, whose
 * bytes go out before what was appended meanwhile; reading then goes on. */
static void test_lend_and_unlend(void **state)
{
    (void)state;
    start_plain();
    assert_int_equal(write(E.peer, "head", 4), 4);
    spin(2);
    assert_int_equal(E.reads, 1);
    pt_conn_write(E.conn, "101,", 4); /* queued, not written yet: the borrower takes it */
    uint64_t send_ms = 1;
    pt_conn_set_send_timeout(E.conn, 2500);
    assert_true(pt_conn_lend(E.conn, &send_ms));
    assert_int_equal(send_ms, 2500);
    assert_false(pt_conn_lend(E.conn, &send_ms)); /* once */
    char tmp[8];
    assert_int_equal(evbuffer_remove(pt_conn_output(E.conn), tmp, sizeof(tmp)), 4);
    assert_int_equal(write(E.peer, "mine", 4), 4);
    pt_conn_resume_read(E.conn);        /* a codec asking: no effect while lent */
    pt_conn_write(E.conn, "held", 4);   /* appended meanwhile: held */
    assert_int_equal(pt_conn_send(E.conn, "+sent", 5), 0);
    pt_conn_flush(E.conn);
    spin(3);
    assert_int_equal(E.reads, 1);       /* the layer did not read */
    char buf[64];
    assert_int_equal(peer_read(buf, sizeof(buf)), 0); /* nor write */
    assert_int_equal(read(E.conn->fd, buf, sizeof(buf)), 4); /* the borrower reads */
    pt_conn_unlend(E.conn, "back,", 5);
    spin(2);
    assert_int_equal(peer_read(buf, sizeof(buf)), 14);
    assert_memory_equal(buf, "back,held+sent", 14);
    assert_int_equal(write(E.peer, "again", 5), 5);
    spin(2);
    assert_int_equal(E.reads, 2);       /* reading goes on */
    assert_int_equal(evbuffer_get_length(E.got), 9);
    assert_int_equal(E.errors, 0);
}

/* Refused on a blocked socket (a write waits) and after EOF: nothing changes. */
static void test_lend_refused(void **state)
{
    (void)state;
    start_plain();
    static char big[1 << 20];
    memset(big, 'z', sizeof(big));
    assert_int_equal(pt_conn_send(E.conn, big, sizeof(big)), 0); /* more than the socket takes */
    uint64_t ms;
    assert_false(pt_conn_lend(E.conn, &ms));
    char buf[65536];
    while (pt_conn_out_pending(E.conn) != 0) {
        peer_read(buf, sizeof(buf));
        spin(1);
    }
    peer_read(buf, sizeof(buf));
    shutdown(E.peer, SHUT_WR);
    spin(2);
    assert_int_equal(E.eofs, 1);
    assert_false(pt_conn_lend(E.conn, &ms));
}

static void test_no_read_without_callbacks(void **state)
{
    (void)state;
    new_conn(NULL);
    assert_int_equal(write(E.peer, "early", 5), 5);
    spin(2);
    assert_int_equal(evbuffer_get_length(pt_conn_input(E.conn)), 0);
    assert_false(E.conn->io.rev_added); /* nobody listens: unregistered */
    pt_conn_set_callbacks(E.conn, t_read, t_drain, t_event, &E);
    spin(2);
    assert_int_equal(evbuffer_get_length(E.got), 5);
}

/* ---- TLS --------------------------------------------------------------------- */

static SSL_CTX *server_ctx, *client_ctx;

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int tls_setup_all(void **state)
{
    (void)state;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(pkey);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
    server_ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(server_ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(server_ctx, pkey), 1);
    SSL_CTX_set_alpn_select_cb(server_ctx, alpn_select, NULL);
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return 0;
}

static int tls_teardown_all(void **state)
{
    (void)state;
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    return 0;
}

static void on_hs(pt_conn_t *conn, bool ok)
{
    if (!ok) {
        E.handshake_fails++;
        pt_conn_close(conn);
        return;
    }
    E.handshakes++;
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(conn->io.ssl, &p, &len);
    if (len < sizeof(E.alpn)) {
        memcpy(E.alpn, p, len);
        E.alpn[len] = 0;
    }
    pt_conn_set_callbacks(conn, t_read, t_drain, t_event, &E);
    pt_conn_write(conn, "welcome", 7); /* like an HTTP/2 server preface */
}

static SSL *client_new(void)
{
    SSL *c = SSL_new(client_ctx);
    SSL_set_fd(c, E.peer);
    SSL_set_connect_state(c);
    static const unsigned char alpn[] = "\x02h2";
    SSL_set_alpn_protos(c, alpn, sizeof(alpn) - 1);
    return c;
}

/* Drives the client handshake and the server loop until both are done. */
static void client_handshake(SSL *c)
{
    for (int i = 0; i < 1000; i++) {
        int r = SSL_do_handshake(c);
        spin(1);
        if (r == 1 && E.handshakes + E.handshake_fails > 0)
            return;
        if (r != 1) {
            int e = SSL_get_error(c, r);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        }
    }
    fail_msg("handshake did not finish");
}

/* Reads up to `want` plaintext bytes from the client SSL, spinning the server loop. */
static size_t client_read(SSL *c, unsigned char *buf, size_t want)
{
    size_t len = 0;
    for (int i = 0; i < 20000 && len < want; i++) {
        int r = SSL_read(c, buf + len, (int)(want - len));
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
            break;
        spin(1);
    }
    return len;
}

static void test_tls_handshake_alpn_echo_close_notify(void **state)
{
    (void)state;
    E.echo = true;
    new_conn(SSL_new(server_ctx));
    pt_conn_tls_accept(E.conn, 5000, on_hs);
    SSL *c = client_new();
    client_handshake(c);
    assert_int_equal(E.handshakes, 1);
    assert_string_equal(E.alpn, "h2");
    unsigned char buf[64];
    assert_int_equal(client_read(c, buf, 7), 7);
    assert_memory_equal(buf, "welcome", 7);
    assert_int_equal(SSL_write(c, "ping pong", 9), 9);
    spin(2);
    assert_int_equal(client_read(c, buf, 9), 9);
    assert_memory_equal(buf, "ping pong", 9);
    SSL_shutdown(c); /* close_notify: a clean EOF */
    spin(3);
    assert_int_equal(E.eofs, 1);
    assert_int_equal(E.errors, 0);
    pt_conn_close(E.conn);
    /* our close sent close_notify as well */
    int r = SSL_read(c, buf, sizeof(buf));
    assert_true(r <= 0);
    assert_int_equal(SSL_get_error(c, r), SSL_ERROR_ZERO_RETURN);
    SSL_free(c);
}

static void test_tls_large_transfer_both_ways(void **state)
{
    (void)state;
    E.echo = true;
    new_conn(SSL_new(server_ctx));
    pt_conn_tls_accept(E.conn, 5000, on_hs);
    SSL *c = client_new();
    client_handshake(c);
    unsigned char hello[7];
    assert_int_equal(client_read(c, hello, 7), 7);
    /* 2 MiB through the echo: the server's writes block and continue */
    size_t total = 2u << 20, sent = 0, recvd = 0;
    unsigned char *data = malloc(total), *back = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 7 + (i >> 10));
    for (int i = 0; i < 200000 && recvd < total; i++) {
        if (sent < total) {
            size_t n = total - sent < 16384 ? total - sent : 16384;
            int r = SSL_write(c, data + sent, (int)n);
            if (r > 0)
                sent += (size_t)r;
        }
        spin(1);
        int r = SSL_read(c, back + recvd, (int)(total - recvd));
        if (r > 0)
            recvd += (size_t)r;
    }
    assert_int_equal(recvd, total);
    assert_memory_equal(back, data, total);
    assert_int_equal(E.errors, 0);
    free(data);
    free(back);
    SSL_free(c);
}

static void test_tls_handshake_deadline(void **state)
{
    (void)state;
    new_conn(SSL_new(server_ctx));
    pt_conn_tls_accept(E.conn, 30, on_hs);
    struct timeval tv = {0, 150000};
    event_base_loopexit(E.base, &tv);
    event_base_dispatch(E.base);
    assert_int_equal(E.handshake_fails, 1);
    assert_int_equal(E.handshakes, 0);
    assert_null(E.conn); /* closed by the callback */
}

static void test_tls_garbage_fails_handshake(void **state)
{
    (void)state;
    new_conn(SSL_new(server_ctx));
    pt_conn_tls_accept(E.conn, 5000, on_hs);
    char junk[600];
    memset(junk, 'G', sizeof(junk));
    assert_int_equal(write(E.peer, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    spin(3);
    assert_int_equal(E.handshake_fails, 1);
    assert_null(E.conn);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2), as in the gateway (main.c) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_appends_outside_read_are_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_writes_now_and_calls_back_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flush_error_is_reported_from_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_dispatch_flushes_once_at_its_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eof_after_data_then_half_close_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callback_is_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocked_output_drains_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_read_without_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lend_and_unlend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lend_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_below_lowat_owes_no_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_writes_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_partial_queues_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_behind_queued_bytes_keeps_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_inside_read_is_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_error_is_reported_from_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_data_callback_takes_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_and_large_reads_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_alpn_echo_close_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_large_transfer_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_garbage_fails_handshake, setup, teardown),
    };
    return cmocka_run_group_tests(tests, tls_setup_all, tls_teardown_all);
}
