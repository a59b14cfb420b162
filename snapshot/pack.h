/* Pack files: many encoded chunks in one immutable object.
 *
 * A wake fetches dozens of packs (or ranges inside them), not tens of
 * thousands of chunk objects.  Layout (all integers little-endian):
 *
 *   "HBPACK01"                      8-byte magic
 *   blob 0 | blob 1 | ...           encoded chunks (see chunk.h), back to back
 *   entry 0 | entry 1 | ...         PACK_ENTRY_BYTES each: id[16] offset:u32
 *                                   length:u32 raw_length:u32 flags:u32
 *   count:u32 entries_bytes:u32 checksum:u64 "HBPKEND1"   (the footer)
 *
 * checksum is XXH3-64 of the entries and the count.  A pack's name is the
 * keyed hash of its whole content (oid_compute).  Readers of one chunk need
 * only its (offset, length), which the index provides; the trailer lets
 * `check` and `gc` rebuild or verify the index from the packs alone.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define PACK_MAGIC "HBPACK01"
#define PACK_END_MAGIC "HBPKEND1"
#define PACK_HEADER_BYTES 8
#define PACK_ENTRY_BYTES 32
#define PACK_FOOTER_BYTES 24
#define PACK_TARGET_BYTES (4u << 20)   /* close a pack once it holds this much */
#define PACK_MAX_BYTES (64u << 20)     /* readers refuse anything larger */
#define PACK_MAX_ENTRIES (PACK_MAX_BYTES / 16)

struct pack_entry {
	struct oid id;
	uint32_t offset; /* of the blob, from the start of the pack */
	uint32_t length; /* stored (encoded) bytes */
	uint32_t raw_length;
	uint32_t flags;  /* CHUNK_FLAG_* */
};

struct pack_writer;

struct pack_writer *pack_writer_new(void);
/* Append one encoded chunk.  Not thread-safe: callers serialize.
 * @return 0, -ENOMEM, -EFBIG when the pack would pass PACK_MAX_BYTES. */
int pack_writer_add(struct pack_writer *w, const struct oid *id, const void *blob,
		    uint32_t blob_len, uint32_t raw_len, uint32_t flags);
/* Bytes the finished pack would have so far (header + blobs). */
size_t pack_writer_bytes(const struct pack_writer *w);
size_t pack_writer_count(const struct pack_writer *w);
/* Append trailer and footer; hand out the whole pack's bytes and its entries
 * (caller frees *entries) and reset the writer for the next pack.
 * @return 0 or -ENOMEM. */
int pack_writer_finish(struct pack_writer *w, struct buf *pack, struct pack_entry **entries,
		       size_t *count);
void pack_writer_free(struct pack_writer *w);

/* Parse the footer (the last PACK_FOOTER_BYTES of a pack of pack_size bytes).
 * Gives the count and the byte length of the entry table that precedes it.
 * @return 0 or -EBADMSG (with a message). */
int pack_footer_parse(const uint8_t footer[PACK_FOOTER_BYTES], uint64_t pack_size,
		      uint32_t *count, uint32_t *entries_bytes);
/* Parse and verify the trailer: `tail` holds the entry table followed by the
 * footer (entries_bytes + PACK_FOOTER_BYTES bytes, the end of the pack).
 * Checks the checksum, that every blob lies inside the blob area and that
 * blobs do not overlap.  *entries is malloc'd.  @return 0, -EBADMSG, -ENOMEM. */
int pack_trailer_parse(const uint8_t *tail, size_t tail_len, uint64_t pack_size,
		       struct pack_entry **entries, size_t *count);
