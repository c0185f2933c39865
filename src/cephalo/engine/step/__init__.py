"""One update of any stage: the interface the loop drives (:mod:`.stage`), what a stage trains with
(:mod:`.parts`), the step and the epoch loop (:mod:`.loop`), and the maths and bookkeeping they use: loss,
augmentation, the local stage's patches, loaders, out-of-memory recovery, statistics, validation, schedule, EMA."""
