/* Failure reports of the sandbox child, shared by the library's child half
 * and the sandbox-init program: a fixed-size record over a pipe, written
 * without allocating (see sandbox-int.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

size_t child_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = 0;
	if (!src)
		src = "";
	while (src[n] && n + 1 < size) {
		dst[n] = src[n];
		n++;
	}
	if (size)
		dst[n] = '\0';
	return n;
}

int child_err(struct child_ctx *c, int err, const char *step, const char *detail)
{
	c->fail_step = step;
	c->fail_detail = detail;
	return err;
}

_Noreturn void child_fail(struct child_ctx *c, int err)
{
	struct child_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.err = err < 0 ? -err : (err ? err : EIO);
	child_strlcpy(rep.step, c->fail_step ? c->fail_step : "setup", sizeof(rep.step));
	child_strlcpy(rep.detail, c->fail_detail, sizeof(rep.detail));
	/* A pipe write of less than PIPE_BUF bytes is atomic: the parent sees
	 * the whole record or nothing. */
	ssize_t w = write(c->err_fd, &rep, sizeof(rep));
	(void)w;
	_exit(127);
}
