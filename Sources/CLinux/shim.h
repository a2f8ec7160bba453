// Declarations the toolchain's Glibc module does not export: epoll, eventfd,
// accept4, fallocate and mallinfo2 (<malloc.h>), and the stop-signal handler
// (below). Header only: the one function body is `static inline`, emitted by
// the importing module.
#ifndef ALLOCATION_ENGINE_CLINUX_SHIM_H
#define ALLOCATION_ENGINE_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>

// accept4 and fallocate are declared only under _GNU_SOURCE, which the Glibc
// module is not built with; declare them with glibc's exact prototypes.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags);
extern int fallocate(int fd, int mode, off_t offset, off_t len);

// The stop signals of `serve` (SIGTERM, SIGINT): a plain sigaction handler that
// writes the signal number to a pipe, installed synchronously, so from the
// moment `ae_install_stop_signals` returns no signal is lost (a dispatch
// source registers asynchronously, and one sent right after the port listened
// could be dropped). write(2) is async-signal-safe; errno is saved.
// <errno.h>, <unistd.h> and <string.h> are not included: a header included
// here makes this module own its declarations, and Swift then refuses e.g.
// `EIO` in a default argument of a file that does not import CLinux. The two
// functions needed are declared with glibc's prototypes instead.
extern int *__errno_location(void);
extern ssize_t write(int fd, const void *buf, size_t n);
static int ae_stop_signal_fd = -1;
static void ae_on_stop_signal(int sig) {
    int saved = *__errno_location();
    unsigned char b = (unsigned char)sig;
    if (ae_stop_signal_fd >= 0) { ssize_t n = write(ae_stop_signal_fd, &b, 1); (void)n; }
    *__errno_location() = saved;
}
/// Installs the handler for SIGTERM and SIGINT writing to `fd`; 0 or -1 (errno).
static inline int ae_install_stop_signals(int fd) {
    ae_stop_signal_fd = fd;
    struct sigaction sa = {0};
    sa.sa_handler = ae_on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, 0) != 0) return -1;
    if (sigaction(SIGINT, &sa, 0) != 0) return -1;
    return 0;
}
#endif
