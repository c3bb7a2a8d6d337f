"""Test support: real git fixtures (upstreams, forks, manifest histories), the build and
end-to-end fixture workspaces, the seed's tree, and the bare-metal AArch64 console program.

Imported one way everywhere: ``from tests.support.git import ...``."""
