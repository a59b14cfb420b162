#!/bin/bash
# Network modes of sandboxes, end to end with the real daemon: nat reaches
# the host's non-loopback address through slirp4netns and not the host's
# 127.0.0.1, none reaches nothing, the helper lives exactly as long as the
# sandbox's init (sleep, wake, init killed, rm, the daemon killed and
# restarted), runs under the sandbox's memory limit, resolv.conf names its
# DNS (through an image's symlink too), and without slirp4netns a nat
# sandbox is refused with one line naming the package.  No address outside
# this machine is used.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires
command -v python3 >/dev/null || { echo "SKIP: no python3 for the host's web servers"; exit 77; }

T=$(mktemp -d /tmp/hb-network-XXXXXX)
chmod 755 "$T"
export HIBERBOX_HOME=$T/home
HB=$HIBERBOX
SERVERS=()

cleanup() {
	local p
	daemon_teardown
	for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
step() { echo "== $*"; }
field_of() { "$HB" --json inspect "$1" | sed -n "s/.*\"$2\": \"\\{0,1\\}\\([^\",]*\\).*/\\1/p"; }
# The helper of the sandbox whose init is PID, if running (a zombie has no
# command line, so it never matches).
helper_of() { pgrep -f "^slirp4netns .* $1 tap0\$"; }
# wait_no_helper PID: until no helper serves init PID (a minute at most).
wait_no_helper() { for _ in $(seq 600); do [ -z "$(helper_of "$1")" ] && return 0; sleep 0.1; done; return 1; }
# fetch NAME URL: the page as the sandbox's busybox wget gets it (host
# timeout only against a hang: a refusal is immediate).
fetch() { timeout 120 "$HB" exec "$1" -- wget -q -O - "$2" 2>/dev/null; }

# serve ADDR DIR: a web server on the host at ADDR (a free port); sets PORT
# once the host itself gets its page.
serve() {
	local pf=$T/port.$RANDOM
	python3 -c '
import functools, http.server, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
s = http.server.ThreadingHTTPServer((sys.argv[1], 0), h)
open(sys.argv[3] + ".tmp", "w").write(str(s.server_address[1]))
__import__("os").rename(sys.argv[3] + ".tmp", sys.argv[3])
s.serve_forever()' "$1" "$2" "$pf" 2>>"$T/servers.log" &
	SERVERS+=($!)
	for _ in $(seq 600); do [ -s "$pf" ] && break; sleep 0.1; done
	PORT=$(cat "$pf" 2>/dev/null)
	[ -n "$PORT" ] || fail "the web server on $1 did not start: $(cat "$T/servers.log")"
	for _ in $(seq 600); do
		python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
			"http://$1:$PORT/page" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "the host does not get the page of its own server on $1:$PORT"
}

# An image: static busybox (its wget), a resolv.conf of its own.
mkdir -p "$T/img/bin" "$T/img/etc" "$T/img/tmp" "$T/www" "$T/nobin"
cp "$BUSYBOX" "$T/img/bin/busybox"
for c in sh cat wget ip ls sleep true readlink; do ln -s busybox "$T/img/bin/$c"; done
echo "nameserver 192.0.2.53" >"$T/img/etc/resolv.conf"
TOKEN="page-$RANDOM-$RANDOM"
echo "$TOKEN" >"$T/www/page"
"$HB" image import "$T/img" base >/dev/null || fail "import"

step "without slirp4netns, --network nat is refused with one line naming the package"
"$HB" daemon stop >/dev/null || fail "daemon stop"
# a daemon whose PATH has no slirp4netns (the CLI starts it with its own environment)
PATH=$T/nobin "$HB" create x --image base --network nat >"$T/out" 2>"$T/err" &&
	fail "created a nat sandbox without slirp4netns"
[ "$(cat "$T/err")" = "hiberbox: network nat needs slirp4netns, which is not installed (install the package slirp4netns)" ] ||
	fail "nat without slirp4netns: '$(cat "$T/err")'"
# the API says so too: 501, the mode not available here (not a bad request)
code=$(curl -s --unix-socket "$HIBERBOX_HOME/hiberboxd.sock" -o "$T/api.out" -w '%{http_code}' \
	-X POST -d '{"name":"x","image":"base","network":"nat"}' http://x/v1/sandboxes)
[ "$code" = 501 ] && grep -q 'install the package slirp4netns' "$T/api.out" ||
	fail "POST network nat without slirp4netns: $code $(cat "$T/api.out")"
PATH=$T/nobin "$HB" create y --image base >/dev/null || fail "a none sandbox beside no slirp4netns"
[ "$("$HB" --json ls | grep -c '"name": "x"')" = 0 ] || fail "the refused nat sandbox was listed"
"$HB" rm y >/dev/null || fail "rm y"
"$HB" daemon stop >/dev/null || fail "daemon stop after the PATH check"
"$HB" create x --image base --network wifi 2>"$T/err" && fail "created with --network wifi"
[ "$(cat "$T/err")" = 'hiberbox: network must be "none", "host" or "nat", not "wifi"' ] ||
	fail "--network wifi: '$(cat "$T/err")'"

command -v slirp4netns >/dev/null || { echo "SKIP: slirp4netns is not installed (scripts/setup.sh installs it)"; exit 77; }

step "create --network nat: tap0 configured before the first exec, resolv.conf, ls and inspect"
"$HB" create n --image base --network nat >/dev/null || fail "create n"
"$HB" create o --image base >/dev/null || fail "create o (none)"
[ "$(field_of n network)" = nat ] || fail "inspect n: network $(field_of n network)"
[ "$(field_of o network)" = none ] || fail "inspect o: network $(field_of o network)"
[ "$("$HB" ls | awk '$1 == "n" { print $5 }')" = nat ] || fail "ls: $("$HB" ls)"
# the very first command: the network is up already, not coming up
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec ip in n"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0: $(cat "$T/addr")"
"$HB" exec n -- ip route >"$T/route" || fail "exec ip route in n"
grep -q '^default via 10\.0\.2\.2 dev tap0' "$T/route" || fail "n's routes: $(cat "$T/route")"
[ "$("$HB" exec n -- cat /etc/resolv.conf)" = "nameserver 10.0.2.3" ] ||
	fail "n's resolv.conf: $("$HB" exec n -- cat /etc/resolv.conf)"
# the image's own file is not written: a none sandbox of it sees it as it was
[ "$("$HB" exec o -- cat /etc/resolv.conf)" = "nameserver 192.0.2.53" ] ||
	fail "o's resolv.conf: $("$HB" exec o -- cat /etc/resolv.conf)"
init=$(field_of n init_pid)
[ -n "$(helper_of "$init")" ] || fail "no slirp4netns for n's init $init: $(pgrep -a slirp4netns)"

step "an image whose /etc/resolv.conf is a link (systemd-resolved's) keeps it, and it leads to the nat's"
cp -a "$T/img" "$T/linked"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$T/linked/etc/resolv.conf"
"$HB" image import "$T/linked" linked >/dev/null || fail "import linked"
"$HB" create l --image linked --network nat >"$T/out" 2>&1 || fail "create l: $(cat "$T/out")"
[ "$("$HB" exec l -- cat /etc/resolv.conf)" = "nameserver 10.0.2.3" ] ||
	fail "l's resolv.conf: $("$HB" exec l -- cat /etc/resolv.conf 2>&1)"
[ "$("$HB" exec l -- readlink /etc/resolv.conf)" = ../run/systemd/resolve/stub-resolv.conf ] ||
	fail "l's /etc/resolv.conf is no longer the image's link"
"$HB" rm l >/dev/null || fail "rm l"

step "nat reaches the host's non-loopback address, not the host's 127.0.0.1; none reaches neither"
serve 127.0.0.1 "$T/www"
LOPORT=$PORT
# the host's 127.0.0.1 as slirp4netns would map it (10.0.2.2): refused
out=$(fetch n "http://10.0.2.2:$LOPORT/page")
[ "$out" != "$TOKEN" ] || fail "a nat sandbox got a page from the host's 127.0.0.1"
out=$(fetch o "http://10.0.2.2:$LOPORT/page")
[ "$out" != "$TOKEN" ] || fail "a none sandbox got a page from the host's 127.0.0.1"
ADDR=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$ADDR" ] || ADDR=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^127\.' | grep -m1 '^[0-9.]*$')
if [ -z "$ADDR" ]; then
	echo "SKIP (part): this machine has no non-loopback IPv4 address: outbound checks left out"
else
	serve "$ADDR" "$T/www"
	URL="http://$ADDR:$PORT/page"
	[ "$(fetch n "$URL")" = "$TOKEN" ] || fail "a nat sandbox did not get $URL"
	[ "$(fetch o "$URL")" != "$TOKEN" ] || fail "a none sandbox got $URL"
fi

step "sleep ends the helper, wake starts a new one before the first exec"
"$HB" sleep n >/dev/null || fail "sleep n"
wait_no_helper "$init" || fail "slirp4netns of n's init $init outlived its sleep"
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec after wake"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after wake: $(cat "$T/addr")"
[ "$("$HB" exec n -- cat /etc/resolv.conf)" = "nameserver 10.0.2.3" ] || fail "resolv.conf after wake"
init=$(field_of n init_pid)
[ -n "$(helper_of "$init")" ] || fail "no slirp4netns after the wake (init $init)"
[ -z "$ADDR" ] || [ "$(fetch n "$URL")" = "$TOKEN" ] || fail "no network after sleep and wake"

step "the helper ends with the sandbox's init, and comes back with the next wake"
kill -9 "$init"
wait_no_helper "$init" || fail "slirp4netns outlived n's init $init"
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec after the init died"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after its init died: $(cat "$T/addr")"
init=$(field_of n init_pid)
[ -z "$ADDR" ] || [ "$(fetch n "$URL")" = "$TOKEN" ] || fail "no network after the init died"

step "a fork keeps nat"
"$HB" fork n f >/dev/null || fail "fork n f"
[ "$(field_of f network)" = nat ] || fail "fork's network: $(field_of f network)"
[ -z "$ADDR" ] || [ "$(fetch f "$URL")" = "$TOKEN" ] || fail "the fork has no network"
finit=$(field_of f init_pid)

step "with --memory, the helper runs in groups of its own under that limit, removed with it"
"$HB" create c --image base --network nat --memory 128M >/dev/null || fail "create c"
cinit=$(field_of c init_pid)
helper=$(helper_of "$cinit")
[ -n "$helper" ] || fail "no slirp4netns for c"
# its memory group: cgroup v1's memory hierarchy, or v2's single one
cg=$(sed -n 's/^[0-9]*:memory://p' "/proc/$helper/cgroup")
if [ -n "$cg" ]; then
	cgdir=/sys/fs/cgroup/memory$cg limit=memory.limit_in_bytes
else
	cg=$(sed -n 's/^0:://p' "/proc/$helper/cgroup")
	cgdir=/sys/fs/cgroup$cg limit=memory.max
fi
case "$cg" in */hiberbox/hbdnat-*) ;; *) fail "c's slirp4netns is in cgroup '$cg' ($(cat "/proc/$helper/cgroup"))" ;; esac
[ "$(cat "$cgdir/$limit")" = $((128 << 20)) ] || fail "c's slirp4netns $limit: $(cat "$cgdir/$limit")"
case "$(cat "/proc/$(helper_of "$init")/cgroup")" in *hbdnat-*) fail "n (no --memory) has its helper confined" ;; esac
"$HB" rm c >/dev/null || fail "rm c"
wait_no_helper "$cinit" || fail "slirp4netns of c outlived its rm"
[ ! -d "$cgdir" ] || fail "c's helper's cgroup $cgdir stayed after rm"

