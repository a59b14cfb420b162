/* Opening a path below a tree's root without ever leaving the tree.
 *
 * Trees we read (snapshot create) or write (restore) may change under us:
 * a directory on a path that held a file when we looked may be a symbolic
 * link by the time we open the path, and a plain openat would follow it out
 * of the tree (reading a file from elsewhere into a snapshot, writing
 * through it on restore).  openat2 with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS refuses that (ELOOP or EXDEV).
 */
#pragma once
#include <sys/types.h>

/* openat(rootfd, path, flags | O_CLOEXEC | O_NOFOLLOW, mode), refusing any
 * symbolic link on the way and any path that leaves rootfd.  (Kernels
 * without openat2, before 5.6: only the last component is checked.)
 * @return an fd, or a negative errno (no message). */
int open_beneath(int rootfd, const char *path, int flags, mode_t mode);
