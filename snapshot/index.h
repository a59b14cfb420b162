/* The chunk index: where each chunk lives.
 *
 * On storage, `index/<id>` files are immutable lists of entries, one file per
 * snapshot written (and one per gc rewrite).  In memory, all of them are merged
 * into one hash table.  Layout of an index file (little-endian), version 1:
 *
 *   "HBIDX001" | entry * count | count:u32 | checksum:u64 (XXH3-64 of all before)
 *   entry: chunk[16] pack[16] offset:u32 length:u32 raw_length:u32 flags:u32
 *
 * Version 2 (repositories of format 2; half the size, since pack ids repeat
 * and offsets follow from lengths):
 *
 *   "HBIDX002" | count:u32 | raw_len:u32 | zstd_len:u32 | zstd frame of the
 *   body (raw_len bytes) | checksum:u64 (XXH3-64 of all before)
 *   body, entries sorted by pack then offset, column after column (v = varint,
 *   z = zigzag varint): npacks:v pack[16]*npacks | pack number:v * count |
 *   offset - end of the previous blob of the pack (or of the header):z * count |
 *   length:v * count | raw_length - length:z * count | flags:v * count |
 *   chunk[16] * count
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define INDEX_MAGIC "HBIDX001"
#define INDEX_MAGIC_V2 "HBIDX002"
#define INDEX_ENTRY_BYTES 48

struct index_entry {
	struct oid chunk;
	struct oid pack;
	uint32_t offset;
	uint32_t length;
	uint32_t raw_length;
	uint32_t flags;
};

/* A thread-safe hash table from chunk id to index_entry. */
struct chunk_index;

struct chunk_index *chunk_index_new(void);
void chunk_index_free(struct chunk_index *idx);
/* Insert; an id already present keeps its first entry.
 * @return 1 if inserted, 0 if already present, -ENOMEM. */
int chunk_index_add(struct chunk_index *idx, const struct index_entry *e);
/* @return 1 and a copy in *out if found, else 0. */
int chunk_index_lookup(struct chunk_index *idx, const struct oid *chunk, struct index_entry *out);
size_t chunk_index_count(struct chunk_index *idx);
/* Call fn for every entry (under the table's read lock: fn must not modify
 * idx).  A non-zero return from fn stops the walk and is returned. */
int chunk_index_foreach(struct chunk_index *idx, int (*fn)(const struct index_entry *e, void *arg),
			void *arg);

/* qsort order: by pack, then by offset inside it (a pack's blobs in the
 * order they are stored, so one pass reads each pack once). */
int index_entry_cmp_pack_offset(const void *a, const void *b);

/* Encode entries as a version 1 index file into out (replacing content). */
int index_file_encode(const struct index_entry *entries, size_t count, struct buf *out);
/* The same as a version 2 file (repositories of format 2). */
int index_file_encode_v2(const struct index_entry *entries, size_t count, struct buf *out);
/* Decode an index file of either version; *entries is malloc'd.  @return 0, -EBADMSG, -ENOMEM. */
int index_file_decode(const uint8_t *data, size_t len, struct index_entry **entries,
		      size_t *count);
