// See include/CVMMFileIO.h. _GNU_SOURCE exposes O_DIRECT, statx and RWF_DSYNC in glibc.
#define _GNU_SOURCE
#include "CVMMFileIO.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <linux/falloc.h>
#include <linux/stat.h>
#endif

#if defined(__linux__) && defined(VMM_HAVE_LIBURING) && defined(__has_include)
#if __has_include(<liburing.h>)
#include <liburing.h>
#define VMM_URING 1
#endif
#endif

int vmm_open_direct_flag(void) {
#if defined(O_DIRECT)
    return O_DIRECT;
#else
    return 0;
#endif
}

int vmm_disable_file_cache(int fd) {
#if defined(F_NOCACHE)
    return fcntl(fd, F_NOCACHE, 1);
#else
    (void)fd;
    errno = ENOTSUP;
    return -1;
#endif
}

int vmm_direct_io_alignment(int fd, uint32_t *memory, uint32_t *offset) {
#if defined(__linux__) && defined(STATX_DIOALIGN) && defined(SYS_statx)
    struct statx info;
    memset(&info, 0, sizeof info);
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &info) != 0) return -1;
    if (!(info.stx_mask & STATX_DIOALIGN) || info.stx_dio_offset_align == 0 || info.stx_dio_mem_align == 0) {
        errno = ENOTSUP;
        return -1;
    }
    *memory = info.stx_dio_mem_align;
    *offset = info.stx_dio_offset_align;
    return 0;
#else
    (void)fd; (void)memory; (void)offset;
    errno = ENOTSUP;
    return -1;
#endif
}

#if defined(VMM_URING)
struct vmm_uring {
    struct io_uring ring;
};

bool vmm_uring_compiled(void) { return true; }

vmm_uring *vmm_uring_create(unsigned entries, int *error) {
    vmm_uring *ring = calloc(1, sizeof *ring);
    if (!ring) { *error = ENOMEM; return NULL; }
    int rc = io_uring_queue_init(entries, &ring->ring, 0);
    if (rc < 0) { free(ring); *error = -rc; return NULL; }
    return ring;
}

void vmm_uring_destroy(vmm_uring *ring) {
    io_uring_queue_exit(&ring->ring);
    free(ring);
}

int vmm_uring_fd(vmm_uring *ring) { return ring->ring.ring_fd; }

int vmm_uring_prepare(vmm_uring *ring, int operation, int fd, const struct iovec *vectors, unsigned count,
                      uint64_t offset, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);
    if (!sqe) return -EBUSY;
    switch (operation) {
    case VMM_URING_READV: io_uring_prep_readv(sqe, fd, vectors, count, offset); break;
    case VMM_URING_WRITEV: io_uring_prep_writev(sqe, fd, vectors, count, offset); break;
    case VMM_URING_WRITEV_DSYNC:
        io_uring_prep_writev(sqe, fd, vectors, count, offset);
        sqe->rw_flags = RWF_DSYNC;
        break;
    default: io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); break;
    }
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vmm_uring_prepare_space(vmm_uring *ring, int operation, int fd, uint64_t offset, uint64_t length,
                            uint64_t tag) {
    int mode;
    switch (operation) {
    case VMM_URING_PUNCH_HOLE: mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; break;
    case VMM_URING_ZERO_RANGE: mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE; break;
    default: return -EINVAL;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fallocate(sqe, fd, mode, offset, length);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vmm_uring_submit(vmm_uring *ring) {
    // io_uring_submit may take only part of the queue (the kernel stops at the first entry it
    // cannot take for now): keep going until every entry is in, or the kernel says "not now".
    int total = 0;
    while (io_uring_sq_ready(&ring->ring) > 0) {
        int rc = io_uring_submit(&ring->ring);
        if (rc == -EINTR) continue;
        if (rc < 0) return rc;
        if (rc == 0) return -EAGAIN;
        total += rc;
    }
    return total;
}

unsigned vmm_uring_reap(vmm_uring *ring, uint64_t *tags, int32_t *results, unsigned capacity) {
    struct io_uring_cqe *cqe;
    unsigned head, count = 0;
    io_uring_for_each_cqe(&ring->ring, head, cqe) {
        if (count == capacity) break;
        tags[count] = io_uring_cqe_get_data64(cqe);
        results[count] = cqe->res;
        count++;
    }
    io_uring_cq_advance(&ring->ring, count);
    return count;
}
#else
struct vmm_uring { int unused; };

bool vmm_uring_compiled(void) { return false; }

vmm_uring *vmm_uring_create(unsigned entries, int *error) {
    (void)entries;
    *error = ENOSYS;
    return NULL;
}

void vmm_uring_destroy(vmm_uring *ring) { (void)ring; }

int vmm_uring_fd(vmm_uring *ring) { (void)ring; return -1; }

int vmm_uring_prepare(vmm_uring *ring, int operation, int fd, const struct iovec *vectors, unsigned count,
                      uint64_t offset, uint64_t tag) {
    (void)ring; (void)operation; (void)fd; (void)vectors; (void)count; (void)offset; (void)tag;
    return -ENOSYS;
}

int vmm_uring_prepare_space(vmm_uring *ring, int operation, int fd, uint64_t offset, uint64_t length,
                            uint64_t tag) {
    (void)ring; (void)operation; (void)fd; (void)offset; (void)length; (void)tag;
    return -ENOSYS;
}

int vmm_uring_submit(vmm_uring *ring) { (void)ring; return -ENOSYS; }

unsigned vmm_uring_reap(vmm_uring *ring, uint64_t *tags, int32_t *results, unsigned capacity) {
    (void)ring; (void)tags; (void)results; (void)capacity;
    return 0;
}
#endif
