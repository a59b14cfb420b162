/* Randomized model test: the same random sequence of file operations applied
 * to a hiberbox mount and to a native directory must give the same results
 * (return values, errno, data read, stat fields) and the same final tree.
 *
 * usage: fs-model MOUNT_DIR NATIVE_DIR SEED NOPS
 *   NOPS 0 only compares the two trees (after a commit and remount).
 * Both directories start with the same content (a snapshot of a copy).
 * Prints the first differences and exits 1 if any.
 *
 * Crash testing (tests/fs/crash.sh) counts the system calls made on the
 * first directory ("calls"); the random sequence does not depend on results,
 * so a seed names the same calls on any tree:
 *   fs-model --progress FILE MOUNT_DIR NATIVE_DIR SEED NOPS
 *     as above, and after each call on the mount returns, FILE holds the
 *     number of calls returned.  A call failing with ENOTCONN/ECONNABORTED
 *     (the fs process was killed; ECANCELED, from a mount on io_uring, in
 *     the moment before the kernel sees the connection gone) is not
 *     counted: exit 3 at once (1 if the mount differed before).
 *   fs-model --stop-after N DIR SCRATCH SEED NOPS
 *     the same sequence on two native trees, stopped before call N+1 on DIR:
 *     DIR is then the tree a mount must show after N acknowledged calls.
 *     Prints "next-write" if call N+1 writes file data, else "next-other".
 *   fs-model --committed MOUNT_DIR OTHER_DIR SEED 0
 *     compares a mount of a commit with the tree committed: hard links of
 *     symlinks and special files are separate entries in a commit (fs/README.md,
 *     limits), so only regular files' link counts and links are compared.
 *   fs-model --check MOUNT_DIR TREE_N [TREE_N1 [torn]]
 *     MOUNT_DIR must equal TREE_N or TREE_N1 as a whole (the call in flight
 *     at the kill landed wholly or not at all); with "torn" (the call in
 *     flight wrote data) also TREE_N with that file's data partly written:
 *     every byte and the size as in TREE_N or in TREE_N1.  Prints which.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#define NFDS 4
#define MAX_FILE (320 * 1024)

static const char *paths[] = {
	"a", "b", "c", "d0", "d1", "d0/a", "d0/b", "d0/d2", "d0/d2/a", "d1/a", "d1/b",
	"d1/d3", "d1/d3/x", "lower/f1", "lower/f2", "lower/sub", "lower/sub/g", "lower/big",
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static const char *roots[3]; /* roots[2]: TREE_N1 of a torn --check */
static int fds[2][NFDS];
static uint64_t rng;
static int failures;
static unsigned long step;
static char *wbuf, *rbuf[3];
static int quiet;
static bool committed; /* --committed */

