import sys

from tfrobust.cli import main

sys.exit(main())
