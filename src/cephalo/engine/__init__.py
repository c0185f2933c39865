"""The training engine, read from the top: :mod:`.run` (the run and its one fit loop) -> :mod:`.stages` (the global
and the local stage) and :mod:`.checks` -> :mod:`.step` (one update of any stage) -> :mod:`.runtime`; every flag is
one field of :class:`~cephalo.engine.config.TrainConfig`."""
