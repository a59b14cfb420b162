/* Manifests: roundtrip of every node kind and field, a 50k-entry tree,
 * builder order rules, and refusal of crafted, truncated and corrupted
 * manifests.
 *
 * `test-manifest --write-corpus DIR` writes the fuzz seeds instead
 * (tests/fuzz/corpus-manifest/).
 */
#include "snapshot/manifest.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <xxhash.h>
#include <zstd.h>

#include "snapshot/manifest-int.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

static struct oid mkid(unsigned seed)
{
	struct oid id;

	for (int k = 0; k < OID_BYTES; k++)
		id.b[k] = (uint8_t)(seed * 131 + k * 7 + 1);
	return id;
}

static struct manifest_node mknode(uint32_t mode, uint32_t parent)
{
	struct manifest_node n;

	memset(&n, 0, sizeof(n));
	n.mode = mode;
	n.parent = parent;
	n.nlink = S_ISDIR(mode) ? 2 : 1;
	n.uid = 1000;
	n.gid = 100;
	n.mtime_sec = 1700000000;
	n.mtime_nsec = 123456789;
	return n;
}

/* Add with hardlink = the new entry's own index. */
static int64_t add(struct manifest_builder *b, struct manifest_node n, const char *name,
		   const void *data, size_t len)
{
	n.hardlink = manifest_builder_count(b);
	return manifest_builder_add(b, &n, name, name ? strlen(name) : 0, data, len);
}

static int64_t add_dir(struct manifest_builder *b, uint32_t parent, const char *name)
{
	return add(b, mknode(S_IFDIR | 0755, parent), name, NULL, 0);
}

static int64_t add_file(struct manifest_builder *b, uint32_t parent, const char *name,
			uint32_t size)
{
	struct manifest_node n = mknode(S_IFREG | 0644, parent);
	int64_t i;

	n.size = size;
	i = add(b, n, name, NULL, 0);
	if (i >= 0 && size) {
		struct manifest_chunk c = { mkid((unsigned)i), size };

		manifest_builder_set_chunks(b, (uint32_t)i, &c, 1);
	}
	return i;
}

static struct manifest_info test_info(void)
{
	struct manifest_info info;

	memset(&info, 0, sizeof(info));
	info.has_parent = true;
	info.parent = mkid(99);
	info.time_sec = 1764000000;
	info.time_nsec = 999999999;
	snprintf(info.host, sizeof(info.host), "host-\xc3\xa9 \"quoted\"");
	snprintf(info.source, sizeof(info.source), "/srv/work space/proj");
	snprintf(info.origin, sizeof(info.origin), "create");
	info.files = 11;
	info.dirs = 4;
	info.others = 5;
	info.bytes = 1ull << 40;
	info.chunks = 7;
	info.new_chunks = 3;
	info.new_bytes = 12345;
	info.new_raw_bytes = 67890;
	info.duration_ms = 4321;
	return info;
}

/* A manifest container around any JSON and body, with a chosen declared raw
 * length, to reach the checks the library's own encoder never trips. */
static void wrap_raw(const char *json, const void *raw, size_t raw_len, uint64_t declared_raw,
		     struct buf *out)
{
	size_t bound = ZSTD_compressBound(raw_len), zlen;
	uint8_t hdr[16], *z = malloc(bound);

	memcpy(hdr, MANIFEST_MAGIC, 8);
	put_le32(hdr + 8, MANIFEST_VERSION);
	put_le32(hdr + 12, (uint32_t)strlen(json));
	buf_append(out, hdr, 16);
	buf_append(out, json, strlen(json));
	zlen = ZSTD_compress(z, bound, raw, raw_len, 1);
	put_le64(hdr, declared_raw);
	put_le64(hdr + 8, zlen);
	buf_append(out, hdr, 16);
	buf_append(out, z, zlen);
	put_le64(hdr, XXH3_64bits(out->data, out->len));
	buf_append(out, hdr, 8);
	free(z);
}

static int decode_buf(const struct buf *b, struct manifest **m)
{
	return manifest_decode(b->data, b->len, m);
}

static bool msg_has(int rc, const char *needle)
{
	const char *msg = hb_errmsg(rc);

	if (strstr(msg, needle))
		return true;
	fprintf(stderr, "message '%s' lacks '%s'\n", msg, needle);
	return false;
}

/* ---- roundtrip of every kind -------------------------------------------- */

#define NKINDS 17
static struct manifest_node want[NKINDS];
static const char *want_name[NKINDS];

