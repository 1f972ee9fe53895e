/*
 * route_retry.h -- the route keys of issue 12's traffic management: `retry:`
 * (route_retry.c) and the split of a handler's traffic over clusters
 * (`split:` with `hash_key:` in proxy and grpc handlers; route_split.c).
 */
#ifndef PT_GATEWAY_ROUTE_RETRY_H
#define PT_GATEWAY_ROUTE_RETRY_H

#include "core/cluster.h"
#include "core/route.h"

typedef struct pt_config pt_config_t; /* core/config.h */

/** Parses a route's `retry:` map into *out (snapshot memory). Errors via pt_conf_error. */
int pt_route_retry_parse(pt_conf_cx_t *cx, const pt_conf_node_t *n, const pt_retry_conf_t **out);

#endif /* PT_GATEWAY_ROUTE_RETRY_H */
