/*
 * test_openapi.c -- the OpenAPI generator (observe/openapi.c) and the WSDL
 * schema writer (transcoder/soap_schema.c) on the test descriptor sets
 * (test/proto/openapi_test.proto: every field kind, recursion, maps of
 * messages, oneofs, WKTs, streaming, a multi-segment variable, a custom
 * method; bookstore_http.proto) and WSDLs (test/xml/crm.wsdl, a recursive
 * one inline). Run under ASan in build-asan as well: the generator must not
 * crash or leak on any of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "observe/openapi.h"
#include "portico/transcoder/descpool.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/soap.h"
#include "portico/transcoder/soap_schema.h"

static pt_descpool_t *load_pool(const char *const *files, size_t n)
{
    pt_descpool_t *p = NULL;
    assert_int_equal(pt_descpool_new(NULL, &p, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc((size_t)len);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        pt_xerr_t xe;
        assert_int_equal(pt_descpool_add_set(p, buf, (size_t)len, files[i], &xe), 0);
        free(buf);
    }
    pt_xerr_t xe;
    assert_int_equal(pt_descpool_build(p, &xe), 0);
    return p;
}

/* doc[k1][k2]...; NULL-terminated keys */
static json_object *at(json_object *o, ...)
{
    va_list ap;
    va_start(ap, o);
    for (const char *k = va_arg(ap, const char *); k != NULL && o != NULL;
         k = va_arg(ap, const char *))
        o = json_object_object_get(o, k);
    va_end(ap);
    return o;
}

static const char *str_at(json_object *o, const char *k)
{
    json_object *v = json_object_object_get(o, k);
    return v != NULL ? json_object_get_string(v) : NULL;
}

/* The parameter `name` of an operation, or NULL. */
static json_object *param(json_object *op, const char *name)
{
    json_object *ps = json_object_object_get(op, "parameters");
    for (size_t i = 0; ps != NULL && i < json_object_array_length(ps); i++) {
        json_object *p = json_object_array_get_idx(ps, i);
        if (strcmp(str_at(p, "name"), name) == 0)
            return p;
    }
    return NULL;
}

static json_object *gen(const pt_descpool_t *pool, bool proto_names, bool enum_ints,
                        bool default_bindings)
{
    pt_httprule_opts_t ro = {.add_default_bindings = default_bindings};
    pt_httprule_table_t *t = NULL;
    pt_xerrs_t *errs = calloc(1, sizeof(*errs));
    assert_non_null(errs);
    int rc = pt_httprule_table_new(pool, &ro, &t, errs);
    if (rc != 0)
        fail_msg("%s: %s", errs->items[0].path, errs->items[0].msg);
    free(errs);
    pt_openapi_t *o = pt_openapi_new("T", "9", NULL, "http://127.0.0.1:1");
    assert_non_null(o);
    pt_openapi_grpc_t g = {.table = t, .route = "r"};
    g.jopts.proto_names = proto_names;
    g.jopts.enums_as_ints = enum_ints;
    assert_int_equal(pt_openapi_add_grpc(o, &g), 0);
    json_object *doc = pt_openapi_finish(o);
    pt_httprule_table_free(t);
    assert_non_null(doc);
    return doc;
}

