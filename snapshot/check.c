/* Repository verification: is every snapshot restorable, and is everything on
 * the store what it claims to be?
 *
 * Structure (always): the config loads; every index file decodes and is named
 * by the hash of its bytes; every pack's trailer parses (read by two ranged
 * reads of its tail, so checking a remote repository does not download it)
 * and agrees with the index entries pointing into it; every pack an index
 * entry names exists; every dictionary a chunk needs loads and matches its
 * id (dictionaries no chunk uses are notes); every manifest decodes; every chunk a manifest
 * references is in the index; tags point at existing snapshots.
 *
 * Data (read_data): every pack is read whole and every blob in it decoded and
 * verified against its chunk id, and each snapshot using a corrupt chunk is
 * named with the first file that uses it.
 *
 * Everything is read from the repository itself, past a local cache
 * (store_tiered_read_remote), which holds this host's copies.
 *
 * Each problem is one line on opts->report; packs that no index refers to are
 * garbage (a crashed writer's leftovers, which gc removes), reported as notes
 * and not counted as errors.  check takes a shared lock, so that no gc
 * removes objects while it looks; writers, which only add objects, may run
 * beside it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/chunk.h"
#include "snapshot/repo-int.h"
#include "util/array.h"
#include "util/error.h"
#include "util/workqueue.h"

#define CHECK_LOCK_WAIT_MS 10000
/* Packs are checked in parallel: CPU-bound locally, latency-bound on S3. */
#define CHECK_MIN_THREADS 4
#define CHECK_MAX_THREADS 8

struct check_pack {
	struct oid id;
	uint64_t size;
	bool indexed;
};

struct check {
	struct repo *r;
	const struct repo_check_opts *opts;
	struct repo_check_stats *stats;
	/* Every entry of every readable index file, and the merged view. */
	struct index_entry *entries;
	size_t nentries, entries_cap;
	struct chunk_index *idx;
	/* Packs on the store, sorted by id. */
	struct check_pack *packs;
	size_t npacks, packs_cap;
	/* Packs named by index entries but missing from the store. */
	struct chunk_index *missing_packs;
	/* Chunks whose stored blob failed verification (read_data). */
	struct chunk_index *corrupt;
	uint64_t bytes_done, bytes_total;
	uint64_t snapshots_total;
	/* Guards stats, the report stream, progress and fatal while packs are
	 * checked by several threads. */
	pthread_mutex_t mutex;
	int fatal;
	char fatal_msg[512];
};

static void report(struct check *c, bool error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct check *c, bool error, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->mutex);
	if (error)
		c->stats->errors++;
	if (c->opts->report) {
		if (!error)
			fputs("note: ", c->opts->report);
		va_start(ap, fmt);
		vfprintf(c->opts->report, fmt, ap);
		va_end(ap);
		fputc('\n', c->opts->report);
		fflush(c->opts->report);
	}
	pthread_mutex_unlock(&c->mutex);
}

static void progress(struct check *c, const char *phase, uint64_t done, uint64_t total)
{
	if (c->opts->progress.update)
		c->opts->progress.update(c->opts->progress.arg, phase, done, total);
}

static int pack_cmp(const void *a, const void *b)
{
	return oid_cmp(&((const struct check_pack *)a)->id, &((const struct check_pack *)b)->id);
}

