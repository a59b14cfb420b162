#!/bin/bash
# CLI basics: --help everywhere, --json that parses, where the repository
# lives (HIBERBOX_HOME, HIBERBOX_REPO, --repo), init twice, an empty repository.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_tmp

# parse_json TEXT DESC: TEXT must be one JSON document.
parse_json() {
	if ! python3 -m json.tool >/dev/null 2>"$T/jsonerr" <<<"$1"; then
		bad "$2: output is not JSON ($(head -c 200 "$T/jsonerr")): $(head -c 300 <<<"$1")"
		return 1
	fi
}

# --- help -----------------------------------------------------------------
hb_try --help
[ "$HB_RC" -eq 0 ] || bad "hiberbox --help exited $HB_RC"
grep -q usage "$T/out" || bad "hiberbox --help prints no usage"
hb_try --version
[ "$HB_RC" -eq 0 ] || bad "hiberbox --version exited $HB_RC"
hb_try help
[ "$HB_RC" -eq 0 ] || bad "hiberbox help exited $HB_RC"
# "help CMD" is "CMD --help"; a group lists its subcommands with their summaries
hb_try help snapshot create
[ "$HB_RC" -eq 0 ] && grep -q "^usage: hiberbox snapshot create DIR" "$T/out" ||
	bad "'hiberbox help snapshot create': exit $HB_RC: $(head -c 300 "$T/out" "$T/err")"
for g in "help snapshot" "snapshot --help" "daemon -h" "help image"; do
	read -ra words <<<"$g"
	hb_try "${words[@]}"
	grp=${words[0]}
	[ "$grp" = help ] && grp=${words[1]}
	[ "$HB_RC" -eq 0 ] && grep -q "^usage: hiberbox $grp SUBCOMMAND" "$T/out" ||
		bad "'hiberbox $g': exit $HB_RC: $(head -c 300 "$T/out" "$T/err")"
done
grep -qE "^  rm +remove snapshots" <(hb help snapshot) || bad "'help snapshot' lacks rm's summary"
grep -qE "^  stop +stop hiberboxd" <(hb daemon --help) || bad "'daemon --help' lacks stop's summary"
hb_try help no-such-command
[ "$HB_RC" -eq 2 ] && grep -q "unknown command 'no-such-command'" "$T/err" ||
	bad "'help no-such-command': exit $HB_RC: $(head -c 300 "$T/err")"

# Every command the top-level help lists, and every repository command the
# issue promises (listed or not).
hb --help >"$T/help" 2>&1 || true
mapfile -t listed < <(sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)  .*/\1/p' "$T/help" | sed 's/ *$//')
[ "${#listed[@]}" -ge 10 ] || bad "hiberbox --help lists only ${#listed[@]} commands: ${listed[*]}"
required=(init "snapshot create" "snapshot restore" "snapshot list" "snapshot show"
	"snapshot diff" "snapshot rm" gc check tag)
for c in "${required[@]}"; do
	printf '%s\n' "${listed[@]}" | grep -qxF "$c" || bad "hiberbox --help does not list '$c'"
done
declare -A seen=()
for c in "${required[@]}" "${listed[@]}"; do
	[ -n "${seen[$c]:-}" ] && continue
	seen[$c]=1
	read -ra words <<<"$c"
	hb_try "${words[@]}" --help
	if [ "$HB_RC" -ne 0 ]; then
		bad "'hiberbox $c --help' exited $HB_RC: $(head -c 300 "$T/err")"
	elif ! grep -q "usage" "$T/out"; then
		bad "'hiberbox $c --help' prints no usage line on stdout: $(head -c 300 "$T/out")"
	fi
	# --help must not need a repository (none exists yet)
	[ ! -e "$HIBERBOX_REPO" ] || bad "'hiberbox $c --help' created the repository"
done

# mount's limit is --disk-limit (it bounds the whole tree), --upper-limit its old name
hb mount --help >"$T/out" 2>&1 || true
grep -q "^usage: hiberbox mount .*\[--disk-limit SIZE\]" "$T/out" && grep -q "^  --disk-limit SIZE" "$T/out" &&
	grep -q -- "--upper-limit.*old name" "$T/out" || bad "mount --help does not document --disk-limit: $(cat "$T/out")"

