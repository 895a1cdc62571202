"""The project's directory: where `desy serve` and the demo run from."""

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
