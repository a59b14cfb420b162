/* Syscall-level semantics of a hiberbox mount.
 *
 * usage: fs-semantics MOUNTED_DIR
 * MOUNTED_DIR is a directory of a live mount whose lower snapshot holds the
 * fixture made by tests/fs/mount.sh (make_sem_fixture):
 *   lower.txt      "lower content\n", 0644, xattr user.lower = "1"
 *   lowerdir/a, lowerdir/b
 *   big.bin        3 MiB of random bytes (a copy is big.ref outside the mount)
 *   big2.bin       the same bytes
 *   sparse         64 MiB, 4 KiB of data at 10 MiB, holes elsewhere
 *   hl1, hl2       hard links, "hl\n"
 *   private        0600 "secret\n"
 *   rodir/         0755 with rodir/file 0644
 * Every check runs on the mount; the expected values are what Linux gives on
 * a local filesystem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/unit/test.h"

static char M[PATH_MAX];

static const char *P(const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int i;
	char *b = bufs[i++ % 8];

	snprintf(b, PATH_MAX, "%s/%s", M, rel);
	return b;
}

/* -errno of a syscall result, or the result. */
#define E(x) ({ long long _e = (long long)(x); _e < 0 ? -errno : _e; })

static int read_whole(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = 0;
	return (int)n;
}

static int write_whole(const char *path, const char *data, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, data, strlen(data));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* Entries readdir() gives for directory rel, "." and ".." included (-errno
 * if it cannot be opened). */
static int entries_in(const char *rel)
{
	DIR *d = opendir(P(rel));
	int n = 0;

	if (!d)
		return -errno;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_open_flags(void)
{
	char b[256];
	int fd;

	CHECK_OK(write_whole(P("w/excl"), "one", O_EXCL));
	CHECK_ERR(E(open(P("w/excl"), O_WRONLY | O_CREAT | O_EXCL, 0644)), -EEXIST);
	CHECK_ERR(E(open(P("w/missing"), O_RDONLY)), -ENOENT);
	CHECK_ERR(E(open(P("w/missing/x"), O_RDONLY)), -ENOENT);
	CHECK_ERR(E(open(P("lower.txt/x"), O_RDONLY)), -ENOTDIR);
	/* O_TRUNC on a lower file: copy-up with nothing. */
	CHECK_OK(write_whole(P("lowerdir/a"), "new a", O_TRUNC));
	CHECK(read_whole(P("lowerdir/a"), b, sizeof(b)) == 5 && !strcmp(b, "new a"));
	/* O_APPEND on a lower file appends after the lower content. */
	CHECK_OK(write_whole(P("lower.txt"), "appended\n", O_APPEND));
	CHECK(read_whole(P("lower.txt"), b, sizeof(b)) > 0 &&
	      !strcmp(b, "lower content\nappended\n"));
	/* O_APPEND ignores the offset. */
	fd = open(P("w/app"), O_RDWR | O_CREAT | O_APPEND, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, "abc", 3) == 3);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	CHECK(write(fd, "def", 3) == 3);
	CHECK(pread(fd, b, 10, 0) == 6 && !memcmp(b, "abcdef", 6));
	close(fd);
	/* A directory cannot be opened for writing. */
	CHECK_ERR(E(open(P("lowerdir"), O_WRONLY)), -EISDIR);
	/* O_DIRECTORY on a file. */
	CHECK_ERR(E(open(P("lower.txt"), O_RDONLY | O_DIRECTORY)), -ENOTDIR);
	/* A name of 256 bytes. */
	memset(b, 'n', 256);
	b[256 - 1] = 0;
	{
		char name[300];

		snprintf(name, sizeof(name), "w/%s", b);
		CHECK_OK(write_whole(P(name), "max", 0)); /* 255 bytes: fine */
		snprintf(name, sizeof(name), "w/%sX", b);
		CHECK_ERR(E(open(P(name), O_WRONLY | O_CREAT, 0644)), -ENAMETOOLONG);
	}
}

static void test_rw_offsets(void)
{
	char b[64];
	struct stat st;
	int fd = open(P("w/rw"), O_RDWR | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0);
	CHECK(pwrite(fd, "hello", 5, 0) == 5);
	CHECK(pwrite(fd, "XY", 2, 10) == 2);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 12);
	CHECK(pread(fd, b, 64, 0) == 12);
	CHECK(!memcmp(b, "hello\0\0\0\0\0XY", 12));
	CHECK(pread(fd, b, 64, 100) == 0);
	CHECK(pwrite(fd, "L", 1, 2) == 1);
	CHECK(pread(fd, b, 5, 0) == 5 && !memcmp(b, "heLlo", 5));
	/* ftruncate shrink and grow */
	CHECK(ftruncate(fd, 3) == 0);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 3);
	CHECK(ftruncate(fd, 8) == 0);
	CHECK(pread(fd, b, 64, 0) == 8 && !memcmp(b, "heL\0\0\0\0\0", 8));
	close(fd);
	/* truncate of a lower file by path */
	CHECK(truncate(P("hl1"), 1) == 0);
	CHECK(read_whole(P("hl2"), b, sizeof(b)) == 1 && b[0] == 'h');
	CHECK(truncate(P("w/rw"), 0) == 0);
	CHECK(stat(P("w/rw"), &st) == 0 && st.st_size == 0);
}

/* copy_file_range() whole until it returns 0, as cp does. */
static long long copy_all(int in, int out)
{
	long long total = 0;

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n < 0)
			return -errno;
		if (n == 0)
			return total;
		total += n;
	}
}

/* copy_file_range(): from a lower file (the repository) and between upper
 * files, at offsets, within one file; what it writes is what reads see. */
