/* Internals of the hiberbox filesystem shared by the fs/ modules.
 *
 * The model: every inode of the mounted tree is a struct node, created lazily
 * (a lower directory's children become nodes the first time the directory is
 * looked into).  The namespace (directory maps), all metadata and the journal
 * are protected by one rwlock, fs->tree_lock; reads take it shared, changes
 * exclusively.  File content is not under that lock: lower content is
 * immutable, upper content lives in a data file whose fd is shared by all
 * handles of the node (fst->data_lock is taken shared by writers and
 * exclusively by commit, so a commit never sees a write half done).
 *
 * Lock order: commit_lock -> tree_lock -> fst->data_lock -> cache->lock.
 * A copy-up of a large file drops the tree lock while it copies (see
 * upper_copy_up): callers must not keep anything read under the lock across
 * that call except node pointers they hold a reference on.
 *
 * Inode numbers are stable across remounts of the same snapshot and upper:
 * a lower entry is its hard-link leader's manifest index + 1 (the root is 1),
 * a node created on the mount gets HBFS_UPPER_INO_BASE + n, recorded in the
 * journal.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

#include "fs/fs.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"

#define HBFS_UPPER_INO_BASE (1ull << 40)
#define HBFS_TIMEOUT_SEC 86400.0 /* kernel cache lifetime: we are the only writer */
#define HBFS_CACHE_CHUNKS 48     /* decoded chunks kept in memory */
#define HBFS_READAHEAD_CHUNKS 3
#define HBFS_JOURNAL_MAX_RECORD (16u << 20)
#define HBFS_XATTR_LIST_MAX (64u * 1024)
/* Names and values of one node's xattrs together: a record carries the whole
 * metadata of up to four nodes (a rename's directories and the two nodes
 * whose ctime it changes), so more could not be journaled.  setxattr beyond
 * it is ENOSPC. */
#define HBFS_XATTR_NODE_MAX_BYTES (1u << 20)
_Static_assert(4 * HBFS_XATTR_NODE_MAX_BYTES + (256u << 10) < HBFS_JOURNAL_MAX_RECORD,
	       "four nodes' xattrs fit in one journal record");
#define HBFS_SYMLINK_MAX 4096
/* Names of one file at most: ext4's limit, which tools (cp, tar, rsync)
 * know to expect as EMLINK; the VFS leaves it to a FUSE filesystem. */
#define HBFS_LINK_MAX 65000
#define HBFS_COPY_UP_UNLOCKED_BYTES (256u * 1024) /* larger copy-ups release the tree lock */
#define HBFS_HOT_MAX 8192        /* chunks recorded as the access trace of a mount */

enum {
	NODE_UPPER_DATA = 0x1, /* content is in upper/data/<ino> */
	NODE_XATTR_OWN = 0x2,  /* xattrs are node->xattrs (else the lower entry's) */
	NODE_DIR_LOADED = 0x4, /* dir->children holds every child */
	NODE_DATA_DIRTY = 0x8, /* content changed since the last commit */
	NODE_META_JOURNALED = 0x10, /* an INODE record exists (metadata != lower) */
	NODE_COMMITTED = 0x20, /* committed* hold the content of the last commit */
	NODE_COPYING = 0x40,   /* a copy-up runs without the tree lock */
	NODE_TMPFILE = 0x80,   /* an O_TMPFILE not linked yet: no name, no journal record */
	NODE_KERNEL_OPEN = 0x100, /* fst made at a first read/write of a file the kernel
				   * opened without a message; one nopen until FORGET */
	NODE_DIR_CHANGED = 0x200, /* dir_set changed an entry: a compaction of the
				   * journal writes what differs from the lower entries */
};

struct xattr {
	char *name;
	uint8_t *value;
	uint32_t len;
};

/* A directory: its entries in an array in insertion order, with a hash index
 * over it for lookups.  An entry's cookie (its readdir offset) never changes
 * while it exists, and cookies grow with insertion, so a listing read in
 * pieces while others add and remove entries returns every untouched entry
 * exactly once without any per-open state: the kernel can open directories
 * without asking us (no OPENDIR/RELEASEDIR round trips).  Removed entries
 * stay as holes until a compaction, which keeps the order and the cookies. */
