"""The shared repository core: firmware schema, role policy, strict
validation of metadata from outside, and ``verify_update``, the one rule for
whether a proposed role version may replace the trusted one."""
