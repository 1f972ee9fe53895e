/*
 * filter.c -- filter registry: the built-in table and the .so loader.
 */
#include "core/filter_registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "portico/status.h"

const pt_filter_def_t *pt_filter_builtin_find(const char *name, size_t len)
{
    for (size_t i = 0; pt_builtin_filters[i] != NULL; i++) {
        const char *n = pt_builtin_filters[i]->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return pt_builtin_filters[i];
    }
    return NULL;
}

const char *pt_filter_def_check(const pt_filter_def_t *def)
{
    if (def->abi != PT_FILTER_ABI)
        return "ABI version mismatch (rebuild the plugin against this Portico's SDK)";
    if (def->name == NULL || def->name[0] == '\0')
        return "the filter has no name";
    size_t n = strnlen(def->name, 65);
    if (n > 64)
        return "the filter name is longer than 64 bytes";
    for (size_t i = 0; i < n; i++) {
        char c = def->name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return "the filter name may only contain a-z, 0-9, '_' and '-'";
    }
    if (def->conf_size != 0 && def->fields == NULL && def->parse_conf == NULL)
        return "the filter has a config size but neither fields nor parse_conf";
    if (def->conf_size > (1u << 20) || def->ctx_size > (1u << 20))
        return "the filter's conf_size or ctx_size is unreasonably large";
    return NULL;
}

int pt_filter_plugin_load(const char *path, const pt_filter_def_t **out, char *err, size_t errlen)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load plugin: %s", why != NULL ? why : "unknown error");
        return PT_ERR_INVALID;
    }
    dlerror();
    const pt_filter_def_t *def = dlsym(h, "pt_filter_def");
    if (def == NULL) {
        snprintf(err, errlen, "plugin %s does not export the symbol 'pt_filter_def'", path);
        dlclose(h);
        return PT_ERR_INVALID;
    }
    const char *why = pt_filter_def_check(def);
    if (why != NULL) {
        snprintf(err, errlen, "plugin %s: %s", path, why);
        dlclose(h);
        return PT_ERR_INVALID;
    }
    /* Deliberately never dlclose()d: see filter_registry.h. */
    *out = def;
    return 0;
}
