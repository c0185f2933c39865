"""Where and how fast training runs: several processes (:mod:`.distributed`), ``torch.compile`` with a fallback,
GPU memory caps and micro-batch measurement, batches copied ahead to the GPU, memory figures, the intended host
syncs and the one finiteness check."""
