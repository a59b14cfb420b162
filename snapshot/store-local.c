/* A store in a local directory.
 *
 * Objects are plain files under the root; names map one to one onto relative
 * paths.  put() writes "<name>.tmp.<pid>.<random>", fsyncs it, renames it into
 * place and fsyncs the directory, so a crash leaves either the old state or
 * the whole new object plus, at worst, a temporary file that cleanup()
 * removes once its writer is gone.
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/store.h"
#include "util/error.h"
#include "util/fileio.h"

/* Packs are immutable and read chunk by chunk, often thousands of times in
 * a row: keep their descriptors open instead of an open/close per chunk. */
#define FD_CACHE_SLOTS 64

struct fd_slot {
	char name[128];
	int fd;
	unsigned refs; /* readers using fd right now */
};

struct store_local {
	struct store base;
	int dirfd;
	char *path;
	pthread_mutex_t fd_lock; /* guards fd_cache */
	struct fd_slot fd_cache[FD_CACHE_SLOTS];
};

static struct store_local *to_local(struct store *s)
{
	return (struct store_local *)s;
}

/* Names come from our own code, but a tag or a corrupt ref could smuggle a
 * path in: refuse anything that is not a plain relative path. */
static int check_name(const char *name)
{
	if (!name[0] || name[0] == '/' || strlen(name) >= PATH_MAX - 64)
		return hb_err(-EINVAL, "invalid object name '%s'", name);
	for (const char *p = name; *p;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return hb_err(-EINVAL, "invalid object name '%s'", name);
		p += n;
		if (*p == '/' && !*++p) /* "a/": names a directory */
			return hb_err(-EINVAL, "invalid object name '%s'", name);
	}
	return 0;
}

static unsigned name_slot(const char *name)
{
	unsigned h = 2166136261u;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h % FD_CACHE_SLOTS;
}

static bool cacheable(const char *name)
{
	return strncmp(name, "packs/", 6) == 0 && strlen(name) < sizeof(((struct fd_slot *)0)->name);
}

/* Open name for reading, through the cache for packs.  *slot is set to the
 * cache slot holding a reference, or -1 if the caller must close fd. */
static int open_object(struct store_local *l, const char *name, int *slot)
{
	struct fd_slot *fs;
	unsigned k;
	int fd;

	*slot = -1;
	if (!cacheable(name))
		return openat(l->dirfd, name, O_RDONLY | O_CLOEXEC);
	k = name_slot(name);
	fs = &l->fd_cache[k];
	pthread_mutex_lock(&l->fd_lock);
	if (fs->fd > 0 && strcmp(fs->name, name) == 0) {
		fs->refs++;
		fd = fs->fd;
		*slot = (int)k;
		pthread_mutex_unlock(&l->fd_lock);
		return fd;
	}
	pthread_mutex_unlock(&l->fd_lock);
	fd = openat(l->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&l->fd_lock);
	if (fs->refs == 0) {
		if (fs->fd > 0)
			close(fs->fd);
		fs->fd = fd;
		snprintf(fs->name, sizeof(fs->name), "%s", name);
		fs->refs = 1;
		*slot = (int)k;
	}
	pthread_mutex_unlock(&l->fd_lock);
	return fd;
}

static void close_object(struct store_local *l, int fd, int slot)
{
	if (slot < 0) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&l->fd_lock);
	l->fd_cache[slot].refs--;
	pthread_mutex_unlock(&l->fd_lock);
}

/* A removed or replaced pack must not be served from a cached descriptor,
 * which holds the old file.  One in use stays open for its readers, under
 * no name: the next open_object of that slot closes it. */
static void forget_object(struct store_local *l, const char *name)
{
	struct fd_slot *fs;

	if (!cacheable(name))
		return;
	fs = &l->fd_cache[name_slot(name)];
	pthread_mutex_lock(&l->fd_lock);
	if (fs->fd > 0 && strcmp(fs->name, name) == 0) {
		if (fs->refs == 0) {
			close(fs->fd);
			fs->fd = 0;
		}
		fs->name[0] = '\0';
	}
	pthread_mutex_unlock(&l->fd_lock);
}

