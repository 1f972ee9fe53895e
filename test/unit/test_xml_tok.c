/*
 * test_xml_tok.c -- our streaming XML tokenizer (transcoder/xml_tok.c).
 *
 * Every case runs whole and in every chunk size from 1 byte up (the input
 * grows in one buffer, as soap_resp.c keeps it): the events, or the refusal
 * with its words and position, must not depend on the split. Each refusal
 * is also held to the configured libxml2 parser (xml_util.c): it must
 * refuse the same bytes. The hand-written date/time lexical checks
 * (soap_types.c) are held to the regexps they replace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libxml/xmlregexp.h>

#include "../../transcoder/soap_internal.h"
#include "../../transcoder/xml_tok.h"

/* ---- an event log: "<{uri}local @{uri}name=value>" "text" "</>" ---- */

static void log_start(void *ud, const char *l, size_t ll, const char *u, size_t ul,
                      const pt__xt_attr_t *at, unsigned n)
{
    pt_xbuf_t *b = ud;
    pt_xbuf_putc(b, '<');
    if (u != NULL) {
        pt_xbuf_putc(b, '{');
        pt_xbuf_append(b, u, ul);
        pt_xbuf_putc(b, '}');
    }
    pt_xbuf_append(b, l, ll);
    for (unsigned i = 0; i < n; i++) {
        pt_xbuf_puts(b, " @");
        if (at[i].uri != NULL) {
            pt_xbuf_putc(b, '{');
            pt_xbuf_append(b, at[i].uri, at[i].ulen);
            pt_xbuf_putc(b, '}');
        }
        pt_xbuf_append(b, at[i].local, at[i].llen);
        pt_xbuf_putc(b, '=');
        pt_xbuf_append(b, at[i].val, at[i].vlen);
    }
    pt_xbuf_putc(b, '>');
}

static void log_end(void *ud) { pt_xbuf_puts(ud, "</>"); }

static void log_text(void *ud, const char *s, size_t n) { pt_xbuf_append(ud, s, n); }

/* the one-event leaf, logged as the three events it stands for */
static void log_leaf(void *ud, const char *l, size_t ll, const char *u, size_t ul,
                     const pt__xt_attr_t *at, unsigned nat, const char *s, size_t n)
{
    log_start(ud, l, ll, u, ul, at, nat);
    log_text(ud, s, n);
    log_end(ud);
}

static const pt__xt_cb_t logcb = {log_start, log_end, log_text, NULL};
static const pt__xt_cb_t leafcb = {log_start, log_end, log_text, log_leaf};

typedef struct run {
    pt__xp_fail_t f;
    bool deferred;
    char msg[200];
    char *log;
} run_t;

/* Runs the tokenizer over xml[0..n) fed `step` bytes at a time (0: whole). */
static run_t tok_cb(const char *xml, size_t n, size_t step, unsigned depth, unsigned attrs,
                    const pt__xt_cb_t *cb, bool general)
{
    pt_xbuf_t log;
    pt_xbuf_init(&log, NULL);
    pt__xp_opts_t o = {1u << 20, depth, attrs, NULL};
    pt__xt_t *t = pt__xt_new(NULL, &o, cb, &log);
    assert_non_null(t);
    if (general)
        pt__xt_general_only(t);
    pt__xp_fail_t f = PT_XP_OK;
    if (step == 0)
        step = n + 1;
    for (size_t i = step; i < n && f == PT_XP_OK; i += step)
        f = pt__xt_run(t, xml, i, false);
    if (f == PT_XP_OK)
        f = pt__xt_run(t, xml, n, true);
    run_t r = {.f = f, .deferred = pt__xt_deferred(t)};
    if (f != PT_XP_OK)
        snprintf(r.msg, sizeof(r.msg), "%d:%d: %s", pt__xt_line(t), pt__xt_col(t), pt__xt_msg(t));
    pt_xbuf_terminate(&log);
    r.log = (char *)log.data;
    pt__xt_free(t);
    return r;
}

