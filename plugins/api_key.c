/*
 * api_key.c -- the `api_key` filter: consumers identified by a secret key.
 *
 *   - api_key:
 *       header: x-api-key          # default x-api-key
 *       query: api_key             # optional: also accept ?api_key=KEY
 *       consumers:
 *         - { name: alice, key_sha256: 2bb80d53...e9 }   # sha256sum of the key, hex
 *
 * Only SHA-256 digests of the keys are configured (nothing secret in the
 * config file). A request's key is hashed once and compared with EVERY
 * consumer's digest with CRYPTO_memcmp, the matching index picked without a
 * branch, so the time taken says nothing about which consumer (if any)
 * matched nor how many bytes did. Missing or unknown key: 401 through
 * pt_req_reject (UNAUTHENTICATED for gRPC clients), with no WWW-Authenticate
 * header: no registered HTTP authentication scheme carries API keys, and
 * "Bearer" would send OAuth clients the wrong way.
 *
 * On success the key leaves the request (the header, and the query parameter
 * with its value: upstreams and the access log never see it), any client-sent
 * `x-consumer` is removed and `x-consumer: NAME` set, and the request variable
 * `consumer` is NAME for later filters (`${consumer}` in header rules, rate
 * limit keys).
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "portico/conf.h"
#include "portico/filter.h"
#include "portico/headers.h"
#include "portico/req.h"
#include "portico/status.h"

#define MAX_KEY 4096 /* longer keys are refused unhashed */

typedef struct consumer {
    const char *name;
    unsigned char digest[SHA256_DIGEST_LENGTH];
} consumer_t;

typedef struct api_key_conf {
    const char *header; /* lowercase */
    const char *query;  /* NULL: keys in the query are not accepted */
    consumer_t *consumers;
    size_t cnt;
    EVP_MD *sha256; /* fetched once at load: SHA256() would look the algorithm up per call */
} api_key_conf_t;

/* ---- config ----------------------------------------------------------------------- */

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static int parse_consumer(pt_conf_cx_t *cx, const pt_conf_node_t *n, consumer_t *out)
{
    if (n->kind != PT_CONF_MAP)
        return pt_conf_error(cx, n, "api_key: a consumer is a map { name: NAME, key_sha256: HEX }");
    int rc = 0;
    for (size_t i = 0; i < n->cnt; i++)
        if (strcmp(n->keys[i]->str, "name") != 0 && strcmp(n->keys[i]->str, "key_sha256") != 0)
            rc = pt_conf_error(cx, n->keys[i], "api_key: unknown consumer key '%s' (name, key_sha256)",
                               n->keys[i]->str);
    const pt_conf_node_t *name = pt_conf_map_get(n, "name");
    const pt_conf_node_t *hex = pt_conf_map_get(n, "key_sha256");
    if (name == NULL || name->kind != PT_CONF_SCALAR || name->len == 0) {
        rc = pt_conf_error(cx, name != NULL ? name : n, "api_key: consumer needs a name");
    } else {
        for (size_t i = 0; i < name->len; i++)
            if (!token_char(name->str[i]) && !(name->str[i] >= 'A' && name->str[i] <= 'Z')) {
                rc = pt_conf_error(cx, name,
                                   "api_key: consumer name '%s': letters, digits, '-', '_', '.' only",
                                   name->str);
                break;
            }
        out->name = name->str;
    }
    if (hex == NULL || hex->kind != PT_CONF_SCALAR)
        return pt_conf_error(cx, hex != NULL ? hex : n,
                             "api_key: consumer needs key_sha256 (the key's SHA-256, 64 hex digits)");
    if (hex->len != 2 * SHA256_DIGEST_LENGTH)
        return pt_conf_error(cx, hex, "api_key: key_sha256 must be 64 hex digits (got %zu characters)",
                             hex->len);
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        int h = pt_str_hexval(hex->str[2 * i]), l = pt_str_hexval(hex->str[2 * i + 1]);
        if (h < 0 || l < 0)
            return pt_conf_error(cx, hex, "api_key: key_sha256 has a character that is not hex");
        out->digest[i] = (unsigned char)(h << 4 | l);
    }
    return rc;
}

static int lower_name(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char *what, const char **out)
{
    if (n->kind != PT_CONF_SCALAR || n->len == 0)
        return pt_conf_error(cx, n, "api_key: %s must be a name", what);
    char *s = pt_conf_strdup(cx, n->str, n->len);
    for (size_t i = 0; i < n->len; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] + 32);
        if (!token_char(s[i]))
            return pt_conf_error(cx, n, "api_key: %s '%s' is not a valid name", what, n->str);
    }
    *out = s;
    return 0;
}

