/*
 * oauth2_introspection.c -- the `oauth2_introspection` filter: opaque bearer
 * tokens checked with the authorization server (RFC 7662).
 *
 *   clusters: [ { name: idp, endpoints: [ "https://idp.example:443" ] } ]
 *   ...
 *   - oauth2_introspection: { endpoint: "https://idp.example/oauth2/introspect",
 *                             client_id: portico, client_secret_file: idp.secret, cache: 30s }
 *
 * The call goes through the SDK's pt_fetch_* (the upstream primitive, its
 * pools, TLS verification and endpoint policy), so the endpoint's origin must
 * be an endpoint of a configured cluster (or `cluster:` names it); `endpoint`
 * gives the path. Per request: the Bearer token of `Authorization`, a form
 * POST `token=...&token_type_hint=access_token` with HTTP Basic client
 * authentication (RFC 6749 2.3.1: id and secret form-encoded, then base64).
 *
 * Answers:
 * - no Bearer token: 401, `WWW-Authenticate: Bearer realm="portico"`;
 * - `active: false` (or an `exp` in the past): 401,
 *   `WWW-Authenticate: Bearer error="invalid_token"`;
 * - the server unreachable, slow (`timeout`), or answering anything but a
 *   200 with a JSON object holding a boolean `active`: 503 UNAVAILABLE (fail
 *   closed: the token could not be checked), never cached;
 * - active: the request goes on with the response's members as request
 *   variables `oauth2.NAME` (strings as they are, numbers and booleans as
 *   text, arrays of those joined with spaces, objects left out).
 *
 * Verdicts (active or not) are cached per worker for `cache` (never past the
 * token's `exp`), keyed by the SHA-256 of the token -- the token itself is
 * never stored -- in a bounded table of `max_cache` entries (a slot taken by
 * another token is replaced: the cache forgets, it never grows).
 */
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/async.h"
#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/req.h"
#include "portico/status.h"

#define MAX_SECRET 4096
#define MAX_TOKEN 8192
#define MAX_RESPONSE (64 * 1024)

typedef struct oi_conf {
    const char *endpoint, *cluster_name, *client_id, *secret_file;
    uint64_t cache_ms, timeout_ms;
    uint32_t max_cache;
    const pt_cluster_ref_t *cluster;
    pt_str_t path, authority;
    char *basic; /* "Basic base64(id:secret)" */
} oi_conf_t;

typedef struct claim {
    char *name, *value; /* name with its "oauth2." prefix */
} claim_t;

typedef struct centry {
    unsigned char digest[32];
    bool used, active;
    uint64_t expires_ms;
    claim_t *claims;
    size_t claim_cnt;
} centry_t;

typedef struct oi_worker {
    centry_t *v;
    size_t cnt;
} oi_worker_t;

typedef struct oi_ctx {
    pt_req_t *req;
    const pt_filter_t *f;
    pt_fetch_t *fetch;
    unsigned char digest[32];
} oi_ctx_t;

/* ---- load time ------------------------------------------------------------------- */

static const pt_conf_field_t fields[] = {
    {"endpoint", PT_CONF_T_STR, offsetof(oi_conf_t, endpoint), 0, 0, true, NULL},
    {"cluster", PT_CONF_T_STR, offsetof(oi_conf_t, cluster_name), 0, 0, false, NULL},
    {"client_id", PT_CONF_T_STR, offsetof(oi_conf_t, client_id), 0, 0, true, NULL},
    {"client_secret_file", PT_CONF_T_PATH, offsetof(oi_conf_t, secret_file), 0, 0, true, NULL},
    {"cache", PT_CONF_T_DURATION, offsetof(oi_conf_t, cache_ms), 0, 86400000, false, NULL},
    {"timeout", PT_CONF_T_DURATION, offsetof(oi_conf_t, timeout_ms), 1, 60000, false, NULL},
    {"max_cache", PT_CONF_T_UINT32, offsetof(oi_conf_t, max_cache), 1, 1u << 22, false, NULL},
    PT_CONF_FIELDS_END,
};

/* application/x-www-form-urlencoded: unreserved bytes kept, space as '+'. */
static size_t form_encode(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[o++] = (char)ch;
        } else if (ch == ' ') {
            out[o++] = '+';
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    return o;
}

