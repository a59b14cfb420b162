/* The repository writer: turns file contents into stored chunks and commits
 * manifests.
 *
 * Content is cut into chunks (chunker.c) in the calling thread, hashed there
 * (XXH3 is an order of magnitude faster than zstd), and each chunk the
 * repository does not hold yet is compressed on the writer's worker pool.  A
 * worker appends its blob to the open pack; whoever fills a pack uploads it
 * outside the lock, so several packs are in flight at once.  Chunks written by
 * this writer are visible to the rest of the repository only after commit has
 * stored their packs and index file (commit order: packs, index, manifest,
 * refs), which is what keeps readers and crashes safe.
 *
 * Dictionary (repositories of format 2, chunk.h, dict.h): a writer uses the
 * repository's dictionary for chunks up to CHUNK_DICT_MAX_RAW_BYTES.  When
 * the repository has none yet (its first snapshot), new small chunks are kept
 * aside (copied) instead of compressed until WRITER_DICT_SAMPLE_BYTES of them
 * are there, or the snapshot ends; then a dictionary is trained on them,
 * stored (before any pack that uses it), and they are compressed with it.
 * Too few of them (a small first snapshot) train none: they are compressed
 * without, and the next writer tries again.
 *
 * Lock order: writer->lock, then the repository's index lock (via
 * repo_index_*); never the other way round.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "snapshot/chunk.h"
#include "snapshot/repo-int.h"
#include "snapshot/testhook.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/workqueue.h"

#define WRITER_BLOCK_BYTES (8u << 20) /* read and cut this much at a time */
#define WRITER_LOCK_WAIT_MS 60000
#define WRITER_PROGRESS_NS 100000000ull
/* Train once this much of sample-sized chunks waits, or this much in all. */
#define WRITER_DICT_SAMPLE_BYTES (2u << 20)
#define WRITER_DICT_DEFER_MAX_BYTES (16u << 20)

enum writer_dict_state {
	DICT_OFF,      /* a format 1 repository, or training found nothing to learn */
	DICT_COLLECT,  /* no dictionary yet: small new chunks wait in `deferred` */
	DICT_TRAINING, /* one thread trains; the others keep deferring */
	DICT_READY,    /* `dict` is set */
};

/* A small new chunk kept aside until the dictionary is there. */
struct deferred_chunk {
	struct oid id;
	uint8_t *data;
	uint32_t len;
};

struct deferred_list {
	struct deferred_chunk *items;
	size_t count, cap;
	uint64_t bytes, sample_bytes;
};

struct repo_writer {
	struct repo *repo;
	int level;
	struct workqueue *pool;
	struct repo_lock *lock;
	struct repo_progress progress;
	_Atomic uint64_t bytes_in;
	uint64_t last_progress_ns;

	pthread_mutex_t lock_m; /* guards everything below */
	struct pack_writer *pack;
	struct chunk_index *pending; /* chunks stored (or being stored) by this writer */
	struct index_entry *entries; /* of packs already uploaded */
	size_t nentries, cap;
	uint64_t new_chunks, new_bytes, new_raw_bytes;
	enum writer_dict_state dict_state;
	const struct chunk_dict *dict; /* owned by the repository */
	struct deferred_list deferred;
	int error;
	char errmsg[512];
};

static void writer_fail(struct repo_writer *w, int r)
{
	pthread_mutex_lock(&w->lock_m);
	if (!w->error) {
		w->error = r;
		hb_err_save(w->errmsg, sizeof(w->errmsg));
	}
	pthread_mutex_unlock(&w->lock_m);
}

