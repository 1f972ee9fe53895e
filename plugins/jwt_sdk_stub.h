/* TEMPORARY until main has pt_req_reject / request variables (contracts.md §1); deleted at the merge. */
#ifndef PT_PLUGINS_JWT_SDK_STUB_H
#define PT_PLUGINS_JWT_SDK_STUB_H
#include "portico/req.h"
int pt_req_reject(pt_req_t *req, int st, const char *detail);
typedef pt_str_t (*pt_req_var_fn)(pt_req_t *req, void *data, pt_str_t rest);
int pt_req_var_provider(pt_req_t *req, pt_str_t prefix, pt_req_var_fn fn, void *data);
#endif
