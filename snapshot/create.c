/* snapshot create: store a directory tree as a new snapshot.
 *
 * Two phases.  The walk reads the tree's metadata breadth-first (the order
 * manifests are stored in), which is quick and gives the total size for
 * progress.  Then the content of every regular file that the parent snapshot
 * does not already describe (same size, mtime, ctime and inode) is read and
 * stored by a pool of file workers feeding one repo_writer.  Any unreadable
 * file fails the whole snapshot: nothing is recorded, so a snapshot is never
 * silently partial.
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
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/repo-int.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

#define XATTR_LIST_MAX_BYTES (64u * 1024)

struct walk_xattr {
	char *name;
	uint8_t *value;
	uint32_t len;
};

struct walk_entry {
	struct manifest_node node;
	char *name;
	char *path;      /* relative to the source root ("" for the root) */
	char *target;    /* symlink target */
	struct walk_xattr *xattrs;
	uint32_t nxattrs;
	int64_t prev;    /* same path in the parent snapshot, or -1 */
	uint64_t st_nlink;
	bool reused;     /* content taken from the parent snapshot */
};

struct create_ctx {
	struct repo *repo;
	int rootfd;
	const char *root;
	struct walk_entry *entries;
	uint32_t count, cap;
	struct manifest *parent;
	struct manifest_builder *builder;
	struct repo_writer *writer;
	struct repo_progress progress;
	uint64_t total_bytes;
	_Atomic uint64_t stored_bytes, stored_chunks; /* chunk refs, holes excluded */
	pthread_mutex_t lock;
	int error;
	char errmsg[1024];
};

static void ctx_fail(struct create_ctx *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!c->error) {
		c->error = r;
		hb_err_save(c->errmsg, sizeof(c->errmsg));
	}
	pthread_mutex_unlock(&c->lock);
}

static struct walk_entry *new_entry(struct create_ctx *c)
{
	if (c->count == c->cap) {
		uint32_t cap = c->cap ? c->cap * 2 : 1024;
		void *p = realloc(c->entries, (size_t)cap * sizeof(*c->entries));

		if (!p)
			return NULL;
		c->entries = p;
		c->cap = cap;
	}
	memset(&c->entries[c->count], 0, sizeof(c->entries[0]));
	c->entries[c->count].prev = -1;
	return &c->entries[c->count++];
}

static void fill_node(struct manifest_node *n, const struct stat *st)
{
	n->mode = st->st_mode;
	n->uid = st->st_uid;
	n->gid = st->st_gid;
	n->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
	n->rdev = (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) ? (uint64_t)st->st_rdev : 0;
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

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct walk_xattr *)a)->name, ((const struct walk_xattr *)b)->name);
}

/* Read the xattrs of path (not following symlinks). */
static int read_xattrs(const char *path, const char *label, struct walk_entry *e)
{
	char *list;
	ssize_t len;
	int r = 0;

	len = llistxattr(path, NULL, 0);
	if (len < 0) {
		if (errno == ENOTSUP || errno == ENODATA)
			return 0;
		return hb_err(-errno, "cannot list xattrs of '%s': %s", label, strerror(errno));
	}
	if (len == 0)
		return 0;
	list = malloc((size_t)len + 1);
	if (!list)
		return -ENOMEM;
	len = llistxattr(path, list, (size_t)len);
	if (len < 0) {
		r = hb_err(-errno, "cannot list xattrs of '%s': %s", label, strerror(errno));
		goto out;
	}
	for (char *name = list; name < list + len; name += strlen(name) + 1) {
		ssize_t vlen = lgetxattr(path, name, NULL, 0);
		struct walk_xattr *x;
		void *p;

		if (vlen < 0) {
			if (errno == ENODATA)
				continue; /* removed meanwhile */
			r = hb_err(-errno, "cannot read xattr %s of '%s': %s", name, label,
				   strerror(errno));
			goto out;
		}
		if ((size_t)vlen > MANIFEST_MAX_XATTR_VALUE) {
			r = hb_err(-E2BIG, "xattr %s of '%s' is too large", name, label);
			goto out;
		}
		p = realloc(e->xattrs, (e->nxattrs + 1) * sizeof(*e->xattrs));
		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		e->xattrs = p;
		x = &e->xattrs[e->nxattrs];
		x->name = strdup(name);
		x->value = malloc((size_t)vlen + 1);
		if (!x->name || !x->value) {
			free(x->name);
			free(x->value);
			r = -ENOMEM;
			goto out;
		}
		vlen = lgetxattr(path, name, x->value, (size_t)vlen);
		if (vlen < 0) {
			free(x->name);
			free(x->value);
			if (errno == ENODATA)
				continue;
			r = hb_err(-errno, "cannot read xattr %s of '%s': %s", name, label,
				   strerror(errno));
			goto out;
		}
		x->len = (uint32_t)vlen;
		e->nxattrs++;
	}
	if (e->nxattrs > 1)
		qsort(e->xattrs, e->nxattrs, sizeof(*e->xattrs), xattr_cmp);
out:
	free(list);
	return r;
}

