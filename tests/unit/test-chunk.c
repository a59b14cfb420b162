/* Chunk encode/decode: roundtrips, the raw fallback, and that every kind of
 * damage is refused with -EBADMSG rather than handed out as data; repository
 * dictionaries: training, the object format, chunks with and without one,
 * and a missing, wrong or damaged dictionary named in a clear error. */
#include "snapshot/chunk.h"
#include "snapshot/dict.h"

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
			CHECK_OK(chunk_encode(3, NULL, data, len, &blob, &flags));
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
		CHECK_OK(chunk_encode(level, NULL, data, 65536, &blob, &flags));
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
		CHECK_OK(chunk_encode(3, NULL, data, len, &blob, &flags));
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
		if (chunk_encode(1, NULL, data, sizeof(data), &blob, &flags) < 0 ||
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
	CHECK(chunk_encode(3, NULL, data, sizeof(data), &blob, &flags) < 0);
	buf_free(&blob);
}

/* ---- dictionaries ---- */

/* Source-like samples: the same vocabulary in every chunk, which is what a
 * dictionary learns. */
static void make_samples(struct buf *samples, size_t *sizes, unsigned n)
{
	buf_reset(samples);
	for (unsigned i = 0; i < n; i++) {
		size_t len = 500 + (i * 977) % 6000;

		CHECK_OK(buf_reserve(samples, len));
		fill_text(samples->data + samples->len, len, 1000 + i);
		samples->len += len;
		sizes[i] = len;
	}
}

static struct chunk_dict *make_dict(struct buf *object, uint32_t *number, uint64_t seed)
{
	struct buf samples = BUF_INIT, dict = BUF_INIT;
	size_t sizes[300];
	struct chunk_dict *d = NULL;
	const uint8_t *bytes;
	size_t len;

	make_samples(&samples, sizes, 300);
	/* Another seed, other samples: another dictionary. */
	for (size_t i = 0; i < samples.len; i += 4096)
		samples.data[i] ^= (uint8_t)seed;
	CHECK_OK(dict_train(samples.data, sizes, 300, &dict));
	CHECK(dict.len > 1000 && dict.len <= DICT_TRAIN_BYTES);
	CHECK_OK(dict_object_encode(&key, &dict, NULL, 0, object, number));
	CHECK(*number != 0 && *number <= CHUNK_DICT_NUMBER_MAX);
	CHECK_OK(dict_object_decode(&key, *number, object->data, object->len, &bytes, &len));
	CHECK(len == dict.len && memcmp(bytes, dict.data, len) == 0);
	CHECK_OK(chunk_dict_new(*number, bytes, len, 3, &d));
	CHECK(d && chunk_dict_number(d) == *number);
	buf_free(&samples);
	buf_free(&dict);
	return d;
}

static void test_dict_train_too_little(void)
{
	struct buf samples = BUF_INIT, dict = BUF_INIT;
	size_t sizes[10];

	make_samples(&samples, sizes, 10);
	CHECK_ERR(dict_train(samples.data, sizes, 10, &dict), -ENODATA);
	buf_free(&samples);
	buf_free(&dict);
}

static void test_dict_flags(void)
{
	CHECK(chunk_flags_valid(0));
	CHECK(chunk_flags_valid(CHUNK_FLAG_RAW));
	CHECK(chunk_flags_valid(CHUNK_FLAG_DICT | 5u << CHUNK_DICT_SHIFT));
	CHECK(!chunk_flags_valid(CHUNK_FLAG_DICT));                /* no number */
	CHECK(!chunk_flags_valid(CHUNK_FLAG_RAW | CHUNK_FLAG_DICT | 5u << CHUNK_DICT_SHIFT));
	CHECK(!chunk_flags_valid(0x10));
	CHECK(!chunk_flags_valid(5u << CHUNK_DICT_SHIFT));         /* a number without the flag */
	CHECK(chunk_flags_dict(CHUNK_FLAG_DICT | 0xabcdefu << CHUNK_DICT_SHIFT) == 0xabcdef);
	CHECK(chunk_flags_dict(CHUNK_FLAG_RAW) == 0);
	CHECK(dict_name_number("dicts/00abcd") == 0xabcd);
	CHECK(dict_name_number("dicts/00abc") == 0 && dict_name_number("dicts/00abcg") == 0 &&
	      dict_name_number("packs/00abcd") == 0);
}

static const struct chunk_dict *resolver_dict;

static int resolve(void *ctx, uint32_t number, const struct chunk_dict **out)
{
	if (!resolver_dict || chunk_dict_number(resolver_dict) != number)
		return hb_err(-ENOENT, "dictionary dicts/%06x is missing", number);
	*out = resolver_dict;
	return 0;
}

