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
#include <zstd.h>

#include "snapshot/chunk.h"
#include "snapshot/pack.h"
#include "util/error.h"

#define INDEX_HEADER_BYTES 8
#define INDEX_FOOTER_BYTES 12 /* count:u32 checksum:u64 */
#define INDEX_V2_HEADER_BYTES 20 /* magic, count:u32, raw_len:u32, zstd_len:u32 */
#define INDEX_ZSTD_LEVEL 9
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

/* The same rules a pack's own trailer obeys. */
static bool entry_possible(const struct index_entry *e)
{
	return chunk_flags_valid(e->flags) &&
	       !((e->flags & CHUNK_FLAG_RAW) && e->length != e->raw_length) &&
	       e->offset >= PACK_HEADER_BYTES &&
	       (uint64_t)e->offset + e->length <= PACK_MAX_BYTES - PACK_FOOTER_BYTES;
}

static int decode_v1(const uint8_t *data, size_t len, struct index_entry **entries,
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
		if (!entry_possible(&e[i])) {
			free(e);
			return hb_err(-EBADMSG, "index file: entry %u is impossible", i);
		}
	}
	*entries = e;
	*count = n;
	return 0;
}

/* ---- version 2: compressed columns ---- */

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* The raw body of entries sorted by pack then offset (see index.h). */
static int encode_columns(const struct index_entry *e, size_t n, struct buf *b)
{
	size_t npacks = 0, pack = 0;
	uint64_t end = 0;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		npacks += i == 0 || !oid_equal(&e[i].pack, &e[i - 1].pack);
	r |= buf_append_varint(b, npacks);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || !oid_equal(&e[i].pack, &e[i - 1].pack))
			r |= buf_append(b, e[i].pack.b, OID_BYTES);
	for (size_t i = 0; i < n; i++) {
		pack += i > 0 && !oid_equal(&e[i].pack, &e[i - 1].pack);
		r |= buf_append_varint(b, pack);
	}
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || !oid_equal(&e[i].pack, &e[i - 1].pack))
			end = PACK_HEADER_BYTES;
		/* Blobs follow each other: the gap is 0 but where chunks of a
		 * pack are in another index file (gc). */
		r |= buf_append_varint(b, zigzag((int64_t)e[i].offset - (int64_t)end));
		end = (uint64_t)e[i].offset + e[i].length;
	}
	for (size_t i = 0; i < n; i++)
		r |= buf_append_varint(b, e[i].length);
	for (size_t i = 0; i < n; i++)
		r |= buf_append_varint(b, zigzag((int64_t)e[i].raw_length - (int64_t)e[i].length));
	for (size_t i = 0; i < n; i++)
		r |= buf_append_varint(b, e[i].flags);
	for (size_t i = 0; i < n; i++)
		r |= buf_append(b, e[i].chunk.b, OID_BYTES);
	return r ? -ENOMEM : 0;
}

int index_file_encode_v2(const struct index_entry *entries, size_t count, struct buf *out)
{
	struct index_entry *sorted = NULL;
	struct buf body = BUF_INIT;
	size_t bound, n;
	int r;

	buf_reset(out);
	if (count > INDEX_MAX_ENTRIES)
		return hb_err(-EFBIG, "index of %zu entries is too large", count);
	if (count) {
		sorted = malloc(count * sizeof(*sorted));
		if (!sorted)
			return -ENOMEM;
		memcpy(sorted, entries, count * sizeof(*sorted));
		qsort(sorted, count, sizeof(*sorted), index_entry_cmp_pack_offset);
	}
	r = encode_columns(sorted, count, &body);
	free(sorted);
	if (r < 0)
		goto out;
	bound = ZSTD_compressBound(body.len);
	r = buf_reserve(out, INDEX_V2_HEADER_BYTES + bound + 8);
	if (r < 0)
		goto out;
	memcpy(out->data, INDEX_MAGIC_V2, INDEX_HEADER_BYTES);
	n = ZSTD_compress(out->data + INDEX_V2_HEADER_BYTES, bound, body.data, body.len,
			  INDEX_ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		r = hb_err(-ENOMEM, "index file: zstd: %s", ZSTD_getErrorName(n));
		goto out;
	}
	put_le32(out->data + 8, (uint32_t)count);
	put_le32(out->data + 12, (uint32_t)body.len);
	put_le32(out->data + 16, (uint32_t)n);
	out->len = INDEX_V2_HEADER_BYTES + n;
	put_le64(out->data + out->len, XXH3_64bits(out->data, out->len));
	out->len += 8;
out:
	buf_free(&body);
	return r;
}

