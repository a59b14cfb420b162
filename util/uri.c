/* Percent-encoding of URI components (uri.h). */
#include <errno.h>
#include <string.h>

#include "util/buf.h"
#include "util/uri.h"

int uri_encode(const char *in, int keep_slash, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			    *p == '~' || (keep_slash && *p == '/');
		if (o + (plain ? 1 : 3) >= outsz)
			return -ENAMETOOLONG;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= outsz)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return (int)o;
}

int uri_encode_append(struct buf *b, const char *in)
{
	size_t room = 3 * strlen(in) + 1; /* every byte escaped, and the NUL */
	int r = buf_reserve(b, room);

	if (r < 0)
		return r;
	r = uri_encode(in, 0, (char *)b->data + b->len, room);
	if (r < 0)
		return r;
	b->len += (size_t)r;
	return 0;
}
