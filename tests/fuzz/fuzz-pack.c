/* Fuzz target: any bytes as a whole pack file and as an index file.
 *
 * The parsers must refuse anything malformed with an error, never read out
 * of bounds; every chunk of a pack that does parse is decoded too, so zstd
 * frames from outside get the same treatment.  A random input almost never
 * carries a valid checksum, so each input is also tried with its checksum
 * recomputed: that lets the fuzzer reach the checks behind it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "snapshot/chunk.h"
#include "snapshot/index.h"
#include "snapshot/pack.h"
#include "util/error.h"

static void fuzz_pack(const uint8_t *data, size_t size)
{
	static const struct repo_key key = { { 1, 2, 3 } };
	struct pack_entry *entries = NULL;
	struct buf out = BUF_INIT;
	uint32_t count, entries_bytes;
	size_t n;

	if (size < PACK_FOOTER_BYTES ||
	    pack_footer_parse(data + size - PACK_FOOTER_BYTES, size, &count, &entries_bytes) < 0)
		return;
	if (pack_trailer_parse(data + size - PACK_FOOTER_BYTES - entries_bytes,
			       (size_t)entries_bytes + PACK_FOOTER_BYTES, size, &entries, &n) < 0)
		return;
	if (n != count)
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct pack_entry *e = &entries[i];

		if ((uint64_t)e->offset + e->length > size)
			abort(); /* the parser promised this cannot happen */
		chunk_decode(&key, &e->id, data + e->offset, e->length, e->raw_length, e->flags,
			     &out);
	}
	buf_free(&out);
	free(entries);
}

static void fuzz_index(const uint8_t *data, size_t size)
{
	struct index_entry *entries = NULL;
	size_t n;

	/* A file that decodes has the entries its header or size promises. */
	if (index_file_decode(data, size, &entries, &n) == 0) {
		if (size >= 8 && !memcmp(data, INDEX_MAGIC_V2, 8)) {
			if (n != get_le32(data + 8))
				abort();
		} else if ((size_t)n * INDEX_ENTRY_BYTES + 20 != size) {
			abort();
		}
	}
	free(entries);
}

/* A copy of data with the pack footer's or the index file's checksum made
 * valid for whatever precedes it.  NULL when there is nothing to fix. */
static uint8_t *resealed(const uint8_t *data, size_t size, int as_index)
{
	uint8_t *copy;

	if (size < PACK_FOOTER_BYTES)
		return NULL;
	copy = malloc(size);
	if (!copy)
		return NULL;
	memcpy(copy, data, size);
	if (as_index) {
		put_le64(copy + size - 8, XXH3_64bits(copy, size - 8));
	} else {
		uint8_t *footer = copy + size - PACK_FOOTER_BYTES;
		uint64_t eb = get_le32(footer + 4);

		if (eb > size - PACK_FOOTER_BYTES) {
			free(copy);
			return NULL;
		}
		put_le64(footer + 8, XXH3_64bits(footer - eb, (size_t)eb + 4));
	}
	return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	fuzz_pack(data, size);
	fuzz_index(data, size);
	copy = resealed(data, size, 0);
	if (copy) {
		fuzz_pack(copy, size);
		free(copy);
	}
	copy = resealed(data, size, 1);
	if (copy) {
		fuzz_index(copy, size);
		free(copy);
	}
	hb_err_clear();
	return 0;
}
