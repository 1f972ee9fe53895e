/*
 * tls.c -- server SSL_CTX creation and ALPN selection.
 */
#include "net/tls.h"

#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ALPN protocol lists in wire format (length-prefixed). */
static const unsigned char alpn_h2_h1[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h1[] = "\x08http/1.1";

/*
 * Picks our preferred protocol among the client's: h2 first, then
 * http/1.1. When the client offers neither, the handshake goes on without
 * ALPN (NOACK) and the connection is treated as HTTP/1.1 by the listener.
 */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const unsigned char *ours = arg != NULL ? alpn_h2_h1 : alpn_h1;
    unsigned ours_len = arg != NULL ? sizeof(alpn_h2_h1) - 1 : sizeof(alpn_h1) - 1;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto((unsigned char **)&sel, outlen, ours, ours_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void set_err(char *errbuf, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(errbuf, errlen, "%s %s: %s", what, path, reason);
}

void *pt_tls_ctx_new(const char *cert_path, const char *key_path, int offer_h2, char *errbuf,
                     size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        set_err(errbuf, errlen, "cannot create TLS context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* TLS 1.2: forward-secret AEAD only (TLS 1.3 suites are already all AEAD). */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS") !=
        1) {
        set_err(errbuf, errlen, "cannot set cipher list", "");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20480);
    static const unsigned char sid_ctx[] = "portico";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        set_err(errbuf, errlen, "cannot load certificate", cert_path);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            set_err(errbuf, errlen, "private key does not match certificate", cert_path);
        else
            set_err(errbuf, errlen, "cannot load private key", key_path);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(errbuf, errlen, "private key does not match certificate", cert_path);
        goto fail;
    }
    /* A non-NULL arg means "offer h2"; the pointer itself is never dereferenced. */
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, offer_h2 ? (void *)alpn_h2_h1 : NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void pt_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

int pt_tls_ctx_verify_clients(void *vctx, const char *ca_path, char *errbuf, size_t errlen)
{
    SSL_CTX *ctx = vctx;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
        set_err(errbuf, errlen, "cannot load client CA", ca_path);
        return -1;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_path);
    if (names == NULL) {
        set_err(errbuf, errlen, "no CA certificate in", ca_path);
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}
