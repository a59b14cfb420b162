# Helpers for the filesystem tests (sourced after tests/integration/lib.sh).
#
# Mounts made with fs_mount are unmounted on exit whatever happens, before the
# temporary area is removed (rm -rf must never walk into a live mount).

[ -c /dev/fuse ] || { echo "SKIP: /dev/fuse is absent"; exit 77; }

FS_MOUNTS=()

fs_setup() {
	setup_tmp
	chmod 0755 "$T" # the permission tests run as another user
	trap 'fs_rc=$?; fs_cleanup; (exit $fs_rc); cleanup_tmp' EXIT
}

fs_cleanup() {
	local m
	for m in "${FS_MOUNTS[@]}"; do
		if mountpoint -q "$m" 2>/dev/null || ! stat "$m" >/dev/null 2>&1; then
			"$HIBERBOX" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true
		fi
	done
	# The fs processes log there: sanitizer reports fail the test.
	if [ -n "${T:-}" ] && grep -qE "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$HIBERBOX_HOME/fs.log" 2>/dev/null; then
		echo "FAIL: sanitizer report in the fs process log" >&2
		fs_rc=1
	fi
	if [ -n "${T:-}" ] && [ -f "$HIBERBOX_HOME/fs.log" ] && [ "${fs_rc:-0}" -ne 0 ]; then
		echo "--- fs.log (tail) ---" >&2
		tail -n 30 "$HIBERBOX_HOME/fs.log" >&2
	fi
}

# fs_model_start: the start of a test driving fs-model: a temporary area, a
# repository, and ID, a snapshot of the tree the workloads start from
# ($T/src, see fs_model_src).
fs_model_start() {
	: "${FS_MODEL:?FS_MODEL must point at the fs-model binary}"
	fs_setup
	hb_ok init >/dev/null
	fs_model_src "$T/src"
	ID=$(snapshot_create "$T/src") || exit 1
}

# fs_model_src DIR: the tree fs-model's workloads start from (its paths).
fs_model_src() {
	mkdir -p "$1/lower/sub" "$1/d0"
	echo f1 >"$1/lower/f1"
	printf 'f2 content\n' >"$1/lower/f2"
	ln "$1/lower/f2" "$1/d1-link"
	echo g >"$1/lower/sub/g"
	randfile "$1/lower/big" 300000 big
	setfattr -n user.k0 -v lowerval "$1/lower/f1"
}

# fs_mount SNAPSHOT MOUNTPOINT [ARGS...]
fs_mount() {
	local snap=$1 mnt=$2
	shift 2
	mkdir -p "$mnt"
	FS_MOUNTS+=("$mnt")
	hb_ok mount "$snap" "$mnt" "$@"
}

fs_umount() {
	hb_ok umount "$1"
}

# df_of PATH: "total used avail" in bytes, from statvfs
df_of() {
	python3 -c 'import os, sys
s = os.statvfs(sys.argv[1])
print(s.f_blocks * s.f_frsize, (s.f_blocks - s.f_bfree) * s.f_frsize, s.f_bavail * s.f_frsize)' "$1"
}

# errno_of PYTHON-STATEMENTS PATH: OK or the errno name the statements raise
errno_of() {
	python3 -c 'import errno, os, sys
p = sys.argv[1]
try:
    exec(sys.argv[2])
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$2" "$1"
}

# df_wait_avail PATH BYTES: wait (up to 60 s: only a hang takes that long,
# a loaded machine can take seconds) until statfs shows more than BYTES
# free: a deleted file's space comes back when the kernel forgets it.
df_wait_avail() {
	python3 -c 'import os, sys, time
end = time.monotonic() + 60
while True:
    s = os.statvfs(sys.argv[1])
    if s.f_bavail * s.f_frsize > int(sys.argv[2]):
        sys.exit(0)
    if time.monotonic() > end:
        sys.exit(1)
    time.sleep(0.05)' "$1" "$2"
}

# fs_mount_field MOUNTPOINT KEY: KEY of the mount in `mounts --json`
fs_mount_field() {
	local out
	out=$(hb_ok mounts --json) || exit 1
	python3 -c 'import json,os,sys
for m in json.loads(sys.argv[1]):
    if os.path.realpath(m["mountpoint"]) == os.path.realpath(sys.argv[2]):
        print(m[sys.argv[3]])' "$out" "$1" "$2"
}

# The pid of the process serving a mountpoint.
fs_pid() { fs_mount_field "$1" pid; }

# fs_gone PID: wait until the process has exited (a zombie has closed its
# files, the upper's lock among them); 1 if it is still there after a
# minute (a SIGKILLed process takes a moment to go, longer on a loaded
# machine; only a stuck one takes that long).
fs_gone() {
	local end=$((SECONDS + 60))
	while [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.01
	done
}

# fs_kill MOUNTPOINT: SIGKILL the process serving it and wait until it is
# gone: the mount is then dead, as after a crash.
fs_kill() {
	local pid
	pid=$(fs_pid "$1")
	kill -KILL "$pid"
	fs_gone "$pid" || fail "the fs process $pid of $1 is still alive a minute after SIGKILL"
}

# fs_wait_dead MOUNTPOINT [RUNNER...]: wait until the mount of a killed fs
# process answers ENOTCONN (a minute at most), asking through RUNNER (as_user
# for a mount without allow_other).  On io_uring the kernel first answers
# ECANCELED, then ECONNABORTED, while it tears the dead process's rings
# down: ~20 ms here, longer on a loaded machine (see hbfs_mount_dead).
fs_wait_dead() {
	"${@:2}" python3 -c 'import errno, os, sys, time
end = time.monotonic() + 60
while True:
    try:
        os.statvfs(sys.argv[1])
        last = "an answer"
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            sys.exit(0)
        last = errno.errorcode.get(e.errno, str(e.errno))
    if time.monotonic() > end:
        sys.exit("%s: still %s a minute after its fs process was killed" % (sys.argv[1], last))
    time.sleep(0.01)' "$1"
}

# fs_commit MOUNTPOINT [ARGS...]: prints the new id (validated).
fs_commit() {
	local out id
	out=$(hb_ok commit "$@") || exit 1
	id=$(printf '%s\n' "$out" | tail -n 1)
	[[ "$id" =~ ^[0-9a-f]{32}$ ]] || fail "commit $*: '$id' is not an id"
	printf '%s\n' "$id"
}
