/* test_descpool.c -- loading, resolving and indexing descriptor sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pbwire.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/json.h"
#include "xfail_alloc.h"

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static pt_descpool_t *load_test_set(void)
{
    size_t len;
    uint8_t *set = read_all(PT_TEST_DESC, &len);
    pt_descpool_t *p;
    pt_xerr_t err;
    assert_int_equal(pt_descpool_new(NULL, &p, &err), 0);
    int rc = pt_descpool_add_set(p, set, len, "xtest.pb", &err);
    if (rc == 0)
        rc = pt_descpool_build(p, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    free(set);
    return p;
}

static const pt_fielddesc_t *field(const pt_msgdesc_t *m, const char *name)
{
    const pt_fielddesc_t *f = pt_msgdesc_field_by_name(m, name, strlen(name));
    assert_non_null(f);
    return f;
}

static void test_lookups(void **state)
{
    (void)state;
    pt_descpool_t *p = load_test_set();
    const pt_msgdesc_t *m = pt_descpool_message(p, "pt.test.Scalars", 15);
    assert_non_null(m);
    assert_ptr_equal(pt_descpool_message(p, ".pt.test.Scalars", 16), m);
    assert_string_equal(m->name, "Scalars");
    assert_true(m->is_proto3);
    assert_string_equal(m->file->name, "xtest.proto");
    assert_string_equal(m->file->origin, "xtest.pb");
    assert_null(pt_descpool_message(p, "pt.test.Nope", 12));
    assert_null(pt_descpool_message(p, "pt.test.Color", 13)); /* an enum, not a message */
    assert_null(pt_descpool_message(p, "pt.test", 7));       /* a package */
    assert_non_null(pt_descpool_enum(p, "pt.test.Color", 13));
    assert_non_null(pt_descpool_service(p, "pt.test.TestService", 19));
    assert_ptr_equal(pt_descpool_any_type(p, "type.googleapis.com/pt.test.Scalars", 35), m);
    assert_null(pt_descpool_any_type(p, "pt.test.Scalars", 15)); /* no slash */
    assert_null(pt_descpool_any_type(p, "type.googleapis.com/", 20));

    /* fields sorted by number, indexes by number and by both names */
    for (size_t i = 1; i < m->field_cnt; i++)
        assert_true(m->fields[i - 1].number < m->fields[i].number);
    const pt_fielddesc_t *f = pt_msgdesc_field_by_number(m, 3);
    assert_non_null(f);
    assert_string_equal(f->name, "f_int64");
    assert_string_equal(f->json_name, "fInt64");
    assert_ptr_equal(field(m, "fInt64"), f);
    assert_ptr_equal(field(m, "f_int64"), f);
    assert_null(pt_msgdesc_field_by_number(m, 10));
    assert_null(pt_msgdesc_field_by_number(m, 100000));
    assert_null(pt_msgdesc_field_by_name(m, "fint64", 6));
    assert_int_equal(f->type, PT_FT_INT64);
    assert_int_equal(f->_wire_type, PT_WT_VARINT);
    assert_false(f->has_presence);
    assert_ptr_equal(f->parent, m);
    assert_string_equal(field(m, "custom")->json_name, "my_custom");
    assert_ptr_equal(field(m, "my_custom"), field(m, "custom"));
    f = field(m, "opt_int32");
    assert_true(f->has_presence);
    assert_int_equal(f->oneof_index, -1); /* synthetic oneof hidden */
    assert_int_equal(m->oneof_cnt, 0);
    assert_non_null(field(m, "f_enum")->enumdesc);
    assert_int_equal(field(m, "f_double")->_wire_type, PT_WT_I64);
    assert_int_equal(field(m, "f_float")->_wire_type, PT_WT_I32);

    const pt_msgdesc_t *r = pt_descpool_message(p, "pt.test.Repeated", 16);
    assert_true(field(r, "r_int32")->is_packed);
    assert_false(field(r, "r_int64")->is_packed); /* [packed = false] */
    assert_false(field(r, "r_string")->is_packed);
    assert_int_equal(field(r, "r_msg")->label, PT_LABEL_REPEATED);
    assert_false(field(r, "r_msg")->has_presence);

    const pt_msgdesc_t *mp = pt_descpool_message(p, "pt.test.Maps", 12);
    f = field(mp, "m_str");
    assert_true(f->is_map);
    assert_true(f->message->is_map_entry);
    assert_string_equal(f->message->full_name, "pt.test.Maps.MStrEntry");
    assert_false(field(mp, "m_value")->message->fields[1].message == NULL);

    const pt_msgdesc_t *o = pt_descpool_message(p, "pt.test.Oneofs", 14);
    assert_int_equal(o->oneof_cnt, 1);
    assert_string_equal(o->oneof_names[0], "kind");
    assert_int_equal(field(o, "name")->oneof_index, 0);
    assert_true(field(o, "name")->has_presence);
    assert_int_equal(field(o, "other")->oneof_index, -1);

    const pt_msgdesc_t *w = pt_descpool_message(p, "pt.test.WKTs", 12);
    static const struct {
        const char *f;
        uint8_t wkt;
    } wk[] = {{"any", PT_WKT_ANY},          {"ts", PT_WKT_TIMESTAMP},    {"dur", PT_WKT_DURATION},
              {"fm", PT_WKT_FIELDMASK},     {"st", PT_WKT_STRUCT},       {"val", PT_WKT_VALUE},
              {"lv", PT_WKT_LISTVALUE},     {"empty", PT_WKT_EMPTY},     {"dv", PT_WKT_DOUBLEVALUE},
              {"fv", PT_WKT_FLOATVALUE},    {"i64v", PT_WKT_INT64VALUE}, {"u64v", PT_WKT_UINT64VALUE},
              {"i32v", PT_WKT_INT32VALUE},  {"u32v", PT_WKT_UINT32VALUE}, {"bv", PT_WKT_BOOLVALUE},
              {"sv", PT_WKT_STRINGVALUE},   {"bytv", PT_WKT_BYTESVALUE}};
    for (size_t i = 0; i < sizeof wk / sizeof wk[0]; i++)
        assert_int_equal(field(w, wk[i].f)->message->wkt, wk[i].wkt);
    assert_int_equal(w->wkt, PT_WKT_NONE);
    assert_string_equal(field(w, "nv")->enumdesc->full_name, "google.protobuf.NullValue");

    /* proto2 */
    const pt_msgdesc_t *p2 = pt_descpool_message(p, "pt.test2.P2", 11);
    assert_false(p2->is_proto3);
    f = field(p2, "a");
    assert_true(f->has_presence);
    assert_string_equal(f->default_value, "7");
    assert_string_equal(field(p2, "level")->default_value, "HIGH");
    assert_true(field(p2, "level")->enumdesc->is_closed);
    assert_int_equal(field(p2, "b")->label, PT_LABEL_REQUIRED);
    assert_int_equal(field(p2, "grp")->type, PT_FT_GROUP);
    assert_int_equal(field(p2, "grp")->_wire_type, PT_WT_SGROUP);
    assert_string_equal(field(p2, "grp")->message->full_name, "pt.test2.P2.Grp");
    assert_false(field(p2, "unpacked")->is_packed);
    assert_true(field(p2, "packed")->is_packed);
    assert_false(field(pt_descpool_message(p, "pt.test.Scalars", 15), "f_enum")->enumdesc->is_closed);
    pt_descpool_unref(p);
}

