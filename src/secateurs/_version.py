"""The library version (a primitive: saved files and run directories record it)."""
__version__ = "0.1.0"