/* Call counting for crash tests (see the top). */
enum { K_OTHER, K_WRITE };
static int progress_fd = -1;
static long long stop_after = -1;
static unsigned long ncalls;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned pick(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static void full(char *out, int side, const char *rel)
{
	snprintf(out, PATH_MAX, "%s/%s", roots[side], rel);
}

static void differ(const char *what, const char *detail)
{
	failures++;
	if (failures <= 30 && !quiet)
		printf("step %lu: %s: %s\n", step, what, detail);
}

/* Compare two results (value or -errno). */
static void same(const char *op, const char *arg, long long r0, long long r1)
{
	char d[PATH_MAX + 128];

	if (getenv("FS_MODEL_TRACE"))
		printf("%lu %s %s = %lld / %lld\n", step, op, arg, r0, r1);
	if (r0 == r1)
		return;
	snprintf(d, sizeof(d), "%s: mount %lld, native %lld", arg, r0, r1);
	differ(op, d);
}

#define RES(x) ({ long long _v = (long long)(x); _v < 0 ? -(long long)errno : _v; })

static void call_begin(int side, int kind)
{
	if (side == 0 && stop_after >= 0 && ncalls == (unsigned long long)stop_after) {
		printf("%s\n", kind == K_WRITE ? "next-write" : "next-other");
		exit(0);
	}
}

static bool mount_gone(void)
{
	struct statfs sf;

	return statfs(roots[0], &sf) < 0 &&
	       (errno == ENOTCONN || errno == ECONNABORTED || errno == ECANCELED);
}

/* short_count: a read or write moved fewer bytes than asked (see SYSN). */
static long long call_end(int side, long long r, bool short_count)
{
	char b[32];
	int n;

	if (side != 0)
		return r;
	if (progress_fd >= 0 &&
	    (r == -ENOTCONN || r == -ECONNABORTED || r == -ECANCELED ||
	     (short_count && mount_gone()))) {
		printf("mount gone after %lu calls (step %lu), %d differences before\n", ncalls, step,
		       failures);
		exit(failures ? 1 : 3);
	}
	ncalls++;
	n = snprintf(b, sizeof(b), "%020lu\n", ncalls);
	if (progress_fd >= 0 && pwrite(progress_fd, b, (size_t)n, 0) != n) {
		perror("fs-model: progress file");
		exit(2);
	}
	return r;
}

/* One system call on side s: result or -errno, counted (see the top). */
#define SYS(s, kind, x) ({ call_begin(s, kind); call_end(s, RES(x), false); })
/* A read or write of up to len bytes.  The kernel may send one call to the
 * fs as several requests (a read by pages; on 6.18 a write's first page alone
 * when it starts inside a page the kernel has not cached): killed between
 * them, the call returns the count of the first ones.  A short count from a
 * mount that is gone is the call in flight, not an acknowledged one: for a
 * write --check allows any part of it (torn). */
#define SYSN(s, kind, len, x)                                                    \
	({                                                                       \
		call_begin(s, kind);                                             \
		long long _n = RES(x);                                           \
		call_end(s, _n, _n >= 0 && (size_t)_n < (len));                  \
	})

static void fill(size_t len, uint64_t seed)
{
	uint64_t s = seed | 1;

	for (size_t i = 0; i < len; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		wbuf[i] = (char)(s >> 24);
	}
}

static void op_write_path(void)
{
	const char *p = paths[pick(NPATHS)];
	int flags = O_WRONLY | O_CREAT;
	size_t len = pick(70000);
	off_t off = pick(4) == 0 ? 0 : (off_t)pick(200000);
	uint64_t seed = rnd();
	long long r[2];

	if (pick(4) == 0)
		flags |= O_TRUNC;
	if (pick(5) == 0)
		flags |= O_APPEND;
	if (pick(6) == 0)
		flags |= O_EXCL;
	fill(len, seed);
	for (int s = 0; s < 2; s++) {
		char f[PATH_MAX];
		int fd;

		full(f, s, p);
		fd = (int)SYS(s, K_OTHER, open(f, flags, 0644));
		if (fd < 0) {
			r[s] = fd;
			continue;
		}
		r[s] = (flags & O_APPEND) ? SYSN(s, K_WRITE, len, write(fd, wbuf, len))
					  : SYSN(s, K_WRITE, len, pwrite(fd, wbuf, len, off));
		close(fd);
	}
	same("write", p, r[0], r[1]);
}

static long long read_all(int side, const char *p, char *out, size_t *len)
{
	char f[PATH_MAX];
	int fd;
	ssize_t n;

	full(f, side, p);
	fd = (int)SYS(side, K_OTHER, open(f, O_RDONLY));
	if (fd < 0)
		return fd;
	n = SYSN(side, K_OTHER, MAX_FILE, read(fd, out, MAX_FILE));
	close(fd);
	*len = n > 0 ? (size_t)n : 0;
	return n;
}

static void op_read_path(void)
{
	const char *p = paths[pick(NPATHS)];
	size_t l0, l1;
	long long r0 = read_all(0, p, rbuf[0], &l0), r1 = read_all(1, p, rbuf[1], &l1);

	same("read", p, r0, r1);
	if (r0 == r1 && r0 > 0 && memcmp(rbuf[0], rbuf[1], l0))
		differ("read content", p);
}

static void op_stat(void)
{
	const char *p = paths[pick(NPATHS)];
	struct stat st[2];
	long long r[2];
	char d[PATH_MAX + 200];

	for (int s = 0; s < 2; s++) {
		char f[PATH_MAX];

		full(f, s, p);
		r[s] = SYS(s, K_OTHER, lstat(f, &st[s]));
	}
	same("lstat", p, r[0], r[1]);
	if (r[0] || r[1])
		return;
	if (st[0].st_mode != st[1].st_mode || st[0].st_nlink != st[1].st_nlink ||
	    (!S_ISDIR(st[0].st_mode) && st[0].st_size != st[1].st_size) ||
	    st[0].st_uid != st[1].st_uid) {
		snprintf(d, sizeof(d), "%s: mode %o/%o nlink %lu/%lu size %lld/%lld", p,
			 st[0].st_mode, st[1].st_mode, (unsigned long)st[0].st_nlink,
			 (unsigned long)st[1].st_nlink, (long long)st[0].st_size,
			 (long long)st[1].st_size);
		differ("stat", d);
	}
}

/* call: an expression on side s's paths f (for a) and g (for b) giving a
 * result or -errno, its system calls counted. */
#define BOTH_CALLS(opname, arg, call)                                            \
	do {                                                                     \
		long long _r[2];                                                 \
		for (int s = 0; s < 2; s++) {                                    \
			char f[PATH_MAX], g[PATH_MAX];                           \
			(void)g;                                                 \
			full(f, s, a);                                           \
			full(g, s, b);                                           \
			_r[s] = (call);                                          \
		}                                                                \
		same(opname, arg, _r[0], _r[1]);                                 \
	} while (0)
/* call: one system call */
#define BOTH(opname, arg, call) BOTH_CALLS(opname, arg, SYS(s, K_OTHER, call))

/* copy_file_range of a random range of a into b (created if missing). */
static long long copy_range(int s, const char *f, const char *g, off_t off_in, off_t off_out, size_t len)
{
	int in = (int)SYS(s, K_OTHER, open(f, O_RDONLY)), out;
	long long r;

	if (in < 0)
		return in;
	out = (int)SYS(s, K_OTHER, open(g, O_WRONLY | O_CREAT, 0644));
	if (out < 0) {
		close(in);
		return out;
	}
	r = SYSN(s, K_WRITE, len, copy_file_range(in, &off_in, out, &off_out, len, 0));
	close(in);
	close(out);
	return r;
}

/* An O_TMPFILE in directory f with len bytes of wbuf, then named g. */
static long long tmpfile_named(int s, const char *f, const char *g, size_t len)
{
	char proc[64];
	int fd = (int)SYS(s, K_OTHER, open(f, O_TMPFILE | O_RDWR, 0640));
	long long r;

	if (fd < 0)
		return fd;
	/* a file without a name: a torn write of it is not seen */
	r = SYSN(s, K_OTHER, len, write(fd, wbuf, len));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (r >= 0)
		r = SYS(s, K_OTHER, linkat(AT_FDCWD, proc, AT_FDCWD, g, AT_SYMLINK_FOLLOW));
	close(fd);
	return r;
}

/* The sorted names in directory f, each followed by '/', into out.
 * 0, or -1 with errno set. */
static int list_dir(const char *f, char *out, size_t size)
{
	DIR *d = opendir(f);
	struct dirent *de;
	char *list[256];
	int n = 0, err;

	if (!d)
		return -1;
	errno = 0;
	while (n < 256 && (de = readdir(d)))
		list[n++] = strdup(de->d_name);
	err = errno;
	closedir(d);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(list[i], list[j]) > 0) {
				char *t = list[i];

				list[i] = list[j];
				list[j] = t;
			}
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		strncat(out, list[i], size - strlen(out) - 2);
		strcat(out, "/");
		free(list[i]);
	}
	errno = err;
	return err ? -1 : 0;
}

