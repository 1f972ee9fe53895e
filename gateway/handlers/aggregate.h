/*
 * aggregate.h -- the `aggregate` route handler, shared between its parts (private).
 *
 *   aggregate.c    config, the plan (dependencies, cycles), scheduling, timeouts,
 *                  the composed response, access log and metrics per call
 *   agg_http.c     the `http` call kind (upstream/call.h)
 *   agg_grpc.c     the `grpc` call kind (transcoder + upstream/grpc.h)
 *   agg_tmpl.c     templates `{x}` `{header.x}` `{body.a}` `{call.f[0].g}`
 *   agg_merge.c    select / omit / rename of results
 *
 * A call kind is a small vtable (pt_agg_kind_t): it parses and checks its
 * own map (`http: {...}`, `grpc: {...}`), lists its templates so the plan
 * can find dependencies, and starts / cancels one call. A started call ends
 * with exactly one pt__agg_call_done() (never from inside start()), or is
 * cancelled. A third kind (`soap:`) plugs in the same way.
 */
#ifndef PT_GATEWAY_HANDLERS_AGGREGATE_H
#define PT_GATEWAY_HANDLERS_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/request.h"
#include "handlers/agg_merge.h"
#include "handlers/agg_tmpl.h"
#include "portico/conf.h"

struct json_object;

#define PT_AGG_MAX_CALLS 32
#define PT_AGG_DEFAULT_MAX_RESULT (4u << 20)
#define PT_AGG_JSON_DEPTH 256 /* nesting accepted in a call's JSON answer */

typedef struct pt_agg_call_conf pt_agg_call_conf_t;
typedef struct pt_agg_conf pt_agg_conf_t;
typedef struct pt_agg_run pt_agg_run_t;
typedef struct pt_agg_call pt_agg_call_t;

/** One kind of call (`http`, `grpc`, later `soap`). */
typedef struct pt_agg_kind {
    const char *key; /**< the call's key naming the kind */
    /** Parses the kind's node into a new kind conf (*out, snapshot lifetime). 0 or PT_ERR_INVALID.
     */
    int (*parse)(pt_conf_cx_t *cx, const pt_conf_node_t *node, pt_agg_call_conf_t *cc, void **out);
    /** After the snapshot is parsed: clusters, methods. 0 or PT_ERR_INVALID. */
    int (*check)(pt_conf_cx_t *cx, pt_agg_call_conf_t *cc, const pt_config_t *config);
    /** Calls fn for every template of the call (dependencies, reference checks). */
    void (*each_tmpl)(pt_agg_call_conf_t *cc,
                      void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node), void *ud);
    /**
     * Starts the call. Returns 0 (pt__agg_call_done follows, later, exactly
     * once, unless cancel runs first), or a PT_ERR_* with c->message set
     * (a static or arena string) and no callback.
     */
    int (*start)(pt_agg_call_t *c);
    /** Stops a started call: no pt__agg_call_done afterwards. */
    void (*cancel)(pt_agg_call_t *c);
    void (*dispose)(void *kconf);
} pt_agg_kind_t;

/** A call as configured. */
struct pt_agg_call_conf {
    const char *name;
    unsigned index;
    const pt_agg_kind_t *kind;
    void *kconf; /**< the kind's conf */
    bool optional;
    uint64_t timeout_ms;            /**< 0: the aggregate's remaining time */
    pt_conf_strlist_t copy_headers; /**< lowercase names */
    pt_agg_shape_t shape;
    uint32_t deps; /**< bit set of the calls its templates name */
    const pt_conf_node_t *node;
    const pt_conf_node_t *kind_node;
};

/** The route's `aggregate:`. */
struct pt_agg_conf {
    uint64_t timeout_ms; /**< whole aggregate (0: the route's, else 15 s) */
    uint64_t max_result; /**< bytes of one call's result (4 MiB) */
    pt_agg_call_conf_t *calls;
    size_t call_cnt;
    uint32_t flatten; /**< bit set of calls merged into the top level */
    bool uses_body;   /**< some template reads `{body...}` */
    const pt_config_t *config;
    const pt_route_t *route;
    char route_name[64];
};

typedef enum pt_agg_state {
    PT_AGG_WAITING = 0, /**< for its dependencies */
    PT_AGG_RUNNING,
    PT_AGG_OK,
    PT_AGG_FAILED,
} pt_agg_state_t;

