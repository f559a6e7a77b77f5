"""Shared plumbing: errors, the run pipeline, bundles and verdicts."""
