"""cli."""


def entry() -> None:
    """Console entry point (``gac-analyze``): :func:`gac_analysis.cli.main.run`, with Ctrl-C while the command
    line loads (torch, the commands) said as ``interrupted`` with exit code 130, as in a command, never as a
    traceback."""
    import sys

    try:
        from gac_analysis.cli.main import run

        run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
