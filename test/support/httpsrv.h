/*
 * httpsrv.h -- a scripted HTTP/1.1 upstream for tests, on 127.0.0.1 (an
 * accept thread plus one thread per connection; keep-alive; counts accepted
 * connections).
 *
 * Script (path -> behaviour):
 *   /hello            200 "hello" (Content-Length), keep-alive
 *   /echo             200, body = request body; x-chunked: 1 when it came chunked;
 *                     x-method, x-host echo the request
 *   /head             200, body = the raw request head
 *   /big?N            200 with N pattern bytes
 *   /slow?MS          sleeps MS ms, then 200 "late"
 *   /truncate         Content-Length 100, sends 10 bytes, closes
 *   /truncchunk       chunked, one chunk, then closes
 *   /closeon?X        server named X closes without answering; others 200 "ok"
 *   /hop              200 with hop-by-hop fields (Connection: x-secret, x-secret,
 *                     Keep-Alive), x-keep: yes, x-request-id: from-upstream, two Set-Cookie
 *   /bye              200 "bye", then closes the kept-alive connection
 *   /continue         100 Continue, then 200 "after"
 *   /trailers         chunked body with a trailer "x-sum: 42"
 *   /clte             200 with both Content-Length and Transfer-Encoding
 *   /s101             101 Switching Protocols
 */
#ifndef PT_TEST_HTTPSRV_H
#define PT_TEST_HTTPSRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct tsrv {
    int fd;
    int port;
    char name;
    atomic_int accepted;
    atomic_bool stop;
    pthread_t th;
} tsrv_t;

/** Starts server `name` on a free loopback port (s->port). Fails the test on error. */
void srv_start(tsrv_t *s, char name);
void srv_stop(tsrv_t *s);

/**
 * Connection threads (of every server) that have not closed their socket yet. They end
 * when their client closes, a little later, on their own thread: a test that needs the
 * process's fd table still waits for this to reach 0.
 */
int srv_live_conns(void);

/** A loopback port with nothing listening (bound, then closed). */
int dead_port(void);

/** A listening loopback socket on a free port, or -1. */
int listen_any(int *port);

#endif /* PT_TEST_HTTPSRV_H */
