"""Prints the folders that hold this Python's CUDA libraries (PyTorch's nvidia-* wheels and
torch/lib), ':'-joined for LD_LIBRARY_PATH: onnxruntime's CUDA provider links against CUDA 13's
cuBLAS, cuRAND and runtime, which a PyTorch machine has there rather than in the system paths."""
import glob
import os

dirs = []
try:
    import nvidia

    for root in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(root, "*", "lib")))
except ImportError:
    pass
try:
    import torch

    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except ImportError:
    pass
print(":".join(d for d in dirs if os.path.isdir(d)))
