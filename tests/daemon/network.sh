#!/bin/bash
# Network modes of sandboxes, end to end with the real daemon: nat reaches
# the host's non-loopback address through slirp4netns and not the host's
# 127.0.0.1, none reaches nothing, the helper lives exactly as long as the
# sandbox's init (sleep, wake, init killed, rm, the daemon killed and
# restarted, the old helper slow to end), is replaced if killed alone,
# gets PATH and no credentials as its environment, runs under the
# sandbox's memory limit, resolv.conf names its DNS (through an image's
# symlink too; one into /dev, to a directory, to another link or through
# one is refused with one line naming it), and without slirp4netns a nat
# sandbox is refused with one line naming the package.  --publish: the
# host's 127.0.0.1 port reaches a server in the sandbox (busybox httpd),
# at every wake; a host port another sandbox publishes, running or asleep
# (or at every address, or asked for by a create at the same time), is
# refused at create with one line naming that sandbox (nothing left; the
# same number in udp is another port); a port a process outside hiberbox
# holds fails a create (nothing left) and a wake, naming it, the sandbox
# left asleep with its files; a fork publishes nothing; rm frees the
# port; bad specs, a host port named twice and --publish without nat are
# refused; a helper whose API answers a byte at a time fails the create
# within its time.  What the helper says goes to the sandbox's
# slirp4netns.log (a new one at each start, the previous one kept as
# slirp4netns.log.1), not the daemon's log; one that fails to start has
# its last lines in the error.  Helper groups a killed daemon left go
# with rm of their (sleeping) sandbox, or at the next daemon's start when
# their sandbox is gone.  A daemon killed while a new init waits to be
# let go leaves neither that init nor n's helper running.  No address outside this machine is used.
#   env: HIBERBOX [BUSYBOX]
set -uo pipefail
. "$(dirname "$0")/lib-daemon.sh"
daemon_test_requires
command -v python3 >/dev/null || { echo "SKIP: no python3 for the host's web servers"; exit 77; }

# what a daemon with an S3 repository holds: slirp4netns must not get it
export AWS_SECRET_ACCESS_KEY=hb-network-test-not-a-key
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
mkdir -p "$T/img/bin" "$T/img/etc" "$T/img/tmp" "$T/img/www" "$T/www" "$T/nobin"
cp "$BUSYBOX" "$T/img/bin/busybox"
for c in sh cat wget ip ls sleep true readlink httpd; do ln -s busybox "$T/img/bin/$c"; done
echo "nameserver 192.0.2.53" >"$T/img/etc/resolv.conf"
TOKEN="page-$RANDOM-$RANDOM"
echo "$TOKEN" >"$T/www/page"
echo "inside-$TOKEN" >"$T/img/www/page" # what the sandbox's httpd serves
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

step "a slirp4netns whose API answers a byte at a time fails the create within its time, leaving nothing"
# a stand-in helper: ready at once, its API socket listening, then an
# answer of one byte a second for ever (it ends with its exit fd)
mkdir -p "$T/slowapi"
cat >"$T/slowapi/slirp4netns" <<'PY'
#!/usr/bin/env python3
import os, socket, threading, time
def exit_with_daemon():
    while os.read(4, 1):
        pass
    os._exit(0)
threading.Thread(target=exit_with_daemon, daemon=True).start()
s = socket.socket(socket.AF_UNIX)
s.bind("api.sock")
s.listen()
os.write(3, b"1")
c, _ = s.accept()
while c.recv(4096):
    pass
while True:
    c.send(b" ")
    time.sleep(1)
PY
chmod 755 "$T/slowapi/slirp4netns"
"$HB" daemon stop >/dev/null || fail "daemon stop before the slow API"
PATH=$T/slowapi:$PATH timeout 120 "$HB" create slow --image base --network nat \
	--publish 18080:3000 >"$T/out" 2>"$T/err"; rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "slirp4netns's API did not answer within" "$T/err" ||
	fail "a helper's API answering a byte a second: exit $rc, '$(cat "$T/err")'"
