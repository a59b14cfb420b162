#!/bin/bash
# A full disk: the repository on a small tmpfs runs out of space in the
# middle of a snapshot. One clear line, nothing recorded, earlier snapshots
# intact and `check` clean; once there is room the same snapshot succeeds.
# A restore into a full filesystem fails in one line too. Needs root (mount).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
is_root || { echo "SKIP: needs root to mount a small tmpfs"; exit 77; }
setup_tmp
SMALL="$T/small"
mkdir -p "$SMALL"
mount -t tmpfs -o size=16m tmpfs "$SMALL" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
trap 'rc=$?; set +e; umount -l "$SMALL" 2>/dev/null; umount -l "$T/tiny" 2>/dev/null; (exit $rc); cleanup_tmp' EXIT
export HIBERBOX_REPO="$SMALL/repo"
hb_ok init >/dev/null

make_small_tree "$T/a" 200 5
dump_tree "$T/a" "$T/a.json"
A=$(snapshot_create "$T/a" --tag a)

log "ENOSPC in the middle of a snapshot"
mkdir -p "$T/b"
cp -a "$T/a/." "$T/b/"
for i in 1 2 3 4 5; do randfile "$T/b/big$i.bin" $((6 << 20)) "big$i"; done # 30 MiB, incompressible
dump_tree "$T/b" "$T/b.json"
expect_error "snapshot on a full disk" snapshot create "$T/b" --tag b &&
	expect_in "$HB_ERR" "no space left" "the error says the disk is full" || true
[ "$(list_ids | wc -l)" -eq 1 ] || bad "a failed snapshot was recorded: $(list_ids | tr '\n' ' ')"
hb_try snapshot show b
[ "$HB_RC" -ne 0 ] || bad "tag b exists after the failed snapshot"
hb_ok check >/dev/null
restore_and_compare a "$T/a.json" "snapshot a after the failed one" || true

log "room again: the same snapshot succeeds, gc leaves the repository clean"
mount -o remount,size=96m "$SMALL"
B=$(snapshot_create "$T/b" --tag b)
hb_ok gc >/dev/null
hb_ok check --read-data >/dev/null
restore_and_compare b "$T/b.json" "snapshot b after the disk had room" || true
restore_and_compare a "$T/a.json" "snapshot a at the end" || true
leftover=$(find "$SMALL/repo" -name '*.tmp.*' | head -n 3)
[ -z "$leftover" ] || bad "temporary files left in the repository after gc: $leftover"

log "restore into a full filesystem"
mkdir -p "$T/tiny"
mount -t tmpfs -o size=8m tmpfs "$T/tiny"
expect_error "restore into a full filesystem" snapshot restore b "$T/tiny/out" &&
	expect_in "$HB_ERR" "no space left" "the restore error says the disk is full" || true
umount "$T/tiny"
finish
