/* TEMPORARY (waf branch) stand-in for the lead's reqvar.c (contracts.md 1); deleted on merging main. */
#include <stdio.h>
#include <string.h>
#include "core/request.h"
#include "portico/status.h"

static pt_str_t g_unused;

int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value)
{
    (void)name;
    req->stub_var = pt_arena_strdup(req->arena, value);
    return 0;
}

pt_str_t pt_req_var(pt_req_t *req, pt_str_t name)
{
    (void)g_unused;
    return pt_str_eq(name, PT_STR("waf")) ? req->stub_var : PT_STR_NULL;
}

int pt_req_reject(pt_req_t *req, int st, const char *detail)
{
    char *b = pt_arena_printf(req->arena, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"detail\":\"%s\"}}",
                              pt_status_name(st), pt_strerror(st), detail);
    pt_req_fail(req, st, "refused");
    return pt_req_respond(req, pt_status_http(st), PT_STR("application/json"), pt_str_c(b));
}
