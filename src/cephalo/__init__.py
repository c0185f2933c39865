"""cephalo: cephalometric landmark detection, trained fast at full resolution.

Data flow, one package per stage::

    datasets  ->  preprocessing (letterbox, cache)  ->  codec (heatmaps)  ->  evaluation (MRE, SDR)  ->  cli
"""

__version__ = "0.1.0"
