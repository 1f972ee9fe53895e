/*
 * worker.c -- worker threads, the cross-thread post queue, per-worker filter
 * state, and the main-thread side of start, reload and drain (server.h).
 *
 * Threads and ownership:
 *  - the main thread builds snapshots and listener sockets, then posts them
 *    to the workers; it never touches a worker's connections or requests;
 *  - each worker owns its event_base, listeners, connections, requests,
 *    upstream state and metrics shard, and frees them on its own thread.
 * The post queue (a mutex-protected list plus an eventfd) is the only shared
 * mutable structure, and it is off the request path.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "net/conn.h"
#include "http/h2mem.h"
#include "core/config.h"
#include "core/request.h"
#include "net/listener.h"
#include "observe/metrics.h"
#include "server.h"
#include "upstream/call.h"
#include "upstream/redis.h"

/* ---- private worker state ----------------------------------------------- */

typedef struct post {
    void (*fn)(void *arg);
    void *arg;
    struct post *next;
} post_t;

/* Filter state of one snapshot on one worker; kept while requests of that
 * snapshot may still run (its refcount shows when they are gone). */
typedef struct state_set {
    pt_config_t *config;
    void **state;
    unsigned users;             /* requests of this snapshot on this worker */
    struct state_set *next;
} state_set_t;

typedef struct worker_priv {
    pthread_mutex_t lock;
    post_t *head, *tail;
    int efd;
    struct event *wake_ev;
    struct event *gc_ev;       /* periodic: drop filter state of retired snapshots */
    struct event *drain_ev;    /* drain deadline */
    state_set_t *sets;         /* newest first */
    pt_listener_set_t listeners;
    bool stopping;
    atomic_uint *stopped;      /* the server's count of ended worker loops */
} worker_priv_t;

static __thread pt_worker_t *self;

pt_worker_t *pt_worker_self(void)
{
    return self;
}

void pt_worker_post(pt_worker_t *w, void (*fn)(void *arg), void *arg)
{
    worker_priv_t *p = w->_private;
    post_t *m = malloc(sizeof(*m));
    if (m == NULL)
        abort();
    m->fn = fn;
    m->arg = arg;
    m->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail != NULL)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    pthread_mutex_unlock(&p->lock);
    uint64_t one = 1;
    ssize_t n = write(p->efd, &one, sizeof(one));
    (void)n; /* a full counter still wakes the loop */
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    pt_worker_t *w = arg;
    worker_priv_t *p = w->_private;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    (void)what;
    pthread_mutex_lock(&p->lock);
    post_t *m = p->head;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (m != NULL) {
        post_t *next = m->next;
        m->fn(m->arg);
        free(m);
        m = next;
    }
}

/* ---- per-worker filter state -------------------------------------------- */

static state_set_t *set_of(pt_worker_t *w, const pt_filter_t *f)
{
    worker_priv_t *p = w->_private;
    for (state_set_t *s = p->sets; s != NULL; s = s->next)
        if (f->slot < s->config->filter_slot_cnt && s->config->filters[f->slot] == f)
            return s;
    return NULL;
}

void *pt_worker_filter_state(pt_worker_t *w, const pt_filter_t *f)
{
    state_set_t *s = set_of(w, f);
    return s != NULL ? s->state[f->slot] : NULL;
}

void pt_worker_filter_state_set(pt_worker_t *w, const pt_filter_t *f, void *state)
{
    state_set_t *s = set_of(w, f);
    if (s != NULL)
        s->state[f->slot] = state;
}

pt_config_t *pt__worker_config_acquire(pt_worker_t *w)
{
    worker_priv_t *p = w->_private;
    for (state_set_t *s = p != NULL ? p->sets : NULL; s != NULL; s = s->next)
        if (s->config == w->config) {
            s->users++;
            break;
        }
    return pt_config_ref(w->config);
}

void pt__worker_config_release(pt_worker_t *w, pt_config_t *c)
{
    worker_priv_t *p = w->_private;
    for (state_set_t *s = p != NULL ? p->sets : NULL; s != NULL; s = s->next)
        if (s->config == c) {
            s->users--;
            break;
        }
    pt_config_unref(c);
}

static int state_set_add(pt_worker_t *w, pt_config_t *c)
{
    worker_priv_t *p = w->_private;
    state_set_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->config = pt_config_ref(c);
    s->state = calloc(c->filter_slot_cnt + 1, sizeof(void *));
    if (s->state == NULL)
        abort();
    s->next = p->sets;
    p->sets = s;
    for (unsigned i = 0; i < c->filter_slot_cnt; i++) {
        const pt_filter_t *f = c->filters[i];
        if (f->def->worker_init != NULL && f->def->worker_init(f, w) != 0) {
            fprintf(stderr, "portico: worker %u: filter %s failed to initialise\n", w->id,
                    f->def->name);
            return -1;
        }
    }
    return 0;
}

