#!/bin/bash
# hiberbox cp and the files API see a running sandbox as its processes do:
#   - a file copied into /tmp or /dev/shm (tmpfs mounts of the sandbox's own
#     mount namespace) is there for its processes, with its content, owned
#     by the sandbox's root, also in a directory of another user;
#   - a file or a tree a process makes in /tmp is copied out, a tree goes in;
#   - '..' and symlinks (absolute or relative) from /tmp do not reach the
#     host, in or out;
#   - nothing is written under /proc, /sys or /dev (but /dev/shm), nor read
#     from /proc, each with one line; /proc lists as empty;
#   - an upload that fails (out of space in /dev/shm; a client gone after
#     half its body) leaves no file behind;
#   - an upload is atomic: one or two pieces give the exact bytes, mode and
#     owner; one failing in its second piece leaves the old file whole and
#     no temporary, a cp -r failing so no half file; a process reading the
#     destination during the upload reads the old file; a client killed
#     between pieces leaves no destination, and its temporary
#     (.hiberbox-upload.ID) goes at the next upload once idle, or at a sleep.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires
command -v curl >/dev/null || { echo "SKIP: no curl to ask the API"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3 for a client cut short"; exit 77; }

daemon_test_scratch cp
step() { echo "== $*"; }
S=$HIBERBOX_HOME/hiberboxd.sock
api() { curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' "$@"; }
inside() { "$HB" exec dev -- "$@"; }
daemon_test_image base sh cat ls mkdir chown chmod ln dd test echo rm sleep grep
"$HB" create dev --image base >/dev/null || fail "create dev"

step "into /tmp and /dev/shm: seen inside, owned by the sandbox's root"
printf 'to tmp\n' >"$T/x"
"$HB" cp "$T/x" dev:/tmp/x || fail "cp into /tmp"
[ "$(inside cat /tmp/x)" = "to tmp" ] || fail "cp into /tmp: the sandbox reads '$(inside cat /tmp/x 2>&1)'"
inside ls -ln /tmp/x | grep -q '^-rw-r--r-- *1 0 *0 ' || fail "cp into /tmp: $(inside ls -ln /tmp/x)"
printf 'to shm\n' | "$HB" cp - dev:/dev/shm/s || fail "cp into /dev/shm"
[ "$(inside cat /dev/shm/s)" = "to shm" ] || fail "cp into /dev/shm: the sandbox reads '$(inside cat /dev/shm/s 2>&1)'"
inside ls -ln /dev/shm/s | grep -q '^-rw-r--r-- *1 0 *0 ' || fail "cp into /dev/shm: $(inside ls -ln /dev/shm/s)"
# a directory of another user, closed to others: the sandbox's root writes
# there, so does cp
inside sh -c 'mkdir /tmp/u && chown 1000:1000 /tmp/u && chmod 700 /tmp/u' || fail "mkdir /tmp/u"
"$HB" cp "$T/x" dev:/tmp/u/x || fail "cp into a directory of uid 1000"
inside ls -ln /tmp/u/x | grep -q '^-rw-r--r-- *1 0 *0 ' || fail "cp into /tmp/u: $(inside ls -ln /tmp/u/x 2>&1)"
# an existing file keeps its owner
inside sh -c 'echo old >/tmp/u/mine && chown 1000:1000 /tmp/u/mine' || fail "/tmp/u/mine"
"$HB" cp "$T/x" dev:/tmp/u/mine || fail "cp over a file of uid 1000"
inside ls -ln /tmp/u/mine | grep -q '^-rw-r--r-- *1 1000 *1000 *7 ' || fail "cp over /tmp/u/mine: $(inside ls -ln /tmp/u/mine)"

step "out of /tmp: what a process wrote there"
inside sh -c 'echo from inside >/tmp/y' || fail "write /tmp/y"
"$HB" cp dev:/tmp/y "$T/y" || fail "cp out of /tmp"
[ "$(cat "$T/y")" = "from inside" ] || fail "cp out of /tmp: '$(cat "$T/y")'"
[ "$("$HB" cp dev:/dev/shm/s -)" = "to shm" ] || fail "cp out of /dev/shm"

step "trees in and out of /tmp"
mkdir -p "$T/tree/sub/deeper"
echo a >"$T/tree/a"
echo b >"$T/tree/sub/deeper/b"
ln -s ../a "$T/tree/sub/link"
"$HB" cp "$T/tree" dev:/tmp/ || fail "cp of a tree into /tmp"
[ "$(inside cat /tmp/tree/sub/deeper/b)" = b ] && [ "$(inside cat /tmp/tree/sub/link)" = a ] ||
	fail "the tree in /tmp: $(inside ls -lnR /tmp/tree 2>&1)"
inside ls -lnd /tmp/tree/sub/deeper | grep -q '^d[rwx-]* *2 0 *0 ' || fail "tree in: $(inside ls -lnd /tmp/tree/sub/deeper)"
inside sh -c 'mkdir -p /tmp/made/d && echo m >/tmp/made/d/f && ln -s d/f /tmp/made/l' || fail "a tree inside"
"$HB" cp dev:/tmp/made "$T/made" || fail "cp of a tree out of /tmp"
[ "$(cat "$T/made/d/f")" = m ] && [ "$(readlink "$T/made/l")" = d/f ] || fail "the tree out: $(find "$T/made" -ls)"

step "'..' and symlinks from /tmp stay inside"
mkdir "$T/host"
echo secret >"$T/host/secret"
inside ln -s "$T/host" /tmp/abs || fail "ln -s abs"
inside ln -s ../../../../../../.. /tmp/rel || fail "ln -s rel"
for p in "/tmp/abs/secret" "/tmp/rel$T/host/secret" "/tmp/../../../..$T/host/secret"; do
	"$HB" cp "dev:$p" "$T/got" 2>/dev/null && cmp -s "$T/got" "$T/host/secret" && fail "cp out of dev:$p read the host's file"
	"$HB" cp "$T/x" "dev:${p%secret}planted" 2>/dev/null
	[ -e "$T/host/planted" ] && fail "cp into dev:${p%secret}planted wrote on the host"
	[ "$(api -X PUT "http://x/v1/sandboxes/dev/files?path=${p%secret}d&type=dir")" ] && [ -e "$T/host/d" ] &&
		fail "mkdir of ${p%secret}d made it on the host"
done
[ "$(ls "$T/host")" = secret ] || fail "the host's directory got $(ls "$T/host")"

step "/proc, /sys, /dev: nothing written (but /dev/shm), /proc not read"
for p in /proc/x /proc/sys/kernel/hostname /sys/x /dev/x /dev/null; do
	echo x | "$HB" cp - "dev:$p" 2>"$T/err" && fail "cp into $p succeeded"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -q "dev:$p: nothing is written under /proc, /sys or /dev (but /dev/shm)" "$T/err" ||
		fail "cp into $p: '$(cat "$T/err")'"
done
[ "$(api -X PUT 'http://x/v1/sandboxes/dev/files?path=/dev/d&type=dir')" = 403 ] || fail "mkdir /dev/d: $(cat "$T/api.out")"
inside test -e /dev/d && fail "mkdir /dev/d was made"
inside ln -s /proc /tmp/toproc || fail "ln -s /proc"
echo x | "$HB" cp - dev:/tmp/toproc/x 2>"$T/err" && fail "cp through a symlink to /proc succeeded"
grep -q "nothing is written" "$T/err" || fail "cp through a symlink to /proc: '$(cat "$T/err")'"
"$HB" cp dev:/proc/1/status "$T/status" 2>"$T/err" && fail "cp out of /proc succeeded"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "are not copied" "$T/err" || fail "cp out of /proc: '$(cat "$T/err")'"
[ "$(api 'http://x/v1/sandboxes/dev/files?path=/proc&list=1')" = 200 ] &&
	python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["entries"] != [])' "$T/api.out" ||
	fail "list of /proc: $(head -c 300 "$T/api.out")"

step "a failed upload leaves no file"
# out of space in /dev/shm (64 MiB): the file it began is removed
inside dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null || fail "fill /dev/shm"
head -c $((32 << 20)) /dev/zero >"$T/32m"
[ "$(api -X PUT --data-binary @"$T/32m" 'http://x/v1/sandboxes/dev/files?path=/dev/shm/big')" = 507 ] ||
	fail "PUT of 32 MiB into a full /dev/shm: $(cat "$T/api.out")"
inside test -e /dev/shm/big && fail "the failed upload left /dev/shm/big: $(inside ls -ln /dev/shm)"
# a client gone after half its body
python3 - "$S" <<'EOF' || fail "the client cut short"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"PUT /v1/sandboxes/dev/files?path=/tmp/half HTTP/1.1\r\nHost: x\r\n"
          b"Content-Length: 1048576\r\n\r\n" + b"h" * 524288)
s.close()
EOF
sleep 0.5
inside ls -a /tmp | grep -q half && fail "the cut upload left $(inside ls -a /tmp)"
"$HB" cp "$T/x" dev:/tmp/after || fail "a cp after the cut one"

# temps DIR: the upload temporaries a process of dev sees in DIR
temps() { inside ls -a "$1" | grep '^\.hiberbox-upload\.'; }
no_temps() { local t; t=$(temps "$1") && fail "$2: $1 holds $t"; }

step "uploads in one piece and in two: the exact bytes, mode and owner"
inside rm -f /dev/shm/fill || fail "rm /dev/shm/fill"
head -c $((40 << 20)) /dev/urandom >"$T/40m"
chmod 0751 "$T/40m"
head -c 1000 /dev/urandom >"$T/small"
chmod 0600 "$T/small"
for dst in /tmp/big /big /tmp/u/mine; do
	"$HB" cp "$T/40m" "dev:$dst" || fail "cp of 40 MiB to $dst"
	"$HB" cp "dev:$dst" - | cmp -s - "$T/40m" || fail "the 40 MiB at $dst differ"
	own="0 *0"
	[ "$dst" = /tmp/u/mine ] && own="1000 *1000"
	inside ls -ln "$dst" | grep -q "^-rwxr-x--x *1 $own *41943040 " || fail "the 40 MiB at $dst: $(inside ls -ln "$dst")"
	"$HB" cp "$T/small" "dev:$dst" || fail "cp of 1000 bytes over $dst"
	"$HB" cp "dev:$dst" - | cmp -s - "$T/small" || fail "the 1000 bytes at $dst differ"
	inside ls -ln "$dst" | grep -q "^-rw------- *1 $own *1000 " || fail "the 1000 bytes at $dst: $(inside ls -ln "$dst")"
	no_temps "${dst%/*}/" "after the uploads to $dst"
done
# exactly one piece long: the last piece is empty
head -c $((32 << 20)) /dev/urandom >"$T/32r"
"$HB" cp "$T/32r" dev:/tmp/32r && "$HB" cp dev:/tmp/32r - | cmp -s - "$T/32r" || fail "cp of exactly 32 MiB"

step "an upload failing in its second piece leaves the old file whole and no temporary"
# /dev/shm holds 64 MiB: with 30 taken, the first 32 MiB fit, the next 8 not
inside sh -c 'echo old >/dev/shm/old && dd if=/dev/zero of=/dev/shm/fill bs=1M count=30 2>/dev/null' ||
	fail "fill /dev/shm"
"$HB" cp "$T/40m" dev:/dev/shm/old 2>"$T/err" && fail "cp of 40 MiB into a full /dev/shm succeeded"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q 'dev:/dev/shm/old: No space left on device' "$T/err" ||
	fail "cp into a full /dev/shm: '$(cat "$T/err")'"
[ "$(inside cat /dev/shm/old)" = old ] || fail "the failed upload over /dev/shm/old left $(inside ls -ln /dev/shm/old)"
no_temps /dev/shm "the failed upload"
# a tree: one line, the file cut short is not there (whole files may be)
inside rm /dev/shm/old || fail "rm /dev/shm/old"
mkdir "$T/bigtree"
echo a >"$T/bigtree/a"
cp "$T/40m" "$T/bigtree/big"
"$HB" cp "$T/bigtree" dev:/dev/shm/ 2>"$T/err" && fail "cp -r of 40 MiB into a full /dev/shm succeeded"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q 'No space left on device' "$T/err" || fail "cp -r into a full /dev/shm: '$(cat "$T/err")'"
inside test -e /dev/shm/bigtree/big && fail "the failed cp -r left $(inside ls -ln /dev/shm/bigtree)"
no_temps /dev/shm/bigtree "the failed cp -r"
inside rm -rf /dev/shm/fill /dev/shm/bigtree || fail "rm /dev/shm/fill"

step "while an upload waits, the sandbox reads the old file; a client killed between pieces leaves none"
"$HB" daemon stop >/dev/null || fail "daemon stop"
HIBERBOX_TEST_UPLOAD_PAUSE_MS=4000 HIBERBOX_TEST_UPLOAD_IDLE_MS=3000 "$HB" ls >/dev/null || fail "starting the daemon"
wait_log() { for _ in $(seq 600); do [ "$(grep -cF "$1" "$HIBERBOX_HOME/hiberboxd.log" 2>/dev/null)" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }
pauses() { grep -cF "test pause: upload dev" "$HIBERBOX_HOME/hiberboxd.log" 2>/dev/null; }
inside sh -c 'echo old >/tmp/c' || fail "/tmp/c"
# the reader runs before the upload takes the sandbox, and reads during
# its pause (2 s in, of 4)
inside sh -c 'echo started; sleep 2; cat /tmp/c; ls -a /tmp' >"$T/reader" 2>&1 &
rp=$!
for _ in $(seq 100); do grep -q started "$T/reader" && break; sleep 0.1; done
n=$(pauses)
echo new | "$HB" cp - dev:/tmp/c || fail "cp over /tmp/c"
wait "$rp"
[ "$(pauses)" -gt "$n" ] || fail "the upload did not pause"
[ "$(sed -n 2p "$T/reader")" = old ] || fail "during the upload the sandbox read '$(sed -n 2p "$T/reader")' in /tmp/c"
grep -q '^\.hiberbox-upload\.[0-9a-f]\{32\}$' "$T/reader" || fail "no temporary seen during the upload: $(cat "$T/reader")"
[ "$(inside cat /tmp/c)" = new ] || fail "/tmp/c after the upload"
# killed in its first piece's pause: the daemon writes the piece, no other
# comes; the destination was never made, the temporary is there (0600)
cut_upload() {
	local n
	n=$(pauses)
	"$HB" cp "$T/40m" "dev:$1" 2>/dev/null &
	cp_pid=$!
	wait_log "test pause: upload dev" $((n + 1)) || fail "the upload to $1 never reached its pause"
	kill -9 "$cp_pid"
	wait "$cp_pid" 2>/dev/null
}
cut_upload /cut
# (the exec waits for the piece: the sandbox's lock)
inside test -e /cut && fail "the upload killed between pieces left /cut: $(inside ls -ln /cut)"
t=$(temps /) || fail "the cut upload left no temporary named .hiberbox-upload.ID in /"
inside ls -ln "/$t" | grep -q '^-rw------- *1 0 *0 *33554432 ' || fail "the temporary: $(inside ls -ln "/$t")"
# given up once it got no piece for HIBERBOX_TEST_UPLOAD_IDLE_MS: at the
# next upload into the sandbox
sleep 3.5
echo other | "$HB" cp - dev:/tmp/other || fail "cp after the cut one"
no_temps / "the upload idle for 3 s, after the next upload"
# given up at a sleep, before the disk is kept
cut_upload /cut2
inside test -e /cut2 && fail "the upload killed between pieces left /cut2"
temps / >/dev/null || fail "the second cut upload left no temporary"
"$HB" sleep dev >/dev/null || fail "sleep dev"
no_temps / "the cut upload, after a sleep"
inside test -e /cut2 && fail "/cut2 after a sleep"
# an id of no upload in progress
[ "$(api -X PUT --data-binary x "http://x/v1/sandboxes/dev/files?path=/cut2&upload=0123456789abcdef0123456789abcdef&commit=1")" = 404 ] ||
	fail "a piece of no upload: $(cat "$T/api.out")"
[ "$(api -X PUT --data-binary x "http://x/v1/sandboxes/dev/files?path=/cut2&upload=../x")" = 400 ] ||
	fail "a bad upload id: $(cat "$T/api.out")"

daemon_test_no_sanitizer_reports
echo "cp: all passed"
