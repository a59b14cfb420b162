/* `hiberbox bench restore`: how fast a workspace sleeps and wakes with
 * hiberbox, against what people do today, on the user's own tree.
 *
 * Every step runs the real tools as child processes (this very binary for
 * hiberbox; tar, zstd, mksquashfs, squashfuse, fuse-overlayfs, cp) and
 * times them by the wall clock, N runs each, with the page cache dropped
 * before each cold step where the machine allows it and a fresh hiberbox
 * home (so an empty local cache) for every cold wake.  The figures go into a
 * struct bench_result (bench/report.h), whose statistics, table, JSON and
 * report functions are plain code that tests/bench/ checks directly.
 *
 * The remote case (an s3:// repository) puts the baselines' .tar.zst and
 * squashfs image into the same bucket and fetches them with the same client
 * and credentials.  --rtt/--bandwidth put a link emulator between every
 * client and the endpoint: a relay on 127.0.0.1 that holds each byte for
 * half the RTT in each direction and paces both directions to the
 * bandwidth (the kernels we run on lack sch_netem, so tc cannot do it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench/report.h"
#include "s3/s3.h"
#include "tools/cli.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define BENCH_DEFAULT_RUNS 3
#define BENCH_DEFAULT_FILES 20000
#define BENCH_MAX_FILES 2000000
#define BENCH_CAPTURE_MAX_BYTES ((size_t)1 << 20)
#define BENCH_DEFAULT_PROBE "ls -la . >/dev/null && f=$(find . -type f -print -quit) && cat \"$f\" >/dev/null"

/* ---- names ---- */

static const char *const row_names[BENCH_ROWS] = {
	"sleep_full", "sleep_incremental", "wake_cold", "wake_warm", "first_command", "restore",
};
static const char *const row_labels[BENCH_ROWS] = {
	"sleep (full snapshot)",     "sleep (after a small change)",
	"wake, cold cache",          "wake, warm cache",
	"first command, cold",       "full restore",
};
static const char *const method_names[BENCH_METHODS] = { "hiberbox", "tar_zstd", "squashfs_overlay",
							  "cp_a" };
static const char *const method_labels[BENCH_METHODS] = { "hiberbox", "tar+zstd",
							   "squashfs+overlay", "cp -a" };
/* What each method does for each row, for the report's legend. */
static const char *const row_help[BENCH_ROWS] = {
	"hiberbox: snapshot create (new repository); tar+zstd / squashfs: create the archive "
	"(and upload it when remote); cp -a: copy the tree",
	"hiberbox: snapshot create after one file changed (parent reuse); the others have no "
	"incremental mode and redo the full work",
	"hiberbox: mount with an empty local cache until the root lists; tar: download + extract; "
	"squashfs: download + squashfuse + fuse-overlayfs",
	"hiberbox: mount again with the local cache of the cold wake; tar: extract the local "
	"archive; squashfs: mount the local image",
	"cold wake plus the probe command; tar/squashfs: download, extract or mount, then the probe",
	"hiberbox: snapshot restore (empty cache); tar: download + extract; squashfs: download + "
	"unsquashfs; cp -a: copy",
};

const char *bench_row_name(enum bench_row row)
{
	return row < BENCH_ROWS ? row_names[row] : "?";
}

const char *bench_row_label(enum bench_row row)
{
	return row < BENCH_ROWS ? row_labels[row] : "?";
}

const char *bench_method_name(enum bench_method m)
{
	return m < BENCH_METHODS ? method_names[m] : "?";
}

const char *bench_method_label(enum bench_method m)
{
	return m < BENCH_METHODS ? method_labels[m] : "?";
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int bench_stats(const double *v, size_t n, struct bench_stat *out)
{
	double sorted[BENCH_MAX_RUNS];

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return hb_err(-EINVAL, "no runs to summarize");
	if (n > BENCH_MAX_RUNS)
		return hb_err(-EINVAL, "%zu runs: at most %d", n, BENCH_MAX_RUNS);
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(v[i]) || v[i] < 0)
			return hb_err(-EINVAL, "run %zu has no valid time", i + 1);
		sorted[i] = v[i];
	}
	qsort(sorted, n, sizeof(sorted[0]), cmp_double);
	out->min = sorted[0];
	out->max = sorted[n - 1];
	out->median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
	out->n = (unsigned)n;
	return 0;
}

void bench_cell_add(struct bench_cell *c, double secs)
{
	if (c->n < BENCH_MAX_RUNS)
		c->secs[c->n++] = secs;
}

void bench_cell_skip(struct bench_cell *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->skipped, sizeof(c->skipped), fmt, ap);
	va_end(ap);
}

void bench_note(struct bench_result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->n_notes >= BENCH_NOTE_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(res->notes[res->n_notes++], sizeof(res->notes[0]), fmt, ap);
	va_end(ap);
}

void bench_result_finish(struct bench_result *res)
{
	for (int r = 0; r < BENCH_ROWS; r++)
		for (int m = 0; m < BENCH_METHODS; m++) {
			struct bench_cell *c = &res->cell[r][m];

			if (c->n == 0 || bench_stats(c->secs, c->n, &c->stat) < 0)
				memset(&c->stat, 0, sizeof(c->stat));
		}
}

double bench_speedup(const struct bench_result *res, enum bench_row row, enum bench_method m)
{
	const struct bench_stat *base, *s;

	if (row >= BENCH_ROWS || m >= BENCH_METHODS)
		return 0;
	base = &res->cell[row][BENCH_TAR].stat;
	s = &res->cell[row][m].stat;
	if (!base->n || !s->n || s->median <= 0 || base->median <= 0)
		return 0;
	return base->median / s->median;
}

/* ---- options ---- */

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int bench_parse_opts(int argc, char **argv, struct bench_opts *o)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "runs", required_argument, NULL, 'n' },
		{ "probe", required_argument, NULL, 'p' },
		{ "rtt", required_argument, NULL, 't' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "report", required_argument, NULL, 'o' },
		{ "repo", required_argument, NULL, 'R' },
		{ "work", required_argument, NULL, 'w' },
		{ "files", required_argument, NULL, 'f' },
		{ "keep", no_argument, NULL, 'k' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 }
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->runs = BENCH_DEFAULT_RUNS;
	o->files = BENCH_DEFAULT_FILES;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hn:p:t:b:jo:R:w:f:kq", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			o->help = true;
			return 0;
		case 'n':
			if (parse_uint(optarg, 1, BENCH_MAX_RUNS, &o->runs) < 0)
				return hb_err(-EINVAL, "bad --runs '%s' (1..%d)", optarg, BENCH_MAX_RUNS);
			break;
		case 'p':
			if (!optarg[0])
				return hb_err(-EINVAL, "empty --probe");
			o->probe = optarg;
			break;
		case 't':
			if (parse_uint(optarg, 0, 10000, &o->rtt_ms) < 0)
				return hb_err(-EINVAL, "bad --rtt '%s' (milliseconds, 0..10000)", optarg);
			break;
		case 'b': {
			char *end;

			errno = 0;
			o->bandwidth_mbps = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o->bandwidth_mbps) ||
			    o->bandwidth_mbps < 0.01 || o->bandwidth_mbps > 100000)
				return hb_err(-EINVAL, "bad --bandwidth '%s' (MB/s, 0.01..100000)", optarg);
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'o': {
			const char *dot = strrchr(optarg, '.');

			if (!dot || (strcmp(dot, ".html") && strcmp(dot, ".htm") && strcmp(dot, ".md")))
				return hb_err(-EINVAL, "--report '%s': the name must end in .html or .md",
					      optarg);
			o->report = optarg;
			break;
		}
		case 'R':
			o->repo = optarg;
			break;
		case 'w':
			o->work = optarg;
			break;
		case 'f':
			if (parse_uint(optarg, 10, BENCH_MAX_FILES, &o->files) < 0)
				return hb_err(-EINVAL, "bad --files '%s' (10..%d)", optarg, BENCH_MAX_FILES);
			break;
		case 'k':
			o->keep = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case ':':
			return hb_err(-EINVAL, "option '%s' needs a value", argv[optind - 1]);
		default:
			return hb_err(-EINVAL, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind > 1)
		return hb_err(-EINVAL, "expected at most one DIR, got '%s' too", argv[optind + 1]);
	if (argc - optind == 1)
		o->dir = argv[optind];
	return 0;
}

/* ---- the table ---- */

static void format_secs(double s, char *out, size_t size)
{
	if (s < 1)
		snprintf(out, size, "%.0f ms", s * 1000);
	else
		snprintf(out, size, "%.2f s", s);
}

static void format_ratio(double r, char *out, size_t size)
{
	if (r <= 0)
		snprintf(out, size, "-");
	else if (r >= 10)
		snprintf(out, size, "%.0fx", r);
	else
		snprintf(out, size, "%.2fx", r);
}

void bench_print_table(const struct bench_result *res, FILE *f)
{
	char a[32], b[32], c[32], d[32];

	fprintf(f, "%u files, %.1f MB; %s repository, %s; %u run%s; page cache %s\n",
		(unsigned)res->tree_files, (double)res->tree_bytes / 1e6, res->repo_kind, res->link,
		res->runs, res->runs == 1 ? "" : "s", res->page_cache);
	fprintf(f, "times: median [min .. max]; 'vs tar' = tar+zstd median / this median (>1: faster)\n\n");
	for (int r = 0; r < BENCH_ROWS; r++) {
		fprintf(f, "%s\n", row_labels[r]);
		for (int m = 0; m < BENCH_METHODS; m++) {
			const struct bench_cell *cell = &res->cell[r][m];

			if (!cell->stat.n) {
				if (cell->skipped[0])
					fprintf(f, "  %-18s skipped: %s\n", method_labels[m], cell->skipped);
				continue;
			}
			format_secs(cell->stat.median, a, sizeof(a));
			format_secs(cell->stat.min, b, sizeof(b));
			format_secs(cell->stat.max, c, sizeof(c));
			format_ratio(bench_speedup(res, (enum bench_row)r, (enum bench_method)m), d,
				     sizeof(d));
			fprintf(f, "  %-18s %10s  [%s .. %s]  vs tar %s\n", method_labels[m], a, b, c,
				m == BENCH_TAR ? "1 (baseline)" : d);
		}
	}
	if (res->tar_bytes || res->repo_bytes)
		fprintf(f, "\nstored: hiberbox repository %.1f MB, .tar.zst %.1f MB, squashfs %.1f MB\n",
			(double)res->repo_bytes / 1e6, (double)res->tar_bytes / 1e6,
			(double)res->squashfs_bytes / 1e6);
	for (unsigned i = 0; i < res->n_notes; i++)
		fprintf(f, "note: %s\n", res->notes[i]);
}

