/*
 * test_tunnel.c -- the request core's tunnel mode (tunnel.c) with a fake
 * codec: when pt__req_tunnel_open() refuses, what it sends (101 / 200), that
 * a tunnel's client bytes have no max_body, the idle timer (reset + abort
 * hooks + finalisation), client bytes lent to the handler in place, and the
 * RFC 6455 key helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/request.h"
#include "core/config.h"
#include "core/handler.h"
#include "server.h"

typedef struct fake {
    int head_status;     /* status at send_head, 0 if not sent */
    int tunnel_calls;
    int tunnel_rc;       /* what the tunnel op returns */
    bool reset;
    bool ended;
    size_t body_len;
} fake_t;

static void f_head(pt_req_t *req) { ((fake_t *)req->stream)->head_status = req->resp_status; }
static void f_body(pt_req_t *req, const void *d, size_t n, bool end)
{
    (void)d;
    fake_t *f = req->stream;
    f->body_len += n;
    f->ended |= end;
}
static size_t f_pending(pt_req_t *req) { (void)req; return 0; }
static void f_consumed(pt_req_t *req, size_t n) { (void)req; (void)n; }
static void f_reset(pt_req_t *req) { ((fake_t *)req->stream)->reset = true; }
static int f_tunnel(pt_req_t *req)
{
    fake_t *f = req->stream;
    f->tunnel_calls++;
    return f->tunnel_rc;
}

static const pt_stream_ops_t ops = {f_head, f_body, f_pending, f_consumed, NULL, f_reset, f_tunnel, NULL};
static const pt_stream_ops_t ops_no_tunnel = {f_head, f_body, f_pending, f_consumed, NULL, f_reset,
                                              NULL, NULL};

typedef struct env {
    pt_config_t *cfg;
    pt_worker_t *w;
} env_t;

static int setup(void **state)
{
    static const char yaml[] = "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                               "limits: { max_body: 4k }\n"
                               "routes: [ { match: { prefix: / }, respond: { status: 200 } } ]\n";
    env_t *e = calloc(1, sizeof(*e));
    e->cfg = pt_config_load_string("tunnel.yaml", yaml, sizeof(yaml) - 1, stderr);
    assert_non_null(e->cfg);
    e->w = pt__worker_new_detached(e->cfg);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_t *e = *state;
    pt__worker_free_detached(e->w);
    pt_config_unref(e->cfg);
    free(e);
    return 0;
}

static pt_req_t *new_req(env_t *e, fake_t *f, const pt_stream_ops_t *o, int version,
                         const char *upgrade)
{
    pt_req_t *req = pt__req_new(e->w, o, f);
    req->method = PT_STR("GET");
    req->path = PT_STR("/");
    req->version = version;
    req->upgrade = upgrade != NULL ? pt_str_c(upgrade) : PT_STR_NULL;
    req->body_done = true;
    return req;
}

static void test_open_refusals(void **state)
{
    env_t *e = *state;
    fake_t f = {0};
    pt_req_t *req = new_req(e, &f, &ops, 11, NULL); /* the client asked for nothing */
    assert_int_equal(pt__req_tunnel_open(req, 0), PT_ERR_INVALID);
    assert_int_equal(f.tunnel_calls, 0);
    assert_int_equal(f.head_status, 0);
    req->upgrade = PT_STR("websocket");
    f.tunnel_rc = PT_ERR_INVALID; /* the codec cannot switch this stream */
    assert_int_equal(pt__req_tunnel_open(req, 0), PT_ERR_INVALID);
    assert_int_equal(f.tunnel_calls, 1);
    assert_int_equal(f.head_status, 0);
    assert_false(req->is_tunnel);
    req->resp_status = 502;
    req->resp_state = PT_RESP_STARTED; /* a head already went out */
    f.tunnel_rc = 0;
    assert_int_equal(pt__req_tunnel_open(req, 0), PT_ERR_INVALID);
    assert_int_equal(f.tunnel_calls, 1);
    req->resp_state = PT_RESP_ENDED;
    pt__req_codec_done(req);

    fake_t g = {0};
    req = new_req(e, &g, &ops_no_tunnel, 11, "websocket"); /* a codec without tunnels */
    assert_int_equal(pt__req_tunnel_open(req, 0), PT_ERR_INVALID);
    assert_int_equal(g.head_status, 0);
    pt__req_abort(req);
}