static void test_every_field_kind(void **state)
{
    (void)state;
    const char *files[] = {PT_OPENAPI_TEST_DESC};
    pt_descpool_t *pool = load_pool(files, 1);
    json_object *doc = gen(pool, false, false, true);
    json_object *sc = at(doc, "components", "schemas", NULL);
    assert_string_equal(str_at(doc, "openapi"), "3.1.0");
    assert_string_equal(str_at(at(doc, "info", NULL), "version"), "9");

    /* scalars: proto3 JSON forms; json_name honoured */
    json_object *s = at(sc, "pt.test.Scalars", "properties", NULL);
    assert_non_null(s);
    assert_string_equal(str_at(at(s, "fInt64", NULL), "type"), "string");
    assert_string_equal(str_at(at(s, "fInt64", NULL), "format"), "int64");
    assert_string_equal(str_at(at(s, "fUint64", NULL), "format"), "uint64");
    assert_string_equal(str_at(at(s, "fFixed64", NULL), "type"), "string");
    assert_string_equal(str_at(at(s, "fSint64", NULL), "type"), "string");
    assert_string_equal(str_at(at(s, "fInt32", NULL), "type"), "integer");
    assert_string_equal(str_at(at(s, "fUint32", NULL), "format"), "uint32");
    assert_string_equal(str_at(at(s, "fDouble", NULL), "type"), "number");
    assert_string_equal(str_at(at(s, "fBool", NULL), "type"), "boolean");
    assert_string_equal(str_at(at(s, "fBytes", NULL), "contentEncoding"), "base64");
    assert_string_equal(str_at(at(s, "fEnum", NULL), "$ref"), "#/components/schemas/pt.test.Color");
    assert_non_null(at(s, "my_custom", NULL));
    assert_null(at(s, "custom", NULL));
    json_object *color = at(sc, "pt.test.Color", NULL);
    assert_string_equal(str_at(color, "type"), "string");
    assert_int_equal(json_object_array_length(at(color, "enum", NULL)), 4);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(at(color, "enum", NULL), 3)),
                        "BLUE");

    /* repeated, maps */
    json_object *r = at(sc, "pt.test.Repeated", "properties", NULL);
    assert_string_equal(str_at(at(r, "rInt32", NULL), "type"), "array");
    assert_string_equal(str_at(at(r, "rMsg", "items", NULL), "$ref"),
                        "#/components/schemas/pt.test.Scalars");
    json_object *m = at(sc, "pt.test.Maps", "properties", NULL);
    assert_string_equal(str_at(at(m, "mStr", NULL), "type"), "object");
    assert_string_equal(str_at(at(m, "mStr", "additionalProperties", NULL), "format"), "int32");
    assert_string_equal(str_at(at(m, "mInt32", "propertyNames", NULL), "pattern"), "^-?[0-9]+$");
    assert_int_equal(json_object_array_length(at(m, "mBool", "propertyNames", "enum", NULL)), 2);
    assert_string_equal(str_at(at(m, "mInt64", "additionalProperties", NULL), "$ref"),
                        "#/components/schemas/pt.test.Scalars");
    assert_non_null(at(m, "mValue", "additionalProperties", NULL));

    /* oneofs, NullValue, recursion */
    json_object *on = at(sc, "pt.test.Oneofs", "properties", NULL);
    assert_string_equal(str_at(at(on, "name", NULL), "x-oneof"), "kind");
    assert_string_equal(str_at(at(on, "nothing", NULL), "type"), "null");
    assert_null(at(on, "other", "x-oneof", NULL));
    assert_string_equal(str_at(at(sc, "pt.test.Nested", "properties", "child", NULL), "$ref"),
                        "#/components/schemas/pt.test.Nested");
    assert_string_equal(
        str_at(at(sc, "pt.openapi.Tree", "properties", "byName", "additionalProperties", NULL),
               "$ref"),
        "#/components/schemas/pt.openapi.Tree");
    assert_string_equal(
        str_at(at(sc, "pt.openapi.Everything", "properties", "nestedMap", "additionalProperties",
                  NULL), "$ref"),
        "#/components/schemas/pt.test.Nested");
    assert_non_null(at(sc, "pt.openapi.Everything", "properties", "renamedField", NULL));

    /* well-known types */
    json_object *w = at(sc, "pt.test.WKTs", "properties", NULL);
    assert_string_equal(str_at(at(w, "ts", NULL), "format"), "date-time");
    assert_non_null(str_at(at(w, "dur", NULL), "pattern"));
    assert_string_equal(str_at(at(w, "fm", NULL), "type"), "string");
    assert_string_equal(str_at(at(w, "st", NULL), "type"), "object");
    assert_string_equal(str_at(at(w, "lv", NULL), "type"), "array");
    assert_null(at(w, "val", "type", NULL)); /* any JSON */
    assert_string_equal(str_at(at(w, "empty", NULL), "type"), "object");
    assert_non_null(at(w, "any", "properties", "@type", NULL));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(at(w, "i64v", "type", NULL), 1)),
                        "null");
    assert_string_equal(str_at(at(w, "i64v", NULL), "format"), "int64");
    assert_string_equal(str_at(at(w, "nv", NULL), "type"), "null");
    assert_non_null(at(w, "anys", "items", "properties", "@type", NULL));
    assert_null(at(sc, "google.protobuf.Timestamp", NULL)); /* inlined, never a component */

    /* body "*" with a nested path variable: no query parameters */
    json_object *put = at(doc, "paths", "/v1/everything/{scalars.f_string}", "put", NULL);
    assert_non_null(put);
    assert_int_equal(json_object_array_length(at(put, "parameters", NULL)), 1);
    assert_string_equal(str_at(param(put, "scalars.f_string"), "in"), "path");
    assert_string_equal(str_at(at(put, "requestBody", "content", "application/json", "schema", NULL),
                               "$ref"),
                        "#/components/schemas/pt.openapi.Everything");

    /* multi-segment variable, query parameters, server stream */
    json_object *find = at(doc, "paths", "/v1/{name}:find", "get", NULL);
    assert_non_null(find);
    json_object *name = param(find, "name");
    assert_string_equal(str_at(at(name, "schema", NULL), "pattern"), "^projects/[^/]+/items/.*$");
    assert_true(json_object_get_boolean(at(name, "x-portico-multi-segment", NULL)));
    assert_string_equal(str_at(at(param(find, "s.fInt64"), "schema", NULL), "format"), "int64");
    assert_string_equal(str_at(at(param(find, "r.rInt32"), "schema", NULL), "type"), "array");
    assert_null(param(find, "r.rMsg"));                     /* repeated messages: body only */
    assert_string_equal(str_at(param(find, "m.mStr"), "style"), "deepObject");
    assert_null(param(find, "m.mInt64"));                   /* map of messages */
    assert_non_null(strstr(str_at(param(find, "o.name"), "description"), "oneof kind"));
    assert_string_equal(str_at(at(param(find, "w.ts"), "schema", NULL), "format"), "date-time");
    assert_string_equal(str_at(at(param(find, "w.i64v"), "schema", NULL), "type"), "string");
    assert_null(param(find, "w.any"));
    assert_null(param(find, "w.st"));
    assert_non_null(param(find, "tree.label"));
    assert_null(param(find, "tree.left.label"));            /* recursion stops */
    assert_null(param(find, "name.x"));
    assert_string_equal(str_at(find, "x-portico-streaming"), "server");
    assert_non_null(at(find, "responses", "200", "content", "application/x-ndjson", NULL));
    assert_non_null(at(find, "responses", "200", "content", "text/event-stream", NULL));
    assert_string_equal(
        str_at(at(find, "responses", "200", "content", "application/json", "schema", NULL), "type"),
        "array");
    assert_string_equal(
        str_at(at(find, "responses", "default", "content", "application/json", "schema", NULL),
               "$ref"),
        "#/components/schemas/google.rpc.Status");
    assert_non_null(at(sc, "google.rpc.Status", "properties", "details", NULL));

    /* client stream of a body field */
    json_object *up = at(doc, "paths", "/v1/upload/{tree.label}", "post", NULL);
    assert_string_equal(str_at(up, "x-portico-streaming"), "client");
    assert_string_equal(
        str_at(at(up, "requestBody", "content", "application/x-ndjson", "schema", NULL), "$ref"),
        "#/components/schemas/pt.openapi.Tree");

    /* default binding; the custom method listed apart */
    assert_non_null(at(doc, "paths", "/pt.openapi.Explorer/Echo", "post", NULL));
    json_object *un = at(doc, "x-portico-unlisted", NULL);
    assert_int_equal(json_object_array_length(un), 1);
    assert_string_equal(str_at(json_object_array_get_idx(un, 0), "method"), "PURGE");

    /* YAML rendering of the same tree */
    size_t ylen = 0;
    char *y = pt_openapi_yaml(doc, &ylen);
    assert_non_null(y);
    assert_int_equal(strlen(y), ylen);
    assert_non_null(strstr(y, "openapi: \"3.1.0\"\n"));
    assert_non_null(strstr(y, "\n  \"/v1/{name}:find\":\n")); /* ':' in a key: quoted */
    assert_non_null(strstr(y, "\n  /v1/upload/{tree.label}:\n")); /* plain when safe */
    free(y);

    json_object_put(doc);
    pt_descpool_unref(pool);
}

