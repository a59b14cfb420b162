# Shared helpers for the integration tests (sourced by tests/integration/*.sh).
#
# Each test runs the real CLI ($HIBERBOX) on real trees in its own temporary
# directory, removed on exit.  Checks come in two strengths: `fail` stops the
# script (nothing after it can mean anything), `bad` records a failure and
# goes on so that one run lists every broken behaviour; the script exits 1 at
# the end if anything was recorded.
#
# Environment: HIBERBOX (the binary), SRCDIR (the source root); both are set
# by meson.  HB_TIMEOUT bounds every CLI call (seconds, default 300) so that a
# hang is a failure and not a stuck CI job.

: "${HIBERBOX:?HIBERBOX must point at the hiberbox binary}"
: "${SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
HB_TIMEOUT=${HB_TIMEOUT:-300}
ITDIR="$SRCDIR/tests/integration"
TREECMP="$ITDIR/treecmp.py"
TREEGEN="$ITDIR/treegen.py"
TEST_NAME=$(basename "$0" .sh)
FAILURES=0

log() { printf '[%s %s] %s\n' "$TEST_NAME" "$(date +%H:%M:%S)" "$*"; }

# Fatal failure: print and exit.  Inside $(...) an exit would only end the
# subshell, and a script without set -e would carry on and could pass, so the
# main script is told too (USR1, below) and ends with the same failure.
HB_MAIN_PID=$$
trap 'exit 1' USR1
fail() {
	printf 'FAIL [%s]: %s\n' "$TEST_NAME" "$*" >&2
	[ "$BASHPID" = "$HB_MAIN_PID" ] || kill -USR1 "$HB_MAIN_PID" 2>/dev/null
	exit 1
}

# Non-fatal failure: print, count, carry on.
bad() {
	printf 'FAIL [%s]: %s\n' "$TEST_NAME" "$*" >&2
	FAILURES=$((FAILURES + 1))
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Temporary area and repository for this test; removed on exit whatever happens.
setup_tmp() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/hbit-$TEST_NAME.XXXXXX")
	trap cleanup_tmp EXIT
	export HIBERBOX_HOME="$T/home"
	export HIBERBOX_REPO="$T/repo"
	mkdir -p "$HIBERBOX_HOME"
}

cleanup_tmp() {
	local rc=$?
	# Background jobs this script started (none should outlive it).
	local j
	for j in $(jobs -p); do
		kill -KILL "$j" 2>/dev/null || true
		wait "$j" 2>/dev/null || true
	done
	if [ -n "${T:-}" ] && [ -d "$T" ]; then
		chmod -R u+rwX "$T" 2>/dev/null || true
		rm -rf "$T"
	fi
	if [ "$rc" -eq 0 ] && [ "$FAILURES" -gt 0 ]; then
		printf '%s: %d check(s) failed\n' "$TEST_NAME" "$FAILURES" >&2
		rc=1
	fi
	[ "$rc" -eq 0 ] && log "PASS"
	exit "$rc"
}

# Finish: exit 1 if any `bad` was recorded (cleanup_tmp reports it).
finish() {
	[ "$FAILURES" -eq 0 ] || exit 1
	exit 0
}

# hb ARGS...: run the CLI with a time limit.  Output goes where the caller
# sends it; the exit code is the CLI's (124 means it hung).
hb() {
	timeout --kill-after=10 "$HB_TIMEOUT" "$HIBERBOX" "$@"
}

# hb_ok ARGS...: must succeed; stdout passes through, stderr shown on failure.
hb_ok() {
	local err rc=0
	err=$(mktemp "$T/err.XXXXXX")
	hb "$@" 2>"$err" || rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "'hiberbox $*' exited $rc: $(head -c 2000 "$err")"
	fi
	rm -f "$err"
}

# hb_try VAR_RC VAR_ERRFILE ARGS...: run, capture stdout in $T/out, stderr in
# $T/err; sets HB_RC.  Never fails by itself.
hb_try() {
	HB_RC=0
	hb "$@" >"$T/out" 2>"$T/err" || HB_RC=$?
}

