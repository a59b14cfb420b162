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

int sbx_open_inside(struct hbd *d, struct sbx *s, const char *path, int flags)
{
	/* An open for data must not block: a FIFO (or anything else that waits
	 * for a peer) made by the sandbox would hang the daemon while it holds
	 * the sandbox's lock.  Only files and directories are for data. */
	bool data = !(flags & (O_PATH | O_DIRECTORY));
	int r = 0, rootfd, fd;
	struct stat st;

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

/* path's parent into parent and its last component, which must be a plain
 * name, into base. */
static int split_path(const char *path, char *parent, size_t psize, char *base, size_t size)
{
	size_t n = path ? strlen(path) : 0;
	const char *slash;

	if (!path || path[0] != '/')
		return hb_err(-EINVAL, "path '%s' inside the sandbox must be absolute",
			      path ? path : "");
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= psize)
		return hb_err(-ENAMETOOLONG, "path too long");
	memcpy(parent, path, n);
	parent[n] = 0;
	slash = strrchr(parent, '/');
	if ((size_t)snprintf(base, size, "%s", slash + 1) >= size || !*base ||
	    !strcmp(base, ".") || !strcmp(base, ".."))
		return hb_err(-EINVAL, "'%s' does not name an entry to create", path);
	parent[slash == parent ? 1 : (size_t)(slash - parent)] = 0;
	return 0;
}

/* The parent directory of path inside the sandbox (an O_PATH fd), checked
 * to be a place to write in, and the last component, which must be a plain
 * name. */
static int open_parent(struct hbd *d, struct sbx *s, const char *path, char *base,
		       size_t size)
{
	char parent[PATH_MAX];
	int rootfd, fd, r;

	if ((r = split_path(path, parent, sizeof(parent), base, size)) < 0)
		return r;
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

/* --- uploads ---
 *
 * A file is written under a temporary name in its destination's directory,
 * UPLOAD_TEMP_PREFIX and a random id, created 0600 as the sandbox's root,
 * and renamed over the destination once all of it is there: a process
 * inside reads the old file (or finds none) until the rename, then the
 * whole new one, never a part.  An upload in pieces (upload=new, upload=ID,
 * commit=1) keeps its temporary between requests; the daemon lists it under
 * the sandbox (s->uploads, under s->lock) so that only an id it handed out
 * is written to.  A failed piece removes the temporary; so do a client's
 * abort=1, the sandbox's sleep, and the next upload into the sandbox once
 * the upload got no piece for d->upload_idle_ms (a client killed between
 * pieces).  A daemon killed with uploads in progress leaves their
 * temporaries, recognisable by their name. */
#define UPLOAD_TEMP_PREFIX ".hiberbox-upload."

struct sbx_pending_upload {
	struct sbx_pending_upload *next;
	char id[SBX_UPLOAD_ID_BYTES];
	char *path;
	mode_t mode;
	uint64_t last_ns;
};

static void temp_name(const char *id, char *out, size_t size)
{
	snprintf(out, size, UPLOAD_TEMP_PREFIX "%s", id);
}

static void pending_free(struct sbx_pending_upload *p)
{
	if (p) {
		free(p->path);
		free(p);
	}
}

/* Take the pending upload id of path off s's list; NULL, with the error
 * (-ENOENT) set, if there is none. */
static struct sbx_pending_upload *pending_take(struct sbx *s, const char *id, const char *path)
{
	for (struct sbx_pending_upload **pp = &s->uploads; *pp; pp = &(*pp)->next) {
		struct sbx_pending_upload *p = *pp;

		if (!strcmp(p->id, id) && !strcmp(p->path, path)) {
			*pp = p->next;
			p->next = NULL;
			return p;
		}
	}
	hb_err(-ENOENT, "%s:%s: no upload %s in progress (it failed, was given up or the "
	       "sandbox slept)", s->rec.name, path, id);
	return NULL;
}

/* Remove the temporary of a pending upload, in the root rootfd.  Errors are
 * only logged: what is removed is a leftover. */
static void pending_remove_temp(struct sbx *s, int rootfd, const struct sbx_pending_upload *p,
				const char *why)
{
	char parent[PATH_MAX], base[NAME_MAX + 1], tmp[NAME_MAX + 1];
	struct stat st;
	int dirfd;

	if (split_path(p->path, parent, sizeof(parent), base, sizeof(base)) < 0 ||
	    (dirfd = resolve_in(rootfd, parent, O_PATH | O_DIRECTORY, 0, 0)) < 0) {
		hb_err_clear();
		return;
	}
	temp_name(p->id, tmp, sizeof(tmp));
	if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    unlinkat(dirfd, tmp, 0) == 0)
		fprintf(stderr, "hiberboxd: %s: removed %s/%s of an upload to %s (%s)\n",
			s->rec.name, parent, tmp, p->path, why);
	close(dirfd);
}

/* Drop the pending uploads that got no piece for longer than idle_ns (all
 * of them with 0), removing their temporaries while the sandbox runs. */
