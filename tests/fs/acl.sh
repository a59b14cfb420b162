#!/bin/bash
# POSIX ACLs on the mount behave as on the host's own filesystem (the
# reference: the same operations on a directory of $T, ext4 or tmpfs): the
# kernel enforces them for a user without privileges (a named-user entry
# grants, a mask denies), lower ACLs included; a new file, directory, fifo or
# O_TMPFILE in a directory with a default ACL inherits it (posix_acl_create),
# the umask applies only where there is none; chmod moves the mask, setfacl
# moves the mode's group bits, an ACL the mode says all of is not kept, and
# setgid goes when a caller outside the group sets one, and removing an ACL
# that is not there succeeds.  Every entry's mode
# and ACL xattrs must equal the reference's byte for byte after the
# operations, after a remount with the same upper and in a commit.  With
# --uid-shift all of it works on shifted ids and stores them unshifted.
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
is_root || { echo "SKIP: needs root to run as another user"; exit 77; }
command -v setfacl >/dev/null && command -v setpriv >/dev/null ||
	{ echo "SKIP: needs setfacl and setpriv"; exit 77; }
fs_setup
hb_ok init >/dev/null

as_uid() {
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$u" --clear-groups "$@"
}
as_nobody() { as_uid 65534 "$@"; }

# The lower tree (made on the host: the snapshot's source and the reference).
acl_fixture() {
	local d=$1
	mkdir -p "$d/dd" "$d/plain"
	chmod 0755 "$d" "$d/dd" "$d/plain"
	printf 'granted\n' >"$d/granted"
	chmod 0640 "$d/granted"
	setfacl -m u:nobody:rw "$d/granted"
	printf 'masked\n' >"$d/masked"
	chmod 0600 "$d/masked"
	setfacl -m u:nobody:rw,m::r "$d/masked"
	setfacl -m u:nobody:rwx "$d/dd"
	setfacl -d -m u:nobody:rwx,g::r-x,o::- "$d/dd"
	printf 'sync\n' >"$d/sync"
	setfacl -m u:nobody:rwx "$d/sync"
	printf 'equiv\n' >"$d/equiv"
	setfacl -m u:nobody:r "$d/equiv"
	printf 'sgid\n' >"$d/sgid-file"
	chown nobody:root "$d/sgid-file"
	chmod 2775 "$d/sgid-file"
}

tmpfile_link() {
	python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_WRONLY, 0o666)
os.link("/proc/self/fd/%d" % fd, sys.argv[2])' "$1" "$2"
}

# The operations compared: creates with and without a default ACL under two
# umasks, chmod and setfacl on lower and new entries, an equivalent ACL, an
# ACL set by a caller outside the file's group.
acl_ops() {
	local d=$1
	(
		set -e
		cd "$d"
		umask 027
		touch dd/f plain/f
		mkdir dd/sub plain/sub
		touch dd/sub/g
		mkdir dd/sub/sub2
		mkfifo dd/fifo plain/fifo
		ln -s f dd/link
		tmpfile_link dd dd/tmp
		tmpfile_link plain plain/tmp
		umask 0
		touch dd/u0 plain/u0
		mkdir dd/u0d plain/u0d
		chmod 0604 sync
		setfacl -m m::rw sync
		chmod 0700 dd/sub
		setfacl -m u:daemon:rx plain/sub
		chmod 0751 plain/sub
		setfacl -b equiv
		# removing an ACL that is not there is no error
		setfattr -x system.posix_acl_access plain/f
		setfattr -x system.posix_acl_default plain
	) || bad "operations failed in $d"
	as_nobody setfacl -m u:daemon:r "$d/sgid-file" || bad "setfacl by the owner failed in $d"
}

# Every entry under DIR: path, mode, and its ACL xattrs byte for byte.
acl_state() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
		printf '%s %s\n' "$p" "$(stat -c %A "$p")"
		getfattr -h -d -m '^system\.posix_acl_' -e hex "$p" 2>/dev/null | grep -v '^#' | grep . || true
	done)
}

# What nobody may do under DIR: granted by named-user entries (lower and
# inherited ones), denied by a mask (its write) and where the mode gives
# others nothing.  (A mask of --- would not do: group bits 0 make the kernel
# skip the ACL and go by the other bits.)
acl_access() {
	local d=$1 out=""
	as_nobody cat "$d/granted" >/dev/null 2>&1 && out+="granted:r " || out+="granted:- "
	as_nobody sh -c "echo more >>'$d/granted'" 2>/dev/null && out+="granted:w " || out+="granted:- "
	as_nobody cat "$d/masked" >/dev/null 2>&1 && out+="masked:r " || out+="masked:- "
	as_nobody sh -c "echo more >>'$d/masked'" 2>/dev/null && out+="masked:w " || out+="masked:- "
	as_nobody cat "$d/dd/f" >/dev/null 2>&1 && out+="inherited:r " || out+="inherited:- "
	as_nobody cat "$d/plain/f" >/dev/null 2>&1 && out+="plain:r " || out+="plain:- "
	printf '%s' "$out"
}
ACCESS_WANT="granted:r granted:w masked:r masked:- inherited:r plain:- "

SRC="$T/src"
REF="$T/ref"
mkdir -p "$SRC" "$REF"
chmod 0755 "$SRC" "$REF"
acl_fixture "$SRC/acl"
acl_fixture "$REF/acl"
ID=$(snapshot_create "$SRC") || exit 1
M="$T/mnt"

log "the lower tree's ACLs are enforced"
fs_mount "$ID" "$M" --upper "$T/upper"
got=$(acl_access "$M/acl" | cut -d' ' -f1-4)
[ "$got" = "granted:r granted:w masked:r masked:-" ] || bad "lower ACLs: nobody may '$got'"

