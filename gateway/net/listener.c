/*
 * listener.c -- listening sockets, accept, TLS handshakes and connection
 * objects (see listener.h and conn.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "net/conn.h"
#include "core/config.h"
#include "core/overload.h"
#include "http/h2.h"
#include "net/listener.h"
#include "observe/observe.h"

/* ---- main-thread registry of bound addresses ---------------------------- */

typedef struct bound {
    char *key;          /* address text as configured, normalised by getnameinfo */
    int *fd;            /* one per worker */
    unsigned n;
    struct bound *next;
} bound_t;

static bound_t *registry; /* main thread only */

static char *addr_key(const pt_sockaddr_t *a)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
    }
    char buf[INET6_ADDRSTRLEN + 16];
    snprintf(buf, sizeof(buf), "[%s]:%u", host, port);
    return strdup(buf);
}

static int bind_one(const pt_sockaddr_t *a, char *err, size_t errlen)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bound_t *registry_find(const char *key)
{
    for (bound_t *b = registry; b != NULL; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    return NULL;
}

int pt__listener_bind_all(const pt_config_t *config, unsigned nworkers, pt_listener_fds_t *fds)
{
    size_t n = config->listener_cnt;
    bound_t **found = calloc(n + 1, sizeof(*found));
    bool *fresh = calloc(n + 1, sizeof(*fresh));
    if (found == NULL || fresh == NULL)
        abort();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *key = addr_key(&config->listeners[i].addr);
        bound_t *b = registry_find(key);
        for (size_t j = 0; j < i && b == NULL; j++)
            if (fresh[j] && strcmp(found[j]->key, key) == 0)
                b = found[j];
        if (b != NULL && b->n == nworkers) {
            found[i] = b;
            free(key);
            continue;
        }
        b = calloc(1, sizeof(*b));
        b->key = key;
        b->n = nworkers;
        b->fd = calloc(nworkers, sizeof(int));
        for (unsigned w = 0; w < nworkers; w++) {
            char err[256];
            b->fd[w] = bind_one(&config->listeners[i].addr, err, sizeof(err));
            if (b->fd[w] < 0) {
                const pt_conf_node_t *node = config->listeners[i].node;
                fprintf(stderr, "%s:%u:%u: cannot listen on %s: %s\n",
                        node != NULL ? node->file : config->path, node != NULL ? node->line : 0,
                        node != NULL ? node->col : 0, config->listeners[i].addr.text, err);
                for (unsigned k = 0; k < w; k++)
                    close(b->fd[k]);
                free(b->fd);
                free(b->key);
                free(b);
                b = NULL;
                rc = -1;
                break;
            }
        }
        found[i] = b;
        fresh[i] = b != NULL;
    }
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            if (!fresh[i] || found[i] == NULL)
                continue;
            bool dup = false;
            for (size_t j = 0; j < i; j++)
                dup = dup || found[j] == found[i];
            if (dup)
                continue;
            for (unsigned w = 0; w < found[i]->n; w++)
                close(found[i]->fd[w]);
            free(found[i]->fd);
            free(found[i]->key);
            free(found[i]);
        }
        free(found);
        free(fresh);
        return -1;
    }
    /* Commit: the new registry is exactly the config's addresses. Sockets of
     * dropped addresses are closed by the workers (they own the listeners). */
    bound_t *next_reg = NULL;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || found[j] == found[i];
        if (dup)
            continue;
        bound_t **pp = &registry;
        while (*pp != NULL && *pp != found[i])
            pp = &(*pp)->next;
        if (*pp != NULL)
            *pp = found[i]->next;
        found[i]->next = next_reg;
        next_reg = found[i];
    }
    while (registry != NULL) {
        bound_t *b = registry;
        registry = b->next;
        free(b->fd);
        free(b->key);
        free(b);
    }
    registry = next_reg;
    for (unsigned w = 0; w < nworkers; w++) {
        fds[w].cnt = n;
        fds[w].fd = calloc(n + 1, sizeof(int));
        for (size_t i = 0; i < n; i++)
            fds[w].fd[i] = found[i]->fd[w]; // NOLINT(clang-analyzer-unix.Malloc): found[] entries were moved to next_reg, not freed
    }
    free(found);
    free(fresh);
    return 0;
}

