/*
 * test_h2.c -- the HTTP/2 codec (gateway/http/h2.c) driven in memory: an nghttp2
 * client session (or hand-built frames) on one end of a bufferevent pair, the
 * codec on the other, a fake request layer above it (test/support/h2_fake.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http/h2.h"
#include "h2_fake.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- an nghttp2 client ---------------------------------------------------- */

typedef struct cstream {
    int32_t id;
    int status;
    char headers[2048];
    char trailers[512];
    char never[256];    /* names of the fields sent "never indexed" (RFC 7541 §6.2.3), ' '-ended */
    unsigned char *body;
    size_t body_len;
    bool closed;
    uint32_t close_code;
} cstream_t;

typedef struct client {
    nghttp2_session *ng;
    fake_conn_t *fc;
    cstream_t streams[512];
    size_t nstreams;
    bool goaway;
    int32_t goaway_last;
    uint32_t goaway_code;
    unsigned goaways;
    int32_t first_goaway_last;
    bool eof;
    unsigned char *log; /* every byte the server sent (frames; the 101 head for upgrades) */
    size_t log_len;
} client_t;

static cstream_t *cs_of(client_t *cl, int32_t id)
{
    for (size_t i = 0; i < cl->nstreams; i++)
        if (cl->streams[i].id == id)
            return &cl->streams[i];
    return NULL;
}

static int c_on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    (void)ng;
    cstream_t *s = cs_of(ud, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (flags & NGHTTP2_NV_FLAG_NO_INDEX) {
        size_t o = strlen(s->never);
        snprintf(s->never + o, sizeof(s->never) - o, "%.*s ", (int)namelen, name);
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->status = atoi((const char *)value);
        return 0;
    }
    char *dst = frame->headers.cat == NGHTTP2_HCAT_HEADERS ? s->trailers : s->headers;
    size_t cap = frame->headers.cat == NGHTTP2_HCAT_HEADERS ? sizeof(s->trailers) : sizeof(s->headers);
    size_t off = strlen(dst);
    snprintf(dst + off, cap - off, "%.*s: %.*s\n", (int)namelen, name, (int)valuelen, value);
    return 0;
}

static int c_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                     size_t len, void *ud)
{
    (void)ng;
    (void)flags;
    cstream_t *s = cs_of(ud, id);
    if (s == NULL)
        return 0;
    s->body = realloc(s->body, s->body_len + len + 1);
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    s->body[s->body_len] = 0;
    return 0;
}

static int c_on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ng;
    cstream_t *s = cs_of(ud, id);
    if (s != NULL) {
        s->closed = true;
        s->close_code = code;
    }
    return 0;
}

static int c_on_frame(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    (void)ng;
    client_t *cl = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        if (cl->goaways++ == 0)
            cl->first_goaway_last = frame->goaway.last_stream_id;
        cl->goaway = true;
        cl->goaway_last = frame->goaway.last_stream_id;
        cl->goaway_code = frame->goaway.error_code;
    }
    return 0;
}

static void client_init(client_t *cl, fake_conn_t *fc)
{
    memset(cl, 0, sizeof(*cl));
    cl->fc = fc;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 1 << 20);
    assert_int_equal(nghttp2_session_client_new2(&cl->ng, cb, cl, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
}

static void client_free(client_t *cl)
{
    for (size_t i = 0; i < cl->nstreams; i++)
        free(cl->streams[i].body);
    free(cl->log);
    nghttp2_session_del(cl->ng);
}

/* Moves bytes both ways until nothing moves any more. */
static void pump(client_t *cl)
{
    int quiet = 0;
    for (int round = 0; round < 10000 && quiet < 3; round++) {
        bool moved = false;
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(cl->ng, &p)) > 0) {
            bufferevent_write(cl->fc->client, p, (size_t)n);
            moved = true;
        }
        fake_conn_run(cl->fc, 2);
        struct evbuffer *in = bufferevent_get_input(cl->fc->client);
        size_t len = evbuffer_get_length(in);
        if (len != 0) {
            const uint8_t *data = evbuffer_pullup(in, -1);
            cl->log = realloc(cl->log, cl->log_len + len);
            memcpy(cl->log + cl->log_len, data, len);
            cl->log_len += len;
            nghttp2_session_mem_recv(cl->ng, data, len);
            evbuffer_drain(in, len);
            moved = true;
        }
        quiet = moved ? 0 : quiet + 1;
    }
    cl->eof = cl->fc->closed;
}

typedef struct body_src {
    const unsigned char *data;
    size_t len, off;
} body_src_t;

static ssize_t c_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)ud;
    body_src_t *b = src->ptr;
    size_t n = b->len - b->off < length ? b->len - b->off : length;
    memcpy(buf, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static int32_t client_request(client_t *cl, const nghttp2_nv *extra, size_t nextra,
                              const char *method, const char *path, body_src_t *body)
{
    nghttp2_nv nva[256];
    size_t n = 0;
    nva[n++] = (nghttp2_nv)NV(":method", method);
    nva[n++] = (nghttp2_nv)NV(":scheme", "http");
    nva[n++] = (nghttp2_nv)NV(":authority", "example.com");
    nva[n++] = (nghttp2_nv)NV(":path", path);
    for (size_t i = 0; i < nextra && n < 256; i++)
        nva[n++] = extra[i];
    nghttp2_data_provider dp = {.source.ptr = body, .read_callback = c_body_read};
    int32_t id = nghttp2_submit_request(cl->ng, NULL, nva, n, body != NULL ? &dp : NULL, NULL);
    assert_true(id > 0);
    cstream_t *s = &cl->streams[cl->nstreams++];
    memset(s, 0, sizeof(*s));
    s->id = id;
    return id;
}

/* A connected client: preface + SETTINGS exchanged through pt__h2_conn_start
 * with the preface handed over as "already read" bytes (h2c prior knowledge). */
static void connect_client(client_t *cl, fake_conn_t *fc, const pt_config_t *cfg)
{
    fake_conn_init(fc, cfg);
    client_init(cl, fc);
    nghttp2_submit_settings(cl->ng, NGHTTP2_FLAG_NONE, NULL, 0);
    /* the client's first bytes (magic + SETTINGS) are what h1 would hand over */
    unsigned char first[256];
    size_t first_len = 0;
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(cl->ng, &p)) > 0) {
        assert_true(first_len + (size_t)n <= sizeof(first));
        memcpy(first + first_len, p, (size_t)n);
        first_len += (size_t)n;
    }
    assert_memory_equal(first, PREFACE, sizeof(PREFACE) - 1);
    pt__h2_conn_start(fc->conn, first, first_len);
    assert_true(pt__h2_conn_is_h2(fc->conn));
    pump(cl);
}

