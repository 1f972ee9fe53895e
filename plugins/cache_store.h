/*
 * cache_store.h -- the local tier of the `cache` filter: stored answers
 * shared by all the workers of a process, bounded in bytes, LRU.
 *
 * The store is split in shards (a power of two, up to 16), each with its own
 * mutex, hash table and LRU list, so workers rarely wait for each other; a
 * shard holds max_size / shards bytes. Entries are immutable once inserted
 * and reference-counted: a worker serving a hit holds a reference while the
 * body goes out, and an entry evicted or replaced meanwhile is freed by the
 * last holder. A revalidation makes a new entry (same body, new headers and
 * times) that replaces the old one.
 *
 * The store also keeps the in-flight fetches for request coalescing
 * (cs_lock): one owner per key fetches from the upstream while the others
 * wait; see cache.c.
 */
#ifndef PT_PLUGINS_CACHE_STORE_H
#define PT_PLUGINS_CACHE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "portico/headers.h"
#include "portico/str.h"

enum {
    CS_MARKER = 1u << 0,   /* a Vary marker: `vary` lists the names; the answers are under secondary keys */
    CS_NO_CACHE = 1u << 1, /* stored with no-cache: revalidate before every use */
    CS_AUTH_OK = 1u << 2,  /* public / s-maxage / must-revalidate: may answer requests with Authorization */
    CS_MUST_REVALIDATE = 1u << 3,
};

typedef struct cs_entry cs_entry_t;
struct cs_entry {
    atomic_uint refs;
    cs_entry_t *hnext, *prev, *next; /* shard-owned links */
    uint64_t hash;
    size_t charge;         /* bytes counted against max_size */
    pt_str_t key;
    int status;
    unsigned flags;
    int64_t resp_ms;       /* wall clock (ms) when the answer arrived */
    int64_t initial_age;   /* seconds the answer was already old then */
    int64_t lifetime;      /* freshness lifetime, seconds */
    int64_t keep_until_ms; /* wall clock: dropped after this (kept past freshness to revalidate) */
    pt_str_t vary;         /* Vary names, '\n'-separated, lowercase ("" when none) */
    size_t hdr_cnt;
    pt_header_t *hdrs;     /* the stored response headers (no hop-by-hop, no length) */
    pt_str_t body;
};

typedef struct cs_stats {
    atomic_uint_fast64_t hits, misses, stale, bypass, stores, evictions, purged, too_big,
        coalesced, redis_hits, redis_errors, stale_if_error;
    atomic_int_fast64_t bytes, entries;
} cs_stats_t;

typedef struct cs_store cs_store_t;

cs_store_t *cs_store_new(uint64_t max_size, uint64_t max_object);
void cs_store_free(cs_store_t *s);
cs_stats_t *cs_store_stats(cs_store_t *s);
unsigned cs_store_shards(const cs_store_t *s);

/**
 * A new entry with room for `body_len` body bytes (filled by the caller
 * through cs_entry_body() before cs_put). Key, headers and vary are copied.
 * NULL when out of memory. One reference, the caller's.
 */
cs_entry_t *cs_entry_new(pt_str_t key, int status, const pt_header_t *hdrs, size_t hdr_cnt,
                         pt_str_t vary, size_t body_len);
char *cs_entry_body(cs_entry_t *e);
cs_entry_t *cs_entry_ref(cs_entry_t *e);
void cs_entry_unref(cs_entry_t *e);

/** The entry's current age (seconds) at wall time now_ms, and whether it is still fresh. */
int64_t cs_entry_age(const cs_entry_t *e, int64_t now_ms);
bool cs_entry_fresh(const cs_entry_t *e, int64_t now_ms);
/** A stored header's value, or base == NULL. */
pt_str_t cs_entry_header(const cs_entry_t *e, pt_str_t name);

/** The entry under `key`, with a reference for the caller, or NULL (entries past keep_until are dropped). */
cs_entry_t *cs_get(cs_store_t *s, pt_str_t key, int64_t now_ms);

/**
 * Inserts `e` (the store takes its own reference), replacing an entry with
 * the same key and evicting least recently used ones past the shard's
 * budget. Returns false (nothing stored) when the entry is larger than a
 * shard may hold.
 */
bool cs_put(cs_store_t *s, cs_entry_t *e);

/**
 * Removes the entries whose key's host part is `host` (any host when empty)
 * and whose path part (path and query, Vary variants included) equals
 * `path`, or starts with it when `prefix`. Returns how many were removed.
 */
size_t cs_purge(cs_store_t *s, pt_str_t host, pt_str_t path, bool prefix);

/* Keys: HOST "\x1f" PATH[?QUERY], a Vary variant adds "\x1e" and the values. */
#define CS_KEY_SEP '\x1f'
#define CS_VARY_SEP '\x1e'

/** Does `key` match a purge of (host, path, prefix)? (also used for the Redis tier's keys) */
bool cs_key_matches(pt_str_t key, pt_str_t host, pt_str_t path, bool prefix);

typedef enum cs_lock_result {
    CS_LOCK_OWNER, /* the caller fetches; it must cs_unlock() */
    CS_LOCK_BUSY,  /* another request fetches: wait */
    CS_LOCK_PASS,  /* the last fetch was not cacheable: go to the upstream, do not wait */
} cs_lock_result_t;

/** Coalescing: takes the fetch of `key`; a lock not released after hold_ms lapses. */
cs_lock_result_t cs_lock(cs_store_t *s, pt_str_t key, int64_t now_ms, int64_t hold_ms);

/**
 * Releases the fetch of `key`. With pass_until_ms > now, the waiters (and
 * requests arriving until then) go to the upstream without waiting: the
 * answer was not cacheable. Otherwise (stored, or the fetch failed) the next
 * waiter may take the lock.
 */
void cs_unlock(cs_store_t *s, pt_str_t key, int64_t pass_until_ms);

/* ---- the Redis tier's format ------------------------------------------------ */

/** Serialises `e` into a malloc'ed buffer (*len bytes). NULL when out of memory. */
char *cs_entry_encode(const cs_entry_t *e, size_t *len);

/**
 * An entry from bytes made by cs_entry_encode (whatever their origin: every
 * length is checked). NULL when they are not a valid entry for `key`.
 */
cs_entry_t *cs_entry_decode(const char *buf, size_t len, pt_str_t key);

#endif /* PT_PLUGINS_CACHE_STORE_H */
