/* Content-defined chunking: determinism, bounds, locality of edits, and the
 * pinned boundaries that make the gear table part of the format. */
#include "snapshot/chunker.h"

#include <stdint.h>
#include <xxhash.h>

#include "test.h"

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return (a > b) - (a < b);
}

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(xorshift64(&seed) >> 24);
}

/* Cut all of data; returns the number of chunks, lengths in lens (if not NULL). */
static size_t cut_all(const struct chunker_params *p, const uint8_t *data, size_t len,
		      size_t *lens, size_t max_lens)
{
	size_t pos = 0, n = 0;

	while (pos < len) {
		size_t c = chunker_cut(p, data + pos, len - pos);

		if (c == 0 || c > len - pos)
			return (size_t)-1;
		if (lens && n < max_lens)
			lens[n] = c;
		n++;
		pos += c;
	}
	return n;
}

static void test_params(void)
{
	struct chunker_params p;

	CHECK_OK(chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES));
	CHECK(p.min_bytes == CHUNK_MIN_BYTES && p.avg_bytes == CHUNK_AVG_BYTES &&
	      p.max_bytes == CHUNK_MAX_BYTES);
	CHECK_ERR(chunker_params_init(&p, 64 * 1024, 64 * 1024, 256 * 1024), -EINVAL);
	CHECK_ERR(chunker_params_init(&p, 1024, 64 * 1024, 64 * 1024), -EINVAL);
	CHECK_ERR(chunker_params_init(&p, 1024, 60000, 256 * 1024), -EINVAL);
	CHECK_ERR(chunker_params_init(&p, 1024, 64 * 1024, (16u << 20) + 1), -EINVAL);
	CHECK_ERR(chunker_params_init(&p, 0, 128, 1024), -EINVAL);
	CHECK_OK(chunker_params_init(&p, 0, 256, 1024));
	CHECK_OK(chunker_params_init(&p, 1u << 20, 4u << 20, 16u << 20));
}

static void test_tiny(void)
{
	struct chunker_params p;
	uint8_t data[100];

	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	fill_random(data, sizeof(data), 7);
	CHECK(chunker_cut(&p, data, 0) == 0);
	CHECK(chunker_cut(&p, data, 1) == 1);
	CHECK(chunker_cut(&p, data, 100) == 100);
}

static void test_zero_and_bounds(void)
{
	struct chunker_params p;
	size_t len = 4u << 20, lens[64];
	uint8_t *data = calloc(1, len);
	size_t n;

	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	/* All zero: no content to cut on, every chunk is max_bytes. */
	n = cut_all(&p, data, len, lens, 64);
	CHECK(n == len / CHUNK_MAX_BYTES);
	for (size_t i = 0; i < n && i < 64; i++)
		CHECK(lens[i] == CHUNK_MAX_BYTES);
	/* Exactly min_bytes and min_bytes+1 of data. */
	CHECK(chunker_cut(&p, data, CHUNK_MIN_BYTES) == CHUNK_MIN_BYTES);
	CHECK(chunker_cut(&p, data, CHUNK_MIN_BYTES + 1) == CHUNK_MIN_BYTES + 1);
	free(data);
}

static void test_random_bounds(void)
{
	struct chunker_params p;
	size_t len = 16u << 20, total = 0, nmax = 0;
	uint8_t *data = malloc(len);
	size_t *lens = malloc(sizeof(*lens) * 4096);
	size_t n;

	fill_random(data, len, 42);
	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	n = cut_all(&p, data, len, lens, 4096);
	CHECK(n != (size_t)-1 && n < 4096);
	if (n == (size_t)-1 || n >= 4096)
		goto out;
	for (size_t i = 0; i < n; i++) {
		total += lens[i];
		if (i + 1 < n)
			CHECK(lens[i] >= CHUNK_MIN_BYTES);
		CHECK(lens[i] <= CHUNK_MAX_BYTES);
		nmax += lens[i] == CHUNK_MAX_BYTES;
	}
	CHECK(total == len);
	/* Normalized chunking keeps the mean near avg + min (the min is skipped). */
	CHECK(len / n > CHUNK_AVG_BYTES / 2 && len / n < 2 * CHUNK_AVG_BYTES);
	CHECK(nmax < n / 20);

	/* Deterministic: the same bytes cut the same way, also when the window
	 * handed in is longer than max_bytes. */
	for (size_t i = 0, pos = 0; i < n && i < 50; pos += lens[i], i++)
		CHECK(chunker_cut(&p, data + pos, len - pos) == lens[i]);

	/* Smaller parameters: bounds hold too. */
	chunker_params_init(&p, 512, 2048, 8192);
	n = cut_all(&p, data, 1u << 20, lens, 4096);
	CHECK(n != (size_t)-1 && n < 4096);
	for (size_t i = 0; n < 4096 && i < n; i++) {
		if (i + 1 < n)
			CHECK(lens[i] >= 512);
		CHECK(lens[i] <= 8192);
	}
out:
	free(lens);
	free(data);
}

