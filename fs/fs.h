/* hiberbox filesystem: the public interface of fs/.
 *
 * A snapshot mounted read-write through FUSE (libfuse3 low-level API).  The
 * lower layer is the snapshot's manifest, held in memory, with file data read
 * chunk by chunk from the repository on access.  Writes go to an upper
 * directory that describes itself (see fs/README.md): data files named by inode
 * number plus an append-only journal of namespace and metadata changes, so that
 * mounting again with the same upper directory after a crash or SIGKILL
 * recovers every write that reached it.
 *
 * A running mount registers itself under $HIBERBOX_HOME/mounts/ with a control
 * socket; hbfs_commit() (and `hiberbox commit`) asks it for a new snapshot
 * while it stays mounted and writable.
 *
 * All functions return 0 or a negative errno with a message (util/error.h).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot/oid.h"

#define HBFS_UID_SHIFT_RANGE 65536u /* stored ids 0..65535 are shifted */
/* The disk limit counts a file's size rounded up to this, as a disk's
 * allocation would; whoever checks a tree against a limit before mounting
 * it must round the same way. */
#define HBFS_LIMIT_BLOCK_BYTES 4096u

struct hbfs_opts {
	const char *repo;       /* repository location (required) */
	const char *snapshot;   /* id, id prefix or tag (required) */
	const char *mountpoint; /* existing directory (required) */
	const char *upper;      /* upper directory; NULL: a new one under $HIBERBOX_HOME/upper */
	uint32_t uid_shift;     /* 0: none */
	/* Bytes the mounted tree may take, as on a disk of that size: the
	 * lower snapshot's files and the upper directory's data files and
	 * journal (fs/README.md "Disk limit"); growth beyond is ENOSPC.
	 * 0: none. */
	uint64_t upper_limit;
	bool foreground;        /* run the FUSE loop in this process */
	bool debug;             /* libfuse debug output (implies foreground) */
	/* If ready_fd >= 0 (foreground only), one line is written to it once the
	 * mount answers: "ok\n" or "error <message>\n", and it is closed. */
	int ready_fd;
};

/* Mount and serve.  In the background mode (foreground false) the call forks:
 * the child serves the mount; the caller returns 0 once the mount answers
 * (or the child's error).  In the foreground mode it returns when the
 * filesystem is unmounted (0) or on a setup error. */
int hbfs_mount(const struct hbfs_opts *opts);

/* Ask the process serving mountpoint to commit a new snapshot (tag may be
 * NULL).  @return 0 and the id in *out; -ENOENT if no live mount is
 * registered there. */
int hbfs_commit(const char *mountpoint, const char *tag, struct oid *out);

/* What counts against the --disk-limit of the mount at mountpoint, and the
 * limit; 0 for both when it has none (the use is counted only under a
 * limit).  *rss (if rss is not NULL): the serving process's resident memory,
 * UINT64_MAX when it does not say (an older binary).  Waits at most
 * timeout_ms for the answer (a commit in progress holds it up): -ETIMEDOUT
 * then; -ENOENT if no live mount is there. */
int hbfs_usage(const char *mountpoint, int timeout_ms, uint64_t *used, uint64_t *limit,
	       uint64_t *rss);

/* Unmount: ask the serving process to flush and unmount, or, if it is dead,
 * detach the stale mount.  Waits until the mountpoint is released. */
int hbfs_umount(const char *mountpoint);
/* Whether mountpoint is the mount of an fs process that died: the kernel
 * answers ENOTCONN (statfs, which always reaches the fs).  A mount on
 * io_uring answers ECANCELED, then ECONNABORTED, while the dying process's
 * rings are torn down; that is waited out (up to 5 s), so that a true
 * answer means the process's files, the upper directory's lock among them,
 * are closed. */
bool hbfs_mount_dead(const char *mountpoint);

/* A registered mount. */
struct hbfs_mount_info {
	char mountpoint[4096];
	char upper[4096];
	char repo[4096];
	char snapshot[OID_HEX_BYTES]; /* the mounted (lower) snapshot */
	char last_commit[OID_HEX_BYTES]; /* "" if none */
	pid_t pid;
	bool alive;                   /* the serving process answers */
	uint32_t uid_shift;
	uint64_t limit;               /* its --disk-limit; 0: none */
	uint64_t used;                /* what counts against it now, if used_known */
	bool used_known;              /* a live mount with a limit answered */
};

/* All registered mounts (alive or not).  *out is malloc'd. */
int hbfs_list_mounts(struct hbfs_mount_info **out, size_t *count);
