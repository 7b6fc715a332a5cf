"""One module per ``metacomm`` subcommand: ``add_parser(subparsers, name)`` sets ``run`` via set_defaults."""
