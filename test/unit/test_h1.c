/*
 * test_h1.c -- the HTTP/1.1 connection codec (gateway/http/h1.c) over a
 * socketpair, with a fake request layer.
 *
 * This file defines the request-layer functions h1.c calls (pt__req_*,
 * pt__resp_fail) and the HTTP/2 hand-over entry points, so the linker takes
 * h1.o, h1parse.o, arena.o, headers.o ... from portico_core but never
 * request.o or h2.o. The fake records what the codec does and lets each test
 * answer requests in any order, which is what the ordering logic must survive.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "core/config.h"
#include "http/h1.h"
#include "core/request.h"

/* ---- the fake request layer ------------------------------------------------ */

#define MAX_REQS 64

typedef struct fake {
    pt_req_t *reqs[MAX_REQS];
    int n;
    int released, aborted, writable;
    bool auto_answer; /* answer every request at headers_done with its path */
    int h2_start_calls;
    char h2_bytes[256];
    size_t h2_len;
    pt_conn_t *conn;
    bool conn_closed;
} fake_t;

static fake_t F;

pt_req_t *pt__req_new(pt_worker_t *w, const pt_stream_ops_t *ops, void *stream)
{
    pt_arena_t *a = pt_arena_new(0, 0);
    pt_req_t *req = pt_arena_zalloc(a, sizeof(*req));
    req->arena = a;
    req->worker = w;
    req->ops = ops;
    req->stream = stream;
    req->content_length = -1;
    req->resp_content_length = -1;
    pt_headers_init(&req->headers, a);
    pt_headers_init(&req->resp_headers, a);
    pt_headers_init(&req->resp_trailers, a);
    req->body = evbuffer_new();
    req->holds = PT_REQ_HOLD_CODEC;
    assert_true(F.n < MAX_REQS);
    F.reqs[F.n++] = req;
    return req;
}

static void answer(pt_req_t *req, int status, const char *body, bool known_length)
{
    assert_non_null(req->stream);
    req->resp_status = status;
    req->resp_state = PT_RESP_STARTED;
    req->resp_content_length = known_length ? (int64_t)strlen(body) : -1;
    pt_headers_add(&req->resp_headers, PT_STR("x-path"), req->path);
    req->ops->send_head(req);
    req->resp_state = PT_RESP_ENDED;
    req->ops->send_body(req, body, strlen(body), true);
}

void pt__req_headers_done(pt_req_t *req)
{
    if (F.auto_answer)
        answer(req, 200, "ok", true);
}

void pt__req_reject(pt_req_t *req, int st, const char *reason)
{
    answer(req, pt_status_http(st), "{\"error\":1}", true);
}

void pt__resp_fail(pt_req_t *req, int st, const char *reason)
{
    if (pt__resp_ended(req))
        return;
    if (pt__resp_started(req)) {
        req->resp_state = PT_RESP_ENDED;
        req->ops->reset(req);
        return;
    }
    answer(req, pt_status_http(st), "{\"error\":1}", true);
}

void pt__req_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    if (len != 0)
        evbuffer_add(req->body, data, len);
    if (end)
        req->body_done = true;
}

size_t pt__req_body_queued(const pt_req_t *req)
{
    return req->body != NULL ? evbuffer_get_length(req->body) : 0;
}

void pt__req_on_writable(pt_req_t *req)
{
    F.writable++;
}

void pt__req_codec_done(pt_req_t *req)
{
    req->holds &= ~PT_REQ_HOLD_CODEC;
    F.released++;
}

void pt__req_abort(pt_req_t *req)
{
    req->aborted = true;
    req->holds &= ~PT_REQ_HOLD_CODEC;
    F.aborted++;
}

void pt__h2_conn_start(pt_conn_t *conn, const uint8_t *already_read, size_t len)
{
    F.h2_start_calls++;
    F.h2_len = len < sizeof(F.h2_bytes) ? len : sizeof(F.h2_bytes);
    memcpy(F.h2_bytes, already_read, F.h2_len);
    pt_conn_close(conn);
}

int pt__h2_conn_upgrade(pt_conn_t *conn, pt_req_t *req, pt_str_t settings)
{
    return PT_ERR_INVALID; /* decline: the request is served over HTTP/1.1 */
}