static void test_copy_range(const char *ref)
{
	static char x[3 << 20], y[3 << 20];
	int a = open(P("big2.bin"), O_RDONLY), b, r = open(ref, O_RDONLY);
	loff_t oi, oo;
	struct stat st;

	CHECK(a >= 0 && r >= 0);
	b = open(P("w/cfr-big"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(b >= 0);
	CHECK(copy_all(a, b) == 3 << 20);
	CHECK(fstat(b, &st) == 0 && st.st_size == 3 << 20);
	CHECK(pread(b, x, sizeof(x), 0) == sizeof(x) && pread(r, y, sizeof(y), 0) == sizeof(y));
	CHECK(!memcmp(x, y, sizeof(x)));
	close(a);
	/* upper to upper at offsets: bytes 1000..21000 of cfr-big to 5000 of a
	 * file holding "0123456789", past its end (the gap reads as zeros) */
	a = open(P("w/cfr-part"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(a >= 0 && write(a, "0123456789", 10) == 10);
	oi = 1000;
	oo = 5000;
	CHECK(copy_file_range(b, &oi, a, &oo, 20000, 0) == 20000 && oi == 21000 && oo == 25000);
	CHECK(fstat(a, &st) == 0 && st.st_size == 25000);
	memset(x, 0, 25000);
	memcpy(x, "0123456789", 10);
	memcpy(x + 5000, y + 1000, 20000);
	CHECK(pread(a, x + 30000, 25000, 0) == 25000 && !memcmp(x, x + 30000, 25000));
	/* within one file: not overlapping is fine, overlapping is EINVAL */
	oi = 0;
	oo = 100000;
	CHECK(copy_file_range(a, &oi, a, &oo, 10, 0) == 10);
	CHECK(pread(a, x, 10, 100000) == 10 && !memcmp(x, "0123456789", 10));
	oi = 0;
	oo = 5;
	CHECK_ERR(E(copy_file_range(a, &oi, a, &oo, 10, 0)), -EINVAL);
	close(a);
	/* a destination open read-only is refused */
	a = open(P("w/cfr-part"), O_RDONLY);
	CHECK(a >= 0);
	CHECK_ERR(E(copy_file_range(b, NULL, a, NULL, 10, 0)), -EBADF);
	close(a);
	close(b);
	close(r);
}

static void test_big_lower(const char *ref)
{
	int a = open(P("big.bin"), O_RDONLY), b = open(ref, O_RDONLY);
	static char x[1 << 20], y[1 << 20];
	off_t offs[] = { 0, 1, 65535, 65536, 1000000, 3 * 1048576 - 10, 3 * 1048576 };
	int fd;

	CHECK(a >= 0 && b >= 0);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		ssize_t n1 = pread(a, x, sizeof(x), offs[i]);
		ssize_t n2 = pread(b, y, sizeof(y), offs[i]);

		CHECK(n1 == n2 && n1 >= 0 && !memcmp(x, y, (size_t)n1));
	}
	close(a);
	close(b);
	/* Write in the middle of a lower file: copy-up keeps the rest. */
	fd = open(P("big.bin"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "MIDDLE", 6, 1500000) == 6);
	close(fd);
	a = open(P("big.bin"), O_RDONLY);
	b = open(ref, O_RDONLY);
	CHECK(pread(a, x, sizeof(x), 1000000) == sizeof(x));
	CHECK(pread(b, y, sizeof(y), 1000000) == sizeof(y));
	memcpy(y + 500000, "MIDDLE", 6);
	CHECK(!memcmp(x, y, sizeof(x)));
	close(a);
	close(b);
}

/* Several processes open the same large lower file for writing at once:
 * one copy-up, every write kept. */
static void test_concurrent_copy_up(const char *ref)
{
	static char x[3 * 1048576], y[3 * 1048576];
	pid_t pids[4];
	int status, a, b;

	for (int i = 0; i < 4; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			int fd = open(P("big2.bin"), O_RDWR);
			char c = (char)('A' + i);

			_exit(fd >= 0 && pwrite(fd, &c, 1, 100000 * (i + 1)) == 1 ? 0 : 1);
		}
	}
	for (int i = 0; i < 4; i++)
		CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);
	a = open(P("big2.bin"), O_RDONLY);
	b = open(ref, O_RDONLY);
	CHECK(a >= 0 && b >= 0);
	CHECK(pread(a, x, sizeof(x), 0) == sizeof(x));
	CHECK(pread(b, y, sizeof(y), 0) == sizeof(y));
	for (int i = 0; i < 4; i++)
		y[100000 * (i + 1)] = (char)('A' + i);
	CHECK(!memcmp(x, y, sizeof(x)));
	close(a);
	close(b);
}

static void test_unlink_open(void)
{
	char b[64];
	struct stat st;
	int fd, fd2;

	CHECK_OK(write_whole(P("w/doomed"), "still here", 0));
	fd = open(P("w/doomed"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(unlink(P("w/doomed")) == 0);
	CHECK_ERR(E(stat(P("w/doomed"), &st)), -ENOENT);
	CHECK(pread(fd, b, sizeof(b), 0) == 10 && !memcmp(b, "still here", 10));
	CHECK(pwrite(fd, "!", 1, 10) == 1);
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0 && st.st_size == 11);
	/* A new file of the same name is another file. */
	CHECK_OK(write_whole(P("w/doomed"), "new", 0));
	CHECK(pread(fd, b, sizeof(b), 0) == 11);
	close(fd);
	CHECK(read_whole(P("w/doomed"), b, sizeof(b)) == 3);
	/* Unlink of an open lower file. */
	fd2 = open(P("lowerdir/b"), O_RDONLY);
	CHECK(fd2 >= 0);
	CHECK(unlink(P("lowerdir/b")) == 0);
	CHECK(read(fd2, b, sizeof(b)) >= 0);
	close(fd2);
	CHECK_ERR(E(open(P("lowerdir/b"), O_RDONLY)), -ENOENT);
}

static long long renameat2_(const char *a, const char *b, unsigned flags)
{
	return E(syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags));
}

/* O_TMPFILE: an open file without a name, which linkat() can name (not
 * after O_EXCL); mount.sh then commits and remounts the named one. */
static void test_tmpfile(void)
{
	char b[64], proc[64];
	struct stat st;
	int fd = open(P("w"), O_TMPFILE | O_RDWR, 0640);

	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0 && S_ISREG(st.st_mode) &&
	      (st.st_mode & 07777) == 0640 && st.st_size == 0);
	CHECK(write(fd, "tmp data", 8) == 8);
	CHECK(pread(fd, b, sizeof(b), 0) == 8 && !memcmp(b, "tmp data", 8));
	CHECK_ERR(E(access(P("w/tmp-named"), F_OK)), -ENOENT);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	CHECK_OK(E(linkat(AT_FDCWD, proc, AT_FDCWD, P("w/tmp-named"), AT_SYMLINK_FOLLOW)));
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 1);
	CHECK(write(fd, "!", 1) == 1); /* the same file under its name */
	close(fd);
	CHECK(read_whole(P("w/tmp-named"), b, sizeof(b)) == 9 && !strcmp(b, "tmp data!"));
	CHECK(stat(P("w/tmp-named"), &st) == 0 && st.st_nlink == 1 && (st.st_mode & 07777) == 0640);

	fd = open(P("w"), O_TMPFILE | O_WRONLY | O_EXCL, 0600);
	CHECK(fd >= 0);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	CHECK_ERR(E(linkat(AT_FDCWD, proc, AT_FDCWD, P("w/tmp-excl"), AT_SYMLINK_FOLLOW)), -ENOENT);
	close(fd);
	CHECK_ERR(E(access(P("w/tmp-excl"), F_OK)), -ENOENT);

	/* one never named is dropped at its close, and nothing is listed */
	fd = open(P("w"), O_TMPFILE | O_RDWR, 0600);
	CHECK(fd >= 0 && write(fd, "gone", 4) == 4);
	close(fd);
	CHECK_ERR(E(open(P("lower.txt"), O_TMPFILE | O_RDWR, 0600)), -ENOTDIR);
}

