//! A local OCI registry (Debian's docker-registry on 127.0.0.1) seeded with images built by the
//! tests, for the podman and containerd tests.
