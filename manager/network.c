/* Sandbox networks: mode names, and the slirp4netns helper of mode nat.
 *
 * The helper is started with three descriptors of ours: a pipe it writes
 * one byte to once the tap device is up and configured (--ready-fd), and a
 * pipe whose write end only we hold (--exit-fd): it ends when that end
 * closes, which nat_helper_stop does and the kernel does should the caller
 * die, so no helper outlives its owner.  --enable-sandbox (its own mount
 * namespace, capabilities dropped) and --enable-seccomp narrow what a flaw
 * in its packet handling, which reads what the sandbox sends, could do.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manager/network.h"
#include "util/error.h"
#include "util/fileio.h"

extern char **environ;

#define NAT_HELPER "slirp4netns"
#define NAT_MTU "65520" /* as large as slirp4netns allows: fewer, larger packets */
#define NAT_READY_TIMEOUT_MS 30000
#define NAT_READY_FD 3 /* the helper's descriptors */
#define NAT_EXIT_FD 4
#define NAT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct nat_helper {
	pid_t pid;
	int exit_fd; /* write end of the helper's exit pipe */
	char cgroup[72]; /* its groups' name, or "" */
};

static const char *const network_names[] = {
	[SANDBOX_NET_NONE] = "none",
	[SANDBOX_NET_HOST] = "host",
	[SANDBOX_NET_NAT] = "nat",
};

const char *sandbox_network_name(enum sandbox_network net)
{
	if ((unsigned)net >= sizeof(network_names) / sizeof(network_names[0]))
		return NULL;
	return network_names[net];
}

int sandbox_network_parse(const char *name, enum sandbox_network *out)
{
	for (unsigned i = 0; name && i < sizeof(network_names) / sizeof(network_names[0]); i++) {
		if (strcmp(name, network_names[i]) == 0) {
			*out = (enum sandbox_network)i;
			return 0;
		}
	}
	return hb_err(-EINVAL, "network must be \"none\", \"host\" or \"nat\", not \"%s\"",
		      name ? name : "");
}

/* Append the components of rel (relative to the path already in out, an
 * absolute one) to out, taking "." and ".." as a path lookup would with no
 * links on the way ("/.." is "/"). */
static int path_join_lexical(char *out, size_t size, const char *rel)
{
	size_t len = strlen(out);

	while (*rel) {
		size_t n = strcspn(rel, "/");

		if (n == 2 && rel[0] == '.' && rel[1] == '.') {
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 1)
				len--; /* the '/' before the name taken back */
			out[len] = 0;
		} else if (n > 0 && !(n == 1 && rel[0] == '.')) {
			if (len + (len > 1) + n + 1 > size)
				return -ENAMETOOLONG;
			if (len > 1)
				out[len++] = '/';
			memcpy(out + len, rel, n);
			len += n;
			out[len] = 0;
		}
		rel += n + (rel[n] == '/');
	}
	return 0;
}

int nat_resolv_conf_target(const char *root, char *out, size_t size)
{
	static const char plain[] = "/etc/resolv.conf";
	char link[PATH_MAX];
	int etc, r;
	ssize_t n;

	if (size < sizeof(plain))
		return hb_err(-ENAMETOOLONG, "resolv.conf target: no room");
	memcpy(out, plain, sizeof(plain));
	/* only a real /etc of the root's own: a linked one the bind refuses */
	etc = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (etc >= 0) {
		int dir = openat(etc, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(etc);
		etc = dir;
	}
	if (etc < 0)
		return 0;
	n = readlinkat(etc, "resolv.conf", link, sizeof(link) - 1);
	close(etc);
	if (n <= 0)
		return 0; /* not a link (or none): bound where it is */
	link[n] = 0;
	snprintf(out, size, "%s", link[0] == '/' ? "/" : "/etc");
	if ((r = path_join_lexical(out, size, link)) < 0 || strcmp(out, "/") == 0) {
		memcpy(out, plain, sizeof(plain));
		return r < 0 ? hb_err(r, "/etc/resolv.conf links to a path too long") : 0;
	}
	return 0;
}

int nat_helper_check(void)
{
	const char *path = getenv("PATH");
	char dir[4096];

	if (!path || !path[0])
		path = NAT_DEFAULT_PATH;
	while (*path) {
		size_t n = strcspn(path, ":");
		int len = snprintf(dir, sizeof(dir), "%.*s/" NAT_HELPER, (int)n, path);

		if (n > 0 && len > 0 && (size_t)len < sizeof(dir) && access(dir, X_OK) == 0)
			return 0;
		path += n + (path[n] == ':');
	}
	return hb_err(-ENOPKG, "network nat needs " NAT_HELPER ", which is not installed "
		      "(install the package " NAT_HELPER_PACKAGE ")");
}

/* The helper's spawn: our descriptors at its NAT_READY_FD and NAT_EXIT_FD,
 * stdin and stdout on /dev/null, stderr (its errors) ours; every signal at
 * its default and none blocked (a daemon blocks and ignores some, and both
 * survive execve). */
static int spawn_helper(pid_t target, int ready_w, int exit_r, pid_t *pid)
{
	char target_s[16], ready_s[16], exit_s[16];
	const char *argv[] = { NAT_HELPER, "--configure", "--mtu=" NAT_MTU,
			       "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
			       ready_s, exit_s, target_s, "tap0", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int r;

	snprintf(target_s, sizeof(target_s), "%d", (int)target);
	snprintf(ready_s, sizeof(ready_s), "--ready-fd=%d", NAT_READY_FD);
	snprintf(exit_s, sizeof(exit_s), "--exit-fd=%d", NAT_EXIT_FD);
	sigemptyset(&none);
	sigfillset(&all);
	if ((r = posix_spawnattr_init(&at)) != 0)
		return hb_err(-r, "posix_spawnattr_init: %s", strerror(r));
	if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
		posix_spawnattr_destroy(&at);
		return hb_err(-r, "posix_spawn_file_actions_init: %s", strerror(r));
	}
	if ((r = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
	    (r = posix_spawnattr_setsigdefault(&at, &all)) == 0 &&
	    (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, ready_w, NAT_READY_FD)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, exit_r, NAT_EXIT_FD)) == 0)
		r = posix_spawnp(pid, NAT_HELPER, &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r != 0)
		return hb_err(-r, "start " NAT_HELPER ": %s", strerror(r));
	return 0;
}

