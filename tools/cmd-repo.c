/* Repository commands: init, snapshot create/restore/list/show/ls/cat/diff/rm, tag,
 * gc, check. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "manager/daemon/daemon.h"
#include "snapshot/exclude.h"
#include "tools/cli.h"
#include "util/bigmem.h"
#include "util/error.h"
#include "util/json-text.h"
#include "util/size.h"

static const char *format_time(int64_t sec, char *out, size_t size)
{
	time_t t = (time_t)sec;
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
	return out;
}

/* ---- init ---- */

static int cmd_init(int argc, char **argv)
{
	static const char shorts[] = "hjql:";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "level", required_argument, NULL, 'l' }, { 0 } };
	struct repo_init_opts io = { 0 };
	const char *loc;
	long v;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("init", "Options:\n  --level N   default zstd level of the repository (-7 to 22, default 3)\n");
		if (r)
			continue;
		if (c != 'l')
			return cli_bad_option("init", argv, shorts, opts);
		if ((r = cli_parse_int("init", "--level", optarg, REPO_ZSTD_LEVEL_MIN,
				       REPO_ZSTD_LEVEL_MAX, &v)) != 0)
			return r;
		io.zstd_level = (int)v;
	}
	if (optind != argc)
		return cli_usage("init", "takes no arguments");
	loc = cli_repo_location();
	if (!loc)
		return cli_fail(-ENOENT, NULL);
	r = repo_init(loc, &io);
	if (r < 0)
		return cli_fail(r, NULL);
	if (cli.json) {
		json_t *j = json_object();

		json_object_set_text(j, "repository", loc);
		cli_print_json(j);
	} else if (!cli.quiet) {
		printf("initialized repository at %s\n", loc);
	}
	return 0;
}

/* ---- snapshot create ---- */

static json_t *info_json(const struct oid *id, const struct manifest_info *info, const char *tags)
{
	char hex[OID_HEX_BYTES], phex[OID_HEX_BYTES];
	double ratio = info->new_raw_bytes ? (double)info->bytes / (double)info->new_raw_bytes : 0;
	json_t *j;

	j = json_pack("{s:s, s:s?, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
		      "id", oid_format(id, hex), "parent",
		      info->has_parent ? oid_format(&info->parent, phex) : NULL, "time",
		      (json_int_t)info->time_sec, "host", info->host, "origin",
		      info->origin, "files", (json_int_t)info->files, "dirs", (json_int_t)info->dirs,
		      "others", (json_int_t)info->others, "bytes", (json_int_t)info->bytes, "chunks",
		      (json_int_t)info->chunks, "new_chunks", (json_int_t)info->new_chunks,
		      "new_bytes", (json_int_t)info->new_bytes, "new_raw_bytes",
		      (json_int_t)info->new_raw_bytes, "duration_ms", (json_int_t)info->duration_ms,
		      "dedup_ratio", ratio);
	if (j)
		json_object_set_text(j, "source", info->source);
	if (j && tags) {
		json_t *arr = json_array();

		for (const char *p = tags; *p;) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);

			json_array_append_new(arr, json_stringn(p, n));
			p += n;
			if (*p == ',')
				p++;
		}
		json_object_set_new(j, "tags", arr);
	}
	return j;
}

/* --exclude patterns, as given or read from files. */
struct exclude_list {
	char **pats;
	size_t n;
};

static void exclude_free(struct exclude_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->pats[i]);
	free(l->pats);
	*l = (struct exclude_list){ 0 };
}

/* where: "FILE:LINE" of --exclude-from, or NULL. */
static int exclude_add(struct exclude_list *l, const char *pat, const char *where)
{
	struct exclude_set *check;
	char **p;
	int r;

	/* refused here, before the repository is opened, with the line named */
	if ((r = exclude_set_new(&pat, 1, &check)) < 0)
		return cli_usage("snapshot create", "%s%s%s", where ? where : "", where ? ": " : "",
				 hb_errmsg(r));
	exclude_set_free(check);
	if (!(p = realloc(l->pats, (l->n + 1) * sizeof(*p))) || !(p[l->n] = strdup(pat))) {
		if (p)
			l->pats = p;
		return cli_fail(-ENOMEM, "snapshot create");
	}
	l->pats = p;
	l->n++;
	return 0;
}

/* One pattern per line; blank lines and lines starting with '#' skipped;
 * spaces kept (names may have them). */
