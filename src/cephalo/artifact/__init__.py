"""The trained model as a file: the checkpoint schema every command reads and writes (:mod:`.checkpoint`: the
stages a checkpoint holds, what inference needs to build, feed and decode each, and a run's training state), and
the refinement maths every predictor of a two-stage model runs (:mod:`.refine`). Below training and inference, which
both use it; it imports neither."""