static void test_json_options_variants(void **state)
{
    (void)state;
    const char *files[] = {PT_OPENAPI_TEST_DESC};
    pt_descpool_t *pool = load_pool(files, 1);
    json_object *doc = gen(pool, true, true, false);
    json_object *sc = at(doc, "components", "schemas", NULL);
    json_object *s = at(sc, "pt.test.Scalars-proto_names-enums_as_ints", "properties", NULL);
    assert_non_null(s);
    assert_non_null(at(s, "f_int64", NULL));
    assert_non_null(at(s, "custom", NULL));
    assert_string_equal(str_at(at(s, "f_enum", NULL), "$ref"),
                        "#/components/schemas/pt.test.Color-enums_as_ints");
    json_object *color = at(sc, "pt.test.Color-enums_as_ints", NULL);
    assert_string_equal(str_at(color, "type"), "integer");
    assert_int_equal(json_object_get_int(json_object_array_get_idx(at(color, "enum", NULL), 3)), -3);
    /* query names follow the route's naming too */
    json_object *find = at(doc, "paths", "/v1/{name}:find", "get", NULL);
    assert_non_null(param(find, "s.f_int64"));
    assert_null(param(find, "s.fInt64"));
    /* no default bindings: Echo is not listed */
    assert_null(at(doc, "paths", "/pt.openapi.Explorer/Echo", NULL));
    json_object_put(doc);
    pt_descpool_unref(pool);
}

