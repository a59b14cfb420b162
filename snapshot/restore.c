/* snapshot restore: recreate a snapshot's tree in a directory.
 *
 * Phase 1 creates directories, a depth at a time (breadth-first so parents
 * exist before children), on the creator threads (see creators()).  Phase
 * 2 fills regular files and creates symlinks, fifos and devices, in
 * parallel, in each directory as soon as phase 1 has made it.  Phase 3 makes hard links and sets the
 * metadata of directories, last and deepest first, so that creating their
 * children does not disturb their times.  Ownership is set before the mode
 * (chown clears set-id bits) and xattrs after ownership (chown clears
 * security.capability); times go last.
 *
 * Phase 2 has two ways to get file content.  From object storage, where
 * round trips cost more than anything else, restore-fetch.c reads the
 * chunks of all files by pack, many ranges in flight from before phase 1,
 * and the workers call put_chunk for each chunk of a range that has
 * landed: the file is created by its first chunk and gets its metadata
 * with its last, while the same workers create the files that need no
 * chunk (empty, inline, holes only) and the other non-directories.  From
 * a local repository, where a chunk read is a pread, workers fill whole
 * files each (fill_file), chunk after chunk (repo_read_chunk).
 *
 * Every chunk is verified on the way.  A file whose content fails
 * verification, or that is not complete when the restore fails, is removed,
 * not left half written, and the restore fails naming the file, the chunk
 * and the pack.  Every path is opened beneath the target with symlinks
 * refused (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a hostile tree
 * already in the target (restore --force) cannot redirect writes outside it;
 * symlinks and special files are made, and given their metadata, by name in
 * their directory opened that way, never following the name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "snapshot/beneath.h"
#include "snapshot/restore-int.h"
#include "snapshot/testhook.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

/* A file written chunk by chunk as ranges arrive (put_chunk). */
struct fetched_file {
	_Atomic uint32_t remaining; /* chunk uses not yet written */
	bool created, done;         /* under its lock */
	int fd;                     /* kept open between chunks, or -1 */
	mode_t created_mode;
};

/* Files share these locks by index: one per file would cost more than the
 * rare wait. */
#define RESTORE_FILE_LOCKS 256
/* Descriptors kept open for files that wait for more chunks; past this
 * many, each chunk opens its file again. */
#define RESTORE_KEPT_FDS_MAX 256

struct restore_ctx {
	struct repo *repo;
	struct manifest *m;
	int rootfd;
	bool as_root;
	uid_t euid;
	gid_t egid;
	mode_t umask; /* read once: creating files with their final mode saves a chmod */
	char **paths; /* relative path of every entry */
	struct repo_progress progress;
	_Atomic uint64_t bytes_done;
	_Atomic uint64_t skipped; /* device nodes not created (not root) */
	_Atomic uint64_t setid_dropped; /* set-id bits not restored (owner not set) */
	uint64_t total;
	uint64_t last_progress_ns;
	pthread_mutex_t lock;
	int error;
	_Atomic int cancel; /* error is set: stop starting work */
	/* Phase 1 makes directories a depth at a time: every directory of
	 * depth < dirs_made exists (UINT32_MAX: all, or the restore failed;
	 * 0: not even the root may be written to yet).  Changed under lock,
	 * with dirs_cond broadcast. */
	_Atomic uint32_t dirs_made;
	pthread_cond_t dirs_cond;
	uint32_t *depth; /* of every entry (root: 0) */
	unsigned creators; /* threads of phase 1 (0: one per core) */
	char errmsg[1024];
	/* Phase 2 from object storage (NULL otherwise). */
	struct fetched_file *files;
	pthread_mutex_t file_locks[RESTORE_FILE_LOCKS];
	_Atomic unsigned kept_fds;
};

static void ctx_fail(struct restore_ctx *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!c->error) {
		c->error = r;
		hb_err_save(c->errmsg, sizeof(c->errmsg));
		atomic_store(&c->cancel, 1);
	}
	pthread_mutex_unlock(&c->lock);
}

static bool tolerable(int err, bool as_root)
{
	return err == ENOTSUP || (!as_root && (err == EPERM || err == EACCES));
}

/* A directory of the target opened beneath it (O_PATH, no symlinks on the
 * way), for *at calls on one name in it that do not follow that name:
 * neither a directory on the path nor the entry itself swapped for a
 * symbolic link meanwhile (by another process writing in the target) can
 * then take a call outside the target.  Entries come grouped by directory
 * (breadth-first), so one open serves a run of siblings. */
struct dir_at {
	uint32_t dir; /* the entry open as fd */
	int fd;       /* -1: none */
};
#define DIR_AT_NONE ((struct dir_at){ 0, -1 })

