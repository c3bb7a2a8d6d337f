"""The analysis stage: figures read from build artifacts (ELF) and the memory bookkeeping."""