# --- errors before any repository ----------------------------------------
expect_error "unknown command" no-such-command && expect_in "$HB_ERR" "no-such-command" "unknown command" || true
# a group without its second word, or with a wrong one, lists the right ones
hb_try snapshot
[ "$HB_RC" = 2 ] && [ "$(cat "$T/err")" = "hiberbox: 'snapshot' needs one of: create, restore, list, show, ls, cat, diff, rm, prune" ] ||
	bad "'hiberbox snapshot': exit $HB_RC, stderr: $(head -c 300 "$T/err")"
hb_try snapshot frob
[ "$HB_RC" = 2 ] && grep -q "unknown command 'snapshot frob'; 'snapshot' takes: create, restore" "$T/err" ||
	bad "'hiberbox snapshot frob': exit $HB_RC, stderr: $(head -c 300 "$T/err")"
hb_try daemon frob
[ "$HB_RC" = 2 ] && [ "$(cat "$T/err")" = "hiberbox: unknown command 'daemon frob'; 'daemon' takes: run, stop, status" ] ||
	bad "'hiberbox daemon frob': exit $HB_RC, stderr: $(head -c 300 "$T/err")"
hb_try daemon status extra
[ "$HB_RC" = 2 ] && grep -q "takes no arguments" "$T/err" ||
	bad "'hiberbox daemon status extra': exit $HB_RC, stderr: $(head -c 300 "$T/err")"
hb_try --no-such-option snapshot list
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] && grep -q -- "no-such-option" "$T/err" ||
	bad "unknown global option: exit $HB_RC, stderr does not name it: $(head -c 300 "$T/err")"
expect_usage_error "unknown command option" snapshot list --no-such-option || true
expect_error "list without a repository" snapshot list &&
	expect_in "$HB_ERR" "hiberbox init" "list without a repository" || true
hb_try
[ "$HB_RC" -ne 0 ] && [ "$HB_RC" -lt 124 ] || bad "hiberbox without a command exited $HB_RC"

# --- where the repository lives -----------------------------------------
# Embedded default: $HIBERBOX_HOME/repo
(
	unset HIBERBOX_REPO
	hb_ok init >/dev/null
	[ -f "$HIBERBOX_HOME/repo/config" ] || fail "init without HIBERBOX_REPO did not create \$HIBERBOX_HOME/repo/config"
) || bad "embedded default repository"
# Not root and no HIBERBOX_HOME: ~/.local/share/hiberbox/repo
if is_root && command -v setpriv >/dev/null; then
	mkdir -p "$T/nbhome"
	chown 65534:65534 "$T/nbhome"
	chmod 755 "$T"
	if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$HIBERBOX"; then
		rc=0
		setpriv --reuid=65534 --regid=65534 --clear-groups env -u HIBERBOX_HOME -u HIBERBOX_REPO \
			HOME="$T/nbhome" "$HIBERBOX" init >/dev/null 2>"$T/err" || rc=$?
		[ "$rc" -eq 0 ] && [ -f "$T/nbhome/.local/share/hiberbox/repo/config" ] ||
			bad "init as a user without HIBERBOX_HOME: exit $rc, no ~/.local/share/hiberbox/repo/config ($(cat "$T/err"))"
	fi
fi
# HIBERBOX_REPO beats HIBERBOX_HOME, --repo beats both
hb_ok init >/dev/null
[ -f "$HIBERBOX_REPO/config" ] || bad "init with HIBERBOX_REPO did not create $HIBERBOX_REPO/config"
hb_ok --repo "$T/other" init >/dev/null
[ -f "$T/other/config" ] || bad "init --repo did not create $T/other/config"
mkdir -p "$T/src"
echo hello >"$T/src/file"
id=$(HIBERBOX_REPO="$T/other" snapshot_create "$T/src")
hb_try snapshot show "$id"
[ "$HB_RC" -ne 0 ] || bad "a snapshot made in \$T/other is visible in \$HIBERBOX_REPO"
hb_try --repo "$T/other" snapshot show "$id"
[ "$HB_RC" -eq 0 ] || bad "--repo: snapshot show $id exited $HB_RC: $(cat "$T/err")"
hb_try snapshot show "$id" --repo "$T/other"
[ "$HB_RC" -eq 0 ] || bad "--repo after the command: snapshot show exited $HB_RC: $(cat "$T/err")"

