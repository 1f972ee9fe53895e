/*
 * xmljson.h -- generic XML <-> JSON without a schema (the xml_json filter).
 *
 * The convention (docs/configuration.md, "xml_json"):
 *  - the document is a JSON object with one key, the root element's name;
 *  - an element becomes a JSON string when it has neither attributes nor
 *    child elements (its text, "" when empty), otherwise an object;
 *  - attributes are "@name" keys (string values), in document order;
 *  - child elements are keys by their name; a name that occurs more than once
 *    among siblings becomes an array (in document order), once a single value;
 *  - text beside child elements or attributes is "#text" (text pieces are
 *    concatenated; whitespace-only text next to child elements is dropped);
 *  - names are kept exactly as written, prefix included ("soap:Body"), and
 *    namespace declarations are attributes like any other ("@xmlns:soap"),
 *    so the JSON is predictable from the document and converts back to it;
 *  - comments and processing instructions are dropped; CDATA is text.
 * JSON -> XML reverses it: "@x" keys become attributes (written first), "#text"
 * text, arrays repeated elements, objects child elements, strings text;
 * numbers, true and false their JSON text; null an empty element. Keys must
 * be XML names; the top-level object must have exactly one key.
 *
 * Parsing is libxml2 with the same safe settings as the SOAP side (no DTD at
 * all: a DOCTYPE is refused, so no entity is ever declared or expanded; no
 * network), with caps on bytes, depth and attributes per element.
 */
#ifndef PT_TRANSCODER_XMLJSON_H
#define PT_TRANSCODER_XMLJSON_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/xerr.h"

/** Options; all-zero means the defaults given per field. */
typedef struct pt_xmljson_opts {
    size_t max_size;    /**< input bytes; 0 = 8 MiB */
    unsigned max_depth; /**< nesting of elements / JSON containers; 0 = 64 */
    unsigned max_attrs; /**< attributes per element; 0 = 64 */
} pt_xmljson_opts_t;

/** Streaming XML -> JSON converter. */
typedef struct pt_xml2json pt_xml2json_t;

/** New converter; `a`/`opts` NULL = defaults. NULL only on allocation failure. */
pt_xml2json_t *pt_xml2json_new(const pt_allocator_t *a, const pt_xmljson_opts_t *opts);

/**
 * Feeds a chunk. Returns 0, or PT_XERR_INVALID (not well-formed, DOCTYPE, bad
 * UTF-8) / PT_XERR_LIMIT (a cap) once the input is known to be bad; `err`
 * (may be NULL) says why, with line and column. Later feeds return the same.
 */
int pt_xml2json_feed(pt_xml2json_t *c, const void *chunk, size_t len, pt_xerr_t *err);

/**
 * Ends the input and appends the JSON to `out`. Returns 0, PT_XERR_INVALID,
 * PT_XERR_LIMIT (a cap or out->limit) or PT_XERR_NOMEM; on error out->len is
 * restored and `err` says why.
 */
int pt_xml2json_finish(pt_xml2json_t *c, pt_xbuf_t *out, pt_xerr_t *err);

/** Frees the converter. NULL is accepted. */
void pt_xml2json_free(pt_xml2json_t *c);

/** One-shot XML -> JSON. Returns as pt_xml2json_finish(). */
int pt_xml_to_json(const char *xml, size_t len, const pt_xmljson_opts_t *opts, pt_xbuf_t *out,
                   pt_xerr_t *err);

/**
 * JSON -> XML (with an XML declaration), appended to `out`. Errors carry the
 * JSON path ("order.items[1]: ..."). Returns 0, PT_XERR_INVALID, PT_XERR_LIMIT
 * or PT_XERR_NOMEM; on error out->len is restored.
 */
int pt_json_to_xml(const char *json, size_t len, const pt_xmljson_opts_t *opts, pt_xbuf_t *out,
                   pt_xerr_t *err);

#endif /* PT_TRANSCODER_XMLJSON_H */
