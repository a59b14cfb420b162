#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

int proc_stat_fields(pid_t pid, char *buf, size_t size, const char **fields)
{
	char path[64];
	const char *close_paren;
	ssize_t n;
	int fd;

	if (size < 2)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	/* "pid (comm) S ...": the name ends at the last ')' */
	close_paren = strrchr(buf, ')');
	if (!close_paren || close_paren[1] != ' ')
		return -EBADMSG;
	*fields = close_paren + 2;
	return 0;
}

bool proc_alive(pid_t pid)
{
	char stat[512];
	const char *fields;
	int r;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return false;
	r = proc_stat_fields(pid, stat, sizeof(stat), &fields);
	if (r < 0)
		return r != -ENOENT;
	return fields[0] != 'Z' && fields[0] != 'X';
}

int proc_rss_bytes(pid_t pid, uint64_t *out)
{
	char path[64], text[256];
	unsigned long long pages, resident;
	ssize_t n;
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/statm");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = 0;
	if (sscanf(text, "%llu %llu", &pages, &resident) != 2)
		return -EPROTO; /* an exited process's empty file */
	*out = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

int proc_spawnattr_init(posix_spawnattr_t *at)
{
	sigset_t none, all;
	int r;

	sigemptyset(&none);
	sigfillset(&all);
	if ((r = posix_spawnattr_init(at)) != 0)
		return hb_err(-r, "posix_spawnattr_init: %s", strerror(r));
	if ((r = posix_spawnattr_setsigmask(at, &none)) != 0 ||
	    (r = posix_spawnattr_setsigdefault(at, &all)) != 0 ||
	    (r = posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0) {
		posix_spawnattr_destroy(at);
		return hb_err(-r, "posix_spawnattr: %s", strerror(r));
	}
	return 0;
}
