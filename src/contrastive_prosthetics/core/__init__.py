"""Foundations every stage uses: input errors, atomic file writes, the loader of saved torch files and milliseconds
in frames. Imports nothing of the package."""