static void build_kinds(struct manifest_builder *b)
{
	static const uint8_t inl[] = { 'h', 'i', 0, 0xff, '\n', 'x' };
	struct manifest_chunk holes[3] = { { mkid(1), 100 }, { { { 0 } }, 50 }, { mkid(2), 25 } };
	struct manifest_chunk hl = { mkid(3), 4096 };
	struct oid hot[3] = { mkid(1), mkid(3), mkid(2) };
	static const uint8_t bin[] = { 0, 1, 2, 0xfe, 0xff, 0 };
	struct manifest_node n;
	int64_t i;

	n = mknode(S_IFDIR | 01777, 0);
	n.mtime_sec = -86400 * 365; /* before the epoch */
	n.mtime_nsec = 1;
	n.atime_sec = INT64_MAX;
	n.atime_nsec = 999999999;
	n.ctime_sec = INT64_MIN;
	n.nlink = 4;
	n.src_ino = UINT64_MAX;
	n.src_dev = 0x803;
	want[0] = n, want_name[0] = "";
	CHECK_OK(add(b, n, "", NULL, 0));
	CHECK_OK(manifest_builder_add_xattr(b, 0, "user.bin", bin, sizeof(bin)));
	CHECK_OK(manifest_builder_add_xattr(b, 0, "security.selinux", "ctx", 3));
	CHECK_OK(manifest_builder_add_xattr(b, 0, "user.empty", "", 0));

	n = mknode(S_IFREG | 0600, 0);
	n.size = 175;
	n.uid = UINT32_MAX;
	n.gid = 0;
	want[1] = n, want_name[1] = "a b";
	CHECK((i = add(b, n, "a b", NULL, 0)) == 1);
	CHECK_OK(manifest_builder_set_chunks(b, 1, holes, 3));

	n = mknode(S_IFBLK | 0660, 0);
	n.rdev = makedev(8, 1);
	want[2] = n, want_name[2] = "blk";
	CHECK(add(b, n, "blk", NULL, 0) == 2);

	n = mknode(S_IFCHR | 0666, 0);
	n.rdev = makedev(1, 3);
	want[3] = n, want_name[3] = "chr";
	CHECK(add(b, n, "chr", NULL, 0) == 3);

	n = mknode(S_IFDIR | 0755, 0);
	n.nlink = 3;
	want[4] = n, want_name[4] = "dir";
	CHECK(add(b, n, "dir", NULL, 0) == 4);

	n = mknode(S_IFREG | 0644, 0);
	want[5] = n, want_name[5] = "empty";
	CHECK(add(b, n, "empty", NULL, 0) == 5);

	n = mknode(S_IFIFO | 0600, 0);
	want[6] = n, want_name[6] = "fifo";
	CHECK(add(b, n, "fifo", NULL, 0) == 6);

	/* hard-link group of 3 headed by entry 8 ("hl2"); 7 points forward */
	n = mknode(S_IFREG | 0644, 0);
	n.size = 4096;
	n.nlink = 3;
	n.hardlink = 8;
	want[7] = n, want_name[7] = "hl1";
	CHECK(manifest_builder_add(b, &n, "hl1", 3, NULL, 0) == 7);
	n.hardlink = 8;
	want[8] = n, want_name[8] = "hl2";
	CHECK(manifest_builder_add(b, &n, "hl2", 3, NULL, 0) == 8);
	CHECK_OK(manifest_builder_set_chunks(b, 8, &hl, 1));

	n = mknode(S_IFREG | 0755, 0);
	n.flags = MANIFEST_FLAG_INLINE;
	n.size = sizeof(inl);
	want[9] = n, want_name[9] = "inl";
	CHECK(add(b, n, "inl", inl, sizeof(inl)) == 9);

	n = mknode(S_IFLNK | 0777, 0);
	n.size = 21;
	want[10] = n, want_name[10] = "link";
	CHECK(add(b, n, "link", "../target with space", 20) == 10);
	want[10].size = 20; /* the builder takes a symlink's size from its target */

	n = mknode(S_IFREG | 0644, 0);
	want[11] = n, want_name[11] = "new\nline";
	CHECK(add(b, n, "new\nline", NULL, 0) == 11);
	CHECK_OK(manifest_builder_set_inline(b, 11, "x\n", 2));
	want[11].flags = MANIFEST_FLAG_INLINE;
	want[11].size = 2;

	n = mknode(S_IFSOCK | 0755, 0);
	want[12] = n, want_name[12] = "sock";
	CHECK(add(b, n, "sock", NULL, 0) == 12);

	n = mknode(S_IFREG | 0644, 0);
	n.size = 1;
	want[13] = n, want_name[13] = "\xc3\xa9t\xc3\xa9";
	CHECK(add(b, n, "\xc3\xa9t\xc3\xa9", NULL, 0) == 13);
	manifest_builder_set_size(b, 13, 3000);
	want[13].size = 3000;
	{
		struct manifest_chunk c[2] = { { mkid(4), 1000 }, { mkid(5), 2000 } };

		CHECK_OK(manifest_builder_set_chunks(b, 13, c, 2));
	}

	/* children of dir (4) */
	n = mknode(S_IFREG | 0644, 4);
	n.size = 4096;
	n.nlink = 3;
	n.hardlink = 8;
	want[14] = n, want_name[14] = "hl3";
	CHECK(manifest_builder_add(b, &n, "hl3", 3, NULL, 0) == 14);
	n = mknode(S_IFDIR | 0700, 4);
	want[15] = n, want_name[15] = "sub";
	CHECK(add(b, n, "sub", NULL, 0) == 15);
	CHECK_OK(manifest_builder_add_xattr(b, 15, "user.z", "1", 1));
	CHECK_OK(manifest_builder_add_xattr(b, 15, "user.a", "22", 2));

	/* child of sub (15) */
	n = mknode(S_IFREG | 04755, 15);
	want[16] = n, want_name[16] = "deep file";
	CHECK(add(b, n, "deep file", NULL, 0) == 16);
	for (int k = 0; k < NKINDS; k++)
		if (k != 7 && k != 8 && k != 14)
			want[k].hardlink = (uint32_t)k;
	CHECK_OK(manifest_builder_set_hot(b, hot, 3));
}