static void dir_at_close(struct dir_at *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/* Open (or keep) d on the directory of entry i.  what: the verb of the
 * message.  @return 0, or a negative errno with a message. */
static int dir_at_open(struct restore_ctx *c, struct dir_at *d, uint32_t i, const char *what)
{
	uint32_t parent = manifest_node(c->m, i)->parent;
	int fd;

	if (d->fd >= 0 && d->dir == parent)
		return 0;
	fd = open_beneath(c->rootfd, parent ? c->paths[parent] : ".", O_PATH | O_DIRECTORY, 0);
	if (fd == -ELOOP || fd == -EXDEV || fd == -ENOTDIR)
		return hb_err(fd, "cannot %s '%s': a directory on its path was replaced during "
				  "the restore (by a symbolic link or a file)", what, c->paths[i]);
	if (fd < 0)
		return hb_err(fd, "cannot %s '%s': %s", what, c->paths[i], strerror(-fd));
	dir_at_close(d);
	d->fd = fd;
	d->dir = parent;
	return 0;
}

/* Remove entry i from the target (a file that must not look restored);
 * best effort, after a failure. */
static void unlink_entry(struct restore_ctx *c, uint32_t i)
{
	struct dir_at d = DIR_AT_NONE;

	if (dir_at_open(c, &d, i, "remove") == 0)
		unlinkat(d.fd, manifest_name(c->m, i), 0);
	else
		hb_err_clear();
	dir_at_close(&d);
}

static int remove_tree_at(int parentfd, const char *name);

/* Make room for entry i (restore --force over existing files).  @return 1
 * if a directory is there and keep_dir says to keep it, 0 if there is room
 * now, or a negative errno with a message. */
static int clear_path(struct restore_ctx *c, uint32_t i, bool keep_dir, struct dir_at *d)
{
	const char *name = manifest_name(c->m, i);
	struct stat st;
	int r = dir_at_open(c, d, i, "replace");

	if (r < 0)
		return r;
	if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		r = errno == ENOENT ? 0 : -errno;
	else if (S_ISDIR(st.st_mode))
		r = keep_dir ? 1 : remove_tree_at(d->fd, name);
	else
		r = unlinkat(d->fd, name, 0) < 0 ? -errno : 0;
	if (r < 0)
		return hb_err(r, "cannot replace '%s': %s", c->paths[i], strerror(-r));
	return r;
}

static int remove_tree_at(int parentfd, const char *name)
{
	int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while ((de = readdir(d)) && r == 0) {
		if (name_is_dot_or_dotdot(de->d_name))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			if (errno == EISDIR || errno == EPERM)
				r = remove_tree_at(dirfd(d), de->d_name);
			else
				r = -errno;
		}
	}
	closedir(d);
	if (r == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* A directory restore creates in must pass nothing on to what it creates,
 * as one made by restore (0700, no ACL) does not: a set-gid bit gives new
 * entries its group (and set_metadata_fd, seeing our own gid asked for,
 * does not chown), a default ACL gives them ACLs the snapshot does not have
 * and overrides the umask the created mode is computed with.  Phase 3 sets
 * the directory's own mode and xattrs from the snapshot afterwards. */
static int stop_inheritance(struct restore_ctx *c, int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return hb_err(-errno, "cannot stat '%s': %s", path, strerror(errno));
	if ((st.st_mode & S_ISGID) && fchmod(fd, st.st_mode & 07777 & ~S_ISGID) < 0 &&
	    !tolerable(errno, c->as_root))
		return hb_err(-errno, "cannot set mode of '%s': %s", path, strerror(errno));
	if (fremovexattr(fd, "system.posix_acl_default") < 0 && errno != ENODATA &&
	    !tolerable(errno, c->as_root))
		return hb_err(-errno, "cannot remove the default ACL of '%s': %s", path,
			      strerror(errno));
	return 0;
}

/* An existing directory restore --force reuses. */
static int reuse_dir(struct restore_ctx *c, const char *path)
{
	int fd = open_beneath(c->rootfd, path, O_RDONLY | O_DIRECTORY, 0), r;

	if (fd < 0)
		return hb_err(fd, "cannot open '%s': %s", path, strerror(-fd));
	r = stop_inheritance(c, fd, path);
	close(fd);
	return r;
}

/* Phase 1: directory i (with force, over whatever is at its path), in
 * its directory d. */
static int create_dir(struct restore_ctx *c, uint32_t i, bool force, struct dir_at *d)
{
	const char *path = c->paths[i];
	int r;

	if (force) {
		r = clear_path(c, i, true, d);
		if (r < 0)
			return r;
		if (r == 1)
			return reuse_dir(c, path); /* an existing directory is reused */
	}
	if ((r = dir_at_open(c, d, i, "create directory")) < 0)
		return r;
	/* Owner-writable until phase 3 sets the real mode. */
	if (mkdirat(d->fd, manifest_name(c->m, i), 0700) < 0)
		return hb_err(-errno, "cannot create directory '%s': %s", path, strerror(errno));
	return 0;
}

static mode_t current_umask(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned mask = 022;

	if (!f)
		return 022;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Umask: %o", &mask) == 1)
			break;
	fclose(f);
	return (mode_t)mask;
}

/* A set-uid or set-gid file whose owner could not be set (a restore without
 * root) would run as whoever restored it, or with their group: a privilege
 * the snapshot never gave (GNU tar drops the bits likewise).  A set-gid
 * directory is left as it is: it only passes its group on. */
static bool setid_at_risk(const struct manifest_node *n)
{
	return !S_ISDIR(n->mode) && (n->mode & (S_ISUID | S_ISGID));
}

/* The mode to give entry n now owned as st says: each set-id bit kept only
 * if the file has the owner (group) the snapshot says. */
static mode_t setid_for_owner(struct restore_ctx *c, const struct manifest_node *n,
			      const struct stat *st)
{
	mode_t mode = n->mode & 07777;

	if (st->st_uid != n->uid)
		mode &= ~(mode_t)S_ISUID;
	if (st->st_gid != n->gid)
		mode &= ~(mode_t)S_ISGID;
	if (mode != (n->mode & 07777))
		atomic_fetch_add(&c->setid_dropped, 1);
	return mode;
}

/* Ownership, xattrs (after chown clears capabilities), mode, then times.
 * created_mode: the mode the file was created with (0: unknown), so that
 * calls which would change nothing are skipped: restores of many small
 * files spend most of their time in such metadata calls. */
static int set_metadata_fd(struct restore_ctx *c, uint32_t i, int fd, mode_t created_mode)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const struct manifest_node *parent = manifest_node(c->m, n->parent);
	bool owner_ok = created_mode && n->uid == c->euid && n->gid == c->egid &&
			!(parent->mode & S_ISGID);
	const char *path = c->paths[i][0] ? c->paths[i] : ".";
	struct timespec ts[2] = {
		{ .tv_sec = n->atime_sec, .tv_nsec = n->atime_nsec },
		{ .tv_sec = n->mtime_sec, .tv_nsec = n->mtime_nsec },
	};

	mode_t mode = n->mode & 07777;
	struct stat st;

	if (!owner_ok && fchown(fd, n->uid, n->gid) < 0) {
		if (!tolerable(errno, c->as_root))
			return hb_err(-errno, "cannot set owner of '%s': %s", path,
				      strerror(errno));
		if (setid_at_risk(n) && fstat(fd, &st) == 0)
			mode = setid_for_owner(c, n, &st);
	}
	if ((!owner_ok || created_mode != mode) && fchmod(fd, mode) < 0)
		return hb_err(-errno, "cannot set mode of '%s': %s", path, strerror(errno));
	for (uint32_t k = 0; k < n->nxattrs; k++) {
		struct manifest_xattr x;

		manifest_xattr(c->m, i, k, &x);
		if (fsetxattr(fd, x.name, x.value, x.value_len, 0) < 0 &&
		    !tolerable(errno, c->as_root))
			return hb_err(-errno, "cannot set xattr %s of '%s': %s", x.name, path,
				      strerror(errno));
	}
	if (futimens(fd, ts) < 0)
		return hb_err(-errno, "cannot set times of '%s': %s", path, strerror(errno));
	return 0;
}

/* Symlinks and special files cannot be opened for writing: *at calls on
 * their name in their directory (pfd, opened beneath the target), never
 * following it, so that neither a directory on the path nor the entry
 * itself swapped for a symbolic link meanwhile can redirect them. */
static int set_metadata_at(struct restore_ctx *c, uint32_t i, int pfd, const char *name)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const char *path = c->paths[i];
	char full[64];
	struct timespec ts[2] = {
		{ .tv_sec = n->atime_sec, .tv_nsec = n->atime_nsec },
		{ .tv_sec = n->mtime_sec, .tv_nsec = n->mtime_nsec },
	};
	mode_t mode = n->mode & 07777;
	struct stat st;
	int fd;

	if (fchownat(pfd, name, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		if (!tolerable(errno, c->as_root))
			return hb_err(-errno, "cannot set owner of '%s': %s", path,
				      strerror(errno));
		if (setid_at_risk(n) && fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			mode = setid_for_owner(c, n, &st);
	}
	if (!S_ISLNK(n->mode) && fchmodat(pfd, name, mode, AT_SYMLINK_NOFOLLOW) < 0)
		return hb_err(-errno, "cannot set mode of '%s': %s", path, strerror(errno));
	if (n->nxattrs > 0) {
		/* An O_PATH fd names the node itself, symlink or fifo, without
		 * opening it.  Its /proc/self/fd link is followed (setxattr, not
		 * lsetxattr): the magic link leads to the node and stops there,
		 * while lsetxattr would act on the proc link itself and fail
		 * with ENOTSUP, which is tolerated, dropping the xattrs. */
		fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return hb_err(-errno, "cannot open '%s': %s", path, strerror(errno));
		snprintf(full, sizeof(full), "/proc/self/fd/%d", fd);
		for (uint32_t k = 0; k < n->nxattrs; k++) {
			struct manifest_xattr x;

			manifest_xattr(c->m, i, k, &x);
			if (setxattr(full, x.name, x.value, x.value_len, 0) < 0 &&
			    !tolerable(errno, c->as_root) && errno != EPERM) {
				int e = errno;

				close(fd);
				return hb_err(-e, "cannot set xattr %s of '%s': %s", x.name, path,
					      strerror(e));
			}
		}
		close(fd);
	}
	if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return hb_err(-errno, "cannot set times of '%s': %s", path, strerror(errno));
	return 0;
}

/* Create symlink or special file i in its directory pfd, with its
 * metadata.  A device node a restore without root cannot make is skipped
 * and counted. */
static int restore_node(struct restore_ctx *c, uint32_t i, int pfd)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const char *path = c->paths[i], *name = manifest_name(c->m, i);

	switch (n->mode & S_IFMT) {
	case S_IFLNK:
		if (symlinkat((const char *)manifest_data(c->m, i), pfd, name) < 0)
			return hb_err(-errno, "cannot create symlink '%s': %s", path, strerror(errno));
		break;
	case S_IFIFO:
	case S_IFCHR:
	case S_IFBLK:
		if (mknodat(pfd, name, (n->mode & S_IFMT) | 0600, (dev_t)n->rdev) < 0) {
			if (errno == EPERM && !c->as_root && !S_ISFIFO(n->mode)) {
				atomic_fetch_add(&c->skipped, 1); /* device nodes need root */
				return 0;
			}
			return hb_err(-errno, "cannot create '%s': %s", path, strerror(errno));
		}
		break;
	default:
		return 0;
	}
	return set_metadata_at(c, i, pfd, name);
}

static void report(struct restore_ctx *c, uint64_t n)
{
	uint64_t done = atomic_fetch_add(&c->bytes_done, n) + n, t;

	if (!c->progress.update)
		return;
	t = now_ns();
	pthread_mutex_lock(&c->lock);
	if (t - c->last_progress_ns >= 100000000ull) {
		c->last_progress_ns = t;
		c->progress.update(c->progress.arg, "restoring", done, c->total);
	}
	pthread_mutex_unlock(&c->lock);
}

static int fill_file(struct restore_ctx *c, uint32_t i)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const char *path = c->paths[i];
	struct buf chunk = BUF_INIT;
	uint64_t off = 0, written_end = 0;
	int fd, r = 0;

	/* Created with its final permission bits where the umask allows (the
	 * fd is writable whatever they say); set-id bits only after chown. */
	mode_t mode = n->mode & 0777, created;

	created = mode & ~c->umask;
	fd = open_beneath(c->rootfd, path, O_WRONLY | O_CREAT | O_EXCL, mode);
	if (fd < 0)
		return hb_err(fd, "cannot create '%s': %s", path, strerror(-fd));
	if (n->flags & MANIFEST_FLAG_INLINE) {
		r = pwrite_all(fd, manifest_data(c->m, i), n->data_len, 0);
		written_end = n->data_len;
	} else {
		const struct manifest_chunk *ch = manifest_chunks(c->m, i);

		for (uint32_t k = 0; k < n->nchunks && r == 0; k++) {
			if (atomic_load(&c->cancel))
				r = -ECANCELED;
			else if (!oid_is_zero(&ch[k].id)) {
				r = repo_read_chunk(c->repo, &ch[k].id, &chunk);
				if (r == 0 && chunk.len != ch[k].size)
					r = hb_err(-EBADMSG, "chunk has %zu bytes, the manifest says %u",
						   chunk.len, ch[k].size);
				if (r == 0)
					r = pwrite_all(fd, chunk.data, chunk.len, (off_t)off);
				written_end = off + ch[k].size;
			}
			off += ch[k].size;
			report(c, ch[k].size);
		}
	}
	/* Trailing holes: extend without writing so the file stays sparse. */
	if (r == 0 && written_end != n->size && ftruncate(fd, (off_t)n->size) < 0)
		r = -errno;
	if (r == 0)
		r = set_metadata_fd(c, i, fd, created);
	else if (r != -ECANCELED)
		r = hb_err_ctx(r, "restoring '%s'", path);
	close(fd);
	buf_free(&chunk);
	if (r < 0)
		unlink_entry(c, i); /* never leave a file that looks valid */
	return r;
}

