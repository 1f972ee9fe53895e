/* plugin_regress.c -- test filters for test_regress.c; one source, variants by macro (REGRESS_BODYFAIL refuses the body, REGRESS_STATE counts worker_init/dispose, REGRESS_LAZY resumes late). */
#include <event2/event.h>
#include <string.h>
#include "portico/filter.h"
#include "portico/status.h"
#include "worker.h"

#if defined(REGRESS_BODYFAIL)
/* Rejects any request body slice that contains 'X' (a WAF-like body check). */
static pt_fstatus_t on_request_body(const pt_filter_t *f, pt_req_t *req, void *ctx,
                                    const pt_bufvec_t *in, bool end, pt_body_out_t *out)
{
    (void)f; (void)ctx; (void)end;
    for (size_t i = 0; i < in->cnt; i++)
        if (memchr(in->v[i].base, 'X', in->v[i].len) != NULL) {
            pt_req_fail(req, PT_ERR_INVALID, "body rejected by filter");
            return PT_FILTER_ERROR;
        }
    return pt_body_pass(out, in) == 0 ? PT_FILTER_CONTINUE : PT_FILTER_ERROR;
}
const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI, .name = "regress_bodyfail", .on_request_body = on_request_body,
};
#elif defined(REGRESS_LAZY)
/* Suspends for 20 ms; its abort hook does nothing, relying on
 * "pt_chain_resume: No-op after abort" (filter.h). */
typedef struct { struct event *timer; pt_req_t *req; } lctx_t;
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    lctx_t *c = arg; /* ctx lives in the request arena... */
    pt_chain_resume(c->req, PT_FILTER_CONTINUE);
}
static void on_abort(void *d) { (void)d; }
static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    lctx_t *c = ctx;
    static lctx_t keep; /* keep the pointer outside the arena so only req is stale */
    keep.req = req;
    c->req = req;
    keep.timer = evtimer_new(pt_req_worker(req)->base, on_timer, &keep);
    struct timeval tv = {0, 20000};
    evtimer_add(keep.timer, &tv);
    pt_req_on_abort(req, on_abort, c);
    return PT_FILTER_SUSPEND;
}
const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI, .name = "regress_lazy", .ctx_size = sizeof(lctx_t),
    .on_request_headers = on_request_headers,
};
#elif defined(REGRESS_STATE)
extern void regress_state_event(int init);
static int winit(const pt_filter_t *f, pt_worker_t *w) { (void)f; (void)w; regress_state_event(1); return 0; }
static void wdispose(const pt_filter_t *f, pt_worker_t *w) { (void)f; (void)w; regress_state_event(0); }
const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI, .name = "regress_state", .worker_init = winit, .worker_dispose = wdispose,
};
#endif
