/*
 * fuzz_cache.c -- the cache filter's parsers (plugins/cache_policy.c,
 * plugins/cache_store.c).
 *
 * Input: one selector byte, then the data.
 *  - 0: a Cache-Control value; the numbers are within their documented range.
 *  - 1: an HTTP-date; a parsed date formats back and parses to the same time.
 *  - 2: a Vary value; the canonical list holds lowercase tokens only.
 *  - 3: an If-None-Match list against the first 8 bytes as the entity-tag.
 *  - 4: bytes from Redis as a stored entry; a decoded entry re-encodes to the same bytes.
 * A crash, a leak, an out-of-bounds access or a broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/cache_policy.h"
#include "plugins/cache_store.h"

static void check_delta(int64_t v)
{
    if (v < -1 || v > PC_DELTA_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    pt_str_t in = {(const char *)data + 1, size - 1};
    switch (data[0] % 5) {
    case 0: {
        pc_cc_t cc;
        pc_cc_init(&cc);
        pc_cc_parse(&cc, in);
        check_delta(cc.max_age);
        check_delta(cc.s_maxage);
        check_delta(cc.max_stale);
        check_delta(cc.min_fresh);
        break;
    }
    case 1: {
        int64_t t, t2;
        if (pc_http_date(in, &t)) {
            char buf[64];
            size_t n = pc_http_date_fmt(t, buf, sizeof(buf));
            if (n != 29 || !pc_http_date((pt_str_t){buf, n}, &t2) || t2 != t)
                abort();
        }
        break;
    }
    case 2: {
        char buf[128];
        bool star;
        int n = pc_vary_names(in, buf, sizeof(buf), &star);
        if (n >= (int)sizeof(buf) || (n >= 0 && strlen(buf) != (size_t)n))
            abort();
        for (int i = 0; i < n; i++)
            if (buf[i] >= 'A' && buf[i] <= 'Z')
                abort();
        break;
    }
    case 3: {
        size_t k = in.len < 8 ? in.len : 8;
        (void)pc_inm_matches((pt_str_t){in.base + k, in.len - k}, (pt_str_t){in.base, k});
        break;
    }
    default: {
        /* the key is stored inside: find it by decoding with the key the bytes claim */
        if (in.len < 4 + 12 + 32 + 4)
            break;
        uint32_t klen;
        memcpy(&klen, in.base + 4 + 12 + 32, 4);
        if (klen > in.len - (4 + 12 + 32 + 4))
            break;
        pt_str_t key = {in.base + 4 + 12 + 32 + 4, klen};
        cs_entry_t *e = cs_entry_decode(in.base, in.len, key);
        if (e != NULL) {
            size_t len;
            char *again = cs_entry_encode(e, &len);
            if (again == NULL || len != in.len || memcmp(again, in.base, len) != 0)
                abort();
            free(again);
            cs_entry_unref(e);
        }
        break;
    }
    }
    return 0;
}
