/* The daemon's client (what the CLI calls): HTTP/1.1 over the unix socket
 * (a small client of our own: the requests are simple, and loading libcurl
 * with its 30 libraries cost each CLI call more than the call), JSON with
 * jansson, the exec stream decoded frame by frame, and
 * starting the daemon when nothing answers.  Also the mount helper that the
 * daemon runs to start a FUSE mount in its own process. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


#include "fs/fs.h"
#include "manager/daemon/daemon.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define CLIENT_REPLY_MAX_BYTES (16u << 20)
#define CLIENT_START_WAIT_MS 15000
/* a request's query; the daemon reads heads of up to 1 MiB (api.c) */
#define CLIENT_QUERY_MAX_BYTES (256u << 10)

struct sink {
	struct buf body;      /* JSON replies and error bodies */
	int fd;               /* raw replies: straight to this fd (when status < 400) */
	long status;
	/* exec stream decoding */
	bool stream;
	int out_fd, err_fd;
	struct buf frame;
	bool got_exit;
	struct hbd_exec_end end;
	char error[512];
	/* stdin=stream: the pump started by the STARTED frame */
	const char *name;
	int stdin_fd;
	const struct hbd_exec_tty *tty;
	struct stdin_pump *pump;
};

/* Sends what the caller's stdin gives, a request per read, to an exec whose
 * stdin streams (docs/api.md), then its end; for a tty exec also the local
 * terminal's size whenever it changes.  Shared by the stream's thread
 * and the pump thread, freed by whichever lets go last: the pump may still
 * sit in a request when the exec ends (a background job of the command can
 * hold a full stdin pipe), and the caller must not wait for it. */
struct stdin_pump {
	int refs;             /* atomic */
	int fd;               /* the caller's stdin (not ours to close), or -1 */
	int term_fd, winch_fd; /* tty exec: see struct hbd_exec_tty (not ours) */
	int stop[2];          /* a byte on stop[1]: the exec has ended */
	char path[512];       /* .../exec/ID/ */
};

static void pump_release(struct stdin_pump *p)
{
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		close(p->stop[0]);
		close(p->stop[1]);
		free(p);
	}
}

