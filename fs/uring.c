/* FUSE over io_uring: see uring.h.  Without liburing (Debian 12 has none
 * new enough to matter and only two rings' worth is needed): the rings are
 * set up and driven with the raw system calls.
 *
 * One thread serves one ring entry, so a request that blocks (a chunk from
 * S3, a lock held by a commit) holds up only its own thread; each CPU's
 * queue has several.  The kernel completes an entry by
 * running task work in the thread waiting on its ring, on that thread's CPU,
 * which is the CPU of the requesting process: the request is served where
 * it was made. */
#define FUSE_USE_VERSION 314
#include "fs/uring.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

/* The kernel's side (include/uapi/linux/fuse.h, protocol 7.42), which
 * Debian 12's headers predate. */
struct uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id; /* the kernel's name for the request in this entry */
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct uring_req_header {
	char in_out[128]; /* fuse_in_header in, fuse_out_header out */
	char op_in[128];  /* the request's first argument (fuse_write_in, ...) */
	struct uring_ent_in_out ent;
};

struct uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

enum { CMD_REGISTER = 1, CMD_COMMIT_AND_FETCH = 2 };

/* Threads a CPU's queue may have: enough that a few requests waiting on the
 * store do not hold up that CPU's others, few enough on a big machine (each
 * has a max_write buffer).  A queue starts with one and gains one each time
 * all it has are busy: creating a thread costs a millisecond or more on a
 * virtual machine, which a mount's start should not pay sixteen times, and
 * an idle mount keeps only a buffer per CPU. */
#define THREADS_TOTAL 16
#define THREADS_PER_CPU_MIN 2
#define SQE_BYTES 128 /* IORING_SETUP_SQE128: the command rides in the SQE */
#define RING_ENTRIES 4
#define TAG_ENTRY 1
#define TAG_STOP 2
/* Room before the payload for the request's fuse_in_header and first
 * argument, so libfuse gets header, argument and payload in one buffer as
 * from read() without the payload (up to max_write) being copied. */
#define PRE_BYTES 256

struct ring {
	int fd;
	void *sq_map, *cq_map, *sqes;
	size_t sq_len, cq_len, sqes_len;
	unsigned *sq_head, *sq_tail, *sq_array, sq_mask;
	unsigned *cq_head, *cq_tail, cq_mask;
	struct io_uring_cqe *cqes;
};

struct server {
	struct hbfs_uring *u;
	unsigned qid;
	bool started;
	pthread_t tid;
	struct ring ring;
	struct uring_req_header hdr;
	uint8_t *buf; /* PRE_BYTES, then the registered payload */
	struct iovec iov[2];
	uint64_t commit_id;
	uint64_t unique; /* the request being served */
	bool replied;
};

/* A CPU's queue: its threads are servers[q * per_queue ...]. */
struct queue {
	unsigned threads; /* created or being created (under the lock) */
	unsigned idle;	  /* waiting for a request (atomic) */
	bool grow;	  /* wants another thread (under the lock) */
};

struct hbfs_uring {
	struct fuse_session *se;
	int devfd, stop_fd;
	size_t payload;
	uring_prepare_fn prepare;
	pthread_mutex_t lock;
	bool stopping;
	bool starter_started;
	pthread_t starter; /* creates the servers, from the INIT reply on */
	pthread_cond_t grow_cond;
	unsigned nqueues, per_queue, nservers;
	struct queue *queues;
	struct server *servers;
	unsigned long served;
	int register_err; /* the first registration failure, reported once */
};

static __thread struct server *serving;

static void ring_close(struct ring *r)
{
	if (r->sqes)
		munmap(r->sqes, r->sqes_len);
	if (r->cq_map && r->cq_map != r->sq_map)
		munmap(r->cq_map, r->cq_len);
	if (r->sq_map)
		munmap(r->sq_map, r->sq_len);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static void *map_ring(int fd, size_t len, off_t what)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, what);

	return p == MAP_FAILED ? NULL : p;
}

