/* Mounting: open the repository and the snapshot, recover the upper
 * directory, mount through FUSE, register the control socket, serve with
 * libfuse's multi-threaded loop, tear down in reverse.
 *
 * In the background mode the caller forks before anything starts a thread;
 * the child reports "ok" or "error <message>" on a pipe once the kernel mount
 * exists, and the parent then stats the mountpoint, which returns only when
 * the fs answered the kernel's INIT: "returns once the mount answers".
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs-int.h"
#include "fs/uring.h"
#include "fs/lower.h"
#include "util/bigmem.h"
#include "util/error.h"
#include "util/fileio.h"

#define MOUNT_WAIT_MS 60000

static void fs_free(struct hbfs *fs)
{
	control_stop(fs);
	cache_free(fs);
	upper_stop_threads(fs); /* a compaction reads the tree */
	if (fs->by_lower)
		tree_free(fs);
	upper_close(fs);
	manifest_free(fs->m);
	repo_pin_end(fs->pin);
	repo_close(fs->repo);
	pthread_rwlock_destroy(&fs->tree_lock);
	pthread_mutex_destroy(&fs->commit_lock);
	pthread_mutex_destroy(&fs->copy_lock);
	pthread_mutex_destroy(&fs->quota_lock);
	pthread_cond_destroy(&fs->copy_done);
	free(fs);
}

