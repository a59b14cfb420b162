/* Shared CLI helpers: errors, repository opening, progress, sizes. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h"
#include "util/error.h"
#include "util/fileio.h"

/* Messages quote user input (paths, tags) that may hold newlines or
 * terminal escapes; an error must stay one line and print nothing active.
 * With backslash set, '\\' is escaped too, so that the text says which
 * bytes the name had. */
static void put_escaped_as(const char *s, FILE *f, bool backslash)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' && backslash)
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

static void put_escaped(const char *s, FILE *f)
{
	put_escaped_as(s, f, false);
}

void cli_put_name(const char *s, FILE *f)
{
	put_escaped_as(s, f, true);
}

/* The registered tables, in the order --help shows them. */
const struct command_table *cli_tables(void)
{
	static struct command_table all[6];
	int n = 0;

	if (cli_commands_repo)
		all[n++] = (struct command_table){ "Snapshots", cli_commands_repo };
	if (cli_commands_fs)
		all[n++] = (struct command_table){ "Live mounts", cli_commands_fs };
	if (cli_commands_s3)
		all[n++] = (struct command_table){ "Object storage", cli_commands_s3 };
	if (cli_commands_sandbox)
		all[n++] = (struct command_table){ "Sandboxes", cli_commands_sandbox };
	if (cli_commands_bench)
		all[n++] = (struct command_table){ "Benchmarks", cli_commands_bench };
	all[n] = (struct command_table){ NULL, NULL };
	return all;
}

const struct cli_command *cli_find(const char *name)
{
	for (const struct command_table *t = cli_tables(); t->commands; t++)
		for (const struct cli_command *c = t->commands; c->name; c++)
			if (strcmp(c->name, name) == 0)
				return c;
	return NULL;
}

size_t cli_subcommands(const char *group, char *out, size_t size)
{
	size_t glen = strlen(group), n = 0, used = 0;

	out[0] = '\0';
	for (const struct command_table *t = cli_tables(); t->commands; t++)
		for (const struct cli_command *c = t->commands; c->name; c++) {
			if (strncmp(c->name, group, glen) != 0 || c->name[glen] != ' ' ||
			    strncmp(c->summary, "(internal)", 10) == 0)
				continue;
			int w = snprintf(out + used, size - used, "%s%s", n ? ", " : "",
					 c->name + glen + 1);
			if (w > 0 && (size_t)w < size - used)
				used += (size_t)w;
			n++;
		}
	return n;
}

void cli_group_help(const char *group, FILE *out)
{
	size_t glen = strlen(group);

	fprintf(out, "usage: hiberbox %s SUBCOMMAND [ARGS...]\n\n", group);
	for (const struct command_table *t = cli_tables(); t->commands; t++)
		for (const struct cli_command *c = t->commands; c->name; c++)
			if (strncmp(c->name, group, glen) == 0 && c->name[glen] == ' ' &&
			    strncmp(c->summary, "(internal)", 10) != 0)
				fprintf(out, "  %-12s %s\n", c->name + glen + 1, c->summary);
	fprintf(out, "\nRun 'hiberbox %s SUBCOMMAND --help' for its options.\n", group);
}

int cli_fail(int r, const char *fmt, ...)
{
	char prefix[1024] = "";
	va_list ap;

	if (fmt && fmt[0]) {
		va_start(ap, fmt);
		vsnprintf(prefix, sizeof(prefix), fmt, ap);
		va_end(ap);
	}
	fputs("hiberbox: ", stderr);
	if (prefix[0]) {
		put_escaped(prefix, stderr);
		fputs(": ", stderr);
	}
	put_escaped(hb_errmsg(r), stderr);
	fputc('\n', stderr);
	return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	char msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *prog = cli.prog ? cli.prog : "hiberbox";

	fprintf(stderr, "%s%s%s: ", prog, cmd ? " " : "", cmd ? cmd : "");
	put_escaped(msg, stderr);
	fprintf(stderr, " (see '%s%s%s --help')\n", prog, cmd ? " " : "", cmd ? cmd : "");
	return 2;
}