static void op_misc(void)
{
	const char *a = paths[pick(NPATHS)], *b = paths[pick(NPATHS)];
	char arg[PATH_MAX];
	unsigned size = pick(MAX_FILE);
	mode_t mode = 0600 | pick(0200);
	char val[64];
	char tgt[64];
	int xflags;

	snprintf(arg, sizeof(arg), "%s -> %s", a, b);
	switch (pick(14)) {
	case 12: {
		off_t off_in = (off_t)pick(MAX_FILE), off_out = (off_t)pick(MAX_FILE);
		size_t len = pick(MAX_FILE);

		BOTH_CALLS("copy_file_range", arg, copy_range(s, f, g, off_in, off_out, len));
		break;
	}
	case 13: {
		size_t len = pick(70000);

		fill(len, rnd());
		BOTH_CALLS("tmpfile+linkat", arg, tmpfile_named(s, f, g, len));
		break;
	}
	case 0:
		BOTH("truncate", a, truncate(f, size));
		break;
	case 1:
		BOTH("unlink", a, unlink(f));
		break;
	case 2:
		BOTH("mkdir", a, mkdir(f, 0755));
		break;
	case 3:
		BOTH("rmdir", a, rmdir(f));
		break;
	case 4:
		BOTH("rename", arg, rename(f, g));
		break;
	case 5: {
		unsigned flags = pick(2) ? 1 /* NOREPLACE */ : 2 /* EXCHANGE */;

		BOTH(flags == 1 ? "rename-noreplace" : "rename-exchange", arg,
		     syscall(SYS_renameat2, AT_FDCWD, f, AT_FDCWD, g, flags));
		break;
	}
	case 6:
		BOTH("link", arg, link(f, g));
		break;
	case 7:
		snprintf(tgt, sizeof(tgt), "target-%u", pick(100));
		BOTH("symlink", a, symlink(tgt, f));
		break;
	case 8:
		BOTH("chmod", a, chmod(f, mode));
		break;
	case 9:
		snprintf(val, sizeof(val), "value-%u", pick(1000));
		snprintf(tgt, sizeof(tgt), "user.k%u", pick(3));
		xflags = pick(3) == 0 ? XATTR_CREATE : 0;
		BOTH("setxattr", a, setxattr(f, tgt, val, strlen(val), xflags));
		break;
	case 10:
		snprintf(tgt, sizeof(tgt), "user.k%u", pick(3));
		BOTH("removexattr", a, removexattr(f, tgt));
		break;
	case 11: {
		/* directory listing */
		char names[2][4096];

		for (int s = 0; s < 2; s++) {
			char f[PATH_MAX];
			long long r;

			full(f, s, a);
			r = SYS(s, K_OTHER, list_dir(f, names[s], sizeof(names[s])));
			if (r < 0)
				snprintf(names[s], sizeof(names[s]), "error %lld", -r);
		}
		if (strcmp(names[0], names[1])) {
			char d[8300];

			snprintf(d, sizeof(d), "%s: mount [%s] native [%s]", a, names[0], names[1]);
			differ("readdir", d);
		}
		break;
	}
	}
}