/* ---- JSON ---- */

json_t *bench_result_json(const struct bench_result *res)
{
	json_t *j = json_object(), *rows = json_object(), *notes = json_array();

	json_object_set_new(j, "bench", json_string("restore"));
	json_object_set_new(j, "date_utc", json_string(res->date_utc));
	json_object_set_new(j, "machine", json_string(res->machine));
	json_object_set_new(j, "repository", json_string(res->repo_kind));
	json_object_set_new(j, "link", json_string(res->link));
	json_object_set_new(j, "page_cache", json_string(res->page_cache));
	json_object_set_new(j, "workspace", json_string(res->workspace));
	json_object_set_new(j, "probe", json_string(res->probe));
	json_object_set_new(j, "runs", json_integer(res->runs));
	json_object_set_new(j, "tree", json_pack("{s:I, s:I}", "files", (json_int_t)res->tree_files,
						 "bytes", (json_int_t)res->tree_bytes));
	json_object_set_new(j, "stored_bytes",
			    json_pack("{s:I, s:I, s:I}", "hiberbox", (json_int_t)res->repo_bytes,
				      "tar_zstd", (json_int_t)res->tar_bytes, "squashfs",
				      (json_int_t)res->squashfs_bytes));
	for (int r = 0; r < BENCH_ROWS; r++) {
		json_t *row = json_object();

		for (int m = 0; m < BENCH_METHODS; m++) {
			const struct bench_cell *cell = &res->cell[r][m];
			json_t *cj, *runs;

			if (!cell->stat.n) {
				if (cell->skipped[0])
					json_object_set_new(row, method_names[m],
							    json_pack("{s:s}", "skipped", cell->skipped));
				continue;
			}
			runs = json_array();
			for (unsigned i = 0; i < cell->n; i++)
				json_array_append_new(runs, json_real(cell->secs[i]));
			cj = json_pack("{s:f, s:f, s:f, s:o}", "median_s", cell->stat.median, "min_s",
				       cell->stat.min, "max_s", cell->stat.max, "runs_s", runs);
			if (bench_speedup(res, (enum bench_row)r, (enum bench_method)m) > 0)
				json_object_set_new(cj, "vs_tar_zstd",
						    json_real(bench_speedup(res, (enum bench_row)r,
									    (enum bench_method)m)));
			json_object_set_new(row, method_names[m], cj);
		}
		json_object_set_new(rows, row_names[r], row);
	}
	json_object_set_new(j, "figures", rows);
	for (unsigned i = 0; i < res->n_notes; i++)
		json_array_append_new(notes, json_string(res->notes[i]));
	json_object_set_new(j, "notes", notes);
	return j;
}

/* ---- reports ---- */

static void html_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

static const char *const method_colors[BENCH_METHODS] = { "#2f7ed8", "#8c8c8c", "#e4a33b",
							   "#5bb06b" };

/* One horizontal bar per method: the median as the bar, min..max as a
 * whisker, the time and the ratio to tar+zstd at its end.  The scale is the
 * row's largest max, so bars compare within a chart. */
static void html_chart(const struct bench_result *res, enum bench_row r, FILE *f)
{
	const int label_w = 150, bar_w = 430, row_h = 30, text_w = 190;
	double scale = 0;
	int y = 0, shown = 0;

	for (int m = 0; m < BENCH_METHODS; m++)
		if (res->cell[r][m].stat.n && res->cell[r][m].stat.max > scale)
			scale = res->cell[r][m].stat.max;
	for (int m = 0; m < BENCH_METHODS; m++)
		shown += res->cell[r][m].stat.n || res->cell[r][m].skipped[0];
	fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' role='img'>\n",
		label_w + bar_w + text_w, shown * row_h + 4);
	for (int m = 0; m < BENCH_METHODS; m++) {
		const struct bench_cell *c = &res->cell[r][m];
		char a[32], b[32];

		if (!c->stat.n && !c->skipped[0])
			continue;
		fprintf(f, "<text x='%d' y='%d' text-anchor='end' font-size='13'>%s</text>\n",
			label_w - 8, y + 19, method_labels[m]);
		if (!c->stat.n) {
			fprintf(f, "<text x='%d' y='%d' font-size='12' fill='#999'>skipped: ", label_w,
				y + 19);
			html_escaped(f, c->skipped);
			fputs("</text>\n", f);
			y += row_h;
			continue;
		}
		double w = scale > 0 ? c->stat.median / scale * bar_w : 0;
		double x0 = scale > 0 ? label_w + c->stat.min / scale * bar_w : label_w;
		double x1 = scale > 0 ? label_w + c->stat.max / scale * bar_w : label_w;

		fprintf(f, "<rect x='%d' y='%d' width='%.1f' height='20' rx='3' fill='%s'/>\n", label_w,
			y + 5, w < 1 ? 1 : w, method_colors[m]);
		if (c->stat.n > 1)
			fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>"
				   "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>"
				   "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>\n",
				x0, x1, y + 15, y + 15, x0, x0, y + 10, y + 20, x1, x1, y + 10, y + 20);
		format_secs(c->stat.median, a, sizeof(a));
		format_ratio(bench_speedup(res, r, (enum bench_method)m), b, sizeof(b));
		{
			double sp = bench_speedup(res, r, (enum bench_method)m);

			fprintf(f, "<text x='%d' y='%d' font-size='13'>%s", label_w + bar_w + 8, y + 19, a);
			if (m == BENCH_TAR)
				fputs("  (baseline)", f);
			else if (sp > 0)
				fprintf(f, "  <tspan fill='%s'>%s %s</tspan>", sp >= 1 ? "#1a7f37" : "#b42318",
					b, sp >= 1 ? "faster" : "(slower)");
			fputs("</text>\n", f);
		}
		y += row_h;
	}
	fputs("</svg>\n", f);
}

int bench_write_html(const struct bench_result *res, FILE *f)
{
	char a[32];
	double best = 0;

	fputs("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
	      "<title>hiberbox bench restore</title>\n<style>\n"
	      "body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}\n"
	      "h1{font-size:1.5em}h2{font-size:1.1em;margin:1.6em 0 .2em}\n"
	      ".help{color:#666;font-size:.85em;margin:0 0 .4em}\n"
	      ".big{font-size:1.3em;background:#eef5fc;padding:.6em 1em;border-radius:6px}\n"
	      "table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;text-align:right}\n"
	      "td:first-child,th:first-child{text-align:left}\n"
	      "</style></head><body>\n<h1>hiberbox bench restore</h1>\n", f);
	/* The headline: how much sooner the first command runs than with tar+zstd. */
	best = bench_speedup(res, BENCH_FIRST_CMD, BENCH_HIBERBOX);
	if (best > 0) {
		format_ratio(best, a, sizeof(a));
		fprintf(f, "<p class='big'>First command after a cold wake: <b>%s %s</b> "
			   "than %s + extract of a .tar.zst (median of %u).</p>\n", a,
			best >= 1 ? "sooner" : "later (slower)",
			strcmp(res->repo_kind, "s3") == 0 ? "download" : "reading", res->runs);
	}
	fprintf(f, "<p>%u files, %.1f MB &middot; %s repository &middot; link: ",
		(unsigned)res->tree_files, (double)res->tree_bytes / 1e6, res->repo_kind);
	html_escaped(f, res->link);
	fprintf(f, " &middot; %u run%s (bars: median, whiskers: min..max; ratios: tar+zstd "
		   "median / median, higher is faster)</p>\n<p class='help'>",
		res->runs, res->runs == 1 ? "" : "s");
	html_escaped(f, res->date_utc);
	fputs(" &middot; ", f);
	html_escaped(f, res->machine);
	fputs(" &middot; page cache ", f);
	html_escaped(f, res->page_cache);
	fputs("<br>workspace: ", f);
	html_escaped(f, res->workspace);
	fputs("<br>probe: <code>", f);
	html_escaped(f, res->probe);
	fputs("</code></p>\n", f);
	for (int r = 0; r < BENCH_ROWS; r++) {
		int any = 0;

		for (int m = 0; m < BENCH_METHODS; m++)
			any |= res->cell[r][m].stat.n > 0;
		if (!any)
			continue;
		fprintf(f, "<h2>%s</h2>\n<p class='help'>", row_labels[r]);
		html_escaped(f, row_help[r]);
		fputs("</p>\n", f);
		html_chart(res, (enum bench_row)r, f);
	}
	if (res->tar_bytes || res->repo_bytes)
		fprintf(f, "<h2>stored bytes</h2>\n<table><tr><th>hiberbox repository</th><td>%.1f MB"
			   "</td></tr><tr><th>.tar.zst</th><td>%.1f MB</td></tr><tr><th>squashfs "
			   "image</th><td>%.1f MB</td></tr></table>\n",
			(double)res->repo_bytes / 1e6, (double)res->tar_bytes / 1e6,
			(double)res->squashfs_bytes / 1e6);
	if (res->n_notes) {
		fputs("<h2>notes</h2>\n<ul>\n", f);
		for (unsigned i = 0; i < res->n_notes; i++) {
			fputs("<li>", f);
			html_escaped(f, res->notes[i]);
			fputs("</li>\n", f);
		}
		fputs("</ul>\n", f);
	}
	fputs("</body></html>\n", f);
	return ferror(f) ? -EIO : 0;
}

