/*
 * test_grpc.c -- the grpc handler's helpers and config, and the gRPC call
 * layer (upstream/grpc_call.c over the upstream call primitive) on a
 * detached worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <event2/event.h>
#include <cmocka.h>

#include "core/config.h"
#include "handlers/grpc.h"
#include "server.h"
#include "upstream/grpc.h"
#include "portico/status.h"

#ifndef PT_TEST_BOOKSTORE_PB
#define PT_TEST_BOOKSTORE_PB "bookstore.pb"
#endif

/* ---- helpers -------------------------------------------------------------------- */

static void test_timeout_parse(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("100m"), &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("5S"), &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("2M"), &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("1H"), &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("1500u"), &ms), 0);
    assert_int_equal(ms, 2); /* rounded up */
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("1n"), &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("123456789S"), &ms), PT_ERR_INVALID);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("10"), &ms), PT_ERR_INVALID);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("S"), &ms), PT_ERR_INVALID);
    assert_int_equal(pt_grpc_timeout_parse(PT_STR("-1S"), &ms), PT_ERR_INVALID);
}

/* the formatter's values parse back, and never have more than 8 digits */
static void test_timeout_format(void **state)
{
    (void)state;
    pt_arena_t *a = pt_arena_new(0, 0);
    static const struct {
        uint64_t ms;
        const char *want;
        uint64_t back;
    } cases[] = {
        {0, "0m", 1}, /* read back as 1 ms: a zero deadline is already past */
        {250, "250m", 250},
        {99999999, "99999999m", 99999999},
        {100000000, "100000S", 100000000},
        {99999999999, "99999999S", 99999999000},
        {UINT64_MAX, "99999999S", 99999999000}, /* printf gave 20 digits here */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pt_str_t v = pt_grpc_timeout_format(a, cases[i].ms);
        assert_true(pt_str_eq(v, pt_str_c(cases[i].want)));
        uint64_t ms = 1;
        assert_int_equal(pt_grpc_timeout_parse(v, &ms), 0);
        assert_int_equal(ms, cases[i].back);
    }
    pt_arena_destroy(a);
}

static void test_code_from_http(void **state)
{
    (void)state;
    /* gRPC's http-grpc-status-mapping, for answers without grpc-status */
    assert_int_equal(pt_grpc_code_from_http(400), PT_GRPC_INTERNAL);
    assert_int_equal(pt_grpc_code_from_http(401), PT_GRPC_UNAUTHENTICATED);
    assert_int_equal(pt_grpc_code_from_http(403), PT_GRPC_PERMISSION_DENIED);
    assert_int_equal(pt_grpc_code_from_http(404), PT_GRPC_UNIMPLEMENTED);
    assert_int_equal(pt_grpc_code_from_http(429), PT_GRPC_UNAVAILABLE);
    assert_int_equal(pt_grpc_code_from_http(502), PT_GRPC_UNAVAILABLE);
    assert_int_equal(pt_grpc_code_from_http(503), PT_GRPC_UNAVAILABLE);
    assert_int_equal(pt_grpc_code_from_http(504), PT_GRPC_UNAVAILABLE);
    assert_int_equal(pt_grpc_code_from_http(500), PT_GRPC_UNKNOWN);
    assert_int_equal(pt_grpc_code_from_http(302), PT_GRPC_UNKNOWN);
}

static void test_code_http(void **state)
{
    (void)state;
    static const int want[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                 400, 409, 400, 501, 500, 503, 500, 401};
    for (int c = 0; c <= 16; c++)
        assert_int_equal(pt_grpc_code_http(c), want[c]);
    assert_int_equal(pt_grpc_code_http(99), 500);
    assert_string_equal(pt_grpc_code_name(5), "NOT_FOUND");
    assert_string_equal(pt_grpc_code_name(-1), "UNKNOWN");
}

