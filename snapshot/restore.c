/* snapshot restore: recreate a snapshot's tree in a directory.
 *
 * Phase 1 (one thread, breadth-first so parents exist before children)
 * creates directories, empty regular files, symlinks, fifos and devices.
 * Phase 2 fills regular files on a pool of workers, each chunk verified on
 * the way (repo_read_chunk).  Phase 3 makes hard links and sets the metadata
 * of everything that is not a regular file; directories last and deepest
 * first, so that creating their children does not disturb their times.
 * Ownership is set before the mode (chown clears set-id bits) and xattrs after
 * ownership (chown clears security.capability); times go last.
 *
 * A file whose content fails verification is removed, not left half
 * written, and the restore fails naming the file, the chunk and the pack.
 * Every path is opened beneath the target with symlinks refused
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a hostile tree already
 * in the target (restore --force) cannot redirect writes outside it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "snapshot/repo-int.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

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
	uint64_t total;
	uint64_t last_progress_ns;
	pthread_mutex_t lock;
	int error;
	char errmsg[1024];
};

static void ctx_fail(struct restore_ctx *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!c->error) {
		c->error = r;
		hb_err_save(c->errmsg, sizeof(c->errmsg));
	}
	pthread_mutex_unlock(&c->lock);
}

/* Open beneath the restore root, never through a symlink. */
static int open_beneath(int rootfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));

	if (fd < 0 && errno == ENOSYS)
		fd = openat(rootfd, path, flags | O_CLOEXEC | O_NOFOLLOW, mode);
	return fd < 0 ? -errno : (int)fd;
}

static int remove_tree_at(int parentfd, const char *name);

