/* libmicrohttpd, loaded when the daemon starts its server.
 *
 * The daemon lives in the same binary as the CLI and the FUSE mount process;
 * linked normally, libmicrohttpd and GnuTLS with its eight libraries would be
 * loaded by every one of them (~1.5 ms of start-up each on the project's VM)
 * for the one process that serves HTTP.  These forwarding functions dlopen it
 * on first use instead (see util/curl-lazy.c for the same with libcurl).
 * Only MHD_start_daemon can be the first call: it returns NULL (and says why
 * on stderr) if the library cannot be loaded; the others need its daemon. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "util/dl-bind.h"

static struct {
	struct MHD_Daemon *(*start_daemon_va)(unsigned int, uint16_t, MHD_AcceptPolicyCallback,
					      void *, MHD_AccessHandlerCallback, void *, va_list);
	void (*stop_daemon)(struct MHD_Daemon *);
	enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *, const char *);
	enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int,
					  struct MHD_Response *);
	void (*destroy_response)(struct MHD_Response *);
	const char *(*lookup_connection_value)(struct MHD_Connection *, enum MHD_ValueKind,
					       const char *);
	int (*get_connection_values)(struct MHD_Connection *, enum MHD_ValueKind,
				     MHD_KeyValueIterator, void *);
	const union MHD_ConnectionInfo *(*get_connection_info)(struct MHD_Connection *,
							       enum MHD_ConnectionInfoType, ...);
	struct MHD_Response *(*create_response_from_fd)(size_t, int);
	struct MHD_Response *(*create_response_from_callback)(uint64_t, size_t,
							      MHD_ContentReaderCallback, void *,
							      MHD_ContentReaderFreeCallback);
	struct MHD_Response *(*create_response_from_buffer)(size_t, void *,
							    enum MHD_ResponseMemoryMode);
	size_t (*http_unescape)(char *);
} fn;

static const struct dl_sym syms[] = {
	{ (void **)&fn.start_daemon_va, "MHD_start_daemon_va" },
	{ (void **)&fn.stop_daemon, "MHD_stop_daemon" },
	{ (void **)&fn.add_response_header, "MHD_add_response_header" },
	{ (void **)&fn.queue_response, "MHD_queue_response" },
	{ (void **)&fn.destroy_response, "MHD_destroy_response" },
	{ (void **)&fn.lookup_connection_value, "MHD_lookup_connection_value" },
	{ (void **)&fn.get_connection_values, "MHD_get_connection_values" },
	{ (void **)&fn.get_connection_info, "MHD_get_connection_info" },
	{ (void **)&fn.create_response_from_fd, "MHD_create_response_from_fd" },
	{ (void **)&fn.create_response_from_callback, "MHD_create_response_from_callback" },
	{ (void **)&fn.create_response_from_buffer, "MHD_create_response_from_buffer" },
	{ (void **)&fn.http_unescape, "MHD_http_unescape" },
};
DL_LAZY(libmhd, "libmicrohttpd.so.12", syms);

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port,
				    MHD_AcceptPolicyCallback apc, void *apc_cls,
				    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	struct MHD_Daemon *d;
	va_list ap;

	if (!dl_lazy_ready(&libmhd)) {
		fprintf(stderr, "hiberboxd: %s\n", libmhd.error);
		return NULL;
	}
	va_start(ap, dh_cls);
	d = fn.start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}

/* The rest only run once MHD_start_daemon has loaded the library. */
void MHD_stop_daemon(struct MHD_Daemon *d)
{
	fn.stop_daemon(d);
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *r, const char *h, const char *v)
{
	return fn.add_response_header(r, h, v);
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status,
				   struct MHD_Response *r)
{
	return fn.queue_response(c, status, r);
}

void MHD_destroy_response(struct MHD_Response *r)
{
	fn.destroy_response(r);
}

const char *MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind,
					const char *key)
{
	return fn.lookup_connection_value(c, kind, key);
}

int MHD_get_connection_values(struct MHD_Connection *c, enum MHD_ValueKind kind,
			      MHD_KeyValueIterator it, void *cls)
{
	return fn.get_connection_values(c, kind, it, cls);
}

/* No info type this daemon asks for takes an argument. */
const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *c,
							enum MHD_ConnectionInfoType type, ...)
{
	return fn.get_connection_info(c, type);
}

struct MHD_Response *MHD_create_response_from_fd(size_t size, int fd)
{
	return fn.create_response_from_fd(size, fd);
}

struct MHD_Response *MHD_create_response_from_callback(uint64_t size, size_t block,
						       MHD_ContentReaderCallback crc, void *cls,
						       MHD_ContentReaderFreeCallback crfc)
{
	return fn.create_response_from_callback(size, block, crc, cls, crfc);
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buf,
						     enum MHD_ResponseMemoryMode mode)
{
	return fn.create_response_from_buffer(size, buf, mode);
}

size_t MHD_http_unescape(char *val)
{
	return fn.http_unescape(val);
}
