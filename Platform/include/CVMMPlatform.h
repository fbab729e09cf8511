// CVMMPlatform: only what Swift cannot import on its own.
//  - CMSG_* are macros; Swift sees none of them.
//  - cpu_set_t manipulation (CPU_ZERO/CPU_SET) is macros.
//  - memfd_create and its seal constants are hidden behind _GNU_SOURCE in the system module Swift
//    already built, so we reach the syscall directly.
//  - Atomic loads/stores on arbitrary guest-memory addresses: static inline, so Swift inlines them.
// Everything else (eventfd, epoll, poll, mmap, sockets) is imported from Glibc/Darwin in Swift.
#ifndef CVMMPLATFORM_H
#define CVMMPLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sched.h>
#endif

// ---- kqueue: native on Darwin and the BSDs, libkqueue on Linux (-Xcc -I<prefix>/include/kqueue),
// ---- or a declarations-only header that exists only so CI can type-check the backend.
#if defined(VMM_KQUEUE_TYPECHECK)
#include "../kqueue-typecheck/vmm_kqueue_typecheck.h"
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <sys/event.h>
#elif defined(__linux__) && defined(__has_include)
#if __has_include(<sys/event.h>)
#include <sys/event.h>
#endif
#endif

// ---- peer credentials and closefrom: libbsd on Linux, libc elsewhere.
#if defined(__linux__)
int getpeereid(int socket, uid_t *_Nonnull euid, gid_t *_Nonnull egid);
void closefrom(int lowfd);
#endif

// ---- Control messages (SCM_RIGHTS).
static inline size_t vmm_cmsg_space(size_t length) { return CMSG_SPACE(length); }
static inline size_t vmm_cmsg_len(size_t length) { return CMSG_LEN(length); }
static inline struct cmsghdr *_Nullable vmm_cmsg_firsthdr(struct msghdr *_Nonnull msg) {
    return CMSG_FIRSTHDR(msg);
}
static inline struct cmsghdr *_Nullable vmm_cmsg_nxthdr(struct msghdr *_Nonnull msg,
                                                        struct cmsghdr *_Nonnull cmsg) {
    return CMSG_NXTHDR(msg, cmsg);
}
static inline unsigned char *_Nonnull vmm_cmsg_data(struct cmsghdr *_Nonnull cmsg) {
    return CMSG_DATA(cmsg);
}
/// Bytes of payload a control message carries (cmsg_len minus its header), never negative.
static inline size_t vmm_cmsg_payload_length(const struct cmsghdr *_Nonnull cmsg) {
    size_t header = (size_t)((const unsigned char *)CMSG_DATA((struct cmsghdr *)cmsg) -
                             (const unsigned char *)cmsg);
    return cmsg->cmsg_len > header ? (size_t)cmsg->cmsg_len - header : 0;
}

/// recvmsg flag that makes received fds close-on-exec atomically, or 0 where it does not exist.
static inline int vmm_msg_cmsg_cloexec(void) {
#if defined(MSG_CMSG_CLOEXEC)
    return MSG_CMSG_CLOEXEC;
#elif defined(__linux__)
    return 0x40000000;
#else
    return 0;
#endif
}

/// send flag that suppresses SIGPIPE per call, or 0 where it does not exist (Darwin uses SO_NOSIGPIPE).
static inline int vmm_msg_nosignal(void) {
#if defined(MSG_NOSIGNAL)
    return MSG_NOSIGNAL;
#else
    return 0;
#endif
}

// ---- accept4 (Linux): hidden behind _GNU_SOURCE in the prebuilt Glibc module, so make the syscall.
#if defined(__linux__)
static inline int vmm_accept4_cloexec(int fd) {
    return (int)syscall(SYS_accept4, fd, (void *)0, (void *)0, SOCK_CLOEXEC);
}
#endif

