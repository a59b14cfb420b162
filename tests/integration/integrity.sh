#!/bin/bash
# Integrity: damage a repository in every way the issue names and check that
# hiberbox says so in one clear line, exits non-zero, never hands out wrong
# data as valid, and keeps serving what the damage does not touch.
#
# Each case starts from a pristine copy of the same repository holding two
# snapshots with disjoint data: A (damaged) and B (must stay restorable).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
REPOTOOL="$ITDIR/repotool.py"
hb_ok init >/dev/null

mkdir -p "$T/a/sub" "$T/b"
randfile "$T/a/first.bin" 3000000 ia
randfile "$T/a/sub/second.bin" 2500000 ib
make_small_tree "$T/a/src" 200 11
randfile "$T/b/third.bin" 2000000 ic
echo "small b" >"$T/b/small"
python3 "$TREEGEN" settimes "$T/a" 1
python3 "$TREEGEN" settimes "$T/b" 2
dump_tree "$T/a" "$T/a.json"
dump_tree "$T/b" "$T/b.json"

list_repo() { (cd "$HIBERBOX_REPO" && find "$1" -type f 2>/dev/null | sort); }
A=$(snapshot_create "$T/a" --tag a)
packs_a=$(list_repo packs)
index_a=$(list_repo index)
B=$(snapshot_create "$T/b" --tag b)
packs_b=$(comm -13 <(echo "$packs_a") <(list_repo packs))
[ -n "$packs_a" ] && [ -n "$packs_b" ] || fail "expected packs for both snapshots (A: $packs_a; B: $packs_b)"
hb_ok check --read-data
cp -a "$HIBERBOX_REPO" "$T/pristine"

fresh_repo() { rm -rf "$HIBERBOX_REPO" && cp -a "$T/pristine" "$HIBERBOX_REPO"; }
short() { printf '%s' "${1:0:12}"; }

# B must restore exactly whatever was done to A's data.
b_still_fine() {
	restore_and_compare "$B" "$T/b.json" "$1: snapshot B (untouched data)" || true
}

# restore_fails_cleanly CASE ID: restore must fail with one line; every file
# it leaves behind is either exactly right or named in that line.
restore_fails_cleanly() {
	local case=$1 id=$2 dst="$T/restore-$RANDOM"
	expect_error "$case: restore" snapshot restore "$id" "$dst" || { rm -rf "$dst"; return 1; }
	[ -d "$dst" ] || return 0
	local wrong
	wrong=$(python3 - "$T/a.json" "$dst" "$HB_ERR" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["ITDIR"])
import treecmp
expected = treecmp.load(sys.argv[1])
got = treecmp.scan(sys.argv[2])
msg = sys.argv[3]
for path, r in sorted(got.items()):
    e = expected.get(path)
    if r["kind"] != "file" or e is None or e["kind"] != "file":
        continue
    if (r["size"], r["sha256"]) != (e["size"], e["sha256"]) and path not in msg:
        print("%s (size %d of %d)" % (path, r["size"], e["size"]))
EOF
	)
	rm -rf "$dst"
	if [ -n "$wrong" ]; then
		bad "$case: restore left $(wc -l <<<"$wrong") file(s) with wrong content that its error does not name, e.g. $(head -n 4 <<<"$wrong" | tr '\n' ';') (error: $HB_ERR)"
	fi
}
export ITDIR

# --- one flipped byte inside a chunk of A ------------------------------------------
fresh_repo
pack=$(head -n 1 <<<"$packs_a")
read -r chunk off len _raw _flags < <(python3 "$REPOTOOL" pack-entries "$HIBERBOX_REPO/$pack" | sort -k3,3nr | head -n 1)
packid=$(basename "$pack")
pos=$((off + len / 2))
python3 - "$HIBERBOX_REPO/$pack" "$pos" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x40]))
EOF
log "flipped byte $pos of pack $(short "$packid") (chunk $(short "$chunk"))"
hb_try check --read-data
if [ "$HB_RC" -eq 0 ] || [ "$HB_RC" -gt 128 ]; then
	bad "flipped byte: check --read-data exited $HB_RC"
