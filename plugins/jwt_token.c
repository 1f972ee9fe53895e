/*
 * jwt_token.c -- JWS compact tokens and JWK sets through OpenSSL 3 EVP
 * (see jwt_token.h for the rules).
 */
#include "jwt_token.h"

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- algorithms ------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} alg_names[] = {
    {"RS256", PT_JWT_RS256}, {"RS384", PT_JWT_RS384}, {"RS512", PT_JWT_RS512},
    {"PS256", PT_JWT_PS256}, {"PS384", PT_JWT_PS384}, {"PS512", PT_JWT_PS512},
    {"ES256", PT_JWT_ES256}, {"ES384", PT_JWT_ES384}, {"ES512", PT_JWT_ES512},
    {"EdDSA", PT_JWT_EDDSA}, {"HS256", PT_JWT_HS256}, {"HS384", PT_JWT_HS384},
    {"HS512", PT_JWT_HS512},
};

const char *pt_jwt_alg_name(unsigned alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (alg_names[i].bit == alg)
            return alg_names[i].name;
    return "?";
}

unsigned pt_jwt_alg_from_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (strlen(alg_names[i].name) == len && memcmp(alg_names[i].name, name, len) == 0)
            return alg_names[i].bit;
    return 0;
}

static const char *const md_names[3] = {"SHA2-256", "SHA2-384", "SHA2-512"};

/* 0, 1, 2 for the SHA-2 size of `alg`; -1 for EdDSA (no separate digest). */
static int alg_md(unsigned alg)
{
    if (alg & (PT_JWT_RS256 | PT_JWT_PS256 | PT_JWT_ES256 | PT_JWT_HS256))
        return 0;
    if (alg & (PT_JWT_RS384 | PT_JWT_PS384 | PT_JWT_ES384 | PT_JWT_HS384))
        return 1;
    if (alg & (PT_JWT_RS512 | PT_JWT_PS512 | PT_JWT_ES512 | PT_JWT_HS512))
        return 2;
    return -1;
}

static unsigned alg_index(unsigned alg)
{
    return (unsigned)__builtin_ctz(alg);
}

/* EVP_DigestVerifyInit with the JOSE padding of `alg`: 0 or -1. */
static int verify_init(EVP_MD_CTX *mctx, EVP_PKEY *pkey, unsigned alg, const EVP_MD *md)
{
    EVP_PKEY_CTX *pctx = NULL;
    if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, pkey) != 1)
        return -1;
    if (alg & (PT_JWT_PS256 | PT_JWT_PS384 | PT_JWT_PS512))
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1
                   ? 0 : -1;
    if (alg & (PT_JWT_RS256 | PT_JWT_RS384 | PT_JWT_RS512))
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 ? 0 : -1;
    return 0;
}

/* ---- base64url ----------------------------------------------------------------- */

static signed char b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (signed char)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (signed char)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (signed char)(c - '0' + 52);
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long pt_jwt_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        signed char v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0)
        return -1; /* non-canonical: the unused low bits must be zero */
    return (long)o;
}

/* A decoded copy (NUL-terminated), or NULL. */
static unsigned char *b64url_dup(const char *in, size_t len, size_t *out_len)
{
    unsigned char *buf = malloc(len * 3 / 4 + 1);
    if (buf == NULL)
        return NULL;
    long n = pt_jwt_b64url_decode(in, len, buf);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *out_len = (size_t)n;
    return buf;
}

/* ---- strict JSON -------------------------------------------------------------- */

static json_object *parse_json(const char *s, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new_ex(32);
    if (tok == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
                      json_tokener_get_parse_end(tok) != len)) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* ---- JWK sets ------------------------------------------------------------------ */

