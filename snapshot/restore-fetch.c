/* snapshot restore, the read side: every chunk the restored files need,
 * fetched by pack with many range requests in flight (see restore-int.h).
 *
 * Plan: look every chunk use up in the index, sort the uses by pack and by
 * offset inside it, and cut each pack's needed blobs into ranges: blobs
 * closer than RESTORE_RANGE_GAP_BYTES share a range, of a size between
 * RESTORE_RANGE_MIN_BYTES and RESTORE_RANGE_MAX_BYTES chosen so that every
 * fetcher gets work.  A restore of a whole snapshot thus reads
 * each of its packs in one or two requests instead of one per chunk, and
 * a pack only partly needed costs a few ranges.  What the local cache
 * already holds (store_cached) is read from it, in ranges that each lie in
 * one cached piece, and not asked of the network again.
 *
 * Run: a pipeline.  f->fetchers threads each read one range at a time
 * (through the store, so a tiered store keeps it in the cache for a later
 * mount) and hand it to f->writers, which decode and verify each blob once
 * (a chunk used by several files or several times in one is decoded once)
 * and give it to f->put for each use.  Files are thus written while other
 * ranges are still downloading.  Memory: the ranges in flight plus at most
 * RESTORE_LANDED_MAX_BYTES landed and not yet written.
 *
 * Failures: a blob that fails verification drops the cached copy of its pack
 * (store_invalidate) and its range is read once more from the source before
 * the restore fails naming the file, the pack and the chunk.  A pack that is
 * gone (gc moved its chunks since the index was read) falls back to chunk
 * reads through repo_read_chunk, which reloads the index.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/chunk.h"
#include "snapshot/restore-int.h"
#include "util/error.h"
#include "util/workqueue.h"

/* One use of a chunk: bytes [off, off + size) of entry `file`. */
struct use {
	struct index_entry e;
	uint64_t off;
	uint32_t file;
	uint32_t size; /* as the manifest says */
};

struct range {
	struct restore_fetch_run *run;
	struct oid pack;
	uint64_t off, len; /* bytes of the pack */
	size_t first, end; /* uses [first, end), by offset in the pack */
};

struct restore_fetch_run {
	const struct restore_fetch *f;
	struct use *uses;
	size_t nuses;
	struct range *ranges;
	size_t nranges, cap_ranges;
	uint64_t range_max; /* bytes per range, for this restore */
	struct workqueue *pool; /* the fetchers */
	pthread_mutex_t budget_lock;
	pthread_cond_t budget_cond;
	uint64_t landed_bytes; /* fetched or being fetched, not yet written */
};

static int use_cmp(const void *a, const void *b)
{
	const struct use *x = a, *y = b;
	int c = index_entry_cmp_pack_offset(&x->e, &y->e);

	if (c)
		return c;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Every non-hole chunk of every file, located in the index.  Chunks missing
 * from it get one reload of the index (gc may have rewritten it). */
static int plan_uses(struct restore_fetch_run *run, const uint32_t *files, size_t nfiles)
{
	const struct restore_fetch *f = run->f;
	size_t n = 0, nmissing = 0;
	size_t *missing = NULL;
	char hex[OID_HEX_BYTES];
	int r = 0;

	for (size_t i = 0; i < nfiles; i++) {
		const struct manifest_node *node = manifest_node(f->m, files[i]);
		const struct manifest_chunk *ch = manifest_chunks(f->m, files[i]);

		for (uint32_t k = 0; k < node->nchunks; k++)
			n += !oid_is_zero(&ch[k].id);
	}
	run->uses = calloc(n ? n : 1, sizeof(*run->uses));
	missing = calloc(n ? n : 1, sizeof(*missing));
	if (!run->uses || !missing) {
		free(missing);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nfiles; i++) {
		const struct manifest_node *node = manifest_node(f->m, files[i]);
		const struct manifest_chunk *ch = manifest_chunks(f->m, files[i]);
		uint64_t off = 0;

		for (uint32_t k = 0; k < node->nchunks; off += ch[k].size, k++) {
			struct use *u = &run->uses[run->nuses];

			if (oid_is_zero(&ch[k].id))
				continue;
			*u = (struct use){ .off = off, .file = files[i], .size = ch[k].size };
			r = repo_index_lookup(f->repo, &ch[k].id, &u->e);
			if (r < 0)
				goto out;
			if (r == 0) {
				u->e.chunk = ch[k].id;
				missing[nmissing++] = run->nuses;
			}
			run->nuses++;
		}
	}
	r = 0;
	if (nmissing > 0 && (r = repo_refresh(f->repo)) < 0)
		goto out;
	for (size_t i = 0; i < nmissing; i++) {
		struct use *u = &run->uses[missing[i]];
		struct oid id = u->e.chunk;

		r = repo_index_lookup(f->repo, &id, &u->e);
		if (r < 0)
			goto out;
		if (r == 0) {
			r = hb_err(-EBADMSG, "restoring '%s': chunk %s is not in the index (missing "
					     "index file? run 'hiberbox check')",
				   f->paths[u->file], oid_format(&id, hex));
			goto out;
		}
	}
	r = 0;
	qsort(run->uses, run->nuses, sizeof(*run->uses), use_cmp);
out:
	free(missing);
	return r;
}

/* ---- ranges ---- */

#define CACHED_PIECES_MAX 4096

struct cached_pieces {
	struct {
		uint64_t off, len;
	} p[CACHED_PIECES_MAX];
	size_t n;
};

static int add_piece(uint64_t off, uint64_t len, void *arg)
{
	struct cached_pieces *c = arg;

	if (c->n < CACHED_PIECES_MAX) {
		c->p[c->n].off = off;
		c->p[c->n].len = len;
		c->n++;
	}
	return 0;
}

/* The cached piece holding all of [off, off + len), or -1. */
static long piece_holding(const struct cached_pieces *c, uint64_t off, uint64_t len)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->p[i].len == STORE_GET_ALL ||
		    (c->p[i].off <= off && off - c->p[i].off <= c->p[i].len &&
		     len <= c->p[i].len - (off - c->p[i].off)))
			return (long)i;
	return -1;
}

