#!/bin/bash
# Browsing a snapshot without restoring it: `snapshot ls` (plain, -l, -R,
# --json) must list exactly the source tree's entries with their metadata,
# and `snapshot cat` must give every regular file's bytes (hard links,
# sparse, empty, inline and chunked files, odd names); paths that are not
# files, are missing, or climb out with ".." get one clear line.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
hb_ok init >/dev/null

make_tree "$T/src" 300 6 3
dump_tree "$T/src" "$T/src.json" # before anything reads the tree (atimes)
export ITDIR
ID=$(snapshot_create "$T/src" --tag browse)

# restore --path P must give exactly P's part of the tree and its parents:
# expected = the source's dump cut to that part, hard-link groups cut too
part_dump() {
	python3 - "$T/src.json" "$1" "$2" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["ITDIR"])
import treecmp
full, sel = treecmp.load(sys.argv[1]), sys.argv[2].strip("/")
def kept(p):
    return p == "." or p == sel or p.startswith(sel + "/") or sel.startswith(p + "/")
part = {p: dict(r) for p, r in full.items() if kept(p)}
groups = {}
for p, r in part.items():
    if "link_group" in r:
        groups.setdefault(r["link_group"], []).append(p)
for members in groups.values():
    for p in members:
        part[p]["nlink"] = len(members)
        if len(members) == 1:
            del part[p]["link_group"]
        else:
            part[p]["link_group"] = min(members)
with open(sys.argv[3], "w", encoding="utf-8", errors="surrogateescape") as f:
    json.dump(part, f)
EOF
}
for P in hard/b big "names" hard/a/two src; do
	[ -e "$T/src/$P" ] || { bad "fixture lacks $P"; continue; }
	log "restore --path $P"
	part_dump "$P" "$T/part.json"
	rm -rf "$T/part"
	hb_ok snapshot restore browse "$T/part" --path "$P"
	diffs=$(compare_trees "$T/part.json" "$T/part" --no-root-meta) || bad "restore --path $P:"$'\n'"$diffs"
done
expect_error "restore --path with '..'" snapshot restore browse "$T/part-x" --path hard/../../etc &&
	expect_in "$HB_ERR" "'..'" "restore --path .." || true
[ -e "$T/part-x" ] && bad "a refused restore --path created its DIR"
expect_error "restore --path of a missing path" snapshot restore browse "$T/part-x" --path no/such &&
	expect_in "$HB_ERR" "no such file" "restore --path missing" || true

log "ls -R --json lists every entry with the source's metadata"
hb_ok snapshot ls browse -R --json >"$T/ls.json"
python3 - "$T/src" "$T/ls.json" <<'EOF' || bad "ls -R --json differs from the source tree"
import json, os, stat, sys
root = os.fsencode(sys.argv[1])
kinds = {stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p", stat.S_IFCHR: "c",
         stat.S_IFBLK: "b", stat.S_IFSOCK: "s", stat.S_IFREG: "-"}
def unesc(p):  # the CLI writes bytes >= 0x80 of a non-UTF-8 path as \xNN
    try:
        return p.encode("utf-8") if "\\x" not in p else p.encode("latin-1").decode("unicode_escape").encode("latin-1")
    except Exception:
        return p.encode("utf-8", "surrogateescape")
want = {}
for dirpath, dirs, files in os.walk(root):
    for n in dirs + files:
        full = os.path.join(dirpath, n)
        want[os.path.relpath(full, root)] = os.lstat(full)
got = {}
for e in json.load(open(sys.argv[2])):
    got[unesc(e["path"])] = e
