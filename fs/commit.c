/* Commit: turn the live mount into a new snapshot while it stays mounted.
 *
 * Phase 1, under the tree lock: walk the tree breadth-first (the manifest's
 * order, siblings sorted bytewise) and add every entry to a manifest builder.
 * Directories never looked into are copied from the lower manifest entry by
 * entry; unchanged lower files reuse their chunk lists; upper files whose
 * content did not change since the last commit reuse the chunk list recorded
 * then.  Only files with new content are pinned (kept open) for phase 2.
 *
 * Phase 2, without the tree lock (the mount keeps serving): each pinned file
 * is chunked through repo_writer_add_fd while holding its data lock
 * exclusively, so no write() is half in the snapshot: a file being written is
 * captured with each write either wholly in or wholly out.
 *
 * Phase 3: repo_writer_commit (packs, index, manifest, tag), then the new id
 * becomes the parent of the next commit and is recorded in upper/meta.
 *
 * Time: the walk is a memory pass over the entries (milliseconds for 50k),
 * the chunking, which dominates, is proportional to the content changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs-int.h"
#include "util/error.h"
#include "util/fileio.h"

struct walk_item {
	struct node *n;  /* NULL: the lower entry `lower` with no node */
	int64_t lower;
	uint32_t idx;    /* in the new manifest */
};

struct child {
	const char *name;
	struct node *n;
	int64_t lower;
};

struct pending {
	struct node *n;
	uint32_t idx;
	uint8_t *inline_data;
	uint32_t inline_len;
	uint32_t *members; /* other names of the file: their size follows */
	uint32_t nmembers;
	struct manifest_chunk *chunks;
	uint32_t count;
};

struct commit_ctx {
	struct hbfs *fs;
	struct manifest_builder *b;
	uint32_t gen;
	uint32_t *lower_first; /* lower leader -> new index + 1 */
	struct walk_item *queue;
	size_t qlen, qcap, qhead;
	struct pending *pend;
	size_t npend, pcap;
	struct manifest_info info;
};

static int child_cmp(const void *a, const void *b)
{
	return strcmp(((const struct child *)a)->name, ((const struct child *)b)->name);
}

