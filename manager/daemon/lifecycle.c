/* The lifecycle of one sandbox: create, wake, sleep, commit, fork, remove,
 * recovery after a daemon crash, exec, and the images sandboxes start from.
 *
 * A sandbox's state lives in $HIBERBOX_HOME/sandboxes/NAME/: root/ (the FUSE
 * mount of its latest snapshot while running), upper/ (the mount's writes,
 * dropped after each sleep's commit) and logs/ (output of detached
 * processes).  The FUSE mount is served by its own process (started through
 * the mount helper), so that a daemon crash leaves it, and the writes it
 * holds, alive for the next daemon to commit.
 *
 * Repository names: "image.NAME" tags an image, "sb.NAME" a sandbox's latest
 * snapshot.  The registry records which snapshots each sandbox committed, so
 * that older ones can be removed once nothing uses them and rm frees all. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "fs/fs.h"
#include "manager/daemon/daemon-int.h"
#include "manager/network.h"
#include "manager/sandbox.h"
#include "snapshot/snapshot.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/json-text.h"
#include "util/proc.h"

extern char **environ;

#define MOUNT_HELPER_ERR_MAX 2048
#define SBX_STOP_WAIT_MS 5000
#define HBD_FS_MEMORY_ROOM (256ull << 20) /* fs process: beyond the sandbox's own limit */

int sbx_state_dir(struct hbd *d, const char *name, const char *sub, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/sandboxes/%s%s%s", d->home, name, sub ? "/" : "",
			 sub ? sub : "");
	if (n < 0 || (size_t)n >= size)
		return hb_err(-ENAMETOOLONG, "state path of %s too long", name);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : hb_err_sys(-errno, "stat %s", path);
	if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return hb_err_sys(-errno, "remove %s", path);
	return 0;
}

/* Remove an upper directory whose writes are committed and recorded.  It
 * is renamed aside first: a daemon that dies while it is being removed must
 * not find a part of it to replay and commit (recovery replays an upper
 * only while its meta file is there) over the snapshot that holds it all. */
static void drop_upper(const char *upper)
{
	char gone[4300];

	snprintf(gone, sizeof(gone), "%s.gone", upper);
	rm_rf(gone); /* what an earlier crash left */
	rm_rf(rename(upper, gone) == 0 ? gone : upper);
	hb_err_clear();
}

/* Test knobs (read at start), so a test can kill the daemon at a known
 * point: HIBERBOX_TEST_SLEEP_PAUSE_MS, a sleep waits this long once the
 * sandbox is stopped and its upper dropped, before it records the sandbox
 * as asleep; HIBERBOX_TEST_RM_PAUSE_MS, a removal waits once the sandbox is
 * stopped and its snapshots are gone, before its tag, its directory and
 * its row go; HIBERBOX_TEST_WAKE_PAUSE_MS, a wake waits once its init
 * runs, before it records the sandbox as running; HIBERBOX_TEST_STOP_PAUSE_MS
 * (api.c), a stopping daemon waits once its sandboxes sleep, before its
 * server stops; HIBERBOX_TEST_CREATE_PAUSE_MS, a create waits once it has
 * read its image's tag, before the new sandbox's row;
 * HIBERBOX_TEST_SPAWN_PAUSE_MS, a wake's new init waits, cloned, before
 * the daemon lets it go on (sandbox_spec_set_test_go_delay);
 * HIBERBOX_TEST_UPLOAD_PAUSE_MS (api.c), a file upload waits before it
 * writes (each piece of one in pieces); HIBERBOX_TEST_EXEC_PAUSE_MS, an
 * exec waits once it found its sandbox running, before it joins it.  A line
 * in the log says when a pause begins.  HIBERBOX_TEST_UPLOAD_IDLE_MS (api.c) sets how long an
 * upload in pieces waits for its next piece (files.c; 10 minutes).
 * HIBERBOX_TEST_DETACHED_ADD_FAILS=1 fails every sbx_detached_add, the
 * path of a registry that cannot record the process. */
void hbd_test_pause(const char *what, const char *name, unsigned ms)
{
	if (ms) {
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

		fprintf(stderr, "hiberboxd: test pause: %s %s\n", what, name);
		nanosleep(&ts, NULL);
	}
}

static void tag_of(const char *name, char *out, size_t size)
{
	snprintf(out, size, HBD_TAG_SANDBOX "%s", name);
}

static int now_sec(void)
{
	return (int)time(NULL);
}

/* starttime (field 22) of /proc/PID/stat: tells a pid from its reuse. */
static uint64_t proc_start_time(pid_t pid)
{
	char data[1024];
	const char *p;

	if (proc_stat_fields(pid, data, sizeof(data), &p) < 0)
		return 0;
	/* p is field 3; starttime is field 22 */
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

/* Run the mount helper and return its error line, if any.  disk_bytes: the
 * upper's limit (0: none). */
static int mount_snapshot(struct hbd *d, const char *snap, const char *upper, const char *mnt,
			  uint32_t shift, uint64_t disk_bytes)
{
	const char *argv[32];
	char shift_s[16], disk_s[24], err[MOUNT_HELPER_ERR_MAX];
	int n = 0, p[2], status, r;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	pid_t pid;

	for (const char *const *a = d->helper_argv; *a && n < 20; a++)
		argv[n++] = *a;
	snprintf(shift_s, sizeof(shift_s), "%u", shift);
	argv[n++] = "--repo";
	argv[n++] = d->repo;
	argv[n++] = "--upper";
	argv[n++] = upper;
	argv[n++] = "--uid-shift";
	argv[n++] = shift_s;
	if (disk_bytes) {
		snprintf(disk_s, sizeof(disk_s), "%llu", (unsigned long long)disk_bytes);
		argv[n++] = "--disk-limit";
		argv[n++] = disk_s;
	}
	argv[n++] = snap;
	argv[n++] = mnt;
	argv[n] = NULL;
	if ((r = proc_spawnattr_init(&at)) < 0)
		return r;
	if (pipe2(p, O_CLOEXEC) < 0) {
		posix_spawnattr_destroy(&at);
		return hb_err_sys(-errno, "pipe");
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	r = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(p[1]);
	if (r != 0) {
		close(p[0]);
		return hb_err(-r, "start mount helper %s: %s", argv[0], strerror(r));
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	/* The fs process sends its stderr to a log, so the pipe ends with the helper. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ssize_t len = read(p[0], err, sizeof(err) - 1);
	close(p[0]);
	err[len > 0 ? len : 0] = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char *nl = strchr(err, '\n');
	if (nl)
		*nl = 0;
	return hb_err(-EIO, "mount %s: %s", snap, err[0] ? err : "mount helper failed");
}

/* The pid of the live fs process serving mnt (a real path), or 0. */
static pid_t fs_pid_of(const char *mnt)
{
	struct hbfs_mount_info *m = NULL;
	size_t count = 0;
	pid_t pid = 0;

	if (hbfs_list_mounts(&m, &count) < 0) {
		hb_err_clear();
		return 0;
	}
	for (size_t i = 0; i < count; i++)
		if (strcmp(m[i].mountpoint, mnt) == 0 && m[i].alive)
			pid = m[i].pid;
	free(m);
	return pid;
}

/* Is a live fs process serving mnt? 1 yes, 0 no (stale or none). */
static int mount_alive(const char *mnt)
{
	return fs_pid_of(mnt) > 0;
}

/* The sandbox's cgroup name: stable across daemon restarts (adoption finds
 * it again) and unique among live sandboxes (so is the id range). */
static void cgroup_name_of(struct hbd *d, const struct sbx *s, char *out, size_t size)
{
	/* the home's hash keeps daemons of different homes apart */
	snprintf(out, size, "hbd-%08x-%u-%llu", (unsigned)XXH3_64bits(d->home, strlen(d->home)),
		 s->rec.id_base, (unsigned long long)s->rec.wakes);
}

/* The groups of a process that works for a sandbox from outside it, of
 * kind "hbdfs" (the fs process serving its root) or "hbdnat" (its NAT
 * helper, with a memory limit): one name per sandbox (its id range), the
 * same across wakes.  With id_base 0, the prefix every such name of this
 * home has. */
static void helper_cgroup_name_of(struct hbd *d, const char *kind, uint32_t id_base,
				  char *out, size_t size)
{
	int n = snprintf(out, size, "%s-%08x-", kind, (unsigned)XXH3_64bits(d->home, strlen(d->home)));

	if (id_base && n > 0 && (size_t)n < size)
		snprintf(out + n, size - (size_t)n, "%u", id_base);
}

/* The fs process keeps in its own memory what the sandbox writes into its
 * tree (nodes, names, xattrs of up to 1 MiB each), outside the sandbox's
 * cgroup: a sandbox with a memory limit could make it grow without bound
 * (400 MB for 400 files' xattrs under a 256 MiB limit).  It gets a memory
 * limit of its own: the sandbox's plus room for its fixed needs (chunk
 * cache, the image's tree, I/O buffers).  Should it hit that, the kernel
 * kills it, and the sandbox is settled as for any fs process that died. */
static int confine_fs(struct hbd *d, struct sbx *s, const char *root)
{
	char real[PATH_MAX], name[64];
	struct sandbox_limits lim = { .memory_bytes = s->rec.memory_bytes + HBD_FS_MEMORY_ROOM };
	pid_t pid;

	if (!s->rec.memory_bytes)
		return 0;
	if (!realpath(root, real))
		return hb_err_sys(-errno, "%s", root);
	if ((pid = fs_pid_of(real)) <= 0)
		return hb_err(-ESRCH, "no fs process serves %s", real);
	helper_cgroup_name_of(d, "hbdfs", s->rec.id_base, name, sizeof(name));
	return sandbox_cgroup_confine(name, &lim, pid);
}

/* Remove groups of s's that nothing holds any more; a failure is logged. */
static void remove_groups_of(const struct sbx *s, const char *name)
{
	if (sandbox_remove_cgroups(name) < 0) {
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(-EIO));
		hb_err_clear();
	}
}

/* Once the fs process ended (a sleep, a settle, an rm). */
static void unconfine_fs(struct hbd *d, struct sbx *s)
{
	char name[64];

	helper_cgroup_name_of(d, "hbdfs", s->rec.id_base, name, sizeof(name));
	remove_groups_of(s, name);
}

static int save(struct hbd *d, struct sbx *s)
{
	return registry_update(d->reg, &s->rec);
}

/* What a listing shows of s while a slow step holds its lock: s as now. */
static void show_now(struct hbd *d, struct sbx *s)
{
	json_t *j = sbx_to_json(s), *old;

	pthread_mutex_lock(&d->lock);
	old = s->shown;
	s->shown = j;
	pthread_mutex_unlock(&d->lock);
	json_decref(old);
}

/* A slow step of s begins or ends (s->lock held; they nest): a sleep's
 * commit or a wake's mount may take minutes on a remote repository, and
 * ls, which would wait for every sandbox's lock, must not wait for it. */
void sbx_slow_begin(struct hbd *d, struct sbx *s)
{
	if (s->slow_depth++ == 0)
		show_now(d, s);
}

void sbx_slow_end(struct hbd *d, struct sbx *s)
{
	json_t *old = NULL;

	if (--s->slow_depth > 0)
		return;
	pthread_mutex_lock(&d->lock);
	old = s->shown;
	s->shown = NULL;
	pthread_mutex_unlock(&d->lock);
	json_decref(old);
}

static int open_repo(struct hbd *d, struct repo **out)
{
	return repo_open(d->repo, out);
}

static void sbx_detached_free(struct sbx_detached *x)
{
	if (x->proc)
		sandbox_proc_free(x->proc);
	if (x->pidfd >= 0)
		close(x->pidfd);
	if (x->log_fd >= 0)
		close(x->log_fd);
	free(x);
}

bool sbx_detached_running(const struct sbx_detached *x)
{
	return x->proc || x->pidfd >= 0;
}

/* Every detached record of s goes, from memory and the registry: its
 * processes were just killed with the sandbox. */
static void detached_forget_all(struct hbd *d, struct sbx *s)
{
	sbx_detached_free_all(s);
	if (registry_detached_delete(d->reg, s->rec.name, 0) < 0) {
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(-EIO));
		hb_err_clear();
	}
}

void sbx_detached_free_all(struct sbx *s)
{
	while (s->detached) {
		struct sbx_detached *x = s->detached;
		s->detached = x->next;
		sbx_detached_free(x);
	}
}

/* A detached command writes its log, a host file, itself: without a cap a
 * chatty one fills the disk that also holds the repository.  Past
 * SBX_LOG_MAX_BYTES the oldest output goes and about the newest
 * SBX_LOG_KEEP_BYTES stay (collapsed out of the file where the filesystem
 * can do that, as ext4 and xfs do; else the log starts again with a note).
 * Checked at every idle tick, so a fast writer may overshoot by what it
 * writes in one. */
#define SBX_LOG_MAX_BYTES (64ull << 20)
#define SBX_LOG_KEEP_BYTES (16ull << 20)

static void trim_log(int fd)
{
	static const char note[] = "[hiberbox: this log passed 64 MiB; older output was dropped]\n";
	struct stat st;
	uint64_t cut, block;

	if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size <= SBX_LOG_MAX_BYTES)
		return;
	block = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 4096;
	cut = ((uint64_t)st.st_size - SBX_LOG_KEEP_BYTES) / block * block;
	if (fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, (off_t)cut) == 0)
		return;
	/* the descriptor is O_APPEND: the note lands at the new end (losing
	 * it, if that write fails, loses nothing else) */
	if (ftruncate(fd, 0) == 0)
		(void)!write(fd, note, sizeof(note) - 1);
}

