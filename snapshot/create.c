/* snapshot create: store a directory tree as a new snapshot.
 *
 * Two phases.  The walk (walk.c) reads the tree's metadata with many threads
 * and hands it over breadth-first (the order manifests are stored in); it
 * starts before the repository lock and the parent snapshot are loaded, which
 * it needs only at the end.  Then the content of every regular file that the
 * parent snapshot does not already describe (same size, mtime, ctime and
 * inode) is read and stored by a pool of file workers feeding one
 * repo_writer; the manifest is built once every file has been read.
 *
 * The tree may be live (a build or a package install running in it).  An
 * entry that vanished after it was listed, or was replaced by another kind
 * of entry, is left out with a warning: the snapshot then shows a state in
 * which it is gone, which is consistent.  A file is checked with fstat
 * before and after it is read; if it changed meanwhile its content may be
 * torn (part old, part new), so it is read again, up to CREATE_READ_TRIES
 * times, then stored as last read with a warning.  The metadata recorded is
 * the one seen just before the content was read, so a file that changed
 * during or after its read never looks unchanged to the next snapshot.
 * Any unreadable file (EACCES, EIO) still fails the whole snapshot: nothing
 * is recorded, so a snapshot is never silently partial.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/beneath.h"
#include "snapshot/repo-int.h"
#include "snapshot/testhook.h"
#include "snapshot/walk.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

#define CREATE_READ_TRIES 3

/* A regular file's content as read (or taken from the parent), kept until
 * the manifest is built. */
struct content {
	const struct manifest_chunk *chunks; /* the parent's, or owned */
	struct manifest_chunk *owned;
	uint32_t count;
	uint8_t *data; /* inline content */
	uint32_t len;
	bool is_inline;
};

struct create_ctx {
	const struct repo_create_opts *opts;
	struct timespec started; /* CLOCK_REALTIME_COARSE, before the walk */
	struct content *content; /* per entry */
	struct repo *repo;
	int rootfd;
	const char *root;
	struct walk_entry *entries;
	uint32_t count;
	struct manifest *parent;
	struct manifest_builder *builder;
	struct repo_writer *writer;
	struct repo_progress progress;
	uint64_t total_bytes;
	pthread_mutex_t lock;
	int error;
	char errmsg[1024];
};

static void content_free(struct content *k)
{
	free(k->owned);
	free(k->data);
	memset(k, 0, sizeof(*k));
}

/* k holds a copy of len bytes as inline content. */
static int content_set_inline(struct content *k, const void *data, uint32_t len)
{
	k->is_inline = true;
	k->len = len;
	k->data = len ? malloc(len) : NULL;
	if (len && !k->data)
		return -ENOMEM;
	if (len)
		memcpy(k->data, data, len);
	return 0;
}

static void create_warn(struct create_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void create_warn(struct create_ctx *c, const char *fmt, ...)
{
	char line[PATH_MAX + 256];
	va_list ap;

	if (!c->opts->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->lock);
	c->opts->warn(c->opts->warn_arg, line);
	pthread_mutex_unlock(&c->lock);
}

static void warn_gone(struct create_ctx *c, const char *path, const char *why)
{
	create_warn(c, "'%s' %s during the snapshot; left out", path, why);
}

static void walk_gone(void *arg, const char *path, const char *why)
{
	warn_gone(arg, path, why);
}

static void ctx_fail(struct create_ctx *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!c->error) {
		c->error = r;
		hb_err_save(c->errmsg, sizeof(c->errmsg));
	}
	pthread_mutex_unlock(&c->lock);
}

/* Can entry i take its content from the parent snapshot unread? */
static bool same_as_parent(const struct create_ctx *c, const struct walk_entry *e)
{
	const struct manifest_node *p;

	if (!walk_inode_unchanged(c->parent, e))
		return false;
	p = manifest_node(c->parent, (uint32_t)e->prev);
	return S_ISREG(p->mode) && p->hardlink == (uint32_t)e->prev && p->size == e->node.size &&
	       p->mtime_sec == e->node.mtime_sec && p->mtime_nsec == e->node.mtime_nsec;
}

/* Is the parent's record of e's content still in the repository?  Not if an
 * index file was lost: the file is then read and stored again, so the new
 * snapshot is whole whatever happened to the parent's data. */
