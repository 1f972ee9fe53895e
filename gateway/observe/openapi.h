/*
 * openapi.h -- the OpenAPI 3.1 document of a configuration, and its explorer.
 *
 * The admin listener serves GET /openapi.json, /openapi.yaml and /docs
 * (admin.c). The document is built from the live snapshot:
 *
 *   - every `grpc` route's REST bindings (google.api.http, and the default
 *     POST /pkg.Svc/Method ones with default_bindings) from its route table
 *     and the descriptor pool: paths with their variables, query parameters
 *     for the fields neither the path nor the body carries, header_bindings
 *     as header parameters, the request body, the answer in each framing the
 *     gateway serves, and google.rpc.Status for errors; schemas in
 *     components.schemas by the proto3 JSON mapping and the route's JSON
 *     options (proto_names, enums_as_ints);
 *   - every `soap` route's operations (POST <prefix><Operation>) and REST
 *     mappings, schemas from the WSDL's XSD types (soap_schema.h);
 *   - proxy, aggregate and other routes are not listed: their API is the
 *     upstream's, which Portico does not know.
 *
 * The builder below is usable without a snapshot (unit tests); the admin uses
 * pt_openapi_from_config() and caches the result per config generation.
 */
#ifndef PT_GATEWAY_OBSERVE_OPENAPI_H
#define PT_GATEWAY_OBSERVE_OPENAPI_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "core/config.h"
#include "portico/conf.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/json.h"
#include "portico/transcoder/soap.h"

/** `openapi: { title, version, description, server }` (top level of the config). */
int pt_openapi_conf_load(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_openapi_conf_t *out);

typedef struct pt_openapi pt_openapi_t;

/** A new document; NULL strings take defaults ("Portico", "1"). NULL when out of memory. */
pt_openapi_t *pt_openapi_new(const char *title, const char *version, const char *description,
                             const char *server_url);

/** How a grpc route serves its bindings (the parts of pt_grpc_conf_t the document shows). */
typedef struct pt_openapi_grpc {
    const pt_httprule_table_t *table;
    pt_json_opts_t jopts;
    const char *stream_format;     /**< "json" (NULL), "ndjson" or "sse": the default framing */
    const pt_conf_strmap_t *header_bindings; /**< header -> field path, or NULL */
    const char *route;             /**< route name, for x-portico-route */
    const char *prefix;            /**< the route's match prefix (bindings outside it are left out), or NULL */
    const char *exact;             /**< the route's exact path, or NULL */
    /** The route's other conditions (methods, hosts, headers), or NULL: bindings whose verb the
     * route does not take are left out, its headers become required header parameters (the
     * explorer sends them), its hosts are listed as `x-portico-hosts`. */
    const pt_route_match_t *match;
} pt_openapi_grpc_t;

/** Adds the bindings of one grpc route. Returns 0 or PT_ERR_NOMEM. */
int pt_openapi_add_grpc(pt_openapi_t *o, const pt_openapi_grpc_t *g);

/**
 * Adds the operations of one soap route's port: POST <prefix><Operation>, and
 * the REST mappings in `operations` (the route's raw `operations:` map, as the
 * soap handler validated it; NULL when none). Returns 0 or PT_ERR_NOMEM.
 */
int pt_openapi_add_soap(pt_openapi_t *o, const pt_soap_port_t *port, const char *prefix,
                        const pt_conf_node_t *operations, const char *route,
                        const pt_route_match_t *match);

/** Finishes and frees the builder: the document (json_object_put() it), or NULL on error. */
struct json_object *pt_openapi_finish(pt_openapi_t *o);

/** The document of a snapshot (`server_url` NULL: from `openapi.server` or the first listener). */
struct json_object *pt_openapi_from_config(const pt_config_t *c, const char *server_url);

/** YAML text of a JSON tree (libyaml's emitter); malloc'd, *len set. NULL on error. */
char *pt_openapi_yaml(struct json_object *doc, size_t *len);

/**
 * The admin's cached text of the document (JSON or YAML) for snapshot `c`,
 * rebuilt when the config generation or the server URL changes; `host` is the
 * admin request's Host header (used when the listener address is a wildcard).
 * Main thread only. NULL when out of memory.
 */
const char *pt_openapi_cached(const pt_config_t *c, const char *host, bool yaml, size_t *len);

/** Milliseconds the last document build took (for the X-Portico-Build-Ms header). */
double pt_openapi_cached_build_ms(void);

/** Frees the cache (admin stop). */
void pt_openapi_cache_free(void);

/** The /docs page (observe/docs.html, embedded at build time). */
extern const unsigned char pt_docs_html[];
extern const size_t pt_docs_html_len;

#endif /* PT_GATEWAY_OBSERVE_OPENAPI_H */