static void test_roundtrip_kinds(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info = test_info(), info2;
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;
	struct manifest_xattr x;
	uint32_t nhot;
	const struct oid *hot;
	size_t need;
	char path[256];

	build_kinds(b);
	CHECK(manifest_builder_count(b) == NKINDS);
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	manifest_builder_free(b);
	CHECK_OK(decode_buf(&enc, &m));
	if (!m)
		return;
	CHECK(manifest_count(m) == NKINDS);
	CHECK(memcmp(manifest_info(m), &info, sizeof(info)) == 0);
	for (uint32_t i = 0; i < NKINDS; i++) {
		const struct manifest_node *n = manifest_node(m, i), *w = &want[i];

		CHECK(n->mode == w->mode && n->uid == w->uid && n->gid == w->gid);
		CHECK(n->flags == w->flags && n->size == w->size && n->rdev == w->rdev);
		CHECK(n->mtime_sec == w->mtime_sec && n->mtime_nsec == w->mtime_nsec);
		CHECK(n->atime_sec == w->atime_sec && n->atime_nsec == w->atime_nsec);
		CHECK(n->ctime_sec == w->ctime_sec && n->ctime_nsec == w->ctime_nsec);
		CHECK(n->src_ino == w->src_ino && n->src_dev == w->src_dev);
		CHECK(n->parent == w->parent && n->hardlink == w->hardlink && n->nlink == w->nlink);
		CHECK(strcmp(manifest_name(m, i), want_name[i]) == 0);
		CHECK(n->name_len == strlen(want_name[i]));
		if (i)
			CHECK(manifest_lookup_child(m, n->parent, want_name[i],
						    strlen(want_name[i])) == i);
		CHECK_OK(manifest_path(m, i, path, sizeof(path)));
		CHECK(manifest_lookup_path(m, path) == i);
	}
	/* directories: children ranges */
	CHECK(manifest_node(m, 0)->first_child == 1 && manifest_node(m, 0)->nchildren == 13);
	CHECK(manifest_node(m, 4)->first_child == 14 && manifest_node(m, 4)->nchildren == 2);
	CHECK(manifest_node(m, 15)->first_child == 16 && manifest_node(m, 15)->nchildren == 1);
	CHECK(manifest_node(m, 16)->nchildren == 0);
	/* chunk list with a hole */
	CHECK(manifest_node(m, 1)->nchunks == 3);
	CHECK(oid_equal(&manifest_chunks(m, 1)[0].id, &(struct oid[]){ mkid(1) }[0]));
	CHECK(oid_is_zero(&manifest_chunks(m, 1)[1].id) && manifest_chunks(m, 1)[1].size == 50);
	CHECK(manifest_chunks(m, 1)[2].size == 25);
	CHECK(manifest_node(m, 13)->nchunks == 2 && manifest_chunks(m, 13)[1].size == 2000);
	/* hard links: content on the head only */
	CHECK(manifest_node(m, 8)->nchunks == 1 && manifest_node(m, 7)->nchunks == 0);
	CHECK(manifest_node(m, 14)->nchunks == 0 && manifest_node(m, 14)->size == 4096);
	/* inline and symlink data, NUL-terminated */
	CHECK(manifest_node(m, 9)->data_len == 6 &&
	      memcmp(manifest_data(m, 9), "hi\0\xff\nx", 7) == 0);
	CHECK(manifest_node(m, 9)->nchunks == 0);
	CHECK(strcmp((const char *)manifest_data(m, 10), "../target with space") == 0);
	CHECK(manifest_node(m, 10)->data_len == 20);
	CHECK(strcmp((const char *)manifest_data(m, 11), "x\n") == 0);
	CHECK(manifest_data(m, 5)[0] == 0 && manifest_node(m, 5)->data_len == 0);
	/* xattrs, sorted by name, binary values */
	CHECK(manifest_node(m, 0)->nxattrs == 3);
	manifest_xattr(m, 0, 0, &x);
	CHECK(strcmp(x.name, "security.selinux") == 0 && x.value_len == 3 &&
	      memcmp(x.value, "ctx", 4) == 0);
	manifest_xattr(m, 0, 1, &x);
	CHECK(strcmp(x.name, "user.bin") == 0 && x.value_len == 6 &&
	      memcmp(x.value, "\0\1\2\xfe\xff\0", 6) == 0);
	manifest_xattr(m, 0, 2, &x);
	CHECK(strcmp(x.name, "user.empty") == 0 && x.value_len == 0);
	manifest_xattr(m, 15, 0, &x);
	CHECK(strcmp(x.name, "user.a") == 0 && x.value_len == 2);
	manifest_xattr(m, 15, 1, &x);
	CHECK(strcmp(x.name, "user.z") == 0 && memcmp(x.value, "1", 2) == 0);
	CHECK(manifest_node(m, 3)->nxattrs == 0);
	/* hot list */
	hot = manifest_hot(m, &nhot);
	CHECK(nhot == 3 && oid_equal(&hot[1], &(struct oid[]){ mkid(3) }[0]));
	/* lookups that fail */
	CHECK(manifest_lookup_path(m, "dir/sub/deep file") == 16);
	CHECK(manifest_lookup_path(m, "/dir//sub/./deep file/") == 16);
	CHECK(manifest_lookup_path(m, "") == 0 && manifest_lookup_path(m, ".") == 0);
	CHECK_ERR(manifest_lookup_path(m, "dir/../dir"), -EINVAL);
	CHECK_ERR(manifest_lookup_path(m, "dir/nope"), -ENOENT);
	CHECK_ERR(manifest_lookup_path(m, "a b/x"), -ENOTDIR);
	CHECK_ERR(manifest_lookup_child(m, 1, "x", 1), -ENOTDIR);
	CHECK_ERR(manifest_lookup_child(m, 0, "dir", 2), -ENOENT);
	CHECK_ERR(manifest_lookup_child(m, 0, "dirx", 4), -ENOENT);
	CHECK_ERR(manifest_lookup_child(m, 0, "", 0), -ENOENT);
	CHECK_ERR(manifest_lookup_child(m, 999, "a", 1), -ENOENT);
	CHECK_ERR(manifest_path(m, 16, path, 17), -ENAMETOOLONG);
	CHECK_OK(manifest_path(m, 16, path, 18));
	CHECK(strcmp(path, "dir/sub/deep file") == 0);
	CHECK_OK(manifest_path(m, 0, path, 1));
	CHECK(path[0] == 0);
	manifest_free(m);

	/* the info alone, from a prefix */
	memset(&info2, 0, sizeof(info2));
	CHECK_ERR(manifest_decode_info(enc.data, 0, &info2, &need), -EAGAIN);
	CHECK(need == MANIFEST_HEADER_BYTES);
	CHECK_ERR(manifest_decode_info(enc.data, 10, &info2, &need), -EAGAIN);
	CHECK_ERR(manifest_decode_info(enc.data, need, &info2, &need), -EAGAIN);
	CHECK(need > MANIFEST_HEADER_BYTES && need < enc.len);
	CHECK_ERR(manifest_decode_info(enc.data, need - 1, &info2, &need), -EAGAIN);
	CHECK_OK(manifest_decode_info(enc.data, need, &info2, &need));
	CHECK(memcmp(&info2, &info, sizeof(info)) == 0);
	CHECK_ERR(manifest_decode_info("HBSNAQ", 6, &info2, &need), -EBADMSG);
	buf_free(&enc);
}

/* The smallest manifest: a root, no info. */
static void test_minimal(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;
	uint32_t nhot = 7;

	memset(&info, 0, sizeof(info));
	CHECK_ERR(manifest_builder_encode(b, &info, &enc), -EINVAL); /* no root */
	CHECK_OK(add_dir(b, 0, ""));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	CHECK_OK(decode_buf(&enc, &m));
	if (m) {
		CHECK(manifest_count(m) == 1 && manifest_node(m, 0)->nchildren == 0);
		CHECK(!manifest_info(m)->has_parent && manifest_info(m)->host[0] == 0);
		CHECK(manifest_hot(m, &nhot) != NULL && nhot == 0);
		CHECK_ERR(manifest_lookup_path(m, "x"), -ENOENT);
	}
	manifest_free(m);
	manifest_builder_free(b);
	buf_free(&enc);
}

/* A hot list keeps only chunks the files name (a mount's list may hold
 * chunks of files deleted since), in its order. */
static void test_hot_only_referenced(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;
	const struct oid *hot;
	uint32_t nhot = 0;

	memset(&info, 0, sizeof(info));
	CHECK_OK(add_dir(b, 0, ""));
	CHECK(add_file(b, 0, "a", 10) == 1); /* chunk mkid(1) */
	CHECK(add_file(b, 0, "b", 10) == 2); /* chunk mkid(2) */
	CHECK_OK(manifest_builder_set_hot(
		b, (struct oid[]){ mkid(7), mkid(2), { { 0 } }, mkid(1), mkid(8) }, 5));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	CHECK_OK(decode_buf(&enc, &m));
	if (m) {
		hot = manifest_hot(m, &nhot);
		CHECK(nhot == 2 && oid_equal(&hot[0], &(struct oid[]){ mkid(2) }[0]) &&
		      oid_equal(&hot[1], &(struct oid[]){ mkid(1) }[0]));
	}
	manifest_free(m);
	manifest_builder_free(b);
	buf_free(&enc);
}

/* ---- a 50k-entry tree ------------------------------------------------- */

#define BIG_DIRS 100
#define BIG_FILES 499

static void build_big(struct manifest_builder *b)
{
	char name[32];

	add_dir(b, 0, "");
	for (int d = 0; d < BIG_DIRS; d++) {
		snprintf(name, sizeof(name), "d%03d", d);
		add_dir(b, 0, name);
	}
	for (int d = 0; d < BIG_DIRS; d++)
		for (int f = 0; f < BIG_FILES; f++) {
			snprintf(name, sizeof(name), "file-%04d.c", f);
			add_file(b, (uint32_t)(1 + d), name, (uint32_t)(1 + f * 13));
		}
}

