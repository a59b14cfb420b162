/* The parallel walk of snapshot create (snapshot/walk.c), and what create
 * does with it: the same entries in the same order whatever the number of
 * threads, checked against a plain serial walk written here; hard links
 * across directories; matching with a parent snapshot; and through
 * repo_snapshot_create, that a changed file is read again even when its size
 * and mtime are as before, while xattrs of unchanged inodes come from the
 * parent.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/manifest.h"
#include "snapshot/snapshot.h"
#include "snapshot/walk.h"
#include "test.h"

static char base[] = "/var/tmp/hb-test-walk.XXXXXX";
static char tree[4096];

static void put_file(const char *rel, const char *data, size_t len)
{
	char p[4096];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", tree, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, data, len) == (ssize_t)len);
	close(fd);
}

static void at_tree(char *out, size_t size, const char *rel)
{
	snprintf(out, size, "%s/%s", tree, rel);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Many directories (some deep, one with more entries than a walk slice),
 * files, hard links across directories, symlinks, a fifo, odd names, a
 * socket (left out). */
static void make_tree(void)
{
	char dirs[300][256], p[4096], q[4096];
	uint64_t seed = 42;
	int ndirs = 1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int sock;

	snprintf(tree, sizeof(tree), "%s/tree", base);
	CHECK(mkdir(tree, 0755) == 0);
	strcpy(dirs[0], "");
	for (int i = 1; i < 300; i++) {
		const char *parent = dirs[rnd(&seed) % (uint64_t)ndirs];

		if (strlen(parent) > 200)
			parent = "";
		snprintf(dirs[i], sizeof(dirs[i]), "%s%sd%03d", parent, parent[0] ? "/" : "", i);
		at_tree(p, sizeof(p), dirs[i]);
		CHECK(mkdir(p, 0755) == 0);
		ndirs++;
	}
	for (int i = 0; i < 2000; i++) {
		char rel[512], data[64];
		const char *d = dirs[rnd(&seed) % 300];
		int n = snprintf(data, sizeof(data), "file %d", i);

		snprintf(rel, sizeof(rel), "%s%sf%04d", d, d[0] ? "/" : "", i);
		put_file(rel, data, (size_t)n);
	}
	at_tree(p, sizeof(p), "wide");
	CHECK(mkdir(p, 0755) == 0);
	for (int i = 0; i < 700; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "wide/w%03d", 699 - i);
		put_file(rel, "w", 1);
	}
	/* hard links: one inode in three directories, another twice in one */
	at_tree(p, sizeof(p), "la");
	CHECK(mkdir(p, 0755) == 0);
	at_tree(p, sizeof(p), "lb");
	CHECK(mkdir(p, 0755) == 0);
	put_file("la/linked", "linked content", 14);
	at_tree(p, sizeof(p), "la/linked");
	at_tree(q, sizeof(q), "lb/linked-too");
	CHECK(link(p, q) == 0);
	at_tree(q, sizeof(q), "wide/linked-third");
	CHECK(link(p, q) == 0);
	put_file("pair-a", "pair", 4);
	at_tree(p, sizeof(p), "pair-a");
	at_tree(q, sizeof(q), "pair-b");
	CHECK(link(p, q) == 0);
	at_tree(p, sizeof(p), "lb/sym");
	CHECK(symlink("../la/linked", p) == 0);
	at_tree(p, sizeof(p), "dangling");
	CHECK(symlink("nowhere/at all", p) == 0);
	at_tree(p, sizeof(p), "la/fifo");
	CHECK(mkfifo(p, 0600) == 0);
	put_file("name with spaces", "s", 1);
	put_file("new\nline", "n", 1);
	put_file("\xc3\xa9t\xc3\xa9", "e", 1);
	at_tree(p, sizeof(p), "empty-dir");
	CHECK(mkdir(p, 0700) == 0);
	at_tree(sa.sun_path, sizeof(sa.sun_path), "sock");
	sock = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(sock >= 0 && bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(sock);
}

/* ---- a plain serial breadth-first walk, as the reference ---- */

