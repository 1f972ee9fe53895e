/*
 * redis.c -- Redis commands on the worker loop (portico/redis.h): hiredis
 * async contexts attached to the worker's event_base.
 *
 * Shape, per worker (w->redis):
 *   rworker -> sets (one per distinct target definition, see redis.h)
 *           -> slots (`connections` of them) -> one redisAsyncContext each
 *   cmd: one pt_redis_cmd_t per command, malloc'd, with its timeout event.
 *
 * A command has two owners: the caller (until its callback ran: reply,
 * timeout, cancel) and hiredis (until hiredis hands the command back, with
 * a reply or with NULL when the connection goes). It is freed when both let
 * go, so a late reply after a timeout or a cancel finds the command, sees
 * it is done, and is dropped.
 *
 * Connections are opened on first use, then kept. AUTH and SELECT are queued
 * first on a new connection, so every command behind them runs
 * authenticated in the right database; hiredis writes whatever was queued in
 * one loop turn with one write (pipelining), and Redis answers in order.
 * A connection that fails (connect refused, connect timeout, AUTH refused,
 * reset, or stalled: commands pending and no reply for 4 x timeout, at
 * least 1 s) is closed; a per-slot watchdog timer notices connect timeouts
 * and stalls even when no new command comes. The slot then waits out a
 * backoff (100 ms doubling to 2 s, reset by the first reply on a new
 * connection) during which commands that find no other usable slot fail at
 * once with PT_ERR_UNAVAILABLE instead of waiting.
 *
 * hiredis calls back from three places: its read/write events (replies,
 * connect results), redisAsyncFree() (every pending command with a NULL
 * reply, then the disconnect callback), and never from
 * redisAsyncCommandArgv() itself, so pt_redis_command() cannot call its
 * caller back synchronously.
 */
#include "core/xalloc.h"
#include "core/config.h"
#include "upstream/redis.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/worker.h"
#include "portico/status.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define STALL_MIN_MS 1000
#define ARGV_STACK 16
#define REPLY_STACK 16

typedef struct rset rset_t;
typedef struct rslot rslot_t;

typedef enum { SLOT_DOWN = 0, SLOT_CONNECTING, SLOT_READY } slot_state_t;

struct rslot {
    rset_t *set;
    redisAsyncContext *ac; /* NULL while down */
    slot_state_t state;
    unsigned inflight;     /* commands (ours and the caller's) hiredis still holds */
    uint64_t progress_ms;  /* last reply, or when inflight went 0 -> 1 */
    uint64_t retry_ms;     /* while down: no new connection before this time */
    uint64_t backoff_ms;   /* current backoff; 0 after a good reply */
    bool quiet;            /* a failure was logged: no more lines until a reply comes */
    struct event watchdog; /* connect timeout, then stalls (on_watchdog) */
};

struct rset {
    char *key;  /* pt_redis_target_t.key (malloc'd copy) */
    char *name; /* for log lines */
    char *host, *unix_path, *username, *password;
    uint16_t port;
    uint32_t db;
    uint64_t timeout_ms, connect_timeout_ms;
    uint32_t max_pending;
    unsigned pending; /* caller commands awaiting a reply (max_pending) */
    rslot_t *slots;
    unsigned slot_cnt, cursor;
    pt_redis_cmd_t *cmds; /* caller commands whose callback has not run */
    pt_worker_t *w;
    rset_t *next;
};

typedef struct rworker {
    rset_t *sets;
    bool disposing; /* worker exit: no new command (a CANCELED callback may try) */
} rworker_t;

struct pt_redis_cmd {
    rslot_t *slot;  /* NULL once hiredis handed it back */
    pt_redis_cb cb; /* NULL once the callback ran */
    void *ud;
    struct event tmo;
    pt_redis_cmd_t *prev, *next; /* in set->cmds while cb != NULL */
};

static char *xstrdup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

/* One line for the first failure of a streak, one when replies come again:
 * a Redis that stays down must not fill the log at every backoff. */
static void __attribute__((format(printf, 2, 3))) slot_log(rslot_t *sl, const char *fmt, ...)
{
    if (sl->quiet)
        return;
    sl->quiet = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "portico: worker %u: redis %s: %s (retrying quietly)\n", sl->set->w->id,
            sl->set->name, msg);
}

static void slot_replied(rslot_t *sl)
{
    sl->progress_ms = pt_now_ms();
    sl->backoff_ms = 0;
    if (sl->quiet) {
        sl->quiet = false;
        fprintf(stderr, "portico: worker %u: redis %s: answering again\n", sl->set->w->id,
                sl->set->name);
    }
}

