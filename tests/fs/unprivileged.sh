#!/bin/bash
# The filesystem for a user without privileges (uid 65534): mount goes
# through fusermount3 (no allow_other, the home and repository the user's),
# reads and writes on the mount, commit, `mounts`, umount through
# `fusermount3 -u`, a restore of the commit; SIGKILL of the fs process, then
# `umount` (lazy, through fusermount3) and a remount that recovers the
# writes. Where /dev/fuse is not open to the user: one clear line, nothing
# mounted. Needs root (to become the user and to set /dev/fuse's mode, put
# back on exit).
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
is_root || { echo "SKIP: needs root to run as another user"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: no setpriv"; exit 77; }
[ -u "$(command -v fusermount3 || echo /nonexistent)" ] || { echo "SKIP: no setuid fusermount3"; exit 77; }

DEV_MODE=$(stat -c %a /dev/fuse)
fs_setup
trap 'fs_rc=$?; nb_cleanup; chmod "$DEV_MODE" /dev/fuse; fs_cleanup; (exit $fs_rc); cleanup_tmp' EXIT

U="$T/u"
mkdir -p "$U/home" "$U/m" "$U/tree/dir"
printf 'lower\n' >"$U/tree/dir/lower.txt"
randfile "$U/tree/big.bin" 3145728 big
cp "$U/tree/big.bin" "$T/big.ref"
ln -s dir/lower.txt "$U/tree/link"
chown -R 65534:65534 "$U"
BIN="$HIBERBOX"
if ! setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$BIN" 2>/dev/null; then
	cp "$HIBERBOX" "$U/hiberbox" && chmod 755 "$U/hiberbox" && BIN="$U/hiberbox"
fi
# as the user: its own home and repository, nothing of root's environment
as_user() {
	setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$U" HIBERBOX_HOME="$U/home" "$@"
}
nb() { as_user timeout --kill-after=10 "$HB_TIMEOUT" "$BIN" "$@"; }
nb_cleanup() {
	if [ "$fs_rc" -ne 0 ] || [ "$FAILURES" -gt 0 ]; then
		echo "--- the user's fs.log (tail) ---" >&2
		tail -n 30 "$U/home/fs.log" >&2 2>/dev/null
	fi
	grep -q " $U/m fuse" /proc/mounts 2>/dev/null && { nb umount "$U/m" >/dev/null 2>&1 || umount -l "$U/m"; }
	return 0
}
nb_ok() {
	local rc=0
	nb "$@" 2>"$T/err" || rc=$?
	[ "$rc" -eq 0 ] || fail "as uid 65534: 'hiberbox $*' exited $rc: $(head -c 2000 "$T/err")"
}
mounted() { grep -q " $U/m fuse" /proc/mounts; }

nb_ok init >/dev/null
ID=$(nb_ok snapshot create "$U/tree" | tail -n 1)
[[ "$ID" =~ ^[0-9a-f]{32}$ ]] || fail "snapshot create as the user printed '$ID'"

log "/dev/fuse closed to the user: one clear line"
chmod 0600 /dev/fuse
rc=0
nb mount "$ID" "$U/m" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] || bad "mount without access to /dev/fuse exited $rc"
[ "$(wc -l <"$T/err")" -eq 1 ] || bad "mount without /dev/fuse: not one line: $(cat "$T/err")"
expect_in "$(cat "$T/err")" "/dev/fuse is not usable by this user" "the error says why" || true
mounted && bad "a mount was left behind"
chmod 0666 /dev/fuse

log "mount, read, write, commit as the user"
nb_ok mount "$ID" "$U/m"
mounted || fail "not mounted"
grep -q "^hiberbox $U/m fuse.hiberbox .*user_id=65534" /proc/mounts || bad "the mount is not the user's: $(grep " $U/m " /proc/mounts)"
grep " $U/m " /proc/mounts | grep -q allow_other && bad "an unprivileged mount has allow_other"
[ "$(as_user cat "$U/m/dir/lower.txt")" = lower ] || bad "lower file reads wrong"
as_user cmp -s "$U/m/big.bin" "$T/big.ref" || bad "big.bin reads wrong"
[ "$(as_user readlink "$U/m/link")" = dir/lower.txt ] || bad "symlink target wrong"
as_user sh -c "echo written >'$U/m/dir/new.txt' && mkdir '$U/m/newdir' && echo more >>'$U/m/dir/lower.txt'" ||
	bad "writes on the mount failed"
nb mounts >"$T/out" 2>&1 || bad "mounts failed: $(cat "$T/out")"
grep -q "$U/m" "$T/out" || bad "mounts does not list the mount: $(cat "$T/out")"
C1=$(nb_ok commit "$U/m" | tail -n 1)
[[ "$C1" =~ ^[0-9a-f]{32}$ ]] || fail "commit printed '$C1'"

log "umount through fusermount3"
nb_ok umount "$U/m"
mounted && bad "still mounted after umount"
as_user mkdir "$U/r"
nb_ok snapshot restore "$C1" "$U/r/out"
[ "$(cat "$U/r/out/dir/new.txt")" = written ] || bad "restored commit lacks the new file"
[ "$(cat "$U/r/out/dir/lower.txt")" = $'lower\nmore' ] || bad "restored commit lacks the append"
[ -d "$U/r/out/newdir" ] || bad "restored commit lacks the new directory"
[ "$(stat -c %u "$U/r/out/dir/new.txt")" = 65534 ] || bad "restored file not the user's"

log "SIGKILL of the fs process: ENOTCONN, umount clears it, remount recovers"
nb_ok mount "$C1" "$U/m" --upper "$U/upper"
as_user sh -c "echo after-commit >'$U/m/late.txt'" || bad "write after remount failed"
pid=$(nb mounts --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
[ -n "$pid" ] || fail "no pid in mounts --json"
kill -KILL "$pid"
fs_wait_dead "$U/m" as_user || bad "the mount of a killed fs process did not go dead"
err=$(as_user stat "$U/m/late.txt" 2>&1) && bad "stat on a dead mount succeeded"
expect_in "$err" "not connected" "a dead mount answers ENOTCONN" || true
nb_ok umount "$U/m"
mounted && bad "dead mount still there after umount"
nb_ok mount "$C1" "$U/m" --upper "$U/upper"
[ "$(as_user cat "$U/m/late.txt")" = after-commit ] || bad "the write before the kill was not recovered"
nb_ok umount "$U/m"
finish
