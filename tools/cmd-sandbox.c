/* Sandbox commands: images, create, exec, logs, cp, ls, inspect, sleep,
 * wake, fork, rm and the daemon itself.  Everything but `daemon run` talks to
 * hiberboxd over its socket (manager/daemon/daemon.h), starting it when
 * nothing answers. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "manager/daemon/daemon.h"
#include "manager/network.h"
#include "tools/cli.h"
#include "util/size.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/uri.h"

#define CLI_UPLOAD_MAX_BYTES (64u << 20)
#define CLI_QUERY_MAX_BYTES 65536
#define EXIT_EXEC_FAILED 125
#define CLI_DAEMON_STOP_WAIT_MS 120000

/* Reach the daemon, starting it if needed. */
static int connect_daemon(void)
{
	static char self[PATH_MAX];
	const char *argv[8];
	int n = 0, r;
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	/* the real path, so that ps and logs name the daemon */
	self[len > 0 ? len : 0] = 0;
	argv[n++] = len > 0 && !strstr(self, " (deleted)") ? self : "/proc/self/exe";
	if (cli.repo) {
		argv[n++] = "--repo";
		argv[n++] = cli.repo;
	}
	argv[n++] = "daemon";
	argv[n++] = "run";
	argv[n] = NULL;
	r = hbd_client_ensure(argv);
	return r < 0 ? cli_fail(r, NULL) : 0;
}

/* Parse only the common options; returns -1 for --help, 2 for a bad one. */
static int parse_common(const char *name, int argc, char **argv)
{
	static const char shorts[] = "hjq";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	int c;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		int k = cli_common_option(c);
		if (k < 0)
			return -1;
		if (k == 0)
			return cli_bad_option(name, argv, shorts, opts);
	}
	return 0;
}

/* A sandbox or image NAME from the command line, checked before it goes
 * into a request path: 0, or the exit code of the error. */
static int check_name(const char *name)
{
	int r = hbd_name_valid(name);

	return r < 0 ? cli_fail(r, NULL) : 0;
}

/* A reply's "warnings": what went wrong without failing the request (an
 * import's source that changed while it was read), one line each on
 * stderr whatever the output format, as snapshot create prints its own. */
static void print_reply_warnings(json_t *reply)
{
	size_t i;
	json_t *v;

	json_array_foreach(json_object_get(reply, "warnings"), i, v) {
		if (!json_is_string(v))
			continue;
		fputs("hiberbox: warning: ", stderr);
		cli_put_name(json_string_value(v), stderr);
		fputc('\n', stderr);
	}
}

/* Call and print: --json prints the reply, else fmt(reply). */
static int call_print(const char *method, const char *path, json_t *body,
		      void (*human)(json_t *reply))
{
	json_t *reply = NULL;
	int r = connect_daemon();

	if (r) {
		json_decref(body);
		return r;
	}
	r = hbd_client_call(method, path, body, &reply);
	json_decref(body);
	if (r < 0)
		return cli_fail(r, NULL);
	print_reply_warnings(reply);
	if (cli.json)
		cli_print_json(json_incref(reply));
	else if (human && !cli.quiet)
		human(reply);
	json_decref(reply);
	return 0;
}

/* Images. */

static void human_import(json_t *j)
{
	printf("imported %s: snapshot %.16s, %lld files in %lld ms\n",
	       json_string_value(json_object_get(j, "name")),
	       json_string_value(json_object_get(j, "snapshot")),
	       (long long)json_integer_value(json_object_get(j, "files")),
	       (long long)json_integer_value(json_object_get(j, "import_ms")));
}

static int cmd_image_import(int argc, char **argv)
{
	char abs[PATH_MAX];
	int r = parse_common("image import", argc, argv);

	if (r)
		return r < 0 ? cli_help("image import", "DIR is a root filesystem tree; TARBALL any tar "
				    "(e.g. 'docker export') that tar -xf reads.\n") : r;
	if (argc - optind != 2)
		return cli_usage("image import", "expected DIR|TARBALL NAME");
	if (!realpath(argv[optind], abs))
		return cli_fail(hb_err(-errno, "%s: %s", argv[optind], strerror(errno)), NULL);
	return call_print("POST", "/images", json_pack("{s:s, s:s}", "name", argv[optind + 1],
						       "source", abs), human_import);
}

static void human_images(json_t *j)
{
	size_t i;
	json_t *v;

	printf("%-24s %-16s %10s %12s\n", "NAME", "SNAPSHOT", "FILES", "BYTES");
	json_array_foreach(j, i, v)
		printf("%-24s %-16.16s %10lld %12lld\n",
		       json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "snapshot")),
		       (long long)json_integer_value(json_object_get(v, "files")),
		       (long long)json_integer_value(json_object_get(v, "bytes")));
}

static int cmd_image_ls(int argc, char **argv)
{
	int r = parse_common("image ls", argc, argv);

	if (r)
		return r < 0 ? cli_help("image ls", NULL) : r;
	if (argc != optind)
		return cli_usage("image ls", "no arguments expected");
	return call_print("GET", "/images", NULL, human_images);
}

static void human_removed(json_t *j)
{
	printf("removed %s\n", json_string_value(json_object_get(j, "removed")));
}

static int cmd_image_rm(int argc, char **argv)
{
	char path[256];
	int r = parse_common("image rm", argc, argv);

	if (r)
		return r < 0 ? cli_help("image rm", "Refused while a sandbox uses the image.\n") : r;
	if (argc - optind != 1)
		return cli_usage("image rm", "expected NAME");
	if ((r = check_name(argv[optind])))
		return r;
	snprintf(path, sizeof(path), "/images/%s", argv[optind]);
	return call_print("DELETE", path, NULL, human_removed);
}

/* Sandboxes. */

