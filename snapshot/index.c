/* The chunk index: an in-memory hash table merged from all index files, and
 * the codec of those files.
 *
 * Compactness matters (a repository of a few hundred GiB has millions of
 * chunks), so the table is split in three:
 *   - entries: a dense array of 36-byte records (chunk id, pack number,
 *     offset, lengths, flags) in insertion order;
 *   - slots: an open-addressing (linear probing) array of 32-bit words,
 *     kept at most half full so probes stay short; each holds an entry
 *     number + 1 (0 = empty) and, in its top bits, a few more bits of the
 *     id's hash, so that a probe past other ids rarely touches their entries
 *     (each such touch is a cache miss);
 *   - packs: each pack id stored once and referred to by number, since
 *     thousands of chunks share one pack.
 * About 36 + 8..16 bytes per chunk in all.  One rwlock guards everything:
 * lookups share it, inserts take it exclusively.
 */
#include "snapshot/index.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "snapshot/chunk.h"
#include "snapshot/pack.h"
#include "util/error.h"

#define INDEX_HEADER_BYTES 8
#define INDEX_FOOTER_BYTES 12 /* count:u32 checksum:u64 */
#define SLOT_INDEX_BITS 27
#define SLOT_INDEX_MASK ((1u << SLOT_INDEX_BITS) - 1)
#define INDEX_MAX_ENTRIES (SLOT_INDEX_MASK - 1) /* 134 M chunks, 8 TiB at 64 KiB */
#define INITIAL_SLOTS 1024u

_Static_assert(sizeof(INDEX_MAGIC) - 1 == INDEX_HEADER_BYTES, "index magic is the header");
_Static_assert(2 * OID_BYTES + 4 * 4 == INDEX_ENTRY_BYTES, "index entry layout");

struct compact_entry {
	struct oid chunk; /* first: the probe compares ids at offset 0 */
	uint32_t pack;    /* number in chunk_index.packs */
	uint32_t offset;
	uint32_t length;
	uint32_t raw_length;
	uint32_t flags;
};

/* An open-addressing set of records that begin with a struct oid, stored
 * elsewhere in an array of `stride`-byte records. */
struct slot_table {
	uint32_t *slots; /* tag << SLOT_INDEX_BITS | (record number + 1), 0 = empty */
	size_t nslots;   /* a power of two */
};

struct chunk_index {
	pthread_rwlock_t lock;
	struct compact_entry *entries;
	size_t count, cap;
	struct slot_table entry_slots;
	struct oid *packs;
	size_t npacks, packs_cap;
	struct slot_table pack_slots;
};

/* The hash's top bits: independent of the low bits that pick the slot. */
static uint32_t slot_tag(uint64_t h)
{
	return (uint32_t)(h >> (64 - (32 - SLOT_INDEX_BITS))) << SLOT_INDEX_BITS;
}

static uint32_t slot_make(uint64_t h, size_t record)
{
	return slot_tag(h) | (uint32_t)(record + 1);
}

static size_t slot_record(uint32_t slot)
{
	return (slot & SLOT_INDEX_MASK) - 1;
}

/* The slot holding id, or the empty slot where it would go. */
static uint32_t *slot_find(const struct slot_table *t, const void *base, size_t stride,
			   const struct oid *id, uint64_t h)
{
	size_t mask = t->nslots - 1, i = (size_t)h & mask;
	uint32_t tag = slot_tag(h);

	for (;;) {
		uint32_t *s = &t->slots[i];

		if (*s == 0)
			return s;
		if ((*s & ~SLOT_INDEX_MASK) == tag &&
		    oid_equal((const struct oid *)((const char *)base + slot_record(*s) * stride), id))
			return s;
		i = (i + 1) & mask;
	}
}

/* Make room for one more record while keeping the table at most half full. */
static int slot_table_fit(struct slot_table *t, const void *base, size_t stride, size_t count)
{
	struct slot_table bigger;

	if (t->nslots && (count + 1) * 2 <= t->nslots)
		return 0;
	bigger.nslots = t->nslots ? 2 * t->nslots : INITIAL_SLOTS;
	bigger.slots = calloc(bigger.nslots, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		const struct oid *id = (const struct oid *)((const char *)base + i * stride);
		uint64_t h = oid_hash64(id);

		*slot_find(&bigger, base, stride, id, h) = slot_make(h, i);
	}
	free(t->slots);
	*t = bigger;
	return 0;
}

