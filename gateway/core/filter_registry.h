/*
 * filter_registry.h -- where filter definitions come from.
 *
 * Two sources, both explicit (no constructors, no link-order tricks):
 *  - the built-in table `pt_builtin_filters` (plugins/builtin.c), compiled in;
 *  - shared objects named in the config (`plugins: [ { path: x.so } ]`), each
 *    exporting one `const pt_filter_def_t pt_filter_def` whose `abi` must equal
 *    PT_FILTER_ABI.
 * A plugin stays loaded for the life of the process (a later reload that
 * names the same file gets the same handle from the dynamic loader): a
 * worker may still run code of an old snapshot's filter while it drains.
 * Load time, main thread only.
 */
#ifndef PT_GATEWAY_FILTER_REGISTRY_H
#define PT_GATEWAY_FILTER_REGISTRY_H

#include <stddef.h>
#include "portico/filter.h"

/** The built-in filters, NULL-terminated (plugins/builtin.c). */
extern const pt_filter_def_t *const pt_builtin_filters[];

/** The built-in filter named `name` (`len` bytes), or NULL. */
const pt_filter_def_t *pt_filter_builtin_find(const char *name, size_t len);

/**
 * Checks that `def` is usable: ABI matches PT_FILTER_ABI, the name is a
 * non-empty identifier ([a-z0-9_-], at most 64 bytes), and a config parser
 * exists when conf_size is not 0. Returns NULL when fine, else a static
 * message.
 */
const char *pt_filter_def_check(const pt_filter_def_t *def);

/**
 * dlopen()s `path` (RTLD_NOW | RTLD_LOCAL), looks up the data symbol
 * `pt_filter_def` and checks it with pt_filter_def_check(). On success sets
 * *out and returns 0; otherwise returns PT_ERR_INVALID with a one-line
 * reason in `err` (`errlen` bytes) and leaves *out untouched.
 */
int pt_filter_plugin_load(const char *path, const pt_filter_def_t **out, char *err, size_t errlen);

#endif /* PT_GATEWAY_FILTER_REGISTRY_H */
