/* Garbage collection: remove what no kept snapshot references.
 *
 * Under the repository's exclusive lock (so no writer is between storing its
 * packs and committing its index), gc
 *   1. removes temporary files of dead writers (store_cleanup);
 *   2. loads every manifest and marks the chunks they reference; a manifest
 *      that fails to load stops gc before anything is deleted, since a
 *      partial view would make live data look like garbage;
 *   3. reads every index file and lists every pack, and picks for each
 *      marked chunk one location in a pack that exists;
 *   4. sorts packs into: delete (no live chunk, or in no index at all: the
 *      leftovers of a crashed writer), repack (more than repack_percent of
 *      its bytes are garbage), keep;
 *   5. copies the live blobs of packs to repack, as stored and verified with
 *      chunk_decode first, into new packs named by their keyed hash;
 *   6. writes one new index file holding every live entry and every entry
 *      of a kept pack (live or not);
 *   7. removes the old index files;
 *   8. removes the packs to delete and the repacked ones;
 *   9. removes dictionaries that no index entry of a remaining pack names
 *      (those of a crashed writer's first snapshot, or of deleted data).
 *
 * Why a crash at any point leaves every kept snapshot readable: a snapshot
 * is readable when each chunk it references has an index entry in some index
 * file that points into a pack that exists.
 *   - Until step 6 completes, nothing has been removed (step 1 only removes
 *     temporary files, which no index refers to); the new packs of step 5 are
 *     in no index, so they are leftovers the next gc removes.
 *   - Step 6 stores the new index atomically; from then on it alone covers
 *     every live chunk, pointing into kept packs or into the new packs, all
 *     of which exist.  The old index files are only redundant (the index
 *     loader keeps one entry per chunk, and every old entry still points to a
 *     pack that exists until step 8).
 *   - Step 7 removes old index files one by one; the new one stays, so the
 *     remaining set still covers every live chunk with existing packs.
 *   - Step 8 removes packs that, after step 7, no index file refers to (the
 *     new index never points into them), so no lookup can lead there.  A crash
 *     in the middle leaves unindexed packs: leftovers for the next gc.
 *   - Step 9 removes only dictionaries that no blob of a remaining pack uses
 *     (every blob of a pack has an index entry: step 6 keeps the dead ones of
 *     kept packs too), so nothing that can be read needs them; no writer runs
 *     meanwhile to pick one.
 * A new pack whose bytes happen to equal an old pack (same name) is never
 * removed in step 8, and an index file equal to the new one is not removed
 * in step 7.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/chunk.h"
#include "snapshot/repo-int.h"
#include "util/array.h"
#include "util/error.h"

#define GC_LOCK_WAIT_MS 10000
/* Crash testing: with this variable set to n, gc kills itself (SIGKILL, as a
 * power cut would stop it) just before its n-th change to the store, so that
 * tests/integration/gc.sh can check every point of the argument above. */
#define GC_CRASH_ENV "HIBERBOX_TEST_GC_CRASH"
#define GC_DEFAULT_REPACK_PERCENT 50

enum gc_action { GC_KEEP, GC_DELETE, GC_REPACK };

struct gc_pack {
	struct oid id;
	uint64_t size;
	bool indexed;        /* some index entry points into it */
	uint64_t live_bytes; /* blobs of the chosen locations of marked chunks */
	uint64_t live_count;
	enum gc_action action;
};

struct gc_index_file {
	char name[REPO_NAME_BYTES];
	uint64_t size;
};

struct gc {
	struct repo *r;
	const struct repo_gc_opts *opts;
	struct repo_gc_stats *stats;
	/* Marked: chunks referenced by some manifest (only .chunk is used). */
	struct chunk_index *marked;
	uint64_t snapshots, snapshots_total;
	/* Every entry of every index file, and the files themselves. */
	struct index_entry *entries;
	size_t nentries, entries_cap;
	struct gc_index_file *index_files;
	size_t nindex_files, index_files_cap;
	/* Packs on the store, sorted by id. */
	struct gc_pack *packs;
	size_t npacks, packs_cap;
	/* One chosen location per live chunk. */
	struct chunk_index *live;
	/* The new index, and the packs written by repacking. */
	struct index_entry *new_entries;
	size_t nnew_entries, new_entries_cap;
	struct oid *new_packs;
	size_t nnew_packs, new_packs_cap;
	uint64_t new_pack_bytes;
	struct pack_writer *pw;
	/* Changes made to the store so far, and the crash test's target. */
	unsigned long changes, crash_at;
};

