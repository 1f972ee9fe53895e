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
/**
 * Monotonic milliseconds from CLOCK_MONOTONIC_COARSE: the same clock as
 * pt_now_ms(), never ahead of it, but up to one kernel tick (1-10 ms) behind.
 * Reading it costs a fifth of a full clock read (~6 vs ~29 ns of CPU on the
 * bench VM): for stamps that need no precision (an idle connection's age,
 * per-second budget buckets), never for timeouts.
 */
uint64_t pt_now_ms_coarse(void);

#endif /* PT_GATEWAY_CLOCK_H */
