/* The throttle thread of a migration source: applies a share of hold
 * time (migrate/policy/throttle_plan.h) by setting the VM's hold deadline
 * every run slice and kicking the vCPUs, which hold themselves
 * (vmm/core/vcpu.c). Owned by the source thread; stopped on completion,
 * cancel and every failure. */
#ifndef MINIVMM_MIGRATE_THROTTLE_H
#define MINIVMM_MIGRATE_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct mig_throttle {
	struct vm *vm;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* CLOCK_MONOTONIC */
	pthread_t thread;
	bool started, quit;
	uint32_t pct, limit_ms;
	uint64_t holds;             /* hold slices begun */
};

void mig_throttle_init(struct mig_throttle *t, struct vm *vm, uint32_t limit_ms);
/* Sets the share (1..99; 0 releases the vCPUs and idles), starting the
 * thread the first time. -errno with a message if it cannot start. */
int mig_throttle_set(struct mig_throttle *t, uint32_t pct, char *err, size_t errlen);
uint32_t mig_throttle_pct(struct mig_throttle *t);
/* Ends the throttle and joins the thread; the vCPUs run freely after.
 * Idempotent; fine on an initialised throttle that never started. */
void mig_throttle_stop(struct mig_throttle *t);
/* mig_throttle_stop, then frees what init made. */
void mig_throttle_fini(struct mig_throttle *t);

#endif