/* Wait for the helper's ready byte.  EOF: it ended without configuring the
 * network (its own error went to our stderr). */
static int wait_ready(int fd, pid_t pid)
{
	uint64_t deadline = now_ns() + (uint64_t)NAT_READY_TIMEOUT_MS * 1000000;
	char byte;

	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return hb_err(-ETIMEDOUT, NAT_HELPER " %d did not bring the network up "
				      "within %d ms", (int)pid, NAT_READY_TIMEOUT_MS);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (pr < 0 && errno != EINTR)
			return hb_err_sys(-errno, "poll");
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, &byte, 1);
		if (n == 1)
			return 0;
		if (n == 0)
			return hb_err(-EIO, NAT_HELPER " ended before the network was up "
				      "(its error is in the log)");
		if (errno != EINTR)
			return hb_err_sys(-errno, "read from " NAT_HELPER);
	}
}

/* Move *fd to a number above the helper's targets, so that placing one
 * cannot overwrite the other before it is placed. */
static int move_above_targets(int *fd)
{
	int moved;

	if (*fd > NAT_EXIT_FD)
		return 0;
	if ((moved = fcntl(*fd, F_DUPFD_CLOEXEC, NAT_EXIT_FD + 1)) < 0)
		return hb_err_sys(-errno, "fcntl F_DUPFD");
	close(*fd);
	*fd = moved;
	return 0;
}

/* The helper's groups, once it has ended; r: the error being reported
 * (0: none), whose message a failure here must not replace. */
static void remove_groups(struct nat_helper *h, int r)
{
	char msg[512];

	if (!h->cgroup[0])
		return;
	hb_err_save(msg, sizeof(msg));
	sandbox_remove_cgroups(h->cgroup);
	hb_err_clear();
	if (r < 0)
		hb_err(r, "%s", msg);
	h->cgroup[0] = 0;
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int nat_helper_start(pid_t target, const char *cgroup_name, const struct sandbox_limits *lim,
		     struct nat_helper **out)
{
	int ready[2] = { -1, -1 }, exitp[2] = { -1, -1 };
	struct nat_helper *h;
	pid_t pid = -1;
	int r;

	if ((r = nat_helper_check()) < 0)
		return r;
	if (cgroup_name && strlen(cgroup_name) >= sizeof(h->cgroup))
		return hb_err(-ENAMETOOLONG, "cgroup name '%s' too long", cgroup_name);
	if (!(h = calloc(1, sizeof(*h))))
		return hb_err(-ENOMEM, "out of memory");
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(exitp, O_CLOEXEC) < 0) {
		r = hb_err_sys(-errno, "pipe");
		goto fail;
	}
	if ((r = move_above_targets(&ready[1])) < 0 || (r = move_above_targets(&exitp[0])) < 0 ||
	    (r = spawn_helper(target, ready[1], exitp[0], &pid)) < 0)
		goto fail;
	close(ready[1]);
	close(exitp[0]);
	ready[1] = exitp[0] = -1;
	if (cgroup_name) { /* named first: a confinement that failed half-way is undone too */
		snprintf(h->cgroup, sizeof(h->cgroup), "%s", cgroup_name);
		r = sandbox_cgroup_confine(cgroup_name, lim, pid);
	}
	if (r < 0 || (r = wait_ready(ready[0], pid)) < 0) {
		kill_and_reap(pid);
		remove_groups(h, r);
		goto fail;
	}
	close(ready[0]);
	h->pid = pid;
	h->exit_fd = exitp[1];
	*out = h;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (exitp[i] >= 0)
			close(exitp[i]);
	}
	free(h);
	return r;
}

pid_t nat_helper_pid(const struct nat_helper *h)
{
	return h->pid;
}

void nat_helper_stop(struct nat_helper *h)
{
	if (!h)
		return;
	close(h->exit_fd);
	kill_and_reap(h->pid);
	remove_groups(h, 0);
	free(h);
}
