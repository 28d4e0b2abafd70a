"""The run-folder store: what a run records (:mod:`~kit.store.records`) and the run folders of a
database over time (:mod:`~kit.store.history`). Reads and writes files only; the layers above read
it, it imports none of them.
"""
