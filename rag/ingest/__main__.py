"""`python -m rag.ingest --docs <folder> --index <dir>`: see rag.ingest.build."""

import sys

from rag.ingest.build import main

sys.exit(main())
