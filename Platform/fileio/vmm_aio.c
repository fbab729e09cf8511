// Linux native AIO (io_setup, io_submit, io_getevents) by raw system calls, so no libaio is
// needed. See include/CVMMFileIO.h.
#define _GNU_SOURCE
#include "CVMMFileIO.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#if defined(SYS_io_setup) && defined(SYS_io_submit) && defined(SYS_io_getevents) && defined(SYS_io_destroy) \
    && defined(__has_include)
#if __has_include(<linux/aio_abi.h>)
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>
#include <time.h>
#define VMM_LINUX_AIO 1
#endif
#endif
#endif

#if defined(VMM_LINUX_AIO)
struct vmm_aio {
    aio_context_t context;
    int eventfd;
    unsigned capacity;
    /// Prepared, not yet submitted: iocbs[0..<pending] (the kernel copies them in io_submit).
    unsigned pending;
    struct iocb *iocbs;
    struct iocb **pointers;
    struct io_event *events;
    /// Completions made here (refused submissions, space operations): reaped before the kernel's.
    unsigned local;
    uint64_t *localTags;
    int32_t *localResults;
};

/// The completion ring the kernel maps at the context's address (fs/aio.c, struct aio_ring): the
/// reaper reads it directly, as QEMU's linux-aio does, instead of an io_getevents per reap.
struct vmm_aio_ring {
    unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
    struct io_event events[];
};
#define VMM_AIO_RING_MAGIC 0xa10a10a1u

bool vmm_aio_compiled(void) { return true; }

vmm_aio *vmm_aio_create(unsigned entries, int *error) {
    vmm_aio *aio = calloc(1, sizeof *aio);
    if (!aio) { *error = ENOMEM; return NULL; }
    aio->capacity = entries;
    aio->eventfd = -1;
    aio->iocbs = calloc(entries, sizeof *aio->iocbs);
    aio->pointers = calloc(entries, sizeof *aio->pointers);
    aio->events = calloc(entries, sizeof *aio->events);
    aio->localTags = calloc(entries, sizeof *aio->localTags);
    aio->localResults = calloc(entries, sizeof *aio->localResults);
    if (!aio->iocbs || !aio->pointers || !aio->events || !aio->localTags || !aio->localResults) {
        *error = ENOMEM;
        vmm_aio_destroy(aio);
        return NULL;
    }
    for (unsigned i = 0; i < entries; i++) aio->pointers[i] = &aio->iocbs[i];
    aio->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (aio->eventfd < 0) { *error = errno; vmm_aio_destroy(aio); return NULL; }
    if (syscall(SYS_io_setup, entries, &aio->context) != 0) {
        *error = errno;
        aio->context = 0;
        vmm_aio_destroy(aio);
        return NULL;
    }
    return aio;
}

void vmm_aio_destroy(vmm_aio *aio) {
    // io_destroy waits for the operations in flight, so none writes into freed memory later.
    if (aio->context) syscall(SYS_io_destroy, aio->context);
    if (aio->eventfd >= 0) close(aio->eventfd);
    free(aio->iocbs);
    free(aio->pointers);
    free(aio->events);
    free(aio->localTags);
    free(aio->localResults);
    free(aio);
}

int vmm_aio_fd(vmm_aio *aio) { return aio->eventfd; }

/// Queues a completion made here and wakes the eventfd for it.
static void complete_locally(vmm_aio *aio, uint64_t tag, int32_t result) {
    aio->localTags[aio->local] = tag;
    aio->localResults[aio->local] = result;
    aio->local++;
    uint64_t one = 1;
    // Cannot fail short of a counter overflow (2^64 - 1 wake-ups unread).
    (void)!write(aio->eventfd, &one, sizeof one);
}

int vmm_aio_prepare(vmm_aio *aio, int operation, int fd, const struct iovec *vectors, unsigned count,
                    uint64_t offset, uint64_t tag) {
    if (aio->pending + aio->local >= aio->capacity) return -EBUSY;
    struct iocb *cb = &aio->iocbs[aio->pending];
    memset(cb, 0, sizeof *cb);
    cb->aio_data = tag;
    cb->aio_fildes = (uint32_t)fd;
    cb->aio_flags = IOCB_FLAG_RESFD;
    cb->aio_resfd = (uint32_t)aio->eventfd;
    switch (operation) {
    case VMM_URING_READV: cb->aio_lio_opcode = IOCB_CMD_PREADV; break;
    case VMM_URING_WRITEV: cb->aio_lio_opcode = IOCB_CMD_PWRITEV; break;
    case VMM_URING_WRITEV_DSYNC:
        cb->aio_lio_opcode = IOCB_CMD_PWRITEV;
        cb->aio_rw_flags = RWF_DSYNC;
        break;
    case VMM_URING_DATASYNC: cb->aio_lio_opcode = IOCB_CMD_FDSYNC; break;
    default: return -EINVAL;
    }
    if (operation != VMM_URING_DATASYNC) {
        cb->aio_buf = (uint64_t)(uintptr_t)vectors;
        cb->aio_nbytes = count;
        cb->aio_offset = (int64_t)offset;
    }
    aio->pending++;
    return 0;
}

