/*
 * fuzz_descpool.c -- descriptor-set loading on hostile bytes: add the input as
 * a FileDescriptorSet, build, and walk whatever got built.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "portico/transcoder/descpool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_descpool_t *p;
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &p, &err) != 0)
        return 0;
    if (pt_descpool_add_set(p, data, size, "fuzz.pb", &err) == 0 && pt_descpool_build(p, &err) == 0) {
        for (size_t i = 0; i < pt_descpool_service_cnt(p); i++) {
            const pt_svcdesc_t *s = pt_descpool_service_at(p, i);
            for (size_t k = 0; k < s->method_cnt; k++) {
                const pt_methoddesc_t *m = &s->methods[k];
                if (pt_descpool_method(p, m->full_name, strlen(m->full_name)) != m)
                    __builtin_trap();
                for (size_t f = 0; f < m->input->field_cnt; f++) {
                    const pt_fielddesc_t *fd = &m->input->fields[f];
                    if (pt_msgdesc_field_by_number(m->input, fd->number) != fd ||
                        pt_msgdesc_field_by_name(m->input, fd->name, strlen(fd->name)) == NULL)
                        __builtin_trap();
                }
            }
        }
    }
    pt_descpool_unref(p);
    return 0;
}
