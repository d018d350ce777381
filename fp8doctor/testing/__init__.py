"""Helpers for testing with fp8doctor, not used by its commands: `fp8doctor.testing.synth` builds
small synthetic checkpoints of every supported convention (the tests, examples, benchmarks and
fuzzer use it; users may build fixtures with it)."""
