/* Paths inside a sandbox for the files endpoint: opening a file to read or
 * write, and stat, list, mkdir and symlink, the pieces `hiberbox cp` needs to
 * copy a tree in or out one request per entry.
 *
 * Paths resolve in the sandbox's own mount namespace, under its init's
 * /proc/PID/root (openat2 with RESOLVE_IN_ROOT: '..' and symlinks stay
 * inside), so what the API reads and writes is what the sandbox's processes
 * see: its /tmp and /dev/shm are tmpfs mounts of that namespace, which the
 * daemon's own view of the sandbox's root filesystem (the FUSE mount) hides
 * files under.  The kernel's filesystems in there (/proc, /sys, /dev/pts)
 * are the host's kernel answering with the daemon's privileges: their files
 * are neither read nor written, and their directories list as empty; nothing
 * is written under /dev but in /dev/shm.  What is created is changed through
 * an fd of the new entry, never by name: the sandbox runs meanwhile and may
 * swap a name for a symlink between two calls. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manager/daemon/daemon-int.h"
#include "manager/sandbox.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/json-text.h"

/* The root of the sandbox's mount namespace (a sleeping sandbox is woken:
 * only a running one has its mounts). */
static int inside_root(struct hbd *d, struct sbx *s)
{
	int r = sbx_wake_locked(d, s, NULL);

	if (r < 0)
		return r;
	if (!s->sb)
		return hb_err(-ESRCH, "sandbox %s is not running", s->rec.name);
	r = sandbox_root_open(s->sb);
	return r < 0 ? hb_err_ctx(r, "%s", s->rec.name) : r;
}

static int resolve_in(int rootfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve,
	};
	int fd;

	while (*path == '/')
		path++;
	fd = (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

/* A filesystem of the kernel's own (procfs, sysfs, devpts, cgroups...):
 * its files are the host kernel's interfaces, which the daemon reaches with
 * privileges the sandbox does not have (/proc/kcore, /sys/firmware). */
static bool on_kernel_fs(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return true; /* unknown: refused */
	switch ((unsigned long)sf.f_type) {
	case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case DEVPTS_SUPER_MAGIC:
	case CGROUP_SUPER_MAGIC: case CGROUP2_SUPER_MAGIC: case SECURITYFS_MAGIC:
	case DEBUGFS_MAGIC: case TRACEFS_MAGIC: case BPF_FS_MAGIC: case PSTOREFS_MAGIC:
	case EFIVARFS_MAGIC: case SELINUX_MAGIC: case SMACK_MAGIC: case BINFMTFS_MAGIC:
	case NSFS_MAGIC:
		return true;
	default:
		return false;
	}
}

int sbx_open_inside(struct hbd *d, struct sbx *s, const char *path, int flags, mode_t mode)
{
	/* An open for data must not block: a FIFO (or anything else that waits
	 * for a peer) made by the sandbox would hang the daemon while it holds
	 * the sandbox's lock.  Only files and directories are for data. */
	bool data = !(flags & (O_PATH | O_DIRECTORY));
	int r = 0, rootfd, fd;
	struct stat st;

	(void)mode;
	if (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC))
		return hb_err(-EINVAL, "sbx_open_inside is for reading (sbx_upload_open writes)");
	if (!path || path[0] != '/')
		return hb_err(-EINVAL, "path '%s' inside the sandbox must be absolute",
			      path ? path : "");
	if ((rootfd = inside_root(d, s)) < 0)
		return rootfd;
	fd = resolve_in(rootfd, path, data ? flags | O_NONBLOCK | O_NOCTTY : flags, 0, 0);
	close(rootfd);
	if (fd < 0)
		return hb_err(fd, "%s:%s: %s", s->rec.name, path, strerror(-fd));
	if (data) {
		if (fstat(fd, &st) < 0)
			r = hb_err_sys(-errno, "%s:%s", s->rec.name, path);
		else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
			r = hb_err(-EINVAL, "%s:%s: not a regular file", s->rec.name, path);
		else if (on_kernel_fs(fd))
			r = hb_err(-EPERM, "%s:%s: files of /proc, /sys and the kernel's other "
				   "filesystems are not copied", s->rec.name, path);
		else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
			r = hb_err_sys(-errno, "%s:%s", s->rec.name, path);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	s->last_activity_ns = now_ns();
	return fd;
}

/* Whether the directory dirfd (under rootfd) is a place the API writes in:
 * not a kernel filesystem, not the sandbox's /dev (whose nodes are the
 * host's devices) but its /dev/shm, a mount of its own. */
static int writable_place(struct sbx *s, int rootfd, int dirfd, const char *path)
{
	struct stat dir, dev;
	int devfd;
	bool in_dev = false;

	if (fstat(dirfd, &dir) < 0)
		return hb_err_sys(-errno, "%s:%s", s->rec.name, path);
	devfd = resolve_in(rootfd, "/dev", O_PATH | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
	if (devfd >= 0) {
		in_dev = fstat(devfd, &dev) == 0 && dev.st_dev == dir.st_dev;
		close(devfd);
	}
	if (in_dev || on_kernel_fs(dirfd))
		return hb_err(-EPERM, "%s:%s: nothing is written under /proc, /sys or /dev "
			      "(but /dev/shm)", s->rec.name, path);
	return 0;
}

/* Creating in the sandbox's own mounts (its /tmp, /dev/shm: filesystems of
 * its user namespace) is refused (EOVERFLOW) to an owner the namespace does
 * not map, and the daemon's uid 0 is not mapped there.  So entries are made
 * as the sandbox's root: this thread's fsuid and fsgid become its id base
 * (they belong to the thread, not the process), and the capabilities that
 * change drops from the effective set (CAP_DAC_OVERRIDE, CAP_CHOWN...) are
 * raised again, so that the daemon still writes where the sandbox's root
 * may. */
struct as_root {
	uid_t fsuid;
	gid_t fsgid;
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
};

/* Back to the daemon's own ids and capabilities. */
static void as_daemon(struct as_root *saved)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };

	syscall(SYS_setfsuid, saved->fsuid);
	syscall(SYS_setfsgid, saved->fsgid);
	syscall(SYS_capset, &hdr, saved->caps);
}

