"""Stage 5, real time: the prosthesis controller, export to ONNX and TorchScript, and replay of a recording."""
