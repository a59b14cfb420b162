#!/bin/bash
# `hiberbox bench restore` end to end on tiny trees with --runs 1: the user's
# DIR is only read, JSON and both report formats come out, a missing
# baseline tool (squashfuse, taken out of PATH) is reported and skipped, bad
# arguments are one-line errors, and the scratch directory goes away.
set -euo pipefail
HB=${HIBERBOX:?set HIBERBOX to the hiberbox binary}
[ -c /dev/fuse ] || { echo "no /dev/fuse: skip"; exit 77; }
T=$(mktemp -d /tmp/bench-cli.XXXXXX)
cleanup() {
	for m in "$T"/work*/mnt "$T"/work*/ov "$T"/work*/sq; do
		mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
	done
	rm -rf "$T"
}
trap cleanup EXIT
export HIBERBOX_HOME=$T/home HIBERBOX_REPO=$T/repo
fail() { echo "FAIL: $*" >&2; exit 1; }
jq_py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $2" "$1"; }

# --- bad arguments: exit 2 and one line, nothing run ---------------------------
for args in "--runs 0" "--runs x" "--report out.txt" "--bandwidth 0" "--nope" "a b"; do
	set +e
	# shellcheck disable=SC2086
	"$HB" bench restore $args >"$T/out" 2>"$T/err"
	rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "bench restore $args: exit $rc, expected 2"
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "bench restore $args: not one line: $(cat "$T/err")"
done
set +e
"$HB" bench restore --rtt 30 --work "$T/work-rtt" --files 20 >"$T/out" 2>"$T/err"
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "s3://" "$T/err" || fail "--rtt on a local repository: exit $rc, $(cat "$T/err")"
"$HB" bench restore --help | grep -q -- "--probe CMD" || fail "help"

# --- bench link: the emulated link for benchmark scripts ------------------------
for args in "--rtt x" "--bandwidth -1" "--nope" "extra"; do
	set +e
	# shellcheck disable=SC2086
	AWS_ENDPOINT_URL=http://127.0.0.1:9 "$HB" bench link $args >"$T/out" 2>"$T/err"
	rc=$?
	set -e
	[ "$rc" -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] || fail "bench link $args: exit $rc, $(cat "$T/err")"
done
set +e
env -u AWS_ENDPOINT_URL "$HB" bench link --rtt 30 >"$T/out" 2>"$T/err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q AWS_ENDPOINT_URL "$T/err" || fail "bench link without an endpoint: exit $rc, $(cat "$T/err")"
# a real round trip through it: same bytes, and no sooner than the RTT
mkdir -p "$T/www" && head -c 300000 /dev/urandom >"$T/www/blob"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$T/www" >"$T/http.log" 2>&1 &
http_pid=$!
for _ in $(seq 50); do grep -q "port" "$T/http.log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -nE 's/.*port ([0-9]+).*/\1/p' "$T/http.log" | head -n 1)
[ -n "$port" ] || { kill "$http_pid"; fail "no http server for the link test"; }
AWS_ENDPOINT_URL=http://127.0.0.1:$port "$HB" bench link --rtt 200 --bandwidth 10 >"$T/link.url" &
link_pid=$!
for _ in $(seq 50); do [ -s "$T/link.url" ] && break; sleep 0.1; done
t0=$(date +%s%N)
curl -fsS "$(cat "$T/link.url")/blob" -o "$T/blob.out" || { kill "$http_pid" "$link_pid"; fail "curl through the link"; }
took=$(( ($(date +%s%N) - t0) / 1000000 ))
kill "$link_pid" "$http_pid"
wait "$link_pid" 2>/dev/null || true
cmp -s "$T/www/blob" "$T/blob.out" || fail "the link changed the bytes"
# connect + request + answer: at least one RTT; 300 kB at 10 MB/s: 30 ms more
[ "$took" -ge 230 ] || fail "a request through a 200 ms link took $took ms"