static void key_clear(pt_jwt_key_t *k)
{
    for (int i = 0; i < 3; i++)
        EVP_MAC_CTX_free(k->mac[i]);
    for (int i = 0; i < PT_JWT_NALGS; i++)
        EVP_MD_CTX_free(k->vctx[i]);
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    if (k->secret != NULL)
        OPENSSL_clear_free(k->secret, k->secret_len);
    memset(k, 0, sizeof(*k));
}

void pt_jwt_keyset_free(pt_jwt_keyset_t *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->cnt; i++)
        key_clear(&ks->keys[i]);
    for (int i = 0; i < 3; i++)
        EVP_MD_free(ks->md[i]);
    free(ks->keys);
    free(ks);
}

/* The digests, and each secret's keyed HMAC contexts. */
static int keyset_prepare(pt_jwt_keyset_t *ks, char *err, size_t errlen)
{
    for (int i = 0; i < 3; i++)
        if ((ks->md[i] = EVP_MD_fetch(NULL, md_names[i], NULL)) == NULL)
            goto fail;
    EVP_MAC *hmac = NULL;
    for (size_t k = 0; k < ks->cnt; k++) {
        pt_jwt_key_t *key = &ks->keys[k];
        /* A verification context per algorithm, initialised once: copying it costs far
         * less than EVP_DigestVerifyInit's fetches per token. Where the provider cannot
         * copy one (vctx stays NULL, or the copy fails) verification initialises afresh. */
        for (unsigned a = 0; key->pkey != NULL && a < PT_JWT_NALGS; a++) {
            if (!(key->algs & (1u << a)))
                continue;
            int mi = alg_md(1u << a);
            EVP_MD_CTX *c = EVP_MD_CTX_new();
            EVP_MD_CTX *probe = EVP_MD_CTX_new();
            if (c != NULL && probe != NULL &&
                verify_init(c, key->pkey, 1u << a, mi >= 0 ? ks->md[mi] : NULL) == 0 &&
                EVP_MD_CTX_copy_ex(probe, c) == 1) {
                key->vctx[a] = c;
                c = NULL;
            }
            EVP_MD_CTX_free(c);
            EVP_MD_CTX_free(probe);
        }
        if (key->secret == NULL)
            continue;
        if (hmac == NULL && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
            goto fail;
        for (int i = 0; i < 3; i++) {
            OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md_names[i], 0),
                OSSL_PARAM_construct_end(),
            };
            key->mac[i] = EVP_MAC_CTX_new(hmac);
            if (key->mac[i] == NULL ||
                EVP_MAC_init(key->mac[i], key->secret, key->secret_len, params) != 1) {
                EVP_MAC_free(hmac);
                goto fail;
            }
        }
    }
    EVP_MAC_free(hmac);
    return 0;
fail:
    snprintf(err, errlen, "OpenSSL has no SHA-2 / HMAC");
    return -1;
}

typedef struct jwk_cx {
    char *err;
    size_t errlen;
    size_t index;
    const char *kid;
} jwk_cx_t;

__attribute__((format(printf, 2, 3))) static int jwk_fail(jwk_cx_t *cx, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cx->kid != NULL)
        snprintf(cx->err, cx->errlen, "key %zu (kid \"%.64s\"): %s", cx->index, cx->kid, msg);
    else
        snprintf(cx->err, cx->errlen, "key %zu: %s", cx->index, msg);
    return -1;
}

