/* fallocate(2), which fails where posix_fallocate would write zeros to emulate it */
#define _GNU_SOURCE
#include "checkpoints/ckpt_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"

#define PATH_LEN 1024

int ckpt_dir_file(char *buf, size_t len, const char *dir, int64_t iteration, bool tmp)
{
	int n = snprintf(buf, len, "%s/iter_%07" PRId64 ".h5%s", dir, iteration,
			 tmp ? ".tmp" : "");

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* "iter_<digits>.h5" (complete) or "iter_<digits>.h5.tmp"; -1 for anything else. */
static int64_t parse_iter_name(const char *name, bool *tmp)
{
	int64_t it = 0;
	const char *p = name + 5;

	if (strncmp(name, "iter_", 5) || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (it > (INT64_MAX - 9) / 10)
			return -1;
		it = it * 10 + (*p - '0');
	}
	if (!strcmp(p, ".h5"))
		*tmp = false;
	else if (!strcmp(p, ".h5.tmp"))
		*tmp = true;
	else
		return -1;
	return it;
}

/*
 * fsync a file or a directory (opened read-only, which Linux allows for both). Some
 * network file systems refuse fsync on a directory (EINVAL, or not supported): they
 * make a rename durable on their own, so that is no error for a directory; for a
 * file it is. Test hook: RETNET_CKPT_TEST_DIR_FSYNC_EINVAL makes every directory
 * fsync fail with EINVAL, as such a file system does.
 */
static int fsync_path(const char *path, bool is_dir, char *msg, size_t len)
{
	int fd = open(path, O_RDONLY), rc = 0, failed;

	if (fd < 0)
		return log_fail(msg, len, "%s: cannot open to fsync: %s", path, strerror(errno));
	failed = is_dir && getenv("RETNET_CKPT_TEST_DIR_FSYNC_EINVAL") ? (errno = EINVAL, -1)
								       : fsync(fd);
	if (failed < 0 && !(is_dir && (errno == EINVAL || errno == ENOTSUP ||
				       errno == EOPNOTSUPP)))
		rc = log_fail(msg, len, "%s: fsync: %s", path, strerror(errno));
	close(fd);
	return rc;
}

/* mkdir -p, fsyncing the parent of each directory made (best effort). */
static int make_dirs(const char *dir, char *msg, size_t len)
{
	char path[PATH_LEN];
	struct stat st;
	size_t n = strlen(dir);

	if (n >= sizeof(path))
		return log_fail(msg, len, "%s: path too long", dir);
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0777) == 0) { /* the umask decides */
			char *slash = strrchr(path, '/');

			if (slash && slash != path) {
				*slash = '\0';
				fsync_path(path, true, msg, len);
				*slash = '/';
			}
		} else if (errno != EEXIST) {
			return log_fail(msg, len, "%s: cannot create directory: %s", path,
				    strerror(errno));
		}
		path[i] = dir[i];
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return log_fail(msg, len, "%s: not a directory", dir);
	return 0;
}

int ckpt_dir_prepare(const char *dir, char *msg, size_t len)
{
	char path[PATH_LEN];
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (make_dirs(dir, msg, len))
		return -1;
	d = opendir(dir);
	if (!d)
		return log_fail(msg, len, "%s: cannot list: %s", dir, strerror(errno));
	while (rc == 0 && (e = readdir(d))) {
		bool tmp = false;
		bool stale = !strcmp(e->d_name, "latest.tmp") ||
			     (parse_iter_name(e->d_name, &tmp) >= 0 && tmp);

		if (!stale)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) < 0 && errno != ENOENT)
			rc = log_fail(msg, len, "%s: cannot remove a stale file: %s", path,
				  strerror(errno));
	}
	closedir(d);
	return rc;
}

/* "938 KiB", "3.2 GiB" */
static const char *size_str(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.*f %s", u && v < 10 ? 1 : 0, v, unit[u]);
	return buf;
}