static void test_big(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info = test_info();
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;
	struct timespec t0, t1;
	char path[64];
	uint32_t n = 1 + BIG_DIRS + BIG_DIRS * BIG_FILES, bad = 0;

	build_big(b);
	CHECK(manifest_builder_count(b) == n);
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	manifest_builder_free(b);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_OK(decode_buf(&enc, &m));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("50k entries: %zu bytes encoded, decoded in %.1f ms\n", enc.len,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	if (!m)
		goto out;
	CHECK(manifest_count(m) == n);
	for (uint32_t i = 0; i < n; i++) {
		if (manifest_path(m, i, path, sizeof(path)) < 0 || manifest_lookup_path(m, path) != i)
			bad++;
		if (i > BIG_DIRS) {
			const struct manifest_node *nd = manifest_node(m, i);
			uint32_t f = (i - BIG_DIRS - 1) % BIG_FILES;

			if (nd->size != 1 + f * 13 || nd->nchunks != 1 ||
			    manifest_chunks(m, i)->size != nd->size)
				bad++;
		}
	}
	CHECK(bad == 0);
	CHECK(manifest_lookup_path(m, "d042/file-0007.c") == 1 + BIG_DIRS + 42 * BIG_FILES + 7);
	CHECK_ERR(manifest_lookup_path(m, "d042/file-0499.c"), -ENOENT);
	CHECK_ERR(manifest_lookup_path(m, "d100"), -ENOENT);
	CHECK_ERR(manifest_lookup_path(m, "d042/file-0007.c/x"), -ENOTDIR);
	CHECK(manifest_node(m, 43)->nchildren == BIG_FILES);
out:
	manifest_free(m);
	buf_free(&enc);
}

/* ---- the builder refuses disorder --------------------------------------- */

static void test_builder_refusals(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_node n;
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	char longname[MANIFEST_NAME_MAX + 2];
	char inl[MANIFEST_INLINE_MAX_BYTES + 1];

	memset(&info, 0, sizeof(info));
	/* the first entry must be the root directory with an empty name */
	CHECK_ERR(add_file(b, 0, "", 0), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "root"), -EINVAL);
	n = mknode(S_IFDIR | 0755, 1);
	CHECK_ERR(manifest_builder_add(b, &n, "", 0, NULL, 0), -EINVAL);
	CHECK(manifest_builder_count(b) == 0);
	CHECK(add_dir(b, 0, "") == 0);
	CHECK(add_dir(b, 0, "b") == 1);
	CHECK(add_dir(b, 0, "c") == 2);
	/* names */
	CHECK_ERR(add_dir(b, 0, ""), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "."), -EINVAL);
	CHECK_ERR(add_dir(b, 0, ".."), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "x/y"), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "/etc"), -EINVAL);
	n = mknode(S_IFREG | 0644, 0);
	CHECK_ERR(manifest_builder_add(b, &n, "zz\0z", 4, NULL, 0), -EINVAL);
	memset(longname, 'z', sizeof(longname));
	longname[MANIFEST_NAME_MAX + 1] = 0;
	CHECK_ERR(add_dir(b, 0, longname), -EINVAL);
	/* sibling order: duplicate, smaller */
	CHECK_ERR(add_dir(b, 0, "c"), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "a"), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "bz"), -EINVAL);
	/* parent: itself, later, a file */
	CHECK_ERR(add_dir(b, 3, "x"), -EINVAL);
	CHECK_ERR(add_dir(b, 9, "x"), -EINVAL);
	CHECK(add_file(b, 0, "f", 0) == 3);
	CHECK_ERR(add_file(b, 3, "x", 0), -EINVAL);
	/* breadth-first: children of 2 then of 1 */
	CHECK(add_dir(b, 2, "x") == 4);
	CHECK_ERR(add_dir(b, 1, "y"), -EINVAL);
	CHECK_ERR(add_dir(b, 0, "zz"), -EINVAL);
	/* content rules */
	n = mknode(S_IFDIR | 0755, 2);
	n.flags = MANIFEST_FLAG_INLINE;
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, "ab", 2), -EINVAL);
	n = mknode(S_IFDIR | 0755, 2);
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, "ab", 2), -EINVAL);
	n = mknode(S_IFREG | 0644, 2);
	n.flags = 0x10;
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, NULL, 0), -EINVAL);
	n = mknode(S_IFREG | 0644, 2);
	n.flags = MANIFEST_FLAG_INLINE;
	memset(inl, 'i', sizeof(inl));
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, inl, sizeof(inl)), -EINVAL);
	n = mknode(S_IFLNK | 0777, 2);
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, "", 0), -EINVAL);
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, "a\0b", 3), -EINVAL);
	n = mknode(0170000 | 0644, 2);
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, NULL, 0), -EINVAL);
	n = mknode(S_IFREG | 0200000 | 0644, 2);
	CHECK_ERR(manifest_builder_add(b, &n, "y", 1, NULL, 0), -EINVAL);
	CHECK(manifest_builder_count(b) == 5);
	/* per-entry setters */
	CHECK_ERR(manifest_builder_set_chunks(b, 1, &(struct manifest_chunk){ mkid(1), 1 }, 1),
		  -EINVAL);
	CHECK_ERR(manifest_builder_set_chunks(b, 99, NULL, 0), -EINVAL);
	CHECK_ERR(manifest_builder_set_inline(b, 1, "x", 1), -EINVAL);
	CHECK_ERR(manifest_builder_set_inline(b, 3, inl, sizeof(inl)), -EINVAL);
	CHECK_ERR(manifest_builder_add_xattr(b, 3, "", "v", 1), -EINVAL);
	CHECK_ERR(manifest_builder_add_xattr(b, 3, longname, "v", 1), -EINVAL);
	CHECK_ERR(manifest_builder_add_xattr(b, 3, "user.big", inl,
					     MANIFEST_MAX_XATTR_VALUE + 1), -EINVAL);
	/* still encodable after all the refusals */
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	buf_reset(&enc);

	/* problems only visible at encode time: each is -EINVAL, then fixed */
	manifest_builder_set_size(b, 3, 10);
	CHECK_ERR(manifest_builder_encode(b, &info, &enc), -EINVAL);
	CHECK(msg_has(-EINVAL, "manifest entry 3 ('f'): chunk sizes sum to 0, file size is 10"));
	CHECK_OK(manifest_builder_set_chunks(b, 3, &(struct manifest_chunk){ mkid(1), 10 }, 1));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	buf_reset(&enc);
	CHECK_OK(manifest_builder_add_xattr(b, 3, "user.a", "1", 1));
	CHECK_OK(manifest_builder_add_xattr(b, 3, "user.a", "2", 1));
	CHECK_ERR(manifest_builder_encode(b, &info, &enc), -EINVAL);
	manifest_builder_free(b);

	/* hard link to a directory, out of range, to a non-head, size differs */
	for (int k = 0; k < 4; k++) {
		b = manifest_builder_new();
		add_dir(b, 0, "");
		add_dir(b, 0, "d");
		add_file(b, 0, "f", 5);
		n = mknode(S_IFREG | 0644, 0);
		n.nlink = 3;
		n.size = 5;
		n.hardlink = k == 0 ? 1 : k == 1 ? 77 : k == 2 ? 4 : 2;
		if (k == 3)
			n.size = 6;
		CHECK(manifest_builder_add(b, &n, "g", 1, NULL, 0) == 3);
		n.hardlink = 2;
		CHECK(manifest_builder_add(b, &n, "h", 1, NULL, 0) == 4);
		CHECK_ERR(manifest_builder_encode(b, &info, &enc), -EINVAL);
		manifest_builder_free(b);
	}
	/* the same group done right encodes */
	b = manifest_builder_new();
	add_dir(b, 0, "");
	n = mknode(S_IFREG | 0644, 0);
	n.nlink = 2;
	n.size = 5;
	n.hardlink = 1;
	CHECK(manifest_builder_add(b, &n, "f", 1, NULL, 0) == 1);
	CHECK(manifest_builder_add(b, &n, "g", 1, NULL, 0) == 2);
	CHECK_OK(manifest_builder_set_chunks(b, 1, &(struct manifest_chunk){ mkid(1), 5 }, 1));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	/* but not with chunks on the member */
	buf_reset(&enc);
	CHECK_OK(manifest_builder_set_chunks(b, 2, &(struct manifest_chunk){ mkid(1), 5 }, 1));
	CHECK_ERR(manifest_builder_encode(b, &info, &enc), -EINVAL);
	manifest_builder_free(b);
	buf_free(&enc);
}

