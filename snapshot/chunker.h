/* Content-defined chunking (FastCDC with normalized chunking).
 *
 * Boundaries depend only on the bytes near them, so an edit in the middle of a
 * file changes the chunks around the edit and no others.  The function is
 * stateless: callers hand it a window starting at the current chunk start.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define CHUNK_MIN_BYTES (16u * 1024)
#define CHUNK_AVG_BYTES (64u * 1024)
#define CHUNK_MAX_BYTES (256u * 1024)

struct chunker_params {
	uint32_t min_bytes;
	uint32_t avg_bytes; /* a power of two */
	uint32_t max_bytes;
};

/* Defaults above.  @return 0 or -EINVAL for unusable parameters (not
 * min < avg < max, avg not a power of two or below 256, max above 16 MiB).
 * The boundaries for given parameters are fixed forever (the gear table is
 * part of the repository format). */
int chunker_params_init(struct chunker_params *p, uint32_t min_bytes, uint32_t avg_bytes,
			uint32_t max_bytes);

/* Length of the chunk that starts at data[0].  The caller must pass at least
 * max_bytes of data unless the file ends within the window, in which case
 * passing the rest of the file is correct (the last chunk may be short).
 * @return a length in [1, len], or 0 when len is 0. */
size_t chunker_cut(const struct chunker_params *p, const uint8_t *data, size_t len);
