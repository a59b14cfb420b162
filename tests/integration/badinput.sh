#!/bin/bash
# Bad input: wrong arguments, missing things, unreadable sources, ambiguous
# names, bad tags, and crafted manifests whose entry names try to leave the
# restore directory.  Each must be one clear error line, non-zero, and leave
# nothing behind (no snapshot recorded, nothing written outside DIR).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
REPOTOOL="$ITDIR/repotool.py"

# --- no repository ----------------------------------------------------------------
expect_error "missing repository" --repo "$T/nope" snapshot list &&
	expect_in "$HB_ERR" "hiberbox init" "missing repository: says how to create one" || true
mkdir -p "$T/src"
echo x >"$T/src/file"
expect_error "create without a repository" --repo "$T/nope" snapshot create "$T/src" &&
	expect_in "$HB_ERR" "hiberbox init" "create without a repository" || true
[ ! -e "$T/nope" ] || bad "a command on a missing repository created $T/nope"
expect_error "restore without a repository" --repo "$T/nope" snapshot restore 0123abcd "$T/restore-target" || true
[ ! -e "$T/restore-target" ] || bad "restore without a repository created its target"

hb_ok init >/dev/null
count() { list_ids | wc -l; }

# --- bad DIR -------------------------------------------------------------------------
expect_error "missing DIR" snapshot create "$T/does-not-exist" &&
	expect_in "$HB_ERR" "does-not-exist" "missing DIR: the error names it" || true
echo "just a file" >"$T/a-file"
expect_error "a file instead of a DIR" snapshot create "$T/a-file" &&
	expect_in "$HB_ERR" "a-file" "a file instead of a DIR: the error names it" || true
ln -s "$T/src" "$T/link-to-dir"
[ "$(count)" -eq 0 ] || bad "failed creates recorded snapshots: $(list_ids | tr '\n' ' ')"
expect_error "unknown command" snapshot frobnicate || true

# --- unreadable source files (as a user that cannot read them) ---------------------------
if is_root && command -v setpriv >/dev/null; then
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
elif ! is_root; then
	as_nobody() { "$@"; }
else
	as_nobody() { return 99; }
fi
U="$T/nobody"
mkdir -p "$U/home"
chmod 755 "$T"
make_small_tree "$U/tree" 300 4
echo "top secret" >"$U/tree/secret-file"
chmod 000 "$U/tree/secret-file"
mkdir -p "$U/tree2/locked-dir"
echo "inside" >"$U/tree2/locked-dir/file"
echo "ok" >"$U/tree2/readable"
chmod 000 "$U/tree2/locked-dir"
is_root && chown -R 65534:65534 "$U"
BIN="$HIBERBOX"
# the binary must be reachable by that user
if ! as_nobody test -x "$BIN" 2>/dev/null; then
	cp "$HIBERBOX" "$U/hiberbox" && chmod 755 "$U/hiberbox" && BIN="$U/hiberbox"
