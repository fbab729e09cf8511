// CVMMFileIO: direct I/O flags and io_uring for block back-ends, compiled apart from CVMMPlatform
// because it needs _GNU_SOURCE (O_DIRECT, statx) and, on Linux with liburing installed, links
// liburing. Everything here has a "not available" answer, so callers need no #if.
#ifndef CVMMFILEIO_H
#define CVMMFILEIO_H

#include <stdint.h>
#include <stdbool.h>
#include <sys/uio.h>

/// The open(2) flag that bypasses the page cache (O_DIRECT; its value differs per architecture),
/// or 0 where open has none (Darwin uses fcntl F_NOCACHE, OpenBSD has neither).
int vmm_open_direct_flag(void);

/// Turns the page cache off for an open file where that is an fcntl (Darwin: F_NOCACHE).
/// Returns 0, -1 with errno set, or -1/ENOTSUP where there is no such call.
int vmm_disable_file_cache(int fd);

/// Direct I/O alignment of an open file: buffer address/length (`memory`) and file offset/length
/// (`offset`), from statx(STATX_DIOALIGN) on Linux 6.1+. Returns 0 with both set, or -1 if the
/// kernel or file system does not say (errno set).
int vmm_direct_io_alignment(int fd, uint32_t *_Nonnull memory, uint32_t *_Nonnull offset);

/// Whether this build has io_uring (Linux with liburing found at build time).
bool vmm_uring_compiled(void);

/// An io_uring instance (opaque). Not thread-safe: one submitter and reaper.
typedef struct vmm_uring vmm_uring;

/// Creates a ring of `entries` submission slots (watch its completions through `vmm_uring_fd`).
/// Returns NULL with *error set to a positive errno (ENOSYS when not compiled in, EPERM/ENOSYS
/// when the kernel refuses io_uring).
vmm_uring *_Nullable vmm_uring_create(unsigned entries, int *_Nonnull error);
void vmm_uring_destroy(vmm_uring *_Nonnull ring);

/// The ring's own descriptor (owned by the ring, close-on-exec): poll(2)/epoll report it readable
/// while the completion queue holds entries, so watching it needs no eventfd and no read to reset.
int vmm_uring_fd(vmm_uring *_Nonnull ring);

/// Operations queued by vmm_uring_prepare (submitted by vmm_uring_submit).
enum {
    VMM_URING_READV = 0,
    VMM_URING_WRITEV = 1,
    /// writev with RWF_DSYNC: durable when it completes.
    VMM_URING_WRITEV_DSYNC = 2,
    /// fdatasync(fd).
    VMM_URING_DATASYNC = 3,
    /// fallocate(fd, PUNCH_HOLE | KEEP_SIZE, offset, length) (vmm_uring_prepare_space).
    VMM_URING_PUNCH_HOLE = 4,
    /// fallocate(fd, ZERO_RANGE | KEEP_SIZE, offset, length) (vmm_uring_prepare_space).
    VMM_URING_ZERO_RANGE = 5,
};

/// Queues one operation tagged `tag`. Returns 0, or -EBUSY if the submission queue is full.
/// `vectors` must stay valid until the operation completes.
int vmm_uring_prepare(vmm_uring *_Nonnull ring, int operation, int fd, const struct iovec *_Nullable vectors,
                      unsigned count, uint64_t offset, uint64_t tag);

/// Queues one space operation (VMM_URING_PUNCH_HOLE or VMM_URING_ZERO_RANGE, IORING_OP_FALLOCATE)
/// tagged `tag`. Returns 0, -EBUSY if the submission queue is full, -EINVAL for another operation.
/// A kernel without IORING_OP_FALLOCATE (before 5.6) completes it with -EINVAL.
int vmm_uring_prepare_space(vmm_uring *_Nonnull ring, int operation, int fd, uint64_t offset, uint64_t length,
                            uint64_t tag);

/// Submits everything queued. Returns how many, or -errno (-EAGAIN/-EBUSY: not now, the rest
/// stays queued for the next call).
int vmm_uring_submit(vmm_uring *_Nonnull ring);

/// Copies up to `capacity` completions (tag, result: bytes or -errno) without waiting; returns
/// how many.
unsigned vmm_uring_reap(vmm_uring *_Nonnull ring, uint64_t *_Nonnull tags, int32_t *_Nonnull results,
                        unsigned capacity);

/// Whether this build has Linux native AIO (io_setup/io_submit; Linux only, no libaio needed).
bool vmm_aio_compiled(void);

/// A Linux native AIO context with its eventfd (opaque). Not thread-safe: one submitter and reaper.
typedef struct vmm_aio vmm_aio;

/// Creates a context for `entries` operations in flight, whose completions signal an eventfd
/// (`vmm_aio_fd`, IOCB_FLAG_RESFD). Returns NULL with *error set to a positive errno (ENOSYS when
/// not compiled in; EAGAIN when fs.aio-max-nr is exhausted).
vmm_aio *_Nullable vmm_aio_create(unsigned entries, int *_Nonnull error);
void vmm_aio_destroy(vmm_aio *_Nonnull aio);

/// The context's eventfd (owned by it, close-on-exec, non-blocking): readable once a completion
/// arrived since the last `vmm_aio_reap`.
int vmm_aio_fd(vmm_aio *_Nonnull aio);

/// Queues one VMM_URING_READV, VMM_URING_WRITEV, VMM_URING_WRITEV_DSYNC or VMM_URING_DATASYNC
/// operation tagged `tag` (started by vmm_aio_submit). Returns 0, or -EBUSY if `entries` are
/// queued. `vectors` must stay valid until the operation completes.
int vmm_aio_prepare(vmm_aio *_Nonnull aio, int operation, int fd, const struct iovec *_Nullable vectors,
                    unsigned count, uint64_t offset, uint64_t tag);

/// Performs VMM_URING_PUNCH_HOLE or VMM_URING_ZERO_RANGE now (Linux AIO has no fallocate) and
/// queues its completion (0 or -errno) for the next reap. Returns 0, -EBUSY if `entries`
/// completions wait, -EINVAL for another operation.
int vmm_aio_space(vmm_aio *_Nonnull aio, int operation, int fd, uint64_t offset, uint64_t length, uint64_t tag);

/// Submits everything queued (io_submit). An operation the kernel refuses completes with -errno
/// (an fdatasync it cannot do asynchronously, EINVAL, is done synchronously instead). Returns how
/// many were submitted, or -EAGAIN when the kernel takes no more for now (the rest stays queued).
int vmm_aio_submit(vmm_aio *_Nonnull aio);

/// Resets the eventfd, then copies up to `capacity` completions (tag, result: bytes or -errno)
/// without waiting; returns how many.
unsigned vmm_aio_reap(vmm_aio *_Nonnull aio, uint64_t *_Nonnull tags, int32_t *_Nonnull results,
                      unsigned capacity);

#endif
