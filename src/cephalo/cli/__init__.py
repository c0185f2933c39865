"""The ``cephalo`` command line."""