int bench_write_markdown(const struct bench_result *res, FILE *f)
{
	char a[32], b[32], c[32], d[32];

	fprintf(f, "# hiberbox bench restore\n\n%u files, %.1f MB; %s repository; link: %s; %u run%s; "
		   "%s; %s; page cache %s.\n\nTimes are median [min .. max]; *vs tar* is the "
		   "tar+zstd median divided by this median (higher is faster).\n",
		(unsigned)res->tree_files, (double)res->tree_bytes / 1e6, res->repo_kind, res->link,
		res->runs, res->runs == 1 ? "" : "s", res->date_utc, res->machine, res->page_cache);
	for (int r = 0; r < BENCH_ROWS; r++) {
		double scale = 0;
		int any = 0;

		for (int m = 0; m < BENCH_METHODS; m++) {
			any |= res->cell[r][m].stat.n > 0;
			if (res->cell[r][m].stat.median > scale)
				scale = res->cell[r][m].stat.median;
		}
		if (!any)
			continue;
		fprintf(f, "\n## %s\n\n%s\n\n| method | median | min .. max | vs tar | |\n"
			   "|---|---:|---|---:|---|\n", row_labels[r], row_help[r]);
		for (int m = 0; m < BENCH_METHODS; m++) {
			const struct bench_cell *cell = &res->cell[r][m];
			int blocks;

			if (!cell->stat.n) {
				if (cell->skipped[0])
					fprintf(f, "| %s | skipped: %s | | | |\n", method_labels[m],
						cell->skipped);
				continue;
			}
			format_secs(cell->stat.median, a, sizeof(a));
			format_secs(cell->stat.min, b, sizeof(b));
			format_secs(cell->stat.max, c, sizeof(c));
			format_ratio(bench_speedup(res, (enum bench_row)r, (enum bench_method)m), d,
				     sizeof(d));
			fprintf(f, "| %s | %s | %s .. %s | %s | ", method_labels[m], a, b, c,
				m == BENCH_TAR ? "baseline" : d);
			blocks = scale > 0 ? (int)(cell->stat.median / scale * 30 + 0.5) : 0;
			for (int i = 0; i < (blocks < 1 ? 1 : blocks); i++)
				fputs("\u2588", f);
			fputs(" |\n", f);
		}
	}
	if (res->tar_bytes || res->repo_bytes)
		fprintf(f, "\nStored: hiberbox repository %.1f MB, .tar.zst %.1f MB, squashfs %.1f MB.\n",
			(double)res->repo_bytes / 1e6, (double)res->tar_bytes / 1e6,
			(double)res->squashfs_bytes / 1e6);
	if (res->n_notes) {
		fputs("\nNotes:\n\n", f);
		for (unsigned i = 0; i < res->n_notes; i++)
			fprintf(f, "- %s\n", res->notes[i]);
	}
	return ferror(f) ? -EIO : 0;
}

int bench_write_report(const struct bench_result *res, const char *path)
{
	const char *dot = strrchr(path, '.');
	bool html;
	FILE *f;
	int r;

	if (dot && (strcmp(dot, ".html") == 0 || strcmp(dot, ".htm") == 0))
		html = true;
	else if (dot && strcmp(dot, ".md") == 0)
		html = false;
	else
		return hb_err(-EINVAL, "report %s: the name must end in .html or .md", path);
	f = fopen(path, "w");
	if (!f)
		return hb_err(-errno, "report %s: %s", path, strerror(errno));
	r = html ? bench_write_html(res, f) : bench_write_markdown(res, f);
	if (fclose(f) != 0 && r == 0)
		r = -EIO;
	if (r < 0)
		return hb_err_sys(r, "writing report %s", path);
	return 0;
}

/* ---- the generated workspace ---- */

struct gen {
	uint64_t state;
	char *buf;
	size_t cap;
};

static uint64_t gen_next(struct gen *g)
{
	/* splitmix64: fast, and the same seed gives the same tree everywhere */
	uint64_t z = (g->state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *const js_words[] = {
	"const", "function", "return", "module.exports", "require", "if", "else", "this",
	"value", "options", "callback", "undefined", "null", "true", "false", "Object.keys",
	"Array.isArray", "throw new Error", "typeof", "prototype", "arguments", "length",
	"push", "forEach", "map", "filter", "Promise", "async", "await", "=>", "===", "!==",
	"{", "}", "(", ")", ";", "\n", "\n  ", "\n    ", "'use strict'", "exports", "default",
	"buffer", "stream", "path.join", "process.env", "JSON.stringify", "let", "var",
};

/* Text that compresses like real source (a few x with zstd). */
static size_t gen_text(struct gen *g, size_t len)
{
	size_t n = 0;

	while (n + 40 < len) {
		uint64_t x = gen_next(g);
		const char *w = js_words[x % (sizeof(js_words) / sizeof(js_words[0]))];
		size_t wl = strlen(w);

		memcpy(g->buf + n, w, wl);
		n += wl;
		if ((x >> 20) % 5 == 0)
			n += (size_t)snprintf(g->buf + n, 24, " v%" PRIx64, (x >> 32) & 0xfffff);
		g->buf[n++] = ' ';
	}
	while (n < len)
		g->buf[n++] = '\n';
	return len;
}

static int gen_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return hb_err(-errno, "%s: %s", path, strerror(errno));
	r = write_all(fd, data, len);
	close(fd);
	return r < 0 ? hb_err_ctx(r, "%s", path) : 0;
}

static int gen_mkdir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return hb_err(-errno, "mkdir %s: %s", path, strerror(errno));
	return 0;
}

/* A binary: half random (machine code does not compress), half structured. */
static int gen_binary(struct gen *g, const char *path, size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = (i / 4096) % 2 ? gen_next(g) : (uint64_t)(i / 8) * 0x0101;

		memcpy(g->buf + i, &v, 8);
	}
	return gen_write(path, g->buf, len);
}

int bench_generate_workspace(const char *dir, unsigned files, uint64_t seed)
{
	struct gen g = { .state = seed };
	char path[PATH_MAX], pkgdir[PATH_MAX];
	unsigned written = 0, pkgs;
	size_t bin_bytes;
	int r = 0;

	if (files < 10)
		return hb_err(-EINVAL, "a workspace needs at least 10 files");
	/* Binaries grow with the tree: ~2 KB each per file, at least 64 KiB. */
	bin_bytes = (size_t)files * 2000;
	if (bin_bytes < 65536)
		bin_bytes = 65536;
	g.cap = bin_bytes > 1 << 20 ? bin_bytes : 1 << 20;
	g.buf = calloc(1, g.cap);
	if (!g.buf)
		return hb_err(-ENOMEM, "out of memory");
#define P(...) snprintf(path, sizeof(path), __VA_ARGS__)
	if ((r = gen_mkdir(dir)) < 0)
		goto out;
	P("%s/node_modules", dir);
	if ((r = gen_mkdir(path)) < 0)
		goto out;
	P("%s/src", dir);
	if ((r = gen_mkdir(path)) < 0)
		goto out;
	P("%s/package.json", dir);
	r = gen_write(path, "{\n  \"name\": \"bench-app\",\n  \"version\": \"1.0.0\",\n"
			    "  \"main\": \"src/index.js\",\n  \"dependencies\": {}\n}\n", 95);
	if (r < 0)
		goto out;
	written++;
	/* package-lock.json: one big json file, ~200 bytes per package */
	pkgs = files / 9 + 1;
	{
		size_t n = 0, cap = g.cap - 256;

		n += (size_t)snprintf(g.buf, cap, "{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n");
		for (unsigned i = 0; i < pkgs && n + 256 < cap; i++)
			n += (size_t)snprintf(g.buf + n, cap - n,
					      "    \"node_modules/pkg-%u\": {\"version\": \"%u.%u.%u\", "
					      "\"integrity\": \"sha512-%016" PRIx64 "%016" PRIx64 "\"},\n",
					      i, i % 7, i % 13, i % 31, gen_next(&g), gen_next(&g));
		n += (size_t)snprintf(g.buf + n, cap - n, "    \"\": {}\n  }\n}\n");
		P("%s/package-lock.json", dir);
		if ((r = gen_write(path, g.buf, n)) < 0)
			goto out;
		written++;
	}
	/* node_modules/pkg-N/: package.json, README.md, index.js, lib/mI-K.js */
	for (unsigned i = 0; written < files - 4; i++) {
		unsigned in_pkg = 4 + (unsigned)(gen_next(&g) % 12);

		snprintf(pkgdir, sizeof(pkgdir), "%s/node_modules/pkg-%u", dir, i % pkgs);
		if ((r = gen_mkdir(pkgdir)) < 0)
			goto out;
		P("%s/lib", pkgdir);
		if ((r = gen_mkdir(path)) < 0)
			goto out;
		for (unsigned k = 0; k < in_pkg && written < files - 4; k++) {
			size_t len;
			uint64_t x = gen_next(&g);

			/* sizes from 200 B to ~50 KiB, most of them small */
			len = 200 + (size_t)(x % 3000);
			if (x % 4 == 0)
				len *= 4;
			if (x % 29 == 0)
				len *= 4;
			if (k == 0)
				P("%s/package.json", pkgdir);
			else if (k == 1)
				P("%s/README.md", pkgdir);
			else if (k == 2)
				P("%s/index.js", pkgdir);
			else
				P("%s/lib/m%u-%u.js", pkgdir, i, k);
			gen_text(&g, len);
			r = gen_write(path, g.buf, len);
			if (r == -EEXIST)
				continue;
			if (r < 0)
				goto out;
			written++;
		}
	}
	P("%s/src/index.js", dir);
	gen_text(&g, 2000);
	if ((r = gen_write(path, g.buf, 2000)) < 0)
		goto out;
	written++;
	/* three native binaries, like esbuild, sharp, a prebuilt .node addon */
	P("%s/node_modules/.bin", dir);
	if ((r = gen_mkdir(path)) < 0)
		goto out;
	for (int b = 0; b < 3; b++) {
		static const char *const names[] = { "esbuild", "sharp.node", "fsevents.node" };

		P("%s/node_modules/.bin/%s", dir, names[b]);
		if ((r = gen_binary(&g, path, bin_bytes / (size_t)(b + 1))) < 0)
			goto out;
		written++;
	}
#undef P
	r = (int)written;
out:
	free(g.buf);
	return r;
}

/* ---- the link emulator (--rtt, --bandwidth) ---- */

