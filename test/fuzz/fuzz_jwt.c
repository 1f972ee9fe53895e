/*
 * fuzz_jwt.c -- the jwt filter's parsers (plugins/jwt_token.c).
 *
 * Input: one byte choosing the mode, then the data.
 *   even: a compact token, verified against the JWK set of the unit-test
 *         vectors (every key type) and, when its signature holds, its claims
 *         checked; a token reported good must have a JSON object payload.
 *   odd:  a JWK set, parsed with and without secrets allowed; a set that
 *         parses has 1..PT_JWT_MAX_KEYS keys, each with a public key or a
 *         secret and a non-empty algorithm mask.
 * A crash, a leak or a broken invariant aborts.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_token.h"
#include "jwt/jwt_vectors.h"

static pt_jwt_keyset_t *vec_keys;

static void check_set(pt_jwt_keyset_t *ks)
{
    if (ks == NULL)
        return;
    if (ks->cnt == 0 || ks->cnt > PT_JWT_MAX_KEYS)
        abort();
    for (size_t i = 0; i < ks->cnt; i++)
        if (ks->keys[i].algs == 0 || (ks->keys[i].pkey == NULL) == (ks->keys[i].secret == NULL))
            abort();
    pt_jwt_keyset_free(ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char err[320];
    if (vec_keys == NULL &&
        (vec_keys = pt_jwt_keyset_parse(jwt_vec_jwks, strlen(jwt_vec_jwks), true, err, sizeof(err))) == NULL)
        abort();
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        check_set(pt_jwt_keyset_parse(in, len, true, err, sizeof(err)));
        check_set(pt_jwt_keyset_parse(in, len, false, err, sizeof(err)));
        return 0;
    }
    json_object *p = NULL;
    pt_jwt_err_t e = pt_jwt_verify(vec_keys, in, len, &p);
    if ((e == PT_JWT_OK) != (p != NULL) || (p != NULL && !json_object_is_type(p, json_type_object)))
        abort();
    if (p != NULL) {
        const char *auds[] = {"api"};
        pt_jwt_policy_t pol = {.issuer = "https://idp.test/", .audiences = auds, .audience_cnt = 1,
                               .skew_s = 30, .require_exp = true};
        int64_t exp = 0;
        (void)pt_jwt_check_claims(p, &pol, 1700000000, &exp);
        json_object_put(p);
    }
    return 0;
}
