/* The parallel metadata walk of snapshot create; see walk.h.
 *
 * walk_start() queues jobs: a directory job opens and lists one directory and
 * splits its entries, in inode order, into slices; a slice job stats its
 * entries, reads symlink targets and submits a directory job for every
 * subdirectory.  Each directory's results land in its own array at fixed
 * (name-sorted) positions.  walk_finish() waits for the queue to drain, then
 * a breadth-first pass over those arrays gives the manifest's order whatever
 * the timing, matches each entry with the parent snapshot's (a merge of two
 * sorted child lists), and takes xattrs from the parent or, for inodes that
 * changed, reads them (again in parallel).
 */
#include "snapshot/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/beneath.h"
#include "snapshot/exclude.h"
#include "snapshot/testhook.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

/* Enough requests in flight to keep a virtio or NVMe queue busy; the threads
 * mostly sleep on I/O, so more than cores is the point. */
#define WALK_DEFAULT_THREADS 16u
#define WALK_MAX_THREADS 64u
/* Entries per slice: a large directory is spread over threads, a small one
 * costs one job. */
#define WALK_SLICE_ENTRIES 128u
#define WALK_MAX_QUEUED 8192u
#define WALK_STATX_MASK                                                                    \
	(STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | STATX_ATIME |       \
	 STATX_MTIME | STATX_CTIME | STATX_INO | STATX_SIZE)

struct dir_name {
	char *name;
	uint64_t ino;
};

struct slice_job {
	struct walk_dir *dir;
	uint32_t from, to; /* into dir->order */
};

/* One directory being walked.  kids[k] describes names[k]; kids[k].name is
 * NULL for an entry left out (deleted meanwhile, or a socket). */
struct walk_dir {
	struct walk *c;
	const char *path; /* owned by the directory's walk_entry */
	int fd;
	uint32_t n;
	struct dir_name *names;    /* sorted by name */
	uint32_t *order;           /* indices into names, by inode number */
	struct walk_entry *kids;
	struct walk_dir **subs;    /* kids[k]'s walk_dir if it is a directory */
	struct slice_job *slices;
	atomic_uint slices_left;
	struct walk_dir *next_all; /* every walk_dir of the walk, for freeing */
	bool gone;                 /* vanished before it could be opened: left out */
};

struct walk {
	struct walk_opts o;
	struct walk_entry root;
	struct walk_dir *top;
	struct timespec started; /* CLOCK_REALTIME_COARSE before the first stat */
	struct workqueue *wq;
	atomic_uint kept;
	atomic_uint gone; /* entries marked gone after the listing (xattrs) */
	atomic_int error;
	pthread_mutex_t lock; /* errmsg, all */
	struct walk_dir *all;
	struct exclude_set *excludes; /* NULL: none */
	char errmsg[1024];
};

static void walk_fail(struct walk *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!atomic_load(&c->error)) {
		hb_err_save(c->errmsg, sizeof(c->errmsg));
		atomic_store(&c->error, r);
	}
	pthread_mutex_unlock(&c->lock);
}

const char *walk_gone_why(int err)
{
	switch (err) {
	case -ENOENT:
		return "was removed";
	case -ENOTDIR:
		return "was replaced (a directory on its path is no longer one)";
	case -ELOOP:
	case -EXDEV:
		return "was replaced by a symbolic link (it or a directory on its path)";
	default:
		return NULL;
	}
}

static void report_gone(struct walk *c, const char *path, const char *why)
{
	if (c->o.gone)
		c->o.gone(c->o.gone_arg, path[0] ? path : ".", why);
}

static void entry_free(struct walk_entry *e)
{
	free(e->name);
	free(e->path);
	free(e->target);
	for (uint32_t k = 0; k < e->nxattrs; k++) {
		free(e->xattrs[k].name);
		free(e->xattrs[k].value);
	}
	free(e->xattrs);
}

void walk_free(struct walk_entry *entries, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		entry_free(&entries[i]);
	free(entries);
}

bool walk_inode_unchanged(const struct manifest *parent, const struct walk_entry *e)
{
	const struct manifest_node *p;

	if (!parent || e->prev < 0)
		return false;
	p = manifest_node(parent, (uint32_t)e->prev);
	return p->mode == e->node.mode && p->src_ino == e->node.src_ino &&
	       p->ctime_sec == e->node.ctime_sec && p->ctime_nsec == e->node.ctime_nsec;
}

static void fill_from_stat(struct manifest_node *n, const struct stat *st)
{
	n->mode = st->st_mode;
	n->uid = st->st_uid;
	n->gid = st->st_gid;
	n->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
	n->rdev = 0;
	n->mtime_sec = st->st_mtim.tv_sec;
	n->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	n->atime_sec = st->st_atim.tv_sec;
	n->atime_nsec = (uint32_t)st->st_atim.tv_nsec;
	n->ctime_sec = st->st_ctim.tv_sec;
	n->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
	n->src_ino = st->st_ino;
	n->src_dev = st->st_dev;
	n->nlink = 1;
}