static int as_sandbox_root(const struct sbx *s, struct as_root *saved)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, saved->caps) < 0)
		return hb_err_sys(-errno, "capget");
	memcpy(caps, saved->caps, sizeof(caps));
	saved->fsgid = (gid_t)syscall(SYS_setfsgid, (gid_t)s->rec.id_base);
	saved->fsuid = (uid_t)syscall(SYS_setfsuid, (uid_t)s->rec.id_base);
	if ((uid_t)syscall(SYS_setfsuid, (uid_t)-1) != s->rec.id_base ||
	    (gid_t)syscall(SYS_setfsgid, (gid_t)-1) != s->rec.id_base) {
		syscall(SYS_setfsuid, saved->fsuid);
		syscall(SYS_setfsgid, saved->fsgid);
		return hb_err(-EPERM, "cannot act as the root of sandbox %s (uid %u)",
			      s->rec.name, s->rec.id_base);
	}
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		caps[i].effective = caps[i].permitted;
	if (syscall(SYS_capset, &hdr, caps) == 0)
		return 0;
	int r = -errno;
	as_daemon(saved);
	return hb_err(r, "raising capabilities as the root of sandbox %s: %s", s->rec.name,
		      strerror(-r));
}

/* The parent directory of path inside the sandbox (an O_PATH fd), checked
 * to be a place to write in, and the last component, which must be a plain
 * name. */
static int open_parent(struct hbd *d, struct sbx *s, const char *path, char *base,
		       size_t size)
{
	char parent[PATH_MAX];
	size_t n = path ? strlen(path) : 0;
	const char *slash;
	int rootfd, fd, r;

	if (!path || path[0] != '/')
		return hb_err(-EINVAL, "path '%s' inside the sandbox must be absolute",
			      path ? path : "");
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= sizeof(parent))
		return hb_err(-ENAMETOOLONG, "path too long");
	memcpy(parent, path, n);
	parent[n] = 0;
	slash = strrchr(parent, '/');
	if ((size_t)snprintf(base, size, "%s", slash + 1) >= size || !*base ||
	    !strcmp(base, ".") || !strcmp(base, ".."))
		return hb_err(-EINVAL, "'%s' does not name an entry to create", path);
	parent[slash == parent ? 1 : (size_t)(slash - parent)] = 0;
	if ((rootfd = inside_root(d, s)) < 0)
		return rootfd;
	fd = resolve_in(rootfd, parent, O_PATH | O_DIRECTORY, 0, 0);
	if (fd < 0) {
		close(rootfd);
		return hb_err(fd, "%s:%s: %s", s->rec.name, parent, strerror(-fd));
	}
	r = writable_place(s, rootfd, fd, path);
	close(rootfd);
	if (r < 0) {
		close(fd);
		return r;
	}
	s->last_activity_ns = now_ns();
	return fd;
}

