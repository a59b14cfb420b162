/* The bench command's own logic, without running any benchmark: statistics,
 * ratios, argument parsing, JSON, the HTML and Markdown reports, and the
 * generated workspace (tools/cmd-bench.c through bench/report.h). */
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/report.h"
#include "tests/unit/test.h"
#include "tools/cli.h"

/* cmd-bench.c is linked without hiberbox.c, which owns this. */
struct cli_globals cli;

static void test_stats(void)
{
	struct bench_stat s;
	double odd[] = { 3, 1, 2 }, even[] = { 4, 1, 3, 2 }, one[] = { 0.25 };
	double bad[] = { 1, NAN }, neg[] = { 1, -1 }, inf[] = { INFINITY };
	double many[BENCH_MAX_RUNS + 1] = { 0 };

	CHECK_OK(bench_stats(odd, 3, &s));
	CHECK(s.median == 2 && s.min == 1 && s.max == 3 && s.n == 3);
	CHECK(odd[0] == 3); /* the caller's order is kept */
	CHECK_OK(bench_stats(even, 4, &s));
	CHECK(s.median == 2.5 && s.min == 1 && s.max == 4 && s.n == 4);
	CHECK_OK(bench_stats(one, 1, &s));
	CHECK(s.median == 0.25 && s.min == 0.25 && s.max == 0.25);
	CHECK_ERR(bench_stats(odd, 0, &s), -EINVAL);
	CHECK(s.n == 0);
	CHECK_ERR(bench_stats(bad, 2, &s), -EINVAL);
	CHECK_ERR(bench_stats(neg, 2, &s), -EINVAL);
	CHECK_ERR(bench_stats(inf, 1, &s), -EINVAL);
	CHECK_ERR(bench_stats(many, BENCH_MAX_RUNS + 1, &s), -EINVAL);
	CHECK_OK(bench_stats(many, BENCH_MAX_RUNS, &s));
}

static int parse(struct bench_opts *o, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = "restore";
	va_start(ap, o);
	while (argc < 31 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	return bench_parse_opts(argc, argv, o);
}

static void test_parse(void)
{
	struct bench_opts o;

	CHECK_OK(parse(&o, NULL));
	CHECK(o.runs == 3 && !o.dir && !o.probe && !o.json && !o.report && o.rtt_ms == 0 &&
	      o.bandwidth_mbps == 0 && o.files > 1000);
	CHECK_OK(parse(&o, "--runs", "5", "--probe", "node -e 1", "--rtt", "30", "--bandwidth",
		       "12.5", "--json", "--report", "r.html", "--files", "100", "--keep", "ws", NULL));
	CHECK(o.runs == 5 && strcmp(o.probe, "node -e 1") == 0 && o.rtt_ms == 30 &&
	      o.bandwidth_mbps == 12.5 && o.json && strcmp(o.report, "r.html") == 0 &&
	      o.files == 100 && o.keep && strcmp(o.dir, "ws") == 0);
	CHECK_OK(parse(&o, "--runs=1", "--report=x.md", NULL));
	CHECK(o.runs == 1 && strcmp(o.report, "x.md") == 0);
	CHECK_OK(parse(&o, "ws", "--runs", "2", NULL)); /* options after DIR too */
	CHECK(o.runs == 2 && strcmp(o.dir, "ws") == 0);
	CHECK_OK(parse(&o, "--help", NULL));
	CHECK(o.help);
	/* bad values: each a clear error, never a silent default */
	CHECK_ERR(parse(&o, "--runs", "0", NULL), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), "--runs"));
	CHECK_ERR(parse(&o, "--runs", "-1", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--runs", "3x", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--runs", "51", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--runs", "", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--runs", "99999999999999999999", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--rtt", "abc", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--rtt", "10001", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--bandwidth", "0", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--bandwidth", "nan", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--bandwidth", "inf", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--bandwidth", "5MB", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--report", "r.txt", NULL), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), ".html"));
	CHECK_ERR(parse(&o, "--report", "html", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--probe", "", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--files", "5", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "--frobnicate", NULL), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), "--frobnicate"));
	CHECK_ERR(parse(&o, "--runs", NULL), -EINVAL);
	CHECK_ERR(parse(&o, "a", "b", NULL), -EINVAL);
}

