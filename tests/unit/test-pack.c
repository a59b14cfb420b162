/* Packs: roundtrip through writer and parser, and refusal of every
 * truncation, corruption and malformed layout. */
#include "snapshot/pack.h"

#include <xxhash.h>

#include "snapshot/chunk.h"
#include "test.h"

static struct repo_key key;

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A few chunks: compressible and random, of assorted sizes. */
#define NCHUNKS 6
static const size_t chunk_sizes[NCHUNKS] = { 1000, 5000, 1, 0, 3000, 700 };
static uint8_t *chunk_data[NCHUNKS];
static struct oid chunk_ids[NCHUNKS];

static void make_chunks(void)
{
	uint64_t s = 11;

	for (int i = 0; i < NCHUNKS; i++) {
		chunk_data[i] = malloc(chunk_sizes[i] + 1);
		for (size_t k = 0; k < chunk_sizes[i]; k++)
			chunk_data[i][k] = i % 2 ? (uint8_t)xorshift64(&s) : (uint8_t)("abcab"[k % 5]);
		oid_compute(&key, chunk_data[i], chunk_sizes[i], &chunk_ids[i]);
	}
}

static void build_pack(struct pack_writer *w, struct buf *pack, struct pack_entry **e, size_t *n)
{
	struct buf blob = BUF_INIT;

	for (int i = 0; i < NCHUNKS; i++) {
		uint32_t flags;

		CHECK_OK(chunk_encode(3, NULL, chunk_data[i], chunk_sizes[i], &blob, &flags));
		CHECK_OK(pack_writer_add(w, &chunk_ids[i], blob.data, (uint32_t)blob.len,
					 (uint32_t)chunk_sizes[i], flags));
	}
	buf_free(&blob);
	CHECK_OK(pack_writer_finish(w, pack, e, n));
}

/* Parse a whole pack as a reader would: footer first, then the trailer. */
static int parse_whole(const uint8_t *p, size_t len, struct pack_entry **e, size_t *n)
{
	uint32_t count, eb;
	int r;

	*e = NULL;
	*n = 0;
	if (len < PACK_FOOTER_BYTES)
		return -EBADMSG;
	r = pack_footer_parse(p + len - PACK_FOOTER_BYTES, len, &count, &eb);
	if (r < 0)
		return r;
	r = pack_trailer_parse(p + len - PACK_FOOTER_BYTES - eb, eb + PACK_FOOTER_BYTES, len, e, n);
	if (r == 0)
		CHECK(*n == count);
	return r;
}

/* Decode every chunk of a parsed pack; returns the number that verify. */
static size_t decode_all(const uint8_t *p, const struct pack_entry *e, size_t n)
{
	struct buf out = BUF_INIT;
	size_t good = 0;

	for (size_t i = 0; i < n; i++)
		good += chunk_decode(&key, &e[i].id, p + e[i].offset, e[i].length, e[i].raw_length,
				     e[i].flags, &out) == 0;
	buf_free(&out);
	return good;
}

static void test_roundtrip(void)
{
	struct pack_writer *w = pack_writer_new();
	struct buf pack = BUF_INIT;
	struct pack_entry *e, *pe;
	size_t n, pn;

	CHECK(pack_writer_count(w) == 0);
	CHECK(pack_writer_bytes(w) == PACK_HEADER_BYTES);
	build_pack(w, &pack, &e, &n);
	CHECK(n == NCHUNKS);
	CHECK(pack_writer_count(w) == 0); /* reset for the next pack */
	CHECK(!memcmp(pack.data, PACK_MAGIC, 8));
	CHECK(!memcmp(pack.data + pack.len - 8, PACK_END_MAGIC, 8));
	CHECK_OK(parse_whole(pack.data, pack.len, &pe, &pn));
	CHECK(pn == n && pe && !memcmp(pe, e, n * sizeof(*e)));
	CHECK(decode_all(pack.data, pe, pn) == NCHUNKS);
	for (size_t i = 0; i < n; i++)
		CHECK(oid_equal(&e[i].id, &chunk_ids[i]));
	free(pe);
	free(e);

	/* The writer makes a second, identical pack after finish. */
	{
		struct buf pack2 = BUF_INIT;

		build_pack(w, &pack2, &e, &n);
		CHECK(pack2.len == pack.len && !memcmp(pack2.data, pack.data, pack.len));
		free(e);
		buf_free(&pack2);
	}
	/* An empty pack is valid. */
	CHECK_OK(pack_writer_finish(w, &pack, &e, &n));
	CHECK(n == 0 && pack.len == PACK_HEADER_BYTES + PACK_FOOTER_BYTES);
	CHECK_OK(parse_whole(pack.data, pack.len, &pe, &pn));
	CHECK(pn == 0);
	free(pe);
	free(e);
	pack_writer_free(w);
	pack_writer_free(NULL);
	buf_free(&pack);
}

