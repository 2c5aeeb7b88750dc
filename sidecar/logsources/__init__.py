"""Where the app's log lines come from: tailed files, standard input and HTTP NDJSON on the admin listener.

Every source hands batches of raw lines to one bounded queue of its own, so a slow or broken source
never stalls another; one parser and one set of sinks (metrics, correlation, re-emit) consume them.
"""
