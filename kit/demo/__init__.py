"""The demo wing: the Reconciliation Platform the kit grew out of, as a database to audit.

Its schema and data generator (:mod:`~kit.demo.schema`, :mod:`~kit.demo.datagen`), its service layer
as the audit found it and fixed (:mod:`~kit.demo.services`), its endpoint mix under load
(:mod:`~kit.demo.load`), the cache and outage measurements made on it, its request metrics, the
benchmarks that need it (:mod:`~kit.demo.bench`) and ``kit demo`` itself (:mod:`~kit.demo.run`).

The core of the kit never imports this package (tests/test_layers.py walks the imports); the
composition root, ``kit.cli``, reaches it only from the commands that need it. Its extra
dependencies (Locust, prometheus_client) come with ``pip install 'dbperf-kit[demo]'``.
"""
