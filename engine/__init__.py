"""imm engine: the headless Iterative Model Merging loop (never imports textual or imm_tui).
Importing it changes nothing in the process: an engine process sets its environment when it
starts running stages (engine.driver.engine_process_env)."""