/* Same inode, not touched since the parent snapshot (ctime covers content,
 * metadata and xattr changes). */
static bool inode_unchanged(const struct create_ctx *c, const struct walk_entry *e)
{
	const struct manifest_node *p;

	if (e->prev < 0)
		return false;
	p = manifest_node(c->parent, (uint32_t)e->prev);
	return p->mode == e->node.mode && p->src_ino == e->node.src_ino &&
	       p->ctime_sec == e->node.ctime_sec && p->ctime_nsec == e->node.ctime_nsec;
}

static int copy_parent_xattrs(const struct create_ctx *c, struct walk_entry *e)
{
	const struct manifest_node *p = manifest_node(c->parent, (uint32_t)e->prev);

	if (p->nxattrs == 0)
		return 0;
	e->xattrs = calloc(p->nxattrs, sizeof(*e->xattrs));
	if (!e->xattrs)
		return -ENOMEM;
	for (uint32_t k = 0; k < p->nxattrs; k++) {
		struct walk_xattr *x = &e->xattrs[k];
		struct manifest_xattr mx;

		manifest_xattr(c->parent, (uint32_t)e->prev, k, &mx);
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

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name)
{
	char *p;

	if (!dir[0])
		return strdup(name);
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Describe one entry found in directory `parent` (an index into entries). */
static int walk_add(struct create_ctx *c, uint32_t parent, const char *name)
{
	struct walk_entry *pe = &c->entries[parent], *e;
	char full[PATH_MAX * 2];
	struct stat st;
	char *path = join_path(pe->path, name);
	int r;

	if (!path)
		return -ENOMEM;
	if (fstatat(c->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		if (r == -ENOENT) { /* deleted while we walked: not part of the snapshot */
			free(path);
			return 0;
		}
		r = hb_err(r, "cannot stat '%s': %s", path, strerror(-r));
		free(path);
		return r;
	}
	if (S_ISSOCK(st.st_mode)) { /* sockets cannot be restored meaningfully */
		free(path);
		return 0;
	}
	e = new_entry(c);
	if (!e) {
		free(path);
		return -ENOMEM;
	}
	pe = &c->entries[parent]; /* new_entry may have moved the array */
	e->path = path;
	e->name = strdup(name);
	if (!e->name)
		return -ENOMEM;
	fill_node(&e->node, &st);
	e->st_nlink = st.st_nlink;
	e->node.parent = parent;
	e->node.hardlink = c->count - 1;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(c->rootfd, path, target, sizeof(target) - 1);

		if (n < 0)
			return hb_err(-errno, "cannot read symlink '%s': %s", path, strerror(errno));
		target[n] = '\0';
		e->target = strdup(target);
		if (!e->target)
			return -ENOMEM;
		e->node.size = (uint64_t)n;
	}
	if (c->parent && pe->prev >= 0) {
		int64_t prev = manifest_lookup_child(c->parent, (uint32_t)pe->prev, name, strlen(name));

		e->prev = prev >= 0 ? prev : -1;
	}
	/* Setting an xattr changes the ctime: an inode whose ctime and number
	 * match the parent snapshot's has the xattrs recorded there. */
	if (inode_unchanged(c, e))
		return copy_parent_xattrs(c, e);
	snprintf(full, sizeof(full), "%s/%s", c->root, path);
	return read_xattrs(full, path, e);
}

static int walk_dir(struct create_ctx *c, uint32_t i)
{
	const char *path = c->entries[i].path;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	fd = openat(c->rootfd, path[0] ? path : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return hb_err(-errno, "cannot open directory '%s': %s", path[0] ? path : ".",
			      strerror(errno));
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' &&
		    (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		if (n == cap) {
			size_t c2 = cap ? cap * 2 : 64;
			void *p = realloc(names, c2 * sizeof(*names));

			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			names = p;
			cap = c2;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			r = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (errno) {
		r = hb_err(-errno, "cannot read directory '%s': %s", path, strerror(errno));
		goto out;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t k = 0; k < n && r == 0; k++)
		r = walk_add(c, i, names[k]);
out:
	for (size_t k = 0; k < n; k++)
		free(names[k]);
	free(names);
	closedir(d);
	return r;
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

static int group_hardlinks(struct create_ctx *c)
{
	struct link_key *keys = NULL;
	size_t n = 0;

	for (uint32_t i = 0; i < c->count; i++)
		if (!S_ISDIR(c->entries[i].node.mode) && c->entries[i].st_nlink > 1)
			n++;
	if (n == 0)
		return 0;
	keys = malloc(n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	n = 0;
	for (uint32_t i = 0; i < c->count; i++)
		if (!S_ISDIR(c->entries[i].node.mode) && c->entries[i].st_nlink > 1)
			keys[n++] = (struct link_key){ c->entries[i].node.src_dev,
						       c->entries[i].node.src_ino, i };
	qsort(keys, n, sizeof(*keys), link_cmp);
	for (size_t a = 0; a < n;) {
		size_t b = a + 1;

		while (b < n && keys[b].dev == keys[a].dev && keys[b].ino == keys[a].ino)
			b++;
		for (size_t k = a; k < b; k++) {
			struct walk_entry *e = &c->entries[keys[k].index];

			e->node.hardlink = keys[a].index;
			e->node.nlink = (uint32_t)(b - a);
			/* All members show the representative's metadata (an
			 * inode changed between two lstat calls would not). */
			if (k > a) {
				struct walk_entry *rep = &c->entries[keys[a].index];

				e->node.mode = rep->node.mode;
				e->node.size = rep->node.size;
				e->node.rdev = rep->node.rdev;
			}
		}
		a = b;
	}
	free(keys);
	return 0;
}

static int walk(struct create_ctx *c)
{
	struct walk_entry *root;
	struct stat st;
	int r;

	if (fstat(c->rootfd, &st) < 0)
		return hb_err(-errno, "%s: %s", c->root, strerror(errno));
	root = new_entry(c);
	if (!root)
		return -ENOMEM;
	root->name = strdup("");
	root->path = strdup("");
	if (!root->name || !root->path)
		return -ENOMEM;
	fill_node(&root->node, &st);
	root->prev = c->parent ? 0 : -1;
	r = read_xattrs(c->root, ".", root);
	if (r < 0)
		return r;
	/* Entries are appended while we scan: breadth-first by construction. */
	for (uint32_t i = 0; i < c->count; i++) {
		if (!S_ISDIR(c->entries[i].node.mode))
			continue;
		r = walk_dir(c, i);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 1; i < c->count; i++)
		if (S_ISDIR(c->entries[i].node.mode))
			c->entries[c->entries[i].node.parent].node.nlink++;
	for (uint32_t i = 0; i < c->count; i++)
		if (S_ISDIR(c->entries[i].node.mode))
			c->entries[i].node.nlink++; /* "." and the entry in its parent */
	return group_hardlinks(c);
}

/* Can entry i take its content from the parent snapshot unread? */
static bool same_as_parent(const struct create_ctx *c, const struct walk_entry *e)
{
	const struct manifest_node *p;

	if (!inode_unchanged(c, e))
		return false;
	p = manifest_node(c->parent, (uint32_t)e->prev);
	return S_ISREG(p->mode) && p->hardlink == (uint32_t)e->prev && p->size == e->node.size &&
	       p->mtime_sec == e->node.mtime_sec && p->mtime_nsec == e->node.mtime_nsec;
}

static int add_to_builder(struct create_ctx *c)
{
	for (uint32_t i = 0; i < c->count; i++) {
		struct walk_entry *e = &c->entries[i];
		int64_t idx;

		idx = manifest_builder_add(c->builder, &e->node, e->name, strlen(e->name), e->target,
					   e->target ? strlen(e->target) : 0);
		if (idx < 0)
			return hb_err_ctx((int)idx, "'%s'", e->path[0] ? e->path : ".");
		for (uint32_t k = 0; k < e->nxattrs; k++) {
			int r = manifest_builder_add_xattr(c->builder, i, e->xattrs[k].name,
							   e->xattrs[k].value, e->xattrs[k].len);
			if (r < 0)
				return hb_err_ctx(r, "'%s'", e->path);
		}
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

static int store_file(struct create_ctx *c, uint32_t i)
{
	struct walk_entry *e = &c->entries[i];
	struct manifest_chunk *chunks = NULL;
	uint32_t count = 0;
	uint64_t size = 0;
	int fd, r;

	fd = openat(c->rootfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return hb_err(-errno, "cannot read '%s': %s", e->path, strerror(errno));
	if (e->node.size <= MANIFEST_INLINE_WRITE_BYTES) {
		uint8_t small[MANIFEST_INLINE_WRITE_BYTES + 1];
		ssize_t n = read_full(fd, small, sizeof(small));

		if (n < 0) {
			r = hb_err((int)n, "cannot read '%s': %s", e->path, strerror((int)-n));
			goto out;
		}
		if ((size_t)n <= MANIFEST_INLINE_WRITE_BYTES) {
			e->node.size = (uint64_t)n;
			manifest_builder_set_size(c->builder, i, (uint64_t)n);
			atomic_fetch_add(&c->stored_bytes, (uint64_t)n);
			r = manifest_builder_set_inline(c->builder, i, small, (size_t)n);
			goto out;
		}
		/* It grew since the walk: store it as chunks after all. */
		if (lseek(fd, 0, SEEK_SET) < 0) {
			r = -errno;
			goto out;
		}
	}
	r = repo_writer_add_fd(c->writer, fd, &chunks, &count, &size);
	if (r < 0) {
		r = hb_err_ctx(r, "'%s'", e->path);
		goto out;
	}
	e->node.size = size;
	manifest_builder_set_size(c->builder, i, size);
	atomic_fetch_add(&c->stored_bytes, size);
	atomic_fetch_add(&c->stored_chunks, count_chunks(chunks, count));
	r = manifest_builder_set_chunks(c->builder, i, chunks, count);
out:
	free(chunks);
	close(fd);
	return r;
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

	atomic_fetch_add(&c->stored_bytes, p->size);
	if (p->flags & MANIFEST_FLAG_INLINE)
		return manifest_builder_set_inline(c->builder, i, manifest_data(c->parent, prev),
						   p->data_len);
	atomic_fetch_add(&c->stored_chunks, count_chunks(manifest_chunks(c->parent, prev),
							 p->nchunks));
	return manifest_builder_set_chunks(c->builder, i, manifest_chunks(c->parent, prev),
					   p->nchunks);
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
		if (same_as_parent(c, e)) {
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
	/* Members of a group take the size their representative was stored with. */
	for (uint32_t i = 0; i < c->count; i++) {
		struct walk_entry *e = &c->entries[i];

		if (S_ISREG(e->node.mode) && e->node.hardlink != i)
			manifest_builder_set_size(c->builder, i, c->entries[e->node.hardlink].node.size);
	}
	return 0;
}

int repo_snapshot_create(struct repo *r, const char *dir, const struct repo_create_opts *opts,
			 struct oid *out, struct manifest_info *info_out)
{
	struct repo_create_opts defaults = { 0 };
	struct create_ctx c = { .repo = r, .rootfd = -1 };
	struct repo_writer_opts wopts = { 0 };
	struct progress_wrap pw = { { 0 }, 0 };
	struct manifest_info info = { 0 };
	struct oid parent_id;
	struct timespec start, end;
	char *root = NULL;
	struct stat st;
	int rc;

	if (!opts)
		opts = &defaults;
	clock_gettime(CLOCK_REALTIME, &start);
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
		rc = repo_read_manifest(r, &parent_id, &c.parent);
		if (rc < 0 && opts->parent)
			goto out;
		if (rc < 0) { /* a removed or broken parent only costs speed */
			hb_err_clear();
			info.has_parent = false;
		} else {
			info.parent = parent_id;
		}
	}
	rc = walk(&c);
	if (rc < 0)
		goto out;
	c.builder = manifest_builder_new();
	if (!c.builder) {
		rc = -ENOMEM;
		goto out;
	}
	rc = add_to_builder(&c);
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
		if (S_ISREG(n->mode) && n->hardlink == i)
			c.total_bytes += n->size;
	}
	info.bytes = c.total_bytes;
	pw.total = c.total_bytes;
	rc = store_contents(&c, opts->threads);
	if (rc < 0)
		goto out;
	clock_gettime(CLOCK_REALTIME, &end);
	info.time_sec = start.tv_sec;
	info.time_nsec = (uint32_t)start.tv_nsec;
	info.duration_ms = (uint64_t)(end.tv_sec - start.tv_sec) * 1000 +
			   (uint64_t)((end.tv_nsec - start.tv_nsec) / 1000000);
	/* As stored: files may have changed size since the walk. */
	info.bytes = atomic_load(&c.stored_bytes);
	info.chunks = atomic_load(&c.stored_chunks);
	rc = repo_writer_commit(c.writer, c.builder, &info, opts->tag, out);
	c.writer = NULL;
	if (rc == 0 && info_out)
		*info_out = info;
out:
	repo_writer_abort(c.writer);
	manifest_builder_free(c.builder);
	manifest_free(c.parent);
	for (uint32_t i = 0; i < c.count; i++) {
		struct walk_entry *e = &c.entries[i];

		free(e->name);
		free(e->path);
		free(e->target);
		for (uint32_t k = 0; k < e->nxattrs; k++) {
			free(e->xattrs[k].name);
			free(e->xattrs[k].value);
		}
		free(e->xattrs);
	}
	free(c.entries);
	if (c.rootfd >= 0)
		close(c.rootfd);
	free(root);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
