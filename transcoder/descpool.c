/*
 * descpool.c -- loading FileDescriptorSets into an immutable descriptor pool.
 *
 * Loading has two steps. pt_descpool_add_set() unpacks a set with the
 * protobuf-c bindings of descriptor.proto and keeps the file protos. Then
 * pt_descpool_build() flattens every message, enum and service into plain
 * structs in one arena, resolves type names through a hash table of full
 * names, precomputes what the conversion hot path needs (JSON keys, packed-ness,
 * presence, wire types, number and name indexes) and frees the protos.
 *
 * Input is untrusted throughout: protobuf-c checks the wire format, a pre-pass
 * bounds the nesting depth (protobuf-c's unpacker is recursive), and every
 * name, number, label, type and reference is checked before use.
 */
#include "portico/transcoder/descpool.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "portico/transcoder/wkt.h"

#define MAX_NESTING 100          /* of messages inside a FileDescriptorSet */
#define MAX_FIELD_NUMBER 536870911u

typedef Google__Protobuf__FileDescriptorSet FileSet;
typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__DescriptorProto MsgProto;
typedef Google__Protobuf__FieldDescriptorProto FieldProto;
typedef Google__Protobuf__EnumDescriptorProto EnumProto;
typedef Google__Protobuf__ServiceDescriptorProto SvcProto;

enum sym_kind { SYM_MESSAGE = 1, SYM_ENUM, SYM_SERVICE, SYM_METHOD, SYM_PACKAGE };

typedef struct sym {
    const char *name; /* NULL = empty slot */
    uint32_t len, hash;
    uint8_t kind;
    void *ptr;
} sym_t;

typedef struct block {
    struct block *next;
    size_t used, cap;
    alignas(16) unsigned char data[];
} block_t;

/* A file proto waiting for build(), with the set it came from. */
typedef struct pending {
    const FileProto *fp;
    const char *origin;
} pending_t;

struct pt_descpool {
    atomic_uint refs;
    const pt_allocator_t *a;
    ProtobufCAllocator pca;
    bool built, failed, oom;
    block_t *blocks;

    /* before build */
    FileSet **sets;
    size_t set_cnt, set_cap;
    pending_t *pend;
    size_t pend_cnt, pend_cap;

    /* after build */
    pt_descfile_t *files;
    size_t file_cnt;
    pt_msgdesc_t *msgs;
    size_t msg_cnt;
    pt_enumdesc_t *enums;
    size_t enum_cnt;
    pt_svcdesc_t *svcs;
    size_t svc_cnt;
    sym_t *syms;
    uint32_t sym_mask;
};

/* ---- memory ---------------------------------------------------------------------- */

/* protobuf-c reports a failed allocation as a failed parse; the flag tells them apart. */
static void *pca_alloc(void *ud, size_t n)
{
    pt_descpool_t *p = ud;
    void *r = pt_xalloc(p->a, n);
    if (r == NULL)
        p->oom = true;
    return r;
}

static void pca_free(void *ud, void *ptr)
{
    pt_descpool_t *p = ud;
    pt_xfree(p->a, ptr);
}

/* Bump allocation from the pool's arena; everything built lives until the pool dies. */
static void *arena_alloc(pt_descpool_t *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    block_t *b = p->blocks;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = pt_xalloc(p->a, sizeof(block_t) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = p->blocks;
        p->blocks = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    return r;
}

static void *arena_zalloc(pt_descpool_t *p, size_t n)
{
    void *r = arena_alloc(p, n);
    if (r != NULL)
        memset(r, 0, n);
    return r;
}

/* Allocates cnt * size bytes, zeroed, refusing overflow. */
static void *arena_array(pt_descpool_t *p, size_t cnt, size_t size)
{
    if (size != 0 && cnt > (SIZE_MAX / 2) / size)
        return NULL;
    return arena_zalloc(p, cnt * size != 0 ? cnt * size : 1);
}

static char *arena_strndup(pt_descpool_t *p, const char *s, size_t n)
{
    char *r = arena_alloc(p, n + 1);
    if (r != NULL) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

/* "scope.name", or "name" when scope is empty. */
static char *arena_join(pt_descpool_t *p, const char *scope, const char *name)
{
    size_t sl = strlen(scope), nl = strlen(name);
    char *r = arena_alloc(p, sl + nl + 2);
    if (r == NULL)
        return NULL;
    size_t k = 0;
    if (sl) {
        memcpy(r, scope, sl); // NOLINT(bugprone-not-null-terminated-result): prefix; '.' and name follow
        r[sl] = '.';
        k = sl + 1;
    }
    memcpy(r + k, name, nl + 1);
    return r;
}

/* ---- lifecycle ------------------------------------------------------------------- */

int pt_descpool_new(const pt_allocator_t *a, pt_descpool_t **out, pt_xerr_t *err)
{
    if (a == NULL)
        a = pt_allocator_default();
    pt_descpool_t *p = pt_xalloc(a, sizeof *p);
    if (p == NULL)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    memset(p, 0, sizeof *p);
    atomic_init(&p->refs, 1);
    p->a = a;
    p->pca.alloc = pca_alloc;
    p->pca.free = pca_free;
    p->pca.allocator_data = p;
    *out = p;
    return 0;
}

/* Releases the unpacked protos (after build, or when the pool dies unbuilt). */
static void free_sets(pt_descpool_t *p)
{
    for (size_t i = 0; i < p->set_cnt; i++)
        google__protobuf__file_descriptor_set__free_unpacked(p->sets[i], &p->pca);
    pt_xfree(p->a, p->sets);
    pt_xfree(p->a, p->pend);
    p->sets = NULL;
    p->pend = NULL;
    p->set_cnt = p->set_cap = p->pend_cnt = p->pend_cap = 0;
}

void pt_descpool_ref(pt_descpool_t *p) { atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); }

void pt_descpool_unref(pt_descpool_t *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_sets(p);
    const pt_allocator_t *a = p->a;
    for (block_t *b = p->blocks, *next; b != NULL; b = next) {
        next = b->next;
        pt_xfree(a, b);
    }
    pt_xfree(a, p);
}

const pt_allocator_t *pt_descpool_allocator(const pt_descpool_t *p) { return p->a; }

/* ---- adding sets ------------------------------------------------------------------ */

/*
 * protobuf-c unpacks recursively, so a set nesting messages a million deep
 * would overflow the stack. This pre-pass walks the wire data with the
 * generated descriptors and refuses nesting deeper than MAX_NESTING. Wire
 * errors are left to the unpacker, which reports them.
 */
/* Reads a varint at s[*i]; false when truncated or over 10 bytes. */
static bool rd_varint(const uint8_t *s, size_t n, size_t *i, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*i >= n)
            return false;
        uint8_t b = s[(*i)++];
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

static bool nesting_ok(const ProtobufCMessageDescriptor *d, const uint8_t *s, size_t n, int depth)
{
    if (depth > MAX_NESTING)
        return false;
    size_t i = 0;
    while (i < n) {
        uint64_t key, v;
        if (!rd_varint(s, n, &i, &key))
            return true;
        switch (key & 7) {
        case 0:
            if (!rd_varint(s, n, &i, &v))
                return true;
            break;
        case 1:
            i += 8;
            break;
        case 5:
            i += 4;
            break;
        case 2: {
            if (!rd_varint(s, n, &i, &v) || v > n - i)
                return true;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3)) : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !nesting_ok(f->descriptor, s + i, (size_t)v, depth + 1))
                return false;
            i += (size_t)v;
            break;
        }
        default:
            return true; /* groups or garbage: the unpacker decides */
        }
    }
    return true;
}

