/* rl_sdk_compat.h -- TEMPORARY: declarations of /work/notes/contracts.md until main has them. */
#ifndef PT_PLUGINS_RL_SDK_COMPAT_H
#define PT_PLUGINS_RL_SDK_COMPAT_H
#include "portico/req.h"
int pt_req_reject(pt_req_t *req, int st, const char *detail);
pt_str_t pt_req_var(pt_req_t *req, pt_str_t name);
int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value);
#endif
