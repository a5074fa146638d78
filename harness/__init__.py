"""Test harness for spiffe-oauth-filter: test PKI and JWT-SVIDs, helper servers,
an Envoy launcher and an HTTP client, shared by the demo and the integration tests."""
