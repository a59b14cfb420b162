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
