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
/* Places len bytes from src at dst (page aligned) and wakes the waiters.
 * 0: placed; 1: something was there already (EEXIST: placed by someone
 * else, which also woke them); -errno on a failure. */
int uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len);
int uffd_zero(int fd, uint64_t dst, uint64_t len);
/* Wakes threads waiting on [dst, dst + len) (the page is there). */
int uffd_wake(int fd, uint64_t dst, uint64_t len);

#endif
