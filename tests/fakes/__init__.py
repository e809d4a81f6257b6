"""Local fakes of cloud APIs with their real semantics, driven by the real client libraries."""
