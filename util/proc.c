#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
