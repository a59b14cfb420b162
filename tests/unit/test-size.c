/* Sizes as options and the environment give them (util/size.c). */
#include "util/size.h"

#include <errno.h>

#include "test.h"

static void test_accepted(void)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = {
		{ "4096", 4096 },       { "0", 0 },
		{ "512M", 512ull << 20 }, { "512m", 512ull << 20 },
		{ "1.5G", 3ull << 29 },  { "20GiB", 20ull << 30 },
		{ "64KB", 64ull << 10 }, { "2T", 2ull << 40 },
		{ "16777215T", 16777215ull << 40 }, /* just below 2^64 */
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;

		CHECK_OK(size_parse(ok[i].text, &v));
		CHECK(v == ok[i].bytes);
	}
}

static void test_refused(void)
{
	/* Each would have been a surprise: a negative that wraps, NaN or
	 * infinity converted (undefined), 2^64 and beyond, unknown units. */
	static const char *bad[] = { "", "G", "-1", "-1G", "nan", "inf", "1e30T", "16777216T",
				     "12Q", "1 G", "1GG", "0x", "5MiBs" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;

		CHECK_ERR(size_parse(bad[i], &v), -EINVAL);
		CHECK(v == 7);
	}
}

static void test_durations(void)
{
	static const struct {
		const char *text;
		int64_t sec;
	} ok[] = { { "0", 0 }, { "90", 90 }, { "45s", 45 }, { "90m", 5400 }, { "12h", 43200 },
		   { "30d", 2592000 }, { "2w", 1209600 } };
	static const char *bad[] = { "", "d", "-1d", "+1d", " 1d", "1.5d", "1y", "1dd", "1D",
				     "99999999999999999999", "9223372036854775807w" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t v = -1;

		CHECK_OK(duration_parse(ok[i].text, &v));
		CHECK(v == ok[i].sec);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v = 7;

		CHECK_ERR(duration_parse(bad[i], &v), -EINVAL);
		CHECK(v == 7);
	}
}

int main(void)
{
	test_accepted();
	test_refused();
	test_durations();
	TEST_MAIN_END();
}