static void drop_uploads(struct sbx *s, uint64_t idle_ns, const char *why)
{
	struct sbx_pending_upload **pp = &s->uploads;
	uint64_t now = now_ns();
	int rootfd = -1;

	while (*pp) {
		struct sbx_pending_upload *p = *pp;

		if (idle_ns && now - p->last_ns <= idle_ns) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (rootfd < 0 && s->sb)
			rootfd = sandbox_root_open(s->sb);
		if (rootfd >= 0)
			pending_remove_temp(s, rootfd, p, why);
		pending_free(p);
	}
	if (rootfd >= 0)
		close(rootfd);
	hb_err_clear();
}

void sbx_uploads_drop_locked(struct sbx *s, const char *why)
{
	drop_uploads(s, 0, why);
}

void sbx_uploads_free(struct sbx *s)
{
	struct sbx_pending_upload *p;

	while ((p = s->uploads)) {
		s->uploads = p->next;
		pending_free(p);
	}
}

static bool upload_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n != SBX_UPLOAD_ID_BYTES - 1)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* The destination name as it is before the rename: nothing, or a regular
 * file (whose owner the new file gets).  A directory, a symlink or a device
 * is refused, as writing into it was before. */
static int destination_check(int dirfd, const char *base, struct stat *st, bool *exists)
{
	*exists = false;
	if (fstatat(dirfd, base, st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	*exists = true;
	return S_ISREG(st->st_mode) ? 0 : S_ISLNK(st->st_mode) ? -ELOOP : -EINVAL;
}

int sbx_upload_open(struct hbd *d, struct sbx *s, const struct sbx_upload_req *req,
		    struct sbx_upload *u)
{
	const int wr = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
	const char *path = req->path;
	uint8_t rnd[(SBX_UPLOAD_ID_BYTES - 1) / 2];
	struct sbx_pending_upload *p = NULL;
	struct as_root saved;
	struct stat st;
	bool exists;
	int r = 0;

	memset(u, 0, sizeof(*u));
	u->fd = -1;
	u->path = path;
	u->mode = req->mode & 07777;
	u->commit = !req->upload || req->commit;
	if (req->upload && req->append)
		return hb_err(-EINVAL, "append=1 and upload= do not go together");
	if (!req->upload && (req->commit || req->abort))
		return hb_err(-EINVAL, "commit=1 and abort=1 go with upload=ID");
	if (req->upload && strcmp(req->upload, "new") && !upload_id_valid(req->upload))
		return hb_err(-EINVAL, "upload must be 'new' or an id the daemon gave, not '%.80s'",
			      req->upload);
	if (req->abort)
		return hb_err(-EINVAL, "abort=1 is no upload (sbx_upload_abort)");
	if ((u->dirfd = open_parent(d, s, path, u->base, sizeof(u->base))) < 0)
		return u->dirfd;
	if (req->append) {
		/* older clients' pieces: added to the file itself, as it is */
		if (fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			r = -EINVAL;
		else if ((u->fd = openat(u->dirfd, u->base, wr | O_APPEND)) < 0)
			r = errno == ENXIO ? -EINVAL : -errno;
		else if (fstat(u->fd, &st) < 0)
			r = -errno;
		else if (!S_ISREG(st.st_mode))
			r = -EINVAL;
		u->commit = false;
		goto opened;
	}
	u->temp = true;
	if (req->upload && strcmp(req->upload, "new")) {
		/* the next piece of an upload this daemon began */
		if (!(p = pending_take(s, req->upload, path))) {
			r = -ENOENT;
			goto fail;
		}
		snprintf(u->id, sizeof(u->id), "%s", p->id);
		u->mode = p->mode;
		pending_free(p);
		temp_name(u->id, u->tmp, sizeof(u->tmp));
		u->created = true;
		if ((u->fd = openat(u->dirfd, u->tmp, wr | O_APPEND)) < 0 && errno == ENOENT) {
			r = hb_err(-ENOENT, "%s:%s: the upload's temporary %s is gone", s->rec.name,
				   path, u->tmp);
			goto fail;
		} else if (u->fd < 0)
			r = -errno;
		else if (fstat(u->fd, &st) < 0)
			r = -errno;
		else if (!S_ISREG(st.st_mode))
			r = -EINVAL;
		goto opened;
	}
	/* uploads whose client went between pieces */
	drop_uploads(s, (uint64_t)d->upload_idle_ms * 1000000u, "no piece came for too long");
	/* refused before the body is written, not after */
	if ((r = destination_check(u->dirfd, u->base, &st, &exists)) < 0)
		goto opened;
	if ((r = random_bytes(rnd, sizeof(rnd))) < 0)
		goto opened;
	hex_format(rnd, sizeof(rnd), u->id);
	temp_name(u->id, u->tmp, sizeof(u->tmp));
	if ((r = as_sandbox_root(s, &saved)) < 0)
		goto fail;
	u->fd = openat(u->dirfd, u->tmp, wr | O_CREAT | O_EXCL, 0600);
	r = u->fd < 0 ? -errno : 0;
	as_daemon(&saved);
	u->created = r == 0;
	/* the sandbox's root's own (on its root filesystem the fs presents
	 * the daemon's own uid as the overflow id) */
	if (r == 0 && fchown(u->fd, s->rec.id_base, s->rec.id_base) < 0)
		r = -errno;
opened:
	if (r == 0 && fcntl(u->fd, F_SETFL, fcntl(u->fd, F_GETFL) & ~O_NONBLOCK) < 0)
		r = -errno;
	if (r == 0)
		return 0;
	r = r == -EINVAL ? hb_err(r, "%s:%s: not a regular file", s->rec.name, path) :
			   hb_err(r, "%s:%s: %s", s->rec.name, path, strerror(-r));
fail:
	sbx_upload_close(s, u, r);
	return r;
}

int sbx_upload_abort(struct hbd *d, struct sbx *s, const char *path, const char *id)
{
	char base[NAME_MAX + 1], tmp[NAME_MAX + 1];
	struct sbx_pending_upload *p;
	struct stat st;
	int dirfd;

	if (!id || !upload_id_valid(id))
		return hb_err(-EINVAL, "abort=1 needs upload=ID, an id the daemon gave");
	if ((dirfd = open_parent(d, s, path, base, sizeof(base))) < 0)
		return dirfd;
	if (!(p = pending_take(s, id, path))) {
		close(dirfd);
		return -ENOENT;
	}
	temp_name(p->id, tmp, sizeof(tmp));
	if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
		unlinkat(dirfd, tmp, 0);
	pending_free(p);
	close(dirfd);
	return 0;
}

/* The temporary, complete, becomes the destination: with the old file's
 * owner (or the sandbox's root's) and the mode asked for. */
static int upload_commit(struct sbx *s, struct sbx_upload *u)
{
	struct as_root saved;
	struct stat st;
	bool exists;
	int r;

	if ((r = destination_check(u->dirfd, u->base, &st, &exists)) < 0)
		return r == -EINVAL ? hb_err(r, "%s:%s: not a regular file", s->rec.name, u->path) :
				      hb_err(r, "%s:%s: %s", s->rec.name, u->path, strerror(-r));
	if (exists && fchown(u->fd, st.st_uid, st.st_gid) < 0)
		return hb_err_sys(-errno, "%s:%s: keeping its owner", s->rec.name, u->path);
	if (fchmod(u->fd, u->mode) < 0)
		return hb_err_sys(-errno, "%s:%s: chmod", s->rec.name, u->path);
	if ((r = as_sandbox_root(s, &saved)) < 0)
		return r;
	r = renameat(u->dirfd, u->tmp, u->dirfd, u->base) < 0 ? -errno : 0;
	as_daemon(&saved);
	if (r < 0)
		return r == -EISDIR || r == -ENOTDIR ?
			       hb_err(-EINVAL, "%s:%s: not a regular file", s->rec.name, u->path) :
			       hb_err(r, "%s:%s: %s", s->rec.name, u->path, strerror(-r));
	u->renamed = true;
	return 0;
}

int sbx_upload_close(struct sbx *s, struct sbx_upload *u, int r)
{
	struct stat mine, there;

	if (r == 0 && u->temp && u->commit)
		r = upload_commit(s, u);
	if (r == 0 && u->temp && !u->commit) {
		/* more pieces to come: listed until the last one */
		struct sbx_pending_upload *p = calloc(1, sizeof(*p));

		if (!p || !(p->path = strdup(u->path))) {
			free(p);
			r = hb_err(-ENOMEM, "out of memory");
		} else {
			snprintf(p->id, sizeof(p->id), "%s", u->id);
			p->mode = u->mode;
			p->last_ns = now_ns();
			p->next = s->uploads;
			s->uploads = p;
		}
	}
	/* a failed (or given up) upload leaves nothing: its temporary is
	 * removed if its name still holds it (one that cannot be opened any
	 * more is removed by name: it holds no file the sandbox wants) */
	if (r < 0 && u->temp && u->created && !u->renamed && u->tmp[0] &&
	    (u->fd < 0 || (fstat(u->fd, &mine) == 0 &&
			   fstatat(u->dirfd, u->tmp, &there, AT_SYMLINK_NOFOLLOW) == 0 &&
			   mine.st_dev == there.st_dev && mine.st_ino == there.st_ino)))
		unlinkat(u->dirfd, u->tmp, 0);
	if (u->fd >= 0)
		close(u->fd);
	if (u->dirfd >= 0)
		close(u->dirfd);
	u->fd = u->dirfd = -1;
	return r;
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
	int fd = sbx_open_inside(d, s, path, O_PATH), r;

	if (fd < 0)
		return fd;
	r = entry_json(fd, "", NULL, out);
	close(fd);
	return r < 0 ? hb_err(r, "%s:%s: %s", s->rec.name, path, strerror(-r)) : 0;
}

int sbx_dir_list(struct hbd *d, struct sbx *s, const char *path, json_t **out)
{
	int fd = sbx_open_inside(d, s, path, O_RDONLY | O_DIRECTORY), r = 0;
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