static void finish(client_t *cl, fake_conn_t *fc)
{
    client_free(cl);
    fake_conn_dispose(fc);
    assert_int_equal(fake.live, 0); /* every request released */
    fake_reset();
}

/* ---- raw frames ------------------------------------------------------------ */

typedef struct raw {
    fake_conn_t *fc;
    nghttp2_hd_deflater *def;
    unsigned char in[1 << 20]; /* bytes received from the server */
    size_t in_len;
} raw_t;

static void raw_frame(raw_t *r, uint8_t type, uint8_t flags, int32_t id, const void *payload,
                      size_t len)
{
    uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                     (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    bufferevent_write(r->fc->client, hd, 9);
    if (len != 0)
        bufferevent_write(r->fc->client, payload, len);
}

static size_t hpack(raw_t *r, const nghttp2_nv *nva, size_t n, uint8_t *out, size_t cap)
{
    ssize_t len = nghttp2_hd_deflate_hd(r->def, out, cap, nva, n);
    assert_true(len > 0);
    return (size_t)len;
}

static void raw_headers(raw_t *r, int32_t id, const nghttp2_nv *nva, size_t n, uint8_t flags)
{
    uint8_t block[16384];
    size_t len = hpack(r, nva, n, block, sizeof(block));
    raw_frame(r, NGHTTP2_HEADERS, flags | NGHTTP2_FLAG_END_HEADERS, id, block, len);
}

static void raw_collect(raw_t *r)
{
    struct evbuffer *in = bufferevent_get_input(r->fc->client);
    size_t len = evbuffer_get_length(in);
    if (len > sizeof(r->in) - r->in_len)
        len = sizeof(r->in) - r->in_len;
    evbuffer_remove(in, r->in + r->in_len, len);
    r->in_len += len;
}

static void raw_run(raw_t *r, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        fake_conn_run(r->fc, 1);
        raw_collect(r);
    }
}

/* Connects with hand-made frames: preface, empty SETTINGS, ACK of the server's
 * SETTINGS when `ack`. */