/* Runs the filters' worker_dispose while `s` is still linked in w's sets, so
 * that pt_worker_filter_state() finds the state they are to free. */
static void state_set_dispose(pt_worker_t *w, state_set_t *s)
{
    for (unsigned i = 0; i < s->config->filter_slot_cnt; i++) {
        const pt_filter_t *f = s->config->filters[i];
        if (f->def->worker_dispose != NULL)
            f->def->worker_dispose(f, w);
    }
}

static void state_set_free(state_set_t *s)
{
    free(s->state);
    pt_config_unref(s->config);
    free(s);
}

/* Drops the state of snapshots that no request uses any more: the only
 * references left are ours (the set's, plus w->config's if current). */
static void state_gc(pt_worker_t *w, bool all)
{
    worker_priv_t *p = w->_private;
    state_set_t **pp = &p->sets;
    while (*pp != NULL) {
        state_set_t *s = *pp;
        bool current = s->config == w->config;
        if (all || (!current && s->users == 0)) {
            state_set_dispose(w, s);
            *pp = s->next;
            state_set_free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void on_gc(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_worker_t *w = arg;
    w->now_ms = pt_now_ms();
    state_gc(w, false);
    pt__redis_worker_gc(w);
}

/* ---- config application on the worker ----------------------------------- */

typedef struct apply_msg {
    pt_worker_t *w;
    pt_config_t *config;        /* reference owned by the message */
    pt_listener_fds_t fds;      /* this worker's sockets for config's listeners */
} apply_msg_t;

static void apply_config(void *arg)
{
    apply_msg_t *m = arg;
    pt_worker_t *w = m->w;
    worker_priv_t *p = w->_private;
    if (p->stopping) {
        pt__listener_fds_close(&m->fds);
        pt_config_unref(m->config);
        free(m);
        return;
    }
    pt_config_t *old = w->config;
    w->config = m->config; /* the message's reference becomes the worker's */
    if (state_set_add(w, w->config) != 0)
        fprintf(stderr, "portico: worker %u: filter state incomplete after reload\n", w->id);
    pt__listener_set_apply(w, &p->listeners, w->config, &m->fds);
    free(m);
    pt_config_unref(old);
    state_gc(w, false);
}

/* ---- drain and stop ------------------------------------------------------ */

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_worker_t *w = arg;
    pt__listener_conns_destroy_all(w);
    event_base_loopexit(w->base, NULL);
}

typedef struct drain_msg {
    pt_worker_t *w;
    uint64_t drain_ms;
} drain_msg_t;

static void start_drain(void *arg)
{
    drain_msg_t *m = arg;
    pt_worker_t *w = m->w;
    worker_priv_t *p = w->_private;
    w->draining = true;
    p->stopping = true;
    pt__listener_set_close(&p->listeners);
    struct timeval tv = {(time_t)(m->drain_ms / 1000), (suseconds_t)(m->drain_ms % 1000) * 1000};
    p->drain_ev = evtimer_new(w->base, on_drain_deadline, w);
    evtimer_add(p->drain_ev, &tv);
    free(m);
    pt__listener_conns_drain_all(w); /* ends the loop once no connection is left */
}

/* ---- thread ------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    pt_worker_t *w = arg;
    worker_priv_t *p = w->_private;
    /* Process signals (TERM, INT, HUP) are the main thread's business. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    self = w;
    w->now_ms = pt_now_ms();
    if (pt_upstream_worker_init(w) != 0 || pt_observe_worker_init(w) != 0)
        fprintf(stderr, "portico: worker %u: initialisation failed\n", w->id);
    event_base_dispatch(w->base);

    pt__listener_set_close(&p->listeners);
    pt__listener_conns_destroy_all(w);
    /* Let libcurl and friends finish their callbacks, then tear down. */
    pt__redis_worker_dispose(w);
    pt_upstream_worker_dispose(w);
    pt_observe_worker_dispose(w);
    state_gc(w, true);
    if (p->stopped != NULL)
        atomic_fetch_add(p->stopped, 1);
    return NULL;
}

static pt_worker_t *worker_new(unsigned id, pt_config_t *config)
{
    pt_worker_t *w = calloc(1, sizeof(*w));
    worker_priv_t *p = calloc(1, sizeof(*p));
    if (w == NULL || p == NULL)
        abort();
    w->id = id;
    w->_private = p;
    pthread_mutex_init(&p->lock, NULL);
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (w->base == NULL)
        abort();
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0)
        abort();
    p->wake_ev = event_new(w->base, p->efd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(p->wake_ev, NULL);
    p->gc_ev = event_new(w->base, -1, EV_PERSIST, on_gc, w);
    struct timeval one = {1, 0};
    event_add(p->gc_ev, &one);
    w->config = pt_config_ref(config);
    w->metrics = pt_metrics_shard_new(); /* before any thread can read it */
    return w;
}

static void worker_free(pt_worker_t *w)
{
    worker_priv_t *p = w->_private;
    if (p->drain_ev != NULL)
        event_free(p->drain_ev);
    event_free(p->wake_ev);
    event_free(p->gc_ev);
    close(p->efd);
    /* Messages posted after the loop ended (a late reload) are dropped here. */
    post_t *m = p->head;
    while (m != NULL) {
        post_t *next = m->next;
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&p->lock);
    event_base_free(w->base);
    pt_config_unref(w->config);
    pt_metrics_shard_free(w->metrics);
    pt_h2mem_dispose(w); /* after every session: connections and upstream state are gone */
    pt__req_spares_free(w); /* after every request */
    free(p);
    free(w);
}

/* ---- main-thread side (server.h) ---------------------------------------- */

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_config_t *current_config;

pt_config_t *pt_server_config(pt_server_t *s)
{
    (void)s;
    pthread_mutex_lock(&current_lock);
    pt_config_t *c = current_config != NULL ? pt_config_ref(current_config) : NULL;
    pthread_mutex_unlock(&current_lock);
    return c;
}

static void set_current(pt_config_t *c)
{
    pthread_mutex_lock(&current_lock);
    pt_config_t *old = current_config;
    current_config = c != NULL ? pt_config_ref(c) : NULL;
    pthread_mutex_unlock(&current_lock);
    pt_config_unref(old);
}

int pt_server_start(pt_server_t *s, pt_config_t *config, unsigned n)
{
    pt_listener_fds_t *fds = calloc(n, sizeof(*fds));
    if (fds == NULL)
        abort();
    if (pt__listener_bind_all(config, n, fds) != 0) {
        free(fds);
        return -1;
    }
    s->workers = calloc(n, sizeof(pt_worker_t *));
    s->worker_cnt = n;
    set_current(config);
    s->current_config = pt_server_config;
    for (unsigned i = 0; i < n; i++) {
        pt_worker_t *w = worker_new(i, config);
        s->workers[i] = w;
        worker_priv_t *p = w->_private;
        p->stopped = &s->stopped_workers;
        if (state_set_add(w, config) != 0) {
            /* worker_init failures are reported; the worker still serves */
        }
        pt__listener_set_apply(w, &p->listeners, config, &fds[i]);
    }
    free(fds);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&s->workers[i]->thread, NULL, worker_main, s->workers[i]) != 0) {
            fprintf(stderr, "portico: cannot start worker thread: %s\n", strerror(errno));
            abort();
        }
    }
    return 0;
}

