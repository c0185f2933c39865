"""``cephalo bench``: short training segments on the synthetic dataset, one fresh process per configuration, so the
user's claimed speed-ups (from their notes) can be set against measured ones.

``techniques`` defines the rows, ``worker`` measures one row in its own process, ``run`` drives the rows and
``report`` writes the table.
"""
