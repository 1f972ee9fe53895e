/*
 * soap.h -- WSDL 1.1 + XSD driven JSON <-> SOAP 1.1/1.2 conversion.
 *
 * The WSDL is to SOAP what the descriptor set is to gRPC: pt_wsdl_load()
 * reads it once at startup (with its imported/included XSD files, local files
 * only) into an immutable model; every later call only reads that model, so
 * one pt_wsdl_t may be shared by all workers. Nothing else here does I/O.
 *
 *   pt_wsdl_load()            WSDL file -> model, or FILE:LINE:COL: message
 *   pt_wsdl_port*()           services/ports/operations, for routing and --list
 *   pt_soap_build_request()   JSON body (+ path/query bindings) -> envelope
 *   pt_soap_resp_*()          envelope, fed chunk by chunk -> JSON or a fault
 *
 * Supported: document/literal and rpc/literal bindings, SOAP 1.1 and 1.2,
 * XSD element/complexType/simpleType, sequence/choice/all, min/maxOccurs,
 * nillable, attributes, restriction facets (enumeration, length, min/max
 * length, pattern, min/max in/exclusive, totalDigits, fractionDigits,
 * whiteSpace), complexContent and simpleContent extension, named and
 * anonymous types, element refs, xsd:import/include of local files,
 * elementFormDefault/attributeFormDefault and form=. Everything else
 * (rpc/encoded, soap:header in a binding, xs:any, groups, union, list,
 * mixed content, network imports, ...) is refused at load time with the file,
 * line and construct named: never a silent guess.
 *
 * The JSON mapping (docs/configuration.md, "SOAP/XML: the mapping table"):
 *  - an element of complex type <-> JSON object, keys = child element local
 *    names, attributes as "@name", simpleContent value as "#text";
 *  - maxOccurs > 1 (on the element or an enclosing group) <-> JSON array,
 *    even with one element;
 *  - int, short, byte, unsigned{Int,Short,Byte} <-> JSON number;
 *    long, unsignedLong, integer and its derived types <-> JSON number when
 *    |v| <= 2^53, else a JSON string of the digits (input accepts both);
 *    decimal <-> JSON string of the value as sent (input accepts a number or
 *    a string), so no precision is lost;
 *    float, double <-> number; NaN/INF/-INF <-> "NaN"/"Infinity"/"-Infinity";
 *    boolean <-> true/false;
 *    enumerations, date/time types, duration, base64Binary, hexBinary,
 *    anyURI, QName and string types <-> JSON string (as sent on output;
 *    checked against the type and facets on input);
 *  - xsi:nil="true" <-> null (null on a non-nillable optional element means
 *    "absent"; on a required one it is an error).
 *
 * Errors on the request side are pt_xerrs_t entries with a JSON path
 * ("items[2].qty: expected number, got string"), the handler's 400. The
 * response side tells three outcomes apart (pt_soap_result_t): the declared
 * output (200), a SOAP fault (4xx for Client/Sender, 5xx otherwise) and a bad
 * answer (502: not XML, not SOAP, too large, not the declared output).
 *
 * libxml2 does the parsing, always with XML_PARSE_NONET and never with
 * NOENT, DTDLOAD, DTDATTR or HUGE; any DOCTYPE is refused (SOAP forbids DTDs,
 * and WSDL/XSD files need none), and our own caps bound depth, attributes per
 * element and total bytes. libxml2 allocates with its own malloc; the model,
 * the parser state and all output go through the caller's pt_allocator_t.
 *
 * Thread safety: a loaded pt_wsdl_t is read-only and may be used from any
 * thread; a pt_soap_resp_t has one owner at a time.
 */
#ifndef PT_TRANSCODER_SOAP_H
#define PT_TRANSCODER_SOAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/transcoder/alloc.h"
#include "portico/transcoder/xerr.h"

/* ======================= loading a WSDL ======================= */

typedef struct pt_wsdl pt_wsdl_t;

/** A load error: `file:line:col: msg` (line/col 0 when unknown). */
typedef struct pt_wsdl_err {
    char file[512];
    int line, col;
    char msg[512];
} pt_wsdl_err_t;

/** Load options; all-zero means the defaults given per field. */
typedef struct pt_wsdl_opts {
    size_t max_file_size; /**< per WSDL/XSD file; 0 = 16 MiB */
    unsigned max_files;   /**< imports + includes + the WSDL; 0 = 64 */
    unsigned max_depth;   /**< XML element nesting per file; 0 = 128 */
} pt_wsdl_opts_t;

