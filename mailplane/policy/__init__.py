"""Per-address policy (pure values); see :mod:`mailplane.policy.model`."""
