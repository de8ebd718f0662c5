"""Foundations every stage uses: input errors, atomic file writes and milliseconds in frames. Imports nothing of
the package."""
