/* Error messages that travel with negative errno codes.
 *
 * Every function below tools/ returns 0 (or a positive count) on success and a
 * negative errno on failure.  The errno alone rarely tells a user what went
 * wrong ("-EBADMSG" vs "pack 3fa2…: chunk 91c0… fails verification"), so the
 * function that detects a failure also records one line of text in a
 * thread-local slot.  Callers that add context prefix it; the outermost caller
 * (the CLI, the daemon's log, FUSE's reply) prints it once.
 */
#pragma once
#include <stdarg.h>

/* Record a message for error r (a negative errno) and return r, so that
 * `return hb_err(-EIO, "reading %s", path);` both sets and propagates. */
int hb_err(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* For a failed system call (or a helper that returns its errno): record
 * "<message>: strerror(-r)" and return r. */
int hb_err_sys(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context ("restore /x: " + old) and
 * return r.  If no message was recorded, the prefix is joined with strerror(-r). */
int hb_err_ctx(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the last failure in this thread; for r with no recorded
 * message, strerror(-r).  Valid until the next hb_err* call in this thread. */
const char *hb_errmsg(int r);

/* Forget the recorded message (after an error was handled). */
void hb_err_clear(void);

/* Copy this thread's message into dst (for handing an error across threads). */
void hb_err_save(char *dst, unsigned size);