static bool parent_data_stored(const struct create_ctx *c, const struct walk_entry *e)
{
	const struct manifest_node *p = manifest_node(c->parent, (uint32_t)e->prev);

	if (p->flags & MANIFEST_FLAG_INLINE)
		return true;
	if (repo_has_chunks(c->repo, manifest_chunks(c->parent, (uint32_t)e->prev), p->nchunks,
			    NULL) == 1)
		return true;
	hb_err_clear();
	return false;
}

/* Entries, then the content of each file; members of a hard-link group
 * take the size their representative was stored with. */
static int add_to_builder(struct create_ctx *c)
{
	for (uint32_t i = 0; i < c->count; i++) {
		struct walk_entry *e = &c->entries[i];
		const struct content *k = &c->content[i];
		int64_t idx;
		int r = 0;

		if (S_ISREG(e->node.mode) && e->node.hardlink != i)
			e->node.size = c->entries[e->node.hardlink].node.size;
		idx = manifest_builder_add(c->builder, &e->node, e->name, strlen(e->name), e->target,
					   e->target ? strlen(e->target) : 0);
		if (idx < 0)
			return hb_err_ctx((int)idx, "'%s'", e->path[0] ? e->path : ".");
		for (uint32_t x = 0; x < e->nxattrs && r == 0; x++)
			r = manifest_builder_add_xattr(c->builder, i, e->xattrs[x].name,
						       e->xattrs[x].value, e->xattrs[x].len);
		if (r == 0 && S_ISREG(e->node.mode) && e->node.hardlink == i)
			r = k->is_inline ? manifest_builder_set_inline(c->builder, i, k->data, k->len)
					 : manifest_builder_set_chunks(c->builder, i, k->chunks, k->count);
		if (r < 0)
			return hb_err_ctx(r, "'%s'", e->path);
	}
	return 0;
}

struct file_job {
	struct create_ctx *c;
	uint32_t index;
};

static uint64_t count_chunks(const struct manifest_chunk *chunks, uint32_t count)
{
	uint64_t n = 0;

	for (uint32_t k = 0; k < count; k++)
		n += !oid_is_zero(&chunks[k].id);
	return n;
}

static const char *kind_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR: return "a directory";
	case S_IFLNK: return "a symbolic link";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "something else";
	}
}

/* Open a regular file the walk found, for reading, and fstat it into st.
 * The tree may have changed since: a directory on the path replaced by a
 * symbolic link must not lead the read out of the tree (a file from
 * elsewhere in the snapshot), and a FIFO in the file's place must not block
 * the snapshot for ever (hence O_NONBLOCK until it is known to be a file).
 * @return an fd; or a negative errno, either with *gone set to what
 * happened to the file (it is no longer there as the walk saw it) or with
 * a message. */
