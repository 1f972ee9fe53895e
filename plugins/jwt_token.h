/*
 * jwt_token.h -- JWS compact tokens and JWK sets, verified with OpenSSL 3 EVP.
 *
 * The pieces of the `jwt` filter that know nothing of requests: strict
 * base64url, JWK set parsing into EVP keys, signature verification and the
 * registered-claim checks. No JWT library: see docs/configuration.md#jwt for
 * why (Debian's libjwt lacks PS* / EdDSA on the versions we ship against,
 * gives no control over key selection by `kid` and the key's `alg`/`use`,
 * and allocates its own token tree per call).
 *
 * Rules (RFC 7515/7517/7518/8725):
 *   - the key decides the algorithm: an RSA key verifies RS* / PS* only, an
 *     EC key the ES* of its curve only, an Ed25519 key EdDSA only, an `oct`
 *     secret HS* only; a key's `alg` narrows that to one; `none` never.
 *   - `kid` in the token selects the key; without `kid` every key that fits
 *     the algorithm is tried.
 *   - keys whose `use` is not "sig" (or whose key_ops lack "verify") are left
 *     out; RSA keys shorter than 2048 bits and HMAC secrets shorter than 32
 *     bytes are refused.
 *   - a header with `crit` is refused (no extension is understood).
 */
#ifndef PT_PLUGINS_JWT_TOKEN_H
#define PT_PLUGINS_JWT_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct evp_pkey_st;

/* Algorithms, one bit each (a key's allow-list is a mask). */
enum {
    PT_JWT_RS256 = 1u << 0, PT_JWT_RS384 = 1u << 1, PT_JWT_RS512 = 1u << 2,
    PT_JWT_PS256 = 1u << 3, PT_JWT_PS384 = 1u << 4, PT_JWT_PS512 = 1u << 5,
    PT_JWT_ES256 = 1u << 6, PT_JWT_ES384 = 1u << 7, PT_JWT_ES512 = 1u << 8,
    PT_JWT_EDDSA = 1u << 9,
    PT_JWT_HS256 = 1u << 10, PT_JWT_HS384 = 1u << 11, PT_JWT_HS512 = 1u << 12,
};
#define PT_JWT_ALG_RSA (PT_JWT_RS256 | PT_JWT_RS384 | PT_JWT_RS512 | PT_JWT_PS256 | PT_JWT_PS384 | PT_JWT_PS512)
#define PT_JWT_ALG_HMAC (PT_JWT_HS256 | PT_JWT_HS384 | PT_JWT_HS512)
#define PT_JWT_NALGS 13

/* Sizes refused before any work (a token over the cap is a 401, never a big allocation). */
#define PT_JWT_MAX_KEYS 64
#define PT_JWT_MAX_KID 256
#define PT_JWT_MAX_HEADER 1024 /* decoded JOSE header bytes */

/** The name of one algorithm bit ("RS256"), or "?" */
const char *pt_jwt_alg_name(unsigned alg);
/** The bit of an algorithm name, or 0 (unknown, and "none"). */
unsigned pt_jwt_alg_from_name(const char *name, size_t len);

/**
 * Strict base64url (RFC 4648 §5, no padding, no white space, unused bits
 * zero). Writes at most (len * 3) / 4 bytes to `out`. Returns the decoded
 * length, or -1.
 */
long pt_jwt_b64url_decode(const char *in, size_t len, unsigned char *out);

typedef struct pt_jwt_key {
    char *kid;                  /* NULL: none */
    unsigned algs;              /* algorithms this key may verify */
    struct evp_pkey_st *pkey;   /* RSA / EC / Ed25519 public key, or NULL for a secret */
    unsigned char *secret;      /* HMAC secret */
    size_t secret_len;
    struct evp_mac_ctx_st *mac[3]; /* HMAC-SHA256/384/512 keyed with the secret: dup'ed per token */
    struct evp_md_ctx_st *vctx[PT_JWT_NALGS]; /* per algorithm bit: a verification context
                                               * initialised once, copied per token */
} pt_jwt_key_t;

typedef struct pt_jwt_keyset {
    pt_jwt_key_t *keys;
    size_t cnt;
    /* SHA-256/384/512 fetched once: OpenSSL 3's implicit fetch per call costs
     * microseconds (a lock and a lookup); the set is read-only afterwards. */
    struct evp_md_st *md[3];
} pt_jwt_keyset_t;

/**
 * Parses a JWK set (`{"keys":[...]}`; a single JWK object is accepted too).
 * `allow_secrets`: `oct` keys are accepted (a local file) or refused (a set
 * fetched from an issuer never carries secrets). On error returns NULL and
 * writes a message naming the key ("key 2 (kid \"k1\"): ...") to err.
 */
pt_jwt_keyset_t *pt_jwt_keyset_parse(const char *json, size_t len, bool allow_secrets, char *err,
                                     size_t errlen);

/** A set of one HMAC secret (a `secret_file`). NULL + err when unusable (short, or a PEM key). */
pt_jwt_keyset_t *pt_jwt_keyset_secret(const unsigned char *secret, size_t len, char *err,
                                      size_t errlen);

void pt_jwt_keyset_free(pt_jwt_keyset_t *ks);

/* Verification outcomes (the description goes to the client in error_description). */
typedef enum pt_jwt_err {
    PT_JWT_OK = 0,
    PT_JWT_E_MALFORMED,   /* not three base64url parts, bad JSON, oversized */
    PT_JWT_E_ALG,         /* none, unknown, or no key allows it */
    PT_JWT_E_KID,         /* the kid names no key of the set */
    PT_JWT_E_SIGNATURE,   /* no fitting key verifies the signature */
    PT_JWT_E_CRIT,        /* a crit header */
    PT_JWT_E_EXPIRED,
    PT_JWT_E_NOT_YET,     /* nbf / iat in the future */
    PT_JWT_E_ISSUER,
    PT_JWT_E_AUDIENCE,
    PT_JWT_E_CLAIM,       /* a required claim missing, a registered claim of the wrong type */
} pt_jwt_err_t;

/** A short public description of an outcome ("token expired"). */
const char *pt_jwt_strerror(pt_jwt_err_t e);

/**
 * Verifies the signature of compact token `tok` against `ks` and parses its
 * payload. On PT_JWT_OK *payload is a new json-c object the caller puts.
 * PT_JWT_E_KID (the token's kid names no key) lets a fetched set be refreshed.
 */
pt_jwt_err_t pt_jwt_verify(const pt_jwt_keyset_t *ks, const char *tok, size_t len,
                           struct json_object **payload);

typedef struct pt_jwt_policy {
    const char *issuer;          /* NULL: any */
    const char *const *audiences; /* NULL/0: any */
    size_t audience_cnt;
    const char *const *required; /* claim names that must be present */
    size_t required_cnt;
    int64_t skew_s;
    bool require_exp;
} pt_jwt_policy_t;

/**
 * Checks exp / nbf / iat (with skew), iss, aud and the required claims at
 * `now` (seconds since the epoch). *exp_out gets exp (or INT64_MAX without one).
 */
pt_jwt_err_t pt_jwt_check_claims(struct json_object *payload, const pt_jwt_policy_t *p,
                                 int64_t now, int64_t *exp_out);

#endif /* PT_PLUGINS_JWT_TOKEN_H */