log "creates, chmod and setfacl: as on the host's filesystem"
acl_ops "$REF/acl"
acl_ops "$M/acl"
acl_state "$REF/acl" >"$T/ref.state"
grep -q 'system.posix_acl_default' "$T/ref.state" ||
	{ echo "SKIP: $T does not keep POSIX ACLs (the reference)"; exit 77; }
acl_state "$M/acl" >"$T/mnt.state"
diff -u "$T/ref.state" "$T/mnt.state" >"$T/state.diff" || bad "ACLs and modes differ from the reference:"$'\n'"$(cat "$T/state.diff")"
got=$(acl_access "$REF/acl")
[ "$got" = "$ACCESS_WANT" ] || bad "reference: nobody may '$got'"
got=$(acl_access "$M/acl")
[ "$got" = "$ACCESS_WANT" ] || bad "mount: nobody may '$got', not '$ACCESS_WANT'"
for d in "$REF" "$M"; do
	as_nobody touch "$d/acl/dd/by-nobody" 2>/dev/null || bad "nobody cannot create in a directory its ACL entry grants ($d)"
done
as_nobody touch "$M/acl/plain/by-nobody" 2>/dev/null && bad "nobody created a file in a directory only root may write"
# the kernel caches ACLs: a chmod (mask r--) must take the write away at once
chmod 0640 "$M/acl/granted"
as_nobody sh -c "echo more >>'$M/acl/granted'" 2>/dev/null && bad "a chmod to 0640 left nobody's ACL write grant effective"
as_nobody cat "$M/acl/granted" >/dev/null || bad "a chmod to 0640 took nobody's ACL read grant"
chmod 0660 "$M/acl/granted" "$REF/acl/granted"
acl_state "$REF/acl" >"$T/ref.state"

log "a remount with the same upper keeps them"
fs_umount "$M"
fs_mount "$ID" "$M" --upper "$T/upper"
acl_state "$M/acl" >"$T/mnt.state"
diff -u "$T/ref.state" "$T/mnt.state" >"$T/state.diff" || bad "after a remount:"$'\n'"$(cat "$T/state.diff")"

log "a commit carries them, and they are enforced from the lower"
ID2=$(fs_commit "$M") || exit 1
fs_umount "$M"
fs_mount "$ID2" "$M"
acl_state "$M/acl" >"$T/mnt.state"
diff -u "$T/ref.state" "$T/mnt.state" >"$T/state.diff" || bad "in the commit:"$'\n'"$(cat "$T/state.diff")"
got=$(acl_access "$M/acl")
[ "$got" = "$ACCESS_WANT" ] || bad "commit: nobody may '$got', not '$ACCESS_WANT'"
fs_umount "$M"

log "uid shift: inheritance, chmod and enforcement on shifted ids"
acl_ids() { getfacl -n -E "$@" 2>/dev/null | grep -E '^(user|group|mask|other)' | tr '\n' ' '; }
fs_mount "$ID2" "$M" --upper "$T/upper-shift" --uid-shift 100000
# as the sandbox's root (host uid = the shift)
as_uid 100000 sh -c "umask 077 && touch '$M/acl/dd/shifted' && mkdir '$M/acl/dd/shifted-d'" ||
	bad "creates by the sandbox's root failed"
got=$(acl_ids "$M/acl/dd/shifted")
[ "$got" = "user::rw- user:165534:rwx group::r-x mask::rw- other::--- " ] || bad "shifted inheritance: '$got'"
got=$(acl_ids -d "$M/acl/dd/shifted-d")
[ "$got" = "user::rwx user:165534:rwx group::r-x mask::rwx other::--- " ] || bad "shifted default inheritance: '$got'"
as_uid 165534 cat "$M/acl/dd/shifted" || bad "the sandbox's nobody cannot read through its inherited entry"
as_uid 101000 cat "$M/acl/dd/shifted" 2>/dev/null && bad "another sandbox user read a file only the ACL opens"
as_uid 100000 sh -c "echo shifted >'$M/acl/plain/shifted' && chmod 0600 '$M/acl/plain/shifted' &&
	setfacl -m u:101000:rw '$M/acl/plain/shifted'" 2>/dev/null || bad "the sandbox's root cannot set an ACL"
[ "$(stat -c %a "$M/acl/plain/shifted")" = 660 ] || bad "setfacl on a shifted mount: mode $(stat -c %a "$M/acl/plain/shifted")"
as_uid 101000 sh -c "echo w >>'$M/acl/plain/shifted'" || bad "a named entry set on a shifted mount does not grant"
as_uid 100000 chmod 0640 "$M/acl/plain/shifted"
as_uid 101000 sh -c "echo w >>'$M/acl/plain/shifted'" 2>/dev/null && bad "chmod on a shifted mount left the mask open"
as_uid 101000 cat "$M/acl/plain/shifted" >/dev/null || bad "chmod on a shifted mount closed the mask's read"
got=$(acl_ids "$M/acl/plain/shifted")
[ "$got" = "user::rw- user:101000:rw- group::--- mask::r-- other::--- " ] || bad "chmod on a shifted mount: '$got'"
ID3=$(fs_commit "$M") || exit 1
fs_umount "$M"
fs_mount "$ID3" "$M"
got=$(acl_ids "$M/acl/plain/shifted")
[ "$got" = "user::rw- user:1000:rw- group::--- mask::r-- other::--- " ] || bad "ACL set through a shifted mount, stored: '$got'"
got=$(acl_ids "$M/acl/dd/shifted")
[ "$got" = "user::rw- user:65534:rwx group::r-x mask::rw- other::--- " ] || bad "ACL inherited on a shifted mount, stored: '$got'"
fs_umount "$M"

finish
