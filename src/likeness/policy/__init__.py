"""Packaged copy of the consent policy files in the repository's consent/ folder.

A test keeps the two identical; consent/ is the canonical copy.
"""
