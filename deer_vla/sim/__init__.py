"""The simulator side of the embedded default: Meta-World tasks with language instructions.

`tasks` is import-light (no MuJoCo); `metaworld_env` pulls in MuJoCo and
Meta-World, so import it only where a simulator is really needed.
"""
