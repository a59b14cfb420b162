/* Pack files: writer and trailer parser.
 *
 * The writer keeps the pack in memory (header + blobs) plus its entry list,
 * and appends the trailer at finish.  The parser trusts nothing: every count
 * and offset is checked against the pack size before it is used, in 64-bit
 * arithmetic so that no sum can wrap.
 */
#include "snapshot/pack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "snapshot/chunk.h"
#include "util/error.h"

_Static_assert(sizeof(PACK_MAGIC) - 1 == PACK_HEADER_BYTES, "pack magic is the header");
_Static_assert(sizeof(PACK_END_MAGIC) - 1 == 8, "pack end magic is 8 bytes");
_Static_assert(4 + 4 + 8 + 8 == PACK_FOOTER_BYTES, "footer layout");
_Static_assert(OID_BYTES + 4 * 4 == PACK_ENTRY_BYTES, "entry layout");

struct pack_writer {
	struct buf data;           /* header + blobs */
	struct pack_entry *entries;
	size_t count, cap;
};

struct pack_writer *pack_writer_new(void)
{
	struct pack_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->data.max = PACK_MAX_BYTES;
	return w;
}

void pack_writer_free(struct pack_writer *w)
{
	if (!w)
		return;
	buf_free(&w->data);
	free(w->entries);
	free(w);
}

size_t pack_writer_bytes(const struct pack_writer *w)
{
	return w->data.len ? w->data.len : PACK_HEADER_BYTES;
}

size_t pack_writer_count(const struct pack_writer *w)
{
	return w->count;
}

