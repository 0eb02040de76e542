"""imm engine: the headless Iterative Model Merging loop (never imports textual or imm_tui)."""
import os as _os

from .cpu_threads import with_wait_policy as _with_wait_policy

# Before anything imports torch (libgomp reads its wait policy once, when torch loads it).
_with_wait_policy(_os.environ)
