#!/bin/bash
# First wake against second wake from an S3 repository (issue: "second wake,
# hot list prefetched, faster than the first").
#
# A node project (node and the libraries it loads, a generated node_modules
# and an app requiring every package) is stored in S3 (s3rver on loopback,
# tests/s3/run-s3rver.sh).  Each run, with an empty local cache:
#   first wake:  mount the snapshot as stored (no hot list) and run the
#                probe `node index.js` chrooted into the mount;
#   then commit the mount (the commit records the hot list: the chunks read
#   first, in order) and unmount; empty the cache again;
#   second wake: mount that commit (its hot list is prefetched in parallel
#                from the mount on) and run the same probe.
# Times are from `hiberbox mount` to the probe's exit.  The ratio first /
# second is the figure of merit (target: above 1).
#
# With --rtt MS (and --bandwidth MBPS, default 100), every request goes through
# `hiberbox bench link`, a relay that emulates that link (this kernel has no
# netem); the snapshot is uploaded through it too.
#
#   bench/s3-wake.sh [--hiberbox PATH] [--runs N] [--packages N] [--work DIR]
#                    [--rtt MS [--bandwidth MBPS]]
# Needs root, /dev/fuse, node and tests/s3/node_modules (npm ci --prefix tests/s3).
set -euo pipefail

HB=${HIBERBOX:-build/tools/hiberbox}
RUNS=5
PACKAGES=300
WORK=/var/tmp/hiberbox-s3-wake
RTT=0
BANDWIDTH=100
LINK_PID=
while [ $# -gt 0 ]; do
	case "$1" in
	--hiberbox) HB=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--packages) PACKAGES=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	--rtt) RTT=$2; shift 2 ;;
	--bandwidth) BANDWIDTH=$2; shift 2 ;;
	-h|--help) sed -n 2,18p "$0"; exit 0 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
HB=$(readlink -f "$HB")
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "needs root (chroot)" >&2; exit 1; }
command -v node >/dev/null || { echo "needs node on the host" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
export HIBERBOX_HOME=$WORK/home
TREE=$WORK/tree
MNT=$WORK/mnt
cleanup() {
	"$HB" umount "$MNT" >/dev/null 2>&1 || true
	[ -z "$LINK_PID" ] || kill "$LINK_PID" 2>/dev/null || true
	"$here/tests/s3/run-s3rver.sh" stop "$WORK/s3" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

echo "building the project ($PACKAGES packages, node $(node --version) with its libraries)..."
node_bin=$(readlink -f "$(command -v node)")
for f in "$node_bin" $(ldd "$node_bin" | grep -o '/[^ ]*'); do
	mkdir -p "$TREE$(dirname "$f")"
	cp -L "$f" "$TREE$f"
done
mkdir -p "$TREE/usr/bin" "$TREE/app/node_modules"
[ -e "$TREE/usr/bin/node" ] || ln -s "$node_bin" "$TREE/usr/bin/node"
for i in $(seq 1 "$PACKAGES"); do
	p=$TREE/app/node_modules/pkg-$i
	mkdir -p "$p/lib"
	printf '{"name":"pkg-%d","version":"1.0.0","main":"index.js"}\n' "$i" > "$p/package.json"
	printf 'const m = require("./lib/m.js");\nmodule.exports = { id: %d, f: m.f };\n' "$i" > "$p/index.js"
	{
		printf 'exports.f = function (x) { return x + %d; };\n' "$i"
		head -c 3000 /dev/urandom | base64 -w 100 | sed 's,^,// ,'
	} > "$p/lib/m.js"
done
printf 'let n = 0;\nfor (let i = 1; i <= %d; i++) n += require("pkg-" + i).id;\nconsole.log("ok", n);\n' \
	"$PACKAGES" > "$TREE/app/index.js"
tree_bytes=$(du -sb "$TREE" | cut -f1)

eval "$("$here/tests/s3/run-s3rver.sh" start "$WORK/s3" hbwake)"
link_desc="S3 on loopback"
if [ "$RTT" -gt 0 ]; then
	"$HB" bench link --rtt "$RTT" --bandwidth "$BANDWIDTH" >"$WORK/link.url" &
	LINK_PID=$!
	for _ in $(seq 50); do [ -s "$WORK/link.url" ] && break; sleep 0.1; done
	[ -s "$WORK/link.url" ] || { echo "the link relay did not start" >&2; exit 1; }
	export AWS_ENDPOINT_URL=$(cat "$WORK/link.url")
	link_desc="S3 through ${RTT} ms / ${BANDWIDTH} MB/s"
fi
export HIBERBOX_REPO=s3://hbwake/repo
"$HB" init >/dev/null
snap=$("$HB" --quiet snapshot create "$TREE" | tail -1)
snap=${snap##* }
mkdir -p "$MNT"

# mount + probe with an empty cache; prints ms
wake() {
	local t out
	rm -rf "$HIBERBOX_HOME/cache" "$WORK/upper"
	t=$(date +%s%N)
	"$HB" mount "$1" "$MNT" --upper "$WORK/upper" >/dev/null
	out=$(env -i /usr/sbin/chroot "$MNT" /usr/bin/node /app/index.js)
	[ "${out%% *}" = ok ] || { echo "probe failed: $out" >&2; exit 1; }
	ms "$t"
}

echo "first wake (no hot list) against second wake (hot list of the first), empty cache each:"
firsts=() seconds=()
for i in $(seq 1 "$RUNS"); do
	firsts+=("$(wake "$snap")")
	hot=$("$HB" --quiet commit "$MNT" | tail -1)
	"$HB" umount "$MNT" >/dev/null
	seconds+=("$(wake "$hot")")
	"$HB" umount "$MNT" >/dev/null
	echo "  run $i: first ${firsts[-1]} ms, second ${seconds[-1]} ms"
done
first_ms=$(printf '%s\n' "${firsts[@]}" | median)
second_ms=$(printf '%s\n' "${seconds[@]}" | median)
ratio=$(awk -v a="$first_ms" -v b="$second_ms" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
{ grep "hot list:" "$HIBERBOX_HOME/fs.log" || true; } | tail -1 | sed 's/^/  last second wake: /'

printf '\n%-48s %10s\n' "step (median, $link_desc, empty cache)" "ms"
printf '%-48s %10s\n' "first wake: mount + probe" "$first_ms"
printf '%-48s %10s\n' "second wake (hot list prefetched): mount + probe" "$second_ms"
printf '%-48s %10s\n' "ratio first / second" "${ratio}x"
printf '{"bench":"s3-wake","packages":%d,"tree_bytes":%d,"runs":%d,"rtt_ms":%d,"bandwidth_mbps":%d,"first_wake_ms":%d,"second_wake_ms":%d,"ratio":%s}\n' \
	"$PACKAGES" "$tree_bytes" "$RUNS" "$RTT" "$BANDWIDTH" "$first_ms" "$second_ms" "$ratio"
