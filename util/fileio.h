/* Small POSIX I/O helpers that retry on EINTR and short transfers.
 * All return 0 or a negative errno (no message recorded: callers know the path). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

int write_all(int fd, const void *data, size_t len);
int pwrite_all(int fd, const void *data, size_t len, off_t off);
/* write_all on a socket, with MSG_NOSIGNAL: a peer that hangs up is -EPIPE,
 * not a SIGPIPE, in a process that does not ignore it. */
int send_all(int fd, const void *data, size_t len);
/* Read exactly len bytes at off; -EBADMSG (truncated) if the file ends first. */
int pread_exact(int fd, void *data, size_t len, off_t off);
/* Read up to len bytes; returns the number read (short only at end of file). */
ssize_t read_full(int fd, void *data, size_t len);
/* Read a whole file (at most max bytes, else -EFBIG) into out. */
int read_file(int dirfd, const char *path, size_t max, struct buf *out);
/* The same from an open fd, from its current offset to its end. */
int read_fd(int fd, size_t max, struct buf *out);
/* Write a file atomically: <path>.tmp.<pid>.<rand>, fsync, rename, fsync dir.
 * WRITE_NOREPLACE: an existing path is left alone and -EEXIST returned.
 * WRITE_NO_SYNC: no fsyncs, for state that means nothing after the machine
 * went down (locks, a live mount's info): readers still see the old or the
 * whole new file, and each fsync costs milliseconds on a busy disk. */
#define WRITE_NOREPLACE 0x1
#define WRITE_NO_SYNC 0x2
int write_file_atomic(int dirfd, const char *path, const void *data, size_t len, int flags);
/* mkdir -p relative to dirfd (AT_FDCWD for cwd); existing dirs are fine.
 * Only the directories the path resolves to are made: a ".." after a name
 * that does not exist takes that name back ("out/../out2" makes out2, not
 * out), while one after an existing name (a link too) steps out of it as
 * the kernel would. */
int mkdir_p(int dirfd, const char *path, mode_t mode);
/* The same, and open the directory (O_RDONLY | O_DIRECTORY): a path that
 * needed its ".." taken back names nothing the kernel could open after.
 * Returns the descriptor or a negative errno. */
int mkdir_p_open(int dirfd, const char *path, mode_t mode);
/* "." or "..": the entries every directory listing skips. */
static inline bool name_is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}
/* Whether the directory at path (relative to dirfd) has no entries but "."
 * and "..".  @return 0 with *empty set, or -errno. */
int dir_is_empty(int dirfd, const char *path, bool *empty);
/* fsync the directory holding path (relative to dirfd). */
int fsync_parent(int dirfd, const char *path);
/* Random bytes from getrandom(). */
int random_bytes(void *out, size_t len);
/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void hex_format(const uint8_t *in, size_t len, char *out);
/* Parse exactly 2*len hex digits. @return 0 or -EINVAL. */
int hex_parse(const char *in, uint8_t *out, size_t len);
/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
