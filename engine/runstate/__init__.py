"""A run's state outside the engine's memory: the SQLite index (writer and read-only reader), the
stage plan, the folder layout, the per-run lock, progress rows and the detached launcher.

Nothing here imports torch, transformers, safetensors or numpy: the API and the app stand on it.
"""
