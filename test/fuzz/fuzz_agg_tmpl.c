/*
 * fuzz_agg_tmpl.c -- the aggregate handler's template and field-path parsers
 * (gateway/handlers/agg_tmpl.c, agg_merge.c).
 *
 * Input: a template (any bytes). Whatever parses is rendered three ways
 * against a fixed document (every head resolves to it, headers give a text
 * with a control character): as a URL, which must then hold only unreserved
 * characters and `%XX` escapes where values went (checked: no byte of the
 * rendered text outside what the literal text and the escapes allow), as a
 * header value, and as JSON. Rejected input must report an offset inside the
 * input. The same bytes (NUL-terminated) are parsed as a field path and, when
 * accepted, applied as select, omit and rename to the document. A crash, a
 * leak or a broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "handlers/agg_merge.h"
#include "handlers/agg_tmpl.h"

static const char DOC[] =
    "{\"a\":{\"b\":[1,\"x/y?z%\",{\"c\":true}],\"n\":-2.5e3,\"s\":\"t\\u0000\"},"
    "\"list\":[{\"id\":1},{\"id\":2}],\"nul\":null}";

static struct json_object *doc;

static pt_agg_val_t lookup(void *ud, const pt_agg_ref_t *r)
{
    (void)ud;
    pt_agg_val_t v = {0};
    if (r->kind == PT_AGG_REF_HEADER) {
        v.found = true;
        v.str = PT_STR("h\tv\x01");
        return v;
    }
    v.is_json = true;
    v.j = pt_agg_json_walk(doc, r->steps, r->step_cnt, &v.found);
    return v;
}

static bool url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '%';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (doc == NULL)
        doc = json_tokener_parse(DOC);
    if (size > 4096)
        return 0;
    pt_agg_tmpl_t t;
    char err[128];
    size_t off = 0;
    if (pt_agg_tmpl_parse((const char *)data, size, &t, err, sizeof(err), &off) != 0) {
        if (off > size || err[0] == '\0')
            abort();
    } else {
        char buf[1024];
        pt_agg_rerr_t e = {0};
        long n = pt_agg_tmpl_render(&t, PT_AGG_ENC_URL, lookup, NULL, buf, sizeof(buf), &e);
        if (n >= 0) {
            /* the values went in escaped: only literal text may hold other bytes */
            size_t lit = 0;
            for (size_t i = 0; i < t.seg_cnt; i++)
                if (t.segs[i].lit != NULL)
                    for (size_t k = 0; k < t.segs[i].lit_len; k++)
                        lit += !url_char((unsigned char)t.segs[i].lit[k]);
            size_t other = 0;
            for (long i = 0; i < n; i++)
                other += !url_char((unsigned char)buf[i]);
            if (other > lit || strlen(buf) != (size_t)n)
                abort();
        }
        memset(&e, 0, sizeof(e));
        n = pt_agg_tmpl_render(&t, PT_AGG_ENC_HEADER, lookup, NULL, buf, sizeof(buf), &e);
        for (size_t i = 0; n >= 0 && i < t.ref_cnt; i++) /* header values carry a \x01 */
            if (t.refs[i].kind == PT_AGG_REF_HEADER)
                abort();
        memset(&e, 0, sizeof(e));
        json_object_put(pt_agg_tmpl_json(&t, lookup, NULL, &e));
        pt_agg_tmpl_dispose(&t);
    }
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    pt_agg_fpath_t p;
    const char *why = NULL;
    if (pt_agg_fpath_parse(s, &p, &why) == 0) {
        pt_agg_shape_t sh = {0};
        sh.select = &p;
        sh.select_cnt = 1;
        json_object_put(pt_agg_shape_apply(&sh, doc));
        struct json_object *copy = NULL;
        json_object_deep_copy(doc, &copy, NULL);
        sh.select_cnt = 0;
        sh.omit = &p;
        sh.omit_cnt = 1;
        char *to = "renamed";
        sh.rename_to = &to;
        sh.rename_from = &p;
        sh.rename_cnt = 1;
        json_object_put(pt_agg_shape_apply(&sh, copy));
        json_object_put(copy);
        pt_agg_fpath_dispose(&p);
    } else if (why == NULL) {
        abort();
    }
    free(s);
    return 0;
}