static int exclude_read(struct exclude_list *l, const char *file)
{
	FILE *f = fopen(file, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int r = 0;

	if (!f) {
		fprintf(stderr, "hiberbox: --exclude-from %s: %s\n", file, strerror(errno));
		return 2;
	}
	for (unsigned lineno = 1; r == 0 && (len = getline(&line, &cap, f)) >= 0; lineno++) {
		char where[PATH_MAX + 16];

		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		snprintf(where, sizeof(where), "%s:%u", file, lineno);
		if (len && line[0] != '#')
			r = exclude_add(l, line, where);
	}
	free(line);
	fclose(f);
	return r;
}

static const char *excluded_note(uint64_t n, char *out, size_t size)
{
	snprintf(out, size, "; %" PRIu64 " %s excluded", n, n == 1 ? "entry" : "entries");
	return out;
}

/* A note from snapshot create about a tree changing under it (the
 * snapshot goes on): one line on stderr, between progress updates. */
static void create_warning(void *arg, const char *line)
{
	(void)arg;
	cli_progress_done();
	fputs("hiberbox: warning: ", stderr);
	cli_put_name(line, stderr);
	fputc('\n', stderr);
}

/* snapshot create once its options are parsed (and the excludes held by
 * the caller). */
static int snapshot_create_run(const struct repo_create_opts *co_in, const char *parent,
			       int argc, char **argv)
{
	struct repo_create_opts co = *co_in;
	struct manifest_info info;
	struct oid id, parent_id;
	struct repo *repo;
	char hex[OID_HEX_BYTES], a[32], b[32], c[48];
	uint64_t excluded = 0;
	int r;

	if (optind + 1 != argc)
		return cli_usage("snapshot create", "expects one DIR");
	if (co.tag && (r = repo_tag_valid(co.tag)) < 0)
		return cli_fail(r, NULL);
	/* the walk's entries and the manifests: tens of MiB in small blocks;
	 * before any thread starts (opening an S3 repository starts some) */
	bigmem_heap(64u << 20);
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	if (parent) {
		r = repo_resolve(repo, parent, &parent_id);
		if (r < 0) {
			repo_close(repo);
			return cli_fail(r, "--parent");
		}
		co.parent = &parent_id;
	}
	co.progress = cli_progress();
	co.excluded = &excluded;
	co.warn = create_warning;
	r = repo_snapshot_create(repo, argv[optind], &co, &id, &info);
	cli_progress_done();
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "snapshot create");
	if (cli.json) {
		json_t *j = info_json(&id, &info, co.tag);

		if (j && co.nexcludes)
			json_object_set_new(j, "excluded", json_integer((json_int_t)excluded));
		cli_print_json(j);
		return 0;
	}
	if (!cli.quiet)
		fprintf(stderr, "%" PRIu64 " files, %s; %" PRIu64 " new chunks, %s stored; %.1f s%s\n",
			info.files, cli_format_bytes(info.bytes, a, sizeof(a)), info.new_chunks,
			cli_format_bytes(info.new_bytes, b, sizeof(b)), (double)info.duration_ms / 1000,
			co.nexcludes ? excluded_note(excluded, c, sizeof(c)) : "");
	printf("%s\n", oid_format(&id, hex));
	return 0;
}

static int cmd_snapshot_create(int argc, char **argv)
{
	static const char shorts[] = "hjqt:p:nl:T:";
	static const struct option opts[] = { CLI_COMMON_OPTIONS,
		{ "tag", required_argument, NULL, 't' }, { "parent", required_argument, NULL, 'p' },
		{ "no-parent", no_argument, NULL, 'n' }, { "level", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 'T' },
		{ "exclude", required_argument, NULL, 'x' },
		{ "exclude-from", required_argument, NULL, 'X' }, { 0 } };
	struct repo_create_opts co = { 0 };
	struct exclude_list ex = { 0 };
	const char *parent = NULL;
	long v;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot create",
				    "Stores DIR and prints the new snapshot id as the last line.\n\n"
				    "Options:\n"
				    "  --tag NAME      name the snapshot\n"
				    "  --parent ID     reuse unchanged files of this snapshot (default: the\n"
				    "                  latest snapshot of the same DIR on this host)\n"
				    "  --no-parent     read every file\n"
				    "  --level N       zstd level for new chunks\n"
				    "  --threads N     worker threads (default: all cores)\n"
				    "  --exclude PAT   leave out what matches PAT, with all below it:\n"
				    "                  without '/', any name at any depth ('*.o',\n"
				    "                  'node_modules'); with '/', the path from DIR\n"
				    "                  ('build/out', '/cache/*'), where '**' is any number\n"
				    "                  of directories ('src/**/test'); repeatable\n"
				    "  --exclude-from FILE  one pattern per line ('#' comments)\n"
				    "\nExcludes are not remembered: give them again for the next snapshot.\n");
		if (r)
			continue;
		switch (c) {
		case 'x':
		case 'X':
			if ((r = c == 'x' ? exclude_add(&ex, optarg, NULL) : exclude_read(&ex, optarg)) != 0) {
				exclude_free(&ex);
				return r;
			}
			break;
		case 't': co.tag = optarg; break;
		case 'p': parent = optarg; break;
		case 'n': co.no_parent = true; break;
		case 'l':
		case 'T':
			r = c == 'l' ? cli_parse_int("snapshot create", "--level", optarg,
						     REPO_ZSTD_LEVEL_MIN, REPO_ZSTD_LEVEL_MAX, &v)
				     : cli_parse_int("snapshot create", "--threads", optarg, 1,
						     CLI_THREADS_MAX, &v);
			if (r != 0) {
				exclude_free(&ex);
				return r;
			}
			if (c == 'l')
				co.zstd_level = (int)v;
			else
				co.threads = (unsigned)v;
			break;
		default:
			exclude_free(&ex);
			return cli_bad_option("snapshot create", argv, shorts, opts);
		}
	}
	co.excludes = (const char *const *)ex.pats;
	co.nexcludes = ex.n;
	r = snapshot_create_run(&co, parent, argc, argv);
	exclude_free(&ex);
	return r;
}


/* ---- snapshot restore ---- */

