/*
 * store.c -- the Bookstore's in-memory data (see store.h).
 *
 * Stored shelves and books are protobuf-c messages owned by the store. Every
 * answer is built from them under the lock and handed out as a deep copy
 * (bs_msg_clone), so callers never see memory another thread may free. That
 * costs a pack + unpack per answer, which is nothing next to the network for
 * an example service; the benchmark path (Echo) does not touch the store.
 *
 * Shelves and books are kept in id order (ids only grow), which makes page
 * tokens simple: a token is the decimal id of the last item returned.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct shelf_rec {
    Bookstore__V1__Shelf *shelf; /* owned; book_count kept up to date */
    Bookstore__V1__Book **books; /* owned, in id order */
    size_t book_cnt, book_cap;
    bs_cover_t cover;            /* owned; all zero until a cover is put */
} shelf_rec_t;

typedef struct event_rec {
    int64_t shelf;
    Bookstore__V1__ShelfEvent *ev; /* owned; NULL for an unused slot */
} event_rec_t;

struct bs_store {
    pthread_mutex_t mu;
    shelf_rec_t **shelves; /* in id order */
    size_t shelf_cnt, shelf_cap;
    int64_t next_shelf_id, next_book_id;
    event_rec_t ring[BS_EVENT_RING];
    /* Events logged so far. Written under mu; read without it by watchers
     * that only want to know whether anything happened. */
    _Atomic uint64_t event_seq;
};

/* ---- helpers --------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

void *bs_msg_clone(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = xcalloc(1, len);
    protobuf_c_message_pack(m, buf);
    void *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    if (copy == NULL) /* only OOM: we packed it ourselves */
        abort();
    return copy;
}

void bs_now(Google__Protobuf__Timestamp *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ts->seconds = now.tv_sec;
    ts->nanos = (int32_t)now.tv_nsec;
}

static int fail(bs_error_t *err, grpc_status_code code, const char *field, const char *fmt, ...)
{
    va_list ap;
    memset(err, 0, sizeof(*err));
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (field != NULL)
        snprintf(err->field, sizeof(err->field), "%s", field);
    return -1;
}

static int not_found(bs_error_t *err, int64_t shelf, int64_t book)
{
    if (book == 0) {
        fail(err, GRPC_STATUS_NOT_FOUND, NULL, "shelf %" PRId64 " not found", shelf);
        snprintf(err->resource_type, sizeof(err->resource_type), "bookstore.v1.Shelf");
        snprintf(err->resource_name, sizeof(err->resource_name), "shelves/%" PRId64, shelf);
    } else {
        fail(err, GRPC_STATUS_NOT_FOUND, NULL, "book %" PRId64 " not found", book);
        snprintf(err->resource_type, sizeof(err->resource_type), "bookstore.v1.Book");
        snprintf(err->resource_name, sizeof(err->resource_name),
                 "shelves/%" PRId64 "/books/%" PRId64, shelf, book);
    }
    return -1;
}

static int already_exists(bs_error_t *err, const char *type, const char *name, const char *what)
{
    fail(err, GRPC_STATUS_ALREADY_EXISTS, NULL, "%s", what);
    snprintf(err->resource_type, sizeof(err->resource_type), "%s", type);
    snprintf(err->resource_name, sizeof(err->resource_name), "%s", name);
    return -1;
}

static shelf_rec_t *find_shelf(bs_store_t *s, int64_t id)
{
    /* Binary search: shelves are in id order. */
    size_t lo = 0, hi = s->shelf_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t mid_id = s->shelves[mid]->shelf->id;
        if (mid_id == id)
            return s->shelves[mid];
        if (mid_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static ssize_t find_book(const shelf_rec_t *r, int64_t id)
{
    for (size_t i = 0; i < r->book_cnt; i++)
        if (r->books[i]->id == id)
            return (ssize_t)i;
    return -1;
}

static const Bookstore__V1__Book *find_title(const shelf_rec_t *r, const char *title)
{
    for (size_t i = 0; i < r->book_cnt; i++)
        if (strcmp(r->books[i]->title, title) == 0)
            return r->books[i];
    return NULL;
}

/* Page sizes and tokens are shared by ListShelves and ListBooks. */
static int parse_paging(int32_t page_size, const char *token, size_t *limit, int64_t *after,
                        bs_error_t *err)
{
    if (page_size < 0 || page_size > BS_MAX_PAGE_SIZE)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "page_size",
                    "page_size must be between 0 and %d", BS_MAX_PAGE_SIZE);
    *limit = page_size == 0 ? BS_DEFAULT_PAGE_SIZE : (size_t)page_size;
    *after = 0;
    if (token != NULL && token[0] != '\0') {
        char *end;
        errno = 0;
        long long v = strtoll(token, &end, 10);
        if (errno != 0 || *end != '\0' || v <= 0 || token[0] == '+' || token[0] == ' ')
            return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "page_token", "invalid page_token");
        *after = v;
    }
    return 0;
}

