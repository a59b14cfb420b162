/* util/buf: growth and its hard maximum, varints at their edges, and the
 * bounds-checked reader. */
#include "util/buf.h"

#include <stdint.h>

#include "test.h"

static void test_growth_and_max(void)
{
	struct buf b = BUF_INIT;
	uint8_t data[1000];
	size_t len;
	uint8_t *p;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	for (int i = 0; i < 100; i++)
		CHECK_OK(buf_append(&b, data, sizeof(data)));
	CHECK(b.len == 100000 && b.cap >= b.len);
	CHECK(!memcmp(b.data + 99000, data, sizeof(data)));
	CHECK_OK(buf_append(&b, NULL, 0));
	CHECK(b.len == 100000);
	buf_reset(&b);
	CHECK(b.len == 0 && b.cap >= 100000);
	p = buf_steal(&b, &len);
	CHECK(p && len == 0 && b.data == NULL && b.cap == 0);
	free(p);
	buf_free(&b);

	/* The maximum is reachable exactly and never passed. */
	b = (struct buf){ .max = 1000 };
	CHECK_OK(buf_append(&b, data, 600));
	CHECK_ERR(buf_append(&b, data, 401), -EFBIG);
	CHECK(b.len == 600);
	CHECK_OK(buf_append(&b, data, 400));
	CHECK(b.len == 1000 && b.cap <= 1000);
	CHECK_ERR(buf_append(&b, data, 1), -EFBIG);
	CHECK_OK(buf_reserve(&b, 0));
	CHECK_ERR(buf_reserve(&b, SIZE_MAX), -EFBIG);
	CHECK_ERR(buf_append_varint(&b, 5), -EFBIG);
	buf_free(&b);
	b = (struct buf){ .max = 10 };
	CHECK_ERR(buf_reserve(&b, 11), -EFBIG);
	CHECK_ERR(buf_reserve(&b, SIZE_MAX), -EFBIG);
	CHECK(b.data == NULL);
	buf_free(&b);
	/* The default maximum applies when max is 0. */
	b = (struct buf)BUF_INIT;
	CHECK_ERR(buf_reserve(&b, BUF_DEFAULT_MAX_BYTES + 1), -EFBIG);
	buf_free(&b);
	buf_free(&b); /* twice is fine */
}

static void test_varint(void)
{
	static const uint64_t values[] = { 0, 1, 127, 128, 255, 16383, 16384, UINT32_MAX,
					   (uint64_t)UINT32_MAX + 1, INT64_MAX, UINT64_MAX };
	static const size_t sizes[] = { 1, 1, 1, 2, 2, 2, 3, 5, 5, 9, 10 };
	struct buf b = BUF_INIT;
	struct reader r;

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint64_t v = 12345;

		buf_reset(&b);
		CHECK_OK(buf_append_varint(&b, values[i]));
		CHECK(b.len == sizes[i]);
		reader_init(&r, b.data, b.len);
		CHECK_OK(reader_varint(&r, &v));
		CHECK(v == values[i] && reader_left(&r) == 0);
		/* Every truncation is refused. */
		for (size_t cut = 0; cut < b.len; cut++) {
			reader_init(&r, b.data, cut);
			CHECK_ERR(reader_varint(&r, &v), -EBADMSG);
		}
	}
	{
		/* 11 bytes, or a 10th byte carrying more than bit 63: overflow. */
		static const uint8_t too_long[11] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
						      0x80, 0x80, 0x80, 0x81, 0x00 };
		static const uint8_t too_big[10] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
						     0xff, 0xff, 0xff, 0x02 };
		static const uint8_t max[10] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
						 0xff, 0xff, 0xff, 0x01 };
		uint64_t v;
		uint32_t v32;

		reader_init(&r, too_long, sizeof(too_long));
		CHECK_ERR(reader_varint(&r, &v), -EBADMSG);
		reader_init(&r, too_big, sizeof(too_big));
		CHECK_ERR(reader_varint(&r, &v), -EBADMSG);
		reader_init(&r, max, sizeof(max));
		CHECK_OK(reader_varint(&r, &v));
		CHECK(v == UINT64_MAX);

		buf_reset(&b);
		buf_append_varint(&b, UINT32_MAX);
		reader_init(&r, b.data, b.len);
		CHECK_OK(reader_varint32(&r, &v32));
		CHECK(v32 == UINT32_MAX);
		buf_reset(&b);
		buf_append_varint(&b, (uint64_t)UINT32_MAX + 1);
		reader_init(&r, b.data, b.len);
		CHECK_ERR(reader_varint32(&r, &v32), -EBADMSG);
		reader_init(&r, b.data, 0);
		CHECK_ERR(reader_varint32(&r, &v32), -EBADMSG);
	}
	buf_free(&b);
}