static void fill_from_statx(struct manifest_node *n, const struct statx *sx)
{
	n->mode = sx->stx_mode;
	n->uid = sx->stx_uid;
	n->gid = sx->stx_gid;
	n->size = S_ISREG(sx->stx_mode) ? sx->stx_size : 0;
	n->rdev = S_ISCHR(sx->stx_mode) || S_ISBLK(sx->stx_mode)
			  ? (uint64_t)makedev(sx->stx_rdev_major, sx->stx_rdev_minor)
			  : 0;
	n->mtime_sec = sx->stx_mtime.tv_sec;
	n->mtime_nsec = sx->stx_mtime.tv_nsec;
	n->atime_sec = sx->stx_atime.tv_sec;
	n->atime_nsec = sx->stx_atime.tv_nsec;
	n->ctime_sec = sx->stx_ctime.tv_sec;
	n->ctime_nsec = sx->stx_ctime.tv_nsec;
	n->src_ino = sx->stx_ino;
	/* What st_dev would say, so that hard-link groups compare equal. */
	n->src_dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
	n->nlink = 1;
}

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct walk_xattr *)a)->name, ((const struct walk_xattr *)b)->name);
}

/* Where an entry's xattrs are read from (see entry_xattrs): an fd open on
 * it, or else (path set) the /proc/self/fd link of an O_PATH fd, which the
 * *xattr calls follow to the node itself. */
struct xattr_src {
	int fd;
	const char *path;
};

static ssize_t src_get(const struct xattr_src *s, const char *name, void *buf, size_t size)
{
	return s->path ? getxattr(s->path, name, buf, size) : fgetxattr(s->fd, name, buf, size);
}

static ssize_t src_list(const struct xattr_src *s, char *buf, size_t size)
{
	return s->path ? listxattr(s->path, buf, size) : flistxattr(s->fd, buf, size);
}

/* Values up to this size are read in one call, not sized first. */
#define WALK_XATTR_SMALL 512

/* Append xattr `name` of s to e; a name removed meanwhile is skipped. */
static int read_one_xattr(const struct xattr_src *s, const char *label, const char *name,
			  struct walk_entry *e)
{
	char small[WALK_XATTR_SMALL];
	ssize_t vlen = src_get(s, name, small, sizeof(small));
	bool read = vlen >= 0;
	struct walk_xattr *x;
	void *p;

	if (vlen < 0 && errno == ERANGE)
		vlen = src_get(s, name, NULL, 0);
	if (vlen < 0) {
		if (errno == ENODATA)
			return 0;
		return hb_err(-errno, "cannot read xattr %s of '%s': %s", name, label,
			      strerror(errno));
	}
	if ((size_t)vlen > MANIFEST_MAX_XATTR_VALUE)
		return hb_err(-E2BIG, "xattr %s of '%s' is too large", name, label);
	p = realloc(e->xattrs, (e->nxattrs + 1) * sizeof(*e->xattrs));
	if (!p)
		return -ENOMEM;
	e->xattrs = p;
	x = &e->xattrs[e->nxattrs];
	x->name = strdup(name);
	x->value = malloc((size_t)vlen + 1);
	if (!x->name || !x->value) {
		free(x->name);
		free(x->value);
		return -ENOMEM;
	}
	/* It may have grown since we asked for its size: ERANGE fails loudly.
	 * Not for an empty value: a size of 0 asks for the size again, and a
	 * value set meanwhile would be taken as read into our 1-byte buffer. */
	if (read)
		memcpy(x->value, small, (size_t)vlen);
	else if (vlen > 0)
		vlen = src_get(s, name, x->value, (size_t)vlen);
	if (vlen < 0) {
		int r = -errno;

		free(x->name);
		free(x->value);
		if (r == -ENODATA)
			return 0;
		return hb_err(r, "cannot read xattr %s of '%s': %s", name, label, strerror(-r));
	}
	x->len = (uint32_t)vlen;
	e->nxattrs++;
	return 0;
}

/* Read the xattrs of s, sorted by name.  size: of the list as last seen
 * (it may have changed since: read again with the size it has now). */
static int read_xattrs(const struct xattr_src *s, const char *label, struct walk_entry *e,
		       size_t size)
{
	ssize_t len = (ssize_t)size;
	char *list = NULL;
	int r = 0;

	while (len > 0) {
		char *p = realloc(list, (size_t)len + 1);

		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		list = p;
		len = src_list(s, list, (size_t)len);
		if (len < 0 && errno == ERANGE)
			len = src_list(s, NULL, 0);
		else if (len >= 0)
			break;
		if (len < 0) {
			if (errno != ENOTSUP && errno != ENODATA)
				r = hb_err(-errno, "cannot list xattrs of '%s': %s", label,
					   strerror(errno));
			goto out;
		}
	}
	for (char *name = list; name < list + len && r == 0; name += strlen(name) + 1)
		r = read_one_xattr(s, label, name, e);
	if (r == 0 && e->nxattrs > 1)
		qsort(e->xattrs, e->nxattrs, sizeof(*e->xattrs), xattr_cmp);
out:
	free(list);
	return r;
}

