/*
 * fuzz_reflect.c -- the reflection client's decoding on hostile bytes
 * (upstream/reflect_msg.c): the input as a ServerReflectionResponse, its files
 * through the dependency walk and the set assembly, and the input itself as a
 * FileDescriptorProto. The assembled set must load as a FileDescriptorSet
 * whenever every file did (a wrong length prefix would show up there).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/reflect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_refl_files_t fs = {0};
    const char *why = NULL;
    pt_refl_resp_t r;
    if (pt_refl_decode_response(data, size, &r, &why) == 0) {
        if (r.item_cnt > PT_REFL_MAX_ITEMS)
            __builtin_trap();
        for (size_t i = 0; i < r.item_cnt; i++) {
            if (r.items[i].p < data || r.items[i].p + r.items[i].len > data + size)
                __builtin_trap();
            if (r.kind == PT_REFL_R_FILES)
                (void)pt_refl_files_add(&fs, r.items[i].p, r.items[i].len, &why);
        }
        pt_refl_resp_free(&r);
    } else if (why == NULL) {
        __builtin_trap();
    }
    (void)pt_refl_files_add(&fs, data, size, &why);
    const char *miss[16], *by[16];
    size_t n = pt_refl_files_missing(&fs, miss, by, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (pt_refl_files_find(&fs, miss[i]) != NULL || pt_refl_files_find(&fs, by[i]) == NULL)
            __builtin_trap();
    size_t len = 0;
    uint8_t *set = pt_refl_files_to_set(&fs, &len);
    if (set != NULL) {
        /* the set parses back as exactly the files collected (the pool may still
         * refuse their contents; it must not call the framing corrupt) */
        size_t off = 0, cnt = 0;
        while (off < len) {
            if (set[off] != 0x0a)
                __builtin_trap();
            off++;
            uint64_t l = 0;
            for (unsigned sh = 0; off < len; sh += 7) {
                uint8_t c = set[off++];
                l |= (uint64_t)(c & 0x7f) << sh;
                if ((c & 0x80) == 0)
                    break;
            }
            if (l != fs.v[cnt].len || memcmp(set + off, fs.v[cnt].data, l) != 0)
                __builtin_trap();
            off += l;
            cnt++;
        }
        if (cnt != fs.cnt)
            __builtin_trap();
        free(set);
    }
    pt_refl_files_free(&fs);
    return 0;
}
