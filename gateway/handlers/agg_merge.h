/*
 * agg_merge.h -- shaping the results of an aggregate's calls (private).
 *
 * Per call, in this order, on the call's JSON result:
 *
 *   select: [id, name, address.city, orders[].id]   keep only these fields
 *   omit:   [internal, address.geo]                 then drop these
 *   rename: { fullName: name }                      then move `name` to `fullName`
 *
 * A field path is names separated by `.`; `[]` after a name collects the
 * rest of the path from each element of that array (`orders[].id` turns
 * `{"orders":[{"id":1},{"id":2}]}` into `{"orders":[1,2]}`); a path that
 * starts with `[]` applies to a result that is itself an array. Elements
 * without the field are skipped; a selected field that is missing is left
 * out (no error). `merge: { flatten: [a, b] }` (aggregate.c) then puts the
 * top-level fields of a and b in the response instead of `"a": {...}`.
 *
 * json-c objects, single thread; nothing global.
 */
#ifndef PT_GATEWAY_HANDLERS_AGG_MERGE_H
#define PT_GATEWAY_HANDLERS_AGG_MERGE_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

#define PT_AGG_FPATH_MAX 32 /**< steps in one field path */

/** A field path: each step a name, or NULL for `[]` (each element). */
typedef struct pt_agg_fpath {
    char **steps;
    size_t cnt;
    char *text; /**< as written */
} pt_agg_fpath_t;

/**
 * Parses `s` ("a.b", "orders[].id", "[].name") into `out`. Returns 0, or -1
 * with a static message in *why (nothing to free then).
 */
int pt_agg_fpath_parse(const char *s, pt_agg_fpath_t *out, const char **why);
void pt_agg_fpath_dispose(pt_agg_fpath_t *p);

/** The shaping of one call's result. */
typedef struct pt_agg_shape {
    pt_agg_fpath_t *select;
    size_t select_cnt;
    pt_agg_fpath_t *omit;
    size_t omit_cnt;
    char **rename_to;            /**< new top-level names ... */
    pt_agg_fpath_t *rename_from; /**< ... and the paths they take their value from */
    size_t rename_cnt;
} pt_agg_shape_t;

/** True when `s` changes nothing (no select, omit or rename). */
bool pt_agg_shape_empty(const pt_agg_shape_t *s);

/**
 * Applies `s` to `result` (borrowed; omit and rename may change it in place)
 * and returns the shaped value as a new reference (`result` itself, with a
 * new reference, when nothing is selected). NULL result (JSON null) gives
 * JSON null.
 */
struct json_object *pt_agg_shape_apply(const pt_agg_shape_t *s, struct json_object *result);

void pt_agg_shape_dispose(pt_agg_shape_t *s);

#endif /* PT_GATEWAY_HANDLERS_AGG_MERGE_H */