fi
nb() {
	as_nobody env HIBERBOX_HOME="$U/home" HIBERBOX_REPO="$U/repo" \
		timeout --kill-after=10 "$HB_TIMEOUT" "$BIN" "$@"
}
if nb init >/dev/null 2>"$T/err"; then
	log "unreadable sources, as uid 65534"
	rc=0
	nb snapshot create "$U/tree" --tag should-not-exist >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		bad "unreadable file: snapshot create succeeded: $(tail -n 1 "$T/out")"
	else
		[ "$rc" -lt 124 ] || bad "unreadable file: snapshot create crashed or hung ($rc)"
		[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^hiberbox: ' "$T/err" ||
			bad "unreadable file: expected one error line, got: $(head -c 500 "$T/err")"
		grep -q "secret-file" "$T/err" || bad "unreadable file: the error does not name secret-file: $(cat "$T/err")"
	fi
	rc=0
	nb snapshot create "$U/tree2" >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		bad "unreadable directory: snapshot create succeeded"
	else
		grep -q "locked-dir" "$T/err" || bad "unreadable directory: the error does not name locked-dir: $(cat "$T/err")"
	fi
	nb snapshot list --json >"$T/out" 2>"$T/err" || bad "snapshot list as the user failed: $(cat "$T/err")"
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); sys.exit(0 if not v else 1)' "$T/out" ||
		bad "failed creates of unreadable trees recorded snapshots: $(cat "$T/out")"
	[ -z "$(find "$U/repo/refs" -type f 2>/dev/null)" ] || bad "failed creates left refs: $(find "$U/repo/refs" -type f)"
	nb snapshot show should-not-exist >/dev/null 2>&1 && bad "the tag of a failed create exists"
	# the leftovers are garbage only: gc, then the repository is clean
	nb gc >/dev/null 2>"$T/err" || bad "gc after failed creates: $(cat "$T/err")"
	nb check --read-data >/dev/null 2>"$T/err" || bad "check after failed creates + gc: $(cat "$T/err")"
	# the readable part of the tree is fine once the file is readable
	chmod 644 "$U/tree/secret-file"
	nb snapshot create "$U/tree" >"$T/out" 2>"$T/err" || bad "create after fixing permissions failed: $(cat "$T/err")"
	# device nodes (made as root) are skipped by a restore without root,
	# with a note; a hard link to one made the restore fail ("cannot link")
	if is_root; then
		mkdir -p "$U/devs"
		mknod "$U/devs/null" c 1 3 && ln "$U/devs/null" "$U/devs/null-link"
		echo data >"$U/devs/file"
		# set-id files: a restore that cannot give them their owner must
		# not leave them set-uid/set-gid to the restoring user
		for f in suid-root sgid-root suid-own; do echo '#!/bin/sh' >"$U/devs/$f"; done
		chown 65534:65534 "$U/devs/suid-own"
		chmod 4755 "$U/devs/suid-root" "$U/devs/suid-own"
		chmod 2755 "$U/devs/sgid-root"
		devs=$(HIBERBOX_HOME="$U/home" HIBERBOX_REPO="$U/repo" snapshot_create "$U/devs")
		chown -R 65534:65534 "$U"
		rc=0
		nb snapshot restore "$devs" "$U/devs-out" >"$T/out" 2>"$T/err" || rc=$?
		if [ "$rc" -ne 0 ]; then
			bad "restore of hard-linked device nodes without root exited $rc: $(cat "$T/err")"
		else
			grep -q "2 device node(s) not restored" "$T/err" ||
				bad "restore without root: no note of the 2 skipped device nodes: $(cat "$T/err")"
			[ "$(cat "$U/devs-out/file")" = data ] || bad "restore without root: file missing"
			modes=$(cd "$U/devs-out" && stat -c '%n %a %u' suid-root sgid-root suid-own | tr '\n' ' ')
			[ "$modes" = "suid-root 755 65534 sgid-root 755 65534 suid-own 4755 65534 " ] ||
				bad "restore without root: set-id bits kept on files it could not give their owner (or dropped where it could): $modes"
			[ "$(grep -c "set-uid/set-gid" "$T/err")" -eq 1 ] &&
				grep -q "^hiberbox: 2 file(s) restored without their set-uid/set-gid bits" "$T/err" ||
				bad "restore without root: expected one note of 2 files without set-id bits: $(cat "$T/err")"
		fi
	fi
else
	log "SKIP unreadable-source cases: cannot run as an unprivileged user ($(head -c 200 "$T/err"))"
fi