else
	grep -q "$(short "$chunk")" "$T/err" || bad "flipped byte: check --read-data does not name chunk $chunk: $(head -c 600 "$T/err")"
	grep -q "$(short "$packid")" "$T/err" || bad "flipped byte: check --read-data does not name pack $packid: $(head -c 600 "$T/err")"
	tail -n 1 "$T/err" | grep -q '^hiberbox: ' || bad "flipped byte: check's last stderr line is not 'hiberbox: ...'"
fi
if restore_fails_cleanly "flipped byte" a; then
	expect_in "$HB_ERR" "$(short "$chunk")" "flipped byte: restore error names the chunk" || true
	expect_in "$HB_ERR" "$(short "$packid")" "flipped byte: restore error names the pack" || true
fi
# snapshot cat of each of A's files: the damaged one fails naming the chunk,
# every other one gives its exact bytes
cat_failed=0
while IFS= read -r -d '' f; do
	rel=${f#"$T/a/"}
	if hb snapshot cat a "$rel" >"$T/cat.out" 2>"$T/err"; then
		cmp -s "$T/cat.out" "$f" || bad "flipped byte: cat '$rel' succeeded with wrong bytes"
	else
		cat_failed=$((cat_failed + 1))
		[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$(short "$chunk")" "$T/err" ||
			bad "flipped byte: cat '$rel' failed without one line naming the chunk: $(head -c 400 "$T/err")"
	fi
done < <(find "$T/a" -type f -print0)
[ "$cat_failed" -ge 1 ] || bad "flipped byte: snapshot cat read every file of A without an error"
python3 "$TREEGEN" settimes "$T/a" 1 # the reads above moved atimes that later cases compare
b_still_fine "flipped byte"

# --- a truncated pack ------------------------------------------------------------------
fresh_repo
truncate -s $(($(stat -c %s "$HIBERBOX_REPO/$pack") / 2)) "$HIBERBOX_REPO/$pack"
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "truncated pack: check (structure) exited $HB_RC"
grep -q "$(short "$packid")" "$T/err" || bad "truncated pack: check does not name pack $packid: $(head -c 600 "$T/err")"
hb_try check --read-data
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "truncated pack: check --read-data exited $HB_RC"
restore_fails_cleanly "truncated pack" a || true
b_still_fine "truncated pack"

# --- an empty pack file ---------------------------------------------------------------------
fresh_repo
: >"$HIBERBOX_REPO/$pack"
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "empty pack: check exited $HB_RC"
restore_fails_cleanly "empty pack" a || true
b_still_fine "empty pack"

# --- damage in a pack's trailer (the chunks themselves are fine) ---------------------
fresh_repo
sz=$(stat -c %s "$HIBERBOX_REPO/$pack")
python3 - "$HIBERBOX_REPO/$pack" $((sz - 24 - 10)) <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 1]))
EOF
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "damaged pack trailer: check (structure) exited $HB_RC"

# --- a missing index file --------------------------------------------------------------------
fresh_repo
for f in $index_a; do rm "$HIBERBOX_REPO/$f"; done
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "missing index: check exited $HB_RC"
restore_fails_cleanly "missing index" a || true
b_still_fine "missing index"
# a new snapshot of the unchanged tree must not reuse what the index lost:
# its files are read again, and it restores whole
A2=$(snapshot_create "$T/a")
restore_and_compare "$A2" "$T/a.json" "missing index: a new snapshot of the same tree" || true

# --- a corrupt index file ---------------------------------------------------------------------
fresh_repo
idx=$(head -n 1 <<<"$index_a")
python3 - "$HIBERBOX_REPO/$idx" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(20); b = f.read(1); f.seek(20); f.write(bytes([b[0] ^ 0x10]))
EOF
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "corrupt index: check exited $HB_RC"
hb_try snapshot restore a "$T/ci"
if [ "$HB_RC" -eq 0 ]; then
	compare_trees "$T/a.json" "$T/ci" >"$T/d" || bad "corrupt index: restore succeeded with a wrong tree: $(head "$T/d")"
else
	expect_error "corrupt index: restore" snapshot restore a "$T/ci2" || true
fi
rm -rf "$T/ci" "$T/ci2"