int sbx_upload_open(struct hbd *d, struct sbx *s, const char *path, mode_t mode, bool append,
		    struct sbx_upload *u)
{
	const int wr = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
	struct as_root saved;
	struct stat st;
	int r = 0;

	u->fd = -1;
	u->created = false;
	if ((u->dirfd = open_parent(d, s, path, u->base, sizeof(u->base))) < 0)
		return u->dirfd;
	if (!append) {
		if ((r = as_sandbox_root(s, &saved)) < 0)
			goto fail;
		u->fd = openat(u->dirfd, u->base, wr | O_CREAT | O_EXCL, mode & 07777);
		r = u->fd < 0 ? -errno : 0;
		as_daemon(&saved);
		u->created = r == 0;
	}
	/* an existing file: only a regular one is opened (a FIFO would block,
	 * a device is the host's) */
	if (append || r == -EEXIST) {
		r = 0;
		if (fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
		    !S_ISLNK(st.st_mode))
			r = -EINVAL;
		else if ((u->fd = openat(u->dirfd, u->base, wr | (append ? O_APPEND : O_TRUNC))) < 0)
			r = errno == ENXIO ? -EINVAL : -errno;
		else if (fstat(u->fd, &st) < 0)
			r = -errno;
		else if (!S_ISREG(st.st_mode))
			r = -EINVAL;
	}
	if (r == 0 && fcntl(u->fd, F_SETFL, fcntl(u->fd, F_GETFL) & ~O_NONBLOCK) < 0)
		r = -errno;
	/* a new file belongs to the sandbox's root (on its root filesystem the
	 * fs presents the daemon's own uid as the overflow id) */
	if (r == 0 && u->created && fchown(u->fd, s->rec.id_base, s->rec.id_base) < 0)
		r = -errno;
	if (r == 0 && !append && fchmod(u->fd, mode & 07777) < 0)
		r = -errno;
	if (r == 0)
		return 0;
	r = r == -EINVAL ? hb_err(r, "%s:%s: not a regular file", s->rec.name, path) :
			   hb_err(r, "%s:%s: %s", s->rec.name, path, strerror(-r));
fail:
	sbx_upload_close(u, r);
	return r;
}

void sbx_upload_close(struct sbx_upload *u, int r)
{
	struct stat mine, there;

	/* a failed upload leaves no file of its own making: removed if its
	 * name still holds the file this upload made */
	if (r < 0 && u->created && u->fd >= 0 && fstat(u->fd, &mine) == 0 &&
	    fstatat(u->dirfd, u->base, &there, AT_SYMLINK_NOFOLLOW) == 0 &&
	    mine.st_dev == there.st_dev && mine.st_ino == there.st_ino)
		unlinkat(u->dirfd, u->base, 0);
	if (u->fd >= 0)
		close(u->fd);
	if (u->dirfd >= 0)
		close(u->dirfd);
	u->fd = u->dirfd = -1;
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "chardev";
	case S_IFBLK: return "blockdev";
	default: return "unknown";
	}
}

/* {"name"?, "type", "mode", "size", "mtime", "target"?} of one entry; dirfd
 * and name as for fstatat (name "" with AT_EMPTY_PATH for the fd itself). */
static int entry_json(int dirfd, const char *name, const char *label, json_t **out)
{
	struct stat st;
	json_t *j;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0)
		return -errno;
	j = json_pack("{s:s, s:i, s:I, s:I}", "type", type_name(st.st_mode), "mode",
		      (int)(st.st_mode & 07777), "size", (json_int_t)st.st_size, "mtime",
		      (json_int_t)st.st_mtim.tv_sec);
	if (!j)
		return -ENOMEM;
	/* names are bytes: "name_hex" too for one that is not UTF-8 */
	if (label)
		json_object_set_text(j, "name", label);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);

		if (n >= 0) {
			target[n] = 0;
			json_object_set_text(j, "target", target);
		}
	}
	*out = j;
	return 0;
}

