/*
 * fuzz_wsdl.c -- the WSDL/XSD loader (pt_wsdl_load_mem) on arbitrary text.
 * Relative imports resolve against test/xml/ (the name given), so seeds can
 * reach common.xsd; network imports must be refused, never fetched.
 *
 * Checks: no crash, no leak; a failure always says something (message set);
 * a model that loads lists coherently and builds an empty request for each
 * operation without crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/soap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_wsdl_t *w = NULL;
    pt_wsdl_err_t e;
    pt_wsdl_opts_t o = {.max_file_size = 1u << 20, .max_files = 8, .max_depth = 64};
    int rc = pt_wsdl_load_mem(PT_XML_TEST_DIR "/fuzz.wsdl", (const char *)data, size, NULL, &o, &w,
                              &e);
    if (rc != 0) {
        if (w != NULL || e.msg[0] == '\0')
            abort();
        return 0;
    }
    for (size_t i = 0; i < pt_wsdl_port_count(w); i++) {
        const pt_soap_port_t *p = pt_wsdl_port(w, i);
        for (size_t k = 0; k < p->op_cnt; k++) {
            const pt_soap_op_t *op = &p->ops[k];
            if (pt_soap_port_op(p, op->name, strlen(op->name)) == NULL)
                abort();
            pt_xbuf_t out;
            pt_xbuf_init(&out, NULL);
            pt_xerrs_t errs;
            pt_xerrs_clear(&errs);
            pt_soap_build_request(op, "{}", 2, NULL, 0, NULL, &out, &errs);
            pt_xbuf_dispose(&out);
        }
    }
    pt_wsdl_free(w);
    return 0;
}
