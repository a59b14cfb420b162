/* How fast a manifest loads: the design asks for 50k entries in well under
 * 50 ms (a wake's manifest load sits on the critical path of every mount).
 *
 * Builds a node_modules-like tree of N entries (default 50000; argv[1]):
 * directories of 20 entries, about half small inline files, a third chunked
 * files, some symlinks, a few xattrs; encodes it once, then decodes it
 * `rounds` times (argv[2], default 20) and prints min and median times.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshot/manifest.h"
#include "util/error.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Entries in breadth-first order: each directory, in the order created,
 * gets 20 children, the first 4 of them directories. */
static int build(struct manifest_builder *b, uint32_t n)
{
	uint32_t *dirs = malloc(sizeof(*dirs) * n), ndirs = 1, cur = 0;
	static const char inline_data[1024] = "module.exports = require('./lib');\n";
	uint64_t seed = 88172645463325252ull;
	struct manifest_node node;
	char name[64];

	if (!dirs)
		return -1;
	dirs[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t parent = dirs[cur], k = i ? (i - 1) % 20 : 0;
		uint64_t r = rnd(&seed);
		const void *data = NULL;
		size_t data_len = 0;
		int64_t idx;

		memset(&node, 0, sizeof(node));
		node.parent = parent;
		node.hardlink = i;
		node.uid = node.gid = 1000;
		node.mtime_sec = node.ctime_sec = node.atime_sec = 1700000000 + (int64_t)(r % 100000);
		node.mtime_nsec = (uint32_t)(r % 1000000000);
		node.src_ino = 1000000 + i;
		node.src_dev = 0x803;
		node.nlink = 1;
		snprintf(name, sizeof(name), k < 4 ? "dir-%02u-%u" : "file-%02u-%u.js", k,
			 (unsigned)(r % 1000));
		if (i == 0 || k < 4) {
			node.mode = S_IFDIR | 0755;
			node.nlink = 6;
		} else if (k % 7 == 0) {
			node.mode = S_IFLNK | 0777;
			data = "../../lib/index.js";
			data_len = strlen(data);
		} else if (k % 2 == 0) {
			node.mode = S_IFREG | 0644;
			node.flags = MANIFEST_FLAG_INLINE;
			data = inline_data;
			data_len = 40 + r % 900;
		} else {
			node.mode = S_IFREG | 0644;
		}
		idx = manifest_builder_add(b, &node, i ? name : "", i ? strlen(name) : 0, data,
					   data_len);
		if (idx < 0) {
			free(dirs);
			return (int)idx;
		}
		if (i && k < 4)
			dirs[ndirs++] = i;
		if (i && k == 19)
			cur++;
		if (S_ISREG(node.mode) && !node.flags) {
			struct manifest_chunk c[3];
			uint32_t nc = 1 + (uint32_t)(r % 3);
			uint64_t size = 0;

			for (uint32_t j = 0; j < nc; j++) {
				for (int q = 0; q < OID_BYTES; q++)
					c[j].id.b[q] = (uint8_t)rnd(&seed);
				c[j].size = 16384 + (uint32_t)(rnd(&seed) % 100000);
				size += c[j].size;
			}
			manifest_builder_set_chunks(b, (uint32_t)idx, c, nc);
			manifest_builder_set_size(b, (uint32_t)idx, size);
		}
		if (i % 100 == 0)
			manifest_builder_add_xattr(b, (uint32_t)idx, "user.origin", "npm", 3);
	}
	free(dirs);
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 50000;
	int rounds = argc > 2 ? atoi(argv[2]) : 20;
	struct manifest_builder *b = manifest_builder_new();
	struct manifest_info info;
	struct buf enc = BUF_INIT;
	double t0, encode_ms, *t;
	int r;

	if (!b || n == 0 || rounds <= 0)
		return 2;
	t = calloc((size_t)rounds, sizeof(*t));
	memset(&info, 0, sizeof(info));
	r = build(b, n);
	t0 = now_ms();
	if (r == 0)
		r = manifest_builder_encode(b, &info, &enc);
	encode_ms = now_ms() - t0;
	if (r < 0) {
		fprintf(stderr, "manifest-speed: %s\n", hb_errmsg(r));
		return 1;
	}
	for (int k = 0; k < rounds; k++) {
		struct manifest *m;

		t0 = now_ms();
		r = manifest_decode(enc.data, enc.len, &m);
		t[k] = now_ms() - t0;
		if (r < 0) {
			fprintf(stderr, "manifest-speed: %s\n", hb_errmsg(r));
			return 1;
		}
		manifest_free(m);
	}
	qsort(t, (size_t)rounds, sizeof(*t), cmp_double);
	printf("manifest of %u entries: %zu bytes, encode %.1f ms, decode min %.2f ms,"
	       " median %.2f ms (%d rounds)\n",
	       n, enc.len, encode_ms, t[0], t[rounds / 2], rounds);
	manifest_builder_free(b);
	buf_free(&enc);
	free(t);
	return 0;
}
