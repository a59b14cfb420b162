/* hiberbox-sandbox-init: the program the sandbox's PID 1 runs.
 *
 * The library's child sets the sandbox up as a copy of the caller, then
 * execs this small static program (embedded in the library, run from a
 * sealed memfd), so that PID 1 holds none of the caller's memory: no
 * secrets of the daemon, and no copy-on-write pages pinned for the
 * sandbox's lifetime.  It then does what init.c describes.
 *
 * Its arguments come from the library (child.c, exec_sandbox_init), never
 * from a user:
 *   hiberbox-init STATUS_FD ERR_FD INIT_ONLY UID GID CWD FDMAP PATH -- CMD...
 * FDMAP lists SANDBOX_MAX_FDS descriptors (or -1), comma-separated: the
 * source of the command's fd 0, 1, ...  The environment is the command's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

extern char **environ;

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* What ps in the sandbox shows for PID 1 is its name, not our arguments
 * (descriptor numbers, the command's PATH): what is kept of them is copied
 * out, then the strings /proc/1/cmdline reads are cleared.  The kernel laid
 * them out one after the other; anything else is left alone. */
static void hide_arguments(int argc, char **argv, struct sandbox_spec *spec, struct child_ctx *c)
{
	char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
	int n = argc - 10;
	char **cmd = calloc((size_t)n + 1, sizeof(*cmd));

	prctl(PR_SET_NAME, "hiberbox-init", 0, 0, 0); /* not the memfd's name */
	for (int i = 1; i < argc; i++)
		if (argv[i] != argv[i - 1] + strlen(argv[i - 1]) + 1)
			return;
	if (!cmd || !(spec->cwd = strdup(spec->cwd)) || !(c->path_env = strdup(c->path_env)))
		return; /* out of memory: keep them where they are */
	for (int i = 0; i < n; i++)
		if (!(cmd[i] = strdup(argv[10 + i])))
			return;
	spec->argv = cmd;
	memset(argv[0], 0, (size_t)(end - argv[0]));
	child_strlcpy(argv[0], "hiberbox-init", (size_t)(end - argv[0]));
}

int main(int argc, char **argv)
{
	static struct sandbox_spec spec;
	static struct child_ctx c;
	long status_fd, err_fd, init_only, uid, gid;

	/* without a report channel there is nobody to tell */
	if (argc < 10 || parse_int(argv[2], 0, 1 << 20, &err_fd) < 0)
		return 127;
	c.err_fd = (int)err_fd;
	c.spec = &spec;
	if (parse_int(argv[1], 0, 1 << 20, &status_fd) < 0 ||
	    parse_int(argv[3], 0, 1, &init_only) < 0 ||
	    parse_int(argv[4], 0, UINT32_MAX, &uid) < 0 ||
	    parse_int(argv[5], 0, UINT32_MAX, &gid) < 0 || argv[6][0] != '/' ||
	    strcmp(argv[9], "--") != 0)
		child_fail(&c, child_err(&c, -EINVAL, "sandbox init arguments", NULL));
	c.status_fd = (int)status_fd;
	const char *p = argv[7];
	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < -1 || v > (1 << 20) || (*end != ',' && *end != '\0') ||
		    (*end == '\0' && i != SANDBOX_MAX_FDS - 1))
			child_fail(&c, child_err(&c, -EINVAL, "sandbox init fd map", argv[7]));
		c.fd_copies[i] = (int)v;
		p = end + (*end == ',');
	}
	spec.init_only = (int)init_only;
	spec.uid = (uint32_t)uid;
	spec.gid = (uint32_t)gid;
	spec.cwd = argv[6];
	spec.argv = &argv[10];
	c.path_env = argv[8];
	c.envp = environ;
	hide_arguments(argc, argv, &spec, &c);

	/* The library cleared close-on-exec to hand these over; the command
	 * must not inherit them. */
	int fds[SANDBOX_MAX_FDS + 2];
	int n = 0;
	fds[n++] = c.status_fd;
	fds[n++] = c.err_fd;
	for (int i = 0; i < SANDBOX_MAX_FDS; i++) {
		if (c.fd_copies[i] >= 0)
			fds[n++] = c.fd_copies[i];
	}
	for (int i = 0; i < n; i++) {
		if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0)
			child_fail(&c, child_err(&c, -errno, "sandbox init: fd", NULL));
	}
	/* Processes of the sandbox run as our uid; none may read or write
	 * PID 1's memory through /proc. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		child_fail(&c, child_err(&c, -errno, "PR_SET_DUMPABLE", NULL));
	if (!init_only && !spec.argv[0])
		child_fail(&c, child_err(&c, -EINVAL, "sandbox init: no command", NULL));
	init_child_run(&c);
}