static void test_truncation(void)
{
	struct pack_writer *w = pack_writer_new();
	struct buf pack = BUF_INIT;
	struct pack_entry *e, *pe;
	size_t n, pn;
	uint32_t count, eb;

	build_pack(w, &pack, &e, &n);
	/* The pack cut short at every length. */
	for (size_t len = 0; len < pack.len; len++) {
		CHECK_ERR(parse_whole(pack.data, len, &pe, &pn), -EBADMSG);
		CHECK(pe == NULL && pn == 0);
	}
	/* The right footer, but fewer trailer bytes than it asks for. */
	CHECK_OK(pack_footer_parse(pack.data + pack.len - PACK_FOOTER_BYTES, pack.len, &count, &eb));
	CHECK(count == NCHUNKS && eb == NCHUNKS * PACK_ENTRY_BYTES);
	for (size_t tl = 0; tl < eb + PACK_FOOTER_BYTES; tl++)
		CHECK_ERR(pack_trailer_parse(pack.data + pack.len - tl, tl, pack.len, &pe, &pn),
			  -EBADMSG);
	/* A trailer with one byte too many in front. */
	CHECK_ERR(pack_trailer_parse(pack.data + pack.len - eb - PACK_FOOTER_BYTES - 1,
				     eb + PACK_FOOTER_BYTES + 1, pack.len, &pe, &pn), -EBADMSG);
	/* A pack claimed larger or smaller than it is. */
	CHECK_ERR(pack_footer_parse(pack.data + pack.len - PACK_FOOTER_BYTES,
				    (uint64_t)PACK_MAX_BYTES + 1, &count, &eb), -EBADMSG);
	CHECK_ERR(pack_footer_parse(pack.data + pack.len - PACK_FOOTER_BYTES, 31, &count, &eb),
		  -EBADMSG);
	/* Blobs must lie within the stated size: a size that cuts the blob
	 * area short is refused even with a valid trailer. */
	CHECK_ERR(pack_trailer_parse(pack.data + pack.len - eb - PACK_FOOTER_BYTES,
				     eb + PACK_FOOTER_BYTES, pack.len - 1, &pe, &pn), -EBADMSG);
	free(e);
	pack_writer_free(w);
	buf_free(&pack);
}

/* Flip random bytes anywhere: either the trailer refuses the pack, or the
 * flip was in a blob and chunk_decode refuses that chunk (or, for the rare
 * bits zstd ignores, decodes the original bytes). */