/* Operations through long-lived descriptors: unlinked-open files, writes
 * after renames. */
static void op_fd(void)
{
	unsigned k = pick(NFDS);
	const char *p = paths[pick(NPATHS)];
	long long r[2];

	switch (pick(4)) {
	case 0: /* (re)open */
		for (int s = 0; s < 2; s++) {
			char f[PATH_MAX];

			if (fds[s][k] >= 0)
				close(fds[s][k]);
			full(f, s, p);
			r[s] = SYS(s, K_OTHER, open(f, O_RDWR));
			fds[s][k] = r[s] < 0 ? -1 : (int)r[s];
			r[s] = r[s] < 0 ? r[s] : 0;
		}
		same("open", p, r[0], r[1]);
		break;
	case 1: { /* write */
		size_t len = pick(20000);
		off_t off = (off_t)pick(100000);

		fill(len, rnd());
		for (int s = 0; s < 2; s++)
			r[s] = fds[s][k] < 0 ? -EBADF : SYSN(s, K_WRITE, len, pwrite(fds[s][k], wbuf, len, off));
		same("fd write", "", r[0], r[1]);
		break;
	}
	case 2: { /* read */
		off_t off = (off_t)pick(100000);

		for (int s = 0; s < 2; s++)
			r[s] = fds[s][k] < 0 ? -EBADF
					     : SYSN(s, K_OTHER, 65536, pread(fds[s][k], rbuf[s], 65536, off));
		same("fd read", "", r[0], r[1]);
		if (r[0] == r[1] && r[0] > 0 && memcmp(rbuf[0], rbuf[1], (size_t)r[0]))
			differ("fd read content", "");
		break;
	}
	case 3: { /* fstat + close */
		struct stat st[2];

		for (int s = 0; s < 2; s++) {
			r[s] = fds[s][k] < 0 ? -EBADF : SYS(s, K_OTHER, fstat(fds[s][k], &st[s]));
		}
		same("fstat", "", r[0], r[1]);
		if (!r[0] && !r[1] && (st[0].st_size != st[1].st_size || st[0].st_nlink != st[1].st_nlink))
			differ("fstat fields", "size or nlink");
		for (int s = 0; s < 2; s++) {
			if (fds[s][k] >= 0)
				close(fds[s][k]);
			fds[s][k] = -1;
		}
		break;
	}
	}
}

