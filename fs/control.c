/* The control channel of a running mount and the registry of mounts.
 *
 * $HIBERBOX_HOME/mounts/<key>.json  what is mounted where (written at mount)
 * $HIBERBOX_HOME/mounts/<key>.sock  unix socket served by the fs process
 * key = XXH3-64 of the mountpoint's real path, 16 hex digits.
 *
 * Protocol: one request line, one answer line, then the server closes.
 *   "ping"            -> "ok"
 *   "commit [TAG]"    -> "ok <id>" | "err <message>"
 *   "transport"       -> "ok io_uring <requests served so>" | "ok /dev/fuse"
 *   "usage"           -> "ok <bytes used> <limit bytes> <its RSS bytes>" (limit 0:
 *                        none; RSS 18446744073709551615: unknown)
 * Requests are served one at a time by one thread, so commits never overlap.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>
#include <xxhash.h>

#include "fs/fs-int.h"
#include "fs/uring.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/json-text.h"
#include "util/proc.h"

#define CONTROL_LINE_MAX 1024
#define CONTROL_TIMEOUT_MS 600000 /* a commit of a big change can take minutes */
#define INFO_MAX_BYTES (64 * 1024)

static int mounts_dir(char *out, size_t size)
{
	char home[4096];
	int r = repo_default_home(home, sizeof(home));

	if (r < 0)
		return r;
	if ((size_t)snprintf(out, size, "%s/mounts", home) >= size)
		return hb_err(-ENAMETOOLONG, "HIBERBOX_HOME is too long");
	return 0;
}

int control_paths(const char *mountpoint, char *sock, size_t socksize, char *info,
		  size_t infosize)
{
	char dir[4096], real[PATH_MAX];
	uint64_t key;
	int r;

	if (!realpath(mountpoint, real))
		snprintf(real, sizeof(real), "%s", mountpoint);
	r = mounts_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	key = XXH3_64bits(real, strlen(real));
	if ((size_t)snprintf(sock, socksize, "%s/%016llx.sock", dir, (unsigned long long)key) >=
	    socksize)
		return hb_err(-ENAMETOOLONG, "control socket path under %s is too long for a unix socket",
			      dir);
	snprintf(info, infosize, "%s/%016llx.json", dir, (unsigned long long)key);
	return 0;
}

static int sock_addr(const char *path, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		return hb_err(-ENAMETOOLONG, "socket path %s too long", path);
	strcpy(a->sun_path, path);
	return 0;
}

static void serve_one(struct hbfs *fs, int c)
{
	char line[CONTROL_LINE_MAX], answer[CONTROL_LINE_MAX + 64];
	size_t len = 0;

	while (len < sizeof(line) - 1) {
		ssize_t n = read(c, line + len, sizeof(line) - 1 - len);

		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(line, '\n', len))
			break;
	}
	line[len] = 0;
	line[strcspn(line, "\n")] = 0;
	if (!strcmp(line, "ping")) {
		snprintf(answer, sizeof(answer), "ok\n");
	} else if (!strcmp(line, "usage")) {
		uint64_t used, limit, rss;

		quota_usage(fs, &used, &limit);
		/* its own memory too: a sandbox's cost includes the fs serving it */
		if (proc_rss_bytes(0, &rss) < 0)
			rss = UINT64_MAX;
		snprintf(answer, sizeof(answer), "ok %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", used,
			 limit, rss);
	} else if (!strncmp(line, "commit", 6) && (line[6] == 0 || line[6] == ' ')) {
		const char *tag = line[6] == ' ' && line[7] ? line + 7 : NULL;
		struct oid id;
		char hex[OID_HEX_BYTES];
		int r = hbfs_commit_local(fs, tag, &id);

		if (r < 0) {
			snprintf(answer, sizeof(answer), "err %s\n", hb_errmsg(r));
			fprintf(stderr, "hiberbox-fs: commit failed: %s\n", hb_errmsg(r));
		} else {
			snprintf(answer, sizeof(answer), "ok %s\n", oid_format(&id, hex));
		}
	} else if (!strcmp(line, "transport")) {
		if (fs->uring)
			snprintf(answer, sizeof(answer), "ok io_uring %lu\n", uring_served(fs->uring));
		else
			snprintf(answer, sizeof(answer), "ok /dev/fuse\n");
	} else {
		snprintf(answer, sizeof(answer), "err unknown request\n");
	}
	write_all(c, answer, strlen(answer));
}