struct ref_entry {
	char *path;
	char *name;
	uint32_t parent;
	struct stat st;
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct ref_entry *ref_walk(uint32_t *count)
{
	struct ref_entry *e = calloc(20000, sizeof(*e));
	uint32_t n = 1;

	e[0].path = strdup("");
	e[0].name = strdup("");
	CHECK(stat(tree, &e[0].st) == 0);
	for (uint32_t i = 0; i < n; i++) {
		char p[4096], *names[1024];
		size_t nn = 0;
		struct dirent *de;
		DIR *d;

		if (!S_ISDIR(e[i].st.st_mode))
			continue;
		snprintf(p, sizeof(p), "%s/%s", tree, e[i].path);
		d = opendir(p);
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && nn < 1024)
				names[nn++] = strdup(de->d_name);
		closedir(d);
		qsort(names, nn, sizeof(*names), name_cmp);
		for (size_t k = 0; k < nn; k++) {
			struct ref_entry *x = &e[n];

			x->name = names[k];
			if (asprintf(&x->path, "%s%s%s", e[i].path, e[i].path[0] ? "/" : "",
				     names[k]) < 0)
				abort();
			snprintf(p, sizeof(p), "%s/%s", tree, x->path);
			CHECK(lstat(p, &x->st) == 0);
			if (S_ISSOCK(x->st.st_mode)) {
				free(x->name);
				free(x->path);
				continue;
			}
			x->parent = i;
			n++;
		}
	}
	*count = n;
	return e;
}

static void ref_free(struct ref_entry *e, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(e[i].path);
		free(e[i].name);
	}
	free(e);
}

/* ctime as recorded: the real one, or 1 ns earlier if racy */
static bool ctime_ok(const struct manifest_node *n, const struct stat *st)
{
	int64_t rec = n->ctime_sec * 1000000000ll + n->ctime_nsec;
	int64_t real = st->st_ctim.tv_sec * 1000000000ll + st->st_ctim.tv_nsec;

	return rec == real || rec == real - 1;
}

static void compare_with_ref(const struct walk_entry *w, uint32_t wn, const struct ref_entry *r,
			     uint32_t rn)
{
	uint32_t bad = 0;

	CHECK(wn == rn);
	for (uint32_t i = 0; i < wn && i < rn; i++) {
		const struct manifest_node *n = &w[i].node;
		bool ok = strcmp(w[i].path, r[i].path) == 0 && strcmp(w[i].name, r[i].name) == 0 &&
			  n->parent == r[i].parent && n->src_ino == r[i].st.st_ino &&
			  n->src_dev == r[i].st.st_dev && n->mode == r[i].st.st_mode &&
			  n->uid == r[i].st.st_uid && n->mtime_sec == r[i].st.st_mtim.tv_sec &&
			  n->mtime_nsec == (uint32_t)r[i].st.st_mtim.tv_nsec &&
			  ctime_ok(n, &r[i].st) &&
			  (!S_ISREG(n->mode) || n->size == (uint64_t)r[i].st.st_size);

		if (!ok && bad++ < 5)
			fprintf(stderr, "entry %u: walk '%s' vs serial '%s'\n", i, w[i].path,
				r[i].path);
	}
	CHECK(bad == 0);
}

