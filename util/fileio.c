#include "util/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int send_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pwrite_all(int fd, const void *data, size_t len, off_t off)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int pread_exact(int fd, void *data, size_t len, off_t off)
{
	uint8_t *p = data;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EBADMSG;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t read_full(int fd, void *data, size_t len)
{
	uint8_t *p = data;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int read_fd(int fd, size_t max, struct buf *out)
{
	struct stat st;
	int r = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	out->len = 0;
	r = buf_reserve(out, (size_t)st.st_size + 1);
	if (r < 0)
		return r;
	for (;;) {
		ssize_t n;

		if (out->len == out->cap) {
			if (out->len >= max)
				return -EFBIG;
			r = buf_reserve(out, 4096);
			if (r < 0)
				return r;
		}
		n = read(fd, out->data + out->len, out->cap - out->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
	}
	return out->len > max ? -EFBIG : 0;
}

int read_file(int dirfd, const char *path, size_t max, struct buf *out)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = read_fd(fd, max, out);
	close(fd);
	return r;
}

int fsync_parent(int dirfd, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int write_file_atomic(int dirfd, const char *path, const void *data, size_t len, int flags)
{
	char tmp[PATH_MAX];
	uint32_t rnd = 0;
	int fd, r;

	random_bytes(&rnd, sizeof(rnd));
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%08x", path, (int)getpid(), rnd) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = write_all(fd, data, len);
	if (r == 0 && !(flags & WRITE_NO_SYNC) && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0) {
		if (flags & WRITE_NOREPLACE) {
			if (renameat2(dirfd, tmp, dirfd, path, RENAME_NOREPLACE) < 0)
				r = -errno;
		} else if (renameat(dirfd, tmp, dirfd, path) < 0) {
			r = -errno;
		}
	}
	if (r < 0) {
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	return flags & WRITE_NO_SYNC ? 0 : fsync_parent(dirfd, path);
}

int dir_is_empty(int dirfd, const char *path, bool *empty)
{
	int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	*empty = true;
	while (*empty && (de = readdir(d)))
		*empty = name_is_dot_or_dotdot(de->d_name);
	closedir(d);
	return 0;
}

/* The directory path names, made with what is missing of it, as an O_PATH
 * descriptor.  What exists is walked as the kernel resolves it (links
 * followed); the rest is collected in missing, where a ".." takes back
 * the name before it: "out/../out2" made out only to step out of it. */
static int make_dirs(int dirfd, const char *path, mode_t mode)
{
	char tmp[PATH_MAX], missing[PATH_MAX];
	size_t len = strlen(path), mlen = 0;
	char *save, *name;
	int cur, fd;

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	missing[0] = '\0';
	cur = openat(dirfd, path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	for (name = strtok_r(tmp, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
		size_t nlen = strlen(name);

		if (!strcmp(name, "."))
			continue;
		if (mlen > 0 && !strcmp(name, "..")) {
			char *slash = memrchr(missing, '/', mlen);

			mlen = slash ? (size_t)(slash - missing) : 0;
			missing[mlen] = '\0';
			continue;
		}
		if (mlen == 0) {
			fd = openat(cur, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0) {
				close(cur);
				cur = fd;
				continue;
			}
			if (errno != ENOENT)
				goto fail;
		}
		/* (never longer than path: a subset of its names) */
		if (mlen > 0)
			missing[mlen++] = '/';
		memcpy(missing + mlen, name, nlen + 1);
		mlen += nlen;
	}
	/* EEXIST is fine: another process may be making the same tree */
	for (name = strtok_r(missing, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
		if (mkdirat(cur, name, mode) < 0 && errno != EEXIST)
			goto fail;
		fd = openat(cur, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			goto fail;
		close(cur);
		cur = fd;
	}
	return cur;
fail:
	fd = -errno;
	close(cur);
	return fd;
}

int mkdir_p(int dirfd, const char *path, mode_t mode)
{
	int fd;

	if (!path[0])
		return 0;
	if (mkdirat(dirfd, path, mode) == 0 || errno == EEXIST)
		return 0; /* the parents were there */
	if (errno != ENOENT)
		return -errno;
	fd = make_dirs(dirfd, path, mode);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int mkdir_p_open(int dirfd, const char *path, mode_t mode)
{
	int pfd, fd;

	if (!path[0])
		return -ENOENT;
	if (mkdirat(dirfd, path, mode) < 0 && errno != EEXIST && errno != ENOENT)
		return -errno;
	fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : -errno;
	pfd = make_dirs(dirfd, path, mode);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	close(pfd);
	return fd;
}

int random_bytes(void *out, size_t len)
{
	uint8_t *p = out;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void hex_format(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_parse(const char *in, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi = hex_digit(in[2 * i]), lo;

		if (hi < 0)
			return -EINVAL;
		lo = hex_digit(in[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
