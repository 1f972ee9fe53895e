/*
 * jwt.c -- the `jwt` filter: Bearer tokens (JWS, RFC 7519) verified against
 * a JWK set (file or fetched), an HMAC secret, and the issuer's claims.
 *
 *   filters:
 *     - jwt: { jwks_uri: "https://idp.example/jwks.json", issuer: "https://idp.example/",
 *              audiences: [ api ], forward_claims: { sub: x-user }, clock_skew: 30s }
 *
 * Per worker (nothing shared, nothing locked on the request path):
 *   - a verified-token cache: a set-associative table keyed by a seeded hash
 *     of the token and confirmed by comparing the whole token; an entry lives
 *     until min(exp, cache_ttl) and keeps the parsed claims, so a repeated
 *     token costs one hash, one compare and no JSON or crypto.
 *   - with `jwks_uri`, the worker's own copy of the key set, fetched through
 *     pt_fetch_* on the worker's loop, refreshed per Cache-Control max-age and
 *     on an unknown `kid` (at most once per jwks_min_refresh), the last good
 *     set kept when the issuer fails. Requests arriving before the first set
 *     wait (SUSPEND) until the fetch ends, bounded by jwks_timeout.
 * A `jwks_file` / `secret_file` set is parsed at load and shared read-only.
 *
 * Refusals go through pt_req_reject(PT_ERR_UNAUTHORIZED) with an RFC 6750
 * WWW-Authenticate header; gRPC clients get UNAUTHENTICATED.
 */
#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt_token.h"
#include "portico/async.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

#define JWKS_MAX_BYTES (256 * 1024)
#define CACHE_WAYS 8

typedef struct fwd {
    pt_str_t claim;  /* dotted path */
    pt_str_t header; /* lowercase */
} fwd_t;

typedef struct jwt_conf {
    const char *jwks_file, *jwks_uri, *secret_file, *jwks_cluster_name;
    const char *issuer, *realm;
    const char *token_header, *token_cookie, *token_query;
    pt_conf_strlist_t audiences, required_claims;
    pt_conf_strmap_t forward_claims;
    uint64_t clock_skew_ms, cache_ttl_ms, jwks_timeout_ms, jwks_max_age_ms, jwks_min_refresh_ms;
    uint64_t max_token_size;
    long long cache_size;
    bool require_exp;
    /* derived */
    pt_jwt_keyset_t *keys;          /* jwks_file / secret_file */
    const pt_cluster_ref_t *cluster; /* jwks_uri */
    char *jwks_path;
    pt_jwt_policy_t policy;
    fwd_t *fwd;
    size_t fwd_cnt;
    pt_str_t header_name;            /* lowercase token header */
    bool bearer;                     /* the header carries "Bearer <token>" */
    const char *www_missing;         /* WWW-Authenticate without a token */
} jwt_conf_t;

/* ---- per worker ------------------------------------------------------------------ */

typedef struct entry {
    uint64_t hash;
    char *tok;
    size_t len;
    int64_t until;       /* wall-clock seconds */
    json_object *claims;
} entry_t;

typedef struct jwt_ctx jwt_ctx_t;

typedef struct jwt_worker {
    pt_worker_t *w;
    const jwt_conf_t *conf;
    entry_t *cache;
    size_t sets;          /* cache sets of CACHE_WAYS entries (a power of two), 0: no cache */
    uint64_t seed;
    /* jwks_uri */
    pt_jwt_keyset_t *ks;
    char *ks_body;
    size_t ks_body_len;
    pt_fetch_t *fetch;
    pt_timer_t *refresh;
    uint64_t last_fetch_ms;
    bool fetched_once;
    jwt_ctx_t *waiters;   /* requests waiting for the fetch in flight */
} jwt_worker_t;

struct jwt_ctx {
    pt_req_t *req;
    jwt_worker_t *ws;
    json_object *claims;  /* referenced until the request arena goes */
    pt_str_t token;
    jwt_ctx_t *next, **pprev; /* in ws->waiters while waiting */
    bool refetched;
};

/* ---- load time --------------------------------------------------------------------- */