static int pack_entry_by_offset(const void *a, const void *b)
{
	const struct pack_entry *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static struct check_pack *find_pack(struct check *c, const struct oid *id)
{
	struct check_pack key = { .id = *id };

	if (!c->npacks)
		return NULL;
	return bsearch(&key, c->packs, c->npacks, sizeof(*c->packs), pack_cmp);
}

static bool in_set(struct chunk_index *set, const struct oid *id)
{
	struct index_entry e;

	return chunk_index_lookup(set, id, &e) > 0;
}

static int add_to_set(struct chunk_index *set, const struct oid *id)
{
	struct index_entry e = { .chunk = *id };
	int r = chunk_index_add(set, &e);

	return r < 0 ? r : 0;
}

/* chunk_decode's message starts with "chunk <id>: "; the report line names
 * the chunk itself, with its pack and offset. */
static const char *reason(int r)
{
	const char *m = hb_errmsg(r);

	if (strncmp(m, "chunk ", 6) == 0 && strlen(m) > 6 + 2 * OID_BYTES + 2 &&
	    m[6 + 2 * OID_BYTES] == ':')
		return m + 6 + 2 * OID_BYTES + 2;
	return m;
}

/* ---- config ---- */

static int check_config(struct check *c)
{
	int r = repo_config_reread(c->r);

	if (r == -ENOMEM)
		return r;
	if (r < 0)
		report(c, true, "config: %s", hb_errmsg(r));
	return 0;
}

/* ---- index files ---- */

struct name_list {
	char (*names)[REPO_NAME_BYTES];
	uint64_t *sizes;
	size_t count, cap;
};

static int list_name(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct name_list *l = arg;

	if (l->count == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *n = realloc(l->names, cap * sizeof(*l->names));

		if (!n)
			return -ENOMEM;
		l->names = n;
		n = realloc(l->sizes, cap * sizeof(*l->sizes));
		if (!n)
			return -ENOMEM;
		l->sizes = n;
		l->cap = cap;
	}
	snprintf(l->names[l->count], REPO_NAME_BYTES, "%s", name);
	l->sizes[l->count++] = size;
	return 0;
}

static void name_list_free(struct name_list *l)
{
	free(l->names);
	free(l->sizes);
}

static int check_index_files(struct check *c)
{
	struct name_list files = { 0 };
	struct buf b = { .max = REPO_INDEX_FILE_MAX_BYTES };
	int r;

	r = store_list(c->r->store, REPO_INDEX_PREFIX, list_name, &files);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < files.count; i++) {
		const char *name = files.names[i];
		struct index_entry *e = NULL;
		struct oid want, got;
		size_t n = 0;

		progress(c, "check: index", i, files.count);
		r = store_get(c->r->store, name, 0, STORE_GET_ALL, &b);
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			report(c, true, "index file %s: %s", name, hb_errmsg(r));
			continue;
		}
		r = index_file_decode(b.data, b.len, &e, &n);
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			report(c, true, "index file %s: %s", name, hb_errmsg(r));
			continue;
		}
		oid_compute(&c->r->key, b.data, b.len, &got);
		if (repo_name_to_oid(name, &want) < 0 || !oid_equal(&want, &got))
			report(c, true, "index file %s: content does not match its name", name);
		for (size_t k = 0; k < n; k++) {
			r = array_grow((void **)&c->entries, &c->entries_cap, c->nentries,
				 sizeof(*c->entries));
			if (r == 0)
				r = chunk_index_add(c->idx, &e[k]);
			if (r < 0) {
				free(e);
				goto out;
			}
			c->entries[c->nentries++] = e[k];
		}
		free(e);
	}
	r = 0;
out:
	buf_free(&b);
	name_list_free(&files);
	return r;
}

/* ---- dictionaries ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Every dictionary an index entry names must load and verify; every one on
 * the store too (a note when no chunk uses it). */
static int check_dicts(struct check *c)
{
	uint32_t *on_store = NULL, *used = NULL;
	size_t nstore = 0, nused = 0;
	char name[DICT_NAME_BYTES];
	int r;

	r = repo_dict_numbers(c->r, &on_store, &nstore);
	if (r < 0)
		return r;
	used = malloc((c->nentries ? c->nentries : 1) * sizeof(*used));
	if (!used) {
		free(on_store);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nentries; i++)
		if (chunk_flags_dict(c->entries[i].flags))
			used[nused++] = chunk_flags_dict(c->entries[i].flags);
	qsort(used, nused, sizeof(*used), cmp_u32);
	for (size_t i = 0; i < nused;) {
		const struct chunk_dict *d;
		size_t j = i;

		while (j < nused && used[j] == used[i])
			j++;
		r = repo_dict_for(c->r, used[i] << CHUNK_DICT_SHIFT | CHUNK_FLAG_DICT, &d);
		if (r == -ENOMEM)
			goto out;
		if (r < 0)
			report(c, true, "%s (%zu chunk%s use it)", hb_errmsg(r), j - i,
			       j - i == 1 ? "" : "s");
		i = j;
	}
	for (size_t i = 0; i < nstore; i++) {
		const struct chunk_dict *d;

		if (bsearch(&on_store[i], used, nused, sizeof(*used), cmp_u32))
			continue; /* checked above */
		dict_name(on_store[i], name);
		r = repo_dict_for(c->r, on_store[i] << CHUNK_DICT_SHIFT | CHUNK_FLAG_DICT, &d);
		if (r == -ENOMEM)
			goto out;
		if (r < 0)
			report(c, true, "%s", hb_errmsg(r));
		else
			report(c, false, "dictionary %s is used by no chunk ('hiberbox gc' removes it)",
			       name);
	}
	r = 0;
out:
	free(on_store);
	free(used);
	return r;
}

