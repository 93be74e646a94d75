"""Export of GRAD to ONNX and OpenVINO with checkpoint parity: pre-processor, export, graph fixes."""
