/*
 * store.h -- the Bookstore's in-memory data: shelves, books and a log of
 * recent changes.
 *
 * Independent of gRPC transport: requests come in and responses go out as
 * protobuf-c messages. Every function is thread-safe (one mutex guards the
 * whole store; the service is an example, not a database). Messages returned
 * through `out` parameters are fresh copies owned by the caller, to be freed
 * with protobuf_c_message_free_unpacked(msg, NULL). On OOM the process aborts.
 *
 * Errors: functions return 0, or -1 with `err` filled in (a gRPC status code,
 * a message, and what the error is about, for the error details).
 */
#ifndef BS_STORE_H
#define BS_STORE_H

#include <stdint.h>

#include <grpc/status.h>

#include "bookstore.pb-c.h"

/* Limits on client input; over them a request is INVALID_ARGUMENT. */
#define BS_MAX_THEME_LEN 256
#define BS_MAX_TEXT_LEN 1024 /* author, title */
#define BS_MAX_LABELS 16
#define BS_MAX_TAGS 16
#define BS_MAX_TAG_LEN 64
#define BS_MAX_PAGE_SIZE 1000
#define BS_DEFAULT_PAGE_SIZE 50
#define BS_MAX_BULK 1000 /* books per BulkCreateBooks call: RESOURCE_EXHAUSTED above */
#define BS_MAX_COVER (1024 * 1024) /* bytes of a shelf cover */
#define BS_MAX_COVER_TYPE 128      /* bytes of its content type */

/** Why a call failed; becomes the gRPC status and its details. */
typedef struct bs_error {
    grpc_status_code code;
    char message[256];
    /* INVALID_ARGUMENT: the offending field (google.rpc.BadRequest), or "". */
    char field[64];
    /* NOT_FOUND / ALREADY_EXISTS: google.rpc.ResourceInfo, or "". */
    char resource_type[64];
    char resource_name[96];
} bs_error_t;

typedef struct bs_store bs_store_t;

/** Creates a store seeded with two shelves and a few books. */
bs_store_t *bs_store_new(void);

/** Frees the store. No other call may be running. NULL is accepted. */
void bs_store_free(bs_store_t *s);

int bs_store_list_shelves(bs_store_t *s, const Bookstore__V1__ListShelvesRequest *req,
                          Bookstore__V1__ListShelvesResponse **out, bs_error_t *err);
int bs_store_create_shelf(bs_store_t *s, const Bookstore__V1__CreateShelfRequest *req,
                          Bookstore__V1__Shelf **out, bs_error_t *err);
int bs_store_get_shelf(bs_store_t *s, const Bookstore__V1__GetShelfRequest *req,
                       Bookstore__V1__Shelf **out, bs_error_t *err);
int bs_store_delete_shelf(bs_store_t *s, const Bookstore__V1__DeleteShelfRequest *req,
                          bs_error_t *err);
int bs_store_list_books(bs_store_t *s, const Bookstore__V1__ListBooksRequest *req,
                        Bookstore__V1__ListBooksResponse **out, bs_error_t *err);
int bs_store_create_book(bs_store_t *s, const Bookstore__V1__CreateBookRequest *req,
                         Bookstore__V1__Book **out, bs_error_t *err);
int bs_store_get_book(bs_store_t *s, const Bookstore__V1__GetBookRequest *req,
                      Bookstore__V1__Book **out, bs_error_t *err);
int bs_store_delete_book(bs_store_t *s, const Bookstore__V1__DeleteBookRequest *req,
                         bs_error_t *err);

/**
 * Checks one BulkCreateBooks message without changing anything: the shelf
 * exists and the book is valid. `index` (0-based) names the message in the
 * error's field path.
 */
int bs_store_check_create_book(bs_store_t *s, const Bookstore__V1__CreateBookRequest *req,
                               size_t index, bs_error_t *err);

/**
 * Creates `n` books atomically: either all (the response lists them in order)
 * or none (a shelf has gone, or a title is taken or repeated in the batch).
 */
int bs_store_bulk_create(bs_store_t *s, Bookstore__V1__CreateBookRequest *const *reqs, size_t n,
                         Bookstore__V1__BulkCreateBooksResponse **out, bs_error_t *err);

/**
 * Returns the `(index % book_count)`th book of a shelf, for WatchBooks.
 * Returns 1 with `*out` set, 0 if the shelf is empty, -1 (NOT_FOUND) if the
 * shelf is gone. `*book_count` receives the number of books.
 */
int bs_store_book_at(bs_store_t *s, int64_t shelf, uint64_t index, Bookstore__V1__Book **out,
                     size_t *book_count, bs_error_t *err);

/** A shelf's cover: its bytes and content type, malloc'd copies. */
typedef struct bs_cover {
    char *content_type; /* NUL-terminated, never empty */
    uint8_t *data;
    size_t len;         /* > 0 */
} bs_cover_t;

/**
 * Copies the cover of `shelf` into `*out` (release with bs_cover_dispose):
 * the one last put, else an SVG showing the theme (image/svg+xml).
 * NOT_FOUND for an unknown shelf.
 */
int bs_store_get_cover(bs_store_t *s, int64_t shelf, bs_cover_t *out, bs_error_t *err);

/**
 * Stores req->cover as the shelf's cover and sets the shelf's cover_type and
 * cover_size; `*out` is the updated shelf. INVALID_ARGUMENT unless the cover
 * has a content type (printable ASCII, at most BS_MAX_COVER_TYPE bytes, with
 * a '/') and 1 to BS_MAX_COVER bytes of data; NOT_FOUND for an unknown shelf.
 */
int bs_store_put_cover(bs_store_t *s, const Bookstore__V1__PutShelfCoverRequest *req,
                       Bookstore__V1__Shelf **out, bs_error_t *err);

/** Frees what bs_store_get_cover() copied; the struct is zeroed. */
void bs_cover_dispose(bs_cover_t *c);

/*
 * Change events (WatchShelf). The store keeps the last BS_EVENT_RING
 * changes (book created/deleted, shelf deleted) numbered 0, 1, 2, ... A
 * watcher holds a cursor: the number of the next event it has not seen.
 */
#define BS_EVENT_RING 4096

/**
 * Starts watching a shelf: fails with NOT_FOUND if it does not exist, else
 * sets `*cursor` so that only later changes are reported.
 */
int bs_store_watch_begin(bs_store_t *s, int64_t shelf, uint64_t *cursor, bs_error_t *err);

/** The number of the next event to be logged (a cheap, lock-free read). */
uint64_t bs_store_event_seq(bs_store_t *s);

/**
 * Finds the next event for `shelf` at or after `*cursor` and advances the
 * cursor past it. Returns 1 with `*out` set, 0 if there is none yet, -1 if
 * events were overwritten before the watcher saw them (it fell too far
 * behind; the caller ends the stream).
 */
int bs_store_next_event(bs_store_t *s, int64_t shelf, uint64_t *cursor,
                        Bookstore__V1__ShelfEvent **out);

/** Deep-copies any message (pack + unpack). Aborts on OOM. */
void *bs_msg_clone(const ProtobufCMessage *m);

/** Sets `ts` to the current wall-clock time. */
void bs_now(Google__Protobuf__Timestamp *ts);

#endif /* BS_STORE_H */
