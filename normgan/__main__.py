import sys

from normgan.cli import main

sys.exit(main())