static int copy_parent_xattrs(const struct manifest *parent, struct walk_entry *e)
{
	const struct manifest_node *p = manifest_node(parent, (uint32_t)e->prev);

	if (p->nxattrs == 0)
		return 0;
	e->xattrs = calloc(p->nxattrs, sizeof(*e->xattrs));
	if (!e->xattrs)
		return -ENOMEM;
	for (uint32_t k = 0; k < p->nxattrs; k++) {
		struct walk_xattr *x = &e->xattrs[k];
		struct manifest_xattr mx;

		manifest_xattr(parent, (uint32_t)e->prev, k, &mx);
		x->name = strdup(mx.name);
		x->value = malloc(mx.value_len + 1);
		if (!x->name || !x->value) {
			free(x->name);
			free(x->value);
			return -ENOMEM;
		}
		memcpy(x->value, mx.value, mx.value_len);
		x->len = mx.value_len;
		e->nxattrs++;
	}
	return 0;
}

/* Read the xattrs of e from the filesystem.  Most entries have none, and
 * llistxattr on the path says so for one lookup.  Names and values are only
 * read through a descriptor opened beneath the root: a directory on the
 * path swapped for a symbolic link since the walk would take a path outside
 * the tree, where a count is harmless and the xattrs of a file from
 * elsewhere are not.  Files and directories are opened (not blocking, in
 * case a FIFO took the place of a file); others, which must not be opened
 * (a device), and what we may not read get an O_PATH fd, whose xattrs are
 * reached through its /proc/self/fd link (f*xattr refuse O_PATH fds). */
