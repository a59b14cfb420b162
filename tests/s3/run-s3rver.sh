#!/bin/bash
# Start or stop the test S3 endpoint (s3rver behind tests/s3/server.js, the
# SigV4-verifying, fault-injecting proxy) on a free 127.0.0.1 port.
#
#   eval "$(tests/s3/run-s3rver.sh start STATEDIR [BUCKET...])"
#       starts it, prints the AWS_* exports for it (access key, secret,
#       region, endpoint); STATEDIR holds data/, pid, port and server.log
#   tests/s3/run-s3rver.sh stop STATEDIR
#
# Exit 77 (skip) when node or tests/s3/node_modules is missing
# (set up with: npm ci --prefix tests/s3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
state=${2:-}
[ -n "$cmd" ] && [ -n "$state" ] || { echo "usage: $0 start|stop STATEDIR [BUCKET...]" >&2; exit 2; }
shift 2

case "$cmd" in
start)
	if ! command -v node >/dev/null || [ ! -d "$here/node_modules/s3rver" ]; then
		echo "s3 test server: node or $here/node_modules missing (npm ci --prefix tests/s3)" >&2
		exit 77
	fi
	mkdir -p "$state/data"
	args=()
	for b in "${@:-hbtest}"; do args+=(--bucket "$b"); done
	rm -f "$state/ready"
	node --openssl-legacy-provider "$here/server.js" --dir "$state/data" "${args[@]}" \
		>"$state/ready" 2>"$state/server.log" &
	echo $! >"$state/pid"
	# node takes ~1 s to be ready here; a minute at most on a loaded machine
	for _ in $(seq 600); do
		grep -q '^READY' "$state/ready" 2>/dev/null && break
		kill -0 "$(cat "$state/pid")" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^READY' "$state/ready" 2>/dev/null; then
		echo "s3 test server did not start; see $state/server.log" >&2
		exit 1
	fi
	port=$(awk '/^READY/ {print $2}' "$state/ready")
	echo "$port" >"$state/port"
	echo "export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1"
	echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
	;;
stop)
	if [ -f "$state/pid" ]; then
		pid=$(cat "$state/pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$state/pid"
	fi
	;;
*)
	echo "usage: $0 start|stop STATEDIR [BUCKET...]" >&2
	exit 2
	;;
esac
