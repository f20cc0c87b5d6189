from palign.cli.main import entry

entry()