/**
 * Loads the WSDL 1.1 file `path` and the XSD files it imports or includes
 * (schemaLocation / wsdl:import location relative to the importing file;
 * http:, https:, ftp: and any other URL scheme is refused as a config error).
 * `a` NULL = default allocator, `opts` NULL = defaults. On success *out is
 * the model (free with pt_wsdl_free). Returns 0; PT_XERR_INVALID (syntax,
 * unsupported construct, dangling reference, network import: `err` says
 * where); PT_XERR_NOT_FOUND (a file cannot be read); PT_XERR_LIMIT (a cap);
 * PT_XERR_NOMEM. On error *out is left untouched. `err` may be NULL.
 */
int pt_wsdl_load(const char *path, const pt_allocator_t *a, const pt_wsdl_opts_t *opts,
                 pt_wsdl_t **out, pt_wsdl_err_t *err);

/**
 * As pt_wsdl_load() but from memory: `data[0..len)` is the WSDL text and
 * `name` the file name used in errors and to resolve relative imports (which
 * are read from disk). Used by the fuzzer and tests.
 */
int pt_wsdl_load_mem(const char *name, const char *data, size_t len, const pt_allocator_t *a,
                     const pt_wsdl_opts_t *opts, pt_wsdl_t **out, pt_wsdl_err_t *err);

/** Frees a model and everything in it. NULL is accepted. */
void pt_wsdl_free(pt_wsdl_t *w);

/** Writes "file:line:col: msg" (parts that are unknown left out), like snprintf. */
size_t pt_wsdl_err_format(const pt_wsdl_err_t *e, char *out, size_t n);

/* ======================= the model, read-only ======================= */

/** SOAP versions, as numbers so they print well. */
#define PT_SOAP_11 11
#define PT_SOAP_12 12

/**
 * A top-level field of an operation's input, for REST mappings: the JSON key
 * `name` (an element's local name, or "@attr"), whether it is repeated
 * (binding appends) and required, and whether it can take a text binding
 * from a path/query variable (simple type: true; complex: false).
 */
typedef struct pt_soap_field {
    const char *name;
    bool is_repeated;
    bool is_required;
    bool is_bindable;
} pt_soap_field_t;

typedef struct pt_soap_op pt_soap_op_t;

/**
 * One operation of one port (binding). All strings are NUL-terminated, owned
 * by the model and never NULL ("" when absent). The `_impl` member is private.
 */
struct pt_soap_op {
    const char *name;        /**< wsdl:operation name: the route's URL segment */
    const char *service;     /**< wsdl:service name */
    const char *port;        /**< wsdl:port name */
    const char *address;     /**< soap:address location of the port (full URL as written) */
    int soap_version;        /**< PT_SOAP_11 or PT_SOAP_12 */
    bool is_rpc;             /**< rpc/literal (else document/literal) */
    const char *soap_action; /**< soapAction of the binding operation ("" when none) */
    const char *input_ns;    /**< namespace of the Body's child element in the request */
    const char *input_name;  /**< its local name (rpc: the operation name) */
    const char *output_ns;   /**< same for the response */
    const char *output_name; /**< (rpc: the operation name + "Response") */
    bool is_oneway;          /**< no output message: the response body is empty */
    const pt_soap_field_t *fields; /**< top-level input fields, schema order */
    size_t field_cnt;
    const void *_impl;
};

/** One port: a service's endpoint with a SOAP binding. */
typedef struct pt_soap_port {
    const char *service;
    const char *name;
    const char *address;
    int soap_version;
    const char *binding; /**< the binding's local name */
    const pt_soap_op_t *ops;
    size_t op_cnt;
} pt_soap_port_t;

/** Number of SOAP ports over all services (non-SOAP ports are skipped). */
size_t pt_wsdl_port_count(const pt_wsdl_t *w);

/** Port i (0 <= i < count), in document order; NULL when out of range. */
const pt_soap_port_t *pt_wsdl_port(const pt_wsdl_t *w, size_t i);

/**
 * Picks one port: by service and/or port name (NULL = any). Returns the port
 * when exactly one matches; otherwise NULL with `msg` (n bytes) telling why
 * ("no port \"X\"; ports: A, B" / "2 ports match (A, B): give service/port").
 */
const pt_soap_port_t *pt_wsdl_find_port(const pt_wsdl_t *w, const char *service, const char *port,
                                        char *msg, size_t n);

/** The operation called `name[0..len)` of `p`, or NULL. */
const pt_soap_op_t *pt_soap_port_op(const pt_soap_port_t *p, const char *name, size_t len);

