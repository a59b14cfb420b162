#!/bin/bash
# hiberboxd end to end: the real CLI and daemon, real FUSE mounts, real
# namespaces.  An image is a busybox-static tree; every check below asserts
# what a user of the sandbox manager relies on.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires

T=$(mktemp -d /tmp/hb-daemon-XXXXXX)
chmod 755 "$T"
export HIBERBOX_HOME=$T/home
# Host users' subordinate ids: sandboxes must not get them (the first two
# slots, 200000.. and 265536.., each overlap one of these).
printf 'someone:200000:65536\n' >"$T/subuid"
printf '# comment\nbroken line\nother:300000:10\n' >"$T/subgid"
export HIBERBOX_SUBUID_FILE=$T/subuid HIBERBOX_SUBGID_FILE=$T/subgid
HB=$HIBERBOX
START=$(date +%s)

cleanup() {
	local p inits
	# the daemon of the non-root step, if a failure left it running
	[ -n "${NR:-}" ] && as_nobody timeout 60 "$HB" daemon stop >/dev/null 2>&1
	chattr -i "$HIBERBOX_HOME/repo/snapshots" 2>/dev/null
	# asked before the daemon goes: inits a failure left that it would not end
	inits=$(timeout 20 "$HB" --json ls 2>/dev/null | grep -o '"init_pid": [1-9][0-9]*' | awk '{print $2}')
	daemon_teardown
	for p in $inits; do kill -9 "$p" 2>/dev/null; done
	# a mount of the test's own, if a failure left it (rm -rf must not walk in)
	mountpoint -q "$T/look" 2>/dev/null && { "$HB" umount "$T/look" >/dev/null 2>&1 || umount -l "$T/look"; }
	rm -rf "$T"
}
trap cleanup EXIT
step() { echo "== $* ($(( $(date +%s) - START ))s)"; }
state_of() { "$HB" --json inspect "$1" | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p'; }
# Waits below are for a condition, up to a minute: a loaded machine can be
# seconds late with anything, and only a hang takes that long.
# wait_for_procs NAME N: until sandbox NAME has N processes
wait_for_procs() { for _ in $(seq 600); do [ "$("$HB" --json inspect "$1" | sed -n 's/.*"processes": \([0-9]*\).*/\1/p')" = "$2" ] && return 0; sleep 0.1; done; return 1; }
# wait_gone PID...: until each has exited (a zombie has closed its files and
# let go of its locks): a process killed with -9 is not gone at once
wait_gone() {
	local p
	for p in "$@"; do
		for _ in $(seq 600); do
			[ -d "/proc/$p" ] && [ "$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$p/status" 2>/dev/null)" != Z ] || continue 2
			sleep 0.1
		done
		fail "process $p still alive a minute after SIGKILL"
	done
}
# log_capped LOG: until the daemon has trimmed LOG to its cap (it does on
# its ticks, every 0.5 s, which a loaded machine delays)
log_capped() { for _ in $(seq 600); do [ "$(stat -c %s "$1")" -le $((64 << 20)) ] && return 0; sleep 0.1; done; return 1; }
repo_bytes() { du -sb "$HIBERBOX_HOME/repo" | cut -f1; }

# An image: static busybox, its applets, a passwd with an unprivileged user.
mkdir -p "$T/img/bin" "$T/img/etc" "$T/img/home/user" "$T/img/tmp"
cp "$BUSYBOX" "$T/img/bin/busybox"
for c in sh ls cat echo id ps sleep head mkdir rm wc true false kill stat dd grep test pidof md5sum readlink find sort tty stty; do
	ln -s busybox "$T/img/bin/$c"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnopw::1001:1002::/:/bin/sh\n' > "$T/img/etc/passwd"
echo "image file" > "$T/img/etc/motd"

step "image import (directory and tarball), ls, duplicate"
"$HB" image import "$T/img" base >/dev/null || fail "import dir"
[ "$(stat -c %a "$HIBERBOX_HOME/hiberboxd.sock")" = 660 ] || fail "socket mode is not 0660"
[ "$(stat -c %a "$HIBERBOX_HOME/sandboxes.db")" = 600 ] || fail "registry mode is not 0600"
tar -C "$T/img" -cf "$T/img.tar" . || fail "tar"
"$HB" image import "$T/img.tar" fromtar >/dev/null || fail "import tarball"
"$HB" image ls | grep -q '^fromtar ' || fail "image ls lacks fromtar"
"$HB" image import "$T/img" base 2>"$T/err" && fail "importing an existing name succeeded"
grep -q "exists already" "$T/err" || fail "duplicate import: $(cat "$T/err")"
"$HB" image import "$T/nowhere" x 2>"$T/err" && fail "imported a missing directory"
[ "$(cat "$T/err")" = "hiberbox: $T/nowhere: No such file or directory" ] ||
	fail "import of a missing directory: $(cat "$T/err")"

step "image import of a tree changing while it is read: the client and the log are told"
# The daemon reads the source tree itself: a file removed between the walk
# and its read is left out of the image, and whoever imported it must learn
# that from the reply (the CLI prints it as a warning), not only find it
# missing later.
"$HB" daemon stop >/dev/null || fail "daemon stop before the live import"
mkdir -p "$T/live/d"
echo gone >"$T/live/a"
echo kept >"$T/live/d/k"
rm -f "$T/hold" && mkfifo "$T/hold"
HIBERBOX_TEST_CREATE_READ_WAIT=$T/hold "$HB" ls >/dev/null || fail "ls starting the daemon with the read hook"
"$HB" --json image import "$T/live" live >"$T/out" 2>"$T/err" &
ip=$!
timeout 60 bash -c 'exec 3>"$1" && rm "$2"' _ "$T/hold" "$T/live/a" ||
	{ kill "$ip"; fail "the import never reached the read hook"; }
wait "$ip" || fail "import of a changing tree failed: $(cat "$T/err")"
rm -f "$T/hold"
want="'a' was removed during the snapshot; left out"
[ "$(cat "$T/err")" = "hiberbox: warning: $want" ] ||
	fail "import of a changing tree: stderr '$(cat "$T/err")', expected the warning"
python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("warnings") != [sys.argv[2]])' \
	"$T/out" "$want" || fail "import of a changing tree: the reply's warnings: $(cat "$T/out")"
grep -qF "hiberboxd: import live: warning: $want" "$HIBERBOX_HOME/hiberboxd.log" ||
	fail "the daemon log lacks the import's warning"
[ "$("$HB" snapshot ls image.live -R 2>&1)" = $'d\nd/k' ] ||
	fail "image live holds $("$HB" snapshot ls image.live -R 2>&1 | tr '\n' ' ')"
"$HB" --json image import "$T/live" live2 >"$T/out" 2>"$T/err" || fail "import live2"
[ ! -s "$T/err" ] || fail "an import of a still tree printed '$(cat "$T/err")'"
python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("warnings") != [])' "$T/out" ||
	fail "an import of a still tree: the reply's warnings: $(cat "$T/out")"
"$HB" image rm live >/dev/null && "$HB" image rm live2 >/dev/null || fail "image rm live, live2"
"$HB" daemon stop >/dev/null || fail "daemon stop after the live import"

step "names"
for bad in "../x" "a/b" ".hidden" "" "$(printf 'x%.0s' {1..70})" 'a b'; do
	"$HB" create "$bad" --image base >/dev/null 2>"$T/err" && fail "created sandbox '$bad'"
	grep -q "invalid name\|expected NAME" "$T/err" || fail "bad name '$bad': $(cat "$T/err")"
done
"$HB" create x --image nope 2>"$T/err" && fail "created from a missing image"
grep -q "no image 'nope'" "$T/err" || fail "missing image: $(cat "$T/err")"

step "create, exec: stdout, stderr, exit code, signal, timeout, stdin, env, cwd, user"
# The daemon starts again on demand, from a shell whose umask is 000: a
# command in a sandbox still starts with 022 (it had the shell's, so every
# file root made there was writable by the sandbox's other users).
"$HB" daemon stop >/dev/null || fail "daemon stop before create a"
(umask 000; "$HB" create a --image base --memory 256M --pids 128 --cpus 1 --env GREETING=hi >/dev/null) ||
	fail "create a"
[ "$("$HB" exec a -- sh -c umask)" = 0022 ] ||
	fail "a command's umask is $("$HB" exec a -- sh -c umask) under a daemon started with umask 000"
[ "$(state_of a)" = running ] || fail "a is not running after create"
# Names that are no names, sent as they were in the request path, addressed
# a: '?' began the query, the daemon split 'a/' at its '/' and decoded
# 'a%2F' and '%61' first, so 'hiberbox rm a/' (a shell's completion of a
# directory a) removed sandbox a.  Each is refused, and a stays.
for alias in 'a/' 'a?x' 'a%2F' '%61' 'a#'; do
	for cmd in inspect rm sleep logs "image rm" fork; do
		# shellcheck disable=SC2086 # "image rm" is two words
		"$HB" $cmd "$alias" $([ "$cmd" = fork ] && echo a2) >"$T/out" 2>"$T/err" &&
			fail "'$cmd $alias' succeeded: $(head -c 300 "$T/out")"
		grep -q "^hiberbox: invalid name" "$T/err" && [ "$(wc -l <"$T/err")" = 1 ] ||
			fail "'$cmd $alias': $(cat "$T/err")"
	done
	"$HB" exec "$alias" -- true 2>"$T/err" && fail "'exec $alias' ran in a"
	grep -q "invalid name" "$T/err" || fail "'exec $alias': $(cat "$T/err")"
	[ "$(state_of a)" = running ] || fail "a is not running after commands on '$alias'"
done
"$HB" image ls | grep -q "^base " || fail "'image rm' of an alias removed image base"
"$HB" --json inspect a | grep -q '"id_base": 331072' ||
	fail "a's ids overlap a host user's subordinate ids: $("$HB" --json inspect a | grep id_base)"
