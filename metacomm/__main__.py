import sys

from metacomm.sims.cli import main

sys.exit(main())