/* Called before every change gc makes to the store. */
static void before_change(struct gc *g)
{
	if (g->crash_at && ++g->changes == g->crash_at)
		kill(getpid(), SIGKILL);
}

static void progress(struct gc *g, const char *phase, uint64_t done, uint64_t total)
{
	if (g->opts->progress.update)
		g->opts->progress.update(g->opts->progress.arg, phase, done, total);
}

static int pack_cmp(const void *a, const void *b)
{
	return oid_cmp(&((const struct gc_pack *)a)->id, &((const struct gc_pack *)b)->id);
}

static struct gc_pack *find_pack(struct gc *g, const struct oid *id)
{
	struct gc_pack key = { .id = *id };

	if (!g->npacks)
		return NULL;
	return bsearch(&key, g->packs, g->npacks, sizeof(*g->packs), pack_cmp);
}

static int entry_by_chunk(const void *a, const void *b)
{
	return oid_cmp(&((const struct index_entry *)a)->chunk,
		       &((const struct index_entry *)b)->chunk);
}

/* ---- 2. mark ---- */

static int mark_snapshot(const struct oid *id, void *arg)
{
	struct gc *g = arg;
	struct manifest *m = NULL;
	char hex[OID_HEX_BYTES];
	int r;

	r = repo_read_manifest(g->r, id, &m);
	if (r < 0)
		return hb_err_ctx(r, "gc stopped, nothing deleted: cannot load snapshot %s",
				  oid_format(id, hex));
	for (uint32_t i = 0; i < manifest_count(m) && r >= 0; i++) {
		const struct manifest_node *n = manifest_node(m, i);
		const struct manifest_chunk *c;

		if (!S_ISREG(n->mode) || (n->flags & MANIFEST_FLAG_INLINE) || !n->nchunks)
			continue;
		c = manifest_chunks(m, i);
		for (uint32_t k = 0; k < n->nchunks && r >= 0; k++) {
			struct index_entry e = { .chunk = c[k].id };

			if (!oid_is_zero(&c[k].id))
				r = chunk_index_add(g->marked, &e);
		}
	}
	manifest_free(m);
	if (r < 0)
		return r;
	progress(g, "gc: reading snapshots", ++g->snapshots, g->snapshots_total);
	return 0;
}

static int count_snapshot(const struct oid *id, void *arg)
{
	(*(uint64_t *)arg)++;
	return 0;
}

/* ---- 3. index files and packs ---- */

static int list_index_file(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct gc *g = arg;
	struct gc_index_file *f;

	if (array_grow((void **)&g->index_files, &g->index_files_cap, g->nindex_files,
		 sizeof(*g->index_files)) < 0)
		return -ENOMEM;
	f = &g->index_files[g->nindex_files++];
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->size = size;
	return 0;
}

static int read_index_files(struct gc *g)
{
	struct buf b = { .max = REPO_INDEX_FILE_MAX_BYTES };
	int r;

	r = store_list(g->r->store, REPO_INDEX_PREFIX, list_index_file, g);
	if (r < 0)
		return hb_err_ctx(r, "gc: listing index files");
	for (size_t i = 0; i < g->nindex_files; i++) {
		struct index_entry *e = NULL;
		size_t n = 0;

		r = store_get(g->r->store, g->index_files[i].name, 0, STORE_GET_ALL, &b);
		if (r == 0)
			r = index_file_decode(b.data, b.len, &e, &n);
		if (r < 0) {
			r = hb_err_ctx(r, "gc stopped, nothing deleted: index file %s",
				       g->index_files[i].name);
			break;
		}
		if (g->nentries + n > g->entries_cap) {
			size_t cap = g->entries_cap ? g->entries_cap : 1024;
			void *p;

			while (cap < g->nentries + n)
				cap *= 2;
			p = realloc(g->entries, cap * sizeof(*g->entries));
			if (!p) {
				free(e);
				r = -ENOMEM;
				break;
			}
			g->entries = p;
			g->entries_cap = cap;
		}
		if (n)
			memcpy(&g->entries[g->nentries], e, n * sizeof(*e));
		g->nentries += n;
		free(e);
		progress(g, "gc: reading index", i + 1, g->nindex_files);
	}
	buf_free(&b);
	return r;
}