// ---- memfd (Linux). The raw syscall avoids depending on how the Glibc module was built.
#if defined(__linux__)
#define VMM_MFD_CLOEXEC 0x0001U
#define VMM_MFD_ALLOW_SEALING 0x0002U
#define VMM_F_ADD_SEALS 1033
#define VMM_F_GET_SEALS 1034
#define VMM_F_SEAL_SEAL 0x0001
#define VMM_F_SEAL_SHRINK 0x0002
#define VMM_F_SEAL_GROW 0x0004
static inline int vmm_memfd_create(const char *_Nonnull name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}
#endif

// ---- Block backing files (Linux): fallocate and its mode bits are hidden behind _GNU_SOURCE in the
// ---- prebuilt Glibc module; BLKSSZGET is an _IO() macro. Raw syscall / ioctl wrappers instead.
#if defined(__linux__)
#include <sys/ioctl.h>
#define VMM_FALLOC_FL_KEEP_SIZE 0x01
#define VMM_FALLOC_FL_PUNCH_HOLE 0x02
#define VMM_FALLOC_FL_ZERO_RANGE 0x10
static inline int vmm_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return (int)syscall(SYS_fallocate, fd, mode, (off_t)offset, (off_t)length);
}
/// The logical block size of a block device (ioctl BLKSSZGET = _IO(0x12, 104)).
static inline int vmm_block_logical_size(int fd, int *_Nonnull size) {
    return ioctl(fd, _IO(0x12, 104), size);
}
#endif

// ---- pipe2: Glibc declares it only under _GNU_SOURCE, which the prebuilt Glibc module lacks, so
// ---- Linux makes the raw syscall; the BSDs declare it by default. Absent on Darwin.
#if defined(__linux__)
static inline int vmm_pipe2(int *_Nonnull fds, int flags) { return (int)syscall(SYS_pipe2, fds, flags); }
#elif defined(__FreeBSD__) || defined(__OpenBSD__)
static inline int vmm_pipe2(int *_Nonnull fds, int flags) { return pipe2(fds, flags); }
#endif

// ---- POSIX shared memory. Darwin declares shm_open variadic (`int shm_open(const char *, int, ...)`),
// ---- which Swift cannot call; this fixed-arity wrapper works everywhere.
#include <sys/mman.h>
static inline int vmm_shm_open(const char *_Nonnull name, int oflag, mode_t mode) {
    return shm_open(name, oflag, mode);
}

// ---- CPU pinning for benchmarks (cpu_set_t is manipulated by macros).
/// Pins the calling thread to one CPU. Returns 0, or -1 with errno set; ENOSYS where unsupported.
static inline int vmm_pin_current_thread(int cpu) {
#if defined(__linux__)
    // CPU_ZERO/CPU_SET/sched_setaffinity need _GNU_SOURCE, which the prebuilt Glibc module lacks:
    // build the mask by hand (1024 CPUs, the size of glibc's cpu_set_t) and make the raw syscall.
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    if (cpu < 0 || cpu >= 1024) { errno = EINVAL; return -1; }
    mask[(size_t)cpu / (8 * sizeof(unsigned long))] |= 1UL << ((size_t)cpu % (8 * sizeof(unsigned long)));
    return (int)syscall(SYS_sched_setaffinity, 0, sizeof(mask), mask);
#else
    (void)cpu;
    errno = ENOSYS;
    return -1;
#endif
}