/* True when two file protos serialize to the same bytes. */
static int same_contents(pt_descpool_t *p, const FileProto *x, const FileProto *y, bool *same)
{
    size_t nx = protobuf_c_message_get_packed_size(&x->base);
    size_t ny = protobuf_c_message_get_packed_size(&y->base);
    if (nx != ny) {
        *same = false;
        return 0;
    }
    uint8_t *bx = pt_xalloc(p->a, nx ? nx : 1), *by = pt_xalloc(p->a, ny ? ny : 1);
    int rc = PT_XERR_NOMEM;
    if (bx != NULL && by != NULL) {
        protobuf_c_message_pack(&x->base, bx);
        protobuf_c_message_pack(&y->base, by);
        *same = memcmp(bx, by, nx) == 0;
        rc = 0;
    }
    pt_xfree(p->a, bx);
    pt_xfree(p->a, by);
    return rc;
}

static const char *str_or(const char *s, const char *dflt) { return s != NULL ? s : dflt; }

int pt_descpool_add_set(pt_descpool_t *p, const uint8_t *data, size_t len, const char *origin,
                        pt_xerr_t *err)
{
    if (p->built || p->failed)
        return pt_xerr_set(err, PT_XERR_INVALID, NULL, "descriptor pool is already built");
    const char *org = origin ? origin : "<descriptor set>";
    if (!nesting_ok(&google__protobuf__file_descriptor_set__descriptor, data, len, 0))
        return pt_xerr_set(err, PT_XERR_CORRUPT, NULL, "%s: messages nested deeper than %d", org,
                           MAX_NESTING);
    p->oom = false;
    FileSet *fs = google__protobuf__file_descriptor_set__unpack(&p->pca, len, data);
    if (fs == NULL && p->oom)
        return pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
    if (fs == NULL)
        return pt_xerr_set(err, PT_XERR_CORRUPT, NULL, "%s: not a valid FileDescriptorSet", org);

    int rc = 0;
    char *org_copy = NULL;
    /* grow the arrays first, so that committing the set cannot fail half-way */
    if (p->set_cnt == p->set_cap) {
        size_t cap = p->set_cap ? p->set_cap * 2 : 4;
        FileSet **ns = p->a->realloc(p->a->ud, p->sets, cap * sizeof *ns);
        if (ns == NULL)
            goto nomem;
        p->sets = ns;
        p->set_cap = cap;
    }
    if (fs->n_file > SIZE_MAX / 4 / sizeof(pending_t) - p->pend_cnt)
        goto nomem;
    if (p->pend_cap - p->pend_cnt < fs->n_file) {
        size_t cap = p->pend_cnt + fs->n_file;
        cap = cap < 16 ? 16 : cap * 2;
        pending_t *np = p->a->realloc(p->a->ud, p->pend, cap * sizeof *np);
        if (np == NULL)
            goto nomem;
        p->pend = np;
        p->pend_cap = cap;
    }
    org_copy = arena_strndup(p, org, strlen(org));
    if (org_copy == NULL)
        goto nomem;

    size_t added = 0;
    for (size_t i = 0; i < fs->n_file; i++) {
        const FileProto *fp = fs->file[i];
        if (fp->name == NULL || fp->name[0] == '\0') {
            rc = pt_xerr_set(err, PT_XERR_CORRUPT, NULL, "%s: file #%zu has no name", org, i);
            goto fail;
        }
        /* duplicates among the files already in the pool and those just added */
        bool skip = false;
        for (size_t j = 0; j < p->pend_cnt + added; j++) {
            if (strcmp(p->pend[j].fp->name, fp->name) != 0)
                continue;
            bool same;
            if (same_contents(p, p->pend[j].fp, fp, &same) != 0)
                goto nomem;
            if (!same) {
                rc = pt_xerr_set(err, PT_XERR_INVALID, NULL,
                                 "%s: file %s is also defined by %s with different contents", org,
                                 fp->name, p->pend[j].origin);
                goto fail;
            }
            skip = true;
            break;
        }
        if (!skip)
            p->pend[p->pend_cnt + added++] = (pending_t){fp, org_copy};
    }
    p->pend_cnt += added;
    p->sets[p->set_cnt++] = fs;
    return 0;

nomem:
    rc = pt_xerr_set(err, PT_XERR_NOMEM, NULL, "out of memory");
fail:
    google__protobuf__file_descriptor_set__free_unpacked(fs, &p->pca);
    return rc;
}

/* ---- symbol table ----------------------------------------------------------------- */

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static const sym_t *sym_find(const pt_descpool_t *p, const char *name, size_t len)
{
    if (p->syms == NULL || len > UINT32_MAX)
        return NULL;
    uint32_t h = hash_name(name, len);
    for (uint32_t i = h & p->sym_mask;; i = (i + 1) & p->sym_mask) {
        const sym_t *s = &p->syms[i];
        if (s->name == NULL)
            return NULL;
        if (s->hash == h && s->len == len && memcmp(s->name, name, len) == 0)
            return s;
    }
}

/* Inserts a symbol; returns the existing one when the name is taken (packages may repeat). */
static const sym_t *sym_insert(pt_descpool_t *p, const char *name, uint8_t kind, void *ptr)
{
    size_t len = strlen(name);
    uint32_t h = hash_name(name, len);
    for (uint32_t i = h & p->sym_mask;; i = (i + 1) & p->sym_mask) {
        sym_t *s = &p->syms[i];
        if (s->name == NULL) {
            *s = (sym_t){name, (uint32_t)len, h, kind, ptr};
            return NULL;
        }
        if (s->hash == h && s->len == len && memcmp(s->name, name, len) == 0)
            return s;
    }
}

/* ---- build ------------------------------------------------------------------------ */

/* State of one build() call. */
typedef struct build {
    pt_descpool_t *p;
    pt_xerr_t *err;
    const MsgProto **mprotos; /* parallel to p->msgs */
    const EnumProto **eprotos; /* parallel to p->enums */
    size_t msg_i, enum_i, svc_i;
    pt_xbuf_t tmp;
} build_t;

static bool is_ident(const char *s)
{
    if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static bool is_dotted_ident(const char *s)
{
    if (*s == '\0')
        return true;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        char seg[256];
        if (n == 0 || n >= sizeof seg)
            return false;
        memcpy(seg, s, n);
        seg[n] = '\0';
        if (!is_ident(seg))
            return false;
        if (!dot)
            return true;
        s = dot + 1;
    }
}

static int nomem(build_t *b) { return pt_xerr_set(b->err, PT_XERR_NOMEM, NULL, "out of memory"); }