/* A member that must be a string when present: 1 found, 0 absent, -1 wrong type. */
static int jwk_str(json_object *jwk, const char *name, const char **out, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(jwk, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = json_object_get_string(v);
    if (len != NULL)
        *len = (size_t)json_object_get_string_len(v);
    return 1;
}

/* A base64url member decoded (required): a malloc'ed buffer, or NULL after jwk_fail. */
static unsigned char *jwk_b64(jwk_cx_t *cx, json_object *jwk, const char *name, size_t *n)
{
    const char *s;
    size_t len;
    int r = jwk_str(jwk, name, &s, &len);
    if (r <= 0) {
        jwk_fail(cx, r == 0 ? "missing \"%s\"" : "\"%s\" is not a string", name);
        return NULL;
    }
    unsigned char *b = b64url_dup(s, len, n);
    if (b == NULL || *n == 0) {
        free(b);
        jwk_fail(cx, "\"%s\" is not base64url", name);
        return NULL;
    }
    return b;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0 ||
        EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pkey;
}

static int jwk_rsa(jwk_cx_t *cx, json_object *jwk, pt_jwt_key_t *k)
{
    size_t nl = 0, el = 0;
    unsigned char *n = jwk_b64(cx, jwk, "n", &nl);
    unsigned char *e = n != NULL ? jwk_b64(cx, jwk, "e", &el) : NULL;
    int rc = -1;
    if (e == NULL)
        goto out;
    if (nl < 256) {
        jwk_fail(cx, "RSA modulus of %zu bits; at least 2048 are required", nl * 8);
        goto out;
    }
    if (nl > 1024 || el > 16) {
        jwk_fail(cx, "RSA key too large");
        goto out;
    }
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn != NULL && be != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        k->pkey = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    if (k->pkey == NULL) {
        jwk_fail(cx, "unusable RSA key");
        goto out;
    }
    k->algs = PT_JWT_ALG_RSA;
    rc = 0;
out:
    free(n);
    free(e);
    return rc;
}

static int jwk_ec(jwk_cx_t *cx, json_object *jwk, pt_jwt_key_t *k)
{
    const char *crv;
    if (jwk_str(jwk, "crv", &crv, NULL) <= 0)
        return jwk_fail(cx, "EC key without \"crv\"");
    const char *group;
    size_t clen;
    unsigned alg;
    if (strcmp(crv, "P-256") == 0) {
        group = "prime256v1", clen = 32, alg = PT_JWT_ES256;
    } else if (strcmp(crv, "P-384") == 0) {
        group = "secp384r1", clen = 48, alg = PT_JWT_ES384;
    } else if (strcmp(crv, "P-521") == 0) {
        group = "secp521r1", clen = 66, alg = PT_JWT_ES512;
    } else {
        return jwk_fail(cx, "unsupported curve \"%.32s\"", crv);
    }
    size_t xl = 0, yl = 0;
    unsigned char *x = jwk_b64(cx, jwk, "x", &xl);
    unsigned char *y = x != NULL ? jwk_b64(cx, jwk, "y", &yl) : NULL;
    int rc = -1;
    if (y == NULL)
        goto out;
    /* RFC 7518 6.2.1.2 wants the full size, but issuers built on libraries that write the
     * integer's minimal bytes (PyJWT before 2.8, among others) send a shorter coordinate
     * once in 256 keys: read as the big-endian integer it is (left-padded). Longer is wrong. */
    if (xl == 0 || yl == 0 || xl > clen || yl > clen) {
        jwk_fail(cx, "EC coordinates must be 1 to %zu bytes for %s", clen, crv);
        goto out;
    }
    unsigned char pt[1 + 2 * 66];
    memset(pt, 0, sizeof(pt));
    pt[0] = 0x04;
    memcpy(pt + 1 + (clen - xl), x, xl);
    memcpy(pt + 1 + clen + (clen - yl), y, yl);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * clen))
        k->pkey = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (k->pkey == NULL) { /* OpenSSL checks the point is on the curve */
        jwk_fail(cx, "unusable EC key (point not on %s?)", crv);
        goto out;
    }
    k->algs = alg;
    rc = 0;
out:
    free(x);
    free(y);
    return rc;
}