static int cmd_snapshot_restore(int argc, char **argv)
{
	static const char shorts[] = "hjqfT:p:";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "force", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'T' }, { "path", required_argument, NULL, 'p' },
		{ 0 } };
	struct repo_restore_opts ro = { 0 };
	struct repo *repo;
	struct oid id;
	long v;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot restore",
				    "Recreates the snapshot's tree in DIR (created if missing).\n\n"
				    "Options:\n"
				    "  --path P        only P (a file or a directory and all below it) at\n"
				    "                  DIR/P; its parent directories too, nothing else.\n"
				    "                  Symbolic links on the way are followed as in a\n"
				    "                  chroot: P lands where its target really is\n"
				    "  --force         restore into a non-empty DIR, replacing what is there\n"
				    "  --threads N     worker threads (default: all cores); from S3, range\n"
				    "                  requests in flight (default 16)\n");
		if (r)
			continue;
		switch (c) {
		case 'f': ro.force = true; break;
		case 'T':
			if ((r = cli_parse_int("snapshot restore", "--threads", optarg, 1,
					       CLI_THREADS_MAX, &v)) != 0)
				return r;
			ro.threads = (unsigned)v;
			break;
		case 'p': ro.path = optarg; break;
		default: return cli_bad_option("snapshot restore", argv, shorts, opts);
		}
	}
	if (optind + 2 != argc)
		return cli_usage("snapshot restore", "expects ID and DIR");
	/* the manifest decoded and the plan built from it; before any thread
	 * starts (opening an S3 repository starts some) */
	bigmem_main_heap(64u << 20);
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_resolve(repo, argv[optind], &id);
	if (r == 0) {
		ro.progress = cli_progress();
		r = repo_snapshot_restore(repo, &id, argv[optind + 1], &ro);
		cli_progress_done();
	}
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "snapshot restore");
	if (cli.json) {
		char hex[OID_HEX_BYTES];

		json_t *j = json_pack("{s:s}", "id", oid_format(&id, hex));

		json_object_set_text(j, "dir", argv[optind + 1]);
		cli_print_json(j);
	}
	return 0;
}

/* ---- snapshot list / show ---- */

/* Live pins, for the list's "in use" marks. */
struct pin_list {
	struct pin_mark {
		struct oid id;
		char what[600];
	} *marks;
	size_t n;
};

static int collect_pin(const struct oid *snapshot, const struct repo_pin_holder *h, void *arg)
{
	struct pin_list *l = arg;
	struct pin_mark *m = realloc(l->marks, (l->n + 1) * sizeof(*m));

	if (!m)
		return -ENOMEM;
	l->marks = m;
	m[l->n].id = *snapshot;
	snprintf(m[l->n].what, sizeof(m[l->n].what), "%.512s (pid %lld on %.60s)",
		 h->what[0] ? h->what : "pinned", h->pid, h->host);
	l->n++;
	return 0;
}

/* What holds snapshot id, from pins ("" if nothing). */
static const char *pinned_by(const struct pin_list *l, const struct oid *id)
{
	for (size_t k = 0; k < l->n; k++)
		if (oid_equal(&l->marks[k].id, id))
			return l->marks[k].what;
	return "";
}

static int cmd_snapshot_list(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	struct repo_snapshot_summary *items = NULL;
	struct pin_list pins = { 0 };
	struct repo *repo;
	size_t n = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot list",
					"A snapshot a mount or a restore reads from now is marked [in use: ...].\n\n"
					"Options:\n  --json   machine-readable output (\"in_use\" when in use)\n");
		if (!r)
			return cli_bad_option("snapshot list", argv, shorts, opts);
	}
	if (optind != argc)
		return cli_usage("snapshot list", "takes no arguments");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_list_snapshots(repo, &items, &n);
	if (r >= 0 && repo_pins_each(repo, false, collect_pin, &pins) < 0)
		hb_err_clear(); /* marks only: the list stands without them */
	repo_close(repo);
	if (r < 0) {
		free(pins.marks);
		return cli_fail(r, "snapshot list");
	}
	if (cli.json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *j = info_json(&items[i].id, &items[i].info, items[i].tags);
			const char *by = pinned_by(&pins, &items[i].id);

			if (by[0])
				json_object_set_new(j, "in_use", json_string(by));
			json_array_append_new(arr, j);
		}
		cli_print_json(arr);
	} else {
		printf("%-12s  %-19s  %8s  %10s  %10s  %s\n", "ID", "TIME", "FILES", "SIZE", "ADDED",
		       "TAGS / SOURCE");
		for (size_t i = 0; i < n; i++) {
			char hex[OID_HEX_BYTES], t[32], a[32], b[32];

			oid_format(&items[i].id, hex);
			const char *by = pinned_by(&pins, &items[i].id);

			char src[sizeof(items[i].info.source) + 8];

			/* a commit of a mount or a sandbox has no source directory:
			 * say where it came from instead of nothing */
			if (items[i].info.source[0] || !items[i].info.origin[0])
				snprintf(src, sizeof(src), "%s", items[i].info.source);
			else
				snprintf(src, sizeof(src), "(%s)", items[i].info.origin);
			printf("%.12s  %s  %8" PRIu64 "  %10s  %10s  %s%s", hex,
			       format_time(items[i].info.time_sec, t, sizeof(t)), items[i].info.files,
			       cli_format_bytes(items[i].info.bytes, a, sizeof(a)),
			       cli_format_bytes(items[i].info.new_bytes, b, sizeof(b)), items[i].tags,
			       items[i].tags[0] ? " " : "");
			cli_put_name(src, stdout); /* a directory's name is anything */
			printf("%s%s%s\n", by[0] ? "  [in use: " : "", by, by[0] ? "]" : "");
		}
	}
	free(items);
	free(pins.marks);
	return 0;
}

