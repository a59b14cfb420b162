#!/bin/bash
# snapshot create of a live tree: entries that vanish or change between the
# walk and the read, as a build or a package install running in the tree
# makes them.  Each race is made deterministic by a test hook
# (snapshot/testhook.h) that holds the create at its moment while the test
# changes the tree.  What must hold:
#   - an entry removed (or replaced by another kind) after it was listed is
#     left out with one warning line naming it, and the snapshot succeeds;
#   - a file changed while it is read is read again: the stored size and
#     content are one state of the file, never a torn mix;
#   - the next snapshot never reuses what an earlier one read of a file that
#     changed under it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
hb_ok init >/dev/null

# held HOOK ACTION ARGS...: run the CLI with ARGS, held by HOOK at its
# moment; run the shell command ACTION, then let it go on.  HB_RC, $T/out,
# $T/err as hb_try sets them.  A CLI that never reaches the hook fails.
held() {
	local hook=$1 action=$2 pid
	shift 2
	rm -f "$T/hold" && mkfifo "$T/hold"
	env "$hook=$T/hold" timeout --signal=KILL 120 "$HIBERBOX" "$@" >"$T/out" 2>"$T/err" &
	pid=$!
	if ! timeout 60 bash -c 'exec 3>"$1" && eval "$2"' _ "$T/hold" "$action"; then
		kill -KILL "$pid" 2>/dev/null
		bad "$hook: '$*' never reached the hook (or '$action' failed)"
	fi
	HB_RC=0
	wait "$pid" || HB_RC=$?
	rm -f "$T/hold"
}

# warnings: the lines of $T/err that are warnings
warnings() { grep '^hiberbox: warning: ' "$T/err" || true; }

# expect_left_out DESC WARNING EXPECTED_LISTING: the create held above
# succeeded with exactly the one warning line WARNING, and the snapshot
# lists exactly EXPECTED_LISTING (`snapshot ls -R`, one path a line).
expect_left_out() {
	local desc=$1 want=$2 listing=$3 id
	if [ "$HB_RC" -ne 0 ]; then
		bad "$desc: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
		return 0
	fi
	[ "$(warnings)" = "hiberbox: warning: $want" ] ||
		bad "$desc: expected the one warning '$want', got: $(cat "$T/err")"
	id=$(tail -n 1 "$T/out")
	[ "$(hb snapshot ls "$id" -R 2>&1)" = "$listing" ] ||
		bad "$desc: snapshot lists $(hb snapshot ls "$id" -R 2>&1 | tr '\n' ' '), expected $(tr '\n' ' ' <<<"$listing")"
	hb_ok check >/dev/null
}

# A small tree made again before each case.
S="$T/src"
fresh() {
	rm -rf "$S"
	mkdir -p "$S/d"
	echo hello >"$S/a"
	echo inside >"$S/d/f"
	echo keep >"$S/k"
}

log "a file removed between the walk and the read"
fresh
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a'" snapshot create "$S" --no-parent
expect_left_out "file removed" "'a' was removed during the snapshot; left out" $'d\nd/f\nk'
[ "$HB_RC" -ne 0 ] || [ "$(hb snapshot cat "$(tail -n 1 "$T/out")" k 2>&1)" = keep ] ||
	bad "file removed: k is not whole"

log "a directory removed between its listing and its walk"
fresh
held HIBERBOX_TEST_WALK_DIR_WAIT "rm -r '$S/d'" snapshot create "$S" --no-parent
expect_left_out "directory removed" "'d' was removed during the snapshot; left out" $'a\nk'

log "a directory of many files removed between the walk and the read: one warning"
fresh
for i in $(seq 1 60); do echo "$i" >"$S/d/f$i"; done
mkdir -p "$S/d/sub"
echo deeper >"$S/d/sub/g"
held HIBERBOX_TEST_CREATE_READ_WAIT "rm -r '$S/d'" snapshot create "$S" --no-parent
expect_left_out "directory removed after the walk" "'d' was removed during the snapshot; left out" $'a\nk'

