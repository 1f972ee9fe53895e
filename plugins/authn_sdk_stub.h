/*
 * authn_sdk_stub.h -- TEMPORARY: the declarations of the SDK additions of
 * /work/notes/contracts.md (pt_req_reject, request variables) until the lead
 * lands them in portico/req.h. Delete this file and authn_sdk_stub.c when
 * merging main.
 */
#ifndef PT_PLUGINS_AUTHN_SDK_STUB_H
#define PT_PLUGINS_AUTHN_SDK_STUB_H

#include "portico/req.h"

int pt_req_reject(pt_req_t *req, int st, const char *detail);
int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value);
pt_str_t pt_req_var(pt_req_t *req, pt_str_t name);

#endif
