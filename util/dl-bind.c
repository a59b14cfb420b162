/* Binding a shared library's functions at run time (dl-bind.h). */
#include <dlfcn.h>
#include <stdio.h>

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