! "$HB" --json ls | grep -q '"name": "slow"' || fail "the failed create left sandbox slow"
pgrep -f "$T/slowapi/slirp4netns" >/dev/null && fail "the slow helper was left running"
"$HB" daemon stop >/dev/null || fail "daemon stop after the slow API"

step "a slirp4netns that fails to start: its last lines are in the create's one-line error"
mkdir -p "$T/failing"
cat >"$T/failing/slirp4netns" <<'SH'
#!/bin/sh
echo "stand-in: starting" >&2
echo "stand-in: cannot set up tap0: no such luck" >&2
exit 1
SH
chmod 755 "$T/failing/slirp4netns"
PATH=$T/failing:$PATH "$HB" create failing --image base --network nat >"$T/out" 2>"$T/err"; rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] &&
	grep -qF "slirp4netns ended before the network was up (it said: stand-in: starting / stand-in: cannot set up tap0: no such luck)" "$T/err" ||
	fail "a helper failing to start: exit $rc, '$(cat "$T/err")'"
! grep -q 'stand-in:' "$HIBERBOX_HOME/hiberboxd.log" || fail "the helper's lines went to the daemon's log"
"$HB" daemon stop >/dev/null || fail "daemon stop after the failing helper"

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
# its environment is PATH alone, not the daemon's with its credentials
tr '\0' '\n' <"/proc/$(daemon_pid)/environ" | grep -q '^AWS_SECRET_ACCESS_KEY=' ||
	fail "the daemon was not started with the test's AWS_SECRET_ACCESS_KEY"
env=$(tr '\0' ' ' <"/proc/$(helper_of "$init")/environ")
[ "$env" = "PATH=$PATH " ] || fail "n's slirp4netns has the environment '$env'"
# what it says (a line or two at every start) goes to the sandbox's own log
NATLOG=$HIBERBOX_HOME/sandboxes/n/slirp4netns.log
[ "$(grep -c 'sent tapfd' "$NATLOG" 2>/dev/null)" = 1 ] || fail "n's slirp4netns.log: '$(cat "$NATLOG" 2>&1)'"
! grep -q 'tapfd\|seccomp' "$HIBERBOX_HOME/hiberboxd.log" ||
	fail "slirp4netns wrote to the daemon's log: $(grep 'tapfd\|seccomp' "$HIBERBOX_HOME/hiberboxd.log")"

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
# a link into the sandbox's own /dev is refused, not bound over /dev/null
ln -sfn /dev/null "$T/linked/etc/resolv.conf"
"$HB" image import "$T/linked" devnull >/dev/null || fail "import devnull"
"$HB" create dn --image devnull --network nat >"$T/out" 2>"$T/err" &&
	fail "created a nat sandbox whose resolv.conf links to /dev/null ($("$HB" exec dn -- sh -c 'echo > /dev/null' 2>&1))"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "resolv.conf links to /dev/null, in the sandbox's own /dev" "$T/err" ||
	fail "resolv.conf linked to /dev/null: '$(cat "$T/err")'"
# a resolv.conf the bind cannot take: one line naming it and saying why
cp -a "$T/img" "$T/bad"
bad_resolv() { # CASE EXPECTED (the image's /etc as $T/bad/etc is then)
	"$HB" image import "$T/bad" "bad-$1" >/dev/null || fail "import bad-$1"
	"$HB" create "bad-$1" --image "bad-$1" --network nat >"$T/out" 2>"$T/err" &&
		fail "created a nat sandbox whose resolv.conf is bad ($1)"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -qF "$2" "$T/err" ||
		fail "resolv.conf $1: '$(cat "$T/err")', not '$2'"
}
ln -sfn . "$T/bad/etc/resolv.conf"
bad_resolv dot "the image's /etc/resolv.conf links to /etc, a directory"
ln -sfn /etc "$T/bad/etc/resolv.conf"
bad_resolv etc "the image's /etc/resolv.conf links to /etc, a directory"
ln -sfn .. "$T/bad/etc/resolv.conf"
bad_resolv root "the image's /etc/resolv.conf links to /, a directory"
ln -sfn r2 "$T/bad/etc/resolv.conf"
ln -sfn /dev/null "$T/bad/etc/r2"
bad_resolv chain "the image's /etc/resolv.conf links to /etc/r2, itself a link (to /dev/null)"
mkdir -p "$T/bad/var/run/x"; ln -sfn /run "$T/bad/var/run2"
ln -sfn /var/run2/x/resolv.conf "$T/bad/etc/resolv.conf"
bad_resolv via-link "the image's /etc/resolv.conf links to /var/run2/x/resolv.conf, through the link /var/run2 (to /run)"
rm "$T/bad/etc/resolv.conf"; mkdir "$T/bad/etc/resolv.conf"
bad_resolv dir "the image's /etc/resolv.conf is a directory"

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

