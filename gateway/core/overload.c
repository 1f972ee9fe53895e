/*
 * overload.c -- process-wide connection and buffered-memory counters and the
 * overload decisions (see overload.h).
 */
#include "core/overload.h"

#include <stdatomic.h>
#include <string.h>

static atomic_int_fast64_t buffered; /* may dip below 0 for a moment between workers */
static atomic_uint conns;
static atomic_uint_fast64_t refused_conns, refused_memory, shed;

void pt_overload_buffered_add(int64_t delta)
{
    if (delta != 0)
        atomic_fetch_add_explicit(&buffered, delta, memory_order_relaxed);
}

uint64_t pt_overload_buffered(void)
{
    int64_t v = atomic_load_explicit(&buffered, memory_order_relaxed);
    return v > 0 ? (uint64_t)v : 0;
}

bool pt_overload_conn_admit(uint32_t max)
{
    unsigned n = atomic_fetch_add_explicit(&conns, 1, memory_order_relaxed);
    if (n < max)
        return true;
    atomic_fetch_sub_explicit(&conns, 1, memory_order_relaxed);
    return false;
}

void pt_overload_conn_done(void)
{
    atomic_fetch_sub_explicit(&conns, 1, memory_order_relaxed);
}

bool pt_overload_over(const pt_overload_t *o)
{
    return o->memory != 0 && pt_overload_buffered() > o->memory;
}

void pt_overload_count_refused(bool memory)
{
    atomic_fetch_add_explicit(memory ? &refused_memory : &refused_conns, 1, memory_order_relaxed);
}

void pt_overload_count_shed(void)
{
    atomic_fetch_add_explicit(&shed, 1, memory_order_relaxed);
}

size_t pt_overload_refusal(const pt_overload_t *o, char *buf, size_t cap)
{
    static const char body[] =
        "{\"error\":{\"code\":\"OVERLOADED\",\"message\":\"gateway overloaded\"}}\n";
    int n = snprintf(buf, cap,
                     "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                     "retry-after: %u\r\nconnection: close\r\ncontent-length: %zu\r\n\r\n%s",
                     o->retry_after_s, sizeof(body) - 1, body);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void pt_overload_metrics(FILE *f, const pt_overload_t *o, uint32_t max_connections)
{
    fprintf(f,
            "# HELP portico_client_connections Client connections open (process-wide).\n"
            "# TYPE portico_client_connections gauge\nportico_client_connections %u\n"
            "# HELP portico_client_connections_max limits.max_connections.\n"
            "# TYPE portico_client_connections_max gauge\nportico_client_connections_max %u\n"
            "# HELP portico_buffered_bytes Bytes buffered for clients (process-wide).\n"
            "# TYPE portico_buffered_bytes gauge\nportico_buffered_bytes %llu\n"
            "# HELP portico_overload_memory_bytes overload.memory (0: off).\n"
            "# TYPE portico_overload_memory_bytes gauge\nportico_overload_memory_bytes %llu\n"
            "# HELP portico_overloaded 1 while over overload.memory.\n"
            "# TYPE portico_overloaded gauge\nportico_overloaded %d\n"
            "# HELP portico_connections_refused_total Connections closed at accept, by reason.\n"
            "# TYPE portico_connections_refused_total counter\n"
            "portico_connections_refused_total{reason=\"max_connections\"} %llu\n"
            "portico_connections_refused_total{reason=\"memory\"} %llu\n"
            "# HELP portico_requests_shed_total Requests answered 503 over overload.memory.\n"
            "# TYPE portico_requests_shed_total counter\nportico_requests_shed_total %llu\n",
            atomic_load(&conns), max_connections, (unsigned long long)pt_overload_buffered(),
            (unsigned long long)o->memory, pt_overload_over(o) ? 1 : 0,
            (unsigned long long)atomic_load(&refused_conns),
            (unsigned long long)atomic_load(&refused_memory), (unsigned long long)atomic_load(&shed));
}
