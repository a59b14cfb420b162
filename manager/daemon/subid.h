/* Subordinate id ranges (/etc/subuid, /etc/subgid) delegated to host users.
 *
 * A user given a range can map it into a user namespace of their own
 * (newuidmap) and run processes as those host ids; a sandbox whose ids fall
 * in such a range would then be theirs to read, write and ptrace.  The
 * daemon picks sandbox id ranges outside every delegated one.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* Does [start, start + count) overlap a range of /etc/subuid or /etc/subgid
 * ($HIBERBOX_SUBUID_FILE and $HIBERBOX_SUBGID_FILE instead, for tests)?
 * A missing file delegates nothing; a line that does not parse is skipped. */
bool subid_overlaps(uint64_t start, uint64_t count);
