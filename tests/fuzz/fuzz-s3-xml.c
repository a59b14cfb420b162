/* Fuzz target: any bytes as an S3 server's reply.
 *
 * Replies come from whatever answers at the configured endpoint, so the
 * listing parser, the entity decoder and the date parser must turn anything
 * into a clean error, never read past the reply (the input is not
 * NUL-terminated, as a curl body is not) and never write past their buffers.
 * What does parse must keep the promises the callers rely on: keys are
 * NUL-terminated, non-empty and within S3's limit, and a decoded text is as
 * long as the decoder says.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3-int.h"
#include "util/error.h"

static int seen_key(const char *key, const struct s3_object_info *info, void *arg)
{
	size_t *keys = arg;
	size_t len = strnlen(key, S3_KEY_MAX + 1);

	if (len == 0 || len > S3_KEY_MAX || strnlen(info->etag, sizeof(info->etag)) ==
							sizeof(info->etag))
		abort();
	return ++*keys >= 1000; /* also exercise a callback that stops the page */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size heap copy: ASan sees any read past the end. */
	char *page = malloc(size ? size : 1), *keybuf = malloc(S3_KEY_MAX + 1);
	char token[1024], small[8];
	const char *v;
	size_t vlen, keys = 0;
	int64_t sec;
	int more, fn_ret, n;

	if (!page || !keybuf)
		abort();
	memcpy(page, data, size);
	if (s3_list_parse_page(page, size, seen_key, &keys, &fn_ret, keybuf, token,
			       sizeof(token), &more) == 0 &&
	    more && strnlen(token, sizeof(token)) == sizeof(token))
		abort();
	/* The other replies: an error's <Code>/<Message>, an upload's <UploadId>. */
	if (s3_xml_find(page, page + size, "Message", &v, &vlen)) {
		char *out = malloc(vlen + 1);

		if (!out)
			abort();
		n = s3_xml_text(v, vlen, out, vlen + 1);
		if (n >= 0 && (size_t)n != strlen(out))
			abort();
		free(out);
	}
	n = s3_xml_text(page, size, small, sizeof(small));
	if (n >= 0 && ((size_t)n >= sizeof(small) || (size_t)n != strlen(small)))
		abort();
	s3_parse_iso8601(page, size, &sec);
	hb_err_clear();
	free(keybuf);
	free(page);
	return 0;
}
