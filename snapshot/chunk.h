/* Chunk encoding: compression on the way in, decompression and verification
 * on the way out.  Every chunk read anywhere goes through chunk_decode(), so a
 * flipped bit in storage can never be handed to a user as file data.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define CHUNK_FLAG_RAW 0x1u /* stored uncompressed (zstd did not make it smaller) */

/* Compress raw bytes at zstd level `level` into blob (replacing its content).
 * Sets *flags to 0 or CHUNK_FLAG_RAW.  @return 0 or -ENOMEM. */
int chunk_encode(int level, const void *raw, size_t raw_len, struct buf *blob, uint32_t *flags);

/* Decode a stored blob into out (replacing its content), check its length is
 * raw_len and its keyed hash is id.  @return 0, -EBADMSG for any corruption
 * (with a message naming the chunk), -ENOMEM. */
int chunk_decode(const struct repo_key *key, const struct oid *id, const void *blob,
		 size_t blob_len, uint32_t raw_len, uint32_t flags, struct buf *out);
