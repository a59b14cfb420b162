/* Huge-page hints for large buffers (util/bigmem.h).
 *
 * Decoding the manifest of a 30 000-file tree touches ~8 MiB of fresh
 * memory; with 4 KiB pages that is ~2 000 page faults, and page-fault work
 * (trap, allocation, cgroup charge, clearing) was ~40% of the decode in a
 * profile.  glibc serves blocks this large from their own mmap, which
 * kernels since 6.7 align to 2 MiB, so the whole block can take huge pages. */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/bigmem.h"

#define BIGMEM_MIN (2u << 20)

void bigmem_hint(void *p, size_t len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start, end;

	if (!p || len < BIGMEM_MIN)
		return;
	start = (uintptr_t)p & ~(page - 1);
	end = ((uintptr_t)p + len + page - 1) & ~(page - 1);
	(void)madvise((void *)start, end - start, MADV_HUGEPAGE); /* a hint: errors ignored */
}