/* Counts messages and enums in a message tree (bounded depth by the nesting pre-pass). */
static void count_msg(const MsgProto *m, size_t *msgs, size_t *enums)
{
    (*msgs)++;
    *enums += m->n_enum_type;
    for (size_t i = 0; i < m->n_nested_type; i++)
        count_msg(m->nested_type[i], msgs, enums);
}

static uint8_t wkt_of(const char *full)
{
    static const struct {
        const char *name;
        uint8_t wkt;
    } tab[] = {
        {"google.protobuf.Any", PT_WKT_ANY},
        {"google.protobuf.Timestamp", PT_WKT_TIMESTAMP},
        {"google.protobuf.Duration", PT_WKT_DURATION},
        {"google.protobuf.FieldMask", PT_WKT_FIELDMASK},
        {"google.protobuf.Struct", PT_WKT_STRUCT},
        {"google.protobuf.Value", PT_WKT_VALUE},
        {"google.protobuf.ListValue", PT_WKT_LISTVALUE},
        {"google.protobuf.Empty", PT_WKT_EMPTY},
        {"google.protobuf.DoubleValue", PT_WKT_DOUBLEVALUE},
        {"google.protobuf.FloatValue", PT_WKT_FLOATVALUE},
        {"google.protobuf.Int64Value", PT_WKT_INT64VALUE},
        {"google.protobuf.UInt64Value", PT_WKT_UINT64VALUE},
        {"google.protobuf.Int32Value", PT_WKT_INT32VALUE},
        {"google.protobuf.UInt32Value", PT_WKT_UINT32VALUE},
        {"google.protobuf.BoolValue", PT_WKT_BOOLVALUE},
        {"google.protobuf.StringValue", PT_WKT_STRINGVALUE},
        {"google.protobuf.BytesValue", PT_WKT_BYTESVALUE},
    };
    if (strncmp(full, "google.protobuf.", 16) != 0)
        return PT_WKT_NONE;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(full, tab[i].name) == 0)
            return tab[i].wkt;
    return PT_WKT_NONE;
}

static int dup_symbol(build_t *b, const char *full, const pt_descfile_t *f, const sym_t *old)
{
    const char *where = "another definition";
    if (old->kind == SYM_MESSAGE)
        where = ((const pt_msgdesc_t *)old->ptr)->file->name;
    else if (old->kind == SYM_ENUM)
        where = ((const pt_enumdesc_t *)old->ptr)->file->name;
    else if (old->kind == SYM_SERVICE)
        where = ((const pt_svcdesc_t *)old->ptr)->file->name;
    else if (old->kind == SYM_PACKAGE)
        where = "a package name";
    return pt_xerr_set(b->err, PT_XERR_INVALID, full, "%s (%s): %s is already defined by %s", f->name,
                       f->origin, full, where);
}

/* Registers the package prefixes "a", "a.b", ... of a file. */
static int register_package(build_t *b, const pt_descfile_t *f)
{
    const char *pkg = f->package;
    for (const char *s = pkg; *s; s++) {
        if (s[1] != '.' && s[1] != '\0')
            continue;
        char *name = arena_strndup(b->p, pkg, (size_t)(s + 1 - pkg));
        if (name == NULL)
            return nomem(b);
        const sym_t *old = sym_insert(b->p, name, SYM_PACKAGE, NULL);
        if (old != NULL && old->kind != SYM_PACKAGE)
            return dup_symbol(b, name, f, old);
    }
    return 0;
}

static int register_enum(build_t *b, const EnumProto *ep, const char *scope, const pt_descfile_t *f)
{
    if (!is_ident(ep->name))
        return pt_xerr_set(b->err, PT_XERR_INVALID, scope, "%s (%s): invalid enum name in %s", f->name,
                           f->origin, scope[0] ? scope : "file scope");
    pt_enumdesc_t *e = &b->p->enums[b->enum_i];
    b->eprotos[b->enum_i++] = ep;
    e->name = arena_strndup(b->p, ep->name, strlen(ep->name));
    e->full_name = arena_join(b->p, scope, ep->name);
    if (e->name == NULL || e->full_name == NULL)
        return nomem(b);
    e->file = f;
    e->is_closed = !f->is_proto3;
    const sym_t *old = sym_insert(b->p, e->full_name, SYM_ENUM, e);
    return old ? dup_symbol(b, e->full_name, f, old) : 0;
}

static int register_msg(build_t *b, const MsgProto *mp, const char *scope, const pt_descfile_t *f)
{
    if (!is_ident(mp->name))
        return pt_xerr_set(b->err, PT_XERR_INVALID, scope, "%s (%s): invalid message name in %s",
                           f->name, f->origin, scope[0] ? scope : "file scope");
    pt_msgdesc_t *m = &b->p->msgs[b->msg_i];
    b->mprotos[b->msg_i++] = mp;
    m->name = arena_strndup(b->p, mp->name, strlen(mp->name));
    m->full_name = arena_join(b->p, scope, mp->name);
    if (m->name == NULL || m->full_name == NULL)
        return nomem(b);
    m->_full_name_len = (uint32_t)strlen(m->full_name);
    m->file = f;
    m->is_proto3 = f->is_proto3;
    m->is_map_entry = mp->options != NULL && mp->options->has_map_entry && mp->options->map_entry;
    m->wkt = wkt_of(m->full_name);
    const sym_t *old = sym_insert(b->p, m->full_name, SYM_MESSAGE, m);
    if (old)
        return dup_symbol(b, m->full_name, f, old);
    int rc;
    for (size_t i = 0; i < mp->n_enum_type; i++)
        if ((rc = register_enum(b, mp->enum_type[i], m->full_name, f)) != 0)
            return rc;
    for (size_t i = 0; i < mp->n_nested_type; i++)
        if ((rc = register_msg(b, mp->nested_type[i], m->full_name, f)) != 0)
            return rc;
    return 0;
}

/*
 * Resolves a type reference made from inside `scope`. protoc writes fully
 * qualified names (".pkg.Msg"); for relative names we search the enclosing
 * scopes from the innermost outwards, as protoc does.
 */
static const sym_t *resolve(build_t *b, const char *scope, const char *ref)
{
    if (ref == NULL || ref[0] == '\0')
        return NULL;
    if (ref[0] == '.')
        return sym_find(b->p, ref + 1, strlen(ref + 1));
    size_t rl = strlen(ref), sl = strlen(scope);
    pt_xbuf_reset(&b->tmp);
    for (;;) {
        pt_xbuf_reset(&b->tmp);
        if ((sl && (pt_xbuf_append(&b->tmp, scope, sl) || pt_xbuf_putc(&b->tmp, '.'))) ||
            pt_xbuf_append(&b->tmp, ref, rl))
            return NULL;
        const sym_t *s = sym_find(b->p, (const char *)b->tmp.data, b->tmp.len);
        if (s != NULL && s->kind != SYM_PACKAGE)
            return s;
        if (sl == 0)
            return NULL;
        while (sl > 0 && scope[sl - 1] != '.')
            sl--;
        if (sl > 0)
            sl--; /* drop the dot */
    }
}

