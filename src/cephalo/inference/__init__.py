"""Using a trained model: loading it (PyTorch checkpoint or ONNX) and predicting landmarks on new images."""
