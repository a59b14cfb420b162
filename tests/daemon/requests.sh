#!/bin/bash
# hiberboxd end to end: requests that meet another one on the same sandbox
# or wait behind a slow one, and the commands that take several names.
#   - a sleep or rm that waited while an rm held the sandbox does not
#     report the removed sandbox as asleep or removed twice; ls and inspect
#     show it as removing at once, then no more;
#   - ls, inspect and stats answer while a sandbox's sleep is slow (they
#     waited for it), showing it as it was when the sleep began, with what
#     it runs and uses unknown (null, dashes), and while a file upload (up
#     to 64 MiB) into a sandbox is written, which an exec still waits for;
#   - rm, sleep and wake take several names: each done in turn, one line
#     per failure naming it, exit 1 if any failed, the others still done;
#   - a request whose path or query holds a NUL (%00), or a name followed
#     by a bare '/', addresses no sandbox, image or file (400, 404);
#   - an exec takes 1024 args (through the CLI too, 45 KiB of them); the
#     1025th is a 400 with its line.
# The slow steps are the daemon's test pauses (HIBERBOX_TEST_*_PAUSE_MS),
# long against the waits that check them, so a slow machine passes too.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires

daemon_test_scratch requests
PAUSE_MS=40000
step() { echo "== $*"; }
state_of() { "$HB" --json inspect "$1" | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p'; }
# wait_log TEXT: until the daemon's log has the line (a minute at most)
wait_log() { for _ in $(seq 600); do grep -qF "$1" "$HIBERBOX_HOME/hiberboxd.log" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# ls_during WHAT NAME/STATE...: ls answers (well before the pause ends)
# while WHAT holds a sandbox, listing exactly these sandboxes in these states
ls_during() {
	local what=$1
	shift
	timeout $((PAUSE_MS / 2000)) "$HB" --json ls >"$T/ls.out" 2>"$T/ls.err" ||
		fail "ls during $what: exit $? (waited for it?) $(cat "$T/ls.err")"
	python3 -c 'import json, sys; sys.exit(sorted(s["name"] + "/" + s["state"] for s in json.load(open(sys.argv[1]))) != sys.argv[2:])' \
		"$T/ls.out" "$@" || fail "ls during $what: $(cat "$T/ls.out")"
}
# inspect_during WHAT NAME STATE: inspect answers (well before the pause
# ends) while WHAT holds sandbox NAME, showing it in STATE, its processes
# and usage null
inspect_during() {
	timeout $((PAUSE_MS / 2000)) "$HB" --json inspect "$2" >"$T/inspect.out" 2>"$T/inspect.err" ||
		fail "inspect $2 during $1: exit $? (waited for it?) $(cat "$T/inspect.err")"
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit([j["name"], j["state"], j["processes"], j["usage"]] != sys.argv[2:] + [None, None])' \
		"$T/inspect.out" "$2" "$3" || fail "inspect $2 during $1: $(cat "$T/inspect.out")"
}
# stats_during WHAT NAME STATE: stats NAME, and stats of all sandboxes,
# answer while WHAT holds NAME, its row STATE and dashes
stats_during() {
	local args
	for args in "$2" ""; do
		timeout $((PAUSE_MS / 2000)) "$HB" stats $args >"$T/stats.out" 2>"$T/stats.err" ||
			fail "stats $args during $1: exit $? (waited for it?) $(cat "$T/stats.err")"
		grep -q "^$2  *$3  *-  *-  *-  *-  *-  *-  *-\$" "$T/stats.out" ||
			fail "stats $args during $1: $(cat "$T/stats.out")"
	done
}
# inspect_after NAME STATE USAGE: NAME is in STATE, its processes counted,
# its usage null or not (USAGE null or counted)
inspect_after() {
	"$HB" --json inspect "$1" >"$T/inspect.out" 2>"$T/inspect.err" || fail "inspect $1: $(cat "$T/inspect.err")"
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit([j["state"], type(j["processes"]) is int, "null" if j["usage"] is None else "counted"] != [sys.argv[2], True, sys.argv[3]])' \
		"$T/inspect.out" "$2" "$3" || fail "inspect $1 after: $(cat "$T/inspect.out")"
}
daemon_test_image base sh cat echo sleep true

step "rm, sleep and wake take several names"
for n in m1 m2 m3; do "$HB" create "$n" --image base >/dev/null || fail "create $n"; done
"$HB" sleep m1 nosuch m2 >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" = 1 ] || fail "sleep m1 nosuch m2 exited $rc: $(cat "$T/err")"
[ "$(cat "$T/err")" = "hiberbox: no sandbox named 'nosuch'" ] || fail "sleep m1 nosuch m2: '$(cat "$T/err")'"
[ "$(grep -c ' asleep in ' "$T/out")" = 2 ] || fail "sleep m1 nosuch m2 printed '$(cat "$T/out")'"
[ "$(state_of m1)/$(state_of m2)/$(state_of m3)" = sleeping/sleeping/running ] ||
	fail "after sleep m1 nosuch m2: $(state_of m1)/$(state_of m2)/$(state_of m3)"
"$HB" wake m1 'a/' m2 >/dev/null 2>"$T/err"
rc=$?
[ "$rc" = 1 ] || fail "wake m1 a/ m2 exited $rc"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "^hiberbox: invalid name 'a/'" "$T/err" ||
	fail "wake m1 a/ m2: '$(cat "$T/err")'"
[ "$(state_of m1)/$(state_of m2)" = running/running ] || fail "after wake m1 a/ m2: $(state_of m1)/$(state_of m2)"
"$HB" --json sleep m1 m2 >"$T/out" || fail "sleep m1 m2"
python3 -c 'import json, sys; sys.exit([r["name"] for r in json.load(open(sys.argv[1]))] != ["m1", "m2"])' \
	"$T/out" || fail "--json sleep m1 m2 printed $(cat "$T/out")"
"$HB" rm m1 nosuch m2 m3 >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" = 1 ] || fail "rm m1 nosuch m2 m3 exited $rc"
[ "$(cat "$T/err")" = "hiberbox: no sandbox named 'nosuch'" ] || fail "rm m1 nosuch m2 m3: '$(cat "$T/err")'"
[ "$("$HB" --json ls)" = "[]" ] || fail "rm m1 nosuch m2 m3 left $("$HB" ls)"
"$HB" rm 2>"$T/err"
rc=$?
[ "$rc" = 2 ] && grep -q "expected NAME" "$T/err" || fail "rm without a name: exit $rc, '$(cat "$T/err")'"

step "the API: a NUL or a trailing / in a request addresses nothing"
# The library hands the handler the path and query decoded, so a %00 cut
# them: '/sandboxes/nul%00x' addressed (and DELETE removed) sandbox nul,
# 'path=/tmp/hello%00.txt' read /tmp/hello; 'nul/' (or 'nul%2F') was nul.
"$HB" create nul --image base >/dev/null || fail "create nul"
S=$HIBERBOX_HOME/hiberboxd.sock
api() { curl -s --unix-socket "$S" -o "$T/api.out" -w '%{http_code}' "$@"; }
echo hello | "$HB" cp - nul:/tmp/hello || fail "cp - nul:/tmp/hello"
for req in "DELETE http://x/v1/sandboxes/nul%00x" "POST http://x/v1/sandboxes/nul%00x/sleep" \
	"DELETE http://x/v1/images/base%00x" "GET http://x/v1/sandboxes/nul/files?path=/tmp/hello%00.txt" \
	"POST http://x/v1/sandboxes/nul/exec?arg=/bin/echo&arg=a%00b"; do
	code=$(api -X ${req% *} "${req#* }")
	[ "$code" = 400 ] && grep -q "holds a NUL byte" "$T/api.out" || fail "$req: $code $(cat "$T/api.out")"
done
for req in "DELETE http://x/v1/sandboxes/nul/" "DELETE http://x/v1/sandboxes/nul%2F" "GET http://x/v1/sandboxes/nul/"; do
	code=$(api -X ${req% *} "${req#* }")
	[ "$code" = 404 ] && grep -q "no endpoint" "$T/api.out" || fail "$req: $code $(cat "$T/api.out")"
done
# the same connection's next request is not taken for one with a NUL
out=$(curl -s --unix-socket "$S" -w ' %{http_code}\n' "http://x/v1/sandboxes/nul%00x" "http://x/v1/sandboxes/nul/files?path=/tmp/hello")
[ "$(echo "$out" | tail -2 | tr '\n' ' ')" = "hello  200 " ] || fail "after a NUL request: $out"
[ "$(state_of nul)" = running ] || fail "nul is $(state_of nul) after the requests with a NUL"
"$HB" image ls | grep -q '^base ' || fail "image base went"

step "an exec with up to 1024 args runs, with more is one line (400)"
# (the library's connection memory ran out at about 500: no reply at all,
# 'Broken pipe' in the CLI)
[ "$("$HB" exec nul -- echo $(seq 600) | wc -w)" = 600 ] || fail "exec with 600 args"
# the CLI's request head was cut at 8 KiB: 1023 args of 44 bytes (45 KiB)
long=$(printf 'x%.0s' $(seq 40))
[ "$("$HB" exec nul -- echo $(for i in $(seq 1000 2022); do echo "$long$i"; done) | wc -w)" = 1023 ] ||
	fail "CLI exec with 1023 args of 44 bytes"
q="arg=echo$(printf '&arg=%s' $(seq 1023))"
code=$(api -X POST "http://x/v1/sandboxes/nul/exec?$q")
[ "$code" = 200 ] && grep -q 1023 "$T/api.out" || fail "exec with 1024 args: $code"
code=$(api -X POST "http://x/v1/sandboxes/nul/exec?$q&arg=x")
[ "$code" = 400 ] && grep -q '"too many or malformed arg/env parameters"' "$T/api.out" ||
	fail "exec with 1025 args: $code $(cat "$T/api.out")"
"$HB" rm nul >/dev/null || fail "rm nul"
"$HB" daemon stop >/dev/null || fail "daemon stop"

# A daemon whose rm and sleep pause (holding the sandbox) once the sandbox
# is stopped: what a slow repository makes them take; an upload before it
# writes, as a large one would.
HIBERBOX_TEST_RM_PAUSE_MS=$PAUSE_MS HIBERBOX_TEST_SLEEP_PAUSE_MS=$PAUSE_MS \
	HIBERBOX_TEST_UPLOAD_PAUSE_MS=$PAUSE_MS "$HB" ls >/dev/null || fail "starting the daemon"

step "a request that waited for an rm finds the sandbox gone"
"$HB" create gone --image base >/dev/null || fail "create gone"
"$HB" rm gone >/dev/null 2>"$T/rm.err" &
rp=$!
wait_log "test pause: rm gone" || fail "the rm never reached its pause"
"$HB" sleep gone >"$T/sleep.out" 2>"$T/sleep.err" &
sp=$!
"$HB" rm gone >"$T/rm2.out" 2>"$T/rm2.err" &
rp2=$!
"$HB" --json ls >"$T/ls.out" 2>"$T/ls.err" &
lp=$!
# (inspect waited for the whole removal, as ls did)
inspect_during "an rm" gone removing
kill -0 "$rp2" 2>/dev/null || fail "a second rm did not wait for the first: $(cat "$T/rm2.out" "$T/rm2.err")"
wait "$rp" || fail "rm gone: $(cat "$T/rm.err")"
wait "$sp" && fail "a sleep that waited for the rm succeeded: $(cat "$T/sleep.out")"
[ "$(cat "$T/sleep.err")" = "hiberbox: sandbox gone was removed" ] ||
	fail "sleep after rm: '$(cat "$T/sleep.err")'"
wait "$rp2" && fail "an rm that waited for the rm succeeded: $(cat "$T/rm2.out")"
[ "$(cat "$T/rm2.err")" = "hiberbox: sandbox gone was removed" ] ||
	fail "rm after rm: '$(cat "$T/rm2.err")'"
"$HB" --json inspect gone >"$T/inspect.out" 2>"$T/inspect.err" &&
	fail "inspect after the rm succeeded: $(cat "$T/inspect.out")"
[ "$(cat "$T/inspect.err")" = "hiberbox: no sandbox named 'gone'" ] ||
	fail "inspect after rm: '$(cat "$T/inspect.err")'"
wait "$lp" || fail "ls during rm: $(cat "$T/ls.err")"
python3 -c 'import json, sys; sys.exit(any(s["name"] == "gone" and s["state"] != "removing" for s in json.load(open(sys.argv[1]))))' \
	"$T/ls.out" || fail "ls during the rm lists gone as other than removing: $(cat "$T/ls.out")"
"$HB" --json ls | grep -q '"name": "gone"' && fail "ls after the rm lists gone"

step "ls, inspect and stats do not wait for a sandbox's slow sleep"
# (ls waited for every sandbox's lock, which a sleep holds throughout;
# inspect and stats, reading it twice, waited for that one's)
"$HB" create slow --image base >/dev/null || fail "create slow"
"$HB" sleep slow >/dev/null 2>"$T/sleep.err" &
sp=$!
wait_log "test pause: sleep slow" || fail "the sleep never reached its pause"
ls_during "a slow sleep" slow/running
inspect_during "a slow sleep" slow running
stats_during "a slow sleep" slow running
kill -0 "$sp" 2>/dev/null || fail "the sleep ended before the checks during it (pause too short?)"
wait "$sp" || fail "sleep slow: $(cat "$T/sleep.err")"
[ "$(state_of slow)" = sleeping ] || fail "slow is $(state_of slow) after its sleep"
"$HB" --json ls | grep -q '"state": "sleeping"' || fail "ls after the sleep: $("$HB" ls)"
inspect_after slow sleeping null
"$HB" stats slow >"$T/stats.out" || fail "stats slow after the sleep"
grep -q '^slow  *sleeping  *-  *-  *-  *-  *-  *-  *-$' "$T/stats.out" || fail "stats slow after the sleep: $(cat "$T/stats.out")"

step "ls, inspect and stats do not wait for a file upload, an exec does"
# (a PUT of up to 64 MiB is written holding the sandbox's lock)
"$HB" create up --image base >/dev/null || fail "create up"
echo uploaded | "$HB" cp - up:/data 2>"$T/cp.err" &
cp=$!
wait_log "test pause: upload up" || fail "the upload never reached its pause"
# the file is made before the pause: an exec that did not wait reads it empty
"$HB" exec up -- cat /data >"$T/exec.out" 2>"$T/exec.err" &
ep=$!
ls_during "an upload" slow/sleeping up/running
inspect_during "an upload" up running
stats_during "an upload" up running
kill -0 "$cp" 2>/dev/null || fail "the upload ended before the checks during it (pause too short?)"
kill -0 "$ep" 2>/dev/null || fail "an exec did not wait for the upload: '$(cat "$T/exec.out" "$T/exec.err")'"
wait "$cp" || fail "cp - up:/data: $(cat "$T/cp.err")"
wait "$ep" || fail "exec up -- cat /data: $(cat "$T/exec.err")"
[ "$(cat "$T/exec.out")" = uploaded ] || fail "an exec that waited for the upload read '$(cat "$T/exec.out")'"
[ "$("$HB" exec up -- cat /data)" = uploaded ] || fail "up's /data after the upload"
inspect_after up running counted
"$HB" --json stats up >"$T/stats.out" || fail "stats up after the upload"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(not (r[0]["state"] == "running" and type(r[0]["usage"]["memory_bytes"]) is int))' \
	"$T/stats.out" || fail "stats up after the upload: $(cat "$T/stats.out")"

step "the daemon's log is free of sanitizer reports"
daemon_test_no_sanitizer_reports

echo "requests: ok"