/* ---- packs ---- */

static int list_pack(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct check *c = arg;
	char expect[REPO_NAME_BYTES];
	struct oid id;

	if (repo_name_to_oid(name, &id) < 0 || (repo_pack_name(&id, expect), strcmp(expect, name))) {
		report(c, false, "%s is not named like a pack (ignored)", name);
		return 0;
	}
	if (array_grow((void **)&c->packs, &c->packs_cap, c->npacks, sizeof(*c->packs)) < 0)
		return -ENOMEM;
	c->packs[c->npacks++] = (struct check_pack){ .id = id, .size = size };
	c->bytes_total += size;
	return 0;
}

/* Read and parse the trailer of a pack: from `data` when the whole pack is
 * in memory, else with two ranged reads.  @return 1 with the entries, 0 when
 * the trailer is unusable (why in problem), -ENOMEM. */
static int read_trailer(struct check *c, const struct check_pack *p, const char *name,
			const struct buf *data, struct pack_entry **entries, size_t *count,
			char *problem, size_t problem_size)
{
	struct buf tail = BUF_INIT;
	const uint8_t *footer, *t;
	uint32_t n, entries_bytes;
	int r;

	*entries = NULL;
	*count = 0;
	if (p->size < PACK_HEADER_BYTES + PACK_FOOTER_BYTES) {
		snprintf(problem, problem_size, "truncated (%llu bytes)", (unsigned long long)p->size);
		return 0;
	}
	if (data) {
		footer = data->data + data->len - PACK_FOOTER_BYTES;
	} else {
		r = store_get(c->r->store, name, p->size - PACK_FOOTER_BYTES, PACK_FOOTER_BYTES,
			      &tail);
		if (r < 0)
			goto read_failed;
		footer = tail.data;
	}
	r = pack_footer_parse(footer, p->size, &n, &entries_bytes);
	if (r < 0)
		goto bad;
	if (data) {
		t = data->data + data->len - PACK_FOOTER_BYTES - entries_bytes;
	} else {
		r = store_get(c->r->store, name, p->size - PACK_FOOTER_BYTES - entries_bytes,
			      entries_bytes + PACK_FOOTER_BYTES, &tail);
		if (r < 0)
			goto read_failed;
		t = tail.data;
	}
	r = pack_trailer_parse(t, entries_bytes + PACK_FOOTER_BYTES, p->size, entries, count);
	if (r < 0)
		goto bad;
	buf_free(&tail);
	return 1;
read_failed:
bad:
	if (r == -ENOENT)
		snprintf(problem, problem_size, "vanished while being checked");
	else
		snprintf(problem, problem_size, "%s", hb_errmsg(r));
	buf_free(&tail);
	return r == -ENOMEM ? r : 0;
}

/* A corrupt blob matters to snapshots when it is the copy the index points
 * to (another pack may hold a good copy of the same chunk). */
static int mark_corrupt(struct check *c, const struct check_pack *p, const struct oid *chunk,
			uint32_t offset)
{
	struct index_entry e;

	if (chunk_index_lookup(c->idx, chunk, &e) > 0 && oid_equal(&e.pack, &p->id) &&
	    e.offset == offset)
		return add_to_set(c->corrupt, chunk) < 0 ? -ENOMEM : 1;
	return 1;
}

