"""smoothcache.reference: faithful re-implementations of model architectures that are not on PyPI.

They keep the original attribute names so original state dicts load with ``strict=True``; tests,
benchmarks and the demo build them with seeded random weights.
"""
