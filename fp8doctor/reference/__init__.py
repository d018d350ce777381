"""The reference sparse-MLA forward behind `fp8doctor verify`: the only package that imports torch.

Nothing outside this package imports it, and the CLI imports it lazily, so `fp8doctor scan` and
`fp8doctor --help` run without torch installed.
"""
