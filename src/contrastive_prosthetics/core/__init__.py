"""Foundations every stage uses: input errors and atomic file writes. Imports nothing of the package."""