int repo_writer_new(struct repo *r, const struct repo_writer_opts *opts, struct repo_writer **out)
{
	struct repo_writer *w = calloc(1, sizeof(*w));
	bool loaded;
	int rc;

	if (!w)
		return -ENOMEM;
	w->repo = r;
	w->level = opts && opts->zstd_level ? opts->zstd_level : r->zstd_level;
	if (opts)
		w->progress = opts->progress;
	pthread_mutex_init(&w->lock_m, NULL);
	w->pool = workqueue_new(opts ? opts->threads : 0, 0);
	w->pack = pack_writer_new();
	w->pending = chunk_index_new();
	if (!w->pool || !w->pack || !w->pending) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = repo_lock_acquire(r, false, WRITER_LOCK_WAIT_MS, &w->lock);
	if (rc < 0)
		goto fail;
	/* Dedup needs the whole index; load it now rather than in a worker.
	 * One loaded before the lock may predate another process's gc: a
	 * chunk it lists could be gone, so read it again under the lock. */
	pthread_rwlock_rdlock(&r->index_lock);
	loaded = r->index_loaded;
	pthread_rwlock_unlock(&r->index_lock);
	rc = loaded ? repo_refresh(r) : repo_load_index(r);
	if (rc < 0)
		goto fail;
	if (repo_has_dicts(r)) {
		rc = repo_dict_pick(r, &w->dict);
		if (rc < 0)
			goto fail;
		w->dict_state = w->dict ? DICT_READY : DICT_COLLECT;
	}
	*out = w;
	return 0;
fail:
	repo_writer_abort(w);
	return rc;
}

static void deferred_free(struct deferred_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].data);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void repo_writer_abort(struct repo_writer *w)
{
	if (!w)
		return;
	workqueue_free(w->pool);
	deferred_free(&w->deferred);
	if (w->lock)
		repo_lock_release(w->lock);
	pack_writer_free(w->pack);
	chunk_index_free(w->pending);
	free(w->entries);
	pthread_mutex_destroy(&w->lock_m);
	free(w);
}

/* Store a finished pack and record its entries.  Called without lock_m. */
static int upload_pack(struct repo_writer *w, struct buf *pack, struct pack_entry *pe, size_t n)
{
	char name[REPO_NAME_BYTES];
	struct oid id;
	int r;

	oid_compute(&w->repo->key, pack->data, pack->len, &id);
	repo_pack_name(&id, name);
	r = repo_put_named_by_content(w->repo, name, pack->data, pack->len, REPO_VERIFY_SIZE, NULL);
	if (r < 0)
		return r;
	pthread_mutex_lock(&w->lock_m);
	if (w->nentries + n > w->cap) {
		size_t cap = w->cap ? w->cap : 1024;
		void *p;

		while (cap < w->nentries + n)
			cap *= 2;
		p = realloc(w->entries, cap * sizeof(*w->entries));
		if (!p) {
			pthread_mutex_unlock(&w->lock_m);
			return -ENOMEM;
		}
		w->entries = p;
		w->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		struct index_entry *e = &w->entries[w->nentries++];

		e->chunk = pe[i].id;
		e->pack = id;
		e->offset = pe[i].offset;
		e->length = pe[i].length;
		e->raw_length = pe[i].raw_length;
		e->flags = pe[i].flags;
	}
	pthread_mutex_unlock(&w->lock_m);
	return 0;
}

/* Close the open pack (lock_m held) and upload it (lock_m released meanwhile). */
static int flush_pack_locked(struct repo_writer *w)
{
	struct buf pack = BUF_INIT;
	struct pack_entry *pe = NULL;
	size_t n = 0;
	int r;

	if (pack_writer_count(w->pack) == 0)
		return 0;
	r = pack_writer_finish(w->pack, &pack, &pe, &n);
	if (r < 0)
		return r;
	pthread_mutex_unlock(&w->lock_m);
	r = upload_pack(w, &pack, pe, n);
	pthread_mutex_lock(&w->lock_m);
	buf_free(&pack);
	free(pe);
	return r;
}

/* Add one encoded chunk unless another worker got there first (reserved: the
 * chunk is in `pending` already, put there when it was deferred). */
static int store_chunk(struct repo_writer *w, const struct oid *id, const struct buf *blob,
		       uint32_t raw_len, uint32_t flags, bool reserved)
{
	struct index_entry e = { .chunk = *id };
	int r;

	pthread_mutex_lock(&w->lock_m);
	r = reserved ? 1 : chunk_index_add(w->pending, &e);
	if (r <= 0)
		goto out; /* already stored by this writer, or -ENOMEM */
	r = pack_writer_add(w->pack, id, blob->data, (uint32_t)blob->len, raw_len, flags);
	if (r < 0)
		goto out;
	w->new_chunks++;
	w->new_bytes += blob->len;
	w->new_raw_bytes += raw_len;
	if (pack_writer_bytes(w->pack) >= PACK_TARGET_BYTES)
		r = flush_pack_locked(w);
out:
	pthread_mutex_unlock(&w->lock_m);
	return r < 0 ? r : 0;
}

