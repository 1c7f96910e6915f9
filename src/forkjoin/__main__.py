"""``python -m forkjoin``: the same as the ``forkjoin`` command."""

from forkjoin.cli import main

if __name__ == "__main__":
    main()
