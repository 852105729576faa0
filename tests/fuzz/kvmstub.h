/* A stand-in for KVM's VM and vCPU fds in the fuzz targets: ioctl() is
 * interposed, and a KVM request on kvmstub_fd() succeeds without a kernel
 * (pure GETs read zeroes, MSR calls take every entry, capability checks ask
 * the real /dev/kvm). So the vmstate loader runs to its end, and the
 * receive target gets past STATE to READY, LATE and COMMIT, while no
 * fuzzed value ever reaches the host's KVM. */
#ifndef MINIVMM_FUZZ_KVMSTUB_H
#define MINIVMM_FUZZ_KVMSTUB_H

/* The fake fd (opened once: /dev/null), or aborts. */
int kvmstub_fd(void);
/* /dev/kvm for capability checks, or -1 when this machine has none. */
int kvmstub_kvm_fd(void);

#endif