static int decode_columns(const uint8_t *body, size_t len, struct index_entry *e, uint32_t n)
{
	struct reader rd;
	const uint8_t *packs, *ids;
	uint64_t npacks, v, end = 0;
	uint32_t prev_pack = 0;

	reader_init(&rd, body, len);
	if (reader_varint(&rd, &npacks) < 0 || npacks > n ||
	    reader_bytes(&rd, (size_t)npacks * OID_BYTES, &packs) < 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < n; i++) {
		if (reader_varint(&rd, &v) < 0 || v >= npacks || v < prev_pack)
			return -EBADMSG;
		memcpy(e[i].pack.b, packs + v * OID_BYTES, OID_BYTES);
		prev_pack = (uint32_t)v;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (reader_varint(&rd, &v) < 0 || v > UINT32_MAX)
			return -EBADMSG;
		e[i].offset = (uint32_t)v; /* the zigzag gap, until lengths are known */
	}
	for (uint32_t i = 0; i < n; i++)
		if (reader_varint32(&rd, &e[i].length) < 0)
			return -EBADMSG;
	for (uint32_t i = 0; i < n; i++) {
		int64_t raw;

		/* Two u32 differ by at most UINT32_MAX, whose zigzag is below
		 * 2^33: refusing more keeps the sum from overflowing. */
		if (reader_varint(&rd, &v) < 0 || v > 2 * (uint64_t)UINT32_MAX)
			return -EBADMSG;
		raw = (int64_t)e[i].length + unzigzag(v);
		if (raw < 0 || raw > UINT32_MAX)
			return -EBADMSG;
		e[i].raw_length = (uint32_t)raw;
	}
	for (uint32_t i = 0; i < n; i++)
		if (reader_varint32(&rd, &e[i].flags) < 0)
			return -EBADMSG;
	if (reader_bytes(&rd, (size_t)n * OID_BYTES, &ids) < 0 || reader_left(&rd) != 0)
		return -EBADMSG;
	/* Offsets from the gaps, now that lengths are known. */
	for (uint32_t i = 0; i < n; i++) {
		int64_t off;

		if (i == 0 || !oid_equal(&e[i].pack, &e[i - 1].pack))
			end = PACK_HEADER_BYTES;
		off = (int64_t)end + unzigzag(e[i].offset);
		if (off < 0 || off > UINT32_MAX)
			return -EBADMSG;
		e[i].offset = (uint32_t)off;
		end = (uint64_t)off + e[i].length;
		memcpy(e[i].chunk.b, ids + (size_t)i * OID_BYTES, OID_BYTES);
	}
	return 0;
}

static int decode_v2(const uint8_t *data, size_t len, struct index_entry **entries,
		     size_t *count)
{
	struct index_entry *e = NULL;
	uint32_t n, raw_len, zlen;
	uint8_t *body = NULL;
	size_t got;
	int r;

	if (len < INDEX_V2_HEADER_BYTES + 8)
		return hb_err(-EBADMSG, "index file of %zu bytes is too short", len);
	n = get_le32(data + 8);
	raw_len = get_le32(data + 12);
	zlen = get_le32(data + 16);
	if ((uint64_t)INDEX_V2_HEADER_BYTES + zlen + 8 != len)
		return hb_err(-EBADMSG, "index file: %zu bytes, its header says %llu", len,
			      (unsigned long long)INDEX_V2_HEADER_BYTES + zlen + 8);
	if (XXH3_64bits(data, len - 8) != get_le64(data + len - 8))
		return hb_err(-EBADMSG, "index file: checksum mismatch");
	/* Each entry takes 16 bytes of id and at least 5 of varints; and since
	 * ids do not compress, the body is never many times its frame (which
	 * bounds what a crafted file can make us allocate). */
	if (n > INDEX_MAX_ENTRIES || raw_len < (uint64_t)n * (OID_BYTES + 5) ||
	    raw_len > 1 + (uint64_t)n * (2 * OID_BYTES + 5 * 10) ||
	    raw_len > 16 * (uint64_t)zlen + 65536)
		return hb_err(-EBADMSG, "index file: %u entries cannot take %u bytes", n, raw_len);
	body = malloc(raw_len ? raw_len : 1);
	e = malloc((n ? n : 1) * sizeof(*e));
	if (!body || !e) {
		r = -ENOMEM;
		goto fail;
	}
	got = ZSTD_decompress(body, raw_len, data + INDEX_V2_HEADER_BYTES, zlen);
	if (ZSTD_isError(got) || got != raw_len) {
		r = hb_err(-EBADMSG, "index file: cannot decompress (%s)",
			   ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
		goto fail;
	}
	if (decode_columns(body, raw_len, e, n) < 0) {
		r = hb_err(-EBADMSG, "index file: malformed entries");
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (!entry_possible(&e[i])) {
			r = hb_err(-EBADMSG, "index file: entry %u is impossible", i);
			goto fail;
		}
	}
	free(body);
	*entries = e;
	*count = n;
	return 0;
fail:
	free(body);
	free(e);
	return r;
}

int index_file_decode(const uint8_t *data, size_t len, struct index_entry **entries,
		      size_t *count)
{
	*entries = NULL;
	*count = 0;
	if (len >= INDEX_HEADER_BYTES && memcmp(data, INDEX_MAGIC_V2, INDEX_HEADER_BYTES) == 0)
		return decode_v2(data, len, entries, count);
	return decode_v1(data, len, entries, count);
}

int index_entry_cmp_pack_offset(const void *a, const void *b)
{
	const struct index_entry *x = a, *y = b;
	int c = oid_cmp(&x->pack, &y->pack);

	if (c)
		return c;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}
