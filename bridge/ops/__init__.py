"""Operator tools around the product: a local Kafka, the dev stack, the demo and its simulated
platform, ``doctor`` (why a partner gets nothing) and ``redrive`` (dead letters sent again).
"""