/* Whole-tree comparison: names, kinds, modes, sizes, contents, link counts,
 * symlink targets, user xattrs, hard-link structure. */
struct seen {
	ino_t ino[2];
	char path[256];
};
static struct seen seen_inos[4096];
static int nseen;

/* --check torn: file rel on the mount (size0 bytes) is the file of TREE_N
 * with the in-flight write partly done: its size and each byte as in TREE_N
 * (roots[1]) or in TREE_N1 (roots[2]). */
static bool torn_ok(const char *rel, off_t size0)
{
	struct stat st1, st2;
	char f[PATH_MAX];
	size_t l[3];

	full(f, 1, rel);
	if (lstat(f, &st1) < 0 || !S_ISREG(st1.st_mode))
		return false;
	full(f, 2, rel);
	if (lstat(f, &st2) < 0 || !S_ISREG(st2.st_mode))
		return false;
	if (size0 < (st1.st_size < st2.st_size ? st1.st_size : st2.st_size) ||
	    size0 > (st1.st_size > st2.st_size ? st1.st_size : st2.st_size))
		return false;
	for (int s = 0; s < 3; s++)
		if (read_all(s, rel, rbuf[s], &l[s]) < 0)
			return false;
	for (size_t i = 0; i < l[0]; i++)
		if (!(i < l[1] && rbuf[0][i] == rbuf[1][i]) && !(i < l[2] && rbuf[0][i] == rbuf[2][i]))
			return false;
	return true;
}

