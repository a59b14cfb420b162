#!/bin/bash
# Round trips: snapshot a tree holding every kind of entry, restore it, and
# compare everything (treecmp.py); a tree of thousands of small files; restore
# into non-empty directories; ids by prefix and tags wherever an id goes;
# diff; rm.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp
hb_ok init >/dev/null

# --- every file kind ------------------------------------------------------
log "generating the full tree"
make_tree "$T/full" 3000 40 1
dump_tree "$T/full" "$T/full.json"
log "snapshot + restore of the full tree"
full=$(snapshot_create "$T/full" --tag full)
restore_and_compare "$full" "$T/full.json" "full tree" || true
# the same through a tag and with a single thread
restore_and_compare full "$T/full.json" "full tree restored by tag" || true

# A second snapshot of the unchanged tree (parent reuse path) restores alike.
# (Dumped again: the first snapshot's reads may have moved atimes.)
dump_tree "$T/full" "$T/full2.json"
full2=$(snapshot_create "$T/full")
restore_and_compare "$full2" "$T/full2.json" "full tree, second snapshot (unchanged files reused)" || true
# And one that reads everything again.
dump_tree "$T/full" "$T/full3.json"
full3=$(snapshot_create "$T/full" --no-parent)
restore_and_compare "$full3" "$T/full3.json" "full tree, --no-parent" || true

# --- thousands of small files ------------------------------------------------
log "5000+ small files"
make_small_tree "$T/small" 6000 7
dump_tree "$T/small" "$T/small.json"
small=$(snapshot_create "$T/small" --tag small)
sj=$(show_json "$small")
[ "$(json_get "$sj" files)" -eq 6000 ] || bad "small tree: show says $(json_get "$sj" files) files, expected 6000"
restore_and_compare "$small" "$T/small.json" "6000 small files" || true

# --- restore targets ------------------------------------------------------------
# a new directory (with missing parents) is created
hb_try snapshot restore small "$T/new/parent/dir"
if [ "$HB_RC" -ne 0 ]; then
	bad "restore into a new nested directory exited $HB_RC: $(cat "$T/err")"
else
	compare_trees "$T/small.json" "$T/new/parent/dir" >"$T/d" || bad "restore into a new nested dir differs: $(head -20 "$T/d")"
fi
# an existing empty directory is fine without --force
mkdir "$T/empty-target"
hb_try snapshot restore small "$T/empty-target"
[ "$HB_RC" -eq 0 ] || bad "restore into an existing empty directory exited $HB_RC: $(cat "$T/err")"
# a file is not a directory
echo x >"$T/a-file"
expect_error "restore onto a regular file" snapshot restore small "$T/a-file" || true
[ "$(cat "$T/a-file")" = x ] || bad "restore onto a regular file changed it"

# a non-empty directory: refused without --force, nothing touched
mkdir -p "$T/busy/src" "$T/victim"
echo stray >"$T/busy/stray"
echo old >"$T/busy/empty-file"
echo "not a dir" >"$T/busy/big"                       # the snapshot has a directory here
mkdir -p "$T/busy/links/to-dir/inside"                # ... and a symlink here
ln -s "$T/victim" "$T/busy/xattrs"                    # must not be followed
echo "outside, keep me" >"$T/outside-file"
mkdir -p "$T/busy/hard/a" "$T/busy/names"
ln "$T/outside-file" "$T/busy/hard/a/one"             # an inode shared with a file outside
ln -s "$T/outside-file" "$T/busy/names/with space"    # a symlink where a file goes
(cd "$T/busy" && find . -printf '%p %y %s\n' | sort) >"$T/busy.before"
expect_error "restore into a non-empty directory without --force" snapshot restore full "$T/busy" &&
	expect_in "$HB_ERR" "force|not empty|non-empty" "restore into a non-empty directory" || true
(cd "$T/busy" && find . -printf '%p %y %s\n' | sort) >"$T/busy.after"
cmp -s "$T/busy.before" "$T/busy.after" || bad "refused restore changed the target: $(diff "$T/busy.before" "$T/busy.after" | head -20)"
hb_try snapshot restore full "$T/busy" --force
if [ "$HB_RC" -ne 0 ]; then
	bad "restore --force into a non-empty directory exited $HB_RC: $(cat "$T/err")"
else
	compare_trees "$T/full.json" "$T/busy" --ignore-extra >"$T/d" ||
		bad "restore --force: restored entries differ:"$'\n'"$(head -30 "$T/d")"
fi
[ -z "$(ls -A "$T/victim")" ] || bad "restore --force wrote through a symlink in the target into $T/victim: $(ls -A "$T/victim")"
[ "$(cat "$T/outside-file")" = "outside, keep me" ] ||
	bad "restore --force wrote into a file outside DIR (through a hard link or a symlink in DIR)"

