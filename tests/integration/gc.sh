#!/bin/bash
# gc, check and diff through the real CLI on real trees:
#   - gc removes the data of a removed snapshot (the repository shrinks), and
#     --dry-run changes nothing;
#   - gc keeps everything of kept snapshots (all restored and compared with
#     diff -r against restores made before gc; check --read-data clean);
#   - a mostly-garbage pack is repacked (the old pack goes, data stays);
#     a little garbage is left alone unless --repack-percent says otherwise;
#   - leftovers of a SIGKILLed `snapshot create` are garbage that gc removes;
#   - gc refuses while a writer holds the lock, and the writer's snapshot is
#     complete afterwards; gc --wait waits for the writer and then runs;
#   - check --read-data names chunk and pack of a flipped byte;
#   - check on a deleted index file, truncated pack, corrupt or truncated
#     manifest fails with one line naming the problem;
#   - snapshot diff lists added, removed and changed paths, sorted;
#   - gc keeps the dictionary chunks use and removes one they do not.
set -euo pipefail
shopt -s extglob nullglob
source "$(dirname "$0")/lib.sh"
setup_tmp

REPO=$HIBERBOX_REPO
hb_ok init >/dev/null

# Packs on the store (temporary files of writers in flight excluded).
pack_files() {
	local f
	for f in "$REPO"/packs/*/!(*.tmp.*); do
		printf '%s\n' "$f"
	done
}
pack_count() {
	local f=("$REPO"/packs/*/!(*.tmp.*))
	echo "${#f[@]}"
}
pack_bytes() { pack_files | xargs -r stat -c %s | awk '{ s += $1 } END { print s + 0 }'; }
# Every object of a repository with its size (locks/ excluded: they come and
# go; so does refs/gc, the mark a gc that took its lock writes first).
repo_listing() { (cd "${1:-$REPO}" && find . -type f ! -path './locks/*' ! -path './refs/gc' -printf '%P %s\n' | LC_ALL=C sort); }

# gc_json ARGS...: run gc --json, print its JSON.
gc_json() { hb_ok --json gc "$@"; }

# check_clean DESC ARGS...: check must pass and report no garbage.
check_clean() {
	local desc=$1
	shift
	hb_try --json check "$@"
	if [ "$HB_RC" -ne 0 ]; then
		bad "$desc: check $* exited $HB_RC: $(head -c 2000 "$T/err")"
		return 1
	fi
	if [ "$(json_get "$(cat "$T/out")" garbage_packs)" != 0 ]; then
		bad "$desc: check $* reports garbage packs: $(head -c 1000 "$T/err")"
		return 1
	fi
}

# restore_to ID DIR DESC: restore, or `bad`.
restore_to() {
	hb_try snapshot restore "$1" "$2"
	[ "$HB_RC" -eq 0 ] || { bad "$3: restore $1 exited $HB_RC: $(head -c 1000 "$T/err")"; return 1; }
}

