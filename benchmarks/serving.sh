#!/usr/bin/env bash
# Model server benchmark, without then with the alert store (a SQLite file), in one run: for each,
# single-flow requests at 100 requests/s (benchmarks/latency.py, a minimal asyncio HTTP/1.1 client), then 1000-flow requests
# back to back (locust headless, 16 users: a keep-alive connection stays with one worker, and 4
# connections often landed 3 or 4 on one of 2 workers, halving the rate from run to run); then
# the in-process ONNX throughput of the same model.
#   bash benchmarks/serving.sh [WORKERS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-2}
SECONDS_=${2:-30}
PORT=3377
OUT=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true' EXIT

measure() {  # $1: label, then desy serve's store options
    local label=$1; shift
    uv run desy serve --port $PORT --workers "$WORKERS" "$@" >"$OUT/server-$label.log" 2>&1 & SERVER=$!
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.5; done
    echo "== $label: single-flow requests at 100 requests/s (open loop), ${SECONDS_}s, $WORKERS server worker(s)"
    uv run python benchmarks/latency.py "http://127.0.0.1:$PORT" --rate 100 --seconds "$SECONDS_"
    echo "== $label: 1000-flow requests, 16 users back to back, ${SECONDS_}s"
    uv run locust -f benchmarks/locustfile.py Batch1000 --headless -u 16 -r 16 -t "${SECONDS_}s" \
      -H "http://127.0.0.1:$PORT" --csv "$OUT/batch-$label" --only-summary >/dev/null 2>&1
    python3 - "$OUT/batch-${label}_stats.csv" <<'PY'
import csv, sys
row = next(r for r in csv.DictReader(open(sys.argv[1])) if r["Name"] == "Aggregated")
rps = float(row["Requests/s"])
print(f"requests {row['Request Count']}, failures {row['Failure Count']}, {rps:.1f} req/s = {rps * 1000:,.0f} flows/s, "
      f"p50 {row['50%']} ms, p99 {row['99%']} ms")
PY
    kill -INT $SERVER; wait $SERVER 2>/dev/null || true; SERVER=
}

measure "no store" --no-store
measure "store" --store-url "sqlite:///$OUT/alerts.db"
echo "== store: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from alerts').fetchone()[0])" "$OUT/alerts.db") alerts stored; dropped (server log): $(grep -c 'not stored' "$OUT/server-store.log" || true) lines"
uv run python benchmarks/onnx_inprocess.py 2>/dev/null
