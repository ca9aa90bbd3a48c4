"""What has weights: training (torch, optional extra), ONNX export, and onnxruntime inference.

Inference modules import numpy and onnxruntime only, never torch.
"""