static void compare_tree(const char *rel)
{
	char f[2][PATH_MAX], d[PATH_MAX + 200];
	struct stat st[2];
	DIR *dir;
	struct dirent *de;
	char *names[1024];
	int n = 0;
	bool torn, links;

	for (int s = 0; s < 2; s++) {
		snprintf(f[s], PATH_MAX, "%s%s%s", roots[s], *rel ? "/" : "", rel);
		if (lstat(f[s], &st[s]) < 0) {
			snprintf(d, sizeof(d), "%s: lstat on side %d: %s", rel, s, strerror(errno));
			differ("tree", d);
			return;
		}
	}
	torn = roots[2] && S_ISREG(st[0].st_mode) && st[0].st_mode == st[1].st_mode &&
	       st[0].st_nlink == st[1].st_nlink && torn_ok(rel, st[0].st_size);
	links = committed ? S_ISREG(st[0].st_mode) : !S_ISDIR(st[0].st_mode);
	if ((st[0].st_mode != st[1].st_mode) || (links && st[0].st_nlink != st[1].st_nlink) ||
	    (S_ISREG(st[0].st_mode) && st[0].st_size != st[1].st_size && !torn)) {
		snprintf(d, sizeof(d), "%s: mode %o/%o nlink %lu/%lu size %lld/%lld", rel,
			 st[0].st_mode, st[1].st_mode, (unsigned long)st[0].st_nlink,
			 (unsigned long)st[1].st_nlink, (long long)st[0].st_size,
			 (long long)st[1].st_size);
		differ("tree", d);
		return;
	}
	if (*rel && links) {
		int i;

		for (i = 0; i < nseen; i++)
			if (seen_inos[i].ino[0] == st[0].st_ino || seen_inos[i].ino[1] == st[1].st_ino)
				break;
		if (i < nseen) {
			if (seen_inos[i].ino[0] != st[0].st_ino || seen_inos[i].ino[1] != st[1].st_ino) {
				snprintf(d, sizeof(d), "%s and %s: hard links differ", rel,
					 seen_inos[i].path);
				differ("tree", d);
			}
		} else if (nseen < 4096) {
			seen_inos[nseen].ino[0] = st[0].st_ino;
			seen_inos[nseen].ino[1] = st[1].st_ino;
			snprintf(seen_inos[nseen].path, sizeof(seen_inos[nseen].path), "%s", rel);
			nseen++;
		}
	}
	if (S_ISREG(st[0].st_mode)) {
		size_t l0, l1;
		long long r0 = read_all(0, rel, rbuf[0], &l0), r1 = read_all(1, rel, rbuf[1], &l1);

		if ((r0 != r1 || (r0 > 0 && memcmp(rbuf[0], rbuf[1], l0))) && !torn)
			differ("tree content", rel);
	} else if (S_ISLNK(st[0].st_mode)) {
		char t0[256] = "", t1[256] = "";

		if (readlink(f[0], t0, sizeof(t0) - 1) < 0 || readlink(f[1], t1, sizeof(t1) - 1) < 0 ||
		    strcmp(t0, t1))
			differ("tree symlink", rel);
	}
	if (!S_ISLNK(st[0].st_mode)) {
		char l0[1024], l1[1024];
		ssize_t n0 = llistxattr(f[0], l0, sizeof(l0)), n1 = llistxattr(f[1], l1, sizeof(l1));

		/* order may differ: compare each name's value */
		if (n0 != n1) {
			differ("tree xattr list", rel);
		} else {
			for (ssize_t o = 0; o < n0; o += (ssize_t)strlen(l0 + o) + 1) {
				char v0[256], v1[256];
				ssize_t a = lgetxattr(f[0], l0 + o, v0, sizeof(v0));
				ssize_t b = lgetxattr(f[1], l0 + o, v1, sizeof(v1));

				if (a != b || (a > 0 && memcmp(v0, v1, (size_t)a)))
					differ("tree xattr", rel);
			}
		}
	}
	if (!S_ISDIR(st[0].st_mode))
		return;
	dir = opendir(f[1]);
	if (!dir) {
		differ("tree opendir", rel);
		return;
	}
	while ((de = readdir(dir)) && n < 1024)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	closedir(dir);
	/* entries only on the mount side */
	dir = opendir(f[0]);
	if (dir) {
		while ((de = readdir(dir))) {
			char other[PATH_MAX];
			struct stat x;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(other, sizeof(other), "%s/%s", f[1], de->d_name);
			if (lstat(other, &x) < 0) {
				snprintf(d, sizeof(d), "%s/%s only on the mount", rel, de->d_name);
				differ("tree", d);
			}
		}
		closedir(dir);
	}
	for (int i = 0; i < n; i++) {
		char child[PATH_MAX];

		snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", names[i]);
		compare_tree(child);
		free(names[i]);
	}
}