static void raw_connect(raw_t *r, fake_conn_t *fc, const pt_config_t *cfg, bool ack)
{
    memset(r, 0, sizeof(*r) - sizeof(r->in));
    r->in_len = 0;
    r->fc = fc;
    fake_conn_init(fc, cfg);
    nghttp2_hd_deflate_new(&r->def, 4096);
    pt__h2_conn_start(fc->conn, NULL, 0);
    bufferevent_write(fc->client, PREFACE, sizeof(PREFACE) - 1);
    raw_frame(r, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    if (ack)
        raw_frame(r, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
    raw_run(r, 4);
}

static void raw_finish(raw_t *r)
{
    nghttp2_hd_deflate_del(r->def);
    fake_conn_dispose(r->fc);
    assert_int_equal(fake.live, 0);
    fake_reset();
}

/* Finds the n-th frame of `type` (and stream id, when id >= 0) in `buf`. */
static bool frame_find(const unsigned char *buf, size_t buf_len, uint8_t type, int32_t id, int nth,
                       uint32_t *code, int32_t *sid)
{
    size_t off = 0;
    while (off + 9 <= buf_len) {
        const unsigned char *h = buf + off;
        size_t len = ((size_t)h[0] << 16) | ((size_t)h[1] << 8) | h[2];
        int32_t fid = (int32_t)(((uint32_t)(h[5] & 0x7f) << 24) | ((uint32_t)h[6] << 16) |
                                ((uint32_t)h[7] << 8) | h[8]);
        if (off + 9 + len > buf_len)
            break;
        const unsigned char *p = h + 9;
        if (h[3] == type && (id < 0 || fid == id) && nth-- == 0) {
            if (type == NGHTTP2_RST_STREAM && code != NULL && len >= 4)
                *code = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
            if (type == NGHTTP2_GOAWAY && len >= 8) {
                if (sid != NULL)
                    *sid = (int32_t)((((uint32_t)p[0] & 0x7f) << 24) | ((uint32_t)p[1] << 16) |
                                     ((uint32_t)p[2] << 8) | p[3]);
                if (code != NULL)
                    *code = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
            }
            if (sid != NULL && type != NGHTTP2_GOAWAY)
                *sid = fid;
            return true;
        }
        off += 9 + len;
    }
    return false;
}

/* ... among the frames the server sent in raw mode. */
static bool raw_find(raw_t *r, uint8_t type, int32_t id, int nth, uint32_t *code, int32_t *sid)
{
    return frame_find(r->in, r->in_len, type, id, nth, code, sid);
}

/* The server sent GOAWAY(code) and closed; then the raw client is finished. */
static void raw_expect_goaway_and_finish(raw_t *r, uint32_t code)
{
    uint32_t got = 0;
    assert_true(raw_find(r, NGHTTP2_GOAWAY, 0, 0, &got, NULL));
    assert_int_equal(got, code);
    assert_true(r->fc->closed);
    raw_finish(r);
    free(r);
}

static unsigned raw_count(raw_t *r, uint8_t type)
{
    unsigned n = 0;
    while (raw_find(r, type, -1, (int)n, NULL, NULL))
        n++;
    return n;
}

static const nghttp2_nv GET_NV[] = {
    NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a.example"), NV(":path", "/x"),
};

/* ---- tests ------------------------------------------------------------------- */

static void test_get(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    nghttp2_nv extra[] = {NV("user-agent", "t"), NV("cookie", "a=1"), NV("cookie", "b=2")};
    int32_t id = client_request(&cl, extra, 3, "GET", "/hello/world?x=1&y=2", NULL);
    pump(&cl);
    cstream_t *s = cs_of(&cl, id);
    assert_true(s->closed);
    assert_int_equal(s->close_code, 0);
    assert_int_equal(s->status, 200);
    assert_string_equal((char *)s->body, "/hello/world");
    assert_non_null(strstr(s->headers, "x-path: /hello/world\n"));
    assert_non_null(strstr(s->headers, "content-length: 12\n"));
    assert_int_equal(fake.rec_cnt, 1);
    fake_rec_t *r = &fake.recs[0];
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->path, "/hello/world");
    assert_string_equal(r->query, "x=1&y=2");
    assert_string_equal(r->authority, "example.com");
    assert_string_equal(r->scheme, "http");
    assert_int_equal(r->version, 20);
    assert_false(r->expect_body);
    assert_true(r->body_end);
    assert_true(r->done);
    /* cookie crumbs joined for HTTP/1 upstreams (RFC 9113 §8.2.3) */
    assert_non_null(strstr(r->headers, "cookie: a=1; b=2\n"));
    assert_non_null(strstr(r->headers, "user-agent: t\n"));

    /* a second request on the same connection */
    id = client_request(&cl, NULL, 0, "GET", "/again", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    assert_false(cl.goaway);
    finish(&cl, &fc);
}

static void test_post_body_flow_control(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    /* 300 KiB: far over the 64 KiB stream window, so the transfer only
     * completes if consumed bytes reopen the window (manual flow control). */
    size_t len = 300 * 1024;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    body_src_t b = {data, len, 0};
    char cl_str[16];
    snprintf(cl_str, sizeof(cl_str), "%zu", len);
    nghttp2_nv extra[] = {NV("content-length", cl_str)};
    int32_t id = client_request(&cl, extra, 1, "POST", "/upload", &b);
    pump(&cl);
    cstream_t *s = cs_of(&cl, id);
    assert_int_equal(s->status, 200);
    assert_int_equal(s->body_len, len);
    assert_memory_equal(s->body, data, len);
    assert_int_equal(fake.recs[0].content_length, (int64_t)len);
    assert_true(fake.recs[0].expect_body);
    assert_int_equal(fake.recs[0].body_len, len);
    free(data);
    finish(&cl, &fc);
}

static void test_body_backpressure(void **state)
{
    (void)state;
    fake_reset();
    fake.auto_consume = false;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    size_t len = 200 * 1024;
    unsigned char *data = calloc(1, len);
    body_src_t b = {data, len, 0};
    int32_t id = client_request(&cl, NULL, 0, "POST", "/slow", &b);
    pump(&cl);
    /* nothing consumed: only the 64 KiB stream window may arrive */
    fake_rec_t *r = &fake.recs[0];
    assert_int_equal(r->body_len, 64 * 1024);
    assert_false(r->body_end);
    /* the handler reads: the window reopens, the rest follows */
    for (int i = 0; i < 40 && !r->body_end; i++) {
        fake_consume(r, evbuffer_get_length(r->req->body));
        pump(&cl);
    }
    assert_true(r->body_end);
    assert_int_equal(r->body_len, len);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    free(data);
    finish(&cl, &fc);
}

static void test_trailers_and_streaming(void **state)
{
    (void)state;
    fake_reset();
    fake.trailer_name = "grpc-status";
    fake.trailer_value = "0";
    fake.echo_repeat = 50; /* 50 x 10 KiB: output larger than the 64 KiB client window */
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    unsigned char data[10240];
    memset(data, 'z', sizeof(data));
    body_src_t b = {data, sizeof(data), 0};
    int32_t id = client_request(&cl, NULL, 0, "POST", "/grpc.Svc/M", &b);
    pump(&cl);
    cstream_t *s = cs_of(&cl, id);
    assert_int_equal(s->status, 200);
    assert_int_equal(s->body_len, 50 * sizeof(data));
    assert_non_null(strstr(s->trailers, "grpc-status: 0\n"));
    assert_true(s->closed);
    assert_int_equal(s->close_code, 0);
    assert_true(fake.recs[0].done);
    finish(&cl, &fc);
}

static void test_held_response_and_client_reset(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    int32_t id = client_request(&cl, NULL, 0, "GET", "/later", NULL);
    pump(&cl);
    assert_true(fake.recs[0].headers_done);
    assert_false(cs_of(&cl, id)->closed);
    /* head now, body later (DEFERRED data provider, then resumed) */
    fake_respond(&fake.recs[0], 200, "part1-", 6, false);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    fake_body(&fake.recs[0], "part2", 5, true);
    pump(&cl);
    assert_string_equal((char *)cs_of(&cl, id)->body, "part1-part2");
    assert_true(fake.recs[0].done);

    /* client resets a held request: the request is aborted */
    id = client_request(&cl, NULL, 0, "GET", "/cancel", NULL);
    pump(&cl);
    assert_true(fake.recs[1].headers_done);
    nghttp2_submit_rst_stream(cl.ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump(&cl);
    assert_true(fake.recs[1].aborted);
    assert_false(cl.goaway);

    /* the handler fails mid-response: RST_STREAM(INTERNAL_ERROR), never END_STREAM */
    id = client_request(&cl, NULL, 0, "GET", "/fail", NULL);
    pump(&cl);
    fake_respond(&fake.recs[2], 200, "partial", 7, false);
    pump(&cl);
    fake.recs[2].req->resp_state = PT_RESP_ENDED;
    fake.recs[2].req->ops->reset(fake.recs[2].req);
    pump(&cl);
    assert_true(cs_of(&cl, id)->closed);
    assert_int_equal(cs_of(&cl, id)->close_code, NGHTTP2_INTERNAL_ERROR);
    assert_true(fake.recs[2].done);
    finish(&cl, &fc);
}

static void test_header_list_over_limit(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    /* 150 distinct fields: over the count limit (100) */
    static char names[150][16];
    nghttp2_nv many[150];
    for (int i = 0; i < 150; i++) {
        snprintf(names[i], sizeof(names[i]), "x-h%d", i);
        many[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)"v", strlen(names[i]), 1,
                               NGHTTP2_NV_FLAG_NONE};
    }
    int32_t id = client_request(&cl, many, 150, "GET", "/many", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 431);
    assert_int_equal(fake.recs[0].rejected, PT_ERR_HEADERS_TOO_LARGE);
    assert_false(fake.recs[0].headers_done);

    /* HPACK bomb shape: one 4 KiB value repeated (indexed after the first) */
    static char big[4000];
    memset(big, 'b', sizeof(big) - 1);
    nghttp2_nv bomb[40];
    for (int i = 0; i < 40; i++)
        bomb[i] = (nghttp2_nv){(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof(big) - 1,
                               NGHTTP2_NV_FLAG_NONE};
    id = client_request(&cl, bomb, 40, "GET", "/bomb", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 431);

    /* cookie crumbs count as fields (the "HTTP/2 Bomb") */
    nghttp2_nv crumbs[120];
    for (int i = 0; i < 120; i++)
        crumbs[i] = (nghttp2_nv){(uint8_t *)"cookie", (uint8_t *)"a=b", 6, 3, NGHTTP2_NV_FLAG_NONE};
    id = client_request(&cl, crumbs, 120, "GET", "/crumbs", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 431);

    /* the decoder stayed in sync: a normal request still works */
    id = client_request(&cl, NULL, 0, "GET", "/fine", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    assert_false(cl.goaway);

    /* repeated over-limit blocks end the connection */
    id = client_request(&cl, many, 150, "GET", "/many", NULL);
    pump(&cl);
    assert_true(cl.goaway);
    assert_int_equal(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(fc.closed);
    finish(&cl, &fc);
}

static void test_bad_requests(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    /* :authority vs host mismatch -> 400 */
    nghttp2_nv host[] = {NV("host", "evil.example")};
    int32_t id = client_request(&cl, host, 1, "GET", "/h", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 400);
    /* a matching host is fine */
    nghttp2_nv host2[] = {NV("host", "EXAMPLE.com")};
    id = client_request(&cl, host2, 1, "GET", "/h", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    /* underscore in a field name -> 400 (default policy) */
    nghttp2_nv us[] = {NV("x_user", "admin")};
    id = client_request(&cl, us, 1, "GET", "/u", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 400);
    /* connection-specific fields -> stream reset by nghttp2 messaging */
    const char *bad[] = {"transfer-encoding", "connection", "keep-alive", "upgrade"};
    for (int i = 0; i < 4; i++) {
        nghttp2_nv te[] = {{(uint8_t *)bad[i], (uint8_t *)"chunked", strlen(bad[i]), 7, 0}};
        id = client_request(&cl, te, 1, "GET", "/te", NULL);
        pump(&cl);
        assert_true(cs_of(&cl, id)->closed);
        assert_int_equal(cs_of(&cl, id)->status, 0);
        assert_int_equal(cs_of(&cl, id)->close_code, NGHTTP2_PROTOCOL_ERROR);
    }
    /* CR/LF in a value and a value with trailing space: reset, never forwarded */
    nghttp2_nv crlf[] = {NV("x-a", "a\r\nx-injected: 1")};
    id = client_request(&cl, crlf, 1, "GET", "/crlf", NULL);
    pump(&cl);
    assert_true(cs_of(&cl, id)->closed);
    assert_int_equal(cs_of(&cl, id)->status, 0);
    nghttp2_nv ws[] = {NV("content-length", "0 ")};
    id = client_request(&cl, ws, 1, "GET", "/ws", NULL);
    pump(&cl);
    assert_true(cs_of(&cl, id)->closed);
    assert_int_equal(cs_of(&cl, id)->status, 0);
    /* content-length disagreeing with the body -> reset (nghttp2 messaging) */
    body_src_t b = {(const unsigned char *)"12345", 5, 0};
    nghttp2_nv cl3[] = {NV("content-length", "3")};
    id = client_request(&cl, cl3, 1, "POST", "/cl", &b);
    pump(&cl);
    assert_true(cs_of(&cl, id)->closed);
    assert_int_equal(cs_of(&cl, id)->close_code, NGHTTP2_PROTOCOL_ERROR);
    /* CONNECT (no extended CONNECT) -> 501 */
    nghttp2_nv connect[] = {NV(":method", "CONNECT"), NV(":authority", "example.com:443")};
    id = nghttp2_submit_request(cl.ng, NULL, connect, 2, NULL, NULL);
    cl.streams[cl.nstreams].id = id;
    cl.nstreams++;
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 501);
    /* the connection still serves */
    id = client_request(&cl, NULL, 0, "GET", "/ok", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    assert_false(cl.goaway);
    for (size_t i = 0; i < fake.rec_cnt; i++)
        if (fake.recs[i].headers_done)
            assert_null(strstr(fake.recs[i].headers, "x-injected"));
    finish(&cl, &fc);
}

static void test_too_many_streams(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    /* SETTINGS not yet acknowledged: the 101st stream is refused */
    raw_connect(r, &fc, NULL, false);
    for (int i = 0; i < 101; i++)
        raw_headers(r, 1 + 2 * i, GET_NV, 4, 0);
    raw_run(r, 4);
    uint32_t code = 0;
    assert_true(raw_find(r, NGHTTP2_RST_STREAM, 201, 0, &code, NULL));
    assert_int_equal(code, NGHTTP2_REFUSED_STREAM);
    assert_int_equal(fake.live, 100);
    assert_false(raw_find(r, NGHTTP2_GOAWAY, 0, 0, NULL, NULL));
    raw_finish(r);

    /* acknowledged: exceeding the limit is a protocol violation -> GOAWAY */
    fake.mode = FAKE_HOLD;
    raw_connect(r, &fc, NULL, true);
    for (int i = 0; i < 101; i++)
        raw_headers(r, 1 + 2 * i, GET_NV, 4, 0);
    raw_run(r, 4);
    int32_t last = 0;
    bool refused = raw_find(r, NGHTTP2_RST_STREAM, 201, 0, &code, NULL) &&
                   code == NGHTTP2_REFUSED_STREAM;
    bool goaway = raw_find(r, NGHTTP2_GOAWAY, 0, 0, &code, &last);
    assert_true(refused || goaway);
    raw_finish(r);
    free(r);
}

static void test_rapid_reset(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
    int32_t id = 1;
    for (int batch = 0; batch < 40 && !fc.closed; batch++) {
        for (int i = 0; i < 50; i++, id += 2) {
            raw_headers(r, id, GET_NV, 4, NGHTTP2_FLAG_END_STREAM);
            raw_frame(r, NGHTTP2_RST_STREAM, 0, id, cancel, 4);
        }
        raw_run(r, 3);
    }
    uint32_t code = 0;
    assert_true(raw_find(r, NGHTTP2_GOAWAY, 0, 0, &code, NULL));
    assert_int_equal(code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(fc.closed);
    /* the premature-reset ratio fires long before nghttp2's 1000-token bucket */
    assert_true(fake.rec_cnt <= 200);
    /* HEADERS+RST in one read never started any work */
    size_t started = 0;
    for (size_t i = 0; i < fake.rec_cnt; i++)
        started += fake.recs[i].headers_done;
    assert_int_equal(started, 0);
    raw_finish(r);
    free(r);
}

static void test_made_you_reset(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    /* malformed requests provoke server resets; our glitch budget ends it */
    const nghttp2_nv badnv[] = {
        NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/"),
        NV("x-bad", " leading-space"),
    };
    int32_t id = 1;
    for (int i = 0; i < 400 && !fc.closed; i++, id += 2) {
        raw_headers(r, id, badnv, 5, NGHTTP2_FLAG_END_STREAM);
        if (i % 20 == 19)
            raw_run(r, 2);
    }
    raw_run(r, 4);
    uint32_t code = 0;
    assert_true(raw_count(r, NGHTTP2_RST_STREAM) >= 50);
    assert_true(raw_find(r, NGHTTP2_GOAWAY, 0, 0, &code, NULL));
    assert_int_equal(code, NGHTTP2_ENHANCE_YOUR_CALM);
    for (size_t i = 0; i < fake.rec_cnt; i++)
        assert_false(fake.recs[i].headers_done);
    raw_finish(r);
    free(r);
}

static void test_continuation_flood(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t block[64];
    size_t len = hpack(r, GET_NV, 4, block, sizeof(block));
    raw_frame(r, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, block, len);
    for (int i = 0; i < 100 && !fc.closed; i++) {
        raw_frame(r, NGHTTP2_CONTINUATION, 0, 1, NULL, 0);
        raw_run(r, 1);
    }
    raw_run(r, 3);
    assert_true(fc.closed);
    assert_int_equal(fake.rec_cnt <= 1, 1);
    if (fake.rec_cnt == 1)
        assert_false(fake.recs[0].headers_done);
    raw_finish(r);

    /* legit: a block split over 3 CONTINUATIONs, fed one byte per read */
    raw_connect(r, &fc, NULL, true);
    nghttp2_nv nva[] = {
        NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a.example"),
        NV(":path", "/split"), NV("x-one", "11111111111111111111"), NV("x-two", "2222222222222"),
    };
    uint8_t b2[256];
    len = hpack(r, nva, 6, b2, sizeof(b2));
    size_t part = len / 4;
    unsigned char frames[512];
    size_t flen = 0;
    for (int i = 0; i < 4; i++) {
        size_t off = part * (size_t)i, n = i == 3 ? len - off : part;
        uint8_t type = i == 0 ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION;
        uint8_t flags = (i == 0 ? NGHTTP2_FLAG_END_STREAM : 0) | (i == 3 ? NGHTTP2_FLAG_END_HEADERS : 0);
        uint8_t hd[9] = {0, 0, (uint8_t)n, type, flags, 0, 0, 0, 1};
        memcpy(frames + flen, hd, 9);
        memcpy(frames + flen + 9, b2 + off, n);
        flen += 9 + n;
    }
    for (size_t i = 0; i < flen; i++) {
        bufferevent_write(fc.client, frames + i, 1);
        raw_run(r, 1);
    }
    raw_run(r, 4);
    assert_false(fc.closed);
    assert_int_equal(fake.rec_cnt, 1);
    assert_true(fake.recs[0].done);
    assert_string_equal(fake.recs[0].path, "/split");
    raw_finish(r);
    free(r);
}

static void test_drain(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    int32_t id = client_request(&cl, NULL, 0, "GET", "/inflight", NULL);
    pump(&cl);
    pt__h2_conn_drain(fc.conn);
    pump(&cl);
    /* phase 1: shutdown notice, then (after the PING round trip) the real one */
    assert_true(cl.goaways >= 2);
    assert_int_equal(cl.first_goaway_last, INT32_MAX);
    assert_int_equal(cl.goaway_last, id);
    assert_int_equal(cl.goaway_code, NGHTTP2_NO_ERROR);
    assert_false(fc.closed); /* the in-flight stream is still running */
    fake_respond(&fake.recs[0], 200, "bye", 3, true);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    assert_string_equal((char *)cs_of(&cl, id)->body, "bye");
    assert_true(fake.recs[0].done);
    assert_true(fc.closed); /* then the connection closes on its own */
    finish(&cl, &fc);

    /* an idle connection drains at once */
    connect_client(&cl, &fc, NULL);
    pt__h2_conn_drain(fc.conn);
    pump(&cl);
    assert_true(cl.goaway);
    assert_true(fc.closed);
    finish(&cl, &fc);
}

static void test_max_requests_per_conn(void **state)
{
    (void)state;
    fake_reset();
    pt_config_t cfg;
    fake_config_defaults(&cfg);
    cfg.limits.max_requests_per_conn = 3;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, &cfg);
    for (int i = 0; i < 3; i++) {
        int32_t id = client_request(&cl, NULL, 0, "GET", "/n", NULL);
        pump(&cl);
        assert_int_equal(cs_of(&cl, id)->status, 200);
    }
    /* the client session stops reading after the first GOAWAY once idle, so
     * check the frames on the wire: notice (2^31-1), then the real one (5) */
    uint32_t code = 1;
    int32_t last = 0;
    assert_true(frame_find(cl.log, cl.log_len, NGHTTP2_GOAWAY, 0, 0, &code, &last));
    assert_int_equal(last, INT32_MAX);
    assert_true(frame_find(cl.log, cl.log_len, NGHTTP2_GOAWAY, 0, 1, &code, &last));
    assert_int_equal(last, 5);
    assert_int_equal(code, NGHTTP2_NO_ERROR);
    assert_true(fc.closed);
    finish(&cl, &fc);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    fake_reset();
    pt_config_t cfg;
    fake_config_defaults(&cfg);
    cfg.timeouts.h2_idle_ms = 150;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, &cfg);
    int32_t id = client_request(&cl, NULL, 0, "GET", "/n", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    assert_false(fc.closed);
    fake_conn_run_for(&fc, 400);
    pump(&cl);
    assert_true(cl.goaway);
    assert_int_equal(cl.goaway_code, NGHTTP2_NO_ERROR);
    assert_true(fc.closed);
    finish(&cl, &fc);
}

static void test_stream_body_timeout(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    pt_config_t cfg;
    fake_config_defaults(&cfg);
    cfg.timeouts.body_ms = 150;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, &cfg, true);
    /* HEADERS without END_STREAM and then nothing (H2-14) */
    raw_headers(r, 1, GET_NV, 4, 0);
    raw_run(r, 3);
    assert_int_equal(fake.live, 1);
    fake_conn_run_for(&fc, 400);
    raw_run(r, 3);
    uint32_t code = 0;
    assert_true(raw_find(r, NGHTTP2_RST_STREAM, 1, 0, &code, NULL));
    assert_int_equal(code, NGHTTP2_CANCEL);
    assert_true(fake.recs[0].aborted);
    assert_int_equal(fake.live, 0);
    raw_finish(r);
    free(r);
}

static void test_garbage(void **state)
{
    (void)state;
    fake_reset();
    /* not a preface at all: closed, no crash */
    fake_conn_t fc;
    fake_conn_init(&fc, NULL);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    pt__h2_conn_start(fc.conn, (const uint8_t *)junk, sizeof(junk) - 1);
    fake_conn_run(&fc, 4);
    assert_true(fc.closed);
    fake_conn_dispose(&fc);

    /* garbage after a connection error (CVE-2026-27135 pattern) */
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t bad_wu[4] = {0, 0, 0, 0};
    raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 0, bad_wu, 4); /* connection WINDOW_UPDATE 0 */
    for (int i = 0; i < 50; i++)
        raw_frame(r, (uint8_t)(i * 37), (uint8_t)i, i, junk, sizeof(junk) - 1);
    raw_run(r, 6);
    raw_expect_goaway_and_finish(r, NGHTTP2_PROTOCOL_ERROR);
}

static void test_upgrade(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    fake_conn_init(&fc, NULL);
    /* the request the h1 codec parsed */
    pt_req_t *req = pt__req_new(&fc.worker, NULL, NULL);
    req->method = PT_STR("GET");
    req->path = req->target = PT_STR("/up");
    req->authority = PT_STR("example.com");
    req->version = 11;
    /* HTTP2-Settings: SETTINGS_MAX_CONCURRENT_STREAMS=100, base64url */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    uint8_t payload[16];
    ssize_t plen = nghttp2_pack_settings_payload(payload, sizeof(payload), iv, 1);
    assert_int_equal(plen, 6);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char enc[16];
    size_t el = 0;
    for (int i = 0; i < 6; i += 3) {
        uint32_t v = ((uint32_t)payload[i] << 16) | ((uint32_t)payload[i + 1] << 8) | payload[i + 2];
        for (int k = 3; k >= 0; k--)
            enc[el++] = b64[(v >> (6 * k)) & 63];
    }
    /* a bad value is refused without side effects */
    assert_int_equal(pt__h2_conn_upgrade(fc.conn, req, PT_STR("!!!")), PT_ERR_INVALID);
    assert_false(pt__h2_conn_is_h2(fc.conn));
    assert_int_equal(pt__h2_conn_upgrade(fc.conn, req, (pt_str_t){enc, el}), 0);
    assert_true(pt__h2_conn_is_h2(fc.conn));
    fake_conn_run(&fc, 4);
    struct evbuffer *in = bufferevent_get_input(fc.client);
    size_t n = evbuffer_get_length(in);
    char *text = (char *)evbuffer_pullup(in, -1);
    static const char h101[] = "HTTP/1.1 101 Switching Protocols\r\n";
    assert_true(n > sizeof(h101));
    assert_memory_equal(text, h101, sizeof(h101) - 1);
    char *end = memmem(text, n, "\r\n\r\n", 4);
    assert_non_null(end);
    evbuffer_drain(in, (size_t)(end + 4 - text));
    /* now a client session upgraded the same way reads the answer on stream 1 */
    client_t cl;
    client_init(&cl, &fc);
    assert_int_equal(nghttp2_session_upgrade2(cl.ng, payload, (size_t)plen, 0, NULL), 0);
    cl.streams[0].id = 1;
    cl.nstreams = 1;
    nghttp2_submit_settings(cl.ng, NGHTTP2_FLAG_NONE, NULL, 0);
    pump(&cl);
    assert_int_equal(cl.streams[0].status, 200);
    assert_string_equal((char *)cl.streams[0].body, "/up");
    assert_true(fake.recs[0].done);
    /* and the connection goes on as HTTP/2 */
    int32_t id = client_request(&cl, NULL, 0, "GET", "/next", NULL);
    pump(&cl);
    assert_int_equal(cs_of(&cl, id)->status, 200);
    finish(&cl, &fc);
}

/* Zero-progress frame floods (issue 14): each kind on its own connection is
 * cut with GOAWAY(ENHANCE_YOUR_CALM) after a bounded number of frames. The
 * frames go in batches of 20 per read, as a flooder's writes would. */
typedef enum { FLOOD_EMPTY_DATA, FLOOD_PADDED_DATA, FLOOD_PRIORITY, FLOOD_UNKNOWN, FLOOD_WU_1,
               FLOOD_WU_CLOSED } flood_kind_t;

static unsigned flood(flood_kind_t kind)
{
    fake_reset();
    fake.mode = kind == FLOOD_WU_CLOSED ? FAKE_ECHO : FAKE_HOLD;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    /* a request whose body never comes (the empty DATA go there), or, for
     * WU_CLOSED, one that completes so stream 1 is closed */
    raw_headers(r, 1, GET_NV, 4, kind == FLOOD_WU_CLOSED ? NGHTTP2_FLAG_END_STREAM : 0);
    raw_run(r, 3);
    uint8_t prio[5] = {0, 0, 0, 1, 16};
    uint8_t wu1[4] = {0, 0, 0, 1};
    uint8_t wubig[4] = {0, 1, 0, 0}; /* 65536: large, but nothing earned it */
    uint8_t pad[8] = {7};            /* PADDED DATA: pad length 7, no payload */
    unsigned sent = 0;
    while (sent < 2000 && !fc.closed) {
        for (int i = 0; i < 20; i++, sent++) {
            switch (kind) {
            case FLOOD_EMPTY_DATA:
                raw_frame(r, NGHTTP2_DATA, 0, 1, NULL, 0);
                break;
            case FLOOD_PADDED_DATA:
                raw_frame(r, NGHTTP2_DATA, NGHTTP2_FLAG_PADDED, 1, pad, 8);
                break;
            case FLOOD_PRIORITY:
                raw_frame(r, NGHTTP2_PRIORITY, 0, 3 + 2 * (int32_t)(sent % 50), prio, 5);
                break;
            case FLOOD_UNKNOWN:
                raw_frame(r, 0x42, 0, 0, NULL, 0);
                break;
            case FLOOD_WU_1:
                raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 0, wu1, 4);
                break;
            case FLOOD_WU_CLOSED:
                raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 1, wubig, 4);
                break;
            }
        }
        raw_run(r, 2);
    }
    raw_run(r, 4);
    raw_expect_goaway_and_finish(r, NGHTTP2_ENHANCE_YOUR_CALM);
    return sent;
}

static void test_zero_progress_floods(void **state)
{
    (void)state;
    static const flood_kind_t kinds[] = {FLOOD_EMPTY_DATA, FLOOD_PADDED_DATA, FLOOD_PRIORITY,
                                         FLOOD_UNKNOWN, FLOOD_WU_1, FLOOD_WU_CLOSED};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        unsigned sent = flood(kinds[i]);
        /* the budget is 100 at once plus 10/s: a few hundred frames at most,
         * however slow the machine (the connection closed long before 2000) */
        print_message("flood kind %zu: closed after %u frames\n", i, sent);
        assert_true(sent < 1000);
    }
}

/* limits.h2_glitch_burst / h2_glitch_rate set the budget. */
static void test_glitch_budget_config(void **state)
{
    (void)state;
    fake_reset();
    pt_config_t cfg;
    fake_config_defaults(&cfg);
    cfg.limits.h2_glitch_burst = 5;
    cfg.limits.h2_glitch_rate = 1;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, &cfg, true);
    uint8_t prio[5] = {0, 0, 0, 0, 16};
    unsigned sent = 0;
    for (; sent < 100 && !fc.closed; sent++) {
        raw_frame(r, NGHTTP2_PRIORITY, 0, 3, prio, 5);
        raw_run(r, 2);
    }
    raw_run(r, 4);
    /* 5 at once, the 6th ends it; a slow machine may have refilled a token or two */
    print_message("closed after %u PRIORITY frames\n", sent);
    assert_true(sent >= 6 && sent <= 10);
    raw_expect_goaway_and_finish(r, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* What legitimate clients do must not trip it: a browser's handful of
 * PRIORITY frames, and the WINDOW_UPDATEs of a 1 MiB download. */
static void test_zero_progress_legit(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t prio[5] = {0, 0, 0, 0, 200};
    for (int32_t id = 3; id <= 11; id += 2) /* Firefox's idle-stream dependency tree */
        raw_frame(r, NGHTTP2_PRIORITY, 0, id, prio, 5);
    raw_headers(r, 13, GET_NV, 4, NGHTTP2_FLAG_END_STREAM);
    raw_run(r, 4);
    assert_true(raw_find(r, NGHTTP2_HEADERS, 13, 0, NULL, NULL));
    assert_false(raw_find(r, NGHTTP2_GOAWAY, 0, 0, NULL, NULL));
    assert_false(fc.closed);
    raw_finish(r);
    free(r);

    fake_reset();
    fake.echo_repeat = 100; /* 100 x 10 KiB */
    client_t cl;
    connect_client(&cl, &fc, NULL);
    for (int round = 0; round < 3; round++) {
        unsigned char data[10240];
        memset(data, 'w', sizeof(data));
        body_src_t b = {data, sizeof(data), 0};
        int32_t id = client_request(&cl, NULL, 0, "POST", "/download", &b);
        pump(&cl);
        assert_int_equal(cs_of(&cl, id)->status, 200);
        assert_int_equal(cs_of(&cl, id)->body_len, 100 * sizeof(data));
    }
    assert_false(cl.goaway);
    assert_false(fc.closed);
    finish(&cl, &fc);
}

/* A gRPC client opens a stream and raises its window in the same write
 * (HEADERS, stream WINDOW_UPDATE, connection WINDOW_UPDATE). On a loaded
 * machine many such writes pile up and arrive in one read; whether those
 * WINDOW_UPDATEs were earned must not depend on that (integration
 * grpc_native/grpc_limits were closed with ENHANCE_YOUR_CALM under load). */
static void test_zero_progress_one_read(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t wu[4] = {0, 0, 0x40, 0}; /* 16 KiB */
    raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 0, wu, 4);
    for (int32_t id = 1; id < 200; id += 2) { /* 100 streams, all in one read */
        raw_headers(r, id, GET_NV, 4, NGHTTP2_FLAG_END_STREAM);
        raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, id, wu, 4);
        raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 0, wu, 4);
    }
    raw_run(r, 4);
    assert_false(raw_find(r, NGHTTP2_GOAWAY, 0, 0, NULL, NULL));
    assert_false(fc.closed);
    assert_int_equal(fake.live, 100);
    raw_finish(r);
    free(r);
}

