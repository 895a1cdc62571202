"""DeSy: what the agent, the server and the pipeline share."""

from pathlib import Path

#: The project's directory (where `desy serve` and the demo run from).
PROJECT = Path(__file__).resolve().parent.parent