/* ---- crafted manifests --------------------------------------------------- */

/* Encode b unchecked and expect the decoder to refuse it with a message
 * containing `needle`. */
static void expect_refused(struct manifest_builder *b, const char *needle, int line)
{
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;
	int rc;

	memset(&info, 0, sizeof(info));
	manifest_builder_set_unchecked(b, true);
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	rc = decode_buf(&enc, &m);
	if (rc != -EBADMSG || !msg_has(rc, needle)) {
		fprintf(stderr, "case at line %d: got %d '%s'\n", line, rc, hb_errmsg(rc));
		test_failures++;
	}
	test_checks++;
	CHECK(m == NULL);
	manifest_free(m);
	manifest_builder_free(b);
	buf_free(&enc);
}

#define REFUSED(b, needle) expect_refused(b, needle, __LINE__)

/* root, dir "a" (1), file "f" (2) with 10 bytes in one chunk */
static struct manifest_builder *base(void)
{
	struct manifest_builder *b = manifest_builder_new();

	manifest_builder_set_unchecked(b, true);
	add_dir(b, 0, "");
	add_dir(b, 0, "a");
	add_file(b, 0, "f", 10);
	return b;
}

static void test_crafted(void)
{
	struct manifest_builder *b;
	struct manifest_node n;

	b = base();
	add_dir(b, 1, "..");
	REFUSED(b, "manifest entry 3 ('a/..'): invalid name");
	b = base();
	add_dir(b, 1, ".");
	REFUSED(b, "manifest entry 3 ('a/.'): invalid name");
	b = base();
	add_dir(b, 1, "x/y");
	REFUSED(b, "manifest entry 3 ('a/x/y'): invalid name (contains '/')");
	b = base();
	add_dir(b, 1, "/etc");
	REFUSED(b, "invalid name (contains '/')");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 3;
	manifest_builder_add(b, &n, "a\0b", 3, NULL, 0);
	REFUSED(b, "manifest entry 3 ('a/a\\x00b'): invalid name (contains NUL)");
	b = base();
	add_dir(b, 1, "");
	REFUSED(b, "manifest entry 3 ('a/'): empty name");
	b = base();
	{
		char lng[MANIFEST_NAME_MAX + 2];

		memset(lng, 'n', sizeof(lng));
		lng[MANIFEST_NAME_MAX + 1] = 0;
		add_dir(b, 1, lng);
	}
	REFUSED(b, "name too long");
	/* siblings */
	b = base();
	add_dir(b, 0, "e");
	REFUSED(b, "manifest entry 3 ('e'): siblings unsorted or duplicate");
	b = base();
	add_dir(b, 0, "f");
	REFUSED(b, "siblings unsorted or duplicate");
	/* parents */
	b = base();
	add_dir(b, 7, "x");
	REFUSED(b, "manifest entry 3 (");
	b = base();
	add_dir(b, 3, "x");
	REFUSED(b, "parent index 3 out of range");
	b = base();
	add_file(b, 2, "x", 0);
	REFUSED(b, "manifest entry 3 ('f/x'): parent 2 is not a directory");
	b = base();
	add_dir(b, 1, "x");
	add_dir(b, 0, "y"); /* back to the root after a's children */
	REFUSED(b, "manifest entry 4 (");
	/* root */
	b = manifest_builder_new();
	manifest_builder_set_unchecked(b, true);
	add_file(b, 0, "", 0);
	REFUSED(b, "the root is not a directory");
	b = manifest_builder_new();
	manifest_builder_set_unchecked(b, true);
	add_dir(b, 0, "r");
	REFUSED(b, "the root must have an empty name");
	b = manifest_builder_new();
	manifest_builder_set_unchecked(b, true);
	n = mknode(S_IFDIR | 0755, 0);
	n.hardlink = 0;
	manifest_builder_add(b, &n, "", 0, NULL, 0);
	n.parent = 1;
	n.hardlink = 1;
	manifest_builder_add(b, &n, "self", 4, NULL, 0); /* its own parent */
	REFUSED(b, "manifest entry 1 ('self'): parent index 1 out of range");
	/* content */
	b = base();
	manifest_builder_set_size(b, 2, 11);
	REFUSED(b, "manifest entry 2 ('f'): chunk sizes sum to 10, file size is 11");
	b = base();
	manifest_builder_set_chunks(b, 2, (struct manifest_chunk[]){ { mkid(1), 10 },
								      { mkid(2), 0 } }, 2);
	REFUSED(b, "chunk 1 has size 0");
	b = base();
	manifest_builder_set_chunks(b, 1, &(struct manifest_chunk){ mkid(1), 10 }, 1);
	manifest_builder_set_size(b, 1, 10); /* chunks on a directory */
	REFUSED(b, "manifest entry 1 ('a'): size 10 on a file without content");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.flags = MANIFEST_FLAG_INLINE;
	n.size = 6;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "i", 1, "12345", 5);
	REFUSED(b, "manifest entry 3 ('a/i'): inline content is 5 bytes, size is 6");
	b = base();
	{
		static char big[MANIFEST_INLINE_MAX_BYTES + 1];

		n = mknode(S_IFREG | 0644, 1);
		n.flags = MANIFEST_FLAG_INLINE;
		n.size = sizeof(big);
		n.hardlink = 3;
		manifest_builder_add(b, &n, "i", 1, big, sizeof(big));
	}
	REFUSED(b, "bad or truncated inline content");
	b = base();
	n = mknode(S_IFLNK | 0777, 1);
	n.flags = MANIFEST_FLAG_INLINE;
	n.size = 1;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "l", 1, "t", 1);
	REFUSED(b, "inline content on a non-regular file");
	b = base();
	n = mknode(S_IFLNK | 0777, 1);
	n.hardlink = 3;
	manifest_builder_add(b, &n, "l", 1, NULL, 0);
	REFUSED(b, "invalid symlink target");
	b = base();
	n = mknode(S_IFLNK | 0777, 1);
	n.size = 3;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "l", 1, "a\0b", 3);
	REFUSED(b, "invalid symlink target");
	b = base();
	n = mknode(S_IFLNK | 0777, 1);
	n.size = 9;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "l", 1, "abc", 3);
	REFUSED(b, "symlink target is 3 bytes, size is 9");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.rdev = 5;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "r", 1, NULL, 0);
	REFUSED(b, "device number on a non-device");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.flags = 0x8;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "r", 1, NULL, 0);
	REFUSED(b, "unknown flags 0x8");
	b = base();
	n = mknode(0644, 1);
	n.hardlink = 3;
	manifest_builder_add(b, &n, "r", 1, NULL, 0);
	REFUSED(b, "invalid mode");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.ctime_nsec = 1000000000;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "r", 1, NULL, 0);
	REFUSED(b, "nanoseconds out of range");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.nlink = 0;
	n.hardlink = 3;
	manifest_builder_add(b, &n, "r", 1, NULL, 0);
	REFUSED(b, "link count 0 out of range");
	/* hard links */
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 1; /* a directory */
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	REFUSED(b, "manifest entry 3 ('a/h'): hard link target 1 is not a file of the same type heading");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 4;
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	REFUSED(b, "hard link target 4 out of range");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 2;
	n.size = 9;
	n.nlink = 2;
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	REFUSED(b, "size, target or device differs from its hard link target 2");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 2;
	n.size = 10;
	n.nlink = 1; /* a group of two */
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	REFUSED(b, "link count 1 below its 2 hard links");
	b = base();
	n = mknode(S_IFDIR | 0755, 1);
	n.hardlink = 1;
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	REFUSED(b, "hard link on a directory");
	b = base();
	n = mknode(S_IFREG | 0644, 1);
	n.hardlink = 2;
	n.size = 10;
	n.nlink = 2;
	manifest_builder_add(b, &n, "h", 1, NULL, 0);
	manifest_builder_set_chunks(b, 3, &(struct manifest_chunk){ mkid(1), 10 }, 1);
	REFUSED(b, "chunks on a hard link");
	/* xattrs (unchecked: kept in the order added) */
	b = base();
	manifest_builder_add_xattr(b, 2, "user.b", "1", 1);
	manifest_builder_add_xattr(b, 2, "user.a", "1", 1);
	REFUSED(b, "manifest entry 2 ('f'): xattr names unsorted or duplicate");
	b = base();
	manifest_builder_add_xattr(b, 2, "user.a", "1", 1);
	manifest_builder_add_xattr(b, 2, "user.a", "2", 1);
	REFUSED(b, "xattr names unsorted or duplicate");
	b = base();
	manifest_builder_add_xattr(b, 2, "", "1", 1);
	REFUSED(b, "xattr 0: invalid name");
	/* hot list */
	b = base();
	manifest_builder_set_hot(b, (struct oid[]){ mkid(1), { { 0 } } }, 2);
	REFUSED(b, "hot list entry 1 is a hole");
}

