/* Repository dictionaries: zstd dictionaries trained on a repository's own
 * small chunks, stored as immutable objects `dicts/<number>` (6 hex digits)
 * and named by chunks through their flags (chunk.h).
 *
 * Object layout:  "HBDICT01" | id[16] | zstd dictionary bytes
 * id is the keyed hash (oid_compute) of the dictionary bytes, and the number
 * is the first 24 bits of id: a damaged or foreign object fails the check,
 * and equal dictionaries get equal names, so a cache can never hold a stale
 * copy under a name that now means something else.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "snapshot/oid.h"
#include "util/buf.h"

#define DICT_MAGIC "HBDICT01"
#define DICT_HEADER_BYTES (8 + OID_BYTES)
#define DICT_PREFIX "dicts/"
#define DICT_NAME_BYTES 16
#define DICT_MAX_BYTES (1u << 20)        /* readers refuse larger objects */
#define DICT_TRAIN_BYTES (64u << 10)     /* dictionary size trained */
#define DICT_SAMPLE_MAX_RAW_BYTES (16u << 10) /* chunks used as samples */

/* "dicts/0a1b2c" */
void dict_name(uint32_t number, char out[DICT_NAME_BYTES]);
/* The number in a name, or 0 if it is not a dictionary's name. */
uint32_t dict_name_number(const char *name);

/* Train a dictionary on samples (sizes[i] bytes each, back to back) into
 * dict.  @return 0, -ENODATA when the samples do not make a useful one (no
 * message), -ENOMEM. */
int dict_train(const void *samples, const size_t *sizes, unsigned count, struct buf *dict);

/* Wrap dictionary bytes as an object; gives its number.  The dictionary's
 * own id field is changed until the number is not 0 and not in `taken`
 * (numbers already used, count n), so dict is modified.  @return 0 or -errno. */
int dict_object_encode(const struct repo_key *key, struct buf *dict, const uint32_t *taken,
		       size_t n, struct buf *out, uint32_t *number);
/* Verify an object read as dicts/<number>; *dict, *len point into data.
 * @return 0 or -EBADMSG with a message naming the dictionary. */
int dict_object_decode(const struct repo_key *key, uint32_t number, const uint8_t *data,
		       size_t len, const uint8_t **dict, size_t *dict_len);
