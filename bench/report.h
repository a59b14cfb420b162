/* `hiberbox bench restore`: the testable pieces of tools/cmd-bench.c.
 *
 * The command times hiberbox (sleep, wake, first command, restore) and the
 * usual alternatives (tar + zstd, a squashfs image under fuse-overlayfs,
 * cp -a) on one tree, N runs each.  What it measures lands in a struct
 * bench_result: one cell per (row, method) with every run's seconds.  The
 * functions below turn that into statistics, a terminal table, JSON and a
 * report (HTML with inline SVG charts, or Markdown); they touch no process,
 * mount or network, so tests/bench/ checks them directly.
 *
 * Functions return 0 or a negative errno with a message (util/error.h).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define BENCH_MAX_RUNS 50
#define BENCH_NOTE_MAX 16

/* What is compared, one row each in the table and one chart in the report. */
enum bench_row {
	BENCH_SLEEP_FULL,  /* store the whole tree */
	BENCH_SLEEP_INCR,  /* store it again after a small change */
	BENCH_WAKE_COLD,   /* until the tree answers, nothing cached locally */
	BENCH_WAKE_WARM,   /* the same with the local cache / image at hand */
	BENCH_FIRST_CMD,   /* cold: until the probe command has finished */
	BENCH_RESTORE,     /* every file back on the local disk */
	BENCH_ROWS
};

enum bench_method {
	BENCH_HIBERBOX,
	BENCH_TAR,      /* tar + zstd: the baseline every ratio is against */
	BENCH_SQUASHFS, /* squashfs image, squashfuse + fuse-overlayfs */
	BENCH_CP,       /* cp -a: the local floor */
	BENCH_METHODS
};

struct bench_stat {
	double median, min, max;
	unsigned n;
};

struct bench_cell {
	double secs[BENCH_MAX_RUNS];
	unsigned n;
	struct bench_stat stat; /* filled by bench_result_finish */
	char skipped[160];      /* why there is no figure ("" when measured or n/a) */
};

struct bench_result {
	char date_utc[32];
	char machine[160];     /* cores, memory, kernel */
	char repo_kind[16];    /* "local" or "s3" */
	char link[160];        /* "loopback", "rtt 30 ms, 100 MB/s (...)" */
	char page_cache[200];  /* dropped or why not */
	char workspace[300];   /* the tree and where it came from */
	char probe[300];       /* the first-command probe */
	unsigned runs;
	uint64_t tree_files, tree_bytes, tar_bytes, squashfs_bytes, repo_bytes;
	struct bench_cell cell[BENCH_ROWS][BENCH_METHODS];
	char notes[BENCH_NOTE_MAX][200];
	unsigned n_notes;
};

/* Options of `hiberbox bench restore` (after the command words). */
struct bench_opts {
	const char *dir;       /* NULL: generate a workspace */
	unsigned runs;         /* 1..BENCH_MAX_RUNS, default 3 */
	const char *probe;     /* NULL: the default probe */
	unsigned rtt_ms;       /* 0: no emulated link */
	double bandwidth_mbps; /* MB/s; 0: unlimited */
	bool json;
	const char *report;    /* .html / .htm / .md, or NULL */
	const char *repo;      /* --repo here, else the global one */
	const char *work;      /* scratch directory; NULL: a new one under /var/tmp */
	unsigned files;        /* size of a generated workspace */
	bool keep;             /* keep the scratch directory */
	bool quiet;
	bool help;
};

/* Parse argv as getopt would see it after "bench restore" (argv[0] is
 * "restore").  Resets getopt itself.  @return 0, or -EINVAL with a message
 * naming the bad argument. */
int bench_parse_opts(int argc, char **argv, struct bench_opts *o);

/* Median (mean of the two middle values for an even count), min and max of
 * v[0..n).  @return 0, -EINVAL for n == 0 or a value that is not finite and
 * non-negative. */
int bench_stats(const double *v, size_t n, struct bench_stat *out);

/* Add one run's seconds to a cell (ignored past BENCH_MAX_RUNS). */
void bench_cell_add(struct bench_cell *c, double secs);
/* Mark a cell as skipped, with the reason (printf-style). */
void bench_cell_skip(struct bench_cell *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Add a line to the notes printed under the table and in the report. */
void bench_note(struct bench_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Compute every cell's statistics. */
void bench_result_finish(struct bench_result *res);

/* tar+zstd median / this cell's median for the same row: how many times
 * faster than the baseline (> 1 is faster).  0 when either is missing. */
double bench_speedup(const struct bench_result *res, enum bench_row row, enum bench_method m);

const char *bench_row_name(enum bench_row row);       /* "sleep_full", ... (JSON keys) */
const char *bench_row_label(enum bench_row row);      /* "sleep (full snapshot)", ... */
const char *bench_method_name(enum bench_method m);   /* "hiberbox", "tar_zstd", ... */
const char *bench_method_label(enum bench_method m);  /* "hiberbox", "tar+zstd", ... */

/* The terminal table: median, min, max and the ratio to tar+zstd per cell. */
void bench_print_table(const struct bench_result *res, FILE *f);
/* The result as a JSON object (new reference). */
json_t *bench_result_json(const struct bench_result *res);
/* Write the report; the format follows the extension (.html, .htm, .md).
 * @return 0, -EINVAL for another extension, or the write's error. */
int bench_write_report(const struct bench_result *res, const char *path);
int bench_write_html(const struct bench_result *res, FILE *f);
int bench_write_markdown(const struct bench_result *res, FILE *f);

/* Generate a workspace like a node project after `npm install` under dir
 * (which must not exist or be empty): about `files` small js/json/md files
 * in node_modules and src, a package-lock.json, and three binaries.  The
 * same seed gives the same tree.  @return the number of files written. */
int bench_generate_workspace(const char *dir, unsigned files, uint64_t seed);
