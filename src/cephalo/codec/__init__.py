"""Heatmap codec: landmarks in input pixels <-> Gaussian target heatmaps at an output stride."""

from cephalo.codec.heatmap import HeatmapCodec

__all__ = ["HeatmapCodec"]
