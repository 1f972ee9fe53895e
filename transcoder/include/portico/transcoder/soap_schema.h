/*
 * soap_schema.h -- JSON Schemas of a WSDL port's operations (for OpenAPI).
 *
 * The schemas describe the JSON a `soap` route takes and answers, by the
 * mapping of soap.h (the one the gateway converts with): complex types are
 * objects (child elements by local name, attributes as "@name", simple
 * content as "#text", unknown keys refused); maxOccurs > 1 is an array;
 * int/short/byte and their unsigned kinds are integers; long, integer and the
 * other unbounded integer types are an integer or a string of digits (beyond
 * 2^53); decimal is a string; float/double numbers; boolean; date/time and
 * binary types strings with a format or contentEncoding; nillable adds null.
 */
#ifndef PT_TRANSCODER_SOAP_SCHEMA_H
#define PT_TRANSCODER_SOAP_SCHEMA_H

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/soap.h"

/**
 * Appends to `out` one JSON object (JSON Schema 2020-12, as OpenAPI 3.1 uses):
 *
 *   {"operations":{"<Op>":{"input":{..},"output":{..}|null,
 *                          "fields":{"<top-level input field>":{..},...}},...},
 *    "types":{"<name>":{..},...}}
 *
 * Every complex type is written once under "types", named from
 * [A-Za-z0-9._-] (the XSD type's name, or the element's for an anonymous
 * type, made unique with a suffix), and referenced as
 * {"$ref":"<ref_prefix><name>"}, so recursive types are fine. Returns 0,
 * PT_XERR_NOMEM or PT_XERR_LIMIT (out->limit); on error out->len is restored.
 */
int pt_soap_port_json_schema(const pt_soap_port_t *p, const char *ref_prefix, pt_xbuf_t *out);

#endif /* PT_TRANSCODER_SOAP_SCHEMA_H */