#define RELAY_CHUNK_BYTES 65536
#define RELAY_QUEUE_MAX_BYTES ((size_t)8 << 20) /* like a TCP window: the reader waits */

struct relay {
	int listen_fd;
	uint16_t port;
	struct sockaddr_in upstream;
	uint64_t half_rtt_ns;
	double bytes_per_ns; /* 0: unlimited */
	pthread_mutex_t lock; /* next_free */
	uint64_t next_free[2]; /* when the link is free again, per direction */
};

struct relay_chunk {
	struct relay_chunk *next;
	uint64_t ready_ns;
	size_t len; /* 0: end of stream */
	char data[];
};

struct relay_dir {
	struct relay_conn *conn;
	int dir, from, to;
	pthread_mutex_t m;
	pthread_cond_t cv;
	struct relay_chunk *head, *tail;
	size_t queued;
};

struct relay_conn {
	struct relay *relay;
	int fds[2]; /* client, upstream */
	struct relay_dir d[2];
	atomic_int threads;
};

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000ull),
			       .tv_nsec = (long)(t_ns % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void relay_conn_put(struct relay_conn *c)
{
	if (atomic_fetch_sub(&c->threads, 1) != 1)
		return;
	close(c->fds[0]);
	close(c->fds[1]);
	for (int i = 0; i < 2; i++) {
		pthread_mutex_destroy(&c->d[i].m);
		pthread_cond_destroy(&c->d[i].cv);
	}
	free(c);
}

static void relay_push(struct relay_dir *d, struct relay_chunk *ch)
{
	pthread_mutex_lock(&d->m);
	while (ch->len && d->queued > RELAY_QUEUE_MAX_BYTES)
		pthread_cond_wait(&d->cv, &d->m);
	ch->next = NULL;
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += ch->len;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->m);
}

static struct relay_chunk *relay_pop(struct relay_dir *d)
{
	struct relay_chunk *ch;

	pthread_mutex_lock(&d->m);
	while (!d->head)
		pthread_cond_wait(&d->cv, &d->m);
	ch = d->head;
	d->head = ch->next;
	if (!d->head)
		d->tail = NULL;
	d->queued -= ch->len;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->m);
	return ch;
}

static void *relay_reader(void *arg)
{
	struct relay_dir *d = arg;
	struct relay_conn *c = d->conn;

	for (;;) {
		struct relay_chunk *ch = malloc(sizeof(*ch) + RELAY_CHUNK_BYTES);
		ssize_t n;

		if (!ch)
			break;
		do
			n = read(d->from, ch->data, RELAY_CHUNK_BYTES);
		while (n < 0 && errno == EINTR);
		ch->len = n > 0 ? (size_t)n : 0;
		ch->ready_ns = now_ns() + c->relay->half_rtt_ns;
		relay_push(d, ch);
		if (n <= 0)
			break;
	}
	relay_conn_put(c);
	return NULL;
}

static void *relay_writer(void *arg)
{
	struct relay_dir *d = arg;
	struct relay_conn *c = d->conn;
	struct relay *rl = c->relay;
	bool broken = false;

	for (;;) {
		struct relay_chunk *ch = relay_pop(d);
		uint64_t at = ch->ready_ns;

		if (!ch->len) {
			free(ch);
			break;
		}
		if (!broken) {
			if (rl->bytes_per_ns > 0) {
				pthread_mutex_lock(&rl->lock);
				if (rl->next_free[d->dir] > at)
					at = rl->next_free[d->dir];
				at += (uint64_t)((double)ch->len / rl->bytes_per_ns);
				rl->next_free[d->dir] = at;
				pthread_mutex_unlock(&rl->lock);
			}
			sleep_until(at);
			if (write_all(d->to, ch->data, ch->len) < 0) {
				broken = true; /* drain until the reader sees the end */
				shutdown(d->from, SHUT_RD);
			}
		}
		free(ch);
	}
	shutdown(d->to, SHUT_WR);
	relay_conn_put(c);
	return NULL;
}

static void *relay_accept(void *arg)
{
	struct relay *rl = arg;
	int one = 1;

	for (;;) {
		int cfd = accept4(rl->listen_fd, NULL, NULL, SOCK_CLOEXEC), ufd;
		struct relay_conn *c;
		pthread_t th;

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ufd < 0 || connect(ufd, (struct sockaddr *)&rl->upstream, sizeof(rl->upstream)) < 0) {
			if (ufd >= 0)
				close(ufd);
			close(cfd);
			continue;
		}
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(cfd);
			close(ufd);
			continue;
		}
		c->relay = rl;
		c->fds[0] = cfd;
		c->fds[1] = ufd;
		atomic_init(&c->threads, 4);
		for (int i = 0; i < 2; i++) {
			c->d[i].conn = c;
			c->d[i].dir = i; /* 0: client to server, 1: server to client */
			c->d[i].from = c->fds[i];
			c->d[i].to = c->fds[1 - i];
			pthread_mutex_init(&c->d[i].m, NULL);
			pthread_cond_init(&c->d[i].cv, NULL);
		}
		for (int i = 0; i < 2; i++) {
			if (pthread_create(&th, NULL, relay_reader, &c->d[i]) == 0)
				pthread_detach(th);
			else
				abort(); /* cannot run the link at all: no figure would be right */
			if (pthread_create(&th, NULL, relay_writer, &c->d[i]) == 0)
				pthread_detach(th);
			else
				abort();
		}
	}
}

/* Start a relay from 127.0.0.1:<port> to endpoint (http://HOST:PORT, an IPv4
 * address or localhost).  It lives until the process exits. */
static int relay_start(const char *endpoint, unsigned rtt_ms, double mbps, struct relay **out)
{
	struct relay *rl;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	char host[64];
	unsigned port;
	pthread_t th;
	int n = 0;

	if (sscanf(endpoint, "http://%63[^:/]:%u%n", host, &port, &n) != 2 || port == 0 ||
	    port > 65535 || (endpoint[n] && strcmp(endpoint + n, "/") != 0))
		return hb_err(-EINVAL, "--rtt/--bandwidth need AWS_ENDPOINT_URL=http://HOST:PORT "
				       "(an S3 endpoint on this machine or network), not '%s'", endpoint);
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return hb_err(-ENOMEM, "out of memory");
	rl->upstream.sin_family = AF_INET;
	rl->upstream.sin_port = htons((uint16_t)port);
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &rl->upstream.sin_addr) != 1) {
		free(rl);
		return hb_err(-EINVAL, "endpoint host '%s': give an IPv4 address", host);
	}
	rl->half_rtt_ns = (uint64_t)rtt_ms * 1000000ull / 2;
	rl->bytes_per_ns = mbps > 0 ? mbps * 1e6 / 1e9 : 0;
	pthread_mutex_init(&rl->lock, NULL);
	rl->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rl->listen_fd < 0 || bind(rl->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(rl->listen_fd, 64) < 0 ||
	    getsockname(rl->listen_fd, (struct sockaddr *)&a, &alen) < 0) {
		int e = errno;

		if (rl->listen_fd >= 0)
			close(rl->listen_fd);
		free(rl);
		return hb_err(-e, "link relay: %s", strerror(e));
	}
	rl->port = ntohs(a.sin_port);
	if (pthread_create(&th, NULL, relay_accept, rl) != 0) {
		close(rl->listen_fd);
		free(rl);
		return hb_err(-EAGAIN, "link relay: cannot start a thread");
	}
	pthread_detach(th);
	*out = rl;
	return 0;
}

/* ---- running the steps ---- */

enum { TOOL_TAR, TOOL_ZSTD, TOOL_MKSQUASHFS, TOOL_UNSQUASHFS, TOOL_SQUASHFUSE, TOOL_OVERLAY,
       TOOL_FUSERMOUNT, TOOL_CP, TOOLS };
static const char *const tool_names[TOOLS] = { "tar", "zstd", "mksquashfs", "unsquashfs",
					       "squashfuse", "fuse-overlayfs", "fusermount3", "cp" };

struct bench_ctx {
	const struct bench_opts *o;
	struct bench_result *res;
	char self[PATH_MAX];
	char work[PATH_MAX];
	char tree[PATH_MAX];
	char log[PATH_MAX];
	const char *location;  /* the configured repository */
	bool remote;
	char bucket[256];
	char prefix[S3_KEY_MAX / 2]; /* "<prefix>/hiberbox-bench-<stamp>" */
	struct s3_client *s3;
	bool can_drop;
	bool tty;
	const char *probe;
	bool have[TOOLS];
	bool method_failed[BENCH_METHODS];
	unsigned run;
	char step[160];
};

static void progress(struct bench_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(struct bench_ctx *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->step, sizeof(x->step), fmt, ap);
	va_end(ap);
	if (x->o->quiet)
		return;
	if (x->tty)
		fprintf(stderr, "\r\033[K[bench] run %u/%u: %s", x->run, x->o->runs, x->step);
	else
		fprintf(stderr, "[bench] run %u/%u: %s\n", x->run, x->o->runs, x->step);
	fflush(stderr);
}

static void progress_end(struct bench_ctx *x)
{
	if (x->tty && !x->o->quiet)
		fputs("\r\033[K", stderr);
}

static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char full[PATH_MAX];

	if (!path)
		return false;
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n > 0 && snprintf(full, sizeof(full), "%.*s/%s", (int)n, path, name) <
				     (int)sizeof(full) &&
		    access(full, X_OK) == 0)
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

/* Whether path is on an ext4 mounted without a journal: the kernel lists
 * every ext4 in /proc/fs/ext4/DEV and every journal in /proc/fs/jbd2/DEV-8. */
static bool ext4_without_journal(const char *path)
{
	char p[PATH_MAX], uevent[512], *name;
	struct stat st;
	ssize_t n;
	int fd;

	if (stat(path, &st) < 0)
		return false;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/uevent", major(st.st_dev), minor(st.st_dev));
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, uevent, sizeof(uevent) - 1);
	close(fd);
	if (n <= 0)
		return false;
	uevent[n] = '\0';
	name = strstr(uevent, "DEVNAME=");
	if (!name)
		return false;
	name += 8;
	name[strcspn(name, "\n")] = '\0';
	snprintf(p, sizeof(p), "/proc/fs/ext4/%s", name);
	if (access(p, F_OK) < 0)
		return false;
	snprintf(p, sizeof(p), "/proc/fs/jbd2/%s-8", name);
	return access(p, F_OK) < 0;
}