# --- a corrupt manifest (one byte of the body) -------------------------------------------
manifest="snapshots/$A"
fresh_repo
read -r _v _il body_off body_len < <(python3 "$REPOTOOL" manifest-layout "$HIBERBOX_REPO/$manifest")
python3 - "$HIBERBOX_REPO/$manifest" $((body_off + body_len / 2)) <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x04]))
EOF
restore_fails_cleanly "corrupt manifest body" a && expect_in "$HB_ERR" "$(short "$A")|manifest|snapshot" "corrupt manifest: restore names what is damaged" || true
hb_try check
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "corrupt manifest: check exited $HB_RC"
grep -q "$(short "$A")" "$T/err" || bad "corrupt manifest: check does not name snapshot $A: $(head -c 500 "$T/err")"
expect_error "corrupt manifest: diff" snapshot diff a b || true
hb_try snapshot list
[ "$HB_RC" -eq 0 ] || [ "$(wc -l <"$T/err")" -eq 1 ] || bad "corrupt manifest: snapshot list exited $HB_RC with $(head -c 300 "$T/err")"
b_still_fine "corrupt manifest"

# --- a corrupt manifest header (the info JSON) -----------------------------------------------
fresh_repo
python3 - "$HIBERBOX_REPO/$manifest" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(20); b = f.read(1); f.seek(20); f.write(bytes([b[0] ^ 0x01]))
EOF
restore_fails_cleanly "corrupt manifest header" a || true
b_still_fine "corrupt manifest header"

# --- a truncated manifest ---------------------------------------------------------------
for keep in half 40 10 0; do
	fresh_repo
	sz=$(stat -c %s "$HIBERBOX_REPO/$manifest")
	[ "$keep" = half ] && n=$((sz / 2)) || n=$keep
	truncate -s "$n" "$HIBERBOX_REPO/$manifest"
	restore_fails_cleanly "manifest truncated to $n bytes" a || true
	expect_error "manifest truncated to $n bytes: show" snapshot show "$A" || true
	hb_try check
	[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "manifest truncated to $n bytes: check exited $HB_RC"
	hb_try snapshot list
	[ "$HB_RC" -eq 0 ] || [ "$(wc -l <"$T/err")" -eq 1 ] || bad "manifest truncated to $n: list exited $HB_RC with $(head -c 300 "$T/err")"
	[ "$HB_RC" -lt 124 ] || bad "manifest truncated to $n: snapshot list crashed ($HB_RC)"
	b_still_fine "manifest truncated to $n bytes"
done

# --- a manifest from a future version ----------------------------------------------------
fresh_repo
python3 "$REPOTOOL" manifest-set-version "$HIBERBOX_REPO/$manifest" 99
restore_fails_cleanly "manifest version 99" a && expect_in "$HB_ERR" "version" "manifest version 99: restore" || true
expect_error "manifest version 99: show" snapshot show a && expect_in "$HB_ERR" "version" "manifest version 99: show" || true
b_still_fine "manifest version 99"
fresh_repo
python3 "$REPOTOOL" manifest-set-version "$HIBERBOX_REPO/$manifest" 2 --keep-checksum # checksum now wrong too
restore_fails_cleanly "manifest version 2, stale checksum" a || true

# --- config: unknown repository version, wrong secret, foreign config --------------------------
edit_config() { # edit_config PYTHON-EXPR-ON-c
	python3 - "$HIBERBOX_REPO/config" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[2])
open(sys.argv[1], "w").write(json.dumps(c, indent=2))
EOF
}
fresh_repo
edit_config 'c["version"] = 99'
expect_error "repository version 99: list" snapshot list && expect_in "$HB_ERR" "version" "repository version 99" || true
expect_error "repository version 99: restore" snapshot restore b "$T/v99" || true
expect_error "repository version 99: snapshot create" snapshot create "$T/b" || true
[ ! -e "$T/v99" ] || bad "repository version 99: restore created its target"

fresh_repo
edit_config 's = c["secret"]; c["secret"] = ("0" if s[100] != "0" else "1").join((s[:100], s[101:]))'
expect_error "wrong secret: list" snapshot list && expect_in "$HB_ERR" "secret" "wrong secret: list" || true
expect_error "wrong secret: restore" snapshot restore b "$T/ws" || true
expect_error "wrong secret: snapshot create" snapshot create "$T/b" || true
expect_error "wrong secret: check" check --read-data || true

