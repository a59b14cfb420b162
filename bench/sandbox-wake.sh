#!/bin/bash
# Time to first exec after a wake against re-doing the workspace setup.
#
# An image holding node, npm and git (copied from the host with their
# libraries) plus, inside it, a local git repository of an app and a local
# package store (generated npm tarballs, so no network is needed).  In a
# sandbox, the setup is `git clone` of the repository and `npm install` of
# its dependencies.  Then the sandbox sleeps and each run measures, from the
# CLI, an `exec` that wakes it and runs `node` on the app (warm: the
# repository's packs are in the page cache), then the same exec again (warm:
# the floor the first one could reach).  The ratio setup / wake+exec is the
# figure of merit (target: at least 50).
#
# Issue 5 asks for the install "from the registry where reachable, else from a
# local cache".  With --registry (the default is --registry auto: when `npm
# ping` answers on the host) the app instead depends on real packages (express,
# lodash, axios, react, and typescript/eslint/jest as dev dependencies, pinned
# versions), the sandbox gets the host's network and each setup run installs
# from the registry with an empty npm cache, as a fresh host would.  The local
# package store (--no-registry) needs no network and measures the floor of the
# setup: tarballs already on the disk.
#
#   bench/sandbox-wake.sh [--hiberbox PATH] [--runs N] [--packages N] [--work DIR] [--keep]
#                         [--registry|--no-registry]
# Needs root, /dev/fuse, user namespaces.  Prints a table and a JSON line.
set -euo pipefail

HB=${HIBERBOX:-build/tools/hiberbox}
RUNS=5
PACKAGES=300
FILES_PER_PACKAGE=20
WORK=/var/tmp/hiberbox-sandbox-bench
KEEP=0
REGISTRY=auto
while [ $# -gt 0 ]; do
	case "$1" in
	--hiberbox) HB=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--packages) PACKAGES=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--registry) REGISTRY=yes; shift ;;
	--no-registry) REGISTRY=no; shift ;;
	-h|--help) sed -n 2,25p "$0"; exit 0 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
HB=$(readlink -f "$HB")
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in node npm git busybox; do
	command -v $t >/dev/null || { echo "needs $t on the host" >&2; exit 1; }
done

if [ "$REGISTRY" = auto ]; then
	if timeout 20 npm ping >/dev/null 2>&1; then REGISTRY=yes; else REGISTRY=no; fi
fi

mkdir -p "$WORK"
chmod 755 "$WORK"
export HIBERBOX_HOME=$WORK/home
IMG=$WORK/img
cleanup() {
	"$HB" daemon stop >/dev/null 2>&1 || true
	[ "$KEEP" = 1 ] || rm -rf "$HIBERBOX_HOME"
}
trap cleanup EXIT
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

copy_with_libs() { # copy a binary and the shared libraries it loads into $IMG
	local f
	for f in "$@"; do
		mkdir -p "$IMG$(dirname "$f")"
		cp -L "$f" "$IMG$f"
		ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
			[ -e "$IMG$lib" ] && continue
			mkdir -p "$IMG$(dirname "$lib")"
			cp -L "$lib" "$IMG$lib"
		done
	done
}

