"""The alert store: every attack verdict of every agent, and per-minute counts of all verdicts."""
