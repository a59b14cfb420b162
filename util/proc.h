/* What the kernel says of a process in /proc. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Read /proc/PID/stat into buf and point *fields at its third field (the
 * state letter), past the command name, which may hold spaces and ')'.
 * @return 0, -ENOENT when there is no such process, or another -errno. */
int proc_stat_fields(pid_t pid, char *buf, size_t size, const char **fields);

/* Is pid a live process?  One that has exited is not, even while it waits to
 * be reaped (a daemonized process's reaper is init, which on some VMs takes a
 * second).  A process we may not signal (EPERM) counts as alive. */
bool proc_alive(pid_t pid);