# --- a tree that changes between the walk and the read -----------------------------------------
# snapshot create reads files after the walk.  A FIFO put in a file's place
# meanwhile blocked the open for ever; a directory on a file's path replaced
# by a symbolic link took the read out of the tree (the snapshot held a file
# from elsewhere).  With one thread, small/file is read after big, so
# changing it once big is open changes it after the walk.
RC="$T/racy"
mkdir -p "$RC/small" "$T/elsewhere"
randfile "$RC/a-big" $((96 * 1048576)) racy
echo public >"$RC/small/file"
echo "not in the tree" >"$T/elsewhere/file"
# change_after_walk WHAT: start a create, do WHAT to small/ once the big file
# is being read; HB_RC, $T/out, $T/err as hb_try sets them (HB_RC 99: the
# create ended before the change, nothing to judge)
change_after_walk() {
	local pid child i
	# a hang is what the fix prevents: killed after 2 minutes (exit 137)
	timeout --signal=KILL 120 "$HIBERBOX" snapshot create "$RC" --no-parent \
		--threads 1 >"$T/out" 2>"$T/err" &
	pid=$!
	for i in $(seq 1 3000); do
		child=$(pgrep -P "$pid" | head -n 1) || true
		[ -n "$child" ] && ls -l "/proc/$child/fd" 2>/dev/null | grep -q a-big && break
		sleep 0.005
	done
	case $1 in
	fifo) rm "$RC/small/file" && mkfifo "$RC/small/file" ;;
	symlink) mv "$RC/small" "$RC/small.real" && ln -s ../elsewhere "$RC/small" ;;
	esac
	kill -0 "$child" 2>/dev/null || { wait "$pid" || true; HB_RC=99; return 0; }
	HB_RC=0
	wait "$pid" || HB_RC=$?
}
# What the walk listed as small/file is gone: it is left out with a
# warning (live.sh has the rest of that behaviour), and nothing from
# elsewhere takes its place.
judge_racy() { # DESC
	if [ "$HB_RC" -eq 99 ]; then
		log "SKIP $1: the create was done before the change"
	elif [ "$HB_RC" -eq 137 ]; then
		bad "$1: snapshot create hung"
	elif [ "$HB_RC" -ne 0 ]; then
		bad "$1: snapshot create failed: $(head -c 500 "$T/err")"
	else
		# the symlink swap is a rename then a new link: a walk that looks
		# in between finds small gone, which is as right
		grep -Eq "^hiberbox: warning: 'small(/file)?' was (replaced .*|removed during the snapshot); left out$" "$T/err" ||
			bad "$1: expected a warning naming small/file or small, got: $(head -c 500 "$T/err")"
		if hb snapshot cat "$(tail -n 1 "$T/out")" small/file >"$T/cat" 2>/dev/null; then
			bad "$1: the snapshot has small/file, holding: $(head -c 100 "$T/cat")"
		fi
	fi
}
change_after_walk fifo
judge_racy "a FIFO in a file's place after the walk"
rm -f "$RC/small/file" && echo public >"$RC/small/file"
change_after_walk symlink
judge_racy "a directory replaced by a symbolic link after the walk"
rm "$RC/small" && mv "$RC/small.real" "$RC/small"
rm -rf "$RC"

# held_swap HOOK DIR LINK_TO ARGS...: run the CLI with ARGS, held by the test
# hook HOOK (snapshot/testhook.h) at its moment, swap directory DIR for a
# symbolic link to LINK_TO, and let it go on; HB_RC is its exit status,
# $T/out and $T/err its output.  A CLI that never reaches the hook fails.
held_swap() {
	local hook=$1 dir=$2 to=$3 pid
	shift 3
	rm -f "$T/hold" && mkfifo "$T/hold"
	env "$hook=$T/hold" timeout --signal=KILL 120 "$HIBERBOX" "$@" >"$T/out" 2>"$T/err" &
	pid=$!
	# opening the FIFO waits for the CLI to reach the hook; closing it (the
	# end of this bash) lets it go on
	if ! timeout 60 bash -c 'exec 3>"$1" && mv "$2" "$2.real" && ln -s "$3" "$2"' \
		_ "$T/hold" "$dir" "$to"; then
		kill -KILL "$pid" 2>/dev/null
		bad "$hook: '$*' never reached the hook"
	fi
	HB_RC=0
	wait "$pid" || HB_RC=$?
	rm -f "$T/hold"
}

