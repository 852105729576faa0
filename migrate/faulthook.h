/* A test-only hook for the fault matrix (tests/faults/, docs/migration.md
 * "Test hooks"): MINIVMM_FAULT_DELAY_<PHASE>_MS=N makes the migration say
 * "minivmm: fault hook: PHASE, waiting N ms" on stderr and sleep N ms at
 * that phase boundary, so a fault injected on that line lands inside the
 * phase. Unset (always, outside tests): nothing happens. */
#ifndef MINIVMM_MIGRATE_FAULTHOOK_H
#define MINIVMM_MIGRATE_FAULTHOOK_H

#include <stdint.h>

/* Phases: source HANDSHAKE (connected, before HELLO), ROUND<n> (before
 * round n's pages; the final round is not one), SWITCHOVER (guest paused,
 * before the final pass), READY (READY received, before COMMIT); target
 * COMMIT (COMMIT received, before the vCPUs start and RUNNING). */
void mig_fault_delay(const char *phase);
void mig_fault_delay_round(uint32_t round);

#endif
