"""What an agent's flows.jsonl says: connections, verdicts by category, top flagged talkers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from desy.schema import CATEGORIES


def summary(log_dir: Path) -> str:
    """Connections, verdicts by category and the top flagged talkers, as a text table."""
    flows = [json.loads(line) for line in (log_dir / "flows.jsonl").read_text().splitlines()]
    categories = Counter(f["verdict"]["category"] for f in flows)
    attacks = [f for f in flows if f["verdict"]["label"] == "attack"]
    version = flows[0]["verdict"]["model_version"] if flows else "-"
    lines = [
        f"connections classified: {len(flows)} (attacks {len(attacks)}, model version {version})",
        "",
        f"{'verdict':<10}{'connections':>12}",
    ]
    lines += [f"{name:<10}{categories.get(name, 0):>12}" for name in CATEGORIES]
    for title, field in (("top flagged talkers", "src_ip"), ("top attacked hosts", "dst_ip")):
        counts = Counter(f[field] for f in attacks)
        lines += ["", f"{title:<22}{'attacks':>8}  categories"]
        for address, count in counts.most_common(5):
            kinds = Counter(f["verdict"]["category"] for f in attacks if f[field] == address)
            lines.append(
                f"{address:<22}{count:>8}  " + ", ".join(f"{k} {v}" for k, v in kinds.most_common())
            )
    lines += ["", f"logs: {log_dir}/traffic.txt, {log_dir}/flows.jsonl, {log_dir}/capture.pcap"]
    return "\n".join(lines)
