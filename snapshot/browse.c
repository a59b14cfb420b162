/* Reading a snapshot without restoring or mounting it: an entry by path,
 * one file's content. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/manifest.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

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

int repo_snapshot_cat(struct repo *r, const struct oid *id, const char *path, int fd)
{
	struct manifest *m = NULL;
	const struct manifest_node *n;
	const struct manifest_chunk *c;
	struct buf chunk = { 0 };
	int64_t i;
	int ret;

	ret = repo_load_manifest(r, id, &m);
	if (ret < 0)
		return ret;
	i = repo_manifest_find(m, path);
	if (i < 0) {
		ret = (int)i;
		goto out;
	}
	n = manifest_node(m, (uint32_t)i);
	if (S_ISDIR(n->mode)) {
		ret = hb_err(-EISDIR, "'%s' is a directory in the snapshot", path);
		goto out;
	}
	if (S_ISLNK(n->mode)) {
		ret = hb_err(-EINVAL, "'%s' is a symbolic link (to '%s') in the snapshot", path,
			     (const char *)manifest_data(m, (uint32_t)i));
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
	buf_free(&chunk);
	manifest_free(m);
	return ret;
}