static const pt_conf_field_t fields[] = {
    {"jwks_file", PT_CONF_T_PATH, offsetof(jwt_conf_t, jwks_file), 0, 0, false, NULL},
    {"jwks_uri", PT_CONF_T_STR, offsetof(jwt_conf_t, jwks_uri), 0, 0, false, NULL},
    {"jwks_cluster", PT_CONF_T_STR, offsetof(jwt_conf_t, jwks_cluster_name), 0, 0, false, NULL},
    {"secret_file", PT_CONF_T_PATH, offsetof(jwt_conf_t, secret_file), 0, 0, false, NULL},
    {"issuer", PT_CONF_T_STR, offsetof(jwt_conf_t, issuer), 0, 0, false, NULL},
    {"audiences", PT_CONF_T_STRLIST, offsetof(jwt_conf_t, audiences), 0, 0, false, NULL},
    {"required_claims", PT_CONF_T_STRLIST, offsetof(jwt_conf_t, required_claims), 0, 0, false, NULL},
    {"forward_claims", PT_CONF_T_STRMAP, offsetof(jwt_conf_t, forward_claims), 0, 0, false, NULL},
    {"clock_skew", PT_CONF_T_DURATION, offsetof(jwt_conf_t, clock_skew_ms), 0, 600000, false, NULL},
    {"require_exp", PT_CONF_T_BOOL, offsetof(jwt_conf_t, require_exp), 0, 0, false, NULL},
    {"token_header", PT_CONF_T_STR, offsetof(jwt_conf_t, token_header), 0, 0, false, NULL},
    {"token_cookie", PT_CONF_T_STR, offsetof(jwt_conf_t, token_cookie), 0, 0, false, NULL},
    {"token_query", PT_CONF_T_STR, offsetof(jwt_conf_t, token_query), 0, 0, false, NULL},
    {"max_token_size", PT_CONF_T_SIZE, offsetof(jwt_conf_t, max_token_size), 64, 65536, false, NULL},
    {"cache_size", PT_CONF_T_INT, offsetof(jwt_conf_t, cache_size), 0, 1 << 20, false, NULL},
    {"cache_ttl", PT_CONF_T_DURATION, offsetof(jwt_conf_t, cache_ttl_ms), 1000, 86400000, false, NULL},
    {"jwks_timeout", PT_CONF_T_DURATION, offsetof(jwt_conf_t, jwks_timeout_ms), 10, 60000, false, NULL},
    {"jwks_max_age", PT_CONF_T_DURATION, offsetof(jwt_conf_t, jwks_max_age_ms), 1000, 604800000, false, NULL},
    {"jwks_min_refresh", PT_CONF_T_DURATION, offsetof(jwt_conf_t, jwks_min_refresh_ms), 100, 3600000, false, NULL},
    {"realm", PT_CONF_T_STR, offsetof(jwt_conf_t, realm), 0, 0, false, NULL},
    PT_CONF_FIELDS_END,
};

static void release_keys(void *data)
{
    pt_jwt_keyset_free(data);
}

