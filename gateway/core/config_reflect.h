/*
 * config_reflect.h -- `descriptors:` entries fetched by gRPC server reflection,
 * and the log of what a reload changed in the bound methods (config_reflect.c).
 */
#ifndef PT_GATEWAY_CONFIG_REFLECT_H
#define PT_GATEWAY_CONFIG_REFLECT_H

#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"
#include "portico/conf.h"

typedef struct pt_descpool pt_descpool_t;

#define PT_REFLECT_SCHEME "grpc-reflection://"

/** True when a `descriptors:` entry is a reflection URI. */
bool pt__conf_is_reflection(const char *entry);

/**
 * Fetches the descriptors named by `uri`
 * (`grpc-reflection://CLUSTER[?services=pkg.A,pkg.B][&timeout=5s]`) from the
 * grpc cluster of that name in `c` (already loaded) and adds them to `pool`.
 * Errors are reported at `item` through pt_conf_error().
 */
void pt__conf_descriptors_reflect(pt_conf_cx_t *cx, const pt_conf_node_t *item, const char *uri,
                                  const pt_config_t *c, pt_descpool_t *pool);

/**
 * Writes to `log` one line per difference between the methods bound by the
 * grpc routes of `old` and their descriptors in `nw`: method added or removed,
 * request/response type changed, field removed or changed (type, label,
 * number, name), following message fields. Returns how many lines it wrote.
 */
unsigned pt_config_descriptor_diff(const pt_config_t *old, const pt_config_t *nw, FILE *log);

#endif /* PT_GATEWAY_CONFIG_REFLECT_H */