# --- xattrs read after the walk, through a directory swapped meanwhile -------------------------
# The walk reads xattrs once it knows every entry.  It read them by path, so
# a directory swapped for a symbolic link to elsewhere in between gave the
# snapshot the xattrs of what is elsewhere (as root: any file on the host).
# HIBERBOX_TEST_WALK_XATTRS_WAIT holds the create right before xattrs are
# read until the test has swapped.
if setfattr -n user.probe -v 1 "$T" 2>/dev/null; then
	XR="$T/xrace"
	mkdir -p "$XR/sub/d" "$T/outside/d"
	setfattr -n user.secret -v leaked "$T/outside/d"
	held_swap HIBERBOX_TEST_WALK_XATTRS_WAIT "$XR/sub" "$T/outside" snapshot create "$XR" --no-parent
	rc=$HB_RC
	# sub/d, as listed, is gone from the tree: left out with a warning
	if [ "$rc" -ne 0 ]; then
		bad "xattr race: create failed ($rc): $(head -c 500 "$T/err")"
	else
		grep -q "^hiberbox: warning: 'sub/d' was replaced by a symbolic link.*; left out$" "$T/err" ||
			bad "xattr race: expected a warning naming sub/d, got: $(head -c 500 "$T/err")"
		hb snapshot restore "$(tail -n 1 "$T/out")" "$T/xr-out" >/dev/null 2>&1
		[ ! -e "$T/xr-out/sub/d" ] ||
			bad "xattr race: sub/d is in the snapshot; its user.secret: $(getfattr --absolute-names --only-values -n user.secret "$T/xr-out/sub/d" 2>&1)"
		[ -d "$T/xr-out/sub" ] || bad "xattr race: the restore lacks sub/"
	fi
	rm -rf "$XR" "$T/outside" "$T/xr-out"
else
	log "SKIP xattr race: no user xattrs on $T"
fi

# --- restore: a directory swapped for a symbolic link before its entries are made ---------------
# Symlinks and special files were made, and given owner, mode and times, by
# their path from the target's root, so a directory on it swapped for a
# symbolic link meanwhile (by whatever else writes in the target) had them
# made and changed elsewhere.  HIBERBOX_TEST_RESTORE_NODES_WAIT holds the
# restore before its first symlink or special file until the test swapped.
NR="$T/nrace"
mkdir -p "$NR/src/d" "$T/outside2"
mkfifo "$NR/src/d/fifo"
ln -s target "$NR/src/d/link"
nid=$(snapshot_create "$NR/src")
held_swap HIBERBOX_TEST_RESTORE_NODES_WAIT "$NR/out/d" "$T/outside2" snapshot restore "$nid" "$NR/out"
rc=$HB_RC
[ -z "$(ls -A "$T/outside2")" ] ||
	bad "restore race: entries made outside the target: $(ls -l "$T/outside2" | tail -n +2)"
[ "$rc" -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] &&
	grep -q "^hiberbox: .*cannot create 'd/.*was replaced during the restore" "$T/err" ||
	bad "restore race: expected a failure with one line naming d/..., got ($rc): $(head -c 500 "$T/err")"
rm -rf "$NR" "$T/outside2"

# --- restore --force: a directory swapped for a symbolic link before an entry is replaced ------
# restore --force made room for each entry by its path from the target's
# root (fstatat, then unlinkat or a recursive removal), so a directory on it
# swapped for a symbolic link meanwhile had a file elsewhere removed.
# HIBERBOX_TEST_RESTORE_CLEAR_WAIT holds the restore before it makes room
# for its first file until the test swapped.
FR="$T/frace"
mkdir -p "$FR/src/d" "$FR/out/d" "$T/outside3"
echo new >"$FR/src/d/victim"
echo old >"$FR/out/d/victim"
echo "must stay" >"$T/outside3/victim"
fid=$(snapshot_create "$FR/src")
held_swap HIBERBOX_TEST_RESTORE_CLEAR_WAIT "$FR/out/d" "$T/outside3" \
	snapshot restore "$fid" "$FR/out" --force
rc=$HB_RC
[ "$(cat "$T/outside3/victim" 2>&1)" = "must stay" ] ||
	bad "restore --force race: a file outside the target was removed or replaced: $(ls -l "$T/outside3" | tail -n +2)"