/* Whether anything but the daemon still has the log open: a background
 * child of a detached command that outlived it writes there through the
 * command's descriptor.  The daemon holds an open of its own (see
 * sbx_detached_add), and a write lease is granted only to a file's sole
 * opener.  A filesystem without leases counts as nobody (the log is then
 * let go when its command ends, as before). */
static bool log_still_written(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return false;
	}
	return errno == EAGAIN || errno == EBUSY;
}

int sbx_detached_add(struct hbd *d, struct sbx *s, struct sandbox_proc *proc, int log_fd,
		     const char *log, uint64_t deadline_ns)
{
	struct sbx_detached *x = calloc(1, sizeof(*x));
	struct sbx_detached_row row = { .deadline_ns = deadline_ns };
	char self[64];
	int r;

	if (d->test_detached_add_fails) {
		free(x);
		return hb_err(-EIO, "recording the detached process: test failure");
	}
	if (!x)
		return hb_err(-ENOMEM, "out of memory");
	x->pidfd = -1;
	/* A new open of the log, not a copy of the command's descriptor: only
	 * then can log_still_written tell the two apart. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", log_fd);
	x->log_fd = open(self, O_RDWR | O_APPEND | O_CLOEXEC);
	if (x->log_fd < 0) {
		int r = hb_err_sys(-errno, "reopening the log");
		free(x);
		return r;
	}
	x->pid = sandbox_proc_pid(proc);
	x->deadline_ns = deadline_ns;
	row.pid = x->pid;
	row.start = proc_start_time(x->pid);
	snprintf(row.log, sizeof(row.log), "%s", log);
	if ((r = registry_detached_add(d->reg, s->rec.name, &row)) < 0) {
		sbx_detached_free(x);
		return r;
	}
	x->proc = proc;
	x->next = s->detached;
	s->detached = x;
	return 0;
}

/* A detached command of the previous daemon's, in a sandbox re-adopted
 * with its processes: watched through a pidfd (it is no child of ours),
 * killed at its deadline, its log capped again.  One that ended meanwhile
 * is kept while something else still writes its log, as sbx_reap_locked
 * keeps an ended one. */
static int readopt_detached(const struct sbx_detached_row *row, void *arg)
{
	void **a = arg;
	struct hbd *d = a[0];
	struct sbx *s = a[1];
	struct sbx_detached *x = calloc(1, sizeof(*x));
	pid_t pid = (pid_t)row->pid;

	if (!x)
		return hb_err(-ENOMEM, "out of memory");
	x->pid = pid;
	x->deadline_ns = row->deadline_ns;
	x->pidfd = -1;
	/* the start time, checked again once the pidfd is open, tells the
	 * command from a later process that got its pid */
	if (row->start && proc_start_time(pid) == row->start) {
		x->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (x->pidfd >= 0 && proc_start_time(pid) != row->start) {
			close(x->pidfd);
			x->pidfd = -1;
		}
	}
	x->log_fd = open(row->log, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (x->pidfd < 0 && x->log_fd < 0) {
		free(x);
		return registry_detached_delete(d->reg, s->rec.name, row->pid);
	}
	fprintf(stderr, "hiberboxd: %s: detached pid %d re-adopted (%s)\n", s->rec.name, (int)pid,
		x->pidfd >= 0 ? "running" : "ended, its log still open");
	x->next = s->detached;
	s->detached = x;
	return 0;
}

/* Take root out of the host's tree, never lazily: a mount something on the
 * host still uses stays, and the error says so.  *fs_pid: its fs process,
 * to wait for (0: nothing left to wait for).  A running sandbox keeps its
 * own copy of the mount in its namespace, so that process ends only once
 * the sandbox's processes are gone too. */
static int detach_root(const char *root, pid_t *fs_pid)
{
	char real[PATH_MAX];
	pid_t pid = 0;
	int r;

	*fs_pid = 0;
	if (!realpath(root, real) || (pid = fs_pid_of(real)) <= 0)
		return hbfs_umount(root);
	/* Not hbfs_umount, which waits for the fs process to end: here it
	 * may not end before the sandbox's processes do.  A file just closed
	 * can hold the mount for a moment, hence the retries. */
	for (int i = 0; (r = umount2(real, 0) < 0 ? -errno : 0) == -EBUSY && i < 100; i++)
		usleep(10000);
	if (r == -EBUSY)
		return hb_err(r, "unmounting %s: in use on the host", real);
	if (r < 0)
		return hbfs_umount(root);
	*fs_pid = pid;
	return 0;
}

/* Wait for the fs process of root, detached by detach_root, to end.  The
 * daemon is a child subreaper, so the fs processes it started are its
 * children and are reaped here at once (hbfs_umount alone would poll until
 * whoever reaps orphans gets to it). */
static int wait_fs_end(const char *root, pid_t pid)
{
	for (int i = 0; pid > 0 && i < 4000; i++) { /* 20 s */
		struct timespec ts = { 0, 5000000L };
		pid_t w = waitpid(pid, NULL, WNOHANG);
		if (w == pid || (w < 0 && errno == ECHILD && kill(pid, 0) < 0 && errno == ESRCH))
			return 0;
		nanosleep(&ts, NULL);
	}
	return pid > 0 ? hb_err(-ETIMEDOUT, "the fs process of %s did not end", root) : 0;
}

/* Unmount root and wait for its fs process to end. */
static int unmount_root(const char *root)
{
	pid_t pid;
	int r = detach_root(root, &pid);

	return r < 0 ? r : wait_fs_end(root, pid);
}

/* Detach the mount of a dead fs process (the kernel answers ENOTCONN;
 * hbfs_mount_dead asks statfs, not stat, which the kernel may answer from
 * cached attributes long after the process is gone).
 * Not hbfs_umount: it waits for the dead process to be reaped, which is
 * init's business once its parent daemon died. */
static void detach_stale(const char *root)
{
	if (hbfs_mount_dead(root))
		umount2(root, MNT_DETACH);
}

/* Kill every process of the sandbox, bounded in time: an init whose pid
 * namespace still holds zombies that nobody reaps (children of a crashed
 * daemon, orphaned to a host init that does not reap) never ends; its handle
 * is then released, its cgroups left, rather than the daemon hanging. */
static void stop_sandbox(struct sbx *s, const char *why)
{
	if (!s->sb)
		return;
	/* reason first: a stream that sees the new count reads this one */
	atomic_store(&s->stop_reason, why);
	atomic_fetch_add(&s->stops, 1);
	sandbox_kill(s->sb, SIGKILL); /* pending while frozen, fatal at thaw */
	sandbox_thaw(s->sb);
	/* Detached commands are the daemon's children: until it reaps them the
	 * init of their pid namespace cannot finish its exit. */
	sbx_detached_free_all(s);
	hb_err_clear();
	if (sandbox_wait(s->sb, SBX_STOP_WAIT_MS, NULL) == -ETIMEDOUT) {
		fprintf(stderr, "hiberboxd: %s: init %d did not end within %d ms; left behind\n",
			s->rec.name, (int)sandbox_pid(s->sb), SBX_STOP_WAIT_MS);
		sandbox_release(s->sb);
	} else {
		sandbox_free(s->sb);
	}
	/* its network namespace is gone or going: the NAT helper relays for
	 * nobody now (it would stay, as slirp4netns does not notice) */
	nat_helper_stop(s->nat);
	s->nat = NULL;
	hb_err_clear();
	s->sb = NULL;
}

/* Kill every process, then release the mount.  No commit. */
static void stop_all(struct hbd *d, struct sbx *s, const char *root, const char *why)
{
	stop_sandbox(s, why);
	detached_forget_all(d, s);
	if (s->rec.lower[0] && unmount_root(root) < 0) {
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(-EIO));
		hb_err_clear();
	}
}

static int nat_check_locked(struct hbd *d, struct sbx *s);

int sbx_check_init_locked(struct hbd *d, struct sbx *s)
{
	struct sandbox_exit ex;
	int r;

	if (!s->sb) {
		hb_err_clear(); /* as before nat_check_locked: callers go on from a clean slate */
		return 0;
	}
	if (sandbox_wait(s->sb, 0, &ex) != 0) {
		hb_err_clear();
		return nat_check_locked(d, s);
	}
	/* Its init ended (killed from outside, or OOM): keep the disk, and
	 * let the next use start it again. */
	fprintf(stderr, "hiberboxd: %s: init ended (code %d, signal %d): sleeping\n",
		s->rec.name, ex.code, ex.signal);
	r = sbx_sleep_locked(d, s, "init", NULL, NULL);
	if (r < 0)
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(r));
	return r;
}

