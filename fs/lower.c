/* Reading lower file content: chunk by chunk through repo_read_chunk (which
 * verifies every chunk), with a small cache of decoded chunks and read-ahead
 * of the chunks after the ones just read.
 *
 * The cache is a fixed array scanned linearly (a few dozen entries: cheaper
 * than a hash).  An entry being fetched is marked loading so that a reader and
 * the read-ahead never fetch the same chunk twice; waiters sleep on a condvar.
 * A chunk that fails verification is not cached: that read returns EIO, is
 * logged, and a later read tries again.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs-int.h"
#include "util/error.h"
#include "util/workqueue.h"

struct cache_entry {
	struct oid id;
	struct buf data;
	uint64_t last_use;
	bool valid, loading;
};

struct chunk_cache {
	pthread_mutex_t lock;
	pthread_cond_t loaded;
	uint64_t clock;
	struct oid hot[HBFS_HOT_MAX]; /* first fetches, in order */
	uint32_t nhot;
	struct cache_entry e[HBFS_CACHE_CHUNKS];
};

int cache_new(struct hbfs *fs)
{
	struct chunk_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	fs->cache = c;
	fs->readahead = workqueue_new(2, 64);
	if (!fs->readahead)
		return -ENOMEM;
	return 0;
}

void cache_free(struct hbfs *fs)
{
	struct chunk_cache *c = fs->cache;

	workqueue_free(fs->readahead);
	fs->readahead = NULL;
	if (!c)
		return;
	for (int i = 0; i < HBFS_CACHE_CHUNKS; i++)
		buf_free(&c->e[i].data);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->loaded);
	free(c);
	fs->cache = NULL;
}

static struct cache_entry *cache_find(struct chunk_cache *c, const struct oid *id)
{
	for (int i = 0; i < HBFS_CACHE_CHUNKS; i++)
		if ((c->e[i].valid || c->e[i].loading) && oid_equal(&c->e[i].id, id))
			return &c->e[i];
	return NULL;
}

