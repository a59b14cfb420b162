#include "util/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_grow(void **items, size_t *cap, size_t count, size_t elem_size)
{
	size_t ncap;
	void *p;

	if (count < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	if (ncap <= count)
		ncap = count + 1;
	if (elem_size && ncap > SIZE_MAX / elem_size)
		return -ENOMEM;
	p = realloc(*items, ncap * elem_size);
	if (!p)
		return -ENOMEM;
	*items = p;
	*cap = ncap;
	return 0;
}
