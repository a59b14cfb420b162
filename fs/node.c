/* The inode table of a mount: nodes created lazily from the lower manifest or
 * on the mount, found by inode number (hash) or by lower index (array), and
 * directories as entry arrays with a hash index by name (see struct dir).
 *
 * Everything here runs with fs->tree_lock held (shared for lookups that do not
 * create nodes is not enough: dir_load and node_lower create, so callers hold
 * it exclusively when a directory may not be loaded yet).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "fs/fs-int.h"
#include "util/error.h"

#define DIR_INDEX_HOLE UINT32_MAX

/* A stored id past the shifted range would land on an arbitrary host id,
 * maybe inside this or another sandbox's range; it shows as the overflow id
 * instead, which no sandbox owns (the stored value is kept unless chowned). */
uint32_t id_to_host(const struct hbfs *fs, uint32_t id)
{
	if (!fs->opts.uid_shift)
		return id;
	if (id < HBFS_UID_SHIFT_RANGE)
		return id + fs->opts.uid_shift;
	return 65534;
}

uint32_t id_from_host(const struct hbfs *fs, uint32_t id)
{
	uint32_t shift = fs->opts.uid_shift;

	if (!shift)
		return id;
	if (id >= shift && id - shift < HBFS_UID_SHIFT_RANGE)
		return id - shift;
	return 65534; /* the overflow id: outside the range a sandbox can own */
}

