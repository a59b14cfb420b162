# Fresh ext4 filesystems for the benchmarks (sourced by fs-bench.sh,
# repo-bench.sh and run).
#
# Extracts and untars are measured on a new filesystem each (mkfs defaults,
# which include a journal): an ext4 without a journal, as some VMs' root is,
# skips inodes freed in the last minute one by one, so writing many files right
# after deleting many measures that, not the tool.

# ext4_image_mount DIR SIZE: a new ext4 in DIR.img (SIZE as truncate takes
# it, sparse), mounted at DIR (created).  Fails, leaving no image, where loop
# mounts are not possible; the caller then uses DIR as it is.
ext4_image_mount() {
	mkdir -p "$1" || return 1
	rm -f "$1.img"
	if truncate -s "$2" "$1.img" && mkfs.ext4 -q -F "$1.img" >/dev/null 2>&1 &&
		mount -o loop "$1.img" "$1" 2>/dev/null; then
		return 0
	fi
	rm -f "$1.img"
	return 1
}

# ext4_image_drop DIR: unmount what ext4_image_mount made and delete its
# image (DIR itself stays); fails, keeping the image, if DIR will not unmount.
ext4_image_drop() {
	if mountpoint -q "$1"; then umount "$1" || return 1; fi
	rm -f "$1.img"
}
