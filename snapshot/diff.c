/* Differences between two snapshots, path by path.
 *
 * Both manifests list each directory's children contiguously and sorted
 * bytewise, so the two trees are compared by a merge walk per directory pair:
 * a name only on the left is removed ('-', with everything below it), only on
 * the right added ('+'), on both sides compared ('M' when type, mode, owner,
 * size, mtime, content or xattrs differ).  A directory's mtime changes
 * whenever an entry is added or removed in it; that change is already shown
 * by the '+'/'-' lines, so a directory is 'M' for its mtime alone only when
 * no child was added or removed.
 *
 * The walk uses an explicit work list rather than recursion (a manifest may
 * describe a tree deeper than the stack would like), and the results are
 * sorted by path before they are reported, so the output does not depend on
 * the walk order.  The root is reported as "." (only ever as 'M').
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/repo-int.h"
#include "util/array.h"
#include "util/error.h"

struct diff_item {
	char kind;
	char *path;
};

/* A pair of directories to compare (a or b is DIFF_NONE for a subtree that
 * exists on one side only). */
#define DIFF_NONE UINT32_MAX
struct diff_work {
	uint32_t a, b;
	char *path; /* "" for the root */
};

struct diff {
	const struct manifest *ma, *mb;
	struct diff_item *items;
	size_t nitems, items_cap;
	struct diff_work *work;
	size_t nwork, work_cap;
};

static char *join(const char *dir, const char *name)
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

/* Record a difference; takes ownership of path. */
static int emit(struct diff *d, char kind, char *path)
{
	if (!path)
		return -ENOMEM;
	if (array_grow((void **)&d->items, &d->items_cap, d->nitems, sizeof(*d->items)) < 0) {
		free(path);
		return -ENOMEM;
	}
	d->items[d->nitems].kind = kind;
	d->items[d->nitems].path = path;
	d->nitems++;
	return 0;
}

/* Queue a directory pair; takes ownership of path. */
static int push(struct diff *d, uint32_t a, uint32_t b, char *path)
{
	if (!path)
		return -ENOMEM;
	if (array_grow((void **)&d->work, &d->work_cap, d->nwork, sizeof(*d->work)) < 0) {
		free(path);
		return -ENOMEM;
	}
	d->work[d->nwork++] = (struct diff_work){ a, b, path };
	return 0;
}

/* Entry i of m at path is on one side only: report it, and queue its
 * children if it is a directory. */
static int one_sided(struct diff *d, const struct manifest *m, uint32_t i, const char *path,
		     char kind)
{
	char *copy = strdup(path);
	int r = emit(d, kind, strdup(path));

	if (r < 0 || !S_ISDIR(manifest_node(m, i)->mode) || !manifest_node(m, i)->nchildren) {
		free(copy);
		return r;
	}
	return kind == '-' ? push(d, i, DIFF_NONE, copy) : push(d, DIFF_NONE, i, copy);
}

static bool xattrs_differ(const struct manifest *ma, uint32_t a, const struct manifest *mb,
			  uint32_t b)
{
	const struct manifest_node *na = manifest_node(ma, a), *nb = manifest_node(mb, b);

	if (na->nxattrs != nb->nxattrs)
		return true;
	/* Order-insensitive: the lists are short. */
	for (uint32_t i = 0; i < na->nxattrs; i++) {
		struct manifest_xattr xa, xb;
		bool found = false;

		manifest_xattr(ma, a, i, &xa);
		for (uint32_t k = 0; k < nb->nxattrs && !found; k++) {
			manifest_xattr(mb, b, k, &xb);
			if (strcmp(xa.name, xb.name) == 0) {
				if (xa.value_len != xb.value_len ||
				    (xa.value_len && memcmp(xa.value, xb.value, xa.value_len) != 0))
					return true;
				found = true;
			}
		}
		if (!found)
			return true;
	}
	return false;
}

static bool content_differs(const struct manifest *ma, uint32_t a, const struct manifest *mb,
			    uint32_t b)
{
	const struct manifest_node *na = manifest_node(ma, a), *nb = manifest_node(mb, b);

	if (S_ISLNK(na->mode) || (na->flags & MANIFEST_FLAG_INLINE) ||
	    (nb->flags & MANIFEST_FLAG_INLINE)) {
		if ((na->flags ^ nb->flags) & MANIFEST_FLAG_INLINE)
			return true;
		return na->data_len != nb->data_len ||
		       (na->data_len &&
			memcmp(manifest_data(ma, a), manifest_data(mb, b), na->data_len) != 0);
	}
	if (S_ISREG(na->mode)) {
		const struct manifest_chunk *ca = manifest_chunks(ma, a), *cb = manifest_chunks(mb, b);

		if (na->nchunks != nb->nchunks)
			return true;
		for (uint32_t i = 0; i < na->nchunks; i++)
			if (ca[i].size != cb[i].size || !oid_equal(&ca[i].id, &cb[i].id))
				return true;
		return false;
	}
	if (S_ISCHR(na->mode) || S_ISBLK(na->mode))
		return na->rdev != nb->rdev;
	return false;
}

/* Entries present on both sides with the same type-independent checks;
 * children_changed: a child of this directory was added or removed. */
static bool node_differs(const struct manifest *ma, uint32_t a, const struct manifest *mb,
			 uint32_t b, bool children_changed)
{
	const struct manifest_node *na = manifest_node(ma, a), *nb = manifest_node(mb, b);
	bool mtime_differs = na->mtime_sec != nb->mtime_sec || na->mtime_nsec != nb->mtime_nsec;

	if (na->mode != nb->mode || na->uid != nb->uid || na->gid != nb->gid)
		return true;
	if (S_ISDIR(na->mode))
		return (mtime_differs && !children_changed) || xattrs_differ(ma, a, mb, b);
	return na->size != nb->size || mtime_differs || content_differs(ma, a, mb, b) ||
	       xattrs_differ(ma, a, mb, b);
}