# --- a user's DIR: only read; JSON and a Markdown report ------------------------
mkdir -p "$T/ws/sub"
for i in $(seq 1 40); do echo "file $i" >"$T/ws/sub/f$i.txt"; done
head -c 200000 /dev/urandom >"$T/ws/blob.bin"
ln -s sub/f1.txt "$T/ws/link"
before=$(cd "$T/ws" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
"$HB" bench restore "$T/ws" --runs 1 --json --report "$T/r.md" --work "$T/work1" \
	--probe 'test -f sub/f1.txt && cat blob.bin >/dev/null' >"$T/r.json" 2>"$T/err" ||
	fail "bench restore DIR: $(cat "$T/err")"
after=$(cd "$T/ws" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
[ "$before" = "$after" ] || fail "the user's DIR changed"
jq_py "$T/r.json" '
f = d["figures"]
assert d["runs"] == 1 and d["tree"]["files"] == 42, d["tree"]
for row in ("sleep_full", "sleep_incremental", "wake_cold", "wake_warm", "first_command", "restore"):
    hb = f[row]["hiberbox"]
    assert hb["median_s"] > 0 and hb["min_s"] == hb["max_s"] == hb["median_s"], (row, hb)
    assert len(hb["runs_s"]) == 1
    tar = f[row]["tar_zstd"]
    assert abs(hb["vs_tar_zstd"] - tar["median_s"] / hb["median_s"]) < 1e-9, row
    assert "median_s" in f[row]["cp_a"]
assert d["repository"] == "local"
assert d["stored_bytes"]["hiberbox"] > 0 and d["stored_bytes"]["tar_zstd"] > 0
' || fail "JSON: $(cat "$T/r.json")"
# the note on an unjournaled ext4 work directory, against the kernel's lists
dev=$(basename "$(readlink -f "/sys/dev/block/$(stat -c '%Hd:%Ld' "$T/work1")")" 2>/dev/null)
if [ -n "$dev" ] && [ -e "/proc/fs/ext4/$dev" ] && [ ! -e "/proc/fs/jbd2/$dev-8" ]; then want=1; else want=0; fi
got=$(jq_py "$T/r.json" 'print(int(any("without a journal" in n for n in d["notes"])))')
[ "$got" = "$want" ] || fail "journal note: $got, expected $want for device '$dev'"
grep -q "^## wake, cold cache" "$T/r.md" || fail "markdown report"
grep -q "| hiberbox |" "$T/r.md" || fail "markdown rows"
[ -d "$T/work1" ] && [ ! -e "$T/work1/mnt/sub" ] || fail "work dir given: kept, nothing mounted"
grep -q "probe\|test -f" "$T/work1/bench.log" || fail "log of the commands"

# --- a generated workspace, squashfuse missing from PATH, an HTML report --------
mkdir -p "$T/bin"
for tool in sh bash ls cat find rm cp tar zstd mksquashfs unsquashfs fuse-overlayfs fusermount3 \
	mount umount sync; do
	p=$(command -v "$tool" || true)
	[ -n "$p" ] && ln -s "$p" "$T/bin/$tool"
done
[ ! -e "$T/bin/squashfuse" ] || fail "squashfuse still reachable"
PATH=$T/bin "$HB" bench restore --files 60 --runs 1 --report "$T/r.html" --work "$T/work2" \
	>"$T/table" 2>"$T/err" || fail "bench restore without squashfuse: $(cat "$T/err")"
grep -q "squashfs+overlay.*skipped: squashfuse is not installed" "$T/table" ||
	fail "missing tool not reported: $(cat "$T/table")"
grep -q "^note: squashfs+overlay skipped: squashfuse" "$T/table" || fail "note"
grep -q "hiberbox .* vs tar" "$T/table" || fail "table rows: $(cat "$T/table")"
grep -q "<svg" "$T/r.html" && grep -q "skipped: squashfuse" "$T/r.html" || fail "html report"
! grep -q "<script\|src=\|href=" "$T/r.html" || fail "html report is not self-contained"
grep -q "60 files" "$T/table" || fail "generated workspace size: $(head -1 "$T/table")"

# --- without --work the scratch directory is removed ---------------------------
ls -d /var/tmp/hiberbox-bench-* 2>/dev/null | sort >"$T/scratch-before" || true
"$HB" bench restore --files 20 --runs 1 --quiet >/dev/null 2>"$T/err" || fail "default work: $(cat "$T/err")"
ls -d /var/tmp/hiberbox-bench-* 2>/dev/null | sort >"$T/scratch-after" || true
cmp -s "$T/scratch-before" "$T/scratch-after" || fail "scratch directory left behind"
echo "bench-cli: ok"
