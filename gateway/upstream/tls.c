/*
 * tls.c -- client TLS to https:// endpoints with the cluster's settings (tls.h).
 */
#include "upstream/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

const char *pt__uptls_name(const pt_cluster_t *cl, const pt_endpoint_t *ep, char *buf, size_t len)
{
    const char *a = cl->authority;
    if (cl->protocol != PT_PROTO_GRPC || a == NULL || a[0] == '\0')
        return ep->host;
    size_t n = strlen(a);
    if (a[0] == '[') { /* [v6]:port */
        const char *e = strchr(a, ']');
        if (e != NULL) {
            a++;
            n = (size_t)(e - a);
        }
    } else {
        const char *colon = strrchr(a, ':');
        if (colon != NULL && strchr(a, ':') == colon) /* host:port (one colon: not a bare v6) */
            n = (size_t)(colon - a);
    }
    if (n == 0 || n >= len)
        return ep->host;
    memcpy(buf, a, n);
    buf[n] = '\0';
    return buf;
}

SSL_CTX *pt__uptls_ctx_new(bool verify, const char *ca_file, const char *alpn, size_t alpn_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (alpn_len > 0)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn, (unsigned)alpn_len);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca_file != NULL && ca_file[0] != '\0'
                     ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

int pt__uptls_set_peer(SSL *ssl, const char *name, bool verify)
{
    unsigned char tmp[16];
    bool is_ip = inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    if (verify) {
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
                       : SSL_set1_host(ssl, name);
        if (ok != 1)
            return -1;
    }
    return 0;
}

bool pt__uptls_verify_failed(const SSL *ssl)
{
    return ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK;
}

const char *pt__uptls_alpn(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    if (n == 2 && memcmp(p, "h2", 2) == 0)
        return "h2";
    if (n == 8 && memcmp(p, "http/1.1", 8) == 0)
        return "http/1.1";
    return "";
}