# expect_error DESC ARGS...: the command must fail cleanly: non-zero exit that
# is not a crash or a hang, exactly one line on stderr, starting "hiberbox: ".
# Sets HB_ERR to that line.  Returns 1 (after `bad`) if not.
expect_error() {
	local desc=$1
	shift
	hb_try "$@"
	HB_ERR=$(head -n 1 "$T/err")
	local lines
	lines=$(wc -l <"$T/err")
	# a last line without a newline still counts as a line
	[ -s "$T/err" ] && [ "$(tail -c 1 "$T/err" | od -An -c | tr -d ' ')" != '\n' ] && lines=$((lines + 1))
	if [ "$HB_RC" -eq 0 ]; then
		bad "$desc: 'hiberbox $*' succeeded, expected an error (stdout: $(head -c 300 "$T/out"))"
		return 1
	fi
	if [ "$HB_RC" -eq 124 ] || [ "$HB_RC" -eq 137 ]; then
		bad "$desc: 'hiberbox $*' hung (killed after ${HB_TIMEOUT}s)"
		return 1
	fi
	if [ "$HB_RC" -gt 128 ]; then
		bad "$desc: 'hiberbox $*' crashed (exit $HB_RC, signal $((HB_RC - 128))): $(head -c 1500 "$T/err")"
		return 1
	fi
	if [ "$lines" -ne 1 ] || [[ "$HB_ERR" != "hiberbox: "* ]]; then
		bad "$desc: expected one stderr line 'hiberbox: ...', got $lines line(s): $(head -c 1500 "$T/err")"
		return 1
	fi
	return 0
}

# expect_usage_error DESC ARGS...: a usage error: non-zero (not a crash or a
# hang) and one line on stderr starting "hiberbox" ("hiberbox: ..." or
# "hiberbox COMMAND: ...").
expect_usage_error() {
	local desc=$1
	shift
	hb_try "$@"
	if [ "$HB_RC" -eq 0 ] || [ "$HB_RC" -ge 124 ]; then
		bad "$desc: 'hiberbox $*' exited $HB_RC, expected a usage error: $(head -c 500 "$T/err")"
		return 1
	fi
	if [ "$(wc -l <"$T/err")" -ne 1 ] || ! head -n 1 "$T/err" | grep -q "^hiberbox"; then
		bad "$desc: expected one stderr line 'hiberbox...: ...', got: $(head -c 500 "$T/err")"
		return 1
	fi
}

# expect_in TEXT PATTERN DESC: case-insensitive grep -E of PATTERN in TEXT.
expect_in() {
	if ! grep -qiE -- "$2" <<<"$1"; then
		bad "$3: message '$1' does not match /$2/"
		return 1
	fi
}

# snapshot_create DIR ARGS...: create a snapshot, print its id (validated).
snapshot_create() {
	local dir=$1
	shift
	local out id
	out=$(hb_ok snapshot create "$dir" "$@") || exit 1
	id=$(printf '%s\n' "$out" | tail -n 1)
	[[ "$id" =~ ^[0-9a-f]{32}$ ]] || fail "snapshot create $dir: last line '$id' is not a 32-hex id"
	printf '%s\n' "$id"
}

# frozen CMD ARGS...: CMD with the wall clock stopped at FROZEN_CLOCK_SEC
# (fixed-clock-preload.so, FIXED_CLOCK_PRELOAD): a manifest records when its
# snapshot was taken, so two creates of one tree at a stopped clock (in twin
# repositories with one secret, or with --no-parent) write the same manifest.
frozen() {
	: "${FIXED_CLOCK_PRELOAD:?FIXED_CLOCK_PRELOAD must point at fixed-clock-preload.so}"
	: "${FROZEN_CLOCK_SEC:?set FROZEN_CLOCK_SEC once, for every create that must match}"
	LD_PRELOAD="$FIXED_CLOCK_PRELOAD" FIXED_CLOCK_SEC=$FROZEN_CLOCK_SEC \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" "$@"
}

# json_get JSON_TEXT KEY: a top-level value of a JSON object (prints '' if null).
json_get() {
	python3 -c 'import json,sys
v = json.loads(sys.argv[1])
if isinstance(v, list) and len(v) == 1: v = v[0]
x = v.get(sys.argv[2])
print("" if x is None else (",".join(map(str, x)) if isinstance(x, list) else x))' "$1" "$2"
}