static void test_flips(void)
{
	struct pack_writer *w = pack_writer_new();
	struct buf pack = BUF_INIT;
	struct pack_entry *e, *pe;
	size_t n, pn, blob_end;
	uint64_t s = 5;
	int refused_trailer = 0, refused_chunk = 0;

	build_pack(w, &pack, &e, &n);
	blob_end = pack.len - PACK_FOOTER_BYTES - n * PACK_ENTRY_BYTES;
	/* Every byte of the trailer, each bit. */
	for (size_t i = blob_end; i < pack.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			pack.data[i] ^= (uint8_t)(1u << bit);
			CHECK_ERR(parse_whole(pack.data, pack.len, &pe, &pn), -EBADMSG);
			pack.data[i] ^= (uint8_t)(1u << bit);
			refused_trailer++;
		}
	}
	/* Random flips over the whole pack. */
	for (int k = 0; k < 2000; k++) {
		size_t i = xorshift64(&s) % pack.len;
		uint8_t x = (uint8_t)(xorshift64(&s) | 1);
		int r;

		pack.data[i] ^= x;
		r = parse_whole(pack.data, pack.len, &pe, &pn);
		if (i >= blob_end) {
			CHECK(r == -EBADMSG);
		} else if (i < PACK_HEADER_BYTES) {
			/* The header magic is for whoever reads the whole file;
			 * the trailer does not cover it. */
			CHECK(r == 0);
		} else {
			CHECK(r == 0);
			if (r == 0) {
				struct buf out = BUF_INIT;

				for (size_t c = 0; c < pn; c++) {
					int d;

					if (i < pe[c].offset || i >= pe[c].offset + pe[c].length)
						continue;
					d = chunk_decode(&key, &pe[c].id, pack.data + pe[c].offset,
							 pe[c].length, pe[c].raw_length, pe[c].flags,
							 &out);
					if (d == -EBADMSG)
						refused_chunk++;
					else
						CHECK(d == 0 && out.len == chunk_sizes[c] &&
						      !memcmp(out.data, chunk_data[c], out.len));
				}
				buf_free(&out);
			}
		}
		free(pe);
		pack.data[i] ^= x;
	}
	CHECK(refused_trailer > 0 && refused_chunk > 1000);
	free(e);
	pack_writer_free(w);
	buf_free(&pack);
}

/* Build a pack by hand from a list of entries, with a correct checksum, so
 * that each layout rule is tested alone. */
static void craft(struct buf *p, size_t blob_bytes, const struct pack_entry *e, size_t n,
		  uint32_t count, uint32_t eb)
{
	uint8_t *q;
	size_t table;

	buf_reset(p);
	buf_append(p, PACK_MAGIC, 8);
	for (size_t i = 0; i < blob_bytes; i++)
		buf_append(p, "x", 1);
	table = p->len;
	for (size_t i = 0; i < n; i++) {
		uint8_t raw[PACK_ENTRY_BYTES];

		memcpy(raw, e[i].id.b, 16);
		put_le32(raw + 16, e[i].offset);
		put_le32(raw + 20, e[i].length);
		put_le32(raw + 24, e[i].raw_length);
		put_le32(raw + 28, e[i].flags);
		buf_append(p, raw, sizeof(raw));
	}
	buf_reserve(p, PACK_FOOTER_BYTES);
	q = p->data + p->len;
	put_le32(q, count);
	put_le32(q + 4, eb);
	put_le64(q + 8, XXH3_64bits(p->data + table, p->len - table + 4));
	memcpy(q + 16, PACK_END_MAGIC, 8);
	p->len += PACK_FOOTER_BYTES;
}

