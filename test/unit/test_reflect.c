/*
 * test_reflect.c -- the gRPC server reflection messages (upstream/reflect_msg.c):
 * request encoding, response decoding on canned bytes, the dependency walk
 * against a canned server, and the assembled set loading into a descriptor pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pbwire.h"
#include "portico/transcoder/descpool.h"
#include "upstream/reflect.h"

static void test_encode_request(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(pt_refl_encode_request(PT_REFL_LIST_SERVICES, "*", &buf, &len), 0);
    assert_int_equal(pt_refl_encode_request(PT_REFL_FILE_BY_FILENAME, "a/b.proto", &buf, &len), 0);
    static const uint8_t want[] = {0,  0,    0, 0,   3,   0x3a, 1,   '*', 0,   0,   0,   0,
                                   11, 0x1a, 9, 'a', '/', 'b',  '.', 'p', 'r', 'o', 't', 'o'};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    free(buf);
}

static bool str_eq(pt_refl_str_t a, const char *b)
{
    return a.len == strlen(b) && memcmp(a.p, b, a.len) == 0;
}

static void test_decode_services(void **state)
{
    (void)state;
    pbw_t req = {0}, s1 = {0}, s2 = {0}, list = {0}, resp = {0};
    pbw_str(&req, 7, "*");
    pbw_str(&s1, 1, "shop.v1.Shop");
    pbw_str(&s2, 1, "grpc.reflection.v1.ServerReflection");
    pbw_msg(&list, 1, &s1);
    pbw_msg(&list, 1, &s2);
    pbw_str(&resp, 1, "localhost");
    pbw_msg(&resp, 2, &req);
    pbw_v(&resp, 9, 77);   /* unknown varint field: skipped */
    pbw_f32(&resp, 10, 1); /* unknown fixed32: skipped */
    pbw_msg(&resp, 6, &list);
    pt_refl_resp_t r;
    const char *why = NULL;
    assert_int_equal(pt_refl_decode_response(resp.b, resp.n, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_SERVICES);
    assert_int_equal(r.req_kind, PT_REFL_LIST_SERVICES);
    assert_true(str_eq(r.req_arg, "*"));
    assert_int_equal(r.item_cnt, 2);
    assert_true(str_eq(r.items[0], "shop.v1.Shop"));
    assert_true(str_eq(r.items[1], "grpc.reflection.v1.ServerReflection"));
    pt_refl_resp_free(&r);
}

