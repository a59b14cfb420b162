#!/bin/bash
# A sandbox whose root is a hiberbox FUSE mount (the way the daemon will run
# them): an image tree snapshotted as uid 0, mounted with --uid-shift, used
# as the root of a sandbox whose root maps to the same host uid.  Checks that
# root inside can write the image, that files land with the shifted uid,
# that a commit + remount keeps them, and that a different shift with a
# matching id map works on the same snapshot.
#   env: HIBERBOX SANDBOX_RUN PROBE [BUSYBOX]
set -euo pipefail
: "${HIBERBOX:?}" "${SANDBOX_RUN:?}" "${PROBE:?}"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
[ -x "$BUSYBOX" ] || { echo "SKIP: no static busybox at $BUSYBOX"; exit 77; }

T=$(mktemp -d /tmp/hb-sandbox-fuse-XXXXXX)
chmod 755 "$T"
cleanup() {
	"$HIBERBOX" umount "$T/mnt" >/dev/null 2>&1 || umount -l "$T/mnt" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
export HIBERBOX_HOME=$T/home
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$T/img/bin" "$T/mnt"
cp "$BUSYBOX" "$T/img/bin/busybox"
ln -s busybox "$T/img/bin/sh"
cp "$PROBE" "$T/img/bin/probe"
"$HIBERBOX" init >/dev/null
img=$("$HIBERBOX" snapshot create "$T/img" | tail -1)

"$HIBERBOX" mount --uid-shift 100000 "$img" "$T/mnt"
out=$("$SANDBOX_RUN" "$T/mnt" -- sh -c '
	id -u
	echo hello > /hello.txt && mkdir /work && echo data > /work/file && echo wrote
	/bin/probe mount >/dev/null && echo mount-refused
	/bin/probe devfuse >/dev/null && echo no-dev-fuse
	exit 5') && rc=0 || rc=$?
[ "$rc" = 5 ] || fail "exit code $rc, expected 5 (output: $out)"
for want in 0 wrote mount-refused no-dev-fuse; do
	grep -qx "$want" <<<"$out" || fail "no '$want' in: $out"
done
[ "$(stat -c %u:%g "$T/mnt/hello.txt")" = 100000:100000 ] ||
	fail "hello.txt owned by $(stat -c %u:%g "$T/mnt/hello.txt"), expected 100000:100000"

snap=$("$HIBERBOX" commit "$T/mnt" | tail -1)
"$HIBERBOX" umount "$T/mnt"

# the same snapshot under another shift, with a matching id map
"$HIBERBOX" mount --uid-shift 300000 "$snap" "$T/mnt"
out=$("$SANDBOX_RUN" --id-map 300000:65536 "$T/mnt" -- sh -c 'cat /work/file; echo more >> /work/file; id -u')
[ "$out" = "$(printf 'data\n0')" ] || fail "after commit and remount: $out"
[ "$(stat -c %u "$T/mnt/work/file")" = 300000 ] || fail "work/file not owned by 300000"

# a sandbox whose id map does not match the mount's shift is not root of it
out=$("$SANDBOX_RUN" --id-map 400000:65536 "$T/mnt" -- sh -c 'echo x > /intruder 2>/dev/null && echo WROTE || echo DENIED' 2>&1) || true
grep -qx DENIED <<<"$out" && ! grep -q WROTE <<<"$out" || fail "a sandbox with another id map: $out"
"$HIBERBOX" umount "$T/mnt"
echo "sandbox on a FUSE root: ok"
