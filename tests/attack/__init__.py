"""Attack simulation (R42): the API fuzzed from its document, the static and dependency checks."""