# --- init twice ----------------------------------------------------------
cp "$HIBERBOX_REPO/config" "$T/config.before"
expect_error "init twice" init && expect_in "$HB_ERR" "exist" "init twice" || true
cmp -s "$T/config.before" "$HIBERBOX_REPO/config" || bad "init twice changed the existing config"
expect_error "init --repo on an existing repository" --repo "$T/other" init || true
# a directory with files of its own is not a repository to be: init added
# its config among them; an empty one is fine
mkdir -p "$T/data/sub"
echo mine >"$T/data/file"
expect_error "init into a non-empty directory" --repo "$T/data" init &&
	expect_in "$HB_ERR" "data is not empty and holds no repository" "init into a non-empty directory" || true
[ "$(cd "$T/data" && find . | sort | tr '\n' ' ')" = ". ./file ./sub " ] ||
	bad "a refused init into a non-empty directory changed it: $(cd "$T/data" && find .)"
mkdir "$T/empty-dir"
hb_ok --repo "$T/empty-dir" init >/dev/null
[ -f "$T/empty-dir/config" ] || bad "init into an existing empty directory made no config"
# an empty --repo is a usage error, not a path ("no repository at  (run ...)"),
# for every command that takes it: bench restore's was a path too (its --work
# is a file so that an old binary fails at once rather than run a bench)
: >"$T/not-a-dir"
for args in "--repo '' init" "snapshot list --repo ''" "--repo= snapshot list" "gc --repo=" \
	"--repo '' list" "bench restore --repo= --work \"\$T/not-a-dir\""; do
	eval "a=($args)"
	expect_usage_error "$args" "${a[@]}" || continue
	[ "$HB_RC" -eq 2 ] && [ "$(cat "$T/err")" = "hiberbox: --repo: empty path (see 'hiberbox --help')" ] ||
		bad "'hiberbox $args': exit $HB_RC: $(cat "$T/err")"
done

# --- an empty repository ----------------------------------------------------
hb_try snapshot list
[ "$HB_RC" -eq 0 ] || bad "snapshot list on an empty repository exited $HB_RC: $(cat "$T/err")"
[ ! -s "$T/err" ] || bad "snapshot list on an empty repository wrote to stderr: $(cat "$T/err")"
hb_try snapshot list --json
[ "$HB_RC" -eq 0 ] || bad "snapshot list --json on an empty repository exited $HB_RC"
out=$(cat "$T/out")
parse_json "$out" "snapshot list --json (empty)" &&
	{ python3 -c 'import json,sys; v=json.loads(sys.argv[1]); sys.exit(0 if v in ([], {}) or v == {"snapshots": []} else 1)' "$out" ||
		bad "snapshot list --json on an empty repository is not empty: $out"; }
hb_try --json snapshot list
[ "$HB_RC" -eq 0 ] && parse_json "$(cat "$T/out")" "--json snapshot list" || true
hb_try gc
[ "$HB_RC" -eq 0 ] || bad "gc on an empty repository exited $HB_RC: $(cat "$T/err")"
hb_try check --read-data
[ "$HB_RC" -eq 0 ] || bad "check --read-data on an empty repository exited $HB_RC: $(cat "$T/err")"
# --wait takes its value after a space as well as after '=' (the space
# form was "gc: takes no arguments"); a word that is no number stays an error
for args in "gc --wait 5" "gc --wait=5" "gc --wait" "gc --wait --dry-run" "gc --dry-run --wait 5"; do
	read -ra a <<<"$args"
	hb_try "${a[@]}"
	[ "$HB_RC" -eq 0 ] || bad "'hiberbox $args' on an empty repository exited $HB_RC: $(cat "$T/err")"
