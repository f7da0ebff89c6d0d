import sys

from gardenbuild.cli import main

sys.exit(main())