log "a file replaced by a directory, a symbolic link, a FIFO"
fresh
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a' && mkdir '$S/a' && echo new >'$S/a/new'" \
	snapshot create "$S" --no-parent
expect_left_out "file replaced by a directory" "'a' was replaced by a directory during the snapshot; left out" $'d\nd/f\nk'
fresh
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a' && ln -s k '$S/a'" snapshot create "$S" --no-parent
expect_left_out "file replaced by a symlink" \
	"'a' was replaced by a symbolic link (it or a directory on its path) during the snapshot; left out" $'d\nd/f\nk'
fresh
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a' && mkfifo '$S/a'" snapshot create "$S" --no-parent
expect_left_out "file replaced by a FIFO" "'a' was replaced by a FIFO during the snapshot; left out" $'d\nd/f\nk'

log "a file with xattrs removed before its xattrs are read"
fresh
if setfattr -n user.probe -v 1 "$S/a" 2>/dev/null; then
	held HIBERBOX_TEST_WALK_XATTRS_WAIT "rm '$S/a'" snapshot create "$S" --no-parent
	expect_left_out "file removed before its xattrs" "'a' was removed during the snapshot; left out" $'d\nd/f\nk'
else
	log "SKIP xattr case: no user xattrs on $T"
fi

log "a file replaced by another (atomic rename) between the walk and the read"
fresh
chmod 644 "$S/a"
if setfattr -n user.v -v old "$S/a" 2>/dev/null; then
	echo "the new one" >"$T/a.new"
	chmod 600 "$T/a.new"
	setfattr -n user.v -v new "$T/a.new"
	held HIBERBOX_TEST_CREATE_READ_WAIT "mv '$T/a.new' '$S/a'" snapshot create "$S" --no-parent
	if [ "$HB_RC" -ne 0 ]; then
		bad "file renamed over: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
	else
		[ -z "$(warnings)" ] || bad "file renamed over: unexpected warning: $(warnings)"
		hb_ok snapshot restore "$(tail -n 1 "$T/out")" "$T/ren"
		got="$(cat "$T/ren/a") $(stat -c %a "$T/ren/a") $(getfattr --absolute-names --only-values -n user.v "$T/ren/a" 2>&1)"
		[ "$got" = "the new one 600 new" ] ||
			bad "file renamed over: content, mode and xattr are not all the new file's: $got"
		rm -rf "$T/ren"
	fi
else
	log "SKIP rename case: no user xattrs on $T"
fi

log "the first name of a hard-link group removed: the others keep the content"
fresh
ln "$S/a" "$S/d/a2"
ln "$S/a" "$S/d/a3"
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a'" snapshot create "$S" --no-parent
expect_left_out "hard link removed" "'a' was removed during the snapshot; left out" $'d\nd/a2\nd/a3\nd/f\nk'
if [ "$HB_RC" -eq 0 ]; then
	hb_ok snapshot restore "$(tail -n 1 "$T/out")" "$T/hl"
	[ "$(stat -c '%h %s' "$T/hl/d/a2")" = "2 6" ] && [ "$(cat "$T/hl/d/a3")" = hello ] &&
		[ "$(stat -c %i "$T/hl/d/a2")" = "$(stat -c %i "$T/hl/d/a3")" ] ||
		bad "hard link removed: the other names are not one file of 6 bytes: $(stat -c '%n %h %s %i' "$T/hl/d/"*)"
	rm -rf "$T/hl"
fi

