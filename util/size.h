/* Sizes as people write them: "512M", "1.5G", "20GiB", "1048576". */
#pragma once
#include <stdint.h>

/* Binary multiples (K = 1024); an optional "i" and "B" after the unit.
 * @return 0, or -EINVAL for anything else (negative, NaN, past 2^64). */
int size_parse(const char *s, uint64_t *out);