static void test_malformed(void)
{
	struct buf p = BUF_INIT;
	struct pack_entry e[3], *pe;
	size_t pn;

	memset(e, 0, sizeof(e));
	e[0] = (struct pack_entry){ .offset = 8, .length = 10, .raw_length = 20 };
	e[1] = (struct pack_entry){ .offset = 18, .length = 10, .raw_length = 20 };
	e[2] = (struct pack_entry){ .offset = 28, .length = 2, .raw_length = 2,
				    .flags = CHUNK_FLAG_RAW };
	craft(&p, 30, e, 3, 3, 96);
	CHECK_OK(parse_whole(p.data, p.len, &pe, &pn));
	CHECK(pn == 3);
	free(pe);
	/* An empty blob covers no byte: fine anywhere in the blob area. */
	{
		struct pack_entry r[3] = { e[0], e[1], e[2] };

		r[1].offset = 12;
		r[1].length = r[1].raw_length = 0;
		r[1].flags = CHUNK_FLAG_RAW;
		craft(&p, 30, r, 3, 3, 96);
		CHECK_OK(parse_whole(p.data, p.len, &pe, &pn));
		free(pe);
		r[1].offset = 38;
		craft(&p, 30, r, 3, 3, 96);
		CHECK_OK(parse_whole(p.data, p.len, &pe, &pn));
		free(pe);
		r[1].offset = 39;
		craft(&p, 30, r, 3, 3, 96);
		CHECK_ERR(parse_whole(p.data, p.len, &pe, &pn), -EBADMSG);
	}
	/* Out of order but not overlapping: fine. */
	{
		struct pack_entry r[3] = { e[2], e[0], e[1] };

		craft(&p, 30, r, 3, 3, 96);
		CHECK_OK(parse_whole(p.data, p.len, &pe, &pn));
		free(pe);
	}

#define REFUSE(mod, count, eb)                                                              \
	do {                                                                                \
		struct pack_entry m[3] = { e[0], e[1], e[2] };                              \
		mod;                                                                        \
		craft(&p, 30, m, 3, count, eb);                                             \
		CHECK_ERR(parse_whole(p.data, p.len, &pe, &pn), -EBADMSG);                   \
		CHECK(pe == NULL);                                                          \
	} while (0)

	REFUSE((void)0, 3, 95);                       /* entries_bytes != count * 32 */
	REFUSE((void)0, 4, 128);                      /* count larger than the table */
	REFUSE((void)0, 2, 64);                       /* count smaller than the table */
	REFUSE((void)0, 1000000, 32000000);           /* count too large for the size */
	REFUSE((void)0, 0x80000000u, 0);              /* count * 32 wraps in 32 bits */
	REFUSE(m[1].offset = 17, 3, 96);              /* overlaps blob 0 */
	REFUSE((m[1].offset = 12, m[1].length = 7), 3, 96); /* inside blob 0 */
	REFUSE((m[1].offset = 38, m[1].length = 1), 3, 96); /* starts at the table */
	REFUSE(m[2].length = 3, 3, 96);               /* past the blob area */
	REFUSE(m[0].offset = 4, 3, 96);               /* inside the header */
	REFUSE(m[1].offset = 0xfffffff0u, 3, 96);     /* offset + length wraps */
	REFUSE(m[1].length = 0xfffffff0u, 3, 96);
	REFUSE(m[0].flags = 0x80, 3, 96);             /* unknown flag */
	REFUSE(m[2].raw_length = 3, 3, 96);           /* raw blob of the wrong size */
	{
		struct pack_entry r[3] = { e[2], e[1], e[0] };

		r[0].offset = 9; /* unsorted and overlapping */
		craft(&p, 30, r, 3, 3, 96);
		CHECK_ERR(parse_whole(p.data, p.len, &pe, &pn), -EBADMSG);
	}
	/* Bad end magic, bad checksum. */
	craft(&p, 30, e, 3, 3, 96);
	p.data[p.len - 1] = '2';
	CHECK_ERR(parse_whole(p.data, p.len, &pe, &pn), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "magic") != NULL);
	craft(&p, 30, e, 3, 3, 96);
	p.data[p.len - 13] ^= 1;
	CHECK_ERR(parse_whole(p.data, p.len, &pe, &pn), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "checksum") != NULL);
	buf_free(&p);
#undef REFUSE
}

/* A small fuzzer that runs in CI: mutate the trailer of a valid pack, make
 * the checksum valid again, and check that whatever parses keeps its
 * promises (blobs inside the blob area, not overlapping). */