# A hard-link group is read once, through one name, for all its names: that
# name must still hold the inode the walk saw.
# links DIR NAME...: "content links" of each name under DIR, and whether
# they are all one inode
links() {
	local dir=$1 n inodes=""
	shift
	for n in "$@"; do
		printf '%s %s %s\n' "$n" "$(cat "$dir/$n")" "$(stat -c %h "$dir/$n")"
		inodes="$inodes $(stat -c %i "$dir/$n")"
	done
	[ "$(tr ' ' '\n' <<<"$inodes" | sort -u | grep -c .)" -eq 1 ] && echo "one inode" || echo "several inodes"
}

# restored DESC: the create held above succeeded with no warning; its
# snapshot is restored to $T/hl.  Else a failure, and status 1.
restored() {
	rm -rf "$T/hl"
	if [ "$HB_RC" -ne 0 ]; then
		bad "$1: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
		return 1
	fi
	[ -z "$(warnings)" ] || bad "$1: unexpected warning: $(warnings)"
	hb_ok snapshot restore "$(tail -n 1 "$T/out")" "$T/hl"
}

log "the first name of a hard-link group replaced by another file: the group as the walk saw it"
fresh
ln "$S/a" "$S/d/a2"
ln "$S/a" "$S/d/a3"
echo "the new one" >"$T/a.new"
held HIBERBOX_TEST_CREATE_READ_WAIT "mv '$T/a.new' '$S/a'" snapshot create "$S" --no-parent
if restored "hard link replaced"; then
	got=$(links "$T/hl" a d/a2 d/a3)
	[ "$got" = $'a hello 3\nd/a2 hello 3\nd/a3 hello 3\none inode' ] ||
		bad "hard link replaced: the group is not the one the walk saw: $(tr '\n' ' ' <<<"$got")"
	rm -rf "$T/hl"
fi

log "every name of a hard-link group replaced, by two other files: the group is left out"
fresh
ln "$S/a" "$S/d/a2"
echo one >"$T/x" && echo two >"$T/y"
held HIBERBOX_TEST_CREATE_READ_WAIT "mv '$T/x' '$S/a' && mv '$T/y' '$S/d/a2'" \
	snapshot create "$S" --no-parent
if [ "$HB_RC" -ne 0 ]; then
	bad "hard links replaced: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
else
	want="hiberbox: warning: 'a' was replaced by another file during the snapshot; left out
hiberbox: warning: 'd/a2' was replaced by another file during the snapshot; left out"
	[ "$(warnings | sort)" = "$want" ] || bad "hard links replaced: expected warnings '$want', got: $(cat "$T/err")"
	[ "$(hb snapshot ls "$(tail -n 1 "$T/out")" -R 2>&1)" = $'d\nd/f\nk' ] ||
		bad "hard links replaced: snapshot lists $(hb snapshot ls "$(tail -n 1 "$T/out")" -R 2>&1 | tr '\n' ' ')"
	hb_ok check >/dev/null
fi

log "every name of a hard-link group replaced by one other file: that file"
fresh
ln "$S/a" "$S/d/a2"
echo "the new one" >"$T/x" && ln "$T/x" "$T/x2"
held HIBERBOX_TEST_CREATE_READ_WAIT "mv '$T/x' '$S/a' && mv '$T/x2' '$S/d/a2'" \
	snapshot create "$S" --no-parent
if restored "hard links replaced by one"; then
	got=$(links "$T/hl" a d/a2)
	[ "$got" = $'a the new one 2\nd/a2 the new one 2\none inode' ] ||
		bad "hard links replaced by one: $(tr '\n' ' ' <<<"$got")"
	rm -rf "$T/hl"
fi

# The other name is outside the tree (a package manager's store): within
# the tree the file has one name, and a file replaced is stored as the new one.
log "the one name in the tree of a file linked from outside replaced: the new file"
fresh
ln "$S/a" "$T/outside"
echo "the new one" >"$T/a.new"
chmod 600 "$T/a.new"
held HIBERBOX_TEST_CREATE_READ_WAIT "mv '$T/a.new' '$S/a'" snapshot create "$S" --no-parent
if restored "linked from outside, replaced"; then
	got="$(cat "$T/hl/a") $(stat -c '%a %h' "$T/hl/a")"
	[ "$got" = "the new one 600 1" ] || bad "linked from outside, replaced: $got"
	rm -rf "$T/hl" "$T/outside"
