/*
 * req.h -- what filters and handlers see of a request.
 *
 * pt_req_t is the one request object for every protocol: the HTTP/1.1 and
 * HTTP/2 codecs fill it, nothing above them knows which one did. A request
 * lives on one worker; every function here must be called on that worker.
 * Slices returned here live in the request arena and stay valid until the
 * request is finalised (after the log phase).
 */
#ifndef PT_PORTICO_REQ_H
#define PT_PORTICO_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include "portico/arena.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "portico/str.h"

typedef struct pt_req pt_req_t;
typedef struct pt_worker pt_worker_t;

/* ---- the request as received ------------------------------------------- */

/** Method token as sent ("GET"). */
pt_str_t pt_req_method(const pt_req_t *req);
/** Path, percent-decoding untouched, normalised (dot segments removed), without the query. */
pt_str_t pt_req_path(const pt_req_t *req);
/** Query string without the '?', or empty. */
pt_str_t pt_req_query(const pt_req_t *req);
/** Authority: HTTP/2 :authority, or the HTTP/1.1 Host header (without validation changes). */
pt_str_t pt_req_authority(const pt_req_t *req);
/** "http" or "https", as seen by the client. */
pt_str_t pt_req_scheme(const pt_req_t *req);
/** 10, 11 or 20. */
int pt_req_http_version(const pt_req_t *req);
/** Request headers, lowercase names; mutable by request-side filters. */
pt_headers_t *pt_req_headers(pt_req_t *req);
/** The client's address as text ("127.0.0.1" or "::1"). */
pt_str_t pt_req_client_addr(const pt_req_t *req);
/** The request id (kept from a valid client X-Request-Id, else generated). */
pt_str_t pt_req_id(const pt_req_t *req);
/** A route path parameter ("{id}" in a template route), or PT_STR_NULL. */
pt_str_t pt_req_param(const pt_req_t *req, pt_str_t name);
/** Request-lifetime memory. */
pt_arena_t *pt_req_arena(pt_req_t *req);
/** The worker running this request. */
pt_worker_t *pt_req_worker(pt_req_t *req);

/* ---- changes made by request-side filters ------------------------------ */

/** Method bits: route matching, pt_req_allowed_methods(). */
enum {
    PT_METHOD_GET = 1u << 0, PT_METHOD_HEAD = 1u << 1, PT_METHOD_POST = 1u << 2,
    PT_METHOD_PUT = 1u << 3, PT_METHOD_DELETE = 1u << 4, PT_METHOD_PATCH = 1u << 5,
    PT_METHOD_OPTIONS = 1u << 6, PT_METHOD_TRACE = 1u << 7, PT_METHOD_CONNECT = 1u << 8,
    PT_METHOD_OTHER = 1u << 9,
};
/** The PT_METHOD_* bit of a method token (PT_METHOD_OTHER for extension methods). */
uint32_t pt_method_bit(pt_str_t method);

/**
 * The methods the request's path really has, as PT_METHOD_* bits in `*bits`:
 * for a grpc route, the verbs google.api.http binds to this path (possibly
 * none); else the route's match.methods. Returns false (and leaves `*bits`)
 * when nothing restricts them (no route, or a route matching any method).
 */
bool pt_req_allowed_methods(pt_req_t *req, uint32_t *bits);

/**
 * The protocol the client asks to switch to (HTTP/1.1 `Upgrade` with
 * `Connection: upgrade`, or an HTTP/2 extended CONNECT's `:protocol`), or an
 * empty string.
 */
pt_str_t pt_req_upgrade(const pt_req_t *req);

/** Replaces the query string (without `?`; copied). Returns 0 or PT_ERR_LIMIT. */
int pt_req_set_query(pt_req_t *req, pt_str_t query);

/** Replaces the path forwarded upstream (copied). Returns 0 or PT_ERR_LIMIT. */
int pt_req_set_path(pt_req_t *req, pt_str_t path);
/** Replaces the authority forwarded upstream (copied). Returns 0 or PT_ERR_LIMIT. */
int pt_req_set_authority(pt_req_t *req, pt_str_t authority);

/**
 * The request body's length as it will be sent upstream: the client's
 * Content-Length, or -1 when unknown (chunked, HTTP/2 without length) or when
 * a filter announced it changes the body.
 */
int64_t pt_req_body_length(const pt_req_t *req);

/**
 * A request-body filter that changes the body's length calls this with -1 in
 * on_request_headers, before the handler sends the head upstream: the body
 * then goes without Content-Length (chunked / HTTP/2 DATA). In a route with
 * request_buffering the core sets the exact length itself.
 */
void pt_req_set_body_length(pt_req_t *req, int64_t len);

/**
 * From on_request_headers: the handler starts only after the request-body
 * filters have produced the whole body, as on a route with
 * `request_buffering: true` (the body is held in memory, bounded by the
 * route's max_body, and the upstream gets its exact Content-Length). A filter
 * that inspects bodies (the WAF) calls it so that a refused request never
 * reaches an upstream, not even its head. No effect once the handler started.
 */
void pt_req_buffer_body(pt_req_t *req);

/* ---- the response ------------------------------------------------------ */

/** The response body's length when known (the codec frames with it), else -1. */
int64_t pt_req_resp_body_length(const pt_req_t *req);

