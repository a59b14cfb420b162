/* The chunk index: a million entries, duplicates, concurrent use, and the
 * index file codec against truncation and corruption. */
#include "snapshot/index.h"

#include <pthread.h>
#include <xxhash.h>

#include "snapshot/chunk.h"
#include "snapshot/pack.h"
#include "test.h"

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Entry number i: a pseudo-random chunk id in one of 997 packs. */
static void make_entry(uint64_t i, struct index_entry *e)
{
	uint64_t a = mix(i), b = mix(i ^ 0xabcdef), p = mix((i % 997) + (1ull << 40));

	memset(e, 0, sizeof(*e));
	for (int k = 0; k < 8; k++) {
		e->chunk.b[k] = (uint8_t)(a >> (8 * k));
		e->chunk.b[8 + k] = (uint8_t)(b >> (8 * k));
		e->pack.b[k] = (uint8_t)(p >> (8 * k));
		e->pack.b[8 + k] = (uint8_t)(p >> (8 * k + 3));
	}
	e->offset = (uint32_t)(8 + i % 1000000);
	e->length = (uint32_t)(1 + i % 65536);
	e->raw_length = e->length + (uint32_t)(i % 7);
	e->flags = 0;
}

static int entry_same(const struct index_entry *a, const struct index_entry *b)
{
	return oid_equal(&a->chunk, &b->chunk) && oid_equal(&a->pack, &b->pack) &&
	       a->offset == b->offset && a->length == b->length &&
	       a->raw_length == b->raw_length && a->flags == b->flags;
}

static int count_fn(const struct index_entry *e, void *arg)
{
	(*(size_t *)arg)++;
	return 0;
}

static int stop_fn(const struct index_entry *e, void *arg)
{
	return ++*(size_t *)arg == 10 ? 42 : 0;
}

static void test_million(void)
{
	struct chunk_index *idx = chunk_index_new();
	const uint64_t n = 1000000;
	struct index_entry e, got;
	size_t visited = 0, bad = 0, miss = 0;

	CHECK(chunk_index_count(idx) == 0);
	make_entry(0, &e);
	CHECK(chunk_index_lookup(idx, &e.chunk, &got) == 0);
	for (uint64_t i = 0; i < n; i++) {
		make_entry(i, &e);
		if (chunk_index_add(idx, &e) != 1)
			bad++;
	}
	CHECK(bad == 0);
	CHECK(chunk_index_count(idx) == n);
	for (uint64_t i = 0; i < n; i++) {
		make_entry(i, &e);
		if (chunk_index_lookup(idx, &e.chunk, &got) != 1 || !entry_same(&e, &got))
			bad++;
		make_entry(i + n, &e);
		if (chunk_index_lookup(idx, &e.chunk, &got) != 0)
			miss++;
	}
	CHECK(bad == 0 && miss == 0);
	CHECK(chunk_index_foreach(idx, count_fn, &visited) == 0);
	CHECK(visited == n);
	visited = 0;
	CHECK(chunk_index_foreach(idx, stop_fn, &visited) == 42);
	CHECK(visited == 10);
	chunk_index_free(idx);
	chunk_index_free(NULL);
}

static void test_duplicates(void)
{
	struct chunk_index *idx = chunk_index_new();
	struct index_entry a, b, got;
	struct oid zero = { { 0 } };

	make_entry(1, &a);
	b = a;
	b.offset = 999;
	b.pack.b[0] ^= 0xff;
	CHECK(chunk_index_add(idx, &a) == 1);
	CHECK(chunk_index_add(idx, &b) == 0);
	CHECK(chunk_index_add(idx, &a) == 0);
	CHECK(chunk_index_count(idx) == 1);
	CHECK(chunk_index_lookup(idx, &a.chunk, &got) == 1 && entry_same(&a, &got));
	CHECK(chunk_index_lookup(idx, &a.chunk, NULL) == 1);
	/* Ids that share their first 8 bytes (the hash) are still told apart,
	 * and the all-zero id is an ordinary key. */
	b = a;
	b.chunk.b[15] ^= 1;
	CHECK(chunk_index_add(idx, &b) == 1);
	CHECK(chunk_index_lookup(idx, &b.chunk, &got) == 1 && entry_same(&b, &got));
	CHECK(chunk_index_lookup(idx, &a.chunk, &got) == 1 && entry_same(&a, &got));
	CHECK(chunk_index_lookup(idx, &zero, &got) == 0);
	b.chunk = zero;
	CHECK(chunk_index_add(idx, &b) == 1);
	CHECK(chunk_index_lookup(idx, &zero, &got) == 1 && entry_same(&b, &got));
	chunk_index_free(idx);
}

/* Two writers add disjoint ranges while two readers look up entries added
 * before the threads started (always there) and the writers' (there or not,
 * but never wrong). */
#define PRELOAD 20000u
#define PER_WRITER 100000u

struct worker {
	struct chunk_index *idx;
	int id;
	size_t errors;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct index_entry e, got;

