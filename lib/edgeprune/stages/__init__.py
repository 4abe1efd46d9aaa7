"""One module per pipeline stage: what its notebook calls, so notebooks stay thin."""
