/* Copying files and trees into and out of a sandbox (`hiberbox cp`), one
 * request of the files endpoint per entry: stat and list to look, PUT of a
 * file, a directory or a symlink to create, GET of a file to read.
 *
 * Like cp -r and docker cp: a destination that is an existing directory
 * receives SRC under its own name; directories, regular files and symlinks
 * are copied with their permission bits, anything else (fifos, devices,
 * sockets) is counted as skipped.  Out of a sandbox, nothing is ever followed
 * on the local side (O_NOFOLLOW, names checked), since the names come from
 * the sandbox, and a file is written to a temporary name and renamed, so a
 * copy that fails leaves an existing local file as it was. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manager/daemon/daemon.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/json-text.h"
#include "util/uri.h"

#define COPY_PIECE_BYTES (32u << 20) /* the daemon takes bodies up to 64 MiB */
#define COPY_URL_MAX 8192

struct copy {
	const char *name; /* the sandbox */
	struct hbd_copy_stats *st;
};

/* "/sandboxes/NAME/files?path=P[&k=v]" */
static int files_url(const struct copy *c, const char *path, const char *extra, char *out)
{
	char e[COPY_URL_MAX];
	int n = uri_encode(path, 0, e, sizeof(e));

	if (n >= 0)
		n = snprintf(out, COPY_URL_MAX, "/sandboxes/%s/files?path=%s%s%s", c->name, e,
			     extra ? "&" : "", extra ? extra : "");
	return n < 0 || n >= COPY_URL_MAX ? hb_err(-ENAMETOOLONG, "path too long: %.200s", path) :
					    0;
}

static int join(char *out, size_t size, const char *dir, const char *name)
{
	size_t n = strlen(dir);
	int k = snprintf(out, size, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);

	return k < 0 || (size_t)k >= size ? hb_err(-ENAMETOOLONG, "path too long: %.200s/%s", dir,
						      name) : 0;
}

static const char *base_name(const char *path, char *buf, size_t size)
{
	size_t n = strlen(path);
	const char *b;

	while (n > 1 && path[n - 1] == '/')
		n--;
	snprintf(buf, size, "%.*s", (int)n, path);
	b = strrchr(buf, '/');
	return b && b[1] ? b + 1 : buf;
}

/* A name from a listing that is safe to create under a local directory. */
static bool plain_name(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static int remote_stat(const struct copy *c, const char *path, json_t **out)
{
	char url[COPY_URL_MAX];
	int r = files_url(c, path, "stat=1", url);

	return r < 0 ? r : hbd_client_call("GET", url, NULL, out);
}

static const char *jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "";
}

/* --- into the sandbox --- */

static int put(const struct copy *c, const char *path, const char *query, const void *data,
	       size_t len)
{
	char url[COPY_URL_MAX];
	int r = files_url(c, path, query, url);

	/* the JSON reply (fd -1) is kept by hbd_client_raw and dropped */
	return r < 0 ? r : hbd_client_raw("PUT", url, data ? data : "", len, -1);
}

/* A file in pieces of at most one request body.  One that fits in one is
 * a single PUT; a larger one begins an upload (upload=new), whose id the
 * daemon answers, adds the next pieces to it and ends with commit=1: the
 * daemon writes the pieces to a temporary and renames it over remote with
 * the last, so the destination holds its old content (or nothing) until the
 * whole file is there.  A piece the daemon fails removes the temporary; a
 * local read error gives the upload up (abort=1). */
