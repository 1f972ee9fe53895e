/*
 * redis_sync.c -- blocking Redis commands for threads that have no worker
 * loop (admin endpoints registered by filters): see portico/redis.h.
 *
 * One connection per pt_redis_sync_open(), with the target's connect and
 * command timeouts, AUTH and SELECT done first. Never used on a worker.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/config.h"
#include "upstream/redis.h"
#include "portico/status.h"

struct pt_redis_sync {
    redisContext *c;
};

static struct timeval tv_of(uint64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* Runs argv and returns the hiredis reply (NULL when the connection failed). */
static redisReply *run(redisContext *c, size_t argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, (int)argc, argv, lens);
}

pt_redis_sync_t *pt_redis_sync_open(const pt_redis_target_t *t, char *err, size_t errlen)
{
    struct timeval ct = tv_of(t->connect_timeout_ms);
    redisContext *c = t->unix_path != NULL ? redisConnectUnixWithTimeout(t->unix_path, ct)
                                           : redisConnectWithTimeout(t->host, t->port, ct);
    if (c == NULL || c->err != 0) {
        snprintf(err, errlen, "redis %s: %s", t->name, c != NULL ? c->errstr : "out of memory");
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv_of(t->timeout_ms));
    redisReply *r = NULL;
    if (t->password != NULL) {
        const char *argv[3] = {"AUTH", t->username != NULL ? t->username : t->password, t->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(t->password)};
        r = run(c, t->username != NULL ? 3 : 2, argv, lens);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    if (t->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%u", t->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        r = run(c, 2, argv, lens);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    pt_redis_sync_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        redisFree(c);
        snprintf(err, errlen, "redis %s: out of memory", t->name);
        return NULL;
    }
    s->c = c;
    return s;
fail:
    snprintf(err, errlen, "redis %s: %s", t->name,
             r != NULL ? "AUTH or SELECT refused" : (c->errstr[0] != '\0' ? c->errstr : "no reply"));
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

int pt_redis_sync_command(pt_redis_sync_t *s, size_t argc, const pt_str_t *argv, pt_redis_cb cb,
                          void *ud)
{
    if (s == NULL || s->c == NULL || argc == 0 || argc > PT_REDIS_MAX_ARGS || cb == NULL)
        return PT_ERR_INVALID;
    const char **av = calloc(argc, sizeof(*av));
    size_t *lens = calloc(argc, sizeof(*lens));
    if (av == NULL || lens == NULL) {
        free(av);
        free(lens);
        return PT_ERR_NOMEM;
    }
    for (size_t i = 0; i < argc; i++) {
        av[i] = argv[i].base != NULL ? argv[i].base : "";
        lens[i] = argv[i].len;
    }
    redisReply *r = run(s->c, argc, av, lens);
    free(av);
    free(lens);
    if (r == NULL) {
        int st = s->c->err == REDIS_ERR_IO && s->c->errstr[0] != '\0' &&
                         strstr(s->c->errstr, "temporarily unavailable") != NULL
                     ? PT_ERR_TIMEOUT
                     : PT_ERR_UNAVAILABLE;
        redisFree(s->c); /* the connection's state is unknown: no further command on it */
        s->c = NULL;
        return st;
    }
    pt_redis_reply_t nodes[16], *heap = NULL;
    const pt_redis_reply_t *rep = pt__redis_reply_convert(r, nodes, 16, &heap);
    int rc = 0;
    if (rep != NULL)
        cb(0, rep, ud);
    else
        rc = PT_ERR_NOMEM;
    free(heap);
    freeReplyObject(r);
    return rc;
}

void pt_redis_sync_close(pt_redis_sync_t *s)
{
    if (s == NULL)
        return;
    if (s->c != NULL)
        redisFree(s->c);
    free(s);
}