done
expect_usage_error "gc --wait frob" gc --wait frob && expect_in "$(cat "$T/err")" "takes no arguments" "gc --wait frob" || true

# --- JSON everywhere -------------------------------------------------------
make_small_tree "$T/tree" 50
id=$(snapshot_create "$T/tree" --tag first)
echo change >"$T/tree/new-file"
id2=$(snapshot_create "$T/tree")
for args in "snapshot list --json" "--json snapshot list" "snapshot show $id --json" \
	"--json snapshot show first" "gc --json" "gc --dry-run --json" "check --json" \
	"check --read-data --json" "--json snapshot diff $id $id2" "--json init --help"; do
	read -ra a <<<"$args"
	hb_try "${a[@]}"
	if [ "$args" = "--json init --help" ]; then
		continue # help text is for people, never JSON
	fi
	if [ "$HB_RC" -ne 0 ]; then
		bad "'hiberbox $args' exited $HB_RC: $(head -c 300 "$T/err")"
		continue
	fi
	parse_json "$(cat "$T/out")" "hiberbox $args" || true
done
hb_try --json snapshot create "$T/tree"
if [ "$HB_RC" -ne 0 ]; then
	bad "--json snapshot create exited $HB_RC: $(cat "$T/err")"
else
	parse_json "$(cat "$T/out")" "--json snapshot create" &&
		[[ "$(json_get "$(cat "$T/out")" id)" =~ ^[0-9a-f]{32}$ ]] ||
		bad "--json snapshot create: no 32-hex id in $(head -c 300 "$T/out")"
fi

# show --json has every documented key
sj=$(show_json "$id")
for k in id parent time host source files dirs bytes chunks new_chunks new_bytes new_raw_bytes dedup_ratio tags; do
	python3 -c 'import json,sys; sys.exit(0 if sys.argv[2] in json.loads(sys.argv[1]) else 1)' "$sj" "$k" ||
		bad "snapshot show --json lacks key '$k': $sj"
done
[ "$(json_get "$sj" id)" = "$id" ] || bad "show --json id is not $id: $sj"
[ "$(json_get "$sj" tags)" = "first" ] || bad "show --json tags is not [first]: $sj"
[ "$(json_get "$sj" source)" = "$(realpath "$T/tree")" ] || bad "show --json source is not the absolute DIR: $sj"
[ "$(json_get "$sj" files)" -eq 50 ] || bad "show --json files is not 50: $sj"
sj2=$(show_json "$id2")
[ "$(json_get "$sj2" parent)" = "$id" ] || bad "second snapshot of the same DIR: parent is not $id: $sj2"

# list --json: both snapshots, oldest first
ids=$(list_ids | tr '\n' ' ')
[[ "$ids" == "$id $id2 "* ]] || bad "snapshot list --json order: $ids (expected $id $id2 first)"

# --quiet still prints the id (last line), and nothing on stderr
hb_try --quiet snapshot create "$T/tree"
[ "$HB_RC" -eq 0 ] || bad "--quiet snapshot create exited $HB_RC"
[[ "$(tail -n 1 "$T/out")" =~ ^[0-9a-f]{32}$ ]] || bad "--quiet snapshot create: last line is not an id"
[ ! -s "$T/err" ] || bad "--quiet snapshot create wrote to stderr: $(cat "$T/err")"

# usage errors: one line, non-zero
expect_usage_error "create without DIR" snapshot create || true
expect_usage_error "restore without DIR" snapshot restore "$id" || true
expect_usage_error "show without ID" snapshot show || true
expect_usage_error "--level out of range" snapshot create "$T/tree" --level 99 || true
# numbers are checked, not read with atoi ("abc" was the default, "-3"
# threads 4294967293 and "out of memory", "gc --repack-percent x" repacked
# every pack with any garbage)
for bad_arg in "snapshot create $T/tree --level abc" "snapshot create $T/tree --threads -3" \
	"snapshot create $T/tree --threads x" "snapshot restore $id $T/never --threads -3" \
	"snapshot restore $id $T/never --threads 0" "gc --repack-percent abc" "gc --repack-percent 0" \
	"init --level abc"; do
	# shellcheck disable=SC2086 # word splitting intended (no spaces in $T)
	expect_usage_error "$bad_arg" $bad_arg && expect_in "$(cat "$T/err")" "bad --" "$bad_arg" || true
