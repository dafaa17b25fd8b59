"""Conformance harness: the SDK's storage client against the REAL PrivateAIM node-result-service.

Not part of the test suite or CI. ``make conformance`` (with ``FLAME_RESULT_SERVICE_SRC`` pointing at a
local checkout of node-result-service) installs the service's locked dependencies from PyPI into
``.conformance/`` (git-ignored), starts PostgreSQL, SeaweedFS as its S3 store, a stub hub with a
Keycloak stand-in, and the node's nginx server block in front of each of two result services, then runs
every storage call of the SDK through nginx and prints a pass/fail table with what was observed on the
wire. Nothing of the real service is copied into this repository and nothing is fetched from git.
"""