static void test_rename(void)
{
	char b[64];
	struct stat st1, st2;

	CHECK_OK(write_whole(P("w/r1"), "r1", 0));
	CHECK_OK(write_whole(P("w/r2"), "r2", 0));
	CHECK(stat(P("w/r1"), &st1) == 0);
	CHECK(rename(P("w/r1"), P("w/r2")) == 0); /* over an existing file */
	CHECK(read_whole(P("w/r2"), b, sizeof(b)) == 2 && !strcmp(b, "r1"));
	CHECK(stat(P("w/r2"), &st2) == 0 && st2.st_ino == st1.st_ino);
	CHECK_ERR(E(stat(P("w/r1"), &st1)), -ENOENT);
	/* NOREPLACE */
	CHECK_OK(write_whole(P("w/r3"), "r3", 0));
	CHECK_ERR(renameat2_(P("w/r3"), P("w/r2"), RENAME_NOREPLACE), -EEXIST);
	CHECK_OK(renameat2_(P("w/r3"), P("w/r4"), RENAME_NOREPLACE));
	/* EXCHANGE of a file and a directory */
	CHECK(mkdir(P("w/xd"), 0755) == 0);
	CHECK_OK(write_whole(P("w/xd/inside"), "in", 0));
	CHECK_OK(renameat2_(P("w/r4"), P("w/xd"), RENAME_EXCHANGE));
	CHECK(read_whole(P("w/xd"), b, sizeof(b)) == 2 && !strcmp(b, "r3"));
	CHECK(read_whole(P("w/r4/inside"), b, sizeof(b)) == 2);
	CHECK_ERR(renameat2_(P("w/r4"), P("w/none"), RENAME_EXCHANGE), -ENOENT);
	/* directory over an empty directory, over a non-empty one, onto a file */
	CHECK(mkdir(P("w/empty"), 0755) == 0);
	CHECK(rename(P("w/r4"), P("w/empty")) == 0);
	CHECK(read_whole(P("w/empty/inside"), b, sizeof(b)) == 2);
	CHECK(mkdir(P("w/full"), 0755) == 0);
	CHECK_OK(write_whole(P("w/full/f"), "f", 0));
	CHECK_ERR(E(rename(P("w/empty"), P("w/full"))), -ENOTEMPTY);
	CHECK_ERR(E(rename(P("w/empty"), P("w/xd"))), -ENOTDIR);
	CHECK_ERR(E(rename(P("w/xd"), P("w/full"))), -EISDIR);
	/* into its own subdirectory */
	CHECK(mkdir(P("w/full/sub"), 0755) == 0);
	CHECK_ERR(E(rename(P("w/full"), P("w/full/sub/x"))), -EINVAL);
	/* a lower directory moves with its lower content */
	CHECK(rename(P("lowerdir"), P("w/moved-lowerdir")) == 0);
	CHECK(read_whole(P("w/moved-lowerdir/a"), b, sizeof(b)) == 5);
	CHECK_ERR(E(stat(P("lowerdir"), &st1)), -ENOENT);
	CHECK(rename(P("w/moved-lowerdir"), P("lowerdir")) == 0);
	/* rename of hard links to each other: nothing happens */
	CHECK(rename(P("hl1"), P("hl2")) == 0);
	CHECK(stat(P("hl1"), &st1) == 0);
	/* a lower file renamed, then a new file at the old name */
	CHECK(rename(P("lowerdir/a"), P("lowerdir/a2")) == 0);
	CHECK_OK(write_whole(P("lowerdir/a"), "fresh", 0));
	CHECK(read_whole(P("lowerdir/a2"), b, sizeof(b)) == 5 && !strcmp(b, "new a"));
}

