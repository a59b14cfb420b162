/* Sandboxes, the caller's side: specs, spawning, exec, waiting, signals,
 * freezing.
 *
 * start_child() prepares everything that needs memory (the environment, the
 * seccomp programs and the init program's memfd, both made once per
 * process; for a new sandbox its cgroups) before clone(); the child half
 * (child.c) only reads that memory.  The handshake:
 *
 *   parent                                child (new namespaces)
 *   clone ─────────────────────────────▶  waits on the sync socket
 *   write uid/gid maps, join cgroups
 *   send 1 byte ───────────────────────▶  setup, execveat(init) → command
 *   read err pipe until EOF  ◀──────────  a child_report on failure, EOF on
 *                                         the command's execve
 *
 * The sandbox's init later writes the command's wait status on the status
 * pipe, read by sandbox_wait().  For an exec the child joins the running
 * sandbox instead, starts the command as our child (CLONE_PARENT), writes
 * its pid on the status pipe and exits.  pidfds make waiting with a timeout
 * and signalling free of pid-reuse races.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manager/sandbox-int.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_NOFILE_SOFT 1024
#define SANDBOX_STR_MAX 4096 /* hostnames, cwd, env entries, paths */

struct sandbox_proc {
	pid_t pid; /* host pid: the sandbox's init, or an exec'd command */
	int pidfd;
	int status_fd; /* read end: the command's wait status */
	int reaped;
	struct sandbox_exit exit;
	int oom_fd;           /* exec'd command: its sandbox's OOM kill count */
	unsigned oom_at_start;
};

struct sandbox {
	struct sandbox_proc init;
	struct sandbox_cgroup *cg;
	enum sandbox_network net;
	int frozen;
	char name[SANDBOX_NAME_MAX + 1];
};

static atomic_uint sandbox_counter;

/* The sandbox-init program in a sealed memfd, made once per process. */
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
static pthread_once_t init_fd_once = PTHREAD_ONCE_INIT;
static int init_fd = -1;
static int init_fd_err;

/* The seccomp programs are the same for every sandbox: compiled once. */
static pthread_once_t seccomp_once = PTHREAD_ONCE_INIT;
static struct sandbox_seccomp seccomp_progs;
static int seccomp_err;
static char seccomp_errmsg[256];

static void build_seccomp(void)
{
	seccomp_err = seccomp_filters_build(&seccomp_progs);
	if (seccomp_err < 0)
		hb_err_save(seccomp_errmsg, sizeof(seccomp_errmsg));
}

static void make_init_fd(void)
{
	int fd = memfd_create("hiberbox-sandbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	if (fd < 0 && errno == EINVAL) /* kernels before 6.3 know no MFD_EXEC */
		fd = memfd_create("hiberbox-sandbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		init_fd_err = errno;
		return;
	}
	int r = write_all(fd, sandbox_init_blob, sandbox_init_blob_len);
	if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
						F_SEAL_SEAL) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		init_fd_err = -r;
		return;
	}
	init_fd = fd;
}

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

static int check_name(const char *name)
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
	return 0;
}