static void api_key_dispose(void *vconf)
{
    api_key_conf_t *c = vconf;
    EVP_MD_free(c->sha256);
    c->sha256 = NULL;
}

static int api_key_parse(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *vconf)
{
    api_key_conf_t *c = vconf;
    c->header = "x-api-key";
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (c->sha256 == NULL)
        return pt_conf_error(cx, node, "api_key: OpenSSL has no SHA-256");
    if (node == NULL || node->kind != PT_CONF_MAP)
        return pt_conf_error(cx, node, "api_key: expected a map with header, query, consumers");
    int rc = 0;
    for (size_t i = 0; i < node->cnt; i++) {
        const char *k = node->keys[i]->str;
        const pt_conf_node_t *v = node->items[i];
        if (strcmp(k, "header") == 0)
            rc |= lower_name(cx, v, "header", &c->header);
        else if (strcmp(k, "query") == 0)
            rc |= lower_name(cx, v, "query", &c->query);
        else if (strcmp(k, "consumers") != 0)
            rc = pt_conf_error(cx, node->keys[i],
                               "api_key: unknown key '%s' (header, query, consumers)", k);
    }
    const pt_conf_node_t *list = pt_conf_map_get(node, "consumers");
    if (list == NULL || list->kind != PT_CONF_SEQ || list->cnt == 0)
        return pt_conf_error(cx, list != NULL ? list : node,
                             "api_key: consumers must be a non-empty list");
    c->consumers = pt_conf_alloc(cx, list->cnt * sizeof(*c->consumers));
    for (size_t i = 0; i < list->cnt; i++) {
        if (parse_consumer(cx, list->items[i], &c->consumers[c->cnt]) != 0) {
            rc = PT_ERR_INVALID;
            continue;
        }
        for (size_t j = 0; j < c->cnt; j++) {
            if (strcmp(c->consumers[j].name, c->consumers[c->cnt].name) == 0)
                rc = pt_conf_error(cx, list->items[i], "api_key: consumer name '%s' appears twice",
                                   c->consumers[j].name);
            else if (memcmp(c->consumers[j].digest, c->consumers[c->cnt].digest,
                            SHA256_DIGEST_LENGTH) == 0)
                rc = pt_conf_error(cx, list->items[i],
                                   "api_key: consumers '%s' and '%s' have the same key",
                                   c->consumers[j].name, c->consumers[c->cnt].name);
        }
        c->cnt++;
    }
    return rc != 0 ? PT_ERR_INVALID : 0;
}

/* ---- request time ------------------------------------------------------------------- */

/*
 * Finds `name` among the query's parameters: returns the raw value of the
 * first one, and rewrites *query without every `name=...` pair (arena copy).
 * PT_STR_NULL when absent (the query is then left alone).
 */
static pt_str_t take_query_param(pt_req_t *req, pt_str_t name, pt_str_t *query)
{
    pt_str_t q = *query, found = PT_STR_NULL;
    char *rest = NULL;
    size_t o = 0;
    const char *p = q.base, *end = q.base + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        pt_str_t k = {p, (size_t)((eq != NULL ? eq : e) - p)};
        if (pt_str_eq(k, name)) {
            if (found.base == NULL)
                found = eq != NULL ? (pt_str_t){eq + 1, (size_t)(e - eq - 1)} : (pt_str_t){e, 0};
            if (rest == NULL) {
                rest = pt_arena_alloc(pt_req_arena(req), q.len + 1);
                if (rest == NULL)
                    return PT_STR_NULL;
                o = (size_t)(p - q.base);
                memcpy(rest, q.base, o); /* what came before, '&' included */
            }
        } else if (rest != NULL) {
            if (o > 0 && rest[o - 1] != '&')
                rest[o++] = '&';
            memcpy(rest + o, p, (size_t)(e - p));
            o += (size_t)(e - p);
        }
        p = e < end ? e + 1 : end;
    }
    if (rest != NULL) {
        while (o > 0 && rest[o - 1] == '&')
            o--;
        *query = (pt_str_t){rest, o};
    }
    return found;
}

