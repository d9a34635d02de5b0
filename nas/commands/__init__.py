"""One module per `nas` subcommand; each exposes `register(subparsers)`."""
