/* Sizes and durations as people write them: "512M", "1.5G", "20GiB",
 * "1048576"; "30d", "12h", "90". */
#pragma once
#include <stdint.h>

/* Binary multiples (K = 1024); an optional "i" and "B" after the unit.
 * @return 0, or -EINVAL for anything else (negative, NaN, past 2^64). */
int size_parse(const char *s, uint64_t *out);

/* Whole seconds: a number with an optional unit s, m, h, d or w ("30d").
 * @return 0, or -EINVAL (a sign, a fraction, another unit, overflow). */
int duration_parse(const char *s, int64_t *out);