static void test_bookstore_http_bindings(void **state)
{
    (void)state;
    const char *files[] = {PT_HTTP_TEST_DESC};
    pt_descpool_t *pool = load_pool(files, 1);
    json_object *doc = gen(pool, false, false, true);
    json_object *patch = at(doc, "paths", "/v1/{book.name}", "patch", NULL);
    assert_non_null(patch);
    assert_string_equal(str_at(at(param(patch, "book.name"), "schema", NULL), "pattern"),
                        "^shelves/[^/]+/books/[^/]+$");
    assert_non_null(at(patch, "requestBody", "content", "application/json", NULL));
    json_object *up = at(doc, "paths", "/v1/files/{name}", "put", NULL);
    assert_non_null(at(up, "requestBody", "content", "*/*", NULL)); /* HttpBody: raw */
    json_object *dl = at(doc, "paths", "/v1/files/{name}:download", "get", NULL);
    assert_non_null(at(dl, "responses", "200", "content", "*/*", NULL));
    /* response_body */
    json_object *cnt = at(doc, "paths", "/v1/shelves/{shelf}:count", "get", "responses", "200",
                          "content", "application/json", "schema", NULL);
    assert_string_equal(str_at(cnt, "type"), "integer");
    json_object *titles = at(doc, "paths", "/v1/shelves/{shelf}/titles", "get", "responses", "200",
                             "content", "application/json", "schema", NULL);
    assert_string_equal(str_at(titles, "type"), "array");
    /* additional bindings get their own operation ids */
    assert_string_equal(str_at(at(doc, "paths", "/v1/books", "get", NULL), "operationId"),
                        "pt.bookstore.Bookstore.ListBooks_2");
    /* body field: the other fields are query parameters, the body field is not */
    json_object *cb = at(doc, "paths", "/v1/shelves/{shelf}/books", "post", NULL);
    assert_non_null(param(cb, "requestId"));
    assert_null(param(cb, "book.title"));
    json_object_put(doc);
    pt_descpool_unref(pool);
}

/* A route's methods, headers and hosts: verbs it does not take are left out, its headers are
 * required header parameters (merged into a header binding of the same name), its hosts listed. */