int pack_writer_add(struct pack_writer *w, const struct oid *id, const void *blob,
		    uint32_t blob_len, uint32_t raw_len, uint32_t flags)
{
	uint64_t total;
	int r;

	/* The finished pack, trailer included, must stay readable. */
	total = (uint64_t)pack_writer_bytes(w) + blob_len +
		(uint64_t)(w->count + 1) * PACK_ENTRY_BYTES + PACK_FOOTER_BYTES;
	if (total > PACK_MAX_BYTES || w->count + 1 > PACK_MAX_ENTRIES)
		return -EFBIG;
	if (w->count == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct pack_entry *e = realloc(w->entries, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		w->entries = e;
		w->cap = cap;
	}
	if (w->data.len == 0) {
		r = buf_append(&w->data, PACK_MAGIC, PACK_HEADER_BYTES);
		if (r < 0)
			return r;
	}
	r = buf_reserve(&w->data, blob_len);
	if (r < 0)
		return r;
	w->entries[w->count] = (struct pack_entry){
		.id = *id,
		.offset = (uint32_t)w->data.len,
		.length = blob_len,
		.raw_length = raw_len,
		.flags = flags,
	};
	buf_append(&w->data, blob, blob_len);
	w->count++;
	return 0;
}

static void entry_put(uint8_t *p, const struct pack_entry *e)
{
	memcpy(p, e->id.b, OID_BYTES);
	put_le32(p + 16, e->offset);
	put_le32(p + 20, e->length);
	put_le32(p + 24, e->raw_length);
	put_le32(p + 28, e->flags);
}

static void entry_get(const uint8_t *p, struct pack_entry *e)
{
	memcpy(e->id.b, p, OID_BYTES);
	e->offset = get_le32(p + 16);
	e->length = get_le32(p + 20);
	e->raw_length = get_le32(p + 24);
	e->flags = get_le32(p + 28);
}

int pack_writer_finish(struct pack_writer *w, struct buf *pack, struct pack_entry **entries,
		       size_t *count)
{
	size_t entries_bytes = w->count * PACK_ENTRY_BYTES, table;
	uint8_t *p;
	int r;

	if (w->data.len == 0) {
		r = buf_append(&w->data, PACK_MAGIC, PACK_HEADER_BYTES);
		if (r < 0)
			return r;
	}
	r = buf_reserve(&w->data, entries_bytes + PACK_FOOTER_BYTES);
	if (r < 0)
		return -ENOMEM; /* pack_writer_add() kept the size within bounds */
	table = w->data.len;
	p = w->data.data + table;
	for (size_t i = 0; i < w->count; i++)
		entry_put(p + i * PACK_ENTRY_BYTES, &w->entries[i]);
	p += entries_bytes;
	put_le32(p, (uint32_t)w->count);
	put_le32(p + 4, (uint32_t)entries_bytes);
	put_le64(p + 8, XXH3_64bits(w->data.data + table, entries_bytes + 4));
	memcpy(p + 16, PACK_END_MAGIC, 8);
	w->data.len += entries_bytes + PACK_FOOTER_BYTES;

	buf_free(pack);
	pack->data = buf_steal(&w->data, &pack->len);
	pack->cap = pack->len;
	*entries = w->entries;
	*count = w->count;
	w->entries = NULL;
	w->count = w->cap = 0;
	return 0;
}

int pack_footer_parse(const uint8_t footer[PACK_FOOTER_BYTES], uint64_t pack_size,
		      uint32_t *count, uint32_t *entries_bytes)
{
	uint32_t n, eb;

	if (pack_size < PACK_HEADER_BYTES + PACK_FOOTER_BYTES)
		return hb_err(-EBADMSG, "pack of %llu bytes is too short",
			      (unsigned long long)pack_size);
	if (pack_size > PACK_MAX_BYTES)
		return hb_err(-EBADMSG, "pack of %llu bytes is larger than the %u byte limit",
			      (unsigned long long)pack_size, PACK_MAX_BYTES);
	if (memcmp(footer + 16, PACK_END_MAGIC, 8))
		return hb_err(-EBADMSG, "pack footer: bad magic");
	n = get_le32(footer);
	eb = get_le32(footer + 4);
	if (n > PACK_MAX_ENTRIES || (uint64_t)n * PACK_ENTRY_BYTES != eb)
		return hb_err(-EBADMSG, "pack footer: %u entries cannot take %u bytes", n, eb);
	if ((uint64_t)PACK_HEADER_BYTES + eb + PACK_FOOTER_BYTES > pack_size)
		return hb_err(-EBADMSG, "pack footer: %u entries do not fit in %llu bytes", n,
			      (unsigned long long)pack_size);
	*count = n;
	*entries_bytes = eb;
	return 0;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct pack_entry *x = *(const struct pack_entry *const *)a;
	const struct pack_entry *y = *(const struct pack_entry *const *)b;

	return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Blobs lie in [PACK_HEADER_BYTES, blob_end) and non-empty ones do not
 * overlap (an empty blob covers no byte, so it may sit anywhere in the
 * area).  The writer lays blobs out in order, so the common case is a single
 * pass; anything else is sorted first. */
static int check_blob_layout(const struct pack_entry *e, size_t n, uint64_t blob_end)
{
	const struct pack_entry **sorted = NULL;
	uint64_t prev_end = PACK_HEADER_BYTES;
	size_t i;
	int r = 0;

	for (i = 0; i < n; i++) {
		uint64_t end = (uint64_t)e[i].offset + e[i].length;

		if (e[i].offset < PACK_HEADER_BYTES || end > blob_end)
			return hb_err(-EBADMSG, "pack entry %zu: blob [%u, +%u) outside the blob area",
				      i, e[i].offset, e[i].length);
		if (e[i].length == 0)
			continue;
		if (e[i].offset < prev_end)
			break;
		prev_end = end;
	}
	if (i == n)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		sorted[i] = &e[i];
	qsort(sorted, n, sizeof(*sorted), cmp_offset);
	prev_end = PACK_HEADER_BYTES;
	for (i = 0; i < n; i++) {
		const struct pack_entry *x = sorted[i];
		uint64_t end = (uint64_t)x->offset + x->length;

		if (end > blob_end) {
			r = hb_err(-EBADMSG, "pack entry %zu: blob [%u, +%u) outside the blob area",
				   (size_t)(x - e), x->offset, x->length);
			break;
		}
		if (x->length == 0)
			continue;
		if (x->offset < prev_end) {
			r = hb_err(-EBADMSG, "pack entry %zu: blob at %u overlaps another",
				   (size_t)(x - e), x->offset);
			break;
		}
		prev_end = end;
	}
	free(sorted);
	return r;
}

int pack_trailer_parse(const uint8_t *tail, size_t tail_len, uint64_t pack_size,
		       struct pack_entry **entries, size_t *count)
{
	struct pack_entry *e = NULL;
	uint32_t n, eb;
	uint64_t sum;
	int r;

	*entries = NULL;
	*count = 0;
	if (tail_len < PACK_FOOTER_BYTES)
		return hb_err(-EBADMSG, "pack trailer of %zu bytes is too short", tail_len);
	r = pack_footer_parse(tail + tail_len - PACK_FOOTER_BYTES, pack_size, &n, &eb);
	if (r < 0)
		return r;
	if (tail_len != (size_t)eb + PACK_FOOTER_BYTES)
		return hb_err(-EBADMSG, "pack trailer: %zu bytes given for %u entries", tail_len, n);
	sum = get_le64(tail + eb + 8);
	if (XXH3_64bits(tail, (size_t)eb + 4) != sum)
		return hb_err(-EBADMSG, "pack trailer: checksum mismatch");
	if (n) {
		e = malloc((size_t)n * sizeof(*e));
		if (!e)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		entry_get(tail + (size_t)i * PACK_ENTRY_BYTES, &e[i]);
		if (!chunk_flags_valid(e[i].flags)) {
			r = hb_err(-EBADMSG, "pack entry %u: unknown flags 0x%x", i, e[i].flags);
			goto fail;
		}
		if ((e[i].flags & CHUNK_FLAG_RAW) && e[i].length != e[i].raw_length) {
			r = hb_err(-EBADMSG, "pack entry %u: raw blob of %u bytes holds %u", i,
				   e[i].length, e[i].raw_length);
			goto fail;
		}
	}
	r = check_blob_layout(e, n, pack_size - PACK_FOOTER_BYTES - eb);
	if (r < 0)
		goto fail;
	*entries = e;
	*count = n;
	return 0;
fail:
	free(e);
	return r;
}
