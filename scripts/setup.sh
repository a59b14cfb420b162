#!/usr/bin/env bash
# Install what hiberbox needs on Debian 12 and build it.
#   scripts/setup.sh            install packages, build build/ (debug-optimized)
#   scripts/setup.sh --asan     also build build-asan/ with ASan+UBSan
# Safe to run again: installs only what is missing, reconfigures existing builds.
set -euo pipefail
cd "$(dirname "$0")/.."

asan=0
for arg in "$@"; do
	case "$arg" in
	--asan) asan=1 ;;
	*) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
	esac
done

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

mapfile -t wanted < <(grep -v '^\s*#' scripts/packages.txt | sed '/^\s*$/d')
missing=()
for p in "${wanted[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js (with npm) may come from elsewhere than Debian; take Debian's only if absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	$sudo_cmd apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node packages for the S3 tests (s3rver and the signing proxy), when present.
if [ -f tests/s3/package.json ] && [ ! -d tests/s3/node_modules ]; then
	echo "setup: installing npm packages for tests/s3"
	(cd tests/s3 && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; })
fi

build() {
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null
}
echo "setup: building build/"
build build
if [ "$asan" = 1 ]; then
	echo "setup: building build-asan/ (ASan+UBSan)"
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false
fi
echo "setup: done; the CLI is build/tools/hiberbox"