/* ---- files written as their chunks arrive (restore-fetch.c) ---- */

/* A file filled by put_chunk: a regular file (not a hard-link member) with
 * at least one stored chunk. */
static bool fetched(const struct manifest *m, uint32_t i)
{
	const struct manifest_node *n = manifest_node(m, i);
	const struct manifest_chunk *ch;

	if (!S_ISREG(n->mode) || n->hardlink != i || (n->flags & MANIFEST_FLAG_INLINE))
		return false;
	ch = manifest_chunks(m, i);
	for (uint32_t k = 0; k < n->nchunks; k++)
		if (!oid_is_zero(&ch[k].id))
			return true;
	return false;
}

/* The last chunk is written: trailing holes, then metadata. */
static int finish_fetched(struct restore_ctx *c, uint32_t i, int fd)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const struct manifest_chunk *ch = manifest_chunks(c->m, i);
	uint64_t off = 0, written_end = 0;

	for (uint32_t k = 0; k < n->nchunks; k++) {
		off += ch[k].size;
		if (!oid_is_zero(&ch[k].id))
			written_end = off;
	}
	/* Extend without writing so that trailing holes stay sparse. */
	if (written_end != n->size && ftruncate(fd, (off_t)n->size) < 0)
		return hb_err(-errno, "restoring '%s': %s", c->paths[i], strerror(errno));
	return set_metadata_fd(c, i, fd, c->files[i].created_mode);
}

