/*
 * grpc.h -- gRPC upstream calls through gRPC C core (private to the gateway).
 *
 * Module: everything that links gRPC C core (upstream/grpc.c) is built as a
 * shared module, portico_grpc.so, so that a gateway without REST->gRPC routes
 * never maps libgrpc (C++, absl, re2, c-ares...: ~2 MB of RSS touched at load
 * time). The core loads it with pt_grpc_module_load() when a config has a
 * `grpc` route (handlers/grpc.c, at check time), and calls it only through the
 * pt_grpc_module_t table. The module needs nothing from the binary but what
 * the table's init() hands it (pt_grpc_host_t), so it works under any host
 * that links portico_core (the portico binary, unit tests). The status
 * helpers at the end of this header are core functions (grpc_module.c).
 *
 * Channels: one grpc_channel per distinct endpoint (URL, authority, CA file),
 * shared by every worker and every config snapshot that names it. A
 * pt_grpc_upstream_t is the per-cluster view built at config load time: it
 * holds one lazily created channel per endpoint (no connection is made before
 * the first call) and picks endpoints round robin. `http://` endpoints use
 * plaintext HTTP/2, `https://` ones TLS (the cluster's ca_file or the system
 * roots); the cluster's `authority` overrides :authority.
 *
 * Threads: each worker that makes gRPC calls gets its own completion queue
 * and one thread pulling it (created on the first call). That thread never
 * touches request state: it queues each completion for the owning worker and
 * wakes it with pt_worker_post(); every callback below runs on the worker that
 * started the call, from its event loop, never synchronously from the API
 * function called.
 *
 * Flow of a call (one outstanding operation of each kind, as gRPC requires):
 *
 *   M->call_start()      sends the initial metadata (+ first message, + close)
 *   M->call_send()       one message (+ close); the next only after on_sent
 *   M->call_recv()       asks for one message; on_message answers it
 *   on_done              status, details, trailers; always the last callback
 *   M->call_cancel()     stops the call: no callback at all afterwards
 *
 * With `unary` set, start() puts every operation (send, close, receive the
 * message, receive the status) in ONE batch: one completion, one wake-up, and
 * on_headers/on_message/on_done are delivered together. Use it for calls with
 * a single request and a single response message.
 *
 * Memory: a call is malloc'd and lives until gRPC has finished every
 * operation on it AND the owner is done with it (on_done delivered or cancel
 * called); nothing of the caller's is referenced after an API function
 * returns (metadata and messages are copied).
 */
#ifndef PT_GATEWAY_UPSTREAM_GRPC_H
#define PT_GATEWAY_UPSTREAM_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config.h"
#include "../worker.h"
#include "portico/headers.h"

/** gRPC status codes (google.rpc.Code). */
enum {
    PT_GRPC_OK = 0, PT_GRPC_CANCELLED = 1, PT_GRPC_UNKNOWN = 2, PT_GRPC_INVALID_ARGUMENT = 3,
    PT_GRPC_DEADLINE_EXCEEDED = 4, PT_GRPC_NOT_FOUND = 5, PT_GRPC_ALREADY_EXISTS = 6,
    PT_GRPC_PERMISSION_DENIED = 7, PT_GRPC_RESOURCE_EXHAUSTED = 8, PT_GRPC_FAILED_PRECONDITION = 9,
    PT_GRPC_ABORTED = 10, PT_GRPC_OUT_OF_RANGE = 11, PT_GRPC_UNIMPLEMENTED = 12,
    PT_GRPC_INTERNAL = 13, PT_GRPC_UNAVAILABLE = 14, PT_GRPC_DATA_LOSS = 15,
    PT_GRPC_UNAUTHENTICATED = 16,
};

/** The channels of one grpc cluster (immutable after creation, any thread). */
typedef struct pt_grpc_upstream pt_grpc_upstream_t;
typedef struct pt_grpc_call pt_grpc_call_t;

