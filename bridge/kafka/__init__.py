"""confluent-kafka, configured in one place: every librdkafka client the bridge creates.

``config`` (:func:`~bridge.kafka.config.client_config`: connection and security settings, then
``BRIDGE_KAFKA_EXTRA``, then the caller's own properties; the start-up credential check),
``admin`` (topics), ``producer`` (the awaitable producer), ``reader`` (the one topic-range reader).
confluent-kafka errors become :mod:`bridge.errors` here and nowhere else (style rule 3).
"""