static int cmd_snapshot_show(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	struct repo_snapshot_summary *items = NULL, *s = NULL;
	struct repo *repo;
	struct oid id;
	size_t n = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot show", "Options:\n  --json   machine-readable output\n");
		if (!r)
			return cli_bad_option("snapshot show", argv, shorts, opts);
	}
	if (optind + 1 != argc)
		return cli_usage("snapshot show", "expects one ID");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_resolve(repo, argv[optind], &id);
	if (r == 0) {
		/* Decode all of it: show must not vouch for a damaged manifest. */
		struct manifest *m = NULL;

		r = repo_load_manifest(repo, &id, &m);
		manifest_free(m);
	}
	if (r == 0)
		r = repo_list_snapshots(repo, &items, &n);
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "snapshot show");
	for (size_t i = 0; i < n; i++)
		if (oid_equal(&items[i].id, &id))
			s = &items[i];
	if (!s) {
		free(items);
		return cli_fail(-ENOENT, "snapshot show");
	}
	if (cli.json) {
		cli_print_json(info_json(&s->id, &s->info, s->tags));
	} else {
		char hex[OID_HEX_BYTES], t[32], a[32], b[32], d[32];
		const struct manifest_info *in = &s->info;

		printf("id:          %s\n", oid_format(&s->id, hex));
		printf("parent:      %s\n", in->has_parent ? oid_format(&in->parent, hex) : "-");
		printf("time:        %s\n", format_time(in->time_sec, t, sizeof(t)));
		printf("host:        %s\nsource:      ", in->host);
		cli_put_name(in->source, stdout);
		putchar('\n');
		printf("tags:        %s\n", s->tags[0] ? s->tags : "-");
		printf("files:       %" PRIu64 " (+%" PRIu64 " dirs, %" PRIu64 " other)\n", in->files,
		       in->dirs, in->others);
		printf("bytes:       %s in %" PRIu64 " chunks\n", cli_format_bytes(in->bytes, a, sizeof(a)),
		       in->chunks);
		printf("new:         %" PRIu64 " chunks, %s (%s before compression)\n", in->new_chunks,
		       cli_format_bytes(in->new_bytes, b, sizeof(b)),
		       cli_format_bytes(in->new_raw_bytes, d, sizeof(d)));
		if (in->new_raw_bytes)
			printf("dedup:       %.1fx (bytes / new bytes before compression)\n",
			       (double)in->bytes / (double)in->new_raw_bytes);
		else
			printf("dedup:       everything was already stored\n");
		printf("took:        %.2f s\n", (double)in->duration_ms / 1000);
	}
	free(items);
	return 0;
}

/* ---- snapshot ls / cat ---- */

static char type_letter(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFIFO: return 'p';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	case S_IFSOCK: return 's';
	default: return '-';
	}
}

/* "drwxr-xr-x", with s/S and t/T as ls(1) shows them. */
static void mode_string(uint32_t mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";

	out[0] = type_letter(mode);
	for (int k = 0; k < 9; k++)
		out[k + 1] = (mode & (0400u >> k)) ? rwx[k] : '-';
	if (mode & S_ISUID)
		out[3] = (mode & S_IXUSR) ? 's' : 'S';
	if (mode & S_ISGID)
		out[6] = (mode & S_IXGRP) ? 's' : 'S';
	if (mode & S_ISVTX)
		out[9] = (mode & S_IXOTH) ? 't' : 'T';
	out[10] = '\0';
}

struct ls_state {
	const struct manifest *m;
	bool lng, recursive;
	json_t *arr;
	char path[8192];
};

static void ls_print(struct ls_state *st, uint32_t i, const char *shown)
{
	const struct manifest_node *n = manifest_node(st->m, i);

	if (st->arr) {
		json_t *o = json_pack("{s:s#, s:i, s:I, s:I, s:I, s:I, s:i}",
				      "type", (char[]){ type_letter(n->mode) },
				      (int)1, "mode", (int)(n->mode & 07777), "uid", (json_int_t)n->uid,
				      "gid", (json_int_t)n->gid, "size", (json_int_t)n->size, "mtime",
				      (json_int_t)n->mtime_sec, "nlink", (int)n->nlink);

		/* a name that is not UTF-8 also as "path_hex", its exact bytes:
		 * the escaped text alone may be another entry's real name */
		if (o)
			json_object_set_text(o, "path", st->path);
		if (o && S_ISLNK(n->mode))
			json_object_set_text(o, "target", (const char *)manifest_data(st->m, i));
		if (o)
			json_array_append_new(st->arr, o);
		return;
	}
	if (st->lng) {
		char ms[11], t[32];

		mode_string(n->mode, ms);
		printf("%s %3u %5u %5u %12" PRIu64 " %s ", ms, n->nlink, n->uid, n->gid,
		       (S_ISCHR(n->mode) || S_ISBLK(n->mode)) ? n->rdev : n->size,
		       format_time(n->mtime_sec, t, sizeof(t)));
		cli_put_name(shown, stdout);
		if (S_ISLNK(n->mode)) {
			fputs(" -> ", stdout);
			cli_put_name((const char *)manifest_data(st->m, i), stdout);
		}
		putchar('\n');
	} else {
		cli_put_name(shown, stdout);
		putchar('\n');
	}
}

/* The children of directory d, each followed by its own when recursive;
 * st->path holds d's path (no trailing slash, "" for the root). */
static int ls_dir(struct ls_state *st, uint32_t d)
{
	const struct manifest_node *dn = manifest_node(st->m, d);
	size_t base = strlen(st->path);

	for (uint32_t k = 0; k < dn->nchildren; k++) {
		uint32_t c = dn->first_child + k;
		const char *name = manifest_name(st->m, c);

		if (snprintf(st->path + base, sizeof(st->path) - base, "%s%s", base ? "/" : "",
			     name) >= (int)(sizeof(st->path) - base))
			return hb_err(-ENAMETOOLONG, "a path in the snapshot is too long to list");
		ls_print(st, c, st->recursive ? st->path : name);
		if (st->recursive && S_ISDIR(manifest_node(st->m, c)->mode)) {
			int r = ls_dir(st, c);

			if (r < 0)
				return r;
		}
		st->path[base] = '\0';
	}
	return 0;
}

