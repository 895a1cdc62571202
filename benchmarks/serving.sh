#!/usr/bin/env bash
# Model server benchmark: single-flow requests at 100 requests/s (benchmarks/latency.py, httpx),
# then 1000-flow requests back to back (locust headless), then the in-process ONNX throughput
# of the same model, all in one run.
#   bash benchmarks/serving.sh [WORKERS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-2}
SECONDS_=${2:-30}
PORT=3377
OUT=$(mktemp -d)
uv run desy serve --port $PORT --workers "$WORKERS" >"$OUT/server.log" 2>&1 & SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.5; done
echo "== single-flow requests at 100 requests/s (open loop, httpx), ${SECONDS_}s, $WORKERS server worker(s)"
uv run python benchmarks/latency.py "http://127.0.0.1:$PORT" --rate 100 --seconds "$SECONDS_"
echo "== 1000-flow requests, 4 users back to back, ${SECONDS_}s"
uv run locust -f benchmarks/locustfile.py Batch1000 --headless -u 4 -r 4 -t "${SECONDS_}s" \
  -H "http://127.0.0.1:$PORT" --csv "$OUT/batch" --only-summary >/dev/null 2>&1
python3 - "$OUT/batch_stats.csv" <<'PY'
import csv, sys
row = next(r for r in csv.DictReader(open(sys.argv[1])) if r["Name"] == "Aggregated")
rps = float(row["Requests/s"])
print(f"requests {row['Request Count']}, failures {row['Failure Count']}, {rps:.1f} req/s = {rps * 1000:,.0f} flows/s, "
      f"p50 {row['50%']} ms, p99 {row['99%']} ms")
PY
uv run python benchmarks/onnx_inprocess.py 2>/dev/null