/* The general path alone (pt__xt_general_only: no fast path, no leaf
 * event), held to the fast paths without and with the leaf event: the same
 * events (a leaf logged as its three), the same verdict, words and place. */
static run_t tok(const char *xml, size_t n, size_t step, unsigned depth, unsigned attrs)
{
    run_t r = tok_cb(xml, n, step, depth, attrs, &logcb, true);
    for (int leaf = 0; leaf < 2; leaf++) {
        run_t l = tok_cb(xml, n, step, depth, attrs, leaf ? &leafcb : &logcb, false);
        if (r.f != l.f || r.deferred != l.deferred || strcmp(r.msg, l.msg) != 0 ||
            strcmp(r.log, l.log) != 0)
            fail_msg("%.*s: step %zu: fast paths%s %d %d %s %s, general %d %d %s %s", (int)n, xml,
                     step, leaf ? " and leaf events" : "", l.f, l.deferred, l.msg, l.log, r.f,
                     r.deferred, r.msg, r.log);
        free(l.log);
    }
    return r;
}

/* libxml2 as xml_util.c configures it: true when it accepts the bytes. */
static bool libxml2_ok(const char *xml, size_t n, unsigned depth, unsigned attrs)
{
    pt__xp_opts_t o = {1u << 20, depth, attrs, NULL};
    pt__xp_t *x = pt__xp_new(NULL, &o);
    assert_non_null(x);
    xmlDocPtr doc = NULL;
    pt__xp_fail_t f = pt__xp_feed(x, xml, n);
    if (f == PT_XP_OK)
        f = pt__xp_finish(x, &doc);
    xmlFreeDoc(doc);
    pt__xp_free(x);
    return f == PT_XP_OK;
}

static void accepts_n(const char *xml, size_t n, const char *want)
{
    run_t whole = tok(xml, n, 0, 64, 64);
    if (whole.f != PT_XP_OK || whole.deferred)
        fail_msg("refused or deferred %s: %s", xml, whole.msg);
    assert_string_equal(whole.log, want);
    free(whole.log);
    assert_true(libxml2_ok(xml, n, 64, 64));
    for (size_t step = 1; step < n; step++) {
        run_t r = tok(xml, n, step, 64, 64);
        if (r.f != PT_XP_OK)
            fail_msg("step %zu: %s", step, r.msg);
        assert_string_equal(r.log, want);
        free(r.log);
    }
}

static void accepts(const char *xml, const char *want) { accepts_n(xml, strlen(xml), want); }

static void refuses_n(const char *xml, size_t n, pt__xp_fail_t f, const char *words, unsigned depth,
                      unsigned attrs)
{
    run_t whole = tok(xml, n, 0, depth, attrs);
    if (whole.f != f)
        fail_msg("%s: got %d (%s), deferred %d", xml, whole.f, whole.msg, whole.deferred);
    if (strstr(whole.msg, words) == NULL)
        fail_msg("%s: \"%s\" lacks \"%s\"", xml, whole.msg, words);
    free(whole.log);
    if (libxml2_ok(xml, n, depth, attrs))
        fail_msg("libxml2 accepts what we refuse: %s", xml);
    for (size_t step = 1; step < n; step++) {
        run_t r = tok(xml, n, step, depth, attrs);
        if (r.f != f || strcmp(r.msg, whole.msg) != 0)
            fail_msg("%s: step %zu: %d %s vs %s", xml, step, r.f, r.msg, whole.msg);
        free(r.log);
    }
}

static void refuses(const char *xml, const char *words)
{
    refuses_n(xml, strlen(xml), PT_XP_NOT_XML, words, 64, 64);
}

static void defers(const char *xml)
{
    run_t r = tok(xml, strlen(xml), 0, 64, 64);
    if (r.f != PT_XP_OK || !r.deferred)
        fail_msg("not deferred: %s (%s)", xml, r.msg);
    free(r.log);
}

