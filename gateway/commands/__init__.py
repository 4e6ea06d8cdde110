"""The `pyuse` commands, one module per kind of thing they act on; gateway/cli.py parses the arguments."""