/* Open file i for a chunk: created (O_EXCL) by its first one.  Called with
 * its lock held. */
static int open_fetched(struct restore_ctx *c, uint32_t i)
{
	struct fetched_file *f = &c->files[i];
	mode_t mode = manifest_node(c->m, i)->mode & 0777;
	int fd;

	if (f->created)
		return open_beneath(c->rootfd, c->paths[i], O_WRONLY, 0);
	/* Created with its final permission bits where the umask allows, unless
	 * later chunks must open it again (owner-writable until the end). */
	if (atomic_load(&f->remaining) > 1)
		mode |= 0600;
	fd = open_beneath(c->rootfd, c->paths[i], O_WRONLY | O_CREAT | O_EXCL, mode);
	if (fd >= 0) {
		f->created = true;
		f->created_mode = mode & ~c->umask;
	}
	return fd;
}

/* Every directory down to `level` exists (UINT32_MAX: all of them, or the
 * restore failed): files may be created in them. */
static void dirs_ready(struct restore_ctx *c, uint32_t level)
{
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->dirs_made, level == UINT32_MAX ? level : level + 1);
	pthread_cond_broadcast(&c->dirs_cond);
	pthread_mutex_unlock(&c->lock);
}

/* Wait until directory `dir` exists.  @return 0, or -ECANCELED. */
static int wait_for_dir(struct restore_ctx *c, uint32_t dir)
{
	uint32_t need = c->depth[dir];

	if (atomic_load(&c->dirs_made) <= need) {
		pthread_mutex_lock(&c->lock);
		while (atomic_load(&c->dirs_made) <= need)
			pthread_cond_wait(&c->dirs_cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
	}
	return atomic_load(&c->cancel) ? -ECANCELED : 0;
}

/* restore_fetch's put: write one chunk use where it belongs; the file's
 * last chunk finishes it. */
static int put_chunk(void *arg, uint32_t i, uint64_t off, const void *data, size_t len)
{
	struct restore_ctx *c = arg;
	struct fetched_file *f = &c->files[i];
	pthread_mutex_t *lock = &c->file_locks[i % RESTORE_FILE_LOCKS];
	bool kept = false;
	int fd, r;

	if ((r = wait_for_dir(c, manifest_node(c->m, i)->parent)) < 0)
		return r;
	pthread_mutex_lock(lock);
	fd = f->fd;
	if (fd >= 0) {
		kept = true;
	} else {
		fd = open_fetched(c, i);
		if (fd >= 0 && atomic_load(&f->remaining) > 1 &&
		    atomic_fetch_add(&c->kept_fds, 1) < RESTORE_KEPT_FDS_MAX) {
			f->fd = fd;
			kept = true;
		} else if (fd >= 0 && atomic_load(&f->remaining) > 1) {
			atomic_fetch_sub(&c->kept_fds, 1);
		}
	}
	pthread_mutex_unlock(lock);
	if (fd < 0)
		return hb_err(fd, "cannot create '%s': %s", c->paths[i], strerror(-fd));
	r = pwrite_all(fd, data, len, (off_t)off);
	if (r < 0) {
		r = hb_err(r, "restoring '%s': %s", c->paths[i], strerror(-r));
	} else {
		report(c, len);
		/* Every other write of this file is complete once this reaches 0. */
		if (atomic_fetch_sub(&f->remaining, 1) == 1) {
			r = finish_fetched(c, i, fd);
			pthread_mutex_lock(lock);
			if (f->fd >= 0) {
				if (f->fd != fd)
					close(f->fd);
				f->fd = -1;
				atomic_fetch_sub(&c->kept_fds, 1);
			}
			f->done = r == 0;
			pthread_mutex_unlock(lock);
			close(fd);
			return r;
		}
	}
	if (!kept)
		close(fd);
	return r;
}

static void fetch_failed(void *arg, int r)
{
	ctx_fail(arg, r);
}

/* After a failure: no file that is not complete may look restored. */
static void remove_unfinished(struct restore_ctx *c)
{
	for (uint32_t i = 0; i < manifest_count(c->m); i++) {
		struct fetched_file *f = &c->files[i];

		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		if (f->created && !f->done)
			unlink_entry(c, i);
	}
}

/* Start reading the chunks of every fetched file.  *run is NULL when there
 * is none. */
static int start_fetch(struct restore_ctx *c, struct restore_fetch *fetch, unsigned fetchers,
		       struct workqueue *writers, uint32_t **files_out, struct restore_fetch_run **run)
{
	uint32_t count = manifest_count(c->m), n = 0, *files;

	*run = NULL;
	*files_out = NULL;
	c->files = calloc(count, sizeof(*c->files));
	if (!c->files)
		return -ENOMEM;
	for (uint32_t i = 0; i < RESTORE_FILE_LOCKS; i++)
		pthread_mutex_init(&c->file_locks[i], NULL);
	for (uint32_t i = 0; i < count; i++)
		c->files[i].fd = -1;
	files = calloc(count, sizeof(*files));
	*files_out = files;
	if (!files)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		const struct manifest_node *nd = manifest_node(c->m, i);
		const struct manifest_chunk *ch;
		uint32_t uses = 0;

		if (!fetched(c->m, i))
			continue;
		ch = manifest_chunks(c->m, i);
		for (uint32_t k = 0; k < nd->nchunks; k++)
			uses += !oid_is_zero(&ch[k].id);
		atomic_init(&c->files[i].remaining, uses);
		files[n++] = i;
	}
	if (n == 0)
		return 0;
	*fetch = (struct restore_fetch){ .repo = c->repo, .m = c->m, .paths = c->paths,
					 .fetchers = fetchers, .writers = writers, .put = put_chunk,
					 .fail = fetch_failed, .arg = c, .cancel = &c->cancel };
	return restore_fetch_start(fetch, files, n, run);
}

