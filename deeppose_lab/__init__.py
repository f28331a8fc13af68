"""deeppose_lab: DeepPose (Toshev & Szegedy, CVPR 2014) in PyTorch, as a notebook-first course.

Import the pieces from their modules (``deeppose_lab.geometry``, ``deeppose_lab.model``, ...); this file
stays light so that ``import deeppose_lab`` never pulls in torch or matplotlib by itself.
"""

__version__ = "0.1.0"
