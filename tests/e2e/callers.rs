//! podman and containerd drive capsa-runtime exactly as they drive runc.
