"""The delivery stage: ``bridge.deliveries`` (and its retry tiers) → partner endpoints.

Steps, each a small module: ``sender`` (prepare → post → classify, partner failures as values),
``retry`` (the schedule as data, a pure policy), ``breaker`` (per destination), ``offsets``
(commit only what is settled), ``records`` (outcomes and dead letters), ``worker`` (the loop that
ties them to Kafka).
"""
