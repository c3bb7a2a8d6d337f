"""Where builds and boots run: the host or a Docker engine, and the toolchain image."""
