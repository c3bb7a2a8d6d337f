"""``orch upstream``: from a patchset to upstream-ready pull requests, checked the way seL4's CI
checks them (seL4/ci-actions ``pr.yml``/``push.yml`` with seL4_tools' ``misc/`` scripts and config).

Modules: ``series`` (the chain's commits, made by ``git am`` in scratch clones), ``tools`` (where
each check's program and config come from), ``style`` (seL4_tools' style routing), ``checks``
(gitlint, DCO, whitespace, style, license, shell), ``fix`` (``--fix``), ``prepare`` (rebase,
branches, forks), ``prbody`` (titles, bodies, evidence), ``testwith`` (get-prs' "Test with:"
syntax), ``github`` (a small REST client) and ``opener`` (``open``).
"""
