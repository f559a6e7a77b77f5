"""Module ELF analysis with pyelftools: what the kernel's module loader makes of a .ko file."""
