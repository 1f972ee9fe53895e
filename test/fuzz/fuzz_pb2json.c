/*
 * fuzz_pb2json.c -- protobuf binary -> JSON on hostile bytes, over the test
 * schema (test/proto/xtest*.proto). Byte 0 picks the message type, byte 1 the
 * options; the rest is the wire data. Any output must be valid UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/json.h"
#include "portico/transcoder/wkt.h"

static pt_descpool_t *pool; /* built once per process */

static void load(void)
{
    FILE *f = fopen(PT_TEST_DESC, "rb");
    if (f == NULL)
        abort();
    static uint8_t set[1 << 20];
    size_t n = fread(set, 1, sizeof set, f);
    fclose(f);
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &pool, &err) != 0 || pt_descpool_add_set(pool, set, n, "xtest.pb", &err) != 0 ||
        pt_descpool_build(pool, &err) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {
        "pt.test.Scalars", "pt.test.Repeated", "pt.test.Maps",           "pt.test.Oneofs",
        "pt.test.Nested",  "pt.test.WKTs",     "pt.test2.P2",            "google.protobuf.Any",
        "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.Timestamp",
        "google.protobuf.FieldMask",
    };
    if (pool == NULL)
        load();
    if (size < 2)
        return 0;
    const char *t = types[data[0] % (sizeof types / sizeof types[0])];
    const pt_msgdesc_t *m = pt_descpool_message(pool, t, strlen(t));
    pt_json_opts_t o = {
        .emit_defaults = data[1] & 1,
        .proto_names = data[1] & 2,
        .enums_as_ints = data[1] & 4,
        .max_depth = data[1] & 8 ? 8 : 0,
        .max_size = data[1] & 16 ? 64 : 0,
    };
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    if (pt_pb_to_json(pool, m, data + 2, size - 2, &o, &out, &err) == 0 &&
        !pt_utf8_valid(out.data, out.len))
        __builtin_trap();
    pt_xbuf_dispose(&out);
    return 0;
}
