"""`python -m grokscope` = the `grokscope` command."""

from grokscope.cli import main

raise SystemExit(main())