/* issue 14: a status outside 0..16 or not a number is UNKNOWN, the same way everywhere. */
static void test_status_norm(void **state)
{
    (void)state;
    char buf[8];
    for (int c = 0; c <= 16; c++) {
        snprintf(buf, sizeof(buf), "%d", c);
        assert_int_equal(pt_grpc_status_parse(pt_str_c(buf)), c);
    }
    assert_int_equal(pt_grpc_status_parse(PT_STR("0")), 0);
    assert_int_equal(pt_grpc_status_parse(PT_STR("5")), 5);
    assert_int_equal(pt_grpc_status_parse(PT_STR("16")), 16);
    assert_int_equal(pt_grpc_status_parse(PT_STR("007")), 7);
    static const char *const odd[] = {"-1", "17",  "99", "2147483648", "99999999999999999999",
                                      "abc", "",   " 7", "7 ",         "+5",
                                      "5a",  "0x5"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        assert_int_equal(pt_grpc_status_parse(pt_str_c(odd[i])), PT_GRPC_UNKNOWN);
    assert_int_equal(pt_grpc_status_parse((pt_str_t){NULL, 0}), PT_GRPC_UNKNOWN);
}

/* issue 14: what gRPC's ASCII metadata forbids is told apart from what HTTP allows. */
static void test_md_valid(void **state)
{
    (void)state;
    assert_true(pt_grpc_md_valid(PT_STR("x-echo-color"), PT_STR("blue sky ~!")));
    assert_true(pt_grpc_md_valid(PT_STR("x.a_b-9"), PT_STR("")));
    assert_false(pt_grpc_md_valid(PT_STR("x-echo-color"), PT_STR("a\tb")));
    assert_false(pt_grpc_md_valid(PT_STR("x-echo-color"), PT_STR("caf\xc3\xa9")));
    assert_false(pt_grpc_md_valid(PT_STR("x-echo-color"), PT_STR("a\x7f")));
    assert_false(pt_grpc_md_valid(PT_STR("x-echo-color"), PT_STR("a\x01")));
    /* binary keys: the HTTP value is base64 text, checked by the codecs */
    assert_true(pt_grpc_md_valid(PT_STR("x-blob-bin"), PT_STR("AAEC")));
    assert_true(pt_grpc_md_valid(PT_STR("x-blob-bin"), PT_STR("a\tb")));
    /* keys: lowercase letters, digits, '-', '_', '.' only */
    assert_false(pt_grpc_md_valid(PT_STR("x-a!b"), PT_STR("v")));
    assert_false(pt_grpc_md_valid(PT_STR("X-Upper"), PT_STR("v")));
    assert_false(pt_grpc_md_valid(PT_STR(""), PT_STR("v")));
}

/* ---- config ------------------------------------------------------------------------- */

static char *errbuf;
static size_t errlen;

static pt_config_t *load(const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    free(errbuf);
    errbuf = NULL;
    FILE *errs = open_memstream(&errbuf, &errlen);
    pt_config_t *c = pt_config_load_string("g.yaml", text, strlen(text), errs);
    fclose(errs);
    return c;
}

#define HEAD                                                                                       \
    "listeners: [ { address: 127.0.0.1:1 } ]\n"                                                    \
    "descriptors: [ %s ]\n"                                                                        \
    "clusters:\n"                                                                                  \
    "  - { name: books, protocol: grpc, endpoints: [ \"127.0.0.1:1\" ] }\n"                        \
    "  - { name: web, endpoints: [ \"127.0.0.1:2\" ] }\n"                                          \
    "routes:\n"

static void test_config_ok(void **state)
{
    (void)state;
    pt_config_t *c = load(HEAD "  - grpc:\n"
                               "      cluster: books\n"
                               "      services: [ bookstore.v1.Bookstore ]\n"
                               "      metadata: { forward: [ X-Tenant, \"x-echo-*\" ], prefix: "
                               "X-G- }\n"
                               "      header_bindings: { X-Msg: message }\n"
                               "      stream_format: sse\n"
                               "      emit_defaults: true\n",
                          PT_TEST_BOOKSTORE_PB);
    assert_non_null(c);
    assert_non_null(c->descpool);
    const pt_grpc_conf_t *g = c->routes[0].handler_conf;
    assert_non_null(g->table);
    assert_true(pt_httprule_table_binding_cnt(g->table) >= 14);
    assert_int_equal(g->fmt, PT_GRPC_FMT_SSE);
    assert_true(g->jopts.emit_defaults);
    assert_int_equal(g->md_forward_cnt, 2);
    assert_string_equal(g->md_forward[0], "x-tenant");
    assert_string_equal(g->md_prefix, "x-g-");
    assert_string_equal(g->header_bindings.v[0].key, "x-msg");
    /* the WebSocket bridge's limits: defaults when `websocket:` is absent */
    assert_int_equal(g->ws.max_message, 1u << 20);
    assert_int_equal(g->ws.ping_interval_ms, 0);
    assert_int_equal(g->ws.tunnel_idle_ms, 0);
    assert_int_equal(g->ws.close_timeout_ms, 5000);
    assert_int_equal(g->ws.timeout_ms, 86400000);
    pt_config_unref(c);
}

static void test_config_websocket(void **state)
{
    (void)state;
    pt_config_t *c = load(HEAD "  - grpc: { cluster: books, websocket: { max_message: 64k, "
                               "ping_interval: 30s, tunnel_idle: 5m, close_timeout: 2s, "
                               "timeout: 1h } }\n",
                          PT_TEST_BOOKSTORE_PB);
    assert_non_null(c);
    const pt_grpc_conf_t *g = c->routes[0].handler_conf;
    assert_int_equal(g->ws.max_message, 65536);
    assert_int_equal(g->ws.ping_interval_ms, 30000);
    assert_int_equal(g->ws.tunnel_idle_ms, 300000);
    assert_int_equal(g->ws.close_timeout_ms, 2000);
    assert_int_equal(g->ws.timeout_ms, 3600000);
    pt_config_unref(c);
    /* unknown keys, bad values and a non-map are errors at their place */
    c = load(HEAD "  - grpc: { cluster: books, websocket: { pingz: 3s, timeout: abc } }\n"
                  "  - grpc: { cluster: books, websocket: 5 }\n",
             PT_TEST_BOOKSTORE_PB);
    assert_null(c);
    assert_non_null(strstr(errbuf, "unknown key 'pingz'"));
    assert_non_null(strstr(errbuf, "expected a duration"));
    assert_non_null(strstr(errbuf, "websocket: expected a map"));
}

static void test_config_errors(void **state)
{
    (void)state;
    /* a grpc route on an http cluster; a bad stream format; a reserved metadata key */
    pt_config_t *c = load(HEAD "  - grpc: { cluster: web }\n"
                               "  - grpc: { cluster: books, stream_format: xml }\n"
                               "  - grpc: { cluster: books, metadata: { forward: [ te ] } }\n",
                          PT_TEST_BOOKSTORE_PB);
    assert_null(c);
    assert_non_null(strstr(errbuf, "stream_format: expected json, ndjson or sse"));
    assert_non_null(strstr(errbuf, "'te' is reserved"));
    /* the cross check only runs on an otherwise clean file */
    c = load(HEAD "  - grpc: { cluster: web }\n", PT_TEST_BOOKSTORE_PB);
    assert_null(c);
    assert_non_null(strstr(errbuf, "g.yaml:7:22: grpc: cluster 'web' is not a grpc cluster"));
    c = load(HEAD "  - grpc: { cluster: books, services: [ no.Such ] }\n", PT_TEST_BOOKSTORE_PB);
    assert_null(c);
    assert_non_null(strstr(errbuf, "no.Such"));
    /* descriptors missing or unreadable */
    c = load("listeners: [ { address: 127.0.0.1:1 } ]\n"
             "clusters: [ { name: books, protocol: grpc, endpoints: [ \"127.0.0.1:1\" ] } ]\n"
             "routes: [ { grpc: { cluster: books } } ]\n");
    assert_null(c);
    assert_non_null(strstr(errbuf, "no descriptors loaded"));
    c = load(HEAD "  - grpc: { cluster: books }\n", "/nonexistent/x.pb");
    assert_null(c);
    assert_non_null(strstr(errbuf, "g.yaml:2:16: descriptor set /nonexistent/x.pb"));
}

/* ---- upstream: a call to a closed port, completed on the worker loop ---------------------- */

typedef struct res {
    int code;
    int local;
    int done;
    int messages;
} res_t;

static void on_message(void *ud, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    ((res_t *)ud)->messages++;
}

static void on_done(void *ud, const pt_grpc_status_t *st)
{
    res_t *r = ud;
    r->code = st->code;
    r->local = st->local;
    r->done++;
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void test_upstream_unavailable(void **state)
{
    (void)state;
    pt_config_t *c = NULL;
    char cl[128];
    snprintf(cl, sizeof(cl), "127.0.0.1:%d", closed_port());
    c = load("listeners: [ { address: 127.0.0.1:1 } ]\n"
             "clusters: [ { name: b, protocol: grpc, endpoints: [ \"%s\" ] } ]\n"
             "routes: [ { respond: { status: 200 } } ]\n",
             cl);
    if (c == NULL)
        c = load("listeners: [ { address: 127.0.0.1:1 } ]\n"
                 "clusters: [ { name: b, protocol: grpc, endpoints: [ \"%s\" ] } ]\n"
                 "routes: [ { respond: {} } ]\n",
                 cl);
    assert_non_null(c);
    pt_arena_t *arena = pt_arena_new(0, 0);
    pt_worker_t *w = pt__worker_new_detached(c);
    static const uint8_t msg[] = {0x0a, 0x01, 'x'};
    pt_grpc_call_cbs_t cbs = {.on_message = on_message, .on_done = on_done};
    for (int unary = 0; unary <= 1; unary++) {
        res_t r = {0};
        pt_grpc_call_req_t req = {.cluster = &c->clusters[0],
                                  .arena = arena,
                                  .method = PT_STR("/bookstore.v1.Bookstore/Echo"),
                                  .timeout_ms = 5000,
                                  .msg = msg,
                                  .msg_len = sizeof(msg),
                                  .close = true,
                                  .unary = unary != 0};
        pt_grpc_call_t *call = NULL;
        assert_int_equal(pt_grpc_call_start(w, &req, &cbs, &r, &call), 0);
        assert_int_equal(r.done, 0); /* never synchronously */
        if (!unary)
            assert_int_equal(pt_grpc_call_recv(call), 0);
        else
            assert_int_equal(pt_grpc_call_recv(call), PT_ERR_INVALID);
        for (int i = 0; i < 500 && r.done == 0; i++)
            event_base_loop(w->base, EVLOOP_ONCE);
        assert_int_equal(r.done, 1);
        assert_int_equal(r.code, PT_GRPC_UNAVAILABLE);
        assert_int_equal(r.local, PT_ERR_UNAVAILABLE); /* Portico's verdict, not the backend's */
    }
    /* a cancelled call never calls back, even with its events pending */
    res_t r1 = {0};
    pt_grpc_call_req_t req = {
        .cluster = &c->clusters[0], .arena = arena, .method = PT_STR("/a.B/C"), .timeout_ms = 5000};
    pt_grpc_call_t *call = NULL;
    assert_int_equal(pt_grpc_call_start(w, &req, &cbs, &r1, &call), 0);
    assert_int_equal(pt_grpc_call_recv(call), 0);
    pt_grpc_call_cancel(call);
    for (int i = 0; i < 5; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    assert_int_equal(r1.done, 0);
    assert_int_equal(r1.messages, 0);
    pt__worker_free_detached(w);
    pt_arena_destroy(arena);
    pt_config_unref(c);
}

/* ---- upstream: what a unary call puts on the wire --------------------------------------- */

/* Reads from `fd` (non-blocking) into buf; returns the bytes now held. */
static size_t read_more(int fd, uint8_t *buf, size_t have, size_t cap)
{
    ssize_t n = recv(fd, buf + have, cap - have, MSG_DONTWAIT);
    return n > 0 ? have + (size_t)n : have;
}

/* The request's DATA frames on stream 1 in the client's bytes (after the
 * 24-byte preface): how many, the payload of the last, whether it ended the
 * stream. Returns true once a frame with END_STREAM was seen. */
static bool scan_data(const uint8_t *b, size_t len, int *frames, size_t *last_len, bool *end)
{
    *frames = 0;
    *end = false;
    for (size_t off = 24; len >= off + 9;) {
        size_t flen = ((size_t)b[off] << 16) | ((size_t)b[off + 1] << 8) | b[off + 2];
        uint32_t sid = ((uint32_t)(b[off + 5] & 0x7f) << 24) | ((uint32_t)b[off + 6] << 16) |
                       ((uint32_t)b[off + 7] << 8) | b[off + 8];
        if (len < off + 9 + flen)
            break;
        if (b[off + 3] == 0 /* DATA */ && sid == 1) {
            (*frames)++;
            *last_len = flen;
            if (b[off + 4] & 0x1)
                *end = true;
        }
        off += 9 + flen;
    }
    return *end;
}

/* A unary call's message and its END_STREAM go in one DATA frame: an empty
 * DATA frame after the message cost both sides a frame per call (issue 7). */
static void test_unary_one_data_frame(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(ls, (struct sockaddr *)&a, &al);
    assert_int_equal(listen(ls, 4), 0);
    pt_config_t *c = load("listeners: [ { address: 127.0.0.1:1 } ]\n"
                          "clusters: [ { name: b, protocol: grpc, endpoints: [ \"127.0.0.1:%d\" ] } ]\n"
                          "routes: [ { respond: { status: 200 } } ]\n",
                          ntohs(a.sin_port));
    assert_non_null(c);
    pt_arena_t *arena = pt_arena_new(0, 0);
    pt_worker_t *w = pt__worker_new_detached(c);
    static const uint8_t msg[] = {0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'};
    pt_grpc_call_cbs_t cbs = {.on_message = on_message, .on_done = on_done};
    res_t r = {0};
    pt_grpc_call_req_t req = {.cluster = &c->clusters[0],
                              .arena = arena,
                              .method = PT_STR("/bookstore.v1.Bookstore/Echo"),
                              .timeout_ms = 5000,
                              .msg = msg,
                              .msg_len = sizeof(msg),
                              .close = true,
                              .unary = true};
    pt_grpc_call_t *call = NULL;
    assert_int_equal(pt_grpc_call_start(w, &req, &cbs, &r, &call), 0);
    int fd = -1;
    uint8_t buf[4096];
    size_t have = 0;
    int frames = 0;
    size_t last = 0;
    bool end = false;
    for (int i = 0; i < 2000 && !end; i++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        if (fd < 0)
            fd = accept(ls, NULL, NULL); /* blocking listen socket: the connect is under way */
        have = read_more(fd, buf, have, sizeof(buf));
        scan_data(buf, have, &frames, &last, &end);
        if (!end)
            usleep(1000);
    }
    assert_true(end);
    assert_int_equal(frames, 1);
    assert_int_equal(last, 5 + sizeof(msg));
    close(fd); /* the call fails now: the connection is gone */
    for (int i = 0; i < 500 && r.done == 0; i++)
        event_base_loop(w->base, EVLOOP_ONCE);
    assert_int_equal(r.done, 1);
    close(ls);
    pt__worker_free_detached(w);
    pt_arena_destroy(arena);
    pt_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_parse), cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_code_http),     cmocka_unit_test(test_code_from_http),
        cmocka_unit_test(test_config_ok),     cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_websocket),
        cmocka_unit_test(test_upstream_unavailable),
        cmocka_unit_test(test_unary_one_data_frame),
        cmocka_unit_test(test_status_norm),   cmocka_unit_test(test_md_valid),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(errbuf);
    return rc;
}
