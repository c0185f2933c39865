"""`python -m cephalo ...` runs the command-line interface (guarded for Windows' spawn start method)."""

from cephalo.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
