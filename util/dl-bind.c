/* Binding a shared library's functions at run time (dl-bind.h). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/dl-bind.h"

int dl_bind(const char *soname, const struct dl_sym *syms, size_t n, char *err, size_t errsz)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(err, errsz, "%s", dlerror());
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
			snprintf(err, errsz, "%s lacks %s", soname, syms[i].name);
			return -1;
		}
	return 0;
}

/* pthread_once runs a function without arguments: the library being loaded
 * is handed over in a thread-local (each once-function runs on the caller's
 * thread, and a thread loads one library at a time). */
static __thread struct dl_lazy *loading;

static void dl_lazy_load(void)
{
	struct dl_lazy *l = loading;

	l->loaded = dl_bind(l->soname, l->syms, l->n, l->error, sizeof(l->error)) == 0;
}

bool dl_lazy_ready(struct dl_lazy *l)
{
	loading = l;
	pthread_once(&l->once, dl_lazy_load);
	return l->loaded;
}
