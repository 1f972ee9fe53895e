/*
 * conn.h -- a client connection, as the listener hands it to a codec.
 *
 * listener.c accepts a socket, wraps it in a libevent bufferevent (an
 * OpenSSL one on TLS listeners, after the handshake and ALPN), links it into
 * its worker's connection list and passes it to a codec:
 *
 *   listener.c --> pt__h1_conn_start(conn)            (h1.c; ALPN http/1.1 or none)
 *              --> pt__h2_conn_start(conn, NULL, 0)   (h2.c; ALPN h2)
 *   h1.c       --> pt__h2_conn_start(conn, data, len) (prior-knowledge preface on cleartext)
 *              --> pt__h2_conn_upgrade(conn, ...)     (h2c Upgrade; see h2.h)
 *
 * From then on the codec owns the bufferevent's callbacks and the `codec`
 * slot. Two ways a connection ends:
 *   - the codec is finished (peer closed, error, drain complete): it frees its
 *     own state, sets conn->codec = NULL, and calls pt_conn_close(conn), which
 *     frees the bufferevent (closing the socket), unlinks and frees `conn`;
 *   - the worker tears connections down (exit, drain deadline): it calls
 *     codec_ops->destroy(conn) -- the codec aborts its requests and frees its
 *     state, without closing -- then closes the connection itself.
 * A graceful drain (SIGTERM, reload of a listener) calls codec_ops->drain(conn):
 * the codec finishes what is in flight and then closes on its own.
 *
 * Everything happens on the owning worker's thread.
 */
#ifndef PT_GATEWAY_CONN_H
#define PT_GATEWAY_CONN_H

#include <stdbool.h>
#include "config.h"
#include "worker.h"
#include "portico/str.h"

struct bufferevent;

typedef struct pt_conn pt_conn_t;

/** What the codec currently driving a connection implements for the listener. */
typedef struct pt_codec_ops {
    const char *name; /* "h1", "h2" (logs, metrics) */
    /**
     * Graceful drain: accept no new request (H1: `Connection: close` on the
     * current response, or close at once when idle; H2: GOAWAY), let the
     * in-flight ones finish, then close through pt_conn_close(). May close
     * synchronously (the connection is gone when it returns in that case).
     */
    void (*drain)(pt_conn_t *conn);
    /**
     * Hard teardown: abort every request (pt__req_abort), free the codec
     * state and set conn->codec = NULL. Must NOT close or free `conn`: the
     * caller does that right after.
     */
    void (*destroy)(pt_conn_t *conn);
} pt_codec_ops_t;

struct pt_conn {
    pt_worker_t *worker;
    int fd;
    /** The connection's bufferevent (socket or OpenSSL filter); freed with BEV_OPT_CLOSE_ON_FREE semantics by pt_conn_close(). */
    struct bufferevent *bev;
    char client_addr_buf[64]; /* "127.0.0.1", "::1" (no port) */
    pt_str_t client_addr;     /* slice of client_addr_buf */
    bool is_tls;
    const pt_listener_conf_t *listener; /* in the snapshot `config` */
    pt_config_t *config;      /* snapshot the listener belongs to (reference held by listener.c) */
    pt_conn_t *prev, *next;   /* worker's connection list (listener.c) */
    /** Closes and frees the connection (listener.c). Use pt_conn_close(). */
    void (*close)(pt_conn_t *conn);
    /** Codec state and operations; NULL until a codec starts. */
    void *codec;
    const pt_codec_ops_t *codec_ops;
    bool draining;            /* set by the worker before codec_ops->drain() */
};

/**
 * Closes the socket and frees `conn` (the codec must have released its
 * state and set conn->codec = NULL first). `conn` is invalid afterwards.
 */
static inline void pt_conn_close(pt_conn_t *conn)
{
    conn->close(conn);
}

/**
 * Starts the HTTP/1.1 codec on `conn` (h1.c). `data`/`len` are bytes already
 * read from the connection that belong to the codec (may be NULL/0); they are
 * copied. On return the codec owns the bufferevent callbacks. Never fails:
 * on internal errors it closes the connection itself.
 */
void pt__h1_conn_start(pt_conn_t *conn, const void *data, size_t len);

#endif /* PT_GATEWAY_CONN_H */