/* Our response went out in few DATA frames (many messages coalesced while
 * we were slow); the client returns the window message by message, on the
 * stream and on the connection. Every one of those updates returns bytes we
 * sent: none may count against the glitch budget. */
static void test_zero_progress_window_returned_in_pieces(void **state)
{
    (void)state;
    fake_reset();
    fake_conn_t fc;
    raw_t *r = calloc(1, sizeof(*r));
    raw_connect(r, &fc, NULL, true);
    uint8_t body[4000];
    memset(body, 'm', sizeof(body));
    raw_headers(r, 1, GET_NV, 4, 0);
    raw_frame(r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, body, sizeof(body));
    raw_run(r, 4);
    assert_true(raw_find(r, NGHTTP2_HEADERS, 1, 0, NULL, NULL));
    assert_true(raw_count(r, NGHTTP2_DATA) <= 3);
    uint8_t wu[4] = {0, 0, 0, 10}; /* 10-byte messages */
    for (int i = 0; i < 400 && !fc.closed; i++) { /* 4000 bytes returned on each level */
        raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 1, wu, 4);
        raw_frame(r, NGHTTP2_WINDOW_UPDATE, 0, 0, wu, 4);
        if (i % 50 == 49)
            raw_run(r, 1);
    }
    raw_run(r, 4);
    assert_false(raw_find(r, NGHTTP2_GOAWAY, 0, 0, NULL, NULL));
    assert_false(fc.closed);
    raw_finish(r);
    free(r);
}

