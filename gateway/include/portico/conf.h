/*
 * conf.h -- configuration nodes, field tables and error reporting.
 *
 * The config file (YAML, hence also JSON) is parsed by libyaml into a tree of
 * pt_conf_node_t that remembers where each node came from. Modules (the core,
 * filters, handlers) read their part of the tree either through a declarative
 * field table (pt_conf_parse_fields) or by hand with the getters below. Every
 * problem goes through pt_conf_error(), which prints `FILE:LINE:COL: message`
 * and marks the load as failed; parsing continues so that one run reports
 * every problem, then the whole snapshot is refused.
 *
 * All functions run on the main thread at load time, never on a worker.
 * Memory handed out by pt_conf_alloc() lives exactly as long as the config
 * snapshot being built.
 */
#ifndef PT_PORTICO_CONF_H
#define PT_PORTICO_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pt_conf_kind {
    PT_CONF_NULL = 0,  /* `~`, `null` or an empty value */
    PT_CONF_SCALAR,
    PT_CONF_MAP,
    PT_CONF_SEQ,
} pt_conf_kind_t;

typedef struct pt_conf_node pt_conf_node_t;
struct pt_conf_node {
    pt_conf_kind_t kind;
    const char *file;        /* the file this node was read from */
    unsigned line, col;      /* 1-based position of the node's first character */
    const char *str;         /* scalar text, NUL-terminated (NULL for non-scalars) */
    size_t len;              /* scalar length */
    bool quoted;             /* the scalar was quoted in the source (a string for sure) */
    size_t cnt;              /* map: number of pairs; seq: number of items */
    pt_conf_node_t **keys;   /* map keys (scalar nodes), cnt of them */
    pt_conf_node_t **items;  /* map values or sequence items, cnt of them */
};

/** The load context: error sink, snapshot memory, base directory for relative paths. */
typedef struct pt_conf_cx pt_conf_cx_t;

/**
 * Reports a problem at `node` (or at the file start when NULL) as
 * `FILE:LINE:COL: message` on the context's error stream and marks the load as
 * failed. Always returns PT_ERR_INVALID so callers can `return pt_conf_error(...)`.
 */
int pt_conf_error(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Number of errors reported so far in this load. */
unsigned pt_conf_error_count(const pt_conf_cx_t *cx);

/** Zeroed memory that lives as long as the snapshot being built. Never NULL (aborts on OOM). */
void *pt_conf_alloc(pt_conf_cx_t *cx, size_t size);

/** A NUL-terminated copy of `s` (len bytes) in snapshot memory. */
char *pt_conf_strdup(pt_conf_cx_t *cx, const char *s, size_t len);

/**
 * Resolves `path` (a scalar from the file) against the directory of the file
 * that contains `node`, unless it is absolute. Result is snapshot memory.
 */
const char *pt_conf_resolve_path(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *path);

/**
 * Registers `cb(data)` to run when the snapshot being built is released
 * (the last reference dropped) or the load fails. For resources a module
 * creates at load time (compiled regexes, descriptor pools, SSL_CTX).
 */
void pt_conf_on_release(pt_conf_cx_t *cx, void (*cb)(void *data), void *data);

/** The value for `key` in a map node, or NULL (also NULL when `map` is not a map). */
const pt_conf_node_t *pt_conf_map_get(const pt_conf_node_t *map, const char *key);

/* Typed getters: each checks the node, reports a precise error and returns
 * PT_ERR_INVALID on mismatch, else 0. `what` names the key in messages. */
int pt_conf_get_str(pt_conf_cx_t *cx, const pt_conf_node_t *n, const char **out);
int pt_conf_get_bool(pt_conf_cx_t *cx, const pt_conf_node_t *n, bool *out);
int pt_conf_get_int(pt_conf_cx_t *cx, const pt_conf_node_t *n, long long min, long long max,
                    long long *out);
/** Durations: `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds; stored in milliseconds. */
int pt_conf_get_duration_ms(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint64_t *out_ms);
/** Sizes: `512`, `64k`/`64KiB`, `1m`/`1MiB`, `1g`; stored in bytes. */
int pt_conf_get_size(pt_conf_cx_t *cx, const pt_conf_node_t *n, uint64_t *out);

/* ---- declarative field tables ------------------------------------------ */

typedef enum pt_conf_type {
    PT_CONF_T_STR,      /* const char *            */
    PT_CONF_T_PATH,     /* const char *, resolved against the file's directory */
    PT_CONF_T_BOOL,     /* bool                    */
    PT_CONF_T_INT,      /* long long, in [min, max] */
    PT_CONF_T_UINT32,   /* uint32_t, in [min, max]  */
    PT_CONF_T_DURATION, /* uint64_t milliseconds, in [min, max] ms (max 0 = no max) */
    PT_CONF_T_SIZE,     /* uint64_t bytes, in [min, max] (max 0 = no max) */
    PT_CONF_T_STRLIST,  /* pt_conf_strlist_t: a sequence of scalars (a single scalar is a list of one) */
    PT_CONF_T_STRMAP,   /* pt_conf_strmap_t: a map of scalar to scalar, order kept */
    PT_CONF_T_NODE,     /* const pt_conf_node_t *: kept raw for the module to read */
    PT_CONF_T_CUSTOM,   /* parse(cx, node, dst + offset) does the work */
} pt_conf_type_t;

typedef struct pt_conf_strlist {
    const char **v;
    size_t cnt;
} pt_conf_strlist_t;

typedef struct pt_conf_kv {
    const char *key, *value;
} pt_conf_kv_t;

typedef struct pt_conf_strmap {
    pt_conf_kv_t *v;
    size_t cnt;
} pt_conf_strmap_t;

typedef struct pt_conf_field {
    const char *key;
    pt_conf_type_t type;
    size_t offset;             /* offsetof(your_conf_t, member) */
    long long min, max;        /* for INT/UINT32/DURATION/SIZE */
    bool required;
    int (*parse)(pt_conf_cx_t *cx, const pt_conf_node_t *node, void *dst); /* PT_CONF_T_CUSTOM */
} pt_conf_field_t;

/** Terminates a field table. */
#define PT_CONF_FIELDS_END {NULL, 0, 0, 0, 0, false, NULL}

/**
 * Fills `dst` from map node `map` following `fields` (terminated by
 * PT_CONF_FIELDS_END). Unknown keys, duplicate keys, missing required keys,
 * wrong types and out-of-range values are each reported with their position.
 * Keys not present leave `dst` untouched (set defaults before calling).
 * Returns 0 when no error was reported, else PT_ERR_INVALID.
 */
int pt_conf_parse_fields(pt_conf_cx_t *cx, const pt_conf_node_t *map,
                         const pt_conf_field_t *fields, void *dst);

#endif /* PT_PORTICO_CONF_H */