static int list_pack(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct gc *g = arg;
	struct gc_pack *p;
	struct oid id;
	char expect[REPO_NAME_BYTES];

	/* Only objects named exactly as the writer names packs are packs;
	 * anything else under packs/ is not ours to judge. */
	if (repo_name_to_oid(name, &id) < 0)
		return 0;
	repo_pack_name(&id, expect);
	if (strcmp(expect, name) != 0)
		return 0;
	if (array_grow((void **)&g->packs, &g->packs_cap, g->npacks, sizeof(*g->packs)) < 0)
		return -ENOMEM;
	p = &g->packs[g->npacks++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	p->size = size;
	return 0;
}

/* ---- 3/4. choose live locations, sort packs ---- */

static int choose_locations(struct gc *g)
{
	for (size_t i = 0; i < g->nentries; i++) {
		const struct index_entry *e = &g->entries[i];
		struct gc_pack *p = find_pack(g, &e->pack);
		struct index_entry found;
		int r;

		if (!p)
			continue; /* its pack is gone: not a location */
		p->indexed = true;
		if ((uint64_t)e->offset + e->length > p->size)
			continue; /* cannot be read from there */
		r = chunk_index_lookup(g->marked, &e->chunk, &found);
		if (r <= 0)
			continue;
		r = chunk_index_add(g->live, e);
		if (r < 0)
			return r;
		if (r == 1) {
			p->live_bytes += e->length;
			p->live_count++;
		}
	}
	return 0;
}

struct missing_scan {
	struct chunk_index *live;
	uint64_t missing;
	struct oid first;
};

static int find_missing(const struct index_entry *e, void *arg)
{
	struct missing_scan *s = arg;
	struct index_entry found;

	if (chunk_index_lookup(s->live, &e->chunk, &found) <= 0) {
		if (!s->missing++)
			s->first = e->chunk;
	}
	return 0;
}

static void plan_packs(struct gc *g)
{
	unsigned percent = g->opts->repack_percent ? g->opts->repack_percent
						   : GC_DEFAULT_REPACK_PERCENT;

	for (size_t i = 0; i < g->npacks; i++) {
		struct gc_pack *p = &g->packs[i];
		uint64_t garbage = p->size > p->live_bytes ? p->size - p->live_bytes : 0;

		if (!p->indexed || !p->live_count)
			p->action = GC_DELETE;
		else if (percent < 100 && garbage * 100 > (uint64_t)percent * p->size)
			p->action = GC_REPACK;
		else
			p->action = GC_KEEP;
	}
}

/* ---- 5. repack ---- */

static int add_new_entry(struct gc *g, const struct index_entry *e)
{
	if (array_grow((void **)&g->new_entries, &g->new_entries_cap, g->nnew_entries,
		 sizeof(*g->new_entries)) < 0)
		return -ENOMEM;
	g->new_entries[g->nnew_entries++] = *e;
	return 0;
}

static int flush_new_pack(struct gc *g)
{
	struct buf pack = BUF_INIT;
	struct pack_entry *pe = NULL;
	char name[REPO_NAME_BYTES];
	size_t n = 0;
	struct oid id;
	int r;

	if (!pack_writer_count(g->pw))
		return 0;
	r = pack_writer_finish(g->pw, &pack, &pe, &n);
	if (r < 0)
		goto out;
	oid_compute(&g->r->key, pack.data, pack.len, &id);
	repo_pack_name(&id, name);
	before_change(g);
	r = repo_put_named_by_content(g->r, name, pack.data, pack.len, REPO_VERIFY_SIZE, NULL);
	if (r < 0) {
		r = hb_err_ctx(r, "gc: writing pack %s", name);
		goto out;
	}
	g->new_pack_bytes += pack.len;
	r = array_grow((void **)&g->new_packs, &g->new_packs_cap, g->nnew_packs, sizeof(*g->new_packs));
	if (r < 0)
		goto out;
	g->new_packs[g->nnew_packs++] = id;
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct index_entry e = {
			.chunk = pe[i].id, .pack = id, .offset = pe[i].offset,
			.length = pe[i].length, .raw_length = pe[i].raw_length, .flags = pe[i].flags,
		};

		r = add_new_entry(g, &e);
	}
out:
	free(pe);
	buf_free(&pack);
	return r;
}

