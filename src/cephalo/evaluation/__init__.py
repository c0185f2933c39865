"""Accuracy in mm: MRE, SD, SDR, and scoring of prediction files."""
