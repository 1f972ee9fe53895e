/*
 * fuzz_soap_resp.c -- the SOAP response envelope parser (pt_soap_resp_*)
 * against test/xml/crm.wsdl, and the request builder with the same bytes.
 *
 * Input: one selector byte, then the text. Selector bits 0-2 pick the
 * operation (all ports' operations, in order); bit 3: the text is a JSON
 * request body for pt_soap_build_request instead; bits 4-6: chunk size
 * 1 << bits for the response feed.
 *
 * Checks: no crash, no leak; the outcome is coherent (OUTPUT/FAULT wrote
 * JSON with status 200 / 400 / 500, BAD wrote nothing with 502); a request
 * that builds is a SOAP envelope the response parser reads as XML; an
 * answer read whole (one feed) gives the same JSON, outcome and message as
 * the same bytes fed in chunks (the answer is tokenized and converted while
 * it comes, so chunk edges must not matter, refusals included); the
 * reference -- libxml2 and the tree walk (pt__soap_resp_force_tree) -- and
 * our tokenizer with the streaming conversion either both refuse the bytes
 * as XML or give the same JSON, outcome and message; and our tokenizer on
 * its own refuses exactly what the configured libxml2 parser refuses
 * (unless it deferred to libxml2), for every input, SOAP or not; and its
 * fast paths (with the leaf event) give the events, verdict and message of
 * its general path alone (pt__xt_general_only), at the chunk size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/soap.h"

#include "../../transcoder/soap_internal.h" /* pt__soap_resp_force_tree */
#include "../../transcoder/xml_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pt_wsdl_t *w;
static const pt_soap_op_t *ops[8];
static size_t nops;

static void load(void)
{
    pt_wsdl_err_t e;
    if (pt_wsdl_load(PT_XML_TEST_DIR "/crm.wsdl", NULL, NULL, &w, &e) != 0)
        abort();
    for (size_t i = 0; i < pt_wsdl_port_count(w); i++)
        for (size_t k = 0; k < pt_wsdl_port(w, i)->op_cnt && nops < 8; k++)
            ops[nops++] = &pt_wsdl_port(w, i)->ops[k];
}


/* The events as bytes: start "<" uri 0 local (" " uri 0 local 0 value)* ">",
 * text as it is, end "/" -- only to compare two runs. */
static void ev_put(pt_xbuf_t *b, const char *s, size_t n)
{
    if (s != NULL)
        pt_xbuf_append(b, s, n);
    pt_xbuf_putc(b, 0);
}
static void ev_start(void *ud, const char *l, size_t ll, const char *u, size_t ul,
                     const pt__xt_attr_t *at, unsigned n)
{
    pt_xbuf_putc(ud, '<');
    ev_put(ud, u, ul);
    ev_put(ud, l, ll);
    for (unsigned i = 0; i < n; i++) {
        ev_put(ud, at[i].uri, at[i].ulen);
        ev_put(ud, at[i].local, at[i].llen);
        ev_put(ud, at[i].val, at[i].vlen);
    }
    pt_xbuf_putc(ud, '>');
}
static void ev_end(void *ud) { pt_xbuf_putc(ud, '/'); }
static void ev_text(void *ud, const char *s, size_t n) { pt_xbuf_append(ud, s, n); }
static void ev_leaf(void *ud, const char *l, size_t ll, const char *u, size_t ul,
                    const pt__xt_attr_t *at, unsigned nat, const char *s, size_t n)
{
    ev_start(ud, l, ll, u, ul, at, nat);
    ev_text(ud, s, n);
    ev_end(ud);
}

/* Runs our tokenizer over text in chunks of `step`; the events go to log. */
static pt__xp_fail_t tok_run(const char *text, size_t len, size_t step, bool general,
                             pt_xbuf_t *log, bool *deferred, char *msg, size_t msz)
{
    static const pt__xt_cb_t fast = {ev_start, ev_end, ev_text, ev_leaf};
    static const pt__xt_cb_t gen = {ev_start, ev_end, ev_text, NULL};
    pt__xp_opts_t xo = {1u << 20, 67, 64, NULL};
    pt__xt_t *t = pt__xt_new(NULL, &xo, general ? &gen : &fast, log);
    if (t == NULL)
        abort();
    if (general)
        pt__xt_general_only(t);
    pt__xp_fail_t ft = PT_XP_OK;
    for (size_t i = 0; i < len && ft == PT_XP_OK; i += step)
        ft = pt__xt_run(t, text, i + step < len ? i + step : len, false);
    if (ft == PT_XP_OK)
        ft = pt__xt_run(t, text, len, true);
    *deferred = pt__xt_deferred(t);
    snprintf(msg, msz, "%d:%d: %s", pt__xt_line(t), pt__xt_col(t), ft != PT_XP_OK ? pt__xt_msg(t) : "");
    pt__xt_free(t);
    return ft;
}

/* Our tokenizer and libxml2 (as xml_util.c configures it) agree on the
 * bytes; our fast paths and our general path agree on the events. */