static int entry_xattrs(struct walk *c, struct walk_entry *e)
{
	const struct walk_opts *o = &c->o;
	const char *rel = e->path[0] ? e->path : ".";
	struct xattr_src src = { -1, NULL };
	char *full, proc[40];
	const char *why;
	ssize_t len;
	int r;

	if (asprintf(&full, "%s/%s", o->root, e->path) < 0)
		return -ENOMEM;
	len = llistxattr(full, NULL, 0);
	free(full);
	if (len < 0 && e->path[0] && (why = walk_gone_why(-errno))) {
		/* gone since it was listed: left out, as if listed later */
		e->gone = true;
		atomic_fetch_add(&c->gone, 1);
		report_gone(c, e->path, why);
		return 0;
	}
	if (len < 0 && errno != ENOTSUP && errno != ENODATA)
		return hb_err(-errno, "cannot list xattrs of '%s': %s", rel, strerror(errno));
	if (len <= 0)
		return 0;
	if (S_ISREG(e->node.mode) || S_ISDIR(e->node.mode))
		src.fd = open_beneath(o->rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (src.fd < 0 && src.fd != -ELOOP && src.fd != -EXDEV) {
		src.fd = open_beneath(o->rootfd, rel, O_PATH, 0);
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", src.fd);
		src.path = proc;
	}
	if (src.fd < 0 && e->path[0] && (why = walk_gone_why(src.fd))) {
		e->gone = true;
		atomic_fetch_add(&c->gone, 1);
		report_gone(c, e->path, why);
		return 0;
	}
	if (src.fd < 0)
		return hb_err(src.fd, "cannot read xattrs of '%s': %s", rel, strerror(-src.fd));
	r = read_xattrs(&src, rel, e, (size_t)len);
	close(src.fd);
	return r;
}

static char *join_path(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	char *p = malloc(dl + nl + 2);

	if (!p)
		return NULL;
	if (dl) {
		memcpy(p, dir, dl);
		p[dl++] = '/';
	}
	memcpy(p + dl, name, nl + 1);
	return p;
}

static void dir_job(void *arg);

/* A ctime in the clock tick the walk started in (or later) does not prove
 * the inode unchanged: a write right after our statx, in the same tick, may
 * leave the ctime as we saw it, and the next snapshot would reuse what we
 * store now.  Record such a ctime 1 ns earlier, so that the next snapshot
 * finds it different and looks at the inode again (git "smudges" racily
 * clean index entries the same way).  ctime is never restored; only change
 * detection reads it.  A ctime of whole seconds may come from a filesystem
 * that keeps no more (ext4 with small inodes: seconds, FAT: 2 s): there the
 * tick is that long. */
#define WALK_COARSE_FS_TICK_SEC 2

void walk_smudge_racy_ctime(struct manifest_node *n, const struct timespec *started)
{
	if (n->ctime_nsec == 0) {
		if (n->ctime_sec + WALK_COARSE_FS_TICK_SEC <= started->tv_sec)
			return;
	} else if (n->ctime_sec < started->tv_sec ||
		   (n->ctime_sec == started->tv_sec &&
		    n->ctime_nsec < (uint32_t)started->tv_nsec)) {
		return;
	}
	if (n->ctime_nsec > 0) {
		n->ctime_nsec--;
	} else {
		n->ctime_sec--;
		n->ctime_nsec = 999999999u;
	}
}

static struct walk_dir *new_dir(struct walk *c, const char *path)
{
	struct walk_dir *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->c = c;
	d->path = path;
	d->fd = -1;
	pthread_mutex_lock(&c->lock);
	d->next_all = c->all;
	c->all = d;
	pthread_mutex_unlock(&c->lock);
	return d;
}

/* Read the target of symlink name in d (on the heap: a full queue runs a
 * subdirectory's job inline, so this frame may repeat once per level of a
 * deep tree).  @return the length, or -errno. */
static ssize_t read_target(struct walk_dir *d, const char *name, char **out)
{
	char *t = malloc(PATH_MAX), *shrink;
	ssize_t n;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	n = readlinkat(d->fd, name, t, PATH_MAX - 1);
	if (n < 0) {
		n = -errno;
		free(t);
		return n;
	}
	t[n] = '\0';
	shrink = realloc(t, (size_t)n + 1); /* do not keep PATH_MAX per link */
	*out = shrink ? shrink : t;
	return n;
}

/* A symlink whose target cannot be read because it was replaced by
 * something else is looked at again, this many times in all. */
#define WALK_RESTAT_TRIES 3

/* Describe names[k] of directory d into d->kids[k]. */
static int stat_child(struct walk_dir *d, uint32_t k)
{
	struct walk_entry *e = &d->kids[k];
	char *name = d->names[k].name, *target = NULL, *path;
	ssize_t tlen = 0;
	struct statx sx;

	path = join_path(d->path, name);
	if (!path)
		return -ENOMEM;
	for (unsigned tries = 1;; tries++) {
		if (statx(d->fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, WALK_STATX_MASK,
			  &sx) < 0) {
			int r = -errno;

			if (r == -ENOENT) { /* deleted once listed: as if listed later */
				report_gone(d->c, path, walk_gone_why(r));
				free(path);
				return 0;
			}
			free(path);
			return hb_err(r, "cannot stat '%s%s%s': %s", d->path, d->path[0] ? "/" : "",
				      name, strerror(-r));
		}
		if (!S_ISLNK(sx.stx_mode))
			break;
		tlen = read_target(d, name, &target);
		if (tlen >= 0)
			break;
		if ((tlen != -ENOENT && tlen != -EINVAL) || tries == WALK_RESTAT_TRIES) {
			int r = (int)tlen;

			if (r == -ENOENT || r == -EINVAL) {
				report_gone(d->c, path, r == -ENOENT ? walk_gone_why(r)
								     : "kept changing");
				free(path);
				return 0;
			}
			r = hb_err(r, "cannot read symlink '%s': %s", path, strerror(-r));
			free(path);
			return r;
		}
		/* EINVAL: no longer a symlink; ENOENT: maybe replaced */
	}
	if (S_ISSOCK(sx.stx_mode)) { /* sockets cannot be restored meaningfully */
		free(path);
		return 0;
	}
	e->path = path;
	e->name = name;
	d->names[k].name = NULL;
	fill_from_statx(&e->node, &sx);
	walk_smudge_racy_ctime(&e->node, &d->c->started);
	e->st_nlink = sx.stx_nlink;
	e->prev = -1;
	if (target) {
		e->target = target;
		e->node.size = (uint64_t)tlen;
	}
	atomic_fetch_add(&d->c->kept, 1);
	if (S_ISDIR(sx.stx_mode)) {
		d->subs[k] = new_dir(d->c, e->path);
		if (!d->subs[k])
			return -ENOMEM;
		workqueue_submit(d->c->wq, dir_job, d->subs[k]);
	}
	return 0;
}

/* The last slice of a directory to finish closes it. */
static void slice_done(struct walk_dir *d)
{
	if (atomic_fetch_sub(&d->slices_left, 1) != 1)
		return;
	close(d->fd);
	d->fd = -1;
	for (uint32_t k = 0; k < d->n; k++) {
		free(d->names[k].name); /* those left out */
		d->names[k].name = NULL;
	}
}

static void slice_job(void *arg)
{
	struct slice_job *s = arg;
	struct walk_dir *d = s->dir;

	for (uint32_t k = s->from; k < s->to && !atomic_load(&d->c->error); k++) {
		int r = stat_child(d, d->order[k]);

		if (r < 0)
			walk_fail(d->c, r);
	}
	slice_done(d);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dir_name *)a)->name, ((const struct dir_name *)b)->name);
}

static int ino_cmp(const void *a, const void *b, void *arg)
{
	const struct dir_name *names = arg;
	uint64_t x = names[*(const uint32_t *)a].ino, y = names[*(const uint32_t *)b].ino;

	return x < y ? -1 : x > y;
}

/* Read the names of d (open as d->fd), sorted bytewise; excluded ones left
 * out. */
