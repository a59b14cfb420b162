/* FUSE over io_uring (Linux 6.14+, fuse module parameter enable_uring=Y):
 * requests reach the fs through per-CPU io_uring queues instead of read()
 * on /dev/fuse, and a reply and the wait for the next request are one
 * io_uring_enter.  Each queue is served by threads pinned to its CPU, so a
 * request is served on the CPU of the process that made it: no wake-up of
 * another CPU per request, which is what a FUSE round trip mostly costs on
 * a virtual machine.
 *
 * The kernel keeps sending FORGET and INTERRUPT through /dev/fuse, and every
 * request until each CPU's queue has a registered entry, so libfuse's own
 * loop keeps running beside the rings; where the rings cannot be set up the
 * mount simply stays on /dev/fuse. */
#ifndef HIBERBOX_FS_URING_H
#define HIBERBOX_FS_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_session;
struct hbfs_uring;

/* What a request needs before libfuse parses it (the same as for one read
 * from /dev/fuse); returns its new length. */
typedef size_t (*uring_prepare_fn)(void *buf, size_t len);

/* FUSE_OVER_IO_URING in fuse_init_in/out's flags2 (bit 41 of the flags). */
#define URING_INIT_FLAG2 (1u << 9)

/* Whether the kernel offers FUSE over io_uring: it does when the fuse
 * module's enable_uring parameter is set, which this turns on as root
 * (libfuse 3.14 reads INIT before a custom I/O can look at the flags). */
bool uring_enable(void);

/* Prepares the queues for session se on /dev/fuse descriptor fd; their
 * threads are started, and register their entries, by uring_go.  payload is
 * the largest request or reply argument (max_write, max_pages). */
int uring_start(struct fuse_session *se, int fd, size_t payload, uring_prepare_fn prepare,
		struct hbfs_uring **out);
/* The INIT reply (with URING_INIT_FLAG2) has been written: start the
 * queue threads, which register as they come up. */
void uring_go(struct hbfs_uring *u);
/* Stops and joins the threads and frees u (NULL is fine). */
void uring_stop(struct hbfs_uring *u);
/* Whether any request was served through a ring (tests, `mounts`). */
unsigned long uring_served(const struct hbfs_uring *u);

/* Called with every reply libfuse writes: a reply to the request this thread
 * is serving from a ring goes into that ring's entry (sent with the wait
 * for the next request) and true is returned with *res set as writev's
 * would be; anything else is for /dev/fuse. */
bool uring_take_reply(const struct iovec *iov, int count, ssize_t *res);

#endif
