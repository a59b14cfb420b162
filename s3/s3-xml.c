/* Just enough XML for S3 replies: find <Tag>text</Tag>, decode entities.
 *
 * S3 answers in small, flat, machine-written documents (ListBucketResult,
 * Error, InitiateMultipartUploadResult).  Text never contains a raw '<'
 * (it is escaped as &lt;), so the first "<Tag>" and the next "</Tag>" after
 * it bound the value.  Every scan is bounded by the buffer's end, never by a
 * NUL, so any reply, however broken, gives "not found" or -EBADMSG.
 */
#include "s3/s3-int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

int s3_xml_find(const char *p, const char *end, const char *tag, const char **val, size_t *vlen)
{
	char open[80], close[80];
	size_t tl = strlen(tag);
	const char *a, *b;

	if (!p || p >= end || tl + 4 > sizeof(open))
		return 0;
	open[0] = '<';
	memcpy(open + 1, tag, tl);
	open[tl + 1] = '>';
	close[0] = '<';
	close[1] = '/';
	memcpy(close + 2, tag, tl);
	close[tl + 2] = '>';
	a = memmem(p, (size_t)(end - p), open, tl + 2);
	if (!a)
		return 0;
	a += tl + 2;
	b = memmem(a, (size_t)(end - a), close, tl + 3);
	if (!b)
		return 0;
	*val = a;
	*vlen = (size_t)(b - a);
	return 1;
}