static int ring_open(struct ring *r)
{
	struct io_uring_params p;
	uint8_t *sq, *cq;

	memset(r, 0, sizeof(*r));
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	r->fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
	if (r->fd < 0)
		return -errno;
	r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->sq_map = r->cq_map = map_ring(r->fd, r->sq_len, IORING_OFF_SQ_RING);
	} else {
		r->sq_map = map_ring(r->fd, r->sq_len, IORING_OFF_SQ_RING);
		r->cq_map = r->sq_map ? map_ring(r->fd, r->cq_len, IORING_OFF_CQ_RING) : NULL;
	}
	r->sqes_len = p.sq_entries * SQE_BYTES;
	r->sqes = r->cq_map ? map_ring(r->fd, r->sqes_len, IORING_OFF_SQES) : NULL;
	if (!r->sqes) {
		int e = -errno;

		ring_close(r);
		return e;
	}
	sq = r->sq_map;
	cq = r->cq_map;
	r->sq_head = (unsigned *)(sq + p.sq_off.head);
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

/* The next free SQE, zeroed; ring_queue makes it visible. */
static struct io_uring_sqe *ring_sqe(struct ring *r)
{
	unsigned idx = *r->sq_tail & r->sq_mask;
	struct io_uring_sqe *sqe = (void *)((uint8_t *)r->sqes + (size_t)idx * SQE_BYTES);

	memset(sqe, 0, SQE_BYTES);
	r->sq_array[idx] = idx;
	return sqe;
}

static void ring_queue(struct ring *r)
{
	__atomic_store_n(r->sq_tail, *r->sq_tail + 1, __ATOMIC_RELEASE);
}

/* Submits what is queued and waits for at least one completion. */
static int ring_enter(struct ring *r)
{
	unsigned pending = *r->sq_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);

	if (syscall(__NR_io_uring_enter, r->fd, pending, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0 &&
	    errno != EINTR && errno != EBUSY)
		return -errno;
	return 0;
}

static void queue_cmd(struct server *s, unsigned op)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);
	struct uring_cmd_req *cmd = (void *)sqe->cmd;

	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = s->u->devfd;
	sqe->cmd_op = op;
	sqe->user_data = TAG_ENTRY;
	if (op == CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)s->iov;
		sqe->len = 2;
	} else {
		cmd->commit_id = s->commit_id;
	}
	cmd->qid = (uint16_t)s->qid;
	ring_queue(&s->ring);
}

static void queue_stop_poll(struct server *s)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);

	sqe->opcode = IORING_OP_POLL_ADD;
	sqe->fd = s->u->stop_fd;
	sqe->poll32_events = POLLIN;
	sqe->user_data = TAG_STOP;
	ring_queue(&s->ring);
}

static void reply_error(struct server *s, int err)
{
	struct fuse_out_header *out = (void *)s->hdr.in_out;

	out->error = -err;
	out->unique = s->unique;
	out->len = sizeof(*out);
	s->hdr.ent.payload_sz = 0;
	s->replied = true;
}

/* The request in s's entry, made into what read() on /dev/fuse gives and
 * handed to libfuse; its reply comes back through uring_take_reply. */
static void serve(struct server *s)
{
	struct hbfs_uring *u = s->u;
	struct fuse_in_header in;
	uint32_t payload = s->hdr.ent.payload_sz;
	size_t arglen;
	uint8_t *start;
	struct fuse_buf fb;

	memcpy(&in, s->hdr.in_out, sizeof(in));
	s->commit_id = s->hdr.ent.commit_id;
	s->unique = in.unique;
	s->replied = false;
	if (payload > u->payload || in.len < sizeof(in) + payload ||
	    in.len - sizeof(in) - payload > sizeof(s->hdr.op_in)) {
		reply_error(s, EIO);
		return;
	}
	arglen = in.len - sizeof(in) - payload;
	start = s->buf + PRE_BYTES - arglen - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), s->hdr.op_in, arglen);
	memset(&fb, 0, sizeof(fb));
	fb.mem = start;
	fb.size = u->prepare(start, in.len);
	__atomic_add_fetch(&u->served, 1, __ATOMIC_RELAXED);
	serving = s;
	fuse_session_process_buf(u->se, &fb);
	serving = NULL;
	if (!s->replied) /* every request on a ring wants an answer */
		reply_error(s, ENOSYS);
}

