/* Shared pieces of the hiberbox CLI: command registration, option helpers,
 * output (--json, progress on a terminal) and error printing.
 *
 * Each cmd-*.c file defines one table of commands; hiberbox.c finds the
 * tables through weak symbols so that a tool built without a layer simply
 * lacks its commands.  A command's run() returns the process exit code. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <getopt.h>
#include <jansson.h>

#include "snapshot/snapshot.h"

struct cli_command {
	const char *name;    /* "snapshot create", "mount", ... (words separated by one space) */
	const char *args;    /* synopsis of arguments for --help */
	const char *summary; /* one line */
	int (*run)(int argc, char **argv); /* argv[0] is the last word of name */
};

/* Tables, each ended by an entry with name == NULL. */
extern const struct cli_command cli_commands_repo[] __attribute__((weak));
extern const struct cli_command cli_commands_fs[] __attribute__((weak));
extern const struct cli_command cli_commands_s3[] __attribute__((weak));
extern const struct cli_command cli_commands_sandbox[] __attribute__((weak));
extern const struct cli_command cli_commands_bench[] __attribute__((weak));

/* Global options parsed before the command: --repo, --json, --quiet. */
struct cli_globals {
	const char *repo;  /* NULL: repo_default_location() */
	bool json;
	bool quiet;
	bool progress;     /* stderr is a terminal and not --quiet/--json */
	const char *prog;  /* the program usage errors name; NULL: "hiberbox" */
};
extern struct cli_globals cli;

/* "usage: hiberbox GROUP SUBCOMMAND" and each subcommand's summary. */
void cli_group_help(const char *group, FILE *out);
/* Print "hiberbox: <msg>" on stderr for error r (with hb_errmsg); returns 1. */
int cli_fail(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a usage error for the running command (NULL: for hiberbox's own
 * options); returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for an option getopt_long(shorts, opts) answered '?' to
 * (opterr 0): unknown, missing its value, or given one it does not take,
 * named as it was given.  Returns 2. */
int cli_bad_option(const char *cmd, char *const *argv, const char *shorts,
		   const struct option *opts);
/* Print a path or name from a snapshot as one line's worth of text:
 * newlines, tabs, other control bytes and '\\' as C escapes ("\\n",
 * "\\x1b", "\\\\"), so that a name cannot forge lines of a listing or
 * send terminal escapes.  (--json carries them as JSON strings, and a
 * name that is not UTF-8 exactly in "<key>_hex": util/json-text.h.) */
void cli_put_name(const char *s, FILE *f);
/* Parse an option's value arg as a decimal integer in [min, max] into *out.
 * Returns 0, or the exit code of a usage error naming opt (2). */
int cli_parse_int(const char *cmd, const char *opt, const char *arg, long min, long max,
		  long *out);
/* The most worker threads --threads takes (more only costs memory). */
#define CLI_THREADS_MAX 1024
/* The repository location to use (--repo, $HIBERBOX_REPO, default). */
const char *cli_repo_location(void);
/* Take a --repo value, wherever on the command line it was given; an empty
 * one is a usage error that ends the process (exit 2). */
void cli_set_repo(const char *location);
/* Open the repository or print why not; returns 0 or exit code 1. */
int cli_open_repo(struct repo **out);
/* A progress reporter drawing a bar on stderr when cli.progress is set. */
struct repo_progress cli_progress(void);
void cli_progress_done(void);
/* Format bytes as "12.3 MiB" into out. */
const char *cli_format_bytes(uint64_t bytes, char *out, size_t size);
/* Print a --help text for cmd: "usage: hiberbox <name> <args>" + extra lines. */
void cli_print_help(const struct cli_command *cmd, const char *details);
/* Options every command accepts after its name, for its getopt_long table
 * (short letters "hjq"), and their handling: 1 if c was one of them, -1 for
 * --help, 0 otherwise.  --repo goes through cli_set_repo. */
#define CLI_OPT_REPO 0x100 /* long only: -R is free for commands (ls -R) */
#define CLI_COMMON_OPTIONS \
	{ "help", no_argument, NULL, 'h' }, { "json", no_argument, NULL, 'j' }, \
	{ "repo", required_argument, NULL, CLI_OPT_REPO }, { "quiet", no_argument, NULL, 'q' }
int cli_common_option(int c);
/* Print the --help of the command called name; returns exit code 0. */
int cli_help(const char *name, const char *details);
/* Print j as indented JSON on stdout and release it. */
void cli_print_json(json_t *j);
/* The registered tables, in the order --help shows them, ended by an entry
 * with commands == NULL. */
struct command_table {
	const char *title;
	const struct cli_command *commands;
};
const struct command_table *cli_tables(void);
/* Find the command entry by name (for help). */
const struct cli_command *cli_find(const char *name);
/* The second words of the commands "group WORD" as "create, restore, ..."
 * into out; returns how many there are (0: group is no group). */
size_t cli_subcommands(const char *group, char *out, size_t size);