static void test_route_match_conditions(void **state)
{
    (void)state;
    const char *files[] = {PT_HTTP_TEST_DESC};
    pt_descpool_t *pool = load_pool(files, 1);
    pt_httprule_opts_t ro = {0};
    pt_httprule_table_t *t = NULL;
    pt_xerrs_t *errs = calloc(1, sizeof(*errs));
    assert_non_null(errs);
    assert_int_equal(pt_httprule_table_new(pool, &ro, &t, errs), 0);
    free(errs);
    pt_header_match_t hm[] = {{"x-tenant", "acme"}, {"x-request-id", NULL}};
    const char *hosts[] = {"api.example.com", "*.example.org"};
    pt_route_match_t m = {.methods = PT_METHOD_POST, .headers = hm, .header_cnt = 2,
                          .hosts = hosts, .host_cnt = 2};
    pt_conf_kv_t kv[] = {{"X-Request-Id", "request_id"}};
    pt_conf_strmap_t hb = {.v = kv, .cnt = 1};
    pt_openapi_t *o = pt_openapi_new("T", "9", NULL, "http://127.0.0.1:1");
    assert_non_null(o);
    pt_openapi_grpc_t g = {.table = t, .route = "r", .header_bindings = &hb, .match = &m};
    assert_int_equal(pt_openapi_add_grpc(o, &g), 0);
    json_object *doc = pt_openapi_finish(o);
    assert_non_null(doc);

    assert_null(at(doc, "paths", "/v1/books", "get", NULL)); /* GET: not this route's */
    json_object *cb = at(doc, "paths", "/v1/shelves/{shelf}/books", "post", NULL);
    assert_non_null(cb);
    json_object *tenant = param(cb, "x-tenant");
    assert_non_null(tenant);
    assert_string_equal(str_at(tenant, "in"), "header");
    assert_true(json_object_get_boolean(at(tenant, "required", NULL)));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(
                            at(tenant, "schema", "enum", NULL), 0)),
                        "acme");
    /* the header binding of the same header (names compare without case): one parameter */
    json_object *rid = param(cb, "X-Request-Id");
    assert_non_null(rid);
    assert_null(param(cb, "x-request-id"));
    assert_true(json_object_get_boolean(at(rid, "required", NULL)));
    assert_non_null(strstr(str_at(rid, "description"), "bound to field request_id"));
    assert_non_null(strstr(str_at(rid, "description"), "carry a x-request-id header"));
    json_object *hs = at(cb, "x-portico-hosts", NULL);
    assert_int_equal(json_object_array_length(hs), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(hs, 1)), "*.example.org");
    json_object_put(doc);
    pt_httprule_table_free(t);
    pt_descpool_unref(pool);
}

/* Every service of every test set, every naming variant: nothing crashes or leaks (ASan). */
static void test_whole_test_sets(void **state)
{
    (void)state;
    const char *files[] = {PT_OPENAPI_TEST_DESC, PT_HTTP_TEST_DESC};
    pt_descpool_t *pool = load_pool(files, 2);
    for (int v = 0; v < 4; v++) {
        json_object *doc = gen(pool, v & 1, v & 2, true);
        size_t len = 0;
        char *y = pt_openapi_yaml(doc, &len);
        assert_non_null(y);
        assert_true(len > 1000);
        free(y);
        assert_true(json_object_object_length(at(doc, "paths", NULL)) > 10);
        json_object_put(doc);
    }
    pt_descpool_unref(pool);
}

static const char recursive_wsdl[] =
    "<?xml version=\"1.0\"?>\n"
    "<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"\n"
    "  xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\"\n"
    "  xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:tns=\"urn:t\" targetNamespace=\"urn:t\">\n"
    " <wsdl:types><xs:schema targetNamespace=\"urn:t\" elementFormDefault=\"qualified\">\n"
    "  <xs:complexType name=\"Node\"><xs:sequence>\n"
    "   <xs:element name=\"label\" type=\"xs:string\"/>\n"
    "   <xs:element name=\"weight\" type=\"xs:decimal\" minOccurs=\"0\"/>\n"
    "   <xs:element name=\"count\" type=\"xs:long\" minOccurs=\"0\"/>\n"
    "   <xs:element name=\"kid\" type=\"tns:Node\" minOccurs=\"0\" maxOccurs=\"unbounded\"/>\n"
    "  </xs:sequence><xs:attribute name=\"id\" type=\"xs:int\" use=\"required\"/></xs:complexType>\n"
    "  <xs:element name=\"Walk\"><xs:complexType><xs:sequence>\n"
    "   <xs:element name=\"root\" type=\"tns:Node\"/>\n"
    "   <xs:element name=\"depth\" type=\"xs:int\"/>\n"
    "  </xs:sequence></xs:complexType></xs:element>\n"
    "  <xs:element name=\"WalkResponse\"><xs:complexType><xs:sequence>\n"
    "   <xs:element name=\"node\" type=\"tns:Node\" nillable=\"true\"/>\n"
    "  </xs:sequence></xs:complexType></xs:element>\n"
    " </xs:schema></wsdl:types>\n"
    " <wsdl:message name=\"In\"><wsdl:part name=\"p\" element=\"tns:Walk\"/></wsdl:message>\n"
    " <wsdl:message name=\"Out\"><wsdl:part name=\"p\" element=\"tns:WalkResponse\"/></wsdl:message>\n"
    " <wsdl:portType name=\"P\"><wsdl:operation name=\"Walk\"><wsdl:input message=\"tns:In\"/>"
    "<wsdl:output message=\"tns:Out\"/></wsdl:operation></wsdl:portType>\n"
    " <wsdl:binding name=\"B\" type=\"tns:P\"><soap:binding style=\"document\" "
    "transport=\"http://schemas.xmlsoap.org/soap/http\"/>\n"
    "  <wsdl:operation name=\"Walk\"><soap:operation soapAction=\"urn:walk\"/>"
    "<wsdl:input><soap:body use=\"literal\"/></wsdl:input>"
    "<wsdl:output><soap:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
    " </wsdl:binding>\n"
    " <wsdl:service name=\"Trees\"><wsdl:port name=\"TreePort\" binding=\"tns:B\">"
    "<soap:address location=\"http://localhost/t\"/></wsdl:port></wsdl:service>\n"
    "</wsdl:definitions>\n";