void pt__listener_fds_close(pt_listener_fds_t *fds)
{
    /* The sockets stay registered (and open) for the workers that use them. */
    free(fds->fd);
    fds->fd = NULL;
    fds->cnt = 0;
}

/* ---- worker listeners ---------------------------------------------------- */

typedef struct wlistener {
    int fd;
    struct evconnlistener *ev;
    const pt_listener_conf_t *conf; /* in the worker's current snapshot */
    pt_worker_t *worker;
    struct event *retry_ev;         /* re-enable after EMFILE */
} wlistener_t;

static void conn_close(pt_conn_t *conn);

static void link_conn(pt_worker_t *w, pt_conn_t *c)
{
    c->next = w->conns;
    if (c->next != NULL)
        ((pt_conn_t *)c->next)->prev = c;
    c->prev = NULL;
    w->conns = c;
    w->conn_cnt++;
    pt_observe_conn_open(w);
}

static void start_codec(pt_conn_t *conn)
{
    if (conn->is_tls) {
        const unsigned char *proto = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(conn->io.ssl, &proto, &len);
        if (len == 2 && memcmp(proto, "h2", 2) == 0) {
            pt__h2_conn_start(conn, NULL, 0);
            return;
        }
    }
    pt__h1_conn_start(conn, NULL, 0);
}

static void on_handshake(pt_conn_t *conn, bool ok)
{
    if (ok)
        start_codec(conn);
    else
        pt_conn_close(conn); /* error, EOF or handshake timeout */
}

/*
 * Overload (core/overload.h): over the memory watermark a new connection is
 * refused -- with a 503 on plain listeners, written without waiting (a
 * fresh socket's buffer takes it) -- and at limits.max_connections
 * (process-wide) it is closed. Else it is counted until conn_close().
 */
static bool refuse(const wlistener_t *l, int fd)
{
    const pt_config_t *c = l->worker->config;
    if (pt_overload_over(&c->overload)) {
        if (!l->conf->has_tls) {
            char buf[512];
            size_t n = pt_overload_refusal(&c->overload, buf, sizeof(buf));
            if (n != 0 && send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
                shutdown(fd, SHUT_WR);
        }
        pt_overload_count_refused(true);
        close(fd);
        return true;
    }
    if (!pt_overload_conn_admit(c->limits.max_connections)) {
        pt_overload_count_refused(false);
        close(fd);
        return true;
    }
    return false;
}

static void on_accept(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)ev;
    (void)salen;
    wlistener_t *l = arg;
    pt_worker_t *w = l->worker;
    if (w->draining) {
        close(fd);
        return;
    }
    if (refuse(l, fd))
        return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pt_conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        abort();
    conn->worker = w;
    conn->fd = -1;
    conn->listener = l->conf;
    conn->config = pt_config_ref(w->config);
    conn->close = conn_close;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, conn->client_addr_buf,
                  sizeof(conn->client_addr_buf));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, conn->client_addr_buf,
                  sizeof(conn->client_addr_buf));
    conn->client_addr = pt_str_c(conn->client_addr_buf);
    link_conn(w, conn);

    SSL *ssl = NULL;
    if (l->conf->has_tls && l->conf->ssl_ctx != NULL) {
        ssl = SSL_new(l->conf->ssl_ctx);
        if (ssl == NULL) {
            close(fd);
            conn_close(conn);
            return;
        }
        conn->is_tls = true;
    }
    /* from here on the layer owns fd (and ssl), also on failure */
    if (pt_conn_io_init(conn, w->base, fd, ssl) != 0) {
        conn_close(conn);
        return;
    }
    if (conn->is_tls) {
        pt_conn_tls_accept(conn, w->config->timeouts.header_ms, on_handshake);
        return;
    }
    start_codec(conn);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wlistener_t *l = arg;
    if (l->ev != NULL)
        evconnlistener_enable(l->ev);
}

static void on_accept_error(struct evconnlistener *ev, void *arg)
{
    wlistener_t *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors: pause accepting briefly instead of spinning. */
        evconnlistener_disable(ev);
        struct timeval tv = {0, 100000};
        evtimer_add(l->retry_ev, &tv);
    }
}

static void wlistener_free(wlistener_t *l)
{
    if (l->retry_ev != NULL)
        event_free(l->retry_ev);
    if (l->ev != NULL)
        evconnlistener_free(l->ev); /* closes the socket */
    l->ev = NULL;
    l->retry_ev = NULL;
}

