/*
 * fuzz_pathtmpl.c -- path template parsing and matching.
 *
 * Input: "METHOD TEMPLATE\n..." lines; each line is parsed as a template and
 * added to one matcher; the last line is also used as a request path against
 * that matcher (with and without allow_encoded_slash). The matcher must never
 * crash, read out of bounds or leak; every variable value must lie inside the
 * scratch buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/pathtmpl.h"

#define MAX_TMPLS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_pathmatcher_t *m = NULL;
    if (pt_pathmatcher_new(NULL, &m) != 0)
        return 0;
    pt_pathtmpl_t *ts[MAX_TMPLS];
    char methods[MAX_TMPLS][16];
    size_t nt = 0;
    const char *s = (const char *)data, *end = s + size;
    const char *last = s;
    size_t last_len = 0;
    while (s < end && nt < MAX_TMPLS) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        last = s;
        last_len = (size_t)(le - s);
        const char *sp = memchr(s, ' ', (size_t)(le - s));
        if (sp != NULL && (size_t)(sp - s) < sizeof(methods[0])) {
            memcpy(methods[nt], s, (size_t)(sp - s));
            methods[nt][sp - s] = '\0';
            pt_pathtmpl_t *t = NULL;
            pt_xerr_t err;
            if (pt_pathtmpl_parse(NULL, sp + 1, (size_t)(le - sp - 1), &t, &err) == 0) {
                /* exercise the accessors */
                for (size_t i = 0; i < pt_pathtmpl_var_cnt(t); i++) {
                    const pt_pathtmpl_var_t *v = pt_pathtmpl_var(t, i);
                    if (v->end_seg > pt_pathtmpl_seg_cnt(t) || v->first_seg > v->end_seg)
                        abort();
                }
                /* kept (and freed at the end) whether or not the add succeeds */
                ts[nt] = t;
                (void)pt_pathmatcher_add(m, methods[nt], t, t, &err);
                nt++;
            }
        }
        s = nl ? nl + 1 : end;
    }
    /* the last line minus its method is the request path */
    const char *path = last;
    size_t plen = last_len;
    const char *sp = memchr(last, ' ', last_len);
    if (sp != NULL) {
        path = sp + 1;
        plen = last_len - (size_t)(sp + 1 - last);
    }
    size_t cap = PT_PATHMATCH_SCRATCH_LEN(plen);
    char *scratch = malloc(cap);
    if (scratch != NULL) {
        for (int pass = 0; pass < 2; pass++) {
            pt_pathmatch_opts_t o = {.allow_encoded_slash = pass == 1};
            pt_pathmatch_t res;
            const char *meth = nt > 0 ? methods[0] : "GET";
            if (pt_pathmatcher_match(m, meth, strlen(meth), path, plen, &o, scratch, cap, &res) ==
                PT_PATHMATCH_OK) {
                for (size_t i = 0; i < res.var_cnt; i++) {
                    const char *v = res.vars[i].value;
                    if (v < scratch || v + res.vars[i].value_len >= scratch + cap ||
                        v[res.vars[i].value_len] != '\0')
                        abort();
                }
            }
        }
        free(scratch);
    }
    pt_pathmatcher_free(m);
    for (size_t i = 0; i < nt; i++)
        pt_pathtmpl_free(ts[i]);
    return 0;
}