fi

log "a hard-link group's first name removed and its other replaced: the new file, its metadata too"
fresh
ln "$S/a" "$S/d/a2"
chmod 644 "$S/a"
echo "the new one" >"$T/a.new"
chmod 600 "$T/a.new"
held HIBERBOX_TEST_CREATE_READ_WAIT "rm '$S/a' && mv '$T/a.new' '$S/d/a2'" snapshot create "$S" --no-parent
expect_left_out "first name removed, other replaced" "'a' was removed during the snapshot; left out" \
	$'d\nd/a2\nd/f\nk'
if [ "$HB_RC" -eq 0 ]; then
	hb_ok snapshot restore "$(tail -n 1 "$T/out")" "$T/hl"
	got="$(cat "$T/hl/d/a2") $(stat -c '%a %h %s' "$T/hl/d/a2")"
	[ "$got" = "the new one 600 1 12" ] ||
		bad "first name removed, other replaced: d/a2 is not the new file: $got"
	rm -rf "$T/hl"
fi

# --- files that change while they are read ---------------------------------------------------
# HIBERBOX_TEST_CREATE_MIDREAD_WAIT holds the read of a file after its
# first 8 MiB.  The stored file must be one state of the file: here, since
# the change ends before the read goes on, the state after it.
B="$T/big"
# expect_as_now DESC: the create held above succeeded and stored big as it
# is now (size and content), its size agreeing with its content
expect_as_now() {
	local desc=$1 id
	if [ "$HB_RC" -ne 0 ]; then
		bad "$desc: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
		return 0
	fi
	id=$(tail -n 1 "$T/out")
	hb snapshot cat "$id" file >"$T/cat" 2>&1 || bad "$desc: snapshot cat failed: $(head -c 300 "$T/cat")"
	local listed
	listed=$(hb snapshot ls "$id" -l | awk '$NF == "file" { print $5 }')
	[ "$listed" = "$(stat -c %s "$T/cat")" ] ||
		bad "$desc: listed size $listed, content $(stat -c %s "$T/cat") bytes"
	cmp -s "$T/cat" "$B/file" ||
		bad "$desc: stored content ($(stat -c %s "$T/cat") bytes) is not the file as it is ($(stat -c %s "$B/file") bytes): torn"
	hb_ok check --read-data >/dev/null
}
rm -rf "$B" && mkdir -p "$B"
randfile "$B/file" 20000000 mid1
log "a file truncated while it is read"
held HIBERBOX_TEST_CREATE_MIDREAD_WAIT "truncate -s 3000000 '$B/file'" \
	snapshot create "$B" --no-parent --threads 1
expect_as_now "truncated while read"
log "a file grown while it is read"
randfile "$B/file" 20000000 mid1
held HIBERBOX_TEST_CREATE_MIDREAD_WAIT "head -c 5000000 /dev/urandom >>'$B/file'" \
	snapshot create "$B" --no-parent --threads 1
expect_as_now "grown while read"
log "a file rewritten in place (same size) while it is read"
randfile "$B/file" 20000000 mid2
held HIBERBOX_TEST_CREATE_MIDREAD_WAIT \
	"dd if=/dev/urandom of='$B/file' bs=1M count=1 conv=notrunc status=none" \
	snapshot create "$B" --no-parent --threads 1
expect_as_now "rewritten while read"
[ -z "$(warnings)" ] || bad "rewritten once while read: a warning although the second read was whole: $(warnings)"

log "a file that keeps changing while it is read: stored as last read, with a warning"
randfile "$B/file" 30000000 mid3
first=$(snapshot_create "$B")
(while :; do printf x >>"$B/file"; done) &
churn=$!
sleep 0.2
hb_try snapshot create "$B" --threads 1
kill "$churn" && wait "$churn" 2>/dev/null || true
if [ "$HB_RC" -ne 0 ]; then
	bad "changing file: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