static void test_mutated_trailers(void)
{
	struct pack_writer *w = pack_writer_new();
	struct buf pack = BUF_INIT;
	struct pack_entry *e, *pe;
	size_t n, pn, blob_end, parsed = 0, broken = 0;
	uint64_t s = 123;

	build_pack(w, &pack, &e, &n);
	blob_end = pack.len - PACK_FOOTER_BYTES - n * PACK_ENTRY_BYTES;
	for (int k = 0; k < 20000; k++) {
		uint8_t *copy = malloc(pack.len);
		uint8_t *footer = copy + pack.len - PACK_FOOTER_BYTES;
		int flips = 1 + (int)(xorshift64(&s) % 4);
		uint64_t eb;

		memcpy(copy, pack.data, pack.len);
		for (int f = 0; f < flips; f++) {
			size_t i = blob_end + xorshift64(&s) % (pack.len - blob_end - 8);
			uint64_t how = xorshift64(&s);

			/* Small integers are where the interesting cases live. */
			if (how % 3 == 0)
				copy[i] = (uint8_t)(how >> 8) % 4;
			else
				copy[i] ^= (uint8_t)(how >> 8);
		}
		eb = get_le32(footer + 4);
		if (eb <= pack.len - PACK_FOOTER_BYTES)
			put_le64(footer + 8, XXH3_64bits(footer - eb, (size_t)eb + 4));
		if (parse_whole(copy, pack.len, &pe, &pn) == 0) {
			uint64_t area_end = pack.len - PACK_FOOTER_BYTES - (uint64_t)pn * PACK_ENTRY_BYTES;

			parsed++;
			for (size_t i = 0; i < pn; i++) {
				if (pe[i].offset < PACK_HEADER_BYTES ||
				    (uint64_t)pe[i].offset + pe[i].length > area_end)
					broken++;
				for (size_t j = 0; j < i; j++)
					if (pe[i].length && pe[j].length &&
					    pe[i].offset < pe[j].offset + pe[j].length &&
					    pe[j].offset < pe[i].offset + pe[i].length)
						broken++;
			}
			free(pe);
		}
		free(copy);
	}
	CHECK(broken == 0);
	CHECK(parsed > 0); /* some mutations (ids, raw lengths) are legal */
	free(e);
	pack_writer_free(w);
	buf_free(&pack);
}

static void test_size_limit(void)
{
	struct pack_writer *w = pack_writer_new();
	size_t big = 16u << 20;
	uint8_t *blob = calloc(1, big);
	struct oid id = { { 1 } };
	int r = 0, added = 0;

	while ((r = pack_writer_add(w, &id, blob, (uint32_t)big, (uint32_t)big,
				    CHUNK_FLAG_RAW)) == 0)
		added++;
	CHECK_ERR(r, -EFBIG);
	CHECK(added == 3);
	CHECK(pack_writer_count(w) == 3);
	CHECK(pack_writer_bytes(w) == PACK_HEADER_BYTES + 3 * big);
	/* A small chunk still fits after the refusal. */
	CHECK_OK(pack_writer_add(w, &id, blob, 100, 100, CHUNK_FLAG_RAW));
	free(blob);
	pack_writer_free(w);
}

/* Writes a few valid packs as seeds for the fuzzer when asked to:
 * test-pack --write-corpus DIR */
static int write_corpus(const char *dir)
{
	struct pack_writer *w = pack_writer_new();
	struct buf pack = BUF_INIT;
	struct pack_entry *e;
	size_t n;
	char path[4096];

	for (int k = 0; k < 3; k++) {
		FILE *f;

		if (k == 0)
			build_pack(w, &pack, &e, &n);
		else if (k == 1)
			CHECK_OK(pack_writer_finish(w, &pack, &e, &n));
		else {
			CHECK_OK(pack_writer_add(w, &chunk_ids[0], chunk_data[0], 1000, 1000,
						 CHUNK_FLAG_RAW));
			CHECK_OK(pack_writer_finish(w, &pack, &e, &n));
		}
		free(e);
		snprintf(path, sizeof(path), "%s/pack-%d", dir, k);
		f = fopen(path, "wb");
		if (!f || fwrite(pack.data, 1, pack.len, f) != pack.len || fclose(f))
			return 1;
	}
	pack_writer_free(w);
	buf_free(&pack);
	return 0;
}

int main(int argc, char **argv)
{
	for (int i = 0; i < REPO_KEY_BYTES; i++)
		key.secret[i] = (uint8_t)(i * 13 + 5);
	make_chunks();
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	test_roundtrip();
	test_truncation();
	test_flips();
	test_malformed();
	test_mutated_trailers();
	test_size_limit();
	for (int i = 0; i < NCHUNKS; i++)
		free(chunk_data[i]);
	TEST_MAIN_END();
}
