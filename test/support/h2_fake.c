/*
 * h2_fake.c -- fake request layer and in-memory connection for h2 tests.
 * See h2_fake.h.
 */
#include "h2_fake.h"
#include "http/h2mem.h"
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "portico/status.h"

fake_env_t fake;

static void copy_str(char *dst, size_t cap, pt_str_t s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n != 0)
        memcpy(dst, s.base, n);
    dst[n] = '\0';
}

void fake_reset(void)
{
    for (size_t i = 0; i < fake.rec_cnt; i++)
        free(fake.recs[i].body);
    free(fake.recs);
    memset(&fake, 0, sizeof(fake));
    fake.mode = FAKE_ECHO;
    fake.auto_consume = true;
}

static fake_rec_t *rec_of(pt_req_t *req)
{
    /* the fake stores the record index in request_id.len (unused by the codec) */
    return &fake.recs[req->request_id.len];
}

static void req_free(pt_req_t *req)
{
    fake_rec_t *r = rec_of(req);
    r->req = NULL;
    fake.live--;
    evbuffer_free(req->body);
    pt_arena_destroy(req->arena);
}

pt_req_t *pt__req_new(pt_worker_t *w, const pt_stream_ops_t *ops, void *stream)
{
    if (fake.rec_cnt == fake.rec_cap) {
        size_t cap = fake.rec_cap ? fake.rec_cap * 2 : 64;
        fake_rec_t *n = realloc(fake.recs, cap * sizeof(*n));
        if (n == NULL)
            abort();
        fake.recs = n;
        fake.rec_cap = cap;
    }
    fake_rec_t *r = &fake.recs[fake.rec_cnt];
    memset(r, 0, sizeof(*r));
    pt_arena_t *a = pt_arena_new(0, 16u * 1024u * 1024u);
    pt_req_t *req = pt_arena_zalloc(a, sizeof(*req));
    req->arena = a;
    req->worker = w;
    req->config = w->config;
    req->ops = ops;
    req->stream = stream;
    req->content_length = -1;
    req->resp_content_length = -1;
    req->scheme = PT_STR("http");
    pt_headers_init(&req->headers, a);
    pt_headers_init(&req->resp_headers, a);
    pt_headers_init(&req->resp_trailers, a);
    req->body = evbuffer_new();
    req->holds = PT_REQ_HOLD_CODEC;
    req->request_id.len = fake.rec_cnt;
    r->req = req;
    fake.rec_cnt++;
    fake.live++;
    return req;
}

static void echo_if_ready(fake_rec_t *r)
{
    pt_req_t *req = r->req;
    if (fake.mode != FAKE_ECHO || req == NULL || !r->headers_done || !req->body_done ||
        pt__resp_started(req))
        return;
    if (fake.trailer_name != NULL)
        pt_headers_add(&req->resp_trailers, pt_str_c(fake.trailer_name),
                       pt_str_c(fake.trailer_value));
    pt_headers_add(&req->resp_headers, PT_STR("x-path"), req->path);
    if (r->body_len != 0) {
        fake_respond(r, 200, (const char *)r->body, r->body_len, fake.echo_repeat <= 1);
        for (size_t i = 1; i < fake.echo_repeat; i++)
            fake_body(r, r->body, r->body_len, i + 1 == fake.echo_repeat);
    } else {
        fake_respond(r, 200, req->path.base, req->path.len, true);
    }
}

void pt__req_headers_done(pt_req_t *req)
{
    fake_rec_t *r = rec_of(req);
    r->headers_done = true;
    copy_str(r->method, sizeof(r->method), req->method);
    copy_str(r->path, sizeof(r->path), req->path);
    copy_str(r->query, sizeof(r->query), req->query);
    copy_str(r->authority, sizeof(r->authority), req->authority);
    copy_str(r->scheme, sizeof(r->scheme), req->scheme);
    size_t off = 0;
    for (size_t i = 0; i < req->headers.cnt && off < sizeof(r->headers) - 1; i++) {
        int n = snprintf(r->headers + off, sizeof(r->headers) - off, "%.*s: %.*s\n",
                         (int)req->headers.v[i].name.len, req->headers.v[i].name.base,
                         (int)req->headers.v[i].value.len, req->headers.v[i].value.base);
        if (n < 0)
            break;
        off += (size_t)n;
        if (off >= sizeof(r->headers))
            off = sizeof(r->headers) - 1;
    }
    r->version = req->version;
    r->content_length = req->content_length;
    r->expect_body = req->expect_body;
    echo_if_ready(r);
}

void pt__req_reject(pt_req_t *req, int st, const char *reason)
{
    (void)reason;
    fake_rec_t *r = rec_of(req);
    r->rejected = st;
    static const char body[] = "{\"error\":\"rejected\"}";
    pt_headers_add(&req->resp_headers, PT_STR("content-type"), PT_STR("application/json"));
    fake_respond(r, pt_status_http(st), body, sizeof(body) - 1, true);
}

void pt__req_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    fake_rec_t *r = rec_of(req);
    if (req->body_done)
        return;
    if (len != 0) {
        unsigned char *nb = realloc(r->body, r->body_len + len);
        if (nb == NULL)
            abort();
        r->body = nb;
        memcpy(r->body + r->body_len, data, len);
        r->body_len += len;
        req->body_received += len;
        if (fake.auto_consume)
            req->ops->body_consumed(req, len);
        else
            evbuffer_add(req->body, data, len);
    }
    if (end) {
        req->body_done = true;
        r->body_end = true;
    }
    echo_if_ready(r);
}