struct dir_ent {
	char *name;         /* NULL: removed */
	uint32_t hash;
	struct node *child;
	uint64_t cookie;    /* >= DIR_FIRST_COOKIE (1 and 2 are "." and "..") */
};
#define DIR_FIRST_COOKIE 3
struct dir {
	struct dir_ent *ents;
	uint32_t nents, ents_cap; /* nents counts holes too */
	uint32_t *index;          /* position in ents + 1; 0 empty; DIR_INDEX_HOLE removed */
	uint32_t cap, used, live; /* index slots (used counts holes), live entries */
	uint64_t next_cookie;
	struct node *parent;      /* for ".." (the root's is itself) */
	uint32_t nsubdirs;
};
/* The first entry of d whose cookie is above off (d->nents if none). */
uint32_t dir_seek(const struct dir *d, uint64_t off);

/* Open state of a regular file (exists while opened or pinned). */
struct file_state {
	pthread_rwlock_t data_lock;
	int fd;                 /* upper data fd (O_RDWR), -1 if lower */
	uint64_t *chunk_end;    /* lower: end offset of each chunk */
};

struct node {
	uint64_t ino;
	uint32_t mode, uid, gid; /* stored (unshifted) ids */
	uint64_t rdev;
	uint64_t size;
	struct timespec atime, mtime, ctime;
	uint32_t nlink;         /* non-dirs: names; dirs: see node_nlink() */
	uint32_t flags;
	int64_t lower;          /* manifest index of the leader, -1 if none */
	uint64_t nlookup;       /* kernel references */
	uint32_t nopen;         /* open handles + pins */
	struct dir *dir;
	char *target;           /* symlink target when not the lower one */
	struct xattr *xattrs;
	uint32_t nxattrs;
	struct file_state *fst;
	struct manifest_chunk *committed; /* content at the last commit: chunks */
	uint32_t ncommitted;
	uint8_t *committed_inline;        /* ... or inline bytes */
	uint32_t committed_inline_len;
	uint32_t commit_gen, commit_idx, commit_pend;
	uint64_t charged;       /* bytes of its data (upper, else lower) counted against the limit (quota.c) */
	struct node *hash_next;
};

struct chunk_cache;
struct journal;
struct precreate;

struct hbfs {
	struct hbfs_opts opts;
	char mountpoint[4096];
	char upper_path[4096];
	struct repo *repo;
	struct manifest *m;
	struct oid base_id;     /* the mounted snapshot */
	struct repo_pin *pin;   /* tells `snapshot rm` that base_id is in use */
	struct oid last_id;     /* the last commit (or base) */
	struct oid upper_base;  /* the snapshot upper/meta names */
	uint8_t meta_state;     /* UPPER_META_*: how upper_open found upper/meta */
	pthread_rwlock_t tree_lock;
	struct node *root;
	struct node **by_lower; /* leader index -> node */
	struct node **ino_hash;
	uint64_t ino_hash_cap, nnodes;
	uint64_t next_ino;
	int upper_fd;           /* upper directory */
	int data_fd;            /* upper/data */
	struct journal *journal;
	int journal_fd;          /* the journal's fd, for fsync */
	/* Names made in upper/data (counted up), and how many of them an fsync
	 * has made durable: see upper_sync. */
	uint64_t data_names_made, data_names_synced;
	bool upper_dir_synced;
	struct precreate *precreate; /* empty data files made ahead (upper.c) */
	/* --disk-limit (0: none) and what counts against it now: the lower
	 * files still visible, the journal's bytes and every node's charged
	 * (quota.c). */
	uint64_t upper_limit, used;
	pthread_mutex_t quota_lock;
	bool no_opendir;             /* the kernel opens directories without us */
	bool no_open;                /* ... and files (see lazy_state in ops.c) */
	bool no_create;              /* new files come as MKNOD (hb_create) */
	bool posix_acl;              /* FUSE_POSIX_ACL: ACLs, umask and inheritance are ours */
	unsigned test_pause_ms;      /* HIBERBOX_FS_TEST_PAUSE_MS: see hbfs_test_pause */
	struct chunk_cache *cache;
	struct workqueue *readahead;
	pthread_mutex_t commit_lock;
	pthread_mutex_t copy_lock;  /* with copy_done: waiting for a copy-up */
	pthread_cond_t copy_done;
	uint32_t commit_gen;
	struct fuse_session *se;
	struct hbfs_uring *uring; /* FUSE over io_uring queues, or NULL (uring.h) */
	int control_fd;
	pthread_t control_thread;
	bool control_running;
	char sock_path[256];
	char info_path[4096];
};