static char *token_for(int64_t last_id)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, last_id);
    return strdup(buf);
}

/* ---- events ------------------------------------------------------------------ */

/* Logs a change; called with the lock held. `book` may be NULL. */
static void log_event(bs_store_t *s, int64_t shelf, Bookstore__V1__ShelfEvent__Type type,
                      const Bookstore__V1__Book *book)
{
    Bookstore__V1__ShelfEvent ev = BOOKSTORE__V1__SHELF_EVENT__INIT;
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bs_now(&now);
    ev.type = type;
    ev.shelf = shelf;
    ev.book = (Bookstore__V1__Book *)book;
    ev.event_time = &now;

    uint64_t seq = atomic_load(&s->event_seq);
    event_rec_t *slot = &s->ring[seq % BS_EVENT_RING];
    if (slot->ev != NULL)
        protobuf_c_message_free_unpacked(&slot->ev->base, NULL);
    slot->shelf = shelf;
    slot->ev = bs_msg_clone(&ev.base);
    atomic_store(&s->event_seq, seq + 1);
}

uint64_t bs_store_event_seq(bs_store_t *s)
{
    return atomic_load(&s->event_seq);
}

int bs_store_watch_begin(bs_store_t *s, int64_t shelf, uint64_t *cursor, bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (find_shelf(s, shelf) == NULL)
        rc = not_found(err, shelf, 0);
    else
        *cursor = atomic_load(&s->event_seq);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_next_event(bs_store_t *s, int64_t shelf, uint64_t *cursor,
                        Bookstore__V1__ShelfEvent **out)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    uint64_t head = atomic_load(&s->event_seq);
    if (head - *cursor > BS_EVENT_RING) {
        rc = -1;
    } else {
        for (; *cursor < head; (*cursor)++) {
            event_rec_t *e = &s->ring[*cursor % BS_EVENT_RING];
            if (e->shelf == shelf) {
                *out = bs_msg_clone(&e->ev->base);
                (*cursor)++;
                rc = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- validation ------------------------------------------------------------- */

static int check_shelf(const Bookstore__V1__Shelf *sh, bs_error_t *err)
{
    if (sh == NULL || sh->theme == NULL || sh->theme[0] == '\0')
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "shelf.theme", "shelf.theme is required");
    if (strlen(sh->theme) > BS_MAX_THEME_LEN)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "shelf.theme",
                    "shelf.theme is longer than %d bytes", BS_MAX_THEME_LEN);
    if (sh->n_labels > BS_MAX_LABELS)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "shelf.labels", "at most %d labels",
                    BS_MAX_LABELS);
    for (size_t i = 0; i < sh->n_labels; i++)
        if (sh->labels[i]->key[0] == '\0')
            return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "shelf.labels",
                        "label keys must not be empty");
    return 0;
}

static int check_book(const Bookstore__V1__Book *b, const char *where, bs_error_t *err)
{
    if (b == NULL)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book", "%sbook is required", where);
    if (b->title[0] == '\0')
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.title", "%sbook.title is required",
                    where);
    if (b->author[0] == '\0')
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.author", "%sbook.author is required",
                    where);
    if (strlen(b->title) > BS_MAX_TEXT_LEN || strlen(b->author) > BS_MAX_TEXT_LEN)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT,
                    strlen(b->title) > BS_MAX_TEXT_LEN ? "book.title" : "book.author",
                    "%stitle and author are limited to %d bytes", where, BS_MAX_TEXT_LEN);
    /* proto3 enums are open: the wire may carry any number. */
    if (protobuf_c_enum_descriptor_get_value(&bookstore__v1__genre__descriptor, b->genre) == NULL)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.genre", "%sunknown genre %d", where,
                    (int)b->genre);
    if (b->pages < 0)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.pages",
                    "%sbook.pages must not be negative", where);
    if (b->n_tags > BS_MAX_TAGS)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.tags", "%sat most %d tags", where,
                    BS_MAX_TAGS);
    for (size_t i = 0; i < b->n_tags; i++) {
        size_t len = strlen(b->tags[i]);
        if (len == 0 || len > BS_MAX_TAG_LEN)
            return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "book.tags",
                        "%stags must be 1 to %d bytes", where, BS_MAX_TAG_LEN);
    }
    return 0;
}

