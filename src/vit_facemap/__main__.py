import sys

from vit_facemap.cli import main

sys.exit(main())
