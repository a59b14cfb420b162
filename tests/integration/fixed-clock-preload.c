/* LD_PRELOAD shim that stops the wall clock: clock_gettime(CLOCK_REALTIME)
 * answers FIXED_CLOCK_SEC (seconds since the epoch, nanoseconds 0) when
 * that is set; every other clock, and the call without it, goes to libc.
 *
 * A manifest records when its snapshot was taken, to the nanosecond, and
 * its name is the keyed hash of its bytes: `hiberbox snapshot create` of
 * the same tree at the same stopped time, in a twin repository with the
 * same secret, names the manifest the next create writes, so a test can
 * put a damaged object there first.  CLOCK_REALTIME_COARSE (create's
 * "changed during the walk" mark) and the monotonic clocks keep running. */
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

/* the project builds with -fvisibility=hidden: this must be seen to stand
 * in for libc's */
#define EXPORTED __attribute__((visibility("default")))

EXPORTED int clock_gettime(clockid_t clock, struct timespec *ts)
{
	int (*real)(clockid_t, struct timespec *) = dlsym(RTLD_NEXT, "clock_gettime");
	const char *fixed = getenv("FIXED_CLOCK_SEC");

	if (clock == CLOCK_REALTIME && fixed && fixed[0]) {
		ts->tv_sec = (time_t)strtoll(fixed, NULL, 10);
		ts->tv_nsec = 0;
		return 0;
	}
	return real(clock, ts);
}
