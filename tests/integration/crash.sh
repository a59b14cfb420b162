#!/bin/bash
# Crash safety: SIGKILL `snapshot create` of a ~200 MB tree at many different
# moments.  After the kills every earlier snapshot must still restore exactly
# (the latest every third round, a random earlier one every sixth, a spread of
# them at the end), `gc` then `check --read-data` must be clean, and no
# leftovers may remain.
#
# The kill delays are spread over twice the measured length of an
# uninterrupted create of one round's change (capped at 2 s), so kills land while reading,
# packing, writing the index, the manifest and the refs.  Each round adds new
# data first, so there is always something to write.
# HB_CRASH_ROUNDS overrides the 25 rounds; HB_CRASH_ALL=1 restores every
# snapshot at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
ROUNDS=${HB_CRASH_ROUNDS:-25}
MiB=1048576
hb_ok init >/dev/null

log "generating a ~200 MB tree"
make_small_tree "$T/tree" 2500 21
mkdir -p "$T/tree/big"
for i in 1 2 3 4 5 6 7 8; do randfile "$T/tree/big/base-$i.bin" $((22 * MiB)) "base$i"; done
python3 "$TREEGEN" logs "$T/tree/logs" 6 21

declare -A expected=() # snapshot id -> dump of the tree it holds
committed=()           # ids in order of creation

# Uninterrupted first snapshot.
dump_tree "$T/tree" "$T/exp-0.json"
id=$(snapshot_create "$T/tree" --no-parent)
expected[$id]="$T/exp-0.json"
committed+=("$id")

mutate() { # mutate ROUND: new data, a removed file, edits, a rename
	local r=$1
	randfile "$T/tree/big/new-$r.bin" $(((4 + (r * 7) % 20) * MiB)) "new$r"
	local old=$((r - 3))
	rm -f "$T/tree/big/new-$old.bin"
	printf 'round %d\n' "$r" >>"$T/tree/logs/service-$((r % 4)).log"
	local f edits
	mapfile -t edits < <(find "$T/tree" -name "f0*$((r % 10)).c" -type f)
	for f in "${edits[@]:0:20}"; do
		printf '/* round %d */\n' "$r" >>"$f"
	done
	mkdir -p "$T/tree/round-$r"
	echo "$r" >"$T/tree/round-$r/marker"
	[ ! -e "$T/tree/round-$((r - 1))" ] || mv "$T/tree/round-$((r - 1))" "$T/tree/round-$((r - 1))-moved"
}

# Calibration: how long an uninterrupted create of one round's change takes,
# reading everything (--no-parent) and with the parent.  Kill delays are
# spread over 0..200% of that (at most 2 s).
declare -A span_ms=()
cal=900
for mode in no-parent parent; do
	cal=$((cal + 1))
	mutate "$cal"
	dump_tree "$T/tree" "$T/exp-cal-$mode.json"
	opt=()
	[ "$mode" = parent ] || opt=(--no-parent)
	t0=$(date +%s%N)
	id=$(snapshot_create "$T/tree" "${opt[@]}")
	t1=$(date +%s%N)
	expected[$id]="$T/exp-cal-$mode.json"
	committed+=("$id")
	# x2: rounds after a kill carry the unstored data of the killed one, so
	# they take longer than this; delays past the end test a finished create.
	ms=$(((t1 - t0) / 1000000 * 2))
	[ "$ms" -le 2000 ] || ms=2000
	[ "$ms" -ge 100 ] || ms=100
	span_ms[$mode]=$ms
	log "uninterrupted create ($mode) took $(((t1 - t0) / 1000000)) ms; kill delays over 0..$ms ms"
done

