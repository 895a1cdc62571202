"""DeSy's traffic lab: real servers, clients and attack tools between hosts in network namespaces,
captured and turned into a labelled NSL-KDD flow table by the capture agent."""