# --- ids: full, unique prefixes, tags -------------------------------------------
p8=${small:0:8}
p4=${small:0:4}
for name in "$small" "$p8" "$p4" small; do
	hb_try snapshot show "$name"
	[ "$HB_RC" -eq 0 ] && grep -q "$small" "$T/out" || bad "snapshot show $name: exit $HB_RC, $(head -c 300 "$T/err")"
done
restore_and_compare "$p8" "$T/small.json" "restore by 8-digit prefix" || true
expect_error "a 3-digit prefix is too short" snapshot show "${small:0:3}" || true
expect_error "a prefix that matches nothing" snapshot show ffffffffffffffffffff || true
expect_error "a non-hex name that is no tag" snapshot show no-such-tag || true

# tag by prefix, then use the tag everywhere
hb_ok tag by-prefix "$p8"
sj=$(show_json by-prefix)
[ "$(json_get "$sj" id)" = "$small" ] || bad "tag by-prefix does not point at $small: $sj"
hb_ok tag again by-prefix # a tag names a snapshot like an id does
[ "$(json_get "$(show_json again)" id)" = "$small" ] || bad "tag made from a tag does not point at $small"
# --parent by tag and by prefix
echo one-more >"$T/small/added-file"
child=$(snapshot_create "$T/small" --parent small)
[ "$(json_get "$(show_json "$child")" parent)" = "$small" ] || bad "--parent TAG not recorded as parent"
child2=$(snapshot_create "$T/small" --parent "$p8")
[ "$(json_get "$(show_json "$child2")" parent)" = "$small" ] || bad "--parent PREFIX not recorded as parent"
child3=$(snapshot_create "$T/small" --no-parent)
[ -z "$(json_get "$(show_json "$child3")" parent)" ] || bad "--no-parent still recorded a parent"
# diff by tag and prefix
hb_try snapshot diff small "${child:0:10}"
[ "$HB_RC" -eq 0 ] || bad "diff TAG PREFIX exited $HB_RC: $(cat "$T/err")"
grep -qx "+ added-file" "$T/out" || bad "diff small child: no '+ added-file' in: $(head -c 500 "$T/out")"
# moving a tag
hb_ok tag by-prefix "$child"
[ "$(json_get "$(show_json by-prefix)" id)" = "$child" ] || bad "tag NAME ID did not move an existing tag"

# --- diff ----------------------------------------------------------------------------
mkdir -p "$T/dt/keep/deep" "$T/dt/change" "$T/dt/gone-dir/sub"
for i in $(seq 1 20); do echo "keep $i" >"$T/dt/keep/k$i"; echo "keep $i" >"$T/dt/keep/deep/k$i"; done
echo before >"$T/dt/change/content"
echo same >"$T/dt/change/mode"
echo same >"$T/dt/change/times"
echo same >"$T/dt/change/to-symlink"
echo bye >"$T/dt/change/removed"
echo bye >"$T/dt/gone-dir/sub/file"
randfile "$T/dt/change/big" 3000000 dt
python3 "$TREEGEN" settimes "$T/dt" 5
a=$(snapshot_create "$T/dt" --tag diff-a)
echo after >"$T/dt/change/content"
chmod 0600 "$T/dt/change/mode"
touch -d '2019-01-01 00:00:00.5' "$T/dt/change/times"
rm "$T/dt/change/to-symlink" && ln -s elsewhere "$T/dt/change/to-symlink"
rm "$T/dt/change/removed"
rm -r "$T/dt/gone-dir"
echo new >"$T/dt/change/added"
mkdir "$T/dt/new-dir" && echo n >"$T/dt/new-dir/file"
printf 'XXXXXXXX' | dd of="$T/dt/change/big" bs=1 seek=1500000 conv=notrunc status=none
b=$(snapshot_create "$T/dt" --tag diff-b)
hb_try snapshot diff diff-a diff-b
if [ "$HB_RC" -ne 0 ]; then
	bad "snapshot diff exited $HB_RC: $(cat "$T/err")"
else
	for line in "M change/content" "M change/mode" "M change/times" "M change/to-symlink" \
		"M change/big" "- change/removed" "- gone-dir" "+ change/added" "+ new-dir"; do
		grep -qxF -- "$line" "$T/out" || bad "diff A B lacks '$line'; got: $(tr '\n' '|' <"$T/out")"
	done
	# removed/added subtrees: listed whole or by their top, nothing unchanged
	if grep -E '^[-+M] keep' "$T/out"; then bad "diff lists unchanged paths under keep/"; fi
	if grep -vE '^[-+M] ' "$T/out" | grep -q .; then bad "diff lines not in the '+ path' form: $(head -5 "$T/out")"; fi