done
[ ! -e "$T/never" ] || bad "a restore with bad --threads created its target"
# init with a level the config reader refuses left a repository nothing opens
expect_usage_error "init --level 99" --repo "$T/repo-level" init --level 99 || true
[ ! -e "$T/repo-level" ] || bad "init --level 99 created a repository"
expect_usage_error "tag without ID" tag only-a-name || true
# checked even where no cache is used (a local repository), so a typo shows
for size in 12Q -1G nan 1e30T; do
	expect_usage_error "--cache-size $size" --cache-size "$size" snapshot list &&
		expect_in "$(cat "$T/err")" "cache-size" "--cache-size $size" || true
done
hb_ok --cache-size 1.5G snapshot list >/dev/null

# --- snapshot rm of several: all or none -------------------------------------------
# Each name was removed as it came, so a typo in the last one removed the
# others while the command failed.
keep1=$(snapshot_create "$T/tree")
expect_error "rm of an id and a missing tag" snapshot rm "$keep1" no-such-tag &&
	expect_in "$HB_ERR" "no-such-tag" "rm with a missing tag: the error names it" || true
list_ids | grep -qx "$keep1" || bad "'snapshot rm ID no-such-tag' failed but removed ID"
hb_try snapshot rm "$keep1" "${keep1:0:8}"
[ "$HB_RC" -eq 0 ] || bad "snapshot rm of one snapshot by id and prefix exited $HB_RC: $(cat "$T/err")"
! list_ids | grep -qx "$keep1" || bad "snapshot rm ID PREFIX left $keep1"

expect_error "tag --delete of a missing tag" tag --delete no-such-tag &&
	expect_in "$HB_ERR" "no tag named 'no-such-tag'" "tag --delete of a missing tag: the error names it" || true

# --- --json with names that are not UTF-8 --------------------------------------------
# The escaped text of a name that is not UTF-8 ('\xff') may be another
# entry's real name (a backslash, 'x', 'f', 'f'); the exact bytes come in
# "<key>_hex".  Before, two entries came out alike and a program catting
# the first path got the other file.
J="$T/json-names"
mkdir -p "$J/src"$'\xff'
echo real >"$J/src"$'\xff/n\xff'
echo decoy >"$J/src"$'\xff/n\\xff'
ln -s $'t\xff' "$J/src"$'\xff/l'
jid=$(snapshot_create "$J/src"$'\xff')
echo more >>"$J/src"$'\xff/n\xff'
jid2=$(snapshot_create "$J/src"$'\xff')
# json_names FILE KEY: each object's KEY as bytes (from KEY_hex if there), hex, one per line
json_names() {
	python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for o in (v if isinstance(v, list) else [v]):
    h = o.get(sys.argv[2] + "_hex")
    print(h if h is not None else o[sys.argv[2]].encode().hex())' "$1" "$2"
}
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
for args in "snapshot ls $jid" "snapshot ls $jid -R" "snapshot diff $jid $jid2" "snapshot show $jid" \
	"snapshot list"; do
	read -ra a <<<"$args"
	hb_try --json "${a[@]}"
	[ "$HB_RC" -eq 0 ] && parse_json "$(cat "$T/out")" "--json $args" || {
		bad "--json $args: exit $HB_RC: $(head -c 300 "$T/err")"
		continue
	}
	# (a snapshot's source is stored as text already: valid JSON is all)
	case $args in
	"snapshot ls"*) want="$(hex l) $(hex $'n\xff') $(hex 'n\xff')" ;;
	"snapshot diff"*) want="$(hex $'n\xff')" ;;
	*) continue ;;
	esac
	got=$(json_names "$T/out" path | sort | tr '\n' ' ')
	[ "$got" = "$(tr ' ' '\n' <<<"$want" | sort | tr '\n' ' ')" ] ||
		bad "--json $args: names as bytes are [$got], expected [$want]"
