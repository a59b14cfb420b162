/* hiberboxd: the sandbox daemon in the foreground, for a service manager
 * (tools/hiberboxd.service).  `hiberboxd mount-helper ...` is the helper the
 * daemon runs to start a FUSE mount in its own process. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/daemon/daemon.h"
#include "tools/cli.h"
#include "util/error.h"

struct cli_globals cli;

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "home", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static const char *const helper[] = { "/proc/self/exe", "mount-helper", NULL };
	struct hbd_config cfg = { .helper_argv = helper };
	int c, r;

	static const char shorts[] = "r:H:h";

	if (argc >= 2 && strcmp(argv[1], "mount-helper") == 0)
		return hbd_mount_helper_main(argc - 1, argv + 1);
	cli.prog = "hiberboxd";
	opterr = 0; /* one line of our own, naming the option */
	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			cfg.repo = optarg;
			break;
		case 'H':
			cfg.home = optarg;
			break;
		case 'h':
			printf("usage: hiberboxd [--repo LOCATION] [--home DIR]\n\n"
			       "Run the sandbox daemon in the foreground.  The API listens on\n"
			       "$HIBERBOX_HOME/hiberboxd.sock (docs/api.md).\n");
			return 0;
		default:
			return cli_bad_option(NULL, argv, shorts, opts);
		}
	}
	/* (a word here was ignored, and the daemon started anyway) */
	if (optind != argc)
		return cli_usage(NULL, "takes no arguments, not '%s'", argv[optind]);
	if (!cfg.repo)
		cfg.repo = getenv("HIBERBOX_REPO");
	r = hbd_run(&cfg);
	if (r < 0) {
		fprintf(stderr, "hiberboxd: %s\n", hb_errmsg(r));
		return 1;
	}
	return 0;
}