fi
hb_try snapshot diff diff-a diff-a
[ "$HB_RC" -eq 0 ] && [ ! -s "$T/out" ] || bad "diff of a snapshot with itself is not empty: $(head -c 300 "$T/out")"
hb_try snapshot diff diff-b diff-a
grep -qxF -- "+ change/removed" "$T/out" && grep -qxF -- "- change/added" "$T/out" ||
	bad "diff B A is not the mirror of diff A B: $(tr '\n' '|' <"$T/out")"

# --- rm ------------------------------------------------------------------------------------
hb_ok snapshot rm diff-a
ids=$(list_ids)
grep -q "$a" <<<"$ids" && bad "snapshot rm diff-a: $a still listed"
expect_error "restore of a removed snapshot" snapshot restore "$a" "$T/gone" || true
expect_error "the removed snapshot's tag is gone too" snapshot show diff-a || true
hb_ok snapshot rm "${child2:0:8}" "$child3"
hb_ok gc >/dev/null
hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "check --read-data after rm + gc exited $HB_RC: $(head -c 1000 "$T/err")"
# what is left still restores exactly
restore_and_compare full "$T/full.json" "full tree after rm + gc" || true
restore_and_compare "$full2" "$T/full2.json" "second full snapshot after rm + gc" || true
restore_and_compare small "$T/small.json" "small tree after rm + gc" || true

# --- --exclude ------------------------------------------------------------------------------
# What find's own -name/-path matching leaves must be exactly what is
# restored, with the same content; excludes do not stop parent reuse.
cp -a "$T/small" "$T/ex"
mkdir -p "$T/ex/node_modules/pkg" "$T/ex/deep/node_modules" "$T/ex/build/out/x" "$T/ex/keep/build/out"
echo obj >"$T/ex/top.o" && echo obj >"$T/ex/build/deeper.o" && echo js >"$T/ex/node_modules/pkg/i.js"
echo js >"$T/ex/deep/node_modules/j.js" && echo art >"$T/ex/build/out/x/a" && echo kept >"$T/ex/keep/build/out/k"
echo kept >"$T/ex/build/out.txt" && echo 'two words' >"$T/ex/with space.tmp"
printf '# generated\n\nnode_modules\n/build/out\n' >"$T/exclude-list"
ex_args=(--exclude '*.o' --exclude-from "$T/exclude-list" --exclude '/with space.tmp')
exid=$(snapshot_create "$T/ex" "${ex_args[@]}")
hb_ok snapshot restore "$exid" "$T/ex-out"
(cd "$T/ex" && find . \( -name '*.o' -o -name node_modules -o -path ./build/out -o -path './with space.tmp' \) -prune -o -print | LC_ALL=C sort) >"$T/ex-want"
(cd "$T/ex-out" && find . | LC_ALL=C sort) >"$T/ex-got"
cmp -s "$T/ex-want" "$T/ex-got" || bad "--exclude: restored paths differ: $(diff "$T/ex-want" "$T/ex-got" | head -8)"
cp -a "$T/ex" "$T/ex-copy"
(cd "$T/ex-copy" && find . \( -name '*.o' -o -name node_modules -o -path ./build/out -o -path './with space.tmp' \) -prune -exec rm -rf {} +)
diff -r "$T/ex-copy" "$T/ex-out" >/dev/null || bad "--exclude: restored content differs: $(diff -r "$T/ex-copy" "$T/ex-out" | head -5)"
# again with the same excludes: the parent's files are reused, nothing stored
exid2=$(snapshot_create "$T/ex" "${ex_args[@]}")
[ "$(json_get "$(show_json "$exid2")" new_chunks)" = 0 ] || bad "--exclude: a re-snapshot stored chunks"
[ "$(json_get "$(show_json "$exid2")" files)" = "$(json_get "$(show_json "$exid")" files)" ] ||
	bad "--exclude: a re-snapshot counts other files"
