#include "util/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/bigmem.h"

int buf_reserve(struct buf *b, size_t extra)
{
	size_t max = b->max ? b->max : BUF_DEFAULT_MAX_BYTES;
	size_t need, cap;
	uint8_t *p;

	if (extra > max || b->len > max - extra)
		return -EFBIG;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > max)
		cap = max;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	bigmem_hint(p, cap); /* big buffers: packs, manifests */
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int r;

	if (len == 0)
		return 0;
	r = buf_reserve(b, len);
	if (r < 0)
		return r;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int buf_append_varint(struct buf *b, uint64_t v)
{
	uint8_t tmp[VARINT_MAX_BYTES];

	return buf_append(b, tmp, (size_t)(varint_put(tmp, v) - tmp));
}

int buf_append_bytes(struct buf *b, const void *data, size_t len)
{
	int r = buf_append_varint(b, len);

	return r < 0 ? r : buf_append(b, data, len);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

uint8_t *buf_steal(struct buf *b, size_t *len)
{
	uint8_t *p = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

int reader_varint_long(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift = 0;

	for (;;) {
		uint8_t c;

		if (r->p >= r->end || shift > 63)
			return -EBADMSG;
		c = *r->p++;
		if (shift == 63 && (c & 0x7e))
			return -EBADMSG;
		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			break;
		shift += 7;
	}
	*v = x;
	return 0;
}

int reader_varint32_long(struct reader *r, uint32_t *v)
{
	uint64_t x;
	int rc = reader_varint_long(r, &x);

	if (rc < 0)
		return rc;
	if (x > UINT32_MAX)
		return -EBADMSG;
	*v = (uint32_t)x;
	return 0;
}

int reader_bytes(struct reader *r, size_t n, const uint8_t **out)
{
	if (reader_left(r) < n)
		return -EBADMSG;
	*out = r->p;
	r->p += n;
	return 0;
}

int reader_lenbytes(struct reader *r, size_t max, const uint8_t **out, size_t *len)
{
	uint64_t n;
	int rc = reader_varint(r, &n);

	if (rc < 0)
		return rc;
	if (n > max || n > reader_left(r))
		return -EBADMSG;
	*len = (size_t)n;
	return reader_bytes(r, (size_t)n, out);
}

int reader_le32(struct reader *r, uint32_t *v)
{
	const uint8_t *p;
	int rc = reader_bytes(r, 4, &p);

	if (rc == 0)
		*v = get_le32(p);
	return rc;
}

int reader_le64(struct reader *r, uint64_t *v)
{
	const uint8_t *p;
	int rc = reader_bytes(r, 8, &p);

	if (rc == 0)
		*v = get_le64(p);
	return rc;
}