/* Compare the children of directory a (left) and b (right) at path.
 * *children_changed: some child exists on one side only. */
static int compare_dirs(struct diff *d, uint32_t a, uint32_t b, const char *path,
			bool *children_changed)
{
	const struct manifest *ma = d->ma, *mb = d->mb;
	const struct manifest_node *na = manifest_node(ma, a), *nb = manifest_node(mb, b);
	uint32_t i = 0, k = 0;
	int r = 0;

	*children_changed = false;
	while (r >= 0 && (i < na->nchildren || k < nb->nchildren)) {
		uint32_t ca = na->first_child + i, cb = nb->first_child + k;
		int c;

		if (i == na->nchildren)
			c = 1;
		else if (k == nb->nchildren)
			c = -1;
		else
			c = strcmp(manifest_name(ma, ca), manifest_name(mb, cb));
		if (c < 0) {
			char *p = join(path, manifest_name(ma, ca));

			r = p ? one_sided(d, ma, ca, p, '-') : -ENOMEM;
			free(p);
			*children_changed = true;
			i++;
		} else if (c > 0) {
			char *p = join(path, manifest_name(mb, cb));

			r = p ? one_sided(d, mb, cb, p, '+') : -ENOMEM;
			free(p);
			*children_changed = true;
			k++;
		} else {
			const struct manifest_node *xa = manifest_node(ma, ca),
						   *xb = manifest_node(mb, cb);
			char *p = join(path, manifest_name(ma, ca));

			if (!p)
				return -ENOMEM;
			if (S_ISDIR(xa->mode) && S_ISDIR(xb->mode)) {
				/* Compared with its children, when it is popped. */
				r = push(d, ca, cb, p);
				p = NULL;
			} else if ((xa->mode & S_IFMT) != (xb->mode & S_IFMT)) {
				r = emit(d, 'M', strdup(p));
				/* A directory that became something else (or
				 * the reverse) takes its contents with it. */
				if (r >= 0 && S_ISDIR(xa->mode) && xa->nchildren)
					r = push(d, ca, DIFF_NONE, strdup(p));
				if (r >= 0 && S_ISDIR(xb->mode) && xb->nchildren)
					r = push(d, DIFF_NONE, cb, strdup(p));
			} else if (node_differs(ma, ca, mb, cb, false)) {
				r = emit(d, 'M', strdup(p));
			}
			free(p);
			i++;
			k++;
		}
	}
	return r;
}

/* Report every child of a one-sided directory. */
static int expand_one_sided(struct diff *d, const struct manifest *m, uint32_t dir,
			    const char *path, char kind)
{
	const struct manifest_node *n = manifest_node(m, dir);
	int r = 0;

	for (uint32_t i = 0; i < n->nchildren && r >= 0; i++) {
		char *p = join(path, manifest_name(m, n->first_child + i));

		r = p ? one_sided(d, m, n->first_child + i, p, kind) : -ENOMEM;
		free(p);
	}
	return r;
}

static int walk(struct diff *d)
{
	int r = push(d, 0, 0, strdup(""));

	while (r >= 0 && d->nwork) {
		struct diff_work w = d->work[--d->nwork];
		bool children_changed;

		if (w.b == DIFF_NONE) {
			r = expand_one_sided(d, d->ma, w.a, w.path, '-');
		} else if (w.a == DIFF_NONE) {
			r = expand_one_sided(d, d->mb, w.b, w.path, '+');
		} else {
			r = compare_dirs(d, w.a, w.b, w.path, &children_changed);
			if (r >= 0 && node_differs(d->ma, w.a, d->mb, w.b, children_changed))
				r = emit(d, 'M', strdup(w.path[0] ? w.path : "."));
		}
		free(w.path);
	}
	return r;
}

static int item_cmp(const void *x, const void *y)
{
	const struct diff_item *a = x, *b = y;
	int c = strcmp(a->path, b->path);

	/* The same path twice: a type change reported as '-' and '+' never
	 * happens (it is one 'M'), but keep the order total anyway. */
	return c ? c : a->kind - b->kind;
}

int repo_snapshot_diff(struct repo *r, const struct oid *a, const struct oid *b,
		       int (*fn)(char kind, const char *path, void *arg), void *arg)
{
	struct manifest *ma = NULL, *mb = NULL;
	struct diff d = { 0 };
	int rc;

	rc = repo_load_manifest(r, a, &ma);
	if (rc < 0)
		return rc;
	rc = repo_load_manifest(r, b, &mb);
	if (rc < 0)
		goto out;
	d.ma = ma;
	d.mb = mb;
	rc = walk(&d);
	if (rc < 0)
		goto out;
	if (d.nitems)
		qsort(d.items, d.nitems, sizeof(*d.items), item_cmp);
	for (size_t i = 0; i < d.nitems && rc == 0; i++)
		rc = fn(d.items[i].kind, d.items[i].path, arg);
out:
	for (size_t i = 0; i < d.nwork; i++)
		free(d.work[i].path);
	for (size_t i = 0; i < d.nitems; i++)
		free(d.items[i].path);
	free(d.work);
	free(d.items);
	manifest_free(ma);
	manifest_free(mb);
	if (rc == -ENOMEM)
		return hb_err(rc, "diff: out of memory");
	return rc;
}
