"""Disclosure: visible label, invisible watermark, C2PA manifest, and the one writer of media."""
