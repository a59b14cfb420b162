/* Sandbox networks: mode names, published ports, and the slirp4netns
 * helper of mode nat.
 *
 * The helper is started with three descriptors of ours: a pipe it writes
 * one byte to once the tap device is up and configured (--ready-fd), and a
 * pipe whose write end only we hold (--exit-fd): it ends when that end
 * closes, which nat_helper_stop does and the kernel does should the caller
 * die, so no helper outlives its owner.  --enable-sandbox (its own mount
 * namespace, capabilities dropped) and --enable-seccomp narrow what a flaw
 * in its packet handling, which reads what the sandbox sends, could do.
 *
 * Ports are published through its API socket (--api-socket), one
 * add_hostfwd request per connection (it answers once our side is shut
 * for writing), after the ready byte: the socket listens by then.  The
 * socket is made in the helper's working directory and reached through
 * /proc/self/fd, so that no path limit of sockaddr_un (108 bytes) applies
 * to where the caller keeps it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "manager/network.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/proc.h"

#define NAT_HELPER "slirp4netns"
#define NAT_MTU "65520" /* as large as slirp4netns allows: fewer, larger packets */
#define NAT_READY_TIMEOUT_MS 30000
#define NAT_READY_FD 3 /* the helper's descriptors */
#define NAT_EXIT_FD 4
#define NAT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NAT_API_SOCKET "api.sock" /* in cfg->api_dir, the helper's working directory */
#define NAT_API_TIMEOUT_MS 10000
#define NAT_API_REPLY_MAX 4096
#define NAT_PORT_SYNTAX "[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]"
#define NAT_TAP "tap0"
#define NAT_TAP_GONE_WAIT_MS 10000
#define NAT_LOG_TAIL_BYTES 1024 /* of the helper's log, read for an error */
#define NAT_LOG_TAIL_LINES 3

struct nat_helper {
	pid_t pid;
	int exit_fd; /* write end of the helper's exit pipe */
	bool reaped; /* it ended by itself and was waited for (nat_helper_ended) */
	char cgroup[72]; /* its groups' name, or "" */
};

static const char *const network_names[] = {
	[SANDBOX_NET_NONE] = "none",
	[SANDBOX_NET_HOST] = "host",
	[SANDBOX_NET_NAT] = "nat",
};

const char *sandbox_network_name(enum sandbox_network net)
{
	if ((unsigned)net >= sizeof(network_names) / sizeof(network_names[0]))
		return NULL;
	return network_names[net];
}

int sandbox_network_parse(const char *name, enum sandbox_network *out)
{
	for (unsigned i = 0; name && i < sizeof(network_names) / sizeof(network_names[0]); i++) {
		if (strcmp(name, network_names[i]) == 0) {
			*out = (enum sandbox_network)i;
			return 0;
		}
	}
	return hb_err(-EINVAL, "network must be \"none\", \"host\" or \"nat\", not \"%s\"",
		      name ? name : "");
}

/* A port number of text (n bytes): 1 to 65535, digits only.  Leading
 * zeros count for nothing (the value decides, not the width). */
