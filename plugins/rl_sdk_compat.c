/*
 * rl_sdk_compat.c -- TEMPORARY stand-ins for the SDK additions of
 * /work/notes/contracts.md (pt_req_reject, pt_req_var) until the lead's land
 * on main; weak, so the real ones win. Deleted when main is merged.
 */
#include "core/chain.h"
#include "rl_sdk_compat.h"

__attribute__((weak)) int pt_req_reject(pt_req_t *req, int st, const char *detail)
{
    pt_str_t body = pt__error_body(req, st, detail);
    return pt_req_respond(req, pt_status_http(st), PT_STR("application/json"), body);
}

__attribute__((weak)) pt_str_t pt_req_var(pt_req_t *req, pt_str_t name)
{
    (void)req;
    (void)name;
    return PT_STR_NULL;
}

__attribute__((weak)) int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value)
{
    (void)req;
    (void)name;
    (void)value;
    return 0;
}
