"""Flow records for load tests, whole as an agent sends them: the features of KDDTest+ rows, then
endpoints (sources spread over a /16, 200 destinations), times and an agent id."""

from __future__ import annotations

import random
import time

import pandas as pd

from desy import schema
from desy.records import SOURCE_HEADERS

#: Where the benchmark's "agent" says it captures, in the headers a real agent sends.
AGENT_HEADERS = dict(zip(SOURCE_HEADERS, ("eth0", "/var/log/desy"), strict=True))


def records(n: int, seed: int = 1) -> list[dict]:
    """The first n rows of KDDTest+ as flow records."""
    frame = pd.read_csv(
        "data/nsl-kdd/KDDTest+.txt", header=None, names=list(schema.RAW_COLUMNS), nrows=n
    )
    rng, now = random.Random(seed), time.time()
    return [
        row
        | {
            "src_ip": f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "src_port": rng.randrange(1024, 65536),
            "dst_ip": f"192.168.0.{rng.randrange(1, 201)}",
            "dst_port": rng.choice((22, 25, 53, 80, 443)),
            "start_time": now,
            "end_time": now + row["duration"],
            "agent_id": f"sensor-{rng.randrange(8)}",
        }
        for row in frame[list(schema.FEATURE_NAMES)].to_dict(orient="records")
    ]