static void test_open_heads_and_no_body_limit(void **state)
{
    env_t *e = *state;
    int versions[2] = {11, 20}, statuses[2] = {101, 200};
    for (int i = 0; i < 2; i++) {
        fake_t f = {0};
        pt_req_t *req = new_req(e, &f, &ops, versions[i], "websocket");
        assert_int_equal(pt__req_tunnel_open(req, 60000), 0);
        assert_int_equal(f.tunnel_calls, 1);
        assert_int_equal(f.head_status, statuses[i]);
        assert_true(req->is_tunnel);
        assert_int_equal(pt__req_tunnel_open(req, 0), PT_ERR_INVALID); /* only once */
        /* 16 KiB through a 4 KiB max_body: a tunnel is a stream, not a body */
        req->body_done = false;
        static char chunk[1024];
        for (int k = 0; k < 16; k++)
            pt__req_body(req, chunk, sizeof(chunk), false);
        assert_int_equal(req->fail_status, 0);
        assert_int_equal(req->body_received, 16384);
        assert_int_equal(evbuffer_get_length(req->body), 16384);
        pt__resp_body(req, "xyz", 3, true);
        assert_true(f.ended);
        assert_int_equal(f.body_len, 3);
        pt__req_codec_done(req);
    }
}

/* A handler that reads at most `lend_read` bytes of each offer from on_body. */
static size_t lend_read;
static char lend_got[64];
static size_t lend_got_len;
static int lend_calls;

static void lend_on_body(pt_req_t *req)
{
    lend_calls++;
    bool eof = false;
    size_t n = pt__req_body_read(req, lend_got + lend_got_len, lend_read, &eof);
    lend_got_len += n;
    assert_false(eof);
}

static size_t consumed_total;
static void count_consumed(pt_req_t *req, size_t n)
{
    (void)req;
    consumed_total += n;
}

/* A tunnel's client bytes are lent to the handler during on_body: what it
 * reads comes from the codec's memory, what it leaves is copied, in order. */
static void test_tunnel_bytes_lent_to_the_handler(void **state)
{
    env_t *e = *state;
    static const pt_stream_ops_t lend_ops = {f_head, f_body, f_pending, count_consumed,
                                             NULL, f_reset, f_tunnel, NULL};
    static const pt_handler_def_t def = {.name = "lend", .on_body = lend_on_body};
    pt_route_t rt;
    memset(&rt, 0, sizeof(rt));
    rt.handler = &def;
    fake_t f = {0};
    pt_req_t *req = new_req(e, &f, &lend_ops, 11, "websocket");
    assert_int_equal(pt__req_tunnel_open(req, 60000), 0);
    req->body_done = false;
    const pt_route_t *saved = req->route.route;
    req->route.route = &rt;
    req->handler_started = true;
    req->holds |= PT_REQ_HOLD_HANDLER;
    lend_read = 4;
    lend_got_len = 0;
    consumed_total = 0;
    lend_calls = 0;
    pt__req_body(req, "abcdefghij", 10, false);
    assert_int_equal(lend_calls, 1);
    assert_int_equal(lend_got_len, 4);
    assert_memory_equal(lend_got, "abcd", 4);
    assert_int_equal(consumed_total, 4);                  /* what it read, reported once */
    assert_int_equal(evbuffer_get_length(req->body), 6); /* the rest was copied */
    assert_int_equal(req->body_offer_len, 0);
    lend_read = 0;
    pt__req_body(req, "KLM", 3, false); /* behind buffered bytes: appended, not lent */
    assert_int_equal(evbuffer_get_length(req->body), 9);
    char buf[16];
    bool eof = true;
    assert_int_equal(pt__req_body_read(req, buf, sizeof(buf), &eof), 9);
    assert_memory_equal(buf, "efghijKLM", 9);
    assert_false(eof);
    lend_read = 64; /* empty again: a new offer is read whole, nothing is buffered */
    pt__req_body(req, "nopq", 4, false);
    assert_int_equal(evbuffer_get_length(req->body), 0);
    assert_int_equal(lend_got_len, 8);
    assert_memory_equal(lend_got, "abcdnopq", 8);
    assert_int_equal(req->body_received, 17);
    req->holds &= ~PT_REQ_HOLD_HANDLER;
    req->handler_started = false;
    req->route.route = saved;
    pt__resp_body(req, NULL, 0, true);
    pt__req_codec_done(req);
}

