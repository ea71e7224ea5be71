import sys

from tinykd.cli.commands import main

sys.exit(main())
