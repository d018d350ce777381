"""Repair: plan padded-scale patches from an analysis, journal them, apply them crash-safely.

plan.py (pure: what to write), journal.py (durable record of old/new bytes), lock.py (one fix per
checkpoint), apply.py (in-place writes, recovery, undo), output.py (repaired copies), fix.py (the
`fix` verb tying them together).
"""