static void test_links(void)
{
	struct stat a, b, c;
	char buf[256];

	/* hard link to a lower file, across layers */
	CHECK(link(P("lower.txt"), P("w/lower-link")) == 0);
	CHECK(stat(P("lower.txt"), &a) == 0 && stat(P("w/lower-link"), &b) == 0);
	CHECK(a.st_ino == b.st_ino && a.st_nlink == 2 && b.st_nlink == 2);
	CHECK_OK(write_whole(P("w/lower-link"), "via link\n", O_APPEND));
	CHECK(read_whole(P("lower.txt"), buf, sizeof(buf)) > 0 && strstr(buf, "via link"));
	CHECK(unlink(P("w/lower-link")) == 0);
	CHECK(stat(P("lower.txt"), &a) == 0 && a.st_nlink == 1);
	/* lower hard-link group: same inode, count 2 */
	CHECK(stat(P("hl1"), &a) == 0 && stat(P("hl2"), &b) == 0);
	CHECK(a.st_ino == b.st_ino && a.st_nlink == 2);
	CHECK(link(P("hl1"), P("w/hl3")) == 0);
	CHECK(stat(P("hl2"), &b) == 0 && b.st_nlink == 3);
	CHECK_ERR(E(link(P("lowerdir"), P("w/dirlink"))), -EPERM);
	CHECK_ERR(E(link(P("lower.txt"), P("hl1"))), -EEXIST);
	/* symlinks */
	CHECK(symlink("lower.txt", P("w/sym")) == 0);
	CHECK(readlink(P("w/sym"), buf, sizeof(buf)) == 9 && !memcmp(buf, "lower.txt", 9));
	CHECK(lstat(P("w/sym"), &c) == 0 && S_ISLNK(c.st_mode) && c.st_size == 9);
	CHECK(symlink("../lower.txt", P("w/sym2")) == 0);
	CHECK(read_whole(P("w/sym2"), buf, sizeof(buf)) > 0 && !strncmp(buf, "lower content", 13));
	CHECK_ERR(E(symlink("x", P("w/sym"))), -EEXIST);
	/* mkdir/rmdir */
	CHECK(mkdir(P("w/d"), 0700) == 0);
	CHECK_ERR(E(mkdir(P("w/d"), 0700)), -EEXIST);
	CHECK(stat(P("w"), &a) == 0);
	CHECK(mkdir(P("w/d/e"), 0700) == 0);
	CHECK(stat(P("w/d"), &b) == 0 && b.st_nlink == 3);
	CHECK_ERR(E(rmdir(P("w/d"))), -ENOTEMPTY);
	CHECK_ERR(E(rmdir(P("lower.txt"))), -ENOTDIR);
	CHECK_ERR(E(unlink(P("w/d"))), -EISDIR);
	CHECK(rmdir(P("w/d/e")) == 0);
	CHECK(rmdir(P("w/d")) == 0);
	CHECK_ERR(E(rmdir(P("lowerdir"))), -ENOTEMPTY);
	/* a removed lower dir's name is free for a new, empty one */
	CHECK(mkdir(P("w/ld"), 0755) == 0);
	CHECK(rename(P("lowerdir"), P("w/ld/old")) == 0);
	CHECK(mkdir(P("lowerdir"), 0755) == 0);
	CHECK(entries_in("lowerdir") == 2);
	CHECK(rmdir(P("lowerdir")) == 0);
	CHECK(rename(P("w/ld/old"), P("lowerdir")) == 0);
	/* mknod of a fifo */
	CHECK(mkfifo(P("w/fifo"), 0644) == 0);
	CHECK(lstat(P("w/fifo"), &c) == 0 && S_ISFIFO(c.st_mode));
}

