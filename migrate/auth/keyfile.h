/* The migration key: 32 random bytes in a file only its owner can read
 * (docs/security.md). `minivmm --gen-key FILE` writes one; both ends load
 * the same. Without --migrate-key the default path is used when a file is
 * there: /etc/minivmm/migrate.key for root, else
 * $XDG_CONFIG_HOME/minivmm/migrate.key (~/.config/...); MINIVMM_KEY_DIR,
 * when set, replaces the directory (the tests point it at an empty one). */
#ifndef MINIVMM_AUTH_KEYFILE_H
#define MINIVMM_AUTH_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_LEN 32

struct auth_key {
	bool set;
	uint8_t k[AUTH_KEY_LEN];
	char path[4096]; /* where it came from, for messages */
};

/* A new file (O_EXCL|O_NOFOLLOW, 0600): an existing one is never replaced. */
int auth_key_generate(const char *path, char *err, size_t errlen);
/* Exactly AUTH_KEY_LEN bytes, a regular file owned by us (or root), no
 * access for group or others. */
int auth_key_load(const char *path, struct auth_key *k, char *err, size_t errlen);
/* The default path (see above) into out; -ENAMETOOLONG / -ENOENT (no home). */
int auth_key_default_path(char *out, size_t cap);
/* path given: that key; else the default one when present; else k->set
 * stays false (keyless). */
int auth_key_resolve(const char *path, struct auth_key *k, char *err, size_t errlen);

#endif