static void test_soap_schemas(void **state)
{
    (void)state;
    pt_wsdl_t *w = NULL;
    pt_wsdl_err_t we;
    int rc = pt_wsdl_load_mem(PT_XML_TEST_DIR "/rec.wsdl", recursive_wsdl, sizeof(recursive_wsdl) - 1,
                              NULL, NULL, &w, &we);
    if (rc != 0) {
        char b[1200];
        pt_wsdl_err_format(&we, b, sizeof(b));
        fail_msg("%s", b);
    }
    const pt_soap_port_t *port = pt_wsdl_port(w, 0);
    assert_non_null(port);
    /* a REST mapping: { Walk: { get: "/t/walk/{depth}" } } as the config parser gives it */
    pt_conf_node_t tmpl = {.kind = PT_CONF_SCALAR, .str = "/t/walk/{depth}", .len = 15};
    pt_conf_node_t mk = {.kind = PT_CONF_SCALAR, .str = "get", .len = 3};
    pt_conf_node_t *mks[] = {&mk}, *mvs[] = {&tmpl};
    pt_conf_node_t opmap = {.kind = PT_CONF_MAP, .cnt = 1, .keys = mks, .items = mvs};
    pt_conf_node_t ok = {.kind = PT_CONF_SCALAR, .str = "Walk", .len = 4};
    pt_conf_node_t *oks[] = {&ok}, *ovs[] = {&opmap};
    pt_conf_node_t ops = {.kind = PT_CONF_MAP, .cnt = 1, .keys = oks, .items = ovs};

    pt_openapi_t *o = pt_openapi_new(NULL, NULL, NULL, NULL);
    assert_int_equal(pt_openapi_add_soap(o, port, "/t/", &ops, "trees", NULL), 0);
    json_object *doc = pt_openapi_finish(o);
    assert_non_null(doc);
    json_object *sc = at(doc, "components", "schemas", NULL);
    json_object *node = at(sc, "Trees.TreePort.Node", NULL);
    assert_non_null(node);
    assert_string_equal(str_at(at(node, "properties", "kid", "items", NULL), "$ref"),
                        "#/components/schemas/Trees.TreePort.Node");
    assert_string_equal(str_at(at(node, "properties", "weight", NULL), "format"), "decimal");
    assert_string_equal(str_at(at(node, "properties", "weight", NULL), "type"), "string");
    assert_string_equal(
        json_object_get_string(json_object_array_get_idx(at(node, "properties", "count", "type", NULL), 1)),
        "string");
    assert_string_equal(str_at(at(node, "properties", "@id", NULL), "type"), "integer");
    json_object *req = at(node, "required", NULL);
    assert_int_equal(json_object_array_length(req), 2); /* @id, label */
    assert_false(json_object_get_boolean(at(node, "additionalProperties", NULL)));
    assert_non_null(at(sc, "Trees.TreePort.WalkResponse", "properties", "node", "anyOf", NULL));
    json_object *post = at(doc, "paths", "/t/Walk", "post", NULL);
    assert_string_equal(
        str_at(at(post, "requestBody", "content", "application/json", "schema", NULL), "$ref"),
        "#/components/schemas/Trees.TreePort.Walk");
    json_object *get = at(doc, "paths", "/t/walk/{depth}", "get", NULL);
    assert_non_null(get);
    assert_string_equal(str_at(param(get, "depth"), "in"), "path");
    assert_string_equal(str_at(at(param(get, "depth"), "schema", NULL), "type"), "integer");
    assert_null(param(get, "root")); /* complex: not a query parameter */
    assert_null(at(get, "requestBody", NULL));
    json_object_put(doc);
    pt_wsdl_free(w);

    /* crm.wsdl: every port */
    assert_int_equal(pt_wsdl_load(PT_XML_TEST_DIR "/crm.wsdl", NULL, NULL, &w, &we), 0);
    o = pt_openapi_new(NULL, NULL, NULL, NULL);
    for (size_t i = 0; i < pt_wsdl_port_count(w); i++)
        assert_int_equal(pt_openapi_add_soap(o, pt_wsdl_port(w, i), "/crm/", NULL, NULL, NULL), 0);
    doc = pt_openapi_finish(o);
    json_object *cust = at(doc, "components", "schemas", "Crm.CrmSoap11.Customer", "properties", NULL);
    assert_non_null(cust);
    assert_string_equal(str_at(at(cust, "since", NULL), "format"), "date");
    assert_string_equal(str_at(at(cust, "photo", NULL), "contentEncoding"), "base64");
    assert_string_equal(str_at(at(cust, "address", NULL), "type"), "array");
    assert_non_null(at(cust, "nickname", "anyOf", NULL));
    assert_non_null(at(cust, "id", NULL)); /* from the base type (complexContent extension) */
    /* a second port with the same operation names: paths taken, listed apart */
    assert_non_null(at(doc, "x-portico-unlisted", NULL));
    json_object_put(doc);
    pt_wsdl_free(w);

    /* the writer alone: valid JSON */
    pt_xbuf_t b;
    pt_xbuf_init(&b, NULL);
    assert_int_equal(pt_wsdl_load_mem(PT_XML_TEST_DIR "/rec.wsdl", recursive_wsdl,
                                      sizeof(recursive_wsdl) - 1, NULL, NULL, &w, &we), 0);
    assert_int_equal(pt_soap_port_json_schema(pt_wsdl_port(w, 0), "#/x/", &b), 0);
    assert_int_equal(pt_xbuf_terminate(&b), 0);
    json_object *j = json_tokener_parse((const char *)b.data);
    assert_non_null(j);
    assert_non_null(at(j, "operations", "Walk", "fields", "depth", NULL));
    json_object_put(j);
    pt_xbuf_dispose(&b);
    pt_wsdl_free(w);
}