step "sleep ends the helper, wake starts a new one before the first exec; its log keeps the previous start's as .1"
# a line of the helper's log as it was before the sleep (root writes it: the test runs as root)
echo "before the sleep $TOKEN" >>"$NATLOG"
"$HB" sleep n >/dev/null || fail "sleep n"
wait_no_helper "$init" || fail "slirp4netns of n's init $init outlived its sleep"
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec after wake"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after wake: $(cat "$T/addr")"
[ "$("$HB" exec n -- cat /etc/resolv.conf)" = "nameserver 10.0.2.3" ] || fail "resolv.conf after wake"
[ "$(grep -c 'sent tapfd' "$NATLOG")" = 1 ] && ! grep -q "before the sleep" "$NATLOG" ||
	fail "n's slirp4netns.log was not emptied at the wake: '$(cat "$NATLOG")'"
[ "$(grep -c 'sent tapfd' "$NATLOG.1" 2>/dev/null)" = 1 ] && grep -q "before the sleep $TOKEN" "$NATLOG.1" ||
	fail "n's slirp4netns.log.1 is not the previous start's log: '$(cat "$NATLOG.1" 2>&1)'"
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

step "a helper that ends under a running sandbox (killed, out of memory) is replaced"
dpid=$(daemon_pid)
helper=$(helper_of "$init")
[ -n "$helper" ] || fail "no slirp4netns for n before killing it"
echo "before the kill $TOKEN" >>"$NATLOG"
kill -9 "$helper"
# the daemon notices within its ticks (0.5 s), not only at an exec
for _ in $(seq 600); do h=$(helper_of "$init"); [ -n "$h" ] && [ "$h" != "$helper" ] && break; sleep 0.1; done
[ -n "$h" ] && [ "$h" != "$helper" ] || fail "no new slirp4netns for n after its helper $helper was killed"
grep -q "n: slirp4netns $helper ended (code -1, signal 9): starting a new one" "$HIBERBOX_HOME/hiberboxd.log" ||
	fail "the daemon did not log the end of n's helper $helper"
ps -o stat= -p "$helper" 2>/dev/null | grep -q Z && fail "n's killed helper $helper is left a zombie"
# the killed helper's lines are kept for whoever looks into it; the start
# before it (.1 at the sleep step) is gone: one rotation
grep -q "before the kill $TOKEN" "$NATLOG.1" && ! grep -q "before the sleep" "$NATLOG.1" ||
	fail "after n's helper was replaced, slirp4netns.log.1: '$(cat "$NATLOG.1" 2>&1)'"
! grep -q "before the kill" "$NATLOG" || fail "the new helper's slirp4netns.log has the old one's lines"
[ "$(field_of n init_pid)" = "$init" ] || fail "n's init was replaced (its processes lost) for a new helper"
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" || fail "exec after n's helper was replaced"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after its helper was replaced: $(cat "$T/addr")"
[ -z "$ADDR" ] || [ "$(fetch n "$URL")" = "$TOKEN" ] || fail "no network after n's helper was replaced"

