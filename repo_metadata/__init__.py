"""The shared repository core: firmware schema, role policy, strict
validation of metadata from outside, ``verify_update``, the one rule for
whether a proposed role version may replace the trusted one, and
``repository_check``, the one check of the whole repository after a change
(the signer and the server both run it)."""