/* ---- shelves ------------------------------------------------------------------ */

static bool has_labels(const Bookstore__V1__Shelf *sh,
                       Bookstore__V1__ListShelvesRequest__LabelsEntry *const *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < sh->n_labels && !found; j++)
            found = strcmp(sh->labels[j]->key, want[i]->key) == 0 &&
                    strcmp(sh->labels[j]->value, want[i]->value) == 0;
        if (!found)
            return false;
    }
    return true;
}

int bs_store_list_shelves(bs_store_t *s, const Bookstore__V1__ListShelvesRequest *req,
                          Bookstore__V1__ListShelvesResponse **out, bs_error_t *err)
{
    size_t limit;
    int64_t after;
    if (parse_paging(req->page_size, req->page_token, &limit, &after, err) < 0)
        return -1;

    Bookstore__V1__ListShelvesResponse resp = BOOKSTORE__V1__LIST_SHELVES_RESPONSE__INIT;
    pthread_mutex_lock(&s->mu);
    resp.shelves = xcalloc(s->shelf_cnt, sizeof(*resp.shelves));
    for (size_t i = 0; i < s->shelf_cnt; i++) {
        Bookstore__V1__Shelf *sh = s->shelves[i]->shelf;
        if (sh->id <= after || !has_labels(sh, req->labels, req->n_labels))
            continue;
        if (resp.n_shelves == limit) { /* there is at least one more */
            resp.next_page_token = token_for(resp.shelves[limit - 1]->id);
            break;
        }
        resp.shelves[resp.n_shelves++] = sh;
    }
    *out = bs_msg_clone(&resp.base);
    pthread_mutex_unlock(&s->mu);
    free(resp.shelves);
    if (resp.next_page_token != protobuf_c_empty_string) /* the INIT value */
        free(resp.next_page_token);
    return 0;
}

/* Adds a shelf; called with the lock held. */
static const Bookstore__V1__Shelf *add_shelf(bs_store_t *s, const Bookstore__V1__Shelf *tmpl)
{
    Bookstore__V1__Shelf sh = *tmpl;
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bs_now(&now);
    sh.id = s->next_shelf_id++;
    sh.create_time = &now;
    sh.book_count = 0;
    sh.cover_type = ""; /* output only */
    sh.cover_size = 0;

    shelf_rec_t *r = xcalloc(1, sizeof(*r));
    r->shelf = bs_msg_clone(&sh.base);
    if (s->shelf_cnt == s->shelf_cap) {
        s->shelf_cap = s->shelf_cap ? 2 * s->shelf_cap : 8;
        s->shelves = xrealloc(s->shelves, s->shelf_cap * sizeof(*s->shelves));
    }
    s->shelves[s->shelf_cnt++] = r;
    return r->shelf;
}

