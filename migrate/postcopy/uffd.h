/* userfaultfd for post-copy (docs/postcopy.md): guest RAM registered in
 * missing mode, pages placed atomically, once. Thin wrappers that return
 * 0 or -errno with the failing call named in err. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_UFFD_H
#define MINIVMM_MIGRATE_POSTCOPY_UFFD_H

#include <stddef.h>
#include <stdint.h>

/* Opens a userfaultfd (non-blocking, close-on-exec), negotiates the API
 * with thread ids, and registers [base, base + len) in missing mode. */
int uffd_open_register(uint8_t *base, uint64_t len, int *fd, char *err, size_t errlen);
void uffd_close(int fd, uint8_t *base, uint64_t len);
/* The next fault's address (page aligned) and faulting thread id: 1, 0
 * when none is queued, -errno on a failure. Other events are skipped. */
int uffd_read_fault(int fd, uint64_t *addr, uint32_t *tid);
/* Places len bytes from src at dst (page aligned, a run of pages in one
 * call) and wakes the waiters. 0: all placed; 1: the first page was there
 * already (EEXIST: placed by someone else, which also woke them), nothing
 * placed; -EAGAIN: the run stopped part way, *placed (may be NULL) says
 * how many bytes from dst were placed, and the caller goes on from the
 * page after them; -EAGAIN with nothing placed: the kernel asks to try
 * again; any other -errno: nothing placed. */
int uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len, uint64_t *placed);
int uffd_zero(int fd, uint64_t dst, uint64_t len, uint64_t *placed);
/* Wakes threads waiting on [dst, dst + len) (the page is there). */
int uffd_wake(int fd, uint64_t dst, uint64_t len);

#endif
