/*
 * plugin_suspend.c -- a test filter loaded from a shared object: it suspends
 * the chain, waits `delay_ms` on the worker's loop, then continues or denies
 * (403). It exercises the .so loader, SUSPEND/pt_chain_resume and abort
 * hooks, through the plugin SDK alone (portico/async.h timers): it is built
 * with gateway/include only, as a third party's filter would be.
 */
#include <stddef.h>
#include "portico/async.h"
#include "portico/filter.h"

typedef struct sconf {
    long long delay_ms;
    bool deny;
} sconf_t;

typedef struct sctx {
    pt_timer_t *timer;
    pt_req_t *req;
    const sconf_t *conf;
} sctx_t;

static const pt_conf_field_t fields[] = {
    {"delay_ms", PT_CONF_T_INT, offsetof(sconf_t, delay_ms), 0, 10000, false, NULL},
    {"deny", PT_CONF_T_BOOL, offsetof(sconf_t, deny), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void on_timer(void *arg)
{
    sctx_t *c = arg;
    pt_req_t *req = c->req;
    c->timer = NULL; /* fired timers free themselves */
    if (c->conf->deny) {
        pt_req_respond(req, 403, PT_STR("application/json"), PT_STR("{\"denied\":true}"));
        pt_chain_resume(req, PT_FILTER_RESPOND);
    } else {
        pt_headers_set(pt_req_headers(req), PT_STR("x-suspended"), PT_STR("yes"));
        pt_chain_resume(req, PT_FILTER_CONTINUE);
    }
}

static void on_abort(void *data)
{
    sctx_t *c = data;
    pt_timer_cancel(c->timer);
    c->timer = NULL;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    sctx_t *c = ctx;
    c->req = req;
    c->conf = f->conf;
    if (pt_req_on_abort(req, on_abort, c) != 0 ||
        pt_timer_start(pt_req_worker(req), (uint64_t)c->conf->delay_ms, on_timer, c, &c->timer) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "test_suspend: no timer");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_SUSPEND;
}

const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI,
    .name = "test_suspend",
    .conf_size = sizeof(sconf_t),
    .ctx_size = sizeof(sctx_t),
    .fields = fields,
    .on_request_headers = on_request_headers,
};