static int port_number(const char *text, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	while (n > 1 && text[0] == '0')
		text++, n--;
	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(text[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int nat_port_parse(const char *text, struct nat_port *out)
{
	struct nat_port p = { .host_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const char *slash, *last, *end;
	char addr[INET_ADDRSTRLEN];

	if (!text)
		return hb_err(-EINVAL, "publish: expected " NAT_PORT_SYNTAX);
	slash = strchr(text, '/');
	end = slash ? slash : text + strlen(text);
	if (slash && strcmp(slash, "/udp") == 0)
		p.udp = true;
	else if (slash && strcmp(slash, "/tcp") != 0)
		return hb_err(-EINVAL, "publish '%s': the protocol is tcp or udp, not '%s'", text,
			      slash + 1);
	last = end;
	while (last > text && last[-1] != ':')
		last--;
	if (last == text)
		return hb_err(-EINVAL, "publish '%s': expected " NAT_PORT_SYNTAX, text);
	if (port_number(last, (size_t)(end - last), &p.guest_port) < 0)
		return hb_err(-EINVAL, "publish '%s': the sandbox's port must be 1 to 65535", text);
	const char *mid = last - 1; /* the ':' before PORT */
	const char *hp = mid;
	while (hp > text && hp[-1] != ':')
		hp--;
	if (port_number(hp, (size_t)(mid - hp), &p.host_port) < 0)
		return hb_err(-EINVAL, "publish '%s': the host's port must be 1 to 65535", text);
	if (hp > text) {
		size_t n = (size_t)(hp - 1 - text);
		if (n == 0 || n >= sizeof(addr) || memchr(text, ':', n))
			return hb_err(-EINVAL, "publish '%s': the host address must be IPv4, e.g. "
				      "127.0.0.1 or 0.0.0.0", text);
		memcpy(addr, text, n);
		addr[n] = 0;
		if (inet_pton(AF_INET, addr, &p.host_addr) != 1)
			return hb_err(-EINVAL, "publish '%s': '%s' is not an IPv4 address", text,
				      addr);
		/* the kernel lets both be bound, and nothing ever connects there */
		uint32_t a = ntohl(p.host_addr.s_addr);
		if (IN_MULTICAST(a) || a == INADDR_BROADCAST)
			return hb_err(-EINVAL, "publish '%s': %s is a %s address, not one the host "
				      "can be reached at", text, addr,
				      IN_MULTICAST(a) ? "multicast" : "broadcast");
	}
	*out = p;
	return 0;
}

void nat_port_format(const struct nat_port *p, char *out, size_t size)
{
	char addr[INET_ADDRSTRLEN];

	if (!inet_ntop(AF_INET, &p->host_addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	snprintf(out, size, "%s:%u:%u/%s", addr, (unsigned)p->host_port, (unsigned)p->guest_port,
		 p->udp ? "udp" : "tcp");
}

bool nat_port_overlaps(const struct nat_port *a, const struct nat_port *b)
{
	return a->udp == b->udp && a->host_port == b->host_port &&
	       (a->host_addr.s_addr == b->host_addr.s_addr || a->host_addr.s_addr == INADDR_ANY ||
		b->host_addr.s_addr == INADDR_ANY);
}

/* Append the components of rel (relative to the path already in out, an
 * absolute one) to out, taking "." and ".." as a path lookup would with no
 * links on the way ("/.." is "/"). */
static int path_join_lexical(char *out, size_t size, const char *rel)
{
	size_t len = strlen(out);

	while (*rel) {
		size_t n = strcspn(rel, "/");

		if (n == 2 && rel[0] == '.' && rel[1] == '.') {
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 1)
				len--; /* the '/' before the name taken back */
			out[len] = 0;
		} else if (n > 0 && !(n == 1 && rel[0] == '.')) {
			if (len + (len > 1) + n + 1 > size)
				return -ENAMETOOLONG;
			if (len > 1)
				out[len++] = '/';
			memcpy(out + len, rel, n);
			len += n;
			out[len] = 0;
		}
		rel += n + (rel[n] == '/');
	}
	return 0;
}

/* Why the nat's resolv.conf cannot be bound at target: a message that
 * names /etc/resolv.conf, and how it leads there when it is a link. */
static int resolv_conf_refused(bool linked, const char *target, const char *why)
{
	if (!linked)
		return hb_err(-EINVAL, "network nat: the image's /etc/resolv.conf %s, where its "
			      "name server cannot be set (make it a file)", why);
	return hb_err(-EINVAL, "network nat: the image's /etc/resolv.conf links to %s, %s, where "
		      "its name server cannot be set (make it a file, or a link to one in the "
		      "image's tree)", target, why);
}

/* Whether a file can be bound at target (absolute, lexical) in root as the
 * sandbox's mounts bind it: every directory on the way a directory and no
 * link, and the last a file or missing (what is missing is created).  A
 * message naming /etc/resolv.conf otherwise. */
static int check_bind_target(int root, const char *target, bool linked)
{
	char part[PATH_MAX], why[PATH_MAX + 64], to[256];
	const char *p = target + 1;
	struct stat st;
	int dir = dup(root), r = 0;

	if (dir < 0)
		return hb_err_sys(-errno, "dup");
	if (!*p) {
		close(dir);
		return resolv_conf_refused(linked, target, "a directory");
	}
	for (;;) {
		size_t n = strcspn(p, "/");
		bool last = p[n] == 0;
		memcpy(part, p, n);
		part[n] = 0;
		if (fstatat(dir, part, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				r = hb_err_sys(-errno, "/etc/resolv.conf: %.*s", (int)(p + n - target),
					       target);
			break; /* missing: made as the bind's target */
		}
		int len = (int)(p + n - target);
		if (S_ISLNK(st.st_mode)) {
			ssize_t k = readlinkat(dir, part, to, sizeof(to) - 1);
			to[k > 0 ? k : 0] = 0;
			if (last)
				snprintf(why, sizeof(why), "%s (to %s)",
					 linked ? "itself a link" : "is a link", to);
			else
				snprintf(why, sizeof(why), "%sthrough the link %.*s (to %s)",
					 linked ? "" : "is reached ", len, target, to);
			r = resolv_conf_refused(linked, target, why);
			break;
		}
		if (last) {
			if (S_ISDIR(st.st_mode))
				r = resolv_conf_refused(linked, target, linked ? "a directory" : "is a directory");
			break;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(why, sizeof(why), "%sthrough %.*s, not a directory",
				 linked ? "" : "is reached ", len, target);
			r = resolv_conf_refused(linked, target, why);
			break;
		}
		int next = openat(dir, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			r = hb_err_sys(-errno, "/etc/resolv.conf: %.*s", len, target);
			break;
		}
		close(dir);
		dir = next;
		p += n + 1;
	}
	close(dir);
	return r;
}

int nat_resolv_conf_target(const char *root, char *out, size_t size)
{
	static const char plain[] = "/etc/resolv.conf";
	static const char *const system_mounts[] = { "/dev", "/proc", "/sys" };
	char link[PATH_MAX + 1];
	int top, etc, r;
	ssize_t n;

	if (size < sizeof(plain))
		return hb_err(-ENAMETOOLONG, "resolv.conf target: no room");
	memcpy(out, plain, sizeof(plain));
	/* only a real /etc of the root's own: a linked one the bind refuses */
	top = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (top < 0)
		return 0;
	etc = openat(top, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (etc < 0) {
		r = check_bind_target(top, out, false);
		close(top);
		return r;
	}
	/* one byte more than a link can hold: a target that fills it was cut */
	n = readlinkat(etc, "resolv.conf", link, sizeof(link) - 1);
	close(etc);
	if (n <= 0) { /* not a link (or none): bound where it is */
		r = check_bind_target(top, out, false);
		close(top);
		return r;
	}
	if ((size_t)n == sizeof(link) - 1) {
		close(top);
		return hb_err(-ENAMETOOLONG, "network nat: the image's /etc/resolv.conf links to a "
			      "path too long");
	}
	link[n] = 0;
	snprintf(out, size, "%s", link[0] == '/' ? "/" : "/etc");
	if ((r = path_join_lexical(out, size, link)) < 0) {
		memcpy(out, plain, sizeof(plain));
		close(top);
		return hb_err(r, "network nat: the image's /etc/resolv.conf links to a path too "
			      "long");
	}
	/* /dev, /proc and /sys are the sandbox's own mounts, not the image's
	 * tree: a bind there would replace what they hold (a link to /dev/null
	 * made every '> /dev/null' fail with EROFS) */
	for (size_t i = 0; i < sizeof(system_mounts) / sizeof(system_mounts[0]); i++) {
		size_t len = strlen(system_mounts[i]);
		if (strncmp(out, system_mounts[i], len) == 0 && (out[len] == 0 || out[len] == '/')) {
			close(top);
			return hb_err(-EINVAL, "network nat: the image's /etc/resolv.conf links to "
				      "%s, in the sandbox's own %s, where its name server cannot be "
				      "set (make it a file, or a link into the image's tree)", out,
				      system_mounts[i]);
		}
	}
	r = check_bind_target(top, out, true);
	close(top);
	return r;
}

int nat_helper_check(void)
{
	const char *path = getenv("PATH");
	char dir[4096];

	if (!path || !path[0])
		path = NAT_DEFAULT_PATH;
	while (*path) {
		size_t n = strcspn(path, ":");
		int len = snprintf(dir, sizeof(dir), "%.*s/" NAT_HELPER, (int)n, path);

		if (n > 0 && len > 0 && (size_t)len < sizeof(dir) && access(dir, X_OK) == 0)
			return 0;
		path += n + (path[n] == ':');
	}
	return hb_err(-ENOPKG, "network nat needs " NAT_HELPER ", which is not installed "
		      "(install the package " NAT_HELPER_PACKAGE ")");
}

/* The helper's spawn: our descriptors at its NAT_READY_FD and NAT_EXIT_FD,
 * stdin and stdout on /dev/null, stderr on log_fd (ours if -1); every signal at
 * its default and none blocked (a daemon blocks and ignores some, and both
 * survive execve).  Its environment is PATH alone: ours holds the
 * repository's credentials (AWS_SECRET_ACCESS_KEY), which a process that
 * parses what the sandbox sends has no use for. */
static int spawn_helper(pid_t target, int ready_w, int exit_r, int log_fd, const char *api_dir,
			pid_t *pid)
{
	char target_s[16], ready_s[16], exit_s[16], path_env[4096];
	const char *path = getenv("PATH");
	char *envp[] = { path_env, NULL };
	const char *argv[12] = { NAT_HELPER, "--configure", "--mtu=" NAT_MTU,
				 "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
				 ready_s, exit_s };
	int argc = 8;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int r;

	if (api_dir)
		argv[argc++] = "--api-socket=" NAT_API_SOCKET; /* in its working directory */
	argv[argc++] = target_s;
	argv[argc++] = NAT_TAP;
	snprintf(target_s, sizeof(target_s), "%d", (int)target);
	snprintf(ready_s, sizeof(ready_s), "--ready-fd=%d", NAT_READY_FD);
	snprintf(exit_s, sizeof(exit_s), "--exit-fd=%d", NAT_EXIT_FD);
	if (!path || !path[0] ||
	    snprintf(path_env, sizeof(path_env), "PATH=%s", path) >= (int)sizeof(path_env))
		snprintf(path_env, sizeof(path_env), "PATH=" NAT_DEFAULT_PATH);
	if ((r = proc_spawnattr_init(&at)) < 0)
		return r;
	if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
		posix_spawnattr_destroy(&at);
		return hb_err(-r, "posix_spawn_file_actions_init: %s", strerror(r));
	}
	if ((r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, ready_w, NAT_READY_FD)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, exit_r, NAT_EXIT_FD)) == 0 &&
	    (log_fd < 0 || (r = posix_spawn_file_actions_adddup2(&fa, log_fd, 2)) == 0) &&
	    (!api_dir || (r = posix_spawn_file_actions_addchdir_np(&fa, api_dir)) == 0))
		r = posix_spawnp(pid, NAT_HELPER, &fa, &at, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r != 0)
		return hb_err(-r, "start " NAT_HELPER ": %s", strerror(r));
	return 0;
}

/* Wait for the helper's ready byte.  EOF: it ended without configuring the
 * network (its own error is in its log: with_log_tail). */
static int wait_ready(int fd, pid_t pid)
{
	uint64_t deadline = now_ns() + (uint64_t)NAT_READY_TIMEOUT_MS * 1000000;
	char byte;

	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return hb_err(-ETIMEDOUT, NAT_HELPER " %d did not bring the network up "
				      "within %d ms", (int)pid, NAT_READY_TIMEOUT_MS);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (pr < 0 && errno != EINTR)
			return hb_err_sys(-errno, "poll");
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, &byte, 1);
		if (n == 1)
			return 0;
		if (n == 0)
			return hb_err(-EIO, NAT_HELPER " ended before the network was up");
		if (errno != EINTR)
			return hb_err_sys(-errno, "read from " NAT_HELPER);
	}
}

/* The error r (its message recorded) with the last lines of the helper's
 * log at path added, on the same line: what the helper said before it
 * failed, which the user sees rather than the daemon's log. */
static int with_log_tail(int r, const char *path)
{
	char msg[512], tail[NAT_LOG_TAIL_BYTES + 1], said[NAT_LOG_TAIL_BYTES + 64] = "";
	const char *lines[NAT_LOG_TAIL_LINES];
	int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
	off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1, from = 0;
	ssize_t n = 0;
	int count = 0;

	if (end > 0) {
		from = end > NAT_LOG_TAIL_BYTES ? end - NAT_LOG_TAIL_BYTES : 0;
		n = pread(fd, tail, (size_t)(end - from), from);
	}
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return r;
	tail[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (tail[i] != '\n' && ((unsigned char)tail[i] < ' ' || tail[i] == 0x7f))
			tail[i] = '?';
	/* the last lines, newest last; a first one the tail's start cut is
	 * left out */
	for (char *p = tail + n; p > tail && count < NAT_LOG_TAIL_LINES;) {
		while (p > tail && p[-1] == '\n')
			*--p = 0;
		char *start = p;
		while (start > tail && start[-1] != '\n')
			start--;
		if (start == p || (start == tail && from > 0))
			break;
		lines[count++] = start;
		p = start;
	}
	for (size_t len = 0; count > 0; count--)
		len += (size_t)snprintf(said + len, sizeof(said) - len, "%s%s", len ? " / " : "",
					lines[count - 1]);
	if (!said[0])
		return r;
	hb_err_save(msg, sizeof(msg));
	return hb_err(r, "%s (it said: %s)", msg, said);
}

/* Move *fd to a number above the helper's targets, so that placing one
 * cannot overwrite the other before it is placed. */
static int move_above_targets(int *fd)
{
	int moved;

	if (*fd > NAT_EXIT_FD)
		return 0;
	if ((moved = fcntl(*fd, F_DUPFD_CLOEXEC, NAT_EXIT_FD + 1)) < 0)
		return hb_err_sys(-errno, "fcntl F_DUPFD");
	close(*fd);
	*fd = moved;
	return 0;
}

/* Whether the host can listen on p's address and port now: 0 or -errno.
 * TCP as slirp's listening sockets are made (SO_REUSEADDR: a port in
 * TIME_WAIT is free); UDP without it, so that a socket that has it (slirp
 * binds UDP with it, and would share the port with another) counts too. */
static int try_bind(const struct nat_port *p)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->host_port),
				  .sin_addr = p->host_addr };
	int fd = socket(AF_INET, (p->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	int one = 1, r = 0;

	if (fd < 0)
		return -errno;
	if (!p->udp)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Why the host cannot listen on p's address and port (r: try_bind's
 * answer): an error with a message naming the port; the helper's desc
 * when the trial worked (taken and let go since). */
static int not_published(const struct nat_port *p, const char *text, int r, const char *desc)
{
	if (r == -EADDRINUSE)
		return hb_err(r, "publish %s: the host's port %u/%s is in use", text,
			      (unsigned)p->host_port, p->udp ? "udp" : "tcp");
	if (r == -EADDRNOTAVAIL)
		return hb_err(r, "publish %s: the address is not one of this host's", text);
	if (r < 0)
		return hb_err(r, "publish %s: the host cannot listen there: %s", text, strerror(-r));
	return hb_err(-EIO, "publish %s: " NAT_HELPER " could not listen on the host's port (%s)",
		      text, desc ? desc : "no reason given");
}

/* Read fd's whole answer (until EOF) into buf, by deadline (now_ns()):
 * the number of bytes, size when there is more, or -errno (-ETIMEDOUT).
 * One deadline for all of it: a socket timeout counts per read, so an
 * answer a byte at a time would never time out. */
static ssize_t read_until_eof(int fd, char *buf, size_t size, uint64_t deadline)
{
	size_t len = 0;

	while (len < size) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr <= 0)
			continue;
		ssize_t n = recv(fd, buf + len, size - len, MSG_DONTWAIT);
		if (n == 0)
			return (ssize_t)len;
		if (n > 0)
			len += (size_t)n;
		else if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	return (ssize_t)len;
}

/* Send one request to the helper's API (dir: an open descriptor of the
 * directory holding its socket) and return its answer, all of it within
 * NAT_API_TIMEOUT_MS. */
static int api_call(int dir, json_t *req, json_t **reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { NAT_API_TIMEOUT_MS / 1000, (NAT_API_TIMEOUT_MS % 1000) * 1000 };
	uint64_t deadline = now_ns() + (uint64_t)NAT_API_TIMEOUT_MS * 1000000;
	char buf[NAT_API_REPLY_MAX + 1], *text = json_dumps(req, JSON_COMPACT);
	size_t len;
	ssize_t got;
	int fd = -1, r = 0;

	if (!text)
		return hb_err(-ENOMEM, "out of memory");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" NAT_API_SOCKET, dir);
	/* the request fits the socket's buffer: its send does not wait */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = hb_err_sys(-errno, NAT_HELPER "'s API socket");
		goto out;
	}
	if ((r = send_all(fd, text, strlen(text))) < 0) {
		r = hb_err_sys(r, "send to " NAT_HELPER "'s API");
		goto out;
	}
	shutdown(fd, SHUT_WR); /* its end of a request */
	got = read_until_eof(fd, buf, sizeof(buf) - 1, deadline);
	if (got == -ETIMEDOUT) {
		r = hb_err(-ETIMEDOUT, NAT_HELPER "'s API did not answer within %d ms",
			   NAT_API_TIMEOUT_MS);
		goto out;
	}
	if (got < 0) {
		r = hb_err_sys((int)got, "read from " NAT_HELPER "'s API");
		goto out;
	}
	if ((size_t)got == sizeof(buf) - 1) {
		r = hb_err(-EPROTO, NAT_HELPER "'s API answered over %d bytes", NAT_API_REPLY_MAX);
		goto out;
	}
	len = (size_t)got;
	buf[len] = 0;
	if (!(*reply = json_loadb(buf, len, 0, NULL)))
		r = hb_err(-EPROTO, NAT_HELPER "'s API answered '%.200s', not JSON", buf);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return r;
}

