/*
 * listener_conf.h -- a listener as configured (`listeners:`), and a socket address.
 * Types only (the configuration snapshot, core/config.h, holds these; a file
 * that only needs them includes this, not config.h).
 */
#ifndef PT_GATEWAY_LISTENER_CONF_H
#define PT_GATEWAY_LISTENER_CONF_H

#include <stdbool.h>
#include <sys/socket.h>
#include "portico/conf.h"

/** An IP address and port from `address: 127.0.0.1:8080` or `[::1]:8080`. */
typedef struct pt_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
    const char *text; /* as written in the file */
} pt_sockaddr_t;

typedef struct pt_listener_conf {
    pt_sockaddr_t addr;
    bool has_tls;
    const char *cert_path, *key_path; /* PEM; resolved against the config directory */
    void *ssl_ctx;                    /* SSL_CTX * built at load time (tls.c), or NULL */
    bool h2c;                         /* accept cleartext HTTP/2 (prior knowledge and Upgrade); default true */
    const pt_conf_node_t *node;
} pt_listener_conf_t;

#endif /* PT_GATEWAY_LISTENER_CONF_H */