# flip_byte FILE OFFSET: invert the low bit of one byte in place.
flip_byte() {
	local v
	v=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	[ -n "$v" ] || fail "flip_byte: $1 has no byte at $2"
	printf "\\x$(printf %02x $((v ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# problem_lines: the lines of $T/err that report problems (not notes, not the
# CLI's closing summary).
problem_lines() { grep -v -e '^note: ' -e '^hiberbox: check found' "$T/err" || true; }

# new_packs BEFORE_LIST: packs now present that were not in BEFORE_LIST (a file).
new_packs() { pack_files | LC_ALL=C sort | comm -13 "$1" -; }

# ---------------------------------------------------------------------------
log "gc removes the data of a removed snapshot"
mkdir -p "$T/a" "$T/b"
randfile "$T/a/one" 6000000 a1
randfile "$T/b/two" 3000000 b1
A=$(snapshot_create "$T/a")
B=$(snapshot_create "$T/b")
before=$(pack_bytes)
hb_ok snapshot rm "$A"

listing=$(repo_listing)
out=$(gc_json --dry-run)
[ "$(repo_listing)" = "$listing" ] || bad "gc --dry-run changed the repository"
[ "$(json_get "$out" packs_removed)" -ge 1 ] || bad "gc --dry-run would remove no pack: $out"
[ "$(json_get "$out" bytes_freed)" -ge 5500000 ] || bad "gc --dry-run would free too little: $out"

out=$(gc_json)
after=$(pack_bytes)
log "packs: $before -> $after bytes; $(tr -d "\n " <<<"$out")"
[ $((before - after)) -ge 5500000 ] || bad "gc freed only $((before - after)) bytes of a 6 MB snapshot"
[ "$(json_get "$out" bytes_freed)" -ge 5500000 ] || bad "gc reports too few bytes freed: $out"
[ "$(json_get "$out" packs_removed)" -ge 1 ] || bad "gc reports no pack removed: $out"
dst=$T/restored-b
restore_to "$B" "$dst" "after gc" && { diff -r "$T/b" "$dst" >/dev/null || bad "snapshot B differs after gc"; }
rm -rf "$dst"
check_clean "after gc" --read-data
out=$(gc_json)
[ "$(json_get "$out" packs_removed)" = 0 ] && [ "$(json_get "$out" packs_rewritten)" = 0 ] ||
	bad "a second gc still found work: $out"

# ---------------------------------------------------------------------------
log "gc keeps everything of kept snapshots"
W=$T/work
make_small_tree "$W/src" 400 7
mkdir -p "$W/big"
randfile "$W/big/blob" 5000000 w0
declare -a ids=()
for i in 1 2 3 4 5; do
	randfile "$W/big/new-$i" 1500000 "n$i"
	rm -f "$W/big/new-$((i - 2))"
	# an 8-byte edit in the middle of the big blob
	printf 'edit%04d' "$i" | dd of="$W/big/blob" bs=1 seek=$((2500000 + i * 1000)) conv=notrunc status=none
	rm -rf "$W/src/$(ls "$W/src" | head -n 1)"
	echo "version $i" >"$W/src/version-$i"
	rm -rf "$T/expect-$i"
	cp -a "$W" "$T/expect-$i"
	ids[$i]=$(snapshot_create "$W")
done
hb_ok snapshot rm "${ids[1]}"
hb_ok snapshot rm "${ids[3]}"
keep=(2 4 5)
for i in "${keep[@]}"; do
	restore_to "${ids[$i]}" "$T/pre-$i" "before gc"
done
out=$(gc_json)
log "gc: $(tr -d "\n " <<<"$out")"
for i in "${keep[@]}"; do
	if restore_to "${ids[$i]}" "$T/post-$i" "after gc"; then
		diff -r "$T/pre-$i" "$T/post-$i" >/dev/null ||
			bad "snapshot $i restored after gc differs from its restore before gc"
		diff -r "$T/expect-$i" "$T/post-$i" >/dev/null ||
			bad "snapshot $i restored after gc differs from the tree it was made of"
	fi
	rm -rf "$T/pre-$i" "$T/post-$i"
done
check_clean "history after gc" --read-data

# ---------------------------------------------------------------------------
log "a mostly-garbage pack is repacked"
R=$T/rp
mkdir -p "$R"
randfile "$R/keep" 600000 k1
randfile "$R/drop" 2400000 d1
pack_files | LC_ALL=C sort >"$T/packs-before"
S1=$(snapshot_create "$R")
mapfile -t made < <(new_packs "$T/packs-before")
[ "${#made[@]}" -eq 1 ] || fail "setup: expected the 3 MB snapshot to make one pack, got ${#made[@]}"
rm "$R/drop"
S2=$(snapshot_create "$R")
hb_ok snapshot rm "$S1"
before=$(pack_bytes)
out=$(gc_json)
log "gc: $(tr -d "\n " <<<"$out")"
[ "$(json_get "$out" packs_rewritten)" -ge 1 ] || bad "a pack 80% garbage was not repacked: $out"
[ ! -e "${made[0]}" ] || bad "the repacked pack ${made[0]} is still there"
after=$(pack_bytes)
[ $((before - after)) -ge 2000000 ] || bad "repacking freed only $((before - after)) bytes"
dst=$T/restored-rp
restore_to "$S2" "$dst" "after repack" && { cmp -s "$R/keep" "$dst/keep" || bad "keep differs after repack"; }
rm -rf "$dst"
check_clean "after repack" --read-data

# A little garbage is left where it is, unless asked.
R2=$T/rp2
mkdir -p "$R2"
randfile "$R2/keep" 2000000 k2
randfile "$R2/drop" 600000 d2
pack_files | LC_ALL=C sort >"$T/packs-before"
S3=$(snapshot_create "$R2")
mapfile -t made < <(new_packs "$T/packs-before")
[ "${#made[@]}" -eq 1 ] || fail "setup: expected the 2.6 MB snapshot to make one pack, got ${#made[@]}"
rm "$R2/drop"
S4=$(snapshot_create "$R2")
hb_ok snapshot rm "$S3"
gc_json >/dev/null
[ -e "${made[0]}" ] || bad "a pack 23% garbage was repacked by default"
gc_json --repack-percent 10 >/dev/null
[ ! -e "${made[0]}" ] || bad "--repack-percent 10 did not repack a pack 23% garbage"
dst=$T/restored-rp2
restore_to "$S4" "$dst" "after repack 2" && { cmp -s "$R2/keep" "$dst/keep" || bad "keep differs after the second repack"; }
rm -rf "$dst"
check_clean "after the second repack" --read-data

# ---------------------------------------------------------------------------
log "gc killed before each of its changes leaves every kept snapshot readable"
# A repository of its own with every kind of gc work: packs to repack (three
# snapshots whose big file was dropped), a pack to delete (a removed
# snapshot), several index files to merge.
CR=$T/crash-repo
export HIBERBOX_REPO=$CR
hb_ok init >/dev/null
declare -a kept=()
for i in 1 2 3; do
	mkdir -p "$T/c$i"
	randfile "$T/c$i/keep" 400000 "ck$i"
	randfile "$T/c$i/drop" 1500000 "cd$i"
	P=$(snapshot_create "$T/c$i")
	rm "$T/c$i/drop"
	kept[$i]=$(snapshot_create "$T/c$i")
	hb_ok snapshot rm "$P"
done
mkdir -p "$T/c4"
randfile "$T/c4/gone" 1000000 cg
hb_ok snapshot rm "$(snapshot_create "$T/c4")"
cp -a "$CR" "$T/crash-repo.orig"
completed=0
for ((n = 1; n <= 200; n++)); do
	rm -rf "$CR"
	cp -a "$T/crash-repo.orig" "$CR"
	rc=0
	HIBERBOX_TEST_GC_CRASH=$n hb gc >/dev/null 2>"$T/gc-err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		completed=1
		break
	fi
	[ "$rc" -eq 137 ] || { bad "gc to be killed at change $n exited $rc: $(head -c 500 "$T/gc-err")"; break; }
	for i in 1 2 3; do
		hb_try snapshot restore "${kept[$i]}" "$T/crash-restored"
		if [ "$HB_RC" -ne 0 ]; then
			bad "gc killed before change $n: snapshot $i cannot be restored: $(head -c 500 "$T/err")"
		elif ! cmp -s "$T/c$i/keep" "$T/crash-restored/keep"; then
			bad "gc killed before change $n: snapshot $i restores wrong data"
		fi
		rm -rf "$T/crash-restored"
	done
	hb_try check
	[ "$HB_RC" -eq 0 ] || bad "gc killed before change $n: check finds errors: $(head -c 1000 "$T/err")"
	# The next gc finishes the work.
	hb_ok gc >/dev/null
	hb_try --json check --read-data
	if [ "$HB_RC" -ne 0 ] || [ "$(json_get "$(cat "$T/out")" garbage_packs)" != 0 ]; then
		bad "gc killed before change $n, then gc: check --read-data not clean: $(head -c 1000 "$T/err")"
	fi
done
[ "$completed" -eq 1 ] || bad "gc never completed with the crash hook"
[ "$n" -ge 10 ] || bad "gc made only $((n - 1)) changes: the crash test covered too little"
log "gc was killed before each of its $((n - 1)) changes"
rm -rf "$CR" "$T/crash-repo.orig"
export HIBERBOX_REPO=$REPO

# ---------------------------------------------------------------------------
# A writer caught in the middle: started in the background, stopped (or
# killed) as soon as its first pack is on the store, before its commit.
K=$T/kill
mkdir -p "$K"
randfile "$K/huge" 160000000 kk

# start_writer: sets WPID to a `snapshot create` that has stored at least one
# pack and has not finished; returns 1 if it finished first.
start_writer() {
	local n0 end=$((SECONDS + 120))
	n0=$(pack_count)
	"$HIBERBOX" snapshot create "$K" --no-parent >"$T/writer.out" 2>"$T/writer.err" &
	WPID=$!
	while [ "$SECONDS" -lt "$end" ]; do
		[ "$(pack_count)" -gt "$n0" ] && return 0
		kill -0 "$WPID" 2>/dev/null || return 1
	done
	return 1
}

log "leftovers of a SIGKILLed snapshot create"
snaps_before=$(list_ids | LC_ALL=C sort)
caught=0
for attempt in 1 2 3 4 5; do
	if start_writer; then
		kill -KILL "$WPID"
		wait "$WPID" 2>/dev/null || true
		caught=1
		break
	fi
	wait "$WPID" 2>/dev/null || true
	# Finished before we noticed: forget it and try again.
	for id in $(list_ids | LC_ALL=C sort | comm -13 <(printf '%s\n' "$snaps_before") -); do
		hb_ok snapshot rm "$id"
	done
	hb_ok gc >/dev/null
done
[ "$caught" -eq 1 ] || fail "setup: snapshot create always finished before its first pack could be seen"
[ "$(list_ids | LC_ALL=C sort)" = "$snaps_before" ] || bad "a SIGKILLed snapshot create recorded a snapshot"
# A few more kills at other moments (whatever they leave must go too).
for delay in 0.05 0.2 0.4; do
	"$HIBERBOX" snapshot create "$K" --no-parent >/dev/null 2>&1 &
	WPID=$!
	sleep "$delay"
	kill -KILL "$WPID" 2>/dev/null || true
	wait "$WPID" 2>/dev/null || true
done
for id in $(list_ids | LC_ALL=C sort | comm -13 <(printf '%s\n' "$snaps_before") -); do
	hb_ok snapshot rm "$id"
done
hb_try --json check
[ "$HB_RC" -eq 0 ] || bad "check after SIGKILL exited $HB_RC (leftovers are garbage, not errors): $(head -c 1000 "$T/err")"
[ "$(json_get "$(cat "$T/out")" garbage_packs)" -ge 1 ] || bad "check does not count the killed writer's packs as garbage"
grep -q '^note: pack [0-9a-f]\{32\} is in no index' "$T/err" || bad "check does not note the killed writer's packs: $(head -c 500 "$T/err")"
out=$(gc_json)
log "gc after kills: $(tr -d "\n " <<<"$out")"
[ "$(json_get "$out" packs_removed)" -ge 1 ] || bad "gc removed none of the killed writer's packs: $out"
check_clean "after SIGKILL and gc" --read-data
for i in "${keep[@]}"; do
	restore_to "${ids[$i]}" "$T/post-$i" "after SIGKILL and gc" &&
		{ diff -r "$T/expect-$i" "$T/post-$i" >/dev/null || bad "snapshot $i differs after SIGKILL and gc"; }
	rm -rf "$T/post-$i"
done

# ---------------------------------------------------------------------------
log "gc refuses while a writer holds the lock"
caught=0
for attempt in 1 2 3 4 5; do
	if start_writer; then
		kill -STOP "$WPID"
		# The signal is asynchronous: wait until every thread has stopped.
		while grep -hq '^State:[[:space:]]*[RSD]' /proc/"$WPID"/task/*/status 2>/dev/null; do
			sleep 0.01
		done
		caught=1
		break
	fi
	wait "$WPID" 2>/dev/null || true
	for id in $(list_ids | LC_ALL=C sort | comm -13 <(printf '%s\n' "$snaps_before") -); do
		hb_ok snapshot rm "$id"
	done
	hb_ok gc >/dev/null
done
[ "$caught" -eq 1 ] || fail "setup: snapshot create always finished before it could be stopped"
repo_listing >"$T/listing-before"
hb_try gc
if [ "$HB_RC" -eq 0 ]; then
	bad "gc ran while a writer held the lock"
else
	expect_in "$(cat "$T/err")" "busy.*pid $WPID" "gc beside a writer"
fi
# The same from another pid namespace on this host (a container sharing the
# host's name and the repository): there the writer's pid is no process, and
# gc took its lock for stale, removed the packs it had stored, and the
# writer then recorded a snapshot whose chunks were gone.
if is_root && command -v unshare >/dev/null; then
	rc=0
	timeout --kill-after=10 "$HB_TIMEOUT" unshare --pid --fork --mount-proc "$HIBERBOX" gc \
		>"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		bad "gc in another pid namespace ran while a writer held the lock: $(cat "$T/out")"
	else
		expect_in "$(cat "$T/err")" "busy.*pid $WPID" "gc in another pid namespace beside a writer"
	fi
fi
# A gc told to wait (cron beside a long snapshot create): --wait=SECONDS
# gives up after that long instead of 10 s; --wait alone waits past the 10 s
# for as long as the writer holds the lock, changing nothing meanwhile, and
# collects once the writer is done.
t0=$SECONDS
hb_try gc --wait=1
if [ "$HB_RC" -eq 0 ]; then
	bad "gc --wait=1 ran while a writer held the lock"
else
	expect_in "$(cat "$T/err")" "busy.*pid $WPID" "gc --wait=1 beside a writer"
	[ $((SECONDS - t0)) -lt 8 ] || bad "gc --wait=1 gave up only after $((SECONDS - t0)) s"
fi
# the value after a space too, as other options take theirs ("--wait 1"
# was refused: getopt gives an optional value only after '=')
t0=$SECONDS
hb_try gc --wait 1
if [ "$HB_RC" -eq 0 ]; then
	bad "gc --wait 1 ran while a writer held the lock"
else
	expect_in "$(cat "$T/err")" "busy.*pid $WPID" "gc --wait 1 beside a writer"
	[ $((SECONDS - t0)) -lt 8 ] || bad "gc --wait 1 gave up only after $((SECONDS - t0)) s"
fi
expect_usage_error "gc --wait 0" gc --wait 0 && expect_in "$(cat "$T/err")" "bad --wait '0'" "gc --wait 0" || true
expect_usage_error "gc --wait 2s" gc --wait 2s && expect_in "$(cat "$T/err")" "bad --wait '2s'" "gc --wait 2s" || true
expect_usage_error "gc --wait=0" gc --wait=0
expect_usage_error "gc --wait=soon" gc --wait=soon
timeout --kill-after=10 "$HB_TIMEOUT" "$HIBERBOX" gc --wait >"$T/gc-wait.out" 2>"$T/gc-wait.err" &
GC_WAIT_PID=$!
sleep 12
kill -0 "$GC_WAIT_PID" 2>/dev/null ||
	bad "gc --wait ended while the writer held the lock: $(head -c 500 "$T/gc-wait.err")"
repo_listing >"$T/listing-after"
diff "$T/listing-before" "$T/listing-after" >"$T/listing-diff" ||
	bad "a refused or waiting gc changed the repository:"$'\n'"$(head -c 2000 "$T/listing-diff")"
kill -CONT "$WPID"
wrc=0
wait "$WPID" || wrc=$?
[ "$wrc" -eq 0 ] || bad "the writer failed after gc was refused (exit $wrc): $(head -c 500 "$T/writer.err")"
gcrc=0
wait "$GC_WAIT_PID" || gcrc=$?
[ "$gcrc" -eq 0 ] || bad "gc --wait exited $gcrc after the writer finished: $(head -c 500 "$T/gc-wait.err")"
grep -q "packs removed" "$T/gc-wait.out" || bad "gc --wait printed '$(cat "$T/gc-wait.out")'"
W_ID=$(tail -n 1 "$T/writer.out")
if [[ "$W_ID" =~ ^[0-9a-f]{32}$ ]]; then
	dst=$T/restored-k
	restore_to "$W_ID" "$dst" "writer beside gc" && { cmp -s "$K/huge" "$dst/huge" || bad "the writer's snapshot differs"; }
	rm -rf "$dst"
fi
check_clean "after the writer" --read-data
hb_ok snapshot rm "$W_ID"
rm -rf "$K"
hb_ok gc >/dev/null

# ---------------------------------------------------------------------------
# A writer whose lock was removed while young (by a host whose clock runs an
# hour ahead, which takes it for stale, or by hand) must record nothing: a
# gc may have run meanwhile and taken the packs it stored.  It asked whether
# its lock was still there only once the lock was 5 minutes old, so it
# recorded a snapshot whose chunks gc had removed.
# HIBERBOX_TEST_CREATE_MIDREAD_WAIT holds the create in its last file, after
# the packs of the files before are stored.
# writer_refused WHAT PATTERN: the held writer $WPID must fail, saying
# PATTERN, and record nothing
writer_refused() {
	local wrc=0
	wait "$WPID" || wrc=$?
	if [ "$wrc" -eq 0 ]; then
		bad "$1 recorded snapshot $(tail -n 1 "$T/writer.out")"
	else
		expect_in "$(cat "$T/writer.err")" "$2" "$1"
	fi
}

log "a writer whose lock was removed meanwhile records nothing"
L=$T/lost
mkdir -p "$L"
for i in $(seq 10 40); do randfile "$L/a$i" 1000000 "lost$i"; done
randfile "$L/z" 20000000 lostz
snaps_before=$(list_ids | LC_ALL=C sort)
rm -f "$T/hold" && mkfifo "$T/hold"
HIBERBOX_TEST_CREATE_MIDREAD_WAIT="$T/hold" timeout --signal=KILL 120 "$HIBERBOX" snapshot create \
	"$L" --no-parent --threads 1 >"$T/writer.out" 2>"$T/writer.err" &
WPID=$!
# opening the FIFO waits for the writer to be held; closing it lets it go
timeout 60 bash -c 'exec 3>"$1" && rm -f "$2"/locks/* && "$3" gc >"$4" 2>&1' \
	_ "$T/hold" "$REPO" "$HIBERBOX" "$T/gc.out" ||
	bad "setup: the writer was not held, or gc with its lock gone failed: $(head -c 500 "$T/gc.out")"
writer_refused "a writer whose lock was removed" "lock was removed.*nothing was recorded"
[ "$(list_ids | LC_ALL=C sort)" = "$snaps_before" ] || bad "a writer without its lock changed the snapshot list"
rm -f "$T/hold"
rm -rf "$L"
hb_ok gc >/dev/null
check_clean "after a writer lost its lock" --read-data

# The same with the lock removed after the writer's last check that it was
# there, before its index (the writer stopped in between: SIGSTOP, a frozen
# VM, a stalled network, for longer than a lock lives): gc removed the packs
# it had stored, in no index yet, and the writer went on to record a
# snapshot naming them, and an index pointing into packs that were gone.
# gc now writes a mark (refs/gc) before it lists the snapshots, and the
# writer, once its manifest is stored, takes it and its index back if the
# mark changed since it took its lock.
log "a writer whose lock was removed after its last check records nothing"
L=$T/late
mkdir -p "$L"
for i in $(seq 10 20); do randfile "$L/a$i" 1000000 "late$i"; done
snaps_before=$(list_ids | LC_ALL=C sort)
rm -f "$T/hold" && mkfifo "$T/hold"
HIBERBOX_TEST_COMMIT_WAIT="$T/hold" timeout --signal=KILL 120 "$HIBERBOX" snapshot create \
	"$L" --no-parent >"$T/writer.out" 2>"$T/writer.err" &
WPID=$!
timeout 60 bash -c 'exec 3>"$1" && rm -f "$2"/locks/* && "$3" --json gc >"$4" 2>&1' \
	_ "$T/hold" "$REPO" "$HIBERBOX" "$T/gc.out" ||
	bad "setup: the writer was not held, or gc with its lock gone failed: $(head -c 500 "$T/gc.out")"
[ "$(json_get "$(cat "$T/gc.out")" packs_removed)" -ge 1 ] ||
	bad "setup: gc removed none of the held writer's packs: $(head -c 500 "$T/gc.out")"
writer_refused "a writer whose lock was removed after its check" "a gc ran.*nothing was recorded"
[ "$(list_ids | LC_ALL=C sort)" = "$snaps_before" ] ||
	bad "a writer whose lock went after its check changed the snapshot list"
check_clean "after a writer lost its lock after its check" --read-data
# Nothing it left behind is taken for stored: the same files again make a
# whole snapshot (an index of its pointing into removed packs would make
# this one name chunks that are gone).
LATE_ID=$(snapshot_create "$L")
restore_to "$LATE_ID" "$T/late-restored" "the same files after the writer lost its lock" &&
	{ diff -r "$L" "$T/late-restored" >/dev/null || bad "the same files after the writer lost its lock restore different"; }
rm -rf "$T/late-restored"
hb_ok snapshot rm "$LATE_ID"
rm -f "$T/hold"
rm -rf "$L"
hb_ok gc >/dev/null
check_clean "gc after a writer lost its lock after its check" --read-data

# ---------------------------------------------------------------------------
log "check --read-data names chunk and pack of a flipped byte"
F=$T/flip
mkdir -p "$F"
randfile "$F/data" 500000 f1
pack_files | LC_ALL=C sort >"$T/packs-before"
FID=$(snapshot_create "$F")
mapfile -t made < <(new_packs "$T/packs-before")
[ "${#made[@]}" -eq 1 ] || fail "setup: expected one new pack, got ${#made[@]}"
PACK=${made[0]}
PACK_ID=$(basename "$PACK")
flip_byte "$PACK" 1000
hb_try check
[ "$HB_RC" -eq 0 ] || bad "structural check fails on a flipped data byte (it cannot see it): $(head -c 500 "$T/err")"
hb_try check --read-data
if [ "$HB_RC" -eq 0 ]; then
	bad "check --read-data passes with a flipped byte in pack $PACK_ID"
else
	grep -qE "^pack $PACK_ID: chunk [0-9a-f]{32} at offset [0-9]+: " "$T/err" ||
		bad "check --read-data does not name chunk and pack: $(head -c 1000 "$T/err")"
	grep -q "snapshot $FID" "$T/err" || bad "check --read-data does not name the snapshot using the chunk: $(head -c 1000 "$T/err")"
fi
hb_try snapshot restore "$FID" "$T/restored-flip"
[ "$HB_RC" -ne 0 ] || bad "restore of a snapshot with a corrupt chunk succeeded"
rm -rf "$T/restored-flip"
flip_byte "$PACK" 1000
check_clean "after flipping the byte back" --read-data

# ---------------------------------------------------------------------------
log "check on damaged repositories"
# A small repository of its own, so that each damage hits one snapshot.
SMALL=$T/small-repo
mkdir -p "$T/s"
randfile "$T/s/file" 400000 s1
echo small >"$T/s/inline"
HIBERBOX_REPO=$SMALL hb_ok init >/dev/null
SID=$(HIBERBOX_REPO=$SMALL snapshot_create "$T/s")
HIBERBOX_REPO=$SMALL hb_ok check --read-data >/dev/null

# damage NAME COMMAND...: copy the small repository, run COMMAND in it (with
# $D set to the copy), then check must fail with one problem line matching
# the pattern in $WANT.
damage() {
	local name=$1
	shift
	D=$T/damaged-$name
	rm -rf "$D"
	cp -a "$SMALL" "$D"
	"$@"
	hb_try --repo "$D" check
	local lines
	lines=$(problem_lines)
	if [ "$HB_RC" -eq 0 ] || [ "$HB_RC" -ge 124 ]; then
		bad "check with $name exited $HB_RC: $(head -c 1000 "$T/err")"
	elif [ "$(grep -c . <<<"$lines")" -ne "${LINES_WANTED:-1}" ]; then
		bad "check with $name: expected ${LINES_WANTED:-1} problem line(s), got: $lines"
	elif ! grep -qE -- "$WANT" <<<"$lines"; then
		bad "check with $name: '$lines' does not match /$WANT/"
	fi
	rm -rf "$D"
}
rm_index() { rm "$D"/index/*; }
truncate_pack() { local p=("$D"/packs/*/*); truncate -s -50 "${p[0]}"; }
halve_pack() { local p=("$D"/packs/*/*); truncate -s $(($(stat -c %s "${p[0]}") / 2)) "${p[0]}"; }
rm_pack() { rm "$D"/packs/*/*; }
flip_manifest() { flip_byte "$D/snapshots/$SID" 40; }
truncate_manifest() { truncate -s 100 "$D/snapshots/$SID"; }
corrupt_index() { local i=("$D"/index/*); flip_byte "${i[0]}" 20; }
dangling_tag() { mkdir -p "$D/refs/tags"; echo 0123456789abcdef0123456789abcdef >"$D/refs/tags/dangling"; }
corrupt_tag() { mkdir -p "$D/refs/tags"; echo 'not an id' >"$D/refs/tags/broken"; }
WANT="snapshot $SID: .*not in the index" damage missing-index rm_index
WANT="^pack [0-9a-f]{32}: " damage truncated-pack truncate_pack
# Damage with consequences: the pack, and the snapshot that cannot be read.
LINES_WANTED=2 WANT="^pack [0-9a-f]{32}: .*past its end" damage halved-pack halve_pack
LINES_WANTED=2 WANT="^pack [0-9a-f]{32} is missing" damage missing-pack rm_pack
WANT="snapshot $SID" damage corrupt-manifest flip_manifest
WANT="^tag dangling points at snapshot 0123456789abcdef0123456789abcdef, which does not exist" damage dangling-tag dangling_tag
WANT="^tag broken: " damage corrupt-tag corrupt_tag
WANT="snapshot $SID" damage truncated-manifest truncate_manifest
# A corrupt index file, and in consequence chunks the snapshot cannot find.
LINES_WANTED=2 WANT="^index file index/[0-9a-f]{32}: " damage corrupt-index corrupt_index

# gc on a repository with an unreadable snapshot must stop before deleting
# anything: with a partial view, live data would look like garbage.
D=$T/damaged-gc
cp -a "$SMALL" "$D"
mkdir -p "$T/s2"
randfile "$T/s2/other" 300000 s2
HIBERBOX_REPO=$D hb_ok snapshot rm "$(HIBERBOX_REPO=$D snapshot_create "$T/s2")"
flip_byte "$D/snapshots/$SID" 40
repo_listing "$D" >"$T/listing-before"
hb_try --repo "$D" gc
[ "$HB_RC" -ne 0 ] || bad "gc ran with a corrupt manifest"
grep -q "nothing deleted" "$T/err" || bad "gc with a corrupt manifest does not say it deleted nothing: $(head -c 500 "$T/err")"
repo_listing "$D" >"$T/listing-after"
diff "$T/listing-before" "$T/listing-after" >"$T/listing-diff" ||
	bad "gc with a corrupt manifest changed the repository:"$'\n'"$(head -c 2000 "$T/listing-diff")"
rm -rf "$D"

# ---------------------------------------------------------------------------
log "snapshot diff"
D=$T/diff
mkdir -p "$D/keep" "$D/gone" "$D/typechange-dir"
echo same >"$D/keep/same"
echo old >"$D/keep/modified"
echo x >"$D/keep/chmod"
echo x >"$D/keep/touched"
echo bye >"$D/removed-file"
echo a >"$D/gone/a"
echo b >"$D/gone/b"
ln -s target1 "$D/link"
echo f >"$D/typechange"
echo z >"$D/typechange-dir/z"
randfile "$D/big" 300000 big1
echo x >"$D/keep/xattr"
xattrs=0
setfattr -n user.color -v red "$D/keep/xattr" 2>/dev/null && xattrs=1
touch -d '2020-01-01 00:00:00' "$D/keep/modified" "$D/big" "$D/keep/xattr"
DA=$(snapshot_create "$D")
echo new >"$D/keep/modified"
chmod 600 "$D/keep/chmod"
touch -d '2021-01-01 00:00:00' "$D/keep/touched"
rm "$D/removed-file"
rm -r "$D/gone"
mkdir -p "$D/added-dir/sub"
echo n >"$D/added-dir/sub/new"
echo n2 >"$D/added-file"
ln -sfn target2 "$D/link"
rm "$D/typechange"
mkdir "$D/typechange"
echo in >"$D/typechange/inner"
rm -r "$D/typechange-dir"
echo file >"$D/typechange-dir"
flip_byte "$D/big" 150000
if [ "$xattrs" -eq 1 ]; then
	setfattr -n user.color -v blue "$D/keep/xattr"
	touch -d '2020-01-01 00:00:00' "$D/keep/xattr"
fi
touch -d '2020-01-01 00:00:00' "$D/keep/modified" "$D/big"
DB=$(snapshot_create "$D")
cat >"$T/diff-expected" <<'EOF'
+ added-dir
+ added-dir/sub
+ added-dir/sub/new
+ added-file
M big
- gone
- gone/a
- gone/b
M keep/chmod
M keep/modified
M keep/touched
M keep/xattr
M link
- removed-file
M typechange
M typechange-dir
- typechange-dir/z
+ typechange/inner
EOF
[ "$xattrs" -eq 1 ] || { log "no user xattrs here: not testing them"; sed -i '/keep\/xattr/d' "$T/diff-expected"; }
hb_ok snapshot diff "$DA" "$DB" >"$T/diff-out"
diff -u "$T/diff-expected" "$T/diff-out" >"$T/diff-diff" || bad "snapshot diff A B:"$'\n'"$(cat "$T/diff-diff")"
# The other way round: + and - swap, M stays.
sed 's/^+/x/; s/^-/+/; s/^x/-/' "$T/diff-expected" >"$T/diff-expected-rev"
hb_ok snapshot diff "$DB" "$DA" >"$T/diff-out"
diff -u "$T/diff-expected-rev" "$T/diff-out" >"$T/diff-diff" || bad "snapshot diff B A:"$'\n'"$(cat "$T/diff-diff")"
hb_ok snapshot diff "$DA" "$DA" >"$T/diff-out"
[ ! -s "$T/diff-out" ] || bad "snapshot diff A A is not empty: $(head -c 500 "$T/diff-out")"
# Snapshots of different trees: everything of one is gone, of the other new.
hb_ok snapshot diff "$B" "$S4" >"$T/diff-out"
[ "$(cat "$T/diff-out")" = "+ keep"$'\n'"- two" ] || bad "snapshot diff of unrelated trees: $(head -c 500 "$T/diff-out")"

# --- dictionaries: gc keeps the one chunks use, removes any other ----------------------------
used_dicts=$(cd "$REPO" && ls dicts)
[ -n "$used_dicts" ] || bad "no dictionary in a repository of thousands of small files"
cp "$REPO/dicts/$(head -n 1 <<<"$used_dicts")" "$REPO/dicts/000001" # as a crashed writer leaves one
gc_json >/dev/null
[ ! -e "$REPO/dicts/000001" ] || bad "gc kept a dictionary no chunk uses"
[ "$(cd "$REPO" && ls dicts)" = "$used_dicts" ] || bad "gc removed a dictionary in use: $(cd "$REPO" && ls dicts)"

check_clean "at the end" --read-data

# --- a kept pack's dead blobs keep their dictionary, gc after gc -------------------------------
# One pack holds small files (compressed with a trained dictionary) and a
# large random file.  Once the small files are garbage, the pack is mostly
# live, so gc keeps it; its dead blobs stay in it, and check --read-data
# decodes every blob of a pack: a second gc must not take their dictionary.
export HIBERBOX_REPO=$T/dict-repo
hb_ok init >/dev/null
mkdir -p "$T/dict-src/js"
python3 - "$T/dict-src/js" <<'PY'
import random, sys
random.seed(3)
words = ["const", "return", "function", "await", "export", "import", "value", "index", "options"]
for i in range(400):  # 4-8 KiB each: chunks, not inline, and samples to train on
    lines = ["export function handler%d(req, res) {" % i]
    while sum(map(len, lines)) < random.randint(4096, 8192):
        lines.append("  %s %s_%d = %s(%d);" % (random.choice(words), random.choice(words),
                                               random.randint(0, 999), random.choice(words), i))
    open("%s/f%d.js" % (sys.argv[1], i), "w").write("\n".join(lines) + "\n}\n")
PY
head -c 3145728 /dev/urandom >"$T/dict-src/big.bin"
dict_a=$(snapshot_create "$T/dict-src")
[ -n "$(cd "$HIBERBOX_REPO" && ls dicts)" ] || bad "no dictionary trained for 400 small files"
rm -r "$T/dict-src/js"
snapshot_create "$T/dict-src" >/dev/null
hb_ok snapshot rm "$dict_a" >/dev/null
gc_json >/dev/null
gc_json >/dev/null
[ -n "$(cd "$HIBERBOX_REPO" && ls dicts)" ] || bad "the second gc removed the dictionary of a kept pack's blobs"
check_clean "after two gcs that kept a pack with dead blobs" --read-data
export HIBERBOX_REPO=$REPO
finish
