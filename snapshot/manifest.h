/* Manifests: the whole tree of one snapshot.
 *
 * A manifest lists every inode of a tree with all the metadata a restore or a
 * mount needs, and for regular files either the content inline (small files)
 * or the ordered list of chunks.  It also carries snapshot-level information
 * (parent, time, host, source, stats) and the hot list: the chunks read early
 * in the last mount, in order, for prefetch on the next wake.
 *
 * Entries are stored in breadth-first order with each directory's children
 * contiguous and sorted bytewise by name, so that children are found by binary
 * search and the parser can verify the tree shape in one pass.  Entry 0 is the
 * root directory, its own parent, with an empty name.  "Sorted bytewise" is
 * memcmp order, a name before every longer name it is a prefix of.
 *
 * Hard links: any non-directory may be linked.  Every member of a group names
 * the group's representative in `hardlink` (the representative names itself);
 * all members have its file type and size, and nlink at least the group's
 * size.  A regular file's content (chunks or inline) is on the representative
 * alone, the other members carry none (nchunks 0, not inline): read a
 * member's content through node->hardlink.  Symlink members repeat the same
 * target; device members the same rdev.
 *
 * Encoding (little-endian):
 *   "HBSNAP01" | version:u32 | info_len:u32 | info (JSON, uncompressed)
 *   | body_raw_len:u64 | body_len:u64 | body (zstd) | checksum:u64
 * checksum is XXH3-64 of everything before it.  The JSON info can be read
 * from the first few KiB alone (listing snapshots without loading bodies).
 * The body is a sequence of varint-encoded entries, then the hot list.
 *
 * Every manifest from storage is validated completely by manifest_decode():
 * names that are empty, ".", "..", contain '/' or NUL, unsorted or duplicate
 * siblings, parents that are not directories, chunk lists that do not add up
 * to the file size, links to missing entries — all refused with -EBADMSG.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define MANIFEST_MAGIC "HBSNAP01"
#define MANIFEST_VERSION 1
#define MANIFEST_INLINE_MAX_BYTES 2048 /* the most a reader accepts inline */
/* Writers inline files up to this size.  Inline bytes are repeated in every
 * manifest (they do not dedup across snapshots) and every wake loads them,
 * so only files too small to be worth a chunk of their own live there. */
#define MANIFEST_INLINE_WRITE_BYTES 512
#define MANIFEST_NAME_MAX 255
#define MANIFEST_MAX_ENTRIES (64u << 20)
#define MANIFEST_MAX_XATTR_VALUE (64u * 1024)

#define MANIFEST_FLAG_INLINE 0x1u /* regular file whose content is in the manifest */

/* One chunk of a file's content.  An all-zero id is a hole of `size` zero
 * bytes (restored sparse, never stored). */
struct manifest_chunk {
	struct oid id;
	uint32_t size;
};

struct manifest_node {
	uint32_t mode; /* st_mode, type bits included */
	uint32_t uid, gid;
	uint32_t flags; /* MANIFEST_FLAG_* */
	uint64_t size;  /* regular file: bytes; symlink: target length; else 0 */
	uint64_t rdev;  /* char/block devices */
	int64_t mtime_sec, atime_sec, ctime_sec;
	uint32_t mtime_nsec, atime_nsec, ctime_nsec;
	uint64_t src_ino;  /* inode number on the source filesystem (for reuse) */
	uint64_t src_dev;
	uint32_t parent;   /* index of the parent directory (root: 0) */
	uint32_t hardlink; /* index of the first entry of its hard-link group; itself if none */
	uint32_t nlink;    /* links to this inode within the snapshot (dirs: 2 + subdirs);
			    * the decoder checks only 1 <= nlink <= count + 1 and the
			    * hard-link group size */
	/* Filled in by the decoder (ignored by the builder): */
	uint32_t first_child, nchildren; /* directories */
	uint32_t first_chunk, nchunks;   /* regular files stored as chunks */
	uint32_t first_xattr, nxattrs;
	uint32_t name_off, name_len;     /* into the string pool, NUL-terminated there */
	uint32_t data_off, data_len;     /* inline content or symlink target */
};

struct manifest_xattr {
	const char *name;     /* NUL-terminated */
	const uint8_t *value;
	uint32_t value_len;
};

/* Snapshot-level information, stored as the JSON header. */
struct manifest_info {
	struct oid parent;
	bool has_parent;
	int64_t time_sec;        /* creation, seconds since the epoch */
	uint32_t time_nsec;
	char host[256];
	char source[4096];       /* absolute path of the directory snapshotted, or "" */
	char origin[64];         /* "create", "commit", "import", ... */
	uint64_t files, dirs, others;
	uint64_t bytes;          /* sum of regular file sizes */
	uint64_t chunks;         /* chunk references, holes excluded */
	uint64_t new_chunks;     /* chunks first stored by this snapshot */
	uint64_t new_bytes;      /* their encoded (stored) bytes */
	uint64_t new_raw_bytes;  /* their plain bytes */
	uint64_t duration_ms;
};

struct manifest;

/* Decode and fully validate.  data may be freed after the call.
 * @return 0, -EBADMSG (with a message: what is wrong and at which entry),
 * -EPROTONOSUPPORT (unknown version), -ENOMEM. */