static int jwk_okp(jwk_cx_t *cx, json_object *jwk, pt_jwt_key_t *k)
{
    const char *crv;
    if (jwk_str(jwk, "crv", &crv, NULL) <= 0 || strcmp(crv, "Ed25519") != 0)
        return jwk_fail(cx, "OKP key: only crv \"Ed25519\" is supported");
    size_t xl = 0;
    unsigned char *x = jwk_b64(cx, jwk, "x", &xl);
    if (x == NULL)
        return -1;
    if (xl == 32)
        k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl);
    free(x);
    if (k->pkey == NULL)
        return jwk_fail(cx, "unusable Ed25519 key (x must be 32 bytes)");
    k->algs = PT_JWT_EDDSA;
    return 0;
}

static bool looks_like_pem(const unsigned char *s, size_t len)
{
    static const char mark[] = "-----BEGIN";
    for (size_t i = 0; i + sizeof(mark) - 1 <= len; i++)
        if (memcmp(s + i, mark, sizeof(mark) - 1) == 0)
            return true;
    return false;
}

static int set_secret(pt_jwt_key_t *k, const unsigned char *s, size_t len, char *err, size_t errlen)
{
    if (len < 32) {
        snprintf(err, errlen, "HMAC secret of %zu bytes; at least 32 are required", len);
        return -1;
    }
    if (looks_like_pem(s, len)) {
        snprintf(err, errlen, "a PEM key is not an HMAC secret (use jwks_file for public keys)");
        return -1;
    }
    k->secret = OPENSSL_malloc(len);
    if (k->secret == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(k->secret, s, len);
    k->secret_len = len;
    k->algs = PT_JWT_ALG_HMAC;
    return 0;
}

static int jwk_oct(jwk_cx_t *cx, json_object *jwk, pt_jwt_key_t *k)
{
    size_t len = 0;
    unsigned char *s = jwk_b64(cx, jwk, "k", &len);
    if (s == NULL)
        return -1;
    char msg[160];
    int rc = set_secret(k, s, len, msg, sizeof(msg));
    OPENSSL_cleanse(s, len);
    free(s);
    return rc != 0 ? jwk_fail(cx, "%s", msg) : 0;
}

/* 1: usable for verification, 0: left out (use/key_ops say so), -1: error. */
static int jwk_usable(jwk_cx_t *cx, json_object *jwk)
{
    const char *use;
    int r = jwk_str(jwk, "use", &use, NULL);
    if (r < 0)
        return jwk_fail(cx, "\"use\" is not a string");
    if (r > 0 && strcmp(use, "sig") != 0)
        return 0;
    json_object *ops;
    if (json_object_object_get_ex(jwk, "key_ops", &ops)) {
        if (!json_object_is_type(ops, json_type_array))
            return jwk_fail(cx, "\"key_ops\" is not an array");
        size_t n = json_object_array_length(ops);
        for (size_t i = 0; i < n; i++) {
            const char *op = json_object_get_string(json_object_array_get_idx(ops, i));
            if (op != NULL && strcmp(op, "verify") == 0)
                return 1;
        }
        return 0;
    }
    return 1;
}

static int jwk_parse(jwk_cx_t *cx, json_object *jwk, bool allow_secrets, pt_jwt_key_t *k)
{
    if (!json_object_is_type(jwk, json_type_object))
        return jwk_fail(cx, "not a JSON object");
    const char *kid = NULL, *kty, *alg = NULL;
    size_t kid_len = 0, alg_len = 0;
    int r = jwk_str(jwk, "kid", &kid, &kid_len);
    if (r < 0)
        return jwk_fail(cx, "\"kid\" is not a string");
    if (r > 0 && (kid_len == 0 || kid_len > PT_JWT_MAX_KID))
        return jwk_fail(cx, "\"kid\" is empty or longer than %d bytes", PT_JWT_MAX_KID);
    cx->kid = kid;
    if (jwk_str(jwk, "kty", &kty, NULL) <= 0)
        return jwk_fail(cx, "missing \"kty\"");
    if (jwk_str(jwk, "alg", &alg, &alg_len) < 0)
        return jwk_fail(cx, "\"alg\" is not a string");
    r = jwk_usable(cx, jwk);
    if (r <= 0)
        return r;
    if (strcmp(kty, "oct") != 0 && json_object_object_get_ex(jwk, "d", NULL))
        return jwk_fail(cx, "a private key; publish only the public part");
    if (strcmp(kty, "RSA") == 0)
        r = jwk_rsa(cx, jwk, k);
    else if (strcmp(kty, "EC") == 0)
        r = jwk_ec(cx, jwk, k);
    else if (strcmp(kty, "OKP") == 0)
        r = jwk_okp(cx, jwk, k);
    else if (strcmp(kty, "oct") == 0 && allow_secrets)
        r = jwk_oct(cx, jwk, k);
    else if (strcmp(kty, "oct") == 0)
        return jwk_fail(cx, "an \"oct\" secret in a published set is refused");
    else
        return jwk_fail(cx, "unsupported kty \"%.16s\"", kty);
    if (r != 0)
        return -1;
    if (alg != NULL) {
        unsigned bit = pt_jwt_alg_from_name(alg, alg_len);
        if (bit == 0 || (bit & k->algs) == 0) {
            key_clear(k);
            return jwk_fail(cx, "\"alg\" \"%.16s\" does not fit a %s key", alg, kty);
        }
        k->algs = bit;
    }
    if (kid != NULL && (k->kid = strdup(kid)) == NULL) {
        key_clear(k);
        return jwk_fail(cx, "out of memory");
    }
    return 1;
}

pt_jwt_keyset_t *pt_jwt_keyset_parse(const char *json, size_t len, bool allow_secrets, char *err,
                                     size_t errlen)
{
    json_object *root = parse_json(json, len);
    if (root == NULL) {
        snprintf(err, errlen, "not valid JSON");
        return NULL;
    }
    json_object *arr = NULL;
    bool single = false;
    if (json_object_is_type(root, json_type_object) &&
        !json_object_object_get_ex(root, "keys", &arr)) {
        arr = root; /* one JWK */
        single = true;
    }
    pt_jwt_keyset_t *ks = calloc(1, sizeof(*ks));
    size_t n = single ? 1 : arr != NULL && json_object_is_type(arr, json_type_array)
                                ? json_object_array_length(arr) : 0;
    if (ks == NULL || (!single && (arr == NULL || !json_object_is_type(arr, json_type_array)))) {
        snprintf(err, errlen, "expected {\"keys\": [ ... ]}");
        goto fail;
    }
    if (n > PT_JWT_MAX_KEYS) {
        snprintf(err, errlen, "%zu keys; at most %d", n, PT_JWT_MAX_KEYS);
        goto fail;
    }
    ks->keys = calloc(n != 0 ? n : 1, sizeof(*ks->keys));
    if (ks->keys == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        jwk_cx_t cx = {err, errlen, i, NULL};
        json_object *jwk = single ? arr : json_object_array_get_idx(arr, i);
        int r = jwk_parse(&cx, jwk, allow_secrets, &ks->keys[ks->cnt]);
        if (r < 0)
            goto fail;
        if (r == 0)
            continue;
        const char *kid = ks->keys[ks->cnt].kid;
        for (size_t j = 0; kid != NULL && j < ks->cnt; j++)
            if (ks->keys[j].kid != NULL && strcmp(ks->keys[j].kid, kid) == 0) {
                ks->cnt++;
                jwk_fail(&cx, "duplicate kid");
                goto fail;
            }
        ks->cnt++;
    }
    if (ks->cnt == 0) {
        snprintf(err, errlen, "no signature verification key in the set");
        goto fail;
    }
    if (keyset_prepare(ks, err, errlen) != 0)
        goto fail;
    json_object_put(root);
    return ks;
fail:
    json_object_put(root);
    pt_jwt_keyset_free(ks);
    return NULL;
}

pt_jwt_keyset_t *pt_jwt_keyset_secret(const unsigned char *secret, size_t len, char *err,
                                      size_t errlen)
{
    pt_jwt_keyset_t *ks = calloc(1, sizeof(*ks));
    if (ks == NULL || (ks->keys = calloc(1, sizeof(*ks->keys))) == NULL) {
        free(ks);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (set_secret(&ks->keys[0], secret, len, err, errlen) != 0) {
        pt_jwt_keyset_free(ks);
        return NULL;
    }
    ks->cnt = 1;
    if (keyset_prepare(ks, err, errlen) != 0) {
        pt_jwt_keyset_free(ks);
        return NULL;
    }
    return ks;
}

/* ---- verification -------------------------------------------------------------- */

static const char *const err_text[] = {
    [PT_JWT_OK] = "ok",
    [PT_JWT_E_MALFORMED] = "malformed token",
    [PT_JWT_E_ALG] = "algorithm not allowed",
    [PT_JWT_E_KID] = "unknown key id",
    [PT_JWT_E_SIGNATURE] = "signature verification failed",
    [PT_JWT_E_CRIT] = "unsupported critical header",
    [PT_JWT_E_EXPIRED] = "token expired",
    [PT_JWT_E_NOT_YET] = "token not yet valid",
    [PT_JWT_E_ISSUER] = "issuer not accepted",
    [PT_JWT_E_AUDIENCE] = "audience not accepted",
    [PT_JWT_E_CLAIM] = "required claim missing or malformed",
};

const char *pt_jwt_strerror(pt_jwt_err_t e)
{
    return (unsigned)e < sizeof(err_text) / sizeof(err_text[0]) ? err_text[e] : "invalid token";
}

/* JOSE r||s -> DER ECDSA-Sig-Value. Returns the DER length or -1. */
static int ecdsa_jose_to_der(const unsigned char *sig, size_t len, unsigned char *der, size_t cap)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL);
    BIGNUM *s = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
    int n = -1;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        if ((size_t)i2d_ECDSA_SIG(es, NULL) <= cap) {
            unsigned char *p = der;
            n = i2d_ECDSA_SIG(es, &p);
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

static size_t ec_coord_len(unsigned alg)
{
    return alg == PT_JWT_ES256 ? 32 : alg == PT_JWT_ES384 ? 48 : 66;
}

static bool verify_with(const pt_jwt_keyset_t *ks, const pt_jwt_key_t *k, unsigned alg,
                        const unsigned char *data, size_t dlen, const unsigned char *sig,
                        size_t slen)
{
    int mi = alg_md(alg);
    const EVP_MD *md = mi >= 0 ? ks->md[mi] : NULL;
    if (alg & PT_JWT_ALG_HMAC) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t mlen = 0;
        if (k->secret == NULL || mi < 0 || k->mac[mi] == NULL)
            return false;
        EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->mac[mi]); /* the keyed template is shared, read-only */
        bool ok = c != NULL && EVP_MAC_update(c, data, dlen) == 1 &&
                  EVP_MAC_final(c, mac, &mlen, sizeof(mac)) == 1;
        EVP_MAC_CTX_free(c);
        return ok && mlen == slen && CRYPTO_memcmp(mac, sig, mlen) == 0;
    }
    if (k->pkey == NULL)
        return false;
    unsigned char der[2 * 66 + 16];
    if (alg & (PT_JWT_ES256 | PT_JWT_ES384 | PT_JWT_ES512)) {
        if (slen != 2 * ec_coord_len(alg))
            return false;
        int n = ecdsa_jose_to_der(sig, slen, der, sizeof(der));
        if (n <= 0)
            return false;
        sig = der;
        slen = (size_t)n;
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    const EVP_MD_CTX *tmpl = k->vctx[alg_index(alg)];
    bool ok = false;
    if (mctx != NULL && tmpl != NULL && EVP_MD_CTX_copy_ex(mctx, tmpl) == 1)
        ok = EVP_DigestVerify(mctx, sig, slen, data, dlen) == 1;
    else if (mctx != NULL && verify_init(mctx, k->pkey, alg, md) == 0)
        ok = EVP_DigestVerify(mctx, sig, slen, data, dlen) == 1;
    EVP_MD_CTX_free(mctx);
    return ok;
}

/* Reads the JOSE header: alg bit, kid (pointer into hdr), crit. */
static pt_jwt_err_t read_header(json_object *hdr, unsigned *alg, const char **kid,
                                size_t *kid_len)
{
    if (!json_object_is_type(hdr, json_type_object))
        return PT_JWT_E_MALFORMED;
    json_object *v;
    if (json_object_object_get_ex(hdr, "crit", NULL))
        return PT_JWT_E_CRIT;
    if (!json_object_object_get_ex(hdr, "alg", &v) || !json_object_is_type(v, json_type_string))
        return PT_JWT_E_MALFORMED;
    *alg = pt_jwt_alg_from_name(json_object_get_string(v), (size_t)json_object_get_string_len(v));
    if (*alg == 0)
        return PT_JWT_E_ALG; /* none, or unknown */
    *kid = NULL;
    if (json_object_object_get_ex(hdr, "kid", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return PT_JWT_E_MALFORMED;
        *kid = json_object_get_string(v);
        *kid_len = (size_t)json_object_get_string_len(v);
    }
    return PT_JWT_OK;
}

static unsigned count_member(const char *s, size_t len, const char *name)
{
    size_t nl = strlen(name);
    unsigned n = 0;
    for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), name, nl)) != NULL; p += nl)
        n++;
    return n;
}