/* ---- harness ------------------------------------------------------------------- */

typedef struct env {
    struct event_base *base;
    pt_worker_t w;
    pt_config_t cfg;
    pt_listener_conf_t lc;
    int peer; /* the client's end */
} env_t;

static env_t E;

static void test_conn_close(pt_conn_t *conn)
{
    pt_conn_io_release(conn);
    free(conn);
    F.conn = NULL;
    F.conn_closed = true;
}

static void start(void)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    E.peer = sv[1];
    pt_conn_t *conn = calloc(1, sizeof(*conn));
    conn->worker = &E.w;
    assert_int_equal(pt_conn_io_init(conn, E.base, sv[0], NULL), 0);
    conn->client_addr = PT_STR("127.0.0.1");
    conn->listener = &E.lc;
    conn->config = &E.cfg;
    conn->close = test_conn_close;
    F.conn = conn;
    pt__h1_conn_start(conn, NULL, 0);
}

static int setup(void **state)
{
    memset(&F, 0, sizeof(F));
    memset(&E, 0, sizeof(E));
    E.base = event_base_new();
    E.w.base = E.base;
    E.w.config = &E.cfg;
    E.cfg.limits = (pt_limits_t){.max_request_line = 8192,
                                 .max_header_bytes = 65536,
                                 .max_header_count = 100,
                                 .max_body = 1 << 20,
                                 .max_pipeline = 16,
                                 .max_requests_per_conn = 1000,
                                 .max_chunk_ext = 4096,
                                 .max_response_buffer = 256 * 1024};
    E.cfg.timeouts = (pt_timeouts_t){
        .header_ms = 10000, .body_ms = 10000, .keepalive_ms = 10000, .send_ms = 10000};
    E.lc.h2c = true;
    return 0;
}

static int teardown(void **state)
{
    if (F.conn != NULL && F.conn->codec_ops != NULL) {
        F.conn->codec_ops->destroy(F.conn);
        test_conn_close(F.conn);
    }
    for (int i = 0; i < F.n; i++) {
        evbuffer_free(F.reqs[i]->body);
        pt_arena_destroy(F.reqs[i]->arena);
    }
    if (E.peer > 0)
        close(E.peer);
    event_base_free(E.base);
    return 0;
}

static void spin(int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(E.base, EVLOOP_NONBLOCK);
}

static void client_send(const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(E.peer, s, n), (ssize_t)n);
    spin(5);
}