/* Compares roots[0] with roots[1] (and roots[2] if torn): the number of
 * differences, printed unless quiet. */
static int compare_with(const char *tree, const char *torn_tree)
{
	roots[1] = tree;
	roots[2] = torn_tree;
	failures = 0;
	nseen = 0;
	step = 0;
	compare_tree("");
	return failures;
}

/* --check MOUNT_DIR TREE_N [TREE_N1 [torn]] (see the top). */
static int check(int argc, char **argv)
{
	bool torn = argc == 6 && !strcmp(argv[5], "torn");
	int trees = argc == 4 ? 1 : torn ? 3 : 2;
	const char *name[3] = { "the tree after N calls", "the tree after N+1 calls",
				"the tree after N calls with the write of call N+1 torn" };

	if (argc < 4 || argc > 6 || (argc == 6 && !torn)) {
		fprintf(stderr, "usage: fs-model --check MOUNT_DIR TREE_N [TREE_N1 [torn]]\n");
		return 2;
	}
	roots[0] = argv[2];
	quiet = 1;
	if (!compare_with(argv[3], NULL))
		printf("matches %s\n", name[0]);
	else if (trees > 1 && !compare_with(argv[4], NULL))
		printf("matches %s\n", name[1]);
	else if (torn && !compare_with(argv[3], argv[4]))
		printf("matches %s\n", name[2]);
	else {
		quiet = 0;
		for (int i = 0; i < trees; i++) {
			printf("differences from %s:\n", name[i]);
			compare_with(argv[3 + (i == 1)], i == 2 ? argv[4] : NULL);
		}
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long nops;

	wbuf = malloc(MAX_FILE);
	for (int s = 0; s < 3; s++)
		rbuf[s] = malloc(MAX_FILE);
	if (!wbuf || !rbuf[0] || !rbuf[1] || !rbuf[2])
		return 2;
	if (argc > 1 && !strcmp(argv[1], "--check"))
		return check(argc, argv);
	if (argc == 7 && !strcmp(argv[1], "--progress")) {
		progress_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (progress_fd < 0) {
			perror(argv[2]);
			return 2;
		}
		argc -= 2;
		argv += 2;
	} else if (argc == 6 && !strcmp(argv[1], "--committed")) {
		committed = true;
		argc--;
		argv++;
	} else if (argc == 7 && !strcmp(argv[1], "--stop-after")) {
		stop_after = strtoll(argv[2], NULL, 10);
		argc -= 2;
		argv += 2;
	}
	if (argc != 5) {
		fprintf(stderr, "usage: fs-model [--progress FILE | --stop-after N | --committed] MOUNT_DIR NATIVE_DIR SEED NOPS\n"
				"       fs-model --check MOUNT_DIR TREE_N [TREE_N1 [torn]]\n");
		return 2;
	}
	roots[0] = argv[1];
	roots[1] = argv[2];
	rng = strtoull(argv[3], NULL, 10) * 2654435761u + 88172645463325252ull;
	nops = strtoul(argv[4], NULL, 10);
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < NFDS; k++)
			fds[s][k] = -1;
	umask(022);
	for (step = 1; step <= nops; step++) {
		switch (pick(10)) {
		case 0:
		case 1:
			op_write_path();
			break;
		case 2:
			op_read_path();
			break;
		case 3:
			op_stat();
			break;
		case 4:
		case 5:
			op_fd();
			break;
		default:
			op_misc();
			break;
		}
	}
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < NFDS; k++)
			if (fds[s][k] >= 0)
				close(fds[s][k]);
	if (stop_after >= 0 || progress_fd >= 0) {
		/* the crash test compares the trees itself, after the kill */
		printf("%s%lu operations, %lu calls, %d differences\n", stop_after >= 0 ? "next-none\n" : "",
		       nops, ncalls, failures);
		return failures ? 1 : 0;
	}
	step = 0;
	compare_tree("");
	printf("%lu operations, %d differences\n", nops, failures);
	return failures ? 1 : 0;
}