static const char create_help[] =
	"Create a sandbox from an image (or any snapshot id or tag) and start it.\n\n"
	"Options:\n"
	"  --image IMG          image name (see 'hiberbox image ls')\n"
	"  --memory SIZE        memory limit, e.g. 512M\n"
	"  --disk SIZE          what its writes may take of the disk, e.g. 10G\n"
	"                       (beyond: ENOSPC in the sandbox; default: no limit)\n"
	"  --pids N             process/thread limit (default 4096, 0: none)\n"
	"  --cpus N             CPU limit in cores, e.g. 1.5\n"
	"  --network MODE       none: loopback only (default); nat: outbound access\n"
	"                       through slirp4netns, host loopback refused; host: the\n"
	"                       host's network, no isolation\n"
	"  --publish [HOSTIP:]HOSTPORT:PORT[/tcp|/udp]\n"
	"                       with --network nat: the host's HOSTPORT on HOSTIP\n"
	"                       (default 127.0.0.1; 0.0.0.0: every address) reaches\n"
	"                       the sandbox's PORT, from every wake (repeatable; a\n"
	"                       fork publishes none). The port is the sandbox's\n"
	"                       until rm, asleep too: another create cannot take it\n"
	"  --idle-timeout D     sleep after D without exec or process (30s, 5m, 2h)\n"
	"  --env K=V            environment of every exec (repeatable)\n";

static void human_created(json_t *j)
{
	printf("%s %s in %lld ms\n", json_string_value(json_object_get(j, "name")),
	       json_object_get(j, "create_ms") ? "created" : "forked",
	       (long long)json_integer_value(json_object_get(j, "create_ms") ?:
					     json_object_get(j, "fork_ms")));
}

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "image", required_argument, NULL, 'I' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'D' },
		{ "pids", required_argument, NULL, 'p' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "network", required_argument, NULL, 'n' },
		{ "idle-timeout", required_argument, NULL, 't' },
		{ "env", required_argument, NULL, 'e' },
		{ "publish", required_argument, NULL, 'P' },
		{ 0 }
	};
	static const char shorts[] = "hjqI:m:D:p:c:n:t:e:P:";
	json_t *req = json_object(), *env = json_array(), *publish = json_array();
	struct nat_port port;
	char *end;
	int c, k, rc;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		uint64_t v;
		if ((k = cli_common_option(c)) < 0)
			{ rc = cli_help("create", create_help); goto out; }
		if (k)
			continue;
		switch (c) {
		case 'I':
			json_object_set_new(req, "image", json_string(optarg));
			break;
		case 'm':
			if (size_parse(optarg, &v) < 0)
				{ rc = cli_usage("create", "bad --memory '%s'", optarg); goto out; }
			json_object_set_new(req, "memory_bytes", json_integer((json_int_t)v));
			break;
		case 'D':
			if (size_parse(optarg, &v) < 0 || v > INT64_MAX)
				{ rc = cli_usage("create", "bad --disk '%s'", optarg); goto out; }
			json_object_set_new(req, "disk_bytes", json_integer((json_int_t)v));
			break;
		case 'p':
			v = strtoull(optarg, &end, 10);
			if (end == optarg || *end || v > UINT32_MAX)
				{ rc = cli_usage("create", "bad --pids '%s'", optarg); goto out; }
			json_object_set_new(req, "pids", json_integer((json_int_t)v));
			break;
		case 'c': {
			double d = strtod(optarg, &end);
			/* (NaN passed "d <= 0", and json_real() of NaN or infinity
			 * is no value: the sandbox got no CPU limit at all) */
			if (end == optarg || *end || !isfinite(d) || d <= 0)
				{ rc = cli_usage("create", "bad --cpus '%s' (cores, e.g. 1.5)", optarg); goto out; }
			json_object_set_new(req, "cpus", json_real(d));
			break;
		}
		case 'n':
			json_object_set_new(req, "network", json_string(optarg));
			break;
		case 't':
			json_object_set_new(req, "idle_timeout", json_string(optarg));
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				{ rc = cli_usage("create", "--env wants K=V, not '%s'", optarg); goto out; }
			json_array_append_new(env, json_string(optarg));
			break;
		case 'P':
			if (nat_port_parse(optarg, &port) < 0)
				{ rc = cli_usage("create", "%s", hb_errmsg(-EINVAL)); goto out; }
			/* a bad argument as any other (exit 2), not the daemon's 400 */
			for (size_t i = 0; i < json_array_size(publish); i++) {
				struct nat_port seen;
				if (nat_port_parse(json_string_value(json_array_get(publish, i)),
						   &seen) == 0 && nat_port_overlaps(&seen, &port)) {
					rc = cli_usage("create", "publish '%s': the host's port %u/%s "
						       "is published twice", optarg,
						       (unsigned)port.host_port, port.udp ? "udp" : "tcp");
					goto out;
				}
			}
			json_array_append_new(publish, json_string(optarg));
			break;
		default:
			{ rc = cli_bad_option("create", argv, shorts, opts); goto out; }
		}
	}
	if (json_array_size(publish) &&
	    strcmp(json_string_value(json_object_get(req, "network")) ?: "none", "nat") != 0)
		{ rc = cli_usage("create", "--publish needs --network nat"); goto out; }
	if (argc - optind != 1)
		{ rc = cli_usage("create", "expected NAME"); goto out; }
	if (!json_object_get(req, "image"))
		{ rc = cli_usage("create", "--image is required"); goto out; }
	json_object_set_new(req, "name", json_string(argv[optind]));
	json_object_set_new(req, "env", env);
	if (json_array_size(publish))
		json_object_set_new(req, "publish", publish);
	else
		json_decref(publish);
	return call_print("POST", "/sandboxes", req, human_created);