bool uring_take_reply(const struct iovec *iov, int count, ssize_t *res)
{
	struct server *s = serving;
	const struct fuse_out_header *out;
	struct fuse_out_header *dst;
	size_t len = 0;

	if (!s || s->replied || count < 1 || iov[0].iov_len < sizeof(*out))
		return false;
	out = iov[0].iov_base;
	if (out->unique != s->unique)
		return false;
	for (int i = 1; i < count; i++) {
		if (len + iov[i].iov_len > s->u->payload) {
			reply_error(s, EIO);
			*res = -1;
			errno = EINVAL;
			return true;
		}
		memmove(s->buf + PRE_BYTES + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	dst = (void *)s->hdr.in_out;
	dst->error = out->error;
	dst->unique = out->unique;
	dst->len = (uint32_t)(sizeof(*dst) + len);
	s->hdr.ent.payload_sz = (uint32_t)len;
	s->replied = true;
	*res = (ssize_t)(iov[0].iov_len + len);
	return true;
}

static void note_register_error(struct hbfs_uring *u, int err)
{
	bool first;

	pthread_mutex_lock(&u->lock);
	first = !u->register_err && !u->stopping;
	if (first)
		u->register_err = err;
	pthread_mutex_unlock(&u->lock);
	if (first)
		fprintf(stderr, "hiberbox-fs: io_uring queue: %s; requests stay on /dev/fuse\n",
			strerror(-err));
}

/* All of queue q's threads are busy: ask the starter for one more. */
static void queue_grow(struct hbfs_uring *u, unsigned q)
{
	pthread_mutex_lock(&u->lock);
	if (u->queues[q].threads < u->per_queue && !u->queues[q].grow) {
		u->queues[q].grow = true;
		pthread_cond_signal(&u->grow_cond);
	}
	pthread_mutex_unlock(&u->lock);
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	struct hbfs_uring *u = s->u;
	cpu_set_t cpus;
	bool registered = false, stopping;
	int err;

	CPU_ZERO(&cpus);
	CPU_SET(s->qid, &cpus);
	/* not allowed there (a cpuset): served from elsewhere, still right */
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	/* Set up here, after the INIT reply: the mount's first answer waits
	 * for no ring (requests use /dev/fuse until every queue has one). */
	err = ring_open(&s->ring);
	s->buf = err ? NULL : malloc(PRE_BYTES + u->payload);
	if (!err && !s->buf)
		err = -ENOMEM;
	if (err) {
		note_register_error(u, err);
		return NULL;
	}
	s->iov[0].iov_base = &s->hdr;
	s->iov[0].iov_len = sizeof(s->hdr);
	s->iov[1].iov_base = s->buf + PRE_BYTES;
	s->iov[1].iov_len = u->payload;
	/* a server is only created once the INIT reply is out (uring_go),
	 * but the mount may be going by the time it is set up */
	pthread_mutex_lock(&u->lock);
	stopping = u->stopping;
	pthread_mutex_unlock(&u->lock);
	if (stopping)
		return NULL;
	queue_stop_poll(s);
	queue_cmd(s, CMD_REGISTER);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head;
		uint64_t tag;
		int res;

		if (ring_enter(&s->ring) < 0)
			break;
		head = *s->ring.cq_head;
		if (head == __atomic_load_n(s->ring.cq_tail, __ATOMIC_ACQUIRE))
			continue;
		cqe = &s->ring.cqes[head & s->ring.cq_mask];
		tag = cqe->user_data;
		res = cqe->res;
		__atomic_store_n(s->ring.cq_head, head + 1, __ATOMIC_RELEASE);
		if (tag == TAG_STOP)
			break;
		if (res == -EINTR || res == -EAGAIN) { /* try the same command again */
			queue_cmd(s, registered ? CMD_COMMIT_AND_FETCH : CMD_REGISTER);
			continue;
		}
		if (res < 0) {
			/* ENOTCONN, ECANCELED: the mount is going */
			if (!registered && res != -ENOTCONN && res != -ECANCELED)
				note_register_error(u, res);
			break;
		}
		registered = true;
		if (__atomic_sub_fetch(&u->queues[s->qid].idle, 1, __ATOMIC_ACQ_REL) == 0)
			queue_grow(u, s->qid);
		serve(s);
		__atomic_add_fetch(&u->queues[s->qid].idle, 1, __ATOMIC_ACQ_REL);
		queue_cmd(s, CMD_COMMIT_AND_FETCH);
	}
	return NULL;
}

bool uring_enable(void)
{
	static const char param[] = "/sys/module/fuse/parameters/enable_uring";
	char c = 0;
	int fd = open(param, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false; /* a kernel without it */
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	if (c == 'Y' || c == '1')
		return true;
	/* Off by default in the kernel.  The parameter only lets a server ask
	 * for rings (one that does not is served as before), so root turns it
	 * on rather than leave every mount on the slower path. */
	fd = geteuid() == 0 ? open(param, O_WRONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return false;
	c = write(fd, "Y", 1) == 1;
	close(fd);
	return c;
}

unsigned long uring_served(const struct hbfs_uring *u)
{
	return u ? __atomic_load_n(&u->served, __ATOMIC_RELAXED) : 0;
}

/* Creates the queues' threads as they are wanted, off the path of the
 * mount's first answer and of any request. */
static void *starter_main(void *arg)
{
	struct hbfs_uring *u = arg;

	pthread_mutex_lock(&u->lock);
	while (!u->stopping) {
		struct server *s = NULL;
		int r;

		for (unsigned q = 0; q < u->nqueues && !s; q++) {
			struct queue *qu = &u->queues[q];

			if (!qu->grow)
				continue;
			qu->grow = false;
			s = &u->servers[q * u->per_queue + qu->threads++];
			/* idle from now, so that its queue does not ask twice */
			__atomic_add_fetch(&qu->idle, 1, __ATOMIC_ACQ_REL);
		}
		if (!s) {
			pthread_cond_wait(&u->grow_cond, &u->lock);
			continue;
		}
		pthread_mutex_unlock(&u->lock);
		r = pthread_create(&s->tid, NULL, server_main, s);
		s->started = !r;
		if (r)
			note_register_error(u, -r);
		pthread_mutex_lock(&u->lock);
	}
	pthread_mutex_unlock(&u->lock);
	return NULL;
}

void uring_go(struct hbfs_uring *u)
{
	int r;

	if (!u)
		return;
	pthread_mutex_lock(&u->lock);
	for (unsigned q = 0; q < u->nqueues; q++)
		u->queues[q].grow = true;
	pthread_mutex_unlock(&u->lock);
	r = pthread_create(&u->starter, NULL, starter_main, u);
	u->starter_started = !r;
	if (r)
		note_register_error(u, -r);
}

void uring_stop(struct hbfs_uring *u)
{
	uint64_t one = 1;

	if (!u)
		return;
	pthread_mutex_lock(&u->lock);
	u->stopping = true;
	pthread_cond_broadcast(&u->grow_cond);
	pthread_mutex_unlock(&u->lock);
	if (u->stop_fd >= 0 && write(u->stop_fd, &one, sizeof(one)) < 0)
		fprintf(stderr, "hiberbox-fs: stopping the io_uring queues: %s\n", strerror(errno));
	/* after it, no server is being created and started says which were */
	if (u->starter_started)
		pthread_join(u->starter, NULL);
	for (unsigned i = 0; i < u->nservers; i++) {
		struct server *s = &u->servers[i];

		if (s->started)
			pthread_join(s->tid, NULL);
		ring_close(&s->ring);
		free(s->buf);
	}
	if (u->stop_fd >= 0)
		close(u->stop_fd);
	pthread_cond_destroy(&u->grow_cond);
	pthread_mutex_destroy(&u->lock);
	free(u->queues);
	free(u->servers);
	free(u);
}

int uring_start(struct fuse_session *se, int fd, size_t payload, uring_prepare_fn prepare,
		struct hbfs_uring **out)
{
	struct hbfs_uring *u = calloc(1, sizeof(*u));
	int ncpu = get_nprocs_conf();
	int r;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	if (ncpu < 1)
		ncpu = 1;
	u->se = se;
	u->devfd = fd;
	u->payload = payload;
	u->prepare = prepare;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->grow_cond, NULL);
	u->stop_fd = eventfd(0, EFD_CLOEXEC);
	u->nqueues = (unsigned)ncpu;
	u->per_queue = THREADS_TOTAL / u->nqueues;
	if (u->per_queue < THREADS_PER_CPU_MIN)
		u->per_queue = THREADS_PER_CPU_MIN;
	u->queues = calloc(u->nqueues, sizeof(*u->queues));
	u->servers = calloc((size_t)u->nqueues * u->per_queue, sizeof(*u->servers));
	if (u->stop_fd < 0 || !u->queues || !u->servers) {
		r = u->stop_fd < 0 ? -errno : -ENOMEM;
		uring_stop(u);
		return r;
	}
	u->nservers = u->nqueues * u->per_queue;
	for (unsigned i = 0; i < u->nservers; i++) {
		u->servers[i].ring.fd = -1;
		u->servers[i].u = u;
		u->servers[i].qid = i / u->per_queue;
	}
	*out = u;
	return 0;
}
