/* The sandbox child between clone() and execve(): the order of the steps.
 *
 * The clone child starts in new namespaces as the host's root with every
 * capability of its new user namespace, drops host descriptors (only the
 * passed ones survive, moved out of the way), waits until the parent has
 * written its uid/gid maps and put it into its cgroups, then, in this order:
 * becomes root of the namespace (host uid = id base), builds the mount tree
 * and pivots into it, sets hostname and loopback, applies rlimits, bounds
 * capabilities, sets no_new_privs, loads the seccomp filters (last, since
 * they forbid mount and friends), and execs the sandbox-init program
 * (init-main.c), which starts the command.  For sandbox_exec() the child
 * joins the namespaces of a running sandbox instead of building them and
 * starts the command itself (exec_child_run).
 *
 * Nothing here allocates: see sandbox-int.h for why.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

/* Move one of our own descriptors above the command's fd numbers: a caller
 * started with stdin closed gets pipe fd 0, which placing the command's
 * fd 0 would otherwise overwrite. */
static int move_high(struct child_ctx *c, int *fd)
{
	if (*fd < 0 || *fd >= SANDBOX_MAX_FDS)
		return 0;
	int d = fcntl(*fd, F_DUPFD_CLOEXEC, SANDBOX_MAX_FDS);
	if (d < 0)
		return child_err(c, -errno, "move fd", NULL);
	close(*fd);
	*fd = d;
	return 0;
}

/* Move the passed descriptors above every target number (so that placing
 * them later cannot clobber one another), then close everything else except
 * the report pipes, the go-ahead socket and what the next steps need. */
static int close_host_fds(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	int keep[SANDBOX_MAX_FDS + 4];
	unsigned nkeep = 0;
	int r;

	/* err_fd first: a failure after it has moved is still reported */
	if ((r = move_high(c, &c->err_fd)) < 0 || (r = move_high(c, &c->status_fd)) < 0 ||
	    (r = move_high(c, c->is_exec ? &c->join_pidfd : &c->init_fd)) < 0)
		return r;

	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		c->fd_copies[i] = -1;
		if (s->fds[i] < 0)
			continue;
		int d = fcntl(s->fds[i], F_DUPFD_CLOEXEC, SANDBOX_MAX_FDS);
		if (d < 0)
			return child_err(c, -errno, "dup passed fd", NULL);
		c->fd_copies[i] = d;
		keep[nkeep++] = d;
	}
	keep[nkeep++] = c->err_fd;
	keep[nkeep++] = c->status_fd;
	keep[nkeep++] = c->sync_fd;
	if (c->is_exec)
		keep[nkeep++] = c->join_pidfd;
	else
		keep[nkeep++] = c->init_fd;
	/* insertion sort: a handful of entries */
	for (unsigned i = 1; i < nkeep; i++) {
		int v = keep[i];
		unsigned j = i;
		while (j > 0 && keep[j - 1] > v) {
			keep[j] = keep[j - 1];
			j--;
		}
		keep[j] = v;
	}
	unsigned lo = 0;
	for (unsigned i = 0; i <= nkeep; i++) {
		unsigned hi = i < nkeep ? (unsigned)keep[i] : ~0u;
		if (hi > lo) {
			if (syscall(SYS_close_range, lo, hi - 1, 0) < 0)
				return child_err(c, -errno, "close_range", NULL);
		}
		lo = hi + 1;
		if (i == nkeep)
			break;
	}
	return 0;
}

/* The child is a copy of the caller: its argv and environment strings
 * (/proc/<pid>/cmdline and environ read them from this memory) could carry
 * secrets such as AWS keys.  The copy is ours to scribble on. */
static void wipe_caller_strings(struct child_ctx *c)
{
	if (c->argv_area && c->argv_len) {
		memset(c->argv_area, 0, c->argv_len);
		child_strlcpy(c->argv_area, "hiberbox-init", c->argv_len);
	}
	if (c->env_area && c->env_len)
		memset(c->env_area, 0, c->env_len);
}

/* Decimal, without snprintf (not async-signal-safe). */
static char *format_int(char *buf, size_t size, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && n < (int)sizeof(tmp));
	size_t i = 0;
	if (v < 0 && i + 1 < size)
		buf[i++] = '-';
	while (n > 0 && i + 1 < size)
		buf[i++] = tmp[--n];
	buf[i] = '\0';
	return buf;
}

/* Become the sandbox-init program (see init-main.c for its arguments),
 * handing over the report pipes and the passed descriptors. */