out:
	json_decref(req);
	json_decref(env);
	json_decref(publish);
	return rc;
}

static int append_param(struct buf *q, const char *key, const char *value)
{
	int r = 0;

	if (q->len)
		r = buf_append(q, "&", 1);
	if (r == 0)
		r = buf_append(q, key, strlen(key));
	if (r == 0)
		r = buf_append(q, "=", 1);
	return r ? r : uri_encode_append(q, value);
}

static const char exec_help[] =
	"Run CMD in the sandbox (woken first if it sleeps).  Its stdout and stderr\n"
	"stream as produced; its exit code is this command's (128+N if killed by\n"
	"signal N, 125 if it could not be started).  When the command did not end\n"
	"by itself but was killed by --timeout, its memory limit, a sleep or an rm,\n"
	"a line on stderr says which.\n\n"
	"Options:\n"
	"  -i, --interactive    pass this command's stdin on as it comes (with -d: read\n"
	"                       to its end first, at most 64 MiB)\n"
	"  -t, --tty            run CMD on a terminal inside the sandbox (stdout and\n"
	"                       stderr merged, its size following this one's); with\n"
	"                       -i from a terminal, that terminal is raw meanwhile so\n"
	"                       keys such as ^C and ^D go to CMD: -it for a shell\n"
	"  -d, --detach         run in the background; prints its pid ('hiberbox logs')\n"
	"  --cwd DIR            working directory inside\n"
	"  --env K=V            extra environment (repeatable)\n"
	"  --timeout S          kill the command after S seconds (or 5m, 1h)\n"
	"  --user U             uid[:gid] or a name from the sandbox's /etc/passwd\n";

/* The terminal this command runs on, if any: the one whose size the
 * sandbox's follows. */
static int local_terminal(void)
{
	return isatty(STDIN_FILENO) ? STDIN_FILENO : isatty(STDOUT_FILENO) ? STDOUT_FILENO : -1;
}

