/* Reading lower file content: chunk by chunk through repo_read_chunk (which
 * verifies every chunk), with a cache of decoded chunks, read-ahead of the
 * chunks after the ones just read, and a prefetch of the hot list.
 *
 * The cache is a fixed array with a small hash index (chained through entry
 * indices).  An entry being fetched is marked loading so that a reader, the
 * read-ahead and the prefetch never fetch the same chunk twice; waiters sleep
 * on a condvar.  A chunk that fails verification is not cached: that read
 * returns EIO, is logged, and a later read tries again.
 *
 * Hot list.  The chunks readers use in the first LOWER_HOT_WINDOW_SEC after
 * the mount, in first-use order, become the hot list of the next commit.  On
 * the next mount a few threads decode that list into the cache as soon as the
 * manifest is loaded (before the kernel mount exists), so that a sandbox's
 * first command finds its binary and libraries decoded.  The prefetch stays
 * at most LOWER_PREFETCH_AHEAD chunks ahead of the furthest hot chunk a
 * reader has used, so it never evicts what is about to be read; entries it
 * decoded and nobody used yet are evicted last (for the hot window).  If
 * readers use none of it for LOWER_PREFETCH_STALL_MS (the workload changed)
 * it stops, and its entries become ordinary ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/fs-int.h"
#include "fs/lower.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

#define LOWER_CACHE_CHUNKS 192       /* decoded chunks kept (64 KiB on average) */
#define LOWER_CACHE_BUCKETS 256      /* hash index; a power of two */
#define LOWER_PREFETCH_AHEAD 128     /* hot chunks decoded ahead of the readers */
#define LOWER_PREFETCH_STALL_MS 3000
#define LOWER_PREFETCH_THREADS_LOCAL 2 /* decoding: bound by cores */
#define LOWER_PREFETCH_THREADS_REMOTE 8 /* S3: bound by round trips */
#define LOWER_HOT_WINDOW_SEC 30
/* From a remote store, the windows of the hot list are fetched (not decoded)
 * by their own threads, up to LOWER_FETCH_AHEAD chunks ahead of the readers:
 * decoding threads that meet a window being fetched wait for it, so alone
 * they would keep only a couple of requests in flight. */
#define LOWER_FETCH_THREADS 12
#define LOWER_FETCH_AHEAD 512

_Static_assert(LOWER_PREFETCH_AHEAD < LOWER_CACHE_CHUNKS, "prefetch window exceeds the cache");

struct cache_entry {
	struct oid id;
	struct buf data;
	uint64_t last_use;
	int32_t next;     /* hash chain: index of the next entry, -1 at the end */
	uint32_t hot_idx; /* prefetched, not used yet: index in the hot list + 1; else 0 */
	bool valid, loading, used;
};

struct chunk_cache {
	pthread_mutex_t lock;
	pthread_cond_t loaded;   /* an entry stopped loading */
	pthread_cond_t progress; /* a reader used a prefetched chunk, or stop */
	uint64_t clock;
	uint64_t start_ns;       /* the mount: the hot window starts here */
	/* hot list recorded for the next commit, in first-use order */
	struct oid hot[HBFS_HOT_MAX];
	uint32_t nhot;
	/* prefetch of the mounted snapshot's hot list */
	const struct oid *pf_list;
	uint32_t pf_count, pf_next, pf_pos; /* pf_pos: furthest used index + 1 */
	uint32_t pf_running;                /* threads still working */
	/* hot list index + 1 of a chunk id (open addressing, 0 = empty): a
	 * reader that loads a hot chunk itself still moves the prefetch on */
	uint32_t *pf_map;
	uint32_t pf_map_mask;
	pthread_t pf_threads[LOWER_PREFETCH_THREADS_REMOTE];
	uint32_t pf_nthreads;
	bool pf_stop;
	uint32_t fa_next; /* the fetch-ahead's next index */
	pthread_t fa_threads[LOWER_FETCH_THREADS];
	uint32_t fa_nthreads;
	struct lower_stats stats;
	int32_t bucket[LOWER_CACHE_BUCKETS];
	struct cache_entry e[LOWER_CACHE_CHUNKS];
};

static uint32_t bucket_of(const struct oid *id)
{
	uint32_t h;

	memcpy(&h, id->b, sizeof(h)); /* chunk ids are keyed hashes: uniform */
	return h & (LOWER_CACHE_BUCKETS - 1);
}

static void index_add(struct chunk_cache *c, int32_t i)
{
	uint32_t b = bucket_of(&c->e[i].id);

	c->e[i].next = c->bucket[b];
	c->bucket[b] = i;
}

static void index_remove(struct chunk_cache *c, int32_t i)
{
	int32_t *p = &c->bucket[bucket_of(&c->e[i].id)];

	while (*p >= 0 && *p != i)
		p = &c->e[*p].next;
	if (*p == i)
		*p = c->e[i].next;
	c->e[i].next = -1;
}

