"""One module per subcommand; see `engine.cli`."""