static int list_dir(struct walk_dir *d)
{
	uint32_t cap = 0;
	struct dirent *de;
	DIR *dir;
	int fd, r = 0;

	/* fdopendir takes the descriptor; the slices need their own. */
	fd = dup(d->fd);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -ENOMEM;
	}
	errno = 0;
	while ((de = readdir(dir))) {
		if (name_is_dot_or_dotdot(de->d_name))
			continue;
		if (d->c->excludes && exclude_set_match(d->c->excludes, d->path, de->d_name)) {
			if (d->c->o.excluded)
				__atomic_add_fetch(d->c->o.excluded, 1, __ATOMIC_RELAXED);
			errno = 0; /* readdir's end is told by errno */
			continue;
		}
		if (d->n == cap) {
			uint32_t c2 = cap ? cap * 2 : 16;
			void *p = realloc(d->names, c2 * sizeof(*d->names));

			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			d->names = p;
			cap = c2;
		}
		d->names[d->n].name = strdup(de->d_name);
		d->names[d->n].ino = de->d_ino;
		if (!d->names[d->n].name) {
			r = -ENOMEM;
			goto out;
		}
		d->n++;
		errno = 0;
	}
	if (errno)
		r = hb_err(-errno, "cannot read directory '%s': %s", d->path[0] ? d->path : ".",
			   strerror(errno));
	else if (d->n > 1)
		qsort(d->names, d->n, sizeof(*d->names), name_cmp);
out:
	closedir(dir);
	return r;
}

static int open_dir(struct walk_dir *d)
{
	const char *p = d->path[0] ? d->path : ".";
	int flags = O_RDONLY | O_DIRECTORY;

	/* Listing a directory should not change its atime; O_NOATIME is only
	 * for the owner (or CAP_FOWNER).  Beneath the root: a directory on the
	 * path replaced by a symbolic link since we listed its parent must not
	 * take the walk out of the tree. */
	d->fd = open_beneath(d->c->o.rootfd, p, flags | O_NOATIME, 0);
	if (d->fd == -EPERM)
		d->fd = open_beneath(d->c->o.rootfd, p, flags, 0);
	if (d->fd < 0) {
		int r = d->fd;
		const char *why = d->path[0] ? walk_gone_why(r) : NULL;

		d->fd = -1;
		if (why) { /* gone since its parent was listed: left out */
			d->gone = true;
			report_gone(d->c, d->path, why);
			return 0;
		}
		return hb_err(r, "cannot open directory '%s': %s", p, strerror(-r));
	}
	return 0;
}

/* List d, then stat its entries in slices, the first one here. */
static int start_dir(struct walk_dir *d)
{
	uint32_t nslices;
	int r;

	r = open_dir(d);
	if (r < 0 || d->gone)
		return r;
	r = list_dir(d);
	if (r < 0)
		goto fail;
	if (d->n == 0) {
		close(d->fd);
		d->fd = -1;
		return 0;
	}
	nslices = (d->n + WALK_SLICE_ENTRIES - 1) / WALK_SLICE_ENTRIES;
	d->kids = calloc(d->n, sizeof(*d->kids));
	d->subs = calloc(d->n, sizeof(*d->subs));
	d->order = malloc(d->n * sizeof(*d->order));
	d->slices = calloc(nslices, sizeof(*d->slices));
	if (!d->kids || !d->subs || !d->order || !d->slices) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t k = 0; k < d->n; k++)
		d->order[k] = k;
	if (d->n > 1)
		qsort_r(d->order, d->n, sizeof(*d->order), ino_cmp, d->names);
	atomic_store(&d->slices_left, nslices);
	for (uint32_t s = 0; s < nslices; s++) {
		d->slices[s].dir = d;
		d->slices[s].from = s * WALK_SLICE_ENTRIES;
		d->slices[s].to = s + 1 == nslices ? d->n : (s + 1) * WALK_SLICE_ENTRIES;
	}
	for (uint32_t s = 1; s < nslices; s++)
		workqueue_submit(d->c->wq, slice_job, &d->slices[s]);
	slice_job(&d->slices[0]);
	return 0;
fail:
	close(d->fd);
	d->fd = -1;
	return r;
}

static void dir_job(void *arg)
{
	struct walk_dir *d = arg;
	int r;

	if (atomic_load(&d->c->error))
		return;
	if (d != d->c->top)
		test_hook_wait("HIBERBOX_TEST_WALK_DIR_WAIT");
	r = start_dir(d);
	if (r < 0)
		walk_fail(d->c, r);
}

/* Free a directory's walk and the entries not moved into the result. */
static void dir_free(struct walk_dir *d)
{
	for (uint32_t k = 0; k < d->n; k++) {
		if (d->kids)
			entry_free(&d->kids[k]);
		free(d->names[k].name);
	}
	if (d->fd >= 0)
		close(d->fd);
	free(d->names);
	free(d->order);
	free(d->kids);
	free(d->subs);
	free(d->slices);
	free(d);
}

/* Hard links: group non-directories by (dev, ino); the first in walk order
 * represents the group and carries a regular file's content. */
struct link_key {
	uint64_t dev, ino;
	uint32_t index;
};