/* Everything the codec wrote so far, NUL-terminated (static buffer). */
static const char *client_read(void)
{
    static char buf[1 << 20];
    static size_t len;
    len = 0;
    spin(5);
    for (;;) {
        ssize_t n = read(E.peer, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

static bool peer_closed(void)
{
    spin(5);
    char c;
    return read(E.peer, &c, 1) == 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_out_of_order_answers_are_written_in_order(void **state)
{
    start();
    client_send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(F.n, 3);
    answer(F.reqs[2], 200, "three", true);
    answer(F.reqs[1], 200, "two", false);
    assert_string_equal(client_read(), ""); /* /1 still pending: nothing may go out */
    answer(F.reqs[0], 200, "one", true);
    const char *out = client_read();
    const char *a = strstr(out, "x-path: /1"), *b = strstr(out, "x-path: /2"),
               *c = strstr(out, "x-path: /3");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_non_null(strstr(out, "content-length: 3\r\n\r\none"));
    assert_non_null(strstr(out, "transfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"));
    assert_non_null(strstr(out, "content-length: 5\r\n\r\nthree"));
    assert_null(strstr(out, "connection: close"));
    assert_int_equal(F.released, 3);
    assert_false(peer_closed());
}

static void test_head_has_no_body_and_close_closes(void **state)
{
    F.auto_answer = true;
    start();
    client_send("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *out = client_read();
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "content-length: 2\r\n\r\n"));
    assert_null(strstr(out, "\r\n\r\nok"));
    client_send("GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    out = client_read();
    assert_non_null(strstr(out, "connection: close\r\n\r\nok"));
    assert_true(peer_closed());
    assert_true(F.conn_closed);
}

static void test_trailers_and_framing_from_handler_ignored(void **state)
{
    start();
    client_send("GET /t HTTP/1.1\r\nHost: a\r\n\r\n");
    pt_req_t *req = F.reqs[0];
    req->resp_status = 200;
    req->resp_state = PT_RESP_STARTED;
    pt_headers_add(&req->resp_headers, PT_STR("content-length"), PT_STR("999"));
    pt_headers_add(&req->resp_headers, PT_STR("transfer-encoding"), PT_STR("gzip"));
    pt_headers_add(&req->resp_headers, PT_STR("x-ok"), PT_STR("1"));
    pt_headers_add(&req->resp_trailers, PT_STR("grpc-status"), PT_STR("0"));
    req->ops->send_head(req);
    req->ops->send_body(req, "abc", 3, false);
    req->resp_state = PT_RESP_ENDED;
    req->ops->send_body(req, "de", 2, true);
    const char *out = client_read();
    assert_null(strstr(out, "999"));
    assert_null(strstr(out, "gzip"));
    assert_non_null(
        strstr(out, "x-ok: 1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n"
                    "grpc-status: 0\r\n\r\n"));
}

static void test_short_body_resets_connection(void **state)
{
    start();
    client_send("GET /s HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    pt_req_t *req = F.reqs[0];
    req->resp_status = 200;
    req->resp_state = PT_RESP_STARTED;
    req->resp_content_length = 10;
    req->ops->send_head(req);
    req->resp_state = PT_RESP_ENDED;
    req->ops->send_body(req, "abc", 3, true); /* 7 bytes short */
    const char *out = client_read();
    assert_non_null(strstr(out, "content-length: 10\r\n\r\nabc"));
    assert_true(peer_closed());     /* the client sees a truncation, never a next response */
    assert_int_equal(F.aborted, 1); /* /next was dispatched, then dropped with the connection */
}

static void test_body_backpressure(void **state)
{
    start();
    char head[128];
    size_t total = 1 << 20;
    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
             total);
    client_send(head);
    char *chunk = calloc(1, 65536);
    memset(chunk, 'x', 65536);
    size_t sent = 0;
    for (int i = 0; i < 64 && sent < total; i++) {
        ssize_t n = write(E.peer, chunk, 65536 < total - sent ? 65536 : total - sent);
        if (n > 0)
            sent += (size_t)n;
        spin(3);
    }
    pt_req_t *req = F.reqs[0];
    size_t queued = evbuffer_get_length(req->body);
    assert_true(queued >= PT_REQ_BODY_HIGH_WATER);
    assert_true(queued < PT_REQ_BODY_HIGH_WATER + 256 * 1024); /* reading stopped */
    /* the handler reads everything: reading resumes until the whole body is in */
    size_t got = 0;
    for (int i = 0; i < 400 && !req->body_done; i++) {
        size_t n = evbuffer_get_length(req->body);
        evbuffer_drain(req->body, n);
        got += n;
        if (n != 0)
            req->ops->body_consumed(req, n);
        if (sent < total) {
            ssize_t w = write(E.peer, chunk, 65536 < total - sent ? 65536 : total - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        spin(3);
    }
    got += evbuffer_get_length(req->body);
    assert_true(req->body_done);
    assert_int_equal(got, total);
    free(chunk);
}

static void test_pipelined_continue_waits_its_turn(void **state)
{
    start();
    client_send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                "POST /2 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_int_equal(F.n, 2);
    assert_true(F.reqs[1]->expect_continue);
    F.reqs[1]->ops->send_continue(F.reqs[1]);
    assert_string_equal(client_read(), "");
    answer(F.reqs[0], 200, "one", true);
    const char *out = client_read();
    const char *r1 = strstr(out, "\r\n\r\none"),
               *cont = strstr(out, "HTTP/1.1 100 Continue\r\n\r\n");
    assert_non_null(r1);
    assert_non_null(cont);
    assert_true(r1 < cont);
}

static void test_header_timeout_408(void **state)
{
    E.cfg.timeouts.header_ms = 30;
    start();
    client_send("GET /slow HTTP/1.1\r\nHost: a\r\n");
    usleep(60 * 1000);
    const char *out = client_read();
    assert_non_null(strstr(out, "HTTP/1.1 408 Request Timeout\r\n"));
    assert_non_null(strstr(out, "connection: close"));
    assert_true(peer_closed());
}

static void test_keepalive_idle_closes_silently(void **state)
{
    E.cfg.timeouts.keepalive_ms = 30;
    F.auto_answer = true;
    start();
    client_send("GET /k HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(client_read(), "200 OK"));
    usleep(60 * 1000);
    assert_string_equal(client_read(), "");
    assert_true(peer_closed());
}

/* The idle timer is re-armed lazily: a request in the middle of an idle period
 * moves the deadline, the timer armed for the old one fires early and waits on. */
static void test_keepalive_deadline_moves_with_each_request(void **state)
{
    E.cfg.timeouts.keepalive_ms = 300;
    F.auto_answer = true;
    start();
    client_send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(client_read(), "200 OK"));
    usleep(200 * 1000);
    client_send("GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(client_read(), "200 OK"));
    usleep(200 * 1000); /* past the first deadline, before the second */
    spin(5);
    assert_false(F.conn_closed);
    assert_false(peer_closed());
    usleep(250 * 1000); /* past the second */
    assert_true(peer_closed());
    assert_true(F.conn_closed);
}

static void test_prior_knowledge_handover(void **state)
{
    start();
    client_send("PRI * HTTP/2.0\r\n\r\n");
    assert_int_equal(F.h2_start_calls, 0); /* could still be the preface: wait */
    assert_int_equal(write(E.peer, "SM\r\n\r\n\x00\x00\x00\x04", 10), 10);
    spin(5);
    assert_int_equal(F.h2_start_calls, 1);
    assert_int_equal(F.h2_len, 28);
    assert_memory_equal(F.h2_bytes, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", 28);
    assert_true(F.conn_closed);
}

static void test_h2c_declined_serves_http11(void **state)
{
    F.auto_answer = true;
    start();
    client_send(
        "GET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
    assert_non_null(strstr(client_read(), "HTTP/1.1 200 OK"));
}

static void test_drain(void **state)
{
    start();
    client_send("GET /d HTTP/1.1\r\nHost: a\r\n\r\n");
    F.conn->codec_ops->drain(F.conn);
    answer(F.reqs[0], 200, "bye", true);
    const char *out = client_read();
    assert_non_null(strstr(out, "connection: close\r\n\r\nbye"));
    assert_true(peer_closed());
    /* an idle connection closes at once */
    close(E.peer);
    F.conn_closed = false;
    start();
    F.conn->codec_ops->drain(F.conn);
    assert_true(F.conn_closed);
}

static void test_client_gone_aborts(void **state)
{
    start();
    client_send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: "
                "10\r\n\r\nab");
    assert_int_equal(F.n, 2);
    close(E.peer);
    E.peer = -1;
    spin(5);
    assert_int_equal(F.aborted, 1); /* the incomplete POST; /1 may still be answered */
    answer(F.reqs[0], 200, "late", true);
    spin(5);
    assert_true(F.conn_closed);
}

static void test_bad_request_answered_after_earlier_ones(void **state)
{
    start();
    client_send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost : a\r\n\r\n");
    assert_int_equal(F.n, 2);
    assert_string_equal(client_read(), "");
    answer(F.reqs[0], 200, "one", true);
    const char *out = client_read();
    const char *r1 = strstr(out, "\r\n\r\none"), *r2 = strstr(out, "HTTP/1.1 400 Bad Request");
    assert_non_null(r1);
    assert_non_null(r2);
    assert_true(r1 < r2);
    const char *close_hdr = strstr(out, "connection: close");
    assert_non_null(close_hdr);
    assert_true(close_hdr > r2); /* only the last response announces the close */
    assert_true(peer_closed());
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the server does: a peer that went away is an EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_out_of_order_answers_are_written_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_head_has_no_body_and_close_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailers_and_framing_from_handler_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_short_body_resets_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_continue_waits_its_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timeout_408, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_deadline_moves_with_each_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_idle_closes_silently, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prior_knowledge_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2c_declined_serves_http11, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_request_answered_after_earlier_ones, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
