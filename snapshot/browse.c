/* Reading a snapshot without restoring or mounting it: an entry by path,
 * one file's content. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/manifest.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define CAT_PIN_MIN_BYTES (64u << 20)

static int write_zeroes(int fd, uint64_t n)
{
	static const char zeroes[65536];

	while (n > 0) {
		size_t k = n < sizeof(zeroes) ? (size_t)n : sizeof(zeroes);
		int r = write_all(fd, zeroes, k);

		if (r < 0)
			return r;
		n -= k;
	}
	return 0;
}

int64_t repo_manifest_find(const struct manifest *m, const char *path)
{
	int64_t i = manifest_lookup_path(m, path);

	if (i == -EINVAL)
		return hb_err(-EINVAL, "'%s': a path in a snapshot cannot have '..'", path);
	if (i < 0)
		return hb_err((int)i, "'%s': %s in the snapshot", path,
			      i == -ENOTDIR ? "a parent is not a directory" : "no such file or directory");
	return i;
}

#define RESOLVE_MAX_LINKS 40 /* as the kernel allows */

int64_t repo_manifest_resolve(const struct manifest *m, const char *path, bool follow_last)
{
	char work[2 * 4096 + 2], *rest;
	uint32_t cur = 0, links = 0;
	int64_t r = repo_manifest_find(m, path); /* what the caller typed: no ".." */

	if (r < 0 && r != -ENOTDIR && r != -ENOENT)
		return r;
	hb_err_clear();
	if (snprintf(work, sizeof(work), "%s", path) >= (int)sizeof(work))
		return hb_err(-ENAMETOOLONG, "'%s': path too long", path);
	rest = work;
	for (;;) {
		char *name, *slash;
		const struct manifest_node *n;
		int64_t c;

		while (*rest == '/')
			rest++;
		if (!*rest)
			return cur;
		name = rest;
		slash = strchr(rest, '/');
		rest = slash ? slash + 1 : rest + strlen(rest);
		if (slash)
			*slash = '\0';
		while (*rest == '/')
			rest++;
		if (!strcmp(name, "."))
			continue;
		if (!strcmp(name, "..")) { /* only from link targets; the root is its own parent */
			cur = manifest_node(m, cur)->parent;
			continue;
		}
		c = manifest_lookup_child(m, cur, name, strlen(name));
		if (c < 0)
			return hb_err((int)c, "'%s': %s in the snapshot", path,
				      c == -ENOTDIR ? "a parent is not a directory"
						    : links ? "a symbolic link on the way leads nowhere"
							    : "no such file or directory");
		n = manifest_node(m, (uint32_t)c);
		if (S_ISLNK(n->mode) && (*rest || follow_last)) {
			char next[sizeof(work)];
			const char *target = (const char *)manifest_data(m, (uint32_t)c);

			if (!target[0])
				return hb_err(-ENOENT, "'%s': an empty symbolic link on the way", path);
			if (++links > RESOLVE_MAX_LINKS)
				return hb_err(-ELOOP, "'%s': too many levels of symbolic links in the snapshot",
					      path);
			if (snprintf(next, sizeof(next), "%s/%s", target, rest) >= (int)sizeof(next))
				return hb_err(-ENAMETOOLONG, "'%s': path too long", path);
			strcpy(work, next);
			rest = work;
			if (target[0] == '/')
				cur = 0; /* absolute: from the snapshot's root, as in a chroot */
			continue;
		}
		if (!*rest)
			return c;
		if (!S_ISDIR(n->mode))
			return hb_err(-ENOTDIR, "'%s': a parent is not a directory in the snapshot", path);
		cur = (uint32_t)c;
	}
}