/* The boundaries of a fixed input under the default parameters.  These are
 * part of the repository format: if this test fails, the gear table or the
 * masks changed and every existing repository would stop deduplicating. */
static void test_pinned_boundaries(void)
{
	static const size_t expect[] = {
		66572, 66830, 78416, 83723, 72653, 67777, 79091, 79634, 86698, 130323, 90822, 69357, 67716,
		71359, 68738, 117551, 90685, 101169, 80899, 124800, 71671, 67242, 79694, 84218, 69917, 29597,
	};
	struct chunker_params p;
	size_t len = 2u << 20, lens[64], n;
	uint8_t *data = malloc(len);

	fill_random(data, len, 2026);
	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	n = cut_all(&p, data, len, lens, 64);
	if (getenv("CHUNKER_PRINT_PINNED")) {
		for (size_t i = 0; i < n && i < 64; i++)
			printf("%zu, ", lens[i]);
		printf("\n");
	}
	CHECK(n == sizeof(expect) / sizeof(expect[0]));
	for (size_t i = 0; i < n && i < sizeof(expect) / sizeof(expect[0]); i++)
		CHECK(lens[i] == expect[i]);
	free(data);
}

/* Hashes of the chunks of data, sorted, for set comparisons. */
static size_t chunk_hashes(const struct chunker_params *p, const uint8_t *data, size_t len,
			   uint64_t *out, size_t max)
{
	size_t pos = 0, n = 0;

	while (pos < len && n < max) {
		size_t c = chunker_cut(p, data + pos, len - pos);

		out[n++] = XXH3_64bits(data + pos, c);
		pos += c;
	}
	qsort(out, n, sizeof(*out), cmp_u64);
	return n;
}

/* Chunks of x (sorted hashes) that are not chunks of y. */
static size_t count_missing(const uint64_t *x, size_t nx, const uint64_t *y, size_t ny)
{
	size_t missing = 0;

	for (size_t i = 0; i < nx; i++)
		missing += bsearch(&x[i], y, ny, sizeof(*y), cmp_u64) == NULL;
	return missing;
}

/* Insert 8 bytes into 30 MB of random data (in the middle, and at both
 * ends): only the one to three chunks around the edit change; every other
 * chunk has the same bytes as before. */
static void test_insertion_locality(void)
{
	struct chunker_params p;
	size_t len = 30u * 1000 * 1000;
	const size_t positions[] = { len / 2 + 12345, len / 3, 0, len - 100 };
	uint8_t *a = malloc(len), *b = malloc(len + 8);
	uint64_t *ha = malloc(sizeof(uint64_t) * 2048), *hb = malloc(sizeof(uint64_t) * 2048);
	size_t na, nb;

	fill_random(a, len, 99);
	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	na = chunk_hashes(&p, a, len, ha, 2048);
	CHECK(na > 300 && na < 2048);
	for (size_t k = 0; k < sizeof(positions) / sizeof(positions[0]); k++) {
		size_t at = positions[k], new_in_b, gone_from_a;

		memcpy(b, a, at);
		memcpy(b + at, "INSERTED", 8);
		memcpy(b + at + 8, a + at, len - at);
		nb = chunk_hashes(&p, b, len + 8, hb, 2048);
		new_in_b = count_missing(hb, nb, ha, na);
		gone_from_a = count_missing(ha, na, hb, nb);
		CHECK(new_in_b >= 1 && new_in_b <= 3);
		CHECK(gone_from_a >= 1 && gone_from_a <= 3);
	}
	free(ha);
	free(hb);
	free(a);
	free(b);
}

int main(void)
{
	test_params();
	test_tiny();
	test_zero_and_bounds();
	test_random_bounds();
	test_pinned_boundaries();
	test_insertion_locality();
	TEST_MAIN_END();
}
