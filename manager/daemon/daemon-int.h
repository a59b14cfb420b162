/* Private pieces of the daemon: the registry (registry.c), the lifecycle of
 * one sandbox (lifecycle.c), the daemon context shared with the API (api.c).
 *
 * Lock order: sbx.lock (one sandbox) -> hbd.lock (the list); nobody takes
 * a sandbox's lock while holding the list's.  The registry
 * connection is serialized by SQLite itself (SQLITE_OPEN_FULLMUTEX). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "manager/daemon/daemon.h"
#include "manager/network.h"
#include "snapshot/oid.h"

struct sandbox;
struct sandbox_proc;
struct nat_helper;
struct sbx_transfer;

#define SBX_NAME_MAX 64
#define SBX_ENV_MAX 256
#define SBX_ID_BASE_FIRST 200000u
#define SBX_ID_RANGE 65536u
#define SBX_SLOTS_MAX 4096
#define SBX_PUBLISH_MAX 32

enum sbx_state { SBX_SLEEPING = 0, SBX_RUNNING = 1 };

/* One row of the sandboxes table. */
struct sbx_record {
	char name[SBX_NAME_MAX + 1];
	char image[256];
	char base[OID_HEX_BYTES];   /* snapshot it was created from */
	char latest[OID_HEX_BYTES]; /* its latest snapshot ("" = base) */
	char lower[OID_HEX_BYTES];  /* snapshot mounted now; when sleeping "", or the
				     * one an uncommitted upper kept belongs to */
	enum sbx_state state;
	uint64_t memory_bytes;
	uint64_t disk_bytes; /* what its upper directory may hold (0: no limit) */
	uint32_t pids;
	uint32_t cpu_millis;
	int network; /* enum sandbox_network */
	/* network nat: ports published on the host at every wake */
	struct nat_port publish[SBX_PUBLISH_MAX];
	unsigned publish_count;
	char *env_json; /* JSON array of "K=V" (malloc'd) */
	uint64_t idle_timeout_s;
	uint32_t id_base;
	int64_t init_pid;
	uint64_t init_start; /* /proc/PID/stat starttime, against pid reuse */
	int64_t created, slept_at, woken_at; /* unix seconds */
	uint64_t last_sleep_ms, last_wake_ms;
	uint64_t wakes; /* count, part of the cgroup name (unique per wake) */
	bool removing;  /* its removal began: finished by rm or the next start */
};

/* registry.c */
struct registry;
int registry_open(const char *path, struct registry **out);
void registry_close(struct registry *reg);
int registry_load(struct registry *reg, int (*fn)(const struct sbx_record *, void *), void *arg);
int registry_insert(struct registry *reg, const struct sbx_record *rec);
int registry_update(struct registry *reg, const struct sbx_record *rec);
int registry_delete(struct registry *reg, const char *name);
/* Snapshots committed by sandboxes, so that rm can free them. */
int registry_snapshot_add(struct registry *reg, const char *id, const char *owner);
int registry_snapshot_set_owner(struct registry *reg, const char *id, const char *owner);
int registry_snapshot_delete(struct registry *reg, const char *id);
/* A sandbox other than except whose latest, lower or base is id: 1 and its
 * name, or 0. */
int registry_snapshot_user(struct registry *reg, const char *id, const char *except,
			   char *name_out, size_t size);
/* ids owned by owner: fn per id. */
int registry_snapshots_of(struct registry *reg, const char *owner,
			  int (*fn)(const char *id, void *), void *arg);
/* A detached command (table detached): pid and its /proc starttime, which
 * tell it from a later process with the same pid; its --timeout as a
 * CLOCK_MONOTONIC time (now_ns(), the same for every process of a boot;
 * 0: none); its log. */
struct sbx_detached_row {
	int64_t pid;
	uint64_t start;
	uint64_t deadline_ns;
	char log[4400];
};
int registry_detached_add(struct registry *reg, const char *sandbox,
			  const struct sbx_detached_row *row);
/* pid 0: every row of sandbox. */
int registry_detached_delete(struct registry *reg, const char *sandbox, int64_t pid);
int registry_detached_of(struct registry *reg, const char *sandbox,
			 int (*fn)(const struct sbx_detached_row *, void *), void *arg);
