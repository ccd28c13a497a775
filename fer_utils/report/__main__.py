import sys

from fer_utils.report.runner import main

sys.exit(main())
