"""Operator definitions as tensor expressions (dense, sparse, capsule): no schedules here."""