/* tty=1 with this terminal's size and TERM (unless --env gave one). */
static int tty_params(struct buf *q, bool term_set)
{
	struct winsize ws;
	const char *term = getenv("TERM");
	int t = local_terminal(), r = append_param(q, "tty", "1");
	char n[16];

	if (r == 0 && t >= 0 && ioctl(t, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		snprintf(n, sizeof(n), "%u", ws.ws_row);
		r = append_param(q, "rows", n);
		snprintf(n, sizeof(n), "%u", ws.ws_col);
		if (r == 0)
			r = append_param(q, "cols", n);
	}
	if (r == 0 && !term_set) {
		char kv[256];
		snprintf(kv, sizeof(kv), "TERM=%s", term && *term ? term : "xterm");
		r = append_param(q, "env", kv);
	}
	return r;
}

/* While a tty exec runs with -i from a terminal, that terminal is raw (keys
 * go to the sandbox's terminal, which does the echo and line editing); it is
 * put back however this command ends. */
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;
static int winch_pipe[2] = { -1, -1 };

static void restore_terminal(void)
{
	if (termios_saved) {
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
		termios_saved = 0;
	}
}

static void on_fatal_signal(int sig)
{
	restore_terminal();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void on_winch(int sig)
{
	int saved = errno;
	(void)sig;
	if (write(winch_pipe[1], "w", 1) < 0) { /* full: a resize is pending anyway */ }
	errno = saved;
}

static int exec_streamed(const char *name, const char *query, bool interactive, bool tty,
			 struct hbd_exec_end *end)
{
	struct hbd_exec_tty t = { .term_fd = -1, .winch_fd = -1 };
	int r;

	if (tty && (t.term_fd = local_terminal()) >= 0 &&
	    pipe2(winch_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
		struct sigaction sa = { .sa_handler = on_winch, .sa_flags = SA_RESTART };
		sigaction(SIGWINCH, &sa, NULL);
		t.winch_fd = winch_pipe[0];
	}
	if (tty && interactive && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		struct termios raw = saved_termios;
		static const int fatal[] = { SIGTERM, SIGHUP, SIGQUIT, SIGINT, SIGPIPE };

		for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
			signal(fatal[i], on_fatal_signal);
		cfmakeraw(&raw);
		termios_saved = 1;
		tcsetattr(STDIN_FILENO, TCSADRAIN, &raw);
	}
	r = hbd_client_exec_stream(name, query, interactive ? STDIN_FILENO : -1, tty ? &t : NULL,
				   STDOUT_FILENO, STDERR_FILENO, end);
	restore_terminal();
	if (t.winch_fd >= 0)
		signal(SIGWINCH, SIG_DFL);
	return r;
}

/* The command's exit status as this command's, and a line on stderr when
 * the daemon, not the command, ended it (a sleep, a removal, --timeout):
 * 137 alone would look like the command's own crash. */
static int exec_status(const char *name, const struct hbd_exec_end *end)
{
	const char *why = hbd_exec_killed_text(end);

	if (why)
		fprintf(stderr, "hiberbox: %s: %s\n", name, why);
	return end->signal ? 128 + end->signal : end->exit_code;
}

struct exec_flags {
	bool interactive, detach, tty, term_set;
};

/* One of exec's own options, before or after NAME: 0, or the exit code of
 * a bad one. */
static int exec_option(int c, struct exec_flags *f, struct buf *q)
{
	int r = 0;

	switch (c) {
	case 'i': f->interactive = true; break;
	case 'd': f->detach = true; break;
	case 't': f->tty = true; break;
	case 'C': r = append_param(q, "cwd", optarg); break;
	case 'e':
		if (!strchr(optarg, '=') || optarg[0] == '=')
			return cli_usage("exec", "--env wants K=V, not '%s'", optarg);
		f->term_set |= !strncmp(optarg, "TERM=", 5);
		r = append_param(q, "env", optarg);
		break;
	case 'T': r = append_param(q, "timeout", optarg); break;
	case 'u': r = append_param(q, "user", optarg); break;
	default: return cli_usage("exec", "unknown option");
	}
	return r < 0 ? cli_fail(r, "arguments too long") : 0;
}

static int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "interactive", no_argument, NULL, 'i' },
		{ "detach", no_argument, NULL, 'd' },
		{ "tty", no_argument, NULL, 't' },
		{ "cwd", required_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "user", required_argument, NULL, 'u' },
		{ 0 }
	};
	static const char shorts[] = "+hjqidtC:e:u:";
	struct buf q = { .max = CLI_QUERY_MAX_BYTES }, in = { .max = CLI_UPLOAD_MAX_BYTES };
	struct exec_flags f = { 0 };
	int c, k, r = 0;
	struct hbd_exec_end end = { 0 };
	json_t *det = NULL;
	const char *name;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if (c == '?')
			return cli_bad_option("exec", argv, shorts, opts);
		if ((k = cli_common_option(c)) < 0)
			return cli_help("exec", exec_help);
		if (!k && (k = exec_option(c, &f, &q)))
			return k;
	}
	if (optind >= argc)
		return cli_usage("exec", "expected NAME -- CMD...");
	name = argv[optind++];
	/* Options may follow NAME too, up to "--". */
	while (optind < argc && strcmp(argv[optind], "--") != 0 && argv[optind][0] == '-') {
		int sub_argc = argc - optind + 1;
		char **sub = argv + optind - 1;
		int save = optind;
		optind = 1;
		c = getopt_long(sub_argc, sub, shorts, opts, NULL);
		int used = optind;
		optind = save + used - 1;
		if (c == -1)
			break;
		if (c == '?') /* (argv[optind - 1] is sub[used - 1]) */
			return cli_bad_option("exec", argv, shorts, opts);
		if ((k = cli_common_option(c)) < 0)
			return cli_help("exec", exec_help);
		if (!k && (k = exec_option(c, &f, &q)))
			return k;
	}
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc)
		return cli_usage("exec", "expected a command after NAME (use -- CMD...)");
	if (check_name(name))
		return EXIT_EXEC_FAILED; /* as for a name the daemon does not know */
	for (int i = optind; i < argc && r == 0; i++)
		r = append_param(&q, "arg", argv[i]);
	if (r == 0 && f.detach)
		r = append_param(&q, "detach", "1");
	if (f.tty && f.detach)
		return cli_usage("exec", "--tty and --detach do not go together");
	if (r == 0 && f.tty)
		r = tty_params(&q, f.term_set);
	if (r == 0)
		r = buf_append(&q, "", 1);
	if (r < 0)
		return cli_fail(-E2BIG, "command line too long for one request");
	if (f.tty || (f.interactive && !f.detach)) {
		if ((r = connect_daemon())) {
			buf_free(&q);
			return r;
		}
		r = exec_streamed(name, (const char *)q.data, f.interactive, f.tty, &end);
		buf_free(&q);
		if (r < 0) {
			cli_fail(r, NULL);
			return EXIT_EXEC_FAILED;
		}
		return exec_status(name, &end);
	}
	if (f.interactive) {
		uint8_t chunk[65536];
		ssize_t n;
		while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) > 0)
			if (buf_append(&in, chunk, (size_t)n) < 0) {
				buf_free(&q);
				buf_free(&in);
				return cli_fail(-EFBIG, "stdin larger than %u bytes", CLI_UPLOAD_MAX_BYTES);
			}
	}
	if ((r = connect_daemon())) {
		buf_free(&q);
		buf_free(&in);
		return r;
	}
	r = hbd_client_exec(name, (const char *)q.data, in.data, in.len, STDOUT_FILENO,
			    STDERR_FILENO, &end, f.detach ? &det : NULL);
	buf_free(&q);
	buf_free(&in);
	if (r < 0) {
		cli_fail(r, NULL);
		return EXIT_EXEC_FAILED;
	}
	if (f.detach) {
		if (cli.json)
			cli_print_json(json_incref(det));
		else
			printf("%lld\n", (long long)json_integer_value(json_object_get(det, "pid")));
		json_decref(det);
		return 0;
	}
	return exec_status(name, &end);
}

static const char logs_help[] =
	"Without PID: the most recent detached process.\n"
	"\n"
	"Options:\n"
	"  -f, --follow         go on printing what it writes until it, and what it\n"
	"                       left running, end (or the sandbox sleeps); ^C stops\n"
	"                       the following, not the process\n";

static int cmd_logs(int argc, char **argv)
{
	static const char shorts[] = "fhjq";
	static const struct option opts[] = { { "follow", no_argument, NULL, 'f' },
					      CLI_COMMON_OPTIONS, { 0 } };
	char path[256];
	bool follow = false;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		int k;

		if (c == 'f') {
			follow = true;
			continue;
		}
		if ((k = cli_common_option(c)) < 0)
			return cli_help("logs", logs_help);
		if (k == 0)
			return cli_bad_option("logs", argv, shorts, opts);
	}
	if (argc - optind < 1 || argc - optind > 2)
		return cli_usage("logs", "expected NAME [PID]");
	if ((r = check_name(argv[optind])))
		return r;
	if (argc - optind == 2) {
		const char *pid = argv[optind + 1];

		if (!pid[0] || strlen(pid) > 10 || strspn(pid, "0123456789") != strlen(pid))
			return cli_usage("logs", "bad PID '%s' (a process id)", pid);
		snprintf(path, sizeof(path), "/sandboxes/%s/logs?pid=%s%s", argv[optind], pid,
			 follow ? "&follow=1" : "");
	} else {
		snprintf(path, sizeof(path), "/sandboxes/%s/logs%s", argv[optind],
			 follow ? "?follow=1" : "");
	}
	if ((r = connect_daemon()))
		return r;
	r = hbd_client_raw("GET", path, NULL, 0, STDOUT_FILENO);
	return r < 0 ? cli_fail(r, NULL) : 0;
}