/* Make room for a new entry at path (restore --force over existing files). */
static int clear_path(struct restore_ctx *c, const char *path, bool keep_dir)
{
	struct stat st;

	if (fstatat(c->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		if (keep_dir)
			return 1;
		return remove_tree_at(c->rootfd, path);
	}
	return unlinkat(c->rootfd, path, 0) < 0 ? -errno : 0;
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
		if (de->d_name[0] == '.' &&
		    (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
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

static int create_entry(struct restore_ctx *c, uint32_t i, bool force, _Atomic uint64_t *skipped)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const char *path = c->paths[i];
	int r;

	if (force) {
		r = clear_path(c, path, S_ISDIR(n->mode));
		if (r < 0)
			return hb_err(r, "cannot replace '%s': %s", path, strerror(-r));
		if (r == 1)
			return 0; /* an existing directory is reused */
	}
	switch (n->mode & S_IFMT) {
	case S_IFDIR:
		/* Owner-writable until phase 3 sets the real mode. */
		if (mkdirat(c->rootfd, path, 0700) < 0)
			return hb_err(-errno, "cannot create directory '%s': %s", path, strerror(errno));
		return 0;
	case S_IFREG:
		return 0; /* created by fill_file, or linked in phase 3 */
	case S_IFLNK:
		if (symlinkat((const char *)manifest_data(c->m, i), c->rootfd, path) < 0)
			return hb_err(-errno, "cannot create symlink '%s': %s", path, strerror(errno));
		return 0;
	case S_IFIFO:
	case S_IFCHR:
	case S_IFBLK:
		if (mknodat(c->rootfd, path, (n->mode & S_IFMT) | 0600, (dev_t)n->rdev) < 0) {
			if (errno == EPERM && !c->as_root && !S_ISFIFO(n->mode)) {
				atomic_fetch_add(skipped, 1); /* device nodes need root */
				return 0;
			}
			return hb_err(-errno, "cannot create '%s': %s", path, strerror(errno));
		}
		return 0;
	default:
		return 0;
	}
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

static bool tolerable(int err, bool as_root)
{
	return err == ENOTSUP || (!as_root && (err == EPERM || err == EACCES));
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

	if (!owner_ok && fchown(fd, n->uid, n->gid) < 0 && !tolerable(errno, c->as_root))
		return hb_err(-errno, "cannot set owner of '%s': %s", path, strerror(errno));
	if ((!owner_ok || created_mode != (n->mode & 07777)) && fchmod(fd, n->mode & 07777) < 0)
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

/* Symlinks and special files cannot be opened for writing: use *at calls. */
static int set_metadata_path(struct restore_ctx *c, uint32_t i)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	const char *path = c->paths[i];
	char full[64];
	struct timespec ts[2] = {
		{ .tv_sec = n->atime_sec, .tv_nsec = n->atime_nsec },
		{ .tv_sec = n->mtime_sec, .tv_nsec = n->mtime_nsec },
	};
	int fd;

	if (fchownat(c->rootfd, path, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0 &&
	    !tolerable(errno, c->as_root))
		return hb_err(-errno, "cannot set owner of '%s': %s", path, strerror(errno));
	if (!S_ISLNK(n->mode) && fchmodat(c->rootfd, path, n->mode & 07777, 0) < 0)
		return hb_err(-errno, "cannot set mode of '%s': %s", path, strerror(errno));
	if (n->nxattrs > 0) {
		/* An O_PATH fd names the node itself, symlink or fifo, without opening it. */
		fd = openat(c->rootfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return hb_err(-errno, "cannot open '%s': %s", path, strerror(errno));
		snprintf(full, sizeof(full), "/proc/self/fd/%d", fd);
		for (uint32_t k = 0; k < n->nxattrs; k++) {
			struct manifest_xattr x;

			manifest_xattr(c->m, i, k, &x);
			if (lsetxattr(full, x.name, x.value, x.value_len, 0) < 0 &&
			    !tolerable(errno, c->as_root) && errno != EPERM) {
				int e = errno;

				close(fd);
				return hb_err(-e, "cannot set xattr %s of '%s': %s", x.name, path,
					      strerror(e));
			}
		}
		close(fd);
	}
	if (utimensat(c->rootfd, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return hb_err(-errno, "cannot set times of '%s': %s", path, strerror(errno));
	return 0;
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
			if (c->error)
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
		unlinkat(c->rootfd, path, 0); /* never leave a file that looks valid */
	return r;
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

static int restore_one(struct restore_ctx *c, uint32_t i)
{
	const struct manifest_node *n = manifest_node(c->m, i);
	int r;

	if (S_ISREG(n->mode))
		return fill_file(c, i);
	r = create_entry(c, i, false, &c->skipped);
	/* A skipped device node is not there to take metadata. */
	if (r == 0 && (!(S_ISCHR(n->mode) || S_ISBLK(n->mode)) ||
		       faccessat(c->rootfd, c->paths[i], F_OK, AT_SYMLINK_NOFOLLOW) == 0))
		r = set_metadata_path(c, i);
	return r;
}

static void fill_job_run(void *arg)
{
	struct fill_job *j = arg;

	for (uint32_t i = j->first; i < j->end && !j->c->error; i++) {
		const struct manifest_node *n = manifest_node(j->c->m, i);
		int r;

		if (!restored_in_phase2(n, i))
			continue;
		r = restore_one(j->c, i);
		if (r < 0 && r != -ECANCELED)
			ctx_fail(j->c, r);
	}
}

/* Restoring from object storage waits on round trips, not on cores: keep
 * many range requests in flight. */
#define RESTORE_REMOTE_THREADS 16

static unsigned restore_threads(struct repo *r, unsigned wanted)
{
	if (wanted)
		return wanted;
	if (strncmp(store_location(r->store), "s3://", 5) == 0)
		return RESTORE_REMOTE_THREADS;
	return 0; /* one per core */
}

static int check_empty(const char *dir, int fd, bool *empty)
{
	int dup_fd = dup(fd);
	struct dirent *de;
	DIR *d;

	if (dup_fd < 0)
		return -errno;
	d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return -ENOMEM;
	}
	*empty = true;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' &&
		    (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		*empty = false;
		break;
	}
	closedir(d);
	return 0;
}

int repo_snapshot_restore(struct repo *r, const struct oid *id, const char *dir,
			  const struct repo_restore_opts *opts)
{
	struct repo_restore_opts defaults = { 0 };
	struct restore_ctx c = { .repo = r, .rootfd = -1, .as_root = geteuid() == 0,
				 .euid = geteuid(), .egid = getegid(), .umask = current_umask() };
	struct workqueue *pool = NULL;
	struct fill_job *jobs = NULL;
	uint32_t count;
	bool empty = true;
	int rc;

	if (!opts)
		opts = &defaults;
	pthread_mutex_init(&c.lock, NULL);
	c.progress = opts->progress;
	rc = repo_read_manifest(r, id, &c.m);
	if (rc < 0)
		goto out;
	count = manifest_count(c.m);
	rc = mkdir_p(AT_FDCWD, dir, 0755);
	if (rc < 0) {
		rc = hb_err(rc, "cannot create %s: %s", dir, strerror(-rc));
		goto out;
	}
	c.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0) {
		rc = hb_err(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	rc = check_empty(dir, c.rootfd, &empty);
	if (rc < 0)
		goto out;
	if (!empty && !opts->force) {
		rc = hb_err(-ENOTEMPTY, "%s is not empty (use --force to restore into it)", dir);
		goto out;
	}
	c.paths = calloc(count, sizeof(*c.paths));
	if (!c.paths) {
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
	}
	/* Phase 1: directories (and, with --force, room for every entry). */
	for (uint32_t i = 1; i < count; i++) {
		const struct manifest_node *n = manifest_node(c.m, i);

		if (!empty && !S_ISDIR(n->mode)) {
			rc = clear_path(&c, c.paths[i], false);
			if (rc < 0) {
				rc = hb_err(rc, "cannot replace '%s': %s", c.paths[i], strerror(-rc));
				goto out;
			}
		}
		if (!S_ISDIR(n->mode))
			continue;
		rc = create_entry(&c, i, !empty, &c.skipped);
		if (rc < 0)
			goto out;
	}
	/* Phase 2: files with their contents, symlinks and special files, in
	 * parallel (creating files is itself slow on many filesystems). */
	jobs = calloc(count, sizeof(*jobs));
	pool = workqueue_new(restore_threads(r, opts->threads), 0);
	if (!jobs || !pool) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 1, njobs = 0; i < count;) {
		uint32_t end = i, parent = manifest_node(c.m, i)->parent;
		uint64_t bytes = 0;

		/* Siblings are contiguous (breadth-first order). */
		while (end < count && end - i < FILL_JOB_MAX_ENTRIES &&
		       manifest_node(c.m, end)->parent == parent && bytes < FILL_JOB_MAX_BYTES) {
			const struct manifest_node *n = manifest_node(c.m, end);

			if (restored_in_phase2(n, end) && S_ISREG(n->mode))
				bytes += n->size;
			end++;
		}
		jobs[njobs] = (struct fill_job){ &c, i, end };
		workqueue_submit(pool, fill_job_run, &jobs[njobs++]);
		i = end;
	}
	workqueue_free(pool);
	pool = NULL;
	if (c.error) {
		rc = hb_err(c.error, "%s", c.errmsg);
		goto out;
	}
	/* Phase 3: hard links, then directories deepest first. */
	for (uint32_t i = 1; i < count; i++) {
		const struct manifest_node *n = manifest_node(c.m, i);

		if (!S_ISDIR(n->mode) && n->hardlink != i &&
		    linkat(c.rootfd, c.paths[n->hardlink], c.rootfd, c.paths[i], 0) < 0) {
			rc = hb_err(-errno, "cannot link '%s': %s", c.paths[i], strerror(errno));
			goto out;
		}
	}
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
	if (c.progress.update)
		c.progress.update(c.progress.arg, "restoring", c.total, c.total);
	rc = 0;
out:
	workqueue_free(pool);
	free(jobs);
	if (c.paths)
		for (uint32_t i = 0; i < manifest_count(c.m); i++)
			free(c.paths[i]);
	free(c.paths);
	manifest_free(c.m);
	if (c.rootfd >= 0)
		close(c.rootfd);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
