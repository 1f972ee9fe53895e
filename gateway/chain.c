/*
 * chain.c -- running the filter chain (see filter.h for the contract).
 *
 * Request-side phases run in chain order from req->chain_pos; every filter
 * whose request side ran is counted in req->chain_ran, and exactly those see
 * the response side, in reverse order, so each filter wraps the ones after
 * it. A local reply (a filter's RESPOND or a gateway error) goes through the
 * same response path.
 */
#include <stdio.h>
#include <string.h>
#include "chain.h"
#include "handler.h"

static void send_local(pt_req_t *req)
{
    /* 1xx is never a final answer: a client would wait for the real one. */
    if (req->resp_status < 200 || req->resp_status > 999) {
        pt__resp_fail(req, PT_ERR_INTERNAL, "filter returned RESPOND without a response");
        return;
    }
    pt__resp_head(req);
    pt__resp_body(req, req->local_body.base, req->local_body.len, true);
}

static void handle_status(pt_req_t *req, pt_fstatus_t st)
{
    switch (st) {
    case PT_FILTER_CONTINUE:
        pt__chain_run(req);
        break;
    case PT_FILTER_RESPOND:
        send_local(req);
        break;
    case PT_FILTER_SUSPEND:
        req->chain_suspended = true;
        req->holds |= PT_REQ_HOLD_CHAIN;
        break;
    default:
        pt__resp_fail(req, req->fail_status != 0 ? req->fail_status : PT_ERR_INTERNAL,
                      req->fail_reason != NULL ? req->fail_reason : "filter failed");
        break;
    }
}

void pt__chain_run(pt_req_t *req)
{
    while (req->chain_pos < req->chain_cnt) {
        size_t i = req->chain_pos++;
        const pt_filter_t *f = req->chain[i];
        req->chain_ran = i + 1;
        if (f->def->on_request_headers == NULL)
            continue;
        pt_fstatus_t st = f->def->on_request_headers(f, req, req->filter_ctx[i]);
        if (st != PT_FILTER_CONTINUE) {
            handle_status(req, st);
            return;
        }
    }
    pt__req_start_handler(req);
}

void pt_chain_resume(pt_req_t *req, pt_fstatus_t st)
{
    /* Not suspended: a second resume, or the abort path already let go. */
    if (!req->chain_suspended || req->aborted)
        return;
    req->chain_suspended = false;
    /* The codec still holds the request (only an abort ends a suspended
     * exchange, and that clears chain_suspended first), so dropping the
     * chain hold cannot finalise it here. */
    req->holds &= ~PT_REQ_HOLD_CHAIN;
    handle_status(req, st);
}

int pt__chain_response_head(pt_req_t *req)
{
    for (size_t i = req->chain_ran; i-- > 0;) {
        const pt_filter_t *f = req->chain[i];
        if (f->def->on_response_headers == NULL)
            continue;
        if (f->def->on_response_headers(f, req, req->filter_ctx[i]) == PT_FILTER_ERROR)
            return PT_ERR_INTERNAL;
    }
    return 0;
}

int pt__chain_response_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    pt_str_t slice = {data, len};
    pt_bufvec_t vec = {&slice, len != 0 ? 1 : 0};
    for (size_t i = req->chain_ran; i-- > 0;) {
        const pt_filter_t *f = req->chain[i];
        if (f->def->on_response_body == NULL)
            continue;
        if (f->def->on_response_body(f, req, req->filter_ctx[i], &vec, end) == PT_FILTER_ERROR)
            return PT_ERR_INTERNAL;
    }
    return 0;
}

int pt__chain_request_body(pt_req_t *req, const void *data, size_t len, bool end)
{
    pt_str_t slice = {data, len};
    pt_bufvec_t vec = {&slice, len != 0 ? 1 : 0};
    for (size_t i = 0; i < req->chain_ran; i++) {
        const pt_filter_t *f = req->chain[i];
        if (f->def->on_request_body == NULL)
            continue;
        if (f->def->on_request_body(f, req, req->filter_ctx[i], &vec, end) != PT_FILTER_CONTINUE)
            return PT_ERR_INTERNAL;
    }
    return 0;
}

void pt__chain_log(pt_req_t *req)
{
    for (size_t i = 0; i < req->chain_ran; i++) {
        const pt_filter_t *f = req->chain[i];
        if (f->def->on_log != NULL)
            f->def->on_log(f, req, req->filter_ctx[i]);
    }
}

/* JSON string body without the quotes; our inputs are short, so a bounded copy is fine. */
static size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

pt_str_t pt__error_body(pt_req_t *req, int st, const char *detail)
{
    char det[512], rid[300];
    int http = pt_status_http(st);
    size_t dn = 0;
    if (http >= 400 && http < 500 && detail != NULL && strcmp(detail, pt_strerror(st)) != 0)
        dn = json_escape(det, sizeof(det), detail, strlen(detail));
    size_t rn = json_escape(rid, sizeof(rid), req->request_id.base != NULL ? req->request_id.base : "",
                            req->request_id.len);
    char *body = pt_arena_printf(req->arena,
                                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"%s%.*s%s,"
                                 "\"request_id\":\"%.*s\"}}\n",
                                 pt_status_name(st), pt_strerror(st), dn ? ",\"detail\":\"" : "",
                                 (int)dn, det, dn ? "\"" : "", (int)rn, rid);
    if (body == NULL)
        return PT_STR("{\"error\":{\"code\":\"INTERNAL\"}}\n");
    return pt_str_c(body);
}