# show_json ID: `snapshot show ID --json`, must succeed and parse.
show_json() {
	local out
	out=$(hb_ok snapshot show "$1" --json) || exit 1
	python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out" ||
		fail "snapshot show $1 --json: not JSON: $out"
	printf '%s\n' "$out"
}

# Ids of all snapshots, from `snapshot list --json` (one per line).  The
# JSON goes through a file: with hundreds of snapshots it is too long for argv.
list_ids() {
	local f
	f=$(mktemp "$T/list.XXXXXX")
	hb_ok snapshot list --json >"$f" || exit 1
	python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
if isinstance(v, dict):
    v = v.get("snapshots", [])
for s in v:
    print(s["id"])' "$f" || fail "snapshot list --json: unexpected output: $(head -c 500 "$f")"
	rm -f "$f"
}

# randfile PATH BYTES SEED: incompressible, deterministic data (AES-CTR of zeros).
randfile() {
	randbytes "$2" "$3" >"$1"
	[ "$(stat -c %s "$1")" -eq "$2" ] || fail "randfile $1: short"
}

# randbytes BYTES SEED: the same data on stdout.
randbytes() {
	(openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -pbkdf2 -in /dev/zero 2>/dev/null || true) |
		head -c "$1"
}

# dump_tree DIR OUT.json: record a tree before anything reads it.
dump_tree() { python3 "$TREECMP" dump "$1" "$2"; }

# compare_trees EXPECTED RESTORED [treecmp options]: EXPECTED is a dump or a
# directory.  Prints the differences and returns 1 if any.
compare_trees() {
	local a=$1 b=$2
	shift 2
	python3 "$TREECMP" compare "$a" "$b" "$@"
}

# restore_and_compare ID EXPECTED DESC: restore into a fresh directory and
# compare; a `bad` on any difference.  The restored copy is removed after.
restore_and_compare() {
	local id=$1 expected=$2 desc=$3 dst
	dst=$(mktemp -d "$T/restore.XXXXXX")
	rmdir "$dst"
	hb_try snapshot restore "$id" "$dst"
	if [ "$HB_RC" -ne 0 ]; then
		bad "$desc: restore $id exited $HB_RC: $(head -c 1000 "$T/err")"
		rm -rf "$dst"
		return 1
	fi
	local diffs rc=0
	diffs=$(compare_trees "$expected" "$dst") || rc=$?
	rm -rf "$dst"
	if [ "$rc" -ne 0 ]; then
		bad "$desc: restored tree differs:"$'\n'"$diffs"
		return 1
	fi
}

# make_small_tree DIR COUNT [SEED]: COUNT small source-like files in nested dirs.
make_small_tree() {
	mkdir -p "$1"
	python3 "$TREEGEN" small "$1" "$2" "${3:-1}"
	python3 "$TREEGEN" settimes "$1" "${3:-1}"
}