static void test_accepts(void **state)
{
    (void)state;
    accepts("<a/>", "<a></>");
    accepts("\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes' ?>\n<a>x</a>\n",
            "<a>x</>");
    accepts("<?xml version='1.0'?><!-- c --><?pi data?><a><!----><?p?></a><!-- e -->\n<?q?>",
            "<a></>");
    /* namespaces: default, prefixed, undeclared default, scoping */
    accepts("<s:E xmlns:s=\"urn:s\" xmlns=\"urn:d\"><b x=\"1\" s:y=\"2\"><c xmlns=\"\"/></b>"
            "<s:F xmlns:s=\"urn:t\"/></s:E>",
            "<{urn:s}E><{urn:d}b @x=1 @{urn:s}y=2><c></></><{urn:t}F></></>");
    /* references, CDATA, line ends, attribute value normalization */
    accepts("<a v=\"a&amp;b&#x26;&lt;&#9;\t\r\nz\" w='&quot;&apos;\"'>1&gt;2&#65;&#x1F600;"
            "<![CDATA[<&]]>]] ]>\r\nx\ry]</a>",
            "<a @v=a&b&<\t  z @w=\"'\">1>2A\xF0\x9F\x98\x80<&]] ]>\nx\ny]</>");
    /* the same local name in two namespaces is two attributes */
    accepts("<a xmlns:p=\"urn:1\" xmlns:q=\"urn:2\" p:x=\"1\" q:x=\"2\" x=\"3\"/>",
            "<a @{urn:1}x=1 @{urn:2}x=2 @x=3></>");
    /* the xml prefix is bound without a declaration */
    accepts("<a xml:lang=\"en\"/>", "<a @{http://www.w3.org/XML/1998/namespace}lang=en></>");
    /* non-ASCII names and text, end tag with blanks */
    accepts("<\xC3\xA9l\xC2\xB7x>\xE2\x82\xAC</\xC3\xA9l\xC2\xB7x \n>",
            "<\xC3\xA9l\xC2\xB7x>\xE2\x82\xAC</>");
}

/* Elements that are, or almost are, one-event leaves (every case of tok()
 * is also run with the leaf event and held to the run without it). */
static void test_leaves(void **state)
{
    (void)state;
    accepts("<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><a>x</a><p:b>tab\there\nLF</p:b><c></c>"
            "<d>t&amp;</d><e>]</e><f>x</f ><g>\xC3\xA9</g><h>a\r\nb</h><i a=\"1\">x</i><j>x<k/></j>"
            "<l>x</l></r>",
            "<{urn:d}r><{urn:d}a>x</><{urn:p}b>tab\there\nLF</><{urn:d}c></><{urn:d}d>t&</>"
            "<{urn:d}e>]</><{urn:d}f>x</><{urn:d}g>\xC3\xA9</><{urn:d}h>a\nb</>"
            "<{urn:d}i @a=1>x</><{urn:d}j>x<{urn:d}k></></><{urn:d}l>x</></>");
    accepts("<a>x</a>", "<a>x</>"); /* the root is never a leaf event */
    refuses("<r><a>x</b></r>", "1:8: mismatched end tag");
    refuses("<r><a>x</ab></r>", "mismatched end tag");
    refuses("<r><p:a>x</p:a></r>", "1:5: undeclared namespace prefix");
    refuses("<r><a>x\x01</a></r>", "invalid UTF-8");
    refuses_n("<r><a>x</a></r>", 15, PT_XP_LIMIT, "nested deeper than 1", 1, 64);
    defers("<r><xml:a>x</xml:a></r>");
}

/* Start tags with attributes below the root: the fast path (stag_attrs) and
 * every way out of it to the general path, held to the general path by
 * tok() at every chunk size, so attributes cut at any byte are covered. */