static void test_destroy_with_streams(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    for (int i = 0; i < 5; i++)
        client_request(&cl, NULL, 0, "GET", "/held", NULL);
    pump(&cl);
    assert_int_equal(fake.live, 5);
    /* worker teardown: requests aborted, state freed, conn left to the caller */
    fc.conn->codec_ops->destroy(fc.conn);
    assert_int_equal(fake.live, 0);
    assert_null(fc.conn->codec);
    for (int i = 0; i < 5; i++)
        assert_true(fake.recs[i].aborted);
    finish(&cl, &fc);
}

/* x-request-id (new every response) is never indexed, but its NAME is: the
 * first one on a connection goes into the HPACK table (pt_hpack_nv_flags_seeded),
 * so the later ones name that entry instead of spelling the name again. Each
 * response still carries its own value. */
static void test_request_id_hpack(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    static const char *ids[] = {"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210",
                                "00000000000000000000000000000001"};
    size_t sizes[3];
    for (int i = 0; i < 3; i++) {
        int32_t id = client_request(&cl, NULL, 0, "GET", "/rid", NULL);
        pump(&cl);
        pt_req_t *req = fake.recs[i].req;
        assert_non_null(req);
        pt_headers_add(&req->resp_headers, PT_STR("x-request-id"), pt_str_c(ids[i]));
        size_t before = cl.log_len;
        fake_respond(&fake.recs[i], 200, "", 0, true);
        pump(&cl);
        sizes[i] = cl.log_len - before;
        cstream_t *s = cs_of(&cl, id);
        assert_int_equal(s->status, 200);
        char want[64];
        snprintf(want, sizeof(want), "x-request-id: %s\n", ids[i]);
        assert_non_null(strstr(s->headers, want));
        if (i == 0)
            assert_null(strstr(s->never, "x-request-id"));  /* indexed once */
        else
            assert_string_equal(s->never, "x-request-id "); /* then never again */
    }
    /* the second and third answers name the table entry: shorter than the first
     * by more than the Huffman-coded name ("x-request-id", 9 bytes) */
    assert_true(sizes[1] + 8 < sizes[0]);
    assert_true(sizes[2] + 8 < sizes[0]);
    finish(&cl, &fc);
}

