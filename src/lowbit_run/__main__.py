"""python -m lowbit_run: the lowbit-run command."""

from lowbit_run.cli import main

raise SystemExit(main())