MARK=$IMG/.complete-$PACKAGES-$REGISTRY
if [ ! -e "$MARK" ]; then
	echo "building the image (node $(node --version), git, $PACKAGES local packages)..."
	rm -rf "$IMG"
	mkdir -p "$IMG"/{bin,etc,root,tmp,work,srv,usr/bin}
	cp "$(command -v busybox)" "$IMG/bin/busybox"
	for c in sh ls cat echo env mkdir rm cp mv wc sleep head tail grep sed find du true; do
		ln -sf busybox "$IMG/bin/$c"
	done
	copy_with_libs "$(readlink -f "$(command -v node)")" "$(readlink -f "$(command -v git)")"
	[ -e "$IMG/usr/bin/node" ] || ln -s "$(readlink -f "$(command -v node)")" "$IMG/usr/bin/node"
	[ -e "$IMG/usr/bin/git" ] || ln -s "$(readlink -f "$(command -v git)")" "$IMG/usr/bin/git"
	npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
	mkdir -p "$IMG$(dirname "$npm_dir")"
	cp -a "$npm_dir" "$IMG$npm_dir"
	ln -sf "$npm_dir/bin/npm-cli.js" "$IMG/usr/bin/npm"
	[ -d /usr/lib/git-core ] && mkdir -p "$IMG/usr/lib" && cp -a /usr/lib/git-core "$IMG/usr/lib/"
	[ -d /usr/share/git-core ] && mkdir -p "$IMG/usr/share" && cp -a /usr/share/git-core "$IMG/usr/share/"
	printf 'root:x:0:0:root:/root:/bin/sh\n' > "$IMG/etc/passwd"
	printf 'root:x:0:\n' > "$IMG/etc/group"
	if [ "$REGISTRY" = yes ]; then # name resolution for --network host
		cp -L /etc/resolv.conf /etc/hosts "$IMG/etc/"
		[ -e /etc/nsswitch.conf ] && cp -L /etc/nsswitch.conf "$IMG/etc/"
		# the host's CA bundle, as a Debian image's ca-certificates (some hosts reach
		# the registry only through a TLS proxy with its own CA)
		mkdir -p "$IMG/etc/ssl/certs"
		cp -L /etc/ssl/certs/ca-certificates.crt "$IMG/etc/ssl/certs/"
	fi

	# local package store: generated npm tarballs
	gen=$WORK/gen
	rm -rf "$gen"
	mkdir -p "$gen" "$IMG/srv/pkgs"
	for i in $([ "$REGISTRY" = yes ] || seq 1 "$PACKAGES"); do # not needed with the registry
		p=$gen/pkg-$i
		mkdir -p "$p/lib"
		printf '{"name":"pkg-%d","version":"1.0.%d","main":"index.js","license":"MIT"}\n' "$i" "$i" > "$p/package.json"
		printf 'module.exports = { id: %d, name: "pkg-%d" };\n' "$i" "$i" > "$p/index.js"
		head -c 3000 /dev/urandom | base64 > "$p/README.md"
		for j in $(seq 1 $((FILES_PER_PACKAGE - 3))); do
			printf '// pkg-%d module %d\nexports.f%d = function (x) { return x * %d + %d; };\n%s\n' \
				"$i" "$j" "$j" "$i" "$j" "$(head -c 600 /dev/urandom | base64 -w 100 | sed 's,^,// ,')" \
				> "$p/lib/m$j.js"
		done
		tar -C "$gen" -czf "$IMG/srv/pkgs/pkg-$i.tgz" --transform "s,^pkg-$i,package," "pkg-$i"
	done
	# the app: a local git repository depending on every package
	app=$gen/app
	mkdir -p "$app/src"
	if [ "$REGISTRY" = yes ]; then
		cat > "$app/package.json" <<'JSON'
{"name":"app","version":"1.0.0","private":true,
 "dependencies":{"express":"4.21.2","lodash":"4.17.21","axios":"1.7.9","react":"18.3.1","react-dom":"18.3.1"},
 "devDependencies":{"typescript":"5.6.3","eslint":"8.57.1","jest":"29.7.0"}}
JSON
		cat > "$app/index.js" <<'JS'
const express = require("express"), _ = require("lodash"), axios = require("axios");
const React = require("react"), { renderToString } = require("react-dom/server");
const app = express();
app.get("/", (req, res) => res.send(renderToString(React.createElement("p", null, "hi"))));
console.log("ok", _.sum([1, 2, 3]), typeof axios.get, renderToString(React.createElement("b", null, "x")));
JS
	else {
		printf '{"name":"app","version":"1.0.0","private":true,"dependencies":{'
		for i in $(seq 1 "$PACKAGES"); do
			printf '%s"pkg-%d":"file:/srv/pkgs/pkg-%d.tgz"' "$([ "$i" = 1 ] || echo ,)" "$i" "$i"
		done
		printf '}}\n'
	} > "$app/package.json"
	printf 'let n = 0;\nfor (let i = 1; i <= %d; i++) n += require("pkg-" + i).id;\nconsole.log("ok", n);\n' \
		"$PACKAGES" > "$app/index.js"
	fi
	for j in $(seq 1 50); do head -c 2000 /dev/urandom | base64 > "$app/src/f$j.js"; done
	git -C "$app" init -q && git -C "$app" add -A &&
		git -C "$app" -c user.name=b -c user.email=b@b commit -qm init
	git clone -q --bare "$app" "$IMG/srv/app.git"
	rm -rf "$gen"
	rm -f "$IMG"/.complete-*
	touch "$MARK"
fi

ln -sfn /bin/busybox "$IMG/usr/bin/env" # npm's "#!/usr/bin/env node"
"$HB" daemon stop >/dev/null 2>&1 || true
rm -rf "$HIBERBOX_HOME"
img_bytes=$(du -sb "$IMG" | cut -f1)
t=$(date +%s%N)
"$HB" image import "$IMG" nodeimg >/dev/null
import_ms=$(ms "$t")
# each setup run in a fresh directory (deleting the previous one is not part of it)
if [ "$REGISTRY" = yes ]; then
	"$HB" create ws --image nodeimg --memory 2G --pids 1024 --network host >/dev/null
	setup_cmd='mkdir -p /work/$RUN && cd /work/$RUN && git clone -q /srv/app.git app && cd app &&
	HOME=/root NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_cafile=/etc/ssl/certs/ca-certificates.crt npm install --cache /tmp/npm-cache-$RUN --no-update-notifier --no-audit --no-fund --loglevel=error >/dev/null && node index.js'
	source_desc="registry, empty npm cache"