static void test_attrs(void)
{
	struct stat st;
	struct timespec ts[2];

	CHECK(chmod(P("lowerdir/a2"), 04751) == 0);
	CHECK(stat(P("lowerdir/a2"), &st) == 0 && (st.st_mode & 07777) == 04751);
	CHECK(chown(P("lowerdir/a2"), 1234, 5678) == 0);
	CHECK(stat(P("lowerdir/a2"), &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
	CHECK((st.st_mode & 07777) == 0751); /* chown clears setuid */
	CHECK(lchown(P("w/sym"), 42, 43) == 0);
	CHECK(lstat(P("w/sym"), &st) == 0 && st.st_uid == 42);
	ts[0].tv_sec = 1000000000;
	ts[0].tv_nsec = 123456789;
	ts[1].tv_sec = 1500000000;
	ts[1].tv_nsec = 987654321;
	CHECK(utimensat(AT_FDCWD, P("lower.txt"), ts, 0) == 0);
	CHECK(stat(P("lower.txt"), &st) == 0 && st.st_atim.tv_sec == 1000000000 &&
	      st.st_atim.tv_nsec == 123456789 && st.st_mtim.tv_sec == 1500000000 &&
	      st.st_mtim.tv_nsec == 987654321);
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	CHECK(utimensat(AT_FDCWD, P("lower.txt"), ts, 0) == 0);
	CHECK(stat(P("lower.txt"), &st) == 0 && st.st_atim.tv_sec == 1000000000 &&
	      st.st_mtim.tv_sec > 1600000000);
	/* symlink times without following */
	ts[0].tv_sec = 5;
	ts[0].tv_nsec = 0;
	ts[1].tv_sec = 6;
	ts[1].tv_nsec = 0;
	CHECK(utimensat(AT_FDCWD, P("w/sym"), ts, AT_SYMLINK_NOFOLLOW) == 0);
	CHECK(lstat(P("w/sym"), &st) == 0 && st.st_mtim.tv_sec == 6);
	/* a write moves mtime */
	CHECK(utimensat(AT_FDCWD, P("w/rw"), ts, 0) == 0);
	CHECK_OK(write_whole(P("w/rw"), "x", 0));
	CHECK(stat(P("w/rw"), &st) == 0 && st.st_mtim.tv_sec > 1600000000);
}

static void test_xattrs(void)
{
	char b[256];
	ssize_t n;

	n = getxattr(P("lower.txt"), "user.lower", b, sizeof(b));
	CHECK(n == 1 && b[0] == '1');
	CHECK(getxattr(P("lower.txt"), "user.lower", NULL, 0) == 1);
	CHECK(E(getxattr(P("lower.txt"), "user.lower", b, 0)) == 1);
	CHECK_ERR(E(getxattr(P("lower.txt"), "user.none", b, sizeof(b))), -ENODATA);
	CHECK(setxattr(P("lower.txt"), "user.two", "22", 2, 0) == 0);
	CHECK_ERR(E(setxattr(P("lower.txt"), "user.two", "x", 1, XATTR_CREATE)), -EEXIST);
	CHECK_ERR(E(setxattr(P("lower.txt"), "user.three", "x", 1, XATTR_REPLACE)), -ENODATA);
	n = listxattr(P("lower.txt"), b, sizeof(b));
	CHECK(n == (ssize_t)sizeof("user.lower") + (ssize_t)sizeof("user.two"));
	CHECK_ERR(E(listxattr(P("lower.txt"), b, 3)), -ERANGE);
	CHECK(getxattr(P("lower.txt"), "user.lower", b, sizeof(b)) == 1);
	CHECK(removexattr(P("lower.txt"), "user.lower") == 0);
	CHECK_ERR(E(removexattr(P("lower.txt"), "user.lower")), -ENODATA);
	CHECK(getxattr(P("lower.txt"), "user.two", b, sizeof(b)) == 2 && !memcmp(b, "22", 2));
	CHECK(setxattr(P("w"), "user.dir", "", 0, 0) == 0);
	CHECK(getxattr(P("w"), "user.dir", b, sizeof(b)) == 0);
	{
		static char big[3000]; /* ext4 takes ~4 KiB per inode: restore must work */

		memset(big, 'v', sizeof(big));
		CHECK(setxattr(P("w/rw"), "user.big", big, sizeof(big), 0) == 0);
		CHECK(getxattr(P("w/rw"), "user.big", NULL, 0) == (ssize_t)sizeof(big));
	}
	{
		/* Names beyond what listxattr() can return (64 KiB) are refused
		 * (ENOSPC, as a full ext4 does); listing still works. */
		static char list[1 << 17];
		char name[256];
		int added = 0;
		long long r = 0;

		CHECK_OK(write_whole(P("w/manyx"), "", 0));
		memset(name, 'x', sizeof(name));
		while (added < 400) {
			snprintf(name, sizeof(name), "user.%03d", added);
			name[8] = 'x'; /* 240 bytes: "user.NNN" and 'x's */
			name[240] = 0;
			if ((r = E(setxattr(P("w/manyx"), name, "v", 1, 0))) < 0)
				break;
			added++;
		}
		CHECK(r == -ENOSPC && added > 200 && added < 400);
		n = listxattr(P("w/manyx"), list, sizeof(list));
		CHECK(n == (ssize_t)added * 241);
		CHECK_OK(E(unlink(P("w/manyx"))));
	}
}

static void test_misc(void)
{
	struct statvfs sv;
	int fd, fd2;
	pid_t pid;
	int status;

	CHECK(statvfs(M, &sv) == 0 && sv.f_bsize > 0 && sv.f_namemax == 255);
	fd = open(P("w/rw"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(fsync(fd) == 0);
	CHECK(fdatasync(fd) == 0);
	/* flock: a second open file description conflicts */
	CHECK(flock(fd, LOCK_EX) == 0);
	fd2 = open(P("w/rw"), O_RDWR);
	CHECK(fd2 >= 0);
	CHECK_ERR(E(flock(fd2, LOCK_EX | LOCK_NB)), -EWOULDBLOCK);
	CHECK(flock(fd, LOCK_UN) == 0);
	CHECK(flock(fd2, LOCK_EX | LOCK_NB) == 0);
	close(fd2);
	/* fcntl locks: held here, refused in a child */
	{
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };

		CHECK(fcntl(fd, F_SETLK, &fl) == 0);
		pid = fork();
		if (pid == 0) {
			int c = open(P("w/rw"), O_RDWR);
			struct flock f2 = fl;

			_exit(c >= 0 && fcntl(c, F_SETLK, &f2) < 0 &&
				      (errno == EAGAIN || errno == EACCES) ? 0 : 1);
		}
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);
	}
	close(fd);
	{
		int dfd = open(M, O_RDONLY | O_DIRECTORY);

		CHECK(dfd >= 0 && fsync(dfd) == 0);
		close(dfd);
	}
}

static void test_mmap(void)
{
	int fd = open(P("w/mm"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	char b[16];
	char *p;

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 8192) == 0);
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	if (p != MAP_FAILED) {
		memcpy(p + 4096, "mapped", 6);
		CHECK(msync(p, 8192, MS_SYNC) == 0);
		munmap(p, 8192);
	}
	close(fd);
	fd = open(P("w/mm"), O_RDONLY);
	CHECK(pread(fd, b, 6, 4096) == 6 && !memcmp(b, "mapped", 6));
	close(fd);
	/* a shared writable mapping of a lower file */
	fd = open(P("hl2"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 4096) == 0);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	if (p != MAP_FAILED) {
		CHECK(p[0] == 'h');
		p[1] = 'Z';
		munmap(p, 4096);
	}
	close(fd);
	CHECK(read_whole(P("hl1"), b, sizeof(b)) > 2 && b[1] == 'Z');
}

static void test_sparse(void)
{
	struct stat st;
	int fd = open(P("sparse"), O_RDONLY);
	char b[4096];
	off_t pos;

	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 64 << 20);
	CHECK(st.st_blocks < 4096); /* far less than 64 MiB */
	pos = lseek(fd, 0, SEEK_DATA);
	CHECK(pos >= 0 && pos <= 10 << 20);
	pos = lseek(fd, 0, SEEK_HOLE);
	CHECK(pos >= 0 && pos < 64 << 20);
	CHECK(pread(fd, b, sizeof(b), 20 << 20) == sizeof(b));
	CHECK(b[0] == 0 && b[4095] == 0);
	CHECK(E(lseek(fd, 64 << 20, SEEK_DATA)) == -ENXIO);
	close(fd);
	/* a new sparse file, larger than 4 GiB */
	fd = open(P("w/huge"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "end", 3, 5LL << 30) == 3);
	CHECK(fstat(fd, &st) == 0 && st.st_size == (5LL << 30) + 3);
	CHECK(st.st_blocks < 1024);
	CHECK(pread(fd, b, 3, 5LL << 30) == 3 && !memcmp(b, "end", 3));
	CHECK(pread(fd, b, 16, 1LL << 32) == 16 && b[0] == 0);
	CHECK(lseek(fd, 0, SEEK_DATA) == (5LL << 30) - ((5LL << 30) % 4096));
	CHECK(lseek(fd, 0, SEEK_HOLE) == 0);
	close(fd);
	CHECK(unlink(P("w/huge")) == 0);
}

/* Lower content edited in place: fallocate modes copy the file up and act
 * on the copy, the rest of it intact; SEEK_DATA past a lower file's data. */
static void test_lower_fallocate(void)
{
	static char before[8192], after[8192];
	const off_t at = 10 << 20; /* the 4 KiB of data in "sparse" */
	struct stat st;
	int fd = open(P("sparse"), O_RDWR);

	CHECK(fd >= 0);
	CHECK_ERR(E(lseek(fd, at + 4096 + (1 << 20), SEEK_DATA)), -ENXIO);
	CHECK(lseek(fd, (64 << 20) - 1, SEEK_HOLE) == (64 << 20) - 1);
	CHECK(pread(fd, before, sizeof(before), at) == sizeof(before));
	CHECK_OK(E(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at + 1000, 100)));
	CHECK_OK(E(fallocate(fd, FALLOC_FL_ZERO_RANGE, at + 2000, 10)));
	CHECK_OK(E(fallocate(fd, FALLOC_FL_KEEP_SIZE, 64 << 20, 8192)));
	CHECK(fstat(fd, &st) == 0 && st.st_size == 64 << 20);
	memset(before + 1000, 0, 100);
	memset(before + 2000, 0, 10);
	CHECK(pread(fd, after, sizeof(after), at) == sizeof(after));
	CHECK(!memcmp(before, after, sizeof(before)));
	CHECK_OK(E(fallocate(fd, 0, 64 << 20, 4096)));
	CHECK(fstat(fd, &st) == 0 && st.st_size == (64 << 20) + 4096);
	close(fd);
}