killed=0
finished=0
for r in $(seq 1 "$ROUNDS"); do
	mutate "$r"
	dump_tree "$T/tree" "$T/exp-$r.json"
	# mostly full reads (long creates); delays cover each mode's span evenly
	# over the rounds, with a little jitter
	mode=no-parent
	opt=(--no-parent)
	if [ $((r % 3)) -eq 0 ]; then mode=parent; opt=(); fi
	delay_ms=$(((r - 1) * span_ms[$mode] / (ROUNDS - 1) + RANDOM % 20))
	"$HIBERBOX" --quiet snapshot create "$T/tree" "${opt[@]}" >"$T/c.out" 2>"$T/c.err" &
	pid=$!
	sleep "$(awk -v ms="$delay_ms" 'BEGIN {printf "%.3f", ms / 1000}')"
	kill -KILL "$pid" 2>/dev/null || true
	rc=0
	{ wait "$pid"; } 2>/dev/null || rc=$? # no "Killed" notice from bash
	if [ "$rc" -eq 0 ]; then
		finished=$((finished + 1))
		id=$(tail -n 1 "$T/c.out")
		[[ "$id" =~ ^[0-9a-f]{32}$ ]] || fail "round $r: create finished without an id"
	elif [ "$rc" -eq 137 ]; then
		killed=$((killed + 1))
		id=""
	else
		bad "round $r: create failed by itself (exit $rc): $(head -c 500 "$T/c.err")"
		id=""
	fi
	# Whatever the listing shows now must be a snapshot we know, or the one
	# this round committed just before the kill.
	for l in $(list_ids); do
		if [ -z "${expected[$l]:-}" ]; then
			if [ -n "$id" ] && [ "$l" != "$id" ]; then
				bad "round $r: unknown snapshot $l appeared"
				continue
			fi
			expected[$l]="$T/exp-$r.json"
			committed+=("$l")
			[ "$rc" -eq 137 ] && log "round $r: killed after the commit of $l"
		fi
	done
	if [ -n "$id" ] && [ -z "${expected[$id]:-}" ]; then
		bad "round $r: create printed $id, which snapshot list does not show"
	fi
	log "round $r: delay ${delay_ms} ms ${opt[*]:-(parent)}: $([ "$rc" -eq 0 ] && echo finished || echo "exit $rc"); ${#committed[@]} snapshots"
	# a full restore costs ~3 s: the latest snapshot every third round, a
	# random earlier one every sixth (check --read-data covers all at the end)
	if [ $((r % 3)) -eq 1 ]; then
		last=${committed[-1]}
		restore_and_compare "$last" "${expected[$last]}" "round $r: latest snapshot $last" || true
	fi
	if [ $((r % 6)) -eq 0 ]; then
		pick=${committed[RANDOM % ${#committed[@]}]}
		restore_and_compare "$pick" "${expected[$pick]}" "round $r: earlier snapshot $pick" || true
	fi
	if [ $((r % 8)) -eq 0 ]; then
		hb_try gc
		[ "$HB_RC" -eq 0 ] || bad "round $r: gc after a kill exited $HB_RC: $(head -c 500 "$T/err")"
		hb_try check
		[ "$HB_RC" -eq 0 ] || bad "round $r: check after gc exited $HB_RC: $(head -c 500 "$T/err")"
	fi
done
log "$killed creates killed, $finished finished, ${#committed[@]} snapshots in all"
[ "$killed" -ge $((ROUNDS / 4)) ] || bad "only $killed of $ROUNDS creates were killed: the delays do not hit the create"

# The end: gc, a clean check of every byte, no leftovers, every snapshot exact.
hb_try gc
[ "$HB_RC" -eq 0 ] || bad "final gc exited $HB_RC: $(head -c 500 "$T/err")"
hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "check --read-data after gc exited $HB_RC: $(head -c 1000 "$T/err")"
left=$(find "$HIBERBOX_REPO" -name '*.tmp.*' | head -n 5)
[ -z "$left" ] || bad "gc left temporary files of killed writers: $left"
hb_try --json check
[ "$HB_RC" -ne 0 ] || [ "$(json_get "$(cat "$T/out")" garbage_packs)" -eq 0 ] ||
	bad "after gc, check still counts garbage packs: $(cat "$T/out")"
# Every snapshot's data was verified by check --read-data; restore a spread
# of them exactly (all of them with HB_CRASH_ALL=1).
n=${#committed[@]}
if [ -n "${HB_CRASH_ALL:-}" ]; then
	picks=$(seq 0 $((n - 1)))
else
	picks=$(printf '%s\n' 0 $((n / 4)) $((n / 2)) $((3 * n / 4)) $((n - 2)) $((n - 1)) | sort -un)
fi
for k in $picks; do
	[ "$k" -ge 0 ] || continue
	id=${committed[$k]}
	restore_and_compare "$id" "${expected[$id]}" "after gc: snapshot #$k $id" || true
done