static int link_cmp(const void *a, const void *b)
{
	const struct link_key *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static void link_group(struct walk_entry *entries, const struct link_key *keys, size_t n)
{
	const struct walk_entry *rep = &entries[keys[0].index];
	int64_t atime_sec = rep->node.atime_sec;
	uint32_t atime_nsec = rep->node.atime_nsec;

	/* Reading a symlink moves its atime (relatime) and readlink has no
	 * O_NOATIME: a name stat'ed after another name's readlink sees the moved
	 * time.  Each name is stat'ed before its own readlink, so the earliest
	 * atime of the group is the one from before the snapshot touched it. */
	for (size_t k = 1; k < n; k++) {
		const struct walk_entry *e = &entries[keys[k].index];

		if (e->node.atime_sec < atime_sec ||
		    (e->node.atime_sec == atime_sec && e->node.atime_nsec < atime_nsec)) {
			atime_sec = e->node.atime_sec;
			atime_nsec = e->node.atime_nsec;
		}
	}
	for (size_t k = 0; k < n; k++) {
		struct walk_entry *e = &entries[keys[k].index];

		e->node.hardlink = keys[0].index;
		e->node.nlink = (uint32_t)n;
		e->node.atime_sec = atime_sec;
		e->node.atime_nsec = atime_nsec;
		/* All members show the representative's metadata (an inode
		 * changed between two stat calls would not). */
		if (k > 0) {
			e->node.mode = rep->node.mode;
			e->node.size = rep->node.size;
			e->node.rdev = rep->node.rdev;
		}
	}
}

static int group_hardlinks(struct walk_entry *entries, uint32_t count)
{
	struct link_key *keys;
	size_t n = 0;

	for (uint32_t i = 0; i < count; i++)
		if (!S_ISDIR(entries[i].node.mode) && entries[i].st_nlink > 1)
			n++;
	if (n == 0)
		return 0;
	keys = malloc(n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	n = 0;
	for (uint32_t i = 0; i < count; i++)
		if (!S_ISDIR(entries[i].node.mode) && entries[i].st_nlink > 1)
			keys[n++] = (struct link_key){ entries[i].node.src_dev,
						       entries[i].node.src_ino, i };
	qsort(keys, n, sizeof(*keys), link_cmp);
	for (size_t a = 0; a < n;) {
		size_t b = a + 1;

		while (b < n && keys[b].dev == keys[a].dev && keys[b].ino == keys[a].ino)
			b++;
		link_group(entries, keys + a, b - a);
		a = b;
	}
	free(keys);
	return 0;
}

/* Set prev of the n entries at kids (one directory's, sorted) to their
 * namesakes among the children of parent entry pdir: both lists are sorted
 * bytewise, so one merge pass. */
static void match_children(const struct manifest *parent, int64_t pdir, struct walk_entry *kids,
			   uint32_t n)
{
	const struct manifest_node *pd;
	uint32_t j, end;

	if (!parent || pdir < 0)
		return;
	pd = manifest_node(parent, (uint32_t)pdir);
	if (!S_ISDIR(pd->mode))
		return;
	j = pd->first_child;
	end = pd->first_child + pd->nchildren;
	for (uint32_t k = 0; k < n && j < end;) {
		int cmp = strcmp(manifest_name(parent, j), kids[k].name);

		if (cmp == 0)
			kids[k++].prev = j++;
		else if (cmp < 0)
			j++;
		else
			k++;
	}
}

/* Move the walked entries into manifest order: breadth-first, each
 * directory's kept children in name order.  dirs[q] is the walk of the
 * directory at entries[at[q]].  entries[0] is the root, in place. */
static int assemble(struct walk_dir *root, const struct manifest *parent,
		    struct walk_entry *entries, uint32_t cap, uint32_t *n_out)
{
	struct walk_dir **dirs;
	uint32_t *at, ndirs = 1, n = 1;

	dirs = malloc(cap * sizeof(*dirs));
	at = malloc(cap * sizeof(*at));
	if (!dirs || !at) {
		free(dirs);
		free(at);
		return -ENOMEM;
	}
	dirs[0] = root;
	at[0] = 0;
	for (uint32_t q = 0; q < ndirs; q++) {
		struct walk_dir *d = dirs[q];
		uint32_t first = n;

		for (uint32_t k = 0; k < d->n; k++) {
			if (!d->kids[k].name || (d->subs[k] && d->subs[k]->gone))
				continue; /* left out */
			entries[n] = d->kids[k];
			memset(&d->kids[k], 0, sizeof(d->kids[k]));
			entries[n].node.parent = at[q];
			entries[n].node.hardlink = n;
			if (d->subs[k]) {
				dirs[ndirs] = d->subs[k];
				at[ndirs++] = n;
			}
			n++;
		}
		match_children(parent, entries[at[q]].prev, entries + first, n - first);
	}
	free(dirs);
	free(at);
	*n_out = n;
	return 0;
}

/* Directories: nlink counts "." , the entry in the parent, and each
 * subdirectory's "..". */
static void count_dir_links(struct walk_entry *entries, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		if (S_ISDIR(entries[i].node.mode))
			entries[i].node.nlink = 2;
	for (uint32_t i = 1; i < count; i++)
		if (S_ISDIR(entries[i].node.mode))
			entries[entries[i].node.parent].node.nlink++;
}


/* xattrs: from the parent snapshot for inodes untouched since (setting an
 * xattr changes the ctime), else read, in parallel: for a first snapshot
 * that is every entry. */
struct xattr_job {
	struct walk *c;
	struct walk_entry *entries;
	const uint32_t *todo;
	uint32_t from, to;
};

static void xattr_job(void *arg)
{
	struct xattr_job *j = arg;

	for (uint32_t k = j->from; k < j->to && !atomic_load(&j->c->error); k++) {
		int r = entry_xattrs(j->c, &j->entries[j->todo[k]]);

		if (r < 0)
			walk_fail(j->c, r);
	}
}

#define WALK_XATTR_SLICE 64u

static int all_xattrs(struct walk *c, const struct manifest *parent, struct walk_entry *entries,
		      uint32_t count)
{
	struct xattr_job *jobs;
	uint32_t *todo, ntodo = 0, njobs;
	int r = 0;

	todo = malloc(count * sizeof(*todo));
	if (!todo)
		return -ENOMEM;
	for (uint32_t i = 0; i < count && r == 0; i++) {
		if (walk_inode_unchanged(parent, &entries[i]))
			r = copy_parent_xattrs(parent, &entries[i]);
		else
			todo[ntodo++] = i;
	}
	test_hook_wait("HIBERBOX_TEST_WALK_XATTRS_WAIT");
	njobs = (ntodo + WALK_XATTR_SLICE - 1) / WALK_XATTR_SLICE;
	jobs = calloc(njobs ? njobs : 1, sizeof(*jobs));
	if (r == 0 && !jobs)
		r = -ENOMEM;
	for (uint32_t s = 0; r == 0 && s < njobs; s++) {
		jobs[s] = (struct xattr_job){ c, entries, todo, s * WALK_XATTR_SLICE,
					      s + 1 == njobs ? ntodo : (s + 1) * WALK_XATTR_SLICE };
		workqueue_submit(c->wq, xattr_job, &jobs[s]);
	}
	workqueue_wait(c->wq);
	if (r == 0 && atomic_load(&c->error))
		r = hb_err(atomic_load(&c->error), "%s", c->errmsg);
	free(jobs);
	free(todo);
	return r;
}

static unsigned walk_threads(const struct walk_opts *o)
{
	unsigned n = o->threads ? o->threads : WALK_DEFAULT_THREADS;

	return n > WALK_MAX_THREADS ? WALK_MAX_THREADS : n;
}

void walk_cancel(struct walk *c)
{
	if (!c)
		return;
	atomic_store(&c->error, -ECANCELED);
	workqueue_free(c->wq); /* waits: queued jobs see the error and return */
	while (c->all) {
		struct walk_dir *d = c->all;

		c->all = d->next_all;
		dir_free(d);
	}
	entry_free(&c->root);
	exclude_set_free(c->excludes);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int walk_start(const struct walk_opts *o, struct walk **out)
{
	struct walk *c = calloc(1, sizeof(*c));
	struct stat st;
	int r;

	if (!c)
		return -ENOMEM;
	c->o = *o;
	pthread_mutex_init(&c->lock, NULL);
	clock_gettime(CLOCK_REALTIME_COARSE, &c->started);
	if (fstat(o->rootfd, &st) < 0) {
		r = hb_err(-errno, "%s: %s", o->root, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		r = hb_err(-ENOTDIR, "%s is not a directory", o->root);
		goto fail;
	}
	if (o->nexcludes && (r = exclude_set_new(o->excludes, o->nexcludes, &c->excludes)) < 0)
		goto fail;
	c->root.name = strdup("");
	c->root.path = strdup("");
	c->top = new_dir(c, c->root.path);
	c->wq = workqueue_new(walk_threads(o), WALK_MAX_QUEUED);
	if (!c->root.name || !c->root.path || !c->top || !c->wq) {
		r = -ENOMEM;
		goto fail;
	}
	fill_from_stat(&c->root.node, &st);
	walk_smudge_racy_ctime(&c->root.node, &c->started);
	c->root.st_nlink = st.st_nlink;
	workqueue_submit(c->wq, dir_job, c->top);
	*out = c;
	return 0;
fail:
	walk_cancel(c);
	return r;
}

int walk_finish(struct walk *c, const struct manifest *parent, struct walk_entry **entries_out,
		uint32_t *count_out)
{
	struct walk_entry *entries = NULL;
	uint32_t count = 0, cap;
	int r;

	workqueue_wait(c->wq);
	r = atomic_load(&c->error);
	if (r < 0) {
		r = hb_err(r, "%s", c->errmsg);
		goto out;
	}
	cap = atomic_load(&c->kept) + 1;
	if (cap > MANIFEST_MAX_ENTRIES) {
		r = hb_err(-E2BIG, "%s: too many entries for one snapshot", c->o.root);
		goto out;
	}
	entries = calloc(cap, sizeof(*entries));
	if (!entries) {
		r = -ENOMEM;
		goto out;
	}
	entries[0] = c->root;
	memset(&c->root, 0, sizeof(c->root));
	entries[0].prev = parent ? 0 : -1;
	count = 1;
	r = assemble(c->top, parent, entries, cap, &count);
	if (r == 0)
		r = all_xattrs(c, parent, entries, count);
	if (r < 0)
		goto out;
	count_dir_links(entries, count);
	r = group_hardlinks(entries, count);
	if (r == 0 && atomic_load(&c->gone))
		r = walk_drop_gone(entries, &count, NULL);
out:
	walk_cancel(c);
	if (r < 0) {
		walk_free(entries, count);
		return r;
	}
	*entries_out = entries;
	*count_out = count;
	return 0;
}

int walk_drop_gone(struct walk_entry *entries, uint32_t *count, uint32_t *map)
{
	uint32_t *own = NULL, n = 0, old_count = *count;

	if (!map) {
		map = own = malloc(*count * sizeof(*map));
		if (!map)
			return -ENOMEM;
	}
	/* Breadth-first: a parent comes before its children, so one pass
	 * removes whole subtrees, and what stays keeps the manifest's order. */
	for (uint32_t i = 0; i < *count; i++) {
		struct walk_entry *e = &entries[i];

		if (i > 0 && (e->gone || map[e->node.parent] == WALK_DROPPED)) {
			entry_free(e);
			memset(e, 0, sizeof(*e));
			map[i] = WALK_DROPPED;
			continue;
		}
		map[i] = n;
		if (i > 0)
			e->node.parent = map[e->node.parent];
		if (n != i) {
			entries[n] = *e;
			memset(e, 0, sizeof(*e));
		}
		n++;
	}
	/* Hard-link groups by index, not by inode (create may have taken a
	 * representative's metadata from another inode since the walk): the
	 * first member left represents each group.  newrep[h]: the new index
	 * of the representative of the group old entry h represented. */
	uint32_t *newrep = malloc((size_t)old_count * sizeof(*newrep));

	if (!newrep) {
		free(own);
		*count = n;
		return -ENOMEM;
	}
	for (uint32_t h = 0; h < old_count; h++)
		newrep[h] = WALK_DROPPED;
	for (uint32_t k = 0; k < n; k++) {
		struct manifest_node *nd = &entries[k].node;

		if (S_ISDIR(nd->mode)) {
			nd->hardlink = k;
			continue;
		}
		if (newrep[nd->hardlink] == WALK_DROPPED)
			newrep[nd->hardlink] = k;
		nd->hardlink = newrep[nd->hardlink];
		nd->nlink = 0;
	}
	for (uint32_t k = 0; k < n; k++)
		if (!S_ISDIR(entries[k].node.mode))
			entries[entries[k].node.hardlink].node.nlink++;
	for (uint32_t k = 0; k < n; k++)
		if (!S_ISDIR(entries[k].node.mode))
			entries[k].node.nlink = entries[entries[k].node.hardlink].node.nlink;
	free(newrep);
	free(own);
	*count = n;
	count_dir_links(entries, n);
	return 0;
}

int walk_entry_update(struct walk_entry *e, int fd, const struct stat *st,
		      const struct timespec *started)
{
	bool other_inode = (uint64_t)st->st_ino != e->node.src_ino ||
			   (uint64_t)st->st_dev != e->node.src_dev;
	uint32_t parent = e->node.parent, hardlink = e->node.hardlink, nlink = e->node.nlink;
	struct xattr_src src = { fd, NULL };
	ssize_t len;

	fill_from_stat(&e->node, st);
	walk_smudge_racy_ctime(&e->node, started);
	e->node.parent = parent;
	e->node.hardlink = hardlink;
	e->node.nlink = nlink;
	if (!other_inode)
		return 0;
	/* Another file renamed into its place (an editor's or npm's atomic
	 * save): the xattrs the walk read are the old file's. */
	for (uint32_t k = 0; k < e->nxattrs; k++) {
		free(e->xattrs[k].name);
		free(e->xattrs[k].value);
	}
	free(e->xattrs);
	e->xattrs = NULL;
	e->nxattrs = 0;
	len = flistxattr(fd, NULL, 0);
	if (len < 0 && errno != ENOTSUP && errno != ENODATA)
		return hb_err(-errno, "cannot list xattrs of '%s': %s", e->path, strerror(errno));
	return len > 0 ? read_xattrs(&src, e->path, e, (size_t)len) : 0;
}

int walk_tree(const struct walk_opts *o, const struct manifest *parent,
	      struct walk_entry **entries, uint32_t *count)
{
	struct walk *w;
	int r = walk_start(o, &w);

	if (r < 0)
		return r;
	return walk_finish(w, parent, entries, count);
}
