/*
 * loopback.c -- the test seam (see loopback.h).
 */
#include <event2/event.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "loopback.h"
#include "core/request.h"
#include "server.h"

typedef struct lb_stream {
    pt_lb_resp_t *out;
    pt_req_t *req;
    bool done;
} lb_stream_t;

static void send_head(pt_req_t *req)
{
    lb_stream_t *s = req->stream;
    s->out->status = req->resp_status;
    s->out->content_length = req->resp_content_length;
    for (size_t i = 0; i < req->resp_headers.cnt && s->out->header_cnt < 128; i++) {
        const pt_header_t *h = &req->resp_headers.v[i];
        s->out->names[s->out->header_cnt] = strndup(h->name.base, h->name.len);
        s->out->values[s->out->header_cnt] = strndup(h->value.base, h->value.len);
        s->out->header_cnt++;
    }
}

static void send_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    lb_stream_t *s = req->stream;
    s->out->body = realloc(s->out->body, s->out->body_len + len + 1);
    if (len != 0)
        memcpy(s->out->body + s->out->body_len, data, len);
    s->out->body_len += len;
    s->out->body[s->out->body_len] = '\0';
    if (len != 0)
        s->out->body_calls++;
    if (end) {
        s->out->ended = true;
        s->done = true;
    }
}

static size_t out_pending(pt_req_t *req)
{
    (void)req;
    return 0;
}

static void body_consumed(pt_req_t *req, size_t len)
{
    (void)req;
    (void)len;
}

static void send_continue(pt_req_t *req)
{
    lb_stream_t *s = req->stream;
    s->out->sent_continue = true;
}

static void reset(pt_req_t *req)
{
    lb_stream_t *s = req->stream;
    s->out->reset = true;
    s->done = true;
}

static const pt_stream_ops_t lb_ops = {
    .send_head = send_head,
    .send_body = send_body,
    .out_pending = out_pending,
    .body_consumed = body_consumed,
    .send_continue = send_continue,
    .reset = reset,
};

void pt_lb_init(pt_lb_t *lb, const char *yaml)
{
    lb->config = pt_config_load_string("loopback.yaml", yaml, strlen(yaml), stderr);
    assert_non_null(lb->config);
    lb->worker = pt__worker_new_detached(lb->config);
}

void pt_lb_dispose(pt_lb_t *lb)
{
    pt__worker_free_detached(lb->worker);
    pt_config_unref(lb->config);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lb_stream_t *s = arg;
    (void)s;
}

int pt_lb_run(pt_lb_t *lb, const char *method, const char *target, const char *const *headers,
              const char *body, size_t body_len, pt_lb_resp_t *out)
{
    memset(out, 0, sizeof(*out));
    lb_stream_t s = {out, NULL, false};
    pt_req_t *req = pt__req_new(lb->worker, &lb_ops, &s);
    s.req = req;
    req->method = pt_arena_strdup(req->arena, pt_str_c(method));
    const char *q = strchr(target, '?');
    size_t plen = q != NULL ? (size_t)(q - target) : strlen(target);
    req->target = pt_arena_strdup(req->arena, pt_str_c(target));
    req->path = pt_arena_strdup(req->arena, (pt_str_t){target, plen});
    req->query = q != NULL ? pt_arena_strdup(req->arena, pt_str_c(q + 1)) : PT_STR("");
    req->version = 11;
    req->client_addr = PT_STR("127.0.0.1");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        pt_headers_add(&req->headers, pt_str_c(headers[i]), pt_str_c(headers[i + 1]));
        if (strcmp(headers[i], "host") == 0)
            req->authority = pt_arena_strdup(req->arena, pt_str_c(headers[i + 1]));
    }
    if (body != NULL) {
        req->content_length = (int64_t)body_len;
        req->expect_body = body_len != 0;
    }
    if (body == NULL || body_len == 0)
        pt__req_body(req, NULL, 0, true); /* as the codecs do for a bodyless request */
    pt__req_headers_done(req);
    if (body != NULL && body_len != 0 && !s.done)
        pt__req_body(req, body, body_len, true);

    struct event *tick = event_new(lb->worker->base, -1, EV_PERSIST, on_tick, &s);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    uint64_t deadline = pt_now_ms() + 10000;
    while (!s.done && pt_now_ms() < deadline)
        event_base_loop(lb->worker->base, EVLOOP_ONCE);
    event_free(tick);
    out->fail_status = req->fail_status;
    if (!s.done) {
        pt__req_abort(req);
        return -1;
    }
    pt__req_codec_done(req);
    /* Let the handler finish its bookkeeping (upstream connection release). */
    event_base_loop(lb->worker->base, EVLOOP_NONBLOCK);
    return 0;
}

const char *pt_lb_header(const pt_lb_resp_t *r, const char *name)
{
    for (size_t i = 0; i < r->header_cnt; i++)
        if (strcmp(r->names[i], name) == 0)
            return r->values[i];
    return NULL;
}

void pt_lb_resp_free(pt_lb_resp_t *r)
{
    for (size_t i = 0; i < r->header_cnt; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

void pt_lb_abort_suspended(pt_worker_t *w, pt_req_t *req, int idle, unsigned run_ms)
{
    struct event_base *base = w->base;
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), idle + 1);
    pt__req_abort(req); /* may free req */
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), idle);
    bool stop = false;
    struct event *t = evtimer_new(base, stop_loop, &stop);
    struct timeval tv = {(time_t)(run_ms / 1000), (suseconds_t)(run_ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!stop)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}
