/* Percent-encoding of URI components (RFC 3986: all but A-Z a-z 0-9 - . _ ~
 * are escaped), as S3 signing and query strings need it. */
#pragma once
#include <stddef.h>

struct buf;

/* Encode in into out (NUL-terminated); keep_slash leaves '/' as is (object
 * keys in paths).  @return the encoded length or -ENAMETOOLONG. */
int uri_encode(const char *in, int keep_slash, char *out, size_t outsz);
/* Append in, encoded ('/' too), to b.  @return 0 or -ENOMEM / -EFBIG. */
int uri_encode_append(struct buf *b, const char *in);