void pt__listener_set_apply(pt_worker_t *w, pt_listener_set_t *set, const pt_config_t *config,
                            pt_listener_fds_t *fds)
{
    wlistener_t *v = calloc(config->listener_cnt + 1, sizeof(*v));
    if (v == NULL)
        abort();
    bool *kept = calloc(set->cnt + 1, sizeof(bool));
    for (size_t i = 0; i < config->listener_cnt; i++) {
        int fd = fds->fd[i];
        size_t j = 0;
        while (j < set->cnt && set->v[j].fd != fd)
            j++;
        if (j < set->cnt && !kept[j]) {
            v[i] = set->v[j];
            kept[j] = true;
        } else {
            bool dup = false;
            for (size_t k = 0; k < i; k++)
                dup = dup || v[k].fd == fd;
            if (dup) {
                v[i].fd = -1;
                continue;
            }
            v[i].fd = fd;
            v[i].worker = w;
            v[i].ev = NULL;
        }
        v[i].conf = &config->listeners[i];
    }
    for (size_t j = 0; j < set->cnt; j++)
        if (!kept[j])
            wlistener_free(&set->v[j]);
    free(kept);
    free(set->v);
    set->v = v;
    set->cnt = config->listener_cnt;
    /* Callback args point into the new array: (re)create the listener objects. */
    for (size_t i = 0; i < set->cnt; i++) {
        wlistener_t *l = &v[i];
        if (l->fd < 0)
            continue;
        l->worker = w;
        if (l->ev == NULL) {
            l->ev = evconnlistener_new(w->base, on_accept, l, LEV_OPT_CLOSE_ON_FREE, 0, l->fd);
            if (l->ev == NULL) {
                fprintf(stderr, "portico: worker %u: cannot accept on %s\n", w->id,
                        l->conf->addr.text);
                continue;
            }
            evconnlistener_set_error_cb(l->ev, on_accept_error);
            l->retry_ev = evtimer_new(w->base, on_retry, l);
        } else {
            evconnlistener_set_cb(l->ev, on_accept, l);
            evconnlistener_set_error_cb(l->ev, on_accept_error);
            event_free(l->retry_ev);
            l->retry_ev = evtimer_new(w->base, on_retry, l);
        }
    }
    pt__listener_fds_close(fds);
}

void pt__listener_set_close(pt_listener_set_t *set)
{
    for (size_t i = 0; i < set->cnt; i++)
        if (set->v[i].fd >= 0)
            wlistener_free(&set->v[i]);
    free(set->v);
    set->v = NULL;
    set->cnt = 0;
}

/* ---- connections --------------------------------------------------------- */

/* A draining worker's loop ends with its last connection. */
static void check_drained(pt_worker_t *w)
{
    if (w->draining && w->conn_cnt == 0)
        event_base_loopexit(w->base, NULL);
}

static void conn_close(pt_conn_t *conn)
{
    pt_worker_t *w = conn->worker;
    pt_conn_io_release(conn); /* closes the socket */
    if (conn->prev != NULL)
        ((pt_conn_t *)conn->prev)->next = conn->next;
    else
        w->conns = conn->next;
    if (conn->next != NULL)
        ((pt_conn_t *)conn->next)->prev = conn->prev;
    w->conn_cnt--;
    pt_overload_conn_done();
    pt_observe_conn_close(w);
    pt_config_unref(conn->config);
    free(conn);
    check_drained(w);
}

void pt__listener_conns_drain_all(pt_worker_t *w)
{
    pt_conn_t *c = w->conns;
    while (c != NULL) {
        pt_conn_t *next = c->next;
        c->draining = true;
        if (c->codec_ops != NULL && c->codec_ops->drain != NULL)
            c->codec_ops->drain(c);
        else if (c->codec == NULL)
            pt_conn_close(c); /* still in the TLS handshake */
        c = next;
    }
    check_drained(w);
}

void pt__listener_conns_destroy_all(pt_worker_t *w)
{
    while (w->conns != NULL) {
        pt_conn_t *c = w->conns;
        if (c->codec != NULL && c->codec_ops != NULL && c->codec_ops->destroy != NULL) // NOLINT(clang-analyzer-unix.Malloc): conn_close() unlinks c from w->conns
            c->codec_ops->destroy(c);
        conn_close(c);
    }
}
