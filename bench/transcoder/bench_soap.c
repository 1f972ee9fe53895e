/*
 * bench_soap.c -- CPU cost of the transcoder's XML side, per operation:
 * JSON -> SOAP envelope (request), envelope -> JSON (small ~500 B and large
 * ~20 KB responses with repeated elements, fed in 16 KiB chunks like the
 * gateway does), and generic XML -> JSON on the same large answer.
 *
 *   bench_soap WSDL [SECS]     (test/xml/crm.wsdl)
 *   bench_soap WSDL ONE K N    runs workload K (0-4) N times and exits, for
 *                              instruction counts: run it under
 *                              valgrind --tool=callgrind with N and with 0
 *                              and divide the difference by N
 *   bench_soap WSDL FILE PORT OP N   converts the recorded answer FILE (e.g.
 *                              the example service's) for operation OP of
 *                              PORT N times, as the gateway does (16 KiB
 *                              chunks), and prints the JSON once on stdout:
 *                              the instruction count per real answer, and
 *                              the output to compare across builds
 *
 * Workloads run interleaved in rounds (noise hits all alike); reported as
 * process CPU microseconds per operation (utime+stime via
 * CLOCK_PROCESS_CPUTIME_ID) and operations per CPU second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/transcoder/soap.h"
#include "portico/transcoder/xmljson.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const pt_soap_op_t *get_op, *save_op;
static char small_resp[2048], *large_resp;
static size_t large_len;
static const char *req_json = "{\"id\":42,\"withAddresses\":true,\"fields\":[\"name\",\"tier\"]}";
static const char *save_json =
    "{\"customer\":{\"id\":\"9007199254740993\",\"name\":\"Ada Lovelace\",\"tier\":\"GOLD\","
    "\"active\":true,\"balance\":{\"@currency\":\"EUR\",\"#text\":\"1234.50\"},\"score\":4.5,"
    "\"nickname\":null,\"address\":[{\"@kind\":\"home\",\"street\":\"1 Main St\",\"city\":\"Oslo\","
    "\"zip\":\"01234\"}],\"tags\":{\"tag\":[\"a\",\"b\"]},\"email\":\"ada@example.com\"}}";

static int run_req(const pt_soap_op_t *op, const char *j, pt_xbuf_t *out)
{
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    pt_xbuf_reset(out);
    return pt_soap_build_request(op, j, strlen(j), NULL, 0, NULL, out, &errs);
}

static int run_resp(const char *x, size_t n, pt_xbuf_t *out)
{
    pt_xbuf_reset(out);
    pt_soap_resp_t *r = pt_soap_resp_new(get_op, NULL, NULL);
    for (size_t i = 0; i < n; i += 16384)
        pt_soap_resp_feed(r, x + i, n - i < 16384 ? n - i : 16384);
    pt_soap_result_t res;
    int rc = pt_soap_resp_finish(r, &res, out);
    pt_soap_resp_free(r);
    return rc != 0 || res.outcome != PT_SOAP_OUTPUT;
}

static int run_generic(const char *x, size_t n, pt_xbuf_t *out)
{
    pt_xerr_t err;
    pt_xbuf_reset(out);
    return pt_xml_to_json(x, n, NULL, out, &err);
}

static int run_file(pt_wsdl_t *w, const char *file, const char *port, const char *opname, long n)
{
    const pt_soap_port_t *p = pt_wsdl_find_port(w, NULL, port, NULL, 0);
    const pt_soap_op_t *op = p != NULL ? pt_soap_port_op(p, opname, strlen(opname)) : NULL;
    FILE *f = fopen(file, "rb");
    if (op == NULL || f == NULL) {
        fprintf(stderr, "bench_soap: no operation %s in port %s, or %s unreadable\n", opname, port,
                file);
        if (f != NULL)
            fclose(f);
        pt_wsdl_free(w);
        return 1;
    }
    get_op = op;
    char *x = malloc(1u << 24);
    size_t len = x != NULL ? fread(x, 1, 1u << 24, f) : 0;
    fclose(f);
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    int rc = x == NULL || run_resp(x, len, &out);
    if (rc == 0)
        printf("%.*s\n", (int)out.len, (const char *)out.data);
    for (long i = 0; i < n && rc == 0; i++)
        rc = run_resp(x, len, &out);
    if (rc != 0)
        fprintf(stderr, "bench_soap: %s does not convert to the declared output\n", file);
    pt_xbuf_dispose(&out);
    free(x);
    pt_wsdl_free(w);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_soap WSDL [SECS]\n");
        return 2;
    }
    double secs = argc > 2 && strcmp(argv[2], "ONE") != 0 ? atof(argv[2]) : 1.0;
    pt_wsdl_t *w;
    pt_wsdl_err_t e;
    if (pt_wsdl_load(argv[1], NULL, NULL, &w, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    if (argc > 6 && strcmp(argv[2], "FILE") == 0)
        return run_file(w, argv[3], argv[4], argv[5], atol(argv[6]));
    const pt_soap_port_t *p = pt_wsdl_find_port(w, NULL, "CrmSoap11", NULL, 0);
    get_op = pt_soap_port_op(p, "GetCustomer", 11);
    save_op = pt_soap_port_op(p, "SaveCustomer", 12);
    const char *head = "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://"
                       "schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/"
                       "XMLSchema-instance\"><soap:Body><tns:GetCustomerResponse xmlns:tns=\"urn:"
                       "portico:test:crm\" xmlns:c=\"urn:portico:test:common\"><tns:customer version="
                       "\"3\"><tns:id>42</tns:id><tns:name>Ada Lovelace</tns:name><tns:tier>GOLD</"
                       "tns:tier><tns:active>true</tns:active><tns:balance currency=\"EUR\">1234.50</"
                       "tns:balance><tns:score>4.5</tns:score><tns:visits>17</tns:visits><tns:since>"
                       "2020-01-02</tns:since><tns:nickname xsi:nil=\"true\"/>";
    const char *addr = "<tns:address kind=\"home\"><c:street>%d Main Street</c:street><c:city>Oslo"
                       "</c:city><c:zip>0%04d</c:zip></tns:address>";
    const char *tail = "<tns:email>ada@example.com</tns:email></tns:customer></tns:GetCustomerResponse>"
                       "</soap:Body></soap:Envelope>";
    snprintf(small_resp, sizeof(small_resp), "%s%s", head, tail);
    large_resp = malloc(65536);
    size_t n = (size_t)sprintf(large_resp, "%s", head);
    for (int i = 0; n < 19500; i++)
        n += (size_t)sprintf(large_resp + n, addr, i, i);
    n += (size_t)sprintf(large_resp + n, "%s", tail);
    large_len = n;
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    const char *names[] = {"request GetCustomer (JSON->SOAP)", "request SaveCustomer (JSON->SOAP)",
                           "response small (SOAP->JSON)", "response large (SOAP->JSON)",
                           "generic xml->json, large"};
    size_t sizes[] = {strlen(req_json), strlen(save_json), strlen(small_resp), large_len, large_len};
    double cpu[5] = {0};
    long ops[5] = {0};
    for (int k = 0; k < 5; k++) { /* check once, untimed */
        int rc = k == 0   ? run_req(get_op, req_json, &out)
                 : k == 1 ? run_req(save_op, save_json, &out)
                 : k == 2 ? run_resp(small_resp, strlen(small_resp), &out)
                 : k == 3 ? run_resp(large_resp, large_len, &out)
                          : run_generic(large_resp, large_len, &out);
        if (rc != 0) {
            fprintf(stderr, "workload %s fails\n", names[k]);
            return 1;
        }
    }
    if (argc > 4 && strcmp(argv[2], "ONE") == 0) {
        int k = atoi(argv[3]);
        long n_ops = atol(argv[4]);
        for (long i = 0; i < n_ops && k >= 0 && k < 5; i++)
            (void)(k == 0   ? run_req(get_op, req_json, &out)
                   : k == 1 ? run_req(save_op, save_json, &out)
                   : k == 2 ? run_resp(small_resp, strlen(small_resp), &out)
                   : k == 3 ? run_resp(large_resp, large_len, &out)
                            : run_generic(large_resp, large_len, &out));
        pt_xbuf_dispose(&out);
        free(large_resp);
        pt_wsdl_free(w);
        return 0;
    }
    double end = cpu_now() + secs * 5;
    while (cpu_now() < end)
        for (int k = 0; k < 5; k++) {
            double t0 = cpu_now();
            for (int i = 0; i < 50; i++) {
                if (k == 0)
                    run_req(get_op, req_json, &out);
                else if (k == 1)
                    run_req(save_op, save_json, &out);
                else if (k == 2)
                    run_resp(small_resp, strlen(small_resp), &out);
                else if (k == 3)
                    run_resp(large_resp, large_len, &out);
                else
                    run_generic(large_resp, large_len, &out);
            }
            cpu[k] += cpu_now() - t0;
            ops[k] += 50;
        }
    printf("%-36s %9s %12s %12s\n", "workload", "input B", "CPU us/op", "ops/CPU-s");
    for (int k = 0; k < 5; k++)
        printf("%-36s %9zu %12.2f %12.0f\n", names[k], sizes[k], cpu[k] / ops[k] * 1e6,
               ops[k] / cpu[k]);
    pt_xbuf_dispose(&out);
    free(large_resp);
    pt_wsdl_free(w);
    return 0;
}
