"""``python -m sertk ...`` runs the ``sertk`` command."""

from sertk.cli.main import main

if __name__ == "__main__":
    main()