pt_jwt_err_t pt_jwt_verify(const pt_jwt_keyset_t *ks, const char *tok, size_t len,
                           json_object **payload)
{
    *payload = NULL;
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
        return PT_JWT_E_MALFORMED; /* exactly three parts (a JWE has five) */
    size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - d1 - 1), sl = len - (size_t)(d2 + 1 - tok);
    if (hl == 0 || hl > PT_JWT_MAX_HEADER * 4 / 3 + 4 || pl == 0 || sl == 0 || sl > 1400)
        return PT_JWT_E_MALFORMED; /* signatures are at most 1024 bytes (RSA-8192) */
    unsigned char hbuf[PT_JWT_MAX_HEADER + 8], sig[1056];
    long hn = pt_jwt_b64url_decode(tok, hl, hbuf);
    long sn = pt_jwt_b64url_decode(d2 + 1, sl, sig);
    if (hn <= 0 || sn <= 0)
        return PT_JWT_E_MALFORMED;
    /* json-c keeps the last of duplicate members: refuse a header naming alg or kid twice
     * instead (RFC 7515 §4: parsers must reject or use the last; two readers must agree) */
    if (count_member((const char *)hbuf, (size_t)hn, "\"alg\"") > 1 ||
        count_member((const char *)hbuf, (size_t)hn, "\"kid\"") > 1)
        return PT_JWT_E_MALFORMED;
    json_object *hdr = parse_json((const char *)hbuf, (size_t)hn);
    if (hdr == NULL)
        return PT_JWT_E_MALFORMED;
    unsigned alg = 0;
    const char *kid = NULL;
    size_t kid_len = 0;
    pt_jwt_err_t e = read_header(hdr, &alg, &kid, &kid_len);
    if (e == PT_JWT_OK) {
        bool fits = false, kid_found = false, ok = false;
        for (size_t i = 0; i < ks->cnt && !ok; i++) {
            const pt_jwt_key_t *k = &ks->keys[i];
            if (kid != NULL && (k->kid == NULL || strlen(k->kid) != kid_len ||
                                memcmp(k->kid, kid, kid_len) != 0))
                continue;
            kid_found = true;
            if ((k->algs & alg) == 0)
                continue;
            fits = true;
            ok = verify_with(ks, k, alg, (const unsigned char *)tok, (size_t)(d2 - tok), sig,
                             (size_t)sn);
        }
        e = ok ? PT_JWT_OK
               : kid != NULL && !kid_found ? PT_JWT_E_KID
               : !fits                     ? PT_JWT_E_ALG
                                           : PT_JWT_E_SIGNATURE;
    }
    json_object_put(hdr);
    if (e != PT_JWT_OK)
        return e;
    size_t bl = 0;
    unsigned char *body = b64url_dup(d1 + 1, pl, &bl);
    if (body == NULL)
        return PT_JWT_E_MALFORMED;
    json_object *p = parse_json((const char *)body, bl);
    free(body);
    if (p == NULL || !json_object_is_type(p, json_type_object)) {
        json_object_put(p);
        return PT_JWT_E_MALFORMED;
    }
    *payload = p;
    return PT_JWT_OK;
}