/* Drop the page cache (and write back what is dirty first) when allowed. */
static void drop_caches(struct bench_ctx *x)
{
	int fd;

	sync();
	if (!x->can_drop)
		return;
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "3", 1) != 1)
			x->can_drop = false;
		close(fd);
	}
}

/* Run argv (with cwd, stdout captured into out when out != NULL, else
 * discarded; stderr appended to the log) and wait.  secs: its wall time. */
static int run_cmd(struct bench_ctx *x, const char *const *argv, const char *cwd, struct buf *out,
		   double *secs)
{
	int pfd[2] = { -1, -1 }, logfd, status;
	uint64_t t0;
	pid_t pid;
	FILE *lf;

	lf = fopen(x->log, "a");
	if (lf) {
		fprintf(lf, "$");
		for (int i = 0; argv[i]; i++)
			fprintf(lf, " %s", argv[i]);
		fprintf(lf, "%s%s\n", cwd ? "   (in " : "", cwd ? cwd : "");
		fclose(lf);
	}
	logfd = open(x->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (logfd < 0)
		return hb_err(-errno, "%s: %s", x->log, strerror(errno));
	if (out && pipe2(pfd, O_CLOEXEC) < 0) {
		close(logfd);
		return hb_err(-errno, "pipe: %s", strerror(errno));
	}
	t0 = now_ns();
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(logfd);
		if (out) {
			close(pfd[0]);
			close(pfd[1]);
		}
		return hb_err(-e, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (cwd && chdir(cwd) < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(out ? pfd[1] : nul, 1);
		dup2(logfd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(logfd);
	if (out) {
		char tmp[4096];
		ssize_t n;

		close(pfd[1]);
		buf_reset(out);
		while ((n = read(pfd[0], tmp, sizeof(tmp))) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (out->len + (size_t)n < BENCH_CAPTURE_MAX_BYTES)
				buf_append(out, tmp, (size_t)n);
		}
		close(pfd[0]);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return hb_err(-errno, "waitpid: %s", strerror(errno));
	if (secs)
		*secs = (double)(now_ns() - t0) / 1e9;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return hb_err(-EIO, "'%s%s%s' failed (%s %d; its messages are in %s)", argv[0],
			      argv[1] ? " " : "", argv[1] ? argv[1] : "",
			      WIFEXITED(status) ? "exit" : "signal",
			      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), x->log);
	return 0;
}

static int rm_rf(struct bench_ctx *x, const char *path)
{
	const char *argv[] = { "rm", "-rf", "--one-file-system", path, NULL };

	return run_cmd(x, argv, NULL, NULL, NULL);
}

static int fresh_dir(struct bench_ctx *x, const char *path)
{
	int r = rm_rf(x, path);

	if (r < 0)
		return r;
	return mkdir_p(AT_FDCWD, path, 0755);
}

static void path_in(struct bench_ctx *x, char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void path_in(struct bench_ctx *x, char *out, size_t size, const char *fmt, ...)
{
	char name[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(out, size, "%s/%s", x->work, name);
}

/* Run `hiberbox [--repo LOC] --quiet ARGS...` with HIBERBOX_HOME=home. */
static int hb(struct bench_ctx *x, const char *home, const char *repo, struct buf *out,
	      double *secs, ...)
{
	const char *argv[24];
	int n = 0;
	va_list ap;

	argv[n++] = x->self;
	if (repo) {
		argv[n++] = "--repo";
		argv[n++] = repo;
	}
	argv[n++] = "--quiet";
	va_start(ap, secs);
	while (n < 23 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	setenv("HIBERBOX_HOME", home, 1);
	return run_cmd(x, argv, NULL, out, secs);
}

/* The tree answers: list the root (what a shell prompt or `ls` does first). */
static int list_root(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return hb_err(-errno, "%s: %s", dir, strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n > 2 ? 0 : hb_err(-ENOENT, "%s: empty after waking", dir);
}

static int probe(struct bench_ctx *x, const char *dir, double *secs)
{
	const char *argv[] = { "sh", "-c", x->probe, NULL };

	return run_cmd(x, argv, dir, NULL, secs);
}

/* ---- S3 helpers for the baselines' archives ---- */

static int s3_upload_file(struct bench_ctx *x, const char *path, const char *name, double *secs)
{
	struct buf b = BUF_INIT;
	char key[S3_KEY_MAX];
	uint64_t t0 = now_ns();
	int r;

	snprintf(key, sizeof(key), "%s/%s", x->prefix, name);
	r = read_file(AT_FDCWD, path, (size_t)1 << 34, &b);
	if (r == 0)
		r = s3_put(x->s3, key, b.data, b.len, 0, NULL, NULL);
	buf_free(&b);
	*secs = (double)(now_ns() - t0) / 1e9;
	return r < 0 ? hb_err_ctx(r, "uploading %s", name) : 0;
}

static int s3_download_file(struct bench_ctx *x, const char *name, const char *path, double *secs)
{
	struct buf b = { .max = (size_t)1 << 34 };
	char key[S3_KEY_MAX];
	uint64_t t0 = now_ns();
	int r, fd;

	snprintf(key, sizeof(key), "%s/%s", x->prefix, name);
	r = s3_get(x->s3, key, 0, S3_GET_ALL, &b, NULL);
	if (r == 0) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			r = hb_err(-errno, "%s: %s", path, strerror(errno));
		else {
			r = write_all(fd, b.data, b.len);
			close(fd);
		}
	}
	buf_free(&b);
	*secs = (double)(now_ns() - t0) / 1e9;
	return r < 0 ? hb_err_ctx(r, "downloading %s", name) : 0;
}

static int sum_object(const char *key, const struct s3_object_info *info, void *arg)
{
	*(uint64_t *)arg += info->size;
	return 0;
}

static int delete_object(const char *key, const struct s3_object_info *info, void *arg)
{
	return s3_delete(arg, key) < 0 ? 0 : 0; /* best effort: a leftover costs only space */
}

static uint64_t local_bytes;
static int sum_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F)
		local_bytes += (uint64_t)st->st_size;
	return 0;
}

static uint64_t dir_bytes(const char *dir)
{
	local_bytes = 0;
	nftw(dir, sum_file, 32, FTW_PHYS);
	return local_bytes;
}

static uint64_t tree_files_count, tree_bytes_count;
static int count_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F || type == FTW_SL) { /* every non-directory */
		tree_files_count++;
		if (S_ISREG(st->st_mode))
			tree_bytes_count += (uint64_t)st->st_size;
	}
	return 0;
}

/* ---- one run of each method ---- */

#define CELL(row, m) (&x->res->cell[(row)][(m)])

static int run_hiberbox(struct bench_ctx *x)
{
	char repo[PATH_MAX], home[PATH_MAX], mnt[PATH_MAX], out[PATH_MAX], change[PATH_MAX];
	char id[OID_HEX_BYTES + 1] = "";
	struct buf cap = BUF_INIT;
	double s, t_probe;
	uint64_t t0;
	json_t *j;
	int r;

	if (x->remote)
		snprintf(repo, sizeof(repo), "s3://%s/%s/run-%u", x->bucket, x->prefix, x->run);
	else
		path_in(x, repo, sizeof(repo), "repo-%u", x->run);
	path_in(x, home, sizeof(home), "home-%u-sleep", x->run);
	path_in(x, mnt, sizeof(mnt), "mnt");
	path_in(x, out, sizeof(out), "out");
	snprintf(change, sizeof(change), "%s/.hiberbox-bench-change", x->tree);

	progress(x, "hiberbox: sleep (full snapshot)");
	if ((r = hb(x, home, repo, NULL, NULL, "init", NULL)) < 0)
		goto out;
	drop_caches(x);
	if ((r = hb(x, home, repo, &cap, &s, "snapshot", "create", "--no-parent", "--json", x->tree,
		    NULL)) < 0)
		goto out;
	bench_cell_add(CELL(BENCH_SLEEP_FULL, BENCH_HIBERBOX), s);
	if (x->run == 1) {
		if (x->remote) {
			char key[S3_KEY_MAX];

			snprintf(key, sizeof(key), "%s/run-1/", x->prefix);
			x->res->repo_bytes = 0;
			s3_list(x->s3, key, sum_object, &x->res->repo_bytes);
		} else {
			x->res->repo_bytes = dir_bytes(repo);
		}
	}

	progress(x, "hiberbox: sleep after a small change");
	{
		char text[256];
		int n = snprintf(text, sizeof(text), "changed in run %u at %" PRIu64 "\n", x->run,
				 now_ns());

		unlink(change);
		if ((r = gen_write(change, text, (size_t)n)) < 0)
			goto out;
	}
	drop_caches(x);
	r = hb(x, home, repo, &cap, &s, "snapshot", "create", "--json", x->tree, NULL);
	unlink(change);
	if (r < 0)
		goto out;
	bench_cell_add(CELL(BENCH_SLEEP_INCR, BENCH_HIBERBOX), s);
	j = json_loadb((const char *)cap.data, cap.len, 0, NULL);
	if (j && json_is_string(json_object_get(j, "id")))
		snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	if (!id[0]) {
		r = hb_err(-EBADMSG, "snapshot create printed no id");
		goto out;
	}

	progress(x, "hiberbox: wake, cold cache");
	path_in(x, home, sizeof(home), "home-%u-wake", x->run);
	if ((r = fresh_dir(x, home)) < 0 || (r = mkdir_p(AT_FDCWD, mnt, 0755)) < 0)
		goto out;
	drop_caches(x);
	t0 = now_ns();
	if ((r = hb(x, home, repo, NULL, NULL, "mount", id, mnt, NULL)) < 0)
		goto out;
	r = list_root(mnt);
	s = (double)(now_ns() - t0) / 1e9;
	if (r == 0)
		r = probe(x, mnt, &t_probe);
	hb(x, home, NULL, NULL, NULL, "umount", mnt, NULL);
	if (r < 0)
		goto out;
	bench_cell_add(CELL(BENCH_WAKE_COLD, BENCH_HIBERBOX), s);
	bench_cell_add(CELL(BENCH_FIRST_CMD, BENCH_HIBERBOX), s + t_probe);
	if (x->remote && x->run == 1) {
		char cache[PATH_MAX];

		/* Say so when this build's S3 repository keeps no local cache:
		 * then warm and cold wakes differ only by the page cache. */
		snprintf(cache, sizeof(cache), "%s/cache", home);
		if (dir_bytes(cache) == 0)
			bench_note(x->res, "the cold wake left nothing in $HIBERBOX_HOME/cache: this "
					   "build reads the s3:// repository without a local cache, so "
					   "'warm' differs from 'cold' only by the page cache");
	}

	progress(x, "hiberbox: wake, warm cache");
	sync(); /* warm, but not competing with the writeback of earlier steps */
	t0 = now_ns();
	if ((r = hb(x, home, repo, NULL, NULL, "mount", id, mnt, NULL)) < 0)
		goto out;
	r = list_root(mnt);
	s = (double)(now_ns() - t0) / 1e9;
	hb(x, home, NULL, NULL, NULL, "umount", mnt, NULL);
	if (r < 0)
		goto out;
	bench_cell_add(CELL(BENCH_WAKE_WARM, BENCH_HIBERBOX), s);

	progress(x, "hiberbox: full restore");
	path_in(x, home, sizeof(home), "home-%u-restore", x->run);
	if ((r = fresh_dir(x, home)) < 0 || (r = rm_rf(x, out)) < 0)
		goto out;
	drop_caches(x);
	if ((r = hb(x, home, repo, NULL, &s, "snapshot", "restore", id, out, NULL)) < 0)
		goto out;
	bench_cell_add(CELL(BENCH_RESTORE, BENCH_HIBERBOX), s);
	r = rm_rf(x, out);
out:
	buf_free(&cap);
	return r;
}

/* Sleep by an image baseline: build the image with argv (page cache dropped
 * first), upload it when the run is remote, and count that time in both sleep
 * rows (an image has no incremental form).  *bytes gets the image's size. */
static int baseline_sleep(struct bench_ctx *x, int method, const char *const *argv,
			  const char *image, const char *name, uint64_t *bytes)
{
	double create, upload = 0;
	struct stat st;
	int r;

	unlink(image);
	drop_caches(x);
	if ((r = run_cmd(x, argv, NULL, NULL, &create)) < 0)
		return r;
	if (stat(image, &st) == 0)
		*bytes = (uint64_t)st.st_size;
	if (x->remote && (r = s3_upload_file(x, image, name, &upload)) < 0)
		return r;
	bench_cell_add(CELL(BENCH_SLEEP_FULL, method), create + upload);
	bench_cell_add(CELL(BENCH_SLEEP_INCR, method), create + upload);
	return 0;
}

/* The image a wake starts from, with a cold page cache: the local one, or a
 * fresh download to `fetched` when remote (*download: its seconds). */
static int baseline_fetch(struct bench_ctx *x, const char *image, const char *fetched,
			  const char *name, const char **src, double *download)
{
	int r;

	*src = image;
	drop_caches(x);
	if (x->remote) {
		unlink(fetched);
		if ((r = s3_download_file(x, name, fetched, download)) < 0)
			return r;
		*src = fetched;
	}
	return 0;
}

static int run_tar(struct bench_ctx *x)
{
	char archive[PATH_MAX], fetched[PATH_MAX], out[PATH_MAX], out2[PATH_MAX];
	double download = 0, extract, warm, t_probe;
	const char *src;
	int r;

	path_in(x, archive, sizeof(archive), "tree.tar.zst");
	path_in(x, fetched, sizeof(fetched), "fetched.tar.zst");
	path_in(x, out, sizeof(out), "out");
	progress(x, "tar+zstd: create%s", x->remote ? " and upload" : "");
	{
		const char *argv[] = { "tar", "-I", "zstd -T0 -3", "-cf", archive, "-C", x->tree, ".",
				       NULL };

		if ((r = baseline_sleep(x, BENCH_TAR, argv, archive, "tree.tar.zst",
					&x->res->tar_bytes)) < 0)
			return r;
	}

	progress(x, "tar+zstd: %sextract", x->remote ? "download and " : "");
	if ((r = baseline_fetch(x, archive, fetched, "tree.tar.zst", &src, &download)) < 0)
		return r;
	if ((r = fresh_dir(x, out)) < 0)
		return r;
	{
		const char *argv[] = { "tar", "-I", "zstd", "-xf", src, "-C", out, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, &extract)) < 0)
			return r;
	}
	if ((r = probe(x, out, &t_probe)) < 0)
		return r;
	bench_cell_add(CELL(BENCH_WAKE_COLD, BENCH_TAR), download + extract);
	bench_cell_add(CELL(BENCH_FIRST_CMD, BENCH_TAR), download + extract + t_probe);
	bench_cell_add(CELL(BENCH_RESTORE, BENCH_TAR), download + extract);

	/* Into a second directory: deleting the first one just before would
	 * make this step pay for the deletion (online discard on ext4). */
	progress(x, "tar+zstd: extract the local archive (warm)");
	path_in(x, out2, sizeof(out2), "out-warm");
	if ((r = fresh_dir(x, out2)) < 0)
		return r;
	sync();
	{
		const char *argv[] = { "tar", "-I", "zstd", "-xf", src, "-C", out2, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, &warm)) < 0)
			return r;
	}
	bench_cell_add(CELL(BENCH_WAKE_WARM, BENCH_TAR), warm);
	unlink(fetched);
	if ((r = rm_rf(x, out2)) < 0)
		return r;
	return rm_rf(x, out);
}

