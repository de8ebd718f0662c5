"""contrastive-prosthetics: contrastive sEMG gesture classifiers for prosthesis control on NinaPro."""

__version__ = "0.1.0"
