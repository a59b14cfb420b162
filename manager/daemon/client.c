/* The daemon's client (what the CLI calls): HTTP over the unix socket with
 * libcurl, JSON with jansson, the exec stream decoded frame by frame, and
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fs/fs.h"
#include "manager/daemon/daemon.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define CLIENT_REPLY_MAX_BYTES (16u << 20)
#define CLIENT_START_WAIT_MS 15000

struct sink {
	struct buf body;      /* JSON replies and error bodies */
	int fd;               /* raw replies: straight to this fd (when status < 400) */
	long status;
	CURL *curl;
	/* exec stream decoding */
	bool stream;
	int out_fd, err_fd;
	struct buf frame;
	bool got_exit;
	int exit_code, signal;
	char error[512];
	/* stdin=stream: the pump started by the STARTED frame */
	const char *name;
	int stdin_fd;
	struct stdin_pump *pump;
};

/* Sends what the caller's stdin gives, a request per read, to an exec whose
 * stdin streams (docs/api.md), then its end.  Shared by the stream's thread
 * and the pump thread, freed by whichever lets go last: the pump may still
 * sit in a request when the exec ends (a background job of the command can
 * hold a full stdin pipe), and the caller must not wait for it. */
struct stdin_pump {
	int refs;             /* atomic */
	int fd;               /* the caller's stdin (not ours to close) */
	int stop[2];          /* a byte on stop[1]: the exec has ended */
	char path[512];       /* .../exec/ID/stdin */
};

static void pump_release(struct stdin_pump *p)
{
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		close(p->stop[0]);
		close(p->stop[1]);
		free(p);
	}
}

