"""In-process ONNX Runtime throughput of the champion on 1000-flow batches (no HTTP)."""

from __future__ import annotations

import time

import pandas as pd

from desy import schema
from serving.model import load_champion


def main(repeats: int = 50) -> None:
    frame = pd.read_csv(
        "data/nsl-kdd/KDDTest+.txt", header=None, names=list(schema.RAW_COLUMNS), nrows=1000
    )
    columns = {name: frame[name].tolist() for name in schema.FEATURE_NAMES}
    champion = load_champion()
    champion.classify(columns)
    started = time.perf_counter()
    for _ in range(repeats):
        champion.classify(columns)
    elapsed = time.perf_counter() - started
    print(
        f"in-process ONNX (1 thread), 1000-flow batches: {repeats * 1000 / elapsed:,.0f} flows/s "
        f"({elapsed / repeats * 1000:.2f} ms per batch), model v{champion.version}"
    )


if __name__ == "__main__":
    main()