/* Decode and verify one blob of a pack in memory; reports and records a
 * corrupt chunk.  Returns 1 if corrupt, 0 if fine, -ENOMEM. */
static int verify_blob(struct check *c, const struct check_pack *p, const struct buf *data,
		       const struct oid *chunk, uint32_t offset, uint32_t length,
		       uint32_t raw_length, uint32_t flags, struct buf *scratch)
{
	char phex[OID_HEX_BYTES], chex[OID_HEX_BYTES];
	int r;

	oid_format(&p->id, phex);
	oid_format(chunk, chex);
	if ((uint64_t)offset + length > data->len) {
		report(c, true, "pack %s: chunk %s at offset %u: lies past the end of the pack", phex,
		       chex, offset);
		return mark_corrupt(c, p, chunk, offset);
	}
	r = repo_chunk_decode(c->r, chunk, data->data + offset, length, raw_length, flags, scratch);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		report(c, true, "pack %s: chunk %s at offset %u: %s", phex, chex, offset, reason(r));
		return mark_corrupt(c, p, chunk, offset);
	}
	return 0;
}

/* Index entries ie[0..n) point into pack p (sorted by offset).  Compare them
 * with the pack's trailer and, with read_data, verify every blob. */
static int check_pack(struct check *c, const struct check_pack *p, const struct index_entry *ie,
		      size_t n, struct buf *data, struct buf *scratch)
{
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES], chex[OID_HEX_BYTES], problem[512];
	struct pack_entry *te = NULL;
	size_t tn = 0, past_end = 0, problems = 0;
	struct buf *whole = NULL;
	bool trailer_ok;
	int r;

	repo_pack_name(&p->id, name);
	oid_format(&p->id, hex);
	if (c->opts->read_data) {
		if (p->size > PACK_MAX_BYTES) {
			report(c, true, "pack %s: %llu bytes, more than a pack may hold", hex,
			       (unsigned long long)p->size);
			return 0;
		}
		r = store_get(c->r->store, name, 0, STORE_GET_ALL, data);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			report(c, true, "pack %s: %s", hex, hb_errmsg(r));
			return 0;
		}
		if (data->len != p->size) {
			report(c, true, "pack %s: changed size while being checked", hex);
			return 0;
		}
		whole = data;
	}
	r = read_trailer(c, p, name, whole, &te, &tn, problem, sizeof(problem));
	if (r < 0)
		return r;
	trailer_ok = r == 1;
	if (trailer_ok && tn)
		qsort(te, tn, sizeof(*te), pack_entry_by_offset);

	for (size_t i = 0; i < n; i++) {
		const struct index_entry *e = &ie[i];
		struct pack_entry key = { .offset = e->offset };
		const struct pack_entry *t = NULL;

		if (!trailer_ok) {
			/* One line for the pack, below; the blobs that cannot
			 * be read count as corrupt for the snapshots. */
			if ((uint64_t)e->offset + e->length > p->size) {
				past_end++;
				r = mark_corrupt(c, p, &e->chunk, e->offset);
				if (r < 0)
					goto out;
				continue;
			}
		} else {
			/* Every index entry pointing here must be a blob the
			 * trailer lists. */
			t = tn ? bsearch(&key, te, tn, sizeof(*te), pack_entry_by_offset) : NULL;
			if (!t || !oid_equal(&t->id, &e->chunk) || t->length != e->length ||
			    t->raw_length != e->raw_length || t->flags != e->flags) {
				problems++;
				report(c, true,
				       "pack %s: index entry for chunk %s at offset %u does not match the pack's trailer",
				       hex, oid_format(&e->chunk, chex), e->offset);
			}
		}
		/* Blobs the trailer cannot vouch for are verified one by one. */
		if (whole && !t) {
			r = verify_blob(c, p, whole, &e->chunk, e->offset, e->length, e->raw_length,
					e->flags, scratch);
			if (r < 0)
				goto out;
			problems += (size_t)r;
		}
	}
	if (!trailer_ok) {
		problems++;
		if (past_end)
			report(c, true, "pack %s: %s; %zu index entr%s lie past its end", hex, problem,
			       past_end, past_end == 1 ? "y" : "ies");
		else
			report(c, true, "pack %s: %s", hex, problem);
	}
	if (whole && trailer_ok) {
		for (size_t i = 0; i < tn; i++) {
			r = verify_blob(c, p, whole, &te[i].id, te[i].offset, te[i].length,
					te[i].raw_length, te[i].flags, scratch);
			if (r < 0)
				goto out;
			problems += (size_t)r;
		}
	}
	if (whole && !problems) {
		struct oid got;

		/* A pack is named by the hash of its bytes: this catches
		 * damage outside any blob, the only kind not reported above. */
		oid_compute(&c->r->key, whole->data, whole->len, &got);
		if (memcmp(whole->data, PACK_MAGIC, PACK_HEADER_BYTES) != 0)
			report(c, true, "pack %s: bad magic", hex);
		else if (!oid_equal(&got, &p->id))
			report(c, true, "pack %s: content does not match its name", hex);
	}
	r = 0;
