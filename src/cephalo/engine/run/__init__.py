"""The run: which stages, in order (:mod:`.pipeline`), the one fit loop every stage trains through (:mod:`.fit`),
and what a run keeps and reads back: its checkpoints (:mod:`.saver`, :mod:`.resume`), its logs (:mod:`.run_log`),
its time budget (:mod:`.budget`) and a clean stop on a signal (:mod:`.signals`)."""