int repo_snapshot_cat(struct repo *r, const struct oid *id, const char *path, int fd)
{
	struct manifest *m = NULL;
	const struct manifest_node *n;
	const struct manifest_chunk *c;
	struct buf chunk = { 0 };
	struct repo_pin *pin = NULL;
	int64_t i;
	int ret;

	ret = repo_load_manifest(r, id, &m);
	if (ret < 0)
		return ret;
	i = repo_manifest_resolve(m, path, true);
	if (i < 0) {
		ret = (int)i;
		goto out;
	}
	n = manifest_node(m, (uint32_t)i);
	if (S_ISDIR(n->mode)) {
		ret = hb_err(-EISDIR, "'%s' is a directory in the snapshot", path);
		goto out;
	}
	if (!S_ISREG(n->mode)) {
		ret = hb_err(-EINVAL, "'%s' is not a regular file in the snapshot", path);
		goto out;
	}
	/* a hard link's content is on its group's first member */
	i = n->hardlink;
	n = manifest_node(m, (uint32_t)i);
	if (n->flags & MANIFEST_FLAG_INLINE) {
		ret = write_all(fd, manifest_data(m, (uint32_t)i), n->data_len);
		if (ret < 0)
			ret = hb_err_sys(ret, "writing '%s'", path);
		goto out;
	}
	c = manifest_chunks(m, (uint32_t)i);
	/* A big file takes a while (from a bucket, minutes): keep `snapshot rm`
	 * and so gc off it.  Small ones do not pay the pin's two writes. */
	if (n->size >= CAT_PIN_MIN_BYTES && repo_pin_start(r, id, "snapshot cat", &pin) < 0)
		hb_err_clear();
	for (uint32_t k = 0; k < n->nchunks; k++) {
		if (oid_is_zero(&c[k].id)) {
			ret = write_zeroes(fd, c[k].size);
		} else {
			/* from S3: one request per window of neighbouring chunks */
			ret = repo_read_chunk_near(r, &c[k].id, &chunk);
			if (ret < 0) {
				ret = hb_err_ctx(ret, "'%s'", path);
				goto out;
			}
			if (chunk.len != c[k].size) {
				ret = hb_err(-EBADMSG, "'%s': a chunk of %zu bytes where the snapshot says %u",
					     path, chunk.len, c[k].size);
				goto out;
			}
			ret = write_all(fd, chunk.data, chunk.len);
		}
		if (ret < 0) {
			ret = hb_err_sys(ret, "writing '%s'", path);
			goto out;
		}
	}
	ret = 0;
out:
	repo_pin_end(pin);
	buf_free(&chunk);
	manifest_free(m);
	return ret;
}

/* Which entries the subtree keeps, in the new manifest's order. */
struct subtree {
	const struct manifest *m;
	uint32_t *order;    /* old indexes, breadth-first as the builder wants */
	uint32_t *new_of;   /* old index -> new index + 1 (0: left out) */
	uint32_t *group_n;  /* per old representative: members kept */
	uint32_t *new_rep;  /* per old representative: new index of the first kept */
	uint32_t n;
};

static bool is_ancestor_or_self(const struct manifest *m, uint32_t a, uint32_t i)
{
	for (;;) {
		if (i == a)
			return true;
		if (i == 0)
			return false;
		i = manifest_node(m, i)->parent;
	}
}

/* Breadth-first from the root: the ancestors of entry (one child each) and
 * everything below entry. */
static int subtree_order(struct subtree *s, uint32_t entry)
{
	const struct manifest *m = s->m;

	s->order[s->n++] = 0;
	for (uint32_t q = 0; q < s->n; q++) {
		uint32_t d = s->order[q];
		const struct manifest_node *dn = manifest_node(m, d);
		bool all = is_ancestor_or_self(m, entry, d);

		if (!S_ISDIR(dn->mode))
			continue;
		for (uint32_t k = 0; k < dn->nchildren; k++) {
			uint32_t c = dn->first_child + k;

			if (all || is_ancestor_or_self(m, c, entry))
				s->order[s->n++] = c;
		}
	}
	for (uint32_t k = 0; k < s->n; k++)
		s->new_of[s->order[k]] = k + 1;
	return 0;
}

/* One entry into the builder: its parent and hard-link group renumbered,
 * nlink what the subtree has (the decoder checks it against the entries). */
