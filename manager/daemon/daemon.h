/* hiberboxd: the sandbox daemon and its client.
 *
 * The daemon owns sandboxes (a registry in SQLite under $HIBERBOX_HOME),
 * their lifecycle (create, exec, sleep, wake, fork, rm, idle sleep) and an
 * HTTP/1.1 + JSON API on the unix socket $HIBERBOX_HOME/hiberboxd.sock
 * (docs/api.md).  The client half is what the CLI uses to talk to it.
 *
 * All functions return 0 (or a count) or a negative errno with a message
 * recorded by hb_err() (util/error.h).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define HBD_SOCKET_NAME "hiberboxd.sock"
#define HBD_API_PREFIX "/v1"
/* Tags the daemon keeps in the repository: an image's snapshot, and a
 * sandbox's latest state (what its next wake mounts). */
#define HBD_TAG_IMAGE "image."
#define HBD_TAG_SANDBOX "sb."

struct hbd_config {
	const char *home; /* NULL: repo_default_home() */
	const char *repo; /* NULL: repo_default_location() */
	/* How to run this program's mount helper (hbd_mount_helper_main):
	 * a NULL-terminated argv prefix, e.g. {"/proc/self/exe", "mount-helper"}. */
	const char *const *helper_argv;
};

/* Run the daemon in the foreground until `POST /v1/daemon/stop`, SIGTERM or
 * SIGINT.  Running sandboxes are put to sleep on the way out. */
int hbd_run(const struct hbd_config *cfg);

/* The mount helper: argv = [name] --repo R --upper DIR --uid-shift N SNAP MNT.
 * Mounts in the background (the fs process is in its own session, so a
 * daemon crash leaves it alive) and returns an exit code. */
int hbd_mount_helper_main(int argc, char **argv);

/* Client. */

/* 0 if name is a valid sandbox or image name (1 to 64 of A-Z a-z 0-9 _ . -,
 * not starting with '.' or '-'), else -EINVAL with a message naming it.
 * A client checks a name before it goes into a request path: the daemon
 * sees the path decoded, so "dev/", "dev?x" or "dev%2F" would address dev. */
int hbd_name_valid(const char *name);

/* The socket path for home (NULL: default home) into out. */
int hbd_socket_path(const char *home, char *out, size_t size);

/* Make sure a daemon answers; if nothing does, start self_argv (a
 * NULL-terminated argv running the daemon in the foreground) detached, with
 * its output appended to $HIBERBOX_HOME/hiberboxd.log, and wait for it. */
int hbd_client_ensure(const char *const *self_argv);

/* Ask the daemon to stop and wait, at most wait_ms, until it has exited
 * (its sandboxes asleep); -ECONNREFUSED when none runs. */
int hbd_client_stop(unsigned wait_ms);

/* One request: method, path (under /v1, e.g. "/sandboxes"), optional JSON
 * body.  *reply gets the decoded JSON reply (NULL for an empty body); a
 * reply with an HTTP status >= 400 returns its errno with its "error" text. */
int hbd_client_call(const char *method, const char *path, json_t *body, json_t **reply);

/* Raw request: body bytes out (may be NULL), reply bytes written to fd. */
int hbd_client_raw(const char *method, const char *path, const void *body, size_t len,
		   int out_fd);
/* Raw request, its JSON reply decoded into *reply. */
int hbd_client_raw_json(const char *method, const char *path, const void *body, size_t len,
			json_t **reply);

/* How an exec's command ended (its exit frame). */
struct hbd_exec_end {
	int exit_code; /* -1 if a signal ended it */
	int signal;
	/* "" if the command ended by itself or by a signal from inside the
	 * sandbox; else what killed it: "timeout", "oom", "sleep", "idle",
	 * "init", "rm", "shutdown", "recover" (see docs/api.md) */
	char killed_by[16];
};

/* Exec with streamed output (see docs/api.md for the framing).  query is the
 * already-encoded query string.  stdin_data may be NULL.  Output frames are
 * written to out_fd / err_fd as they arrive.  *end and, for detached execs,
 * the JSON reply (*detached, may be NULL) come back. */
int hbd_client_exec(const char *name, const char *query, const void *stdin_data,
		    size_t stdin_len, int out_fd, int err_fd, struct hbd_exec_end *end,
		    json_t **detached);

/* A tty exec's local side (query has tty=1): the remote terminal's size
 * follows term_fd's, re-read whenever winch_fd (a pipe the caller's SIGWINCH
 * handler writes to) has bytes.  Either may be -1. */
struct hbd_exec_tty {
	int term_fd, winch_fd;
};

/* Exec whose stdin streams from stdin_fd while it runs (stdin=stream: each
 * read of stdin_fd is one request, its end closes the command's stdin, or on
 * a terminal types end-of-file).  stdin_fd may be -1 with a tty: no input.
 * query as for hbd_client_exec, without stdin. */
int hbd_client_exec_stream(const char *name, const char *query, int stdin_fd,
			   const struct hbd_exec_tty *tty, int out_fd, int err_fd,
			   struct hbd_exec_end *end);

/* One line for a command some outside event killed ("the sandbox was put to
 * sleep"); NULL when end->killed_by is empty. */
const char *hbd_exec_killed_text(const struct hbd_exec_end *end);

/* Copy a file or a tree into or out of sandbox name (copy.c; like cp -r: an
 * existing destination directory receives SRC under its own name; "-" as the
 * local side is stdin or stdout, for one file).  Directories, files (sent in
 * 32 MiB pieces) and symlinks are copied with their permission bits; other
 * kinds are counted in skipped. */
struct hbd_copy_stats {
	uint64_t files, dirs, symlinks, skipped, bytes;
};
int hbd_copy_in(const char *name, const char *local, const char *remote,
		struct hbd_copy_stats *stats);
int hbd_copy_out(const char *name, const char *remote, const char *local,
		 struct hbd_copy_stats *stats);

/* Frame types of the exec stream: [type:1][0 0 0][len:4 big-endian][payload]. */
enum hbd_frame {
	HBD_FRAME_STDOUT = 1,
	HBD_FRAME_STDERR = 2,
	HBD_FRAME_EXIT = 3,  /* payload: JSON {"exit_code", "signal", "timed_out", "killed_by"} */
	HBD_FRAME_ERROR = 4, /* payload: JSON {"error"} */
	HBD_FRAME_STARTED = 5, /* stdin=stream or tty=1, first: JSON {"exec": ID} */
};
#define HBD_FRAME_HEADER_BYTES 8
#define HBD_FRAME_MAX_BYTES (1u << 20)