/* ---- claims ---------------------------------------------------------------------- */

/* A JSON string equal to `s` (its length too: "a\u0000b" is not "a"). */
static bool str_is(json_object *v, const char *s)
{
    return json_object_is_type(v, json_type_string) &&
           (size_t)json_object_get_string_len(v) == strlen(s) &&
           memcmp(json_object_get_string(v), s, strlen(s)) == 0;
}

/* A NumericDate: 1 found, 0 absent, -1 not a number. */
static int numeric_date(json_object *p, const char *name, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(p, name, &v))
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return 1;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d > -9.2e18 && d < 9.2e18))
            return -1;
        *out = (int64_t)d;
        return 1;
    }
    return -1;
}

static bool aud_ok(json_object *aud, const pt_jwt_policy_t *p)
{
    if (json_object_is_type(aud, json_type_string)) {
        for (size_t i = 0; i < p->audience_cnt; i++)
            if (str_is(aud, p->audiences[i]))
                return true;
        return false;
    }
    if (!json_object_is_type(aud, json_type_array))
        return false;
    size_t n = json_object_array_length(aud);
    for (size_t j = 0; j < n; j++) {
        json_object *a = json_object_array_get_idx(aud, j);
        if (json_object_is_type(a, json_type_string) && aud_ok(a, p))
            return true;
    }
    return false;
}

