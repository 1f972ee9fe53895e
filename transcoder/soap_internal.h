/*
 * soap_internal.h -- the WSDL/XSD model behind soap.h (internal).
 *
 * Everything lives in the model's pool and is immutable after pt_wsdl_load().
 * Complex types keep their particle tree (for building requests in schema
 * order and checking choices and required elements) and a flattened field
 * list (for reading responses: child element -> field, then the JSON object
 * written in field order).
 */
#ifndef PT_TRANSCODER_SOAP_INTERNAL_H
#define PT_TRANSCODER_SOAP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <libxml/xmlregexp.h>

#include "portico/transcoder/soap.h"
#include "xml_internal.h"

#define PT_XS_NS "http://www.w3.org/2001/XMLSchema"
#define PT_XSI_NS "http://www.w3.org/2001/XMLSchema-instance"
#define PT_SOAP11_ENV "http://schemas.xmlsoap.org/soap/envelope/"
#define PT_SOAP12_ENV "http://www.w3.org/2003/05/soap-envelope"
#define PT_UNBOUNDED UINT32_MAX

/** Built-in simple types, grouped by how they map to JSON. */
typedef enum pt_xprim {
    PT_XSP_STRING = 0, /* string and its derived types, anyURI, QName, NOTATION */
    PT_XSP_BOOLEAN,
    PT_XSP_DECIMAL,
    PT_XSP_FLOAT,
    PT_XSP_DOUBLE,
    PT_XSP_INTEGER, /* integer family, bounds in imin/imax (has_min/has_max) */
    PT_XSP_DATETIME,
    PT_XSP_DATE,
    PT_XSP_TIME,
    PT_XSP_DURATION,
    PT_XSP_GREG, /* gYear, gYearMonth, gMonth, gMonthDay, gDay: strings, checked by regex */
    PT_XSP_BASE64,
    PT_XSP_HEX,
    PT_XSP_ANYSIMPLE,
} pt_xprim_t;

typedef struct pt_xst {
    const char *name; /* for messages: "xs:int", "tns:Color" or "(anonymous)" */
    pt_xprim_t prim;
    uint8_t sub;    /* PT_XSP_GREG: 0 gYear, 1 gYearMonth, 2 gMonth, 3 gMonthDay, 4 gDay */
    bool int_small; /* int/short/byte/unsigned{Int,Short,Byte}: always a JSON number */
    bool has_imin, has_imax;
    __int128 imin, imax;
    /* facets (accumulated over the derivation chain) */
    const char **enums;
    size_t enum_cnt;
    bool has_len, has_minlen, has_maxlen;
    size_t len, minlen, maxlen;
    xmlRegexpPtr *patterns;
    size_t pattern_cnt;
    bool has_min, has_max, min_excl, max_excl;
    double min, max;
    int total_digits, fraction_digits; /* -1 = none */
    size_t *enum_lens; /* strlen of each of enums, set with them */
    bool facets;       /* a facet other than enumerations (beyond the built-in's own
                          bounds): the answer path's shortcuts (pt__xst_json) stand aside */
} pt_xst_t;

typedef struct pt_xct pt_xct_t;
typedef struct pt_xelem pt_xelem_t;

struct pt_xelem {
    const char *name;
    const char *ns; /* "" when unqualified */
    const pt_xst_t *st; /* exactly one of st / ct (both NULL: anyType -> generic) */
    const pt_xct_t *ct;
    bool nillable;
};

typedef enum { PT_PART_ELEM, PT_PART_SEQ, PT_PART_CHOICE, PT_PART_ALL } pt_partkind_t;

typedef struct pt_xpart pt_xpart_t;
struct pt_xpart {
    pt_partkind_t kind;
    uint32_t min, max;
    pt_xelem_t *elem; /* PT_PART_ELEM */
    pt_xpart_t *kids; /* groups: first child; kids linked by next */
    pt_xpart_t *next;
};

