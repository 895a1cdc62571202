#!/bin/bash
# Extract speed of two checkouts of DeSy on the same captures, runs interleaved (a refactoring
# must not slow the agent down). Usage: benchmarks/compare_extract.sh BEFORE_DIR AFTER_DIR PCAP...
# Each capture is extracted RUNS times (default 3) by each tree, alternately; prints the best
# wall time of each and the ratio before/after (above 1: the after tree is faster).
set -euo pipefail
before=$(realpath "$1"); after=$(realpath "$2"); shift 2
runs=${RUNS:-3}
python="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"  # the venv's, not the one it links to
time_one() {  # tree pcap -> seconds
    local start end
    start=$(date +%s.%N)
    (cd "$1" && "$python" -c "import sys; sys.path.insert(0, '.'); from capture_agent.cli import app; app()" \
        extract "$2" -o /dev/null -q) || { echo "extract failed in $1 on $2" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
printf '%-40s %10s %10s %8s\n' capture before_s after_s ratio
for pcap in "$@"; do
    best_before=999999; best_after=999999
    for _ in $(seq "$runs"); do
        t=$(time_one "$before" "$pcap"); best_before=$(echo "if ($t < $best_before) $t else $best_before" | bc)
        t=$(time_one "$after" "$pcap"); best_after=$(echo "if ($t < $best_after) $t else $best_after" | bc)
    done
    printf '%-40s %10.3f %10.3f %8.3f\n' "$(basename "$pcap")" "$best_before" "$best_after" \
        "$(echo "scale=4; $best_before / $best_after" | bc)"
done
