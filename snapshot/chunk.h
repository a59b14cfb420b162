/* Chunk encoding: compression on the way in, decompression and verification
 * on the way out.  Every chunk read anywhere goes through chunk_decode(), so a
 * flipped bit in storage can never be handed to a user as file data.
 *
 * A chunk is stored in one of three ways, told apart by its flags (kept in
 * the pack trailer and the index):
 *   0                  a zstd frame (with magic and content size);
 *   CHUNK_FLAG_RAW     the plain bytes (zstd did not make them smaller);
 *   CHUNK_FLAG_DICT    a zstd frame without magic, content size or dictionary
 *                      id, compressed with the repository dictionary whose
 *                      number is flags >> CHUNK_DICT_SHIFT (24 bits, never 0;
 *                      the object dicts/<number as 6 hex digits>, dict.h).
 * Small chunks compress ~20% better with a dictionary trained on the
 * repository's own small chunks; the bytes saved per frame header count too
 * when there are tens of thousands of them.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define CHUNK_FLAG_RAW 0x1u  /* stored uncompressed (zstd did not make it smaller) */
#define CHUNK_FLAG_DICT 0x2u /* compressed with a dictionary, see above */
#define CHUNK_DICT_SHIFT 8
#define CHUNK_DICT_NUMBER_MAX 0xffffffu
/* Chunks up to this size are compressed with the dictionary when there is one. */
#define CHUNK_DICT_MAX_RAW_BYTES (32u << 10)

/* The dictionary number a chunk needs (0: none). */
static inline uint32_t chunk_flags_dict(uint32_t flags)
{
	return (flags & CHUNK_FLAG_DICT) ? flags >> CHUNK_DICT_SHIFT : 0;
}

/* Flags a reader understands: 0, CHUNK_FLAG_RAW, or CHUNK_FLAG_DICT with a
 * non-zero number. */
static inline bool chunk_flags_valid(uint32_t flags)
{
	if (flags & CHUNK_FLAG_DICT)
		return (flags & ((1u << CHUNK_DICT_SHIFT) - 1)) == CHUNK_FLAG_DICT &&
		       (flags >> CHUNK_DICT_SHIFT) != 0;
	return (flags & ~CHUNK_FLAG_RAW) == 0;
}

/* A loaded dictionary: its number and the zstd tables built from it once
 * (building them costs far more than compressing a small chunk). */
struct chunk_dict;

/* Build from the zstd dictionary bytes (copied).  level: for compression.
 * @return 0, -ENOMEM, -EBADMSG (zstd refuses the bytes; with a message). */
int chunk_dict_new(uint32_t number, const void *dict, size_t len, int level,
		   struct chunk_dict **out);
void chunk_dict_free(struct chunk_dict *d);
uint32_t chunk_dict_number(const struct chunk_dict *d);

/* Compress raw bytes at zstd level `level` into blob (replacing its content).
 * With dict (may be NULL), chunks up to CHUNK_DICT_MAX_RAW_BYTES use it (at
 * the dictionary's level).  Sets *flags (see above).  @return 0 or -ENOMEM. */
int chunk_encode(int level, const struct chunk_dict *dict, const void *raw, size_t raw_len,
		 struct buf *blob, uint32_t *flags);

/* Decode a stored blob into out (replacing its content), check its length is
 * raw_len and its keyed hash is id.  A dictionary the flags name is found
 * through the resolver registered for key (chunk_dict_resolver_add), so that
 * every reader holding a repository's key decodes every chunk.
 * @return 0, -EBADMSG for any corruption or a missing or damaged dictionary
 * (with a message naming the chunk), -ENOMEM. */
int chunk_decode(const struct repo_key *key, const struct oid *id, const void *blob,
		 size_t blob_len, uint32_t raw_len, uint32_t flags, struct buf *out);
/* The same with the dictionary given (NULL: none; it must be the one the
 * flags name). */
int chunk_decode_dict(const struct repo_key *key, const struct chunk_dict *dict,
		      const struct oid *id, const void *blob, size_t blob_len, uint32_t raw_len,
		      uint32_t flags, struct buf *out);

/* Where chunk_decode finds dictionary `number` for chunks of the repository
 * whose key is at `key` (the address is what is matched: the repository
 * registers its own key while it is open).  *out is valid until removal.
 * @return 0, or -errno with a message. */
typedef int (*chunk_dict_resolver)(void *ctx, uint32_t number, const struct chunk_dict **out);
int chunk_dict_resolver_add(const struct repo_key *key, chunk_dict_resolver fn, void *ctx);
void chunk_dict_resolver_remove(const struct repo_key *key);