/** One call of one request (in the request's arena). */
struct pt_agg_call {
    pt_agg_run_t *run;
    const pt_agg_call_conf_t *conf;
    pt_agg_state_t state;
    void *kstate; /**< the kind's per-call state */
    uint64_t t0_ns, t1_ns;
    const char *upstream; /**< endpoint URL, for the log */
    /* result */
    struct json_object *result; /**< parsed result (owned), when OK */
    int status;                 /**< HTTP status: the upstream's, or the failure's */
    int fail;                   /**< PT_ERR_* when Portico ended it, else 0 */
    const char *message;        /**< failure text for `errors` (arena or static) */
    pt_str_t error_body;        /**< an upstream 4xx's JSON error (arena), passed through */
    pt_headers_t copied;        /**< copy_headers found in the answer */
};

/* ---- called by the kinds ------------------------------------------------------ */

/** The request of a call's aggregate. */
pt_req_t *pt__agg_req(const pt_agg_call_t *c);

/** The aggregate's configuration. */
const pt_agg_conf_t *pt__agg_conf(const pt_agg_call_t *c);

/** The aggregate's remaining time for a call, in ms (never 0), the call's own timeout applied. */
uint64_t pt__agg_call_timeout(const pt_agg_call_t *c);

/**
 * Parses buf[0..len) as one strict JSON document (RFC 8259; nothing but
 * blanks after it) with the request's parser. Returns the value (a new
 * reference; NULL for JSON null or an all-blank body) with *ok true, or NULL
 * with *ok false when it is not JSON or nests deeper than PT_AGG_JSON_DEPTH.
 */
struct json_object *pt__agg_parse_json(pt_agg_run_t *run, const char *buf, size_t len, bool *ok);

/** The template lookup for this request (for pt_agg_tmpl_render / pt_agg_jtmpl_render). */
pt_agg_val_t pt__agg_lookup(void *run, const pt_agg_ref_t *ref);

/** Renders a text template of a call into the arena; NULL with c->message/status set (400/502). */
const char *pt__agg_render(pt_agg_call_t *c, const pt_agg_tmpl_t *t, pt_agg_enc_t enc);

/** Renders a JSON template of a call (a new json-c reference); NULL with c->message set. */
struct json_object *pt__agg_render_json(pt_agg_call_t *c, const pt_agg_jtmpl_t *j);

/**
 * A kind's start could not start its upstream call (`rc`, a PT_ERR_*): counts
 * it for `cluster`, sets c->message; returns rc (for `return pt__agg_start_failed(...)`).
 */
int pt__agg_start_failed(pt_agg_call_t *c, const pt_cluster_t *cluster, int rc);

/** Keeps the response headers named by copy_headers (copied into the arena). */
void pt__agg_copy_headers(pt_agg_call_t *c, const pt_header_t *h, size_t cnt);

/**
 * The call ended. On success set c->result (and c->status) first; on
 * failure c->status (HTTP), c->message, and c->fail (a PT_ERR_* when
 * Portico ended the call) or c->error_body. Runs on the worker, outside the
 * kind's start(); the kind must not touch `c` afterwards.
 */
void pt__agg_call_done(pt_agg_call_t *c, bool ok);

/**
 * A JSON template from a config node (a map, sequence or scalar): plain
 * scalars keep their YAML type, strings with `{...}` become templates.
 * Returns NULL after reporting errors. Freed with pt_agg_jtmpl_free.
 */
pt_agg_jtmpl_t *pt__agg_jtmpl_from_node(pt_conf_cx_t *cx, const pt_conf_node_t *n);

/** Names (lowercased) with text templates: a call's `headers:` or `metadata:`. */
typedef struct pt_agg_tmap {
    char **names;          /**< snapshot memory */
    pt_agg_tmpl_t *values; /**< malloc: pt__agg_tmap_dispose */
    size_t cnt;
    const pt_conf_node_t *node;
} pt_agg_tmap_t;

/**
 * Parses the map `node` (NULL: empty) into `out`; a name `allowed` refuses is
 * an error "WHAT: 'name' cannot be set on a call". 0 or PT_ERR_INVALID.
 */
int pt__agg_tmap_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *what,
                       bool (*allowed)(const char *lname), pt_agg_tmap_t *out);

/** Calls fn for each template of `m` (with the node of its value). */
void pt__agg_tmap_each(pt_agg_tmap_t *m, void (*fn)(void *ud, pt_agg_tmpl_t *t, const void *node),
                       void *ud);

void pt__agg_tmap_dispose(pt_agg_tmap_t *m);

/** A text template from a scalar node; 0 or PT_ERR_INVALID (reported at the node). */
int pt__agg_tmpl_from_node(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_agg_tmpl_t *out);

extern const pt_agg_kind_t pt_agg_kind_http;
extern const pt_agg_kind_t pt_agg_kind_grpc;

#endif /* PT_GATEWAY_HANDLERS_AGGREGATE_H */