/* Grow a dense array to hold one more record. */
static int array_fit(void **array, size_t *cap, size_t count, size_t size)
{
	size_t ncap;
	void *p;

	if (count < *cap)
		return 0;
	ncap = *cap ? 2 * *cap : 256;
	p = realloc(*array, ncap * size);
	if (!p)
		return -ENOMEM;
	*array = p;
	*cap = ncap;
	return 0;
}

struct chunk_index *chunk_index_new(void)
{
	struct chunk_index *idx = calloc(1, sizeof(*idx));

	if (!idx)
		return NULL;
	if (pthread_rwlock_init(&idx->lock, NULL) != 0) {
		free(idx);
		return NULL;
	}
	return idx;
}

void chunk_index_free(struct chunk_index *idx)
{
	if (!idx)
		return;
	pthread_rwlock_destroy(&idx->lock);
	free(idx->entries);
	free(idx->entry_slots.slots);
	free(idx->packs);
	free(idx->pack_slots.slots);
	free(idx);
}

/* The number of pack id p, added if new.  Caller holds the write lock. */
static int pack_number(struct chunk_index *idx, const struct oid *p, uint32_t *out)
{
	uint64_t h = oid_hash64(p);
	uint32_t *s;
	int r;

	if (idx->pack_slots.nslots) {
		s = slot_find(&idx->pack_slots, idx->packs, sizeof(*idx->packs), p, h);
		if (*s) {
			*out = (uint32_t)slot_record(*s);
			return 0;
		}
	}
	if (idx->npacks >= INDEX_MAX_ENTRIES)
		return -ENOMEM;
	r = slot_table_fit(&idx->pack_slots, idx->packs, sizeof(*idx->packs), idx->npacks);
	if (r < 0)
		return r;
	r = array_fit((void **)&idx->packs, &idx->packs_cap, idx->npacks, sizeof(*idx->packs));
	if (r < 0)
		return r;
	idx->packs[idx->npacks] = *p;
	*slot_find(&idx->pack_slots, idx->packs, sizeof(*idx->packs), p, h) =
		slot_make(h, idx->npacks);
	*out = (uint32_t)idx->npacks++;
	return 0;
}

int chunk_index_add(struct chunk_index *idx, const struct index_entry *e)
{
	uint64_t h = oid_hash64(&e->chunk);
	uint32_t *s, pack;
	int r;

	pthread_rwlock_wrlock(&idx->lock);
	r = slot_table_fit(&idx->entry_slots, idx->entries, sizeof(*idx->entries), idx->count);
	if (r < 0)
		goto out;
	s = slot_find(&idx->entry_slots, idx->entries, sizeof(*idx->entries), &e->chunk, h);
	if (*s) {
		r = 0;
		goto out;
	}
	if (idx->count >= INDEX_MAX_ENTRIES) {
		r = hb_err(-ENOMEM, "chunk index is full (%zu entries)", idx->count);
		goto out;
	}
	r = array_fit((void **)&idx->entries, &idx->cap, idx->count, sizeof(*idx->entries));
	if (r < 0)
		goto out;
	r = pack_number(idx, &e->pack, &pack);
	if (r < 0)
		goto out;
	idx->entries[idx->count] = (struct compact_entry){
		.chunk = e->chunk,
		.pack = pack,
		.offset = e->offset,
		.length = e->length,
		.raw_length = e->raw_length,
		.flags = e->flags,
	};
	*s = slot_make(h, idx->count++);
	r = 1;
out:
	pthread_rwlock_unlock(&idx->lock);
	return r;
}

static void expand(const struct chunk_index *idx, const struct compact_entry *c,
		   struct index_entry *out)
{
	*out = (struct index_entry){
		.chunk = c->chunk,
		.pack = idx->packs[c->pack],
		.offset = c->offset,
		.length = c->length,
		.raw_length = c->raw_length,
		.flags = c->flags,
	};
}

int chunk_index_lookup(struct chunk_index *idx, const struct oid *chunk, struct index_entry *out)
{
	int found = 0;

	pthread_rwlock_rdlock(&idx->lock);
	if (idx->count) {
		uint32_t *s = slot_find(&idx->entry_slots, idx->entries, sizeof(*idx->entries),
					chunk, oid_hash64(chunk));

		if (*s) {
			if (out)
				expand(idx, &idx->entries[slot_record(*s)], out);
			found = 1;
		}
	}
	pthread_rwlock_unlock(&idx->lock);
	return found;
}