/* Publish one port through the helper's API. */
static int publish_port(int dir, const struct nat_port *p)
{
	char text[NAT_PORT_TEXT_MAX], addr[INET_ADDRSTRLEN];
	json_t *req, *reply = NULL;
	int r;

	nat_port_format(p, text, sizeof(text));
	/* UDP: the helper's bind would share a port another holds with
	 * SO_REUSEADDR (another sandbox's helper), so it is tried first */
	if (p->udp && (r = try_bind(p)) < 0)
		return not_published(p, text, r, NULL);
	inet_ntop(AF_INET, &p->host_addr, addr, sizeof(addr));
	req = json_pack("{s:s, s:{s:s, s:s, s:i, s:i}}", "execute", "add_hostfwd", "arguments",
			"proto", p->udp ? "udp" : "tcp", "host_addr", addr,
			"host_port", (int)p->host_port, "guest_port", (int)p->guest_port);
	if (!req)
		return hb_err(-ENOMEM, "out of memory");
	r = api_call(dir, req, &reply);
	json_decref(req);
	if (r < 0)
		return hb_err_ctx(r, "publish %s", text);
	if (!json_is_object(json_object_get(reply, "return"))) {
		const char *desc = json_string_value(json_object_get(
			json_object_get(reply, "error"), "desc"));
		r = not_published(p, text, try_bind(p), desc);
	}
	json_decref(reply);
	return r;
}

