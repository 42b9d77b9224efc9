"""Generated gRPC/protobuf stubs of the HERMES wire API (see proto/)."""
