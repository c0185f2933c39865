"""How close two training paths are (:mod:`.agreement`, used by ``cephalo doctor``), and the check a compiled stage
passes before it trains (:mod:`.compile_check`)."""
