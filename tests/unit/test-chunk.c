/* Chunk encode/decode: roundtrips, the raw fallback, and that every kind of
 * damage is refused with -EBADMSG rather than handed out as data. */
#include "snapshot/chunk.h"

#include <pthread.h>

#include "test.h"

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(xorshift64(&seed) >> 24);
}

/* Text-like, compressible bytes. */
static void fill_text(uint8_t *p, size_t len, uint64_t seed)
{
	static const char *words[] = { "snapshot ", "chunk ", "pack ", "index ", "the ", "of ",
				       "hiberbox ", "\n" };

	for (size_t i = 0; i < len;) {
		const char *w = words[xorshift64(&seed) % 8];

		for (size_t k = 0; w[k] && i < len; k++)
			p[i++] = (uint8_t)w[k];
	}
}

static struct repo_key key, other_key;

static void test_roundtrip(void)
{
	static const size_t sizes[] = { 0, 1, 2, 100, 4096, 65536, 300000 };
	struct buf blob = BUF_INIT, out = BUF_INIT;
	uint8_t *data = malloc(300000);

	for (int kind = 0; kind < 2; kind++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t len = sizes[s];
			uint32_t flags = 99;
			struct oid id;

			if (kind)
				fill_random(data, len, len + 1);
			else
				fill_text(data, len, len + 1);
			oid_compute(&key, data, len, &id);
			CHECK_OK(chunk_encode(3, data, len, &blob, &flags));
			CHECK(flags == 0 || flags == CHUNK_FLAG_RAW);
			if (kind == 0 && len >= 4096)
				CHECK(flags == 0 && blob.len < len / 2);
			/* Random data does not compress: stored raw. */
			if (kind == 1 || len == 0)
				CHECK(flags == CHUNK_FLAG_RAW && blob.len == len);
			if (flags == 0)
				CHECK(blob.len < len);
			CHECK_OK(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags,
					      &out));
			CHECK(out.len == len && (len == 0 || !memcmp(out.data, data, len)));
		}
	}
	/* Levels from fast to strong all decode the same. */
	fill_text(data, 65536, 5);
	for (int level = -5; level <= 19; level += 6) {
		uint32_t flags;
		struct oid id;

		oid_compute(&key, data, 65536, &id);
		CHECK_OK(chunk_encode(level, data, 65536, &blob, &flags));
		CHECK(flags == 0);
		CHECK_OK(chunk_decode(&key, &id, blob.data, blob.len, 65536, flags, &out));
		CHECK(out.len == 65536 && !memcmp(out.data, data, 65536));
	}
	free(data);
	buf_free(&blob);
	buf_free(&out);
}

/* Flip one bit at every position of a compressed blob and of a raw blob:
 * each must be refused, or decode to exactly the original bytes. */