static void *control_main(void *arg)
{
	struct hbfs *fs = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		int c = accept4(fs->control_fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		serve_one(fs, c);
		close(c);
	}
	return NULL;
}

static int write_info(struct hbfs *fs)
{
	json_t *j = json_object();
	char hex[OID_HEX_BYTES];
	char *text;
	int r;

	if (!j)
		return -ENOMEM;
	json_object_set_text(j, "mountpoint", fs->mountpoint);
	json_object_set_text(j, "upper", fs->upper_path);
	json_object_set_text(j, "repo", fs->opts.repo);
	json_object_set_new(j, "snapshot", json_string(oid_format(&fs->base_id, hex)));
	json_object_set_new(j, "pid", json_integer(getpid()));
	json_object_set_new(j, "uid_shift", json_integer(fs->opts.uid_shift));
	json_object_set_new(j, "limit", json_integer((json_int_t)fs->upper_limit));
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!text)
		return -ENOMEM;
	/* the mount's live state: gone with the machine anyway */
	r = write_file_atomic(AT_FDCWD, fs->info_path, text, strlen(text), WRITE_NO_SYNC);
	free(text);
	return r;
}

int control_start(struct hbfs *fs)
{
	struct sockaddr_un a;
	char dir[4096];
	int r;

	r = control_paths(fs->mountpoint, fs->sock_path, sizeof(fs->sock_path), fs->info_path,
			  sizeof(fs->info_path));
	if (r < 0)
		return r;
	r = mounts_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	r = mkdir_p(AT_FDCWD, dir, 0700);
	if (r < 0)
		return hb_err(r, "creating %s", dir);
	r = sock_addr(fs->sock_path, &a);
	if (r < 0)
		return r;
	fs->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fs->control_fd < 0)
		return hb_err_sys(-errno, "control socket");
	unlink(fs->sock_path);
	if (bind(fs->control_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fs->control_fd, 8) < 0)
		return hb_err_sys(-errno, "binding control socket %s", fs->sock_path);
	chmod(fs->sock_path, 0600);
	r = write_info(fs);
	if (r < 0)
		return hb_err(r, "writing %s", fs->info_path);
	r = pthread_create(&fs->control_thread, NULL, control_main, fs);
	if (r)
		return hb_err(-r, "starting the control thread");
	fs->control_running = true;
	return 0;
}

void control_stop(struct hbfs *fs)
{
	if (fs->control_fd >= 0)
		shutdown(fs->control_fd, SHUT_RDWR);
	if (fs->control_running)
		pthread_join(fs->control_thread, NULL);
	fs->control_running = false;
	if (fs->control_fd >= 0)
		close(fs->control_fd);
	fs->control_fd = -1;
	if (fs->sock_path[0])
		unlink(fs->sock_path);
	if (fs->info_path[0])
		unlink(fs->info_path);
}

/* Send one request and read the answer line. */
static int request(const char *sock, const char *req, char *answer, size_t size, int timeout_ms)
{
	struct sockaddr_un a;
	size_t len = 0;
	int c, r;

	r = sock_addr(sock, &a);
	if (r < 0)
		return r;
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0)
		return -errno;
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		r = -errno;
		close(c);
		return r == -ECONNREFUSED ? -ENOENT : r;
	}
	r = write_all(c, req, strlen(req));
	while (!r && len < size - 1) {
		struct pollfd p = { c, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		n = read(c, answer + len, size - 1 - len);
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(answer, '\n', len))
			break;
	}
	close(c);
	answer[len] = 0;
	answer[strcspn(answer, "\n")] = 0;
	if (!r && !len)
		r = -ECONNRESET;
	return r;
}

int hbfs_commit(const char *mountpoint, const char *tag, struct oid *out)
{
	char sock[256], info[4096], req[512], answer[CONTROL_LINE_MAX + 64];
	int r;

	r = control_paths(mountpoint, sock, sizeof(sock), info, sizeof(info));
	if (r < 0)
		return r;
	if (tag && (strchr(tag, '\n') || strlen(tag) > REPO_TAG_MAX))
		return hb_err(-EINVAL, "invalid tag name");
	snprintf(req, sizeof(req), "commit%s%s\n", tag ? " " : "", tag ? tag : "");
	r = request(sock, req, answer, sizeof(answer), CONTROL_TIMEOUT_MS);
	if (r == -ENOENT)
		return hb_err(r, "no live hiberbox mount at %s", mountpoint);
	if (r < 0)
		return hb_err(r, "asking the mount at %s to commit", mountpoint);
	if (!strncmp(answer, "ok ", 3) && oid_parse(answer + 3, out) == 0)
		return 0;
	if (!strncmp(answer, "err ", 4))
		return hb_err(-EIO, "%s", answer + 4);
	return hb_err(-EPROTO, "unexpected answer from the mount at %s", mountpoint);
}

