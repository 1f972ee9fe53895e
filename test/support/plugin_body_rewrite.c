/*
 * plugin_body_rewrite.c -- a test filter built against the SDK headers only:
 * it rewrites the request body before the upstream call (every `from`
 * becomes `to`, also across chunk boundaries) and refuses a body containing
 * `deny` with 400. With `check_delay_ms` it suspends before each piece it
 * processes (standing for an asynchronous body check), exercising SUSPEND in
 * the request-body phase: the chain calls it again with the same bytes.
 *
 *   - test_rewrite: { from: cat, to: tiger, deny: forbidden, check_delay_ms: 0 }
 *
 * In a route with `request_buffering: true` the refusal comes before anything
 * reaches the upstream, and the upstream gets the exact new Content-Length;
 * otherwise the body streams upstream without Content-Length.
 */
#include <stdlib.h>
#include <string.h>
#include "portico/async.h"
#include "portico/filter.h"

typedef struct rconf {
    const char *from, *to, *deny;
    long long check_delay_ms;
} rconf_t;

typedef struct rctx {
    char *carry;      /* tail that may start a match continued by the next piece */
    size_t carry_len;
    bool checked;     /* the delay for the current piece happened */
    pt_req_t *req;
    pt_timer_t *timer;
} rctx_t;

static const pt_conf_field_t fields[] = {
    {"from", PT_CONF_T_STR, offsetof(rconf_t, from), 0, 0, true, NULL},
    {"to", PT_CONF_T_STR, offsetof(rconf_t, to), 0, 0, true, NULL},
    {"deny", PT_CONF_T_STR, offsetof(rconf_t, deny), 0, 0, false, NULL},
    {"check_delay_ms", PT_CONF_T_INT, offsetof(rconf_t, check_delay_ms), 0, 10000, false, NULL},
    PT_CONF_FIELDS_END,
};

static int check_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    const rconf_t *c = conf;
    if (c->from[0] == '\0')
        return pt_conf_error(cx, pt_conf_map_get(node, "from"), "test_rewrite: from is empty");
    if (c->deny != NULL && c->deny[0] == '\0')
        return pt_conf_error(cx, pt_conf_map_get(node, "deny"), "test_rewrite: deny is empty");
    return 0;
}

static void on_abort(void *data)
{
    rctx_t *c = data;
    pt_timer_cancel(c->timer);
    c->timer = NULL;
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    rctx_t *c = ctx;
    free(c->carry);
    c->carry = NULL;
}

static void checked(void *data)
{
    rctx_t *c = data;
    c->timer = NULL;
    pt_chain_resume(c->req, PT_FILTER_CONTINUE);
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const rconf_t *conf = f->conf;
    if (strlen(conf->from) != strlen(conf->to))
        pt_req_set_body_length(req, -1); /* the length changes: no Content-Length upstream */
    return pt_req_on_abort(req, on_abort, ctx) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}

static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    const rconf_t *conf = f->conf;
    rctx_t *c = ctx;
    if (conf->check_delay_ms > 0 && !c->checked) {
        c->checked = true;
        c->req = req;
        if (pt_timer_start(pt_req_worker(req), (uint64_t)conf->check_delay_ms, checked, c,
                           &c->timer) != 0)
            return PT_FILTER_ERROR;
        return PT_FILTER_SUSPEND; /* not consumed: called again with `in` */
    }
    c->checked = false;

    size_t n = c->carry_len;
    for (size_t i = 0; i < in->cnt; i++)
        n += in->v[i].len;
    char *data = malloc(n != 0 ? n : 1);
    if (data == NULL)
        return PT_FILTER_ERROR;
    if (c->carry_len != 0)
        memcpy(data, c->carry, c->carry_len);
    size_t at = c->carry_len;
    for (size_t i = 0; i < in->cnt; i++) {
        memcpy(data + at, in->v[i].base, in->v[i].len);
        at += in->v[i].len;
    }
    size_t flen = strlen(conf->from), tlen = strlen(conf->to);
    size_t dlen = conf->deny != NULL ? strlen(conf->deny) : 0;
    if (dlen != 0 && n >= dlen)
        for (size_t i = 0; i + dlen <= n; i++)
            if (memcmp(data + i, conf->deny, dlen) == 0) {
                free(data);
                pt_req_fail(req, PT_ERR_INVALID, "the body contains a denied word");
                return PT_FILTER_ERROR;
            }
    /* Keep the last max(flen, dlen) - 1 bytes unless this is the end: they may
     * start a match that the next piece completes. */
    size_t keep = (flen > dlen ? flen : dlen) - 1;
    size_t limit = end ? n : (n > keep ? n - keep : 0);
    size_t i = 0, run = 0;
    int rc = 0;
    while (i < limit && rc == 0) {
        if (i + flen <= n && memcmp(data + i, conf->from, flen) == 0) {
            rc = pt_body_write(out, data + run, i - run);
            if (rc == 0)
                rc = pt_body_write(out, conf->to, tlen);
            i += flen;
            run = i;
        } else {
            i++;
        }
    }
    if (rc == 0)
        rc = pt_body_write(out, data + run, i - run);
    free(c->carry);
    c->carry = NULL;
    c->carry_len = n - i;
    if (c->carry_len != 0) {
        c->carry = malloc(c->carry_len);
        if (c->carry == NULL)
            rc = -1;
        else
            memcpy(c->carry, data + i, c->carry_len);
    }
    free(data);
    return rc == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "test_rewrite",
    .conf_size = sizeof(rconf_t),
    .ctx_size = sizeof(rctx_t),
    .fields = fields,
    .check_conf = check_conf,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_log = on_log,
};