static uint32_t le32_at(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static void le32_put(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

void xattr_shift_ids(const struct hbfs *fs, const char *name, uint8_t *value, size_t len,
		     bool to_host)
{
	uint32_t (*map)(const struct hbfs *, uint32_t) = to_host ? id_to_host : id_from_host;
	const size_t head = sizeof(struct posix_acl_xattr_header);
	const size_t ent = sizeof(struct posix_acl_xattr_entry);

	if (!fs->opts.uid_shift)
		return;
	if ((!strcmp(name, "system.posix_acl_access") ||
	     !strcmp(name, "system.posix_acl_default")) &&
	    len >= head && (len - head) % ent == 0 &&
	    le32_at(value) == POSIX_ACL_XATTR_VERSION) {
		for (size_t off = head; off < len; off += ent) {
			uint16_t tag = (uint16_t)(value[off] | value[off + 1] << 8);

			if (tag == ACL_USER || tag == ACL_GROUP)
				le32_put(value + off + offsetof(struct posix_acl_xattr_entry, e_id),
					 map(fs, le32_at(value + off +
							 offsetof(struct posix_acl_xattr_entry, e_id))));
		}
	} else if (!strcmp(name, "security.capability") && len == XATTR_CAPS_SZ_3 &&
		   (le32_at(value) & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_3) {
		size_t at = offsetof(struct vfs_ns_cap_data, rootid);

		le32_put(value + at, map(fs, le32_at(value + at)));
	}
}

static uint64_t ino_slot(const struct hbfs *fs, uint64_t ino)
{
	return (ino * 0x9E3779B97F4A7C15ull) >> 20 & (fs->ino_hash_cap - 1);
}

static int ino_hash_grow(struct hbfs *fs)
{
	uint64_t cap = fs->ino_hash_cap ? fs->ino_hash_cap * 2 : 1024;
	struct node **t = calloc(cap, sizeof(*t));
	struct node **old = fs->ino_hash;
	uint64_t oldcap = fs->ino_hash_cap;

	if (!t)
		return -ENOMEM;
	fs->ino_hash = t;
	fs->ino_hash_cap = cap;
	for (uint64_t i = 0; i < oldcap; i++) {
		struct node *n = old[i], *next;

		for (; n; n = next) {
			uint64_t s = ino_slot(fs, n->ino);

			next = n->hash_next;
			n->hash_next = t[s];
			t[s] = n;
		}
	}
	free(old);
	return 0;
}

static int ino_hash_add(struct hbfs *fs, struct node *n)
{
	uint64_t s;

	if (fs->nnodes + 1 > fs->ino_hash_cap && ino_hash_grow(fs) < 0)
		return -ENOMEM;
	s = ino_slot(fs, n->ino);
	n->hash_next = fs->ino_hash[s];
	fs->ino_hash[s] = n;
	fs->nnodes++;
	return 0;
}

static void ino_hash_del(struct hbfs *fs, struct node *n)
{
	struct node **p = &fs->ino_hash[ino_slot(fs, n->ino)];

	for (; *p; p = &(*p)->hash_next)
		if (*p == n) {
			*p = n->hash_next;
			fs->nnodes--;
			return;
		}
}

struct node *node_by_ino(struct hbfs *fs, uint64_t ino)
{
	struct node *n;

	if (ino >= 1 && ino <= manifest_count(fs->m)) {
		uint32_t i = (uint32_t)(ino - 1);

		/* Only a leader's number names a node. */
		if (manifest_node(fs->m, i)->hardlink != i)
			return NULL;
		return node_lower(fs, i);
	}
	if (!fs->ino_hash_cap)
		return NULL;
	for (n = fs->ino_hash[ino_slot(fs, ino)]; n; n = n->hash_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct node *node_alloc(uint32_t mode)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->mode = mode;
	n->lower = -1;
	if (S_ISDIR(mode)) {
		n->dir = calloc(1, sizeof(*n->dir));
		if (!n->dir) {
			free(n);
			return NULL;
		}
	}
	return n;
}

struct node *node_lower(struct hbfs *fs, uint32_t i)
{
	const struct manifest_node *mn = manifest_node(fs->m, i);
	uint32_t leader = mn->hardlink;
	struct node *n;

	if (fs->by_lower[leader])
		return fs->by_lower[leader];
	mn = manifest_node(fs->m, leader);
	n = node_alloc(mn->mode);
	if (!n)
		return NULL;
	n->ino = (uint64_t)leader + 1;
	n->lower = leader;
	n->uid = mn->uid;
	n->gid = mn->gid;
	n->rdev = mn->rdev;
	n->size = mn->size;
	n->atime = (struct timespec){ mn->atime_sec, mn->atime_nsec };
	n->mtime = (struct timespec){ mn->mtime_sec, mn->mtime_nsec };
	n->ctime = (struct timespec){ mn->ctime_sec, mn->ctime_nsec };
	if (n->dir) {
		uint32_t subdirs = 0;

		for (uint32_t c = 0; c < mn->nchildren; c++)
			if (S_ISDIR(manifest_node(fs->m, mn->first_child + c)->mode))
				subdirs++;
		n->dir->nsubdirs = subdirs;
		n->nlink = 1;
	} else {
		n->nlink = mn->nlink ? mn->nlink : 1;
	}
	quota_lower_node(fs, n);
	if (ino_hash_add(fs, n) < 0) {
		free(n->dir);
		free(n);
		return NULL;
	}
	fs->by_lower[leader] = n;
	return n;
}

struct node *node_new_upper(struct hbfs *fs, uint64_t ino, uint32_t mode)
{
	struct node *n = node_alloc(mode);

	if (!n)
		return NULL;
	n->ino = ino;
	n->flags = NODE_DIR_LOADED | NODE_XATTR_OWN | NODE_DATA_DIRTY;
	if (ino_hash_add(fs, n) < 0) {
		free(n->dir);
		free(n);
		return NULL;
	}
	if (ino >= fs->next_ino)
		fs->next_ino = ino + 1;
	return n;
}

static uint32_t name_hash(const char *name, size_t len)
{
	return (uint32_t)XXH3_64bits(name, len);
}

/* Index slot of name, or of the slot where it would go (the first hole
 * passed, else the empty one). */
static uint32_t *dir_find(struct dir *d, const char *name, uint32_t h, bool *found)
{
	uint32_t *hole = NULL, mask = d->cap - 1;

	*found = false;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		uint32_t *s = &d->index[i];
		const struct dir_ent *e;

		if (!*s)
			return hole ? hole : s;
		if (*s == DIR_INDEX_HOLE) {
			if (!hole)
				hole = s;
			continue;
		}
		e = &d->ents[*s - 1];
		if (e->hash == h && strcmp(e->name, name) == 0) {
			*found = true;
			return s;
		}
	}
}

/* Point the (cleared) index at every live entry. */
static void dir_index_fill(struct dir *d)
{
	d->used = 0;
	for (uint32_t i = 0; i < d->nents; i++) {
		bool found;

		if (!d->ents[i].name)
			continue;
		*dir_find(d, d->ents[i].name, d->ents[i].hash, &found) = i + 1;
		d->used++;
	}
}

/* A fresh index for the live entries, at least twice their number. */
static int dir_reindex(struct dir *d, uint32_t want)
{
	uint32_t cap = 8, *index;

	while ((uint64_t)want * 2 > cap)
		cap *= 2;
	if (cap > (1u << 30))
		return -ENOSPC;
	if (!(index = calloc(cap, sizeof(*index))))
		return -ENOMEM;
	free(d->index);
	d->index = index;
	d->cap = cap;
	dir_index_fill(d);
	return 0;
}

/* Squeeze the holes out of ents once they outnumber the entries (order and
 * cookies stay). */
static void dir_compact(struct dir *d)
{
	uint32_t k = 0;

	if (d->nents - d->live <= d->live || d->nents < 64)
		return;
	for (uint32_t i = 0; i < d->nents; i++)
		if (d->ents[i].name)
			d->ents[k++] = d->ents[i];
	d->nents = k;
	if (dir_reindex(d, d->live) < 0) {
		/* no memory for a smaller index: refill the one we have */
		memset(d->index, 0, d->cap * sizeof(*d->index));
		dir_index_fill(d);
	}
}

uint32_t dir_seek(const struct dir *d, uint64_t off)
{
	uint32_t lo = 0, hi = d->nents;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (d->ents[mid].cookie <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert without touching link counts (loading lower children). */
static int dir_insert(struct dir *d, const char *name, struct node *child)
{
	size_t len = strlen(name);
	uint32_t h = name_hash(name, len), *s;
	struct dir_ent *e;
	bool found;
	char *copy;

	if ((uint64_t)(d->used + 1) * 4 > (uint64_t)d->cap * 3) {
		int r = dir_reindex(d, d->live + 1);

		if (r < 0)
			return r;
	}
	s = dir_find(d, name, h, &found);
	if (found) {
		d->ents[*s - 1].child = child;
		return 0;
	}
	if (d->nents == d->ents_cap) {
		uint32_t cap = d->ents_cap ? d->ents_cap * 2 : 8;
		struct dir_ent *ents = cap > d->ents_cap ? realloc(d->ents, cap * sizeof(*ents)) : NULL;

		if (!ents)
			return -ENOMEM;
		d->ents = ents;
		d->ents_cap = cap;
	}
	if (!(copy = strdup(name)))
		return -ENOMEM;
	if (!d->next_cookie)
		d->next_cookie = DIR_FIRST_COOKIE;
	e = &d->ents[d->nents];
	*e = (struct dir_ent){ copy, h, child, d->next_cookie++ };
	if (!*s)
		d->used++;
	*s = ++d->nents;
	d->live++;
	return 0;
}

int dir_load(struct hbfs *fs, struct node *d)
{
	const struct manifest_node *mn;

	if (!d->dir)
		return -ENOTDIR;
	if (d->flags & NODE_DIR_LOADED)
		return 0;
	if (d->lower < 0) {
		d->flags |= NODE_DIR_LOADED;
		return 0;
	}
	mn = manifest_node(fs->m, (uint32_t)d->lower);
	for (uint32_t c = 0; c < mn->nchildren; c++) {
		uint32_t ci = mn->first_child + c;
		struct node *child = node_lower(fs, ci);
		int r;

		if (!child)
			return -ENOMEM;
		r = dir_insert(d->dir, manifest_name(fs->m, ci), child);
		if (r < 0)
			return r;
		if (child->dir && !child->dir->parent)
			child->dir->parent = d;
	}
	d->flags |= NODE_DIR_LOADED;
	return 0;
}

struct node *dir_lookup(struct hbfs *fs, struct node *d, const char *name)
{
	bool found;
	uint32_t *s;

	if (!d->dir || !d->dir->cap)
		return NULL;
	s = dir_find(d->dir, name, name_hash(name, strlen(name)), &found);
	return found ? d->dir->ents[*s - 1].child : NULL;
}

static void link_inc(struct node *d, struct node *c)
{
	c->nlink++;
	if (c->dir) {
		c->dir->parent = d;
		d->dir->nsubdirs++;
	}
}

static void link_dec(struct node *d, struct node *c)
{
	if (c->nlink)
		c->nlink--;
	if (c->dir && d->dir->nsubdirs)
		d->dir->nsubdirs--;
}

int dir_set(struct hbfs *fs, struct node *d, const char *name, struct node *child)
{
	size_t len = strlen(name);
	uint32_t h = name_hash(name, len), *s;
	bool found;
	int r;

	r = dir_load(fs, d);
	if (r < 0)
		return r;
	if (d->dir->cap && (s = dir_find(d->dir, name, h, &found), found)) {
		struct dir_ent *e = &d->dir->ents[*s - 1];
		struct node *old = e->child;

		if (old == child)
			return 0;
		d->flags |= NODE_DIR_CHANGED;
		if (child) {
			link_inc(d, child);
			e->child = child;
		} else {
			free(e->name);
			e->name = NULL;
			e->child = NULL;
			*s = DIR_INDEX_HOLE;
			d->dir->live--;
		}
		link_dec(d, old);
		if (!child)
			dir_compact(d->dir);
		return 0;
	}
	if (!child)
		return 0;
	r = dir_insert(d->dir, name, child);
	if (r < 0)
		return r;
	d->flags |= NODE_DIR_CHANGED;
	link_inc(d, child);
	return 0;
}

uint32_t node_nlink(const struct node *n)
{
	if (n->dir)
		return n->nlink ? 2 + n->dir->nsubdirs : 0;
	return n->nlink;
}

void upper_data_name(const struct node *n, char out[32])
{
	snprintf(out, 32, "%016llx", (unsigned long long)n->ino);
}

static void node_free_mem(struct node *n)
{
	if (n->dir) {
		for (uint32_t i = 0; i < n->dir->nents; i++)
			free(n->dir->ents[i].name);
		free(n->dir->ents);
		free(n->dir->index);
		free(n->dir);
	}
	free(n->target);
	for (uint32_t i = 0; i < n->nxattrs; i++) {
		free(n->xattrs[i].name);
		free(n->xattrs[i].value);
	}
	free(n->xattrs);
	if (n->fst) {
		if (n->fst->fd >= 0)
			close(n->fst->fd);
		free(n->fst->chunk_end);
		pthread_rwlock_destroy(&n->fst->data_lock);
		free(n->fst);
	}
	free(n->committed);
	free(n->committed_inline);
	free(n);
}

void node_maybe_free(struct hbfs *fs, struct node *n)
{
	if (n == fs->root || n->nlink || n->nlookup || n->nopen)
		return;
	if (n->flags & NODE_UPPER_DATA) {
		char name[32];

		upper_data_name(n, name);
		unlinkat(fs->data_fd, name, 0);
		n->flags &= ~NODE_UPPER_DATA;
	}
	quota_release(fs, n); /* a lower file's space too, copied up or not */
	if (n->lower >= 0)
		return; /* lower nodes stay in by_lower, dead */
	ino_hash_del(fs, n);
	node_free_mem(n);
}

const char *node_symlink(struct hbfs *fs, struct node *n)
{
	if (n->target)
		return n->target;
	if (n->lower >= 0)
		return (const char *)manifest_data(fs->m, (uint32_t)n->lower);
	return "";
}

int node_xattrs_own(struct hbfs *fs, struct node *n)
{
	const struct manifest_node *mn;

	if (n->flags & NODE_XATTR_OWN)
		return 0;
	mn = manifest_node(fs->m, (uint32_t)n->lower);
	if (mn->nxattrs) {
		n->xattrs = calloc(mn->nxattrs, sizeof(*n->xattrs));
		if (!n->xattrs)
			return -ENOMEM;
		for (uint32_t k = 0; k < mn->nxattrs; k++) {
			struct manifest_xattr x;

			manifest_xattr(fs->m, (uint32_t)n->lower, k, &x);
			n->xattrs[k].name = strdup(x.name);
			n->xattrs[k].value = malloc(x.value_len ? x.value_len : 1);
			if (!n->xattrs[k].name || !n->xattrs[k].value) {
				n->nxattrs = k + 1;
				return -ENOMEM;
			}
			memcpy(n->xattrs[k].value, x.value, x.value_len);
			n->xattrs[k].len = x.value_len;
		}
		n->nxattrs = mn->nxattrs;
	}
	n->flags |= NODE_XATTR_OWN;
	return 0;
}

struct xattr *node_xattr_find(const struct node *n, const char *name)
{
	for (uint32_t k = 0; k < n->nxattrs; k++)
		if (!strcmp(n->xattrs[k].name, name))
			return &n->xattrs[k];
	return NULL;
}

struct xattr *node_xattr_add(struct node *n, const char *name, uint8_t *value, uint32_t len)
{
	struct xattr *xs = realloc(n->xattrs, (n->nxattrs + 1) * sizeof(*xs));
	char *nm = strdup(name);

	if (xs)
		n->xattrs = xs;
	if (!xs || !nm) {
		free(nm);
		free(value);
		return NULL;
	}
	xs[n->nxattrs] = (struct xattr){ nm, value, len };
	return &xs[n->nxattrs++];
}

bool node_xattr_get(struct hbfs *fs, const struct node *n, const char *name,
		    const uint8_t **value, uint32_t *len)
{
	if (n->flags & NODE_XATTR_OWN) {
		const struct xattr *x = node_xattr_find(n, name);

		if (x) {
			*value = x->value;
			*len = x->len;
		}
		return x != NULL;
	}
	const struct manifest_node *mn = manifest_node(fs->m, (uint32_t)n->lower);

	for (uint32_t k = 0; k < mn->nxattrs; k++) {
		struct manifest_xattr x;

		manifest_xattr(fs->m, (uint32_t)n->lower, k, &x);
		if (!strcmp(x.name, name)) {
			*value = x.value;
			*len = x.value_len;
			return true;
		}
	}
	return false;
}

void node_fill_stat(struct hbfs *fs, const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = node_nlink(n);
	st->st_uid = id_to_host(fs, n->uid);
	st->st_gid = id_to_host(fs, n->gid);
	st->st_rdev = n->rdev;
	st->st_size = (off_t)n->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
	if (S_ISLNK(n->mode))
		st->st_size = (off_t)strlen(node_symlink(fs, (struct node *)n));
	if (S_ISREG(n->mode) && (n->flags & NODE_UPPER_DATA) && n->size > 65536) {
		/* Only a large file can be sparse enough for it to matter. */
		struct stat ds;
		char name[32];

		upper_data_name(n, name);
		if (fstatat(fs->data_fd, name, &ds, 0) == 0)
			st->st_blocks = ds.st_blocks;
	} else if (S_ISREG(n->mode) && n->lower >= 0) {
		/* Holes in the chunk list take no blocks. */
		const struct manifest_node *mn = manifest_node(fs->m, (uint32_t)n->lower);
		const struct manifest_chunk *c = manifest_chunks(fs->m, (uint32_t)n->lower);
		uint64_t bytes = 0;

		if (mn->nchunks) {
			for (uint32_t k = 0; k < mn->nchunks; k++)
				if (!oid_is_zero(&c[k].id))
					bytes += c[k].size;
			st->st_blocks = (blkcnt_t)((bytes + 511) / 512);
		}
	}
}

int tree_init(struct hbfs *fs)
{
	uint32_t count = manifest_count(fs->m);

	fs->by_lower = calloc(count ? count : 1, sizeof(*fs->by_lower));
	if (!fs->by_lower)
		return -ENOMEM;
	if (ino_hash_grow(fs) < 0)
		return -ENOMEM;
	fs->next_ino = HBFS_UPPER_INO_BASE;
	quota_lower_init(fs);
	fs->root = node_lower(fs, 0);
	if (!fs->root)
		return -ENOMEM;
	if (!fs->root->dir)
		return hb_err(-EBADMSG, "snapshot root is not a directory");
	fs->root->dir->parent = fs->root;
	return 0;
}

void tree_free(struct hbfs *fs)
{
	for (uint64_t i = 0; i < fs->ino_hash_cap; i++) {
		struct node *n = fs->ino_hash[i], *next;

		for (; n; n = next) {
			next = n->hash_next;
			node_free_mem(n);
		}
	}
	free(fs->ino_hash);
	free(fs->by_lower);
	fs->ino_hash = NULL;
	fs->by_lower = NULL;
}