int hbfs_usage(const char *mountpoint, int timeout_ms, uint64_t *used, uint64_t *limit,
	       uint64_t *rss)
{
	char sock[256], info[4096], answer[128];
	int r = control_paths(mountpoint, sock, sizeof(sock), info, sizeof(info));
	uint64_t own = UINT64_MAX;

	*used = *limit = 0;
	if (rss)
		*rss = UINT64_MAX;
	if (r < 0)
		return r;
	r = request(sock, "usage\n", answer, sizeof(answer), timeout_ms);
	if (r == -ENOENT)
		return hb_err(r, "no live hiberbox mount at %s", mountpoint);
	if (r < 0)
		return hb_err(r, "asking the mount at %s for its use: %s", mountpoint, strerror(-r));
	/* a mount served by an older binary answers without its memory */
	r = sscanf(answer, "ok %" SCNu64 " %" SCNu64 " %" SCNu64, used, limit, &own);
	if (r < 2)
		return hb_err(-EPROTO, "unexpected answer from the mount at %s", mountpoint);
	if (rss && r == 3)
		*rss = own;
	if (!*limit)
		*used = 0;
	return 0;
}

static int read_info(const char *path, struct hbfs_mount_info *mi)
{
	struct buf b = { .max = INFO_MAX_BYTES };
	json_t *j;
	json_error_t err;
	int r = read_file(AT_FDCWD, path, INFO_MAX_BYTES, &b);

	if (r < 0)
		return r;
	j = json_loadb((const char *)b.data, b.len, 0, &err);
	buf_free(&b);
	if (!j)
		return -EBADMSG;
	memset(mi, 0, sizeof(*mi));
	/* a path that is not UTF-8 is read back exactly (see util/json-text.h) */
	json_object_get_text(j, "mountpoint", mi->mountpoint, sizeof(mi->mountpoint));
	json_object_get_text(j, "upper", mi->upper, sizeof(mi->upper));
	json_object_get_text(j, "repo", mi->repo, sizeof(mi->repo));
	snprintf(mi->snapshot, sizeof(mi->snapshot), "%s",
		 json_string_value(json_object_get(j, "snapshot")) ?: "");
	mi->pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
	mi->uid_shift = (uint32_t)json_integer_value(json_object_get(j, "uid_shift"));
	mi->limit = (uint64_t)json_integer_value(json_object_get(j, "limit"));
	json_decref(j);
	if (!mi->mountpoint[0])
		return -EBADMSG;
	return 0;
}

static void read_last_commit(struct hbfs_mount_info *mi)
{
	char path[4200], base[OID_HEX_BYTES] = "", last[OID_HEX_BYTES] = "";
	struct buf b = { .max = 4096 };

	snprintf(path, sizeof(path), "%s/meta", mi->upper);
	if (read_file(AT_FDCWD, path, 4096, &b) < 0 || buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return;
	}
	if (sscanf((char *)b.data, "hiberbox-upper 1\nbase %32s\nlast %32s\n", base, last) == 2 &&
	    strcmp(base, last))
		snprintf(mi->last_commit, sizeof(mi->last_commit), "%s", last);
	buf_free(&b);
}

int hbfs_list_mounts(struct hbfs_mount_info **out, size_t *count)
{
	char dir[4096];
	struct hbfs_mount_info *list = NULL;
	size_t n = 0;
	DIR *d;
	struct dirent *de;
	int r = mounts_dir(dir, sizeof(dir));

	*out = NULL;
	*count = 0;
	if (r < 0)
		return r;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : hb_err_sys(-errno, "listing %s", dir);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char path[8192], sock[8192], answer[64];
		struct hbfs_mount_info mi, *grown;

		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (read_info(path, &mi) < 0)
			continue;
		snprintf(sock, sizeof(sock), "%s/%.*s.sock", dir, (int)(l - 5), de->d_name);
		mi.alive = request(sock, "ping\n", answer, sizeof(answer), 2000) == 0 &&
			   !strcmp(answer, "ok");
		/* the use lives in the fs process; a dead one's is unknown */
		mi.used_known = mi.alive && mi.limit &&
				request(sock, "usage\n", answer, sizeof(answer), 2000) == 0 &&
				sscanf(answer, "ok %" SCNu64, &mi.used) == 1;
		read_last_commit(&mi);
		grown = realloc(list, (n + 1) * sizeof(*list));
		if (!grown) {
			closedir(d);
			free(list);
			return -ENOMEM;
		}
		list = grown;
		list[n++] = mi;
	}
	closedir(d);
	*out = list;
	*count = n;
	return 0;
}

