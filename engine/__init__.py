"""imm engine: the headless Iterative Model Merging loop (never imports textual or imm_tui)."""
