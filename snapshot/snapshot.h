/* hiberbox repository: the public interface of snapshot/.
 *
 * A repository stores snapshots of directory trees as content-defined chunks
 * (chunker.h), compressed and grouped into packs (pack.h), found through the
 * index (index.h), described by manifests (manifest.h), named by refs, on a
 * store (store.h: local directory, S3, or a local cache in front of S3).
 *
 * Layout of a repository on its store:
 *   config                 JSON: format version, repository id, chunker
 *                          parameters, compression level, the chunk-id secret
 *   packs/<2 hex>/<id>     immutable pack files
 *   index/<id>             immutable index files
 *   snapshots/<id>         immutable manifests (id = keyed hash of the bytes)
 *   refs/tags/<name>       mutable: a snapshot id per tag
 *   refs/sources/<hash>    mutable: the latest snapshot of a source directory
 *   locks/<id>             who is writing (shared) or collecting (exclusive)
 *
 * Commit order: packs, then index, then manifest, then refs.  A crash at any
 * point leaves every earlier snapshot complete; the leftovers are garbage
 * that repo_gc() removes.
 *
 * All functions return 0 (or a count) or a negative errno with a message
 * (util/error.h).  A struct repo may be used from several threads for reads
 * (repo_read_chunk, repo_load_manifest); writes take a repo_writer each.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "snapshot/chunker.h"
#include "snapshot/manifest.h"
#include "snapshot/oid.h"
#include "snapshot/store.h"
#include "util/buf.h"

/* Format version written by init.  Readers accept every version from 1 up to
 * this one (docs/repository.md): 2 added dictionaries and compressed index
 * files, which writers use only in repositories of version 2. */
#define REPO_FORMAT_VERSION 2
#define REPO_FORMAT_VERSION_MIN 1
#define REPO_DEFAULT_ZSTD_LEVEL 3
/* zstd levels a repository's config may hold (negative: the fast ones) */
#define REPO_ZSTD_LEVEL_MIN (-7)
#define REPO_ZSTD_LEVEL_MAX 22
#define REPO_TAG_MAX 128

struct repo;

/* Progress reports for long operations (NULL: none).  done/total in bytes. */
struct repo_progress {
	void (*update)(void *arg, const char *phase, uint64_t done, uint64_t total);
	void *arg;
};

struct repo_init_opts {
	int zstd_level; /* 0: REPO_DEFAULT_ZSTD_LEVEL */
	struct chunker_params chunker; /* all 0: defaults */
};

/* Default location of the embedded repository: $HIBERBOX_REPO, else
 * $HIBERBOX_HOME/repo, else /var/lib/hiberbox/repo (root) or
 * ~/.local/share/hiberbox/repo.  Writes into out. */
int repo_default_location(char *out, size_t size);
/* Home directory for hiberbox state ($HIBERBOX_HOME or the default). */
int repo_default_home(char *out, size_t size);

/* Create a repository at location (a path or s3://bucket/prefix).
 * @return 0, -EEXIST if one is there already. */
int repo_init(const char *location, const struct repo_init_opts *opts);
/* Open a repository.  -ENOENT (with "no repository at X: run 'hiberbox init'"),
 * -EPROTONOSUPPORT for an unknown format version, -EBADMSG for a corrupt config
 * or a secret that fails its check. */
int repo_open(const char *location, struct repo **out);
/* The same, for a caller about to mount this snapshot: from an object store,
 * its manifest, the index and the dictionaries are fetched (into the cache,
 * the index into memory, by background threads that repo_close joins) while
 * the config is, so that a wake waits for one round trip instead of five.
 * snapshot NULL: repo_open. */
int repo_open_for(const char *location, const struct oid *snapshot, struct repo **out);
void repo_close(struct repo *r);
struct store *repo_store(struct repo *r);
const struct repo_key *repo_key(struct repo *r);
const char *repo_location(struct repo *r);
/* Default zstd level from config (or the one set by repo_set_zstd_level). */
void repo_set_zstd_level(struct repo *r, int level);

/* Resolve a user's name for a snapshot: a full id, a unique id prefix (at
 * least 4 hex digits), or a tag.  -ENOENT, -EINVAL for an ambiguous prefix. */
int repo_resolve(struct repo *r, const char *name, struct oid *out);
int repo_load_manifest(struct repo *r, const struct oid *id, struct manifest **out);
/* Read, decode and verify one chunk (holes: zeroes).  out is replaced.
 * -ENOENT if no index entry, -EBADMSG if corrupt (message names chunk and pack). */
int repo_read_chunk(struct repo *r, const struct oid *chunk, struct buf *out);
/* The same, for a reader that will likely want the chunks stored next to
 * this one (a filesystem serving a tree: files of one directory sit side by
 * side in a pack).  On a remote store, the first read inside an aligned
 * window of REPO_READ_WINDOW bytes of a pack fetches the whole window in one
 * request (the cache keeps it); the next reads there are local.  On a local
 * store it is repo_read_chunk. */