static int default_upper(char *out, size_t size)
{
	char home[4096];
	uint8_t rnd[8];
	char hex[17];
	int r = repo_default_home(home, sizeof(home));

	if (r < 0)
		return r;
	r = random_bytes(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	hex_format(rnd, sizeof(rnd), hex);
	if ((size_t)snprintf(out, size, "%s/upper/%s", home, hex) >= size)
		return hb_err(-ENAMETOOLONG, "HIBERBOX_HOME is too long");
	return 0;
}

/* The upper directory is opened (and its meta written and synced, on a new
 * one) in a thread of its own while the manifest is decoded: it needs only
 * the snapshot id, and an fsync costs as much as decoding a large manifest. */
struct upper_job {
	struct hbfs *fs;
	const struct oid *base; /* the snapshot, when named by a full id */
	int r;
	char msg[1024];
};

static void *upper_open_main(void *arg)
{
	struct upper_job *j = arg;

	j->r = upper_open(j->fs, j->base);
	if (j->r < 0)
		snprintf(j->msg, sizeof(j->msg), "%s", hb_errmsg(j->r));
	return NULL;
}

/* The snapshot was named by its full id (which may still be a tag). */
static bool full_id(const char *name, struct oid *id)
{
	return strlen(name) == OID_HEX_BYTES - 1 && oid_parse(name, id) == 0;
}

/* Resolve the snapshot's name and load its manifest.  A full id is tried
 * as such first: the manifest's GET then also says whether it exists, which
 * saves the existence check's round trip on an object store. */
static int load_base_manifest(struct hbfs *fs)
{
	const char *name = fs->opts.snapshot;
	int r;

	if (full_id(name, &fs->base_id)) {
		r = repo_load_manifest(fs->repo, &fs->base_id, &fs->m);
		if (r != -ENOENT)
			return r;
		hb_err_clear(); /* maybe a tag that looks like an id */
	}
	r = repo_resolve(fs->repo, name, &fs->base_id);
	if (r < 0)
		return r;
	return repo_load_manifest(fs->repo, &fs->base_id, &fs->m);
}

/* Load the manifest and build the tree while upper_open runs beside; the
 * upper is checked against the snapshot once its id is final (a tag or a
 * prefix is resolved by the repository meanwhile). */
static int load_lower_and_upper(struct hbfs *fs)
{
	struct oid guess;
	struct upper_job j = { .fs = fs,
			       .base = full_id(fs->opts.snapshot, &guess) ? &guess : NULL };
	pthread_t t;
	bool threaded = pthread_create(&t, NULL, upper_open_main, &j) == 0;
	int r;

	if (!threaded)
		upper_open_main(&j);
	r = load_base_manifest(fs);
	if (r >= 0)
		r = tree_init(fs);
	if (threaded)
		pthread_join(t, NULL);
	if (r < 0)
		return r;
	if (j.r < 0)
		return hb_err(j.r, "%s", j.msg);
	return upper_bind_base(fs);
}

void hbfs_test_pause(const struct hbfs *fs)
{
	struct timespec t = { fs->test_pause_ms / 1000, (long)(fs->test_pause_ms % 1000) * 1000000 };

	if (fs->test_pause_ms)
		nanosleep(&t, NULL);
}

/* Everything up to a live kernel mount.  On failure *out is NULL. */
static int setup(const struct hbfs_opts *opts, struct hbfs **out)
{
	struct hbfs *fs = calloc(1, sizeof(*fs));
	int r;

	*out = NULL;
	if (!fs)
		return -ENOMEM;
	fs->opts = *opts;
	if (getenv("HIBERBOX_FS_TEST_PAUSE_MS"))
		fs->test_pause_ms = (unsigned)strtoul(getenv("HIBERBOX_FS_TEST_PAUSE_MS"), NULL, 10);
	fs->upper_fd = fs->data_fd = fs->control_fd = -1;
	pthread_rwlock_init(&fs->tree_lock, NULL);
	pthread_mutex_init(&fs->commit_lock, NULL);
	pthread_mutex_init(&fs->copy_lock, NULL);
	pthread_mutex_init(&fs->quota_lock, NULL);
	fs->upper_limit = opts->upper_limit;
	pthread_cond_init(&fs->copy_done, NULL);
	if (!realpath(opts->mountpoint, fs->mountpoint)) {
		r = hb_err_sys(-errno, "mountpoint %s", opts->mountpoint);
		goto fail;
	}
	if (opts->upper) {
		snprintf(fs->upper_path, sizeof(fs->upper_path), "%s", opts->upper);
	} else if ((r = default_upper(fs->upper_path, sizeof(fs->upper_path))) < 0) {
		goto fail;
	}
	{
		/* A full id: its manifest comes in beside the config. */
		struct oid id;

		r = repo_open_for(opts->repo, full_id(opts->snapshot, &id) ? &id : NULL, &fs->repo);
	}
	if (r < 0)
		goto fail;
	r = load_lower_and_upper(fs);
	if (r < 0)
		goto fail;
	r = upper_replay(fs);
	if (r < 0)
		goto fail;
	r = cache_new(fs);
	if (r < 0)
		goto fail;
	*out = fs;
	return 0;
fail:
	fs_free(fs);
	return r;
}

/* The kernel reads ahead at most 128 KiB on a FUSE mount by default (the
 * bdi's own limit, below the 1 MiB the fs offers at INIT): a program's first
 * start faults its binary in through hundreds of requests.  Raise the bdi's
 * limit to HBFS_BDI_READAHEAD_KB: a quarter as many requests and decoded
 * chunks handed over whole.  Best effort (needs root; sysfs may be absent). */
#define HBFS_BDI_READAHEAD_KB 1024

static void raise_readahead(const char *mountpoint)
{
	char line[8192], path[128], dev[32] = "";
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int fd;

	if (!f)
		return;
	/* "id parent major:minor root mountpoint ...": the last match wins */
	while (fgets(line, sizeof(line), f)) {
		char d[32], mnt[4096];

		if (sscanf(line, "%*u %*u %31s %*s %4095s", d, mnt) == 2 && !strcmp(mnt, mountpoint))
			snprintf(dev, sizeof(dev), "%s", d);
	}
	fclose(f);
	if (!dev[0])
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	snprintf(line, sizeof(line), "%d\n", HBFS_BDI_READAHEAD_KB);
	if (write(fd, line, strlen(line)) < 0)
		fprintf(stderr, "hiberbox-fs: %s: %s\n", path, strerror(errno));
	close(fd);
}

static void report(int fd, int r)
{
	char line[1200];

	if (fd < 0)
		return;
	if (r < 0)
		snprintf(line, sizeof(line), "error %s\n", hb_errmsg(r));
	else
		snprintf(line, sizeof(line), "ok\n");
	write_all(fd, line, strlen(line));
	close(fd);
}

static void *heap_end_main(void *arg)
{
	(void)arg;
	bigmem_main_heap_end();
	return NULL;
}

/* The heap's trim walks it (milliseconds on a 50 000-file manifest's):
 * beside the first requests, not before them. */
static void heap_end_later(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, heap_end_main, NULL) == 0)
		pthread_detach(t);
	else
		bigmem_main_heap_end();
}

