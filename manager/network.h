/* Sandbox networks: the names of the modes, and the user-mode NAT helper
 * that gives a sandbox of mode nat outbound access from its own network
 * namespace.
 *
 * The helper is slirp4netns (Debian package slirp4netns): a host process,
 * unprivileged towards the sandbox, that puts a tap device into the
 * namespace, configures it (10.0.2.100/24, gateway 10.0.2.2, DNS forwarder
 * 10.0.2.3) and relays the sandbox's connections through host sockets of
 * its own.  The host's loopback (127.0.0.1 on the host) is refused to it;
 * the host's other addresses are reached as any outside machine reaches
 * them.  The caller owns the helper: it is the caller's child, and it ends
 * when stopped or when the caller exits (slirp4netns's exit fd), so that
 * no helper outlives whoever keeps track of it.
 *
 * Functions return 0 or a negative errno with a message (hb_err()).
 */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "manager/sandbox.h"

/* Where a nat sandbox finds its name server (slirp4netns's forwarder to
 * the host's resolvers), as /etc/resolv.conf says it. */
#define NAT_RESOLV_CONF "nameserver 10.0.2.3\n"
/* The Debian package that holds the helper, named in errors. */
#define NAT_HELPER_PACKAGE "slirp4netns"

/* "none", "host" or "nat" (NULL for an unknown value). */
const char *sandbox_network_name(enum sandbox_network net);
/* The mode a name says; -EINVAL with a message listing the modes. */
int sandbox_network_parse(const char *name, enum sandbox_network *out);

/* Where in the tree of root (a directory of the host, a sandbox's root)
 * the nat resolv.conf is to be bound, as an absolute path inside: its
 * /etc/resolv.conf, or what that names if it is a symlink (images made
 * for systemd-resolved point it at /run/systemd/resolve/...), so that the
 * link, part of the image, stays and still leads to the nat's file.  The
 * link is followed once and only lexically, never out of root.  -EINVAL
 * with one line naming /etc/resolv.conf when the bind could not take what
 * it leads to: a place in /dev, /proc or /sys (the sandbox's own mounts),
 * a directory, another link, a path through a link or a non-directory;
 * -ENAMETOOLONG for a target too long. */
int nat_resolv_conf_target(const char *root, char *out, size_t size);

/* A port of a nat sandbox published on the host: what connects to
 * host_addr:host_port (TCP, or UDP) is relayed to guest_port at the
 * sandbox's address.  slirp4netns forwards IPv4 only. */
struct nat_port {
	struct in_addr host_addr;
	uint16_t host_port;
	uint16_t guest_port;
	bool udp;
};
/* "255.255.255.255:65535:65535/udp" and its NUL */
#define NAT_PORT_TEXT_MAX 32

/* Parse [HOSTIP:]HOSTPORT:PORT[/tcp|/udp]: HOSTIP an IPv4 address,
 * 127.0.0.1 when left out (every address of the host must be asked for,
 * as 0.0.0.0; multicast and broadcast ones are refused), ports 1 to
 * 65535, tcp unless /udp.  -EINVAL with a message
 * naming text otherwise. */
int nat_port_parse(const char *text, struct nat_port *out);
/* The canonical text of p (all four parts), into out of
 * NAT_PORT_TEXT_MAX bytes. */
void nat_port_format(const struct nat_port *p, char *out, size_t size);
/* Whether a and b want the same host port (same protocol and port, and
 * the same address or either on every address): one of them would fail. */
bool nat_port_overlaps(const struct nat_port *a, const struct nat_port *b);

struct nat_helper;

/* How a helper is started (nat_helper_start). */
struct nat_helper_config {
	/* its groups' name (NULL: none) and their limits */
	const char *cgroup_name;
	const struct sandbox_limits *lim;
	/* ports to publish, and a directory only root can enter for the
	 * helper's API socket, which publishing needs (unused without) */
	const struct nat_port *ports;
	size_t port_count;
	const char *api_dir;
	/* a file for what the helper writes on stderr, a new one at each
	 * start, the previous start's kept as PATH.1 (NULL: the caller's
	 * stderr); the last lines of a helper that ends or hangs before the
	 * network is up come with the error */
	const char *log_path;
};

/* 0 when the helper program is installed (found in PATH); -ENOPKG with a
 * message naming the package otherwise. */
int nat_helper_check(void);
/* Give the network namespace of pid (a sandbox's init, in a namespace of
 * its own) user-mode NAT, and return once its interface is configured and
 * every port of cfg published: a command started in the sandbox
 * afterwards has the network, and the host reaches its ports.  With
 * cfg->cgroup_name, the helper runs in groups of that name with limits
 * cfg->lim (sandbox_cgroup_confine): what the sandbox makes it hold (a
 * buffer per connection it opens) is bounded too.  They are removed with
 * it.  A port the host cannot listen on fails it with a message naming
 * the port (-EADDRINUSE when taken).  An earlier helper's tap device still
 * in the namespace (its daemon killed, the helper not yet gone) is waited
 * for, 10 s at most (-EBUSY).  On failure nothing is left running. */
int nat_helper_start(pid_t pid, const struct nat_helper_config *cfg, struct nat_helper **out);
/* The helper's host pid. */
pid_t nat_helper_pid(const struct nat_helper *h);
/* Whether the helper has ended by itself (killed, out of memory in its
 * groups, crashed): the sandbox has no network then.  Reaps it (status:
 * its wait status, the first time); nat_helper_stop still frees it. */
bool nat_helper_ended(struct nat_helper *h, int *status);
/* Kill and reap the helper, remove its groups, free the handle.  NULL is
 * fine. */
void nat_helper_stop(struct nat_helper *h);