void sbx_record_clear(struct sbx_record *rec);
int sbx_record_copy(struct sbx_record *dst, const struct sbx_record *src);
/* rec's published ports as a JSON array of their canonical texts
 * ("127.0.0.1:8080:3000/tcp"), as the API shows them and the registry
 * keeps them; NULL when out of memory. */
json_t *sbx_publish_json(const struct sbx_record *rec);
/* Validate a sandbox or image name: 1..64 of [A-Za-z0-9_.-], not starting
 * with '.' or '-'. */
int sbx_name_valid(const char *name);

/* A detached process, and its log while anything writes it.  One a
 * previous daemon started has no handle: a pidfd watches it instead. */
struct sbx_detached {
	struct sandbox_proc *proc; /* NULL once it ended (its children may not have) */
	int pidfd; /* re-adopted and running: its pidfd, else -1 */
	pid_t pid;
	int log_fd; /* the daemon's own open of its log, to cap its size (or -1) */
	uint64_t deadline_ns; /* its exec timeout (now_ns clock), 0: none */
	struct sbx_detached *next;
};

/* One sandbox in memory. */
struct sbx {
	pthread_mutex_t lock; /* lifecycle; held across sleep/wake/commit */
	struct sbx_record rec;
	struct sandbox *sb;   /* NULL when sleeping */
	struct nat_helper *nat; /* network nat: its helper while sb runs */
	int active_execs;     /* foreground execs streaming now */
	/* File downloads streaming now: their replies read the root after the
	 * lock is let go, so they hold its mount.  Under hbd.lock (api.c). */
	struct sbx_transfer *transfers;
	struct sbx_detached *detached;
	uint64_t last_activity_ns;
	int refs;             /* under hbd.lock */
	/* No longer to be used: its removal began (rec.removing) or is done
	 * (rec.removing cleared again, the row deleted, unlisted). */
	bool removed;
	/* A slow step under lock (a sleep, a wake, a commit, a removal, a
	 * file upload): how deep they nest (under lock) and, while one runs,
	 * the sandbox as it was when it began (sbx_to_json, under hbd.lock),
	 * which a listing and GET /sandboxes/NAME show rather than wait for
	 * the lock (api.c, lifecycle.c). */
	int slow_depth;
	json_t *shown;
	/* Every stop of the sandbox's processes counts one and says why (a
	 * static word: "sleep", "idle", "init", "rm", "shutdown", "recover",
	 * "fs"), so an exec
	 * stream that saw its command killed can tell its client what did it.
	 * Written under lock; read by streams without it. */
	atomic_uint stops;
	_Atomic(const char *) stop_reason;
	/* File uploads in pieces whose last piece has not come (files.c;
	 * under lock). */
	struct sbx_pending_upload *uploads;
};

struct hbd {
	pthread_mutex_t lock; /* the list */
	/* An image's removal against a create from it: held from reading the
	 * image's tag to the new sandbox's row (which makes it a user), and
	 * from the removal's check for users to the snapshot's removal. */
	pthread_mutex_t images_lock;
	struct sbx **list;
	size_t count, cap;
	struct registry *reg;
	char home[4096];
	char repo[4096];
	const char *const *helper_argv;
	volatile int stopping;
	int stop_pipe[2];
	unsigned test_sleep_pause_ms; /* HIBERBOX_TEST_SLEEP_PAUSE_MS (lifecycle.c) */
	unsigned test_rm_pause_ms;    /* HIBERBOX_TEST_RM_PAUSE_MS (lifecycle.c) */
	unsigned test_wake_pause_ms;  /* HIBERBOX_TEST_WAKE_PAUSE_MS (lifecycle.c) */
	unsigned test_stop_pause_ms;  /* HIBERBOX_TEST_STOP_PAUSE_MS (lifecycle.c) */
	unsigned test_create_pause_ms; /* HIBERBOX_TEST_CREATE_PAUSE_MS (lifecycle.c) */
	unsigned test_spawn_pause_ms; /* HIBERBOX_TEST_SPAWN_PAUSE_MS (lifecycle.c) */
	unsigned test_upload_pause_ms; /* HIBERBOX_TEST_UPLOAD_PAUSE_MS (lifecycle.c) */
	/* How long an upload in pieces waits for its next piece before the
	 * next upload into its sandbox gives it up (files.c; 10 minutes,
	 * HIBERBOX_TEST_UPLOAD_IDLE_MS sets it for tests) */
	unsigned upload_idle_ms;
	unsigned test_exec_pause_ms;  /* HIBERBOX_TEST_EXEC_PAUSE_MS (lifecycle.c) */
	bool test_detached_add_fails; /* HIBERBOX_TEST_DETACHED_ADD_FAILS (lifecycle.c) */
	/* How long a stop waits for file downloads in progress (api.c;
	 * HIBERBOX_TEST_STOP_DOWNLOAD_WAIT_MS shortens it for tests) */
	unsigned stop_download_wait_ms;
};

