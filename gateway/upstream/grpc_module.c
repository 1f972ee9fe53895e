/*
 * grpc_module.c -- the core side of the gRPC module (see grpc.h): finds and
 * loads portico_grpc.so on demand, forwards the process/worker teardown to it
 * when it was loaded, and the status helpers that need no gRPC core.
 */
#include "grpc.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "portico/status.h"

/* ---- loading ------------------------------------------------------------------ */

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(const pt_grpc_module_t *) loaded;

/* The candidate paths, in order; returns how many were written to `out`. */
static size_t module_paths(char out[][PATH_MAX], size_t max)
{
    size_t n = 0;
    const char *env = getenv("PORTICO_GRPC_MODULE");
    if (env != NULL && env[0] != '\0') {
        snprintf(out[n++], PATH_MAX, "%s", env);
        return n;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return 0;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    static const char *const rel[] = {"../lib/portico/portico_grpc.so", "../lib/portico_grpc.so"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]) && n < max; i++) {
        int w = snprintf(out[n], PATH_MAX, "%s/%s", exe, rel[i]);
        if (w > 0 && w < PATH_MAX)
            n++;
    }
    return n;
}

static const pt_grpc_module_t *open_module(const char *path, char *err, size_t errlen)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        snprintf(err, errlen, "%s", e != NULL ? e : path);
        return NULL;
    }
    const pt_grpc_module_t *m = dlsym(h, PT_GRPC_MODULE_SYMBOL);
    if (m == NULL) {
        const char *e = dlerror();
        snprintf(err, errlen, "%s", e != NULL ? e : "no " PT_GRPC_MODULE_SYMBOL " symbol");
        dlclose(h);
        return NULL;
    }
    if (m->abi != PT_GRPC_MODULE_ABI || m->size != sizeof(*m) || m->version == NULL ||
        strcmp(m->version, PORTICO_VERSION) != 0) {
        snprintf(err, errlen, "%s: built for another Portico (ABI %u, version %s; want ABI %u, %s)",
                 path, (unsigned)m->abi, m->version != NULL ? m->version : "?",
                 (unsigned)PT_GRPC_MODULE_ABI, PORTICO_VERSION);
        dlclose(h);
        return NULL;
    }
    static const pt_grpc_host_t host = {.worker_post = pt_worker_post};
    if (m->init(&host) != 0) {
        snprintf(err, errlen, "%s: initialisation failed", path);
        dlclose(h);
        return NULL;
    }
    return m; /* never dlclose'd: gRPC's threads and atexit handlers live in it */
}

const pt_grpc_module_t *pt_grpc_module_load(char *err, size_t errlen)
{
    const pt_grpc_module_t *m = atomic_load(&loaded);
    if (m != NULL)
        return m;
    pthread_mutex_lock(&load_lock);
    m = atomic_load(&loaded);
    if (m == NULL) {
        char paths[3][PATH_MAX];
        size_t n = module_paths(paths, 3);
        if (n == 0)
            snprintf(err, errlen, "cannot find the executable's directory (/proc/self/exe)");
        /* The first path that exists (else the first one) decides: its error is the useful one. */
        size_t pick = 0;
        for (size_t i = 0; i < n; i++)
            if (access(paths[i], F_OK) == 0) {
                pick = i;
                break;
            }
        if (n != 0 && (m = open_module(paths[pick], err, errlen)) != NULL)
            atomic_store(&loaded, m);
    }
    pthread_mutex_unlock(&load_lock);
    return m;
}

const pt_grpc_module_t *pt_grpc_module_get(void)
{
    return atomic_load(&loaded);
}

void pt__upgrpc_worker_dispose(pt_worker_t *w)
{
    const pt_grpc_module_t *m = atomic_load(&loaded);
    if (m != NULL)
        m->worker_dispose(w);
}

void pt_grpc_global_shutdown(void)
{
    const pt_grpc_module_t *m = atomic_load(&loaded);
    if (m != NULL)
        m->global_shutdown();
}

/* ---- status helpers ----------------------------------------------------------- */

const char *pt_grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

int pt_grpc_code_http(int code)
{
    switch (code) {
    case PT_GRPC_OK:
        return 200;
    case PT_GRPC_CANCELLED:
        return 499;
    case PT_GRPC_INVALID_ARGUMENT:
    case PT_GRPC_FAILED_PRECONDITION:
    case PT_GRPC_OUT_OF_RANGE:
        return 400;
    case PT_GRPC_DEADLINE_EXCEEDED:
        return 504;
    case PT_GRPC_NOT_FOUND:
        return 404;
    case PT_GRPC_ALREADY_EXISTS:
    case PT_GRPC_ABORTED:
        return 409;
    case PT_GRPC_PERMISSION_DENIED:
        return 403;
    case PT_GRPC_UNAUTHENTICATED:
        return 401;
    case PT_GRPC_RESOURCE_EXHAUSTED:
        return 429;
    case PT_GRPC_UNIMPLEMENTED:
        return 501;
    case PT_GRPC_UNAVAILABLE:
        return 503;
    default:
        return 500; /* UNKNOWN, INTERNAL, DATA_LOSS, out of range */
    }
}

/* Case-insensitive substring search in a slice. */
static bool contains_ci(pt_str_t hay, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= hay.len && i <= hay.len - n; i++)
        if (strncasecmp(hay.base + i, needle, n) == 0)
            return true;
    return false;
}

bool pt_grpc_status_tls_failed(int code, pt_str_t details)
{
    /* The texts of C core's security connector, ssl transport and handshaker. */
    static const char *const texts[] = {
        "handshake failed",
        "handshake read failed",
        "is not in peer certificate",
        "certificate verify failed",
        NULL,
    };
    if (code != PT_GRPC_UNAVAILABLE || details.base == NULL)
        return false;
    for (size_t i = 0; texts[i] != NULL; i++)
        if (contains_ci(details, texts[i]))
            return true;
    return false;
}

int pt_grpc_timeout_parse(pt_str_t v, uint64_t *ms)
{
    if (v.len < 2 || v.len > 9)
        return PT_ERR_INVALID;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return PT_ERR_INVALID;
        n = n * 10 + (uint64_t)(v.base[i] - '0');
    }
    uint64_t out;
    switch (v.base[v.len - 1]) {
    case 'H':
        out = n * 3600000;
        break;
    case 'M':
        out = n * 60000;
        break;
    case 'S':
        out = n * 1000;
        break;
    case 'm':
        out = n;
        break;
    case 'u':
        out = (n + 999) / 1000;
        break;
    case 'n':
        out = (n + 999999) / 1000000;
        break;
    default:
        return PT_ERR_INVALID;
    }
    *ms = out != 0 ? out : 1;
    return 0;
}
