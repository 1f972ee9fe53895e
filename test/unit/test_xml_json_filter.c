/*
 * test_xml_json_filter.c -- the xml_json filter (plugins/xml_json.c) through
 * the loopback seam: the router, the chain and the `respond` handler, no
 * sockets. Response-side conversion both ways, bodies of other types and
 * switched-off sides left alone, a bad XML answer cut off, a request body that does not convert answered 400 with
 * what was wrong, one over max_size 413. (Request bodies reaching a real
 * upstream converted: integration.xml_json.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loopback.h"

static void run(const char *filter, const char *respond, const char *method, const char *ctype,
                const char *body, pt_lb_resp_t *out)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "listeners: [ { address: 127.0.0.1:8080 } ]\n"
             "routes:\n"
             "  - match: { prefix: / }\n"
             "    respond: %s\n"
             "    request_buffering: true\n"
             "    filters: [ { xml_json: %s } ]\n",
             respond, filter);
    pt_lb_t lb;
    pt_lb_init(&lb, text);
    const char *headers[] = {"content-type", ctype, NULL};
    assert_int_equal(pt_lb_run(&lb, method, "/x", ctype != NULL ? headers : headers + 2, body,
                               body != NULL ? strlen(body) : 0, out),
                     0);
    pt_lb_dispose(&lb);
}

#define XML_RESPOND                                                                                \
    "{ status: 200, content_type: \"application/xml\", body: \"<a x='1'><b>1</b><b>2</b></a>\" }"

static void test_response_xml_to_json(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    run("{}", XML_RESPOND, "GET", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.ended);
    assert_string_equal(pt_lb_header(&r, "content-type"), "application/json");
    assert_int_equal(r.content_length, -1);
    assert_string_equal(r.body, "{\"a\":{\"@x\":\"1\",\"b\":[\"1\",\"2\"]}}");
    pt_lb_resp_free(&r);
    /* a switched-off side passes untouched */
    run("{ response: false }", XML_RESPOND, "GET", NULL, NULL, &r);
    assert_string_equal(r.body, "<a x='1'><b>1</b><b>2</b></a>");
    assert_string_equal(pt_lb_header(&r, "content-type"), "application/xml");
    pt_lb_resp_free(&r);
    /* other types pass untouched */
    run("{}", "{ status: 200, content_type: \"text/plain\", body: \"<a/>\" }", "GET", NULL, NULL,
        &r);
    assert_string_equal(r.body, "<a/>");
    pt_lb_resp_free(&r);
}

static void test_response_bad_xml_cut_off(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    run("{}", "{ status: 200, content_type: \"text/xml\", body: \"<a><b></a>\" }", "GET", NULL,
        NULL, &r);
    assert_true(r.reset); /* never a wrong body */
    assert_false(r.ended);
    pt_lb_resp_free(&r);
    run("{}",
        "{ status: 200, content_type: \"text/xml\", body: \"<!DOCTYPE a [<!ENTITY e SYSTEM "
        "'file:///etc/passwd'>]><a>&e;</a>\" }",
        "GET", NULL, NULL, &r);
    assert_true(r.reset);
    assert_null(strstr(r.body != NULL ? r.body : "", "root:"));
    pt_lb_resp_free(&r);
}

static void test_reverse(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    run("{ reverse: true }",
        "{ status: 200, content_type: \"application/json\", body: '{\"r\":{\"@v\":\"1\",\"k\":[\"a\",2]}}' }",
        "GET", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(pt_lb_header(&r, "content-type"), "application/xml; charset=utf-8");
    assert_string_equal(r.body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r v=\"1\"><k>a</k>"
                                "<k>2</k></r>");
    pt_lb_resp_free(&r);
}

static void test_request_refused(void **state)
{
    (void)state;
    pt_lb_resp_t r;
    run("{}", "{ status: 204 }", "POST", "application/json", "{\"a\":{\"b c\":1}}", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(pt_lb_header(&r, "content-type"), "application/json");
    assert_non_null(strstr(r.body, "\"code\":\"INVALID\",\"message\":\"xml_json: request body "
                                   "(JSON): a.b c: key is not an XML name\",\"request_id\":\""));
    pt_lb_resp_free(&r);
    run("{ max_size: 16 }", "{ status: 204 }", "POST", "application/json",
        "{\"a\":\"0123456789abcdef\"}", &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "body larger than 16 bytes"));
    pt_lb_resp_free(&r);
    /* a good body goes on to the handler */
    run("{}", "{ status: 204 }", "POST", "application/json", "{\"a\":1}", &r);
    assert_int_equal(r.status, 204);
    pt_lb_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_xml_to_json),
        cmocka_unit_test(test_response_bad_xml_cut_off),
        cmocka_unit_test(test_reverse),
        cmocka_unit_test(test_request_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