/* lifecycle.c: functions ending in _locked need s->lock held. */
/* Wait ms (if not 0) for a test to kill the daemon there (HIBERBOX_TEST_*). */
void hbd_test_pause(const char *what, const char *name, unsigned ms);
/* A slow step of s begins or ends (s->lock held; they nest): until the
 * outermost one ends, a listing shows s as it was when it began instead of
 * waiting for its lock. */
void sbx_slow_begin(struct hbd *d, struct sbx *s);
void sbx_slow_end(struct hbd *d, struct sbx *s);
int sbx_wake_locked(struct hbd *d, struct sbx *s, uint64_t *ms);
/* Record a detached process writing to log_fd, the file log (the caller
 * keeps log_fd), killed once deadline_ns passes (0: never; checked at each
 * idle tick).  The registry has it too, for a daemon restarted while it runs. */
int sbx_detached_add(struct hbd *d, struct sbx *s, struct sandbox_proc *proc, int log_fd,
		     const char *log, uint64_t deadline_ns);
/* Free s's detached records (process handles, log descriptors), in memory
 * only. */
void sbx_detached_free_all(struct sbx *s);
/* Whether a detached record's process runs (not counting ended ones whose
 * log is still written). */
bool sbx_detached_running(const struct sbx_detached *x);
/* Let only root and the sandbox's ids into its state directory. */
int sbx_close_dir(struct hbd *d, struct sbx *s);
/* If the sandbox's init has ended, commit and put it to sleep. */
int sbx_check_init_locked(struct hbd *d, struct sbx *s);
/* why: what the processes it kills are told ended them (see sbx.stops). */
int sbx_sleep_locked(struct hbd *d, struct sbx *s, const char *why, uint64_t *ms,
		     char *snap_out);
int sbx_commit_locked(struct hbd *d, struct sbx *s);
int sbx_create(struct hbd *d, const struct sbx_record *req, bool start, struct sbx **out);
int sbx_fork(struct hbd *d, struct sbx *parent, const char *newname, struct sbx **out);
/* Remove s: its row is marked removing first and deleted last, and every
 * step between can be done again, so that a removal a crash or an error
 * interrupted is finished by the next rm or the next daemon start. */
int sbx_remove(struct hbd *d, struct sbx *s);
int sbx_recover(struct hbd *d, struct sbx *s);
/* At start, for a sandbox recorded asleep: kill what a wake cut short left. */
int sbx_recover_sleeping(struct hbd *d, struct sbx *s);
/* At start: finish a removal (rec.removing) a previous daemon began. */
int sbx_remove_unfinished(struct hbd *d, struct sbx *s);
/* At start, before the server runs: remove (killing what is in them) the
 * fs processes' and NAT helpers' groups of this home whose sandbox no
 * longer exists, which a daemon that died left. */
int sbx_sweep_cgroups(struct hbd *d);
/* Reap finished detached processes (their logs are let go once nothing
 * writes them) and count those alive; count live processes besides init. */
int sbx_reap_locked(struct hbd *d, struct sbx *s);
int sbx_process_count_locked(struct sbx *s);
/* usage.c: {memory_bytes, memory_peak_bytes, cpu_ns, tasks, disk_bytes},
 * null where not counted; NULL when it is not running. */