/* Hard-link groups and link counts, as the manifest wants them. */
static void check_links(const struct walk_entry *w, uint32_t n)
{
	int64_t linked = -1, pair = -1;
	uint32_t members = 0, first = UINT32_MAX;

	for (uint32_t i = 0; i < n; i++) {
		const struct manifest_node *x = &w[i].node;
		uint32_t subdirs = 0;

		if (!strcmp(w[i].path, "la/linked"))
			linked = i;
		if (!strcmp(w[i].path, "pair-a"))
			pair = i;
		if (S_ISDIR(x->mode)) {
			for (uint32_t j = 1; j < n; j++)
				subdirs += S_ISDIR(w[j].node.mode) && w[j].node.parent == i;
			CHECK(x->nlink == 2 + subdirs);
			CHECK(x->hardlink == i);
		}
	}
	CHECK(linked >= 0 && pair >= 0);
	for (uint32_t i = 0; i < n; i++) {
		const char *p = w[i].path;

		if (!strcmp(p, "la/linked") || !strcmp(p, "lb/linked-too") ||
		    !strcmp(p, "wide/linked-third")) {
			/* the representative is the first in breadth-first order */
			if (first == UINT32_MAX)
				first = i;
			members++;
			CHECK(w[i].node.nlink == 3);
			CHECK(w[i].node.hardlink == first);
		}
		if (!strcmp(p, "pair-b")) {
			CHECK(w[i].node.hardlink == (uint32_t)pair);
			CHECK(w[i].node.nlink == 2);
		}
		if (!strcmp(p, "lb/sym"))
			CHECK(w[i].target && !strcmp(w[i].target, "../la/linked"));
		CHECK(strcmp(p, "sock") != 0);
	}
	CHECK(members == 3);
}

static void test_threads_same_result(void)
{
	struct walk_opts o = { .root = tree };
	struct ref_entry *ref;
	uint32_t rn;
	unsigned threads[] = { 1, 2, 16, 64 };

	o.rootfd = open(tree, O_RDONLY | O_DIRECTORY);
	CHECK(o.rootfd >= 0);
	ref = ref_walk(&rn);
	CHECK(rn > 3000);
	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
		struct walk_entry *w = NULL;
		uint32_t n = 0;

		o.threads = threads[t];
		CHECK_OK(walk_tree(&o, NULL, &w, &n));
		compare_with_ref(w, n, ref, rn);
		check_links(w, n);
		walk_free(w, n);
	}
	ref_free(ref, rn);
	close(o.rootfd);
}

/* Build a manifest from a walk (content left out: every file empty-inline is
 * enough for matching), encode it and decode it as create reads a parent. */
static struct manifest *manifest_of(const struct walk_entry *w, uint32_t n)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info = { 0 };
	struct manifest *m = NULL;
	struct buf out = BUF_INIT;

	info.time_sec = time(NULL);
	for (uint32_t i = 0; i < n; i++) {
		struct manifest_node node = w[i].node;

		if (S_ISREG(node.mode) && node.hardlink == i) {
			node.flags = MANIFEST_FLAG_INLINE;
			CHECK(manifest_builder_add(b, &node, w[i].name, strlen(w[i].name), "", 0) ==
			      (int64_t)i);
		} else {
			if (S_ISREG(node.mode))
				node.size = 0;
			CHECK(manifest_builder_add(b, &node, w[i].name, strlen(w[i].name),
						   w[i].target,
						   w[i].target ? strlen(w[i].target) : 0) ==
			      (int64_t)i);
		}
		for (uint32_t k = 0; k < w[i].nxattrs; k++)
			CHECK_OK(manifest_builder_add_xattr(b, i, w[i].xattrs[k].name,
							    w[i].xattrs[k].value, w[i].xattrs[k].len));
	}
	/* sizes of the group members follow their (empty) representative */
	for (uint32_t i = 0; i < n; i++)
		if (S_ISREG(w[i].node.mode))
			manifest_builder_set_size(b, i, 0);
	CHECK_OK(manifest_builder_encode(b, &info, &out));
	CHECK_OK(manifest_decode_reusable(out.data, out.len, &m));
	buf_free(&out);
	manifest_builder_free(b);
	return m;
}

static const struct walk_entry *find(const struct walk_entry *w, uint32_t n, const char *path)
{
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(w[i].path, path))
			return &w[i];
	return NULL;
}

/* Wait until the coarse clock has moved past now, so that what we wrote is
 * not racy for the next walk. */