typedef struct pt_grpc_call_cbs {
    /** Response initial metadata (keys lowercase; `-bin` values raw bytes). Optional. */
    void (*on_headers)(void *ud, const pt_header_t *md, size_t cnt);
    /**
     * The answer to call_recv() (or the unary batch): one message,
     * valid during the callback, or data == NULL when the response stream
     * ended (on_done follows).
     */
    void (*on_message)(void *ud, const uint8_t *data, size_t len);
    /** The message of the last send was handed to the transport (ok) or not. Optional. */
    void (*on_sent)(void *ud, bool ok);
    /**
     * The call ended with gRPC status `code`, `details` (UTF-8 text, may be
     * empty), the trailing metadata, and the raw grpc-status-details-bin
     * value if the server sent one (`status_bin`, else NULL/0). Exactly once,
     * the last callback; the call handle is invalid afterwards.
     */
    void (*on_done)(void *ud, int code, pt_str_t details, const pt_header_t *trailers, size_t cnt,
                    const uint8_t *status_bin, size_t status_bin_len);
} pt_grpc_call_cbs_t;

typedef struct pt_grpc_call_req {
    pt_grpc_upstream_t *upstream;
    pt_str_t method;             /**< "/pkg.Service/Method" */
    const pt_header_t *md;       /**< request metadata: lowercase keys; `-bin` values raw bytes */
    size_t md_cnt;
    uint64_t timeout_ms;         /**< deadline from now; 0 = none */
    const uint8_t *msg;          /**< first message (copied), or NULL */
    size_t msg_len;
    bool close;                  /**< half-close after `msg` (or right away) */
    bool unary;                  /**< one batch for everything (needs msg and close) */
} pt_grpc_call_req_t;

/* ---- the module's API (members of pt_grpc_module_t) ------------------------ */

/** Bumped whenever pt_grpc_module_t or a structure the module reads changes. */
#define PT_GRPC_MODULE_ABI 1

/** The module's symbol: `const pt_grpc_module_t pt_grpc_module`. */
#define PT_GRPC_MODULE_SYMBOL "pt_grpc_module"

/** The core functions the module calls (given to init(); valid for the process). */
typedef struct pt_grpc_host {
    void (*worker_post)(pt_worker_t *w, void (*fn)(void *arg), void *arg); /**< pt_worker_post() */
} pt_grpc_host_t;

typedef struct pt_grpc_module {
    /** PT_GRPC_MODULE_ABI and PORTICO_VERSION the module was built with: both must match. */
    uint32_t abi;
    uint32_t size;       /**< sizeof(pt_grpc_module_t) */
    const char *version;

    /** Called once, right after loading, before anything else. Returns 0. */
    int (*init)(const pt_grpc_host_t *host);

    /**
     * Creates the upstream of cluster `cl` (which must outlive it; it is
     * snapshot memory). Channels are created on first use. Main thread, load
     * time. Returns 0 and sets *out, or PT_ERR_INVALID with `err` (a static
     * message) when the cluster cannot be served (no endpoints, unreadable
     * ca_file, tls_verify off, which gRPC core cannot do for us).
     */
    int (*upstream_new)(const pt_cluster_t *cl, pt_grpc_upstream_t **out, const char **err);

    /** Drops the upstream's channel references. NULL accepted. Any thread. */
    void (*upstream_free)(pt_grpc_upstream_t *u);

    /**
     * Starts a call on the calling worker `w` (its own thread). On success sets
     * *out and returns 0; the callbacks then run on `w` with `ud`. On error
     * returns PT_ERR_UNAVAILABLE (no channel could be made), PT_ERR_INVALID (bad
     * arguments) or PT_ERR_INTERNAL, and no callback is ever called.
     * With `unary`, exactly on_headers (if metadata came), on_message and
     * on_done follow, in that order, from one completion.
     */
    int (*call_start)(pt_worker_t *w, const pt_grpc_call_req_t *r, const pt_grpc_call_cbs_t *cbs,
                      void *ud, pt_grpc_call_t **out);

    /**
     * Sends one message (copied), optionally half-closing. Only one send may be
     * outstanding: wait for on_sent. Returns 0, PT_ERR_INVALID (a send is
     * outstanding, the call was closed or is unary) or PT_ERR_INTERNAL.
     */
    int (*call_send)(pt_grpc_call_t *c, const uint8_t *msg, size_t len, bool close);

    /** Half-closes without a message (when no send is outstanding). Returns as call_send(). */
    int (*call_close)(pt_grpc_call_t *c);

    /**
     * Asks for the next response message (on_message answers; the first one also
     * brings on_headers). One at a time: this is the flow control. Returns 0 or
     * PT_ERR_INVALID (one is outstanding, the stream ended, the call is unary).
     */
    int (*call_recv)(pt_grpc_call_t *c);

    /**
     * Cancels the call (RST_STREAM CANCEL upstream) and detaches it: no callback
     * is called afterwards, and the memory is released once gRPC completes the
     * outstanding operations. The handle is invalid after this. NULL accepted.
     */
    void (*call_cancel)(pt_grpc_call_t *c);

    /** The endpoint URL the call went to (config memory), for logs. */
    const char *(*call_endpoint)(const pt_grpc_call_t *c);

    /** See pt__upgrpc_worker_dispose(). */
    void (*worker_dispose)(pt_worker_t *w);

    /** See pt_grpc_global_shutdown(). */
    void (*global_shutdown)(void);
} pt_grpc_module_t;