/* A dead fs process under a running sandbox (below, beside recovery). */
static bool fs_died(struct hbd *d, struct sbx *s);
static int fs_died_settle_locked(struct hbd *d, struct sbx *s);
static int settle_locked(struct hbd *d, struct sbx *s, bool alive);

/* Whether s's processes are gone and its upper holds writes that can be
 * replayed over lower (lower named, upper/meta there).  In a sleeping
 * sandbox that is an upper a settle could not commit (the repository
 * unwritable or unreachable) and kept: no snapshot holds its writes yet. */
static bool upper_replayable(struct hbd *d, const struct sbx *s)
{
	char meta[4300];

	if (s->sb || !s->rec.lower[0] ||
	    sbx_state_dir(d, s->rec.name, "upper", meta, sizeof(meta) - 5) < 0)
		return false;
	strcat(meta, "/meta");
	return access(meta, F_OK) == 0;
}

/* A kept upper, committed now (a sleep or a fork needs its writes in a
 * snapshot); when that fails again it stays kept and the error is returned. */
static int settle_kept_locked(struct hbd *d, struct sbx *s)
{
	return upper_replayable(d, s) ? settle_locked(d, s, false) : 0;
}

/* Network nat: the sandbox's /etc/resolv.conf names the NAT's DNS
 * forwarder.  A file of the daemon's in the sandbox's state directory,
 * bound read-only over the image's own (which stays as it was, for the
 * other modes). */