/* Response head and trailer names with capitals go out lowercase (RFC 9113
 * §8.2.1; we copy the fields for nghttp2, which no longer lowercases them),
 * at every name length the check handles differently (1-3, 4-7, 8+). */
static void test_response_names_lowercased(void **state)
{
    (void)state;
    fake_reset();
    fake.mode = FAKE_HOLD;
    fake_conn_t fc;
    client_t cl;
    connect_client(&cl, &fc, NULL);
    int32_t id = client_request(&cl, NULL, 0, "GET", "/caps", NULL);
    pump(&cl);
    pt_req_t *req = fake.recs[0].req;
    assert_non_null(req);
    static const char *names[] = {"A",       "xY",           "Abcd",
                                  "abcdefG", "X-Mixed-Case", "x-lower-but-lONGer-than-16"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        pt_headers_add_nocopy(&req->resp_headers, pt_str_c(names[i]), PT_STR("v"));
    pt_headers_add_nocopy(&req->resp_trailers, PT_STR("Grpc-Status"), PT_STR("0"));
    fake_respond(&fake.recs[0], 200, "abc", 3, true);
    pump(&cl);
    cstream_t *s = cs_of(&cl, id);
    assert_int_equal(s->status, 200);
    static const char *want[] = {"a: v\n",           "xy: v\n",
                                 "abcd: v\n",        "abcdefg: v\n",
                                 "x-mixed-case: v\n", "x-lower-but-longer-than-16: v\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_non_null(strstr(s->headers, want[i]));
    assert_non_null(strstr(s->trailers, "grpc-status: 0\n"));
    assert_int_equal(s->body_len, 3);
    assert_true(s->closed);
    assert_int_equal(s->close_code, 0);
    finish(&cl, &fc);
}

/* A small body is held in the stream itself, a bigger one (or what follows
 * a held one) in its buffer: the client gets every byte in order, whether
 * the pieces come before one flush or with flushes between them. */
static void test_small_and_big_body_order(void **state)
{
    (void)state;
    static unsigned char big[5000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)('a' + i % 26);
    for (int flushes = 0; flushes < 2; flushes++) {
        fake_reset();
        fake.mode = FAKE_HOLD;
        fake_conn_t fc;
        client_t cl;
        connect_client(&cl, &fc, NULL);
        int32_t id = client_request(&cl, NULL, 0, "GET", "/order", NULL);
        pump(&cl);
        fake_respond(&fake.recs[0], 200, "<12>", 4, false);
        if (flushes)
            pump(&cl);
        fake_body(&fake.recs[0], big, sizeof(big), false);
        fake_body(&fake.recs[0], "<34>", 4, false);
        if (flushes)
            pump(&cl);
        fake_body(&fake.recs[0], "<56>", 4, true);
        pump(&cl);
        cstream_t *s = cs_of(&cl, id);
        assert_int_equal(s->status, 200);
        assert_int_equal(s->body_len, 4 + sizeof(big) + 8);
        assert_memory_equal(s->body, "<12>", 4);
        assert_memory_equal(s->body + 4, big, sizeof(big));
        assert_memory_equal(s->body + 4 + sizeof(big), "<34><56>", 8);
        assert_true(s->closed);
        assert_int_equal(s->close_code, 0);
        finish(&cl, &fc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_request_id_hpack),
        cmocka_unit_test(test_response_names_lowercased),
        cmocka_unit_test(test_small_and_big_body_order),
        cmocka_unit_test(test_post_body_flow_control),
        cmocka_unit_test(test_body_backpressure),
        cmocka_unit_test(test_trailers_and_streaming),
        cmocka_unit_test(test_held_response_and_client_reset),
        cmocka_unit_test(test_header_list_over_limit),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_too_many_streams),
        cmocka_unit_test(test_rapid_reset),
        cmocka_unit_test(test_made_you_reset),
        cmocka_unit_test(test_continuation_flood),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_max_requests_per_conn),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_stream_body_timeout),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_zero_progress_one_read),
        cmocka_unit_test(test_zero_progress_window_returned_in_pieces),
        cmocka_unit_test(test_destroy_with_streams),
        cmocka_unit_test(test_zero_progress_floods),
        cmocka_unit_test(test_zero_progress_legit),
        cmocka_unit_test(test_glitch_budget_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
