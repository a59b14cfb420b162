/* Large buffers that are filled once and read many times (a manifest's
 * entries, a decompressed body): backed by transparent huge pages where the
 * kernel allows (THP "madvise" mode, Debian's default). */
#pragma once
#include <stddef.h>

/* Ask for huge pages for the malloc'ed block [p, p + len), before it is
 * first touched: one page fault per 2 MiB instead of one per 4 KiB.  A hint
 * only: blocks under 2 MiB, and kernels without THP, are left alone. */
void bigmem_hint(void *p, size_t len);
