/* sandbox-run: run one command in a sandbox, for tests and by hand.
 *
 *   sandbox-run [options] ROOTDIR -- CMD [ARG...]
 *     --memory BYTES  --pids N  --cpu-millis N  --net none|host
 *     --bind HOST:INSIDE (read-only)  --env K=V  --cwd DIR  --user UID:GID
 *     --id-map BASE:COUNT  --name NAME  --no-tmpfs
 *
 * stdin, stdout and stderr are passed through; the exit status is the
 * command's (128+signal if it was killed).  A test helper, not the CLI:
 * the daemon will own sandboxes for users.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/sandbox.h"
#include "util/error.h"

static int usage(void)
{
	fprintf(stderr, "usage: sandbox-run [--memory B] [--pids N] [--cpu-millis N] "
			"[--net none|host] [--bind HOST:INSIDE] [--env K=V] [--cwd DIR] "
			"[--user U:G] [--id-map BASE:COUNT] [--name N] [--no-tmpfs] ROOT -- CMD...\n");
	return 2;
}

static int fail(int r, const char *what)
{
	fprintf(stderr, "sandbox-run: %s: %s\n", what, hb_errmsg(r));
	return 125;
}

int main(int argc, char **argv)
{
	struct sandbox_limits lim = { 0 };
	struct sandbox_spec *spec = NULL;
	const char *root = NULL;
	int i = 1, r;

	/* find ROOT first: options apply to a spec that needs it */
	for (int j = 1; j < argc; j++) {
		if (!strcmp(argv[j], "--"))
			break;
		if (argv[j][0] == '-' && argv[j][1] == '-') {
			if (strcmp(argv[j], "--no-tmpfs") != 0)
				j++;
			continue;
		}
		root = argv[j];
	}
	if (!root)
		return usage();
	if ((r = sandbox_spec_new(&spec, root)) < 0)
		return fail(r, "spec");
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		const char *o = argv[i];
		if (o == root)
			continue;
		if (!strcmp(o, "--no-tmpfs")) {
			sandbox_spec_set_tmpfs_tmp(spec, 0);
			continue;
		}
		if (i + 1 >= argc)
			return usage();
		const char *v = argv[++i];
		if (!strcmp(o, "--memory"))
			lim.memory_bytes = strtoull(v, NULL, 0);
		else if (!strcmp(o, "--pids"))
			lim.pids = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(o, "--cpu-millis"))
			lim.cpu_millis = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(o, "--net"))
			r = sandbox_spec_set_network(spec, !strcmp(v, "host") ? SANDBOX_NET_HOST
									     : SANDBOX_NET_NONE);
		else if (!strcmp(o, "--bind")) {
			char *copy = strdup(v), *colon = copy ? strchr(copy, ':') : NULL;
			if (!colon)
				return usage();
			*colon = '\0';
			r = sandbox_spec_add_ro_bind(spec, copy, colon + 1);
			free(copy);
		} else if (!strcmp(o, "--env"))
			r = sandbox_spec_add_env(spec, v);
		else if (!strcmp(o, "--cwd"))
			r = sandbox_spec_set_cwd(spec, v);
		else if (!strcmp(o, "--name"))
			r = sandbox_spec_set_name(spec, v);
		else if (!strcmp(o, "--user")) {
			unsigned u, g;
			if (sscanf(v, "%u:%u", &u, &g) != 2)
				return usage();
			r = sandbox_spec_set_user(spec, u, g);
		} else if (!strcmp(o, "--id-map")) {
			unsigned b, c;
			if (sscanf(v, "%u:%u", &b, &c) != 2)
				return usage();
			r = sandbox_spec_set_id_map(spec, b, c);
		} else
			return usage();
		if (r < 0)
			return fail(r, o);
	}
	if (i + 1 >= argc)
		return usage();
	if ((r = sandbox_spec_set_limits(spec, &lim)) < 0 ||
	    (r = sandbox_spec_set_argv(spec, (const char *const *)&argv[i + 1])) < 0)
		return fail(r, "spec");
	for (int fd = 0; fd <= 2; fd++)
		sandbox_spec_pass_fd(spec, fd, fd);
	sandbox_spec_set_die_with_parent(spec, 1);

	struct sandbox *sb;
	if ((r = sandbox_spawn(spec, &sb)) < 0)
		return fail(r, "spawn");
	struct sandbox_exit ex;
	r = sandbox_wait(sb, -1, &ex);
	sandbox_free(sb);
	sandbox_spec_free(spec);
	if (r < 0)
		return fail(r, "wait");
	return ex.signal ? 128 + ex.signal : ex.code;
}