static void test_enums(void **state)
{
    (void)state;
    pt_descpool_t *p = load_test_set();
    const pt_enumdesc_t *e = pt_descpool_enum(p, "pt.test.Color", 13);
    assert_int_equal(e->value_cnt, 4);
    assert_int_equal(pt_enumdesc_value_by_name(e, "RED", 3, false)->number, 1);
    assert_null(pt_enumdesc_value_by_name(e, "red", 3, false));
    assert_int_equal(pt_enumdesc_value_by_name(e, "red", 3, true)->number, 1);
    assert_string_equal(pt_enumdesc_value_by_number(e, -3)->name, "BLUE");
    assert_string_equal(pt_enumdesc_value_by_number(e, 0)->name, "COLOR_UNSPECIFIED");
    assert_null(pt_enumdesc_value_by_number(e, 7));
    assert_ptr_equal(pt_enumdesc_value_by_number(e, 2)->parent, e);
    pt_descpool_unref(p);
}

static void test_services(void **state)
{
    (void)state;
    pt_descpool_t *p = load_test_set();
    assert_int_equal(pt_descpool_service_cnt(p), 1);
    const pt_svcdesc_t *s = pt_descpool_service_at(p, 0);
    assert_string_equal(s->full_name, "pt.test.TestService");
    assert_int_equal(s->method_cnt, 2);
    assert_null(pt_descpool_service_at(p, 1));
    const pt_methoddesc_t *m = pt_descpool_method(p, "pt.test.TestService.Get", 23);
    assert_non_null(m);
    assert_ptr_equal(pt_descpool_method(p, "pt.test.TestService/Get", 23), m);
    assert_ptr_equal(pt_descpool_method(p, "/pt.test.TestService/Get", 24), m);
    assert_null(pt_descpool_method(p, "pt.test.TestService/Nope", 24));
    assert_null(pt_descpool_method(p, "pt.test/TestService.Get", 23)); /* the slash must be the last dot */
    assert_null(pt_descpool_method(p, "pt.test.TestService", 19));     /* a service, not a method */
    char longname[2000];
    memset(longname, 'a', sizeof longname);
    longname[600] = '/';
    assert_null(pt_descpool_method(p, longname, sizeof longname));
    assert_string_equal(m->input->full_name, "pt.test.GetRequest");
    assert_string_equal(m->output->full_name, "pt.test.Nested");
    assert_ptr_equal(m->service, s);
    assert_false(m->server_streaming);
    assert_true(s->methods[1].server_streaming);
    assert_null(s->methods[1].options);
    /* the google.api.http extension (field 72295728, length-delimited) survives */
    assert_non_null(m->options);
    pbw_t tag = {.n = 0};
    pbw_tag(&tag, 72295728, 2);
    assert_non_null(memmem(m->options, m->options_len, tag.b, tag.n));
    assert_non_null(memmem(m->options, m->options_len, "/v1/{name=things/*}", 19));
    assert_true(pt_descpool_file_cnt(p) >= 10);
    assert_string_equal(pt_descpool_file_at(p, pt_descpool_file_cnt(p) - 1)->name, "xtest2.proto");
    pt_descpool_unref(p);
}

