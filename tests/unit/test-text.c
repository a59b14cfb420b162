/* Text for JSON (util/text.c): UTF-8 validation as JSON parsers do it, and
 * the escape of names that are not UTF-8. */
#include "util/json-text.h"
#include "util/text.h"

#include <string.h>

#include "test.h"

static void test_valid(void)
{
	static const char *ok[] = {
		"", "plain ascii/path", "caf\xc3\xa9",          /* U+00E9 */
		"\xe2\x82\xac", "\xef\xbf\xbf",                 /* U+20AC, U+FFFF */
		"\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",         /* U+1F600, U+10FFFF */
		"\xed\x9f\xbf", "\xee\x80\x80",                 /* either side of the surrogates */
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		CHECK(utf8_valid(ok[i], strlen(ok[i])));
}

static void test_invalid(void)
{
	static const char *bad[] = {
		"\xff", "dir\xfe", "\x80", "a\xbf",             /* bytes no UTF-8 has; lone continuations */
		"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",         /* overlong forms */
		"\xf0\x80\x80\x80", "\xe0\x9f\xbf",
		"\xed\xa0\x80", "\xed\xbf\xbf",                 /* surrogates */
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80",         /* past U+10FFFF */
		"\xc3", "\xe2\x82", "\xf0\x9f\x98",             /* cut short at the end */
		"\xc3(", "\xe2\x28\xa1",                        /* a continuation missing */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!utf8_valid(bad[i], strlen(bad[i])));
}

static void test_for_json(void)
{
	char out[64];

	/* UTF-8 comes back as itself, not copied */
	const char *s = "caf\xc3\xa9 ok";
	CHECK(text_for_json(s, out, sizeof(out)) == s);
	/* otherwise every byte >= 0x80 is \xNN (also the valid ones beside it) */
	CHECK(strcmp(text_for_json("d\xfe/caf\xc3\xa9", out, sizeof(out)), "d\\xfe/caf\\xc3\\xa9") == 0);
	/* cut at the buffer, never mid-escape, always terminated */
	CHECK(strcmp(text_for_json("ab\xff\xff", out, 7), "ab\\xff") == 0);
	CHECK(strcmp(text_for_json("ab\xff\xff", out, 6), "ab") == 0);
	CHECK(strcmp(text_for_json("\xff", out, 1), "") == 0);
}

static void test_json_object_text(void)
{
	json_t *o = json_object();
	char out[64];

	/* UTF-8: one key, read back as itself */
	CHECK(json_object_set_text(o, "a", "caf\xc3\xa9") == 0);
	CHECK(!json_object_get(o, "a_hex"));
	CHECK(json_object_get_text(o, "a", out, sizeof(out)) && !strcmp(out, "caf\xc3\xa9"));
	/* not UTF-8: escaped to read, exact in "_hex", and the bytes come back */
	CHECK(json_object_set_text(o, "b", "n\xff\x01") == 0);
	CHECK(!strcmp(json_string_value(json_object_get(o, "b")), "n\\xff\x01"));
	CHECK(!strcmp(json_string_value(json_object_get(o, "b_hex")), "6eff01"));
	CHECK(json_object_get_text(o, "b", out, sizeof(out)) && !strcmp(out, "n\xff\x01"));
	/* bad hex, an odd length, a NUL byte, too long, missing: NULL and "" */
	json_object_set_new(o, "c", json_string("x"));
	json_object_set_new(o, "c_hex", json_string("6g"));
	CHECK(!json_object_get_text(o, "c", out, sizeof(out)) && !out[0]);
	json_object_set_new(o, "c_hex", json_string("616"));
	CHECK(!json_object_get_text(o, "c", out, sizeof(out)) && !out[0]);
	json_object_set_new(o, "c_hex", json_string("6100"));
	CHECK(!json_object_get_text(o, "c", out, sizeof(out)) && !out[0]);
	CHECK(!json_object_get_text(o, "b", out, 3) && !out[0]);
	CHECK(!json_object_get_text(o, "a", out, 5) && !out[0]);
	CHECK(!json_object_get_text(o, "none", out, sizeof(out)) && !out[0]);
	json_decref(o);
}

int main(void)
{
	test_valid();
	test_invalid();
	test_for_json();
	test_json_object_text();
	TEST_MAIN_END();
}
