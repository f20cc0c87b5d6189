from palign.cli import entry

entry()