/* ", 336 KiB free on its file system", or "" if statvfs cannot tell. */
static const char *free_str(char *buf, size_t len, const char *path)
{
	char dir[PATH_LEN], s[32];
	const char *slash = strrchr(path, '/');
	struct statvfs vfs;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
		 slash ? path : ".");
	if (statvfs(dir[0] ? dir : "/", &vfs) != 0) {
		buf[0] = '\0';
		return buf;
	}
	snprintf(buf, len, ", %s free on its file system",
		 size_str(s, sizeof(s), (uint64_t)vfs.f_bavail * vfs.f_frsize));
	return buf;
}

int ckpt_dir_reserve(const char *path, uint64_t bytes, char *msg, size_t len)
{
	char need[32], fs[96];
	struct statvfs vfs;
	struct rlimit lim;
	int fd, e = 0;

	if (getenv("RETNET_CKPT_TEST_NO_RESERVE"))
		return 0;
	if (bytes > (uint64_t)INT64_MAX)
		return log_fail(msg, len, "%s: a checkpoint of %" PRIu64 " bytes is too large", path,
				bytes);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		return log_fail(msg, len, "%s: cannot create: %s", path, strerror(errno));
	if (fallocate(fd, 0, 0, (off_t)bytes) != 0) {
		e = errno;
		/* No allocation ahead here (some network file systems): the free space and
		 * the file-size limit are what can be checked. */
		if (e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) {
			e = 0;
			if (fstatvfs(fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < bytes)
				e = ENOSPC;
			if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
			    (uint64_t)lim.rlim_cur < bytes)
				e = EFBIG;
		}
	}
	/* The blocks go back at once: H5Fcreate truncates the file anyway. */
	if (ftruncate(fd, 0) != 0 && !e)
		e = errno;
	close(fd);
	if (!e)
		return 0;
	unlink(path);
	return log_fail(msg, len, "%s: no room for the checkpoint (about %s): %s%s", path,
			size_str(need, sizeof(need), bytes), strerror(e),
			free_str(fs, sizeof(fs), path));
}

void ckpt_dir_note_free_space(char *msg, size_t len, const char *path)
{
	char fs[96], lim_s[32] = "";
	size_t n = strnlen(msg, len);
	struct rlimit lim;

	if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
		size_str(lim_s, sizeof(lim_s), (uint64_t)lim.rlim_cur);
	if (n + 1 < len)
		snprintf(msg + n, len - n, "%s%s%s", free_str(fs, sizeof(fs), path),
			 lim_s[0] ? ", file-size limit (ulimit -f) " : "", lim_s);
}

/* The crash-test hook documented in ckpt.h. */
void ckpt_dir_test_pause(const char *phase, int64_t iteration)
{
	const char *env = getenv("RETNET_CKPT_TEST_PAUSE");
	size_t n = strlen(phase);

	if (!env || strncmp(env, phase, n) || (env[n] != '\0' && env[n] != ':'))
		return;
	if (env[n] == ':' && strtoll(env + n + 1, NULL, 10) != iteration)
		return;
	fprintf(stderr, "retnet: ckpt test pause: after %s (iteration %" PRId64 ")\n", phase,
		iteration);
	fflush(stderr);
	sleep(60);
}

