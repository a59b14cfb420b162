#!/bin/bash
# SIGKILL of the fs process at random moments of a random workload: after
# `umount` and a mount with the same --upper, the tree must be the workload's
# model after exactly the system calls that had returned on the mount (N), or
# after N+1 (the call in flight may or may not have landed), as a whole: a
# rename over a directory, say, is all or nothing.  Only a data write in
# flight may land in part: the kernel sends one write() as several requests
# in places (fs/README.md, Limits), and the killed write() then returns the
# count of those served; a killed process also stops writing its data file
# between pages, as a native filesystem may keep part of a write a crash cut
# short.  Then that one file may hold the bytes of either state.  A read or
# write returning a short count from a dead mount is the call in flight.
#
# fs-model --progress runs the workload (the mount checked against a native
# tree call by call) and records N in a file after each call returns; the
# model trees after N and N+1 calls come from the same seed replayed on
# native trees (fs-model --stop-after).  Every third round runs commits back
# to back beside the workload, so some kills land inside a commit: the
# repository must stay clean (`check`).  Every second round commits the
# recovered mount: a fresh mount of that commit must equal it.  Every other
# round compacts the journal whenever it passes 2 KiB, so that kills land
# inside compactions as well.
#
# FS_CRASH_ROUNDS (default 30) kill moments; FS_CRASH_SEED varies them all;
# FS_CRASH_KEEP=DIR keeps what a failed round leaves (upper, model trees).
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_model_start
ROUNDS=${FS_CRASH_ROUNDS:-30}
BASE=${FS_CRASH_SEED:-7000}
NOPS=100000 # more than any round gets through before its kill

M="$T/mnt"
M2="$T/mnt-commit"

# model_tree N SEED DIR: DIR = the lower tree after the first N calls of the
# workload SEED; prints what call N+1 is (next-write, next-other, next-none).
model_tree() {
	local out
	rm -rf "$3" "$T/scratch"
	cp -a "$T/src" "$3"
	cp -a "$T/src" "$T/scratch"
	out=$("$FS_MODEL" --stop-after "$1" "$3" "$T/scratch" "$2" "$NOPS") ||
		fail "model replay of seed $2 to call $1 failed: $out"
	printf '%s\n' "$out" | head -n 1
}

