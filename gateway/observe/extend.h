/*
 * extend.h -- admin endpoints and metrics registered by filters
 * (portico/admin.h), as the admin listener uses them (private).
 */
#ifndef PT_GATEWAY_EXTEND_H
#define PT_GATEWAY_EXTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct pt_config pt_config_t;
struct evhttp_request;

/** Answers `r` when its path (uri[0..plen)) was registered by a filter of `c`; else false. */
bool pt__ext_admin_request(const pt_config_t *c, struct evhttp_request *r, const char *uri,
                           size_t plen);

/** Writes the filters' metrics of `c` to `f`. */
void pt__ext_metrics(const pt_config_t *c, FILE *f);

#endif /* PT_GATEWAY_EXTEND_H */