static int read_secret(pt_conf_cx_t *cx, const pt_conf_node_t *at, const char *path, char *buf,
                       size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return pt_conf_error(cx, at, "cannot read client_secret_file '%s'", path);
    size_t n = fread(buf, 1, MAX_SECRET + 1, f);
    fclose(f);
    buf[n < MAX_SECRET + 1 ? n : MAX_SECRET] = '\0';
    n = strcspn(buf, "\r\n");
    if (n == 0 || n > MAX_SECRET)
        return pt_conf_error(cx, at, "client_secret_file '%s': the first line must hold the "
                                     "secret (1 to %d bytes)", path, MAX_SECRET);
    *len = n;
    return 0;
}

/* Splits `endpoint` into its origin and path, and finds the cluster serving the origin. */
static int resolve_endpoint(pt_conf_cx_t *cx, const pt_conf_node_t *node, oi_conf_t *c)
{
    const pt_conf_node_t *at = pt_conf_map_get(node, "endpoint");
    const char *e = c->endpoint;
    const char *sep = strstr(e, "://");
    if (sep == NULL || (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0))
        return pt_conf_error(cx, at, "endpoint '%s': expected an http:// or https:// URL", e);
    const char *host = sep + 3;
    const char *slash = strchr(host, '/');
    size_t origin_len = slash != NULL ? (size_t)(slash - e) : strlen(e);
    c->path = pt_str_c(slash != NULL ? slash : "/");
    c->authority = (pt_str_t){host, origin_len - (size_t)(host - e)};
    if (c->cluster_name != NULL) {
        c->cluster = pt_conf_cluster(cx, pt_conf_map_get(node, "cluster"), c->cluster_name);
        return c->cluster != NULL ? 0 : PT_ERR_INVALID;
    }
    /* the cluster with an endpoint of this origin (default ports written or not) */
    const char *name = pt_conf_cluster_for_url(cx, e);
    if (name != NULL) {
        c->cluster = pt_conf_cluster(cx, at, name);
        return c->cluster != NULL ? 0 : PT_ERR_INVALID;
    }
    return pt_conf_error(cx, at,
                         "endpoint '%s': no cluster has the endpoint %.*s (add one to "
                         "`clusters:`, or name it with `cluster:`)",
                         e, (int)origin_len, e);
}

static int parse_conf(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *conf)
{
    oi_conf_t *c = conf;
    c->cache_ms = 30000;
    c->timeout_ms = 2000;
    c->max_cache = 10000;
    if (pt_conf_parse_fields(cx, node, fields, c) != 0)
        return PT_ERR_INVALID;
    if (resolve_endpoint(cx, node, c) != 0)
        return PT_ERR_INVALID;
    char secret[MAX_SECRET + 2];
    size_t slen = 0;
    if (read_secret(cx, pt_conf_map_get(node, "client_secret_file"), c->secret_file, secret,
                    &slen) != 0)
        return PT_ERR_INVALID;
    size_t idlen = strlen(c->client_id);
    char *raw = pt_conf_alloc(cx, 3 * (idlen + slen) + 2);
    size_t n = form_encode(raw, c->client_id, idlen);
    raw[n++] = ':';
    n += form_encode(raw + n, secret, slen);
    memset(secret, 0, sizeof(secret));
    c->basic = pt_conf_alloc(cx, 6 + 4 * (n / 3 + 1) + 1);
    memcpy(c->basic, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)c->basic + 6, (const unsigned char *)raw, (int)n);
    memset(raw, 0, n);
    return 0;
}

/* ---- the per-worker cache ---------------------------------------------------------- */

static void entry_clear(centry_t *e)
{
    for (size_t i = 0; i < e->claim_cnt; i++) {
        free(e->claims[i].name);
        free(e->claims[i].value);
    }
    free(e->claims);
    e->claims = NULL;
    e->claim_cnt = 0;
    e->used = false;
}

static int worker_init(const pt_filter_t *f, pt_worker_t *w)
{
    const oi_conf_t *c = f->conf;
    oi_worker_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PT_ERR_NOMEM;
    s->cnt = c->cache_ms != 0 ? c->max_cache : 0;
    if (s->cnt != 0 && (s->v = calloc(s->cnt, sizeof(*s->v))) == NULL) {
        free(s);
        return PT_ERR_NOMEM;
    }
    pt_worker_filter_state_set(w, f, s);
    return 0;
}

static void worker_dispose(const pt_filter_t *f, pt_worker_t *w)
{
    oi_worker_t *s = pt_worker_filter_state(w, f);
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->cnt; i++)
        entry_clear(&s->v[i]);
    free(s->v);
    free(s);
    pt_worker_filter_state_set(w, f, NULL);
}

