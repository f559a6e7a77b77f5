"""Reference model of the kernel VM layout (ARM by era, invariants for x86_64/arm64/x86-32)."""