else
	[ "$(warnings)" = "hiberbox: warning: 'file' changed while it was read, 3 times; stored as last read" ] ||
		bad "changing file: expected one warning naming it, got: $(cat "$T/err")"
	id=$(tail -n 1 "$T/out")
	hb snapshot cat "$id" file >"$T/cat"
	listed=$(hb snapshot ls "$id" -l | awk '$NF == "file" { print $5 }')
	[ "$listed" = "$(stat -c %s "$T/cat")" ] ||
		bad "changing file: listed size $listed, content $(stat -c %s "$T/cat") bytes"
	# what was read is a prefix of the file (it only grew)
	cmp -s "$T/cat" <(head -c "$(stat -c %s "$T/cat")" "$B/file") ||
		bad "changing file: the stored content is not a state of the file"
	# the next snapshot must read it again, not reuse the last one's record
	hb_try snapshot create "$B" --threads 1
	[ "$HB_RC" -eq 0 ] && [ -z "$(warnings)" ] ||
		bad "after the change: snapshot create exited $HB_RC: $(cat "$T/err")"
	expect_as_now "the snapshot after a changing read (parent reuse)"
fi

log "parent reuse: a file rewritten (same size, mtime put back) between walk and read"
R="$T/reuse"
rm -rf "$R" && mkdir -p "$R"
randfile "$R/file" 3000000 r1
randfile "$T/r2" 3000000 r2
touch -r "$R/file" "$T/r2"
# cp -p keeps the mtime, as rsync, tar and cp -a do
held HIBERBOX_TEST_CREATE_READ_WAIT "cat '$T/r2' >'$R/file' && touch -r '$T/r2' '$R/file'" \
	snapshot create "$R"
reuse_ok() { # DESC: the create above stored file as it is now
	local id
	if [ "$HB_RC" -ne 0 ]; then
		bad "$1: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
		return 0
	fi
	id=$(tail -n 1 "$T/out")
	hb snapshot cat "$id" file | cmp -s - "$R/file" || bad "$1: the snapshot holds stale content"
}
reuse_ok "rewritten between walk and read"
hb_try snapshot create "$R"
reuse_ok "the next snapshot (reuses the parent's record)"
randfile "$T/r3" 3000000 r3
cat "$T/r3" >"$R/file" && touch -r "$T/r2" "$R/file"
hb_try snapshot create "$R"
reuse_ok "rewritten again, same size and mtime"

# --- churn: files made and removed all the time, as in a build ---------------------------------
# Not deterministic, but with the old code this failed almost every time
# ("cannot read ...: No such file or directory").
log "snapshots of a tree in which files come and go"
C="$T/churn"
make_small_tree "$C" 2000 7
(
	n=0
	while :; do
		n=$((n + 1))
		mkdir -p "$C/tmp/$((n % 7))"
		for i in 1 2 3 4 5 6 7 8; do echo "$n $i" >"$C/tmp/$((n % 7))/o$i.tmp"; done
		rm -rf "$C/tmp/$(((n + 3) % 7))"
	done
) &
churn=$!
for round in 1 2 3; do
	hb_try snapshot create "$C"
	[ "$HB_RC" -eq 0 ] || bad "churn round $round: snapshot create exited $HB_RC: $(head -c 500 "$T/err")"
	grep -v -e '^hiberbox: warning: .* during the snapshot; left out$' \
		-e '^[0-9]* files, ' "$T/err" >"$T/other" || true
	[ ! -s "$T/other" ] || bad "churn round $round: unexpected stderr: $(head -c 500 "$T/other")"
done
kill "$churn" && wait "$churn" 2>/dev/null || true
hb_ok check --read-data >/dev/null

finish
