/* Large buffers that are filled once and read many times (a manifest's
 * entries, a decompressed body): backed by transparent huge pages where the
 * kernel allows (THP "madvise" mode, Debian's default). */
#pragma once
#include <stddef.h>

/* Ask for huge pages for the malloc'ed block [p, p + len), before it is
 * first touched: one page fault per 2 MiB instead of one per 4 KiB.  A hint
 * only: blocks under 2 MiB, and kernels without THP, are left alone. */
void bigmem_hint(void *p, size_t len);
/* For a command that builds large structures from many threads (snapshot
 * create: a walk entry, a name, a manifest record per file): have all
 * threads allocate from glibc's main heap, grown `bytes` at a time and
 * advised for huge pages.  Warm, this took the page faults of an unchanged
 * snapshot of 30 000 files from 11 000 to under 1 000.  Call once, before
 * threads start; the process keeps what it frees until it exits. */
void bigmem_heap(size_t bytes);
/* The same for the main thread's heap only, other threads keeping their
 * arenas (a multi-threaded server: no lock shared by all its allocations);
 * for a process that builds its large structures before threads start
 * (the fs process decoding a manifest). */
void bigmem_main_heap(size_t bytes);
/* Once those structures are built: the heap grows by small steps again and
 * gives back free tops over 8 MiB, and what was freed meanwhile (a
 * manifest's compressed and plain bodies) is given back, so that a
 * long-lived process does not keep it in its RSS. */
void bigmem_main_heap_end(void);