/* ---- hand-made descriptor sets -------------------------------------------------- */

/* FieldDescriptorProto */
static void fld(pbw_t *msg, const char *name, int num, int label, int type, const char *type_name)
{
    pbw_t f = {.n = 0};
    pbw_str(&f, 1, name);
    pbw_v(&f, 3, (uint64_t)(int64_t)num);
    pbw_v(&f, 4, (uint64_t)label);
    if (type)
        pbw_v(&f, 5, (uint64_t)type);
    if (type_name)
        pbw_str(&f, 6, type_name);
    pbw_msg(msg, 2, &f);
}

/* FileDescriptorProto with one message holding the given (already encoded) fields */
static void file(pbw_t *set, const char *name, const char *pkg, const char *dep, const char *msg_name,
                 const pbw_t *fields)
{
    pbw_t f = {.n = 0}, m = {.n = 0};
    pbw_str(&f, 1, name);
    if (pkg)
        pbw_str(&f, 2, pkg);
    if (dep)
        pbw_str(&f, 3, dep);
    if (msg_name) {
        pbw_str(&m, 1, msg_name);
        if (fields)
            pbw_raw(&m, fields->b, fields->n);
        pbw_msg(&f, 4, &m);
    }
    pbw_str(&f, 12, "proto3");
    pbw_msg(set, 1, &f);
}

/* Loads sets into a fresh pool and builds it; returns the first error code. */
static int load(pt_xerr_t *err, const pbw_t *a, const pbw_t *b)
{
    pt_descpool_t *p;
    assert_int_equal(pt_descpool_new(NULL, &p, err), 0);
    int rc = pt_descpool_add_set(p, a->b, a->n, "a.pb", err);
    if (rc == 0 && b != NULL)
        rc = pt_descpool_add_set(p, b->b, b->n, "b.pb", err);
    if (rc == 0)
        rc = pt_descpool_build(p, err);
    if (rc != 0)
        assert_int_equal(err->code, rc);
    pt_descpool_unref(p);
    return rc;
}

