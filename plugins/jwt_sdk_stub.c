/* TEMPORARY until main has pt_req_reject / request variables (contracts.md §1); deleted at the merge. */
#include <stdio.h>
#include "jwt_sdk_stub.h"
int pt_req_reject(pt_req_t *req, int st, const char *detail)
{
    char *b = pt_arena_printf(pt_req_arena(req),
                              "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"detail\":\"%s\"}}\n",
                              pt_status_name(st), pt_strerror(st), detail ? detail : "");
    return pt_req_respond(req, pt_status_http(st), PT_STR("application/json"), pt_str_c(b));
}
int pt_req_var_provider(pt_req_t *req, pt_str_t prefix, pt_req_var_fn fn, void *data)
{
    (void)req; (void)prefix; (void)fn; (void)data;
    return 0;
}