int cli_bad_option(const char *cmd, char *const *argv, const char *shorts,
		   const struct option *opts)
{
	const char *arg = argv[optind - 1], *p;
	int len;

	/* getopt says '?' for an unknown option, one missing its value and a
	 * long one given a value it does not take; optopt tells them apart.
	 * "unknown option '--tag'" for "--tag" at the end misled. */
	if (!strncmp(arg, "--", 2)) {
		len = (int)strcspn(arg, "=");
		for (const struct option *o = opts; optopt && o->name; o++) {
			if (o->val != optopt || strncmp(o->name, arg + 2, (size_t)len - 2))
				continue;
			return cli_usage(cmd, o->has_arg == no_argument ? "option '--%s' takes no value"
								: "option '--%s' needs a value",
					 o->name);
		}
		int matches = 0;

		for (const struct option *o = opts; o->name; o++)
			matches += len > 2 && !strncmp(o->name, arg + 2, (size_t)len - 2);
		return cli_usage(cmd, "%s option '%.*s'", matches > 1 ? "ambiguous" : "unknown", len,
				 arg);
	}
	p = optopt > 0 && optopt < 0x100 && optopt != ':' ? strchr(shorts, optopt) : NULL;
	if (p && p[1] == ':')
		return cli_usage(cmd, "option '-%c' needs a value", optopt);
	return cli_usage(cmd, "unknown option '-%c'", optopt > ' ' && optopt < 0x7f ? optopt : '?');
}

/* Instead of atoi, which read "abc" as 0 (the default) and "-3" as a
 * count of 4294967293 threads. */
int cli_parse_int(const char *cmd, const char *opt, const char *arg, long min, long max,
		  long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max)
		return cli_usage(cmd, "bad %s '%s' (a whole number from %ld to %ld)", opt, arg, min,
				 max);
	*out = v;
	return 0;
}

const char *cli_repo_location(void)
{
	static char loc[PATH_MAX];

	if (cli.repo)
		return cli.repo;
	if (repo_default_location(loc, sizeof(loc)) < 0)
		return NULL;
	return loc;
}

void cli_set_repo(const char *location)
{
	/* Here, as it is given, not at each command's use: "" went on to be
	 * a path and came back as "no repository at  (run ...)".  Exiting
	 * spares every option loop (the global one, each command's, bench's)
	 * an answer of its own. */
	if (!location[0])
		exit(cli_usage(NULL, "--repo: empty path"));
	cli.repo = location;
}

int cli_open_repo(struct repo **out)
{
	const char *loc = cli_repo_location();
	int r;

	if (!loc)
		return cli_fail(-ENOENT, NULL);
	r = repo_open(loc, out);
	if (r < 0)
		return cli_fail(r, NULL);
	return 0;
}

static uint64_t progress_start_ns;
static bool progress_drawn;

static void progress_update(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	char a[32], b[32];
	uint64_t t = now_ns();
	double secs;

	if (!progress_start_ns)
		progress_start_ns = t;
	secs = (double)(t - progress_start_ns) / 1e9;
	if (secs < 1.0 && !progress_drawn)
		return; /* only work longer than a second gets a bar */
	progress_drawn = true;
	if (total > 0) {
		int width = 30, filled = (int)((double)done / (double)total * width);
		char bar[64];

		if (filled > width)
			filled = width;
		memset(bar, '#', (size_t)filled);
		memset(bar + filled, '-', (size_t)(width - filled));
		bar[width] = '\0';
		fprintf(stderr, "\r%-10s [%s] %5.1f%% %s / %s  %.0f MB/s ", phase, bar,
			100.0 * (double)done / (double)total, cli_format_bytes(done, a, sizeof(a)),
			cli_format_bytes(total, b, sizeof(b)), secs > 0 ? (double)done / 1e6 / secs : 0);
	} else {
		fprintf(stderr, "\r%-10s %s ", phase, cli_format_bytes(done, a, sizeof(a)));
	}
	fflush(stderr);
}

struct repo_progress cli_progress(void)
{
	struct repo_progress p = { 0 };

	if (cli.progress) {
		progress_start_ns = now_ns();
		p.update = progress_update;
	}
	return p;
}

void cli_progress_done(void)
{
	if (progress_drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	progress_drawn = false;
}

const char *cli_format_bytes(uint64_t bytes, char *out, size_t size)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, size, "%.1f %s", v, units[u]);
	return out;
}

void cli_print_help(const struct cli_command *cmd, const char *details)
{
	printf("usage: hiberbox %s%s%s\n\n%s\n", cmd->name, cmd->args[0] ? " " : "", cmd->args, cmd->summary);
	if (details && details[0])
		printf("\n%s", details);
}

int cli_common_option(int c)
{
	switch (c) {
	case 'j':
		cli.json = true;
		cli.progress = false;
		return 1;
	case CLI_OPT_REPO:
		cli_set_repo(optarg);
		return 1;
	case 'q':
		cli.quiet = true;
		cli.progress = false;
		return 1;
	case 'h':
		return -1;
	}
	return 0;
}

int cli_help(const char *name, const char *details)
{
	cli_print_help(cli_find(name), details);
	return 0;
}

void cli_print_json(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

	if (s)
		puts(s);
	free(s);
	json_decref(j);
}
