#!/usr/bin/env bash
# Live capture benchmark: tcpreplay offers PPS packets/s for SECONDS on a veth pair between two
# network namespaces while `desy-agent run --iface` captures on the other end and classifies
# through a local classify endpoint. Prints offered / captured / accounted packets.
#   sudo bash benchmarks/live_veth.sh [PCAP] [PPS] [SECONDS] [SERVER]
# SERVER "desy" (default) starts the real model server (`desy serve --workers 2`, the project's
# champion) inside the capturing namespace; "stub" starts the tests' small contract server.
set -euo pipefail
cd "$(dirname "$0")/.."
PCAP=${1:-/tmp/flood1m.pcap}
PPS=${2:-20000}
SECONDS_=${3:-30}
SERVER=${4:-desy}
A=desy-bench-a; B=desy-bench-b; LOG=$(mktemp -d)
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add $A; ip netns add $B
ip link add dva netns $A type veth peer name dvb netns $B
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set dva up; ip -n $B link set dvb up
if [[ $SERVER == stub ]]; then
  ip netns exec $A uv run python -m tests.agent.classify_server 3999 & SERVER_PID=$!
else
  ip netns exec $A uv run desy serve --port 3999 --workers 2 >"$LOG/server.log" 2>&1 & SERVER_PID=$!
fi
SERVER=http://127.0.0.1:3999
until ip netns exec $A curl -sf "$SERVER/readyz" >/dev/null; do sleep 0.5; done
ip netns exec $A uv run desy-agent run --iface dva --server "$SERVER" --log-dir "$LOG" --drain-timeout 60 2>"$LOG/agent.err" & AGENT_PID=$!
sleep 4
packets=$((PPS * SECONDS_))
ip netns exec $B tcpreplay -q -i dvb --pps "$PPS" --loop 0 --limit "$packets" "$PCAP" 2>&1 | grep -E "Actual|Rated|Failed" || true
sleep 8
kill -TERM $AGENT_PID; stopped=$(date +%s.%N); wait $AGENT_PID || true
echo "the agent exited $(python3 -c "import time; print(f'{time.time() - $stopped:.1f}')") s after SIGTERM (flows waiting in its backlog are classified first)"
kill $SERVER_PID 2>/dev/null || true; sleep 2
captured=0  # capture.pcap and its rotations
for f in "$LOG"/capture.pcap*; do captured=$((captured + $(tcpdump -nr "$f" 2>/dev/null | wc -l))); done
python3 - "$LOG/summary.json" "$packets" "$captured" <<'PY'
import json, sys
summary, offered, captured = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
seen = summary["packets_seen"]
print(f"offered {offered:,}  in capture.pcap {captured:,} ({1 - captured / offered:.4%} missing)  "
      f"seen by the agent {seen:,} ({1 - seen / offered:.4%} missing)  kernel drops {summary['packets_kernel_dropped']:,}  queue drops {summary['packets_queue_dropped']:,}  "
      f"connections {summary['connections_emitted']:,}  classified {summary['flows_classified']:,}  waited in the backlog {summary['flows_backlogged']:,}  lost {summary['flows_lost']}")
PY
echo "logs: $LOG"