/* Reads a whole (small) file; NULL + message on failure. */
static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf != NULL ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > max) {
        free(buf);
        snprintf(err, errlen, "%s is larger than %zu bytes", path, max);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool token_name_ok(const char *s)
{
    if (s == NULL || *s == 0)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* jwks_uri: "http[s]://host[:port]/path" -> the cluster that serves it and the path. */
static int parse_jwks_uri(pt_conf_cx_t *cx, const pt_conf_node_t *node, jwt_conf_t *c)
{
    const pt_conf_node_t *at = pt_conf_map_get(node, "jwks_uri");
    const char *u = c->jwks_uri;
    bool tls = strncmp(u, "https://", 8) == 0;
    if (!tls && strncmp(u, "http://", 7) != 0)
        return pt_conf_error(cx, at, "jwks_uri must start with https:// (or http://)");
    const char *host = u + (tls ? 8 : 7);
    const char *slash = strchr(host, '/');
    if (slash == NULL || slash == host)
        return pt_conf_error(cx, at, "jwks_uri needs a host and a path");
    c->jwks_path = pt_conf_strdup(cx, slash, strlen(slash));
    if (c->jwks_cluster_name != NULL) {
        c->cluster = pt_conf_cluster(cx, pt_conf_map_get(node, "jwks_cluster"), c->jwks_cluster_name);
        return c->cluster != NULL ? 0 : -1;
    }
    const char *name = pt_conf_cluster_for_url(cx, u);
    if (name != NULL) {
        c->cluster = pt_conf_cluster(cx, at, name);
        return c->cluster != NULL ? 0 : -1;
    }
    return pt_conf_error(cx, at,
                         "jwks_uri: no cluster has the endpoint %.*s; declare one (clusters: "
                         "[ { name: idp, endpoints: \"%.*s\" } ]) or name it with jwks_cluster",
                         (int)(slash - u), u, (int)(slash - u), u);
}

static int load_keys(pt_conf_cx_t *cx, const pt_conf_node_t *node, jwt_conf_t *c)
{
    char err[320];
    size_t len = 0;
    bool file = c->jwks_file != NULL;
    const pt_conf_node_t *at = pt_conf_map_get(node, file ? "jwks_file" : "secret_file");
    const char *path = file ? c->jwks_file : c->secret_file;
    char *buf = read_file(path, JWKS_MAX_BYTES, &len, err, sizeof(err));
    if (buf == NULL)
        return pt_conf_error(cx, at, "%s", err);
    if (file) {
        c->keys = pt_jwt_keyset_parse(buf, len, true, err, sizeof(err));
    } else {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        c->keys = pt_jwt_keyset_secret((const unsigned char *)buf, len, err, sizeof(err));
    }
    memset(buf, 0, len);
    free(buf);
    if (c->keys == NULL)
        return pt_conf_error(cx, at, "%s: %s", path, err);
    pt_conf_on_release(cx, release_keys, c->keys);
    return 0;
}

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    jwt_conf_t *c = conf;
    c->clock_skew_ms = 30000;
    c->require_exp = true;
    c->cache_size = 4096;
    c->cache_ttl_ms = 300000;
    c->max_token_size = 8192;
    c->jwks_timeout_ms = 5000;
    c->jwks_max_age_ms = 3600000;
    c->jwks_min_refresh_ms = 10000;
    c->realm = "portico";
    if (node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "jwt: expected a map");
    if (pt_conf_parse_fields(cx, node, fields, c) != 0)
        return -1;
    int sources = (c->jwks_file != NULL) + (c->jwks_uri != NULL) + (c->secret_file != NULL);
    if (sources != 1)
        return pt_conf_error(cx, node, "jwt: exactly one of jwks_file, jwks_uri, secret_file");
    if (c->jwks_cluster_name != NULL && c->jwks_uri == NULL)
        return pt_conf_error(cx, pt_conf_map_get(node, "jwks_cluster"),
                             "jwks_cluster goes with jwks_uri");
    if (c->jwks_uri != NULL ? parse_jwks_uri(cx, node, c) != 0 : load_keys(cx, node, c) != 0)
        return -1;
    for (size_t i = 0; i < c->audiences.cnt; i++)
        if (c->audiences.v[i][0] == 0)
            return pt_conf_error(cx, pt_conf_map_get(node, "audiences"), "empty audience");
    const char *names[] = {c->token_header, c->token_cookie, c->token_query};
    const char *keys[] = {"token_header", "token_cookie", "token_query"};
    for (int i = 0; i < 3; i++)
        if (names[i] != NULL && !token_name_ok(names[i]))
            return pt_conf_error(cx, pt_conf_map_get(node, keys[i]),
                                 "%s: letters, digits, '-', '_' or '.'", keys[i]);
    const char *h = c->token_header != NULL ? c->token_header : "authorization";
    char *lh = pt_conf_strdup(cx, h, strlen(h));
    for (char *p = lh; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    c->header_name = pt_str_c(lh);
    c->bearer = strcmp(lh, "authorization") == 0;
    if (strchr(c->realm, '"') != NULL || strchr(c->realm, '\\') != NULL)
        return pt_conf_error(cx, pt_conf_map_get(node, "realm"), "realm: no quotes");
    size_t wl = strlen(c->realm) + 32;
    char *www = pt_conf_alloc(cx, wl);
    snprintf(www, wl, "Bearer realm=\"%s\"", c->realm);
    c->www_missing = www;
    c->fwd = pt_conf_alloc(cx, (c->forward_claims.cnt + 1) * sizeof(*c->fwd));
    const pt_conf_node_t *fc = pt_conf_map_get(node, "forward_claims");
    for (size_t i = 0; i < c->forward_claims.cnt; i++) {
        const char *hn = c->forward_claims.v[i].value;
        size_t hl = strlen(hn);
        char *low = pt_conf_strdup(cx, hn, hl);
        for (char *p = low; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!pt_header_name_valid((pt_str_t){low, hl}, false) ||
            pt_header_is_hop_by_hop((pt_str_t){low, hl}) || low[0] == ':')
            return pt_conf_error(cx, fc != NULL && i < fc->cnt ? fc->items[i] : fc,
                                 "forward_claims: '%s' is not a header name to set", hn);
        c->fwd[i] = (fwd_t){pt_str_c(c->forward_claims.v[i].key), (pt_str_t){low, hl}};
    }
    c->fwd_cnt = c->forward_claims.cnt;
    c->policy = (pt_jwt_policy_t){
        .issuer = c->issuer,
        .audiences = c->audiences.v,
        .audience_cnt = c->audiences.cnt,
        .required = c->required_claims.v,
        .required_cnt = c->required_claims.cnt,
        .skew_s = (int64_t)(c->clock_skew_ms / 1000),
        .require_exp = c->require_exp,
    };
    return 0;
}

/* ---- the verified-token cache ------------------------------------------------------ */

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/*
 * A seeded 64-bit multiply-xor hash of the token's length and its last 64
 * bytes (the signature's end: what differs between two valid tokens; a
 * collision costs only a compare, the whole token is compared on a hit).
 */
static uint64_t tok_hash(uint64_t seed, const char *s, size_t len)
{
    size_t from = len > 64 ? len - 64 : 0;
    const unsigned char *p = (const unsigned char *)s + from;
    size_t n = len - from, i = 0;
    uint64_t h = seed ^ (len * 0x9E3779B97F4A7C15ull);
    for (; i + 8 <= n; i += 8) {
        h ^= load64(p + i);
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t t = 0;
    for (size_t k = 0; i + k < n; k++)
        t |= (uint64_t)p[i + k] << (8 * k);
    h ^= t;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 29;
    return h;
}

static void entry_clear(entry_t *e)
{
    free(e->tok);
    json_object_put(e->claims);
    memset(e, 0, sizeof(*e));
}

static void cache_flush(jwt_worker_t *ws)
{
    for (size_t i = 0; i < ws->sets * CACHE_WAYS; i++)
        entry_clear(&ws->cache[i]);
}

static entry_t *cache_find(jwt_worker_t *ws, uint64_t h, pt_str_t tok, int64_t now)
{
    entry_t *set = &ws->cache[(h & (ws->sets - 1)) * CACHE_WAYS];
    for (int i = 0; i < CACHE_WAYS; i++) {
        entry_t *e = &set[i];
        if (e->hash == h && e->len == tok.len && e->tok != NULL &&
            memcmp(e->tok, tok.base, tok.len) == 0) {
            if (e->until >= now)
                return e;
            entry_clear(e);
            return NULL;
        }
    }
    return NULL;
}

static void cache_put(jwt_worker_t *ws, uint64_t h, pt_str_t tok, int64_t until, json_object *claims)
{
    entry_t *set = &ws->cache[(h & (ws->sets - 1)) * CACHE_WAYS];
    entry_t *victim = &set[0];
    for (int i = 0; i < CACHE_WAYS; i++) {
        if (set[i].tok == NULL) {
            victim = &set[i];
            break;
        }
        if (set[i].until < victim->until)
            victim = &set[i]; /* the entry that expires first goes */
    }
    char *copy = malloc(tok.len);
    if (copy == NULL)
        return;
    entry_clear(victim);
    memcpy(copy, tok.base, tok.len);
    *victim = (entry_t){h, copy, tok.len, until, json_object_get(claims)};
}

/* ---- claims as variables and headers ------------------------------------------------ */

static json_object *claim_at(json_object *o, pt_str_t path)
{
    char key[256];
    while (o != NULL && path.len != 0) {
        const char *dot = memchr(path.base, '.', path.len);
        size_t n = dot != NULL ? (size_t)(dot - path.base) : path.len;
        if (n == 0 || n >= sizeof(key) || !json_object_is_type(o, json_type_object))
            return NULL;
        memcpy(key, path.base, n);
        key[n] = 0;
        json_object *next = NULL;
        if (!json_object_object_get_ex(o, key, &next))
            return NULL;
        o = next;
        path.base += dot != NULL ? n + 1 : n;
        path.len -= dot != NULL ? n + 1 : n;
    }
    return o;
}

/* A claim as text for a header: strings as they are, arrays of strings joined
 * with ",", anything else as compact JSON. Control characters -> unset. The
 * result lives as long as the request (claims are referenced until then). */
static pt_str_t claim_text(pt_arena_t *a, json_object *v)
{
    if (v == NULL || json_object_is_type(v, json_type_null))
        return PT_STR_NULL;
    pt_str_t out = PT_STR_NULL;
    if (json_object_is_type(v, json_type_string)) {
        out = (pt_str_t){json_object_get_string(v), (size_t)json_object_get_string_len(v)};
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v), total = 0;
        bool strings = true;
        for (size_t i = 0; i < n && strings; i++) {
            json_object *it = json_object_array_get_idx(v, i);
            strings = json_object_is_type(it, json_type_string);
            total += strings ? (size_t)json_object_get_string_len(it) + 1 : 0;
        }
        if (strings) {
            char *buf = pt_arena_alloc(a, total + 1);
            if (buf == NULL)
                return PT_STR_NULL;
            size_t o = 0;
            for (size_t i = 0; i < n; i++) {
                json_object *it = json_object_array_get_idx(v, i);
                if (i != 0)
                    buf[o++] = ',';
                memcpy(buf + o, json_object_get_string(it), (size_t)json_object_get_string_len(it));
                o += (size_t)json_object_get_string_len(it);
            }
            return pt_header_value_valid((pt_str_t){buf, o}) ? (pt_str_t){buf, o} : PT_STR_NULL;
        }
    }
    if (out.base != NULL) /* the claims object is held until the request's arena goes */
        return pt_header_value_valid(out) ? out : PT_STR_NULL;
    out = pt_str_c(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    if (!pt_header_value_valid(out))
        return PT_STR_NULL;
    return pt_arena_strdup(a, out); /* json-c reuses that buffer for the next call */
}

static pt_str_t var_claim(pt_req_t *req, void *data, pt_str_t rest)
{
    jwt_ctx_t *x = data;
    return claim_text(pt_req_arena(req), claim_at(x->claims, rest));
}

/* The token is good: variables, identity headers. */
static void put_claims(void *data)
{
    json_object_put(data);
}

static pt_fstatus_t accept_token(const jwt_conf_t *c, jwt_ctx_t *x, json_object *claims)
{
    pt_req_t *req = x->req;
    /* held until the request's memory goes (the access log may read ${jwt.*} after on_log) */
    if (pt_arena_defer(pt_req_arena(req), put_claims, json_object_get(claims)) != 0) {
        json_object_put(claims);
        pt_req_fail(req, PT_ERR_NOMEM, "jwt: claims");
        return PT_FILTER_ERROR;
    }
    x->claims = claims;
    if (pt_req_var_provider(req, PT_STR("jwt."), var_claim, x) != 0) {
        pt_req_fail(req, PT_ERR_NOMEM, "jwt: variables");
        return PT_FILTER_ERROR;
    }
    pt_headers_t *h = pt_req_headers(req);
    for (size_t i = 0; i < c->fwd_cnt; i++) {
        /* the name lives in the conf, the value in the request arena: no copies */
        pt_str_t v = claim_text(pt_req_arena(req), claim_at(claims, c->fwd[i].claim));
        if (v.base != NULL && pt_headers_add_nocopy(h, c->fwd[i].header, v) != 0) {
            pt_req_fail(req, PT_ERR_LIMIT, "jwt: forward_claims");
            return PT_FILTER_ERROR;
        }
    }
    return PT_FILTER_CONTINUE;
}

/* ---- refusals ----------------------------------------------------------------------- */

static pt_fstatus_t refuse(const jwt_conf_t *c, pt_req_t *req, const char *why)
{
    pt_headers_t *rh = pt_req_resp_headers(req);
    if (why == NULL) {
        pt_headers_set(rh, PT_STR("www-authenticate"), pt_str_c(c->www_missing));
        pt_req_reject(req, PT_ERR_UNAUTHORIZED, "a bearer token is required");
        return PT_FILTER_RESPOND;
    }
    char *v = pt_arena_printf(pt_req_arena(req),
                              "Bearer realm=\"%s\", error=\"invalid_token\", "
                              "error_description=\"%s\"", c->realm, why);
    if (v != NULL)
        pt_headers_set(rh, PT_STR("www-authenticate"), pt_str_c(v));
    pt_req_reject(req, PT_ERR_UNAUTHORIZED, why);
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t refuse_unavailable(pt_req_t *req)
{
    pt_req_reject(req, PT_ERR_UNAVAILABLE, "signing keys unavailable");
    return PT_FILTER_RESPOND;
}

/* ---- finding the token ------------------------------------------------------------- */

/* Counts the values of `name` in a `sep`-separated list of name=value pairs
 * (a Cookie header, a query string); the last one goes to *val. */
static unsigned pairs_find(pt_str_t s, char sep, pt_str_t name, pt_str_t *val)
{
    unsigned n = 0;
    while (s.len != 0) {
        const char *end = memchr(s.base, sep, s.len);
        pt_str_t kv = {s.base, end != NULL ? (size_t)(end - s.base) : s.len};
        s.base += kv.len + (end != NULL);
        s.len -= kv.len + (end != NULL);
        kv = pt_str_trim_ows(kv);
        if (kv.len > name.len + 1 && kv.base[name.len] == '=' &&
            memcmp(kv.base, name.base, name.len) == 0) {
            *val = (pt_str_t){kv.base + name.len + 1, kv.len - name.len - 1};
            n++;
        }
    }
    return n;
}

/*
 * 1 found (*tok), 0 none, -1 ambiguous (*why). Every configured place is
 * looked at: a token in two places (two headers, header and query, ...) is
 * refused rather than one of them picked (SECURITY-CASES AU-9, as Kong).
 */
static int find_token(const jwt_conf_t *c, pt_req_t *req, pt_str_t *tok, const char **why)
{
    const pt_headers_t *h = pt_req_headers(req);
    unsigned found = 0;
    for (size_t i = 0; i < h->cnt; i++) {
        pt_str_t v = PT_STR_NULL;
        if (pt_str_eq(h->v[i].name, c->header_name)) {
            v = pt_str_trim_ows(h->v[i].value);
            if (v.len >= 7 && pt_str_ieq((pt_str_t){v.base, 7}, PT_STR("bearer ")))
                v = pt_str_trim_ows((pt_str_t){v.base + 7, v.len - 7});
            else if (c->bearer)
                continue; /* another scheme (Basic ...): not ours */
            found += v.len != 0;
        } else if (c->token_cookie != NULL && pt_str_eq(h->v[i].name, PT_STR("cookie"))) {
            found += pairs_find(h->v[i].value, ';', pt_str_c(c->token_cookie), &v);
        }
        if (v.len != 0)
            *tok = v;
    }
    if (c->token_query != NULL) {
        pt_str_t v = PT_STR_NULL;
        found += pairs_find(pt_req_query(req), '&', pt_str_c(c->token_query), &v);
        if (v.len != 0)
            *tok = v;
    }
    if (found > 1) {
        *why = "more than one token";
        return -1;
    }
    return found == 1 && tok->len != 0 ? 1 : 0;
}

/* ---- the JWKS fetch (jwks_uri) ----------------------------------------------------- */

static void fetch_start(jwt_worker_t *ws);

static void on_refresh_timer(void *ud)
{
    jwt_worker_t *ws = ud;
    ws->refresh = NULL;
    if (ws->fetch == NULL)
        fetch_start(ws);
}

static void schedule_refresh(jwt_worker_t *ws, uint64_t ms)
{
    if (ws->refresh != NULL)
        pt_timer_cancel(ws->refresh);
    ws->refresh = NULL;
    if (pt_timer_start(ws->w, ms, on_refresh_timer, ws, &ws->refresh) != 0)
        ws->refresh = NULL;
}

/* Cache-Control max-age in ms, or `dflt`; no-store / no-cache -> 0. */
static uint64_t max_age_ms(const pt_fetch_resp_t *r, uint64_t dflt)
{
    for (size_t i = 0; i < r->header_cnt; i++) {
        if (!pt_str_eq(r->headers[i].name, PT_STR("cache-control")))
            continue;
        pt_str_t v = r->headers[i].value;
        for (size_t k = 0; k < v.len; k++) {
            pt_str_t rest = {v.base + k, v.len - k};
            if (pt_str_has_prefix(rest, PT_STR("no-store")) || pt_str_has_prefix(rest, PT_STR("no-cache")))
                return 0;
            if ((k == 0 || v.base[k - 1] == ' ' || v.base[k - 1] == ',') &&
                pt_str_has_prefix(rest, PT_STR("max-age="))) {
                unsigned long long n = 0;
                size_t j = 8;
                while (j < rest.len && rest.base[j] >= '0' && rest.base[j] <= '9' && n < 1000000000ull)
                    n = n * 10 + (unsigned long long)(rest.base[j++] - '0');
                return n * 1000;
            }
        }
    }
    return dflt;
}

static pt_fstatus_t decide(const jwt_conf_t *c, jwt_ctx_t *x);

static void on_fetched(void *ud, int st, const pt_fetch_resp_t *resp)
{
    jwt_worker_t *ws = ud;
    const jwt_conf_t *c = ws->conf;
    ws->fetch = NULL;
    ws->fetched_once = true;
    char err[320] = "";
    pt_jwt_keyset_t *ks = NULL;
    uint64_t next = c->jwks_min_refresh_ms;
    if (st != 0) {
        snprintf(err, sizeof(err), "%s", pt_strerror(st));
    } else if (resp->status != 200) {
        snprintf(err, sizeof(err), "status %d", resp->status);
    } else {
        ks = pt_jwt_keyset_parse(resp->body.base, resp->body.len, false, err, sizeof(err));
        if (ks != NULL) {
            uint64_t age = max_age_ms(resp, c->jwks_max_age_ms);
            next = age < c->jwks_min_refresh_ms ? c->jwks_min_refresh_ms
                   : age > c->jwks_max_age_ms   ? c->jwks_max_age_ms
                                                : age;
            bool same = ws->ks_body != NULL && ws->ks_body_len == resp->body.len &&
                        memcmp(ws->ks_body, resp->body.base, resp->body.len) == 0;
            if (!same) {
                char *copy = malloc(resp->body.len + 1);
                if (copy != NULL)
                    memcpy(copy, resp->body.base, resp->body.len);
                free(ws->ks_body);
                ws->ks_body = copy;
                ws->ks_body_len = copy != NULL ? resp->body.len : 0;
                pt_jwt_keyset_free(ws->ks);
                ws->ks = ks;
                cache_flush(ws); /* a key removed from the set stops its tokens now */
            } else {
                pt_jwt_keyset_free(ks);
            }
        }
    }
    if (ks == NULL)
        fprintf(stderr, "portico: jwt: %s: %s (%s)\n", c->jwks_uri, err,
                ws->ks != NULL ? "keeping the last good key set" : "no key set yet");
    schedule_refresh(ws, next);
    /* resume the waiters: each decides again, now without a further fetch */
    jwt_ctx_t *list = ws->waiters;
    ws->waiters = NULL;
    if (list != NULL)
        list->pprev = &list;
    while (list != NULL) {
        jwt_ctx_t *x = list;
        list = x->next;
        if (list != NULL)
            list->pprev = &list;
        x->next = NULL;
        x->pprev = NULL;
        x->refetched = true;
        pt_chain_resume(x->req, decide(c, x));
    }
}

static void fetch_start(jwt_worker_t *ws)
{
    const jwt_conf_t *c = ws->conf;
    pt_fetch_req_t r = {
        .cluster = c->cluster,
        .path = pt_str_c(c->jwks_path),
        .timeout_ms = c->jwks_timeout_ms,
        .max_response = JWKS_MAX_BYTES,
    };
    ws->last_fetch_ms = pt_clock_ms();
    if (pt_fetch_start(ws->w, &r, on_fetched, ws, &ws->fetch) != 0) {
        ws->fetch = NULL;
        schedule_refresh(ws, c->jwks_min_refresh_ms);
    }
}

static void waiter_abort(void *data)
{
    jwt_ctx_t *x = data;
    if (x->pprev == NULL)
        return;
    *x->pprev = x->next;
    if (x->next != NULL)
        x->next->pprev = x->pprev;
    x->next = NULL;
    x->pprev = NULL;
}

/* Waits for the fetch in flight, or starts one unless one started less than
 * jwks_min_refresh ago. False: no fetch to wait for (decide now). */
static bool wait_for_keys(jwt_worker_t *ws, jwt_ctx_t *x)
{
    if (x->refetched)
        return false;
    if (ws->fetch == NULL) {
        uint64_t now = pt_clock_ms();
        if (ws->fetched_once && now - ws->last_fetch_ms < ws->conf->jwks_min_refresh_ms)
            return false;
        if (ws->refresh != NULL)
            pt_timer_cancel(ws->refresh);
        ws->refresh = NULL;
        fetch_start(ws);
        if (ws->fetch == NULL)
            return false;
    }
    if (pt_req_on_abort(x->req, waiter_abort, x) != 0)
        return false;
    x->next = ws->waiters;
    x->pprev = &ws->waiters;
    if (ws->waiters != NULL)
        ws->waiters->pprev = &x->next;
    ws->waiters = x;
    return true;
}

/* ---- the request ------------------------------------------------------------------- */

static pt_fstatus_t decide(const jwt_conf_t *c, jwt_ctx_t *x)
{
    jwt_worker_t *ws = x->ws;
    const pt_jwt_keyset_t *ks = c->keys != NULL ? c->keys : ws->ks;
    if (ks == NULL) {
        if (wait_for_keys(ws, x))
            return PT_FILTER_SUSPEND;
        return refuse_unavailable(x->req);
    }
    json_object *claims = NULL;
    pt_jwt_err_t e = pt_jwt_verify(ks, x->token.base, x->token.len, &claims);
    if (e == PT_JWT_E_KID && c->keys == NULL && wait_for_keys(ws, x))
        return PT_FILTER_SUSPEND; /* a rotated key the worker has not seen yet */
    int64_t now = (int64_t)time(NULL), exp = 0;
    if (e == PT_JWT_OK)
        e = pt_jwt_check_claims(claims, &c->policy, now, &exp);
    if (e != PT_JWT_OK) {
        json_object_put(claims);
        return refuse(c, x->req, pt_jwt_strerror(e));
    }
    int64_t until = now + (int64_t)(c->cache_ttl_ms / 1000);
    if (exp < until)
        until = exp;
    if (ws->sets != 0 && until >= now) /* a token only the skew still admits is not kept */
        cache_put(ws, tok_hash(ws->seed, x->token.base, x->token.len), x->token, until, claims);
    pt_fstatus_t st = accept_token(c, x, claims);
    json_object_put(claims);
    return st;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const jwt_conf_t *c = f->conf;
    jwt_ctx_t *x = ctx;
    x->req = req;
    x->ws = pt_worker_filter_state(pt_req_worker(req), f);
    if (x->ws == NULL) {
        pt_req_fail(req, PT_ERR_INTERNAL, "jwt: no worker state");
        return PT_FILTER_ERROR;
    }
    /* identity headers are ours alone: what the client sent under those names goes first */
    pt_headers_t *h = pt_req_headers(req);
    for (size_t i = 0; i < c->fwd_cnt; i++)
        pt_headers_remove(h, c->fwd[i].header);
    const char *why = NULL;
    int r = find_token(c, req, &x->token, &why);
    if (r <= 0)
        return refuse(c, req, r == 0 ? NULL : why);
    if (x->token.len > c->max_token_size)
        return refuse(c, req, "token too large");
    jwt_worker_t *ws = x->ws;
    if (ws->sets != 0) {
        int64_t now = (int64_t)time(NULL);
        entry_t *e = cache_find(ws, tok_hash(ws->seed, x->token.base, x->token.len), x->token, now);
        if (e != NULL)
            return accept_token(c, x, e->claims);
    }
    return decide(c, x);
}

static void on_log(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)f;
    (void)req;
    waiter_abort(ctx);
}

/* ---- workers ------------------------------------------------------------------------ */

static void on_first_fetch(void *ud)
{
    jwt_worker_t *ws = ud;
    ws->refresh = NULL;
    if (ws->fetch == NULL)
        fetch_start(ws);
}

static int worker_init(const pt_filter_t *f, pt_worker_t *w)
{
    const jwt_conf_t *c = f->conf;
    jwt_worker_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        return PT_ERR_NOMEM;
    ws->w = w;
    ws->conf = c;
    if (c->cache_size > 0) {
        size_t sets = 1;
        while (sets * CACHE_WAYS < (size_t)c->cache_size)
            sets <<= 1;
        ws->cache = calloc(sets * CACHE_WAYS, sizeof(*ws->cache));
        if (ws->cache == NULL) {
            free(ws);
            return PT_ERR_NOMEM;
        }
        ws->sets = sets;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ws->seed = tok_hash((uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull, (const char *)&ws, sizeof(ws));
    if (c->cluster != NULL && pt_timer_start(w, 0, on_first_fetch, ws, &ws->refresh) != 0) {
        free(ws->cache);
        free(ws);
        return PT_ERR_NOMEM;
    }
    pt_worker_filter_state_set(w, f, ws);
    return 0;
}

static void worker_dispose(const pt_filter_t *f, pt_worker_t *w)
{
    jwt_worker_t *ws = pt_worker_filter_state(w, f);
    if (ws == NULL)
        return;
    while (ws->waiters != NULL) /* requests torn down later must not reach freed state */
        waiter_abort(ws->waiters);
    pt_timer_cancel(ws->refresh);
    pt_fetch_cancel(ws->fetch);
    cache_flush(ws);
    free(ws->cache);
    pt_jwt_keyset_free(ws->ks);
    free(ws->ks_body);
    free(ws);
    pt_worker_filter_state_set(w, f, NULL);
}

const pt_filter_def_t pt_filter_jwt = {
    .abi = PT_FILTER_ABI,
    .name = "jwt",
    .priority = 900,
    .conf_size = sizeof(jwt_conf_t),
    .ctx_size = sizeof(jwt_ctx_t),
    .parse_conf = parse_conf,
    .worker_init = worker_init,
    .worker_dispose = worker_dispose,
    .on_request_headers = on_request_headers,
    .on_log = on_log,
};
