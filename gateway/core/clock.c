/*
 * clock.c -- monotonic clocks (worker.h). CLOCK_MONOTONIC everywhere, so a
 * wall-clock jump never disturbs timeouts or rate-limit buckets (UP-10).
 */
#include <time.h>
#include "net/worker.h"

uint64_t pt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t pt_now_ms(void)
{
    return pt_now_ns() / 1000000ull;
}