static int write_latest(const char *dir, int64_t iteration, char *msg, size_t len)
{
	char tmp[PATH_LEN], fin[PATH_LEN], text[32];
	int n = snprintf(text, sizeof(text), "%" PRId64 "\n", iteration), fd;
	ssize_t w;

	snprintf(tmp, sizeof(tmp), "%s/latest.tmp", dir);
	snprintf(fin, sizeof(fin), "%s/latest", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	if (fd < 0)
		return log_fail(msg, len, "%s: cannot create: %s", tmp, strerror(errno));
	w = write(fd, text, (size_t)n);
	if (w != n || fsync(fd) < 0) {
		log_fail(msg, len, "%s: cannot write: %s", tmp, w < 0 ? strerror(errno) : "short");
		close(fd);
		return -1;
	}
	if (close(fd) < 0)
		return log_fail(msg, len, "%s: close: %s", tmp, strerror(errno));
	if (rename(tmp, fin) < 0)
		return log_fail(msg, len, "%s: cannot rename to %s: %s", tmp, fin, strerror(errno));
	return fsync_path(dir, true, msg, len);
}

int ckpt_dir_publish(const char *dir, int64_t iteration, char *msg, size_t len)
{
	char tmp[PATH_LEN], fin[PATH_LEN];

	if (ckpt_dir_file(tmp, sizeof(tmp), dir, iteration, true) ||
	    ckpt_dir_file(fin, sizeof(fin), dir, iteration, false))
		return log_fail(msg, len, "%s: path too long", dir);
	/* every rank's MPI_File_sync already ran; this covers local caches too */
	if (fsync_path(tmp, false, msg, len))
		return -1;
	ckpt_dir_test_pause("tmp", iteration);
	if (rename(tmp, fin) < 0)
		return log_fail(msg, len, "%s: cannot rename to %s: %s", tmp, fin, strerror(errno));
	if (fsync_path(dir, true, msg, len))
		return -1;
	ckpt_dir_test_pause("renamed", iteration);
	if (write_latest(dir, iteration, msg, len))
		return -1;
	ckpt_dir_test_pause("latest", iteration);
	return 0;
}

static int cmp_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y) - (x > y);
}

void ckpt_dir_prune(const char *dir, int64_t newest, int keep)
{
	int64_t *its = NULL;
	size_t n = 0, cap = 0;
	char path[PATH_LEN], msg[PATH_LEN];
	DIR *d;
	struct dirent *e;
	bool removed = false;

	if (keep <= 0 || !(d = opendir(dir)))
		return;
	while ((e = readdir(d))) {
		bool tmp;
		int64_t it = parse_iter_name(e->d_name, &tmp);

		if (it < 0 || tmp || it >= newest)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			its = realloc(its, cap * sizeof(*its));
			CHECK_PTR(its);
		}
		its[n++] = it;
	}
	closedir(d);
	if (n > 0)
		qsort(its, n, sizeof(*its), cmp_desc);
	for (size_t i = (size_t)keep - 1; i < n; i++) {
		ckpt_dir_file(path, sizeof(path), dir, its[i], false);
		if (unlink(path) < 0)
			log_warn("%s: cannot remove an old checkpoint: %s", path, strerror(errno));
		else
			removed = true;
	}
	if (removed && fsync_path(dir, true, msg, sizeof(msg)))
		log_warn("%s", msg);
	free(its);
}

int ckpt_dir_latest(const char *dir, int64_t *iteration, char *msg, size_t len)
{
	char path[PATH_LEN], text[32], file[PATH_LEN];
	struct stat st;
	ssize_t n;
	int fd;
	int64_t it = 0;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return log_fail(msg, len, "%s: no such checkpoint directory", dir);
	snprintf(path, sizeof(path), "%s/latest", dir);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return log_fail(msg, len, "%s: cannot open (no complete checkpoint?): %s", path,
			    strerror(errno));
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	/* digits, then exactly one newline */
	for (ssize_t i = 0; i < n - 1; i++) {
		if (text[i] < '0' || text[i] > '9' || it > (INT64_MAX - 9) / 10)
			return log_fail(msg, len, "%s: not an iteration number and a newline", path);
		it = it * 10 + (text[i] - '0');
	}
	if (n < 2 || text[n - 1] != '\n')
		return log_fail(msg, len, "%s: not an iteration number and a newline", path);
	ckpt_dir_file(file, sizeof(file), dir, it, false);
	if (stat(file, &st) < 0 || !S_ISREG(st.st_mode))
		return log_fail(msg, len, "%s: names iteration %" PRId64 ", but %s is missing", path,
			    it, file);
	*iteration = it;
	return 0;
}