out:
	free(te);
	return r;
}

struct pack_job {
	struct check *c;
	const struct check_pack *p;
	const struct index_entry *ie;
	size_t n;
};

static void pack_job_run(void *arg)
{
	struct pack_job *j = arg;
	struct check *c = j->c;
	struct buf data = { .max = PACK_MAX_BYTES }, scratch = BUF_INIT;
	int r;

	pthread_mutex_lock(&c->mutex);
	r = c->fatal;
	pthread_mutex_unlock(&c->mutex);
	if (r == 0)
		r = check_pack(c, j->p, j->ie, j->n, &data, &scratch);
	buf_free(&data);
	buf_free(&scratch);
	pthread_mutex_lock(&c->mutex);
	if (r < 0 && !c->fatal) {
		c->fatal = r;
		hb_err_save(c->fatal_msg, sizeof(c->fatal_msg));
	}
	c->bytes_done += j->p->size;
	progress(c, c->opts->read_data ? "check: reading packs" : "check: packs", c->bytes_done,
		 c->bytes_total);
	pthread_mutex_unlock(&c->mutex);
}

static int check_packs(struct check *c)
{
	struct pack_job *jobs = NULL;
	struct workqueue *wq = NULL;
	char hex[OID_HEX_BYTES];
	unsigned threads = cpu_count();
	size_t i = 0;
	int r;

	r = store_list(c->r->store, REPO_PACKS_PREFIX, list_pack, c);
	if (r < 0)
		return r;
	if (c->npacks)
		qsort(c->packs, c->npacks, sizeof(*c->packs), pack_cmp);
	if (c->nentries)
		qsort(c->entries, c->nentries, sizeof(*c->entries), index_entry_cmp_pack_offset);
	c->stats->packs = c->npacks;

	/* Index entries grouped by pack: their pack must exist. */
	while (i < c->nentries) {
		struct check_pack *p = find_pack(c, &c->entries[i].pack);
		size_t j = i;

		while (j < c->nentries && oid_equal(&c->entries[j].pack, &c->entries[i].pack))
			j++;
		if (p) {
			p->indexed = true;
		} else {
			report(c, true, "pack %s is missing (%zu index entr%s point into it)",
			       oid_format(&c->entries[i].pack, hex), j - i, j - i == 1 ? "y" : "ies");
			r = add_to_set(c->missing_packs, &c->entries[i].pack);
			if (r < 0)
				return r;
		}
		i = j;
	}
	if (!c->npacks)
		return 0;

	/* Each pack with the index entries pointing into it. */
	jobs = calloc(c->npacks, sizeof(*jobs));
	threads = threads < CHECK_MIN_THREADS ? CHECK_MIN_THREADS
					      : threads > CHECK_MAX_THREADS ? CHECK_MAX_THREADS : threads;
	wq = workqueue_new(threads, 2 * threads);
	if (!jobs || !wq) {
		r = -ENOMEM;
		goto out;
	}
	i = 0;
	for (size_t k = 0; k < c->npacks && r >= 0; k++) {
		const struct check_pack *p = &c->packs[k];
		size_t j;

		while (i < c->nentries && oid_cmp(&c->entries[i].pack, &p->id) < 0)
			i++;
		j = i;
		while (j < c->nentries && oid_equal(&c->entries[j].pack, &p->id))
			j++;
		if (!p->indexed) {
			pthread_mutex_lock(&c->mutex);
			c->stats->garbage_packs++;
			pthread_mutex_unlock(&c->mutex);
			report(c, false, "pack %s is in no index (left by an interrupted writer; 'hiberbox gc' removes it)",
			       oid_format(&p->id, hex));
		}
		jobs[k] = (struct pack_job){ c, p, &c->entries[i], j - i };
		r = workqueue_submit(wq, pack_job_run, &jobs[k]);
		i = j;
	}
	workqueue_wait(wq);
	if (r >= 0 && c->fatal)
		r = hb_err(c->fatal, "%s", c->fatal_msg[0] ? c->fatal_msg : strerror(-c->fatal));
out:
	workqueue_free(wq);
	free(jobs);
	return r;
}

