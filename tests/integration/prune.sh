#!/bin/bash
# snapshot prune: a retention policy per directory snapshotted.
#   - --keep-last N keeps the newest N untagged snapshots of each directory,
#     whatever the other directories hold; tagged ones are kept besides;
#   - --keep-within D keeps what is younger than D; each directory's newest
#     is kept whatever the policy (the next snapshot's parent);
#   - --dry-run removes nothing; --source limits to one directory;
#   - a snapshot a mount reads from is kept ("in use"), and so is a commit of
#     a mount (no directory: its owner removes it);
#   - what is kept restores intact after gc; bad policies: one line, exit 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null

mkdir -p "$T/a" "$T/b"
A=() B=()
for i in 1 2 3 4 5; do
	randfile "$T/a/f$i" 50000 "$i"
	A+=("$(snapshot_create "$T/a")")
done
echo one >"$T/b/x"
B+=("$(snapshot_create "$T/b")")
echo two >"$T/b/y"
B+=("$(snapshot_create "$T/b" --tag release)")
echo three >"$T/b/z"
B+=("$(snapshot_create "$T/b")")
sorted_ids() { list_ids | sort; }
ids_of() { printf '%s\n' "$@" | sort; }

log "no policy, bad values: usage errors, nothing removed"
before=$(sorted_ids)
expect_usage_error "prune without a policy" snapshot prune || true
expect_usage_error "bad --keep-last" snapshot prune --keep-last -1 || true
expect_usage_error "bad --keep-last" snapshot prune --keep-last 2x || true
expect_usage_error "bad --keep-within" snapshot prune --keep-within 3y || true
expect_usage_error "bad --keep-within" snapshot prune --keep-within -5d || true
expect_usage_error "an argument" snapshot prune --keep-last 1 extra || true
[ "$(sorted_ids)" = "$before" ] || bad "a refused prune removed snapshots"

log "--dry-run says what --keep-last 2 would remove, and removes nothing"
hb_ok --json snapshot prune --keep-last 2 --dry-run >"$T/dry.json"
python3 - "$T/dry.json" "${A[0]}" "${A[1]}" "${A[2]}" <<'EOF' || bad "dry run: $(cat "$T/dry.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["dry_run"] is True
assert sorted(r["id"] for r in j["removed"]) == sorted(sys.argv[2:]), j["removed"]
reasons = {k["id"]: k["reason"] for k in j["kept"]}
assert len(reasons) == 5, reasons
EOF
[ "$(sorted_ids)" = "$before" ] || bad "--dry-run removed snapshots"

log "--keep-last 1 --source a: b's untouched; a keeps its newest"
hb_ok snapshot prune --keep-last 1 --source "$T/a" >"$T/out"
grep -q "^4 removed, " "$T/out" || bad "prune --source a: $(cat "$T/out")"
[ "$(sorted_ids)" = "$(ids_of "${A[4]}" "${B[@]}")" ] || bad "prune --source a kept the wrong ones: $(sorted_ids)"

log "--keep-last 0: each directory's newest and the tagged stay"
hb_ok snapshot prune --keep-last 0 >"$T/out"
[ "$(sorted_ids)" = "$(ids_of "${A[4]}" "${B[1]}" "${B[2]}")" ] ||
	bad "prune --keep-last 0: $(sorted_ids) ($(cat "$T/out"))"
# the next snapshot of b still finds its parent and reuses its files
id=$(snapshot_create "$T/b")
[ "$(json_get "$(show_json "$id")" parent)" = "${B[2]}" ] || bad "after prune, b's next snapshot lost its parent"
B+=("$id")

log "--keep-within: the young stay, the old go (but not a directory's newest)"
echo more >"$T/a/g"
A+=("$(snapshot_create "$T/a")") # A[5]: a's newest, young
sleep 3
echo c >"$T/c" && mkdir "$T/cdir" && cp "$T/c" "$T/cdir/"
C=$(snapshot_create "$T/cdir")
hb_ok --json snapshot prune --keep-within 2s >"$T/out"
# removed: A[4] (old, a has a newer one) and B[3]? no: B[3] is b's newest
[ "$(sorted_ids)" = "$(ids_of "${A[5]}" "${B[1]}" "${B[3]}" "$C")" ] ||
	bad "prune --keep-within 2s: $(sorted_ids) ($(cat "$T/out"))"
hb_ok snapshot prune --keep-within 1d >"$T/out"
grep -q "^0 removed, 4 kept" "$T/out" || bad "prune --keep-within 1d removed something: $(cat "$T/out")"

log "in use by a mount: kept; a commit of the mount (no directory): kept"
echo newer >"$T/a/h"
A+=("$(snapshot_create "$T/a")") # A[6] newest; A[5] now prunable
fs_mount "${A[5]}" "$T/mnt"
echo in-mount >"$T/mnt/m"
COMMIT=$(fs_commit "$T/mnt")
hb_ok --json snapshot prune --keep-last 0 >"$T/out"
python3 - "$T/out" "${A[5]}" "$COMMIT" <<'EOF' || bad "prune with a mount: $(cat "$T/out")"
import json, sys
j = json.load(open(sys.argv[1]))
kept = {k["id"]: k["reason"] for k in j["kept"]}
assert kept[sys.argv[2]].startswith("in use"), kept
assert "not of a directory" in kept[sys.argv[3]], kept
assert not j["removed"], j["removed"]
EOF
hb_ok snapshot prune --keep-last 0 --dry-run >"$T/out"
grep -q "^kept ${A[5]:0:12} .* in use: mounted at $T/mnt" "$T/out" || bad "prune does not say why a mounted snapshot stays: $(cat "$T/out")"
fs_umount "$T/mnt"
hb_ok snapshot prune --keep-last 0 >"$T/out"
grep -q "^1 removed" "$T/out" || bad "after umount, prune: $(cat "$T/out")"
list_ids | grep -q "$COMMIT" || bad "prune removed a commit of a mount"

log "what is kept restores intact after gc"
hb_ok gc >/dev/null
hb_ok check --read-data >/dev/null
hb_ok snapshot restore "${A[6]}" "$T/ra"
diff -r "$T/a" "$T/ra" >/dev/null || bad "a's newest differs after prune + gc"
hb_ok snapshot restore release "$T/rb"
[ "$(cat "$T/rb/y")" = two ] && [ ! -e "$T/rb/z" ] || bad "the tagged snapshot of b differs after prune + gc"
finish