static int put_file(const struct copy *c, int fd, const char *what, mode_t mode,
		    const char *remote)
{
	uint8_t *piece = malloc(COPY_PIECE_BYTES);
	char q[128], url[COPY_URL_MAX], id[64] = "";
	int r = piece ? 0 : hb_err(-ENOMEM, "out of memory");

	for (bool first = true; r == 0; first = false) {
		ssize_t n = read_full(fd, piece, COPY_PIECE_BYTES);
		bool last = n >= 0 && (size_t)n < COPY_PIECE_BYTES;

		if (n < 0) {
			if (*id) { /* the daemon's temporary goes; its error is not ours */
				snprintf(q, sizeof(q), "upload=%s&abort=1", id);
				put(c, remote, q, NULL, 0);
				hb_err_clear();
			}
			r = hb_err((int)n, "reading %s", what);
			break;
		}
		if (first && last) {
			snprintf(q, sizeof(q), "mode=%o", (unsigned)(mode & 07777));
			r = put(c, remote, q, piece, (size_t)n);
		} else if (first) {
			json_t *j = NULL;
			const char *got;

			snprintf(q, sizeof(q), "mode=%o&upload=new", (unsigned)(mode & 07777));
			if ((r = files_url(c, remote, q, url)) == 0)
				r = hbd_client_raw_json("PUT", url, piece, (size_t)n, &j);
			got = json_string_value(json_object_get(j, "upload"));
			if (r == 0 && (!got || strlen(got) >= sizeof(id) || strspn(got,
				       "0123456789abcdef") != strlen(got)))
				r = hb_err(-EBADMSG, "the daemon gave no upload id for %s:%s", c->name,
					   remote);
			else if (r == 0)
				snprintf(id, sizeof(id), "%s", got);
			json_decref(j);
		} else {
			snprintf(q, sizeof(q), "upload=%s%s", id, last ? "&commit=1" : "");
			r = put(c, remote, q, piece, (size_t)n);
		}
		if (r == 0)
			c->st->bytes += (uint64_t)n;
		if (last)
			break;
	}
	if (r == 0)
		c->st->files++;
	free(piece);
	return r;
}

