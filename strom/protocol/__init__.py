"""Kafka wire protocol: framing, headers, API registry, error codes, codecs.

Message schemas come from kio (generated from Kafka's own JSON specs); the
hot Fetch response is encoded by hand (fetch_response.py). No I/O here.
"""
