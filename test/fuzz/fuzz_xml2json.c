/*
 * fuzz_xml2json.c -- generic XML -> JSON (pt_xml2json_*), the safe parser's
 * entry point for the xml_json filter, and JSON -> XML.
 *
 * Input: one selector byte, then the text. Selector bit 0: the text is JSON
 * for pt_json_to_xml (else XML); bits 1-3: the XML is fed in chunks of
 * 1 << bits bytes (stresses the push parser's splits); bit 4: small caps
 * (max_size 4096, depth 8, attrs 4) so the limit paths run.
 *
 * Checks beyond "no crash, no leak": on error the output is untouched; a
 * successful XML -> JSON result converts back to XML and that XML converts
 * to the same JSON (the convention is a round trip).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/xmljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    pt_xmljson_opts_t o = {0};
    if (sel & 0x10) {
        o.max_size = 4096;
        o.max_depth = 8;
        o.max_attrs = 4;
    }
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    if (sel & 1) {
        if (pt_json_to_xml(text, len, &o, &out, &err) != 0 && out.len != 0)
            abort();
        pt_xbuf_dispose(&out);
        return 0;
    }
    size_t step = (size_t)1 << ((sel >> 1) & 7);
    pt_xml2json_t *c = pt_xml2json_new(NULL, &o);
    if (c == NULL)
        abort();
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i += step)
        rc = pt_xml2json_feed(c, text + i, len - i < step ? len - i : step, &err);
    if (rc == 0)
        rc = pt_xml2json_finish(c, &out, &err);
    pt_xml2json_free(c);
    if (rc != 0 && out.len != 0)
        abort();
    if (rc == 0) {
        pt_xbuf_t x, j2;
        pt_xbuf_init(&x, NULL);
        pt_xbuf_init(&j2, NULL);
        if (pt_json_to_xml((const char *)out.data, out.len, NULL, &x, &err) != 0)
            abort(); /* our own JSON must convert back */
        if (pt_xml_to_json((const char *)x.data, x.len, NULL, &j2, &err) != 0 ||
            j2.len != out.len || memcmp(j2.data, out.data, out.len) != 0)
            abort();
        pt_xbuf_dispose(&x);
        pt_xbuf_dispose(&j2);
    }
    pt_xbuf_dispose(&out);
    return 0;
}
