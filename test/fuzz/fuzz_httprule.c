/*
 * fuzz_httprule.c -- google.api.http decoding and request/response binding.
 *
 * First byte selects the mode:
 *   even: the rest is serialized MethodOptions for pt_httprule_decode();
 *   odd:  the rest is "METHOD TARGET\nBODY": routed through the bookstore
 *         table (test/proto/bookstore_http.proto, PT_HTTP_TEST_DESC) and, when
 *         it matches, transcoded as a request (query + body), then BODY is fed
 *         to the response transcoder as upstream protobuf bytes.
 * Invariants: no crash, no leak, out->len restored on error, every error
 * message NUL-terminated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/httprule.h"

static pt_descpool_t *pool;
static pt_httprule_table_t *table;

static void init(void)
{
    FILE *f = fopen(PT_HTTP_TEST_DESC, "rb");
    if (f == NULL)
        abort();
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    pt_xerr_t err;
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    pt_httprule_opts_t o = {.add_default_bindings = true};
    if (pt_descpool_new(NULL, &pool, &err) != 0 ||
        pt_descpool_add_set(pool, buf, n, "fuzz", &err) != 0 ||
        pt_descpool_build(pool, &err) != 0 || pt_httprule_table_new(pool, &o, &table, &errs) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (table == NULL)
        init();
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        pt_httprule_pattern_t pats[PT_HTTPRULE_MAX_BINDINGS];
        size_t cnt = 0;
        pt_xerr_t err;
        if (pt_httprule_decode(data + 1, size - 1, pats, PT_HTTPRULE_MAX_BINDINGS, &cnt, &err) ==
            0) {
            for (size_t i = 0; i < cnt; i++)
                if (pats[i].path.len > size || pats[i].method.p == NULL)
                    abort();
        } else if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL) {
            abort();
        }
        return 0;
    }
    const char *s = (const char *)data + 1, *end = (const char *)data + size;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    if (sp == NULL)
        return 0;
    const char *nl = memchr(sp, '\n', (size_t)(end - sp));
    const char *tend = nl ? nl : end;
    const uint8_t *body = nl ? (const uint8_t *)nl + 1 : NULL;
    size_t body_len = nl ? (size_t)(end - nl - 1) : 0;
    size_t tlen = (size_t)(tend - sp - 1);
    size_t cap = PT_PATHMATCH_SCRATCH_LEN(tlen);
    char *scratch = malloc(cap);
    if (scratch == NULL)
        return 0;
    pt_httprule_match_t m;
    if (pt_httprule_match(table, s, (size_t)(sp - s), sp + 1, tlen, NULL, scratch, cap, &m) ==
        PT_PATHMATCH_OK) {
        const char *q = memchr(sp + 1, '?', tlen);
        pt_xbuf_t out;
        pt_xbuf_init(&out, NULL);
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        pt_json_opts_t jo = {.ignore_unknown = (data[0] & 2) != 0};
        int rc = pt_httprule_transcode_request(table, &m, body, body_len, "application/x-fuzz",
                                               q ? q + 1 : NULL, q ? (size_t)(tend - q - 1) : 0,
                                               &jo, &out, &errs);
        if (rc != 0 && out.len != 0)
            abort();
        pt_xbuf_reset(&out);
        pt_xerr_t err;
        pt_httprule_str_t ct;
        rc = pt_httprule_transcode_response(table, m.binding, body, body_len, &jo, &out, &ct, &err);
        if (rc != 0 && out.len != 0)
            abort();
        pt_xbuf_dispose(&out);
    }
    free(scratch);
    return 0;
}
