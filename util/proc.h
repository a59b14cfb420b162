/* What the kernel says of a process in /proc. */
#pragma once
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Read /proc/PID/stat into buf and point *fields at its third field (the
 * state letter), past the command name, which may hold spaces and ')'.
 * @return 0, -ENOENT when there is no such process, or another -errno. */
int proc_stat_fields(pid_t pid, char *buf, size_t size, const char **fields);

/* Is pid a live process?  One that has exited is not, even while it waits to
 * be reaped (a daemonized process's reaper is init, which on some VMs takes a
 * second).  A process we may not signal (EPERM) counts as alive. */
bool proc_alive(pid_t pid);

/* The resident memory of pid (0: this process), /proc/PID/statm's resident
 * pages: what it keeps in RAM, its mapped binary and libraries included.
 * @return 0, -ENOENT when there is no such process, or another -errno. */
int proc_rss_bytes(pid_t pid, uint64_t *out);

/* posix_spawnattr_init, with nothing blocked and every signal at its
 * default in the child.  A mask and ignored dispositions survive execve: a
 * daemon that blocks SIGTERM/SIGINT/SIGHUP (for a signalfd) and ignores
 * SIGPIPE would otherwise hand that on, and its helpers would ignore `kill`.
 * @return 0, or -errno with a message (nothing to destroy then). */
int proc_spawnattr_init(posix_spawnattr_t *at);