/* A job is a run of siblings: workers then create files in different
 * directories, instead of queueing on one directory's lock. */
#define FILL_JOB_MAX_ENTRIES 128
#define FILL_JOB_MAX_BYTES (4u << 20)

struct fill_job {
	struct restore_ctx *c;
	uint32_t first, end; /* entries [first, end) */
};

static bool restored_in_phase2(const struct manifest_node *n, uint32_t i)
{
	return !S_ISDIR(n->mode) && n->hardlink == i; /* link members: phase 3 */
}

/* Filled by the workers (not by put_chunk). */
static bool filled_by_worker(const struct restore_ctx *c, uint32_t i)
{
	return restored_in_phase2(manifest_node(c->m, i), i) && !(c->files && fetched(c->m, i));
}

static int restore_one(struct restore_ctx *c, uint32_t i, struct dir_at *d)
{
	int r;

	if (S_ISREG(manifest_node(c->m, i)->mode))
		return fill_file(c, i);
	test_hook_wait("HIBERBOX_TEST_RESTORE_NODES_WAIT");
	r = dir_at_open(c, d, i, "create");
	return r < 0 ? r : restore_node(c, i, d->fd);
}

static void fill_job_run(void *arg)
{
	struct fill_job *j = arg;
	struct dir_at d = DIR_AT_NONE; /* a job's entries are siblings */

	for (uint32_t i = j->first; i < j->end && !atomic_load(&j->c->cancel); i++) {
		int r;

		if (!filled_by_worker(j->c, i))
			continue;
		r = restore_one(j->c, i, &d);
		if (r < 0 && r != -ECANCELED)
			ctx_fail(j->c, r);
	}
	dir_at_close(&d);
}

