import sys

from tfrobust_cli import main

sys.exit(main())