static void test_handmade_ok(void **state)
{
    (void)state;
    pt_xerr_t err;
    pbw_t set = {.n = 0}, fl = {.n = 0};
    fld(&fl, "x", 1, 1, 5, NULL);
    fld(&fl, "other", 2, 1, 11, "M2");       /* relative name, resolved from the scope */
    fld(&fl, "self", 3, 1, 0, ".p.q.M");     /* type missing: taken from the reference */
    file(&set, "a.proto", "p.q", NULL, "M", &fl);
    file(&set, "b.proto", "p.q", "a.proto", "M2", NULL);
    assert_int_equal(load(&err, &set, NULL), 0);
    /* the same set twice: identical duplicates are skipped */
    assert_int_equal(load(&err, &set, &set), 0);
}

static void test_errors(void **state)
{
    (void)state;
    pt_xerr_t err;
    /* garbage */
    pbw_t junk = {.n = 0};
    pbw_raw(&junk, "\x0a\xff\xff\xff\xff\x0f", 6);
    assert_int_equal(load(&err, &junk, NULL), PT_XERR_CORRUPT);
    assert_non_null(strstr(err.msg, "a.pb"));

    /* missing dependency */
    pbw_t s1 = {.n = 0};
    file(&s1, "b.proto", "p", "a.proto", "B", NULL);
    assert_int_equal(load(&err, &s1, NULL), PT_XERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "b.proto"));
    assert_non_null(strstr(err.msg, "missing dependency a.proto"));

    /* same file name, different contents, in two sets */
    pbw_t s2 = {.n = 0}, s3 = {.n = 0};
    file(&s2, "a.proto", "p", NULL, "A", NULL);
    file(&s3, "a.proto", "p", NULL, "A2", NULL);
    assert_int_equal(load(&err, &s2, &s3), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "different contents"));

    /* the same symbol from two files */
    pbw_t s4 = {.n = 0};
    file(&s4, "a.proto", "p", NULL, "A", NULL);
    file(&s4, "b.proto", "p", NULL, "A", NULL);
    assert_int_equal(load(&err, &s4, NULL), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "p.A is already defined by a.proto"));

    /* unknown type */
    pbw_t s5 = {.n = 0}, f5 = {.n = 0};
    fld(&f5, "x", 1, 1, 11, ".p.Missing");
    file(&s5, "a.proto", "p", NULL, "A", &f5);
    assert_int_equal(load(&err, &s5, NULL), PT_XERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "unknown type .p.Missing"));
    assert_string_equal(err.path, "p.A");

    /* bad field numbers, duplicates, names, labels, types */
    static const struct {
        const char *n1;
        int num1, label1, type1;
        const char *n2;
        int num2;
        const char *want;
    } cases[] = {
        {"x", 0, 1, 5, "y", 2, "invalid field number"},
        {"x", 536870912, 1, 5, "y", 2, "invalid field number"},
        {"x", -1, 1, 5, "y", 2, "invalid field number"},
        {"x", 1, 1, 5, "y", 1, "duplicate field number"},
        {"x", 1, 1, 5, "x", 2, "duplicate field name"},
        {"a-b", 1, 1, 5, "y", 2, "invalid field name"},
        {"x", 1, 9, 5, "y", 2, "invalid label"},
        {"x", 1, 1, 19, "y", 2, "invalid or missing type"},
        {"x", 1, 1, 11, "y", 2, "message field without a message type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pbw_t s = {.n = 0}, f = {.n = 0};
        fld(&f, cases[i].n1, cases[i].num1, cases[i].label1, cases[i].type1, NULL);
        fld(&f, cases[i].n2, cases[i].num2, 1, 5, NULL);
        file(&s, "a.proto", "p", NULL, "A", &f);
        assert_int_equal(load(&err, &s, NULL), PT_XERR_INVALID);
        if (strstr(err.msg, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err.msg);
    }
    /* bad message and package names */
    pbw_t s6 = {.n = 0};
    file(&s6, "a.proto", "p", NULL, "9A", NULL);
    assert_int_equal(load(&err, &s6, NULL), PT_XERR_INVALID);
    pbw_t s7 = {.n = 0};
    file(&s7, "a.proto", "p..q", NULL, "A", NULL);
    assert_int_equal(load(&err, &s7, NULL), PT_XERR_INVALID);
    /* a file without a name */
    pbw_t s8 = {.n = 0}, f8 = {.n = 0};
    pbw_str(&f8, 2, "p");
    pbw_msg(&s8, 1, &f8);
    assert_int_equal(load(&err, &s8, NULL), PT_XERR_CORRUPT);
}

/* ---- proto2 defaults and json_name clashes ---------------------------------------- */

/* FieldDescriptorProto with optional default_value (7) and json_name (10) */
static void fld_x(pbw_t *msg, const char *name, int num, int label, int type, const char *type_name,
                  const char *def, const char *json)
{
    pbw_t f = {.n = 0};
    pbw_str(&f, 1, name);
    pbw_v(&f, 3, (uint64_t)(int64_t)num);
    pbw_v(&f, 4, (uint64_t)label);
    pbw_v(&f, 5, (uint64_t)type);
    if (type_name)
        pbw_str(&f, 6, type_name);
    if (def)
        pbw_str(&f, 7, def);
    if (json)
        pbw_str(&f, 10, json);
    pbw_msg(msg, 2, &f);
}

/* file "d.proto", package p, `syntax`, enum p.E {E0 = 0; E1 = 1}, message p.M with `fields` */
static void file_x(pbw_t *set, const char *syntax, const pbw_t *fields)
{
    pbw_t f = {.n = 0}, m = {.n = 0}, e = {.n = 0}, v0 = {.n = 0}, v1 = {.n = 0};
    pbw_str(&f, 1, "d.proto");
    pbw_str(&f, 2, "p");
    pbw_str(&v0, 1, "E0");
    pbw_v(&v0, 2, 0);
    pbw_str(&v1, 1, "E1");
    pbw_v(&v1, 2, 1);
    pbw_str(&e, 1, "E");
    pbw_msg(&e, 2, &v0);
    pbw_msg(&e, 2, &v1);
    pbw_str(&m, 1, "M");
    pbw_raw(&m, fields->b, fields->n);
    pbw_msg(&f, 4, &m);
    pbw_msg(&f, 5, &e);
    pbw_str(&f, 12, syntax);
    pbw_msg(set, 1, &f);
}

enum { OPT = 1, REP = 3 };
enum { T_DOUBLE = 1, T_FLOAT = 2, T_INT64 = 3, T_UINT64 = 4, T_INT32 = 5, T_BOOL = 8, T_STRING = 9,
       T_MSG = 11, T_BYTES = 12, T_UINT32 = 13, T_ENUM = 14, T_SINT32 = 17 };

static void test_defaults(void **state)
{
    (void)state;
    pt_xerr_t err;
    static const struct {
        int type, label;
        const char *type_name, *def;
        bool ok;
    } cases[] = {
        {T_INT32, OPT, NULL, "7", true},
        {T_INT32, OPT, NULL, "-2147483648", true},
        {T_INT32, OPT, NULL, "2147483647", true},
        {T_INT32, OPT, NULL, "0x10", true},
        {T_INT32, OPT, NULL, "7x", false},
        {T_INT32, OPT, NULL, "99999999999", false},
        {T_INT32, OPT, NULL, "2147483648", false},
        {T_INT32, OPT, NULL, "", false},
        {T_INT32, OPT, NULL, " 7", false},
        {T_SINT32, OPT, NULL, "-2147483649", false},
        {T_INT64, OPT, NULL, "-9223372036854775808", true},
        {T_INT64, OPT, NULL, "9223372036854775808", false},
        {T_UINT64, OPT, NULL, "18446744073709551615", true},
        {T_UINT64, OPT, NULL, "18446744073709551616", false},
        {T_UINT64, OPT, NULL, "-1", false},
        {T_UINT32, OPT, NULL, "4294967295", true},
        {T_UINT32, OPT, NULL, "4294967296", false},
        {T_BOOL, OPT, NULL, "true", true},
        {T_BOOL, OPT, NULL, "false", true},
        {T_BOOL, OPT, NULL, "yes", false},
        {T_BOOL, OPT, NULL, "1", false},
        {T_FLOAT, OPT, NULL, "1.5", true},
        {T_FLOAT, OPT, NULL, "-inf", true},
        {T_DOUBLE, OPT, NULL, "nan", true},
        {T_DOUBLE, OPT, NULL, "1e10", true},
        {T_FLOAT, OPT, NULL, "1.2.3", false},
        {T_DOUBLE, OPT, NULL, "abc", false},
        {T_DOUBLE, OPT, NULL, "", false},
        {T_ENUM, OPT, ".p.E", "E1", true},
        {T_ENUM, OPT, ".p.E", "E7", false},
        {T_ENUM, OPT, ".p.E", "1", false},
        {T_STRING, OPT, NULL, "any \\ text", true},
        /* bytes: C-escaped as protoc's CEscape writes them */
        {T_BYTES, OPT, NULL, "a\\000b\\377\\n\\\\\\\"\\'", true},
        {T_BYTES, OPT, NULL, "\\x41\\t\\r", true},
        {T_BYTES, OPT, NULL, "\\q", false},
        {T_BYTES, OPT, NULL, "abc\\", false},
        {T_BYTES, OPT, NULL, "\\400", false},
        {T_BYTES, OPT, NULL, "\\xg", false},
        {T_BYTES, OPT, NULL, "\\x100", false},
        {T_MSG, OPT, ".p.M", "x", false},
        {T_INT32, REP, NULL, "1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pbw_t s = {.n = 0}, f = {.n = 0};
        fld_x(&f, "ok_field", 1, OPT, T_INT32, NULL, NULL, NULL);
        fld_x(&f, "dflt", 2, cases[i].label, cases[i].type, cases[i].type_name, cases[i].def, NULL);
        file_x(&s, "proto2", &f);
        int rc = load(&err, &s, NULL);
        if (cases[i].ok) {
            if (rc != 0)
                fail_msg("case %zu (%s): %s", i, cases[i].def, err.msg);
            continue;
        }
        if (rc != PT_XERR_INVALID)
            fail_msg("case %zu (%s) accepted", i, cases[i].def);
        /* the error names the file, the message and the field */
        if (strstr(err.msg, "d.proto") == NULL || strstr(err.msg, "message p.M field dflt") == NULL)
            fail_msg("case %zu: %s", i, err.msg);
        assert_string_equal(err.path, "p.M");
    }
    /* the message says what is wrong */
    pbw_t s = {.n = 0}, f = {.n = 0};
    fld_x(&f, "lvl", 1, OPT, T_ENUM, ".p.E", "E9", NULL);
    file_x(&s, "proto2", &f);
    assert_int_equal(load(&err, &s, NULL), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "names no value"));
    assert_non_null(strstr(err.msg, "\"E9\""));
    s.n = f.n = 0;
    fld_x(&f, "n", 1, OPT, T_INT32, NULL, "99999999999", NULL);
    file_x(&s, "proto2", &f);
    assert_int_equal(load(&err, &s, NULL), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "out of range"));
    /* proto3 takes no explicit default at all */
    s.n = f.n = 0;
    fld_x(&f, "n", 1, OPT, T_INT32, NULL, "1", NULL);
    file_x(&s, "proto3", &f);
    assert_int_equal(load(&err, &s, NULL), PT_XERR_INVALID);
    assert_non_null(strstr(err.msg, "proto3"));

    /* the stored text is kept; pb->json never prints proto2 defaults, even with emit_defaults */
    s.n = f.n = 0;
    fld_x(&f, "n", 1, OPT, T_INT32, NULL, "42", NULL);
    fld_x(&f, "b", 2, OPT, T_BYTES, NULL, "\\001x", NULL);
    file_x(&s, "proto2", &f);
    pt_descpool_t *p;
    assert_int_equal(pt_descpool_new(NULL, &p, &err), 0);
    assert_int_equal(pt_descpool_add_set(p, s.b, s.n, "d.pb", &err), 0);
    assert_int_equal(pt_descpool_build(p, &err), 0);
    const pt_msgdesc_t *m = pt_descpool_message(p, "p.M", 3);
    assert_string_equal(field(m, "n")->default_value, "42");
    assert_string_equal(field(m, "b")->default_value, "\\001x");
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_json_opts_t o = {.emit_defaults = true};
    assert_int_equal(pt_pb_to_json(p, m, (const uint8_t *)"", 0, &o, &out, &err), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "{}", 2);
    pt_xbuf_dispose(&out);
    pt_descpool_unref(p);
}

