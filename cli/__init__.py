"""The ``kl`` command line (installed as the package ``keras_lesions_cli``).

Each subcommand parses options, calls one library function of
``keras_lesions`` and prints where its outputs went; no logic lives here that a
test of the library could not reach.
"""
