"""`make bench`: the sidecar against a do-nothing Check server, over gRPC and through Envoy."""
