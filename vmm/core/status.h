/* minivmm's exit statuses, the only set: main() returns one of these, or
 * the guest's own status when it leaves through the debug-exit port
 * (docs/architecture.md, "Exit statuses"). */
#ifndef MINIVMM_STATUS_H
#define MINIVMM_STATUS_H

enum vmm_status {
	VMM_STATUS_OK = 0,
	VMM_STATUS_USAGE = 2,     /* bad option, bad image, bad address */
	VMM_STATUS_MIGRATION = 3, /* a migration failed */
	VMM_STATUS_CRASH = 4,     /* triple fault, emulation failure, internal error */
};

#endif