int sandbox_spec_set_name(struct sandbox_spec *s, const char *name)
{
	int r = check_name(name);
	if (r < 0)
		return r;
	memcpy(s->name, name, strlen(name) + 1);
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
	if (net != SANDBOX_NET_NONE && net != SANDBOX_NET_HOST && net != SANDBOX_NET_NAT)
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

int sandbox_spec_set_test_go_delay(struct sandbox_spec *s, unsigned ms)
{
	s->test_go_delay_ms = ms;
	return 0;
}

int sandbox_spec_set_tty(struct sandbox_spec *s, int on)
{
	s->tty = !!on;
	return 0;
}

int sandbox_spec_set_init_only(struct sandbox_spec *s, int on)
{
	s->init_only = !!on;
	return 0;
}

pid_t sandbox_pid(const struct sandbox *sb)
{
	return sb->init.pid;
}

int sandbox_root_open(const struct sandbox *sb)
{
	char path[64];
	int fd, r;

	snprintf(path, sizeof(path), "/proc/%d/root", (int)sb->init.pid);
	if ((fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = errno == ENOENT ? -ESRCH : -errno; /* a zombie has no root */
		return hb_err(r, "the root of sandbox %s (its init, pid %d): %s", sb->name,
			      (int)sb->init.pid, r == -ESRCH ? "its init has ended" : strerror(-r));
	}
	/* The pidfd pins init's pid while init exists, even as a zombie: if it
	 * is there after the open, the root opened was init's and not that of
	 * a process that reused the pid. */
	if (sb->init.pidfd < 0 || syscall(SYS_pidfd_send_signal, sb->init.pidfd, 0, NULL, 0) < 0) {
		close(fd);
		return hb_err(-ESRCH, "the root of sandbox %s: its init (pid %d) has ended", sb->name,
			      (int)sb->init.pid);
	}
	return fd;
}

const char *sandbox_name(const struct sandbox *sb)
{
	return sb->name;
}

const char *sandbox_cgroup_dir(const struct sandbox *sb, const char *controller)
{
	return sb->cg && controller ? cgroup_dir(sb->cg, controller) : NULL;
}

int sandbox_usage(const struct sandbox *sb, struct sandbox_usage *u)
{
	if (!sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	cgroup_usage(sb->cg, u);
	return 0;
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
	/* The command or its directory are the caller's; other steps are the
	 * sandbox's own making. */
	bool callers = !strcmp(rep.step, "exec") || !strcmp(rep.step, "chdir");

	return hb_err(-err, "%s%s%s%s: %s", callers ? "" : "sandbox setup: ", rep.step,
		      rep.detail[0] ? " " : "", rep.detail, strerror(err));
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

/* The caller's argv and environment strings (fields 48-51 of
 * /proc/self/stat), for the child to wipe in its copy.  Best effort. */
static void find_caller_strings(struct child_ctx *c)
{
	struct buf b = { .max = 8192 };
	if (read_file(AT_FDCWD, "/proc/self/stat", 8192, &b) < 0 || buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return;
	}
	const char *p = strrchr((const char *)b.data, ')');
	unsigned long long v[4] = { 0 };
	int field = 2, got = 0;
	while (p && *p && got < 4) {
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
		field++;
		if (field >= 48 && field <= 51)
			v[got++] = strtoull(p, NULL, 10);
	}
	buf_free(&b);
	if (got == 4 && v[1] > v[0] && v[3] > v[2]) {
		c->argv_area = (char *)(uintptr_t)v[0];
		c->argv_len = (size_t)(v[1] - v[0]);
		c->env_area = (char *)(uintptr_t)v[2];
		c->env_len = (size_t)(v[3] - v[2]);
	}
}

/* Start a child: a new sandbox's init (join NULL, cg its fresh cgroups) or
 * a command exec'd into join (through a short-lived joiner that makes it
 * our child).  Fills p on success. */
static pid_t clone_plain(int flags)
{
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

/* clone() into new namespaces, the new user namespace owned by host uid
 * owner rather than by us.  The kernel counts what the sandbox's users hold
 * of the per-user resources (inotify instances and watches, POSIX message
 * queue bytes, pending signals) against the owner of their namespace too,
 * up to the owner's own limit: owned by root, one sandbox taking its 128
 * inotify instances left every host root process and every other sandbox
 * without any.  Owned by the sandbox's own base uid, it has a budget of its
 * own.  Only this thread's effective uid changes (a raw setresuid, not
 * libc's, which would change every thread's); the mm's dumpable flag,
 * which an euid change resets for the whole process, is put back. */
static pid_t clone_owned_by(int flags, uid_t owner)
{
	int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), saved;
	pid_t pid;

	if (geteuid() != 0)
		return clone_plain(flags);
	if (syscall(SYS_setresuid, -1, owner, -1) < 0)
		return -1;
	pid = clone_plain(flags);
	saved = errno;
	if (pid == 0)
		return 0;
	/* back to euid 0 (our real and saved uid): always permitted */
	if (syscall(SYS_setresuid, -1, 0, -1) < 0)
		abort();
	if (dumpable > 0)
		prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
	errno = saved;
	return pid;
}

static int start_child(const struct sandbox_spec *spec, struct sandbox *join,
		       struct sandbox_cgroup *cg, struct sandbox_proc *p)
{
	char **envp = NULL;
	int sync_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, st_p[2] = { -1, -1 };
	pid_t pid = -1;
	int pidfd = -1;
	int r;

	pthread_once(&seccomp_once, build_seccomp);
	if (seccomp_err < 0)
		return hb_err(seccomp_err, "%s", seccomp_errmsg);
	struct child_ctx c = { .spec = spec, .seccomp = &seccomp_progs, .join_pidfd = -1,
			       .init_fd = -1 };
	if (!join) {
		pthread_once(&init_fd_once, make_init_fd);
		if (init_fd < 0)
			return hb_err(-init_fd_err, "sandbox init program in a memfd: %s",
				      strerror(init_fd_err));
		c.init_fd = init_fd;
	} else {
		c.is_exec = 1;
		c.join_pidfd = join->init.pidfd;
		c.join_net = join->net != SANDBOX_NET_HOST;
	}
	find_caller_strings(&c);
	if ((r = build_env(spec, &envp, &c.path_env)) < 0)
		goto fail;
	c.envp = envp;
	/* sync is a socket pair so that a child that died early costs the
	 * caller an EPIPE, not a SIGPIPE (MSG_NOSIGNAL) */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_p) < 0 ||
	    pipe2(err_p, O_CLOEXEC) < 0 || pipe2(st_p, O_CLOEXEC) < 0) {
		r = hb_err(-errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	c.sync_fd = sync_p[0];
	c.err_fd = err_p[1];
	c.status_fd = st_p[1];

	int flags = join ? 0 : ns_clone_flags(spec);
	pid = join ? clone_plain(flags) : clone_owned_by(flags, spec->id_base);
	if (pid < 0) {
		r = hb_err(-errno, "clone%s: %s", join ? "" : " into new namespaces", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child_main(&c);

	close_fd(&sync_p[0]);
	close_fd(&err_p[1]);
	close_fd(&st_p[1]);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		r = hb_err(-errno, "pidfd_open: %s", strerror(errno));
		goto fail_child;
	}
	if (!join && (r = ns_write_id_maps(pid, spec->id_base, spec->id_count)) < 0)
		goto fail_child;
	if ((r = cgroup_add_pid(cg, pid)) < 0)
		goto fail_child;
	if (spec->test_go_delay_ms) {
		struct timespec ts = { spec->test_go_delay_ms / 1000,
				       (long)(spec->test_go_delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	char go = 1;
	if (send(sync_p[1], &go, 1, MSG_NOSIGNAL) != 1) {
		/* the child is gone: its report says why */
		r = read_child_report(err_p[0], pid);
		if (r == 0)
			r = hb_err(-ECHILD, "sandbox child died during setup");
		goto fail_child;
	}
	close_fd(&sync_p[1]);
	r = read_child_report(err_p[0], pid);
	if (join) {
		/* the joiner exits on its own once the command is started (or
		 * failed); the command is our child, reported by pid */
		if (r == -ETIMEDOUT)
			kill(pid, SIGKILL);
		while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
			;
		pid_t cmd = 0;
		int32_t v;
		if (read_full(st_p[0], &v, sizeof(v)) == (ssize_t)sizeof(v) && v > 0)
			cmd = (pid_t)v;
		close_fd(&pidfd);
		if (r == 0 && cmd > 0) {
			pidfd = (int)syscall(SYS_pidfd_open, cmd, 0);
			if (pidfd < 0)
				r = hb_err(-errno, "pidfd_open: %s", strerror(errno));
		} else if (r == 0) {
			r = hb_err(-ECHILD, "exec: no command was started");
		}
		if (r < 0) {
			if (cmd > 0) {
				if (r == -ETIMEDOUT)
					kill(cmd, SIGKILL);
				while (waitpid(cmd, NULL, __WALL) < 0 && errno == EINTR)
					;
			}
			pid = -1;
			goto fail;
		}
		pid = cmd;
		close_fd(&st_p[0]); /* the command's status comes from waitpid */
	} else if (r < 0) {
		goto fail_child;
	}
	close_fd(&err_p[0]);
	free(envp);
	p->pid = pid; /* the rest (oom_fd) is the caller's */
	p->pidfd = pidfd;
	p->status_fd = st_p[0];
	return 0;

fail_child:
	abort_child(pid);
fail:
	close_fd(&pidfd);
	close_fd(&sync_p[0]);
	close_fd(&sync_p[1]);
	close_fd(&err_p[0]);
	close_fd(&err_p[1]);
	close_fd(&st_p[0]);
	close_fd(&st_p[1]);
	free(envp);
	return r;
}

static int proc_wait(struct sandbox_proc *p, int timeout_ms, const char *name)
{
	if (p->reaped)
		return 0;
	struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };
	uint64_t deadline = now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
	for (;;) {
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = now_ns();
			left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
		}
		int pr = poll(&pf, 1, left);
		if (pr > 0)
			break;
		if (pr == 0)
			return hb_err(-ETIMEDOUT, "%s still running", name);
		if (errno != EINTR)
			return hb_err(-errno, "poll pidfd: %s", strerror(errno));
	}
	/* waitid on the pidfd: no pid reuse, and ECHILD tells an adopted
	 * sandbox (not our child: its status is lost) from our own */
	siginfo_t si;
	int st = 0, known = 1;
	memset(&si, 0, sizeof(si));
	while (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | __WALL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != ECHILD)
			return hb_err(-errno, "waitid %d: %s", (int)p->pid, strerror(errno));
		known = 0;
		break;
	}
	if (known)
		st = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) : si.si_status;
	p->reaped = 1;
	/* init's report of the command's status; without one (init was
	 * killed), its own status stands for the command's.  An exec'd
	 * command has no status pipe: it is our child. */
	if (p->status_fd >= 0) {
		int32_t raw;
		int fl = fcntl(p->status_fd, F_GETFL);
		if (fl >= 0)
			fcntl(p->status_fd, F_SETFL, fl | O_NONBLOCK);
		if (read(p->status_fd, &raw, sizeof(raw)) == (ssize_t)sizeof(raw)) {
			st = raw;
			known = 1;
		}
		close_fd(&p->status_fd);
	}
	if (!known) {
		p->exit = (struct sandbox_exit){ .code = -1, .signal = 0 };
		return 0;
	}
	if (WIFEXITED(st)) {
		p->exit.code = WEXITSTATUS(st);
		p->exit.signal = 0;
	} else {
		p->exit.code = -1;
		p->exit.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	}
	return 0;
}

static int proc_kill(struct sandbox_proc *p, int sig, const char *name)
{
	if (p->reaped)
		return hb_err(-ESRCH, "%s has ended", name);
	if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
		return hb_err(-errno, "signal %d to %s: %s", sig, name, strerror(errno));
	return 0;
}

int sandbox_spawn(const struct sandbox_spec *spec, struct sandbox **out)
{
	if (!spec || !spec->argv || !spec->argv[0])
		return hb_err(-EINVAL, "sandbox: no command");
	if (spec->tty) /* init's command runs from the init program, which takes no terminal */
		return hb_err(-EINVAL, "sandbox: a terminal is for sandbox_exec only");
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return hb_err(-ENOMEM, "out of memory");
	sb->init.pidfd = sb->init.status_fd = sb->init.oom_fd = -1;
	sb->net = spec->net;
	if (spec->name[0])
		memcpy(sb->name, spec->name, sizeof(sb->name));
	else
		snprintf(sb->name, sizeof(sb->name), "sb-%d-%u", (int)getpid(),
			 atomic_fetch_add(&sandbox_counter, 1));
	int r = cgroup_create(&sb->cg, sb->name, &spec->lim);
	if (r == 0)
		r = start_child(spec, NULL, sb->cg, &sb->init);
	if (r < 0) {
		if (sb->cg) {
			char msg[512];
			hb_err_save(msg, sizeof(msg));
			cgroup_destroy(sb->cg);
			hb_err(r, "%s", msg);
		}
		free(sb);
		return r;
	}
	*out = sb;
	return 0;
}

int sandbox_wait(struct sandbox *sb, int timeout_ms, struct sandbox_exit *ex)
{
	char what[SANDBOX_NAME_MAX + 16];
	snprintf(what, sizeof(what), "sandbox %s", sb->name);
	int r = proc_wait(&sb->init, timeout_ms, what);
	if (r < 0)
		return r;
	if (sb->cg)
		sb->init.exit.oom_kills = cgroup_oom_kills(sb->cg);
	if (ex)
		*ex = sb->init.exit;
	if (sb->cg) {
		r = cgroup_destroy(sb->cg);
		sb->cg = NULL;
	}
	return r;
}

int sandbox_kill(struct sandbox *sb, int sig)
{
	char what[SANDBOX_NAME_MAX + 16];
	snprintf(what, sizeof(what), "sandbox %s", sb->name);
	return proc_kill(&sb->init, sig, what);
}

int sandbox_freeze(struct sandbox *sb)
{
	if (sb->init.reaped || !sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	int r = cgroup_set_frozen(sb->cg, 1);
	if (r == 0)
		sb->frozen = 1;
	return r;
}

int sandbox_thaw(struct sandbox *sb)
{
	if (sb->init.reaped || !sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	int r = cgroup_set_frozen(sb->cg, 0);
	if (r == 0)
		sb->frozen = 0;
	return r;
}

void sandbox_free(struct sandbox *sb)
{
	if (!sb)
		return;
	if (!sb->init.reaped) {
		/* frozen tasks do not die until thawed */
		if (sb->cg)
			cgroup_set_frozen(sb->cg, 0);
		sandbox_kill(sb, SIGKILL);
		sandbox_wait(sb, -1, NULL);
	}
	if (sb->cg)
		cgroup_destroy(sb->cg);
	close_fd(&sb->init.pidfd);
	close_fd(&sb->init.status_fd);
	free(sb);
}

int sandbox_exec(struct sandbox *sb, const struct sandbox_spec *spec, struct sandbox_proc **out)
{
	if (!spec || !spec->argv || !spec->argv[0])
		return hb_err(-EINVAL, "exec: no command");
	if (sb->init.reaped || !sb->cg)
		return hb_err(-ESRCH, "sandbox %s has ended", sb->name);
	if (sb->frozen) /* the joiner would freeze on entering its cgroup */
		return hb_err(-EBUSY, "sandbox %s is frozen: thaw it first", sb->name);
	struct sandbox_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return hb_err(-ENOMEM, "out of memory");
	p->oom_fd = cgroup_oom_counter_open(sb->cg);
	p->oom_at_start = cgroup_oom_counter_read(p->oom_fd);
	int r = start_child(spec, sb, sb->cg, p);
	if (r < 0) {
		close_fd(&p->oom_fd);
		free(p);
		return r;
	}
	*out = p;
	return 0;
}

pid_t sandbox_proc_pid(const struct sandbox_proc *p)
{
	return p->pid;
}

int sandbox_proc_wait(struct sandbox_proc *p, int timeout_ms, struct sandbox_exit *ex)
{
	int r = proc_wait(p, timeout_ms, "exec'd command");
	if (r == 0 && p->oom_fd >= 0) {
		unsigned now = cgroup_oom_counter_read(p->oom_fd);
		p->exit.oom_kills = now > p->oom_at_start ? now - p->oom_at_start : 0;
		close_fd(&p->oom_fd);
	}
	if (r == 0 && ex)
		*ex = p->exit;
	return r;
}

int sandbox_proc_kill(struct sandbox_proc *p, int sig)
{
	return proc_kill(p, sig, "exec'd command");
}

void sandbox_proc_free(struct sandbox_proc *p)
{
	if (!p)
		return;
	if (!p->reaped) {
		proc_kill(p, SIGKILL, "exec'd command");
		proc_wait(p, -1, "exec'd command");
	}
	close_fd(&p->pidfd);
	close_fd(&p->status_fd);
	close_fd(&p->oom_fd);
	free(p);
}

/* Is pid the init of sandbox name?  Its pid inside is 1 and it sits in
 * that sandbox's cgroup. */
static int check_adoptee(pid_t pid, const char *name)
{
	char path[64];
	struct buf b = { .max = 65536 };
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	int r = read_file(AT_FDCWD, path, 65536, &b);
	if (r == 0)
		r = buf_append(&b, "", 1);
	if (r < 0) {
		buf_free(&b);
		return hb_err(r == -ENOENT ? -ESRCH : r, "read %s: %s", path, strerror(-r));
	}
	const char *ns = strstr((const char *)b.data, "\nNSpid:");
	const char *eol = ns ? strchr(ns + 1, '\n') : NULL;
	const char *last = NULL;
	if (ns && eol) {
		for (const char *q = ns + 8; q < eol; q++) {
			if ((*q == ' ' || *q == '\t') && q + 1 < eol && q[1] != ' ' && q[1] != '\t')
				last = q + 1;
		}
	}
	int is_init = last && last[0] == '1' && (last + 1 == eol);
	buf_free(&b);
	if (!is_init)
		return hb_err(-ESRCH, "process %d is not the init of a sandbox", (int)pid);

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	b = (struct buf){ .max = 65536 };
	r = read_file(AT_FDCWD, path, 65536, &b);
	if (r == 0)
		r = buf_append(&b, "", 1);
	if (r < 0) {
		buf_free(&b);
		return hb_err(r == -ENOENT ? -ESRCH : r, "read %s: %s", path, strerror(-r));
	}
	char want[SANDBOX_NAME_MAX + 16];
	snprintf(want, sizeof(want), "/hiberbox/%s\n", name);
	int in_group = strstr((const char *)b.data, want) != NULL;
	buf_free(&b);
	if (!in_group)
		return hb_err(-ESRCH, "process %d is not in the cgroup of sandbox %s", (int)pid, name);
	return 0;
}

int sandbox_adopt(const char *name, pid_t pid, struct sandbox **out)
{
	int r = check_name(name);
	if (r < 0)
		return r;
	if (pid <= 1)
		return hb_err(-EINVAL, "adopt %s: bad pid %d", name, (int)pid);
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return hb_err(-ENOMEM, "out of memory");
	sb->init.status_fd = sb->init.oom_fd = -1;
	sb->init.pid = pid;
	memcpy(sb->name, name, strlen(name) + 1);
	/* the pidfd pins the process: if it is still alive after the checks,
	 * they were about it and not about a process that reused its pid */
	sb->init.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (sb->init.pidfd < 0) {
		r = hb_err(-errno, "adopt %s: process %d: %s", name, (int)pid, strerror(errno));
		goto fail;
	}
	if ((r = check_adoptee(pid, name)) < 0)
		goto fail;
	if (syscall(SYS_pidfd_send_signal, sb->init.pidfd, 0, NULL, 0) < 0) {
		r = hb_err(-ESRCH, "adopt %s: process %d has ended", name, (int)pid);
		goto fail;
	}
	struct stat mine, theirs;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if (stat("/proc/self/ns/net", &mine) < 0 || stat(path, &theirs) < 0) {
		r = hb_err(-errno, "adopt %s: network namespace: %s", name, strerror(errno));
		goto fail;
	}
	sb->net = mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev ? SANDBOX_NET_HOST
										 : SANDBOX_NET_NONE;
	if ((r = cgroup_open(&sb->cg, name)) < 0)
		goto fail;
	if ((r = cgroup_is_frozen(sb->cg, &sb->frozen)) < 0)
		goto fail;
	*out = sb;
	return 0;
fail:
	sandbox_release(sb);
	return r;
}

/* Remove a sandbox's groups by name, killing what is in them first (kill)
 * or trusting they are empty, or about to be. */
static int remove_cgroups(const char *name, bool kill)
{
	struct sandbox_cgroup *cg;
	int r = check_name(name);

	if (r < 0)
		return r;
	if ((r = cgroup_open(&cg, name)) == -ENOENT) {
		hb_err_clear();
		return 0;
	}
	if (r < 0)
		return r;
	if (kill)
		cgroup_kill_all(cg);
	return cgroup_destroy(cg);
}

int sandbox_remove_cgroups(const char *name)
{
	return remove_cgroups(name, false);
}

int sandbox_kill_cgroups(const char *name)
{
	return remove_cgroups(name, true);
}

int sandbox_list_cgroups(const char *prefix, int (*fn)(const char *name, void *arg), void *arg)
{
	return cgroup_list_names(prefix, fn, arg);
}

int sandbox_cgroup_confine(const char *name, const struct sandbox_limits *lim, pid_t pid)
{
	struct sandbox_cgroup *cg;
	int r = check_name(name);

	if (r < 0)
		return r;
	/* groups a previous helper left (its daemon died) are taken again */
	if ((r = cgroup_create(&cg, name, lim)) == -EEXIST) {
		hb_err_clear();
		if ((r = cgroup_open(&cg, name)) == 0 && (r = cgroup_set_limits(cg, lim)) < 0)
			cgroup_forget(cg);
	}
	if (r < 0)
		return r;
	r = cgroup_add_pid(cg, pid);
	cgroup_forget(cg);
	return r < 0 ? hb_err(r, "cgroup %s: moving %d in: %s", name, (int)pid, strerror(-r)) : 0;
}

void sandbox_release(struct sandbox *sb)
{
	if (!sb)
		return;
	close_fd(&sb->init.pidfd);
	close_fd(&sb->init.status_fd);
	cgroup_forget(sb->cg);
	free(sb);
}