int cache_new(struct hbfs *fs)
{
	struct chunk_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	pthread_cond_init(&c->progress, NULL);
	c->start_ns = now_ns();
	for (int i = 0; i < LOWER_CACHE_BUCKETS; i++)
		c->bucket[i] = -1;
	for (int i = 0; i < LOWER_CACHE_CHUNKS; i++)
		c->e[i].next = -1;
	fs->cache = c;
	fs->readahead = workqueue_new(2, 64);
	if (!fs->readahead)
		return -ENOMEM;
	return 0;
}

static void prefetch_stop(struct chunk_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->pf_stop = true;
	pthread_cond_broadcast(&c->progress);
	pthread_mutex_unlock(&c->lock);
	for (uint32_t t = 0; t < c->pf_nthreads; t++)
		pthread_join(c->pf_threads[t], NULL);
	c->pf_nthreads = 0;
	for (uint32_t t = 0; t < c->fa_nthreads; t++)
		pthread_join(c->fa_threads[t], NULL);
	c->fa_nthreads = 0;
}

void cache_free(struct hbfs *fs)
{
	struct chunk_cache *c = fs->cache;

	if (c)
		prefetch_stop(c);
	workqueue_free(fs->readahead);
	fs->readahead = NULL;
	if (!c)
		return;
	if (c->stats.hot_count)
		fprintf(stderr, "hiberbox-fs: hot list at unmount: %u of %u chunks prefetched, "
				"%u of them used by readers\n", c->stats.prefetched,
			c->stats.hot_count, c->stats.prefetch_hits);
	for (int i = 0; i < LOWER_CACHE_CHUNKS; i++)
		buf_free(&c->e[i].data);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->loaded);
	pthread_cond_destroy(&c->progress);
	free(c->pf_map);
	free(c);
	fs->cache = NULL;
}

static struct cache_entry *cache_find(struct chunk_cache *c, const struct oid *id)
{
	for (int32_t i = c->bucket[bucket_of(id)]; i >= 0; i = c->e[i].next)
		if (oid_equal(&c->e[i].id, id))
			return &c->e[i];
	return NULL;
}

/* The entry to reuse: a free one, else the least recently used that no
 * reader is waiting for, prefetched-but-unused entries last.  Lock held. */
static struct cache_entry *cache_victim(struct chunk_cache *c)
{
	struct cache_entry *victim = NULL;
	/* the protection ends with the prefetch's stall or the hot window */
	bool protect = !c->pf_stop &&
		       now_ns() - c->start_ns < (uint64_t)LOWER_HOT_WINDOW_SEC * 1000000000ull;

	for (int i = 0; i < LOWER_CACHE_CHUNKS; i++) {
		struct cache_entry *x = &c->e[i];
		bool xp = protect && x->hot_idx, vp = victim && protect && victim->hot_idx;

		if (x->loading)
			continue;
		if (!x->valid)
			return x;
		if (!victim || (vp && !xp) || (vp == xp && x->last_use < victim->last_use))
			victim = x;
	}
	return victim;
}

/* Sets of chunk ids over a list of them: an open-addressed table of list
 * index + 1 (0 = empty), mask + 1 slots (a power of two, at least twice the
 * entries).  The slot of id: empty, or the one naming it. */
static uint32_t *id_set_slot(uint32_t *table, uint32_t mask, const struct oid *list,
			     const struct oid *id)
{
	uint32_t h, k;

	memcpy(&h, id->b + 4, sizeof(h)); /* other bytes than bucket_of's */
	for (k = h & mask; table[k] && !oid_equal(&list[table[k] - 1], id); k = (k + 1) & mask)
		;
	return &table[k];
}

/* Index + 1 of id in the hot list being prefetched, 0 if not in it. */
static uint32_t hot_lookup(const struct chunk_cache *c, const struct oid *id)
{
	return c->pf_map ? *id_set_slot(c->pf_map, c->pf_map_mask, c->pf_list, id) : 0;
}

/* A reader got to hot index hi (+1).  A jump past the window means the
 * readers replay another part of the list (a hot list carries several
 * sessions' working sets): the prefetch skips to them. */
static void follow_reader(struct chunk_cache *c, uint32_t hi)
{
	if (hi <= c->pf_pos)
		return;
	if (hi > c->pf_next + LOWER_PREFETCH_AHEAD)
		c->pf_next = hi;
	if (hi > c->fa_next)
		c->fa_next = hi;
	c->pf_pos = hi;
	pthread_cond_broadcast(&c->progress);
}

/* A reader uses entry e (lock held): the hot list and the prefetch's
 * progress learn about it. */