	if (w->id < 2) {
		uint64_t base = PRELOAD + (uint64_t)w->id * PER_WRITER;

		for (uint64_t i = 0; i < PER_WRITER; i++) {
			make_entry(base + i, &e);
			if (chunk_index_add(w->idx, &e) != 1)
				w->errors++;
		}
	} else {
		for (uint64_t k = 0; k < 4 * PER_WRITER; k++) {
			uint64_t i = mix(k + (uint64_t)w->id * 77777) % (PRELOAD + 2 * PER_WRITER);
			int r;

			make_entry(i, &e);
			r = chunk_index_lookup(w->idx, &e.chunk, &got);
			if (i < PRELOAD ? r != 1 : r < 0)
				w->errors++;
			if (r == 1 && !entry_same(&e, &got))
				w->errors++;
		}
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct chunk_index *idx = chunk_index_new();
	struct worker w[4];
	pthread_t t[4];
	struct index_entry e, got;
	size_t bad = 0;

	for (uint64_t i = 0; i < PRELOAD; i++) {
		make_entry(i, &e);
		chunk_index_add(idx, &e);
	}
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .idx = idx, .id = i };
		CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].errors == 0);
	}
	CHECK(chunk_index_count(idx) == PRELOAD + 2 * PER_WRITER);
	for (uint64_t i = 0; i < PRELOAD + 2 * PER_WRITER; i++) {
		make_entry(i, &e);
		if (chunk_index_lookup(idx, &e.chunk, &got) != 1 || !entry_same(&e, &got))
			bad++;
	}
	CHECK(bad == 0);
	chunk_index_free(idx);
}

static void test_file_roundtrip(void)
{
	struct index_entry in[100], *out;
	struct buf f = BUF_INIT;
	size_t n;

	for (int i = 0; i < 100; i++)
		make_entry((uint64_t)i, &in[i]);
	in[3].flags = CHUNK_FLAG_RAW;
	in[3].raw_length = in[3].length;
	CHECK_OK(index_file_encode(in, 100, &f));
	CHECK(f.len == 8 + 100 * INDEX_ENTRY_BYTES + 12);
	CHECK(!memcmp(f.data, INDEX_MAGIC, 8));
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	CHECK(n == 100 && out);
	for (size_t i = 0; i < n && i < 100; i++)
		CHECK(entry_same(&in[i], &out[i]));
	free(out);
	/* Empty index. */
	CHECK_OK(index_file_encode(in, 0, &f));
	CHECK(f.len == 20);
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	CHECK(n == 0);
	free(out);
	/* encode replaces the buffer's content. */
	CHECK_OK(index_file_encode(in, 2, &f));
	CHECK_OK(index_file_encode(in, 2, &f));
	CHECK(f.len == 8 + 2 * INDEX_ENTRY_BYTES + 12);
	buf_free(&f);
}

/* Re-seal a hand-edited file with a valid count and checksum. */
static void reseal(struct buf *f, uint32_t count)
{
	put_le32(f->data + f->len - 12, count);
	put_le64(f->data + f->len - 8, XXH3_64bits(f->data, f->len - 8));
}

static void test_file_corrupt(void)
{
	struct index_entry in[4], *out;
	struct buf f = BUF_INIT;
	size_t n;

	for (int i = 0; i < 4; i++)
		make_entry((uint64_t)i, &in[i]);
	CHECK_OK(index_file_encode(in, 4, &f));
	/* Every truncation, at either end. */
	for (size_t len = 0; len < f.len; len++) {
		CHECK_ERR(index_file_decode(f.data, len, &out, &n), -EBADMSG);
		CHECK(out == NULL && n == 0);
		CHECK_ERR(index_file_decode(f.data + f.len - len, len, &out, &n), -EBADMSG);
	}
	/* Every single-bit flip. */
	for (size_t i = 0; i < f.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			f.data[i] ^= (uint8_t)(1u << bit);
			CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
			f.data[i] ^= (uint8_t)(1u << bit);
		}
	}
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	free(out);

	/* Valid checksums around impossible content. */
#define REFUSE_ENTRY(field, value)                                                          \
	do {                                                                                \
		struct index_entry m[4] = { in[0], in[1], in[2], in[3] };                   \
		m[2].field = value;                                                         \
		CHECK_OK(index_file_encode(m, 4, &f));                                      \
		CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);             \
	} while (0)
	REFUSE_ENTRY(flags, 0x4);
	REFUSE_ENTRY(offset, 0);
	REFUSE_ENTRY(offset, PACK_MAX_BYTES);
	REFUSE_ENTRY(length, UINT32_MAX);
	{
		struct index_entry m[4] = { in[0], in[1], in[2], in[3] };

		m[1].flags = CHUNK_FLAG_RAW; /* raw, but lengths differ */
		m[1].raw_length = m[1].length + 1;
		CHECK_OK(index_file_encode(m, 4, &f));
		CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	}
