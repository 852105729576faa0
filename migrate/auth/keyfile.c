#include "migrate/auth/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/auth/hmac.h"
#include "migrate/auth/random.h"

int auth_key_generate(const char *path, char *err, size_t errlen)
{
	uint8_t k[AUTH_KEY_LEN];
	int fd, ret;
	ssize_t n;

	ret = auth_random(k, sizeof(k), err, errlen);
	if (ret)
		return ret;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s%s", path, strerror(-ret),
			 ret == -EEXIST ? " (a key is never overwritten: remove it first)" : "");
		goto out;
	}
	n = write(fd, k, sizeof(k));
	if (n != (ssize_t)sizeof(k) || fsync(fd) < 0) {
		ret = n < 0 ? -errno : -EIO;
		snprintf(err, errlen, "%s: write: %s", path, strerror(-ret));
		close(fd);
		unlink(path);
		goto out;
	}
	if (close(fd) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: close: %s", path, strerror(-ret));
		unlink(path);
	}
out:
	auth_wipe(k, sizeof(k));
	return ret;
}

int auth_key_load(const char *path, struct auth_key *k, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	memset(k, 0, sizeof(*k));
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "migration key %s: %s", path,
			 ret == -ELOOP ? "a symbolic link (refused: name the file itself)" :
			 strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "migration key %s: %s", path, strerror(-ret));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "migration key %s: not a regular file", path);
		ret = -EINVAL;
	} else if (st.st_mode & 077) {
		snprintf(err, errlen, "migration key %s: mode %04o lets others read or change it "
			 "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
		ret = -EPERM;
	} else if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errlen, "migration key %s: owned by uid %u, not by this user or root",
			 path, (unsigned)st.st_uid);
		ret = -EPERM;
	} else if (st.st_size != AUTH_KEY_LEN) {
		snprintf(err, errlen, "migration key %s: %lld bytes, a key is exactly %d "
			 "(minivmm --gen-key FILE writes one)", path, (long long)st.st_size,
			 AUTH_KEY_LEN);
		ret = -EINVAL;
	} else if ((n = read(fd, k->k, AUTH_KEY_LEN)) != AUTH_KEY_LEN) {
		ret = n < 0 ? -errno : -EIO;
		snprintf(err, errlen, "migration key %s: read: %s", path, strerror(-ret));
	}
	close(fd);
	if (ret) {
		auth_wipe(k, sizeof(*k));
		return ret;
	}
	k->set = true;
	snprintf(k->path, sizeof(k->path), "%s", path);
	return 0;
}

int auth_key_default_path(char *out, size_t cap)
{
	const char *dir = getenv("MINIVMM_KEY_DIR"), *x = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;

	if (dir && *dir)
		n = snprintf(out, cap, "%s/migrate.key", dir);
	else if (geteuid() == 0)
		n = snprintf(out, cap, "/etc/minivmm/migrate.key");
	else if (x && *x == '/')
		n = snprintf(out, cap, "%s/minivmm/migrate.key", x);
	else if (home && *home == '/')
		n = snprintf(out, cap, "%s/.config/minivmm/migrate.key", home);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int auth_key_resolve(const char *path, struct auth_key *k, char *err, size_t errlen)
{
	char def[4096];
	struct stat st;

	memset(k, 0, sizeof(*k));
	if (path && *path)
		return auth_key_load(path, k, err, errlen);
	if (auth_key_default_path(def, sizeof(def)) < 0 || lstat(def, &st) < 0)
		return 0; /* no default key: keyless */
	return auth_key_load(def, k, err, errlen);
}