# Byte 180 of the 192: a check hashing a short text reads only the first 64.
fresh_repo
edit_config 's = c["secret"]; c["secret"] = ("0" if s[360] != "0" else "1").join((s[:360], s[361:]))'
expect_error "secret damaged at byte 180: list" snapshot list && expect_in "$HB_ERR" "secret" "secret damaged at byte 180: list" || true
expect_error "secret damaged at byte 180: snapshot create" snapshot create "$T/b" || true
# A config from before secret_digest opens on secret_check alone.
fresh_repo
edit_config 'del c["secret_digest"]'
hb_try snapshot list
[ "$HB_RC" -eq 0 ] || bad "a config without secret_digest (earlier versions) does not open: $(head -c 300 "$T/err")"
edit_config 'c["secret_digest"] = "00" * 16'
expect_error "a wrong secret_digest: list" snapshot list && expect_in "$HB_ERR" "secret" "a wrong secret_digest: list" || true

fresh_repo
HIBERBOX_REPO="$T/foreign" hb_ok init >/dev/null
cp "$T/foreign/config" "$HIBERBOX_REPO/config" # a valid config with another secret
hb_try snapshot restore b "$T/fc"
if [ "$HB_RC" -eq 0 ]; then
	bad "a foreign config (another repository's secret): restore of b succeeded"
elif [ "$HB_RC" -gt 128 ] || [ "$(wc -l <"$T/err")" -ne 1 ]; then
	bad "a foreign config: restore did not fail in one line (exit $HB_RC): $(head -c 600 "$T/err")"
fi
rm -rf "$T/fc"
hb_try check --read-data
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "a foreign config: check --read-data exited $HB_RC"

fresh_repo
echo '{"format": "hiberbox-repository", "version": ' >"$HIBERBOX_REPO/config"
expect_error "corrupt config (bad JSON)" snapshot list || true
: >"$HIBERBOX_REPO/config"
expect_error "empty config" snapshot list || true
rm "$HIBERBOX_REPO/config"
expect_error "missing config" snapshot list || true

# --- the repository's dictionary (trained on A's small files): damaged or missing ----------
# check_names CASE REGEX: check fails (not a crash) with a report line matching REGEX.
check_names() {
	hb_try check
	if [ "$HB_RC" -eq 0 ] || [ "$HB_RC" -gt 128 ]; then
		bad "$1: check exited $HB_RC: $(head -c 500 "$T/err")"
	elif ! grep -qE -- "$2" "$T/err"; then
		bad "$1: check did not report /$2/: $(head -c 500 "$T/err")"
	fi
}
fresh_repo
dicts=$(list_repo dicts)
if [ "$(wc -w <<<"$dicts")" -ne 1 ]; then
	bad "expected one dictionary after the first snapshots, found: '$dicts'"
else
	dname=${dicts#dicts/}
	python3 - "$HIBERBOX_REPO/$dicts" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100)
    b = f.read(1)
    f.seek(100)
    f.write(bytes([b[0] ^ 0x20]))
EOF
	check_names "corrupt dictionary" "^dictionary dicts/$dname is corrupt: .*[0-9]+ chunks use it"
	restore_fails_cleanly "corrupt dictionary" a && expect_in "$HB_ERR" "dicts/$dname" "corrupt dictionary: restore" || true
	b_still_fine "corrupt dictionary"
	fresh_repo
	rm "$HIBERBOX_REPO/$dicts"
	check_names "missing dictionary" "^dictionary dicts/$dname is missing \([0-9]+ chunks use it\)"
	restore_fails_cleanly "missing dictionary" a && expect_in "$HB_ERR" "dicts/$dname" "missing dictionary: restore" || true
	b_still_fine "missing dictionary"
fi

# --- a pack left cut short under the very name the next snapshot writes ---------------------
# One chunk makes one pack whose name (the hash of its bytes) is known from a
# twin repository with the same secret; a writer stopped midway by a copy tool
# leaves such a pack without an index.  The snapshot must not reuse it.
fresh_repo
mkdir -p "$T/one"
randfile "$T/one/only.bin" 20000 itrunc
dump_tree "$T/one" "$T/one.json"
HIBERBOX_REPO="$T/cut" hb_ok init >/dev/null
cp -a "$T/cut" "$T/cut-twin"
HIBERBOX_REPO="$T/cut-twin" hb_ok snapshot create "$T/one" >/dev/null
twin_pack=$(cd "$T/cut-twin" && find packs -type f)
[ "$(wc -l <<<"$twin_pack")" -eq 1 ] || fail "expected one pack in the twin repository: $twin_pack"
mkdir -p "$(dirname "$T/cut/$twin_pack")"
head -c 10000 "$T/cut-twin/$twin_pack" >"$T/cut/$twin_pack"
saved_repo=$HIBERBOX_REPO
HIBERBOX_REPO="$T/cut"
ONE=$(snapshot_create "$T/one")
[ "$(stat -c %s "$T/cut/$twin_pack")" -eq "$(stat -c %s "$T/cut-twin/$twin_pack")" ] ||
	bad "a pack cut short under the name snapshot create writes was kept ($(stat -c %s "$T/cut/$twin_pack") bytes)"