/* A group of compress jobs the submitting thread waits for. */
struct batch {
	pthread_mutex_t m;
	pthread_cond_t done;
	unsigned remaining;
};

struct compress_job {
	struct repo_writer *w;
	struct batch *batch;
	const uint8_t *data;
	uint32_t len;
	struct oid id;
	const struct chunk_dict *dict;
	bool reserved;
};

static void compress_job_run(void *arg)
{
	struct compress_job *j = arg;
	struct buf blob = BUF_INIT;
	uint32_t flags = 0;
	int r;

	r = chunk_encode(j->w->level, j->dict, j->data, j->len, &blob, &flags);
	if (r == 0)
		r = store_chunk(j->w, &j->id, &blob, j->len, flags, j->reserved);
	if (r < 0)
		writer_fail(j->w, r);
	buf_free(&blob);
	pthread_mutex_lock(&j->batch->m);
	if (--j->batch->remaining == 0)
		pthread_cond_signal(&j->batch->done);
	pthread_mutex_unlock(&j->batch->m);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n > 0 && p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

/* A growing chunk list of one file. */
struct chunk_list {
	struct manifest_chunk *items;
	uint32_t count, cap;
};

static int chunk_list_add(struct chunk_list *l, const struct oid *id, uint32_t size)
{
	if (l->count == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 16;
		void *p = realloc(l->items, cap * sizeof(*l->items));

		if (!p)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	l->items[l->count].id = *id;
	l->items[l->count].size = size;
	l->count++;
	return 0;
}

static void report_progress(struct repo_writer *w, uint64_t n)
{
	uint64_t total = atomic_fetch_add(&w->bytes_in, n) + n, t;

	if (!w->progress.update)
		return;
	t = now_ns();
	pthread_mutex_lock(&w->lock_m);
	if (t - w->last_progress_ns >= WRITER_PROGRESS_NS) {
		w->last_progress_ns = t;
		w->progress.update(w->progress.arg, "storing", total, 0);
	}
	pthread_mutex_unlock(&w->lock_m);
}

static void batch_run(struct repo_writer *w, struct compress_job *jobs, size_t njobs)
{
	struct batch batch = { .remaining = (unsigned)njobs };

	if (!njobs)
		return;
	pthread_mutex_init(&batch.m, NULL);
	pthread_cond_init(&batch.done, NULL);
	/* Submit only once the array no longer moves. */
	for (size_t i = 0; i < njobs; i++) {
		jobs[i].batch = &batch;
		workqueue_submit(w->pool, compress_job_run, &jobs[i]);
	}
	pthread_mutex_lock(&batch.m);
	while (batch.remaining > 0)
		pthread_cond_wait(&batch.done, &batch.m);
	pthread_mutex_unlock(&batch.m);
	pthread_mutex_destroy(&batch.m);
	pthread_cond_destroy(&batch.done);
}

static int writer_error(struct repo_writer *w)
{
	int r;

	pthread_mutex_lock(&w->lock_m);
	r = w->error;
	if (r < 0)
		hb_err(r, "%s", w->errmsg);
	pthread_mutex_unlock(&w->lock_m);
	return r;
}

/* Keep a new small chunk aside (lock_m held; it is in `pending` already).
 * @return 0 or -ENOMEM. */
static int defer_locked(struct repo_writer *w, const struct oid *id, const uint8_t *data,
			uint32_t len)
{
	struct deferred_list *l = &w->deferred;
	uint8_t *copy;

	if (l->count == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		void *p = realloc(l->items, cap * sizeof(*l->items));

		if (!p)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	l->items[l->count++] = (struct deferred_chunk){ *id, copy, len };
	l->bytes += len;
	if (len <= DICT_SAMPLE_MAX_RAW_BYTES)
		l->sample_bytes += len;
	return 0;
}

static bool train_due_locked(const struct repo_writer *w)
{
	return w->dict_state == DICT_COLLECT &&
	       (w->deferred.sample_bytes >= WRITER_DICT_SAMPLE_BYTES ||
		w->deferred.bytes >= WRITER_DICT_DEFER_MAX_BYTES);
}

/* Compress and store deferred chunks (with dict, may be NULL), then free them. */
static int flush_deferred(struct repo_writer *w, struct deferred_list *l,
			  const struct chunk_dict *dict)
{
	struct compress_job *jobs = l->count ? calloc(l->count, sizeof(*jobs)) : NULL;

	if (l->count && !jobs) {
		deferred_free(l);
		return -ENOMEM;
	}
	for (size_t i = 0; i < l->count; i++)
		jobs[i] = (struct compress_job){ .w = w, .data = l->items[i].data,
						 .len = l->items[i].len, .id = l->items[i].id,
						 .dict = dict, .reserved = true };
	batch_run(w, jobs, l->count);
	free(jobs);
	deferred_free(l);
	return writer_error(w);
}

/* Train the dictionary on the deferred chunks, store it, and compress them
 * with it.  at_end: the snapshot is complete, train on whatever there is. */
static int writer_train(struct repo_writer *w, bool at_end)
{
	struct deferred_list mine, more;
	struct buf samples = BUF_INIT, dict = BUF_INIT;
	const struct chunk_dict *d = NULL;
	size_t *sizes = NULL;
	unsigned n = 0;
	int r = 0;

	pthread_mutex_lock(&w->lock_m);
	if (w->dict_state != DICT_COLLECT || (!at_end && !train_due_locked(w))) {
		pthread_mutex_unlock(&w->lock_m);
		return 0;
	}
	w->dict_state = DICT_TRAINING;
	mine = w->deferred;
	memset(&w->deferred, 0, sizeof(w->deferred));
	pthread_mutex_unlock(&w->lock_m);

	sizes = malloc((mine.count ? mine.count : 1) * sizeof(*sizes));
	r = sizes ? buf_reserve(&samples, mine.sample_bytes ? mine.sample_bytes : 1) : -ENOMEM;
	for (size_t i = 0; i < mine.count && r == 0; i++) {
		if (mine.items[i].len > DICT_SAMPLE_MAX_RAW_BYTES)
			continue;
		buf_append(&samples, mine.items[i].data, mine.items[i].len);
		sizes[n++] = mine.items[i].len;
	}
	if (r == 0)
		r = dict_train(samples.data, sizes, n, &dict);
	if (r == 0)
		r = repo_dict_add(w->repo, &dict, &d);
	if (r == -ENODATA)
		r = 0; /* nothing worth learning: go on without */
	buf_free(&samples);
	buf_free(&dict);
	free(sizes);

	pthread_mutex_lock(&w->lock_m);
	w->dict = d;
	w->dict_state = d ? DICT_READY : DICT_OFF;
	more = w->deferred; /* deferred by others meanwhile; no more from now on */
	memset(&w->deferred, 0, sizeof(w->deferred));
	pthread_mutex_unlock(&w->lock_m);
	if (r < 0) {
		deferred_free(&mine);
		deferred_free(&more);
		return r;
	}
	r = flush_deferred(w, &mine, d);
	if (r == 0)
		r = flush_deferred(w, &more, d);
	else
		deferred_free(&more);
	return r;
}

/* Cut data[0..len) into chunks (all of it if eof, else leaving a tail shorter
 * than the largest chunk), store the new ones, append refs to list.
 * @return the number of bytes consumed, or -errno. */
static ssize_t process_window(struct repo_writer *w, const uint8_t *data, size_t len, bool eof,
			      struct chunk_list *list)
{
	const struct chunker_params *cp = &w->repo->chunker;
	struct compress_job *jobs = NULL;
	size_t pos = 0, njobs = 0, cap = 0;
	bool train = false;
	int r = 0;

	while (pos < len && (eof || len - pos >= cp->max_bytes)) {
		size_t n = chunker_cut(cp, data + pos, len - pos);
		struct oid id = { { 0 } };

		if (!all_zero(data + pos, n)) {
			struct index_entry e = { .chunk = { { 0 } } };
			const struct chunk_dict *dict = NULL;

			oid_compute(&w->repo->key, data + pos, n, &id);
			r = repo_index_lookup(w->repo, &id, &e);
			if (r < 0)
				break;
			if (r == 0) {
				pthread_mutex_lock(&w->lock_m);
				r = chunk_index_lookup(w->pending, &id, &e);
				if (r == 0 && n <= CHUNK_DICT_MAX_RAW_BYTES &&
				    (w->dict_state == DICT_COLLECT || w->dict_state == DICT_TRAINING)) {
					e.chunk = id;
					r = chunk_index_add(w->pending, &e);
					if (r > 0)
						r = defer_locked(w, &id, data + pos, (uint32_t)n);
					train |= train_due_locked(w);
					r = r < 0 ? r : 1; /* handled */
				}
				dict = w->dict;
				pthread_mutex_unlock(&w->lock_m);
				if (r < 0)
					break;
			}
			if (r == 0) {
				if (njobs == cap) {
					size_t c = cap ? cap * 2 : 64;
					void *p = realloc(jobs, c * sizeof(*jobs));

					if (!p) {
						r = -ENOMEM;
						break;
					}
					jobs = p;
					cap = c;
				}
				jobs[njobs++] = (struct compress_job){ .w = w, .data = data + pos,
								       .len = (uint32_t)n, .id = id,
								       .dict = dict };
			}
		}
		r = chunk_list_add(list, &id, (uint32_t)n);
		if (r < 0)
			break;
		pos += n;
	}
	batch_run(w, jobs, njobs);
	free(jobs);
	if (r < 0)
		return r;
	r = writer_error(w);
	if (r == 0 && train)
		r = writer_train(w, false);
	if (r < 0)
		return r;
	report_progress(w, pos);
	return (ssize_t)pos;
}

/* Length of the hole at file offset pos, if it is worth skipping (at least
 * WRITER_HOLE_MIN_BYTES); 0 if there is data at pos or the filesystem cannot
 * say.  A sparse file's holes are then recorded without reading gigabytes of
 * zeros. */
#define WRITER_HOLE_MIN_BYTES (1u << 20)
#define WRITER_HOLE_REF_BYTES (1u << 30) /* one chunk-list entry per GiB of hole */

static uint64_t hole_at(int fd, uint64_t pos)
{
	off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
	struct stat st;

	if (data < 0) {
		if (errno != ENXIO || fstat(fd, &st) < 0 || (uint64_t)st.st_size <= pos)
			return 0;
		data = st.st_size; /* a hole up to the end of the file */
	}
	if ((uint64_t)data < pos + WRITER_HOLE_MIN_BYTES)
		return 0;
	return (uint64_t)data - pos;
}

int repo_writer_add_fd(struct repo_writer *w, int fd, struct manifest_chunk **chunks,
		       uint32_t *count, uint64_t *size)
{
	static const struct oid hole_id;
	struct chunk_list list = { 0 };
	uint8_t *block = malloc(WRITER_BLOCK_BYTES);
	size_t have = 0;
	off_t start = lseek(fd, 0, SEEK_CUR);
	uint64_t total = 0, pos = start > 0 ? (uint64_t)start : 0;
	bool eof = false;
	int r = 0;

	if (!block)
		return -ENOMEM;
	for (;;) {
		ssize_t n;
		uint64_t hole = eof ? 0 : hole_at(fd, pos);

		if (hole) {
			/* Close the data before the hole, record the hole, go on after it. */
			if (have) {
				n = process_window(w, block, have, true, &list);
				if (n < 0) {
					r = (int)n;
					goto out;
				}
				have = 0;
			}
			for (uint64_t left = hole; left > 0;) {
				uint32_t piece = left > WRITER_HOLE_REF_BYTES ? WRITER_HOLE_REF_BYTES
									     : (uint32_t)left;

				r = chunk_list_add(&list, &hole_id, piece);
				if (r < 0)
					goto out;
				left -= piece;
			}
			pos += hole;
			total += hole;
			report_progress(w, hole);
		}
		while (!eof && have < WRITER_BLOCK_BYTES) {
			/* pread: hole_at() moves the file offset. */
			n = pread(fd, block + have, WRITER_BLOCK_BYTES - have, (off_t)pos);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				r = hb_err(-errno, "read: %s", strerror(errno));
				goto out;
			}
			if (n == 0)
				eof = true;
			have += (size_t)n;
			total += (uint64_t)n;
			pos += (uint64_t)n;
			/* Stop filling at the start of a large hole. */
			if (!eof && n > 0 && hole_at(fd, pos))
				break;
		}
		if (have == 0) {
			if (eof)
				break;
			continue;
		}
		n = process_window(w, block, have, eof, &list);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		memmove(block, block + n, have - (size_t)n);
		have -= (size_t)n;
		if (!eof)
			test_hook_wait("HIBERBOX_TEST_CREATE_MIDREAD_WAIT");
		if (eof && have == 0)
			break;
	}
	*chunks = list.items;
	*count = list.count;
	if (size)
		*size = total;
	list.items = NULL;
out:
	free(list.items);
	free(block);
	return r;
}

int repo_writer_add_bytes(struct repo_writer *w, const void *data, size_t len,
			  struct manifest_chunk **chunks, uint32_t *count)
{
	struct chunk_list list = { 0 };
	const uint8_t *p = data;
	size_t pos = 0;

	while (pos < len) {
		size_t window = len - pos > WRITER_BLOCK_BYTES ? WRITER_BLOCK_BYTES : len - pos;
		bool eof = pos + window == len;
		ssize_t n = process_window(w, p + pos, window, eof, &list);

		if (n < 0) {
			free(list.items);
			return (int)n;
		}
		pos += (size_t)n;
	}
	*chunks = list.items;
	*count = list.count;
	return 0;
}

static void source_ref_name(const char *host, const char *source, char *out, size_t size)
{
	XXH128_hash_t h = XXH3_128bits_withSeed(source, strlen(source), XXH3_64bits(host, strlen(host)));

	snprintf(out, size, REPO_SOURCES_PREFIX "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
}

int repo_source_ref_get(struct repo *r, const char *host, const char *source, struct oid *out)
{
	char name[REPO_NAME_BYTES];
	struct buf b = { .max = 4096 };
	int rc;

	source_ref_name(host, source, name, sizeof(name));
	rc = store_get(r->store, name, 0, STORE_GET_ALL, &b);
	if (rc == 0 && (b.len < 2 * OID_BYTES || oid_parse_prefix((const char *)b.data, out) < 0))
		rc = -EBADMSG;
	buf_free(&b);
	if (rc < 0)
		hb_err_clear();
	return rc;
}

/* Every chunk the manifest names must be in the index now.  Lists reused
 * rather than written (a parent's unchanged files, a mount's lower files and
 * earlier commits) could name chunks that a gc removed after they were read:
 * their snapshot was removed while still in use.  Such a snapshot would be
 * recorded and never restorable, so it is refused here.  The index was read
 * under our lock and this writer's own entries were added to it; gc cannot
 * run until we release the lock. */
static int check_references(struct repo_writer *w, const struct manifest_builder *b)
{
	uint32_t n = manifest_builder_count(b);

	for (uint32_t i = 0; i < n; i++) {
		uint32_t count;
		const struct manifest_chunk *c = manifest_builder_chunks(b, i, &count);
		struct oid missing;
		char hex[OID_HEX_BYTES];
		size_t len;
		const char *name;
		int rc;

		if (!count)
			continue;
		rc = repo_has_chunks(w->repo, c, count, &missing);
		if (rc < 0)
			return rc;
		if (rc == 1)
			continue;
		name = manifest_builder_name(b, i, &len);
		return hb_err(-ESTALE,
			      "chunk %s of '%.*s' is no longer in the repository (the snapshot "
			      "it came from was removed and garbage-collected while in use, or "
			      "an index file is lost: see 'hiberbox check'); snapshot not "
			      "recorded",
			      oid_format(&missing, hex), (int)(len > 200 ? 200 : len), name);
	}
	return 0;
}

/* Remove the manifest and index file (each if set) that a commit stored,
 * keeping the message of the failure that made it give up; one that cannot
 * be removed is named in it, for 'hiberbox snapshot rm' or gc. */
static void withdraw(struct repo *r, const char *manifest, const char *index)
{
	char msg[1024];
	int rm_manifest = 0, rm_index = 0;

	hb_err_save(msg, sizeof(msg));
	if (manifest && manifest[0])
		rm_manifest = store_remove(r->store, manifest);
	if (index && index[0])
		rm_index = store_remove(r->store, index);
	if ((rm_manifest < 0 && rm_manifest != -ENOENT) || (rm_index < 0 && rm_index != -ENOENT))
		hb_err(-ESTALE, "%s (but %s, stored before, could not be removed: remove it by hand)", msg,
		       rm_manifest < 0 && rm_manifest != -ENOENT ? manifest : index);
	else
		hb_err(-ESTALE, "%s", msg);
}

int repo_writer_commit(struct repo_writer *w, struct manifest_builder *b,
		       struct manifest_info *info, const char *tag, struct oid *out)
{
	struct repo *r = w->repo;
	struct buf data = BUF_INIT;
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES + 1];
	char index_name[REPO_NAME_BYTES] = "";
	bool manifest_ours = false, index_ours = false;
	struct oid id;
	int rc;

	workqueue_wait(w->pool);
	/* The first snapshot of a small tree: train on what there is. */
	rc = writer_train(w, true);
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&w->lock_m);
	rc = w->error;
	if (rc < 0)
		hb_err(rc, "%s", w->errmsg);
	else
		rc = flush_pack_locked(w);
	pthread_mutex_unlock(&w->lock_m);
	if (rc < 0)
		goto out;
	if (tag) {
		rc = repo_tag_valid(tag);
		if (rc < 0)
			goto out;
	}
	/* Our packs, and the chunks we reuse, are safe from gc only while the
	 * lock is ours. */
	rc = repo_lock_check(w->lock);
	if (rc < 0)
		goto out;
	test_hook_wait("HIBERBOX_TEST_COMMIT_WAIT");
	/* Index after packs: an index entry never points at a missing pack. */
	if (w->nentries > 0) {
		rc = repo_has_dicts(r) ? index_file_encode_v2(w->entries, w->nentries, &data)
				       : index_file_encode(w->entries, w->nentries, &data);
		if (rc < 0)
			goto out;
		oid_compute(&r->key, data.data, data.len, &id);
		repo_index_name(&id, name);
		rc = repo_put_named_by_content(r, name, data.data, data.len, REPO_VERIFY_BYTES,
					       &index_ours);
		if (rc < 0)
			goto out;
		if (index_ours)
			memcpy(index_name, name, sizeof(name));
		rc = repo_index_add(r, w->entries, w->nentries);
		if (rc < 0)
			goto out;
	}
	/* Manifest after index: every chunk it names can be found. */
	rc = check_references(w, b);
	if (rc < 0)
		goto out;
	info->new_chunks = w->new_chunks;
	info->new_bytes = w->new_bytes;
	info->new_raw_bytes = w->new_raw_bytes;
	buf_reset(&data);
	rc = manifest_builder_encode(b, info, &data);
	if (rc < 0)
		goto out;
	oid_compute(&r->key, data.data, data.len, &id);
	repo_snapshot_name(&id, name);
	rc = repo_put_named_by_content(r, name, data.data, data.len, REPO_VERIFY_BYTES,
				       &manifest_ours);
	if (rc < 0)
		goto out;
	/* Our lock may have been taken from us since repo_lock_check (we were
	 * stopped in between): if a gc ran, what we stored may name data it
	 * removed, and our index may point into packs it removed, which the
	 * next writer would take for stored.  Take both back. */
	rc = repo_lock_gc_ran(w->lock);
	if (rc < 0) {
		withdraw(r, manifest_ours ? name : NULL, index_name);
		goto out;
	}
	/* Refs last: a name never points at a snapshot that is not complete. */
	if (tag) {
		rc = repo_tag_set(r, tag, &id);
		if (rc < 0)
			goto out;
	}
	if (info->source[0]) {
		source_ref_name(info->host, info->source, name, sizeof(name));
		oid_format(&id, hex);
		strcat(hex, "\n");
		rc = store_put(r->store, name, hex, strlen(hex), 0);
		if (rc < 0)
			goto out;
	}
	*out = id;
out:
	buf_free(&data);
	repo_writer_abort(w);
	return rc;
}