static void next_tick(void)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static void test_parent_matching(void)
{
	struct walk_opts o = { .root = tree };
	struct walk_entry *w1 = NULL, *w2 = NULL;
	uint32_t n1 = 0, n2 = 0;
	struct manifest *parent;
	const struct walk_entry *e;
	struct timespec keep[2];
	struct stat st;
	char p[4096];
	bool xattrs = true;

	o.rootfd = open(tree, O_RDONLY | O_DIRECTORY);
	at_tree(p, sizeof(p), "la");
	if (setxattr(p, "user.test", "one", 3, 0) < 0)
		xattrs = false; /* a filesystem without user xattrs: skip those checks */
	next_tick();
	CHECK_OK(walk_tree(&o, NULL, &w1, &n1));
	parent = manifest_of(w1, n1);
	CHECK(parent != NULL);
	if (!parent)
		return;

	/* same size, same mtime, new content: only the ctime tells */
	at_tree(p, sizeof(p), "la/linked");
	CHECK(stat(p, &st) == 0);
	keep[0] = st.st_atim;
	keep[1] = st.st_mtim;
	put_file("la/linked", "LINKED CONTENT", 14);
	CHECK(utimensat(AT_FDCWD, p, keep, 0) == 0);
	put_file("brand-new", "x", 1);
	at_tree(p, sizeof(p), "la");
	if (xattrs)
		CHECK(setxattr(p, "user.test", "two", 3, 0) == 0);
	next_tick();
	CHECK_OK(walk_tree(&o, parent, &w2, &n2));
	CHECK(n2 == n1 + 1);
	for (uint32_t i = 0; i < n2; i++) {
		const char *path = w2[i].path;
		bool changed = !strcmp(path, "la/linked") || !strcmp(path, "lb/linked-too") ||
			       !strcmp(path, "wide/linked-third") ||
			       !strcmp(path, "") || (xattrs && !strcmp(path, "la"));

		if (!strcmp(path, "brand-new")) {
			CHECK(w2[i].prev == -1);
			continue;
		}
		/* every other path is found in the parent, at its own place */
		CHECK(w2[i].prev >= 0 && !strcmp(manifest_name(parent, (uint32_t)w2[i].prev),
						 w2[i].name));
		if (changed)
			continue;
		if (!walk_inode_unchanged(parent, &w2[i]))
			fprintf(stderr, "'%s' looks changed\n", path);
		CHECK(walk_inode_unchanged(parent, &w2[i]));
	}
	e = find(w2, n2, "la/linked");
	CHECK(e && e->node.size == 14 && !walk_inode_unchanged(parent, e));
	e = find(w2, n2, "la");
	if (xattrs) {
		CHECK(e && !walk_inode_unchanged(parent, e));
		CHECK(e && e->nxattrs == 1 && e->xattrs[0].len == 3 &&
		      !memcmp(e->xattrs[0].value, "two", 3));
	}
	walk_free(w1, n1);
	walk_free(w2, n2);
	manifest_free(parent);
	close(o.rootfd);
}

/* A file changed just before (or while) the walk looks at it: its ctime is
 * recorded so that it never matches, even if a later change and our statx
 * share a clock tick. */
static void test_racy_ctime(void)
{
	struct walk_opts o = { .root = tree, .threads = 4 };
	struct walk_entry *w = NULL;
	uint32_t n = 0;
	const struct walk_entry *e;
	struct timespec after;
	struct stat st;
	char p[4096];

	o.rootfd = open(tree, O_RDONLY | O_DIRECTORY);
	at_tree(p, sizeof(p), "racy");
	put_file("racy", "1", 1);
	CHECK(stat(p, &st) == 0);
	put_file("racy", "2", 1); /* after a stat: a fine-grained ctime where supported */
	CHECK(stat(p, &st) == 0);
	CHECK_OK(walk_tree(&o, NULL, &w, &n));
	clock_gettime(CLOCK_REALTIME_COARSE, &after);
	e = find(w, n, "racy");
	CHECK(e && ctime_ok(&e->node, &st));
	/* The walk started at or before `after`: a ctime not older than that
	 * is in (or after) the walk's tick, so it must be recorded off by one. */
	if (e && (st.st_ctim.tv_sec > after.tv_sec ||
		  (st.st_ctim.tv_sec == after.tv_sec && st.st_ctim.tv_nsec >= after.tv_nsec)))
		CHECK(e->node.ctime_sec * 1000000000ll + e->node.ctime_nsec ==
		      st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec - 1);
	walk_free(w, n);
	/* Once the clock has moved on, the same file is recorded as it is. */
	next_tick();
	CHECK_OK(walk_tree(&o, NULL, &w, &n));
	e = find(w, n, "racy");
	CHECK(e && e->node.ctime_sec == st.st_ctim.tv_sec &&
	      e->node.ctime_nsec == (uint32_t)st.st_ctim.tv_nsec);
	walk_free(w, n);
	unlink(p);
	close(o.rootfd);
}

