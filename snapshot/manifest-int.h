/* Manifests: internals shared with the tests, the fuzz target and the bench.
 *
 * Hard limits of the format that manifest.h does not need to publish, and
 * hooks that let tests produce manifests the public builder would refuse
 * (to check that the decoder refuses them too).  Nothing outside snapshot/,
 * tests/ and bench/ should include this.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/manifest.h"
#include "util/buf.h"

#define MANIFEST_HEADER_BYTES 16               /* magic, version, info_len */
#define MANIFEST_MAX_INFO_BYTES (64u * 1024)   /* the JSON info */
#define MANIFEST_MAX_BODY_BYTES (1u << 30)     /* decompressed body */
#define MANIFEST_MAX_HOT (1u << 22)            /* hot list ids */
#define MANIFEST_MAX_XATTRS_PER_ENTRY 4096u
#define MANIFEST_XATTR_NAME_MAX 255
#define MANIFEST_SYMLINK_MAX 4096              /* PATH_MAX, the kernel's limit too */
#define MANIFEST_MAX_CHUNKS_PER_FILE (1u << 26)
#define MANIFEST_ZSTD_LEVEL 3

/* Skip every check in manifest_builder_add/_encode, so a test can encode
 * names like ".." or unsorted siblings.  Never for real snapshots. */
void manifest_builder_set_unchecked(struct manifest_builder *b, bool unchecked);
/* The plain (uncompressed) body the builder would store.  Not validated. */
int manifest_builder_encode_body(struct manifest_builder *b, struct buf *raw);
/* Wrap an arbitrary plain body in the container: header with the given
 * version and info, zstd body, checksum.  Validates nothing about the body. */
int manifest_wrap_body(uint32_t version, const struct manifest_info *info, const void *raw,
		       size_t raw_len, struct buf *out);
/* Parse a plain body as manifest_decode would after decompression (the
 * info is zeroed).  For the fuzz target. */
int manifest_decode_body(const void *raw, size_t raw_len, struct manifest **out);