/* ---- core side (grpc_module.c) ------------------------------------------------ */

/**
 * Loads portico_grpc.so once (later calls return the same table): from
 * $PORTICO_GRPC_MODULE if set, else next to the executable
 * (`<exe dir>/../lib/portico/portico_grpc.so`, installed layout, then
 * `<exe dir>/../lib/portico_grpc.so`, build tree). dlopen(RTLD_NOW |
 * RTLD_LOCAL); the table's ABI, size and version are checked. Main thread
 * (config load). Returns the table, or NULL with the reason (dlerror() text
 * or a version mismatch) in `err`; a failed load is retried next time.
 */
const pt_grpc_module_t *pt_grpc_module_load(char *err, size_t errlen);

/** The loaded module, or NULL when pt_grpc_module_load() never succeeded. Any thread. */
const pt_grpc_module_t *pt_grpc_module_get(void);

/**
 * Per-worker teardown (worker thread, at exit): cancels the calls still
 * running, waits for gRPC to finish them and stops the worker's completion
 * thread. Callbacks are not called. Nothing when the module is not loaded.
 */
void pt__upgrpc_worker_dispose(pt_worker_t *w);

/**
 * Process teardown: grpc_shutdown() once every worker is gone and the last
 * snapshot released. Main thread. Harmless when gRPC (or the module) was
 * never used; the module stays mapped.
 */
void pt_grpc_global_shutdown(void);

/* ---- status helpers (core) ------------------------------------------------------ */

/** google.rpc.Code name ("NOT_FOUND"), "UNKNOWN" for values out of range. */
const char *pt_grpc_code_name(int code);

/** HTTP status for a gRPC code, as grpc-gateway maps them (SECURITY-CASES JP-9). */
int pt_grpc_code_http(int code);

/**
 * True when a call's status says that the TLS handshake with the endpoint
 * failed: certificate not trusted, name not in the certificate, protocol
 * error. gRPC C core (1.51) makes that status itself, as UNAVAILABLE, and
 * tells the cause only in the details text ("failed to connect to all
 * addresses; last error: UNKNOWN: ipv4:...: Ssl handshake failed: ...
 * certificate verify failed", "Peer name x is not in peer certificate"), so
 * this matches those texts. Gateways answer 502 for it, not 503 (SECURITY-CASES
 * UP-9: a bad upstream certificate is an upstream failure, not a missing
 * upstream). A backend could send the same text itself; callers check it only
 * before any response metadata arrived.
 */
bool pt_grpc_status_tls_failed(int code, pt_str_t details);

/**
 * Parses a `grpc-timeout` header value ("100m", "5S", "1H"; at most 8 digits)
 * to milliseconds (rounded up). Returns 0 or PT_ERR_INVALID.
 */
int pt_grpc_timeout_parse(pt_str_t v, uint64_t *ms);

#endif /* PT_GATEWAY_UPSTREAM_GRPC_H */