step "a fork keeps nat"
"$HB" fork n f >/dev/null || fail "fork n f"
[ "$(field_of f network)" = nat ] || fail "fork's network: $(field_of f network)"
[ -z "$ADDR" ] || [ "$(fetch f "$URL")" = "$TOKEN" ] || fail "the fork has no network"
finit=$(field_of f init_pid)

# A host port nothing listens on now (the kernel's pick of a free one).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# host_get PORT: the page of the sandbox's httpd through the host's
# 127.0.0.1:PORT, once it answers (a minute at most: the server starts
# detached).
host_get() {
	python3 -c '
import sys, time, urllib.request
for _ in range(600):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:%s/page" % sys.argv[1], timeout=5).read().decode().strip())
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)' "$1"
}
# bindable PROTO PORT: whether the host can listen on 127.0.0.1:PORT (TCP
# as a server does, SO_REUSEADDR; UDP without, which a socket with it
# refuses: slirp's has it)
bindable() {
	python3 -c '
import socket, sys
udp = sys.argv[1] == "udp"
s = socket.socket(type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
if not udp: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))' "$1" "$2" 2>/dev/null
}
publish_of() { "$HB" --json inspect "$1" | python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["publish"]))'; }
api_post() {
	curl -s --unix-socket "$HIBERBOX_HOME/hiberboxd.sock" -o "$T/api.out" -w '%{http_code}' \
		-X POST -d "$1" http://x/v1/sandboxes
}

