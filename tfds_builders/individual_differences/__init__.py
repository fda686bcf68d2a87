"""The individual_differences dataset (see README.md)."""
