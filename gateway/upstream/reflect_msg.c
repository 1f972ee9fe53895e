/*
 * reflect_msg.c -- the gRPC server reflection messages and the dependency walk
 * (reflect.h). No I/O: the bytes come from the client (reflect.c), a unit test
 * or the fuzz target.
 *
 * The few fields we need are read with a small wire reader instead of
 * generated code: every length is checked against what is left, unknown
 * fields are skipped, groups (never used by these messages) are refused.
 */
#include "upstream/reflect.h"

#include <stdlib.h>
#include <string.h>

/* ---- wire reading ------------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

static bool rd_varint(rd_t *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p == r->end)
            return false;
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

/*
 * Reads one field: its number and wire type; for LEN fields the payload slice,
 * for varints the value. Fixed-width fields are skipped. False on bad input.
 */
static bool rd_field(rd_t *r, uint32_t *num, unsigned *wt, pt_refl_str_t *s, uint64_t *v)
{
    uint64_t key;
    if (!rd_varint(r, &key) || key >> 3 == 0 || key >> 3 > 536870911u)
        return false;
    *num = (uint32_t)(key >> 3);
    *wt = (unsigned)(key & 7);
    switch (*wt) {
    case 0:
        return rd_varint(r, v);
    case 1:
    case 5: {
        size_t n = *wt == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return false;
        r->p += n;
        return true;
    }
    case 2: {
        uint64_t n;
        if (!rd_varint(r, &n) || n > (uint64_t)(r->end - r->p))
            return false;
        s->p = r->p;
        s->len = (size_t)n;
        r->p += n;
        return true;
    }
    default:
        return false; /* groups and reserved wire types */
    }
}

/* ---- requests ----------------------------------------------------------------------- */

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[n++] = (uint8_t)(c | (v != 0 ? 0x80 : 0));
    } while (v != 0);
    return n;
}

int pt_refl_encode_request(pt_refl_req_t kind, const char *arg, uint8_t **buf, size_t *len)
{
    size_t alen = strlen(arg);
    if (alen > (1u << 20))
        return -1;
    uint8_t head[16];
    size_t hn = put_varint(head, (uint64_t)kind << 3 | 2);
    hn += put_varint(head + hn, alen);
    size_t msg = hn + alen;
    uint8_t *nb = realloc(*buf, *len + 5 + msg);
    if (nb == NULL)
        return -1;
    uint8_t *o = nb + *len;
    o[0] = 0; /* not compressed */
    o[1] = (uint8_t)(msg >> 24);
    o[2] = (uint8_t)(msg >> 16);
    o[3] = (uint8_t)(msg >> 8);
    o[4] = (uint8_t)msg;
    memcpy(o + 5, head, hn);
    memcpy(o + 5 + hn, arg, alen);
    *buf = nb;
    *len += 5 + msg;
    return 0;
}

/* ---- responses ---------------------------------------------------------------------- */

static int push_item(pt_refl_resp_t *r, size_t *cap, pt_refl_str_t s, const char **why)
{
    if (r->item_cnt == PT_REFL_MAX_ITEMS) {
        *why = "too many items in one response";
        return -1;
    }
    if (r->item_cnt == *cap) {
        size_t nc = *cap != 0 ? *cap * 2 : 8;
        pt_refl_str_t *nv = realloc(r->items, nc * sizeof(*nv));
        if (nv == NULL) {
            *why = "out of memory";
            return -1;
        }
        r->items = nv;
        *cap = nc;
    }
    r->items[r->item_cnt++] = s;
    return 0;
}

static bool decode_request(pt_refl_str_t in, pt_refl_resp_t *r)
{
    rd_t d = {in.p, in.p + in.len};
    while (d.p != d.end) {
        uint32_t num;
        unsigned wt;
        pt_refl_str_t s = {0};
        uint64_t v;
        if (!rd_field(&d, &num, &wt, &s, &v))
            return false;
        if (wt == 2 && (num == PT_REFL_FILE_BY_FILENAME || num == PT_REFL_FILE_CONTAINING_SYMBOL ||
                        num == PT_REFL_LIST_SERVICES)) {
            r->req_kind = (int)num;
            r->req_arg = s;
        }
    }
    return true;
}

