"""Sub-commands of ``vit-facemap``: one module each, exposing ``register(subparsers)``.

``register`` adds a parser and sets ``func`` (taking the parsed namespace, returning an
exit status) with ``parser.set_defaults(func=...)``.
"""
