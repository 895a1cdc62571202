"""DeSy's shared core: what the agent, the server and the pipeline share (the flow record's
schema, its fields' limits, scoring, the model registry). It imports nothing else of DeSy."""