int vmm_aio_space(vmm_aio *aio, int operation, int fd, uint64_t offset, uint64_t length, uint64_t tag) {
    int mode;
    switch (operation) {
    case VMM_URING_PUNCH_HOLE: mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; break;
    case VMM_URING_ZERO_RANGE: mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE; break;
    default: return -EINVAL;
    }
    if (aio->pending + aio->local >= aio->capacity) return -EBUSY;
    int rc = fallocate(fd, mode, (off_t)offset, (off_t)length);
    complete_locally(aio, tag, rc == 0 ? 0 : -errno);
    return 0;
}

int vmm_aio_submit(vmm_aio *aio) {
    int total = 0;
    while (aio->pending > 0) {
        long rc = syscall(SYS_io_submit, aio->context, (long)aio->pending, aio->pointers);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0 && errno == EAGAIN) rc = 0;
        if (rc < 0) {
            // The first one was refused (EBADF, EINVAL, ...): it completes with the error, or,
            // an fdatasync this file cannot do asynchronously, synchronously.
            struct iocb *cb = &aio->iocbs[0];
            int error = errno;
            int32_t result = -error;
            if (cb->aio_lio_opcode == IOCB_CMD_FDSYNC && error == EINVAL)
                result = fdatasync((int)cb->aio_fildes) == 0 ? 0 : -errno;
            // The slot stays counted: pending + local never exceeds the capacity.
            complete_locally(aio, cb->aio_data, result);
            rc = 1;
        } else {
            total += (int)rc;
            if (rc == 0) {
                if (total == 0) return -EAGAIN;
                break;
            }
        }
        aio->pending -= (unsigned)rc;
        memmove(aio->iocbs, aio->iocbs + rc, aio->pending * sizeof *aio->iocbs);
    }
    return total;
}

unsigned vmm_aio_reap(vmm_aio *aio, uint64_t *tags, int32_t *results, unsigned capacity) {
    uint64_t counter;
    // Reset first, so a completion arriving after the ring was read wakes the owner again.
    (void)!read(aio->eventfd, &counter, sizeof counter);
    unsigned count = 0;
    while (aio->local > 0 && count < capacity) {
        aio->local--;
        tags[count] = aio->localTags[aio->local];
        results[count] = aio->localResults[aio->local];
        count++;
    }
    struct vmm_aio_ring *ring = (struct vmm_aio_ring *)(uintptr_t)aio->context;
    if (ring->magic == VMM_AIO_RING_MAGIC && ring->incompat_features == 0) {
        while (count < capacity) {
            unsigned head = ring->head;
            unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
            if (head == tail || head >= ring->nr || tail >= ring->nr) break;
            unsigned available = tail > head ? tail - head : ring->nr - head;
            if (available > capacity - count) available = capacity - count;
            for (unsigned i = 0; i < available; i++) {
                tags[count] = ring->events[head + i].data;
                results[count] = (int32_t)ring->events[head + i].res;
                count++;
            }
            __atomic_store_n(&ring->head, (head + available) % ring->nr, __ATOMIC_RELEASE);
        }
        return count;
    }
    if (count == capacity) return count;
    struct timespec zero = {0, 0};
    long rc = syscall(SYS_io_getevents, aio->context, 0L, (long)(capacity - count), aio->events, &zero);
    for (long i = 0; i < rc; i++) {
        tags[count] = aio->events[i].data;
        results[count] = (int32_t)aio->events[i].res;
        count++;
    }
    return count;
}
#else
struct vmm_aio { int unused; };

bool vmm_aio_compiled(void) { return false; }

vmm_aio *vmm_aio_create(unsigned entries, int *error) {
    (void)entries;
    *error = ENOSYS;
    return NULL;
}

void vmm_aio_destroy(vmm_aio *aio) { (void)aio; }

int vmm_aio_fd(vmm_aio *aio) { (void)aio; return -1; }

int vmm_aio_prepare(vmm_aio *aio, int operation, int fd, const struct iovec *vectors, unsigned count,
                    uint64_t offset, uint64_t tag) {
    (void)aio; (void)operation; (void)fd; (void)vectors; (void)count; (void)offset; (void)tag;
    return -ENOSYS;
}

int vmm_aio_space(vmm_aio *aio, int operation, int fd, uint64_t offset, uint64_t length, uint64_t tag) {
    (void)aio; (void)operation; (void)fd; (void)offset; (void)length; (void)tag;
    return -ENOSYS;
}

int vmm_aio_submit(vmm_aio *aio) { (void)aio; return -ENOSYS; }

unsigned vmm_aio_reap(vmm_aio *aio, uint64_t *tags, int32_t *results, unsigned capacity) {
    (void)aio; (void)tags; (void)results; (void)capacity;
    return 0;
}
#endif
