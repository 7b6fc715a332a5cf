"""The roof: the ``metacomm`` command line (:mod:`metacomm.cli.main`, one module per subcommand in
:mod:`metacomm.cli.commands`). Only this package knows command-line flags: library errors name config keys, and
:func:`metacomm.cli.main.flag_of` (with :data:`~metacomm.cli.main.KEY_TO_FLAG`) maps them to the flags."""
