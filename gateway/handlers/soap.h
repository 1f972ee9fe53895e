/*
 * soap.h -- calling a WSDL operation with JSON, for the `soap` route handler
 * and for anything else that needs one SOAP call (an aggregate's step).
 *
 * A `soap:` route loads its WSDL at config load (a pt_soap_target_t in the
 * route's handler conf, released with the snapshot): the WSDL, port and
 * operations while the routes are parsed, so any check_conf can look them up
 * whatever the order of routes; the cluster in its own check_conf. pt_soapcall_start()
 * then does one call: JSON (+ text bindings) -> envelope -> the upstream call
 * primitive (upstream/call.h: the cluster's pools, endpoint policy, retries
 * on connect failure, timeout) -> the answer streamed into the envelope
 * parser (never held whole: over the target's max_response the call is
 * stopped) -> JSON of the output, JSON of a fault, or an error.
 *
 *   const pt_soap_target_t *t = pt_soap_target_of(config, "crm");   // route name
 *   const pt_soap_op_t *op = pt_soap_target_op(t, "GetCustomer", 11);
 *   pt_soapcall_start(w, t, op, json, len, NULL, 0, &opts, on_result, ud, &call, &errs);
 *
 * Contract (upstream/call.h's, libuv's): pt_soapcall_start() either returns
 * an error and never calls `cb`, or returns 0 and later calls `cb` exactly
 * once on the same worker, from the event loop (never inside
 * pt_soapcall_start), unless pt_soapcall_cancel() is called first, after
 * which nothing runs. The call frees itself after `cb` returns: do not
 * cancel it from or after `cb`.
 */
#ifndef PT_GATEWAY_HANDLERS_SOAP_H
#define PT_GATEWAY_HANDLERS_SOAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "net/worker.h"
#include "portico/str.h"
#include "portico/transcoder/soap.h"

/** A loaded `soap:` route: WSDL model, chosen port, cluster, upstream path, WS-Security. */
typedef struct pt_soap_target pt_soap_target_t;

/**
 * The target of the `soap` route named `route_name` in `config`, or NULL when
 * there is no such route or it is not a `soap` route. The result lives as
 * long as the snapshot (hold a reference to `config` while using it).
 */
const pt_soap_target_t *pt_soap_target_of(const pt_config_t *config, const char *route_name);

/** The operation `name[0..len)` of the target's port, or NULL. */
const pt_soap_op_t *pt_soap_target_op(const pt_soap_target_t *t, const char *name, size_t len);

/** The SOAP port the target calls (service, port, binding, version, operations). */
const pt_soap_port_t *pt_soap_target_port(const pt_soap_target_t *t);

/** The cluster the target calls (for metrics); NULL before the snapshot's checks ran. */
const pt_cluster_t *pt_soap_target_cluster(const pt_soap_target_t *t);

typedef struct pt_soapcall pt_soapcall_t;

/** Per-call options; all-zero means defaults. */
typedef struct pt_soapcall_opts {
    uint64_t timeout_ms;  /**< whole exchange; 0 = the target's `timeout`, else the cluster's */
    pt_str_t request_id;  /**< sent upstream as X-Request-Id when not empty (copied) */
    const struct pt_trace *trace; /**< the traced request (observe/trace.h): a child traceparent is sent */
    pt_str_t tracestate;  /**< the request's tracestate, sent with it when not empty (copied) */
} pt_soapcall_opts_t;

/** The outcome handed to the callback. Everything in it is valid during the callback only. */
typedef struct pt_soapcall_res {
    /**
     * 0: the service answered with the declared output (http_status 200) or a
     * SOAP fault (http_status 4xx/5xx as pt_soap_result_t says); `json` holds
     * the output object or the fault's {"error":{...}}.
     * Else a PT_ERR_* and no JSON: PT_ERR_UPSTREAM (502: connection failed or
     * reset, or the answer was not XML / not SOAP / too large / not the
     * declared output -- `detail` names what), PT_ERR_UNAVAILABLE (503: no
     * endpoint could be reached), PT_ERR_OVERLOADED (503: Portico's own
     * resources), PT_ERR_TIMEOUT (504).
     */
    int st;
    int http_status;
    pt_soap_outcome_t outcome; /**< OUTPUT or FAULT when st == 0, else BAD */
    const uint8_t *json;
    size_t json_len;
    /** st != 0: what was wrong, our own words, fit for a client ("upstream answer is not XML: ..."). */
    const char *detail;
    /** st != 0: the internal reason, for logs only (may name transport details). */
    const char *reason;
    const char *endpoint; /**< endpoint URL of the last attempt, or NULL (config memory) */
    void *_buf; /**< the call's JSON buffer (pt_soapcall_take_json) */
} pt_soapcall_res_t;

/**
 * During the callback: takes `json` out of the call, to be released with
 * pt_soapcall_json_release (e.g. handed to pt__resp_body_owned); NULL when it
 * cannot be taken (no JSON, or it is not the call's buffer). res->json stays
 * readable until released.
 */
uint8_t *pt_soapcall_take_json(const pt_soapcall_res_t *res);

/** Releases what pt_soapcall_take_json gave (a pt_body_release_fn). */
void pt_soapcall_json_release(const void *data, size_t len, void *arg);

typedef void (*pt_soapcall_cb)(void *ud, const pt_soapcall_res_t *res);

/**
 * Starts calling `op` (an operation of `t`'s port) on worker `w` with the
 * JSON object `json[0..len)` (NULL/0: {}) and `n` text bindings (path and
 * query variables, as pt_soap_build_request). Everything passed is copied or
 * used before the return, except `t` and `op`, which must outlive the call
 * (the snapshot does). Returns 0 and sets *out; or PT_ERR_INVALID when the
 * JSON does not fit the operation's input (each problem in `errs` with its
 * JSON path, when `errs` is not NULL), PT_ERR_LIMIT (the envelope would be
 * too large), PT_ERR_NOMEM, or what pt_upcall_start() returns
 * (PT_ERR_UNAVAILABLE, PT_ERR_OVERLOADED, ...). Worker thread only.
 */
int pt_soapcall_start(pt_worker_t *w, const pt_soap_target_t *t, const pt_soap_op_t *op,
                      const char *json, size_t len, const pt_soap_binding_t *b, size_t n,
                      const pt_soapcall_opts_t *opts, pt_soapcall_cb cb, void *ud,
                      pt_soapcall_t **out, pt_xerrs_t *errs);

/** Cancels a call whose callback has not run; nothing runs afterwards and it is freed. */
void pt_soapcall_cancel(pt_soapcall_t *c);

/** Cancels *call if it is running and clears it first (the twin of pt_upcall_stop). */
static inline void pt_soapcall_stop(pt_soapcall_t **call)
{
    pt_soapcall_t *c = *call;
    if (c != NULL) {
        *call = NULL; /* cleared first: nothing may reach a cancelled call */
        pt_soapcall_cancel(c);
    }
}

#endif /* PT_GATEWAY_HANDLERS_SOAP_H */