/* Tell the daemon the local terminal's size. */
static void pump_resize(struct stdin_pump *p)
{
	struct winsize ws;
	char path[640];

	if (p->term_fd < 0 || ioctl(p->term_fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)
		return;
	snprintf(path, sizeof(path), "%sresize?rows=%u&cols=%u", p->path, ws.ws_row, ws.ws_col);
	hbd_client_raw("POST", path, NULL, 0, -1);
	hb_err_clear(); /* the exec may just have ended */
}

static void *pump_main(void *arg)
{
	struct stdin_pump *p = arg;
	size_t cap = 256u << 10;
	uint8_t *data = malloc(cap);
	char in_path[600], eof_path[600];

	snprintf(in_path, sizeof(in_path), "%sstdin", p->path);
	snprintf(eof_path, sizeof(eof_path), "%sstdin?eof=1", p->path);
	while (data && (p->fd >= 0 || p->winch_fd >= 0)) {
		struct pollfd w[3] = { { p->stop[0], POLLIN, 0 }, { p->fd, POLLIN, 0 },
				       { p->winch_fd, POLLIN, 0 } };
		ssize_t n;

		if (poll(w, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (w[0].revents)
			break;
		if (w[2].revents) {
			uint8_t drain[64];
			while (read(p->winch_fd, drain, sizeof(drain)) > 0)
				;
			pump_resize(p);
		}
		if (!w[1].revents)
			continue;
		n = read(p->fd, data, cap);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) { /* end (or an unreadable stdin): the command sees EOF */
			hbd_client_raw("POST", eof_path, NULL, 0, -1);
			p->fd = -1; /* a terminal may still change size */
			continue;
		}
		if (hbd_client_raw("POST", in_path, data, (size_t)n, -1) < 0)
			break; /* the exec has ended or stopped reading */
	}
	free(data);
	pump_release(p);
	return NULL;
}

static int pump_start(struct sink *k, uint64_t id)
{
	struct stdin_pump *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (!p)
		return -ENOMEM;
	if (pipe2(p->stop, O_CLOEXEC) < 0) {
		free(p);
		return -errno;
	}
	p->refs = 2;
	p->fd = k->stdin_fd;
	p->term_fd = k->tty ? k->tty->term_fd : -1;
	p->winch_fd = k->tty ? k->tty->winch_fd : -1;
	snprintf(p->path, sizeof(p->path), "/sandboxes/%s/exec/%llu/", k->name,
		 (unsigned long long)id);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, pump_main, p);
	pthread_attr_destroy(&attr);
	if (r) {
		close(p->stop[0]);
		close(p->stop[1]);
		free(p);
		return -r;
	}
	k->pump = p;
	return 0;
}

static void pump_stop(struct sink *k)
{
	if (!k->pump)
		return;
	if (write(k->pump->stop[1], "x", 1) < 0) { /* a full pipe is a stop too */ }
	pump_release(k->pump);
	k->pump = NULL;
}


/* Consume whole frames from k->frame. */
static int decode_frames(struct sink *k)
{
	size_t off = 0;

	while (k->frame.len - off >= HBD_FRAME_HEADER_BYTES) {
		const uint8_t *h = k->frame.data + off;
		uint32_t len = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
		if (len > HBD_FRAME_MAX_BYTES)
			return -EBADMSG;
		if (k->frame.len - off < HBD_FRAME_HEADER_BYTES + len)
			break;
		const uint8_t *p = h + HBD_FRAME_HEADER_BYTES;
		if (h[0] == HBD_FRAME_STDOUT || h[0] == HBD_FRAME_STDERR) {
			write_all(h[0] == HBD_FRAME_STDOUT ? k->out_fd : k->err_fd, p, len);
		} else if (h[0] == HBD_FRAME_EXIT || h[0] == HBD_FRAME_ERROR) {
			json_t *j = json_loadb((const char *)p, len, 0, NULL);
			if (h[0] == HBD_FRAME_EXIT) {
				k->got_exit = true;
				const char *by = json_string_value(json_object_get(j, "killed_by"));
				k->end.exit_code =
					(int)json_integer_value(json_object_get(j, "exit_code"));
				k->end.signal = (int)json_integer_value(json_object_get(j, "signal"));
				snprintf(k->end.killed_by, sizeof(k->end.killed_by), "%s", by ? by : "");
			} else {
				snprintf(k->error, sizeof(k->error), "%s",
					 json_string_value(json_object_get(j, "error")) ?: "error");
			}
			json_decref(j);
		} else if (h[0] == HBD_FRAME_STARTED && !k->pump &&
			   (k->stdin_fd >= 0 || (k->tty && k->tty->winch_fd >= 0))) {
			json_t *j = json_loadb((const char *)p, len, 0, NULL);
			json_int_t id = json_integer_value(json_object_get(j, "exec"));
			json_decref(j);
			if (id <= 0 || pump_start(k, (uint64_t)id) < 0)
				return -EBADMSG;
		}
		off += HBD_FRAME_HEADER_BYTES + len;
	}
	if (off) {
		memmove(k->frame.data, k->frame.data + off, k->frame.len - off);
		k->frame.len -= off;
	}
	return 0;
}

/* Reply body bytes: the exec stream's frames, a raw reply's fd, or (JSON
 * and errors) the body buffer.  @return 0 or -1 to stop reading. */
static int on_data(struct sink *k, const void *data, size_t len)
{
	if (k->status < 400 && k->stream)
		return buf_append(&k->frame, data, len) < 0 || decode_frames(k) < 0 ? -1 : 0;
	if (k->status < 400 && k->fd >= 0)
		return write_all(k->fd, data, len) < 0 ? -1 : 0;
	return buf_append(&k->body, data, len) < 0 ? -1 : 0;
}

/* The reply as it comes off the socket: headers, then a body by length,
 * in chunks, or up to the end. */
struct reply {
	int fd;
	uint8_t in[65536];
	size_t have, pos;
};

static int reply_fill(struct reply *rp)
{
	ssize_t n;

	if (rp->pos == rp->have)
		rp->pos = rp->have = 0;
	do
		n = read(rp->fd, rp->in + rp->have, sizeof(rp->in) - rp->have);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	rp->have += (size_t)n;
	return (int)n;
}

/* One line (CRLF cut off) into line; -EBADMSG if longer than size. */
static int reply_line(struct reply *rp, char *line, size_t size)
{
	size_t n = 0;

	for (;;) {
		while (rp->pos < rp->have) {
			char c = (char)rp->in[rp->pos++];

			if (c == '\n') {
				if (n && line[n - 1] == '\r')
					n--;
				line[n] = 0;
				return 0;
			}
			if (n + 1 >= size)
				return -EBADMSG;
			line[n++] = c;
		}
		int r = reply_fill(rp);
		if (r < 0)
			return r;
		if (r == 0)
			return -EPIPE;
	}
}

/* Up to want body bytes to the sink; 0 at the end of the connection. */
static ssize_t reply_body(struct reply *rp, struct sink *k, uint64_t want)
{
	size_t n;
	int r;

	if (rp->pos == rp->have && (r = reply_fill(rp)) <= 0)
		return r;
	n = rp->have - rp->pos;
	if (n > want)
		n = (size_t)want;
	if (on_data(k, rp->in + rp->pos, n) < 0)
		return -ECANCELED;
	rp->pos += n;
	return (ssize_t)n;
}

static int read_reply(struct reply *rp, struct sink *k)
{
	char line[8192];
	uint64_t length = UINT64_MAX;
	bool chunked = false;
	int r, code;

	if ((r = reply_line(rp, line, sizeof(line))) < 0)
		return r;
	if (sscanf(line, "HTTP/1.%*d %d", &code) != 1)
		return -EBADMSG;
	k->status = code;
	for (;;) {
		if ((r = reply_line(rp, line, sizeof(line))) < 0)
			return r;
		if (!*line)
			break;
		if (!strncasecmp(line, "Content-Length:", 15))
			length = strtoull(line + 15, NULL, 10);
		else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line + 18, "chunked"))
			chunked = true;
	}
	if (!chunked) {
		while (length) {
			ssize_t n = reply_body(rp, k, length);

			if (n <= 0)
				return n < 0 ? (int)n : length == UINT64_MAX ? 0 : -EPIPE;
			if (length != UINT64_MAX)
				length -= (uint64_t)n;
		}
		return 0;
	}
	for (;;) {
		uint64_t size;
		char *end;

		if ((r = reply_line(rp, line, sizeof(line))) < 0)
			return r;
		size = strtoull(line, &end, 16);
		if (end == line)
			return -EBADMSG;
		if (size == 0)
			break;
		while (size) {
			ssize_t n = reply_body(rp, k, size);

			if (n <= 0)
				return n < 0 ? (int)n : -EPIPE;
			size -= (uint64_t)n;
		}
		if ((r = reply_line(rp, line, sizeof(line))) < 0)
			return r;
	}
	while ((r = reply_line(rp, line, sizeof(line))) == 0 && *line)
		; /* trailers */
	return r;
}

