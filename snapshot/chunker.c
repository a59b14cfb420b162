/* FastCDC content-defined chunking with normalized chunking.
 *
 * A gear hash (h = (h << 1) + GEAR[byte]) is rolled over the bytes after the
 * first min_bytes of a chunk.  Bit k of h depends only on the last k + 1
 * bytes, so the masks test the top bits, which see a 64-byte window.  Before
 * the average size a mask with two more bits (harder to hit) is used, after
 * it one with two fewer bits (easier): this pulls chunk sizes toward the
 * average (FastCDC's "normalized chunking", level 2).
 *
 * The gear table is part of the repository format: chunk boundaries, and so
 * deduplication against every chunk already stored, depend on it.  It is
 * generated from splitmix64 with a fixed seed and must never change; the unit
 * test pins known boundaries so that any change is caught.
 */
#include "snapshot/chunker.h"

#include <errno.h>
#include <pthread.h>

#define CHUNKER_MAX_LIMIT_BYTES (16u << 20)
#define CHUNKER_MIN_AVG_BYTES 256u /* the easy mask needs a few bits left */
#define GEAR_SEED 0x6869626572626f78ull /* "hiberbox" */
#define NORMALIZATION_BITS 2

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void gear_init(void)
{
	uint64_t state = GEAR_SEED;

	for (int i = 0; i < 256; i++)
		gear[i] = splitmix64(&state);
}

static unsigned log2_u32(uint32_t v)
{
	unsigned n = 0;

	while (v >>= 1)
		n++;
	return n;
}

/* `bits` ones in the top of a 64-bit word. */
static uint64_t top_mask(unsigned bits)
{
	return bits == 0 ? 0 : ~0ull << (64 - bits);
}

int chunker_params_init(struct chunker_params *p, uint32_t min_bytes, uint32_t avg_bytes,
			uint32_t max_bytes)
{
	if (!(min_bytes < avg_bytes && avg_bytes < max_bytes))
		return -EINVAL;
	if (avg_bytes & (avg_bytes - 1) || avg_bytes < CHUNKER_MIN_AVG_BYTES)
		return -EINVAL;
	if (max_bytes > CHUNKER_MAX_LIMIT_BYTES)
		return -EINVAL;
	p->min_bytes = min_bytes;
	p->avg_bytes = avg_bytes;
	p->max_bytes = max_bytes;
	pthread_once(&gear_once, gear_init);
	return 0;
}

size_t chunker_cut(const struct chunker_params *p, const uint8_t *data, size_t len)
{
	unsigned bits = log2_u32(p->avg_bytes);
	uint64_t mask_hard = top_mask(bits + NORMALIZATION_BITS);
	uint64_t mask_easy = top_mask(bits - NORMALIZATION_BITS);
	size_t end = len < p->max_bytes ? len : p->max_bytes;
	size_t normal = end < p->avg_bytes ? end : p->avg_bytes;
	size_t i = p->min_bytes;
	uint64_t h = 0;

	if (len <= p->min_bytes)
		return len;
	/* Callers normally went through chunker_params_init(); this is cheap. */
	pthread_once(&gear_once, gear_init);
	for (; i < normal; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & mask_hard))
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & mask_easy))
			return i + 1;
	}
	return end;
}
