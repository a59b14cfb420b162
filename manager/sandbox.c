/* Sandboxes, the caller's side: specs, spawning, waiting, signals, freezing.
 *
 * sandbox_spawn() prepares everything that needs memory (the seccomp
 * programs, the environment, the cgroups) before clone(); the child half
 * (child.c) then only reads that memory.  The handshake:
 *
 *   parent                                child (new namespaces)
 *   clone ─────────────────────────────▶  waits on sync pipe
 *   write uid/gid maps, join cgroups
 *   write 1 byte on sync ──────────────▶  setup... init... execve(command)
 *   read err pipe until EOF  ◀──────────  a child_report on failure, EOF on exec
 *
 * The child's init later writes the command's wait status on the status
 * pipe, read by sandbox_wait().  A pidfd makes waiting with a timeout and
 * signalling free of pid-reuse races.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manager/sandbox-int.h"
#include "util/error.h"
#include "util/fileio.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_NOFILE_SOFT 1024
#define SANDBOX_STR_MAX 4096 /* hostnames, cwd, env entries, paths */

struct sandbox {
	pid_t pid;
	int pidfd;
	int status_fd; /* read end */
	int reaped;
	struct sandbox_exit exit;
	struct sandbox_cgroup *cg;
	char name[SANDBOX_NAME_MAX + 1];
};

static atomic_uint sandbox_counter;

static int dup_str(const char *s, const char *what, char **out)
{
	if (!s)
		return hb_err(-EINVAL, "%s: missing", what);
	if (strnlen(s, SANDBOX_STR_MAX) >= SANDBOX_STR_MAX)
		return hb_err(-ENAMETOOLONG, "%s: longer than %d bytes", what, SANDBOX_STR_MAX - 1);
	if (!(*out = strdup(s)))
		return hb_err(-ENOMEM, "out of memory");
	return 0;
}

static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int sandbox_spec_new(struct sandbox_spec **out, const char *rootdir)
{
	if (!rootdir || rootdir[0] != '/')
		return hb_err(-EINVAL, "sandbox root must be an absolute path");
	struct sandbox_spec *s = calloc(1, sizeof(*s));
	if (!s)
		return hb_err(-ENOMEM, "out of memory");
	int r = dup_str(rootdir, "root directory", &s->rootdir);
	if (r < 0) {
		free(s);
		return r;
	}
	s->cwd = strdup("/");
	s->hostname = strdup("sandbox");
	s->envp = calloc(1, sizeof(char *));
	s->argv = calloc(2, sizeof(char *));
	if (s->argv)
		s->argv[0] = strdup("/bin/sh");
	if (!s->cwd || !s->hostname || !s->envp || !s->argv || !s->argv[0]) {
		sandbox_spec_free(s);
		return hb_err(-ENOMEM, "out of memory");
	}
	s->id_base = SANDBOX_DEFAULT_ID_BASE;
	s->id_count = SANDBOX_DEFAULT_ID_COUNT;
	s->net = SANDBOX_NET_NONE;
	s->tmp_bytes = SANDBOX_DEFAULT_TMP_BYTES;
	for (int i = 0; i < SANDBOX_MAX_FDS; i++)
		s->fds[i] = -1;
	struct rlimit cur;
	s->rlimits[s->n_rlimits++] = (struct sandbox_rlimit){ RLIMIT_CORE, { 0, 0 } };
	if (getrlimit(RLIMIT_NOFILE, &cur) == 0) {
		rlim_t soft = DEFAULT_NOFILE_SOFT < cur.rlim_max ? DEFAULT_NOFILE_SOFT : cur.rlim_max;
		s->rlimits[s->n_rlimits++] =
			(struct sandbox_rlimit){ RLIMIT_NOFILE, { soft, cur.rlim_max } };
	}
	*out = s;
	return 0;
}

void sandbox_spec_free(struct sandbox_spec *s)
{
	if (!s)
		return;
	free(s->rootdir);
	free_strv(s->argv);
	free_strv(s->envp);
	free(s->cwd);
	free(s->hostname);
	for (unsigned i = 0; i < s->n_binds; i++) {
		free(s->binds[i].host);
		free(s->binds[i].inside);
	}
	free(s);
}

