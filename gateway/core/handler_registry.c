/*
 * handler_registry.c -- the table of route handlers (`proxy:`, ...).
 *
 * An explicit list, like plugins/builtin.c for filters: adding a handler is
 * writing gateway/handlers/<name>.c defining `const pt_handler_def_t
 * pt_handler_<name>` and listing it here. Handlers not yet written are not
 * listed (a route naming them is an "unknown key" error).
 */
#include "core/handler.h"

#include <string.h>

extern const struct pt_handler_def pt_handler_proxy;
extern const struct pt_handler_def pt_handler_grpc;
extern const struct pt_handler_def pt_handler_respond;
extern const struct pt_handler_def pt_handler_soap;
extern const struct pt_handler_def pt_handler_aggregate;

static const struct pt_handler_def *const handlers[] = {
    &pt_handler_proxy,
    &pt_handler_grpc,
    &pt_handler_respond,
    &pt_handler_soap,
    &pt_handler_aggregate,
    NULL,
};

const struct pt_handler_def *pt_handler_find(const char *name, size_t len)
{
    for (size_t i = 0; handlers[i] != NULL; i++)
        if (strlen(handlers[i]->name) == len && memcmp(handlers[i]->name, name, len) == 0)
            return handlers[i];
    return NULL;
}
