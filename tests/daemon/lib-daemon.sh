# Shared pieces of the daemon's end-to-end scripts (sourced; the functions
# use HB, T and HIBERBOX_HOME).

# What every such script needs (env: HIBERBOX [BUSYBOX]); skips (77) without.
daemon_test_requires() {
	: "${HIBERBOX:?}"
	BUSYBOX=${BUSYBOX:-/bin/busybox}
	[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
	[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
	[ -x "$BUSYBOX" ] || { echo "SKIP: no static busybox at $BUSYBOX"; exit 77; }
}

daemon_pid() { "$HB" --json daemon status 2>/dev/null | sed -n 's/.*"pid": \([0-9]*\).*/\1/p'; }

# Stop the daemon (its sandboxes go to sleep), by force if it does not
# answer, and take down any sandbox root a failure left mounted, so that
# removing $T never walks into a mount.
daemon_teardown() {
	local p m
	timeout 60 "$HB" daemon stop >/dev/null 2>&1
	p=$(daemon_pid); [ -n "$p" ] && kill -9 "$p" 2>/dev/null
	for m in "$HIBERBOX_HOME"/sandboxes/*/root; do
		[ -d "$m" ] && { "$HB" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null; }
	done
}

# A failed check: its line, the end of the daemon's log, exit 1.
fail() {
	echo "FAIL: $*" >&2
	echo "--- daemon log:" >&2
	tail -30 "$HIBERBOX_HOME/hiberboxd.log" >&2 2>/dev/null
	exit 1
}

# A scratch directory T (hb-WHAT-*, removed at exit once the daemon is
# stopped) holding HIBERBOX_HOME; HB the CLI.  For scripts that need no
# cleanup of their own.
daemon_test_scratch() {
	T=$(mktemp -d "/tmp/hb-$1-XXXXXX")
	chmod 755 "$T"
	export HIBERBOX_HOME=$T/home
	HB=$HIBERBOX
	trap 'daemon_teardown; rm -rf "$T"' EXIT
}

# daemon_test_image NAME CMD...: import an image NAME of a static busybox
# with those commands linked to it (and an empty /tmp).
daemon_test_image() {
	local name=$1 c
	shift
	mkdir -p "$T/img-$name/bin" "$T/img-$name/tmp"
	cp "$BUSYBOX" "$T/img-$name/bin/busybox"
	for c in "$@"; do ln -s busybox "$T/img-$name/bin/$c"; done
	"$HB" image import "$T/img-$name" "$name" >/dev/null || fail "image import $name"
}

# daemon_test_groups_of PID KIND: the directories of PID's groups named
# KIND-* (a sandbox's hbdfs or hbdnat groups), one a line: one in every v1
# hierarchy that has it, or its one in v2.
daemon_test_groups_of() {
	local ctl path
	while IFS=: read -r _ ctl path; do
		case "$path" in */hiberbox/"$2"-*) echo "/sys/fs/cgroup${ctl:+/$ctl}$path" ;; esac
	done <"/proc/$1/cgroup"
}

# Stop the daemon; fail if its log (every daemon's of this home) has a
# sanitizer's report.
daemon_test_no_sanitizer_reports() {
	"$HB" daemon stop >/dev/null
	if grep -q "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log"; then
		grep -A20 "Sanitizer\|runtime error:" "$HIBERBOX_HOME/hiberboxd.log" | head -60 >&2
		fail "sanitizer reports in the daemon's log"
	fi
}

# daemon_test_gone_groups DIR...: beside each of a sandbox's groups, make
# one of the same home and kind for a sandbox that does not exist (id base
# 4000000000), listed in GONE, for the next daemon to remove.
daemon_test_gone_groups() {
	local d
	GONE=()
	for d in "$@"; do GONE+=("${d%-*}-4000000000"); done
	mkdir "${GONE[@]}" || fail "mkdir ${GONE[*]}"
}

# daemon_test_gone_swept KIND: the daemon that started since removed GONE,
# KIND's groups, and said so in its log.
daemon_test_gone_swept() {
	local d
	for d in "${GONE[@]}"; do
		[ ! -d "$d" ] || fail "the starting daemon left $d, of no sandbox"
	done
	grep -q "removing cgroups $1-.*-4000000000 (their sandbox is gone)" "$HIBERBOX_HOME/hiberboxd.log" ||
		fail "the daemon did not log the removal of the $1 groups of no sandbox"
}