/* ---- reply conversion --------------------------------------------------------- */

static size_t reply_count(const redisReply *r)
{
    size_t n = 1;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            n += reply_count(r->element[i]);
    return n;
}

/* Fills `dst` from `r`; children go to `*next` onwards (pre-order layout). */
static bool reply_fill(const redisReply *r, pt_redis_reply_t *dst, pt_redis_reply_t **next)
{
    memset(dst, 0, sizeof(*dst));
    switch (r->type) {
    case REDIS_REPLY_NIL:
        dst->type = PT_REDIS_NIL;
        return true;
    case REDIS_REPLY_INTEGER:
        dst->type = PT_REDIS_INT;
        dst->integer = r->integer;
        return true;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        dst->type = r->type == REDIS_REPLY_STRING   ? PT_REDIS_STRING
                    : r->type == REDIS_REPLY_STATUS ? PT_REDIS_STATUS
                                                    : PT_REDIS_ERROR;
        dst->str = (pt_str_t){r->str != NULL ? r->str : "", r->len};
        return true;
    case REDIS_REPLY_ARRAY: {
        dst->type = PT_REDIS_ARRAY;
        pt_redis_reply_t *kids = *next;
        *next += r->elements;
        dst->elements = kids;
        dst->element_cnt = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            if (!reply_fill(r->element[i], &kids[i], next))
                return false;
        return true;
    }
    default:
        return false;
    }
}

const pt_redis_reply_t *pt__redis_reply_convert(const struct redisReply *r, pt_redis_reply_t *nodes,
                                                size_t cap, pt_redis_reply_t **heap)
{
    *heap = NULL;
    size_t n = reply_count(r);
    pt_redis_reply_t *v = nodes;
    if (n > cap) {
        v = calloc(n, sizeof(*v));
        if (v == NULL)
            return NULL;
        *heap = v;
    }
    pt_redis_reply_t *next = v + 1;
    if (!reply_fill(r, v, &next)) {
        free(*heap);
        *heap = NULL;
        return NULL;
    }
    return v;
}

/* ---- commands ------------------------------------------------------------------- */

static void cmd_unlink(rset_t *s, pt_redis_cmd_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->cmds = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Runs the caller's callback once; the command stays while hiredis holds it. */
static void cmd_complete(rset_t *s, pt_redis_cmd_t *c, int status, const pt_redis_reply_t *reply)
{
    pt_redis_cb cb = c->cb;
    if (cb == NULL)
        return;
    c->cb = NULL;
    evtimer_del(&c->tmo);
    cmd_unlink(s, c);
    cb(status, reply, c->ud);
}

static void slot_close(rslot_t *sl, const char *why);

static void slot_forget(rslot_t *sl, const redisAsyncContext *ac);

/* hiredis hands a caller command back: with its reply, or NULL when the connection went. */
static void on_cmd_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pt_redis_cmd_t *c = privdata;
    rslot_t *sl = c->slot;
    rset_t *s = sl->set;
    c->slot = NULL;
    if (sl->inflight > 0) /* 0 when a new connection of the slot reset it */
        sl->inflight--;
    s->pending--;
    redisReply *reply = r;
    if (reply != NULL) {
        slot_replied(sl);
    } else {
        /* The connection is going (hiredis runs the NULL replies before the
         * disconnect callback, which will then find the slot already let go):
         * commands sent from the callbacks below must not pick it. */
        if (sl->ac == ac && ac->err != 0)
            slot_log(sl, "connection lost: %s", ac->errstr);
        slot_forget(sl, ac);
    }
    if (c->cb != NULL) {
        if (reply == NULL) {
            cmd_complete(s, c, PT_ERR_UNAVAILABLE, NULL);
        } else {
            pt_redis_reply_t nodes[REPLY_STACK], *heap = NULL;
            const pt_redis_reply_t *pr = pt__redis_reply_convert(reply, nodes, REPLY_STACK, &heap);
            if (pr != NULL)
                cmd_complete(s, c, 0, pr);
            else
                cmd_complete(s, c, PT_ERR_UNAVAILABLE, NULL);
            free(heap);
        }
    }
    free(c);
}

static uint64_t stall_ms(const rset_t *s)
{
    return s->timeout_ms * 4 > STALL_MIN_MS ? s->timeout_ms * 4 : STALL_MIN_MS;
}

