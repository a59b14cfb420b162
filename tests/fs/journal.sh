#!/bin/bash
# The journal of the upper directory (fs/upper.c):
# - it is compacted while the mount lives: create+unlink of 20 000 files and
#   10 000 chmods of one file leave it bounded (it grew with every change),
#   and a remount shows the same tree;
# - a SIGKILL of the fs process while a compaction is between writing the
#   new journal and switching to it (HIBERBOX_TEST_JOURNAL_COMPACT holds it
#   there), and after the switch, loses no answered change; so do kills at
#   random moments of a workload that compacts all the time;
# - one xattr set or removed costs its own bytes: 200 xattrs of 4 KiB on
#   one file write about 800 KiB of journal, not 80 MB;
# - a journal written by the binary before XATTR records (journal-v1.tar,
#   see below) still replays, takes new records after it, and compacts.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null
mkdir -p "$T/src/sub"
printf 'lower\n' >"$T/src/lower.txt"
setfattr -n user.low -v lowerval "$T/src/lower.txt"
printf 'g\n' >"$T/src/sub/g"
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"

jsize() { stat -c %s "$1/journal"; }

# tree_state MNT: every path, its type, mode, size, content hash and xattrs
tree_state() {
	python3 - "$1" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
for dp, dns, fns in os.walk(root):
    dns.sort()
    for n in sorted(dns + fns):
        p = os.path.join(dp, n)
        st = os.lstat(p)
        h = ''
        if os.path.isfile(p) and not os.path.islink(p):
            h = hashlib.sha1(open(p, 'rb').read()).hexdigest()
        xs = sorted((x, hashlib.sha1(os.getxattr(p, x, follow_symlinks=False)).hexdigest())
                    for x in os.listxattr(p, follow_symlinks=False))
        size = '' if os.path.isdir(p) else st.st_size
        print(os.path.relpath(p, root), oct(st.st_mode), size, st.st_nlink, h, xs)
PY
}

log "create+unlink of 20000 files: the journal stays bounded"
U="$T/upper-churn"
fs_mount "$ID" "$M" --upper "$U"
mkdir "$M/keep"
printf 'kept\n' >"$M/keep/k"
python3 - "$M" <<'PY'
import os, sys
m = sys.argv[1]
for i in range(20000):
    p = os.path.join(m, 'tmp%d' % (i % 7))
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b'x')
    os.close(fd)
    os.unlink(p)
PY
j=$(jsize "$U")
log "journal after 20000 create+unlink: $j bytes"
# each create+unlink appends ~180 bytes (3.6 MB in all) without
# compaction; compacted at 1 MiB it stays below that and what it describes
[ "$j" -lt $((3 << 19)) ] || bad "the journal grew to $j bytes for a tree of two files"
grep -q "journal compacted" "$HIBERBOX_HOME/fs.log" || bad "no compaction logged"
before=$(tree_state "$M")
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U"
[ "$(tree_state "$M")" = "$before" ] || bad "the tree differs after a remount: $(diff <(echo "$before") <(tree_state "$M") | head -20)"
fs_umount "$M"

log "10000 chmods of one file: the journal stays bounded"
U="$T/upper-chmod"
HIBERBOX_FS_TEST_COMPACT_BYTES=65536 fs_mount "$ID" "$M" --upper "$U"
python3 - "$M" <<'PY'
import os, sys
p = os.path.join(sys.argv[1], 'lower.txt')
for i in range(10000):
    os.chmod(p, 0o600 | (i % 2) * 0o44)
PY
chmod 640 "$M/lower.txt"
j=$(jsize "$U")
log "journal after 10000 chmods: $j bytes"
# ~60 bytes a chmod: 600 kB without compaction
[ "$j" -lt $((200 << 10)) ] || bad "the journal grew to $j bytes for one changed file"
before=$(tree_state "$M")
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U"
[ "$(stat -c %a "$M/lower.txt")" = 640 ] || bad "the last chmod is lost after compactions: $(stat -c %a "$M/lower.txt")"
[ "$(tree_state "$M")" = "$before" ] || bad "the tree differs after a remount: $(diff <(echo "$before") <(tree_state "$M") | head -20)"
fs_umount "$M"

log "200 xattrs of 4 KiB on one file: the journal grows by about their size"
U="$T/upper-xattr"
fs_mount "$ID" "$M" --upper "$U"
: >"$M/x"
j0=$(jsize "$U")
python3 - "$M/x" <<'PY'
import os, sys
for i in range(200):
    os.setxattr(sys.argv[1], 'user.x%03d' % i, bytes([65 + i % 26]) * 4096)