/* fusermount3 -u [-z] for callers without CAP_SYS_ADMIN. */
static int run_fusermount(const char *mountpoint, bool lazy)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, STDERR_FILENO);
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", mountpoint, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

/* The type of the mount at path in /proc/self/mounts (last one wins):
 * 1 hiberbox, 0 not mounted, -1 another filesystem. */
static int mount_kind(const char *path)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	char line[8192];
	int kind = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char dev[4096], mnt[4096], type[256];

		if (sscanf(line, "%4095s %4095s %255s", dev, mnt, type) != 3)
			continue;
		/* /proc/self/mounts escapes spaces etc. as octal; compare raw
		 * paths without such characters only */
		if (strcmp(mnt, path))
			continue;
		kind = !strcmp(type, "fuse.hiberbox") ? 1 : -1;
	}
	fclose(f);
	return kind;
}

bool hbfs_mount_dead(const char *mountpoint)
{
	struct statfs sf;
	int last = 0;

	/* Measured after a SIGKILL of a mount on io_uring: ECANCELED for ~8 ms,
	 * ECONNABORTED for a moment, then ENOTCONN. */
	for (int i = 0; i < 500; i++) {
		if (statfs(mountpoint, &sf) == 0)
			return false;
		last = errno;
		if (last == ENOTCONN)
			return true;
		if (last != ECANCELED && last != ECONNABORTED)
			return false;
		usleep(10 * 1000);
	}
	return last == ECONNABORTED; /* aborted for good (fusectl) */
}

int hbfs_umount(const char *mountpoint)
{
	char sock[256], info[4096], real[PATH_MAX];
	struct hbfs_mount_info mi;
	bool have_info;
	bool dead;
	int r;

	r = control_paths(mountpoint, sock, sizeof(sock), info, sizeof(info));
	if (r < 0)
		return r;
	have_info = read_info(info, &mi) == 0;
	dead = hbfs_mount_dead(mountpoint);
	if (!realpath(mountpoint, real))
		snprintf(real, sizeof(real), "%s", have_info ? mi.mountpoint : mountpoint);
	if (!strpbrk(real, " \t\n\\")) {
		int kind = mount_kind(real);

		if (kind < 0)
			return hb_err(-EINVAL, "%s is not a hiberbox mount", real);
		if (kind == 0 && !dead) {
			if (have_info && !proc_alive(mi.pid)) {
				unlink(info);
				unlink(sock);
			}
			return hb_err(-EINVAL, "%s is not mounted", real);
		}
	}
	if (dead) {
		/* The fs process is gone: detach what the kernel still holds. */
		if (umount2(real, MNT_DETACH) < 0 && run_fusermount(real, true) < 0)
			return hb_err(-errno ? -errno : -EIO, "cannot detach the dead mount at %s", real);
	} else {
		/* Files a process just closed can hold the mount for a moment
		 * (their last references go after the process is reported gone):
		 * a mount still busy after a second is in use. */
		for (int i = 0;; i++) {
			r = umount2(real, 0) < 0 ? -errno : 0;
			if (r != -EBUSY || i == 100)
				break;
			usleep(10000);
		}
		if (r < 0) {
			if (r == -EPERM)
				r = run_fusermount(real, false);
			if (r == -EINVAL)
				return hb_err(-EINVAL, "%s is not mounted", real);
			if (r < 0)
				return hb_err(r, "unmounting %s (in use?)", real);
		}
	}
	/* Wait for the fs process to finish (it flushes the upper directory). */
	if (have_info) {
		for (int i = 0; i < 1000 && proc_alive(mi.pid); i++)
			usleep(10000);
		if (!proc_alive(mi.pid)) {
			unlink(info);
			unlink(sock);
		}
	}
	return 0;
}
