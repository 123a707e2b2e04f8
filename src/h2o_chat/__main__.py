"""``python -m h2o_chat`` runs the command line."""

import sys

from h2o_chat.cli import main

sys.exit(main())
