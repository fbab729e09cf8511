// Declarations only, never linked or run: this header exists so Linux CI can type-check the
// kqueue Poller backend without libkqueue (`-Xswiftc -DVMM_KQUEUE_TYPECHECK -Xcc
// -DVMM_KQUEUE_TYPECHECK`, building the VMMSysUtil library target, which is compiled but not
// linked). Field types follow Darwin's <sys/event.h>; constant values are libkqueue's
// include/sys/event.h (the same as FreeBSD's and Darwin's for everything used here).
#ifndef VMM_KQUEUE_TYPECHECK_H
#define VMM_KQUEUE_TYPECHECK_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;
    int16_t filter;
    uint16_t flags;
    uint32_t fflags;
    intptr_t data;
    void *_Nullable udata;
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_CLEAR 0x0020
#define EV_EOF 0x8000
#define EV_ERROR 0x4000

#define NOTE_TRIGGER 0x01000000

int kqueue(void);
int kevent(int kq, const struct kevent *_Nullable changelist, int nchanges,
           struct kevent *_Nullable eventlist, int nevents,
           const struct timespec *_Nullable timeout);

#endif