pt_jwt_err_t pt_jwt_check_claims(json_object *payload, const pt_jwt_policy_t *p, int64_t now,
                                 int64_t *exp_out)
{
    int64_t exp = INT64_MAX, nbf = 0, iat = 0;
    int r = numeric_date(payload, "exp", &exp);
    if (r < 0 || (r == 0 && p->require_exp))
        return PT_JWT_E_CLAIM;
    if (r > 0 && exp < now - p->skew_s)
        return PT_JWT_E_EXPIRED;
    r = numeric_date(payload, "nbf", &nbf);
    if (r < 0)
        return PT_JWT_E_CLAIM;
    if (r > 0 && nbf > now + p->skew_s)
        return PT_JWT_E_NOT_YET;
    r = numeric_date(payload, "iat", &iat);
    if (r < 0)
        return PT_JWT_E_CLAIM;
    if (r > 0 && iat > now + p->skew_s)
        return PT_JWT_E_NOT_YET;
    json_object *v;
    if (p->issuer != NULL &&
        (!json_object_object_get_ex(payload, "iss", &v) ||
         !str_is(v, p->issuer)))
        return PT_JWT_E_ISSUER;
    if (p->audience_cnt != 0 &&
        (!json_object_object_get_ex(payload, "aud", &v) || !aud_ok(v, p)))
        return PT_JWT_E_AUDIENCE;
    for (size_t i = 0; i < p->required_cnt; i++)
        if (!json_object_object_get_ex(payload, p->required[i], &v) || v == NULL)
            return PT_JWT_E_CLAIM;
    *exp_out = exp;
    return PT_JWT_OK;
}
