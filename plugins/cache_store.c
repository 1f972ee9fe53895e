/*
 * cache_store.c -- the sharded LRU local tier of the `cache` filter (see
 * cache_store.h) and the entry format shared through Redis.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/cache_store.h"

#define MAX_SHARDS 16u
#define LOCK_SCAN_MAX 64 /* lapsed lock records dropped per cs_lock call */

typedef struct cs_lockrec {
    struct cs_lockrec *next;
    uint64_t hash;
    int64_t until_ms;      /* owned until (lapses after) */
    int64_t pass_until_ms; /* pass state until */
    bool owned;
    size_t key_len;
    char key[];
} cs_lockrec_t;

typedef struct cs_shard {
    pthread_mutex_t mu;
    cs_entry_t **buckets;
    size_t nbuckets, count;
    cs_entry_t *head, *tail; /* LRU: head most recent */
    uint64_t bytes, cap;
    cs_lockrec_t *locks;
} cs_shard_t;

struct cs_store {
    unsigned nshards;
    cs_stats_t stats;
    cs_shard_t shards[MAX_SHARDS];
};

static uint64_t hash_key(pt_str_t k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < k.len; i++) {
        h ^= (unsigned char)k.base[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

cs_store_t *cs_store_new(uint64_t max_size, uint64_t max_object)
{
    cs_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    /* As many shards as keep a shard able to hold four of the largest objects. */
    unsigned n = MAX_SHARDS;
    while (n > 1 && max_size / n < 4 * (max_object != 0 ? max_object : 1))
        n /= 2;
    s->nshards = n;
    for (unsigned i = 0; i < n; i++) {
        cs_shard_t *sh = &s->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->nbuckets = 64;
        sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
        sh->cap = max_size / n;
        if (sh->buckets == NULL) {
            s->nshards = i + 1;
            cs_store_free(s);
            return NULL;
        }
    }
    return s;
}

void cs_store_free(cs_store_t *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->nshards; i++) {
        cs_shard_t *sh = &s->shards[i];
        for (cs_entry_t *e = sh->head, *next; e != NULL; e = next) {
            next = e->next;
            cs_entry_unref(e);
        }
        for (cs_lockrec_t *l = sh->locks, *next; l != NULL; l = next) {
            next = l->next;
            free(l);
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    free(s);
}

cs_stats_t *cs_store_stats(cs_store_t *s) { return &s->stats; }
unsigned cs_store_shards(const cs_store_t *s) { return s->nshards; }

/* ---- entries ---------------------------------------------------------------- */

cs_entry_t *cs_entry_new(pt_str_t key, int status, const pt_header_t *hdrs, size_t hdr_cnt,
                         pt_str_t vary, size_t body_len)
{
    size_t strings = key.len + vary.len + 2;
    for (size_t i = 0; i < hdr_cnt; i++)
        strings += hdrs[i].name.len + hdrs[i].value.len + 2;
    size_t total = sizeof(cs_entry_t) + hdr_cnt * sizeof(pt_header_t) + strings + body_len;
    if (body_len > SIZE_MAX / 2 || total < body_len)
        return NULL;
    cs_entry_t *e = calloc(1, total);
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    e->status = status;
    e->charge = total;
    e->hdrs = (pt_header_t *)(e + 1);
    e->hdr_cnt = hdr_cnt;
    char *p = (char *)(e->hdrs + hdr_cnt);
#define COPY(dst, src)                                                                             \
    do {                                                                                           \
        if ((src).len != 0)                                                                        \
            memcpy(p, (src).base, (src).len);                                                      \
        (dst) = (pt_str_t){p, (src).len};                                                          \
        p += (src).len;                                                                            \
        *p++ = '\0';                                                                               \
    } while (0)
    COPY(e->key, key);
    COPY(e->vary, vary);
    for (size_t i = 0; i < hdr_cnt; i++) {
        COPY(e->hdrs[i].name, hdrs[i].name);
        COPY(e->hdrs[i].value, hdrs[i].value);
    }
#undef COPY
    e->body = (pt_str_t){p, body_len};
    e->hash = hash_key(e->key);
    return e;
}

char *cs_entry_body(cs_entry_t *e) { return (char *)e->body.base; }

cs_entry_t *cs_entry_ref(cs_entry_t *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void cs_entry_unref(cs_entry_t *e)
{
    if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

int64_t cs_entry_age(const cs_entry_t *e, int64_t now_ms)
{
    int64_t resident = now_ms > e->resp_ms ? (now_ms - e->resp_ms) / 1000 : 0;
    return e->initial_age + resident;
}

bool cs_entry_fresh(const cs_entry_t *e, int64_t now_ms)
{
    return cs_entry_age(e, now_ms) < e->lifetime;
}

pt_str_t cs_entry_header(const cs_entry_t *e, pt_str_t name)
{
    for (size_t i = 0; i < e->hdr_cnt; i++)
        if (pt_str_eq(e->hdrs[i].name, name))
            return e->hdrs[i].value;
    return PT_STR_NULL;
}

/* ---- the table (shard lock held) ------------------------------------------- */

static cs_shard_t *shard_of(cs_store_t *s, uint64_t h) { return &s->shards[(h >> 56) & (s->nshards - 1)]; }

static cs_entry_t **slot_of(cs_shard_t *sh, uint64_t h, pt_str_t key)
{
    cs_entry_t **pp = &sh->buckets[h & (sh->nbuckets - 1)];
    while (*pp != NULL && !((*pp)->hash == h && pt_str_eq((*pp)->key, key)))
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(cs_shard_t *sh, cs_entry_t *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        sh->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        sh->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(cs_shard_t *sh, cs_entry_t *e)
{
    e->next = sh->head;
    e->prev = NULL;
    if (sh->head != NULL)
        sh->head->prev = e;
    sh->head = e;
    if (sh->tail == NULL)
        sh->tail = e;
}

static void remove_entry(cs_store_t *s, cs_shard_t *sh, cs_entry_t *e)
{
    cs_entry_t **pp = slot_of(sh, e->hash, e->key);
    if (*pp == e)
        *pp = e->hnext;
    e->hnext = NULL;
    lru_unlink(sh, e);
    sh->count--;
    sh->bytes -= e->charge;
    atomic_fetch_sub_explicit(&s->stats.bytes, (int64_t)e->charge, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->stats.entries, 1, memory_order_relaxed);
    cs_entry_unref(e);
}

static void grow(cs_shard_t *sh)
{
    size_t n = sh->nbuckets * 2;
    cs_entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < sh->nbuckets; i++) {
        for (cs_entry_t *e = sh->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = n;
}

cs_entry_t *cs_get(cs_store_t *s, pt_str_t key, int64_t now_ms)
{
    uint64_t h = hash_key(key);
    cs_shard_t *sh = shard_of(s, h);
    pthread_mutex_lock(&sh->mu);
    cs_entry_t *e = *slot_of(sh, h, key);
    if (e != NULL && e->keep_until_ms <= now_ms) {
        remove_entry(s, sh, e);
        e = NULL;
    }
    if (e != NULL) {
        lru_unlink(sh, e);
        lru_front(sh, e);
        cs_entry_ref(e);
    }
    pthread_mutex_unlock(&sh->mu);
    return e;
}

bool cs_put(cs_store_t *s, cs_entry_t *e)
{
    cs_shard_t *sh = shard_of(s, e->hash);
    if (e->charge > sh->cap)
        return false;
    pthread_mutex_lock(&sh->mu);
    cs_entry_t **pp = slot_of(sh, e->hash, e->key);
    if (*pp != NULL)
        remove_entry(s, sh, *pp);
    pp = slot_of(sh, e->hash, e->key);
    cs_entry_ref(e);
    e->hnext = NULL;
    *pp = e;
    lru_front(sh, e);
    sh->count++;
    sh->bytes += e->charge;
    atomic_fetch_add_explicit(&s->stats.bytes, (int64_t)e->charge, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->stats.entries, 1, memory_order_relaxed);
    while (sh->bytes > sh->cap && sh->tail != NULL && sh->tail != e) {
        remove_entry(s, sh, sh->tail);
        atomic_fetch_add_explicit(&s->stats.evictions, 1, memory_order_relaxed);
    }
    if (sh->count > sh->nbuckets)
        grow(sh);
    pthread_mutex_unlock(&sh->mu);
    return true;
}

bool cs_key_matches(pt_str_t key, pt_str_t host, pt_str_t path, bool prefix)
{
    const char *sep = memchr(key.base, CS_KEY_SEP, key.len);
    if (sep == NULL)
        return false;
    pt_str_t khost = {key.base, (size_t)(sep - key.base)};
    pt_str_t rest = {sep + 1, key.len - khost.len - 1};
    if (host.len != 0 && !pt_str_ieq(khost, host))
        return false;
    const char *v = memchr(rest.base, CS_VARY_SEP, rest.len);
    pt_str_t kpath = {rest.base, v != NULL ? (size_t)(v - rest.base) : rest.len};
    if (prefix)
        return pt_str_has_prefix(kpath, path);
    return pt_str_eq(kpath, path);
}

size_t cs_purge(cs_store_t *s, pt_str_t host, pt_str_t path, bool prefix)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->nshards; i++) {
        cs_shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (cs_entry_t *e = sh->head, *next; e != NULL; e = next) {
            next = e->next;
            if (cs_key_matches(e->key, host, path, prefix)) {
                remove_entry(s, sh, e);
                n++;
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    atomic_fetch_add_explicit(&s->stats.purged, n, memory_order_relaxed);
    return n;
}

/* ---- coalescing --------------------------------------------------------------- */

static bool lock_dead(const cs_lockrec_t *l, int64_t now_ms)
{
    return (!l->owned || l->until_ms <= now_ms) && l->pass_until_ms <= now_ms;
}

cs_lock_result_t cs_lock(cs_store_t *s, pt_str_t key, int64_t now_ms, int64_t hold_ms)
{
    uint64_t h = hash_key(key);
    cs_shard_t *sh = shard_of(s, h);
    cs_lock_result_t res = CS_LOCK_OWNER;
    pthread_mutex_lock(&sh->mu);
    cs_lockrec_t *found = NULL;
    unsigned dropped = 0;
    for (cs_lockrec_t **pp = &sh->locks; *pp != NULL;) {
        cs_lockrec_t *l = *pp;
        if (l->hash == h && l->key_len == key.len && memcmp(l->key, key.base, key.len) == 0) {
            found = l;
            pp = &l->next;
        } else if (dropped < LOCK_SCAN_MAX && lock_dead(l, now_ms)) {
            *pp = l->next;
            free(l);
            dropped++;
        } else {
            pp = &l->next;
        }
    }
    if (found != NULL && found->owned && found->until_ms > now_ms) {
        res = CS_LOCK_BUSY;
    } else if (found != NULL && found->pass_until_ms > now_ms) {
        res = CS_LOCK_PASS;
    } else {
        cs_lockrec_t *l = found;
        if (l == NULL) {
            l = malloc(sizeof(*l) + key.len);
            if (l != NULL) {
                l->hash = h;
                l->key_len = key.len;
                memcpy(l->key, key.base, key.len);
                l->next = sh->locks;
                sh->locks = l;
            }
        }
        if (l != NULL) { /* out of memory: the caller fetches without a lock */
            l->owned = true;
            l->until_ms = now_ms + hold_ms;
            l->pass_until_ms = 0;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return res;
}

void cs_unlock(cs_store_t *s, pt_str_t key, int64_t pass_until_ms)
{
    uint64_t h = hash_key(key);
    cs_shard_t *sh = shard_of(s, h);
    pthread_mutex_lock(&sh->mu);
    for (cs_lockrec_t **pp = &sh->locks; *pp != NULL; pp = &(*pp)->next) {
        cs_lockrec_t *l = *pp;
        if (l->hash == h && l->key_len == key.len && memcmp(l->key, key.base, key.len) == 0) {
            l->owned = false;
            l->pass_until_ms = pass_until_ms;
            if (pass_until_ms == 0) {
                *pp = l->next;
                free(l);
            }
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
}

/* ---- serialisation (the Redis tier) ------------------------------------------ */

#define MAGIC "PTC1"

static void put_u32(char **p, uint32_t v)
{
    memcpy(*p, &v, 4);
    *p += 4;
}
static void put_i64(char **p, int64_t v)
{
    memcpy(*p, &v, 8);
    *p += 8;
}
static void put_str(char **p, pt_str_t s)
{
    put_u32(p, (uint32_t)s.len);
    if (s.len != 0)
        memcpy(*p, s.base, s.len);
    *p += s.len;
}

char *cs_entry_encode(const cs_entry_t *e, size_t *len)
{
    size_t n = 4 + 4 * 3 + 8 * 4 + 4 + e->key.len + 4 + e->vary.len + 4 + 4 + e->body.len;
    for (size_t i = 0; i < e->hdr_cnt; i++)
        n += 8 + e->hdrs[i].name.len + e->hdrs[i].value.len;
    if (e->body.len > UINT32_MAX || e->hdr_cnt > UINT32_MAX)
        return NULL;
    char *buf = malloc(n), *p = buf;
    if (buf == NULL)
        return NULL;
    memcpy(p, MAGIC, 4);
    p += 4;
    put_u32(&p, (uint32_t)e->status);
    put_u32(&p, e->flags);
    put_u32(&p, (uint32_t)e->hdr_cnt);
    put_i64(&p, e->resp_ms);
    put_i64(&p, e->initial_age);
    put_i64(&p, e->lifetime);
    put_i64(&p, e->keep_until_ms);
    put_str(&p, e->key);
    put_str(&p, e->vary);
    for (size_t i = 0; i < e->hdr_cnt; i++) {
        put_str(&p, e->hdrs[i].name);
        put_str(&p, e->hdrs[i].value);
    }
    put_str(&p, e->body);
    *len = (size_t)(p - buf);
    return buf;
}

typedef struct rd {
    const char *p, *end;
    bool bad;
} rd_t;

static uint32_t get_u32(rd_t *r)
{
    uint32_t v = 0;
    if (r->bad || r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    memcpy(&v, r->p, 4);
    r->p += 4;
    return v;
}
static int64_t get_i64(rd_t *r)
{
    int64_t v = 0;
    if (r->bad || r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    memcpy(&v, r->p, 8);
    r->p += 8;
    return v;
}
static pt_str_t get_str(rd_t *r)
{
    uint32_t n = get_u32(r);
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return PT_STR_NULL;
    }
    pt_str_t s = {r->p, n};
    r->p += n;
    return s;
}

#define DECODE_MAX_HEADERS 256

cs_entry_t *cs_entry_decode(const char *buf, size_t len, pt_str_t key)
{
    if (len < 4 || memcmp(buf, MAGIC, 4) != 0)
        return NULL;
    rd_t r = {buf + 4, buf + len, false};
    uint32_t status = get_u32(&r), flags = get_u32(&r), cnt = get_u32(&r);
    int64_t resp_ms = get_i64(&r), initial_age = get_i64(&r), lifetime = get_i64(&r),
            keep = get_i64(&r);
    pt_str_t k = get_str(&r), vary = get_str(&r);
    if (r.bad || cnt > DECODE_MAX_HEADERS || status < 100 || status > 999 || !pt_str_eq(k, key) ||
        initial_age < 0 || lifetime < 0)
        return NULL;
    pt_header_t hdrs[DECODE_MAX_HEADERS];
    for (uint32_t i = 0; i < cnt; i++) {
        hdrs[i].name = get_str(&r);
        hdrs[i].value = get_str(&r);
    }
    pt_str_t body = get_str(&r);
    if (r.bad || r.p != r.end)
        return NULL;
    cs_entry_t *e = cs_entry_new(k, (int)status, hdrs, cnt, vary, body.len);
    if (e == NULL)
        return NULL;
    if (body.len != 0)
        memcpy(cs_entry_body(e), body.base, body.len);
    e->flags = flags;
    e->resp_ms = resp_ms;
    e->initial_age = initial_age;
    e->lifetime = lifetime;
    e->keep_until_ms = keep;
    return e;
}