static int push_range(struct restore_fetch_run *run, const struct oid *pack, uint64_t off,
		      uint64_t len, size_t first, size_t end)
{
	if (run->nranges == run->cap_ranges) {
		size_t cap = run->cap_ranges ? run->cap_ranges * 2 : 64;
		void *p = realloc(run->ranges, cap * sizeof(*run->ranges));

		if (!p)
			return -ENOMEM;
		run->ranges = p;
		run->cap_ranges = cap;
	}
	run->ranges[run->nranges++] = (struct range){ run, *pack, off, len, first, end };
	return 0;
}

/* Cut the uses of one pack, [first, end), into ranges.  Blobs join the
 * current range when they are close enough and come from the same place
 * (the network, or one cached piece). */
static int plan_pack(struct restore_fetch_run *run, size_t first, size_t end,
		     struct cached_pieces *cached)
{
	const struct index_entry *pe = &run->uses[first].e;
	char name[REPO_NAME_BYTES];
	uint64_t r_off = 0, r_end = 0;
	long r_src = -2;
	size_t r_first = first;
	int r;

	cached->n = 0;
	repo_pack_name(&pe->pack, name);
	if ((r = store_cached(run->f->repo->store, name, add_piece, cached)) < 0)
		return r;
	for (size_t i = first; i < end; i++) {
		const struct index_entry *e = &run->uses[i].e;
		uint64_t b_off = e->offset, b_end = b_off + e->length;
		long src;

		if (i > first && e->offset == run->uses[i - 1].e.offset)
			continue; /* the same blob, another use */
		src = cached->n ? piece_holding(cached, b_off, e->length) : -1;
		if (r_src == src && b_off >= r_off && b_off <= r_end + RESTORE_RANGE_GAP_BYTES &&
		    b_end - r_off <= run->range_max) {
			if (b_end > r_end)
				r_end = b_end;
			continue;
		}
		if (r_src != -2 && (r = push_range(run, &pe->pack, r_off, r_end - r_off, r_first, i)) < 0)
			return r;
		r_src = src;
		r_off = b_off;
		r_end = b_end;
		r_first = i;
	}
	if (r_src != -2)
		return push_range(run, &pe->pack, r_off, r_end - r_off, r_first, end);
	return 0;
}

static int plan_ranges(struct restore_fetch_run *run)
{
	struct cached_pieces *cached = malloc(sizeof(*cached));
	uint64_t total = 0;
	int r = 0;

	if (!cached)
		return -ENOMEM;
	for (size_t i = 0; i < run->nuses; i++)
		if (i == 0 || run->uses[i].e.offset != run->uses[i - 1].e.offset ||
		    !oid_equal(&run->uses[i].e.pack, &run->uses[i - 1].e.pack))
			total += run->uses[i].e.length;
	run->range_max = total / ((uint64_t)RESTORE_RANGES_PER_FETCHER * run->f->fetchers + 1);
	if (run->range_max < RESTORE_RANGE_MIN_BYTES)
		run->range_max = RESTORE_RANGE_MIN_BYTES;
	if (run->range_max > RESTORE_RANGE_MAX_BYTES)
		run->range_max = RESTORE_RANGE_MAX_BYTES;
	for (size_t i = 0; i < run->nuses && r == 0;) {
		size_t end = i + 1;

		while (end < run->nuses && oid_equal(&run->uses[end].e.pack, &run->uses[i].e.pack))
			end++;
		r = plan_pack(run, i, end, cached);
		i = end;
	}
	free(cached);
	return r;
}