/* One HTTP exchange; fills k. */
static int perform(const char *method, const char *path, const char *query, const void *body,
		   size_t len, const char *ctype, struct sink *k)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char sock[4200], target[8192], head[512];
	size_t qlen = query ? strlen(query) : 0;
	struct reply *rp;
	int r, fd, n, tn;

	if ((r = hbd_socket_path(getenv("HIBERBOX_HOME"), sock, sizeof(sock))) < 0)
		return r;
	if (strlen(sock) >= sizeof(sa.sun_path))
		return hb_err(-ENAMETOOLONG, "socket path too long: %s", sock);
	strcpy(sa.sun_path, sock);
	/* the query (an exec's arguments, URL-encoded) is sent as it is: up to
	 * what the daemon takes in a request's head */
	if (qlen > CLIENT_QUERY_MAX_BYTES)
		return hb_err(-E2BIG, "request too long (arguments over %u KiB encoded)",
			      CLIENT_QUERY_MAX_BYTES >> 10);
	tn = snprintf(target, sizeof(target), "%s %s%s%s", method, HBD_API_PREFIX, path,
		      qlen ? "?" : "");
	if (tn >= (int)sizeof(target))
		return hb_err(-E2BIG, "request path too long");
	n = snprintf(head, sizeof(head), " HTTP/1.1\r\nHost: hiberboxd\r\nConnection: close\r\n");
	if (body || !strcmp(method, "POST") || !strcmp(method, "PUT"))
		n += snprintf(head + n, sizeof(head) - (size_t)n,
			      "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, body ? len : 0);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	k->body.max = CLIENT_REPLY_MAX_BYTES;
	k->frame.max = 2 * HBD_FRAME_MAX_BYTES;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return hb_err_sys(-errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno;
		close(fd);
		if (r == ECONNREFUSED || r == ENOENT)
			return hb_err(-ECONNREFUSED, "no daemon answers on %s", sock);
		return hb_err(-r, "connecting to %s: %s", sock, strerror(r));
	}
	r = send_all(fd, target, (size_t)tn);
	if (r == 0 && qlen)
		r = send_all(fd, query, qlen);
	if (r == 0)
		r = send_all(fd, head, (size_t)n);
	if (r == 0 && body && len)
		r = send_all(fd, body, len);
	if (!(rp = malloc(sizeof(*rp)))) {
		close(fd);
		return hb_err(-ENOMEM, "out of memory");
	}
	rp->fd = fd;
	rp->have = rp->pos = 0;
	/* a refused request may be answered before its body is all sent */
	int rr = read_reply(rp, k);
	free(rp);
	close(fd);
	if (k->status == 0)
		return hb_err(r < 0 ? r : rr < 0 ? rr : -EIO, "talking to the daemon on %s: %s", sock,
			      strerror(-(r < 0 ? r : rr < 0 ? rr : -EIO)));
	if (k->status >= 400) {
		json_t *j = json_loadb((const char *)k->body.data, k->body.len, 0, NULL);
		const char *msg = json_string_value(json_object_get(j, "error"));
		int e = (int)json_integer_value(json_object_get(j, "errno"));
		r = hb_err(e > 0 ? -e : -EIO, "%s", msg ? msg : "the daemon refused the request");
		json_decref(j);
		return r;
	}
	if ((r < 0 || rr < 0) && !(k->stream && k->got_exit))
		return hb_err(r < 0 ? r : rr, "talking to the daemon on %s: %s", sock,
			      strerror(-(r < 0 ? r : rr)));
	return 0;
}

