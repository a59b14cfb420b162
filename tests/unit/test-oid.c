/* Object ids: keyed hashing, byte order, hex format and parse. */
#include "snapshot/oid.h"

#include <xxhash.h>

#include "test.h"

static void make_key(struct repo_key *k, uint8_t seed)
{
	for (int i = 0; i < REPO_KEY_BYTES; i++)
		k->secret[i] = (uint8_t)(seed + i * 37 + (i >> 3));
}

static void test_compute(void)
{
	struct repo_key k1, k2;
	struct oid a, b, c;
	XXH128_hash_t h;
	const char *msg = "hello, hiberbox";

	make_key(&k1, 1);
	make_key(&k2, 2);
	oid_compute(&k1, msg, strlen(msg), &a);
	oid_compute(&k1, msg, strlen(msg), &b);
	CHECK(oid_equal(&a, &b));
	oid_compute(&k2, msg, strlen(msg), &c);
	CHECK(!oid_equal(&a, &c));
	oid_compute(&k1, msg, strlen(msg) - 1, &c);
	CHECK(!oid_equal(&a, &c));

	/* Canonical big-endian order of the 128-bit value. */
	h = XXH3_128bits_withSecret(msg, strlen(msg), k1.secret, REPO_KEY_BYTES);
	for (int i = 0; i < 8; i++) {
		CHECK(a.b[i] == (uint8_t)(h.high64 >> (56 - 8 * i)));
		CHECK(a.b[8 + i] == (uint8_t)(h.low64 >> (56 - 8 * i)));
	}
	/* The empty input has an id, and it is not the hole id. */
	oid_compute(&k1, "", 0, &c);
	CHECK(!oid_is_zero(&c));
	CHECK(oid_hash64(&a) != oid_hash64(&c));
}

static void test_format_parse(void)
{
	struct repo_key k;
	struct oid a, b, zero = { { 0 } };
	char hex[OID_HEX_BYTES], bad[40];

	make_key(&k, 9);
	oid_compute(&k, "x", 1, &a);
	CHECK(oid_format(&a, hex) == hex);
	CHECK(strlen(hex) == 32);
	for (int i = 0; i < 32; i++)
		CHECK((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
	CHECK_OK(oid_parse(hex, &b));
	CHECK(oid_equal(&a, &b));
	CHECK(oid_is_zero(&zero));
	CHECK(!strcmp(oid_format(&zero, hex), "00000000000000000000000000000000"));

	CHECK_OK(oid_parse("0123456789abcdefABCDEF0123456789", &b));
	CHECK(b.b[0] == 0x01 && b.b[7] == 0xef && b.b[8] == 0xab && b.b[15] == 0x89);

	/* Refused: short, long, non-hex, empty, NULL; out untouched. */
	b = a;
	CHECK_ERR(oid_parse("0123456789abcdef0123456789abcde", &b), -EINVAL);
	CHECK_ERR(oid_parse("0123456789abcdef0123456789abcdef0", &b), -EINVAL);
	CHECK_ERR(oid_parse("0123456789abcdef0123456789abcdeg", &b), -EINVAL);
	CHECK_ERR(oid_parse("g123456789abcdef0123456789abcdef", &b), -EINVAL);
	CHECK_ERR(oid_parse(" 0123456789abcdef0123456789abcde", &b), -EINVAL);
	CHECK_ERR(oid_parse("", &b), -EINVAL);
	CHECK_ERR(oid_parse(NULL, &b), -EINVAL);
	CHECK(oid_equal(&a, &b));
	memset(bad, '0', sizeof(bad));
	bad[39] = '\0';
	bad[10] = '\0'; /* a NUL inside the first 32 */
	CHECK_ERR(oid_parse(bad, &b), -EINVAL);
}

int main(void)
{
	test_compute();
	test_format_parse();
	TEST_MAIN_END();
}
