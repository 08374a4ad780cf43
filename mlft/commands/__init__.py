"""The subcommands: each is a plain function of its typed arguments (train, evaluate, predict, export, serve,
report, catalog), called by mlft.cli and by tests."""