done
hb_try --json snapshot ls "$jid" l
[ "$(json_names "$T/out" target)" = "$(hex $'t\xff')" ] || bad "snapshot ls --json: a link's target_hex: $(cat "$T/out")"
hb_try --json --repo "$J/repo"$'\xff' init
[ "$HB_RC" -eq 0 ] && [ "$(json_names "$T/out" repository)" = "$(hex "$J/repo"$'\xff')" ] ||
	bad "init --json with a repository path that is not UTF-8: exit $HB_RC: $(cat "$T/out" "$T/err")"

# --- option errors say which option and what is wrong with it ----------------------
# An option missing its value was "unknown option '--tag'", '-lZ' was named
# whole, mount, commit and the sandbox commands named none, and one before
# the command got getopt's line and the whole usage (50 lines).
while IFS='|' read -r args want; do
	read -ra a <<<"$args"
	expect_usage_error "$args" "${a[@]}" || continue
	[ "$(cat "$T/err")" = "hiberbox$want" ] || bad "'hiberbox $args': $(cat "$T/err"), expected: hiberbox$want"
done <<'EOF2'
snapshot create . --tag| snapshot create: option '--tag' needs a value (see 'hiberbox snapshot create --help')
snapshot create . -t| snapshot create: option '-t' needs a value (see 'hiberbox snapshot create --help')
snapshot ls x -lZ| snapshot ls: unknown option '-Z' (see 'hiberbox snapshot ls --help')
snapshot rm --force=yes x| snapshot rm: option '--force' takes no value (see 'hiberbox snapshot rm --help')
gc --frob=1| gc: unknown option '--frob' (see 'hiberbox gc --help')
mount x y --upper| mount: option '--upper' needs a value (see 'hiberbox mount --help')
mount x y --up=d| mount: ambiguous option '--up' (see 'hiberbox mount --help')
mount x y --disk-limit 1K| mount: bad --disk-limit '1K' (a size of at least 64K, e.g. 10G) (see 'hiberbox mount --help')
mount x y --upper-limit abc| mount: bad --upper-limit 'abc' (a size of at least 64K, e.g. 10G) (see 'hiberbox mount --help')
commit --frob m| commit: unknown option '--frob' (see 'hiberbox commit --help')
create x --image| create: option '--image' needs a value (see 'hiberbox create --help')
create x --frob| create: unknown option '--frob' (see 'hiberbox create --help')
exec x --cwd| exec: option '--cwd' needs a value (see 'hiberbox exec --help')
exec -Z x -- true| exec: unknown option '-Z' (see 'hiberbox exec --help')
inspect --frob x| inspect: unknown option '--frob' (see 'hiberbox inspect --help')
--frob snapshot list|: unknown option '--frob' (see 'hiberbox --help')
--repo|: option '--repo' needs a value (see 'hiberbox --help')
EOF2
: >"$T/afile"
HBD=$(dirname "$HIBERBOX")/hiberboxd
if [ -x "$HBD" ]; then
	for args in "--frob" "--home" "extra-word"; do
		rc=0
		# (a daemon that starts anyway is stopped by the timeout)
		timeout 10 "$HBD" --home "$T/afile" $args >/dev/null 2>"$T/err" || rc=$?
		[ "$rc" -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^hiberboxd: .*$args" "$T/err" ||
			bad "'hiberboxd $args': exit $rc: $(head -c 300 "$T/err")"
	done
fi
# --cpus nan or inf passed the check, and JSON has no such number: the
# sandbox was created without a CPU limit.  (HIBERBOX_HOME is a file: no
# daemon can start, whatever the check does.)
for cpus in nan inf -inf 1e999; do
	HIBERBOX_HOME="$T/afile" expect_usage_error "create --cpus $cpus" create x --image y --cpus "$cpus" &&
		expect_in "$(cat "$T/err")" "bad --cpus '$cpus'" "create --cpus $cpus" || true
done
