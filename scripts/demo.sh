#!/usr/bin/env bash
# A short tour on the embedded default repository ($HIBERBOX_HOME/repo):
# put a workspace to sleep (snapshot), change it, sleep again (only the change
# is stored), and wake it elsewhere (restore), lazily through the filesystem
# when FUSE is available.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

hb=$PWD/build/tools/hiberbox
work=$(mktemp -d /tmp/hiberbox-demo.XXXXXX)
mnt=""
cleanup() {
	if [ -n "$mnt" ] && mountpoint -q "$mnt" 2>/dev/null; then "$hb" umount "$mnt" >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a workspace: a small project with dependencies (~40 MB, 3000 files)"
ws=$work/workspace
mkdir -p "$ws/src" "$ws/node_modules"
for p in $(seq 1 60); do
	d=$ws/node_modules/pkg-$p/lib
	mkdir -p "$d"
	printf '{"name":"pkg-%s","version":"1.0.%s"}\n' "$p" "$p" > "$ws/node_modules/pkg-$p/package.json"
	for f in $(seq 1 48); do
		printf 'module.exports = function f%s_%s(x) { return x * %s + %s; };\n' "$p" "$f" "$p" "$f" > "$d/f$f.js"
	done
done
head -c 24M /dev/urandom > "$ws/node_modules/prebuilt.node"
seq 1 200000 | sed 's/^/log line /' > "$ws/build.log"
echo 'console.log("hello from the workspace")' > "$ws/src/index.js"
du -sh "$ws" | sed 's/^/size: /'

if ! "$hb" snapshot list >/dev/null 2>&1; then
	step "hiberbox init  (the embedded default repository)"
	"$hb" init
fi

step "sleep: hiberbox snapshot create (everything is new)"
first=$("$hb" snapshot create "$ws" --tag demo-1 | tail -1)
"$hb" snapshot show "$first"

step "the agent edits one file and adds another"
echo 'console.log("edited")' >> "$ws/src/index.js"
echo 'export const x = 1;' > "$ws/src/new.js"

step "sleep again: only what changed is stored"
second=$("$hb" snapshot create "$ws" --tag demo-2 | tail -1)
"$hb" snapshot show "$second"
"$hb" snapshot diff "$first" "$second"

step "look inside a snapshot without restoring it: ls and cat"
"$hb" snapshot ls demo-2 src -l
"$hb" snapshot cat demo-2 src/new.js

step "wake: restore the latest state into a fresh directory"
time "$hb" snapshot restore demo-2 "$work/restored"
diff -r "$ws" "$work/restored" && echo "restored tree is identical to the workspace"

if [ -e /dev/fuse ] && "$hb" --help 2>/dev/null | grep -q '^  mount '; then
	step "wake lazily: mount the snapshot (nothing is copied up front)"
	mnt=$work/mnt
	mkdir -p "$mnt"
	time "$hb" mount demo-2 "$mnt"
	cat "$mnt/src/index.js"
	echo "the sandbox writes through the mount" > "$mnt/src/written-while-awake.txt"
	step "sleep the mount: hiberbox commit"
	third=$("$hb" commit "$mnt" --tag demo-3 | tail -1)
	"$hb" snapshot diff demo-2 "$third"
	"$hb" umount "$mnt"
	mnt=""
fi

if "$hb" --help 2>/dev/null | grep -q '^  create ' && [ -x /bin/busybox ]; then
	step "a sandbox: an image (static busybox), a workspace inside it"
	img=$work/image
	mkdir -p "$img/bin" "$img/etc" "$img/tmp" "$img/root" "$img/proc" "$img/dev"
	cp /bin/busybox "$img/bin/busybox"
	for c in sh ls cat echo seq wc mkdir du sleep; do ln -s busybox "$img/bin/$c"; done
	echo 'root:x:0:0:root:/root:/bin/sh' > "$img/etc/passwd"
	"$hb" image ls 2>/dev/null | grep -qw demo-busybox || "$hb" image import "$img" demo-busybox
	"$hb" rm demo-sandbox >/dev/null 2>&1 || true
	"$hb" create demo-sandbox --image demo-busybox --memory 256M --pids 128
	"$hb" exec demo-sandbox -- sh -c 'mkdir -p /root/project && seq 1 100000 > /root/project/data.txt && echo "built inside the sandbox" > /root/project/README && ls -la /root/project'

	step "a background process, its output followed, and what the sandbox uses"
	"$hb" exec -d demo-sandbox -- sh -c 'for i in 1 2 3; do echo "server tick $i"; sleep 0.3; done'
	"$hb" logs -f demo-sandbox
	"$hb" stats demo-sandbox

	step "sleep: freeze, commit, stop, unmount"
	"$hb" sleep demo-sandbox --json
	"$hb" ls

	step "wake: an exec on a sleeping sandbox wakes it; its files are all there"
	time "$hb" exec demo-sandbox -- sh -c 'cat /root/project/README; wc -l /root/project/data.txt'
	"$hb" rm demo-sandbox
	"$hb" daemon stop >/dev/null 2>&1 || true
fi

step "all snapshots"
"$hb" snapshot list
step "repository health"
"$hb" check