static int open_source_file(struct create_ctx *c, const char *path, struct stat *st,
			    const char **gone)
{
	/* Reading for a snapshot should not change the source's atimes (which
	 * the next snapshot records); O_NOATIME is only for the owner. */
	int flags = O_RDONLY | O_NOCTTY | O_NONBLOCK;
	int fd = open_beneath(c->rootfd, path, flags | O_NOATIME, 0), r = 0;
	static __thread char why[64];

	*gone = NULL;
	if (fd == -EPERM)
		fd = open_beneath(c->rootfd, path, flags, 0);
	if (fd < 0 && (*gone = walk_gone_why(fd)))
		return fd;
	if (fd < 0)
		return hb_err(fd, "cannot read '%s': %s", path, strerror(-fd));
	if (fstat(fd, st) < 0) {
		r = hb_err(-errno, "cannot read '%s': %s", path, strerror(errno));
	} else if (!S_ISREG(st->st_mode)) {
		snprintf(why, sizeof(why), "was replaced by %s", kind_name(st->st_mode));
		*gone = why;
		r = -ENOENT;
	} else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		r = hb_err(-errno, "cannot read '%s': %s", path, strerror(errno));
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* What happened to directory d if it is no longer there as listed, or NULL. */
static const char *dir_gone_why(struct create_ctx *c, uint32_t d)
{
	int fd = open_beneath(c->rootfd, c->entries[d].path, O_PATH | O_DIRECTORY, 0);

	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	return walk_gone_why(fd);
}

/* File j is gone (why).  If directories above it are gone too (a tree
 * removed or moved away: a build's or npm's staging directory), the
 * topmost of them is left out with all below it, and told once, not once
 * per file. */
static void file_gone(struct create_ctx *c, uint32_t j, const char *why)
{
	uint32_t top = j;
	bool first;

	for (uint32_t d = c->entries[j].node.parent; d != 0; d = c->entries[d].node.parent) {
		const char *w = dir_gone_why(c, d);

		if (!w)
			break;
		top = d;
		why = w;
	}
	pthread_mutex_lock(&c->lock);
	first = !c->entries[top].gone;
	c->entries[top].gone = true;
	c->entries[j].gone = true;
	pthread_mutex_unlock(&c->lock);
	if (first)
		warn_gone(c, c->entries[top].path, why);
}

/* The names of hard-link group i, i first: j from i on, next_member(c, i, j)
 * after each. */
static uint32_t next_member(const struct create_ctx *c, uint32_t i, uint32_t j)
{
	if (c->entries[i].node.nlink <= 1)
		return c->count; /* no other names */
	for (j++; j < c->count; j++)
		if (S_ISREG(c->entries[j].node.mode) && c->entries[j].node.hardlink == i)
			return j;
	return c->count;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* Open the content of file i, a hard-link group's representative, fstat'ed
 * into st.  The group is read once, through one name, and all its names get
 * that content: the name must still hold the inode the walk saw.  A name
 * since replaced by another file (an atomic save) is passed over for the
 * next; the group, that name too, is then stored as the walk saw it, which
 * is a state the tree was in.  If no name holds that inode any more, the
 * file now at the names is taken (as for a single file replaced, the
 * caller records its metadata) if they all hold the same one, most often
 * because only one name is left; else every name is left out.  Names gone
 * are marked so.  @return an fd, -ENOENT if the group is left out, or another
 * negative errno with a message. */
static int open_group(struct create_ctx *c, uint32_t i, struct stat *st)
{
	const struct manifest_node *walked = &c->entries[i].node;
	struct stat other;
	int other_fd = -1;
	bool mixed = false;

	for (uint32_t j = i; j < c->count; j = next_member(c, i, j)) {
		const char *why;
		int fd = open_source_file(c, c->entries[j].path, st, &why);

		if (fd < 0 && !why) {
			if (other_fd >= 0)
				close(other_fd);
			return fd;
		}
		if (fd < 0) {
			file_gone(c, j, why);
			continue;
		}
		if ((uint64_t)st->st_ino == walked->src_ino &&
		    (uint64_t)st->st_dev == walked->src_dev) {
			if (other_fd >= 0)
				close(other_fd);
			return fd;
		}
		if (other_fd < 0) {
			other_fd = fd;
			other = *st;
			continue;
		}
		mixed |= !same_inode(&other, st);
		close(fd);
	}
	if (other_fd >= 0 && !mixed) {
		*st = other;
		return other_fd;
	}
	if (other_fd >= 0) {
		close(other_fd);
		for (uint32_t j = i; j < c->count; j = next_member(c, i, j))
			if (!c->entries[j].gone)
				file_gone(c, j, "was replaced by another file");
	}
	return -ENOENT;
}

/* Did the walk see the inode as st shows it now? */
static bool walk_saw(const struct walk_entry *e, const struct stat *st)
{
	const struct manifest_node *n = &e->node;

	return n->src_ino == (uint64_t)st->st_ino && n->src_dev == (uint64_t)st->st_dev &&
	       n->mode == st->st_mode && n->uid == st->st_uid && n->gid == st->st_gid &&
	       n->size == (uint64_t)st->st_size && n->mtime_sec == st->st_mtim.tv_sec &&
	       n->mtime_nsec == (uint32_t)st->st_mtim.tv_nsec &&
	       n->ctime_sec == st->st_ctim.tv_sec && n->ctime_nsec == (uint32_t)st->st_ctim.tv_nsec;
}

static bool stat_same(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Read the content of the open file e into k (and its size into e). */
static int read_content(struct create_ctx *c, struct walk_entry *e, int fd, struct content *k)
{
	uint64_t size = 0;
	int r;

	if (e->node.size <= MANIFEST_INLINE_WRITE_BYTES) {
		uint8_t small[MANIFEST_INLINE_WRITE_BYTES + 1];
		ssize_t n = read_full(fd, small, sizeof(small));

		if (n < 0)
			return hb_err((int)n, "cannot read '%s': %s", e->path, strerror((int)-n));
		if ((size_t)n <= MANIFEST_INLINE_WRITE_BYTES) {
			e->node.size = (uint64_t)n;
			return content_set_inline(k, small, (uint32_t)n);
		}
		/* It grew since the walk: store it as chunks after all. */
		if (lseek(fd, 0, SEEK_SET) < 0)
			return hb_err(-errno, "cannot read '%s': %s", e->path, strerror(errno));
	}
	r = repo_writer_add_fd(c->writer, fd, &k->owned, &k->count, &size);
	if (r < 0)
		return hb_err_ctx(r, "'%s'", e->path);
	k->chunks = k->owned;
	e->node.size = size;
	return 0;
}

static int store_file(struct create_ctx *c, uint32_t i)
{
	struct walk_entry *e = &c->entries[i];
	struct content *k = &c->content[i];
	struct stat before, after;

	for (unsigned tries = 1;; tries++) {
		int fd = open_group(c, i, &before), r = 0;

		if (fd == -ENOENT)
			return 0; /* every name gone: left out */
		if (fd < 0)
			return fd;
		/* Changed since the walk: what is recorded is what is read. */
		if (!walk_saw(e, &before))
			r = walk_entry_update(e, fd, &before, &c->started);
		if (r == 0)
			r = read_content(c, e, fd, k);
		if (r == 0 && fstat(fd, &after) < 0)
			r = hb_err(-errno, "cannot read '%s': %s", e->path, strerror(errno));
		close(fd);
		if (r < 0) {
			content_free(k);
			return r;
		}
		if (stat_same(&before, &after))
			break;
		if (tries == CREATE_READ_TRIES) {
			create_warn(c, "'%s' changed while it was read, %u times; stored as last read",
				    e->path, tries);
			break;
		}
		content_free(k); /* its chunks are garbage for gc */
	}
	return 0;
}

static void file_job_run(void *arg)
{
	struct file_job *j = arg;
	int r;

	if (j->c->error)
		return; /* the snapshot fails anyway: stop reading */
	r = store_file(j->c, j->index);
	if (r < 0)
		ctx_fail(j->c, r);
}

static int reuse_from_parent(struct create_ctx *c, uint32_t i)
{
	uint32_t prev = (uint32_t)c->entries[i].prev;
	const struct manifest_node *p = manifest_node(c->parent, prev);
	struct content *k = &c->content[i];

	if (p->flags & MANIFEST_FLAG_INLINE)
		return content_set_inline(k, manifest_data(c->parent, prev), p->data_len);
	k->chunks = manifest_chunks(c->parent, prev);
	k->count = p->nchunks;
	return 0;
}

/* repo_read_manifest, but keeping the parent's body: an unchanged tree gives
 * the same body, which is then stored without compressing it again. */
static int read_parent(struct repo *r, const struct oid *id, struct manifest **out)
{
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES];
	struct buf b = { .max = REPO_MANIFEST_MAX_BYTES };
	struct oid actual;
	int rc;

	repo_snapshot_name(id, name);
	rc = store_get(r->store, name, 0, STORE_GET_ALL, &b);
	if (rc == -ENOENT)
		rc = hb_err(rc, "snapshot %s does not exist", oid_format(id, hex));
	if (rc < 0)
		goto out;
	oid_compute(&r->key, b.data, b.len, &actual);
	if (!oid_equal(&actual, id)) {
		rc = hb_err(-EBADMSG, "snapshot %s: manifest content does not match its id",
			    oid_format(id, hex));
		goto out;
	}
	rc = manifest_decode_reusable(b.data, b.len, out);
	if (rc < 0)
		rc = hb_err_ctx(rc, "snapshot %s", oid_format(id, hex));
out:
	buf_free(&b);
	return rc;
}

struct progress_wrap {
	struct repo_progress user;
	uint64_t total;
};

static void progress_wrap_update(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	struct progress_wrap *w = arg;

	w->user.update(w->user.arg, phase, done, w->total);
}

static int store_contents(struct create_ctx *c, unsigned threads)
{
	struct workqueue *files;
	struct file_job *jobs;
	uint32_t njobs = 0;
	int r = 0;

	jobs = calloc(c->count, sizeof(*jobs));
	files = workqueue_new(threads, 0);
	if (!jobs || !files) {
		free(jobs);
		workqueue_free(files);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < c->count && r == 0; i++) {
		struct walk_entry *e = &c->entries[i];

		if (!S_ISREG(e->node.mode) || e->node.hardlink != i)
			continue;
		if (same_as_parent(c, e) && parent_data_stored(c, e)) {
			e->reused = true;
			r = reuse_from_parent(c, i);
			continue;
		}
		jobs[njobs] = (struct file_job){ c, i };
		workqueue_submit(files, file_job_run, &jobs[njobs]);
		njobs++;
	}
	workqueue_free(files);
	free(jobs);
	if (r < 0)
		return r;
	if (c->error)
		return hb_err(c->error, "%s", c->errmsg);
	return 0;
}

/* m, a name of the group rep represented, represents it from now on, rep
 * being gone.  The content was read for rep, whose metadata and xattrs
 * were then taken from the file read if it had changed since the walk (or
 * was another file): m takes them along, or it would show that content
 * with the metadata the walk saw. */
static void take_group(struct walk_entry *m, struct walk_entry *rep)
{
	uint32_t parent = m->node.parent;
	struct walk_xattr *xattrs = m->xattrs;
	uint32_t nxattrs = m->nxattrs;

	m->node = rep->node;
	m->node.parent = parent;
	m->xattrs = rep->xattrs;
	m->nxattrs = rep->nxattrs;
	rep->xattrs = xattrs;
	rep->nxattrs = nxattrs;
	m->reused = rep->reused;
}

/* Leave out the files found gone.  A group whose first name went but not
 * every name keeps its content, on the next name left (which represents it
 * from now on). */
static int drop_gone(struct create_ctx *c)
{
	uint32_t *map, n = c->count;
	bool any = false;
	int r;

	for (uint32_t i = 0; i < c->count; i++) {
		struct walk_entry *e = &c->entries[i];

		if (i > 0 && c->entries[e->node.parent].gone)
			e->gone = true; /* below a directory gone (parents come first) */
		if (!e->gone)
			continue;
		any = true;
		if (!S_ISREG(e->node.mode) || e->node.hardlink != i || e->node.nlink <= 1)
			continue;
		for (uint32_t j = i + 1; j < c->count; j++) {
			struct walk_entry *m = &c->entries[j];

			if (S_ISREG(m->node.mode) && m->node.hardlink == i && !m->gone) {
				take_group(m, e);
				c->content[j] = c->content[i];
				memset(&c->content[i], 0, sizeof(c->content[i]));
				break;
			}
		}
	}
	if (!any)
		return 0;
	map = malloc(c->count * sizeof(*map));
	if (!map)
		return -ENOMEM;
	r = walk_drop_gone(c->entries, &n, map);
	for (uint32_t i = 0; r == 0 && i < c->count; i++) {
		if (map[i] == WALK_DROPPED) {
			content_free(&c->content[i]);
		} else if (map[i] != i) {
			c->content[map[i]] = c->content[i];
			memset(&c->content[i], 0, sizeof(c->content[i]));
		}
	}
	free(map);
	c->count = n;
	return r;
}

int repo_snapshot_create(struct repo *r, const char *dir, const struct repo_create_opts *opts,
			 struct oid *out, struct manifest_info *info_out)
{
	struct repo_create_opts defaults = { 0 };
	struct create_ctx c = { .repo = r, .rootfd = -1, .opts = opts ? opts : &defaults };
	struct repo_writer_opts wopts = { 0 };
	struct progress_wrap pw = { { 0 }, 0 };
	struct manifest_info info = { 0 };
	struct oid parent_id;
	struct timespec start, end;
	struct walk *walk = NULL;
	char *root = NULL;
	struct stat st;
	int rc;

	if (!opts)
		opts = &defaults;
	if (opts->excluded)
		*opts->excluded = 0;
	clock_gettime(CLOCK_REALTIME, &start);
	clock_gettime(CLOCK_REALTIME_COARSE, &c.started);
	pthread_mutex_init(&c.lock, NULL);
	if (stat(dir, &st) < 0) {
		rc = hb_err(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = hb_err(-ENOTDIR, "%s is not a directory", dir);
		goto out;
	}
	root = realpath(dir, NULL);
	if (!root) {
		rc = hb_err(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	c.root = root;
	c.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0) {
		rc = hb_err(-errno, "cannot open %s: %s", root, strerror(errno));
		goto out;
	}
	if (opts->tag && (rc = repo_tag_valid(opts->tag)) < 0)
		goto out;
	gethostname(info.host, sizeof(info.host) - 1);
	snprintf(info.source, sizeof(info.source), "%s", root);
	snprintf(info.origin, sizeof(info.origin), "create");
	/* The walk reads only the source tree: it runs while we take the lock
	 * and load the parent (and, cold, those wait for the disk too). */
	rc = walk_start(&(struct walk_opts){ .rootfd = c.rootfd, .root = root,
					     .excludes = opts->excludes,
					     .nexcludes = opts->nexcludes,
					     .excluded = opts->excluded,
					     .gone = walk_gone, .gone_arg = &c },
			&walk);
	if (rc < 0)
		goto out;

	/* The writer holds the repository's shared lock: take it before reading
	 * the parent, so that gc cannot free chunks we are about to reuse. */
	wopts.zstd_level = opts->zstd_level;
	wopts.threads = opts->threads;
	if (opts->progress.update) {
		pw = (struct progress_wrap){ opts->progress, 0 };
		wopts.progress = (struct repo_progress){ progress_wrap_update, &pw };
	}
	rc = repo_writer_new(r, &wopts, &c.writer);
	if (rc < 0)
		goto out;

	/* The parent: given, or the last snapshot of this directory. */
	if (opts->parent) {
		parent_id = *opts->parent;
		info.has_parent = true;
	} else if (!opts->no_parent &&
		   repo_source_ref_get(r, info.host, info.source, &parent_id) == 0) {
		info.has_parent = true;
	}
	if (info.has_parent) {
		rc = read_parent(r, &parent_id, &c.parent);
		if (rc < 0 && opts->parent)
			goto out;
		if (rc < 0) { /* a removed or broken parent only costs speed */
			hb_err_clear();
			info.has_parent = false;
		} else {
			info.parent = parent_id;
		}
	}
	rc = walk_finish(walk, c.parent, &c.entries, &c.count);
	walk = NULL;
	if (rc < 0)
		goto out;
	c.content = calloc(c.count, sizeof(*c.content));
	if (!c.content) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < c.count; i++) {
		const struct manifest_node *n = &c.entries[i].node;

		if (S_ISREG(n->mode) && n->hardlink == i)
			c.total_bytes += n->size;
	}
	pw.total = c.total_bytes;
	test_hook_wait("HIBERBOX_TEST_CREATE_READ_WAIT");
	rc = store_contents(&c, opts->threads);
	if (rc == 0)
		rc = drop_gone(&c);
	if (rc < 0)
		goto out;
	for (uint32_t i = 0; i < c.count; i++) {
		const struct manifest_node *n = &c.entries[i].node;

		if (S_ISDIR(n->mode))
			info.dirs++;
		else if (S_ISREG(n->mode))
			info.files++;
		else
			info.others++;
	}
	c.builder = manifest_builder_new();
	if (!c.builder) {
		rc = -ENOMEM;
		goto out;
	}
	if (c.parent)
		manifest_builder_set_base(c.builder, c.parent);
	rc = add_to_builder(&c);
	if (rc < 0)
		goto out;
	clock_gettime(CLOCK_REALTIME, &end);
	info.time_sec = start.tv_sec;
	info.time_nsec = (uint32_t)start.tv_nsec;
	info.duration_ms = (uint64_t)(end.tv_sec - start.tv_sec) * 1000 +
			   (uint64_t)((end.tv_nsec - start.tv_nsec) / 1000000);
	/* As stored (files may have changed size since the walk), of what
	 * is left. */
	for (uint32_t i = 0; i < c.count; i++) {
		const struct walk_entry *e = &c.entries[i];

		if (!S_ISREG(e->node.mode) || e->node.hardlink != i)
			continue;
		info.bytes += e->node.size;
		if (!c.content[i].is_inline)
			info.chunks += count_chunks(c.content[i].chunks, c.content[i].count);
	}
	rc = repo_writer_commit(c.writer, c.builder, &info, opts->tag, out);
	c.writer = NULL;
	if (rc == 0 && info_out)
		*info_out = info;
out:
	walk_cancel(walk);
	repo_writer_abort(c.writer);
	manifest_builder_free(c.builder);
	for (uint32_t i = 0; c.content && i < c.count; i++)
		content_free(&c.content[i]);
	free(c.content);
	manifest_free(c.parent);
	walk_free(c.entries, c.count);
	if (c.rootfd >= 0)
		close(c.rootfd);
	free(root);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