#undef REFUSE_ENTRY
	/* Wrong counts with valid checksums. */
	CHECK_OK(index_file_encode(in, 4, &f));
	reseal(&f, 3);
	CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	reseal(&f, 5);
	CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	reseal(&f, UINT32_MAX);
	CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	/* A body that is not a whole number of entries. */
	f.len -= 1;
	reseal(&f, 4);
	CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	/* Bad magic with a valid checksum. */
	CHECK_OK(index_file_encode(in, 4, &f));
	f.data[7] = '9';
	reseal(&f, 4);
	CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "magic") != NULL);
	buf_free(&f);
}

static int by_chunk(const void *a, const void *b)
{
	return oid_cmp(&((const struct index_entry *)a)->chunk,
		       &((const struct index_entry *)b)->chunk);
}

/* Entries as a writer makes them: packs of blobs back to back. */
static void make_packed(struct index_entry *e, size_t n)
{
	uint32_t off = PACK_HEADER_BYTES;

	for (size_t i = 0; i < n; i++) {
		make_entry((uint64_t)i, &e[i]);
		e[i].pack = e[i - i % 300].pack; /* 300 chunks a pack */
		if (i % 300 == 0)
			off = PACK_HEADER_BYTES;
		e[i].offset = off;
		e[i].length = 100 + (uint32_t)(i * 37 % 20000);
		e[i].raw_length = e[i].length * 3;
		e[i].flags = i % 5 == 0 ? CHUNK_FLAG_DICT | 0x4c5eaeu << CHUNK_DICT_SHIFT
			   : i % 7 == 0 ? CHUNK_FLAG_RAW : 0;
		if (e[i].flags == CHUNK_FLAG_RAW)
			e[i].raw_length = e[i].length;
		off += e[i].length;
	}
}

static void test_file_v2(void)
{
	enum { N = 3000 };
	struct index_entry *in = calloc(N, sizeof(*in)), *out = NULL;
	struct buf f = BUF_INIT, v1 = BUF_INIT;
	size_t n = 0;

	make_packed(in, N);
	in[17].offset += 1000; /* a gap, as after gc */
	CHECK_OK(index_file_encode_v2(in, N, &f));
	CHECK_OK(index_file_encode(in, N, &v1));
	CHECK(!memcmp(f.data, INDEX_MAGIC_V2, 8));
	CHECK(f.len * 2 < v1.len); /* the point of it */
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	CHECK(n == N);
	if (n == N) {
		/* The same entries, in pack order: compare as sets. */
		qsort(in, N, sizeof(*in), by_chunk);
		qsort(out, N, sizeof(*out), by_chunk);
		for (size_t i = 0; i < N; i++)
			CHECK(entry_same(&in[i], &out[i]));
	}
	free(out);
	/* The same entries in another order: the same bytes (gc names files by
	 * their content). */
	CHECK_OK(index_file_encode_v2(in, N, &v1));
	CHECK(v1.len == f.len && !memcmp(v1.data, f.data, f.len));
	/* Empty. */
	CHECK_OK(index_file_encode_v2(in, 0, &f));
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	CHECK(n == 0);
	free(out);

	/* Every truncation and every byte flip is refused. */
	CHECK_OK(index_file_encode_v2(in, 40, &f));
	for (size_t len = 0; len < f.len; len++) {
		CHECK_ERR(index_file_decode(f.data, len, &out, &n), -EBADMSG);
		CHECK(out == NULL && n == 0);
	}
	for (size_t i = 0; i < f.len; i++) {
		f.data[i] ^= 0x11;
		CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
		f.data[i] ^= 0x11;
	}
	CHECK_OK(index_file_decode(f.data, f.len, &out, &n));
	free(out);
	/* Impossible entries behind a valid checksum. */
	{
		struct index_entry m[3] = { in[0], in[1], in[2] };

		m[1].flags = CHUNK_FLAG_DICT; /* a dictionary without number */
		CHECK_OK(index_file_encode_v2(m, 3, &f));
		CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
		m[1] = in[1];
		m[1].offset = PACK_MAX_BYTES;
		CHECK_OK(index_file_encode_v2(m, 3, &f));
		CHECK_ERR(index_file_decode(f.data, f.len, &out, &n), -EBADMSG);
	}
	buf_free(&f);
	buf_free(&v1);
	free(in);
}

/* test-index --write-corpus DIR: index files (versions 1 and 2) as fuzzer seeds. */
static int write_corpus(const char *dir)
{
	struct index_entry in[3];
	struct buf f = BUF_INIT;
	char path[4096];

	for (int i = 0; i < 3; i++)
		make_entry((uint64_t)i, &in[i]);
	for (int k = 0; k < 4; k++) {
		FILE *fp;
		int r = k < 2 ? index_file_encode(in, k % 2 ? 3 : 0, &f)
			      : index_file_encode_v2(in, k % 2 ? 3 : 0, &f);

		if (r < 0)
			return 1;
		snprintf(path, sizeof(path), "%s/index-%d", dir, k);
		fp = fopen(path, "wb");
		if (!fp || fwrite(f.data, 1, f.len, fp) != f.len || fclose(fp))
			return 1;
	}
	buf_free(&f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	test_million();
	test_duplicates();
	test_concurrent();
	test_file_roundtrip();
	test_file_corrupt();
	test_file_v2();
	TEST_MAIN_END();
}
