"""Checks: every prediction of the reference model held against what the kernel did (pure, offline)."""
