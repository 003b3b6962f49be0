#!/usr/bin/env bash
# Fuzz the admin API with schemathesis, driven by the API's own OpenAPI description, against
# the real `admin::serve` (the admin_demo example on 127.0.0.1). Fails on any 5xx answer, on
# answers that do not match the description, and if an endpoint works without the token.
#
#   scripts/fuzz-admin-api.sh            # MAX_EXAMPLES=200 per operation by default
#   MAX_EXAMPLES=1000 scripts/fuzz-admin-api.sh
#
# schemathesis is installed with pip into a venv under target/ (ADMIN_FUZZ_VENV overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(realpath -m "${ADMIN_FUZZ_VENV:-target/admin-fuzz-venv}")
MAX_EXAMPLES=${MAX_EXAMPLES:-200}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "== installing schemathesis into $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi

echo "== building the admin_demo example"
cargo build -q -p swarmwall-server --example admin_demo

work=$(mktemp -d)
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

token="fuzz-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$token" > "$work/token"
chmod 600 "$work/token"
target/debug/examples/admin_demo --token-file "$work/token" 2> "$work/stderr" &
demo_pid=$!

address=""
for _ in $(seq 1 300); do
  address=$(sed -n 's/^admin interface on \([^ ]*\)$/\1/p' "$work/stderr" | head -n 1)
  [ -n "$address" ] && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/stderr"; echo "admin_demo exited"; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { cat "$work/stderr"; echo "admin_demo did not start"; exit 1; }
echo "== fuzzing http://$address (max $MAX_EXAMPLES examples per operation)"

# Run from the scratch directory so schemathesis' own files (.schemathesis/) land there.
(cd "$work" && timeout 1200 "$VENV/bin/schemathesis" run "http://$address/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --no-color \
  --suppress-health-check all)

# The server must still be alive and sane after the run.
curl -fsS -H "Authorization: Bearer $token" "http://$address/api/v1/status" > /dev/null
echo "== admin API fuzz: no server errors"
