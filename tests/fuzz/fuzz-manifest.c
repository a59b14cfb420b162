/* Fuzz target: any bytes as a manifest, three ways.
 *
 *  1. as a whole manifest file (manifest_decode, manifest_decode_info);
 *  2. the same with the checksum recomputed, so that mutations get past it
 *     and reach the JSON info and the zstd frame;
 *  3. as a plain body (manifest_decode_body), which is where the tree rules
 *     live and which zstd would otherwise hide from the mutator.
 *
 * Whatever decodes must then hold up: every path maps back to its entry,
 * children are sorted and inside their parent, every accessor stays in
 * bounds (ASan checks that).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "snapshot/manifest-int.h"
#include "snapshot/manifest.h"
#include "util/error.h"

static void exercise(const struct manifest *m)
{
	static char path[1 << 16];
	uint32_t n = manifest_count(m), nhot;
	volatile uint8_t sink = 0;
	const struct oid *hot;

	for (uint32_t i = 0; i < n; i++) {
		const struct manifest_node *node = manifest_node(m, i);
		const uint8_t *data = manifest_data(m, i);
		const struct manifest_chunk *chunks = manifest_chunks(m, i);
		uint64_t sum = 0;

		if (strlen(manifest_name(m, i)) != node->name_len || data[node->data_len] != 0)
			abort();
		for (uint32_t k = 0; k < node->nchunks; k++)
			sum += chunks[k].size;
		if (node->nchunks && sum != node->size)
			abort();
		for (uint32_t k = 0; k < node->nxattrs; k++) {
			struct manifest_xattr x;

			manifest_xattr(m, i, k, &x);
			if (x.value_len)
				sink ^= x.value[x.value_len - 1];
			sink ^= (uint8_t)x.name[0];
		}
		if (S_ISDIR(node->mode) && node->nchildren) {
			uint32_t last = node->first_child + node->nchildren - 1;

			if (node->first_child <= i || last >= n ||
			    manifest_node(m, node->first_child)->parent != i ||
			    manifest_node(m, last)->parent != i)
				abort();
		}
		if (manifest_path(m, i, path, sizeof(path)) == 0 &&
		    manifest_lookup_path(m, path) != (int64_t)i)
			abort();
		if (i && manifest_lookup_child(m, node->parent, manifest_name(m, i),
					       node->name_len) != (int64_t)i)
			abort();
	}
	hot = manifest_hot(m, &nhot);
	for (uint32_t k = 0; k < nhot; k++)
		sink ^= hot[k].b[0];
	(void)sink;
}

static void try_decode(const uint8_t *data, size_t size)
{
	struct manifest *m = NULL;

	if (manifest_decode(data, size, &m) == 0) {
		exercise(m);
		manifest_free(m);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest_info info;
	struct manifest *m = NULL;
	size_t need;

	try_decode(data, size);
	manifest_decode_info(data, size, &info, &need);

	if (size > 8 && memcmp(data, MANIFEST_MAGIC, 8) == 0) {
		uint8_t *copy = malloc(size);

		if (copy) {
			memcpy(copy, data, size);
			put_le64(copy + size - 8, XXH3_64bits(copy, size - 8));
			try_decode(copy, size);
			free(copy);
		}
	}

	if (manifest_decode_body(data, size, &m) == 0) {
		exercise(m);
		manifest_free(m);
	}
	hb_err_clear();
	return 0;
}
