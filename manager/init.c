/* The sandbox's init (PID 1 of its pid namespace), and how commands start.
 *
 * PID 1 has two duties nobody else does: reap orphans (else zombies pile up)
 * and receive signals (the kernel drops signals to a namespace's init that it
 * neither handles nor blocks).  This init blocks every signal, starts the
 * command, then loops on sigwaitinfo(): SIGCHLD reaps everything that
 * exited; any other signal is forwarded to the command.  When the command
 * ends, init writes its raw wait status to the status pipe and exits with
 * its code (128+signal if it was killed); the kernel then kills whatever
 * else is left in the namespace.
 *
 * An init-only sandbox starts no command: its init just reaps and exits on
 * SIGTERM, SIGINT or SIGHUP, and commands are started with sandbox_exec().
 *
 * An exec'd command is started differently (exec_child_run): the process
 * that joined the sandbox's namespaces clones it with CLONE_PARENT, so that
 * it lands in the sandbox's pid namespace as a child of the caller, who
 * waits for and signals it directly; the joiner reports its pid and exits.
 * A waiter in between would be outside the pid namespace, and a command
 * orphaned by its death would go to the host's init, not the sandbox's.
 *
 * The command is started with a raw clone(SIGCHLD): glibc's fork() runs
 * atfork handlers and takes locks a thread of the original caller may have
 * held at the moment of the first clone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

/* execve argv[0], searching PATH when it has no slash (like execvp, without
 * its allocations). */
static int exec_command(struct child_ctx *c)
{
	char *const *argv = c->spec->argv;
	const char *file = argv[0];
	if (strchr(file, '/')) {
		execve(file, argv, c->envp);
		return child_err(c, -errno, "exec", file);
	}
	char path[PATH_MAX];
	size_t flen = strlen(file);
	const char *p = c->path_env;
	int last_err = ENOENT;
	while (p) {
		const char *colon = strchr(p, ':');
		size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
		if (dlen + 1 + flen + 1 <= sizeof(path)) {
			memcpy(path, p, dlen);
			size_t n = dlen;
			if (n == 0)
				path[n++] = '.';
			path[n++] = '/';
			memcpy(path + n, file, flen + 1);
			execve(path, argv, c->envp);
			if (errno != ENOENT && errno != ENOTDIR)
				last_err = errno;
		}
		p = colon ? colon + 1 : NULL;
	}
	return child_err(c, -last_err, "exec", file);
}

_Noreturn static void command_main(struct child_ctx *c)
{
	const struct sandbox_spec *s = c->spec;
	int r;

	/* Signals: default dispositions (the caller may ignore SIGPIPE, which
	 * execve would carry over) and nothing blocked. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* A session of its own: no controlling terminal from outside. */
	if (setsid() < 0)
		child_fail(c, child_err(c, -errno, "setsid", NULL));

	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		if (c->fd_copies[i] >= 0) {
			if (dup2(c->fd_copies[i], i) < 0)
				child_fail(c, child_err(c, -errno, "dup2 passed fd", NULL));
		} else if (i <= 2) {
			int fd = open("/dev/null", O_RDWR);
			if (fd < 0)
				child_fail(c, child_err(c, -errno, "open", "/dev/null"));
			if (fd != i) {
				if (dup2(fd, i) < 0)
					child_fail(c, child_err(c, -errno, "dup2 /dev/null", NULL));
				close(fd);
			}
		}
	}
	/* The copies and the pipes are O_CLOEXEC; dup2 cleared it on targets. */
	if (s->tty && ioctl(0, TIOCSCTTY, 0) < 0)
		child_fail(c, child_err(c, -errno, "make fd 0 the controlling terminal", NULL));
	if ((r = caps_child_set_ids(c, s->uid, s->gid)) < 0)
		child_fail(c, r);
	/* An exec'd command is the caller's child (see exec_child_run); after
	 * the uid change, which would clear it, it may die with the caller. */
	if (c->is_exec && s->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		child_fail(c, child_err(c, -errno, "PR_SET_PDEATHSIG", NULL));
	if (chdir(s->cwd) < 0)
		child_fail(c, child_err(c, -errno, "chdir", s->cwd));
	child_fail(c, exec_command(c));
}

/* The command's wait status as init passes it on: for init-only sandboxes
 * ended by a signal, "killed by that signal". */
_Noreturn static void report_and_exit(struct child_ctx *c, int st)
{
	int32_t raw = st;
	ssize_t n = write(c->status_fd, &raw, sizeof(raw));
	(void)n;
	if (WIFEXITED(st))
		_exit(WEXITSTATUS(st));
	_exit(128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
}

_Noreturn void init_child_run(struct child_ctx *c)
{
	const int init_only = c->spec->init_only;
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);

	long pid = 0;
	if (!init_only) {
		pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (pid < 0)
			child_fail(c, child_err(c, -errno, "start command", NULL));
		if (pid == 0)
			command_main(c);
	}

	/* Only the command (and its descendants) may hold the passed fds and
	 * the error pipe: the caller learns of exec by EOF on the error pipe
	 * and of the end of output by EOF on its own pipes. */
	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		if (c->fd_copies[i] >= 0)
			close(c->fd_copies[i]);
	}
	close(c->err_fd);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			if (!init_only)
				kill((pid_t)pid, sig);
			else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
				report_and_exit(c, sig); /* W_EXITCODE(0, sig) */
			continue;
		}
		for (;;) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);
			if (w <= 0)
				break;
			if (!init_only && w == pid)
				report_and_exit(c, st);
		}
	}
}

_Noreturn void exec_child_run(struct child_ctx *c)
{
	long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		child_fail(c, child_err(c, -errno, "start command", NULL));
	if (pid == 0)
		command_main(c);
	int32_t v = (int32_t)pid;
	ssize_t n = write(c->status_fd, &v, sizeof(v));
	(void)n;
	_exit(0);
}
