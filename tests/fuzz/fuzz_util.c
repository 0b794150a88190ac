#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[512];
static char path_buf[1024];

/* Remove the directory and the files in it (it holds no subdirectories). */
static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char p[1024];

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	const char *base;

	if (tmpdir[0])
		return tmpdir;
	/* Memory first: a file per input on a loaded disk costs ten times more. */
	base = getenv("RN_FUZZ_TMPDIR");
	if (!base || !base[0])
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/rn_fuzz.XXXXXX", base && base[0] ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(remove_tmpdir);
	return tmpdir;
}

const char *fuzz_write_file(const char *name, const void *data, size_t size)
{
	const unsigned char *p = data;
	int fd;

	snprintf(path_buf, sizeof(path_buf), "%s/%s", fuzz_tmpdir(), name);
	fd = open(path_buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror("fuzz: open");
		abort();
	}
	while (size > 0) {
		ssize_t n = write(fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("fuzz: write");
			abort();
		}
		p += n;
		size -= (size_t)n;
	}
	close(fd);
	return path_buf;
}