/* A deep chain of directories (each level is a job of its own). */
static void test_deep_tree(void)
{
	char deep[4096], p[4096];
	struct walk_opts o = { .root = deep, .threads = 4 };
	struct walk_entry *w = NULL;
	uint32_t n = 0;
	size_t len;

	snprintf(deep, sizeof(deep), "%s/deep", base);
	CHECK(mkdir(deep, 0755) == 0);
	strcpy(p, deep);
	len = strlen(p);
	for (int i = 0; i < 600; i++) {
		memcpy(p + len, "/a", 3);
		len += 2;
		CHECK(mkdir(p, 0755) == 0);
	}
	memcpy(p + len, "/leaf", 6);
	CHECK(symlink("../../..", p) == 0);
	o.rootfd = open(deep, O_RDONLY | O_DIRECTORY);
	CHECK_OK(walk_tree(&o, NULL, &w, &n));
	CHECK(n == 602);
	if (n == 602) {
		CHECK(strlen(w[601].path) == 600 * 2 - 1 + 5);
		CHECK(w[601].target && !strcmp(w[601].target, "../../.."));
		CHECK(w[601].node.parent == 600 && w[600].node.nlink == 2);
		CHECK(w[1].node.nlink == 3);
	}
	walk_free(w, n);
	close(o.rootfd);
}

/* A directory that cannot be listed fails the walk, naming it. */
static void test_unreadable_dir_fails(void)
{
	struct walk_opts o = { .root = tree };
	struct walk_entry *w = NULL;
	uint32_t n = 0;
	char p[4096];

	if (geteuid() == 0)
		return; /* permissions do not stop root */
	at_tree(p, sizeof(p), "lb");
	CHECK(chmod(p, 0) == 0);
	o.rootfd = open(tree, O_RDONLY | O_DIRECTORY);
	CHECK_ERR(walk_tree(&o, NULL, &w, &n), -EACCES);
	CHECK(strstr(hb_errmsg(-EACCES), "lb") != NULL);
	CHECK(chmod(p, 0755) == 0);
	close(o.rootfd);
}

/* ---- through repo_snapshot_create ---- */

static const struct manifest_node *node_at(const struct manifest *m, const char *path,
					   uint32_t *idx)
{
	int64_t i = manifest_lookup_path(m, path);

	CHECK(i >= 0);
	if (i < 0)
		return NULL;
	*idx = (uint32_t)i;
	return manifest_node(m, (uint32_t)i);
}

