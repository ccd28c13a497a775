import sys

from fer_utils.cli import main

sys.exit(main())