static void test_corruption(void)
{
	struct buf blob = BUF_INIT, out = BUF_INIT;
	size_t len = 20000;
	uint8_t *data = malloc(len);
	uint32_t flags;
	struct oid id, wrong_id;
	int refused = 0, positions = 0;

	for (int kind = 0; kind < 2; kind++) {
		if (kind)
			fill_random(data, len, 77);
		else
			fill_text(data, len, 77);
		oid_compute(&key, data, len, &id);
		CHECK_OK(chunk_encode(3, data, len, &blob, &flags));
		CHECK(flags == (kind ? CHUNK_FLAG_RAW : 0));
		refused = positions = 0;
		for (size_t i = 0; i < blob.len; i += kind ? 97 : 1) {
			int r;

			blob.data[i] ^= (uint8_t)(1u << (i % 8));
			r = chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags, &out);
			blob.data[i] ^= (uint8_t)(1u << (i % 8));
			positions++;
			if (r == -EBADMSG) {
				refused++;
				CHECK(out.len == 0);
				continue;
			}
			/* A few bits of a zstd frame do not change what it decodes
			 * to (e.g. unused table weights): then the bytes handed out
			 * must be exactly the original ones. */
			CHECK(r == 0 && out.len == len && !memcmp(out.data, data, len));
		}
		/* Raw blobs have no slack; compressed ones almost none. */
		CHECK(kind ? refused == positions : refused > positions * 99 / 100);

		/* Truncated or extended blob. */
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len - 1, (uint32_t)len, flags,
				       &out), -EBADMSG);
		CHECK_ERR(chunk_decode(&key, &id, blob.data, 0, (uint32_t)len, flags, &out),
			  -EBADMSG);
		/* Wrong raw_len, both ways. */
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len + 1, flags,
				       &out), -EBADMSG);
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len - 1, flags,
				       &out), -EBADMSG);
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, UINT32_MAX, flags, &out),
			  -EBADMSG);
		/* Wrong key, wrong id, wrong or unknown flags. */
		CHECK_ERR(chunk_decode(&other_key, &id, blob.data, blob.len, (uint32_t)len, flags,
				       &out), -EBADMSG);
		CHECK(strstr(hb_errmsg(-EBADMSG), "does not match its id") != NULL);
		wrong_id = id;
		wrong_id.b[15] ^= 1;
		CHECK_ERR(chunk_decode(&key, &wrong_id, blob.data, blob.len, (uint32_t)len, flags,
				       &out), -EBADMSG);
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len,
				       flags ^ CHUNK_FLAG_RAW, &out), -EBADMSG);
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags | 0x10,
				       &out), -EBADMSG);
		CHECK(out.len == 0);
		CHECK_OK(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags, &out));
	}
	/* Garbage that is not a zstd frame; the message names the chunk. */
	{
		char hex[OID_HEX_BYTES], want[80];

		CHECK_ERR(chunk_decode(&key, &id, "garbage!", 8, 8, 0, &out), -EBADMSG);
		snprintf(want, sizeof(want), "chunk %s: cannot decompress", oid_format(&id, hex));
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL);
	}
	free(data);
	buf_free(&blob);
	buf_free(&out);
}

/* Threads each use their own contexts; all of them are freed at exit
 * (LeakSanitizer checks that under ASan). */
static void *thread_main(void *arg)
{
	struct buf blob = BUF_INIT, out = BUF_INIT;
	uint8_t data[8192];
	int *ok = arg;

	for (int i = 0; i < 50; i++) {
		uint32_t flags;
		struct oid id;

		fill_text(data, sizeof(data), (uint64_t)i + 1);
		oid_compute(&key, data, sizeof(data), &id);
		if (chunk_encode(1, data, sizeof(data), &blob, &flags) < 0 ||
		    chunk_decode(&key, &id, blob.data, blob.len, sizeof(data), flags, &out) < 0 ||
		    out.len != sizeof(data) || memcmp(out.data, data, sizeof(data)))
			*ok = 0;
	}
	buf_free(&blob);
	buf_free(&out);
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[4];
	int ok[4];

	for (int i = 0; i < 4; i++) {
		ok[i] = 1;
		CHECK(pthread_create(&t[i], NULL, thread_main, &ok[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(ok[i]);
	}
}

/* A blob limited by its buf maximum reports the limit, not a crash. */
static void test_buf_limit(void)
{
	struct buf blob = { .max = 100 };
	uint8_t data[1000];
	uint32_t flags;

	fill_random(data, sizeof(data), 3);
	CHECK(chunk_encode(3, data, sizeof(data), &blob, &flags) < 0);
	buf_free(&blob);
}

int main(void)
{
	for (int i = 0; i < REPO_KEY_BYTES; i++) {
		key.secret[i] = (uint8_t)(i * 7 + 1);
		other_key.secret[i] = (uint8_t)(i * 7 + 2);
	}
	test_roundtrip();
	test_corruption();
	test_threads();
	test_buf_limit();
	TEST_MAIN_END();
}
