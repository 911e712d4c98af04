"""``python -m cortex``: the same CLI as the ``cortex`` script (the supervisor starts processes this way)."""

from cortex.cli import main

main()
