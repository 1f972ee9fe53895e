/*
 * fuzz_json_to_pb.c -- JSON -> protobuf (pt_json_to_pb and the binding API).
 *
 * Input: one selector byte, then the JSON text. The selector picks the target
 * message type (low 3 bits) and options (ignore_unknown, case-insensitive
 * enums, a small max_depth, the error-list entry point). With bit 7 set, the
 * text is instead read as "path=value" lines bound to the message through
 * pt_json_to_pb_bind ("path[key]=value" for map keys).
 *
 * Checks beyond "no crash, no leak, no out-of-bounds": on error the output
 * buffer is restored to its original length; on success the bytes convert
 * back to JSON with pt_pb_to_json and that JSON converts again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/descpool.h"
#include "portico/transcoder/json.h"

static pt_descpool_t *pool;

static const char *const types[8] = {
    "pt.test.Scalars", "pt.test.Repeated", "pt.test.Maps",  "pt.test.Oneofs",
    "pt.test.Nested",  "pt.test.WKTs",     "pt.test2.P2",   "google.protobuf.Value",
};

static void load_pool(void)
{
    FILE *f = fopen(PT_TEST_DESC, "rb");
    if (f == NULL)
        abort();
    static uint8_t set[1 << 20];
    size_t n = fread(set, 1, sizeof(set), f);
    fclose(f);
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &pool, &err) != 0 || pt_descpool_add_set(pool, set, n, "x", &err) ||
        pt_descpool_build(pool, &err) != 0)
        abort();
}

static void check_roundtrip(const pt_msgdesc_t *m, const pt_xbuf_t *pb, const pt_json_opts_t *o)
{
    pt_xbuf_t js, pb2;
    pt_xbuf_init(&js, NULL);
    pt_xbuf_init(&pb2, NULL);
    pt_xerr_t err;
    pt_json_opts_t o2 = *o;
    o2.max_depth = 0;
    if (pt_pb_to_json(pool, m, pb->data, pb->len, &o2, &js, &err) != 0) {
        fprintf(stderr, "pb_to_json failed on our output: %s: %s\n", err.path, err.msg);
        abort();
    }
    if (pt_json_to_pb(pool, m, (const char *)js.data, js.len, &o2, &pb2, &err) != 0) {
        fprintf(stderr, "reparse failed: %s: %s\n%.*s\n", err.path, err.msg, (int)js.len,
                (const char *)js.data);
        abort();
    }
    pt_xbuf_dispose(&js);
    pt_xbuf_dispose(&pb2);
}

static void run_bindings(const pt_msgdesc_t *m, const char *s, size_t n, const pt_json_opts_t *o)
{
    pt_json_binding_t b[16];
    size_t nb = 0;
    const char *end = s + n;
    while (s < end && nb < 16) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        const char *eq = memchr(s, '=', (size_t)(le - s));
        if (eq != NULL) {
            pt_json_binding_t *x = &b[nb++];
            memset(x, 0, sizeof(*x));
            x->path = s;
            x->path_len = (size_t)(eq - s);
            const char *lb = memchr(s, '[', x->path_len);
            if (lb != NULL && eq > lb + 1 && eq[-1] == ']') {
                x->path_len = (size_t)(lb - s);
                x->map_key = lb + 1;
                x->map_key_len = (size_t)(eq - 1 - lb - 1);
            }
            x->value = eq + 1;
            x->value_len = (size_t)(le - eq - 1);
        }
        s = le + (nl != NULL);
    }
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    if (pt_json_to_pb_bind(pool, m, NULL, NULL, 0, b, nb, o, &out, &errs) != 0) {
        if (out.len != 0 || errs.cnt == 0)
            abort();
    }
    pt_xbuf_dispose(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pool == NULL)
        load_pool();
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    const pt_msgdesc_t *m = pt_descpool_message(pool, types[sel & 7], strlen(types[sel & 7]));
    if (m == NULL)
        abort();
    pt_json_opts_t o = {0};
    o.ignore_unknown = (sel & 0x08) != 0;
    o.enum_case_insensitive = (sel & 0x10) != 0;
    if (sel & 0x20)
        o.max_depth = 4;
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    if (sel & 0x80) {
        run_bindings(m, json, len, &o);
        return 0;
    }
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xbuf_append(&out, "pre", 3);
    int rc;
    if (sel & 0x40) {
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        rc = pt_json_to_pb_errs(pool, m, json, len, &o, &out, &errs);
        if (rc != 0 && errs.cnt == 0)
            abort();
    } else {
        pt_xerr_t err;
        rc = pt_json_to_pb(pool, m, json, len, &o, &out, &err);
        if (rc != 0 && err.code != rc)
            abort();
    }
    if (rc != 0 && out.len != 3)
        abort();
    if (rc == 0) {
        pt_xbuf_t body = {out.data + 3, out.len - 3, out.len - 3, 0, NULL};
        check_roundtrip(m, &body, &o);
    }
    pt_xbuf_dispose(&out);
    return 0;
}
