"""The wire: message schemas, codecs and the topic registry.

Nothing in this package imports from ``agents`` or ``models``; device SDKs and
skill consumers depend on it alone.
"""
