/* Directory trees inside a sandbox for the files endpoint: stat, list, mkdir
 * and symlink, the pieces `hiberbox cp` needs to copy a tree in or out one
 * request per entry (regular files go through the plain GET/PUT).
 *
 * Every path resolves under the sandbox's root (sbx_open_inside: openat2
 * with RESOLVE_IN_ROOT), and what is created is then changed through an fd
 * of the new entry, never by name: the sandbox runs meanwhile and may swap a
 * name for a symlink between two calls. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manager/daemon/daemon-int.h"
#include "util/error.h"
#include "util/json-text.h"

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "chardev";
	case S_IFBLK: return "blockdev";
	default: return "unknown";
	}
}

/* {"name"?, "type", "mode", "size", "mtime", "target"?} of one entry; dirfd
 * and name as for fstatat (name "" with AT_EMPTY_PATH for the fd itself). */
static int entry_json(int dirfd, const char *name, const char *label, json_t **out)
{
	struct stat st;
	json_t *j;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0)
		return -errno;
	j = json_pack("{s:s, s:i, s:I, s:I}", "type", type_name(st.st_mode), "mode",
		      (int)(st.st_mode & 07777), "size", (json_int_t)st.st_size, "mtime",
		      (json_int_t)st.st_mtim.tv_sec);
	if (!j)
		return -ENOMEM;
	/* names are bytes: "name_hex" too for one that is not UTF-8 */
	if (label)
		json_object_set_text(j, "name", label);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);

		if (n >= 0) {
			target[n] = 0;
			json_object_set_text(j, "target", target);
		}
	}
	*out = j;
	return 0;
}

int sbx_file_stat(struct hbd *d, struct sbx *s, const char *path, json_t **out)
{
	/* the last component is followed, as stat(2) does */
	int fd = sbx_open_inside(d, s, path, O_PATH, 0), r;

	if (fd < 0)
		return fd;
	r = entry_json(fd, "", NULL, out);
	close(fd);
	return r < 0 ? hb_err(r, "%s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}

int sbx_dir_list(struct hbd *d, struct sbx *s, const char *path, json_t **out)
{
	int fd = sbx_open_inside(d, s, path, O_RDONLY | O_DIRECTORY, 0), r = 0;
	json_t *entries;
	struct dirent *de;
	DIR *dir;

	if (fd < 0)
		return fd;
	if (!(dir = fdopendir(fd))) {
		r = -errno;
		close(fd);
		return hb_err(r, "listing %s:%s", s->rec.name, path);
	}
	entries = json_array();
	while (entries && (de = readdir(dir))) {
		json_t *e;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		r = entry_json(dirfd(dir), de->d_name, de->d_name, &e);
		if (r == -ENOENT) { /* deleted since readdir: not there any more */
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		json_array_append_new(entries, e);
	}
	closedir(dir);
	if (!entries)
		return hb_err(-ENOMEM, "out of memory");
	if (r < 0) {
		json_decref(entries);
		return hb_err(r, "listing %s:%s", s->rec.name, path);
	}
	if (!(*out = json_pack("{s:o}", "entries", entries)) ||
	    json_object_set_text(*out, "path", path) < 0) {
		json_decref(*out);
		return hb_err(-ENOMEM, "out of memory");
	}
	return 0;
}

/* The parent directory of path inside the sandbox (an O_PATH fd) and the
 * last component, which must be a plain name. */
static int open_parent(struct hbd *d, struct sbx *s, const char *path, char *base,
		       size_t size)
{
	char parent[PATH_MAX];
	size_t n = path ? strlen(path) : 0;
	const char *slash;

	if (!path || path[0] != '/')
		return hb_err(-EINVAL, "path '%s' inside the sandbox must be absolute",
			      path ? path : "");
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= sizeof(parent))
		return hb_err(-ENAMETOOLONG, "path too long");
	memcpy(parent, path, n);
	parent[n] = 0;
	slash = strrchr(parent, '/');
	if ((size_t)snprintf(base, size, "%s", slash + 1) >= size || !*base ||
	    !strcmp(base, ".") || !strcmp(base, ".."))
		return hb_err(-EINVAL, "'%s' does not name an entry to create", path);
	parent[slash == parent ? 1 : (size_t)(slash - parent)] = 0;
	return sbx_open_inside(d, s, parent, O_PATH | O_DIRECTORY, 0);
}

int sbx_make_dir(struct hbd *d, struct sbx *s, const char *path, mode_t mode)
{
	char base[NAME_MAX + 1];
	int pfd = open_parent(d, s, path, base, sizeof(base)), fd, r = 0;
	bool created;

	if (pfd < 0)
		return pfd;
	created = mkdirat(pfd, base, 0700) == 0;
	if (!created && errno != EEXIST)
		r = -errno;
	fd = r ? -1 : openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (!r && fd < 0)
		r = errno == ENOTDIR || errno == ELOOP ? -EEXIST : -errno;
	/* a new directory belongs to the sandbox's root, like a copied-in file */
	if (!r && created && fchown(fd, s->rec.id_base, s->rec.id_base) < 0)
		r = -errno;
	if (!r && fchmod(fd, mode & 07777) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	close(pfd);
	if (r == -EEXIST)
		return hb_err(r, "%s:%s exists and is not a directory", s->rec.name, path);
	return r < 0 ? hb_err(r, "mkdir %s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}

int sbx_make_symlink(struct hbd *d, struct sbx *s, const char *path, const void *target,
		     size_t len)
{
	char base[NAME_MAX + 1], t[PATH_MAX];
	int pfd, r = 0;
	struct stat st;

	if (len == 0 || len >= sizeof(t) || memchr(target, 0, len))
		return hb_err(-EINVAL, "a symlink target is 1 to %zu bytes without NUL",
			      sizeof(t) - 1);
	memcpy(t, target, len);
	t[len] = 0;
	if ((pfd = open_parent(d, s, path, base, sizeof(base))) < 0)
		return pfd;
	if (symlinkat(t, pfd, base) < 0) {
		r = -errno;
		/* replace a symlink (copying a tree again), nothing else */
		if (r == -EEXIST && fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode) && unlinkat(pfd, base, 0) == 0)
			r = symlinkat(t, pfd, base) < 0 ? -errno : 0;
	}
	if (!r && fchownat(pfd, base, s->rec.id_base, s->rec.id_base, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	close(pfd);
	return r < 0 ? hb_err(r, "symlink %s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}