static int queue_push(struct commit_ctx *c, struct walk_item it)
{
	if (c->qlen == c->qcap) {
		size_t cap = c->qcap ? c->qcap * 2 : 256;
		struct walk_item *q = realloc(c->queue, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		c->queue = q;
		c->qcap = cap;
	}
	c->queue[c->qlen++] = it;
	return 0;
}

static int pend_push(struct commit_ctx *c, struct node *n, uint32_t idx)
{
	int r;

	if (c->npend == c->pcap) {
		size_t cap = c->pcap ? c->pcap * 2 : 64;
		struct pending *p = realloc(c->pend, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->pend = p;
		c->pcap = cap;
	}
	r = node_open_pinned(c->fs, n);
	if (r < 0)
		return r;
	n->commit_pend = (uint32_t)c->npend + 1;
	c->pend[c->npend++] = (struct pending){ .n = n, .idx = idx };
	return 0;
}

static void count_entry(struct commit_ctx *c, uint32_t mode, uint64_t size, bool leader,
			const struct manifest_chunk *ch, uint32_t nch)
{
	if (S_ISDIR(mode)) {
		c->info.dirs++;
	} else if (S_ISREG(mode)) {
		c->info.files++;
		if (leader) {
			c->info.bytes += size;
			for (uint32_t k = 0; k < nch; k++)
				if (!oid_is_zero(&ch[k].id))
					c->info.chunks++;
		}
	} else {
		c->info.others++;
	}
}

/* Add a lower entry that has no node: everything comes from the manifest.
 * The members of a hard-link group point at the first one emitted, which
 * carries the content (the lower leader's). */
static int add_lower(struct commit_ctx *c, uint32_t i, uint32_t parent, uint32_t *out_idx)
{
	struct hbfs *fs = c->fs;
	const struct manifest_node *mn = manifest_node(fs->m, i);
	uint32_t leader = mn->hardlink;
	const struct manifest_node *src = manifest_node(fs->m, leader);
	struct manifest_node node = *src;
	uint32_t idx = manifest_builder_count(c->b);
	bool carries = true;
	const void *data = NULL;
	size_t dlen = 0;
	int64_t r;

	node.parent = parent;
	node.hardlink = idx;
	if (S_ISREG(src->mode) && src->nlink > 1) {
		if (c->lower_first[leader]) {
			node.hardlink = c->lower_first[leader] - 1;
			node.flags &= ~MANIFEST_FLAG_INLINE;
			carries = false;
		} else {
			c->lower_first[leader] = idx + 1;
		}
	}
	if (carries && ((src->flags & MANIFEST_FLAG_INLINE) || S_ISLNK(src->mode))) {
		data = manifest_data(fs->m, leader);
		dlen = src->data_len;
	}
	r = manifest_builder_add(c->b, &node, manifest_name(fs->m, i), strlen(manifest_name(fs->m, i)),
				 data, dlen);
	if (r < 0)
		return (int)r;
	if (carries && S_ISREG(src->mode) && !(src->flags & MANIFEST_FLAG_INLINE) && src->nchunks) {
		r = manifest_builder_set_chunks(c->b, idx, manifest_chunks(fs->m, leader),
						src->nchunks);
		if (r < 0)
			return (int)r;
	}
	for (uint32_t k = 0; k < src->nxattrs; k++) {
		struct manifest_xattr x;

		manifest_xattr(fs->m, leader, k, &x);
		r = manifest_builder_add_xattr(c->b, idx, x.name, x.value, x.value_len);
		if (r < 0)
			return (int)r;
	}
	count_entry(c, src->mode, src->size, carries, manifest_chunks(fs->m, leader),
		    carries && !(src->flags & MANIFEST_FLAG_INLINE) ? src->nchunks : 0);
	*out_idx = idx;
	return 0;
}

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

/* Can an upper file unchanged since the last commit reuse the chunk list
 * recorded then?  Not if that commit was removed and garbage-collected
 * meanwhile: the file is then chunked again from the upper data, which is
 * all still here.  1 yes, 0 no, or a negative errno. */
static int committed_still_stored(struct hbfs *fs, struct node *n)
{
	if (n->committed_inline || !n->ncommitted)
		return 1;
	return repo_has_chunks(fs->repo, n->committed, n->ncommitted, NULL);
}

/* Add an entry backed by a node. */
static int add_node(struct commit_ctx *c, struct node *n, const char *name, uint32_t parent,
		    uint32_t *out_idx)
{
	struct hbfs *fs = c->fs;
	struct manifest_node node = { 0 };
	uint32_t idx = manifest_builder_count(c->b);
	bool carries = true;
	const struct manifest_node *mn = n->lower >= 0 ? manifest_node(fs->m, (uint32_t)n->lower)
						       : NULL;
	const void *data = NULL;
	size_t dlen = 0;
	int64_t r;

	node.mode = n->mode;
	node.uid = n->uid;
	node.gid = n->gid;
	node.rdev = (S_ISCHR(n->mode) || S_ISBLK(n->mode)) ? n->rdev : 0;
	node.mtime_sec = n->mtime.tv_sec;
	node.mtime_nsec = (uint32_t)n->mtime.tv_nsec;
	node.atime_sec = n->atime.tv_sec;
	node.atime_nsec = (uint32_t)n->atime.tv_nsec;
	node.ctime_sec = n->ctime.tv_sec;
	node.ctime_nsec = (uint32_t)n->ctime.tv_nsec;
	node.src_ino = n->ino;
	node.parent = parent;
	node.hardlink = idx;
	node.nlink = node_nlink(n);
	if (!S_ISREG(n->mode) && !S_ISDIR(n->mode))
		node.nlink = 1; /* only regular files are linked in a manifest */
	if (S_ISREG(n->mode)) {
		node.size = n->size;
		if (node.nlink > 1 && n->commit_gen == c->gen) {
			node.hardlink = n->commit_idx;
			carries = false;
			if (n->commit_pend) {
				struct pending *p = &c->pend[n->commit_pend - 1];
				uint32_t *m = realloc(p->members, (p->nmembers + 1) * sizeof(*m));

				if (!m)
					return -ENOMEM;
				p->members = m;
				p->members[p->nmembers++] = idx;
			}
		}
		if (carries) {
			n->commit_gen = c->gen;
			n->commit_idx = idx;
			n->commit_pend = 0;
		}
	} else if (S_ISLNK(n->mode)) {
		data = node_symlink(fs, n);
		dlen = strlen(data);
		node.size = dlen;
	}
	if (carries && S_ISREG(n->mode) && !(n->flags & NODE_UPPER_DATA) && mn &&
	    (mn->flags & MANIFEST_FLAG_INLINE)) {
		node.flags |= MANIFEST_FLAG_INLINE;
		data = manifest_data(fs->m, (uint32_t)n->lower);
		dlen = mn->data_len;
	}
	r = manifest_builder_add(c->b, &node, name, strlen(name), data, dlen);
	if (r < 0)
		return (int)r;
	if (carries && S_ISREG(n->mode)) {
		if (!(n->flags & NODE_UPPER_DATA)) {
			if (mn && !(mn->flags & MANIFEST_FLAG_INLINE) && mn->nchunks) {
				r = manifest_builder_set_chunks(c->b, idx,
								manifest_chunks(fs->m, (uint32_t)n->lower),
								mn->nchunks);
				count_entry(c, n->mode, n->size, true,
					    manifest_chunks(fs->m, (uint32_t)n->lower), mn->nchunks);
			} else {
				count_entry(c, n->mode, n->size, true, NULL, 0);
			}
		} else if (!(n->flags & NODE_DATA_DIRTY) && (n->flags & NODE_COMMITTED) &&
			   (r = committed_still_stored(fs, n)) != 0) {
			if (r < 0)
				return (int)r;
			/* Unchanged since the last commit: its content as then. */
			if (n->committed_inline || !n->ncommitted)
				r = manifest_builder_set_inline(c->b, idx, n->committed_inline,
								n->committed_inline_len);
			else
				r = manifest_builder_set_chunks(c->b, idx, n->committed,
								n->ncommitted);
			count_entry(c, n->mode, n->size, true, n->committed, n->ncommitted);
		} else {
			r = pend_push(c, n, idx);
			count_entry(c, n->mode, 0, true, NULL, 0);
		}
		if (r < 0)
			return (int)r;
	} else {
		count_entry(c, n->mode, n->size, carries, NULL, 0);
	}
	if (n->flags & NODE_XATTR_OWN) {
		struct xattr *xs = NULL;

		if (n->nxattrs) {
			xs = malloc(n->nxattrs * sizeof(*xs));
			if (!xs)
				return -ENOMEM;
			memcpy(xs, n->xattrs, n->nxattrs * sizeof(*xs));
			qsort(xs, n->nxattrs, sizeof(*xs), xattr_cmp);
		}
		for (uint32_t k = 0; k < n->nxattrs && r >= 0; k++)
			r = manifest_builder_add_xattr(c->b, idx, xs[k].name, xs[k].value, xs[k].len);
		free(xs);
	} else if (mn) {
		for (uint32_t k = 0; k < mn->nxattrs && r >= 0; k++) {
			struct manifest_xattr x;

			manifest_xattr(fs->m, (uint32_t)n->lower, k, &x);
			r = manifest_builder_add_xattr(c->b, idx, x.name, x.value, x.value_len);
		}
	}
	if (r < 0)
		return (int)r;
	*out_idx = idx;
	return 0;
}

/* The children of a queued directory, sorted by name. */
static int list_children(struct commit_ctx *c, const struct walk_item *it, struct child **out,
			 size_t *count)
{
	struct hbfs *fs = c->fs;
	struct child *ch;
	size_t n = 0;

	if (it->n && (it->n->flags & NODE_DIR_LOADED)) {
		struct dir *d = it->n->dir;

		ch = malloc((d->live ? d->live : 1) * sizeof(*ch));
		if (!ch)
			return -ENOMEM;
		for (uint32_t i = 0; i < d->nents; i++)
			if (d->ents[i].child)
				ch[n++] = (struct child){ d->ents[i].name, d->ents[i].child, -1 };
		qsort(ch, n, sizeof(*ch), child_cmp);
	} else {
		uint32_t li = (uint32_t)(it->n ? it->n->lower : it->lower);
		const struct manifest_node *mn = manifest_node(fs->m, li);

		ch = malloc((mn->nchildren ? mn->nchildren : 1) * sizeof(*ch));
		if (!ch)
			return -ENOMEM;
		/* Already sorted in the manifest. */
		for (uint32_t k = 0; k < mn->nchildren; k++) {
			uint32_t ci = mn->first_child + k;

			ch[n++] = (struct child){ manifest_name(fs->m, ci),
						  fs->by_lower[manifest_node(fs->m, ci)->hardlink],
						  ci };
		}
	}
	*out = ch;
	*count = n;
	return 0;
}

static int walk(struct commit_ctx *c)
{
	struct hbfs *fs = c->fs;
	uint32_t idx;
	int r;

	r = add_node(c, fs->root, "", 0, &idx);
	if (r < 0)
		return r;
	r = queue_push(c, (struct walk_item){ fs->root, 0, idx });
	while (!r && c->qhead < c->qlen) {
		struct walk_item it = c->queue[c->qhead++];
		struct child *ch = NULL;
		size_t n = 0;

		r = list_children(c, &it, &ch, &n);
		for (size_t k = 0; k < n && !r; k++) {
			struct node *cn = ch[k].n;

			if (cn)
				r = add_node(c, cn, ch[k].name, it.idx, &idx);
			else
				r = add_lower(c, (uint32_t)ch[k].lower, it.idx, &idx);
			if (r)
				break;
			if (cn ? cn->dir != NULL : S_ISDIR(manifest_node(fs->m, (uint32_t)ch[k].lower)->mode))
				r = queue_push(c, (struct walk_item){ cn, ch[k].lower, idx });
		}
		free(ch);
	}
	return r;
}

/* Chunk one pinned file: its data lock held exclusively, so no write is
 * half in. */
static int chunk_one(struct commit_ctx *c, struct repo_writer *w, struct pending *p)
{
	struct file_state *f = p->n->fst;
	uint8_t small[MANIFEST_INLINE_WRITE_BYTES + 1];
	uint64_t size = 0;
	ssize_t got;
	int r;

	int fd = upper_open_data(c->fs, p->n, O_RDONLY, 0);

	if (fd < 0)
		return hb_err(fd, "commit: opening the data of inode %llu",
			      (unsigned long long)p->n->ino);
	pthread_rwlock_wrlock(&f->data_lock);
	got = pread(fd, small, sizeof(small), 0);
	if (got < 0) {
		r = hb_err_sys(-errno, "commit: reading inode %llu", (unsigned long long)p->n->ino);
	} else if ((size_t)got <= MANIFEST_INLINE_WRITE_BYTES) {
		r = manifest_builder_set_inline(c->b, p->idx, small, (size_t)got);
		size = (uint64_t)got;
		p->inline_data = malloc(size ? size : 1);
		if (p->inline_data) {
			memcpy(p->inline_data, small, size);
			p->inline_len = (uint32_t)size;
		}
	} else {
		r = repo_writer_add_fd(w, fd, &p->chunks, &p->count, &size);
		if (r >= 0)
			r = manifest_builder_set_chunks(c->b, p->idx, p->chunks, p->count);
	}
	pthread_rwlock_unlock(&f->data_lock);
	close(fd);
	if (r >= 0) {
		manifest_builder_set_size(c->b, p->idx, size);
		for (uint32_t k = 0; k < p->nmembers; k++)
			manifest_builder_set_size(c->b, p->members[k], size);
		c->info.bytes += size;
		for (uint32_t k = 0; k < p->count; k++)
			if (!oid_is_zero(&p->chunks[k].id))
				c->info.chunks++;
	}
	return r;
}

int hbfs_commit_local(struct hbfs *fs, const char *tag, struct oid *out)
{
	struct commit_ctx c = { .fs = fs };
	struct repo_writer *w = NULL;
	struct timespec start, end;
	int r;

	if (tag && (r = repo_tag_valid(tag)) < 0)
		return r;
	clock_gettime(CLOCK_REALTIME, &start);
	pthread_mutex_lock(&fs->commit_lock);
	c.b = manifest_builder_new();
	c.lower_first = calloc(manifest_count(fs->m), sizeof(*c.lower_first));
	if (!c.b || !c.lower_first) {
		r = -ENOMEM;
		goto out;
	}
	r = repo_writer_new(fs->repo, NULL, &w);
	if (r < 0)
		goto out;

	pthread_rwlock_wrlock(&fs->tree_lock);
	c.gen = ++fs->commit_gen;
	r = walk(&c);
	/* Content captured from here on: later writes mark the node dirty again. */
	for (size_t i = 0; i < c.npend; i++)
		c.pend[i].n->flags &= ~NODE_DATA_DIRTY;
	pthread_rwlock_unlock(&fs->tree_lock);
	hbfs_test_pause(fs);
	if (r < 0) {
		hb_err_ctx(r, "commit: building the manifest");
		goto out;
	}

	for (size_t i = 0; i < c.npend && r >= 0; i++)
		r = chunk_one(&c, w, &c.pend[i]);
	if (r < 0)
		goto out;

	{
		/* What this mount read from the repository, for the next wake's
		 * prefetch. */
		struct oid *hot;
		uint32_t nhot;

		r = lower_hot_list(fs, &hot, &nhot);
		if (r >= 0) {
			r = manifest_builder_set_hot(c.b, hot, nhot);
			free(hot);
		}
		if (r < 0)
			goto out;
	}
	c.info.parent = fs->last_id;
	c.info.has_parent = true;
	gethostname(c.info.host, sizeof(c.info.host) - 1);
	snprintf(c.info.origin, sizeof(c.info.origin), "commit");
	clock_gettime(CLOCK_REALTIME, &end);
	c.info.time_sec = start.tv_sec;
	c.info.time_nsec = (uint32_t)start.tv_nsec;
	c.info.duration_ms = (uint64_t)(end.tv_sec - start.tv_sec) * 1000 +
			     (uint64_t)(end.tv_nsec - start.tv_nsec) / 1000000;
	r = repo_writer_commit(w, c.b, &c.info, tag, out);
	w = NULL;
	if (r < 0)
		goto out;
	fs->last_id = *out;
	if (upper_save_last(fs) < 0) {
		/* The snapshot is stored and answered; only the upper's note of
		 * it is not (a full disk, say).  A remount after a crash would
		 * then take the older commit as the next parent: that costs
		 * dedup against it, never data, so the commit stands. */
		char hex[OID_HEX_BYTES];

		oid_format(out, hex);
		fprintf(stderr, "hiberbox-fs: commit %s is stored, but %s\n", hex, hb_errmsg(-EIO));
		hb_err_clear();
	}
	r = 0;
out:
	if (w)
		repo_writer_abort(w);
	pthread_rwlock_wrlock(&fs->tree_lock);
	for (size_t i = 0; i < c.npend; i++) {
		struct pending *p = &c.pend[i];

		if (r >= 0 && (p->chunks || p->inline_data)) {
			free(p->n->committed);
			free(p->n->committed_inline);
			p->n->committed = p->chunks;
			p->n->ncommitted = p->count;
			p->n->committed_inline = p->inline_data;
			p->n->committed_inline_len = p->inline_len;
			p->n->flags |= NODE_COMMITTED;
			p->chunks = NULL;
			p->inline_data = NULL;
		} else if (r < 0) {
			p->n->flags |= NODE_DATA_DIRTY;
		}
		free(p->chunks);
		free(p->inline_data);
		free(p->members);
		p->n->commit_pend = 0;
		node_close(fs, p->n);
	}
	pthread_rwlock_unlock(&fs->tree_lock);
	pthread_mutex_unlock(&fs->commit_lock);
	free(c.pend);
	free(c.queue);
	free(c.lower_first);
	manifest_builder_free(c.b);
	return r;
}