static void *pump_main(void *arg)
{
	struct stdin_pump *p = arg;
	size_t cap = 256u << 10;
	uint8_t *data = malloc(cap);
	char eof_path[600];

	snprintf(eof_path, sizeof(eof_path), "%s?eof=1", p->path);
	while (data) {
		struct pollfd w[2] = { { p->fd, POLLIN, 0 }, { p->stop[0], POLLIN, 0 } };
		ssize_t n;

		if (poll(w, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (w[1].revents)
			break;
		n = read(p->fd, data, cap);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) { /* end (or an unreadable stdin): the command sees EOF */
			hbd_client_raw("POST", eof_path, NULL, 0, -1);
			break;
		}
		if (hbd_client_raw("POST", p->path, data, (size_t)n, -1) < 0)
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
	snprintf(p->path, sizeof(p->path), "/sandboxes/%s/exec/%llu/stdin", k->name,
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

static long status_of(struct sink *k)
{
	if (!k->status)
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &k->status);
	return k->status;
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
				k->exit_code = (int)json_integer_value(json_object_get(j, "exit_code"));
				k->signal = (int)json_integer_value(json_object_get(j, "signal"));
			} else {
				snprintf(k->error, sizeof(k->error), "%s",
					 json_string_value(json_object_get(j, "error")) ?: "error");
			}
			json_decref(j);
		} else if (h[0] == HBD_FRAME_STARTED && k->stdin_fd >= 0 && !k->pump) {
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

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	size_t len = size * n;

	if (status_of(k) < 400 && k->stream) {
		if (buf_append(&k->frame, data, len) < 0 || decode_frames(k) < 0)
			return 0;
		return len;
	}
	if (status_of(k) < 400 && k->fd >= 0)
		return write_all(k->fd, data, len) < 0 ? 0 : len;
	return buf_append(&k->body, data, len) < 0 ? 0 : len;
}

/* One HTTP exchange; fills k. */
static int perform(const char *method, const char *path, const char *query, const void *body,
		   size_t len, const char *ctype, struct sink *k)
{
	char sock[4200], url[8192];
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	int r;

	if ((r = hbd_socket_path(getenv("HIBERBOX_HOME"), sock, sizeof(sock))) < 0)
		return r;
	if ((size_t)snprintf(url, sizeof(url), "http://hiberboxd%s%s%s%s", HBD_API_PREFIX, path,
			     query && *query ? "?" : "", query ? query : "") >= sizeof(url))
		return hb_err(-E2BIG, "request too long (arguments over %zu bytes)", sizeof(url));
	if (!(k->curl = curl_easy_init()))
		return hb_err(-ENOMEM, "curl init");
	k->body.max = CLIENT_REPLY_MAX_BYTES;
	k->frame.max = 2 * HBD_FRAME_MAX_BYTES;
	curl_easy_setopt(k->curl, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(k->curl, CURLOPT_URL, url);
	curl_easy_setopt(k->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L);
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (body || !strcmp(method, "POST") || !strcmp(method, "PUT")) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hdrs = curl_slist_append(hdrs, ct);
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(k->curl);
	status_of(k);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(k->curl);
	k->curl = NULL;
	if (cc == CURLE_COULDNT_CONNECT)
		return hb_err(-ECONNREFUSED, "no daemon answers on %s", sock);
	if (cc != CURLE_OK && !(k->stream && k->got_exit))
		return hb_err(-EIO, "talking to the daemon on %s: %s", sock, curl_easy_strerror(cc));
	if (k->status >= 400) {
		json_t *j = json_loadb((const char *)k->body.data, k->body.len, 0, NULL);
		const char *msg = json_string_value(json_object_get(j, "error"));
		int e = (int)json_integer_value(json_object_get(j, "errno"));
		r = hb_err(e > 0 ? -e : -EIO, "%s", msg ? msg : "the daemon refused the request");
		json_decref(j);
		return r;
	}
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

int hbd_client_raw(const char *method, const char *path, const void *body, size_t len,
		   int out_fd)
{
	struct sink k = { .fd = out_fd };
	const char *q = strchr(path, '?');
	char p[4096];
	int r;

	snprintf(p, sizeof(p), "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
	r = perform(method, p, q ? q + 1 : NULL, body, len, "application/octet-stream", &k);
	buf_free(&k.body);
	return r;
}

int hbd_client_exec_stream(const char *name, const char *query, int stdin_fd, int out_fd,
			   int err_fd, int *exit_code, int *signal)
{
	struct sink k = { .fd = -1, .stream = true, .out_fd = out_fd, .err_fd = err_fd,
			  .name = name, .stdin_fd = stdin_fd };
	char path[256];
	struct buf q = { .max = 64u << 10 };
	int r;

	snprintf(path, sizeof(path), "/sandboxes/%s/exec", name);
	if (buf_append(&q, query, strlen(query)) < 0 || buf_append(&q, "&stdin=stream", 14) < 0) {
		buf_free(&q);
		return hb_err(-E2BIG, "command line too long for one request");
	}
	r = perform("POST", path, (const char *)q.data, NULL, 0, "application/octet-stream", &k);
	pump_stop(&k);
	if (r == 0 && k.error[0])
		r = hb_err(-EIO, "%s", k.error);
	else if (r == 0 && !k.got_exit)
		r = hb_err(-EIO, "the exec stream ended without an exit status");
	*exit_code = k.exit_code;
	*signal = k.signal;
	buf_free(&q);
	buf_free(&k.body);
	buf_free(&k.frame);
	return r;
}

int hbd_client_exec(const char *name, const char *query, const void *stdin_data,
		    size_t stdin_len, int out_fd, int err_fd, int *exit_code, int *signal,
		    json_t **detached)
{
	struct sink k = { .fd = -1, .stream = true, .out_fd = out_fd, .err_fd = err_fd,
			  .stdin_fd = -1 };
	char path[256];
	int r;

	snprintf(path, sizeof(path), "/sandboxes/%s/exec", name);
	if (detached) {
		k.stream = false;
		*detached = NULL;
	}
	r = perform("POST", path, query, stdin_data ? stdin_data : "", stdin_len,
		    "application/octet-stream", &k);
	if (r == 0 && detached) {
		*detached = json_loadb((const char *)k.body.data, k.body.len, 0, NULL);
	} else if (r == 0 && k.error[0]) {
		r = hb_err(-EIO, "%s", k.error);
	} else if (r == 0 && !k.got_exit) {
		r = hb_err(-EIO, "the exec stream ended without an exit status");
	}
	*exit_code = k.exit_code;
	*signal = k.signal;
	buf_free(&k.body);
	buf_free(&k.frame);
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
		return hb_err(-errno, "fork");
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
		{ 0 }
	};
	struct hbfs_opts mo = { .ready_fd = -1 };
	char *end;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "r:u:s:", opts, NULL)) != -1) {
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
		default:
			fprintf(stderr, "mount-helper: bad arguments\n");
			return 2;
		}
	}
	if (argc - optind != 2 || !mo.repo) {
		fprintf(stderr, "mount-helper: usage: --repo R [--upper U] [--uid-shift N] SNAP MNT\n");
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
