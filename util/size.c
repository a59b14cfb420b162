#include "util/size.h"

#include <errno.h>
#include <stdlib.h>

int size_parse(const char *s, uint64_t *out)
{
	char *end;
	double v, bytes;
	uint64_t mult = 1;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case 't': case 'T': mult = 1ull << 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	bytes = v * (double)mult;
	/* written as a positive test so that NaN fails it; converting NaN,
	 * infinity or anything past 2^64 would be undefined */
	if (*end || !(bytes >= 0 && bytes < 18446744073709551616.0))
		return -EINVAL;
	*out = (uint64_t)bytes;
	return 0;
}

int duration_parse(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mult = 1;

	if (*s < '0' || *s > '9') /* no sign, no space */
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 's': end++; break;
	case 'm': mult = 60; end++; break;
	case 'h': mult = 3600; end++; break;
	case 'd': mult = 86400; end++; break;
	case 'w': mult = 7 * 86400; end++; break;
	default: break;
	}
	if (*end || v > INT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}
