/* plugin_regress.c -- test filters for test_regress.c; one source, variants by macro (REGRESS_BODYFAIL refuses the body, REGRESS_STATE counts worker_init/dispose). The abort contract (the hook cancels, no resume follows) is tested with test_suspend and test_chain in test_request.c and test_chain.c. */
#include <string.h>
#include "portico/filter.h"
#include "portico/status.h"

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
#elif defined(REGRESS_STATE)
extern void regress_state_event(int init);
static int winit(const pt_filter_t *f, pt_worker_t *w) { pt_worker_filter_state_set(w, f, w); regress_state_event(1); return 0; }
/* counted only when the state set in winit is still found (the filter must be able to free it) */
static void wdispose(const pt_filter_t *f, pt_worker_t *w) { if (pt_worker_filter_state(w, f) == w) regress_state_event(0); }
const pt_filter_def_t pt_filter_def = {
    .abi = PT_FILTER_ABI, .name = "regress_state", .worker_init = winit, .worker_dispose = wdispose,
};
#endif
