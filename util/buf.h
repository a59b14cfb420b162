/* A growable byte buffer with a hard maximum.
 *
 * Everything read from disk or the network lands in a struct buf; the maximum
 * stops a corrupt length field from turning into a multi-gigabyte allocation.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define BUF_DEFAULT_MAX_BYTES ((size_t)1 << 32) /* 4 GiB */

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max; /* 0 means BUF_DEFAULT_MAX_BYTES */
};

#define BUF_INIT { 0 }

/* Make room for `extra` more bytes.  @return 0 or -ENOMEM / -EFBIG. */
int buf_reserve(struct buf *b, size_t extra);
/* Append bytes.  @return 0 or -ENOMEM / -EFBIG. */
int buf_append(struct buf *b, const void *data, size_t len);
/* The most bytes a 64-bit varint takes. */
#define VARINT_MAX_BYTES 10

/* Encode v as an unsigned LEB128 varint at p (room for VARINT_MAX_BYTES);
 * returns the byte after it. */
static inline uint8_t *varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Append an unsigned LEB128 varint. */
int buf_append_varint(struct buf *b, uint64_t v);
/* Append a varint length followed by the bytes. */
int buf_append_bytes(struct buf *b, const void *data, size_t len);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hand over the data (caller frees) and leave b empty. */
uint8_t *buf_steal(struct buf *b, size_t *len);

/* Little-endian fixed-width fields, as in every on-disk format here. */
static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* A bounds-checked reader over bytes from outside.  Every get_* fails with
 * -EBADMSG instead of reading past the end. */
struct reader {
	const uint8_t *p;
	const uint8_t *end;
};

static inline void reader_init(struct reader *r, const void *data, size_t len)
{
	r->p = data;
	r->end = r->p + len;
}
static inline size_t reader_left(const struct reader *r) { return (size_t)(r->end - r->p); }
int reader_varint_long(struct reader *r, uint64_t *v);
int reader_varint32_long(struct reader *r, uint32_t *v);
/* Most varints of a manifest or an index are one byte: that case inline
 * (a 30 000-entry manifest decodes ~750 000 of them). */
static inline int reader_varint(struct reader *r, uint64_t *v)
{
	if (r->p < r->end && *r->p < 0x80) {
		*v = *r->p++;
		return 0;
	}
	return reader_varint_long(r, v);
}
/* A varint that must fit in 32 bits. */
static inline int reader_varint32(struct reader *r, uint32_t *v)
{
	if (r->p < r->end && *r->p < 0x80) {
		*v = *r->p++;
		return 0;
	}
	return reader_varint32_long(r, v);
}
int reader_bytes(struct reader *r, size_t n, const uint8_t **out);
/* A varint length then that many bytes, at most max. */
int reader_lenbytes(struct reader *r, size_t max, const uint8_t **out, size_t *len);
int reader_le32(struct reader *r, uint32_t *v);
int reader_le64(struct reader *r, uint64_t *v);