/* ---- fetching ---- */

static bool cancelled(const struct restore_fetch *f)
{
	return atomic_load(f->cancel) != 0;
}

/* Decode and verify one stored blob, as repo_read_chunk does after its read
 * (with the repository's dictionaries). */
static int decode_blob(struct repo *r, const struct index_entry *e, const void *blob,
		       struct buf *out)
{
	return repo_chunk_decode(r, &e->chunk, blob, e->length, e->raw_length, e->flags, out);
}

/* Hand the decoded chunk to every use [first, end) of it. */
static int put_uses(struct restore_fetch_run *run, size_t first, size_t end, const struct buf *chunk)
{
	const struct restore_fetch *f = run->f;
	char hex[OID_HEX_BYTES];
	int r = 0;

	for (size_t k = first; k < end && r == 0; k++) {
		const struct use *u = &run->uses[k];

		if (chunk->len != u->size)
			return hb_err(-EBADMSG, "restoring '%s': chunk %s has %zu bytes, the manifest "
						"says %u", f->paths[u->file], oid_format(&u->e.chunk, hex),
				      chunk->len, u->size);
		r = f->put(f->arg, u->file, u->off, chunk->data, chunk->len);
	}
	return r;
}

/* The pack is gone: gc moved its chunks after the index was read.  Read
 * them one by one, with repo_read_chunk's reload of the index. */
static int fetch_by_chunk(struct range *g, struct buf *chunk)
{
	struct restore_fetch_run *run = g->run;
	int r = 0;

	hb_err_clear();
	for (size_t i = g->first, j; i < g->end && r == 0; i = j) {
		const struct use *u = &run->uses[i];

		for (j = i + 1; j < g->end && run->uses[j].e.offset == u->e.offset;)
			j++;
		if (cancelled(run->f))
			return -ECANCELED;
		r = repo_read_chunk(run->f->repo, &u->e.chunk, chunk);
		if (r < 0)
			return hb_err_ctx(r, "restoring '%s'", run->f->paths[u->file]);
		r = put_uses(run, i, j, chunk);
	}
	return r;
}

/* Decode, verify and hand out every blob of a landed range (on a writer). */
static int write_range(struct range *g, struct buf *data)
{
	struct restore_fetch_run *run = g->run;
	const struct restore_fetch *f = run->f;
	struct store *store = f->repo->store;
	struct buf chunk = BUF_INIT;
	char name[REPO_NAME_BYTES], phex[OID_HEX_BYTES], chex[OID_HEX_BYTES];
	bool refetched = false;
	int r = 0;

	for (size_t i = g->first, j; i < g->end && r == 0; i = j) {
		const struct use *u = &run->uses[i];

		for (j = i + 1; j < g->end && run->uses[j].e.offset == u->e.offset;)
			j++;
		if (cancelled(f)) {
			r = -ECANCELED;
			break;
		}
		r = decode_blob(f->repo, &u->e, data->data + (u->e.offset - g->off), &chunk);
		if (r == -EBADMSG && !refetched) {
			/* A cached copy or a transfer may be bad: read the range once
			 * more from the source before calling the chunk damaged. */
			refetched = true;
			repo_pack_name(&g->pack, name);
			store_invalidate(store, name);
			r = store_get(store, name, g->off, g->len, data);
			if (r < 0) {
				r = hb_err_ctx(r, "restoring '%s': pack %s", f->paths[u->file],
					       oid_format(&g->pack, phex));
				break;
			}
			j = i; /* decode this blob again */
			continue;
		}
		if (r < 0) {
			r = hb_err_ctx(r, "restoring '%s': pack %s (chunk %s at %u)", f->paths[u->file],
				       oid_format(&g->pack, phex), oid_format(&u->e.chunk, chex),
				       u->e.offset);
			break;
		}
		r = put_uses(run, i, j, &chunk);
	}
	buf_free(&chunk);
	return r;
}

/* A range whose bytes have arrived, waiting for a writer. */
struct landed {
	struct range *g;
	struct buf data;
};

static void budget_release(struct restore_fetch_run *run, uint64_t bytes)
{
	pthread_mutex_lock(&run->budget_lock);
	run->landed_bytes -= bytes;
	pthread_cond_broadcast(&run->budget_cond);
	pthread_mutex_unlock(&run->budget_lock);
}