/* Namespace corners: flags renameat2 does not take here, an exchange of a
 * lower directory with a new file (link counts follow), names of 255 and
 * 256 bytes for every call that makes one, a tmpfile given two names by
 * AT_EMPTY_PATH, sockets and device nodes. */
static void test_names(void)
{
	struct stat st, w0, m0;
	char name[300], b[256];
	int fd;

	CHECK_ERR(renameat2_(P("lower.txt"), P("w/wo"), RENAME_WHITEOUT), -EINVAL);
	CHECK_ERR(renameat2_(P("lower.txt"), P("hl1"), RENAME_NOREPLACE | RENAME_EXCHANGE), -EINVAL);
	CHECK_OK(write_whole(P("w/xfile"), "xf", 0));
	CHECK(stat(P("w"), &w0) == 0 && stat(M, &m0) == 0);
	CHECK_OK(renameat2_(P("lowerdir"), P("w/xfile"), RENAME_EXCHANGE));
	CHECK(stat(P("lowerdir"), &st) == 0 && S_ISREG(st.st_mode));
	CHECK(stat(P("w/xfile/a2"), &st) == 0);
	CHECK(stat(P("w"), &st) == 0 && st.st_nlink == w0.st_nlink + 1);
	CHECK(stat(M, &st) == 0 && st.st_nlink == m0.st_nlink - 1);
	CHECK_OK(renameat2_(P("lowerdir"), P("w/xfile"), RENAME_EXCHANGE));
	CHECK(stat(P("w"), &st) == 0 && st.st_nlink == w0.st_nlink);
	CHECK(stat(M, &st) == 0 && st.st_nlink == m0.st_nlink);

	memset(b, 'd', 255); /* test_open_flags made a file of 255 'n's */
	b[255] = 0;
	snprintf(name, sizeof(name), "w/%s", b);
	CHECK_OK(E(mkdir(P(name), 0755)));
	CHECK(stat(P(name), &st) == 0 && S_ISDIR(st.st_mode));
	snprintf(name, sizeof(name), "w/%sN", b);
	CHECK_ERR(E(mkdir(P(name), 0755)), -ENAMETOOLONG);
	CHECK_ERR(E(symlink("x", P(name))), -ENAMETOOLONG);
	CHECK_ERR(E(link(P("lower.txt"), P(name))), -ENAMETOOLONG);
	CHECK_ERR(E(rename(P("w/xfile"), P(name))), -ENAMETOOLONG);
	CHECK_ERR(E(mknod(P(name), S_IFIFO | 0644, 0)), -ENAMETOOLONG);

	fd = open(P("w"), O_TMPFILE | O_RDWR, 0600);
	CHECK(fd >= 0 && write(fd, "t", 1) == 1);
	CHECK_OK(E(linkat(fd, "", AT_FDCWD, P("w/tmp-empty1"), AT_EMPTY_PATH)));
	CHECK_OK(E(linkat(fd, "", AT_FDCWD, P("w/tmp-empty2"), AT_EMPTY_PATH)));
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 2);
	close(fd);
	CHECK(read_whole(P("w/tmp-empty2"), b, sizeof(b)) == 1 && b[0] == 't');

	CHECK_OK(E(mknod(P("w/sock"), S_IFSOCK | 0644, 0)));
	CHECK(lstat(P("w/sock"), &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_OK(E(mknod(P("w/null"), S_IFCHR | 0644, makedev(1, 3))));
	CHECK(lstat(P("w/null"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
}

/* A lower directory whose every entry was removed can go, and its name then
 * holds a new, empty directory (runs last: rodir is the permission test's). */
static void test_rmdir_emptied(void)
{
	CHECK_ERR(E(rmdir(P("rodir"))), -ENOTEMPTY);
	CHECK_OK(E(unlink(P("rodir/file"))));
	CHECK_OK(E(rmdir(P("rodir"))));
	CHECK_OK(E(mkdir(P("rodir"), 0755)));
	CHECK(entries_in("rodir") == 2);
	CHECK_ERR(E(access(P("rodir/file"), F_OK)), -ENOENT);
}

/* Entries added and removed while a listing is read in many pieces (far more
 * than one getdents): every entry present throughout comes exactly once,
 * removed ones at most once, also when the removals (here of entries already
 * read and of some not yet read) make the fs compact the directory in the
 * middle of the listing. */
static void test_readdir_stable(void)
{
	enum { FILES = 3000, AT = 1500, GONE = 2000, ADDED = 500 };
	static int seen[FILES];
	DIR *d;
	struct dirent *de;
	char name[64];
	int n = 0, added_seen = 0;

	memset(seen, 0, sizeof(seen));
	CHECK(mkdir(P("w/rd"), 0755) == 0);
	for (int i = 0; i < FILES; i++) {
		snprintf(name, sizeof(name), "w/rd/f%04d", i);
		CHECK_OK(write_whole(P(name), "", 0));
	}
	d = opendir(P("w/rd"));
	CHECK(d != NULL);
	if (!d)
		return;
	while ((de = readdir(d))) {
		int k;

		if (de->d_name[0] == '.')
			continue;
		if (n++ == AT) {
			for (int i = 0; i < ADDED; i++) {
				snprintf(name, sizeof(name), "w/rd/new%04d", i);
				write_whole(P(name), "", 0);
			}
			for (int i = 0; i < GONE; i++) {
				snprintf(name, sizeof(name), "w/rd/f%04d", i);
				unlink(P(name));
			}
		}
		if (sscanf(de->d_name, "f%04d", &k) == 1 && k >= 0 && k < FILES)
			seen[k]++;
		else if (!strncmp(de->d_name, "new", 3))
			added_seen++;
	}
	closedir(d);
	for (int i = 0; i < FILES; i++) {
		/* read before the removals, or present throughout: once */
		int once = i < AT || i >= GONE;

		if (once ? seen[i] != 1 : seen[i] > 1) {
			fprintf(stderr, "readdir: f%04d seen %d times\n", i, seen[i]);
			CHECK(!"every untouched entry exactly once");
			break;
		}
	}
	CHECK(added_seen <= ADDED);
	/* a fresh listing shows exactly what is there now */
	n = 0;
	d = opendir(P("w/rd"));
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK(n == FILES - GONE + ADDED);
}

/* link() refuses a name past ext4's limit of 65000 with EMLINK (the VFS
 * leaves that to a FUSE filesystem); an unlink makes room again.  Run on a
 * mount of its own (--link-max): the 65000 names stay. */
#define LINK_MAX_EXT4 65000
static void test_link_max(void)
{
	char name[64];
	struct stat st;
	int fails = 0;

	CHECK(mkdir(P("w/lm"), 0755) == 0);
	CHECK_OK(write_whole(P("w/lm/f"), "x", 0));
	for (int i = 1; i < LINK_MAX_EXT4 && !fails; i++) {
		snprintf(name, sizeof(name), "w/lm/l%05d", i);
		fails += link(P("w/lm/f"), P(name)) < 0;
	}
	CHECK(fails == 0);
	CHECK(stat(P("w/lm/f"), &st) == 0 && st.st_nlink == LINK_MAX_EXT4);
	CHECK_ERR(E(link(P("w/lm/f"), P("w/lm/over"))), -EMLINK);
	CHECK_ERR(E(stat(P("w/lm/over"), &st)), -ENOENT);
	CHECK(unlink(P("w/lm/l00001")) == 0);
	CHECK(link(P("w/lm/f"), P("w/lm/over")) == 0);
	CHECK_ERR(E(link(P("w/lm/f"), P("w/lm/over2"))), -EMLINK);
}

static void test_many_entries(int count)
{
	char name[64];
	DIR *d;
	struct dirent *de;
	int n = 0, fails = 0;
	struct stat st;

	CHECK(mkdir(P("w/many"), 0755) == 0);
	for (int i = 0; i < count; i++) {
		int fd;

		snprintf(name, sizeof(name), "w/many/entry-%06d", i);
		fd = open(P(name), O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			fails++;
		else
			close(fd);
	}
	CHECK(fails == 0);
	d = opendir(P("w/many"));
	while (d && (de = readdir(d)))
		n++;
	if (d)
		closedir(d);
	CHECK(n == count + 2);
	CHECK(stat(P("w/many/entry-000777"), &st) == 0);
	CHECK_ERR(E(stat(P("w/many/entry-x"), &st)), -ENOENT);
}

/* As an unprivileged user (in a child): the kernel's checks apply. */
static void test_permissions(void)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int bad = 0;
		int fd;
		char b[16];

		if (setgroups(0, NULL) < 0 || setgid(4242) < 0 || setuid(4242) < 0)
			_exit(100);
		/* 0600 root file: no read */
		if (!(open(P("private"), O_RDONLY) < 0 && errno == EACCES))
			bad |= 1;
		/* 0644 root file: read yes, write no */
		fd = open(P("rodir/file"), O_RDONLY);
		if (fd < 0 || read(fd, b, sizeof(b)) < 0)
			bad |= 2;
		if (fd >= 0)
			close(fd);
		if (!(open(P("rodir/file"), O_WRONLY) < 0 && errno == EACCES))
			bad |= 4;
		/* 0755 root dir: no create, no unlink */
		if (!(open(P("rodir/new"), O_WRONLY | O_CREAT, 0644) < 0 && errno == EACCES))
			bad |= 8;
		if (!(unlink(P("rodir/file")) < 0 && errno == EACCES))
			bad |= 16;
		/* not the owner: no chmod, no chown */
		if (!(chmod(P("rodir/file"), 0777) < 0 && errno == EPERM))
			bad |= 32;
		/* own files in a world-writable dir: fine; sticky protects others' */
		fd = open(P("w/pub/mine"), O_WRONLY | O_CREAT, 0600);
		if (fd < 0)
			bad |= 64;
		else
			close(fd);
		if (!(unlink(P("w/pub/roots")) < 0 && errno == EPERM))
			bad |= 128;
		if (chmod(P("w/pub/mine"), 0644) < 0)
			bad |= 256;
		_exit(bad);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	if (WIFEXITED(status) && WEXITSTATUS(status))
		fprintf(stderr, "permission checks failed: mask %d\n", WEXITSTATUS(status));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static unsigned mode_of(const char *rel)
{
	struct stat st;

	return stat(P(rel), &st) == 0 ? st.st_mode & 07777 : 0xffff;
}

/* setuid/setgid are cleared as the kernel clears them on a native
 * filesystem (the fs does it: FUSE_HANDLE_KILLPRIV_V2): a write, truncate
 * or O_TRUNC open by a user without CAP_FSETID; any chown. */
static void test_killpriv(void)
{
	static const struct {
		const char *name;
		unsigned mode;
	} f[] = { { "w/kp/suid", 04777 },   { "w/kp/sgid", 02777 },  { "w/kp/sgid-noexec", 02767 },
		  { "w/kp/trunc", 04777 },  { "w/kp/otrunc", 04777 }, { "w/kp/root", 04757 } };
	pid_t pid;
	int status, fd;

	CHECK(mkdir(P("w/kp"), 0755) == 0);
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		CHECK_OK(write_whole(P(f[i].name), "data", 0));
		CHECK(chmod(P(f[i].name), f[i].mode) == 0 && mode_of(f[i].name) == f[i].mode);
	}
	pid = fork();
	if (pid == 0) {
		int bad = 0;

		if (setgroups(0, NULL) < 0 || setgid(4242) < 0 || setuid(4242) < 0)
			_exit(100);
		if (write_whole(P("w/kp/suid"), "x", O_APPEND) < 0)
			bad |= 1;
		if (write_whole(P("w/kp/sgid"), "x", O_APPEND) < 0)
			bad |= 2;
		if (write_whole(P("w/kp/sgid-noexec"), "x", O_APPEND) < 0)
			bad |= 4;
		if (truncate(P("w/kp/trunc"), 1) < 0)
			bad |= 8;
		fd = open(P("w/kp/otrunc"), O_WRONLY | O_TRUNC);
		if (fd < 0)
			bad |= 16;
		else
			close(fd);
		_exit(bad);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(mode_of("w/kp/suid") == 0777);
	CHECK(mode_of("w/kp/sgid") == 0777);
	CHECK(mode_of("w/kp/sgid-noexec") == 0767); /* the writer is not in the group */
	CHECK(mode_of("w/kp/trunc") == 0777);
	CHECK(mode_of("w/kp/otrunc") == 0777);
	/* root (CAP_FSETID) keeps them on write and truncate */
	CHECK_OK(write_whole(P("w/kp/root"), "x", O_APPEND));
	CHECK(truncate(P("w/kp/root"), 2) == 0);
	CHECK(mode_of("w/kp/root") == 04757);
	/* any chown clears setuid; setgid without group-execute stays for root */
	CHECK(chmod(P("w/kp/root"), 06755) == 0 && chown(P("w/kp/root"), 7, 7) == 0);
	CHECK(mode_of("w/kp/root") == 0755);
	CHECK(chmod(P("w/kp/root"), 02745) == 0 && chown(P("w/kp/root"), 8, 8) == 0);
	CHECK(mode_of("w/kp/root") == 02745);
}

int main(int argc, char **argv)
{
	int many = 100000;

	if (argc == 4 && !strcmp(argv[1], "--many")) {
		/* only the big directory: fs-semantics --many DIR COUNT */
		snprintf(M, sizeof(M), "%s", argv[2]);
		CHECK(mkdir(P("w"), 0755) == 0);
		test_many_entries(atoi(argv[3]));
		TEST_MAIN_END();
	}
	if (argc == 3 && !strcmp(argv[1], "--link-max")) {
		snprintf(M, sizeof(M), "%s", argv[2]);
		CHECK(mkdir(P("w"), 0755) == 0);
		test_link_max();
		TEST_MAIN_END();
	}
	if (argc < 3) {
		fprintf(stderr, "usage: fs-semantics MOUNTED_DIR BIG_REF [ENTRIES]\n"
				"       fs-semantics --many DIR ENTRIES\n"
				"       fs-semantics --link-max DIR\n");
		return 2;
	}
	snprintf(M, sizeof(M), "%s", argv[1]);
	if (argc > 3)
		many = atoi(argv[3]);
	CHECK(mkdir(P("w"), 0755) == 0);
	CHECK(mkdir(P("w/pub"), 01777) == 0);
	CHECK(chmod(P("w/pub"), 01777) == 0);
	CHECK_OK(write_whole(P("w/pub/roots"), "r", 0));
	test_open_flags();
	test_rw_offsets();
	test_copy_range(argv[2]);
	test_big_lower(argv[2]);
	test_concurrent_copy_up(argv[2]);
	test_unlink_open();
	test_tmpfile();
	test_rename();
	test_links();
	test_attrs();
	test_xattrs();
	test_misc();
	test_mmap();
	test_sparse();
	test_lower_fallocate();
	test_names();
	test_readdir_stable();
	if (getuid() == 0) {
		test_permissions();
		test_killpriv();
	}
	test_rmdir_emptied();
	if (many)
		test_many_entries(many);
	TEST_MAIN_END();
}