/* Items of a repeated LEN field `want` of message `in` (for services: the name inside each). */
static int decode_list(pt_refl_str_t in, bool services, pt_refl_resp_t *r, size_t *cap,
                       const char **why)
{
    rd_t d = {in.p, in.p + in.len};
    while (d.p != d.end) {
        uint32_t num;
        unsigned wt;
        pt_refl_str_t s = {0};
        uint64_t v;
        if (!rd_field(&d, &num, &wt, &s, &v))
            goto bad;
        if (num != 1 || wt != 2)
            continue;
        if (services) { /* ServiceResponse { 1 name } */
            rd_t e = {s.p, s.p + s.len};
            pt_refl_str_t name = {s.p, 0}; /* no name: an empty one (skipped by the client) */
            while (e.p != e.end) {
                uint32_t n2;
                unsigned w2;
                pt_refl_str_t s2 = {0};
                if (!rd_field(&e, &n2, &w2, &s2, &v))
                    goto bad;
                if (n2 == 1 && w2 == 2)
                    name = s2;
            }
            s = name;
        }
        if (push_item(r, cap, s, why) != 0)
            return -1;
    }
    return 0;
bad:
    *why = services ? "bad list_services_response" : "bad file_descriptor_response";
    return -1;
}

static int decode_error(pt_refl_str_t in, pt_refl_resp_t *r, const char **why)
{
    rd_t d = {in.p, in.p + in.len};
    while (d.p != d.end) {
        uint32_t num;
        unsigned wt;
        pt_refl_str_t s = {0};
        uint64_t v = 0;
        if (!rd_field(&d, &num, &wt, &s, &v)) {
            *why = "bad error_response";
            return -1;
        }
        if (num == 1 && wt == 0)
            r->error_code = (int32_t)(uint32_t)v;
        else if (num == 2 && wt == 2)
            r->error_message = s;
    }
    return 0;
}

int pt_refl_decode_response(const uint8_t *data, size_t len, pt_refl_resp_t *r, const char **why)
{
    memset(r, 0, sizeof(*r));
    rd_t d = {data, data + len};
    size_t cap = 0;
    while (d.p != d.end) {
        uint32_t num;
        unsigned wt;
        pt_refl_str_t s = {0};
        uint64_t v;
        if (!rd_field(&d, &num, &wt, &s, &v)) {
            *why = "not a ServerReflectionResponse";
            goto fail;
        }
        if (wt != 2)
            continue;
        if (num == 2) {
            if (!decode_request(s, r)) {
                *why = "bad original_request";
                goto fail;
            }
            continue;
        }
        if (num != 4 && num != 5 && num != 6 && num != 7)
            continue;
        if (r->kind != PT_REFL_R_OTHER || r->item_cnt != 0) {
            *why = "a response with two answers";
            goto fail;
        }
        int rc = 0;
        if (num == 4) {
            r->kind = PT_REFL_R_FILES;
            rc = decode_list(s, false, r, &cap, why);
        } else if (num == 6) {
            r->kind = PT_REFL_R_SERVICES;
            rc = decode_list(s, true, r, &cap, why);
        } else if (num == 7) {
            r->kind = PT_REFL_R_ERROR;
            rc = decode_error(s, r, why);
        }
        if (rc != 0)
            goto fail;
    }
    return 0;
fail:
    pt_refl_resp_free(r);
    return -1;
}

void pt_refl_resp_free(pt_refl_resp_t *r)
{
    free(r->items);
    r->items = NULL;
    r->item_cnt = 0;
}

/* ---- the file set and the dependency walk ------------------------------------------- */

static char *dup_str(pt_refl_str_t s)
{
    char *p = malloc(s.len + 1);
    if (p != NULL) {
        memcpy(p, s.p, s.len);
        p[s.len] = '\0';
    }
    return p;
}

/* A name usable as a file name: not empty, no NUL, bounded. */
static bool name_ok(pt_refl_str_t s)
{
    return s.len != 0 && s.len <= 4096 && memchr(s.p, '\0', s.len) == NULL;
}

static void file_free(pt_refl_file_t *f)
{
    for (size_t i = 0; i < f->dep_cnt; i++)
        free(f->deps[i]);
    free(f->deps);
    free(f->name);
    free(f->data);
}