/* "NAME:/path" -> name and path; 0 if s is a local path. */
static int split_remote(const char *s, char *name, size_t size, const char **path)
{
	const char *colon = strchr(s, ':');

	if (!colon || colon == s || colon[1] != '/' || (size_t)(colon - s) >= size)
		return 0;
	for (const char *p = s; p < colon; p++)
		if (*p == '/')
			return 0;
	memcpy(name, s, (size_t)(colon - s));
	name[colon - s] = 0;
	*path = colon + 1;
	return 1;
}

static int cmd_cp(int argc, char **argv)
{
	char name[128], name2[128];
	const char *rpath, *rpath2, *src, *dst;
	struct hbd_copy_stats st;
	int r = parse_common("cp", argc, argv);

	if (r)
		return r < 0 ? cli_help("cp", "One side is NAME:/absolute/path inside a sandbox.  A directory\n"
				    "is copied with everything in it (files, directories, symlinks, with\n"
				    "their permission bits; other kinds are skipped and counted); an\n"
				    "existing destination directory receives SRC under its own name.\n"
				    "'-' as the local side is stdin/stdout, for one file.  Into a sandbox\n"
				    "a file arrives whole: its destination keeps the old content (or does\n"
				    "not exist) until all of it is there; a copy that fails stops at its\n"
				    "first error, files already copied staying.\n") : r;
	if (argc - optind != 2)
		return cli_usage("cp", "expected SRC DST");
	src = argv[optind];
	dst = argv[optind + 1];
	int src_remote = split_remote(src, name, sizeof(name), &rpath);
	int dst_remote = split_remote(dst, name2, sizeof(name2), &rpath2);
	if (src_remote == dst_remote)
		return cli_usage("cp", "exactly one of SRC and DST must be NAME:/path");
	if ((r = check_name(src_remote ? name : name2)))
		return r;
	if ((r = connect_daemon()))
		return r;
	r = src_remote ? hbd_copy_out(name, rpath, dst, &st) : hbd_copy_in(name2, src, rpath2, &st);
	if (r < 0)
		return cli_fail(r, NULL);
	if (cli.json)
		cli_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I}", "files", (json_int_t)st.files,
					 "dirs", (json_int_t)st.dirs, "symlinks",
					 (json_int_t)st.symlinks, "skipped", (json_int_t)st.skipped,
					 "bytes", (json_int_t)st.bytes));
	else if (st.skipped)
		fprintf(stderr, "hiberbox: skipped %llu entries that are not files, directories or "
			"symlinks\n", (unsigned long long)st.skipped);
	return 0;
}

/* An idle timeout the way --idle-timeout takes it (5m, 2h), or "off": a
 * bare "0s" read as "sleeps at once". */
static const char *idle_timeout_text(json_int_t s, char *out, size_t size)
{
	if (s <= 0)
		snprintf(out, size, "off");
	else if (s % 3600 == 0)
		snprintf(out, size, "%lldh", (long long)(s / 3600));
	else if (s % 60 == 0)
		snprintf(out, size, "%lldm", (long long)(s / 60));
	else
		snprintf(out, size, "%llds", (long long)s);
	return out;
}

static void human_ls(json_t *j)
{
	size_t i;
	json_t *v;
	char idle[32];

	printf("%-24s %-9s %-16s %-16s %-7s %s\n", "NAME", "STATE", "IMAGE", "LATEST", "NETWORK",
	       "IDLE-TIMEOUT");
	json_array_foreach(j, i, v)
		printf("%-24s %-9s %-16s %-16.16s %-7s %s\n",
		       json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "state")),
		       json_string_value(json_object_get(v, "image")),
		       json_string_value(json_object_get(v, "latest")),
		       json_string_value(json_object_get(v, "network")) ?: "-",
		       idle_timeout_text(json_integer_value(json_object_get(v, "idle_timeout_s")),
					 idle, sizeof(idle)));
}

static int cmd_ls(int argc, char **argv)
{
	int r = parse_common("ls", argc, argv);

	if (r)
		return r < 0 ? cli_help("ls", NULL) : r;
	if (argc != optind)
		return cli_usage("ls", "no arguments expected");
	return call_print("GET", "/sandboxes", NULL, human_ls);
}

/* stats: each sandbox is read twice, STATS_SAMPLE_MS apart, for the share
 * of a CPU it had in between (its cgroup counts CPU time, not a rate). */
#define STATS_SAMPLE_MS 1000