/* fs.c */
/* Test only (tests/fs/write-races.sh): with HIBERBOX_FS_TEST_PAUSE_MS set in
 * the mount's environment, a commit waits that long once it has pinned its
 * files and a WRITE once it has its data fd, which makes their races
 * reproducible.  Does nothing otherwise. */
void hbfs_test_pause(const struct hbfs *fs);

/* A data file's mtime that differs from the one last journaled means a
 * write came since: it set the node's ctime too (after_write, and replay). */
static inline bool timespec_equal(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* node.c */
int tree_init(struct hbfs *fs);
void tree_free(struct hbfs *fs);
struct node *node_by_ino(struct hbfs *fs, uint64_t ino);
/* The node of lower entry i (created if needed; i's leader's node). */
struct node *node_lower(struct hbfs *fs, uint32_t i);
struct node *node_new_upper(struct hbfs *fs, uint64_t ino, uint32_t mode);
int dir_load(struct hbfs *fs, struct node *d);
struct node *dir_lookup(struct hbfs *fs, struct node *d, const char *name);
/* Set entry name of d to child (NULL: remove), adjusting link counts.  d must
 * be loaded. */
int dir_set(struct hbfs *fs, struct node *d, const char *name, struct node *child);
uint32_t node_nlink(const struct node *n);
/* Free the node (and its data file) if nothing refers to it any more. */
void node_maybe_free(struct hbfs *fs, struct node *n);
const char *node_symlink(struct hbfs *fs, struct node *n);
/* xattrs: lower ones until the first change. */
int node_xattrs_own(struct hbfs *fs, struct node *n);
/* n's own xattr name (n must own its xattrs), or NULL. */
struct xattr *node_xattr_find(const struct node *n, const char *name);
/* A new xattr of n (which must own its xattrs, and not have name yet),
 * taking value; NULL when out of memory (value is then freed). */
struct xattr *node_xattr_add(struct node *n, const char *name, uint8_t *value, uint32_t len);
/* The stored value of xattr name of n (its own or the lower entry's):
 * valid until the next change of n's xattrs. */
bool node_xattr_get(struct hbfs *fs, const struct node *n, const char *name,
		    const uint8_t **value, uint32_t *len);
void node_fill_stat(struct hbfs *fs, const struct node *n, struct stat *st);
/* uid shifting between stored and presented ids. */
uint32_t id_to_host(const struct hbfs *fs, uint32_t id);
uint32_t id_from_host(const struct hbfs *fs, uint32_t id);
/* The ids inside an xattr value, shifted as owners are (to_host: stored ->
 * presented): a POSIX ACL's user and group entries, a v3 file capability's
 * root id.  The kernel reads and writes those as ids of the mount's
 * namespace (it maps them for callers in a sandbox's), so unshifted they
 * named the wrong users, and a sandbox's own came back shifted in a commit.
 * Other values, and malformed ones, are left as they are. */
void xattr_shift_ids(const struct hbfs *fs, const char *name, uint8_t *value, size_t len,
		     bool to_host);

/* upper.c */
/* Opens and locks the upper directory and reads its meta.  A new upper's
 * meta is written for new_base when that is known already (it can be done
 * beside the manifest's loading: it syncs), else left to upper_bind_base,
 * which checks the upper against fs->base_id once that is final. */
enum { UPPER_META_NONE, UPPER_META_READ, UPPER_META_WRITTEN };
int upper_open(struct hbfs *fs, const struct oid *new_base);
int upper_bind_base(struct hbfs *fs);
void upper_close(struct hbfs *fs);
/* Journal records are built then appended under the tree write lock. */
struct jrec {
	struct buf b;
	/* The change frees space or keeps it (unlink, truncate down): appended
	 * even past the upper limit, so that a full sandbox can recover. */
	bool frees;
};
/* n's metadata without its xattrs (a change of those is jrec_xattr's). */
void jrec_inode(struct hbfs *fs, struct jrec *r, const struct node *n);
/* n's metadata and, when it owns them, all its xattrs: a new node's first
 * record (which replaces any xattrs a replay gave the number before). */
void jrec_inode_whole(struct hbfs *fs, struct jrec *r, const struct node *n);
/* xattr name of n (which owns its xattrs) as it is now: its value, or gone. */
void jrec_xattr(struct jrec *r, const struct node *n, const char *name);
void jrec_dirent(struct jrec *r, uint64_t parent, const char *name, uint64_t child);
int jrec_commit(struct hbfs *fs, struct jrec *r);
int upper_replay(struct hbfs *fs);
/* Stops the upper's threads (made ahead data files, journal compaction):
 * before the tree is freed. */
void upper_stop_threads(struct hbfs *fs);
int upper_save_last(struct hbfs *fs);
/* Make n's content an upper data file (copying the lower content), tree lock
 * held exclusively.  truncate_to >= 0: the copy ends there (saves copying
 * data about to be cut off). */
int upper_copy_up(struct hbfs *fs, struct node *n, int64_t truncate_to);
/* An empty data file made ahead by the precreate thread, its inode number
 * reserved: 0 with *ino and *fd (O_RDWR) set, or -EAGAIN if none is ready.
 * Tree lock held exclusively. */
int upper_take_precreated(struct hbfs *fs, uint64_t *ino, int *fd);
/* Open the data file of n (O_RDWR). */
int upper_open_data(struct hbfs *fs, const struct node *n, int flags, mode_t mode);
/* An fsync of a file or directory of the mount: makes the journal durable,
 * and the directory entries of the upper's data files (and of the upper's
 * own files), which fsync() of a data file does not promise.  Costs a
 * directory fsync only when a data file was named since the last one. */
int upper_sync(struct hbfs *fs);
void upper_data_name(const struct node *n, char out[32]);

/* quota.c: the disk limit of the whole tree (fs->upper_limit; all of these
 * do nothing without one).  A data file counts as its size rounded up to
 * 4 KiB or its allocated blocks, whichever is more; a lower file still
 * visible as its size rounded up to 4 KiB, once per hard-link group; the
 * journal as its bytes. */
uint64_t quota_charge_of(const struct stat *st);
/* Count every lower file of fs->m (once, before any node is made). */
void quota_lower_init(struct hbfs *fs);
/* n, a node just made for a lower entry, carries that entry's charge. */
void quota_lower_node(struct hbfs *fs, struct node *n);
/* Room for n's data file to reach end: -ENOSPC if it does not fit. */
int quota_grow(struct hbfs *fs, struct node *n, uint64_t end);
/* As quota_grow for a write of len bytes at off: how many of them fit
 * (fewer at the limit), or -ENOSPC if none. */
ssize_t quota_grow_write(struct hbfs *fs, struct node *n, uint64_t off, size_t len);
/* n's data file is st now.  exact: count it as it is (after a truncate or
 * hole punch); else only ever more (writes racing each other). */
void quota_settle(struct hbfs *fs, struct node *n, const struct stat *st, bool exact);
/* n's data file is gone, or n is: a node still referenced (a copy-up
 * undone) counts its lower file again, a dead one nothing. */
void quota_release(struct hbfs *fs, struct node *n);
/* What counts now, and the limit (0: none). */
void quota_usage(struct hbfs *fs, uint64_t *used, uint64_t *limit);
/* A journal append of len bytes: may it be made (0 or -ENOSPC)?  Counted
 * by quota_journal_done once it is. */
int quota_journal_check(struct hbfs *fs, uint64_t len, bool frees);
void quota_journal_done(struct hbfs *fs, uint64_t len);
/* statfs of the mount: the limit and the use instead of the upper's disk
 * (never more free than the disk has). */
void quota_statfs(struct hbfs *fs, struct statvfs *sv);

/* lower.c */
int cache_new(struct hbfs *fs);
void cache_free(struct hbfs *fs);
/* Chunk end offsets of lower entry i (malloc'd). */
int lower_chunk_ends(struct hbfs *fs, uint32_t i, uint64_t **out);
/* Read [off, off+len) of lower file i into out; returns bytes. */
ssize_t lower_read(struct hbfs *fs, uint32_t i, const uint64_t *ends, void *out, size_t len,
		   uint64_t off);

/* The chunks fetched from the repository since the mount, in order (the hot
 * list of the next commit).  *out malloc'd. */
int lower_hot_list(struct hbfs *fs, struct oid **out, uint32_t *count);

/* ops.c */
void node_close(struct hbfs *fs, struct node *n);
int node_open_pinned(struct hbfs *fs, struct node *n);
struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops hbfs_ops;

/* commit.c */
int hbfs_commit_local(struct hbfs *fs, const char *tag, struct oid *out);

/* control.c */
int control_start(struct hbfs *fs);
void control_stop(struct hbfs *fs);
int control_paths(const char *mountpoint, char *sock, size_t socksize, char *info,
		  size_t infosize);