os.removexattr(sys.argv[1], 'user.x007')
os.setxattr(sys.argv[1], 'user.x008', b'short')
PY
setfattr -n user.a -v 1 "$M/lower.txt"
growth=$(($(jsize "$U") - j0))
log "200 xattrs of 4 KiB: the journal grew by $growth bytes"
[ "$growth" -lt $((200 * 4096 * 3 / 2)) ] || bad "200 xattrs of 4 KiB took $growth bytes of journal (O(n^2))"
before=$(tree_state "$M")
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U"
after=$(tree_state "$M")
[ "$after" = "$before" ] || bad "xattrs differ after a remount: $(diff <(echo "$before") <(echo "$after") | head)"
[ "$(getfattr --absolute-names --only-values -n user.x008 "$M/x" 2>/dev/null)" = short ] || bad "a replaced xattr's value is not the last one"
getfattr --absolute-names -n user.x007 "$M/x" >/dev/null 2>&1 && bad "a removed xattr is back after a remount"
[ "$(getfattr --absolute-names --only-values -n user.low "$M/lower.txt")" = lowerval ] || bad "the lower xattr of a file given another is lost"
[ "$(getfattr --absolute-names --only-values -n user.a "$M/lower.txt")" = 1 ] || bad "an xattr set on a lower file is lost"
fs_umount "$M"

# ops ROOT PHASE [COUNT]: the same changes on the mount and on a native
# copy of the lower tree.  "until": creates, writes, unlinks, chmods and
# xattrs until $U/journal.new exists (a compaction has written it; at most
# 5000 rounds) or COUNT rounds; prints the rounds made.  "after": a fixed set of further changes.
ops() {
	python3 - "$@" "$U" <<'PY'
import os, sys
root, phase = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 4 else 5000
upper = sys.argv[-1]
def p(*a):
    return os.path.join(root, *a)
if phase == 'until':
    os.makedirs(p('w'), exist_ok=True)
    i = 0
    while i < count and (len(sys.argv) > 4 or not os.path.exists(os.path.join(upper, 'journal.new'))):
        with open(p('w', 'f%d' % i), 'wb') as f:
            f.write(b'%d\n' % i * (i % 5 + 1))
        if i % 3 == 2:
            os.unlink(p('w', 'f%d' % (i - 1)))
        os.chmod(p('lower.txt'), 0o600 | (i % 2) * 0o44)
        os.setxattr(p('w', 'f%d' % i), 'user.i', b'%d' % i)
        i += 1
    print(i)
else:
    os.mkdir(p('after-dir'))
    with open(p('after-dir', 'a'), 'wb') as f:
        f.write(b'written while compacting\n')
    os.rename(p('w', 'f0'), p('after-dir', 'moved'))
    os.unlink(p('sub', 'g'))
    os.setxattr(p('lower.txt'), 'user.after', b'yes')
    os.removexattr(p('lower.txt'), 'user.low')
    os.chmod(p('lower.txt'), 0o604)
    with open(p('lower.txt'), 'ab') as f:
        f.write(b'appended\n')
PY
}

# kill_and_check: SIGKILL the fs process of $M, mount $U again, and compare
# with $T/native.
kill_and_check() {
	local what=$1
	fs_kill "$M"
	fs_umount "$M"
	fs_mount "$ID" "$M" --upper "$U"
	[ -e "$U/journal.new" ] && bad "$what: journal.new is left after a remount"
	diff <(tree_state "$T/native") <(tree_state "$M") >"$T/diff" ||
		bad "$what: the tree after a remount is not the tree before the kill: $(head -20 "$T/diff")"
	fs_umount "$M"
}

# wait_compacted N: until fs.log tells of more than N compactions (a
# minute at most: a loaded machine can take seconds)
wait_compacted() {
	local end=$((SECONDS + 60))
	until [ "$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log")" -gt "$1" ]; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.01
	done
}

