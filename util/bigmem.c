/* Huge-page hints for large buffers (util/bigmem.h).
 *
 * Decoding the manifest of a 30 000-file tree touches ~8 MiB of fresh
 * memory; with 4 KiB pages that is ~2 000 page faults, and page-fault work
 * (trap, allocation, cgroup charge, clearing) was ~40% of the decode in a
 * profile.  glibc serves blocks this large from their own mmap, which
 * kernels since 6.7 align to 2 MiB, so the whole block can take huge pages.
 *
 * Many small blocks add up the same way: bigmem_heap() gives them huge
 * pages by advising the heap they come from.  In THP "madvise" mode a fault
 * there may compact memory to find a free 2 MiB page; the kernel falls back
 * to small pages when it cannot. */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
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

void bigmem_heap(size_t bytes)
{
	/* One arena: memory the walk's threads allocate lands in the advised
	 * heap too. */
	mallopt(M_ARENA_MAX, 1);
	bigmem_main_heap(bytes);
}

void bigmem_main_heap(size_t bytes)
{
	uintptr_t huge = BIGMEM_MIN, start, end;
	char *p;

	/* Blocks up to 32 MiB come from the main heap, which grows by `bytes`
	 * at a time and keeps what is freed, so the region stays whole. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TOP_PAD, (int)bytes);
	mallopt(M_TRIM_THRESHOLD, (int)(bytes * 2));
	p = malloc(1 << 20); /* more than the top holds: the heap grows now */
	if (!p)
		return;
	/* whole huge pages of the new room; nothing if p came from mmap (no
	 * heap, or a malloc that is not glibc's, as under ASan) */
	start = ((uintptr_t)p + huge) & ~(huge - 1);
	end = (uintptr_t)sbrk(0) & ~(huge - 1);
	free(p);
	if (end > start && end - start <= 2 * bytes)
		(void)madvise((void *)start, end - start, MADV_HUGEPAGE);
}

void bigmem_main_heap_end(void)
{
	/* Blocks up to 32 MiB stay in the heaps, kept when freed below 8 MiB
	 * of free top: a process reading chunk after chunk reuses its buffers
	 * instead of mapping fresh pages for each (with glibc's 128 KiB mmap
	 * threshold, which its dynamic threshold no longer raises once set, a
	 * cold read of a mount ran at 50-60 MB/s here, against ~300). */
	mallopt(M_TOP_PAD, 128 << 10);
	mallopt(M_TRIM_THRESHOLD, 8 << 20);
	malloc_trim(0);
}
