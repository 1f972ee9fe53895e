/*
 * cors.h -- the one CORS implementation (plugins/cors.c), shared by the
 * `cors` filter and the `web_origins` key of grpc routes.
 *
 * A grpc route's `web_origins` is an alias: the config loader puts an
 * implicit `cors` filter (built by pt_cors_alias_filter_conf) in front of
 * that route's chain unless the chain already has a `cors` filter, so
 * preflights, REST answers, gRPC-Web answers and WebSocket handshakes all go
 * through the same code. Handlers tell the filter which methods a path
 * really has through pt_handler_def_t.cors_methods.
 */
#ifndef PT_PLUGINS_CORS_H
#define PT_PLUGINS_CORS_H

#include <stdbool.h>

#include "portico/conf.h"
#include "portico/filter.h"

extern const pt_filter_def_t pt_filter_cors;

/**
 * The config of the implicit filter for a grpc route's web_origins: those
 * origins (empty: any, "*"), the path's own methods, the requested headers
 * echoed, max-age one day. `web_only`: decorate only gRPC-Web answers (and
 * answer preflights) -- what a grpc route without web_origins has always done.
 * Snapshot memory.
 */
void *pt_cors_alias_conf(pt_conf_cx_t *cx, const pt_conf_strlist_t *origins, bool web_only);

#endif /* PT_PLUGINS_CORS_H */
