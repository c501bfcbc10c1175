"""The routing stage: ``bridge.events`` -> ``bridge.deliveries``, with status correlation.

``matching`` and ``correlation`` are pure (who receives an event; which statuses travel together),
``router`` is the handler that keeps their state in a changelog, ``stage`` runs it in the
transactional loop.
"""