static void note_use(struct chunk_cache *c, struct cache_entry *e)
{
	if (e->hot_idx) {
		follow_reader(c, e->hot_idx);
		e->hot_idx = 0;
		c->stats.prefetch_hits++;
	} else if (!e->used && !c->pf_stop) {
		follow_reader(c, hot_lookup(c, &e->id));
	}
	if (e->used)
		return;
	e->used = true;
	if (c->nhot < HBFS_HOT_MAX &&
	    now_ns() - c->start_ns < (uint64_t)LOWER_HOT_WINDOW_SEC * 1000000000ull)
		c->hot[c->nhot++] = e->id;
}

/* Copy [skip, skip+n) of chunk id into dst (dst NULL: only load it, for the
 * read-ahead, or for the prefetch with hot_idx = index in its list + 1). */
static int cache_read(struct hbfs *fs, const struct oid *id, void *dst, size_t skip, size_t n,
		      uint32_t hot_idx)
{
	struct chunk_cache *c = fs->cache;
	struct cache_entry *e, *victim;
	struct buf b = BUF_INIT;
	int r;

	pthread_mutex_lock(&c->lock);
	while ((e = cache_find(c, id)) && e->loading)
		pthread_cond_wait(&c->loaded, &c->lock);
	if (e) {
		e->last_use = ++c->clock;
		r = 0;
		if (dst) {
			note_use(c, e);
			if (skip + n > e->data.len)
				r = -EIO;
			else
				memcpy(dst, e->data.data + skip, n);
		} else if (hot_idx && e->used && hot_idx > c->pf_pos) {
			c->pf_pos = hot_idx; /* a reader got there first */
		}
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	victim = cache_victim(c);
	if (victim) {
		if (victim->valid) /* indexed while valid or loading */
			index_remove(c, (int32_t)(victim - c->e));
		victim->valid = false;
		victim->loading = true;
		victim->used = false;
		victim->hot_idx = 0;
		victim->id = *id;
		index_add(c, (int32_t)(victim - c->e));
	}
	c->stats.fetched++;
	pthread_mutex_unlock(&c->lock);

	/* Readers likely want the neighbours next (the files of a directory
	 * are stored side by side), and the hot list is in first-use order,
	 * mostly along the packs: from a remote store, both fetch whole
	 * windows of a pack. */
	r = repo_read_chunk_near(fs->repo, id, &b);
	if (r < 0) {
		char hex[OID_HEX_BYTES];

		fprintf(stderr, "hiberbox-fs: chunk %s: %s\n", oid_format(id, hex), hb_errmsg(r));
	} else if (dst && skip + n > b.len) {
		r = -EIO;
	}

	pthread_mutex_lock(&c->lock);
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
			victim->hot_idx = hot_idx;
			if (dst)
				note_use(c, victim);
		} else {
			index_remove(c, (int32_t)(victim - c->e));
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

	cache_read(j->fs, &j->id, NULL, 0, 0, 0);
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
			int r = cache_read(fs, &c[k].id, dst + done, skip, n, 0);

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

/* Next index of the hot list to prefetch, or -1 when done.  Waits while the
 * window ahead of the readers is full; stops for good after a stall. */
static int64_t prefetch_next(struct chunk_cache *c)
{
	int64_t k = -1;

	pthread_mutex_lock(&c->lock);
	while (!c->pf_stop && c->pf_next < c->pf_count) {
		struct timespec until;
		uint32_t pos = c->pf_pos;
		int r;

		if (c->pf_next < pos + LOWER_PREFETCH_AHEAD) {
			k = c->pf_next++;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += LOWER_PREFETCH_STALL_MS / 1000;
		until.tv_nsec += (LOWER_PREFETCH_STALL_MS % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		r = pthread_cond_timedwait(&c->progress, &c->lock, &until);
		if (r == ETIMEDOUT && c->pf_pos == pos)
			c->pf_stop = true; /* nobody reads what we decode */
	}
	pthread_mutex_unlock(&c->lock);
	return k;
}

/* The last prefetch thread out: what it did goes to the log. */
static void prefetch_finish(struct hbfs *fs)
{
	struct chunk_cache *c = fs->cache;
	struct lower_stats st;

	pthread_mutex_lock(&c->lock);
	if (--c->pf_running) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->stats.prefetch_done = true;
	st = c->stats;
	pthread_mutex_unlock(&c->lock);
	fprintf(stderr, "hiberbox-fs: hot list: %u of %u chunks prefetched (%u failed), %u used "
			"so far, %" PRIu64 " ms after the start\n", st.prefetched, st.hot_count,
		st.prefetch_failed, st.prefetch_hits, (now_ns() - c->start_ns) / 1000000);
}

static void *fetch_ahead_main(void *arg)
{
	struct hbfs *fs = arg;
	struct chunk_cache *c = fs->cache;

	pthread_mutex_lock(&c->lock);
	while (!c->pf_stop && c->fa_next < c->pf_count) {
		uint32_t k;

		if (c->fa_next >= c->pf_pos + LOWER_FETCH_AHEAD) {
			pthread_cond_wait(&c->progress, &c->lock);
			continue;
		}
		k = c->fa_next++;
		pthread_mutex_unlock(&c->lock);
		(void)repo_fetch_near(fs->repo, &c->pf_list[k]); /* the decoding reports failures */
		hb_err_clear();
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void *prefetch_main(void *arg)
{
	struct hbfs *fs = arg;
	struct chunk_cache *c = fs->cache;
	int64_t k;

	while ((k = prefetch_next(c)) >= 0) {
		int r = cache_read(fs, &c->pf_list[k], NULL, 0, 0, (uint32_t)k + 1);

		pthread_mutex_lock(&c->lock);
		if (r < 0)
			c->stats.prefetch_failed++;
		else
			c->stats.prefetched++;
		pthread_mutex_unlock(&c->lock);
		hb_err_clear();
	}
	prefetch_finish(fs);
	return NULL;
}

void lower_prefetch_hot(struct hbfs *fs)
{
	struct chunk_cache *c = fs->cache;
	uint32_t count, threads = LOWER_PREFETCH_THREADS_LOCAL, map_size = 16, *map;
	const struct oid *hot = manifest_hot(fs->m, &count);

	if (!c || !count || c->pf_nthreads)
		return;
	while (map_size < 2 * count)
		map_size *= 2;
	map = calloc(map_size, sizeof(*map));
	for (uint32_t i = 0; map && i < count; i++) {
		uint32_t *slot = id_set_slot(map, map_size - 1, hot, &hot[i]);

		if (!*slot)
			*slot = i + 1;
	}
	if (!strncmp(repo_location(fs->repo), "s3://", 5))
		threads = LOWER_PREFETCH_THREADS_REMOTE;
	pthread_mutex_lock(&c->lock);
	c->pf_list = hot;
	c->pf_map = map; /* may be NULL: then only prefetched entries move it */
	c->pf_map_mask = map_size - 1;
	c->pf_count = count;
	c->stats.hot_count = count;
	c->pf_running = threads;
	pthread_mutex_unlock(&c->lock);
	for (uint32_t t = 0; t < threads; t++) {
		if (pthread_create(&c->pf_threads[t], NULL, prefetch_main, fs) != 0) {
			/* the threads never started count as finished */
			pthread_mutex_lock(&c->lock);
			c->pf_running -= threads - t - 1;
			pthread_mutex_unlock(&c->lock);
			prefetch_finish(fs);
			break;
		}
		c->pf_nthreads++;
	}
	if (store_tiered_remote(repo_store(fs->repo)))
		for (uint32_t t = 0; t < LOWER_FETCH_THREADS; t++) {
			if (pthread_create(&c->fa_threads[t], NULL, fetch_ahead_main, fs) != 0)
				break;
			c->fa_nthreads++;
		}
}

void lower_stats(struct hbfs *fs, struct lower_stats *out)
{
	struct chunk_cache *c = fs->cache;

	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->recorded = c->nhot;
	pthread_mutex_unlock(&c->lock);
}

/* The hot list for the next commit: the chunks this mount used first, in
 * that order, then those of the list it was given that it did not use, up to
 * HBFS_HOT_MAX.  A sandbox alternates between kinds of work (an agent's `ls`
 * one time, its test suite the next); the list keeps the recent ones' working
 * sets, and the prefetch follows the readers to whichever part they replay.
 * A mount that read nothing passes on what it was given. */
int lower_hot_list(struct hbfs *fs, struct oid **out, uint32_t *count)
{
	struct chunk_cache *c = fs->cache;
	uint32_t given, n = 0, size = 16, *seen;
	const struct oid *hot = manifest_hot(fs->m, &given);
	struct oid *ids;

	pthread_mutex_lock(&c->lock);
	while (size < 2 * (c->nhot + given))
		size *= 2;
	ids = malloc((c->nhot + given + 1) * sizeof(*ids));
	seen = calloc(size, sizeof(*seen));
	for (uint32_t pass = 0; ids && seen && pass < 2; pass++) {
		const struct oid *from = pass ? hot : c->hot;
		uint32_t m = pass ? given : c->nhot;

		for (uint32_t i = 0; i < m && n < HBFS_HOT_MAX; i++) {
			uint32_t *slot = id_set_slot(seen, size - 1, ids, &from[i]);

			if (*slot)
				continue;
			ids[n] = from[i];
			*slot = ++n;
		}
	}
	pthread_mutex_unlock(&c->lock);
	free(seen);
	if (ids && !seen) {
		free(ids);
		ids = NULL;
	}
	*out = ids;
	*count = n;
	return ids ? 0 : -ENOMEM;
}
