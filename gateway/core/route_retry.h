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

typedef struct pt_req pt_req_t; /* portico/req.h */

/** Parses a route's `retry:` map into *out (snapshot memory). Errors via pt_conf_error. */
int pt_route_retry_parse(pt_conf_cx_t *cx, const pt_conf_node_t *n, const pt_retry_conf_t **out);

/** A per-thread xorshift64 generator (jitter, weighted picks; not for secrets). */
uint64_t pt_route_rand(void);

/**
 * A handler's traffic split (`split:` list of { cluster: NAME, weight: N },
 * `hash_key:` client_ip | "header:NAME" | "cookie:NAME"). Parsed by the
 * handler's parse_conf (pt_split_parse), resolved by its check_conf
 * (pt_split_resolve), then immutable: pt_split_pick() from any worker.
 */
typedef struct pt_split pt_split_t;

/**
 * Parses `split` (the list) and `hash_key` (may be NULL) of handler `who`
 * ("proxy", "grpc") into *out. `cluster_given`: the handler also names a
 * `cluster` (an error: one or the other).
 */
int pt_split_parse(pt_conf_cx_t *cx, const char *who, const pt_conf_node_t *split,
                   const pt_conf_node_t *hash_key, bool cluster_given, pt_split_t **out);

/**
 * Resolves the clusters of `s` in `config`: every one must exist, have
 * endpoints, and all be of one protocol, `proto`. *first: the first target
 * (the handler's default cluster for checks and metrics before a pick).
 */
int pt_split_resolve(pt_conf_cx_t *cx, const char *who, pt_split_t *s, const pt_config_t *config,
                     pt_proto_t proto, const pt_cluster_t **first);

/**
 * The cluster for `req`: by the hash of its `hash_key` value when the
 * request has one (the same value always gets the same cluster while the
 * split is unchanged), else weighted random.
 */
const pt_cluster_t *pt_split_pick(const pt_split_t *s, const pt_req_t *req);

#endif /* PT_GATEWAY_ROUTE_RETRY_H */
