"""``python -m jobkit``: the same as the ``jobkit`` command."""

if __name__ == "__main__":
    from jobkit.cli import main

    main()
