# Shell helpers for the fault-injecting proxy in front of s3rver
# (tests/s3/server.js, started by run-s3rver.sh), sourced by the s3 tests.
# They talk to $AWS_ENDPOINT_URL, which run-s3rver.sh's output exports.

# fault KIND COUNT [METHOD [PATH-SUBSTRING [MS]]]: the next COUNT matching
# requests meet KIND (slowdown, reset, truncate, corrupt, stall, delay of MS,
# ...: see server.js)
fault() {
	curl -fsS -X POST "$AWS_ENDPOINT_URL/__control/fault?kind=$1&count=$2${3:+&method=$3}${4:+&match=$4}${5:+&ms=$5}" >/dev/null
}
# drop pending faults and zero the counters
clear_faults() { curl -fsS -X POST "$AWS_ENDPOINT_URL/__control/clear" >/dev/null; }
# injected KIND: how many times KIND was injected since the last clear
injected() {
	curl -fsS "$AWS_ENDPOINT_URL/__control/stats" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["injected"].get(sys.argv[1], 0))' "$1"
}
# gets: GET requests the proxy answered since the last clear
gets() {
	curl -fsS "$AWS_ENDPOINT_URL/__control/stats" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["byMethod"].get("GET", 0))'
}

# s3_test_start BUCKET...: skip (77) without node or tests/s3/node_modules;
# else a temporary area ($T, lib.sh's setup_tmp) and the server for BUCKETs
# with its AWS_* exports, stopped on exit whatever happens.
s3_test_start() {
	S3DIR="$SRCDIR/tests/s3"
	if ! command -v node >/dev/null || [ ! -d "$S3DIR/node_modules/s3rver" ]; then
		echo "skipped: node or tests/s3/node_modules missing (npm ci --prefix tests/s3)"
		exit 77
	fi
	setup_tmp
	# cleanup_tmp reports the status it is entered with: the script's, not the stop's
	trap 's3_rc=$?; set +e; "$S3DIR/run-s3rver.sh" stop "$T/s3" >/dev/null 2>&1; (exit $s3_rc); cleanup_tmp' EXIT
	eval "$("$S3DIR/run-s3rver.sh" start "$T/s3" "$@")" || fail "cannot start the S3 test server"
}