else
	"$HB" create ws --image nodeimg --memory 2G --pids 1024 >/dev/null
	setup_cmd='mkdir -p /work/$RUN && cd /work/$RUN && git clone -q /srv/app.git app && cd app &&
	HOME=/root npm install --offline --no-audit --no-fund --loglevel=error >/dev/null && node index.js'
	source_desc="$PACKAGES local packages"
fi
first_exec='cd /work/r1/app && node index.js'

echo "setup (git clone + npm install, $source_desc) in the sandbox:"
setups=()
for i in $(seq 1 3); do
	t=$(date +%s%N)
	out=$("$HB" exec ws --env RUN=r$i -- sh -c "$setup_cmd")
	setups+=("$(ms "$t")")
	echo "  run $i: ${setups[-1]} ms ($out)"
done
setup_ms=$(printf '%s\n' "${setups[@]}" | median)
files=$("$HB" exec ws -- sh -c 'find /work/r1/app | wc -l')

echo "sleep, then exec (wakes the sandbox) of '$first_exec':"
sleeps=() wakes=() server_wakes=() warms=() lights=()
for i in $(seq 1 "$RUNS"); do
	s=$("$HB" --json sleep ws | sed -n 's/.*"sleep_ms": \([0-9]*\).*/\1/p')
	sleeps+=("$s")
	t=$(date +%s%N)
	out=$("$HB" exec ws -- sh -c "$first_exec")
	wakes+=("$(ms "$t")")
	server_wakes+=("$("$HB" --json inspect ws | sed -n 's/.*"wake_ms": \([0-9]*\).*/\1/p')")
	# the same exec again, awake and with every page cached: the floor of the first one
	t=$(date +%s%N)
	"$HB" exec ws -- sh -c "$first_exec" >/dev/null
	warms+=("$(ms "$t")")
	# a light first command (what an agent often runs first): wake + list the workspace
	"$HB" sleep ws >/dev/null
	t=$(date +%s%N)
	"$HB" exec ws -- ls /work/r1/app >/dev/null
	lights+=("$(ms "$t")")
	echo "  run $i: sleep ${s} ms, wake+first exec ${wakes[-1]} ms (wake alone ${server_wakes[-1]} ms," \
		"then warm exec ${warms[-1]} ms; wake+ls ${lights[-1]} ms) ($out)"
done
wake_ms=$(printf '%s\n' "${wakes[@]}" | median)
sleep_ms=$(printf '%s\n' "${sleeps[@]}" | median)
server_wake_ms=$(printf '%s\n' "${server_wakes[@]}" | median)
warm_ms=$(printf '%s\n' "${warms[@]}" | median)
light_ms=$(printf '%s\n' "${lights[@]}" | median)
light_ratio=$(awk -v a="$setup_ms" -v b="$light_ms" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
ratio=$(awk -v a="$setup_ms" -v b="$wake_ms" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
repo_bytes=$(du -sb "$HIBERBOX_HOME/repo" | cut -f1)

printf '\n%-40s %10s\n' "step (median)" "ms"
printf '%-40s %10s\n' "image import ($((img_bytes / 1048576)) MiB)" "$import_ms"
printf '%-40s %10s\n' "setup: clone + npm install ($files files)" "$setup_ms"
printf '%-40s %10s\n' "  (packages from)" "$source_desc"
printf '%-40s %10s\n' "sleep (freeze, commit, stop, unmount)" "$sleep_ms"
printf '%-40s %10s\n' "wake (mount + init, daemon side)" "$server_wake_ms"
printf '%-40s %10s\n' "wake + first exec (CLI, end to end)" "$wake_ms"
printf '%-40s %10s\n' "same exec again, warm (awake, cached)" "$warm_ms"
printf '%-40s %10s\n' "ratio setup / (wake + first exec)" "${ratio}x"
printf '%-40s %10s\n' "wake + first exec of ls (CLI)" "$light_ms"
printf '%-40s %10s\n' "ratio setup / (wake + ls)" "${light_ratio}x"
printf '{"bench":"sandbox-wake","registry":%s,"packages":%d,"workspace_files":%d,"image_bytes":%d,"repo_bytes":%d,"import_ms":%d,"setup_ms":%d,"sleep_ms":%d,"wake_ms":%d,"wake_first_exec_ms":%d,"warm_exec_ms":%d,"ratio":%s,"wake_ls_ms":%d,"ratio_ls":%s}\n' \
	"$([ "$REGISTRY" = yes ] && echo true || echo false)" "$PACKAGES" "$files" "$img_bytes" "$repo_bytes" "$import_ms" "$setup_ms" "$sleep_ms" \
	"$server_wake_ms" "$wake_ms" "$warm_ms" "$ratio" "$light_ms" "$light_ratio"