static int serve(const struct hbfs_opts *opts, int ready_fd)
{
	struct hbfs *fs;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	char optstr[512];
	char *argv[4];
	struct fuse_args args;
	int r;

	{
		/* A sandbox keeps many files open; each open file here is one fd. */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	/* The manifest's decoded entries and the buffers it passes through:
	 * tens of MiB of fresh memory, each 4 KiB page fault of which cost
	 * ~25 us on a virtual machine (most of a 50 000-file mount's time). */
	bigmem_main_heap(32u << 20);
	r = setup(opts, &fs);
	if (r < 0) {
		r = hb_err_ctx(r, "mount %s", opts->snapshot);
		report(ready_fd, r);
		return r;
	}
	/* Decoding the hot list overlaps the kernel mount and whatever the
	 * caller does before its first read (a sandbox's init). */
	lower_prefetch_hot(fs);
	{
		char what[600];

		snprintf(what, sizeof(what), "mounted at %.500s", fs->mountpoint);
		if (repo_pin_start(fs->repo, &fs->base_id, what, &fs->pin) < 0) {
			/* commits stay safe without it (their reuse is checked) */
			fprintf(stderr, "hiberbox-fs: %s: no pin on the snapshot: %s\n",
				fs->mountpoint, hb_errmsg(-EIO));
			hb_err_clear();
		}
	}
	snprintf(optstr, sizeof(optstr), "default_permissions,fsname=hiberbox,subtype=hiberbox%s",
		 geteuid() == 0 ? ",allow_other" : "");
	argv[0] = "hiberbox";
	argv[1] = opts->debug ? "-d" : "-o";
	argv[2] = opts->debug ? "-o" : optstr;
	argv[3] = opts->debug ? optstr : NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(opts->debug ? 4 : 3, argv);
	se = fuse_session_new(&args, &hbfs_ops, sizeof(hbfs_ops), fs);
	if (!se) {
		r = hb_err(-EIO, "creating the FUSE session");
		goto out;
	}
	fs->se = se;
	if (fuse_set_signal_handlers(se) < 0) {
		r = hb_err(-EIO, "installing signal handlers");
		goto out;
	}
	if (fuse_session_mount(se, fs->mountpoint) < 0) {
		r = hb_err(-EIO, "mounting FUSE at %s (is /dev/fuse usable?)", fs->mountpoint);
		goto out;
	}
	raise_readahead(fs->mountpoint);
	r = control_start(fs);
	if (r < 0) {
		fuse_session_unmount(se);
		goto out;
	}
	report(ready_fd, 0);
	ready_fd = -1;
	heap_end_later();
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		r = -ENOMEM;
		fuse_session_unmount(se);
		goto out;
	}
	fuse_loop_cfg_set_idle_threads(cfg, 8);
	fuse_loop_cfg_set_max_threads(cfg, 32);
	r = fuse_session_loop_mt(se, cfg) < 0 ? -EIO : 0;
	fuse_loop_cfg_destroy(cfg);
	uring_stop(fs->uring);
	fs->uring = NULL;
	control_stop(fs);
	fuse_session_unmount(se);
	if (fs->upper_fd >= 0)
		syncfs(fs->upper_fd);
out:
	if (r < 0)
		report(ready_fd, r);
	if (se) {
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	fs_free(fs);
	return r;
}

static int wait_child(int rfd, pid_t pid, const char *mountpoint)
{
	char line[1200];
	size_t len = 0;
	struct stat st;
	int status;

	for (;;) {
		ssize_t n = read(rfd, line + len, sizeof(line) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(line) - 1)
			break;
	}
	close(rfd);
	line[len] = 0;
	line[strcspn(line, "\n")] = 0;
	if (!strcmp(line, "ok")) {
		if (stat(mountpoint, &st) < 0)
			return hb_err_sys(-errno, "the mount at %s does not answer", mountpoint);
		return 0;
	}
	if (!strncmp(line, "error ", 6)) {
		waitpid(pid, &status, 0);
		return hb_err(-EIO, "%s", line + 6);
	}
	waitpid(pid, &status, 0);
	return hb_err(-EIO, "the filesystem process died while mounting");
}

int hbfs_mount(const struct hbfs_opts *opts)
{
	int p[2];
	pid_t pid;

	if (!opts || !opts->repo || !opts->snapshot || !opts->mountpoint)
		return hb_err(-EINVAL, "mount: repository, snapshot and mountpoint are required");
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		/* fusermount3 opens it as the caller too: its mode is the
		 * host's say on who may mount */
		if (errno == EACCES && geteuid() != 0)
			return hb_err(-EACCES, "/dev/fuse is not usable by this user (an unprivileged "
				      "mount needs read and write access to it; run as root or ask "
				      "the host's admin for access)");
		return hb_err_sys(-errno, "/dev/fuse is not usable");
	}
	if (opts->foreground || opts->debug)
		return serve(opts, opts->ready_fd);
	if (pipe2(p, O_CLOEXEC) < 0)
		return hb_err_sys(-errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return hb_err_sys(-errno, "fork");
	}
	if (pid == 0) {
		/* The daemon: its own session, output to a log beside the upper. */
		int null;
		char home[4096], log[4200];

		close(p[0]);
		/* The daemon keeps nothing of its caller but the status pipe. */
		if (p[1] > 3)
			close_range(3, (unsigned)p[1] - 1, 0);
		close_range((unsigned)p[1] + 1, ~0u, 0);
		null = open("/dev/null", O_RDWR);
		setsid();
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
		}
		if (repo_default_home(home, sizeof(home)) == 0) {
			int lfd;

			snprintf(log, sizeof(log), "%s/fs.log", home);
			mkdir_p(AT_FDCWD, home, 0700);
			lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			if (lfd >= 0) {
				dup2(lfd, STDERR_FILENO);
				close(lfd);
			}
		}
		if (null > 2)
			close(null);
		_exit(serve(opts, p[1]) < 0 ? 1 : 0);
	}
	close(p[1]);
	return wait_child(p[0], pid, opts->mountpoint);
}