/* Phase 2's worker jobs, made in manifest order, each handed out once its
 * directory exists. */
struct fill_plan {
	struct fill_job *jobs;
	uint32_t njobs, next; /* next entry to look at */
	struct workqueue *pool;
};

/* Submit the jobs of every sibling run whose directory is at depth <= level. */
static void submit_fill_jobs(struct restore_ctx *c, struct fill_plan *p, uint32_t level)
{
	uint32_t count = manifest_count(c->m);

	while (p->next < count) {
		uint32_t i = p->next, end = i, parent = manifest_node(c->m, i)->parent;
		uint64_t bytes = 0;
		bool any = false;

		if (c->depth[parent] > level)
			return; /* breadth-first: every later run is deeper */
		/* Siblings are contiguous (breadth-first order). */
		while (end < count && end - i < FILL_JOB_MAX_ENTRIES &&
		       manifest_node(c->m, end)->parent == parent && bytes < FILL_JOB_MAX_BYTES) {
			const struct manifest_node *n = manifest_node(c->m, end);

			if (filled_by_worker(c, end)) {
				any = true;
				if (S_ISREG(n->mode))
					bytes += n->size;
			}
			end++;
		}
		if (any) {
			p->jobs[p->njobs] = (struct fill_job){ c, i, end };
			workqueue_submit(p->pool, fill_job_run, &p->jobs[p->njobs++]);
		}
		p->next = end;
	}
}

#define MKDIR_JOB_MAX_ENTRIES 64

static void mkdir_job_run(void *arg)
{
	struct fill_job *j = arg;
	struct dir_at d = DIR_AT_NONE;

	for (uint32_t i = j->first; i < j->end && !atomic_load(&j->c->cancel); i++) {
		int r;

		if (!S_ISDIR(manifest_node(j->c->m, i)->mode))
			continue;
		r = create_dir(j->c, i, false, &d);
		if (r < 0)
			ctx_fail(j->c, r);
	}
	dir_at_close(&d);
}

/* Phase 1 into an empty directory: the directories of one depth at a time,
 * on c->creators threads, and after each depth the worker jobs of the directories it
 * completed, so that files are created at the top of the tree while deeper
 * directories are still being made.  (Creating an inode is the slow part of
 * a restore on many filesystems.) */
static int make_dirs_by_depth(struct restore_ctx *c, struct fill_plan *fp)
{
	uint32_t count = manifest_count(c->m), level = 0;
	struct workqueue *pool = workqueue_new(c->creators, count / MKDIR_JOB_MAX_ENTRIES + 2);
	struct fill_job *jobs = calloc(count / MKDIR_JOB_MAX_ENTRIES + 2, sizeof(*jobs));
	uint32_t i = 1;
	int r = 0;

	if (!pool || !jobs) {
		workqueue_free(pool);
		free(jobs);
		return -ENOMEM;
	}
	dirs_ready(c, 0); /* the root */
	submit_fill_jobs(c, fp, 0);
	while (i < count && r == 0) {
		uint32_t njobs = 0;

		level = c->depth[i];
		/* Entries of one depth are contiguous (breadth-first order). */
		while (i < count && c->depth[i] == level) {
			uint32_t end = i;

			while (end < count && c->depth[end] == level && end - i < MKDIR_JOB_MAX_ENTRIES)
				end++;
			jobs[njobs] = (struct fill_job){ c, i, end };
			workqueue_submit(pool, mkdir_job_run, &jobs[njobs++]);
			i = end;
		}
		workqueue_wait(pool);
		if (atomic_load(&c->cancel)) {
			r = hb_err(c->error, "%s", c->errmsg); /* set once, never changed */
			break;
		}
		dirs_ready(c, level);
		submit_fill_jobs(c, fp, level);
	}
	workqueue_free(pool);
	free(jobs);
	return r;
}

/* Phase 3: entry i as another name of its hard-link group's first entry.
 * A device node that a restore without root could not make is not there
 * to link to: its other names are skipped (and counted) the same way. */
static int link_member(struct restore_ctx *c, uint32_t i, struct dir_at *d)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	struct dir_at from = DIR_AT_NONE;
	int r;

	if ((r = dir_at_open(c, d, i, "link")) < 0 ||
	    (r = dir_at_open(c, &from, n->hardlink, "link to")) < 0)
		return r;
	r = linkat(from.fd, manifest_name(c->m, n->hardlink), d->fd, manifest_name(c->m, i), 0);
	r = r < 0 ? -errno : 0;
	dir_at_close(&from);
	if (r == -ENOENT && !c->as_root && (S_ISCHR(n->mode) || S_ISBLK(n->mode))) {
		atomic_fetch_add(&c->skipped, 1);
		return 0;
	}
	if (r < 0)
		return hb_err(r, "cannot link '%s': %s", c->paths[i], strerror(-r));
	return 0;
}

/* Restoring from object storage waits on round trips, not on cores: keep
 * many range requests in flight. */
#define RESTORE_REMOTE_FETCHERS 16