static void watchdog_arm(rslot_t *sl, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&sl->watchdog, &tv);
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pt_redis_cmd_t *c = arg;
    rslot_t *sl = c->slot; /* still held by hiredis: a timer runs only before the reply */
    rset_t *s = sl->set;
    cmd_complete(s, c, PT_ERR_TIMEOUT, NULL);
    /* `c` may be freed from here on (the callback may have closed things).
     * A command late by its timeout may just be slow; a connection with no
     * reply at all for stall_ms is dead or black-holed: the watchdog checks
     * then, whether or not more commands come to time out. */
    if (sl->ac == NULL || sl->state != SLOT_READY || sl->inflight == 0)
        return;
    uint64_t idle = pt_now_ms() - sl->progress_ms;
    if (idle >= stall_ms(s))
        slot_close(sl, "no reply (stalled)");
    else if (!evtimer_pending(&sl->watchdog, NULL))
        watchdog_arm(sl, stall_ms(s) - idle);
}

/* ---- connections ---------------------------------------------------------------- */

static void slot_backoff(rslot_t *sl)
{
    sl->backoff_ms = sl->backoff_ms == 0                   ? BACKOFF_FIRST_MS
                     : sl->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                           : sl->backoff_ms * 2;
    sl->retry_ms = pt_now_ms() + sl->backoff_ms;
}

/* The slot forgets its context first, so hiredis' callbacks during the free
 * (NULL replies, disconnect) find nothing left to tear down twice. */
static void slot_close(rslot_t *sl, const char *why)
{
    redisAsyncContext *ac = sl->ac;
    if (ac == NULL)
        return;
    if (why != NULL)
        slot_log(sl, "%s", why);
    sl->ac = NULL;
    sl->state = SLOT_DOWN;
    ac->data = NULL;
    evtimer_del(&sl->watchdog);
    slot_backoff(sl);
    redisAsyncFree(ac);
}

/* The connection `ac` of slot `sl` is going away inside hiredis (which frees
 * it): the slot lets go of it and waits out its backoff. */
static void slot_forget(rslot_t *sl, const redisAsyncContext *ac)
{
    if (sl == NULL || sl->ac != ac)
        return;
    sl->ac = NULL;
    sl->state = SLOT_DOWN;
    evtimer_del(&sl->watchdog);
    slot_backoff(sl);
}

/* hiredis frees the context itself after these two callbacks. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    rslot_t *sl = ac->data;
    if (sl == NULL || sl->ac != ac)
        return;
    evtimer_del(&sl->watchdog); /* connected: from now on it watches for stalls */
    if (status == REDIS_OK) {
        sl->state = SLOT_READY;
        return;
    }
    slot_log(sl, "connect failed: %s", ac->errstr);
    slot_forget(sl, ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rslot_t *sl = ac->data;
    if (sl == NULL || sl->ac != ac)
        return;
    if (status != REDIS_OK)
        slot_log(sl, "connection lost: %s", ac->errstr);
    slot_forget(sl, ac);
}

/* The slot's watchdog: a connect that takes too long, or (armed by a
 * command timeout) a connection that stopped answering. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rslot_t *sl = arg;
    if (sl->state == SLOT_CONNECTING) {
        slot_close(sl, "connect timed out");
        return;
    }
    if (sl->ac == NULL || sl->inflight == 0)
        return;
    uint64_t idle = pt_now_ms() - sl->progress_ms;
    if (idle >= stall_ms(sl->set))
        slot_close(sl, "no reply (stalled)");
    else
        watchdog_arm(sl, stall_ms(sl->set) - idle);
}

/* AUTH / SELECT replies: a refusal makes the connection useless for everyone. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    rslot_t *sl = ac->data;
    redisReply *reply = r;
    if (sl == NULL || sl->ac != ac)
        return; /* closing: NULL reply */
    if (sl->inflight > 0)
        sl->inflight--;
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR)
        slot_replied(sl);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        slot_log(sl, "%s refused: %.*s", privdata != NULL ? "AUTH" : "SELECT", (int)reply->len,
                 reply->str);
        /* inside a hiredis callback: the free happens when it returns, and the
         * commands queued behind complete with PT_ERR_UNAVAILABLE */
        slot_close(sl, NULL);
    }
}

static int slot_queue(rslot_t *sl, int argc, const char **argv, const size_t *lens,
                      redisCallbackFn *fn, void *privdata)
{
    if (redisAsyncCommandArgv(sl->ac, fn, privdata, argc, argv, lens) != REDIS_OK)
        return PT_ERR_UNAVAILABLE;
    if (sl->inflight++ == 0)
        sl->progress_ms = pt_now_ms();
    return 0;
}