static int nat_resolv_conf(struct hbd *d, struct sbx *s, struct sandbox_spec *spec)
{
	char path[4200], root[4200], inside[PATH_MAX];
	int r;

	if (s->rec.network != SANDBOX_NET_NAT)
		return 0;
	if ((r = sbx_state_dir(d, s->rec.name, "resolv.conf", path, sizeof(path))) < 0 ||
	    (r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0 ||
	    (r = nat_resolv_conf_target(root, inside, sizeof(inside))) < 0)
		return r;
	if ((r = write_file_atomic(AT_FDCWD, path, NAT_RESOLV_CONF, strlen(NAT_RESOLV_CONF),
				   WRITE_NO_SYNC)) < 0)
		return hb_err_ctx(r, "write %s", path);
	if (chmod(path, 0644) < 0)
		return hb_err_sys(-errno, "chmod %s", path);
	return sandbox_spec_add_ro_bind(spec, path, inside);
}

/* Network nat: the helper for s's new init, up before the sandbox counts
 * as running, so that its first command has the network.  Its memory is
 * what the sandbox makes it hold (a buffer per connection), so with a
 * memory limit it gets one too: the sandbox's own, at least
 * HBD_NAT_MEMORY_MIN (its baseline is a few MiB).  One group name per
 * sandbox, as for its fs process. */
#define HBD_NAT_MEMORY_MIN (64ull << 20)
#define HBD_NAT_PIDS 32

static int nat_start(struct hbd *d, struct sbx *s)
{
	struct sandbox_limits lim = {
		.memory_bytes = s->rec.memory_bytes > HBD_NAT_MEMORY_MIN ? s->rec.memory_bytes
									  : HBD_NAT_MEMORY_MIN,
		.pids = HBD_NAT_PIDS,
	};
	char name[64], api_dir[4200], log[4200];
	struct nat_helper_config cfg = {
		.lim = &lim,
		.ports = s->rec.publish,
		.port_count = s->rec.publish_count,
		.log_path = log,
	};
	int r;

	if (s->rec.network != SANDBOX_NET_NAT)
		return 0;
	/* what it says (a line at every start) is the sandbox's, not the
	 * daemon's log */
	if ((r = sbx_state_dir(d, s->rec.name, NAT_HELPER_PACKAGE ".log", log, sizeof(log))) < 0)
		return r;
	helper_cgroup_name_of(d, "hbdnat", s->rec.id_base, name, sizeof(name));
	if (s->rec.memory_bytes)
		cfg.cgroup_name = name;
	/* the helper's API socket publishes ports on the host: root's alone
	 * (the state directory lets the sandbox's group through) */
	if (s->rec.publish_count) {
		if ((r = sbx_state_dir(d, s->rec.name, "nat", api_dir, sizeof(api_dir))) < 0)
			return r;
		if (mkdir(api_dir, 0700) < 0 && errno != EEXIST)
			return hb_err_sys(-errno, "mkdir %s", api_dir);
		if (chown(api_dir, 0, 0) < 0 || chmod(api_dir, 0700) < 0)
			return hb_err_sys(-errno, "securing %s", api_dir);
		cfg.api_dir = api_dir;
	}
	return nat_helper_start(sandbox_pid(s->sb), &cfg, &s->nat);
}

/* Network nat: a helper that ended under a running sandbox (killed, out of
 * memory in its groups) left it without network and nobody would notice
 * until its next sleep; a new one takes its place (its tap device went
 * with the old one), or, when that fails, the sandbox sleeps as when a
 * re-adopted one's fails. */
static int nat_check_locked(struct hbd *d, struct sbx *s)
{
	int status = 0, r;

	if (!s->nat || !nat_helper_ended(s->nat, &status))
		return 0;
	fprintf(stderr, "hiberboxd: %s: " NAT_HELPER_PACKAGE " %d ended (code %d, signal %d): "
		"starting a new one\n", s->rec.name, (int)nat_helper_pid(s->nat),
		WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	nat_helper_stop(s->nat);
	s->nat = NULL;
	if ((r = nat_start(d, s)) == 0)
		return 0;
	fprintf(stderr, "hiberboxd: %s: network nat: %s: sleeping\n", s->rec.name, hb_errmsg(r));
	hb_err_clear();
	r = sbx_sleep_locked(d, s, "network", NULL, NULL);
	if (r < 0)
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(r));
	return r;
}

static int wake_locked(struct hbd *d, struct sbx *s, uint64_t *ms)
{
	char root[4200], upper[4200], host[65], snap[sizeof(s->rec.lower)];
	struct sandbox_spec *spec = NULL;
	uint64_t t0 = now_ns();
	bool kept;
	int r;

	if (ms)
		*ms = 0;
	if (s->removed)
		return hb_err(-ENOENT, "sandbox %s was removed", s->rec.name);
	/* The shutdown puts every sandbox to sleep once (under its lock, after
	 * stopping is set): one woken after that would be left running, its
	 * mount and fs process alive, when the daemon exits. */
	if (d->stopping && !s->sb)
		return hb_err(-ESHUTDOWN, "hiberboxd is stopping: %s stays asleep", s->rec.name);
	if ((r = sbx_check_init_locked(d, s)) < 0)
		return r;
	/* a commit that fails here keeps the upper, which is mounted below */
	if (fs_died(d, s) && fs_died_settle_locked(d, s) < 0)
		hb_err_clear();
	if (s->sb)
		return 0;
	/* only now: the checks above may have just committed a newer one; an
	 * upper no commit could take is mounted again over its own lower, its
	 * writes live as before (the next sleep commits them) */
	kept = upper_replayable(d, s);
	/* a copy: lower is set to it below */
	snprintf(snap, sizeof(snap), "%s",
		 kept ? s->rec.lower : s->rec.latest[0] ? s->rec.latest : s->rec.base);
	if ((r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0 ||
	    (r = sbx_state_dir(d, s->rec.name, "upper", upper, sizeof(upper))) < 0)
		return r;
	if ((r = mkdir_p(AT_FDCWD, root, 0755)) < 0)
		return hb_err_sys(r, "mkdir %s", root);
	if ((r = sbx_close_dir(d, s)) < 0)
		return r;
	/* A mount left behind (the previous daemon died during a sleep) goes. */
	if (mount_alive(root))
		unmount_root(root);
	else
		detach_stale(root);
	hb_err_clear();
	if (!kept && (r = rm_rf(upper)) < 0)
		return r;
	if (!kept && mkdir(upper, 0700) < 0)
		return hb_err_sys(-errno, "mkdir %s", upper);
	if ((r = mount_snapshot(d, snap, upper, root, s->rec.id_base, s->rec.disk_bytes)) < 0)
		return hb_err_ctx(r, "wake %s", s->rec.name);
	if ((r = confine_fs(d, s, root)) < 0) {
		hbfs_umount(root);
		if (!kept)
			rm_rf(upper);
		return hb_err_ctx(r, "wake %s", s->rec.name);
	}

	struct sandbox_limits lim = {
		.memory_bytes = s->rec.memory_bytes,
		.pids = s->rec.pids,
		.cpu_millis = s->rec.cpu_millis,
	};
	char cgname[64];
	s->rec.wakes++;
	cgroup_name_of(d, s, cgname, sizeof(cgname));
	/* The new cgroup name is recorded before the init that it will hold
	 * starts: a daemon that dies before the sandbox is recorded running
	 * leaves that init behind, and the next one finds it by this name
	 * (sbx_recover_sleeping). */
	if ((r = save(d, s)) < 0) {
		hbfs_umount(root);
		if (!kept)
			rm_rf(upper);
		return hb_err_ctx(r, "wake %s", s->rec.name);
	}
	snprintf(host, sizeof(host), "%s", s->rec.name);
	for (char *c = host; *c; c++)
		if (*c == '_' || *c == '.')
			*c = '-';
	if (d->test_spawn_pause_ms) /* the pause itself is sandbox_spawn's */
		fprintf(stderr, "hiberboxd: test pause: spawn %s\n", s->rec.name);
	if ((r = sandbox_spec_new(&spec, root)) < 0 ||
	    (r = sandbox_spec_set_init_only(spec, 1)) < 0 ||
	    (r = sandbox_spec_set_id_map(spec, s->rec.id_base, SBX_ID_RANGE)) < 0 ||
	    (r = sandbox_spec_set_network(spec, s->rec.network)) < 0 ||
	    (r = nat_resolv_conf(d, s, spec)) < 0 ||
	    (r = sandbox_spec_set_limits(spec, &lim)) < 0 ||
	    (r = sandbox_spec_set_hostname(spec, host)) < 0 ||
	    (r = sandbox_spec_set_name(spec, cgname)) < 0 ||
	    (r = sandbox_spec_set_test_go_delay(spec, d->test_spawn_pause_ms)) < 0 ||
	    (r = sandbox_spawn(spec, &s->sb)) < 0 || (r = nat_start(d, s)) < 0) {
		if (s->sb) { /* its network did not come up */
			sandbox_free(s->sb);
			s->sb = NULL;
		}
		sandbox_spec_free(spec);
		hbfs_umount(root);
		if (!kept)
			rm_rf(upper);
		return hb_err_ctx(r, "wake %s", s->rec.name);
	}
	sandbox_spec_free(spec);
	hbd_test_pause("wake", s->rec.name, d->test_wake_pause_ms);
	s->rec.state = SBX_RUNNING;
	snprintf(s->rec.lower, sizeof(s->rec.lower), "%s", snap);
	s->rec.init_pid = sandbox_pid(s->sb);
	s->rec.init_start = proc_start_time(sandbox_pid(s->sb));
	s->rec.woken_at = now_sec();
	s->rec.last_wake_ms = (now_ns() - t0) / 1000000;
	s->last_activity_ns = now_ns();
	if (ms)
		*ms = s->rec.last_wake_ms;
	return save(d, s);
}

int sbx_wake_locked(struct hbd *d, struct sbx *s, uint64_t *ms)
{
	int r;

	sbx_slow_begin(d, s);
	r = wake_locked(d, s, ms);
	sbx_slow_end(d, s);
	return r;
}

/* Remove snapshots owned by s that nothing uses any more. */
static int prune_one(const char *id, void *arg)
{
	void **a = arg;
	struct hbd *d = a[0];
	struct sbx *s = a[1];
	struct repo *repo = a[2];
	char user[SBX_NAME_MAX + 1];
	struct oid oid;
	int r;

	if (strcmp(id, s->rec.latest) == 0 || strcmp(id, s->rec.lower) == 0 ||
	    strcmp(id, s->rec.base) == 0)
		return 0;
	r = registry_snapshot_user(d->reg, id, s->rec.name, user, sizeof(user));
	if (r < 0)
		return r;
	if (r > 0) {
		if (s->removed) /* the user inherits it, to free it later */
			return registry_snapshot_set_owner(d->reg, id, user);
		return 0;
	}
	if (oid_parse(id, &oid) == 0) {
		struct repo_pin_holder h;

		/* Mounted (by hand, to look inside), or unknown: kept until a
		 * later prune. */
		r = repo_pin_find(repo, &oid, &h);
		hb_err_clear();
		if (r != 0)
			return 0;
		r = repo_snapshot_remove(repo, &oid);
		if (r < 0 && r != -ENOENT) {
			fprintf(stderr, "hiberboxd: remove snapshot %s: %s\n", id, hb_errmsg(r));
			hb_err_clear();
			return 0;
		}
	}
	return registry_snapshot_delete(d->reg, id);
}

static int prune(struct hbd *d, struct sbx *s)
{
	struct repo *repo;
	int r = open_repo(d, &repo);

	if (r < 0)
		return r;
	void *a[3] = { d, s, repo };
	r = registry_snapshots_of(d->reg, s->rec.name, prune_one, a);
	repo_close(repo);
	return r;
}

static int record_commit(struct hbd *d, struct sbx *s, const struct oid *id)
{
	char hex[OID_HEX_BYTES];

	oid_format(id, hex);
	snprintf(s->rec.latest, sizeof(s->rec.latest), "%s", hex);
	return registry_snapshot_add(d->reg, hex, s->rec.name);
}

static int commit_locked(struct hbd *d, struct sbx *s)
{
	char root[4200], tag[128];
	struct oid id;
	int r, frozen;

	if (fs_died(d, s)) /* commits what it can and sleeps: latest is then current */
		return fs_died_settle_locked(d, s);
	if (!s->sb)
		return settle_kept_locked(d, s);
	if ((r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0)
		return r;
	tag_of(s->rec.name, tag, sizeof(tag));
	frozen = sandbox_freeze(s->sb) == 0;
	hb_err_clear();
	r = hbfs_commit(root, tag, &id);
	if (frozen)
		sandbox_thaw(s->sb);
	if (r < 0)
		return hb_err_ctx(r, "commit %s", s->rec.name);
	if ((r = record_commit(d, s, &id)) < 0)
		return r;
	return save(d, s);
}

int sbx_commit_locked(struct hbd *d, struct sbx *s)
{
	int r;

	sbx_slow_begin(d, s);
	r = commit_locked(d, s);
	sbx_slow_end(d, s);
	return r;
}

static int sleep_locked(struct hbd *d, struct sbx *s, const char *why, uint64_t *ms,
			char *snap_out)
{
	char root[4200], upper[4200], tag[128], busy[256];
	uint64_t t0 = now_ns();
	struct oid id;
	pid_t fs_pid;
	int r, n, frozen;

	if (ms)
		*ms = 0;
	/* (a sleep that waited for the lock while an rm held it) */
	if (s->removed)
		return hb_err(-ENOENT, "sandbox %s was removed", s->rec.name);
	if (fs_died(d, s) && (r = fs_died_settle_locked(d, s)) < 0)
		return r;
	if (!s->sb && (r = settle_kept_locked(d, s)) < 0)
		return hb_err_ctx(r, "sleep %s", s->rec.name);
	if (!s->sb) {
		if (snap_out)
			snprintf(snap_out, OID_HEX_BYTES, "%s",
				 s->rec.latest[0] ? s->rec.latest : s->rec.base);
		return 0;
	}
	/* A download reads the root after the sandbox's lock is let go; the
	 * mount cannot go under it (nor lazily: the download would end short).
	 * None starts while the lock is held. */
	if ((n = hbd_transfers_open(d, s, busy, sizeof(busy))) > 0)
		return hb_err(-EBUSY, "sleep %s: a file download from it is in progress (%s%s); "
			      "it keeps running: sleep it once the download ends",
			      s->rec.name, busy, n > 1 ? " and others" : "");
	if ((r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0 ||
	    (r = sbx_state_dir(d, s->rec.name, "upper", upper, sizeof(upper))) < 0)
		return r;
	tag_of(s->rec.name, tag, sizeof(tag));
	/* an upload cut off between pieces is not part of the disk kept */
	sbx_uploads_drop_locked(s, "the sandbox sleeps");
	/* Frozen, nothing writes while the snapshot is taken. */
	frozen = sandbox_freeze(s->sb) == 0;
	hb_err_clear();
	r = hbfs_commit(root, tag, &id);
	/* Recorded before anything of the running sandbox goes: a daemon that
	 * dies from here on finds the disk in latest (its recovery can commit
	 * again only while the mount or the whole upper is there). */
	if (r < 0 || (r = record_commit(d, s, &id)) < 0 || (r = save(d, s)) < 0) {
		if (frozen)
			sandbox_thaw(s->sb);
		return hb_err_ctx(r, "sleep %s", s->rec.name);
	}
	/* The root leaves the host's tree before anything stops: should
	 * something on the host still hold it, the sleep fails with the
	 * sandbox running on as before (its disk just committed), rather than
	 * a sleep reported done with the mount and its fs process left up. */
	if ((r = detach_root(root, &fs_pid)) < 0) {
		if (frozen)
			sandbox_thaw(s->sb);
		return hb_err_ctx(r, "sleep %s: it keeps running", s->rec.name);
	}
	stop_sandbox(s, why);
	detached_forget_all(d, s);
	if (wait_fs_end(root, fs_pid) < 0) {
		fprintf(stderr, "hiberboxd: %s: %s\n", s->rec.name, hb_errmsg(-EIO));
		hb_err_clear();
	} else {
		unconfine_fs(d, s);
	}
	drop_upper(upper);
	hbd_test_pause("sleep", s->rec.name, d->test_sleep_pause_ms);
	if (snap_out)
		oid_format(&id, snap_out);
	s->rec.state = SBX_SLEEPING;
	s->rec.lower[0] = 0;
	s->rec.init_pid = 0;
	s->rec.init_start = 0;
	s->rec.slept_at = now_sec();
	s->rec.last_sleep_ms = (now_ns() - t0) / 1000000;
	if (ms)
		*ms = s->rec.last_sleep_ms;
	if ((r = save(d, s)) < 0)
		return r;
	if (prune(d, s) < 0) { /* storage only: the sleep itself succeeded */
		fprintf(stderr, "hiberboxd: prune %s: %s\n", s->rec.name, hb_errmsg(-EIO));
		hb_err_clear();
	}
	return 0;
}

int sbx_sleep_locked(struct hbd *d, struct sbx *s, const char *why, uint64_t *ms,
		     char *snap_out)
{
	int r;

	sbx_slow_begin(d, s);
	r = sleep_locked(d, s, why, ms, snap_out);
	sbx_slow_end(d, s);
	return r;
}

/* Room a sandbox needs beyond its image's files to start and run at all
 * (its first directories, its journal's first records). */
#define DISK_START_ROOM (1u << 20)

/* Whether an image's files leave room under disk_bytes.  The limit counts
 * the whole tree (fs/quota.c): an image that fills it could be created but
 * never started (its init's first mkdir failing with ENOSPC). */
static int image_fits(struct repo *repo, const struct oid *id, const char *image,
		      uint64_t disk_bytes)
{
	struct manifest *m;
	uint64_t files;
	int r = repo_load_manifest(repo, id, &m);

	if (r < 0)
		return r;
	files = manifest_file_bytes(m, HBFS_LIMIT_BLOCK_BYTES);
	manifest_free(m);
	if (files + DISK_START_ROOM <= disk_bytes)
		return 0;
	return hb_err(-EINVAL, "image '%s' holds %.1f MiB of files: a disk limit of %.1f MiB "
		      "leaves no room to run it (give at least %.1f MiB)", image,
		      files / 1048576.0, disk_bytes / 1048576.0,
		      (files + DISK_START_ROOM) / 1048576.0);
}

/* The snapshot image names, as hex; with disk_bytes (0: no limit), checked
 * to fit. */
static int resolve_image(struct hbd *d, const char *image, uint64_t disk_bytes, char *hex)
{
	struct repo *repo;
	char tag[200];
	struct oid id;
	int r = open_repo(d, &repo);

	if (r < 0)
		return r;
	snprintf(tag, sizeof(tag), HBD_TAG_IMAGE "%s", image);
	r = repo_tag_valid(tag) == 0 ? repo_tag_get(repo, tag, &id) : -ENOENT;
	if (r < 0) {
		hb_err_clear();
		r = repo_resolve(repo, image, &id);
		if (r == -ENOENT)
			r = hb_err(-ENOENT, "no image '%s' (see 'hiberbox image ls')", image);
	}
	if (r == 0 && disk_bytes)
		r = image_fits(repo, &id, image, disk_bytes);
	repo_close(repo);
	if (r == 0)
		oid_format(&id, hex);
	return r;
}

static struct sbx *sbx_new(const struct sbx_record *rec)
{
	struct sbx *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (sbx_record_copy(&s->rec, rec) < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->refs = 2; /* the list's and the caller's */
	s->last_activity_ns = now_ns();
	return s;
}

/* A sandbox's state directory (its root mount, upper, logs) is for root
 * and the sandbox's own ids: root-owned, group the sandbox's root gid,
 * mode 0710, so its processes can reach the root below it and no other
 * host user can (the mount is allow_other: permissions inside are the
 * sandbox's, and its world-readable files would be anyone's).  Also
 * applied at wake, to directories made by older versions. */
int sbx_close_dir(struct hbd *d, struct sbx *s)
{
	char dir[4200];
	int r;

	if ((r = sbx_state_dir(d, s->rec.name, NULL, dir, sizeof(dir))) < 0)
		return r;
	if (chown(dir, 0, (gid_t)s->rec.id_base) < 0 || chmod(dir, 0710) < 0) {
		/* the first thing a daemon started by another user cannot do
		 * (it listens and keeps a registry as any user can) */
		if (errno == EPERM && geteuid() != 0)
			return hb_err(-EPERM, "securing %s: %s (hiberboxd runs as uid %u: sandboxes "
				      "need it to run as root)", dir, strerror(EPERM),
				      (unsigned)geteuid());
		return hb_err_sys(-errno, "securing %s", dir);
	}
	return 0;
}

/* List and register a new sandbox (rec.id_base 0: a free range is taken). */
static int add_new(struct hbd *d, const struct sbx_record *rec, struct sbx **out)
{
	struct sbx *s;
	char dir[4200];
	int r;

	if ((r = sbx_name_valid(rec->name)) < 0)
		return r;
	if (!(s = sbx_new(rec)))
		return hb_err(-ENOMEM, "out of memory");
	s->rec.created = now_sec();
	if ((r = hbd_add(d, s, true)) < 0) { /* sets id_base */
		sbx_record_clear(&s->rec);
		free(s);
		return r;
	}
	if ((r = registry_insert(d->reg, &s->rec)) < 0) {
		hbd_unlist(d, s);
		hbd_put(d, s);
		return r;
	}
	/* each step's own message: "mkdir DIR" over all of them hid why
	 * (a daemon not run as root failed in sbx_close_dir's chown) */
	r = sbx_state_dir(d, rec->name, NULL, dir, sizeof(dir));
	if (r == 0 && (r = mkdir_p(AT_FDCWD, dir, 0700)) < 0)
		hb_err_sys(r, "mkdir %s", dir);
	if (r == 0)
		r = sbx_close_dir(d, s);
	if (r == 0)
		r = sbx_state_dir(d, rec->name, "logs", dir, sizeof(dir));
	if (r == 0 && (r = mkdir_p(AT_FDCWD, dir, 0700)) < 0)
		hb_err_sys(r, "mkdir %s", dir);
	if (r < 0) {
		char msg[512];

		hb_err_save(msg, sizeof(msg));
		/* what this call made, if it is still empty (rmdir keeps anything
		 * else): a refused create leaves nothing behind */
		if (sbx_state_dir(d, rec->name, "logs", dir, sizeof(dir)) == 0)
			rmdir(dir);
		if (sbx_state_dir(d, rec->name, NULL, dir, sizeof(dir)) == 0)
			rmdir(dir);
		registry_delete(d->reg, rec->name);
		hbd_unlist(d, s);
		hbd_put(d, s);
		return hb_err(r, "%s", msg);
	}
	*out = s;
	return 0;
}

int sbx_create(struct hbd *d, const struct sbx_record *req, bool start, struct sbx **out)
{
	struct sbx_record rec;
	struct sbx *s;
	int r;

	if ((r = sbx_name_valid(req->name)) < 0)
		return r;
	if ((s = hbd_get(d, req->name))) {
		hbd_put(d, s);
		return hb_err(-EEXIST, "a sandbox named '%s' exists already", req->name);
	}
	if (req->publish_count && req->network != SANDBOX_NET_NAT)
		return hb_err(-EINVAL, "publish needs network nat (the host reaches the sandbox's "
			      "ports through its slirp4netns)");
	if (req->network == SANDBOX_NET_NAT && (r = nat_helper_check()) < 0)
		return r;
	if ((r = sbx_record_copy(&rec, req)) < 0)
		return r;
	pthread_mutex_lock(&d->images_lock);
	if ((r = resolve_image(d, req->image, req->disk_bytes, rec.base)) == 0) {
		hbd_test_pause("create", req->name, d->test_create_pause_ms);
		rec.latest[0] = rec.lower[0] = 0;
		rec.state = SBX_SLEEPING;
		rec.id_base = 0;
		r = add_new(d, &rec, &s);
	}
	pthread_mutex_unlock(&d->images_lock);
	if (r < 0)
		goto out;
	if (start) {
		pthread_mutex_lock(&s->lock);
		r = sbx_wake_locked(d, s, NULL);
		pthread_mutex_unlock(&s->lock);
		if (r < 0) {
			char msg[512];
			hb_err_save(msg, sizeof(msg));
			sbx_remove(d, s);
			hbd_put(d, s);
			r = hb_err(r, "%s", msg);
			goto out;
		}
	}
	*out = s;
out:
	sbx_record_clear(&rec);
	return r;
}

int sbx_fork(struct hbd *d, struct sbx *parent, const char *newname, struct sbx **out)
{
	struct sbx_record rec;
	struct sbx *s;
	int r;

	if ((r = sbx_name_valid(newname)) < 0)
		return r;
	if ((s = hbd_get(d, newname))) {
		hbd_put(d, s);
		return hb_err(-EEXIST, "a sandbox named '%s' exists already", newname);
	}
	pthread_mutex_lock(&parent->lock);
	if (parent->removed) {
		pthread_mutex_unlock(&parent->lock);
		return hb_err(-ENOENT, "sandbox %s was removed", parent->rec.name);
	}
	if ((r = sbx_commit_locked(d, parent)) < 0 ||
	    (r = sbx_record_copy(&rec, &parent->rec)) < 0) {
		pthread_mutex_unlock(&parent->lock);
		return r;
	}
	/* Inserted under the parent's lock: its pruning sees the new user. */
	snprintf(rec.name, sizeof(rec.name), "%s", newname);
	if (rec.latest[0])
		memcpy(rec.base, rec.latest, sizeof(rec.base));
	memcpy(rec.latest, rec.base, sizeof(rec.latest));
	rec.lower[0] = 0;
	rec.state = SBX_SLEEPING;
	rec.id_base = 0;
	rec.init_pid = 0;
	rec.init_start = 0;
	rec.slept_at = rec.woken_at = 0;
	rec.last_sleep_ms = rec.last_wake_ms = 0;
	/* the parent's host ports are the parent's: the fork's would collide
	 * with them (nat stays, the sandbox's own ports are reached as before) */
	rec.publish_count = 0;
	r = add_new(d, &rec, &s);
	pthread_mutex_unlock(&parent->lock);
	sbx_record_clear(&rec);
	if (r == 0)
		*out = s;
	return r;
}

int sbx_remove(struct hbd *d, struct sbx *s)
{
	char root[4200], dir[4200], tag[128], name[64];
	struct repo *repo;
	struct stat st;
	int r;

	pthread_mutex_lock(&s->lock);
	if (s->removed && !s->rec.removing) {
		pthread_mutex_unlock(&s->lock);
		return hb_err(-ENOENT, "sandbox %s was removed", s->rec.name);
	}
	sbx_slow_begin(d, s);
	if ((r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0 ||
	    (r = sbx_state_dir(d, s->rec.name, NULL, dir, sizeof(dir))) < 0)
		goto out;
	/* Marked first, holding no snapshot: a removal cut short is finished,
	 * never taken for a sandbox with part of its state gone.  init_pid and
	 * init_start stay, for a restarted daemon to find what to kill. */
	if (!s->rec.removing) {
		struct sbx_record was = s->rec;
		char busy[256];
		int n;

		/* a download holds the mount (see sbx_sleep_locked): refused
		 * before anything goes, rather than left half removed */
		if ((n = hbd_transfers_open(d, s, busy, sizeof(busy))) > 0) {
			r = hb_err(-EBUSY, "rm %s: a file download from it is in progress (%s%s); "
				   "nothing was removed: remove it once the download ends",
				   s->rec.name, busy, n > 1 ? " and others" : "");
			goto out;
		}
		s->rec.removing = true;
		s->rec.latest[0] = s->rec.lower[0] = s->rec.base[0] = 0;
		if ((r = save(d, s)) < 0) {
			/* the fields changed, not the whole record: hbd_add reads
			 * name, id_base and publish under the list's lock alone */
			s->rec.removing = false;
			memcpy(s->rec.latest, was.latest, sizeof(was.latest));
			memcpy(s->rec.lower, was.lower, sizeof(was.lower));
			memcpy(s->rec.base, was.base, sizeof(was.base));
			goto out;
		}
		s->removed = true;
		show_now(d, s); /* listed as "removing" until it is gone */
	}
	stop_all(d, s, root, "rm");
	/* a mount stop_all did not know of (a previous daemon's, dead or not) */
	if (mount_alive(root))
		unmount_root(root);
	else
		detach_stale(root);
	hb_err_clear();
	unconfine_fs(d, s);
	/* a helper's groups that a daemon which died left (its helper's
	 * handle removes them otherwise) */
	helper_cgroup_name_of(d, "hbdnat", s->rec.id_base, name, sizeof(name));
	remove_groups_of(s, name);
	if ((r = prune(d, s)) < 0)
		goto out;
	hbd_test_pause("rm", s->rec.name, d->test_rm_pause_ms);
	if (open_repo(d, &repo) == 0) {
		tag_of(s->rec.name, tag, sizeof(tag));
		repo_tag_remove(repo, tag);
		repo_close(repo);
	}
	hb_err_clear();
	rm_rf(dir);
	hb_err_clear();
	if (lstat(dir, &st) == 0) {
		r = hb_err(-EBUSY, "%s could not be removed entirely (still mounted?): "
			   "rm %s again, or restart the daemon", dir, s->rec.name);
		goto out;
	}
	if ((r = registry_delete(d->reg, s->rec.name)) < 0)
		goto out;
	s->rec.removing = false; /* done: s->removed alone */
	hbd_unlist(d, s);
out:
	sbx_slow_end(d, s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* A sandbox whose processes are gone but whose disk may hold writes since
 * its last sleep (the daemon or its fs process died): commit them, through
 * the live mount (alive) or else by replaying the upper on a new mount, and
 * record the sandbox asleep.  Writes are lost only if neither works. */
static int settle_locked(struct hbd *d, struct sbx *s, bool alive)
{
	char root[4200], upper[4200], tag[128], why[512];
	struct oid id;
	bool replayable = upper_replayable(d, s), keep;
	int r = -ENOENT, rs;

	sbx_state_dir(d, s->rec.name, "root", root, sizeof(root));
	sbx_state_dir(d, s->rec.name, "upper", upper, sizeof(upper));
	tag_of(s->rec.name, tag, sizeof(tag));
	if (alive) {
		r = hbfs_commit(root, tag, &id);
	} else if (replayable) {
		/* The fs process died: its upper replays on a new mount. */
		detach_stale(root);
		r = mount_snapshot(d, s->rec.lower, upper, root, s->rec.id_base,
				   s->rec.disk_bytes);
		if (r == 0)
			r = hbfs_commit(root, tag, &id);
	}
	if (r == 0)
		r = record_commit(d, s, &id);
	if (r == 0)
		r = save(d, s); /* before the upper goes, as in a sleep */
	/* Writes no snapshot holds are never dropped: the upper stays, with
	 * lower naming its snapshot, for the next wake to mount again and the
	 * next sleep or fork to commit (settle_kept_locked). */
	keep = r < 0 && replayable;
	if (r < 0) {
		snprintf(why, sizeof(why), "%s", hb_errmsg(r));
		fprintf(stderr, "hiberboxd: settle %s: %s (its writes since the last sleep %s)\n",
			s->rec.name, why, keep ? "are kept in its upper, uncommitted" : "are lost");
	}
	hb_err_clear();
	if (unmount_root(root) == 0)
		unconfine_fs(d, s);
	hb_err_clear();
	if (!keep) {
		drop_upper(upper);
		s->rec.lower[0] = 0;
	}
	s->rec.state = SBX_SLEEPING;
	s->rec.init_pid = 0;
	s->rec.init_start = 0;
	s->rec.slept_at = now_sec();
	rs = save(d, s);
	if (keep)
		return hb_err(r, "its writes since the last sleep are kept uncommitted: %s", why);
	return rs;
}

/* Whether the fs process serving a running sandbox's root died. */
static bool fs_died(struct hbd *d, struct sbx *s)
{
	char root[4200];

	return s->sb && sbx_state_dir(d, s->rec.name, "root", root, sizeof(root)) == 0 &&
	       hbfs_mount_dead(root);
}

/* Reap a dead fs process of ours: the daemon is a subreaper and the mount
 * helper's fs process is its orphan, which nobody else waits for. */
static void reap_dead_fs(const char *root)
{
	struct hbfs_mount_info *m = NULL;
	size_t count = 0;

	if (hbfs_list_mounts(&m, &count) < 0) {
		hb_err_clear();
		return;
	}
	for (size_t i = 0; i < count; i++)
		if (strcmp(m[i].mountpoint, root) == 0 && !m[i].alive && m[i].pid > 0)
			waitpid(m[i].pid, NULL, WNOHANG);
	free(m);
}

/* The fs process of running s died under it: stop its processes and settle
 * its disk as a restarted daemon would; the next use wakes it again. */
static int fs_died_settle_locked(struct hbd *d, struct sbx *s)
{
	char root[4200];

	fprintf(stderr, "hiberboxd: %s: its fs process died: committing its upper, sleeping\n",
		s->rec.name);
	stop_sandbox(s, "fs");
	detached_forget_all(d, s);
	if (sbx_state_dir(d, s->rec.name, "root", root, sizeof(root)) == 0)
		reap_dead_fs(root);
	return settle_locked(d, s, false);
}

/* The init a previous daemon left, adopted (its pid and start time as
 * recorded, in its cgroup), or NULL. */
static struct sandbox *adopt_init(struct hbd *d, struct sbx *s)
{
	char cgname[64];
	struct sandbox *sb = NULL;

	cgroup_name_of(d, s, cgname, sizeof(cgname));
	if (s->rec.init_pid > 0 && s->rec.init_start &&
	    proc_start_time((pid_t)s->rec.init_pid) == s->rec.init_start &&
	    sandbox_adopt(cgname, (pid_t)s->rec.init_pid, &sb) == 0)
		return sb;
	hb_err_clear();
	return NULL;
}

/* Kill what a previous daemon left of s's processes: sb from adopt_init, or
 * else whatever init its record names, and its cgroups either way. */
static void stop_leftovers(struct hbd *d, struct sbx *s, struct sandbox *sb, const char *why)
{
	char cgname[64];

	if (sb) {
		s->sb = sb;
		stop_sandbox(s, why); /* kills it and removes its cgroups */
	} else {
		if (s->rec.init_pid > 0 && s->rec.init_start &&
		    proc_start_time((pid_t)s->rec.init_pid) == s->rec.init_start)
			kill((pid_t)s->rec.init_pid, SIGKILL);
		/* No handle removes its groups: each wake makes new ones, so
		 * those of an init that died with the daemon would stay. */
		hb_err_clear();
		cgroup_name_of(d, s, cgname, sizeof(cgname));
		if (sandbox_remove_cgroups(cgname) < 0)
			fprintf(stderr, "hiberboxd: recover %s: %s\n", s->rec.name, hb_errmsg(-EIO));
	}
	hb_err_clear();
	/* its detached commands died with it */
	detached_forget_all(d, s);
}

/* The previous daemon died with s running.  If its mount and its init
 * are both alive the sandbox is taken over as it is (processes and all).
 * Otherwise what is left is stopped and the writes committed: it sleeps, and
 * wakes on the next exec with its whole disk. */
int sbx_recover(struct hbd *d, struct sbx *s)
{
	char root[4200];
	struct sandbox *sb;
	bool alive;
	int r;

	pthread_mutex_lock(&s->lock);
	sbx_state_dir(d, s->rec.name, "root", root, sizeof(root));
	alive = mount_alive(root);
	sb = adopt_init(d, s);
	if (sb && alive) {
		void *a[2] = { d, s };

		s->sb = sb;
		/* the previous daemon's NAT helper ended with it (its exit fd) */
		if ((r = nat_start(d, s)) < 0) {
			fprintf(stderr, "hiberboxd: %s: network nat: %s: stopping it\n",
				s->rec.name, hb_errmsg(r));
			hb_err_clear();
			stop_leftovers(d, s, sb, "recover");
			r = settle_locked(d, s, alive);
			pthread_mutex_unlock(&s->lock);
			return r;
		}
		s->last_activity_ns = now_ns();
		fprintf(stderr, "hiberboxd: %s: re-adopted (init pid %lld)\n", s->rec.name,
			(long long)s->rec.init_pid);
		r = registry_detached_of(d->reg, s->rec.name, readopt_detached, a);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	stop_leftovers(d, s, sb, "recover");
	r = settle_locked(d, s, alive);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The previous daemon recorded s asleep, but may have died in a wake
 * between starting its init and recording it: that init, and whatever
 * joined it, is killed with its cgroups.  None of this is there normally
 * (a sleep removes them). */
int sbx_recover_sleeping(struct hbd *d, struct sbx *s)
{
	char cgname[64];
	int r;

	pthread_mutex_lock(&s->lock);
	cgroup_name_of(d, s, cgname, sizeof(cgname));
	r = sandbox_kill_cgroups(cgname);
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? hb_err_ctx(r, "recover %s", s->rec.name) : 0;
}

/* sandbox_list_cgroups: the fs processes' or the NAT helpers' groups named
 * prefix (arg) and an id base no sandbox of d has. */
struct cgroup_sweep {
	struct hbd *d;
	const char *prefix;
};

static int sweep_group(const char *name, void *arg)
{
	const struct cgroup_sweep *w = arg;
	const char *digits = name + strlen(w->prefix);
	char *end;
	unsigned long id;

	errno = 0;
	id = strtoul(digits, &end, 10);
	if (!*digits || *end || errno || id == 0 || id > UINT32_MAX)
		return 0; /* not a name of ours */
	for (size_t i = 0; i < w->d->count; i++)
		if (w->d->list[i]->rec.id_base == id)
			return 0;
	fprintf(stderr, "hiberboxd: removing cgroups %s (their sandbox is gone)\n", name);
	if (sandbox_kill_cgroups(name) < 0) {
		fprintf(stderr, "hiberboxd: %s\n", hb_errmsg(-EIO));
		hb_err_clear();
	}
	return 0;
}

int sbx_sweep_cgroups(struct hbd *d)
{
	char fs[64], nat[64];
	struct cgroup_sweep wfs = { d, fs }, wnat = { d, nat };
	int r;

	helper_cgroup_name_of(d, "hbdfs", 0, fs, sizeof(fs));
	helper_cgroup_name_of(d, "hbdnat", 0, nat, sizeof(nat));
	/* both, whatever the first did */
	r = sandbox_list_cgroups(fs, sweep_group, &wfs);
	int r2 = sandbox_list_cgroups(nat, sweep_group, &wnat);
	return r < 0 ? r : r2;
}

/* A removal the previous daemon began: its processes are stopped first
 * (stop_all knows only those of this daemon), then sbx_remove goes on. */
int sbx_remove_unfinished(struct hbd *d, struct sbx *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->rec.state == SBX_RUNNING)
		stop_leftovers(d, s, adopt_init(d, s), "rm");
	pthread_mutex_unlock(&s->lock);
	return sbx_remove(d, s);
}

/* Whether a re-adopted detached process runs: its pidfd is readable once
 * it ended. */
static bool pidfd_running(int pidfd)
{
	struct pollfd p = { pidfd, POLLIN, 0 };

	return poll(&p, 1, 0) == 0;
}

int sbx_reap_locked(struct hbd *d, struct sbx *s)
{
	struct sbx_detached **pp = &s->detached;
	int alive = 0;

	while (*pp) {
		struct sbx_detached *x = *pp;
		struct sandbox_exit ex;

		trim_log(x->log_fd); /* first: what an ended writer wrote last counts */
		if (sbx_detached_running(x) && x->deadline_ns && now_ns() >= x->deadline_ns) {
			/* its timeout; seen ended below or at the next tick */
			if (x->proc)
				sandbox_proc_kill(x->proc, SIGKILL);
			else
				syscall(SYS_pidfd_send_signal, x->pidfd, SIGKILL, NULL, 0);
			x->deadline_ns = 0;
		}
		if ((x->proc && sandbox_proc_wait(x->proc, 0, &ex) == -ETIMEDOUT) ||
		    (x->pidfd >= 0 && pidfd_running(x->pidfd))) {
			alive++;
			pp = &x->next;
			continue;
		}
		hb_err_clear();
		if (x->proc) { /* ended: its log stays capped while others write it */
			sandbox_proc_free(x->proc);
			x->proc = NULL;
		}
		if (x->pidfd >= 0) {
			close(x->pidfd);
			x->pidfd = -1;
		}
		if (x->log_fd >= 0 && log_still_written(x->log_fd)) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		if (registry_detached_delete(d->reg, s->rec.name, x->pid) < 0)
			hb_err_clear(); /* a stale row: its start time no longer matches */
		sbx_detached_free(x);
	}
	return alive;
}

int sbx_process_count_locked(struct sbx *s)
{
	const char *dir = s->sb ? sandbox_cgroup_dir(s->sb, "pids") : NULL;
	char path[4200], data[65536];
	int fd, count = 0;
	ssize_t n;

	if (!dir)
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read_full(fd, data, sizeof(data));
	close(fd);
	for (ssize_t i = 0; i < n; i++)
		count += data[i] == '\n';
	return count > 0 ? count - 1 : 0; /* init does not count */
}

/* How long an exec that could not join the sandbox waits for its init to
 * finish dying: a SIGKILLed init exits within milliseconds. */
#define EXEC_INIT_DYING_MS 2000

int sbx_exec_start_locked(struct hbd *d, struct sbx *s, const struct sbx_exec_req *req,
			  struct sandbox_proc **out)
{
	char root[4200];
	struct sandbox_spec *spec = NULL;
	json_t *env = NULL;
	int r;

	if ((r = sbx_wake_locked(d, s, NULL)) < 0)
		return r;
	if ((r = sbx_state_dir(d, s->rec.name, "root", root, sizeof(root))) < 0)
		return r;
	if ((r = sandbox_spec_new(&spec, root)) < 0 || (r = sandbox_spec_set_argv(spec, req->argv)) < 0)
		goto out;
	env = json_loads(s->rec.env_json ? s->rec.env_json : "[]", 0, NULL);
	for (size_t i = 0; env && i < json_array_size(env) && r == 0; i++)
		if (json_is_string(json_array_get(env, i)))
			r = sandbox_spec_add_env(spec, json_string_value(json_array_get(env, i)));
	for (size_t i = 0; req->env && req->env[i] && r == 0; i++)
		r = sandbox_spec_add_env(spec, req->env[i]);
	if (r < 0)
		goto out;
	if (req->cwd && (r = sandbox_spec_set_cwd(spec, req->cwd)) < 0)
		goto out;
	if ((r = sandbox_spec_set_user(spec, req->uid, req->gid)) < 0 ||
	    (r = sandbox_spec_pass_fd(spec, req->stdin_fd, 0)) < 0 ||
	    (r = sandbox_spec_pass_fd(spec, req->stdout_fd, 1)) < 0 ||
	    (r = sandbox_spec_pass_fd(spec, req->stderr_fd, 2)) < 0 ||
	    (r = sandbox_spec_set_tty(spec, req->tty)) < 0)
		goto out;
	hbd_test_pause("exec", s->rec.name, d->test_exec_pause_ms);
	r = sandbox_exec(s->sb, spec, out);
	/* Its namespaces are gone (-ESRCH): an init killed a moment ago, still
	 * dying when sbx_wake_locked's look found it running.  Once it has
	 * ended, it is put to sleep and woken like any init found dead. */
	if (r == -ESRCH && s->sb && sandbox_wait(s->sb, EXEC_INIT_DYING_MS, NULL) != -ETIMEDOUT) {
		hb_err_clear();
		if ((r = sbx_check_init_locked(d, s)) < 0 || (r = sbx_wake_locked(d, s, NULL)) < 0)
			goto out;
		r = sandbox_exec(s->sb, spec, out);
	}
	if (r < 0)
		r = hb_err_ctx(r, "%s", s->rec.name);
	s->last_activity_ns = now_ns();
out:
	json_decref(env);
	sandbox_spec_free(spec);
	return r;
}

/* Images. */

static int image_tag(const char *name, char *tag, size_t size)
{
	int r = sbx_name_valid(name);
	if (r < 0)
		return r;
	snprintf(tag, size, HBD_TAG_IMAGE "%s", name);
	return 0;
}

static int untar(const char *tarball, const char *dir)
{
	const char *argv[] = { "tar", "-xf", tarball, "-C", dir, "--numeric-owner",
			       "--same-permissions", "--no-same-owner", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int status, r;
	pid_t pid;

	/* root extracting keeps owners by default; --no-same-owner is dropped */
	argv[7] = NULL;
	if ((r = proc_spawnattr_init(&at)) < 0)
		return r;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	r = posix_spawnp(&pid, "tar", &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r != 0)
		return hb_err(-r, "run tar: %s", strerror(r));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return hb_err(-EIO, "tar -xf %s failed (status %d)", tarball, status);
	return 0;
}

/* A source tree that changed while it was read (repo_create_opts.warn):
 * the image lacks what the line names, so its client is told in the reply
 * and the log keeps it too. */
struct import_warnings {
	const char *name;
	json_t *lines;
};

static void import_warn(void *arg, const char *line)
{
	struct import_warnings *w = arg;

	fprintf(stderr, "hiberboxd: import %s: warning: %s\n", w->name, line);
	json_array_append_new(w->lines, json_text(line));
}

int image_import(struct hbd *d, const char *name, const char *source, json_t **out)
{
	char tag[200], tmp[4200] = "", hex[OID_HEX_BYTES];
	struct repo *repo = NULL;
	struct manifest_info info;
	struct oid id;
	struct stat st;
	const char *dir = source;
	uint64_t t0 = now_ns();
	int r;

	if ((r = image_tag(name, tag, sizeof(tag))) < 0)
		return r;
	if (!source || source[0] != '/')
		return hb_err(-EINVAL, "image source must be an absolute path");
	if (stat(source, &st) < 0)
		return hb_err(-errno, "%s: %s", source, strerror(errno));
	if ((r = open_repo(d, &repo)) < 0)
		return r;
	if (repo_tag_get(repo, tag, &id) == 0) {
		r = hb_err(-EEXIST, "image '%s' exists already", name);
		goto out;
	}
	hb_err_clear();
	if (!S_ISDIR(st.st_mode)) {
		snprintf(tmp, sizeof(tmp), "%s/tmp", d->home);
		mkdir_p(AT_FDCWD, tmp, 0700);
		snprintf(tmp, sizeof(tmp), "%s/tmp/import-XXXXXX", d->home);
		if (!mkdtemp(tmp)) {
			r = hb_err_sys(-errno, "mkdtemp %s", tmp);
			tmp[0] = 0;
			goto out;
		}
		chmod(tmp, 0755);
		if ((r = untar(source, tmp)) < 0)
			goto out;
		dir = tmp;
	}
	struct import_warnings warnings = { .name = name, .lines = json_array() };
	struct repo_create_opts co = { .tag = tag, .no_parent = true, .warn = import_warn,
				       .warn_arg = &warnings };
	if (!warnings.lines) {
		r = hb_err(-ENOMEM, "import %s", name);
		goto out;
	}
	r = repo_snapshot_create(repo, dir, &co, &id, &info);
	if (r == 0) {
		oid_format(&id, hex);
		*out = json_pack("{s:s, s:s, s:I, s:I, s:I, s:O}", "name", name, "snapshot", hex,
				 "files", (json_int_t)info.files, "bytes", (json_int_t)info.bytes,
				 "import_ms", (json_int_t)((now_ns() - t0) / 1000000),
				 "warnings", warnings.lines);
	}
	json_decref(warnings.lines);
out:
	if (tmp[0])
		rm_rf(tmp);
	repo_close(repo);
	return r;
}

int image_list(struct hbd *d, json_t **out)
{
	struct repo_snapshot_summary *list = NULL;
	struct repo *repo;
	size_t count = 0;
	int r = open_repo(d, &repo);

	if (r < 0)
		return r;
	r = repo_list_snapshots(repo, &list, &count);
	repo_close(repo);
	if (r < 0)
		return r;
	json_t *arr = json_array();
	for (size_t i = 0; i < count; i++) {
		char tags[sizeof(list[i].tags)], hex[OID_HEX_BYTES], *save = NULL;

		snprintf(tags, sizeof(tags), "%s", list[i].tags);
		oid_format(&list[i].id, hex);
		for (char *t = strtok_r(tags, ",", &save); t; t = strtok_r(NULL, ",", &save))
			if (strncmp(t, HBD_TAG_IMAGE, strlen(HBD_TAG_IMAGE)) == 0)
				json_array_append_new(arr, json_pack(
					"{s:s, s:s, s:I, s:I, s:I}", "name", t + 6, "snapshot", hex,
					"created", (json_int_t)list[i].info.time_sec,
					"files", (json_int_t)list[i].info.files,
					"bytes", (json_int_t)list[i].info.bytes));
	}
	free(list);
	*out = arr;
	return 0;
}

int image_remove(struct hbd *d, const char *name)
{
	char tag[200], hex[OID_HEX_BYTES], user[SBX_NAME_MAX + 1];
	struct repo *repo;
	struct oid id;
	int r;

	if ((r = image_tag(name, tag, sizeof(tag))) < 0)
		return r;
	if ((r = open_repo(d, &repo)) < 0)
		return r;
	if ((r = repo_tag_get(repo, tag, &id)) < 0) {
		r = hb_err(-ENOENT, "no image '%s'", name);
		goto out;
	}
	oid_format(&id, hex);
	pthread_mutex_lock(&d->images_lock);
	r = registry_snapshot_user(d->reg, hex, NULL, user, sizeof(user));
	if (r > 0)
		r = hb_err(-EBUSY, "image '%s' is used by sandbox '%s'", name, user);
	if (r == 0)
		r = repo_snapshot_remove(repo, &id);
	pthread_mutex_unlock(&d->images_lock);
out:
	repo_close(repo);
	return r;
}