static void test_dict_roundtrip(void)
{
	struct buf object = BUF_INIT, object2 = BUF_INIT, blob = BUF_INIT, plain = BUF_INIT,
		   out = BUF_INIT;
	uint32_t number, number2, flags, pflags;
	struct chunk_dict *d = make_dict(&object, &number, 0), *d2 = make_dict(&object2, &number2, 7);
	uint8_t *data = malloc(100000);
	char want[64];
	struct oid id;

	CHECK(number != number2);
	for (size_t len = 1; len <= 100000; len = len * 3 + 7) {
		fill_text(data, len, len);
		oid_compute(&key, data, len, &id);
		CHECK_OK(chunk_encode(3, d, data, len, &blob, &flags));
		CHECK_OK(chunk_encode(3, NULL, data, len, &plain, &pflags));
		CHECK(!chunk_flags_dict(pflags));
		if (len > CHUNK_DICT_MAX_RAW_BYTES) {
			CHECK(!chunk_flags_dict(flags)); /* large chunks go without */
		} else if (len >= 64) {
			CHECK(flags == (CHUNK_FLAG_DICT | number << CHUNK_DICT_SHIFT));
			CHECK(blob.len < plain.len); /* the point of it */
		}
		CHECK_OK(chunk_decode_dict(&key, chunk_flags_dict(flags) ? d : NULL, &id, blob.data,
					   blob.len, (uint32_t)len, flags, &out));
		CHECK(out.len == len && memcmp(out.data, data, len) == 0);
		/* A chunk without dictionary reads as before. */
		CHECK_OK(chunk_decode_dict(&key, NULL, &id, plain.data, plain.len, (uint32_t)len,
					   pflags, &out));
		CHECK_OK(chunk_decode(&key, &id, plain.data, plain.len, (uint32_t)len, pflags, &out));
		CHECK(out.len == len && memcmp(out.data, data, len) == 0);
		if (!chunk_flags_dict(flags))
			continue;
		/* Missing or wrong dictionary: an error naming it, no data. */
		snprintf(want, sizeof(want), "dictionary %06x", number);
		CHECK_ERR(chunk_decode_dict(&key, NULL, &id, blob.data, blob.len, (uint32_t)len, flags,
					    &out), -EBADMSG);
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL && out.len == 0);
		CHECK_ERR(chunk_decode_dict(&key, d2, &id, blob.data, blob.len, (uint32_t)len, flags,
					    &out), -EBADMSG);
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL && out.len == 0);
		/* Through the resolver of the key: none, the wrong one, the right one. */
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags, &out),
			  -EBADMSG);
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL);
		CHECK_OK(chunk_dict_resolver_add(&key, resolve, NULL));
		resolver_dict = d2;
		CHECK_ERR(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags, &out),
			  -EBADMSG);
		snprintf(want, sizeof(want), "dicts/%06x is missing", number);
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL && out.len == 0);
		resolver_dict = d;
		CHECK_OK(chunk_decode(&key, &id, blob.data, blob.len, (uint32_t)len, flags, &out));
		CHECK(out.len == len && memcmp(out.data, data, len) == 0);
		chunk_dict_resolver_remove(&key);
		/* Another dictionary passed off under the right number. */
		{
			struct chunk_dict *forged = NULL;
			const uint8_t *bytes;
			size_t blen;

			CHECK_OK(dict_object_decode(&key, number2, object2.data, object2.len, &bytes,
						    &blen));
			CHECK_OK(chunk_dict_new(number, bytes, blen, 3, &forged));
			CHECK_ERR(chunk_decode_dict(&key, forged, &id, blob.data, blob.len,
						    (uint32_t)len, flags, &out), -EBADMSG);
			CHECK(out.len == 0);
			chunk_dict_free(forged);
		}
	}
	chunk_dict_free(d);
	chunk_dict_free(d2);
	free(data);
	buf_free(&object);
	buf_free(&object2);
	buf_free(&blob);
	buf_free(&plain);
	buf_free(&out);
}

/* Every damage to a dictionary object is refused, naming it. */
static void test_dict_object_damage(void)
{
	struct buf object = BUF_INIT;
	uint32_t number, taken[1];
	struct chunk_dict *d = make_dict(&object, &number, 0);
	const uint8_t *bytes;
	size_t len;
	char want[32];

	snprintf(want, sizeof(want), "dicts/%06x", number);
	for (size_t i = 0; i < object.len; i += object.len / 97 + 1) {
		object.data[i] ^= 0x40;
		CHECK_ERR(dict_object_decode(&key, number, object.data, object.len, &bytes, &len),
			  -EBADMSG);
		CHECK(strstr(hb_errmsg(-EBADMSG), want) != NULL);
		object.data[i] ^= 0x40;
	}
	CHECK_ERR(dict_object_decode(&key, number, object.data, object.len - 1, &bytes, &len),
		  -EBADMSG);
	CHECK_ERR(dict_object_decode(&key, number, object.data, 10, &bytes, &len), -EBADMSG);
	CHECK_ERR(dict_object_decode(&key, number ^ 1, object.data, object.len, &bytes, &len),
		  -EBADMSG);
	CHECK_ERR(dict_object_decode(&other_key, number, object.data, object.len, &bytes, &len),
		  -EBADMSG);
	CHECK_OK(dict_object_decode(&key, number, object.data, object.len, &bytes, &len));
	/* A number already taken is never given again. */
	{
		struct buf dict = BUF_INIT, again = BUF_INIT;
		uint32_t n2;

		CHECK_OK(buf_append(&dict, bytes, len));
		taken[0] = number;
		CHECK_OK(dict_object_encode(&key, &dict, taken, 1, &again, &n2));
		CHECK(n2 != number && n2 != 0);
		buf_free(&dict);
		buf_free(&again);
	}
	chunk_dict_free(d);
	buf_free(&object);
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
	test_dict_flags();
	test_dict_train_too_little();
	test_dict_roundtrip();
	test_dict_object_damage();
	TEST_MAIN_END();
}
