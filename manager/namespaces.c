/* Namespaces: which ones a sandbox gets, its id maps, root inside, uts, loopback.
 *
 * The user namespace maps ids 0..count-1 inside to host ids base..base+count-1,
 * so root inside is an unprivileged host uid and files it writes carry that
 * uid on the host.  The parent (host root) writes the maps, which lets it map
 * a whole range and keep setgroups() allowed inside; the child then drops the
 * host's supplementary groups, which would otherwise still grant access to
 * host files, and switches to uid/gid 0 of the namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manager/sandbox-int.h"
#include "util/error.h"
#include "util/fileio.h"

int ns_clone_flags(const struct sandbox_spec *spec)
{
	/* CLONE_NEWCGROUP comes later (ns_child_become_root), once the child
	 * sits in its own cgroups, so that they become its cgroup root. */
	int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
	if (spec->net != SANDBOX_NET_HOST)
		flags |= CLONE_NEWNET;
	return flags;
}

static int write_map(pid_t pid, const char *file, uint32_t base, uint32_t count)
{
	char path[64], line[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int len = snprintf(line, sizeof(line), "0 %u %u\n", base, count);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return hb_err(-errno, "open %s: %s", path, strerror(errno));
	int r = write_all(fd, line, (size_t)len);
	close(fd);
	if (r < 0)
		return hb_err(r, "write %s (0 %u %u): %s", path, base, count, strerror(-r));
	return 0;
}

int ns_write_id_maps(pid_t pid, uint32_t base, uint32_t count)
{
	int r = write_map(pid, "uid_map", base, count);
	if (r < 0)
		return r;
	return write_map(pid, "gid_map", base, count);
}

/* exec: enter every namespace of the sandbox's init at once.  Entering
 * its mount namespace also puts us at its (pivoted) root. */
int ns_child_join(struct child_ctx *c)
{
	int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
		    CLONE_NEWCGROUP;
	if (c->join_net)
		flags |= CLONE_NEWNET;
	if (setns(c->join_pidfd, flags) < 0)
		return child_err(c, -errno, "join sandbox namespaces", NULL);
	close(c->join_pidfd);
	c->join_pidfd = -1;
	if (chdir("/") < 0)
		return child_err(c, -errno, "chdir /", NULL);
	return 0;
}

int ns_child_become_root(struct child_ctx *c)
{
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return child_err(c, -errno, "setgroups", NULL);
	if (syscall(SYS_setresgid, 0, 0, 0) < 0)
		return child_err(c, -errno, "setresgid 0", NULL);
	if (syscall(SYS_setresuid, 0, 0, 0) < 0)
		return child_err(c, -errno, "setresuid 0", NULL);
	return 0;
}

int ns_child_set_hostname(struct child_ctx *c)
{
	const char *h = c->spec->hostname;
	if (sethostname(h, strlen(h)) < 0)
		return child_err(c, -errno, "sethostname", h);
	return 0;
}

int ns_child_loopback_up(struct child_ctx *c)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return child_err(c, -errno, "socket for loopback", NULL);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	child_strlcpy(ifr.ifr_name, "lo", sizeof(ifr.ifr_name));
	int r = 0;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		r = child_err(c, -errno, "SIOCGIFFLAGS lo", NULL);
	} else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			r = child_err(c, -errno, "SIOCSIFFLAGS lo up", NULL);
	}
	close(fd);
	return r;
}