step "--publish: refused without --network nat and when malformed (one line, exit 2; API 400)"
"$HB" create x --image base --publish 8080:3000 >/dev/null 2>"$T/err"; rc=$?
[ "$rc" = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q -- '--publish needs --network nat' "$T/err" ||
	fail "--publish without nat: exit $rc, '$(cat "$T/err")'"
for spec in 0:3000 8080:65536 8080:3000/sctp ::1:8080:3000 localhost:8080:3000 3000; do
	"$HB" create x --image base --network nat --publish "$spec" >/dev/null 2>"$T/err"; rc=$?
	[ "$rc" = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -qF "publish '$spec'" "$T/err" ||
		fail "--publish $spec: exit $rc, '$(cat "$T/err")'"
done
# the same host port twice is a bad argument too (the daemon would answer 400, exit 1)
"$HB" create x --image base --network nat --publish 8080:3000 --publish 0.0.0.0:08080:3001 \
	>/dev/null 2>"$T/err"; rc=$?
[ "$rc" = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] &&
	grep -qF "publish '0.0.0.0:08080:3001': the host's port 8080/tcp is published twice" "$T/err" ||
	fail "--publish of one host port twice: exit $rc, '$(cat "$T/err")'"
code=$(api_post '{"name":"x","image":"base","publish":["8080:3000"]}')
[ "$code" = 400 ] && grep -q 'publish needs network nat' "$T/api.out" ||
	fail "POST publish without nat: $code $(cat "$T/api.out")"
code=$(api_post '{"name":"x","image":"base","network":"nat","publish":["8080:0"]}')
[ "$code" = 400 ] || fail "POST publish 8080:0: $code $(cat "$T/api.out")"
code=$(api_post '{"name":"x","image":"base","network":"nat","publish":["0.0.0.0:8080:1","8080:2"]}')
[ "$code" = 400 ] && grep -q 'published twice' "$T/api.out" ||
	fail "POST the same host port twice: $code $(cat "$T/api.out")"
[ ! -e "$HIBERBOX_HOME/sandboxes/x" ] && ! "$HB" --json ls | grep -q '"name": "x"' ||
	fail "a refused --publish left sandbox x"

step "--publish: the host's 127.0.0.1 port reaches the sandbox's server"
HP=$(free_port) HPU=$(free_port)
[ "$HP" != "$HPU" ] || HPU=$(free_port)
"$HB" create p --image base --network nat --publish "$HP:3000" \
	--publish "127.0.0.1:$HPU:3001/udp" >"$T/out" 2>&1 || fail "create p: $(cat "$T/out")"
[ "$(publish_of p)" = "127.0.0.1:$HP:3000/tcp 127.0.0.1:$HPU:3001/udp" ] ||
	fail "inspect p: publish '$(publish_of p)'"
"$HB" --json ls | grep -q "\"127.0.0.1:$HP:3000/tcp\"" || fail "ls --json lacks p's port"
[ "$(stat -c %a:%U "$HIBERBOX_HOME/sandboxes/p/nat")" = 700:root ] && [ -S "$HIBERBOX_HOME/sandboxes/p/nat/api.sock" ] ||
	fail "p's slirp4netns API socket is not in a root-only directory: $(ls -la "$HIBERBOX_HOME/sandboxes/p/nat")"
bindable tcp "$HP" && fail "the host's port $HP is not taken by p's slirp4netns"
bindable udp "$HPU" && fail "the host's udp port $HPU is not taken by p's slirp4netns"
"$HB" exec -d p -- httpd -f -p 3000 -h /www >/dev/null || fail "start httpd in p"
[ "$(host_get "$HP")" = "inside-$TOKEN" ] || fail "the host did not get p's page through 127.0.0.1:$HP"
# on 127.0.0.1 alone, as asked: the host's other address is not published
if [ -n "$ADDR" ]; then
	python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)' \
		"$ADDR" "$HP" 2>/dev/null && fail "p's port is reachable on $ADDR:$HP, not only on 127.0.0.1"
fi

# refused_q WHY SPEC...: create q publishing SPECs fails (exit 1) with the
# one line WHY, leaving no q: not listed, no state directory, no helper
refused_q() {
	local why=$1 dpid helpers rc
	shift
	dpid=$(daemon_pid)
	helpers=$(pgrep -P "$dpid" -x slirp4netns | wc -l)
	"$HB" create q --image base --network nat "${@/#/--publish=}" >"$T/out" 2>"$T/err"; rc=$?
	[ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -qF -- "$why" "$T/err" ||
		fail "create q --publish $*: exit $rc, '$(cat "$T/err")', not '$why'"
	! "$HB" --json ls | grep -q '"name": "q"' || fail "the refused q (--publish $*) is listed"
	[ ! -e "$HIBERBOX_HOME/sandboxes/q" ] ||
		fail "the refused q (--publish $*) left $(ls -a "$HIBERBOX_HOME/sandboxes/q")"
	[ "$(pgrep -P "$dpid" -x slirp4netns | wc -l)" = "$helpers" ] ||
		fail "the refused q (--publish $*) left a slirp4netns"
}
# hold_port PORT: a process outside hiberbox listens on the host's
# 127.0.0.1:PORT (TCP) until killed; sets HOLDER
hold_port() {
	rm -f "$T/held"
	python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
open(sys.argv[2], "w").close(); time.sleep(600)' "$1" "$T/held" &
	HOLDER=$!
	SERVERS+=($HOLDER)
	for _ in $(seq 600); do [ -e "$T/held" ] && break; sleep 0.1; done
	[ -e "$T/held" ] || fail "could not hold the host's port $1"
}

step "a host port another sandbox publishes is refused at create with one line naming it, leaving nothing"
refused_q "publish 127.0.0.1:$HP:3000/tcp: host port $HP/tcp is published by sandbox 'p' (running)" \
	"$HP:3000"
# every address of the host takes 127.0.0.1's port too
refused_q "publish 0.0.0.0:$HP:3002/tcp: host port $HP/tcp is published by sandbox 'p' (running)" \
	"0.0.0.0:$HP:3002"
# UDP too, though slirp's own sockets would share the port (SO_REUSEADDR)
refused_q "publish 127.0.0.1:$HPU:3001/udp: host port $HPU/udp is published by sandbox 'p' (running)" \
	"127.0.0.1:$HPU:3001/udp"
code=$(api_post "{\"name\":\"q\",\"image\":\"base\",\"network\":\"nat\",\"publish\":[\"$HP:3000\"]}")
[ "$code" = 409 ] && grep -qF "host port $HP/tcp is published by sandbox 'p'" "$T/api.out" ||
	fail "POST on p's port: $code $(cat "$T/api.out")"
[ "$(host_get "$HP")" = "inside-$TOKEN" ] || fail "p's port stopped working after q's failure"
# the same number in the other protocol is another port
"$HB" create q --image base --network nat --publish "$HP:3000/udp" >"$T/out" 2>&1 ||
	fail "create q on udp $HP beside p's tcp $HP: $(cat "$T/out")"
"$HB" rm q >/dev/null || fail "rm q"

step "a host port a process outside hiberbox listens on fails the create with one line naming it, leaving nothing"
HPX=$(free_port)
hold_port "$HPX"
refused_q "publish 127.0.0.1:$HPX:3000/tcp: the host's port $HPX/tcp is in use" "$HPX:3000"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null

step "a fork publishes nothing (its parent keeps the host ports) and runs beside it"
"$HB" fork p pf >/dev/null || fail "fork p pf"
[ -z "$(publish_of pf)" ] || fail "the fork publishes '$(publish_of pf)'"
[ "$(field_of pf network)" = nat ] || fail "the fork's network: $(field_of pf network)"
"$HB" exec pf -- ip -4 addr show tap0 >"$T/addr" 2>&1 || fail "the fork did not wake: $(cat "$T/addr")"
[ "$(host_get "$HP")" = "inside-$TOKEN" ] || fail "p's port stopped working beside its fork"
"$HB" rm pf >/dev/null || fail "rm pf"

step "sleep frees the host port but keeps it p's: another create is refused while p sleeps"
"$HB" exec p -- sh -c "echo kept-$TOKEN >/kept" || fail "write /kept in p"
"$HB" sleep p >/dev/null || fail "sleep p"
bindable tcp "$HP" || fail "the host's port $HP stayed taken while p sleeps"
refused_q "publish 127.0.0.1:$HP:3000/tcp: host port $HP/tcp is published by sandbox 'p' (asleep)" \
	"$HP:3000"
refused_q "host port $HPU/udp is published by sandbox 'p' (asleep)" "18081:3000" "$HPU:3001/udp"
[ "$(field_of p state)" = sleeping ] || fail "p after the refused creates: $(field_of p state)"

step "a wake whose port a process outside hiberbox took fails with one line naming it; p stays asleep and whole"
hold_port "$HP"
helpers=$(pgrep -P "$(daemon_pid)" -x slirp4netns | wc -l)
"$HB" exec p -- true >"$T/out" 2>"$T/err"; rc=$?
[ "$rc" != 0 ] || fail "p woke with its host port $HP taken"
[ "$(wc -l <"$T/err")" = 1 ] && grep -qF "publish 127.0.0.1:$HP:3000/tcp: the host's port $HP/tcp is in use" "$T/err" ||
	fail "the wake on a taken port: exit $rc, '$(cat "$T/err")'"
[ "$(field_of p state)" = sleeping ] || fail "p after its failed wake: $(field_of p state)"
! mountpoint -q "$HIBERBOX_HOME/sandboxes/p/root" || fail "p's root stayed mounted after its failed wake"
[ "$(pgrep -P "$(daemon_pid)" -x slirp4netns | wc -l)" = "$helpers" ] || fail "the failed wake of p left a slirp4netns"
bindable udp "$HPU" || fail "the failed wake of p left its udp port $HPU taken"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null
"$HB" exec -d p -- httpd -f -p 3000 -h /www >/dev/null || fail "wake p and start httpd again"
[ "$(host_get "$HP")" = "inside-$TOKEN" ] || fail "the host did not get p's page after sleep and wake"
[ "$("$HB" exec p -- cat /kept)" = "kept-$TOKEN" ] || fail "p lost /kept across its failed wake"

step "rm frees the host ports"
"$HB" rm p >/dev/null || fail "rm p"
bindable tcp "$HP" || fail "the host's port $HP stayed taken after rm p"
bindable udp "$HPU" || fail "the host's udp port $HPU stayed taken after rm p"

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

step "a crashed daemon's helper groups: rm of the sleeping sandbox removes them, a starting daemon those of sandboxes gone"
"$HB" create c2 --image base --network nat --memory 128M >/dev/null || fail "create c2"
c2init=$(field_of c2 init_pid)
helper=$(helper_of "$c2init")
[ -n "$helper" ] || fail "no slirp4netns for c2"
mapfile -t c2dirs < <(daemon_test_groups_of "$helper" hbdnat)
[ "${#c2dirs[@]}" -gt 0 ] || fail "c2's helper is in no hbdnat group: $(cat "/proc/$helper/cgroup")"
daemon_test_gone_groups "${c2dirs[@]}"
# the daemon dies, then c2's init: the next daemon puts c2 to sleep
kill -9 "$(daemon_pid)"
kill -9 "$c2init"
wait_no_helper "$c2init" || fail "c2's helper outlived its daemon and init"
[ "$(field_of c2 state)" = sleeping ] || fail "c2 after its init died with the daemon: $(field_of c2 state)"
daemon_test_gone_swept hbdnat
for d in "${c2dirs[@]}"; do
	[ -d "$d" ] || fail "c2's helper's group $d is gone before its rm (the check needs it left)"
done
"$HB" rm c2 >/dev/null || fail "rm c2"
for d in "${c2dirs[@]}"; do
	[ ! -d "$d" ] || fail "rm of the sleeping c2 left its helper's group $d"
done

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

step "a re-adopting daemon waits for the previous helper, still ending, to let go of tap0"
init=$(field_of n init_pid)
helper=$(helper_of "$init")
[ -n "$helper" ] || fail "no slirp4netns for n before the second kill"
# stopped, it cannot see its exit fd close (as a helper a loaded machine
# has not run yet): the next daemon must not give up on n meanwhile
kill -STOP "$helper"
kill -9 "$(daemon_pid)"
(sleep 1; kill -CONT "$helper") &
cont=$!
"$HB" exec n -- ip -4 addr show tap0 >"$T/addr" 2>&1 || fail "exec while the old helper still held tap0: $(cat "$T/addr")"
wait "$cont"
grep -q 'inet 10\.0\.2\.100/24' "$T/addr" || fail "n's tap0 after the old helper let go: $(cat "$T/addr")"
[ "$(field_of n init_pid)" = "$init" ] || fail "n was stopped, not re-adopted, while its old helper ended (init $init, now $(field_of n init_pid))"
h=$(helper_of "$init")
[ -n "$h" ] && [ "$h" != "$helper" ] || fail "n has no new slirp4netns (old $helper, now '$h')"

step "a daemon killed while a new init waits to be let go: the init, n's helper and the daemon's lock go with it"
"$HB" sleep o >/dev/null || fail "sleep o"
kill -9 "$(daemon_pid)"
wait_no_helper "$init" || fail "n's slirp4netns outlived its daemon before the spawn check"
# the next daemon (re-adopting n, a new helper) holds every new init,
# cloned, before letting it go on
HIBERBOX_TEST_SPAWN_PAUSE_MS=600000 "$HB" exec n -- true >/dev/null || fail "exec n re-adopted"
dpid=$(daemon_pid)
[ -n "$(helper_of "$init")" ] || fail "no slirp4netns for n before the spawn check"
"$HB" exec o -- true >/dev/null 2>&1 &
waker=$!
# o's init-to-be: the daemon's child in a user namespace of its own (not
# the daemon's, not n's)
setup=
for _ in $(seq 600); do
	for p in $(pgrep -P "$dpid"); do
		ns=$(readlink "/proc/$p/ns/user")
		[ -n "$ns" ] && [ "$ns" != "$(readlink "/proc/$dpid/ns/user")" ] &&
			[ "$ns" != "$(readlink "/proc/$init/ns/user")" ] && setup=$p
	done
	[ -n "$setup" ] && break
	sleep 0.1
done
[ -n "$setup" ] || fail "o's new init did not start (log: $(grep 'test pause: spawn' "$HIBERBOX_HOME/hiberboxd.log"))"
kill -9 "$dpid"
# it held copies of the daemon's descriptors: n's helper's exit fd, the
# daemon's lock and API socket, o's exec request, its own go-ahead's other
# end (left stuck, it is killed here so that the teardown does not hang)
setup_fail() { kill -9 "$setup" 2>/dev/null; fail "$@"; }
wait_no_helper "$init" || setup_fail "n's slirp4netns outlived its daemon while o's init $setup was being set up"
# running: not gone, nor a zombie its new parent has yet to reap
running() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
for _ in $(seq 600); do running "$setup" || break; sleep 0.1; done
! running "$setup" ||
	setup_fail "o's init $setup outlived the daemon that was setting it up ($(ps -o stat=,wchan= -p "$setup"))"
timeout 120 "$HB" exec n -- true >"$T/out" 2>&1 || fail "a daemon after the one killed mid-spawn: $(cat "$T/out")"
timeout 120 "$HB" exec o -- true >"$T/out" 2>&1 || fail "o after its spawn was cut short: $(cat "$T/out")"
kill "$waker" 2>/dev/null; wait "$waker" 2>/dev/null
init=$(field_of n init_pid)

step "rm leaves no slirp4netns"
dpid=$(daemon_pid)
"$HB" rm f >/dev/null || fail "rm f"
"$HB" rm n >/dev/null || fail "rm n"
wait_no_helper "$init" || fail "slirp4netns of n outlived its rm"
wait_no_helper "$finit" || fail "slirp4netns of f outlived its rm"
left=$(pgrep -P "$dpid" -x slirp4netns)
[ -z "$left" ] || fail "slirp4netns left running after rm: $(ps -o pid,stat,args -p "$left")"
"$HB" rm o >/dev/null || fail "rm o"

step "two creates at once wanting one host port: one is made, the other refused with one line naming it"
"$HB" daemon stop >/dev/null || fail "daemon stop before the concurrent creates"
# each create waits 1.5 s once its image is resolved, before its sandbox
# is listed: the second request is in the daemon while the first is
HIBERBOX_TEST_CREATE_PAUSE_MS=1500 "$HB" ls >/dev/null || fail "ls starting the daemon"
HPR=$(free_port)
"$HB" create r1 --image base --network nat --publish "$HPR:3000" >"$T/r1.out" 2>"$T/r1.err" &
c1=$!
for _ in $(seq 600); do grep -q 'test pause: create r1' "$HIBERBOX_HOME/hiberboxd.log" && break; sleep 0.1; done
"$HB" create r2 --image base --network nat --publish "0.0.0.0:$HPR:3001" >"$T/r2.out" 2>"$T/r2.err"
rc2=$?
wait "$c1"; rc1=$?
[ "$rc1" = 0 ] && [ "$rc2" = 1 ] || fail "concurrent creates on port $HPR: r1 exit $rc1 '$(cat "$T/r1.err")', r2 exit $rc2 '$(cat "$T/r2.err")'"
[ "$(wc -l <"$T/r2.err")" = 1 ] &&
	grep -qF "publish 0.0.0.0:$HPR:3001/tcp: host port $HPR/tcp is published by sandbox 'r1' (" "$T/r2.err" ||
	fail "the second create on port $HPR: '$(cat "$T/r2.err")'"
! "$HB" --json ls | grep -q '"name": "r2"' && [ ! -e "$HIBERBOX_HOME/sandboxes/r2" ] ||
	fail "the refused r2 was left behind"
bindable tcp "$HPR" && fail "r1 does not hold the host's port $HPR"
"$HB" rm r1 >/dev/null || fail "rm r1"
"$HB" daemon stop >/dev/null || fail "daemon stop"
if grep -q "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log"; then
	grep -A20 "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log" | head -60 >&2
	fail "sanitizer reports in the daemon's log"
fi
echo "network: all checks passed"