static void test_conf_block(void **state)
{
    (void)state;
    static const char cfg[] = "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                              "openapi: { title: Books, version: \"2.1\", server: \"ftp://x\" }\n";
    char *err = NULL;
    size_t elen = 0;
    FILE *ef = open_memstream(&err, &elen);
    pt_config_t *c = pt_config_load_string("t.yaml", cfg, sizeof(cfg) - 1, ef);
    fclose(ef);
    assert_null(c);
    assert_non_null(strstr(err, "t.yaml:2:"));
    assert_non_null(strstr(err, "openapi.server"));
    free(err);
    static const char good[] = "listeners: [ { address: \"127.0.0.1:1\" } ]\n"
                               "openapi: { title: Books, version: \"2.1\" }\n";
    c = pt_config_load_string("t.yaml", good, sizeof(good) - 1, stderr);
    assert_non_null(c);
    json_object *doc = pt_openapi_from_config(c, NULL);
    assert_string_equal(str_at(at(doc, "info", NULL), "title"), "Books");
    assert_string_equal(str_at(json_object_array_get_idx(at(doc, "servers", NULL), 0), "url"),
                        "http://127.0.0.1:1");
    assert_int_equal(json_object_object_length(at(doc, "paths", NULL)), 0);
    json_object_put(doc);
    pt_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_kind),
        cmocka_unit_test(test_json_options_variants),
        cmocka_unit_test(test_bookstore_http_bindings),
        cmocka_unit_test(test_route_match_conditions),
        cmocka_unit_test(test_whole_test_sets),
        cmocka_unit_test(test_soap_schemas),
        cmocka_unit_test(test_conf_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