static void write_job(void *arg)
{
	struct landed *l = arg;
	struct restore_fetch_run *run = l->g->run;
	const struct restore_fetch *f = run->f;
	int r = 0;

	if (!cancelled(f)) {
		hb_err_clear();
		r = write_range(l->g, &l->data);
		if (r < 0 && r != -ECANCELED)
			f->fail(f->arg, r);
	}
	budget_release(run, l->g->len);
	buf_free(&l->data);
	free(l);
}

/* Wait until the landed ranges leave room for this one (memory stays
 * bounded however much slower the writers are than the network). */
static void budget_take(struct restore_fetch_run *run, uint64_t bytes)
{
	pthread_mutex_lock(&run->budget_lock);
	while (run->landed_bytes > 0 && run->landed_bytes + bytes > RESTORE_LANDED_MAX_BYTES &&
	       !cancelled(run->f))
		pthread_cond_wait(&run->budget_cond, &run->budget_lock);
	run->landed_bytes += bytes;
	pthread_mutex_unlock(&run->budget_lock);
}

/* On a fetcher: read one range and hand it to the writers. */
static int fetch_range(struct range *g)
{
	struct restore_fetch_run *run = g->run;
	const struct restore_fetch *f = run->f;
	struct landed *l = calloc(1, sizeof(*l));
	char name[REPO_NAME_BYTES], phex[OID_HEX_BYTES];
	int r;

	if (!l)
		return -ENOMEM;
	l->g = g;
	l->data.max = g->len;
	budget_take(run, g->len);
	repo_pack_name(&g->pack, name);
	r = cancelled(f) ? -ECANCELED : store_get(f->repo->store, name, g->off, g->len, &l->data);
	if (r == 0) {
		workqueue_submit(f->writers, write_job, l);
		return 0;
	}
	if (r == -ENOENT) {
		struct buf chunk = BUF_INIT;

		r = fetch_by_chunk(g, &chunk);
		buf_free(&chunk);
	} else if (r != -ECANCELED) {
		r = hb_err_ctx(r, "restoring '%s'%s: pack %s", f->paths[run->uses[g->first].file],
			       g->end - g->first > 1 ? " (and what shares its range)" : "",
			       oid_format(&g->pack, phex));
	}
	budget_release(run, g->len);
	buf_free(&l->data);
	free(l);
	return r;
}

static void range_job(void *arg)
{
	struct range *g = arg;
	const struct restore_fetch *f = g->run->f;
	int r;

	if (cancelled(f))
		return;
	hb_err_clear();
	r = fetch_range(g);
	if (r < 0 && r != -ECANCELED)
		f->fail(f->arg, r);
}

/* Ranges that fill many files first: creating files costs more than
 * receiving bytes, so that work starts while the big ranges of a few large
 * files are still on the way. */
static int range_cmp_uses(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	size_t nx = x->end - x->first, ny = y->end - y->first;

	if (nx != ny)
		return nx > ny ? -1 : 1;
	return oid_cmp(&x->pack, &y->pack) ? oid_cmp(&x->pack, &y->pack) : (x->off > y->off) - (x->off < y->off);
}

static void run_free(struct restore_fetch_run *run)
{
	workqueue_free(run->pool);
	if (run->f->writers)
		workqueue_wait(run->f->writers); /* they use the plan */
	pthread_mutex_destroy(&run->budget_lock);
	pthread_cond_destroy(&run->budget_cond);
	free(run->uses);
	free(run->ranges);
	free(run);
}

int restore_fetch_start(const struct restore_fetch *f, const uint32_t *files, size_t nfiles,
			struct restore_fetch_run **out)
{
	struct restore_fetch_run *run = calloc(1, sizeof(*run));
	int r;

	*out = NULL;
	if (!run)
		return -ENOMEM;
	run->f = f;
	pthread_mutex_init(&run->budget_lock, NULL);
	pthread_cond_init(&run->budget_cond, NULL);
	if ((r = plan_uses(run, files, nfiles)) < 0 || (r = plan_ranges(run)) < 0) {
		run_free(run);
		return r;
	}
	qsort(run->ranges, run->nranges, sizeof(*run->ranges), range_cmp_uses);
	/* Every range queued at once: submitting never blocks the caller. */
	run->pool = workqueue_new(f->fetchers, (unsigned)(run->nranges + 1));
	if (!run->pool) {
		run_free(run);
		return -ENOMEM;
	}
	for (size_t i = 0; i < run->nranges; i++)
		workqueue_submit(run->pool, range_job, &run->ranges[i]);
	*out = run;
	return 0;
}

void restore_fetch_wait(struct restore_fetch_run *run)
{
	if (run)
		run_free(run);
}