/* Threads that create inodes in phase 1, and from object storage in phase
 * 2 too (0: one per core; reads by pack keep the network busy on their own
 * threads).  HIBERBOX_RESTORE_CREATORS=N overrides, to compare: on a quiet
 * 2-core VM, bench restore from loopback s3rver was 1.93x tar with one per
 * core and 1.32x with one (through the 30 ms link 1.33x and 1.20x); on a
 * loaded one with ext4 full of recently deleted inodes (no journal: each
 * allocating thread scans them) one creator held up better. */
static unsigned creators(void)
{
	const char *env = getenv("HIBERBOX_RESTORE_CREATORS");
	long n = env ? strtol(env, NULL, 10) : 0;

	return n > 0 && n <= 256 ? (unsigned)n : 0;
}

/* Workers for phase 2 (0: one per core).  Without reads by pack, chunk
 * reads from object storage wait on round trips: many workers then. */
static unsigned restore_threads(struct repo *r, unsigned wanted, bool by_pack)
{
	if (by_pack)
		return creators(); /* --threads went to the fetchers */
	if (wanted)
		return wanted;
	if (store_tiered_remote(r->store) || strncmp(store_location(r->store), "s3://", 5) == 0)
		return RESTORE_REMOTE_FETCHERS;
	return 0;
}

/* Whether chunks come by pack through restore-fetch.c: from object storage
 * (HIBERBOX_RESTORE_BY_PACK=0/1 overrides, to compare). */
static bool fetch_by_pack(struct repo *r)
{
	const char *env = getenv("HIBERBOX_RESTORE_BY_PACK");

	if (env && (env[0] == '0' || env[0] == '1'))
		return env[0] == '1';
	return store_tiered_remote(r->store) != NULL ||
	       strncmp(store_location(r->store), "s3://", 5) == 0;
}

struct index_thread_arg {
	struct repo *r;
	unsigned parallel;
};

/* A failure here shows again, with its message, when the plan looks the
 * first chunk up. */
static void *index_thread_main(void *arg)
{
	struct index_thread_arg *a = arg;

	repo_load_index_threads(a->r, a->parallel);
	return NULL;
}

