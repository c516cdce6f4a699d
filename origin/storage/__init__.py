"""A shard's storage on local disk: a log of checksummed frames in segment files
(``frames``, ``segments``), what its records mean (``records``), the store that batches and
syncs writes and compacts the log (``store``), and whose data a directory holds
(``identity``)."""
