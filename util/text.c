/* Text for JSON (util/text.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/text.h"

bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned c = *p, n;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false; /* a continuation byte first, 0xc0/0xc1, or > 0xf4 */
		}
		if ((size_t)(end - p) <= n)
			return false;
		for (unsigned k = 1; k <= n; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

const char *text_for_json(const char *s, char *out, size_t size)
{
	size_t o = 0;

	if (utf8_valid(s, strlen(s)) || size == 0)
		return s;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		size_t need = *p < 0x80 ? 1 : 4;

		if (o + need >= size)
			break;
		if (*p < 0x80)
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *p);
	}
	out[o] = '\0';
	return out;
}