int repo_snapshot_restore(struct repo *r, const struct oid *id, const char *dir,
			  const struct repo_restore_opts *opts)
{
	struct repo_restore_opts defaults = { 0 };
	struct restore_ctx c = { .repo = r, .rootfd = -1, .as_root = geteuid() == 0,
				 .euid = geteuid(), .egid = getegid(), .umask = current_umask() };
	struct fill_plan fill = { 0 };
	struct dir_at at = DIR_AT_NONE; /* phase 1 with --force, phase 3's links */
	struct restore_fetch fetch;
	struct restore_fetch_run *fetch_run = NULL;
	uint32_t count, *fetch_files = NULL;
	struct index_thread_arg index_thread_arg;
	pthread_t index_thread;
	bool empty = true, by_pack, index_thread_started = false;
	struct repo_pin *pin = NULL;
	unsigned fetchers;
	int rc;

	if (!opts)
		opts = &defaults;
	{
		/* A long restore from a bucket: `snapshot rm` elsewhere meanwhile
		 * would let a gc take chunks not fetched yet. */
		char what[600];

		snprintf(what, sizeof(what), "restore into %.500s", dir);
		if (repo_pin_start(r, id, what, &pin) < 0)
			hb_err_clear(); /* protection only: the restore goes on */
	}
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.dirs_cond, NULL);
	c.progress = opts->progress;
	by_pack = fetch_by_pack(r);
	fetchers = opts->threads ? opts->threads : RESTORE_REMOTE_FETCHERS;
	/* The index arrives while the manifest does (each is round trips). */
	if (by_pack) {
		struct index_thread_arg it = { r, fetchers };

		index_thread_arg = it;
		index_thread_started = pthread_create(&index_thread, NULL, index_thread_main,
						      &index_thread_arg) == 0;
	}
	rc = repo_read_manifest(r, id, &c.m);
	if (index_thread_started) {
		pthread_join(index_thread, NULL);
		index_thread_started = false;
	}
	if (rc < 0)
		goto out;
	if (opts->path) {
		/* restored as a snapshot of just that part: everything below
		 * (fetch plans, hard links, metadata) works unchanged */
		struct manifest *part = NULL;
		/* links on the way followed (a root fs's lib -> usr/lib): the
		 * entry is restored at its real path, a last link as itself */
		int64_t e = repo_manifest_resolve(c.m, opts->path, false);

		rc = e < 0 ? (int)e : repo_manifest_subtree(c.m, (uint32_t)e, &part);
		if (rc < 0)
			goto out;
		manifest_free(c.m);
		c.m = part;
	}
	count = manifest_count(c.m);
	/* opened as made: "out/../out2" is out2 alone, which the kernel
	 * would not find by that name (out is not made) */
	c.rootfd = mkdir_p_open(AT_FDCWD, dir, 0755);
	if (c.rootfd < 0) {
		rc = hb_err(c.rootfd, "cannot create %s: %s", dir, strerror(-c.rootfd));
		c.rootfd = -1;
		goto out;
	}
	rc = dir_is_empty(c.rootfd, ".", &empty);
	if (rc < 0)
		goto out;
	if (!empty && !opts->force) {
		rc = hb_err(-ENOTEMPTY, "%s is not empty (use --force to restore into it)", dir);
		goto out;
	}
	rc = stop_inheritance(&c, c.rootfd, dir);
	if (rc < 0)
		goto out;
	c.paths = calloc(count, sizeof(*c.paths));
	c.depth = calloc(count, sizeof(*c.depth));
	if (!c.paths || !c.depth) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		char path[PATH_MAX];

		rc = manifest_path(c.m, i, path, sizeof(path));
		if (rc < 0) {
			rc = hb_err(rc, "path of entry %u is too long", i);
			goto out;
		}
		c.paths[i] = strdup(path);
		if (!c.paths[i]) {
			rc = -ENOMEM;
			goto out;
		}
		if (S_ISREG(manifest_node(c.m, i)->mode) && manifest_node(c.m, i)->hardlink == i)
			c.total += manifest_node(c.m, i)->size;
		/* The decoder checked that parents come first (breadth-first). */
		if (i > 0)
			c.depth[i] = c.depth[manifest_node(c.m, i)->parent] + 1;
	}
	/* Phase 2's workers: files with their contents (unless put_chunk
	 * writes them), symlinks and special files, each run of siblings as
	 * soon as its directory exists; and, from object storage, the writers
	 * of landed ranges.  (A queue that is full runs a job in the thread
	 * that submits it: a fetcher then writes its own range.) */
	fill.jobs = calloc(count, sizeof(*fill.jobs));
	fill.pool = workqueue_new(restore_threads(r, opts->threads, by_pack), count + 64);
	if (!fill.jobs || !fill.pool) {
		rc = -ENOMEM;
		goto out;
	}
	fill.next = 1;
	c.creators = creators();
	/* Chunk reads by pack start before phase 1: the network is busy while
	 * directories are made, and put_chunk waits for them. */
	if (by_pack) {
		rc = start_fetch(&c, &fetch, fetchers, fill.pool, &fetch_files, &fetch_run);
		if (rc < 0)
			goto out;
	}
	/* Phase 1: directories (and, with --force, room for every entry). */
	if (empty) {
		rc = make_dirs_by_depth(&c, &fill);
		if (rc < 0)
			goto out;
	} else {
		for (uint32_t i = 1; i < count; i++) {
			const struct manifest_node *n = manifest_node(c.m, i);

			if (!S_ISDIR(n->mode)) {
				test_hook_wait("HIBERBOX_TEST_RESTORE_CLEAR_WAIT");
				rc = clear_path(&c, i, false, &at);
				if (rc < 0)
					goto out;
				continue;
			}
			rc = create_dir(&c, i, true, &at);
			if (rc < 0)
				goto out;
		}
		dir_at_close(&at);
	}
	dirs_ready(&c, UINT32_MAX);
	submit_fill_jobs(&c, &fill, UINT32_MAX);
	restore_fetch_wait(fetch_run); /* fetchers, then writers */
	fetch_run = NULL;
	workqueue_free(fill.pool);
	fill.pool = NULL;
	if (c.error) {
		rc = hb_err(c.error, "%s", c.errmsg);
		goto out;
	}
	/* Phase 3: hard links, then directories deepest first. */
	for (uint32_t i = 1; i < count; i++) {
		const struct manifest_node *n = manifest_node(c.m, i);

		if (!S_ISDIR(n->mode) && n->hardlink != i && (rc = link_member(&c, i, &at)) < 0)
			goto out;
	}
	dir_at_close(&at);
	for (uint32_t i = count; i-- > 0;) {
		int fd;

		if (!S_ISDIR(manifest_node(c.m, i)->mode))
			continue;
		fd = i == 0 ? dup(c.rootfd)
			    : open_beneath(c.rootfd, c.paths[i], O_RDONLY | O_DIRECTORY, 0);
		if (fd < 0) {
			rc = hb_err(fd < 0 && i ? fd : -errno, "cannot open '%s'", c.paths[i]);
			goto out;
		}
		rc = set_metadata_fd(&c, i, fd, 0);
		close(fd);
		if (rc < 0)
			goto out;
	}
	if (atomic_load(&c.skipped))
		fprintf(stderr, "hiberbox: %llu device node(s) not restored: creating them needs root\n",
			(unsigned long long)atomic_load(&c.skipped));
	if (atomic_load(&c.setid_dropped))
		fprintf(stderr,
			"hiberbox: %llu file(s) restored without their set-uid/set-gid bits: "
			"their owner could not be set (needs root)\n",
			(unsigned long long)atomic_load(&c.setid_dropped));
	if (c.progress.update)
		c.progress.update(c.progress.arg, "restoring", c.total, c.total);
	rc = 0;
out:
	if (rc < 0) {
		atomic_store(&c.cancel, 1);
		dirs_ready(&c, UINT32_MAX); /* wakes fetchers that wait for phase 1 */
	}
	dir_at_close(&at);
	restore_fetch_wait(fetch_run);
	workqueue_free(fill.pool);
	if (c.files) {
		if (rc < 0)
			remove_unfinished(&c);
		for (uint32_t i = 0; i < RESTORE_FILE_LOCKS; i++)
			pthread_mutex_destroy(&c.file_locks[i]);
	}
	free(c.files);
	free(fetch_files);
	free(fill.jobs);
	free(c.depth);
	if (c.paths)
		for (uint32_t i = 0; i < manifest_count(c.m); i++)
			free(c.paths[i]);
	free(c.paths);
	manifest_free(c.m);
	if (c.rootfd >= 0)
		close(c.rootfd);
	pthread_mutex_destroy(&c.lock);
	pthread_cond_destroy(&c.dirs_cond);
	repo_pin_end(pin);
	return rc;
}
