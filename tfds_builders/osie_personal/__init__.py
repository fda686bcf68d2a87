"""The osie_personal dataset (see README.md)."""