static void same_verdict(const char *text, size_t len, size_t step)
{
    pt_xbuf_t lg, lf;
    pt_xbuf_init(&lg, NULL);
    pt_xbuf_init(&lf, NULL);
    bool dg, df;
    char mg[200], mf[200];
    pt__xp_fail_t ft = tok_run(text, len, step, true, &lg, &dg, mg, sizeof(mg));
    if (tok_run(text, len, step, false, &lf, &df, mf, sizeof(mf)) != ft || dg != df ||
        strcmp(mg, mf) != 0 || lg.len != lf.len ||
        (lg.len != 0 && memcmp(lg.data, lf.data, lg.len) != 0))
        abort();
    pt_xbuf_dispose(&lg);
    pt_xbuf_dispose(&lf);
    pt__xp_opts_t xo = {1u << 20, 67, 64, NULL};
    pt__xp_t *x = pt__xp_new(NULL, &xo);
    if (x == NULL)
        abort();
    xmlDocPtr doc = NULL;
    pt__xp_fail_t fx = pt__xp_feed(x, text, len);
    if (fx == PT_XP_OK)
        fx = pt__xp_finish(x, &doc);
    xmlFreeDoc(doc);
    if (!dg && (ft == PT_XP_OK) != (fx == PT_XP_OK))
        abort();
    pt__xp_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (w == NULL)
        load();
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const pt_soap_op_t *op = ops[(sel & 7) % nops];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    pt_xbuf_t out;
    pt_xbuf_init(&out, NULL);
    if (sel & 8) {
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        pt_soap_binding_t b = {"id", 2, "7", 1};
        int rc = pt_soap_build_request(op, text, len, &b, sel & 0x10 ? 1 : 0, NULL, &out, &errs);
        if (rc != 0 && (out.len != 0 || errs.cnt == 0))
            abort();
        pt_xbuf_dispose(&out);
        return 0;
    }
    size_t step = (size_t)1 << ((sel >> 4) & 7);
    same_verdict(text, len, step);
    pt_soap_resp_opts_t o = {.max_size = 1u << 20};
    pt_soap_resp_t *r = pt_soap_resp_new(op, NULL, &o);
    if (r == NULL)
        abort();
    for (size_t i = 0; i < len; i += step)
        if (pt_soap_resp_feed(r, text + i, len - i < step ? len - i : step) != 0)
            break;
    pt_soap_result_t res;
    if (pt_soap_resp_finish(r, &res, &out) == 0) {
        if (res.outcome == PT_SOAP_BAD && (out.len != 0 || res.http_status != 502))
            abort();
        if (res.outcome == PT_SOAP_OUTPUT && (out.len == 0 || res.http_status != 200))
            abort();
        if (res.outcome == PT_SOAP_FAULT && (out.len == 0 || res.http_status < 400))
            abort();
        {
            pt_xbuf_t whole;
            pt_xbuf_init(&whole, NULL);
            pt_soap_result_t r2;
            if (pt_soap_parse_response(op, text, len, &o, &r2, &whole) != 0 ||
                r2.outcome != res.outcome || r2.http_status != res.http_status ||
                strcmp(r2.msg, res.msg) != 0 || whole.len != out.len ||
                (out.len != 0 && memcmp(whole.data, out.data, out.len) != 0))
                abort();
            pt_xbuf_dispose(&whole);
        }
    }
    pt_soap_resp_free(r);
    /* streaming vs tree, fed whole */
    pt_soap_result_t a, b;
    pt_xbuf_t oa, ob;
    pt_xbuf_init(&oa, NULL);
    pt_xbuf_init(&ob, NULL);
    pt_soap_resp_t *ra = pt_soap_resp_new(op, NULL, &o), *rb = pt_soap_resp_new(op, NULL, &o);
    if (ra == NULL || rb == NULL)
        abort();
    pt__soap_resp_force_tree(rb);
    pt_soap_resp_feed(ra, text, len);
    pt_soap_resp_feed(rb, text, len);
    int rca = pt_soap_resp_finish(ra, &a, &oa), rcb = pt_soap_resp_finish(rb, &b, &ob);
    bool refa = rca == 0 && a.outcome == PT_SOAP_BAD && a.bad != PT_SOAP_BAD_NOT_DECLARED &&
                a.bad != PT_SOAP_BAD_NOT_SOAP && a.bad != PT_SOAP_BAD_VERSION;
    bool refb = rcb == 0 && b.outcome == PT_SOAP_BAD && b.bad != PT_SOAP_BAD_NOT_DECLARED &&
                b.bad != PT_SOAP_BAD_NOT_SOAP && b.bad != PT_SOAP_BAD_VERSION;
    if (rca != rcb || refa != refb)
        abort();
    if (rca == 0 && !refa &&
        (a.outcome != b.outcome || a.http_status != b.http_status || a.bad != b.bad ||
         strcmp(a.msg, b.msg) != 0 || oa.len != ob.len ||
         (oa.len != 0 && memcmp(oa.data, ob.data, oa.len) != 0)))
        abort();
    pt_soap_resp_free(ra);
    pt_soap_resp_free(rb);
    pt_xbuf_dispose(&oa);
    pt_xbuf_dispose(&ob);
    pt_xbuf_dispose(&out);
    return 0;
}