static void test_attrs_fast(void **state)
{
    (void)state;
    accepts("<r xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:i=\"urn:i\">"
            "<a x=\"1\" p:y='2'>t</a><b x=\"\" y='a\"b'/><c q=\"a>b c\"><d/></c><e i:nil=\"true\"></e>"
            "<f  x = \"1\" >t</f><g\tx='1'\n/><p:h x=\"1\" xmlnsx=\"2\">t</p:h></r>",
            "<{urn:d}r><{urn:d}a @x=1 @{urn:p}y=2>t</><{urn:d}b @x= @y=a\"b></>"
            "<{urn:d}c @q=a>b c><{urn:d}d></></><{urn:d}e @{urn:i}nil=true></>"
            "<{urn:d}f @x=1>t</><{urn:d}g @x=1></><{urn:p}h @x=1 @xmlnsx=2>t</></>");
    /* values the fast path leaves to the general one: references, blanks to
     * normalize, non-ASCII; the xml prefix; a declaration in the tag */
    accepts("<r><a v=\"a&amp;b\" w=\"1\t2\r\n3\">x</a><b v=\"\xC3\xA9\">y</b><c xml:lang=\"en\">z</c>"
            "<d xmlns:q=\"urn:q\" q:x=\"1\">w</d><e x=\"1\">t&amp;</e><f v=\"a&amp;b\">x</f>"
            "<g v='&#65;&quot;'/></r>",
            "<r><a @v=a&b @w=1 2 3>x</><b @v=\xC3\xA9>y</>"
            "<c @{http://www.w3.org/XML/1998/namespace}lang=en>z</><d @{urn:q}x=1>w</>"
            "<e @x=1>t&</><f @v=a&b>x</><g @v=A\"></></>");
    /* eight attributes (the fast path's most) and nine */
    accepts("<r><a a1=\"1\" a2=\"2\" a3=\"3\" a4=\"4\" a5=\"5\" a6=\"6\" a7=\"7\" a8=\"8\">x</a>"
            "<b a1=\"1\" a2=\"2\" a3=\"3\" a4=\"4\" a5=\"5\" a6=\"6\" a7=\"7\" a8=\"8\" a9=\"9\"/></r>",
            "<r><a @a1=1 @a2=2 @a3=3 @a4=4 @a5=5 @a6=6 @a7=7 @a8=8>x</>"
            "<b @a1=1 @a2=2 @a3=3 @a4=4 @a5=5 @a6=6 @a7=7 @a8=8 @a9=9></></>");
    /* the same local name in two namespaces, and unprefixed */
    accepts("<r xmlns:p=\"urn:1\" xmlns:q=\"urn:2\"><a p:x=\"1\" q:x=\"2\" x=\"3\"/></r>",
            "<r><a @{urn:1}x=1 @{urn:2}x=2 @x=3></></>");
    /* refusals found in the fast path are told by the general one */
    refuses("<r><a x=\"1\" x=\"2\">t</a></r>", "1:13: attribute given twice");
    refuses("<r xmlns:p=\"u\" xmlns:q=\"u\"><a p:x=\"1\" q:x=\"2\"/></r>",
            "attribute given twice (same namespace and name)");
    refuses("<r xmlns:p=\"u\"><a p:x=\"1\" p:x=\"2\"/></r>", "attribute given twice");
    refuses("<r><a p:x=\"1\">t</a></r>", "1:7: undeclared namespace prefix");
    refuses("<r><p:a x=\"1\">t</p:a></r>", "1:5: undeclared namespace prefix");
    refuses("<r><a x=\"1\"y=\"2\"/></r>", "separated by whitespace");
    refuses("<r><a x=\"1\" / ></r>", "'/' not followed by '>'");
    refuses("<r><a x=\"a<b\"/></r>", "'<' in an attribute value");
    refuses("<r><a x=\"1\">t</b></r>", "mismatched end tag");
    refuses("<r><a x=\"1\"></r>", "mismatched end tag");
    refuses("<r><a x=\"\x01\"/></r>", "invalid UTF-8");
    refuses("<r><a x=\"1\">t", "element <a> not closed");
    refuses("<r><a x=\"1", "ends inside markup");
    refuses_n("<r><a x=\"1\">t</a></r>", 20, PT_XP_LIMIT, "1:4: elements nested deeper than 1", 1,
              64);
    refuses_n("<r><a x=\"1\" y=\"2\"/></r>", 22, PT_XP_LIMIT, "element <a> has more than 1", 64, 1);
    defers("<r><a xml:id=\"x\"/></r>");
}