static void test_json_name_clash(void **state)
{
    (void)state;
    pt_xerr_t err;
    static const struct {
        const char *n1, *j1, *n2, *j2;
        const char *want; /* NULL: accepted */
    } cases[] = {
        {"foo_bar", NULL, "fooBar", NULL, "json name \"fooBar\" of field foo_bar clashes with the proto name of field fooBar"},
        {"a", "same", "b", "same", "json name \"same\" of field b clashes with the json name of field a"},
        {"a", "b", "b", NULL, "json name \"b\" of field a clashes with the proto name of field b"},
        {"a", "b_c", "b_c", "x", "json name \"b_c\" of field a clashes with the proto name of field b_c"},
        {"foobar", NULL, "foo_bar", NULL, NULL},  /* "foobar" vs "fooBar": distinct */
        {"a", "b", "b", "a", "json name \"b\" of field a clashes with the proto name of field b"},
        {"a", "x", "b", "y", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pbw_t s = {.n = 0}, f = {.n = 0};
        fld_x(&f, cases[i].n1, 1, OPT, T_INT32, NULL, NULL, cases[i].j1);
        fld_x(&f, cases[i].n2, 2, OPT, T_STRING, NULL, NULL, cases[i].j2);
        file_x(&s, "proto3", &f);
        int rc = load(&err, &s, NULL);
        if (cases[i].want == NULL) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, err.msg);
            continue;
        }
        if (rc != PT_XERR_INVALID)
            fail_msg("case %zu accepted", i);
        if (strstr(err.msg, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err.msg);
        assert_non_null(strstr(err.msg, "d.proto"));
        assert_non_null(strstr(err.msg, "message p.M"));
        assert_non_null(strstr(err.msg, cases[i].n1));
        assert_non_null(strstr(err.msg, cases[i].n2));
    }

    /* proto2: accepted (protoc 3.21 only warns); the lookup is deterministic: a
     * proto name wins over a json_name, the lowest field number wins among json_names */
    pbw_t s = {.n = 0}, f = {.n = 0};
    fld_x(&f, "foo_bar", 1, OPT, T_INT32, NULL, NULL, NULL);
    fld_x(&f, "fooBar", 2, OPT, T_INT32, NULL, NULL, NULL);
    fld_x(&f, "c", 4, OPT, T_INT32, NULL, NULL, "same");
    fld_x(&f, "d", 3, OPT, T_INT32, NULL, NULL, "same");
    file_x(&s, "proto2", &f);
    pt_descpool_t *p;
    assert_int_equal(pt_descpool_new(NULL, &p, &err), 0);
    assert_int_equal(pt_descpool_add_set(p, s.b, s.n, "d.pb", &err), 0);
    if (pt_descpool_build(p, &err) != 0)
        fail_msg("%s", err.msg);
    const pt_msgdesc_t *m = pt_descpool_message(p, "p.M", 3);
    assert_int_equal(field(m, "fooBar")->number, 2);
    assert_int_equal(field(m, "foo_bar")->number, 1);
    assert_int_equal(field(m, "same")->number, 3);
    assert_int_equal(field(m, "c")->number, 4);
    pt_descpool_unref(p);
}