#define REPO_READ_WINDOW (512u << 10)
int repo_read_chunk_near(struct repo *r, const struct oid *chunk, struct buf *out);
/* Fetch the window that repo_read_chunk_near would, into the cache only,
 * waiting for nobody: 0 at once when it is fetched or being fetched (or the
 * store is local).  For prefetchers that run ahead of the decoding. */
int repo_fetch_near(struct repo *r, const struct oid *chunk);
/* Reload the index from storage (after another process wrote). */
int repo_refresh(struct repo *r);
/* Are all n chunks (holes need nothing) in the index as loaded (a writer's is fresh: read under
 * its lock, which gc cannot take)?  1 yes, 0 if one is missing (its id in
 * *missing if not NULL), or a negative errno. */
int repo_has_chunks(struct repo *r, const struct manifest_chunk *chunks, uint32_t n,
		    struct oid *missing);


/* Pins: while a pin lives, snapshot_rm-style callers can see that something
 * reads from the snapshot (repo_pin_find); see lock.c.  what says what (e.g.
 * "mount at /mnt").  The pin object is written in the background. */
struct repo_pin;
int repo_pin_start(struct repo *r, const struct oid *snapshot, const char *what,
		   struct repo_pin **out);
void repo_pin_end(struct repo_pin *p);
struct repo_pin_holder {
	char host[256];
	long long pid;
	char refreshed[64]; /* when its holder last wrote it, local time */
	char what[512];
};
/* 1 (and *out) if a live pin names snapshot, 0 if none; stale pins found on
 * the way are removed. */
int repo_pin_find(struct repo *r, const struct oid *snapshot, struct repo_pin_holder *out);
/* fn for every live pin (stale ones are skipped, and removed if tidy); a
 * negative return from fn stops the walk and is returned. */
int repo_pins_each(struct repo *r, bool tidy,
		   int (*fn)(const struct oid *snapshot, const struct repo_pin_holder *h, void *arg),
		   void *arg);

/* Tags. */
int repo_tag_set(struct repo *r, const char *tag, const struct oid *id);
int repo_tag_get(struct repo *r, const char *tag, struct oid *out);
int repo_tag_remove(struct repo *r, const char *tag);
/* Validate a tag name: 1..REPO_TAG_MAX of [A-Za-z0-9._-], not starting with '.'. */
int repo_tag_valid(const char *tag);
/* The tags that name id, comma-separated into out ("" if none); how many. */
int repo_tags_of(struct repo *r, const struct oid *id, char *out, size_t size);

/* Listing. */
struct repo_snapshot_summary {
	struct oid id;
	struct manifest_info info;
	char tags[512]; /* comma-separated tags pointing at it */
};
/* All snapshots, oldest first.  *out is malloc'd. */
int repo_list_snapshots(struct repo *r, struct repo_snapshot_summary **out, size_t *count);

/* A retention policy, per directory snapshotted (host and source path).
 * Always kept: each directory's newest snapshot (the parent its next
 * snapshot reuses files from), tagged ones, and snapshots of no directory
 * (commits of mounts and sandboxes, images: their owners remove them). */
struct repo_prune_policy {
	uint64_t keep_last;      /* the newest N of each directory; 0: none more */
	int64_t keep_within_sec; /* those taken in the last S seconds; -1: none */
	int64_t now_sec;
	const char *source;      /* only this directory (with host), or NULL */
	const char *host;
};
enum repo_prune_verdict {
	PRUNE_REMOVE,
	PRUNE_KEEP_NEWEST,
	PRUNE_KEEP_LAST,
	PRUNE_KEEP_WITHIN,
	PRUNE_KEEP_TAGGED,
	PRUNE_KEEP_NO_SOURCE,
	PRUNE_KEEP_OTHER_SOURCE,
};
/* The verdict on each of items[0..n) (as repo_list_snapshots gives them)
 * into out[0..n).  0, or -ENOMEM. */
int repo_prune_select(const struct repo_snapshot_summary *items, size_t n,
		      const struct repo_prune_policy *p, enum repo_prune_verdict *out);
/* Why a verdict keeps a snapshot, in words ("tagged"). */
const char *repo_prune_reason(enum repo_prune_verdict v);

/* Writing: chunks go through a writer, which packs, indexes and commits. */
struct repo_writer;

struct repo_writer_opts {
	int zstd_level;         /* 0: the repository's */
	unsigned threads;       /* 0: all cores */
	struct repo_progress progress;
};

int repo_writer_new(struct repo *r, const struct repo_writer_opts *opts, struct repo_writer **out);
/* Chunk, dedup and store the content of fd (from its current offset to
 * the end) and return its chunk list (malloc'd) and size.  Thread-safe: may be
 * called for several files at once.  Zero-filled chunks become holes, and
 * holes of a sparse file (SEEK_DATA) are recorded without being read.  Reads
 * with pread: the fd's offset is left undefined. */
int repo_writer_add_fd(struct repo_writer *w, int fd, struct manifest_chunk **chunks,
		       uint32_t *count, uint64_t *size);
/* Same for bytes in memory. */
int repo_writer_add_bytes(struct repo_writer *w, const void *data, size_t len,
			  struct manifest_chunk **chunks, uint32_t *count);
