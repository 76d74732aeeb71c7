"""ONNX export of any variant's decoder and encoder, with parity checks, and a runtime that needs no torch.

`runtime` imports only numpy, onnxruntime and the standard library, so an application can embed an exported decoder
(or copy runtime.py on its own) without PyTorch; `export` and the modules it uses need torch and onnx.
"""
