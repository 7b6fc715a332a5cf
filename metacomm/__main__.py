import sys

from metacomm.cli.main import main

sys.exit(main())
