/*
 * router.h -- picks the route of a request.
 *
 * Routes are tried in config order; the first whose host, path, method and
 * header conditions all hold wins. The router is compiled at config load
 * time (per-host tables, a radix tree of prefixes, a segment trie of
 * templates; router.c) and is immutable; matching allocates only the path
 * parameters, in the request arena.
 */
#ifndef PT_GATEWAY_ROUTER_H
#define PT_GATEWAY_ROUTER_H

#include "core/route.h"
#include "portico/arena.h"
#include "portico/headers.h"

typedef struct pt_config pt_config_t; /* core/config.h */
typedef struct pt_router pt_router_t;

typedef struct pt_route_param {
    pt_str_t name, value;
} pt_route_param_t;

typedef struct pt_route_result {
    const pt_route_t *route;
    pt_route_param_t *params; /* template variables, in the arena */
    size_t param_cnt;
} pt_route_result_t;

/** pt_method_bit of a method written in any case (a config's `methods: [get]`, a SOAP
 * mapping's `get:`): GET, POST ... by their bit; an unknown or over-long token: PT_METHOD_OTHER. */
uint32_t pt__method_bit_anycase(const char *m, size_t len);

/** Compiles `route->match` (templates, host patterns); errors via pt_conf_error. Load time. */
int pt_router_compile_route(pt_conf_cx_t *cx, pt_route_t *route);

/** Builds the router of a snapshot whose routes are compiled. Load time. */
const pt_router_t *pt_router_new(pt_conf_cx_t *cx, const pt_config_t *config);

/**
 * Finds the first matching route. `host` is the authority without port
 * handling applied (the router strips a port and lowercases on its own).
 * Returns 0 and fills *out, or PT_ERR_NOT_FOUND.
 */
int pt_router_match(const pt_router_t *r, pt_str_t method, pt_str_t host, pt_str_t path,
                    const pt_headers_t *headers, pt_arena_t *arena, pt_route_result_t *out);

/** The same answer by a scan of every route in config order (the reference; tests, bench). */
int pt_router_match_linear(const pt_router_t *r, pt_str_t method, pt_str_t host, pt_str_t path,
                           const pt_headers_t *headers, pt_arena_t *arena,
                           pt_route_result_t *out);

/** Bytes of the router's compiled index (per-host tables, prefix tree, template trie). */
size_t pt_router_mem(const pt_router_t *r);

#endif /* PT_GATEWAY_ROUTER_H */