FIFO="$T/compact.fifo"
mkfifo "$FIFO"
# held_compaction UPPER: a mount on UPPER whose first compaction waits
# before its switch, with the "after" changes made meanwhile (and on
# $T/native)
held_compaction() {
	U=$1
	rm -rf "$T/native" && cp -a "$T/src" "$T/native"
	HIBERBOX_TEST_JOURNAL_COMPACT="$FIFO" HIBERBOX_FS_TEST_COMPACT_BYTES=65536 fs_mount "$ID" "$M" --upper "$U"
	n=$(ops "$M" until) || fail "changes on the mount failed"
	[ -s "$U/journal.new" ] || fail "no compaction started after $n rounds of changes"
	ops "$T/native" until "$n" >/dev/null
	ops "$M" after && ops "$T/native" after || fail "changes during the compaction failed"
}

log "SIGKILL while a compaction waits to switch journals: nothing answered is lost"
held_compaction "$T/upper-kill1"
kill_and_check "killed before the switch"

log "SIGKILL after a compaction that took changes made while it ran"
held_compaction "$T/upper-kill2"
compactions=$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log")
: >"$FIFO" # let it go on
wait_compacted "$compactions"
[ -e "$U/journal.new" ] && fail "the compaction did not switch journals"
[ "$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log")" -gt "$compactions" ] || fail "the compaction did not finish"
printf 'after the switch\n' >"$M/last" && printf 'after the switch\n' >"$T/native/last"
kill_and_check "killed after the switch"

log "a journal written before XATTR records replays, and takes new records"
# journal-v1.tar: the journal and data files the binary of f99a5c0 left of
# this lower tree after: setfattr user.a=1 lower.txt; mkdir d; printf
# 'hi\n' >d/new; setfattr user.x1..x3 d/new; setfattr -x user.x2 d/new;
# chmod 600 d/new; setfattr user.dir=1 d; ln -s target d/link; mv sub/g
# d/g-moved; rmdir sub.
U="$T/upper-v1"
fs_mount "$ID" "$M" --upper "$U"
fs_umount "$M"
tar -C "$U" -xf "$SRCDIR/tests/fs/journal-v1.tar" || fail "extracting journal-v1.tar"
# xattrs_of PATH: name=value ... sorted
xattrs_of() {
	python3 -c 'import os, sys
p = sys.argv[1]
print(" ".join(sorted("%s=%s" % (x, os.getxattr(p, x, follow_symlinks=False).decode()) for x in os.listxattr(p, follow_symlinks=False))))' "$1"
}
check_v1() {
	local what=$1 new_x=$2
	[ "$(cat "$M/d/new" 2>&1)" = hi ] || bad "$what: d/new is '$(cat "$M/d/new" 2>&1)'"
	[ "$(stat -c %a "$M/d/new")" = 600 ] || bad "$what: d/new has mode $(stat -c %a "$M/d/new")"
	[ "$(xattrs_of "$M/d/new")" = "$new_x" ] || bad "$what: d/new has xattrs '$(xattrs_of "$M/d/new")', not '$new_x'"
	[ "$(xattrs_of "$M/d")" = "user.dir=1" ] || bad "$what: d has xattrs '$(xattrs_of "$M/d")'"
	[ "$(xattrs_of "$M/lower.txt")" = "user.a=1 user.low=lowerval" ] || bad "$what: lower.txt has xattrs '$(xattrs_of "$M/lower.txt")'"
	[ "$(readlink "$M/d/link")" = target ] || bad "$what: d/link is '$(readlink "$M/d/link")'"
	[ "$(cat "$M/d/g-moved" 2>&1)" = g ] || bad "$what: d/g-moved is '$(cat "$M/d/g-moved" 2>&1)'"
	[ -e "$M/sub" ] && bad "$what: the removed directory sub is back"
}
fs_mount "$ID" "$M" --upper "$U"
check_v1 "the old journal" "user.x1=one user.x3=three"
setfattr -n user.x4 -v four "$M/d/new" && setfattr -x user.x1 "$M/d/new" || fail "setfattr on the old journal's file"
setfattr -n user.a -v 2 "$M/lower.txt"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U"
setfattr -n user.a -v 1 "$M/lower.txt"
check_v1 "new records after the old journal" "user.x3=three user.x4=four"
fs_umount "$M"
log "... and compacts"
compactions=$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log")
HIBERBOX_FS_TEST_COMPACT_BYTES=1 fs_mount "$ID" "$M" --upper "$U"
touch "$M/d"
wait_compacted "$compactions"
[ "$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log")" -gt "$compactions" ] || bad "no compaction of the old journal"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$U"
check_v1 "the old journal compacted" "user.x3=three user.x4=four"
fs_umount "$M"

finish