static int cmd_snapshot_ls(int argc, char **argv)
{
	static const char shorts[] = "hjqlR";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "long", no_argument, NULL, 'l' },
					      { "recursive", no_argument, NULL, 'R' }, { 0 } };
	struct ls_state st = { 0 };
	struct manifest *m = NULL;
	struct repo *repo;
	const char *path;
	struct oid id;
	int64_t i;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot ls",
				"Lists the entries of a directory in a snapshot (the root if no PATH),\n"
				"without restoring or mounting it; a file's own entry if PATH is one.\n\n"
				"Options:\n"
				"  -l, --long        mode, links, uid, gid, size, mtime, name (-> target)\n"
				"  -R, --recursive   everything below PATH, as paths from the root\n"
				"  --json            an array of {path, type, mode, uid, gid, size, mtime,\n"
				"                    nlink, target}\n"
				"\nOne entry per line: control characters and '\\' in names as C escapes\n"
				"('\\n', '\\x1b', '\\\\').  --json gives names as JSON strings; one\n"
				"that is not UTF-8 comes with bytes as '\\xNN' in \"path\" and exactly,\n"
				"in hex, in \"path_hex\" (\"target_hex\" for a link's target).\n");
		if (r)
			continue;
		if (c == 'l')
			st.lng = true;
		else if (c == 'R')
			st.recursive = true;
		else
			return cli_bad_option("snapshot ls", argv, shorts, opts);
	}
	if (optind + 1 != argc && optind + 2 != argc)
		return cli_usage("snapshot ls", "expects an ID and at most one PATH");
	path = optind + 2 == argc ? argv[optind + 1] : "";
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_resolve(repo, argv[optind], &id);
	if (r == 0)
		r = repo_load_manifest(repo, &id, &m);
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "snapshot ls");
	/* As ls(1): links on the way followed; a last one that leads to a
	 * directory too, unless -l without a trailing '/' asks for the link. */
	i = repo_manifest_resolve(m, path, false);
	if (i >= 0 && S_ISLNK(manifest_node(m, (uint32_t)i)->mode) &&
	    (!st.lng || (path[0] && path[strlen(path) - 1] == '/'))) {
		int64_t t = repo_manifest_resolve(m, path, true);

		if (t >= 0 && S_ISDIR(manifest_node(m, (uint32_t)t)->mode))
			i = t;
		hb_err_clear();
	}
	if (i < 0) {
		manifest_free(m);
		return cli_fail((int)i, "snapshot ls");
	}
	st.m = m;
	if (cli.json)
		st.arr = json_array();
	/* the entry's own path, as manifest_lookup_path normalized it */
	r = manifest_path(m, (uint32_t)i, st.path, sizeof(st.path));
	if (r == 0) {
		if (S_ISDIR(manifest_node(m, (uint32_t)i)->mode))
			r = ls_dir(&st, (uint32_t)i);
		else
			ls_print(&st, (uint32_t)i, st.path);
	}
	manifest_free(m);
	if (r < 0) {
		json_decref(st.arr);
		return cli_fail(r, "snapshot ls");
	}
	if (st.arr)
		cli_print_json(st.arr);
	return 0;
}

static int cmd_snapshot_cat(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	struct repo *repo;
	struct oid id;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot cat",
				"Writes a file's content from a snapshot to stdout, every chunk verified\n"
				"(a damaged chunk stops it with an error naming the chunk and its pack).\n"
				"Symbolic links are followed inside the snapshot, as if chrooted into it.\n");
		if (!r)
			return cli_bad_option("snapshot cat", argv, shorts, opts);
	}
	if (optind + 2 != argc)
		return cli_usage("snapshot cat", "expects an ID and a PATH");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_resolve(repo, argv[optind], &id);
	if (r == 0) {
		fflush(stdout);
		r = repo_snapshot_cat(repo, &id, argv[optind + 1], STDOUT_FILENO);
	}
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "snapshot cat");
	return 0;
}

/* ---- snapshot diff / rm / tag ---- */

static int print_diff(char kind, const char *path, void *arg)
{
	json_t *arr = arg;

	if (arr) {
		json_t *o = json_pack("{s:s#}", "change", &kind, (int)1);

		json_object_set_text(o, "path", path);
		json_array_append_new(arr, o);
	} else {
		printf("%c ", kind);
		cli_put_name(path, stdout); /* a name with a newline forged a line */
		putchar('\n');
	}
	return 0;
}

static int cmd_snapshot_diff(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	struct repo *repo;
	struct oid a, b;
	json_t *arr = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot diff",
				    "Lists paths added (+), removed (-) and changed (M) from A to B, one\n"
				    "per line: control characters and '\\' in names as C escapes ('\\n',\n"
				    "'\\x1b', '\\\\').  --json gives names as JSON strings; one that is\n"
				    "not UTF-8 also exactly, in hex, as \"path_hex\".\n");
		if (!r)
			return cli_bad_option("snapshot diff", argv, shorts, opts);
	}
	if (optind + 2 != argc)
		return cli_usage("snapshot diff", "expects two IDs");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	r = repo_resolve(repo, argv[optind], &a);
	if (r == 0)
		r = repo_resolve(repo, argv[optind + 1], &b);
	if (r == 0) {
		if (cli.json)
			arr = json_array();
		r = repo_snapshot_diff(repo, &a, &b, print_diff, arr);
	}
	repo_close(repo);
	if (r < 0) {
		json_decref(arr);
		return cli_fail(r, "snapshot diff");
	}
	if (arr)
		cli_print_json(arr);
	return 0;
}

/* Something (a mount, on any host) that reads from snapshot id: removing it
 * would let the next gc take data it still serves.  0, or the error. */
static int refuse_pinned(struct repo *repo, const struct oid *id)
{
	struct repo_pin_holder h;
	char hex[OID_HEX_BYTES];
	int r = repo_pin_find(repo, id, &h);

	if (r <= 0)
		return r;
	oid_format(id, hex);
	return hb_err(-EBUSY, "%.12s is in use: %s, pid %lld on host %s (seen %s); end that "
			      "first (--force removes it anyway, and the next gc takes the data "
			      "it reads)",
		      hex, h.what[0] ? h.what : "pinned", h.pid, h.host, h.refreshed);
}

