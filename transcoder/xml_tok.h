/*
 * xml_tok.h -- our own streaming XML tokenizer for the SOAP answer hot path
 * (internal).
 *
 * Reads UTF-8 XML 1.0 with namespaces and reports start tags (with resolved
 * namespace URIs and decoded attribute values), end tags and decoded
 * character data. It checks well-formedness as the SOAP path needs it and
 * refuses, in our own words, what the configured libxml2 parser
 * (xml_util.c) refuses: any DOCTYPE, unbalanced or mismatched tags, bad
 * names, repeated attributes (by qualified and by expanded name, in linear
 * time), undeclared prefixes, undefined entities (only the five predefined
 * ones exist), bad character references, bad UTF-8 and characters XML does
 * not allow, "]]>" in text, "--" in comments, another encoding than UTF-8,
 * and the same caps on depth and attributes. Comments and PIs are checked
 * and skipped; CDATA is text.
 *
 * Where the exact verdict rests on a rule it does not model (another XML
 * version, the reserved xml/xmlns prefixes and namespace names bound
 * explicitly, xml:id, an odd XML declaration, an odd PI target), it
 * *defers*: it stops and the caller asks libxml2 for the verdict on the
 * whole input (pt__xt_deferred()).
 *
 * Input: the caller keeps the whole input so far in one buffer that only
 * grows (soap_resp.c keeps it anyway for the slow path) and passes it on
 * every call; the tokenizer keeps offsets, so the buffer may move between
 * calls, and it never reads at or past `len`. A construct cut by the end of
 * the input so far is read again once at least twice as many bytes are
 * there (so a trickled huge tag costs linear time, not quadratic).
 */
#ifndef PT_TRANSCODER_XML_TOK_H
#define PT_TRANSCODER_XML_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xml_internal.h"

typedef struct pt__xt_attr {
    const char *local, *uri, *val; /* uri NULL: no namespace */
    size_t llen, ulen, vlen;
} pt__xt_attr_t;

/**
 * Events; pointers are valid during the call only. uri NULL: no namespace.
 * `leaf` is optional: when set, an element read whole from one buffer as
 * <name>text</name> or <name a="v" ...>text</name> -- ASCII names, text
 * without references, CR, "]" or non-ASCII bytes, the end tag right after,
 * not the root; attributes only as the start-tag fast path reads them (see
 * xml_tok.c: stag_fast) -- is reported by that one call instead of start,
 * text (when not empty) and end; exactly the same events otherwise.
 */
typedef struct pt__xt_cb {
    void (*start)(void *ud, const char *local, size_t llen, const char *uri, size_t ulen,
                  const pt__xt_attr_t *at, unsigned nat);
    void (*end)(void *ud);
    void (*text)(void *ud, const char *s, size_t n);
    void (*leaf)(void *ud, const char *local, size_t llen, const char *uri, size_t ulen,
                 const pt__xt_attr_t *at, unsigned nat, const char *s, size_t n);
} pt__xt_cb_t;

typedef struct pt__xt pt__xt_t;

/* The first member of every pt__xt_t (read through pt__xt_ns_epoch). */
typedef struct pt__xt_head {
    uint64_t ns_epoch;
} pt__xt_head_t;

/**
 * A count of the namespace bindings made so far. While it stays the same,
 * the bytes behind an element's or attribute's `uri` pointer from an
 * earlier event stay the same too (URIs are only written, and their
 * buffer only moved, when a binding is made): a consumer may then tell an
 * equal URI by the pointer and length it saw before.
 */
static inline uint64_t pt__xt_ns_epoch(const pt__xt_t *x)
{
    return ((const pt__xt_head_t *)(const void *)x)->ns_epoch;
}

/** New tokenizer with the caps of `o` (max_depth, max_attrs); NULL on NOMEM. */
pt__xt_t *pt__xt_new(const pt_allocator_t *a, const pt__xp_opts_t *o, const pt__xt_cb_t *cb,
                     void *ud);
/**
 * Reads on in buf[0..len) (the whole input so far); `final`: there is no
 * more. Returns the failure so far (PT_XP_OK to go on; also PT_XP_OK once
 * deferred).
 */
pt__xp_fail_t pt__xt_run(pt__xt_t *x, const char *buf, size_t len, bool final);
/** True when the verdict is left to libxml2 (no more events come). */
bool pt__xt_deferred(const pt__xt_t *x);
/** Tests: read every tag the general way (no fast paths but the leaf event's absence). */
void pt__xt_general_only(pt__xt_t *x);
/** Why it failed (our words), and where (1-based; 0 when unknown). */
const char *pt__xt_msg(const pt__xt_t *x);
int pt__xt_line(const pt__xt_t *x);
int pt__xt_col(const pt__xt_t *x);
void pt__xt_free(pt__xt_t *x);

#endif /* PT_TRANSCODER_XML_TOK_H */