static void test_duration_sign_message(void **state)
{
    (void)state;
    pt_descpool_t *p = load_test_set();
    const pt_msgdesc_t *w = pt_descpool_message(p, "pt.test.WKTs", 12);
    uint32_t durno = field(w, "dur")->number;
    static const struct {
        int64_t s;
        int32_t ns;
        const char *want;
    } cases[] = {
        {1, -1, "seconds (1) and nanos (-1) have opposite signs"},
        {-5, 7, "seconds (-5) and nanos (7) have opposite signs"},
        {1, 1000000000, "out of range"},
        {315576000001LL, 0, "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pbw_t d = {.n = 0}, msg = {.n = 0};
        pbw_v(&d, 1, (uint64_t)cases[i].s);
        pbw_v(&d, 2, (uint64_t)(int64_t)cases[i].ns);
        pbw_msg(&msg, durno, &d);
        pt_xbuf_t out;
        pt_xbuf_init(&out, NULL);
        pt_xerr_t err;
        assert_int_equal(pt_pb_to_json(p, w, msg.b, msg.n, NULL, &out, &err), PT_XERR_INVALID);
        if (strstr(err.msg, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err.msg);
        if (i >= 2 && strstr(err.msg, "opposite") != NULL)
            fail_msg("case %zu: %s", i, err.msg);
        pt_xbuf_dispose(&out);
    }
    /* same signs and zero seconds with negative nanos are fine */
    pbw_t d = {.n = 0}, msg = {.n = 0};
    pbw_v(&d, 2, (uint64_t)(int64_t)-500000000);
    pbw_msg(&msg, durno, &d);
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    assert_int_equal(pt_pb_to_json(p, w, msg.b, msg.n, NULL, &out, &err), 0);
    assert_non_null(memmem(out.data, out.len, "\"-0.500s\"", 9));
    pt_xbuf_dispose(&out);
    pt_descpool_unref(p);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* messages nested 300 deep: refused before protobuf-c recurses */
    static pbw_t lv[2];
    pbw_t *cur = &lv[0], *nxt = &lv[1];
    cur->n = 0;
    pbw_str(cur, 1, "M");
    for (int i = 0; i < 300; i++) {
        nxt->n = 0;
        pbw_str(nxt, 1, "M");
        pbw_msg(nxt, 3, cur);
        pbw_t *t = cur;
        cur = nxt;
        nxt = t;
    }
    pbw_t f = {.n = 0}, set = {.n = 0};
    pbw_str(&f, 1, "deep.proto");
    pbw_msg(&f, 4, cur);
    pbw_msg(&set, 1, &f);
    pt_xerr_t err;
    assert_int_equal(load(&err, &set, NULL), PT_XERR_CORRUPT);
    assert_non_null(strstr(err.msg, "nested deeper"));
}

static void test_lifecycle(void **state)
{
    (void)state;
    pt_descpool_t *p = load_test_set();
    pt_xerr_t err;
    assert_int_equal(pt_descpool_add_set(p, (const uint8_t *)"", 0, "x", &err), PT_XERR_INVALID);
    assert_int_equal(pt_descpool_build(p, &err), PT_XERR_INVALID);
    pt_descpool_ref(p);
    pt_descpool_unref(p);
    assert_non_null(pt_descpool_message(p, "pt.test.Scalars", 15)); /* still alive */
    pt_descpool_unref(p);
    pt_descpool_unref(NULL);

    /* lookups on an unbuilt pool find nothing */
    assert_int_equal(pt_descpool_new(NULL, &p, &err), 0);
    assert_null(pt_descpool_message(p, "pt.test.Scalars", 15));
    assert_int_equal(pt_descpool_service_cnt(p), 0);
    pt_descpool_unref(p);
}

static void test_nomem(void **state)
{
    (void)state;
    size_t len;
    uint8_t *set = read_all(PT_TEST_DESC, &len);
    for (long n = 0;; n++) {
        xfail_alloc_t fa;
        xfail_alloc_init(&fa, n);
        pt_descpool_t *p = NULL;
        pt_xerr_t err;
        int rc = pt_descpool_new(&fa.a, &p, &err);
        if (rc == 0)
            rc = pt_descpool_add_set(p, set, len, "xtest.pb", &err);
        if (rc == 0)
            rc = pt_descpool_build(p, &err);
        if (rc == 0)
            assert_non_null(pt_descpool_message(p, "pt.test.Scalars", 15));
        pt_descpool_unref(p);
        assert_int_equal(fa.live, 0);
        if (rc == 0)
            break;
        assert_int_equal(rc, PT_XERR_NOMEM);
        assert_true(n < 100000);
    }
    free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),     cmocka_unit_test(test_enums),
        cmocka_unit_test(test_services),    cmocka_unit_test(test_handmade_ok),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_lifecycle),   cmocka_unit_test(test_nomem),
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_json_name_clash),
        cmocka_unit_test(test_duration_sign_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