int manifest_decode(const void *data, size_t len, struct manifest **out);
/* Decode only the info header from the first `len` bytes of a manifest.
 * @return 0, -EAGAIN if len is too short (retry with *need bytes), -EBADMSG,
 * -EPROTONOSUPPORT. */
int manifest_decode_info(const void *data, size_t len, struct manifest_info *info, size_t *need);
/* manifest_decode, and keep the plain and the compressed body (about twice
 * the stored size in memory) so that a builder given this manifest as its
 * base can store an identical body without compressing it again. */
int manifest_decode_reusable(const void *data, size_t len, struct manifest **out);
void manifest_free(struct manifest *m);

const struct manifest_info *manifest_info(const struct manifest *m);
uint32_t manifest_count(const struct manifest *m);
const struct manifest_node *manifest_node(const struct manifest *m, uint32_t i);
/* The bytes the regular files hold, each rounded up to a multiple of block
 * and a hard-link group counted once: what a disk limit charges for the
 * tree (fs/quota.c; a sandbox's --disk checked at create). */
uint64_t manifest_file_bytes(const struct manifest *m, uint32_t block);
/* NUL-terminated name of entry i ("" for the root). */
const char *manifest_name(const struct manifest *m, uint32_t i);
/* Inline content or symlink target of entry i (data_len bytes; NUL-terminated). */
const uint8_t *manifest_data(const struct manifest *m, uint32_t i);
/* The chunks of entry i (nchunks of them). */
const struct manifest_chunk *manifest_chunks(const struct manifest *m, uint32_t i);
/* xattr k (0 <= k < nxattrs) of entry i. */
void manifest_xattr(const struct manifest *m, uint32_t i, uint32_t k, struct manifest_xattr *out);
/* Child of directory `dir` called name[0..len).  @return its index or -ENOENT / -ENOTDIR. */
int64_t manifest_lookup_child(const struct manifest *m, uint32_t dir, const char *name,
			      size_t len);
/* Entry at a relative path ("" or "." is the root; "a/b/c"; empty and "."
 * components are skipped, so "/a//b/" is "a/b").  @return index, -ENOENT,
 * -ENOTDIR, or -EINVAL for a ".." component. */
int64_t manifest_lookup_path(const struct manifest *m, const char *path);
/* Relative path of entry i ("" for root) into out.  @return 0 or -ENAMETOOLONG. */
int manifest_path(const struct manifest *m, uint32_t i, char *out, size_t size);
/* The hot list: chunk ids in first-read order. */
const struct oid *manifest_hot(const struct manifest *m, uint32_t *count);

/* Building a manifest.  Entries must be added in the decoder's order
 * (breadth-first, siblings sorted bytewise); the builder checks it. */
struct manifest_builder;

struct manifest_builder *manifest_builder_new(void);
void manifest_builder_free(struct manifest_builder *b);
/* Add an entry.  Only the metadata fields of *node are read (mode, uid, gid,
 * flags, size, rdev, times, src_*, parent, hardlink, nlink); hardlink may point
 * to a later entry.  data: inline content (flags & MANIFEST_FLAG_INLINE) or
 * symlink target; for those, size is taken from data_len.  @return the new
 * entry's index, or -EINVAL (order, names), -ENOMEM. */
int64_t manifest_builder_add(struct manifest_builder *b, const struct manifest_node *node,
			     const char *name, size_t name_len, const void *data, size_t data_len);
/* Set entry i's chunk list (copied; replaces inline content).  The per-entry
 * setters (set_chunks, add_xattr, set_size, set_inline) are thread-safe
 * against each other for different entries, but not against
 * manifest_builder_add. */
int manifest_builder_set_chunks(struct manifest_builder *b, uint32_t i,
				const struct manifest_chunk *chunks, uint32_t count);
int manifest_builder_add_xattr(struct manifest_builder *b, uint32_t i, const char *name,
			       const void *value, size_t value_len);
/* Set the size of entry i (for files whose size is known only after reading). */
void manifest_builder_set_size(struct manifest_builder *b, uint32_t i, uint64_t size);
/* Set or replace the inline content of entry i (sets MANIFEST_FLAG_INLINE). */
int manifest_builder_set_inline(struct manifest_builder *b, uint32_t i, const void *data,
				size_t len);
int manifest_builder_set_hot(struct manifest_builder *b, const struct oid *ids, uint32_t count);
uint32_t manifest_builder_count(const struct manifest_builder *b);
/* Entry i's chunk list (NULL, 0 for none) and its name (not terminated). */
const struct manifest_chunk *manifest_builder_chunks(const struct manifest_builder *b, uint32_t i,
						     uint32_t *count);
const char *manifest_builder_name(const struct manifest_builder *b, uint32_t i, size_t *len);
/* base: a manifest from manifest_decode_reusable, typically the parent
 * snapshot; it must outlive the encode.  If the body comes out byte for byte
 * the same as base's (an unchanged tree), encode reuses base's compressed
 * body: no second validation, no compression. */
void manifest_builder_set_base(struct manifest_builder *b, const struct manifest *base);
/* Serialize with info.  Validates with the decoder's own checks (hard links,
 * chunk sums, xattr duplicates are checked here, not on add): -EINVAL with the
 * decoder's message.  xattrs of each entry are sorted by name.
 * @return 0, -EINVAL, -ENOMEM. */
int manifest_builder_encode(struct manifest_builder *b, const struct manifest_info *info,
			    struct buf *out);
