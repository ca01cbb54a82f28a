"""attachd's entry points, imported by nothing: the `attachd` command (cli/), the worker fleet's
control (fleet), starting and supervising worker pools (launch) and the local stack (stack)."""