int sandbox_spec_set_argv(struct sandbox_spec *s, const char *const *argv)
{
	size_t n = 0;
	while (argv && argv[n]) {
		if (++n > SANDBOX_MAX_ARGS)
			return hb_err(-E2BIG, "more than %d arguments", SANDBOX_MAX_ARGS);
	}
	if (n == 0 || argv[0][0] == '\0')
		return hb_err(-EINVAL, "empty command");
	char **v = calloc(n + 1, sizeof(char *));
	if (!v)
		return hb_err(-ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		/* arguments may be long; the kernel enforces ARG_MAX at exec */
		v[i] = strdup(argv[i]);
		if (!v[i]) {
			free_strv(v);
			return hb_err(-ENOMEM, "out of memory");
		}
	}
	free_strv(s->argv);
	s->argv = v;
	return 0;
}

int sandbox_spec_add_env(struct sandbox_spec *s, const char *kv)
{
	if (!kv || !strchr(kv, '=') || kv[0] == '=')
		return hb_err(-EINVAL, "environment entry must be KEY=VALUE");
	if (s->envc >= SANDBOX_MAX_ENV)
		return hb_err(-E2BIG, "more than %d environment entries", SANDBOX_MAX_ENV);
	char **v = realloc(s->envp, (s->envc + 2) * sizeof(char *));
	if (!v)
		return hb_err(-ENOMEM, "out of memory");
	s->envp = v;
	if (!(v[s->envc] = strdup(kv)))
		return hb_err(-ENOMEM, "out of memory");
	v[++s->envc] = NULL;
	return 0;
}

static int replace_str(char **slot, const char *val, const char *what)
{
	char *d;
	int r = dup_str(val, what, &d);
	if (r < 0)
		return r;
	free(*slot);
	*slot = d;
	return 0;
}

int sandbox_spec_set_cwd(struct sandbox_spec *s, const char *dir)
{
	if (!dir || dir[0] != '/')
		return hb_err(-EINVAL, "working directory must be absolute");
	return replace_str(&s->cwd, dir, "working directory");
}

int sandbox_spec_set_hostname(struct sandbox_spec *s, const char *name)
{
	if (!name || !name[0] || strlen(name) > 64)
		return hb_err(-EINVAL, "hostname must be 1 to 64 bytes");
	return replace_str(&s->hostname, name, "hostname");
}

int sandbox_spec_set_name(struct sandbox_spec *s, const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > SANDBOX_NAME_MAX || name[0] == '.')
		return hb_err(-EINVAL, "sandbox name must be 1 to %d bytes, not starting with '.'",
			      SANDBOX_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return hb_err(-EINVAL, "sandbox name '%s': only A-Z a-z 0-9 _ . -", name);
	}
	memcpy(s->name, name, n + 1);
	return 0;
}

int sandbox_spec_set_id_map(struct sandbox_spec *s, uint32_t base, uint32_t count)
{
	if (base == 0)
		return hb_err(-EINVAL, "id map base 0 would make root inside root outside");
	if (count == 0 || (uint64_t)base + count > UINT32_MAX)
		return hb_err(-EINVAL, "id map %u+%u out of range", base, count);
	s->id_base = base;
	s->id_count = count;
	return 0;
}

int sandbox_spec_set_user(struct sandbox_spec *s, uint32_t uid, uint32_t gid)
{
	s->uid = uid;
	s->gid = gid;
	return 0;
}

int sandbox_spec_set_network(struct sandbox_spec *s, enum sandbox_network net)
{
	if (net != SANDBOX_NET_NONE && net != SANDBOX_NET_HOST)
		return hb_err(-EINVAL, "unknown network mode %d", (int)net);
	s->net = net;
	return 0;
}

int sandbox_spec_set_limits(struct sandbox_spec *s, const struct sandbox_limits *lim)
{
	if (lim->memory_bytes && lim->memory_bytes < ((uint64_t)4 << 20))
		return hb_err(-EINVAL, "memory limit below 4 MiB");
	if (lim->pids == 1)
		return hb_err(-EINVAL, "pids limit 1 leaves no room for the command");
	s->lim = *lim;
	return 0;
}