/* fusermount3 -u of the overlay returns before fuse-overlayfs has let go of
 * the squashfuse mount below it, which is then busy for a moment: retry,
 * and detach lazily as the last resort so that nothing stays mounted. */
static void fuse_unmount(struct bench_ctx *x, const char *mnt)
{
	const char *argv[] = { "fusermount3", "-u", "-q", mnt, NULL };
	const char *lazy[] = { "fusermount3", "-u", "-z", "-q", mnt, NULL };
	struct stat st, parent;
	char up[PATH_MAX];

	for (int i = 0; i < 100; i++) {
		snprintf(up, sizeof(up), "%s/..", mnt);
		if (lstat(mnt, &st) < 0 && errno == ENOENT)
			return;
		if (stat(mnt, &st) == 0 && stat(up, &parent) == 0 && st.st_dev == parent.st_dev)
			return; /* not (or no longer) a mount point */
		if (run_cmd(x, argv, NULL, NULL, NULL) == 0)
			return;
		hb_err_clear();
		usleep(20000);
	}
	run_cmd(x, lazy, NULL, NULL, NULL);
	hb_err_clear();
}

/* squashfuse on the image, fuse-overlayfs on top (the writable stack). */
static int squashfs_mount(struct bench_ctx *x, const char *image)
{
	char sq[PATH_MAX], ov[PATH_MAX], up[PATH_MAX], wk[PATH_MAX], o[4 * PATH_MAX];
	int r;

	path_in(x, sq, sizeof(sq), "sq");
	path_in(x, ov, sizeof(ov), "ov");
	path_in(x, up, sizeof(up), "ov-upper");
	path_in(x, wk, sizeof(wk), "ov-work");
	if ((r = fresh_dir(x, up)) < 0 || (r = fresh_dir(x, wk)) < 0 ||
	    (r = mkdir_p(AT_FDCWD, sq, 0755)) < 0 || (r = mkdir_p(AT_FDCWD, ov, 0755)) < 0)
		return r;
	snprintf(o, sizeof(o), "lowerdir=%s,upperdir=%s,workdir=%s", sq, up, wk);
	{
		const char *argv[] = { "squashfuse", image, sq, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, NULL)) < 0)
			return r;
	}
	{
		const char *argv[] = { "fuse-overlayfs", "-o", o, ov, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, NULL)) < 0) {
			fuse_unmount(x, sq);
			return r;
		}
	}
	return list_root(ov);
}

static void squashfs_unmount(struct bench_ctx *x)
{
	char sq[PATH_MAX], ov[PATH_MAX];

	path_in(x, sq, sizeof(sq), "sq");
	path_in(x, ov, sizeof(ov), "ov");
	fuse_unmount(x, ov);
	fuse_unmount(x, sq);
}

static int run_squashfs(struct bench_ctx *x)
{
	char image[PATH_MAX], fetched[PATH_MAX], out[PATH_MAX], ov[PATH_MAX];
	double download = 0, mount, t_probe, s;
	const char *src;
	uint64_t t0;
	int r;

	path_in(x, image, sizeof(image), "tree.sqfs");
	path_in(x, fetched, sizeof(fetched), "fetched.sqfs");
	path_in(x, out, sizeof(out), "out");
	path_in(x, ov, sizeof(ov), "ov");
	progress(x, "squashfs: create%s", x->remote ? " and upload" : "");
	{
		const char *argv[] = { "mksquashfs", x->tree, image, "-comp", "zstd", "-noappend",
				       "-quiet", "-no-progress", NULL };

		if ((r = baseline_sleep(x, BENCH_SQUASHFS, argv, image, "tree.sqfs",
					&x->res->squashfs_bytes)) < 0)
			return r;
	}

	progress(x, "squashfs: %smount", x->remote ? "download and " : "");
	if ((r = baseline_fetch(x, image, fetched, "tree.sqfs", &src, &download)) < 0)
		return r;
	t0 = now_ns();
	r = squashfs_mount(x, src);
	mount = (double)(now_ns() - t0) / 1e9;
	if (r == 0)
		r = probe(x, ov, &t_probe);
	squashfs_unmount(x);
	if (r < 0)
		return r;
	bench_cell_add(CELL(BENCH_WAKE_COLD, BENCH_SQUASHFS), download + mount);
	bench_cell_add(CELL(BENCH_FIRST_CMD, BENCH_SQUASHFS), download + mount + t_probe);

	progress(x, "squashfs: mount the local image (warm)");
	sync();
	t0 = now_ns();
	r = squashfs_mount(x, src);
	s = (double)(now_ns() - t0) / 1e9;
	squashfs_unmount(x);
	if (r < 0)
		return r;
	bench_cell_add(CELL(BENCH_WAKE_WARM, BENCH_SQUASHFS), s);

	if (!x->have[TOOL_UNSQUASHFS]) {
		bench_cell_skip(CELL(BENCH_RESTORE, BENCH_SQUASHFS), "unsquashfs is not installed");
	} else {
		progress(x, "squashfs: %sunsquashfs", x->remote ? "download and " : "");
		if ((r = rm_rf(x, out)) < 0)
			return r;
		drop_caches(x);
		if (x->remote) {
			unlink(fetched);
			if ((r = s3_download_file(x, "tree.sqfs", fetched, &download)) < 0)
				return r;
		}
		{
			const char *argv[] = { "unsquashfs", "-d", out, "-no-progress", "-quiet", src,
					       NULL };

			if ((r = run_cmd(x, argv, NULL, NULL, &s)) < 0)
				return r;
		}
		bench_cell_add(CELL(BENCH_RESTORE, BENCH_SQUASHFS), download + s);
	}
	unlink(fetched);
	return rm_rf(x, out);
}