/* Publish cfg's ports. */
static int publish_ports(const struct nat_helper_config *cfg)
{
	int dir, r = 0;

	if (cfg->port_count == 0)
		return 0;
	if ((dir = open(cfg->api_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return hb_err_sys(-errno, "open %s", cfg->api_dir);
	for (size_t i = 0; r == 0 && i < cfg->port_count; i++)
		r = publish_port(dir, &cfg->ports[i]);
	close(dir);
	return r;
}

/* The helper's groups, once it has ended; r: the error being reported
 * (0: none), whose message a failure here must not replace. */
static void remove_groups(struct nat_helper *h, int r)
{
	char msg[512];

	if (!h->cgroup[0])
		return;
	hb_err_save(msg, sizeof(msg));
	sandbox_remove_cgroups(h->cgroup);
	hb_err_clear();
	if (r < 0)
		hb_err(r, "%s", msg);
	h->cgroup[0] = 0;
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Whether the network namespace of pid has the helper's tap device: 1, 0,
 * or -errno. */
static int has_tap(pid_t pid)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid);
	if (!(f = fopen(path, "re")))
		return -errno;
	while (!found && getline(&line, &cap, f) > 0) {
		const char *name = line + strspn(line, " ");
		found = strncmp(name, NAT_TAP ":", sizeof(NAT_TAP)) == 0;
	}
	free(line);
	fclose(f);
	return found;
}

/* Wait until no helper holds the tap device of target's namespace: one
 * that a killed daemon left is ending (its exit fd), but may not have yet
 * when the next daemon re-adopts the sandbox, and a second one cannot make
 * the device while it does (TUNSETIFF: EBUSY). */
static int wait_tap_gone(pid_t target)
{
	uint64_t deadline = now_ns() + (uint64_t)NAT_TAP_GONE_WAIT_MS * 1000000;
	int r;

	while ((r = has_tap(target)) == 1 && now_ns() < deadline) {
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (r < 0)
		return hb_err(r, "network of %d: /proc/%d/net/dev: %s", (int)target, (int)target,
			      strerror(-r));
	if (r == 1)
		return hb_err(-EBUSY, "network of %d: " NAT_TAP " still held after %d ms (by an "
			      "earlier " NAT_HELPER "?)", (int)target, NAT_TAP_GONE_WAIT_MS);
	return 0;
}

/* path becomes path.1 (an older .1 goes); none yet is fine. */
static int rotate_log(const char *path)
{
	char older[PATH_MAX];

	if (snprintf(older, sizeof(older), "%s.1", path) >= (int)sizeof(older))
		return hb_err(-ENAMETOOLONG, "%s: path too long", path);
	if (rename(path, older) < 0 && errno != ENOENT)
		return hb_err_sys(-errno, "rename %s to %s", path, older);
	return 0;
}

int nat_helper_start(pid_t target, const struct nat_helper_config *cfg, struct nat_helper **out)
{
	int ready[2] = { -1, -1 }, exitp[2] = { -1, -1 }, log_fd = -1;
	const char *api_dir = cfg->port_count ? cfg->api_dir : NULL;
	struct nat_helper *h;
	pid_t pid = -1;
	int r;

	if ((r = nat_helper_check()) < 0)
		return r;
	if (cfg->cgroup_name && strlen(cfg->cgroup_name) >= sizeof(h->cgroup))
		return hb_err(-ENAMETOOLONG, "cgroup name '%s' too long", cfg->cgroup_name);
	if (cfg->port_count && !api_dir)
		return hb_err(-EINVAL, "publishing ports needs a directory for the API socket");
	if ((r = wait_tap_gone(target)) < 0)
		return r;
	/* a killed helper leaves its socket file, which a new bind would refuse */
	if (api_dir) {
		char sock[PATH_MAX];
		if (snprintf(sock, sizeof(sock), "%s/" NAT_API_SOCKET, api_dir) >= (int)sizeof(sock))
			return hb_err(-ENAMETOOLONG, "%s: path too long", api_dir);
		if (unlink(sock) < 0 && errno != ENOENT)
			return hb_err_sys(-errno, "remove %s", sock);
	}
	if (!(h = calloc(1, sizeof(*h))))
		return hb_err(-ENOMEM, "out of memory");
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(exitp, O_CLOEXEC) < 0) {
		r = hb_err_sys(-errno, "pipe");
		goto fail;
	}
	/* it holds what this helper says, no more; the previous one's lines
	 * (a helper that died, a wake that failed) are kept once, as .1 */
	if (cfg->log_path && (r = rotate_log(cfg->log_path)) < 0)
		goto fail;
	if (cfg->log_path &&
	    (log_fd = open(cfg->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			   0600)) < 0) {
		r = hb_err_sys(-errno, "open %s", cfg->log_path);
		goto fail;
	}
	if ((r = move_above_targets(&ready[1])) < 0 || (r = move_above_targets(&exitp[0])) < 0 ||
	    (log_fd >= 0 && (r = move_above_targets(&log_fd)) < 0) ||
	    (r = spawn_helper(target, ready[1], exitp[0], log_fd, api_dir, &pid)) < 0)
		goto fail;
	close(ready[1]);
	close(exitp[0]);
	ready[1] = exitp[0] = -1;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	if (cfg->cgroup_name) { /* named first: a confinement that failed half-way is undone too */
		snprintf(h->cgroup, sizeof(h->cgroup), "%s", cfg->cgroup_name);
		r = sandbox_cgroup_confine(cfg->cgroup_name, cfg->lim, pid);
	}
	bool not_up = r == 0 && (r = wait_ready(ready[0], pid)) < 0;
	if (r < 0 || (r = publish_ports(cfg)) < 0) {
		kill_and_reap(pid);
		if (not_up) /* once it has ended: its last words are written */
			r = with_log_tail(r, cfg->log_path);
		remove_groups(h, r);
		goto fail;
	}
	close(ready[0]);
	h->pid = pid;
	h->exit_fd = exitp[1];
	*out = h;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (exitp[i] >= 0)
			close(exitp[i]);
	}
	if (log_fd >= 0)
		close(log_fd);
	free(h);
	return r;
}

pid_t nat_helper_pid(const struct nat_helper *h)
{
	return h->pid;
}

bool nat_helper_ended(struct nat_helper *h, int *status)
{
	int st = 0;

	if (!h->reaped && waitpid(h->pid, &st, WNOHANG) == h->pid) {
		h->reaped = true;
		if (status)
			*status = st;
	}
	return h->reaped;
}

void nat_helper_stop(struct nat_helper *h)
{
	if (!h)
		return;
	close(h->exit_fd);
	if (!h->reaped) /* its pid is free again once reaped: never signalled then */
		kill_and_reap(h->pid);
	remove_groups(h, 0);
	free(h);
}