/* A snapshot the sandbox daemon stands on: a sandbox's latest state (its
 * next wake mounts it) or an image.  Removing it loses the sandbox's disk.
 * 0, or the error. */
static int refuse_daemon_owned(struct repo *repo, const struct oid *id)
{
	char tags[1024], hex[OID_HEX_BYTES];
	int r = repo_tags_of(repo, id, tags, sizeof(tags));

	if (r <= 0)
		return r;
	oid_format(id, hex);
	for (char *t = strtok(tags, ","); t; t = strtok(NULL, ",")) {
		if (!strncmp(t, HBD_TAG_SANDBOX, strlen(HBD_TAG_SANDBOX)))
			return hb_err(-EBUSY, "%.12s is sandbox %s's disk ('hiberbox rm %s' removes "
					      "the sandbox; --force removes the snapshot anyway, and "
					      "the sandbox can no longer wake)",
				      hex, t + strlen(HBD_TAG_SANDBOX), t + strlen(HBD_TAG_SANDBOX));
		if (!strncmp(t, HBD_TAG_IMAGE, strlen(HBD_TAG_IMAGE)))
			return hb_err(-EBUSY, "%.12s is image %s ('hiberbox image rm %s' removes it "
					      "once no sandbox uses it; --force removes the snapshot "
					      "anyway)",
				      hex, t + strlen(HBD_TAG_IMAGE), t + strlen(HBD_TAG_IMAGE));
	}
	return 0;
}

static int cmd_snapshot_rm(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS,
					      { "force", no_argument, NULL, 'F' }, { 0 } };
	struct repo *repo;
	struct oid *ids;
	size_t n = 0;
	bool force = false;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot rm",
				    "Removes snapshots and their tags; 'hiberbox gc' frees the data.\n"
				    "Refused: a snapshot a live mount (on any host) reads from, a\n"
				    "sandbox's disk or an image of the sandbox daemon.  If any ID is\n"
				    "unknown or refused, none is removed.\n\n"
				    "Options:\n"
				    "  --force   remove it anyway\n");
		if (r)
			continue;
		if (c == 'F')
			force = true;
		else
			return cli_bad_option("snapshot rm", argv, shorts, opts);
	}
	if (optind >= argc)
		return cli_usage("snapshot rm", "expects at least one ID");
	if (!(ids = calloc((size_t)(argc - optind), sizeof(*ids))))
		return cli_fail(-ENOMEM, "snapshot rm");
	if ((r = cli_open_repo(&repo)) != 0) {
		free(ids);
		return r;
	}
	/* Every name resolved and every refusal decided before anything goes:
	 * a typo in the last of several names removed the ones before it while
	 * the command reported a failure. */
	for (int i = optind; i < argc && r == 0; i++) {
		r = repo_resolve(repo, argv[i], &ids[n]);
		if (r == 0 && !force)
			r = refuse_pinned(repo, &ids[n]);
		if (r == 0 && !force)
			r = refuse_daemon_owned(repo, &ids[n]);
		bool seen = false;
		for (size_t k = 0; r == 0 && k < n && !seen; k++)
			seen = oid_equal(&ids[k], &ids[n]); /* an id and its tag: once */
		if (r == 0 && !seen)
			n++;
	}
	for (size_t k = 0; k < n && r == 0; k++)
		r = repo_snapshot_remove(repo, &ids[k]);
	repo_close(repo);
	free(ids);
	if (r < 0)
		return cli_fail(r, "snapshot rm");
	return 0;
}

/* ---- snapshot prune ---- */

static const char prune_help[] =
	"Removes the snapshots a retention policy lets go; 'hiberbox gc' then\n"
	"frees their data.  The policy applies to each directory snapshotted\n"
	"(host and path) on its own.  Always kept: each directory's newest\n"
	"snapshot (the next snapshot of that directory reuses its files), tagged\n"
	"snapshots, snapshots in use by a mount, and snapshots of no directory\n"
	"(commits of live mounts and sandboxes, images: 'snapshot rm' and the\n"
	"daemon remove those).\n\n"
	"Options:\n"
	"  --keep-last N         keep the newest N untagged snapshots of each directory\n"
	"  --keep-within D       keep those taken in the last D (30d, 12h, 90m, 2w, 45s)\n"
	"  --source DIR          only snapshots of DIR (on this host)\n"
	"  --dry-run             say what would go, remove nothing\n";

