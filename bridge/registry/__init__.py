"""The registry: partners, subscriptions and runtime settings, kept in compacted topics.

``models`` (the records and their JSON codecs), ``view`` (compacted topics -> in-process view),
``writer`` (a change, then read-your-writes), ``partners`` and ``subscriptions`` (the services the
admin and Artemis APIs call).
"""