static int put_tree(const struct copy *c, int dfd, const char *local, mode_t mode,
		    const char *remote)
{
	char q[32], lpath[PATH_MAX], rpath[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int r, fd;

	snprintf(q, sizeof(q), "type=dir&mode=%o", (unsigned)(mode & 07777));
	if ((r = put(c, remote, q, NULL, 0)) < 0)
		return r;
	c->st->dirs++;
	if ((fd = dup(dfd)) < 0 || !(dir = fdopendir(fd))) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		return hb_err(r, "listing %s", local);
	}
	while (r == 0 && (errno = 0, de = readdir(dir))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((r = join(lpath, sizeof(lpath), local, de->d_name)) < 0 ||
		    (r = join(rpath, sizeof(rpath), remote, de->d_name)) < 0)
			break;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = hb_err(-errno, "%s: %s", lpath, strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
			int flags = S_ISDIR(st.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY;

			if ((fd = openat(dfd, de->d_name, flags | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				r = hb_err(-errno, "%s: %s", lpath, strerror(errno));
				break;
			}
			r = S_ISDIR(st.st_mode) ? put_tree(c, fd, lpath, st.st_mode, rpath) :
						  put_file(c, fd, lpath, st.st_mode, rpath);
			close(fd);
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(dfd, de->d_name, target, sizeof(target));

			if (n < 0 || (size_t)n >= sizeof(target)) {
				r = hb_err(n < 0 ? -errno : -ENAMETOOLONG, "reading the link %s", lpath);
				break;
			}
			if ((r = put(c, rpath, "type=symlink", target, (size_t)n)) == 0)
				c->st->symlinks++;
		} else {
			c->st->skipped++;
		}
	}
	if (r == 0 && errno)
		r = hb_err_sys(-errno, "listing %s", local);
	closedir(dir);
	return r;
}

int hbd_copy_in(const char *name, const char *local, const char *remote,
		struct hbd_copy_stats *stats)
{
	struct copy c = { name, stats };
	char target[PATH_MAX], b[PATH_MAX];
	json_t *rs = NULL;
	struct stat st;
	int r, fd;

	memset(stats, 0, sizeof(*stats));
	if (!strcmp(local, "-")) {
		size_t n = strlen(remote);
		if (n && remote[n - 1] == '/')
			return hb_err(-EINVAL, "from stdin the destination must name a file, not %s",
				      remote);
		return put_file(&c, STDIN_FILENO, "stdin", 0644, remote);
	}
	if ((fd = open(local, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
		r = hb_err(-errno, "%s: %s", local, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		close(fd);
		return hb_err(-EINVAL, "%s: only files, directories and symlinks can be copied",
			      local);
	}
	/* an existing directory receives SRC under its own name */
	r = remote_stat(&c, remote, &rs);
	if (r == 0 && !strcmp(jstr(rs, "type"), "dir"))
		r = join(target, sizeof(target), remote, base_name(local, b, sizeof(b)));
	else if (r == -ENOENT && remote[strlen(remote) - 1] == '/')
		r = hb_err(r, "%s:%s: no such directory", name, remote);
	else if (r == 0 || r == -ENOENT) { /* a file there, or nothing: that name */
		hb_err_clear();
		snprintf(target, sizeof(target), "%s", remote);
		r = 0;
	}
	json_decref(rs);
	if (r == 0)
		r = S_ISDIR(st.st_mode) ? put_tree(&c, fd, local, st.st_mode, target) :
					  put_file(&c, fd, local, st.st_mode, target);
	close(fd);
	return r;
}

/* --- out of the sandbox --- */

/* GET remote into dfd/name through a temporary name in the same directory. */
static int get_file(const struct copy *c, const char *remote, int dfd, const char *name,
		    const char *shown, mode_t mode)
{
	char url[COPY_URL_MAX], tmp[NAME_MAX + 1];
	int r = files_url(c, remote, NULL, url), fd;
	struct stat st;

	if (r < 0)
		return r;
	snprintf(tmp, sizeof(tmp), ".hiberbox-cp.%d.%.200s", (int)getpid(), name);
	if ((fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return hb_err(-errno, "%s: %s", shown, strerror(errno));
	r = hbd_client_raw("GET", url, NULL, 0, fd);
	if (r == 0 && fchmod(fd, mode & 07777) < 0)
		r = hb_err_sys(-errno, "chmod %s", shown);
	if (r == 0 && fstat(fd, &st) == 0)
		c->st->bytes += (uint64_t)st.st_size;
	if (close(fd) < 0 && r == 0)
		r = hb_err_sys(-errno, "writing %s", shown);
	/* never over a local directory or symlink */
	if (r == 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
		r = hb_err(-EEXIST, "%s exists and is not a regular file", shown);
	if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
		r = hb_err(-errno, "%s: %s", shown, strerror(errno));
	if (r < 0)
		unlinkat(dfd, tmp, 0);
	else
		c->st->files++;
	return r;
}

/* get_tree's buffers, on the heap: the sandbox decides how deep a tree goes
 * (a path of 4095 bytes nests 2047 directories), and some 20 KB of buffers
 * a level on the stack overflowed it past about 400 levels. */
struct get_level {
	char url[COPY_URL_MAX], rpath[PATH_MAX], lpath[PATH_MAX];
	char name[NAME_MAX + 1], target[PATH_MAX];
};

static int get_tree(const struct copy *c, const char *remote, int pfd, const char *name,
		    const char *shown, mode_t mode)
{
	struct get_level *l;
	json_t *list = NULL, *e;
	size_t i;
	int r, dfd;

	if (mkdirat(pfd, name, 0700) < 0 && errno != EEXIST)
		return hb_err(-errno, "mkdir %s: %s", shown, strerror(errno));
	if ((dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return hb_err(-errno, "%s: %s", shown,
			      errno == ENOTDIR || errno == ELOOP ? "exists and is not a directory" :
			      strerror(errno));
	if (!(l = malloc(sizeof(*l)))) {
		close(dfd);
		return hb_err(-ENOMEM, "out of memory");
	}
	c->st->dirs++;
	if ((r = files_url(c, remote, "list=1", l->url)) == 0)
		r = hbd_client_call("GET", l->url, NULL, &list);
	json_array_foreach(json_object_get(list, "entries"), i, e) {
		/* "name_hex"/"target_hex" carry names that are not UTF-8 exactly */
		const char *n = json_object_get_text(e, "name", l->name, sizeof(l->name)) ?: "";
		const char *type = jstr(e, "type");
		mode_t m = (mode_t)json_integer_value(json_object_get(e, "mode"));

		if (r < 0)
			break;
		if (!plain_name(n)) {
			r = hb_err(-EINVAL, "%s:%s lists an entry named '%.100s'", c->name, remote, n);
			break;
		}
		if ((r = join(l->rpath, sizeof(l->rpath), remote, n)) < 0 ||
		    (r = join(l->lpath, sizeof(l->lpath), shown, n)) < 0)
			break;
		if (!strcmp(type, "dir")) {
			r = get_tree(c, l->rpath, dfd, n, l->lpath, m);
		} else if (!strcmp(type, "file")) {
			r = get_file(c, l->rpath, dfd, n, l->lpath, m);
		} else if (!strcmp(type, "symlink")) {
			struct stat st;
			const char *t =
				json_object_get_text(e, "target", l->target, sizeof(l->target)) ?: "";

			if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
				unlinkat(dfd, n, 0);
			if (!*t || symlinkat(t, dfd, n) < 0)
				r = hb_err(*t ? -errno : -EINVAL, "symlink %s: %s", l->lpath,
					   *t ? strerror(errno) : "no target");
			else
				c->st->symlinks++;
		} else {
			c->st->skipped++;
		}
	}
	json_decref(list);
	free(l);
	/* the directory's own mode last: a read-only one was filled first */
	if (r == 0 && fchmod(dfd, mode & 07777) < 0)
		r = hb_err_sys(-errno, "chmod %s", shown);
	close(dfd);
	return r;
}

int hbd_copy_out(const char *name, const char *remote, const char *local,
		 struct hbd_copy_stats *stats)
{
	struct copy c = { name, stats };
	char target[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];
	const char *type, *base;
	json_t *rs = NULL;
	struct stat st;
	int r, dfd;

	memset(stats, 0, sizeof(*stats));
	/* look first: a missing source must not clobber the destination */
	if ((r = remote_stat(&c, remote, &rs)) < 0)
		return r;
	type = jstr(rs, "type");
	if (!strcmp(local, "-")) {
		char url[COPY_URL_MAX];

		r = strcmp(type, "file") ? hb_err(-EINVAL, "%s:%s is a %s: only a file goes to "
						  "stdout", name, remote, type) :
					   files_url(&c, remote, NULL, url);
		if (r == 0 && (r = hbd_client_raw("GET", url, NULL, 0, STDOUT_FILENO)) == 0)
			stats->files++;
		json_decref(rs);
		return r;
	}
	if (stat(local, &st) == 0 && S_ISDIR(st.st_mode))
		r = join(target, sizeof(target), local, base_name(remote, b, sizeof(b)));
	else
		snprintf(target, sizeof(target), "%s", local);
	/* target = dir/base, created through an fd of dir */
	snprintf(dir, sizeof(dir), "%s", target);
	char *slash = strrchr(dir, '/');
	base = slash ? slash + 1 : target;
	if (slash == dir)
		dir[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	if (r == 0 && !plain_name(base))
		r = hb_err(-EINVAL, "'%s' does not name a file to create", target);
	if (r == 0 && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = hb_err(-errno, "%s: %s", dir, strerror(errno));
	if (r == 0) {
		mode_t m = (mode_t)json_integer_value(json_object_get(rs, "mode"));

		if (!strcmp(type, "dir"))
			r = get_tree(&c, remote, dfd, base, target, m);
		else if (!strcmp(type, "file"))
			r = get_file(&c, remote, dfd, base, target, m);
		else
			r = hb_err(-EINVAL, "%s:%s is a %s: only files and directories can be "
				   "copied", name, remote, type);
		close(dfd);
	}
	json_decref(rs);
	return r;
}