static int exec_sandbox_init(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	static const size_t fixed = 10;
	const char *argv[SANDBOX_MAX_ARGS + 11];
	char num[5][24];
	char fdmap[SANDBOX_MAX_FDS * 12];
	size_t len = 0;

	int handed[SANDBOX_MAX_FDS + 2];
	int nh = 0;
	handed[nh++] = c->status_fd;
	handed[nh++] = c->err_fd;
	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		char one[24];
		format_int(one, sizeof(one), c->fd_copies[i]);
		len += child_strlcpy(fdmap + len, one, sizeof(fdmap) - len);
		if (i + 1 < SANDBOX_MAX_FDS)
			len += child_strlcpy(fdmap + len, ",", sizeof(fdmap) - len);
		if (c->fd_copies[i] >= 0)
			handed[nh++] = c->fd_copies[i];
	}
	for (int i = 0; i < nh; i++) {
		if (fcntl(handed[i], F_SETFD, 0) < 0)
			return child_err(c, -errno, "hand fds to sandbox init", NULL);
	}
	argv[0] = "hiberbox-init";
	argv[1] = format_int(num[0], sizeof(num[0]), c->status_fd);
	argv[2] = format_int(num[1], sizeof(num[1]), c->err_fd);
	argv[3] = s->init_only ? "1" : "0";
	argv[4] = format_int(num[2], sizeof(num[2]), (long)s->uid);
	argv[5] = format_int(num[3], sizeof(num[3]), (long)s->gid);
	argv[6] = s->cwd;
	argv[7] = fdmap;
	argv[8] = c->path_env;
	argv[9] = "--";
	size_t n = fixed;
	for (size_t i = 0; !s->init_only && s->argv[i] && i < SANDBOX_MAX_ARGS; i++)
		argv[n++] = s->argv[i];
	argv[n] = NULL;
	syscall(SYS_execveat, c->init_fd, "", argv, c->envp, AT_EMPTY_PATH);
	return child_err(c, -errno, "exec sandbox init", NULL);
}

static int apply_rlimits(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	for (unsigned i = 0; i < s->n_rlimits; i++) {
		if (setrlimit(s->rlimits[i].resource, &s->rlimits[i].rl) < 0)
			return child_err(c, -errno, "setrlimit", NULL);
	}
	return 0;
}

_Noreturn void child_main(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	int r;
	char b;

	/* No handler of the caller may run in this copy of it. */
	sigset_t all;
	sigfillset(&all);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, _NSIG / 8);

	if (s->die_with_parent) {
		/* A parent that died before this line is caught by the EOF
		 * below (getppid() is 0 across a pid namespace either way). */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			child_fail(c, child_err(c, -errno, "PR_SET_PDEATHSIG", NULL));
	}
	/* Before the wait: until then this copy of the caller holds all its
	 * descriptors, the other end of the go-ahead among them, so that EOF
	 * never came should the caller die (and its lock, its API socket and
	 * the NAT helpers' exit fds, which end them, stayed held). */
	wipe_caller_strings(c);
	if ((r = close_host_fds(c)) < 0)
		child_fail(c, r);
	/* The parent writes one byte when the uid map and cgroups are in place;
	 * EOF means it gave up or died, and then there is nobody to report to. */
	ssize_t n;
	do
		n = read(c->sync_fd, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(127);
	close(c->sync_fd);
	if (c->is_exec) {
		/* exec into a running sandbox: everything is set up already */
		if ((r = ns_child_join(c)) < 0 || (r = ns_child_become_root(c)) < 0)
			child_fail(c, r);
	} else {
		/* the cgroup namespace now, so that its root is our own group */
		if (unshare(CLONE_NEWCGROUP) < 0)
			child_fail(c, child_err(c, -errno, "unshare cgroup namespace", NULL));
		if ((r = ns_child_become_root(c)) < 0 || (r = mounts_child_setup(c)) < 0 ||
		    (r = ns_child_set_hostname(c)) < 0)
			child_fail(c, r);
		if (s->net != SANDBOX_NET_HOST && (r = ns_child_loopback_up(c)) < 0)
			child_fail(c, r);
	}
	if ((r = apply_rlimits(c)) < 0)
		child_fail(c, r);
	if ((r = caps_child_limit(c)) < 0)
		child_fail(c, r);
	if ((r = seccomp_child_apply(c)) < 0)
		child_fail(c, r);
	if (c->is_exec)
		exec_child_run(c);
	child_fail(c, exec_sandbox_init(c));
}
