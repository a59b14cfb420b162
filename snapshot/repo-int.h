/* Internals shared by the repository's modules (repo.c, writer.c, create.c,
 * restore.c, diff.c, lock.c, gc.c, check.c).  Not part of the public API. */
#pragma once
#include <pthread.h>
#include <stdbool.h>

#include "snapshot/chunk.h"
#include "snapshot/dict.h"
#include "snapshot/index.h"
#include "snapshot/pack.h"
#include "snapshot/snapshot.h"

/* Object names on the store. */
#define REPO_CONFIG_NAME "config"
#define REPO_PACKS_PREFIX "packs/"
#define REPO_INDEX_PREFIX "index/"
#define REPO_SNAPSHOTS_PREFIX "snapshots/"
#define REPO_TAGS_PREFIX "refs/tags/"
#define REPO_SOURCES_PREFIX "refs/sources/"
#define REPO_LOCKS_PREFIX "locks/"
#define REPO_PINS_PREFIX "pins/"
#define REPO_NAME_BYTES 96
#define REPO_CONFIG_MAX_BYTES (64u << 10)
#define REPO_MANIFEST_MAX_BYTES (1u << 30)
#define REPO_INDEX_FILE_MAX_BYTES (1u << 30)

#define REPO_WINDOWS_IN_FLIGHT 64
#define REPO_WINDOWS_REMEMBERED 4096

struct repo {
	struct store *store;
	struct repo_key key;
	struct oid id;
	struct chunker_params chunker;
	int zstd_level;
	int version; /* of the format, from config */
	/* Dictionaries loaded so far (never unloaded before repo_close, so a
	 * pointer handed out stays valid). */
	pthread_mutex_t dict_lock;
	struct chunk_dict **dicts;
	size_t ndicts;
	bool resolver_added; /* chunk_decode finds dictionaries through r */
	/* The merged index, loaded on first use.  index_lock is held for
	 * reading around every use of the pointer and for writing while it is
	 * loaded or swapped (repo_refresh), so a refresh never frees a table
	 * under a concurrent lookup. */
	pthread_rwlock_t index_lock;
	struct chunk_index *index;
	bool index_loaded;
	/* Per pack, the end of its last indexed blob (sorted by pack; under
	 * index_lock): windowed reads never ask for bytes past it. */
	struct pack_end *pack_ends;
	size_t npack_ends;
	/* Windowed reads (repo_read_chunk_near): windows being fetched, and
	 * a direct-mapped memory of windows fetched in this session. */
	pthread_mutex_t window_lock;
	pthread_cond_t window_done;
	uint64_t window_busy[REPO_WINDOWS_IN_FLIGHT];
	uint64_t window_fetched[REPO_WINDOWS_REMEMBERED];
	/* warm_start's threads (repo_open_for): index and dictionaries */
	pthread_t warm_threads[2];
	unsigned nwarm;
};

struct pack_end {
	struct oid pack;
	uint64_t end;
};

/* "packs/ab/ab…", "index/…", "snapshots/…" for an id. */
void repo_pack_name(const struct oid *pack, char out[REPO_NAME_BYTES]);
void repo_index_name(const struct oid *id, char out[REPO_NAME_BYTES]);
void repo_snapshot_name(const struct oid *id, char out[REPO_NAME_BYTES]);
/* Parse the id at the end of an object name ("index/<hex>", "packs/xx/<hex>").
 * @return 0 or -EINVAL. */
int repo_name_to_oid(const char *name, struct oid *out);

/* How repo_put_named_by_content looks at a copy already in the store. */
enum repo_verify {
	REPO_VERIFY_SIZE,  /* packs: too large to read back; other bytes are check --read-data's */
	REPO_VERIFY_BYTES, /* index files, manifests: small enough to compare whole */
};
/* Store an object named by the keyed hash of its bytes (a pack, an index
 * file, a manifest).  An object of that name already there is the same
 * unless damaged (cut short by a copy tool or a full disk, bytes changed),
 * and a damaged one would be referenced by what is written next and fail
 * every read of it: it is checked as `how` says, in the remote itself (on
 * S3, not this host's cache, which can hold a good copy of what other hosts
 * read damaged), and replaced when it differs.  Writers of one name write
 * the same bytes, so a replace racing with another is harmless.
 * *created (may be NULL): this call stored it where there was nothing (a
 * copy verified or replaced is not the caller's to remove).
 * @return 0, or a negative errno with a message. */
int repo_put_named_by_content(struct repo *r, const char *name, const void *data, size_t len,
			      enum repo_verify how, bool *created);