static uint8_t wire_type_of(uint8_t type)
{
    switch (type) {
    case PT_FT_DOUBLE: case PT_FT_FIXED64: case PT_FT_SFIXED64: return PT_WT_I64;
    case PT_FT_FLOAT: case PT_FT_FIXED32: case PT_FT_SFIXED32: return PT_WT_I32;
    case PT_FT_STRING: case PT_FT_BYTES: case PT_FT_MESSAGE: return PT_WT_LEN;
    case PT_FT_GROUP: return PT_WT_SGROUP;
    default: return PT_WT_VARINT;
    }
}

/* Renders `"name":` into the arena. */
static int make_key(build_t *b, const char *name, const char **key, uint32_t *key_len)
{
    pt_xbuf_reset(&b->tmp);
    int rc = pt_json_escape(&b->tmp, name, strlen(name));
    if (rc == 0)
        rc = pt_xbuf_putc(&b->tmp, ':');
    if (rc != 0)
        return rc;
    char *k = arena_strndup(b->p, (const char *)b->tmp.data, b->tmp.len);
    if (k == NULL)
        return PT_XERR_NOMEM;
    *key = k;
    *key_len = (uint32_t)b->tmp.len;
    return 0;
}

/* An open-addressing table for `cnt` names, at most 1/4 full; slots hold index + 1. */
static uint32_t *name_table(build_t *b, size_t cnt, uint32_t *mask_out)
{
    if (cnt > (1u << 26))
        return NULL;
    uint32_t size = 4;
    while (size < cnt * 4)
        size *= 2;
    *mask_out = size - 1;
    return arena_array(b->p, size, sizeof(uint32_t));
}

/* Stores index `idx` in the first free slot of the probe sequence of `name`. */
static void table_put(uint32_t *tab, uint32_t mask, const char *name, size_t len, uint32_t idx)
{
    uint32_t i = hash_name(name, len) & mask;
    while (tab[i] != 0)
        i = (i + 1) & mask;
    tab[i] = idx + 1;
}

static int cmp_field(const void *x, const void *y)
{
    const pt_fielddesc_t *a = x, *b = y;
    return a->number < b->number ? -1 : a->number > b->number;
}

static int fail_field(build_t *b, const pt_msgdesc_t *m, const char *fname, int code, const char *what)
{
    return pt_xerr_set(b->err, code, m->full_name, "%s (%s): message %s field %s: %s", m->file->name,
                       m->file->origin, m->full_name, fname ? fname : "?", what);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Bytes defaults are C-escaped text (protoc's CEscape): \n \r \t \" \' \\, octal
 * \NNN up to \377; also the \a \b \f \v \? \xHH \uHHHH \UHHHHHHHH forms that
 * protoc's unescaper accepts. Returns NULL or what is wrong. */
static const char *check_c_escapes(const char *s)
{
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] != '\\')
            continue;
        char c = s[++i];
        if (c == '\0')
            return "bytes default ends in a lone backslash";
        if (strchr("nrt\"'\\abfv?", c) != NULL)
            continue;
        if (c >= '0' && c <= '7') {
            unsigned v = (unsigned)(c - '0');
            for (int k = 0; k < 2 && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                v = v * 8 + (unsigned)(s[++i] - '0');
            if (v > 0377)
                return "bytes default has an octal escape above \\377";
            continue;
        }
        if (c == 'x') {
            if (!is_hex(s[i + 1]))
                return "bytes default has \\x without hex digits";
            unsigned v = 0;
            while (is_hex(s[i + 1])) {
                char h = s[++i];
                v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                if (v > 0xff)
                    return "bytes default has a \\x escape above 0xff";
            }
            continue;
        }
        if (c == 'u' || c == 'U') {
            int want = c == 'u' ? 4 : 8;
            for (int k = 0; k < want; k++)
                if (!is_hex(s[++i]))
                    return "bytes default has a malformed \\u or \\U escape";
            continue;
        }
        return "bytes default has an unknown escape sequence";
    }
    return NULL;
}

/* Checks a [default = ...] text the way protoc does when it builds a
 * descriptor: integers in range (decimal, or 0x/0 prefixed as strtol base 0
 * reads them), floats readable by strtod (inf, -inf, nan included), bools
 * "true"/"false", enum defaults naming a value, bytes well-formed escapes.
 * Message fields, repeated fields and proto3 fields take no default. Returns
 * NULL or what is wrong. */
static const char *check_default(const pt_msgdesc_t *m, const pt_fielddesc_t *f, const char *d)
{
    if (m->is_proto3)
        return "explicit default values are not allowed in proto3";
    if (f->label == PT_LABEL_REPEATED)
        return "repeated fields can't have default values";
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case PT_FT_MESSAGE: case PT_FT_GROUP:
        return "message fields can't have default values";
    case PT_FT_STRING:
        return NULL;
    case PT_FT_BYTES:
        return check_c_escapes(d);
    case PT_FT_BOOL:
        return strcmp(d, "true") == 0 || strcmp(d, "false") == 0 ? NULL
                                                                 : "bool default must be \"true\" or \"false\"";
    case PT_FT_ENUM:
        return pt_enumdesc_value_by_name(f->enumdesc, d, strlen(d), false) != NULL
                   ? NULL
                   : "enum default names no value of the enum";
    case PT_FT_DOUBLE: case PT_FT_FLOAT:
        if (d[0] == '\0' || d[0] == ' ' || (d[0] >= '\t' && d[0] <= '\r'))
            return "couldn't parse floating-point default";
        (void)strtod(d, &end);
        return *end == '\0' ? NULL : "couldn't parse floating-point default";
    case PT_FT_INT32: case PT_FT_SINT32: case PT_FT_SFIXED32:
    case PT_FT_INT64: case PT_FT_SINT64: case PT_FT_SFIXED64: {
        if (!(d[0] == '-' || (d[0] >= '0' && d[0] <= '9')))
            return "couldn't parse integer default";
        long long v = strtoll(d, &end, 0);
        if (end == d || *end != '\0')
            return "couldn't parse integer default";
        bool is32 = f->type == PT_FT_INT32 || f->type == PT_FT_SINT32 || f->type == PT_FT_SFIXED32;
        if (errno == ERANGE || (is32 && (v < INT32_MIN || v > INT32_MAX)))
            return "integer default out of range for the field type";
        return NULL;
    }
    case PT_FT_UINT32: case PT_FT_FIXED32: case PT_FT_UINT64: case PT_FT_FIXED64: {
        if (!(d[0] >= '0' && d[0] <= '9'))
            return "couldn't parse unsigned integer default";
        unsigned long long v = strtoull(d, &end, 0);
        if (end == d || *end != '\0')
            return "couldn't parse unsigned integer default";
        bool is32 = f->type == PT_FT_UINT32 || f->type == PT_FT_FIXED32;
        if (errno == ERANGE || (is32 && v > UINT32_MAX))
            return "integer default out of range for the field type";
        return NULL;
    }
    default:
        return "default value on a field of unknown type";
    }
}

/* The names pt_msgdesc_field_by_name() answers to must not be ambiguous. In
 * proto3 (protoc rejects these too) a field's json name may equal neither
 * another field's json name nor another field's proto name. proto2 files get
 * the deterministic lookup documented in descpool.h instead. */