static void test_decode_files_and_error(void **state)
{
    (void)state;
    pbw_t fdr = {0}, resp = {0};
    pbw_str(&fdr, 1, "AAA");
    pbw_bytes(&fdr, 1, "", 0);
    pbw_str(&fdr, 1, "BB");
    pbw_msg(&resp, 4, &fdr);
    pt_refl_resp_t r;
    const char *why = NULL;
    assert_int_equal(pt_refl_decode_response(resp.b, resp.n, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_FILES);
    assert_int_equal(r.req_kind, 0);
    assert_int_equal(r.item_cnt, 3);
    assert_true(str_eq(r.items[0], "AAA"));
    assert_int_equal(r.items[1].len, 0);
    assert_true(str_eq(r.items[2], "BB"));
    pt_refl_resp_free(&r);

    pbw_t err = {0}, req = {0}, resp2 = {0};
    pbw_str(&req, 4, "pkg.Nope");
    pbw_v(&err, 1, 5);
    pbw_str(&err, 2, "Symbol not found: pkg.Nope");
    pbw_msg(&resp2, 2, &req);
    pbw_msg(&resp2, 7, &err);
    assert_int_equal(pt_refl_decode_response(resp2.b, resp2.n, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_ERROR);
    assert_int_equal(r.error_code, 5);
    assert_true(str_eq(r.error_message, "Symbol not found: pkg.Nope"));
    assert_int_equal(r.req_kind, PT_REFL_FILE_CONTAINING_SYMBOL);
    assert_true(str_eq(r.req_arg, "pkg.Nope"));
    pt_refl_resp_free(&r);

    /* an empty message is a valid response that answers nothing */
    assert_int_equal(pt_refl_decode_response((const uint8_t *)"", 0, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_OTHER);
}

static void test_decode_bad(void **state)
{
    (void)state;
    pt_refl_resp_t r;
    const char *why = NULL;
    /* length past the end */
    static const uint8_t trunc[] = {0x22, 0x05, 0x0a, 0x01};
    assert_int_equal(pt_refl_decode_response(trunc, sizeof(trunc), &r, &why), -1);
    assert_non_null(why);
    /* a group (wire type 3) */
    static const uint8_t grp[] = {0x23, 0x24};
    assert_int_equal(pt_refl_decode_response(grp, sizeof(grp), &r, &why), -1);
    /* field number 0 */
    static const uint8_t zero[] = {0x02, 0x00};
    assert_int_equal(pt_refl_decode_response(zero, sizeof(zero), &r, &why), -1);
    /* an unterminated varint */
    static const uint8_t var[] = {0x08, 0xff, 0xff};
    assert_int_equal(pt_refl_decode_response(var, sizeof(var), &r, &why), -1);
    /* two answers in one response */
    pbw_t fdr = {0}, err = {0}, two = {0};
    pbw_str(&fdr, 1, "x");
    pbw_v(&err, 1, 5);
    pbw_msg(&two, 4, &fdr);
    pbw_msg(&two, 7, &err);
    assert_int_equal(pt_refl_decode_response(two.b, two.n, &r, &why), -1);
    assert_string_equal(why, "a response with two answers");
    /* a bad file list inside */
    pbw_t inner = {0};
    static const uint8_t badlist[] = {0x0a, 0x09, 'x'};
    pbw_bytes(&inner, 4, badlist, sizeof(badlist));
    assert_int_equal(pt_refl_decode_response(inner.b, inner.n, &r, &why), -1);
    assert_string_equal(why, "bad file_descriptor_response");
}

/* A FileDescriptorProto: name, package, imports, one message with one field. */
static void file_proto(pbw_t *w, const char *name, const char *const *deps, size_t ndeps,
                       const char *msg, const char *field_type)
{
    memset(w, 0, sizeof(*w));
    pbw_str(w, 1, name);
    pbw_str(w, 2, "t");
    for (size_t i = 0; i < ndeps; i++)
        pbw_str(w, 3, deps[i]);
    pbw_t m = {0}, f = {0};
    pbw_str(&f, 1, "f");
    pbw_v(&f, 3, 1);
    pbw_v(&f, 4, PT_LABEL_OPTIONAL);
    if (field_type != NULL) {
        pbw_v(&f, 5, PT_FT_MESSAGE);
        pbw_str(&f, 6, field_type);
    } else {
        pbw_v(&f, 5, PT_FT_STRING);
    }
    pbw_str(&m, 1, msg);
    pbw_msg(&m, 2, &f);
    pbw_msg(w, 4, &m);
    pbw_str(w, 12, "proto3");
}

/* The canned server: a.proto imports b.proto and c.proto; b.proto imports c.proto. */
static pbw_t FA, FB, FC;

static void setup_files(void)
{
    static const char *const da[] = {"b.proto", "c.proto"}, *const db[] = {"c.proto"};
    file_proto(&FA, "a.proto", da, 2, "A", ".t.B");
    file_proto(&FB, "b.proto", db, 1, "B", ".t.C");
    file_proto(&FC, "c.proto", NULL, 0, "C", NULL);
}

/* file_by_filename on the canned server, as a whole encoded response */
static int serve(const char *name, pbw_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    const pbw_t *f = strcmp(name, "a.proto") == 0   ? &FA
                     : strcmp(name, "b.proto") == 0 ? &FB
                     : strcmp(name, "c.proto") == 0 ? &FC
                                                    : NULL;
    pbw_t inner = {0}, req = {0};
    pbw_str(&req, 3, name);
    pbw_msg(resp, 2, &req);
    if (f == NULL) {
        pbw_v(&inner, 1, 5);
        pbw_msg(resp, 7, &inner);
        return -1;
    }
    pbw_msg(&inner, 1, f);
    pbw_msg(resp, 4, &inner);
    return 0;
}

static void add_answer(pt_refl_files_t *fs, const pbw_t *resp)
{
    pt_refl_resp_t r;
    const char *why = NULL;
    assert_int_equal(pt_refl_decode_response(resp->b, resp->n, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_FILES);
    for (size_t i = 0; i < r.item_cnt; i++)
        assert_true(pt_refl_files_add(fs, r.items[i].p, r.items[i].len, &why) >= 0);
    pt_refl_resp_free(&r);
}

static void test_dependency_walk(void **state)
{
    (void)state;
    setup_files();
    pt_refl_files_t fs = {0};
    pbw_t resp;
    assert_int_equal(serve("a.proto", &resp), 0);
    add_answer(&fs, &resp);
    const char *miss[8], *by[8];
    assert_int_equal(pt_refl_files_missing(&fs, miss, by, 8), 2);
    assert_string_equal(miss[0], "b.proto");
    assert_string_equal(by[0], "a.proto");
    assert_string_equal(miss[1], "c.proto");

    /* rounds until nothing is missing, as the client does */
    unsigned rounds = 0;
    size_t n;
    while ((n = pt_refl_files_missing(&fs, miss, by, 8)) != 0) {
        assert_true(++rounds < 4);
        char *names[8];
        for (size_t i = 0; i < n; i++)
            names[i] = strdup(miss[i]);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(serve(names[i], &resp), 0);
            add_answer(&fs, &resp);
            free(names[i]);
        }
    }
    assert_int_equal(rounds, 1);
    assert_int_equal(fs.cnt, 3);
    const pt_refl_file_t *a = pt_refl_files_find(&fs, "a.proto");
    assert_non_null(a);
    assert_int_equal(a->dep_cnt, 2);
    /* the same file again is skipped */
    const char *why = NULL;
    assert_int_equal(pt_refl_files_add(&fs, FC.b, FC.n, &why), 1);
    assert_int_equal(fs.cnt, 3);

    /* the set loads into a pool, the types resolve across the files */
    size_t len = 0;
    uint8_t *set = pt_refl_files_to_set(&fs, &len);
    assert_non_null(set);
    pt_descpool_t *pool = NULL;
    pt_xerr_t xe;
    assert_int_equal(pt_descpool_new(NULL, &pool, &xe), 0);
    assert_int_equal(pt_descpool_add_set(pool, set, len, "test", &xe), 0);
    assert_int_equal(pt_descpool_build(pool, &xe), 0);
    const pt_msgdesc_t *ma = pt_descpool_message(pool, "t.A", 3);
    assert_non_null(ma);
    assert_string_equal(ma->fields[0].message->full_name, "t.B");
    pt_descpool_unref(pool);
    free(set);
    pt_refl_files_free(&fs);
    assert_int_equal(fs.cnt, 0);
}

static void test_missing_file_answer(void **state)
{
    (void)state;
    setup_files();
    pbw_t resp;
    assert_int_equal(serve("nope.proto", &resp), -1);
    pt_refl_resp_t r;
    const char *why = NULL;
    assert_int_equal(pt_refl_decode_response(resp.b, resp.n, &r, &why), 0);
    assert_int_equal(r.kind, PT_REFL_R_ERROR);
    assert_int_equal(r.error_code, 5);
    assert_true(str_eq(r.req_arg, "nope.proto"));
    pt_refl_resp_free(&r);
}

static void test_bad_files(void **state)
{
    (void)state;
    pt_refl_files_t fs = {0};
    const char *why = NULL;
    pbw_t w = {0};
    pbw_str(&w, 2, "pkg"); /* no name */
    assert_int_equal(pt_refl_files_add(&fs, w.b, w.n, &why), -1);
    assert_string_equal(why, "a FileDescriptorProto without a file name");
    pbw_t e = {0};
    pbw_bytes(&e, 1, "", 0); /* empty name */
    assert_int_equal(pt_refl_files_add(&fs, e.b, e.n, &why), -1);
    pbw_t z = {0};
    pbw_bytes(&z, 3, "a\0b", 3); /* NUL inside an import */
    pbw_str(&z, 1, "z.proto");
    assert_int_equal(pt_refl_files_add(&fs, z.b, z.n, &why), -1);
    static const uint8_t trunc[] = {0x0a, 0x10, 'a'};
    assert_int_equal(pt_refl_files_add(&fs, trunc, sizeof(trunc), &why), -1);
    assert_string_equal(why, "not a FileDescriptorProto");
    assert_int_equal(fs.cnt, 0);
    pt_refl_files_free(&fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_request),
        cmocka_unit_test(test_decode_services),
        cmocka_unit_test(test_decode_files_and_error),
        cmocka_unit_test(test_decode_bad),
        cmocka_unit_test(test_dependency_walk),
        cmocka_unit_test(test_missing_file_answer),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