json_t *sbx_usage_json_locked(struct hbd *d, struct sbx *s);
int sbx_state_dir(struct hbd *d, const char *name, const char *sub, char *out, size_t size);
json_t *sbx_to_json(struct sbx *s);
/* Exec: start a command; fds are the caller's (closed by the caller). */
struct sbx_exec_req {
	const char **argv;
	const char **env;
	const char *cwd;
	uint32_t uid, gid;
	int stdin_fd, stdout_fd, stderr_fd;
	bool tty; /* stdin_fd is a pty's slave: the command's controlling terminal */
};
int sbx_exec_start_locked(struct hbd *d, struct sbx *s, const struct sbx_exec_req *req,
			  struct sandbox_proc **out);
/* files.c: paths inside a running sandbox's mount namespace (s->lock held;
 * a sleeping sandbox is woken).  Open path for reading (O_RDONLY, O_PATH or
 * O_DIRECTORY) without leaving the sandbox's root. */
int sbx_open_inside(struct hbd *d, struct sbx *s, const char *path, int flags);
/* A file upload (PUT of a file): written to a temporary in the destination's
 * directory and renamed over it when complete (files.c says how).
 * upload: NULL for a whole file in one request, "new" for the first piece
 * of several, or the id the first piece got; commit: this is the last
 * piece; append: an older client's piece, added to the file itself. */
#define SBX_UPLOAD_ID_BYTES 33 /* 32 hex digits */
struct sbx_upload_req {
	const char *path, *upload;
	mode_t mode;
	bool append, commit, abort;
};
struct sbx_upload {
	int dirfd, fd;       /* the destination's directory, the file written */
	const char *path;
	char base[256];      /* the destination's name in dirfd */
	char tmp[64];        /* the temporary's */
	char id[SBX_UPLOAD_ID_BYTES];
	mode_t mode;
	bool temp, created, commit, renamed;
};
/* Open what a piece writes to (u->fd); the body is then written by the
 * caller, and sbx_upload_close ends the request. */
int sbx_upload_open(struct hbd *d, struct sbx *s, const struct sbx_upload_req *req,
		    struct sbx_upload *u);
/* r == 0: the last piece is renamed over the destination (the result is
 * returned), another is listed as pending; r < 0 (the piece failed): the
 * temporary is removed.  Returns r or the commit's error. */
int sbx_upload_close(struct sbx *s, struct sbx_upload *u, int r);
/* abort=1: a pending upload given up by its client, its temporary removed. */
int sbx_upload_abort(struct hbd *d, struct sbx *s, const char *path, const char *id);
/* A sleep: the temporaries of pending uploads go (before the disk is
 * committed), their ids with them. */
void sbx_uploads_drop_locked(struct sbx *s, const char *why);
/* The list alone (a sandbox freed). */
void sbx_uploads_free(struct sbx *s);
/* The tree operations of the files endpoint. */
int sbx_file_stat(struct hbd *d, struct sbx *s, const char *path, json_t **out);
int sbx_dir_list(struct hbd *d, struct sbx *s, const char *path, json_t **out);
int sbx_make_dir(struct hbd *d, struct sbx *s, const char *path, mode_t mode);
int sbx_make_symlink(struct hbd *d, struct sbx *s, const char *path, const void *target,
		     size_t len);

/* Images (lifecycle.c). */
int image_import(struct hbd *d, const char *name, const char *source, json_t **out);
int image_list(struct hbd *d, json_t **out);
int image_remove(struct hbd *d, const char *name);

/* The list (api.c). */
struct sbx *hbd_get(struct hbd *d, const char *name); /* ref'd, or NULL */
void hbd_put(struct hbd *d, struct sbx *s);
/* List s.  new_sandbox: one being created, refused (-EADDRINUSE, nothing
 * listed) when a listed sandbox, asleep or not, publishes a host port it
 * wants; otherwise one the registry had (loaded as it is). */
int hbd_add(struct hbd *d, struct sbx *s, bool new_sandbox);
void hbd_unlist(struct hbd *d, struct sbx *s);
/* How many file downloads of s are streaming, and the path of one in
 * path_out (if any). */
int hbd_transfers_open(struct hbd *d, struct sbx *s, char *path_out, size_t size);
uint32_t hbd_free_id_base(struct hbd *d);
int rm_rf(const char *path);