# wait_gone PID: until the process has exited (a zombie has closed its files).
wait_gone() {
	fs_gone "$1" || fail "the fs process $1 is still alive a minute after SIGKILL"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

START=$(now_ms)
in_commit=0 commit_rounds=0 min_n='' max_n=0 landed=0 torn=0
for round in $(seq "$ROUNDS"); do
	seed=$((BASE + round))
	RANDOM=$seed
	U="$T/upper$round"
	rm -rf "$T/native"
	cp -a "$T/src" "$T/native"
	if [ $((round % 2)) -eq 1 ]; then
		# the journal compacted over and over (fs/upper.c): kills land
		# inside compactions too
		HIBERBOX_FS_TEST_COMPACT_BYTES=2048 fs_mount "$ID" "$M" --upper "$U"
	else
		fs_mount "$ID" "$M" --upper "$U"
	fi
	PID=$(fs_pid "$M")
	[ -n "$PID" ] || fail "round $round: no pid for $M"
	rm -f "$T/progress" "$T/commits" "$T/commit.failed"
	"$FS_MODEL" --progress "$T/progress" "$M" "$T/native" "$seed" "$NOPS" >"$T/workload.out" 2>&1 &
	WL=$!
	CL=''
	if [ $((round % 3)) -eq 0 ]; then
		commit_rounds=$((commit_rounds + 1))
		# commits back to back; each one's number is written before it
		# starts, the time and error of the one that fails (the kill's) after
		(
			i=0
			while :; do
				i=$((i + 1))
				echo "$i $(date +%s%N)" >"$T/commits"
				if ! hb commit "$M" >/dev/null 2>"$T/commit.err"; then
					echo "$(date +%s%N)" >"$T/commit.failed"
					exit 0
				fi
			done
		) &
		CL=$!
		# into a commit after the first few: a commit of a few changed
		# files takes tens of milliseconds here
		target=$((2 + RANDOM % 4))
		for _ in $(seq 1000); do
			# empty while the committer rewrites it: 0 then
			n=$(cut -d' ' -f1 "$T/commits" 2>/dev/null)
			[ "${n:-0}" -ge "$target" ] && break
			sleep 0.01
		done
		sleep "0.0$((RANDOM % 10))"
	else
		delay=$((50 + RANDOM % 1200))
		sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
	fi
	killed_at=$(date +%s%N) # just before: nothing the kill causes comes earlier
	kill -KILL "$PID" || fail "round $round: the fs process $PID was gone before the kill"
	rc=0
	wait "$WL" || rc=$?
	# 3: the workload met the dead mount; 0: it ended before the kill
	[ "$rc" -eq 3 ] || [ "$rc" -eq 0 ] ||
		fail "round $round (seed $seed): the workload failed before the kill (exit $rc): $(head -c 3000 "$T/workload.out")"
	if [ -n "$CL" ]; then
		wait "$CL"
		# the last commit failed: it was running at the kill if it had
		# started before (counted for the log only)
		started=$(cut -d' ' -f2 "$T/commits" 2>/dev/null)
		[ -n "$started" ] && [ "$started" -lt "$killed_at" ] && in_commit=$((in_commit + 1))
		[ "$(cat "$T/commit.failed")" -gt "$killed_at" ] ||
			bad "round $round (seed $seed): a commit failed before the kill: $(head -c 500 "$T/commit.err")"
	fi
	wait_gone "$PID"
	n=$(cat "$T/progress" 2>/dev/null || echo 0)
	n=$((10#$n))
	fs_umount "$M"
	[ -n "$CL" ] && { hb_ok check >"$T/check.out" || exit 1; }

	fs_mount "$ID" "$M" --upper "$U"
	next=$(model_tree "$n" "$seed" "$T/tree-n") || exit 1
	# most kills find the call in flight not landed: the tree after N+1
	# calls is made only when the one after N does not match
	rc=0
	out=$("$FS_MODEL" --check "$M" "$T/tree-n") || rc=$?
	if [ "$rc" -ne 0 ]; then
		model_tree $((n + 1)) "$seed" "$T/tree-n1" >/dev/null || exit 1
		mode=''
		[ "$next" = next-write ] && mode=torn
		rc=0
		out=$("$FS_MODEL" --check "$M" "$T/tree-n" "$T/tree-n1" $mode) || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		bad "round $round (seed $seed): the recovered tree after $n acknowledged calls (call $((n + 1)): $next) is neither state"
		printf '%s\n' "$out" | head -n 80 >&2
		if [ -n "${FS_CRASH_KEEP:-}" ]; then
			mkdir -p "$FS_CRASH_KEEP/$round"
			cp -a "$U" "$T/tree-n" "$T/tree-n1" "$T/workload.out" "$HIBERBOX_HOME/fs.log" \
				"$FS_CRASH_KEEP/$round/"
		fi
		fs_umount "$M"
		continue
	fi
	case $out in
	*"N+1 calls"*) landed=$((landed + 1)) ;;
	*torn*) torn=$((torn + 1)) ;;
	esac
	[ -z "$min_n" ] || [ "$n" -lt "$min_n" ] && min_n=$n
	[ "$n" -gt "$max_n" ] && max_n=$n
	if [ $((round % 2)) -eq 0 ]; then
		C=$(fs_commit "$M") || exit 1
		fs_mount "$C" "$M2"
		"$FS_MODEL" --committed "$M2" "$M" 0 0 >"$T/cmp.out" ||
			bad "round $round (seed $seed): a fresh mount of the recovered mount's commit differs: $(head -c 2000 "$T/cmp.out")"
		fs_umount "$M2"
	fi
	fs_umount "$M"
	rm -rf "$U"
done
log "$ROUNDS kills after $min_n..$max_n acknowledged calls; the call in flight had landed in $landed, torn in $torn;" \
	"$commit_rounds rounds with commits running ($in_commit killed during one);" \
	"$(grep -c "journal compacted" "$HIBERBOX_HOME/fs.log") journal compactions; $(($(now_ms) - START)) ms"
hb_ok check >/dev/null
finish