/* Percent-decodes a query value into `out` (MAX_KEY bytes); -1 when malformed or too long. */
static long decode_key(pt_str_t v, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (o == MAX_KEY)
            return -1;
        char ch = v.base[i];
        if (ch == '%') {
            if (i + 2 >= v.len)
                return -1;
            int h = pt_str_hexval(v.base[i + 1]), l = pt_str_hexval(v.base[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (unsigned char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = (unsigned char)(ch == '+' ? ' ' : ch);
        }
    }
    return (long)o;
}

/* The index of the consumer whose digest is `d`, or -1; the same work whatever the answer. */
static long lookup(const api_key_conf_t *c, const unsigned char d[SHA256_DIGEST_LENGTH])
{
    long found = -1;
    for (size_t i = 0; i < c->cnt; i++) {
        /* eq is all ones when equal, 0 otherwise, without a branch on the bytes */
        long eq = -(long)(CRYPTO_memcmp(c->consumers[i].digest, d, SHA256_DIGEST_LENGTH) == 0);
        found = (found & ~eq) | ((long)i & eq);
    }
    return found;
}

static pt_fstatus_t api_key_request(const pt_filter_t *f, pt_req_t *req, void *ctx)
{
    (void)ctx;
    const api_key_conf_t *c = f->conf;
    pt_headers_t *h = pt_req_headers(req);
    pt_str_t hname = pt_str_c(c->header);
    pt_str_t key = pt_headers_get(h, hname);
    size_t nkeys = pt_headers_count(h, hname);
    unsigned char buf[MAX_KEY];
    long klen = -1;
    if (c->query != NULL) {
        pt_str_t q = pt_req_query(req);
        pt_str_t qv = take_query_param(req, pt_str_c(c->query), &q);
        /* the key never goes upstream nor into the access log */
        if (q.base != pt_req_query(req).base && pt_req_set_query(req, q) != 0) {
            pt_req_fail(req, PT_ERR_LIMIT, "api_key: request arena full");
            return PT_FILTER_ERROR;
        }
        if (qv.base != NULL && key.base == NULL) {
            klen = decode_key(qv, buf);
            nkeys = klen >= 0 ? 1 : 0;
        } else if (qv.base != NULL) {
            nkeys++;
        }
    }
    bool too_long = false;
    if (key.base != NULL && nkeys == 1) {
        too_long = key.len > MAX_KEY; /* no consumer has such a key: not worth hashing */
        if (!too_long) {
            memcpy(buf, key.base, key.len);
            klen = (long)key.len;
        }
    }
    pt_headers_remove(h, hname);
    pt_headers_remove(h, PT_STR("x-consumer"));
    if (nkeys > 1) {
        pt_req_reject(req, PT_ERR_UNAUTHORIZED, "more than one API key");
        return PT_FILTER_RESPOND;
    }
    if (klen <= 0) {
        pt_req_reject(req, PT_ERR_UNAUTHORIZED, too_long ? "API key not valid" : "API key missing");
        return PT_FILTER_RESPOND;
    }
    unsigned char d[SHA256_DIGEST_LENGTH];
    int ok = EVP_Digest(buf, (size_t)klen, d, NULL, c->sha256, NULL);
    OPENSSL_cleanse(buf, (size_t)klen);
    if (ok != 1) {
        pt_req_fail(req, PT_ERR_INTERNAL, "api_key: SHA-256 failed");
        return PT_FILTER_ERROR;
    }
    long i = lookup(c, d);
    if (i < 0) {
        pt_req_reject(req, PT_ERR_UNAUTHORIZED, "API key not valid");
        return PT_FILTER_RESPOND;
    }
    pt_str_t name = pt_str_c(c->consumers[i].name);
    if (pt_headers_add_nocopy(h, PT_STR("x-consumer"), name) != 0 ||
        pt_req_var_set(req, PT_STR("consumer"), name) != 0) {
        pt_req_fail(req, PT_ERR_HEADERS_TOO_LARGE, "api_key: request arena full");
        return PT_FILTER_ERROR;
    }
    return PT_FILTER_CONTINUE;
}

const pt_filter_def_t pt_filter_api_key = {
    .abi = PT_FILTER_ABI,
    .name = "api_key",
    .priority = 880, /* global chains: after jwt/oauth2 (900), before rate_limit (800: keys on ${consumer}) */
    .conf_size = sizeof(api_key_conf_t),
    .parse_conf = api_key_parse,
    .conf_dispose = api_key_dispose,
    .on_request_headers = api_key_request,
};