/* Hard links between symlinks, fifos and devices: kept, and checked. */
static struct manifest_builder *links_tree(const char *target2, uint64_t rdev2, uint32_t mode2)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_node n;

	add_dir(b, 0, "");
	n = mknode(S_IFCHR | 0600, 0);
	n.nlink = 2;
	n.rdev = makedev(4, 5);
	n.hardlink = 1;
	manifest_builder_add(b, &n, "c1", 2, NULL, 0);
	n.rdev = rdev2;
	manifest_builder_add(b, &n, "c2", 2, NULL, 0);
	n = mknode(S_IFIFO | 0600, 0);
	n.nlink = 2;
	n.hardlink = 4; /* forward */
	manifest_builder_add(b, &n, "fifo1", 5, NULL, 0);
	n.mode = mode2;
	manifest_builder_add(b, &n, "fifo2", 5, NULL, 0);
	n = mknode(S_IFLNK | 0777, 0);
	n.nlink = 2;
	n.hardlink = 5;
	manifest_builder_add(b, &n, "l1", 2, "target", 6);
	manifest_builder_add(b, &n, "l2", 2, target2, strlen(target2));
	return b;
}

static void test_hardlink_kinds(void)
{
	struct manifest_builder *b = links_tree("target", makedev(4, 5), S_IFIFO | 0600);
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	struct manifest *m = NULL;

	memset(&info, 0, sizeof(info));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	manifest_builder_free(b);
	CHECK_OK(decode_buf(&enc, &m));
	if (m) {
		CHECK(manifest_node(m, 2)->hardlink == 1 && manifest_node(m, 2)->rdev == makedev(4, 5));
		CHECK(manifest_node(m, 3)->hardlink == 4 && manifest_node(m, 4)->hardlink == 4);
		CHECK(manifest_node(m, 6)->hardlink == 5);
		CHECK(strcmp((const char *)manifest_data(m, 6), "target") == 0);
	}
	manifest_free(m);
	buf_free(&enc);
	/* a member whose target, device or type differs */
	b = links_tree("other!", makedev(4, 5), S_IFIFO | 0600);
	REFUSED(b, "manifest entry 6 ('l2'): size, target or device differs");
	b = links_tree("target", makedev(4, 6), S_IFIFO | 0600);
	REFUSED(b, "manifest entry 2 ('c2'): size, target or device differs");
	b = links_tree("target", makedev(4, 5), S_IFSOCK | 0600);
	REFUSED(b, "is not a file of the same type");
}

/* Bodies the builder cannot even express. */
static void test_raw_bodies(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info;
	struct buf raw = BUF_INIT, enc = BUF_INIT, tmp = BUF_INIT;
	struct manifest *m = NULL;
	static const uint8_t zero_count[] = { 0, 0 };
	static const uint8_t huge_count[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0 };
	static const uint8_t long_varint[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
					       0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	unsigned bad = 0;

	memset(&info, 0, sizeof(info));
	build_kinds(b);
	CHECK_OK(manifest_builder_encode_body(b, &raw));
	manifest_builder_free(b);

	CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, raw.data, raw.len, &enc));
	CHECK_OK(decode_buf(&enc, &m));
	manifest_free(m);
	m = NULL;
	buf_reset(&enc);

	/* every truncation of the body, and one byte too many */
	for (size_t len = 0; len < raw.len; len++) {
		CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, raw.data, len, &enc));
		if (decode_buf(&enc, &m) != -EBADMSG)
			bad++;
		manifest_free(m);
		m = NULL;
		buf_reset(&enc);
	}
	CHECK(bad == 0);
	buf_append(&tmp, raw.data, raw.len);
	buf_append(&tmp, "", 1);
	CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, tmp.data, tmp.len, &enc));
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	CHECK(msg_has(-EBADMSG, "hot list"));
	buf_reset(&enc);

	CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, zero_count, 2, &enc));
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	CHECK(msg_has(-EBADMSG, "no root entry"));
	buf_reset(&enc);
	CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, huge_count, sizeof(huge_count), &enc));
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	CHECK(msg_has(-EBADMSG, "entry count"));
	buf_reset(&enc);
	CHECK_OK(manifest_wrap_body(MANIFEST_VERSION, &info, long_varint, sizeof(long_varint),
				    &enc));
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	buf_reset(&enc);

	/* declared raw length that the zstd frame contradicts */
	wrap_raw("{}", raw.data, raw.len, raw.len + 1, &enc);
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	buf_reset(&enc);
	wrap_raw("{}", raw.data, raw.len, (uint64_t)MANIFEST_MAX_BODY_BYTES + 1, &enc);
	CHECK_ERR(decode_buf(&enc, &m), -EBADMSG);
	buf_reset(&enc);
	wrap_raw("{}", raw.data, raw.len, raw.len, &enc);
	CHECK_OK(decode_buf(&enc, &m));
	manifest_free(m);
	m = NULL;
	buf_reset(&enc);
	CHECK(m == NULL);
	buf_free(&raw);
	buf_free(&enc);
	buf_free(&tmp);
}

