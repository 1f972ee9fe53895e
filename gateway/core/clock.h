/*
 * clock.h -- the monotonic clocks (clock.c). CLOCK_MONOTONIC everywhere, so a
 * wall-clock jump never disturbs timeouts or rate-limit buckets (UP-10).
 * On a worker, w->now_ms caches pt_now_ms() for the current loop iteration.
 */
#ifndef PT_GATEWAY_CLOCK_H
#define PT_GATEWAY_CLOCK_H

#include <stdint.h>

/** Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t pt_now_ms(void);
/** Monotonic nanoseconds. */
uint64_t pt_now_ns(void);

#endif /* PT_GATEWAY_CLOCK_H */
