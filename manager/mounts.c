/* Mounts: the sandbox's file system view, built in its own mount namespace.
 *
 * The root directory is bind-mounted onto itself, the child chdir()s into it
 * and every later target is a path relative to it, so nothing needs string
 * building (the child may not allocate).  Inside the root: a fresh /proc
 * (with /proc/sys and friends read-only and /proc/kcore-like files masked),
 * a small tmpfs /dev holding bind mounts of the host's harmless character
 * devices, its own devpts instance and /dev/shm (never /dev/fuse, and no
 * block device: device nodes cannot be created in a user namespace anyway),
 * a read-only sysfs of the sandbox's own network namespace (absent with host
 * networking, whose sysfs the sandbox does not own), /tmp on tmpfs, and the
 * read-only binds of the spec.  Then pivot_root and detach the host's tree.
 *
 * A mount target that exists as a symlink is refused: an image could
 * otherwise point /dev at a host path and have a tmpfs mounted there (in the
 * sandbox's namespace only, but its view would then be wrong).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

#define SANDBOX_PTYS_MAX "64" /* terminals a sandbox may hold at once */

/* The host devices a sandbox gets (bind mounts: mknod is impossible in a
 * user namespace, and a bind keeps the host node's own permissions). */
static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

/* /proc entries that leak or change host state: made read-only, or hidden
 * under /dev/null (files) — as Docker does. */
static const char *const proc_readonly[] = { "proc/sys", "proc/sysrq-trigger", "proc/irq",
					     "proc/bus", "proc/fs" };
static const char *const proc_masked[] = { "proc/kcore", "proc/keys", "proc/timer_list",
					   "proc/sched_debug", "proc/latency_stats" };

/* Make directory rel (relative to the cwd, the new root); an existing
 * directory is fine, a symlink or anything else is refused. */
static int ensure_dir(struct child_ctx *c, const char *rel)
{
	if (mkdir(rel, 0755) < 0 && errno != EEXIST)
		return child_err(c, -errno, "mkdir", rel);
	struct stat st;
	if (lstat(rel, &st) < 0)
		return child_err(c, -errno, "lstat", rel);
	if (!S_ISDIR(st.st_mode))
		return child_err(c, -ENOTDIR, "mount target is not a directory", rel);
	return 0;
}

static int ensure_file(struct child_ctx *c, const char *rel)
{
	int fd = open(rel, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
	if (fd < 0) {
		/* an existing directory or device is fine as a bind target of its kind */
		struct stat st;
		if (errno == EISDIR || (lstat(rel, &st) == 0 && !S_ISLNK(st.st_mode)))
			return 0;
		return child_err(c, -errno, "create mount target", rel);
	}
	close(fd);
	return 0;
}

/* mkdir -p of an absolute inside path, relative to the cwd, refusing
 * symlinked components.  The last component is a directory or, with
 * as_file, an empty file.  Uses buf (PATH_MAX) to cut the path. */
static int ensure_path(struct child_ctx *c, const char *abs, int as_file, char *buf)
{
	while (*abs == '/')
		abs++;
	size_t len = child_strlcpy(buf, abs, PATH_MAX);
	if (len == 0)
		return child_err(c, -EINVAL, "bind target is the root", NULL);
	for (size_t i = 0; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		int r = (saved == '\0' && as_file) ? ensure_file(c, buf) : ensure_dir(c, buf);
		buf[i] = saved;
		if (r < 0)
			return r;
	}
	return 0;
}

/* The flags a read-only remount must keep: in a user namespace the kernel
 * refuses to clear nosuid/nodev/noexec/atime flags locked by the host. */
static unsigned long locked_flags(const char *rel)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(rel, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int bind_readonly(struct child_ctx *c, const char *src, const char *rel, unsigned long extra)
{
	if (mount(src, rel, NULL, MS_BIND | MS_REC, NULL) < 0)
		return child_err(c, -errno, "bind mount", rel);
	if (mount(NULL, rel, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(rel) | extra,
		  NULL) < 0)
		return child_err(c, -errno, "remount read-only", rel);
	return 0;
}

static int setup_proc(struct child_ctx *c)
{
	int r;
	if ((r = ensure_dir(c, "proc")) < 0)
		return r;
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return child_err(c, -errno, "mount proc", NULL);
	for (size_t i = 0; i < sizeof(proc_readonly) / sizeof(proc_readonly[0]); i++) {
		const char *p = proc_readonly[i];
		if (access(p, F_OK) < 0)
			continue;
		if ((r = bind_readonly(c, p, p, MS_NOSUID | MS_NODEV | MS_NOEXEC)) < 0)
			return r;
	}
	for (size_t i = 0; i < sizeof(proc_masked) / sizeof(proc_masked[0]); i++) {
		const char *p = proc_masked[i];
		if (access(p, F_OK) < 0)
			continue;
		if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
			return child_err(c, -errno, "mask", p);
	}
	return 0;
}

static int setup_dev(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	int r;
	if ((r = ensure_dir(c, "dev")) < 0)
		return r;
	if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m") < 0)
		return child_err(c, -errno, "mount tmpfs", "/dev");
	char rel[32], host[32];
	for (size_t i = 0; i < sizeof(dev_nodes) / sizeof(dev_nodes[0]); i++) {
		child_strlcpy(rel, "dev/", sizeof(rel));
		child_strlcpy(rel + 4, dev_nodes[i], sizeof(rel) - 4);
		child_strlcpy(host, "/dev/", sizeof(host));
		child_strlcpy(host + 5, dev_nodes[i], sizeof(host) - 5);
		if ((r = ensure_file(c, rel)) < 0)
			return r;
		if (mount(host, rel, NULL, MS_BIND, NULL) < 0)
			return child_err(c, -errno, "bind device", host);
	}
	if ((r = ensure_dir(c, "dev/pts")) < 0)
		return r;
	/* gid=5 (tty) only when the map covers it: an unmapped gid is refused.
	 * max: every devpts instance but the host's first draws on one pool
	 * (kernel.pty.max less kernel.pty.reserve, 3072 by default), and a
	 * sandbox that took all of it left every other sandbox (and container)
	 * without a terminal. */
	const char *ptsopt = s->id_count > 5 ?
				     "newinstance,ptmxmode=0666,mode=0620,max=" SANDBOX_PTYS_MAX ",gid=5" :
				     "newinstance,ptmxmode=0666,mode=0620,max=" SANDBOX_PTYS_MAX;
	if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, ptsopt) < 0)
		return child_err(c, -errno, "mount devpts", NULL);
	if (symlink("pts/ptmx", "dev/ptmx") < 0)
		return child_err(c, -errno, "symlink", "/dev/ptmx");
	if ((r = ensure_dir(c, "dev/shm")) < 0)
		return r;
	if (mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0)
		return child_err(c, -errno, "mount tmpfs", "/dev/shm");
	static const char *const links[][2] = {
		{ "/proc/self/fd", "dev/fd" },
		{ "/proc/self/fd/0", "dev/stdin" },
		{ "/proc/self/fd/1", "dev/stdout" },
		{ "/proc/self/fd/2", "dev/stderr" },
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		if (symlink(links[i][0], links[i][1]) < 0)
			return child_err(c, -errno, "symlink", links[i][1]);
	}
	return 0;
}

