"""One connection's explanation (pipelines.explain) under a registered version, the champion by
default: the version's load once, then p50/p95/max of explaining KDDTest+ connections one at a
time (no result cache), and the forest's size.

    uv run python benchmarks/explain.py [--count 1000] [--version N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from desy import registry, schema
from pipelines.explain import ForestExplainer, load_explainer

KDDTEST = Path("data/nsl-kdd/KDDTest+.txt")


def champion_version() -> str:
    mlflow.set_tracking_uri(registry.tracking_uri())
    found = registry.champion(mlflow.MlflowClient())
    if found is None:
        raise SystemExit(f"no champion at {registry.tracking_uri()}: run `uv run dvc repro`")
    return str(found.version)


def model_size(explainer: ForestExplainer, version: str) -> str:
    """Trees, nodes, depth and the logged sklearn model's MiB."""
    trees = explainer.forest.estimators_
    directory = Path(mlflow.artifacts.download_artifacts(registry.model_uri(version)))
    files = [p for p in directory.iterdir() if p.name.startswith("model.") and p.suffix != ".onnx"]
    mib = sum(p.stat().st_size for p in files) / 2**20
    return (
        f"{len(trees)} trees, {len(explainer.parent):,} nodes, depth up to "
        f"{max(t.get_depth() for t in trees)}, {mib:.1f} MiB ({', '.join(p.name for p in files)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="connections explained")
    parser.add_argument("--version", help="registered version (default: the champion)")
    args = parser.parse_args()
    version = args.version or champion_version()
    started = time.perf_counter()
    explainer = load_explainer(version)
    loaded = time.perf_counter() - started
    frame = pd.read_csv(KDDTEST, header=None, names=list(schema.RAW_COLUMNS), nrows=args.count)
    connections = frame[list(schema.FEATURE_NAMES)].to_dict("records")
    explainer.explain(connections[0])  # warm
    times = []
    for features in connections:
        started = time.perf_counter()
        explainer.explain(features)
        times.append(time.perf_counter() - started)
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    print(f"{registry.MODEL_NAME} v{version}: {model_size(explainer, version)}")
    print(f"loaded from the registry in {loaded:.1f} s")
    print(
        f"one connection's explanation, {len(times)} KDDTest+ connections: p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms, max {max(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