static centry_t *cache_slot(oi_worker_t *s, const unsigned char d[32])
{
    if (s == NULL || s->cnt == 0)
        return NULL;
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return &s->v[h % s->cnt];
}

/* ---- answers ------------------------------------------------------------------------ */

static pt_fstatus_t refuse(pt_req_t *req, const char *www, const char *detail)
{
    pt_headers_set(pt_req_resp_headers(req), PT_STR("www-authenticate"), pt_str_c(www));
    pt_req_reject(req, PT_ERR_UNAUTHORIZED, detail);
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t unavailable(pt_req_t *req)
{
    pt_req_reject(req, PT_ERR_UNAVAILABLE, NULL);
    return PT_FILTER_RESPOND;
}

static pt_fstatus_t apply(pt_req_t *req, bool active, const claim_t *v, size_t cnt)
{
    if (!active)
        return refuse(req, "Bearer error=\"invalid_token\", error_description=\"the token is not active\"",
                      "the token is not active");
    for (size_t i = 0; i < cnt; i++)
        if (pt_req_var_set(req, pt_str_c(v[i].name), pt_str_c(v[i].value)) != 0) {
            pt_req_fail(req, PT_ERR_LIMIT, "oauth2_introspection: request arena full");
            return PT_FILTER_ERROR;
        }
    return PT_FILTER_CONTINUE;
}

/* A member's value as text, or NULL for what is not kept (objects, nulls). */
static char *claim_text(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_string:
        return strdup(json_object_get_string(o));
    case json_type_int:
    case json_type_double:
    case json_type_boolean:
        return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    case json_type_array: {
        size_t n = json_object_array_length(o), len = 0;
        for (size_t i = 0; i < n; i++) {
            struct json_object *it = json_object_array_get_idx(o, i);
            if (json_object_get_type(it) == json_type_object ||
                json_object_get_type(it) == json_type_array)
                return NULL;
            len += strlen(json_object_get_string(it)) + 1;
        }
        char *s = malloc(len + 1), *p = s;
        if (s == NULL)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            const char *t = json_object_get_string(json_object_array_get_idx(o, i));
            size_t tl = strlen(t);
            if (i != 0)
                *p++ = ' ';
            memcpy(p, t, tl);
            p += tl;
        }
        *p = '\0';
        return s;
    }
    default:
        return NULL;
    }
}

/* Reads the answer into `e` (active, expiry, claims). Returns 0, or -1 when it is not one. */
static int read_answer(const pt_fetch_resp_t *resp, const oi_conf_t *c, centry_t *e)
{
    if (resp->status != 200)
        return -1;
    struct json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return -1;
    struct json_object *o = json_tokener_parse_ex(tok, resp->body.base, (int)resp->body.len);
    bool complete = json_tokener_get_error(tok) == json_tokener_success &&
                    json_tokener_get_parse_end(tok) == resp->body.len;
    json_tokener_free(tok);
    struct json_object *act = NULL;
    if (o == NULL || !complete || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "active", &act) ||
        !json_object_is_type(act, json_type_boolean)) {
        json_object_put(o);
        return -1;
    }
    e->active = json_object_get_boolean(act);
    uint64_t now_ms = pt_clock_ms();
    e->expires_ms = now_ms + c->cache_ms;
    struct json_object *exp = NULL;
    if (e->active && json_object_object_get_ex(o, "exp", &exp) &&
        json_object_is_type(exp, json_type_int)) {
        int64_t left = json_object_get_int64(exp) - (int64_t)time(NULL);
        if (left <= 0)
            e->active = false; /* expired: the server should have said so */
        else if ((uint64_t)left * 1000 < c->cache_ms)
            e->expires_ms = now_ms + (uint64_t)left * 1000;
    }
    if (e->active) {
        size_t n = (size_t)json_object_object_length(o);
        e->claims = calloc(n != 0 ? n : 1, sizeof(*e->claims));
        json_object_object_foreach(o, key, val)
        {
            char *v = e->claims != NULL ? claim_text(val) : NULL;
            if (v == NULL)
                continue;
            size_t kl = strlen(key);
            char *name = malloc(kl + 8);
            if (name == NULL) {
                free(v);
                continue;
            }
            snprintf(name, kl + 8, "oauth2.%s", key);
            e->claims[e->claim_cnt++] = (claim_t){name, v};
        }
    }
    json_object_put(o);
    return 0;
}