/* Copy [skip, skip+n) of chunk id into dst (dst NULL: only load it). */
static int cache_read(struct hbfs *fs, const struct oid *id, void *dst, size_t skip, size_t n)
{
	struct chunk_cache *c = fs->cache;
	struct cache_entry *e, *victim = NULL;
	struct buf b = BUF_INIT;
	int r;

	pthread_mutex_lock(&c->lock);
	while ((e = cache_find(c, id)) && e->loading)
		pthread_cond_wait(&c->loaded, &c->lock);
	if (e) {
		e->last_use = ++c->clock;
		r = 0;
		if (dst) {
			if (skip + n > e->data.len)
				r = -EIO;
			else
				memcpy(dst, e->data.data + skip, n);
		}
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	for (int i = 0; i < HBFS_CACHE_CHUNKS; i++) {
		struct cache_entry *x = &c->e[i];

		if (x->loading)
			continue;
		if (!victim || !x->valid || (victim->valid && x->last_use < victim->last_use))
			victim = x;
		if (!x->valid)
			break;
	}
	if (victim) {
		victim->valid = false;
		victim->loading = true;
		victim->id = *id;
	}
	pthread_mutex_unlock(&c->lock);

	r = repo_read_chunk(fs->repo, id, &b);
	if (r < 0) {
		char hex[OID_HEX_BYTES];

		fprintf(stderr, "hiberbox-fs: chunk %s: %s\n", oid_format(id, hex), hb_errmsg(r));
	} else if (dst && skip + n > b.len) {
		r = -EIO;
	}

	pthread_mutex_lock(&c->lock);
	if (r >= 0 && c->nhot < HBFS_HOT_MAX)
		c->hot[c->nhot++] = *id;
	if (r >= 0 && dst)
		memcpy(dst, b.data + skip, n);
	if (victim) {
		victim->loading = false;
		if (r >= 0) {
			buf_free(&victim->data);
			victim->data = b;
			b = (struct buf)BUF_INIT;
			victim->valid = true;
			victim->last_use = ++c->clock;
		}
		pthread_cond_broadcast(&c->loaded);
	}
	pthread_mutex_unlock(&c->lock);
	buf_free(&b);
	return r < 0 ? -EIO : 0;
}

int lower_chunk_ends(struct hbfs *fs, uint32_t i, uint64_t **out)
{
	const struct manifest_node *mn = manifest_node(fs->m, i);
	const struct manifest_chunk *c = manifest_chunks(fs->m, i);
	uint64_t *ends = malloc((mn->nchunks ? mn->nchunks : 1) * sizeof(*ends));
	uint64_t off = 0;

	if (!ends)
		return -ENOMEM;
	for (uint32_t k = 0; k < mn->nchunks; k++) {
		off += c[k].size;
		ends[k] = off;
	}
	*out = ends;
	return 0;
}

struct readahead_job {
	struct hbfs *fs;
	struct oid id;
};

static void readahead_run(void *arg)
{
	struct readahead_job *j = arg;

	cache_read(j->fs, &j->id, NULL, 0, 0);
	free(j);
}

static void readahead(struct hbfs *fs, const struct manifest_chunk *c, uint32_t from, uint32_t end)
{
	for (uint32_t k = from; k < end && k < from + HBFS_READAHEAD_CHUNKS; k++) {
		struct readahead_job *j;
		bool have;

		if (oid_is_zero(&c[k].id))
			continue;
		pthread_mutex_lock(&fs->cache->lock);
		have = cache_find(fs->cache, &c[k].id) != NULL;
		pthread_mutex_unlock(&fs->cache->lock);
		if (have)
			continue;
		j = malloc(sizeof(*j));
		if (!j)
			return;
		j->fs = fs;
		j->id = c[k].id;
		if (workqueue_submit(fs->readahead, readahead_run, j) < 0)
			free(j);
	}
}

ssize_t lower_read(struct hbfs *fs, uint32_t i, const uint64_t *ends, void *out, size_t len,
		   uint64_t off)
{
	const struct manifest_node *mn = manifest_node(fs->m, i);
	const struct manifest_chunk *c;
	uint8_t *dst = out;
	size_t done = 0;
	uint32_t lo, hi;

	if (off >= mn->size)
		return 0;
	if (len > mn->size - off)
		len = (size_t)(mn->size - off);
	if ((mn->flags & MANIFEST_FLAG_INLINE) || !mn->nchunks) {
		size_t have = mn->data_len > off ? (size_t)(mn->data_len - off) : 0;
		size_t n = have < len ? have : len;

		memcpy(dst, manifest_data(fs->m, i) + off, n);
		memset(dst + n, 0, len - n);
		return (ssize_t)len;
	}
	c = manifest_chunks(fs->m, i);
	/* First chunk ending after off. */
	lo = 0;
	hi = mn->nchunks;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (ends[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t k = lo; k < mn->nchunks && done < len; k++) {
		uint64_t start = ends[k] - c[k].size;
		size_t skip = (size_t)(off + done - start);
		size_t n = c[k].size - skip;

		if (n > len - done)
			n = len - done;
		if (oid_is_zero(&c[k].id)) {
			memset(dst + done, 0, n);
		} else {
			int r = cache_read(fs, &c[k].id, dst + done, skip, n);

			if (r < 0) {
				fprintf(stderr, "hiberbox-fs: read of inode %u at %" PRIu64
						" failed: EIO\n", i + 1, off + done);
				return r;
			}
		}
		done += n;
		if (done == len)
			readahead(fs, c, k + 1, mn->nchunks);
	}
	if (done < len)
		memset(dst + done, 0, len - done);
	return (ssize_t)len;
}

/* Prefetch the hot list of the last mount (best effort, in the background):
 * the first chunks into the memory cache; from a remote repository the rest
 * too, which fills the repository's local cache (store-tiered) in parallel
 * with the first reads. */
void lower_prefetch_hot(struct hbfs *fs);
void lower_prefetch_hot(struct hbfs *fs)
{
	uint32_t count, limit = HBFS_CACHE_CHUNKS / 2;
	const struct oid *hot = manifest_hot(fs->m, &count);

	if (!strncmp(repo_location(fs->repo), "s3://", 5))
		limit = HBFS_HOT_MAX;
	for (uint32_t k = 0; k < count && k < limit; k++) {
		struct readahead_job *j = malloc(sizeof(*j));

		if (!j)
			return;
		j->fs = fs;
		j->id = hot[k];
		if (workqueue_submit(fs->readahead, readahead_run, j) < 0)
			free(j);
	}
}

int lower_hot_list(struct hbfs *fs, struct oid **out, uint32_t *count)
{
	struct chunk_cache *c = fs->cache;
	struct oid *ids;

	pthread_mutex_lock(&c->lock);
	ids = malloc((c->nhot ? c->nhot : 1) * sizeof(*ids));
	if (ids) {
		memcpy(ids, c->hot, c->nhot * sizeof(*ids));
		*count = c->nhot;
	}
	pthread_mutex_unlock(&c->lock);
	*out = ids;
	return ids ? 0 : -ENOMEM;
}
