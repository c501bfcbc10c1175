"""The delivery stage: ``bridge.deliveries`` (and its retry tiers) → partner endpoints.

Steps, each a small module: ``sender`` (prepare → post → classify, partner failures as values),
``retry`` (the schedule as data, a pure policy), ``breaker`` (per destination), ``backlog``
(when to spill), ``batching`` (maxBatch), ``records`` (outcomes and dead letters), ``dispatch``
(slots, spill, push, settle: no Kafka, behind the seams of ``source``), ``consumer`` (the task
topics as a source: assignment, pause, commits of settled offsets, lag), ``stage`` (wires them).
"""