# The fs process serving a's root was started by the daemon, which blocks
# SIGTERM/SIGINT/SIGHUP for its signalfd: it must not inherit that mask (it
# would ignore `kill`).
fs_pid_of() { "$HB" --json mounts | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["mountpoint"].endswith("/sandboxes/" + sys.argv[1] + "/root") and m["alive"]:
        print(m["pid"])' "$1"; }
fspid=$(fs_pid_of a)
[ -n "$fspid" ] || fail "no fs process for a"
blk=$(sed -n 's/^SigBlk:\t//p' "/proc/$fspid/status")
(( (0x$blk & 0x4003) == 0 )) || fail "a's fs process has SIGHUP/INT/TERM blocked (SigBlk $blk)"
# The root is an allow_other mount: only root and the sandbox's own ids may
# reach it; another host user can neither read it nor list the sandboxes.
[ -r "$HIBERBOX_HOME/sandboxes/a/root/etc/passwd" ] || fail "a's root is not mounted"
setpriv --reuid=65534 --regid=65534 --clear-groups -- cat "$HIBERBOX_HOME/sandboxes/a/root/etc/passwd" \
	>/dev/null 2>&1 && fail "another host user reads a sandbox's files"
setpriv --reuid=65534 --regid=65534 --clear-groups -- ls "$HIBERBOX_HOME/sandboxes" >/dev/null 2>&1 &&
	fail "another host user lists the sandboxes"
out=$("$HB" exec a -- sh -c 'echo out; echo err >&2; exit 7' 2>"$T/err"); rc=$?
[ "$rc" = 7 ] || fail "exit code $rc, expected 7"
[ "$out" = out ] || fail "stdout: '$out'"
[ "$(cat "$T/err")" = err ] || fail "stderr: '$(cat "$T/err")'"
"$HB" exec a -- sh -c 'kill -9 $$' 2>"$T/err"; rc=$?
[ "$rc" = 137 ] || fail "killed by SIGKILL: exit $rc, expected 137"
# a kill from inside is the command's own business: no word from hiberbox
[ ! -s "$T/err" ] || fail "killed from inside: stderr '$(cat "$T/err")'"
t0=$(date +%s%N)
"$HB" exec --timeout 1 a -- sleep 20 2>"$T/err"; rc=$?
t1=$(date +%s%N)
[ "$rc" = 137 ] || fail "timeout: exit $rc, expected 137"
[ "$(cat "$T/err")" = "hiberbox: a: killed: its --timeout ran out" ] ||
	fail "timeout: stderr '$(cat "$T/err")'"
# the command sleeps 20 s: 15 s tells the --timeout from its end, with
# room for a slow machine
[ $(( (t1 - t0) / 1000000 )) -lt 15000 ] || fail "timeout took $(( (t1 - t0) / 1000000 )) ms"
t0=$(date +%s%N)
"$HB" exec --timeout 1 a -- sh -c 'exec >&- 2>&-; sleep 20'; rc=$?
[ "$rc" = 137 ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 15000 ] ||
	fail "timeout of a command without stdout/stderr: exit $rc"
# a background child holding stdout does not hold the exec
t0=$(date +%s%N)
out=$("$HB" exec a -- sh -c 'echo fg; sleep 20 & echo done')
[ "$out" = "$(printf 'fg\ndone')" ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 15000 ] ||
	fail "exec with a background child: '$out' after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
"$HB" exec a -- sh -c 'kill $(pidof sleep) 2>/dev/null; true'
out=$(printf 'line1\nline2\n' | "$HB" exec -i a -- wc -l)
[ "$(echo $out)" = 2 ] || fail "stdin: '$out'"
# -i streams: each line is answered before the next is sent
coproc IA { "$HB" exec -i a -- sh -c 'while read l; do echo "got $l"; done; echo bye'; }
for w in one two; do
	echo "$w" >&"${IA[1]}"
	read -t 10 -r line <&"${IA[0]}" || fail "-i: no answer to '$w' while stdin is open"
	[ "$line" = "got $w" ] || fail "-i: '$line' for '$w'"
done
exec {IA[1]}>&-
read -t 10 -r line <&"${IA[0]}"
[ "$line" = bye ] || fail "-i: the end of stdin did not reach the command ('$line')"
wait "$IA_PID" || fail "-i: exit $?"
# a stdin larger than the pipe and the old 64 MiB body limit arrives whole
head -c 70000000 /dev/urandom > "$T/bigin"
out=$("$HB" exec -i a -- md5sum < "$T/bigin")
[ "${out%% *}" = "$(md5sum < "$T/bigin" | cut -d' ' -f1)" ] || fail "-i: 70 MB stdin: '$out'"
rm -f "$T/bigin"
# a command that ends without reading stdin ends the exec at once
t0=$(date +%s%N)
out=$("$HB" exec -i a -- echo quick < <(sleep 20))
[ "$out" = quick ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 15000 ] ||
	fail "-i with unread stdin: '$out' after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
out=$("$HB" exec a --env EXTRA=1 --cwd /etc -- sh -c 'echo $GREETING $EXTRA $(pwd)')
[ "$out" = "hi 1 /etc" ] || fail "env/cwd: '$out'"
out=$("$HB" exec --user user a -- id -u)
[ "$out" = 1000 ] || fail "--user user: '$out'"
out=$("$HB" exec --user nopw a -- id) # an empty password field shifts nothing
grep -q "uid=1001 gid=1002" <<<"$out" || fail "--user nopw (empty password field): '$out'"
out=$("$HB" exec --user 1234:55 a -- id)
grep -q "uid=1234 gid=55" <<<"$out" || fail "--user 1234:55: '$out'"
"$HB" exec a -- /bin/nonexistent 2>"$T/err"; rc=$?
[ "$rc" = 125 ] || fail "missing command: exit $rc, expected 125"
[ "$(cat "$T/err")" = "hiberbox: a: exec /bin/nonexistent: No such file or directory" ] ||
	fail "missing command, message: $(cat "$T/err")"
"$HB" exec --cwd /nowhere a -- true 2>"$T/err"; rc=$?
[ "$rc" = 125 ] && [ "$(cat "$T/err")" = "hiberbox: a: chdir /nowhere: No such file or directory" ] ||
	fail "missing --cwd: $rc $(cat "$T/err")"
"$HB" exec nosuch -- true 2>"$T/err"; rc=$?
[ "$rc" = 125 ] && grep -q "no sandbox named 'nosuch'" "$T/err" || fail "exec on missing: $rc $(cat "$T/err")"
# output is streamed as produced, not at the end: the command cannot end
# before the test lets it, so 'first' seen before that was streamed
"$HB" exec a -- rm -f /tmp/stream-go
"$HB" exec a -- sh -c 'echo first; while [ ! -e /tmp/stream-go ]; do sleep 0.1; done; echo second' > "$T/stream" &
sp=$!
for _ in $(seq 600); do [ -s "$T/stream" ] && break; sleep 0.1; done
[ "$(cat "$T/stream")" = first ] || fail "output not streamed: '$(cat "$T/stream")'"
"$HB" exec a -- mkdir /tmp/stream-go
wait $sp
[ "$(cat "$T/stream")" = "$(printf 'first\nsecond')" ] || fail "streamed output: '$(cat "$T/stream")'"
# a client that goes away takes its command with it
timeout 1 "$HB" exec a -- sleep 300
wait_for_procs a 0 ||
	fail "a command outlived its client ($("$HB" --json inspect a | sed -n 's/.*"processes": \([0-9]*\).*/\1/p') processes)"
# concurrent execs in one sandbox
for i in 1 2 3 4; do "$HB" exec a -- sh -c "sleep 1; echo $i" > "$T/par$i" & done
wait
for i in 1 2 3 4; do [ "$(cat "$T/par$i")" = $i ] || fail "concurrent exec $i: $(cat "$T/par$i")"; done

step "exec -t: a terminal of the sandbox's own, ^C, window size, the local terminal restored"
out=$("$HB" exec -t a --env TERM=vt100 -- sh -c 'tty; stty size; echo $TERM; echo err >&2' 2>"$T/err" | tr -d '\r')
[[ "$out" =~ ^/dev/pts/[0-9]+$'\n'"24 80"$'\n'vt100$'\n'err$ ]] && [ ! -s "$T/err" ] ||
	fail "exec -t: '$out' (stderr '$(cat "$T/err")')"
# the name is one of the sandbox's own ptys, owned by the command's user
out=$("$HB" exec -t --user user a -- sh -c 'ls /dev/pts/$(basename $(tty)) && stat -c %u $(tty)' | tr -d '\r')
[[ "$out" =~ ^/dev/pts/[0-9]+$'\n'1000$ ]] || fail "exec -t --user: '$out'"
"$HB" exec a -- tty >/dev/null; rc=$?
[ "$rc" = 1 ] || fail "exec without -t has a terminal (tty: exit $rc)"
# -it from a terminal (script gives the CLI one): ^C reaches the foreground
# job only, exit codes come back, the terminal is put back as it was
# wait_in CMD...: until CMD succeeds inside sandbox a (at most 30 s)
wait_in() { for _ in $(seq 300); do "$HB" exec a -- "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
t0=$(date +%s)
{ sleep 1; printf 'sleep 60\n'; wait_in pidof sleep; printf '\003'; sleep 0.5; printf 'echo alive $?\nexit 3\n'; } |
	timeout 90 script -qec "stty -g > $T/stty.before; $HB exec -it a -- sh; rc=\$?; stty -g > $T/stty.after; exit \$rc" \
	/dev/null > "$T/ts" 2>&1; rc=$?
[ "$rc" = 3 ] || fail "exec -it: exit $rc ($(tr -d '\r' < "$T/ts" | tail -5))"
[ $(( $(date +%s) - t0 )) -lt 50 ] || fail "exec -it: ^C did not stop sleep" # (sleep 60)
tr -d '\r' < "$T/ts" | grep -q '^alive 130$' || fail "exec -it: no 'alive 130' after ^C: $(tr -d '\r' < "$T/ts" | tail -5)"
cmp -s "$T/stty.before" "$T/stty.after" || fail "exec -it left the local terminal changed"
# a change of the local terminal's size reaches the command (SIGWINCH)
"$HB" exec a -- rm -f /tmp/winch-ready
timeout 90 script -qec "$HB exec -t a -- sh -c 'trap \"stty size; exit 0\" WINCH; : > /tmp/winch-ready; i=0; while [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done; echo no-winch' &
	for i in \$(seq 100); do $HB exec a -- test -e /tmp/winch-ready && break; sleep 0.1; done; stty rows 50 cols 132; wait" \
	/dev/null > "$T/ts" 2>&1
tr -d '\r' < "$T/ts" | grep -q '^50 132$' || fail "resize did not reach the command: '$(tr -d '\r' < "$T/ts")'"

step "limits: a memory hog dies in its own cgroup, a fork bomb stops at --pids"
"$HB" create lim --image base --memory 64M --pids 20 >/dev/null || fail "create lim"
# What the sandbox writes into its tree (xattrs of up to 1 MiB a node) is
# held by its fs process outside the sandbox: that process has a memory
# limit too, the sandbox's plus 256 MiB (unlimited, xattrs of 400 files
# took 400 MB under --memory 256M).
memcg_of() { # the memory cgroup directory of pid $1 (v1 or v2)
	local p
	p=$(sed -n 's/^[0-9]*:[^:]*\bmemory\b[^:]*://p' "/proc/$1/cgroup")
	if [ -n "$p" ]; then echo "/sys/fs/cgroup/memory$p"; else echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$1/cgroup")"; fi
}
mem_limit_of() { cat "$1/memory.limit_in_bytes" 2>/dev/null || cat "$1/memory.max"; }
limfs=$(fs_pid_of lim)
[ -n "$limfs" ] || fail "no fs process for lim"
limcg=$(memcg_of "$limfs")
[ "$(mem_limit_of "$limcg")" = $(( (64 + 256) << 20 )) ] ||
	fail "lim's fs process has no memory limit of 64M + 256M ($limcg: $(mem_limit_of "$limcg"))"
"$HB" exec lim -- sh -c 'x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived ${#x}' >"$T/hog" 2>"$T/err"
rc=$?
[ "$rc" = 137 ] || fail "memory hog: exit $rc ($(cat "$T/hog" "$T/err"))"
[ "$(cat "$T/err")" = "hiberbox: lim: killed: out of memory (the sandbox's --memory limit)" ] ||
	fail "memory hog: stderr '$(cat "$T/err")'"
out=$("$HB" exec lim -- sh -c '(i=0; while [ $i -lt 60 ]; do sleep 2 & i=$((i+1)); done) 2>/dev/null
	set -- /proc/[0-9]*; echo $#' 2>/dev/null)
[ -n "$out" ] && [ "$out" -le 20 ] || fail "fork bomb: $out processes with --pids 20"
# the bomb's sleeps end 2 s after they began, and give their pids back
alive=
for _ in $(seq 60); do alive=$("$HB" exec lim -- echo alive 2>/dev/null) && break; sleep 1; done
[ "$alive" = alive ] || fail "lim unusable after the fork bomb"
"$HB" daemon status >/dev/null || fail "the daemon died with the memory hog"
"$HB" exec lim -- sh -c 'echo started; exec sleep 60' >"$T/out" 2>"$T/err" &
killed=$!
for _ in $(seq 600); do [ -s "$T/out" ] && break; sleep 0.1; done
"$HB" rm lim >/dev/null || fail "rm lim"
wait $killed; rc=$?
[ "$rc" = 137 ] && [ "$(cat "$T/err")" = "hiberbox: lim: killed: the sandbox was removed" ] ||
	fail "command killed by rm: exit $rc, stderr '$(cat "$T/err")'"
[ -d "$limcg" ] && fail "lim's fs cgroup $limcg is left after rm"
# Without --pids a fork bomb took every pid of the host (pid_max is below
# the RLIMIT_NPROC root passes on): a sandbox gets 4096 unless told, and
# --pids 0 is the way to ask for no limit.
"$HB" create deflim --image base >/dev/null || fail "create deflim"
"$HB" --json inspect deflim | grep -q '"pids": 4096' ||
	fail "a sandbox created without --pids: $("$HB" --json inspect deflim | grep '"pids"')"
dinit=$("$HB" --json inspect deflim | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
dpids=$(sed -n 's/^[0-9]*:pids://p' "/proc/$dinit/cgroup")
[ -z "$dpids" ] || [ "$(cat "/sys/fs/cgroup/pids$dpids/pids.max")" = 4096 ] ||
	fail "deflim's pids.max: $(cat "/sys/fs/cgroup/pids$dpids/pids.max")"
"$HB" rm deflim >/dev/null || fail "rm deflim"
"$HB" create nolim --image base --pids 0 >/dev/null || fail "create nolim --pids 0"
"$HB" --json inspect nolim | grep -q '"pids": 0' || fail "--pids 0 is not 'no limit'"
"$HB" rm nolim >/dev/null || fail "rm nolim"

step "disk: --disk caps a sandbox's tree (ENOSPC), df shows it, it holds across sleep and wake"
# Without it untrusted code filled the disk under $HIBERBOX_HOME (the
# registry, the repository, every other sandbox).
"$HB" create dsk --image base --disk 8M 2>"$T/err" >/dev/null || fail "create dsk --disk 8M: $(cat "$T/err")"
"$HB" --json inspect dsk | grep -q '"disk_bytes": 8388608' ||
	fail "inspect dsk: $("$HB" --json inspect dsk | grep disk_bytes)"
df_total() { "$HB" exec dsk -- busybox df -k / | awk 'NR == 2 { print $2 }'; }
[ "$(df_total)" = 8192 ] || fail "df in a sandbox with --disk 8M: $("$HB" exec dsk -- busybox df -k /)"
"$HB" exec dsk -- sh -c 'echo kept > /keep' || fail "writing /keep"
"$HB" exec dsk -- dd if=/dev/zero of=/fill bs=1M count=20 2>"$T/err" >/dev/null &&
	fail "20 MB went into a sandbox with --disk 8M"
grep -q "No space left" "$T/err" || fail "dd past --disk: $(cat "$T/err")"
[ "$("$HB" exec dsk -- cat /keep)" = kept ] || fail "/keep lost when the disk limit was hit"
"$HB" exec dsk -- rm /fill || fail "rm /fill in a full sandbox"
for _ in $(seq 300); do # the space comes back when the fs forgets the file
	"$HB" exec dsk -- dd if=/dev/zero of=/again bs=1M count=4 2>/dev/null >/dev/null && break
	sleep 0.1
done
"$HB" exec dsk -- dd if=/dev/zero of=/again bs=1M count=4 2>"$T/err" >/dev/null ||
	fail "writing after rm /fill: $(cat "$T/err")"
"$HB" sleep dsk >/dev/null || fail "sleep dsk"
"$HB" wake dsk >/dev/null || fail "wake dsk"
[ "$(df_total)" = 8192 ] || fail "df after a wake: $("$HB" exec dsk -- busybox df -k /)"
# What the sleep committed still counts (the limit was per wake: each wake
# could add 8 MiB more): the image's busybox (~2 MB) and /again (4 MiB).
dused=$("$HB" exec dsk -- busybox df -k / | awk 'NR == 2 { print $3 }')
[ "$dused" -ge 5900 ] && [ "$dused" -le 6400 ] ||
	fail "df after a wake: $dused KiB used, not ~6 MiB: $("$HB" exec dsk -- busybox df -k /)"
"$HB" exec dsk -- dd if=/dev/zero of=/more bs=1M count=6 2>"$T/err" >/dev/null &&
	fail "6 MB more went in after a wake: the tree holds ~6 MiB of 8"
grep -q "No space left" "$T/err" || fail "dd past --disk after a wake: $(cat "$T/err")"
more=$("$HB" exec dsk -- stat -c %s /more)
[ "$more" -ge 1500000 ] && [ "$more" -le 2400000 ] ||
	fail "$more bytes went in after a wake, not the ~2 MB left of 8 MiB"
[ "$("$HB" exec dsk -- cat /keep)" = kept ] || fail "/keep after the wake"
"$HB" rm dsk >/dev/null || fail "rm dsk"
"$HB" create dsk --image base --disk lots >/dev/null 2>"$T/err" && fail "create --disk lots"
grep -q "bad --disk 'lots'" "$T/err" || fail "--disk lots: $(cat "$T/err")"
# an image whose files fill the limit could be created but never started
# (its first mkdir: ENOSPC); create says so and leaves nothing behind
"$HB" create dsk --image base --disk 1M >/dev/null 2>"$T/err" && fail "create with an image bigger than --disk"
grep -q "^hiberbox: image 'base' holds [0-9.]* MiB of files: a disk limit of 1.0 MiB leaves no room to run it (give at least [0-9.]* MiB)$" "$T/err" ||
	fail "create with an image bigger than --disk: $(cat "$T/err")"
"$HB" inspect dsk >/dev/null 2>&1 && fail "a refused create left sandbox dsk"
"$HB" --json inspect a | grep -q '"disk_bytes": 0' || fail "a sandbox created without --disk has a disk limit"

step "API: bad requests get clear errors, the daemon survives them"
S=$HIBERBOX_HOME/hiberboxd.sock
api() { curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' "$@"; }
[ "$(api http://x/v1/nope)" = 404 ] || fail "unknown path"
[ "$(api http://x/other)" = 404 ] || fail "path outside /v1"
[ "$(api -X POST -d '{not json' http://x/v1/sandboxes)" = 400 ] || fail "bad JSON: $(cat "$T/api.out")"
grep -q '"error"' "$T/api.out" || fail "no error text for bad JSON"
[ "$(api -X POST -d '[1,2]' http://x/v1/sandboxes)" = 400 ] || fail "JSON array body"
[ "$(api -X POST -d '{"name":"z","image":"base","network":"wifi"}' http://x/v1/sandboxes)" = 400 ] ||
	fail "bad network"
[ "$(api -X POST -d '{"name":"z","image":"base","idle_timeout":"5 parsecs"}' http://x/v1/sandboxes)" = 400 ] ||
	fail "bad idle timeout"
for t in 18446744074 '"213504000d"'; do # past 2^64 ns: would wrap to a short timeout
	[ "$(api -X POST -d '{"name":"z","image":"base","idle_timeout":'"$t"'}' http://x/v1/sandboxes)" = 400 ] ||
		fail "idle timeout $t: $(cat "$T/api.out")"
done
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true&timeout=213504d')" = 400 ] || fail "exec timeout past 2^64 ns"
# A FIFO the sandbox made must not hang the daemon (it holds the sandbox's
# lock while it opens): reading or writing it is refused at once.
"$HB" exec a -- busybox mkfifo /fifo || fail "mkfifo"
[ "$(timeout 10 curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' 'http://x/v1/sandboxes/a/files?path=/fifo')" = 400 ] ||
	fail "GET of a FIFO: $(cat "$T/api.out")"
[ "$(timeout 10 curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' -X PUT --data-binary x 'http://x/v1/sandboxes/a/files?path=/fifo')" = 400 ] ||
	fail "PUT over a FIFO: $(cat "$T/api.out")"
"$HB" exec a -- rm /fifo || fail "rm /fifo: the sandbox hangs"
[ "$(api -X POST -d '{"name":"z","image":"base","env":["NOEQUALS"]}' http://x/v1/sandboxes)" = 400 ] ||
	fail "bad env"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec')" = 400 ] || fail "exec without arg"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true&timeout=soon')" = 400 ] || fail "bad timeout"
[ "$(api -X POST 'http://x/v1/sandboxes/..%2Fetc/exec?arg=true')" -ge 400 ] || fail "name with .."
[ "$(api 'http://x/v1/sandboxes/a/files?path=relative')" = 400 ] || fail "relative file path"
[ "$(api 'http://x/v1/sandboxes/a/logs?pid=abc')" = 400 ] || fail "bad pid"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true&stdin=file')" = 400 ] || fail "bad stdin mode"
[ "$(api -X POST -d x 'http://x/v1/sandboxes/a/exec?arg=true&stdin=stream')" = 400 ] ||
	fail "stdin=stream with a body"
[ "$(api -X POST -d x 'http://x/v1/sandboxes/a/exec/987654/stdin')" = 404 ] ||
	fail "stdin of an unknown exec: $(cat "$T/api.out")"
grep -q "no exec 987654" "$T/api.out" || fail "stdin of an unknown exec: $(cat "$T/api.out")"
[ "$(api -X POST -d x 'http://x/v1/sandboxes/a/exec/12x/stdin')" = 404 ] || fail "bad exec id"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true&tty=1&detach=1')" = 400 ] || fail "tty with detach"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true&tty=1&rows=0')" = 400 ] || fail "tty with 0 rows"
[ "$(api -X POST 'http://x/v1/sandboxes/a/exec/987654/resize?rows=5&cols=5')" = 404 ] ||
	fail "resize of an unknown exec"
head -c 2000000 /dev/zero | tr '\0' ' ' > "$T/bigjson"
[ "$(api -X POST --data-binary @"$T/bigjson" http://x/v1/sandboxes)" = 413 ] || fail "oversized JSON body"
[ "$(api -X POST -d '{"name":"z","image":"base","memory_bytes":"lots"}' http://x/v1/sandboxes)" = 400 ] ||
	fail "memory_bytes as a string"
for v in '"lots"' -1 1000; do
	[ "$(api -X POST -d '{"name":"z","image":"base","disk_bytes":'"$v"'}' http://x/v1/sandboxes)" = 400 ] ||
		fail "disk_bytes $v: $(cat "$T/api.out")"
done
[ "$(api -X POST -d '{"name":"z","image":"base","cpus":-1}' http://x/v1/sandboxes)" = 400 ] ||
	fail "negative cpus"
# a fraction of a cpu too small to set would have meant no limit at all
[ "$(api -X POST -d '{"name":"z","image":"base","cpus":0.0001}' http://x/v1/sandboxes)" = 400 ] ||
	fail "cpus rounding to no limit: $(cat "$T/api.out")"
[ "$(api -X POST -d '{"name":"z","image":"base","idle_timeout":-5}' http://x/v1/sandboxes)" = 400 ] &&
	grep -q "whole seconds" "$T/api.out" || fail "negative idle timeout: $(cat "$T/api.out")"
# a mode that is not octal bits was taken as 0 (or kept stray high bits)
for m in rw 17777 -1 ''; do
	[ "$(api -X PUT --data-binary x "http://x/v1/sandboxes/a/files?path=/badmode&mode=$m")" = 400 ] ||
		fail "PUT with mode '$m': $(cat "$T/api.out")"
	[ "$(api -X PUT "http://x/v1/sandboxes/a/files?path=/badmode.d&type=dir&mode=$m")" = 400 ] ||
		fail "mkdir with mode '$m': $(cat "$T/api.out")"
done
"$HB" exec a -- test -e /badmode -o -e /badmode.d && fail "a PUT with a bad mode made something"
[ "$(api -X PUT --data-binary x 'http://x/v1/sandboxes/a/files?path=/goodmode&mode=640')" = 200 ] &&
	[ "$("$HB" exec a -- stat -c %a /goodmode)" = 640 ] || fail "PUT with mode 640"
"$HB" exec a -- rm /goodmode
# an error quoting bytes that are not UTF-8 still gets its reply (there was
# none: the JSON error could not be built, the connection just closed)
[ "$(api 'http://x/v1/sandboxes/a/files?path=/caf%E9-nope')" = 404 ] &&
	grep -qF 'caf\\xe9-nope: No such file' "$T/api.out" || fail "a non-UTF-8 path's error: $(cat "$T/api.out")"
[ "$(api -X POST 'http://x/v1/sandboxes/%FF/exec?arg=true')" = 400 ] || fail "a non-UTF-8 name's error"
"$HB" cp a:/caf$'\xe9'-nope "$T/nope" 2>"$T/err" && fail "cp of a missing Latin-1 name succeeded"
grep -q "No such file" "$T/err" || fail "cp of a missing Latin-1 name: $(cat "$T/err")"
"$HB" inspect a >/dev/null || fail "the daemon did not survive bad requests"

step "detached process and logs; cp in and out"
pid=$("$HB" exec -d a -- sh -c 'echo started; sleep 1; echo finished')
[ -n "$pid" ] || fail "exec -d printed no pid"
for _ in $(seq 600); do "$HB" logs a "$pid" 2>/dev/null | grep -q finished && break; sleep 0.1; done
out=$("$HB" logs a "$pid")
[ "$out" = "$(printf 'started\nfinished')" ] || fail "logs: '$out'"
# --timeout holds for a detached command too (it was ignored)
pid=$("$HB" exec -d --timeout 1 a -- sleep 30)
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "a detached command outlived its --timeout"
"$HB" exec --timeout=-1 a -- true 2>"$T/err" && fail "a negative timeout was taken"
grep -q "bad duration '-1'" "$T/err" || fail "negative timeout: $(cat "$T/err")"
# A log is a host file: past 64 MiB its oldest output goes, the newest stays.
pid=$("$HB" exec -d a -- sh -c 'head -c 200000000 /dev/zero; echo; echo the-end; sleep 4')
log=$HIBERBOX_HOME/sandboxes/a/logs/$pid.log
for _ in $(seq 240); do grep -q the-end "$log" 2>/dev/null && break; sleep 0.25; done
log_capped "$log"
size=$(stat -c %s "$log")
[ "$size" -le $((64 << 20)) ] || fail "a detached command's log grew to $size bytes"
[ "$("$HB" logs a "$pid" | tail -n 1)" = the-end ] || fail "the newest output of a trimmed log is gone"
sleep 3
rm -f "$log" # not to count as a sleeping sandbox's local bytes below
# A background child that outlives the detached command writes the same log:
# the cap holds for as long as anything writes it.
pid=$("$HB" exec -d a -- sh -c '(sleep 1; head -c 200000000 /dev/zero; echo; echo orphan-end) & exit 0')
log=$HIBERBOX_HOME/sandboxes/a/logs/$pid.log
for _ in $(seq 240); do tail -c 100 "$log" 2>/dev/null | grep -q orphan-end && break; sleep 0.25; done
log_capped "$log"
size=$(stat -c %s "$log")
[ "$size" -le $((64 << 20)) ] || fail "the log of a detached command's orphan grew to $size bytes"
[ "$("$HB" logs a "$pid" | tail -n 1)" = orphan-end ] || fail "the orphan's newest output is gone"
rm -f "$log"
head -c 100000 /dev/urandom > "$T/blob"
"$HB" cp "$T/blob" a:/blob || fail "cp in"
"$HB" cp a:/blob "$T/blob.out" || fail "cp out"
cmp -s "$T/blob" "$T/blob.out" || fail "cp round trip differs"
[ "$("$HB" exec a -- stat -c %u /blob)" = 0 ] || fail "copied-in file not owned by the sandbox's root"
"$HB" cp a:/../../../etc/shadow "$T/shadow" 2>/dev/null && cmp -s "$T/shadow" /etc/shadow &&
	fail "cp escaped the sandbox root"
"$HB" cp a:/nope "$T/nope" 2>/dev/null && fail "cp of a missing file succeeded"
echo keep > "$T/keep"
"$HB" cp a:/nope "$T/keep" 2>"$T/err" && fail "cp of a missing file over a local one succeeded"
[ "$(cat "$T/keep")" = keep ] || fail "a failed cp clobbered the local file"
grep -q "nope" "$T/err" || fail "cp of a missing file: $(cat "$T/err")"

step "cp of directories: in, into an existing directory, out; modes, symlinks, special files"
tree() { (cd "$1" && { find . -printf '%y %m %p -> %l\n'; find . -type f -printf '%s %p\n'; } | sort); }
mkdir -p "$T/ct/src/sub/deep" "$T/ct/src/empty" "$T/ct/src/ro" "$T/ct/src/with space"
echo hello > "$T/ct/src/a.txt"
head -c 300000 /dev/urandom > "$T/ct/src/sub/deep/blob"
printf '#!/bin/sh\necho run\n' > "$T/ct/src/sub/run.sh"
chmod 755 "$T/ct/src/sub/run.sh"
: > "$T/ct/src/with space/empty file"
echo locked > "$T/ct/src/ro/inside"
chmod 555 "$T/ct/src/ro"
chmod 750 "$T/ct/src/sub"
ln -s a.txt "$T/ct/src/link"
ln -s /no/such/target "$T/ct/src/dangling"
mkfifo "$T/ct/src/fifo"
# names are bytes: Latin-1 ones (not UTF-8) go through JSON as "name_hex"
echo latin1 > "$T/ct/src/caf"$'\xe9'
ln -s "caf"$'\xe9' "$T/ct/src/l"$'\xe9'
out=$("$HB" --json cp "$T/ct/src" a:/tree-in 2>"$T/err") || fail "cp of a directory in: $(cat "$T/err")"
grep -q '"skipped": 1' <<<"$out" && grep -q '"symlinks": 3' <<<"$out" && grep -q '"files": 6' <<<"$out" ||
	fail "cp in: counts $out"
[ "$("$HB" exec a -- cat /tree-in/a.txt)" = hello ] || fail "cp in: a.txt"
[ "$("$HB" exec a -- /tree-in/sub/run.sh)" = run ] || fail "cp in: the script lost its mode"
[ "$("$HB" exec a -- readlink /tree-in/dangling)" = /no/such/target ] || fail "cp in: dangling symlink"
[ "$("$HB" exec a -- stat -c '%a %u' /tree-in/ro /tree-in/sub /tree-in/link)" = "$(printf '555 0\n750 0\n777 0')" ] ||
	fail "cp in: modes/owners $("$HB" exec a -- stat -c '%a %u %n' /tree-in/ro /tree-in/sub /tree-in/link)"
"$HB" exec a -- test -e /tree-in/fifo && fail "cp in: a fifo was copied"
[ "$("$HB" exec a -- cat /tree-in/caf$'\xe9')" = latin1 ] || fail "cp in: a name that is not UTF-8"
[ "$(api 'http://x/v1/sandboxes/a/files?path=/tree-in&list=1')" = 200 ] &&
	grep -q '"name_hex": *"636166e9"' "$T/api.out" &&
	grep -q '"target_hex": *"636166e9"' "$T/api.out" ||
	fail "list: no exact bytes of a name that is not UTF-8: $(cat "$T/api.out")"
[ "$(api 'http://x/v1/sandboxes/a/files?path=/tree-in/caf%E9')" = 200 ] &&
	[ "$(cat "$T/api.out")" = latin1 ] || fail "GET of a name that is not UTF-8 by its bytes"
# into an existing directory: under its own name
"$HB" cp "$T/ct/src" a:/tree-in >/dev/null 2>&1 || fail "cp into an existing directory"
[ "$("$HB" exec a -- cat /tree-in/src/sub/run.sh | tail -n 1)" = "echo run" ] ||
	fail "cp into an existing directory: not under /tree-in/src"
# out again: the same tree (the fifo aside)
rm "$T/ct/src/fifo"
"$HB" cp a:/tree-in "$T/ct/out" 2>"$T/err" || fail "cp of a directory out: $(cat "$T/err")"
rm -rf "$T/ct/out/src"
[ "$(tree "$T/ct/src")" = "$(tree "$T/ct/out")" ] ||
	fail "cp out differs: $(diff <(tree "$T/ct/src") <(tree "$T/ct/out") | head -5)"
cmp -s "$T/ct/src/sub/deep/blob" "$T/ct/out/sub/deep/blob" || fail "cp out: blob differs"
# a symlink in the sandbox that points outside is recreated, never followed
"$HB" exec a -- sh -c 'mkdir -p /trap && ln -sf / /trap/root && ln -sf /etc/passwd /trap/pw' || fail "trap"
"$HB" cp a:/trap "$T/ct/trap" 2>"$T/err" || fail "cp out of symlinks: $(cat "$T/err")"
[ -L "$T/ct/trap/root" ] && [ "$(readlink "$T/ct/trap/root")" = / ] && [ -L "$T/ct/trap/pw" ] ||
	fail "cp out: symlinks were not recreated as symlinks"
# the sandbox decides how deep a tree goes: 600 nested directories come out
# whole (the CLI, with 20 KB of buffers a level on its stack, died of SIGSEGV)
"$HB" exec a -- sh -c 'cd / && i=0; while [ $i -lt 600 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done' ||
	fail "making 600 nested directories"
"$HB" cp a:/d "$T/ct/deep" 2>"$T/err"; rc=$?
[ "$rc" = 0 ] || fail "cp out of 600 nested directories: exit $rc, stderr '$(cat "$T/err")'"
[ "$(find "$T/ct/deep" -type d | wc -l)" = 600 ] || fail "cp out of 600 nested directories: not all came"
rm -rf "$T/ct/deep"
# a local symlink where a file of the sandbox lands is replaced, not written through
mkdir -p "$T/ct/victim" && ln -s "$T/ct/target" "$T/ct/victim/a.txt"
"$HB" cp a:/tree-in/a.txt "$T/ct/victim/" 2>/dev/null
[ -e "$T/ct/target" ] && fail "cp out wrote through a local symlink"
"$HB" cp "$T/ct/src" a:/no/such/dir/ 2>"$T/err" && fail "cp into a missing directory succeeded"
grep -q "no such directory\|No such file" "$T/err" || fail "cp into a missing directory: $(cat "$T/err")"
[ "$(api -X PUT 'http://x/v1/sandboxes/a/files?path=/tree-in/..&type=dir')" = 400 ] || fail "mkdir of .."
[ "$(api -X PUT 'http://x/v1/sandboxes/a/files?path=/x&type=pipe')" = 400 ] || fail "unknown type"
[ "$(api -X PUT 'http://x/v1/sandboxes/a/files?path=/tree-in/a.txt&type=dir')" = 409 ] ||
	fail "mkdir over a file: $(cat "$T/api.out")"
[ "$(api 'http://x/v1/sandboxes/a/files?path=/tree-in/a.txt&list=1')" -ge 400 ] || fail "list of a file"
chmod 755 "$T/ct/src/ro" "$T/ct/out/ro"
# files larger than one request go in pieces, from a file and from stdin
head -c 70000000 /dev/urandom > "$T/ct/big"
"$HB" cp "$T/ct/big" a:/tree-in/big || fail "cp of a 70 MB file in"
[ "$("$HB" exec a -- md5sum /tree-in/big | cut -d' ' -f1)" = "$(md5sum < "$T/ct/big" | cut -d' ' -f1)" ] ||
	fail "cp of a 70 MB file in: content differs"
"$HB" exec a -- sh -c 'head -c 1000 /tree-in/big > /tree-in/small' || fail "shrink"
cat "$T/ct/big" | "$HB" cp - a:/tree-in/small || fail "cp of 70 MB from stdin over a smaller file"
"$HB" cp a:/tree-in/small "$T/ct/big.out" || fail "cp of 70 MB out"
cmp -s "$T/ct/big" "$T/ct/big.out" || fail "70 MB round trip through stdin and out differs"
rm -f "$T/ct/big.out"
# a large output stream (many chunks, split across reads) arrives byte for
# byte, stdout and stderr each whole
"$HB" exec a -- sh -c 'cat /tree-in/small; cat /tree-in/small >&2' >"$T/ct/out1" 2>"$T/ct/err1" ||
	fail "exec with 70 MB of output"
cmp -s "$T/ct/big" "$T/ct/out1" && cmp -s "$T/ct/big" "$T/ct/err1" ||
	fail "exec: 70 MB of stdout/stderr differ ($(stat -c %s "$T/ct/out1" "$T/ct/err1" | tr '\n' ' '))"
rm -f "$T/ct/out1" "$T/ct/err1" "$T/ct/big"
"$HB" exec a -- rm /tree-in/big /tree-in/small
echo "from stdin" | "$HB" cp - a:/tree-in/piped || fail "cp from stdin"
[ "$("$HB" cp a:/tree-in/piped -)" = "from stdin" ] || fail "cp to stdout"
"$HB" cp a:/tree-in - >/dev/null 2>"$T/err" && fail "cp of a directory to stdout succeeded"
grep -q "only a file goes to stdout" "$T/err" || fail "cp of a directory to stdout: $(cat "$T/err")"

step "persistence across sleep/wake; exec wakes a sleeping sandbox"
"$HB" exec a -- sh -c 'mkdir -p /work && echo persistent > /work/file && rm /etc/motd' || fail "write"
out=$("$HB" --json sleep a) || fail "sleep"
grep -q '"sleep_ms"' <<<"$out" || fail "sleep --json lacks sleep_ms: $out"
[ "$(state_of a)" = sleeping ] || fail "a is not sleeping"
out=$("$HB" --json wake a) || fail "wake"
grep -q '"wake_ms"' <<<"$out" || fail "wake --json lacks wake_ms: $out"
[ "$("$HB" exec a -- cat /work/file)" = persistent ] || fail "file lost across sleep/wake"
"$HB" exec a -- test -e /etc/motd && fail "deleted file came back"
"$HB" sleep a >/dev/null
# the repository's CLI will not take a sandbox's disk or an image away
"$HB" snapshot rm sb.a 2>"$T/err" && fail "snapshot rm removed a sleeping sandbox's disk"
grep -q "is sandbox a's disk ('hiberbox rm a' removes the sandbox" "$T/err" ||
	fail "snapshot rm of a sandbox's disk: $(cat "$T/err")"
"$HB" snapshot rm image.base 2>"$T/err" && fail "snapshot rm removed an image"
grep -q "is image base ('hiberbox image rm base'" "$T/err" || fail "snapshot rm of an image: $(cat "$T/err")"
out=$("$HB" exec a -- cat /work/file) || fail "exec on a sleeping sandbox"
[ "$out" = persistent ] || fail "exec after sleep: '$out'"
[ "$(state_of a)" = running ] || fail "exec did not wake a"
"$HB" sleep a >/dev/null
out=$("$HB" exec -t a -- cat /work/file | tr -d '\r') || fail "exec -t on a sleeping sandbox"
[ "$out" = persistent ] || fail "exec -t after sleep: '$out'"
# a command the sleep kills says so (137 alone reads as its own crash)
"$HB" exec a -- sh -c 'echo started; exec sleep 60' >"$T/out" 2>"$T/err" &
killed=$!
for _ in $(seq 600); do [ -s "$T/out" ] && break; sleep 0.1; done
"$HB" sleep a >/dev/null || fail "sleep with a command running"
wait $killed; rc=$?
[ "$rc" = 137 ] || fail "command killed by sleep: exit $rc"
[ "$(cat "$T/err")" = "hiberbox: a: killed: the sandbox was put to sleep (its disk is kept)" ] ||
	fail "command killed by sleep: stderr '$(cat "$T/err")'"
curl -s --unix-socket "$S" -X POST --output "$T/frames" \
	'http://x/v1/sandboxes/a/exec?arg=sh&arg=-c&arg=kill%20-9%20%24%24'
grep -aq '"killed_by":null' "$T/frames" && grep -aq '"signal":9' "$T/frames" ||
	fail "exit frame of a command killed from inside: $(tr -d '\0-\10' <"$T/frames")"

step "fork isolation; two sandboxes see neither files nor processes of each other"
"$HB" fork a b >/dev/null || fail "fork"
[ "$("$HB" exec b -- cat /work/file)" = persistent ] || fail "fork lacks the parent's file"
"$HB" exec b -- sh -c 'echo fork > /work/file; echo only > /only-b' || fail "fork write"
[ "$("$HB" exec a -- cat /work/file)" = persistent ] || fail "fork's write reached the parent"
"$HB" exec a -- test -e /only-b && fail "fork's new file visible in the parent"
"$HB" sleep a >/dev/null; "$HB" sleep b >/dev/null
[ "$("$HB" exec a -- cat /work/file)" = persistent ] || fail "after sleeping both: parent changed"
[ "$("$HB" exec b -- cat /work/file)" = fork ] || fail "after sleeping both: fork lost its write"
"$HB" exec a -- sh -c 'echo parent-later > /later' || fail "parent write"
"$HB" exec b -- test -e /later && fail "parent's later write visible in the fork"
bgpid=$("$HB" exec -d a -- sleep 300)
for _ in $(seq 600); do "$HB" exec a -- ps | grep -q "sleep 300" && break; sleep 0.1; done
"$HB" exec a -- ps | grep -q "sleep 300" || fail "a does not see its own process"
"$HB" exec b -- ps | grep -q "sleep 300" && fail "b sees a's process"
n=$("$HB" exec b -- sh -c 'ls /proc | grep -c "^[0-9]"')
[ "$n" -lt 6 ] || fail "b sees $n processes"

step "daemon kill -9: running sandboxes are re-adopted"
"$HB" exec a -- sh -c 'echo unsaved > /unsaved' || fail "write before crash"
init_before=$("$HB" --json inspect a | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
dp=$(daemon_pid)
kill -9 "$dp"
wait_gone "$dp"
[ "$("$HB" exec a -- cat /unsaved)" = unsaved ] || fail "write lost over a daemon crash"
init_after=$("$HB" --json inspect a | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
[ "$init_before" = "$init_after" ] || fail "a was not re-adopted (init $init_before -> $init_after)"
"$HB" exec a -- ps | grep -q "sleep 300" || fail "a's detached process did not survive the crash"

step "a restarted daemon still enforces detached commands' --timeout and log cap"
# The daemon that started them dies; the next one finds them in the
# registry (pid and start time, deadline, log) and takes them over.
tpid=$("$HB" exec -d --timeout 4 a -- sleep 60) || fail "exec -d --timeout"
lpid=$("$HB" exec -d a -- sh -c 'sleep 2; head -c 200000000 /dev/zero; echo; echo after-restart; sleep 3') ||
	fail "exec -d of a log writer"
log=$HIBERBOX_HOME/sandboxes/a/logs/$lpid.log
t0=$(date +%s)
dp=$(daemon_pid)
kill -9 "$dp"
wait_gone "$dp"
"$HB" --json inspect a > "$T/inspect.out" || fail "inspect a after the daemon died"
for p in "$tpid" "$lpid"; do
	python3 -c 'import json, sys; sys.exit(int(sys.argv[2]) not in json.load(open(sys.argv[1]))["detached_pids"])' \
		"$T/inspect.out" "$p" || fail "detached pid $p is not listed after the restart: $(grep -A3 detached_pids "$T/inspect.out")"
done
for _ in $(seq 300); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done # (sleep 60)
kill -0 "$tpid" 2>/dev/null && fail "a detached command outlived its --timeout over a daemon restart"
[ $(( $(date +%s) - t0 )) -ge 3 ] || fail "the --timeout of a re-adopted command ran out early"
for _ in $(seq 240); do tail -c 100 "$log" 2>/dev/null | grep -q after-restart && break; sleep 0.25; done
log_capped "$log"
size=$(stat -c %s "$log")
[ "$size" -le $((64 << 20)) ] || fail "the log of a re-adopted detached command grew to $size bytes"
[ "$("$HB" logs a "$lpid" | tail -n 1)" = after-restart ] || fail "the newest output of a re-adopted command's log is gone"
rows() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM detached WHERE pid=?", (int(sys.argv[2]),)).fetchone()[0])' "$HIBERBOX_HOME/sandboxes.db" "$1"; }
# the rows go at the daemon's first tick after the commands end
for _ in $(seq 600); do [ "$(rows "$lpid")" = 0 ] && [ "$(rows "$tpid")" = 0 ] && break; sleep 0.1; done
[ "$(rows "$lpid")" = 0 ] && [ "$(rows "$tpid")" = 0 ] || fail "the registry still lists ended detached commands"
[ "$(rows "$bgpid")" = 1 ] || fail "the registry does not list a's running detached command"
rm -f "$log"

step "an init killed from outside: the disk is kept, the next exec starts it again"
"$HB" create k --image base >/dev/null || fail "create k"
"$HB" exec k -- sh -c 'echo before-init-kill > /ik' || fail "write before init kill"
kinit=$("$HB" --json inspect k | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
kill -9 "$kinit"
# at once, before the idle tick sees init gone: the exec's own wake commits
# k (never asleep yet) and must then mount that commit, not k's image
[ "$("$HB" exec k -- cat /ik)" = before-init-kill ] || fail "write lost when init was killed"
[ "$(state_of k)" = running ] || fail "k not running after exec"
# the same, made certain: init dies while an exec, having found it running,
# has yet to join it (the next daemon re-adopts k and holds every exec
# there); the exec must wake k again, not fail 'join sandbox namespaces:
# No such process' (seen above, on a loaded host, before)
kinit=$("$HB" --json inspect k | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
dp=$(daemon_pid)
kill -9 "$dp"
wait_gone "$dp"
HIBERBOX_TEST_EXEC_PAUSE_MS=1500 "$HB" ls >/dev/null || fail "ls starting a daemon with exec pauses"
dp=$(daemon_pid)
[ -n "$dp" ] || fail "no pid of the daemon with exec pauses: $("$HB" daemon status 2>&1)"
"$HB" exec k -- cat /ik >"$T/ik.out" 2>"$T/ik.err" &
ep=$!
for _ in $(seq 600); do grep -q 'test pause: exec k' "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
kill -9 "$kinit"
wait "$ep" && [ "$(cat "$T/ik.out")" = before-init-kill ] ||
	fail "an exec whose sandbox's init died before it joined: '$(cat "$T/ik.out")' '$(cat "$T/ik.err")'"
kill -9 "$dp"
wait_gone "$dp"
# init and daemon killed together: the restarted daemon removes the dead
# init's cgroups (the next wake makes new ones, so nothing else would)
kinit=$("$HB" --json inspect k | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
kcg=$(sed -n 's/^[0-9]*:pids:\(.*\)/\/sys\/fs\/cgroup\/pids\1/p' "/proc/$kinit/cgroup")
[ -n "$kcg" ] || kcg=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$kinit/cgroup")
[ -d "$kcg" ] || fail "k's cgroup $kcg not found"
dp=$(daemon_pid)
kill -9 "$dp" "$kinit"
wait_gone "$dp" "$kinit"
[ "$("$HB" exec k -- cat /ik)" = before-init-kill ] || fail "write lost when init and daemon were killed"
[ ! -d "$kcg" ] || fail "the cgroup of an init that died with the daemon was left: $kcg"
"$HB" rm k >/dev/null || fail "rm k"

step "daemon and fs process both killed: the upper is committed, the sandbox sleeps"
"$HB" exec b -- sh -c 'echo crash > /crash' || fail "write b"
fspid=$(fs_pid_of b)
[ -n "$fspid" ] || fail "no fs process for b"
dp=$(daemon_pid)
kill -9 "$dp" "$fspid"
wait_gone "$dp" "$fspid"
[ "$("$HB" exec b -- cat /crash)" = crash ] || fail "write lost when daemon and fs died"
[ "$("$HB" exec b -- cat /work/file)" = fork ] || fail "b lost older data"

step "an fs process killed under a live daemon: the upper is committed, the sandbox wakes"
"$HB" create fsd --image base >/dev/null || fail "create fsd"
"$HB" exec fsd -- sh -c 'echo before-fs-death > /fsd' || fail "write fsd"
"$HB" exec fsd -- sleep 60 2>"$T/err" &
ep=$!
wait_for_procs fsd 1 || fail "the sleep in fsd did not start"
fspid=$(fs_pid_of fsd)
kill -9 "$fspid"
[ "$("$HB" exec fsd -- cat /fsd)" = before-fs-death ] || fail "write lost when the fs process died"
wait $ep; rc=$?
[ "$rc" = 137 ] && [ "$(cat "$T/err")" = "hiberbox: fsd: killed: the sandbox's filesystem process died; it sleeps (its disk is kept)" ] ||
	fail "a command of a sandbox whose fs died: exit $rc, stderr '$(cat "$T/err")'"
[ "$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$fspid/status" 2>/dev/null)" != Z ] ||
	fail "the dead fs process $fspid was left a zombie"
# and a sleep (not an exec) is what finds it dead
kill -9 "$(fs_pid_of fsd)"
"$HB" sleep fsd >/dev/null || fail "sleep of a sandbox whose fs process died"
[ "$("$HB" exec fsd -- cat /fsd)" = before-fs-death ] || fail "write lost after a sleep found the fs dead"
# or a fork, which commits its parent first
"$HB" exec fsd -- sh -c 'echo for-the-fork > /fsd2' || fail "write fsd2"
kill -9 "$(fs_pid_of fsd)"
"$HB" fork fsd fsd-child >/dev/null || fail "fork of a sandbox whose fs process died"
[ "$("$HB" exec fsd-child -- cat /fsd2)" = for-the-fork ] || fail "the fork lacks its parent's last write"
"$HB" rm fsd-child >/dev/null || fail "rm fsd-child"
"$HB" rm fsd >/dev/null || fail "rm fsd"

step "an upper no commit can take is kept, mounted again, committed later"
# The repository refuses new snapshots (immutable snapshots/, root too) while
# the fs process is dead: the settle's commit fails, and the writes must stay
# in the upper rather than be dropped with it.
"$HB" create kept --image base >/dev/null || fail "create kept"
"$HB" exec kept -- sh -c 'echo uncommitted > /kept' || fail "write kept"
SNAPDIR=$HIBERBOX_HOME/repo/snapshots
chattr +i "$SNAPDIR" || fail "chattr +i $SNAPDIR"
kill -9 "$(fs_pid_of kept)"
out=$("$HB" exec kept -- cat /kept 2>"$T/err")
[ "$out" = uncommitted ] || fail "a settle that could not commit lost the writes: '$out' ($(cat "$T/err"))"
"$HB" sleep kept >/dev/null 2>"$T/err" && fail "sleep of kept succeeded with an immutable snapshots/"
"$HB" exec kept -- cat /kept >/dev/null || fail "kept does not run after its sleep failed"
# the daemon and the fs process both die: recovery cannot commit either
dp=$(daemon_pid)
kill -9 "$dp" "$(fs_pid_of kept)"
out=$("$HB" exec kept -- cat /kept 2>"$T/err")
[ "$out" = uncommitted ] || fail "recovery that could not commit lost the writes: '$out' ($(cat "$T/err"))"
kill -9 "$(fs_pid_of kept)"
"$HB" sleep kept >/dev/null 2>"$T/err" && fail "sleep of kept (kept upper) succeeded with an immutable snapshots/"
grep -q "kept uncommitted" "$T/err" || fail "sleep with a kept upper: '$(cat "$T/err")'"
"$HB" fork kept kept-child >/dev/null 2>&1 && fail "a fork of kept succeeded without its parent's writes committed"
chattr -i "$SNAPDIR"
"$HB" sleep kept >/dev/null || fail "sleep of kept once the repository takes snapshots"
[ ! -d "$HIBERBOX_HOME/sandboxes/kept/upper" ] || fail "the kept upper stayed after its commit"
[ "$("$HB" exec kept -- cat /kept)" = uncommitted ] || fail "the kept writes are not in kept's snapshot"
"$HB" rm kept >/dev/null || fail "rm kept"

step "a daemon killed in the middle of a sleep: the commit is kept"
# Started with a pause after the sleep dropped b's upper, before it records
# b as asleep: the commit must already be b's latest by then.
"$HB" daemon stop >/dev/null || fail "daemon stop before the mid-sleep kill"
HIBERBOX_TEST_SLEEP_PAUSE_MS=5000 "$HB" exec b -- sh -c 'echo mid-sleep > /midsleep' ||
	fail "write before the mid-sleep kill"
"$HB" sleep b >/dev/null 2>&1 &
sp=$!
for _ in $(seq 600); do [ -d "$HIBERBOX_HOME/sandboxes/b/upper" ] || break; sleep 0.1; done
[ ! -d "$HIBERBOX_HOME/sandboxes/b/upper" ] || fail "the sleep of b did not drop its upper"
kill -9 "$(daemon_pid)"
wait $sp
[ "$("$HB" exec b -- cat /midsleep)" = mid-sleep ] || fail "a write was lost when the daemon died during a sleep"

step "a daemon killed in the middle of an rm: the next one finishes it"
# Paused once gone is stopped and its snapshots are removed, before its tag,
# its directory and its row go: the restarted daemon must finish the
# removal (it listed gone with its snapshots missing), and leave b alone.
"$HB" daemon stop >/dev/null || fail "daemon stop before the mid-rm kill"
HIBERBOX_TEST_RM_PAUSE_MS=10000 "$HB" create gone --image base >/dev/null || fail "create gone"
"$HB" exec gone -- sh -c 'echo one > /one' || fail "write gone"
"$HB" sleep gone >/dev/null || fail "sleep gone"
gsnap=$("$HB" --json inspect gone | sed -n 's/.*"latest": "\([0-9a-f]*\)".*/\1/p')
"$HB" snapshot show "$gsnap" >/dev/null || fail "gone's snapshot $gsnap is not in the repository"
"$HB" exec gone -- sh -c 'echo two > /two' || fail "write gone after its wake"
gpid=$("$HB" exec -d gone -- sleep 300) || fail "exec -d in gone"
ginit=$("$HB" --json inspect gone | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
gfs=$(fs_pid_of gone)
gcg=$(sed -n 's/^[0-9]*:pids:\(.*\)/\/sys\/fs\/cgroup\/pids\1/p' "/proc/$ginit/cgroup")
[ -n "$ginit" ] && [ -n "$gfs" ] && [ -d "$gcg" ] || fail "gone: init '$ginit', fs '$gfs', cgroup '$gcg'"
"$HB" exec b -- sh -c 'echo untouched > /untouched' || fail "write b"
binit=$("$HB" --json inspect b | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
"$HB" rm gone >/dev/null 2>&1 &
rp=$!
for _ in $(seq 600); do grep -q "test pause: rm gone" "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
grep -q "test pause: rm gone" "$HIBERBOX_HOME/hiberboxd.log" || fail "the rm of gone did not reach its pause"
kill -9 "$(daemon_pid)"
wait $rp
"$HB" --json ls > "$T/ls.out" || fail "ls after the mid-rm kill"
grep -q '"name": "gone"' "$T/ls.out" && fail "gone is still listed after a restart finished its rm: $(grep -A3 '"name": "gone"' "$T/ls.out")"
python3 -c 'import sqlite3, sys; sys.exit(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM sandboxes WHERE name=?", ("gone",)).fetchone()[0])' \
	"$HIBERBOX_HOME/sandboxes.db" || fail "gone's registry row stayed"
[ ! -e "$HIBERBOX_HOME/sandboxes/gone" ] || fail "gone's state directory stayed: $(ls "$HIBERBOX_HOME/sandboxes/gone")"
grep -q "/sandboxes/gone/" /proc/mounts && fail "gone's root is still mounted"
for p in "$ginit" "$gfs" "$gpid"; do
	[ -d "/proc/$p" ] && [ "$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$p/status")" != Z ] &&
		fail "a process of gone ($p) outlived its removal"
done
[ ! -d "$gcg" ] || fail "gone's cgroup $gcg stayed"
"$HB" snapshot show "$gsnap" >/dev/null 2>&1 && fail "gone's snapshot $gsnap stayed"
"$HB" snapshot show sb.gone >/dev/null 2>&1 && fail "gone's tag stayed"
[ "$("$HB" --json inspect b | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')" = "$binit" ] ||
	fail "b was not re-adopted beside the finished rm"
[ "$("$HB" exec b -- cat /untouched)" = untouched ] || fail "b lost a write beside the finished rm"
[ "$("$HB" exec b -- cat /midsleep)" = mid-sleep ] || fail "b lost older data beside the finished rm"
"$HB" create gone --image base >/dev/null || fail "the name of a removed sandbox cannot be taken again"
"$HB" exec gone -- test -e /one && fail "a new sandbox named gone has the old one's files"
"$HB" rm gone >/dev/null || fail "rm the new gone"

step "a daemon killed in the middle of a wake: the init it started is not left behind"
# Paused once b's new init runs, before b is recorded running: the next
# daemon must kill that init and remove its cgroups (they stayed for ever,
# and the next wake failed: "a sandbox of that name is running").
binit=$("$HB" --json inspect b | sed -n 's/.*"init_pid": \([0-9]*\).*/\1/p')
cgprefix=$(sed -n 's/^[0-9]*:[^:]*:.*\/\(hbd-[0-9a-f]*-[0-9]*\)-[0-9]*$/\1/p' "/proc/$binit/cgroup" | head -1)
[ -n "$cgprefix" ] || fail "b's cgroup name not found in /proc/$binit/cgroup"
"$HB" daemon stop >/dev/null || fail "daemon stop before the mid-wake kill"
HIBERBOX_TEST_WAKE_PAUSE_MS=10000 "$HB" ls >/dev/null || fail "ls starting the daemon"
"$HB" wake b >/dev/null 2>&1 &
wp=$!
for _ in $(seq 600); do grep -q "test pause: wake b" "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
grep -q "test pause: wake b" "$HIBERBOX_HOME/hiberboxd.log" || fail "the wake of b did not reach its pause"
wcgs=$(find /sys/fs/cgroup -maxdepth 5 -type d -name "$cgprefix-*")
winit=$(cat $(printf '%s/cgroup.procs\n' $wcgs) 2>/dev/null | sort -u | head -1)
[ -n "$wcgs" ] && [ -n "$winit" ] || fail "no cgroup $cgprefix-* with b's new init in it"
kill -9 "$(daemon_pid)"
wait $wp
"$HB" ls >/dev/null || fail "ls after the mid-wake kill"
for c in $wcgs; do [ ! -d "$c" ] || fail "the cgroup $c of an init whose wake was cut short stayed"; done
[ -d "/proc/$winit" ] && [ "$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$winit/status")" != Z ] &&
	fail "the init $winit of a wake cut short was left running"
out=$("$HB" exec b -- cat /midsleep 2>"$T/err")
[ "$out" = mid-sleep ] || fail "exec b after a wake cut short: '$out' ($(cat "$T/err"))"

step "idle timeout"
"$HB" create idle --image base --idle-timeout 2s >/dev/null || fail "create idle"
# ls shows a timeout as --idle-timeout takes it, and none as "off" (not "0s")
"$HB" ls > "$T/ls.out" || fail "ls"
[ "$(awk '$1 == "idle" { print $NF }' "$T/ls.out")" = 2s ] || fail "ls idle timeout: $(cat "$T/ls.out")"
[ "$(awk '$1 == "b" { print $NF }' "$T/ls.out")" = off ] || fail "ls without idle timeout: $(cat "$T/ls.out")"
"$HB" exec idle -- true
for i in $(seq 1 240); do
	[ "$(state_of idle)" = sleeping ] && break
	sleep 0.25
done
[ "$(state_of idle)" = sleeping ] || fail "idle sandbox did not sleep"
"$HB" exec -d idle -- sleep 10 >/dev/null
sleep 3
[ "$(state_of idle)" = running ] || fail "a sandbox with a live process went to sleep"

step "a download holds its sandbox (no idle sleep, sleep and rm get 409, the file whole); a root in use on the host fails the sleep"
# The body of a download streams after the sandbox's lock is let go: a
# sleep (or the idle sleep) meanwhile could not unmount the root, logged it
# and still reported the sleep done, the mount and its fs process left up,
# and the download came out short.
"$HB" create xfer --image base --idle-timeout 1s >/dev/null || fail "create xfer"
"$HB" exec xfer -- dd if=/dev/urandom of=/big bs=1M count=50 2>/dev/null || fail "write xfer:/big"
sum=$("$HB" exec xfer -- md5sum /big | cut -d' ' -f1)
curl -s --unix-socket "$S" --limit-rate 10M -o "$T/big.out" -w '%{http_code}' \
	'http://x/v1/sandboxes/xfer/files?path=/big' >"$T/dl.code" &
dl=$!
sleep 2 # past the idle timeout, the download about halfway
[ "$(state_of xfer)" = running ] || fail "xfer went idle to sleep during a download"
code=$(api -X POST http://x/v1/sandboxes/xfer/sleep)
[ "$code" = 409 ] && grep -q 'a file download from it is in progress (/big)' "$T/api.out" ||
	fail "sleep during a download: HTTP $code ($(cat "$T/api.out"))"
code=$(api -X DELETE http://x/v1/sandboxes/xfer)
[ "$code" = 409 ] && grep -q 'rm xfer: a file download from it is in progress (/big); nothing was removed' "$T/api.out" ||
	fail "rm during a download: HTTP $code ($(cat "$T/api.out"))"
[ "$(state_of xfer)" = running ] || fail "xfer not running after a refused rm"
wait $dl || fail "the download failed (curl exit $?)"
[ "$(cat "$T/dl.code")" = 200 ] && [ "$(md5sum <"$T/big.out" | cut -d' ' -f1)" = "$sum" ] ||
	fail "download beside a sleep: HTTP $(cat "$T/dl.code"), $(stat -c %s "$T/big.out") bytes of 52428800, or not the file"
rm -f "$T/big.out"
for _ in $(seq 240); do [ "$(state_of xfer)" = sleeping ] && break; sleep 0.25; done
[ "$(state_of xfer)" = sleeping ] || fail "xfer did not go idle to sleep once its download ended"
grep -q "$HIBERBOX_HOME/sandboxes/xfer/root" /proc/mounts && fail "xfer asleep with its root mounted"
"$HB" rm xfer >/dev/null || fail "rm xfer"
# Something on the host in the root: the sleep fails and the sandbox runs on.
"$HB" create held --image base >/dev/null || fail "create held"
"$HB" exec held -- sh -c 'echo kept > /held' || fail "write held:/held"
(cd "$HIBERBOX_HOME/sandboxes/held/root" && exec sleep 30) &
holder=$!
for _ in $(seq 600); do [ "$(readlink "/proc/$holder/cwd")" = "$HIBERBOX_HOME/sandboxes/held/root" ] && break; sleep 0.1; done
code=$(api -X POST http://x/v1/sandboxes/held/sleep)
[ "$code" = 409 ] && grep -q 'sleep held: it keeps running: unmounting .*: in use on the host' "$T/api.out" ||
	fail "sleep with the root in use on the host: HTTP $code ($(cat "$T/api.out"))"
[ "$(state_of held)" = running ] || fail "held not running after its sleep failed"
[ "$("$HB" exec held -- cat /held)" = kept ] || fail "held unusable after its sleep failed"
kill "$holder"; wait "$holder" 2>/dev/null
"$HB" sleep held >/dev/null || fail "sleep held once the host let go of its root"
grep -q "$HIBERBOX_HOME/sandboxes/held/root" /proc/mounts && fail "held asleep with its root mounted"
[ "$("$HB" exec held -- cat /held)" = kept ] || fail "held lost /held over the failed sleep"
# A detached command is the daemon's child: a sleep left the init waiting for
# it to be reaped (5 s, then left behind with its cgroups, which a later
# sandbox of the same id range and wake count collided with at its wake).
"$HB" exec -d held -- sleep 60 >/dev/null || fail "exec -d held"
code=$(api -X POST http://x/v1/sandboxes/held/sleep)
ms=$(sed -n 's/.*"sleep_ms":\([0-9]*\).*/\1/p' "$T/api.out")
[ "$code" = 200 ] && [ "${ms:-99999}" -lt 4000 ] ||
	fail "sleep with a detached command: HTTP $code ($(cat "$T/api.out"))"
grep -q "held: init [0-9]* did not end" "$HIBERBOX_HOME/hiberboxd.log" &&
	fail "held's init was left behind by a sleep with a detached command"
"$HB" rm held >/dev/null || fail "rm held"

step "rm frees the sandbox's snapshots for gc"
"$HB" create big --image base >/dev/null || fail "create big"
"$HB" exec big -- sh -c 'head -c 4000000 /dev/urandom > /big' || fail "write big"
"$HB" sleep big >/dev/null
# an older snapshot mounted by hand (to look inside) outlives the prune of
# later sleeps while the mount lives: it is pinned
old=$("$HB" --json inspect big | sed -n 's/.*"latest": "\([0-9a-f]*\)".*/\1/p')
mkdir -p "$T/look"
"$HB" mount "$old" "$T/look" --upper "$T/look-upper" >/dev/null || fail "mount of big's snapshot"
"$HB" exec big -- sh -c 'echo y > /y'; "$HB" sleep big >/dev/null
"$HB" snapshot show "$old" >/dev/null 2>&1 || fail "the prune removed a mounted snapshot"
cmp -s "$T/look/big" <("$HB" exec big -- cat /big) || fail "the mounted old snapshot reads wrong"
"$HB" umount "$T/look" || fail "umount of big's snapshot"
"$HB" exec big -- sh -c 'echo x > /x'; "$HB" sleep big >/dev/null
"$HB" snapshot show "$old" >/dev/null 2>&1 && fail "an unmounted old snapshot was not pruned"
before=$(repo_bytes)
"$HB" rm big >/dev/null || fail "rm"
"$HB" inspect big 2>/dev/null && fail "big still listed"
[ -e "$HIBERBOX_HOME/sandboxes/big" ] && fail "state directory of big left behind"
"$HB" gc >/dev/null || fail "gc"
after=$(repo_bytes)
[ $(( before - after )) -gt 3000000 ] || fail "gc reclaimed only $(( before - after )) bytes"
"$HB" check >/dev/null || fail "repository check after rm + gc"
"$HB" image rm base 2>"$T/err" && fail "removed an image in use"
grep -q "used by sandbox" "$T/err" || fail "image rm in use: $(cat "$T/err")"

step "an image removed while a sandbox is created from it"
# The create is held after it read the image's tag: the removal must wait
# for the new sandbox's row and refuse (it removed the snapshot from under
# the sandbox, whose every wake then failed).
"$HB" image import "$T/img" racy >/dev/null || fail "import racy"
"$HB" daemon stop >/dev/null || fail "daemon stop before the create race"
HIBERBOX_TEST_CREATE_PAUSE_MS=3000 "$HB" ls >/dev/null || fail "ls starting the daemon"
"$HB" create racer --image racy >/dev/null 2>"$T/create.err" &
cp=$!
for _ in $(seq 600); do grep -q "test pause: create racer" "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
grep -q "test pause: create racer" "$HIBERBOX_HOME/hiberboxd.log" || fail "the create of racer did not reach its pause"
"$HB" image rm racy 2>"$T/err" && fail "removed an image while a sandbox was created from it"
grep -q "used by sandbox 'racer'" "$T/err" || fail "image rm during a create: $(cat "$T/err")"
wait $cp || fail "create racer: $(cat "$T/create.err")"
[ "$("$HB" exec racer -- cat /etc/motd)" = "image file" ] || fail "racer does not wake from its image"
"$HB" rm racer >/dev/null || fail "rm racer"
"$HB" image rm racy || fail "image rm racy once unused"
"$HB" daemon stop >/dev/null || fail "daemon stop after the create race"

step "20 sandboxes from one image cost about one image"
img_bytes=$(du -sb "$T/img" | cut -f1)
before=$(repo_bytes)
for i in $(seq 1 20); do
	"$HB" create "many$i" --image fromtar >/dev/null || fail "create many$i"
	"$HB" exec "many$i" -- sh -c "echo $i > /id" || fail "exec many$i"
	"$HB" sleep "many$i" >/dev/null || fail "sleep many$i"
done
after=$(repo_bytes)
grown=$(( after - before ))
echo "   20 sandboxes: repository grew $grown bytes (image $img_bytes bytes)"
[ "$grown" -lt $(( img_bytes / 2 )) ] || fail "20 sandboxes grew the repository by $grown bytes"
[ "$("$HB" exec many7 -- cat /id)" = 7 ] || fail "many7 lost its file"
local_bytes=$(du -sbx "$HIBERBOX_HOME/sandboxes" | cut -f1)
[ "$local_bytes" -lt 2000000 ] || fail "sleeping sandboxes hold $local_bytes local bytes"

step "gc and snapshot rm beside sandboxes that sleep and wake"
# 15 s, and at least 5 rounds each however slow the machine
end=$(( $(date +%s) + 15 ))
churners=()
for i in 1 2; do
	(
		n=0
		while [ "$n" -lt 5 ] || [ "$(date +%s)" -lt "$end" ]; do
			n=$((n + 1))
			"$HB" exec "many$i" -- sh -c "echo $n > /count; head -c $((n * 3000)) /dev/urandom > /blob; md5sum /blob > /blob.md5" ||
				{ echo "exec $n failed" >"$T/churn$i.err"; break; }
			[ $((n % 2)) = 0 ] && { "$HB" sleep "many$i" >/dev/null || { echo "sleep $n failed" >"$T/churn$i.err"; break; }; }
		done
		echo "$n" >"$T/churn$i"
	) &
	churners+=($!)
done
churning() { local p; for p in "${churners[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while [ "$(date +%s)" -lt "$end" ] || churning; do
	"$HB" gc >/dev/null 2>>"$T/churn-gc.err" || echo "gc failed" >>"$T/churn-gc.err"
	sleep 1
done
wait
for i in 1 2; do
	[ ! -s "$T/churn$i.err" ] || fail "many$i beside gc: $(cat "$T/churn$i.err")"
	"$HB" sleep "many$i" >/dev/null
	[ "$("$HB" exec "many$i" -- cat /count)" = "$(cat "$T/churn$i")" ] || fail "many$i lost its last write beside gc"
	"$HB" exec "many$i" -- md5sum -c /blob.md5 >/dev/null || fail "many$i's blob is damaged after gc"
done
echo "   $(cat "$T/churn1") and $(cat "$T/churn2") exec rounds (half with a sleep) beside gc"
[ "$(cat "$T/churn1")" -ge 5 ] || fail "only $(cat "$T/churn1") rounds"
[ ! -s "$T/churn-gc.err" ] || fail "gc beside sandboxes: $(head -3 "$T/churn-gc.err")"
"$HB" check --read-data >/dev/null || fail "check --read-data after gc beside sandboxes"

step "daemon stop: a request during the shutdown does not wake a sandbox again"
# Paused once the stopping daemon has put its sandboxes to sleep, before its
# server stops: an exec then woke a again, and the daemon exited with a's
# mount and fs process alive and a recorded running.
"$HB" daemon stop >/dev/null || fail "daemon stop before the shutdown pause"
HIBERBOX_TEST_STOP_PAUSE_MS=5000 "$HB" exec a -- true || fail "exec a starting the daemon"
"$HB" daemon stop >/dev/null 2>&1 &
sp=$!
for _ in $(seq 600); do grep -q "test pause: stop hiberboxd" "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
grep -q "test pause: stop hiberboxd" "$HIBERBOX_HOME/hiberboxd.log" || fail "the daemon's stop did not reach its pause"
code=$(api -X POST 'http://x/v1/sandboxes/a/exec?arg=true')
[ "$code" = 503 ] && grep -q "stopping" "$T/api.out" ||
	fail "an exec during the shutdown: HTTP $code ($(cat "$T/api.out"))"
wait $sp || fail "daemon stop with an exec during it"
n=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM sandboxes WHERE state=?", ("running",)).fetchone()[0])' "$HIBERBOX_HOME/sandboxes.db")
[ "$n" = 0 ] || fail "$n sandboxes recorded running after daemon stop"
grep -q "$HIBERBOX_HOME/sandboxes/" /proc/mounts && fail "a sandbox's root is still mounted after daemon stop: $(grep "$HIBERBOX_HOME/sandboxes/" /proc/mounts)"

step "daemon stop lets a file download end, refuses new ones, returns once all sleep; past its bound it cuts"
# The stop cut a download in progress (17 of 50 MB), and 'daemon stop'
# reported the daemon stopped when its socket went quiet, while the root
# was still mounted and the sandbox recorded running (a command right after
# found the old daemon still holding its lock).
"$HB" exec a -- dd if=/dev/urandom of=/big bs=1M count=30 2>/dev/null || fail "write a:/big"
sum=$("$HB" exec a -- md5sum /big | cut -d' ' -f1)
curl -s --unix-socket "$S" --limit-rate 5M -o "$T/big.out" -w '%{http_code}' \
	'http://x/v1/sandboxes/a/files?path=/big' >"$T/dl.code" &
dl=$!
sleep 0.5
"$HB" daemon stop >/dev/null 2>"$T/stop.err" &
sp=$!
for _ in $(seq 300); do grep -q "stopping: waiting up to 30 s for 1 file download (a:/big)" "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
grep -q "stopping: waiting up to 30 s for 1 file download (a:/big)" "$HIBERBOX_HOME/hiberboxd.log" ||
	fail "the stopping daemon does not say it waits for the download"
code=$(api 'http://x/v1/sandboxes/a/files?path=/etc/motd')
[ "$code" = 503 ] && grep -q "hiberboxd is stopping: no new download from a" "$T/api.out" ||
	fail "a new download during the stop: HTTP $code ($(cat "$T/api.out"))"
wait $dl || fail "the download during daemon stop failed (curl exit $?)"
[ "$(cat "$T/dl.code")" = 200 ] && [ "$(md5sum <"$T/big.out" | cut -d' ' -f1)" = "$sum" ] ||
	fail "download during daemon stop: HTTP $(cat "$T/dl.code"), $(stat -c %s "$T/big.out") bytes of 31457280, or not the file"
wait $sp || fail "daemon stop during a download: $(cat "$T/stop.err")"
# returned: everything asleep, nothing mounted, the daemon gone
grep -q "$HIBERBOX_HOME/sandboxes/" /proc/mounts && fail "a root is still mounted when daemon stop returns: $(grep "$HIBERBOX_HOME/sandboxes/" /proc/mounts)"
n=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM sandboxes WHERE state=?", ("running",)).fetchone()[0])' "$HIBERBOX_HOME/sandboxes.db")
[ "$n" = 0 ] || fail "$n sandboxes recorded running when daemon stop returns"
flock -n "$HIBERBOX_HOME/hiberboxd.lock" true || fail "the daemon still holds its lock when daemon stop returns"
rm -f "$T/big.out"
# A download past the bound (1 s here, 30 s by default) is cut, and its
# sandbox still sleeps with its disk whole.
HIBERBOX_TEST_STOP_DOWNLOAD_WAIT_MS=1000 "$HB" exec a -- true || fail "exec a starting the daemon"
curl -s --unix-socket "$S" --limit-rate 2M -o "$T/big.out" \
	'http://x/v1/sandboxes/a/files?path=/big' &
dl=$!
sleep 0.5
t0=$(date +%s)
"$HB" daemon stop >/dev/null || fail "daemon stop with a slow download"
# (25: the default bound is 30 s; the stop also puts a to sleep)
[ $(( $(date +%s) - t0 )) -lt 25 ] || fail "daemon stop took $(( $(date +%s) - t0 )) s past a 1 s bound"
wait $dl && fail "a download past the stop's bound came out whole ($(stat -c %s "$T/big.out") bytes)"
grep -q "stopping: 1 file download still in progress after 1 s (a:/big): cut" "$HIBERBOX_HOME/hiberboxd.log" ||
	fail "the daemon log does not say it cut the download"
grep -q "$HIBERBOX_HOME/sandboxes/" /proc/mounts && fail "a root is still mounted after a stop that cut a download"
rm -f "$T/big.out"
[ "$("$HB" exec a -- md5sum /big | cut -d' ' -f1)" = "$sum" ] || fail "a:/big changed over the stops"

step "daemon stop puts sandboxes to sleep; restart keeps everything"
"$HB" daemon stop >/dev/null || fail "daemon stop"
"$HB" daemon status >/dev/null && fail "daemon still answers after stop"
# the daemon a command starts keeps none of that command's descriptors (a
# caller's pipe held open by it would never see EOF)
exec {held}>"$T/held-by-the-cli"
"$HB" --json ls > "$T/ls.out" || fail "ls starting the daemon"
exec {held}>&-
grep -q '"state": "running"' "$T/ls.out" && fail "a sandbox still runs after daemon stop"
ls -l "/proc/$(daemon_pid)/fd" | grep -q held-by-the-cli && fail "the daemon kept a descriptor of the CLI that started it"
[ "$("$HB" exec a -- cat /unsaved)" = unsaved ] || fail "lost a's file over stop/start"
[ "$("$HB" exec b -- cat /work/file)" = fork ] || fail "lost b's file over stop/start"

step "corrupt registry: a clear error"
"$HB" daemon stop >/dev/null
cp "$HIBERBOX_HOME/sandboxes.db" "$T/good.db"
head -c 8192 /dev/urandom > "$HIBERBOX_HOME/sandboxes.db"
rm -f "$HIBERBOX_HOME/sandboxes.db-wal" "$HIBERBOX_HOME/sandboxes.db-shm"
"$HB" daemon run 2>"$T/err" && fail "the daemon ran on a corrupt registry"
grep -qi "corrupt\|not a database" "$T/err" || fail "corrupt registry: $(cat "$T/err")"
cp "$T/good.db" "$HIBERBOX_HOME/sandboxes.db"
"$HB" ls >/dev/null || fail "daemon with the registry restored"

step "a daemon not run as root: create says why it cannot"
# It starts and answers (a user's CLI starts one on demand) but cannot
# give a sandbox's directories to root; create said only 'mkdir DIR'.
NR=$T/nonroot
mkdir -p "$NR/home"
chown -R 65534:65534 "$NR"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env HIBERBOX_HOME="$NR/home" "$@"; }
as_nobody "$HB" image import "$T/img" base >/dev/null 2>"$T/err" ||
	fail "image import with a daemon run as nobody: $(cat "$T/err")"
as_nobody "$HB" create nr --image base >/dev/null 2>"$T/err" &&
	fail "create with a daemon run as nobody succeeded"
[ "$(wc -l <"$T/err")" = 1 ] &&
	grep -q "^hiberbox: securing .*: Operation not permitted (hiberboxd runs as uid 65534" "$T/err" ||
	fail "create with a daemon run as nobody: $(cat "$T/err")"
[ ! -e "$NR/home/sandboxes/nr" ] || fail "the refused create left $NR/home/sandboxes/nr"
as_nobody "$HB" daemon stop >/dev/null || fail "stopping the daemon run as nobody"
NR=

step "the daemon's log is free of sanitizer reports"
"$HB" daemon stop >/dev/null
if grep -q "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log"; then
	grep -A20 "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log" | head -60 >&2
	fail "sanitizer reports in the daemon's log"
fi

echo "daemon: ok ($(( $(date +%s) - START ))s)"