static int check_json_clash(build_t *b, const pt_msgdesc_t *m)
{
    if (!m->is_proto3)
        return 0;
    for (size_t i = 0; i < m->field_cnt; i++) {
        const pt_fielddesc_t *f = &m->fields[i];
        const pt_fielddesc_t *g = pt_msgdesc_field_by_name(m, f->json_name, f->_json_name_len);
        if (g == NULL || g == f)
            continue;
        bool by_proto = g->_name_len == f->_json_name_len &&
                        memcmp(g->name, f->json_name, f->_json_name_len) == 0;
        return pt_xerr_set(b->err, PT_XERR_INVALID, m->full_name,
                           "%s (%s): message %s: json name \"%s\" of field %s clashes with the %s name "
                           "of field %s",
                           m->file->name, m->file->origin, m->full_name, f->json_name, f->name,
                           by_proto ? "proto" : "json", g->name);
    }
    return 0;
}

static int build_msg(build_t *b, pt_msgdesc_t *m, const MsgProto *mp)
{
    pt_descpool_t *p = b->p;
    int rc;
    /* oneofs: synthetic ones (all members proto3_optional) are not real */
    int32_t *oneof_map = NULL;
    if (mp->n_oneof_decl > 0) {
        if (mp->n_oneof_decl > INT32_MAX)
            return fail_field(b, m, NULL, PT_XERR_INVALID, "too many oneofs");
        oneof_map = arena_array(p, mp->n_oneof_decl, sizeof *oneof_map);
        const char **names = arena_array(p, mp->n_oneof_decl, sizeof *names);
        if (oneof_map == NULL || names == NULL)
            return nomem(b);
        size_t real = 0;
        for (size_t o = 0; o < mp->n_oneof_decl; o++) {
            bool synthetic = true, any = false;
            for (size_t i = 0; i < mp->n_field; i++) {
                const FieldProto *fp = mp->field[i];
                if (fp->has_oneof_index && fp->oneof_index == (int32_t)o) {
                    any = true;
                    if (!(fp->has_proto3_optional && fp->proto3_optional))
                        synthetic = false;
                }
            }
            const char *on = mp->oneof_decl[o]->name;
            if (!is_ident(on))
                return fail_field(b, m, on, PT_XERR_INVALID, "invalid oneof name");
            if (synthetic && any) {
                oneof_map[o] = -1;
            } else {
                oneof_map[o] = (int32_t)real;
                if ((names[real++] = arena_strndup(p, on, strlen(on))) == NULL)
                    return nomem(b);
            }
        }
        m->oneof_names = names;
        m->oneof_cnt = real;
    }

    pt_fielddesc_t *fields = arena_array(p, mp->n_field, sizeof *fields);
    if (fields == NULL)
        return nomem(b);
    for (size_t i = 0; i < mp->n_field; i++) {
        const FieldProto *fp = mp->field[i];
        pt_fielddesc_t *f = &fields[i];
        if (!is_ident(fp->name))
            return fail_field(b, m, fp->name, PT_XERR_INVALID, "invalid field name");
        if (!fp->has_number || fp->number < 1 || (uint32_t)fp->number > MAX_FIELD_NUMBER)
            return fail_field(b, m, fp->name, PT_XERR_INVALID, "invalid field number");
        f->name = arena_strndup(p, fp->name, strlen(fp->name));
        if (f->name == NULL)
            return nomem(b);
        f->_name_len = (uint32_t)strlen(f->name);
        f->number = (uint32_t)fp->number;
        f->parent = m;
        f->label = fp->has_label ? (uint8_t)fp->label : PT_LABEL_OPTIONAL;
        if (f->label < PT_LABEL_OPTIONAL || f->label > PT_LABEL_REPEATED)
            return fail_field(b, m, fp->name, PT_XERR_INVALID, "invalid label");

        /* type, resolving message and enum references */
        const sym_t *ref = NULL;
        if (fp->type_name != NULL && fp->type_name[0] != '\0') {
            ref = resolve(b, m->full_name, fp->type_name);
            if (ref == NULL || (ref->kind != SYM_MESSAGE && ref->kind != SYM_ENUM))
                return pt_xerr_set(b->err, PT_XERR_NOT_FOUND, m->full_name,
                                   "%s (%s): message %s field %s: unknown type %s", m->file->name,
                                   m->file->origin, m->full_name, fp->name, fp->type_name);
        }
        int type = fp->has_type ? (int)fp->type : 0;
        if (type == 0 && ref != NULL)
            type = ref->kind == SYM_MESSAGE ? PT_FT_MESSAGE : PT_FT_ENUM;
        if (type < PT_FT_DOUBLE || type > PT_FT_SINT64)
            return fail_field(b, m, fp->name, PT_XERR_INVALID, "invalid or missing type");
        f->type = (uint8_t)type;
        if (type == PT_FT_MESSAGE || type == PT_FT_GROUP) {
            if (ref == NULL || ref->kind != SYM_MESSAGE)
                return fail_field(b, m, fp->name, PT_XERR_INVALID, "message field without a message type");
            f->message = ref->ptr;
        } else if (type == PT_FT_ENUM) {
            if (ref == NULL || ref->kind != SYM_ENUM)
                return fail_field(b, m, fp->name, PT_XERR_INVALID, "enum field without an enum type");
            f->enumdesc = ref->ptr;
        } else if (ref != NULL) {
            return fail_field(b, m, fp->name, PT_XERR_INVALID, "scalar field with a type name");
        }
        f->_wire_type = wire_type_of(f->type);

        /* oneof, presence, packed-ness */
        f->oneof_index = -1;
        bool in_oneof = false;
        if (fp->has_oneof_index) {
            if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= mp->n_oneof_decl)
                return fail_field(b, m, fp->name, PT_XERR_INVALID, "oneof index out of range");
            if (f->label == PT_LABEL_REPEATED)
                return fail_field(b, m, fp->name, PT_XERR_INVALID, "repeated field in a oneof");
            f->oneof_index = oneof_map[fp->oneof_index];
            in_oneof = true;
        }
        bool p3opt = fp->has_proto3_optional && fp->proto3_optional;
        if (f->label == PT_LABEL_REPEATED)
            f->has_presence = false;
        else
            f->has_presence = type == PT_FT_MESSAGE || type == PT_FT_GROUP || in_oneof || p3opt ||
                              !m->is_proto3;
        bool scalar = f->_wire_type != PT_WT_LEN && f->_wire_type != PT_WT_SGROUP;
        if (f->label == PT_LABEL_REPEATED && scalar) {
            const Google__Protobuf__FieldOptions *fo = fp->options;
            f->is_packed = fo != NULL && fo->has_packed ? fo->packed : m->is_proto3;
        }
        if (fp->default_value != NULL) {
            const char *bad = check_default(m, f, fp->default_value);
            if (bad != NULL)
                return pt_xerr_set(b->err, PT_XERR_INVALID, m->full_name,
                                   "%s (%s): message %s field %s: %s (default \"%s\")", m->file->name,
                                   m->file->origin, m->full_name, fp->name, bad, fp->default_value);
            f->default_value = arena_strndup(p, fp->default_value, strlen(fp->default_value));
            if (f->default_value == NULL)
                return nomem(b);
        }

        /* names: json_name as given by protoc, else computed */
        if (fp->json_name != NULL) {
            f->json_name = arena_strndup(p, fp->json_name, strlen(fp->json_name));
        } else {
            pt_xbuf_reset(&b->tmp);
            if (pt_json_name_of(&b->tmp, f->name, f->_name_len) != 0)
                return nomem(b);
            f->json_name = arena_strndup(p, (const char *)b->tmp.data, b->tmp.len);
        }
        if (f->json_name == NULL)
            return nomem(b);
        f->_json_name_len = (uint32_t)strlen(f->json_name);
        rc = make_key(b, f->json_name, &f->_json_key, &f->_json_key_len);
        if (rc == 0)
            rc = make_key(b, f->name, &f->_proto_key, &f->_proto_key_len);
        if (rc == PT_XERR_INVALID)
            return fail_field(b, m, fp->name, rc, "json_name is not valid UTF-8");
        if (rc != 0)
            return nomem(b);
    }

    qsort(fields, mp->n_field, sizeof *fields, cmp_field);
    m->fields = fields;
    m->field_cnt = mp->n_field;
    for (size_t i = 1; i < m->field_cnt; i++)
        if (fields[i].number == fields[i - 1].number)
            return fail_field(b, m, fields[i].name, PT_XERR_INVALID, "duplicate field number");

    /* number index: dense array when numbers are compact, else binary search */
    uint32_t maxn = m->field_cnt ? fields[m->field_cnt - 1].number : 0;
    if (maxn <= 4 * m->field_cnt + 16) {
        uint32_t *bn = arena_array(p, (size_t)maxn + 1, sizeof *bn);
        if (bn == NULL)
            return nomem(b);
        for (size_t i = 0; i < m->field_cnt; i++)
            bn[fields[i].number] = (uint32_t)i + 1;
        m->_by_number = bn;
        m->_by_number_len = maxn + 1;
    }
    /* name index over proto names and json names */
    uint32_t *tab = name_table(b, m->field_cnt * 2, &m->_name_mask);
    if (tab == NULL)
        return nomem(b);
    m->_name_tab = tab;
    for (size_t i = 0; i < m->field_cnt; i++) {
        const pt_fielddesc_t *f = &fields[i];
        if (pt_msgdesc_field_by_name(m, f->name, f->_name_len) != NULL)
            return fail_field(b, m, f->name, PT_XERR_INVALID, "duplicate field name");
        table_put(tab, m->_name_mask, f->name, f->_name_len, (uint32_t)i);
    }
    /* json names go second so that a proto name always wins a clash */
    for (size_t i = 0; i < m->field_cnt; i++) {
        const pt_fielddesc_t *f = &fields[i];
        if (pt_msgdesc_field_by_name(m, f->json_name, f->_json_name_len) == NULL)
            table_put(tab, m->_name_mask, f->json_name, f->_json_name_len, (uint32_t)i);
    }
    return check_json_clash(b, m);
}