/* Copy the live blobs of pack p (live[0..n), sorted by offset) into the
 * pack writer, verifying each. */
static int repack_one(struct gc *g, const struct gc_pack *p, const struct index_entry *live,
		      size_t n, struct buf *data, struct buf *scratch)
{
	char name[REPO_NAME_BYTES], phex[OID_HEX_BYTES], chex[OID_HEX_BYTES];
	int r;

	repo_pack_name(&p->id, name);
	r = store_get(g->r->store, name, 0, STORE_GET_ALL, data);
	if (r < 0)
		return hb_err_ctx(r, "gc stopped, nothing deleted: reading pack %s", name);
	for (size_t i = 0; i < n; i++) {
		const struct index_entry *e = &live[i];
		const uint8_t *blob = data->data + e->offset;

		if ((uint64_t)e->offset + e->length > data->len)
			return hb_err(-EBADMSG, "gc stopped, nothing deleted: pack %s: chunk %s at offset %u lies past its end",
				      oid_format(&p->id, phex), oid_format(&e->chunk, chex), e->offset);
		r = repo_chunk_decode(g->r, &e->chunk, blob, e->length, e->raw_length, e->flags,
				      scratch);
		if (r < 0)
			return hb_err_ctx(r, "gc stopped, nothing deleted: pack %s: at offset %u",
					  oid_format(&p->id, phex), e->offset);
		if (pack_writer_count(g->pw) &&
		    pack_writer_bytes(g->pw) + e->length > PACK_TARGET_BYTES) {
			r = flush_new_pack(g);
			if (r < 0)
				return r;
		}
		r = pack_writer_add(g->pw, &e->chunk, blob, e->length, e->raw_length, e->flags);
		if (r < 0)
			return hb_err_ctx(r, "gc: building a pack");
	}
	return 0;
}

struct collect {
	struct index_entry *items;
	size_t count;
};

static int collect_entry(const struct index_entry *e, void *arg)
{
	struct collect *c = arg;

	c->items[c->count++] = *e;
	return 0;
}

/* Every blob of a kept pack keeps its index entry, live or not: the pack
 * holds its bytes anyway, a later snapshot may use them again, and step 9
 * of the next gc must see the dictionaries they need (check decodes every
 * blob of a pack).  Entries listed by more than one index file are added
 * once; those that point past their pack's end are not added at all. */
static int keep_entries_of_kept_packs(struct gc *g)
{
	struct index_entry *kept = malloc((g->nentries ? g->nentries : 1) * sizeof(*kept));
	size_t n = 0;
	int r = 0;

	if (!kept)
		return -ENOMEM;
	for (size_t i = 0; i < g->nentries; i++) {
		const struct index_entry *e = &g->entries[i];
		const struct gc_pack *p = find_pack(g, &e->pack);

		if (p && p->action == GC_KEEP && (uint64_t)e->offset + e->length <= p->size)
			kept[n++] = *e;
	}
	if (n > 1)
		qsort(kept, n, sizeof(*kept), index_entry_cmp_pack_offset);
	for (size_t i = 0; i < n && r >= 0; i++)
		if (i == 0 || !oid_equal(&kept[i].pack, &kept[i - 1].pack) ||
		    kept[i].offset != kept[i - 1].offset)
			r = add_new_entry(g, &kept[i]);
	free(kept);
	return r;
}

/* Steps 5 and the new entry list: the entries of kept packs as they are,
 * the live ones of repacked packs moved (or, in a dry run, only counted). */