size_t chunk_index_count(struct chunk_index *idx)
{
	size_t n;

	pthread_rwlock_rdlock(&idx->lock);
	n = idx->count;
	pthread_rwlock_unlock(&idx->lock);
	return n;
}

int chunk_index_foreach(struct chunk_index *idx, int (*fn)(const struct index_entry *e, void *arg),
			void *arg)
{
	struct index_entry e;
	int r = 0;

	pthread_rwlock_rdlock(&idx->lock);
	for (size_t i = 0; i < idx->count && r == 0; i++) {
		expand(idx, &idx->entries[i], &e);
		r = fn(&e, arg);
	}
	pthread_rwlock_unlock(&idx->lock);
	return r;
}

int index_file_encode(const struct index_entry *entries, size_t count, struct buf *out)
{
	size_t size;
	uint8_t *p;
	int r;

	buf_reset(out);
	if (count > UINT32_MAX / INDEX_ENTRY_BYTES)
		return hb_err(-EFBIG, "index of %zu entries is too large", count);
	size = INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES + INDEX_FOOTER_BYTES;
	r = buf_reserve(out, size);
	if (r < 0)
		return r;
	p = out->data;
	memcpy(p, INDEX_MAGIC, INDEX_HEADER_BYTES);
	p += INDEX_HEADER_BYTES;
	for (size_t i = 0; i < count; i++, p += INDEX_ENTRY_BYTES) {
		const struct index_entry *e = &entries[i];

		memcpy(p, e->chunk.b, OID_BYTES);
		memcpy(p + 16, e->pack.b, OID_BYTES);
		put_le32(p + 32, e->offset);
		put_le32(p + 36, e->length);
		put_le32(p + 40, e->raw_length);
		put_le32(p + 44, e->flags);
	}
	put_le32(p, (uint32_t)count);
	put_le64(p + 4, XXH3_64bits(out->data, size - 8));
	out->len = size;
	return 0;
}

int index_file_decode(const uint8_t *data, size_t len, struct index_entry **entries,
		      size_t *count)
{
	struct index_entry *e = NULL;
	uint32_t n;
	size_t body;

	*entries = NULL;
	*count = 0;
	if (len < INDEX_HEADER_BYTES + INDEX_FOOTER_BYTES)
		return hb_err(-EBADMSG, "index file of %zu bytes is too short", len);
	if (memcmp(data, INDEX_MAGIC, INDEX_HEADER_BYTES))
		return hb_err(-EBADMSG, "index file: bad magic");
	body = len - INDEX_HEADER_BYTES - INDEX_FOOTER_BYTES;
	n = get_le32(data + len - INDEX_FOOTER_BYTES);
	if (body % INDEX_ENTRY_BYTES || body / INDEX_ENTRY_BYTES != n)
		return hb_err(-EBADMSG, "index file: %u entries cannot take %zu bytes", n, body);
	if (XXH3_64bits(data, len - 8) != get_le64(data + len - 8))
		return hb_err(-EBADMSG, "index file: checksum mismatch");
	if (n) {
		e = malloc((size_t)n * sizeof(*e));
		if (!e)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = data + INDEX_HEADER_BYTES + (size_t)i * INDEX_ENTRY_BYTES;

		memcpy(e[i].chunk.b, p, OID_BYTES);
		memcpy(e[i].pack.b, p + 16, OID_BYTES);
		e[i].offset = get_le32(p + 32);
		e[i].length = get_le32(p + 36);
		e[i].raw_length = get_le32(p + 40);
		e[i].flags = get_le32(p + 44);
		/* The same rules a pack's own trailer obeys. */
		if (e[i].flags & ~CHUNK_FLAG_RAW ||
		    ((e[i].flags & CHUNK_FLAG_RAW) && e[i].length != e[i].raw_length) ||
		    e[i].offset < PACK_HEADER_BYTES ||
		    (uint64_t)e[i].offset + e[i].length > PACK_MAX_BYTES - PACK_FOOTER_BYTES) {
			free(e);
			return hb_err(-EBADMSG, "index file: entry %u is impossible", i);
		}
	}
	*entries = e;
	*count = n;
	return 0;
}

int index_entry_cmp_pack_offset(const void *a, const void *b)
{
	const struct index_entry *x = a, *y = b;
	int c = oid_cmp(&x->pack, &y->pack);

	if (c)
		return c;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}