static int setup_sys(struct child_ctx *c)
{
	int r;
	if ((r = ensure_dir(c, "sys")) < 0)
		return r;
	if (c->spec->net == SANDBOX_NET_HOST)
		return 0; /* left empty: the host's sysfs is not the sandbox's to see */
	if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return child_err(c, -errno, "mount sysfs", NULL);
	return 0;
}

static int setup_tmp(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	int r;
	if (!s->tmp_bytes)
		return 0;
	if ((r = ensure_dir(c, "tmp")) < 0)
		return r;
	/* "size=" + decimal: built by hand (no snprintf in the child) */
	char opt[64] = "mode=1777,size=";
	size_t n = strlen(opt);
	char digits[24];
	int nd = 0;
	uint64_t v = s->tmp_bytes;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && nd < (int)sizeof(digits));
	while (nd > 0 && n + 1 < sizeof(opt))
		opt[n++] = digits[--nd];
	opt[n] = '\0';
	if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opt) < 0)
		return child_err(c, -errno, "mount tmpfs", "/tmp");
	return 0;
}

static int setup_binds(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	char buf[PATH_MAX];
	for (unsigned i = 0; i < s->n_binds; i++) {
		const struct sandbox_bind *b = &s->binds[i];
		struct stat st;
		if (stat(b->host, &st) < 0)
			return child_err(c, -errno, "bind source", b->host);
		int r = ensure_path(c, b->inside, !S_ISDIR(st.st_mode), buf);
		if (r < 0)
			return r;
		const char *rel = b->inside;
		while (*rel == '/')
			rel++;
		if ((r = bind_readonly(c, b->host, rel, 0)) < 0)
			return r;
	}
	return 0;
}

int mounts_child_setup(struct child_ctx *c)
{
	const char *root = c->spec->rootdir;
	int r;

	/* Nothing mounted here may propagate back to the host; host unmounts
	 * (a FUSE root going away) still propagate in. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return child_err(c, -errno, "make / rslave", NULL);
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		return child_err(c, -errno, "bind root", root);
	if (chdir(root) < 0)
		return child_err(c, -errno, "chdir root", root);
	if ((r = setup_proc(c)) < 0 || (r = setup_dev(c)) < 0 || (r = setup_sys(c)) < 0 ||
	    (r = setup_tmp(c)) < 0 || (r = setup_binds(c)) < 0)
		return r;
	/* pivot_root(".", "."): the old root ends up on top of the new one and
	 * is detached right away; nothing of the host's tree stays reachable. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return child_err(c, -errno, "pivot_root", root);
	if (umount2(".", MNT_DETACH) < 0)
		return child_err(c, -errno, "detach old root", NULL);
	if (chdir("/") < 0)
		return child_err(c, -errno, "chdir /", NULL);
	return 0;
}
