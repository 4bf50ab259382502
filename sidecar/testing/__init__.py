"""Helpers shared by the tests and the demo: free ports, an echo upstream, a real Envoy, JWKS."""
