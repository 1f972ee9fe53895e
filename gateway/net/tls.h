/*
 * tls.h -- server-side TLS contexts (OpenSSL 3).
 *
 * A listener with `tls: { cert, key }` gets one SSL_CTX, built at config load
 * time on the main thread and owned by the config snapshot (freed with it).
 * The context is immutable after creation and shared by every worker, which
 * OpenSSL allows for SSL_CTX used only to create SSL objects.
 */
#ifndef PT_GATEWAY_TLS_H
#define PT_GATEWAY_TLS_H

#include <stddef.h>

/**
 * Creates a server SSL_CTX (returned as void * so this header needs no
 * OpenSSL include) from a PEM certificate chain file and a PEM private key
 * file: TLS 1.2 minimum, modern AEAD cipher suites, no renegotiation, no
 * compression, server cipher preference, a server-side session cache, and an
 * ALPN callback that picks `h2`, else `http/1.1` (and accepts clients that
 * send no ALPN). When `offer_h2` is false only `http/1.1` is selected.
 *
 * Returns the context (free it with pt_tls_ctx_free), or NULL with a
 * one-line reason written to `errbuf` (`errlen` bytes, NUL-terminated).
 * Main thread, load time.
 */
void *pt_tls_ctx_new(const char *cert_path, const char *key_path, int offer_h2, char *errbuf,
                     size_t errlen);

/**
 * Makes a context from pt_tls_ctx_new() require a client certificate that
 * chains to a CA in the PEM file `ca_path`: a client without one, or with one
 * from another CA, fails the handshake. Returns 0, or -1 with a one-line
 * reason in `errbuf`. Main thread, load time, before the context is used.
 */
int pt_tls_ctx_verify_clients(void *ctx, const char *ca_path, char *errbuf, size_t errlen);

/** Frees a context from pt_tls_ctx_new(); NULL is accepted. Suitable as a release hook. */
void pt_tls_ctx_free(void *ctx);

#endif /* PT_GATEWAY_TLS_H */