errors = []
for p in sorted(set(want) | set(got)):
    if p not in got:
        errors.append("missing from ls: %r" % p); continue
    if p not in want:
        errors.append("ls lists what the source lacks: %r" % p); continue
    st, e = want[p], got[p]
    exp = {"type": kinds[stat.S_IFMT(st.st_mode)], "mode": stat.S_IMODE(st.st_mode),
           "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns // 10**9}
    if not stat.S_ISDIR(st.st_mode):
        exp["nlink"] = st.st_nlink
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        exp["size"] = st.st_size
    for k, v in exp.items():
        if e.get(k) != v:
            errors.append("%r: %s is %r, the source has %r" % (p, k, e.get(k), v))
    if stat.S_ISLNK(st.st_mode) and unesc(e.get("target", "")) != os.readlink(os.path.join(root, p)):
        errors.append("%r: target %r" % (p, e.get("target")))
for line in errors[:20]:
    print(line, file=sys.stderr)
print("%d entries, %d differences" % (len(want), len(errors)), file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

log "ls: plain names of one directory, -l, a single file, the same by id prefix"
hb_ok snapshot ls browse big >"$T/out"
[ "$(cat "$T/out")" = "$(cd "$T/src/big" && LC_ALL=C ls -A)" ] || bad "ls big: $(cat "$T/out")"
hb_ok snapshot ls "${ID:0:8}" /big/ >"$T/out2"
cmp -s "$T/out" "$T/out2" || bad "ls by id prefix and /big/ differs from ls browse big"
hb_ok snapshot ls browse big -l >"$T/out"
size=$(stat -c %s "$T/src/big/blob-a.bin")
grep -qE "^-rw-r--r-- +1 +[0-9]+ +[0-9]+ +$size .* blob-a\.bin$" "$T/out" || bad "ls -l: no line for blob-a.bin: $(cat "$T/out")"
link=$(cd "$T/src" && find . -type l | head -n 1 | cut -c3-)
hb_ok snapshot ls browse "$link" -l >"$T/out"
grep -qF -- "$link -> $(readlink "$T/src/$link")" "$T/out" || bad "ls -l of a symlink: $(cat "$T/out")"
hb_ok snapshot ls browse -R >"$T/out"
# one line per entry (names with a newline are escaped), so counted
# exactly: find prints such names raw, so it counts entries, not lines
[ "$(grep -c '' "$T/out")" -eq "$(cd "$T/src" && find . -mindepth 1 -printf . | wc -c)" ] ||
	bad "ls -R: $(grep -c '' "$T/out") lines, the tree has $(cd "$T/src" && find . -mindepth 1 -printf . | wc -c) entries"

log "cat: every regular file, byte for byte"
n=0
while IFS= read -r -d '' f; do
	rel=${f#"$T/src/"}
	if ! hb snapshot cat browse "$rel" >"$T/cat.out" 2>"$T/err"; then
		bad "cat '$rel' failed: $(head -c 300 "$T/err")"
	elif ! cmp -s "$T/cat.out" "$f"; then
		bad "cat '$rel' differs from the source"
	fi
	n=$((n + 1))
done < <(find "$T/src" -type f -print0)
log "$n files read back"
[ "$n" -gt 300 ] || bad "only $n files checked"

log "cat and ls: what is not a file, missing, or outside the snapshot"
dir=big
fifo=$(cd "$T/src" && find . -type p | head -n 1 | cut -c3-)
expect_error "cat a directory" snapshot cat browse "$dir" && expect_in "$HB_ERR" "is a directory" "cat a directory" || true
if [ -n "$fifo" ]; then
	expect_error "cat a fifo" snapshot cat browse "$fifo" && expect_in "$HB_ERR" "not a regular file" "cat a fifo" || true
fi
expect_error "cat a missing file" snapshot cat browse no/such/file && expect_in "$HB_ERR" "no such file" "cat missing" || true
expect_error "cat through a file" snapshot cat browse big/blob-a.bin/x && expect_in "$HB_ERR" "not a directory" "cat through a file" || true
for p in ../etc/passwd big/../../x /../../etc/passwd; do
	expect_error "cat '$p'" snapshot cat browse "$p" && expect_in "$HB_ERR" "'..'" "cat '$p'" || true
	expect_error "ls '$p'" snapshot ls browse "$p" && expect_in "$HB_ERR" "'..'" "ls '$p'" || true
done
expect_error "ls a missing path" snapshot ls browse nope && expect_in "$HB_ERR" "no such file" "ls missing" || true
expect_error "cat of an unknown snapshot" snapshot cat no-such-tag big/blob-a.bin || true
expect_usage_error "cat without a path" snapshot cat browse || true
expect_usage_error "ls with two paths" snapshot ls browse a b || true
log "symbolic links inside the snapshot: followed as in a chroot"
L="$T/links"
mkdir -p "$L/real/deep" "$L/etc"
echo content >"$L/real/deep/file"
ln -s real "$L/dirlink"
ln -s /real/deep/file "$L/etc/abs"          # absolute: from the snapshot's root
ln -s ../../../../real/deep/file "$L/etc/climb" # climbs past the root: stops there
ln -s dirlink/deep "$L/chain"
ln -s loop1 "$L/loop2" && ln -s loop2 "$L/loop1"
ln -s nowhere "$L/dangling"
hb_ok snapshot create "$L" --tag links >/dev/null
for p in dirlink/deep/file etc/abs etc/climb chain/file /chain/./file; do
	[ "$(hb snapshot cat links "$p" 2>"$T/err")" = content ] || bad "cat '$p' through links: $(cat "$T/err")"
done
expect_error "cat a link loop" snapshot cat links loop1 && expect_in "$HB_ERR" "too many levels" "cat loop" || true
expect_error "cat a dangling link" snapshot cat links dangling && expect_in "$HB_ERR" "leads nowhere" "cat dangling" || true
expect_error "cat through a file" snapshot cat links dirlink/deep/file/x && expect_in "$HB_ERR" "not a directory" "cat file/x" || true
[ "$(hb snapshot ls links dirlink)" = deep ] || bad "ls of a link to a directory does not list the directory"
hb snapshot ls links dirlink -l | grep -q "^l.* dirlink -> real$" || bad "ls -l of a link to a directory does not show the link"
[ "$(hb snapshot ls links chain)" = file ] || bad "ls of a chain of links"
hb snapshot ls links dangling -l | grep -q "dangling -> nowhere$" || bad "ls -l of a dangling link"
# restore --path through links: the entry lands at its real path, a last
# link is restored as the link
hb_ok snapshot restore links "$T/lp" --path chain/file
[ "$(cat "$T/lp/real/deep/file" 2>&1)" = content ] && [ ! -e "$T/lp/chain" ] && [ ! -e "$T/lp/etc" ] ||
	bad "restore --path through links: $(cd "$T/lp" && find . | sort | tr '\n' ' ')"
hb_ok snapshot restore links "$T/lp2" --path etc/abs
[ "$(readlink "$T/lp2/etc/abs")" = /real/deep/file ] && [ ! -e "$T/lp2/real" ] ||
	bad "restore --path of a link: $(cd "$T/lp2" && find . | sort | tr '\n' ' ')"
expect_error "restore --path through a loop" snapshot restore links "$T/lp3" --path loop1/x &&
	expect_in "$HB_ERR" "too many levels" "restore --path loop" || true

log "a source directory whose name is not UTF-8"
ODD="$T/odd-"$'\xfe'
mkdir -p "$ODD" && echo one >"$ODD/f" && echo two >"$ODD/n"$'\xff'
O1=$(snapshot_create "$ODD")
echo three >"$ODD/g"
O2=$(snapshot_create "$ODD")
hb_ok snapshot show "$O2" --json >"$T/out"
python3 - "$T/out" "$O1" <<'EOF' || bad "show --json of a snapshot of a non-UTF-8 directory: $(cat "$T/out")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["source"].endswith("odd-\\xfe"), j["source"]
assert j["parent"] == sys.argv[2], "the second snapshot did not find the first as its parent"
EOF
hb_ok snapshot list --json >"$T/out"
python3 -c 'import json,sys; ids={x["id"] for x in json.load(open(sys.argv[1]))}; assert set(sys.argv[2:]) <= ids' "$T/out" "$O1" "$O2" ||
	bad "snapshot list --json leaves out snapshots of a non-UTF-8 directory"
hb_ok snapshot diff "$O1" "$O2" --json >"$T/out"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert {"change":"+","path":"g"} in d, d' "$T/out" ||
	bad "diff --json: $(cat "$T/out")"
hb_ok snapshot diff "$ID" "$O1" --json >"$T/out"
grep -qF '"n\\xff"' "$T/out" || bad "diff --json drops a name that is not UTF-8: $(head -c 300 "$T/out")"
# Text listings are one line per entry whatever the names hold: a newline in
# a name printed as it was forged a line ("+ evil" then "M fake" in diff),
# and an escape sequence reached the terminal.
FORGE="$T/forge"
mkdir -p "$FORGE" && echo a >"$FORGE/plain"
F1=$(snapshot_create "$FORGE")
echo b >"$FORGE/"$'evil\nM plain'
echo c >"$FORGE/"$'esc\e[31mred'
echo d >"$FORGE/back\\slash"
ln -s $'to\nx' "$FORGE/lnk"
F2=$(snapshot_create "$FORGE")
hb_ok snapshot diff "$F1" "$F2" >"$T/out"
[ "$(grep -c '' "$T/out")" -eq 4 ] && ! grep -vq '^+ ' "$T/out" ||
	bad "diff lines forged by names: $(od -c "$T/out" | head -8)"
grep -qxF '+ evil\nM plain' "$T/out" && grep -qxF '+ back\\slash' "$T/out" ||
	bad "diff: names not escaped as expected: $(cat -A "$T/out")"
for args in "" "-l" "-R"; do
	# shellcheck disable=SC2086 # no args is no word
	hb_ok snapshot ls "$F2" $args >"$T/out"
	[ "$(grep -c '' "$T/out")" -eq 5 ] || bad "ls $args: $(grep -c '' "$T/out") lines for 5 entries"
	if grep -q $'\e' "$T/out"; then bad "ls $args printed an escape sequence"; fi
done
hb_ok snapshot ls "$F2" -l >"$T/out"
grep -qF -- '-> to\nx' "$T/out" || bad "ls -l: a link target with a newline not escaped: $(cat -A "$T/out")"
hb_ok snapshot diff "$F1" "$F2" --json >"$T/out"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert {"change":"+","path":"evil\nM plain"} in d, d' "$T/out" ||
	bad "diff --json: the name is not carried as it is: $(cat "$T/out")"
# ... and so are the source directories of snapshot list and show
EVIL="$T/"$'src\nM\e[31m'
mkdir -p "$EVIL" && echo e >"$EVIL/f"
E1=$(snapshot_create "$EVIL")
hb_ok snapshot list >"$T/out"
[ "$(grep -c '' "$T/out")" -eq "$(($(hb_ok snapshot list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') + 1))" ] ||
	bad "snapshot list: a source directory's newline forged a line: $(cat -A "$T/out")"
if grep -q $'\e' "$T/out"; then bad "snapshot list printed an escape sequence"; fi
hb_ok snapshot show "$E1" >"$T/out"
grep -qxF "source:      $T/src\nM\x1b[31m" "$T/out" || bad "snapshot show: source not escaped: $(cat -A "$T/out")"
finish