int sandbox_spec_set_rlimit(struct sandbox_spec *s, int resource, uint64_t soft, uint64_t hard)
{
	if (resource < 0 || resource >= RLIM_NLIMITS || soft > hard)
		return hb_err(-EINVAL, "bad rlimit %d (%llu/%llu)", resource,
			      (unsigned long long)soft, (unsigned long long)hard);
	struct rlimit rl = { (rlim_t)soft, (rlim_t)hard };
	for (unsigned i = 0; i < s->n_rlimits; i++) {
		if (s->rlimits[i].resource == resource) {
			s->rlimits[i].rl = rl;
			return 0;
		}
	}
	if (s->n_rlimits >= SANDBOX_MAX_RLIMITS)
		return hb_err(-E2BIG, "too many rlimits");
	s->rlimits[s->n_rlimits++] = (struct sandbox_rlimit){ resource, rl };
	return 0;
}

int sandbox_spec_set_tmpfs_tmp(struct sandbox_spec *s, uint64_t bytes)
{
	s->tmp_bytes = bytes;
	return 0;
}

static int path_is_clean(const char *p)
{
	/* absolute, no "." or ".." components */
	if (!p || p[0] != '/')
		return 0;
	for (const char *c = p; *c;) {
		while (*c == '/')
			c++;
		const char *e = strchrnul(c, '/');
		size_t l = (size_t)(e - c);
		if ((l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		c = e;
	}
	return 1;
}

int sandbox_spec_add_ro_bind(struct sandbox_spec *s, const char *host, const char *inside)
{
	if (!path_is_clean(host) || !path_is_clean(inside) || strspn(inside, "/") == strlen(inside))
		return hb_err(-EINVAL, "bind %s -> %s: paths must be absolute, without . or ..",
			      host ? host : "(null)", inside ? inside : "(null)");
	if (s->n_binds >= SANDBOX_MAX_BINDS)
		return hb_err(-E2BIG, "more than %d binds", SANDBOX_MAX_BINDS);
	struct sandbox_bind *b = &s->binds[s->n_binds];
	int r = dup_str(host, "bind source", &b->host);
	if (r == 0)
		r = dup_str(inside, "bind target", &b->inside);
	if (r < 0) {
		free(b->host);
		b->host = NULL;
		return r;
	}
	s->n_binds++;
	return 0;
}

int sandbox_spec_pass_fd(struct sandbox_spec *s, int host_fd, int child_fd)
{
	if (child_fd < 0 || child_fd >= SANDBOX_MAX_FDS)
		return hb_err(-EINVAL, "child fd %d outside 0..%d", child_fd, SANDBOX_MAX_FDS - 1);
	if (host_fd < 0 || fcntl(host_fd, F_GETFD) < 0)
		return hb_err(-EBADF, "fd %d to pass is not open", host_fd);
	s->fds[child_fd] = host_fd;
	return 0;
}

int sandbox_spec_set_die_with_parent(struct sandbox_spec *s, int on)
{
	s->die_with_parent = !!on;
	return 0;
}

pid_t sandbox_pid(const struct sandbox *sb)
{
	return sb->pid;
}

const char *sandbox_name(const struct sandbox *sb)
{
	return sb->name;
}

const char *sandbox_cgroup_dir(const struct sandbox *sb, const char *controller)
{
	return sb->cg && controller ? cgroup_dir(sb->cg, controller) : NULL;
}

/* The environment the command gets: the spec's, plus PATH if missing. */
static int build_env(const struct sandbox_spec *s, char ***envp, const char **path)
{
	*path = NULL;
	for (size_t i = 0; i < s->envc; i++) {
		if (strncmp(s->envp[i], "PATH=", 5) == 0)
			*path = s->envp[i] + 5;
	}
	char **v = calloc(s->envc + 2, sizeof(char *));
	if (!v)
		return hb_err(-ENOMEM, "out of memory");
	memcpy(v, s->envp, s->envc * sizeof(char *));
	if (!*path) {
		v[s->envc] = (char *)"PATH=" DEFAULT_PATH;
		*path = DEFAULT_PATH;
	}
	*envp = v;
	return 0;
}

/* Read the child's report until EOF, with a deadline.  0 = exec happened. */
static int read_child_report(int fd, pid_t pid)
{
	struct child_report rep;
	size_t got = 0;
	uint64_t deadline = now_ns() + (uint64_t)SANDBOX_SETUP_TIMEOUT_MS * 1000000;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return hb_err(-ETIMEDOUT, "sandbox setup took more than %d ms",
				      SANDBOX_SETUP_TIMEOUT_MS);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (pr < 0 && errno != EINTR)
			return hb_err(-errno, "poll: %s", strerror(errno));
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, (char *)&rep + got, sizeof(rep) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hb_err(-errno, "read sandbox report: %s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == sizeof(rep))
			break;
	}
	if (got == 0)
		return 0;
	if (got != sizeof(rep))
		return hb_err(-EPROTO, "sandbox %d: truncated setup report", (int)pid);
	rep.step[sizeof(rep.step) - 1] = '\0';
	rep.detail[sizeof(rep.detail) - 1] = '\0';
	int err = rep.err > 0 && rep.err < 4096 ? rep.err : EIO;
	return hb_err(-err, "sandbox setup: %s%s%s: %s", rep.step, rep.detail[0] ? " " : "",
		      rep.detail, strerror(err));
}

/* Kill and reap a child that failed half-way. */
static void abort_child(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int sandbox_spawn(const struct sandbox_spec *spec, struct sandbox **out)
{
	struct sandbox_seccomp sc = { 0 };
	struct sandbox *sb = NULL;
	char **envp = NULL;
	int sync_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, st_p[2] = { -1, -1 };
	pid_t pid = -1;
	int r;

	if (!spec || !spec->argv || !spec->argv[0])
		return hb_err(-EINVAL, "sandbox: no command");
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return hb_err(-ENOMEM, "out of memory");
	sb->pidfd = sb->status_fd = -1;
	if (spec->name[0])
		memcpy(sb->name, spec->name, sizeof(sb->name));
	else
		snprintf(sb->name, sizeof(sb->name), "sb-%d-%u", (int)getpid(),
			 atomic_fetch_add(&sandbox_counter, 1));

	struct child_ctx c = { .spec = spec, .seccomp = &sc };
	if ((r = build_env(spec, &envp, &c.path_env)) < 0)
		goto fail;
	c.envp = envp;
	if ((r = seccomp_filters_build(&sc)) < 0)
		goto fail;
	if ((r = cgroup_create(&sb->cg, sb->name, &spec->lim)) < 0)
		goto fail;
	/* sync is a socket pair so that a child that died early costs the
	 * caller an EPIPE, not a SIGPIPE (MSG_NOSIGNAL) */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_p) < 0 ||
	    pipe2(err_p, O_CLOEXEC) < 0 ||
	    pipe2(st_p, O_CLOEXEC) < 0) {
		r = hb_err(-errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	c.sync_fd = sync_p[0];
	c.err_fd = err_p[1];
	c.status_fd = st_p[1];

	pid = (pid_t)syscall(SYS_clone, ns_clone_flags(spec) | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		r = hb_err(-errno, "clone into new namespaces: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child_main(&c);

	close_fd(&sync_p[0]);
	close_fd(&err_p[1]);
	close_fd(&st_p[1]);
	sb->pid = pid;
	sb->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (sb->pidfd < 0) {
		r = hb_err(-errno, "pidfd_open: %s", strerror(errno));
		goto fail_child;
	}
	if ((r = ns_write_id_maps(pid, spec->id_base, spec->id_count)) < 0 ||
	    (r = cgroup_add_pid(sb->cg, pid)) < 0)
		goto fail_child;
	char go = 1;
	if (send(sync_p[1], &go, 1, MSG_NOSIGNAL) != 1) {
		/* the child is gone: its report says why */
		r = read_child_report(err_p[0], pid);
		if (r == 0)
			r = hb_err(-ECHILD, "sandbox child died during setup");
		goto fail_child;
	}
	close_fd(&sync_p[1]);
	if ((r = read_child_report(err_p[0], pid)) < 0)
		goto fail_child;
	close_fd(&err_p[0]);
	sb->status_fd = st_p[0];
	free(envp);
	seccomp_filters_free(&sc);
	*out = sb;
	return 0;

fail_child:
	abort_child(pid);
fail:
	close_fd(&sync_p[0]);
	close_fd(&sync_p[1]);
	close_fd(&err_p[0]);
	close_fd(&err_p[1]);
	close_fd(&st_p[0]);
	close_fd(&st_p[1]);
	if (sb->pidfd >= 0)
		close(sb->pidfd);
	if (sb->cg) {
		char msg[512];
		hb_err_save(msg, sizeof(msg));
		cgroup_destroy(sb->cg);
		hb_err(r, "%s", msg);
	}
	free(sb);
	free(envp);
	seccomp_filters_free(&sc);
	return r;
}

int sandbox_wait(struct sandbox *sb, int timeout_ms, struct sandbox_exit *ex)
{
	if (!sb->reaped) {
		struct pollfd p = { .fd = sb->pidfd, .events = POLLIN };
		uint64_t deadline = now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
		for (;;) {
			int left = -1;
			if (timeout_ms >= 0) {
				uint64_t now = now_ns();
				left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
			}
			int pr = poll(&p, 1, left);
			if (pr > 0)
				break;
			if (pr == 0)
				return hb_err(-ETIMEDOUT, "sandbox %s still running", sb->name);
			if (errno != EINTR)
				return hb_err(-errno, "poll pidfd: %s", strerror(errno));
		}
		int st;
		while (waitpid(sb->pid, &st, __WALL) < 0) {
			if (errno != EINTR)
				return hb_err(-errno, "waitpid %d: %s", (int)sb->pid, strerror(errno));
		}
		sb->reaped = 1;
		/* init's report of the command's status; without one (init was
		 * killed), init's own status stands for the command's */
		int32_t raw;
		int fl = fcntl(sb->status_fd, F_GETFL);
		fcntl(sb->status_fd, F_SETFL, fl | O_NONBLOCK);
		if (read(sb->status_fd, &raw, sizeof(raw)) == (ssize_t)sizeof(raw))
			st = raw;
		close_fd(&sb->status_fd);
		if (WIFEXITED(st)) {
			sb->exit.code = WEXITSTATUS(st);
			sb->exit.signal = 0;
		} else {
			sb->exit.code = -1;
			sb->exit.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
		}
		int r = cgroup_destroy(sb->cg);
		sb->cg = NULL;
		if (r < 0) {
			if (ex)
				*ex = sb->exit;
			return r;
		}
	}
	if (ex)
		*ex = sb->exit;
	return 0;
}

int sandbox_kill(struct sandbox *sb, int sig)
{
	if (sb->reaped)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	if (syscall(SYS_pidfd_send_signal, sb->pidfd, sig, NULL, 0) < 0)
		return hb_err(-errno, "signal %d to sandbox %s: %s", sig, sb->name, strerror(errno));
	return 0;
}

int sandbox_freeze(struct sandbox *sb)
{
	if (sb->reaped || !sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	return cgroup_set_frozen(sb->cg, 1);
}

int sandbox_thaw(struct sandbox *sb)
{
	if (sb->reaped || !sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	return cgroup_set_frozen(sb->cg, 0);
}

void sandbox_free(struct sandbox *sb)
{
	if (!sb)
		return;
	if (!sb->reaped) {
		/* frozen tasks do not die until thawed */
		if (sb->cg)
			cgroup_set_frozen(sb->cg, 0);
		sandbox_kill(sb, SIGKILL);
		sandbox_wait(sb, -1, NULL);
	}
	if (sb->cg)
		cgroup_destroy(sb->cg);
	close_fd(&sb->pidfd);
	close_fd(&sb->status_fd);
	free(sb);
}
