/*
 * fuzz_path.c -- request path normalisation (gateway/core/path.c).
 *
 * Input: a path (any bytes). It is normalised with every flag combination.
 * Whatever is accepted must be a fixed point (normalising the result again
 * gives the same bytes: routing, filters and the upstream see one form),
 * start with '/', contain no "." or ".." segment, no dot segment with
 * parameters, and, unless empty segments are kept, no "//". A crash, an
 * out-of-bounds read or a broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/path.h"

static void check(const pt_str_t out, unsigned flags)
{
    if (out.len == 0 || out.base[0] != '/')
        abort();
    for (size_t i = 0; i < out.len; i++) {
        if (out.base[i] != '/')
            continue;
        size_t j = i + 1;
        while (j < out.len && out.base[j] != '/')
            j++;
        const char *seg = out.base + i + 1;
        size_t n = j - i - 1;
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            abort();
        if (n == 0 && j < out.len && !(flags & PT_PATH_KEEP_EMPTY_SEGMENTS))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_arena_t *a = pt_arena_new(0, 1u << 20);
    pt_str_t in = {(const char *)data, size};
    for (unsigned flags = 0; flags < 4; flags++) {
        pt_str_t out, again;
        const char *why = NULL;
        if (pt_path_normalize(a, in, flags, &out, &why) != 0) {
            if (why == NULL)
                abort();
            continue;
        }
        check(out, flags);
        if (pt_path_normalize(a, out, flags, &again, &why) != 0 || again.len != out.len ||
            memcmp(again.base, out.base, out.len) != 0)
            abort();
    }
    pt_arena_destroy(a);
    return 0;
}