int sbx_file_stat(struct hbd *d, struct sbx *s, const char *path, json_t **out)
{
	/* the last component is followed, as stat(2) does */
	int fd = sbx_open_inside(d, s, path, O_PATH, 0), r;

	if (fd < 0)
		return fd;
	r = entry_json(fd, "", NULL, out);
	close(fd);
	return r < 0 ? hb_err(r, "%s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}

int sbx_dir_list(struct hbd *d, struct sbx *s, const char *path, json_t **out)
{
	int fd = sbx_open_inside(d, s, path, O_RDONLY | O_DIRECTORY, 0), r = 0;
	json_t *entries;
	struct dirent *de;
	DIR *dir;

	if (fd < 0)
		return fd;
	if (!(dir = fdopendir(fd))) {
		r = -errno;
		close(fd);
		return hb_err(r, "listing %s:%s", s->rec.name, path);
	}
	entries = json_array();
	/* a kernel filesystem lists as empty, as its mount point looks from
	 * outside: copying a sandbox's / out takes /proc and /sys as empty
	 * directories rather than the host kernel's files */
	bool hidden = on_kernel_fs(dirfd(dir));
	while (entries && !hidden && (de = readdir(dir))) {
		json_t *e;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		r = entry_json(dirfd(dir), de->d_name, de->d_name, &e);
		if (r == -ENOENT) { /* deleted since readdir: not there any more */
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		json_array_append_new(entries, e);
	}
	closedir(dir);
	if (!entries)
		return hb_err(-ENOMEM, "out of memory");
	if (r < 0) {
		json_decref(entries);
		return hb_err(r, "listing %s:%s", s->rec.name, path);
	}
	if (!(*out = json_pack("{s:o}", "entries", entries)) ||
	    json_object_set_text(*out, "path", path) < 0) {
		json_decref(*out);
		return hb_err(-ENOMEM, "out of memory");
	}
	return 0;
}

int sbx_make_dir(struct hbd *d, struct sbx *s, const char *path, mode_t mode)
{
	char base[NAME_MAX + 1];
	int pfd = open_parent(d, s, path, base, sizeof(base)), fd, r = 0;
	bool created;

	struct as_root saved;

	if (pfd < 0)
		return pfd;
	if ((r = as_sandbox_root(s, &saved)) < 0) {
		close(pfd);
		return r;
	}
	created = mkdirat(pfd, base, 0700) == 0;
	if (!created && errno != EEXIST)
		r = -errno;
	as_daemon(&saved);
	fd = r ? -1 : openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (!r && fd < 0)
		r = errno == ENOTDIR || errno == ELOOP ? -EEXIST : -errno;
	/* a new directory belongs to the sandbox's root, like a copied-in file */
	if (!r && created && fchown(fd, s->rec.id_base, s->rec.id_base) < 0)
		r = -errno;
	if (!r && fchmod(fd, mode & 07777) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	close(pfd);
	if (r == -EEXIST)
		return hb_err(r, "%s:%s exists and is not a directory", s->rec.name, path);
	return r < 0 ? hb_err(r, "mkdir %s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}

int sbx_make_symlink(struct hbd *d, struct sbx *s, const char *path, const void *target,
		     size_t len)
{
	char base[NAME_MAX + 1], t[PATH_MAX];
	struct as_root saved;
	int pfd, r = 0;
	struct stat st;

	if (len == 0 || len >= sizeof(t) || memchr(target, 0, len))
		return hb_err(-EINVAL, "a symlink target is 1 to %zu bytes without NUL",
			      sizeof(t) - 1);
	memcpy(t, target, len);
	t[len] = 0;
	if ((pfd = open_parent(d, s, path, base, sizeof(base))) < 0)
		return pfd;
	if ((r = as_sandbox_root(s, &saved)) < 0) {
		close(pfd);
		return r;
	}
	if (symlinkat(t, pfd, base) < 0) {
		r = -errno;
		/* replace a symlink (copying a tree again), nothing else */
		if (r == -EEXIST && fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode) && unlinkat(pfd, base, 0) == 0)
			r = symlinkat(t, pfd, base) < 0 ? -errno : 0;
	}
	as_daemon(&saved);
	if (!r && fchownat(pfd, base, s->rec.id_base, s->rec.id_base, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	close(pfd);
	return r < 0 ? hb_err(r, "symlink %s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}