/* The escaping JSON string writer (word-at-a-time scan) against a byte-by-byte
 * reference: every length up to 40, one byte of each class at every place. */
static void ref_json_str(pt_xbuf_t *b, const char *s, size_t n)
{
    pt_xbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\')
            snprintf(e, sizeof(e), "\\%c", c);
        else if (c == '\n')
            snprintf(e, sizeof(e), "\\n");
        else if (c == '\r')
            snprintf(e, sizeof(e), "\\r");
        else if (c == '\t')
            snprintf(e, sizeof(e), "\\t");
        else if (c < 0x20)
            snprintf(e, sizeof(e), "\\u%04x", c);
        else
            e[0] = (char)c, e[1] = '\0';
        pt_xbuf_puts(b, e);
    }
    pt_xbuf_putc(b, '"');
}

static void test_json_escape(void **state)
{
    (void)state;
    static const unsigned char odd[] = {'"', '\\', 0x00, 0x01, '\n', 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xFF, '!', '#'};
    char s[48];
    pt_xbuf_t got, want;
    pt_xbuf_init(&got, NULL);
    pt_xbuf_init(&want, NULL);
    for (size_t n = 0; n <= 40; n++)
        for (size_t at = 0; at <= n; at++)
            for (size_t k = 0; k < sizeof(odd); k++) {
                for (size_t i = 0; i < n; i++)
                    s[i] = (char)('a' + i % 26);
                if (at < n)
                    s[at] = (char)odd[k];
                pt_xbuf_reset(&got);
                pt_xbuf_reset(&want);
                pt_xbuf_puts(&got, "x");
                assert_int_equal(pt__put_json_str(&got, s, n), 0);
                pt_xbuf_puts(&want, "x");
                ref_json_str(&want, s, n);
                if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
                    fail_msg("length %zu, byte 0x%02x at %zu: %.*s vs %.*s", n, odd[k], at,
                             (int)got.len, (const char *)got.data, (int)want.len,
                             (const char *)want.data);
                assert_int_equal(pt__json_needs_esc(s, n), want.len != n + 3);
            }
    pt_xbuf_dispose(&got);
    pt_xbuf_dispose(&want);
}

