// Declarations the toolchain's Glibc module does not export: epoll, eventfd,
// accept4, fallocate and mallinfo2 (<malloc.h>). Header only; no C code is compiled.
#ifndef ALLOCATION_ENGINE_CLINUX_SHIM_H
#define ALLOCATION_ENGINE_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <malloc.h>

// accept4 and fallocate are declared only under _GNU_SOURCE, which the Glibc
// module is not built with; declare them with glibc's exact prototypes.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addr_len, int flags);
extern int fallocate(int fd, int mode, off_t offset, off_t len);
#endif
