/* Growing arrays of any element type. */
#pragma once
#include <stddef.h>

/* Make room in *items (capacity *cap elements of elem_size bytes) for one
 * element past `count`, doubling as needed.  @return 0 or -ENOMEM (the
 * array is left as it was). */
int array_grow(void **items, size_t *cap, size_t count, size_t elem_size);