static int build_new_entries(struct gc *g)
{
	struct collect live = { 0 };
	struct buf data = { .max = PACK_MAX_BYTES }, scratch = BUF_INIT;
	size_t nlive = chunk_index_count(g->live), i = 0, repacked = 0, to_repack = 0;
	int r = 0;

	live.items = malloc((nlive ? nlive : 1) * sizeof(*live.items));
	if (!live.items)
		return -ENOMEM;
	chunk_index_foreach(g->live, collect_entry, &live);
	if (live.count)
		/* Grouped by pack in blob order: a repack reads each pack once
		 * and copies its blobs in their original order. */
		qsort(live.items, live.count, sizeof(*live.items), index_entry_cmp_pack_offset);
	for (size_t k = 0; k < g->npacks; k++)
		to_repack += g->packs[k].action == GC_REPACK;

	while (i < live.count && r >= 0) {
		struct gc_pack *p = find_pack(g, &live.items[i].pack);
		size_t j = i;

		while (j < live.count && oid_equal(&live.items[j].pack, &live.items[i].pack))
			j++;
		if (p->action == GC_KEEP) {
			/* added with the rest of its pack, below */
		} else if (g->opts->dry_run) {
			/* Estimate the new packs: blobs plus their trailer entries. */
			g->new_pack_bytes += p->live_bytes + p->live_count * PACK_ENTRY_BYTES;
			g->nnew_entries += j - i;
		} else {
			r = repack_one(g, p, &live.items[i], j - i, &data, &scratch);
			progress(g, "gc: repacking", ++repacked, to_repack);
		}
		i = j;
	}
	if (r >= 0 && !g->opts->dry_run)
		r = flush_new_pack(g);
	if (r >= 0)
		r = keep_entries_of_kept_packs(g);
	if (g->opts->dry_run && to_repack)
		g->new_pack_bytes += PACK_HEADER_BYTES + PACK_FOOTER_BYTES;
	buf_free(&data);
	buf_free(&scratch);
	free(live.items);
	return r;
}

/* ---- 6-8. commit ---- */

static bool is_new_pack(const struct gc *g, const struct oid *id)
{
	for (size_t i = 0; i < g->nnew_packs; i++)
		if (oid_equal(&g->new_packs[i], id))
			return true;
	return false;
}

static uint64_t count_distinct_chunks(struct gc *g)
{
	struct index_entry *copy;
	uint64_t n = 0;

	if (!g->nentries)
		return 0;
	copy = malloc(g->nentries * sizeof(*copy));
	if (!copy)
		return 0;
	memcpy(copy, g->entries, g->nentries * sizeof(*copy));
	qsort(copy, g->nentries, sizeof(*copy), entry_by_chunk);
	for (size_t i = 0; i < g->nentries; i++)
		if (i == 0 || !oid_equal(&copy[i].chunk, &copy[i - 1].chunk))
			n++;
	free(copy);
	return n;
}

static bool dict_used(const uint32_t *used, size_t n, uint32_t number)
{
	for (size_t i = 0; i < n; i++)
		if (used[i] == number)
			return true;
	return false;
}

/* Add the dictionary of flags to the set used[0..*n) (a handful at most). */
static int note_dict(uint32_t **used, size_t *n, size_t *cap, uint32_t flags)
{
	uint32_t number = chunk_flags_dict(flags);

	if (!number || dict_used(*used, *n, number))
		return 0;
	if (array_grow((void **)used, cap, *n, sizeof(**used)) < 0)
		return -ENOMEM;
	(*used)[(*n)++] = number;
	return 0;
}