static int put_utf8(unsigned long cp, char *out, size_t outsz, size_t *o)
{
	unsigned char tmp[4];
	size_t n;

	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -EBADMSG;
	if (cp < 0x80) {
		tmp[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		tmp[0] = (unsigned char)(0xC0 | cp >> 6);
		tmp[1] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (unsigned char)(0xE0 | cp >> 12);
		tmp[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		tmp[2] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		tmp[0] = (unsigned char)(0xF0 | cp >> 18);
		tmp[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		tmp[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		tmp[3] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	if (*o + n >= outsz)
		return -ENAMETOOLONG;
	memcpy(out + *o, tmp, n);
	*o += n;
	return 0;
}

int s3_xml_text(const char *val, size_t vlen, char *out, size_t outsz)
{
	static const struct {
		const char *name;
		char c;
	} ents[] = { { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' },
		     { "apos;", '\'' } };
	size_t o = 0, i = 0;
	int r;

	if (outsz == 0)
		return -ENAMETOOLONG;
	while (i < vlen) {
		if (val[i] != '&') {
			if (val[i] == '\0')
				return -EBADMSG;
			if (o + 1 >= outsz)
				return -ENAMETOOLONG;
			out[o++] = val[i++];
			continue;
		}
		i++;
		if (i < vlen && val[i] == '#') {
			unsigned long cp = 0;
			int hex = 0, digits = 0;
			i++;
			if (i < vlen && (val[i] == 'x' || val[i] == 'X')) {
				hex = 1;
				i++;
			}
			for (; i < vlen && val[i] != ';'; i++, digits++) {
				char ch = val[i];
				int d;
				if (ch >= '0' && ch <= '9')
					d = ch - '0';
				else if (hex && ch >= 'a' && ch <= 'f')
					d = ch - 'a' + 10;
				else if (hex && ch >= 'A' && ch <= 'F')
					d = ch - 'A' + 10;
				else
					return -EBADMSG;
				if (digits > 7)
					return -EBADMSG;
				cp = cp * (hex ? 16 : 10) + (unsigned long)d;
			}
			if (i >= vlen || digits == 0)
				return -EBADMSG;
			i++; /* ';' */
			if ((r = put_utf8(cp, out, outsz, &o)) < 0)
				return r;
			continue;
		}
		size_t k;
		for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
			size_t n = strlen(ents[k].name);
			if (vlen - i >= n && !memcmp(val + i, ents[k].name, n)) {
				if (o + 1 >= outsz)
					return -ENAMETOOLONG;
				out[o++] = ents[k].c;
				i += n;
				break;
			}
		}
		if (k == sizeof(ents) / sizeof(ents[0]))
			return -EBADMSG;
	}
	out[o] = '\0';
	return (int)o;
}

int s3_parse_iso8601(const char *s, size_t len, int64_t *sec)
{
	struct tm tm = { 0 };
	int v[6] = { 0 };
	/* Offsets of the fields in "YYYY-MM-DDTHH:MM:SS". */
	static const int at[6] = { 0, 5, 8, 11, 14, 17 }, width[6] = { 4, 2, 2, 2, 2, 2 };

	if (len < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return -EBADMSG;
	for (int f = 0; f < 6; f++)
		for (int k = 0; k < width[f]; k++) {
			char ch = s[at[f] + k];
			if (ch < '0' || ch > '9')
				return -EBADMSG;
			v[f] = v[f] * 10 + (ch - '0');
		}
	if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
		return -EBADMSG;
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	*sec = (int64_t)timegm(&tm);
	return 0;
}

static int parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int s3_list_parse_page(const char *page, size_t len, s3_list_fn fn, void *arg, int *fn_ret,
		       char *keybuf, char *token, size_t tokensz, int *more)
{
	const char *end = page + len, *p = page, *v;
	size_t vlen;

	*more = 0;
	*fn_ret = 0;
	if (!page || !len || !memmem(page, len, "<ListBucketResult", 17))
		return hb_err(-EBADMSG, "reply is not a ListBucketResult");
	/* <IsTruncated> comes before the entries: only a page that reaches its
	 * end tag can say it is the last one. */
	if (!memmem(page, len, "</ListBucketResult>", 19))
		return hb_err(-EBADMSG, "listing cut short");
	for (;;) {
		struct s3_object_info info = { 0 };
		const char *cv, *cend, *open;
		size_t clen;

		open = memmem(p, (size_t)(end - p), "<Contents>", 10);
		if (!open)
			break;
		/* An opened entry must close: a cut page must not end the listing early. */
		if (!s3_xml_find(open, end, "Contents", &cv, &clen))
			return hb_err(-EBADMSG, "listing cut inside an entry");
		cend = cv + clen;
		p = cend;
		if (!s3_xml_find(cv, cend, "Key", &v, &vlen) ||
		    s3_xml_text(v, vlen, keybuf, S3_KEY_MAX + 1) <= 0)
			return hb_err(-EBADMSG, "entry without a valid <Key>");
		if (!s3_xml_find(cv, cend, "Size", &v, &vlen) || parse_size(v, vlen, &info.size) < 0)
			return hb_err(-EBADMSG, "bad or missing <Size> for %s", keybuf);
		if (s3_xml_find(cv, cend, "LastModified", &v, &vlen))
			s3_parse_iso8601(v, vlen, &info.mtime_sec);
		if (s3_xml_find(cv, cend, "ETag", &v, &vlen) &&
		    s3_xml_text(v, vlen, info.etag, sizeof(info.etag)) < 0)
			info.etag[0] = '\0';
		if ((*fn_ret = fn(keybuf, &info, arg)) != 0)
			return 0;
	}
	if (!s3_xml_find(page, end, "IsTruncated", &v, &vlen))
		return hb_err(-EBADMSG, "listing without <IsTruncated>");
	if (vlen == 5 && !memcmp(v, "false", 5))
		return 0;
	if (vlen != 4 || memcmp(v, "true", 4))
		return hb_err(-EBADMSG, "bad <IsTruncated>");
	if (!s3_xml_find(page, end, "NextContinuationToken", &v, &vlen) ||
	    s3_xml_text(v, vlen, token, tokensz) <= 0)
		return hb_err(-EBADMSG, "truncated listing without a continuation token");
	*more = 1;
	return 0;
}
