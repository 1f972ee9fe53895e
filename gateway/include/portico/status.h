/*
 * status.h -- Portico's one table of error statuses.
 *
 * Every failure inside the gateway is a pt_status (a negative PT_ERR_* value).
 * The table below gives each status its client-facing code name, its HTTP
 * status, its gRPC status code and a short public message, so that
 * pt_strerror(), the JSON error bodies (respond.c) and the gRPC mapping can
 * never drift apart. Internal detail (a static reason string) travels beside
 * the status and is logged, never sent to clients.
 */
#ifndef PT_PORTICO_STATUS_H
#define PT_PORTICO_STATUS_H

/* X(name, http status, grpc code, public message) */
#define PT_STATUS_MAP(X)                                                                           \
    X(ERR_INVALID, 400, 3, "invalid request")                /* INVALID_ARGUMENT */            \
    X(ERR_UNAUTHORIZED, 401, 16, "authentication required")  /* UNAUTHENTICATED */             \
    X(ERR_FORBIDDEN, 403, 7, "forbidden")                    /* PERMISSION_DENIED */           \
    X(ERR_NOT_FOUND, 404, 5, "no route matches the request") /* NOT_FOUND */                   \
    X(ERR_METHOD, 405, 12, "method not allowed")             /* UNIMPLEMENTED */               \
    X(ERR_TIMEOUT_CLIENT, 408, 4, "request timed out")       /* DEADLINE_EXCEEDED */           \
    X(ERR_LIMIT, 413, 8, "request too large")                /* RESOURCE_EXHAUSTED */          \
    X(ERR_URI_TOO_LONG, 414, 8, "request target too long")   /* RESOURCE_EXHAUSTED */          \
    X(ERR_MEDIA_TYPE, 415, 3, "unsupported media type")      /* INVALID_ARGUMENT */            \
    X(ERR_EXPECTATION, 417, 3, "expectation failed")         /* INVALID_ARGUMENT */            \
    X(ERR_HEADERS_TOO_LARGE, 431, 8, "request headers too large") /* RESOURCE_EXHAUSTED */     \
    X(ERR_RATE_LIMITED, 429, 8, "rate limit exceeded")       /* RESOURCE_EXHAUSTED */          \
    X(ERR_CANCELED, 499, 1, "request canceled")              /* CANCELLED */                   \
    X(ERR_INTERNAL, 500, 13, "internal error")               /* INTERNAL */                    \
    X(ERR_NOT_IMPLEMENTED, 501, 12, "not implemented")       /* UNIMPLEMENTED */               \
    X(ERR_UPSTREAM, 502, 14, "upstream failed")              /* UNAVAILABLE */                 \
    X(ERR_UNAVAILABLE, 503, 14, "no upstream available")     /* UNAVAILABLE */                 \
    X(ERR_TIMEOUT, 504, 4, "upstream timed out")             /* DEADLINE_EXCEEDED */           \
    X(ERR_VERSION, 505, 3, "HTTP version not supported")     /* INVALID_ARGUMENT */            \
    X(ERR_LOOP_DETECTED, 508, 13, "forwarding loop detected") /* INTERNAL */                  \
    X(ERR_NOMEM, 500, 13, "out of memory")                   /* INTERNAL */                    \
    X(ERR_OVERLOADED, 503, 14, "gateway overloaded")         /* UNAVAILABLE */               \
    X(ERR_NOT_ACCEPTABLE, 406, 3, "not acceptable")          /* INVALID_ARGUMENT */

/** Status values: 0 is success, every error is negative. */
typedef enum pt_status {
    PT_OK = 0,
#define PT__STATUS_ENUM(name, http, grpc, msg) PT_##name,
    PT__STATUS_FIRST = -1000,
    PT_STATUS_MAP(PT__STATUS_ENUM)
#undef PT__STATUS_ENUM
    PT__STATUS_END
} pt_status_t;

/** The public message of `st` ("upstream timed out"); "ok" for 0, "unknown error" otherwise. */
const char *pt_strerror(int st);
/** The code name of `st` without prefix ("TIMEOUT" for PT_ERR_TIMEOUT); "OK" for 0. */
const char *pt_status_name(int st);
/** The HTTP status for `st` (200 for 0, 500 for unknown values). */
int pt_status_http(int st);
/** The gRPC status code for `st` (0 for 0, 2 UNKNOWN for unknown values). */
int pt_status_grpc(int st);

#endif /* PT_PORTICO_STATUS_H */