[ "$rc" -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] &&
	grep -q "^hiberbox: .*cannot replace 'd/victim': a directory on its path was replaced" "$T/err" ||
	bad "restore --force race: expected a failure with one line naming d/victim, got ($rc): $(head -c 500 "$T/err")"
rm -rf "$FR" "$T/outside3"

# --- names that do not resolve ----------------------------------------------------------------
make_small_tree "$T/tiny" 3 9
first=$(snapshot_create "$T/tiny")
expect_error "restore of a missing id" snapshot restore 0123456789abcdef0123456789abcdef "$T/r-missing" || true
[ ! -e "$T/r-missing" ] || bad "restore of a missing id created its target"
expect_error "restore of a missing prefix" snapshot restore ffff0000 "$T/r-missing" || true
# A target whose ".." steps out of a name that does not exist: only what the
# path resolves to is made (missing parents of the normalised path too), as
# restore's missing parents are: "out/../out2" made out as well.
mkdir "$T/dd"
for target in out/../out2 a/b/../../c/./d/../e; do
	rm -rf "${T:?}/dd/"*
	hb_try snapshot restore "$first" "$T/dd/$target"
	made=$(cd "$T/dd" && find . -mindepth 1 -type d | sort | tr '\n' ' ')
	want="./out2 "
	[ "$target" = out/../out2 ] || want="./c ./c/e "
	if [ "$HB_RC" -ne 0 ]; then
		bad "restore into $target exited $HB_RC: $(cat "$T/err")"
	elif [[ "$made" != "$want"* ]] || [ "$(find "$T/dd" -type f | wc -l)" -ne 3 ]; then
		bad "restore into $target made [$made] and $(find "$T/dd" -type f | wc -l) files, expected [$want...] and 3"
	fi
done
rm -rf "$T/dd"
expect_error "show of a missing tag" snapshot show no-such-tag || true
expect_error "rm of a missing id" snapshot rm 0123456789abcdef0123456789abcdef || true
expect_error "diff with a missing id" snapshot diff "$first" 0123456789abcdef0123456789abcdef || true
expect_error "--parent that does not exist" snapshot create "$T/tiny" --parent 0123456789abcdef0123456789abcdef || true
expect_error "a 40-digit id" snapshot show "${first}abcdef01" || true

# Ambiguous prefix: make snapshots until two ids share their first 4 digits
# (birthday bound: ~320 expected for 65536 prefixes; 1500 fail with p < 1e-7).
log "making snapshots until two ids share a 4-digit prefix"
declare -A by4=()
by4[${first:0:4}]=$first
amb=""
for i in $(seq 1 1500); do
	id=$(hb --quiet snapshot create "$T/tiny" | tail -n 1) || fail "snapshot create #$i failed"
	p=${id:0:4}
	if [ -n "${by4[$p]:-}" ]; then
		amb=$p
		other=${by4[$p]}
		break
	fi
	by4[$p]=$id
done
if [ -z "$amb" ]; then
	bad "no two of 1500 snapshots share a 4-digit prefix: ids are not random?"
else
	log "ambiguous prefix $amb after $i snapshots ($id, $other)"
	expect_error "ambiguous prefix: show" snapshot show "$amb" &&
		expect_in "$HB_ERR" "ambiguous" "ambiguous prefix: the error says so" || true
	expect_error "ambiguous prefix: restore" snapshot restore "$amb" "$T/r-amb" || true
	[ ! -e "$T/r-amb" ] || bad "ambiguous restore created its target"
	expect_error "ambiguous prefix: rm" snapshot rm "$amb" || true
	ids=$(list_ids)
	grep -q "$id" <<<"$ids" && grep -q "$other" <<<"$ids" || bad "a refused ambiguous rm removed something"
	# one more digit (where they differ) is unique again
	n=4
	while [ "${id:0:$n}" = "${other:0:$n}" ]; do n=$((n + 1)); done
	hb_try snapshot show "${id:0:$n}"
	[ "$HB_RC" -eq 0 ] && grep -q "$id" "$T/out" || bad "unique prefix ${id:0:$n} does not resolve to $id"
