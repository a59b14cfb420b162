#!/bin/bash
# What a sandbox uses, end to end with the real daemon: GET /sandboxes/NAME's
# "usage" and `hiberbox stats`.  A sandbox running a busy loop shows most of
# a CPU and a growing CPU time, one that only sleeps shows none; memory a
# process holds counts, the peak stays after it ends; the disk counts what
# is written and freed against --disk (null without it); tasks counts the
# processes; a sleeping sandbox has usage null and `stats` shows it with
# dashes; an unknown name is one line and exit 1, the others still shown.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires
command -v python3 >/dev/null || { echo "SKIP: no python3 to read the JSON"; exit 77; }

daemon_test_scratch stats
step() { echo "== $*"; }
# usage NAME KEY: the count, "None" when null
usage() {
	"$HB" --json inspect "$1" |
		python3 -c 'import json, sys; u = json.load(sys.stdin)["usage"]; print(u and u[sys.argv[1]])' "$2"
}

daemon_test_image base sh cat dd rm sleep true head
"$HB" create busy --image base --memory 256M --disk 64M >/dev/null || fail "create busy"
"$HB" create quiet --image base >/dev/null || fail "create quiet"

step "tasks: init alone, then with a detached process"
[ "$(usage quiet tasks)" = 1 ] || fail "quiet: tasks $(usage quiet tasks), expected 1 (init)"
"$HB" exec -d busy -- sh -c 'while :; do :; done' >/dev/null || fail "exec -d busy loop"
[ "$(usage busy tasks)" = 2 ] || fail "busy: tasks $(usage busy tasks), expected 2"

step "CPU: a busy loop's time grows, and stats shows its share"
c0=$(usage busy cpu_ns)
sleep 1
c1=$(usage busy cpu_ns)
[ "$c0" != None ] && [ "$c1" -gt "$c0" ] || fail "busy: cpu_ns $c0 then $c1"
"$HB" --json stats busy quiet >"$T/stats.json" || fail "stats --json"
python3 - "$T/stats.json" <<'EOF' || fail "stats --json: $(cat "$T/stats.json")"
import json, sys
rows = {r["name"]: r for r in json.load(open(sys.argv[1]))}
# a loop alone on a CPU: far above an idle shell even on a loaded host
assert rows["busy"]["cpu_percent"] > 10, rows["busy"]
assert rows["quiet"]["cpu_percent"] < 5, rows["quiet"]
assert rows["busy"]["limits"]["memory_bytes"] == 256 << 20
EOF
"$HB" stats >"$T/stats.txt" || fail "stats"
head -1 "$T/stats.txt" | grep -q '^NAME  *STATE  *CPU%  *CPU-TIME  *MEMORY / LIMIT' ||
	fail "stats header: $(head -1 "$T/stats.txt")"
grep -q '^busy  *running .* / 256.0 MiB .* / 64.0 MiB 2 / 4096$' "$T/stats.txt" ||
	fail "stats row of busy: $(cat "$T/stats.txt")"
grep -q '^quiet  *running ' "$T/stats.txt" || fail "stats row of quiet: $(cat "$T/stats.txt")"

step "memory: held memory counts, the peak stays after it is freed"
m0=$(usage busy memory_bytes)
# dd fills a 48 MiB buffer, then blocks writing it to a pipe no one reads
"$HB" exec -d busy -- sh -c 'dd if=/dev/zero bs=48M count=1 | sleep 600' >/dev/null ||
	fail "exec -d hold"
for _ in $(seq 300); do
	m1=$(usage busy memory_bytes)
	[ "$m1" -gt $((m0 + (32 << 20))) ] && break
	sleep 0.2
done
[ "$m1" -gt $((m0 + (32 << 20))) ] || fail "busy: memory $m0 then $m1 while dd holds 48 MiB"
pkill -f 'dd if=/dev/zero bs=48M' || fail "no holding dd to kill"
for _ in $(seq 300); do
	m2=$(usage busy memory_bytes)
	[ "$m2" -lt $((m1 - (32 << 20))) ] && break
	sleep 0.2