static void test_info_json(void)
{
	static const struct {
		const char *json;
		int rc;
	} cases[] = {
		{ "{}", 0 },
		{ "{\"files\":3,\"future\":{\"x\":[1,2]},\"later\":\"y\"}", 0 },
		{ "{\"parent\":null}", 0 },
		{ "{\"files\":-1}", -EBADMSG },
		{ "{\"files\":\"3\"}", -EBADMSG },
		{ "{\"files\":1.5}", -EBADMSG },
		{ "{\"parent\":\"xyz\"}", -EBADMSG },
		{ "{\"parent\":\"0123456789abcdef0123456789abcdeg\"}", -EBADMSG },
		{ "{\"host\":7}", -EBADMSG },
		{ "{\"time_nsec\":1000000000}", -EBADMSG },
		{ "{\"time\":\"now\"}", -EBADMSG },
		{ "{\"files\":1,\"files\":2}", -EBADMSG },
		{ "[1]", -EBADMSG },
		{ "{", -EBADMSG },
		{ "", -EBADMSG },
		{ "{\"origin\":\"0123456789012345678901234567890123456789012345678901234567890123\"}",
		  -EBADMSG },
	};
	struct buf enc = BUF_INIT, body = BUF_INIT;
	struct manifest *m = NULL;
	struct manifest_info info;
	struct manifest_builder *rb = manifest_builder_new();

	add_dir(rb, 0, "");
	CHECK_OK(manifest_builder_encode_body(rb, &body));
	manifest_builder_free(rb);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int rc;

		wrap_raw(cases[k].json, body.data, body.len, body.len, &enc);
		rc = decode_buf(&enc, &m);
		if (rc != cases[k].rc) {
			fprintf(stderr, "info %s: %d (%s), expected %d\n", cases[k].json, rc,
				hb_errmsg(rc), cases[k].rc);
			test_failures++;
		}
		test_checks++;
		if (k == 1 && m)
			CHECK(manifest_info(m)->files == 3 && manifest_count(m) == 1);
		manifest_free(m);
		m = NULL;
		CHECK_ERR(manifest_decode_info(enc.data, enc.len, &info, NULL), cases[k].rc);
		buf_reset(&enc);
	}
	/* the builder refuses info it cannot represent */
	{
		struct manifest_builder *b = manifest_builder_new();
		struct manifest_info bad = test_info();

		add_dir(b, 0, "");
		bad.files = (uint64_t)INT64_MAX + 1;
		CHECK_ERR(manifest_builder_encode(b, &bad, &enc), -EINVAL);
		bad = test_info();
		memset(bad.origin, 'o', sizeof(bad.origin));
		CHECK_ERR(manifest_builder_encode(b, &bad, &enc), -EINVAL);
		bad = test_info();
		bad.time_nsec = 1000000000;
		CHECK_ERR(manifest_builder_encode(b, &bad, &enc), -EINVAL);
		manifest_builder_free(b);
	}
	/* a source path that is not UTF-8 (JSON cannot hold it) is kept escaped */
	{
		struct manifest_builder *b = manifest_builder_new();
		struct manifest_info odd = test_info(), back;

		add_dir(b, 0, "");
		snprintf(odd.source, sizeof(odd.source), "/x/\xff\xfe/caf\xc3\xa9");
		CHECK_OK(manifest_builder_encode(b, &odd, &enc));
		CHECK_OK(manifest_decode_info(enc.data, enc.len, &back, NULL));
		CHECK(strcmp(back.source, "/x/\\xff\\xfe/caf\\xc3\\xa9") == 0);
		CHECK(strcmp(back.host, odd.host) == 0);
		buf_reset(&enc);
		manifest_builder_free(b);
	}
	buf_free(&enc);
	buf_free(&body);
}

/* The whole container: every truncation, every flipped bit pattern,
 * appended bytes, wrong magic, unknown versions. */
