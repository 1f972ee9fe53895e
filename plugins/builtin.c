/*
 * builtin.c -- the table of filters compiled into Portico.
 *
 * Adding a built-in filter: write plugins/<name>.c defining
 * `const pt_filter_def_t pt_filter_<name>`, list it here and in
 * PT_CORE_SOURCES_PLUGINS. The order below means nothing at run time: the
 * global chain is ordered by priority, a route's chain by its config.
 */
#include "core/filter_registry.h"

extern const pt_filter_def_t pt_filter_headers;
extern const pt_filter_def_t pt_filter_rewrite;
extern const pt_filter_def_t pt_filter_xml_json;
extern const pt_filter_def_t pt_filter_jwt;
extern const pt_filter_def_t pt_filter_api_key;   /* issue 11 (authn) */
extern const pt_filter_def_t pt_filter_ip_access;
extern const pt_filter_def_t pt_filter_cors;
extern const pt_filter_def_t pt_filter_compress; /* issue 13 (edge) */
extern const pt_filter_def_t pt_filter_waf;
extern const pt_filter_def_t pt_filter_rate_limit; /* issue 11 (rl) */
extern const pt_filter_def_t pt_filter_quota;      /* issue 11 (rl) */
extern const pt_filter_def_t pt_filter_oauth2_introspection; /* issue 11 (rl) */
extern const pt_filter_def_t pt_filter_cache; /* issue 13 (cache) */

const pt_filter_def_t *const pt_builtin_filters[] = {
    &pt_filter_headers,
    &pt_filter_rewrite,
    &pt_filter_xml_json,
    &pt_filter_jwt,
    &pt_filter_api_key,
    &pt_filter_ip_access,
    &pt_filter_cors,
    &pt_filter_compress,
    &pt_filter_waf,
    &pt_filter_rate_limit,
    &pt_filter_quota,
    &pt_filter_oauth2_introspection,
    &pt_filter_cache,
    NULL,
};