/* Map entries must be {key = 1; value = 2} with a legal key type. */
static int check_map_field(build_t *b, const pt_msgdesc_t *m, pt_fielddesc_t *f)
{
    const pt_msgdesc_t *e = f->message;
    if (f->type != PT_FT_MESSAGE || f->label != PT_LABEL_REPEATED)
        return fail_field(b, m, f->name, PT_XERR_INVALID, "map entry type used by a non-map field");
    if (e->field_cnt != 2 || e->fields[0].number != 1 || e->fields[1].number != 2 ||
        strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0 ||
        e->fields[0].label == PT_LABEL_REPEATED || e->fields[1].label == PT_LABEL_REPEATED)
        return fail_field(b, m, f->name, PT_XERR_INVALID, "malformed map entry");
    switch (e->fields[0].type) {
    case PT_FT_DOUBLE: case PT_FT_FLOAT: case PT_FT_BYTES: case PT_FT_MESSAGE: case PT_FT_GROUP:
    case PT_FT_ENUM:
        return fail_field(b, m, f->name, PT_XERR_INVALID, "illegal map key type");
    default:
        break;
    }
    f->is_map = true;
    return 0;
}

static int cmp_enum_idx(const void *x, const void *y, void *ctx)
{
    const pt_enumvalue_t *v = ctx;
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    if (v[a].number != v[b].number)
        return v[a].number < v[b].number ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int build_enum(build_t *b, pt_enumdesc_t *e, const EnumProto *ep)
{
    pt_descpool_t *p = b->p;
    if (ep->n_value == 0)
        return pt_xerr_set(b->err, PT_XERR_INVALID, e->full_name, "%s (%s): enum %s has no values",
                           e->file->name, e->file->origin, e->full_name);
    pt_enumvalue_t *vals = arena_array(p, ep->n_value, sizeof *vals);
    uint32_t *bynum = arena_array(p, ep->n_value, sizeof *bynum);
    uint32_t *tab = name_table(b, ep->n_value, &e->_name_mask);
    if (vals == NULL || bynum == NULL || tab == NULL)
        return nomem(b);
    e->values = vals;
    e->value_cnt = ep->n_value;
    e->_name_tab = tab;
    for (size_t i = 0; i < ep->n_value; i++) {
        const Google__Protobuf__EnumValueDescriptorProto *vp = ep->value[i];
        if (!is_ident(vp->name) || !vp->has_number)
            return pt_xerr_set(b->err, PT_XERR_INVALID, e->full_name,
                               "%s (%s): enum %s: invalid value #%zu", e->file->name,
                               e->file->origin, e->full_name, i);
        vals[i].name = arena_strndup(p, vp->name, strlen(vp->name));
        if (vals[i].name == NULL)
            return nomem(b);
        vals[i]._name_len = (uint32_t)strlen(vals[i].name);
        vals[i].number = vp->number;
        vals[i].parent = e;
        bynum[i] = (uint32_t)i;
        if (pt_enumdesc_value_by_name(e, vals[i].name, vals[i]._name_len, false) != NULL)
            return pt_xerr_set(b->err, PT_XERR_INVALID, e->full_name,
                               "%s (%s): enum %s: duplicate value name %s", e->file->name,
                               e->file->origin, e->full_name, vals[i].name);
        table_put(tab, e->_name_mask, vals[i].name, vals[i]._name_len, (uint32_t)i);
    }
    qsort_r(bynum, ep->n_value, sizeof *bynum, cmp_enum_idx, vals);
    e->_by_number = bynum;
    return 0;
}

static int build_service(build_t *b, const SvcProto *sp, const pt_descfile_t *f)
{
    pt_descpool_t *p = b->p;
    if (!is_ident(sp->name))
        return pt_xerr_set(b->err, PT_XERR_INVALID, NULL, "%s (%s): invalid service name", f->name,
                           f->origin);
    pt_svcdesc_t *s = &p->svcs[b->svc_i++];
    s->name = arena_strndup(p, sp->name, strlen(sp->name));
    s->full_name = arena_join(p, f->package, sp->name);
    pt_methoddesc_t *ms = arena_array(p, sp->n_method, sizeof *ms);
    if (s->name == NULL || s->full_name == NULL || ms == NULL)
        return nomem(b);
    s->file = f;
    s->methods = ms;
    s->method_cnt = sp->n_method;
    const sym_t *old = sym_insert(p, s->full_name, SYM_SERVICE, s);
    if (old)
        return dup_symbol(b, s->full_name, f, old);
    for (size_t i = 0; i < sp->n_method; i++) {
        const Google__Protobuf__MethodDescriptorProto *mp = sp->method[i];
        pt_methoddesc_t *md = &ms[i];
        if (!is_ident(mp->name))
            return pt_xerr_set(b->err, PT_XERR_INVALID, s->full_name,
                               "%s (%s): service %s: invalid method name", f->name, f->origin,
                               s->full_name);
        md->service = s;
        md->name = arena_strndup(p, mp->name, strlen(mp->name));
        md->full_name = arena_join(p, s->full_name, mp->name);
        if (md->name == NULL || md->full_name == NULL)
            return nomem(b);
        const sym_t *in = resolve(b, s->full_name, mp->input_type);
        const sym_t *outp = resolve(b, s->full_name, mp->output_type);
        if (in == NULL || in->kind != SYM_MESSAGE || outp == NULL || outp->kind != SYM_MESSAGE)
            return pt_xerr_set(b->err, PT_XERR_NOT_FOUND, md->full_name,
                               "%s (%s): method %s: unknown %s type %s", f->name, f->origin,
                               md->full_name, in == NULL || in->kind != SYM_MESSAGE ? "input" : "output",
                               in == NULL || in->kind != SYM_MESSAGE ? str_or(mp->input_type, "(none)")
                                                                     : str_or(mp->output_type, "(none)"));
        md->input = in->ptr;
        md->output = outp->ptr;
        md->client_streaming = mp->has_client_streaming && mp->client_streaming;
        md->server_streaming = mp->has_server_streaming && mp->server_streaming;
        /* The options are re-serialized: protobuf-c keeps unknown fields (the
         * google.api.http extension among them) and packs them back. */
        if (mp->options != NULL) {
            size_t n = protobuf_c_message_get_packed_size(&mp->options->base);
            uint8_t *o = arena_alloc(p, n ? n : 1);
            if (o == NULL)
                return nomem(b);
            protobuf_c_message_pack(&mp->options->base, o);
            md->options = o;
            md->options_len = n;
        }
        old = sym_insert(p, md->full_name, SYM_METHOD, md);
        if (old)
            return dup_symbol(b, md->full_name, f, old);
    }
    return 0;
}

static int build_all(build_t *b)
{
    pt_descpool_t *p = b->p;
    int rc;

    /* files, and the dependency check */
    p->files = arena_array(p, p->pend_cnt, sizeof *p->files);
    if (p->files == NULL)
        return nomem(b);
    p->file_cnt = p->pend_cnt;
    size_t nmsg = 0, nenum = 0, nsvc = 0;
    for (size_t i = 0; i < p->pend_cnt; i++) {
        const FileProto *fp = p->pend[i].fp;
        pt_descfile_t *f = &p->files[i];
        f->name = arena_strndup(p, fp->name, strlen(fp->name));
        f->package = arena_strndup(p, str_or(fp->package, ""), strlen(str_or(fp->package, "")));
        if (f->name == NULL || f->package == NULL)
            return nomem(b);
        f->origin = p->pend[i].origin;
        f->is_proto3 = fp->syntax != NULL && strcmp(fp->syntax, "proto3") == 0;
        if (fp->syntax != NULL && !f->is_proto3 && strcmp(fp->syntax, "proto2") != 0 &&
            fp->syntax[0] != '\0')
            return pt_xerr_set(b->err, PT_XERR_INVALID, NULL, "%s (%s): unsupported syntax \"%s\"",
                               f->name, f->origin, fp->syntax);
        if (!is_dotted_ident(f->package))
            return pt_xerr_set(b->err, PT_XERR_INVALID, NULL, "%s (%s): invalid package name",
                               f->name, f->origin);
        for (size_t d = 0; d < fp->n_dependency; d++) {
            bool found = false;
            for (size_t j = 0; j < p->pend_cnt && !found; j++)
                found = strcmp(p->pend[j].fp->name, fp->dependency[d]) == 0;
            if (!found)
                return pt_xerr_set(b->err, PT_XERR_NOT_FOUND, NULL,
                                   "%s (%s): missing dependency %s (build the set with "
                                   "--include_imports or load the set that defines it)",
                                   f->name, f->origin, fp->dependency[d]);
        }
        nenum += fp->n_enum_type;
        nsvc += fp->n_service;
        for (size_t m = 0; m < fp->n_message_type; m++)
            count_msg(fp->message_type[m], &nmsg, &nenum);
    }

    /* symbol table: messages, enums, services, methods, package prefixes */
    size_t nsym = nmsg + nenum + nsvc;
    for (size_t i = 0; i < p->pend_cnt; i++) {
        const FileProto *fp = p->pend[i].fp;
        for (size_t s = 0; s < fp->n_service; s++)
            nsym += fp->service[s]->n_method;
        nsym += 8; /* package prefixes: a generous estimate, checked below */
        for (const char *c = str_or(fp->package, ""); *c; c++)
            nsym += *c == '.';
    }
    if (nsym > (1u << 28))
        return pt_xerr_set(b->err, PT_XERR_LIMIT, NULL, "too many symbols");
    uint32_t size = 16;
    while (size < nsym * 2)
        size *= 2;
    p->syms = arena_array(p, size, sizeof *p->syms);
    p->sym_mask = size - 1;
    p->msgs = arena_array(p, nmsg, sizeof *p->msgs);
    p->enums = arena_array(p, nenum, sizeof *p->enums);
    p->svcs = arena_array(p, nsvc, sizeof *p->svcs);
    b->mprotos = arena_array(p, nmsg, sizeof *b->mprotos);
    b->eprotos = arena_array(p, nenum, sizeof *b->eprotos);
    if (p->syms == NULL || p->msgs == NULL || p->enums == NULL || p->svcs == NULL ||
        b->mprotos == NULL || b->eprotos == NULL)
        return nomem(b);
    p->msg_cnt = nmsg;
    p->enum_cnt = nenum;
    p->svc_cnt = nsvc;

    for (size_t i = 0; i < p->file_cnt; i++) {
        const FileProto *fp = p->pend[i].fp;
        const pt_descfile_t *f = &p->files[i];
        if ((rc = register_package(b, f)) != 0)
            return rc;
        for (size_t e = 0; e < fp->n_enum_type; e++)
            if ((rc = register_enum(b, fp->enum_type[e], f->package, f)) != 0)
                return rc;
        for (size_t m = 0; m < fp->n_message_type; m++)
            if ((rc = register_msg(b, fp->message_type[m], f->package, f)) != 0)
                return rc;
    }
    for (size_t i = 0; i < p->enum_cnt; i++)
        if ((rc = build_enum(b, &p->enums[i], b->eprotos[i])) != 0)
            return rc;
    for (size_t i = 0; i < p->msg_cnt; i++)
        if ((rc = build_msg(b, &p->msgs[i], b->mprotos[i])) != 0)
            return rc;
    /* map fields need their entry types built first */
    for (size_t i = 0; i < p->msg_cnt; i++) {
        pt_msgdesc_t *m = &p->msgs[i];
        for (size_t k = 0; k < m->field_cnt; k++) {
            pt_fielddesc_t *f = (pt_fielddesc_t *)&m->fields[k];
            if (f->message != NULL && f->message->is_map_entry && (rc = check_map_field(b, m, f)) != 0)
                return rc;
        }
    }
    for (size_t i = 0; i < p->file_cnt; i++) {
        const FileProto *fp = p->pend[i].fp;
        for (size_t s = 0; s < fp->n_service; s++)
            if ((rc = build_service(b, fp->service[s], &p->files[i])) != 0)
                return rc;
    }
    return 0;
}

int pt_descpool_build(pt_descpool_t *p, pt_xerr_t *err)
{
    if (p->built || p->failed)
        return pt_xerr_set(err, PT_XERR_INVALID, NULL, "descriptor pool is already built");
    build_t b = {.p = p, .err = err};
    pt_xbuf_init(&b.tmp, p->a);
    int rc = build_all(&b);
    pt_xbuf_dispose(&b.tmp);
    if (rc != 0) {
        /* The half-built tables may point anywhere: make every lookup fail. */
        p->failed = true;
        p->syms = NULL;
        p->msg_cnt = p->enum_cnt = p->svc_cnt = p->file_cnt = 0;
        return rc;
    }
    free_sets(p);
    p->built = true;
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------- */

static const void *lookup(const pt_descpool_t *p, const char *name, size_t len, uint8_t kind)
{
    if (!p->built)
        return NULL;
    if (len > 0 && name[0] == '.') {
        name++;
        len--;
    }
    const sym_t *s = sym_find(p, name, len);
    return s != NULL && s->kind == kind ? s->ptr : NULL;
}

const pt_msgdesc_t *pt_descpool_message(const pt_descpool_t *p, const char *name, size_t len)
{
    return lookup(p, name, len, SYM_MESSAGE);
}

const pt_enumdesc_t *pt_descpool_enum(const pt_descpool_t *p, const char *name, size_t len)
{
    return lookup(p, name, len, SYM_ENUM);
}

const pt_svcdesc_t *pt_descpool_service(const pt_descpool_t *p, const char *name, size_t len)
{
    return lookup(p, name, len, SYM_SERVICE);
}

/* FNV-1a as hash_name(), reading the byte at `alt` as a '.'. */
static uint32_t hash_name_alt(const char *s, size_t n, size_t alt)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= i == alt ? (uint8_t)'.' : (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

const pt_methoddesc_t *pt_descpool_method(const pt_descpool_t *p, const char *name, size_t len)
{
    if (len > 0 && name[0] == '/') {
        name++;
        len--;
    }
    const char *slash = memchr(name, '/', len);
    if (slash == NULL)
        return lookup(p, name, len, SYM_METHOD);
    /* "pkg.Svc/Method": look "pkg.Svc.Method" up without copying the name */
    size_t at = (size_t)(slash - name);
    if (!p->built || p->syms == NULL || len > UINT32_MAX || memchr(slash + 1, '.', len - at - 1) != NULL)
        return NULL; /* the slash must separate the service from the method name */
    uint32_t h = hash_name_alt(name, len, at);
    for (uint32_t i = h & p->sym_mask; p->syms[i].name != NULL; i = (i + 1) & p->sym_mask) {
        const sym_t *s = &p->syms[i];
        if (s->hash == h && s->len == len && s->kind == SYM_METHOD && s->name[at] == '.' &&
            memcmp(s->name, name, at) == 0 && memcmp(s->name + at + 1, name + at + 1, len - at - 1) == 0)
            return s->ptr;
    }
    return NULL;
}

const pt_msgdesc_t *pt_descpool_any_type(const pt_descpool_t *p, const char *url, size_t len)
{
    size_t i = len;
    while (i > 0 && url[i - 1] != '/')
        i--;
    if (i == 0 || i == len)
        return NULL;
    return lookup(p, url + i, len - i, SYM_MESSAGE);
}

size_t pt_descpool_service_cnt(const pt_descpool_t *p) { return p->built ? p->svc_cnt : 0; }

const pt_svcdesc_t *pt_descpool_service_at(const pt_descpool_t *p, size_t i)
{
    return p->built && i < p->svc_cnt ? &p->svcs[i] : NULL;
}

size_t pt_descpool_file_cnt(const pt_descpool_t *p) { return p->built ? p->file_cnt : 0; }

const pt_descfile_t *pt_descpool_file_at(const pt_descpool_t *p, size_t i)
{
    return p->built && i < p->file_cnt ? &p->files[i] : NULL;
}

const pt_fielddesc_t *pt_msgdesc_field_by_number(const pt_msgdesc_t *m, uint32_t number)
{
    if (m->_by_number != NULL) {
        if (number >= m->_by_number_len)
            return NULL;
        uint32_t i = m->_by_number[number];
        return i ? &m->fields[i - 1] : NULL;
    }
    size_t lo = 0, hi = m->field_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->fields[mid].number == number)
            return &m->fields[mid];
        if (m->fields[mid].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const pt_fielddesc_t *pt_msgdesc_field_by_name(const pt_msgdesc_t *m, const char *name, size_t len)
{
    if (m->_name_tab == NULL)
        return NULL;
    for (uint32_t i = hash_name(name, len) & m->_name_mask; m->_name_tab[i] != 0;
         i = (i + 1) & m->_name_mask) {
        const pt_fielddesc_t *f = &m->fields[m->_name_tab[i] - 1];
        if ((f->_name_len == len && memcmp(f->name, name, len) == 0) ||
            (f->_json_name_len == len && memcmp(f->json_name, name, len) == 0))
            return f;
    }
    return NULL;
}

const pt_enumvalue_t *pt_enumdesc_value_by_name(const pt_enumdesc_t *e, const char *name, size_t len,
                                                bool case_insensitive)
{
    if (case_insensitive) {
        for (size_t i = 0; i < e->value_cnt; i++)
            if (e->values[i]._name_len == len && strncasecmp(e->values[i].name, name, len) == 0)
                return &e->values[i];
        return NULL;
    }
    for (uint32_t i = hash_name(name, len) & e->_name_mask; e->_name_tab[i] != 0;
         i = (i + 1) & e->_name_mask) {
        const pt_enumvalue_t *v = &e->values[e->_name_tab[i] - 1];
        if (v->_name_len == len && memcmp(v->name, name, len) == 0)
            return v;
    }
    return NULL;
}

const pt_enumvalue_t *pt_enumdesc_value_by_number(const pt_enumdesc_t *e, int32_t number)
{
    size_t lo = 0, hi = e->value_cnt;
    while (lo < hi) { /* first index whose number is >= `number` */
        size_t mid = lo + (hi - lo) / 2;
        if (e->values[e->_by_number[mid]].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < e->value_cnt && e->values[e->_by_number[lo]].number == number)
        return &e->values[e->_by_number[lo]];
    return NULL;
}