/* A result as a run would leave it: hiberbox, tar, a skipped squashfs. */
static void sample_result(struct bench_result *res)
{
	memset(res, 0, sizeof(*res));
	snprintf(res->repo_kind, sizeof(res->repo_kind), "s3");
	snprintf(res->link, sizeof(res->link), "rtt 30 ms <emulated> & paced");
	snprintf(res->date_utc, sizeof(res->date_utc), "2026-01-01T00:00:00Z");
	res->runs = 3;
	res->tree_files = 1234;
	res->tree_bytes = 5000000;
	res->tar_bytes = 2000000;
	for (int r = 0; r < BENCH_ROWS; r++) {
		bench_cell_add(&res->cell[r][BENCH_TAR], 2.0);
		bench_cell_add(&res->cell[r][BENCH_TAR], 4.0);
		bench_cell_add(&res->cell[r][BENCH_TAR], 3.0);
		bench_cell_add(&res->cell[r][BENCH_HIBERBOX], 0.5);
		bench_cell_add(&res->cell[r][BENCH_HIBERBOX], 0.25);
		bench_cell_add(&res->cell[r][BENCH_HIBERBOX], 1.0);
		bench_cell_skip(&res->cell[r][BENCH_SQUASHFS], "squashfuse is not installed");
	}
	bench_note(res, "a note with <html> & \"quotes\"");
	bench_result_finish(res);
}

static char *slurp(FILE *f)
{
	long n;
	char *s;

	fflush(f);
	n = ftell(f);
	rewind(f);
	s = calloc(1, (size_t)n + 1);
	if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
		s[0] = '\0';
	return s;
}

static void test_result_outputs(void)
{
	struct bench_result *res = calloc(1, sizeof(*res));
	char dir[] = "/tmp/test-bench-XXXXXX", path[256];
	json_t *j, *cell;
	FILE *f;
	char *s;

	sample_result(res);
	CHECK(res->cell[BENCH_RESTORE][BENCH_TAR].stat.median == 3.0);
	CHECK(res->cell[BENCH_RESTORE][BENCH_HIBERBOX].stat.median == 0.5);
	CHECK(bench_speedup(res, BENCH_RESTORE, BENCH_HIBERBOX) == 6.0);
	CHECK(bench_speedup(res, BENCH_RESTORE, BENCH_TAR) == 1.0);
	CHECK(bench_speedup(res, BENCH_RESTORE, BENCH_SQUASHFS) == 0); /* skipped */
	CHECK(bench_speedup(res, BENCH_ROWS, BENCH_HIBERBOX) == 0);
	CHECK(strcmp(bench_row_name(BENCH_WAKE_COLD), "wake_cold") == 0);
	CHECK(strcmp(bench_method_label(BENCH_TAR), "tar+zstd") == 0);

	/* the table: every row, the ratio, the skip reason, the note */
	f = tmpfile();
	bench_print_table(res, f);
	s = slurp(f);
	fclose(f);
	CHECK(strstr(s, "full restore"));
	CHECK(strstr(s, "6.00x"));
	CHECK(strstr(s, "skipped: squashfuse is not installed"));
	CHECK(strstr(s, "note: a note"));
	free(s);

	/* JSON */
	j = bench_result_json(res);
	cell = json_object_get(json_object_get(json_object_get(j, "figures"), "restore"), "hiberbox");
	CHECK(cell && json_real_value(json_object_get(cell, "median_s")) == 0.5);
	CHECK(json_real_value(json_object_get(cell, "vs_tar_zstd")) == 6.0);
	CHECK(json_array_size(json_object_get(cell, "runs_s")) == 3);
	cell = json_object_get(json_object_get(json_object_get(j, "figures"), "restore"),
			       "squashfs_overlay");
	CHECK(cell && strstr(json_string_value(json_object_get(cell, "skipped")), "squashfuse"));
	CHECK(!json_object_get(json_object_get(json_object_get(j, "figures"), "restore"), "cp_a"));
	CHECK(json_integer_value(json_object_get(json_object_get(j, "tree"), "files")) == 1234);
	json_decref(j);

	/* HTML: self-contained, charts, text escaped */
	f = tmpfile();
	CHECK_OK(bench_write_html(res, f));
	s = slurp(f);
	fclose(f);
	CHECK(strstr(s, "<svg") && strstr(s, "</svg>") && strstr(s, "</html>"));
	CHECK(!strstr(s, "<script") && !strstr(s, "src=") && !strstr(s, "href=") &&
	      !strstr(s, "@import"));
	CHECK(strstr(s, "&lt;html&gt; &amp; &quot;quotes&quot;"));
	CHECK(!strstr(s, "<html> &"));
	CHECK(strstr(s, "&lt;emulated&gt;"));
	CHECK(strstr(s, "6.00x faster"));
	CHECK(strstr(s, "skipped: squashfuse"));
	free(s);

	/* Markdown */
	f = tmpfile();
	CHECK_OK(bench_write_markdown(res, f));
	s = slurp(f);
	fclose(f);
	CHECK(strstr(s, "## full restore"));
	CHECK(strstr(s, "| hiberbox | 500 ms | 250 ms .. 1.00 s | 6.00x |"));
	CHECK(strstr(s, "| tar+zstd | 3.00 s | 2.00 s .. 4.00 s | baseline |"));
	CHECK(strstr(s, "skipped: squashfuse is not installed"));
	free(s);

	/* by file name */
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/r.txt", dir);
	CHECK_ERR(bench_write_report(res, path), -EINVAL);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof(path), "%s/r.md", dir);
	CHECK_OK(bench_write_report(res, path));
	CHECK(access(path, F_OK) == 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/r.html", dir);
	CHECK_OK(bench_write_report(res, path));
	unlink(path);
	snprintf(path, sizeof(path), "%s/no/such/dir/r.html", dir);
	CHECK(bench_write_report(res, path) < 0);
	rmdir(dir);

	/* no baseline: no ratios anywhere, no crash */
	memset(&res->cell[BENCH_RESTORE][BENCH_TAR], 0, sizeof(res->cell[0][0]));
	bench_result_finish(res);
	CHECK(bench_speedup(res, BENCH_RESTORE, BENCH_HIBERBOX) == 0);
	f = tmpfile();
	CHECK_OK(bench_write_html(res, f));
	CHECK_OK(bench_write_markdown(res, f));
	bench_print_table(res, f);
	fclose(f);
	/* notes past the maximum are dropped, not overflowed */
	for (int i = 0; i < 40; i++)
		bench_note(res, "note %d", i);
	CHECK(res->n_notes == BENCH_NOTE_MAX);
	for (int i = 0; i < BENCH_MAX_RUNS + 5; i++)
		bench_cell_add(&res->cell[0][0], 1);
	CHECK(res->cell[0][0].n == BENCH_MAX_RUNS);
	free(res);
}