static int run_cp(struct bench_ctx *x)
{
	char out[PATH_MAX], out2[PATH_MAX];
	double s, warm, t_probe;
	int r;

	path_in(x, out, sizeof(out), "out");
	progress(x, "cp -a (the local floor)");
	if ((r = rm_rf(x, out)) < 0)
		return r;
	drop_caches(x);
	{
		const char *argv[] = { "cp", "-a", x->tree, out, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, &s)) < 0)
			return r;
	}
	if ((r = probe(x, out, &t_probe)) < 0)
		return r;
	/* a second copy beside the first, as for tar's warm step */
	path_in(x, out2, sizeof(out2), "out-warm");
	if ((r = rm_rf(x, out2)) < 0)
		return r;
	sync();
	{
		const char *argv[] = { "cp", "-a", x->tree, out2, NULL };

		if ((r = run_cmd(x, argv, NULL, NULL, &warm)) < 0)
			return r;
	}
	if ((r = rm_rf(x, out2)) < 0)
		return r;
	bench_cell_add(CELL(BENCH_SLEEP_FULL, BENCH_CP), s);
	bench_cell_add(CELL(BENCH_SLEEP_INCR, BENCH_CP), s);
	bench_cell_add(CELL(BENCH_WAKE_COLD, BENCH_CP), s);
	bench_cell_add(CELL(BENCH_WAKE_WARM, BENCH_CP), warm);
	bench_cell_add(CELL(BENCH_FIRST_CMD, BENCH_CP), s + t_probe);
	bench_cell_add(CELL(BENCH_RESTORE, BENCH_CP), s);
	return rm_rf(x, out);
}

/* A method that fails stops for the rest of the command; its cells say why. */
static void method_failed(struct bench_ctx *x, enum bench_method m, int r)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "%s", hb_errmsg(r));
	x->method_failed[m] = true;
	for (int row = 0; row < BENCH_ROWS; row++) {
		struct bench_cell *c = CELL(row, m);

		c->n = 0; /* a partial set of runs would compare unlike with like */
		if (!c->skipped[0])
			bench_cell_skip(c, "failed in run %u: %s", x->run, msg);
	}
	bench_note(x->res, "%s failed in run %u (%s): %s", method_labels[m], x->run, x->step, msg);
	hb_err_clear();
}

/* ---- the command ---- */

static const char restore_help[] =
	"Time how fast a workspace sleeps and wakes with hiberbox, against tar+zstd,\n"
	"a squashfs image under fuse-overlayfs and cp -a, on the same tree in the\n"
	"same run.  Without DIR it generates a workspace like a node project after\n"
	"npm install.  The tree is copied into the scratch directory first; DIR\n"
	"itself is only read.  Each figure is the median of N runs (min and max\n"
	"too), also as a ratio to tar+zstd (tar+zstd time / this time).\n\n"
	"The repository is the configured one (--repo, $HIBERBOX_REPO): each run\n"
	"writes a new repository beside it (a scratch directory when local, a new\n"
	"prefix in the bucket when s3://; removed at the end).  With s3:// the\n"
	"baselines' archives go to the same bucket and are downloaded from it.\n\n"
	"Options:\n"
	"  --runs N           runs per figure (default 3)\n"
	"  --probe CMD        the first useful command, run by sh in the tree root\n"
	"                     (default: list the root and read the first file)\n"
	"  --rtt MS           emulate a link with this round-trip time to S3\n"
	"  --bandwidth MBPS   ... and this bandwidth in MB/s, each direction\n"
	"  --json             print the figures as JSON\n"
	"  --report FILE      write a report: FILE.html (charts) or FILE.md\n"
	"  --files N          size of the generated workspace (default 20000)\n"
	"  --work DIR         scratch directory (default: new under /var/tmp)\n"
	"  --keep             keep the scratch directory\n"
	"  --quiet            no progress line\n";

static void describe_machine(struct bench_result *res)
{
	struct utsname u;
	struct sysinfo si;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(res->date_utc, sizeof(res->date_utc), "%Y-%m-%dT%H:%M:%SZ", &tm);
	uname(&u);
	sysinfo(&si);
	snprintf(res->machine, sizeof(res->machine), "%ld cores, %.0f GiB RAM, %s %s %s",
		 sysconf(_SC_NPROCESSORS_ONLN),
		 (double)si.totalram * si.mem_unit / (1024.0 * 1024 * 1024), u.sysname, u.release,
		 u.machine);
}

static int setup_remote(struct bench_ctx *x)
{
	const char *loc = x->location + 5, *slash = strchr(loc, '/');
	struct s3_config cfg;
	char stamp[64];
	size_t blen = slash ? (size_t)(slash - loc) : strlen(loc);
	const char *pfx = slash ? slash + 1 : "";
	size_t plen = strlen(pfx);
	int r;

	if (blen == 0 || blen >= sizeof(x->bucket))
		return hb_err(-EINVAL, "%s: expected s3://BUCKET/PREFIX", x->location);
	memcpy(x->bucket, loc, blen);
	x->bucket[blen] = '\0';
	while (plen && pfx[plen - 1] == '/')
		plen--;
	snprintf(stamp, sizeof(stamp), "hiberbox-bench-%s-%d", x->res->date_utc, (int)getpid());
	for (char *p = stamp; *p; p++)
		if (*p == ':')
			*p = '-';
	if (plen > sizeof(x->prefix) - sizeof(stamp) - 2)
		return hb_err(-ENAMETOOLONG, "%s: prefix too long", x->location);
	if (plen)
		snprintf(x->prefix, sizeof(x->prefix), "%.*s/%s", (int)plen, pfx, stamp);
	else
		snprintf(x->prefix, sizeof(x->prefix), "%s", stamp);
	if (x->o->rtt_ms || x->o->bandwidth_mbps > 0) {
		const char *ep = getenv("AWS_ENDPOINT_URL");
		struct relay *rl = NULL;
		char url[64];

		if (!ep)
			return hb_err(-EINVAL, "--rtt/--bandwidth need AWS_ENDPOINT_URL (a local endpoint "
					       "such as tests/s3/run-s3rver.sh starts)");
		if ((r = relay_start(ep, x->o->rtt_ms, x->o->bandwidth_mbps, &rl)) < 0)
			return r;
		snprintf(url, sizeof(url), "http://127.0.0.1:%u", rl->port);
		setenv("AWS_ENDPOINT_URL", url, 1); /* for the children and for our client */
		if (x->o->bandwidth_mbps > 0)
			snprintf(x->res->link, sizeof(x->res->link),
				 "emulated: rtt %u ms, %.0f MB/s each way (a relay on 127.0.0.1 "
				 "that delays and paces every byte)", x->o->rtt_ms,
				 x->o->bandwidth_mbps);
		else
			snprintf(x->res->link, sizeof(x->res->link),
				 "emulated: rtt %u ms, bandwidth unlimited (a relay on 127.0.0.1 "
				 "that delays every byte)", x->o->rtt_ms);
		bench_note(x->res, "the link is emulated in user space: this kernel's tc has no "
				   "netem qdisc, so no veth + netem link could be built");
	} else {
		snprintf(x->res->link, sizeof(x->res->link), "as configured (%s)",
			 getenv("AWS_ENDPOINT_URL") ? getenv("AWS_ENDPOINT_URL") : "AWS");
	}
	if ((r = s3_config_from_env(&cfg)) < 0)
		return r;
	return s3_client_new(&cfg, x->bucket, &x->s3);
}

static int prepare_tree(struct bench_ctx *x)
{
	struct stat st;
	int r;

	snprintf(x->tree, sizeof(x->tree), "%s/tree", x->work);
	if ((r = rm_rf(x, x->tree)) < 0)
		return r;
	if (x->o->dir) {
		const char *argv[] = { "cp", "-a", x->o->dir, x->tree, NULL };

		if (stat(x->o->dir, &st) < 0 || !S_ISDIR(st.st_mode))
			return hb_err(-ENOTDIR, "%s: not a directory", x->o->dir);
		x->run = 0;
		progress(x, "copying %s", x->o->dir);
		if ((r = run_cmd(x, argv, NULL, NULL, NULL)) < 0)
			return r;
		snprintf(x->res->workspace, sizeof(x->res->workspace),
			 "a copy of %s (the incremental sleep adds one file to the copy)", x->o->dir);
	} else {
		progress(x, "generating a workspace of %u files", x->o->files);
		r = bench_generate_workspace(x->tree, x->o->files, 0x68626265ull);
		if (r < 0)
			return r;
		snprintf(x->res->workspace, sizeof(x->res->workspace),
			 "generated: a node project after npm install (node_modules of js/json/md "
			 "files, a package-lock.json, three binaries)");
	}
	tree_files_count = tree_bytes_count = 0;
	nftw(x->tree, count_file, 32, FTW_PHYS);
	x->res->tree_files = tree_files_count;
	x->res->tree_bytes = tree_bytes_count;
	return 0;
}