static void on_abort(void *data)
{
    (*(int *)data)++;
}

static void test_idle_timeout(void **state)
{
    env_t *e = *state;
    fake_t f = {0};
    int aborts = 0;
    pt_req_t *req = new_req(e, &f, &ops, 11, "raw");
    req->holds |= PT_REQ_HOLD_HANDLER; /* a handler that never lets go by itself */
    assert_int_equal(pt_req_on_abort(req, on_abort, &aborts), 0);
    assert_int_equal(pt__req_tunnel_open(req, 30), 0);
    uint64_t deadline = pt_now_ms() + 10000; /* generous: the machine may be busy */
    while (!f.reset && pt_now_ms() < deadline)
        event_base_loop(e->w->base, EVLOOP_ONCE);
    assert_true(f.reset);            /* the client side was cut ... */
    assert_int_equal(aborts, 1);     /* ... and the handler told to stop */
    assert_int_equal(req->fail_status, PT_ERR_TIMEOUT);
    assert_string_equal(req->fail_reason, "tunnel idle timeout");
    assert_int_equal(req->resp_status, 101); /* the log keeps the session's status */
    pt__req_handler_done(req);
    pt__req_codec_done(req); /* finalised: the arena cleanup frees the timer (ASan checks) */
}

static void test_ws_keys(void **state)
{
    (void)state;
    char acc[29];
    pt__tunnel_ws_accept(PT_STR("dGhlIHNhbXBsZSBub25jZQ=="), acc); /* RFC 6455 §1.3 */
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char k1[25], k2[25];
    pt__tunnel_ws_key(k1);
    pt__tunnel_ws_key(k2);
    assert_int_equal(strlen(k1), 24);
    assert_string_equal(k1 + 22, "=="); /* 16 bytes */
    assert_string_not_equal(k1, k2);
}

/* `upgrade:` takes protocol tokens; errors point at the offending item. */
static void test_config_keys(void **state)
{
    (void)state;
    static const char good[] =
        "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
        "timeouts: { tunnel_idle: 90s }\n"
        "clusters: [ { name: c, endpoints: [ \"127.0.0.1:9\" ] } ]\n"
        "routes:\n"
        "  - proxy: { cluster: c, websocket: true, upgrade: [ raw-test, foo/2 ], tunnel_idle: 1m }\n";
    pt_config_t *cfg = pt_config_load_string("t.yaml", good, sizeof(good) - 1, stderr);
    assert_non_null(cfg);
    assert_int_equal(cfg->timeouts.tunnel_idle_ms, 90000);
    pt_config_unref(cfg);

    static const char bad[] =
        "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
        "clusters: [ { name: c, endpoints: [ \"127.0.0.1:9\" ] } ]\n"
        "routes:\n"
        "  - proxy: { cluster: c, upgrade: [ ok, \"a b\", h2c ] }\n";
    char *msg = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&msg, &len);
    assert_null(pt_config_load_string("t.yaml", bad, sizeof(bad) - 1, errs));
    fclose(errs);
    assert_non_null(strstr(msg, "t.yaml:4:41: proxy: upgrade: 'a b' is not a protocol token"));
    free(msg);

    static const char h2c[] =
        "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
        "clusters: [ { name: c, endpoints: [ \"127.0.0.1:9\" ] } ]\n"
        "routes:\n"
        "  - proxy: { cluster: c, upgrade: [ h2c ] }\n";
    errs = open_memstream(&msg, &len);
    assert_null(pt_config_load_string("t.yaml", h2c, sizeof(h2c) - 1, errs));
    fclose(errs);
    assert_non_null(strstr(msg, "t.yaml:4:37: proxy: upgrade: 'h2c'"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refusals),
        cmocka_unit_test(test_open_heads_and_no_body_limit),
        cmocka_unit_test(test_tunnel_bytes_lent_to_the_handler),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_ws_keys),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