/// How many CPUs the calling thread may run on (its affinity mask on Linux; the online CPUs
/// elsewhere). At least 1.
static inline int vmm_usable_cpu_count(void) {
#if defined(__linux__)
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
    if (bytes > 0) {
        int count = 0;
        for (size_t i = 0; i < (size_t)bytes / sizeof(unsigned long); i++) count += __builtin_popcountl(mask[i]);
        if (count > 0) return count;
    }
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

// ---- Atomics on memory shared with another process (guest rings). Static inline: Swift inlines them.
static inline uint16_t vmm_load_acquire_u16(const void *_Nonnull p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint16_t vmm_load_relaxed_u16(const void *_Nonnull p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}
static inline void vmm_store_release_u16(void *_Nonnull p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}
static inline void vmm_store_relaxed_u16(void *_Nonnull p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint32_t vmm_load_acquire_u32(const void *_Nonnull p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}
static inline void vmm_store_release_u32(void *_Nonnull p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}
// Dirty-log bitmap (vhost-user live migration): the front-end reads and clears it concurrently.
static inline void vmm_atomic_or_u8(void *_Nonnull p, uint8_t bits) {
    __atomic_fetch_or((uint8_t *)p, bits, __ATOMIC_SEQ_CST);
}
static inline uint8_t vmm_load_relaxed_u8(const void *_Nonnull p) {
    return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
}
static inline uint8_t vmm_atomic_exchange_u8(void *_Nonnull p, uint8_t v) {
    return __atomic_exchange_n((uint8_t *)p, v, __ATOMIC_SEQ_CST);
}
static inline void vmm_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void vmm_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void vmm_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

// ---- Cache hints for guest buffers a device is about to touch (no effect on correctness; a hint
// on an address that is not mapped does not fault).
static inline void vmm_prefetch_read(const void *_Nonnull p) { __builtin_prefetch(p, 0, 3); }
static inline void vmm_prefetch_write(const void *_Nonnull p) {
#if defined(__x86_64__)
    // PREFETCHW takes the line exclusive (a plain prefetch only shares it, and the store then
    // waits for the other core to give it up). The baseline x86-64 target lets the compiler emit
    // only PREFETCHT0 for a write hint; every x86-64 CPU an OS of this package runs on executes
    // PREFETCHW (or treats it as a NOP).
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

// ---- Statistics counters shared by threads of this process (relaxed: totals, no ordering).
static inline void vmm_add_relaxed_u64(void *_Nonnull p, uint64_t v) {
    __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_RELAXED);
}
static inline uint64_t vmm_load_relaxed_u64(const void *_Nonnull p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

// ---- TAP devices (Linux tun/tap): the ioctls are function-like macros and take struct ifreq.
#if defined(__linux__)
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
/// TUNSETIFF: attaches `fd` (/dev/net/tun) to tap NAME with `flags` (IFF_TAP|IFF_NO_PI|...),
/// creating it if needed. Returns 0 or -1 (errno).
static inline int vmm_tap_set_interface(int fd, const char *_Nonnull name, int flags) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (strlen(name) >= IFNAMSIZ) { errno = ENAMETOOLONG; return -1; }
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = (short)flags;
    return ioctl(fd, TUNSETIFF, &request);
}
/// TUNSETVNETHDRSZ: the virtio-net header size before each frame.
static inline int vmm_tap_set_vnet_header_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }
/// TUNSETOFFLOAD: the offloads (TUN_F_*) the kernel may hand us on read.
static inline int vmm_tap_set_offload(int fd, unsigned int offloads) { return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads); }
/// TUNSETQUEUE with IFF_ATTACH_QUEUE (attach != 0) or IFF_DETACH_QUEUE: steer frames to this queue or not.
static inline int vmm_tap_set_queue_attached(int fd, int attach) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = (short)(attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE);
    return ioctl(fd, TUNSETQUEUE, &request);
}
#endif

// ---- Atomics on the back-end's own memory shared between threads (deferred completions).
static inline uint64_t vmm_load_acquire_u64(const void *_Nonnull p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline void vmm_store_release_u64(void *_Nonnull p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
/// Compare-and-swap (sequentially consistent): 1 if `*p` was `expected` and is now `desired`.
static inline int vmm_cas_u64(void *_Nonnull p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline uint64_t vmm_fetch_add_u64(void *_Nonnull p, uint64_t v) {
    return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_SEQ_CST);
}
static inline uint64_t vmm_exchange_u64(void *_Nonnull p, uint64_t v) {
    return __atomic_exchange_n((uint64_t *)p, v, __ATOMIC_SEQ_CST);
}

#endif