static void test_refuses(void **state)
{
    (void)state;
    /* DOCTYPE in any form: XXE, billion laughs, parameter entities */
    refuses_n("<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>", 62,
              PT_XP_DOCTYPE, "1:1: a DOCTYPE is not accepted", 64, 64);
    const char *lol = "<?xml version=\"1.0\"?>\n<!DOCTYPE l [<!ENTITY a \"aa\"><!ENTITY b \"&a;&a;\">"
                      "]><l>&b;</l>";
    refuses_n(lol, strlen(lol), PT_XP_DOCTYPE, "2:1: a DOCTYPE", 64, 64);
    refuses_n("<!-- x --><!DOCTYPE a SYSTEM \"http://evil/x.dtd\"><a/>", 50, PT_XP_DOCTYPE,
              "DOCTYPE", 64, 64);
    /* structure */
    refuses("", "empty document");
    refuses("   \n", "no XML document");
    refuses("Internal Server Error", "no XML document");
    refuses("<a><b></a>", "1:7: mismatched end tag");
    refuses("<a>", "element <a> not closed");
    refuses("<a></a><b/>", "content after the root element");
    refuses("<a></a>x", "content after the root element");
    refuses("</a>", "an end tag before the root element");
    refuses("<a", "ends inside markup");
    refuses("<a b=\"1\"", "ends inside markup");
    refuses("<a><!-- x", "ends inside markup");
    refuses("<a><![CDATA[x", "ends inside markup");
    refuses("<a>&amp", "ends inside markup");
    refuses("<a><!DOCTYPE a></a>", "'<!' starts no comment");
    refuses("<a><![CDATA[x]]></a><![CDATA[y]]>", "'<!' starts no comment");
    refuses("<a>]]></a>", "']]>' in text");
    refuses("<a><!-- a--b --></a>", "'--' inside a comment");
    refuses("<a><!-- a ---></a>", "'--' inside a comment");
    refuses("<a></a >x", "content after");
    refuses("<a></b >", "mismatched end tag");
    refuses("<a></a x>", "'>' expected");
    refuses("<a>< b/></a>", "a name was expected");
    refuses("<1a/>", "a name was expected");
    refuses("<a/ >", "'/' not followed by '>'");
    /* names and namespaces */
    refuses("<a:b:c xmlns:a=\"u\"/>", "bad qualified name");
    refuses("<:a/>", "bad qualified name");
    refuses("<a:/>", "bad qualified name");
    refuses("<p:a/>", "undeclared namespace prefix");
    refuses("<a p:x=\"1\"/>", "undeclared namespace prefix");
    refuses("<a><p:b xmlns:p=\"u\"/><p:c/></a>", "undeclared namespace prefix");
    refuses("<a xmlns:p=\"http://x/a b\"/>", "1:4: a namespace name that is not a valid URI");
    refuses("<a xmlns=\"http://x/a-->b\"/>", "not a valid URI");
    /* attributes */
    refuses("<a x=\"1\" x=\"2\"/>", "attribute given twice");
    refuses("<a xmlns:p=\"u\" xmlns:p=\"u\"/>", "attribute given twice");
    refuses("<a xmlns:p=\"u\" xmlns:q=\"u\" p:x=\"1\" q:x=\"2\"/>",
            "attribute given twice (same namespace and name)");
    refuses("<a x=\"1\"y=\"2\"/>", "separated by whitespace");
    refuses("<a x/>", "'=' expected");
    refuses("<a x=1/>", "not quoted");
    refuses("<a x=\"<\"/>", "'<' in an attribute value");
    refuses("<a x=\"&foo;\"/>", "undeclared entity");
    /* references */
    refuses("<a>&foo;</a>", "undeclared entity");
    refuses("<a>&amp </a>", "bad entity reference");
    refuses("<a>&#0;</a>", "character reference to a character XML does not allow");
    refuses("<a>&#xD800;</a>", "does not allow");
    refuses("<a>&#x110000;</a>", "does not allow");
    refuses("<a>&#99999999999999999999;</a>", "does not allow");
    refuses("<a>&#xFFFE;</a>", "does not allow");
    refuses("<a>&#X41;</a>", "bad character reference");
    refuses("<a>&#;</a>", "bad character reference");
    refuses("<a>&#12a;</a>", "bad character reference");
    /* encodings and characters */
    refuses("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>", "only UTF-8 is accepted");
    refuses("<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>", "only UTF-8 is accepted");
    refuses_n("\xFF\xFE<\0a\0/\0>\0", 10, PT_XP_NOT_XML, "only UTF-8", 64, 64);
    refuses_n("<a>\0</a>", 8, PT_XP_NOT_XML, "invalid UTF-8", 64, 64);
    refuses("<a>\x01</a>", "invalid UTF-8");
    refuses("<a>\xff</a>", "invalid UTF-8");
    refuses("<a>\xC0\xAF</a>", "invalid UTF-8");         /* overlong '/' */
    refuses("<a>\xED\xA0\x80</a>", "invalid UTF-8");     /* a surrogate */
    refuses("<a>\xF4\x90\x80\x80</a>", "invalid UTF-8"); /* past U+10FFFF */
    refuses("<a>\xEF\xBF\xBE</a>", "invalid UTF-8");     /* U+FFFE */
    refuses("<a>\xE2\x82</a>", "invalid UTF-8");         /* cut short */
    refuses("<a x=\"\xC3\"/>", "invalid UTF-8");
    refuses("<a><!-- \x01 --></a>", "invalid UTF-8");
    refuses("<a\xC3\x97/>", "1:3: attributes must be separated"); /* U+00D7: no name char */
    refuses("<a>x</a>\xE2\x82", "content after");
    refuses(" <?xml version=\"1.0\"?><a/>", "1:2: an XML declaration only at the start");
    refuses("<?xml?><a/>", "an XML declaration only at the start");
}