static void test_container(void)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info = test_info(), info2;
	struct buf enc = BUF_INIT, v2 = BUF_INIT;
	struct manifest *m = NULL;
	unsigned bad_trunc = 0, bad_flip = 0;
	uint8_t *copy;

	add_dir(b, 0, "");
	add_dir(b, 0, "d");
	add_file(b, 1, "f", 3);
	CHECK_OK(manifest_builder_add_xattr(b, 2, "user.x", "y", 1));
	CHECK_OK(manifest_builder_encode(b, &info, &enc));
	manifest_builder_free(b);
	copy = malloc(enc.len + 1);

	for (size_t len = 0; len < enc.len; len++) {
		memcpy(copy, enc.data, len);
		if (manifest_decode(copy, len, &m) != -EBADMSG || m)
			bad_trunc++;
		manifest_free(m);
		m = NULL;
	}
	CHECK(bad_trunc == 0);
	for (size_t pos = 0; pos < enc.len; pos++)
		for (int bit = 0; bit < 8; bit++) {
			int rc;

			memcpy(copy, enc.data, enc.len);
			copy[pos] ^= (uint8_t)(1u << bit);
			rc = manifest_decode(copy, enc.len, &m);
			/* the version field says "unknown version" rather than "corrupt" */
			if (!(rc == -EBADMSG || (pos >= 8 && pos < 12 && rc == -EPROTONOSUPPORT)) ||
			    m)
				bad_flip++;
			manifest_free(m);
			m = NULL;
		}
	CHECK(bad_flip == 0);
	memcpy(copy, enc.data, enc.len);
	copy[enc.len] = 0;
	CHECK_ERR(manifest_decode(copy, enc.len + 1, &m), -EBADMSG);
	CHECK_ERR(manifest_decode(NULL, 0, &m), -EBADMSG);
	CHECK_ERR(manifest_decode("HBSNAP02xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 40, &m), -EBADMSG);
	CHECK(msg_has(-EBADMSG, "bad magic"));

	/* a future version, otherwise well-formed */
	{
		struct buf raw = BUF_INIT;

		b = manifest_builder_new();
		add_dir(b, 0, "");
		CHECK_OK(manifest_builder_encode_body(b, &raw));
		manifest_builder_free(b);
		CHECK_OK(manifest_wrap_body(2, &info, raw.data, raw.len, &v2));
		buf_free(&raw);
	}
	CHECK_ERR(decode_buf(&v2, &m), -EPROTONOSUPPORT);
	CHECK(strcmp(hb_errmsg(-EPROTONOSUPPORT),
		     "manifest format version 2 is not supported by this hiberbox") == 0);
	CHECK_ERR(manifest_decode_info(v2.data, v2.len, &info2, NULL), -EPROTONOSUPPORT);
	put_le32(v2.data + 8, 0);
	CHECK_ERR(decode_buf(&v2, &m), -EPROTONOSUPPORT);
	CHECK(m == NULL);
	free(copy);
	buf_free(&enc);
	buf_free(&v2);
}

/* ---- fuzz seeds ----------------------------------------------------------- */

static int write_seed(const char *dir, const char *name, const struct buf *b)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

static int write_corpus(const char *dir)
{
	struct manifest_info info = test_info();
	struct manifest_builder *b;
	struct buf out = BUF_INIT;
	char name[64];
	int rc = 0;

	/* full manifests */
	b = manifest_builder_new();
	build_kinds(b);
	rc |= manifest_builder_encode(b, &info, &out) < 0 || write_seed(dir, "kinds", &out);
	buf_reset(&out);
	rc |= manifest_builder_encode_body(b, &out) < 0 || write_seed(dir, "body-kinds", &out);
	buf_reset(&out);
	manifest_builder_free(b);

	b = manifest_builder_new();
	add_dir(b, 0, "");
	memset(&info, 0, sizeof(info));
	rc |= manifest_builder_encode(b, &info, &out) < 0 || write_seed(dir, "root", &out);
	buf_reset(&out);
	rc |= manifest_builder_encode_body(b, &out) < 0 || write_seed(dir, "body-root", &out);
	buf_reset(&out);
	manifest_builder_free(b);

	b = manifest_builder_new();
	add_dir(b, 0, "");
	for (int d = 0; d < 4; d++) {
		snprintf(name, sizeof(name), "dir%d", d);
		add_dir(b, 0, name);
	}
	for (int d = 0; d < 4; d++)
		for (int f = 0; f < 6; f++) {
			snprintf(name, sizeof(name), "f%d", f);
			add_file(b, (uint32_t)(1 + d), name, (uint32_t)(f * 100));
		}
	info = test_info();
	rc |= manifest_builder_encode(b, &info, &out) < 0 || write_seed(dir, "tree", &out);
	buf_reset(&out);
	rc |= manifest_builder_encode_body(b, &out) < 0 || write_seed(dir, "body-tree", &out);
	manifest_builder_free(b);
	buf_free(&out);
	return rc ? 1 : 0;
}

/* ---- reusing a base manifest's body ------------------------------------- */

static struct manifest_builder *reuse_tree(int64_t mtime)
{
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_node n = mknode(S_IFREG | 0644, 1);

	add_dir(b, 0, NULL);
	add_dir(b, 0, "a");
	add_file(b, 1, "big", 70000);
	n.mtime_sec = mtime;
	n.flags = MANIFEST_FLAG_INLINE;
	CHECK(add(b, n, "small", "tiny", 4) == 3);
	return b;
}

/* The body of an encoded manifest: (pointer, length). */
static const uint8_t *body_of(const struct buf *m, size_t *len)
{
	uint32_t info_len = (uint32_t)m->data[12] | (uint32_t)m->data[13] << 8 |
			    (uint32_t)m->data[14] << 16 | (uint32_t)m->data[15] << 24;
	size_t off = MANIFEST_HEADER_BYTES + info_len + 16;

	*len = m->len - off - 8;
	return m->data + off;
}

/* A builder whose body equals its base's stores the base's compressed bytes
 * as they are: shown with a base compressed at another zstd level than the
 * builder would use.  Any difference, or a base decoded without its body,
 * means compressing (and validating) as usual. */
static void test_base_body_reused(void)
{
	struct manifest_builder *b = reuse_tree(1700000000);
	struct manifest_info info = test_info();
	struct buf raw = BUF_INIT, plain = BUF_INIT, crafted = BUF_INIT, out = BUF_INIT;
	struct manifest *keep = NULL, *nokeep = NULL, *m = NULL;
	uint8_t z[4096], le[8];
	size_t zlen, blen, prefix;
	const uint8_t *body;

	CHECK_OK(manifest_builder_encode_body(b, &raw));
	CHECK_OK(manifest_builder_encode(b, &info, &plain));
	zlen = ZSTD_compress(z, sizeof(z), raw.data, raw.len, 19);
	CHECK(!ZSTD_isError(zlen));
	body = body_of(&plain, &blen);
	CHECK(blen != zlen || memcmp(body, z, zlen) != 0); /* the two levels differ */
	/* the same container with the level-19 frame in it */
	prefix = (size_t)(body - plain.data) - 16;
	CHECK_OK(buf_append(&crafted, plain.data, prefix));
	for (int k = 0; k < 8; k++)
		le[k] = (uint8_t)((uint64_t)raw.len >> (8 * k));
	CHECK_OK(buf_append(&crafted, le, 8));
	for (int k = 0; k < 8; k++)
		le[k] = (uint8_t)((uint64_t)zlen >> (8 * k));
	CHECK_OK(buf_append(&crafted, le, 8));
	CHECK_OK(buf_append(&crafted, z, zlen));
	{
		uint64_t sum = XXH3_64bits(crafted.data, crafted.len);

		for (int k = 0; k < 8; k++)
			le[k] = (uint8_t)(sum >> (8 * k));
		CHECK_OK(buf_append(&crafted, le, 8));
	}
	CHECK_OK(manifest_decode_reusable(crafted.data, crafted.len, &keep));
	CHECK_OK(manifest_decode(crafted.data, crafted.len, &nokeep));
	manifest_builder_free(b);

	/* identical tree: the level-19 frame is stored, with the new info */
	b = reuse_tree(1700000000);
	manifest_builder_set_base(b, keep);
	info.files = 77;
	CHECK_OK(manifest_builder_encode(b, &info, &out));
	body = body_of(&out, &blen);
	CHECK(blen == zlen && memcmp(body, z, zlen) == 0);
	CHECK_OK(manifest_decode(out.data, out.len, &m));
	CHECK(m && manifest_info(m)->files == 77 && manifest_count(m) == 4);
	manifest_free(m);
	m = NULL;
	manifest_builder_free(b);

	/* one mtime differs: compressed anew, and what is stored says so */
	b = reuse_tree(1700000001);
	manifest_builder_set_base(b, keep);
	buf_reset(&out);
	CHECK_OK(manifest_builder_encode(b, &info, &out));
	body = body_of(&out, &blen);
	CHECK(blen != zlen || memcmp(body, z, zlen) != 0);
	CHECK_OK(manifest_decode(out.data, out.len, &m));
	CHECK(m && manifest_node(m, 3)->mtime_sec == 1700000001);
	manifest_free(m);
	manifest_builder_free(b);

	/* a base without its body: nothing to reuse */
	b = reuse_tree(1700000000);
	manifest_builder_set_base(b, nokeep);
	buf_reset(&out);
	CHECK_OK(manifest_builder_encode(b, &info, &out));
	body = body_of(&out, &blen);
	CHECK(blen != zlen || memcmp(body, z, zlen) != 0);
	manifest_builder_free(b);

	manifest_free(keep);
	manifest_free(nokeep);
	buf_free(&raw);
	buf_free(&plain);
	buf_free(&crafted);
	buf_free(&out);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	test_roundtrip_kinds();
	test_minimal();
	test_hot_only_referenced();
	test_big();
	test_builder_refusals();
	test_crafted();
	test_hardlink_kinds();
	test_raw_bodies();
	test_info_json();
	test_container();
	test_base_body_reused();
	TEST_MAIN_END();
}
