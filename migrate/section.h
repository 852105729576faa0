/* Migration sections: the one interface for "a thing that migrates" (the
 * role of QEMU's SaveVMHandlers and Cloud Hypervisor's Migratable trait).
 * source.c and target.c sequence sections and know none of them; RAM and
 * machine state (vCPUs, VM-level KVM state, devices) are sections, and a
 * disk or a post-copy RAM variant would be another one, added in
 * sections.c.
 *
 * The source calls, in stream order of the sections:
 *   save_setup      after the handshake, guest running (open what it needs)
 *   save_probe      once, guest paused: measure what its final part costs
 *   save_iterate    one pre-copy pass (and, with pass->final, the last one
 *                   in the pause); sends its frames on env->s
 *   save_pending    after a pass: bytes still to send (exact: may sync)
 *   save_cost_ms    the fixed cost its part of the pause adds to the bytes
 *   save_complete   guest paused, after the final pass: the rest (state)
 *   save_late       after READY, before COMMIT: what arrived since (frames)
 *   save_postcopy   after RUNNING, post-copy only: the pages still to send
 *   save_cleanup    always, last; ok says whether the target took the VM
 * The target dispatches every frame type a section lists in `frames` to
 * its load_frame, calls load_drain before it answers a PING (what was sent
 * so far is applied), load_complete in order on END, and load_cleanup
 * always, before the VM can go away.
 *
 * Every op is optional. Each returns 0 or -errno with the reason in
 * env->err. */
#ifndef MINIVMM_MIGRATE_SECTION_H
#define MINIVMM_MIGRATE_SECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct mig;
struct mig_tunables;
struct stream;
struct stream_hdr;
struct est;
struct est_rate;
struct stats_round;
struct transport_addr;
struct transport_listener;

/* What a section sees of a migration on the source. */
struct mig_src_env {
	struct vm *vm;
	struct mig *m;                  /* stats and live figures, under m->lock */
	const struct mig_tunables *t;
	struct stream *s;               /* the main stream */
	const struct transport_addr *addr; /* where extra connections go */
	bool file;                      /* a snapshot: no peer, no dirty tracking */
	bool converged;                 /* the stop rule was met (final pass) */
	bool postcopy;                  /* the final pass switches to post-copy */
	struct est *e;
	struct est_rate *rate;          /* --max-bandwidth, or NULL */
	uint64_t t0;                    /* the migrate command, clock_now_ns() */
	uint64_t extra_bytes_out;       /* written on a section's own connections */
	double rtt_ms;
	char *err;
	size_t errlen;
};

/* One pass over every section. */
struct mig_pass {
	uint32_t round;
	bool final;                     /* the guest is paused */
	struct stats_round *rec;        /* sections add their figures */
	/* Out: bytes this pass would take if everything it sent were sent
	 * again (round 0's expected-downtime figure). */
	uint64_t resend_bytes;
	/* When set, a section whose pass takes long calls it about every
	 * progress_ms with how many of the pages the pass has sent so far the
	 * guest has written again since (the next round's debt so far), from
	 * the thread that runs the pass. */
	void (*progress)(void *arg, uint64_t redirtied_pages);
	void *progress_arg;
	uint32_t progress_ms;
};

struct mig_pending {
	uint64_t bytes;                 /* still to send */
	double rate_Bps;                /* how fast that grows (0: unknown) */
	/* Of bytes, what sections without save_postcopy hold: a switch to
	 * post-copy sends it in the pause all the same. Filled by the
	 * engine, not by the sections. */
	uint64_t precopy_bytes;
};

/* END's payload (docs/migration-stream.md): filled by save_complete. */
struct mig_end {
	uint32_t flags;
	uint64_t digest;
};

/* What a section sees of a migration on the target. */
struct mig_tgt_env {
	struct vm *vm;
	struct mig *m;
	struct stream *s;
	bool file;
	struct transport_listener *lst; /* for extra connections; fd -1: none */
	int nice;                       /* the migration threads' nice value */
	uint64_t t0;
	uint64_t t_final;               /* the final pass began (the source paused) */
	char *err;
	size_t errlen;
};

struct mig_section_ops {
	const char *name;
	void *(*create)(void);
	void (*destroy)(void *sec);

	int (*save_setup)(void *sec, struct mig_src_env *env);
	int (*save_probe)(void *sec, struct mig_src_env *env);
	int (*save_iterate)(void *sec, struct mig_src_env *env, struct mig_pass *p);
	int (*save_pending)(void *sec, struct mig_src_env *env, struct mig_pass *p,
			    struct mig_pending *out);
	double (*save_cost_ms)(void *sec, struct mig_src_env *env);
	int (*save_complete)(void *sec, struct mig_src_env *env, struct mig_end *end);
	/* A post-copy switch is next: the guest still runs here, its pause
	 * follows (the RAM section looks at what it keeps writing). */
	int (*save_before_switch)(void *sec, struct mig_src_env *env);
	/* After READY, before COMMIT, the guest still paused here: what
	 * reached it since save_complete that the target must still get. */
	int (*save_late)(void *sec, struct mig_src_env *env);
	/* Post-copy, after RUNNING: what the target still lacks, until it
	 * has everything (docs/postcopy.md); the guest stays paused here. */
	int (*save_postcopy)(void *sec, struct mig_src_env *env);
	void (*save_cleanup)(void *sec, struct mig_src_env *env, bool ok);

	const uint32_t *frames;         /* stream types it loads, 0-terminated */
	int (*load_setup)(void *sec, struct mig_tgt_env *env);
	int (*load_frame)(void *sec, struct mig_tgt_env *env, const struct stream_hdr *h);
	int (*load_drain)(void *sec, struct mig_tgt_env *env);
	int (*load_complete)(void *sec, struct mig_tgt_env *env, const struct mig_end *end);
	void (*load_cleanup)(void *sec, struct mig_tgt_env *env);
};

struct mig_section {
	const struct mig_section_ops *ops;
	void *state;
};

#define MIG_MAX_SECTIONS 8

struct mig_sections {
	struct mig_section s[MIG_MAX_SECTIONS];
	int n;
};

/* sections.c: the sections of a migration, in stream order. */
int mig_sections_create(struct mig_sections *ss, char *err, size_t errlen);
void mig_sections_destroy(struct mig_sections *ss);
/* The section that loads frames of this type, or NULL. */
struct mig_section *mig_sections_for_frame(struct mig_sections *ss, uint32_t type);

/* The sections sections.c knows. */
extern const struct mig_section_ops ram_section_ops;
extern const struct mig_section_ops state_section_ops;
extern const struct mig_section_ops disk_section_ops;

#endif
