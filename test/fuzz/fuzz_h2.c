/*
 * fuzz_h2.c -- the "HTTP/2 session feed" target: arbitrary bytes after the
 * client preface into the codec's server session (gateway/http/h2.c), through the
 * same read path as a real connection (an in-memory bufferevent pair), with
 * the fake request layer of test/support/h2_fake.c answering requests.
 *
 * The first input byte picks how the rest is split into reads (1..64 bytes
 * or everything at once) and whether requests are answered at once or held
 * and answered at the end, so split-read and deferred-response paths are
 * both exercised.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stddef.h>
#include <stdint.h>
#include "http/h2.h"
#include "../support/h2_fake.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void drain_client(fake_conn_t *fc)
{
    struct evbuffer *in = bufferevent_get_input(fc->client);
    evbuffer_drain(in, evbuffer_get_length(in));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned mode = size != 0 ? data[0] : 0;
    if (size != 0) {
        data++;
        size--;
    }
    fake_reset();
    fake.mode = (mode & 0x80) ? FAKE_HOLD : FAKE_ECHO;
    fake.auto_consume = (mode & 0x40) == 0;
    fake.trailer_name = (mode & 0x20) ? "grpc-status" : NULL;
    fake.trailer_value = "0";
    size_t step = (mode & 0x1f) == 0 ? (size != 0 ? size : 1) : (size_t)(mode & 0x1f) * 2;

    fake_conn_t fc;
    fake_conn_init(&fc, NULL);
    pt__h2_conn_start(fc.conn, (const uint8_t *)PREFACE, sizeof(PREFACE) - 1);
    for (size_t off = 0; off < size && !fc.closed; off += step) {
        size_t n = size - off < step ? size - off : step;
        bufferevent_write(fc.client, data + off, n);
        fake_conn_run(&fc, 2);
        drain_client(&fc);
    }
    /* answer (or consume for) whatever is still waiting, then let it flush */
    for (size_t i = 0; i < fake.rec_cnt && !fc.closed; i++) {
        fake_rec_t *r = &fake.recs[i];
        if (r->req == NULL || !r->headers_done)
            continue;
        if (!fake.auto_consume)
            fake_consume(r, evbuffer_get_length(r->req->body));
        if (!pt__resp_started(r->req))
            fake_respond(r, 200, "ok", 2, true);
    }
    fake_conn_run(&fc, 4);
    drain_client(&fc);
    if (!fc.closed && fc.conn != NULL)
        pt__h2_conn_drain(fc.conn);
    fake_conn_run(&fc, 4);
    fake_conn_dispose(&fc);
    fake_reset();
    return 0;
}