void pt__req_on_writable(pt_req_t *req)
{
    rec_of(req)->writable_calls++;
    req->want_writable = false;
}

void pt__req_codec_done(pt_req_t *req)
{
    fake_rec_t *r = rec_of(req);
    if (!pt__resp_ended(req)) {
        pt__req_abort(req);
        return;
    }
    r->done = true;
    req_free(req);
}

void pt__req_abort(pt_req_t *req)
{
    fake_rec_t *r = rec_of(req);
    r->aborted = true;
    req->aborted = true;
    req_free(req);
}

void fake_respond(fake_rec_t *r, int status, const char *body, size_t len, bool end)
{
    pt_req_t *req = r->req;
    if (req == NULL || pt__resp_started(req))
        return;
    req->resp_status = status;
    if (end)
        req->resp_content_length = (int64_t)len;
    req->resp_state = PT_RESP_STARTED;
    req->ops->send_head(req);
    fake_body(r, body, len, end);
}

void fake_body(fake_rec_t *r, const void *data, size_t len, bool end)
{
    pt_req_t *req = r->req;
    if (req == NULL || pt__resp_ended(req))
        return;
    if (end)
        req->resp_state = PT_RESP_ENDED;
    req->bytes_out += len;
    req->ops->send_body(req, data, len, end);
}

void fake_consume(fake_rec_t *r, size_t len)
{
    pt_req_t *req = r->req;
    if (req == NULL)
        return;
    evbuffer_drain(req->body, len);
    req->ops->body_consumed(req, len);
}

void fake_config_defaults(pt_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->limits = (pt_limits_t){
        .max_request_line = 8192, .max_header_bytes = 64 * 1024, .max_header_count = 100,
        .max_body = 1 << 20, .max_pipeline = 16, .max_requests_per_conn = 1000,
        .max_connections = 10000, .h2_max_streams = 100, .h2_stream_window = 64 * 1024,
        .h2_conn_window = 1 << 20, .h2_reset_burst = 1000, .h2_reset_rate = 33,
        .h2_max_continuations = 8, .h2_glitch_burst = 100, .h2_glitch_rate = 10,
        .max_chunk_ext = 4096, .allow_underscores = false, .merge_slashes = true,
        .max_response_buffer = 256 * 1024,
    };
    cfg->timeouts = (pt_timeouts_t){
        .header_ms = 10000, .body_ms = 30000, .keepalive_ms = 60000, .h2_idle_ms = 60000,
        .send_ms = 30000, .drain_ms = 30000,
    };
}

/* The pt_conn_t handed to the codec, with a way back to its fake_conn_t. */
typedef struct test_conn {
    pt_conn_t conn; /* first: a pt_conn_t * is a test_conn_t * */
    fake_conn_t *fc;
} test_conn_t;

static void test_close(pt_conn_t *conn)
{
    test_conn_t *tc = (test_conn_t *)conn;
    pt_conn_io_release(conn);
    tc->fc->conn = NULL;
    tc->fc->closed = true;
    free(tc);
}

void fake_conn_init(fake_conn_t *fc, const pt_config_t *cfg)
{
    memset(fc, 0, sizeof(*fc));
    fc->base = event_base_new();
    if (cfg != NULL)
        fc->config = *cfg;
    else
        fake_config_defaults(&fc->config);
    fc->worker.base = fc->base;
    fc->worker.config = &fc->config;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    test_conn_t *tc = calloc(1, sizeof(*tc));
    tc->fc = fc;
    pt_conn_t *conn = &tc->conn;
    conn->worker = &fc->worker;
    if (pt_conn_io_init(conn, fc->base, sv[0], NULL) != 0)
        abort();
    snprintf(conn->client_addr_buf, sizeof(conn->client_addr_buf), "127.0.0.1");
    conn->client_addr = pt_str_c(conn->client_addr_buf);
    conn->config = &fc->config;
    conn->close = test_close;
    fc->conn = conn;
    fc->client = bufferevent_socket_new(fc->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    if (fc->client == NULL)
        abort();
    bufferevent_enable(fc->client, EV_READ | EV_WRITE);
}

void fake_conn_run(fake_conn_t *fc, int max_rounds)
{
    /* a round moves bytes one way through the socketpair: the client's
     * bufferevent writes, the server reads and answers, the client reads */
    for (int i = 0; i < max_rounds * 3; i++)
        event_base_loop(fc->base, EVLOOP_NONBLOCK);
}

void fake_conn_run_for(fake_conn_t *fc, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(fc->base, &tv);
    event_base_dispatch(fc->base);
}

void fake_conn_dispose(fake_conn_t *fc)
{
    if (fc->conn != NULL) {
        if (fc->conn->codec_ops != NULL)
            fc->conn->codec_ops->destroy(fc->conn);
        pt_conn_close(fc->conn);
    }
    if (fc->client != NULL)
        bufferevent_free(fc->client);
    fc->client = NULL;
    event_base_free(fc->base);
    fc->base = NULL;
    pt_h2mem_dispose(&fc->worker); /* the session's allocator (http/h2mem.c) */
}
