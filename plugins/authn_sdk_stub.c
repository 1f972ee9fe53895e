/* TEMPORARY stand-in for the lead's pt_req_reject / request variables (see authn_sdk_stub.h). */
#include <stdio.h>

#include "plugins/authn_sdk_stub.h"

int pt_req_reject(pt_req_t *req, int st, const char *detail)
{
    char *body = pt_arena_printf(pt_req_arena(req),
                                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"detail\":\"%s\"}}",
                                 pt_status_name(st), pt_strerror(st), detail != NULL ? detail : "");
    return pt_req_respond(req, pt_status_http(st), PT_STR("application/json"),
                          pt_str_c(body != NULL ? body : "{}"));
}

int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value)
{
    (void)req, (void)name, (void)value;
    return 0;
}

pt_str_t pt_req_var(pt_req_t *req, pt_str_t name)
{
    (void)req, (void)name;
    return PT_STR_NULL;
}