restore_and_compare "$ONE" "$T/one.json" "a pack cut short before snapshot create" || true
hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "a pack cut short before snapshot create: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"
HIBERBOX_REPO=$saved_repo
rm -rf "$T/cut" "$T/cut-twin"

# --- an index file or a manifest damaged under the very name the next snapshot writes --------
# Their names are the keyed hashes of their bytes, as a pack's is, and a
# writer that found one there already counted it as stored: the snapshot it
# recorded named a damaged object and failed every restore and check.  A
# twin repository with the same secret names both, with the wall clock
# stopped at the same second for the two creates (a manifest records when it
# was taken: fixed-clock-preload.so).  Each is cut short and, separately,
# has a byte flipped.  A damaged index file fails every open of the
# repository, so it arrives while the create is held before its index (as
# a copy tool, or another writer of the same data, would put it meanwhile);
# no create reads a manifest that is not its parent, so that one is there
# before.
: "${FIXED_CLOCK_PRELOAD:?FIXED_CLOCK_PRELOAD must point at fixed-clock-preload.so}"
FROZEN_CLOCK_SEC=$(date +%s) # frozen (lib.sh) stops the clock there
mkdir -p "$T/two"
randfile "$T/two/only.bin" 20000 idamage
dump_tree "$T/two" "$T/two.json"
HIBERBOX_REPO="$T/dmg-clean" hb_ok init >/dev/null
cp -a "$T/dmg-clean" "$T/dmg-twin"
TWO=$(HIBERBOX_REPO="$T/dmg-twin" frozen snapshot_create "$T/two")
twin_index=$(cd "$T/dmg-twin" && find index -type f)
[ "$(wc -l <<<"$twin_index")" -eq 1 ] || fail "expected one index file in the twin repository: $twin_index"
[ -f "$T/dmg-twin/snapshots/$TWO" ] || fail "the twin's snapshot $TWO has no manifest at snapshots/$TWO"

# damaged_copy HOW OBJECT DST: the twin's OBJECT into DST, cut to half its
# size or with its middle byte flipped.
damaged_copy() {
	local src="$T/dmg-twin/$2" dst=$3 size
	size=$(stat -c %s "$src")
	if [ "$1" = cut ]; then
		head -c $((size / 2)) "$src" >"$dst"
	else
		cp "$src" "$dst"
		python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1)
    f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x01]))' "$dst" $((size / 2))
	fi
	cmp -s "$src" "$dst" && fail "setup: $1 left $2 as it was"
	return 0
}