int pt_server_reload(pt_server_t *s, pt_config_t *config)
{
    pt_listener_fds_t *fds = calloc(s->worker_cnt, sizeof(*fds));
    if (fds == NULL)
        abort();
    /* Sockets of addresses that stay are reused; only new addresses are bound. */
    if (pt__listener_bind_all(config, s->worker_cnt, fds) != 0) {
        free(fds);
        return -1;
    }
    set_current(config);
    for (unsigned i = 0; i < s->worker_cnt; i++) {
        apply_msg_t *m = calloc(1, sizeof(*m));
        if (m == NULL)
            abort();
        m->w = s->workers[i];
        m->config = pt_config_ref(config);
        m->fds = fds[i];
        pt_worker_post(m->w, apply_config, m);
    }
    free(fds);
    return 0;
}

bool pt_server_all_stopped(pt_server_t *s)
{
    return atomic_load(&s->stopped_workers) >= s->worker_cnt;
}

void pt_server_drain_start(pt_server_t *s, uint64_t drain_ms)
{
    if (s->drain_started)
        return;
    s->drain_started = true;
    for (unsigned i = 0; i < s->worker_cnt; i++) {
        drain_msg_t *m = malloc(sizeof(*m));
        if (m == NULL)
            abort();
        m->w = s->workers[i];
        m->drain_ms = drain_ms;
        pt_worker_post(m->w, start_drain, m);
    }
}

void pt_server_drain_and_stop(pt_server_t *s, uint64_t drain_ms)
{
    pt_server_drain_start(s, drain_ms);
    for (unsigned i = 0; i < s->worker_cnt; i++)
        pthread_join(s->workers[i]->thread, NULL);
}

void pt_server_free(pt_server_t *s)
{
    for (unsigned i = 0; i < s->worker_cnt; i++)
        worker_free(s->workers[i]);
    free(s->workers);
    s->workers = NULL;
    s->worker_cnt = 0;
    set_current(NULL);
}

/* ---- workers without a thread (tests, the loopback seam) ----------------- */

pt_worker_t *pt__worker_new_detached(pt_config_t *config)
{
    pt_worker_t *w = worker_new(0, config);
    self = w;
    state_set_add(w, config);
    pt_upstream_worker_init(w);
    pt_observe_worker_init(w);
    return w;
}

void pt__worker_free_detached(pt_worker_t *w)
{
    pt__redis_worker_dispose(w);
    pt_upstream_worker_dispose(w);
    pt_observe_worker_dispose(w);
    state_gc(w, true);
    if (self == w)
        self = NULL;
    worker_free(w);
}