# the count reported is of the entries left out (not what is below them)
want=$(cd "$T/ex" && find . \( -name '*.o' -o -name node_modules -o -path ./build/out -o -path './with space.tmp' \) -prune -print | wc -l)
hb_ok --json snapshot create "$T/ex" "${ex_args[@]}" >"$T/out"
[ "$(json_get "$(cat "$T/out")" excluded)" = "$want" ] || bad "--exclude: reported $(json_get "$(cat "$T/out")" excluded) excluded, find prunes $want"
hb snapshot create "$T/ex" "${ex_args[@]}" 2>&1 >/dev/null | grep -q "; $want entries excluded$" || bad "--exclude: the summary line does not say how many were left out"
# without them, everything is back
hb_ok snapshot ls "$(snapshot_create "$T/ex")" build -l >"$T/out"
grep -q ' out$' "$T/out" && grep -q 'deeper.o$' "$T/out" || bad "a snapshot without --exclude lacks entries: $(cat "$T/out")"
# '**' spans directories (find's '*' in -path does too, and the tree has
# no build/a for '**' to match with zero directories)
hb_ok snapshot restore "$(snapshot_create "$T/ex" --exclude '**/pkg/**' --exclude 'build/**/a')" "$T/ex-star"
(cd "$T/ex" && find . \( -path '*/pkg/*' -o -path './build/*/a' \) -prune -o -print | LC_ALL=C sort) >"$T/ex-want"
(cd "$T/ex-star" && find . | LC_ALL=C sort) >"$T/ex-got"
cmp -s "$T/ex-want" "$T/ex-got" || bad "--exclude '**': restored paths differ: $(diff "$T/ex-want" "$T/ex-got" | head -8)"
[ -d "$T/ex-star/node_modules/pkg" ] || bad "--exclude '**/pkg/**' left out pkg itself"
expect_usage_error "an empty --exclude" snapshot create "$T/ex" --exclude '' || true
expect_usage_error "an --exclude leaving the tree" snapshot create "$T/ex" --exclude 'a/../../b' || true
printf 'ok\n/\n' >"$T/exclude-bad"
expect_usage_error "an --exclude-from line naming the root" snapshot create "$T/ex" --exclude-from "$T/exclude-bad" &&
	{ grep -q "exclude-bad:2: " "$T/err" || bad "--exclude-from: the bad line is not named: $(cat "$T/err")"; }
expect_usage_error "a missing --exclude-from file" snapshot create "$T/ex" --exclude-from "$T/nope" || true

# --- xattrs on symlinks and fifos (root: trusted.*) ---------------------------
# They were set through lsetxattr on /proc/self/fd/N, which acts on the proc
# link itself: ENOTSUP, tolerated, and the xattrs were silently dropped.
if is_root; then
	mkdir -p "$T/spx"
	ln -s target "$T/spx/link" && mkfifo "$T/spx/fifo"
	if setfattr -h -n trusted.on-link -v yes "$T/spx/link" 2>/dev/null &&
		setfattr -h -n trusted.on-fifo -v yes "$T/spx/fifo" 2>/dev/null; then
		dump_tree "$T/spx" "$T/spx.json"
		spx=$(snapshot_create "$T/spx")
		restore_and_compare "$spx" "$T/spx.json" "xattrs on a symlink and a fifo" || true
		HIBERBOX_RESTORE_BY_PACK=1 restore_and_compare "$spx" "$T/spx.json" \
			"xattrs on a symlink and a fifo, chunks by pack" || true
	else
		log "skipped: this filesystem refuses trusted.* xattrs on a symlink or fifo"
	fi
fi

# --- a target that passes things on to what is created in it ------------------
# A set-gid target gave every restored file its group (the chown was skipped
# as "already ours"), a default ACL gave every entry an ACL of its own; the
# same for directories --force reuses.
mkdir -p "$T/inh/sub"
echo top >"$T/inh/top" && echo deeper >"$T/inh/sub/file"
randfile "$T/inh/big" 200000 inh
dump_tree "$T/inh" "$T/inh.json"
inh=$(snapshot_create "$T/inh")
inherit_target() { # DIR: set-gid with another group (root), a default ACL
	mkdir -p "$1"
	if is_root; then chgrp 1234 "$1" && chmod 2775 "$1"; fi
	setfacl -d -m u:4321:rwx "$1"
}
for by_pack in 0 1; do
	inherit_target "$T/inh-out$by_pack"
	inherit_target "$T/inh-force$by_pack/sub"
	echo stray >"$T/inh-force$by_pack/stray"
	HIBERBOX_RESTORE_BY_PACK=$by_pack hb_ok snapshot restore "$inh" "$T/inh-out$by_pack"
	HIBERBOX_RESTORE_BY_PACK=$by_pack hb_ok snapshot restore "$inh" "$T/inh-force$by_pack" --force
	compare_trees "$T/inh.json" "$T/inh-out$by_pack" >"$T/d" ||
		bad "restore into a set-gid directory with a default ACL (by pack: $by_pack) differs: $(head -10 "$T/d")"
	compare_trees "$T/inh.json" "$T/inh-force$by_pack" --ignore-extra >"$T/d" ||
		bad "restore --force over such a directory (by pack: $by_pack) differs: $(head -10 "$T/d")"
done