static void test_create_rereads_changed(void)
{
	char repo_path[4096], p[4096];
	struct repo *r = NULL;
	struct manifest *m1 = NULL, *m2 = NULL;
	struct oid id1, id2;
	struct timespec keep[2];
	struct stat st;
	const struct manifest_node *a, *b;
	uint32_t ia, ib;
	uint8_t big[200000];

	snprintf(repo_path, sizeof(repo_path), "%s/repo", base);
	CHECK_OK(repo_init(repo_path, NULL));
	CHECK_OK(repo_open(repo_path, &r));
	if (!r)
		return;
	for (size_t k = 0; k < sizeof(big); k++)
		big[k] = (uint8_t)(k * 7 + k / 1000);
	put_file("big.bin", (const char *)big, sizeof(big));
	next_tick();
	CHECK_OK(repo_snapshot_create(r, tree, NULL, &id1, NULL));
	/* the same size and mtime, other bytes: a new ctime only */
	at_tree(p, sizeof(p), "big.bin");
	CHECK(stat(p, &st) == 0);
	keep[0] = st.st_atim;
	keep[1] = st.st_mtim;
	big[100000] ^= 0xff;
	put_file("big.bin", (const char *)big, sizeof(big));
	CHECK(utimensat(AT_FDCWD, p, keep, 0) == 0);
	at_tree(p, sizeof(p), "la/linked");
	CHECK(stat(p, &st) == 0);
	keep[0] = st.st_atim;
	keep[1] = st.st_mtim;
	put_file("la/linked", "linked CONTENT", 14);
	CHECK(utimensat(AT_FDCWD, p, keep, 0) == 0);
	next_tick();
	CHECK_OK(repo_snapshot_create(r, tree, NULL, &id2, NULL));
	CHECK_OK(repo_load_manifest(r, &id1, &m1));
	CHECK_OK(repo_load_manifest(r, &id2, &m2));
	if (!m1 || !m2)
		goto out;
	CHECK(manifest_info(m2)->has_parent && oid_equal(&manifest_info(m2)->parent, &id1));
	a = node_at(m1, "big.bin", &ia);
	b = node_at(m2, "big.bin", &ib);
	if (a && b) {
		CHECK(a->size == b->size && a->mtime_sec == b->mtime_sec &&
		      a->mtime_nsec == b->mtime_nsec);
		CHECK(a->nchunks >= 1 && b->nchunks >= 1);
		/* some chunk differs: the file was read again */
		bool differ = a->nchunks != b->nchunks;
		for (uint32_t k = 0; !differ && k < a->nchunks; k++)
			differ = !oid_equal(&manifest_chunks(m1, ia)[k].id,
					    &manifest_chunks(m2, ib)[k].id);
		CHECK(differ);
	}
	/* a hard-linked inline file, changed the same way, through any link */
	b = node_at(m2, "lb/linked-too", &ib);
	if (b) {
		uint32_t rep = b->hardlink;

		CHECK(manifest_node(m2, rep)->flags & MANIFEST_FLAG_INLINE);
		CHECK(!memcmp(manifest_data(m2, rep), "linked CONTENT", 14));
	}
	/* an unchanged file keeps its content */
	a = node_at(m1, "wide/w000", &ia);
	b = node_at(m2, "wide/w000", &ib);
	if (a && b)
		CHECK(!memcmp(manifest_data(m2, ib), "w", 1) && b->size == 1);
out:
	manifest_free(m1);
	manifest_free(m2);
	repo_close(r);
}

/* A third snapshot of an unchanged tree stores the same body as the second
 * (and so skips compressing it): same body bytes, different info. */
static void test_unchanged_body_reused(void)
{
	char repo_path[4096];
	struct repo *r = NULL;
	struct manifest *m2 = NULL, *m3 = NULL;
	struct oid id2, id3;

	snprintf(repo_path, sizeof(repo_path), "%s/repo", base);
	CHECK_OK(repo_open(repo_path, &r));
	if (!r)
		return;
	next_tick();
	CHECK_OK(repo_snapshot_create(r, tree, NULL, &id2, NULL));
	CHECK_OK(repo_snapshot_create(r, tree, NULL, &id3, NULL));
	CHECK(!oid_equal(&id2, &id3));
	CHECK_OK(repo_load_manifest(r, &id2, &m2));
	CHECK_OK(repo_load_manifest(r, &id3, &m3));
	if (m2 && m3) {
		CHECK(manifest_count(m2) == manifest_count(m3));
		for (uint32_t i = 0; i < manifest_count(m2); i++) {
			const struct manifest_node *x = manifest_node(m2, i), *y = manifest_node(m3, i);

			CHECK(x->src_ino == y->src_ino && x->ctime_nsec == y->ctime_nsec &&
			      x->nchunks == y->nchunks && x->nxattrs == y->nxattrs);
		}
	}
	manifest_free(m2);
	manifest_free(m3);
	repo_close(r);
}

int main(void)
{
	char cmd[4200];

	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	make_tree();
	test_threads_same_result();
	test_parent_matching();
	test_racy_ctime();
	test_deep_tree();
	test_unreadable_dir_fails();
	test_create_rereads_changed();
	test_unchanged_body_reused();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	TEST_MAIN_END();
}