static void test_caps(void **state)
{
    (void)state;
    char deep[2048] = "", attrs[4096] = "<a";
    for (int i = 0; i < 10; i++)
        strcat(deep, "<d>");
    refuses_n(deep, strlen(deep), PT_XP_LIMIT, "1:25: elements nested deeper than 8", 8, 64);
    for (int i = 0; i < 9; i++)
        snprintf(attrs + strlen(attrs), sizeof(attrs) - strlen(attrs), " a%d=\"\"", i);
    strcat(attrs, "/>");
    refuses_n(attrs, strlen(attrs), PT_XP_LIMIT,
              "element <a> has more than 8 attributes or namespace declarations", 64, 8);
    /* namespace declarations count apart from attributes */
    char decls[4096] = "<a";
    for (int i = 0; i < 9; i++)
        snprintf(decls + strlen(decls), sizeof(decls) - strlen(decls), " xmlns:p%d=\"u\"", i);
    strcat(decls, "/>");
    refuses_n(decls, strlen(decls), PT_XP_LIMIT, "more than 8 attributes", 64, 8);
    /* a flood of attributes cut short is refused at the cap, not at the end */
    char flood[8192] = "<a";
    for (int i = 0; i < 500; i++)
        snprintf(flood + strlen(flood), sizeof(flood) - strlen(flood), " b%d='1'", i);
    run_t r = tok(flood, strlen(flood), 0, 64, 64);
    assert_int_equal(r.f, PT_XP_LIMIT);
    free(r.log);
    /* a name longer than libxml2's 50000 bytes */
    size_t n = 50010;
    char *big = malloc(n + 8);
    big[0] = '<';
    memset(big + 1, 'n', n);
    memcpy(big + 1 + n, "/>", 3);
    r = tok(big, strlen(big), 0, 64, 64);
    assert_int_equal(r.f, PT_XP_NOT_XML);
    assert_non_null(strstr(r.msg, "name longer than 50000 bytes"));
    assert_false(libxml2_ok(big, strlen(big), 64, 64));
    free(r.log);
    free(big);
}

static void test_defers(void **state)
{
    (void)state;
    defers("<a xml:id=\"x y\"/>");
    defers("<a xmlns:xml=\"http://www.w3.org/XML/1998/namespace\"/>");
    defers("<a xmlns:x=\"http://www.w3.org/2000/xmlns/\"/>");
    defers("<a xmlns:xmlns=\"u\"/>");
    defers("<a xmlns:p=\"\"/>");
    defers("<?xml version=\"1.1\"?><a/>");
    defers("<?xml encoding=\"UTF-8\"?><a/>");
    defers("<a><?xml-x y?><?XmL z?></a>");
    defers("<a><?p:q z?></a>");
    defers("<xml:a/>");
    defers("<a xmlns:p=\"urn:a&amp;b\"/>"); /* libxml2 keeps "&#38;" in the name */
    /* a bad xml:id is an error libxml2 reports in the middle of a start tag:
     * stopping it there must not free the input it still reads (ASan: a
     * heap use-after-free with xmlStopParser) */
    const char *id = "<r><a xml:id=\"\" d=\"x\"/><b xml:id=\"1\" e=\"y\" f=\"z\"></b></r>";
    defers(id);
    assert_false(libxml2_ok(id, strlen(id), 64, 64));
    assert_false(libxml2_ok(id + 3, 20, 64, 64));
}

/* ---- the date/time checks against the regexps they replace ---- */

#define TZ "(Z|[+\\-][0-9]{2}:[0-9]{2})?"