/* Opens the slot's connection and queues AUTH / SELECT. 0 or PT_ERR_UNAVAILABLE. */
static int slot_connect(rslot_t *sl)
{
    rset_t *s = sl->set;
    redisAsyncContext *ac = s->unix_path != NULL ? redisAsyncConnectUnix(s->unix_path)
                                                 : redisAsyncConnect(s->host, s->port);
    if (ac == NULL)
        abort(); /* hiredis returns NULL only when out of memory */
    if (ac->err != 0) {
        slot_log(sl, "connect failed: %s", ac->errstr);
        redisAsyncFree(ac);
        slot_backoff(sl);
        return PT_ERR_UNAVAILABLE;
    }
    if (s->unix_path == NULL)
        redisEnableKeepAlive(&ac->c); /* a peer that vanished is noticed even when idle */
    ac->data = sl;
    redisLibeventAttach(ac, s->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    sl->ac = ac;
    sl->state = SLOT_CONNECTING;
    sl->inflight = 0; /* what a previous connection left is gone with it */
    watchdog_arm(sl, s->connect_timeout_ms);
    int rc = 0;
    if (s->password != NULL) {
        const char *argv[3] = {"AUTH", s->username, s->password};
        size_t lens[3] = {4, 0, strlen(s->password)};
        if (s->username != NULL) {
            lens[1] = strlen(s->username);
            rc = slot_queue(sl, 3, argv, lens, on_setup_reply, sl);
        } else {
            argv[1] = s->password;
            lens[1] = lens[2];
            rc = slot_queue(sl, 2, argv, lens, on_setup_reply, sl);
        }
    }
    if (rc == 0 && s->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%u", s->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        rc = slot_queue(sl, 2, argv, lens, on_setup_reply, NULL);
    }
    if (rc != 0)
        slot_close(sl, "cannot queue AUTH/SELECT");
    return rc;
}

/* A slot that can take a command now, round robin: a live slot, or a down
 * one whose backoff expired (connected here: this is both the lazy first
 * connection and the reconnect). NULL when none can. */
static rslot_t *pick_slot(rset_t *s)
{
    uint64_t now = 0;
    for (unsigned i = 0; i < s->slot_cnt; i++) {
        rslot_t *sl = &s->slots[(s->cursor + i) % s->slot_cnt];
        if (sl->ac == NULL) {
            if (now == 0)
                now = pt_now_ms();
            if (now < sl->retry_ms || slot_connect(sl) != 0)
                continue;
        }
        s->cursor = (unsigned)((sl - s->slots) + 1) % s->slot_cnt;
        return sl;
    }
    return NULL;
}

/* ---- per-worker sets ----------------------------------------------------------- */

static rset_t *set_new(pt_worker_t *w, const pt_redis_target_t *t)
{
    rset_t *s = pt_xcalloc(1, sizeof(*s));
    s->w = w;
    s->key = xstrdup_or_null(t->key);
    s->name = xstrdup_or_null(t->name);
    s->host = xstrdup_or_null(t->host);
    s->unix_path = xstrdup_or_null(t->unix_path);
    s->username = xstrdup_or_null(t->username);
    s->password = xstrdup_or_null(t->password);
    s->port = t->port;
    s->db = t->db;
    s->timeout_ms = t->timeout_ms;
    s->connect_timeout_ms = t->connect_timeout_ms;
    s->max_pending = t->max_pending;
    s->slot_cnt = t->connections;
    s->slots = pt_xcalloc(1, s->slot_cnt * sizeof(*s->slots));
    for (unsigned i = 0; i < s->slot_cnt; i++) {
        s->slots[i].set = s;
        evtimer_assign(&s->slots[i].watchdog, w->base, on_watchdog, &s->slots[i]);
    }
    return s;
}

static void set_free(rset_t *s)
{
    /* callers first: they get CANCELED, then hiredis returns what it holds */
    while (s->cmds != NULL)
        cmd_complete(s, s->cmds, PT_ERR_CANCELED, NULL);
    for (unsigned i = 0; i < s->slot_cnt; i++)
        slot_close(&s->slots[i], NULL);
    free(s->slots);
    free(s->key);
    free(s->name);
    free(s->host);
    free(s->unix_path);
    free(s->username);
    if (s->password != NULL)
        memset(s->password, 0, strlen(s->password));
    free(s->password);
    free(s);
}

static rset_t *set_of(pt_worker_t *w, const pt_redis_target_t *t)
{
    rworker_t *rw = w->redis;
    if (rw == NULL)
        w->redis = rw = pt_xcalloc(1, sizeof(*rw));
    for (rset_t *s = rw->sets; s != NULL; s = s->next)
        if (strcmp(s->key, t->key) == 0)
            return s;
    rset_t *s = set_new(w, t);
    s->next = rw->sets;
    rw->sets = s;
    return s;
}

void pt__redis_worker_gc(pt_worker_t *w)
{
    rworker_t *rw = w->redis;
    if (rw == NULL)
        return;
    const pt_config_t *c = w->config;
    rset_t **pp = &rw->sets;
    while (*pp != NULL) {
        rset_t *s = *pp;
        bool used = s->pending != 0 || s->cmds != NULL;
        for (size_t i = 0; !used && c != NULL && i < c->redis_target_cnt; i++)
            used = strcmp(c->redis_targets[i].key, s->key) == 0;
        for (const pt_redis_target_t *t = c != NULL ? c->redis_inline : NULL; !used && t != NULL;
             t = t->next_inline)
            used = strcmp(t->key, s->key) == 0;
        if (used) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        set_free(s);
    }
}

/* What w->redis points to after dispose: commands from later teardown steps
 * (a filter's worker_dispose) fail instead of opening new connections. */
static const rworker_t closed_worker = {.sets = NULL, .disposing = true};

void pt__redis_worker_dispose(pt_worker_t *w)
{
    rworker_t *rw = w != NULL ? w->redis : NULL;
    if (rw == NULL || rw == &closed_worker)
        return;
    rw->disposing = true;
    while (rw->sets != NULL) {
        rset_t *s = rw->sets;
        rw->sets = s->next;
        set_free(s);
    }
    free(rw);
    w->redis = (void *)&closed_worker; /* never written through: disposing stays true */
}

/* ---- SDK ----------------------------------------------------------------------- */

/* Commands that would change the shared connection's state for everyone on it. */
static bool cmd_refused(pt_str_t name)
{
    static const char *const refused[] = {
        "subscribe",    "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
        "sunsubscribe", "monitor",    "select",     "auth",        "hello",
        "reset",        "quit",       "sync",       "psync",       NULL};
    for (size_t i = 0; refused[i] != NULL; i++)
        if (name.len == strlen(refused[i]) && strncasecmp(name.base, refused[i], name.len) == 0)
            return true;
    return false;
}

int pt_redis_command(pt_worker_t *w, const pt_redis_target_t *t, size_t argc, const pt_str_t *argv,
                     pt_redis_cb cb, void *ud, pt_redis_cmd_t **out)
{
    if (w == NULL || t == NULL || cb == NULL || argv == NULL || argc == 0 ||
        argc > PT_REDIS_MAX_ARGS || w != pt_worker_self() || cmd_refused(argv[0]))
        return PT_ERR_INVALID;
    if (w->redis != NULL && ((rworker_t *)w->redis)->disposing)
        return PT_ERR_UNAVAILABLE;
    rset_t *s = set_of(w, t);
    if (s->pending >= s->max_pending)
        return PT_ERR_LIMIT;
    rslot_t *sl = pick_slot(s);
    if (sl == NULL)
        return PT_ERR_UNAVAILABLE;

    const char *sv[ARGV_STACK];
    size_t sl_lens[ARGV_STACK];
    const char **av = sv;
    size_t *lens = sl_lens;
    if (argc > ARGV_STACK) {
        av = malloc(argc * sizeof(*av));
        lens = malloc(argc * sizeof(*lens));
        if (av == NULL || lens == NULL)
            abort();
    }
    for (size_t i = 0; i < argc; i++) {
        av[i] = argv[i].base != NULL ? argv[i].base : "";
        lens[i] = argv[i].len;
    }
    pt_redis_cmd_t *c = pt_xcalloc(1, sizeof(*c));
    c->slot = sl;
    c->cb = cb;
    c->ud = ud;
    int rc = slot_queue(sl, (int)argc, av, lens, on_cmd_reply, c);
    if (av != sv) {
        free(av);
        free(lens);
    }
    if (rc != 0) {
        free(c);
        return rc;
    }
    s->pending++;
    c->next = s->cmds;
    if (s->cmds != NULL)
        s->cmds->prev = c;
    s->cmds = c;
    evtimer_assign(&c->tmo, w->base, on_cmd_timeout, c);
    struct timeval tv = {(time_t)(t->timeout_ms / 1000),
                         (suseconds_t)(t->timeout_ms % 1000) * 1000};
    evtimer_add(&c->tmo, &tv);
    if (out != NULL)
        *out = c;
    return 0;
}

void pt_redis_cancel(pt_redis_cmd_t *cmd)
{
    if (cmd == NULL || cmd->cb == NULL || cmd->slot == NULL)
        return;
    cmd_complete(cmd->slot->set, cmd, PT_ERR_CANCELED, NULL);
}
