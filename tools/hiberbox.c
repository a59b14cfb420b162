/* hiberbox: the command-line entry point.  Parses global options, finds the
 * command (one or two words) in the registered tables and runs it. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"
#include "util/error.h"
#include "util/size.h"

struct cli_globals cli;

static void usage(FILE *f)
{
	fprintf(f, "usage: hiberbox [--repo LOCATION] [--cache-size SIZE] [--json] [--quiet] COMMAND [ARGS...]\n\n"
		   "Sandboxes and workspaces that sleep in a repository and wake fast.\n");
	for (const struct command_table *t = cli_tables(); t->commands; t++) {
		fprintf(f, "\n%s:\n", t->title);
		for (const struct cli_command *c = t->commands; c->name; c++)
			if (strncmp(c->summary, "(internal)", 10) != 0)
				fprintf(f, "  %-20s %s\n", c->name, c->summary);
	}
	fprintf(f, "\nRepository: --repo, else $HIBERBOX_REPO, else $HIBERBOX_HOME/repo.\n"
		   "A remote repository (s3://bucket/prefix) is read through a cache of its\n"
		   "own in $HIBERBOX_HOME/cache/<hash of the location>, of --cache-size bytes\n"
		   "($HIBERBOX_CACHE_SIZE; default a tenth of the free disk).\n"
		   "Run 'hiberbox COMMAND --help' for a command's options.\n"
		   "Exit status: 0 done, 1 failed, 2 a command line it cannot take (exec:\n"
		   "the command's own, 125 if it could not start; daemon status: 3 if none runs).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "cache-size", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	const struct cli_command *cmd = NULL;
	char *help_argv[4];
	int c;

	static const char shorts[] = "+r:C:jqhV";

	opterr = 0; /* one line of our own (cli_bad_option), not getopt's and the usage */
	/* '+': stop at the command word; its options belong to it. */
	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			cli_set_repo(optarg);
			break;
		case 'C': { /* read where the cache is opened (snapshot/store-open.c) */
			uint64_t bytes;

			/* checked here too: a local repository has no cache and
			 * would never look at it */
			if (size_parse(optarg, &bytes) < 0) {
				fprintf(stderr, "hiberbox: bad --cache-size '%s' (e.g. 512M, 20G)\n",
					optarg);
				return 2;
			}
			setenv("HIBERBOX_CACHE_SIZE", optarg, 1);
			break;
		}
		case 'j':
			cli.json = true;
			break;
		case 'q':
			cli.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hiberbox 0.1.0\n");
			return 0;
		default:
			return cli_bad_option(NULL, argv, shorts, opts);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	argc -= optind;
	argv += optind;
	if (strcmp(argv[0], "help") == 0) {
		if (argc == 1) {
			usage(stdout);
			return 0;
		}
		/* "help snapshot create" is "snapshot create --help" */
		help_argv[0] = argv[1];
		help_argv[1] = argc >= 3 ? argv[2] : "--help";
		help_argv[2] = argc >= 3 ? "--help" : NULL;
		help_argv[3] = NULL;
		argc = argc >= 3 ? 3 : 2;
		argv = help_argv;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		char subs[512];

		/* a group ("snapshot", "daemon") lists its subcommands */
		if (cli_subcommands(argv[0], subs, sizeof(subs)) > 0) {
			cli_group_help(argv[0], stdout);
			return 0;
		}
	}
	/* Two-word commands ("snapshot create") first, then one word. */
	if (argc >= 2) {
		char two[128];

		snprintf(two, sizeof(two), "%s %s", argv[0], argv[1]);
		cmd = cli_find(two);
		if (cmd) {
			argc--;
			argv++;
		}
	}
	if (!cmd)
		cmd = cli_find(argv[0]);
	if (!cmd) {
		char subs[512];

		if (cli_subcommands(argv[0], subs, sizeof(subs)) == 0)
			fprintf(stderr, "hiberbox: unknown command '%s' (see 'hiberbox --help')\n",
				argv[0]);
		else if (argc >= 2)
			fprintf(stderr, "hiberbox: unknown command '%s %s'; '%s' takes: %s\n",
				argv[0], argv[1], argv[0], subs);
		else
			fprintf(stderr, "hiberbox: '%s' needs one of: %s\n", argv[0], subs);
		return 2;
	}
	cli.progress = !cli.quiet && !cli.json && isatty(STDERR_FILENO);
	optind = 0; /* reset getopt for the command */
	return cmd->run(argc, argv);
}
