#!/bin/bash
# `hiberbox logs -f` (GET .../logs?follow=1) with the real daemon: it
# prints a detached command's output as it comes and ends when the command
# ends; it waits for a background child the command left writing; it ends
# when the sandbox sleeps or is removed; a follower that leaves (^C) takes
# nothing of the daemon with it, and a follower never keeps a finished
# command listed; the plain `logs` is unchanged.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires

daemon_test_scratch logs
step() { echo "== $*"; }
# ended_within S PID: whether process PID ended within S seconds
ended_within() { for _ in $(seq $(($1 * 10))); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

daemon_test_image base sh cat echo sleep true
"$HB" create a --image base >/dev/null || fail "create a"

step "output as it comes, then the end with the command's"
"$HB" exec -d a -- sh -c 'echo one; while [ ! -e /go ]; do sleep 0.1; done; echo two' >/dev/null ||
	fail "exec -d"
"$HB" logs -f a >"$T/out" 2>"$T/err" &
F=$!
for _ in $(seq 300); do grep -q one "$T/out" && break; sleep 0.1; done
grep -q one "$T/out" || fail "follow: no 'one' while the command runs: $(cat "$T/out" "$T/err")"
kill -0 $F 2>/dev/null || fail "follow ended while the command still runs"
"$HB" exec a -- sh -c ': >/go' || fail "exec touch /go"
ended_within 60 $F || fail "follow still running a minute after its command ended"
wait $F || fail "follow exited $?: $(cat "$T/err")"
[ "$(cat "$T/out")" = "$(printf 'one\ntwo')" ] || fail "follow printed '$(cat "$T/out")'"
"$HB" logs a >"$T/plain" || fail "plain logs"
cmp -s "$T/out" "$T/plain" || fail "plain logs: '$(cat "$T/plain")'"

step "a background child still writing keeps it going; a follower keeps nothing listed"
"$HB" exec a -- sh -c 'rm -f /go' || fail "rm /go"
pid=$("$HB" exec -d a -- sh -c '(while [ ! -e /go ]; do sleep 0.1; done; echo late) & echo early') ||
	fail "exec -d with a background child"
"$HB" logs -f a "$pid" >"$T/out" &
F=$!
for _ in $(seq 300); do grep -q early "$T/out" && break; sleep 0.1; done
sleep 1
kill -0 $F 2>/dev/null || fail "follow ended while a background child still holds the log"
"$HB" exec a -- sh -c ': >/go' || fail "exec touch /go"
ended_within 60 $F || fail "follow still running after the background child ended"
wait $F
[ "$(cat "$T/out")" = "$(printf 'early\nlate')" ] || fail "follow printed '$(cat "$T/out")'"
# once it ended, the command is no longer listed (a follower is no writer)
for _ in $(seq 100); do
	"$HB" --json inspect a | grep -q "\"detached_pids\": \[\]" && break
	sleep 0.1
done
"$HB" --json inspect a | grep -q "\"detached_pids\": \[\]" ||
	fail "ended command still listed: $("$HB" --json inspect a | grep -A2 detached)"

step "a follower that leaves takes nothing with it"
"$HB" exec -d a -- sh -c 'while :; do echo tick; sleep 0.2; done' >/dev/null || fail "ticker"
dpid=$(daemon_pid)
threads0=$(ls /proc/"$dpid"/task | wc -l)
fds0=$(ls /proc/"$dpid"/fd | wc -l)
for _ in 1 2 3 4 5; do
	"$HB" logs -f a >/dev/null &
	F=$!
	sleep 0.5
	kill -TERM $F # (^C: a background job of a script ignores SIGINT)
	wait $F 2>/dev/null
done
ok=
for _ in $(seq 100); do
	[ "$(ls /proc/"$dpid"/task | wc -l)" -le "$threads0" ] &&
		[ "$(ls /proc/"$dpid"/fd | wc -l)" -le "$fds0" ] && { ok=1; break; }
	sleep 0.1
done
[ -n "$ok" ] || fail "daemon threads $threads0 -> $(ls /proc/"$dpid"/task | wc -l), fds $fds0 -> $(ls /proc/"$dpid"/fd | wc -l) after 5 followers left"

step "a sleep, and an rm, end the following"
"$HB" logs -f a >/dev/null &
F=$!
sleep 1
"$HB" sleep a >/dev/null || fail "sleep a"
ended_within 60 $F || fail "follow still running after its sandbox slept"
wait $F || fail "follow after sleep exited $?"
"$HB" exec -d a -- sh -c 'while :; do echo tick; sleep 0.2; done' >/dev/null || fail "ticker after wake"
"$HB" logs -f a >/dev/null 2>&1 &
F=$!
sleep 1
"$HB" rm a >/dev/null || fail "rm a"
ended_within 60 $F || fail "follow still running after its sandbox was removed"

step "bad input"
"$HB" create b --image base >/dev/null || fail "create b"
"$HB" logs -f b 2>"$T/err" && fail "follow without any detached process exited 0"
[ "$(cat "$T/err")" = "hiberbox: no logs: start a process with 'exec -d'" ] ||
	fail "follow without logs: '$(cat "$T/err")'"
"$HB" logs -f b 12345 2>"$T/err" && fail "follow of an unknown pid exited 0"
[ "$(wc -l <"$T/err")" = 1 ] || fail "follow of an unknown pid: $(cat "$T/err")"
"$HB" logs --follow=x b 2>"$T/err"
[ $? = 2 ] || fail "logs --follow=x: not a usage error"
echo "PASS"