static void test_reader(void)
{
	struct buf b = BUF_INIT;
	struct reader r;
	const uint8_t *p;
	size_t len;
	uint32_t v32;
	uint64_t v64;

	CHECK_OK(buf_append_bytes(&b, "hello", 5));
	CHECK_OK(buf_append_bytes(&b, "", 0));
	CHECK(b.len == 7);
	reader_init(&r, b.data, b.len);
	CHECK_OK(reader_lenbytes(&r, 5, &p, &len));
	CHECK(len == 5 && !memcmp(p, "hello", 5));
	CHECK_OK(reader_lenbytes(&r, 0, &p, &len));
	CHECK(len == 0 && reader_left(&r) == 0);
	CHECK_ERR(reader_lenbytes(&r, 5, &p, &len), -EBADMSG);

	/* Longer than the maximum, or than what is left. */
	reader_init(&r, b.data, b.len);
	CHECK_ERR(reader_lenbytes(&r, 4, &p, &len), -EBADMSG);
	reader_init(&r, b.data, 5);
	CHECK_ERR(reader_lenbytes(&r, 100, &p, &len), -EBADMSG);
	buf_reset(&b);
	buf_append_varint(&b, UINT64_MAX);
	reader_init(&r, b.data, b.len);
	CHECK_ERR(reader_lenbytes(&r, SIZE_MAX, &p, &len), -EBADMSG);

	/* Fixed-width reads at the end, and reads that do not fit leave the
	 * reader where it was. */
	{
		uint8_t raw[12];

		put_le32(raw, 0xdeadbeef);
		put_le64(raw + 4, 0x0123456789abcdefull);
		CHECK(get_le32(raw) == 0xdeadbeef && raw[0] == 0xef);
		reader_init(&r, raw, sizeof(raw));
		CHECK_OK(reader_le32(&r, &v32));
		CHECK(v32 == 0xdeadbeef);
		CHECK_ERR(reader_bytes(&r, 9, &p), -EBADMSG);
		CHECK_ERR(reader_bytes(&r, SIZE_MAX, &p), -EBADMSG);
		CHECK(reader_left(&r) == 8);
		CHECK_OK(reader_le64(&r, &v64));
		CHECK(v64 == 0x0123456789abcdefull);
		CHECK_ERR(reader_le32(&r, &v32), -EBADMSG);
		CHECK_ERR(reader_le64(&r, &v64), -EBADMSG);
		CHECK_OK(reader_bytes(&r, 0, &p));
		reader_init(&r, raw, 7);
		CHECK_ERR(reader_le64(&r, &v64), -EBADMSG);
		reader_init(&r, raw, 3);
		CHECK_ERR(reader_le32(&r, &v32), -EBADMSG);
		put_le16(raw, 0xbeef);
		CHECK(get_le16(raw) == 0xbeef);
	}
	buf_free(&b);
}

int main(void)
{
	test_growth_and_max();
	test_varint();
	test_reader();
	TEST_MAIN_END();
}