struct stats_row {
	const char *name;
	json_t *first, *second; /* GET /sandboxes/NAME replies; NULL if it failed */
	uint64_t first_ns, second_ns;
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int stats_read(const char *name, json_t **out, uint64_t *at)
{
	char path[256];
	int r;

	snprintf(path, sizeof(path), "/sandboxes/%s", name);
	r = hbd_client_call("GET", path, NULL, out);
	*at = monotonic_ns();
	return r;
}

/* A usage count; -1 when the host does not keep it (null) or it is absent. */
static double usage_count(json_t *sandbox, const char *key)
{
	json_t *v = json_object_get(json_object_get(sandbox, "usage"), key);

	return json_is_integer(v) ? (double)json_integer_value(v) : -1;
}

/* CPU share between the two reads, in % of one CPU; -1 if unknown. */
static double stats_cpu_percent(const struct stats_row *row)
{
	double a = usage_count(row->first, "cpu_ns"), b = usage_count(row->second, "cpu_ns");

	/* a sleep and wake in between starts the count again */
	if (a < 0 || b < a || row->second_ns <= row->first_ns)
		return -1;
	return 100.0 * (b - a) / (double)(row->second_ns - row->first_ns);
}

/* "USED / LIMIT", "USED" without a limit, "-" when not counted. */
static const char *stats_pair(double used, json_int_t limit, char *out, size_t size)
{
	char u[32], l[32];

	if (used < 0)
		return "-";
	cli_format_bytes((uint64_t)used, u, sizeof(u));
	if (limit <= 0)
		snprintf(out, size, "%s", u);
	else
		snprintf(out, size, "%s / %s", u, cli_format_bytes((uint64_t)limit, l, sizeof(l)));
	return out;
}

#define STATS_FORMAT "%-20s %-9s %6s %9s %21s %10s %10s %21s %s\n"

static void stats_print_row(const struct stats_row *row)
{
	json_t *j = row->second, *lim = json_object_get(j, "limits");
	char cpu[32] = "-", cpu_time[32] = "-", tasks[32] = "-", mem[64], peak[32], disk[64];
	char host[32] = "-";
	double pct = stats_cpu_percent(row), cpu_ns = usage_count(j, "cpu_ns");
	double n = usage_count(j, "tasks"), p = usage_count(j, "memory_peak_bytes");
	double fs_mem = usage_count(j, "fs_memory_bytes");
	double net_mem = usage_count(j, "network_memory_bytes");
	json_int_t pids = json_integer_value(json_object_get(lim, "pids"));

	if (pct >= 0)
		snprintf(cpu, sizeof(cpu), "%.1f%%", pct);
	if (fs_mem >= 0 || net_mem >= 0)
		cli_format_bytes((uint64_t)((fs_mem > 0 ? fs_mem : 0) + (net_mem > 0 ? net_mem : 0)),
				 host, sizeof(host));
	if (cpu_ns >= 0)
		snprintf(cpu_time, sizeof(cpu_time), "%.2fs", cpu_ns / 1e9);
	if (n >= 0 && pids > 0)
		snprintf(tasks, sizeof(tasks), "%.0f / %lld", n, (long long)pids);
	else if (n >= 0)
		snprintf(tasks, sizeof(tasks), "%.0f", n);
	printf(STATS_FORMAT, row->name, json_string_value(json_object_get(j, "state")) ?: "-", cpu,
	       cpu_time,
	       stats_pair(usage_count(j, "memory_bytes"),
			  json_integer_value(json_object_get(lim, "memory_bytes")), mem, sizeof(mem)),
	       p < 0 ? "-" : cli_format_bytes((uint64_t)p, peak, sizeof(peak)), host,
	       stats_pair(usage_count(j, "disk_bytes"),
			  json_integer_value(json_object_get(lim, "disk_bytes")), disk, sizeof(disk)),
	       tasks);
}

static void stats_print_json(const struct stats_row *rows, size_t n)
{
	json_t *out = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *j = rows[i].second;
		double pct = stats_cpu_percent(&rows[i]);

		if (!j)
			continue;
		json_array_append_new(out, json_pack("{s:s, s:O, s:O, s:O}", "name", rows[i].name,
						     "state", json_object_get(j, "state"),
						     "usage", json_object_get(j, "usage"),
						     "limits", json_object_get(j, "limits")));
		json_object_set_new(json_array_get(out, json_array_size(out) - 1), "cpu_percent",
				    pct < 0 ? json_null() : json_real(pct));
	}
	cli_print_json(out);
}

static const char stats_help[] =
	"Memory, CPU and disk of running sandboxes (all of them without NAME).\n"
	"CPU% is the share of one CPU over the second the command takes to\n"
	"measure it; CPU-TIME counts since the last wake. MEMORY leaves out file\n"
	"cache the kernel can drop at once. HOST-MEM is what the host's processes\n"
	"serving it hold (its filesystem, its network helper), beside MEMORY.\n"
	"DISK counts against --disk (shown only with one). '-': not running, in\n"
	"the middle of a sleep, wake, commit, removal or file upload (not waited\n"
	"for), or not counted on this host.\n";