/* ---- snapshots ---- */

struct chunk_problem {
	uint64_t count;
	struct oid first;
	uint32_t first_entry;
};

static void note_problem(struct chunk_problem *p, const struct oid *id, uint32_t entry)
{
	if (!p->count++) {
		p->first = *id;
		p->first_entry = entry;
	}
}

static void report_problem(struct check *c, const struct oid *snap, const struct manifest *m,
			   const struct chunk_problem *p, const char *what)
{
	char shex[OID_HEX_BYTES], chex[OID_HEX_BYTES], path[4096];

	if (!p->count)
		return;
	if (manifest_path(m, p->first_entry, path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "(entry %u)", p->first_entry);
	report(c, true, "snapshot %s: %llu chunk reference%s %s (first: chunk %s of file %s)",
	       oid_format(snap, shex), (unsigned long long)p->count, p->count == 1 ? "" : "s",
	       what, oid_format(&p->first, chex), path);
}

static int check_snapshot(const struct oid *id, void *arg)
{
	struct check *c = arg;
	struct chunk_problem unindexed = { 0 }, lost = { 0 }, corrupt = { 0 };
	struct manifest *m = NULL;
	char hex[OID_HEX_BYTES];
	int r;

	c->stats->snapshots++;
	progress(c, "check: snapshots", c->stats->snapshots, c->snapshots_total);
	r = repo_read_manifest(c->r, id, &m);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		/* The message already names the snapshot. */
		const char *msg = hb_errmsg(r);

		if (strstr(msg, oid_format(id, hex)))
			report(c, true, "%s", msg);
		else
			report(c, true, "snapshot %s: %s", hex, msg);
		return 0;
	}
	for (uint32_t i = 0; i < manifest_count(m); i++) {
		const struct manifest_node *n = manifest_node(m, i);
		const struct manifest_chunk *ch;

		if (!S_ISREG(n->mode) || (n->flags & MANIFEST_FLAG_INLINE) || !n->nchunks)
			continue;
		ch = manifest_chunks(m, i);
		for (uint32_t k = 0; k < n->nchunks; k++) {
			struct index_entry e;

			if (oid_is_zero(&ch[k].id))
				continue;
			if (chunk_index_lookup(c->idx, &ch[k].id, &e) <= 0)
				note_problem(&unindexed, &ch[k].id, i);
			else if (in_set(c->missing_packs, &e.pack))
				note_problem(&lost, &ch[k].id, i);
			else if (in_set(c->corrupt, &ch[k].id))
				note_problem(&corrupt, &ch[k].id, i);
			else if (e.raw_length != ch[k].size)
				note_problem(&corrupt, &ch[k].id, i);
		}
	}
	report_problem(c, id, m, &unindexed, "not in the index");
	report_problem(c, id, m, &lost, "in missing packs");
	report_problem(c, id, m, &corrupt, "to corrupt or mismatched chunks");
	manifest_free(m);
	return 0;
}