done
[ "$m2" -lt $((m1 - (32 << 20))) ] || fail "busy: memory $m1 then $m2 after the holder was killed"
peak=$(usage busy memory_peak_bytes)
[ "$peak" = None ] || [ "$peak" -ge $((m0 + (32 << 20))) ] || fail "busy: peak $peak after holding $m1"

step "disk: counts against --disk, null without one"
d0=$(usage busy disk_bytes)
"$HB" exec busy -- dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null || fail "write 8 MiB"
d1=$(usage busy disk_bytes)
[ "$d1" -ge $((d0 + (8 << 20))) ] || fail "busy: disk $d0 then $d1 after an 8 MiB file"
"$HB" exec busy -- rm /big || fail "rm /big"
d2=$(usage busy disk_bytes)
# the journal grows by the unlink: a few bytes
[ "$d2" -lt $((d1 - (7 << 20))) ] || fail "busy: disk $d1 then $d2 after rm of the 8 MiB file"
[ "$(usage quiet disk_bytes)" = None ] || fail "quiet (no --disk): disk $(usage quiet disk_bytes)"

step "host memory: the fs process's, and the NAT helper's with --network nat"
f=$(usage busy fs_memory_bytes)
[ "$f" != None ] && [ "$f" -gt $((1 << 20)) ] && [ "$f" -lt $((1 << 30)) ] ||
	fail "busy: fs_memory_bytes $f, expected the fs process's RSS (1 MiB to 1 GiB)"
[ "$(usage busy network_memory_bytes)" = None ] ||
	fail "busy (no nat): network_memory_bytes $(usage busy network_memory_bytes)"
if command -v slirp4netns >/dev/null; then
	"$HB" create net --image base --network nat >/dev/null || fail "create net (nat)"
	nm=$(usage net network_memory_bytes)
	[ "$nm" != None ] && [ "$nm" -gt $((256 << 10)) ] ||
		fail "net: network_memory_bytes $nm, expected slirp4netns's RSS"
	"$HB" stats net >"$T/out" || fail "stats net"
	# HOST-MEM (fs + helper), its column by position: the fields before it
	# hold spaces ("1.2 MiB / 256.0 MiB")
	head -1 "$T/out" | cut -c82-91 | grep -q '^  HOST-MEM$' || fail "stats header: $(head -1 "$T/out")"
	sed -n 2p "$T/out" | cut -c82-91 | grep -Eq '^ *[0-9.]+ MiB$' ||
		fail "stats net: no HOST-MEM figure: $(cat "$T/out")"
	"$HB" rm net >/dev/null || fail "rm net"
else
	echo "   (no slirp4netns: the NAT helper's memory is not checked)"
fi

step "asleep: usage null, stats shows dashes; an unknown name fails alone"
"$HB" sleep quiet >/dev/null || fail "sleep quiet"
[ "$(usage quiet tasks 2>&1)" != 1 ] || fail "asleep: still counted"
"$HB" --json inspect quiet | grep -q '"usage": null' || fail "asleep: usage not null"
"$HB" stats quiet nosuch >"$T/out" 2>"$T/err" && fail "stats of an unknown name exited 0"
[ "$(cat "$T/err")" = "hiberbox: no sandbox named 'nosuch'" ] || fail "stats nosuch: '$(cat "$T/err")'"
grep -q '^quiet  *sleeping  *-  *-  *-  *-  *-  *-  *-$' "$T/out" || fail "stats of a sleeping sandbox: $(cat "$T/out")"
"$HB" stats 'a/b' 2>"$T/err" && fail "stats a/b exited 0"
[ "$(wc -l <"$T/err")" = 1 ] || fail "stats a/b: $(cat "$T/err")"
# with no names, only the running ones
"$HB" stats >"$T/out" || fail "stats (all)"
grep -q '^quiet ' "$T/out" && fail "stats lists a sleeping sandbox: $(cat "$T/out")"
grep -q '^busy ' "$T/out" || fail "stats (all) lacks busy: $(cat "$T/out")"
echo "PASS"