static int remove_unused_dicts(struct gc *g)
{
	uint32_t *used = NULL, *on_store = NULL;
	size_t nused = 0, cap = 0, nstore = 0;
	char name[DICT_NAME_BYTES];
	int r = 0;

	/* Blobs of kept packs (live or not: check reads them all) and of the
	 * new packs. */
	for (size_t i = 0; i < g->nentries && r >= 0; i++) {
		const struct gc_pack *p = find_pack(g, &g->entries[i].pack);

		if (p && p->action == GC_KEEP)
			r = note_dict(&used, &nused, &cap, g->entries[i].flags);
	}
	for (size_t i = 0; i < g->nnew_entries && r >= 0; i++)
		r = note_dict(&used, &nused, &cap, g->new_entries[i].flags);
	if (r == 0)
		r = repo_dict_numbers(g->r, &on_store, &nstore);
	for (size_t i = 0; i < nstore && r >= 0; i++) {
		if (dict_used(used, nused, on_store[i]))
			continue;
		dict_name(on_store[i], name);
		before_change(g);
		r = store_remove(g->r->store, name);
		if (r == -ENOENT)
			r = 0;
		if (r < 0)
			r = hb_err_ctx(r, "gc: removing dictionary %s", name);
		else
			g->stats->dicts_removed++;
	}
	free(used);
	free(on_store);
	return r;
}

static int commit(struct gc *g)
{
	struct repo_gc_stats *st = g->stats;
	char new_name[REPO_NAME_BYTES] = "";
	uint64_t removed_bytes = 0, written_bytes = g->new_pack_bytes, distinct;
	bool rewrite = g->nindex_files > 1 || g->nentries != g->nnew_entries;
	struct buf b = BUF_INIT;
	int r = 0;

	for (size_t i = 0; i < g->npacks; i++) {
		const struct gc_pack *p = &g->packs[i];

		if (p->action == GC_KEEP) {
			st->packs_kept++;
			continue;
		}
		rewrite = true;
		removed_bytes += p->size;
		if (p->action == GC_DELETE)
			st->packs_removed++;
		else
			st->packs_rewritten++;
	}
	distinct = count_distinct_chunks(g);
	st->chunks_removed = distinct > g->nnew_entries ? distinct - g->nnew_entries : 0;
	if (!rewrite)
		goto dicts;

	/* 6. The new index, sorted so that the same content gets the same name. */
	if (g->nnew_entries) {
		struct oid id;

		if (g->opts->dry_run) {
			written_bytes += INDEX_ENTRY_BYTES * g->nnew_entries + 20;
		} else {
			qsort(g->new_entries, g->nnew_entries, sizeof(*g->new_entries),
			      entry_by_chunk);
			r = repo_has_dicts(g->r)
				    ? index_file_encode_v2(g->new_entries, g->nnew_entries, &b)
				    : index_file_encode(g->new_entries, g->nnew_entries, &b);
			if (r < 0)
				goto out;
			oid_compute(&g->r->key, b.data, b.len, &id);
			repo_index_name(&id, new_name);
			before_change(g);
			r = repo_put_named_by_content(g->r, new_name, b.data, b.len,
						      REPO_VERIFY_BYTES, NULL);
			if (r < 0) {
				r = hb_err_ctx(r, "gc: writing index file %s", new_name);
				goto out;
			}
			written_bytes += b.len;
		}
	}
	/* 7. Old index files. */
	for (size_t i = 0; i < g->nindex_files; i++) {
		const struct gc_index_file *f = &g->index_files[i];

		if (strcmp(f->name, new_name) == 0)
			continue;
		st->index_files_removed++;
		removed_bytes += f->size;
		if (g->opts->dry_run)
			continue;
		before_change(g);
		r = store_remove(g->r->store, f->name);
		if (r < 0 && r != -ENOENT) {
			r = hb_err_ctx(r, "gc: removing index file %s", f->name);
			goto out;
		}
		r = 0;
	}
	/* 8. Old packs. */
	for (size_t i = 0; i < g->npacks && !g->opts->dry_run; i++) {
		const struct gc_pack *p = &g->packs[i];
		char name[REPO_NAME_BYTES];

		if (p->action == GC_KEEP || is_new_pack(g, &p->id))
			continue;
		repo_pack_name(&p->id, name);
		before_change(g);
		r = store_remove(g->r->store, name);
		if (r < 0 && r != -ENOENT) {
			r = hb_err_ctx(r, "gc: removing pack %s", name);
			goto out;
		}
		r = 0;
		progress(g, "gc: removing packs", i + 1, g->npacks);
	}
	/* 9. Dictionaries nothing uses any more. */
dicts:
	if (!g->opts->dry_run) {
		r = remove_unused_dicts(g);
		if (r < 0)
			goto out;
	}
	st->bytes_freed = removed_bytes > written_bytes ? removed_bytes - written_bytes : 0;
out:
	buf_free(&b);
	return r;
}

