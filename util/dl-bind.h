/* Binding a shared library's functions at run time (dlopen on first use,
 * for libraries most processes of the binary never need). */
#pragma once
#include <stddef.h>

struct dl_sym {
	void **slot;      /* where the address goes */
	const char *name;
};

/* dlopen soname and fill every slot.  @return 0, or -1 with why in err. */
int dl_bind(const char *soname, const struct dl_sym *syms, size_t n, char *err, size_t errsz);
