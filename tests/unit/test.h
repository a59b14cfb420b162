/* A tiny test harness: CHECK() records failures and keeps going; main()
 * returns non-zero if any check failed.  Output is one line per failure. */
#pragma once
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		test_checks++;                                                                 \
		if (!(cond)) {                                                                 \
			test_failures++;                                                       \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                              \
	} while (0)

/* An int-returning call expected to succeed (>= 0). */
#define CHECK_OK(expr)                                                                         \
	do {                                                                                   \
		long long _r = (long long)(expr);                                              \
		test_checks++;                                                                 \
		if (_r < 0) {                                                                  \
			test_failures++;                                                       \
			fprintf(stderr, "%s:%d: %s failed: %lld (%s)\n", __FILE__, __LINE__,      \
				#expr, _r, hb_errmsg((int)_r));                                \
		}                                                                              \
	} while (0)

/* An int-returning call expected to fail with exactly err (negative errno). */
#define CHECK_ERR(expr, err)                                                                   \
	do {                                                                                   \
		long long _r = (long long)(expr);                                              \
		test_checks++;                                                                 \
		if (_r != (err)) {                                                             \
			test_failures++;                                                       \
			fprintf(stderr, "%s:%d: %s returned %lld, expected %d\n", __FILE__,       \
				__LINE__, #expr, _r, (int)(err));                              \
		}                                                                              \
	} while (0)

#define TEST_MAIN_END()                                                                        \
	do {                                                                                   \
		printf("%d checks, %d failed\n", test_checks, test_failures);                  \
		return test_failures ? 1 : 0;                                                  \
	} while (0)