/**
 * A response-body filter that changes the body's length calls this with -1 in
 * on_response_headers: the client gets the body chunked (HTTP/1.1) or
 * without content-length (HTTP/2).
 */
void pt_req_set_resp_body_length(pt_req_t *req, int64_t len);

/** Response headers; mutable until they are sent (response-header phase included). */
pt_headers_t *pt_req_resp_headers(pt_req_t *req);
/** Response status (0 until a response exists). */
int pt_req_resp_status(const pt_req_t *req);
/** Sets the response status (response-header phase). */
void pt_req_set_resp_status(pt_req_t *req, int status);

/**
 * Makes a local reply with `status`, content type and body (copied). From a
 * request-side filter, return PT_FILTER_RESPOND afterwards. The reply passes
 * the response-side filters of the filters that already ran.
 * Returns 0, or PT_ERR_LIMIT when the arena is full.
 */
int pt_req_respond(pt_req_t *req, int status, pt_str_t content_type, pt_str_t body);

/**
 * A local reply like pt_req_respond() whose body is not copied: `body` must
 * stay valid and unchanged until the request is finished (hold it with
 * pt_arena_defer() on pt_req_arena(req), e.g. to drop a reference). No
 * Content-Type is set: the filter sets every header itself on
 * pt_req_resp_headers(), before or after the call (from the request side
 * they are kept; from on_response_headers the handler's are dropped first,
 * so set them after the call). Meant for replaying a stored answer (the
 * cache filter). Returns 0.
 */
int pt_req_respond_nocopy(pt_req_t *req, int status, pt_str_t body);

/**
 * Records a failure: the chain answers with the JSON error body of `st`
 * (`{"error":{"code":"...","message":"...","request_id":"..."}}`) unless a
 * response was already started. `reason` is a static string that goes to the
 * log only, never to the client.
 */
void pt_req_fail(pt_req_t *req, int st, const char *reason);

/**
 * Refuses the request with the gateway's JSON error of status `st` (a PT_ERR_*
 * from portico/status.h: PT_ERR_UNAUTHORIZED 401, PT_ERR_FORBIDDEN 403,
 * PT_ERR_RATE_LIMITED 429, PT_ERR_INVALID 400 ...). `detail` (copied; may be
 * NULL) is shown to the client as "detail" for 4xx statuses only. Response
 * headers the filter set before on pt_req_resp_headers() (WWW-Authenticate,
 * Retry-After, RateLimit-*) are kept (from on_response_headers, the
 * handler's headers are dropped: set extra headers after the call). Return
 * PT_FILTER_RESPOND after it (or pass PT_FILTER_RESPOND to pt_chain_resume()).
 * Native gRPC and gRPC-Web clients (request content-type application/grpc*)
 * get a Trailers-Only gRPC answer instead: HTTP 200, grpc-status =
 * pt_status_grpc(st) (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 429
 * RESOURCE_EXHAUSTED), grpc-message = the detail or the public message, with
 * the same extra headers. Returns 0 or PT_ERR_LIMIT.
 */
int pt_req_reject(pt_req_t *req, int st, const char *detail);

/**
 * Request variables: named strings that later filters, header rules
 * (`${consumer}`, `${jwt.sub}`, `${var.NAME}` in the headers filter) and the
 * access log read. Names are dotted: `consumer`, `jwt.sub`,
 * `jwt.realm_access.roles`, `oauth2.client_id`. pt_req_var_set copies name
 * and value into the request arena; the last set wins. Returns 0 or
 * PT_ERR_LIMIT.
 */
int pt_req_var_set(pt_req_t *req, pt_str_t name, pt_str_t value);

/**
 * The value of variable `name`, or a pt_str_t with base == NULL when unset.
 * Names under a provider's prefix are asked of the provider (the latest
 * registered wins) unless set explicitly later with pt_req_var_set.
 */
pt_str_t pt_req_var(pt_req_t *req, pt_str_t name);

/**
 * Lazy variables: a name starting with `prefix` (e.g. "jwt.") is answered by
 * fn(req, data, rest), rest being the name after the prefix, so a filter with
 * many values (JWT claims) pays only for those read. fn returns base == NULL
 * for "unset"; what it returns must live as long as the request. `prefix` is
 * copied; `data` must live as long as the request. Returns 0 or PT_ERR_LIMIT.
 */
typedef pt_str_t (*pt_req_var_fn)(pt_req_t *req, void *data, pt_str_t rest);
int pt_req_var_provider(pt_req_t *req, pt_str_t prefix, pt_req_var_fn fn, void *data);

/**
 * Registers `cb(data)` to run if the client goes away (or the request is torn
 * down) while asynchronous work is pending. Hooks run once, in reverse order.
 * Returns 0 or PT_ERR_LIMIT.
 */
int pt_req_on_abort(pt_req_t *req, void (*cb)(void *data), void *data);

/** True once the client went away. */
bool pt_req_is_aborted(const pt_req_t *req);

/**
 * True once the exchange became a tunnel (an HTTP/1.1 Upgrade answered 101,
 * an HTTP/2 extended CONNECT answered 2xx): set before the response-header
 * phase of the handshake runs; the session's bytes never pass body phases.
 */
bool pt_req_is_tunnel(const pt_req_t *req);

#endif /* PT_PORTICO_REQ_H */