static int local_get(struct store *s, const char *name, uint64_t off, uint64_t len,
		     struct buf *out)
{
	struct store_local *l = to_local(s);
	struct stat st;
	int fd, r, slot;

	r = check_name(name);
	if (r < 0)
		return r;
	fd = open_object(l, name, &slot);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			return hb_err(r, "%s/%s: no such object", l->path, name);
		return hb_err(r, "%s/%s: %s", l->path, name, strerror(-r));
	}
	if (fstat(fd, &st) < 0) {
		r = hb_err(-errno, "%s/%s: %s", l->path, name, strerror(errno));
		goto out;
	}
	if (off > (uint64_t)st.st_size) {
		r = hb_err(-EBADMSG, "%s/%s: truncated (%llu bytes, read at %llu)", l->path, name,
			   (unsigned long long)st.st_size, (unsigned long long)off);
		goto out;
	}
	if (len == STORE_GET_ALL)
		len = (uint64_t)st.st_size - off;
	if (off + len > (uint64_t)st.st_size) {
		r = hb_err(-EBADMSG, "%s/%s: truncated (%llu bytes, need %llu)", l->path, name,
			   (unsigned long long)st.st_size, (unsigned long long)(off + len));
		goto out;
	}
	out->len = 0;
	r = buf_reserve(out, (size_t)len);
	if (r < 0) {
		r = hb_err(r, "%s/%s: object too large to read (%llu bytes)", l->path, name,
			   (unsigned long long)len);
		goto out;
	}
	r = pread_exact(fd, out->data, (size_t)len, (off_t)off);
	if (r < 0) {
		r = hb_err(r, "%s/%s: %s", l->path, name,
			   r == -EBADMSG ? "truncated while reading" : strerror(-r));
		goto out;
	}
	out->len = (size_t)len;
out:
	close_object(l, fd, slot);
	return r;
}

static int write_flags(int put_flags)
{
	return ((put_flags & STORE_PUT_NOREPLACE) ? WRITE_NOREPLACE : 0) |
	       ((put_flags & STORE_PUT_VOLATILE) ? WRITE_NO_SYNC : 0);
}

static int local_put(struct store *s, const char *name, const void *data, size_t len, int flags)
{
	struct store_local *l = to_local(s);
	const char *slash;
	int r;

	r = check_name(name);
	if (r < 0)
		return r;
	r = write_file_atomic(l->dirfd, name, data, len, write_flags(flags));
	if (r == -ENOENT && (slash = strrchr(name, '/'))) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - name), name);
		r = mkdir_p(l->dirfd, dir, 0755);
		if (r == 0)
			r = write_file_atomic(l->dirfd, name, data, len, write_flags(flags));
	}
	if (r == -EEXIST)
		return r;
	if (r < 0)
		return hb_err(r, "writing %s/%s: %s", l->path, name, strerror(-r));
	forget_object(l, name); /* a pack replaced (cut short before) */
	return 0;
}

static int local_stat(struct store *s, const char *name, uint64_t *size)
{
	struct store_local *l = to_local(s);
	struct stat st;
	int r = check_name(name);

	if (r < 0)
		return r;
	if (fstatat(l->dirfd, name, &st, 0) < 0) {
		r = -errno;
		if (r == -ENOENT)
			return r;
		return hb_err(r, "%s/%s: %s", l->path, name, strerror(-r));
	}
	if (size)
		*size = (uint64_t)st.st_size;
	return 0;
}

static bool is_temporary(const char *name)
{
	return strstr(name, ".tmp.") != NULL;
}