step "a daemon killed with -9 takes its helpers along; the next one gives the re-adopted sandbox a new one"
init=$(field_of n init_pid)
dpid=$(daemon_pid)
[ -n "$(helper_of "$init")" ] || fail "no slirp4netns for n before the daemon's kill"
kill -9 "$dpid"
wait_no_helper "$init" || fail "slirp4netns of n outlived its daemon (its exit fd)"
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec after the daemon's restart"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after the daemon's restart: $(cat "$T/addr")"
[ "$(field_of n init_pid)" = "$init" ] || fail "n was not re-adopted (init $init, now $(field_of n init_pid))"
[ -n "$(helper_of "$init")" ] || fail "no slirp4netns for the re-adopted n"
[ -z "$ADDR" ] || [ "$(fetch n "$URL")" = "$TOKEN" ] || fail "no network in the re-adopted n"
finit=$(field_of f init_pid)

step "rm leaves no slirp4netns"
dpid=$(daemon_pid)
"$HB" rm f >/dev/null || fail "rm f"
"$HB" rm n >/dev/null || fail "rm n"
wait_no_helper "$init" || fail "slirp4netns of n outlived its rm"
wait_no_helper "$finit" || fail "slirp4netns of f outlived its rm"
left=$(pgrep -P "$dpid" -x slirp4netns)
[ -z "$left" ] || fail "slirp4netns left running after rm: $(ps -o pid,stat,args -p "$left")"
"$HB" rm o >/dev/null || fail "rm o"
"$HB" daemon stop >/dev/null || fail "daemon stop"
if grep -q "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log"; then
	grep -A20 "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log" | head -60 >&2
	fail "sanitizer reports in the daemon's log"
fi
echo "network: all checks passed"
