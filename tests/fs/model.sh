#!/bin/bash
# Randomized model test: random operations on the mount and on a native copy
# must agree step by step and in the final tree; after a commit, the committed
# snapshot mounted fresh and the same upper remounted must still agree.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_model_start
OPS=${FS_MODEL_OPS:-3000}

for seed in 1 2 3; do
	log "seed $seed: $OPS operations"
	rm -rf "$T/native"
	cp -a "$T/src" "$T/native"
	M="$T/mnt$seed"
	fs_mount "$ID" "$M" --upper "$T/upper$seed"
	"$FS_MODEL" "$M" "$T/native" "$seed" "$OPS" || bad "seed $seed: the mount and the native tree disagree"
	rm -rf "$T/native1"
	cp -a "$T/native" "$T/native1"
	C=$(fs_commit "$M") || exit 1
	fs_umount "$M"
	fs_mount "$C" "$M"
	"$FS_MODEL" "$M" "$T/native" "$seed" 0 || bad "seed $seed: the committed snapshot differs"
	# and more operations on the committed snapshot's mount
	"$FS_MODEL" "$M" "$T/native" "$((seed + 100))" "$((OPS / 3))" || bad "seed $seed: second round disagrees"
	fs_umount "$M"
	fs_mount "$ID" "$M" --upper "$T/upper$seed"
	"$FS_MODEL" "$M" "$T/native1" "$seed" 0 || bad "seed $seed: remount of the upper differs"
	fs_umount "$M"
done
finish