/**
 * Tells whether the dotted input field path `path[0..len)` ("id",
 * "address.city", "@lang") names a simple-typed input element or attribute
 * that a path/query variable can bind to: 1 yes, 0 no such field or not
 * bindable (complex). For config checks of REST mappings.
 */
int pt_soap_op_field_bindable(const pt_soap_op_t *op, const char *path, size_t len);

/**
 * The Content-Type of a request for `op`, written to out (n bytes, always
 * NUL-terminated when n > 0): "text/xml; charset=utf-8" for SOAP 1.1 (send
 * the SOAPAction header separately, see pt_soap_action_header) and
 * "application/soap+xml; charset=utf-8; action=\"...\"" for SOAP 1.2 (no
 * action parameter when soap_action is ""). Returns the full length.
 */
size_t pt_soap_content_type(const pt_soap_op_t *op, char *out, size_t n);

/**
 * The SOAPAction header value for SOAP 1.1: the action in double quotes
 * ("\"urn:x\"", or "\"\"" when none). Returns the full length; for SOAP 1.2
 * writes "" and returns 0 (the action is in the Content-Type).
 */
size_t pt_soap_action_header(const pt_soap_op_t *op, char *out, size_t n);

/* ======================= JSON -> request envelope ======================= */

/**
 * One text binding (a path or query variable) to an input field: `path` as
 * for pt_soap_op_field_bindable(), `value` the decoded text, converted by the
 * field's XSD type exactly as on the envelope ("12", "true", "RED"). Slices
 * need not be NUL-terminated. A binding overrides the same field in the body
 * (a repeated field gets the value appended).
 */
typedef struct pt_soap_binding {
    const char *path;
    size_t path_len;
    const char *value;
    size_t value_len;
} pt_soap_binding_t;

/** Request options; all-zero means defaults. */
typedef struct pt_soap_req_opts {
    const char *wsse_user;     /**< with wsse_password: add a WS-Security UsernameToken header */
    const char *wsse_password; /**< (PasswordText) -- NULL = no Security header */
    unsigned max_depth;        /**< JSON nesting; 0 = 64 */
    size_t max_size;           /**< JSON input and envelope output bytes; 0 = none */
} pt_soap_req_opts_t;

/**
 * Builds the request envelope for `op` from the JSON body `json[0..len)`
 * (json NULL or len 0 = no body, i.e. {}) plus `n` bindings, appended to
 * `out` as UTF-8 XML (with an XML declaration). Element order follows the
 * schema whatever the JSON key order. Every mapping problem is appended to
 * `errs` with its JSON path (unknown key, wrong JSON type, value outside the
 * XSD type or its facets, missing required element, null on a required
 * non-nillable element, more than one choice branch); syntax errors and
 * limits stop at once. `errs` may be NULL. Returns 0, PT_XERR_INVALID,
 * PT_XERR_LIMIT or PT_XERR_NOMEM; on error out->len is restored.
 */
int pt_soap_build_request(const pt_soap_op_t *op, const char *json, size_t len,
                          const pt_soap_binding_t *b, size_t n, const pt_soap_req_opts_t *opts,
                          pt_xbuf_t *out, pt_xerrs_t *errs);

/* ======================= response envelope -> JSON ======================= */

/** What came back. */
typedef enum pt_soap_outcome {
    PT_SOAP_OUTPUT = 0, /**< the declared output: JSON object of its content */
    PT_SOAP_FAULT = 1,  /**< a SOAP fault: JSON {"error":{...}} */
    PT_SOAP_BAD = 2,    /**< not a usable answer: see `bad` and `msg`; no JSON written */
} pt_soap_outcome_t;

/** Why an answer was bad (PT_SOAP_BAD); each a 502 for the client. */
typedef enum pt_soap_bad {
    PT_SOAP_BAD_NONE = 0,
    PT_SOAP_BAD_NOT_XML,      /**< not well-formed XML, bad UTF-8, or empty */
    PT_SOAP_BAD_TOO_LARGE,    /**< over max_size, max_depth or max_attrs */
    PT_SOAP_BAD_DOCTYPE,      /**< a DOCTYPE (DTDs are forbidden in SOAP) */
    PT_SOAP_BAD_NOT_SOAP,     /**< root is not a soap:Envelope with a Body */
    PT_SOAP_BAD_VERSION,      /**< an Envelope of the other SOAP version */
    PT_SOAP_BAD_NOT_DECLARED, /**< Body content is not the declared output (or a value mismatches its type) */
} pt_soap_bad_t;