typedef struct pt_xattr {
    const char *name;
    const char *ns;
    const pt_xst_t *st;
    bool required;
    uint32_t nlen, nslen; /* strlen of name and ns */
    const char *key;      /* the JSON member's start, ready made: ,"@name": */
    uint32_t klen;
} pt_xattr_t;

/**
 * One flattened child element: its decl, whether it is an array in JSON,
 * and what the answer path needs without looking at strings again: the
 * lengths of its name and namespace and its JSON key ready made
 * (,"name": -- quoted and escaped at load time).
 */
typedef struct pt_xfield {
    const pt_xelem_t *elem;
    bool repeated;
    uint32_t nlen, nslen;
    const char *key;
    uint32_t klen;
    const char *name, *ns; /* elem->name, elem->ns */
} pt_xfield_t;

struct pt_xct {
    const char *name;
    pt_xpart_t *part; /* NULL: empty content */
    pt_xattr_t *attrs;
    size_t attr_cnt;
    const pt_xst_t *simple; /* simpleContent: the text's type */
    pt_xfield_t *fields;
    size_t field_cnt;
    uint8_t state; /* 0 new, 1 building, 2 done */
};

typedef struct pt_xfault {
    const char *name;
    const pt_xelem_t *elem; /* the fault message's element, NULL when typed by type= */
} pt_xfault_t;

typedef struct pt_opimpl {
    const pt_xelem_t *in;  /* body child of the request (rpc: synthesized wrapper) */
    const pt_xelem_t *out; /* NULL for one-way */
    const pt_xfault_t *faults;
    size_t fault_cnt;
    const struct pt_wsdl *w;
} pt_opimpl_t;

struct pt_wsdl {
    pt__xpool_t pool;
    pt_soap_port_t *ports;
    size_t port_cnt;
    /* compiled regexps to free */
    xmlRegexpPtr *regs;
    size_t reg_cnt, reg_cap;
};

/* ---- shared between soap_req.c and soap_resp.c (soap_types.c) ---- */

/**
 * Checks the text form s[0..n) against `st` (lexical form + facets). Returns
 * NULL when valid, else a static message ("not an integer", "not one of the
 * enumeration", ...).
 */
const char *pt__xst_check(const struct pt_wsdl *w, const pt_xst_t *st, const char *s, size_t n);

/**
 * The lexical check of the date/time built-ins (dateTime, date, time,
 * duration; `sub` picks the gYear.. kind for PT_XSP_GREG); true for others.
 */
bool pt__xsd_lex_ok(pt_xprim_t prim, unsigned sub, const char *s, size_t n);

/**
 * Writes the JSON form of the valid text s[0..n) of type `st` (number, bool
 * or string, per the mapping table). Returns as pt_xbuf_grow().
 */
int pt__xst_to_json(const pt_xst_t *st, const char *s, size_t n, pt_xbuf_t *out);

/**
 * pt__xst_check() and pt__xst_to_json() in one pass where the type allows a
 * shortcut (the answer path: built-in lexical forms without facets, string
 * enumerations), else the two in turn: the same verdicts and the same JSON.
 * Returns 0, PT_XERR_INVALID when s[0..n) is not a valid `st` (what was
 * written to `out` is then unspecified), or as pt_xbuf_grow().
 */
int pt__xst_json(const struct pt_wsdl *w, const pt_xst_t *st, const char *s, size_t n,
                 pt_xbuf_t *out);

/** Finds the field of `ct` for a child element (ns, local); NULL when none. */
const pt_xfield_t *pt__xct_field(const pt_xct_t *ct, const char *ns, const char *local);

/**
 * Test hook: converts this answer the slow way (a tree at the end) whatever
 * it holds, so tests and the fuzz target can hold the streaming conversion
 * to the tree walk's result. Call before the first feed.
 */
void pt__soap_resp_force_tree(pt_soap_resp_t *r);

#endif /* PT_TRANSCODER_SOAP_INTERNAL_H */