const pt_refl_file_t *pt_refl_files_find(const pt_refl_files_t *fs, const char *name)
{
    for (size_t i = 0; i < fs->cnt; i++)
        if (strcmp(fs->v[i].name, name) == 0)
            return &fs->v[i];
    return NULL;
}

int pt_refl_files_add(pt_refl_files_t *fs, const uint8_t *data, size_t len, const char **why)
{
    pt_refl_file_t f = {0};
    size_t dep_cap = 0;
    rd_t d = {data, data + len};
    *why = "out of memory";
    while (d.p != d.end) {
        uint32_t num;
        unsigned wt;
        pt_refl_str_t s = {0};
        uint64_t v;
        if (!rd_field(&d, &num, &wt, &s, &v)) {
            *why = "not a FileDescriptorProto";
            goto fail;
        }
        if (wt != 2 || (num != 1 && num != 3))
            continue;
        if (!name_ok(s)) {
            *why = "a FileDescriptorProto with an empty or invalid file name";
            goto fail;
        }
        if (num == 1) {
            free(f.name);
            if ((f.name = dup_str(s)) == NULL)
                goto fail;
            continue;
        }
        if (f.dep_cnt == PT_REFL_MAX_FILES) {
            *why = "a file with too many imports";
            goto fail;
        }
        if (f.dep_cnt == dep_cap) {
            size_t nc = dep_cap != 0 ? dep_cap * 2 : 4;
            char **nv = realloc(f.deps, nc * sizeof(*nv));
            if (nv == NULL)
                goto fail;
            f.deps = nv;
            dep_cap = nc;
        }
        if ((f.deps[f.dep_cnt] = dup_str(s)) == NULL)
            goto fail;
        f.dep_cnt++;
    }
    if (f.name == NULL) {
        *why = "a FileDescriptorProto without a file name";
        goto fail;
    }
    if (pt_refl_files_find(fs, f.name) != NULL) {
        file_free(&f);
        return 1;
    }
    if (fs->cnt == PT_REFL_MAX_FILES || len > PT_REFL_MAX_BYTES - fs->bytes) {
        *why = fs->cnt == PT_REFL_MAX_FILES ? "too many files" : "files over 64 MiB together";
        goto fail;
    }
    if (fs->cnt == fs->cap) {
        size_t nc = fs->cap != 0 ? fs->cap * 2 : 8;
        pt_refl_file_t *nv = realloc(fs->v, nc * sizeof(*nv));
        if (nv == NULL)
            goto fail;
        fs->v = nv;
        fs->cap = nc;
    }
    if ((f.data = malloc(len != 0 ? len : 1)) == NULL)
        goto fail;
    if (len != 0)
        memcpy(f.data, data, len);
    f.len = len;
    fs->bytes += len;
    fs->v[fs->cnt++] = f;
    return 0;
fail:
    file_free(&f);
    return -1;
}

size_t pt_refl_files_missing(const pt_refl_files_t *fs, const char **out, const char **by,
                             size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < fs->cnt; i++) {
        for (size_t j = 0; j < fs->v[i].dep_cnt; j++) {
            const char *dep = fs->v[i].deps[j];
            if (pt_refl_files_find(fs, dep) != NULL)
                continue;
            bool seen = false;
            for (size_t k = 0; k < n && k < cap && !seen; k++)
                seen = strcmp(out[k], dep) == 0;
            if (seen)
                continue;
            if (n < cap) {
                out[n] = dep;
                if (by != NULL)
                    by[n] = fs->v[i].name;
            }
            n++;
        }
    }
    return n;
}

uint8_t *pt_refl_files_to_set(const pt_refl_files_t *fs, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < fs->cnt; i++)
        total += 1 + 10 + fs->v[i].len;
    uint8_t *out = malloc(total != 0 ? total : 1);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < fs->cnt; i++) {
        out[n++] = 0x0a; /* FileDescriptorSet.file, LEN */
        n += put_varint(out + n, fs->v[i].len);
        memcpy(out + n, fs->v[i].data, fs->v[i].len);
        n += fs->v[i].len;
    }
    *len = n;
    return out;
}

void pt_refl_files_free(pt_refl_files_t *fs)
{
    for (size_t i = 0; i < fs->cnt; i++)
        file_free(&fs->v[i]);
    free(fs->v);
    memset(fs, 0, sizeof(*fs));
}
