/*
 * status.c -- the status table accessors (see status.h).
 */
#include <stddef.h>
#include "portico/status.h"

typedef struct status_row {
    const char *name, *msg;
    int http, grpc;
} status_row_t;

/* Indexed by (st - PT__STATUS_FIRST - 1); built from the one X-macro table. */
static const status_row_t rows[] = {
#define ROW(name, http, grpc, msg) {&#name[4], msg, http, grpc},
    PT_STATUS_MAP(ROW)
#undef ROW
};

static const status_row_t *row_of(int st)
{
    if (st <= PT__STATUS_FIRST || st >= PT__STATUS_END)
        return NULL;
    return &rows[st - PT__STATUS_FIRST - 1];
}

const char *pt_strerror(int st)
{
    if (st == 0)
        return "ok";
    const status_row_t *r = row_of(st);
    return r != NULL ? r->msg : "unknown error";
}

const char *pt_status_name(int st)
{
    if (st == 0)
        return "OK";
    const status_row_t *r = row_of(st);
    return r != NULL ? r->name : "UNKNOWN";
}

int pt_status_http(int st)
{
    if (st == 0)
        return 200;
    const status_row_t *r = row_of(st);
    return r != NULL ? r->http : 500;
}

int pt_status_grpc(int st)
{
    if (st == 0)
        return 0;
    const status_row_t *r = row_of(st);
    return r != NULL ? r->grpc : 2;
}
