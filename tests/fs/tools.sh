#!/bin/bash
# Real tools on a mount: git (init, commit, status, checkout, gc), tar
# extract, sqlite3 with WAL, make of a small C project, python3 venv; then a
# commit, and the committed snapshot mounted fresh passes the same checks
# (git fsck, sqlite integrity, the built program runs).
set -u
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/fs/lib-fs.sh"
fs_setup
hb_ok init >/dev/null

mkdir -p "$T/src/project"
make_small_tree "$T/src/project/files" 200 3
ID=$(snapshot_create "$T/src") || exit 1
M="$T/mnt"
fs_mount "$ID" "$M" --upper "$T/upper"
W="$M/project"

log "git"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
(
	set -e
	cd "$W"
	git init -q -b main .
	git add -A
	git commit -q -m first
	echo change >CHANGED
	git add -A
	git commit -q -m second
	git checkout -q -b side HEAD~1
	[ ! -e CHANGED ] && [ -z "$(git status --porcelain)" ]
	git checkout -q main
	git gc -q --aggressive
	git fsck --strict >/dev/null 2>&1
	[ -z "$(git status --porcelain)" ]
) || bad "git on the mount"

log "tar"
tar -C "$T/src/project" -cf "$T/files.tar" files
mkdir "$W/untar"
tar -C "$W/untar" -xf "$T/files.tar" || bad "tar extract"
diff -r "$T/src/project/files" "$W/untar/files" >/dev/null || bad "tar extract content"

log "sqlite3 WAL"
sqlite3 "$W/db.sqlite" <<'SQL' >/dev/null || bad "sqlite3"
PRAGMA journal_mode=WAL;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20000)
INSERT INTO t(b) SELECT hex(randomblob(50)) FROM c;
DELETE FROM t WHERE a % 3 = 0;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
[ "$(sqlite3 "$W/db.sqlite" 'PRAGMA integrity_check; SELECT count(*) FROM t;' | tr '\n' ' ')" = "ok 13334 " ] ||
	bad "sqlite3 results"

log "make"
mkdir "$W/cproj"
cat >"$W/cproj/main.c" <<'C'
#include <stdio.h>
int add(int, int);
int main(void) { printf("%d\n", add(40, 2)); return 0; }
C
echo 'int add(int a, int b) { return a + b; }' >"$W/cproj/add.c"
printf 'prog: main.o add.o\n\t$(CC) -o $@ $^\n%%.o: %%.c\n\t$(CC) -c -o $@ $<\n' >"$W/cproj/Makefile"
make -s -C "$W/cproj" >/dev/null || bad "make"
[ "$("$W/cproj/prog")" = 42 ] || bad "the built program"
touch "$W/cproj/add.c"
[ -n "$(make -C "$W/cproj" -n 2>/dev/null | grep add.o)" ] || bad "make does not see a touched source"
make -s -C "$W/cproj" >/dev/null

if python3 -c 'import venv' 2>/dev/null; then
	log "python3 venv"
	python3 -m venv --without-pip "$W/venv" || bad "python3 venv"
	[ "$("$W/venv/bin/python" -c 'import sys; print(sys.prefix)')" = "$W/venv" ] || bad "venv python"
fi

log "commit and mount the result"
C=$(fs_commit "$M") || exit 1
fs_umount "$M"
fs_mount "$C" "$M"
(cd "$W" && git fsck --strict >/dev/null 2>&1 && [ -z "$(git status --porcelain --untracked-files=no)" ]) || bad "git after commit"
[ "$(sqlite3 "$W/db.sqlite" 'PRAGMA integrity_check;')" = ok ] || bad "sqlite after commit"
[ "$("$W/cproj/prog")" = 42 ] || bad "program after commit"
diff -r "$T/src/project/files" "$W/untar/files" >/dev/null || bad "tar content after commit"
fs_umount "$M"
finish