static int cmd_snapshot_prune(int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS,
		{ "keep-last", required_argument, NULL, 'k' },
		{ "keep-within", required_argument, NULL, 'w' },
		{ "source", required_argument, NULL, 's' },
		{ "dry-run", no_argument, NULL, 'n' }, { 0 } };
	struct repo_prune_policy pol = { .keep_within_sec = -1, .now_sec = time(NULL) };
	struct repo_snapshot_summary *items = NULL;
	enum repo_prune_verdict *verdict = NULL;
	char host[256] = "", *source = NULL;
	const char *source_arg = NULL;
	bool dry = false, have_policy = false;
	json_t *removed = NULL, *kept = NULL;
	size_t n = 0, nremoved = 0, nkept = 0;
	struct pin_list pins = { 0 };
	struct repo *repo = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("snapshot prune", prune_help);
		if (r)
			continue;
		switch (c) {
		case 'k': {
			char *end;

			errno = 0;
			pol.keep_last = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] < '0' || optarg[0] > '9')
				return cli_usage("snapshot prune", "bad --keep-last '%s' (a count)", optarg);
			have_policy = true;
			break;
		}
		case 'w':
			if (duration_parse(optarg, &pol.keep_within_sec) < 0)
				return cli_usage("snapshot prune", "bad --keep-within '%s' (e.g. 30d, 12h, 90m)",
						 optarg);
			have_policy = true;
			break;
		case 's':
			source_arg = optarg;
			break;
		case 'n':
			dry = true;
			break;
		default:
			return cli_bad_option("snapshot prune", argv, shorts, opts);
		}
	}
	if (optind != argc || !have_policy)
		return cli_usage("snapshot prune", optind != argc ? "takes no arguments" :
				 "needs a policy: --keep-last N and/or --keep-within D");
	/* as snapshot create stored it: the real path (or, gone, as given) */
	if (source_arg && !(source = realpath(source_arg, NULL)) &&
	    !(source_arg[0] == '/' && (source = strdup(source_arg))))
		return cli_usage("snapshot prune", "--source %s: %s", source_arg, strerror(errno));
	if (source) {
		gethostname(host, sizeof(host) - 1);
		pol.source = source;
		pol.host = host;
	}
	if ((r = cli_open_repo(&repo)) != 0) {
		free(source);
		return r;
	}
	if ((r = repo_list_snapshots(repo, &items, &n)) < 0)
		goto out;
	if (!(verdict = calloc(n ? n : 1, sizeof(*verdict))) || !(removed = json_array()) ||
	    !(kept = json_array())) {
		r = hb_err(-ENOMEM, "out of memory");
		goto out;
	}
	if ((r = repo_prune_select(items, n, &pol, verdict)) < 0)
		goto out;
	/* what mounts read from, in one listing; unlike snapshot list, not
	 * knowing is an error here: nothing is removed */
	if ((r = repo_pins_each(repo, true, collect_pin, &pins)) < 0)
		goto out;
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct manifest_info *in = &items[i].info;
		const char *why = repo_prune_reason(verdict[i]);
		char hex[OID_HEX_BYTES], t[32], what[sizeof(pins.marks->what) + 16];
		const char *by = pinned_by(&pins, &items[i].id);

		oid_format(&items[i].id, hex);
		if (verdict[i] == PRUNE_REMOVE && by[0]) {
			snprintf(what, sizeof(what), "in use: %s", by);
			why = what;
			/* the policy would remove it: say why it stays */
			if (!cli.json && !cli.quiet)
				printf("kept %.12s  %s  %s\n", hex, format_time(in->time_sec, t, sizeof(t)),
				       what);
		} else if (verdict[i] == PRUNE_REMOVE) {
			if (!dry && (r = repo_snapshot_remove(repo, &items[i].id)) < 0)
				break;
			nremoved++;
			json_t *o = json_pack("{s:s, s:I}", "id", hex, "time", (json_int_t)in->time_sec);

			json_object_set_text(o, "source", in->source);
			json_array_append_new(removed, o);
			if (!cli.json && !cli.quiet)
				printf("%s %.12s  %s  %s\n", dry ? "would remove" : "removed", hex,
				       format_time(in->time_sec, t, sizeof(t)), in->source);
			continue;
		}
		nkept++;
		/* a mount's path in the reason may not be UTF-8 */
		json_t *o = json_pack("{s:s}", "id", hex);

		json_object_set_text(o, "reason", why);
		json_array_append_new(kept, o);
	}
	if (r == 0) {
		if (cli.json)
			cli_print_json(json_pack("{s:O, s:O, s:b}", "removed", removed, "kept", kept,
						 "dry_run", dry));
		else if (!cli.quiet)
			printf("%zu %s, %zu kept%s\n", nremoved, dry ? "would go" : "removed", nkept,
			       nremoved && !dry ? "; 'hiberbox gc' frees their data" : "");
	}
out:
	json_decref(removed);
	json_decref(kept);
	free(pins.marks);
	free(verdict);
	free(items);
	free(source);
	repo_close(repo);
	return r < 0 ? cli_fail(r, "snapshot prune") : 0;
}

static int cmd_tag(int argc, char **argv)
{
	static const char shorts[] = "hjqd";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "delete", no_argument, NULL, 'd' }, { 0 } };
	bool del = false;
	struct repo *repo;
	struct oid id;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("tag", "Points tag NAME at snapshot ID (moving it if it exists).\n"
					   "  --delete   remove tag NAME\n");
		if (r)
			continue;
		if (c == 'd')
			del = true;
		else
			return cli_bad_option("tag", argv, shorts, opts);
	}
	if (optind + (del ? 1 : 2) != argc)
		return cli_usage("tag", del ? "expects NAME" : "expects NAME and ID");
	if ((r = repo_tag_valid(argv[optind])) < 0)
		return cli_fail(r, NULL);
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	if (del) {
		/* a missing tag was "No such file or directory" (and nothing on
		 * S3, whose DELETE of nothing succeeds) */
		r = repo_tag_get(repo, argv[optind], &id);
		if (r == -ENOENT)
			r = hb_err(-ENOENT, "no tag named '%s'", argv[optind]);
		if (r == 0)
			r = repo_tag_remove(repo, argv[optind]);
	} else {
		r = repo_resolve(repo, argv[optind + 1], &id);
		if (r == 0)
			r = repo_tag_set(repo, argv[optind], &id);
	}
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "tag");
	return 0;
}

/* ---- gc / check ---- */