static int cmd_stats(int argc, char **argv)
{
	struct stats_row *rows = NULL;
	json_t *list = NULL;
	size_t n = 0, running = 0;
	int r = parse_common("stats", argc, argv), failed = 0;

	if (r)
		return r < 0 ? cli_help("stats", stats_help) : r;
	for (int i = optind; i < argc; i++)
		if ((r = check_name(argv[i])))
			return r;
	if ((r = connect_daemon()))
		return r;
	if (optind == argc) {
		size_t i;
		json_t *v;

		if ((r = hbd_client_call("GET", "/sandboxes", NULL, &list)) < 0)
			return cli_fail(r, NULL);
		rows = calloc(json_array_size(list) + 1, sizeof(*rows));
		json_array_foreach(list, i, v)
			if (rows && !strcmp(json_string_value(json_object_get(v, "state")) ?: "", "running"))
				rows[n++].name = json_string_value(json_object_get(v, "name"));
	} else {
		rows = calloc((size_t)(argc - optind), sizeof(*rows));
		for (int i = optind; rows && i < argc; i++)
			rows[n++].name = argv[i];
	}
	if (!rows) {
		json_decref(list);
		return cli_fail(-ENOMEM, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		if ((r = stats_read(rows[i].name, &rows[i].first, &rows[i].first_ns)) < 0) {
			cli_fail(r, NULL); /* one line naming it; the others still shown */
			failed = 1;
		} else if (json_object_get(rows[i].first, "usage") &&
			   !json_is_null(json_object_get(rows[i].first, "usage"))) {
			running++;
		}
	}
	if (running) {
		struct timespec ts = { STATS_SAMPLE_MS / 1000, (STATS_SAMPLE_MS % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].first)
			continue;
		if (!running || stats_read(rows[i].name, &rows[i].second, &rows[i].second_ns) < 0) {
			hb_err_clear(); /* gone in between: its first read stands */
			rows[i].second = json_incref(rows[i].first);
			rows[i].second_ns = rows[i].first_ns;
		}
	}
	if (cli.json) {
		stats_print_json(rows, n);
	} else if (!cli.quiet) {
		printf(STATS_FORMAT, "NAME", "STATE", "CPU%", "CPU-TIME", "MEMORY / LIMIT",
		       "MEM-PEAK", "HOST-MEM", "DISK / LIMIT", "TASKS");
		for (size_t i = 0; i < n; i++)
			if (rows[i].second)
				stats_print_row(&rows[i]);
	}
	for (size_t i = 0; i < n; i++) {
		json_decref(rows[i].first);
		json_decref(rows[i].second);
	}
	free(rows);
	json_decref(list);
	return failed;
}

static void human_inspect(json_t *j)
{
	cli_print_json(json_incref(j));
}

static void human_sleep(json_t *j)
{
	printf("%s asleep in %lld ms (snapshot %.16s)\n", json_string_value(json_object_get(j, "name")),
	       (long long)json_integer_value(json_object_get(j, "sleep_ms")),
	       json_string_value(json_object_get(j, "snapshot")));
}

static void human_wake(json_t *j)
{
	printf("%s awake in %lld ms\n", json_string_value(json_object_get(j, "name")),
	       (long long)json_integer_value(json_object_get(j, "wake_ms")));
}

/* NAME-only commands: inspect. */
static int one_name(const char *cmd, int argc, char **argv, const char *method, const char *op,
		    void (*human)(json_t *), const char *details)
{
	char path[256];
	int r = parse_common(cmd, argc, argv);

	if (r)
		return r < 0 ? cli_help(cmd, details) : r;
	if (argc - optind != 1)
		return cli_usage(cmd, "expected NAME");
	if ((r = check_name(argv[optind])))
		return r;
	snprintf(path, sizeof(path), "/sandboxes/%s%s%s", argv[optind], op ? "/" : "",
		 op ? op : "");
	return call_print(method, path, NULL, human);
}

/* Whether msg names the sandbox name as a whole word (not inside another
 * name, as "a" is in "sandbox"). */
static bool names_sandbox(const char *msg, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = msg; (p = strstr(p, name)); p++) {
		bool starts = p == msg || !(isalnum((unsigned char)p[-1]) || strchr("_.-", p[-1]));
		char after = p[n];

		if (starts && !(isalnum((unsigned char)after) || (after && strchr("_.-", after))))
			return true;
	}
	return false;
}

/* NAME... commands (sleep, wake, rm), like docker rm A B: each name in
 * turn; one that fails is one line on stderr naming it, and the others are
 * still done.  1 if any failed.  --json prints the reply, or with several
 * names an array of the replies of those done. */
static int each_name(const char *cmd, int argc, char **argv, const char *method, const char *op,
		     void (*human)(json_t *), const char *details)
{
	json_t *done = NULL;
	int r = parse_common(cmd, argc, argv), failed = 0;

	if (r)
		return r < 0 ? cli_help(cmd, details) : r;
	if (argc == optind)
		return cli_usage(cmd, "expected NAME...");
	if ((r = connect_daemon()))
		return r;
	if (cli.json && argc - optind > 1 && !(done = json_array()))
		return cli_fail(-ENOMEM, NULL);
	for (int i = optind; i < argc; i++) {
		const char *name = argv[i];
		json_t *reply = NULL;
		char path[256];

		if (check_name(name)) {
			failed = 1;
			continue;
		}
		snprintf(path, sizeof(path), "/sandboxes/%s%s%s", name, op ? "/" : "", op ? op : "");
		if ((r = hbd_client_call(method, path, NULL, &reply)) < 0) {
			/* the daemon's messages name the sandbox; a lost
			 * connection's does not */
			if (names_sandbox(hb_errmsg(r), name))
				cli_fail(r, NULL);
			else
				cli_fail(r, "%s", name);
			hb_err_clear();
			failed = 1;
			continue;
		}
		print_reply_warnings(reply);
		if (done)
			json_array_append(done, reply);
		else if (cli.json)
			cli_print_json(json_incref(reply));
		else if (human && !cli.quiet)
			human(reply);
		json_decref(reply);
	}
	if (done)
		cli_print_json(done);
	return failed;
}

static const char several_names_help[] =
	"Several names are done in turn: one that fails is one line on stderr, the\n"
	"others are still done, and the exit code is 1 if any failed.\n";

static int cmd_inspect(int argc, char **argv)
{
	return one_name("inspect", argc, argv, "GET", NULL, human_inspect, NULL);
}

static int cmd_sleep(int argc, char **argv)
{
	char help[512];

	snprintf(help, sizeof(help), "Freeze, commit the disk, stop every process, unmount.\n%s",
		 several_names_help);
	return each_name("sleep", argc, argv, "POST", "sleep", human_sleep, help);
}

static int cmd_wake(int argc, char **argv)
{
	char help[512];

	snprintf(help, sizeof(help), "Mount the latest snapshot and start the sandbox's init.\n%s",
		 several_names_help);
	return each_name("wake", argc, argv, "POST", "wake", human_wake, help);
}

static int cmd_rm(int argc, char **argv)
{
	char help[512];

	snprintf(help, sizeof(help), "Stop the sandbox and delete its snapshots; 'hiberbox gc' "
		 "reclaims the space.\n%s", several_names_help);
	return each_name("rm", argc, argv, "DELETE", NULL, human_removed, help);
}

