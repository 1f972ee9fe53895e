/*
 * asan.h -- marking memory a pool keeps for reuse as off-limits under
 * AddressSanitizer (no-ops otherwise): a stale pointer into a recycled
 * object (a finished request's arena, a finished stream's struct) still
 * faults in the sanitizer build, as it would have after free().
 */
#ifndef PT_GATEWAY_ASAN_H
#define PT_GATEWAY_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define PT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PT_ASAN 1
#endif
#endif

#ifdef PT_ASAN
#include <sanitizer/asan_interface.h>
#define PT_ASAN_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define PT_ASAN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define PT_ASAN_POISON(p, n) ((void)(p), (void)(n))
#define PT_ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif /* PT_GATEWAY_ASAN_H */