fi

# --- tags ---------------------------------------------------------------------------------------
for tag in "a/b" "/abs" ".." "." ".hidden" "" "sp ace" $'new\nline' "$(printf 't%.0s' $(seq 1 129))"; do
	expect_error "tag '$tag'" tag "$tag" "$first" || true
done
[ -z "$(find "$HIBERBOX_REPO/refs" -path '*tags*' -type f 2>/dev/null | grep -v '/refs/tags/[A-Za-z0-9._-]*$' || true)" ] ||
	bad "refused tags left files: $(find "$HIBERBOX_REPO/refs" -type f)"
[ ! -e "$HIBERBOX_REPO/refs/b" ] && [ ! -e "$HIBERBOX_REPO/abs" ] || bad "a tag with '/' wrote outside refs/tags"
before=$(count)
expect_error "snapshot create --tag a/b" snapshot create "$T/tiny" --tag a/b || true
[ "$(count)" -eq "$before" ] || bad "create with a refused tag still recorded a snapshot"
hb_ok tag "ok-tag_1.0" "$first"
expect_error "tag delete of a missing tag" tag --delete no-such-tag || true

# --- crafted manifests: names that leave the directory -------------------------------------------
# Snapshot a tree whose entry names are unique 2-byte strings, then rewrite
# one name inside the manifest body (same length, checksum and id redone
# with the repository's key, so only the name check can refuse it).
mkdir -p "$T/craft/zz" "$T/craft/yy"
echo "escaped" >"$T/craft/zz/qq"
echo "payload" >"$T/craft/yy/ww"
echo "top" >"$T/craft/vv"
base=$(snapshot_create "$T/craft")
craft() { # craft OLD NEW -> id of a new manifest with the name replaced
	python3 "$REPOTOOL" manifest-rename "$HIBERBOX_REPO/snapshots/$base" "$T/crafted" "$1" "$2" || return 1
	local id
	id=$(python3 "$REPOTOOL" oid "$HIBERBOX_REPO/config" "$T/crafted")
	mv "$T/crafted" "$HIBERBOX_REPO/snapshots/$id"
	printf '%s\n' "$id"
}
# sanity: a harmless rename is accepted, so refusals below are about the names
ok_id=$(craft vv uu) || fail "could not craft a manifest"
hb_try snapshot restore "$ok_id" "$T/crafted-ok"
if [ "$HB_RC" -ne 0 ]; then
	bad "a crafted manifest with a harmless rename (vv -> uu) is refused ($(cat "$T/err")): the cases below prove nothing"
elif [ ! -f "$T/crafted-ok/uu" ]; then
	bad "crafted manifest restore lacks the renamed file uu"
fi
for case in "zz|..|dot-dot directory" "vv|..|dot-dot file" "ww|..|dot-dot file in a subdirectory" \
	"zz|a/|slash in a name" "vv|/v|absolute name" "vv|v\\0|NUL in a name" "zz|.\\0|dot + NUL"; do
	IFS='|' read -r old new desc <<<"$case"
	id=$(craft "$old" "$new") || { bad "could not craft '$desc'"; continue; }
	mkdir -p "$T/jail"
	expect_error "crafted manifest ($desc): restore" snapshot restore "$id" "$T/jail/dst" || true
	left=$(cd "$T/jail" && find . -mindepth 1 -not -path './dst' -not -path './dst/*')
	[ -z "$left" ] || bad "crafted manifest ($desc): restore wrote outside DIR: $left"
	[ ! -e "$T/qq" ] && [ ! -e "$T/ww" ] && [ ! -e "$T/vv" ] || bad "crafted manifest ($desc): files escaped to $T"
	hb_try check
	[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "crafted manifest ($desc): check exited $HB_RC"
	hb_try snapshot list
	[ "$HB_RC" -lt 124 ] || bad "crafted manifest ($desc): snapshot list crashed ($HB_RC)"
	rm -rf "$T/jail" "$HIBERBOX_REPO/snapshots/$id"
done