/* Walk dir (relative name `rel`, "" for the root) recursively. */
static int list_dir(struct store_local *l, const char *rel, const char *prefix,
		    int (*fn)(const char *, uint64_t, int64_t, void *), void *arg)
{
	DIR *d;
	struct dirent *de;
	int fd, r = 0;

	fd = openat(l->dirfd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : hb_err(-errno, "listing %s/%s: %s", l->path, rel,
						    strerror(errno));
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		char name[PATH_MAX];
		struct stat st;
		size_t plen;

		if (name_is_dot_or_dotdot(de->d_name))
			continue;
		if (snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
		    (int)sizeof(name))
			continue;
		/* Prune directories that cannot hold a match. */
		plen = strlen(prefix);
		if (strncmp(name, prefix, strlen(name) < plen ? strlen(name) : plen) != 0)
			continue;
		if (fstatat(l->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed meanwhile */
		if (S_ISDIR(st.st_mode)) {
			r = list_dir(l, name, prefix, fn, arg);
		} else if (S_ISREG(st.st_mode) && !is_temporary(de->d_name) &&
			   strncmp(name, prefix, plen) == 0) {
			r = fn(name, (uint64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, arg);
		}
		if (r != 0)
			break;
	}
	closedir(d);
	return r;
}

static int local_list(struct store *s, const char *prefix,
		      int (*fn)(const char *, uint64_t, int64_t, void *), void *arg)
{
	return list_dir(to_local(s), "", prefix, fn, arg);
}

static int local_remove(struct store *s, const char *name)
{
	struct store_local *l = to_local(s);
	int r = check_name(name);

	if (r < 0)
		return r;
	forget_object(l, name);
	if (unlinkat(l->dirfd, name, 0) < 0) {
		r = -errno;
		if (r == -ENOENT)
			return r;
		return hb_err(r, "removing %s/%s: %s", l->path, name, strerror(-r));
	}
	return 0;
}

/* A temporary file is garbage once the process that wrote it is gone. */
static void cleanup_dir(struct store_local *l, const char *rel)
{
	int fd = openat(l->dirfd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		char name[PATH_MAX];
		const char *tmp;

		if (de->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
		if (de->d_type == DT_DIR) {
			cleanup_dir(l, name);
			continue;
		}
		tmp = strstr(de->d_name, ".tmp.");
		if (tmp) {
			long pid = strtol(tmp + 5, NULL, 10);

			if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
				unlinkat(l->dirfd, name, 0);
		}
	}
	closedir(d);
}

static int local_cleanup(struct store *s)
{
	cleanup_dir(to_local(s), "");
	return 0;
}

static const char *local_location(struct store *s)
{
	return to_local(s)->path;
}

static void local_free(struct store *s)
{
	struct store_local *l = to_local(s);

	for (int i = 0; i < FD_CACHE_SLOTS; i++)
		if (l->fd_cache[i].fd > 0)
			close(l->fd_cache[i].fd);
	pthread_mutex_destroy(&l->fd_lock);
	close(l->dirfd);
	free(l->path);
	free(l);
}

static void local_invalidate(struct store *s, const char *name)
{
	forget_object(to_local(s), name);
}

static const struct store_ops local_ops = {
	.invalidate = local_invalidate,
	.get = local_get,
	.put = local_put,
	.stat = local_stat,
	.list = local_list,
	.remove = local_remove,
	.cleanup = local_cleanup,
	.location = local_location,
	.free = local_free,
};

int store_local_open(const char *path, int create, struct store **out)
{
	struct store_local *l;
	int fd, r;

	if (create) {
		r = mkdir_p(AT_FDCWD, path, 0700);
		if (r < 0)
			return hb_err(r, "creating %s: %s", path, strerror(-r));
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return hb_err(-errno, "%s: %s", path, strerror(errno));
	l = calloc(1, sizeof(*l));
	if (!l || !(l->path = realpath(path, NULL))) {
		free(l);
		close(fd);
		return -ENOMEM;
	}
	l->base.ops = &local_ops;
	l->dirfd = fd;
	pthread_mutex_init(&l->fd_lock, NULL);
	*out = &l->base;
	return 0;
}
