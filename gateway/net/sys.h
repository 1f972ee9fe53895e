/*
 * sys.h -- the data path's socket calls, without glibc's cancellation points.
 *
 * Portico never cancels a thread (no pthread_cancel anywhere), but in a
 * process with more than one thread -- every Portico: the main thread and
 * the workers -- glibc's recv, send, read, readv and sendmsg switch the
 * calling thread to asynchronous cancellation around the system call and
 * back: two atomic compare-and-swaps and ~30 instructions per call, on every
 * socket call of every request and relayed message (a single-threaded
 * process such as an nginx worker skips them). syscall(2) is not a
 * cancellation point. Same contract as the libc calls: -1 and errno. (syscall()
 * reads every argument as a long: ints are passed as longs.)
 *
 * Under AddressSanitizer the libc calls stay, so that its interceptors keep
 * checking the buffers handed to the kernel.
 */
#ifndef PT_NET_SYS_H
#define PT_NET_SYS_H

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PT_SYS_LIBC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PT_SYS_LIBC 1
#endif
#endif

#ifdef PT_SYS_LIBC
static inline ssize_t pt_recv(int fd, void *buf, size_t len, int flags) { return recv(fd, buf, len, flags); }
static inline ssize_t pt_send(int fd, const void *buf, size_t len, int flags) { return send(fd, buf, len, flags); }
static inline ssize_t pt_read(int fd, void *buf, size_t len) { return read(fd, buf, len); }
static inline ssize_t pt_readv(int fd, const struct iovec *v, int n) { return readv(fd, v, n); }
static inline ssize_t pt_sendmsg(int fd, const struct msghdr *m, int flags) { return sendmsg(fd, m, flags); }
#else
static inline ssize_t pt_recv(int fd, void *buf, size_t len, int flags)
{
    return (ssize_t)syscall(SYS_recvfrom, (long)fd, buf, len, (long)flags, NULL, NULL);
}

static inline ssize_t pt_send(int fd, const void *buf, size_t len, int flags)
{
    return (ssize_t)syscall(SYS_sendto, (long)fd, buf, len, (long)flags, NULL, 0L);
}

static inline ssize_t pt_read(int fd, void *buf, size_t len)
{
    return (ssize_t)syscall(SYS_read, (long)fd, buf, len);
}

static inline ssize_t pt_readv(int fd, const struct iovec *v, int n)
{
    return (ssize_t)syscall(SYS_readv, (long)fd, v, (long)n);
}

static inline ssize_t pt_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return (ssize_t)syscall(SYS_sendmsg, (long)fd, m, (long)flags);
}
#endif

#endif /* PT_NET_SYS_H */