# damaged_before_create HOW OBJECT DESC
damaged_before_create() {
	local how=$1 object=$2 desc=$3 id wpid
	rm -rf "$T/dmg" && cp -a "$T/dmg-clean" "$T/dmg"
	if [ "$object" = "$twin_index" ]; then
		rm -f "$T/hold" && mkfifo "$T/hold"
		HIBERBOX_REPO="$T/dmg" HIBERBOX_TEST_COMMIT_WAIT="$T/hold" frozen timeout --signal=KILL 120 \
			"$HIBERBOX" snapshot create "$T/two" >"$T/writer.out" 2>"$T/writer.err" &
		wpid=$!
		damaged_copy "$how" "$object" "$T/damaged"
		# opening the FIFO waits for the create to reach it; closing it lets it go on
		timeout 60 bash -c 'exec 3>"$1" && mkdir -p "$(dirname "$3")" && cp "$2" "$3"' \
			_ "$T/hold" "$T/damaged" "$T/dmg/$object" ||
			bad "setup: $desc: the create was not held before its index: $(head -c 500 "$T/writer.err")"
		wait "$wpid" || fail "$desc: snapshot create exited $?: $(head -c 500 "$T/writer.err")"
		id=$(tail -n 1 "$T/writer.out")
	else
		mkdir -p "$(dirname "$T/dmg/$object")"
		damaged_copy "$how" "$object" "$T/dmg/$object"
		id=$(HIBERBOX_REPO="$T/dmg" frozen snapshot_create "$T/two")
	fi
	# another id would leave the damaged object aside: nothing tested
	[ "$id" = "$TWO" ] || fail "setup: $desc: the create recorded $id, not the twin's $TWO"
	cmp -s "$T/dmg/$object" "$T/dmg-twin/$object" ||
		bad "$desc: snapshot create kept $object as it was ($(stat -c %s "$T/dmg/$object") of $(stat -c %s "$T/dmg-twin/$object") bytes)"
	HIBERBOX_REPO="$T/dmg" restore_and_compare "$id" "$T/two.json" "$desc" || true
	HIBERBOX_REPO="$T/dmg" hb_try check --read-data
	[ "$HB_RC" -eq 0 ] || bad "$desc: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"
}
damaged_before_create cut "$twin_index" "an index file cut short during snapshot create"
damaged_before_create flip "$twin_index" "an index file with a flipped byte during snapshot create"
damaged_before_create cut "snapshots/$TWO" "a manifest cut short before snapshot create"
damaged_before_create flip "snapshots/$TWO" "a manifest with a flipped byte before snapshot create"
rm -rf "$T/dmg" "$T/dmg-clean" "$T/dmg-twin" "$T/hold"

# --- a pack cut short under the very name gc's repack writes ------------------------------
# gc's repacked pack is named by its bytes too, and gc counted one already
# there as written: its new index then pointed into the short copy.  A twin
# repository's gc names it (gc is deterministic).
mkdir -p "$T/gcsrc"
for i in 1 2 3; do randfile "$T/gcsrc/f$i" 300000 "igc$i"; done
HIBERBOX_REPO="$T/gcr" hb_ok init >/dev/null
GC_A=$(HIBERBOX_REPO="$T/gcr" snapshot_create "$T/gcsrc")
rm "$T/gcsrc/f2"
dump_tree "$T/gcsrc" "$T/gcsrc.json"
GC_B=$(HIBERBOX_REPO="$T/gcr" snapshot_create "$T/gcsrc")
HIBERBOX_REPO="$T/gcr" hb_ok snapshot rm "$GC_A" >/dev/null
cp -a "$T/gcr" "$T/gcr-twin"
HIBERBOX_REPO="$T/gcr-twin" hb_ok gc --repack-percent 10 >/dev/null
gc_pack=$(comm -13 <(cd "$T/gcr" && find packs -type f | sort) <(cd "$T/gcr-twin" && find packs -type f | sort))
[ "$(wc -l <<<"$gc_pack")" -eq 1 ] && [ -n "$gc_pack" ] || fail "setup: expected gc to write one new pack in the twin repository: '$gc_pack'"
mkdir -p "$(dirname "$T/gcr/$gc_pack")"
head -c $(($(stat -c %s "$T/gcr-twin/$gc_pack") / 2)) "$T/gcr-twin/$gc_pack" >"$T/gcr/$gc_pack"
HIBERBOX_REPO="$T/gcr" hb_ok gc --repack-percent 10 >/dev/null
[ "$(stat -c %s "$T/gcr/$gc_pack")" -eq "$(stat -c %s "$T/gcr-twin/$gc_pack")" ] ||
	bad "a pack cut short under the name gc writes was kept ($(stat -c %s "$T/gcr/$gc_pack") bytes)"
HIBERBOX_REPO="$T/gcr" restore_and_compare "$GC_B" "$T/gcsrc.json" "a pack cut short under the name gc writes" || true
HIBERBOX_REPO="$T/gcr" hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "a pack cut short under the name gc writes: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"
rm -rf "$T/gcr" "$T/gcr-twin" "$T/gcsrc"

# --- after all that, the pristine copy is still fine (the damage was the cause) ---------------
fresh_repo
hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "pristine copy: check --read-data exited $HB_RC: $(head -c 500 "$T/err")"
restore_and_compare a "$T/a.json" "pristine copy: snapshot A" || true
