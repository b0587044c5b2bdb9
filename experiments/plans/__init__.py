"""The detector plan: a detector name resolved once, for one owner (and experiment), into one frozen
record that validation, queueing, the lists, the engine and the reports read.

`kinds.plan` makes it (the one place that tells the kinds of detector apart), `registered` plans a
registered detector (what ``weights="auto"`` means), `record` holds the records, `worker_side` what only
the worker that runs it knows (device, precision, local files)."""