static int subtree_add(struct subtree *s, struct manifest_builder *b, uint32_t old)
{
	const struct manifest *m = s->m;
	const struct manifest_node *n = manifest_node(m, old);
	struct manifest_node nn = *n;
	const struct manifest_node *rep = manifest_node(m, n->hardlink);
	const void *data = NULL;
	size_t data_len = 0;
	uint32_t k = s->new_of[old] - 1;
	int64_t got;
	int r;

	nn.parent = old == 0 ? 0 : s->new_of[n->parent] - 1;
	if (S_ISDIR(n->mode)) {
		nn.nlink = 2;
		for (uint32_t c = 0; c < n->nchildren; c++)
			if (s->new_of[n->first_child + c] && S_ISDIR(manifest_node(m, n->first_child + c)->mode))
				nn.nlink++;
		nn.hardlink = k;
	} else {
		nn.hardlink = s->new_rep[n->hardlink];
		nn.nlink = s->group_n[n->hardlink] > 1 ? s->group_n[n->hardlink] : 1;
	}
	/* content sits on the group's first kept member */
	if (S_ISLNK(n->mode)) {
		data = manifest_data(m, old);
		data_len = n->data_len;
	} else if (S_ISREG(n->mode) && nn.hardlink == k) {
		nn.size = rep->size;
		nn.flags = rep->flags;
		if (rep->flags & MANIFEST_FLAG_INLINE) {
			data = manifest_data(m, n->hardlink);
			data_len = rep->data_len;
		}
	} else if (S_ISREG(n->mode)) {
		nn.flags &= ~MANIFEST_FLAG_INLINE;
	}
	got = manifest_builder_add(b, &nn, manifest_name(m, old), n->name_len, data, data_len);
	if (got < 0)
		return (int)got;
	if (S_ISREG(n->mode) && nn.hardlink == k && !(rep->flags & MANIFEST_FLAG_INLINE) &&
	    rep->nchunks > 0) {
		r = manifest_builder_set_chunks(b, k, manifest_chunks(m, n->hardlink), rep->nchunks);
		if (r < 0)
			return r;
	}
	for (uint32_t x = 0; x < n->nxattrs; x++) {
		struct manifest_xattr xa;

		manifest_xattr(m, old, x, &xa);
		r = manifest_builder_add_xattr(b, k, xa.name, xa.value, xa.value_len);
		if (r < 0)
			return r;
	}
	return 0;
}

int repo_manifest_subtree(const struct manifest *m, uint32_t entry, struct manifest **out)
{
	uint32_t count = manifest_count(m);
	struct subtree s = { .m = m };
	struct manifest_builder *b = NULL;
	struct buf enc = { 0 };
	int r = -ENOMEM;

	s.order = malloc(count * sizeof(*s.order));
	s.new_of = calloc(count, sizeof(*s.new_of));
	s.group_n = calloc(count, sizeof(*s.group_n));
	s.new_rep = calloc(count, sizeof(*s.new_rep));
	b = manifest_builder_new();
	if (!s.order || !s.new_of || !s.group_n || !s.new_rep || !b)
		goto out;
	subtree_order(&s, entry);
	for (uint32_t k = 0; k < s.n; k++) {
		const struct manifest_node *n = manifest_node(m, s.order[k]);

		if (!S_ISDIR(n->mode) && s.group_n[n->hardlink]++ == 0)
			s.new_rep[n->hardlink] = k;
	}
	for (uint32_t k = 0; k < s.n; k++) {
		r = subtree_add(&s, b, s.order[k]);
		if (r < 0)
			goto out;
	}
	r = manifest_builder_encode(b, manifest_info(m), &enc);
	if (r == 0)
		r = manifest_decode(enc.data, enc.len, out);
out:
	if (r < 0 && r != -ENOMEM)
		r = hb_err_ctx(r, "selecting a part of the snapshot");
	buf_free(&enc);
	manifest_builder_free(b);
	free(s.order);
	free(s.new_of);
	free(s.group_n);
	free(s.new_rep);
	return r;
}
