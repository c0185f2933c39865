"""Cephalometric analysis: the angles and ratios an orthodontist reads (SNA, SNB, ANB, FMA, ...) from landmarks,
and the ISBI 2015 challenge's classes. It needs only landmark arrays, their names and the pixel spacing, so that
evaluation, inference and visualize can all use it (it sits below them in the layers)."""