static void test_lexical(void **state)
{
    (void)state;
    struct {
        pt_xprim_t prim;
        unsigned sub;
        const char *re;
        const char *samples[4];
    } k[] = {
        {PT_XSP_DATETIME, 0,
         "-?[0-9]{4,}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?" TZ,
         {"2020-01-02T03:04:05", "-12345-01-02T03:04:05.25Z", "2020-01-02T03:04:05+01:00", NULL}},
        {PT_XSP_DATE, 0, "-?[0-9]{4,}-[0-9]{2}-[0-9]{2}" TZ,
         {"2020-01-02", "-0001-12-31Z", "2020-01-02-05:30", NULL}},
        {PT_XSP_TIME, 0, "[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?" TZ,
         {"03:04:05", "23:59:60.999Z", "00:00:00+14:00", NULL}},
        {PT_XSP_DURATION, 0,
         "-?P([0-9]+Y)?([0-9]+M)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+(\\.[0-9]+)?S)?)?",
         {"P1Y2M3DT4H5M6.5S", "-PT1M", "P12D", "PT0.5S"}},
        {PT_XSP_GREG, 0, "-?[0-9]{4,}" TZ, {"2020", "-20201Z", "2020+01:00", NULL}},
        {PT_XSP_GREG, 1, "-?[0-9]{4,}-[0-9]{2}" TZ, {"2020-01", "-2020-12Z", NULL, NULL}},
        {PT_XSP_GREG, 2, "--[0-9]{2}" TZ, {"--01", "--12Z", NULL, NULL}},
        {PT_XSP_GREG, 3, "--[0-9]{2}-[0-9]{2}" TZ, {"--01-02", "--12-31-01:00", NULL, NULL}},
        {PT_XSP_GREG, 4, "---[0-9]{2}" TZ, {"---01", "---31Z", NULL, NULL}},
    };
    const char alpha[] = "0-:TZP.+YMDHS";
    size_t checked = 0;
    for (size_t t = 0; t < sizeof(k) / sizeof(k[0]); t++) {
        xmlRegexpPtr re = xmlRegexpCompile((const xmlChar *)k[t].re);
        assert_non_null(re);
        for (int si = 0; si < 4 && k[t].samples[si] != NULL; si++) {
            const char *s = k[t].samples[si];
            size_t n = strlen(s);
            assert_true(pt__xsd_lex_ok(k[t].prim, k[t].sub, s, n));
            /* every prefix, every one-byte deletion, substitution and insertion */
            char m[64];
            for (size_t i = 0; i <= n; i++) {
                for (int op = 0; op < 4; op++) {
                    for (size_t a = 0; a < (op == 0 || op == 1 ? 1 : sizeof(alpha) - 1); a++) {
                        size_t len;
                        if (op == 0) { /* prefix */
                            memcpy(m, s, i);
                            len = i;
                        } else if (op == 1) { /* deletion */
                            if (i == n)
                                continue;
                            memcpy(m, s, i);
                            memcpy(m + i, s + i + 1, n - i - 1);
                            len = n - 1;
                        } else if (op == 2) { /* substitution */
                            if (i == n)
                                continue;
                            memcpy(m, s, n);
                            m[i] = alpha[a];
                            len = n;
                        } else { /* insertion */
                            memcpy(m, s, i);
                            m[i] = alpha[a];
                            memcpy(m + i + 1, s + i, n - i);
                            len = n + 1;
                        }
                        m[len] = '\0';
                        bool want = xmlRegexpExec(re, (const xmlChar *)m) == 1;
                        if (k[t].prim == PT_XSP_DURATION && len > 0 &&
                            (m[len - 1] == 'P' || m[len - 1] == 'T'))
                            want = false;
                        if (pt__xsd_lex_ok(k[t].prim, k[t].sub, m, len) != want)
                            fail_msg("%s: \"%s\": regexp says %d", k[t].re, m, want);
                        checked++;
                    }
                }
            }
        }
        xmlRegFreeRegexp(re);
    }
    assert_true(checked > 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_leaves),
        cmocka_unit_test(test_attrs_fast),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_defers),
        cmocka_unit_test(test_lexical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
