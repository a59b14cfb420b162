/* The store: where a repository's objects live.
 *
 * A store maps names ("packs/ab/ab12….pack", "refs/tags/x") to immutable byte
 * strings, except under refs/ and locks/ where objects may be replaced.  Each
 * backend is one file: store-local.c (a directory), store-s3.c (a bucket
 * prefix, s3/), store-tiered.c (a local cache in front of another store).
 *
 * Return contract of every operation: 0 (or a count) on success; -ENOENT when
 * the object does not exist ("missing" is never "corrupt"); -EEXIST from a
 * put with STORE_PUT_NOREPLACE over an existing object; other negative errnos
 * with a message (util/error.h) for real failures.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define STORE_PUT_NOREPLACE 0x1 /* fail with -EEXIST instead of replacing */
/* The object means nothing once its writer is gone (a lock, a pin): atomic,
 * but a local store does not make it durable (no fsync). */
#define STORE_PUT_VOLATILE 0x2
#define STORE_GET_ALL UINT64_MAX

struct store;

struct store_ops {
	/* Read len bytes at off (STORE_GET_ALL: to the end) into out (replaced).
	 * A range past the end is -EBADMSG (a truncated object). */
	int (*get)(struct store *s, const char *name, uint64_t off, uint64_t len, struct buf *out);
	/* Write an object atomically: readers see the old state or the whole
	 * new object, never a part, also after a crash. */
	int (*put)(struct store *s, const char *name, const void *data, size_t len, int flags);
	/* Size of an object (size may be NULL to ask for existence only).
	 * @return 0 or -ENOENT. */
	int (*stat)(struct store *s, const char *name, uint64_t *size);
	/* Call fn for every object whose name starts with prefix (in no set
	 * order).  mtime_sec: last write, for gc's grace period.  A non-zero
	 * return from fn stops the walk and is returned. */
	int (*list)(struct store *s, const char *prefix,
		    int (*fn)(const char *name, uint64_t size, int64_t mtime_sec, void *arg), void *arg);
	/* Delete an object.  @return 0 or -ENOENT. */
	int (*remove)(struct store *s, const char *name);
	/* Remove leftovers of interrupted writes (temporary files).  Optional. */
	int (*cleanup)(struct store *s);
	/* Drop any copy of `name` kept by this store or the layers under it (a
	 * cache, an open descriptor), so that the next get reads the source
	 * again: called when bytes read failed verification.  Optional. */
	void (*invalidate)(struct store *s, const char *name);
	/* Call fn(off, len) for each byte range of `name` that a cache layer of
	 * this store holds locally (a whole object: 0, STORE_GET_ALL), so that
	 * a reader can plan which ranges to ask the network for.  A get of a
	 * range inside one of them is served locally.  Optional: stores that
	 * are not caches report nothing.  A non-zero return from fn stops the
	 * walk and is returned. */
	int (*cached)(struct store *s, const char *name,
		      int (*fn)(uint64_t off, uint64_t len, void *arg), void *arg);
	/* A human-readable location ("/var/lib/hiberbox/repo", "s3://b/p"). */
	const char *(*location)(struct store *s);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
};

static inline int store_get(struct store *s, const char *name, uint64_t off, uint64_t len,
			    struct buf *out)
{
	return s->ops->get(s, name, off, len, out);
}
static inline int store_put(struct store *s, const char *name, const void *data, size_t len,
			    int flags)
{
	return s->ops->put(s, name, data, len, flags);
}
static inline int store_stat(struct store *s, const char *name, uint64_t *size)
{
	return s->ops->stat(s, name, size);
}
static inline int store_list(struct store *s, const char *prefix,
			     int (*fn)(const char *name, uint64_t size, int64_t mtime_sec, void *arg),
			     void *arg)
{
	return s->ops->list(s, prefix, fn, arg);
}
static inline int store_remove(struct store *s, const char *name)
{
	return s->ops->remove(s, name);
}
static inline int store_cleanup(struct store *s)
{
	return s->ops->cleanup ? s->ops->cleanup(s) : 0;
}
static inline void store_invalidate(struct store *s, const char *name)
{
	if (s->ops->invalidate)
		s->ops->invalidate(s, name);
}
static inline int store_cached(struct store *s, const char *name,
			       int (*fn)(uint64_t off, uint64_t len, void *arg), void *arg)
{
	return s->ops->cached ? s->ops->cached(s, name, fn, arg) : 0;
}
static inline const char *store_location(struct store *s)
{
	return s->ops->location(s);
}
static inline void store_free(struct store *s)
{
	if (s)
		s->ops->free(s);
}

/* A store in a local directory (created if create is set). */
int store_local_open(const char *path, int create, struct store **out);
/* Open the store named by a location: "s3://bucket/prefix" or a path. */
int store_open_location(const char *location, int create, struct store **out);
/* A store on an S3 bucket prefix ("s3://bucket/prefix"), configured from the
 * AWS_* environment (store-s3.c, present when s3/ is built).  With create,
 * the bucket is checked (and made if missing) at once; without, nothing is
 * asked until the first operation, which then reports a missing bucket or
 * refused keys. */
int store_s3_open(const char *location, int create, struct store **out);
/* A local cache directory in front of a remote store (store-tiered.c), one
 * directory per remote.  Takes ownership of remote.  cache_bytes 0: 10% of the free space (at least
 * 64 MiB). */
int store_tiered_open(struct store *remote, const char *cache_dir, uint64_t cache_bytes,
		      struct store **out);
/* Delete the cache in cache_dir (its index.sqlite and objects/; other
 * files and subdirectories stay) unless a process has that index open.
 * For caches of an earlier layout, which took no lock.  @return 1 removed,
 * 0 absent, unreadable or in use (left for a later call). */
int store_tiered_remove_unused(const char *cache_dir);
/* While on, a tiered store's get and stat go to its remote and leave the
 * cache as it is: check verifies what the repository holds, not this host's
 * copies of it (which would hide an object damaged in the bucket), and
 * reading every pack does not evict what mounts are using.  No-op for other
 * stores. */
void store_tiered_read_remote(struct store *s, int on);
/* The remote store behind a tiered one (NULL if s is not tiered). */
struct store *store_tiered_remote(struct store *s);
/* Cache figures of a tiered store (-EINVAL if s is not tiered). */
int store_tiered_stats(struct store *s, uint64_t *hits, uint64_t *misses, uint64_t *cached_bytes);
struct s3_stats;
/* Request figures of an S3 store (-EINVAL if s is not one). */
int store_s3_stats(struct store *s, struct s3_stats *out);