static int cmd_gc(int argc, char **argv)
{
	static const char shorts[] = "hjqnp:";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "dry-run", no_argument, NULL, 'n' },
		{ "repack-percent", required_argument, NULL, 'p' },
		{ "wait", optional_argument, NULL, 'w' }, { 0 } };
	struct repo_gc_opts go = { .repack_percent = 50 };
	struct repo_gc_stats st = { 0 };
	struct repo *repo;
	char a[32];
	long v;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("gc", "Removes data no kept snapshot uses; repacks packs that are mostly garbage.\n\n"
					  "Options:\n  --dry-run            report only\n"
					  "  --repack-percent N   repack packs with more than N% garbage (default 50)\n"
					  "  --wait [SECONDS]     wait for snapshot writers to finish, without limit or\n"
					  "                       at most SECONDS (default: 10 s, then 'repository is busy')\n");
		if (r)
			continue;
		if (c == 'n') {
			go.dry_run = true;
		} else if (c == 'p') {
			/* 0 would mean the default (50), not "any garbage" */
			if ((r = cli_parse_int("gc", "--repack-percent", optarg, 1, 100, &v)) != 0)
				return r;
			go.repack_percent = (unsigned)v;
		} else if (c == 'w') {
			/* alone: as long as it takes (UINT_MAX ms, some 49 days) */
			go.lock_wait_ms = UINT_MAX;
			/* getopt gives an optional value only after '=': "--wait 30"
			 * left 30 over as an argument gc refused.  gc takes no
			 * arguments, so a word starting with a digit is the value. */
			const char *secs = optarg;

			if (!secs && optind < argc && isdigit((unsigned char)argv[optind][0]))
				secs = argv[optind++];
			if (secs) {
				if ((r = cli_parse_int("gc", "--wait", secs, 1, UINT_MAX / 1000, &v)) != 0)
					return r;
				go.lock_wait_ms = (unsigned)v * 1000;
			}
		} else {
			return cli_bad_option("gc", argv, shorts, opts);
		}
	}
	if (optind != argc)
		return cli_usage("gc", "takes no arguments");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	go.progress = cli_progress();
	r = repo_gc(repo, &go, &st);
	cli_progress_done();
	repo_close(repo);
	if (r < 0)
		return cli_fail(r, "gc");
	if (cli.json)
		cli_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "packs_removed",
				     (json_int_t)st.packs_removed, "packs_rewritten",
				     (json_int_t)st.packs_rewritten, "packs_kept", (json_int_t)st.packs_kept,
				     "bytes_freed", (json_int_t)st.bytes_freed, "index_files_removed",
				     (json_int_t)st.index_files_removed, "chunks_removed",
				     (json_int_t)st.chunks_removed, "dry_run", go.dry_run));
	else if (!cli.quiet)
		printf("%s%" PRIu64 " packs removed, %" PRIu64 " repacked, %" PRIu64 " kept; %s freed\n",
		       go.dry_run ? "(dry run) " : "", st.packs_removed, st.packs_rewritten,
		       st.packs_kept, cli_format_bytes(st.bytes_freed, a, sizeof(a)));
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	static const char shorts[] = "hjqd";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "read-data", no_argument, NULL, 'd' }, { 0 } };
	struct repo_check_opts co = { 0 };
	struct repo_check_stats st = { 0 };
	struct repo *repo;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("check", "Verifies the repository's structure.\n\n"
					     "Options:\n  --read-data   also read and verify every chunk\n");
		if (r)
			continue;
		if (c == 'd')
			co.read_data = true;
		else
			return cli_bad_option("check", argv, shorts, opts);
	}
	if (optind != argc)
		return cli_usage("check", "takes no arguments");
	if ((r = cli_open_repo(&repo)) != 0)
		return r;
	co.report = stderr;
	co.progress = cli_progress();
	r = repo_check(repo, &co, &st);
	cli_progress_done();
	repo_close(repo);
	if (cli.json)
		cli_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "snapshots", (json_int_t)st.snapshots,
				     "packs", (json_int_t)st.packs, "chunks", (json_int_t)st.chunks,
				     "errors", (json_int_t)st.errors, "garbage_packs",
				     (json_int_t)st.garbage_packs, "ok", r == 0));
	if (r == -EBADMSG && st.errors) {
		fprintf(stderr, "hiberbox: check found %" PRIu64 " error(s)\n", st.errors);
		return 1;
	}
	if (r < 0)
		return cli_fail(r, "check");
	if (!cli.json && !cli.quiet)
		printf("no errors: %" PRIu64 " snapshots, %" PRIu64 " packs, %" PRIu64 " chunks%s\n",
		       st.snapshots, st.packs, st.chunks, co.read_data ? " (data verified)" : "");
	return 0;
}

const struct cli_command cli_commands_repo[] = {
	{ "init", "[--level N]", "create a repository", cmd_init },
	{ "snapshot create", "DIR [--tag NAME] [--parent ID] [--no-parent] [--exclude PAT]...", "store a directory tree as a snapshot", cmd_snapshot_create },
	{ "snapshot restore", "ID|TAG DIR [--path P] [--force]", "recreate a snapshot's tree in DIR", cmd_snapshot_restore },
	{ "snapshot list", "[--json]", "list snapshots", cmd_snapshot_list },
	{ "snapshot show", "ID|TAG [--json]", "show a snapshot's details", cmd_snapshot_show },
	{ "snapshot ls", "ID|TAG [PATH] [-l] [-R] [--json]", "list a directory of a snapshot", cmd_snapshot_ls },
	{ "snapshot cat", "ID|TAG PATH", "write a file of a snapshot to stdout", cmd_snapshot_cat },
	{ "snapshot diff", "A B", "list paths added, removed and changed from A to B", cmd_snapshot_diff },
	{ "snapshot rm", "ID|TAG... [--force]", "remove snapshots (data goes at the next gc)", cmd_snapshot_rm },
	{ "snapshot prune", "--keep-last N | --keep-within D [--source DIR] [--dry-run]",
	  "remove snapshots a retention policy lets go", cmd_snapshot_prune },
	{ "tag", "NAME ID | --delete NAME", "name a snapshot", cmd_tag },
	{ "gc", "[--dry-run] [--wait [SECONDS]]", "remove data no kept snapshot uses", cmd_gc },
	{ "check", "[--read-data]", "verify the repository", cmd_check },
	{ NULL, NULL, NULL, NULL },
};
