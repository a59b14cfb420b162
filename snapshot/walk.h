/* The walk of snapshot create: a directory tree's metadata, read in parallel.
 *
 * A re-snapshot of an unchanged tree reads no file content, so its time is
 * the walk's: one getdents per directory and one statx per entry.  With a cold
 * page cache each of those waits for the disk, and one thread doing them in
 * turn keeps a single request in flight.  walk_tree() has a pool of threads
 * each take a directory (or a slice of a large one), so the disk sees many
 * requests at once; within a slice, entries are looked at in inode-number
 * order so neighbouring inodes come from the same inode-table blocks.
 *
 * The result does not depend on the threads: entries come back in the
 * manifest's order (breadth-first, siblings sorted bytewise), with parent,
 * hard-link group and link counts filled in as the manifest builder wants.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshot/manifest.h"

struct walk_xattr {
	char *name;
	uint8_t *value;
	uint32_t len;
};

struct walk_entry {
	struct manifest_node node; /* metadata, parent, hardlink, nlink */
	char *name;
	char *path;      /* relative to the source root ("" for the root) */
	char *target;    /* symlink target */
	struct walk_xattr *xattrs; /* sorted by name */
	uint32_t nxattrs;
	int64_t prev;    /* same path in the parent snapshot, or -1 */
	uint64_t st_nlink;
	bool reused;     /* for the caller: content taken from the parent snapshot */
	bool gone;       /* vanished or replaced since it was listed: to be left out */
};

struct walk_opts {
	int rootfd;       /* the directory to walk; open until walk_finish */
	const char *root; /* its absolute path (xattrs are read by path) */
	unsigned threads; /* 0: a default sized for disk latency, not cores */
	const char *const *excludes; /* patterns of entries to leave out (exclude.h) */
	size_t nexcludes;
	uint64_t *excluded; /* if set, counts the entries left out (atomically) */
	/* If set, told of each entry left out because it vanished or was
	 * replaced while the walk looked at it (why: "was removed", ...); may
	 * be called from several threads at once. */
	void (*gone)(void *arg, const char *path, const char *why);
	void *gone_arg;
};

struct walk;

/* Start walking in the background: listing directories and stat calls need
 * nothing from the repository, so they run while the caller takes the lock
 * and loads the parent snapshot.  @return 0 or a negative errno (the root is
 * not a directory, out of memory). */
int walk_start(const struct walk_opts *o, struct walk **out);
/* Wait for the walk and return the tree, matched against parent (an
 * earlier snapshot of the same tree, or NULL): prev set, xattrs taken from it
 * for unchanged inodes.  Entries that vanished while we walked (removed, or
 * replaced: a directory by a file or a symbolic link) are left out, with all
 * below them, and told to o->gone; sockets are left out too.  Any other
 * failure (unreadable directory, stat error) fails the walk.  Frees w in any case.  @return 0 with *entries (free with
 * walk_free) and *count, or a negative errno with a message. */
int walk_finish(struct walk *w, const struct manifest *parent, struct walk_entry **entries,
		uint32_t *count);
/* Stop a walk that will not be finished.  NULL is fine. */
void walk_cancel(struct walk *w);
/* walk_start then walk_finish. */
int walk_tree(const struct walk_opts *o, const struct manifest *parent,
	      struct walk_entry **entries, uint32_t *count);
void walk_free(struct walk_entry *entries, uint32_t count);

/* Remove the entries marked gone, with everything below a directory marked
 * gone, keeping the order; parents, hard-link groups (the first member left
 * represents a group) and link counts are made again.  map, if set, gets for
 * each old index the new one, or UINT32_MAX for an entry removed.  The root
 * is never removed.  @return 0 or -ENOMEM. */
#define WALK_DROPPED UINT32_MAX
int walk_drop_gone(struct walk_entry *entries, uint32_t *count, uint32_t *map);

/* If err (from opening or looking up an entry by its path beneath the
 * root) says the entry is no longer there as it was listed, what happened
 * ("was removed", ...); else NULL: a real failure. */
const char *walk_gone_why(int err);

/* A ctime in the clock tick `started` (CLOCK_REALTIME_COARSE, taken before
 * the first stat) or later does not prove the inode unchanged: record it 1 ns
 * earlier so that the next snapshot looks at the inode again. */
void walk_smudge_racy_ctime(struct manifest_node *n, const struct timespec *started);
/* Take e's metadata from st, which fstat gave for fd, open on the entry now
 * (it changed since the walk); if it is another inode than the walk saw, its
 * xattrs too.  started: as for walk_smudge_racy_ctime.  @return 0 or a
 * negative errno with a message. */
int walk_entry_update(struct walk_entry *e, int fd, const struct stat *st,
		      const struct timespec *started);

/* Is e the inode the parent snapshot recorded at the same path, untouched
 * since (same type, inode number and ctime)?  ctime moves with every change
 * to content, metadata or xattrs; the walk records a ctime that may not yet
 * have moved for a change made in the same clock tick as slightly off, so
 * that it never matches. */
bool walk_inode_unchanged(const struct manifest *parent, const struct walk_entry *e);