/** Fault classes (from faultcode / Code/Value, prefix stripped). */
typedef enum pt_soap_fault_class {
    PT_SOAP_FAULT_CLIENT = 0,      /**< Client / Sender (and Client.x): a 4xx */
    PT_SOAP_FAULT_SERVER,          /**< Server / Receiver: a 5xx */
    PT_SOAP_FAULT_VERSION,         /**< VersionMismatch: a 5xx (our envelope was refused) */
    PT_SOAP_FAULT_MUST_UNDERSTAND, /**< MustUnderstand: a 5xx */
    PT_SOAP_FAULT_OTHER,           /**< DataEncodingUnknown or anything else: a 5xx */
} pt_soap_fault_class_t;

/**
 * The outcome of a response. `http_status` is the suggested status for the
 * client: 200 (OUTPUT), 400 (Client/Sender fault), 500 (other faults), 502
 * (BAD). `msg` is our own text, never libxml2's: for BAD what was wrong
 * ("upstream answer is not XML: line 3 col 7: mismatched end tag"), for a
 * fault the fault string.
 */
typedef struct pt_soap_result {
    pt_soap_outcome_t outcome;
    int http_status;
    pt_soap_bad_t bad;
    pt_soap_fault_class_t fault_class;
    char fault_code[128]; /**< local part of the fault code, e.g. "Client", "Sender", "Server.Db" */
    char msg[512];
} pt_soap_result_t;

/** Response options; all-zero means the defaults given per field. */
typedef struct pt_soap_resp_opts {
    size_t max_size;   /**< total bytes fed; 0 = 8 MiB. More -> BAD_TOO_LARGE at the feed that crosses it */
    unsigned max_depth; /**< element nesting; 0 = 64 */
    unsigned max_attrs; /**< attributes per element; 0 = 64 */
} pt_soap_resp_opts_t;

typedef struct pt_soap_resp pt_soap_resp_t;

/**
 * Starts parsing a response to `op` (which must outlive the parser). `a`
 * NULL = default allocator, `opts` NULL = defaults. Returns NULL only on
 * allocation failure.
 */
pt_soap_resp_t *pt_soap_resp_new(const pt_soap_op_t *op, const pt_allocator_t *a,
                                 const pt_soap_resp_opts_t *opts);

/**
 * Feeds the next chunk of the response body (any split, copied as needed).
 * Returns 0 to ask for more, or PT_XERR_INVALID / PT_XERR_LIMIT once the
 * answer is known to be bad (stop reading: pt_soap_resp_finish() then gives
 * PT_SOAP_BAD with the reason; further feeds are ignored and return the same
 * code). The common answer is converted while it is parsed, with no tree;
 * a copy of the bytes read so far (bounded by max_size) is kept for the rare
 * answers (faults, mismatches, elements out of schema order) that are then
 * parsed again into a tree at pt_soap_resp_finish().
 */
int pt_soap_resp_feed(pt_soap_resp_t *r, const void *chunk, size_t len);

/**
 * A hint before the first feed: the answer is about `n` bytes (its
 * Content-Length). Room for that much input, and for as much JSON, is made
 * at once (at most max_size) instead of growing as the bytes come. Only a
 * hint: the answer may be shorter or longer; a failed allocation is left for
 * the feeds to meet.
 */
void pt_soap_resp_expect(pt_soap_resp_t *r, size_t n);

/**
 * Ends the input and converts: fills `res` and, for OUTPUT and FAULT,
 * appends the JSON to `out`. Returns 0 when `res` is filled (whatever the
 * outcome), PT_XERR_NOMEM or PT_XERR_LIMIT (out->limit) otherwise; on a
 * non-zero return out->len is restored. Call once. When `out` is empty and
 * uses the parser's allocator, the JSON's storage is handed over, not copied.
 */
int pt_soap_resp_finish(pt_soap_resp_t *r, pt_soap_result_t *res, pt_xbuf_t *out);

/** Frees the parser. NULL is accepted. */
void pt_soap_resp_free(pt_soap_resp_t *r);

/** One-shot form: new + one feed + finish + free. Returns as pt_soap_resp_finish(). */
int pt_soap_parse_response(const pt_soap_op_t *op, const char *xml, size_t len,
                           const pt_soap_resp_opts_t *opts, pt_soap_result_t *res, pt_xbuf_t *out);

#endif /* PT_TRANSCODER_SOAP_H */
