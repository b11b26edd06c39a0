"""Speed and memory targets of the signer, measured against in-run baselines.

Benchmarks are not timed tests: every figure is a ratio against a baseline
measured in the same run on the same machine (plain ``hashlib`` for the
image hash, the smallest product line for scaling), printed beside its
target with PASS or MISS. ``python -m benchmarks --help`` lists the options;
``README.md`` here explains each figure.
"""