/* Load all index files into r->index if not done yet.  @return 0 or -errno. */
/* Read the config from the store again and parse it (check: what the
 * store holds now, not what was read at open).  @return 0, or a negative
 * errno with a message: missing, corrupt, or another repository's. */
int repo_config_reread(struct repo *r);
int repo_load_index(struct repo *r);
/* The same with up to `threads` index files in flight (restore asks for as
 * many as it has fetchers); repo_load_index picks for the store. */
int repo_load_index_threads(struct repo *r, unsigned threads);
/* Look a chunk up in the merged index (loading it first).
 * @return 1 found, 0 not found, or -errno from loading. */
int repo_index_lookup(struct repo *r, const struct oid *chunk, struct index_entry *out);
/* Add entries (after their pack and index file are stored). */
int repo_index_add(struct repo *r, const struct index_entry *entries, size_t count);
/* Whether writers may use dictionaries and index files of version 2
 * (repositories of format version 2 and later). */
static inline bool repo_has_dicts(const struct repo *r)
{
	return r->version >= 2;
}
/* The dictionary a chunk's flags name (*out NULL when they name none),
 * loaded and verified on first use.  @return 0, -ENOENT "dictionary dicts/x
 * is missing", -EBADMSG (corrupt), other -errno. */
int repo_dict_for(struct repo *r, uint32_t flags, const struct chunk_dict **out);
/* The dictionary a writer uses: the lowest-numbered one on the store that
 * loads (*out NULL when there is none).  @return 0 or -errno. */
int repo_dict_pick(struct repo *r, const struct chunk_dict **out);
/* Numbers of the dictionaries on the store (*numbers malloc'd). */
int repo_dict_numbers(struct repo *r, uint32_t **numbers, size_t *count);
/* Store a newly trained dictionary (dict is modified, see dict.h) and load
 * it.  @return 0 or -errno. */
int repo_dict_add(struct repo *r, struct buf *dict, const struct chunk_dict **out);
/* chunk_decode for this repository (its dictionaries are found). */
int repo_chunk_decode(struct repo *r, const struct oid *id, const void *blob, size_t blob_len,
		      uint32_t raw_len, uint32_t flags, struct buf *out);
/* Read and decode a manifest without the resolve step. */
int repo_read_manifest(struct repo *r, const struct oid *id, struct manifest **out);
/* Read just the info header of a snapshot. */
int repo_read_manifest_info(struct repo *r, const struct oid *id, struct manifest_info *info);
/* Call fn for every snapshot id on the store. */
int repo_foreach_snapshot(struct repo *r, int (*fn)(const struct oid *id, void *arg), void *arg);

/* Repository locks (lock.c).  Writers take shared locks, gc an exclusive one.
 * A lock whose holder is gone (same host, dead pid) is removed on sight.
 * Waits up to wait_ms for conflicting locks to go, then -EBUSY with a message
 * naming the holder. */
struct repo_lock;
int repo_lock_acquire(struct repo *r, bool exclusive, unsigned wait_ms, struct repo_lock **out);
void repo_lock_release(struct repo_lock *l);
/* Before a holder's changes become visible (a writer's index, gc's
 * removals): is the lock still ours?  Another process removes a lock it
 * believes stale (LOCK_STALE_SEC without a refresh), after which gc may run
 * beside us.  @return 0, or -ESTALE with a message when the lock was removed
 * or has not been renewed for long enough that it could have been. */
int repo_lock_check(struct repo_lock *l);
/* Fencing against a gc that ran while our lock was gone, which
 * repo_lock_check cannot see once it has said yes (lock.c, "Fencing").
 * repo_lock_gc_started: gc, under its exclusive lock and before it reads
 * which snapshots exist, writes a new gc mark.  repo_lock_gc_ran: a shared
 * holder, after its manifest is stored, asks whether the mark changed since
 * it took its lock.  @return 0, or -ESTALE with a message when it did (or a
 * negative errno with a message if the store cannot be asked). */
int repo_lock_gc_started(struct repo_lock *l);
int repo_lock_gc_ran(struct repo_lock *l);
/* Write the lock object again now, as its refresh thread does every
 * LOCK_REFRESH_SEC; one that was removed is not written again (see
 * repo_lock_check).  Errors are not reported: the next round retries. */
void repo_lock_refresh(struct repo_lock *l);

/* The latest snapshot taken of directory `source` on `host` (refs/sources/).
 * @return 0, or -ENOENT (no message) when there is none. */
int repo_source_ref_get(struct repo *r, const char *host, const char *source, struct oid *out);

/* Parse the 32 hex digits at the start of a ref's content (a newline or
 * anything else may follow).  @return 0 or -EINVAL. */
int oid_parse_prefix(const char *text, struct oid *out);