int hbd_client_call(const char *method, const char *path, json_t *body, json_t **reply)
{
	struct sink k = { .fd = -1 };
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	const char *q = strchr(path, '?');
	char p[4096];
	int r;

	snprintf(p, sizeof(p), "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
	r = perform(method, p, q ? q + 1 : NULL, s, s ? strlen(s) : 0, "application/json", &k);
	free(s);
	if (r == 0 && reply) {
		json_error_t e;
		*reply = k.body.len ? json_loadb((const char *)k.body.data, k.body.len, 0, &e) : NULL;
		if (k.body.len && !*reply)
			r = hb_err(-EBADMSG, "bad reply from the daemon: %s", e.text);
	}
	buf_free(&k.body);
	return r;
}

/* A raw body out; the JSON reply to *reply if reply (else dropped) or
 * the reply's bytes to out_fd. */
static int raw_request(const char *method, const char *path, const void *body, size_t len,
		       int out_fd, json_t **reply)
{
	struct sink k = { .fd = out_fd };
	const char *q = strchr(path, '?');
	char p[4096];
	int r;

	snprintf(p, sizeof(p), "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
	r = perform(method, p, q ? q + 1 : NULL, body, len, "application/octet-stream", &k);
	if (r == 0 && reply) {
		json_error_t e;
		*reply = k.body.len ? json_loadb((const char *)k.body.data, k.body.len, 0, &e) : NULL;
		if (!*reply)
			r = hb_err(-EBADMSG, "bad reply from the daemon: %s",
				   k.body.len ? e.text : "empty");
	}
	buf_free(&k.body);
	return r;
}

int hbd_client_raw(const char *method, const char *path, const void *body, size_t len,
		   int out_fd)
{
	return raw_request(method, path, body, len, out_fd, NULL);
}

int hbd_client_raw_json(const char *method, const char *path, const void *body, size_t len,
			json_t **reply)
{
	return raw_request(method, path, body, len, -1, reply);
}

/* How an exec stream ended: its error frame or a missing exit status as an
 * error, the exit status out; frees the sink. */
static int exec_result(struct sink *k, int r, struct hbd_exec_end *end)
{
	if (r == 0 && k->error[0])
		r = hb_err(-EIO, "%s", k->error);
	else if (r == 0 && !k->got_exit)
		r = hb_err(-EIO, "the exec stream ended without an exit status");
	*end = k->end;
	buf_free(&k->body);
	buf_free(&k->frame);
	return r;
}

int hbd_client_exec_stream(const char *name, const char *query, int stdin_fd,
			   const struct hbd_exec_tty *tty, int out_fd, int err_fd,
			   struct hbd_exec_end *end)
{
	struct sink k = { .fd = -1, .stream = true, .out_fd = out_fd, .err_fd = err_fd,
			  .name = name, .stdin_fd = stdin_fd, .tty = tty };
	char path[256];
	struct buf q = { .max = 64u << 10 };
	int r;

	snprintf(path, sizeof(path), "/sandboxes/%s/exec", name);
	const char *more = stdin_fd >= 0 ? "&stdin=stream" : "";
	if (buf_append(&q, query, strlen(query)) < 0 ||
	    buf_append(&q, more, strlen(more) + 1) < 0) {
		buf_free(&q);
		return hb_err(-E2BIG, "command line too long for one request");
	}
	r = perform("POST", path, (const char *)q.data, NULL, 0, "application/octet-stream", &k);
	pump_stop(&k);
	buf_free(&q);
	return exec_result(&k, r, end);
}

int hbd_client_exec(const char *name, const char *query, const void *stdin_data,
		    size_t stdin_len, int out_fd, int err_fd, struct hbd_exec_end *end,
		    json_t **detached)
{
	struct sink k = { .fd = -1, .stream = !detached, .out_fd = out_fd, .err_fd = err_fd,
			  .stdin_fd = -1 };
	char path[256];
	int r;

	snprintf(path, sizeof(path), "/sandboxes/%s/exec", name);
	r = perform("POST", path, query, stdin_data ? stdin_data : "", stdin_len,
		    "application/octet-stream", &k);
	if (!detached)
		return exec_result(&k, r, end);
	*detached = r == 0 ? json_loadb((const char *)k.body.data, k.body.len, 0, NULL) : NULL;
	memset(end, 0, sizeof(*end));
	buf_free(&k.body);
	buf_free(&k.frame);
	return r;
}

/* The daemon's pid as this process's pid namespace numbers it (0 when it
 * is not in it, or nothing answers): the kernel's record of who listens on
 * the socket, where the pid the daemon reports is its own namespace's. */
static pid_t daemon_pid(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	char sock[4200];
	int fd;

	if (hbd_socket_path(getenv("HIBERBOX_HOME"), sock, sizeof(sock)) < 0 ||
	    strlen(sock) >= sizeof(sa.sun_path)) {
		hb_err_clear();
		return 0;
	}
	strcpy(sa.sun_path, sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		cred.pid = 0;
	close(fd);
	return cred.pid;
}

static int ping(void);

int hbd_client_stop(unsigned wait_ms)
{
	pid_t pid = daemon_pid();
	/* taken before the stop is asked for: the pid cannot be reused yet */
	int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	json_t *j = NULL;
	int r = hbd_client_call("POST", "/daemon/stop", NULL, &j);

	json_decref(j);
	if (r == 0 && pidfd >= 0) {
		/* Its exit, not its socket going quiet: the server stops before
		 * the last sandboxes are asleep (and the daemon's lock is let go
		 * last), so a command right after would find it still there. */
		struct pollfd p = { pidfd, POLLIN, 0 };
		int n;

		while ((n = poll(&p, 1, (int)wait_ms)) < 0 && errno == EINTR)
			;
		if (n <= 0)
			r = hb_err(-ETIMEDOUT, "hiberboxd did not stop within %u s", wait_ms / 1000);
	} else if (r == 0) {
		/* not in our pid namespace: the socket is all there is to go by */
		for (unsigned waited = 0;; waited += 100) {
			struct timespec ts = { 0, 100 * 1000000L };

			if ((r = ping()) == -ECONNREFUSED) {
				hb_err_clear();
				r = 0;
				break;
			}
			if (waited >= wait_ms) {
				r = hb_err(-ETIMEDOUT, "hiberboxd did not stop within %u s", wait_ms / 1000);
				break;
			}
			nanosleep(&ts, NULL);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

static int ping(void)
{
	json_t *j = NULL;
	int r = hbd_client_call("GET", "/daemon", NULL, &j);
	json_decref(j);
	return r;
}

int hbd_client_ensure(const char *const *self_argv)
{
	char home[4096], log[4200];
	int r = ping(), status;
	pid_t pid;

	if (r != -ECONNREFUSED)
		return r;
	hb_err_clear();
	if ((r = repo_default_home(home, sizeof(home))) < 0)
		return r;
	if ((r = mkdir_p(AT_FDCWD, home, 0755)) < 0)
		return hb_err(r, "mkdir %s", home);
	snprintf(log, sizeof(log), "%s/hiberboxd.log", home);
	pid = fork();
	if (pid < 0)
		return hb_err_sys(-errno, "fork");
	if (pid == 0) {
		/* Double fork: the daemon is nobody's child and has its own session. */
		setsid();
		if (fork() != 0)
			_exit(0);
		int null = open("/dev/null", O_RDWR);
		int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		if (lfd >= 0)
			dup2(lfd, 2);
		/* Nothing else of the caller's: a pipe it holds (a shell's $(...),
		 * a CI runner's) would stay open for the daemon's lifetime. */
		close_range(3, ~0u, 0);
		setenv("HIBERBOX_HOME", home, 1);
		execv(self_argv[0], (char *const *)self_argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	for (int waited = 0; waited < CLIENT_START_WAIT_MS; waited += 50) {
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
		if ((r = ping()) != -ECONNREFUSED)
			return r;
		hb_err_clear();
	}
	return hb_err(-ETIMEDOUT, "the daemon did not start (see %s)", log);
}

int hbd_mount_helper_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "upper", required_argument, NULL, 'u' },
		{ "uid-shift", required_argument, NULL, 's' },
		{ "disk-limit", required_argument, NULL, 'L' },
		{ 0 }
	};
	struct hbfs_opts mo = { .ready_fd = -1 };
	char *end;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "r:u:s:L:", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			mo.repo = optarg;
			break;
		case 'u':
			mo.upper = optarg;
			break;
		case 's':
			mo.uid_shift = (uint32_t)strtoul(optarg, &end, 10);
			break;
		case 'L':
			mo.upper_limit = strtoull(optarg, &end, 10);
			break;
		default:
			fprintf(stderr, "mount-helper: bad arguments\n");
			return 2;
		}
	}
	if (argc - optind != 2 || !mo.repo) {
		fprintf(stderr, "mount-helper: usage: --repo R [--upper U] [--uid-shift N]"
				" [--disk-limit BYTES] SNAP MNT\n");
		return 2;
	}
	mo.snapshot = argv[optind];
	mo.mountpoint = argv[optind + 1];
	r = hbfs_mount(&mo);
	if (r < 0) {
		fprintf(stderr, "%s\n", hb_errmsg(r));
		return 1;
	}
	return 0;
}

const char *hbd_exec_killed_text(const struct hbd_exec_end *end)
{
	static const struct {
		const char *by, *text;
	} texts[] = {
		{ "timeout", "killed: its --timeout ran out" },
		{ "oom", "killed: out of memory (the sandbox's --memory limit)" },
		{ "sleep", "killed: the sandbox was put to sleep (its disk is kept)" },
		{ "idle", "killed: the sandbox went to sleep when idle (its disk is kept)" },
		{ "init", "killed: the sandbox's init ended; it sleeps (its disk is kept)" },
		{ "rm", "killed: the sandbox was removed" },
		{ "shutdown", "killed: the daemon stopped; the sandbox sleeps (its disk is kept)" },
		{ "recover", "killed: the daemon restarted and could not take the sandbox over" },
		{ "fs", "killed: the sandbox's filesystem process died; it sleeps (its disk is kept)" },
	};

	if (!end->killed_by[0])
		return NULL;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (!strcmp(end->killed_by, texts[i].by))
			return texts[i].text;
	return "killed by the daemon";
}
