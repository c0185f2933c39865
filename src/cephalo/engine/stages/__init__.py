"""The stages a run trains, each a :class:`~cephalo.engine.step.stage.TrainingStage` built in the one order of
:mod:`.setup`: the global stage (letterboxed whole images) and the local stage (patches of the originals around
each landmark, on a global model)."""