static void on_answer(void *ud, int st, const pt_fetch_resp_t *resp)
{
    oi_ctx_t *x = ud;
    x->fetch = NULL;
    const oi_conf_t *c = x->f->conf;
    pt_req_t *req = x->req;
    centry_t e = {.used = true};
    memcpy(e.digest, x->digest, sizeof(e.digest));
    if (st != 0 || read_answer(resp, c, &e) != 0) {
        entry_clear(&e);
        pt_chain_resume(req, unavailable(req)); /* documented: fail closed, not cached */
        return;
    }
    pt_fstatus_t verdict = apply(req, e.active, e.claims, e.claim_cnt);
    centry_t *slot = cache_slot(pt_worker_filter_state(pt_req_worker(req), x->f), x->digest);
    if (slot != NULL) {
        entry_clear(slot);
        *slot = e;
    } else {
        entry_clear(&e);
    }
    pt_chain_resume(req, verdict);
}

static void on_abort(void *data)
{
    oi_ctx_t *x = data;
    pt_fetch_cancel(x->fetch);
    x->fetch = NULL;
}

static pt_fstatus_t on_request_headers(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    const oi_conf_t *c = f->conf;
    oi_ctx_t *x = ctx;
    x->req = req;
    x->f = f;
    pt_str_t auth = pt_headers_get(pt_req_headers(req), PT_STR("authorization"));
    pt_str_t tok = PT_STR_NULL;
    if (auth.len > 7 && pt_str_ieq((pt_str_t){auth.base, 7}, PT_STR("bearer ")))
        tok = pt_str_trim_ows((pt_str_t){auth.base + 7, auth.len - 7});
    if (tok.len == 0)
        return refuse(req, "Bearer realm=\"portico\"", "a bearer token is required");
    if (tok.len > MAX_TOKEN)
        return refuse(req, "Bearer error=\"invalid_token\", error_description=\"token too long\"",
                      "token too long");
    unsigned int dl = 0;
    EVP_Digest(tok.base, tok.len, x->digest, &dl, EVP_sha256(), NULL);
    centry_t *e = cache_slot(pt_worker_filter_state(pt_req_worker(req), f), x->digest);
    if (e != NULL && e->used && memcmp(e->digest, x->digest, 32) == 0) {
        if (pt_clock_ms() < e->expires_ms)
            return apply(req, e->active, e->claims, e->claim_cnt);
        entry_clear(e);
    }
    /* the form body: token=...&token_type_hint=access_token */
    char *body = pt_arena_alloc(pt_req_arena(req), 6 + 3 * tok.len + 32);
    if (body == NULL) {
        pt_req_fail(req, PT_ERR_LIMIT, "oauth2_introspection: request arena full");
        return PT_FILTER_ERROR;
    }
    static const char hint[] = "&token_type_hint=access_token";
    size_t n = (size_t)snprintf(body, 7, "token=");
    n += form_encode(body + n, tok.base, tok.len);
    n += (size_t)snprintf(body + n, sizeof(hint), "%s", hint);
    pt_headers_t h;
    pt_headers_init(&h, pt_req_arena(req));
    pt_headers_add_nocopy(&h, PT_STR("content-type"), PT_STR("application/x-www-form-urlencoded"));
    pt_headers_add_nocopy(&h, PT_STR("accept"), PT_STR("application/json"));
    pt_headers_add_nocopy(&h, PT_STR("authorization"), pt_str_c(c->basic));
    pt_fetch_req_t r = {.cluster = c->cluster,
                        .method = PT_STR("POST"),
                        .path = c->path,
                        .authority = c->authority,
                        .headers = &h,
                        .body = {body, n},
                        .timeout_ms = c->timeout_ms,
                        .max_response = MAX_RESPONSE};
    if (pt_req_on_abort(req, on_abort, x) != 0 ||
        pt_fetch_start(pt_req_worker(req), &r, on_answer, x, &x->fetch) != 0)
        return unavailable(req);
    return PT_FILTER_SUSPEND;
}

const pt_filter_def_t pt_filter_oauth2_introspection = {
    .abi = PT_FILTER_ABI,
    .name = "oauth2_introspection",
    .priority = 900,
    .conf_size = sizeof(oi_conf_t),
    .ctx_size = sizeof(oi_ctx_t),
    .parse_conf = parse_conf,
    .worker_init = worker_init,
    .worker_dispose = worker_dispose,
    .on_request_headers = on_request_headers,
};
