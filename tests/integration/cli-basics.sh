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