static uint64_t files_seen, bytes_seen, sum_seen;
static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_F) {
		FILE *f = fopen(path, "rb");
		int c;

		files_seen++;
		bytes_seen += (uint64_t)st->st_size;
		while (f && (c = fgetc(f)) != EOF)
			sum_seen = sum_seen * 31 + (uint64_t)c;
		if (f)
			fclose(f);
		sum_seen += (uint64_t)strlen(path) * 7;
	}
	return 0;
}

static void test_workspace(void)
{
	char dir[] = "/tmp/test-bench-ws-XXXXXX", a[300], b[300], cmd[700];
	uint64_t sum_a;
	int n;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	n = bench_generate_workspace(a, 200, 42);
	CHECK(n == 200);
	files_seen = bytes_seen = sum_seen = 0;
	nftw(a, visit, 16, FTW_PHYS);
	CHECK(files_seen == 200);
	CHECK(bytes_seen > 200 * 100);
	sum_a = sum_seen;
	snprintf(cmd, sizeof(cmd), "%s/node_modules/.bin/esbuild", a);
	CHECK(access(cmd, F_OK) == 0);
	snprintf(cmd, sizeof(cmd), "%s/package-lock.json", a);
	CHECK(access(cmd, F_OK) == 0);
	/* the same seed gives the same tree (names and bytes) */
	CHECK(bench_generate_workspace(b, 200, 42) == 200);
	files_seen = bytes_seen = sum_seen = 0;
	nftw(b, visit, 16, FTW_PHYS);
	/* paths differ only in a/ vs b/, which have the same length */
	CHECK(sum_seen == sum_a);
	/* generating over an existing tree refuses to overwrite */
	CHECK(bench_generate_workspace(a, 200, 42) < 0);
	CHECK_ERR(bench_generate_workspace(b, 3, 1), -EINVAL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	test_stats();
	test_parse();
	test_result_outputs();
	test_workspace();
	TEST_MAIN_END();
}
