"""Today's Python packet engine, frozen as the test oracle for the native engine (issue 23).

A copy of capture_agent's decode, fragments, connection, table, services, features, extractor
and pcap modules as they were before the rewrite, importing only each other, desy.records,
desy.schema and capture_agent.blocks: the differential tests (test_engine_identical.py) hold the
production engine to this one, bit for bit. Do not change its behaviour.
"""