struct snapshot_list {
	struct oid *ids;
	size_t count, cap;
};

static int collect_snapshot(const struct oid *id, void *arg)
{
	struct snapshot_list *l = arg;

	if (array_grow((void **)&l->ids, &l->cap, l->count, sizeof(*l->ids)) < 0)
		return -ENOMEM;
	l->ids[l->count++] = *id;
	return 0;
}

/* ---- refs ---- */

static int check_tag(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct check *c = arg;
	const char *tag = name + strlen(REPO_TAGS_PREFIX);
	char sname[REPO_NAME_BYTES], hex[OID_HEX_BYTES];
	struct oid id;
	int r;

	r = repo_tag_get(c->r, tag, &id);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		report(c, true, "tag %s: %s", tag, hb_errmsg(r));
		return 0;
	}
	repo_snapshot_name(&id, sname);
	r = store_stat(c->r->store, sname, NULL);
	if (r == -ENOENT)
		report(c, true, "tag %s points at snapshot %s, which does not exist", tag,
		       oid_format(&id, hex));
	else if (r < 0)
		report(c, true, "tag %s: %s", tag, hb_errmsg(r));
	return 0;
}

int repo_check(struct repo *r, const struct repo_check_opts *opts, struct repo_check_stats *stats)
{
	static const struct repo_check_opts default_opts;
	struct repo_check_stats local_stats;
	struct check c = { .r = r };
	struct snapshot_list snaps = { 0 };
	struct repo_lock *lock = NULL;
	int rc;

	c.opts = opts ? opts : &default_opts;
	c.stats = stats ? stats : &local_stats;
	/* The repository's own bytes, not this host's cached copies: a copy
	 * here would hide an object damaged in the bucket from every check. */
	store_tiered_read_remote(r->store, 1);
	pthread_mutex_init(&c.mutex, NULL);
	memset(c.stats, 0, sizeof(*c.stats));
	c.idx = chunk_index_new();
	c.missing_packs = chunk_index_new();
	c.corrupt = chunk_index_new();
	if (!c.idx || !c.missing_packs || !c.corrupt) {
		rc = -ENOMEM;
		goto out;
	}
	/* A gc would remove objects from under us; writers only add. */
	rc = repo_lock_acquire(r, false, CHECK_LOCK_WAIT_MS, &lock);
	if (rc == -EBUSY || rc == -ENOMEM)
		goto out;
	if (rc < 0) /* a read-only store: check anyway */
		report(&c, false, "cannot take a shared lock (%s); a gc running meanwhile would cause false reports",
		       hb_errmsg(rc));
	rc = check_config(&c);
	/* Snapshots first: a writer stores its index before its manifest, so
	 * the index files read next cover every snapshot listed now, even
	 * while a writer commits beside us. */
	if (rc >= 0)
		rc = repo_foreach_snapshot(r, collect_snapshot, &snaps);
	if (rc >= 0)
		rc = check_index_files(&c);
	if (rc >= 0)
		rc = check_dicts(&c);
	if (rc >= 0)
		rc = check_packs(&c);
	c.stats->chunks = chunk_index_count(c.idx);
	c.snapshots_total = snaps.count;
	for (size_t i = 0; i < snaps.count && rc >= 0; i++)
		rc = check_snapshot(&snaps.ids[i], &c);
	if (rc >= 0)
		rc = store_list(r->store, REPO_TAGS_PREFIX, check_tag, &c);
	if (rc < 0) {
		rc = hb_err_ctx(rc, "check could not finish");
		goto out;
	}
	if (c.stats->errors)
		rc = hb_err(-EBADMSG, "check found %llu problem%s",
			    (unsigned long long)c.stats->errors, c.stats->errors == 1 ? "" : "s");
out:
	store_tiered_read_remote(r->store, 0);
	repo_lock_release(lock);
	free(snaps.ids);
	chunk_index_free(c.idx);
	chunk_index_free(c.missing_packs);
	chunk_index_free(c.corrupt);
	free(c.entries);
	free(c.packs);
	pthread_mutex_destroy(&c.mutex);
	return rc;
}
