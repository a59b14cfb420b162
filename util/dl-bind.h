/* Binding a shared library's functions at run time (dlopen on first use,
 * for libraries most processes of the binary never need). */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct dl_sym {
	void **slot;      /* where the address goes */
	const char *name;
};

/* dlopen soname and fill every slot.  @return 0, or -1 with why in err. */
int dl_bind(const char *soname, const struct dl_sym *syms, size_t n, char *err, size_t errsz);

/* A library loaded on first use: define one with DL_LAZY(name, soname, syms)
 * (syms a static array of dl_sym) and call dl_lazy_ready(&name) before every
 * forwarded call.  The load is tried once; its error stays in .error. */
struct dl_lazy {
	const char *soname;
	const struct dl_sym *syms;
	size_t n;
	pthread_once_t once;
	bool loaded;
	char error[256];
};
#define DL_LAZY(name, so, symbols)                                                          \
	static struct dl_lazy name = { .soname = (so), .syms = (symbols),                  \
				       .n = sizeof(symbols) / sizeof((symbols)[0]),        \
				       .once = PTHREAD_ONCE_INIT }
bool dl_lazy_ready(struct dl_lazy *l);