/* Flush packs and the index, write the manifest (info's stats new_* are
 * filled in), then set tag (may be NULL) and the source ref if info->source
 * is set.  The writer is freed whatever happens. */
int repo_writer_commit(struct repo_writer *w, struct manifest_builder *b,
		       struct manifest_info *info, const char *tag, struct oid *out);
/* Drop a writer without committing (packs already stored become garbage). */
void repo_writer_abort(struct repo_writer *w);

/* snapshot create DIR. */
struct repo_create_opts {
	const char *tag;        /* may be NULL */
	const struct oid *parent; /* NULL: the latest snapshot of the same source */
	bool no_parent;         /* read every file */
	int zstd_level;
	unsigned threads;
	struct repo_progress progress;
	const char *const *excludes; /* left out, with all below (exclude.h) */
	size_t nexcludes;
	uint64_t *excluded;     /* if set, receives how many entries they left out */
	/* The tree may change while it is read.  An entry that vanishes (or is
	 * replaced by another kind: a file by a directory or symbolic link)
	 * after it was listed is left out, and a file that keeps changing
	 * while it is read is stored as last read; warn, if set, is told of
	 * each with one line naming it.  Called one at a time. */
	void (*warn)(void *arg, const char *line);
	void *warn_arg;
};
int repo_snapshot_create(struct repo *r, const char *dir, const struct repo_create_opts *opts,
			 struct oid *out, struct manifest_info *info_out);

struct repo_restore_opts {
	bool force;        /* restore into a non-empty directory */
	const char *path;  /* only this part ("a/b": a/b under DIR, its parents' too; links
			    * on the way followed as repo_manifest_resolve does), or NULL */
	unsigned threads;
	struct repo_progress progress;
};
int repo_snapshot_restore(struct repo *r, const struct oid *id, const char *dir,
			  const struct repo_restore_opts *opts);

/* The entry at path ("a/b", "/a/b/", "" for the root) in m, or an error
 * with a message naming path: -ENOENT, -ENOTDIR, -EINVAL (a ".."). */
int64_t repo_manifest_find(const struct manifest *m, const char *path);
/* A manifest of entry's part of m: the entry with everything below it, and
 * its ancestors up to the root (each holding just the one child on the
 * way), at the same paths.  Hard-link groups keep the members inside; the
 * content moves to the first of them. */
int repo_manifest_subtree(const struct manifest *m, uint32_t entry, struct manifest **out);
/* The entry at path as a process chrooted into the snapshot would reach it:
 * symbolic links on the way followed (absolute ones from the snapshot's
 * root, ".." in their targets stopping at the root), the last one too if
 * follow_last; at most 40.  path itself may not have "..".  An index, or
 * -ENOENT, -ENOTDIR, -ELOOP, -EINVAL with a message naming path. */
int64_t repo_manifest_resolve(const struct manifest *m, const char *path, bool follow_last);
/* Write the content of the regular file at path ("a/b", relative to the
 * snapshot's root; a hard link's too; symbolic links followed as
 * repo_manifest_resolve does) in snapshot id to fd, every chunk verified.
 * -ENOENT, -ENOTDIR, -EISDIR, -ELOOP, -EINVAL (a fifo, device or socket,
 * ".." in path), -EBADMSG (corrupt data), or a write's error; each with a
 * message naming path. */
int repo_snapshot_cat(struct repo *r, const struct oid *id, const char *path, int fd);

/* Remove a snapshot (and the tags pointing at it).  Data goes at the next gc. */
int repo_snapshot_remove(struct repo *r, const struct oid *id);

/* Differences between two snapshots: fn is called per path with
 * kind '+' (added), '-' (removed), 'M' (content or metadata changed). */
int repo_snapshot_diff(struct repo *r, const struct oid *a, const struct oid *b,
		       int (*fn)(char kind, const char *path, void *arg), void *arg);

struct repo_gc_stats {
	uint64_t packs_removed, packs_rewritten, packs_kept;
	uint64_t bytes_freed;
	uint64_t index_files_removed;
	uint64_t chunks_removed;
	uint64_t dicts_removed;
};
struct repo_gc_opts {
	bool dry_run;
	unsigned repack_percent; /* repack packs with more than this % garbage (default 50) */
	/* How long to wait for writers to finish before giving up with
	 * -EBUSY (0: 10 s); a gc from cron beside long writes wants more. */
	unsigned lock_wait_ms;
	struct repo_progress progress;
};
int repo_gc(struct repo *r, const struct repo_gc_opts *opts, struct repo_gc_stats *stats);

struct repo_check_opts {
	bool read_data;   /* decode and verify every chunk */
	FILE *report;     /* one line per problem (NULL: none) */
	struct repo_progress progress;
};
struct repo_check_stats {
	uint64_t snapshots, packs, chunks, errors, garbage_packs;
};
/* @return 0 if clean, -EBADMSG if problems were found (counted in stats). */
int repo_check(struct repo *r, const struct repo_check_opts *opts, struct repo_check_stats *stats);
