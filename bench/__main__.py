"""``python -m bench [--quick | --full] [--out FILE]``: see bench/run.py."""

from bench.run import main

raise SystemExit(main())
