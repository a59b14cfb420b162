#include "util/error.h"

#include <stdio.h>
#include <string.h>

#define ERR_MSG_BYTES 1024

static _Thread_local char err_msg[ERR_MSG_BYTES];
static _Thread_local int err_code;

/* Through a copy: hb_err(r, "%s", hb_errmsg(r)) must keep the message. */
static int record(int r, int with_reason, const char *fmt, va_list ap)
{
	char msg[ERR_MSG_BYTES];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_reason)
		snprintf(err_msg, sizeof(err_msg), "%s: %s", msg, strerror(r < 0 ? -r : r));
	else
		memcpy(err_msg, msg, sizeof(err_msg));
	err_code = r;
	return r;
}

int hb_err(int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = record(r, 0, fmt, ap);
	va_end(ap);
	return r;
}

int hb_err_sys(int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = record(r, 1, fmt, ap);
	va_end(ap);
	return r;
}

int hb_err_ctx(int r, const char *fmt, ...)
{
	char prefix[ERR_MSG_BYTES], old[ERR_MSG_BYTES];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (err_code != 0 && err_msg[0])
		snprintf(old, sizeof(old), "%s", err_msg);
	else
		snprintf(old, sizeof(old), "%s", strerror(r < 0 ? -r : r));
	snprintf(err_msg, sizeof(err_msg), "%s: %s", prefix, old);
	err_code = r;
	return r;
}

const char *hb_errmsg(int r)
{
	if (err_code != 0 && err_msg[0])
		return err_msg;
	return strerror(r < 0 ? -r : r);
}

void hb_err_clear(void)
{
	err_code = 0;
	err_msg[0] = '\0';
}

void hb_err_save(char *dst, unsigned size)
{
	if (size == 0)
		return;
	snprintf(dst, size, "%s", err_code ? err_msg : "");
}
