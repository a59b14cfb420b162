#!/bin/bash
# hiberboxd end to end: what a request that fails, or a daemon that dies,
# leaves behind, and how such a request fails.
#   - the fs process's groups (hbdfs-*, a sandbox with --memory) that a
#     killed daemon left: the next daemon removes those whose sandbox no
#     longer exists, rm those of its sandbox;
#   - a detached exec the daemon cannot record leaves no log file;
#   - a request that runs out of space (an upload beyond --disk) is a 507
#     with its one line, not a 500, and leaves no partial file.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires
command -v curl >/dev/null || { echo "SKIP: no curl to ask the API"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3 to read the JSON"; exit 77; }

daemon_test_scratch leftovers
step() { echo "== $*"; }
field_of() { "$HB" --json inspect "$1" | sed -n "s/.*\"$2\": \"\\{0,1\\}\\([^\",]*\\).*/\\1/p"; }
fs_pid_of() { "$HB" --json mounts | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["mountpoint"].endswith("/sandboxes/" + sys.argv[1] + "/root") and m["alive"]:
        print(m["pid"])' "$1"; }
# wait_gone PID: until it has exited (a minute at most)
wait_gone() { for _ in $(seq 600); do [ -d "/proc/$1" ] || return 0; sleep 0.1; done; return 1; }
S=$HIBERBOX_HOME/hiberboxd.sock
api() { curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' "$@"; }
daemon_test_image base sh cat sleep true rm test

step "a killed daemon's fs groups: a starting daemon removes those of sandboxes gone, rm the others"
"$HB" create f --image base --memory 128M >/dev/null || fail "create f"
finit=$(field_of f init_pid)
fspid=$(fs_pid_of f)
[ -n "$fspid" ] || fail "no fs process for f"
mapfile -t fdirs < <(daemon_test_groups_of "$fspid" hbdfs)
[ "${#fdirs[@]}" -gt 0 ] || fail "f's fs process is in no hbdfs group: $(cat "/proc/$fspid/cgroup")"
daemon_test_gone_groups "${fdirs[@]}"
# the daemon dies, then f's init and fs process: the next daemon puts f to
# sleep, and nothing holds f's groups
kill -9 "$(daemon_pid)"
kill -9 "$finit" "$fspid"
wait_gone "$fspid" || fail "f's fs process $fspid outlived SIGKILL"
[ "$(field_of f state)" = sleeping ] || fail "f after its daemon, init and fs died: $(field_of f state)"
daemon_test_gone_swept hbdfs
"$HB" rm f >/dev/null || fail "rm f"
for d in "${fdirs[@]}"; do
	[ ! -d "$d" ] || fail "rm of the sleeping f left its fs process's group $d"
done

step "out of space: an upload beyond --disk is a 507 with one line"
"$HB" create small --image base --disk 16M >/dev/null || fail "create small"
head -c $((32 << 20)) /dev/zero >"$T/big"
code=$(api -X PUT --data-binary @"$T/big" "http://x/v1/sandboxes/small/files?path=/big")
[ "$code" = 507 ] || fail "PUT of 32 MiB into a 16 MiB --disk: $code $(cat "$T/api.out")"
python3 -c 'import json, sys, errno, os; e = json.load(open(sys.argv[1])); sys.exit(e["errno"] not in (errno.ENOSPC, errno.EDQUOT) or "\n" in e["error"] or not e["error"].endswith("small:/big: " + os.strerror(e["errno"])))' \
	"$T/api.out" || fail "the 507's body: $(cat "$T/api.out")"
"$HB" cp "$T/big" small:/big2 2>"$T/err" && fail "cp of 32 MiB into a 16 MiB --disk succeeded"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q 'No space left on device' "$T/err" || fail "cp beyond --disk: '$(cat "$T/err")'"
# a failed upload removes the file it created: no partial file is left
for f in /big /big2; do
	"$HB" exec small -- test -e "$f" && fail "the failed upload left $f"
done
echo fits | "$HB" cp - small:/fits || fail "a small cp after the full one"
[ "$("$HB" exec small -- cat /fits)" = fits ] || fail "small's /fits"
"$HB" rm small >/dev/null || fail "rm small"
"$HB" daemon stop >/dev/null || fail "daemon stop"

step "a detached exec the daemon cannot record leaves no log"
HIBERBOX_TEST_DETACHED_ADD_FAILS=1 "$HB" ls >/dev/null || fail "starting the daemon"
"$HB" create d --image base >/dev/null || fail "create d"
"$HB" exec -d d -- sleep 600 >"$T/out" 2>"$T/err" && fail "exec -d whose record fails succeeded: $(cat "$T/out")"
grep -q "recording the detached process" "$T/err" || fail "exec -d whose record fails: '$(cat "$T/err")'"
logs=$HIBERBOX_HOME/sandboxes/d/logs
[ -z "$(ls -A "$logs" 2>/dev/null)" ] || fail "the failed exec -d left $(ls "$logs")"
for _ in $(seq 600); do
	[ "$("$HB" --json inspect d | sed -n 's/.*"processes": \([0-9]*\).*/\1/p')" = 0 ] && break
	sleep 0.1
done
"$HB" --json inspect d | grep -q '"processes": 0' || fail "the unrecorded command runs on: $("$HB" --json inspect d)"
"$HB" rm d >/dev/null || fail "rm d"

step "the daemons' log is free of sanitizer reports"
daemon_test_no_sanitizer_reports

echo "leftovers: ok"