static int cmd_fork(int argc, char **argv)
{
	char path[256];
	int r = parse_common("fork", argc, argv);

	if (r)
		return r < 0 ? cli_help("fork", "NEW starts from NAME's latest state (committed "
				    "first if NAME runs); no data is copied.\n") : r;
	if (argc - optind != 2)
		return cli_usage("fork", "expected NAME NEW");
	if ((r = check_name(argv[optind])))
		return r;
	snprintf(path, sizeof(path), "/sandboxes/%s/fork", argv[optind]);
	return call_print("POST", path, json_pack("{s:s}", "name", argv[optind + 1]),
			  human_created);
}

/* The daemon. */

static int cmd_daemon_run(int argc, char **argv)
{
	static const char *const helper[] = { "/proc/self/exe", "daemon", "mount-helper", NULL };
	struct hbd_config cfg = { .helper_argv = helper };
	int r = parse_common("daemon run", argc, argv);

	if (r)
		return r < 0 ? cli_help("daemon run", "Runs hiberboxd in the foreground.\n") : r;
	if (argc != optind)
		return cli_usage("daemon run", "takes no arguments");
	cfg.repo = cli_repo_location();
	r = hbd_run(&cfg);
	return r < 0 ? cli_fail(r, NULL) : 0;
}

static int cmd_daemon_mount_helper(int argc, char **argv)
{
	return hbd_mount_helper_main(argc, argv);
}

static void human_status(json_t *j)
{
	printf("hiberboxd pid %lld, %lld sandboxes, home %s, repository %s\n",
	       (long long)json_integer_value(json_object_get(j, "pid")),
	       (long long)json_integer_value(json_object_get(j, "sandboxes")),
	       json_string_value(json_object_get(j, "home")),
	       json_string_value(json_object_get(j, "repo")));
}

static int cmd_daemon_status(int argc, char **argv)
{
	json_t *j = NULL;
	int r = parse_common("daemon status", argc, argv);

	if (r)
		return r < 0 ? cli_help("daemon status", NULL) : r;
	if (argc != optind)
		return cli_usage("daemon status", "takes no arguments");
	/* status never starts a daemon */
	r = hbd_client_call("GET", "/daemon", NULL, &j);
	if (r == -ECONNREFUSED) {
		if (cli.json)
			puts("{\"running\": false}");
		else
			printf("hiberboxd is not running\n");
		hb_err_clear();
		return 3;
	}
	if (r < 0)
		return cli_fail(r, NULL);
	json_object_set_new(j, "running", json_true());
	if (cli.json)
		cli_print_json(json_incref(j));
	else
		human_status(j);
	json_decref(j);
	return 0;
}

static int cmd_daemon(int argc, char **argv)
{
	char subs[128];

	/* "daemon WORD" for a WORD that is no subcommand lands here */
	if (argc > 1 && argv[1][0] != '-') {
		cli_subcommands("daemon", subs, sizeof(subs));
		fprintf(stderr, "hiberbox: unknown command 'daemon %s'; 'daemon' takes: %s\n", argv[1],
			subs);
		return 2;
	}
	return cmd_daemon_status(argc, argv);
}

static int cmd_daemon_stop(int argc, char **argv)
{
	int r = parse_common("daemon stop", argc, argv);

	if (r)
		return r < 0 ? cli_help("daemon stop", "Running sandboxes are put to sleep first (one a file "
				    "download reads from once it ends,\nat most 30 s later); returns once "
				    "the daemon has exited.\n") : r;
	if (argc != optind)
		return cli_usage("daemon stop", "takes no arguments");
	/* sleeping every sandbox may take a while */
	r = hbd_client_stop(CLI_DAEMON_STOP_WAIT_MS);
	if (r == -ECONNREFUSED) {
		hb_err_clear();
		if (!cli.quiet)
			printf("hiberboxd is not running\n");
		return 0;
	}
	if (r < 0)
		return cli_fail(r, NULL);
	if (!cli.quiet)
		printf("hiberboxd stopped\n");
	return 0;
}

const struct cli_command cli_commands_sandbox[] = {
	{ "image import", "DIR|TARBALL NAME", "import a root filesystem as an image", cmd_image_import },
	{ "image ls", "", "list images", cmd_image_ls },
	{ "image rm", "NAME", "remove an image", cmd_image_rm },
	{ "create", "NAME --image IMG [OPTIONS]", "create and start a sandbox", cmd_create },
	{ "exec", "NAME [-i] [-t] [-d] [OPTIONS] -- CMD...", "run a command in a sandbox", cmd_exec },
	{ "logs", "NAME [PID] [-f]", "output of a detached process", cmd_logs },
	{ "cp", "SRC DST", "copy a file or a directory into or out of a sandbox (NAME:/path)", cmd_cp },
	{ "ls", "", "list sandboxes", cmd_ls },
	{ "inspect", "NAME", "show a sandbox", cmd_inspect },
	{ "stats", "[NAME...]", "memory, CPU and disk use of running sandboxes", cmd_stats },
	{ "sleep", "NAME...", "commit and stop sandboxes", cmd_sleep },
	{ "wake", "NAME...", "start sleeping sandboxes", cmd_wake },
	{ "fork", "NAME NEW", "new sandbox from NAME's latest state", cmd_fork },
	{ "rm", "NAME...", "remove sandboxes", cmd_rm },
	{ "daemon", "[run|stop|status]", "the sandbox daemon (default: status)", cmd_daemon },
	{ "daemon run", "", "run hiberboxd in the foreground", cmd_daemon_run },
	{ "daemon stop", "", "stop hiberboxd (sandboxes go to sleep)", cmd_daemon_stop },
	{ "daemon status", "", "is hiberboxd running", cmd_daemon_status },
	{ "daemon mount-helper", "", "(internal) start a FUSE mount for the daemon",
	  cmd_daemon_mount_helper },
	{ NULL, NULL, NULL, NULL }
};
