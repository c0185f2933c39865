"""Dataset readers: every source yields :class:`~cephalo.datasets.record.LandmarkRecord`."""