static int bench_restore_run(struct bench_ctx *x)
{
	int r, fd;

	x->remote = strncmp(x->location, "s3://", 5) == 0;
	snprintf(x->res->repo_kind, sizeof(x->res->repo_kind), "%s", x->remote ? "s3" : "local");
	if (!x->remote) {
		if (x->o->rtt_ms || x->o->bandwidth_mbps > 0)
			return hb_err(-EINVAL, "--rtt/--bandwidth need an s3:// repository");
		snprintf(x->res->link, sizeof(x->res->link), "none (local disk)");
	}
	snprintf(x->log, sizeof(x->log), "%s/bench.log", x->work);
	if (readlink("/proc/self/exe", x->self, sizeof(x->self) - 1) < 0)
		return hb_err(-errno, "cannot find this program: %s", strerror(errno));
	for (int t = 0; t < TOOLS; t++)
		x->have[t] = in_path(tool_names[t]);
	if (!x->have[TOOL_CP])
		return hb_err(-ENOENT, "cp is not in PATH");

	/* Cold steps drop the page cache when the kernel lets us. */
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	x->can_drop = fd >= 0 && write(fd, "3", 1) == 1;
	if (fd >= 0)
		close(fd);
	if (x->can_drop)
		snprintf(x->res->page_cache, sizeof(x->res->page_cache),
			 "dropped before every cold step");
	else
		snprintf(x->res->page_cache, sizeof(x->res->page_cache),
			 "NOT dropped (/proc/sys/vm/drop_caches is not writable here): cold "
			 "figures have an empty hiberbox cache but a warm page cache");

	if ((r = prepare_tree(x)) < 0)
		return r;
	if (x->remote && (r = setup_remote(x)) < 0)
		return r;
	if (ext4_without_journal(x->work))
		/* (a note holds 199 characters) */
		bench_note(x->res, "--work is on an ext4 without a journal: extracts after a delete, "
				   "of every method, run slower (recently freed inodes are skipped "
				   "one by one); a journaled one is fairer");

	if (!x->have[TOOL_TAR] || !x->have[TOOL_ZSTD]) {
		for (int row = 0; row < BENCH_ROWS; row++)
			bench_cell_skip(CELL(row, BENCH_TAR), "%s is not installed",
					x->have[TOOL_TAR] ? "zstd" : "tar");
		bench_note(x->res, "tar+zstd skipped (%s missing): no ratios can be given",
			   x->have[TOOL_TAR] ? "zstd" : "tar");
		x->method_failed[BENCH_TAR] = true;
	}
	{
		const char *missing = !x->have[TOOL_MKSQUASHFS] ? "mksquashfs (squashfs-tools)"
				      : !x->have[TOOL_SQUASHFUSE] ? "squashfuse"
				      : !x->have[TOOL_OVERLAY]	  ? "fuse-overlayfs"
				      : !x->have[TOOL_FUSERMOUNT] ? "fusermount3 (fuse3)"
								  : NULL;

		if (missing) {
			for (int row = 0; row < BENCH_ROWS; row++)
				bench_cell_skip(CELL(row, BENCH_SQUASHFS), "%s is not installed",
						missing);
			bench_note(x->res, "squashfs+overlay skipped: %s is not installed", missing);
			x->method_failed[BENCH_SQUASHFS] = true;
		}
	}

	for (x->run = 1; x->run <= x->o->runs; x->run++) {
		static int (*const run_method[BENCH_METHODS])(struct bench_ctx *) = {
			run_hiberbox, run_tar, run_squashfs, run_cp
		};

		for (int m = 0; m < BENCH_METHODS; m++) {
			if (x->method_failed[m])
				continue;
			r = run_method[m](x);
			if (r < 0)
				method_failed(x, (enum bench_method)m, r);
		}
	}
	x->run = x->o->runs;
	progress_end(x);
	bench_result_finish(x->res);
	return x->method_failed[BENCH_HIBERBOX] ? -EIO : 0;
}

static void cleanup(struct bench_ctx *x, bool remove_work)
{
	char p[PATH_MAX];

	/* whatever a failed step left mounted */
	path_in(x, p, sizeof(p), "mnt");
	if (x->self[0]) {
		char home[PATH_MAX];

		path_in(x, home, sizeof(home), "home-%u-wake", x->run);
		hb(x, home, NULL, NULL, NULL, "umount", p, NULL);
	}
	squashfs_unmount(x);
	if (x->s3) {
		char pfx[S3_KEY_MAX];

		snprintf(pfx, sizeof(pfx), "%s/", x->prefix);
		s3_list(x->s3, pfx, delete_object, x->s3);
		s3_client_free(x->s3);
		x->s3 = NULL;
	}
	if (remove_work)
		rm_rf(x, x->work);
}

static int cmd_bench_restore(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_result *res;
	struct bench_ctx x = { 0 };
	bool own_work;
	int r;

	if (bench_parse_opts(argc, argv, &o) < 0)
		return cli_usage("bench restore", "%s", hb_errmsg(-EINVAL));
	if (o.help) {
		cli_print_help(cli_find("bench restore"), restore_help);
		return 0;
	}
	if (o.repo)
		cli_set_repo(o.repo);
	o.json |= cli.json;
	o.quiet |= cli.quiet || o.json;
	x.o = &o;
	x.tty = isatty(STDERR_FILENO);
	x.probe = o.probe ? o.probe : BENCH_DEFAULT_PROBE;
	x.location = cli_repo_location();
	if (!x.location)
		return cli_fail(-ENOENT, "bench restore");
	res = calloc(1, sizeof(*res));
	if (!res)
		return cli_fail(-ENOMEM, "bench restore");
	x.res = res;
	res->runs = o.runs;
	describe_machine(res);
	snprintf(res->probe, sizeof(res->probe), "%s", o.probe ? o.probe : "ls -la . && cat the first file");
	own_work = !o.work;
	if (o.work)
		snprintf(x.work, sizeof(x.work), "%s", o.work);
	else
		snprintf(x.work, sizeof(x.work), "/var/tmp/hiberbox-bench-%d", (int)getpid());
	r = mkdir_p(AT_FDCWD, x.work, 0755);
	if (r == 0) {
		char real[PATH_MAX];

		/* children run in other directories: every path must be absolute */
		if (realpath(x.work, real))
			snprintf(x.work, sizeof(x.work), "%s", real);
		r = bench_restore_run(&x);
	}
	if (r < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", hb_errmsg(r));
		progress_end(&x);
		cleanup(&x, own_work && !o.keep && x.method_failed[BENCH_HIBERBOX] == false);
		fprintf(stderr, "hiberbox: bench restore: %s\n", msg);
		if (!x.method_failed[BENCH_HIBERBOX]) {
			free(res);
			return 1;
		}
		/* hiberbox itself failed: still show what the baselines did */
	} else {
		cleanup(&x, own_work && !o.keep);
	}
	if (o.json) {
		json_t *j = bench_result_json(res);
		char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

		if (s)
			puts(s);
		free(s);
		json_decref(j);
	} else {
		bench_print_table(res, stdout);
	}
	if (o.report) {
		int rr = bench_write_report(res, o.report);

		if (rr < 0)
			r = r < 0 ? r : rr, cli_fail(rr, "bench restore");
		else if (!o.quiet)
			fprintf(stderr, "report: %s\n", o.report);
	}
	if (!own_work || o.keep)
		fprintf(stderr, "scratch directory kept: %s\n", x.work);
	free(res);
	return r < 0 ? 1 : 0;
}

/* `hiberbox bench link`: the same relay for other benchmarks' scripts
 * (bench/s3-wake.sh --rtt): prints its URL, then relays until killed. */
static int cmd_bench_link(int argc, char **argv)
{
	static const struct option opts[] = { { "rtt", required_argument, NULL, 'r' },
					       { "bandwidth", required_argument, NULL, 'b' },
					       { "help", no_argument, NULL, 'h' },
					       { NULL, 0, NULL, 0 } };
	const char *ep = getenv("AWS_ENDPOINT_URL");
	unsigned rtt = 0;
	double mbps = 0;
	struct relay *rl;
	sigset_t set;
	int c, r, sig;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'r':
			errno = 0;
			rtt = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || rtt > 10000)
				return cli_usage("bench link", "--rtt %s: expected milliseconds, 0 to 10000",
						 optarg);
			break;
		case 'b':
			mbps = strtod(optarg, &end);
			if (*end || !*optarg || !(mbps >= 0) || mbps > 1e6)
				return cli_usage("bench link", "--bandwidth %s: expected MB/s", optarg);
			break;
		case 'h':
			cli_print_help(cli_find("bench link"),
				       "Relay 127.0.0.1:<port> to $AWS_ENDPOINT_URL, holding each byte RTT/2 in\n"
				       "each direction and pacing each direction to the bandwidth (a link\n"
				       "emulated in user space, as `bench restore --rtt` does).  Prints\n"
				       "http://127.0.0.1:<port> and relays until SIGINT or SIGTERM.\n");
			return 0;
		default:
			return cli_usage("bench link", "unknown option");
		}
	}
	if (optind != argc)
		return cli_usage("bench link", "unexpected argument '%s'", argv[optind]);
	if (!ep)
		return cli_usage("bench link", "needs AWS_ENDPOINT_URL=http://HOST:PORT");
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* the relay's threads inherit it */
	if ((r = relay_start(ep, rtt, mbps, &rl)) < 0) {
		fprintf(stderr, "hiberbox: %s\n", hb_errmsg(r));
		return 1;
	}
	printf("http://127.0.0.1:%u\n", rl->port);
	fflush(stdout);
	sigwait(&set, &sig);
	return 0;
}

const struct cli_command cli_commands_bench[] = {
	{ "bench link", "--rtt MS [--bandwidth MBPS]",
	  "relay to $AWS_ENDPOINT_URL through an emulated link (for benchmark scripts)",
	  cmd_bench_link },
	{ "bench restore",
	  "[DIR] [--runs N] [--probe CMD] [--rtt MS] [--bandwidth MBPS] [--json] [--report FILE]",
	  "time sleep and wake of a workspace against tar+zstd, squashfs and cp -a",
	  cmd_bench_restore },
	{ NULL, NULL, NULL, NULL }
};