int bs_store_create_shelf(bs_store_t *s, const Bookstore__V1__CreateShelfRequest *req,
                          Bookstore__V1__Shelf **out, bs_error_t *err)
{
    if (check_shelf(req->shelf, err) < 0)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->shelf_cnt; i++) {
        if (strcmp(s->shelves[i]->shelf->theme, req->shelf->theme) == 0) {
            char name[48];
            snprintf(name, sizeof(name), "shelves/%" PRId64, s->shelves[i]->shelf->id);
            rc = already_exists(err, "bookstore.v1.Shelf", name,
                                "a shelf with this theme already exists");
            break;
        }
    }
    if (rc == 0)
        *out = bs_msg_clone(&add_shelf(s, req->shelf)->base);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_get_shelf(bs_store_t *s, const Bookstore__V1__GetShelfRequest *req,
                       Bookstore__V1__Shelf **out, bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    if (r == NULL)
        rc = not_found(err, req->shelf, 0);
    else
        *out = bs_msg_clone(&r->shelf->base);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void free_shelf_rec(shelf_rec_t *r)
{
    for (size_t i = 0; i < r->book_cnt; i++)
        protobuf_c_message_free_unpacked(&r->books[i]->base, NULL);
    free(r->books);
    bs_cover_dispose(&r->cover);
    protobuf_c_message_free_unpacked(&r->shelf->base, NULL);
    free(r);
}

int bs_store_delete_shelf(bs_store_t *s, const Bookstore__V1__DeleteShelfRequest *req,
                          bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    if (r == NULL) {
        rc = not_found(err, req->shelf, 0);
    } else if (r->book_cnt > 0 && !req->force) {
        rc = fail(err, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                  "shelf %" PRId64 " holds %zu books; set force to delete them too", req->shelf,
                  r->book_cnt);
    } else {
        size_t i = 0;
        while (s->shelves[i] != r)
            i++;
        memmove(&s->shelves[i], &s->shelves[i + 1], (s->shelf_cnt - i - 1) * sizeof(r));
        s->shelf_cnt--;
        log_event(s, req->shelf, BOOKSTORE__V1__SHELF_EVENT__TYPE__SHELF_DELETED, NULL);
        free_shelf_rec(r);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- covers ------------------------------------------------------------------- */

static char *xstrdup(const char *p)
{
    size_t n = strlen(p) + 1;
    char *d = xcalloc(1, n);
    memcpy(d, p, n);
    return d;
}

/* Appends text to an SVG with &, <, >, " and ' escaped. */
static size_t xml_escape(char *out, const char *in)
{
    size_t o = 0;
    for (; *in != '\0'; in++) {
        const char *e = *in == '&'    ? "&amp;"
                        : *in == '<'  ? "&lt;"
                        : *in == '>'  ? "&gt;"
                        : *in == '"'  ? "&quot;"
                        : *in == '\'' ? "&apos;"
                                      : NULL;
        if (e != NULL) {
            memcpy(out + o, e, strlen(e));
            o += strlen(e);
        } else {
            out[o++] = *in;
        }
    }
    return o;
}

/* The cover a shelf has until one is put: its theme on a plain background. */
static void default_cover(const Bookstore__V1__Shelf *sh, bs_cover_t *out)
{
    static const char head[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" "
                               "height=\"300\"><rect width=\"200\" height=\"300\" "
                               "fill=\"#2a4d69\"/><text x=\"100\" y=\"150\" "
                               "text-anchor=\"middle\" fill=\"#ffffff\">";
    static const char tail[] = "</text></svg>\n";
    /* an escape is at most 6 bytes per input byte */
    char *svg = xcalloc(1, sizeof(head) + 6 * strlen(sh->theme) + sizeof(tail));
    size_t n = sizeof(head) - 1;
    memcpy(svg, head, n);
    n += xml_escape(svg + n, sh->theme);
    memcpy(svg + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    out->content_type = xstrdup("image/svg+xml");
    out->data = (uint8_t *)svg;
    out->len = n;
}

int bs_store_get_cover(bs_store_t *s, int64_t shelf, bs_cover_t *out, bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, shelf);
    if (r == NULL) {
        rc = not_found(err, shelf, 0);
    } else if (r->cover.len == 0) {
        default_cover(r->shelf, out);
    } else {
        out->content_type = xstrdup(r->cover.content_type);
        out->data = xcalloc(1, r->cover.len);
        memcpy(out->data, r->cover.data, r->cover.len);
        out->len = r->cover.len;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int check_cover(const Google__Api__HttpBody *c, bs_error_t *err)
{
    if (c == NULL || c->content_type[0] == '\0')
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "cover.content_type",
                    "cover.content_type is required");
    size_t n = strlen(c->content_type);
    bool slash = false, printable = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c->content_type[i];
        printable &= ch >= 0x20 && ch <= 0x7e; /* it becomes an HTTP header */
        slash |= ch == '/';
    }
    if (n > BS_MAX_COVER_TYPE || !slash || !printable)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "cover.content_type",
                    "cover.content_type must be a media type (type/subtype, printable ASCII, "
                    "at most %d bytes)",
                    BS_MAX_COVER_TYPE);
    if (c->data.len == 0 || c->data.len > BS_MAX_COVER)
        return fail(err, GRPC_STATUS_INVALID_ARGUMENT, "cover.data",
                    "cover.data must be 1 to %d bytes", BS_MAX_COVER);
    return 0;
}

int bs_store_put_cover(bs_store_t *s, const Bookstore__V1__PutShelfCoverRequest *req,
                       Bookstore__V1__Shelf **out, bs_error_t *err)
{
    if (check_cover(req->cover, err) < 0)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    if (r == NULL) {
        rc = not_found(err, req->shelf, 0);
    } else {
        bs_cover_dispose(&r->cover);
        r->cover.content_type = xstrdup(req->cover->content_type);
        r->cover.data = xcalloc(1, req->cover->data.len);
        memcpy(r->cover.data, req->cover->data.data, req->cover->data.len);
        r->cover.len = req->cover->data.len;
        /* A new stored shelf with the cover fields (its strings belong to
         * protobuf-c, so the message is rebuilt rather than patched). */
        Bookstore__V1__Shelf tmp = *r->shelf;
        tmp.cover_type = r->cover.content_type;
        tmp.cover_size = (int32_t)r->cover.len;
        Bookstore__V1__Shelf *updated = bs_msg_clone(&tmp.base);
        protobuf_c_message_free_unpacked(&r->shelf->base, NULL);
        r->shelf = updated;
        *out = bs_msg_clone(&updated->base);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void bs_cover_dispose(bs_cover_t *c)
{
    free(c->content_type);
    free(c->data);
    memset(c, 0, sizeof(*c));
}

/* ---- books -------------------------------------------------------------------- */

static bool has_tags(const Bookstore__V1__Book *b, char *const *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n_tags && !found; j++)
            found = strcmp(b->tags[j], tags[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static bool matches(const Bookstore__V1__Book *b, const Bookstore__V1__BookFilter *f)
{
    if (f == NULL)
        return true;
    if (f->genre != BOOKSTORE__V1__GENRE__GENRE_UNSPECIFIED && b->genre != f->genre)
        return false;
    if (f->author[0] != '\0' && strcmp(b->author, f->author) != 0)
        return false;
    return has_tags(b, f->tags, f->n_tags);
}

int bs_store_list_books(bs_store_t *s, const Bookstore__V1__ListBooksRequest *req,
                        Bookstore__V1__ListBooksResponse **out, bs_error_t *err)
{
    size_t limit;
    int64_t after;
    if (parse_paging(req->page_size, req->page_token, &limit, &after, err) < 0)
        return -1;

    Bookstore__V1__ListBooksResponse resp = BOOKSTORE__V1__LIST_BOOKS_RESPONSE__INIT;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    if (r == NULL) {
        rc = not_found(err, req->shelf, 0);
        goto out;
    }
    resp.books = xcalloc(r->book_cnt, sizeof(*resp.books));
    for (size_t i = 0; i < r->book_cnt; i++) {
        Bookstore__V1__Book *b = r->books[i];
        if (b->id <= after || !matches(b, req->filter))
            continue;
        if (resp.n_books == limit) {
            resp.next_page_token = token_for(resp.books[limit - 1]->id);
            break;
        }
        resp.books[resp.n_books++] = b;
    }
    *out = bs_msg_clone(&resp.base);
out:
    pthread_mutex_unlock(&s->mu);
    free(resp.books);
    if (resp.next_page_token != protobuf_c_empty_string)
        free(resp.next_page_token);
    return rc;
}

/* Adds a (checked) book to a shelf; called with the lock held. */
static const Bookstore__V1__Book *add_book(bs_store_t *s, shelf_rec_t *r,
                                           const Bookstore__V1__Book *tmpl)
{
    Bookstore__V1__Book b = *tmpl;
    Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bs_now(&now);
    b.id = s->next_book_id++;
    b.shelf = r->shelf->id;
    b.create_time = &now;
    if (r->book_cnt == r->book_cap) {
        r->book_cap = r->book_cap ? 2 * r->book_cap : 8;
        r->books = xrealloc(r->books, r->book_cap * sizeof(*r->books));
    }
    Bookstore__V1__Book *stored = bs_msg_clone(&b.base);
    r->books[r->book_cnt++] = stored;
    r->shelf->book_count = (int32_t)r->book_cnt;
    log_event(s, r->shelf->id, BOOKSTORE__V1__SHELF_EVENT__TYPE__BOOK_CREATED, stored);
    return stored;
}

static int title_taken(bs_error_t *err, const shelf_rec_t *r, const Bookstore__V1__Book *b)
{
    char name[96];
    snprintf(name, sizeof(name), "shelves/%" PRId64 "/books/%" PRId64, r->shelf->id, b->id);
    return already_exists(err, "bookstore.v1.Book", name,
                          "the shelf already has a book with this title");
}

int bs_store_create_book(bs_store_t *s, const Bookstore__V1__CreateBookRequest *req,
                         Bookstore__V1__Book **out, bs_error_t *err)
{
    if (check_book(req->book, "", err) < 0)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    const Bookstore__V1__Book *dup;
    if (r == NULL)
        rc = not_found(err, req->shelf, 0);
    else if ((dup = find_title(r, req->book->title)) != NULL)
        rc = title_taken(err, r, dup);
    else
        *out = bs_msg_clone(&add_book(s, r, req->book)->base);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_get_book(bs_store_t *s, const Bookstore__V1__GetBookRequest *req,
                      Bookstore__V1__Book **out, bs_error_t *err)
{
    int rc = -1;
    pthread_mutex_lock(&s->mu);
    if (req->shelf == 0) { /* any shelf */
        for (size_t i = 0; i < s->shelf_cnt && rc < 0; i++) {
            ssize_t j = find_book(s->shelves[i], req->book);
            if (j >= 0) {
                *out = bs_msg_clone(&s->shelves[i]->books[j]->base);
                rc = 0;
            }
        }
        if (rc < 0)
            not_found(err, 0, req->book);
    } else {
        shelf_rec_t *r = find_shelf(s, req->shelf);
        ssize_t j;
        if (r == NULL) {
            not_found(err, req->shelf, 0);
        } else if ((j = find_book(r, req->book)) < 0) {
            not_found(err, req->shelf, req->book);
        } else {
            *out = bs_msg_clone(&r->books[j]->base);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_delete_book(bs_store_t *s, const Bookstore__V1__DeleteBookRequest *req,
                         bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, req->shelf);
    ssize_t j = -1;
    if (r == NULL) {
        rc = not_found(err, req->shelf, 0);
    } else if ((j = find_book(r, req->book)) < 0) {
        rc = not_found(err, req->shelf, req->book);
    } else {
        Bookstore__V1__Book *b = r->books[j];
        memmove(&r->books[j], &r->books[j + 1], (r->book_cnt - (size_t)j - 1) * sizeof(b));
        r->book_cnt--;
        r->shelf->book_count = (int32_t)r->book_cnt;
        log_event(s, r->shelf->id, BOOKSTORE__V1__SHELF_EVENT__TYPE__BOOK_DELETED, b);
        protobuf_c_message_free_unpacked(&b->base, NULL);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_check_create_book(bs_store_t *s, const Bookstore__V1__CreateBookRequest *req,
                               size_t index, bs_error_t *err)
{
    char where[40];
    snprintf(where, sizeof(where), "message %zu: ", index);
    if (index >= BS_MAX_BULK)
        return fail(err, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                    "at most %d books per BulkCreateBooks call", BS_MAX_BULK);
    if (check_book(req->book, where, err) < 0)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (find_shelf(s, req->shelf) == NULL)
        rc = not_found(err, req->shelf, 0);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int bs_store_bulk_create(bs_store_t *s, Bookstore__V1__CreateBookRequest *const *reqs, size_t n,
                         Bookstore__V1__BulkCreateBooksResponse **out, bs_error_t *err)
{
    Bookstore__V1__BulkCreateBooksResponse resp = BOOKSTORE__V1__BULK_CREATE_BOOKS_RESPONSE__INIT;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    /* Check everything first, so that either all books are added or none. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        shelf_rec_t *r = find_shelf(s, reqs[i]->shelf);
        const Bookstore__V1__Book *dup;
        if (r == NULL) {
            rc = not_found(err, reqs[i]->shelf, 0);
        } else if ((dup = find_title(r, reqs[i]->book->title)) != NULL) {
            rc = title_taken(err, r, dup);
        } else {
            for (size_t j = 0; j < i && rc == 0; j++)
                if (reqs[j]->shelf == reqs[i]->shelf &&
                    strcmp(reqs[j]->book->title, reqs[i]->book->title) == 0)
                    rc = fail(err, GRPC_STATUS_ALREADY_EXISTS, "book.title",
                              "messages %zu and %zu have the same title", j, i);
        }
    }
    if (rc == 0) {
        resp.books = xcalloc(n, sizeof(*resp.books));
        for (size_t i = 0; i < n; i++)
            resp.books[resp.n_books++] =
                (Bookstore__V1__Book *)add_book(s, find_shelf(s, reqs[i]->shelf), reqs[i]->book);
        *out = bs_msg_clone(&resp.base);
    }
    pthread_mutex_unlock(&s->mu);
    free(resp.books);
    return rc;
}

int bs_store_book_at(bs_store_t *s, int64_t shelf, uint64_t index, Bookstore__V1__Book **out,
                     size_t *book_count, bs_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    shelf_rec_t *r = find_shelf(s, shelf);
    if (r == NULL) {
        rc = not_found(err, shelf, 0);
    } else {
        *book_count = r->book_cnt;
        if (r->book_cnt > 0) {
            *out = bs_msg_clone(&r->books[index % r->book_cnt]->base);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- lifetime ----------------------------------------------------------------- */

static void seed(bs_store_t *s)
{
    static const struct {
        const char *theme, *floor;
        struct {
            const char *title, *author;
            Bookstore__V1__Genre genre;
            int32_t pages;
            const char *tag;
        } books[3];
    } data[] = {
        {"Fiction",
         "1",
         {{"The Lord of the Rings", "J. R. R. Tolkien", BOOKSTORE__V1__GENRE__FICTION, 1178,
           "classic"},
          {"Dune", "Frank Herbert", BOOKSTORE__V1__GENRE__SCIENCE_FICTION, 412, "classic"},
          {"Neuromancer", "William Gibson", BOOKSTORE__V1__GENRE__SCIENCE_FICTION, 271,
           "cyberpunk"}}},
        {"Computing",
         "2",
         {{"The C Programming Language", "Brian W. Kernighan", BOOKSTORE__V1__GENRE__COMPUTING, 272,
           "c"},
          {"Structure and Interpretation of Computer Programs", "Harold Abelson",
           BOOKSTORE__V1__GENRE__COMPUTING, 657, "lisp"},
          {NULL, NULL, 0, 0, NULL}}},
    };
    for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++) {
        Bookstore__V1__Shelf sh = BOOKSTORE__V1__SHELF__INIT;
        Bookstore__V1__Shelf__LabelsEntry floor = BOOKSTORE__V1__SHELF__LABELS_ENTRY__INIT;
        Bookstore__V1__Shelf__LabelsEntry *labels[] = {&floor};
        floor.key = "floor";
        floor.value = (char *)data[i].floor;
        sh.theme = (char *)data[i].theme;
        sh.n_labels = 1;
        sh.labels = labels;
        shelf_rec_t *r = find_shelf(s, add_shelf(s, &sh)->id);
        for (size_t j = 0; j < 3 && data[i].books[j].title != NULL; j++) {
            Bookstore__V1__Book b = BOOKSTORE__V1__BOOK__INIT;
            char *tags[] = {(char *)data[i].books[j].tag};
            b.title = (char *)data[i].books[j].title;
            b.author = (char *)data[i].books[j].author;
            b.genre = data[i].books[j].genre;
            b.pages = data[i].books[j].pages;
            b.n_tags = 1;
            b.tags = tags;
            add_book(s, r, &b);
        }
    }
}

bs_store_t *bs_store_new(void)
{
    bs_store_t *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->next_shelf_id = 1;
    s->next_book_id = 1;
    atomic_init(&s->event_seq, 0);
    seed(s);
    return s;
}

void bs_store_free(bs_store_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->shelf_cnt; i++)
        free_shelf_rec(s->shelves[i]);
    free(s->shelves);
    for (size_t i = 0; i < BS_EVENT_RING; i++)
        if (s->ring[i].ev != NULL)
            protobuf_c_message_free_unpacked(&s->ring[i].ev->base, NULL);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
