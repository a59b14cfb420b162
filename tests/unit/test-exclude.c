/* Exclude patterns (snapshot/exclude.c): names at any depth, paths from the
 * root component by component, "**" in the middle (zero or more) and at the
 * end (one or more), and the patterns refused with a message. */
#include "snapshot/exclude.h"

#include <errno.h>

#include "test.h"
#include "util/error.h"

struct match_case {
	const char *dir, *name;
	bool out;
};

static void check_cases(const char *const *pats, size_t npats, const struct match_case *cases,
			size_t n)
{
	struct exclude_set *s = NULL;

	CHECK_OK(exclude_set_new(pats, npats, &s));
	for (size_t i = 0; s && i < n; i++) {
		bool got = exclude_set_match(s, cases[i].dir, cases[i].name);

		CHECK(got == cases[i].out);
		if (got != cases[i].out)
			fprintf(stderr, "  '%s' in '%s' (first pattern '%s'): %s\n", cases[i].name,
				cases[i].dir, pats[0], got ? "excluded" : "kept");
	}
	exclude_set_free(s);
}

#define CASES(pats, cases)                                                                   \
	check_cases(pats, sizeof(pats) / sizeof(pats[0]), cases, sizeof(cases) / sizeof(cases[0]))

static void test_names_and_paths(void)
{
	static const char *const pats[] = { "*.o", "node_modules", "/build/out/", "cache/*.tmp",
					    "sp ace", "./top//dir" };
	static const struct match_case cases[] = {
		{ "", "a.o", true }, { "x/y", "b.o", true }, { "x", "a.c", false },
		{ "", "node_modules", true }, { "a/b", "node_modules", true },
		{ "", "node_modules2", false },
		{ "build", "out", true }, { "keep/build", "out", false }, { "", "build", false },
		{ "build/out", "x", false }, /* below: never asked, the walk stops at out */
		{ "cache", "x.tmp", true }, { "cache/sub", "x.tmp", false }, /* '*' stops at '/' */
		{ "other/cache", "x.tmp", false },                           /* from the root */
		{ "", "sp ace", true }, { "", "space", false },
		{ "top", "dir", true }, { "x/top", "dir", false }, /* "." and "//" folded */
	};

	CASES(pats, cases);
}

static void test_globstar(void)
{
	static const char *const any_depth[] = { "**/dist" };
	static const struct match_case any_depth_cases[] = {
		{ "", "dist", true }, { "a", "dist", true }, { "a/b/c", "dist", true },
		{ "dist", "x", false }, { "", "dist2", false },
	};
	static const char *const middle[] = { "src/**/test", "/a/**/b/**/c.txt" };
	static const struct match_case middle_cases[] = {
		{ "src", "test", true }, { "src/x", "test", true }, { "src/x/y/z", "test", true },
		{ "other/src", "test", false }, { "src/x", "test2", false },
		{ "a/b", "c.txt", true }, { "a/x/b/y/y", "c.txt", true }, { "a", "c.txt", false },
		{ "a/b/b/b", "c.txt", true }, { "a/c", "c.txt", false },
	};
	static const char *const trailing[] = { "cache/**", "deep/**/**/" };
	static const struct match_case trailing_cases[] = {
		{ "", "cache", false }, /* the directory stays, empty */
		{ "cache", "x", true }, { "cache/x", "y", true }, { "x", "cache", false },
		{ "", "deep", false }, { "deep", "a", true },
	};
	static const char *const alone[] = { "**" }; /* no '/': any name, like '*' */
	static const struct match_case alone_cases[] = { { "", "a", true }, { "x/y", ".b", true } };

	CASES(any_depth, any_depth_cases);
	CASES(middle, middle_cases);
	CASES(trailing, trailing_cases);
	CASES(alone, alone_cases);
}

static void test_refused(void)
{
	static const char *const bad[][1] = { { "" }, { "/" }, { "a/../b" }, { "./" }, { "../x" } };
	struct exclude_set *s = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_ERR(exclude_set_new(bad[i], 1, &s), -EINVAL);
		CHECK(s == NULL);
		CHECK(strstr(hb_errmsg(-EINVAL), "exclude pattern") != NULL);
	}
	/* a bad one after good ones frees the good ones (ASan would tell) */
	static const char *const mixed[] = { "*.o", "a/b", "x/.." };
	CHECK_ERR(exclude_set_new(mixed, 3, &s), -EINVAL);

	/* no patterns, and no set at all, exclude nothing */
	CHECK_OK(exclude_set_new(NULL, 0, &s));
	CHECK(s && !exclude_set_match(s, "", "a.o"));
	exclude_set_free(s);
	CHECK(!exclude_set_match(NULL, "", "a.o"));
}

int main(void)
{
	test_names_and_paths();
	test_globstar();
	test_refused();
	TEST_MAIN_END();
}
