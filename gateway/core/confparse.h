/*
 * confparse.h -- the config loader's private side of conf.h.
 *
 * confparse.c turns YAML (hence JSON) text into a tree of pt_conf_node_t
 * with 1-based file/line/column marks, and implements the whole conf.h API
 * (errors, getters, field tables). config.c drives it: it sets up a
 * pt_conf_cx_t, parses the file, builds the snapshot from the tree and, on
 * success, takes the context's arena as the snapshot's memory.
 *
 * Hostile input is bounded: the file size, the nesting depth and the number
 * of nodes are capped, and YAML anchors/aliases are refused outright (so no
 * "billion laughs" expansion can happen). Main thread only.
 */
#ifndef PT_GATEWAY_CONFPARSE_H
#define PT_GATEWAY_CONFPARSE_H

#include <stdio.h>
#include "portico/arena.h"
#include "portico/conf.h"

/** Largest config file accepted (bytes). */
#define PT_CONF_MAX_FILE (4u << 20)
/** Deepest nesting of maps/sequences accepted. */
#define PT_CONF_MAX_DEPTH 64
/** Most nodes (scalars, maps, sequences) in one file. */
#define PT_CONF_MAX_NODES 200000

struct pt_conf_cx {
    FILE *errs; /* where pt_conf_error() prints (NULL: count only) */
    unsigned err_cnt;
    const char *file;  /* name of the file being loaded (in the arena) */
    const char *dir;   /* its directory, for relative paths (in the arena) */
    pt_arena_t *arena; /* snapshot memory; cleanups are the release hooks */
    size_t node_cnt;   /* nodes built so far (PT_CONF_MAX_NODES) */
    void *user;        /* for the loader (config.c): the snapshot being built */
};

/**
 * Initialises `cx` for a load of `file` (a path or a name used in messages),
 * reporting to `errs`. Creates the snapshot arena. Never fails (aborts on OOM).
 */
void pt__conf_cx_init(pt_conf_cx_t *cx, const char *file, FILE *errs);

/**
 * Releases what `cx` still owns: the arena (running release hooks) unless
 * pt__conf_cx_take_arena() took it. `cx` itself is caller storage.
 */
void pt__conf_cx_dispose(pt_conf_cx_t *cx);

/** Hands the arena (and its release hooks) to the caller; `cx` no longer owns it. */
pt_arena_t *pt__conf_cx_take_arena(pt_conf_cx_t *cx);

/**
 * Parses `len` bytes of YAML into a node tree in the arena. Returns the root
 * node (an empty document gives a PT_CONF_NULL node), or NULL when a problem
 * was reported (syntax error, alias/anchor, too deep, too big, duplicate key
 * -- duplicate keys are reported but do not stop the parse).
 * Check pt_conf_error_count() in any case.
 */
const pt_conf_node_t *pt__conf_parse(pt_conf_cx_t *cx, const char *text, size_t len);

/** Reads `cx->file` (at most PT_CONF_MAX_FILE bytes) and parses it. NULL on error. */
const pt_conf_node_t *pt__conf_parse_file(pt_conf_cx_t *cx);

/**
 * Reports `unknown WHAT 'K'` at `key` (`what` is e.g. "key" or "filter"),
 * with a "did you mean" hint when one of the NULL-terminated `candidates` is
 * within two edits. Returns PT_ERR_INVALID.
 */
int pt__conf_unknown_key(pt_conf_cx_t *cx, const pt_conf_node_t *key, const char *what,
                         const char *const *candidates);

/**
 * Prints `FILE:LINE:COL: warning: message` for `node` to cx->errs. A warning
 * is not an error: it does not count in pt_conf_error_count() and the load
 * goes on (for risky but legal settings, e.g. an unauthenticated admin
 * listener on a public address).
 */
void pt__conf_warn(pt_conf_cx_t *cx, const pt_conf_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** True when `n` is a plain (unquoted) scalar equal to `lit`. */
bool pt__conf_is_plain(const pt_conf_node_t *n, const char *lit);

#endif /* PT_GATEWAY_CONFPARSE_H */
