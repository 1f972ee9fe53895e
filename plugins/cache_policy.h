/*
 * cache_policy.h -- the HTTP caching rules of the `cache` filter (RFC 9111),
 * as pure functions over header values: Cache-Control parsing, HTTP dates,
 * freshness lifetime and age, storability, the Vary secondary key and the
 * conditional-request checks. No request object, no clock: the filter
 * passes values and "now" in, so each rule is unit-tested on its own.
 */
#ifndef PT_PLUGINS_CACHE_POLICY_H
#define PT_PLUGINS_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/str.h"

/* Cache-Control directives (request or response). */
enum {
    PC_NO_STORE = 1u << 0,
    PC_NO_CACHE = 1u << 1,      /* unqualified, or with a field list (treated alike) */
    PC_PRIVATE = 1u << 2,       /* unqualified, or with a field list (never stored) */
    PC_PUBLIC = 1u << 3,
    PC_MUST_REVALIDATE = 1u << 4,
    PC_PROXY_REVALIDATE = 1u << 5,
    PC_NO_TRANSFORM = 1u << 6,
    PC_ONLY_IF_CACHED = 1u << 7,
    PC_MUST_UNDERSTAND = 1u << 8,
    PC_IMMUTABLE = 1u << 9,
};

/* Delta-seconds are capped here (RFC 9111 §1.2.2: 2^31). */
#define PC_DELTA_MAX 2147483648LL

typedef struct pc_cc {
    unsigned flags;
    int64_t max_age;   /* seconds, -1 when absent; an invalid value counts as 0 */
    int64_t s_maxage;
    int64_t max_stale; /* request: -1 absent; PC_DELTA_MAX for a bare max-stale */
    int64_t min_fresh;
    int64_t stale_if_error; /* response (RFC 5861): seconds past freshness it may answer when the
                               upstream fails; -1 absent */
} pc_cc_t;

void pc_cc_init(pc_cc_t *cc);

/**
 * Adds the directives of one Cache-Control field value to `cc` (call once per
 * field line). Tolerant: unknown directives are ignored, quoted strings may
 * hold commas, a repeated numeric directive keeps the smallest value. Never
 * reads past value.len.
 */
void pc_cc_parse(pc_cc_t *cc, pt_str_t value);

/**
 * Parses an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime
 * forms) into seconds since the epoch. Returns false when it is not one.
 */
bool pc_http_date(pt_str_t s, int64_t *out);

/** Formats `t` (seconds since the epoch) as an IMF-fixdate into buf (>= 30 bytes). */
size_t pc_http_date_fmt(int64_t t, char *buf, size_t cap);

/** Statuses cacheable by default (RFC 9110 §15.1): a lifetime may be assumed for them. */
bool pc_status_heuristic(int status);

/** Statuses this cache stores at all (with an explicit lifetime for the non-heuristic ones). */
bool pc_status_understood(int status);

/* What the response says about its own freshness. */
typedef struct pc_resp {
    int status;
    pc_cc_t cc;
    bool has_expires, expires_valid;
    int64_t expires;     /* seconds */
    bool has_date;
    int64_t date;        /* seconds */
    int64_t age;         /* the Age header, seconds (0 when absent) */
    bool has_set_cookie;
    bool vary_star;      /* Vary: * */
    bool has_validator;  /* ETag or Last-Modified */
} pc_resp_t;

void pc_resp_init(pc_resp_t *r, int status);

/* Why a response is not stored (0: it is). */
typedef enum pc_nostore {
    PC_STORE_OK = 0,
    PC_NOSTORE_STATUS,      /* a status we do not cache, or not without an explicit lifetime */
    PC_NOSTORE_DIRECTIVE,   /* no-store / private in the response */
    PC_NOSTORE_REQUEST,     /* no-store in the request */
    PC_NOSTORE_AUTH,        /* the request had Authorization and the answer is not public */
    PC_NOSTORE_COOKIE,      /* Set-Cookie: a per-client answer */
    PC_NOSTORE_VARY_STAR,   /* Vary: * */
    PC_NOSTORE_LIFETIME,    /* zero lifetime and no validator: nothing to reuse */
} pc_nostore_t;

/**
 * Freshness lifetime in seconds: s-maxage, else max-age, else Expires - Date
 * (Date defaulting to `now`; an invalid Expires means already stale), else
 * `default_ttl_s` for the heuristically cacheable statuses, else 0.
 * `*explicit_out` (may be NULL) says whether the response gave one.
 */
int64_t pc_lifetime(const pc_resp_t *r, int64_t now, int64_t default_ttl_s, bool *explicit_out);

/** Age the response already had when it arrived (RFC 9111 §4.2.3), seconds. */
int64_t pc_initial_age(const pc_resp_t *r, int64_t response_time);

/**
 * May this answer be stored by a shared cache? `req_cc` is the request's
 * Cache-Control, `req_auth` whether it had Authorization.
 */
pc_nostore_t pc_storable(const pc_resp_t *r, const pc_cc_t *req_cc, bool req_auth,
                         int64_t lifetime);

/**
 * The Vary field names as a canonical list: lowercase, separated by '\n',
 * duplicates removed. Writes at most cap bytes to buf (NUL-terminated) and
 * returns the length, or -1 when the list does not fit or a name is not a
 * token. Sets *star for `*`.
 */
int pc_vary_names(pt_str_t vary, char *buf, size_t cap, bool *star);

/**
 * Does entity-tag `etag` match the If-None-Match list `inm` (weak
 * comparison, `*` matches any)? RFC 9110 §13.1.2.
 */
bool pc_inm_matches(pt_str_t inm, pt_str_t etag);

/** Is `s` a list of request Cache-Control asking for a fresh answer (no-cache, max-age=0)? */
bool pc_req_wants_revalidate(const pc_cc_t *req_cc, bool pragma_no_cache, bool has_cc);

#endif /* PT_PLUGINS_CACHE_POLICY_H */