# make_tree DIR [SMALL_FILES] [BIG_MB] [SEED]: a tree with every kind of entry
# restore must reproduce.  Root-only entries (devices, foreign owners, file
# capabilities) are made when running as root.
make_tree() {
	local d=$1 small=${2:-2000} bigmb=${3:-24} seed=${4:-1}
	local f i p
	mkdir -p "$d"

	# bulk: many small files, compressible logs, a few large random files
	python3 "$TREEGEN" small "$d/src" "$small" "$seed"
	python3 "$TREEGEN" logs "$d/logs" 4 "$seed"
	mkdir -p "$d/big"
	randfile "$d/big/blob-a.bin" $((bigmb * 1048576 / 2)) "a$seed"
	randfile "$d/big/blob-b.bin" $((bigmb * 1048576 / 3)) "b$seed"
	randfile "$d/big/odd-size.bin" $((bigmb * 1048576 / 6 + 12345)) "c$seed"
	cat "$d/big/blob-b.bin" "$d/big/blob-a.bin" >"$d/big/concat.bin" # same chunks, shifted

	# empty files and directories
	: >"$d/empty-file"
	mkdir -p "$d/empty-dir" "$d/nested/empty/deeper/still-empty"

	# names: spaces, newlines, tabs, UTF-8, bytes that are not UTF-8, 255 bytes
	mkdir -p "$d/names"
	echo a >"$d/names/with space"
	echo b >"$d/names/"$'new\nline'
	echo c >"$d/names/ünïcødé-文件-😀"
	echo d >"$d/names/"$'\xff\xfe-not-utf8'
	echo e >"$d/names/-leading-dash"
	echo f >"$d/names/$(printf 'x%.0s' $(seq 1 255))"
	echo g >"$d/names/"$'tab\there'
	echo h >"$d/names/back\\slash"
	echo i >"$d/names/ leading-and-trailing-space "
	mkdir -p "$d/names/dir with space/"$'sub\ndir'
	echo j >"$d/names/dir with space/"$'sub\ndir/file'
	p="$d/deep"
	for i in $(seq 1 40); do p="$p/level-$i"; done
	mkdir -p "$p"
	echo bottom >"$p/file"

	# symlinks: to dirs, dangling (absolute and relative), long and odd targets
	mkdir -p "$d/links"
	ln -s ../src "$d/links/to-dir"
	ln -s /nonexistent/target "$d/links/dangling-abs"
	ln -s no-such-file "$d/links/dangling-rel"
	ln -s "$(printf 'y%.0s' $(seq 1 1000))" "$d/links/long-target"
	ln -s "../names/with space" "$d/links/to-space"
	ln -s $'target with\nnewline' "$d/links/odd-target"
	ln -s ../../../../outside "$d/links/escaping-target"

	# hard links: several links in several directories, of several kinds
	mkdir -p "$d/hard/a" "$d/hard/b"
	printf 'linked content\n' >"$d/hard/a/one"
	ln "$d/hard/a/one" "$d/hard/a/two"
	ln "$d/hard/a/one" "$d/hard/b/three"
	ln "$d/hard/a/one" "$d/hard/four"
	randfile "$d/hard/big-linked" 300000 "h$seed"
	ln "$d/hard/big-linked" "$d/hard/b/big-linked-2"
	: >"$d/hard/empty-linked"
	ln "$d/hard/empty-linked" "$d/hard/a/empty-linked-2"
	ln -s one "$d/hard/a/sym"
	ln -P "$d/hard/a/sym" "$d/hard/b/hardlink-to-symlink"

	# fifos and devices
	mkdir -p "$d/special"
	mkfifo "$d/special/fifo"
	mkfifo -m 0600 "$d/special/fifo-0600"
	ln -P "$d/special/fifo" "$d/special/fifo-link"
	if is_root; then
		mknod "$d/special/null" c 1 3
		mknod "$d/special/loop" b 7 0
		mknod "$d/special/bigdev" c 300 70000
	fi

	# owners (before modes: chown clears setuid/setgid)
	mkdir -p "$d/modes" "$d/owners"
	for f in suid sgid suid-sgid sticky-file none ro rw-only exec-all; do
		echo "$f" >"$d/modes/$f"
	done
	mkdir -p "$d/modes/sticky-dir" "$d/modes/setgid-dir" "$d/modes/readonly-dir"
	echo inside >"$d/modes/readonly-dir/file"
	mkdir -p "$d/modes/readonly-dir/sub"
	echo deeper >"$d/modes/readonly-dir/sub/file"
	if is_root; then
		echo o >"$d/owners/u1234-g5678"
		chown 1234:5678 "$d/owners/u1234-g5678"
		echo o >"$d/owners/nobody"
		chown 65534:65534 "$d/owners/nobody"
		echo o >"$d/owners/big-ids"
		chown 100000:200000 "$d/owners/big-ids"
		mkdir "$d/owners/dir-2222"
		echo o >"$d/owners/dir-2222/file"
		chown 2222:3333 "$d/owners/dir-2222"
		ln -s u1234-g5678 "$d/owners/symlink-4321"
		chown -h 4321:4321 "$d/owners/symlink-4321"
		mkfifo "$d/owners/fifo-77"
		chown 77:78 "$d/owners/fifo-77"
		chown 1000:1000 "$d/modes/suid" "$d/modes/sgid" "$d/modes/suid-sgid"
		mkdir "$d/modes/zero-dir"
		echo hidden >"$d/modes/zero-dir/file"
		chmod 0000 "$d/modes/zero-dir"
	fi
	chmod 4755 "$d/modes/suid"
	chmod 2755 "$d/modes/sgid"
	chmod 6711 "$d/modes/suid-sgid"
	chmod 1644 "$d/modes/sticky-file"
	chmod 0000 "$d/modes/none"
	chmod 0444 "$d/modes/ro"
	chmod 0600 "$d/modes/rw-only"
	chmod 0777 "$d/modes/exec-all"
	chmod 1777 "$d/modes/sticky-dir"
	chmod 2775 "$d/modes/setgid-dir"
	chmod 0555 "$d/modes/readonly-dir/sub" "$d/modes/readonly-dir"

	# xattrs: text, empty, binary with NULs, large, many; on files and dirs
	mkdir -p "$d/xattrs"
	echo x >"$d/xattrs/file"
	setfattr -n user.comment -v "hello world" "$d/xattrs/file"
	setfattr -n user.empty "$d/xattrs/file"
	setfattr -n user.binary -v 0x00ff00fe0a0d00 "$d/xattrs/file"
	setfattr -n user.large -v "$(head -c 3000 /dev/zero | tr '\0' q)" "$d/xattrs/file"
	echo many >"$d/xattrs/many"
	for i in $(seq 1 30); do setfattr -n "user.attr$i" -v "value $i" "$d/xattrs/many"; done
	mkdir "$d/xattrs/dir"
	setfattr -n user.on-a-dir -v yes "$d/xattrs/dir"
	randfile "$d/xattrs/chunked-with-xattr" 200000 "x$seed"
	setfattr -n user.checksum -v abc "$d/xattrs/chunked-with-xattr"

	# POSIX ACLs: access ACL on a file, access + default ACL on a directory
	echo acl >"$d/xattrs/acl-file"
	setfacl -m u:1234:rwx,g:5678:r-x,m::rwx "$d/xattrs/acl-file"
	mkdir "$d/xattrs/acl-dir"
	setfacl -m u:65534:r-x "$d/xattrs/acl-dir"
	setfacl -d -m u:1234:rx,g::r-x "$d/xattrs/acl-dir"
	echo inherits >"$d/xattrs/acl-dir/inherited" # gets an ACL from the default

	# file capabilities (root): set after chown, which clears them
	if is_root; then
		echo cap >"$d/xattrs/cap-file"
		chmod 0755 "$d/xattrs/cap-file"
		if command -v setcap >/dev/null && setcap cap_net_raw,cap_net_admin+ep "$d/xattrs/cap-file" 2>/dev/null; then
			:
		else
			# VFS_CAP_REVISION_2, permitted = CAP_NET_RAW|CAP_NET_ADMIN, effective
			setfattr -n security.capability -v 0x0100000200300000000000000000000000000000 "$d/xattrs/cap-file"
		fi
		getfattr -n security.capability "$d/xattrs/cap-file" >/dev/null 2>&1 ||
			fail "make_tree: could not set security.capability"
	fi

	# sparse files: data islands in a large hole, a file that is all hole,
	# a file with a hole at its end
	mkdir -p "$d/sparse"
	truncate -s 64M "$d/sparse/islands"
	for p in 0 2560 16383; do # 4 KiB blocks: start, 10 MiB, the last block
		randbytes 4096 "sp$p" | dd of="$d/sparse/islands" bs=4096 seek="$p" conv=notrunc status=none
	done
	truncate -s 256M "$d/sparse/all-hole"
	randfile "$d/sparse/tail-hole" 100000 "t$seed"
	truncate -s 32M "$d/sparse/tail-hole"

	# times: every entry distinct, with nanoseconds; then a few extreme ones
	python3 "$TREEGEN" settimes "$d" "$seed"
	touch -h -m -d '1960-06-15 12:00:00.987654321 UTC' "$d/names/with space"
	touch -h -a -d '1969-12-31 23:59:59.000000001 UTC' "$d/names/with space"
	touch -h -d '2200-01-01 00:00:00.999999999 UTC' "$d/names/-leading-dash"
	touch -h -m -d '2021-03-04 05:06:07.123456789 UTC' "$d/links/dangling-abs"
	touch -h -m -d '2001-09-09 01:46:40.000000000 UTC' "$d/empty-file"
}