static void gc_free(struct gc *g)
{
	chunk_index_free(g->marked);
	chunk_index_free(g->live);
	pack_writer_free(g->pw);
	free(g->entries);
	free(g->index_files);
	free(g->packs);
	free(g->new_entries);
	free(g->new_packs);
}

int repo_gc(struct repo *r, const struct repo_gc_opts *opts, struct repo_gc_stats *stats)
{
	static const struct repo_gc_opts default_opts;
	struct repo_gc_stats local_stats;
	struct repo_lock *lock = NULL;
	struct missing_scan missing = { 0 };
	struct gc g = { .r = r };
	int rc;

	g.opts = opts ? opts : &default_opts;
	if (getenv(GC_CRASH_ENV))
		g.crash_at = strtoul(getenv(GC_CRASH_ENV), NULL, 10);
	g.stats = stats ? stats : &local_stats;
	memset(g.stats, 0, sizeof(*g.stats));
	rc = repo_lock_acquire(r, true, g.opts->lock_wait_ms ? g.opts->lock_wait_ms : GC_LOCK_WAIT_MS,
			       &lock);
	if (rc < 0)
		return rc;
	g.marked = chunk_index_new();
	g.live = chunk_index_new();
	g.pw = pack_writer_new();
	if (!g.marked || !g.live || !g.pw) {
		rc = -ENOMEM;
		goto out;
	}
	if (!g.opts->dry_run) {
		/* Before we list the snapshots: a writer whose lock was taken
		 * for stale finds out from the mark (lock.c, "Fencing"). */
		before_change(&g);
		rc = repo_lock_gc_started(lock);
		if (rc < 0)
			goto out;
		before_change(&g);
		rc = store_cleanup(r->store);
		if (rc < 0)
			goto out;
	}

	rc = repo_foreach_snapshot(r, count_snapshot, &g.snapshots_total);
	if (rc >= 0)
		rc = repo_foreach_snapshot(r, mark_snapshot, &g);
	if (rc < 0)
		goto out;
	rc = read_index_files(&g);
	if (rc < 0)
		goto out;
	rc = store_list(r->store, REPO_PACKS_PREFIX, list_pack, &g);
	if (rc < 0) {
		rc = hb_err_ctx(rc, "gc: listing packs");
		goto out;
	}
	if (g.npacks)
		qsort(g.packs, g.npacks, sizeof(*g.packs), pack_cmp);
	rc = choose_locations(&g);
	if (rc < 0)
		goto out;

	/* A referenced chunk with no readable location: the repository is
	 * damaged.  Rewriting the index now would drop the evidence. */
	missing.live = g.live;
	chunk_index_foreach(g.marked, find_missing, &missing);
	if (missing.missing) {
		char hex[OID_HEX_BYTES];

		rc = hb_err(-EBADMSG,
			    "gc stopped, nothing deleted: %llu chunk%s referenced by snapshots %s in no existing pack (first: %s); run 'hiberbox check'",
			    (unsigned long long)missing.missing, missing.missing == 1 ? "" : "s",
			    missing.missing == 1 ? "is" : "are", oid_format(&missing.first, hex));
		goto out;
	}

	plan_packs(&g);
	rc = build_new_entries(&g);
	if (rc < 0)
		goto out;
	/* Everything above assumed no writer ran beside us: if our lock could
	 * have been taken for stale, one may have, and its new packs would
	 * look like leftovers. */
	if (!g.opts->dry_run && (rc = repo_lock_check(lock)) < 0) {
		rc = hb_err_ctx(rc, "gc stopped, nothing removed");
		goto out;
	}
	rc = commit(&g);
	if (rc < 0 || g.opts->dry_run)
		goto out;
	rc = repo_refresh(r);
out:
	gc_free(&g);
	repo_lock_release(lock);
	return rc;
}
